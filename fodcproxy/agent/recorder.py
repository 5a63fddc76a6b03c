"""The flight recorder: an in-memory ring of a node's recent metrics.

Sans-IO, like h11's `Connection`: no sockets, no clock, no `import trio`. Time is always an
argument (`record(samples, now=...)`, `expire(now)`), so the rules are tested with plain
synchronous tests and the Trio shell (`fodcproxy.agent.scrape.Watchdog`) supplies the wall clock.

Storage: one `_Series` per (name, sorted labels, the labels the agent stamps on the scrape). A series keeps its points in two parallel
`array('d')` (timestamps, values), sorted by timestamp — 16 bytes a point and no per-point Python
objects. Points leave from the front: by age (`expire`) or, when the recorder is over its budget,
oldest first across all series (`record` enforces it).

Memory estimate (`size_bytes`): 16 bytes per point, plus for each series a fixed overhead (the
series object, both array headers, its key and label tuples, the read-only labels view, its slot
in the index) and the `sys.getsizeof` of every string it holds (name, description, label names and
values). It is a *logical* size: it leaves out the arrays' over-allocation (CPython grows an array
by about 1/16 plus 7 slots and keeps up to 15 freed slots before shrinking), so the real figure is
at most a few percent above it once series hold more than a handful of points. Strings shared by
several series (a family's description) are counted once per series, which errs on the high side.
The budget is enforced against this estimate, so eviction is exact and predictable.
"""

from __future__ import annotations

import bisect
import heapq
import math
import sys
from array import array
from collections.abc import Iterable, Mapping
from types import MappingProxyType

import attrs

from fodcproxy.core.model import Sample, TimeWindow

__all__ = ["EXPORTED", "FlightRecorder", "RecorderStatistics", "stamp_labels"]

_Pairs = tuple[tuple[str, str], ...]
_Key = tuple[str, _Pairs, int]  # name, the sample's own labels, the id of the scrape's stamp

#: The prefix that renames a node's own label whose name the agent stamps (as Prometheus does
#: with a target's label that clashes with one it attaches).
EXPORTED = "exported_"


def stamp_labels(*, role: str, labels: Mapping[str, str] | None = None, pod_name: str = "",
                 container_name: str = "") -> dict[str, str]:
    """The labels an agent stamps on every series it scrapes, as upstream BanyanDB's agent does:
    `node_role`, `pod_name` (pod agents), `container_name` (the endpoint's, when it has one) and
    each node label `k` as `node_<k>`, except `pod_name`, `container_name` and empty values."""
    out = {"node_role": role} if role else {}
    if pod_name:
        out["pod_name"] = pod_name
    if container_name:
        out["container_name"] = container_name
    for key, value in (labels or {}).items():
        if value and key not in ("pod_name", "container_name"):
            out.setdefault(f"node_{key}", value)
    return out


def _stamped(own: _Pairs, stamp: _Pairs) -> _Pairs:
    """`own` labels with `stamp` added; an own label whose name is taken becomes exported_<name>."""
    stamped = {k for k, _ in stamp}
    taken = stamped | {k for k, _ in own}
    out = list(stamp)
    for key, value in own:
        if key in stamped:
            name = EXPORTED + key
            while name in taken:
                name = EXPORTED + name
            taken.add(name)
            out.append((name, value))
        else:
            out.append((key, value))
    return tuple(sorted(out))

_POINT_BYTES = 16  # one float64 timestamp + one float64 value


@attrs.frozen
class RecorderStatistics:
    """A snapshot of the recorder.

    `evicted_points` counts points dropped to stay within the budget (points that aged out of the
    retention are `expired_points`: that is normal life, not pressure). `evicted_series` counts
    series removed because they vanished (no point left within the retention) or, as a last resort,
    to meet the budget. `out_of_order_points` counts points refused because their timestamp was
    older than the series' last point.
    """

    series: int
    points: int
    size_bytes: int
    budget_bytes: int
    evicted_points: int
    evicted_series: int
    expired_points: int = 0
    out_of_order_points: int = 0
    budget_points: int | None = None


class _Series:
    __slots__ = ("name", "labels", "description", "type", "ts", "values", "overhead")

    def __init__(self, name: str, pairs: _Pairs, description: str, type_: int) -> None:
        self.name = name
        self.labels: Mapping[str, str] = MappingProxyType(dict(pairs))
        self.description = description
        self.type = type_
        self.ts = array("d")
        self.values = array("d")
        self.overhead = 0  # bytes besides the points; set by the recorder with _overhead()

    def sample(self, i: int) -> Sample:
        return Sample(
            self.name, self.labels, self.values[i], self.description, self.type, self.ts[i]
        )

    def drop_front(self, count: int) -> None:
        del self.ts[:count]
        del self.values[:count]


def _measure_fixed_overhead() -> int:
    probe = _Series("", (), "", 0)
    return (
        sys.getsizeof(probe)
        + 2 * sys.getsizeof(array("d"))
        + sys.getsizeof(MappingProxyType({}))
        + sys.getsizeof(("", (), 0))  # the key tuple
        + 3 * 8 * 3 // 2  # the index dict's entry (hash, key, value), at its usual 2/3 load
    )


def _overhead(name: str, pairs: _Pairs, description: str) -> int:
    size = _FIXED_SERIES_BYTES + sys.getsizeof(name) + sys.getsizeof(description)
    size += sys.getsizeof(pairs) + sys.getsizeof(dict(pairs))
    for k, v in pairs:
        size += _PAIR_BYTES + sys.getsizeof(k) + sys.getsizeof(v)
    return size


_PAIR_BYTES = sys.getsizeof(("", ""))
_FIXED_SERIES_BYTES = _measure_fixed_overhead()


class FlightRecorder:
    """Per-series ring buffers of recent points, bounded by age and by memory.

    Keyword-only options: `budget_bytes` bounds `size_bytes` (see the module docstring for what it
    counts); `budget_points`, if set, also bounds the number of points held; `retention` (seconds)
    is how long a point is kept by `expire`. The recorder owns no task and no clock: the caller
    records each scrape and calls `expire(now)` on its own schedule.

    Raises ValueError for a non-positive budget or retention.
    """

    def __init__(
        self,
        *,
        budget_bytes: int = 64 * 1024 * 1024,
        retention: float = 600.0,
        budget_points: int | None = None,
    ) -> None:
        if budget_bytes <= 0:
            raise ValueError(f"budget_bytes must be positive, not {budget_bytes}")
        if budget_points is not None and budget_points <= 0:
            raise ValueError(f"budget_points must be positive, not {budget_points}")
        if not retention > 0:
            raise ValueError(f"retention must be positive, not {retention}")
        self._budget_bytes = budget_bytes
        self._budget_points = budget_points
        self._retention = float(retention)
        self._series: dict[_Key, _Series] = {}
        self._points = 0
        self._overhead = 0
        self._evicted_points = 0
        self._evicted_series = 0
        self._expired_points = 0
        self._out_of_order = 0
        # Each distinct stamp (see `record`) once, by a small id: series keys carry the id.
        self._stamp_ids: dict[_Pairs, int] = {(): 0}
        self._stamps: list[_Pairs] = [()]

    @property
    def retention(self) -> float:
        """How long (seconds) `expire` keeps a point."""
        return self._retention

    @property
    def size_bytes(self) -> int:
        """The estimated memory held by the recorded series (see the module docstring)."""
        return self._overhead + self._points * _POINT_BYTES

    def record(self, samples: Iterable[Sample], *, now: float,
               labels: Mapping[str, str] | None = None) -> None:
        """Record one scrape.

        `labels` are stamped on every series of the scrape (the agent's `stamp_labels`, e.g.
        `node_role`, `pod_name`, `container_name`): they become part of the series' labels and
        identity, so the same series scraped from two endpoints with different stamps stays two
        series. A sample label of a stamped name is kept as `exported_<name>`. The labels are
        merged once, when a series is first seen, not for every point.

        Each sample becomes a point at `sample.timestamp` if the exposition carried one, else at
        `now` (Unix seconds). Type and description are kept per series, the latest wins. A point at
        the same timestamp as its series' last point replaces it (a repeated scrape of a timestamped
        exposition, or a duplicate line); an older one is refused and counted in
        `out_of_order_points`, so every series stays sorted by time. Afterwards the oldest points
        are dropped until the recorder is within its budget.
        """
        series = self._series
        stamp = tuple(sorted(labels.items())) if labels else ()
        stamp_id = self._stamp_ids.get(stamp)
        if stamp_id is None:
            stamp_id = self._stamp_ids[stamp] = len(self._stamps)
            self._stamps.append(stamp)
        for sample in samples:
            ts = now
            if sample.timestamp is not None and math.isfinite(sample.timestamp):
                ts = float(sample.timestamp)
            own = sample.labels
            key: _Key = (sample.name, tuple(sorted(own.items())) if own else (), stamp_id)
            s = series.get(key)
            if s is None:
                pairs = _stamped(key[1], stamp) if stamp else key[1]
                s = _Series(sample.name, pairs, sample.description, sample.type)
                s.overhead = _overhead(s.name, pairs, s.description)
                series[key] = s
                self._overhead += s.overhead
            else:
                if s.type != sample.type:
                    s.type = sample.type
                if s.description != sample.description:
                    self._overhead -= s.overhead
                    s.description = sample.description
                    s.overhead = _overhead(s.name, tuple(s.labels.items()), s.description)
                    self._overhead += s.overhead
            tss = s.ts
            if tss:
                last = tss[-1]
                if ts < last:
                    self._out_of_order += 1
                    continue
                if ts == last:
                    s.values[-1] = sample.value
                    continue
            tss.append(ts)
            s.values.append(sample.value)
            self._points += 1
        self._enforce_budget()

    def expire(self, now: float) -> int:
        """Drop points older than `now - retention`; evict series left with no point.

        Returns the number of series evicted (series that vanished from the node's exposition).
        """
        cutoff = now - self._retention
        gone: list[_Key] = []
        for key, s in self._series.items():
            tss = s.ts
            if tss[0] >= cutoff:
                continue
            count = bisect.bisect_left(tss, cutoff)
            self._points -= count
            self._expired_points += count
            if count == len(tss):
                gone.append(key)
            else:
                s.drop_front(count)
        for key in gone:
            self._overhead -= self._series.pop(key).overhead
        self._evicted_series += len(gone)
        return len(gone)

    def latest(self) -> list[Sample]:
        """Each series' last point, in the order the series first appeared."""
        return [s.sample(-1) for s in self._series.values()]

    def latest_of(self, name: str) -> list[Sample]:
        """The last point of each series named `name` (read-only; the pressure profiler reads the
        node's `process_resident_memory_bytes` with it)."""
        return [s.sample(-1) for s in self._series.values() if s.name == name]

    def window(self, window: TimeWindow) -> list[Sample]:
        """Every point with `start <= timestamp <= end` (a None bound is open).

        Series in the order they first appeared, each series' points in time order. The latest
        window (both bounds None) answers `latest()`. An empty or inverted window answers [].
        """
        if window.is_latest:
            return self.latest()
        out: list[Sample] = []
        for s in self._series.values():
            tss = s.ts
            lo = 0 if window.start is None else bisect.bisect_left(tss, window.start)
            hi = len(tss) if window.end is None else bisect.bisect_right(tss, window.end)
            out.extend(s.sample(i) for i in range(lo, hi))
        return out

    def query(self, window: TimeWindow) -> list[Sample]:
        """Answer a metrics request: `latest()` for the latest window, else `window(window)`."""
        return self.latest() if window.is_latest else self.window(window)

    def statistics(self) -> RecorderStatistics:
        """A frozen snapshot of the recorder's size and eviction counters."""
        return RecorderStatistics(
            series=len(self._series),
            points=self._points,
            size_bytes=self.size_bytes,
            budget_bytes=self._budget_bytes,
            evicted_points=self._evicted_points,
            evicted_series=self._evicted_series,
            expired_points=self._expired_points,
            out_of_order_points=self._out_of_order,
            budget_points=self._budget_points,
        )

    def _points_over_budget(self) -> int:
        over = -(-(self.size_bytes - self._budget_bytes) // _POINT_BYTES)  # ceil division
        if self._budget_points is not None:
            over = max(over, self._points - self._budget_points)
        return over

    def _enforce_budget(self) -> None:
        needed = self._points_over_budget()
        if needed <= 0:
            return
        # Oldest points first across series: a heap of (oldest timestamp, tiebreak, series).
        # Each series keeps its last point in this pass.
        heap = [(s.ts[0], n, s) for n, s in enumerate(self._series.values()) if len(s.ts) > 1]
        heapq.heapify(heap)
        while needed > 0 and heap:
            _, n, s = heap[0]
            # Drop, in one run, this series' points up to the next series' oldest point.
            runner_up = min((entry[0] for entry in heap[1:3]), default=math.inf)
            count = bisect.bisect_right(s.ts, runner_up, 0, len(s.ts) - 1)
            count = max(1, min(count, needed))
            s.drop_front(count)
            self._points -= count
            self._evicted_points += count
            needed -= count
            if len(s.ts) > 1:
                heapq.heapreplace(heap, (s.ts[0], n, s))
            else:
                heapq.heappop(heap)
        if needed <= 0:
            return
        # Every series is down to its last point and the budget is still exceeded: evict whole
        # series, the one whose last point is oldest (most likely a vanished one) first.
        by_age = sorted(self._series.items(), key=lambda item: item[1].ts[-1])
        for key, s in by_age:
            if self._points_over_budget() <= 0:
                break
            del self._series[key]
            self._overhead -= s.overhead
            self._points -= len(s.ts)
            self._evicted_points += len(s.ts)
            self._evicted_series += 1
