"""The gRPC side over real sockets on 127.0.0.1: registration, heartbeats, lifecycle, refusals."""

from __future__ import annotations

import functools

import trio
import trio.testing

from fodcproxy.core.registry import AgentStatus
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.service import REGISTER, SERVICE, STREAM_METRICS
from fodcproxy.testing import open_fake_agent, open_proxy, static

from helpers import wait_for


def ident(port=17912, role="liaison", **kw):
    return convert.registration_to_proto(role=role, ip="127.0.0.1", port=port, **kw)


def port_of(handle):
    return handle.addresses.grpc_port


async def test_register_heartbeat_ack_and_goodbye(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await call.send(ident())
            first = await call.receive()
            assert first.success and first.agent_id.startswith("liaison-")
            assert first.heartbeat_interval_seconds == 10
            entry = proxy.proxy.registry.get(first.agent_id)
            assert entry.status is AgentStatus.ONLINE
            for _ in range(3):
                await call.send(ident())
                ack = await call.receive()
                assert ack.success and ack.agent_id == first.agent_id
            await call.done_sending()
            assert await call.receive() is None
            assert call.status == (GrpcCode.OK, "")
            assert proxy.proxy.registry.get(first.agent_id) is None  # removed at once


async def test_heartbeat_interval_is_rounded_up_never_zero():
    with trio.fail_after(10):
        async with open_proxy(heartbeat_interval=0.3, agent_heartbeat_timeout=1.5,
                              agent_cleanup_timeout=2.0) as handle:
            async with open_channel("127.0.0.1", port_of(handle)) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident())
                assert (await call.receive()).heartbeat_interval_seconds == 1


async def test_invalid_registration_answers_and_ends_with_invalid_argument(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await call.send(pb.RegisterAgentRequest(node_role="liaison"))  # no address
            resp = await call.receive()
            assert resp.success is False and "neither primary_address nor pod_name" in resp.message
            assert await call.receive() is None
            assert call.status[0] == GrpcCode.INVALID_ARGUMENT
            assert "primary_address" in call.status[1]
            # the connection is still good for another call
            call2 = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await call2.send(ident(labels={"bad-label": "x"}))
            resp2 = await call2.receive()
            assert not resp2.success and "node_bad-label" in resp2.message
        assert len(proxy.proxy.registry) == 0
        assert proxy.proxy.metrics.value("fodc_proxy_registration_refusals_total", {"reason": "invalid"}) == 2


async def test_max_agents_is_resource_exhausted():
    with trio.fail_after(10):
        async with open_proxy(max_agents=1) as handle:
            async with open_channel("127.0.0.1", port_of(handle)) as ch:
                a = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await a.send(ident(port=1))
                assert (await a.receive()).success
                b = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await b.send(ident(port=2))
                resp = await b.receive()
                assert not resp.success and "--max-agents=1" in resp.message
                assert await b.receive() is None
                assert b.status[0] == GrpcCode.RESOURCE_EXHAUSTED


async def test_stream_metrics_refused_for_unknown_or_missing_agent_id(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            call = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                       metadata={"agent_id": "liaison-nope"})
            assert await call.receive() is None
            assert call.status[0] == GrpcCode.FAILED_PRECONDITION
            assert "not registered" in call.status[1]
            call = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse)
            assert await call.receive() is None
            assert call.status[0] == GrpcCode.UNAUTHENTICATED


async def test_stream_metrics_may_arrive_a_moment_before_registration(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            agent_id = convert.registration_from_proto(ident()).identity.agent_id
            metrics = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                          metadata={"agent_id": agent_id})
            # The metrics call is at the proxy, its handler waiting for the registration.
            await wait_for(lambda: proxy.proxy.grpc.statistics().active_calls == 1)
            reg = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await reg.send(ident())
            assert (await reg.receive()).agent_id == agent_id
            await wait_for(lambda: proxy.proxy.hub.sessions[agent_id].metrics_stream is not None)
            assert metrics.status is None


async def test_unknown_method_is_unimplemented(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            call = await ch.start_call(f"/{SERVICE}/Nope", pb.RegisterAgentResponse)
            await call.send(ident())
            assert await call.receive() is None
            assert call.status[0] == GrpcCode.UNIMPLEMENTED


async def test_connection_lost_goes_offline_at_once_and_reconnect_keeps_id(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1",
                                   port=17913, reconnect_interval=0.2) as agent:
            aid = agent.agent_id
            registry = proxy.proxy.registry
            agent.drop()
            await wait_for(lambda: registry.get(aid).status is AgentStatus.OFFLINE)
            assert registry.get(aid).status.value == "unconnected"
            await agent.client.wait_registered()
            assert agent.agent_id == aid
            await wait_for(lambda: registry.get(aid).status is AgentStatus.ONLINE)
            assert len(registry) == 1


async def test_reset_of_registration_call_is_not_a_goodbye(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await call.send(ident())
            aid = (await call.receive()).agent_id
            ch.cancel(call)  # RST_STREAM(CANCEL)
            registry = proxy.proxy.registry
            await wait_for(lambda: registry.get(aid).status is AgentStatus.OFFLINE)
            # the connection itself is still usable
            again = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await again.send(ident())
            assert (await again.receive()).agent_id == aid
            assert registry.get(aid).status is AgentStatus.ONLINE


async def test_take_over_aborts_the_old_connection(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as old, \
                open_channel("127.0.0.1", port_of(proxy)) as new:
            a = await old.start_call(REGISTER, pb.RegisterAgentResponse)
            await a.send(ident())
            aid = (await a.receive()).agent_id
            b = await new.start_call(REGISTER, pb.RegisterAgentResponse)
            await b.send(ident())
            assert (await b.receive()).agent_id == aid
            assert await a.receive() is None
            assert a.status[0] == GrpcCode.ABORTED and "registered again" in a.status[1]
            # the new one is unaffected
            await b.send(ident())
            assert (await b.receive()).success
            assert len(proxy.proxy.registry) == 1
            assert proxy.proxy.registry.get(aid).status is AgentStatus.ONLINE


async def test_changed_identity_on_heartbeat_ends_the_stream(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await call.send(ident())
            await call.receive()
            await call.send(ident(port=9999))
            assert await call.receive() is None
            assert call.status[0] == GrpcCode.FAILED_PRECONDITION
            assert "register again" in call.status[1]


async def test_oversized_message_is_refused_on_its_stream_only():
    with trio.fail_after(10):
        async with open_proxy(grpc_max_msg_size=64 * 1024) as handle:
            async with open_channel("127.0.0.1", port_of(handle)) as ch:
                reg = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await reg.send(ident())
                aid = (await reg.receive()).agent_id
                metrics = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                              metadata={"agent_id": aid})
                big = pb.StreamMetricsRequest(metrics=[pb.Metric(name="x", description="y" * 100_000)])
                await metrics.send(big)
                while await metrics.receive() is not None:
                    pass
                assert metrics.status[0] == GrpcCode.RESOURCE_EXHAUSTED
                assert "--grpc-max-msg-size=65536" in metrics.status[1]
                # the registration stream on the same connection still answers heartbeats
                await reg.send(ident())
                assert (await reg.receive()).success


async def test_garbage_protobuf_is_invalid_argument(proxy):
    with trio.fail_after(10):
        async with open_channel("127.0.0.1", port_of(proxy)) as ch:
            call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
            await call._stream._send(b"\xff\xff\xff\xff")  # not a protobuf message
            assert await call.receive() is None
            assert call.status[0] == GrpcCode.INVALID_ARGUMENT


async def test_random_bytes_on_the_port_do_not_hurt_other_agents(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("x", 1)]) as agent:
            for junk in (b"GET / HTTP/1.1\r\n\r\n", b"\x00" * 100, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\xff" * 50):
                s = await trio.open_tcp_stream("127.0.0.1", port_of(proxy))
                await s.send_all(junk)
                await s.send_eof()
                with trio.move_on_after(5):
                    while await s.receive_some():
                        pass
                await s.aclose()
            assert proxy.proxy.registry.get(agent.agent_id).status is AgentStatus.ONLINE
            await wait_for(lambda: proxy.proxy.grpc.statistics().connections == 1)


async def test_shutdown_sends_unavailable_to_agents():
    with trio.fail_after(10):
        async with open_proxy() as handle:
            async with open_channel("127.0.0.1", port_of(handle)) as ch:
                call = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await call.send(ident())
                await call.receive()
                handle.proxy.shutdown()
                assert await call.receive() is None
                assert call.status[0] == GrpcCode.UNAVAILABLE
                assert "shutting down" in call.status[1]


async def test_heartbeat_timeout_and_cleanup_at_virtual_times(autojump_clock):
    """The hub's supervisor applies the registry's deadlines exactly (MockClock, no sockets)."""
    from fodcproxy.core.registry import Registration, Registry
    from fodcproxy.hub import AgentHub
    from fodcproxy.metrics import ProxyMetrics
    from fodcproxy.testing.agentlink import MemoryAgent

    registry = Registry(heartbeat_timeout=30.0, cleanup_timeout=300.0)
    hub = AgentHub(registry, ProxyMetrics(), heartbeat_interval_seconds=10)
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        agent = MemoryAgent(hub, Registration.build(role="liaison", ip="10.0.0.1", port=1))
        start = trio.current_time()
        aid = agent.register().agent_id
        await trio.sleep(29.999)
        assert registry.get(aid).status is AgentStatus.ONLINE
        await trio.sleep(0.002)
        assert registry.get(aid).status is AgentStatus.OFFLINE
        assert registry.get(aid).offline_since == start + 30.0
        await trio.sleep(299.99)
        assert registry.get(aid) is not None
        await trio.sleep(0.02)
        assert registry.get(aid) is None
        # its streams are cancelled
        assert agent.register_call.aborted.grpc_code == GrpcCode.FAILED_PRECONDITION
        nursery.cancel_scope.cancel()


async def test_agent_never_stays_connected_but_unregistered():
    """A 'proxy' that accepts TCP and never answers: the agent gives up on it and retries."""
    from fodcproxy.agent.client import AgentClient, AgentSpec

    async def source(window):
        return []

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, host="127.0.0.1"),
                lambda stream: trio.sleep_forever(), 0)  # accepts, never speaks
            port = listeners[0].socket.getsockname()[1]
            client = AgentClient("127.0.0.1", port, AgentSpec(role="liaison", ip="127.0.0.1", port=1),
                                 source, reconnect_interval=0.05, reconnect_max=0.1)
            client.registration_timeout = 0.2
            nursery.start_soon(client.run)
            while client.statistics().connects < 3:
                await trio.sleep(0.01)
            assert "no answer to the registration" in client.statistics().last_error
            assert not client.connected
            client.stop()  # stop() also ends a connection attempt at once
            nursery.cancel_scope.cancel()


def test_server_refuses_a_budget_smaller_than_two_messages() -> None:
    # A message waiting for budget that can never be granted would stall its connection forever:
    # the API says so at construction, as the --grpc-buffer-budget flag does.
    import pytest

    from fodcproxy.rpc.server import GrpcServer

    with pytest.raises(ValueError, match="at least two messages"):
        GrpcServer({}, max_message_length=1000, buffer_budget=2 * 1005 - 1)
    assert GrpcServer({}, max_message_length=1000, buffer_budget=2 * 1005).budget.limit == 2010
