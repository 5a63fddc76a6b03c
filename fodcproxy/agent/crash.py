"""Crash records: the panic record a BanyanDB node leaves in its crash directory, read sans-IO.

The format (docs/crash-records.md has the whole story): the node's crash directory holds one
sub-directory per recovered panic, named ``<UTC time>-<component>-<pid>`` (for example
``20260415T080000.000000000Z-liaison-grpc-4242``). Inside it, ``panic.json`` is the record (Go's
``json.Marshal`` of upstream's ``panicdiag.PanicRecord``) and may sit beside other artifacts
(``deep-dump.json``, written *before* ``panic.json``). A directory without ``panic.json`` is not
an artifact yet.

Nothing here touches the file system, a clock or Trio, in the manner of h11's ``Connection``:
``parse_crash_record`` takes the bytes a caller read, and ``CrashKeeper`` takes directory
listings (names, sizes, modification times) and the time as arguments, says which files to read,
and keeps the newest records. The agent's Trio shell does the reading and the watching.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import attrs

from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2
from fodcproxy.errors import FodcError, GrpcCode

__all__ = [
    "PANIC_FILE", "ArtifactListing", "Breadcrumb", "CrashKeeper", "CrashLimits", "CrashRecord",
    "CrashRecordError", "FileStat", "Instant", "ReadRequest", "encode_record", "fit_record", "record_cost",
    "parse_crash_record", "to_proto_fields",
]

PANIC_FILE = "panic.json"
TRUNCATION_MARK = "\n... [truncated by the FODC agent: {n} more characters]"


class CrashRecordError(FodcError):
    """A crash record that cannot be read: malformed, truncated, oversized or hostile.

    `file` names the record (``<artifact dir>/panic.json`` unless the caller said otherwise) and
    `reason` says what is wrong with it, for a person.
    """

    grpc_code = GrpcCode.DATA_LOSS
    http_status = 422

    def __init__(self, file: str, reason: str) -> None:
        super().__init__(f"crash record {file}: {reason}")
        self.file = file
        self.reason = reason


@attrs.frozen
class CrashLimits:
    """What one record may cost.

    Refused: a file over `max_file_bytes`; JSON nested deeper than `max_depth`, with more than
    `max_containers` arrays/objects or more than `max_values` values (counted by commas); a
    component, stage, time or map key over `max_string` characters; more than `max_breadcrumbs`
    breadcrumbs (the node's writer keeps at most 64) or `max_map_entries` entries in a map.
    Cut, with a visible mark: a goroutine stack over `max_stack_chars`, a panic value over
    `max_panic_value_chars`, a map value (metadata, breadcrumb field) over `max_string`.
    """

    max_file_bytes: int = 1024 * 1024
    max_stack_chars: int = 256 * 1024
    max_panic_value_chars: int = 64 * 1024
    max_string: int = 4096
    max_breadcrumbs: int = 64
    max_map_entries: int = 64
    max_depth: int = 8
    max_containers: int = 1024
    max_values: int = 8192


@attrs.frozen(order=True)
class Instant:
    """A UTC instant to the nanosecond (what a Go ``time.Time`` and a protobuf Timestamp hold)."""

    seconds: int
    nanos: int = 0

    @classmethod
    def from_unix(cls, ts: float) -> Instant:
        """From Unix seconds (a float, as the agent's shell passes ``time.time()``)."""
        seconds = int(ts // 1)
        return cls(seconds, min(int(round((ts - seconds) * 1e9)), 999_999_999))

    @classmethod
    def from_rfc3339(cls, text: str) -> Instant:
        """Parse Go's RFC 3339 form (``2026-04-15T08:00:00.123456789Z`` or ``...+08:00``).

        Raises ValueError for anything else."""
        match = _RFC3339_RE.fullmatch(text)
        if match is None:
            raise ValueError(f"{text[:64]!r} is not an RFC 3339 time")
        year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
        dt = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second),
                      tzinfo=UTC)
        offset = 0
        if not zulu:
            if int(off_h) > 23 or int(off_m) > 59:
                raise ValueError(f"{text!r} has an invalid UTC offset")
            offset = (int(off_h) * 3600 + int(off_m) * 60) * (-1 if sign == "-" else 1)
        seconds = (dt - _EPOCH) // _ONE_SECOND - offset
        return cls(seconds, int(fraction.ljust(9, "0")) if fraction else 0)

    @property
    def unix(self) -> float:
        """Unix seconds as a float (loses precision below the microsecond)."""
        return self.seconds + self.nanos / 1e9

    def to_proto_fields(self) -> dict[str, int]:
        """The fields of a ``google.protobuf.Timestamp``."""
        return {"seconds": self.seconds, "nanos": self.nanos}


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC) - _EPOCH
_RFC3339_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)
# Go writes a zero time.Time as this; upstream treats it as "no time".
_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _frozen_map(value: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(value))


@attrs.frozen
class Breadcrumb:
    """A stage the panicking call passed through, oldest first in `CrashRecord.breadcrumbs`."""

    time: Instant | None
    stage: str
    component: str = ""
    fields: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)


@attrs.frozen
class CrashRecord:
    """One crash artifact: the node's panic record and where it was found.

    `occurred_at` is None when the record has no time (Go's zero time). `files` are the artifact
    directory's files, sorted. `source` is where the agent found it (``file://<crash dir>``, as
    upstream sends in ``source_endpoint``); `fetched_at` is when the agent accepted it.
    `stack_truncated` / `panic_value_truncated` say the text was cut to `CrashLimits`.
    """

    occurred_at: Instant | None
    component: str
    panic_value: str
    recovered: bool
    goroutine_stack: str
    breadcrumbs: tuple[Breadcrumb, ...]
    process_metadata: Mapping[str, str] = attrs.field(converter=_frozen_map)
    artifact_dir: str
    files: tuple[str, ...]
    source: str
    fetched_at: Instant | None = None
    stack_truncated: bool = False
    panic_value_truncated: bool = False

    @property
    def has_panic_record(self) -> bool:
        """False for a ``panic.json`` that carries nothing (upstream then sends no panic_record)."""
        return bool(self.occurred_at or self.component or self.panic_value
                    or self.goroutine_stack)


def parse_crash_record(data: bytes, *, artifact_dir: str, files: Sequence[str] = (PANIC_FILE,),
                       source: str = "", fetched_at: Instant | None = None,
                       limits: CrashLimits = CrashLimits(), file: str | None = None) -> CrashRecord:
    """Parse the bytes of one ``panic.json`` into a `CrashRecord`.

    `data` is what the caller read: at most ``limits.max_file_bytes + 1`` bytes is enough, as
    anything longer is refused. Unknown keys are ignored and ``null`` leaves a field empty, as Go's
    ``json.Unmarshal`` does. Raises `CrashRecordError` (naming `file`, by default
    ``<artifact_dir>/panic.json``) for an empty, truncated, oversized, non-UTF-8, non-JSON,
    wrongly typed, too deep or too large record. Memory used is bounded by the limits.
    """
    name = file if file is not None else f"{artifact_dir}/{PANIC_FILE}"

    def fail(reason: str) -> CrashRecordError:
        return CrashRecordError(name, reason)

    if len(data) > limits.max_file_bytes:
        raise fail(f"oversized: more than {limits.max_file_bytes} bytes")
    if not data.strip():
        raise fail("empty file (the node may have died while writing it)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fail(f"not UTF-8 (byte {exc.start})") from None
    _check_structure(text, limits, fail)
    try:
        doc = json.loads(text, parse_constant=_refuse_constant)
    except ValueError as exc:
        where = getattr(exc, "pos", None)
        if where is not None and where >= len(text.rstrip()):
            raise fail("truncated: the JSON ends early") from None
        raise fail(f"not valid JSON ({exc})") from None
    except RecursionError:  # _check_structure makes this unreachable; kept as a last guard
        raise fail("hostile: nested too deep") from None
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise fail(f"expected a JSON object, got {_json_type(doc)}")

    reader = _Reader(limits, fail)
    stack, stack_cut = reader.text(doc, "goroutineStack", limits.max_stack_chars)
    value, value_cut = reader.text(doc, "panicValue", limits.max_panic_value_chars)
    return CrashRecord(
        occurred_at=reader.time(doc, "occurredAt"),
        component=reader.string(doc, "component"),
        panic_value=value,
        recovered=reader.boolean(doc, "recovered"),
        goroutine_stack=stack,
        breadcrumbs=reader.breadcrumbs(doc.get("breadcrumbs")),
        process_metadata=reader.string_map(doc.get("processMetadata"), "processMetadata"),
        artifact_dir=artifact_dir,
        files=tuple(sorted(files)),
        source=source,
        fetched_at=fetched_at,
        stack_truncated=stack_cut,
        panic_value_truncated=value_cut,
    )


# One JSON string from its opening quote, escapes included. Possessive quantifiers: a string
# that never ends fails in linear time, with no backtracking.
_JSON_STRING_RE = re.compile(r'"[^"\\]*+(?:\\.[^"\\]*+)*+"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_LONE_SURROGATE_RE = re.compile("[\ud800-\udfff]")


def _check_structure(text: str, limits: CrashLimits,
                     fail: Callable[[str], CrashRecordError]) -> None:
    """Refuse deep nesting, too many containers or values, and text that ends inside a string,
    before `json.loads` builds anything. Linear in the text: strings are skipped one anchored
    match at a time, and the first one that does not end stops the scan."""
    depth = containers = values = strings = 0
    pos = 0
    while True:
        quote = text.find('"', pos)
        segment = text[pos:] if quote < 0 else text[pos:quote]
        values += segment.count(",")
        if values >= limits.max_values:
            raise fail(f"hostile: more than {limits.max_values} JSON values")
        brackets = _BRACKETS.findall(segment)
        containers += len(brackets)
        if containers > 2 * limits.max_containers:
            raise fail(f"hostile: more than {limits.max_containers} JSON arrays/objects")
        for char in brackets:
            depth += 1 if char in "[{" else -1
            if depth > limits.max_depth:
                raise fail(f"hostile: nested deeper than {limits.max_depth}")
        if quote < 0:
            break
        strings += 1
        if strings > 2 * limits.max_values:
            raise fail(f"hostile: more than {limits.max_values} JSON values")
        match = _JSON_STRING_RE.match(text, quote)
        if match is None:
            raise fail("truncated: the file ends inside a string")
        pos = match.end()
    if depth > 0:
        raise fail("truncated: the JSON ends early")


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _json_type(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), "null")


class _Reader:
    """Typed access to the decoded document, Go's way: null is empty, a wrong type is an error."""

    def __init__(self, limits: CrashLimits, fail: Callable[[str], CrashRecordError]) -> None:
        self._limits = limits
        self._fail = fail

    def _clean(self, value: str) -> str:
        # Go replaces a lone surrogate escape with U+FFFD; protobuf refuses it in a string.
        return _LONE_SURROGATE_RE.sub("\ufffd", value)

    def string(self, obj: Mapping[str, Any], key: str, *, where: str = "") -> str:
        value = obj.get(key)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise self._fail(f"{where}{key}: expected a string, got {_json_type(value)}")
        if len(value) > self._limits.max_string:
            raise self._fail(f"hostile: {where}{key} is longer than {self._limits.max_string}"
                             " characters")
        return self._clean(value)

    def text(self, obj: Mapping[str, Any], key: str, cap: int) -> tuple[str, bool]:
        value = obj.get(key)
        if value is None:
            return "", False
        if not isinstance(value, str):
            raise self._fail(f"{key}: expected a string, got {_json_type(value)}")
        if len(value) <= cap:
            return self._clean(value), False
        return self._clean(value[:cap]) + TRUNCATION_MARK.format(n=len(value) - cap), True

    def boolean(self, obj: Mapping[str, Any], key: str) -> bool:
        value = obj.get(key)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self._fail(f"{key}: expected a boolean, got {_json_type(value)}")
        return value

    def time(self, obj: Mapping[str, Any], key: str, *, where: str = "") -> Instant | None:
        text = self.string(obj, key, where=where)
        if not text or text == _GO_ZERO_TIME:
            return None
        try:
            return Instant.from_rfc3339(text)
        except ValueError as exc:
            raise self._fail(f"{where}{key}: {exc}") from None

    def string_map(self, value: Any, where: str) -> dict[str, str]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self._fail(f"{where}: expected an object, got {_json_type(value)}")
        if len(value) > self._limits.max_map_entries:
            raise self._fail(f"hostile: {where} has more than {self._limits.max_map_entries}"
                             " entries")
        out = {}
        for key in value:
            if len(key) > self._limits.max_string:
                raise self._fail(f"hostile: a key of {where} is longer than"
                                 f" {self._limits.max_string} characters")
            item = value[key]
            if item is not None and not isinstance(item, str):
                raise self._fail(f"{where}.{key[:64]}: expected a string, got {_json_type(item)}")
            out[self._clean(key)] = self.text(value, key, self._limits.max_string)[0]
        return out

    def breadcrumbs(self, value: Any) -> tuple[Breadcrumb, ...]:
        if value is None:
            return ()
        if not isinstance(value, list):
            raise self._fail(f"breadcrumbs: expected an array, got {_json_type(value)}")
        if len(value) > self._limits.max_breadcrumbs:
            raise self._fail(f"hostile: more than {self._limits.max_breadcrumbs} breadcrumbs")
        out = []
        for index, item in enumerate(value):
            where = f"breadcrumbs[{index}]."
            if item is None:
                item = {}
            if not isinstance(item, dict):
                raise self._fail(f"breadcrumbs[{index}]: expected an object,"
                                 f" got {_json_type(item)}")
            out.append(Breadcrumb(
                time=self.time(item, "time", where=where),
                stage=self.string(item, "stage", where=where),
                component=self.string(item, "component", where=where),
                fields=self.string_map(item.get("fields"), f"breadcrumbs[{index}].fields"),
            ))
        return tuple(out)


def to_proto_fields(record: CrashRecord) -> dict[str, Any]:
    """The fields of a ``StreamCrashDiagnosticsRequest`` for `record`, as plain values.

    ``rpc_pb2.StreamCrashDiagnosticsRequest(**to_proto_fields(record))`` builds the message:
    timestamps are ``{"seconds", "nanos"}`` dicts, and ``panic_record`` is left out for a record
    that carries nothing (as upstream's agent does). Empty maps and absent times are left out.
    """
    fields: dict[str, Any] = {
        "source_endpoint": record.source,
        "artifact_dir": record.artifact_dir,
        "files": list(record.files),
    }
    if record.fetched_at is not None:
        fields["fetched_at"] = record.fetched_at.to_proto_fields()
    if record.has_panic_record:
        panic: dict[str, Any] = {
            "component": record.component,
            "panic_value": record.panic_value,
            "recovered": record.recovered,
            "goroutine_stack": record.goroutine_stack,
            "breadcrumbs": [_breadcrumb_fields(b) for b in record.breadcrumbs],
            "process_metadata": dict(record.process_metadata),
        }
        if record.occurred_at is not None:
            panic["occurred_at"] = record.occurred_at.to_proto_fields()
        fields["panic_record"] = panic
    return fields


_OBJECT_COST = 64  # a Breadcrumb, a mapping proxy, a tuple: roughly, per object


def record_cost(record: CrashRecord) -> int:
    """The memory `record` holds, in bytes: ``sys.getsizeof`` of each of its strings (CPython
    spends 1, 2 or 4 bytes per character, by the widest character of the string, so one emoji
    in a 256 Ki stack makes it 1 MiB), the dict entries of its maps, and a flat cost per object.
    tests/test_crash_watch.py checks it against tracemalloc."""
    strings: list[str] = [record.component, record.panic_value, record.goroutine_stack,
                          record.artifact_dir, record.source, *record.files]
    maps = [record.process_metadata]
    for crumb in record.breadcrumbs:
        strings += (crumb.stage, crumb.component)
        maps.append(crumb.fields)
    cost = 512 + _OBJECT_COST * (len(record.breadcrumbs) * 3 + len(record.files))
    for mapping in maps:
        strings += mapping.keys()
        strings += mapping.values()
        cost += sys.getsizeof(dict(mapping)) + _OBJECT_COST
    return cost + sum(sys.getsizeof(text) for text in strings)


def encode_record(record: CrashRecord) -> bytes:
    """`record` as a serialized ``StreamCrashDiagnosticsRequest``."""
    return rpc_pb2.StreamCrashDiagnosticsRequest(**to_proto_fields(record)).SerializeToString()


TRIM_MARK = "\n... [trimmed by the FODC agent to fit a {limit}-byte gRPC message: {what}]"
MIN_FIT_BYTES = 2048
_MARK_ROOM = 320  # bytes kept free for TRIM_MARK
_LAST_RESORT = 256  # bytes each string keeps when nothing else is left to cut


def fit_record(record: CrashRecord, max_bytes: int) -> tuple[bytes, tuple[str, ...]]:
    """Encode `record` in at most `max_bytes` (what one gRPC message may carry), trimming it if
    it is larger; returns the bytes and what was cut, for the log (empty when nothing was).

    Cut in this order until it fits: the goroutine stack down to a quarter of the room and the
    panic value down to an eighth (their heads are kept: the panicking frames come first), then
    breadcrumbs (oldest first: the stages right before the panic are kept), the process
    metadata, the files other than ``panic.json``, then the stack and the panic value further,
    and last every remaining string down to 256 bytes. The stack of a trimmed record ends with a
    mark saying what was cut. Raises ValueError for `max_bytes` under `MIN_FIT_BYTES`.
    """
    if max_bytes < MIN_FIT_BYTES:
        raise ValueError(f"max_bytes must be at least {MIN_FIT_BYTES}")
    data = encode_record(record)
    if len(data) <= max_bytes:
        return data, ()
    target = max_bytes - _MARK_ROOM
    cut_bytes = {"stack": 0, "panic value": 0}
    cuts: list[str] = []
    size = len(data)

    def cut_text(rec: CrashRecord, field: str, label: str, floor: int) -> CrashRecord:
        nonlocal size
        raw = getattr(rec, field).encode("utf-8")
        keep = max(floor, len(raw) - (size - target), 0)
        if keep >= len(raw):
            return rec
        rec = attrs.evolve(rec, **{field: raw[:keep].decode("utf-8", "ignore")})
        cut_bytes[label] += len(raw) - len(getattr(rec, field).encode("utf-8"))
        size = len(encode_record(rec))
        return rec

    record = attrs.evolve(record, stack_truncated=True)
    record = cut_text(record, "goroutine_stack", "stack", target // 4)
    if size > target:
        record = cut_text(record, "panic_value", "panic value", target // 8)
    if size > target and record.breadcrumbs:
        crumbs = list(record.breadcrumbs)
        dropped = 0
        while crumbs and size > target:
            crumbs.pop(0)
            dropped += 1
            size = len(encode_record(attrs.evolve(record, breadcrumbs=tuple(crumbs))))
        record = attrs.evolve(record, breadcrumbs=tuple(crumbs))
        cuts.append(f"{dropped} oldest breadcrumbs dropped")
    if size > target and record.process_metadata:
        record = attrs.evolve(record, process_metadata={})
        cuts.append("process metadata dropped")
        size = len(encode_record(record))
    if size > target and len(record.files) > 1:
        kept = tuple(f for f in record.files if f == PANIC_FILE)
        cuts.append(f"{len(record.files) - len(kept)} file names dropped")
        record = attrs.evolve(record, files=kept)
        size = len(encode_record(record))
    if size > target:
        record = cut_text(record, "goroutine_stack", "stack", 0)
    if size > target:
        record = cut_text(record, "panic_value", "panic value", 0)
    cuts[:0] = [f"{label} cut by {n} bytes" for label, n in cut_bytes.items() if n]
    if size > target:
        def short(text: str) -> str:
            return text.encode("utf-8")[:_LAST_RESORT].decode("utf-8", "ignore")
        record = attrs.evolve(record, component=short(record.component),
                              artifact_dir=short(record.artifact_dir), source=short(record.source),
                              goroutine_stack="", panic_value="", breadcrumbs=(),
                              process_metadata={}, files=())
        cuts.append(f"every field cut to {_LAST_RESORT} bytes")
    what = "; ".join(cuts)[:160]
    record = attrs.evolve(record, goroutine_stack=record.goroutine_stack
                          + TRIM_MARK.format(limit=max_bytes, what=what))
    data = encode_record(record)
    assert len(data) <= max_bytes, (len(data), max_bytes)
    return data, tuple(cuts)


def _breadcrumb_fields(crumb: Breadcrumb) -> dict[str, Any]:
    out: dict[str, Any] = {"stage": crumb.stage, "component": crumb.component,
                           "fields": dict(crumb.fields)}
    if crumb.time is not None:
        out["time"] = crumb.time.to_proto_fields()
    return out


# --- the keeper ----------------------------------------------------------------------------------


@attrs.frozen
class FileStat:
    """One file of an artifact directory as listed: its name, size in bytes and mtime (Unix s)."""

    name: str
    size: int
    mtime: float


def _file_stats(files: Iterable[FileStat]) -> tuple[FileStat, ...]:
    return tuple(files)


@attrs.frozen
class ArtifactListing:
    """One sub-directory of the crash directory and the files in it (sub-directories left out)."""

    name: str
    files: tuple[FileStat, ...] = attrs.field(converter=_file_stats)


@attrs.frozen
class ReadRequest:
    """Read `artifact_dir`/`file` (at most `max_bytes`) and hand the bytes to
    `CrashKeeper.deliver`. `stat` is the listing the keeper judged complete."""

    artifact_dir: str
    file: str
    stat: FileStat
    files: tuple[str, ...]
    max_bytes: int


class CrashKeeper:
    """Decides, from listings of one crash directory over time, which records to read, and keeps
    the newest `max_records` of them. Sans-IO: the caller lists, reads and passes the time.

    The rules:
    - an artifact is a listed directory with a ``panic.json``; a name with ``/``, ``\\``, a NUL or
      that is ``.``/``..`` is ignored, so a caller can join it to the crash directory safely;
    - ``panic.json`` is read only once two listings in a row show it with the same size and
      mtime (the node writes it with a plain ``write``, so a reader could see it half-written);
    - an accepted artifact (kept, evicted, or refused as bad) is not read again while it is
      listed with that size and mtime; one that disappears from a listing is forgotten (read
      again if it comes back), but its record is kept: the node prunes its oldest artifacts, and
      the first occurrence is the evidence FODC exists to keep (upstream's agent keeps them too);
    - records are ordered by `occurred_at` (the file's mtime when the record has no time), then by
      name; past `max_records` the oldest are dropped.

    The caller must not pass a listing it failed to read in full: a missing name means "removed".
    """

    def __init__(self, *, source: str, max_records: int, limits: CrashLimits = CrashLimits(),
                 max_listed: int = 1024, max_bytes: int | None = None) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.source = source
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._bytes = 0
        self.limits = limits
        self.max_listed = max_listed
        self._pending: dict[str, FileStat] = {}   # seen once, waiting for a second look
        self._done: dict[str, FileStat] = {}      # read (kept, evicted or bad) at this stat
        # name -> (order key, record); a record outlives its artifact on disk
        self._records: dict[str, tuple[tuple[Instant, str], CrashRecord, int]] = {}

    def observe(self, listing: Iterable[ArtifactListing]) -> list[ReadRequest]:
        """Take a full listing of the crash directory; return the reads to do now.

        Artifacts no longer listed are forgotten (their records are kept). Only the
        `max_listed` newest names (names start with the time, so the greatest) are considered."""
        current: dict[str, ArtifactListing] = {}
        for entry in listing:
            if _safe_name(entry.name):
                current[entry.name] = entry
        if len(current) > self.max_listed:
            keep = sorted(current)[-self.max_listed:]
            current = {name: current[name] for name in keep}
        for table in (self._pending, self._done):
            for name in [n for n in table if n not in current]:
                del table[name]
        reads = []
        for name, entry in sorted(current.items()):
            stat = next((f for f in entry.files if f.name == PANIC_FILE), None)
            if stat is None:
                self._pending.pop(name, None)
                continue
            if self._done.get(name) == stat:
                continue
            if self._pending.get(name) != stat:
                self._pending[name] = stat  # first look, or it changed: look again next time
                continue
            reads.append(ReadRequest(
                artifact_dir=name, file=PANIC_FILE, stat=stat,
                files=tuple(sorted(f.name for f in entry.files)),
                max_bytes=self.limits.max_file_bytes + 1,
            ))
        return reads

    def deliver(self, request: ReadRequest, data: bytes, *, now: float) -> CrashRecord | None:
        """Hand over the bytes read for `request`; `now` is the wall clock (Unix seconds).

        Returns the new record if it is kept, None if it was dropped as older than the newest
        `max_records` or if the file changed while it was read (then it is looked at again).
        Raises `CrashRecordError` for a bad record; the keeper will not ask for it again unless
        the file changes."""
        name = request.artifact_dir
        if self._pending.get(name) != request.stat:
            return None  # removed, or listed differently, since the request was made
        if len(data) != request.stat.size and len(data) <= self.limits.max_file_bytes:
            del self._pending[name]  # still being written: start over
            return None
        del self._pending[name]
        self._done[name] = request.stat
        record = parse_crash_record(
            data, artifact_dir=name, files=request.files, source=self.source,
            fetched_at=Instant.from_unix(now), limits=self.limits)
        when = record.occurred_at or Instant.from_unix(request.stat.mtime)
        self._forget(name)
        self._records[name] = ((when, name), record, record_cost(record))
        self._bytes += self._records[name][2]
        ordered = self._ordered()
        evict = max(0, len(ordered) - self.max_records)
        for old in ordered[:evict]:
            self._forget(old.artifact_dir)
        if self.max_bytes is not None:
            for old in ordered[evict:-1]:  # the newest stays, whatever it costs
                if self._bytes <= self.max_bytes:
                    break
                self._forget(old.artifact_dir)
        return record if name in self._records else None

    def _forget(self, name: str) -> None:
        held = self._records.pop(name, None)
        if held is not None:
            self._bytes -= held[2]

    @property
    def bytes_held(self) -> int:
        """The memory the kept records hold, by `record_cost`."""
        return self._bytes

    def records(self) -> tuple[CrashRecord, ...]:
        """The kept records, newest first."""
        return tuple(reversed(self._ordered()))

    @property
    def pending(self) -> int:
        """How many artifacts wait for a second look: when non-zero, the shell may list again
        soon (upstream re-scans 100 ms after a change) instead of waiting a full poll interval."""
        return len(self._pending)

    def __len__(self) -> int:
        return len(self._records)

    def _ordered(self) -> list[CrashRecord]:
        """Oldest first."""
        return [held[1] for held in sorted(self._records.values(), key=lambda held: held[0])]

    def sort_key(self, record: CrashRecord) -> tuple[Instant, str]:
        """How `record` (one of `records()`) is ordered: its time, then its artifact's name."""
        return self._records[record.artifact_dir][0]


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")
