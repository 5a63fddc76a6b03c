"""purerpc's socket writer task, which also says when a write has completed.

The read loop (`rpc/wire.py`) uses it to stop reading while much is queued for a peer that reads
nothing: h2 answers PING and SETTINGS by itself, so such a peer would otherwise make the proxy
queue answers without bound.
"""

from __future__ import annotations

import anyio
import anyio.abc
import trio
from purerpc.grpc_socket import SocketWrapper
from purerpc.grpclib.connection import GRPCConnection


class Writer(SocketWrapper):
    """purerpc's socket writer, which also says when a write has completed (`wait_sent`)."""

    def __init__(self, grpc_connection: GRPCConnection, stream: anyio.abc.SocketStream) -> None:
        super().__init__(grpc_connection, stream)
        self._sent = trio.Event()

    async def _writer_thread(self) -> None:  # purerpc's loop, plus the event
        while True:
            data = self._grpc_connection.data_to_send()
            if data:
                await self._stream.send(data)
                self._sent.set()
                self._sent = trio.Event()
            elif self._running:
                await self._flush_event.wait()  # type: ignore[has-type]  # purerpc's, untyped
                self._flush_event = anyio.Event()
            else:
                return

    async def wait_sent(self) -> None:
        await self._sent.wait()


# Bytes h2 may have queued for the peer (beyond what the writer is sending) before the read loop
# stops reading: h2 answers PING and SETTINGS by itself, so a peer that sends them and reads
# nothing would otherwise make the proxy queue answers without bound.
OUTPUT_LIMIT = 1024 * 1024
