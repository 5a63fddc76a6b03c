"""The generated code in fodcproxy/_proto matches proto/ (regenerate: python scripts/generate_proto.py)."""

from __future__ import annotations

import importlib.util
import pathlib
import shutil

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _generator():
    spec = importlib.util.spec_from_file_location("generate_proto", ROOT / "scripts" / "generate_proto.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(shutil.which("protoc-gen-purerpc") is None, reason="purerpc's protoc plugin is not on PATH")
def test_generated_code_is_fresh(tmp_path):
    written = _generator().generate(tmp_path)
    assert written, "nothing was generated"
    stale = []
    for path in written:
        rel = path.relative_to(tmp_path)
        committed = ROOT / "fodcproxy" / "_proto" / rel
        if not committed.exists() or committed.read_text() != path.read_text():
            stale.append(str(rel))
    assert not stale, f"stale generated files {stale}: run python scripts/generate_proto.py"


def test_descriptor_matches_the_proto_source(tmp_path):
    """Independent of generator versions: the compiled descriptor equals the one in use."""
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2

    out = tmp_path / "set.pb"
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    assert protoc.main(["protoc", f"-I{ROOT / 'proto'}", f"-I{include}", f"--descriptor_set_out={out}",
                        "banyandb/fodc/v1/rpc.proto"]) == 0
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    in_use = descriptor_pb2.FileDescriptorProto()
    rpc_pb2.DESCRIPTOR.CopyToProto(in_use)

    def strip_json_names(file):  # CopyToProto leaves out json_name; it is derived anyway
        for msg in list(file.message_type):
            stack = [msg]
            while stack:
                m = stack.pop()
                for f in m.field:
                    f.ClearField("json_name")
                stack.extend(m.nested_type)
        return file

    assert strip_json_names(fresh) == strip_json_names(in_use)


def test_field_numbers_follow_the_seed_and_extensions_start_at_16():
    from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2 as pb

    def numbers(msg):
        return {f.name: f.number for f in msg.DESCRIPTOR.fields}

    assert numbers(pb.RegisterAgentRequest) == {"node_role": 1, "labels": 2, "primary_address": 3,
                                                "secondary_addresses": 4, "node_config": 16}
    assert numbers(pb.RegisterAgentResponse) == {"success": 1, "message": 2,
                                                 "heartbeat_interval_seconds": 3, "agent_id": 4}
    assert numbers(pb.Metric) == {"name": 1, "labels": 2, "value": 3, "description": 4,
                                  "timestamp": 5, "type": 6}
    assert numbers(pb.StreamMetricsRequest) == {"metrics": 1, "timestamp": 2, "request_id": 16, "more": 17}
    assert numbers(pb.StreamMetricsResponse) == {"start_time": 1, "end_time": 2, "request_id": 16}
    assert numbers(pb.NodeConfig) == {"startup_params": 1, "runtime_config": 2, "collected_at": 3}
    assert {v.name: v.number for v in pb.MetricType.DESCRIPTOR.values} == {
        "METRIC_TYPE_UNSPECIFIED": 0, "METRIC_TYPE_GAUGE": 1, "METRIC_TYPE_COUNTER": 2,
        "METRIC_TYPE_HISTOGRAM": 3, "METRIC_TYPE_SUMMARY": 4, "METRIC_TYPE_UNTYPED": 5}
