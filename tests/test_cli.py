"""The programs as processes: flags, exit codes, signals, kill -9."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest
import trio

from fodcproxy.core.registry import AgentStatus
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.service import REGISTER
from fodcproxy.testing.http import http_get

PROXY = [sys.executable, "-m", "fodcproxy"]
FLAGS = ["--grpc-listen-addr", "--http-listen-addr", "--agent-heartbeat-timeout",
         "--agent-cleanup-timeout", "--heartbeat-interval", "--max-agents", "--grpc-max-msg-size",
         "--http-read-timeout", "--http-write-timeout", "--collect-timeout", "--log-level",
         "--max-secondary-addresses", "--max-secondary-address-key-length",
         "--max-node-config-bytes", "--max-reply-bytes", "--grpc-max-connections",
         "--grpc-buffer-budget", "--grpc-handshake-timeout", "--grpc-idle-timeout",
         "--grpc-message-timeout",
         "--shutdown-grace", "--advertise-http-addr"]


def test_help_lists_every_flag():
    out = subprocess.run(PROXY + ["--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0
    for flag in FLAGS:
        assert flag in out.stdout
    again = subprocess.run(PROXY + ["proxy", "--help"], capture_output=True, text=True, timeout=60)
    assert again.stdout == out.stdout


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--agent-heartbeat-timeout", "0s"], "--agent-heartbeat-timeout"),
        (["--agent-cleanup-timeout", "10s"], "--agent-cleanup-timeout"),
        (["--heartbeat-interval", "30s"], "--heartbeat-interval"),
        (["--collect-timeout", "soon"], "--collect-timeout"),
        (["--max-agents", "many"], "--max-agents"),
        (["--max-agents", "0"], "--max-agents"),
        (["--grpc-max-msg-size", "12"], "--grpc-max-msg-size"),
        (["--grpc-listen-addr", "17900"], "--grpc-listen-addr"),
        (["--http-listen-addr", ":99999"], "--http-listen-addr"),
        (["--log-level", "loud"], "--log-level"),
        (["--no-such-flag"], "unrecognized arguments"),
        (["--grpc-tls-cert-file", __file__, "--grpc-tls-key-file", __file__], "--grpc-tls-cert-file"),
        (["--http-tls-cert-file", __file__], "--http-tls-key-file"),
        (["--agent-token-file", "/nonexistent/token"], "--agent-token-file"),
        (["--max-query-window", "-1h"], "--max-query-window"),
        (["--max-secondary-addresses", "-1"], "--max-secondary-addresses"),
        (["--max-secondary-address-key-length", "0"], "--max-secondary-address-key-length"),
        (["--max-node-config-bytes", "lots"], "--max-node-config-bytes"),
        (["--max-reply-bytes", "12"], "--max-reply-bytes"),
        (["--grpc-max-connections", "-1"], "--grpc-max-connections"),
        (["--grpc-buffer-budget", "1MB"], "--grpc-buffer-budget"),
        (["--grpc-message-timeout", "0s"], "--grpc-message-timeout"),
        (["--grpc-idle-timeout", "soon"], "--grpc-idle-timeout"),
        (["--shutdown-grace", "-1s"], "--shutdown-grace"),
        (["--shutdown-grace", "later"], "--shutdown-grace"),
        (["--advertise-http-addr", "proxy.example"], "--advertise-http-addr"),
        (["--advertise-http-addr", ":17901"], "--advertise-http-addr"),
        (["--advertise-http-addr", "proxy.example:0"], "--advertise-http-addr"),
        (["--advertise-http-addr", "http://proxy.example:17901"], "--advertise-http-addr"),
    ],
)
def test_bad_flag_exits_2_with_one_line_naming_it(args, flag):
    out = subprocess.run(PROXY + args, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert flag in lines[0]


def test_new_limits_reach_the_config_and_bad_handshake_timeout_names_its_flag():
    from fodcproxy.config import ProxyConfig, add_proxy_flags, proxy_config_from_args
    from fodcproxy.process import FlagParser
    from fodcproxy.errors import ConfigError

    p = FlagParser(prog="t")
    add_proxy_flags(p)
    cfg = proxy_config_from_args(p.parse_args([
        "--max-secondary-addresses", "3", "--max-secondary-address-key-length", "9",
        "--max-node-config-bytes", "100", "--max-reply-bytes", "2048",
        "--grpc-max-connections", "7", "--grpc-buffer-budget", "9000000",
        "--grpc-idle-timeout", "1m", "--grpc-message-timeout", "5s"]))
    assert (cfg.max_secondary_addresses, cfg.max_secondary_address_key_length,
            cfg.max_node_config_bytes, cfg.max_reply_bytes) == (3, 9, 100, 2048)
    assert (cfg.grpc_connection_limit, cfg.grpc_buffer_budget, cfg.grpc_idle_timeout,
            cfg.grpc_message_timeout) == (7, 9000000, 60.0, 5.0)
    d = proxy_config_from_args(p.parse_args([]))
    assert (d.max_secondary_addresses, d.max_secondary_address_key_length, d.max_node_config_bytes,
            d.max_reply_bytes, d.grpc_handshake_timeout) == (64, 256, 262144, 268435456, 10.0)
    assert d.grpc_connection_limit == 1250 and d.grpc_buffer_budget == 32 * 1024 * 1024
    with pytest.raises(ConfigError, match="--grpc-handshake-timeout"):
        ProxyConfig(grpc_handshake_timeout=0)
    with pytest.raises(ConfigError, match="--grpc-buffer-budget"):
        ProxyConfig(grpc_buffer_budget=1000)
    with pytest.raises(ConfigError, match="--grpc-idle-timeout"):
        ProxyConfig(grpc_idle_timeout=0)


async def _start_proxy(*extra: str) -> tuple[trio.Process, int, int]:
    proc = await trio.lowlevel.open_process(
        PROXY + ["--grpc-listen-addr", "127.0.0.1:0", "--http-listen-addr", "127.0.0.1:0", *extra],
        stderr=subprocess.PIPE)
    buf = b""
    while b"proxy ready" not in buf:
        chunk = await proc.stderr.receive_some()
        assert chunk, f"proxy exited early: {buf.decode()}"
        buf += chunk
    m = re.search(rb"proxy ready: gRPC 127\.0\.0\.1:(\d+), HTTP http://127\.0\.0\.1:(\d+)", buf)
    return proc, int(m.group(1)), int(m.group(2))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_stops_the_proxy_in_order(signum):
    with trio.fail_after(30):
        proc, grpc_port, http_port = await _start_proxy()
        try:
            assert (await http_get(f"http://127.0.0.1:{http_port}/health")).status == 200
            async with open_channel("127.0.0.1", grpc_port) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(convert.registration_to_proto(role="liaison", ip="127.0.0.1", port=1))
                assert (await call.receive()).success
                start = trio.current_time()
                proc.send_signal(signum)
                assert await call.receive() is None
                assert call.status[0] == GrpcCode.UNAVAILABLE
                code = await proc.wait()
                elapsed = trio.current_time() - start
            assert code == 0
            assert elapsed < 2.0, f"shutdown took {elapsed:.2f}s"
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def test_sigterm_during_a_scrape_lets_it_finish():
    # README: running requests finish. The agent answers 1.5 s after the request; SIGTERM comes
    # while the scrape waits for it.
    from fodcproxy.testing import open_fake_agent, static

    with trio.fail_after(30):
        proc, grpc_port, http_port = await _start_proxy("--collect-timeout", "5s")
        try:
            async with open_fake_agent(f"127.0.0.1:{grpc_port}", role="liaison", ip="127.0.0.1",
                                       port=1, series=[static("x", 1)], reconnect_interval=30) as agent:
                agent.delay = 1.5
                answers = []

                async def scrape() -> None:
                    answers.append(await http_get(f"http://127.0.0.1:{http_port}/metrics", timeout=20))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(scrape)
                    while agent.request_count == 0:
                        await trio.sleep(0.01)
                    proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    [r] = answers
    assert r.status == 200
    assert re.search(r'^fodc_agent_up\{[^}]*\} 1(\.0)?$', r.text, re.M), r.text[-2000:]


AGENT_SCRIPT = textwrap.dedent("""
    import sys, trio
    from fodcproxy.testing import FakeAgent, static
    async def main():
        agent = FakeAgent(sys.argv[1], role="datanode-hot", ip="127.0.0.1", port=17999,
                          series=[static("x", 1.0)])
        async with trio.open_nursery() as n:
            aid = await n.start(agent.run)
            print(aid, flush=True)
    trio.run(main)
""")


async def test_kill_9_of_an_agent_process_is_seen_within_a_second(proxy):
    with trio.fail_after(30):
        proc = await trio.lowlevel.open_process([sys.executable, "-c", AGENT_SCRIPT, proxy.grpc_address],
                                                stdout=subprocess.PIPE)
        try:
            line = b""
            while not line.endswith(b"\n"):
                chunk = await proc.stdout.receive_some()
                assert chunk, "agent process exited"
                line += chunk
            aid = line.decode().strip()
            registry = proxy.proxy.registry
            assert registry.get(aid).status is AgentStatus.ONLINE
            start = trio.current_time()
            os.kill(proc.pid, signal.SIGKILL)
            with trio.fail_after(1.0):
                while registry.get(aid).status is AgentStatus.ONLINE:
                    await trio.sleep(0.001)
            elapsed = trio.current_time() - start
            print(f"kill -9 -> offline in {elapsed * 1000:.1f} ms")
            assert registry.get(aid).status.value == "unconnected"
            health = (await http_get(proxy.http_url + "/health")).json()
            assert health["agents_online"] == 0 and health["agents_total"] == 1
        finally:
            if proc.returncode is None:
                proc.kill()
            await proc.wait()
