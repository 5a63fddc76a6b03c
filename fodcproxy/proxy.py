"""The composition root: one proxy = registry + hub + gRPC server + HTTP server in one nursery.

Shutdown order (see docs/lifecycle.md): HTTP stops first (hypercorn's shutdown_trigger, so no new
scrape starts and running ones finish), then every gRPC call is ended with UNAVAILABLE and the
connections get GOAWAY, then the root nursery is cancelled.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import resource
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from functools import partial

import attrs
import trio

from fodcproxy._util import lone_exception
from fodcproxy.config import ProxyConfig, add_proxy_flags, proxy_config_from_args
from fodcproxy.core.exposition import ExpositionCache, FamilyConflict
from fodcproxy.core.registry import RegistrationLimits, Registry
from fodcproxy.core.windows import WindowsCache
from fodcproxy.diagnostics import Arrivals, DiagnosticsSettings, refresh_forever
from fodcproxy.errors import ConfigError
from fodcproxy.http.services import HttpServices
from fodcproxy.hub import AgentHub
from fodcproxy.lifecycle import LifecycleCollector
from fodcproxy.metrics import ProxyMetrics, TransportCollector
from fodcproxy.process import (
    PROGRAMS_HELP,
    FlagParser,
    raise_descriptor_limit,
    read_config,
    run_program,
    run_until_signal,
    tune_gc_for_serving,
)
from fodcproxy.rpc.server import GrpcServer
from fodcproxy.rpc.wire import ServerLimits
from fodcproxy.rpc.service import FodcService
from fodcproxy.security import server_context

log = logging.getLogger(__name__)

#: Families warned about (once each) before the proxy stops warning about new ones.
_MAX_WARNED_FAMILIES = 10_000


@attrs.frozen
class ProxyAddresses:
    """Where a started proxy listens. Hosts are as bound ("0.0.0.0" = all interfaces)."""

    grpc_host: str
    grpc_port: int
    http_host: str
    http_port: int

    @property
    def grpc_address(self) -> str:
        return f"{_dial_host(self.grpc_host)}:{self.grpc_port}"

    http_scheme: str = "http"

    @property
    def http_url(self) -> str:
        return f"{self.http_scheme}://{_dial_host(self.http_host)}:{self.http_port}"


# Descriptors kept free of gRPC connections: HTTP clients (/health above all), files, logs.
RESERVED_DESCRIPTORS = 64


def connection_limit(wanted: int) -> int:
    """`wanted`, lowered so gRPC connections can never take the descriptors HTTP needs."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    room = max(1, soft - RESERVED_DESCRIPTORS)
    if wanted > room:
        log.warning("gRPC connections limited to %d (not %d): the descriptor limit is %d and %d "
                    "stay free for HTTP; raise `ulimit -n` for more", room, wanted, soft,
                    RESERVED_DESCRIPTORS)
        return room
    return wanted


def _dial_host(host: str) -> str:
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class Proxy:
    """A proxy's parts. `run()` serves them; `shutdown()` starts the orderly stop."""

    def __init__(self, config: ProxyConfig) -> None:
        self.config = config
        self.started_at = time.time()
        self.registry = Registry(
            heartbeat_timeout=config.agent_heartbeat_timeout,
            cleanup_timeout=config.agent_cleanup_timeout,
            max_agents=config.max_agents,
            wall_offset=time.time() - trio.current_time(),
        )
        self.metrics = ProxyMetrics(statuses=self._statuses)
        # What the renderers remember across requests (line texts per series, interned strings):
        # this proxy's own, never shared with another proxy in the same process.
        self.exposition_cache = ExpositionCache(on_conflict=self._family_conflict)
        self.windows_cache = WindowsCache()
        self._warned_families: set[str] = set()
        self.hub = AgentHub(self.registry, self.metrics,
                            heartbeat_interval_seconds=config.heartbeat_interval_seconds,
                            attach_grace=config.attach_grace,
                            max_reply_bytes=config.max_reply_bytes)
        ssl_context = None
        if config.grpc_tls_cert_file and config.grpc_tls_key_file:
            ssl_context = server_context(config.grpc_tls_cert_file, config.grpc_tls_key_file,
                                         flag="--grpc-tls-cert-file", alpn=["h2"])
        limits = RegistrationLimits(
            max_secondary_addresses=config.max_secondary_addresses,
            max_secondary_address_key_length=config.max_secondary_address_key_length,
            max_node_config_bytes=config.max_node_config_bytes)
        server_limits = ServerLimits(
            max_message_length=config.grpc_max_msg_size,
            handshake_timeout=config.grpc_handshake_timeout,
            idle_timeout=config.grpc_idle_timeout,
            message_timeout=config.grpc_message_timeout,
        )
        self.diagnostics = DiagnosticsSettings(
            settle=config.diagnostics_settle, chunk_timeout=config.profile_chunk_timeout,
            max_bytes=config.max_reply_bytes,
            # A download waiting for its client holds up to one stream window of the budget (two
            # messages): downloads from as many agents as such windows fit in half of it.
            download_agents=max(1, config.grpc_buffer_budget // (4 * config.grpc_max_msg_size)),
            arrivals=Arrivals() if config.diagnostics_refresh_interval > 0 else None)
        service = FodcService(self.hub, token=config.agent_token, limits=limits,
                              registration_timeout=config.grpc_handshake_timeout,
                              diagnostics=self.diagnostics)
        self.grpc = GrpcServer(
            service.methods(),
            ssl_context=ssl_context,
            limits=server_limits,
            buffer_budget=config.grpc_buffer_budget,
            max_connections=connection_limit(config.grpc_connection_limit),
        )
        self.metrics.registry.register(TransportCollector(self.grpc.statistics))
        self.lifecycle = LifecycleCollector(self.hub, self.registry,
                                            timeout=config.lifecycle_timeout)
        self.http_services = HttpServices(
            config=config, registry=self.registry, hub=self.hub, metrics=self.metrics,
            lifecycle=self.lifecycle,
            exposition_cache=self.exposition_cache, windows_cache=self.windows_cache,
            started_at=self.started_at, diagnostics=self.diagnostics,
            http_bound=lambda: (None if self.addresses is None
                                else (self.addresses.http_host, self.addresses.http_port)))
        self._stop = trio.Event()
        self._http_stopped = trio.Event()
        self.addresses: ProxyAddresses | None = None

    def _statuses(self) -> dict[str, int]:
        return dict(Counter(e.status.value for e in self.registry))

    def _family_conflict(self, conflict: FamilyConflict) -> None:
        """A /metrics render left out a family: count it every time, warn once per family."""
        self.metrics.family_conflict()
        if conflict.family not in self._warned_families:
            if len(self._warned_families) >= _MAX_WARNED_FAMILIES:
                return  # an agent inventing names must not grow this set without bound
            self._warned_families.add(conflict.family)
            log.warning("/metrics: %s (warned once per family; counted in "
                        "fodc_proxy_family_conflicts_total)", conflict)

    def shutdown(self) -> None:
        """Begin the orderly stop; `run()` returns when it is done. Safe to call twice."""
        self._stop.set()

    async def run(self, *, task_status: trio.TaskStatus[ProxyAddresses] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until `shutdown()` (or cancellation). Reports the bound addresses when ready."""
        from fodcproxy.http.server import serve_http

        cfg = self.config
        async with trio.open_nursery() as root:
            await root.start(self.hub.run)
            await root.start(partial(refresh_forever, self.hub, self.diagnostics,
                                     interval=cfg.diagnostics_refresh_interval,
                                     timeout=cfg.collect_timeout))
            with _listening("--grpc-listen-addr", cfg.grpc_host, cfg.grpc_port):
                grpc_host, grpc_port = await root.start(self.grpc.serve, cfg.grpc_host,
                                                        cfg.grpc_port)
            with _listening("--http-listen-addr", cfg.http_host, cfg.http_port):
                http_host, http_port = await root.start(serve_http, self.http_services,
                                                        self._stop.wait,
                                                        self._http_stopped)
            self.addresses = ProxyAddresses(grpc_host, grpc_port, http_host, http_port,
                                            "https" if cfg.http_tls_cert_file else "http")
            if cfg.lifecycle_interval > 0:
                root.start_soon(self.lifecycle.run_periodic, cfg.lifecycle_interval)
            task_status.started(self.addresses)
            log.info("proxy ready: gRPC %s, HTTP %s", self.addresses.grpc_address,
                     self.addresses.http_url)
            await self._stop.wait()
            log.info("shutting down: HTTP first")
            with trio.move_on_after(cfg.shutdown_grace + 1):
                await self._http_stopped.wait()
            log.info("shutting down: ending %d agent calls", self.grpc.statistics().active_calls)
            await self.grpc.close(grace=cfg.shutdown_grace)
            root.cancel_scope.cancel()
        log.info("proxy stopped")


async def serve_proxy(config: ProxyConfig, *,
                      task_status: trio.TaskStatus[ProxyAddresses] = trio.TASK_STATUS_IGNORED) -> None:
    """Run a proxy until cancelled; for `nursery.start(serve_proxy, config)` users.

    Reports the bound `ProxyAddresses` once both ports accept connections.
    """
    await Proxy(config).run(task_status=task_status)


@contextlib.contextmanager
def _listening(flag: str, host: str, port: int) -> Iterator[None]:
    """Turn a failure to bind `host:port` inside the block into a ConfigError naming `flag`."""
    try:
        yield
    except (OSError, BaseExceptionGroup) as exc:
        error = listen_error(exc, flag, host, port)
        if error is exc:
            raise
        raise error from exc


def listen_error(exc: BaseException, flag: str, host: str, port: int) -> BaseException:
    """`exc` (raised while binding `host:port`) as a ConfigError naming `flag`, when it is an
    OSError alone (however nested in exception groups); otherwise `exc` itself."""
    lone = lone_exception(exc) if isinstance(exc, BaseExceptionGroup) else exc
    if not isinstance(lone, OSError):
        return exc
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"  # as the flag spells it
    if lone.errno == errno.EADDRINUSE:
        why = "the address is already in use (is another proxy running?)"
    else:
        why = (lone.strerror or str(lone)).lower()
    return ConfigError(flag, f"cannot listen on {address}: {why}; pick another with {flag}")


def proxy_main(argv: Sequence[str], prog: str = "python -m fodcproxy") -> None:
    """The proxy program: serve until SIGINT/SIGTERM, then stop in order (exit status 0).

    Exits 2 with one line naming the flag for a bad flag value or an address that cannot be
    listened on.
    """
    parser = FlagParser(prog=prog, description="FODC proxy: agent registry, metrics fan-out and HTTP API.",
                        epilog=PROGRAMS_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_proxy_flags(parser)
    config = read_config(parser, argv, proxy_config_from_args, prog)

    async def main() -> None:
        proxy = Proxy(config)
        await run_until_signal(proxy.run, proxy.shutdown)

    tune_gc_for_serving()
    raise_descriptor_limit()
    run_program(main, prog)
