"""The memory-pressure profiler's Trio shell: the profile directory, the pprof pull, the loop.

- `ProfileStore` owns the profile directory: one sub-directory per capture event, named by its
  profile id, holding ``heap.pprof``, ``goroutine.pprof`` and ``meta.json``. An event is written
  in a hidden staging directory and renamed to its id when complete, so a listing never sees
  half an event; `open_profile` opens only ``<dir>/<id>/<type>.pprof`` without following a
  symlink at either step. Its methods do blocking file I/O: call them through
  `trio.to_thread.run_sync` (the profiler and the service do).
- `pull_profile` GETs one pprof endpoint into a file, streaming, within a time and a size cap.
- `PressureProfiler` evaluates the node's RSS after every poll of the watchdog and captures in
  the background (`fodcproxy.agent.pressure.PressureTrigger` decides).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, BinaryIO, Protocol

import attrs
import h11
import trio

from fodcproxy.agent.pressure import (
    META_FILE,
    PROFILE_TARGETS,
    CaptureRecord,
    PathRefused,
    PressureError,
    PressureTrigger,
    ProfileFile,
    Verdict,
    format_profile_id,
    memory_limit_files,
    parse_memory_limit,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_profile_id,
    parse_vmrss,
    partial_name,
    plan_eviction,
    resolve_profile_path,
    stale_partials,
)
from fodcproxy.agent.recorder import FlightRecorder
from fodcproxy.agent.scrape import HttpTarget, ScrapeError
from fodcproxy.core.model import MetricType, Sample
from fodcproxy.errors import FodcError, GrpcCode

__all__ = [
    "LIMIT_METRIC", "RSS_METRIC", "CaptureFailed", "LimitReader", "PressureProfiler",
    "ProfileStore", "ProfilerStatistics", "proc_rss", "pull_profile", "recorder_limit",
    "recorder_rss",
]

log = logging.getLogger(__name__)

RSS_METRIC = "process_resident_memory_bytes"
# The node's own cgroup memory limit, as BanyanDB exposes it (upstream's profiler reads it).
LIMIT_METRIC = "banyandb_memory_protector_cgroup_limit_bytes"
_RECEIVE_SIZE = 64 * 1024

RssReading = tuple[int, float | None]
"""The node's RSS in bytes and the time of its sample (None: read just now)."""


class CaptureFailed(FodcError):
    """A pprof endpoint could not be pulled: unreachable, slow, an error status, too large."""

    grpc_code = GrpcCode.UNAVAILABLE
    http_status = 502


# --- the profile directory -----------------------------------------------------------------------


class ProfileStore:
    """The profile directory `base` (made absolute) and its retention caps (0: no cap).

    Blocking file I/O throughout: call from a worker thread.
    """

    def __init__(self, base: str, *, max_events: int = 16, max_bytes: int = 512 * 1024 * 1024,
                 pod_name: str = "", role: str = "") -> None:
        self.base = os.path.normpath(os.path.abspath(base))
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.pod_name = pod_name
        self.role = role

    def self_check(self, *, now: float | None = None) -> None:
        """Create the directory, prove it writable, delete staging directories a capture left
        when the agent died in it, and evict past the caps (they may be lower than last time).
        Raises OSError (the caller names the flag)."""
        os.makedirs(self.base, mode=0o750, exist_ok=True)
        probe = os.path.join(self.base, f".write-probe-{os.getpid()}-{time.monotonic_ns()}")
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.unlink(probe)
        now = time.time() if now is None else now
        entries = []
        for entry in os.scandir(self.base):
            try:
                entries.append((entry.name, entry.stat(follow_symlinks=False).st_mtime))
            except OSError:
                continue
        for name in stale_partials(entries, now=now):
            _remove_tree(os.path.join(self.base, name))
        self.evict()  # the caps may have been lowered since the last run

    def event_dir(self, profile_id: str) -> str:
        return os.path.join(self.base, profile_id)

    def list_events(self) -> list[CaptureRecord]:
        """Every complete event, oldest first. A directory whose meta.json is missing or bad,
        or that is a symlink, is skipped (and said in the log at debug level); each profile's
        size is its file's size now, and a deleted file is left out."""
        try:
            entries = sorted(os.scandir(self.base), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list the profile directory %s: %s", self.base, exc)
            return []
        records = []
        for entry in entries:
            if parse_profile_id(entry.name) is None or not entry.is_dir(follow_symlinks=False):
                continue
            try:
                records.append(self._read_event(entry.name))
            except (OSError, PressureError) as exc:
                log.debug("skipping capture event %s: %s", entry.name, exc)
        return records

    def _read_event(self, profile_id: str) -> CaptureRecord:
        directory = self.event_dir(profile_id)
        fd = os.open(os.path.join(directory, META_FILE), os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read(64 * 1024 + 1)
        sizes = {}
        for entry in os.scandir(directory):
            if entry.is_file(follow_symlinks=False):
                sizes[entry.name] = entry.stat(follow_symlinks=False).st_size
        return CaptureRecord.from_meta_json(self.base, profile_id, data, sizes)

    def begin(self, profile_id: str) -> str:
        """Create the staging directory of a new event; returns its path. Raises OSError."""
        staging = os.path.join(self.base, partial_name(profile_id))
        os.mkdir(staging, 0o750)
        return staging

    def finish(self, staging: str, record: CaptureRecord) -> list[str]:
        """Write meta.json, publish the event (rename the staging directory to its id) and
        evict past the caps; returns the evicted ids. Raises OSError (the staging directory is
        then removed)."""
        try:
            tmp = os.path.join(staging, META_FILE + ".tmp")
            with open(tmp, "wb") as f:
                f.write(record.to_meta_json())
            os.rename(tmp, os.path.join(staging, META_FILE))
            os.rename(staging, self.event_dir(record.profile_id))
        except OSError:
            _remove_tree(staging)
            raise
        return self.evict()

    def abandon(self, staging: str) -> None:
        _remove_tree(staging)

    def evict(self) -> list[str]:
        """Delete the oldest events past the caps (`plan_eviction`); returns their ids."""
        events = [(r.profile_id, r.size_bytes) for r in self.list_events()]
        gone = plan_eviction(events, max_count=self.max_events, max_bytes=self.max_bytes)
        for profile_id in gone:
            _remove_tree(self.event_dir(profile_id))
        return gone

    def open_profile(self, filepath: str, *, profile_id: str = "", type_: str = "") -> BinaryIO:
        """Open one profile for reading: only ``<dir>/<id>/<type>.pprof``, a regular file,
        reached without following a symlink (`resolve_profile_path` checks the spelling).

        Raises PathRefused for anything else, FileNotFoundError (with a message for a person)
        when the profile is gone.
        """
        event, filename = resolve_profile_path(self.base, filepath, profile_id=profile_id,
                                               type_=type_)
        nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            base_fd = os.open(self.base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                dir_fd = os.open(event, nofollow | os.O_DIRECTORY, dir_fd=base_fd)
                try:
                    # O_NONBLOCK: a FIFO planted here must not block the open.
                    fd = os.open(filename, nofollow | os.O_NONBLOCK, dir_fd=dir_fd)
                finally:
                    os.close(dir_fd)
            finally:
                os.close(base_fd)
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise FileNotFoundError(exc.errno, f"profile {event}/{filename} not found "
                                                   "(evicted or deleted)") from None
            if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                raise PathRefused(f"{event}/{filename} is reached through a symbolic link or "
                                  "is not a profile: refused") from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise PathRefused(f"{event}/{filename} is not a regular file: refused")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb", buffering=0)


def _remove_tree(path: str) -> None:
    # Symlinks are unlinked, never followed; errors are logged, not raised (eviction goes on).
    try:
        if os.path.islink(path) or not os.path.isdir(path):
            os.unlink(path)
            return
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                _remove_tree(entry.path)
            else:
                os.unlink(entry.path)
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)


# --- pulling a profile ---------------------------------------------------------------------------


async def pull_profile(url: str, dest: str, *, timeout: float, max_bytes: int) -> int:
    """GET `url` (http:// only) and write the body to `dest`; returns its size in bytes.

    The body goes to a ``.tmp`` file beside `dest`, renamed to `dest` once complete, so `dest`
    never holds part of a profile. The whole exchange must finish within `timeout` seconds and
    the body may not exceed `max_bytes` (checked as it arrives: a huge answer costs one receive
    buffer, not its size).

    Raises CaptureFailed naming the cause; OSError when `dest` cannot be written.
    """
    if urllib.parse.urlsplit(url).scheme != "http":
        raise CaptureFailed(f"{url}: only http:// pprof endpoints are supported")
    try:
        target = HttpTarget.from_url(url)
    except ScrapeError as exc:
        raise CaptureFailed(str(exc)) from None
    tmp = dest + ".tmp"
    size = 0
    try:
        async with await trio.open_file(tmp, "wb") as out:
            with trio.fail_after(timeout):
                size = await _get_into(url, target, out, max_bytes)
        os.rename(tmp, dest)
    except trio.TooSlowError:
        raise CaptureFailed(f"{url}: no complete answer within {timeout:g}s") from None
    finally:
        try:
            os.unlink(tmp)  # gone after the rename; a failed pull's part is removed here
        except FileNotFoundError:
            pass
    return size


async def _get_into(url: str, target: HttpTarget, out: Any, max_bytes: int) -> int:
    try:
        stream = await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        raise CaptureFailed(f"{url}: cannot connect: {exc}") from None
    async with stream:
        conn = h11.Connection(our_role=h11.CLIENT)
        request = h11.Request(method="GET", target=target.path, headers=[
            ("Host", target.host_header), ("User-Agent", "fodcproxy-agent"),
            ("Connection", "close")])
        size = 0
        try:
            await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
                elif isinstance(event, h11.Response):
                    if event.status_code != 200:
                        raise CaptureFailed(f"{url}: HTTP {event.status_code} "
                                            f"{event.reason.decode('latin-1')}".rstrip())
                    for name, value in event.headers:
                        if name == b"content-encoding" and value.lower() != b"identity":
                            raise CaptureFailed(f"{url}: unexpected Content-Encoding "
                                                f"{value.decode('latin-1')!r}")
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > max_bytes:
                        raise CaptureFailed(f"{url}: the profile is larger than {max_bytes} "
                                            "bytes (--pressure-profiler-max-profile-bytes)")
                    await out.write(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    return size
                elif isinstance(event, h11.ConnectionClosed):
                    raise CaptureFailed(f"{url}: connection closed before a complete answer")
        except (OSError, trio.BrokenResourceError) as exc:
            raise CaptureFailed(f"{url}: connection failed: {exc}") from None
        except h11.ProtocolError as exc:
            raise CaptureFailed(f"{url}: broken HTTP answer: {exc}") from None


# --- where RSS and the limit come from -----------------------------------------------------------


def recorder_rss(recorder: FlightRecorder) -> Callable[[], RssReading | None]:
    """The node's RSS from the scrape: the newest `process_resident_memory_bytes` the recorder
    holds (with several endpoints, the largest of their newest samples), with its time."""

    def read() -> RssReading | None:
        samples = recorder.latest_of(RSS_METRIC)
        if not samples:
            return None
        newest = max(s.timestamp or 0.0 for s in samples)
        return int(max(s.value for s in samples)), newest

    return read


def recorder_limit(recorder: FlightRecorder) -> Callable[[], int | None]:
    """The node's memory limit from the scrape: the newest `banyandb_memory_protector_cgroup_
    limit_bytes` the recorder holds (with several endpoints, the smallest positive one); None
    when the node exposes none (0 means no limit)."""

    def read() -> int | None:
        limits = [int(s.value) for s in recorder.latest_of(LIMIT_METRIC) if s.value >= 1]
        return min(limits) if limits else None

    return read


def proc_rss(pid: int, proc: str = "/proc") -> Callable[[], RssReading | None]:
    """The RSS of process `pid` from ``/proc/<pid>/status`` (VmRSS), read when called; None when
    the process is gone. (A procfs file is made by the kernel on read: it never waits on a disk.)"""

    def read() -> RssReading | None:
        try:
            with open(f"{proc}/{pid}/status") as f:
                rss = parse_vmrss(f.read())
        except OSError:
            return None
        return None if rss is None else (rss, None)

    return read


class LimitReader:
    """The memory limit: `override` (--pressure-profiler-limit-bytes) when given, else the
    node's own limit from the scrape (`scraped`, `recorder_limit`: what upstream's profiler
    uses) when it exposes one, else the smallest limit among the agent's cgroup files
    (`memory_limit_files` of /proc/self/cgroup and /proc/self/mountinfo, found once), read anew
    on every call (a pod may be resized). The agent's own cgroup is the node's only when the
    agent shares the node's container or cgroup: a sidecar container has its own limit."""

    def __init__(self, override: int | None = None, *, proc: str = "/proc",
                 scraped: Callable[[], int | None] | None = None) -> None:
        self.override = override
        self.scraped = scraped
        self.files: list[tuple[str, bool]] = []
        if override is None:
            try:
                with open(f"{proc}/self/cgroup") as f:
                    cgroup = parse_proc_cgroup(f.read())
                with open(f"{proc}/self/mountinfo") as f:
                    mounts = parse_mountinfo(f.read())
                self.files = memory_limit_files(cgroup, mounts)
            except OSError as exc:
                log.debug("cannot read the agent's cgroup: %s", exc)

    def describe(self) -> str:
        if self.override is not None:
            return "--pressure-profiler-limit-bytes"
        files = ", ".join(path for path, _ in self.files) or "no cgroup memory controller"
        return f"the node's {LIMIT_METRIC}, then {files}" if self.scraped else files

    def __call__(self) -> int | None:
        """Reads cgroupfs pseudo-files (made by the kernel on read, never waiting on a disk)."""
        if self.override is not None:
            return self.override
        if self.scraped is not None:
            node = self.scraped()
            if node is not None and node > 0:
                return node
        limits = []
        for path, v1 in self.files:
            try:
                with open(path) as f:
                    limit = parse_memory_limit(f.read(), v1=v1)
            except (OSError, ValueError):
                continue
            if limit is not None:
                limits.append(limit)
        return min(limits) if limits else None


class Puller(Protocol):
    """What the profiler calls to get one profile into `dest` (`pull_profile`)."""

    def __call__(self, url: str, dest: str, *, timeout: float,
                 max_bytes: int) -> Awaitable[int]: ...


# --- the profiler --------------------------------------------------------------------------------


@attrs.frozen
class ProfilerStatistics:
    evaluations: int
    captures: int
    failures: int
    skipped_cooldown: int
    last_error: str
    last_verdict: str
    last_capture_unix: float | None = None  # wall-clock time of the last successful capture


class PressureProfiler:
    """Watches the node's RSS against its limit and captures pprof profiles at the trigger.

    `rss` and `limit` are called in Trio's thread, after each poll: they must not block (the
    recorder's reader touches the recorder, which only Trio's thread may; /proc and cgroup files
    are pseudo-files that never wait on a disk). `pprof_url` is the node's
    pprof base URL (``http://localhost:6060``); `wall_clock_ns` names events. Cooldown runs on
    Trio's clock. `pull` gets one profile into a file (`pull_profile`; tests pass a stand-in).
    `run(wait_poll)` evaluates after each poll (`Watchdog.wait_polls`) and starts
    each capture as a background task of its own nursery, so a slow pprof endpoint never delays
    the next evaluation (the trigger refuses overlapping captures).
    """

    def __init__(self, store: ProfileStore, trigger: PressureTrigger, *,
                 rss: Callable[[], RssReading | None], limit: Callable[[], int | None],
                 pprof_url: str, capture_timeout: float = 30.0,
                 max_profile_bytes: int = 128 * 1024 * 1024,
                 wall_clock_ns: Callable[[], int] = time.time_ns,
                 pull: Puller = pull_profile) -> None:
        self.store = store
        self.trigger = trigger
        self._rss = rss
        self._limit = limit
        self.pprof_url = pprof_url.rstrip("/")
        self.capture_timeout = capture_timeout
        self.max_profile_bytes = max_profile_bytes
        self._wall_ns = wall_clock_ns
        self._pull = pull
        self._evaluations = 0
        self._captures = 0
        self._failures = 0
        self._skipped = 0
        self._last_error = ""
        self._last_verdict: Verdict | None = None
        self._last_capture: float | None = None
        self.captured = trio.Event()  # set at every capture, then replaced (tests wait on it)

    def statistics(self) -> ProfilerStatistics:
        verdict = self._last_verdict.value if self._last_verdict is not None else ""
        return ProfilerStatistics(self._evaluations, self._captures, self._failures,
                                  self._skipped, self._last_error, verdict, self._last_capture)

    async def run(self, wait_poll: Callable[[int], Awaitable[None]], *,
                  task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Evaluate after every poll, forever (returns only by cancellation)."""
        async with trio.open_nursery() as nursery:
            task_status.started()
            polls = 0
            while True:
                polls += 1
                await wait_poll(polls)
                await self.evaluate(nursery)

    async def evaluate(self, nursery: trio.Nursery) -> Verdict:
        """Judge the current reading once; a CAPTURE starts `capture` in `nursery`."""
        await trio.lowlevel.checkpoint()
        reading, limit = self._rss(), self._limit()
        rss, sample_time = reading if reading is not None else (None, None)
        decision = self.trigger.evaluate(rss=rss, sample_time=sample_time, limit=limit,
                                         now=trio.current_time())
        self._evaluations += 1
        self._say(decision.verdict, rss, limit)
        if decision.verdict is Verdict.COOLDOWN:
            self._skipped += 1
        if decision.verdict is Verdict.CAPTURE:
            log.warning("memory pressure: RSS %d bytes reached %d%% of the %d-byte limit "
                        "(threshold %d); capturing pprof profiles from %s", decision.rss,
                        self.trigger.trigger_percent, decision.limit, decision.threshold,
                        self.pprof_url)
            nursery.start_soon(self.capture, decision.rss, decision.limit, decision.threshold)
        return decision.verdict

    def _say(self, verdict: Verdict, rss: int | None, limit: int | None) -> None:
        # Say it once when the profiler cannot work (no limit, no RSS), and when it can again.
        if verdict is Verdict.STALE:
            return  # says nothing new; the verdict before it stands
        previous, self._last_verdict = self._last_verdict, verdict
        if verdict is previous:
            return
        if verdict is Verdict.NO_LIMIT:
            log.info("pressure profiler idle: no memory limit found (%s); set "
                     "--pressure-profiler-limit-bytes to give one", self._limit_source())
        elif verdict is Verdict.NO_RSS:
            log.info("pressure profiler idle: no RSS reading of the node (%s not scraped, or "
                     "--node-pid gone)", RSS_METRIC)
        elif previous in (Verdict.NO_LIMIT, Verdict.NO_RSS, None) and limit is not None:
            log.info("pressure profiler watching: RSS %s bytes, limit %d bytes, trigger at %d%%",
                     rss, limit, self.trigger.trigger_percent)

    def _limit_source(self) -> str:
        describe = getattr(self._limit, "describe", None)
        return describe() if callable(describe) else "limit reader"

    async def capture(self, rss: int, limit: int, threshold: int) -> CaptureRecord | None:
        """Pull every profile into a new event, publish it, evict past the caps. A profile that
        cannot be pulled is logged and left out (the record still keeps the moment); a directory
        that cannot be written fails the capture, and no cooldown starts."""
        ok = False
        try:
            record = await self._capture(rss, limit, threshold)
            ok = record is not None
            if record is not None:
                self._last_capture = record.captured_at_ns / 1e9
            return record
        finally:
            self.trigger.finished(ok=ok, now=trio.current_time())
            if ok:
                self._captures += 1
                self.captured.set()
                self.captured = trio.Event()
            else:
                self._failures += 1

    async def _capture(self, rss: int, limit: int, threshold: int) -> CaptureRecord | None:
        at = self._wall_ns()
        profile_id = format_profile_id(at)
        store = self.store
        try:
            staging = await trio.to_thread.run_sync(store.begin, profile_id)
        except OSError as exc:
            self._fail(f"cannot create the event directory in {store.base}: {exc}")
            return None
        published = False
        try:
            files: list[ProfileFile] = []
            for target in PROFILE_TARGETS:
                url = self.pprof_url + target.path
                dest = os.path.join(staging, target.filename)
                try:
                    size = await self._pull(url, dest, timeout=self.capture_timeout,
                                              max_bytes=self.max_profile_bytes)
                except (CaptureFailed, OSError) as exc:
                    self._fail(f"{target.type} profile not captured: {exc}")
                    continue
                files.append(ProfileFile(target.type, target.filename,
                                         os.path.join(store.event_dir(profile_id),
                                                      target.filename), size))
            record = CaptureRecord(profile_id=profile_id, captured_at_ns=at,
                                   source_endpoint=self.pprof_url, rss_bytes=rss,
                                   cgroup_limit_bytes=limit,
                                   trigger_percent=self.trigger.trigger_percent,
                                   threshold_bytes=threshold, profiles=tuple(files),
                                   pod_name=store.pod_name, role=store.role)
            try:
                evicted = await trio.to_thread.run_sync(store.finish, staging, record)
            except OSError as exc:
                self._fail(f"cannot write capture event {profile_id}: {exc}")
                return None
            published = True
        finally:
            if not published:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(store.abandon, staging)
        log.warning("captured memory-pressure profiles %s (%s) in %s", profile_id,
                    ", ".join(f"{p.type} {p.size_bytes} bytes" for p in files) or "none",
                    store.base)
        if evicted:
            log.info("evicted capture events %s (keeping at most %d events, %d bytes)",
                     ", ".join(evicted), store.max_events, store.max_bytes)
        return record

    def _fail(self, message: str) -> None:
        self._last_error = message
        log.warning("pressure profiler: %s", message)


CAPTURES = "fodc_pressure_captures_total"
FAILURES = "fodc_pressure_capture_failures_total"
SKIPPED = "fodc_pressure_skipped_cooldown_total"
LAST_CAPTURE = "fodc_pressure_last_capture_timestamp_seconds"


def pressure_samples(stats: ProfilerStatistics, *, labels: Mapping[str, str],
                     now: float | None) -> list[Sample]:
    """The profiler's figures, added to the agent's own (docs/agent.md): captures, failures and
    triggers skipped for the cooldown (counters), and the time of the last capture (a gauge,
    absent until one)."""
    out = [
        Sample(CAPTURES, dict(labels), float(stats.captures),
               "Memory-pressure captures of the node's pprof profiles.", int(MetricType.COUNTER),
               now),
        Sample(FAILURES, dict(labels), float(stats.failures),
               "Memory-pressure captures that failed (the profile directory not writable).",
               int(MetricType.COUNTER), now),
        Sample(SKIPPED, dict(labels), float(stats.skipped_cooldown),
               "Polls over the memory-pressure trigger that did not capture: within the cooldown.",
               int(MetricType.COUNTER), now),
    ]
    if stats.last_capture_unix is not None:
        out.append(Sample(LAST_CAPTURE, dict(labels), stats.last_capture_unix,
                          "Unix time of the last memory-pressure capture.",
                          int(MetricType.GAUGE), now))
    return out


def store_records(store: ProfileStore | None) -> Sequence[CaptureRecord]:
    """Blocking: every event of `store` (none without a store)."""
    return [] if store is None else store.list_events()
