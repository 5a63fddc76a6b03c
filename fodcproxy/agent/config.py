"""The agent's flags and settings: `build_parser` defines the flags, `agent_config_from_args` turns
them into a validated `AgentConfig`. No I/O, no trio; `fodcproxy.agent.main` composes the agent.

Every bad value is reported the same way: ConfigError naming the flag (the program exits 2 with
that one line).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fodcproxy.errors import ConfigError
from fodcproxy.process import LOG_LEVELS, FlagParser, format_duration, parse_duration, parse_int

__all__ = [
    "DEFAULT_METRICS_ENDPOINT",
    "AgentConfig",
    "agent_config_from_args",
    "build_parser",
    "parse_labels",
    "parse_names",
    "parse_proxy_addr",
    "parse_size",
]

DEFAULT_METRICS_ENDPOINT = "http://localhost:2121/metrics"
DEFAULT_LIFECYCLE_PORT = 18912  # upstream's --lifecycle-port, for pod agents
_MIN_MESSAGE_SIZE = 4096  # the client keeps 1 KiB of every message for framing
_MAX_MESSAGE_SIZE = 1024 * 1024 * 1024
_MIN_BUDGET = 1024
_MAX_CRASH_RECORDS = 1024
_MIN_CRASH_POLL = 0.1  # a listing per 100 ms at most: watching, not spinning
# The proxy's own rules (fodcproxy.core.registry), checked here so a bad flag fails at start
# instead of as a registration the proxy refuses forever.
_ROLE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_LABEL_KEY = re.compile(r"[A-Za-z0-9_]+")
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.\-]{0,251}[A-Za-z0-9])?")  # pod and container names
_HOST_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?")
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


def parse_names(values: Sequence[str] | None) -> tuple[str, ...]:
    """The names of a repeatable, comma-separated flag (`--container-names a,b --container-names
    c`): in order, blanks around commas dropped. None (flag not given) gives ()."""
    return tuple(name.strip() for value in values or () for name in value.split(",")
                 if name.strip())


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

    Who the agent is: with `pod_name` a *pod agent* (upstream BanyanDB's kind: the pod is its
    identity, no primary address; `node_ip` must then be None and `node_port` is unused);
    without, an *address agent* whose identity is `node_ip`:`node_port`, `node_ip` None meaning
    "the local address this host uses to reach the proxy", found at start. `container_names`, if
    given, has one name per metrics endpoint (same order), stamped on its series as
    `container_name` and, for a pod agent, registered as its `container_names`.
    `scrape_timeout` None means the poll interval. Validated on construction: raises ConfigError
    naming the flag of the first bad setting.
    """

    node_role: str
    node_port: int = 17912
    node_ip: str | None = None
    node_labels: Mapping[str, str] = attrs.field(factory=dict)
    pod_name: str | None = None
    container_names: tuple[str, ...] = ()
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
    # The memory-pressure profiler (upstream's --pressure-profiler-* defaults).
    pressure_profiler_enabled: bool = True
    pressure_trigger_percent: int = 75
    pressure_pprof_url: str = "http://localhost:6060"
    pressure_cooldown: float = 300.0
    pressure_dir: str = "/tmp/pressure-profiles"
    pressure_max_artifacts: int = 16
    pressure_max_disk_bytes: int = 512 * 1024 * 1024
    pressure_limit_bytes: int | None = None
    pressure_capture_timeout: float = 30.0
    pressure_max_profile_bytes: int = 128 * 1024 * 1024
    grpc_max_msg_size: int = 4 * 1024 * 1024
    log_level: str = "info"
    # Lifecycle and schema consistency (issue 16), upstream's flags and defaults: the node's
    # GroupLifecycleService/NodeSchemaStateService port (0: off, neither stream is opened; None:
    # `lifecycle_node_port` decides), the liaison's registry port (0: this agent cannot read the
    # registry), the report directory.
    lifecycle_port: int | None = None
    schema_registry_port: int = 17912
    lifecycle_report_dir: str = "/tmp/lifecycle-reports"
    lifecycle_cache_ttl: float = 600.0
    # Crash records (docs/agent.md "Crash records"): watched only when directories are given.
    crash_source_dirs: tuple[str, ...] = ()
    crash_max_records: int = 32
    crash_poll_interval: float = 5.0

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
        if self.pod_name is not None:
            if not _NAME.fullmatch(self.pod_name):
                raise ConfigError("--pod-name", f"{self.pod_name[:64]!r} is not a pod name: at "
                                                "most 253 letters, digits, '-', '.' or '_'")
            if self.node_ip is not None:
                raise ConfigError("--pod-name", "a pod agent has no --node-ip: give --pod-name "
                                                "(a pod agent) or --node-ip (an address agent)")
        for name in self.container_names:
            if not _NAME.fullmatch(name):
                raise ConfigError("--container-names", f"{name[:64]!r} is not a container name: "
                                                       "1-253 letters, digits, '-', '.' or '_'")
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
        if self.container_names:
            if len(self.container_names) != len(self.metrics_endpoints):
                raise ConfigError(
                    "--container-names", f"{len(self.container_names)} names for "
                    f"{len(self.metrics_endpoints)} --metrics-endpoint: give one name per "
                    "endpoint, in the same order")
            if len(set(self.metrics_endpoints)) != len(self.metrics_endpoints):
                raise ConfigError("--metrics-endpoint", "an endpoint is given twice: with "
                                                        "--container-names each must be unique")
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
        _check_pressure(self)
        if not _MIN_MESSAGE_SIZE <= self.grpc_max_msg_size <= _MAX_MESSAGE_SIZE:
            raise ConfigError("--grpc-max-msg-size", f"must be between {_MIN_MESSAGE_SIZE} and "
                                                     f"{_MAX_MESSAGE_SIZE} bytes")
        for flag, port in (("--lifecycle-port", self.lifecycle_node_port),
                           ("--schema-registry-port", self.schema_registry_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(flag, f"port {port} is outside 0-65535 (0 turns it off)")
        if not self.lifecycle_report_dir:
            raise ConfigError("--lifecycle-report-dir", "give a directory")
        if self.lifecycle_cache_ttl < 0:
            raise ConfigError("--lifecycle-cache-ttl", "must be 0 (no cache) or more")
        self._validate_crash()
        if self.log_level.lower() not in LOG_LEVELS:
            raise ConfigError("--log-level",
                              f"{self.log_level!r} is not one of debug, info, warning, error")

    def _validate_crash(self) -> None:
        seen: dict[str, str] = {}
        for d in self.crash_source_dirs:
            try:
                d.encode("utf-8")  # it is sent as source_endpoint, a protobuf string
            except UnicodeEncodeError:
                raise ConfigError("--crash-source-dir", f"{d!r} is not UTF-8") from None
            if not d.strip() or not d.isprintable():
                raise ConfigError("--crash-source-dir", f"{d!r} is not a directory name")
            key = os.path.normpath(d)
            if key in seen:
                raise ConfigError("--crash-source-dir", f"{d!r} is given twice"
                                  + (f" (as {seen[key]!r})" if seen[key] != d else ""))
            seen[key] = d
        if not 1 <= self.crash_max_records <= _MAX_CRASH_RECORDS:
            raise ConfigError("--crash-max-records",
                              f"must be between 1 and {_MAX_CRASH_RECORDS}")
        if not self.crash_poll_interval >= _MIN_CRASH_POLL:
            raise ConfigError("--crash-poll-interval",
                              f"must be at least {format_duration(_MIN_CRASH_POLL)}")

    @property
    def is_pod(self) -> bool:
        """True for a pod agent (registers `pod_name`, no primary address)."""
        return self.pod_name is not None

    @property
    def lifecycle_node_port(self) -> int:
        """The node's lifecycle port the agent uses; 0 when lifecycle is off.

        Without --lifecycle-port: upstream's 18912 for a pod agent (upstream's kind, a sidecar
        of a BanyanDB node), off for an address agent. An agent that opens StreamLifecycle and
        cannot reach the node's InspectAll never answers, and the proxy then waits its whole
        --lifecycle-timeout (50 s) on every GET /cluster/lifecycle and judges every group
        UNKNOWN; an address agent (our own kind) often has no such node on 127.0.0.1.
        """
        if self.lifecycle_port is not None:
            return self.lifecycle_port
        return DEFAULT_LIFECYCLE_PORT if self.is_pod else 0

    def container_name(self, endpoint: str) -> str:
        """The container name of `endpoint` ("" without --container-names)."""
        if not self.container_names:
            return ""
        return self.container_names[self.metrics_endpoints.index(endpoint)]


def _check_pressure(c: AgentConfig) -> None:
    if not 1 <= c.pressure_trigger_percent <= 100:
        raise ConfigError("--pressure-profiler-trigger-percent",
                          f"{c.pressure_trigger_percent} is not between 1 and 100")
    parts = urllib.parse.urlsplit(c.pressure_pprof_url)
    if parts.scheme != "http" or not parts.hostname:
        raise ConfigError("--pressure-profiler-pprof-url", f"{c.pressure_pprof_url!r} is not an "
                                                           "http:// URL naming a host")
    if c.pressure_cooldown < 0:
        raise ConfigError("--pressure-profiler-cooldown", "must not be negative")
    if not c.pressure_dir:
        raise ConfigError("--pressure-profiler-dir", "give a directory")
    if c.pressure_max_artifacts < 0:
        raise ConfigError("--pressure-profiler-max-artifacts", "must not be negative (0: no cap)")
    if c.pressure_limit_bytes is not None and c.pressure_limit_bytes < 1:
        raise ConfigError("--pressure-profiler-limit-bytes", "must be at least 1 byte")
    if not c.pressure_capture_timeout > 0:
        raise ConfigError("--pressure-profiler-capture-timeout", "must be greater than 0")
    if c.pressure_max_profile_bytes < 1:
        raise ConfigError("--pressure-profiler-max-profile-bytes", "must be at least 1 byte")


def _add_pressure_flags(p: argparse.ArgumentParser, d: AgentConfig) -> None:
    p.add_argument("--pressure-profiler-enabled", nargs="?", const="true", default="true",
                   metavar="BOOL", help="capture the node's heap and goroutine pprof profiles "
                                        "when its RSS nears its memory limit (default true; "
                                        "--pressure-profiler-enabled=false turns it off)")
    p.add_argument("--pressure-profiler-trigger-percent", default=str(d.pressure_trigger_percent),
                   help="capture when RSS reaches this percent of the limit (default 75)")
    p.add_argument("--pressure-profiler-pprof-port", default=None,
                   help="port of the node's pprof endpoint on localhost (default 6060)")
    p.add_argument("--pressure-profiler-pprof-url", default=None,
                   help="base URL of the node's pprof endpoint, instead of a port "
                        "(default http://localhost:6060)")
    p.add_argument("--pressure-profiler-cooldown", default=format_duration(d.pressure_cooldown),
                   help="least time between two captures (default 5m)")
    p.add_argument("--pressure-profiler-dir", default=d.pressure_dir,
                   help="directory of the captured profiles (default /tmp/pressure-profiles)")
    p.add_argument("--pressure-profiler-max-artifacts", default=str(d.pressure_max_artifacts),
                   help="capture events kept; the oldest go first (default 16, 0: no cap)")
    p.add_argument("--pressure-profiler-max-disk-bytes", default="512MiB",
                   help="bytes the kept events may hold together (default 512MiB, 0: no cap)")
    p.add_argument("--pressure-profiler-limit-bytes", default=None,
                   help="the memory limit to trigger against (default: the node's scraped "
                        "banyandb_memory_protector_cgroup_limit_bytes, else the agent's cgroup "
                        "memory.max; none: the profiler idles)")
    p.add_argument("--pressure-profiler-capture-timeout",
                   default=format_duration(d.pressure_capture_timeout),
                   help="deadline of pulling one profile (default 30s)")
    p.add_argument("--pressure-profiler-max-profile-bytes", default="128MiB",
                   help="largest profile pulled; a larger one is not kept (default 128MiB)")


def _pressure_settings(ns: argparse.Namespace) -> dict[str, Any]:
    enabled = ns.pressure_profiler_enabled.strip().lower()
    if enabled not in ("true", "false", "1", "0"):
        raise ConfigError("--pressure-profiler-enabled", f"{enabled!r} is not true or false")
    if ns.pressure_profiler_pprof_url is not None and ns.pressure_profiler_pprof_port is not None:
        raise ConfigError("--pressure-profiler-pprof-url",
                          "give --pressure-profiler-pprof-url or --pressure-profiler-pprof-port, "
                          "not both")
    url = ns.pressure_profiler_pprof_url
    if url is None:
        port = _port(ns.pressure_profiler_pprof_port or "6060", "--pressure-profiler-pprof-port")
        url = f"http://localhost:{port}"
    limit = ns.pressure_profiler_limit_bytes
    return {
        "pressure_profiler_enabled": enabled in ("true", "1"),
        "pressure_trigger_percent": parse_int(ns.pressure_profiler_trigger_percent,
                                              "--pressure-profiler-trigger-percent"),
        "pressure_pprof_url": url.strip(),
        "pressure_cooldown": parse_duration(ns.pressure_profiler_cooldown,
                                            flag="--pressure-profiler-cooldown"),
        "pressure_dir": ns.pressure_profiler_dir,
        "pressure_max_artifacts": parse_int(ns.pressure_profiler_max_artifacts,
                                            "--pressure-profiler-max-artifacts"),
        "pressure_max_disk_bytes": parse_size(ns.pressure_profiler_max_disk_bytes,
                                              flag="--pressure-profiler-max-disk-bytes"),
        "pressure_limit_bytes": None if limit is None else parse_size(
            limit, flag="--pressure-profiler-limit-bytes"),
        "pressure_capture_timeout": parse_duration(ns.pressure_profiler_capture_timeout,
                                                   flag="--pressure-profiler-capture-timeout"),
        "pressure_max_profile_bytes": parse_size(ns.pressure_profiler_max_profile_bytes,
                                                 flag="--pressure-profiler-max-profile-bytes"),
    }


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
    p.add_argument("--node-port", default=None,
                   help="the node's gRPC port (default 17912, BanyanDB's); --node-ip or "
                        "--node-port makes an address agent, identified by the node's ip:port")
    p.add_argument("--pod-name", default=None,
                   help="the node's Kubernetes pod: the agent registers as a pod agent with this "
                        "identity, like upstream BanyanDB's agent (default: the POD_NAME "
                        "environment variable; not with --node-ip/--node-port)")
    p.add_argument("--container-names", action="append", default=None,
                   help="one container name per --metrics-endpoint, in the same order, "
                        "comma-separated or repeated; stamped on that endpoint's series as "
                        "container_name")
    p.add_argument("--node-role", required=True,
                   help="the node's role: liaison, datanode-hot, datanode-warm, datanode-cold, "
                        "...; a pod agent uses upstream's ROLE_LIAISON, ROLE_DATA (tier in node "
                        "label type), ROLE_META")
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
                   help="the node's process id: its command line becomes startup_params, and "
                        "its RSS (VmRSS) feeds the pressure profiler instead of the scrape")
    _add_pressure_flags(p, d)
    p.add_argument("--grpc-max-msg-size", default=str(d.grpc_max_msg_size),
                   help="largest gRPC message, bytes; replies are chunked below it "
                        "(default 4194304, the proxy's)")
    p.add_argument("--lifecycle-port", default=None,
                   help="the node's gRPC port of GroupLifecycleService.InspectAll and "
                        "NodeSchemaStateService, on 127.0.0.1 (default: 18912, upstream's, for a "
                        "pod agent; off for an address agent); 0 turns lifecycle collection off: "
                        "StreamLifecycle and StreamSchemaRegistry are not opened")
    p.add_argument("--schema-registry-port", default=str(d.schema_registry_port),
                   help="the local liaison's client gRPC port serving the schema registry, read "
                        "when the proxy asks this agent (default 17912); 0: none")
    p.add_argument("--lifecycle-report-dir", default=d.lifecycle_report_dir,
                   help="where the lifecycle sidecar writes its *.json reports; the 5 greatest "
                        "names of at most 5 MiB each are sent (default /tmp/lifecycle-reports)")
    p.add_argument("--lifecycle-cache-ttl", default=dur(d.lifecycle_cache_ttl),
                   help="how long collected lifecycle data is reused (default 10m; 0: never)")
    p.add_argument("--crash-source-dir", action="append", default=None,
                   help="a directory where the node writes its panic records (its "
                        "--panic-diagnostics-dir); repeat for several. Given, the agent watches "
                        "it and answers the proxy's StreamCrashDiagnostics")
    p.add_argument("--crash-max-records", default=str(d.crash_max_records),
                   help=f"how many crash records to keep, the newest of all directories "
                        f"(default {d.crash_max_records})")
    p.add_argument("--crash-poll-interval", default=dur(d.crash_poll_interval),
                   help=f"how often each crash directory is listed; a new record is read "
                        f"within it plus 250ms (default {dur(d.crash_poll_interval)}, at least "
                        f"100ms)")
    p.add_argument("--log-level", default=d.log_level,
                   help="debug, info, warning or error (default info)")
    return p


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
        max_points = parse_int(ns.flight_recorder_max_points, "--flight-recorder-max-points")
    pid = None if ns.node_pid is None else parse_int(ns.node_pid, "--node-pid")
    # Who the agent is: --node-ip/--node-port make an address agent (as before pod agents
    # existed); otherwise --pod-name, or POD_NAME as Kubernetes sets it, a pod agent; with none
    # of them, an address agent on the detected ip and port 17912 (the seed's defaults).
    address = ns.node_ip is not None or ns.node_port is not None
    if address and ns.pod_name is not None:
        raise ConfigError("--pod-name", "an agent is a pod agent (--pod-name) or an address agent "
                                        "(--node-ip/--node-port), not both")
    pod_name = None
    if not address:
        pod_name = (ns.pod_name if ns.pod_name is not None
                    else os.environ.get("POD_NAME", "")).strip() or None
    config = AgentConfig(
        proxy_host=proxy_host,
        proxy_port=proxy_port,
        proxy_tls=ns.proxy_tls or ns.proxy_tls_ca_file is not None,
        proxy_tls_ca_file=ns.proxy_tls_ca_file,
        proxy_token_file=ns.proxy_token_file,
        node_ip=ns.node_ip.strip() if ns.node_ip is not None else None,
        node_port=17912 if ns.node_port is None else parse_int(ns.node_port, "--node-port"),
        node_role=ns.node_role.strip(),
        node_labels=parse_labels(ns.node_labels),
        pod_name=pod_name,
        container_names=parse_names(ns.container_names),
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
        **_pressure_settings(ns),
        grpc_max_msg_size=parse_size(ns.grpc_max_msg_size, flag="--grpc-max-msg-size"),
        log_level=ns.log_level,
        lifecycle_port=(None if ns.lifecycle_port is None
                        else parse_int(ns.lifecycle_port, "--lifecycle-port")),
        schema_registry_port=parse_int(ns.schema_registry_port, "--schema-registry-port"),
        lifecycle_report_dir=ns.lifecycle_report_dir,
        lifecycle_cache_ttl=parse_duration(ns.lifecycle_cache_ttl, flag="--lifecycle-cache-ttl"),
        crash_source_dirs=tuple(ns.crash_source_dir or ()),
        crash_max_records=parse_int(ns.crash_max_records, "--crash-max-records"),
        crash_poll_interval=parse_duration(ns.crash_poll_interval, flag="--crash-poll-interval"),
    )
    # Neither: an address agent with the detected ip and port 17912, as it always was.
    return config
