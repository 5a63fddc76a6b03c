"""`python -m fodcproxy agent`: the agent's composition root and program.

One agent = a `FlightRecorder`, a `Watchdog` that scrapes the node into it and an `AgentClient`
that answers the proxy from it, adding the agent's own figures (`fodcproxy.agent.selfmetrics`). `Agent.run()` opens the one nursery they share; the client's
`source` is the recorder's `query(window)`, and its `node_config` callable is a
`NodeConfigWatcher` that reloads the node configuration file when it changes.

Shutdown order: `Agent.stop()` makes the client say goodbye (the proxy unregisters the agent at
once); when the client has returned, the watchdog is cancelled. See docs/agent.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import attrs
import trio

from fodcproxy.agent.client import AgentClient, AgentClientStatistics, AgentService, AgentSpec
from fodcproxy.agent.config import (
    DEFAULT_METRICS_ENDPOINT,
    AgentConfig,
    agent_config_from_args,
    build_parser,
    parse_labels,
    parse_proxy_addr,
    parse_size,
)
from fodcproxy.agent.crashwatch import CrashDiagnosticsService, CrashWatcher
from fodcproxy.agent.lifecycle import (
    LifecycleCollector,
    LifecycleService,
    LifecycleSettings,
    SchemaRegistryService,
)
from fodcproxy.agent.nodeconfig import NodeConfigWatcher
from fodcproxy.agent.pressure import PressureTrigger
from fodcproxy.agent.profiler import (
    LimitReader,
    PressureProfiler,
    ProfileStore,
    pressure_samples,
    proc_rss,
    recorder_limit,
    recorder_rss,
)
from fodcproxy.agent.profileservice import PressureProfilesService
from fodcproxy.agent.recorder import FlightRecorder, RecorderStatistics, stamp_labels
from fodcproxy.agent.scrape import Watchdog, WatchdogStatistics
from fodcproxy.agent.selfmetrics import self_samples
from fodcproxy.core.model import Sample, TimeWindow
from fodcproxy.errors import ConfigError
from fodcproxy.process import format_duration, read_config, run_program, run_until_signal
from fodcproxy.security import client_context, load_token

__all__ = [
    "DEFAULT_METRICS_ENDPOINT",
    "Agent",
    "AgentConfig",
    "AgentStatistics",
    "NodeConfigWatcher",
    "agent_config_from_args",
    "agent_main",
    "build_parser",
    "local_address_towards",
    "parse_labels",
    "parse_proxy_addr",
    "parse_size",
    "run_agent",
]  # the flags and settings are fodcproxy.agent.config's; re-exported here as before

log = logging.getLogger(__name__)


# --- the composition root ------------------------------------------------------------------------


@attrs.frozen
class AgentStatistics:
    """A snapshot of the agent's three parts."""

    recorder: RecorderStatistics
    watchdog: WatchdogStatistics
    client: AgentClientStatistics


class Agent:
    """One agent: a flight recorder, the watchdog that fills it and the client that serves it.

    Construction does no I/O beyond loading the node configuration, the token and the CA file,
    and checking the pressure profiler's directory (created if missing, proved writable).
    `run()` owns the nursery of the watchdog and the client; `stop()` ends it with a goodbye to
    the proxy.

    Raises ConfigError on construction, naming `--node-config-file`, `--node-pid`,
    `--proxy-token-file` or `--proxy-tls-ca-file` when one of them cannot be loaded, or
    `--pressure-profiler-dir` when it cannot be written.
    """

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.recorder = FlightRecorder(budget_bytes=config.flight_recorder_budget,
                                       budget_points=config.flight_recorder_max_points,
                                       retention=config.flight_recorder_retention)
        # Like upstream's agent: node_role, pod_name, container_name and node_<k> on every
        # scraped series (merged into a series' labels once, when the recorder first sees it).
        # The agent's own figures carry them too (container_name only on an endpoint's).
        self._stamp = stamp_labels(role=config.node_role, labels=config.node_labels,
                                   pod_name=config.pod_name or "")
        self._endpoint_stamps = {
            url: stamp_labels(role=config.node_role, labels=config.node_labels,
                              pod_name=config.pod_name or "",
                              container_name=config.container_name(url))
            for url in config.metrics_endpoints}
        self.watchdog = Watchdog(self.recorder, config.metrics_endpoints,
                                 interval=config.poll_metrics_interval,
                                 timeout=config.scrape_timeout, labels=self._endpoint_stamps)
        self.node_config: NodeConfigWatcher | None = None
        if config.node_config_file is not None or config.node_pid is not None:
            self.node_config = NodeConfigWatcher(config.node_config_file, pid=config.node_pid)
        self._token = None
        if config.proxy_token_file is not None:
            self._token = load_token(config.proxy_token_file, flag="--proxy-token-file")
        self._ssl_context = None
        if config.proxy_tls or config.proxy_tls_ca_file is not None:
            self._ssl_context = client_context(config.proxy_tls_ca_file,
                                               flag="--proxy-tls-ca-file", alpn=["h2"])
        self._stop = trio.Event()
        self._client: AgentClient | None = None
        # Lifecycle and schema consistency: on for a pod agent unless --lifecycle-port 0 (as
        # upstream's agent), on for an address agent only with --lifecycle-port (see
        # AgentConfig.lifecycle_node_port).
        self.lifecycle: LifecycleService | None = None
        self.schema_registry: SchemaRegistryService | None = None
        if config.lifecycle_node_port > 0:
            collector = LifecycleCollector(LifecycleSettings(
                lifecycle_port=config.lifecycle_node_port,
                registry_port=config.schema_registry_port,
                report_dir=config.lifecycle_report_dir,
                cache_ttl=config.lifecycle_cache_ttl,
                max_message_size=config.grpc_max_msg_size))
            self.lifecycle = LifecycleService(collector, pod_name=config.pod_name or "")
            self.schema_registry = SchemaRegistryService(collector)
        self.pressure = _pressure_profiler(config, self.recorder)
        # Crash records: watched, and StreamCrashDiagnostics opened, only with --crash-source-dir
        # (then the proxy can tell "no crash directory" from "no crash").
        self.crash_watcher: CrashWatcher | None = None
        self.crash_service: CrashDiagnosticsService | None = None
        if config.crash_source_dirs:
            self.crash_watcher = CrashWatcher(config.crash_source_dirs,
                                              max_records=config.crash_max_records,
                                              poll_interval=config.crash_poll_interval)
            self.crash_service = CrashDiagnosticsService(
                self.crash_watcher.records, max_message_size=config.grpc_max_msg_size)
        # The pod agent's other streams, opened after StreamMetrics in upstream's order
        # (lifecycle, schema registry, crash diagnostics, pressure profiles; see AgentService).
        self.services: list[AgentService] = [
            s for s in (self.lifecycle, self.schema_registry, self.crash_service) if s is not None]
        self.services.append(PressureProfilesService(self.pressure.store if self.pressure else None))

    @property
    def client(self) -> AgentClient:
        """The proxy client. Exists once `run()` has found the node's IP (an address agent's)."""
        if self._client is None:
            raise RuntimeError("the agent's client exists once run() has started")
        return self._client

    def statistics(self) -> AgentStatistics:
        """A frozen snapshot of the recorder, the watchdog and the client."""
        return AgentStatistics(self.recorder.statistics(), self.watchdog.statistics(),
                               self.client.statistics())

    def stop(self) -> None:
        """Say goodbye to the proxy and make `run()` return. Safe to call at any time, twice."""
        self._stop.set()
        if self._client is not None:
            self._client.stop()

    async def _answer(self, window: TimeWindow) -> Sequence[Sample]:
        # The node's series from the recorder, then the agent's own figures as they are now
        # (`fodcproxy.agent.selfmetrics`): they are not recorded, so a window that does not reach
        # the present has none of them.
        samples = self.recorder.query(window)
        now = time.time()
        if window.is_latest or window.contains(now):
            samples.extend(self_samples(self.watchdog.statistics(), self.recorder.statistics(),
                                        connects=self.client.statistics().connects, now=now,
                                        labels=self._stamp,
                                        endpoint_labels=self._endpoint_stamps))
            if self.pressure is not None:
                samples.extend(pressure_samples(self.pressure.statistics(), labels=self._stamp,
                                                now=now))
        return samples

    async def run(self, *, task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED) -> None:
        """Scrape and serve until `stop()`.

        Reports this `Agent` once the first poll has completed and the agent is registered with
        the proxy (or `stop()` came first), so `await nursery.start(agent.run)` returns an agent
        the proxy can already ask. While the proxy cannot be reached, the agent keeps scraping and
        keeps trying. Returns after the goodbye; only cancellation skips it.
        """
        cfg = self.config
        if cfg.pod_name is not None:
            spec = AgentSpec(role=cfg.node_role, labels=dict(cfg.node_labels),
                             pod_name=cfg.pod_name, container_names=cfg.container_names)
        else:
            ip = cfg.node_ip or await local_address_towards(cfg.proxy_host, cfg.proxy_port)
            spec = AgentSpec(role=cfg.node_role, ip=ip, port=cfg.node_port,
                             labels=dict(cfg.node_labels))
        self._client = AgentClient(
            cfg.proxy_host, cfg.proxy_port, spec, self._answer,
            heartbeat_interval=cfg.heartbeat_interval,
            reconnect_interval=cfg.reconnect_interval,
            reconnect_max=cfg.reconnect_max,
            max_message_size=cfg.grpc_max_msg_size,
            node_config=self.node_config,
            token=self._token,
            ssl_context=self._ssl_context,
            services=self.services,
        )
        if self._stop.is_set():
            self._client.stop()
        log.info("agent %s: scraping %s every %s, proxy %s:%s", spec.describe(),
                 ", ".join(self.watchdog.endpoints),
                 format_duration(cfg.poll_metrics_interval), cfg.proxy_host, cfg.proxy_port)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.watchdog.run)
            if self.pressure is not None:
                await nursery.start(self.pressure.run, self.watchdog.wait_polls)
            if self.crash_watcher is not None:
                await nursery.start(self.crash_watcher.run)
            await nursery.start(self._serve, nursery.cancel_scope)
            task_status.started(self)
        log.info("agent stopped")

    async def _serve(self, scope: trio.CancelScope, *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await self.client.run(task_status=task_status)
        # The client has said goodbye: the recorder has no one left to serve.
        scope.cancel()


def _pressure_profiler(config: AgentConfig, recorder: FlightRecorder) -> PressureProfiler | None:
    """The memory-pressure profiler of `config` (None when disabled), its directory checked.

    Raises ConfigError naming --pressure-profiler-dir when the directory cannot be created or
    written: found at start, not at the moment of an OOM.
    """
    if not config.pressure_profiler_enabled:
        return None
    store = ProfileStore(config.pressure_dir, max_events=config.pressure_max_artifacts,
                         max_bytes=config.pressure_max_disk_bytes,
                         pod_name=config.pod_name or "", role=config.node_role)
    try:
        store.self_check()
    except OSError as exc:
        raise ConfigError("--pressure-profiler-dir",
                          f"{store.base} cannot be created or written: {exc.strerror or exc}"
                          ) from None
    return PressureProfiler(
        store, PressureTrigger(trigger_percent=config.pressure_trigger_percent,
                               cooldown=config.pressure_cooldown),
        rss=proc_rss(config.node_pid) if config.node_pid is not None else recorder_rss(recorder),
        limit=LimitReader(config.pressure_limit_bytes, scraped=recorder_limit(recorder)),
        pprof_url=config.pressure_pprof_url,
        capture_timeout=config.pressure_capture_timeout,
        max_profile_bytes=config.pressure_max_profile_bytes)


async def run_agent(config: AgentConfig, *,
                    task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED) -> None:
    """Run one agent until it is stopped (`Agent.stop()` on the reported agent) or cancelled.

    `await nursery.start(run_agent, config)` returns the running `Agent` once its first poll is
    done and it is registered with the proxy (see `Agent.run`).

    Raises ConfigError, before anything starts, when the node configuration, the token or the CA
    file cannot be loaded.
    """
    await Agent(config).run(task_status=task_status)


async def local_address_towards(host: str, port: int) -> str:
    """The local IP this host would use to reach `host:port` (no packet is sent: a UDP socket's
    connect only picks the route). Falls back to 127.0.0.1, with a warning, if there is none."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_DGRAM)
        family, type_, proto, _, sockaddr = infos[0]
        with trio.socket.socket(family, type_, proto) as sock:
            await sock.connect(sockaddr)
            ip = str(sock.getsockname()[0])
    except (OSError, IndexError) as exc:
        log.warning("cannot tell the local address towards %s:%s (%s); using 127.0.0.1: set "
                    "--node-ip", host, port, exc)
        return "127.0.0.1"
    return ip.split("%", 1)[0]  # an IPv6 scope id (fe80::1%eth0) is not part of the address


# --- the program ---------------------------------------------------------------------------------


def agent_main(argv: Sequence[str], prog: str = "python -m fodcproxy agent") -> None:
    """Run the agent until SIGINT/SIGTERM, then say goodbye and return (exit status 0).

    Raises SystemExit(2) with one line naming the flag for a bad flag value or a file that
    cannot be loaded (node configuration, token, CA).
    """
    config = read_config(build_parser(prog), argv, agent_config_from_args, prog)

    async def main() -> None:
        agent = Agent(config)
        await run_until_signal(agent.run, agent.stop)

    run_program(main, prog)
