"""Settings of the proxy, Go-style durations and listen addresses. Sans-IO, no trio."""

from __future__ import annotations

import math
import re

import attrs

from fodcproxy.errors import ConfigError

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, *, flag: str = "duration") -> float:
    """Parse a Go duration ("500ms", "30s", "5m", "1h30m"; a bare "0" too) into seconds.

    Raises:
        ConfigError: naming `flag`, when the text is not a duration.
    """
    s = text.strip()
    if s in ("0", "0s"):
        return 0.0
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ConfigError(flag, f"{text!r} is not a duration: write it like 500ms, 30s, 5m or 1h30m")
    return -total if neg else total


def format_duration(seconds: float) -> str:
    """The shortest Go-style spelling of a duration, for messages and --help."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0 and seconds:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def parse_listen_addr(text: str, *, flag: str) -> tuple[str, int]:
    """Parse "host:port", ":port" (all interfaces) or "[v6]:port". Port 0 picks a free one.

    Raises:
        ConfigError: naming `flag`.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ConfigError(flag, f"{text!r} has no port: write it like :17900 or 127.0.0.1:17900")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(flag, f"port {port_text!r} is not a number") from None
    if not 0 <= port <= 65535:
        raise ConfigError(flag, f"port {port} is outside 0-65535")
    return host, port


def check_advertise_addr(text: str) -> tuple[str, int]:
    """Parse --advertise-http-addr: "host:port" or "[v6]:port", with a host and a real port.

    Raises:
        ConfigError: naming the flag.
    """
    flag = "--advertise-http-addr"
    host, port = parse_listen_addr(text, flag=flag)
    if not host or any(c.isspace() or c in "/?#@" for c in host):
        raise ConfigError(flag, f"{text!r} needs a host Prometheus can dial: write it like "
                                "proxy.example:17901 or 10.0.0.5:17901")
    if port == 0:
        raise ConfigError(flag, "port 0 is not an address Prometheus can dial")
    return host, port


@attrs.frozen(kw_only=True)
class ProxyConfig:
    """Every setting of the proxy (SPEC section 5). Durations in seconds."""

    grpc_host: str = ""
    grpc_port: int = 17900
    http_host: str = ""
    http_port: int = 17901
    agent_heartbeat_timeout: float = 30.0
    agent_cleanup_timeout: float = 300.0
    heartbeat_interval: float = 10.0
    max_agents: int = 1000
    grpc_max_msg_size: int = 4 * 1024 * 1024
    http_read_timeout: float = 10.0
    http_write_timeout: float = 10.0
    collect_timeout: float = 8.0
    log_level: str = "info"
    # Security, off by default (see README "Operating").
    grpc_tls_cert_file: str | None = None
    grpc_tls_key_file: str | None = None
    http_tls_cert_file: str | None = None
    http_tls_key_file: str | None = None
    agent_token: str | None = None  # agents must send "authorization: Bearer <token>"
    http_token: str | None = None  # HTTP clients likewise, except on /health
    # Longest /metrics-windows window accepted (seconds); None = no limit.
    max_query_window: float | None = 24 * 3600.0
    # How long StreamMetrics waits for the registration it names to be processed.
    attach_grace: float = 2.0
    # Graceful shutdown (--shutdown-grace): how long running HTTP requests get to finish, then
    # how long gRPC calls get to send their trailers. Above --collect-timeout by default, so a
    # scrape running when SIGTERM arrives still gets its answer.
    shutdown_grace: float = 10.0
    # host:port that /sd hands to Prometheus as the target (--advertise-http-addr); None: the
    # address the HTTP server is bound to (the machine's host name when bound to all interfaces).
    advertise_http_addr: str | None = None

    def __attrs_post_init__(self) -> None:
        self.validate()

    @property
    def http_shutdown_grace(self) -> float:
        """How long hypercorn lets running requests finish after a shutdown began."""
        return self.shutdown_grace

    @property
    def heartbeat_interval_seconds(self) -> int:
        """What agents are told: whole seconds, rounded up, never 0."""
        return max(1, math.ceil(self.heartbeat_interval))

    def validate(self) -> None:
        """Raises ConfigError naming the first bad setting."""
        if not self.agent_heartbeat_timeout > 0:
            raise ConfigError("--agent-heartbeat-timeout", "must be greater than 0")
        if not self.agent_cleanup_timeout > self.agent_heartbeat_timeout:
            raise ConfigError(
                "--agent-cleanup-timeout",
                f"must be greater than --agent-heartbeat-timeout "
                f"({format_duration(self.agent_cleanup_timeout)} <= "
                f"{format_duration(self.agent_heartbeat_timeout)})",
            )
        # Agents are told whole seconds, rounded up: that is what must stay below the timeout.
        if not (0 < self.heartbeat_interval
                and self.heartbeat_interval_seconds < self.agent_heartbeat_timeout):
            raise ConfigError(
                "--heartbeat-interval",
                f"must be greater than 0 and, rounded up to whole seconds as agents are told it, "
                f"below --agent-heartbeat-timeout ({format_duration(self.agent_heartbeat_timeout)})",
            )
        if self.max_agents < 1:
            raise ConfigError("--max-agents", "must be at least 1")
        if not 1024 <= self.grpc_max_msg_size <= 1024 * 1024 * 1024:
            raise ConfigError("--grpc-max-msg-size", "must be between 1024 and 1073741824 bytes")
        for flag, value in (("--http-read-timeout", self.http_read_timeout),
                            ("--http-write-timeout", self.http_write_timeout),
                            ("--collect-timeout", self.collect_timeout)):
            if not value > 0:
                raise ConfigError(flag, "must be greater than 0")
        if not self.shutdown_grace >= 0:
            raise ConfigError("--shutdown-grace", "must be 0 or more")
        if self.advertise_http_addr is not None:
            check_advertise_addr(self.advertise_http_addr)
        if self.log_level.lower() not in ("debug", "info", "warning", "warn", "error", "critical"):
            raise ConfigError("--log-level", f"{self.log_level!r} is not one of debug, info, warning, error")
        for prefix, cert, key in (("--grpc", self.grpc_tls_cert_file, self.grpc_tls_key_file),
                                  ("--http", self.http_tls_cert_file, self.http_tls_key_file)):
            if (cert is None) != (key is None):
                missing = f"{prefix}-tls-key-file" if key is None else f"{prefix}-tls-cert-file"
                raise ConfigError(missing, "TLS needs both a certificate and a key file")
        if self.max_query_window is not None and not self.max_query_window > 0:
            raise ConfigError("--max-query-window", "must be greater than 0")
        for flag, port in (("--grpc-listen-addr", self.grpc_port), ("--http-listen-addr", self.http_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(flag, f"port {port} is outside 0-65535")
