"""The hub with in-memory agents (`fodcproxy.testing.agentlink`): no sockets, exact virtual times.

Test policy: every test runs under `trio.testing.MockClock` (pytest-trio's `autojump_clock`), so a
time asserted is the time the hub acted, to the virtual nanosecond; the agent's side is driven by
hand (`MemoryAgent.next_request()` / `reply()`), so "answers late", "skips one", "ends mid-reply"
are single lines. Real sockets are tested elsewhere (test_grpc.py, test_http.py).
"""

from __future__ import annotations

import ast
import pathlib
import subprocess
import sys

import pytest
import trio

import fodcproxy
from fodcproxy.core.model import LATEST, TimeWindow
from fodcproxy.core.registry import AgentStatus, Registration, Registry
from fodcproxy.errors import GrpcCode, PermissionDenied
from fodcproxy.hub import AgentHub
from fodcproxy.metrics import ProxyMetrics
from fodcproxy.streams import DIGEST_SLICE
from fodcproxy.testing.agentlink import ListDigester, MemoryAgent, MemoryCall

PACKAGE = pathlib.Path(fodcproxy.__file__).parent


def reg(port: int = 1, role: str = "liaison") -> Registration:
    return Registration.build(role=role, ip="10.0.0.1", port=port)


def make_hub(**kw) -> AgentHub:
    registry = Registry(heartbeat_timeout=30.0, cleanup_timeout=300.0)
    return AgentHub(registry, ProxyMetrics(), heartbeat_interval_seconds=10, **kw)


async def agent_on(hub: AgentHub, port: int = 1) -> MemoryAgent:
    agent = MemoryAgent(hub, reg(port))
    agent.register()
    await agent.attach_metrics()
    return agent


def dropped(hub: AgentHub) -> float:
    return hub.metrics.value("fodc_proxy_dropped_replies_total")


# -- the layers ---------------------------------------------------------------------------------------


def test_hub_imports_nothing_from_rpc():
    for module in ("hub", "streams", "link", "core/tracker"):
        tree = ast.parse((PACKAGE / f"{module}.py").read_text())
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        names += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [n for n in names if n.startswith("fodcproxy.rpc")], module
    code = ("import sys, fodcproxy.hub, fodcproxy.testing.agentlink; "
            "print([m for m in sys.modules if m.startswith('fodcproxy.rpc')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PACKAGE.parent)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_the_core_tracker_knows_no_trio():
    tree = ast.parse((PACKAGE / "core" / "tracker.py").read_text())
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert not {m for m in imported if m and m.split(".")[0] == "trio"}


# -- lifecycle at exact times ---------------------------------------------------------------------


async def test_heartbeat_timeout_then_cleanup_at_exact_times(autojump_clock):
    hub = make_hub()
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        start = trio.current_time()
        agent = await agent_on(hub)
        entry = hub.registry.get(agent.agent_id)
        await trio.sleep(10.0)
        hub.heartbeat(agent.session, reg())  # moves the deadline to start + 40
        await trio.sleep_until(start + 40.0 - 1e-6)
        assert entry.status is AgentStatus.ONLINE
        await trio.sleep_until(start + 40.0)
        await trio.sleep(0)
        assert entry.status is AgentStatus.OFFLINE and entry.offline_since == start + 40.0
        await trio.sleep_until(start + 340.0 - 1e-6)
        assert hub.registry.get(agent.agent_id) is not None
        await trio.sleep_until(start + 340.0)
        await trio.sleep(0)
        assert hub.registry.get(agent.agent_id) is None
        assert agent.metrics_call.aborted.grpc_code == GrpcCode.FAILED_PRECONDITION
        assert not agent.connection.claimed
        nursery.cancel_scope.cancel()


async def test_lost_connection_is_offline_at_once_and_goodbye_removes(autojump_clock):
    hub = make_hub()
    a = await agent_on(hub, 1)
    b = await agent_on(hub, 2)
    a.disconnect()
    assert hub.registry.get(a.agent_id).status is AgentStatus.OFFLINE
    b.disconnect(goodbye=True)
    assert hub.registry.get(b.agent_id) is None
    assert b.metrics_call.aborted.grpc_code == GrpcCode.OK  # its other calls end with OK


async def test_a_stream_from_another_connection_is_refused(autojump_clock):
    hub = make_hub(attach_grace=1.0)
    victim = await agent_on(hub)
    stream = victim.stream
    thief = MemoryAgent(hub, reg())  # same identity, its own connection, never registered
    start = trio.current_time()
    with pytest.raises(PermissionDenied):
        await thief.attach_metrics()
    assert trio.current_time() - start == 1.0  # it waited the grace for a registration of its own
    assert victim.session.metrics_stream is stream and not stream.ended


async def test_attach_grace_waits_for_the_stream_then_is_up_0_at_once(autojump_clock):
    hub = make_hub(attach_grace=2.0)
    agent = MemoryAgent(hub, reg())
    agent.register()
    start = trio.current_time()
    results = []

    async def scrape():
        results.extend(await hub.collect(hub.select(lambda m: True), LATEST, timeout=8.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(scrape)
        await trio.sleep(0.5)
        await agent.attach_metrics()  # within the grace: the scrape's request goes out
        rid, window = await agent.next_request()
        assert window == LATEST
        await agent.reply(rid, ["sample"])
    assert results[0].up and list(results[0].samples) == ["sample"]
    assert trio.current_time() - start == 0.5

    late = MemoryAgent(hub, reg(2))
    late.register()
    await trio.sleep(2.0)  # the grace is over and it never opened its metrics stream
    begin = trio.current_time()
    [missing] = await hub.collect(hub.select(lambda m: m.agent_id == late.agent_id), LATEST,
                                  timeout=8.0)
    assert not missing.up and "no metrics stream" in missing.error
    assert trio.current_time() == begin  # at once, not after the whole collect timeout


# -- requests and their deadlines -----------------------------------------------------------------


async def test_a_request_times_out_exactly_at_its_deadline_and_its_late_reply_is_dropped(
        autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    start = trio.current_time()
    out = []

    async def scrape():
        out.extend(await hub.collect(hub.select(lambda m: True), LATEST, timeout=2.0))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(scrape)
        rid, _ = await agent.next_request()
        await trio.sleep_until(start + 2.0)
        await agent.reply(rid, ["too late"])  # exactly at the deadline: late
    assert trio.current_time() == start + 2.0
    assert not out[0].up and out[0].error == "missed the deadline"
    assert out[0].duration == 2.0
    assert dropped(hub) == 1

    # a reply a moment before the deadline is in time
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        out.clear()
        nursery.start_soon(scrape)
        rid, _ = await agent.next_request()
        await trio.sleep_until(start + 2.0 - 1e-6)
        await agent.reply(rid, ["just in time"])
    assert out[0].up and list(out[0].samples) == ["just in time"]


async def test_echoed_late_reply_never_answers_the_next_request(autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    out = []

    async def scrape(window=LATEST):
        out.append(await hub.collect(hub.select(lambda m: True), window, timeout=1.0))

    await scrape()  # request 1 gets no answer in time
    first, _ = await agent.next_request()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(scrape)
        second, _ = await agent.next_request()
        await agent.reply(first, ["old"])  # late: dropped
        await agent.reply(second, ["new"], more=True)
        await agent.reply(second, ["er"])
    assert [list(r.samples) for r in out[1]] == [["new", "er"]]
    assert dropped(hub) == 1


async def test_defect_1_a_joining_scrape_answers_by_its_own_deadline(autojump_clock):
    """A scrape with a short deadline joins a fan-out in flight: it answers at its own deadline
    (up 0 for the agent still pending then), while the fan-out goes on for the first scrape."""
    hub = make_hub()
    fast = await agent_on(hub, 1)
    slow = await agent_on(hub, 2)
    entries = hub.select(lambda m: True)
    start = trio.current_time()
    first, joiner = [], []

    async def scrape(out, timeout):
        out.extend(await hub.collect(entries, LATEST, timeout=timeout, key="same"))
        out.append(trio.current_time() - start)

    async def agents():
        rid, _ = await fast.next_request()
        await fast.reply(rid, ["fast"])
        rid, _ = await slow.next_request()
        await trio.sleep_until(start + 3.0)
        await slow.reply(rid, ["slow"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(agents)
        nursery.start_soon(scrape, first, 8.0)
        await trio.sleep(0.5)
        nursery.start_soon(scrape, joiner, 0.75)  # e.g. a 1 s scrape timeout header
    *results, elapsed = joiner
    assert elapsed == 1.25  # its own deadline, not the first scrape's
    assert [r.up for r in results] == [True, False]
    assert results[1].error == "missed the deadline"
    *results, elapsed = first
    assert elapsed == 3.0 and [r.up for r in results] == [True, True]
    assert list(results[1].samples) == ["slow"]
    assert hub.metrics.value("fodc_proxy_shared_collections_total") == 1
    assert slow.metrics_call.requests.statistics().current_buffer_used == 0  # one request only, shared


async def test_a_joiner_with_a_longer_deadline_gets_the_shared_answer(autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    entries = hub.select(lambda m: True)
    start = trio.current_time()
    outs: list[list] = [[], []]

    async def scrape(out, timeout):
        out.extend(await hub.collect(entries, LATEST, timeout=timeout, key="k"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(scrape, outs[0], 1.0)
        await trio.sleep(0.1)
        nursery.start_soon(scrape, outs[1], 8.0)
        await agent.next_request()  # never answered
    assert trio.current_time() - start == 1.0
    assert outs[0] is not outs[1] and outs[0] == outs[1]


# -- agents without request ids ------------------------------------------------------------------


async def test_defect_2_an_id_less_agent_that_skips_a_request_recovers(autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    ups = []

    async def scrape(answer):
        async with trio.open_nursery() as nursery:
            async def respond():
                await agent.next_request()
                if answer:
                    await agent.reply(0, ["v"])  # upstream's agent: no request id
            nursery.start_soon(respond)
            [r] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=1.0)
            ups.append(r.up)
        await trio.sleep(10.0)

    await scrape(True)
    await scrape(False)  # the agent skips this one
    for _ in range(4):
        await scrape(True)
    # the first reply after the skip may be the skipped request's, late: dropped in doubt
    assert ups == [True, False, False, True, True, True]
    assert dropped(hub) == 1


# -- stream ends, replacements and refusals ---------------------------------------------------------


async def test_stream_end_mid_reply_fails_the_request_at_once(autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        async def agent_side():
            rid, _ = await agent.next_request()
            await agent.reply(rid, ["part"], more=True)
            await trio.sleep(0.25)
            agent.end_metrics()
        nursery.start_soon(agent_side)
        [r] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5.0)
    assert not r.up and "StreamMetrics stream ended" in r.error
    assert trio.current_time() - start == 0.25


async def test_the_last_chunk_counts_when_the_agent_leaves_while_it_is_digested(autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    items = list(range(3 * DIGEST_SLICE + 7))  # digested in slices, checkpoints between them
    first_slice = trio.Event()

    class Watched(ListDigester):
        def digest(self, part, out):
            super().digest(part, out)
            first_slice.set()

    agent.metrics_call.digester = Watched()
    async with trio.open_nursery() as nursery:
        async def agent_side():
            rid, _ = await agent.next_request()
            async with trio.open_nursery() as inner:
                inner.start_soon(agent.reply, rid, items)
                await first_slice.wait()
                agent.disconnect(goodbye=True)  # the stream ends while the chunk is digested
        nursery.start_soon(agent_side)
        [r] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5.0)
    assert r.up, r.error
    assert list(r.samples) == items


async def test_a_replaced_stream_fails_its_request_and_the_new_one_answers(autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    old_call = agent.metrics_call
    async with trio.open_nursery() as nursery:
        async def agent_side():
            await agent.next_request()
            await agent.attach_metrics()  # same connection: replaces the stream
        nursery.start_soon(agent_side)
        [r] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5.0)
    assert not r.up and "replaced" in r.error
    assert old_call.aborted.grpc_code == GrpcCode.ABORTED
    async with trio.open_nursery() as nursery:
        async def answer():
            rid, _ = await agent.next_request()
            await agent.reply(rid, ["fresh"])
        nursery.start_soon(answer)
        [r] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5.0)
    assert r.up and list(r.samples) == ["fresh"]


async def test_a_reply_over_the_byte_cap_is_refused_and_its_rest_dropped(autojump_clock):
    hub = make_hub(max_reply_bytes=100)
    agent = await agent_on(hub)
    window = TimeWindow(start=1.0, end=2.0)
    async with trio.open_nursery() as nursery:
        async def agent_side():
            rid, asked = await agent.next_request()
            assert asked == window
            await agent.reply(rid, ["a"], more=True, size=60)
            await agent.reply(rid, ["b"], more=True, size=60)  # over the cap: refused
            await agent.reply(rid, ["c"], size=10)  # the rest is dropped, counted once
        nursery.start_soon(agent_side)
        [r] = await hub.collect(hub.select(lambda m: True), window, timeout=5.0)
    assert not r.up and "--max-reply-bytes=100" in r.error
    assert hub.metrics.value("fodc_proxy_registration_refusals_total",
                             {"reason": "reply_bytes"}) == 1
    assert dropped(hub) == 1


async def test_offline_agents_are_up_0_without_being_asked(autojump_clock):
    hub = make_hub()
    agent = await agent_on(hub)
    agent.disconnect()
    start = trio.current_time()
    [r] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5.0)
    assert not r.up and r.error == "offline" and trio.current_time() == start
    assert agent.metrics_call.requests.statistics().current_buffer_used == 0


async def test_memory_call_records_its_abort():
    call = MemoryCall(MemoryAgent(make_hub(), reg()).connection)
    call.abort(PermissionDenied("no"))
    call.abort(PermissionDenied("again"))
    assert call.aborted.message == "no" and call.ended.is_set()
