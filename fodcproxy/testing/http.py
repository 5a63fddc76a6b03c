"""A minimal HTTP/1.1 client on Trio + h11 for tests and harnesses (`http_get`)."""

from __future__ import annotations

import json
import ssl
from typing import Any
from urllib.parse import urlsplit

import attrs
import h11
import trio


@attrs.frozen
class HttpResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


async def http_request(method: str, url: str, *, headers: dict[str, str] | None = None,
                       body: bytes = b"", timeout: float = 10.0,
                       ssl_context: ssl.SSLContext | None = None) -> HttpResponse:
    """One request on a fresh connection; reads the body by Content-Length or chunks.

    Raises:
        trio.TooSlowError: no complete answer within `timeout`.
    """
    parts = urlsplit(url)
    https = parts.scheme == "https"
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if https else 80)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn = h11.Connection(h11.CLIENT)
    with trio.fail_after(timeout):
        stream: trio.abc.Stream
        if https:
            stream = await trio.open_ssl_over_tcp_stream(
                host, port, ssl_context=ssl_context or ssl.create_default_context())
        else:
            stream = await trio.open_tcp_stream(host, port)
        async with stream:
            hdrs = [("Host", f"{host}:{port}"), ("Connection", "close")]
            hdrs += list((headers or {}).items())
            if body or method in ("POST", "PUT"):
                hdrs.append(("Content-Length", str(len(body))))
            data = conn.send(h11.Request(method=method, target=target, headers=hdrs))
            if body:
                data += conn.send(h11.Data(data=body))
            data += conn.send(h11.EndOfMessage())
            await stream.send_all(data)
            status = 0
            out_headers: dict[str, str] = {}
            chunks: list[bytes] = []
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    conn.receive_data(bytes(await stream.receive_some(65536)))
                    continue
                if isinstance(event, h11.Response):
                    status = event.status_code
                    for k, v in event.headers:
                        name = k.decode().lower()
                        out_headers[name] = (out_headers[name] + ", " if name in out_headers else "") + v.decode()
                elif isinstance(event, h11.Data):
                    chunks.append(bytes(event.data))
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    break
    return HttpResponse(status, out_headers, b"".join(chunks))


async def http_get(url: str, *, headers: dict[str, str] | None = None, timeout: float = 10.0,
                   ssl_context: ssl.SSLContext | None = None) -> HttpResponse:
    return await http_request("GET", url, headers=headers, timeout=timeout, ssl_context=ssl_context)
