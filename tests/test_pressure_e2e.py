"""End to end: a real process grows its RSS past the trigger; our agent program (a subprocess,
`python -m fodcproxy agent`) captures its pprof profiles; the capture is listed and downloaded
byte-exact over real gRPC.

The node is tests/pressure_node.py. The proxy's side of StreamPressureProfiles is played by a
small test server on `fodcproxy.rpc.server.GrpcServer` (RegisterAgent, StreamMetrics held,
StreamPressureProfiles driven by the test), so the agent's whole path runs: registration, the
stream opened with its agent_id, the scrape feeding the RSS (or /proc/<pid> with --node-pid),
`--pressure-profiler-limit-bytes` standing in for a cgroup limit.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import REGISTER, STREAM_METRICS, STREAM_PRESSURE_PROFILES
from fodcproxy.rpc.server import GrpcServer, Method, ServerCall
from fodcproxy.testing.http import http_get, http_request
from pressure_harness import ProxySide
from pressure_node import profile_body

pytestmark = pytest.mark.slow

ROOT = pathlib.Path(__file__).resolve().parent.parent
NODE = str(ROOT / "tests" / "pressure_node.py")
HEAP_BYTES = 2_500_000  # three chunks
MIB = 1024 * 1024


class StandInProxy:
    """RegisterAgent (acknowledges every heartbeat), StreamMetrics (held), and the pressure
    stream handed to the test."""

    def __init__(self) -> None:
        self.send_stream, self.streams = trio.open_memory_channel[ServerCall](4)
        self.done = trio.Event()

    def methods(self) -> dict[str, Method]:
        return {REGISTER: Method(pb.RegisterAgentRequest, self.register),
                STREAM_METRICS: Method(pb.StreamMetricsRequest, self.hold),
                STREAM_PRESSURE_PROFILES: Method(pb.StreamPressureProfilesRequest, self.pressure)}

    async def register(self, call: ServerCall) -> None:
        call.connection.claim(self)
        while await call.receive() is not None:
            await call.send(pb.RegisterAgentResponse(success=True, agent_id="pressure-agent-1",
                                                     heartbeat_interval_seconds=1))

    async def hold(self, call: ServerCall) -> None:
        while await call.receive() is not None:
            pass

    async def pressure(self, call: ServerCall) -> None:
        await self.send_stream.send(call)
        await self.done.wait()


async def first_line(proc: trio.Process) -> str:
    buf = b""
    while b"\n" not in buf:
        chunk = await proc.stdout.receive_some()  # type: ignore[union-attr]
        assert chunk, "the process exited early"
        buf += chunk
    return buf.partition(b"\n")[0].decode()


async def node_rss(url: str) -> int:
    text = (await http_get(url + "/metrics")).text
    return int(next(line.split()[1] for line in text.splitlines()
                    if line.startswith("process_resident_memory_bytes ")))


@asynccontextmanager
async def running(argv: list[str], **kw: Any) -> AsyncIterator[trio.Process]:
    proc = await trio.lowlevel.open_process(argv, cwd=str(ROOT), **kw)
    try:
        yield proc
    finally:
        with trio.CancelScope(shield=True):
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
                with trio.move_on_after(10):
                    await proc.wait()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    await pipe.aclose()


async def wait_for_capture(proxy: ProxySide) -> list[Any]:
    k = 0
    while True:
        k += 1
        records = await proxy.records(f"poll-{k}")
        if records:
            return records
        await trio.sleep(0.1)


@pytest.mark.parametrize("rss_from", ["scrape", "pid"])
async def test_a_process_crossing_the_trigger_is_captured_and_downloaded_byte_exact(
        tmp_path, rss_from: str) -> None:
    test_proxy = StandInProxy()
    server = GrpcServer(test_proxy.methods())
    profiles = tmp_path / "profiles"
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery, \
                running([sys.executable, NODE, "--heap-bytes", str(HEAP_BYTES)],
                        stdout=subprocess.PIPE) as node:
            _, grpc_port = await nursery.start(server.serve, "127.0.0.1", 0)
            node_url = f"http://127.0.0.1:{await first_line(node)}"
            rss0 = await node_rss(node_url)
            limit = (rss0 + 40 * MIB) * 4 // 3       # the trigger (75 %) is 40 MiB above now
            threshold = limit * 75 // 100
            argv = [sys.executable, "-m", "fodcproxy", "agent",
                    "--proxy-addr", f"127.0.0.1:{grpc_port}", "--pod-name", "node-0",
                    "--node-role", "ROLE_DATA", "--metrics-endpoint", f"{node_url}/metrics",
                    "--poll-metrics-interval", "200ms",
                    "--pressure-profiler-pprof-url", node_url,
                    "--pressure-profiler-limit-bytes", str(limit),
                    "--pressure-profiler-dir", str(profiles),
                    "--pressure-profiler-cooldown", "1h",
                    "--lifecycle-port", "0"]  # the stand-in proxy serves no lifecycle streams
            if rss_from == "pid":
                argv += ["--node-pid", str(node.pid)]
            async with running(argv, stderr=subprocess.DEVNULL):
                call = await test_proxy.streams.receive()
                assert call.metadata["agent_id"] == "pressure-agent-1"
                proxy = ProxySide(call)
                # Below the trigger: the agent captures nothing.
                assert await proxy.records("before") == []
                grown = int((await http_request("POST", node_url + "/grow?mb=80")).body)
                assert grown >= threshold
                records = await wait_for_capture(proxy)
                assert len(records) == 1
                record = records[0]
                assert (record.cgroup_limit_bytes, record.trigger_percent,
                        record.threshold_bytes, record.source_endpoint) == (
                    limit, 75, threshold, node_url)
                assert threshold <= record.rss_bytes
                assert [p.type for p in record.profiles] == ["heap", "goroutine"]
                for info in record.profiles:
                    assert info.filepath == str(profiles / record.profile_id / info.filename)
                    data, error, chunks = await proxy.download(
                        f"get-{info.type}", profile_id=record.profile_id, type=info.type,
                        filepath=info.filepath)
                    assert error == ""
                    size = HEAP_BYTES if info.type == "heap" else 4096
                    assert data == profile_body(info.type, size)
                    assert info.size_bytes == len(data)
                    assert all(len(c.data) <= MIB for c in chunks)
                # The cooldown (1h) holds: still one capture after more polls over the trigger.
                await trio.sleep(1.0)
                assert len(await proxy.records("after")) == 1
                test_proxy.done.set()
            nursery.cancel_scope.cancel()
