"""Synthetic series for `python -m fodcproxy fake-agents` and the benchmarks: many BanyanDB-like
series per agent whose values move with time, built once and cheap to answer from."""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Mapping
from typing import Any

from fodcproxy.core.model import MetricType, TimeWindow
from fodcproxy.rpc import convert
from fodcproxy.rpc.convert import pb
from fodcproxy.testing.fake import Series

__all__ = ["SyntheticSeries"]

#: Counters in the synthetic series count from here (Unix seconds), so they look long-running.
_COUNTING_SINCE = 1_700_000_000.0

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
    """`count` series of one agent with 5 labels each (plus `labels`, e.g. the labels a pod agent
    stamps), whose values move with time.

    The protobuf `Metric` objects are built once and reused: a latest request only rewrites their
    values. Counters are `rate * (t - since)`, gauges a slow wave around a level, so values change
    with every request and a window (with `history_points` > 0) gets points on a `history_step`
    grid over the last `history_points` steps, consistent with the latest values.
    """

    def __init__(self, count: int, *, seed: int, history_points: int = 0,
                 history_step: float = 10.0, labels: Mapping[str, str] | None = None) -> None:
        rng = random.Random(seed)
        extra = dict(labels or {})
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
                **extra,
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
