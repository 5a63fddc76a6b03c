"""Test-side stand-ins for the proxy's end of StreamPressureProfiles, over real gRPC on loopback.

`open_pressure_stream(service)` serves StreamPressureProfiles on a `GrpcServer`, connects a real
client channel to it and runs `service.serve` on the client's call, the way `AgentClient` does;
it yields a `ProxySide` that sends commands and reads what the agent answers. `make_event` writes
a capture event into a `ProfileStore` the way the profiler does.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from fodcproxy.agent.pressure import CaptureRecord, ProfileFile, format_profile_id
from fodcproxy.agent.profiler import ProfileStore
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_PRESSURE_PROFILES
from fodcproxy.rpc.server import GrpcServer, Method, ServerCall


def make_event(store: ProfileStore, second: int, **bodies: bytes) -> CaptureRecord:
    """A complete event captured at Unix time `second`, holding `bodies` (type -> bytes)."""
    profile_id = format_profile_id(second * 1_000_000_000)
    staging = store.begin(profile_id)
    files = []
    for kind, body in bodies.items():
        with open(os.path.join(staging, f"{kind}.pprof"), "wb") as f:
            f.write(body)
        files.append(ProfileFile(kind, f"{kind}.pprof",
                                 os.path.join(store.event_dir(profile_id), f"{kind}.pprof"),
                                 len(body)))
    record = CaptureRecord(profile_id=profile_id, captured_at_ns=second * 1_000_000_000,
                           source_endpoint="http://localhost:6060", rss_bytes=800 + second,
                           cgroup_limit_bytes=1000, trigger_percent=75, threshold_bytes=750,
                           profiles=tuple(files))
    store.finish(staging, record)
    return record


class ProxySide:
    """The proxy's end of one StreamPressureProfiles call: commands out, answers in."""

    def __init__(self, call: ServerCall, end: trio.Event | None = None,
                 ended: trio.Event | None = None) -> None:
        self.call = call
        self._end = end if end is not None else trio.Event()
        # set when the agent's serve() has returned
        self.ended = ended if ended is not None else trio.Event()
        self.raw: list[bytes] = []  # every message received, serialized again (interop checks)

    def end(self) -> None:
        """The proxy ends the call (its handler returns)."""
        self._end.set()

    async def list_profiles(self, request_id: str = "L1") -> Any:
        await self.call.send(pb.StreamPressureProfilesResponse(
            list_profiles=pb.ListProfiles(request_id=request_id)))

    async def fetch_profile(self, request_id: str, profile_id: str = "", type: str = "",
                            filepath: str = "") -> None:
        await self.call.send(pb.StreamPressureProfilesResponse(
            fetch_profile=pb.FetchPressureProfile(request_id=request_id, profile_id=profile_id,
                                                  type=type, filepath=filepath)))

    async def receive(self) -> Any:
        message = await self.call.receive()
        assert message is not None, "the agent ended the stream"
        self.raw.append(message.SerializeToString())
        return message

    async def records(self, request_id: str = "L1") -> list[Any]:
        """List and collect the records up to the list's `list_complete`."""
        await self.list_profiles(request_id)
        out = []
        while True:
            message = await self.receive()
            kind = message.WhichOneof("payload")
            if kind == "list_complete":
                assert message.list_complete.request_id == request_id
                return out
            assert kind == "record", message
            out.append(message.record)

    async def download(self, request_id: str, **fetch: str) -> tuple[bytes, str, list[Any]]:
        """Fetch and collect the chunks up to the last: (data, error, chunks)."""
        await self.fetch_profile(request_id, **fetch)
        chunks = []
        while True:
            message = await self.receive()
            assert message.WhichOneof("payload") == "chunk", message
            chunk = message.chunk
            assert chunk.request_id == request_id
            chunks.append(chunk)
            if chunk.last:
                return b"".join(c.data for c in chunks), chunk.error, chunks


@asynccontextmanager
async def open_pressure_stream(service: Any) -> AsyncIterator[ProxySide]:
    """Run `service` (a PressureProfilesService) on a real gRPC call over loopback."""
    arrived: trio.MemorySendChannel[tuple[ServerCall, trio.Event]]
    arrived, calls = trio.open_memory_channel(1)

    async def handler(call: ServerCall) -> None:
        call.connection.claim(handler)  # as a registration would: the connection's budget
        done = trio.Event()
        await arrived.send((call, done))
        await done.wait()

    server = GrpcServer({STREAM_PRESSURE_PROFILES: Method(pb.StreamPressureProfilesRequest,
                                                          handler)})
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        async with open_channel("127.0.0.1", port) as channel:
            call = await channel.start_call(STREAM_PRESSURE_PROFILES,
                                            pb.StreamPressureProfilesResponse)
            ended = trio.Event()

            async def serve() -> None:
                try:
                    await service.serve(call)
                finally:
                    ended.set()

            nursery.start_soon(serve)
            server_call, done = await calls.receive()
            try:
                yield ProxySide(server_call, done, ended)
            finally:
                done.set()  # the proxy ends the call: the agent's serve returns
                with trio.fail_after(5):
                    await ended.wait()
                nursery.cancel_scope.cancel()
