"""The proxy's fast path for agent replies: `rpc.replies` digests serialized metrics, the renderers
remember text across scrapes. Whatever the bytes, the answer must be what decoding every metric
with protobuf and rendering `Sample`s gives.

Policy: compare against the slow, obvious path (protobuf decode, `Sample` lists), over several
"scrapes" of the same table so that every cache is exercised warm, cold and invalidated.
"""

from __future__ import annotations

import gc
import json
import math
import random
import struct
import weakref

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from fodcproxy.core import exposition, windows
from fodcproxy.core.exposition import AgentBatch
from fodcproxy.core.series import DigestedSamples
from fodcproxy.core.model import LATEST, MetricType, NodeMeta, Sample, TimeWindow
from fodcproxy.errors import InvalidArgument
from fodcproxy.rpc.convert import pb, ts_from_proto, ts_to_proto
from fodcproxy.rpc.replies import Interner, RawReply, SeriesTable

NOW = 1_800_000_000.0
META = NodeMeta("datanode-hot-0123456789ab", "datanode-hot", "10.0.0.2", 17912, (("zone", "a"),))


def metric(name: str, labels: dict[str, str], value: float, *, help: str = "",
           mtype: int = MetricType.GAUGE, ts: float | None = None) -> pb.Metric:
    m = pb.Metric(name=name, labels=labels, value=value, description=help, type=int(mtype))
    if ts is not None:
        m.timestamp.CopyFrom(ts_to_proto(ts))
    return m


def sample_of(m: pb.Metric) -> Sample:
    return Sample(m.name, dict(m.labels), m.value, m.description, m.type,
                  ts_from_proto(m.timestamp) if m.HasField("timestamp") else None)


def digest(table: SeriesTable, *replies: list[bytes]) -> DigestedSamples:
    """One reply, possibly in several chunks, through RawReply and the table."""
    out = table.samples(None)
    table.abandon()
    for blobs in replies:
        data = pb.StreamMetricsRequest(request_id=7, metrics=[pb.Metric.FromString(b)
                                                              for b in blobs]).SerializeToString()
        raw = RawReply.FromString(data)
        assert raw.request_id == 7
        table.digest(raw.metrics, out)
    table.finish()
    return out


def same_value(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b)


def check_digest(out: DigestedSamples, expected: list[pb.Metric]) -> None:
    assert len(out) == len(expected)
    for got, m in zip(out, expected):
        want = sample_of(m)
        assert (got.name, dict(got.labels), got.description, got.type) == (
            want.name, want.labels, want.description, want.type)
        assert same_value(got.value, want.value)
        assert got.timestamp == want.timestamp


def test_raw_reply_has_the_fields_of_stream_metrics_request() -> None:
    real = {f.name: f.number for f in pb.StreamMetricsRequest.DESCRIPTOR.fields}
    assert {f.name: f.number for f in RawReply.DESCRIPTOR.fields} == real


def test_steady_replies_are_read_without_protobuf_and_come_out_right() -> None:
    table = SeriesTable()
    rng = random.Random(3)
    for scrape in range(4):
        metrics = [metric(f"m{i % 3}", {"i": str(i), "k": "v"}, rng.random() * 1e9, help="H.",
                          ts=None if scrape % 2 else NOW + scrape) for i in range(50)]
        check_digest(digest(table, [m.SerializeToString() for m in metrics]), metrics)
    assert len(table) == 50  # the same 50 series, whatever the values and timestamps


def test_values_that_protobuf_leaves_out_and_special_values() -> None:
    table = SeriesTable()
    for values in ([0.0, 1.0, -0.0], [math.nan, math.inf, -math.inf], [1.0, 0.0, 5e-324]):
        metrics = [metric("x", {"i": str(i)}, v) for i, v in enumerate(values)]
        check_digest(digest(table, [m.SerializeToString() for m in metrics]), metrics)


def test_label_entries_in_another_order_are_the_same_series() -> None:
    def blob(order: list[tuple[str, str]], value: float) -> bytes:
        # Map entries written by hand, in the given order (as Go writes them: at random).
        entries = b""
        for k, v in order:
            entry = b"\x0a" + bytes([len(k)]) + k.encode() + b"\x12" + bytes([len(v)]) + v.encode()
            entries += b"\x12" + bytes([len(entry)]) + entry
        return b"\x0a\x01x" + entries + b"\x19" + struct.pack("<d", value) + b"\x30\x01"

    table = SeriesTable()
    pairs = [("a", "1"), ("b", "2"), ("c", "3")]
    for n in range(6):
        order = pairs[n % 3:] + pairs[: n % 3]
        out = digest(table, [blob(order, float(n))])
        [got] = out
        assert dict(got.labels) == dict(pairs) and got.value == float(n)
    assert len(table) <= 3  # not one series per order and scrape


def test_a_label_key_twice_keeps_protobufs_answer() -> None:
    def blob(first: str, second: str) -> bytes:
        entries = b""
        for v in (first, second):
            entry = b"\x0a\x01a\x12\x01" + v.encode()
            entries += b"\x12" + bytes([len(entry)]) + entry
        return b"\x0a\x01x" + entries + b"\x19" + struct.pack("<d", 1.0)

    table = SeriesTable()
    for first, second in (("1", "2"), ("2", "1"), ("1", "2"), ("2", "1")):
        [got] = digest(table, [blob(first, second)])
        assert dict(got.labels) == dict(pb.Metric.FromString(blob(first, second)).labels)


def test_garbage_metrics_are_refused_like_protobuf_refuses_them() -> None:
    table = SeriesTable()
    with pytest.raises(InvalidArgument, match="does not decode"):
        table.digest([b"\x0a\x05ab"], table.samples(None))  # a name longer than the blob
    with pytest.raises(InvalidArgument):
        table.digest([b"\x0a\x02\xff\xfe"], table.samples(None))  # not UTF-8
    # A known series whose timestamp is garbage.
    good = metric("x", {}, 1.0, ts=NOW).SerializeToString()
    digest(table, [good])
    bad = good[:-8] + b"\x2a\x02\xff\xff" + good[-4:]
    with pytest.raises(InvalidArgument):
        table.digest([bad], table.samples(None))


def test_old_series_are_let_go() -> None:
    table = SeriesTable()
    for scrape in range(5):
        metrics = [metric("x", {"gen": str(scrape), "i": str(i)}, 1.0) for i in range(600)]
        out = digest(table, [m.SerializeToString() for m in metrics])
        check_digest(out, metrics)
    assert len(table) <= 2 * 600 + 1000


def render_both(batches_digested: list[AgentBatch], batches_samples: list[AgentBatch],
                om: bool, cache: exposition.ExpositionCache) -> None:
    fast = exposition.render_with_stats(batches_digested, openmetrics=om, tail="fodc_proxy_x 1\n",
                                        cache=cache)
    slow = exposition.render_with_stats(batches_samples, openmetrics=om, tail="fodc_proxy_x 1\n")
    assert "".join(fast.chunks) == "".join(slow.chunks)
    assert fast.stats == slow.stats


_NAMES = st.sampled_from(["up", "req_total", "lat_bucket", "lat_sum", "lat_count", "q", "q_sum",
                          "a-b", "", "fodc_agent_up", "x_created"])
_LABELS = st.dictionaries(st.sampled_from(["le", "quantile", "agent_id", "k", "node_zone", "a-b",
                                           "__x"]),
                          st.sampled_from(["1", "+Inf", "0.5", "x", 'q"\\\n', ""]), max_size=3)
_VALUES = st.sampled_from([0.0, 1.0, 2.5, -1.0, math.nan, math.inf, -math.inf, 1e300, 3.0])
_TYPES = st.sampled_from(list(MetricType))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(_NAMES, _LABELS, _TYPES, st.sampled_from(["", "Help."])),
                min_size=1, max_size=12),
       st.lists(st.lists(_VALUES, min_size=12, max_size=12), min_size=3, max_size=3),
       st.booleans())
def test_digested_replies_render_like_samples(series: list[tuple[str, dict[str, str], int, str]],
                                              scrapes: list[list[float]], om: bool) -> None:
    tables = [SeriesTable(), SeriesTable()]
    cache = exposition.ExpositionCache()  # the proxy's: warm from the second scrape on
    metas = [META, NodeMeta("liaison-0123456789ab", "liaison", "10.0.0.1", 1, ())]
    for n, values in enumerate(scrapes):
        # The second agent drops a series in the middle scrape: its cached plan no longer fits.
        per_agent = [series, series[:-1] if n == 1 and len(series) > 1 else series]
        fast, slow = [], []
        for table, meta, chosen in zip(tables, metas, per_agent):
            metrics = [metric(name, labels, values[i], help=help, mtype=mtype)
                       for i, (name, labels, mtype, help) in enumerate(chosen)]
            out = digest(table, [m.SerializeToString() for m in metrics])
            fast.append(AgentBatch(meta, out, True, 0.5))
            slow.append(AgentBatch(meta, [sample_of(m) for m in metrics], True, 0.5))
        render_both(fast, slow, om, cache)
        render_both(fast, slow, not om, cache)


def test_windows_of_digested_replies_render_like_samples() -> None:
    table = SeriesTable()
    cache = windows.WindowsCache()
    rng = random.Random(5)
    for _ in range(3):
        metrics = [metric(f"m{i % 4}", {"i": str(i % 7)}, rng.choice([1.0, math.nan, rng.random()]),
                          help="H.", ts=NOW - 10 * (i // 7)) for i in range(70)]
        metrics.append(metric("m0", {"i": "0"}, 5.0))  # no timestamp: now
        out = digest(table, [m.SerializeToString() for m in metrics[:40]],
                     [m.SerializeToString() for m in metrics[40:]])
        fast = windows.render_windows([(META, out)], now=NOW, cache=cache)
        slow = windows.render_windows([(META, [sample_of(m) for m in metrics])], now=NOW)
        assert b"".join(fast) == b"".join(slow)


def test_renders_stay_right_when_the_decoder_moves_to_a_new_series_set() -> None:
    # Series churn: the table compacts into a new SeriesSet. The renderers' caches start over for
    # it (they are keyed by the set) and let go of the old one.
    table = SeriesTable()
    text, json_cache = exposition.ExpositionCache(), windows.WindowsCache()
    first = weakref.ref(table.series)
    for scrape in range(6):
        metrics = [metric("x", {"gen": str(scrape), "i": str(i)}, float(scrape), ts=NOW)
                   for i in range(800)]
        out = digest(table, [m.SerializeToString() for m in metrics])
        slow = [sample_of(m) for m in metrics]
        for om in (False, True):
            assert exposition.render([AgentBatch(META, out, True, 0.1)], openmetrics=om,
                                     cache=text) == exposition.render(
                [AgentBatch(META, slow, True, 0.1)], openmetrics=om)
        assert windows.render_windows([(META, out)], now=NOW, cache=json_cache) == (
            windows.render_windows([(META, slow)], now=NOW))
    del out
    gc.collect()
    assert first() is None  # it did compact, and nothing holds the old set
    assert len(text._sets) == len(json_cache._sets) == 1  # only the table's current set


def test_tables_of_one_proxy_share_strings_other_proxies_do_not() -> None:
    shared = Interner()
    mine, also_mine, theirs = (SeriesTable(interner=shared), SeriesTable(interner=shared),
                               SeriesTable())
    blob = metric("a_metric_name", {"a_label": "a value"}, 1.0,
                  help="A help text that many series share.").SerializeToString()
    got = [digest(table, [blob]).series for table in (mine, also_mine, theirs)]
    assert got[0].descriptions[0] is got[1].descriptions[0]
    assert got[0].labels[0][0] is got[1].labels[0][0]
    assert got[0].descriptions[0] is not got[2].descriptions[0]
    assert len(shared) > 0
    small = Interner(max_size=2)
    for n in range(5):
        small(str(n))
    assert len(small) <= 2


def test_a_reply_is_restricted_to_what_its_request_asked_for() -> None:
    # Issue 15: an agent answers "latest" with three points of one series (1, 2, 3 in time order).
    table = SeriesTable()
    three = [metric("x", {"k": "v"}, float(n), ts=NOW + 10 * n).SerializeToString()
             for n in (1, 2, 3)]
    for _ in range(2):  # cold, then by the templates of the first reply
        out = table.samples(LATEST)
        table.abandon()
        table.digest(three, out)
        table.finish()
        assert [(s.value, s.timestamp) for s in out] == [(3.0, NOW + 30)]
        body = "".join(exposition.render([AgentBatch(META, out, True, 0.1)]))
        assert [line for line in body.splitlines() if line.startswith("x{")] == [
            'x{agent_id="datanode-hot-0123456789ab",node_role="datanode-hot",node_ip="10.0.0.2",'
            'node_port="17912",node_zone="a",k="v"} 3.0']
        [series] = json.loads(b"".join(windows.render_windows([(META, out)], now=NOW)))
        assert series["data"] == [{"timestamp": windows.rfc3339(NOW + 30), "value": 3.0}]
    # A window request keeps only the points inside the window, whatever the agent sends.
    out = table.samples(TimeWindow(NOW + 15, NOW + 25))
    table.abandon()
    table.digest(three[:2], out)  # in two chunks
    table.digest(three[2:], out)
    table.finish()
    assert [s.value for s in out] == [2.0]


async def test_a_big_reply_counts_even_when_the_agent_leaves_right_after() -> None:
    # Digested in slices with checkpoints between them (streams.DIGEST_SLICE): the goodbye that
    # follows must not cut the reply short.
    from fodcproxy.agent.client import AgentClient, AgentSpec
    from fodcproxy.core.model import LATEST
    from fodcproxy.streams import DIGEST_SLICE
    from fodcproxy.testing import open_proxy

    n = 3 * DIGEST_SLICE + 7

    async def source(window: object) -> list[Sample]:
        return [Sample("m", {"i": str(i)}, float(i), "", MetricType.GAUGE, None) for i in range(n)]

    with trio.fail_after(20):
        async with open_proxy(collect_timeout=5.0) as proxy:
            client = AgentClient("127.0.0.1", proxy.addresses.grpc_port,
                                 AgentSpec(role="liaison", ip="127.0.0.1", port=1), source)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)

                async def leave_after_answering() -> None:
                    while client.statistics().requests_answered < 1:
                        await trio.lowlevel.checkpoint()
                    client.stop()

                nursery.start_soon(leave_after_answering)
                hub = proxy.proxy.hub
                [result] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5.0)
                assert result.up, result.error
                assert [s.value for s in result.samples] == [float(i) for i in range(n)]
