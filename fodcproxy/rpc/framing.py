"""The server side's message framing: what one connection may hold (`ServerLimits`), the
reservations a message's bytes take from the byte budget (`Grant`), and purerpc's message parser
with a reservation before each body and a bounded inflate (`_ReadBuffer`). Used by `rpc/wire.py`,
whose `_Connection` keeps the books."""

from __future__ import annotations

import struct
import zlib
from typing import TYPE_CHECKING, Any

import attrs
from purerpc.grpclib.buffers import MessageReadBuffer
from purerpc.grpclib.exceptions import MessageTooLargeError

from fodcproxy.errors import GrpcCode

if TYPE_CHECKING:
    from fodcproxy.rpc.wire import _Connection


class _Refused(Exception):
    def __init__(self, code: GrpcCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen(kw_only=True)
class ServerLimits:
    """What one server connection may hold (see docs/lifecycle.md, "Limits")."""

    max_message_length: int
    max_streams: int = 16
    handshake_timeout: float = 10.0  # TLS + HTTP/2 preface
    idle_timeout: float = 30.0  # a connection that carries no registered agent
    message_timeout: float = 30.0  # a started message must finish within this
    unclaimed_bytes: int = 1024 * 1024  # unread bytes a connection with no agent may hold

    @property
    def stream_window(self) -> int:
        # Twice a whole message: h2 hands window back only once half of it was consumed, so
        # one full message must still fit when almost half is consumed but not yet returned.
        return min(2 * (self.max_message_length + 5), 2**31 - 1)

    @property
    def connection_window(self) -> int:
        # Room for a whole message on two streams at once (metrics and a profile chunk), by the
        # same halving argument; memory is bounded by the byte budget, not by this window.
        return min(4 * (self.max_message_length + 5), 2**31 - 1)


SMALL, BUDGET, UNCLAIMED = "small", "budget", "unclaimed"
# Per connection, messages up to this many bytes in all are held outside the budget, so
# registrations and heartbeats never wait behind big replies. Bounded like the read buffer:
# one allowance per connection, and connections are bounded.
SMALL_ALLOWANCE = 64 * 1024


@attrs.frozen(eq=False)
class Grant:
    """Bytes reserved for one message, and from which pool (compared by identity)."""

    pool: str
    size: int


class _ReadBuffer(MessageReadBuffer):
    """purerpc's message parser, with a reservation from the byte budget before each body.

    When the budget has no room for a message, parsing stops at its header (`need` says how
    many bytes) until the socket loop has acquired them and calls `grant()`.
    """

    def __init__(self, conn: _Connection, stream_id: int, encoding: str | None) -> None:
        super().__init__(encoding, conn.config.max_message_length)
        self._conn = conn
        self._stream_id = stream_id
        self.need = 0
        self._inflate_limit = conn.config.max_message_length
        self.started: float | None = None  # when the header of the message being read arrived
        self._granted: Grant | None = None
        # Flow-controlled bytes received and not yet part of a message handed on: what must be
        # acknowledged (given back to the peer's window) when the buffer is dropped unread.
        self.unacked = 0

    def data_received(self, data: bytes, flow_controlled_length: int | None = None) -> None:
        self.unacked += len(data) if flow_controlled_length is None else flow_controlled_length
        super().data_received(data, flow_controlled_length)

    def unread(self) -> int:
        """Flow-controlled bytes this buffer holds that no delivered message accounts for."""
        return self.unacked + sum(flow for _, flow in self._messages)

    def _parse_one_message(self) -> tuple[Any, int]:
        length: int | None = self._message_length  # type: ignore[has-type]
        if length is None:
            if len(self._buffer) < 5:
                return None, 0
            header, self._flow_controlled_length = self._buffer.popleft_flowcontrol(5)
            self._compressed_flag, length = struct.unpack(">?I", header)
            self._message_length = length
            assert length is not None
            if length > self._max_message_length:
                raise MessageTooLargeError(length)
            self.started = self._conn.now
            # A compressed message reserves what it may inflate to, before its body is
            # buffered; inflating stops at that bound, and the rest is given back after.
            want = self._conn.reservation_for(length, compressed=bool(self._compressed_flag))
            self._inflate_limit = want - 5
            self._granted = self._conn.reserve(self._stream_id, want)
            if self._granted is None:
                self.need = want
                return None, 0
        elif self.need:
            return None, 0
        if len(self._buffer) < length:
            return None, 0
        data, flow = self._buffer.popleft_flowcontrol(length)
        flow += self._flow_controlled_length
        granted = self._granted
        if self._compressed_flag:
            data = self.decompress(data)
            if granted is not None:
                granted = self._conn.shrink(self._stream_id, granted, len(data) + 5)
        reserved = [granted]
        self._compressed_flag = self._message_length = self._flow_controlled_length = None
        self._granted = None
        self.started = None
        self.unacked -= flow
        return (data, reserved), flow

    def grant(self, grant: Grant) -> None:
        """The socket loop reserved `need` bytes for the waiting message: parse on."""
        self._granted, self.need = grant, 0
        self._process_new_messages()

    def decompress(self, data: bytes) -> bytes:
        # purerpc inflates without a bound: a small message could expand to gigabytes.
        if self._message_encoding not in ("gzip", "deflate"):
            raise _Refused(GrpcCode.UNIMPLEMENTED,
                           f"message encoding {self._message_encoding!r} is not supported; "
                           "send identity, gzip or deflate")
        limit = min(self._max_message_length, self._inflate_limit)
        inflater = zlib.decompressobj(wbits=47)  # zlib or gzip header, detected
        try:
            out = inflater.decompress(data, limit + 1)
        except zlib.error as exc:
            raise _Refused(GrpcCode.INVALID_ARGUMENT,
                           f"compressed message does not inflate: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            if limit < self._max_message_length:
                raise _Refused(
                    GrpcCode.RESOURCE_EXHAUSTED,
                    f"a compressed message inflates past the {limit} bytes a connection with no "
                    "registered agent may hold: register first, or send it uncompressed")
            raise MessageTooLargeError(self._max_message_length + 1)
        return out
