"""StreamCrashDiagnostics, the agent's side (`CrashDiagnosticsService`), over real gRPC.

The proxy's side here is the test's own handler on `fodcproxy.rpc.server.GrpcServer` over
loopback (our proxy's handler only holds the stream today): it registers the agent, holds its
metrics stream, asks for crash diagnostics when the test says so and keeps every message the
agent sends, as the bytes that came over the wire. Those bytes are decoded with upstream's own
proto (compiled with grpc_tools by tests/upstream_agent.py) and compared with what we meant to send.
The last test runs the real program, `python -m fodcproxy agent --crash-source-dir D`.
"""

from __future__ import annotations

import pathlib
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, BinaryIO

import pytest
import trio
from google.protobuf import empty_pb2, json_format, unknown_fields

from fodcproxy.agent.client import AgentClient, AgentService, AgentSpec
from fodcproxy.agent.config import AgentConfig
from fodcproxy.agent.crash import (
    TRIM_MARK,
    CrashLimits,
    CrashRecord,
    Instant,
    encode_record,
    fit_record,
    parse_crash_record,
    to_proto_fields,
)
from fodcproxy.agent.crashwatch import CrashDiagnosticsService
from fodcproxy.agent.main import Agent
from fodcproxy.core.model import TimeWindow
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import (
    REGISTER,
    STREAM_CRASH_DIAGNOSTICS,
    STREAM_METRICS,
    STREAM_PRESSURE_PROFILES,
)
from fodcproxy.rpc.server import GrpcServer, Method, ServerCall
from helpers import wait_for
from test_crash_records import go_marshal, node_record

ROOT = pathlib.Path(__file__).resolve().parent.parent


def crash_record(i: int, **override: Any) -> CrashRecord:
    name = f"20260415T08{i:02d}00.000000000Z-liaison-grpc-{i}"
    data = go_marshal(node_record(occurredAt=f"2026-04-15T08:{i:02d}:00Z", **override))
    return parse_crash_record(data, artifact_dir=name, files=["deep-dump.json", "panic.json"],
                              source="file:///data/crash", fetched_at=Instant(1_776_240_005, 7))


class ProxySide:
    """The proxy's end of the agent's streams, as simple as a test can make it."""

    def __init__(self) -> None:
        self.registrations = 0
        self.metrics_calls = 0
        self.crash_calls: list[ServerCall] = []
        self.received: list[bytes] = []  # every StreamCrashDiagnosticsRequest, as sent

    def methods(self) -> dict[str, Method]:
        return {
            REGISTER: Method(pb.RegisterAgentRequest, self.register),
            STREAM_METRICS: Method(pb.StreamMetricsRequest, self.hold_metrics),
            # Decoded as Empty: every field stays an unknown field, re-serialized byte for byte.
            STREAM_CRASH_DIAGNOSTICS: Method(empty_pb2.Empty, self.crash),
            # The agent's pressure-profile stream (always opened), held.
            STREAM_PRESSURE_PROFILES: Method(empty_pb2.Empty, self.hold_metrics),
        }

    async def register(self, call: ServerCall) -> None:
        first = await call.receive()
        assert first is not None
        self.registrations += 1
        ack = pb.RegisterAgentResponse(success=True, agent_id=f"agent-{self.registrations}",
                                       heartbeat_interval_seconds=30)
        await call.send(ack)
        while await call.receive() is not None:
            await call.send(ack)

    async def hold_metrics(self, call: ServerCall) -> None:
        self.metrics_calls += 1
        while await call.receive() is not None:
            pass

    async def crash(self, call: ServerCall) -> None:
        assert call.metadata["agent_id"] == f"agent-{self.registrations}"
        self.crash_calls.append(call)
        while (msg := await call.receive()) is not None:
            self.received.append(msg.SerializeToString())

    async def ask(self, request: bool = True) -> None:
        await self.crash_calls[-1].send(
            pb.StreamCrashDiagnosticsResponse(request_diagnostics=request))

    def decoded(self) -> list[Any]:
        return [pb.StreamCrashDiagnosticsRequest.FromString(raw) for raw in self.received]


@asynccontextmanager
async def proxy_side(max_message_length: int = 4 * 1024 * 1024) -> AsyncIterator[
        tuple[ProxySide, int]]:
    side = ProxySide()
    server = GrpcServer(side.methods(), max_message_length=max_message_length)
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        yield side, port
        nursery.cancel_scope.cancel()


async def no_metrics(window: TimeWindow) -> Sequence[Any]:
    return []


@asynccontextmanager
async def pod_agent(port: int, services: Sequence[AgentService], *,
                    max_message_size: int = 4 * 1024 * 1024) -> AsyncIterator[AgentClient]:
    client = AgentClient("127.0.0.1", port, AgentSpec(role="ROLE_DATA", pod_name="data-0"),
                         no_metrics, services=services, reconnect_interval=0.05,
                         reconnect_max=0.1, max_message_size=max_message_size)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        yield client
        client.stop()


class Records:
    """What the watcher would hold: the service asks for it at every request."""

    def __init__(self, *records: CrashRecord) -> None:
        self.now: tuple[CrashRecord, ...] = records

    def __call__(self) -> tuple[CrashRecord, ...]:
        return self.now


# --- the service ---------------------------------------------------------------------------------


async def test_one_message_per_record_at_every_request() -> None:
    records = Records()
    service = CrashDiagnosticsService(records)
    with trio.fail_after(30):
        async with proxy_side() as (side, port), pod_agent(port, [service]):
            await wait_for(lambda: side.crash_calls)
            await side.ask()  # nothing kept yet: nothing sent (the proto has no end marker)
            await wait_for(lambda: service.statistics().requests == 1)
            records.now = (crash_record(3), crash_record(2), crash_record(1))
            await side.ask(False)  # not a request: ignored, as upstream's agent does
            await side.ask()
            await wait_for(lambda: len(side.received) == 3)
            await side.ask()
            await wait_for(lambda: len(side.received) == 6)
            assert service.statistics().requests == 3
    expected = [encode_record(r) for r in records.now]
    assert side.received == expected * 2  # newest first, byte for byte, nothing else
    first = side.decoded()[0]
    assert first.artifact_dir == records.now[0].artifact_dir
    assert first.panic_record.component == "liaison-grpc"
    assert side.registrations == 1 and len(side.crash_calls) == 1


async def test_a_record_over_the_message_size_is_trimmed_not_the_stream_broken() -> None:
    limit = 8192
    big = crash_record(2, goroutineStack="goroutine 1 [running]:\n" + "frame\n" * 50_000,
                       breadcrumbs=[{"time": "2026-04-15T08:00:00Z", "stage": f"stage {i}",
                                     "fields": {"k": "v" * 100}} for i in range(64)])
    records = Records(big, crash_record(1))
    assert len(encode_record(big)) > limit
    service = CrashDiagnosticsService(records, max_message_size=limit)
    with trio.fail_after(30):
        async with proxy_side(max_message_length=limit) as (side, port), \
                pod_agent(port, [service], max_message_size=limit):
            await wait_for(lambda: side.crash_calls)
            await side.ask()
            await wait_for(lambda: len(side.received) == 2)
            await side.ask()  # the same stream still serves; the trimmed bytes are reused
            await wait_for(lambda: len(side.received) == 4)
    trimmed, small = side.decoded()[:2]
    assert len(side.received[0]) <= limit - 1024
    assert trimmed.artifact_dir == big.artifact_dir
    stack = trimmed.panic_record.goroutine_stack
    assert stack.startswith("goroutine 1 [running]:\nframe\n")
    assert "[trimmed by the FODC agent to fit a 7168-byte gRPC message: stack cut by" in stack
    assert small.artifact_dir.endswith("-1") and side.received[1] == encode_record(crash_record(1))
    assert side.received[2:] == side.received[:2]
    assert service.statistics().records_trimmed == 1
    assert side.registrations == 1 and len(side.crash_calls) == 1


async def test_the_proxy_ending_the_stream_mid_answer_re_registers() -> None:
    records = Records(*[crash_record(i, goroutineStack="x" * 500_000) for i in range(20)])
    service = CrashDiagnosticsService(records)
    with trio.fail_after(30):
        async with proxy_side() as (side, port), pod_agent(port, [service]) as agent:
            await wait_for(lambda: side.crash_calls)
            await side.ask()
            await wait_for(lambda: side.received)
            side.crash_calls[0].abort(GrpcCode.UNAVAILABLE, "going away")
            await wait_for(lambda: len(side.crash_calls) == 2)
            assert side.registrations == 2 and agent.statistics().registrations == 2
            before = len(side.received)
            await side.ask()
            await wait_for(lambda: len(side.received) == before + 20)


# --- trimming, without a socket ------------------------------------------------------------------


@pytest.mark.parametrize("limit", [2048, 3072, 8192, 100_000])
def test_fit_record_always_fits(limit: int) -> None:
    huge = "\u00e9\U0001f600" * 40_000  # multi-byte characters: cut on a character boundary
    record = parse_crash_record(go_marshal(node_record(
        component="c" * 4000, goroutineStack=huge, panicValue=huge,
        breadcrumbs=[{"stage": "s" * 4000, "fields": {"k": "v" * 4000}}] * 60,
        processMetadata={f"k{i}": "v" * 4000 for i in range(60)})),
        artifact_dir="a" * 255, files=[f"f{i}" for i in range(200)] + ["panic.json"],
        source="file://" + "/d" * 2000, limits=CrashLimits(max_file_bytes=10**8,
                                                          max_values=100_000,
                                                          max_stack_chars=10**7,
                                                          max_panic_value_chars=10**7))
    data, cuts = fit_record(record, limit)
    assert len(data) <= limit and cuts
    msg = pb.StreamCrashDiagnosticsRequest.FromString(data)
    assert TRIM_MARK.split("{")[0] in msg.panic_record.goroutine_stack
    assert msg.artifact_dir.startswith("aaa")


def test_fit_record_leaves_a_small_record_alone() -> None:
    record = crash_record(1)
    assert fit_record(record, 4096) == (encode_record(record), ())
    with pytest.raises(ValueError):
        fit_record(record, 1000)


# --- interop: upstream's proto reads what we send ------------------------------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from upstream_agent import compile_upstream

    return compile_upstream(tmp_path_factory.mktemp("upstream-crash"))


async def test_upstream_proto_decodes_what_we_send(upstream: Any) -> None:
    records = Records(crash_record(2), parse_crash_record(
        b"{}", artifact_dir="20260415T080000.000000000Z-unknown-1", source="file:///c"))
    with trio.fail_after(30):
        async with proxy_side() as (side, port), \
                pod_agent(port, [CrashDiagnosticsService(records)]):
            await wait_for(lambda: side.crash_calls)
            await side.ask()
            await wait_for(lambda: len(side.received) == 2)
    theirs = [upstream.StreamCrashDiagnosticsRequest.FromString(raw) for raw in side.received]
    for msg, record in zip(theirs, records.now, strict=True):
        assert len(unknown_fields.UnknownFieldSet(msg)) == 0  # every field is upstream's
        ours = pb.StreamCrashDiagnosticsRequest(**to_proto_fields(record))
        assert json_format.MessageToDict(msg) == json_format.MessageToDict(ours)
    full, empty = theirs
    assert full.panic_record.occurred_at.ToJsonString() == "2026-04-15T08:02:00Z"
    assert full.panic_record.breadcrumbs[0].fields["method"] == "POST"
    assert dict(full.panic_record.process_metadata)["nodeType"] == "liaison"
    assert list(full.files) == ["deep-dump.json", "panic.json"]
    assert (full.fetched_at.seconds, full.fetched_at.nanos) == (1_776_240_005, 7)
    # A panic.json that carries nothing: listed, with no panic_record (as upstream's agent).
    assert not empty.HasField("panic_record") and empty.artifact_dir.endswith("-unknown-1")


# --- the agent program ---------------------------------------------------------------------------


def test_the_crash_stream_is_opened_only_with_a_crash_directory(tmp_path: pathlib.Path) -> None:
    base = {"node_role": "ROLE_DATA", "pod_name": "data-0"}
    assert not [s for s in Agent(AgentConfig(**base)).services
                if isinstance(s, CrashDiagnosticsService)]
    agent = Agent(AgentConfig(**base, crash_source_dirs=(str(tmp_path),)))
    service = agent.services[-2]  # opened before pressure profiles, as upstream's agent does
    assert isinstance(service, CrashDiagnosticsService) and service is agent.crash_service
    assert agent.crash_watcher is not None and agent.crash_watcher.dirs == (str(tmp_path),)


@pytest.fixture
def program_log(tmp_path: pathlib.Path) -> Any:
    with open(tmp_path / "agent.stderr", "w+b") as f:
        yield f
        f.seek(0)
        print("--- the agent's stderr ---", f.read().decode(errors="replace"), sep="\n")


def stderr(log: BinaryIO) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")


@pytest.mark.slow
async def test_the_agent_program_sends_a_record_written_into_its_crash_directory(
        tmp_path: pathlib.Path, program_log: BinaryIO) -> None:
    crash = tmp_path / "crash"  # not there yet when the agent starts
    name = "20260415T080000.123456789Z-liaison-grpc-4242"
    with trio.fail_after(60):
        async with proxy_side() as (side, port):
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "fodcproxy", "agent", "--proxy-addr", f"127.0.0.1:{port}",
                 "--pod-name", "liaison-0", "--node-role", "ROLE_LIAISON",
                 "--metrics-endpoint", "http://127.0.0.1:9/metrics",
                 "--crash-source-dir", str(crash), "--crash-poll-interval", "100ms",
                 "--reconnect-interval", "100ms", "--lifecycle-port", "0"],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=program_log)
            try:
                await wait_for(lambda: side.crash_calls or process.poll() is not None, step=0.05)
                assert process.poll() is None, stderr(program_log)
                (crash / name).mkdir(parents=True)
                (crash / name / "panic.json").write_bytes(go_marshal(node_record()))
                while not any(m.artifact_dir == name for m in side.decoded()):
                    await side.ask()
                    await trio.sleep(0.1)  # asking again is the proxy's part: 10 times a second
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0, stderr(program_log)
            finally:
                if process.poll() is None:
                    process.kill()
                    await process.wait()
    msg = next(m for m in side.decoded() if m.artifact_dir == name)
    assert msg.source_endpoint == f"file://{crash}" and list(msg.files) == ["panic.json"]
    assert msg.panic_record.component == "liaison-grpc" and msg.panic_record.recovered
    assert msg.panic_record.goroutine_stack.startswith("goroutine 42 [running]:")
    log = stderr(program_log)
    assert "does not exist (yet)" in log and "Traceback" not in log
    assert f"crash record {crash}/{name}: liaison-grpc panicked" in log
