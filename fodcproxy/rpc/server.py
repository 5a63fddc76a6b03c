"""A small gRPC server on Trio: our own accept loop over purerpc's protocol layer.

Shape (who owns what):

    GrpcServer.serve()                 owns the listener and the connections nursery
      └─ one task per TCP connection   owns that connection's calls nursery
           └─ one task per call        runs the handler inside the call's own cancel scope

When the TCP connection ends (EOF, reset, kill -9 of the peer) the connection's calls nursery is
cancelled at once, so a handler never waits for a peer that is gone. A handler ends its call by
returning (OK) or by raising a `FodcError` (its gRPC code and message become the trailers); only
`Exception` is caught, so cancellation always propagates. `ServerCall.abort()` lets another task
end a call with a status (take-over, shutdown).
"""

from __future__ import annotations

import logging
import math
import ssl
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import anyio.abc
import attrs
import h2.errors
import trio
from anyio.streams.tls import TLSStream
from google.protobuf.message import DecodeError, Message
from purerpc.grpc_proto import GRPCProtoStream
from purerpc.grpclib.events import RequestEnded, RequestReceived
from purerpc.grpclib.status import Status

from fodcproxy.errors import FodcError, GrpcCode, InvalidArgument
from fodcproxy.rpc import wire
from fodcproxy.rpc.budget import ByteBudget
from fodcproxy.rpc.wire import ServerLimits

log = logging.getLogger(__name__)


class CallClosed(Exception):
    """The peer is gone or reset the call: nothing more can be sent or received."""


class StreamInputFailed(FodcError):
    """The transport ended a call's input; carries the status its trailers get."""

    def __init__(self, code: GrpcCode, message: str) -> None:
        super().__init__(message)
        self.grpc_code = code
        self.http_status = 400


class Connection:
    """One TCP connection, as the service sees it.

    Its identity is the object itself: a per-agent stream is bound to the connection whose
    RegisterAgent call registered that agent (compare with `is`). A registered agent `claim()`s
    the connection and `release()`s it when its registration ends; a connection that carries no
    claim is closed after the server's idle timeout.
    """

    def __init__(self, peer: str) -> None:
        self.peer = peer
        self._claims: set[object] = set()
        self._on_change: Callable[[bool], None] | None = None

    @property
    def claimed(self) -> bool:
        return bool(self._claims)

    def claim(self, owner: object) -> None:
        """`owner` (an agent's registration) now holds this connection open."""
        self._claims.add(owner)
        if self._on_change is not None:
            self._on_change(self.claimed)

    def release(self, owner: object) -> None:
        """`owner` no longer holds this connection; unknown owners are ignored."""
        self._claims.discard(owner)
        if self._on_change is not None:
            self._on_change(self.claimed)

    def __repr__(self) -> str:
        return f"<Connection {self.peer} claims={len(self._claims)}>"


@attrs.frozen
class Method:
    request_type: type[Message]
    handler: Callable[[ServerCall], Awaitable[None]]


class ServerCall:
    """One incoming call, as a handler sees it."""

    def __init__(self, sock: wire._Socket, stream: GRPCProtoStream, request: RequestReceived,
                 connection: Connection) -> None:
        self._sock = sock
        self.connection = connection
        peer = connection.peer
        self._stream = stream
        self.method = f"/{request.service_name}/{request.method_name}"
        self.metadata: dict[str, str] = {}
        for key, value in request.custom_metadata:
            if not isinstance(value, str):  # a "-bin" key's value, base64-decoded: any bytes
                value = value.decode("utf-8", "replace")
            self.metadata.setdefault(key.lower(), value)
        self.peer = peer
        self.scope = trio.CancelScope()
        self.remote_closed = False  # the peer half-closed cleanly (a goodbye)
        self.reset = False
        self.abort_status: tuple[GrpcCode, str] | None = None
        self._response_started = False
        self._finished = False
        self._holding: Any = None  # the last message received, until the next receive()

    async def receive(self) -> Any | None:
        """The next message, or None once the peer has closed its send side cleanly.

        The message before it counts as consumed: its bytes go back to the proxy's budget.

        Raises:
            CallClosed: the peer reset the call or the connection is gone.
            FodcError: the transport stopped this call's input (a message over the size limit,
                not finished in time, undecodable), with the status for the trailers.
        """
        self._consumed()
        if self.remote_closed:
            return None
        try:
            event = await self._stream.receive_event()
        except DecodeError as exc:
            raise InvalidArgument(f"the message does not decode as the expected protobuf: {exc}") from None
        if isinstance(event, wire.StreamFailed):
            # The stream takes no more input; the trailers say why, then RST_STREAM stops the peer.
            raise StreamInputFailed(event.code, event.message)
        if isinstance(event, wire.StreamReset):
            self.reset = True
            raise CallClosed("the peer reset the call or the connection was lost")
        if isinstance(event, RequestEnded):
            self.remote_closed = True
            return None
        self._holding = event
        return event.data

    def _consumed(self) -> None:
        if self._holding is not None:
            self._sock.consumed(self._stream.stream_id, self._holding)
            self._holding = None

    async def send(self, message: Message) -> None:
        """Send one message (response headers go first, once).

        A peer that takes none of it for --grpc-message-timeout (it gives no flow-control
        window) has the call reset: a handler blocked here receives nothing, and the messages
        queued behind would hold their share of the byte budget for as long.

        Raises:
            CallClosed: the stream is closed or reset, or the peer did not take the message.
        """
        if self.reset or self._finished:
            raise CallClosed("the call is over")
        limits = self._sock.limits
        timeout = limits.message_timeout if limits is not None else math.inf
        with trio.move_on_after(timeout) as waited:
            try:
                if not self._response_started:
                    self._response_started = True
                    await self._stream.start_response()
                await self._stream.send_message(message)
            except Exception as exc:  # h2's StreamClosedError/ProtocolError, purerpc's errors
                raise CallClosed(f"cannot send: {exc!r}") from None
        if waited.cancelled_caught:
            # Part of the message may be out: the stream cannot carry trailers after it.
            self.reset = True
            wire.reset_stream(self._sock, self._stream.stream_id, h2.errors.ErrorCodes.CANCEL)
            raise CallClosed(f"the peer took no message for --grpc-message-timeout={timeout:g}s")

    def abort(self, code: GrpcCode, message: str) -> None:
        """End the call from another task: its handler is cancelled, these become the trailers."""
        if self.abort_status is None:
            self.abort_status = (code, message)
        self.scope.cancel()

    async def _finish(self, code: GrpcCode, message: str) -> None:
        if self._finished:
            return
        self._finished = True
        stream_id = self._stream.stream_id
        if not self.reset:
            try:
                await self._stream.close(Status(int(code), message))
            except Exception:
                log.debug("could not send trailers on stream %s", stream_id, exc_info=True)
            if not self.remote_closed:
                wire.reset_stream(self._sock, stream_id)
        self._sock.forget(stream_id)
        await self._sock._socket.flush()  # RST_STREAM, and the window forget() gave back


@attrs.frozen
class ServerStatistics:
    connections: int
    active_calls: int
    calls_total: int
    connection_errors: int
    connections_refused: int  # over --grpc-max-connections
    connections_timed_out: int  # handshake or idle timeout
    accept_errors: int  # EMFILE and friends
    budget_used: int
    budget_peak: int
    budget_limit: int


class GrpcServer:
    """Serves `methods` (keyed "/package.Service/Method") on one TCP listener.

    `limits` bounds what one connection may hold and for how long (`wire.ServerLimits`);
    `buffer_budget` bounds the bytes of unconsumed messages of all connections together;
    `max_connections` bounds concurrent connections (more are accepted and closed at once).

    Raises ValueError when `buffer_budget` cannot hold two whole messages (a message waiting for
    budget that can never be granted would stall its connection).
    """

    def __init__(self, methods: Mapping[str, Method], *, max_message_length: int = 4 * 1024 * 1024,
                 ssl_context: ssl.SSLContext | None = None, limits: ServerLimits | None = None,
                 buffer_budget: int | None = None, max_connections: int = 1024) -> None:
        self._methods = dict(methods)
        self._ssl_context = ssl_context
        self.limits = limits or ServerLimits(max_message_length=max_message_length)
        self.max_message_length = self.limits.max_message_length
        if buffer_budget is not None and buffer_budget < 2 * (self.max_message_length + 5):
            raise ValueError(
                f"buffer_budget={buffer_budget} must hold at least two messages of "
                f"max_message_length ({2 * (self.max_message_length + 5)} bytes)")
        self.budget = ByteBudget(buffer_budget or max(32 * 1024 * 1024,
                                                      4 * (self.max_message_length + 5)))
        # An eighth of it for connections with no registered agent (at least what one may hold).
        self.budget.unclaimed = ByteBudget(max(self.limits.unclaimed_bytes,
                                               self.budget.limit // 8))
        self.max_connections = max_connections
        self._calls: set[ServerCall] = set()
        self._connections: set[trio.CancelScope] = set()
        self._sockets: set[wire._Socket] = set()
        self._closing = False
        self._calls_total = 0
        self._connection_errors = 0
        self._refused = 0
        self._timed_out = 0
        self._accept_errors = 0
        self._idle = trio.Event()
        self._idle.set()
        self._conn_closed = trio.Event()

    def statistics(self) -> ServerStatistics:
        budget = self.budget.statistics()
        return ServerStatistics(
            connections=len(self._connections),
            active_calls=len(self._calls),
            calls_total=self._calls_total,
            connection_errors=self._connection_errors,
            connections_refused=self._refused,
            connections_timed_out=self._timed_out,
            accept_errors=self._accept_errors,
            budget_used=budget.used,
            budget_peak=budget.peak,
            budget_limit=budget.limit,
        )

    async def serve(self, host: str | None, port: int, *,
                    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen on host:port (port 0 picks one) and serve until cancelled.

        Reports the bound (host, port) through `task_status` once it accepts connections.
        """
        multi = await anyio.create_tcp_listener(local_host=host or None, local_port=port)
        bound_port = multi.extra(anyio.abc.SocketAttribute.local_port)
        async with multi, trio.open_nursery() as nursery:
            for listener in multi.listeners:  # one per address family when host is empty
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started((host or "0.0.0.0", bound_port))
            log.info("gRPC listening on %s:%s (max message %s bytes, at most %d connections)",
                     host or "*", bound_port, self.max_message_length, self.max_connections)

    async def _accept_loop(self, listener: Any, nursery: trio.Nursery) -> None:
        backoff = 0.0
        refused_logged = -math.inf
        while not self._closing:
            try:
                sock = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as exc:
                # EMFILE/ENFILE/ENOBUFS: out of descriptors or memory. Back off (up to 1 s) so
                # the descriptors that close meanwhile serve /health and registered agents,
                # and say so once per episode, not once per try.
                self._accept_errors += 1
                if backoff == 0.0:
                    log.warning("gRPC accept failed: %s; backing off while %d connections are "
                                "open (lower --grpc-max-connections or raise the descriptor "
                                "limit)", exc, len(self._connections))
                backoff = min(1.0, max(0.01, backoff * 2))
                await trio.sleep(backoff)
                continue
            if backoff:
                log.info("gRPC accept works again")
                backoff = 0.0
            if len(self._connections) >= self.max_connections:
                self._refused += 1
                now = trio.current_time()
                if now - refused_logged >= 10.0:
                    refused_logged = now
                    log.warning("gRPC connection refused: %d connections open, the limit of "
                                "--grpc-max-connections (%d refused so far)",
                                len(self._connections), self._refused)
                with trio.CancelScope(shield=True):
                    await anyio.aclose_forcefully(sock)
                continue
            # Counted from the accept on, so the bound holds while TLS handshakes run.
            scope = trio.CancelScope()
            self._connections.add(scope)
            nursery.start_soon(self._connection, sock, scope)

    async def close(self, *, grace: float = 1.0, code: GrpcCode = GrpcCode.UNAVAILABLE,
                    message: str = "the proxy is shutting down") -> None:
        """Stop: abort every call with `code`, wait up to `grace` for trailers to leave, send GOAWAY."""
        self._closing = True
        for call in list(self._calls):
            call.abort(code, message)
        with trio.move_on_after(grace):
            await self._idle.wait()
        for sock in list(self._sockets):
            try:
                sock.connection.h2_connection.close_connection()
                await sock._socket.flush()
            except Exception:
                pass
        for scope in list(self._connections):
            scope.cancel()
        # Let each connection flush what it queued (trailers, GOAWAY) and close its socket.
        with trio.move_on_after(grace):
            while self._connections:
                self._conn_closed = trio.Event()
                await self._conn_closed.wait()

    async def _connection(self, sock: Any, listen_scope: trio.CancelScope) -> None:
        try:
            try:
                addr = sock.extra(anyio.abc.SocketAttribute.remote_address)
                peer = f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)
            except Exception:
                peer = "?"
            if self._ssl_context is not None:
                raw = sock
                try:
                    with trio.fail_after(self.limits.handshake_timeout):
                        sock = await TLSStream.wrap(sock, server_side=True,
                                                    ssl_context=self._ssl_context,
                                                    standard_compatible=False)
                except (trio.TooSlowError, OSError, ssl.SSLError, anyio.BrokenResourceError,
                        anyio.EndOfStream) as exc:
                    self._connection_errors += 1
                    log.info("TLS handshake with %s failed: %s", peer, describe(exc))
                    with trio.CancelScope(shield=True):
                        await anyio.aclose_forcefully(raw)
                    return
            await self._serve_connection(sock, peer, listen_scope)
        finally:
            self._connections.discard(listen_scope)
            self._conn_closed.set()

    async def _serve_connection(self, sock: Any, peer: str, listen_scope: trio.CancelScope) -> None:
        gsock = wire.server_socket(sock, limits=self.limits, budget=self.budget)
        connection = Connection(peer)
        gsock.connection.claimed = lambda: connection.claimed
        connection._on_change = gsock.claims_changed
        log.debug("connection from %s", peer)
        try:
            async with trio.open_nursery() as guard:
                async with gsock:
                    self._sockets.add(gsock)
                    async with trio.open_nursery() as calls:
                        with listen_scope:
                            async for stream in gsock.listen():
                                calls.start_soon(self._call, gsock, stream, connection)
                        # EOF, reset, timeout or closing: no call of this connection may outlive it.
                        calls.cancel_scope.cancel()
                    # Leaving `gsock` waits for its writer to send what is queued (trailers,
                    # GOAWAY). A peer that reads nothing would hold that, and the connection, for
                    # good: past --grpc-message-timeout the socket is closed under the writer.
                    guard.start_soon(_close_after, sock, self.limits.message_timeout)
                guard.cancel_scope.cancel()
            if gsock.close_reason is not None:
                self._timed_out += gsock.close_reason.startswith("no ")
                log.info("closed the connection from %s: %s", peer, gsock.close_reason)
        except Exception as exc:
            self._connection_errors += 1
            log.info("connection from %s ended: %s%s", peer, describe(exc),
                     f" (closing it: {gsock.close_reason})" if gsock.close_reason else "")
        finally:
            connection._on_change = None
            self._sockets.discard(gsock)
            with trio.CancelScope(shield=True):
                await anyio.aclose_forcefully(sock)
            log.debug("connection from %s closed", peer)

    async def _call(self, gsock: wire._Socket, stream: GRPCProtoStream,
                    connection: Connection) -> None:
        event = await stream.receive_event()
        if not isinstance(event, RequestReceived):  # pragma: no cover - purerpc guarantees this
            return
        call = ServerCall(gsock, stream, event, connection)
        peer = connection.peer
        method = self._methods.get(call.method)
        if method is None:
            await call._finish(GrpcCode.UNIMPLEMENTED, f"method {call.method} is not implemented")
            return
        if self._closing:
            await call._finish(GrpcCode.UNAVAILABLE, "the proxy is shutting down")
            return
        stream.expect_message_type(method.request_type)
        self._calls.add(call)
        self._calls_total += 1
        self._idle = trio.Event() if len(self._calls) == 1 else self._idle
        code, message = GrpcCode.OK, ""
        try:
            with call.scope:
                try:
                    await method.handler(call)
                except FodcError as exc:
                    code, message = exc.grpc_code, exc.message
                except CallClosed:
                    call.reset = True
                except Exception:
                    log.exception("handler of %s from %s failed", call.method, peer)
                    code, message = GrpcCode.INTERNAL, "internal error in the proxy (see its log)"
            if call.abort_status is not None:
                code, message = call.abort_status
            await call._finish(code, message)
        finally:
            self._calls.discard(call)
            if not self._calls:
                self._idle.set()


async def _close_after(sock: Any, delay: float) -> None:
    await trio.sleep(delay)
    await anyio.aclose_forcefully(sock)


def describe(exc: BaseException) -> str:
    """One line naming the cause: an exception group is described by its first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = f"{exc.__class__.__name__}: {exc}" if str(exc) else exc.__class__.__name__
    return text if len(text) < 200 else text[:200] + "..."

