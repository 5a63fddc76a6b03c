"""What SkyWalking's BanyanDB dashboards need of `/metrics` on a mixed fleet (issue 13).

The OAP scrapes the proxy through an OpenTelemetry collector and keys BanyanDB instances on
`container_name@pod_name`, groups by `node_role` and `node_type` (the tier), keeps every original
label (queue metrics: `operation`, `group`, ...) and takes liveness from
`banyandb_system_up_time` (`../shared/upstream/README.md`, "Who consumes the proxy"). Upstream's
agent stamps `node_role`, `pod_name`, `container_name` and `node_<k>` on its series itself; the
proxy's enrichment must agree with them, not rename them (SPEC section 6).

One body of address agents and pod agents, built through the renderer and checked the way the
dashboards read it, and parsed by promtool and prometheus_client; then the same through a real
proxy, with a pod agent on Google's gRPC stack that talks like upstream's (`upstream_agent.py`).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from array import array
from collections import defaultdict
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import trio
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fodcproxy.core.exposition import AgentBatch, ExpositionCache, render_with_stats
from fodcproxy.core.model import MetricType, NodeMeta, Sample
from fodcproxy.core.series import DigestedSamples, digest_samples
from fodcproxy.testing import counter, open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get

G, C, H = MetricType.GAUGE, MetricType.COUNTER, MetricType.HISTOGRAM
PROMTOOL = shutil.which("promtool")
ENRICHMENT = {"agent_id", "node_role", "node_ip", "node_port", "pod_name"}
QUEUE = "banyandb_queue_sub_total_finished"
QUEUE_LATENCY = "banyandb_queue_sub_total_latency"
UP_TIME = "banyandb_system_up_time"


# --------------------------------------------------------------------------------------------
# The fleet


def address_agent(n: int, role: str, tier: str = "") -> NodeMeta:
    labels = (("type", tier),) if tier else ()
    return NodeMeta(f"{role}-{n}", role, f"10.0.0.{n}", 17912, labels)


def pod_agent(pod: str, role: str, tier: str = "",
              containers: tuple[str, ...] = ("data",)) -> NodeMeta:
    labels = (("type", tier), ("zone", "z1")) if tier else (("zone", "z1"),)
    return NodeMeta(f"pod-{pod}", role, "", 0, labels, pod, containers)


def node_series(m: NodeMeta, stamped: dict[str, str]) -> list[Sample]:
    """A node's series: up time, queue counters and a queue latency histogram by operation and
    group, each with the labels the node's agent `stamped` on it."""
    out = [Sample(UP_TIME, dict(stamped), 3600.0, "Seconds since the node started.", G)]
    for operation, group in [("batch-write", "sw_metric"), ("query", "sw_trace")]:
        labels = {**stamped, "operation": operation, "group": group, "remote_node": "n9"}
        out.append(Sample(QUEUE, labels, 42.0, "Messages finished.", C))
        help_text = "Queue latency."
        for le, v in [("0.005", 1.0), ("0.1", 3.0), ("+Inf", 4.0)]:
            out.append(Sample(f"{QUEUE_LATENCY}_bucket", {**labels, "le": le}, v, help_text, H))
        out.append(Sample(f"{QUEUE_LATENCY}_sum", labels, 0.2, help_text, H))
        out.append(Sample(f"{QUEUE_LATENCY}_count", labels, 4.0, help_text, H))
    return out


def upstream_stamped(m: NodeMeta, container: str) -> dict[str, str]:
    """What upstream's agent stamps on a series scraped from `container` of its pod."""
    return {"node_role": m.role, "pod_name": m.pod_name, "container_name": container,
            **{f"node_{k}": v for k, v in m.labels}}


def fleet() -> list[tuple[NodeMeta, list[Sample]]]:
    out = [(m, node_series(m, {})) for m in (address_agent(1, "liaison"),
                                             address_agent(2, "datanode-hot", "hot"))]
    for m in (pod_agent("banyandb-liaison-0", "ROLE_LIAISON", containers=("liaison",)),
              pod_agent("banyandb-data-hot-0", "ROLE_DATA", "hot", ("data", "lifecycle")),
              pod_agent("banyandb-data-warm-0", "ROLE_DATA", "warm")):
        samples = [s for c in m.container_names for s in node_series(m, upstream_stamped(m, c))]
        out.append((m, samples))
    return out


def as_replies(groups: Sequence[tuple[NodeMeta, list[Sample]]]) -> list[DigestedSamples]:
    """The samples as the proxy's decoder hands them to the renderer (float columns)."""
    out = []
    for _, samples in groups:
        d = digest_samples(samples)
        d.values = array("d", d.values)
        out.append(d)
    return out


# --------------------------------------------------------------------------------------------
# What the dashboards read


def node_samples(body: str, openmetrics: bool = False) -> Iterator[tuple[str, dict[str, str]]]:
    """(sample name, labels) of every sample of the nodes (not the proxy's own families)."""
    parse = parse_openmetrics if openmetrics else parse_text
    for fam in parse(body):
        if fam.name.startswith(("fodc_agent_", "fodc_proxy_")):
            continue
        for s in fam.samples:
            yield s.name, dict(s.labels)


def check_dashboard_labels(body: str, metas: Sequence[NodeMeta], *, openmetrics: bool = False,
                           queue: bool = True) -> None:
    by_id = {m.agent_id: m for m in metas}
    roles: set[str] = set()
    instances: dict[str, set[str]] = defaultdict(set)  # container_name@pod_name -> sample names
    queue_keys: set[tuple[str, str, str]] = set()
    for name, labels in node_samples(body, openmetrics):
        m = by_id[labels["agent_id"]]
        assert labels["node_role"] == m.role, (name, labels)
        roles.add(labels["node_role"])
        assert not [k for k in labels if k.startswith("exported_")], (name, labels)
        if m.is_pod:
            assert labels["pod_name"] == m.pod_name, (name, labels)
            assert labels["container_name"] in m.container_names, (name, labels)
            assert "node_ip" not in labels and "node_port" not in labels, (name, labels)
            instances[f"{labels['container_name']}@{labels['pod_name']}"].add(name)
        else:
            assert (labels["node_ip"], labels["node_port"]) == (m.ip, str(m.port)), labels
            assert "pod_name" not in labels, (name, labels)
        tier = dict(m.labels).get("type")
        if tier:
            assert labels["node_type"] == tier, (name, labels)
        if name.startswith("banyandb_queue_"):
            assert labels["operation"] and labels["group"], (name, labels)
            queue_keys.add((labels["agent_id"], labels["operation"], labels["group"]))
    assert len(roles) >= 2, roles
    # every container of every pod is an instance, alive by banyandb_system_up_time
    expected = {f"{c}@{m.pod_name}" for m in metas if m.is_pod for c in m.container_names}
    assert set(instances) == expected
    assert all(UP_TIME in names for names in instances.values()), instances
    if queue:
        pairs = [("batch-write", "sw_metric"), ("query", "sw_trace")]
        assert queue_keys == {(m.agent_id, op, group) for m in metas for op, group in pairs}


def promtool_ok(body: str) -> None:
    if PROMTOOL is None:
        pytest.skip("promtool is not on PATH (Debian package `prometheus`)")
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True,
                            text=True, timeout=120, check=False)
    output = result.stdout + result.stderr
    # Exit 1 is a parse error, 3 a lint problem. Upstream names some counters without `_total`
    # (`banyandb_queue_sub_total_finished`), which promtool lints; nothing else may be found.
    assert result.returncode in (0, 3), output
    lint = [line for line in output.splitlines() if line.strip()]
    suffix = 'counter metrics should have "_total" suffix'
    assert all(line.startswith("banyandb_") and line.endswith(suffix) for line in lint), output


# --------------------------------------------------------------------------------------------
# The renderer


@pytest.mark.parametrize("om", [False, True], ids=["text", "openmetrics"])
def test_a_mixed_fleets_body_has_what_the_dashboards_key_on(om: bool) -> None:
    groups = fleet()
    metas = [m for m, _ in groups]
    result = render_with_stats([AgentBatch(m, s, True, 0.1) for m, s in groups], openmetrics=om)
    body = "".join(result.chunks)
    assert result.stats.duplicates == result.stats.conflicts == 0
    check_dashboard_labels(body, metas, openmetrics=om)
    # the line itself, as upstream's agent stamped it: nothing renamed, nothing twice
    assert ('banyandb_system_up_time{agent_id="pod-banyandb-data-hot-0",node_role="ROLE_DATA",'
            'pod_name="banyandb-data-hot-0",node_type="hot",node_zone="z1",'
            'container_name="lifecycle"} 3600.0\n') in body
    # the per-agent families name the node the same way
    ups = {s.labels["agent_id"]: s.labels
           for fam in (parse_openmetrics if om else parse_text)(body)
           if fam.name == "fodc_agent_up" for s in fam.samples}
    assert ups["pod-banyandb-liaison-0"] == {"agent_id": "pod-banyandb-liaison-0",
                                            "node_role": "ROLE_LIAISON",
                                            "pod_name": "banyandb-liaison-0", "node_zone": "z1"}
    assert ups["liaison-1"] == {"agent_id": "liaison-1", "node_role": "liaison",
                                "node_ip": "10.0.0.1", "node_port": "17912"}
    # the proxy's decoder's columns, rendered twice with one cache (the remembered lines), give
    # the same body
    cache = ExpositionCache()
    replies = as_replies(groups)
    for _ in range(2):
        again = render_with_stats([AgentBatch(m, d, True, 0.1) for m, d in zip(metas, replies)],
                                  openmetrics=om, cache=cache)
        assert "".join(again.chunks) == body
    if not om:
        promtool_ok(body)


# --------------------------------------------------------------------------------------------
# A real proxy, an address agent and a pod agent that talks like upstream's


@pytest.fixture(scope="module")
def upstream_pb(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from upstream_agent import compile_upstream

    return compile_upstream(tmp_path_factory.mktemp("upstream-proto"))


async def test_a_proxy_serves_a_mixed_fleet_as_the_dashboards_need(upstream_pb: Any) -> None:
    from upstream_agent import UpstreamLikeAgent

    queue = {"operation": "batch-write", "group": "sw_metric"}
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=5.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="10.0.0.2",
                                port=17912, labels={"type": "hot"},
                                series=[static(UP_TIME, 60.0, help="Up."),
                                        counter(QUEUE, labels=queue, help="Finished.")]):
            agent = UpstreamLikeAgent(proxy.grpc_address, upstream_pb, pod_name="banyandb-data-0",
                                      role="ROLE_DATA", labels={"type": "warm"},
                                      streams=("StreamMetrics",))
            thread = threading.Thread(target=agent.run, daemon=True)
            thread.start()
            try:
                assert await trio.to_thread.run_sync(agent.opened.wait, 10.0)
                body = ""
                for _ in range(100):  # until its metrics stream is attached and answers
                    r = await http_get(proxy.http_url + "/metrics")
                    assert r.status == 200, r.text
                    body = r.text
                    if f'{UP_TIME}{{agent_id="{agent.agent_id}"' in body:
                        break
                    await trio.sleep(0.1)
                windows = (await http_get(proxy.http_url + "/metrics-windows")).json()
            finally:
                agent.stop()
                await trio.to_thread.run_sync(thread.join, 10.0)
    pod = NodeMeta(agent.agent_id, "ROLE_DATA", "", 0, (("type", "warm"),), "banyandb-data-0",
                   ("data",))
    address = next(NodeMeta(s.labels["agent_id"], "datanode-hot", "10.0.0.2", 17912,
                            (("type", "hot"),))
                   for s in next(f for f in parse_text(body) if f.name == UP_TIME).samples
                   if "node_ip" in s.labels)
    assert f'{UP_TIME}{{agent_id="{agent.agent_id}",node_role="ROLE_DATA",' \
           f'pod_name="banyandb-data-0",node_type="warm",container_name="data"}} ' in body
    check_dashboard_labels(body, [pod, address], queue=False)
    assert f'fodc_agent_up{{agent_id="{agent.agent_id}",node_role="ROLE_DATA",' \
           f'pod_name="banyandb-data-0",node_type="warm"}} 1\n' in body
    assert any(s.labels == {"agent_id": address.agent_id, "node_role": "datanode-hot",
                            "node_ip": "10.0.0.2", "node_port": "17912", "node_type": "hot",
                            **queue}
               for f in parse_text(body) if f.name == QUEUE for s in f.samples)
    promtool_ok(body)
    items = {(w["agent_id"], w["name"]): w for w in windows}
    up = items[(agent.agent_id, UP_TIME)]
    assert {k: v for k, v in up.items() if k != "data"} == {
        "name": UP_TIME, "description": "seconds up", "type": "gauge",
        "labels": {"agent_id": agent.agent_id, "node_role": "ROLE_DATA",
                   "pod_name": "banyandb-data-0", "node_type": "warm", "container_name": "data"},
        "agent_id": agent.agent_id, "pod_name": "banyandb-data-0"}
    theirs = items[(address.agent_id, UP_TIME)]
    assert (theirs["ip"], theirs["port"], "pod_name" in theirs) == ("10.0.0.2", 17912, False)
