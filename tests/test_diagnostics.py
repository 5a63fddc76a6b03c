"""GET /diagnostics, GET /pressure-profiles and profile downloads through a real proxy, with fake
agents speaking real gRPC (fodcproxy.testing.diagnostics), hostile ones included."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlsplit

import h11
import pytest
import trio

from fodcproxy.diagnostics import CrashDiagnosticsStream, PressureProfilesStream
from fodcproxy.testing import open_fake_agent, open_proxy
from fodcproxy.testing.diagnostics import (
    FakeCrashService,
    FakePressureService,
    crash_record,
)
from fodcproxy.testing.http import http_get, http_request
from helpers import wait_for

CRASH_KEYS = {"agent_id", "pod_name", "role", "fetched_at", "source_endpoint", "artifact_dir",
              "files", "panic_record"}
PANIC_KEYS = {"occurred_at", "component", "panic_value", "recovered", "goroutine_stack",
              "breadcrumbs", "process_metadata"}
PROFILE_KEYS = {"agent_id", "pod_name", "role", "profile_id", "captured_at", "rss_bytes",
                "cgroup_limit_bytes", "threshold_bytes", "trigger_percent", "source_endpoint",
                "profiles"}


@asynccontextmanager
async def pod(proxy: Any, name: str, *services: Any, role: str = "ROLE_DATA") -> AsyncIterator[Any]:
    async with open_fake_agent(proxy.grpc_address, role=role, pod_name=name,
                               labels={"type": "hot"}, services=list(services)) as agent:
        hub = proxy.proxy.hub
        for s in services:
            kind = (CrashDiagnosticsStream if isinstance(s, FakeCrashService)
                    else PressureProfilesStream)
            await wait_for(lambda: agent.agent_id in hub.sessions
                           and hub.sessions[agent.agent_id].stream(kind) is not None)
        yield agent


def _blob(n: int, seed: int = 7) -> bytes:
    out = bytearray()
    block = hashlib.sha256(bytes([seed])).digest()
    while len(out) < n:
        out += block
        block = hashlib.sha256(block).digest()
    return bytes(out[:n])


async def test_crash_records_upstream_keys_dedup_and_headers() -> None:
    crash = FakeCrashService([crash_record("/c/1"), crash_record("/c/2"),
                              crash_record("/c/1", panic_value="again")])
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", crash) as a, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="10.0.0.9", port=17912):
            r = await http_get(proxy.http_url + "/diagnostics")
            assert r.status == 200
            body = r.json()
            assert [d["artifact_dir"] for d in body] == ["/c/1", "/c/2"]
            first = body[0]
            assert set(first) == CRASH_KEYS
            assert set(first["panic_record"]) == PANIC_KEYS
            assert first["panic_record"]["panic_value"] == "again"  # the later one replaces
            assert first["agent_id"] == a.agent_id and first["pod_name"] == "data-0"
            assert first["role"] == "ROLE_DATA"
            assert first["panic_record"]["occurred_at"] == "2026-09-21T14:13:20.5Z"
            assert first["panic_record"]["breadcrumbs"][0]["fields"] == {"shard": "3"}
            assert r.headers["x-fodc-agents-asked"] == "1"
            assert r.headers["x-fodc-agents-answered"] == "1"
            assert "x-fodc-agents-without-stream" in r.headers  # the address agent
            # Filters: role in both generations, pod_name.
            assert len((await http_get(proxy.http_url + "/diagnostics?role=datanode-hot")).json()) == 2
            assert (await http_get(proxy.http_url + "/diagnostics?role=liaison")).json() == []
            assert (await http_get(proxy.http_url + "/diagnostics?pod_name=other")).json() == []
            bad = await http_get(proxy.http_url + "/diagnostics?podname=x")
            assert bad.status == 400


async def test_crash_records_arriving_unasked_are_dropped_and_counted() -> None:
    crash = FakeCrashService([crash_record("/c/1")])
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", crash) as a:
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(CrashDiagnosticsStream)
            assert crash.call is not None
            await crash.call.send(crash_record("/unasked"))
            await wait_for(lambda: stream.unasked == 1)
            body = (await http_get(proxy.http_url + "/diagnostics")).json()
            assert [d["artifact_dir"] for d in body] == ["/c/1"]


async def test_crash_records_cut_at_the_deadline_are_flagged() -> None:
    # An agent that keeps sending (a record every 0.05 s) never settles: its answer is cut at
    # the deadline and flagged, never waited for beyond it. (The exact times are in
    # test_diagnostics_core.py, under MockClock.)
    crash = FakeCrashService([crash_record(f"/c/{i}") for i in range(200)], gap=0.05)
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=2.0, diagnostics_settle=1.5) as proxy, \
                pod(proxy, "data-0", crash):
            start = trio.current_time()
            r = await http_get(proxy.http_url + "/diagnostics")
            assert trio.current_time() - start < 5
            assert r.status == 200
            assert 0 < len(r.json()) < 200
            assert "x-fodc-agents-incomplete" in r.headers


async def test_crash_records_over_the_cap_are_flagged(monkeypatch: pytest.MonkeyPatch) -> None:
    crash = FakeCrashService([crash_record(f"/c/{i}") for i in range(300)])
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", crash):
            r = await http_get(proxy.http_url + "/diagnostics")
            assert len(r.json()) == 256
            assert "x-fodc-agents-incomplete" in r.headers


async def test_profiles_list_and_byte_exact_download() -> None:
    heap = _blob(3 * 1024 * 1024 + 17)
    pressure = FakePressureService({"20260101T000000Z": {"heap": heap, "goroutine": b"g" * 10}})
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure) as a:
            r = await http_get(proxy.http_url + "/pressure-profiles")
            assert r.status == 200
            (rec,) = r.json()
            assert set(rec) == PROFILE_KEYS
            assert rec["agent_id"] == a.agent_id and rec["trigger_percent"] == 75
            assert {p["type"] for p in rec["profiles"]} == {"heap", "goroutine"}
            assert rec["captured_at"] == "2026-01-01T00:00:00Z"  # the time its id names
            url = proxy.http_url + "/pressure-profiles/data%2F0/20260101T000000Z/heap"
            # A pod name with a slash cannot be routed: 404, not a crash.
            assert (await http_get(url)).status == 404
            url = proxy.http_url + "/pressure-profiles/data-0/20260101T000000Z/heap"
            d = await http_get(url)
            assert d.status == 200
            assert d.body == heap
            assert d.headers["content-type"] == "application/octet-stream"
            assert d.headers["content-disposition"] == \
                'attachment; filename="data-0-ROLE_DATA-20260101T000000Z-heap.pprof"'
            assert pressure.lists == 2 and len(pressure.fetches) == 1
            # Never served from a cache: each download lists afresh.
            assert (await http_get(url.replace("heap", "goroutine"))).body == b"g" * 10
            assert pressure.lists == 3


async def test_bad_download_paths() -> None:
    pressure = FakePressureService({"p1": {"heap": b"x"}})
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure):
            base = proxy.http_url + "/pressure-profiles"
            r = await http_get(base + "/data-0/p1/cpu")
            assert r.status == 400 and "heap or goroutine" in r.json()["error"]
            assert (await http_get(base + "/nobody/p1/heap")).status == 404
            assert (await http_get(base + "/data-0/p2/heap")).status == 404
            assert (await http_get(base + "/data-0/p1/goroutine")).status == 404
            assert (await http_get(base + "/" + "x" * 300 + "/p1/heap")).status == 400
            assert (await http_get(base + "/data-0/p1/heap?x=1")).status == 400
            head = await http_request("HEAD", base + "/data-0/p1/heap")
            assert head.status == 200 and "attachment" in head.headers["content-disposition"]
            assert pressure.fetches == []  # none of these asked for bytes


async def test_agent_that_never_completes_its_list_misses_the_deadline() -> None:
    pressure = FakePressureService({"p1": {"heap": b"x"}}, never_complete=True)
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=0.5) as proxy, pod(proxy, "data-0", pressure) as a:
            r = await http_get(proxy.http_url + "/pressure-profiles")
            assert r.status == 200 and r.json() == []
            assert r.headers["x-fodc-agents-missed"] == a.agent_id
            d = await http_get(proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            assert d.status == 404 and "within" in d.json()["error"]


@pytest.mark.parametrize("knobs, reason", [
    ({"oversized_chunk": True}, "over the limit"),
    ({"error": "evicted"}, "evicted"),
    ({"wrong_request_id": True}, "no chunk within"),
    ({"hang_after_chunks": 0}, "no chunk within"),
])
async def test_download_failing_before_the_first_byte_is_404(knobs: dict[str, Any],
                                                            reason: str) -> None:
    pressure = FakePressureService({"p1": {"heap": _blob(3 << 20)}}, **knobs)
    with trio.fail_after(30):
        async with open_proxy(profile_chunk_timeout=0.5) as proxy, \
                pod(proxy, "data-0", pressure) as a:
            d = await http_get(proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            assert d.status == 404
            assert reason in d.json()["error"]
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(PressureProfilesStream)
            assert stream._fetches == {}
            if knobs.get("wrong_request_id"):
                assert stream.unasked_chunks >= 1


async def _open_download(url: str) -> tuple[trio.SocketStream, h11.Connection, h11.Response]:
    parts = urlsplit(url)
    stream = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    conn = h11.Connection(h11.CLIENT)
    await stream.send_all(conn.send(h11.Request(method="GET", target=parts.path, headers=[
        ("Host", "x"), ("Connection", "close")])) + conn.send(h11.EndOfMessage()))
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Response):
            return stream, conn, event


async def _read(stream: trio.SocketStream, conn: h11.Connection, at_least: int) -> int:
    got = 0
    while got < at_least:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(65536))
        elif isinstance(event, h11.Data):
            got += len(event.data)
        else:
            break
    return got


async def test_client_leaving_mid_download_cancels_the_agent_and_nothing_leaks() -> None:
    pressure = FakePressureService({"p1": {"heap": 64 << 20}}, chunk_delay=0.01)
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure) as a:
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(PressureProfilesStream)
            sock, conn, resp = await _open_download(
                proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            assert resp.status_code == 200
            assert await _read(sock, conn, 2 << 20) >= 2 << 20
            await sock.aclose()  # the HTTP client goes away
            await wait_for(lambda: pressure.cancels != [])
            assert pressure.cancels == [pressure.fetches[0].request_id]
            assert stream._fetches == {}
            assert pressure.fetches_done == 0
            assert pressure.bytes_sent < 64 << 20
            # The stream still serves: a new listing works.
            assert len((await http_get(proxy.http_url + "/pressure-profiles")).json()) == 1


async def test_upstream_style_agent_ignoring_cancel_has_its_chunks_dropped() -> None:
    pressure = FakePressureService({"p1": {"heap": 8 << 20}}, serve_cancel=False,
                                   chunk_delay=0.01)
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure) as a:
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(PressureProfilesStream)
            sock, conn, _ = await _open_download(
                proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            await _read(sock, conn, 1)
            await sock.aclose()
            await wait_for(lambda: pressure.fetches_done == 1)  # it sent everything anyway
            await wait_for(lambda: stream._abandoned == {})  # forgotten at its last chunk
            assert stream.unasked_chunks >= 1 and pressure.cancels


async def test_slow_client_back_pressures_the_agent() -> None:
    # The proxy holds at most FETCH_QUEUE chunks per download: while the HTTP client reads
    # nothing, the agent cannot get far ahead (gRPC flow control stops it), whatever the size.
    total = 48 << 20
    pressure = FakePressureService({"p1": {"heap": total}})
    with trio.fail_after(60):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure) as a:
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(PressureProfilesStream)
            sock, conn, _ = await _open_download(
                proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            await wait_for(lambda: pressure.bytes_sent >= 4 << 20)
            # Let it run as far as it can while nobody reads.
            stalled = -1
            while stalled != pressure.bytes_sent:
                stalled = pressure.bytes_sent
                await trio.sleep(0.3)
            assert stalled < total // 2, f"the agent sent {stalled} bytes to a client reading none"
            (fetch,) = stream._fetches.values()
            assert fetch.peak_queued <= 1
            got = 0
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(await sock.receive_some(1 << 20))
                elif isinstance(event, h11.Data):
                    got += len(event.data)
                elif isinstance(event, h11.EndOfMessage):
                    break
            await sock.aclose()
            assert got == total


async def test_agent_hanging_mid_download_truncates_the_body() -> None:
    pressure = FakePressureService({"p1": {"heap": 8 << 20}}, hang_after_chunks=2)
    with trio.fail_after(30):
        async with open_proxy(profile_chunk_timeout=0.5) as proxy, \
                pod(proxy, "data-0", pressure) as a:
            with pytest.raises(h11.RemoteProtocolError):
                await http_get(proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(PressureProfilesStream)
            assert stream._fetches == {}


async def test_agent_disconnecting_mid_download_truncates_the_body() -> None:
    pressure = FakePressureService({"p1": {"heap": 8 << 20}}, hang_after_chunks=2)
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure):
            sock, conn, resp = await _open_download(
                proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            assert resp.status_code == 200
            await _read(sock, conn, 1)
            assert pressure.call is not None
            await pressure.call._stream.close()  # type: ignore[attr-defined]
            with pytest.raises(h11.RemoteProtocolError):
                await _read(sock, conn, 1 << 40)
            await sock.aclose()


async def test_agent_disconnecting_before_the_first_byte_is_404() -> None:
    pressure = FakePressureService({"p1": {"heap": 8 << 20}}, hang_after_chunks=0)
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure):
            answers: list[Any] = []

            async def download() -> None:
                answers.append(await http_get(proxy.http_url + "/pressure-profiles/data-0/p1/heap"))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(download)
                await wait_for(lambda: pressure.fetches != [])
                assert pressure.call is not None
                await pressure.call._stream.close()  # type: ignore[attr-defined]
            (r,) = answers
            assert r.status == 404 and "stream ended" in r.json()["error"]


async def test_gauges_on_metrics_after_a_collection() -> None:
    crash = FakeCrashService([crash_record("/c/1"), crash_record("/c/2")])
    pressure = FakePressureService({"p1": {"heap": b"x"}})
    with trio.fail_after(30):
        async with open_proxy(diagnostics_refresh_interval=0.2) as proxy, \
                pod(proxy, "data-0", crash, pressure):
            # The background refresh fills the gauges without anyone asking.
            await wait_for(lambda: crash.requests >= 1 and pressure.lists >= 1)
            async def lines() -> list[str]:
                text = (await http_get(proxy.http_url + "/metrics")).text
                return [ln for ln in text.splitlines()
                        if ln.startswith(("fodc_agent_crash_records{",
                                          "fodc_agent_pressure_profiles{"))]
            while len(found := await lines()) < 2:
                await trio.sleep(0.05)
            assert any(ln.startswith("fodc_agent_crash_records{") and ln.endswith(" 2")
                       for ln in found)
            assert any(ln.startswith("fodc_agent_pressure_profiles{") and 'pod_name="data-0"'
                       in ln and ln.endswith(" 1") for ln in found)


@pytest.mark.parametrize("raw, why", [
    (b"\xff\xff\xff", "does not decode"),  # does not parse
    (b"", "none of record, list_complete, chunk"),  # parses, carries nothing
])
async def test_malformed_pressure_message_ends_only_that_stream(raw: bytes, why: str) -> None:
    from fodcproxy.errors import GrpcCode

    pressure = FakePressureService({"p1": {"heap": b"x"}})
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure) as a:
            call = pressure.call
            assert call is not None
            await call.send_raw(raw)
            await wait_for(lambda: call.status is not None)
            assert call.status is not None and call.status[0] == GrpcCode.INVALID_ARGUMENT
            assert why in call.status[1], call.status
            # The agent starts over (as upstream's does) and is served again.
            await wait_for(lambda: pressure.call is not call)
            await wait_for(lambda: proxy.proxy.hub.sessions.get(a.agent_id) is not None
                           and proxy.proxy.hub.sessions[a.agent_id].stream(
                               PressureProfilesStream) is not None)
            r = await http_get(proxy.http_url + "/pressure-profiles")
            assert len(r.json()) == 1


async def test_too_many_downloads_from_one_agent_is_503() -> None:
    pressure = FakePressureService({"p1": {"heap": 8 << 20}}, hang_after_chunks=1)
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure) as a:
            url = proxy.http_url + "/pressure-profiles/data-0/p1/heap"
            socks = [await _open_download(url) for _ in range(4)]
            assert all(resp.status_code == 200 for _, _, resp in socks)
            r = await http_get(url)
            assert r.status == 503 and "4 downloads" in r.json()["error"]
            for sock, _, _ in socks:
                await sock.aclose()
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(PressureProfilesStream)
            await wait_for(lambda: stream._fetches == {})


async def test_stalled_downloads_leave_the_budget_to_metrics() -> None:
    # Two pod agents' downloads whose clients read nothing hold their streams' queued chunks;
    # a third agent's metrics (a reply of ~600 KB, over the per-connection small allowance, so
    # it needs the shared --grpc-buffer-budget) are still collected, and a download from a third
    # pod agent is refused (503) instead of taking more of the budget.
    from fodcproxy.testing import static

    services = [FakePressureService({"p1": {"heap": 48 << 20}}) for _ in range(3)]
    series = [static(f"banyandb_big_{i}", float(i), labels={"pad": "x" * 100})
              for i in range(4000)]
    with trio.fail_after(60):
        async with open_proxy() as proxy, pod(proxy, "data-0", services[0]), \
                pod(proxy, "data-1", services[1]), pod(proxy, "data-2", services[2]), \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="10.0.0.9", port=1,
                                series=series) as liaison:
            socks = [await _open_download(f"{proxy.http_url}/pressure-profiles/data-{i}/p1/heap")
                     for i in range(2)]
            await wait_for(lambda: all(s.bytes_sent >= 4 << 20 for s in services[:2]))
            r = await http_get(proxy.http_url + "/pressure-profiles/data-2/p1/heap")
            assert r.status == 503 and "other agents" in r.json()["error"]
            m = await http_get(f"{proxy.http_url}/metrics?agent_id={liaison.agent_id}")
            assert m.status == 200
            assert m.headers["x-fodc-agents-answered"] == "1"
            assert "banyandb_big_3999" in m.text
            for sock, _, _ in socks:
                await sock.aclose()


async def test_gauges_come_soon_after_an_agent_attaches_and_after_it_reconnects() -> None:
    # The background round is an hour away: only the arrival of the agent's streams can count
    # its records; nobody calls /diagnostics or /pressure-profiles.
    crash = FakeCrashService([crash_record("/var/crash/a"), crash_record("/var/crash/b")])
    with trio.fail_after(30):
        async with open_proxy(diagnostics_refresh_interval=3600) as proxy, \
                pod(proxy, "data-0", crash) as agent:

            async def gauge() -> float | None:
                text = (await http_get(proxy.http_url + "/metrics")).text
                for line in text.splitlines():
                    if line.startswith("fodc_agent_crash_records{") and 'pod_name="data-0"' in line:
                        return float(line.rsplit(" ", 1)[1])
                return None

            while await gauge() != 2:
                await trio.sleep(0.1)
            asked = crash.requests
            first = proxy.proxy.hub.sessions[agent.agent_id]
            agent.drop()  # the connection goes; the agent registers again on a new one
            await wait_for(lambda: proxy.proxy.hub.sessions.get(agent.agent_id) not in (None, first))
            while await gauge() != 2:
                await trio.sleep(0.1)
            assert crash.requests == asked + 1  # one count per arrival, not a round of all
