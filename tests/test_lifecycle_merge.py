"""`fodcproxy.core.lifecycle` (the body of GET /cluster/lifecycle) and the protojson of
`fodcproxy.rpc.lifecycle_convert`, as plain tables. Expected values are written by hand from
upstream's rules (manager.go `mergeGroups`/`aggregateLifecycle`, server.go's messages)."""

from __future__ import annotations

import pytest

from fodcproxy.core.lifecycle import (
    AgentGroup,
    AgentLifecycle,
    AgentSummary,
    body,
    error_message,
    issue_counts,
    merge_groups,
    verdict_json,
)
from fodcproxy.core.schema import (
    ConsistencyStatus,
    GroupReport,
    GroupVerdict,
    NodeFingerprint,
    ObjectConsistency,
    RegistryChunk,
    RegistryObject,
    SchemaIssue,
    SchemaIssueType,
    Verdicts,
    judge,
    merge_registry_chunks,
)
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.lifecycle_convert import lifecycle_from_proto, message_json


def entry(node: str, size: str = "1") -> dict:
    return {"node": {"metadata": {"name": node}}, "data_size_bytes": size}


def group(name: str, *, catalog: str = "CATALOG_STREAM", data: tuple = (), errors: tuple = (),
          schema: GroupReport | None = None) -> AgentGroup:
    return AgentGroup(name, {"name": name, "catalog": catalog, "resource_opts": None}, data,
                      errors, schema)


@pytest.mark.parametrize("summary, message", [
    (AgentSummary(0, 0, 0), "FODC unavailable: no agents registered"),
    (AgentSummary(4, 0, 0), "FODC unavailable: 0/4 registered agents support the lifecycle stream"),
    (AgentSummary(4, 3, 0), "FODC unavailable: 0/3 requested agents responded"),
    (AgentSummary(4, 3, 1), None),
    (AgentSummary(1, 1, 1), None),
])
def test_upstreams_three_error_messages(summary, message):
    assert error_message(summary) == message


def test_not_responded_is_requested_minus_responded():
    assert AgentSummary(5, 3, 1).json() == {"total": 5, "requested": 3, "responded": 1,
                                            "not_responded": 2}


def test_groups_merge_by_name_errors_unioned_sorted_data_info_by_node():
    a = AgentLifecycle("a", "liaison-0", (), (
        group("sw", catalog="OLD", data=(entry("d0", "1"), entry("d1", "2")),
              errors=("node error: d1", "future error: x")),
        group("zz"),
    ))
    b = AgentLifecycle("b", "data-0", ({"filename": "r", "report_json": "{}"},), (
        group("sw", data=(entry("d0", "5"), entry("d2", "3")), errors=("node error: d1",)),
    ))
    out = merge_groups([a, b], Verdicts())
    assert out == [
        {"name": "sw", "catalog": "CATALOG_STREAM", "resource_opts": None,  # the last agent's
         # d0 replaced in place by the later agent's entry, d2 appended
         "data_info": [entry("d0", "5"), entry("d1", "2"), entry("d2", "3")],
         "errors": ["future error: x", "node error: d1"], "schema_consistency": None},
        {"name": "zz", "catalog": "CATALOG_STREAM", "resource_opts": None, "data_info": [],
         "errors": [], "schema_consistency": None},
    ]


def test_data_info_without_a_node_name_is_deduplicated_by_content():
    anon = {"node": None, "data_size_bytes": "7"}
    other = {"node": None, "data_size_bytes": "8"}
    a = AgentLifecycle("a", "p", (), (group("g", data=(anon, other)),))
    b = AgentLifecycle("b", "q", (), (group("g", data=(dict(anon),)),))
    assert merge_groups([a, b], Verdicts())[0]["data_info"] == [anon, other]


def test_registry_errors_join_only_groups_some_agent_reported():
    registry = merge_registry_chunks([
        RegistryChunk("g", (RegistryObject("group", "g", 1),)),
        RegistryChunk("bad", error="list: denied"),
        RegistryChunk("absent", error="nobody reported me"),
    ])
    report = GroupReport("g", (ObjectConsistency("group", "g", node_fingerprints=(
        NodeFingerprint("n0", 1, 1),)),))
    verdicts = judge(registry, [report])
    a = AgentLifecycle("a", "p", (), (group("g", schema=report, errors=("z",)), group("bad")))
    out = {g["name"]: g for g in merge_groups([a], verdicts)}
    assert set(out) == {"g", "bad"}
    assert out["bad"]["errors"] == ["registry read failed: list: denied"]
    assert out["bad"]["schema_consistency"] is None
    assert out["g"]["errors"] == ["z"]
    assert out["g"]["schema_consistency"] == {
        "status": "CONSISTENCY_STATUS_CONSISTENT",
        "objects": [{"kind": "group", "name": "g", "registry_fingerprint": "1",
                     "node_fingerprints": [{"node": "n0", "cache_fingerprint": "1",
                                            "runtime_fingerprint": "1"}]}],
        "issues": []}


def test_verdict_json_is_protojson_of_schema_consistency():
    v = GroupVerdict("g", ConsistencyStatus.INCONSISTENT, (
        ObjectConsistency("stream", "s", 2**64 - 1, (NodeFingerprint("n", 0, 2**63),)),),
        (SchemaIssue("stream", "s", "n", SchemaIssueType.CACHE_STALE),))
    assert verdict_json(v) == {
        "status": "CONSISTENCY_STATUS_INCONSISTENT",
        "objects": [{"kind": "stream", "name": "s", "registry_fingerprint": "18446744073709551615",
                     "node_fingerprints": [{"node": "n", "cache_fingerprint": "0",
                                            "runtime_fingerprint": "9223372036854775808"}]}],
        "issues": [{"kind": "stream", "name": "s", "node": "n",
                    "type": "SCHEMA_ISSUE_TYPE_CACHE_STALE"}]}
    assert verdict_json(None) is None
    # ... exactly what protobuf's own protojson makes of the same message
    msg = pb.SchemaConsistency(status=2, objects=[pb.ObjectConsistency(
        kind="stream", name="s", registry_fingerprint=2**64 - 1, node_fingerprints=[
            pb.NodeFingerprint(node="n", cache_fingerprint=0, runtime_fingerprint=2**63)])],
        issues=[pb.SchemaIssue(kind="stream", name="s", node="n", type=3)])
    assert message_json(msg) == verdict_json(v)


def test_body_lists_reports_of_agents_that_sent_some_and_the_error():
    a = AgentLifecycle("a", "data-0", ({"filename": "f", "report_json": "{}"},), ())
    b = AgentLifecycle("b", "liaison-0", (), ())
    assert body(AgentSummary(3, 2, 2), [a, b], Verdicts()) == {
        "agent_summary": {"total": 3, "requested": 2, "responded": 2, "not_responded": 0},
        "groups": [],
        "lifecycle_statuses": [{"pod_name": "data-0",
                                "reports": [{"filename": "f", "report_json": "{}"}]}]}
    assert body(AgentSummary(3, 2, 0), [], Verdicts())["error"] == (
        "FODC unavailable: 0/2 requested agents responded")


def test_issue_counts_list_every_type_for_each_judged_group():
    v = Verdicts((
        GroupVerdict("g", ConsistencyStatus.INCONSISTENT, issues=(
            SchemaIssue("stream", "a", "n0", SchemaIssueType.ORPHAN),
            SchemaIssue("stream", "b", "n0", SchemaIssueType.ORPHAN),
            SchemaIssue("stream", "b", "n1", SchemaIssueType.RUNTIME_NOT_APPLIED))),
        GroupVerdict("h", ConsistencyStatus.UNKNOWN),
    ))
    assert issue_counts(v) == {
        ("g", "missing_in_cache"): 0, ("g", "orphan"): 2, ("g", "cache_stale"): 0,
        ("g", "runtime_not_applied"): 1,
        ("h", "missing_in_cache"): 0, ("h", "orphan"): 0, ("h", "cache_stale"): 0,
        ("h", "runtime_not_applied"): 0,
    }


def test_message_json_emits_zero_values_and_null_for_unset_messages():
    msg = pb.StreamLifecycleRequest(pod_name="p", lifecycle_data=pb.LifecycleData(groups=[
        pb.GroupLifecycleInfo(name="g")]))
    got = lifecycle_from_proto(msg, "agent")
    (g,) = got.groups
    assert (got.agent_id, got.pod_name, got.reports) == ("agent", "p", ())
    assert g.body == {"name": "g", "catalog": "", "resource_opts": None}
    assert (g.data_info, g.errors, g.schema) == ((), (), None)
    info = pb.GroupLifecycleInfo(name="g")
    info.resource_opts.SetInParent()  # present but all zero: an object of zeros, not null
    info.schema_consistency.SetInParent()  # an empty partial is a partial
    converted = lifecycle_from_proto(pb.StreamLifecycleRequest(
        lifecycle_data=pb.LifecycleData(groups=[info])), "a").groups[0]
    assert converted.schema == GroupReport("g", ())
    assert converted.body["resource_opts"] == {"shard_num": 0, "segment_interval": None,
                                               "ttl": None, "stages": [], "default_stages": [],
                                               "replicas": 0}


def _messages() -> list:
    from fodcproxy._proto.banyandb.database.v1 import database_pb2
    from fodcproxy.testing.lifecycle import SchemaWorld

    world = SchemaWorld.sample()
    world.drift("banyandb-data-hot-0", "sw_stream", "stream", "segment")
    lifecycle = pb.StreamLifecycleRequest(pod_name="p",
                                          lifecycle_data=world.lifecycle_data("banyandb-liaison-0"))
    lifecycle.timestamp.FromSeconds(1_800_000_000)
    node = database_pb2.Node(grpc_address="a:1", labels={"type": "hot", "zone": "b"},
                             roles=[database_pb2.ROLE_DATA, 99])  # 99: an enum number unknown
    node.created_at.FromNanoseconds(1_800_000_000_123_456_789)
    chunk = pb.PressureProfileChunk(request_id="r", data=b"\x00\xff binary", last=True)
    return [
        lifecycle,
        pb.StreamLifecycleRequest(),  # everything unset
        node,
        pb.Metric(name="m", value=float("nan"), labels={"a": "b"}),
        pb.Metric(name="m", value=float("-inf")),
        chunk,
        pb.StreamPressureProfilesRequest(chunk=chunk),  # a oneof member set
        pb.StreamPressureProfilesRequest(),  # ... and none
        pb.SchemaConsistency(status=2, objects=[pb.ObjectConsistency(
            kind="k", name="n", registry_fingerprint=2**64 - 1)]),
    ]


@pytest.mark.parametrize("message", _messages(), ids=lambda m: type(m).__name__)
def test_fast_protojson_equals_json_format_with_nulls(message):
    from fodcproxy.rpc.lifecycle_convert import reference_json

    assert message_json(message) == reference_json(message)


class _Counted(tuple):
    """A tuple that counts the elements any iteration over it visits."""

    visits = 0

    def __iter__(self):
        for item in super().__iter__():
            _Counted.visits += 1
            yield item


def test_the_body_looks_each_group_up_once_not_by_scanning_every_verdict():
    """One agent can send hundreds of thousands of tiny groups in one message (a group costs
    ~15 bytes). Merging looked up each group's verdict and registry errors by scanning (and
    copying) every group's: O(groups^2) visits, 8,000 groups took seconds and 250,000 would take
    hours of a worker thread per GET /cluster/lifecycle. Counted here, not timed."""
    n = 2000
    names = [f"g{i:05d}" for i in range(n)]
    answers = (AgentLifecycle("a", "p", groups=tuple(
        group(name, schema=GroupReport(name)) for name in names)),)
    judged = judge(merge_registry_chunks([RegistryChunk("", error="down")]),
                   [GroupReport(name) for name in names])
    assert len(judged.groups) == len(judged.errors) == n
    _Counted.visits = 0
    verdicts = Verdicts(_Counted(judged.groups), _Counted(judged.errors), judged.streaks)
    doc = body(AgentSummary(1, 1, 1), answers, verdicts)
    assert [g["name"] for g in doc["groups"]] == names
    assert doc["groups"][7]["errors"] == ["registry unavailable: down"]
    assert doc["groups"][7]["schema_consistency"]["status"] == "CONSISTENCY_STATUS_UNKNOWN"
    assert _Counted.visits <= 4 * n  # linear: was about 1.5 * n * n
