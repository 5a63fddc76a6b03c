"""The agent client's other streams (`AgentService`): opened after StreamMetrics with the agent_id
metadata, served for the connection's life; one ending ends the session and the agent registers
again, as upstream's agent does."""

from __future__ import annotations

import trio

from fodcproxy.agent.client import AgentService
from fodcproxy.errors import ShuttingDown
from fodcproxy.rpc.client import ClientCall
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_CRASH_DIAGNOSTICS
from fodcproxy.diagnostics import CrashDiagnosticsStream
from fodcproxy.testing import open_fake_agent, open_proxy
from helpers import wait_for


class Holding:
    """Holds StreamCrashDiagnostics and counts the commands the proxy sends on it."""

    method = STREAM_CRASH_DIAGNOSTICS
    response_type = pb.StreamCrashDiagnosticsResponse

    def __init__(self) -> None:
        self.calls: list[ClientCall] = []
        self.commands = 0

    async def serve(self, call: ClientCall) -> None:
        self.calls.append(call)
        while await call.receive() is not None:
            self.commands += 1


def test_holding_is_an_agent_service() -> None:
    service: AgentService = Holding()
    assert service.method.endswith("/StreamCrashDiagnostics")


async def test_service_stream_is_bound_and_its_end_re_registers() -> None:
    holding = Holding()
    with trio.fail_after(30):
        async with open_proxy(heartbeat_interval=1.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="ROLE_DATA", pod_name="data-0",
                                services=[holding], reconnect_interval=0.05) as agent:
            hub = proxy.proxy.hub
            await wait_for(lambda: hub.sessions[agent.agent_id].stream(CrashDiagnosticsStream)
                           is not None)
            first = hub.sessions[agent.agent_id]
            registrations = agent.client.statistics().registrations
            # The proxy ends the service's stream: the agent starts over with a new registration.
            first.stream(CrashDiagnosticsStream).call.abort(ShuttingDown("test"))
            await wait_for(lambda: agent.client.statistics().registrations > registrations)
            await wait_for(lambda: len(holding.calls) == 2)
            await wait_for(lambda: hub.sessions[agent.agent_id].stream(CrashDiagnosticsStream)
                           is not None)


class FailingOnce(Holding):
    """Raises an unexpected error (a bug, an input it did not foresee) on its first call."""

    async def serve(self, call: ClientCall) -> None:
        self.calls.append(call)
        if len(self.calls) == 1:
            raise ValueError("a bug in the service")
        while await call.receive() is not None:
            self.commands += 1


async def test_a_service_that_raises_ends_the_session_not_the_agent() -> None:
    """AgentService says a service that raises ends the session (the agent registers again). An
    exception other than a connection error escaped AgentClient.run() instead, and with it the
    agent's nursery: the whole agent (its metrics too) ended."""
    failing = FailingOnce()
    with trio.fail_after(30):
        async with open_proxy(heartbeat_interval=1.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="ROLE_DATA", pod_name="data-0",
                                services=[failing], reconnect_interval=0.05) as agent:
            hub = proxy.proxy.hub
            await wait_for(lambda: len(failing.calls) == 2)
            await wait_for(lambda: agent.agent_id in hub.sessions and hub.sessions[
                agent.agent_id].stream(CrashDiagnosticsStream) is not None)
            stats = agent.client.statistics()
            assert stats.registrations == 2
            assert "ValueError: a bug in the service" in stats.last_error
