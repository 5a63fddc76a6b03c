"""Flags and settings of `python -m fodcproxy fake-agents` and `python -m fodcproxy demo`. No I/O.

`fake_agents_parser` / `demo_parser` define the flags, `fake_agents_config_from_args` and
`proxy_config_from_args` check them: a bad value is a ConfigError naming the flag (the program exits
2 with that one line). The fakes parse labels and the proxy address the way the agent does.
"""

from __future__ import annotations

import argparse
import ipaddress
import math
import random
from collections.abc import Mapping

import attrs

from fodcproxy.agent.config import parse_labels, parse_proxy_addr
from fodcproxy.config import add_proxy_flags
from fodcproxy.errors import ConfigError
from fodcproxy.process import LOG_LEVELS, FlagParser, parse_duration, parse_int

__all__ = ["MISBEHAVIOURS", "OVERSIZED_BYTES", "ROLES", "SHAPES", "FakeAgentsConfig", "PodShape",
           "demo_parser", "fake_agents_config_from_args", "fake_agents_parser", "parse_misbehave",
           "pod_shape"]

ROLES = ("liaison", "datanode-hot", "datanode-warm", "datanode-cold")
#: How fake agents register: "address" (identity = node ip:port, like fodcproxy's own agent with
#: --node-ip) or "pod" (identity = the pod, like upstream BanyanDB's agent today).
SHAPES = ("address", "pod")


@attrs.frozen
class PodShape:
    """How a role of the seed's naming looks on a pod agent (upstream BanyanDB's agent)."""

    role: str  # ROLE_LIAISON, ROLE_DATA, ROLE_META, or the role as given
    labels: Mapping[str, str]  # node labels it adds: the data tier as `type`
    pod_prefix: str  # `banyandb-<pod_prefix>-<i>`
    container: str  # its container's name, stamped as `container_name`


def pod_shape(role: str) -> PodShape:
    """`liaison` -> ROLE_LIAISON in pods `banyandb-liaison-<i>`; `datanode-hot` -> ROLE_DATA with
    node label `type=hot` in pods `banyandb-data-hot-<i>`; `meta` -> ROLE_META; upstream's names
    are kept; any other role is kept, its pods named after it."""
    if role in ("liaison", "ROLE_LIAISON"):
        return PodShape("ROLE_LIAISON", {}, "liaison", "liaison")
    if role.startswith("datanode-"):
        tier = role.removeprefix("datanode-")
        return PodShape("ROLE_DATA", {"type": tier}, f"data-{tier}", "data")
    if role == "ROLE_DATA":
        return PodShape("ROLE_DATA", {}, "data", "data")
    if role in ("meta", "ROLE_META"):
        return PodShape("ROLE_META", {}, "meta", "meta")
    name = "".join(c if c.isalnum() else "-" for c in role.lower()).strip("-") or "node"
    return PodShape(role, {}, name, name)
MISBEHAVIOURS = ("slow", "hung", "drop", "noheartbeat", "noecho", "oversized", "malformed")
#: Bytes of an `oversized` reply: over the proxy's default --grpc-max-msg-size (4 MiB).
OVERSIZED_BYTES = 4 * 1024 * 1024 + 64 * 1024


@attrs.frozen(kw_only=True)
class FakeAgentsConfig:
    """Settings of `python -m fodcproxy fake-agents`."""

    proxy_host: str
    proxy_port: int
    count: int
    series: int
    roles: tuple[str, ...] = ROLES
    labels: Mapping[str, str] = attrs.field(factory=dict)
    history_points: int = 0
    history_step: float = 10.0
    ip_base: str = "127.0.0.1"
    port_base: int = 20000
    misbehave: Mapping[str, float] = attrs.field(factory=dict)
    slow_delay: float = 3.0
    heartbeat_interval: float = 10.0
    reconnect_interval: float = 1.0
    seed: int = 1
    log_level: str = "warning"
    shape: str = "address"
    crash_records: int = 0  # --crash-records: per pod agent
    pressure_profiles: int = 0  # --pressure-profiles: captures per pod agent

    def identity(self, i: int) -> tuple[str, int]:
        """(ip, port) of agent `i`: ports from `port_base`; past 65535 the next ip."""
        per_ip = 65536 - self.port_base
        ip = ipaddress.ip_address(self.ip_base) + i // per_ip
        return str(ip), self.port_base + i % per_ip

    def pod(self, i: int) -> tuple[str, PodShape]:
        """(pod name, shape) of agent `i` with `--shape pod`: `banyandb-<role>-<n>`, `n` counting
        the agents of that role."""
        shape = pod_shape(self.roles[i % len(self.roles)])
        return f"banyandb-{shape.pod_prefix}-{i // len(self.roles)}", shape

    def assign_misbehaviours(self) -> list[str | None]:
        """Which misbehaviour each agent has (None: well-behaved), spread by `seed`."""
        out: list[str | None] = [None] * self.count
        order = list(range(self.count))
        random.Random(self.seed).shuffle(order)
        pos = 0
        for kind in MISBEHAVIOURS:
            n = round(self.misbehave.get(kind, 0.0) * self.count)
            for i in order[pos:pos + n]:
                out[i] = kind
            pos += n
        return out


def parse_misbehave(text: str, *, flag: str = "--misbehave") -> dict[str, float]:
    """Parse `slow=0.05,hung=0.01`: fractions of the agents per misbehaviour, summing to <= 1.

    Raises ConfigError naming `flag`.
    """
    out: dict[str, float] = {}
    if not text.strip():
        return out
    for part in text.split(","):
        kind, eq, value = part.partition("=")
        kind = kind.strip()
        if kind not in MISBEHAVIOURS:
            raise ConfigError(flag, f"{kind!r} is not one of {', '.join(MISBEHAVIOURS)}")
        try:
            frac = float(value) if eq else math.nan
        except ValueError:
            frac = math.nan
        if not 0.0 <= frac <= 1.0:
            raise ConfigError(flag, f"{part.strip()!r}: write kind=fraction with a fraction from 0 to 1")
        out[kind] = frac
    if sum(out.values()) > 1.0 + 1e-9:
        raise ConfigError(flag, "the fractions add up to more than 1")
    return out


def fake_agents_parser(prog: str) -> argparse.ArgumentParser:
    p = FlagParser(prog=prog, description="N simulated FODC agents in one process, for demos and load. "
                "Values change with every request; SIGINT/SIGTERM make them all say goodbye.")
    p.add_argument("--proxy-addr", default="localhost:17900", help="the proxy's gRPC address (default localhost:17900)")
    p.add_argument("--count", default="10", help="number of agents (default 10)")
    p.add_argument("--shape", default="address",
                   help="address: agents identified by node ip:port (--ip-base, --port-base), like "
                        "fodcproxy's own agent; pod: agents identified by their pod, like upstream "
                        "BanyanDB's agent (pods banyandb-<role>-<n>, roles ROLE_LIAISON and "
                        "ROLE_DATA with node label type=hot|warm|cold, series stamped with "
                        "node_role, pod_name and container_name) (default address)")
    p.add_argument("--series", default="100", help="series per agent, 5 labels each (default 100)")
    p.add_argument("--roles", default=",".join(ROLES),
                   help=f"roles given round-robin (default {','.join(ROLES)})")
    p.add_argument("--labels", default="", help="node labels of every agent, k1=v1,k2=v2")
    p.add_argument("--history-points", default="0",
                   help="timestamped points per series for window queries (default 0)")
    p.add_argument("--history-step", default="10s", help="time between history points (default 10s)")
    p.add_argument("--ip-base", default="127.0.0.1",
                   help="node ip of the agents (default 127.0.0.1; the next ip once ports run out)")
    p.add_argument("--port-base", default="20000", help="agent i reports node port port-base+i (default 20000)")
    p.add_argument("--misbehave", default="",
                   help="fractions of misbehaving agents, e.g. slow=0.05,hung=0.01,drop=0.01; kinds: "
                        + ", ".join(MISBEHAVIOURS))
    p.add_argument("--slow-delay", default="3s", help="how long a slow agent takes to answer (default 3s)")
    p.add_argument("--heartbeat-interval", default="10s",
                   help="heartbeat interval until the proxy tells another (default 10s)")
    p.add_argument("--reconnect-interval", default="1s", help="first reconnect delay (default 1s)")
    p.add_argument("--seed", default="1", help="seed for values and the misbehaviour mix (default 1)")
    p.add_argument("--log-level", default="warning", help="debug, info, warning or error (default warning)")
    p.add_argument("--crash-records", default="0",
                   help="with --shape pod: crash records each agent reports on "
                        "StreamCrashDiagnostics (default 0)")
    p.add_argument("--pressure-profiles", default="0",
                   help="with --shape pod: memory-pressure captures (a 64 KiB heap and goroutine "
                        "profile each) each agent lists and serves on StreamPressureProfiles "
                        "(default 0)")
    return p


def fake_agents_config_from_args(ns: argparse.Namespace) -> FakeAgentsConfig:
    """Raises ConfigError naming the first bad flag."""
    host, port = parse_proxy_addr(ns.proxy_addr, flag="--proxy-addr")
    count = parse_int(ns.count, "--count")
    if count < 1:
        raise ConfigError("--count", "must be at least 1")
    series = parse_int(ns.series, "--series")
    if series < 0:
        raise ConfigError("--series", "must not be negative")
    roles = tuple(r.strip() for r in ns.roles.split(",") if r.strip())
    if not roles:
        raise ConfigError("--roles", "name at least one role, e.g. liaison,datanode-hot")
    history_points = parse_int(ns.history_points, "--history-points")
    if history_points < 0:
        raise ConfigError("--history-points", "must not be negative")
    history_step = parse_duration(ns.history_step, flag="--history-step")
    if not history_step > 0:
        raise ConfigError("--history-step", "must be greater than 0")
    try:
        ip = ipaddress.ip_address(ns.ip_base)
    except ValueError:
        raise ConfigError("--ip-base", f"{ns.ip_base!r} is not an IP address") from None
    port_base = parse_int(ns.port_base, "--port-base")
    if not 1 <= port_base <= 65535:
        raise ConfigError("--port-base", f"port {port_base} is outside 1-65535")
    per_ip = 65536 - port_base
    try:
        ip + (count - 1) // per_ip
    except ValueError:
        raise ConfigError("--ip-base", f"{count} agents do not fit after {ip}") from None
    for flag, text in (("--slow-delay", ns.slow_delay), ("--heartbeat-interval", ns.heartbeat_interval),
                       ("--reconnect-interval", ns.reconnect_interval)):
        if not parse_duration(text, flag=flag) > 0:
            raise ConfigError(flag, "must be greater than 0")
    if ns.log_level.lower() not in LOG_LEVELS:
        raise ConfigError("--log-level", f"{ns.log_level!r} is not one of debug, info, warning, error")
    shape = ns.shape.strip().lower()
    if shape not in SHAPES:
        raise ConfigError("--shape", f"{ns.shape!r} is not one of {', '.join(SHAPES)}")
    diag = {}
    for flag, value in (("--crash-records", ns.crash_records),
                        ("--pressure-profiles", ns.pressure_profiles)):
        n = parse_int(value, flag)
        if not 0 <= n <= 256:
            raise ConfigError(flag, "must be between 0 and 256")
        diag[flag[2:].replace("-", "_")] = n
    return FakeAgentsConfig(
        shape=shape, **diag,
        proxy_host=host, proxy_port=port, count=count, series=series, roles=roles,
        labels=parse_labels(ns.labels, flag="--labels"), history_points=history_points,
        history_step=history_step, ip_base=str(ip), port_base=port_base,
        misbehave=parse_misbehave(ns.misbehave),
        slow_delay=parse_duration(ns.slow_delay, flag="--slow-delay"),
        heartbeat_interval=parse_duration(ns.heartbeat_interval, flag="--heartbeat-interval"),
        reconnect_interval=parse_duration(ns.reconnect_interval, flag="--reconnect-interval"),
        seed=parse_int(ns.seed, "--seed"), log_level=ns.log_level,
    )


def demo_parser(prog: str) -> argparse.ArgumentParser:
    """The demo's flags: every proxy flag."""
    parser = FlagParser(prog=prog, description="A proxy with fake agents of every role, for a first look.")
    add_proxy_flags(parser)
    return parser
