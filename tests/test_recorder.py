"""The flight recorder, tested as h11 tests its Connection: synchronously, time as an argument.

Memory claims are checked against a real measurement (tracemalloc), never assumed.
"""

from __future__ import annotations

import gc
import math
import tracemalloc

import pytest

from fodcproxy.agent.recorder import FlightRecorder, RecorderStatistics, stamp_labels
from fodcproxy.core.model import LATEST, MetricType, Sample, TimeWindow


def gauge(name: str, value: float, ts: float | None = None, **labels: str) -> Sample:
    return Sample(name, labels, value, f"help of {name}", MetricType.GAUGE, ts)


def points(samples: list[Sample]) -> list[tuple[str, dict[str, str], float, float | None]]:
    return [(s.name, dict(s.labels), s.value, s.timestamp) for s in samples]


@pytest.fixture
def recorder() -> FlightRecorder:
    """Series a (t=100..140 every 10s) and b{x=1} (t=120..140)."""
    r = FlightRecorder(retention=600.0)
    for t in (100.0, 110.0):
        r.record([gauge("a", t)], now=t)
    for t in (120.0, 130.0, 140.0):
        r.record([gauge("a", t), gauge("b", -t, x="1")], now=t)
    return r


def test_latest_is_each_series_last_point(recorder: FlightRecorder) -> None:
    assert points(recorder.latest()) == [("a", {}, 140.0, 140.0), ("b", {"x": "1"}, -140.0, 140.0)]
    assert recorder.query(LATEST) == recorder.latest()
    assert recorder.window(TimeWindow()) == recorder.latest()


def test_window_bounds_are_inclusive(recorder: FlightRecorder) -> None:
    got = recorder.window(TimeWindow(110.0, 130.0))
    assert points(got) == [
        ("a", {}, 110.0, 110.0),
        ("a", {}, 120.0, 120.0),
        ("a", {}, 130.0, 130.0),
        ("b", {"x": "1"}, -120.0, 120.0),
        ("b", {"x": "1"}, -130.0, 130.0),
    ]
    assert recorder.query(TimeWindow(110.0, 130.0)) == got


def test_window_between_points_excludes_neighbours(recorder: FlightRecorder) -> None:
    assert [s.timestamp for s in recorder.window(TimeWindow(110.5, 129.9))] == [120.0, 120.0]


def test_window_open_ends(recorder: FlightRecorder) -> None:
    assert [s.timestamp for s in recorder.window(TimeWindow(start=130.0))] == [130.0, 140.0] * 2
    assert [s.timestamp for s in recorder.window(TimeWindow(end=110.0))] == [100.0, 110.0]


def test_empty_windows(recorder: FlightRecorder) -> None:
    assert recorder.window(TimeWindow(141.0, 200.0)) == []
    assert recorder.window(TimeWindow(0.0, 99.0)) == []
    assert recorder.window(TimeWindow(130.0, 120.0)) == []  # inverted
    assert FlightRecorder().window(TimeWindow(0.0, 1e12)) == []
    assert FlightRecorder().latest() == []


def test_samples_keep_type_and_description_latest_wins() -> None:
    r = FlightRecorder()
    r.record([Sample("x", {}, 1.0, "old help", MetricType.UNTYPED)], now=1.0)
    r.record([Sample("x", {}, 2.0, "new help", MetricType.COUNTER)], now=2.0)
    assert [(s.description, s.type) for s in r.window(TimeWindow(0, 10))] == [
        ("new help", MetricType.COUNTER),
        ("new help", MetricType.COUNTER),
    ]


def test_late_series_keep_their_own_timestamps() -> None:
    r = FlightRecorder()
    r.record([gauge("early", 1.0)], now=10.0)
    r.record([gauge("early", 2.0)], now=20.0)
    r.record([gauge("early", 3.0), gauge("late", 30.0)], now=30.0)
    r.record([gauge("early", 4.0), gauge("late", 40.0)], now=40.0)
    late = [s for s in r.window(TimeWindow(0, 100)) if s.name == "late"]
    assert [(s.timestamp, s.value) for s in late] == [(30.0, 30.0), (40.0, 40.0)]


def test_exposition_timestamps_win_over_scrape_time() -> None:
    r = FlightRecorder()
    r.record([gauge("stamped", 1.0, ts=5.5), gauge("plain", 2.0)], now=10.0)
    assert {s.name: s.timestamp for s in r.latest()} == {"stamped": 5.5, "plain": 10.0}


def test_labels_order_does_not_split_a_series() -> None:
    r = FlightRecorder()
    r.record([Sample("m", {"a": "1", "b": "2"}, 1.0)], now=1.0)
    r.record([Sample("m", {"b": "2", "a": "1"}, 2.0)], now=2.0)
    assert r.statistics().series == 1
    assert [s.value for s in r.window(TimeWindow(0, 10))] == [1.0, 2.0]


def test_labels_handed_out_are_read_only() -> None:
    r = FlightRecorder()
    r.record([gauge("m", 1.0, x="1")], now=1.0)
    with pytest.raises(TypeError):
        r.latest()[0].labels["x"] = "2"  # type: ignore[index]


def test_same_timestamp_replaces_and_older_is_refused() -> None:
    r = FlightRecorder()
    r.record([gauge("m", 1.0, ts=50.0)], now=60.0)
    r.record([gauge("m", 2.0, ts=50.0)], now=70.0)  # exporter did not move its timestamp
    r.record([gauge("m", 3.0, ts=40.0)], now=80.0)  # out of order
    assert points(r.window(TimeWindow(0, 100))) == [("m", {}, 2.0, 50.0)]
    assert r.statistics().out_of_order_points == 1


def test_nan_values_are_kept() -> None:
    r = FlightRecorder()
    r.record([gauge("m", math.nan), gauge("n", math.inf)], now=1.0)
    values = [s.value for s in r.latest()]
    assert math.isnan(values[0]) and values[1] == math.inf


def test_retention_drops_old_points_and_evicts_vanished_series() -> None:
    r = FlightRecorder(retention=30.0)
    r.record([gauge("stays", 0.0), gauge("vanishes", 0.0)], now=0.0)
    r.record([gauge("stays", 1.0), gauge("vanishes", 1.0)], now=10.0)
    for t in (20.0, 30.0, 40.0):
        r.record([gauge("stays", t)], now=t)
    assert r.expire(40.0) == 0  # cutoff 10.0: vanishes still has its point at 10
    assert [s.timestamp for s in r.window(TimeWindow(0, 100)) if s.name == "stays"] == [
        10.0, 20.0, 30.0, 40.0]
    assert r.expire(40.5) == 1
    assert [s.name for s in r.latest()] == ["stays"]
    assert [s.timestamp for s in r.window(TimeWindow(0, 100))] == [20.0, 30.0, 40.0]
    stats = r.statistics()
    assert (stats.series, stats.points, stats.evicted_series) == (1, 3, 1)
    assert stats.expired_points == 4
    assert stats.evicted_points == 0  # ageing out is not budget pressure


def test_expire_keeps_a_point_exactly_at_the_cutoff() -> None:
    r = FlightRecorder(retention=10.0)
    r.record([gauge("m", 1.0)], now=0.0)
    assert r.expire(10.0) == 0
    assert r.expire(10.001) == 1
    assert r.statistics().series == 0
    assert r.size_bytes == 0


def test_statistics_snapshot() -> None:
    r = FlightRecorder(budget_bytes=10_000_000, retention=60.0)
    r.record([gauge("a", 1.0), gauge("b", 2.0)], now=1.0)
    r.record([gauge("a", 3.0)], now=2.0)
    stats = r.statistics()
    assert isinstance(stats, RecorderStatistics)
    assert (stats.series, stats.points, stats.budget_bytes) == (2, 3, 10_000_000)
    assert stats.size_bytes == r.size_bytes > 0
    assert (stats.evicted_points, stats.evicted_series) == (0, 0)
    with pytest.raises(AttributeError):
        stats.points = 0  # type: ignore[misc]


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="budget_bytes"):
        FlightRecorder(budget_bytes=0)
    with pytest.raises(ValueError, match="retention"):
        FlightRecorder(retention=0)
    with pytest.raises(ValueError, match="budget_points"):
        FlightRecorder(budget_points=-1)


def test_points_budget_drops_oldest_across_series() -> None:
    r = FlightRecorder(budget_points=5)
    r.record([gauge("a", 0.0)], now=0.0)
    r.record([gauge("a", 1.0), gauge("b", 1.0)], now=1.0)
    r.record([gauge("a", 2.0), gauge("b", 2.0)], now=2.0)
    r.record([gauge("a", 3.0), gauge("b", 3.0)], now=3.0)  # 7 points: drop the 2 oldest
    kept = [(s.name, s.timestamp) for s in r.window(TimeWindow(0, 10))]
    assert kept == [("a", 2.0), ("a", 3.0), ("b", 1.0), ("b", 2.0), ("b", 3.0)]
    assert r.statistics().evicted_points == 2


def test_budget_keeps_every_series_latest_point_first() -> None:
    r = FlightRecorder(budget_points=3)
    for t in range(10):
        r.record([gauge("busy", float(t))], now=float(t))
    r.record([gauge("quiet", 0.0), gauge("other", 0.0)], now=10.0)
    assert sorted((s.name, s.timestamp) for s in r.window(TimeWindow(0, 100))) == [
        ("busy", 9.0), ("other", 10.0), ("quiet", 10.0)]


def test_budget_evicts_whole_series_only_as_a_last_resort() -> None:
    r = FlightRecorder(budget_points=2)
    r.record([gauge("old", 0.0)], now=0.0)
    r.record([gauge("mid", 0.0)], now=1.0)
    r.record([gauge("new", 0.0)], now=2.0)
    assert [s.name for s in r.latest()] == ["mid", "new"]
    stats = r.statistics()
    assert (stats.series, stats.evicted_series, stats.evicted_points) == (2, 1, 1)


def _scrape(k: int, series: int = 1000) -> list[Sample]:
    # 100 families of 10 series, labels and help like a real node's.
    return [
        Sample(
            f"banyandb_measure_total_written_{i // 10}",
            {"group": "sw_metric", "shard": str(i % 10)},
            float(k * i),
            "Total number of data points written to the measure",
            MetricType.COUNTER,
        )
        for i in range(series)
    ]


def test_size_bytes_matches_tracemalloc() -> None:
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        r = FlightRecorder()
        for k in range(100):
            r.record(_scrape(k), now=1000.0 + k)
        gc.collect()
        measured = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    assert r.statistics().points == 100_000
    assert 0.75 < measured / r.size_bytes < 1.33, (measured, r.size_bytes)


def test_byte_budget_is_respected_in_real_memory() -> None:
    budget = 1_000_000
    gc.collect()
    tracemalloc.start()
    try:
        baseline = tracemalloc.get_traced_memory()[0]
        r = FlightRecorder(budget_bytes=budget)
        for k in range(300):
            r.record(_scrape(k, series=200), now=1000.0 + k)
            assert r.size_bytes <= budget
        gc.collect()
        measured = tracemalloc.get_traced_memory()[0] - baseline
    finally:
        tracemalloc.stop()
    stats = r.statistics()
    assert stats.series == 200  # the budget cut history, not series
    assert stats.evicted_points > 0 and stats.evicted_series == 0
    assert measured < 1.33 * budget, measured
    # Oldest first: every series still reaches back to about the same time.
    oldest: dict[tuple[str, str], float] = {}
    for s in reversed(r.window(TimeWindow(0, None))):
        assert s.timestamp is not None
        oldest[(s.name, s.labels["shard"])] = s.timestamp
    assert max(oldest.values()) - min(oldest.values()) <= 1.0


# --- the labels an agent stamps (like upstream BanyanDB's agent) ---------------------------------


def test_stamp_labels_like_upstreams_agent() -> None:
    assert stamp_labels(role="ROLE_DATA", labels={"type": "hot", "pod_name": "x",
                                                  "container_name": "y", "empty": ""},
                        pod_name="banyandb-data-hot-0", container_name="data") == {
        "node_role": "ROLE_DATA", "pod_name": "banyandb-data-hot-0", "container_name": "data",
        "node_type": "hot"}
    assert stamp_labels(role="liaison", labels={"zone": "a"}) == {"node_role": "liaison",
                                                                   "node_zone": "a"}


def test_stamped_labels_are_merged_once_per_series_and_split_endpoints() -> None:
    r = FlightRecorder()
    data = {"node_role": "ROLE_DATA", "pod_name": "p", "container_name": "data"}
    lifecycle = {**data, "container_name": "lifecycle"}
    own = Sample("up", {"job": "x", "pod_name": "own"}, 1.0)
    r.record([own], now=1.0, labels=data)
    first = r.latest()[0].labels
    r.record([own], now=2.0, labels=data)
    [sample] = r.latest()
    assert sample.labels is first  # one label view per series, not one per point
    assert dict(sample.labels) == {"job": "x", "exported_pod_name": "own", **data}
    r.record([own], now=3.0, labels=lifecycle)  # the same series from another endpoint
    assert r.statistics().series == 2
    assert sorted(s.labels["container_name"] for s in r.latest()) == ["data", "lifecycle"]
    assert [s.timestamp for s in r.window(TimeWindow(0, 10))
            if s.labels["container_name"] == "data"] == [1.0, 2.0]
    r.record([Sample("up", {"job": "x", "pod_name": "own"}, 1.0)], now=4.0)  # no stamp
    assert r.statistics().series == 3


def test_stamped_labels_count_against_the_budget() -> None:
    plain, stamped = FlightRecorder(), FlightRecorder()
    plain.record([Sample("up", {}, 1.0)], now=1.0)
    stamped.record([Sample("up", {}, 1.0)], now=1.0, labels={"node_role": "liaison"})
    assert stamped.size_bytes > plain.size_bytes
