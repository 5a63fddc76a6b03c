"""The hub's agent protocol (`fodcproxy.link`) in memory: agents without sockets.

For tests that drive an `AgentHub` under `trio.testing.MockClock` and assert exact virtual times:

    hub = AgentHub(Registry(), ProxyMetrics(), heartbeat_interval_seconds=10)
    agent = MemoryAgent(hub, Registration.build(role="liaison", ip="10.0.0.1", port=1))
    agent.register()
    stream = await agent.attach_metrics()
    ...  # hub.collect() in one task; in another:
    request_id, window = await agent.next_request()
    await agent.reply(request_id, [sample, ...])

A reply's items are anything; the in-memory digester keeps them as they are, so a result's
`samples` are the items replied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import trio

from fodcproxy.core.model import TimeWindow
from fodcproxy.core.registry import Registration
from fodcproxy.errors import FodcError
from fodcproxy.hub import AgentHub, AgentSession
from fodcproxy.link import StreamClosed
from fodcproxy.streams import MetricsStream

__all__ = ["ListDigester", "MemoryAgent", "MemoryCall", "MemoryConnection", "MemoryMetricsCall"]

REGISTER = "/memory/RegisterAgent"
STREAM_METRICS = "/memory/StreamMetrics"


class MemoryConnection:
    """A connection: its identity is the object; `claimed` while a registration holds it."""

    def __init__(self, peer: str = "memory") -> None:
        self.peer = peer
        self._claims: set[object] = set()

    @property
    def claimed(self) -> bool:
        return bool(self._claims)

    def claim(self, owner: object) -> None:
        self._claims.add(owner)

    def release(self, owner: object) -> None:
        self._claims.discard(owner)


class MemoryCall:
    """A call: `aborted` holds the error it was ended with (`ended` is set then)."""

    def __init__(self, connection: MemoryConnection, method: str = REGISTER) -> None:
        self.connection = connection
        self.method = method
        self.aborted: FodcError | None = None
        self.ended = trio.Event()

    @property
    def peer(self) -> str:
        return self.connection.peer

    def abort(self, error: FodcError) -> None:
        if self.aborted is None:
            self.aborted = error
        self.ended.set()


class ListDigester:
    """Keeps a reply's items as they are (`fodcproxy.link.ReplyDigester`)."""

    def samples(self, window: Any) -> Any:
        return []

    def digest(self, items: Any, out: Any) -> None:
        out.extend(items)

    def finish(self) -> None:
        pass

    def abandon(self) -> None:
        pass


class MemoryMetricsCall(MemoryCall):
    """A StreamMetrics call: the requests the hub sends wait in `requests`."""

    def __init__(self, connection: MemoryConnection) -> None:
        super().__init__(connection, STREAM_METRICS)
        self.digester = ListDigester()
        self._send, self.requests = trio.open_memory_channel[tuple[int, TimeWindow]](math.inf)

    async def send_request(self, request_id: int, window: TimeWindow) -> None:
        await trio.lowlevel.checkpoint()
        if self.ended.is_set():
            raise StreamClosed("the call is over")
        self._send.send_nowait((request_id, window))


class MemoryAgent:
    """One agent on its own in-memory connection, speaking to `hub` as the gRPC handlers do."""

    def __init__(self, hub: AgentHub, registration: Registration, *,
                 connection: MemoryConnection | None = None) -> None:
        self.hub = hub
        self.registration = registration
        self.connection = connection or MemoryConnection(
            f"memory:{registration.identity.describe()}")
        self.register_call = MemoryCall(self.connection)
        self.metrics_call: MemoryMetricsCall | None = None
        self.session: AgentSession | None = None
        self.stream: MetricsStream | None = None

    @property
    def agent_id(self) -> str:
        return self.registration.identity.agent_id

    def register(self) -> AgentSession:
        self.session = self.hub.register(self.registration, self.register_call)
        return self.session

    async def attach_metrics(self) -> MetricsStream:
        """Open a metrics stream (bound to this agent's connection)."""
        self.metrics_call = MemoryMetricsCall(self.connection)
        self.stream = await self.hub.attach_metrics(self.agent_id, self.metrics_call)
        return self.stream

    async def next_request(self) -> tuple[int, TimeWindow]:
        """The next (request_id, window) the hub asked for."""
        assert self.metrics_call is not None, "attach_metrics() first"
        return await self.metrics_call.requests.receive()

    async def reply(self, request_id: int, items: Sequence[Any], *, more: bool = False,
                    size: int | None = None) -> None:
        """Send one reply chunk (`request_id` 0: an agent that sends no ids)."""
        assert self.stream is not None, "attach_metrics() first"
        await self.stream.on_reply(request_id, more, len(items) if size is None else size, items)

    def end_metrics(self) -> None:
        """The metrics call ends (the agent reset it, or its handler returned)."""
        assert self.stream is not None and self.metrics_call is not None
        self.hub.call_ended(self.stream.session, self.metrics_call)

    def disconnect(self, *, goodbye: bool = False) -> None:
        """Every call ends: a goodbye (removed at once) or a lost connection (offline)."""
        assert self.session is not None
        if goodbye:
            self.hub.goodbye(self.session)
        for call in list(self.session.calls):
            self.hub.call_ended(self.session, call)
