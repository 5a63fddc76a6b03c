"""Findings of the adversarial review of the proxy's side of crash records and pressure
profiles (review3): each test failed before its fix."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import h11
import pytest
import trio

from fodcproxy.testing import open_proxy
from fodcproxy.testing.diagnostics import FakePressureService
from fodcproxy.testing.http import http_get, http_request
from helpers import wait_for
from test_diagnostics import _blob, pod


async def _http10_get(url: str) -> tuple[bytes, bytes]:
    """GET `url` as an HTTP/1.0 client: the body ends when the server closes the connection
    (no chunked encoding), so only a Content-Length tells a cut body from a whole one."""
    parts = urlsplit(url)
    sock = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    await sock.send_all(f"GET {parts.path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    out = b""
    while data := await sock.receive_some(1 << 20):
        out += data
    await sock.aclose()
    head, _, body = out.partition(b"\r\n\r\n")
    return head.lower(), body


async def test_a_cut_download_is_detectable_without_chunked_encoding() -> None:
    # The agent hangs after 2 of 8 chunks: the body is cut. An HTTP/1.0 client (or anything
    # reading to the connection's end) could not tell it from a whole profile without a
    # Content-Length: the listed size of the file.
    size = 8 << 20
    pressure = FakePressureService({"p1": {"heap": size}}, hang_after_chunks=2)
    with trio.fail_after(30):
        async with open_proxy(profile_chunk_timeout=0.5) as proxy, pod(proxy, "data-0", pressure):
            head, body = await _http10_get(proxy.http_url + "/pressure-profiles/data-0/p1/heap")
            assert head.startswith(b"http/1.1 200")
            assert f"content-length: {size}".encode() in head
            assert len(body) < size


@pytest.mark.parametrize("listed_delta", [+1000, -1000])
async def test_a_download_whose_bytes_differ_from_the_listed_size_is_cut(
        listed_delta: int) -> None:
    # The agent lists one size and sends another (the file changed, or a lying agent): the
    # client must not get a body that looks whole. Fewer bytes: cut short of Content-Length;
    # more: cut at Content-Length, never past it.
    data = _blob((2 << 20) + 5)
    pressure = FakePressureService({"p1": {"heap": data}})
    pressure.profiles["p1"].record.profiles[0].size_bytes = len(data) + listed_delta
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure):
            url = proxy.http_url + "/pressure-profiles/data-0/p1/heap"
            with pytest.raises(h11.RemoteProtocolError):
                await http_get(url)
            head, body = await _http10_get(url)
            assert f"content-length: {len(data) + listed_delta}".encode() in head
            assert len(body) < len(data) + listed_delta


async def test_head_of_a_download_names_its_length() -> None:
    pressure = FakePressureService({"p1": {"heap": b"x" * 1234}})
    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", pressure):
            url = proxy.http_url + "/pressure-profiles/data-0/p1/heap"
            head = await http_request("HEAD", url)
            assert head.status == 200 and head.headers["content-length"] == "1234"
            full = await http_get(url)
            assert full.status == 200 and full.body == b"x" * 1234
            assert full.headers["content-length"] == "1234"


@pytest.mark.parametrize("path", ["/diagnostics", "/pressure-profiles"])
async def test_a_big_answer_is_rendered_in_steps(monkeypatch: pytest.MonkeyPatch,
                                                 path: str) -> None:
    # An agent's answer may hold up to --max-reply-bytes of records (256 MiB: a second or more
    # of JSON encoding). The body is built a record at a time with the event loop's turns in
    # between, so /health and the gRPC side are not starved. Seen here: another task runs
    # between the records' renderings.
    from fodcproxy.http import diagnostics as http_diagnostics
    from fodcproxy.testing.diagnostics import FakeCrashService, crash_record

    ticks = 0
    seen: list[int] = []
    name = "crash_record_json" if path == "/diagnostics" else "profile_record_json"
    real = getattr(http_diagnostics, name)

    def watched(*args: object, **kwargs: object) -> object:
        seen.append(ticks)
        return real(*args, **kwargs)

    monkeypatch.setattr(http_diagnostics, name, watched)
    service = (FakeCrashService([crash_record(f"/c/{i}") for i in range(5)])
               if path == "/diagnostics"
               else FakePressureService({f"p{i}": {"heap": b"x"} for i in range(5)}))

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await trio.sleep(0)

    with trio.fail_after(30):
        async with open_proxy() as proxy, pod(proxy, "data-0", service):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(tick)
                r = await http_get(proxy.http_url + path)
                nursery.cancel_scope.cancel()
            assert r.status == 200 and len(r.json()) == 5
            # (Trio orders the runnable tasks of a turn at random: the ticker may run just
            # before one rendering and just after the next; never twice in a row so.)
            assert len(seen) == 5 and seen[-1] - seen[0] >= 2, seen


async def test_an_answer_cut_at_the_deadline_does_not_lower_the_crash_gauge() -> None:
    # fodc_agent_crash_records counts the records of the agent's latest answer. An answer cut
    # at the deadline (the agent still sending: a busy node) holds only some of them: taken as
    # the count, the gauge would drop and rise again at the next full answer, and an alert on
    # its increase would fire for no new crash. A cut answer only ever raises it (so a first
    # occurrence still counts when the agent is slow).
    from fodcproxy.diagnostics import CrashDiagnosticsStream
    from fodcproxy.testing.diagnostics import FakeCrashService, crash_record

    crash = FakeCrashService([crash_record(f"/c/{i}") for i in range(20)])
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=1.0, diagnostics_settle=0.4) as proxy, \
                pod(proxy, "data-0", crash) as a:
            stream = proxy.proxy.hub.sessions[a.agent_id].stream(CrashDiagnosticsStream)
            assert stream is not None
            r = await http_get(proxy.http_url + "/diagnostics")
            assert len(r.json()) == 20 and stream.latest_count == 20
            crash.gap = 0.3  # now it is still sending at the deadline
            r = await http_get(proxy.http_url + "/diagnostics")
            assert 0 < len(r.json()) < 20 and "x-fodc-agents-incomplete" in r.headers
            assert stream.latest_count == 20


@pytest.mark.parametrize("ts, text", [
    # An agent's Timestamp with nanos outside [0, 1e9) (the proto does not stop it): read as
    # Go's time.Unix(seconds, nanos) does, normalized, never as invalid RFC 3339 text.
    ((0, -1), "1969-12-31T23:59:59.999999999Z"),
    ((0, 1_500_000_000), "1970-01-01T00:00:01.5Z"),
    ((10, -2_000_000_000), "1970-01-01T00:00:08Z"),
])
def test_go_time_normalizes_out_of_range_nanos(ts: tuple[int, int], text: str) -> None:
    from fodcproxy.core.diagnostics import go_time

    assert go_time(ts) == text


async def test_empty_chunks_do_not_keep_a_download_alive() -> None:
    # The per-chunk deadline is for data: an agent that sends empty chunks (not last) forever
    # would otherwise hold the download, its HTTP client and a download slot with no end.
    pressure = FakePressureService({"p1": {"heap": 8 << 20}}, empty_after_chunks=1,
                                   chunk_delay=0.05)
    with trio.fail_after(30):
        async with open_proxy(profile_chunk_timeout=0.5) as proxy, \
                pod(proxy, "data-0", pressure) as a:
            with pytest.raises(h11.RemoteProtocolError):
                await http_get(proxy.http_url + "/pressure-profiles/data-0/p1/heap", timeout=5)
            from fodcproxy.diagnostics import PressureProfilesStream

            stream = proxy.proxy.hub.sessions[a.agent_id].stream(PressureProfilesStream)
            assert stream is not None and stream._fetches == {}
            # told to stop at its next (empty) chunk
            await wait_for(lambda: pressure.cancels == [pressure.fetches[0].request_id])


async def test_concurrent_listings_of_a_slow_agent_share_one_list() -> None:
    # Several console viewers (and the background refresh) ask GET /pressure-profiles at about
    # the same time. Each used to wait for the previous one's list (one request at a time per
    # stream): with an agent answering in 0.3 s and a 1 s deadline, the fourth and later
    # callers reported it as missed. A caller that comes while a list is in progress takes its
    # answer, as crash collections do.
    pressure = FakePressureService({"p1": {"heap": b"x"}}, list_delay=0.3)
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=1.0) as proxy, pod(proxy, "data-0", pressure):
            answers: list[Any] = []

            async def ask() -> None:
                answers.append(await http_get(proxy.http_url + "/pressure-profiles"))

            async with trio.open_nursery() as nursery:
                for _ in range(6):
                    nursery.start_soon(ask)
            assert [len(r.json()) for r in answers] == [1] * 6
            assert all("x-fodc-agents-missed" not in r.headers for r in answers)
            assert pressure.lists <= 2


async def test_crash_collections_asked_at_the_same_moment_share_one_request(
        autojump_clock: Any) -> None:
    # Two callers in the same turn of the event loop (the console and the background refresh,
    # say): the second used to queue behind the first's lock and then ask again, taking a
    # second settle time; it joins the first's collection instead.
    from fodcproxy.diagnostics import (
        CrashDiagnosticsStream,
        DiagnosticsSettings,
        attach,
        collect_crash_records,
    )
    from test_diagnostics_core import MemoryRequestCall, make_hub, pod_agent, rec

    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamCrashDiagnostics")
    stream = await attach(hub, agent.agent_id, call, CrashDiagnosticsStream,
                          DiagnosticsSettings())
    out: list[Any] = []

    async def ask() -> None:
        out.append(await collect_crash_records(hub.select(lambda m: True),
                                               DiagnosticsSettings(settle=0.5), timeout=8.0))

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        nursery.start_soon(ask)
        await call.sent.receive()
        stream.on_record(rec("a"), 10)
    assert [[r.artifact_dir for r in res[0][0].records] for res in out] == [["a"], ["a"]]
    with pytest.raises(trio.WouldBlock):
        call.sent.receive_nowait()  # one request only
    assert trio.current_time() - start < 1.0
