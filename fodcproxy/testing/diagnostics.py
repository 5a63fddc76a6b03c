"""Fake agent services for StreamCrashDiagnostics and StreamPressureProfiles (`AgentService`).

Use them as `FakeAgent(..., services=[FakeCrashService([...]), FakePressureService({...})])`.
Both answer the way upstream's Go agent does (one message per crash record and no end marker;
records then `list_complete`; chunks of at most 1 MiB with `request_id`, `last`, `error`), and
have knobs for hostile behaviour:

| knob (FakePressureService)   | what it does                                                  |
|------------------------------|---------------------------------------------------------------|
| `never_complete=True`        | never sends `list_complete`                                   |
| `hang_after_chunks=n`        | sends n chunks of a download, then nothing more               |
| `oversized_chunk=True`       | sends one chunk of 2 MiB                                      |
| `wrong_request_id=True`      | tags every chunk with another request id                      |
| `error="..."`                | answers every fetch with an error chunk                       |
| `chunk_delay=s`              | waits s seconds before each chunk                             |
| `serve_cancel=False`         | ignores our cancel extension (as upstream's agent does)       |
| `empty_after_chunks=n`       | sends n chunks, then empty ones (not last) forever            |
| `list_delay=s`               | waits s seconds before answering each list                    |

The crash service's `delay` waits before the first record, `gap` between records.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Mapping, Sequence
from typing import Any

import trio
from google.protobuf.timestamp_pb2 import Timestamp

from fodcproxy.rpc.client import ClientCall
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_CRASH_DIAGNOSTICS, STREAM_PRESSURE_PROFILES

__all__ = ["FakeCrashService", "FakePressureService", "crash_record", "profile_record"]

CHUNK = 1024 * 1024


def _ts(unix: float) -> Timestamp:
    t = Timestamp()
    t.FromNanoseconds(int(unix * 1e9))
    return t


def crash_record(artifact_dir: str = "/var/crash/banyand-0001", *, component: str = "measure",
                 panic_value: str = "runtime error: index out of range [3] with length 3",
                 stack: str = "goroutine 1 [running]:\nmain.main()\n\t/src/main.go:42 +0x1d\n",
                 occurred_at: float = 1_790_000_000.5,
                 files: Sequence[str] = ("panic.json", "stack.txt")) -> Any:
    """A StreamCrashDiagnosticsRequest as upstream's agent sends it."""
    return pb.StreamCrashDiagnosticsRequest(
        fetched_at=_ts(occurred_at + 1), source_endpoint="file://" + artifact_dir,
        artifact_dir=artifact_dir, files=list(files),
        panic_record=pb.CrashPanicRecord(
            occurred_at=_ts(occurred_at), component=component, panic_value=panic_value,
            recovered=False, goroutine_stack=stack,
            breadcrumbs=[pb.CrashBreadcrumb(time=_ts(occurred_at - 1), stage="flush",
                                            component=component, fields={"shard": "3"})],
            process_metadata={"pid": "4242", "version": "0.9.0"}))


def profile_record(profile_id: str, sizes: Mapping[str, int], *, directory: str = "/tmp/pp",
                   captured_at: float | None = None) -> Any:
    """A PressureProfileRecord for a capture event holding profiles of `sizes` bytes.

    `captured_at` defaults to the time the profile id names when it is one of upstream's
    (`20260627T101112.000000000Z`), else to a fixed instant."""
    if captured_at is None:
        try:
            captured_at = calendar.timegm(time.strptime(profile_id[:15], "%Y%m%dT%H%M%S"))
        except ValueError:
            captured_at = 1_790_000_100.0
    return pb.PressureProfileRecord(
        profile_id=profile_id, captured_at=_ts(captured_at),
        source_endpoint="http://localhost:6060", rss_bytes=800 << 20,
        cgroup_limit_bytes=1 << 30, trigger_percent=75, threshold_bytes=(1 << 30) * 75 // 100,
        profiles=[pb.PressureProfileInfo(type=t, filename=f"{t}.pprof",
                                         filepath=f"{directory}/{profile_id}/{t}.pprof",
                                         format="pprof", size_bytes=n)
                  for t, n in sizes.items()])


class FakeCrashService:
    """Answers request_diagnostics with one message per record (no end marker)."""

    method = STREAM_CRASH_DIAGNOSTICS
    response_type = pb.StreamCrashDiagnosticsResponse

    def __init__(self, records: Sequence[Any] = (), *, delay: float = 0.0,
                 gap: float = 0.0) -> None:
        self.records = list(records)
        self.delay = delay
        self.gap = gap
        self.requests = 0
        self.call: ClientCall | None = None

    async def serve(self, call: ClientCall) -> None:
        self.call = call
        while (cmd := await call.receive()) is not None:
            if not cmd.request_diagnostics:
                continue
            self.requests += 1
            if self.delay:
                await trio.sleep(self.delay)
            for i, record in enumerate(self.records):
                if i and self.gap:
                    await trio.sleep(self.gap)
                await call.send(record)


class _Profile:
    def __init__(self, record: Any, data: Mapping[str, bytes | int]) -> None:
        self.record = record
        self.data = data

    def read(self, type_: str) -> bytes | int | None:
        return self.data.get(type_)


class FakePressureService:
    """Answers list_profiles and fetch_profile from profiles held in memory.

    `profiles` maps a profile id to {type: bytes} (or {type: n}: n bytes made up on the fly,
    for big profiles that should not be held by the test either).
    """

    method = STREAM_PRESSURE_PROFILES
    response_type = pb.StreamPressureProfilesResponse

    def __init__(self, profiles: Mapping[str, Mapping[str, bytes | int]] | None = None, *,
                 never_complete: bool = False, hang_after_chunks: int | None = None,
                 oversized_chunk: bool = False, wrong_request_id: bool = False,
                 error: str = "", chunk_delay: float = 0.0, serve_cancel: bool = True,
                 chunk_size: int = CHUNK, empty_after_chunks: int | None = None,
                 list_delay: float = 0.0) -> None:
        self.profiles: dict[str, _Profile] = {}
        for pid, data in (profiles or {}).items():
            sizes = {t: (v if isinstance(v, int) else len(v)) for t, v in data.items()}
            self.profiles[pid] = _Profile(profile_record(pid, sizes), data)
        self.never_complete = never_complete
        self.hang_after_chunks = hang_after_chunks
        self.oversized_chunk = oversized_chunk
        self.wrong_request_id = wrong_request_id
        self.error = error
        self.chunk_delay = chunk_delay
        self.serve_cancel = serve_cancel
        self.chunk_size = chunk_size
        self.empty_after_chunks = empty_after_chunks
        self.list_delay = list_delay
        self.lists = 0
        self.fetches: list[Any] = []
        self.cancels: list[str] = []
        self.chunks_sent = 0
        self.bytes_sent = 0
        self.fetches_done = 0
        self.call: ClientCall | None = None
        self._cancelled: set[str] = set()

    async def serve(self, call: ClientCall) -> None:
        self.call = call
        async with trio.open_nursery() as nursery:
            while (cmd := await call.receive()) is not None:
                which = cmd.WhichOneof("command")
                if which == "list_profiles":
                    self.lists += 1
                    nursery.start_soon(self._list, call, cmd.list_profiles.request_id)
                elif which == "fetch_profile":
                    f = cmd.fetch_profile
                    if not f.profile_id and not f.type and not f.filepath:
                        self.cancels.append(f.request_id)
                        if self.serve_cancel:
                            self._cancelled.add(f.request_id)
                            continue
                    self.fetches.append(f)
                    nursery.start_soon(self._fetch, call, f)
            nursery.cancel_scope.cancel()

    async def _list(self, call: ClientCall, request_id: str) -> None:
        if self.list_delay:
            await trio.sleep(self.list_delay)
        for p in self.profiles.values():
            await call.send(pb.StreamPressureProfilesRequest(record=p.record))
        if not self.never_complete:
            await call.send(pb.StreamPressureProfilesRequest(
                list_complete=pb.ListComplete(request_id=request_id)))

    def _chunk(self, f: Any, data: bytes = b"", *, last: bool = False, error: str = "") -> Any:
        rid = f.request_id + "-other" if self.wrong_request_id else f.request_id
        return pb.StreamPressureProfilesRequest(chunk=pb.PressureProfileChunk(
            request_id=rid, profile_id=f.profile_id, type=f.type, data=data, last=last,
            error=error))

    async def _fetch(self, call: ClientCall, f: Any) -> None:
        profile = None
        for p in self.profiles.values():
            for info in p.record.profiles:
                if info.filepath == f.filepath and info.type == f.type:
                    profile = p
        body = profile.read(f.type) if profile is not None else None
        if self.error or body is None:
            await call.send(self._chunk(f, last=True,
                                        error=self.error or f"no such file {f.filepath!r}"))
            return
        total = body if isinstance(body, int) else len(body)
        size = self.chunk_size
        filler = b"\x5a" * size if isinstance(body, int) else b""
        sent = 0
        n = 0
        while True:
            if f.request_id in self._cancelled:
                return
            if self.hang_after_chunks is not None and n >= self.hang_after_chunks:
                await trio.sleep_forever()
            if self.chunk_delay:
                await trio.sleep(self.chunk_delay)
            if self.empty_after_chunks is not None and n >= self.empty_after_chunks:
                await call.send(self._chunk(f))
                continue
            if self.oversized_chunk:
                await call.send(self._chunk(f, b"\0" * (2 * CHUNK)))
                return
            step = min(size, total - sent)
            data = filler[:step] if isinstance(body, int) else body[sent:sent + step]
            sent += step
            last = sent >= total
            await call.send(self._chunk(f, data, last=last))
            n += 1
            self.chunks_sent += 1
            self.bytes_sent += step
            if last:
                self.fetches_done += 1
                return


def now_ts() -> Timestamp:
    return _ts(time.time())
