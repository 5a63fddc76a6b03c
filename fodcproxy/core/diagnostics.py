"""Crash records and memory-pressure profiles, the rules (SPEC section 9). Sans-IO.

What an agent reports on StreamCrashDiagnostics and StreamPressureProfiles, decoded by the
transport into the plain records below; the JSON documents of `GET /diagnostics` and
`GET /pressure-profiles` (upstream's keys and shapes, Go's `time.Time` text); when an agent's
answer is complete; what a download chunk must look like; the attachment name of a download.

Crash records come with no request id and no end marker: upstream's agent sends one message per
record, right after the proxy's request. A `CrashAnswer` is complete when the stream has been
quiet for `settle` seconds after the request or its last record, and never waits beyond the
collection's deadline. Within one answer records are de-duplicated by `artifact_dir` (a later
one replaces an earlier one); at most `max_records` records and `max_bytes` serialized bytes are
kept, past that the answer is flagged `truncated` and later records are not kept.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import Any

import attrs

__all__ = ["CHUNK_LIMIT", "MAX_CHUNK_BYTES", "MAX_RECORDS", "PROFILE_TYPES", "Breadcrumb",
           "CancelFetch", "Chunk", "CrashAnswer", "CrashRecord", "FetchCommand", "PanicRecord",
           "ProfileFile", "ProfileList", "ProfileRecord", "Timestamp", "attachment_name",
           "chunk_problem", "crash_record_json", "go_time", "profile_record_json",
           "sanitize_filename_part"]

#: A profile download chunk of upstream's agent is at most 1 MiB of data.
MAX_CHUNK_BYTES = 1024 * 1024
#: ... and the proxy accepts up to this many (a margin for another agent's rounding).
CHUNK_LIMIT = MAX_CHUNK_BYTES + 64 * 1024
#: Records kept per agent and answer (crash records, pressure capture events).
MAX_RECORDS = 256
#: The profile types an agent captures (upstream's `pprofcapture.IsValidType`).
PROFILE_TYPES = ("heap", "goroutine")

Timestamp = tuple[int, int]
"""A protobuf Timestamp as (seconds, nanos) since the Unix epoch, UTC."""

_GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def go_time(ts: Timestamp | None) -> str:
    """`ts` as Go's `time.Time` marshals to JSON (RFC 3339 with nanoseconds, trailing zeros of
    the fraction dropped, `Z` for UTC); Go's zero time when there is none, as upstream writes a
    missing timestamp."""
    if ts is None:
        return _GO_ZERO_TIME
    seconds, nanos = ts
    # nanos outside [0, 1e9) carried over into the seconds, as Go's time.Unix does.
    carry, nanos = divmod(nanos, 1_000_000_000)
    seconds += carry
    try:
        day = datetime.datetime(1970, 1, 1) + datetime.timedelta(seconds=seconds)
    except OverflowError:
        return _GO_ZERO_TIME
    text = day.strftime("%Y-%m-%dT%H:%M:%S")
    if len(text) != 19:  # years before 1000 are not zero-padded everywhere
        text = f"{day.year:04d}" + text[text.index("-"):]
    if nanos:
        text += "." + f"{nanos:09d}".rstrip("0")
    return text + "Z"


@attrs.frozen
class Breadcrumb:
    occurred_at: Timestamp | None
    stage: str
    component: str = ""
    fields: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class PanicRecord:
    occurred_at: Timestamp | None
    component: str
    panic_value: str
    recovered: bool = False
    goroutine_stack: str = ""
    breadcrumbs: tuple[Breadcrumb, ...] = ()
    process_metadata: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class CrashRecord:
    """One StreamCrashDiagnosticsRequest: one crash artifact of the agent's node."""

    fetched_at: Timestamp | None
    source_endpoint: str
    artifact_dir: str
    files: tuple[str, ...] = ()
    panic: PanicRecord | None = None


@attrs.frozen
class ProfileFile:
    type: str
    filename: str
    filepath: str
    format: str
    size_bytes: int


@attrs.frozen
class ProfileRecord:
    """One PressureProfileRecord: one capture event (metadata only, no bytes)."""

    profile_id: str
    captured_at: Timestamp | None
    source_endpoint: str = ""
    rss_bytes: int = 0
    cgroup_limit_bytes: int = 0
    trigger_percent: int = 0
    threshold_bytes: int = 0
    profiles: tuple[ProfileFile, ...] = ()

    def file(self, type_: str) -> ProfileFile | None:
        for p in self.profiles:
            if p.type == type_:
                return p
        return None


def _map(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    return dict(sorted(pairs))


def crash_record_json(record: CrashRecord, *, agent_id: str, pod_name: str,
                      role: str) -> dict[str, Any]:
    """One element of `GET /diagnostics` (upstream's `AggregatedCrashRecord`: its keys, with
    `panic_record`, `files`, `goroutine_stack`, `breadcrumbs`, `process_metadata` and a
    breadcrumb's `fields`/`component` left out when empty, as Go's `omitempty` does)."""
    doc: dict[str, Any] = {"fetched_at": go_time(record.fetched_at)}
    p = record.panic
    if p is not None:
        panic: dict[str, Any] = {"component": p.component}
        if p.goroutine_stack:
            panic["goroutine_stack"] = p.goroutine_stack
        panic["panic_value"] = p.panic_value
        panic["occurred_at"] = go_time(p.occurred_at)
        if p.process_metadata:
            panic["process_metadata"] = _map(p.process_metadata)
        if p.breadcrumbs:
            crumbs = []
            for b in p.breadcrumbs:
                crumb: dict[str, Any] = {"occurred_at": go_time(b.occurred_at)}
                if b.fields:
                    crumb["fields"] = _map(b.fields)
                crumb["stage"] = b.stage
                if b.component:
                    crumb["component"] = b.component
                crumbs.append(crumb)
            panic["breadcrumbs"] = crumbs
        panic["recovered"] = p.recovered
        doc["panic_record"] = panic
    doc.update(agent_id=agent_id, pod_name=pod_name, role=role,
               source_endpoint=record.source_endpoint, artifact_dir=record.artifact_dir)
    if record.files:
        doc["files"] = list(record.files)
    return doc


def profile_record_json(record: ProfileRecord, *, agent_id: str, pod_name: str,
                        role: str) -> dict[str, Any]:
    """One element of `GET /pressure-profiles` (upstream's `AggregatedPressureProfile`)."""
    return {
        "captured_at": go_time(record.captured_at),
        "agent_id": agent_id,
        "pod_name": pod_name,
        "role": role,
        "profile_id": record.profile_id,
        "source_endpoint": record.source_endpoint,
        "profiles": [{"type": p.type, "filename": p.filename, "filepath": p.filepath,
                      "format": p.format, "size_bytes": p.size_bytes} for p in record.profiles],
        "rss_bytes": record.rss_bytes,
        "cgroup_limit_bytes": record.cgroup_limit_bytes,
        "threshold_bytes": record.threshold_bytes,
        "trigger_percent": record.trigger_percent,
    }


class _Capped:
    """Records of one answer, at most `max_records` and `max_bytes` (serialized) of them."""

    def __init__(self, max_records: int, max_bytes: int) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.size = 0
        self.truncated: str | None = None  # why records were left out, if any
        self.dropped = 0  # records left out
        self.records: dict[str, tuple[Any, int]] = {}  # by key, with their sizes

    def _keep(self, key: str, record: Any, size: int) -> bool:
        """Keep `record` (`size` serialized bytes) under `key`, replacing an earlier one of the
        same key, when the caps allow. Returns whether it is kept."""
        old = self.records.get(key)
        old_size = old[1] if old is not None else 0
        self.size -= old_size
        if not self._room(size, 0 if old is not None else 1, len(self.records)):
            self.size += old_size
            return False
        self.size += size
        self.records[key] = (record, size)
        return True

    def _room(self, size: int, extra_records: int, current: int) -> bool:
        if current + extra_records > self.max_records:
            self.truncated = f"more than {self.max_records} records"
        elif self.size + size > self.max_bytes:
            self.truncated = f"records over {self.max_bytes} bytes"
        else:
            return True
        self.dropped += 1
        return False


class CrashAnswer(_Capped):
    """One agent's crash records for one request, and when the answer is complete.

    `started` is when the request was sent; the answer is complete (`quiet`) once `settle`
    seconds passed without a record, and over (`finished`) at that moment or at `deadline`,
    whichever comes first.
    """

    def __init__(self, *, started: float, deadline: float, settle: float,
                 max_records: int = MAX_RECORDS, max_bytes: int = 256 * 1024 * 1024) -> None:
        super().__init__(max_records, max_bytes)
        self.started = started
        self.deadline = deadline
        self.settle = settle
        self.last = started  # the request, or the latest record
        self.sent = False  # the request went out
        self.failed: str | None = None  # why the collection failed, if it did
        self.received = 0  # records received (kept by artifact_dir)

    def add(self, record: CrashRecord, size: int, now: float) -> bool:
        """A record arrived at `now` (`size` serialized bytes). Returns whether it is kept."""
        self.received += 1
        self.last = max(self.last, now)
        return self._keep(record.artifact_dir, record, size)

    def take(self, other: CrashAnswer) -> None:
        """Become a copy of `other` (a caller that joined `other`'s collection)."""
        self.records = dict(other.records)
        self.size, self.truncated, self.dropped = other.size, other.truncated, other.dropped
        self.received, self.sent, self.last = other.received, other.sent, other.last
        self.settle, self.deadline = other.settle, other.deadline

    def wake_at(self) -> float:
        """When the answer is over if nothing more arrives."""
        return min(self.last + self.settle, self.deadline)

    def finished(self, now: float) -> bool:
        return now >= self.wake_at()

    def quiet(self, now: float) -> bool:
        """Whether the answer ended by itself (settled) rather than at the deadline."""
        return now >= self.last + self.settle and self.last + self.settle <= self.deadline

    @property
    def kept(self) -> list[CrashRecord]:
        return [r for r, _ in self.records.values()]


class ProfileList(_Capped):
    """One agent's answer to list_profiles: its capture events in order (no de-duplication
    by the agent is assumed: a repeated profile_id replaces the earlier record)."""

    def __init__(self, max_records: int = MAX_RECORDS, max_bytes: int = 256 * 1024 * 1024) -> None:
        super().__init__(max_records, max_bytes)

    def add(self, record: ProfileRecord, size: int) -> bool:
        """A record arrived (`size` serialized bytes). Returns whether it is kept."""
        return self._keep(record.profile_id, record, size)

    @property
    def kept(self) -> list[ProfileRecord]:
        return [r for r, _ in self.records.values()]


@attrs.frozen
class FetchCommand:
    """fetch_profile: stream one profile's bytes, tagged `request_id`."""

    request_id: str
    profile_id: str
    type: str
    filepath: str


@attrs.frozen
class CancelFetch:
    """Our extension of fetch_profile: stop sending the chunks of fetch `request_id`."""

    request_id: str


@attrs.frozen
class Chunk:
    """One PressureProfileChunk."""

    request_id: str
    profile_id: str
    type: str
    data: bytes
    last: bool = False
    error: str = ""


def chunk_problem(*, profile_id: str, type_: str, data_len: int, error: str,
                  want_profile_id: str, want_type: str, limit: int = CHUNK_LIMIT) -> str | None:
    """What is wrong with a download chunk of the fetch of (`want_profile_id`, `want_type`), or
    None. A chunk's `profile_id` and `type` must be the fetch's (an error chunk may leave them
    empty); its data at most `limit` bytes; a non-empty `error` ends the download."""
    if error:
        return f"the agent could not serve the profile: {error[:512]}"
    if data_len > limit:
        return f"a chunk of {data_len} bytes is over the limit of {limit} bytes"
    if profile_id != want_profile_id or type_ != want_type:
        return (f"a chunk of profile {profile_id[:128]!r} type {type_[:32]!r} answered the fetch "
                f"of {want_profile_id[:128]!r} type {want_type!r}")
    return None


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def sanitize_filename_part(text: str) -> str:
    """`text` with every character but `[A-Za-z0-9._-]` replaced by `_` (as upstream does, per
    Unicode character), so it cannot inject header syntax or a path into a file name."""
    return _UNSAFE.sub("_", text)


def attachment_name(pod_name: str, role: str, profile_id: str, type_: str) -> str:
    """The file name of a downloaded profile: `<pod>-<role>-<id>-<type>.pprof`."""
    parts = (pod_name, role, profile_id, type_)
    return "-".join(sanitize_filename_part(p) for p in parts) + ".pprof"

