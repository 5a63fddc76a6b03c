"""`python -m fodcproxy fake-agents` (N simulated agents, for demos and load) and
`python -m fodcproxy demo` (a proxy with fake agents of every role, for a first look).

Both are thin: the agents are `fodcproxy.testing.fake.FakeAgent`s, the proxy is `Proxy`. The
parsing conventions are those of `fodcproxy.cli`: a bad flag exits with status 2 and one line naming
it; SIGINT/SIGTERM stop in order (agents say goodbye first), a second signal stops at once.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import math
import random
import struct
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from fodcproxy.agent.main import parse_labels, parse_proxy_addr
from fodcproxy.cli import (
    add_proxy_flags,
    exit_bad_flag,
    FlagParser,
    parse_int,
    proxy_config_from_args,
    run_until_signal,
    setup_logging,
)
from fodcproxy.config import ProxyConfig, parse_duration
from fodcproxy.core.model import MetricType, NodeConfig, TimeWindow
from fodcproxy.core.windows import rfc3339
from fodcproxy.errors import ConfigError
from fodcproxy.rpc import convert
from fodcproxy.rpc.convert import pb
from fodcproxy.testing.fake import FakeAgent, Series, rolling, summary

log = logging.getLogger(__name__)

ROLES = ("liaison", "datanode-hot", "datanode-warm", "datanode-cold")
MISBEHAVIOURS = ("slow", "hung", "drop", "noheartbeat", "noecho", "oversized", "malformed")
#: Bytes of an `oversized` reply: over the proxy's default --grpc-max-msg-size (4 MiB).
OVERSIZED_BYTES = 4 * 1024 * 1024 + 64 * 1024
#: Counters in the synthetic series count from here (Unix seconds), so they look long-running.
_COUNTING_SINCE = 1_700_000_000.0


# --- synthetic series for fake-agents -------------------------------------------------------------

# (name, type, help): BanyanDB-like families; the i-th series of an agent is family i % len,
# with label `shard` = i // len, so every series of an agent is distinct.
_FAMILIES: tuple[tuple[str, MetricType, str], ...] = (
    ("banyandb_measure_total_written", MetricType.COUNTER, "Data points written to measure shards."),
    ("banyandb_stream_tst_total_written", MetricType.COUNTER, "Elements written to stream shards."),
    ("banyandb_measure_tst_total_mem_part", MetricType.GAUGE, "Memory parts held by a measure shard."),
    ("banyandb_measure_tst_total_file_parts", MetricType.GAUGE, "File parts held by a measure shard."),
    ("banyandb_queue_sub_total_msg_received", MetricType.COUNTER, "Messages received from the queue."),
    ("banyandb_queue_pub_total_msg_sent", MetricType.COUNTER, "Messages published to the queue."),
    ("banyandb_liaison_grpc_total_started", MetricType.COUNTER, "gRPC calls started."),
    ("banyandb_liaison_grpc_total_err", MetricType.COUNTER, "gRPC calls that failed."),
    ("banyandb_system_disk_used_bytes", MetricType.GAUGE, "Disk space used by a data path."),
    ("banyandb_measure_inverted_index_total_updates", MetricType.COUNTER, "Inverted index updates."),
    ("banyandb_stream_storage_total_file_elements", MetricType.GAUGE, "Elements in stream files."),
    ("banyandb_measure_total_merge_loop_started", MetricType.COUNTER, "Merge loops started."),
    ("banyandb_system_memory_state_bytes", MetricType.GAUGE, "Memory in use by the process."),
    ("banyandb_measure_total_flush_latency_seconds", MetricType.COUNTER, "Seconds spent flushing."),
    ("banyandb_stream_tst_inverted_index_total_doc_count", MetricType.GAUGE, "Documents indexed."),
    ("banyandb_system_cpu_usage_ratio", MetricType.GAUGE, "CPU used, as a ratio of one core."),
)
_GROUPS = ("sw_metric", "sw_record", "sw_trace", "sw_property", "sw_metricsMinute", "sw_metricsHour")
_SERVICES = ("measure", "stream", "trace", "property")
_KINDS = ("write", "query", "flush", "merge", "sync")



_DOUBLE = struct.Struct("<d")


class SyntheticSeries:
    """`count` series of one agent with 5 labels each, whose values move with time.

    The protobuf `Metric` objects are built once and reused: a latest request only rewrites their
    values. Counters are `rate * (t - since)`, gauges a slow wave around a level, so values change
    with every request and a window (with `history_points` > 0) gets points on a `history_step`
    grid over the last `history_points` steps, consistent with the latest values.
    """

    def __init__(self, count: int, *, seed: int, history_points: int = 0,
                 history_step: float = 10.0) -> None:
        rng = random.Random(seed)
        self.history_points = history_points
        self.history_step = history_step
        self.metrics: list[Any] = []
        self._template_cache: list[bytes] | None = None
        # Per series: (is_counter, a, b, c): counter = a * (t - since) + b;
        # gauge = a * (1 + 0.25 * sin(t * b + c)).
        self.params: list[tuple[bool, float, float, float]] = []
        nf = len(_FAMILIES)
        for i in range(count):
            name, mtype, help_text = _FAMILIES[i % nf]
            k = i // nf
            labels = {
                "group": _GROUPS[(i + k) % len(_GROUPS)],
                "shard": str(k),
                "segment": f"2026{1 + (i % 12):02d}{1 + (i % 28):02d}",
                "kind": _KINDS[i % len(_KINDS)],
                "service": _SERVICES[i % len(_SERVICES)],
            }
            self.metrics.append(pb.Metric(name=name, labels=labels, description=help_text,
                                          type=int(mtype)))  # type: ignore[arg-type]  # an int is fine
            if mtype == MetricType.COUNTER:
                self.params.append((True, rng.uniform(0.5, 50.0), rng.uniform(0, 1e6), 0.0))
            else:
                self.params.append((False, rng.uniform(10.0, 1e9), 2 * math.pi / rng.uniform(300, 3600),
                                    rng.uniform(0, 2 * math.pi)))

    def value_at(self, i: int, t: float) -> float:
        """The value of series `i` at Unix time `t`."""
        is_counter, a, b, c = self.params[i]
        if is_counter:
            return float(int(a * (t - _COUNTING_SINCE) + b))
        return a * (1.0 + 0.25 * math.sin(t * b + c))

    def produce(self, window: TimeWindow, n: int, now: float) -> list[Any]:
        """The reply to one request (the `Series.produce` protocol)."""
        if window.is_latest:
            since = _COUNTING_SINCE
            sin = math.sin
            for m, (is_counter, a, b, c) in zip(self.metrics, self.params):
                m.value = float(int(a * (now - since) + b)) if is_counter else a * (1.0 + 0.25 * sin(now * b + c))
            return self.metrics
        if self.history_points <= 0:
            if not window.contains(now):
                return []
            return [self._point(i, now) for i in range(len(self.metrics))]
        step = self.history_step
        last = math.floor(now / step) * step
        first = last - (self.history_points - 1) * step
        if window.start is not None:
            first = max(first, math.ceil(window.start / step) * step)
        if window.end is not None:
            last = min(last, math.floor(window.end / step) * step)
        grid = []
        t = first
        while t <= last:
            grid.append(t)
            t += step
        # Serialized directly (the client sends bytes as they are): a template per series plus
        # the value and the timestamp, so the fakes, not the proxy, stay cheap in benchmarks.
        stamps = [b"\x2a" + convert.varint(len(ts)) + ts
                  for ts in (convert.ts_to_proto(t).SerializeToString() for t in grid)]
        pack = _DOUBLE.pack
        value_at = self.value_at
        out = []
        for i, template in enumerate(self._templates()):
            for t, stamp in zip(grid, stamps):
                out.append(template + b"\x19" + pack(value_at(i, t)) + stamp)
        return out

    def _templates(self) -> list[bytes]:
        if self._template_cache is None:
            self._template_cache = [
                pb.Metric(name=m.name, labels=m.labels, description=m.description,
                          type=m.type).SerializeToString()
                for m in self.metrics
            ]
        return self._template_cache

    def _point(self, i: int, t: float) -> Any:
        m = pb.Metric()
        m.CopyFrom(self.metrics[i])
        m.value = self.value_at(i, t)
        m.timestamp.CopyFrom(convert.ts_to_proto(t))
        return m

    def as_series(self) -> Series:
        return Series("synthetic", self.produce)


# --- fake-agents -----------------------------------------------------------------------------------


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

    def identity(self, i: int) -> tuple[str, int]:
        """(ip, port) of agent `i`: ports from `port_base`; past 65535 the next ip."""
        per_ip = 65536 - self.port_base
        ip = ipaddress.ip_address(self.ip_base) + i // per_ip
        return str(ip), self.port_base + i % per_ip

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


def _fake_agents_parser(prog: str) -> argparse.ArgumentParser:
    p = FlagParser(prog=prog, description="N simulated FODC agents in one process, for demos and load. "
                "Values change with every request; SIGINT/SIGTERM make them all say goodbye.")
    p.add_argument("--proxy-addr", default="localhost:17900", help="the proxy's gRPC address (default localhost:17900)")
    p.add_argument("--count", default="10", help="number of agents (default 10)")
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
    if ns.log_level.lower() not in ("debug", "info", "warning", "warn", "error", "critical"):
        raise ConfigError("--log-level", f"{ns.log_level!r} is not one of debug, info, warning, error")
    return FakeAgentsConfig(
        proxy_host=host, proxy_port=port, count=count, series=series, roles=roles,
        labels=parse_labels(ns.labels, flag="--labels"), history_points=history_points,
        history_step=history_step, ip_base=str(ip), port_base=port_base,
        misbehave=parse_misbehave(ns.misbehave),
        slow_delay=parse_duration(ns.slow_delay, flag="--slow-delay"),
        heartbeat_interval=parse_duration(ns.heartbeat_interval, flag="--heartbeat-interval"),
        reconnect_interval=parse_duration(ns.reconnect_interval, flag="--reconnect-interval"),
        seed=parse_int(ns.seed, "--seed"), log_level=ns.log_level,
    )


def build_fake_agents(config: FakeAgentsConfig) -> list[FakeAgent]:
    """The agents `config` describes, not yet started (misbehaviours already set)."""
    host = f"[{config.proxy_host}]" if ":" in config.proxy_host else config.proxy_host
    address = f"{host}:{config.proxy_port}"
    kinds = config.assign_misbehaviours()
    agents = []
    for i in range(config.count):
        ip, port = config.identity(i)
        synthetic = SyntheticSeries(config.series, seed=config.seed * 1_000_003 + i,
                                    history_points=config.history_points,
                                    history_step=config.history_step)
        kind = kinds[i]
        agent = FakeAgent(address, role=config.roles[i % len(config.roles)], ip=ip, port=port,
                          labels=config.labels, series=[synthetic.as_series()],
                          heartbeat_interval=config.heartbeat_interval,
                          reconnect_interval=config.reconnect_interval, keep_requests=False)
        if kind == "slow":
            agent.delay = config.slow_delay
        elif kind == "hung":
            agent.hang = True
        elif kind == "drop":
            agent.drop_mid_reply = True
        elif kind == "noheartbeat":
            agent.heartbeats = False
        elif kind == "noecho":
            agent.echo_request_id = False
        elif kind == "oversized":
            agent.oversized = OVERSIZED_BYTES
        elif kind == "malformed":
            agent.malformed = True
        agents.append(agent)
    return agents


class FakeAgentFleet:
    """Runs many fake agents in one nursery; `stop()` makes them all say goodbye."""

    def __init__(self, agents: Sequence[FakeAgent], *, out: Callable[[str], None] | None = None) -> None:
        self.agents = list(agents)
        self.registered = 0
        self.all_registered = trio.Event()
        self._out = out

    def stop(self) -> None:
        """Every agent says goodbye; `run()` returns when all have."""
        for agent in self.agents:
            agent.disconnect()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every agent (without waiting for one before the next) and run until `stop()`.

        Reports (and prints "N agents registered in X s") once every agent has registered, or
        been stopped before it could.
        """
        start = time.monotonic()
        launched = 0
        all_launched = trio.Event()

        async def launch(agent: FakeAgent) -> None:
            nonlocal launched
            await nursery.start(agent.run)
            if agent.client.agent_id is not None:
                self.registered += 1
            launched += 1
            if launched == len(self.agents):
                all_launched.set()

        progress_scope = trio.CancelScope()

        async def progress() -> None:
            # Say why, when registration takes long (e.g. the proxy's --max-agents is reached).
            with progress_scope:
                while True:
                    await trio.sleep(10)
                    waiting = [a for a in self.agents if a.client.agent_id is None]
                    errors = {a.client.statistics().last_error for a in waiting} - {""}
                    log.warning("%d of %d agents registered; the others keep retrying (%s)",
                                len(self.agents) - len(waiting), len(self.agents),
                                "; ".join(sorted(errors)[:3]) or "no answer yet")

        async with trio.open_nursery() as nursery:
            for i, agent in enumerate(self.agents):
                nursery.start_soon(launch, agent)
                if i % 100 == 99:
                    # A breath between batches keeps the proxy's accept queue short; connects
                    # still overlap (this is not one at a time).
                    await trio.sleep(0.01)
            nursery.start_soon(progress)
            await all_launched.wait()
            progress_scope.cancel()
            if self.registered == len(self.agents):
                self.all_registered.set()
                if self._out is not None:
                    self._out(f"{len(self.agents)} agents registered in {time.monotonic() - start:.2f} s")
            task_status.started()


def _print_line(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def fake_agents_main(argv: Sequence[str], prog: str = "python -m fodcproxy fake-agents") -> None:
    """The `fake-agents` program: exits 0 after SIGINT/SIGTERM, 2 on a bad flag."""
    ns = _fake_agents_parser(prog).parse_args(argv)
    try:
        config = fake_agents_config_from_args(ns)
    except ConfigError as exc:
        exit_bad_flag(exc, prog)
    setup_logging(config.log_level)
    agents = build_fake_agents(config)
    fleet = FakeAgentFleet(agents, out=_print_line)
    log.info("%d fake agents (%d series each) dialing %s:%s", len(agents), config.series,
             config.proxy_host, config.proxy_port)
    trio.run(run_until_signal, fleet.run, fleet.stop)


# --- demo ------------------------------------------------------------------------------------------


def _counter(rate: float, base: float, since: float) -> Callable[[float], float]:
    return lambda t: float(int(base + rate * (t - since)))


def _wave(level: float, amplitude: float, period: float, phase: float = 0.0) -> Callable[[float], float]:
    return lambda t: level + amplitude * math.sin(2 * math.pi * t / period + phase)


def _latency_histogram(name: str, labels: Mapping[str, str], rate: float, since: float) -> list[Series]:
    """A histogram family whose buckets fill as time goes by (every bucket a rolling counter)."""
    shares = ((0.005, 0.30), (0.01, 0.55), (0.025, 0.78), (0.05, 0.90), (0.1, 0.96),
              (0.25, 0.99), (1.0, 0.999), (math.inf, 1.0))
    help_text = "Latency of gRPC calls handled, in seconds."
    out = []
    for le, share in shares:
        out.append(rolling(f"{name}_bucket", _counter(rate * share, 0, since),
                           labels={**labels, "le": "+Inf" if le == math.inf else repr(le)},
                           type=MetricType.HISTOGRAM, help=help_text))
    out.append(rolling(f"{name}_sum", lambda t: round(rate * 0.012 * (t - since), 3), labels=labels,
                       type=MetricType.HISTOGRAM, help=help_text))
    out.append(rolling(f"{name}_count", _counter(rate, 0, since), labels=labels,
                       type=MetricType.HISTOGRAM, help=help_text))
    return out


def demo_agents(proxy_address: str, *, now: float | None = None) -> list[FakeAgent]:
    """The demo's agents: liaison x2, datanode-hot x2, datanode-warm, datanode-cold.

    Series look like a BanyanDB node's (counters that grow, gauges, a histogram, a summary), with a
    point every 10 s over the last 15 minutes for window queries. The two hot data nodes disagree on
    `measure-flush-timeout`, so /cluster/config reports one inconsistency.
    """
    now = time.time() if now is None else now
    since = now - 6 * 3600  # the nodes have been "up" for six hours
    nodes = [
        ("liaison", "10.0.1.1", "a"), ("liaison", "10.0.1.2", "b"),
        ("datanode-hot", "10.0.2.1", "a"), ("datanode-hot", "10.0.2.2", "b"),
        ("datanode-warm", "10.0.3.1", "a"), ("datanode-cold", "10.0.4.1", "a"),
    ]
    write_rate = {"datanode-hot": 1200.0, "datanode-warm": 150.0, "datanode-cold": 20.0}
    agents = []
    for k, (role, ip, zone) in enumerate(nodes):
        r = random.Random(k)
        common = [
            rolling("banyandb_system_cpu_usage_ratio", _wave(r.uniform(0.2, 0.5), 0.1, 600, k),
              help="CPU used, as a ratio of one core."),
            rolling("banyandb_system_memory_state_bytes", _wave(r.uniform(1.5e9, 3e9), 2e8, 1800, k),
              labels={"kind": "used"}, help="Memory in use by the process."),
        ]
        if role == "liaison":
            rate = r.uniform(100, 200)
            specific = [
                rolling("banyandb_liaison_grpc_total_started", _counter(rate, 1e5, since),
                  labels={"group": "sw_metric", "service": "measure", "method": "write"},
                  type=MetricType.COUNTER, help="gRPC calls started."),
                rolling("banyandb_liaison_grpc_total_started", _counter(rate / 15, 1e4, since),
                  labels={"group": "sw_metric", "service": "measure", "method": "query"},
                  type=MetricType.COUNTER, help="gRPC calls started."),
                rolling("banyandb_liaison_grpc_total_started", _counter(rate / 3, 3e4, since),
                  labels={"group": "sw_record", "service": "stream", "method": "write"},
                  type=MetricType.COUNTER, help="gRPC calls started."),
                rolling("banyandb_liaison_grpc_total_err", _counter(0.02, r.randint(0, 40), since),
                  labels={"group": "sw_metric", "service": "measure", "method": "query"},
                  type=MetricType.COUNTER, help="gRPC calls that failed."),
                rolling("banyandb_queue_pub_total_msg_sent", _counter(rate * 1.3, 2e5, since),
                  labels={"topic": "measure-write"}, type=MetricType.COUNTER,
                  help="Messages published to the data nodes."),
                *_latency_histogram("banyandb_liaison_grpc_latency_seconds",
                                    {"service": "measure", "method": "query"}, rate / 15, since),
            ]
            config = NodeConfig(startup_params={"grpc-port": "17912", "http-port": "17913",
                                                "max-recv-msg-size": "10MiB", "node-host": ip},
                                runtime_config={"log-level": "info"}, collected_at=since)
        else:
            rate = write_rate[role] * r.uniform(0.8, 1.2)
            flush = "1s" if (role, k) == ("datanode-hot", 3) else "5s"  # the deliberate inconsistency
            specific = [
                rolling("banyandb_measure_total_written", _counter(rate, 1e6, since),
                  labels={"group": "sw_metric"}, type=MetricType.COUNTER,
                  help="Data points written to measure shards."),
                rolling("banyandb_stream_tst_total_written", _counter(rate / 2, 5e5, since),
                  labels={"group": "sw_record"}, type=MetricType.COUNTER,
                  help="Elements written to stream shards."),
                rolling("banyandb_queue_sub_total_msg_received", _counter(rate * 1.1, 1e6, since),
                  labels={"topic": "measure-write"}, type=MetricType.COUNTER,
                  help="Messages received from the liaisons."),
                rolling("banyandb_measure_tst_total_mem_part", _wave(6, 4, 300, k),
                  labels={"group": "sw_metric"}, help="Memory parts held by the measure TSDB."),
                rolling("banyandb_system_disk_used_bytes",
                  _counter(rate * 120, r.uniform(2e10, 8e10), since),
                  labels={"path": "/data/measure"}, help="Disk space used by a data path."),
                summary("banyandb_measure_merge_duration_seconds",
                        quantiles={0.5: 0.08, 0.9: 0.35, 0.99: 1.2}, count=4200, sum_value=610.5,
                        help="Time spent merging parts, in seconds."),
            ]
            config = NodeConfig(startup_params={"measure-flush-timeout": flush,
                                                "stream-flush-timeout": "1s",
                                                "measure-root-path": "/data", "grpc-port": "17912",
                                                "node-host": ip},
                                runtime_config={"retention": {"sw_metric": "7d", "sw_record": "3d"}},
                                collected_at=since)
        agents.append(FakeAgent(proxy_address, role=role, ip=ip, port=17912, labels={"zone": zone},
                                series=common + specific, node_config=config, keep_requests=False))
    return agents


def demo_urls(http_url: str, *, now: float) -> list[tuple[str, str]]:
    """(url, what it shows) for the demo's banner."""
    start = rfc3339(math.floor(now) - 15 * 60)
    return [
        (f"{http_url}/", "the web console"),
        (f"{http_url}/metrics", "Prometheus text: every agent's latest samples"),
        (f"{http_url}/metrics-windows?start_time={start}", "JSON time series: the last 15 minutes"),
        (f"{http_url}/cluster", "nodes and the calls between them"),
        (f"{http_url}/cluster/config", "node configuration, with one inconsistency"),
        (f"{http_url}/health", "status and agent counts"),
    ]


class Demo:
    """A proxy and the demo agents in one nursery. `stop()`: agents say goodbye, then the proxy stops."""

    def __init__(self, config: ProxyConfig, *, out: Callable[[str], None] = _print_line) -> None:
        self.config = config
        self.agents: list[FakeAgent] = []
        self._stop = trio.Event()
        self._out = out

    def stop(self) -> None:
        self._stop.set()

    async def run(self) -> None:
        from fodcproxy.proxy import Proxy

        proxy = Proxy(self.config)  # needs the Trio clock, so it is made here
        async with trio.open_nursery() as root:
            addresses = await root.start(proxy.run)
            self.agents = demo_agents(addresses.grpc_address)
            async with trio.open_nursery() as fleet:
                for agent in self.agents:
                    fleet.start_soon(agent.run)
                for agent in self.agents:
                    await agent.wait_registered()
                roles = sorted({a.client.spec.role for a in self.agents}, key=ROLES.index)
                counts = ", ".join(f"{r} x{sum(a.client.spec.role == r for a in self.agents)}" for r in roles)
                lines = [f"fodcproxy demo: a proxy and {len(self.agents)} fake agents ({counts})",
                         f"agents dial {addresses.grpc_address} (gRPC); open:"]
                lines += [f"  {url:<72} {what}" for url, what in demo_urls(addresses.http_url, now=time.time())]
                lines.append("Ctrl-C (SIGINT) or SIGTERM stops it.")
                self._out("\n".join(lines))
                await self._stop.wait()
                for agent in self.agents:
                    agent.disconnect()
            proxy.shutdown()


def demo_main(argv: Sequence[str], prog: str = "python -m fodcproxy demo") -> None:
    """The `demo` program: every proxy flag is accepted; exits 0 after SIGINT/SIGTERM."""
    parser = FlagParser(prog=prog, description="A proxy with fake agents of every role, for a first look.")
    add_proxy_flags(parser)
    ns = parser.parse_args(argv)
    try:
        config = proxy_config_from_args(ns)
    except ConfigError as exc:
        exit_bad_flag(exc, prog)
    setup_logging(config.log_level)
    demo = Demo(config)
    trio.run(run_until_signal, demo.run, demo.stop)
