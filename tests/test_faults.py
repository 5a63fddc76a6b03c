"""Bad input gets a clear error and loses nothing: fuzzed HTTP parameters, broken gRPC frames."""

from __future__ import annotations

import json
import queue
import struct
import threading
import urllib.error
import urllib.parse
import urllib.request

import h2.connection
import h2.config
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from fodcproxy.core.registry import AgentStatus
from fodcproxy.testing import open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get

PARAMS = ["role", "address", "agent_id", "node_id", "start_time", "end_time", "bogus"]
PATHS = ["/metrics", "/metrics-windows", "/cluster", "/cluster/config", "/sd", "/health"]


@pytest.fixture(scope="module")
def threaded_proxy():
    """A proxy in a thread of its own (its own trio.run), for synchronous hypothesis tests."""
    ready: queue.Queue = queue.Queue()

    async def main():
        async with open_proxy() as handle:
            stop = trio.Event()
            ready.put((handle, trio.lowlevel.current_trio_token(), stop))
            await stop.wait()

    thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
    thread.start()
    handle, token, stop = ready.get(timeout=30)
    yield handle
    trio.from_thread.run_sync(stop.set, trio_token=token)
    thread.join(timeout=30)
    assert not thread.is_alive()


@settings(max_examples=150, deadline=None)
@given(path=st.sampled_from(PATHS),
       params=st.lists(st.tuples(st.sampled_from(PARAMS), st.text(max_size=40)), max_size=4))
def test_fuzzed_query_parameters_get_200_or_a_json_400(threaded_proxy, path, params):
    query = urllib.parse.urlencode(params)
    url = threaded_proxy.http_url + path + ("?" + query if query else "")
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    assert status in (200, 400), (path, query, status, body)
    if status == 400:
        error = json.loads(body)["error"]
        assert isinstance(error, str) and error


def _h2_client_bytes(build) -> bytes:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    build(conn)
    return conn.data_to_send()


def _headers(path="/banyandb.fodc.v1.FODCService/RegisterAgent"):
    return [(":method", "POST"), (":scheme", "http"), (":path", path), (":authority", "x"),
            ("te", "trailers"), ("content-type", "application/grpc")]


async def test_truncated_and_broken_frames_leave_other_agents_alone(proxy):
    def truncated_message(conn):  # a gRPC message header that promises more than ever comes
        conn.send_headers(1, _headers())
        conn.send_data(1, struct.pack(">?I", False, 1000) + b"\x0a\x03abc")

    def headers_only_end(conn):  # END_STREAM on the headers: no request at all
        conn.send_headers(1, _headers(), end_stream=True)

    def bad_path(conn):
        conn.send_headers(1, _headers(path="not-a-grpc-path"))

    def compressed_garbage(conn):  # compressed flag with no grpc-encoding
        conn.send_headers(1, _headers())
        conn.send_data(1, struct.pack(">?I", True, 4) + b"\x00\x01\x02\x03")

    payloads = [_h2_client_bytes(f) for f in (truncated_message, headers_only_end, bad_path, compressed_garbage)]
    payloads.append(_h2_client_bytes(truncated_message)[:30])  # cut inside the preface/settings
    with trio.fail_after(30):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("x", 1)]) as agent:
            for payload in payloads:
                s = await trio.open_tcp_stream("127.0.0.1", proxy.addresses.grpc_port)
                await s.send_all(payload)
                await s.send_eof()
                with trio.move_on_after(5):
                    while await s.receive_some():
                        pass
                await s.aclose()
            while proxy.proxy.grpc.statistics().connections != 1:
                await trio.sleep(0.01)
            assert proxy.proxy.registry.get(agent.agent_id).status is AgentStatus.ONLINE
            r = await http_get(proxy.http_url + "/metrics")
            assert f'x{{agent_id="{agent.agent_id}"' in r.text
