"""Settings of the proxy, its flags and listen addresses. No trio.

The proxy's flag definitions live here (`add_proxy_flags`, `proxy_config_from_args`), next to the
`ProxyConfig` they fill; `python -m fodcproxy` and `python -m fodcproxy demo` both use them. Only
`proxy_config_from_args` does I/O: it reads the token and certificate files the flags name.
Go durations are `fodcproxy.process`'s, re-exported here.
"""

from __future__ import annotations

import argparse
import math
import os

import attrs

from fodcproxy.errors import ConfigError
from fodcproxy.process import format_duration, parse_duration, parse_int
from fodcproxy.security import load_token, server_context

__all__ = ["ProxyConfig", "add_proxy_flags", "format_duration", "parse_duration",
           "parse_listen_addr", "proxy_config_from_args"]


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
    # GET /cluster/lifecycle's deadline for the agents' lifecycle data and the registry read
    # (upstream: 40 s for a liaison's InspectAll plus 10 s).
    lifecycle_timeout: float = 50.0
    # Collect lifecycle data in the background this often (seconds), keeping the schema gauges
    # of /metrics current; 0: only when GET /cluster/lifecycle asks (upstream).
    lifecycle_interval: float = 0.0
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
    # Size caps on what an agent sends (SPEC section 10); far above what an honest agent sends.
    max_secondary_addresses: int = 64
    max_secondary_address_key_length: int = 256  # bytes (UTF-8) of one secondary address's name
    max_node_config_bytes: int = 256 * 1024  # serialized NodeConfig of one registration
    max_reply_bytes: int = 256 * 1024 * 1024  # serialized chunks of one metrics reply, summed
    # Graceful shutdown (--shutdown-grace): how long running HTTP requests get to finish, then
    # how long gRPC calls get to send their trailers. Above --collect-timeout by default, so a
    # scrape running when SIGTERM arrives still gets its answer.
    shutdown_grace: float = 10.0
    # host:port that /sd hands to Prometheus as the target (--advertise-http-addr); None: the
    # address the HTTP server is bound to (the machine's host name when bound to all interfaces).
    advertise_http_addr: str | None = None
    # What one gRPC client can make the proxy hold (SPEC section 10, docs/lifecycle.md).
    grpc_handshake_timeout: float = 10.0  # TLS + HTTP/2 preface; a RegisterAgent's first message
    grpc_idle_timeout: float = 30.0  # a connection that carries no registered agent
    grpc_message_timeout: float = 30.0  # a started message must finish within this
    grpc_max_connections: int = 0  # 0: --max-agents plus a quarter (at least 16 more)
    grpc_buffer_budget: int = 32 * 1024 * 1024  # bytes of unconsumed messages, all connections
    # Crash records and pressure profiles (docs/http-api.md, "Diagnostics").
    diagnostics_settle: float = 0.5  # an agent's crash records are complete after this quiet
    diagnostics_refresh_interval: float = 60.0  # background collection for the gauges; 0: off
    profile_chunk_timeout: float = 30.0  # each chunk of a profile download, both directions

    @property
    def grpc_connection_limit(self) -> int:
        """--grpc-max-connections, or what 0 stands for: room for every agent, take-overs and
        a few tools."""
        if self.grpc_max_connections:
            return self.grpc_max_connections
        return self.max_agents + max(16, self.max_agents // 4)

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
                            ("--collect-timeout", self.collect_timeout),
                            ("--lifecycle-timeout", self.lifecycle_timeout)):
            if not value > 0:
                raise ConfigError(flag, "must be greater than 0")
        if not self.lifecycle_interval >= 0:
            raise ConfigError("--lifecycle-interval", "must be 0 (off) or more")
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
        for flag, value in (("--grpc-handshake-timeout", self.grpc_handshake_timeout),
                            ("--grpc-idle-timeout", self.grpc_idle_timeout),
                            ("--grpc-message-timeout", self.grpc_message_timeout)):
            if not value > 0:
                raise ConfigError(flag, "must be greater than 0")
        if self.grpc_max_connections < 0:
            raise ConfigError("--grpc-max-connections", "must be 0 (automatic) or more")
        if self.grpc_buffer_budget < 2 * (self.grpc_max_msg_size + 5):
            raise ConfigError(
                "--grpc-buffer-budget",
                f"must hold at least two messages of --grpc-max-msg-size "
                f"({2 * (self.grpc_max_msg_size + 5)} bytes)")
        for flag, value, least in (
                ("--max-secondary-addresses", self.max_secondary_addresses, 0),
                ("--max-secondary-address-key-length", self.max_secondary_address_key_length, 1),
                ("--max-node-config-bytes", self.max_node_config_bytes, 0),
                ("--max-reply-bytes", self.max_reply_bytes, 1024)):
            if value < least:
                raise ConfigError(flag, f"must be at least {least}")
        if not self.diagnostics_settle > 0:
            raise ConfigError("--diagnostics-settle", "must be greater than 0")
        if not self.diagnostics_refresh_interval >= 0:
            raise ConfigError("--diagnostics-refresh-interval", "must be 0 (off) or more")
        if not self.profile_chunk_timeout > 0:
            raise ConfigError("--profile-chunk-timeout", "must be greater than 0")
        if self.max_query_window is not None and not self.max_query_window > 0:
            raise ConfigError("--max-query-window", "must be greater than 0")
        for flag, port in (("--grpc-listen-addr", self.grpc_port), ("--http-listen-addr", self.http_port)):
            if not 0 <= port <= 65535:
                raise ConfigError(flag, f"port {port} is outside 0-65535")


# --- flags ---------------------------------------------------------------------------------------


def add_proxy_flags(p: argparse.ArgumentParser) -> None:
    d = ProxyConfig()
    dur = format_duration
    p.add_argument("--grpc-listen-addr", default=":17900", help="gRPC address for agents (default :17900)")
    p.add_argument("--http-listen-addr", default=":17901", help="HTTP API address (default :17901)")
    p.add_argument("--agent-heartbeat-timeout", default=dur(d.agent_heartbeat_timeout),
                   help="an agent with no heartbeat for this long is offline (default 30s)")
    p.add_argument("--agent-cleanup-timeout", default=dur(d.agent_cleanup_timeout),
                   help="an agent offline this long is unregistered; must exceed the heartbeat "
                        "timeout (default 5m)")
    p.add_argument("--heartbeat-interval", default=dur(d.heartbeat_interval),
                   help="heartbeat interval told to agents, below the heartbeat timeout (default 10s)")
    p.add_argument("--max-agents", default=str(d.max_agents),
                   help="most agents registered at once, offline ones included (default 1000)")
    p.add_argument("--grpc-max-msg-size", default=str(d.grpc_max_msg_size),
                   help="largest gRPC message accepted, bytes (default 4194304)")
    p.add_argument("--http-read-timeout", default=dur(d.http_read_timeout),
                   help="how long a client may take to send a request, and how long an idle "
                        "keep-alive connection is kept; never cuts an answer being prepared or "
                        "sent (default 10s)")
    p.add_argument("--http-write-timeout", default=dur(d.http_write_timeout),
                   help="how long sending one response may take; a client reading slower is cut "
                        "off (default 10s)")
    p.add_argument("--collect-timeout", default=dur(d.collect_timeout),
                   help="metrics fan-out deadline; lowered by X-Prometheus-Scrape-Timeout-Seconds "
                        "(default 8s)")
    p.add_argument("--lifecycle-timeout", default=dur(d.lifecycle_timeout),
                   help="GET /cluster/lifecycle's deadline for the agents' lifecycle data and the "
                        "schema registry read; HTTP timeouts never cut it (default 50s)")
    p.add_argument("--lifecycle-interval", default=dur(d.lifecycle_interval),
                   help="also collect lifecycle data in the background this often, so the "
                        "schema gauges on /metrics stay current; 0 = only when "
                        "GET /cluster/lifecycle asks, as upstream (default 0s)")
    p.add_argument("--log-level", default="info", help="debug, info, warning or error (default info)")
    sec = p.add_argument_group("security (off by default)")
    sec.add_argument("--grpc-tls-cert-file", help="serve gRPC over TLS with this certificate (PEM)")
    sec.add_argument("--grpc-tls-key-file", help="... and this private key (PEM)")
    sec.add_argument("--http-tls-cert-file", help="serve HTTP over TLS with this certificate (PEM)")
    sec.add_argument("--http-tls-key-file", help="... and this private key (PEM)")
    sec.add_argument("--agent-token-file", help="agents must send 'authorization: Bearer <token>' with "
                                                "the token in this file")
    sec.add_argument("--http-token-file", help="HTTP clients must send 'Authorization: Bearer <token>' "
                                               "(except on /health)")
    p.add_argument("--max-query-window", default="24h",
                   help="longest /metrics-windows window accepted (default 24h)")
    p.add_argument("--shutdown-grace", default=dur(d.shutdown_grace),
                   help="on SIGTERM, how long running HTTP requests get to finish (then agents' "
                        "calls get as long to end); keep it above --collect-timeout (default 10s)")
    p.add_argument("--advertise-http-addr", default=None,
                   help="host:port that /sd gives Prometheus as the scrape target (default: the "
                        "HTTP listen address; the host name when listening on all interfaces)")
    lim = p.add_argument_group("limits for agents and gRPC clients (see README, Exposure)")
    lim.add_argument("--grpc-max-connections", default=str(d.grpc_max_connections),
                     help="most gRPC connections at once; more are closed at once (default 0: "
                          "--max-agents plus a quarter, within the descriptor limit)")
    lim.add_argument("--grpc-buffer-budget", default=str(d.grpc_buffer_budget),
                     help="bytes of received, unconsumed gRPC messages held for all connections "
                          "together; past it the proxy stops reading (default 33554432)")
    lim.add_argument("--grpc-handshake-timeout", default=dur(d.grpc_handshake_timeout),
                     help="a connection must finish its TLS and HTTP/2 preface, and a "
                          "RegisterAgent call send its first message, within this (default 10s)")
    lim.add_argument("--grpc-idle-timeout", default=dur(d.grpc_idle_timeout),
                     help="a connection that carries no registered agent is closed after this "
                          "(default 30s)")
    lim.add_argument("--grpc-message-timeout", default=dur(d.grpc_message_timeout),
                     help="a gRPC message that has started must finish within this (default 30s)")
    lim.add_argument("--max-secondary-addresses", default=str(d.max_secondary_addresses),
                     help="most secondary addresses one registration may carry (default 64)")
    lim.add_argument("--max-secondary-address-key-length",
                     default=str(d.max_secondary_address_key_length),
                     help="longest secondary address name, bytes (default 256)")
    lim.add_argument("--max-node-config-bytes", default=str(d.max_node_config_bytes),
                     help="largest node_config of one registration, serialized bytes "
                          "(default 262144)")
    lim.add_argument("--max-reply-bytes", default=str(d.max_reply_bytes),
                     help="largest metrics, lifecycle or schema registry reply of one agent, its "
                          "chunks' serialized bytes summed; a bigger reply is refused (metrics: "
                          "that agent is up 0; lifecycle: it did not respond; registry: the next "
                          "liaison is asked) (default 268435456)")

    diag = p.add_argument_group("crash records and pressure profiles (GET /diagnostics, "
                                "/pressure-profiles)")
    diag.add_argument("--diagnostics-settle", default=dur(d.diagnostics_settle),
                      help="an agent's crash records are complete once its stream has been "
                           "quiet this long after the request (never past --collect-timeout; "
                           "default 500ms)")
    diag.add_argument("--diagnostics-refresh-interval",
                      default=dur(d.diagnostics_refresh_interval),
                      help="collect every agent's crash records and profiles this often for the "
                           "fodc_agent_crash_records and fodc_agent_pressure_profiles gauges, and "
                           "an agent's a second after its streams attach (0: only when asked "
                           "over HTTP; default 1m)")
    diag.add_argument("--profile-chunk-timeout", default=dur(d.profile_chunk_timeout),
                      help="a profile download ends when the agent sends no chunk, or the HTTP "
                           "client takes none, for this long (default 30s)")


def _readable(path: str | None, flag: str) -> str | None:
    if path is not None and not os.access(path, os.R_OK):
        raise ConfigError(flag, f"cannot read {path}")
    return path


def proxy_config_from_args(ns: argparse.Namespace) -> ProxyConfig:
    """Raises ConfigError naming the first bad flag."""
    grpc_host, grpc_port = parse_listen_addr(ns.grpc_listen_addr, flag="--grpc-listen-addr")
    http_host, http_port = parse_listen_addr(ns.http_listen_addr, flag="--http-listen-addr")
    config = ProxyConfig(
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        http_host=http_host,
        http_port=http_port,
        agent_heartbeat_timeout=parse_duration(ns.agent_heartbeat_timeout, flag="--agent-heartbeat-timeout"),
        agent_cleanup_timeout=parse_duration(ns.agent_cleanup_timeout, flag="--agent-cleanup-timeout"),
        heartbeat_interval=parse_duration(ns.heartbeat_interval, flag="--heartbeat-interval"),
        max_agents=parse_int(ns.max_agents, "--max-agents"),
        grpc_max_msg_size=parse_int(ns.grpc_max_msg_size, "--grpc-max-msg-size"),
        http_read_timeout=parse_duration(ns.http_read_timeout, flag="--http-read-timeout"),
        http_write_timeout=parse_duration(ns.http_write_timeout, flag="--http-write-timeout"),
        collect_timeout=parse_duration(ns.collect_timeout, flag="--collect-timeout"),
        lifecycle_timeout=parse_duration(ns.lifecycle_timeout, flag="--lifecycle-timeout"),
        lifecycle_interval=parse_duration(ns.lifecycle_interval, flag="--lifecycle-interval"),
        log_level=ns.log_level,
        grpc_tls_cert_file=_readable(ns.grpc_tls_cert_file, "--grpc-tls-cert-file"),
        grpc_tls_key_file=_readable(ns.grpc_tls_key_file, "--grpc-tls-key-file"),
        http_tls_cert_file=_readable(ns.http_tls_cert_file, "--http-tls-cert-file"),
        http_tls_key_file=_readable(ns.http_tls_key_file, "--http-tls-key-file"),
        agent_token=load_token(ns.agent_token_file, flag="--agent-token-file") if ns.agent_token_file else None,
        http_token=load_token(ns.http_token_file, flag="--http-token-file") if ns.http_token_file else None,
        max_query_window=parse_duration(ns.max_query_window, flag="--max-query-window"),
        grpc_max_connections=parse_int(ns.grpc_max_connections, "--grpc-max-connections"),
        grpc_buffer_budget=parse_int(ns.grpc_buffer_budget, "--grpc-buffer-budget"),
        grpc_handshake_timeout=parse_duration(ns.grpc_handshake_timeout,
                                              flag="--grpc-handshake-timeout"),
        grpc_idle_timeout=parse_duration(ns.grpc_idle_timeout, flag="--grpc-idle-timeout"),
        grpc_message_timeout=parse_duration(ns.grpc_message_timeout, flag="--grpc-message-timeout"),
        max_secondary_addresses=parse_int(ns.max_secondary_addresses, "--max-secondary-addresses"),
        max_secondary_address_key_length=parse_int(ns.max_secondary_address_key_length,
                                                   "--max-secondary-address-key-length"),
        max_node_config_bytes=parse_int(ns.max_node_config_bytes, "--max-node-config-bytes"),
        max_reply_bytes=parse_int(ns.max_reply_bytes, "--max-reply-bytes"),
        shutdown_grace=parse_duration(ns.shutdown_grace, flag="--shutdown-grace"),
        advertise_http_addr=ns.advertise_http_addr,
        diagnostics_settle=parse_duration(ns.diagnostics_settle, flag="--diagnostics-settle"),
        diagnostics_refresh_interval=parse_duration(ns.diagnostics_refresh_interval,
                                                    flag="--diagnostics-refresh-interval"),
        profile_chunk_timeout=parse_duration(ns.profile_chunk_timeout,
                                             flag="--profile-chunk-timeout"),
    )
    # Load certificates now, so a bad one is a flag error and not a crash after binding.
    if config.grpc_tls_cert_file and config.grpc_tls_key_file:
        server_context(config.grpc_tls_cert_file, config.grpc_tls_key_file, flag="--grpc-tls-cert-file")
    if config.http_tls_cert_file and config.http_tls_key_file:
        server_context(config.http_tls_cert_file, config.http_tls_key_file, flag="--http-tls-cert-file")
    return config
