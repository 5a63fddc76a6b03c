"""The hub's agent protocol (`fodcproxy.link`) over our gRPC server.

`GrpcAgentCall` wraps a `ServerCall`: the hub's typed errors become the call's status, and
`CallClosed` becomes `StreamClosed`. `GrpcMetricsCall` adds StreamMetrics' requests (windows as
`StreamMetricsResponse`) and the connection's `SeriesTable`, which digests its replies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message

from fodcproxy.errors import FodcError
from fodcproxy.link import AgentConnection, StreamClosed
from fodcproxy.rpc import convert
from fodcproxy.rpc.replies import Interner, SeriesTable
from fodcproxy.rpc.server import CallClosed, ServerCall

__all__ = ["GrpcAgentCall", "GrpcMetricsCall", "GrpcRequestCall"]


class GrpcAgentCall:
    """A gRPC call of an agent, as the hub sees it (`fodcproxy.link.AgentCall`)."""

    def __init__(self, call: ServerCall) -> None:
        self.server_call = call

    @property
    def peer(self) -> str:
        return self.server_call.peer

    @property
    def method(self) -> str:
        return self.server_call.method

    @property
    def connection(self) -> AgentConnection:
        return self.server_call.connection

    def abort(self, error: FodcError) -> None:
        self.server_call.abort(error.grpc_code, error.message)

    def __repr__(self) -> str:
        return f"<GrpcAgentCall {self.method} from {self.peer}>"


class GrpcRequestCall(GrpcAgentCall):
    """One of a pod agent's other streams (`fodcproxy.link.RequestCall`): each request is the
    message `request_message(request_id, payload)` makes (upstream's messages carry no id)."""

    def __init__(self, call: ServerCall, request_message: Callable[[int, Any], Message]) -> None:
        super().__init__(call)
        self._request_message = request_message

    async def send_request(self, request_id: int, payload: Any) -> None:
        try:
            await self.server_call.send(self._request_message(request_id, payload))
        except CallClosed as exc:
            raise StreamClosed(str(exc)) from None


class GrpcMetricsCall(GrpcRequestCall):
    """A StreamMetrics call (`fodcproxy.link.MetricsCall`): its requests are windows, sent as
    `StreamMetricsResponse` with the request id."""

    def __init__(self, call: ServerCall, *, interner: Interner | None = None) -> None:
        super().__init__(call, lambda request_id, window: convert.window_to_proto(window,
                                                                                  request_id))
        # This call's series, kept across its replies; strings shared with the proxy's other
        # agents through `interner`.
        self.digester = SeriesTable(interner=interner)
