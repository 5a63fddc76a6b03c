"""Hostile clients on the gRPC port, at the transport: what one peer can make the proxy hold,
and for how long (SPEC section 10).

Test policy: every attack is driven over a real loopback socket, with raw HTTP/2 frames (h2, in
tests/h2raw.py) where a well-behaved client library would refuse to misbehave, and each test
asserts a bound: bytes held, time held, descriptors held, or that the other calls of the
connection carry on. Timeouts are set short (fractions of a second) so the deadlines fire within
the tests' `fail_after` guards; nothing asserts wall-clock speed.
"""

from __future__ import annotations

import errno
import gzip
import logging
import os
import re
import resource
import subprocess
import sys
import urllib.parse

import h2.events
import h2.settings
import pytest
import trio

from fodcproxy.core.registry import AgentStatus
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.service import REGISTER
from fodcproxy.testing import open_fake_agent, open_proxy, static
from fodcproxy.testing.rawh2 import RawH2, frame
from fodcproxy.testing.http import http_get


def registration(port: int, role: str = "liaison") -> bytes:
    return convert.registration_to_proto(role=role, ip="127.0.0.1", port=port).SerializeToString()


def status_of(raw: RawH2, sid: int) -> tuple[int, str] | None:
    trailers = raw.trailers(sid)
    if trailers is None:
        return None
    return int(trailers["grpc-status"]), urllib.parse.unquote(trailers.get("grpc-message", ""))


async def register_raw(raw: RawH2, port: int) -> int:
    """Register an agent on `raw`'s connection (so it is claimed); returns the stream id."""
    sid = raw.new_stream("RegisterAgent")
    raw.send(sid, frame(registration(port)))
    await raw.flush()
    while not any(isinstance(e, h2.events.DataReceived) and e.stream_id == sid for e in raw.events):
        await raw.pump(0.05)
    return sid


async def test_settings_bound_streams_and_windows():
    with trio.fail_after(10):
        async with open_proxy(grpc_max_msg_size=100_000) as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            await raw.pump(0.2)
            changed = [e for e in raw.events if isinstance(e, h2.events.RemoteSettingsChanged)]
            settings = {code: c.new_value for e in changed for code, c in e.changed_settings.items()}
            assert settings[h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS] == 16
            assert settings[h2.settings.SettingCodes.INITIAL_WINDOW_SIZE] == 2 * 100_005
            # The connection's window: four whole messages, not purerpc's 1 GiB.
            assert raw.conn.outbound_flow_control_window == 4 * 100_005
            await raw.aclose()


async def test_connection_without_preface_is_closed():
    with trio.fail_after(10):
        async with open_proxy(grpc_handshake_timeout=0.3) as proxy:
            sock = await trio.open_tcp_stream("127.0.0.1", proxy.addresses.grpc_port)
            while await sock.receive_some(65536):  # the server's SETTINGS, then EOF
                pass
            assert proxy.proxy.grpc.statistics().connections_timed_out == 1
            await sock.aclose()


async def test_idle_connection_closed_while_registered_agent_stays(caplog):
    caplog.set_level(logging.INFO, logger="fodcproxy")
    with trio.fail_after(15):
        async with open_proxy(grpc_idle_timeout=0.5, heartbeat_interval=1.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=17001,
                                       series=[static("g", 1.0)]) as agent:
                session = proxy.proxy.hub.sessions[agent.agent_id]
                raw = await RawH2.open(proxy.addresses.grpc_port)
                await raw.wait_closed()  # an idle, unregistered connection: GOAWAY, then EOF
                assert raw.goaway()
                await raw.aclose()
                # The agent's connection was opened before the idle one and is still served.
                assert proxy.proxy.hub.sessions[agent.agent_id] is session
                assert proxy.proxy.registry.get(agent.agent_id).status is AgentStatus.ONLINE
                while proxy.proxy.grpc.statistics().connections != 1:  # its task is ending
                    await trio.sleep(0.01)
    assert any("no agent registered on it" in r.getMessage() for r in caplog.records)


async def test_connections_over_the_limit_are_closed_at_once():
    with trio.fail_after(10):
        async with open_proxy(grpc_max_connections=3) as proxy:
            port = proxy.addresses.grpc_port
            held = [await RawH2.open(port) for _ in range(3)]
            for raw in held:
                await raw.pump(0.05)
            extra = await trio.open_tcp_stream("127.0.0.1", port)
            assert await extra.receive_some(65536) == b""  # closed without a word
            stats = proxy.proxy.grpc.statistics()
            assert stats.connections == 3 and stats.connections_refused == 1
            body = (await http_get(proxy.http_url + "/metrics")).text
            assert "fodc_proxy_grpc_connections_refused_total 1.0" in body
            for raw in held:
                assert not raw.closed
                await raw.aclose()
            await extra.aclose()


async def test_unfinished_message_is_ended_at_the_message_deadline():
    with trio.fail_after(10):
        async with open_proxy(grpc_message_timeout=0.3) as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            await register_raw(raw, 17002)
            sid = raw.new_stream("RegisterAgent")
            raw.send(sid, frame(b"x" * 1000)[:100])  # declares 1,000 bytes, sends 95
            await raw.flush()
            while status_of(raw, sid) is None:
                await raw.pump(0.05)
            code, message = status_of(raw, sid)
            assert code == GrpcCode.DEADLINE_EXCEEDED
            assert "--grpc-message-timeout" in message
            assert proxy.proxy.grpc.budget.used == 0
            assert not raw.closed  # only that stream ended
            await raw.aclose()


async def test_connection_with_no_agent_may_not_hold_a_big_message():
    with trio.fail_after(10):
        async with open_proxy() as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            big = raw.new_stream("RegisterAgent")
            raw.send(big, frame(b"\0" * 2_000_000)[:60_000])
            await raw.flush()
            while status_of(raw, big) is None:
                await raw.pump(0.05)
            code, message = status_of(raw, big)
            assert code == GrpcCode.RESOURCE_EXHAUSTED and "register first" in message
            # The same connection still registers an agent.
            await register_raw(raw, 17003)
            assert sum(1 for _ in proxy.proxy.registry) == 1
            assert proxy.proxy.grpc.budget.used == 0
            await raw.aclose()


async def test_budget_stops_reading_and_gives_every_byte_back():
    msg = 100_000
    with trio.fail_after(15):
        async with open_proxy(grpc_max_msg_size=msg, grpc_buffer_budget=2 * (msg + 5),
                              grpc_message_timeout=2.0) as proxy:
            budget = proxy.proxy.grpc.budget
            raw = await RawH2.open(proxy.addresses.grpc_port)
            await register_raw(raw, 17004)
            sids = [raw.new_stream("RegisterAgent") for _ in range(3)]
            for sid in sids:  # three unfinished messages of 99,000 bytes: two fit the budget
                raw.send(sid, frame(b"\0" * 99_000)[:20_000])
            await raw.flush()
            while budget.statistics().waiting == 0:
                await raw.pump(0.02)
            assert budget.used == 2 * 99_005
            # A registered agent on another connection still registers and heartbeats: small
            # messages do not wait behind big ones.
            async with open_channel("127.0.0.1", proxy.addresses.grpc_port) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(convert.registration_to_proto(role="liaison", ip="127.0.0.1",
                                                              port=17005))
                assert (await call.receive()).success
                await call.send(convert.registration_to_proto(role="liaison", ip="127.0.0.1",
                                                              port=17005))
                assert (await call.receive()).success
            # A paused connection reads nothing, so it learns of its peer's leaving no sooner
            # than the message deadline: then every reserved byte comes back.
            await raw.aclose()
            while proxy.proxy.grpc.statistics().connections:
                await trio.sleep(0.01)
            assert budget.used == 0 and budget.statistics().waiting == 0


async def test_refused_registration_leaves_the_connection_and_its_agent_alone():
    """30 of 30: a bad registration, with more frames right behind it, gets its own
    INVALID_ARGUMENT; the live registration on the same connection keeps its heartbeats."""
    bad = convert.registration_to_proto(role="liaison", ip="127.0.0.1", port=17006)
    bad.primary_address.port = 70000
    with trio.fail_after(30):
        async with open_proxy() as proxy:
            async with open_channel("127.0.0.1", proxy.addresses.grpc_port) as ch:
                live = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                good = convert.registration_to_proto(role="liaison", ip="127.0.0.1", port=17007)
                await live.send(good)
                agent_id = (await live.receive()).agent_id
                for _ in range(30):
                    call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                    for _ in range(5):  # frames still arriving when the call is over
                        await call.send(bad)
                    reply = await call.receive()
                    assert reply is not None and not reply.success
                    while await call.receive() is not None:
                        pass
                    assert call.status[0] == GrpcCode.INVALID_ARGUMENT, call.status
                    await live.send(good)
                    assert (await live.receive()).success
                assert proxy.proxy.registry.get(agent_id).status is AgentStatus.ONLINE
                assert proxy.proxy.grpc.statistics().connection_errors == 0


async def test_empty_call_to_unknown_method_and_garbage_leave_the_connection_alive():
    with trio.fail_after(10):
        async with open_proxy() as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            health = raw.conn.get_next_available_stream_id()
            raw.conn.send_headers(health, [
                (":method", "POST"), (":scheme", "http"), (":path", "/grpc.health.v1.Health/Check"),
                (":authority", "x"), ("content-type", "application/grpc"), ("te", "trailers")],
                end_stream=True)
            garbage = raw.new_stream("RegisterAgent")
            raw.send(garbage, frame(b"\xff\xff\xff\xff") + frame(b"more") + frame(b"and more"))
            await raw.flush()
            while status_of(raw, health) is None or status_of(raw, garbage) is None:
                await raw.pump(0.05)
            assert status_of(raw, health)[0] == GrpcCode.UNIMPLEMENTED
            assert status_of(raw, garbage)[0] == GrpcCode.INVALID_ARGUMENT
            await register_raw(raw, 17008)
            assert not raw.closed
            assert proxy.proxy.grpc.statistics().connection_errors == 0
            await raw.aclose()


async def test_compressed_message_may_not_inflate_past_the_limit():
    with trio.fail_after(10):
        async with open_proxy(grpc_max_msg_size=100_000) as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            bomb = gzip.compress(b"\0" * 5_000_000)  # ~5 KB on the wire, 5 MB inflated
            sid = raw.conn.get_next_available_stream_id()
            raw.conn.send_headers(sid, [
                (":method", "POST"), (":scheme", "http"),
                (":path", "/banyandb.fodc.v1.FODCService/RegisterAgent"), (":authority", "x"),
                ("content-type", "application/grpc"), ("te", "trailers"), ("grpc-encoding", "gzip")])
            raw.send(sid, b"\x01" + len(bomb).to_bytes(4, "big") + bomb)
            await raw.flush()
            while status_of(raw, sid) is None:
                await raw.pump(0.05)
            assert status_of(raw, sid)[0] == GrpcCode.RESOURCE_EXHAUSTED
            await register_raw(raw, 17009)  # the connection carries on
            await raw.aclose()


# -- a real proxy process --------------------------------------------------------------------


async def start_proxy(*flags: str, preexec=None):
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "fodcproxy", "--grpc-listen-addr", "127.0.0.1:0",
         "--http-listen-addr", "127.0.0.1:0", *flags],
        stderr=subprocess.PIPE, preexec_fn=preexec)
    buf = b""
    while b"proxy ready" not in buf:
        chunk = await proc.stderr.receive_some()
        assert chunk, buf.decode()
        buf += chunk
    m = re.search(rb"proxy ready: gRPC 127\.0\.0\.1:(\d+), HTTP (http://\S+)", buf)
    proc.head = buf  # what it said while starting
    return proc, int(m.group(1)), m.group(2).decode()


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


async def stop(proc) -> bytes:
    proc.terminate()
    err = proc.head
    while chunk := await proc.stderr.receive_some():
        err += chunk
    await proc.wait()
    return err


@pytest.mark.slow
async def test_partial_message_attack_memory_is_bounded():
    """Registered and unregistered peers start 4 MB messages on every stream they may open and
    never finish them: the proxy's RSS grows by at most 150 MB, /health answers, and a real
    agent registers and is scraped meanwhile."""
    with trio.fail_after(120):
        proc, port, http_url = await start_proxy("--grpc-message-timeout", "5s")
        try:
            before = rss(proc.pid)
            attackers: list[RawH2] = []
            declared = frame(b"\0" * 4_000_000)[:3_900_000]
            for i in range(12):
                raw = await RawH2.open(port)
                if i < 8:
                    await register_raw(raw, 18000 + i)
                for _ in range(15 if i < 8 else 16):
                    raw.send(raw.new_stream("RegisterAgent"), declared)
                await raw.flush()
                attackers.append(raw)
            for _ in range(20):  # let the proxy read what it will; the windows refill as it drops
                for raw in attackers:
                    await raw.pump(0.01)
                    for sid in list(raw.conn.streams):
                        if sid % 2 and not raw.reset(sid) and raw.trailers(sid) is None:
                            try:
                                raw.send(sid, declared[:100_000])
                            except Exception:
                                pass
                    await raw.flush()
            grown = rss(proc.pid) - before
            assert (await http_get(http_url + "/health")).status == 200
            async with open_fake_agent(f"127.0.0.1:{port}", role="liaison", ip="127.0.0.1", port=17100,
                                       series=[static("during_attack", 7.0)]):
                body = (await http_get(http_url + "/metrics")).text
            assert "during_attack" in body and "fodc_agent_up" in body
            budget = float(re.search(r"^fodc_proxy_grpc_buffer_bytes (\S+)$", body, re.M).group(1))
            assert budget <= 32 * 1024 * 1024
            print(f"RSS before {before / 2**20:.0f} MiB, growth under attack {grown / 2**20:.0f} MiB, "
                  f"budget in use {budget / 2**20:.0f} MiB")
            assert grown <= 150 * 1024 * 1024, grown
            for raw in attackers:
                await raw.aclose()
            for _ in range(200):  # every reserved byte comes back once the attackers are gone
                body = (await http_get(http_url + "/metrics")).text
                if re.search(r"^fodc_proxy_grpc_buffer_bytes 0\.0$", body, re.M):
                    break
                await trio.sleep(0.05)
            else:
                raise AssertionError("budget not returned")
        finally:
            err = await stop(proc)
        assert proc.returncode == 0, err.decode()[-2000:]


@pytest.mark.slow
async def test_descriptor_limit_exhausted_health_and_agents_still_served():
    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (160, 160))

    with trio.fail_after(60):
        proc, port, http_url = await start_proxy("--grpc-handshake-timeout", "1s",
                                                 "--grpc-idle-timeout", "2s", preexec=low_limit)
        socks = []
        try:
            for _ in range(200):  # more connections than the proxy has descriptors for
                socks.append(await trio.open_tcp_stream("127.0.0.1", port))
            for _ in range(5):
                assert (await http_get(http_url + "/health")).status == 200
            # Junk connections are closed by the handshake timeout; a real agent then registers.
            async with open_fake_agent(f"127.0.0.1:{port}", role="liaison", ip="127.0.0.1", port=17101,
                                       series=[static("after_flood", 1.0)]):
                body = (await http_get(http_url + "/metrics")).text
            assert "after_flood" in body
            assert "fodc_proxy_grpc_connections_refused_total" in body
        finally:
            for s in socks:
                await s.aclose()
            err = await stop(proc)
        text = err.decode()
        assert proc.returncode == 0, text[-2000:]
        assert "Traceback" not in text
        assert "gRPC connections limited to 96" in text
        assert text.count("gRPC connection refused") <= 6  # said every 10 s at most, not per try
        assert os.path.exists(f"/proc/{os.getpid()}")


class _FlakyListener:
    """A listener whose accept() fails with EMFILE `failures` times, then serves `socks`."""

    def __init__(self, failures: int, socks: list) -> None:
        self.failures = failures
        self.socks = socks
        self.calls: list[float] = []

    async def accept(self):
        self.calls.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        if self.failures:
            self.failures -= 1
            raise OSError(errno.EMFILE, "Too many open files")
        if self.socks:
            return self.socks.pop()
        await trio.sleep_forever()


async def test_accept_backs_off_on_emfile_and_says_so_once(autojump_clock, caplog):
    from fodcproxy.rpc.server import GrpcServer

    caplog.set_level(logging.INFO, logger="fodcproxy")
    server = GrpcServer({})
    listener = _FlakyListener(8, [])
    with trio.move_on_after(100):
        async with trio.open_nursery() as nursery:
            await server._accept_loop(listener, nursery)
    # Exponential back-off from 10 ms, capped at 1 s: not a busy loop, not a fixed 50 ms.
    gaps = [round(b - a, 3) for a, b in zip(listener.calls, listener.calls[1:])]
    assert gaps == [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.0]
    assert server.statistics().accept_errors == 8
    said = [r.getMessage() for r in caplog.records if "accept" in r.getMessage()]
    assert len(said) == 1 and "backing off" in said[0]  # once per episode, not once per try
