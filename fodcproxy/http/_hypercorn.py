"""Three fixes to hypercorn 0.17.3 (Trio worker, HTTP/1.1), applied once by `serve_http`.

hypercorn builds its connection and protocol objects itself, so there is no subclass to hand it;
these replace one method each, on the classes, and say why. Each is covered by a test in
tests/test_http_limits.py that fails without it.

1. `TCPServer.protocol_send` of a connection event (`Closed`, `Updated`) is shielded. When a
   response ends, hypercorn acts on the connection from the task that sent the last bytes:
   Quart-Trio's request task, which Quart cancels at that very moment (the stream's
   "http.disconnect" cancels its nursery). So the work stopped at its first checkpoint:
   - after `Connection: close` (or a write timeout giving up on a response) the socket was
     never closed, until the client hung up: `Connection: close` was not honoured;
   - after a keep-alive response the idle timer was never restarted: the connection was never
     closed for idleness. hypercorn's `read_timeout` used to hide both, by cutting every
     connection that sent nothing for that long, including ones waiting for their answer
     (see `server.apply_timeouts`, which turns it off).

2. `TCPServer.protocol_send` of response bytes (`RawData`) can be cancelled. hypercorn shields
   each socket write, so nothing could stop a write to a client that stopped reading: Quart's
   RESPONSE_TIMEOUT (our --http-write-timeout) fired but waited for the write, hypercorn's
   graceful shutdown deadline and even the proxy's final cancellation waited too, forever. A
   cancelled write leaves the stream half-written, which is harmless here: a write is only
   cancelled when the response is being abandoned (write timeout, shutdown), and an abandoned
   response always closes its connection (its framing is incomplete, see 1).

3. `H11Protocol._send_error_response` answers with a JSON body. hypercorn answers requests that
   never reach the app (431 request head too large, 400 malformed) with an empty body; every
   error of this API is `{"error": "..."}`.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import h11
import trio
from hypercorn.events import Closed, Event, RawData
from hypercorn.protocol.h11 import H11Protocol

from fodcproxy.http import documents
from hypercorn.trio.tcp_server import TCPServer

_MESSAGES = {
    400: "the request is not valid HTTP/1.1",
    408: "the request was not sent in time",
    413: "the request is too large",
    431: "the request head is too large: send fewer or shorter headers (at most 16 KiB in all)",
}

_applied = False


def apply() -> None:
    """Install the fixes (idempotent)."""
    global _applied
    if _applied:
        return
    _applied = True
    original_send = TCPServer.protocol_send

    async def protocol_send(self: TCPServer, event: Event) -> None:
        if isinstance(event, RawData):
            async with self.send_lock:
                try:
                    await self.stream.send_all(event.data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self.protocol.handle(Closed())
        else:
            with trio.CancelScope(shield=True):
                await original_send(self, event)

    async def _send_error_response(self: H11Protocol, status_code: int) -> None:
        message = _MESSAGES.get(status_code, "the request was refused")
        body = documents.dumps(documents.ErrorBody(message)).encode()
        headers: list[Any] = list(chain(
            [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
             (b"connection", b"close")],
            self.config.response_headers("h11")))
        await self._send_h11_event(h11.Response(status_code=status_code, headers=headers))
        await self._send_h11_event(h11.Data(data=body))
        await self._send_h11_event(h11.EndOfMessage())

    TCPServer.protocol_send = protocol_send  # type: ignore[method-assign]
    H11Protocol._send_error_response = _send_error_response  # type: ignore[method-assign]
