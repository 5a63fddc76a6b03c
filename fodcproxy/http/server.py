"""Serve the HTTP app with hypercorn, inside the caller's nursery."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

from fodcproxy.http import _hypercorn
from fodcproxy.http.app import create_app

from fodcproxy.config import ProxyConfig

if TYPE_CHECKING:
    from fodcproxy.http.services import HttpServices

log = logging.getLogger(__name__)


class _DropCancelledLifespan(logging.Filter):
    """hypercorn logs a cancelled lifespan task (the proxy being cancelled rather than shut down)
    as a "Lifespan error" with a traceback; a cancellation is not an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BaseExceptionGroup):
            return exc.split(trio.Cancelled)[1] is not None  # keep it if anything else is inside
        return not isinstance(exc, trio.Cancelled)


_hypercorn_log = logging.getLogger("fodcproxy.http.hypercorn")
_hypercorn_log.addFilter(_DropCancelledLifespan())


def apply_timeouts(config: Config, cfg: ProxyConfig) -> None:
    """Map the proxy's HTTP timeouts onto hypercorn 0.17.3 (see docs/http-timeouts.md).

    hypercorn's `read_timeout` bounds every `receive()` of a connection, also while a request
    is being answered: a client waiting for a slow collection, or reading a big body, sends
    nothing, so it would be cut at the read timeout with no (or half a) response. It is left
    off. The read timeout is enforced instead by hypercorn's keep-alive timer, which runs only
    while a connection has no request in progress: from the moment it opens (or its last
    response ended) until a complete request head has arrived. So it bounds idle connections
    and clients slow to send their request, and never a response being computed or sent.
    Computing is bounded by --collect-timeout; sending by --http-write-timeout (Quart's
    RESPONSE_TIMEOUT, set in `create_app`). Requests with a body are not served (every route
    is GET, DELETE or OPTIONS); Quart's BODY_TIMEOUT bounds reading one anyway.
    """
    config.read_timeout = None
    config.keep_alive_timeout = cfg.http_read_timeout
    config.ssl_handshake_timeout = cfg.http_read_timeout
    config.graceful_timeout = cfg.http_shutdown_grace


async def serve_http(proxy: HttpServices, shutdown_trigger: Callable[[], Awaitable[None]],
                     stopped: trio.Event, *,
                     task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED) -> None:
    """Serve the API until `shutdown_trigger` returns; set `stopped` when hypercorn is done.

    Reports the bound (host, port) once it accepts connections.
    """
    _hypercorn.apply()
    cfg = proxy.config
    if cfg.shutdown_grace < cfg.collect_timeout:
        log.warning("--shutdown-grace (%gs) is below --collect-timeout (%gs): a scrape running when "
                    "the proxy stops may be cut off", cfg.shutdown_grace, cfg.collect_timeout)
    config = Config()
    host = cfg.http_host or "0.0.0.0"
    config.bind = [f"[{host}]:{cfg.http_port}" if ":" in host else f"{host}:{cfg.http_port}"]
    apply_timeouts(config, cfg)
    config.errorlog = _hypercorn_log
    config.accesslog = None
    if cfg.http_tls_cert_file and cfg.http_tls_key_file:
        config.certfile = cfg.http_tls_cert_file
        config.keyfile = cfg.http_tls_key_file
    app = create_app(proxy)

    def bound(binds: list[str]) -> None:
        hostport = binds[0].split("://", 1)[1]
        h, _, p = hostport.rpartition(":")
        task_status.started((h.strip("[]"), int(p)))

    class _Status:
        def started(self, binds: list[str]) -> None:
            bound(binds)

    try:
        await serve(app, config, shutdown_trigger=shutdown_trigger, task_status=_Status())  # type: ignore[arg-type]
    finally:
        stopped.set()
