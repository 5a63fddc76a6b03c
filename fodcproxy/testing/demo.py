"""`python -m fodcproxy demo`: a proxy with fake agents of every role, for a first look.

The fleet is mixed, as during an upgrade: address agents (identity = node ip:port, roles named
like `datanode-hot`, like fodcproxy's own agent) and pod agents (identity = the pod, roles
`ROLE_LIAISON` and `ROLE_DATA` with node label `type`, series stamped with `node_role`,
`pod_name` and `container_name`, like upstream BanyanDB's agent today).

`Demo.run()` owns one nursery: the proxy first, then the agents in a child nursery; `stop()` makes
the agents say goodbye, then the proxy stops.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import trio

from fodcproxy.config import ProxyConfig, proxy_config_from_args
from fodcproxy.core.model import MetricType, NodeConfig
from fodcproxy.core.windows import rfc3339
from fodcproxy.process import print_line, read_config, run_program, run_until_signal
from fodcproxy.testing.config import demo_parser, pod_shape
from fodcproxy.testing.diagnostics import FakeCrashService, FakePressureService, crash_record
from fodcproxy.testing.fake import FakeAgent, Series, rolling, summary
from fodcproxy.testing.lifecycle import SchemaWorld, demo_world, services_for

if TYPE_CHECKING:
    from fodcproxy.proxy import Proxy

__all__ = ["Demo", "demo_agents", "demo_main", "demo_urls", "describe_fleet"]


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


def demo_agents(proxy_address: str, *, now: float | None = None,
                world: SchemaWorld | None = None) -> list[FakeAgent]:
    """The demo's agents: liaison x2, datanode-hot x2, datanode-warm, datanode-cold.

    The first liaison and both hot data nodes are address agents; the second liaison
    (`banyandb-liaison-0`, ROLE_LIAISON) and the warm and cold data nodes (`banyandb-data-warm-0`,
    `banyandb-data-cold-0`: ROLE_DATA with node label `type`) are pod agents.

    Series look like a BanyanDB node's (counters that grow, gauges, a histogram, a summary), with a
    point every 10 s over the last 15 minutes for window queries. The two hot data nodes disagree on
    `measure-flush-timeout`, so /cluster/config reports one inconsistency. The pod agents answer
    the lifecycle streams from `world` (by default `demo_world`: group `sw_stream` drifted on the
    cold node, so /cluster/lifecycle shows it INCONSISTENT from its second collection on).
    """
    if world is None:
        world = demo_world(liaison="banyandb-liaison-0",
                           data_nodes=["banyandb-data-warm-0", "banyandb-data-cold-0"])
    now = time.time() if now is None else now
    since = now - 6 * 3600  # the nodes have been "up" for six hours
    nodes = [  # role, ip, zone, a pod agent?
        ("liaison", "10.0.1.1", "a", False), ("liaison", "10.0.1.2", "b", True),
        ("datanode-hot", "10.0.2.1", "a", False), ("datanode-hot", "10.0.2.2", "b", False),
        ("datanode-warm", "10.0.3.1", "a", True), ("datanode-cold", "10.0.4.1", "a", True),
    ]
    write_rate = {"datanode-hot": 1200.0, "datanode-warm": 150.0, "datanode-cold": 20.0}
    agents: list[FakeAgent] = []
    for k, (role, ip, zone, is_pod) in enumerate(nodes):
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
        series = common + specific
        if is_pod:
            shape = pod_shape(role)
            pod = f"banyandb-{shape.pod_prefix}-0"
            # The first pod agent has one crash record and one pressure capture on tap
            # (GET /diagnostics, GET /pressure-profiles, the console's Diagnostics panel).
            first_pod = not any(a.client.spec.is_pod for a in agents)
            agents.append(FakeAgent(proxy_address, role=shape.role,
                                    labels={"zone": zone, **shape.labels},
                                    pod_name=pod, container_names=[shape.container],
                                    series=series, node_config=config, keep_requests=False,
                                    services=[*services_for(world, pod),
                                              *(demo_diagnostics(since) if first_pod else ())]))
        else:
            agents.append(FakeAgent(proxy_address, role=role, ip=ip, port=17912,
                                    labels={"zone": zone}, series=series, node_config=config,
                                    keep_requests=False))
    return agents


def demo_diagnostics(since: float) -> list[Any]:
    """One crash record (the node panicked an hour before its last start, `since`) and one
    memory-pressure capture taken at its start (a heap and a goroutine profile)."""
    def stamp(t: float) -> str:
        return time.strftime("%Y%m%dT%H%M%S", time.gmtime(t)) + ".000000000Z"

    crashed = since - 3600
    return [FakeCrashService([crash_record("/var/lib/banyandb/crash/" + stamp(crashed),
                                           occurred_at=crashed)]),
            FakePressureService({stamp(since): {"heap": b"\x1f\x8b demo heap profile\n" * 64,
                                                "goroutine": b"\x1f\x8b demo goroutines\n" * 32}})]


def describe_fleet(agents: Sequence[FakeAgent]) -> str:
    """`3 address agents (liaison x1, ...), 3 pod agents (ROLE_DATA type=cold x1, ...)`."""
    parts = []
    for kind, wanted in (("address", False), ("pod", True)):
        names: dict[str, int] = {}
        for a in agents:
            spec = a.client.spec
            if spec.is_pod is wanted:
                tier = spec.labels.get("type") if spec.is_pod else None
                name = f"{spec.role} type={tier}" if tier else spec.role
                names[name] = names.get(name, 0) + 1
        if names:
            parts.append(f"{sum(names.values())} {kind} agents ("
                         + ", ".join(f"{n} x{c}" for n, c in names.items()) + ")")
    return ", ".join(parts)


def demo_urls(http_url: str, *, now: float) -> list[tuple[str, str]]:
    """(url, what it shows) for the demo's banner."""
    start = rfc3339(math.floor(now) - 15 * 60)
    return [
        (f"{http_url}/", "the web console"),
        (f"{http_url}/metrics", "Prometheus text: every agent's latest samples"),
        (f"{http_url}/metrics-windows?start_time={start}", "JSON time series: the last 15 minutes"),
        (f"{http_url}/cluster", "nodes and the calls between them"),
        (f"{http_url}/cluster/config", "node configuration, with one inconsistency"),
        (f"{http_url}/cluster/lifecycle",
         "groups, where their data lives, schema verdicts: sw_stream INCONSISTENT"),
        (f"{http_url}/health", "status and agent counts"),
    ]


class Demo:
    """A proxy and the demo agents in one nursery. `stop()`: agents say goodbye, then the proxy stops."""

    def __init__(self, config: ProxyConfig, *, out: Callable[[str], None] = print_line) -> None:
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
                # Two collections, so that a drift is past its one-round suppression and the
                # first look at /cluster/lifecycle (and /metrics) already shows the verdict.
                await _warm_up_lifecycle(proxy, len([a for a in self.agents
                                                     if a.client.spec.is_pod]))
                lines = [f"fodcproxy demo: a proxy and {len(self.agents)} fake agents: "
                         f"{describe_fleet(self.agents)}",
                         f"agents dial {addresses.grpc_address} (gRPC); open:"]
                lines += [f"  {url:<72} {what}" for url, what in demo_urls(addresses.http_url, now=time.time())]
                lines.append("Ctrl-C (SIGINT) or SIGTERM stops it.")
                self._out("\n".join(lines))
                await self._stop.wait()
                for agent in self.agents:
                    agent.disconnect()
            proxy.shutdown()


async def _warm_up_lifecycle(proxy: Proxy, pods: int) -> None:
    from fodcproxy.lifecycle import EVERYONE, LifecycleReportStream, RegistryStream

    def ready() -> int:
        return sum(1 for s in proxy.hub.sessions.values()
                   if s.stream(LifecycleReportStream) and s.stream(RegistryStream))

    with trio.move_on_after(5):
        while ready() < pods:
            await trio.sleep(0.02)
    for _ in range(2):
        await proxy.lifecycle.collect(proxy.hub.select(lambda meta: True), everyone=True,
                                      key=EVERYONE)


def demo_main(argv: Sequence[str], prog: str = "python -m fodcproxy demo") -> None:
    """The `demo` program: every proxy flag is accepted; exits 0 after SIGINT/SIGTERM."""
    config = read_config(demo_parser(prog), argv, proxy_config_from_args, prog)
    demo = Demo(config)
    run_program(lambda: run_until_signal(demo.run, demo.stop), prog)
