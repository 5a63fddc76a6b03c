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

    assert numbers(pb.RegisterAgentRequest) == {
        "node_role": 1, "labels": 2, "primary_address": 3, "pod_name": 4, "container_names": 5,
        "node_config": 16, "secondary_addresses": 18}
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


# `shared/` sits beside the checkout (or beside the folder of git worktrees, /work/wt/<name>).
UPSTREAM = next((p / "shared" / "upstream" / "fodc-v1-rpc.head.proto" for p in ROOT.parents
                 if (p / "shared" / "upstream" / "fodc-v1-rpc.head.proto").is_file()),
                ROOT.parent / "shared" / "upstream" / "fodc-v1-rpc.head.proto")


def _compile(tmp_path, proto_dir: pathlib.Path, name: str):
    import grpc_tools
    from google.protobuf import descriptor_pb2
    from grpc_tools import protoc

    out = tmp_path / f"{name.replace('/', '_')}.pb"
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    # Our common/ and database/ protos stand in for upstream's imports of the same names.
    assert protoc.main(["protoc", f"-I{proto_dir}", f"-I{ROOT / 'proto'}", f"-I{include}",
                        "--include_imports", f"--descriptor_set_out={out}", name]) == 0
    files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    return {f.name: f for f in files}


@pytest.mark.skipif(not UPSTREAM.exists(), reason="upstream's proto (../shared/upstream) is not beside the checkout")
def test_every_upstream_message_and_stream_is_ours_with_the_same_fields(tmp_path):
    """Upstream BanyanDB's current FODC proto, compiled as it is against our common/database
    protos: each of its messages, enums and methods exists in ours with the same field names,
    numbers, types and labels (so wire and protojson output match); ours may add fields >= 16
    and keeps primary_address (3) for address agents."""
    up_dir = tmp_path / "up" / "banyandb" / "fodc" / "v1"
    up_dir.mkdir(parents=True)
    (up_dir / "rpc.proto").write_text(UPSTREAM.read_text())
    upstream = _compile(tmp_path, tmp_path / "up", "banyandb/fodc/v1/rpc.proto")
    ours = _compile(tmp_path, ROOT / "proto", "banyandb/fodc/v1/rpc.proto")
    up_file = upstream["banyandb/fodc/v1/rpc.proto"]
    our_file = ours["banyandb/fodc/v1/rpc.proto"]

    def fields(msg):
        return {f.name: (f.number, f.type, f.label, f.type_name) for f in msg.field}

    def messages(file):
        found = {}
        stack = [(m.name, m) for m in file.message_type]
        while stack:
            name, m = stack.pop()
            found[name] = m
            stack.extend((f"{name}.{n.name}", n) for n in m.nested_type)
        return found

    our_msgs = messages(our_file)
    for name, msg in messages(up_file).items():
        assert name in our_msgs, f"message {name} is missing"
        mine = fields(our_msgs[name])
        for field, spec in fields(msg).items():
            assert mine.get(field) == spec, f"{name}.{field}: ours {mine.get(field)}, upstream {spec}"
        extra = set(mine) - set(fields(msg))
        allowed = {"primary_address"} if name == "RegisterAgentRequest" else set()
        assert all(mine[f][0] >= 16 or f in allowed for f in extra), (name, extra)
    our_enums = {e.name: {v.name: v.number for v in e.value} for e in our_file.enum_type}
    for e in up_file.enum_type:
        assert our_enums[e.name] == {v.name: v.number for v in e.value}, e.name
    our_methods = {(s.name, m.name): (m.input_type, m.output_type, m.client_streaming,
                                      m.server_streaming)
                   for s in our_file.service for m in s.method}
    for s in up_file.service:
        for m in s.method:
            assert our_methods[(s.name, m.name)] == (m.input_type, m.output_type,
                                                     m.client_streaming, m.server_streaming)
