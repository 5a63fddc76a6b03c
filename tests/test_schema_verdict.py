"""Tests of `fodcproxy.core.schema`: the schema-consistency verdict per group (issue 16).

Test policy: plain synchronous tests over small tables of fingerprints. Expected values are
written by hand from upstream's rules (the module docstring lists them), never computed by the
code under test; where the whole verdict is the point it is compared as one value, so an added or
reordered object or issue fails a test. Most tables pass `report_after=1` to look at one rule at a
time; the two-round suppression upstream applies by default has its own tests.
"""

from __future__ import annotations

import ast
import itertools
import re
from pathlib import Path

import pytest

from fodcproxy.core import schema
from fodcproxy.core.schema import (
    REPORT_AFTER_ROUNDS,
    ConsistencyStatus,
    GroupReport,
    GroupVerdict,
    NodeFingerprint,
    ObjectConsistency,
    RegistryChunk,
    RegistryGroup,
    RegistryObject,
    RegistryRead,
    SchemaIssue,
    SchemaIssueType,
    Streaks,
    UnknownCause,
    Verdicts,
    judge,
    merge_registry_chunks,
)

CONSISTENT = ConsistencyStatus.CONSISTENT
INCONSISTENT = ConsistencyStatus.INCONSISTENT
UNKNOWN = ConsistencyStatus.UNKNOWN
MISSING = SchemaIssueType.MISSING_IN_CACHE
ORPHAN = SchemaIssueType.ORPHAN
STALE = SchemaIssueType.CACHE_STALE
NOT_APPLIED = SchemaIssueType.RUNTIME_NOT_APPLIED

# The registry truth most tables use: group "g" with its group object and one stream.
G = "g"
TRUTH = (("group", G, 1), ("stream", "foo", 100))


def registry(*groups: RegistryGroup) -> RegistryRead:
    return RegistryRead(groups)


def truth(group: str = G, *objects: tuple[str, str, int], error: str = "") -> RegistryGroup:
    return RegistryGroup(group, tuple(RegistryObject(*o) for o in objects), error)


def report(group: str, node: str, *objects: tuple[str, str, int, int]) -> GroupReport:
    """One agent's partial: `node`'s (kind, name, cache, runtime) per object."""
    return GroupReport(group, tuple(
        ObjectConsistency(kind, name, node_fingerprints=(NodeFingerprint(node, cache, runtime),))
        for kind, name, cache, runtime in objects))


def healthy(node: str, group: str = G) -> GroupReport:
    return report(group, node, ("group", group, 1, 1), ("stream", "foo", 100, 100))


def obj(kind: str, name: str, registry_fp: int, *nodes: tuple[str, int, int]) -> ObjectConsistency:
    return ObjectConsistency(kind, name, registry_fp, tuple(NodeFingerprint(*n) for n in nodes))


# --- the numbering is upstream's ------------------------------------------------------------


def test_enums_carry_upstreams_numbers() -> None:
    assert [(s.name, int(s)) for s in ConsistencyStatus] == [
        ("UNSPECIFIED", 0), ("CONSISTENT", 1), ("INCONSISTENT", 2), ("UNKNOWN", 3)]
    assert [(t.name, int(t)) for t in SchemaIssueType] == [
        ("UNSPECIFIED", 0), ("MISSING_IN_CACHE", 1), ("ORPHAN", 2), ("CACHE_STALE", 3),
        ("RUNTIME_NOT_APPLIED", 4)]
    assert REPORT_AFTER_ROUNDS == 2


# --- every issue type, one node, one object --------------------------------------------------

# (the node's stream object as (cache, runtime), or None when absent) -> issue type, or None
CLASSIFY = [
    pytest.param((100, 100), None, id="agrees"),
    pytest.param((200, 200), STALE, id="cache-differs"),
    pytest.param((100, 101), NOT_APPLIED, id="runtime-differs"),
    pytest.param((200, 300), STALE, id="both-differ-only-the-upstream-boundary"),
    pytest.param((200, 100), STALE, id="runtime-matches-registry-but-cache-does-not"),
    pytest.param((0, 0), STALE, id="zero-fingerprint-is-a-value"),
    pytest.param(None, MISSING, id="absent-from-node"),
]


@pytest.mark.parametrize(("stream", "issue"), CLASSIFY)
def test_classify_one_object(stream: tuple[int, int] | None,
                             issue: SchemaIssueType | None) -> None:
    objects: list[tuple[str, str, int, int]] = [("group", G, 1, 1)]
    if stream is not None:
        objects.append(("stream", "foo", *stream))
    out = judge(registry(truth(G, *TRUTH)), [report(G, "data-1", *objects)], report_after=1)
    verdict = out.verdict(G)
    assert verdict is not None
    if issue is None:
        assert (verdict.status, verdict.issues, verdict.unknown_causes) == (CONSISTENT, (), ())
    else:
        assert verdict.status == INCONSISTENT
        assert verdict.issues == (SchemaIssue("stream", "foo", "data-1", issue),)
    stream_row = obj("stream", "foo", 100, *([("data-1", *stream)] if stream else []))
    assert verdict.objects == (obj("group", G, 1, ("data-1", 1, 1)), stream_row)


def test_orphan_object_is_listed_with_registry_fingerprint_zero() -> None:
    node = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 100, 100),
                  ("measure", "extra", 7, 7))
    out = judge(registry(truth(G, *TRUTH)), [node], report_after=1)
    assert out.verdict(G) == GroupVerdict(
        G, INCONSISTENT,
        objects=(obj("group", G, 1, ("data-1", 1, 1)),
                 obj("measure", "extra", 0, ("data-1", 7, 7)),
                 obj("stream", "foo", 100, ("data-1", 100, 100))),
        issues=(SchemaIssue("measure", "extra", "data-1", ORPHAN),))


def test_a_whole_drifted_group_in_one_verdict() -> None:
    """Three nodes from three agents, every issue type at once; objects and issues in order."""
    reg = registry(truth(G, ("stream", "foo", 100), ("indexRule", "r1", 10), ("group", G, 1)))
    reports = [
        report(G, "liaison-0", ("group", G, 1, 1), ("stream", "foo", 100, 100),
               ("indexRule", "r1", 10, 10)),
        report(G, "data-2", ("group", G, 1, 1), ("stream", "foo", 100, 99),
               ("indexRule", "r1", 11, 11), ("measure", "old", 5, 5)),
        report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 100, 100)),
    ]
    out = judge(reg, reports, report_after=1)
    assert out == Verdicts(
        groups=(GroupVerdict(
            G, INCONSISTENT,
            objects=(
                obj("group", G, 1, ("data-1", 1, 1), ("data-2", 1, 1), ("liaison-0", 1, 1)),
                obj("indexRule", "r1", 10, ("data-2", 11, 11), ("liaison-0", 10, 10)),
                obj("measure", "old", 0, ("data-2", 5, 5)),
                obj("stream", "foo", 100, ("data-1", 100, 100), ("data-2", 100, 99),
                    ("liaison-0", 100, 100)),
            ),
            issues=(
                SchemaIssue("indexRule", "r1", "data-1", MISSING),
                SchemaIssue("indexRule", "r1", "data-2", STALE),
                SchemaIssue("measure", "old", "data-2", ORPHAN),
                SchemaIssue("stream", "foo", "data-2", NOT_APPLIED),
            )),),
        streaks=Streaks((((G, "data-1", "indexRule", "r1"), 1),
                         ((G, "data-2", "indexRule", "r1"), 1),
                         ((G, "data-2", "measure", "old"), 1),
                         ((G, "data-2", "stream", "foo"), 1))))


def test_node_fingerprints_are_the_union_over_agents() -> None:
    out = judge(registry(truth(G, *TRUTH)), [healthy("liaison-1"), healthy("data-1")])
    verdict = out.verdict(G)
    assert verdict is not None and verdict.status == CONSISTENT
    assert verdict.objects[1] == obj("stream", "foo", 100, ("data-1", 100, 100),
                                     ("liaison-1", 100, 100))


def test_one_agents_partial_may_carry_several_nodes() -> None:
    partial = GroupReport(G, (
        obj("group", G, 0, ("data-1", 1, 1), ("data-2", 1, 1)),
        obj("stream", "foo", 0, ("data-2", 100, 100), ("data-1", 100, 1)),
        obj("measure", "unseen", 0),  # no node: adds nothing
    ))
    verdict = judge(registry(truth(G, *TRUTH)), [partial], report_after=1).verdict(G)
    assert verdict is not None
    assert verdict.issues == (SchemaIssue("stream", "foo", "data-1", NOT_APPLIED),)
    assert [o.name for o in verdict.objects] == [G, "foo"]


def test_a_node_reported_twice_is_judged_by_its_last_report() -> None:
    first = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 200, 200))
    last = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 100, 100))
    verdict = judge(registry(truth(G, *TRUTH)), [first, last], report_after=1).verdict(G)
    assert verdict is not None and verdict.status == CONSISTENT
    # both reports stay visible, ordered by (node, cache, runtime)
    assert verdict.objects[1] == obj("stream", "foo", 100, ("data-1", 100, 100),
                                     ("data-1", 200, 200))
    verdict = judge(registry(truth(G, *TRUTH)), [last, first], report_after=1).verdict(G)
    assert verdict is not None and verdict.issues == (
        SchemaIssue("stream", "foo", "data-1", STALE),)


# --- every cause of UNKNOWN ----------------------------------------------------------------

UNKNOWN_CASES = [
    pytest.param(RegistryRead.unavailable("no schema-serving (liaison) agent available"),
                 [healthy("data-1")], (), UnknownCause.REGISTRY_UNAVAILABLE, id="registry-fatal"),
    pytest.param(registry(truth(G, error="list streams of g: boom")), [healthy("data-1")], (),
                 UnknownCause.REGISTRY_ERROR, id="group-read-failed"),
    pytest.param(registry(truth("other", ("group", "other", 1))), [healthy("data-1")], (),
                 UnknownCause.REGISTRY_MISSING, id="group-missing-from-registry"),
    pytest.param(registry(truth(G)), [healthy("data-1")], (),
                 UnknownCause.REGISTRY_MISSING, id="group-empty-in-registry"),
    pytest.param(RegistryRead(), [healthy("data-1")], (),
                 UnknownCause.REGISTRY_MISSING, id="registry-read-had-no-groups"),
]


@pytest.mark.parametrize(("reg", "reports", "silent", "cause"), UNKNOWN_CASES)
def test_no_registry_truth_is_unknown_with_no_table(
        reg: RegistryRead, reports: list[GroupReport], silent: tuple[str, ...],
        cause: UnknownCause) -> None:
    out = judge(reg, reports, silent=silent, report_after=1)
    assert out.groups == (GroupVerdict(G, UNKNOWN, unknown_causes=(cause,)),)


def test_the_fatal_empty_name_chunk_degrades_every_group() -> None:
    chunks = [RegistryChunk(G, (RegistryObject("group", G, 1),)),
              RegistryChunk("", error="dial 127.0.0.1:17912: connection refused")]
    reg = merge_registry_chunks(chunks)
    out = judge(reg, [healthy("data-1"), healthy("data-1", "h")], report_after=1)
    assert [(v.group, v.status, v.unknown_causes) for v in out.groups] == [
        (G, UNKNOWN, (UnknownCause.REGISTRY_UNAVAILABLE,)),
        ("h", UNKNOWN, (UnknownCause.REGISTRY_UNAVAILABLE,))]
    reason = "registry unavailable: dial 127.0.0.1:17912: connection refused"
    assert out.errors == ((G, (reason,)), ("h", (reason,)))


def test_a_silent_agent_makes_an_agreeing_group_unknown() -> None:
    out = judge(registry(truth(G, *TRUTH)), [healthy("data-1")], silent={"agent-7"})
    assert out.groups == (GroupVerdict(
        G, UNKNOWN,
        objects=(obj("group", G, 1, ("data-1", 1, 1)),
                 obj("stream", "foo", 100, ("data-1", 100, 100))),
        unknown_causes=(UnknownCause.AGENTS_SILENT,)),)


def test_a_partial_with_no_nodes_is_unknown() -> None:
    out = judge(registry(truth(G, *TRUTH)), [GroupReport(G)], report_after=1)
    assert out.groups == (GroupVerdict(
        G, UNKNOWN, objects=(obj("group", G, 1), obj("stream", "foo", 100)),
        unknown_causes=(UnknownCause.NO_NODES,)),)


def test_a_first_round_divergence_is_suppressed_and_unknown() -> None:
    drifted = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 200, 200))
    out = judge(registry(truth(G, *TRUTH)), [drifted])
    verdict = out.verdict(G)
    assert verdict is not None
    assert (verdict.status, verdict.issues, verdict.unknown_causes) == (
        UNKNOWN, (), (UnknownCause.SUPPRESSED,))
    assert out.streaks.get(G, "data-1", "stream", "foo") == 1


def test_inconsistent_wins_over_silence_and_suppression() -> None:
    reg = registry(truth(G, *TRUTH))
    old = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 200, 200))
    first = judge(reg, [old, healthy("data-2")])
    new = report(G, "data-2", ("group", G, 1, 1), ("stream", "foo", 100, 5))
    second = judge(reg, [old, new], silent=["agent-9"], streaks=first.streaks)
    verdict = second.verdict(G)
    assert verdict is not None
    assert (verdict.status, verdict.issues, verdict.unknown_causes) == (
        INCONSISTENT, (SchemaIssue("stream", "foo", "data-1", STALE),), ())
    assert second.streaks.get(G, "data-2", "stream", "foo") == 1  # still suppressed


def test_unknown_causes_accumulate() -> None:
    drifted = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 100, 101))
    verdict = judge(registry(truth(G, *TRUTH)), [drifted], silent=["a"]).verdict(G)
    assert verdict is not None and verdict.unknown_causes == (
        UnknownCause.SUPPRESSED, UnknownCause.AGENTS_SILENT)


# --- the two-round suppression ---------------------------------------------------------------


def test_divergence_is_reported_on_the_second_round_and_heals() -> None:
    reg = registry(truth(G, *TRUTH))
    drifted = [report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 200, 200))]
    rounds = []
    streaks = Streaks()
    for reports in (drifted, drifted, drifted, [healthy("data-1")], drifted):
        out = judge(reg, reports, streaks=streaks)
        streaks = out.streaks
        verdict = out.verdict(G)
        assert verdict is not None
        streak = streaks.get(G, "data-1", "stream", "foo")
        rounds.append((verdict.status, len(verdict.issues), streak))
    assert rounds == [(UNKNOWN, 0, 1), (INCONSISTENT, 1, 2), (INCONSISTENT, 1, 3),
                      (CONSISTENT, 0, 0), (UNKNOWN, 0, 1)]
    assert streaks == Streaks((((G, "data-1", "stream", "foo"), 1),))


def test_the_streak_is_per_object_not_per_type() -> None:
    reg = registry(truth(G, *TRUTH))
    stale = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 200, 200))
    unapplied = report(G, "data-1", ("group", G, 1, 1), ("stream", "foo", 100, 200))
    first = judge(reg, [stale])
    second = judge(reg, [unapplied], streaks=first.streaks)
    verdict = second.verdict(G)
    assert verdict is not None
    assert verdict.issues == (SchemaIssue("stream", "foo", "data-1", NOT_APPLIED),)


def test_nodes_are_independent() -> None:
    reg = registry(truth(G, *TRUTH))
    bad = report(G, "data-1", ("group", G, 1, 1))
    out = judge(reg, [bad, healthy("data-2")])
    out = judge(reg, [bad, healthy("data-2")], streaks=out.streaks)
    verdict = out.verdict(G)
    assert verdict is not None
    assert verdict.issues == (SchemaIssue("stream", "foo", "data-1", MISSING),)
    assert out.streaks.counts == (((G, "data-1", "stream", "foo"), 2),)


def test_streaks_of_other_and_undecidable_groups_are_kept() -> None:
    h_drift = report("h", "data-1", ("group", "h", 1, 2))
    start = Streaks((((G, "data-1", "stream", "foo"), 1), (("h", "data-1", "group", "h"), 1),
                     (("x", "data-1", "stream", "s"), 4)))
    # g is judged and heals; h has no truth this round; x was not reported at all
    out = judge(registry(truth(G, *TRUTH)), [healthy("data-1"), h_drift], streaks=start)
    assert out.streaks == Streaks((
        (("h", "data-1", "group", "h"), 1), (("x", "data-1", "stream", "s"), 4)))


def test_report_after_must_be_positive() -> None:
    with pytest.raises(ValueError, match="report_after"):
        judge(RegistryRead(), [], report_after=0)


# --- merging registry chunks -----------------------------------------------------------------


def test_chunks_merge_by_group_in_order_of_first_appearance() -> None:
    a1, a2, b1 = (RegistryObject("stream", "s1", 1), RegistryObject("stream", "s2", 2),
                  RegistryObject("group", "b", 3))
    chunks = [RegistryChunk("b", (b1,)), RegistryChunk("a", (a1,)), RegistryChunk("c"),
              RegistryChunk("a", (a2,)), RegistryChunk("d", error="list measures of d: boom")]
    assert merge_registry_chunks(chunks) == RegistryRead((
        RegistryGroup("b", (b1,)), RegistryGroup("a", (a1, a2)), RegistryGroup("c"),
        RegistryGroup("d", error="list measures of d: boom")))


def test_a_later_error_replaces_an_earlier_one_and_wins_over_objects() -> None:
    o = RegistryObject("stream", "s", 1)
    chunks = [RegistryChunk(G, (o,)), RegistryChunk(G, error="first"), RegistryChunk(G),
              RegistryChunk(G, error="second")]
    merged = merge_registry_chunks(chunks)
    assert merged == RegistryRead((RegistryGroup(G, (o,), "second"),))
    out = judge(merged, [healthy("data-1")], report_after=1)
    assert out.groups == (GroupVerdict(G, UNKNOWN, unknown_causes=(UnknownCause.REGISTRY_ERROR,)),)
    assert out.errors == ((G, ("registry read failed: second",)),)


def test_fatal_chunks_drop_the_groups_and_the_last_reason_wins() -> None:
    chunks = [RegistryChunk("", error="one"), RegistryChunk(G, (RegistryObject("group", G, 1),)),
              RegistryChunk("", error="two")]
    assert merge_registry_chunks(chunks) == RegistryRead.unavailable("two")


def test_an_empty_name_without_error_is_an_ordinary_group() -> None:
    assert merge_registry_chunks([RegistryChunk("")]) == RegistryRead((RegistryGroup(""),))


def test_a_repeated_object_keeps_its_last_fingerprint() -> None:
    merged = merge_registry_chunks([
        RegistryChunk(G, (RegistryObject("group", G, 1), RegistryObject("stream", "foo", 50))),
        RegistryChunk(G, (RegistryObject("stream", "foo", 100),))])
    verdict = judge(merged, [healthy("data-1")], report_after=1).verdict(G)
    assert verdict is not None and verdict.status == CONSISTENT
    assert verdict.objects[1].registry_fingerprint == 100


def test_an_unavailable_read_needs_a_reason() -> None:
    with pytest.raises(ValueError):
        RegistryRead.unavailable("")


# --- which groups get a verdict, and their errors --------------------------------------------


def test_only_groups_with_a_partial_get_a_verdict_but_read_errors_reach_every_group() -> None:
    reg = registry(truth(G, *TRUTH), truth("registry-only", ("group", "registry-only", 1)),
                   truth("prop", error="boom"))
    out = judge(reg, [healthy("data-1")])
    assert [v.group for v in out.groups] == [G]
    assert out.verdict("registry-only") is None
    # "prop" has no verdict (no agent sent a schema partial) yet its read error is surfaced
    assert out.errors == (("prop", ("registry read failed: boom",)),)
    assert out.errors_of("prop") == ("registry read failed: boom",)
    assert out.errors_of(G) == ()


def test_statuses_for_the_gauge() -> None:
    reg = registry(truth("a", ("group", "a", 1)), truth("b", ("group", "b", 1)))
    reports = [report("a", "n", ("group", "a", 1, 1)), report("b", "n", ("group", "b", 2, 2)),
               report("c", "n", ("group", "c", 1, 1))]
    out = judge(reg, reports, report_after=1)
    assert {g: int(s) for g, s in out.statuses().items()} == {"a": 1, "b": 2, "c": 3}


# --- determinism and empty inputs ------------------------------------------------------------


def test_the_verdict_does_not_depend_on_input_order() -> None:
    reg_objects = [("stream", "foo", 100), ("group", G, 1), ("indexRule", "r", 9)]
    reports = [
        report(G, "data-2", ("stream", "foo", 100, 1), ("group", G, 1, 1)),
        report(G, "data-1", ("indexRule", "r", 8, 8), ("measure", "m", 1, 1)),
        report("h", "data-1", ("group", "h", 1, 1)),
        healthy("liaison-0"),
    ]
    outs = {
        judge(registry(truth(G, *objs), truth("h", ("group", "h", 1))), list(reps), report_after=1)
        for objs in itertools.permutations(reg_objects)
        for reps in itertools.permutations(reports)
    }
    assert len(outs) == 1
    (out,) = outs
    verdict = out.verdict(G)
    assert verdict is not None
    assert [(o.kind, o.name) for o in verdict.objects] == [
        ("group", G), ("indexRule", "r"), ("measure", "m"), ("stream", "foo")]
    assert [(i.kind, i.name, i.node, i.type) for i in verdict.issues] == [
        ("group", G, "data-1", MISSING),
        ("indexRule", "r", "data-1", STALE),
        ("indexRule", "r", "data-2", MISSING),
        ("indexRule", "r", "liaison-0", MISSING),
        ("measure", "m", "data-1", ORPHAN),
        ("stream", "foo", "data-1", MISSING),
        ("stream", "foo", "data-2", NOT_APPLIED),
    ]
    assert [v.group for v in out.groups] == [G, "h"]


def test_empty_inputs() -> None:
    assert merge_registry_chunks([]) == RegistryRead()
    assert judge(RegistryRead(), []) == Verdicts()
    assert judge(RegistryRead(), [], silent=["a"]) == Verdicts()
    # a fatal read with nobody reporting: no verdict and nothing to attach the reason to
    assert judge(RegistryRead.unavailable("down"), []) == Verdicts()
    assert judge(RegistryRead.unavailable("down"), [], streaks=Streaks(((("g", "n", "k", "o"), 1),))
                 ).streaks.counts == ((("g", "n", "k", "o"), 1),)


def test_the_module_imports_neither_trio_nor_protobuf() -> None:
    tree = ast.parse(Path(schema.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {(node.module or "").split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom)}
    assert imported <= {"__future__", "enum", "collections", "attrs"}


def test_the_docs_example_runs_as_written(capsys: pytest.CaptureFixture[str]) -> None:
    doc = Path(__file__).resolve().parent.parent / "docs" / "schema-consistency.md"
    (code,) = re.findall(r"```python\n(.*?)```", doc.read_text(), re.DOTALL)
    exec(compile(code, str(doc), "exec"), {})
    printed = capsys.readouterr().out
    assert printed == "INCONSISTENT [('log', 'data-0', 'CACHE_STALE')]\n"
    assert "# " + printed in code
