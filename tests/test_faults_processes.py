"""Faults with real processes: agents killed -9 during scrapes, the proxy killed and restarted,
and a bounded soak with churn. Loopback only; every loop is bounded in count and time."""

from __future__ import annotations

import os
import pathlib
import re
import signal
import socket
import subprocess
import sys

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.core.registry import AgentStatus
from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get

pytestmark = pytest.mark.slow

AGENTS = str(pathlib.Path(__file__).parent / "agents_proc.py")


async def start_agents(addr: str, count: int, port_base: int, *extra: str):
    proc = await trio.lowlevel.open_process([sys.executable, AGENTS, addr, str(count), str(port_base), *extra],
                                            stdout=subprocess.PIPE)
    buf = b""
    while b"\n" not in buf:
        chunk = await proc.stdout.receive_some()
        assert chunk, "agents process exited early"
        buf += chunk
    line, _, rest = buf.partition(b"\n")
    assert line.startswith(b"READY")
    proc.leftover = rest  # type: ignore[attr-defined]
    return proc, line.decode().split()[1:]


async def stop_agents(proc) -> int:
    """SIGTERM, then the number of connection attempts the agents made."""
    proc.send_signal(signal.SIGTERM)
    out = proc.leftover
    while True:
        chunk = await proc.stdout.receive_some()
        if not chunk:
            break
        out += chunk
    await proc.wait()
    m = re.search(rb"STATS connects=(\d+)", out)
    assert m, out
    return int(m.group(1))


def kill(proc) -> None:
    if proc.returncode is None:
        proc.kill()


def samples(text: str, name: str):
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


async def test_twenty_of_a_hundred_agents_killed_during_scrapes():
    with trio.fail_after(120):
        async with open_proxy(collect_timeout=1.0, max_agents=200) as proxy:
            procs = []
            try:
                ids_by_proc = []
                for k in range(10):
                    proc, ids = await start_agents(proxy.grpc_address, 10, 30000 + 10 * k)
                    procs.append(proc)
                    ids_by_proc.append(ids)
                registry = proxy.proxy.registry
                assert sum(1 for e in registry if e.status is AgentStatus.ONLINE) == 100
                scrape_times: list[float] = []
                problems: list[str] = []
                stop = trio.Event()

                async def scraper():
                    while not stop.is_set():
                        start = trio.current_time()
                        r = await http_get(proxy.http_url + "/metrics", timeout=10)
                        scrape_times.append(trio.current_time() - start)
                        for s in samples(r.text, "agent_port"):
                            if s.labels["node_port"] != str(int(s.value)):
                                problems.append(f"misattributed: {s}")

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(scraper)
                    nursery.start_soon(scraper)
                    await trio.sleep(0.5)
                    victims = [procs[2], procs[7]]
                    killed = ids_by_proc[2] + ids_by_proc[7]
                    start = trio.current_time()
                    for p in victims:
                        os.kill(p.pid, signal.SIGKILL)
                    with trio.fail_after(1.0):
                        while any(registry.get(a).status is AgentStatus.ONLINE for a in killed):
                            await trio.sleep(0.005)
                    offline_after = trio.current_time() - start
                    await trio.sleep(1.5)
                    stop.set()
                print(f"20 agents killed -9: all offline after {offline_after * 1000:.0f} ms; "
                      f"{len(scrape_times)} scrapes, slowest {max(scrape_times):.2f} s")
                assert not problems, problems[:3]
                assert max(scrape_times) < 1.0 + 1.0  # the deadline plus rendering, never a hang
                assert sum(1 for e in registry if e.status is AgentStatus.ONLINE) == 80
                r = await http_get(proxy.http_url + "/metrics")
                ups = {s.labels["agent_id"]: s.value for s in samples(r.text, "fodc_agent_up")}
                assert all(ups[a] == 0.0 for a in killed)
                assert sum(ups.values()) == 80
            finally:
                for p in procs:
                    kill(p)
                    await p.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_proxy_process(grpc_port: int, http_port: int, *extra: str):
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-m", "fodcproxy", "--grpc-listen-addr", f"127.0.0.1:{grpc_port}",
         "--http-listen-addr", f"127.0.0.1:{http_port}", *extra], stderr=subprocess.PIPE)
    buf = b""
    while b"proxy ready" not in buf:
        chunk = await proc.stderr.receive_some()
        assert chunk, buf.decode()
        buf += chunk

    async def drain():  # keep the pipe from filling up
        while await proc.stderr.receive_some():
            pass

    return proc, drain


async def test_proxy_killed_and_restarted_with_a_hundred_agents():
    grpc_port, http_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    with trio.fail_after(120):
        async with trio.open_nursery() as nursery:
            proxy, drain = await start_proxy_process(grpc_port, http_port)
            nursery.start_soon(drain)
            agents, ids = await start_agents(f"127.0.0.1:{grpc_port}", 100, 31000, "0.2")
            try:
                before = {n["node_id"] for n in (await http_get(url + "/cluster")).json()["nodes"]}
                assert before == set(ids)
                os.kill(proxy.pid, signal.SIGKILL)
                await proxy.wait()
                await trio.sleep(1.0)  # agents notice and back off while nobody listens
                proxy, drain = await start_proxy_process(grpc_port, http_port)
                nursery.start_soon(drain)
                start = trio.current_time()
                with trio.fail_after(10):
                    while True:
                        health = (await http_get(url + "/health")).json()
                        if health["agents_online"] == 100:
                            break
                        await trio.sleep(0.05)
                back_after = trio.current_time() - start
                after = (await http_get(url + "/cluster")).json()["nodes"]
                assert {n["node_id"] for n in after} == before  # same ids
                assert len(after) == 100 and health["agents_total"] == 100  # no duplicates, no zombies
                r = await http_get(url + "/metrics")
                assert sum(s.value for s in samples(r.text, "fodc_agent_up")) == 100
                connects = await stop_agents(agents)
                print(f"proxy restart: 100 agents back online in {back_after:.2f} s; "
                      f"{connects} connection attempts in all")
                # Backoff, not a storm: 100 first connects plus a handful of retries each.
                assert connects <= 100 * 8
                proxy.send_signal(signal.SIGTERM)
                assert await proxy.wait() == 0
            finally:
                kill(agents)
                kill(proxy)


def _rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


SOAK_SECONDS = float(os.environ.get("FODC_SOAK_SECONDS", "45"))


async def test_soak_churn_and_scrapes_do_not_leak():
    grpc_port, http_port = free_port(), free_port()
    url = f"http://127.0.0.1:{http_port}"
    with trio.fail_after(SOAK_SECONDS + 90):
        async with trio.open_nursery() as nursery:
            proxy, drain = await start_proxy_process(grpc_port, http_port, "--collect-timeout", "1s")
            nursery.start_soon(drain)
            steady, _ = await start_agents(f"127.0.0.1:{grpc_port}", 30, 32000)
            churny, _ = await start_agents(f"127.0.0.1:{grpc_port}", 20, 33000, "0.05", "--churn", "0.02")
            try:
                scrapes = 0

                async def scrape_for(seconds: float) -> None:
                    nonlocal scrapes
                    end = trio.current_time() + seconds
                    while trio.current_time() < end:
                        for path in ("/metrics", "/metrics-windows", "/cluster"):
                            r = await http_get(url + path, timeout=10)
                            assert r.status == 200
                            scrapes += 1

                await scrape_for(5)  # warm up: caches, first allocations
                rss0, fds0 = _rss_kib(proxy.pid), _fds(proxy.pid)
                await scrape_for(SOAK_SECONDS)
                rss1, fds1 = _rss_kib(proxy.pid), _fds(proxy.pid)
                print(f"soak {SOAK_SECONDS:.0f}s: {scrapes} requests; RSS {rss0} -> {rss1} KiB; "
                      f"fds {fds0} -> {fds1}")
                assert fds1 <= fds0 + 20  # connections of 50 agents come and go; no fd leak
                assert rss1 - rss0 < 40 * 1024  # KiB: no growth without bound
                for p in (steady, churny):
                    await stop_agents(p)
                proxy.send_signal(signal.SIGTERM)
                assert await proxy.wait() == 0
            finally:
                for p in (steady, churny, proxy):
                    kill(p)
