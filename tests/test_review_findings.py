"""Adversarial review of the transport hardening: each test is one suspected defect, proven."""

from __future__ import annotations

import h2.events
import h2.settings
import pytest
import trio
import trio.testing

from fodcproxy.core.registry import AgentStatus
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import convert
from fodcproxy.testing import open_proxy
from fodcproxy.testing.rawh2 import RawH2, frame, grpc_headers

from tests.test_hostile_transport import register_raw, registration, status_of


async def heartbeat_acked(raw: RawH2, sid: int, port: int, timeout: float = 2.0) -> bool:
    """Send one heartbeat on `sid`; True when the proxy's ack arrives within `timeout`."""
    before = sum(1 for e in raw.events if isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
    raw.send(sid, frame(registration(port)))
    await raw.flush()
    with trio.move_on_after(timeout):
        while sum(1 for e in raw.events
                  if isinstance(e, h2.events.DataReceived) and e.stream_id == sid) == before:
            if raw.closed:
                return False
            await raw.pump(0.05)
        return True
    return False


async def test_client_trailers_without_grpc_status_do_not_kill_the_connection():
    with trio.fail_after(10):
        async with open_proxy() as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            reg = await register_raw(raw, 17201)
            sid = raw.new_stream("RegisterAgent")
            raw.send(sid, frame(b"\x0a\x01x")[:3])
            raw.conn.send_headers(sid, [("x-trailer", "1")], end_stream=True)
            await raw.flush()
            await raw.pump(0.3)
            assert await heartbeat_acked(raw, reg, 17201)
            assert not raw.closed
            await raw.aclose()


async def test_client_trailers_with_grpc_status_end_the_call_cleanly():
    """Trailers that parse as a response's used to reach the handler as a ResponseEnded
    (AttributeError: INTERNAL and a traceback in the log)."""
    with trio.fail_after(10):
        async with open_proxy() as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            reg = await register_raw(raw, 17202)
            sid = raw.new_stream("RegisterAgent")
            raw.conn.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            await raw.flush()
            while status_of(raw, sid) is None:
                await raw.pump(0.05)
            assert status_of(raw, sid)[0] == GrpcCode.INVALID_ARGUMENT  # closed before registering
            assert await heartbeat_acked(raw, reg, 17202)
            await raw.aclose()


async def test_reset_mid_message_gives_the_connection_window_back():
    """The bytes of a partial message a peer resets are never acknowledged: each reset leaks
    them from the connection's window for good, until the connection (and the agent it
    carries) can send nothing at all."""
    with trio.fail_after(15):
        async with open_proxy(grpc_max_msg_size=100_000) as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            reg = await register_raw(raw, 17203)
            for _ in range(6):  # 6 x 90 KB > the 400 KB connection window
                sid = raw.new_stream("RegisterAgent")
                raw.send(sid, frame(b"\0" * 99_000)[:90_000])
                await raw.flush()
                await raw.pump(0.1)
                raw.conn.reset_stream(sid)
                await raw.flush()
                await raw.pump(0.1)
            assert proxy.proxy.grpc.budget.used == 0
            assert await heartbeat_acked(raw, reg, 17203)
            await raw.aclose()


async def test_call_ending_with_queued_messages_gives_the_connection_window_back():
    """Messages still queued for a call when it ends (here: refused registrations with more
    frames behind them) are never acknowledged either."""
    with trio.fail_after(15):
        async with open_proxy(grpc_max_msg_size=100_000) as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            reg = await register_raw(raw, 17204)
            for _ in range(6):
                sid = raw.new_stream("RegisterAgent")
                # an invalid first message, then 90 KB of complete messages queued behind it
                raw.send(sid, frame(b"\xff\xff\xff\xff") + frame(b"\0" * 45_000) * 2)
                await raw.flush()
                while status_of(raw, sid) is None:
                    await raw.pump(0.05)
            assert proxy.proxy.grpc.budget.used == 0
            assert await heartbeat_acked(raw, reg, 17204)
            await raw.aclose()


async def test_registered_peer_that_never_reads_cannot_hold_the_budget_past_the_message_deadline():
    """A registered peer advertises a stream window of 0, so its RegisterAgent handler blocks
    in `send(ack)` for good and stops receiving; the complete messages it queues behind keep
    their reservations until the agent is cleaned up (minutes). Meanwhile every honest reply
    over the 64 KiB allowance waits for budget, pauses its whole connection, and fails."""
    from fodcproxy.testing import open_fake_agent, static
    from fodcproxy.testing.http import http_get

    with trio.fail_after(20):
        async with open_proxy(grpc_max_msg_size=100_000, grpc_buffer_budget=2 * 100_005,
                              grpc_message_timeout=0.5, collect_timeout=3.0) as proxy:
            budget = proxy.proxy.grpc.budget
            raw = await RawH2.open(proxy.addresses.grpc_port)
            raw.conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
            await raw.flush()
            await raw.pump(0.1)
            sid = raw.new_stream("RegisterAgent")
            raw.send(sid, frame(registration(17300)) + frame(b"\0" * 99_000) * 2)
            await raw.flush()
            # (Sent before the registration was processed: the unregistered share may hold them.)
            while budget.used + budget.unclaimed.used < 2 * 99_005:
                await raw.pump(0.02)
            await raw.pump(1.5)  # three message deadlines
            held = budget.used + budget.unclaimed.used
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1",
                                       port=17301, max_message_size=100_000,
                                       series=[static("honest_big", 1.0, help="x" * 80_000)]):
                body = (await http_get(proxy.http_url + "/metrics")).text
            await raw.aclose()
            assert "honest_big" in body, [ln for ln in body.splitlines() if "fodc_agent_up" in ln
                                          or "buffer" in ln]
            assert held == 0, f"{held} bytes still held by a peer that reads nothing"


async def test_budget_bytes_freed_for_a_waiter_cannot_be_taken_by_a_newcomer():
    """`release()` unparks the waiters, which empties the parking lot before they run: a
    `try_reserve()` in between (the releasing connection's own read loop, say: its expired
    message gave the bytes back, and its next header asks at once) saw nobody queued and took
    the bytes, again and again, while the waiting message's deadline ran out."""
    from fodcproxy.rpc.budget import ByteBudget

    budget = ByteBudget(100)
    assert budget.try_reserve(100)
    got = trio.Event()

    async def waiter() -> None:
        await budget.acquire(60)
        got.set()

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await trio.testing.wait_all_tasks_blocked()
            budget.release(100)
            assert not budget.try_reserve(60), "a newcomer took the bytes the waiter waits for"
            await got.wait()
    assert budget.used == 60


@pytest.mark.parametrize("header", [
    ("x-bin", "/w=="),  # binary metadata: base64 of b"\xff", not UTF-8 once decoded
    (b"x-raw", b"\xff\xfe"),  # a header value that is not UTF-8 at all
], ids=["bin-metadata", "non-utf8-header"])
async def test_undecodable_metadata_ends_only_its_call(header):
    with trio.fail_after(10):
        async with open_proxy() as proxy:
            raw = await RawH2.open(proxy.addresses.grpc_port)
            reg = await register_raw(raw, 17205)
            sid = raw.conn.get_next_available_stream_id()
            headers = [(k.encode(), v.encode()) for k, v in grpc_headers("StreamMetrics")]
            raw.conn.send_headers(sid, [*headers, header])
            await raw.flush()
            await raw.pump(0.3)
            assert await heartbeat_acked(raw, reg, 17205)
            assert not raw.closed
            await raw.aclose()


def _gzip_header(method: str) -> list[tuple[str, str]]:
    return [*grpc_headers(method), ("grpc-encoding", "gzip")]


@pytest.mark.parametrize("attack", ["deadline", "reset", "inflate", "queued", "end-stream"])
async def test_every_byte_comes_back_while_the_connection_lives(attack):
    """The existing tests reserve from the 64 KiB allowance (or nothing), or count on the
    connection's end to release everything: with the per-stream releases removed they still
    pass. Here each attack uses the budget pool, and the books are checked with the
    connection (and its live agent) still open."""
    with trio.fail_after(15):
        async with open_proxy(grpc_max_msg_size=200_000, grpc_message_timeout=0.5) as proxy:
            budget = proxy.proxy.grpc.budget
            raw = await RawH2.open(proxy.addresses.grpc_port)
            reg = await register_raw(raw, 17206)
            (gsock,) = proxy.proxy.grpc._sockets
            conn = gsock.connection
            big = frame(b"\0" * 150_000)
            if attack == "inflate":
                sid = raw.conn.get_next_available_stream_id()
                raw.conn.send_headers(sid, _gzip_header("RegisterAgent"))
                raw.send(sid, b"\x01" + (150_000).to_bytes(4, "big") + b"\x55" * 150_000)
            elif attack == "queued":
                sid = raw.new_stream("RegisterAgent")
                raw.send(sid, frame(b"\xff\xff\xff\xff") + big)
            else:
                sid = raw.new_stream("RegisterAgent")
                raw.send(sid, big[:100_000], end_stream=False)
            await raw.flush()
            with trio.move_on_after(0.3):
                while budget.used == 0:
                    await raw.pump(0.01)
            assert budget.used > 0 or attack == "queued"  # the budget pool, not the allowance
            if attack == "reset":
                raw.conn.reset_stream(sid)
            elif attack == "end-stream":
                raw.conn.end_stream(sid)
            await raw.flush()
            while status_of(raw, sid) is None and not raw.reset(sid) \
                    and sid in proxy_streams(gsock):
                await raw.pump(0.05)
            await raw.pump(0.1)
            assert budget.used == 0
            assert conn.held_total == 0 and conn.small_total == 0 and not any(conn.held.values())
            assert await heartbeat_acked(raw, reg, 17206)
            await raw.aclose()


def proxy_streams(gsock) -> set[int]:
    return set(gsock._all_streams)


def _many(name: str, n: int, pad: int):
    from fodcproxy.rpc.convert import pb
    from fodcproxy.testing import Series

    def produce(window, k, now):
        return [pb.Metric(name=name, value=float(i), labels={"i": str(i)}, description="x" * pad,
                          type=1) for i in range(n)]
    return Series(name, produce)


async def test_honest_agents_with_max_size_chunks_never_stall_at_the_smallest_budget():
    """Two agents answer ~1 MB each in chunks of up to --grpc-max-msg-size at once, with the
    budget at its minimum (two whole messages): every scrape succeeds."""
    from fodcproxy.testing import open_fake_agent
    from fodcproxy.testing.http import http_get

    with trio.fail_after(60):
        async with open_proxy(grpc_max_msg_size=100_000, grpc_buffer_budget=2 * 100_005,
                              grpc_message_timeout=5.0, collect_timeout=20.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1",
                                       port=17210, max_message_size=100_000,
                                       series=[_many("a_many", 2000, 400)]) as a, \
                    open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1",
                                    port=17211, max_message_size=100_000,
                                    series=[_many("b_many", 2000, 400)]) as b:
                for _ in range(3):
                    body = (await http_get(proxy.http_url + "/metrics")).text
                    ups = [ln for ln in body.splitlines() if ln.startswith("fodc_agent_up")]
                    assert all(ln.endswith(" 1.0") or ln.endswith(" 1") for ln in ups), ups
                    assert body.count("a_many{") == 2000 and body.count("b_many{") == 2000
                assert a.client.statistics().chunks_sent > 20
            assert proxy.proxy.grpc.budget.used == 0


async def test_unregistered_connections_cannot_starve_registered_agents_of_budget():
    from fodcproxy.testing import open_fake_agent, static
    from fodcproxy.testing.http import http_get

    with trio.fail_after(20):
        async with open_proxy(grpc_max_msg_size=100_000, grpc_buffer_budget=2 * 100_005,
                              grpc_message_timeout=3.0, collect_timeout=1.0) as proxy:
            budget = proxy.proxy.grpc.budget
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1",
                                       port=17212, max_message_size=100_000,
                                       series=[static("honest_big", 1.0, help="x" * 80_000)]):
                attackers = []
                for _ in range(2):  # no registration, no token: just TCP and a partial message
                    raw = await RawH2.open(proxy.addresses.grpc_port)
                    raw.send(raw.new_stream("RegisterAgent"), frame(b"\0" * 99_000)[:10_000])
                    await raw.flush()
                    attackers.append(raw)
                # They hold their share, never the budget registered agents' replies wait for.
                while budget.unclaimed.used < 2 * 99_005:
                    for raw in attackers:
                        await raw.pump(0.01)
                assert budget.used == 0
                body = (await http_get(proxy.http_url + "/metrics")).text
            for raw in attackers:
                await raw.aclose()
            assert "honest_big" in body and 'fodc_agent_up{agent_id="liaison' in body


@pytest.mark.parametrize("registered", [True, False], ids=["registered", "unregistered"])
async def test_compressed_messages_cannot_take_the_budget_past_its_limit(registered):
    """A message's inflated bytes are reserved with `force=True`: past the budget's limit and
    past the 1 MiB of a connection with no agent. ~130-byte gzip messages that inflate to a
    whole --grpc-max-msg-size each, queued on a call whose handler is not receiving yet (a
    StreamMetrics call waits up to the attach grace for its agent), hold limit-free memory."""
    import gzip

    with trio.fail_after(15):
        async with open_proxy(grpc_max_msg_size=100_000, grpc_buffer_budget=2 * 100_005,
                              attach_grace=1.0) as proxy:
            budget = proxy.proxy.grpc.budget
            raw = await RawH2.open(proxy.addresses.grpc_port)
            if registered:
                await register_raw(raw, 17213)
            sid = raw.conn.get_next_available_stream_id()
            raw.conn.send_headers(sid, [*_gzip_header("StreamMetrics"),
                                        ("agent_id", "nobody-000000000000")])
            bomb = gzip.compress(b"\0" * 99_000)
            one = b"\x01" + len(bomb).to_bytes(4, "big") + bomb
            raw.send(sid, one * 200)  # 200 x 99 KB inflated = 19.8 MB, ~26 KB on the wire
            await raw.flush()
            while status_of(raw, sid) is None and not raw.closed:
                await raw.pump(0.05)
            peak = budget.statistics().peak
            await raw.aclose()
            assert peak <= budget.limit, f"peak {peak} over the budget's limit {budget.limit}"


async def test_compressed_registration_and_heartbeats_still_work_and_give_every_byte_back():
    import gzip

    with trio.fail_after(10):
        async with open_proxy(grpc_max_msg_size=100_000, grpc_buffer_budget=2 * 100_005) as proxy:
            budget = proxy.proxy.grpc.budget
            raw = await RawH2.open(proxy.addresses.grpc_port)  # no agent yet: 1 MiB at most
            sid = raw.conn.get_next_available_stream_id()
            raw.conn.send_headers(sid, _gzip_header("RegisterAgent"))
            body = gzip.compress(registration(17214))
            raw.send(sid, b"\x01" + len(body).to_bytes(4, "big") + body)
            await raw.flush()
            while not any(isinstance(e, h2.events.DataReceived) and e.stream_id == sid
                          for e in raw.events):
                await raw.pump(0.05)
            assert proxy.proxy.registry.get(
                next(iter(proxy.proxy.hub.sessions))).status is AgentStatus.ONLINE
            for _ in range(3):  # compressed heartbeats on the now registered connection
                raw.send(sid, b"\x01" + len(body).to_bytes(4, "big") + body)
            await raw.flush()
            while sum(isinstance(e, h2.events.DataReceived) and e.stream_id == sid
                      for e in raw.events) < 4:
                await raw.pump(0.05)
            await raw.pump(0.1)
            assert budget.used == 0
            assert budget.statistics().peak <= budget.limit
            await raw.aclose()


async def test_a_peer_that_never_reads_is_still_closed_at_the_idle_timeout():
    """A peer that sends PINGs (each answered by h2) and never reads fills the proxy's socket;
    the writer task blocks in send, and when the idle timeout ends the read loop, leaving the
    connection waits for that writer for good: the connection (slot, descriptor, h2's growing
    output buffer) is never freed."""
    import socket

    with trio.fail_after(20):
        async with open_proxy(grpc_idle_timeout=3.0, grpc_handshake_timeout=3.0,
                              grpc_message_timeout=1.0) as proxy:
            grpc = proxy.proxy.grpc
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", proxy.addresses.grpc_port))
            stream = trio.SocketStream(sock)
            preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
            ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
            await stream.send_all(preface)
            with trio.move_on_after(2.5):  # as many as the proxy will read before its timeout
                while True:
                    await stream.send_all(ping * 1000)
            start = trio.current_time()
            with trio.move_on_after(5):
                while grpc.statistics().connections:
                    await trio.sleep(0.05)
            left = grpc.statistics().connections
            await stream.aclose()
            assert left == 0, f"still open {trio.current_time() - start:.1f}s after its timeout"


async def test_a_registered_peer_that_never_reads_cannot_grow_the_output_buffer():
    """h2 answers every PING (and SETTINGS) by itself; a peer that sends them and reads
    nothing makes the proxy queue the answers without bound: the read loop keeps reading while
    the writer is stuck. A registered connection has no idle timeout to end it."""
    import socket

    with trio.fail_after(20):
        async with open_proxy(grpc_message_timeout=2.0) as proxy:
            sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            await sock.connect(("127.0.0.1", proxy.addresses.grpc_port))
            raw = RawH2(trio.SocketStream(sock))
            raw.conn.initiate_connection()
            await raw.flush()
            await register_raw(raw, 17215)
            (gsock,) = proxy.proxy.grpc._sockets
            ping = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"12345678"
            peak = 0
            with trio.move_on_after(8):
                try:
                    while True:
                        await raw.sock.send_all(ping * 1000)
                        peak = max(peak, len(gsock.connection.h2_connection._data_to_send))
                except trio.BrokenResourceError:
                    pass  # closed by the proxy: it read nothing of ours in time
            assert peak <= 2 * 1024 * 1024, f"{peak} bytes queued for a peer that reads nothing"
            while proxy.proxy.grpc.statistics().connections:  # closed, with its agent
                await trio.sleep(0.05)
            await raw.aclose()
