"""HTTP deadlines and shutdown over real sockets (SPEC section 10, docs/http-timeouts.md).

Test policy: every test talks HTTP/1.1 to a real proxy on 127.0.0.1 under a `trio.fail_after`
guard. Timing is asserted only where the behaviour *is* a deadline, and then with generous bounds
("answered before the read timeout would have cut it", "closed long before the read timeout"),
never as a speed. Slow clients are simulated by a client that stops reading for a while, with a
small receive buffer so that the answer cannot all sit in kernel buffers meanwhile.
"""

from __future__ import annotations

import json
import socket

import h11
import trio
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fodcproxy.rpc import convert
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.service import REGISTER
from fodcproxy.testing import open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get


def ups(text: str) -> dict[str, float]:
    return {s.labels["agent_id"]: s.value for f in parse_text(text) for s in f.samples
            if s.name == "fodc_agent_up"}


async def open_raw(port: int, *, rcvbuf: int | None = None) -> trio.SocketStream:
    sock = trio.socket.socket(trio.socket.AF_INET, trio.socket.SOCK_STREAM)
    if rcvbuf is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    await sock.connect(("127.0.0.1", port))
    return trio.SocketStream(sock)


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    out = bytearray()
    while True:
        try:
            data = await stream.receive_some(65536)
        except trio.BrokenResourceError:  # reset: the server gave up on us
            break
        if not data:
            break
        out += data
    return bytes(out)


def parse_response(raw: bytes) -> tuple[int, bytes, bool]:
    """(status, body, complete): complete is False when the body was cut short."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    conn.receive_data(b"")
    status, body, complete = 0, bytearray(), False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError:
            break
        if isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            complete = True
            break
        elif event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
            break
    return status, bytes(body), complete


def big_series(n: int = 20000) -> list:
    # About 6 MB of exposition text: more than loopback's socket buffers hold.
    return [static(f"big_{i % 50}", float(i), labels={"pad": "x" * 200, "i": str(i)}) for i in range(n)]


async def test_read_timeout_never_cuts_an_answer_still_being_collected():
    # --collect-timeout 3s, --http-read-timeout 1s, one hung agent: the client sends nothing
    # while it waits; it still gets its answer at the collect deadline, the hung node up 0.
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=3.0, http_read_timeout=1.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as good, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=2,
                                series=[static("x", 2)]) as hung:
            hung.hang = True
            start = trio.current_time()
            r = await http_get(proxy.http_url + "/metrics", timeout=15)
            waited = trio.current_time() - start
    assert r.status == 200
    assert ups(r.text) == {good.agent_id: 1.0, hung.agent_id: 0.0}
    assert waited >= 2.5  # it really was the collect deadline that ended the wait, not the read timeout


async def test_slow_reader_gets_the_whole_answer_within_the_write_timeout():
    # The client stops reading for longer than the read timeout, well inside the write timeout.
    with trio.fail_after(60):
        async with open_proxy(collect_timeout=10.0, http_read_timeout=1.0,
                              http_write_timeout=60.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=big_series()):
            stream = await open_raw(proxy.addresses.http_port, rcvbuf=4096)
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                first = await stream.receive_some(4096)
                await trio.sleep(2.5)  # a client reading slowly: nothing read for 2.5 read timeouts
                raw = first + await read_until_eof(stream)
    status, body, complete = parse_response(raw)
    assert status == 200 and complete, (status, len(body))
    assert len(body) > 4_000_000
    # The whole exposition arrived: it ends with the proxy's own series, the last family.
    assert b"\nfodc_proxy_uptime_seconds " in body
    assert body.rstrip().rsplit(b"\n", 1)[1].startswith(b"fodc_proxy_")


async def test_write_timeout_cuts_a_client_reading_slower_than_it():
    with trio.fail_after(60):
        async with open_proxy(collect_timeout=10.0, http_read_timeout=30.0,
                              http_write_timeout=1.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=big_series()):
            stream = await open_raw(proxy.addresses.http_port, rcvbuf=4096)
            async with stream:
                await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                first = await stream.receive_some(4096)
                await trio.sleep(2.5)  # past the 1 s write timeout
                raw = first + await read_until_eof(stream)
    status, body, complete = parse_response(raw)
    assert status == 200 and not complete  # cut short, and the chunked framing says so


async def test_idle_connection_is_closed_at_the_read_timeout():
    with trio.fail_after(20):
        async with open_proxy(http_read_timeout=1.0) as proxy:
            stream = await open_raw(proxy.addresses.http_port)
            async with stream:
                assert await read_until_eof(stream) == b""  # closed without a word


async def test_a_client_trickling_its_request_head_is_closed_at_the_read_timeout():
    with trio.fail_after(20):
        async with open_proxy(http_read_timeout=1.0) as proxy:
            stream = await open_raw(proxy.addresses.http_port)
            async with stream:
                await stream.send_all(b"GET /health HTTP/1.1\r\n")
                closed = trio.Event()

                async def trickle() -> None:
                    while not closed.is_set():
                        try:
                            await stream.send_all(b"X-Slow: 1\r\n")
                        except (trio.BrokenResourceError, trio.ClosedResourceError):
                            return
                        await trio.sleep(0.1)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(trickle)
                    start = trio.current_time()
                    rest = await read_until_eof(stream)
                    closed.set()
                    waited = trio.current_time() - start
    assert b"200" not in rest
    assert waited < 10  # bounded by the read timeout although bytes kept coming


async def test_keep_alive_connection_serves_several_requests_then_idles_out():
    with trio.fail_after(20):
        async with open_proxy(http_read_timeout=1.0) as proxy:
            stream = await open_raw(proxy.addresses.http_port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                for _ in range(2):
                    await stream.send_all(conn.send(h11.Request(
                        method="GET", target="/health", headers=[("Host", "x")])) + conn.send(h11.EndOfMessage()))
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some(65536))
                        elif isinstance(event, h11.Response):
                            assert event.status_code == 200
                        elif isinstance(event, h11.EndOfMessage):
                            break
                    conn.start_next_cycle()
                assert await read_until_eof(stream) == b""


async def test_connection_close_is_honoured_at_once():
    # The read timeout is 30 s: an EOF well before it is the server honouring Connection: close.
    with trio.fail_after(10):
        async with open_proxy(http_read_timeout=30.0) as proxy:
            for request in (b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                            b"OPTIONS /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
                stream = await open_raw(proxy.addresses.http_port)
                async with stream:
                    await stream.send_all(request)
                    with trio.fail_after(5):
                        raw = await read_until_eof(stream)
                status, _, complete = parse_response(raw)
                assert complete and status in (200, 204, 404)


async def test_request_head_too_large_is_431_with_a_json_body():
    with trio.fail_after(10):
        async with open_proxy() as proxy:
            stream = await open_raw(proxy.addresses.http_port)
            async with stream:
                # 20 KiB of header and no end of head yet: over the 16 KiB limit.
                await stream.send_all(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000)
                raw = await read_until_eof(stream)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431")
    assert b"content-type: application/json" in head.lower()
    assert "too large" in json.loads(body)["error"]


async def test_a_malformed_request_is_400_with_a_json_body():
    with trio.fail_after(10):
        async with open_proxy() as proxy:
            stream = await open_raw(proxy.addresses.http_port)
            async with stream:
                await stream.send_all(b"NOT HTTP AT ALL\r\n\r\n")
                raw = await read_until_eof(stream)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400")
    assert "not valid HTTP/1.1" in json.loads(body)["error"]


async def test_shutdown_lets_a_running_scrape_finish():
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=5.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)], reconnect_interval=30) as agent:
            agent.delay = 1.5  # still waiting for the agent when SIGTERM comes (default grace: 10 s)
            answers = []

            async def scrape() -> None:
                answers.append(await http_get(proxy.http_url + "/metrics", timeout=20))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scrape)
                while agent.request_count == 0:
                    await trio.sleep(0.01)
                proxy.proxy.shutdown()  # what SIGTERM does (cli.run_until_signal)
    [r] = answers
    assert r.status == 200
    assert ups(r.text) == {agent.agent_id: 1.0}


async def test_shutdown_grace_bounds_a_scrape_that_would_take_longer():
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=20.0, shutdown_grace=0.5) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)], reconnect_interval=30) as agent:
            agent.hang = True
            outcome = []

            async def scrape() -> None:
                try:
                    outcome.append(await http_get(proxy.http_url + "/metrics", timeout=25))
                except Exception as exc:  # the connection is closed at the end of the grace
                    outcome.append(exc)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scrape)
                while agent.request_count == 0:
                    await trio.sleep(0.01)
                start = trio.current_time()
                proxy.proxy.shutdown()
            waited = trio.current_time() - start
    assert waited < 15  # long before the 20 s collect deadline
    assert not isinstance(outcome[0], trio.TooSlowError)


async def test_an_agent_that_never_opens_its_metrics_stream_is_up_0_without_waiting():
    # Registered, heartbeating, no StreamMetrics: after the attach grace it costs no scrape
    # the collect deadline.
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=8.0, attach_grace=0.5) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as good:
            async with open_channel("127.0.0.1", proxy.addresses.grpc_port) as ch:
                reg = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await reg.send(convert.registration_to_proto(role="liaison", ip="127.0.0.1", port=2))
                silent = (await reg.receive()).agent_id
                for _ in range(2):
                    start = trio.current_time()
                    r = await http_get(proxy.http_url + "/metrics", timeout=20)
                    waited = trio.current_time() - start
                    assert ups(r.text) == {good.agent_id: 1.0, silent: 0.0}
                    assert waited < 6  # answered well before the 8 s collect deadline
                    assert r.headers["x-fodc-agents-missed"] == silent


async def test_a_client_that_stops_reading_does_not_hold_the_proxy_past_its_deadlines():
    # hypercorn shields its socket writes: a client that never reads again used to hold its
    # request task, hypercorn's shutdown and the proxy's own cancellation forever.
    with trio.fail_after(60):
        async with open_proxy(collect_timeout=10.0, http_read_timeout=30.0, http_write_timeout=30.0,
                              shutdown_grace=1.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=big_series()):
            stream = await open_raw(proxy.addresses.http_port, rcvbuf=4096)
            await stream.send_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            await stream.receive_some(4096)  # the answer has begun; now stop reading
            with trio.move_on_after(15) as waited:  # the 1 s grace, not the 30 s write timeout
                proxy.proxy.shutdown()
                await proxy.proxy._http_stopped.wait()
            await stream.aclose()  # (without the fix, this is what frees the stuck server)
            assert not waited.cancelled_caught, "the HTTP server waited for a client that stopped reading"
