"""purerpc's protocol layer, adapted: the fixes our server and client need, in one place.

purerpc's `GRPCSocket` reads frames and hands events to per-stream queues. As shipped it
(1) ignores RST_STREAM, so a handler waiting for the next message of a cancelled call waits
forever; (2) on end of the TCP stream just stops reading, so every waiting stream hangs;
(3) lets a message over the size limit escape as an exception that kills the whole connection
(and with it every other stream of the agent); (4) raises KeyError on DATA for a stream it no
longer knows. The subclasses below turn each of these into an end-of-stream event of the one
stream concerned, and leave the connection alive.

Nothing here knows Trio or our service: it is the edge where purerpc/h2 are translated.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import anyio
import h2.errors
import h2.events
import h2.exceptions
from purerpc.grpc_proto import GRPCProtoSocket, GRPCProtoStream
from purerpc.grpc_socket import SocketWrapper
from purerpc.grpclib.config import GRPCConfiguration
from purerpc.grpclib.connection import GRPCConnection
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

log = logging.getLogger(__name__)


class StreamReset(RequestEnded):
    """The peer reset the stream (RST_STREAM): the call was cancelled, not ended cleanly."""

    def __init__(self, stream_id: int, error_code: int) -> None:
        super().__init__(stream_id)
        self.error_code = error_code


class MessageTooLarge(RequestEnded):
    """The peer sent a message over our limit; the stream can take no more."""

    def __init__(self, stream_id: int, size: int, limit: int) -> None:
        super().__init__(stream_id)
        self.size = size
        self.limit = limit


class ResponseAborted(ResponseEnded):
    """Client side: the call ended without trailers (reset, connection lost, oversized reply)."""


class _Connection(GRPCConnection):
    """purerpc's h2 wrapper with per-stream handling of resets and oversized messages."""

    def __init__(self, config: GRPCConfiguration) -> None:
        super().__init__(config)
        self.oversized: dict[int, tuple[int, int]] = {}

    def _data_received(self, event: h2.events.DataReceived) -> list[Any]:
        buf = self.message_read_buffers.get(event.stream_id)
        if buf is None:
            # A stream we already finished or refused: drop the data, but give the window back.
            self._ack(event.stream_id, event.flow_controlled_length)
            return []
        try:
            buf.data_received(event.data, event.flow_controlled_length)
            messages = buf.read_all_complete_messages_flowcontrol()
        except MessageTooLargeError:
            size = buf._message_length or 0
            del self.message_read_buffers[event.stream_id]
            self._ack(event.stream_id, event.flow_controlled_length)
            self.oversized[event.stream_id] = (size, self.config.max_message_length)
            return [MessageTooLarge(event.stream_id, size, self.config.max_message_length)]
        return [MessageReceived(event.stream_id, m, n) for m, n in messages]

    def _ack(self, stream_id: int, length: int) -> None:
        try:
            self.h2_connection.acknowledge_received_data(length, stream_id)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass

    def _stream_reset(self, event: h2.events.StreamReset) -> list[Any]:
        self.message_read_buffers.pop(event.stream_id, None)
        if self.config.client_side:
            return [ResponseAborted(
                event.stream_id,
                Status(GrpcCode.CANCELLED, f"stream reset by the server (h2 error {event.error_code})"),
            )]
        return [StreamReset(event.stream_id, int(event.error_code or 0))]


class _Socket(GRPCProtoSocket):
    """A purerpc socket that delivers exactly one end event to every stream, whatever happens."""

    def __init__(self, config: GRPCConfiguration, sock: anyio.abc.SocketStream,
                 receive_buffer_size: int = 256 * 1024) -> None:
        super().__init__(config, sock, receive_buffer_size=receive_buffer_size)
        self._grpc_connection = _Connection(config)
        self._socket = SocketWrapper(self._grpc_connection, sock)
        self._ended: set[int] = set()
        self._all_streams: dict[int, GRPCProtoStream] = {}
        self.closed = False

    @property
    def connection(self) -> _Connection:
        return self._grpc_connection

    def _allocate_stream(self, stream_id: int) -> GRPCProtoStream:
        stream = super()._allocate_stream(stream_id)
        self._all_streams[stream_id] = stream
        return stream

    def forget(self, stream_id: int) -> None:
        """Stop routing events to a stream whose call is over, and free its queue."""
        self._streams.pop(stream_id, None)
        self._ended.discard(stream_id)
        self._grpc_connection.message_read_buffers.pop(stream_id, None)
        stream = self._all_streams.pop(stream_id, None)
        if stream is not None:
            _close_queue(stream)

    async def __aexit__(self, *exc_info: Any) -> Any:
        try:
            return await super().__aexit__(*exc_info)
        finally:
            for stream in self._all_streams.values():
                _close_queue(stream)
            self._all_streams.clear()

    async def _deliver(self, stream: GRPCProtoStream, event: Any) -> None:
        if isinstance(event, (RequestEnded, ResponseEnded)):
            if stream.stream_id in self._ended:
                return
            self._ended.add(stream.stream_id)
        await stream._incoming_events[0].send(event)

    async def _listen(self) -> AsyncIterator[GRPCProtoStream]:
        try:
            while True:
                try:
                    data = await self._socket.recv(self._receive_buffer_size)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                if not data:
                    return
                events = self._grpc_connection.receive_data(data)
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
                        continue
                    await self._deliver(stream, event)
                    if isinstance(event, RequestReceived):
                        yield stream
                    elif isinstance(event, (RequestEnded, ResponseEnded)):
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

    def _ended_send_nowait(self, stream: GRPCProtoStream, event: Any) -> None:
        if stream.stream_id in self._ended:
            return
        self._ended.add(stream.stream_id)
        stream._incoming_events[0].send_nowait(event)


def _close_queue(stream: GRPCProtoStream) -> None:
    send, receive = stream._incoming_events
    send.close()
    receive.close()


def server_socket(sock: anyio.abc.SocketStream, *, max_message_length: int) -> _Socket:
    return _Socket(GRPCConfiguration(client_side=False, max_message_length=max_message_length), sock)


def client_socket(sock: anyio.abc.SocketStream, *, max_message_length: int) -> _Socket:
    return _Socket(GRPCConfiguration(client_side=True, max_message_length=max_message_length), sock)


def reset_stream(sock: _Socket, stream_id: int, code: int = h2.errors.ErrorCodes.NO_ERROR) -> None:
    """Send RST_STREAM (e.g. after our trailers, so the peer stops sending). Never raises."""
    try:
        sock.connection.reset_stream(stream_id, code)
    except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError, KeyError):
        pass
