"""Tests of `fodcproxy.core.exposition`: the `/metrics` body (SPEC section 6).

Test policy: the module is sans-IO, so these are plain synchronous tests on hand-built batches.
Every body a test renders is parsed back with prometheus_client's text parser (OpenMetrics bodies
with its stricter OpenMetrics parser) and checked line by line against the rules the Go text
parser enforces (one TYPE per family, a family's samples contiguous and named as its type allows),
so a test that only looks at one detail still fails on a broken exposition. `promtool check
metrics` is run when it is installed. No test asserts on speed: run this module as a script for
a timing against prometheus_client's `generate_latest`.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fodcproxy.core import exposition
from fodcproxy.core.exposition import (
    CONTENT_TYPE_OPENMETRICS,
    CONTENT_TYPE_TEXT,
    AgentBatch,
    ExpositionCache,
    FamilyConflict,
    Rendered,
    render,
    render_with_stats,
)
from fodcproxy.core.labels import Enrichment, enrichment_labels, own_labels
from fodcproxy.http.negotiation import wants_openmetrics
from fodcproxy.core.model import MetricType, NodeMeta, Sample

G, C, H, S, U, UNSPEC = (
    MetricType.GAUGE,
    MetricType.COUNTER,
    MetricType.HISTOGRAM,
    MetricType.SUMMARY,
    MetricType.UNTYPED,
    MetricType.UNSPECIFIED,
)
HOSTILE = 'a"b\\c\nd'


def meta(n: int = 1, role: str = "liaison", labels: tuple[tuple[str, str], ...] = ()) -> NodeMeta:
    return NodeMeta(f"agent-{n}", role, f"10.0.0.{n}", 17912, labels)


def batch(n: int, samples: Sequence[Sample], *, up: bool = True, duration: float = 0.25,
          role: str = "liaison", labels: tuple[tuple[str, str], ...] = ()) -> AgentBatch:
    return AgentBatch(meta(n, role, labels), list(samples), up, duration)


def enr(n: int = 1, role: str = "liaison", **extra: str) -> dict[str, str]:
    """The enrichment labels of `meta(n, role)` merged with `extra`."""
    return {"agent_id": f"agent-{n}", "node_role": role, "node_ip": f"10.0.0.{n}",
            "node_port": "17912", **extra}


def histogram(name: str, labels: Mapping[str, str], buckets: Sequence[tuple[str, float]],
              total: float, help_text: str = "Latency.") -> list[Sample]:
    out = [Sample(f"{name}_bucket", {**labels, "le": le}, v, help_text, H) for le, v in buckets]
    out.append(Sample(f"{name}_sum", dict(labels), total, help_text, H))
    out.append(Sample(f"{name}_count", dict(labels), buckets[-1][1], help_text, H))
    return out


def summary(name: str, labels: Mapping[str, str], help_text: str = "RPC latency.") -> list[Sample]:
    return [
        Sample(name, {**labels, "quantile": "0.5"}, 0.25, help_text, S),
        Sample(name, {**labels, "quantile": "0.99"}, 0.75, help_text, S),
        Sample(f"{name}_sum", dict(labels), 12.5, help_text, S),
        Sample(f"{name}_count", dict(labels), 40.0, help_text, S),
    ]


# --------------------------------------------------------------------------------------------
# Checking a body


_SUFFIXES = {
    "gauge": ("",), "untyped": ("",), "unknown": ("",), "counter": ("",),
    "histogram": ("_bucket", "_count", "_sum"), "summary": ("", "_count", "_sum"),
}
_OM_SUFFIXES = {
    **_SUFFIXES, "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}
_SAMPLE_RE = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)")


def check_structure(body: str, openmetrics: bool) -> list[str]:
    """Assert the rules strict parsers enforce; return the family names in order."""
    suffixes = _OM_SUFFIXES if openmetrics else _SUFFIXES
    lines = body.split("\n")
    assert lines[-1] == "", "the body ends with a newline"
    lines = lines[:-1]
    if openmetrics:
        assert lines[-1] == "# EOF" and "# EOF" not in lines[:-1]
        lines = lines[:-1]
    families: list[str] = []
    current: tuple[str, str] | None = None
    helped: set[str] = set()
    all_sample_names: dict[str, str] = {}
    for line in lines:
        assert line, "no blank lines"
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert name not in helped, f"second HELP for {name}"
            helped.add(name)
        elif line.startswith("# TYPE "):
            _, _, name, ftype = line.split(" ")
            assert name not in families, f"second TYPE for {name}"
            assert ftype != ("untyped" if openmetrics else "unknown")
            families.append(name)
            current = (name, ftype)
        else:
            match = _SAMPLE_RE.fullmatch(line)
            assert match, f"unparsable sample line {line!r}"
            assert current is not None, f"sample before any TYPE: {line!r}"
            name, ftype = current
            sample_name = match.group(1)
            assert sample_name in [name + s for s in suffixes[ftype]], (
                f"{sample_name} does not belong to {ftype} family {name}")
            owner = all_sample_names.setdefault(sample_name, name)
            assert owner == name, f"{sample_name} appears in families {owner} and {name}"
    # No family may be named like another family's samples (parsers would mix them up).
    for name in families:
        assert all_sample_names.get(name, name) == name, f"family {name} clashes"
    return families


def rendered(batches: Sequence[AgentBatch], *, openmetrics: bool = False, tail: str = "") -> tuple[
        str, Rendered]:
    result = render_with_stats(batches, openmetrics=openmetrics, tail=tail)
    assert all(isinstance(chunk, str) and chunk for chunk in result.chunks)
    body = "".join(result.chunks)
    body.encode("utf-8")
    check_structure(body, openmetrics)
    return body, result


def parsed(body: str, openmetrics: bool) -> dict[str, tuple[str, str, dict[tuple[str, frozenset[
        tuple[str, str]]], float]]]:
    """family name -> (type, help, {(sample name, labels): value}) from prometheus_client."""
    parse = parse_openmetrics if openmetrics else parse_text
    out = {}
    for fam in parse(body):
        assert fam.name not in out, f"family {fam.name} parsed twice"
        out[fam.name] = (fam.type, fam.documentation, {
            (s.name, frozenset(s.labels.items())): s.value for s in fam.samples})
    return out


def series(fams: Mapping[str, Any], family: str) -> Any:
    return fams[family][2]


def key(name: str, labels: Mapping[str, str]) -> tuple[str, frozenset[tuple[str, str]]]:
    return name, frozenset(labels.items())


both_formats = pytest.mark.parametrize("om", [False, True], ids=["text", "openmetrics"])


# --------------------------------------------------------------------------------------------
# Enrichment


def test_enrichment_labels_order_and_node_labels() -> None:
    m = NodeMeta("a1", "datanode-hot", "10.0.0.7", 17912,
                 (("zone", "z1"), ("rack.id", "r-2"), ("role", "x")))
    assert enrichment_labels(m) == [
        ("agent_id", "a1"), ("node_role", "datanode-hot"), ("node_ip", "10.0.0.7"),
        ("node_port", "17912"), ("node_zone", "z1"), ("node_rack_id", "r-2"),
        # node label `role` would be `node_role`, which is taken.
        ("exported_node_role", "x"),
    ]


def test_own_labels_rename_clashes_and_sanitise() -> None:
    reserved = frozenset({"agent_id", "node_role"})
    assert own_labels([("agent_id", "1"), ("exported_agent_id", "2"), ("a-b", "3"),
                       ("a_b", "4"), ("9x", "5"), ("__meta", "6"), ("", "7")], reserved) == sorted([
        ("exported_exported_agent_id", "1"), ("exported_agent_id", "2"),
        ("a_b", "3"), ("exported_a_b", "4"), ("_9x", "5"), ("exported___meta", "6"), ("_", "7"),
    ])


@both_formats
def test_every_sample_is_enriched_and_clashing_labels_are_exported(om: bool) -> None:
    samples = [Sample("jobs_total", {"agent_id": "mine", "exported_agent_id": "older",
                                     "node_zone": "theirs", "queue": "q1"}, 3.0, "Jobs.", C)]
    body, result = rendered([batch(1, samples, labels=(("zone", "z1"),))], openmetrics=om)
    fams = parsed(body, om)
    # prometheus_client names a counter family without `_total` in both formats.
    assert series(fams, "jobs") == {key("jobs_total", enr(
        1, node_zone="z1", exported_node_zone="theirs", exported_exported_agent_id="mine",
        exported_agent_id="older", queue="q1")): 3.0}
    assert result.stats.samples == 1


# --------------------------------------------------------------------------------------------
# Pod agents, and own labels that are the enrichment's (upstream's agents stamp them)


def pod_meta(n: int = 1, role: str = "ROLE_DATA",
             labels: tuple[tuple[str, str], ...] = (("type", "hot"),)) -> NodeMeta:
    return NodeMeta(f"pod-{n}", role, "", 0, labels, f"banyandb-data-{n}", ("data",))


def upstream_series(m: NodeMeta, name: str = "banyandb_system_up_time", value: float = 7.0,
                    **extra: str) -> Sample:
    """A sample as upstream's agent sends it: it stamps node_role, pod_name, container_name and
    node_<k> itself."""
    labels = {"node_role": m.role, "pod_name": m.pod_name, "container_name": m.container_names[0],
              **{f"node_{k}": v for k, v in m.labels}, **extra}
    return Sample(name, labels, value, "Seconds up.", G)


def test_enrichment_labels_of_a_pod_agent() -> None:
    m = NodeMeta("pod-1", "ROLE_DATA", "", 0, (("type", "hot"), ("pod_name", "x")), "data-0")
    assert enrichment_labels(m) == [
        ("agent_id", "pod-1"), ("node_role", "ROLE_DATA"), ("pod_name", "data-0"),
        ("node_type", "hot"), ("node_pod_name", "x"),
    ]


def test_own_labels_with_an_enrichment_labels_name_and_value_are_that_label() -> None:
    enrichment = Enrichment([("agent_id", "a1"), ("node_role", "ROLE_DATA"), ("pod_name", "p")])
    assert own_labels([("node_role", "ROLE_DATA"), ("pod_name", "other"), ("agent_id", "a1"),
                       ("container_name", "data"), ("exported_pod_name", "o")], enrichment) == [
        ("container_name", "data"), ("exported_exported_pod_name", "other"),
        ("exported_pod_name", "o")]
    # sanitised names compare after sanitising; extra names are taken whatever the value
    assert own_labels([("pod-name", "p"), ("le", "1")], enrichment, ("le",)) == [
        ("exported_le", "1")]
    # only names: every clash is renamed, as before
    assert own_labels([("node_role", "ROLE_DATA")], enrichment.names) == [
        ("exported_node_role", "ROLE_DATA")]
    assert Enrichment(enrichment.pairs) == enrichment and dict(enrichment) == {
        "agent_id": "a1", "node_role": "ROLE_DATA", "pod_name": "p"}


@both_formats
def test_a_pod_agents_series_keep_upstreams_labels_once(om: bool) -> None:
    m = pod_meta()
    body, result = rendered([AgentBatch(m, [upstream_series(m)], True, 0.5)], openmetrics=om)
    line = next(ln for ln in body.splitlines() if ln.startswith("banyandb_system_up_time{"))
    assert line == (
        'banyandb_system_up_time{agent_id="pod-1",node_role="ROLE_DATA",'
        'pod_name="banyandb-data-1",node_type="hot",container_name="data"} 7.0')
    up = next(ln for ln in body.splitlines() if ln.startswith("fodc_agent_up{"))
    assert up == ('fodc_agent_up{agent_id="pod-1",node_role="ROLE_DATA",'
                  'pod_name="banyandb-data-1",node_type="hot"} 1')
    assert "node_ip" not in body and "node_port" not in body
    fams = parsed(body, om)
    assert series(fams, "fodc_agent_collect_duration_seconds") == {key(
        "fodc_agent_collect_duration_seconds",
        {"agent_id": "pod-1", "node_role": "ROLE_DATA", "pod_name": "banyandb-data-1",
         "node_type": "hot"}): 0.5}
    assert result.stats.samples == 1


@both_formats
def test_own_labels_of_another_value_are_still_exported(om: bool) -> None:
    # A pod agent still ROLE_UNSPECIFIED in its scrape while the proxy knows it as ROLE_DATA;
    # an address agent whose series say another node_ip, and one that says its own.
    m = pod_meta()
    pod_sample = upstream_series(NodeMeta("pod-1", "ROLE_UNSPECIFIED", "", 0, (("type", "warm"),),
                                          "banyandb-data-1", ("data",)))
    addr = [Sample("x", {"node_ip": "10.0.0.1", "node_port": "9", "k": "v"}, 1.0, "X.", G),
            Sample("y", {"node_ip": "192.168.0.1"}, 2.0, "Y.", G)]
    body, _ = rendered([AgentBatch(m, [pod_sample], True, 0.1), batch(1, addr)], openmetrics=om)
    fams = parsed(body, om)
    assert series(fams, "banyandb_system_up_time") == {key("banyandb_system_up_time", {
        "agent_id": "pod-1", "node_role": "ROLE_DATA", "pod_name": "banyandb-data-1",
        "node_type": "hot", "container_name": "data", "exported_node_role": "ROLE_UNSPECIFIED",
        "exported_node_type": "warm"}): 7.0}
    assert series(fams, "x") == {key("x", enr(1, exported_node_port="9", k="v")): 1.0}
    assert series(fams, "y") == {key("y", enr(1, exported_node_ip="192.168.0.1")): 2.0}


@both_formats
def test_agents_sharing_own_label_sets_get_their_own_enrichments_rule(om: bool) -> None:
    # Same own labels, same enrichment names, different values: one agent's text is not
    # another's (the renderer shares label texts only where the values do not matter).
    same = {"node_role": "ROLE_DATA", "pod_name": "p", "op": "write"}
    hist = histogram("lat", same, [("1", 1.0), ("+Inf", 2.0)], 1.5)
    a = NodeMeta("pod-a", "ROLE_DATA", "", 0, (), "p")
    b = NodeMeta("pod-b", "ROLE_LIAISON", "", 0, (), "q")
    plain = [Sample("g", same, 1.0, "G.", G), Sample("g", {"op": "read"}, 2.0, "G.", G)]
    body, result = rendered([AgentBatch(a, plain + hist, True, 0.1),
                             AgentBatch(b, plain + hist, True, 0.1)], openmetrics=om)
    fams = parsed(body, om)
    ea = {"agent_id": "pod-a", "node_role": "ROLE_DATA", "pod_name": "p"}
    eb = {"agent_id": "pod-b", "node_role": "ROLE_LIAISON", "pod_name": "q",
          "exported_node_role": "ROLE_DATA", "exported_pod_name": "p"}
    assert series(fams, "g") == {
        key("g", {**ea, "op": "write"}): 1.0, key("g", {**ea, "op": "read"}): 2.0,
        key("g", {**eb, "op": "write"}): 1.0,
        key("g", {"agent_id": "pod-b", "node_role": "ROLE_LIAISON", "pod_name": "q",
                  "op": "read"}): 2.0}
    buckets = series(fams, "lat")
    assert buckets[key("lat_bucket", {**ea, "op": "write", "le": "+Inf"})] == 2.0
    assert buckets[key("lat_bucket", {**eb, "op": "write", "le": "+Inf"})] == 2.0
    assert result.stats.duplicates == 0


def _reply(sset: Any, samples: Sequence[Sample]) -> Any:
    """`samples` as the proxy's decoder hands them over (float columns), in series set `sset`."""
    from array import array

    from fodcproxy.core.series import DigestedSamples, digest_samples

    d = digest_samples(samples)
    if sset is None:
        d.values = array("d", d.values)
        return d
    out = DigestedSamples(sset)
    out.ids, out.values, out.stamps = d.ids, array("d", d.values), d.stamps
    return out


def test_cached_lines_follow_the_agents_enrichment() -> None:
    # The line heads are remembered per series across scrapes (by the route of a reply): a role
    # upgrade changes which own labels are the enrichment's.
    cache = ExpositionCache()
    unspecified = NodeMeta("pod-1", "ROLE_UNSPECIFIED", "", 0, (), "p", ("data",))
    data = NodeMeta("pod-1", "ROLE_DATA", "", 0, (("type", "hot"),), "p", ("data",))
    old = [Sample("u", {"node_role": "ROLE_UNSPECIFIED", "pod_name": "p"}, 1.0, "U.", G)]
    first = _reply(None, old)
    lines = []
    for m, reply in [(unspecified, first), (data, _reply(first.series, old)),
                     (unspecified, _reply(first.series, old))]:
        body = "".join(render([AgentBatch(m, reply, True, 0.1)], cache=cache))
        lines.append(next(ln for ln in body.splitlines() if ln.startswith("u{")))
    assert lines == [
        'u{agent_id="pod-1",node_role="ROLE_UNSPECIFIED",pod_name="p"} 1.0',
        'u{agent_id="pod-1",node_role="ROLE_DATA",pod_name="p",node_type="hot",'
        'exported_node_role="ROLE_UNSPECIFIED"} 1.0',
        'u{agent_id="pod-1",node_role="ROLE_UNSPECIFIED",pod_name="p"} 1.0',
    ]


# --------------------------------------------------------------------------------------------
# Types


@both_formats
def test_counter_gauge_untyped_round_trip(om: bool) -> None:
    samples = [
        Sample("requests_total", {"code": "200"}, 10.0, "Requests served.", C),
        Sample("requests_total", {"code": "500"}, 2.0, "Requests served.", C),
        Sample("temperature_celsius", {}, 21.5, "Temperature.", G),
        Sample("mystery", {"k": "v"}, 7.0, "", U),
        Sample("older", {}, 8.0, "Unspecified type.", UNSPEC),
    ]
    body, result = rendered([batch(1, samples)], openmetrics=om)
    fams = parsed(body, om)
    untyped = "unknown"  # prometheus_client's name for untyped, in both formats
    assert {name: fam[0] for name, fam in fams.items()} == {
        "requests": "counter", "temperature_celsius": "gauge", "mystery": untyped,
        "older": untyped, "fodc_agent_up": "gauge",
        "fodc_agent_collect_duration_seconds": "gauge",
    }
    assert series(fams, "requests") == {
        key("requests_total", enr(code="200")): 10.0,
        key("requests_total", enr(code="500")): 2.0,
    }
    assert series(fams, "mystery") == {key("mystery", enr(k="v")): 7.0}
    assert fams["requests"][1] == "Requests served."
    assert result.stats == exposition.RenderStats(samples=5)
    # Text 0.0.4 names a counter family after its sample; OpenMetrics without `_total`.
    assert ("# TYPE requests counter" if om else "# TYPE requests_total counter") in body


@both_formats
def test_histogram_and_summary_round_trip(om: bool) -> None:
    samples = [
        *histogram("latency_seconds", {"path": "/a"}, [("0.1", 1.0), ("1", 3.0), ("+Inf", 4.0)],
                   2.5),
        *summary("rpc_seconds", {"method": "get"}),
    ]
    body, _ = rendered([batch(1, samples), batch(2, samples)], openmetrics=om)
    fams = parsed(body, om)
    assert fams["latency_seconds"][0] == "histogram"
    assert fams["rpc_seconds"][0] == "summary"
    hist = series(fams, "latency_seconds")
    for n in (1, 2):
        assert hist[key("latency_seconds_bucket", enr(n, path="/a", le="0.1"))] == 1.0
        assert hist[key("latency_seconds_bucket", enr(n, path="/a", le="+Inf"))] == 4.0
        assert hist[key("latency_seconds_count", enr(n, path="/a"))] == 4.0
        assert hist[key("latency_seconds_sum", enr(n, path="/a"))] == 2.5
        summ = series(fams, "rpc_seconds")
        assert summ[key("rpc_seconds", enr(n, method="get", quantile="0.99"))] == 0.75
        assert summ[key("rpc_seconds_count", enr(n, method="get"))] == 40.0
    assert len(hist) == 10 and len(series(fams, "rpc_seconds")) == 8
    # `le` and `quantile` are the last label of their lines.
    for line in body.splitlines():
        if re.search(r'[{,]le="', line):
            assert re.search(r',le="[^"]*"\} ', line), line
        if re.search(r'[{,]quantile="', line):
            assert re.search(r',quantile="[^"]*"\} ', line), line


def test_openmetrics_groups_histogram_series_and_sorts_buckets() -> None:
    # The agent sends the buckets of two series interleaved and out of order: OpenMetrics wants
    # each series' samples together and its buckets ascending.
    a, b = {"path": "/a"}, {"path": "/b"}
    samples = [
        Sample("lat_bucket", {**a, "le": "+Inf"}, 4.0, "L.", H),
        Sample("lat_bucket", {**b, "le": "1"}, 1.0, "L.", H),
        Sample("lat_bucket", {**a, "le": "1"}, 2.0, "L.", H),
        Sample("lat_bucket", {**b, "le": "+Inf"}, 1.0, "L.", H),
        Sample("lat_count", a, 4.0, "L.", H), Sample("lat_count", b, 1.0, "L.", H),
        Sample("lat_sum", a, 3.0, "L.", H), Sample("lat_sum", b, 0.5, "L.", H),
    ]
    body, result = rendered([batch(1, samples)], openmetrics=True)
    assert len(series(parsed(body, True), "lat")) == 8
    assert result.stats.samples == 8
    lat = [line.split(" ")[0] for line in body.splitlines() if line.startswith("lat")]
    assert [("/a" in x, x.split("{")[0]) for x in lat] == [
        (True, "lat_bucket"), (True, "lat_bucket"), (True, "lat_count"), (True, "lat_sum"),
        (False, "lat_bucket"), (False, "lat_bucket"), (False, "lat_count"), (False, "lat_sum"),
    ]


def test_openmetrics_drops_what_its_parser_rejects() -> None:
    samples = [
        # No +Inf bucket: the whole series goes.
        *histogram("h1", {}, [("1", 1.0)], 1.0),
        # Fractional bucket count, negative and NaN counters: those samples go.
        Sample("h2_bucket", {"le": "+Inf"}, 1.5, "", H),
        Sample("c_total", {"k": "neg"}, -1.0, "", C),
        Sample("c_total", {"k": "nan"}, math.nan, "", C),
        Sample("c_total", {"k": "ok"}, 1.0, "", C),
    ]
    body, result = rendered([batch(1, samples)], openmetrics=True)
    fams = parsed(body, True)
    assert "h1" not in fams and "h2" not in fams
    assert series(fams, "c") == {key("c_total", enr(k="ok")): 1.0}
    assert result.stats.conflicts == 3 + 1 + 2
    # Text 0.0.4 has no such rules: everything is written.
    body, result = rendered([batch(1, samples)])
    assert result.stats.conflicts == 0 and result.stats.samples == 7


def test_openmetrics_counter_without_total_is_unknown() -> None:
    body, _ = rendered([batch(1, [Sample("hits", {}, 3.0, "Hits.", C)])], openmetrics=True)
    fams = parsed(body, True)
    assert fams["hits"][0] == "unknown"
    assert series(fams, "hits") == {key("hits", enr()): 3.0}


def test_created_samples() -> None:
    samples = [Sample("jobs_total", {}, 3.0, "Jobs.", C),
               Sample("jobs_created", {}, 1.7e9, "Jobs.", C)]
    # Text 0.0.4 has no created timestamps: a gauge of their own, as prometheus_client writes them.
    body, _ = rendered([batch(1, samples)])
    fams = parsed(body, False)
    assert fams["jobs_created"][0] == "gauge" and fams["jobs"][0] == "counter"
    body, _ = rendered([batch(1, samples)], openmetrics=True)
    fams = parsed(body, True)
    assert series(fams, "jobs") == {key("jobs_total", enr()): 3.0,
                                    key("jobs_created", enr()): 1.7e9}


@both_formats
def test_type_disagreement_untyped_and_counter(om: bool) -> None:
    one = batch(1, [Sample("ops_total", {}, 1.0, "", U)])
    two = batch(2, [Sample("ops_total", {}, 2.0, "Operations.", C)])
    for batches in ([one, two], [two, one]):
        body, result = rendered(batches, openmetrics=om)
        assert body.count("# TYPE") == 3
        fams = parsed(body, om)
        assert fams["ops"][:2] == ("counter", "Operations.")
        assert series(fams, "ops") == {key("ops_total", enr(1)): 1.0,
                                        key("ops_total", enr(2)): 2.0}
        assert result.stats.conflicts == 0


@both_formats
def test_type_disagreement_first_typed_wins(om: bool) -> None:
    batches = [
        batch(1, [Sample("level", {}, 1.0, "", U)]),
        batch(2, [Sample("level", {}, 2.0, "Level.", G)]),
        batch(3, [Sample("level", {"quantile": "0.5"}, 3.0, "", S)]),
    ]
    body, result = rendered(batches, openmetrics=om)
    fams = parsed(body, om)
    assert fams["level"][0] == "gauge"
    # The untyped sample joins; the summary's quantile sample, although named like a gauge sample,
    # is a summary's: the first typed family (the gauge) wins and the conflict is reported.
    assert series(fams, "level") == {key("level", enr(1)): 1.0, key("level", enr(2)): 2.0}
    assert result.stats.conflicts == 1
    assert result.stats.family_conflicts == (FamilyConflict("level", "summary", "level", "gauge"),)


@both_formats
def test_counter_and_gauge_of_the_same_name_first_wins_and_is_reported(om: bool) -> None:
    counter = batch(1, [Sample("x_total", {"k": "1"}, 5.0, "A counter.", C)])
    gauge = batch(2, [Sample("x_total", {"k": "1"}, 3.0, "A gauge.", G),
                      Sample("x_total", {"k": "2"}, 4.0, "A gauge.", G)])
    family = "x" if om else "x_total"  # OpenMetrics counter families are named without _total
    body, result = rendered([counter, gauge], openmetrics=om)
    fams = parsed(body, om)
    assert fams["x"][:2] == ("counter", "A counter.")
    assert series(fams, "x") == {key("x_total", enr(1, k="1")): 5.0}
    assert result.stats.conflicts == 2
    assert result.stats.family_conflicts == (
        FamilyConflict(family if not om else "x_total", "gauge", family, "counter"),)
    body, result = rendered([gauge, counter], openmetrics=om)
    fams = parsed(body, om)
    assert series(fams, "x_total") == {key("x_total", enr(2, k="1")): 3.0,
                                       key("x_total", enr(2, k="2")): 4.0}
    assert fams["x_total"][0] == "gauge" and result.stats.conflicts == 1
    assert len(result.stats.family_conflicts) == 1


@both_formats
def test_gauge_named_like_a_histogram_sample_first_wins(om: bool) -> None:
    hist = histogram("x", {}, [("1", 1.0), ("+Inf", 2.0)], 1.5)
    gauges = [Sample("x_count", {}, 9.0, "A gauge.", G), Sample("x_bucket", {}, 9.0, "", G)]
    batches = [batch(1, hist), batch(2, gauges)]
    body, result = rendered(batches, openmetrics=om)
    fams = parsed(body, om)
    assert fams["x"][:2] == ("histogram", "Latency.")
    assert "x_count" not in fams and "x_bucket" not in fams
    assert series(fams, "x") == {
        key("x_bucket", enr(1, le="1")): 1.0, key("x_bucket", enr(1, le="+Inf")): 2.0,
        key("x_sum", enr(1)): 1.5, key("x_count", enr(1)): 2.0,
    }
    assert result.stats.conflicts == 2
    assert set(result.stats.family_conflicts) == {
        FamilyConflict("x_count", "gauge", "x", "histogram"),
        FamilyConflict("x_bucket", "gauge", "x", "histogram")}
    # The gauges first: they are kept, and the histogram (all four samples) is left out.
    body, result = rendered(batches[::-1], openmetrics=om)
    fams = parsed(body, om)
    assert "x" not in fams
    assert series(fams, "x_count") == {key("x_count", enr(2)): 9.0}
    assert series(fams, "x_bucket") == {key("x_bucket", enr(2)): 9.0}
    assert result.stats.conflicts == 4
    assert result.stats.family_conflicts == (
        FamilyConflict("x", "histogram", "x_count", "gauge"),)


def test_conflicts_are_reported_to_the_cache_callback_every_render() -> None:
    reported: list[FamilyConflict] = []
    cache = ExpositionCache(on_conflict=reported.append)
    batches = [batch(1, [Sample("x", {}, 1.0, "", C)]), batch(2, [Sample("x", {}, 2.0, "", G)])]
    for _ in range(2):
        body = "".join(render(batches, cache=cache))
        check_structure(body, False)
    assert reported == [FamilyConflict("x", "gauge", "x", "counter")] * 2
    assert "the family was first declared a counter" in str(reported[0])


@both_formats
def test_gauge_and_histogram_of_the_same_name_first_typed_wins(om: bool) -> None:
    hist = histogram("x", {}, [("1", 1.0), ("+Inf", 2.0)], 1.5)
    batches = [batch(1, [Sample("x", {}, 9.0, "A gauge.", G)]), batch(2, hist)]
    body, result = rendered(batches, openmetrics=om)
    fams = parsed(body, om)
    assert fams["x"][0] == "gauge"
    assert series(fams, "x") == {key("x", enr(1)): 9.0}
    assert result.stats.conflicts == 4
    body, result = rendered(batches[::-1], openmetrics=om)
    assert parsed(body, om)["x"][0] == "histogram"
    assert result.stats.conflicts == 1


def test_untyped_sample_joins_the_family_that_claims_its_name() -> None:
    # OpenMetrics: an untyped `x_total` beside counter family `x` is a sample of it.
    batches = [batch(1, [Sample("x_total", {}, 1.0, "", U)]),
               batch(2, [Sample("x_total", {}, 2.0, "X.", C)])]
    body, result = rendered(batches, openmetrics=True)
    assert series(parsed(body, True), "x") == {key("x_total", enr(1)): 1.0,
                                               key("x_total", enr(2)): 2.0}
    assert result.stats.conflicts == 0


def test_histogram_bucket_without_usable_le_is_dropped() -> None:
    samples = [Sample("h_bucket", {}, 1.0, "", H), Sample("h_bucket", {"le": "abc"}, 1.0, "", H),
               Sample("h_bucket", {"le": "NaN"}, 1.0, "", H),
               Sample("h_bucket", {"le": "inf"}, 1.0, "", H),
               Sample("h_bucket", {"le": "1_0"}, 1.0, "", H),
               Sample("s", {"quantile": "2"}, 1.0, "", S)]
    body, result = rendered([batch(1, samples)])
    assert result.stats.conflicts == 4
    assert series(parsed(body, False), "h") == {
        key("h_bucket", enr(le="+Inf")): 1.0, key("h_bucket", enr(le="10.0")): 1.0}


def test_le_label_outside_buckets() -> None:
    samples = [Sample("g", {"le": "1"}, 1.0, "G.", G),  # a gauge may have an `le` label
               *histogram("h", {}, [("+Inf", 1.0)], 1.0),
               Sample("h_sum", {"le": "5"}, 2.0, "", H)]  # but a histogram `_sum` may not
    body, _ = rendered([batch(1, samples)])
    fams = parsed(body, False)
    assert series(fams, "g") == {key("g", enr(le="1")): 1.0}
    assert series(fams, "h")[key("h_sum", enr(exported_le="5"))] == 2.0


# --------------------------------------------------------------------------------------------
# Values, escaping, names


@both_formats
@pytest.mark.parametrize("value", [
    math.nan, math.inf, -math.inf, 0.0, -0.0, 5e-324, 1.7976931348623157e308, 1e21, 1e-7,
    123456789.123, -2.5, 3,
])
def test_values_round_trip(om: bool, value: float) -> None:
    body, _ = rendered([batch(1, [Sample("v", {}, value, "V.", G)])], openmetrics=om)
    [parsed_value] = series(parsed(body, om), "v").values()
    if math.isnan(value):
        assert math.isnan(parsed_value)
        assert " NaN\n" in body
    else:
        assert parsed_value == value
        assert math.copysign(1, parsed_value) == math.copysign(1, value)
    if math.isinf(value):
        assert (" +Inf\n" if value > 0 else " -Inf\n") in body


@both_formats
def test_hostile_label_values_and_multiline_help(om: bool) -> None:
    help_text = 'First line.\nSecond "line" with a \\ backslash.'
    samples = [Sample("g", {"v": HOSTILE, "w": "\\n is not a newline", "u": "ünï\tcode"}, 1.0,
                      help_text, G)]
    body, _ = rendered([batch(1, samples, labels=(("zone", HOSTILE),))], openmetrics=om)
    fams = parsed(body, om)
    assert fams["g"][1] == help_text
    assert series(fams, "g") == {key("g", enr(node_zone=HOSTILE, v=HOSTILE,
                                              w="\\n is not a newline", u="ünï\tcode")): 1.0}
    assert r"# HELP g First line.\nSecond" in body


def test_invalid_names_are_sanitised_or_dropped() -> None:
    samples = [Sample("http.requests-total", {"bad-label": "1", "0x": "2"}, 1.0, "", G),
               Sample("9lives", {}, 2.0, "", G), Sample("", {}, 3.0, "", G)]
    body, result = rendered([batch(1, samples)])
    fams = parsed(body, False)
    assert series(fams, "http_requests_total") == {
        key("http_requests_total", enr(bad_label="1", _0x="2")): 1.0}
    assert series(fams, "_9lives") == {key("_9lives", enr()): 2.0}
    assert result.stats.invalid_names == 1


@both_formats
def test_duplicate_series_are_written_once(om: bool) -> None:
    samples = [Sample("g", {"a": "1", "b": "2"}, 1.0, "G.", G),
               Sample("g", {"b": "2", "a": "1"}, 2.0, "G.", G),  # same labels, other order
               Sample("g", {"a": "1", "b": "3"}, 3.0, "G.", G),
               *histogram("h", {}, [("1", 1.0), ("1.0", 1.0), ("+Inf", 1.0)], 1.0)]
    body, result = rendered([batch(1, samples), batch(1, samples)], openmetrics=om)
    fams = parsed(body, om)
    assert series(fams, "g") == {key("g", enr(a="1", b="2")): 1.0,
                                 key("g", enr(a="1", b="3")): 3.0}
    assert len(series(fams, "h")) == 4
    # 1 in the first batch (g) + 1 (le="1.0" is le="1") + everything of the repeated batch (8).
    assert result.stats.duplicates == 1 + 1 + 8
    assert body.count("fodc_agent_up{") == 1


@both_formats
def test_reserved_family_names_are_renamed(om: bool) -> None:
    samples = [Sample("fodc_agent_up", {}, 1.0, "Theirs.", G),
               Sample("fodc_proxy_requests_total", {}, 2.0, "", C),
               *summary("fodc_proxy", {})]
    tail = ("# HELP fodc_proxy_agents Agents by status.\n# TYPE fodc_proxy_agents gauge\n"
            'fodc_proxy_agents{status="online"} 1\n')
    body, _ = rendered([batch(1, samples)], openmetrics=om, tail=tail)
    fams = parsed(body, om)
    assert series(fams, "exported_fodc_agent_up") == {key("exported_fodc_agent_up", enr()): 1.0}
    assert fams["exported_fodc_proxy_requests"][0] == "counter"
    assert len(series(fams, "exported_fodc_proxy")) == 4
    assert fams["fodc_agent_up"][1] == exposition.UP_HELP


# --------------------------------------------------------------------------------------------
# Layout


@both_formats
def test_families_are_never_interleaved_across_agents(om: bool) -> None:
    def agent_samples(n: int) -> list[Sample]:
        return [Sample("b_gauge", {}, n, "B.", G), Sample("a_gauge", {}, n, "A.", G),
                *histogram("c_seconds", {}, [("+Inf", n)], n)]

    batches = [batch(n, agent_samples(n)) for n in (3, 1, 2)]
    body, _ = rendered(batches, openmetrics=om)
    names = [line.split("{")[0] for line in body.splitlines() if not line.startswith("#")]
    assert names == (["a_gauge"] * 3 + ["b_gauge"] * 3
                     + ["c_seconds_bucket", "c_seconds_count", "c_seconds_sum"] * 3
                     + ["fodc_agent_up"] * 3 + ["fodc_agent_collect_duration_seconds"] * 3)
    # Within a family, agents keep the order of the batches.
    agents = [re.search(r'agent_id="([^"]+)"', line).group(1)  # type: ignore[union-attr]
              for line in body.splitlines() if line.startswith("a_gauge")]
    assert agents == ["agent-3", "agent-1", "agent-2"]


@both_formats
def test_agent_up_and_duration_for_every_batch(om: bool) -> None:
    batches = [batch(1, [Sample("g", {}, 1.0, "G.", G)], duration=0.5),
               batch(2, [], up=False, duration=3.0, role="datanode-hot"),
               batch(3, [], up=True, duration=0.0)]
    tail = "# HELP fodc_proxy_x X.\n# TYPE fodc_proxy_x gauge\nfodc_proxy_x 1"  # no final newline
    body, _ = rendered(batches, openmetrics=om, tail=tail)
    fams = parsed(body, om)
    assert series(fams, "fodc_agent_up") == {
        key("fodc_agent_up", enr(1)): 1, key("fodc_agent_up", enr(2, "datanode-hot")): 0,
        key("fodc_agent_up", enr(3)): 1}
    assert series(fams, "fodc_agent_collect_duration_seconds") == {
        key("fodc_agent_collect_duration_seconds", enr(1)): 0.5,
        key("fodc_agent_collect_duration_seconds", enr(2, "datanode-hot")): 3.0,
        key("fodc_agent_collect_duration_seconds", enr(3)): 0.0}
    assert list(fams)[-1] == "fodc_proxy_x"
    assert body.endswith("fodc_proxy_x 1\n# EOF\n" if om else "fodc_proxy_x 1\n")


@both_formats
def test_no_batches(om: bool) -> None:
    body, _ = rendered([], openmetrics=om)
    assert parsed(body, om).keys() == {"fodc_agent_up", "fodc_agent_collect_duration_seconds"}


def test_big_bodies_come_in_chunks() -> None:
    samples = [Sample(f"g{i % 7}", {"i": str(i)}, float(i), "G.", G) for i in range(3000)]
    batches = [batch(n, samples) for n in range(1, 4)]
    chunks = render(batches)
    assert len(chunks) > 3
    assert all(chunk.count("\n") <= exposition.CHUNK_LINES + 2 for chunk in chunks)
    assert len(series(parsed("".join(chunks), False), "g3")) == 3 * 429


def test_protobuf_metrics_render_like_samples() -> None:
    from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2

    samples = [Sample("requests_total", {"code": "200", "agent_id": "x"}, 10.0, "R.", C),
               *histogram("lat", {"p": "/"}, [("1", 1.0), ("+Inf", 2.0)], 1.0)]
    protos = [rpc_pb2.Metric(name=s.name, labels=s.labels, value=s.value,
                             description=s.description, type=int(s.type)) for s in samples]
    for om in (False, True):
        assert render([batch(1, protos)], openmetrics=om) == render([batch(1, samples)],
                                                                    openmetrics=om)


def test_caches_belong_to_their_owner() -> None:
    # Two proxies in one process: what one remembers is not the other's.
    mine, theirs = ExpositionCache(), ExpositionCache()
    batches = [batch(1, [Sample("g", {"k": "v"}, 1.0, "G.", G)])]
    first = render(batches, cache=mine)
    assert render(batches, cache=mine) == first == render(batches)
    assert mine._prefixes and mine._signatures
    assert not theirs._prefixes and not theirs._signatures and not len(theirs._sets)


# --------------------------------------------------------------------------------------------
# Negotiation (http/negotiation.py decides; the same table the renderer's users rely on)


@pytest.mark.parametrize(("accept", "expected"), [
    (None, False), ("", False), ("*/*", False), ("text/plain", False),
    ("text/plain;version=0.0.4;q=1,*/*;q=0.1", False),
    ("application/openmetrics-text", True),
    (("application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
      "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"), True),
    ("application/openmetrics-text; version=1.0.0; q=0.4, text/plain; q=0.5", False),
    ("text/plain;q=0.2, application/openmetrics-text;q=0.9", True),
    ("application/openmetrics-text;q=0", False),
    ("application/openmetrics-text;version=9.9.9", False),
    ("application/openmetrics-text;q=banana", False),
    ("Application/OpenMetrics-Text", True),
])
def test_negotiate(accept: str | None, expected: bool) -> None:
    assert wants_openmetrics(accept) is expected


def test_content_types() -> None:
    assert CONTENT_TYPE_TEXT == "text/plain; version=0.0.4; charset=utf-8"
    assert CONTENT_TYPE_OPENMETRICS.startswith("application/openmetrics-text; version=1.0.0")


# --------------------------------------------------------------------------------------------
# promtool


PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool is not on PATH (Debian package `prometheus`)")


def promtool(body: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.external
@needs_promtool
def test_promtool_accepts_the_exposition() -> None:
    samples = [
        Sample("http_requests_total", {"code": "200", "agent_id": "clash"}, 10.0,
               "HTTP requests.\nSecond line with a \\ backslash.", C),
        Sample("http_requests_total", {"code": HOSTILE}, 1.0, "HTTP requests.", C),
        *histogram("request_duration_seconds", {"path": HOSTILE},
                   [("0.1", 1.0), ("1", 3.0), ("+Inf", 4.0)], 2.5, "Request duration."),
        *summary("rpc_duration_seconds", {"method": "get"}, "RPC duration."),
        Sample("temperature_celsius", {"node_role": "clash"}, math.nan, "Temperature.", G),
        Sample("queue_length", {}, math.inf, "Queue length.", G),
    ]
    batches = [batch(1, samples, labels=(("zone", "z1"),)),
               batch(2, samples, role="datanode-hot"), batch(3, [], up=False)]
    body = "".join(render(batches))
    result = promtool(body)
    # promtool 2.42 exits 1 for parse errors and 3 for lint problems; this body has neither.
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.external
@needs_promtool
def test_promtool_parses_lint_unfriendly_agent_metrics() -> None:
    # Names we pass through as the node exposes them: promtool lints them (exit 3) but must
    # never fail to parse (exit 1).
    samples = [Sample("hits", {}, 1.0, "", C), Sample("x_count", {}, 1.0, "", G),
               *histogram("x", {}, [("+Inf", 1.0)], 1.0), Sample("myGauge", {}, 1.0, "", U)]
    result = promtool("".join(render([batch(1, samples), batch(2, samples)])))
    output = result.stdout + result.stderr
    assert result.returncode in (0, 3), output
    assert "parsing error" not in output


@pytest.mark.external
@needs_promtool
@pytest.mark.parametrize("reverse", [False, True], ids=["typed-first", "gauges-first"])
def test_promtool_accepts_bodies_with_family_conflicts(reverse: bool) -> None:
    one = [Sample("x_total", {}, 1.0, "X.", C), *histogram("h", {}, [("+Inf", 1.0)], 1.0),
           *summary("s", {})]
    two = [Sample("x_total", {}, 2.0, "X.", G), Sample("h_bucket", {}, 2.0, "", G),
           Sample("h_count", {}, 2.0, "", U), Sample("s", {"quantile": "0.5"}, 1.0, "", H),
           Sample("s_sum", {}, 1.0, "", C)]
    batches = [batch(1, one), batch(2, two)]
    body, result = rendered(batches[::-1] if reverse else batches)
    assert result.stats.family_conflicts
    outcome = promtool(body)
    output = outcome.stdout + outcome.stderr
    # Kept gauges named `h_bucket` are lint (exit 3), never a parse error (exit 1).
    assert outcome.returncode == (3 if reverse else 0), output
    assert "parsing error" not in output and "error while" not in output


# --------------------------------------------------------------------------------------------
# Properties


text_values = st.text(st.characters(exclude_categories=("Cs",)), max_size=30)
# The parsers strip whitespace around HELP text, so the property keeps its ends non-blank.
help_texts = st.builds(lambda s: f"h{s}h", text_values)
label_names = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
metric_names = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=20)
values = st.floats(allow_nan=True, allow_infinity=True)


@settings(max_examples=150, deadline=None)
@given(om=st.booleans(), help_text=help_texts, label_value=text_values,
       node_value=text_values, value=values)
def test_property_values_help_and_labels_round_trip(
        om: bool, help_text: str, label_value: str, node_value: str, value: float) -> None:
    samples = [Sample("prop_gauge", {"v": label_value}, value, help_text, G)]
    body, _ = rendered([batch(1, samples, labels=(("zone", node_value),))], openmetrics=om)
    fams = parsed(body, om)
    kind, doc, got = fams["prop_gauge"]
    assert (kind, doc) == ("gauge", help_text)
    [(got_key, got_value)] = got.items()
    assert got_key == key("prop_gauge", enr(node_zone=node_value, v=label_value))
    assert (math.isnan(got_value) and math.isnan(value)) or got_value == value


@settings(max_examples=150, deadline=None)
@given(om=st.booleans(),
       names=st.lists(st.tuples(metric_names, st.sampled_from(list(MetricType))), max_size=6),
       labels=st.dictionaries(label_names, text_values, max_size=4), value=values)
def test_property_any_names_and_types_give_a_valid_exposition(
        om: bool, names: list[tuple[str, MetricType]], labels: dict[str, str],
        value: float) -> None:
    samples = [Sample(name, labels, value, "", mtype) for name, mtype in names]
    if om:
        # Keep values the OpenMetrics rules accept, so that drops are only about names/types.
        samples += [Sample(name, {**labels, "le": "+Inf", "quantile": "0.5"}, 1.0, "", mtype)
                    for name, mtype in names]
    body, result = rendered([batch(1, samples), batch(2, samples)], openmetrics=om)
    parsed(body, om)  # raises on anything prometheus_client cannot read
    stats = result.stats
    assert stats.samples + stats.invalid_names + stats.conflicts + stats.duplicates == (
        2 * len(samples))


_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_CLASHING_NAMES = ["agent_id", "node_role", "pod_name", "node_ip", "node_port", "node_type",
                   "exported_node_role", "container_name", "node-role", "__x"]
_CLASHING_VALUES = ["ROLE_DATA", "pod-1", "p", "10.0.0.1", "17912", "hot", "x"]


@settings(max_examples=200, deadline=None)
@given(om=st.booleans(), pod=st.booleans(),
       own=st.lists(st.dictionaries(st.sampled_from(_CLASHING_NAMES),
                                    st.sampled_from(_CLASHING_VALUES), max_size=5),
                     min_size=1, max_size=4))
def test_property_own_labels_beside_the_enrichment_are_never_duplicated(
        om: bool, pod: bool, own: list[dict[str, str]]) -> None:
    m = (NodeMeta("pod-1", "ROLE_DATA", "", 0, (("type", "hot"),), "p", ("data",)) if pod
         else NodeMeta("agent-1", "ROLE_DATA", "10.0.0.1", 17912, (("type", "hot"),)))
    samples = [Sample("g", labels, 1.0, "G.", G) for labels in own]
    samples += histogram("h", own[0], [("1", 1.0), ("+Inf", 2.0)], 1.0)
    body, result = rendered([AgentBatch(m, samples, True, 0.1)], openmetrics=om)
    parsed(body, om)
    enrichment = dict(enrichment_labels(m))
    lines = [ln for ln in body.splitlines() if ln.startswith(("g{", "h_"))]
    assert len(lines) == result.stats.samples
    for line in lines:
        pairs = _LABEL_RE.findall(line[line.index("{") : line.rindex("}") + 1])
        names = [name for name, _ in pairs]
        assert len(names) == len(set(names)), line
        assert dict(pairs).items() >= enrichment.items(), line
    # every own label is there: as itself, as the enrichment's (same value), or exported
    for labels in own:
        want = {k.replace("-", "_"): v for k, v in labels.items()}
        found = [dict(_LABEL_RE.findall(ln)) for ln in lines if ln.startswith("g{")]
        assert any(all(got.get(k) == v or any(name.endswith("_" + k) and got[name] == v
                                               for name in got if name.startswith("exported_"))
                       for k, v in want.items()) for got in found), (labels, lines)


if __name__ == "__main__":
    import time

    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import Metric

    agents, families, per_family = 100, 100, 10
    batches = []
    for n in range(agents):
        batches.append(batch(n, [
            Sample(f"banyandb_metric_{f}_total" if f % 2 else f"banyandb_metric_{f}",
                   {"group": f"g{s % 3}", "shard": str(s), "kind": "measure", "stage": "write",
                    "node": "n1"}, float(s * n), f"Help of {f}.", C if f % 2 else G)
            for f in range(families) for s in range(per_family)]))
    reference: dict[str, Metric] = {}
    for b in batches:
        extra = dict(enrichment_labels(b.meta))
        for s in b.samples:
            counter = s.type == C
            name = s.name[:-6] if counter else s.name
            fam = reference.setdefault(name, Metric(name, s.description,
                                                    "counter" if counter else "gauge"))
            fam.add_sample(s.name, {**extra, **s.labels}, s.value)

    class Collector:
        def collect(self) -> list[Metric]:
            return list(reference.values())

    registry = CollectorRegistry(auto_describe=False)
    registry.register(Collector())

    def best(fn: object, runs: int = 5) -> float:
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            fn()  # type: ignore[operator]
            times.append(time.perf_counter() - start)
        return min(times)

    theirs = best(lambda: generate_latest(registry))
    ours = best(lambda: "".join(render(batches)))
    print(f"{agents * families * per_family} samples: generate_latest {theirs * 1000:.0f} ms, "
          f"render {ours * 1000:.0f} ms ({ours / theirs:.2f}x)")



@pytest.mark.parametrize("openmetrics", [False, True])
def test_an_agent_family_named_like_the_proxys_schema_gauges_is_exported(openmetrics) -> None:
    """The proxy writes `banyandb_fodc_schema_consistency_status` and `banyandb_fodc_schema_issues`
    itself (upstream's names); an agent's family of that name (hostile, or an agent scraping a
    FODC proxy) was a second HELP/TYPE block of it, which Prometheus refuses along with the whole
    scrape. It gets the `exported_` prefix, as `fodc_agent_*` and `fodc_proxy_*` do."""
    samples = [Sample("banyandb_fodc_schema_consistency_status", {"group": "g"}, 1.0, "mimic",
                      MetricType.GAUGE),
               Sample("banyandb_fodc_schema_issues", {"group": "g"}, 0.0, "", MetricType.GAUGE)]
    tail = ("# HELP banyandb_fodc_schema_consistency_status The proxy's.\n"
            "# TYPE banyandb_fodc_schema_consistency_status gauge\n"
            "banyandb_fodc_schema_consistency_status{group=\"sw\"} 1.0\n")
    body, _ = rendered([batch(1, samples)], openmetrics=openmetrics, tail=tail)
    assert body.count("# TYPE banyandb_fodc_schema_consistency_status ") == 1
    assert "exported_banyandb_fodc_schema_consistency_status{" in body
    assert "exported_banyandb_fodc_schema_issues{" in body
