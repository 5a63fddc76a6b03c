"""Tests of `fodcproxy.core.series`: the series model, and replies restricted to their request.

Test policy: the module is sans-IO, so these are plain synchronous tests on hand-built samples.
"Latest" means each series' newest point and a window means the points inside it, whatever an
agent sends (issue 15): each case is built from what a misbehaving agent could send.
"""

from __future__ import annotations

from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fodcproxy.core.model import LATEST, MetricType, Sample, TimeWindow
from fodcproxy.core.series import DigestedSamples, SeriesSet, digest_samples, is_identity

T = 1_800_000_000.0


def points(*pts: tuple[str, float, float | None]) -> DigestedSamples:
    """Samples of series named by the first item, with a value and a timestamp, as a decoder
    fills them (float values in an array)."""
    out = DigestedSamples()
    known: dict[str, int] = {}
    for name, value, ts in pts:
        i = known.get(name)
        if i is None:
            i = known[name] = out.series.add(name, (("k", "v"),), "", MetricType.GAUGE)
        out.ids.append(i)
        out.values.append(value)
        out.stamps.append(ts)
    return out


def shown(d: DigestedSamples) -> list[tuple[str, float, float | None]]:
    return [(s.name, s.value, s.timestamp) for s in d]


def test_latest_keeps_each_series_newest_point() -> None:
    # Issue 15: three points of one series (1, 2, 3 in time order) for a "latest" request.
    d = points(("x", 1.0, T), ("x", 2.0, T + 10), ("x", 3.0, T + 20), ("y", 7.0, T))
    assert d.restrict_to(LATEST) == 2
    assert shown(d) == [("x", 3.0, T + 20), ("y", 7.0, T)]
    assert type(d.values) is array


def test_latest_whatever_the_order_the_points_come_in() -> None:
    d = points(("x", 3.0, T + 20), ("y", 7.0, T), ("x", 1.0, T), ("x", 2.0, T + 10))
    d.restrict_to(LATEST)
    assert shown(d) == [("x", 3.0, T + 20), ("y", 7.0, T)]


def test_latest_untimed_points_are_current_and_the_last_of_equals_wins() -> None:
    d = points(("x", 1.0, T + 20), ("x", 2.0, None), ("x", 3.0, T + 30))
    d.restrict_to(LATEST)
    assert shown(d) == [("x", 2.0, None)]
    d = points(("x", 1.0, T), ("x", 2.0, T), ("y", 1.0, None), ("y", 2.0, None))
    d.restrict_to(LATEST)
    assert shown(d) == [("x", 2.0, T), ("y", 2.0, None)]


def test_latest_with_one_point_per_series_changes_nothing() -> None:
    d = points(("x", 1.0, T), ("y", 2.0, None))
    ids, values = d.ids, d.values
    assert d.restrict_to(LATEST) == 0
    assert d.ids is ids and d.values is values  # not even copied


@pytest.mark.parametrize(("window", "expected"), [
    (TimeWindow(T + 10, T + 10), [2.0]),
    (TimeWindow(T + 5, None), [2.0, 3.0]),
    (TimeWindow(None, T + 10), [1.0, 2.0]),
    (TimeWindow(T - 100, T + 100), [1.0, 2.0, 3.0]),
    (TimeWindow(T + 100, T + 200), []),
])
def test_a_window_keeps_only_the_points_inside_it(window: TimeWindow,
                                                  expected: list[float]) -> None:
    d = points(("x", 1.0, T), ("x", 2.0, T + 10), ("x", 3.0, T + 20))
    assert d.restrict_to(window) == 3 - len(expected)
    assert [s.value for s in d] == expected


def test_a_window_drops_points_without_a_timestamp() -> None:
    # An untimed point cannot be placed in a window (the renderer would stamp it "now").
    d = points(("x", 1.0, T), ("x", 2.0, None))
    assert d.restrict_to(TimeWindow(T - 1, None)) == 1
    assert shown(d) == [("x", 1.0, T)]


def test_hand_made_values_stay_objects() -> None:
    d = digest_samples([Sample("x", {}, 1, timestamp=T), Sample("x", {}, 2, timestamp=T + 1)])
    d.restrict_to(LATEST)
    assert [s.value for s in d] == [2]
    assert type(d.values) is list


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 5),
                          st.one_of(st.none(), st.integers(0, 4).map(lambda t: T + t))),
                max_size=20),
       st.one_of(st.none(), st.integers(0, 4)), st.one_of(st.none(), st.integers(0, 4)))
def test_property_restricted_samples_are_what_was_asked(
        pts: list[tuple[str, int, float | None]], lo: int | None, hi: int | None) -> None:
    sent = [(name, float(value), ts) for name, value, ts in pts]
    d = points(*sent)
    window = TimeWindow(None if lo is None else T + lo, None if hi is None else T + hi)
    d.restrict_to(window)
    got = shown(d)
    if window.is_latest:
        names = [name for name, _, _ in got]
        assert sorted(names) == sorted(set(n for n, _, _ in sent))
        for name, value, ts in got:
            mine = [(t, i) for i, (n, _, t) in enumerate(sent) if n == name]
            # Newest: untimed beats timed, later timestamps beat earlier, last sent breaks ties.
            best = max(mine, key=lambda p: (p[0] is None, p[0] or 0.0, p[1]))
            assert (name, value, ts) == sent[best[1]]
    else:
        assert got == [p for p in sent if p[2] is not None and window.contains(p[2])]


def test_series_set_columns_and_identity() -> None:
    sset = SeriesSet()
    assert sset.add("x", (("a", "1"),), "X.", MetricType.COUNTER) == 0
    assert sset.add("y", (), "", MetricType.GAUGE, ("y", 1)) == 1
    assert len(sset) == 2 and sset.keys == [("x", MetricType.COUNTER), ("y", 1)]
    assert is_identity(array("q", [0, 1, 2])) and is_identity([0, 1])
    assert not is_identity(array("q", [0, 2, 1])) and not is_identity([])
