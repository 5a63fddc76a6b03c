"""Value types shared by the core, the adapters and the agent.

The core never imports generated protobuf code; `fodcproxy.rpc.convert` turns protobuf messages
into these types (or hands protobuf `Metric` objects straight to the renderer, which only needs the
attributes of `MetricLike`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Protocol

import attrs


class MetricType(enum.IntEnum):
    """The `MetricType` enum of the wire protocol (same numbers)."""

    UNSPECIFIED = 0
    GAUGE = 1
    COUNTER = 2
    HISTOGRAM = 3
    SUMMARY = 4
    UNTYPED = 5

    @property
    def prom_name(self) -> str:
        """The word used on a `# TYPE` line ("untyped" for UNSPECIFIED)."""
        return _PROM_NAMES[self]

    @classmethod
    def from_prom_name(cls, name: str) -> MetricType:
        """Map a prometheus-client family type ("counter", "gaugehistogram", ...) to ours."""
        return _FROM_PROM.get(name, cls.UNTYPED)


_PROM_NAMES = {
    MetricType.UNSPECIFIED: "untyped",
    MetricType.GAUGE: "gauge",
    MetricType.COUNTER: "counter",
    MetricType.HISTOGRAM: "histogram",
    MetricType.SUMMARY: "summary",
    MetricType.UNTYPED: "untyped",
}
_FROM_PROM = {
    "gauge": MetricType.GAUGE,
    "counter": MetricType.COUNTER,
    "histogram": MetricType.HISTOGRAM,
    "gaugehistogram": MetricType.HISTOGRAM,
    "summary": MetricType.SUMMARY,
    "untyped": MetricType.UNTYPED,
    "unknown": MetricType.UNTYPED,
    "info": MetricType.GAUGE,
    "stateset": MetricType.GAUGE,
}


class MetricLike(Protocol):
    """What the exposition renderer reads of one sample.

    Both `Sample` and the generated protobuf `Metric` satisfy it, so the hot path renders protobuf
    objects without copying them. `name` is the sample name (`x_bucket`, `x_sum`, ...), `type` the
    type of the family it belongs to.
    """

    @property
    def name(self) -> str: ...
    @property
    def labels(self) -> Mapping[str, str]: ...
    @property
    def value(self) -> float: ...
    @property
    def description(self) -> str: ...
    @property
    def type(self) -> int: ...


@attrs.frozen
class Sample:
    """One point of one series. `timestamp` is Unix seconds, or None when the agent sent none."""

    name: str
    labels: Mapping[str, str]
    value: float
    description: str = ""
    type: int = MetricType.UNTYPED
    timestamp: float | None = None


@attrs.frozen
class Address:
    ip: str
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if ":" in self.ip else f"{self.ip}:{self.port}"


@attrs.frozen
class NodeConfig:
    """Configuration an agent reports for its node (`RegisterAgentRequest.node_config`)."""

    startup_params: Mapping[str, str] = attrs.field(factory=dict)
    runtime_config: Mapping[str, object] = attrs.field(factory=dict)
    collected_at: float | None = None


@attrs.frozen
class NodeMeta:
    """What the proxy knows of the node behind an agent: used to enrich every sample."""

    agent_id: str
    role: str
    ip: str  # address agents; "" for pod agents
    port: int  # address agents; 0 for pod agents
    labels: tuple[tuple[str, str], ...] = ()
    pod_name: str = ""  # pod agents
    container_names: tuple[str, ...] = ()  # pod agents: one per metrics port polled

    @property
    def is_pod(self) -> bool:
        return bool(self.pod_name)


@attrs.frozen
class TimeWindow:
    """A metrics request: both None means "latest"; one None is open on that side. Unix seconds."""

    start: float | None = None
    end: float | None = None

    @property
    def is_latest(self) -> bool:
        return self.start is None and self.end is None

    def contains(self, ts: float) -> bool:
        return (self.start is None or ts >= self.start) and (self.end is None or ts <= self.end)


LATEST = TimeWindow()
