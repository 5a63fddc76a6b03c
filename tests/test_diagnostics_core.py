"""The rules of crash records and pressure profiles (core.diagnostics, plain tables) and the
streams' Trio shell (fodcproxy.diagnostics) under `trio.testing.MockClock` with in-memory calls,
asserting exact virtual times."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

from fodcproxy.core.diagnostics import (
    CancelFetch,
    Chunk,
    CrashAnswer,
    CrashRecord,
    FetchCommand,
    ProfileList,
    ProfileRecord,
    attachment_name,
    chunk_problem,
    go_time,
    sanitize_filename_part,
)
from fodcproxy.core.registry import Registration, Registry
from fodcproxy.diagnostics import (
    CrashDiagnosticsStream,
    DiagnosticsSettings,
    DownloadAgents,
    FetchFailed,
    PressureProfilesStream,
    TooManyDownloads,
    attach,
    collect_crash_records,
    collect_profiles,
)
from fodcproxy.hub import AgentHub
from fodcproxy.link import StreamClosed
from fodcproxy.metrics import ProxyMetrics
from fodcproxy.testing.agentlink import MemoryAgent, MemoryCall


@pytest.mark.parametrize("ts, text", [
    (None, "0001-01-01T00:00:00Z"),
    ((0, 0), "1970-01-01T00:00:00Z"),
    ((1_790_000_000, 500_000_000), "2026-09-21T14:13:20.5Z"),
    ((1_790_000_000, 120_000_000), "2026-09-21T14:13:20.12Z"),
    ((1_790_000_000, 1), "2026-09-21T14:13:20.000000001Z"),
    ((-62135596800, 0), "0001-01-01T00:00:00Z"),
    ((10**13, 0), "0001-01-01T00:00:00Z"),  # out of range: as a missing time
])
def test_go_time(ts: Any, text: str) -> None:
    assert go_time(ts) == text


@pytest.mark.parametrize("part, safe", [
    ("data-0", "data-0"),
    ('a"b', "a_b"),
    ("a/b\\c", "a_b_c"),
    ("x\r\nSet-Cookie: y", "x__Set-Cookie__y"),
    ("ROLE_DATA", "ROLE_DATA"),
    ("é", "_"),  # one character, one underscore (as upstream, per rune)
    ("20260921T141500.000000000Z", "20260921T141500.000000000Z"),
])
def test_sanitize_filename_part(part: str, safe: str) -> None:
    assert sanitize_filename_part(part) == safe


def test_attachment_name() -> None:
    assert attachment_name("pod 1", "ROLE_DATA", "../x", "heap") == "pod_1-ROLE_DATA-.._x-heap.pprof"


@pytest.mark.parametrize("kw, problem", [
    ({}, None),
    ({"data_len": 1024 * 1024 + 64 * 1024}, None),
    ({"data_len": 1024 * 1024 + 64 * 1024 + 1}, "over the limit"),
    ({"error": "gone"}, "could not serve the profile: gone"),
    ({"profile_id": "q"}, "answered the fetch of"),
    ({"type_": "goroutine"}, "answered the fetch of"),
])
def test_chunk_problem(kw: dict[str, Any], problem: str | None) -> None:
    args: dict[str, Any] = dict(profile_id="p", type_="heap", data_len=10, error="",
                                want_profile_id="p", want_type="heap")
    args.update(kw)
    found = chunk_problem(**args)
    assert (found is None) if problem is None else (problem in (found or ""))


def rec(d: str) -> CrashRecord:
    return CrashRecord(None, "", d)


# (events, settle, deadline) -> (wake_at after the events, quiet at the end, kept dirs)
@pytest.mark.parametrize("events, settle, deadline, wake, kept", [
    ([], 0.5, 8.0, 0.5, []),
    ([(0.2, "a"), (0.4, "b")], 0.5, 8.0, 0.9, ["a", "b"]),
    ([(0.2, "a"), (0.4, "a")], 0.5, 8.0, 0.9, ["a"]),  # de-duplicated by artifact_dir
    ([(0.2, "a"), (1.9, "b")], 0.5, 2.0, 2.0, ["a", "b"]),  # capped by the deadline
])
def test_crash_answer_settles(events: list[tuple[float, str]], settle: float, deadline: float,
                              wake: float, kept: list[str]) -> None:
    answer = CrashAnswer(started=0.0, deadline=deadline, settle=settle)
    for at, d in events:
        assert answer.add(rec(d), 10, at)
    assert answer.wake_at() == pytest.approx(wake)
    assert not answer.finished(wake - 1e-6) and answer.finished(wake)
    assert answer.quiet(wake) is (wake < deadline or events[-1][0] + settle <= deadline)
    assert [r.artifact_dir for r in answer.kept] == kept


def test_crash_answer_caps() -> None:
    answer = CrashAnswer(started=0.0, deadline=8.0, settle=0.5, max_records=2, max_bytes=100)
    assert answer.add(rec("a"), 40, 0.1) and answer.add(rec("b"), 40, 0.1)
    assert answer.add(rec("a"), 50, 0.1)  # a replacement is no new record; 90 bytes
    assert not answer.add(rec("c"), 1, 0.1)
    assert answer.truncated == "more than 2 records"
    assert not answer.add(rec("b"), 60, 0.1)  # 110 bytes
    assert answer.size == 90 and answer.dropped == 2
    profiles = ProfileList(max_records=1, max_bytes=10)
    assert profiles.add(ProfileRecord("p", None), 5)
    assert not profiles.add(ProfileRecord("q", None), 5)
    assert profiles.truncated == "more than 1 records"


# -- the Trio shell, in memory, under MockClock --------------------------------------------------


class MemoryRequestCall(MemoryCall):
    """A crash or pressure call: what the hub sends waits in `sent`."""

    def __init__(self, agent: MemoryAgent, method: str) -> None:
        super().__init__(agent.connection, method)
        self._send, self.sent = trio.open_memory_channel[tuple[int, Any]](math.inf)

    async def send_request(self, request_id: int, payload: Any) -> None:
        await trio.lowlevel.checkpoint()
        if self.ended.is_set():
            raise StreamClosed("the call is over")
        self._send.send_nowait((request_id, payload))


async def pod_agent(hub: AgentHub) -> MemoryAgent:
    agent = MemoryAgent(hub, Registration.build_pod(pod_name="data-0", role="ROLE_DATA"))
    agent.register()
    return agent


def make_hub() -> AgentHub:
    return AgentHub(Registry(heartbeat_timeout=30.0, cleanup_timeout=300.0), ProxyMetrics(),
                    heartbeat_interval_seconds=10)


async def test_crash_collection_ends_after_the_settle_time(autojump_clock: Any) -> None:
    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamCrashDiagnostics")
    stream = await attach(hub, agent.agent_id, call, CrashDiagnosticsStream, DiagnosticsSettings())
    entries = hub.select(lambda m: True)
    t0 = trio.current_time()
    out: list[Any] = []

    async def ask() -> None:
        out.append(await collect_crash_records(entries, DiagnosticsSettings(settle=0.5),
                                               timeout=8.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await call.sent.receive()
        await trio.sleep(0.2)
        stream.on_record(rec("a"), 10)
        await trio.sleep(0.2)
        stream.on_record(rec("b"), 10)
    assert trio.current_time() - t0 == pytest.approx(0.9)
    (results, without), = out
    assert without == [] and results[0].complete
    assert [r.artifact_dir for r in results[0].records] == ["a", "b"]
    assert stream.latest_count == 2
    # Afterwards nothing is collected: a record is dropped and counted.
    stream.on_record(rec("late"), 10)
    assert stream.unasked == 1
    assert hub.metrics.value("fodc_proxy_dropped_replies_total") == 1


async def test_crash_collection_of_an_agent_that_never_stops_ends_at_the_deadline(
        autojump_clock: Any) -> None:
    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamCrashDiagnostics")
    stream = await attach(hub, agent.agent_id, call, CrashDiagnosticsStream, DiagnosticsSettings())
    t0 = trio.current_time()
    out: list[Any] = []

    async def ask() -> None:
        out.append(await collect_crash_records(hub.select(lambda m: True),
                                               DiagnosticsSettings(settle=0.5), timeout=2.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await call.sent.receive()
        for i in range(100):
            await trio.sleep(0.3)
            stream.on_record(rec(str(i)), 10)
            if out:
                break
    (results, _), = out
    assert trio.current_time() - t0 >= 2.0
    assert results[0].answered and not results[0].complete
    assert results[0].truncated == "still sending at the deadline"
    assert len(results[0].records) == 6  # 0.3 .. 1.8


async def test_crash_collection_fails_when_the_stream_ends(autojump_clock: Any) -> None:
    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamCrashDiagnostics")
    stream = await attach(hub, agent.agent_id, call, CrashDiagnosticsStream, DiagnosticsSettings())
    out: list[Any] = []

    async def ask() -> None:
        out.append(await collect_crash_records(hub.select(lambda m: True),
                                               DiagnosticsSettings(), timeout=8.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await call.sent.receive()
        stream.on_record(rec("a"), 10)
        hub.call_ended(stream.session, call)
    (results, _), = out
    assert not results[0].answered and "ended" in results[0].error


async def test_profile_list_through_the_tracker(autojump_clock: Any) -> None:
    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamPressureProfiles")
    stream = await attach(hub, agent.agent_id, call, PressureProfilesStream, DiagnosticsSettings())
    out: list[Any] = []

    async def ask(timeout: float) -> None:
        out.append(await collect_profiles(hub.select(lambda m: True), timeout=timeout))

    # What comes unasked is dropped and counted.
    stream.on_record(ProfileRecord("unasked", None), 10)
    stream.on_list_complete("")
    assert hub.metrics.value("fodc_proxy_dropped_replies_total") == 1
    # 1: the agent does not answer in time; 2: its late answer to 1 comes while 2 is open and is
    # dropped (the tracker's id-0 rule); then 2's own answer is delivered.
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, 1.0)
        rid1, payload = await call.sent.receive()
        assert payload is None and rid1 == 1
    (results, _), = out
    assert results[0].error == "missed the deadline"
    out.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, 5.0)
        rid2, _ = await call.sent.receive()
        stream.on_record(ProfileRecord("old", None), 10)
        stream.on_list_complete(str(rid1))
        stream.on_record(ProfileRecord("new", None), 10)
        stream.on_list_complete(str(rid2))
    (results, _), = out
    assert [r.profile_id for r in results[0].records] == ["new"]
    assert stream.latest_count == 1
    # A list_complete echoing another id fails the list.
    out.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, 5.0)
        rid3, _ = await call.sent.receive()
        stream.on_list_complete("999")
    (results, _), = out
    assert "999" in results[0].error


async def test_download_chunk_deadlines_and_cancel(autojump_clock: Any) -> None:
    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamPressureProfiles")
    stream = await attach(hub, agent.agent_id, call, PressureProfilesStream, DiagnosticsSettings())
    stream.settings = DiagnosticsSettings(chunk_timeout=30.0)

    # The agent sends nothing: the reader fails at exactly the chunk deadline.
    fetch = await stream.start_fetch("p", "heap", "/x")
    _, command = await call.sent.receive()
    assert command == FetchCommand(fetch.request_id, "p", "heap", "/x")
    t0 = trio.current_time()
    with pytest.raises(FetchFailed, match="no chunk within"):
        await stream.next_data(fetch)
    assert trio.current_time() - t0 == 30.0
    # Its late chunk is dropped, counted, and the agent is told to stop, once.
    await stream.on_chunk(Chunk(fetch.request_id, "p", "heap", b"x"))
    await stream.on_chunk(Chunk(fetch.request_id, "p", "heap", b"x"))
    assert [p for _, p in [call.sent.receive_nowait()]] == [CancelFetch(fetch.request_id)]
    with pytest.raises(trio.WouldBlock):
        call.sent.receive_nowait()
    assert stream.unasked_chunks == 2
    await stream.on_chunk(Chunk(fetch.request_id, "p", "heap", b"", last=True))
    assert stream._abandoned == {}  # forgotten at its last chunk

    # Nobody takes the chunks: the handler gives up the hand-off at the deadline (it holds at
    # most FETCH_QUEUE chunks meanwhile) and cancels.
    fetch = await stream.start_fetch("p", "heap", "/x")
    await call.sent.receive()
    t0 = trio.current_time()
    await stream.on_chunk(Chunk(fetch.request_id, "p", "heap", b"1"))  # into the channel
    await stream.on_chunk(Chunk(fetch.request_id, "p", "heap", b"2"))  # waits, then gives up
    assert trio.current_time() - t0 == 30.0
    assert fetch.peak_queued == 1
    assert call.sent.receive_nowait()[1] == CancelFetch(fetch.request_id)
    assert stream._fetches == {}

    # The stream ends mid-download: the reader fails at once with the reason.
    fetch = await stream.start_fetch("p", "heap", "/x")
    await call.sent.receive()
    await stream.on_chunk(Chunk(fetch.request_id, "p", "heap", b"1"))
    hub.call_ended(stream.session, call)
    assert await stream.next_data(fetch) == b"1"
    with pytest.raises(FetchFailed, match="ended"):
        await stream.next_data(fetch)


async def test_concurrent_crash_collections_share_one_request(autojump_clock: Any) -> None:
    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamCrashDiagnostics")
    stream = await attach(hub, agent.agent_id, call, CrashDiagnosticsStream, DiagnosticsSettings())
    out: list[Any] = []

    async def ask(timeout: float) -> None:
        out.append(await collect_crash_records(hub.select(lambda m: True),
                                               DiagnosticsSettings(settle=0.5), timeout=timeout))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, 8.0)
        await call.sent.receive()
        nursery.start_soon(ask, 8.0)
        await trio.sleep(0.1)
        stream.on_record(rec("a"), 10)
    assert len(out) == 2
    assert [[r.artifact_dir for r in res[0][0].records] for res in out] == [["a"], ["a"]]
    assert all(res[0][0].complete for res in out)
    with pytest.raises(trio.WouldBlock):
        call.sent.receive_nowait()  # one request only

    # The first caller goes away (its deadline is earlier): the one that joined asks itself.
    out.clear()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask, 0.2)
        await call.sent.receive()
        nursery.start_soon(ask, 8.0)
        await trio.sleep(0.3)  # the first one's deadline passed, it was cut
        await call.sent.receive()  # the second one's own request
        stream.on_record(rec("b"), 10)
    second = [res for res in out if res[0][0].complete]
    assert [[r.artifact_dir for r in res[0][0].records] for res in second] == [["b"]]


async def test_a_download_nobody_reads_is_swept(autojump_clock: Any) -> None:
    hub = make_hub()
    agent = await pod_agent(hub)
    call = MemoryRequestCall(agent, "/memory/StreamPressureProfiles")
    stream = await attach(hub, agent.agent_id, call, PressureProfilesStream,
                          DiagnosticsSettings(chunk_timeout=30.0))
    # Four downloads whose readers never start and whose agent never answers.
    for _ in range(4):
        await stream.start_fetch("p", "heap", "/x")
    with pytest.raises(Exception, match="4 downloads"):
        await stream.start_fetch("p", "heap", "/x")
    await trio.sleep(60.001)
    fetch = await stream.start_fetch("p", "heap", "/x")  # the stale ones were abandoned
    assert list(stream._fetches) == [fetch.request_id]
    assert len(stream._abandoned) == 4


def test_download_agents_table() -> None:
    d = DownloadAgents(2)
    assert d.acquire("a") and d.acquire("a")  # one agent's downloads share its stream
    assert d.acquire("b") and not d.acquire("c")
    d.release("a")
    assert not d.acquire("c") and d.agents == 2
    d.release("a")
    assert d.acquire("c")
    assert DownloadAgents(0).limit == 1


async def test_downloads_are_limited_to_a_few_agents_proxy_wide(autojump_clock: Any) -> None:
    hub = make_hub()
    limit = DownloadAgents(1)
    streams = []
    for name in ("data-0", "data-1"):
        agent = MemoryAgent(hub, Registration.build_pod(pod_name=name, role="ROLE_DATA"))
        agent.register()
        call = MemoryRequestCall(agent, "/memory/StreamPressureProfiles")
        streams.append((await attach(hub, agent.agent_id, call, PressureProfilesStream,
                                     DiagnosticsSettings(), limit), call))
    (first, call0), (second, _) = streams
    fetch = await first.start_fetch("p", "heap", "/x")
    await first.start_fetch("p", "goroutine", "/y")  # the same agent: its window is shared
    with pytest.raises(TooManyDownloads, match="other agents"):
        await second.start_fetch("p", "heap", "/x")
    await first.on_chunk(Chunk(fetch.request_id, "p", "heap", b"", last=True))
    first.close(fetch)
    hub.call_ended(first.session, call0)  # the other download ends with its stream
    assert limit.agents == 0
    await second.start_fetch("p", "heap", "/x")
