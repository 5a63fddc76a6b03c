"""A raw HTTP/2 client over a Trio socket, for attacking a proxy's gRPC port the way a hostile
peer would: partial messages, streams that never finish, frames after a call ended. It speaks
h2's client state machine and nothing else; a well-behaved gRPC stack would refuse to do this.

Used by the project's hostile-client tests and memory benchmark; loopback targets only.
"""

from __future__ import annotations

import struct
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import trio

SERVICE = "banyandb.fodc.v1.FODCService"


def grpc_headers(method: str, *, metadata: dict[str, str] | None = None) -> list[tuple[str, str]]:
    return [(":method", "POST"), (":scheme", "http"), (":path", f"/{SERVICE}/{method}"),
            (":authority", "127.0.0.1"), ("content-type", "application/grpc"), ("te", "trailers"),
            *(metadata or {}).items()]


def frame(message: bytes) -> bytes:
    """One gRPC length-prefixed message."""
    return struct.pack(">?I", False, len(message)) + message


class RawH2:
    """One HTTP/2 connection; `events` collects what the server sent, per stream."""

    def __init__(self, sock: trio.SocketStream) -> None:
        self.sock = sock
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True,
                                                                          header_encoding="utf-8"))
        self.events: list[Any] = []
        self.closed = False

    @classmethod
    async def open(cls, port: int, *, preface: bool = True) -> RawH2:
        raw = cls(await trio.open_tcp_stream("127.0.0.1", port))
        if preface:
            raw.conn.initiate_connection()
            await raw.flush()
        return raw

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.sock.send_all(data)

    def new_stream(self, method: str, *, metadata: dict[str, str] | None = None,
                   end_stream: bool = False) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, grpc_headers(method, metadata=metadata), end_stream=end_stream)
        return sid

    def send(self, sid: int, data: bytes, *, end_stream: bool = False) -> int:
        """Queue as much of `data` as flow control allows now; returns how many bytes."""
        window = min(self.conn.local_flow_control_window(sid), len(data))
        sent = 0
        while sent < window:
            n = min(window - sent, self.conn.max_outbound_frame_size)
            self.conn.send_data(sid, data[sent:sent + n])
            sent += n
        if end_stream and sent == len(data):
            self.conn.end_stream(sid)
        return sent

    async def pump(self, timeout: float) -> None:
        """Read what the server sends for up to `timeout` seconds (or until it closes)."""
        with trio.move_on_after(timeout):
            while True:
                data = await self.sock.receive_some(65536)
                if not data:
                    self.closed = True
                    return
                try:
                    self.events.extend(self.conn.receive_data(data))
                except h2.exceptions.ProtocolError:
                    self.closed = True
                    return
                await self.flush()

    async def wait_closed(self) -> None:
        """Read until the server closes the TCP connection (the caller bounds the time)."""
        while not self.closed:
            await self.pump(1.0)

    def trailers(self, sid: int) -> dict[str, str] | None:
        for ev in self.events:
            if isinstance(ev, (h2.events.TrailersReceived, h2.events.ResponseReceived)) \
                    and ev.stream_id == sid:
                headers = dict(ev.headers)
                if "grpc-status" in headers:
                    return headers
        return None

    def reset(self, sid: int) -> bool:
        return any(isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid
                   for ev in self.events)

    def goaway(self) -> bool:
        return any(isinstance(ev, h2.events.ConnectionTerminated) for ev in self.events)

    async def aclose(self) -> None:
        await self.sock.aclose()
