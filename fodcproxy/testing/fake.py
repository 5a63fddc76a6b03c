"""Fake agents with scripted series and misbehaviours on tap.

A fake agent is the real `AgentClient` (same protocol code as `python -m fodcproxy agent`) with a
scripted source instead of a flight recorder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio

from fodcproxy.agent.client import AgentClient, AgentSpec
from fodcproxy.core.model import MetricType, NodeConfig, TimeWindow
from fodcproxy.rpc import convert
from fodcproxy.rpc.convert import pb


@attrs.define(eq=False)
class Series:
    """One scripted metric family. `produce(window, request_no, now)` -> protobuf Metrics."""

    name: str
    produce: Callable[[TimeWindow, int, float], list[Any]]


def _metric(name: str, value: float, labels: Mapping[str, str] | None, mtype: MetricType,
            help: str, ts: float | None = None) -> Any:
    m = pb.Metric(name=name, value=value, labels=dict(labels or {}), type=int(mtype), description=help)
    if ts is not None:
        m.timestamp.CopyFrom(convert.ts_to_proto(ts))
    return m


def static(name: str, value: float, *, labels: Mapping[str, str] | None = None,
           type: MetricType = MetricType.GAUGE, help: str = "") -> Series:
    """A series whose value never changes (latest requests; windows get one point at `now`)."""
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        return [_metric(name, value, labels, type, help, None if window.is_latest else now)]
    return Series(name, produce)


def counter(name: str, *, start: float = 0.0, step: float = 1.0,
            labels: Mapping[str, str] | None = None, help: str = "") -> Series:
    """A counter that grows by `step` with every request answered."""
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        return [_metric(name, start + step * n, labels, MetricType.COUNTER, help,
                        None if window.is_latest else now)]
    return Series(name, produce)


def histogram(name: str, *, buckets: Sequence[float] = (0.1, 1.0), observations: Sequence[float] = (0.05, 0.5, 2.0),
              labels: Mapping[str, str] | None = None, help: str = "") -> Series:
    """A histogram family (`_bucket` with `le`, `_sum`, `_count`) over fixed observations."""
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        base = dict(labels or {})
        out = []
        for b in list(buckets) + [float("inf")]:
            le = "+Inf" if b == float("inf") else repr(float(b))
            count = sum(1 for o in observations if o <= b)
            out.append(_metric(f"{name}_bucket", count, {**base, "le": le}, MetricType.HISTOGRAM, help))
        out.append(_metric(f"{name}_sum", sum(observations), base, MetricType.HISTOGRAM, help))
        out.append(_metric(f"{name}_count", len(observations), base, MetricType.HISTOGRAM, help))
        return out
    return Series(name, produce)


def history(name: str, points: Sequence[tuple[float, float]], *, labels: Mapping[str, str] | None = None,
            type: MetricType = MetricType.GAUGE, help: str = "") -> Series:
    """Timestamped points (Unix seconds, value): latest gives the last, a window those inside it."""
    pts = sorted(points)

    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        if window.is_latest:
            chosen = pts[-1:]
        else:
            chosen = [p for p in pts if window.contains(p[0])]
        return [_metric(name, v, labels, type, help, ts) for ts, v in chosen]
    return Series(name, produce)


class FakeAgent:
    """A scripted agent. Change `series`, `delay`, `hang`, `echo_request_id` at any time."""

    def __init__(self, proxy_address: str, *, role: str, ip: str, port: int,
                 labels: Mapping[str, str] | None = None, series: Sequence[Series] = (),
                 heartbeat_interval: float = 10.0, reconnect_interval: float = 0.5,
                 node_config: NodeConfig | None = None, max_message_size: int = 4 * 1024 * 1024,
                 clock: Callable[[], float] = time.time) -> None:
        host, _, port_text = proxy_address.rpartition(":")
        self.series: list[Series] = list(series)
        self.delay = 0.0
        self.hang = False
        self.requests: list[TimeWindow] = []
        self.node_config = node_config
        self._clock = clock
        self.client = AgentClient(
            host.strip("[]"), int(port_text), AgentSpec(role=role, ip=ip, port=port, labels=dict(labels or {})),
            self._source, heartbeat_interval=heartbeat_interval,
            reconnect_interval=reconnect_interval, reconnect_max=max(reconnect_interval, 5.0),
            max_message_size=max_message_size, node_config=lambda: self.node_config)

    @property
    def agent_id(self) -> str:
        assert self.client.agent_id is not None, "not registered yet"
        return self.client.agent_id

    @property
    def echo_request_id(self) -> bool:
        return self.client.echo_request_id

    @echo_request_id.setter
    def echo_request_id(self, value: bool) -> None:
        self.client.echo_request_id = value

    def set_series(self, series: Sequence[Series]) -> None:
        self.series = list(series)

    async def _source(self, window: TimeWindow) -> list[Any]:
        n = len(self.requests)
        self.requests.append(window)
        if self.hang:
            await trio.sleep_forever()
        if self.delay:
            await trio.sleep(self.delay)
        now = self._clock()
        out: list[Any] = []
        for s in self.series:
            out.extend(s.produce(window, n, now))
        return out

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        await self.client.run(task_status=task_status)

    def disconnect(self) -> None:
        """Graceful goodbye: the proxy removes the agent at once."""
        self.client.stop()

    def drop(self) -> None:
        """Lose the connection without a goodbye; the client reconnects after its backoff."""
        self.client.drop_connection()


@contextlib.asynccontextmanager
async def open_fake_agent(proxy_address: str, *, role: str, ip: str, port: int,
                          labels: Mapping[str, str] | None = None, series: Sequence[Series] = (),
                          **options: Any) -> AsyncIterator[FakeAgent]:
    """A fake agent, registered and with its metrics stream open, for the duration of the block."""
    agent = FakeAgent(proxy_address, role=role, ip=ip, port=port, labels=labels, series=series,
                      **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        try:
            yield agent
        finally:
            agent.disconnect()

