"""GET /cluster/lifecycle and the schema gauges over real gRPC and HTTP (issue 16).

Fake pod agents (`fodcproxy.testing.lifecycle`) answer request_lifecycle and request_registry
from a small cluster (`SchemaWorld.sample()`); every test is bounded by `trio.fail_after`, waits
poll conditions, and the expected values are written from upstream's rules.
"""

from __future__ import annotations

import json

import pytest
import trio

from fodcproxy.lifecycle import LifecycleReportStream
from fodcproxy.testing import open_fake_agent, open_proxy
from fodcproxy.testing.http import http_get
from fodcproxy.testing.lifecycle import FakeLifecycle, SchemaWorld
from helpers import wait_for
from lifecycle_cluster import DATA0, DATA1, LIAISON, cluster, gauge, statuses


async def test_consistent_cluster_body_and_gauges():
    with trio.fail_after(30):
        async with cluster() as c:
            assert "banyandb_fodc_schema_consistency_status" not in await c.metrics()
            status, headers, doc = await c.get()
            assert status == 200
            assert doc["agent_summary"] == {"total": 3, "requested": 3, "responded": 3,
                                            "not_responded": 0}
            assert "error" not in doc
            assert statuses(doc) == {"sw_metric": "CONSISTENCY_STATUS_CONSISTENT",
                                     "sw_property": "CONSISTENCY_STATUS_CONSISTENT",
                                     "sw_stream": "CONSISTENCY_STATUS_CONSISTENT"}
            stream = next(g for g in doc["groups"] if g["name"] == "sw_stream")
            # data_info: the liaison's view of both data nodes and each node's own, de-duplicated
            assert [d["node"]["metadata"]["name"] for d in stream["data_info"]] == [DATA0, DATA1]
            assert stream["catalog"] == "CATALOG_STREAM"
            assert stream["resource_opts"]["replicas"] == 0  # zero values are emitted
            assert stream["errors"] == []
            objects = stream["schema_consistency"]["objects"]
            assert [(o["kind"], o["name"]) for o in objects] == [
                ("group", "sw_stream"), ("indexRule", "trace_id"), ("stream", "log"),
                ("stream", "segment")]
            assert objects[3]["registry_fingerprint"] == "2201"
            nodes = [n["node"] for n in objects[3]["node_fingerprints"]]
            assert nodes == [DATA0, DATA1, LIAISON]  # by node
            assert sorted(s["pod_name"] for s in doc["lifecycle_statuses"]) == [DATA0, DATA1]
            assert doc["lifecycle_statuses"][0]["reports"][0]["filename"].endswith(".json")
            assert headers["x-fodc-registry-agent"] == c.agents[LIAISON].agent_id
            text = await c.metrics()
            assert gauge(text, "banyandb_fodc_schema_consistency_status") == {
                (("group", "sw_metric"),): 1.0, (("group", "sw_property"),): 1.0,
                (("group", "sw_stream"),): 1.0}
            issues = gauge(text, "banyandb_fodc_schema_issues")
            assert len(issues) == 12 and set(issues.values()) == {0.0}
            # a filtered /metrics carries no cluster-wide verdict (upstream)
            assert "banyandb_fodc_schema" not in await c.metrics("?role=ROLE_DATA")


async def test_drift_is_unknown_then_inconsistent_with_its_issue():
    with trio.fail_after(30):
        async with cluster() as c:
            c.world.drift(DATA1, "sw_stream", "stream", "segment")
            c.world.forget(DATA0, "sw_metric", "indexRule", "service_id")
            _, _, first = await c.get()
            # seen once: suppressed, so UNKNOWN (never CONSISTENT)
            assert statuses(first)["sw_stream"] == "CONSISTENCY_STATUS_UNKNOWN"
            assert statuses(first)["sw_property"] == "CONSISTENCY_STATUS_CONSISTENT"
            _, _, second = await c.get()
            assert statuses(second) == {"sw_metric": "CONSISTENCY_STATUS_INCONSISTENT",
                                        "sw_property": "CONSISTENCY_STATUS_CONSISTENT",
                                        "sw_stream": "CONSISTENCY_STATUS_INCONSISTENT"}
            stream = next(g for g in second["groups"] if g["name"] == "sw_stream")
            assert stream["schema_consistency"]["issues"] == [{
                "kind": "stream", "name": "segment", "node": DATA1,
                "type": "SCHEMA_ISSUE_TYPE_CACHE_STALE"}]
            text = await c.metrics()
            assert gauge(text, "banyandb_fodc_schema_consistency_status")[
                (("group", "sw_stream"),)] == 2.0
            issues = gauge(text, "banyandb_fodc_schema_issues")
            assert issues[(("group", "sw_stream"), ("type", "cache_stale"))] == 1.0
            assert issues[(("group", "sw_metric"), ("type", "missing_in_cache"))] == 1.0
            assert issues[(("group", "sw_metric"), ("type", "cache_stale"))] == 0.0


async def test_filtered_collection_leaves_streaks_and_gauges():
    with trio.fail_after(30):
        async with cluster() as c:
            c.world.drift(DATA1, "sw_stream", "stream", "segment")
            _, _, doc = await c.get("?role=data")  # both role generations select data nodes
            assert doc["agent_summary"]["total"] == 2
            assert statuses(doc)["sw_stream"] == "CONSISTENCY_STATUS_UNKNOWN"
            _, _, doc = await c.get(f"?pod_name={DATA1}")
            assert doc["agent_summary"] == {"total": 1, "requested": 1, "responded": 1,
                                            "not_responded": 0}
            # still the first unfiltered sighting: filtered rounds did not count
            assert statuses(doc)["sw_stream"] == "CONSISTENCY_STATUS_UNKNOWN"
            assert "banyandb_fodc_schema" not in await c.metrics()
            _, _, doc = await c.get()
            assert statuses(doc)["sw_stream"] == "CONSISTENCY_STATUS_UNKNOWN"
            _, _, doc = await c.get()
            assert statuses(doc)["sw_stream"] == "CONSISTENCY_STATUS_INCONSISTENT"


async def test_silent_agent_makes_every_group_unknown_until_it_answers():
    with trio.fail_after(30):
        async with cluster(lifecycle_timeout=0.5) as c:
            c.lifecycle[DATA1].silent = True
            _, headers, doc = await c.get()
            assert doc["agent_summary"] == {"total": 3, "requested": 3, "responded": 2,
                                            "not_responded": 1}
            assert set(statuses(doc).values()) == {"CONSISTENCY_STATUS_UNKNOWN"}
            assert headers["x-fodc-agents-missed"] == c.agents[DATA1].agent_id
            c.lifecycle[DATA1].silent = False
            # its late answer to the expired request is dropped, the next one is its own
            _, _, doc = await c.get()
            assert doc["agent_summary"]["responded"] == 3


async def test_error_messages_when_nothing_was_gathered():
    with trio.fail_after(30):
        async with open_proxy(lifecycle_timeout=0.5) as proxy:
            r = await http_get(proxy.http_url + "/cluster/lifecycle")
            assert r.status == 200
            assert json.loads(r.body) == {
                "agent_summary": {"total": 0, "requested": 0, "responded": 0, "not_responded": 0},
                "groups": [], "lifecycle_statuses": [],
                "error": "FODC unavailable: no agents registered"}
            async with open_fake_agent(proxy.grpc_address, role="ROLE_DATA", pod_name="d-0"):
                doc = json.loads((await http_get(proxy.http_url + "/cluster/lifecycle")).body)
                assert doc["error"] == ("FODC unavailable: 0/1 registered agents support the "
                                        "lifecycle stream")
            world = SchemaWorld.sample()
            quiet = FakeLifecycle(world, DATA0)
            quiet.silent = True
            async with open_fake_agent(proxy.grpc_address, role="ROLE_DATA", pod_name=DATA0,
                                       services=[quiet]) as agent:
                await wait_for(lambda: proxy.proxy.hub.sessions[agent.agent_id].stream(
                    LifecycleReportStream) is not None)
                doc = json.loads((await http_get(proxy.http_url + "/cluster/lifecycle")).body)
                assert doc["error"] == "FODC unavailable: 0/1 requested agents responded"
                assert doc["agent_summary"]["not_responded"] == 1


@pytest.mark.parametrize("query, message", [
    ("?group=sw", "group"),
    ("?role=", "role"),
    ("?pod_name=a&pod_name=b", "pod_name"),
    ("?address=not%20an%20address", "address"),
])
async def test_bad_query_parameters_are_400(query, message):
    with trio.fail_after(30):
        async with open_proxy() as proxy:
            r = await http_get(proxy.http_url + "/cluster/lifecycle" + query)
            assert r.status == 400
            assert message in json.loads(r.body)["error"]


def _config(*argv: str):
    import argparse

    from fodcproxy.config import add_proxy_flags, proxy_config_from_args

    parser = argparse.ArgumentParser()
    add_proxy_flags(parser)
    return proxy_config_from_args(parser.parse_args(list(argv)))


def test_lifecycle_timeout_flag():
    from fodcproxy.errors import ConfigError

    assert _config().lifecycle_timeout == 50.0  # upstream: 40 s inspection + 10 s slack
    assert _config("--lifecycle-timeout", "2m").lifecycle_timeout == 120.0
    assert _config("--lifecycle-interval", "1m").lifecycle_interval == 60.0
    assert _config().lifecycle_interval == 0.0  # off: only GET /cluster/lifecycle collects
    with pytest.raises(ConfigError, match="--lifecycle-interval"):
        _config("--lifecycle-interval=-1s")
    for bad in ("0s", "soon", "-1s"):
        with pytest.raises(ConfigError) as caught:
            _config(f"--lifecycle-timeout={bad}")
        assert "--lifecycle-timeout" in str(caught.value)


async def test_lifecycle_interval_keeps_the_gauges_current_without_requests():
    with trio.fail_after(30):
        async with cluster(lifecycle_interval=0.1) as c:
            collector = c.proxy.proxy.lifecycle
            await wait_for(lambda: collector.collections >= 1)
            assert gauge(await c.metrics(), "banyandb_fodc_schema_consistency_status") == {
                (("group", "sw_metric"),): 1.0, (("group", "sw_property"),): 1.0,
                (("group", "sw_stream"),): 1.0}
            c.world.drift(DATA0, "sw_metric", "measure", "service_cpm_minute", runtime_only=True)
            seen = collector.collections
            await wait_for(lambda: collector.collections >= seen + 3)  # two rounds with the drift
            issues = gauge(await c.metrics(), "banyandb_fodc_schema_issues")
            assert issues[(("group", "sw_metric"), ("type", "runtime_not_applied"))] == 1.0


async def test_schema_gauges_are_rendered_off_the_event_loop_once_per_collection(monkeypatch):
    """The gauges have 5 series per group and an agent can send hundreds of thousands of groups:
    rendering them took seconds (50,000 groups: 2 s) and ran on the event loop at every scrape
    of /metrics, so /health and the agents' streams waited. Now the text is made in a worker
    thread, once per collection and format, and scrapes reuse it."""
    import threading

    import fodcproxy.lifecycle as lifecycle

    rendered: list[tuple[bool, threading.Thread]] = []
    real = lifecycle.render_schema_metrics

    def spy(verdicts, *, openmetrics=False):
        rendered.append((openmetrics, threading.current_thread()))
        return real(verdicts, openmetrics=openmetrics)

    monkeypatch.setattr(lifecycle, "render_schema_metrics", spy)
    with trio.fail_after(30):
        async with cluster() as c:
            await c.get()
            texts = [await c.metrics() for _ in range(3)]
    assert all('banyandb_fodc_schema_consistency_status{group="sw_stream"} 1.0' in t
               for t in texts)
    assert [om for om, _ in rendered] == [False]  # once for three scrapes
    assert all(t is not threading.main_thread() for _, t in rendered)


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text; version=1.0.0"])
async def test_an_agents_series_named_like_the_schema_gauges_is_exported(accept):
    """One agent (hostile, or scraping another FODC proxy) sending series named like the proxy's
    schema gauges made /metrics carry `banyandb_fodc_schema_consistency_status` twice: a second
    HELP/TYPE block, which Prometheus refuses, failing the whole scrape. The agent's series get
    the `exported_` prefix, as those named like the proxy's `fodc_agent_*` families do."""
    from fodcproxy.testing.fake import static

    fakes = [static("banyandb_fodc_schema_consistency_status", 1.0, labels={"group": "fake"}),
             static("fodc_agent_up", 1.0)]
    with trio.fail_after(30):
        async with cluster() as c, open_fake_agent(c.proxy.grpc_address, role="ROLE_DATA",
                                                   pod_name="mimic-0", series=fakes):
            await c.get()
            r = await http_get(c.proxy.http_url + "/metrics",
                               headers={"Accept": accept} if accept else None)
            assert r.status == 200
    text = r.body.decode()
    for name in ("banyandb_fodc_schema_consistency_status", "fodc_agent_up"):
        assert text.count(f"# TYPE {name} ") == 1, name
    assert 'banyandb_fodc_schema_consistency_status{group="sw_stream"} 1' in text
    assert "exported_banyandb_fodc_schema_consistency_status{" in text
    assert "exported_fodc_agent_up{" in text
