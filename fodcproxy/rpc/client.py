"""A small gRPC client on Trio over purerpc's protocol layer (used by agents and fake agents).

`open_channel()` owns one TCP connection and the purerpc reader task; calls started on it end
with the channel. A call ends with a status: `receive()` returns None and `status` says why.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
import trio
from anyio.streams.tls import TLSStream
from google.protobuf.message import Message
from purerpc.grpc_proto import GRPCProtoStream
from purerpc.grpclib.events import MessageReceived, ResponseEnded, ResponseReceived

from fodcproxy._util import lone_exception
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import wire


class RpcError(Exception):
    """A call ended with a non-OK status."""

    def __init__(self, code: int, message: str) -> None:
        try:
            name = GrpcCode(code).name
        except ValueError:
            name = str(code)
        super().__init__(f"{name}: {message}")
        self.code = code
        self.message = message


class ClientCall:
    def __init__(self, stream: GRPCProtoStream) -> None:
        self._stream = stream
        self.status: tuple[int, str] | None = None
        self.headers: dict[str, str] = {}
        self._sent_end = False

    async def send(self, message: Message) -> None:
        """Send one message. Raises RpcError if the call is already over."""
        await self.send_raw(message.SerializeToString())

    async def send_raw(self, data: bytes) -> None:
        """Send one message already serialized. Raises RpcError if the call is already over."""
        try:
            await self._stream._send(data)
        except Exception as exc:
            raise RpcError(self.status[0] if self.status else GrpcCode.UNAVAILABLE,
                           f"cannot send: {exc!r}") from None

    async def done_sending(self) -> None:
        """Close our send side cleanly (for RegisterAgent: the graceful goodbye)."""
        if not self._sent_end:
            self._sent_end = True
            try:
                await self._stream.close()
            except Exception:
                pass

    async def receive(self) -> Any | None:
        """The next message, or None when the call has ended (then `status` is set)."""
        while self.status is None:
            event = await self._stream.receive_event()
            if isinstance(event, ResponseReceived):
                self.headers.update(
                    (k, v if isinstance(v, str) else v.decode()) for k, v in event.custom_metadata
                )
            elif isinstance(event, MessageReceived):
                return event.data
            elif isinstance(event, ResponseEnded):
                self.status = (int(event.status.int_value), event.status.status_message)
            elif isinstance(event, wire.MessageTooLarge):
                # A reply over our max_message_length: the call can take no more (without this
                # the call would wait for an end that never comes).
                self.status = (int(GrpcCode.RESOURCE_EXHAUSTED),
                               f"a reply of {event.size} bytes is over the "
                               f"{event.limit}-byte message limit")
        return None

    def raise_for_status(self) -> None:
        if self.status is not None and self.status[0] != GrpcCode.OK:
            raise RpcError(*self.status)


class Channel:
    def __init__(self, host: str, port: int, sock: wire._Socket, *, scheme: str = "http") -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self._sock = sock

    async def start_call(self, method: str, response_type: type[Message], *,
                         metadata: Mapping[str, str] | None = None) -> ClientCall:
        """Start a call to `method` ("/package.Service/Method")."""
        if self._sock.closed:
            raise RpcError(GrpcCode.UNAVAILABLE, "the connection is closed")
        service, name = method.strip("/").split("/")
        stream = await self._sock.start_request(
            self.scheme, service, name, None, f"{self.host}:{self.port}",
            custom_metadata=tuple((metadata or {}).items()),
        )
        stream.expect_message_type(response_type)
        return ClientCall(stream)

    def cancel(self, call: ClientCall) -> None:
        """Reset a call (RST_STREAM CANCEL), as a client that gives up does."""
        wire.reset_stream(self._sock, call._stream.stream_id, 8)
        self._sock._socket._flush_event.set()


@contextlib.asynccontextmanager
async def open_channel(host: str, port: int, *, max_message_length: int = 4 * 1024 * 1024,
                       connect_timeout: float = 10.0,
                       ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Channel]:
    """Connect to a gRPC server; the channel and its calls end when the block ends.

    Raises:
        OSError: the connection could not be made (refused, unreachable, timed out).
    """
    sock: Any = None
    try:
        with trio.fail_after(connect_timeout):
            sock = await anyio.connect_tcp(host, port)
            if ssl_context is not None:
                sock = await TLSStream.wrap(sock, hostname=host, ssl_context=ssl_context,
                                            standard_compatible=False)
    except BaseException as exc:
        if sock is not None:
            with trio.CancelScope(shield=True):
                await anyio.aclose_forcefully(sock)
        if isinstance(exc, trio.TooSlowError):
            raise TimeoutError(f"connecting to {host}:{port} took over {connect_timeout}s") from None
        if isinstance(exc, (anyio.BrokenResourceError, anyio.EndOfStream)):
            raise ConnectionError(f"TLS handshake with {host}:{port} failed: {exc!r}") from None
        raise
    try:
        async with wire.client_socket(sock, max_message_length=max_message_length) as gsock:
            yield Channel(host, port, gsock, scheme="https" if ssl_context else "http")
    except BaseExceptionGroup as group:
        # purerpc's reader task group wraps whatever ended the block; give the caller the error.
        lone = lone_exception(group)
        if lone is None:
            raise
        raise lone from None
    finally:
        with trio.CancelScope(shield=True):
            await anyio.aclose_forcefully(sock)
