"""How the hub talks to agents: a small protocol of its own, so the hub knows no transport.

The hub sees each call (stream) of an agent as an `AgentCall`: who is on the other end, which
connection carries it (a per-agent stream is bound to the connection that registered the agent),
and `abort(error)` to end it with a typed error (`FodcError`: its gRPC code and message become the
call's status). A request/response stream adds `send_request()`, which raises `StreamClosed` when
the stream is gone; replies flow the other way, from the transport's handler into the hub's stream
object (`fodcproxy.streams`).

Implementations: over the gRPC server in `fodcproxy.rpc.link`, and in memory (no sockets, for
tests under `trio.testing.MockClock`) in `fodcproxy.testing.agentlink`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from fodcproxy.core.model import TimeWindow
from fodcproxy.errors import FodcError

if TYPE_CHECKING:
    from fodcproxy.core.exposition import DigestedSamples

__all__ = ["AgentCall", "AgentConnection", "MetricsCall", "ReplyDigester", "RequestCall",
           "StreamClosed"]


class StreamClosed(Exception):
    """The agent's stream is gone: nothing more can be sent on it."""


class AgentConnection(Protocol):
    """The connection carrying an agent's calls; its identity is the object itself."""

    peer: str

    def claim(self, owner: object) -> None:
        """`owner` (a registration) holds the connection open."""

    def release(self, owner: object) -> None:
        """`owner` no longer holds it; unknown owners are ignored."""


class AgentCall(Protocol):
    """One call of an agent, as the hub sees it."""

    @property
    def peer(self) -> str: ...

    @property
    def method(self) -> str: ...

    @property
    def connection(self) -> AgentConnection: ...

    def abort(self, error: FodcError) -> None:
        """End the call from another task with `error`'s status (its handler is cancelled)."""


class ReplyDigester(Protocol):
    """Turns the chunks of one agent's metric replies into samples (kept across replies)."""

    def samples(self, window: TimeWindow | None) -> DigestedSamples:
        """An empty container for the next reply, which answers a request for `window`; the
        digester keeps only what the window asks for (each series' newest point for "latest")."""

    def digest(self, items: Any, out: DigestedSamples) -> None:
        """Append a chunk's metrics to `out`.

        Raises:
            InvalidArgument: a metric does not decode (the stream ends).
            LimitExceeded: a metric is over a per-sample limit (this reply is refused).
        """

    def finish(self) -> None:
        """The reply is complete."""

    def abandon(self) -> None:
        """The reply was cut short or refused."""


class MetricsCall(AgentCall, Protocol):
    """A StreamMetrics call: asks for windows, its replies are digested by `digester`."""

    @property
    def digester(self) -> ReplyDigester: ...

    async def send_request(self, request_id: int, window: TimeWindow) -> None:
        """Ask the agent for `window`, tagged `request_id`.

        Raises:
            StreamClosed: the call is over.
        """


class RequestCall(AgentCall, Protocol):
    """A call of one of the pod agents' other streams (topology, lifecycle, ...): the proxy asks,
    the agent answers. What a request and a reply carry is the transport's business: the hub
    passes `payload` through and stores what the handler hands it."""

    async def send_request(self, request_id: int, payload: Any) -> None:
        """Send the stream's request (`request_id` where the message has room for one).

        Raises:
            StreamClosed: the call is over.
        """
