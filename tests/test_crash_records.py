"""The crash-record reader (`fodcproxy.agent.crash`): plain synchronous tests, no I/O.

Test policy: fixtures are written the way a BanyanDB node writes them — Go's `json.Marshal` of
upstream's `panicdiag.PanicRecord` (struct field order, empty fields left out, `<>&` escaped,
compact) into `<UTC time>-<component>-<pid>/panic.json` — built by `go_marshal` below. Every bad
input must end in `CrashRecordError`, never in another exception.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2
from fodcproxy.agent.crash import (
    PANIC_FILE,
    ArtifactListing,
    CrashKeeper,
    CrashLimits,
    CrashRecordError,
    FileStat,
    Instant,
    parse_crash_record,
    to_proto_fields,
)
from fodcproxy.errors import FodcError

DIR = "20260415T080000.123456789Z-liaison-grpc-4242"
STACK = (
    "goroutine 42 [running]:\n"
    "runtime/debug.Stack()\n"
    "\t/usr/local/go/src/runtime/debug/stack.go:26 +0x5e\n"
    "github.com/apache/skywalking-banyandb/pkg/panicdiag.WithRecovery.func1()\n"
    "\t/src/pkg/panicdiag/recovery.go:60 +0x8a\n"
    "panic({0x1a2b3c0?, 0x2c4d5e0?})\n"
    "\t/usr/local/go/src/runtime/panic.go:785 +0x132\n"
)


def go_marshal(value: Any) -> bytes:
    """Go's json.Marshal: compact, map keys sorted, and <, >, & escaped for HTML."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    for char, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escape)
    return text.encode("utf-8")


def node_record(**override: Any) -> dict[str, Any]:
    """A PanicRecord as upstream's emitRecovery fills it, keys in Go's struct order."""
    record: dict[str, Any] = {
        "processMetadata": {"artifactDir": "/data/crash", "component": "liaison-grpc",
                            "listenAddr": ":17912", "nodeType": "liaison"},
        "stateDump": {"path": f"/data/crash/{DIR}/deep-dump.json"},
        "component": "liaison-grpc",
        "panicValue": "runtime error: index out of range [3] with length 3 <& >",
        "goroutineStack": STACK,
        "occurredAt": "2026-04-15T08:00:00.123456789Z",
        "breadcrumbs": [
            {"fields": {"method": "POST", "path": "/debug/panic"},
             "time": "2026-04-15T07:59:59.9Z", "stage": "received debug panic request",
             "component": "liaison-grpc"},
            {"time": "2026-04-15T08:00:00Z", "stage": "trigger debug panic"},
        ],
        "recovered": True,
    }
    record.update(override)
    return {k: v for k, v in record.items() if v is not ...}


def parse(data: bytes, **kw: Any) -> Any:
    return parse_crash_record(data, artifact_dir=DIR, **kw)


# --- the parser ----------------------------------------------------------------------------------


def test_a_record_as_the_node_writes_it() -> None:
    data = go_marshal(node_record())
    assert b"\\u003c\\u0026 \\u003e" in data  # Go's HTML escaping, as on disk
    rec = parse(data, files=["panic.json", "deep-dump.json"], source="file:///data/crash",
                fetched_at=Instant(1_776_240_001, 5))
    assert rec.occurred_at == Instant(1_776_240_000, 123_456_789)
    assert rec.component == "liaison-grpc"
    assert rec.panic_value == "runtime error: index out of range [3] with length 3 <& >"
    assert rec.recovered is True
    assert rec.goroutine_stack == STACK and not rec.stack_truncated
    assert [b.stage for b in rec.breadcrumbs] == ["received debug panic request",
                                                   "trigger debug panic"]
    first, second = rec.breadcrumbs
    assert first.time == Instant(1_776_239_999, 900_000_000)
    assert dict(first.fields) == {"method": "POST", "path": "/debug/panic"}
    assert second.component == "" and dict(second.fields) == {}
    assert rec.process_metadata["nodeType"] == "liaison"
    assert rec.artifact_dir == DIR and rec.files == ("deep-dump.json", "panic.json")
    assert rec.source == "file:///data/crash" and rec.has_panic_record


def test_upstream_minimal_record_and_unknown_keys() -> None:
    # The literal panic.json of upstream's fswatcher_test, plus a key a newer node might add.
    data = (b'{"component":"fs-notify-test","panicValue":"detected via fsnotify",'
            b'"goroutineStack":"goroutine 1 [running]:\\n","occurredAt":"2026-04-15T08:00:00Z",'
            b'"recovered":true,"futureField":{"x":[1,2]}}')
    rec = parse(data)
    assert rec.component == "fs-notify-test" and rec.goroutine_stack == "goroutine 1 [running]:\n"
    assert rec.occurred_at == Instant(1_776_240_000, 0)
    assert rec.breadcrumbs == () and dict(rec.process_metadata) == {}


def test_time_with_an_offset() -> None:
    rec = parse(go_marshal(node_record(occurredAt="2026-04-15T16:00:00.5+08:00")))
    assert rec.occurred_at == Instant(1_776_240_000, 500_000_000)


@pytest.mark.parametrize("doc", [b"{}", b"null", b' {"occurredAt":"0001-01-01T00:00:00Z",'
                                 b'"component":"","recovered":false} '])
def test_a_record_that_carries_nothing(doc: bytes) -> None:
    # Upstream lists the artifact but sends no panic_record for it; so do we.
    rec = parse(doc)
    assert not rec.has_panic_record and rec.occurred_at is None
    assert "panic_record" not in to_proto_fields(rec)


def test_nulls_leave_fields_empty_as_go_does() -> None:
    rec = parse(go_marshal(node_record(breadcrumbs=None, processMetadata=None, panicValue=None,
                                       recovered=None)))
    assert rec.breadcrumbs == () and dict(rec.process_metadata) == {}
    assert rec.panic_value == "" and rec.recovered is False


def test_to_proto_fields_builds_the_message() -> None:
    rec = parse(go_marshal(node_record()), files=["deep-dump.json", "panic.json"],
                source="file:///data/crash", fetched_at=Instant(1_776_240_001, 5))
    fields = to_proto_fields(rec)
    msg = rpc_pb2.StreamCrashDiagnosticsRequest(**fields)
    again = rpc_pb2.StreamCrashDiagnosticsRequest.FromString(msg.SerializeToString())
    assert again.artifact_dir == DIR and list(again.files) == ["deep-dump.json", "panic.json"]
    assert again.source_endpoint == "file:///data/crash"
    assert (again.fetched_at.seconds, again.fetched_at.nanos) == (1_776_240_001, 5)
    panic = again.panic_record
    assert (panic.occurred_at.seconds, panic.occurred_at.nanos) == (1_776_240_000, 123_456_789)
    assert panic.component == "liaison-grpc" and panic.recovered
    assert panic.goroutine_stack == STACK
    assert [b.stage for b in panic.breadcrumbs] == ["received debug panic request",
                                                     "trigger debug panic"]
    assert dict(panic.breadcrumbs[0].fields) == {"method": "POST", "path": "/debug/panic"}
    assert panic.breadcrumbs[1].HasField("time")
    assert dict(panic.process_metadata)["listenAddr"] == ":17912"


def test_lone_surrogates_become_replacement_characters() -> None:
    # Go's decoder turns a lone surrogate escape into U+FFFD; protobuf would refuse it.
    rec = parse(b'{"component":"c\\ud800","panicValue":"v\\udfff",'
                b'"processMetadata":{"k\\ud800":"x"}}')
    assert rec.component == "c\ufffd" and rec.panic_value == "v\ufffd"
    assert dict(rec.process_metadata) == {"k\ufffd": "x"}
    rpc_pb2.StreamCrashDiagnosticsRequest(**to_proto_fields(rec)).SerializeToString()


def test_a_long_stack_and_panic_value_are_cut_with_a_mark() -> None:
    limits = CrashLimits(max_stack_chars=100, max_panic_value_chars=10)
    rec = parse(go_marshal(node_record(goroutineStack="x" * 250, panicValue="y" * 11)),
                limits=limits)
    assert rec.stack_truncated and rec.goroutine_stack.startswith("x" * 100)
    assert rec.goroutine_stack.endswith("[truncated by the FODC agent: 150 more characters]")
    assert rec.panic_value_truncated and rec.panic_value.startswith("y" * 10 + "\n...")


def test_a_long_map_value_is_cut_not_refused() -> None:
    rec = parse(go_marshal(node_record(processMetadata={"query": "q" * 40})),
                limits=CrashLimits(max_string=32))
    assert rec.process_metadata["query"].startswith("q" * 32 + "\n... [truncated")


def test_error_names_the_file_and_the_reason() -> None:
    with pytest.raises(CrashRecordError) as info:
        parse(b"[1]")
    err = info.value
    assert isinstance(err, FodcError)
    assert err.file == f"{DIR}/panic.json" and err.reason == "expected a JSON object, got an array"
    assert str(err) == f"crash record {DIR}/panic.json: expected a JSON object, got an array"
    with pytest.raises(CrashRecordError) as info:
        parse(b"", file="/data/crash/x/panic.json")
    assert info.value.file == "/data/crash/x/panic.json"


def test_every_truncation_of_a_record_is_refused() -> None:
    data = go_marshal(node_record())
    for cut in range(len(data)):
        with pytest.raises(CrashRecordError) as info:
            parse(data[:cut])
        if cut > 0:
            assert "truncated" in info.value.reason or "UTF-8" in info.value.reason, cut


SMALL = CrashLimits(max_file_bytes=64 * 1024, max_string=32, max_breadcrumbs=2, max_map_entries=2,
                    max_depth=4, max_containers=8)


@pytest.mark.parametrize(("data", "reason"), [
    (b"", "empty file"),
    (b"   \n", "empty file"),
    (b'{"component":"a"', "truncated"),
    (b'{"component":"a', "truncated"),
    (b"{component: a}", "not valid JSON"),
    (b'{"a":1} {"b":2}', "not valid JSON"),
    (b'{"x":NaN}', "not valid JSON"),
    (b"\xef\xbb\xbf{}", "not valid JSON"),  # a BOM: Go refuses it too
    (b'{"component":"\xff\xfe"}', "not UTF-8"),
    (b'"a string"', "expected a JSON object, got a string"),
    (b'{"component":7}', "component: expected a string, got a number"),
    (b'{"recovered":"true"}', "recovered: expected a boolean, got a string"),
    (b'{"occurredAt":"yesterday"}', "occurredAt"),
    (b'{"occurredAt":"2026-13-01T00:00:00Z"}', "occurredAt"),
    (b'{"occurredAt":"2026-01-01T00:00:00+24:00"}', "offset"),
    (b'{"breadcrumbs":{}}', "breadcrumbs: expected an array, got an object"),
    (b'{"breadcrumbs":[7]}', "breadcrumbs[0]: expected an object, got a number"),
    (b'{"breadcrumbs":[{"fields":{"a":1}}]}', "breadcrumbs[0].fields.a: expected a string"),
    (b'{"processMetadata":[]}', "processMetadata: expected an object, got an array"),
    (b'{"component":"' + b"a" * 33 + b'"}', "hostile: component is longer than 32"),
    (b'{"processMetadata":{"' + b"k" * 33 + b'":""}}', "hostile: a key of processMetadata"),
    (b'{"processMetadata":{"a":"","b":"","c":""}}', "hostile: processMetadata has more than 2"),
    (b'{"breadcrumbs":[{},{},{}]}', "hostile: more than 2 breadcrumbs"),
    (b'{"breadcrumbs":[{"stage":"' + b"s" * 33 + b'"}]}',
     "hostile: breadcrumbs[0].stage is longer"),
    (b'{"x":[' + b"0," * 9000 + b"0]}", "hostile: more than 8192 JSON values"),
    (b"[" * 5 + b"]" * 5, "hostile: nested deeper than 4"),
    (b'{"x":' + b"[" * 1000 + b"]" * 1000 + b"}", "hostile: more than 8"),
    (b'{"x":[' + b"{}," * 20 + b"{}]}", "hostile: more than 8"),
    (b'{"x":"' + b"a" * 65537 + b'"}', "oversized: more than 65536 bytes"),
], ids=lambda value: repr(value)[:40])
def test_bad_records_are_refused(data: bytes, reason: str) -> None:
    with pytest.raises(CrashRecordError) as info:
        parse(data, limits=SMALL)
    assert reason in info.value.reason


def test_deep_nesting_under_the_default_limits() -> None:
    # 100 000 levels would blow the C decoder's recursion guard; refused before decoding.
    with pytest.raises(CrashRecordError, match="hostile"):
        parse(b'{"x":' + b"[" * 100_000 + b"]" * 100_000 + b"}")


def test_a_file_ending_in_escaped_quotes_is_refused() -> None:
    # A scan that retried every quote was quadratic (8 s for 40 KB of this). No timing is
    # asserted here (speed lives in benchmarks/); the input is large enough that a quadratic
    # scan would stall the suite for hours rather than pass unnoticed.
    data = b'{"x":"' + b'\\"' * 400_000
    with pytest.raises(CrashRecordError, match="ends inside a string|over"):
        parse(data)


def test_brackets_inside_strings_do_not_count() -> None:
    rec = parse(go_marshal(node_record(panicValue='[[[[[[[[[[{{{{{{{{{{\\"')),
                limits=CrashLimits(max_depth=4))
    assert rec.panic_value.startswith("[[[[")


# --- the keeper ----------------------------------------------------------------------------------


def artifact(name: str, size: int = 100, mtime: float = 1000.0,
             *extra: FileStat) -> ArtifactListing:
    return ArtifactListing(name, (FileStat(PANIC_FILE, size, mtime), *extra))


def record_bytes(occurred: str, component: str = "c") -> bytes:
    return go_marshal(node_record(occurredAt=occurred, component=component))


def test_a_file_is_read_only_once_seen_twice_unchanged() -> None:
    keeper = CrashKeeper(source="file:///crash", max_records=4)
    data = record_bytes("2026-04-15T08:00:00Z")
    assert keeper.observe([ArtifactListing(DIR, ())]) == []          # directory made, no record
    assert keeper.observe([artifact(DIR, 10, 1000.0)]) == []          # first look
    assert keeper.pending == 1
    assert keeper.observe([artifact(DIR, len(data), 1000.5)]) == []   # still growing
    [req] = keeper.observe([artifact(DIR, len(data), 1000.5,
                                     FileStat("deep-dump.json", 9, 999.0))])
    assert (req.artifact_dir, req.file, req.max_bytes) == (DIR, PANIC_FILE, 1024 * 1024 + 1)
    assert req.files == ("deep-dump.json", "panic.json")
    rec = keeper.deliver(req, data, now=1_776_240_005.25)
    assert rec is not None and rec.source == "file:///crash"
    assert rec.fetched_at == Instant(1_776_240_005, 250_000_000)
    assert rec.files == ("deep-dump.json", "panic.json")
    assert keeper.records() == (rec,) and keeper.pending == 0
    assert keeper.observe([artifact(DIR, len(data), 1000.5)]) == []   # never read again


def test_a_file_that_changed_while_being_read_is_looked_at_again() -> None:
    keeper = CrashKeeper(source="s", max_records=4)
    data = record_bytes("2026-04-15T08:00:00Z")
    keeper.observe([artifact(DIR, len(data) + 7)])
    [req] = keeper.observe([artifact(DIR, len(data) + 7)])
    assert keeper.deliver(req, data, now=0.0) is None and len(keeper) == 0
    assert keeper.observe([artifact(DIR, len(data))]) == []
    [req] = keeper.observe([artifact(DIR, len(data))])
    assert keeper.deliver(req, data, now=0.0) is not None


def test_newest_records_are_kept_and_removed_ones_forgotten() -> None:
    keeper = CrashKeeper(source="s", max_records=2)
    # Names sort against time on purpose: order is by occurredAt.
    docs = {"c-1": "2026-04-15T08:00:00Z", "b-2": "2026-04-15T09:00:00Z",
            "a-3": "2026-04-15T10:00:00Z"}
    listing = [artifact(name, len(record_bytes(t))) for name, t in docs.items()]
    keeper.observe(listing)
    for req in keeper.observe(listing):
        keeper.deliver(req, record_bytes(docs[req.artifact_dir]), now=0.0)
    assert [r.artifact_dir for r in keeper.records()] == ["a-3", "b-2"]
    assert keeper.observe(listing) == []  # the evicted one is not read again
    # An older record found late is not kept past the cap.
    late = artifact("d-0", len(record_bytes("2026-04-15T07:00:00Z")))
    keeper.observe([*listing, late])
    [req] = keeper.observe([*listing, late])
    assert keeper.deliver(req, record_bytes("2026-04-15T07:00:00Z"), now=0.0) is None
    # The node pruned a-3 and b-2: their records stay (the evidence outlives the files); c-1
    # is not brought back (it was already read).
    rest = [entry for entry in listing if entry.name == "c-1"]
    assert keeper.observe(rest) == []
    assert [r.artifact_dir for r in keeper.records()] == ["a-3", "b-2"]
    # a-3 comes back: it is a new artifact again, read again, and replaces its old record.
    back = [entry for entry in listing if entry.name != "b-2"]
    keeper.observe(back)
    [req] = keeper.observe(back)
    assert req.artifact_dir == "a-3"
    assert keeper.deliver(req, record_bytes(docs["a-3"], component="C"), now=0.0)
    assert [r.component for r in keeper.records()] == ["C", "c"]


def test_records_under_the_cap_are_all_kept() -> None:
    # A negative slice once evicted all but the newest while fewer than max_records - 1 were held.
    keeper = CrashKeeper(source="s", max_records=5)
    docs = {f"n{i}": f"2026-04-15T0{i}:00:00Z" for i in range(1, 5)}
    listing = [artifact(name, len(record_bytes(t))) for name, t in docs.items()]
    keeper.observe(listing)
    for req in keeper.observe(listing):
        keeper.deliver(req, record_bytes(docs[req.artifact_dir]), now=0.0)
    assert [r.artifact_dir for r in keeper.records()] == ["n4", "n3", "n2", "n1"]


def test_a_record_without_a_time_is_ordered_by_the_file_mtime() -> None:
    keeper = CrashKeeper(source="s", max_records=2)
    timed = record_bytes("2026-04-15T08:00:00Z")  # 1776240000
    listing = [artifact("t", len(timed)), artifact("u", 2, 1_776_240_100.0)]
    keeper.observe(listing)
    for req in keeper.observe(listing):
        keeper.deliver(req, timed if req.artifact_dir == "t" else b"{}", now=0.0)
    assert [r.artifact_dir for r in keeper.records()] == ["u", "t"]


def test_a_bad_record_is_reported_once_until_it_changes() -> None:
    keeper = CrashKeeper(source="s", max_records=2)
    keeper.observe([artifact(DIR, 3)])
    [req] = keeper.observe([artifact(DIR, 3)])
    with pytest.raises(CrashRecordError, match="truncated"):
        keeper.deliver(req, b'{"a', now=0.0)
    assert keeper.observe([artifact(DIR, 3)]) == []
    data = record_bytes("2026-04-15T08:00:00Z")
    keeper.observe([artifact(DIR, len(data), 2000.0)])
    [req] = keeper.observe([artifact(DIR, len(data), 2000.0)])
    assert keeper.deliver(req, data, now=0.0) is not None


def test_an_oversized_record_is_refused_from_its_first_bytes() -> None:
    limits = CrashLimits(max_file_bytes=64)
    keeper = CrashKeeper(source="s", max_records=2, limits=limits)
    keeper.observe([artifact(DIR, 10**9)])
    [req] = keeper.observe([artifact(DIR, 10**9)])
    assert req.max_bytes == 65
    with pytest.raises(CrashRecordError, match="oversized"):
        keeper.deliver(req, b"{" + b" " * 64, now=0.0)


def test_unsafe_names_and_listing_caps() -> None:
    keeper = CrashKeeper(source="s", max_records=2, max_listed=2)
    listing = [artifact(name) for name in ("..", ".", "a/b", "a\\b", "a\0b", "", "n1", "n2", "n3")]
    keeper.observe(listing)
    assert [r.artifact_dir for r in keeper.observe(listing)] == ["n2", "n3"]
    with pytest.raises(ValueError):
        CrashKeeper(source="s", max_records=0)


def test_a_request_for_a_removed_artifact_is_dropped() -> None:
    keeper = CrashKeeper(source="s", max_records=2)
    data = record_bytes("2026-04-15T08:00:00Z")
    keeper.observe([artifact(DIR, len(data))])
    [req] = keeper.observe([artifact(DIR, len(data))])
    keeper.observe([])
    assert keeper.deliver(req, data, now=0.0) is None and keeper.records() == ()
    # Listed again, but changed before the read was handed over: not parsed.
    keeper.observe([artifact(DIR, len(data))])
    [req] = keeper.observe([artifact(DIR, len(data))])
    keeper.observe([artifact(DIR, len(data), 1234.0)])
    assert keeper.deliver(req, data, now=0.0) is None and keeper.records() == ()


# --- anything at all -----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_end_in_a_record_or_a_crash_record_error(data: bytes) -> None:
    try:
        parse(data)
    except CrashRecordError:
        pass


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_damaged_node_records_end_in_a_record_or_a_crash_record_error(data: st.DataObject) -> None:
    raw = bytearray(go_marshal(node_record()))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] = data.draw(st.sampled_from(b'{}[]",:\\ 0atn\xff\x00'))
    try:
        rec = parse(bytes(raw))
    except CrashRecordError:
        return
    rpc_pb2.StreamCrashDiagnosticsRequest(**to_proto_fields(rec)).SerializeToString()
