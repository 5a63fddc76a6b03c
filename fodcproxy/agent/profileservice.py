"""StreamPressureProfiles, the agent's side: list capture events, send a profile's bytes.

`PressureProfilesService` is an `AgentService` (`fodcproxy.agent.client`). The proxy's commands
(StreamPressureProfilesResponse, the proto's naming is inverted) and our answers:

- ``list_profiles{request_id}`` -> one ``record`` (PressureProfileRecord) per complete capture
  event, oldest first, then ``list_complete{request_id}``. A list is answered even while a
  profile is being sent: records and chunks interleave on the stream, each message whole.
- ``fetch_profile{request_id, profile_id, type, filepath}`` -> ``chunk``s of at most
  `chunk_size` (1 MiB) bytes echoing request_id, profile_id and type, the final one marked
  ``last``; or a single chunk with ``error`` (and ``last``) when the file cannot be served: a
  path outside the profile directory or through a symlink, an unknown profile or type, a file
  deleted since it was listed, a read error, or the agent too busy (`FetchQueue`: one fetch is
  sent at a time and 8 wait; more are refused at once).
- A proxy that takes no message for `send_timeout` (5 min) has stopped reading: the stream is
  given up (`serve` returns and the agent's session starts over), not held forever.
- ``fetch_profile{request_id}`` with empty profile_id, type and filepath cancels the fetch of
  that request id (our extension, agreed with our proxy): a waiting one is dropped, a running
  one sends no further chunk. Nothing is sent for the cancelled request.

Without a `ProfileStore` (the profiler is disabled) lists are empty and fetches get an error, as
upstream's agent answers with no profile source.
"""

from __future__ import annotations

import logging
from typing import Any, BinaryIO

import trio

from fodcproxy.agent.pressure import (
    CaptureRecord,
    FetchQueue,
    PathRefused,
    oversized_fetch_field,
)
from fodcproxy.agent.profiler import ProfileStore, store_records
from fodcproxy.rpc.client import ClientCall, RpcError
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_PRESSURE_PROFILES

__all__ = ["CHUNK_SIZE", "PressureProfilesService", "record_to_proto"]

log = logging.getLogger(__name__)

CHUNK_SIZE = 1024 * 1024  # upstream's pressureChunkSize
_MAX_ID = 256  # request ids longer than this are not echoed in full in log lines


def record_to_proto(record: CaptureRecord) -> Any:
    """A PressureProfileRecord with upstream's fields."""
    message = pb.PressureProfileRecord(
        profile_id=record.profile_id, source_endpoint=record.source_endpoint,
        rss_bytes=record.rss_bytes, cgroup_limit_bytes=record.cgroup_limit_bytes,
        trigger_percent=record.trigger_percent, threshold_bytes=record.threshold_bytes,
        profiles=[pb.PressureProfileInfo(type=p.type, filename=p.filename, filepath=p.filepath,
                                         format=p.format, size_bytes=p.size_bytes)
                  for p in record.profiles])
    message.captured_at.FromNanoseconds(record.captured_at_ns)
    return message


class PressureProfilesService:
    """Answers StreamPressureProfiles from a `ProfileStore` (None: profiler disabled)."""

    method = STREAM_PRESSURE_PROFILES
    response_type = pb.StreamPressureProfilesResponse

    def __init__(self, store: ProfileStore | None, *, chunk_size: int = CHUNK_SIZE,
                 max_waiting: int = 8, send_timeout: float = 300.0) -> None:
        if not 1 <= chunk_size <= CHUNK_SIZE:
            raise ValueError(f"chunk_size must be 1-{CHUNK_SIZE}, not {chunk_size}")
        self.store = store
        self.chunk_size = chunk_size
        self.max_waiting = max_waiting
        self.send_timeout = send_timeout
        self.stalled = 0  # calls given up because the proxy took no message for send_timeout
        self.queue: FetchQueue | None = None  # the current call's (tests read its figures)
        self.lists_answered = 0
        self.fetches_sent = 0
        self.fetch_errors = 0

    async def serve(self, call: ClientCall) -> None:
        """Answer commands until the proxy ends the call (a send that finds it over ends the
        serving too; the client then sees the call's status and starts over)."""
        session = _Session(self, call)
        self.queue = session.queue
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.send_fetches)
                while True:
                    command = await call.receive()
                    if command is None:
                        break
                    await session.handle(command)
                nursery.cancel_scope.cancel()
        except* RpcError as group:
            log.debug("pressure profiles: the call ended while sending: %s", group.exceptions[0])
        except* _Stalled as group:
            log.warning("pressure profiles: %s; ending the stream", group.exceptions[0])


class _Stalled(Exception):
    """The proxy took no message for `send_timeout` seconds."""


class _Session:
    """One call's state: its send lock (messages go out whole, in turn) and its fetch queue."""

    def __init__(self, service: PressureProfilesService, call: ClientCall) -> None:
        self.service = service
        self.call = call
        self.queue = FetchQueue(service.max_waiting)
        self.lock = trio.Lock()  # fair: a list's records and a fetch's chunks take turns
        self.wakeup = trio.Event()
        # Set by a cancel of the running fetch; checked before each chunk. (Cancelling the task
        # inside a send could leave half a message on the stream.)
        self.stop_running = False

    async def send(self, message: Any) -> None:
        async with self.lock:
            # A proxy that takes nothing for send_timeout has stopped reading this stream: give
            # the call up (the session starts over) rather than hold a chunk and a task forever.
            # The message may be left half sent, which no longer matters: the call is done.
            with trio.move_on_after(self.service.send_timeout) as waited:
                await self.call.send(pb.StreamPressureProfilesRequest(**message))
            if waited.cancelled_caught:
                self.service.stalled += 1
                raise _Stalled(f"the proxy took no message for {self.service.send_timeout:g}s")

    async def handle(self, command: Any) -> None:
        kind = command.WhichOneof("command")
        if kind == "list_profiles":
            await self.answer_list(command.list_profiles.request_id)
        elif kind == "fetch_profile":
            await self.offer(command.fetch_profile)
        else:
            log.debug("pressure profiles: ignoring a command with no known payload")

    async def answer_list(self, request_id: str) -> None:
        records = await trio.to_thread.run_sync(store_records, self.service.store)
        for record in records:
            await self.send({"record": record_to_proto(record)})
        await self.send({"list_complete": pb.ListComplete(request_id=request_id)})
        self.service.lists_answered += 1

    async def offer(self, fetch: Any) -> None:
        if not (fetch.profile_id or fetch.type or fetch.filepath):
            where = self.queue.cancel(fetch.request_id)
            if where == "running":
                self.stop_running = True
            log.debug("pressure profiles: cancel of fetch %r: %s", fetch.request_id[:_MAX_ID],
                      where or "no such fetch")
            return
        oversized = oversized_fetch_field({"request_id": fetch.request_id,
                                           "profile_id": fetch.profile_id, "type": fetch.type,
                                           "filepath": fetch.filepath})
        if oversized is not None:
            self.service.fetch_errors += 1
            # Echo the request id only when it is the field within bounds.
            await self.send({"chunk": pb.PressureProfileChunk(
                request_id=fetch.request_id if len(fetch.request_id) <= 256 else "",
                error=oversized, last=True)})
            return
        refused, stop_running = self.queue.offer(fetch.request_id, fetch)
        if stop_running:
            self.stop_running = True
        if refused is not None:
            self.service.fetch_errors += 1
            await self.send({"chunk": _error_chunk(fetch, refused)})
            return
        self.wakeup.set()

    async def send_fetches(self) -> None:
        while True:
            item = self.queue.next()
            if item is None:
                await self.wakeup.wait()
                self.wakeup = trio.Event()
                continue
            self.stop_running = False
            try:
                await self.send_profile(item[1])
            finally:
                self.queue.done()

    async def send_profile(self, fetch: Any) -> None:
        store = self.service.store
        if store is None:
            await self.fail(fetch, "the pressure profiler is not enabled on this agent")
            return
        try:
            f: BinaryIO = await trio.to_thread.run_sync(
                lambda: store.open_profile(fetch.filepath, profile_id=fetch.profile_id,
                                           type_=fetch.type))
        except PathRefused as exc:
            log.warning("pressure profiles: refused fetch %r: %s", fetch.request_id[:_MAX_ID],
                        exc.message)
            await self.fail(fetch, exc.message)
            return
        except OSError as exc:
            await self.fail(fetch, exc.strerror or str(exc))
            return
        try:
            await self.stream(fetch, f)
        finally:
            f.close()

    async def stream(self, fetch: Any, f: BinaryIO) -> None:
        size = self.service.chunk_size
        try:
            current = await trio.to_thread.run_sync(f.read, size)
            while True:
                following = (await trio.to_thread.run_sync(f.read, size)
                             if len(current) == size else b"")
                if self.stop_running:
                    log.debug("pressure profiles: fetch %r cancelled",
                              fetch.request_id[:_MAX_ID])
                    return
                await self.send({"chunk": pb.PressureProfileChunk(
                    request_id=fetch.request_id, profile_id=fetch.profile_id, type=fetch.type,
                    data=current, last=not following)})
                if not following:
                    break
                current = following
        except OSError as exc:
            await self.fail(fetch, f"cannot read the profile: {exc}")
            return
        self.service.fetches_sent += 1

    async def fail(self, fetch: Any, message: str) -> None:
        if self.stop_running:
            return  # cancelled: nothing more is sent for it
        self.service.fetch_errors += 1
        await self.send({"chunk": _error_chunk(fetch, message)})


def _error_chunk(fetch: Any, message: str) -> Any:
    return pb.PressureProfileChunk(request_id=fetch.request_id, profile_id=fetch.profile_id,
                                   type=fetch.type, error=message, last=True)
