"""Our own agent (`fodcproxy.agent.main.Agent`, a liaison answering from an in-process fake node,
tests/lifecycle_fakes.py) on our own proxy: GET /cluster/lifecycle and the schema gauge, end to
end over real gRPC and HTTP (issue 16). Skipped where the agent's lifecycle side is not built."""

from __future__ import annotations

import json

import pytest
import trio

pytest.importorskip("fodcproxy.agent.lifecycle")
lifecycle_fakes = pytest.importorskip("lifecycle_fakes")

from fodcproxy.agent.config import AgentConfig  # noqa: E402
from fodcproxy.agent.main import Agent  # noqa: E402
from fodcproxy.lifecycle import LifecycleReportStream, RegistryStream  # noqa: E402
from fodcproxy.testing import open_proxy  # noqa: E402
from fodcproxy.testing.http import http_get  # noqa: E402
from helpers import wait_for  # noqa: E402


async def test_our_agent_on_our_proxy_lifecycle_and_verdict(tmp_path):
    from test_agent_lifecycle import cluster_node  # a liaison: groups sw and sm, s1 drifted

    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "2026-11-29.json").write_text('{"phase": "done"}')
    with trio.fail_after(60):
        async with open_proxy(lifecycle_timeout=10.0) as proxy, \
                lifecycle_fakes.open_fake_node(cluster_node()) as node_port:
            config = AgentConfig(node_role="ROLE_LIAISON", pod_name="liaison-0",
                                 proxy_host="127.0.0.1", proxy_port=proxy.addresses.grpc_port,
                                 metrics_endpoints=("http://127.0.0.1:9/metrics",),
                                 lifecycle_port=node_port, schema_registry_port=node_port,
                                 lifecycle_report_dir=str(reports), lifecycle_cache_ttl=0)
            async with trio.open_nursery() as nursery:
                agent: Agent = await nursery.start(Agent(config).run)
                hub = proxy.proxy.hub

                def ready() -> bool:
                    return any(s.stream(LifecycleReportStream) and s.stream(RegistryStream)
                               for s in hub.sessions.values())

                await wait_for(ready)
                docs = []
                for _ in range(2):
                    r = await http_get(proxy.http_url + "/cluster/lifecycle", timeout=30)
                    assert r.status == 200
                    docs.append(json.loads(r.body))
                metrics = (await http_get(proxy.http_url + "/metrics")).text
                agent.stop()
    first, second = docs
    assert second["agent_summary"] == {"total": 1, "requested": 1, "responded": 1,
                                       "not_responded": 0}
    assert [g["name"] for g in second["groups"]] == ["sm", "sw"]
    assert second["lifecycle_statuses"][0]["pod_name"] == "liaison-0"
    assert [r["filename"] for r in second["lifecycle_statuses"][0]["reports"]] == [
        "2026-11-29.json"]
    sw = {g["name"]: g for g in second["groups"]}["sw"]
    # s1's runtime differs from its cache: seen once (UNKNOWN), reported on the second round
    assert {g["name"]: g for g in first["groups"]}["sw"]["schema_consistency"]["status"] == \
        "CONSISTENCY_STATUS_UNKNOWN"
    assert sw["schema_consistency"]["status"] == "CONSISTENCY_STATUS_INCONSISTENT"
    assert [(i["kind"], i["name"], i["type"]) for i in sw["schema_consistency"]["issues"]] == [
        ("stream", "s1", "SCHEMA_ISSUE_TYPE_RUNTIME_NOT_APPLIED")]
    assert 'banyandb_fodc_schema_consistency_status{group="sw"} 2.0' in metrics


async def test_an_address_agent_of_ours_does_not_hold_up_the_collection(tmp_path):
    """An address agent started with the default flags has no BanyanDB node on 127.0.0.1 to ask
    (nothing may listen on 18912): it opens no lifecycle stream, so GET /cluster/lifecycle answers
    at once (0 agents support the stream) instead of waiting --lifecycle-timeout for it and
    judging every group UNKNOWN. (Before: it opened StreamLifecycle, never answered, and the
    request took the whole timeout; the guard below is shorter than that timeout.)"""
    with trio.fail_after(20):
        async with open_proxy(lifecycle_timeout=30.0) as proxy:
            config = AgentConfig(node_role="liaison", node_ip="127.0.0.1",
                                 proxy_host="127.0.0.1", proxy_port=proxy.addresses.grpc_port,
                                 metrics_endpoints=("http://127.0.0.1:9/metrics",),
                                 pressure_dir=str(tmp_path / "pressure"))
            async with trio.open_nursery() as nursery:
                agent: Agent = await nursery.start(Agent(config).run)
                r = await http_get(proxy.http_url + "/cluster/lifecycle", timeout=30)
                agent.stop()
    doc = json.loads(r.body)
    assert doc["agent_summary"] == {"total": 1, "requested": 0, "responded": 0,
                                    "not_responded": 0}
    assert doc["error"] == "FODC unavailable: 0/1 registered agents support the lifecycle stream"
