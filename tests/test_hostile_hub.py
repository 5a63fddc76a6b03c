"""Hostile clients on the gRPC port, seen from the hub: hijack, size caps, lock-out, slow registration.

Test policy (as in conftest.py): real gRPC over 127.0.0.1, with grpcio as the independent attacker
where it fits; every test that touches a socket runs under `trio.fail_after`; waiting for the proxy
to reach a state is polling a condition under that guard, never a sleep that hopes; the deadline
of the registration's first message is also checked exactly under MockClock. Each test asserts
behaviour the proxy lacked before issue 11 (but the one that guards the same-connection
replacement of a metrics stream, which must keep working).
"""

from __future__ import annotations

import logging

import grpc
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.agent.client import AgentClient, AgentSpec
from fodcproxy.core.model import LATEST, Address, NodeConfig
from fodcproxy.core.registry import AgentStatus, Registry
from fodcproxy.errors import DeadlineExceeded, GrpcCode
from fodcproxy.hub import AgentHub
from fodcproxy.metrics import ProxyMetrics
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.server import Connection
from fodcproxy.rpc.service import REGISTER, STREAM_METRICS, FodcService
from fodcproxy.testing import open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get

TOKEN = "hostile-hub-token-0123456789"


def ident(port: int = 17930, **kw):
    return convert.registration_to_proto(role="liaison", ip="127.0.0.1", port=port, **kw)


async def wait_for(predicate, step=0.005):
    """Poll a condition of the proxy; the caller's fail_after bounds it."""
    while not predicate():
        await trio.sleep(step)


def samples(text, name):
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


async def scrape(handle):
    r = await http_get(handle.http_url + "/metrics")
    assert r.status == 200
    return r.text


def counter(handle, name, labels=None):
    return handle.proxy.metrics.value(name, labels)


async def start_victim(nursery, handle, *, token=None, value=42.0) -> AgentClient:
    """A real agent client (ours) that answers every request with victim_value=`value`."""

    async def source(window):
        return [pb.Metric(name="victim_value", value=value, type=pb.METRIC_TYPE_GAUGE,
                          description="the victim's own value")]

    client = AgentClient("127.0.0.1", handle.addresses.grpc_port,
                         AgentSpec(role="liaison", ip="127.0.0.1", port=17931), source,
                         reconnect_interval=0.05, reconnect_max=0.1, token=token)
    await nursery.start(client.run)
    hub = handle.proxy.hub
    await wait_for(lambda: client.agent_id in hub.sessions
                   and hub.sessions[client.agent_id].metrics_stream is not None)
    return client


def grpcio_hijack(target: str, agent_id: str, token: str | None):
    """Open StreamMetrics naming `agent_id` on a fresh connection and send fake values."""
    metadata = [("agent_id", agent_id)]
    if token:
        metadata.append(("authorization", f"Bearer {token}"))
    forged = pb.StreamMetricsRequest(metrics=[pb.Metric(name="victim_value", value=666.0)])
    with grpc.insecure_channel(target) as channel:
        stream = channel.stream_stream(
            STREAM_METRICS, request_serializer=pb.StreamMetricsRequest.SerializeToString,
            response_deserializer=pb.StreamMetricsResponse.FromString)
        try:
            received = list(stream(iter([forged]), metadata=metadata))
        except grpc.RpcError as exc:
            return exc.code(), exc.details()
    return "attached", received


# -- hijack --------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, TOKEN])
async def test_hijack_of_a_live_agent_is_permission_denied_and_the_victim_keeps_answering(
        token, caplog):
    caplog.set_level(logging.WARNING, logger="fodcproxy")
    with trio.fail_after(20):
        async with open_proxy(attach_grace=0.3, agent_token=token, collect_timeout=2.0) as handle, \
                trio.open_nursery() as nursery:
            victim = await start_victim(nursery, handle, token=token)
            aid = victim.agent_id
            session = handle.proxy.hub.sessions[aid]
            stream = session.metrics_stream

            code, details = await trio.to_thread.run_sync(
                grpcio_hijack, handle.grpc_address, aid, token, abandon_on_cancel=True)

            assert code == grpc.StatusCode.PERMISSION_DENIED, (code, details)
            assert "registered by another connection" in details
            # never attached: the victim's session and stream are untouched
            assert handle.proxy.hub.sessions[aid] is session
            assert session.metrics_stream is stream and not stream.ended
            assert stream.call.server_call.abort_status is None
            assert victim.connected and victim.statistics().connects == 1
            assert handle.proxy.registry.get(aid).status is AgentStatus.ONLINE
            text = await scrape(handle)
            [value] = [s for s in samples(text, "victim_value") if s.labels["agent_id"] == aid]
            assert value.value == 42.0
            [up] = [s for s in samples(text, "fodc_agent_up") if s.labels["agent_id"] == aid]
            assert up.value == 1.0
            [refused] = [s for s in samples(text, "fodc_proxy_registration_refusals_total")
                         if s.labels["reason"] == "other_connection"]
            assert refused.value == 1.0
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING
                        and aid in r.getMessage() and "refused" in r.getMessage()]
            assert warnings, caplog.text
            # it names the hijacker's peer (grpcio's connection, not the victim's)
            assert "from 127.0.0.1:" in warnings[0].getMessage()
            assert session.connection.peer in warnings[0].getMessage()  # ... and the owner's
            victim.stop()


async def test_a_stream_waiting_for_a_registration_is_not_satisfied_by_another_connection():
    """The attach grace: only a registration on the stream's own connection may satisfy it."""
    with trio.fail_after(20):
        async with open_proxy(attach_grace=2.0) as handle, \
                open_channel("127.0.0.1", handle.addresses.grpc_port) as attacker, \
                open_channel("127.0.0.1", handle.addresses.grpc_port) as owner:
            aid = convert.registration_from_proto(ident()).identity.agent_id
            early = await attacker.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                              metadata={"agent_id": aid})
            hub = handle.proxy.hub
            # ... waiting at the proxy while the real agent registers on its own connection
            reg = await owner.start_call(REGISTER, pb.RegisterAgentResponse)
            await reg.send(ident())
            assert (await reg.receive()).agent_id == aid
            mine = await owner.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                          metadata={"agent_id": aid})
            await wait_for(lambda: hub.sessions[aid].metrics_stream is not None)
            assert await early.receive() is None
            assert early.status[0] == GrpcCode.PERMISSION_DENIED
            # the owner's stream was never displaced
            assert mine.status is None
            assert hub.sessions[aid].metrics_stream.call.connection is hub.sessions[aid].connection


async def test_a_connection_may_replace_its_own_metrics_stream(proxy):
    """Not new, and it must stay: an agent reopening its metrics stream on its connection."""
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", proxy.addresses.grpc_port) as ch:
            reg = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await reg.send(ident())
            aid = (await reg.receive()).agent_id
            hub = proxy.proxy.hub
            first = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                        metadata={"agent_id": aid})
            await wait_for(lambda: hub.sessions[aid].metrics_stream is not None)
            old = hub.sessions[aid].metrics_stream
            second = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                         metadata={"agent_id": aid})
            await wait_for(lambda: hub.sessions[aid].metrics_stream is not old)
            assert await first.receive() is None
            assert first.status[0] == GrpcCode.ABORTED and "replaced" in first.status[1]

            async def answer():
                req = await second.receive()
                await second.send(pb.StreamMetricsRequest(
                    request_id=req.request_id, metrics=[pb.Metric(name="own", value=7.0)]))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(answer)
                [result] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5)
            assert result.up, result.error
            assert [s.value for s in result.samples] == [7.0]


# -- registrations claim their connection; take-overs are counted ---------------------------------


async def test_registration_claims_its_connection_until_it_ends_and_takeovers_are_counted(proxy):
    with trio.fail_after(10):
        hub = proxy.proxy.hub
        async with open_channel("127.0.0.1", proxy.addresses.grpc_port) as a, \
                open_channel("127.0.0.1", proxy.addresses.grpc_port) as b:
            first = await a.start_call(REGISTER, pb.RegisterAgentResponse)
            await first.send(ident())
            aid = (await first.receive()).agent_id
            old = hub.sessions[aid]
            assert old.connection.claimed
            again = await b.start_call(REGISTER, pb.RegisterAgentResponse)
            await again.send(ident())
            assert (await again.receive()).agent_id == aid
            new = hub.sessions[aid]
            assert new.connection is not old.connection
            assert new.connection.claimed and not old.connection.claimed
            assert await first.receive() is None and first.status[0] == GrpcCode.ABORTED
            text = await scrape(proxy)
            assert [s.value for s in samples(text, "fodc_proxy_takeovers_total")] == [1.0]
            await again.done_sending()  # goodbye
            assert await again.receive() is None
            await wait_for(lambda: proxy.proxy.registry.get(aid) is None)
            assert not new.connection.claimed


async def test_cleanup_releases_the_connection(autojump_clock):
    """An entry removed by the supervisor releases its connection (MockClock, no sockets)."""
    from fodcproxy.core.registry import Registration
    from fodcproxy.testing.agentlink import MemoryAgent

    registry = Registry(heartbeat_timeout=30.0, cleanup_timeout=300.0)
    hub = AgentHub(registry, ProxyMetrics(), heartbeat_interval_seconds=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        agent = MemoryAgent(hub, Registration.build(role="liaison", ip="10.0.0.1", port=1))
        agent.register()
        assert agent.connection.claimed
        await trio.sleep(330.01)
        assert len(registry) == 0
        assert agent.register_call.aborted.grpc_code == GrpcCode.FAILED_PRECONDITION
        assert not agent.connection.claimed
        nursery.cancel_scope.cancel()


# -- size caps ------------------------------------------------------------------------------------


@pytest.mark.parametrize("kwargs, flag", [
    (dict(secondary_addresses={f"a{i}": Address("10.0.0.1", 1) for i in range(65)}),
     "--max-secondary-addresses"),
    (dict(secondary_addresses={"k" * 257: Address("10.0.0.1", 1)}),
     "--max-secondary-address-key-length"),
    (dict(node_config=NodeConfig(startup_params={"blob": "x" * (256 * 1024)})),
     "--max-node-config-bytes"),
])
async def test_registration_over_a_size_cap_is_refused_naming_the_flag(proxy, kwargs, flag):
    with trio.fail_after(15):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("alive", 1.0)]) as live:
            async with open_channel("127.0.0.1", proxy.addresses.grpc_port) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident(**kwargs))
                resp = await call.receive()
                assert not resp.success and flag in resp.message
                assert await call.receive() is None
                assert call.status[0] == GrpcCode.RESOURCE_EXHAUSTED and flag in call.status[1]
                # a heartbeat that grows over the cap ends that agent's stream the same way
                ok = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await ok.send(ident(port=17932))
                assert (await ok.receive()).success
                await ok.send(ident(port=17932, **kwargs))
                assert await ok.receive() is None
                assert ok.status[0] == GrpcCode.RESOURCE_EXHAUSTED and flag in ok.status[1]
            registry = proxy.proxy.registry
            assert registry.get(convert.registration_from_proto(ident()).identity.agent_id) is None
            assert registry.get(live.agent_id).status is AgentStatus.ONLINE
            text = await scrape(proxy)
            [up] = [s for s in samples(text, "fodc_agent_up") if s.labels["agent_id"] == live.agent_id]
            assert up.value == 1.0
    assert counter(proxy, "fodc_proxy_registration_refusals_total", {"reason": "size_limit"}) == 1


async def test_node_config_and_secondary_addresses_within_caps_are_accepted():
    with trio.fail_after(10):
        async with open_proxy(max_secondary_addresses=2, max_secondary_address_key_length=4,
                              max_node_config_bytes=4096) as handle:
            async with open_channel("127.0.0.1", handle.addresses.grpc_port) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident(secondary_addresses={"grpc": Address("10.0.0.1", 1),
                                                           "http": Address("10.0.0.1", 2)},
                                      node_config=NodeConfig(startup_params={"a": "b"})))
                assert (await call.receive()).success
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident(port=2, secondary_addresses={"gossip": Address("10.0.0.1", 1)}))
                resp = await call.receive()
                assert not resp.success
                assert "6 bytes: at most 4 (the proxy's --max-secondary-address-key-length)" in resp.message


async def test_reply_over_max_reply_bytes_is_refused_and_the_next_reply_is_fine(caplog):
    caplog.set_level(logging.WARNING, logger="fodcproxy")
    fat = [static(f"fat_{i}", float(i), labels={"pad": "x" * 1000}) for i in range(100)]  # ~100 KB
    with trio.fail_after(20):
        async with open_proxy(max_reply_bytes=64 * 1024, collect_timeout=5.0) as handle, \
                open_fake_agent(handle.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("thin", 1.0)]) as good, \
                open_fake_agent(handle.grpc_address, role="liaison", ip="127.0.0.1", port=2,
                                series=fat, max_message_size=16 * 1024) as big:
            hub = handle.proxy.hub
            await wait_for(lambda: hub.sessions[big.agent_id].metrics_stream is not None)
            stream = hub.sessions[big.agent_id].metrics_stream
            text = await scrape(handle)
            ups = {s.labels["agent_id"]: s.value for s in samples(text, "fodc_agent_up")}
            assert ups == {good.agent_id: 1.0, big.agent_id: 0.0}
            assert not [s for s in samples(text, "fat_0")]
            assert "reply over --max-reply-bytes=65536 bytes" in caplog.text
            assert big.client.statistics().chunks_sent > 1  # it came in chunks, each under the cap
            # the stream stays; the next reply that fits is served
            big.set_series([static("thin", 2.0)])
            text = await scrape(handle)
            ups = {s.labels["agent_id"]: s.value for s in samples(text, "fodc_agent_up")}
            assert ups == {good.agent_id: 1.0, big.agent_id: 1.0}
            assert hub.sessions[big.agent_id].metrics_stream is stream
            assert counter(handle, "fodc_proxy_registration_refusals_total",
                           {"reason": "reply_bytes"}) == 1


# -- lock-out -------------------------------------------------------------------------------------


async def _junk(handle, first_port: int, count: int) -> list[str]:
    """Register `count` identities on one connection and drop it without a goodbye."""
    ids = []
    async with open_channel("127.0.0.1", handle.addresses.grpc_port) as ch:
        for port in range(first_port, first_port + count):
            call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await call.send(ident(port=port))
            resp = await call.receive()
            assert resp.success, resp.message
            ids.append(resp.agent_id)
    return ids


async def test_junk_registrations_dropped_without_goodbye_do_not_lock_real_agents_out():
    with trio.fail_after(30):
        # --agent-cleanup-timeout stays at its 5 minutes: nothing here waits for it
        async with open_proxy(max_agents=40) as handle:
            registry = handle.proxy.registry
            junk = []
            for k in range(4):
                junk += await _junk(handle, 20000 + 10 * k, 10)
            await wait_for(lambda: all(registry.get(a).status is AgentStatus.OFFLINE for a in junk))
            assert len(registry) == 40
            async with open_fake_agent(handle.grpc_address, role="datanode-hot", ip="127.0.0.1",
                                       port=1, series=[static("real", 1.0)]) as real:
                assert registry.get(real.agent_id).status is AgentStatus.ONLINE
                assert len(registry) == 40
                # an entry of the first connection dropped (offline the longest) gave its slot
                assert [a for a in junk if registry.get(a) is None] in ([a] for a in junk[:10])
                text = await scrape(handle)
                assert [s.value for s in samples(text, "real")] == [1.0]
                assert real.client.statistics().failures == 0  # registered at the first try


async def test_when_real_agents_fill_the_registry_the_refusal_says_so():
    with trio.fail_after(20):
        async with open_proxy(max_agents=2, attach_grace=0.5) as handle:
            hub = handle.proxy.hub
            for port in (1, 2):  # real agents: they carried a metrics stream, then dropped
                async with open_channel("127.0.0.1", handle.addresses.grpc_port) as ch:
                    reg = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                    await reg.send(ident(port=port))
                    aid = (await reg.receive()).agent_id
                    await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                        metadata={"agent_id": aid})
                    await wait_for(lambda: aid in hub.sessions
                                   and hub.sessions[aid].metrics_stream is not None)
            await wait_for(lambda: all(e.status is AgentStatus.OFFLINE for e in handle.proxy.registry))
            async with open_channel("127.0.0.1", handle.addresses.grpc_port) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident(port=3))
                resp = await call.receive()
                assert not resp.success
                assert "--max-agents=2" in resp.message
                assert "carried a metrics stream" in resp.message
                assert "--agent-cleanup-timeout" in resp.message
                assert await call.receive() is None
                assert call.status[0] == GrpcCode.RESOURCE_EXHAUSTED


# -- the registration's first message has a deadline ----------------------------------------------


async def test_registration_without_a_first_message_ends_with_deadline_exceeded():
    with trio.fail_after(10):
        async with open_proxy(grpc_handshake_timeout=0.3) as handle:
            async with open_channel("127.0.0.1", handle.addresses.grpc_port) as ch:
                start = trio.current_time()
                silent = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                assert await silent.receive() is None
                assert trio.current_time() - start >= 0.3
                assert silent.status[0] == GrpcCode.DEADLINE_EXCEEDED
                assert "--grpc-handshake-timeout" in silent.status[1]
                assert "RegisterAgentRequest" in silent.status[1]
                # a registration that sends in time is fine, on the same connection
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident())
                assert (await call.receive()).success
            assert counter(handle, "fodc_proxy_registration_refusals_total",
                           {"reason": "registration_timeout"}) == 1


async def test_registration_deadline_is_exact_under_mock_clock(autojump_clock):
    class SilentCall:  # the parts of ServerCall the handler touches before the first message
        peer = "test"
        method = REGISTER
        metadata: dict = {}
        connection = Connection("test")

        async def receive(self):
            await trio.sleep_forever()

    hub = AgentHub(Registry(), ProxyMetrics(), heartbeat_interval_seconds=10)
    service = FodcService(hub, registration_timeout=10.0)
    start = trio.current_time()
    with pytest.raises(DeadlineExceeded, match="within 10s"):
        await service.register_agent(SilentCall())  # type: ignore[arg-type]
    assert trio.current_time() - start == 10.0
    assert len(hub.registry) == 0 and not SilentCall.connection.claimed
