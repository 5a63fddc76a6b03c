"""The agent's StreamLifecycle and StreamSchemaRegistry over real gRPC on 127.0.0.1: an in-process
fake of the node's services (tests/lifecycle_fakes.py) on one side, a test-side handler of the
proxy's two methods on the other. No BanyanDB runs here: see docs/agent.md."""

from __future__ import annotations

import logging
import os
import pathlib

import pytest
import trio
from google.protobuf.wrappers_pb2 import BytesValue

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as db
from fodcproxy.agent.fingerprint import fingerprint
from fodcproxy.agent.lifecycle import (
    LifecycleCollector,
    LifecycleService,
    LifecycleSettings,
    SchemaRegistryService,
)
from fodcproxy.agent.lifecycle_rules import DATA_INFO_LEFT_OUT
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc.convert import pb

from lifecycle_fakes import (
    HANG,
    FakeNode,
    binding,
    drive,
    group,
    open_fake_node,
    rule,
    snapshot,
    status,
    stream,
)

R1 = rule("sw", "r1")
S1 = stream("sw", "s1")
S1_DRIFTED = stream("sw", "s1", "id", "added")


def cluster_node(**kw) -> FakeNode:
    """A liaison with a stream group `sw` (one rule bound to one stream) and a measure group."""
    node = FakeNode(
        inspect=pb.InspectAllResponse(groups=[
            pb.GroupLifecycleInfo(name="sw", catalog="CATALOG_STREAM",
                                  resource_opts=common_pb2.ResourceOpts(shard_num=2),
                                  data_info=[db.DataInfo(data_size_bytes=1234)]),
            pb.GroupLifecycleInfo(name="sm", catalog="CATALOG_MEASURE")]),
        schema_events=[
            db.StreamGroupSchemaStateResponse(rule_table=db.SchemaRuleTable(group="sw", rules=[R1])),
            snapshot("sw", "group", "sw", group("sw")),
            snapshot("sw", "indexRule", "r1", R1),
            snapshot("sw", "stream", "s1", S1, S1_DRIFTED, cache_refs=(0,), runtime_refs=(0,)),
            db.StreamGroupSchemaStateResponse(trailer=db.SchemaSnapshotTrailer(
                group="sw", node="liaison-0:17912", object_count=3)),
        ],
        groups=[group("sw"), group("sm", common_pb2.CATALOG_MEASURE)],
        rules={"sw": [R1]}, bindings={"sw": [binding("sw", "s1", "r1")]},
        streams={"sw": [S1]})
    for key, value in kw.items():
        setattr(node, key, value)
    return node


def collector(port: int, tmp_path: pathlib.Path | None = None, **kw) -> LifecycleCollector:
    settings = dict(lifecycle_port=port, registry_port=port, cache_ttl=0,
                    report_dir=str(tmp_path / "reports") if tmp_path else "/nonexistent/reports")
    settings.update(kw)
    return LifecycleCollector(LifecycleSettings(**settings))


async def test_lifecycle_answer_has_reports_groups_and_this_node_s_fingerprints(tmp_path):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "2026-11-01.json").write_text('{"migrated": 3}')
    (reports / "2026-11-02.json").write_text('{"migrated": 4}')
    (reports / "notes.txt").write_text("ignored")
    with trio.fail_after(20):
        async with open_fake_node(cluster_node()) as port:
            service = LifecycleService(collector(port, tmp_path), pod_name="liaison-0")
            async with drive(service) as proxy:
                got = await proxy.ask_lifecycle()
    assert got.pod_name == "liaison-0" and got.timestamp.seconds > 0
    data = got.lifecycle_data
    assert [(r.filename, r.report_json) for r in data.reports] == [
        ("2026-11-02.json", '{"migrated": 4}'), ("2026-11-01.json", '{"migrated": 3}')]
    assert [g.name for g in data.groups] == ["sw", "sm"]
    sw = data.groups[0]
    assert sw.catalog == "CATALOG_STREAM" and sw.data_info[0].data_size_bytes == 1234
    assert not sw.errors
    by_object = {(o.kind, o.name): o for o in sw.schema_consistency.objects}
    assert list(by_object) == [("group", "sw"), ("indexRule", "r1"), ("stream", "s1")]
    s1 = by_object[("stream", "s1")].node_fingerprints
    assert len(s1) == 1 and s1[0].node == "liaison-0:17912"
    assert s1[0].cache_fingerprint == fingerprint(S1, [R1])
    assert s1[0].runtime_fingerprint == fingerprint(S1_DRIFTED, [R1])
    assert by_object[("stream", "s1")].registry_fingerprint == 0  # the proxy's to fill in
    assert not data.groups[1].HasField("schema_consistency")


async def test_registry_answer_matches_the_node_s_cache_for_the_same_schema():
    with trio.fail_after(20):
        async with open_fake_node(cluster_node()) as port:
            c = collector(port)
            async with drive(SchemaRegistryService(c)) as proxy:
                messages = await proxy.ask_registry()
            async with drive(LifecycleService(c)) as proxy:
                lifecycle = await proxy.ask_lifecycle()
    assert messages[-1].done and not any(m.group.error for m in messages)
    registry = {(o.kind, o.name): o.fingerprint for m in messages[:-1] for o in m.group.objects}
    assert [m.group.group for m in messages[:-1]] == ["sw", "sm"]
    assert registry[("stream", "s1")] == fingerprint(S1, [R1])
    assert registry[("group", "sm")] == fingerprint(group("sm", common_pb2.CATALOG_MEASURE))
    # The node's cache agrees with the registry object for object; its runtime of s1 does not.
    for obj in lifecycle.lifecycle_data.groups[0].schema_consistency.objects:
        assert obj.node_fingerprints[0].cache_fingerprint == registry[(obj.kind, obj.name)]


async def test_a_large_group_is_split_into_chunks_of_50_with_its_name():
    streams = [stream("sw", f"s{i:03}") for i in range(120)]
    with trio.fail_after(20):
        async with open_fake_node(cluster_node(streams={"sw": streams})) as port:
            async with drive(SchemaRegistryService(collector(port))) as proxy:
                messages = await proxy.ask_registry()
    shape = [(m.group.group, len(m.group.objects)) for m in messages[:-1]]
    assert shape == [("sw", 50), ("sw", 50), ("sw", 22), ("sm", 1)]  # 1 group + 1 rule + 120


async def test_one_group_s_registry_read_failing_is_that_group_s_error_only():
    node = cluster_node(groups=[group("sw"), group("bad"), group("slow"),
                                group("sm", common_pb2.CATALOG_MEASURE)],
                        failing={"bad": status(GrpcCode.INTERNAL, "disk on fire")})
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            async with drive(SchemaRegistryService(collector(port))) as proxy:
                messages = await proxy.ask_registry()
    by_group = {m.group.group: m.group for m in messages[:-1]}
    assert by_group["bad"].error == "list index rules of bad: INTERNAL: disk on fire"
    assert not by_group["bad"].objects
    assert by_group["sw"].objects and not by_group["sw"].error
    assert by_group["sm"].objects and messages[-1].done


async def test_a_hanging_group_read_times_out_and_the_rest_are_reported_not_reached():
    node = cluster_node(groups=[group("sw"), group("stuck"), group("later")],
                        failing={"stuck": HANG})
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            service = SchemaRegistryService(collector(port, timeout=0.5))
            async with drive(service) as proxy:
                messages = await proxy.ask_registry()
    by_group = {m.group.group: m.group for m in messages[:-1]}
    assert by_group["sw"].objects
    assert "no answer within 0.5s" in by_group["stuck"].error
    assert "no answer within 0.5s" in by_group["later"].error  # one deadline for the whole read
    assert messages[-1].done


async def test_liaison_unreachable_gives_the_fatal_error_and_the_agent_keeps_serving():
    # A port nothing listens on: bind one, note it, close it.
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    c = collector(port)
    lifecycle, registry = LifecycleService(c), SchemaRegistryService(c)
    with trio.fail_after(20):
        async with drive(registry) as proxy:
            first = await proxy.ask_registry()
            second = await proxy.ask_registry()  # still serving
        async with drive(lifecycle) as proxy:
            await proxy.call.send(pb.StreamLifecycleResponse(request_lifecycle=True))
            await _wait(lambda: lifecycle.failed == 1)
            assert proxy.pending() == 0  # no answer: an empty one would read as "no groups"
    for messages in (first, second):
        assert len(messages) == 2 and messages[-1].done
        fatal = messages[0].group
        assert fatal.group == "" and fatal.error.startswith(f"read the registry on 127.0.0.1:{port}")
    assert "InspectAll on 127.0.0.1" in lifecycle.last_error


async def test_no_registry_port_is_the_fatal_error():
    with trio.fail_after(20):
        async with drive(SchemaRegistryService(collector(1, registry_port=0))) as proxy:
            messages = await proxy.ask_registry()
    assert messages[0].group.error.startswith("no schema-registry address configured")
    assert messages[-1].done


async def test_group_list_failing_or_hanging_is_fatal():
    for groups, text in ((status(GrpcCode.UNAVAILABLE, "not ready"),
                          "list groups on 127.0.0.1:{port}: UNAVAILABLE: not ready"),
                         (HANG, "list groups on 127.0.0.1:{port}: no answer within 0.5s")):
        with trio.fail_after(20):
            async with open_fake_node(cluster_node(groups=groups)) as port:
                async with drive(SchemaRegistryService(collector(port, timeout=0.5))) as proxy:
                    messages = await proxy.ask_registry()
        assert [m.group.error for m in messages[:-1]] == [text.format(port=port)]


async def test_inspect_all_hanging_times_out_and_the_next_request_is_answered():
    node = cluster_node(inspect=HANG)
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            service = LifecycleService(collector(port, timeout=0.5))
            async with drive(service) as proxy:
                await proxy.call.send(pb.StreamLifecycleResponse(request_lifecycle=True))
                await _wait(lambda: service.failed == 1)
                assert "no answer within 0.5s" in service.last_error
                node.inspect = pb.InspectAllResponse(groups=[pb.GroupLifecycleInfo(name="sw")])
                got = await proxy.ask_lifecycle()
    assert [g.name for g in got.lifecycle_data.groups] == ["sw"]


async def test_schema_state_hanging_or_failing_is_an_error_on_every_group():
    for events, text in ((HANG, "no answer within 0.5s"),
                         (status(GrpcCode.INTERNAL, "cache sweep failed"),
                          "INTERNAL: cache sweep failed")):
        with trio.fail_after(20):
            async with open_fake_node(cluster_node(schema_events=events)) as port:
                async with drive(LifecycleService(collector(port, timeout=0.5))) as proxy:
                    got = await proxy.ask_lifecycle()
        groups = got.lifecycle_data.groups
        assert [g.name for g in groups] == ["sw", "sm"]
        for g in groups:
            assert len(g.errors) == 1 and g.errors[0].startswith("node schema state: ")
            assert text in g.errors[0] and not g.HasField("schema_consistency")


async def test_schema_state_over_its_bounds():
    many = [db.StreamGroupSchemaStateResponse(trailer=db.SchemaSnapshotTrailer(
        group=f"g{i}", node="n", object_count=0)) for i in range(5)]
    with trio.fail_after(20):
        async with open_fake_node(cluster_node(schema_events=many)) as port:
            async with drive(LifecycleService(collector(port, max_schema_groups=2))) as proxy:
                got = await proxy.ask_lifecycle()
            async with drive(LifecycleService(collector(port, max_schema_state_bytes=30))) as proxy:
                over = await proxy.ask_lifecycle()
    by_name = {g.name: g for g in got.lifecycle_data.groups}
    assert set(by_name) == {"sw", "sm", "g0", "g1"}  # InspectAll's, and the first two kept
    assert "3 more groups were left out" in by_name["g0"].errors[0]
    for g in over.lifecycle_data.groups:
        assert "over 30 bytes of schema state" in g.errors[0]


async def test_requests_are_answered_in_order_and_the_end_of_the_stream_ends_serve():
    with trio.fail_after(20):
        async with open_fake_node(cluster_node()) as port:
            async with drive(LifecycleService(collector(port))) as proxy:
                for _ in range(3):  # three at once: three answers, one after the other
                    await proxy.call.send(pb.StreamLifecycleResponse(request_lifecycle=True))
                await proxy.call.send(pb.StreamLifecycleResponse())  # not a request: ignored
                answers = [await proxy._inbox.receive() for _ in range(3)]
                assert all(a.lifecycle_data.groups for a in answers)
                proxy.call.abort(GrpcCode.UNAVAILABLE, "the proxy goes away")
                await proxy.served.wait()  # serve() returned: the agent starts a new session
            async with drive(SchemaRegistryService(collector(port))) as proxy:
                proxy.call.abort(GrpcCode.UNAVAILABLE, "the proxy goes away")
                await proxy.served.wait()


async def test_answers_that_do_not_decode_are_errors_not_crashes():
    corrupt = BytesValue(value=b"\xff\xff")  # field 1, 2 bytes that are no message
    node = cluster_node(inspect=corrupt, groups=[])
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            service = LifecycleService(collector(port))
            async with drive(service) as proxy:
                await proxy.call.send(pb.StreamLifecycleResponse(request_lifecycle=True))
                await _wait(lambda: service.failed == 1)
                assert "the answer does not decode" in service.last_error
                node.inspect = pb.InspectAllResponse(groups=[pb.GroupLifecycleInfo(name="sw")])
                node.schema_events = [corrupt]
                got = await proxy.ask_lifecycle()  # still serving
    assert "node schema state:" in got.lifecycle_data.groups[0].errors[0]
    assert "does not decode" in got.lifecycle_data.groups[0].errors[0]


async def test_unimplemented_services_contribute_nothing_and_inspect_all_is_not_asked_again():
    node = cluster_node(unimplemented={"InspectAll"})
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            async with drive(LifecycleService(collector(port))) as proxy:
                first = await proxy.ask_lifecycle()
                second = await proxy.ask_lifecycle()
    assert not first.HasField("lifecycle_data") or not first.lifecycle_data.groups
    assert not second.lifecycle_data.groups and node.calls == []
    node = cluster_node(unimplemented={"StreamGroupSchemaState"})
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            async with drive(LifecycleService(collector(port))) as proxy:
                got = await proxy.ask_lifecycle()
    assert [g.name for g in got.lifecycle_data.groups] == ["sw", "sm"]
    assert not any(g.errors or g.HasField("schema_consistency") for g in got.lifecycle_data.groups)


async def test_an_inspect_all_answer_over_the_message_limit_is_not_sent_and_the_agent_goes_on():
    limit = 64 * 1024
    huge = pb.InspectAllResponse(groups=[pb.GroupLifecycleInfo(name="g" * (2 * limit))])
    node = cluster_node(inspect=huge)
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            service = LifecycleService(collector(port, max_message_size=limit))
            async with drive(service) as proxy:
                await proxy.call.send(pb.StreamLifecycleResponse(request_lifecycle=True))
                await _wait(lambda: service.failed == 1)
                assert "RESOURCE_EXHAUSTED" in service.last_error
                node.inspect = pb.InspectAllResponse(groups=[pb.GroupLifecycleInfo(name="ok")])
                got = await proxy.ask_lifecycle()
    assert [g.name for g in got.lifecycle_data.groups][:1] == ["ok"]


async def test_an_answer_near_the_limit_leaves_reports_then_data_info_out(tmp_path):
    limit = 64 * 1024
    reports = tmp_path / "reports"
    reports.mkdir()
    for i in range(5):
        (reports / f"r{i}.json").write_text("x" * 20_000)
    big_info = [db.DataInfo(segment_info=[db.SegmentInfo(segment_id="s" * 10_000)])
                for _ in range(4)]
    inspect = pb.InspectAllResponse(groups=[pb.GroupLifecycleInfo(name="sw", data_info=big_info)])
    with trio.fail_after(20):
        async with open_fake_node(cluster_node(inspect=inspect)) as port:
            service = LifecycleService(collector(port, tmp_path, max_message_size=limit))
            async with drive(service) as proxy:
                got = await proxy.ask_lifecycle()
                assert got.ByteSize() <= limit
                assert len(got.lifecycle_data.reports) == 1  # r4 (the greatest name) kept
                assert got.lifecycle_data.reports[0].filename == "r4.json"
                node_info = [g.data_info for g in got.lifecycle_data.groups if g.name == "sw"][0]
                assert len(node_info) == 4
                # InspectAll's answer just under the receive limit: with this node's schema
                # state and the envelope, the groups alone are over the reply's limit.
                info = inspect.groups[0].data_info
                info[0].segment_info[0].segment_id += "s" * (limit - 300 - inspect.ByteSize())
                assert limit - 400 < inspect.ByteSize() < limit
                got = await proxy.ask_lifecycle()
    assert got.ByteSize() <= limit and not got.lifecycle_data.reports
    sw = [g for g in got.lifecycle_data.groups if g.name == "sw"][0]
    assert not sw.data_info and DATA_INFO_LEFT_OUT in sw.errors
    assert sw.schema_consistency.objects  # the verdict's evidence survives


async def test_report_directory_missing_or_not_a_directory(tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    for report_dir in (tmp_path / "missing", not_a_dir):
        with trio.fail_after(20):
            async with open_fake_node(cluster_node()) as port:
                c = collector(port, report_dir=str(report_dir))
                async with drive(LifecycleService(c)) as proxy:
                    got = await proxy.ask_lifecycle()
        assert not got.lifecycle_data.reports and got.lifecycle_data.groups


async def test_report_files_huge_binary_linked_or_too_many(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="fodcproxy")
    reports = tmp_path / "reports"
    reports.mkdir()
    secret = tmp_path / "secret.json"
    secret.write_text('{"password": "x"}')
    (reports / "z-link.json").symlink_to(secret)  # never followed
    (reports / "y-huge.json").write_bytes(b"x" * (5 * 1024 * 1024 + 1))
    (reports / "x-binary.json").write_bytes(b"\x89PNG\r\n\x1a\n\xff\x00")
    (reports / "w-dir.json").mkdir()
    os.mkfifo(reports / "v-fifo.json")  # a reader of a FIFO would block: not regular, skipped
    for i in range(200):
        (reports / f"a{i:03}.json").write_text(f'{{"n": {i}}}')
    with trio.fail_after(20):
        async with open_fake_node(cluster_node()) as port:
            async with drive(LifecycleService(collector(port, tmp_path))) as proxy:
                got = await proxy.ask_lifecycle()
    # The link, the directory and the FIFO are no regular files, so they are not even candidates
    # (upstream's agent would pick them, then fail or follow); of the five greatest remaining
    # names, y-huge and x-binary are skipped.
    names = [r.filename for r in got.lifecycle_data.reports]
    assert names == ["a199.json", "a198.json", "a197.json"]
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "y-huge.json" in logged and "x-binary.json" in logged and "not UTF-8" in logged


async def test_a_report_file_whose_name_is_not_utf8_is_skipped_not_the_answer(tmp_path, caplog):
    """os.scandir gives such a name with lone surrogates, which protobuf refuses: the whole
    collection raised, so the agent sent no answer at all (every collection waited the proxy's
    timeout and judged UNKNOWN) for as long as the file was there."""
    caplog.set_level(logging.WARNING, logger="fodcproxy")
    reports = tmp_path / "reports"
    reports.mkdir()
    with open(os.path.join(os.fsencode(reports), b"\xff-2026.json"), "w") as f:
        f.write("{}")
    (reports / "2026-11-29.json").write_text("{}")
    with trio.fail_after(20):
        async with open_fake_node(cluster_node()) as port:
            async with drive(LifecycleService(collector(port, tmp_path))) as proxy:
                got = await proxy.ask_lifecycle()
    assert [r.filename for r in got.lifecycle_data.reports] == ["2026-11-29.json"]
    assert got.lifecycle_data.groups
    assert "\\xff-2026.json: the name is not UTF-8" in caplog.text


async def test_collected_data_is_cached_for_the_ttl(tmp_path):
    node = cluster_node()
    with trio.fail_after(20):
        async with open_fake_node(node) as port:
            service = LifecycleService(collector(port, tmp_path, cache_ttl=3600))
            async with drive(service) as proxy:
                await proxy.ask_lifecycle()
                await proxy.ask_lifecycle()
    assert node.calls.count("GroupLifecycleService/InspectAll") == 1


async def _wait(predicate) -> None:
    while not predicate():
        await trio.sleep(0.005)


def test_services_are_agent_services() -> None:
    from fodcproxy.agent.client import AgentService

    c = collector(1)
    services: list[AgentService] = [LifecycleService(c), SchemaRegistryService(c)]
    assert [s.method.rsplit("/", 1)[1] for s in services] == ["StreamLifecycle",
                                                              "StreamSchemaRegistry"]


BOTH = ["StreamLifecycle", "StreamSchemaRegistry"]


@pytest.mark.parametrize("argv, services", [
    # a pod agent (upstream's kind, started with upstream's flags): on by default, as upstream
    (["--pod-name", "liaison-0"], BOTH),
    (["--pod-name", "liaison-0", "--lifecycle-port", "0"], []),
    # an address agent (our own kind, often with no BanyanDB node on 127.0.0.1): on only when
    # asked for, or the proxy would wait --lifecycle-timeout for it on every collection
    ([], []),
    (["--node-ip", "10.0.0.5"], []),
    (["--lifecycle-port", "18912"], BOTH),
    (["--lifecycle-port", "0"], []),
])
def test_agent_opens_the_streams(argv, services, monkeypatch) -> None:
    from fodcproxy.agent.main import Agent, agent_config_from_args, build_parser

    monkeypatch.delenv("POD_NAME", raising=False)
    config = agent_config_from_args(build_parser().parse_args(["--node-role", "liaison", *argv]))
    agent = Agent(config)
    opened = [s.method.rsplit("/", 1)[1] for s in (agent.lifecycle, agent.schema_registry) if s]
    assert opened == services
    assert [s.method.rsplit("/", 1)[1] for s in agent.services][:len(services)] == services


@pytest.mark.parametrize("kw, port", [
    (dict(pod_name="p-0"), 18912),
    (dict(pod_name="p-0", lifecycle_port=0), 0),
    (dict(), 0),
    (dict(lifecycle_port=19000), 19000),
])
def test_lifecycle_node_port_of_a_config(kw, port) -> None:
    from fodcproxy.agent.config import AgentConfig

    assert AgentConfig(node_role="liaison", **kw).lifecycle_node_port == port


@pytest.mark.parametrize("argv, field, value", [
    ([], "lifecycle_port", None),
    ([], "lifecycle_node_port", 0),  # an address agent (see test_agent_opens_the_streams)
    (["--pod-name", "p-0"], "lifecycle_node_port", 18912),
    ([], "schema_registry_port", 17912),
    ([], "lifecycle_report_dir", "/tmp/lifecycle-reports"),
    ([], "lifecycle_cache_ttl", 600.0),
    (["--schema-registry-port", "0"], "schema_registry_port", 0),
    (["--lifecycle-cache-ttl", "0"], "lifecycle_cache_ttl", 0.0),
    (["--lifecycle-report-dir", "/var/r"], "lifecycle_report_dir", "/var/r"),
])
def test_lifecycle_flags(argv, field, value, monkeypatch) -> None:
    from fodcproxy.agent.config import agent_config_from_args, build_parser

    monkeypatch.delenv("POD_NAME", raising=False)
    config = agent_config_from_args(build_parser().parse_args(["--node-role", "liaison", *argv]))
    assert getattr(config, field) == value


@pytest.mark.parametrize("argv, message", [
    (["--lifecycle-port", "70000"], "--lifecycle-port"),
    (["--schema-registry-port", "-1"], "--schema-registry-port"),
    (["--lifecycle-port", "x"], "--lifecycle-port"),
    (["--lifecycle-cache-ttl", "soon"], "--lifecycle-cache-ttl"),
])
def test_bad_lifecycle_flags(argv, message) -> None:
    from fodcproxy.agent.config import agent_config_from_args, build_parser
    from fodcproxy.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        agent_config_from_args(build_parser().parse_args(["--node-role", "liaison", *argv]))
