"""`python -m fodcproxy agent`: flags, settings and the agent's composition root.

One agent = a `FlightRecorder`, a `Watchdog` that scrapes the node into it and an `AgentClient`
that answers the proxy from it. `Agent.run()` opens the one nursery they share; the client's
`source` is the recorder's `query(window)`, and its `node_config` callable is a
`NodeConfigWatcher` that reloads the node configuration file when it changes.

Shutdown order: `Agent.stop()` makes the client say goodbye (the proxy unregisters the agent at
once); when the client has returned, the watchdog is cancelled. See docs/agent.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

import attrs
import trio

from fodcproxy.agent.client import AgentClient, AgentClientStatistics, AgentSpec
from fodcproxy.agent.nodeconfig import load_node_config
from fodcproxy.agent.recorder import FlightRecorder, RecorderStatistics
from fodcproxy.agent.scrape import Watchdog, WatchdogStatistics
from fodcproxy.cli import FlagParser, exit_bad_flag, run_until_signal, setup_logging
from fodcproxy.config import format_duration, parse_duration
from fodcproxy.core.model import NodeConfig, Sample, TimeWindow
from fodcproxy.errors import ConfigError
from fodcproxy.security import client_context, load_token

__all__ = [
    "Agent",
    "AgentConfig",
    "AgentStatistics",
    "NodeConfigWatcher",
    "agent_config_from_args",
    "agent_main",
    "build_parser",
    "parse_labels",
    "parse_proxy_addr",
    "parse_size",
    "run_agent",
]

log = logging.getLogger(__name__)

DEFAULT_METRICS_ENDPOINT = "http://localhost:2121/metrics"
_MIN_MESSAGE_SIZE = 4096  # the client keeps 1 KiB of every message for framing
_MAX_MESSAGE_SIZE = 1024 * 1024 * 1024
_MIN_BUDGET = 1024
# The proxy's own rules (fodcproxy.core.registry), checked here so a bad flag fails at start
# instead of as a registration the proxy refuses forever.
_ROLE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_]+")
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?")
_LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")
_SIZE = re.compile(r"\s*(\d+)\s*([A-Za-z]*)\s*")
_SIZE_UNITS = {
    "": 1, "b": 1,
    "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3,
}


# --- flag values ---------------------------------------------------------------------------------


def parse_size(text: str, *, flag: str) -> int:
    """Parse a byte size: a whole number of bytes, or with a unit B, KB, MB, GB (powers of 1000)
    or KiB, MiB, GiB (powers of 1024), case-insensitive ("64MiB", "100MB", "4194304").

    Raises ConfigError naming `flag`.
    """
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _SIZE_UNITS:
        raise ConfigError(flag, f"{text!r} is not a size: write bytes like 4194304, 64MiB or 100MB")
    return int(m.group(1)) * _SIZE_UNITS[unit]


def parse_labels(text: str, *, flag: str = "--node-labels") -> dict[str, str]:
    """Parse `k1=v1,k2=v2` (empty text: no labels). Values may be empty and contain `=`.

    Raises ConfigError naming `flag` for a part without `=`, an empty or invalid key (the proxy
    exposes key `k` as label `node_k`, so keys use letters, digits and `_`), or a repeated key.
    """
    labels: dict[str, str] = {}
    if not text.strip():
        return labels
    for part in text.split(","):
        key, eq, value = part.partition("=")
        key = key.strip()
        if not eq:
            raise ConfigError(flag, f"{part.strip()!r} is not key=value: write k1=v1,k2=v2")
        if not _LABEL_KEY.fullmatch(key):
            raise ConfigError(flag, f"label name {key!r} is not valid: use letters, digits and '_' "
                                    "(the proxy shows it as node_<name>)")
        if key in labels:
            raise ConfigError(flag, f"label {key!r} is given twice")
        labels[key] = value.strip()
    return labels


def parse_proxy_addr(text: str, *, flag: str = "--proxy-addr") -> tuple[str, int]:
    """Parse the proxy's gRPC address: `host:port` or `[v6]:port`.

    Raises ConfigError naming `flag`.
    """
    host, sep, port_text = text.strip().rpartition(":")
    if not sep or not host:
        raise ConfigError(flag, f"{text!r} is not host:port: write it like localhost:17900")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    port = _port(port_text, flag)
    return host, port


def _port(text: str, flag: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(flag, f"port {text!r} is not a number") from None
    if not 1 <= port <= 65535:
        raise ConfigError(flag, f"port {port} is outside 1-65535")
    return port


def _check_endpoint(url: str) -> None:
    flag = "--metrics-endpoint"
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(flag, f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme != "http":
        raise ConfigError(flag, f"{url!r}: only http:// endpoints can be scraped")
    if not parts.hostname:
        raise ConfigError(flag, f"{url!r} names no host")
    if port == 0:
        raise ConfigError(flag, f"{url!r}: port 0 cannot be scraped")


def _check_ip(ip: str) -> None:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        if len(ip) > 255 or not _HOST_NAME.fullmatch(ip):
            raise ConfigError("--node-ip", f"{ip!r} is neither an IP address nor a host name") from None


# --- settings ------------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class AgentConfig:
    """Every setting of the agent (SPEC section 7). Durations in seconds, sizes in bytes.

    `node_ip` None means "the local address this host uses to reach the proxy", found at start.
    `scrape_timeout` None means the poll interval. Validated on construction: raises ConfigError
    naming the flag of the first bad setting.
    """

    node_role: str
    node_port: int = 17912
    node_ip: str | None = None
    node_labels: Mapping[str, str] = attrs.field(factory=dict)
    proxy_host: str = "localhost"
    proxy_port: int = 17900
    proxy_tls: bool = False
    proxy_tls_ca_file: str | None = None
    proxy_token_file: str | None = None
    heartbeat_interval: float = 10.0
    reconnect_interval: float = 5.0
    reconnect_max: float = 60.0
    metrics_endpoints: tuple[str, ...] = (DEFAULT_METRICS_ENDPOINT,)
    poll_metrics_interval: float = 10.0
    scrape_timeout: float | None = None
    flight_recorder_budget: int = 64 * 1024 * 1024
    flight_recorder_max_points: int | None = None
    flight_recorder_retention: float = 600.0
    node_config_file: str | None = None
    node_pid: int | None = None
    grpc_max_msg_size: int = 4 * 1024 * 1024
    log_level: str = "info"

    def __attrs_post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raises ConfigError naming the flag of the first bad setting."""
        if not _ROLE.fullmatch(self.node_role):
            raise ConfigError("--node-role", f"{self.node_role!r} is not a role: use letters, "
                                             "digits, '-', '_' or '.' (e.g. liaison, datanode-hot)")
        if not 1 <= self.node_port <= 65535:
            raise ConfigError("--node-port", f"port {self.node_port} is outside 1-65535")
        if self.node_ip is not None:
            _check_ip(self.node_ip)
        for key in self.node_labels:
            if not _LABEL_KEY.fullmatch(key):
                raise ConfigError("--node-labels", f"label name {key!r} is not valid")
        if not 1 <= self.proxy_port <= 65535:
            raise ConfigError("--proxy-addr", f"port {self.proxy_port} is outside 1-65535")
        for flag, value in (("--heartbeat-interval", self.heartbeat_interval),
                            ("--reconnect-interval", self.reconnect_interval),
                            ("--poll-metrics-interval", self.poll_metrics_interval),
                            ("--flight-recorder-retention", self.flight_recorder_retention)):
            if not value > 0:
                raise ConfigError(flag, "must be greater than 0")
        if self.reconnect_max < self.reconnect_interval:
            raise ConfigError("--reconnect-max", f"must be at least --reconnect-interval "
                                                 f"({format_duration(self.reconnect_interval)})")
        if not self.metrics_endpoints:
            raise ConfigError("--metrics-endpoint", "give at least one endpoint")
        for url in self.metrics_endpoints:
            _check_endpoint(url)
        poll = format_duration(self.poll_metrics_interval)
        if self.scrape_timeout is not None and not (
                0 < self.scrape_timeout <= self.poll_metrics_interval):
            # Like Prometheus: a scrape may not outlast the interval, or polls would overlap.
            raise ConfigError("--scrape-timeout",
                              f"must be greater than 0 and at most --poll-metrics-interval ({poll})")
        if self.flight_recorder_retention <= self.poll_metrics_interval:
            raise ConfigError("--flight-recorder-retention",
                              f"must be longer than --poll-metrics-interval ({poll}), or every "
                              "series would expire between two scrapes")
        if self.flight_recorder_budget < _MIN_BUDGET:
            raise ConfigError("--flight-recorder-budget", f"must be at least {_MIN_BUDGET} bytes")
        if self.flight_recorder_max_points is not None and self.flight_recorder_max_points < 1:
            raise ConfigError("--flight-recorder-max-points", "must be at least 1")
        if self.node_pid is not None and self.node_pid < 1:
            raise ConfigError("--node-pid", f"{self.node_pid} is not a process id")
        if not _MIN_MESSAGE_SIZE <= self.grpc_max_msg_size <= _MAX_MESSAGE_SIZE:
            raise ConfigError("--grpc-max-msg-size", f"must be between {_MIN_MESSAGE_SIZE} and "
                                                     f"{_MAX_MESSAGE_SIZE} bytes")
        if self.log_level.lower() not in _LOG_LEVELS:
            raise ConfigError("--log-level",
                              f"{self.log_level!r} is not one of debug, info, warning, error")


def build_parser(prog: str = "python -m fodcproxy agent") -> argparse.ArgumentParser:
    """The agent's flags. Values stay strings here; `agent_config_from_args` checks them, so that
    every bad value is reported the same way (exit 2, one line naming the flag)."""
    d = AgentConfig(node_role="liaison")
    dur = format_duration
    p = FlagParser(prog=prog, description="FODC agent: scrapes a BanyanDB node into a flight recorder "
                                       "and answers the FODC proxy from it.")
    p.add_argument("--proxy-addr", default=f"{d.proxy_host}:{d.proxy_port}",
                   help="the proxy's gRPC address, host:port (default localhost:17900)")
    p.add_argument("--proxy-tls", action="store_true",
                   help="connect to the proxy over TLS, trusting the system's CAs")
    p.add_argument("--proxy-tls-ca-file", default=None,
                   help="connect over TLS, trusting this CA certificate (PEM); implies --proxy-tls")
    p.add_argument("--agent-token-file", "--proxy-token-file", dest="proxy_token_file", default=None,
                   help="a file holding the bearer token the proxy asks of agents "
                        "(its --agent-token-file)")
    p.add_argument("--node-ip", default=None,
                   help="the node's IP (or host name) as the proxy shows it (default: the local "
                        "address this host uses to reach the proxy)")
    p.add_argument("--node-port", default=str(d.node_port),
                   help="the node's gRPC port (default 17912, BanyanDB's)")
    p.add_argument("--node-role", required=True,
                   help="the node's role: liaison, datanode-hot, datanode-warm, datanode-cold, ...")
    p.add_argument("--node-labels", default="", help="the node's labels, k1=v1,k2=v2")
    p.add_argument("--heartbeat-interval", default=dur(d.heartbeat_interval),
                   help="heartbeat interval until the proxy says otherwise (default 10s)")
    p.add_argument("--reconnect-interval", default=dur(d.reconnect_interval),
                   help="first reconnect delay; doubles after each failure (default 5s)")
    p.add_argument("--reconnect-max", default=dur(d.reconnect_max),
                   help="the longest reconnect delay (default 1m)")
    p.add_argument("--metrics-endpoint", action="append", default=None,
                   help=f"a Prometheus endpoint of the node; repeat for several "
                        f"(default {DEFAULT_METRICS_ENDPOINT})")
    p.add_argument("--poll-metrics-interval", default=dur(d.poll_metrics_interval),
                   help="how often the endpoints are scraped (default 10s)")
    p.add_argument("--scrape-timeout", default=None,
                   help="deadline of one scrape (default: the poll interval)")
    p.add_argument("--flight-recorder-budget", default="64MiB",
                   help="memory the flight recorder may hold, bytes or with a unit such as 64MiB "
                        "(default 64MiB); the oldest points go first")
    p.add_argument("--flight-recorder-max-points", default=None,
                   help="also bound the recorder by its number of points (default: no bound)")
    p.add_argument("--flight-recorder-retention", default=dur(d.flight_recorder_retention),
                   help="how long points are kept (default 10m)")
    p.add_argument("--node-config-file", default=None,
                   help="a JSON or TOML file with the node's startup_params and runtime_config; "
                        "reloaded when it changes")
    p.add_argument("--node-pid", default=None,
                   help="the node's process id: its command line becomes startup_params")
    p.add_argument("--grpc-max-msg-size", default=str(d.grpc_max_msg_size),
                   help="largest gRPC message, bytes; replies are chunked below it "
                        "(default 4194304, the proxy's)")
    p.add_argument("--log-level", default=d.log_level,
                   help="debug, info, warning or error (default info)")
    return p


def _whole(text: str, flag: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(flag, f"{text!r} is not a whole number") from None


def agent_config_from_args(ns: argparse.Namespace) -> AgentConfig:
    """Turn parsed flags into settings.

    Raises ConfigError naming the first bad flag.
    """
    proxy_host, proxy_port = parse_proxy_addr(ns.proxy_addr)
    poll = parse_duration(ns.poll_metrics_interval, flag="--poll-metrics-interval")
    timeout = None
    if ns.scrape_timeout is not None:
        timeout = parse_duration(ns.scrape_timeout, flag="--scrape-timeout")
    max_points = None
    if ns.flight_recorder_max_points is not None:
        max_points = _whole(ns.flight_recorder_max_points, "--flight-recorder-max-points")
    pid = None if ns.node_pid is None else _whole(ns.node_pid, "--node-pid")
    return AgentConfig(
        proxy_host=proxy_host,
        proxy_port=proxy_port,
        proxy_tls=ns.proxy_tls or ns.proxy_tls_ca_file is not None,
        proxy_tls_ca_file=ns.proxy_tls_ca_file,
        proxy_token_file=ns.proxy_token_file,
        node_ip=ns.node_ip.strip() if ns.node_ip is not None else None,
        node_port=_whole(ns.node_port, "--node-port"),
        node_role=ns.node_role.strip(),
        node_labels=parse_labels(ns.node_labels),
        heartbeat_interval=parse_duration(ns.heartbeat_interval, flag="--heartbeat-interval"),
        reconnect_interval=parse_duration(ns.reconnect_interval, flag="--reconnect-interval"),
        reconnect_max=parse_duration(ns.reconnect_max, flag="--reconnect-max"),
        metrics_endpoints=tuple(ns.metrics_endpoint or (DEFAULT_METRICS_ENDPOINT,)),
        poll_metrics_interval=poll,
        scrape_timeout=timeout,
        flight_recorder_budget=parse_size(ns.flight_recorder_budget,
                                          flag="--flight-recorder-budget"),
        flight_recorder_max_points=max_points,
        flight_recorder_retention=parse_duration(ns.flight_recorder_retention,
                                                 flag="--flight-recorder-retention"),
        node_config_file=ns.node_config_file,
        node_pid=pid,
        grpc_max_msg_size=parse_size(ns.grpc_max_msg_size, flag="--grpc-max-msg-size"),
        log_level=ns.log_level,
    )


# --- node configuration --------------------------------------------------------------------------


class NodeConfigWatcher:
    """The node configuration the agent reports, kept current.

    Call it (the `AgentClient` does, at registration and with every heartbeat) to get the current
    `NodeConfig`, or None when neither a file nor a pid was given. The command line of `pid` is
    read once, at construction: a process's argv does not change. The file is loaded at
    construction and again whenever its modification time, size or inode changes (an editor that
    saves by renaming counts); `collected_at` is the wall-clock time (`clock`) of that load, so an
    unchanged configuration is sent unchanged. A reload that fails (the file is being rewritten,
    or was removed) keeps the last good configuration and logs a warning.

    Raises ConfigError naming `--node-config-file` or `--node-pid` when the first load fails.
    """

    def __init__(self, path: str | None, *, pid: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._path = path
        self._clock = clock
        self._from_pid: dict[str, str] = {}
        if pid is not None:
            self._from_pid = dict(load_node_config(None, pid=pid, now=clock()).startup_params)
        self._stamp: tuple[int, int, int] | None = None
        self._error: str | None = None
        self._reloads = 0
        self._config: NodeConfig | None = None
        if path is None:
            if pid is not None:
                self._config = NodeConfig(startup_params=self._from_pid, collected_at=clock())
        else:
            self._stamp = self._stat(path)
            self._config = self._load(path)

    @property
    def reloads(self) -> int:
        """How many times a changed file was loaded again (the first load is not counted)."""
        return self._reloads

    def __call__(self) -> NodeConfig | None:
        """The current configuration, reloading the file first if it changed."""
        if self._path is not None:
            try:
                stamp = self._stat(self._path)
                if stamp != self._stamp:
                    self._config = self._load(self._path)
                    self._stamp = stamp
                    self._reloads += 1
                    self._error = None
                    log.info("node configuration reloaded from %s", self._path)
            except ConfigError as exc:
                if exc.message != self._error:
                    log.warning("keeping the last node configuration: %s", exc.message)
                    self._error = exc.message
        return self._config

    @staticmethod
    def _stat(path: str) -> tuple[int, int, int]:
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConfigError("--node-config-file",
                              f"cannot read {path}: {exc.strerror or exc}") from None
        return st.st_mtime_ns, st.st_size, st.st_ino

    def _load(self, path: str) -> NodeConfig:
        loaded = load_node_config(path, now=self._clock())
        if not self._from_pid:
            return loaded
        # Same precedence as load_node_config(path, pid=...): the file wins over the command line.
        return attrs.evolve(loaded, startup_params={**self._from_pid, **loaded.startup_params})


# --- the composition root ------------------------------------------------------------------------


@attrs.frozen
class AgentStatistics:
    """A snapshot of the agent's three parts."""

    recorder: RecorderStatistics
    watchdog: WatchdogStatistics
    client: AgentClientStatistics


class Agent:
    """One agent: a flight recorder, the watchdog that fills it and the client that serves it.

    Construction does no I/O beyond loading the node configuration, the token and the CA file.
    `run()` owns the nursery of the watchdog and the client; `stop()` ends it with a goodbye to
    the proxy.

    Raises ConfigError on construction, naming `--node-config-file`, `--node-pid`,
    `--proxy-token-file` or `--proxy-tls-ca-file` when one of them cannot be loaded.
    """

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.recorder = FlightRecorder(budget_bytes=config.flight_recorder_budget,
                                       budget_points=config.flight_recorder_max_points,
                                       retention=config.flight_recorder_retention)
        self.watchdog = Watchdog(self.recorder, config.metrics_endpoints,
                                 interval=config.poll_metrics_interval,
                                 timeout=config.scrape_timeout)
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

    @property
    def client(self) -> AgentClient:
        """The proxy client. Exists once `run()` has found the node's IP."""
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
        return self.recorder.query(window)

    async def run(self, *, task_status: trio.TaskStatus[Agent] = trio.TASK_STATUS_IGNORED) -> None:
        """Scrape and serve until `stop()`.

        Reports this `Agent` once the first poll has completed and the agent is registered with
        the proxy (or `stop()` came first), so `await nursery.start(agent.run)` returns an agent
        the proxy can already ask. While the proxy cannot be reached, the agent keeps scraping and
        keeps trying. Returns after the goodbye; only cancellation skips it.
        """
        cfg = self.config
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
        )
        if self._stop.is_set():
            self._client.stop()
        log.info("agent %s %s:%s: scraping %s every %s, proxy %s:%s", cfg.node_role, ip,
                 cfg.node_port, ", ".join(self.watchdog.endpoints),
                 format_duration(cfg.poll_metrics_interval), cfg.proxy_host, cfg.proxy_port)
        async with trio.open_nursery() as nursery:
            await nursery.start(self.watchdog.run)
            await nursery.start(self._serve, nursery.cancel_scope)
            task_status.started(self)
        log.info("agent stopped")

    async def _serve(self, scope: trio.CancelScope, *,
                     task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await self.client.run(task_status=task_status)
        # The client has said goodbye: the recorder has no one left to serve.
        scope.cancel()


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
    parser = build_parser(prog)
    ns = parser.parse_args(argv)
    try:
        config = agent_config_from_args(ns)
    except ConfigError as exc:
        exit_bad_flag(exc, prog)
    setup_logging(config.log_level)

    async def main() -> None:
        agent = Agent(config)
        await run_until_signal(agent.run, agent.stop)

    try:
        trio.run(main)
    except ConfigError as exc:
        exit_bad_flag(exc, prog)
