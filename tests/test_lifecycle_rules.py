"""The agent's lifecycle rules (fodcproxy.agent.lifecycle_rules), sans-IO: plain tables."""

from __future__ import annotations

import pytest

from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as db
from fodcproxy.agent.fingerprint import fingerprint
from fodcproxy.agent.lifecycle_rules import (
    DATA_INFO_LEFT_OUT,
    MAX_ERRORS_PER_GROUP,
    RegistryGroup,
    ReportLimits,
    SchemaStateFold,
    apply_schema_states,
    decode_report,
    fit_lifecycle,
    registry_messages,
    select_reports,
    snapshot_fingerprints,
)
from fodcproxy.rpc.convert import pb

from lifecycle_fakes import group, rule, snapshot, stream

LIMITS = ReportLimits()


@pytest.mark.parametrize("entries, expected", [
    ([], []),
    ([("a.json", True), ("b.txt", True), ("c.json", False)], ["a.json"]),  # .json regular files
    ([(f"r-{i:03}.json", True) for i in range(100)],
     ["r-099.json", "r-098.json", "r-097.json", "r-096.json", "r-095.json"]),  # 5 greatest
    ([("2026-01-02.json", True), ("2026-01-10.json", True), ("2025-12-31.json", True)],
     ["2026-01-10.json", "2026-01-02.json", "2025-12-31.json"]),
    ([("x.JSON", True), (".json", True)], [".json"]),  # the suffix is case-sensitive, as upstream
])
def test_select_reports(entries, expected) -> None:
    assert select_reports(entries, LIMITS) == expected


def test_select_reports_reads_a_long_listing_lazily() -> None:
    listing = ((f"{i:07}.json", True) for i in range(200_000))  # a generator: never a list
    assert select_reports(listing, ReportLimits(max_files=2)) == ["0199999.json", "0199998.json"]


@pytest.mark.parametrize("data, ok, reason", [
    (b'{"a": 1}', True, ""),
    ("{\"ünïcode\": \"✓\"}".encode(), True, ""),
    (b"\xff\xfe\x00binary", False, "not UTF-8 text"),
    (b"x" * (LIMITS.max_file_size + 1), False, "over 5242880 bytes"),
    (b"x" * LIMITS.max_file_size, True, ""),
    (b"not json at all", True, ""),  # sent as is: upstream does not parse it either
])
def test_decode_report(data: bytes, ok: bool, reason: str) -> None:
    got = decode_report("r.json", data, LIMITS)
    if ok:
        assert isinstance(got, pb.LifecycleReport)
        assert got.filename == "r.json" and got.report_json == data.decode()
    else:
        assert isinstance(got, str) and got.startswith("r.json: ") and reason in got


def test_decode_report_skips_a_name_that_is_not_utf8() -> None:
    """A file name with bytes that are not UTF-8 comes from os.scandir with lone surrogates;
    protobuf cannot encode it as `filename` (a string): it is skipped with its bytes escaped."""
    got = decode_report("\udcff-2026.json", b"{}", LIMITS)
    assert got == "\\xff-2026.json: the name is not UTF-8"
    assert decode_report("\ud800.json", b"{}", LIMITS) == "\\ud800.json: the name is not UTF-8"


# --- a node's schema state ------------------------------------------------------------------


def trailer(group_name: str, node: str, count: int, *errors: str):
    return db.StreamGroupSchemaStateResponse(trailer=db.SchemaSnapshotTrailer(
        group=group_name, node=node, object_count=count, errors=list(errors)))


def table(group_name: str, *rules):
    return db.StreamGroupSchemaStateResponse(rule_table=db.SchemaRuleTable(group=group_name,
                                                                           rules=list(rules)))


R1, R2 = rule("sw", "r1"), rule("sw", "r2", "u")
S1 = stream("sw", "s1")
S1_NEW = stream("sw", "s1", "id", "extra")


def fold(*events):
    f = SchemaStateFold()
    for e in events:
        f.feed(e)
    return f


def test_fold_fingerprints_cache_and_runtime_against_the_rule_table() -> None:
    f = fold(table("sw", R1), table("sw", R2),  # a table split in two events concatenates
             snapshot("sw", "group", "sw", group("sw")),
             snapshot("sw", "stream", "s1", S1, S1_NEW, cache_refs=(0,), runtime_refs=(1, 0)),
             trailer("sw", "node-1", 2))
    state = f.states["sw"]
    assert state.errors == [] and state.node == "node-1"
    assert state.objects[("group", "sw")].cache == fingerprint(group("sw"))
    assert state.objects[("group", "sw")].runtime == fingerprint(group("sw"))  # no runtime body
    assert state.objects[("stream", "s1")].cache == fingerprint(S1, [R1])
    assert state.objects[("stream", "s1")].runtime == fingerprint(S1_NEW, [R1, R2])
    sc = state.to_proto()
    assert [(o.kind, o.name) for o in sc.objects] == [("group", "sw"), ("stream", "s1")]
    assert sc.objects[1].node_fingerprints[0].node == "node-1"
    assert sc.status == pb.CONSISTENCY_STATUS_UNSPECIFIED and not sc.issues


@pytest.mark.parametrize("events, error", [
    ([snapshot("sw", "stream", "s1", S1, cache_refs=(3,)), trailer("sw", "n", 0)],
     "resolve cache stream 's1': bound index rule ref 3 out of range (table size 0)"),
    ([table("sw", R1), snapshot("sw", "stream", "s1", S1, S1, runtime_refs=(1,)),
      trailer("sw", "n", 0)],
     "resolve runtime stream 's1': bound index rule ref 1 out of range (table size 1)"),
    ([snapshot("sw", "topNAggregation", "t", db.SchemaRuleTable()), trailer("sw", "n", 0)],
     "unknown type 'banyandb.database.v1.SchemaRuleTable'"),
    ([snapshot("sw", "group", "sw", group("sw")), trailer("sw", "n", 3)],
     "torn stream: received 1 objects, trailer reported 3"),
    ([trailer("sw", "n", 0, "the node says no")], "the node says no"),
])
def test_fold_errors(events, error: str) -> None:
    state = fold(*events).states["sw"]
    assert any(error in e for e in state.errors), state.errors


def test_without_a_trailer_no_node_fingerprints_are_reported() -> None:
    sc = fold(snapshot("sw", "group", "sw", group("sw"))).states["sw"].to_proto()
    assert [o.name for o in sc.objects] == ["sw"] and not sc.objects[0].node_fingerprints


def test_fold_bounds_groups_and_errors() -> None:
    f = SchemaStateFold(max_groups=2)
    for g in ("a", "b", "c", "d"):
        f.feed(trailer(g, "n", 0))
    assert sorted(f.states) == ["a", "b"] and f.dropped_groups == 2
    f.feed(trailer("a", "n", 0, *[f"e{i}" for i in range(1000)]))
    assert len(f.states["a"].errors) == MAX_ERRORS_PER_GROUP


def test_apply_schema_states_folds_into_inspect_all_groups_and_adds_missing_ones() -> None:
    f = fold(snapshot("sw", "group", "sw", group("sw")), trailer("sw", "n1", 1),
             trailer("other", "n1", 0, "oops"))
    groups = [pb.GroupLifecycleInfo(name="sw", catalog="CATALOG_STREAM", errors=["before"])]
    out = apply_schema_states(groups, f.states)
    assert [g.name for g in out] == ["sw", "other"]
    assert out[0].catalog == "CATALOG_STREAM" and list(out[0].errors) == ["before"]
    assert out[0].schema_consistency.objects[0].node_fingerprints[0].node == "n1"
    assert list(out[1].errors) == ["oops"] and not out[1].schema_consistency.objects


def test_snapshot_fingerprints_of_a_body_without_refs() -> None:
    obj = snapshot("sw", "indexRule", "r1", R1).object
    assert snapshot_fingerprints(obj, []) == (fingerprint(R1), fingerprint(R1))


# --- the registry's messages ------------------------------------------------------------------


def objs(n: int):
    return tuple(("stream", f"s{i:03}", i) for i in range(n))


def shape(messages):
    return [("done",) if m.done else (m.group.group, len(m.group.objects), m.group.error)
            for m in messages]


@pytest.mark.parametrize("groups, fatal, expected", [
    (None, "dial failed", [("", 0, "dial failed"), ("done",)]),
    ([], "", [("done",)]),
    ([RegistryGroup("empty")], "", [("empty", 0, ""), ("done",)]),
    ([RegistryGroup("a", objs(50))], "", [("a", 50, ""), ("done",)]),
    ([RegistryGroup("a", objs(51))], "", [("a", 50, ""), ("a", 1, ""), ("done",)]),
    ([RegistryGroup("a", objs(120)), RegistryGroup("bad", error="list rules: UNAVAILABLE"),
      RegistryGroup("b", objs(3))], "",
     [("a", 50, ""), ("a", 50, ""), ("a", 20, ""), ("bad", 0, "list rules: UNAVAILABLE"),
      ("b", 3, ""), ("done",)]),
])
def test_registry_messages(groups, fatal, expected) -> None:
    assert shape(registry_messages(groups, fatal)) == expected


def test_registry_chunks_also_stay_under_the_byte_limit() -> None:
    big = tuple(("stream", "n" * 1000 + str(i), i) for i in range(10))
    messages = list(registry_messages([RegistryGroup("a", big)], max_bytes=3000))
    assert all(m.ByteSize() <= 3000 for m in messages)
    assert sum(len(m.group.objects) for m in messages) == 10 and messages[-1].done


def test_registry_errors_are_clipped() -> None:
    (msg, _) = registry_messages([RegistryGroup("a", error="x" * 100_000)])
    assert len(msg.group.error) == 2048


# --- one lifecycle answer under the limit ------------------------------------------------------


def answer(reports: int, report_size: int, groups: int, data_info_size: int):
    req = pb.StreamLifecycleRequest(pod_name="p")
    for i in range(reports):
        req.lifecycle_data.reports.add(filename=f"r{i}.json", report_json="x" * report_size)
    for i in range(groups):
        g = req.lifecycle_data.groups.add(name=f"g{i}")
        g.data_info.add(segment_info=[db.SegmentInfo(segment_id="s" * data_info_size)])
    return req


def test_fit_keeps_a_small_answer_whole() -> None:
    fitted = fit_lifecycle(answer(2, 100, 2, 10), 10_000)
    assert fitted is not None and not fitted.dropped_reports and not fitted.stripped_data_info


def test_fit_drops_the_oldest_reports_first() -> None:
    fitted = fit_lifecycle(answer(5, 1000, 1, 10), 3500)
    assert fitted is not None and fitted.request.ByteSize() <= 3500
    assert fitted.dropped_reports == ("r4.json", "r3.json")
    assert [r.filename for r in fitted.request.lifecycle_data.reports] == ["r0.json", "r1.json",
                                                                           "r2.json"]


def test_fit_leaves_data_info_out_when_the_groups_alone_are_too_big() -> None:
    fitted = fit_lifecycle(answer(1, 10, 3, 5000), 5000)
    assert fitted is not None and fitted.stripped_data_info and fitted.request.ByteSize() <= 5000
    assert all(not g.data_info and DATA_INFO_LEFT_OUT in g.errors
               for g in fitted.request.lifecycle_data.groups)


def test_fit_gives_up_when_even_the_names_do_not_fit() -> None:
    assert fit_lifecycle(answer(0, 0, 1000, 1), 1000) is None
