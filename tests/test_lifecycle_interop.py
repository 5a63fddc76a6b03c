"""Upstream's agents on our proxy's lifecycle endpoint (issue 16).

Three agents built from upstream's proto (`tests/upstream_agent.py`), driving StreamLifecycle
and StreamSchemaRegistry as upstream's Go agent does (one lifecycle message per request; the
registry in chunks, a failed group as its own message, then `done`; a collection that fails
sends nothing). The expected body is written by hand from upstream's rules
(`fodc/proxy/internal/lifecycle/manager.go`, `schema_check.go`, `fodc/internal/consistency/
checker.go`, `fodc/proxy/internal/api/server.go`), not computed by our code:

- agent_summary: 3 registered, 3 hold StreamLifecycle, 2 answer (data-1's collection fails).
- groups by name; `errors` the sorted de-duplicated union plus the registry's error strings;
  protojson with proto names and zero values (uint32 as numbers, int64/uint64 as strings, enums
  by name, unset messages null).
- sw_stream: the registry (in 1-object chunks) has group/sw_stream=1 and stream/log=10; data-0's
  cache of log is 9 (CACHE_STALE) and it holds indexRule/orphan_rule (ORPHAN). First round:
  divergences seen once are suppressed -> UNKNOWN with no issues; second round: INCONSISTENT.
- sw_measure: no agent sent a schema partial -> schema_consistency null; its registry read
  failed -> "registry read failed: ..." in its errors. sw_trace failed too but no agent
  reported it: not in the body.

Both agents that report sw_stream send the same data_info, so upstream's result does not depend
on which arrives last (upstream keeps the last agent's; we take the union, the same here).
"""

from __future__ import annotations

import importlib
import json

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get
from helpers import wait_for
from test_upstream_agents import Running, up  # noqa: F401  (the compiled proto, a fixture)
from upstream_agent import STREAMS, UPSTREAM, UpstreamLikeAgent

pytestmark = pytest.mark.skipif(
    not UPSTREAM.exists(), reason="upstream's proto (../shared/upstream) is not beside the repo")


def node_json(name: str) -> dict:
    return {"metadata": {"group": "", "name": name, "id": 0, "create_revision": "0",
                         "mod_revision": "0"},
            "roles": ["ROLE_DATA"], "grpc_address": f"{name}:17912", "http_address": "",
            "created_at": None, "labels": {}, "property_repair_gossip_grpc_address": "",
            "property_schema_grpc_address": "", "property_schema_gossip_grpc_address": ""}


DATA_INFO = [
    {"node": node_json("data-0"), "segment_info": [{
        "segment_id": "seg-1", "time_range_start": "2026-11-28T00:00:00Z",
        "time_range_end": "2026-11-29T00:00:00Z",
        "shard_info": [{"shard_id": 0, "data_count": "10", "data_size_bytes": "2048",
                        "part_count": "1", "inverted_index_info": None, "sidx_info": None,
                        "file_part_count": "0"}],
        "series_index_info": None}],
     "data_size_bytes": "2048"},
    {"node": node_json("data-1"), "segment_info": [], "data_size_bytes": "0"},
]

RESOURCE_OPTS = {"shard_num": 2, "segment_interval": {"unit": "UNIT_DAY", "num": 1},
                 "ttl": {"unit": "UNIT_DAY", "num": 7}, "stages": [], "default_stages": [],
                 "replicas": 0}


def fp(node: str, cache: int, runtime: int) -> dict:
    return {"node": node, "cache_fingerprint": str(cache), "runtime_fingerprint": str(runtime)}


def expected(round_: int) -> dict:
    issues = [] if round_ == 1 else [
        {"kind": "indexRule", "name": "orphan_rule", "node": "data-0",
         "type": "SCHEMA_ISSUE_TYPE_ORPHAN"},
        {"kind": "stream", "name": "log", "node": "data-0",
         "type": "SCHEMA_ISSUE_TYPE_CACHE_STALE"},
    ]
    return {
        "agent_summary": {"total": 3, "requested": 3, "responded": 2, "not_responded": 1},
        "groups": [
            {"name": "sw_measure", "catalog": "CATALOG_MEASURE", "resource_opts": None,
             "data_info": [], "errors": ["registry read failed: list measures: unavailable"],
             "schema_consistency": None},
            {"name": "sw_stream", "catalog": "CATALOG_STREAM", "resource_opts": RESOURCE_OPTS,
             "data_info": DATA_INFO,
             "errors": ["node error: data-1 slow", "top-level: dial data-1"],
             "schema_consistency": {
                 "status": ("CONSISTENCY_STATUS_UNKNOWN" if round_ == 1
                            else "CONSISTENCY_STATUS_INCONSISTENT"),
                 "objects": [
                     {"kind": "group", "name": "sw_stream", "registry_fingerprint": "1",
                      "node_fingerprints": [fp("data-0", 1, 1), fp("liaison-0", 1, 1)]},
                     {"kind": "indexRule", "name": "orphan_rule", "registry_fingerprint": "0",
                      "node_fingerprints": [fp("data-0", 5, 5)]},
                     {"kind": "stream", "name": "log", "registry_fingerprint": "10",
                      "node_fingerprints": [fp("data-0", 9, 9), fp("liaison-0", 10, 10)]},
                 ],
                 "issues": issues,
             }},
        ],
        "lifecycle_statuses": [{"pod_name": "data-0", "reports": [
            {"filename": "lifecycle-20261129.json", "report_json": "{\"ok\":true}"}]}],
    }


def data_info(m):
    rpc = importlib.import_module(m.__name__.replace("fodc.v1.rpc_pb2", "database.v1.rpc_pb2"))
    db = importlib.import_module(m.__name__.replace("fodc.v1.rpc_pb2",
                                                    "database.v1.database_pb2"))

    def node(name):
        n = db.Node(grpc_address=f"{name}:17912", roles=[db.ROLE_DATA])
        n.metadata.name = name
        return n

    return [
        rpc.DataInfo(node=node("data-0"), data_size_bytes=2048, segment_info=[rpc.SegmentInfo(
            segment_id="seg-1", time_range_start="2026-11-28T00:00:00Z",
            time_range_end="2026-11-29T00:00:00Z",
            shard_info=[rpc.ShardInfo(shard_id=0, data_count=10, data_size_bytes=2048,
                                      part_count=1)])]),
        rpc.DataInfo(node=node("data-1")),
    ]


def sw_stream(m, node: str, objects: list[tuple[str, str, int, int]], errors: list[str]):
    g = m.GroupLifecycleInfo(name="sw_stream", catalog="CATALOG_STREAM", data_info=data_info(m),
                             errors=errors)
    g.resource_opts.shard_num = 2
    g.resource_opts.segment_interval.unit = 2
    g.resource_opts.segment_interval.num = 1
    g.resource_opts.ttl.unit = 2
    g.resource_opts.ttl.num = 7
    for kind, name, cache, runtime in objects:
        nf = m.NodeFingerprint(node=node, cache_fingerprint=cache, runtime_fingerprint=runtime)
        g.schema_consistency.objects.append(
            m.ObjectConsistency(kind=kind, name=name, node_fingerprints=[nf]))
    return g


def liaison_data(m):
    return m.LifecycleData(groups=[
        sw_stream(m, "liaison-0", [("group", "sw_stream", 1, 1), ("stream", "log", 10, 10)],
                  ["node error: data-1 slow"]),
        m.GroupLifecycleInfo(name="sw_measure", catalog="CATALOG_MEASURE"),
    ])


def data0_data(m):
    return m.LifecycleData(
        reports=[m.LifecycleReport(filename="lifecycle-20261129.json", report_json='{"ok":true}')],
        groups=[sw_stream(m, "data-0", [("group", "sw_stream", 1, 1), ("stream", "log", 9, 9),
                                        ("indexRule", "orphan_rule", 5, 5)],
                          ["top-level: dial data-1", "node error: data-1 slow"])])


def registry(m):
    return [
        m.SchemaRegistryGroup(group="sw_stream", objects=[
            m.SchemaObjectFingerprint(kind="group", name="sw_stream", fingerprint=1),
            m.SchemaObjectFingerprint(kind="stream", name="log", fingerprint=10)]),
        m.SchemaRegistryGroup(group="sw_measure", error="list measures: unavailable"),
        m.SchemaRegistryGroup(group="sw_trace", error="list traces: unavailable"),
    ]


async def test_upstream_agents_lifecycle_body_matches_upstreams(up):  # noqa: F811
    with trio.fail_after(60):
        async with open_proxy(lifecycle_timeout=1.0) as proxy:
            liaison = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="liaison-0",
                                        role="ROLE_LIAISON", containers=("liaison",),
                                        lifecycle=liaison_data, registry=registry,
                                        registry_chunk=1)
            data0 = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0",
                                      role="ROLE_DATA", labels={"type": "hot"},
                                      lifecycle=data0_data, registry=registry)
            data1 = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-1",
                                      role="ROLE_DATA", labels={"type": "hot"},
                                      lifecycle=lambda m: None)  # its collection fails
            async with Running(liaison), Running(data0), Running(data1):
                for ag in (liaison, data0, data1):
                    s = proxy.proxy.hub.sessions[ag.agent_id]
                    await wait_for(lambda s=s: len(s.streams) == len(STREAMS))
                for round_ in (1, 2):
                    r = await http_get(proxy.http_url + "/cluster/lifecycle", timeout=30)
                    assert r.status == 200
                    assert json.loads(r.body) == expected(round_)
                # exactly one liaison was asked for the registry, once per collection
                assert (liaison.registry_requests, data0.registry_requests) == (2, 0)
                assert [a.lifecycle_requests for a in (liaison, data0, data1)] == [2, 2, 2]
                text = (await http_get(proxy.http_url + "/metrics")).body.decode()
                values = {tuple(s.labels.items()): s.value
                          for f in text_string_to_metric_families(text) for s in f.samples
                          if s.name == "banyandb_fodc_schema_consistency_status"}
                assert values == {(("group", "sw_stream"),): 2.0}
                # no stream of a healthy upstream agent ended
                assert liaison.ended == data0.ended == data1.ended == []


async def test_upstream_liaison_fatal_read_and_garbage(up):  # noqa: F811
    """A fatal registry read (the empty-name chunk) and an undecodable lifecycle message."""
    with trio.fail_after(60):
        async with open_proxy(lifecycle_timeout=1.0) as proxy:
            liaison = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="liaison-0",
                                        role="ROLE_LIAISON", lifecycle=liaison_data,
                                        registry=lambda m: "etcd: no leader")
            garbage = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0",
                                        role="ROLE_DATA", streams=("StreamMetrics",
                                                                   "StreamLifecycle"))
            async with Running(liaison), Running(garbage):
                for ag, n in ((liaison, len(STREAMS)), (garbage, 2)):
                    s = proxy.proxy.hub.sessions[ag.agent_id]
                    await wait_for(lambda s=s, n=n: len(s.streams) == n)
                # not protobuf: a field 3 whose length runs past the message
                garbage.lifecycle = lambda m: b"\x1a\xff\xff\xff\xff\x0f"
                doc = json.loads((await http_get(proxy.http_url + "/cluster/lifecycle")).body)
                assert doc["agent_summary"] == {"total": 2, "requested": 2, "responded": 1,
                                                "not_responded": 1}
                sw = next(g for g in doc["groups"] if g["name"] == "sw_stream")
                assert sw["schema_consistency"] == {"status": "CONSISTENCY_STATUS_UNKNOWN",
                                                    "objects": [], "issues": []}
                assert sw["errors"] == [
                    "node error: data-1 slow",
                    "registry unavailable: schema registry read failed on all 1 liaison "
                    f"agent(s): agent {liaison.agent_id} registry read failed: etcd: no leader"]
                # the garbage ended its lifecycle stream only
                await wait_for(lambda: garbage.ended)
                assert [e[0] for e in garbage.ended] == ["StreamLifecycle"]
                assert liaison.ended == []
