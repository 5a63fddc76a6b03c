"""The agent's crash records, the Trio shell: `CrashWatcher` watches the node's crash directories
(`--crash-source-dir`) and `CrashDiagnosticsService` answers the proxy on StreamCrashDiagnostics.

The rules (which files to read, when, what a record is, which records to keep, how a record is
cut to one message) are `fodcproxy.agent.crash`'s, sans-IO. This module does the file system
and the waiting:

- `list_crash_dir` and `read_panic_file` are plain blocking functions. The watcher runs them in
  a worker thread (`offload`), so a slow or hung file system (NFS) stalls the watcher, never the
  agent's heartbeats. Everything is opened relative to a descriptor of the crash directory with
  ``O_NOFOLLOW``: a symbolic link (an artifact directory, or a ``panic.json`` that points
  elsewhere) is refused, not followed, and a FIFO or device named ``panic.json`` is refused
  without blocking. A read stops at ``CrashLimits.max_file_bytes + 1`` bytes.
- `CrashWatcher.run` lists each directory every `poll_interval` seconds, on a fixed grid. When a
  listing leaves an artifact waiting for its second look (``panic.json`` must show the same size
  and mtime twice), it lists again after `settle` seconds (at most 3 times in a row), so a new
  record is read `settle` after the listing that first saw it rather than an interval later.
- Nothing a directory holds stops the watcher: a missing directory, a permission error, a file
  that vanishes mid-read, a bad record are each logged once (again only when the message
  changes, and once more when the problem is gone), and the next listing carries on.

See docs/agent.md ("Crash records").
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import attrs
import trio

from fodcproxy.agent.crash import (
    PANIC_FILE,
    ArtifactListing,
    CrashKeeper,
    CrashLimits,
    CrashRecord,
    CrashRecordError,
    FileStat,
    ReadRequest,
    fit_record,
)
from fodcproxy.process import format_duration
from fodcproxy.rpc.client import ClientCall
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_CRASH_DIAGNOSTICS

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_RECORDS", "DEFAULT_POLL_INTERVAL", "CrashDiagnosticsService", "CrashWatcher",
    "RefusedFile", "list_crash_dir", "read_panic_file", "shown",
]

log = logging.getLogger(__name__)

DEFAULT_MAX_RECORDS = 32
DEFAULT_POLL_INTERVAL = 5.0
# Memory the records of one directory may hold. Typical records cost 10-40 KiB, so it only ever
# binds on hostile ones (a 1 MiB panic.json can cost 4 MiB in CPython strings).
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
MAX_ARTIFACT_DIRS = 256  # the newest (by name) sub-directories looked at per listing
MAX_ARTIFACT_FILES = 256  # files listed per artifact directory
_QUICK_RELISTS = 3
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
_NOFOLLOW_DIR = _DIR_FLAGS | os.O_NOFOLLOW
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_READ_CHUNK = 64 * 1024
_MESSAGE_MARGIN = 1024  # what a message keeps free beside the record (as the metrics chunks do)

T = TypeVar("T")
Offload = Callable[[Callable[[], Any]], Awaitable[Any]]
"""Runs a blocking function and returns its result (by default in a worker thread)."""


async def in_thread(fn: Callable[[], T]) -> T:
    """The default `Offload`: a worker thread, abandoned (not waited for) on cancellation, so a
    hung file system cannot hold up the agent's shutdown."""
    return await trio.to_thread.run_sync(fn, abandon_on_cancel=True)


class RefusedFile(OSError):
    """A file the agent will not read: a symbolic link, or not a regular file."""


# --- the file system (blocking; run in a worker thread) ------------------------------------------


@attrs.frozen
class DirListing:
    """What `list_crash_dir` saw: the artifacts, and per artifact name what was odd about it."""

    artifacts: tuple[ArtifactListing, ...]
    problems: dict[str, str] = attrs.field(factory=dict)


def list_crash_dir(root: str, *, max_dirs: int = MAX_ARTIFACT_DIRS,
                   max_files: int = MAX_ARTIFACT_FILES) -> DirListing:
    """List `root`'s artifact directories: the `max_dirs` greatest names among its
    sub-directories (symbolic links are not followed), each with up to `max_files` of its files
    (sub-directories left out; ``panic.json`` always looked up). Blocking.

    An artifact directory that cannot be opened or listed is given with no files (so the keeper
    keeps what it holds and reads nothing), and its problem is named in `problems`; one that
    vanished meanwhile is left out, as it is gone. Raises OSError when `root` itself cannot be
    listed (missing, not a directory, no permission).
    """
    problems: dict[str, str] = {}
    fd = os.open(root, _DIR_FLAGS)
    try:
        names = []
        with os.scandir(fd) as entries:
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        if not _utf8(entry.name):
                            problems[entry.name] = "the name is not UTF-8: ignored"
                            continue
                        names.append(entry.name)
                    elif entry.is_symlink() and entry.is_dir():
                        problems[entry.name] = ("a symbolic link to a directory: not followed "
                                                "(the agent reads only inside the crash directory)")
                except OSError:
                    continue  # vanished between the listing and the check
        names.sort()
        if len(names) > max_dirs:
            problems[""] = (f"more than {max_dirs} sub-directories: only the newest {max_dirs} "
                            "(by name) are looked at")
            names = names[-max_dirs:]
        artifacts = []
        for name in names:
            files = _list_artifact(fd, name, max_files, problems)
            if files is not None:
                artifacts.append(ArtifactListing(name, files))
        return DirListing(tuple(artifacts), problems)
    finally:
        os.close(fd)


def _list_artifact(root_fd: int, name: str, max_files: int,
                   problems: dict[str, str]) -> tuple[FileStat, ...] | None:
    try:
        fd = os.open(name, _NOFOLLOW_DIR, dir_fd=root_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems[name] = f"cannot open the directory: {_reason(exc)}"
        return ()
    try:
        files: list[FileStat] = []
        with os.scandir(fd) as entries:
            for entry in entries:
                if len(files) >= max_files:
                    problems[name] = f"more than {max_files} files: only {max_files} are listed"
                    break
                try:
                    if entry.is_dir(follow_symlinks=False):
                        continue
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                # A name that is not UTF-8 is listed with U+FFFD in place of its bad bytes
                # (protobuf strings are UTF-8); panic.json itself is always a proper name.
                shown = entry.name if _utf8(entry.name) else os.fsencode(entry.name).decode(
                    "utf-8", "replace")
                files.append(FileStat(shown, st.st_size, st.st_mtime))
        if not any(f.name == PANIC_FILE for f in files):
            try:
                st = os.stat(PANIC_FILE, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                if not stat.S_ISDIR(st.st_mode):
                    files.append(FileStat(PANIC_FILE, st.st_size, st.st_mtime))
        return tuple(files)
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems[name] = f"cannot list the directory: {_reason(exc)}"
        return ()
    finally:
        os.close(fd)


def read_panic_file(root: str, artifact: str, file: str, max_bytes: int) -> bytes:
    """Read at most `max_bytes` of `root`/`artifact`/`file`. Blocking.

    Opened step by step with ``O_NOFOLLOW``, so neither the artifact directory nor the file may
    be a symbolic link, and with ``O_NONBLOCK``, so a FIFO cannot hang the read. Raises
    `RefusedFile` for a link or anything but a regular file, OSError for the rest (a file that
    vanished: FileNotFoundError).
    """
    root_fd = os.open(root, _DIR_FLAGS)
    try:
        try:
            dir_fd = os.open(artifact, _NOFOLLOW_DIR, dir_fd=root_fd)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise RefusedFile(exc.errno, "the artifact is no longer a directory, or is a "
                                             "symbolic link: not followed") from None
            raise
        try:
            try:
                fd = os.open(file, _FILE_FLAGS, dir_fd=dir_fd)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise RefusedFile(exc.errno, f"{file} is a symbolic link: not followed (the "
                                                 "agent reads only inside the crash directory)") from None
                raise
        finally:
            os.close(dir_fd)
    finally:
        os.close(root_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RefusedFile(errno.EINVAL, f"{file} is not a regular file")
        chunks = []
        left = max_bytes
        while left > 0:
            chunk = os.read(fd, min(_READ_CHUNK, left))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _utf8(name: str) -> bool:
    """False for a name whose bytes are not UTF-8 (Python holds them as lone surrogates)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def shown(text: str, limit: int = 200) -> str:
    """`text` safe for one log line: cut to `limit`, control characters and bytes that are not
    UTF-8 escaped (a directory name or a panic value cannot forge log lines)."""
    text = text[:limit]
    if text.isprintable() and _utf8(text):
        return text
    return text.encode("unicode_escape", "backslashreplace").decode("ascii")


# --- the watcher ---------------------------------------------------------------------------------


class _Said:
    """Says each problem once: again only when its message changes, and once when it is gone."""

    def __init__(self, where: str) -> None:
        self.where = where
        self._said: dict[str, str] = {}

    def problem(self, key: str, message: str, level: int = logging.WARNING) -> None:
        if self._said.get(key) != message:
            self._said[key] = message
            log.log(level, "%s: %s", self._name(key), message)

    def fine(self, key: str) -> None:
        if self._said.pop(key, None) is not None:
            log.info("%s: fine again", self._name(key))

    def keep_only(self, keys: set[str]) -> None:
        for key in [k for k in self._said if k and k not in keys]:
            del self._said[key]  # gone from the directory: nothing to say about it any more

    def _name(self, key: str) -> str:
        return f"crash directory {shown(self.where, 4096)}" + (f", {shown(key)}" if key else "")


@attrs.frozen
class CrashWatcherStatistics:
    listings: int
    listing_errors: int
    records_read: int
    bad_records: int
    read_errors: int
    records_kept: int
    bytes_held: int


class CrashWatcher:
    """Watches crash directories and keeps the newest `max_records` panic records of them all.

    One `CrashKeeper` per directory (each holds at most `max_records`, and at most `max_bytes`
    of memory by `record_cost` beside its newest record); `records()` merges them.
    `offload` runs the blocking listing and reading (a worker thread by default; tests under
    `trio.testing.MockClock` pass one that runs them inline). `clock` is the wall clock that
    stamps `fetched_at`.
    """

    def __init__(self, dirs: Sequence[str], *, max_records: int = DEFAULT_MAX_RECORDS,
                 poll_interval: float = DEFAULT_POLL_INTERVAL, limits: CrashLimits = CrashLimits(),
                 settle: float = 0.25, max_dirs: int = MAX_ARTIFACT_DIRS,
                 max_files: int = MAX_ARTIFACT_FILES, max_bytes: int = DEFAULT_MAX_BYTES,
                 offload: Offload = in_thread,
                 clock: Callable[[], float] = time.time) -> None:
        if not dirs:
            raise ValueError("a crash watcher needs at least one directory")
        if not poll_interval > 0:
            raise ValueError("poll_interval must be greater than 0")
        self.dirs = tuple(dirs)
        self.max_records = max_records
        self.poll_interval = poll_interval
        self.settle = min(settle, poll_interval / 4)
        self.max_dirs = max_dirs
        self.max_files = max_files
        self._offload = offload
        self._clock = clock
        self.keepers = {d: CrashKeeper(source=f"file://{d}", max_records=max_records,
                                       limits=limits, max_listed=max_dirs,
                                       max_bytes=max_bytes) for d in self.dirs}
        self._listings = self._listing_errors = self._read = self._bad = self._read_errors = 0
        self.changed = trio.Event()  # set (and replaced) whenever a record is kept

    def records(self) -> tuple[CrashRecord, ...]:
        """The newest `max_records` records of all directories, newest first. An artifact name
        found in two directories counts once (the first directory's), as upstream's agent
        merges its sources."""
        seen: set[str] = set()
        merged = []
        for keeper in self.keepers.values():
            for record in keeper.records():
                if record.artifact_dir not in seen:
                    seen.add(record.artifact_dir)
                    merged.append((keeper.sort_key(record), record))
        merged.sort(key=lambda kr: kr[0], reverse=True)
        return tuple(record for _, record in merged[:self.max_records])

    def statistics(self) -> CrashWatcherStatistics:
        return CrashWatcherStatistics(self._listings, self._listing_errors, self._read, self._bad,
                                      self._read_errors, len(self.records()),
                                      sum(k.bytes_held for k in self.keepers.values()))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch every directory until cancelled. Reports started at once: the first listings
        run in the background (a hung file system must not hold up the agent's start), and a
        record already there is read `settle` after its directory's first listing."""
        async with trio.open_nursery() as nursery:
            for d in self.dirs:
                nursery.start_soon(self._watch, d)
            log.info("watching crash directories %s every %s (keeping the newest %d records)",
                     ", ".join(self.dirs), format_duration(self.poll_interval), self.max_records)
            task_status.started()

    async def _watch(self, root: str) -> None:
        keeper = self.keepers[root]
        said = _Said(root)
        quick = 0
        tick = trio.current_time()
        while True:
            try:
                await self.poll(root, keeper, said)
            except Exception as exc:  # a bug here must not take the agent down: say it, go on
                said.problem("", f"unexpected error, retrying next interval: {exc!r}",
                             logging.ERROR)
                log.debug("crash watcher error", exc_info=True)
            if keeper.pending and quick < _QUICK_RELISTS:
                quick += 1
                await trio.sleep(self.settle)
                continue
            quick = 0
            tick += self.poll_interval
            now = trio.current_time()
            if tick < now:  # a listing took longer than the interval: skip, do not catch up
                tick = now + self.poll_interval
            await trio.sleep_until(tick)

    async def poll(self, root: str, keeper: CrashKeeper, said: _Said) -> None:
        """One listing of `root`, and the reads the keeper asks for."""
        self._listings += 1
        try:
            listing: DirListing = await self._offload(functools.partial(
                list_crash_dir, root, max_dirs=self.max_dirs, max_files=self.max_files))
        except FileNotFoundError:
            self._listing_errors += 1
            said.problem("", f"does not exist (yet): looking again every "
                             f"{format_duration(self.poll_interval)}")
            return
        except OSError as exc:
            self._listing_errors += 1
            said.problem("", f"cannot be listed: {_reason(exc)}")
            return
        if "" in listing.problems:
            said.problem("", listing.problems[""])
        else:
            said.fine("")
        names = {a.name for a in listing.artifacts} | set(listing.problems)
        said.keep_only(names)
        for name, problem in listing.problems.items():
            if name:
                said.problem(name, problem)
        for request in keeper.observe(listing.artifacts):
            if await self._read_one(root, keeper, request, said) and (
                    request.artifact_dir not in listing.problems):
                said.fine(request.artifact_dir)

    async def _read_one(self, root: str, keeper: CrashKeeper, request: ReadRequest,
                        said: _Said) -> bool:
        """Read one record for the keeper; False when that went wrong (and was said)."""
        name = request.artifact_dir
        try:
            data: bytes = await self._offload(functools.partial(
                read_panic_file, root, name, request.file, request.max_bytes))
        except FileNotFoundError:
            return True  # removed while we looked: the next listing forgets it
        except OSError as exc:
            # Asked again at the next listing (a permission may be fixed); said once.
            self._read_errors += 1
            said.problem(name, f"cannot read {request.file}: {_reason(exc)}")
            return False
        try:
            record = keeper.deliver(request, data, now=self._clock())
        except CrashRecordError as exc:
            self._bad += 1
            said.problem(name, f"refused: {exc.reason}")
            return False
        if record is None:
            return True
        self._read += 1
        log.warning("crash record %s/%s: %s panicked (%s): %s", shown(root, 4096), shown(name),
                    shown(record.component) or "a component", "recovered" if record.recovered
                    else "not recovered", shown(record.panic_value))
        self.changed.set()
        self.changed = trio.Event()
        return True


# --- the service ---------------------------------------------------------------------------------


@attrs.frozen
class CrashServiceStatistics:
    requests: int
    records_sent: int
    records_trimmed: int


class CrashDiagnosticsService:
    """StreamCrashDiagnostics, the agent's side (an `AgentService`): on each
    ``request_diagnostics`` it sends one StreamCrashDiagnosticsRequest per kept record, newest
    first, and nothing else (the proto has no end marker: the proxy ends the answer by a quiet
    period), as upstream's agent does. A record larger than one message of `max_message_size`
    is trimmed (`fit_record`) rather than breaking the stream. Records are encoded at each
    request (32 typical records take well under a millisecond) rather than cached beside the
    watcher's copy, so the memory they hold is counted once.
    """

    method = STREAM_CRASH_DIAGNOSTICS
    response_type = pb.StreamCrashDiagnosticsResponse

    def __init__(self, records: Callable[[], Sequence[CrashRecord]], *,
                 max_message_size: int = 4 * 1024 * 1024) -> None:
        self.records = records
        self.max_record_bytes = max_message_size - _MESSAGE_MARGIN
        self._trimmed_said: set[tuple[str, str, Any]] = set()
        self._requests = self._sent = self._trimmed = 0

    def statistics(self) -> CrashServiceStatistics:
        return CrashServiceStatistics(self._requests, self._sent, self._trimmed)

    async def serve(self, call: ClientCall) -> None:
        while (command := await call.receive()) is not None:
            if not command.request_diagnostics:
                continue  # upstream's agent ignores such a message too
            self._requests += 1
            records = tuple(self.records())
            for data in self._encode(records):
                await call.send_raw(data)
                self._sent += 1
            log.info("sent %d crash records to the proxy", len(records))

    def _encode(self, records: Sequence[CrashRecord]) -> list[bytes]:
        said: set[tuple[str, str, Any]] = set()
        out = []
        for record in records:
            key = (record.source, record.artifact_dir, record.fetched_at)
            try:
                data, cuts = fit_record(record, self.max_record_bytes)
            except ValueError as exc:  # not UTF-8 somewhere: the watcher should have stopped it
                log.error("crash record %s cannot be sent: %s", shown(record.artifact_dir), exc)
                continue
            if cuts:
                said.add(key)
                if key not in self._trimmed_said:  # said once per record, not per request
                    self._trimmed += 1
                    log.warning("crash record %s is over the %d-byte message limit: %s",
                                record.artifact_dir, self.max_record_bytes, "; ".join(cuts))
            out.append(data)
        self._trimmed_said = said  # only the records still kept
        return out
