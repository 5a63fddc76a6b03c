"""The lifecycle and registry streams and the collection, hub side, without sockets (issue 16).

Every test runs under `trio.testing.MockClock` (pytest-trio's `autojump_clock`): deadlines are
asserted at their exact virtual times. Agents are `fodcproxy.testing.agentlink.MemoryAgent`s
whose lifecycle and registry calls record what the hub asks (`MemoryRequestCall` below).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio

from fodcproxy.core.lifecycle import AgentGroup, AgentLifecycle
from fodcproxy.core.registry import Registration, Registry
from fodcproxy.core.schema import (
    GroupReport,
    NodeFingerprint,
    ObjectConsistency,
    RegistryChunk,
    RegistryObject,
)
from fodcproxy.hub import AgentHub
from fodcproxy.lifecycle import (
    LifecycleCollector,
    LifecycleReportStream,
    RegistryStream,
)
from fodcproxy.link import StreamClosed
from fodcproxy.metrics import ProxyMetrics
from fodcproxy.streams import AgentGone
from fodcproxy.testing.agentlink import MemoryAgent, MemoryCall


class MemoryRequestCall(MemoryCall):
    """A report stream's call: the hub's requests wait in `requests`."""

    def __init__(self, agent: MemoryAgent, method: str) -> None:
        super().__init__(agent.connection, method)
        self._send, self.requests = trio.open_memory_channel[int](math.inf)

    async def send_request(self, request_id: int, payload: Any) -> None:
        await trio.lowlevel.checkpoint()
        if self.ended.is_set():
            raise StreamClosed("the call is over")
        self._send.send_nowait(request_id)


def make_hub() -> AgentHub:
    return AgentHub(Registry(heartbeat_timeout=30.0, cleanup_timeout=300.0), ProxyMetrics(),
                    heartbeat_interval_seconds=10)


async def pod(hub: AgentHub, name: str, role: str = "ROLE_DATA") -> MemoryAgent:
    agent = MemoryAgent(hub, Registration.build_pod(pod_name=name, role=role))
    agent.register()
    return agent


async def attach(hub: AgentHub, agent: MemoryAgent, kind: type) -> tuple[Any, MemoryRequestCall]:
    call = MemoryRequestCall(agent, f"/memory/{kind.__name__}")
    return await hub.attach(agent.agent_id, call, kind), call


def chunk(group: str, *objects: tuple[str, str, int], error: str = "") -> Any:
    return lambda: RegistryChunk(group, tuple(RegistryObject(*o) for o in objects), error)


def never() -> Any:
    raise AssertionError("a message nobody waits for must not be decoded")


# ---- RegistryStream --------------------------------------------------------------------------

async def test_registry_reply_is_every_chunk_up_to_done(autojump_clock):
    hub = make_hub()
    stream, call = await attach(hub, await pod(hub, "l-0", "ROLE_LIAISON"), RegistryStream)
    got: list = []

    async def ask() -> None:
        got.append(await stream.request(trio.current_time() + 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await call.requests.receive()
        stream.on_message(10, False, chunk("g", ("group", "g", 1)))
        stream.on_message(10, False, chunk("g", ("stream", "s", 2)))
        stream.on_message(2, True, lambda: None)  # a bare done
    assert got == [[RegistryChunk("g", (RegistryObject("group", "g", 1),)),
                     RegistryChunk("g", (RegistryObject("stream", "s", 2),))]]
    stream.on_message(10, True, never)  # after the reply: nobody waits, not decoded


async def test_registry_reply_under_way_when_asked_is_skipped_up_to_its_done(autojump_clock):
    hub = make_hub()
    stream, call = await attach(hub, await pod(hub, "l-0", "ROLE_LIAISON"), RegistryStream)
    stream.on_message(10, False, never)  # unasked, and its done has not come yet
    got: list = []

    async def ask() -> None:
        got.append(await stream.request(trio.current_time() + 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await call.requests.receive()
        stream.on_message(10, False, never)  # the old reply goes on
        stream.on_message(2, True, never)  # ... and ends: not the answer
        stream.on_message(10, False, chunk("fresh", ("group", "fresh", 1)))
        stream.on_message(2, True, lambda: None)
    assert got == [[RegistryChunk("fresh", (RegistryObject("group", "fresh", 1),))]]


async def test_registry_reply_without_done_fails_at_the_deadline_and_its_tail_is_skipped(
        autojump_clock):
    hub = make_hub()
    stream, call = await attach(hub, await pod(hub, "l-0", "ROLE_LIAISON"), RegistryStream)
    start = trio.current_time()
    with trio.move_on_at(start + 5) as waited:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(stream.request, start + 5)
            await call.requests.receive()
            stream.on_message(10, False, chunk("g", ("group", "g", 1)))
    assert waited.cancelled_caught and trio.current_time() == start + 5
    got: list = []

    async def ask() -> None:
        got.append(await stream.request(trio.current_time() + 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await call.requests.receive()
        stream.on_message(10, False, never)  # the first reply's tail
        stream.on_message(2, True, never)
        stream.on_message(10, True, chunk("g", ("group", "g", 9)))  # chunk and done in one
    assert got == [[RegistryChunk("g", (RegistryObject("group", "g", 9),))]]


async def test_registry_reply_over_the_byte_cap_is_refused_and_the_rest_dropped(autojump_clock):
    hub = make_hub()
    stream, call = await attach(hub, await pod(hub, "l-0", "ROLE_LIAISON"), RegistryStream)
    stream.max_reply_bytes = 100
    async with trio.open_nursery() as nursery:
        async def ask() -> None:
            with pytest.raises(AgentGone, match=r"over --max-reply-bytes=100 bytes"):
                await stream.request(trio.current_time() + 10)

        nursery.start_soon(ask)
        await call.requests.receive()
        stream.on_message(60, False, chunk("g", ("group", "g", 1)))
        stream.on_message(60, False, never)  # 120 > 100: refused before decoding
    stream.on_message(60, False, never)  # the rest of the refused reply
    stream.on_message(1, True, never)
    assert stream.mid_reply is False and not stream.ended


async def test_registry_chunk_that_does_not_decode_fails_the_request_and_raises(autojump_clock):
    hub = make_hub()
    stream, call = await attach(hub, await pod(hub, "l-0", "ROLE_LIAISON"), RegistryStream)

    def bad() -> Any:
        raise ValueError("bad utf-8")

    async with trio.open_nursery() as nursery:
        async def ask() -> None:
            with pytest.raises(AgentGone, match="malformed registry chunk: bad utf-8"):
                await stream.request(trio.current_time() + 10)

        nursery.start_soon(ask)
        await call.requests.receive()
        with pytest.raises(ValueError):
            stream.on_message(10, False, bad)


# ---- LifecycleReportStream -------------------------------------------------------------------

def answer(agent_id: str, pod_name: str, *groups: AgentGroup) -> Any:
    return lambda: AgentLifecycle(agent_id, pod_name, (), groups)


async def test_lifecycle_reply_while_waiting_answers_unasked_and_late_ones_are_dropped(
        autojump_clock):
    hub = make_hub()
    agent = await pod(hub, "d-0")
    stream, call = await attach(hub, agent, LifecycleReportStream)
    stream.on_message(10, never)  # unasked
    start = trio.current_time()
    with trio.move_on_at(start + 3):
        await stream.request(start + 3)  # the agent skips this one
    assert trio.current_time() == start + 3
    stream.on_message(10, never)  # late: nobody waits
    got: list = []

    async def ask() -> None:
        got.append(await stream.request(trio.current_time() + 10))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ask)
        await call.requests.receive()
        await call.requests.receive()
        stream.on_message(10, answer(agent.agent_id, "d-0"))
    # the answer's decoder (called by the collection, in a thread)
    assert [a().pod_name for a in got] == ["d-0"]  # the skipped request costs no later round


async def test_lifecycle_reply_over_the_cap_fails_its_request(autojump_clock):
    hub = make_hub()
    stream, call = await attach(hub, await pod(hub, "d-0"), LifecycleReportStream)
    stream.max_reply_bytes = 100
    async with trio.open_nursery() as nursery:
        async def ask() -> None:
            with pytest.raises(AgentGone, match="lifecycle reply of 101 bytes is over"):
                await stream.request(trio.current_time() + 10)

        nursery.start_soon(ask)
        await call.requests.receive()
        stream.on_message(101, never)


# ---- LifecycleCollector ----------------------------------------------------------------------

def sw(node: str, fp: int) -> AgentGroup:
    report = GroupReport("sw", (ObjectConsistency("group", "sw", node_fingerprints=(
        NodeFingerprint(node, fp, fp),)),))
    return AgentGroup("sw", {"name": "sw"}, (), (), report)


async def serve_lifecycle(stream: LifecycleReportStream, call: MemoryRequestCall,
                          make: Any) -> None:
    async for _ in call.requests:
        stream.on_message(10, make)


async def serve_registry(stream: RegistryStream, call: MemoryRequestCall, fp: int) -> None:
    async for _ in call.requests:
        stream.on_message(10, False, chunk("sw", ("group", "sw", fp)))
        stream.on_message(2, True, lambda: None)


async def test_collection_ends_at_its_deadline_and_judges_with_the_silent_agent(autojump_clock):
    hub = make_hub()
    liaison, d0, quiet = (await pod(hub, "l-0", "ROLE_LIAISON"), await pod(hub, "d-0"),
                          await pod(hub, "d-1"))
    collector = LifecycleCollector(hub, hub.registry, timeout=7.0)
    async with trio.open_nursery() as nursery:
        for agent, node in ((liaison, "l-0"), (d0, "d-0")):
            s, c = await attach(hub, agent, LifecycleReportStream)
            nursery.start_soon(serve_lifecycle, s, c, answer(agent.agent_id, node, sw(node, 1)))
        await attach(hub, quiet, LifecycleReportStream)  # asked, never answers
        rs, rc = await attach(hub, liaison, RegistryStream)
        nursery.start_soon(serve_registry, rs, rc, 1)
        start = trio.current_time()
        entries = hub.select(lambda meta: True)
        first = await collector.collect(entries, everyone=True)
        assert trio.current_time() == start + 7.0
        assert first.summary.json() == {"total": 3, "requested": 3, "responded": 2,
                                        "not_responded": 1}
        assert first.failures == ((quiet.agent_id, "missed the deadline"),)
        assert first.registry_agent == liaison.agent_id
        (verdict,) = first.verdicts.groups
        assert verdict.status.name == "UNKNOWN"  # every node agrees, but one was silent
        assert collector.latest is first.verdicts and collector.collections == 1
        # a filtered collection answers, but leaves `latest` and the streaks alone
        only = await collector.collect([e for e in entries if e.agent_id == d0.agent_id],
                                       everyone=False)
        assert only.verdicts.groups[0].status.name == "CONSISTENT"
        assert collector.latest is first.verdicts and collector.collections == 1
        nursery.cancel_scope.cancel()


async def test_no_liaison_means_no_registry_truth(autojump_clock):
    hub = make_hub()
    d0 = await pod(hub, "d-0")
    collector = LifecycleCollector(hub, hub.registry, timeout=7.0)
    async with trio.open_nursery() as nursery:
        s, c = await attach(hub, d0, LifecycleReportStream)
        nursery.start_soon(serve_lifecycle, s, c, answer(d0.agent_id, "d-0", sw("d-0", 1)))
        # a data node's registry stream is never asked: only liaisons serve the registry
        rs, rc = await attach(hub, d0, RegistryStream)
        result = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert result.registry.fatal == ("no schema-serving (liaison) agent available to read "
                                         "the registry")
        assert result.verdicts.errors_of("sw") == (
            "registry unavailable: no schema-serving (liaison) agent available to read the "
            "registry",)
        assert rc.requests.statistics().current_buffer_used == 0
        nursery.cancel_scope.cancel()


async def test_an_agent_that_answered_before_and_is_now_offline_keeps_groups_unknown(
        autojump_clock):
    """Beyond upstream (which counts only the agents it could ask): a node lost since the last
    collection is missing evidence, not a node without data."""
    hub = make_hub()
    liaison, d0 = await pod(hub, "l-0", "ROLE_LIAISON"), await pod(hub, "d-0")
    collector = LifecycleCollector(hub, hub.registry, timeout=7.0)
    async with trio.open_nursery() as nursery:
        for agent, node in ((liaison, "l-0"), (d0, "d-0")):
            s, c = await attach(hub, agent, LifecycleReportStream)
            nursery.start_soon(serve_lifecycle, s, c, answer(agent.agent_id, node, sw(node, 1)))
        rs, rc = await attach(hub, liaison, RegistryStream)
        nursery.start_soon(serve_registry, rs, rc, 1)
        first = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert first.verdicts.groups[0].status.name == "CONSISTENT"
        d0.disconnect()  # lost without a goodbye: offline, still registered
        second = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert second.summary.json() == {"total": 2, "requested": 1, "responded": 1,
                                         "not_responded": 0}  # upstream's counts
        assert second.absent == (d0.agent_id,)
        (verdict,) = second.verdicts.groups
        assert verdict.status.name == "UNKNOWN"
        assert [c.value for c in verdict.unknown_causes] == ["agents-silent"]
        # once it is removed from the registry, it is forgotten
        hub.remove(d0.agent_id, reason="test")
        third = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert third.absent == () and third.verdicts.groups[0].status.name == "CONSISTENT"
        nursery.cancel_scope.cancel()


async def test_an_answer_that_does_not_decode_is_not_responded(autojump_clock):
    hub = make_hub()
    d0 = await pod(hub, "d-0")
    collector = LifecycleCollector(hub, hub.registry, timeout=7.0)

    def bad() -> Any:
        raise ValueError("not lifecycle data")

    async with trio.open_nursery() as nursery:
        s, c = await attach(hub, d0, LifecycleReportStream)
        nursery.start_soon(serve_lifecycle, s, c, bad)
        result = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert result.failures == ((d0.agent_id, "malformed lifecycle reply: not lifecycle data"),)
        assert result.summary.responded == 0
        assert not s.ended  # the stream stays for the next collection
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("goodbye", [True, False])
async def test_an_agent_registered_again_without_the_lifecycle_stream_is_not_missing(
        autojump_clock, goodbye):
    """An agent restarted with lifecycle off (--lifecycle-port 0, or an address agent of ours
    after this default changed) registers again under the same agent id and opens no
    StreamLifecycle. It is then an agent without lifecycle data, as one that never had the
    stream: counted absent for answering before, it made every group UNKNOWN for as long as it
    stayed registered. Until attach_grace after its registration it may still open the stream,
    and counts as missing meanwhile."""
    hub = make_hub()
    liaison, d0 = await pod(hub, "l-0", "ROLE_LIAISON"), await pod(hub, "d-0")
    collector = LifecycleCollector(hub, hub.registry, timeout=7.0)
    async with trio.open_nursery() as nursery:
        for agent, node in ((liaison, "l-0"), (d0, "d-0")):
            s, c = await attach(hub, agent, LifecycleReportStream)
            nursery.start_soon(serve_lifecycle, s, c, answer(agent.agent_id, node, sw(node, 1)))
        rs, rc = await attach(hub, liaison, RegistryStream)
        nursery.start_soon(serve_registry, rs, rc, 1)
        first = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert first.verdicts.groups[0].status.name == "CONSISTENT"
        d0.disconnect(goodbye=goodbye)
        await trio.sleep(1.0)
        again = MemoryAgent(hub, d0.registration)
        again.register()  # the same agent id; no StreamLifecycle this time
        soon = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert soon.absent == (d0.agent_id,)  # within attach_grace: it may still open it
        await trio.sleep(hub.attach_grace)
        later = await collector.collect(hub.select(lambda meta: True), everyone=True)
        assert later.absent == ()
        assert later.verdicts.groups[0].status.name == "CONSISTENT"
        nursery.cancel_scope.cancel()
