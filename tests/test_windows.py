"""Tests of `fodcproxy.core.windows`: the `/metrics-windows` JSON body and RFC 3339 times.

Test policy: plain synchronous tests; every body is decoded with `json.loads` (strict: no NaN
literals allowed) and compared as whole documents where the shape is the point (SPEC section 6),
so an added or renamed field fails a test. No test asserts on speed: run this module as a script
for a timing of 600k points.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fodcproxy.core.model import MetricType, NodeMeta, Sample
from fodcproxy.core.series import DigestedSamples, digest_samples
from fodcproxy.core.windows import (
    CHUNK_POINTS,
    WindowsCache,
    parse_rfc3339,
    render_windows,
    rfc3339,
)

T0 = 1_795_838_900.0  # 2026-11-28T04:08:20Z
NOW = T0 + 1000.0


def meta(n: int = 1, labels: tuple[tuple[str, str], ...] = ()) -> NodeMeta:
    return NodeMeta(f"agent-{n}", "datanode-hot", f"10.0.0.{n}", 17912, labels)


def decode(chunks: list[bytes]) -> Any:
    assert all(isinstance(chunk, bytes) for chunk in chunks)

    def no_constants(name: str) -> None:
        raise AssertionError(f"invalid JSON constant {name}")

    return json.loads(b"".join(chunks).decode("utf-8"), parse_constant=no_constants)


def enr(n: int = 1, **extra: str) -> dict[str, str]:
    return {"agent_id": f"agent-{n}", "node_role": "datanode-hot", "node_ip": f"10.0.0.{n}",
            "node_port": "17912", **extra}


# --------------------------------------------------------------------------------------------
# RFC 3339


@pytest.mark.parametrize(("ts", "text"), [
    (T0, "2026-11-28T04:08:20Z"),
    (T0 + 0.123, "2026-11-28T04:08:20.123Z"),
    (T0 + 0.5, "2026-11-28T04:08:20.5Z"),
    (T0 + 0.000001, "2026-11-28T04:08:20.000001Z"),
    (T0 + 0.0000004, "2026-11-28T04:08:20Z"),  # below a microsecond
    (T0 + 0.9999996, "2026-11-28T04:08:21Z"),  # rounds up into the next second
    (0.0, "1970-01-01T00:00:00Z"),
    (-1.5, "1969-12-31T23:59:58.5Z"),
    (-62135596800.0, "0001-01-01T00:00:00Z"),
])
def test_rfc3339(ts: float, text: str) -> None:
    assert rfc3339(ts) == text


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, 1e20, -1e20])
def test_rfc3339_rejects_what_it_cannot_write(ts: float) -> None:
    with pytest.raises(ValueError, match="RFC 3339"):
        rfc3339(ts)


@pytest.mark.parametrize(("text", "ts"), [
    ("2026-11-28T04:08:20Z", T0),
    ("2026-11-28t04:08:20z", T0),
    ("2026-11-28 04:08:20Z", T0),
    ("2026-11-28T12:08:20+08:00", T0),
    ("2026-11-27T22:38:20-05:30", T0),
    ("2026-11-28T04:08:20+00:00", T0),
    ("2026-11-28T04:08:20-00:00", T0),
    ("2026-11-28T04:08:20.5Z", T0 + 0.5),
    ("2026-11-28T04:08:20.123456789Z", T0 + 0.123456789),
    ("2026-11-28T12:08:20.25+08:00", T0 + 0.25),
    ("1969-12-31T23:59:58.5Z", -1.5),
])
def test_parse_rfc3339(text: str, ts: float) -> None:
    assert parse_rfc3339(text) == pytest.approx(ts, abs=1e-9)


@pytest.mark.parametrize("text", [
    "", "now", "2026-11-28", "2026-11-28T04:08:20", "2026-11-28T04:08Z",
    "2026-11-28T04:08:20+0800", "2026-11-28T04:08:20+08", "2026-11-28T04:08:20.Z",
    "2026-11-28T04:08:20.1234567891Z", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
    "2026-11-28T24:00:00Z", "2026-11-28T04:60:00Z", "2026-11-28T04:08:60Z",
    "2026-11-28T04:08:20+24:00", "2026-11-28T04:08:20+08:60", " 2026-11-28T04:08:20Z",
    "2026-11-28T04:08:20Z ", "1795838900", "２０２６-11-28T04:08:20Z", "2026-11-28T04:08:20UTC",
])
def test_parse_rfc3339_rejects_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="RFC 3339") as info:
        parse_rfc3339(text)
    assert repr(text) in str(info.value)
    assert "2026-11-28T04:08:20Z" in str(info.value)  # says what would be accepted


@settings(max_examples=300, deadline=None)
# A day away from year 1 and year 9999, so that the instant can be shifted by an offset.
@given(st.floats(min_value=-62135596800.0 + 86400, max_value=253402300799.0 - 86400),
       st.sampled_from(["Z", "+08:00", "-05:30", "+00:00"]))
def test_property_rfc3339_round_trip(ts: float, offset: str) -> None:
    text = rfc3339(ts)
    back = parse_rfc3339(text)
    assert back == pytest.approx(ts, abs=1e-6, rel=1e-15)
    assert rfc3339(back) == text
    # The same instant written with another offset parses to the same time.
    dt = datetime.fromisoformat(text)
    shifted = dt.astimezone(datetime.strptime(offset, "%z").tzinfo)
    assert parse_rfc3339(shifted.isoformat()) == pytest.approx(back, abs=1e-6)


def test_rfc3339_agrees_with_datetime() -> None:
    for ts in (T0, T0 + 0.75, 1e9 + 0.001, 4102444800.0):
        dt = datetime.fromtimestamp(ts, tz=UTC)
        assert parse_rfc3339(rfc3339(ts)) == pytest.approx(dt.timestamp(), abs=1e-6)
        assert rfc3339(ts).startswith(dt.strftime("%Y-%m-%dT%H:%M:%S"))


# --------------------------------------------------------------------------------------------
# render_windows


def test_one_series_document() -> None:
    samples = [Sample("requests_total", {"code": "200"}, 10.0, "Requests.", MetricType.COUNTER,
                      T0 + 15),
               Sample("requests_total", {"code": "200"}, 7.0, "Requests.", MetricType.COUNTER, T0)]
    assert decode(render_windows([(meta(1, (("zone", "z1"),)), samples)], now=NOW)) == [{
        "name": "requests_total",
        "description": "Requests.",
        "type": "counter",
        "labels": enr(1, node_zone="z1", code="200"),
        "agent_id": "agent-1",
        "ip": "10.0.0.1",
        "port": 17912,
        "data": [{"timestamp": "2026-11-28T04:08:20Z", "value": 7.0},
                 {"timestamp": "2026-11-28T04:08:35Z", "value": 10.0}],
    }]


def test_series_are_split_by_agent_name_and_labels_and_sorted_by_time() -> None:
    def points(values: list[tuple[float, float]], **labels: str) -> list[Sample]:
        return [Sample("g", labels, v, "G.", MetricType.GAUGE, ts) for ts, v in values]

    groups = [
        (meta(1), [*points([(T0 + 30, 3.0), (T0, 1.0)], k="a"),
                   *points([(T0 + 15, 2.0)], k="b"),
                   *points([(T0 + 15, 2.0)], k="a")]),
        (meta(2), points([(T0, 9.0)], k="a")),
    ]
    doc = decode(render_windows(groups, now=NOW))
    assert [(s["agent_id"], s["labels"]["k"], [p["value"] for p in s["data"]]) for s in doc] == [
        ("agent-1", "a", [1.0, 2.0, 3.0]), ("agent-1", "b", [2.0]), ("agent-2", "a", [9.0])]
    for s in doc:
        stamps = [parse_rfc3339(p["timestamp"]) for p in s["data"]]
        assert stamps == sorted(stamps)


def test_points_of_one_agent_in_several_groups_form_one_series() -> None:
    one = Sample("g", {"k": "a"}, 1.0, "First.", MetricType.GAUGE, T0 + 1)
    two = Sample("g", {"k": "a"}, 2.0, "Second.", MetricType.UNTYPED, T0)
    doc = decode(render_windows([(meta(1), [one]), (meta(1), [two])], now=NOW))
    assert len(doc) == 1
    assert (doc[0]["description"], doc[0]["type"]) == ("First.", "gauge")
    assert [p["value"] for p in doc[0]["data"]] == [2.0, 1.0]


def test_duplicate_timestamps_keep_the_last_point() -> None:
    samples = [Sample("g", {}, float(v), "", MetricType.GAUGE, T0 + ts)
               for ts, v in [(5, 1), (0, 2), (5, 3), (0, 4), (10, 5), (5, 6)]]
    [series] = decode(render_windows([(meta(), samples)], now=NOW))
    assert [(parse_rfc3339(p["timestamp"]) - T0, p["value"]) for p in series["data"]] == [
        (0.0, 4.0), (5.0, 6.0), (10.0, 5.0)]
    # Timestamps that differ below a microsecond would print the same: one point, the later.
    samples = [Sample("g", {}, 1.0, "", MetricType.GAUGE, 1e-9),
               Sample("g", {}, 2.0, "", MetricType.GAUGE, 0.0)]
    [series] = decode(render_windows([(meta(), samples)], now=NOW))
    assert series["data"] == [{"timestamp": "1970-01-01T00:00:00Z", "value": 1.0}]


def test_non_finite_values_are_strings() -> None:
    samples = [Sample("g", {"v": str(v)}, v, "", MetricType.GAUGE, T0)
               for v in (math.nan, math.inf, -math.inf, -0.0, 1e300, 5e-324)]
    doc = decode(render_windows([(meta(), samples)], now=NOW))
    values = [s["data"][0]["value"] for s in doc]
    assert values[:3] == ["NaN", "+Inf", "-Inf"]
    assert values[3:] == [-0.0, 1e300, 5e-324]
    assert math.copysign(1, values[3]) == -1


def test_missing_timestamps_are_now_and_unwritable_ones_are_dropped() -> None:
    samples = [Sample("g", {}, 1.0, "", MetricType.GAUGE, None),
               Sample("g", {}, 2.0, "", MetricType.GAUGE, math.nan),
               Sample("g", {}, 3.0, "", MetricType.GAUGE, math.inf),
               Sample("g", {}, 4.0, "", MetricType.GAUGE, 1e30)]
    [series] = decode(render_windows([(meta(), samples)], now=T0 + 0.5))
    assert series["data"] == [{"timestamp": "2026-11-28T04:08:20.5Z", "value": 1.0}]


def test_labels_are_enriched_like_metrics_and_clashes_exported() -> None:
    samples = [Sample("g", {"agent_id": "theirs", "node_zone": "x", "le": "0.5",
                            "weird-name": "ü\n\"q\""}, 1.0, "", MetricType.HISTOGRAM, T0)]
    [series] = decode(render_windows([(meta(3, (("zone", "z"),)), samples)], now=NOW))
    assert series["labels"] == enr(3, node_zone="z", exported_agent_id="theirs",
                                   exported_node_zone="x", le="0.5", weird_name="ü\n\"q\"")
    assert series["type"] == "histogram"


def pod_meta(n: int = 1, role: str = "ROLE_DATA") -> NodeMeta:
    return NodeMeta(f"pod-{n}", role, "", 0, (("type", "hot"),), f"banyandb-data-{n}", ("data",))


def test_a_pod_agents_series_document() -> None:
    # Upstream's agent stamps node_role, pod_name, container_name and node_<k> on its series:
    # the same values as the enrichment are the same labels, written once.
    m = pod_meta()
    samples = [Sample("banyandb_system_up_time", {
        "node_role": "ROLE_DATA", "pod_name": "banyandb-data-1", "container_name": "data",
        "node_type": "hot"}, 5.0, "Up.", MetricType.GAUGE, T0)]
    assert decode(render_windows([(m, samples)], now=NOW)) == [{
        "name": "banyandb_system_up_time",
        "description": "Up.",
        "type": "gauge",
        "labels": {"agent_id": "pod-1", "node_role": "ROLE_DATA", "pod_name": "banyandb-data-1",
                   "node_type": "hot", "container_name": "data"},
        "agent_id": "pod-1",
        "pod_name": "banyandb-data-1",
        "data": [{"timestamp": "2026-11-28T04:08:20Z", "value": 5.0}],
    }]


def test_same_value_rule_per_agent_and_across_requests() -> None:
    # Two agents with the same own labels and enrichment names but other values, an address
    # agent beside them, then the same series set again after a role change (cached memos).
    own = {"node_role": "ROLE_DATA", "pod_name": "banyandb-data-1", "k": "v"}
    samples = [Sample("g", own, 1.0, "", MetricType.GAUGE, T0)]
    addr = [Sample("g", {"node_ip": "10.0.0.1", "node_port": "1"}, 2.0, "", MetricType.GAUGE, T0)]
    cache = WindowsCache()
    first = digest_samples(samples)
    doc = decode(render_windows([(pod_meta(1), first), (pod_meta(2, "ROLE_LIAISON"), samples),
                                 (meta(1), addr)], now=NOW, cache=cache))
    base = {"node_type": "hot", "k": "v"}
    assert [s["labels"] for s in doc] == [
        {"agent_id": "pod-1", "node_role": "ROLE_DATA", "pod_name": "banyandb-data-1", **base},
        {"agent_id": "pod-2", "node_role": "ROLE_LIAISON", "pod_name": "banyandb-data-2", **base,
         "exported_node_role": "ROLE_DATA", "exported_pod_name": "banyandb-data-1"},
        enr(1, exported_node_port="1"),
    ]
    assert [("ip" in s, "port" in s, s.get("pod_name")) for s in doc] == [
        (False, False, "banyandb-data-1"), (False, False, "banyandb-data-2"), (True, True, None)]
    again = DigestedSamples(first.series)
    again.ids, again.values, again.stamps = first.ids, first.values, first.stamps
    [series] = decode(render_windows([(pod_meta(1, "ROLE_UNSPECIFIED"), again)], now=NOW,
                                     cache=cache))
    assert series["labels"] == {"agent_id": "pod-1", "node_role": "ROLE_UNSPECIFIED",
                                "pod_name": "banyandb-data-1", **base,
                                "exported_node_role": "ROLE_DATA"}


def test_types_and_odd_inputs() -> None:
    samples = [Sample("a", {}, 1, "", MetricType.UNSPECIFIED, T0),
               Sample("b", {}, 1.0, "", 99, T0),
               Sample("c", {}, True, "", MetricType.SUMMARY, T0),
               Sample('we"ird\nname', {}, 1.0, "multi\nline \"help\"", MetricType.GAUGE, T0)]
    doc = decode(render_windows([(meta(), samples)], now=NOW))
    assert [(s["name"], s["type"], s["data"][0]["value"]) for s in doc] == [
        ("a", "untyped", 1), ("b", "untyped", 1.0), ("c", "summary", 1.0),
        ('we"ird\nname', "gauge", 1.0)]
    assert doc[3]["description"] == "multi\nline \"help\""


def test_empty_answers_are_an_empty_array() -> None:
    assert render_windows([], now=NOW) == [b"[]"]
    assert decode(render_windows([(meta(), [])], now=NOW)) == []


def test_big_answers_come_in_chunks() -> None:
    samples = [Sample(f"g{i % 10}", {"i": str(i // 10)}, float(i), "", MetricType.GAUGE, T0 + i)
               for i in range(3 * CHUNK_POINTS)]
    chunks = render_windows([(meta(), samples)], now=NOW)
    assert len(chunks) >= 3
    doc = decode(chunks)
    assert sum(len(s["data"]) for s in doc) == 3 * CHUNK_POINTS


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=8), st.dictionaries(st.text(max_size=5),
                                                                st.text(max_size=8), max_size=3),
                          st.floats(), st.none() | st.floats(min_value=0, max_value=4e9)),
                max_size=20))
def test_property_always_valid_json_with_sorted_unique_times(
        rows: list[tuple[str, dict[str, str], float, float | None]]) -> None:
    samples = [Sample(name, labels, value, "", MetricType.GAUGE, ts)
               for name, labels, value, ts in rows]
    doc = decode(render_windows([(meta(), samples)], now=NOW))
    assert sum(len(s["data"]) for s in doc) <= len(rows)
    for s in doc:
        stamps = [parse_rfc3339(p["timestamp"]) for p in s["data"]]
        assert stamps == sorted(set(stamps))
        for p in s["data"]:
            assert isinstance(p["value"], float) or p["value"] in ("NaN", "+Inf", "-Inf")


if __name__ == "__main__":
    import time

    def build(agents: int, series: int, points: int) -> list[tuple[NodeMeta, list[Sample]]]:
        return [(meta(a), [Sample(f"m_{s % 100}_total", {"group": f"g{s % 3}",
                                                         "shard": str(s // 100)},
                                  float(p), "Help.", MetricType.COUNTER, T0 + 15 * p)
                           for p in range(points) for s in range(series)])
                for a in range(agents)]

    for shape in ((10, 600, 100), (100, 6000, 1)):
        groups = build(*shape)
        start = time.perf_counter()
        size = sum(len(c) for c in render_windows(groups, now=NOW))
        print(f"{shape[0]} agents x {shape[1]} series x {shape[2]} points: "
              f"{(time.perf_counter() - start) * 1000:.0f} ms, {size / 1e6:.0f} MB")
