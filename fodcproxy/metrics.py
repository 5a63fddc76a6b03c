"""The proxy's own metrics (`fodc_proxy_*`), kept with prometheus-client in a registry per proxy.

One registry per proxy instance, so several proxies embedded in one process never share counters.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om


class ProxyMetrics:
    def __init__(self, *, statuses: Callable[[], dict[str, int]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.started = time.time()
        self._statuses = statuses or (lambda: {})
        r = self.registry
        self._registrations = Counter(
            "fodc_proxy_registrations", "Agent registrations accepted (including re-registrations).",
            registry=r)
        self._refusals = Counter(
            "fodc_proxy_registration_refusals", "Registrations and metrics streams refused, by reason.",
            ["reason"], registry=r)
        self._takeovers = Counter(
            "fodc_proxy_takeovers", "Live registrations taken over by a new registration of the "
            "same identity.", registry=r)
        self._lifecycle = Counter(
            "fodc_proxy_agent_transitions", "Agent lifecycle transitions, by kind.", ["kind"],
            registry=r)
        self._dropped = Counter(
            "fodc_proxy_dropped_replies", "Agent replies dropped because their request had given up.",
            registry=r)
        self._shared = Counter(
            "fodc_proxy_shared_collections", "Requests answered by joining an identical fan-out in flight.",
            registry=r)
        self._missed = Counter(
            "fodc_proxy_agent_collect_failures", "Agents that did not answer a collection in time.",
            registry=r)
        self._family_conflicts = Counter(
            "fodc_proxy_family_conflicts",
            "Agent families left out of a /metrics body because another agent's family of the same "
            "name (or named like one of its samples) came first with another type; one per family "
            "and body.",
            registry=r)
        self._collect = Histogram(
            "fodc_proxy_collect_duration_seconds", "Duration of metrics fan-outs to the agents.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        r.register(_StatusCollector(self))

    def registration(self) -> None:
        self._registrations.inc()

    def refusal(self, reason: str) -> None:
        self._refusals.labels(reason).inc()

    def takeover(self) -> None:
        self._takeovers.inc()

    def lifecycle(self, kind: str) -> None:
        self._lifecycle.labels(kind).inc()

    def dropped_reply(self) -> None:
        self._dropped.inc()

    def shared_collect(self) -> None:
        self._shared.inc()

    def family_conflict(self) -> None:
        self._family_conflicts.inc()

    def collect_finished(self, duration: float, results: Sequence[Any]) -> None:
        self._collect.observe(duration)
        missed = sum(1 for r in results if not r.up)
        if missed:
            self._missed.inc(missed)

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """Read one sample (for tests and /health)."""
        v = self.registry.get_sample_value(name, labels)
        return 0.0 if v is None else v

    def render(self, *, openmetrics: bool = False) -> str:
        """The exposition text of these metrics (OpenMetrics without its `# EOF`)."""
        if openmetrics:
            text = generate_latest_om(self.registry).decode()
            return text[: -len("# EOF\n")] if text.endswith("# EOF\n") else text
        return generate_latest(self.registry).decode()


class _StatusCollector:
    def __init__(self, metrics: ProxyMetrics) -> None:
        self._m = metrics

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        agents = GaugeMetricFamily("fodc_proxy_agents", "Registered agents, by status.", labels=["status"])
        counts = {"online": 0, "unconnected": 0}
        counts.update(self._m._statuses())
        for status, n in sorted(counts.items()):
            agents.add_metric([status], n)
        yield agents
        yield GaugeMetricFamily("fodc_proxy_uptime_seconds", "Seconds since the proxy started.",
                                value=time.time() - self._m.started)


class TransportCollector:
    """The gRPC transport's bounds, read from `statistics()` at scrape time (`fodc_proxy_grpc_*`)."""

    def __init__(self, statistics: Callable[[], Any]) -> None:
        self._statistics = statistics

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        s = self._statistics()
        yield GaugeMetricFamily("fodc_proxy_grpc_connections", "Open gRPC connections.",
                                value=s.connections)
        yield CounterMetricFamily(
            "fodc_proxy_grpc_connections_refused",
            "gRPC connections closed at once because --grpc-max-connections were open.",
            value=s.connections_refused)
        yield CounterMetricFamily(
            "fodc_proxy_grpc_connections_timed_out",
            "gRPC connections closed for no HTTP/2 preface or no registered agent in time.",
            value=s.connections_timed_out)
        yield CounterMetricFamily(
            "fodc_proxy_grpc_accept_errors",
            "Failed accepts of gRPC connections (descriptors or memory exhausted).",
            value=s.accept_errors)
        yield GaugeMetricFamily(
            "fodc_proxy_grpc_buffer_bytes",
            "Bytes of received gRPC messages not yet consumed, reserved from --grpc-buffer-budget.",
            value=s.budget_used)
        yield GaugeMetricFamily("fodc_proxy_grpc_buffer_limit_bytes", "--grpc-buffer-budget.",
                                value=s.budget_limit)
