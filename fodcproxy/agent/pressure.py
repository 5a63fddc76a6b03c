"""Memory-pressure profiles: the rules, sans-IO.

When the node's resident memory (RSS) reaches `trigger_percent` of its memory limit, the agent
pulls the node's heap and goroutine pprof profiles and keeps them on disk, one *capture event*
per directory, for the proxy to list and download (docs/agent.md, "Memory-pressure profiles").

Nothing here touches the file system, a socket, a clock or Trio, in the manner of h11's
``Connection``: the Trio shell (`fodcproxy.agent.profiler`) reads files and the time and hands
them over. What lives here:

- `PressureTrigger`: capture or not, given the RSS, its sample time, the limit and the time
  (below the threshold, stale RSS, no limit, cooldown, a capture already running);
- `plan_eviction`: which events to delete to stay within the count and byte caps;
- `resolve_profile_path`: which file a `fetch_profile` may open (only ``<dir>/<id>/<type>.pprof``);
- `CaptureRecord`: an event's metadata and its ``meta.json`` (upstream's schema, so an event
  written by upstream's agent on a shared volume lists here too, and the other way round);
- the cgroup and ``/proc`` file formats: `parse_proc_cgroup`, `parse_mountinfo`,
  `memory_limit_files`, `parse_memory_limit`, `parse_vmrss`;
- `FetchQueue` and `oversized_fetch_field`: which `fetch_profile` commands are sent, in what
  order, and which are refused (one sent at a time, a few waiting, the rest refused).
"""

from __future__ import annotations

import enum
import json
import posixpath
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import attrs

from fodcproxy.errors import FodcError, GrpcCode

__all__ = [
    "META_FILE", "PROFILE_FORMAT", "PROFILE_TARGETS", "PROFILE_TYPES", "CaptureRecord",
    "CgroupPaths", "Decision", "Mount", "PathRefused", "PressureError", "PressureTrigger",
    "ProfileFile", "ProfileTarget", "Verdict", "format_profile_id", "is_partial_name",
    "memory_limit_files", "parse_memory_limit", "parse_mountinfo", "parse_proc_cgroup",
    "parse_profile_id", "parse_vmrss", "partial_name", "plan_eviction", "resolve_profile_path",
    "FETCH_FIELD_LIMITS", "FetchQueue", "oversized_fetch_field", "stale_partials",
]

META_FILE = "meta.json"
PROFILE_FORMAT = "pprof"
MAX_META_BYTES = 64 * 1024
MAX_PATH_CHARS = 4096
_PARTIAL = ".partial-"
_PROFILE_ID = re.compile(r"(\d{8})T(\d{6})\.(\d{9})Z")
# cgroup v1 writes "no limit" as the largest page-aligned counter (9223372036854771712 on x86-64).
V1_UNLIMITED = 1 << 62


class PressureError(FodcError):
    """A capture event that cannot be read (meta.json malformed or oversized)."""

    grpc_code = GrpcCode.DATA_LOSS
    http_status = 422


class PathRefused(FodcError):
    """A `fetch_profile` names a file the agent will not open: outside its profile directory,
    not a profile file, or not the one its profile_id and type say."""

    grpc_code = GrpcCode.PERMISSION_DENIED
    http_status = 403


@attrs.frozen
class ProfileTarget:
    """One profile pulled at every capture: its type and the path under the node's pprof URL."""

    type: str
    path: str

    @property
    def filename(self) -> str:
        return f"{self.type}.pprof"


# Upstream's set (fodc/internal/pprofcapture): debug=0 keeps the goroutine dump in the compact
# gzip-protobuf form `go tool pprof` reads.
PROFILE_TARGETS = (ProfileTarget("heap", "/debug/pprof/heap"),
                   ProfileTarget("goroutine", "/debug/pprof/goroutine?debug=0"))
PROFILE_TYPES = frozenset(t.type for t in PROFILE_TARGETS)
_FILENAMES = {t.filename: t.type for t in PROFILE_TARGETS}


# --- profile ids ---------------------------------------------------------------------------------


def format_profile_id(unix_ns: int) -> str:
    """An event's id: its capture time in UTC with nanoseconds, as upstream names event
    directories (``20260627T101112.123456789Z``). Ids sort as the times do."""
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y%m%dT%H%M%S") + f".{ns:09d}Z"


def parse_profile_id(text: str) -> int | None:
    """The Unix time in nanoseconds a profile id names, or None when `text` is not one."""
    m = _PROFILE_ID.fullmatch(text)
    if m is None:
        return None
    try:
        when = datetime.strptime(m.group(1) + m.group(2), "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    except ValueError:
        return None
    return int(when.timestamp()) * 1_000_000_000 + int(m.group(3))


def partial_name(profile_id: str) -> str:
    """The staging directory an event is written in before it is renamed to its id (hidden:
    listings skip dot names)."""
    return _PARTIAL + profile_id


def is_partial_name(name: str) -> bool:
    return name.startswith(_PARTIAL)


def _rfc3339_ns(unix_ns: int) -> str:
    seconds, ns = divmod(unix_ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ns:09d}Z"


# --- the trigger ---------------------------------------------------------------------------------


class Verdict(enum.Enum):
    NO_RSS = "no RSS reading"
    STALE = "no new RSS reading since the last evaluation"
    NO_LIMIT = "no memory limit"
    BELOW = "below the threshold"
    BUSY = "a capture is already running"
    COOLDOWN = "within the cooldown"
    CAPTURE = "capture"


@attrs.frozen
class Decision:
    verdict: Verdict
    rss: int = 0
    limit: int = 0
    threshold: int = 0


class PressureTrigger:
    """Decides when to capture. Times are plain numbers from the caller's monotonic clock.

    `evaluate` answers CAPTURE when a fresh RSS reading reaches `limit * trigger_percent // 100`,
    no capture is running and the last *successful* capture is at least `cooldown` seconds old
    (as upstream: a failed capture starts no cooldown, so the next reading retries). A CAPTURE
    marks a capture as running until `finished()`. A reading whose sample time is not newer than
    the last one evaluated is STALE: a node that stopped answering is not judged on its last
    scrape again and again.

    Raises ValueError for a percent outside 1-100 or a negative cooldown.
    """

    def __init__(self, *, trigger_percent: int, cooldown: float) -> None:
        if not 1 <= trigger_percent <= 100:
            raise ValueError(f"trigger_percent must be 1-100, not {trigger_percent}")
        if cooldown < 0:
            raise ValueError(f"cooldown must not be negative, not {cooldown}")
        self.trigger_percent = trigger_percent
        self.cooldown = cooldown
        self.capturing = False
        self.last_success: float | None = None
        self._last_sample: float | None = None

    def threshold(self, limit: int) -> int:
        return limit * self.trigger_percent // 100

    def evaluate(self, *, rss: int | None, sample_time: float | None, limit: int | None,
                 now: float) -> Decision:
        if rss is None:
            return Decision(Verdict.NO_RSS)
        if sample_time is not None:
            if self._last_sample is not None and sample_time <= self._last_sample:
                return Decision(Verdict.STALE, rss)
            self._last_sample = sample_time
        if limit is None or limit <= 0:
            return Decision(Verdict.NO_LIMIT, rss)
        threshold = self.threshold(limit)
        if rss < threshold:
            return Decision(Verdict.BELOW, rss, limit, threshold)
        if self.capturing:
            return Decision(Verdict.BUSY, rss, limit, threshold)
        if self.last_success is not None and now - self.last_success < self.cooldown:
            return Decision(Verdict.COOLDOWN, rss, limit, threshold)
        self.capturing = True
        return Decision(Verdict.CAPTURE, rss, limit, threshold)

    def finished(self, *, ok: bool, now: float) -> None:
        """The capture started by the last CAPTURE is over; a successful one starts the cooldown."""
        self.capturing = False
        if ok:
            self.last_success = now


# --- retention -----------------------------------------------------------------------------------


def plan_eviction(events: Iterable[tuple[str, int]], *, max_count: int,
                  max_bytes: int) -> list[str]:
    """The ids of the events to delete, oldest first, so that at most `max_count` events of at
    most `max_bytes` bytes together remain (0 disables a bound).

    `events` are (profile id, bytes on disk). The newest events are kept while they fit; the
    first that does not fit and every older one go, so what remains is always the most recent
    stretch of history without holes. The newest event is always kept, even alone over the byte
    cap (as upstream keeps at least one). Upstream keeps the highest-RSS events instead; we keep
    the newest because the capture closest to an OOM kill is the one being investigated.
    """
    ordered = sorted(events, key=lambda e: e[0], reverse=True)
    keep = 0
    used = 0
    for index, (_, size) in enumerate(ordered):
        over_count = max_count > 0 and keep >= max_count
        over_bytes = max_bytes > 0 and used + size > max_bytes
        if index > 0 and (over_count or over_bytes):
            break
        keep += 1
        used += size
    return [profile_id for profile_id, _ in reversed(ordered[keep:])]


def stale_partials(entries: Iterable[tuple[str, float]], *, now: float,
                   age: float = 600.0) -> list[str]:
    """Staging directories (name, mtime) left by a capture that never finished (the agent died
    in the middle): those older than `age` seconds, so a capture in progress is left alone."""
    return [name for name, mtime in entries if is_partial_name(name) and now - mtime > age]


# --- which file a fetch may open -----------------------------------------------------------------


def resolve_profile_path(base: str, filepath: str, *, profile_id: str = "",
                         type_: str = "") -> tuple[str, str]:
    """The (profile id, file name) a `fetch_profile` may open under the profile directory `base`
    (absolute, normalized).

    Only ``<base>/<profile id>/<type>.pprof`` is ever served: the path must be absolute, spelled
    exactly so (no ``.``, ``..``, doubled or trailing ``/``), the directory a profile id and the
    file a known profile file; a given `profile_id` or `type_` must agree with it. An empty
    `filepath` is built from `profile_id` and `type_`. Lexical only: the shell opens the two
    components without following symlinks, which settles the rest.

    Raises PathRefused saying why.
    """
    if type_ and type_ not in PROFILE_TYPES:
        raise PathRefused(f"unknown profile type {type_[:32]!r}: the agent captures "
                          f"{', '.join(sorted(PROFILE_TYPES))}")
    if not filepath:
        if not profile_id or not type_:
            raise PathRefused("fetch_profile names no filepath, and no profile_id and type")
        filepath = posixpath.join(base, profile_id, f"{type_}.pprof")
    shown = filepath[:200]
    if len(filepath) > MAX_PATH_CHARS or "\x00" in filepath:
        raise PathRefused(f"path {shown!r} is not a valid path")
    if not filepath.startswith(base.rstrip("/") + "/"):
        raise PathRefused(f"path {shown!r} is outside the profile directory {base}")
    parts = filepath[len(base.rstrip("/")) + 1:].split("/")
    if len(parts) != 2 or parse_profile_id(parts[0]) is None or parts[1] not in _FILENAMES:
        raise PathRefused(f"path {shown!r} is not a profile file of the profile directory "
                          f"(<dir>/<profile id>/<type>.pprof)")
    event, filename = parts
    if profile_id and profile_id != event:
        raise PathRefused(f"path {shown!r} is not in profile {profile_id[:64]!r}")
    if type_ and _FILENAMES[filename] != type_:
        raise PathRefused(f"path {shown!r} is not the {type_} profile")
    return event, filename


# --- an event's metadata -------------------------------------------------------------------------


@attrs.frozen
class ProfileFile:
    """One pprof file of an event (PressureProfileInfo)."""

    type: str
    filename: str
    filepath: str
    size_bytes: int
    format: str = PROFILE_FORMAT


@attrs.frozen(kw_only=True)
class CaptureRecord:
    """One capture event (PressureProfileRecord). `captured_at_ns` is Unix nanoseconds."""

    profile_id: str
    captured_at_ns: int
    source_endpoint: str
    rss_bytes: int
    cgroup_limit_bytes: int
    trigger_percent: int
    threshold_bytes: int
    profiles: tuple[ProfileFile, ...] = ()
    pod_name: str = ""
    role: str = ""

    @property
    def size_bytes(self) -> int:
        return sum(p.size_bytes for p in self.profiles)

    def to_meta_json(self) -> bytes:
        """meta.json in upstream's schema (camelCase keys, capturedAt in RFC 3339 with ns)."""
        return json.dumps({
            "capturedAt": _rfc3339_ns(self.captured_at_ns),
            "podName": self.pod_name,
            "role": self.role,
            "sourceEndpoint": self.source_endpoint,
            "profiles": [{"type": p.type, "filename": p.filename, "filepath": p.filepath,
                          "format": p.format, "size_bytes": p.size_bytes}
                         for p in self.profiles],
            "rssBytes": self.rss_bytes,
            "cgroupLimitBytes": self.cgroup_limit_bytes,
            "thresholdBytes": self.threshold_bytes,
            "triggerPercent": self.trigger_percent,
        }, indent=2).encode()

    @classmethod
    def from_meta_json(cls, base: str, profile_id: str, data: bytes,
                       sizes: dict[str, int] | None = None) -> CaptureRecord:
        """Read an event's meta.json. The capture time is the profile id's; each profile's
        `filepath` is rebuilt as ``<base>/<id>/<file>`` whatever the file says (an event moved
        with its volume still lists right, and a hostile meta.json cannot point elsewhere);
        profiles of unknown type (or listed twice) are left out. `sizes` (file name -> bytes on
        disk), when given, replaces the recorded sizes and leaves out files that are gone.

        Raises PressureError for a file over 64 KiB, not JSON, or of the wrong shape.
        """
        captured = parse_profile_id(profile_id)
        if captured is None:
            raise PressureError(f"{profile_id[:64]!r} is not a profile id")
        if len(data) > MAX_META_BYTES:
            raise PressureError(f"{profile_id}/{META_FILE} is larger than {MAX_META_BYTES} bytes")
        try:
            meta = json.loads(data)
            if not isinstance(meta, dict):
                raise TypeError("not an object")
            profiles = []
            seen = set()
            for item in meta.get("profiles") or ():
                filename = str(item.get("filename", ""))
                if _FILENAMES.get(filename) != item.get("type") or filename in seen:
                    continue
                seen.add(filename)
                size = _uint(item.get("size_bytes", 0))
                if sizes is not None:
                    if filename not in sizes:
                        continue
                    size = sizes[filename]
                profiles.append(ProfileFile(_FILENAMES[filename], filename,
                                            posixpath.join(base, profile_id, filename), size,
                                            _text(item.get("format") or PROFILE_FORMAT)))
            return cls(profile_id=profile_id, captured_at_ns=captured,
                       source_endpoint=_text(meta.get("sourceEndpoint", "")),
                       rss_bytes=_uint(meta.get("rssBytes", 0)),
                       cgroup_limit_bytes=_uint(meta.get("cgroupLimitBytes", 0)),
                       trigger_percent=min(_uint(meta.get("triggerPercent", 0)), 100),
                       threshold_bytes=_uint(meta.get("thresholdBytes", 0)),
                       profiles=tuple(profiles), pod_name=_text(meta.get("podName", "")),
                       role=_text(meta.get("role", "")))
        except (ValueError, TypeError, AttributeError) as exc:
            raise PressureError(
                f"{profile_id}/{META_FILE} is not a capture record: {exc}") from None


def _text(value: object) -> str:
    """`value` as text protobuf can send. JSON may escape a lone surrogate ("\\ud800"), which
    Python reads into a str that is not UTF-8: UnicodeEncodeError, a ValueError."""
    text = str(value)
    text.encode("utf-8")
    return text


def _uint(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 1 << 64:
        raise ValueError(f"{value!r} is not an unsigned 64-bit number")
    return value


# --- cgroup and /proc files ----------------------------------------------------------------------


@attrs.frozen
class CgroupPaths:
    """The process's cgroup: its v2 path (the ``0::`` line) and its v1 memory controller's."""

    v2: str | None = None
    v1_memory: str | None = None


@attrs.frozen
class Mount:
    root: str
    mount_point: str
    fstype: str
    super_options: tuple[str, ...] = ()


def parse_proc_cgroup(text: str) -> CgroupPaths:
    """Parse ``/proc/<pid>/cgroup`` (``hierarchy-id:controllers:path`` lines)."""
    v2 = v1 = None
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3 or not parts[2].startswith("/"):
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        elif "memory" in parts[1].split(","):
            v1 = parts[2]
    return CgroupPaths(v2, v1)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[Mount]:
    """The cgroup mounts of ``/proc/self/mountinfo`` (cgroup2, and cgroup v1 hierarchies)."""
    mounts = []
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if not sep or len(fields) < 5 or len(tail) < 2 or not tail[0].startswith("cgroup"):
            continue
        options = tuple(tail[2].split(",")) if len(tail) > 2 else ()
        mounts.append(Mount(_unescape(fields[3]), _unescape(fields[4]), tail[0], options))
    return mounts


def _inside(mount: Mount, path: str) -> str | None:
    root = mount.root.rstrip("/")
    if path != root and not path.startswith(root + "/") and root:
        return None
    rel = path[len(root):].strip("/")
    return posixpath.join(mount.mount_point, rel) if rel else mount.mount_point


def memory_limit_files(cgroup: CgroupPaths, mounts: Sequence[Mount]) -> list[tuple[str, bool]]:
    """The files that may hold the process's memory limit, as (path, is v1), in the order to
    try them: cgroup v2 ``memory.max`` of its cgroup and of each ancestor up to the mount's root
    (the effective limit is the smallest), then cgroup v1 ``memory.limit_in_bytes``."""
    files: list[tuple[str, bool]] = []
    if cgroup.v2 is not None:
        for mount in mounts:
            if mount.fstype != "cgroup2":
                continue
            directory = _inside(mount, cgroup.v2)
            while directory is not None:
                files.append((posixpath.join(directory, "memory.max"), False))
                if directory.rstrip("/") == mount.mount_point.rstrip("/"):
                    break
                directory = posixpath.dirname(directory)
            break
    if cgroup.v1_memory is not None:
        for mount in mounts:
            if mount.fstype == "cgroup" and "memory" in mount.super_options:
                directory = _inside(mount, cgroup.v1_memory)
                if directory is not None:
                    files.append((posixpath.join(directory, "memory.limit_in_bytes"), True))
                break
    return files


def parse_memory_limit(text: str, *, v1: bool = False) -> int | None:
    """A limit file's bytes, or None for "no limit" (v2 ``max``; v1's huge sentinel).

    Raises ValueError when the text is neither.
    """
    value = text.strip()
    if not v1 and value == "max":
        return None
    limit = int(value)
    if limit <= 0 or (v1 and limit >= V1_UNLIMITED):
        return None
    return limit


def parse_vmrss(status: str) -> int | None:
    """``VmRSS`` of ``/proc/<pid>/status`` in bytes (None when absent: a kernel thread, a
    zombie)."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            fields = line.split()
            if len(fields) >= 2 and fields[1].isdigit():
                unit = fields[2].lower() if len(fields) > 2 else "kb"
                return int(fields[1]) * (1024 if unit == "kb" else 1)
    return None


# Longest fields a fetch_profile may carry (a profile id is 26 characters, a type a word, a path
# at most MAX_PATH_CHARS): a queued fetch holds its fields, so eight waiting fetches stay small.
FETCH_FIELD_LIMITS = (("request_id", 256), ("profile_id", 64), ("type", 32),
                      ("filepath", MAX_PATH_CHARS))


def oversized_fetch_field(fields: dict[str, str]) -> str | None:
    """Why a fetch_profile is refused before it is queued (a field over its limit), or None."""
    for name, limit in FETCH_FIELD_LIMITS:
        if len(fields.get(name, "")) > limit:
            return f"fetch_profile {name} is longer than {limit} characters"
    return None


# --- the fetch queue -----------------------------------------------------------------------------


class FetchQueue:
    """Which `fetch_profile` commands are sent, in what order, and which are refused.

    One fetch is sent at a time (its chunks are the agent's only large messages, and a proxy
    downloads one profile per HTTP client anyway); up to `max_waiting` more wait their turn in
    arrival order; one more is refused at once (the proxy gets an error chunk instead of a queue
    that grows with whatever it sends). A fetch reusing the request id of one running or waiting
    is refused and the earlier one dropped: after the error chunk (marked `last`) nothing more is
    sent under that id. `cancel` drops a waiting fetch or says the running one must stop.
    Request ids are opaque strings; "" (a proxy that sets none) is never matched.
    """

    def __init__(self, max_waiting: int = 8) -> None:
        if max_waiting < 0:
            raise ValueError(f"max_waiting must not be negative, not {max_waiting}")
        self.max_waiting = max_waiting
        self.running: str | None = None
        self._waiting: list[tuple[str, object]] = []
        self.refused = 0
        self.cancelled = 0
        self.peak_waiting = 0

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def offer(self, request_id: str, item: object) -> tuple[str | None, bool]:
        """Queue `item`. Returns (the reason it is refused or None, whether the running fetch
        must stop: its request id was reused)."""
        if request_id and (request_id == self.running
                           or any(rid == request_id for rid, _ in self._waiting)):
            self.refused += 1
            stop = self.cancel(request_id) == "running"
            return f"request_id {request_id[:64]!r} is already in use by another fetch", stop
        if (self.running is not None) + len(self._waiting) > self.max_waiting:
            self.refused += 1
            return (f"the agent is busy: one profile is being sent and {len(self._waiting)} "
                    f"fetches wait (at most {self.max_waiting}); try again"), False
        self._waiting.append((request_id, item))
        self.peak_waiting = max(self.peak_waiting, len(self._waiting))
        return None, False

    def cancel(self, request_id: str) -> str | None:
        """Drop the fetch `request_id`: "queued" (removed, never sent), "running" (the caller
        stops it) or None (no such fetch: already done, or never seen)."""
        if not request_id:
            return None
        for index, (rid, _) in enumerate(self._waiting):
            if rid == request_id:
                del self._waiting[index]
                self.cancelled += 1
                return "queued"
        if request_id == self.running:
            self.cancelled += 1
            return "running"
        return None

    def next(self) -> tuple[str, object] | None:
        """The next fetch to send, now marked running; None when none waits."""
        if self.running is not None or not self._waiting:
            return None
        request_id, item = self._waiting.pop(0)
        self.running = request_id
        return request_id, item

    def done(self) -> None:
        """The running fetch is over (sent, failed or cancelled)."""
        self.running = None
