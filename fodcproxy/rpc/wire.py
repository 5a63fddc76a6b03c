"""purerpc's protocol layer, adapted: the fixes our server and client need, in one place.

purerpc's `GRPCSocket` reads frames and hands events to per-stream queues. As shipped it
(1) ignores RST_STREAM, so a handler waiting for the next message of a cancelled call waits
forever; (2) on end of the TCP stream just stops reading, so every waiting stream hangs;
(3) lets a message over the size limit escape as an exception that kills the whole connection
(and with it every other stream of the agent); (4) raises KeyError on DATA for a stream it no
longer knows. The subclasses below turn each of these into an end-of-stream event of the one
stream concerned, and leave the connection alive.

Server side it also bounds what a peer can make the proxy hold (SPEC section 10): the HTTP/2
windows and concurrent streams of a connection, a reservation from the proxy-wide byte budget
before each message body is buffered (reading stops while none is available), and deadlines for
the HTTP/2 preface, for a connection that carries no registered agent, and for a started message
to finish.

Nothing here knows our service: it is the edge where purerpc/h2 are translated.
"""

from __future__ import annotations

import collections
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import trio
from purerpc.grpc_proto import GRPCProtoSocket, GRPCProtoStream
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
from purerpc.grpclib.headers import HeaderDict
from purerpc.grpclib.events import (
    MessageReceived,
    RequestEnded,
    RequestReceived,
    ResponseEnded,
    WindowUpdated,
)
from purerpc.grpclib.exceptions import MessageTooLargeError
from purerpc.grpclib.status import Status

from fodcproxy.errors import GrpcCode
from fodcproxy.rpc.budget import ByteBudget
from fodcproxy.rpc.framing import (
    BUDGET,
    SMALL,
    SMALL_ALLOWANCE,
    UNCLAIMED,
    Grant,
    ServerLimits,
    _ReadBuffer,
    _Refused,
)
from fodcproxy.rpc.writer import OUTPUT_LIMIT, Writer

log = logging.getLogger(__name__)


class StreamReset(RequestEnded):
    """The peer reset the stream (RST_STREAM): the call was cancelled, not ended cleanly."""

    def __init__(self, stream_id: int, error_code: int) -> None:
        super().__init__(stream_id)
        self.error_code = error_code


class StreamFailed(RequestEnded):
    """The proxy stopped reading one stream's input; `code` and `message` are for its trailers."""

    def __init__(self, stream_id: int, code: GrpcCode, message: str) -> None:
        super().__init__(stream_id)
        self.code = code
        self.message = message


class MessageTooLarge(StreamFailed):
    """The peer sent a message over our limit; the stream can take no more."""

    def __init__(self, stream_id: int, size: int, limit: int) -> None:
        super().__init__(
            stream_id, GrpcCode.RESOURCE_EXHAUSTED,
            f"message of {size} bytes is over the proxy's --grpc-max-msg-size={limit}: split it "
            "(StreamMetricsRequest.more) or raise the limit")
        self.size = size
        self.limit = limit


class ResponseAborted(ResponseEnded):
    """Client side: the call ended without trailers (reset, connection lost, oversized reply)."""


class _Connection(GRPCConnection):
    """purerpc's h2 wrapper with per-stream handling of resets, oversized and refused messages.

    Server side it also keeps the books of what each stream holds: bytes reserved from the
    budget (`held`), messages waiting for budget (`waiting`) and when each partial message
    started (for the message deadline).
    """

    def __init__(self, config: GRPCConfiguration, limits: ServerLimits | None = None,
                 budget: ByteBudget | None = None) -> None:
        self.limits = limits
        super().__init__(config)
        self.budget = budget
        if limits is not None:
            # h2 would decode received headers as UTF-8 and raise UnicodeDecodeError out of
            # receive_data (ending the connection, and losing the other events of that read)
            # for one bad byte in one call's headers: take bytes, decode in _request_received.
            self.h2_connection.config.header_encoding = None
        self.claimed: Callable[[], bool] = lambda: True
        self.now = 0.0
        self.held: dict[int, list[Grant]] = {}
        self.held_total = 0
        self.small_total = 0
        self.waiting: collections.deque[int] = collections.deque()
        self.preface_done = False

    def _set_h2_connection_local_settings(self) -> None:
        super()._set_h2_connection_local_settings()
        if self.limits is None:
            return
        self.h2_connection.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.limits.max_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.limits.stream_window,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: 2**14,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: self.MAX_HEADER_LIST_SIZE,
            },
        )
        self.h2_connection.max_inbound_frame_size = 2**14

    def initiate_connection(self) -> None:
        if self.limits is None:
            super().initiate_connection()  # client side: we trust the proxy we dial
            return
        self.h2_connection.initiate_connection()
        grow = self.limits.connection_window - 65535
        if grow > 0:
            self.h2_connection.increment_flow_control_window(grow)

    # -- the budget's books ----------------------------------------------------------------
    # A reservation is (pool, bytes): pool SMALL is the connection's own allowance for small
    # messages (registrations, heartbeats, small replies), so they never wait behind big ones;
    # pool BUDGET is the proxy-wide budget. `held` keeps each stream's reservations, so a call
    # that ends for any reason gives back exactly what it held.

    def reservation_for(self, length: int, *, compressed: bool) -> int:
        """Bytes to reserve for a message of `length` bytes on the wire (5-byte header included):
        a compressed one may inflate up to --grpc-max-msg-size, or, on a connection with no
        registered agent, up to what it may still hold (at least its own length)."""
        n = length + 5
        if not compressed or self.budget is None or self.limits is None:
            return n
        ceiling = self.config.max_message_length + 5
        if not self.claimed():
            ceiling = min(ceiling, self.limits.unclaimed_bytes - self.held_total)
        return max(n, ceiling)

    def reserve(self, stream_id: int, n: int) -> Grant | None:
        """Reserve `n` bytes for a message of `stream_id`; None = wait for the budget.

        Raises:
            _Refused: a connection with no registered agent asked for more than it may hold.
        """
        if self.budget is None or n <= 0:
            return Grant(BUDGET, 0)
        limits = self.limits
        assert limits is not None
        unclaimed = not self.claimed()
        if unclaimed and self.held_total + n > limits.unclaimed_bytes:
            raise _Refused(
                GrpcCode.RESOURCE_EXHAUSTED,
                f"a connection with no registered agent may hold at most "
                f"{limits.unclaimed_bytes} bytes of unread messages: register first")
        if self.small_total + n <= SMALL_ALLOWANCE:
            grant = Grant(SMALL, n)
            self.small_total += n
        elif unclaimed:
            # Connections with no agent draw from a share of their own, never from the budget
            # registered agents' replies wait for; they never wait either: refused when spent.
            if not self.budget.unclaimed.try_reserve(n):
                raise _Refused(
                    GrpcCode.RESOURCE_EXHAUSTED,
                    f"connections with no registered agent already hold "
                    f"{self.budget.unclaimed.limit} bytes of unread messages (their share of "
                    "--grpc-buffer-budget): register with a smaller message or try again")
            grant = Grant(UNCLAIMED, n)
        elif self.budget.try_reserve(n):
            grant = Grant(BUDGET, n)
        else:
            return None
        self._book(stream_id, grant)
        return grant

    def shrink(self, stream_id: int, grant: Grant, size: int) -> Grant:
        """Keep only `size` bytes of `grant` (an inflated message took less than reserved)."""
        grants = self.held.get(stream_id)
        if size >= grant.size or not grants:
            return grant
        try:
            grants.remove(grant)
        except ValueError:
            return grant  # already given back with its stream
        smaller = Grant(grant.pool, size)
        grants.append(smaller)
        self._give_back(Grant(grant.pool, grant.size - size))
        return smaller

    def _book(self, stream_id: int, grant: Grant) -> None:
        self.held.setdefault(stream_id, []).append(grant)
        self.held_total += grant.size

    def release(self, stream_id: int, grant: Grant) -> None:
        grants = self.held.get(stream_id)
        if not grants or grant.size <= 0:
            return
        try:
            grants.remove(grant)
        except ValueError:
            return  # already given back with its stream
        self._give_back(grant)

    def _give_back(self, grant: Grant) -> None:
        self.held_total -= grant.size
        if grant.pool is SMALL:
            self.small_total -= grant.size
        elif self.budget is not None:
            (self.budget.unclaimed if grant.pool is UNCLAIMED else self.budget).release(grant.size)

    def release_stream(self, stream_id: int) -> None:
        for grant in self.held.pop(stream_id, ()):
            self._give_back(grant)

    def release_all(self) -> None:
        for stream_id in list(self.held):
            self.release_stream(stream_id)

    def grant(self, stream_id: int, n: int) -> list[Any]:
        """`n` bytes were acquired for the message `stream_id` waits with; parse on."""
        buf = self.message_read_buffers.get(stream_id)
        if not isinstance(buf, _ReadBuffer) or buf.need != n:  # the call ended meanwhile
            if self.budget is not None:
                self.budget.release(n)
            return []
        grant = Grant(BUDGET, n)
        self._book(stream_id, grant)
        return self._parse(stream_id, buf, lambda: buf.grant(grant))

    # -- deadlines --------------------------------------------------------------------------

    def next_message_deadline(self) -> float:
        assert self.limits is not None
        starts = [b.started for b in self.message_read_buffers.values()
                  if isinstance(b, _ReadBuffer) and b.started is not None]
        return min(starts) + self.limits.message_timeout if starts else math.inf

    def expire_messages(self, now: float) -> list[Any]:
        """End the streams whose started message is past the message deadline."""
        assert self.limits is not None
        timeout = self.limits.message_timeout
        events: list[Any] = []
        for stream_id, buf in list(self.message_read_buffers.items()):
            if isinstance(buf, _ReadBuffer) and buf.started is not None \
                    and now >= buf.started + timeout:
                declared = (buf.need or (buf._granted.size if buf._granted else 5)) - 5
                events.append(self._fail(stream_id, _Refused(
                    GrpcCode.DEADLINE_EXCEEDED,
                    f"a message of {declared} bytes was not finished within the proxy's "
                    f"--grpc-message-timeout={timeout:g}s")))
        return events

    def drop_buffer(self, stream_id: int) -> Any:
        """Stop parsing `stream_id`'s input: what it buffered is acknowledged (the connection's
        window must not shrink for good by a message nobody will read); later DATA is dropped
        and acknowledged by `_data_received`. Returns the buffer, if there was one."""
        buf = self.message_read_buffers.pop(stream_id, None)
        if isinstance(buf, _ReadBuffer):
            self._ack(stream_id, buf.unread())
        elif buf is not None:
            self._ack(stream_id, buf._buffer.flow_controlled_length)
        return buf

    def _fail(self, stream_id: int, refused: _Refused) -> StreamFailed:
        buf = self.drop_buffer(stream_id)
        if isinstance(buf, _ReadBuffer) and buf._granted is not None:
            self.release(stream_id, buf._granted)
        return StreamFailed(stream_id, refused.code, refused.message)

    # -- h2 events --------------------------------------------------------------------------

    def _request_received(self, event: h2.events.RequestReceived) -> list[Any]:
        if self.limits is None:
            return super()._request_received(event)
        try:
            headers = [(_text(name), _text(value)) for name, value in event.headers]
            request = RequestReceived.parse_from_stream_id_and_headers_destructive(
                event.stream_id, HeaderDict(headers))
        except Exception:  # purerpc's ProtocolError, KeyError, ValueError on bad headers
            self._reset(event.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            return []
        if event.stream_ended:  # headers only: a call that sends no message at all
            return [request, RequestEnded(event.stream_id)]
        self.message_read_buffers[event.stream_id] = _ReadBuffer(
            self, event.stream_id, request.message_encoding)
        return [request]

    def _trailers_received(self, event: h2.events.TrailersReceived) -> list[Any]:
        if self.limits is None:
            return super()._trailers_received(event)  # client side: the server's status
        # A gRPC client sends no trailers; purerpc would parse them as a *response's* and raise
        # (no grpc-status: ProtocolError, which ends the whole connection) or hand the handler a
        # ResponseEnded. They carry nothing for us: the StreamEnded h2 reports with them ends
        # the request.
        return []

    def _remote_settings_changed(self, event: h2.events.RemoteSettingsChanged) -> list[Any]:
        self.preface_done = True
        return super()._remote_settings_changed(event)

    def _data_received(self, event: h2.events.DataReceived) -> list[Any]:
        stream_id = event.stream_id
        buf = self.message_read_buffers.get(stream_id)
        if buf is None:
            # A stream we already finished or refused: drop the data, but give the window back.
            self._ack(stream_id, event.flow_controlled_length)
            return []
        if not isinstance(buf, _ReadBuffer):  # client side: purerpc's buffer
            try:
                buf.data_received(event.data, event.flow_controlled_length)
                messages = buf.read_all_complete_messages_flowcontrol()
            except MessageTooLargeError:
                size = buf._message_length or 0
                del self.message_read_buffers[stream_id]
                self._ack(stream_id, event.flow_controlled_length)
                return [MessageTooLarge(stream_id, size, self.config.max_message_length)]
            return [MessageReceived(stream_id, m, n) for m, n in messages]
        return self._parse(stream_id, buf,
                           lambda: buf.data_received(event.data, event.flow_controlled_length))

    def _parse(self, stream_id: int, buf: _ReadBuffer, feed: Callable[[], None]) -> list[Any]:
        try:
            feed()
        except MessageTooLargeError:
            size = buf._message_length or 0
            self._fail(stream_id, _Refused(GrpcCode.RESOURCE_EXHAUSTED, ""))
            return [MessageTooLarge(stream_id, size, self.config.max_message_length)]
        except _Refused as refused:
            return [self._fail(stream_id, refused)]
        events: list[Any] = []
        for (data, reserved), length in buf.read_all_complete_messages_flowcontrol():
            ev = MessageReceived(stream_id, data, length)
            ev.reserved = reserved
            events.append(ev)
        if buf.need and stream_id not in self.waiting:
            self.waiting.append(stream_id)
        return events

    def _ack(self, stream_id: int, length: int) -> None:
        if length <= 0:
            return
        try:
            self.h2_connection.acknowledge_received_data(length, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def _reset(self, stream_id: int, code: int) -> None:
        try:
            self.h2_connection.reset_stream(stream_id, code)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
            pass

    def _stream_ended(self, event: h2.events.StreamEnded) -> list[Any]:
        if self.limits is None:
            return super()._stream_ended(event)
        # As purerpc, but a partial message left in the buffer gives its window back.
        if self.drop_buffer(event.stream_id) is not None:
            return [RequestEnded(event.stream_id)]
        return []

    def _stream_reset(self, event: h2.events.StreamReset) -> list[Any]:
        self.drop_buffer(event.stream_id)
        if self.config.client_side:
            return [ResponseAborted(
                event.stream_id,
                Status(GrpcCode.CANCELLED, f"stream reset by the server (h2 error {event.error_code})"),
            )]
        return [StreamReset(event.stream_id, int(event.error_code or 0))]


class ConnectionClosing(Exception):
    """Server side: the connection is being closed by us (idle, handshake or protocol error)."""


class _Socket(GRPCProtoSocket):
    """A purerpc socket that delivers exactly one end event to every stream, whatever happens.

    Server side (with `limits`) it also enforces the handshake, idle and message deadlines and
    stops reading while a message waits for room in the byte budget.
    """

    def __init__(self, config: GRPCConfiguration, sock: anyio.abc.SocketStream,
                 receive_buffer_size: int = 256 * 1024, *, limits: ServerLimits | None = None,
                 budget: ByteBudget | None = None) -> None:
        super().__init__(config, sock, receive_buffer_size=receive_buffer_size)
        self._grpc_connection = _Connection(config, limits, budget)
        self._socket = Writer(self._grpc_connection, sock)
        self._ended: set[int] = set()
        self._all_streams: dict[int, GRPCProtoStream] = {}
        self.closed = False
        self.limits = limits
        self.budget = budget
        self.opened_at = trio.current_time()
        self._unclaimed_since: float | None = self.opened_at
        self._wait_scope: trio.CancelScope | None = None
        self._output_deadline: float | None = None  # the peer must take our output by then
        self.close_reason: str | None = None

    @property
    def connection(self) -> _Connection:
        return self._grpc_connection

    def claims_changed(self, claimed: bool) -> None:
        """The service's view: a registered agent holds this connection (or no longer does)."""
        if claimed:
            self._unclaimed_since = None
        elif self._unclaimed_since is None:
            self._unclaimed_since = trio.current_time()
        if self._wait_scope is not None:
            self._wait_scope.deadline = self._deadline()

    def _deadline(self) -> float:
        limits = self.limits
        if limits is None:
            return math.inf
        deadline = self._grpc_connection.next_message_deadline()
        if not self._grpc_connection.preface_done:
            deadline = min(deadline, self.opened_at + limits.handshake_timeout)
        if self._unclaimed_since is not None:
            deadline = min(deadline, self._unclaimed_since + limits.idle_timeout)
        if self._output_deadline is not None:
            deadline = min(deadline, self._output_deadline)
        return deadline

    def _expire(self) -> list[Any]:
        """A deadline passed: end late messages; raise ConnectionClosing for the connection."""
        limits = self.limits
        assert limits is not None
        now = trio.current_time()
        conn = self._grpc_connection
        if not conn.preface_done and now >= self.opened_at + limits.handshake_timeout:
            raise ConnectionClosing(
                f"no HTTP/2 preface within --grpc-handshake-timeout={limits.handshake_timeout:g}s")
        if self._unclaimed_since is not None and now >= self._unclaimed_since + limits.idle_timeout:
            raise ConnectionClosing(
                f"no agent registered on it for --grpc-idle-timeout={limits.idle_timeout:g}s")
        if self._output_deadline is not None and now >= self._output_deadline:
            raise ConnectionClosing(
                f"its peer read nothing of the proxy's last {OUTPUT_LIMIT} bytes for "
                f"--grpc-message-timeout={limits.message_timeout:g}s")
        return conn.expire_messages(now)

    def _output_pending(self) -> int:
        return len(self._grpc_connection.h2_connection._data_to_send)

    def _allocate_stream(self, stream_id: int) -> GRPCProtoStream:
        stream = super()._allocate_stream(stream_id)
        self._all_streams[stream_id] = stream
        return stream

    def consumed(self, stream_id: int, event: Any) -> None:
        """A handler is done with `event` (a message): its reservation goes back to the budget."""
        for grant in getattr(event, "reserved", ()):
            if grant is not None:
                self._grpc_connection.release(stream_id, grant)

    def forget(self, stream_id: int) -> None:
        """Stop routing events to a stream whose call is over, and free its queue and bytes."""
        self._streams.pop(stream_id, None)
        self._ended.discard(stream_id)
        conn = self._grpc_connection
        conn.drop_buffer(stream_id)
        stream = self._all_streams.pop(stream_id, None)
        if stream is not None:
            # Messages still queued for the call were never acknowledged: give their window back.
            receive = stream._incoming_events[1]
            while True:
                try:
                    event = receive.receive_nowait()
                except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError,
                        anyio.BrokenResourceError):
                    break
                if isinstance(event, MessageReceived):
                    conn._ack(stream_id, event.flow_controlled_length)
            _close_queue(stream)
        self._grpc_connection.release_stream(stream_id)

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await super().__aexit__(*exc_info)
        finally:
            for stream in self._all_streams.values():
                _close_queue(stream)
            self._all_streams.clear()
            self._grpc_connection.release_all()

    async def _deliver(self, stream: GRPCProtoStream, event: Any) -> None:
        if isinstance(event, (RequestEnded, ResponseEnded)):
            if stream.stream_id in self._ended:
                return
            self._ended.add(stream.stream_id)
        try:
            stream._incoming_events[0].send_nowait(event)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            # The call ended (and closed its queue) while its frames were still arriving:
            # drop the event, give its window and bytes back; the other calls carry on.
            if isinstance(event, MessageReceived):
                self._grpc_connection._ack(stream.stream_id, event.flow_controlled_length)
                self.consumed(stream.stream_id, event)

    async def _next_events(self) -> list[Any] | None:
        """Read the socket (or wait for budget, or for a deadline); None at end of stream."""
        conn = self._grpc_connection
        if self.limits is not None and self._output_pending() > OUTPUT_LIMIT:
            # Read no more until the peer takes some of what is queued for it.
            if self._output_deadline is None:
                self._output_deadline = trio.current_time() + self.limits.message_timeout
            await self._socket.flush()
            while self._output_pending() > OUTPUT_LIMIT:
                with trio.move_on_at(self._deadline()) as scope:
                    self._wait_scope = scope
                    assert isinstance(self._socket, Writer)
                    await self._socket.wait_sent()
                self._wait_scope = None
                if scope.cancelled_caught:
                    return self._expire()
            self._output_deadline = None
        while conn.waiting:
            stream_id = conn.waiting[0]
            buf = conn.message_read_buffers.get(stream_id)
            need = buf.need if isinstance(buf, _ReadBuffer) else 0
            if not need:
                conn.waiting.popleft()
                continue
            assert self.budget is not None
            with trio.move_on_at(self._deadline()) as scope:
                self._wait_scope = scope
                await self.budget.acquire(need)
            self._wait_scope = None
            if scope.cancelled_caught:
                return self._expire()
            conn.waiting.popleft()
            # Headers parsed on from here start their deadline now, not before the pause.
            conn.now = trio.current_time()
            return conn.grant(stream_id, need)
        with trio.move_on_at(self._deadline()) as scope:
            self._wait_scope = scope
            try:
                data = await self._socket.recv(self._receive_buffer_size)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return None
        self._wait_scope = None
        if scope.cancelled_caught:
            return self._expire()
        if not data:
            return None
        conn.now = trio.current_time()
        return conn.receive_data(data)

    async def _listen(self) -> AsyncIterator[GRPCProtoStream]:
        try:
            while True:
                try:
                    events = await self._next_events()
                except h2.exceptions.ProtocolError as exc:
                    self._close_connection(int(getattr(exc, "error_code", None)
                                               or h2.errors.ErrorCodes.PROTOCOL_ERROR),
                                           f"HTTP/2 protocol error: {exc}")
                    await self._socket.flush()
                    return
                except ConnectionClosing as exc:
                    self._close_connection(h2.errors.ErrorCodes.NO_ERROR, str(exc))
                    await self._socket.flush()
                    return
                if events is None:
                    return
                await self._socket.flush()
                for event in events:
                    if isinstance(event, WindowUpdated):
                        targets = (
                            list(self._streams.values()) if event.stream_id == 0
                            else [self._streams[event.stream_id]]
                            if event.stream_id in self._streams else []
                        )
                        for s in targets:
                            await s._set_flow_control_update()
                        continue
                    if isinstance(event, RequestReceived):
                        self._allocate_stream(event.stream_id)
                    stream = self._streams.get(event.stream_id)
                    if stream is None:
                        if isinstance(event, MessageReceived):
                            self._grpc_connection._ack(event.stream_id,
                                                       event.flow_controlled_length)
                            self.consumed(event.stream_id, event)
                        continue
                    await self._deliver(stream, event)
                    if isinstance(event, RequestReceived):
                        yield stream
                    elif isinstance(event, (RequestEnded, ResponseEnded)):
                        if event.stream_id in self._streams:
                            stream._close_remote()
        finally:
            # The connection is over: every stream still waiting learns it now.
            self.closed = True
            for stream in list(self._streams.values()):
                lost = (
                    ResponseAborted(stream.stream_id, Status(GrpcCode.UNAVAILABLE, "connection lost"))
                    if self.client_side else StreamReset(stream.stream_id, -1)
                )
                try:
                    self._ended_send_nowait(stream, lost)
                except Exception:  # a closed queue: nobody is listening any more
                    pass

    def _close_connection(self, code: int, reason: str) -> None:
        self.close_reason = reason
        try:
            self._grpc_connection.h2_connection.close_connection(error_code=code)
        except Exception:  # already closed
            pass

    def _ended_send_nowait(self, stream: GRPCProtoStream, event: Any) -> None:
        if stream.stream_id in self._ended:
            return
        self._ended.add(stream.stream_id)
        stream._incoming_events[0].send_nowait(event)


def _text(value: bytes | str) -> str:
    """A received header name or value as text; bytes that are not UTF-8 become U+FFFD."""
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _close_queue(stream: GRPCProtoStream) -> None:
    send, receive = stream._incoming_events
    send.close()
    receive.close()


def server_socket(sock: anyio.abc.SocketStream, *, limits: ServerLimits,
                  budget: ByteBudget) -> _Socket:
    config = GRPCConfiguration(client_side=False, max_message_length=limits.max_message_length)
    # Small reads: while a message waits for budget, at most one read's bytes sit unreserved.
    return _Socket(config, sock, receive_buffer_size=64 * 1024, limits=limits, budget=budget)


def client_socket(sock: anyio.abc.SocketStream, *, max_message_length: int) -> _Socket:
    return _Socket(GRPCConfiguration(client_side=True, max_message_length=max_message_length), sock)


def reset_stream(sock: _Socket, stream_id: int, code: int = h2.errors.ErrorCodes.NO_ERROR) -> None:
    """Send RST_STREAM (e.g. after our trailers, so the peer stops sending). Never raises."""
    try:
        sock.connection.reset_stream(stream_id, code)
    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
        pass
