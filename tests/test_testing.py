"""`fodcproxy.testing`: every misbehaviour of the fake agents as the proxy sees it, the series
helpers, the pytest plugin, and the `fake-agents` and `demo` programs as processes.

Test policy (as in conftest.py): every test that touches a socket runs its body under
`trio.fail_after`; waiting is polling a condition inside that bound, never a sleep-and-hope; no
assertion on wall-clock speed; traffic only to 127.0.0.1.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest
import trio
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_om,
)
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.core.model import TimeWindow
from fodcproxy.core.registry import AgentStatus
from fodcproxy.core.windows import rfc3339
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc.convert import pb
from fodcproxy.testing import (
    HOSTILE_LABEL_NAMES,
    HOSTILE_LABEL_VALUES,
    hostile,
    open_fake_agent,
    open_proxy,
    rolling,
    static,
    summary,
)
from fodcproxy.testing.cli import (
    FakeAgentsConfig,
    SyntheticSeries,
    build_fake_agents,
    parse_misbehave,
)
from fodcproxy.testing.http import http_get

from helpers import wait_for

pytest_plugins = ["fodcproxy.testing.pytest_plugin"]

PROGRAM = [sys.executable, "-m", "fodcproxy"]
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def samples_of(text, name):
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


async def up_by_agent(proxy, query=""):
    r = await http_get(proxy.http_url + "/metrics" + query)
    assert r.status == 200, r.text
    return {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}, r


def status_of(proxy, agent_id):
    entry = proxy.proxy.registry.get(agent_id)
    return None if entry is None else entry.status


# --- misbehaviours, each observed at the proxy -----------------------------------------------------


async def test_slow_agent_is_up_0_when_slower_than_the_collect_timeout():
    with trio.fail_after(15):
        async with open_proxy(collect_timeout=0.3) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as fast, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                series=[static("x", 2)]) as slow:
            slow.delay = 30.0
            ups, r = await up_by_agent(proxy)
            assert ups == {fast.agent_id: 1.0, slow.agent_id: 0.0}
            assert slow.agent_id in r.headers["x-fodc-agents-missed"]
            assert {s.labels["agent_id"] for s in samples_of(r.text, "x")} == {fast.agent_id}
            assert slow.request_count == 1  # it was asked; it just did not answer in time
            # a slow agent is still a registered, online agent
            assert status_of(proxy, slow.agent_id) is AgentStatus.ONLINE


async def test_slow_agent_within_the_collect_timeout_answers():
    with trio.fail_after(15):
        async with open_proxy(collect_timeout=5.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as agent:
            agent.delay = 0.05
            ups, _ = await up_by_agent(proxy)
            assert ups == {agent.agent_id: 1.0}


async def test_hung_agent_is_up_0_and_the_others_answer():
    with trio.fail_after(15):
        async with open_proxy(collect_timeout=0.3) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as ok, \
                open_fake_agent(proxy.grpc_address, role="datanode-cold", ip="127.0.0.1", port=2,
                                series=[static("x", 2)]) as hung:
            hung.hang = True
            for _ in range(2):  # the second request finds the first still outstanding: still up 0
                ups, r = await up_by_agent(proxy)
                assert ups == {ok.agent_id: 1.0, hung.agent_id: 0.0}
                assert r.headers["x-fodc-agents-missed"] == hung.agent_id
            hung.hang = False


async def test_hang_can_be_undone_and_later_misbehaviours_still_apply():
    # The proxy's own deadline is long; a scrape that must miss lowers it with Prometheus's header.
    quick = {"X-Prometheus-Scrape-Timeout-Seconds": "1"}
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=10.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 7)]) as agent:
            agent.hang = True
            r = await http_get(proxy.http_url + "/metrics", headers=quick)
            assert samples_of(r.text, "fodc_agent_up")[0].value == 0.0
            assert samples_of(r.text, "x") == []
            agent.hang = False
            ups, r = await up_by_agent(proxy)
            assert ups == {agent.agent_id: 1.0}
            assert [s.value for s in samples_of(r.text, "x")] == [7.0]
            agent.delay = 30.0
            r = await http_get(proxy.http_url + "/metrics", headers=quick)
            assert samples_of(r.text, "fodc_agent_up")[0].value == 0.0
            assert r.headers["x-fodc-agents-missed"] == agent.agent_id


@pytest.mark.parametrize("how", ["drop_mid_reply", "drop"])
async def test_dropped_connection_is_unconnected(how):
    with trio.fail_after(15):
        async with open_proxy(collect_timeout=2.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="datanode-warm", ip="127.0.0.1", port=1,
                                series=[static("x", i) for i in range(10)],
                                reconnect_interval=30.0) as agent:
            if how == "drop":
                agent.drop()
            else:
                agent.drop_mid_reply = True
                ups, _ = await up_by_agent(proxy)
                assert ups == {agent.agent_id: 0.0}
            await wait_for(lambda: status_of(proxy, agent.agent_id) is AgentStatus.OFFLINE)
            nodes = (await http_get(proxy.http_url + "/cluster")).json()["nodes"]
            assert [(n["node_id"], n["status"]) for n in nodes] == [(agent.agent_id, "unconnected")]
            ups, _ = await up_by_agent(proxy)
            assert ups == {agent.agent_id: 0.0}
            assert agent.client.statistics().registrations == 1  # no goodbye, and no reconnect yet


async def test_stopped_heartbeats_go_offline_then_cleaned_up_and_the_agent_registers_again():
    # The proxy tells agents whole seconds: 0.5s becomes 1s, below the 1.5s timeout.
    with trio.fail_after(20):
        async with open_proxy(agent_heartbeat_timeout=1.5, agent_cleanup_timeout=3.0,
                              heartbeat_interval=0.5) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as agent:
            agent.heartbeats = False
            await wait_for(lambda: status_of(proxy, agent.agent_id) is AgentStatus.OFFLINE)
            # offline by the heartbeat timeout alone: its streams are still open
            assert agent.client.connected
            assert agent.client.statistics().registrations == 1
            assert proxy.proxy.grpc.statistics().active_calls == 2
            # offline for the cleanup timeout: removed, its streams ended, and the agent registers
            # again under the same id
            await wait_for(lambda: agent.client.statistics().registrations == 2)
            agent.heartbeats = True
            await wait_for(lambda: status_of(proxy, agent.agent_id) is AgentStatus.ONLINE)
            # Both of its streams were ended with the same status; whichever the agent saw first
            # is its last error.
            assert agent.client.statistics().last_error.endswith(
                f" stream ended ({GrpcCode.FAILED_PRECONDITION.value}): agent {agent.agent_id} was "
                "unregistered (cleanup timeout)")


async def test_oversized_reply_is_resource_exhausted_and_the_agent_comes_back():
    with trio.fail_after(15):
        async with open_proxy(grpc_max_msg_size=64 * 1024, collect_timeout=2.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as agent:
            agent.oversized = 100_000
            ups, _ = await up_by_agent(proxy)
            assert ups == {agent.agent_id: 0.0}
            await wait_for(lambda: agent.reply_status is not None)
            code, message = agent.reply_status
            assert code == GrpcCode.RESOURCE_EXHAUSTED
            assert "--grpc-max-msg-size=65536" in message
            # The proxy refused that one stream; the agent starts a new session, same agent_id.
            agent.oversized = 0
            first_id = agent.agent_id
            await wait_for(lambda: agent.client.statistics().registrations == 2)
            assert agent.agent_id == first_id
            await wait_for(lambda: status_of(proxy, first_id) is AgentStatus.ONLINE)
            ups, _ = await up_by_agent(proxy)
            assert ups == {first_id: 1.0}


async def test_oversized_reply_over_the_fakes_own_limit_is_still_sent():
    with trio.fail_after(15):
        async with open_proxy(grpc_max_msg_size=64 * 1024, collect_timeout=2.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=1,
                                max_message_size=32 * 1024) as agent:
            agent.oversized = 100_000
            await up_by_agent(proxy)
            await wait_for(lambda: agent.reply_status is not None)
            assert agent.reply_status[0] == GrpcCode.RESOURCE_EXHAUSTED


async def test_malformed_reply_is_invalid_argument_and_other_agents_are_unaffected():
    with trio.fail_after(15):
        async with open_proxy(collect_timeout=2.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as good, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                series=[static("x", 2)]) as bad:
            bad.malformed = True
            ups, r = await up_by_agent(proxy)
            assert ups == {good.agent_id: 1.0, bad.agent_id: 0.0}
            assert [s.value for s in samples_of(r.text, "x")] == [1.0]
            await wait_for(lambda: bad.reply_status is not None)
            assert bad.reply_status[0] == GrpcCode.INVALID_ARGUMENT
            assert bad.reply_status[1]  # a message a person can act on
            ups, _ = await up_by_agent(proxy)
            assert ups[good.agent_id] == 1.0
            stats = good.client.statistics()
            assert (stats.connects, stats.failures) == (1, 0)
            assert status_of(proxy, good.agent_id) is AgentStatus.ONLINE
            bad.malformed = False
            await wait_for(lambda: bad.client.statistics().registrations == 2)
            await wait_for(lambda: status_of(proxy, bad.agent_id) is AgentStatus.ONLINE)
            ups, _ = await up_by_agent(proxy)
            assert ups == {good.agent_id: 1.0, bad.agent_id: 1.0}


async def test_ignoring_request_ids_still_answers(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("x", 1)]) as agent:
            agent.echo_request_id = False
            for _ in range(3):
                ups, _ = await up_by_agent(proxy)
                assert ups == {agent.agent_id: 1.0}


async def test_hostile_labels_round_trip_through_metrics_and_windows(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[hostile()]) as agent:
            r = await http_get(proxy.http_url + "/metrics")
            om = await http_get(proxy.http_url + "/metrics",
                                headers={"Accept": "application/openmetrics-text; version=1.0.0"})
            windows = (await http_get(f"{proxy.http_url}/metrics-windows?start_time={rfc3339(time.time() - 3600)}")).json()
    assert r.status == 200 and om.status == 200
    samples = samples_of(r.text, "fodc_fake_hostile")
    assert len(samples) == len(HOSTILE_LABEL_VALUES) + len(HOSTILE_LABEL_NAMES) + 1
    by_case = {s.labels["case"]: s for s in samples}
    # every hostile value comes back exactly, after escaping and parsing
    for i, value in enumerate(HOSTILE_LABEL_VALUES):
        assert by_case[f"value-{i}"].labels["v"] == value
    for s in samples:
        assert s.labels["agent_id"] == agent.agent_id  # never overwritten by a clashing label
        assert all(LABEL_NAME.fullmatch(k) and not k.startswith("__") for k in s.labels)
    assert by_case["name-6"].labels["exported_agent_id"] == "x"
    fam = next(f for f in text_string_to_metric_families(r.text) if f.name == "fodc_fake_hostile")
    assert fam.documentation == 'help with "quotes", \\ and\na newline'
    om_samples = [s for f in parse_om(om.text) for s in f.samples if s.name == "fodc_fake_hostile"]
    assert {s.labels["case"]: s.labels.get("v") for s in om_samples} == \
        {k: s.labels.get("v") for k, s in by_case.items()}
    values = {w["labels"]["case"]: w["labels"].get("v") for w in windows if w["name"] == "fodc_fake_hostile"}
    assert values == {k: s.labels.get("v") for k, s in by_case.items()}


# --- series helpers --------------------------------------------------------------------------------


def test_rolling_gives_the_grid_inside_the_window_and_the_span():
    series = rolling("c", lambda t: t * 2, step=10.0, span=60.0)
    now = 1_000_005.0
    latest = series.produce(TimeWindow(), 0, now)
    assert [(m.value, m.timestamp.seconds) for m in latest] == [(now * 2, 1_000_005)]
    points = series.produce(TimeWindow(start=now - 3600), 0, now)
    assert [m.timestamp.seconds for m in points] == list(range(999_940, 1_000_001, 10))
    assert [m.value for m in points] == [t * 2.0 for t in range(999_940, 1_000_001, 10)]
    inside = series.produce(TimeWindow(start=999_971, end=999_990), 0, now)
    assert [m.timestamp.seconds for m in inside] == [999_980, 999_990]


def test_summary_family_shape():
    metrics = summary("lat", quantiles={0.9: 2.0, 0.5: 1.0}, count=10, sum_value=12.5,
                      labels={"m": "q"}).produce(TimeWindow(), 0, 0.0)
    assert [(m.name, dict(m.labels), m.value) for m in metrics] == [
        ("lat", {"m": "q", "quantile": "0.5"}, 1.0), ("lat", {"m": "q", "quantile": "0.9"}, 2.0),
        ("lat_sum", {"m": "q"}, 12.5), ("lat_count", {"m": "q"}, 10.0)]
    assert {m.type for m in metrics} == {4}  # SUMMARY


async def test_summary_and_rolling_through_the_proxy(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[summary("lat", help="Latency."),
                                           rolling("temp", lambda t: 20.0, step=10, span=120)]):
            r = await http_get(proxy.http_url + "/metrics")
            start = rfc3339(time.time() - 60)
            windows = (await http_get(f"{proxy.http_url}/metrics-windows?start_time={start}")).json()
    fams = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert fams["lat"].type == "summary"
    assert {s.labels.get("quantile") for s in fams["lat"].samples} == {"0.5", "0.9", "0.99", None}
    temp = next(w for w in windows if w["name"] == "temp")
    assert 5 <= len(temp["data"]) <= 7  # a point every 10 s over the last minute
    assert [p["timestamp"] for p in temp["data"]] == sorted(p["timestamp"] for p in temp["data"])


def test_synthetic_series_reuse_their_metrics_and_move_with_time():
    s = SyntheticSeries(40, seed=3, history_points=5, history_step=10.0)
    first = s.produce(TimeWindow(), 0, 1_800_000_000.0)
    values = [m.value for m in first]
    second = s.produce(TimeWindow(), 1, 1_800_000_100.0)
    assert second is first  # built once, values rewritten in place
    assert [m.value for m in second] != values
    assert all(len(m.labels) == 5 for m in first)
    assert len({(m.name, tuple(sorted(m.labels.items()))) for m in first}) == 40
    window = s.produce(TimeWindow(start=0), 2, 1_800_000_105.0)
    assert len(window) == 40 * 5
    points = [pb.Metric.FromString(b) for b in window]  # windows come serialized
    assert {m.timestamp.seconds for m in points} == {1_800_000_060 + 10 * k for k in range(5)}
    for k, m in enumerate(points):
        series = first[k // 5]
        assert (m.name, dict(m.labels), m.description, m.type) == (
            series.name, dict(series.labels), series.description, series.type)
        assert m.value == s.value_at(k // 5, m.timestamp.seconds)


def test_misbehaviour_mix_and_identities():
    assert parse_misbehave("slow=0.05,hung=0.01,drop=0.01") == {"slow": 0.05, "hung": 0.01, "drop": 0.01}
    config = FakeAgentsConfig(proxy_host="127.0.0.1", proxy_port=1, count=100, series=0,
                              misbehave={"slow": 0.1, "hung": 0.05, "drop": 0.05}, port_base=65530)
    kinds = config.assign_misbehaviours()
    assert (kinds.count("slow"), kinds.count("hung"), kinds.count("drop"), kinds.count(None)) == (10, 5, 5, 80)
    assert config.identity(0) == ("127.0.0.1", 65530)
    assert config.identity(6) == ("127.0.0.2", 65530)
    agents = build_fake_agents(config)
    assert len({(a.client.spec.ip, a.client.spec.port) for a in agents}) == 100
    assert sum(a.delay > 0 for a in agents) == 10 and sum(a.hang for a in agents) == 5
    assert [a.client.spec.role for a in agents[:5]] == [
        "liaison", "datanode-hot", "datanode-warm", "datanode-cold", "liaison"]


# --- pod agents (upstream BanyanDB's kind) ----------------------------------------------------------


async def test_pod_shaped_fake_agent_registers_by_pod_and_stamps_its_series():
    with trio.fail_after(15):
        async with open_proxy(collect_timeout=1.5) as proxy:
            async with open_fake_agent(
                    proxy.grpc_address, role="ROLE_DATA", labels={"type": "hot", "zone": "a"},
                    pod_name="banyandb-data-hot-0", container_names=["data", "lifecycle"],
                    series=[static("banyandb_system_up_time", 60.0, labels={"pod_name": "x"})],
            ) as agent:
                spec = agent.client.spec
                assert spec.is_pod and (spec.ip, spec.port) == ("", 0)
                entry = proxy.proxy.registry.get(agent.agent_id)
                assert entry is not None and entry.address is None
                assert entry.pod_name == "banyandb-data-hot-0"
                assert entry.container_names == ("data", "lifecycle")
                assert agent.agent_id.startswith("pod-")
                cluster = (await http_get(proxy.http_url + "/cluster")).json()
                [node] = cluster["nodes"]
                assert (node["pod_name"], node["container_names"]) == (
                    "banyandb-data-hot-0", ["data", "lifecycle"])
                assert node["primary_address"] is None and node["node_role"] == "ROLE_DATA"
                ups, r = await up_by_agent(proxy)
                assert ups == {agent.agent_id: 1.0}
                [line] = [ln for ln in r.text.splitlines()
                          if ln.startswith("banyandb_system_up_time{")]
                for label in ('pod_name="banyandb-data-hot-0"', 'container_name="data"',
                              'node_type="hot"', 'node_zone="a"', 'exported_pod_name="x"'):
                    assert label in line, line
                assert agent.request_count >= 1
    # Stamping is the pod agent's habit; an address agent stamps nothing unless asked.
    from fodcproxy.testing.fake import FakeAgent
    address = FakeAgent("127.0.0.1:1", role="liaison", ip="10.0.0.1", port=17912)
    assert address.stamp == {} and not address.client.spec.is_pod
    with pytest.raises(ValueError, match="pod_name"):
        FakeAgent("127.0.0.1:1", role="liaison")


async def test_plugin_fixture_makes_pod_agents(fodc_proxy, fodc_fake_agent):
    with trio.fail_after(10):
        agent = await fodc_fake_agent(role="ROLE_LIAISON", pod_name="banyandb-liaison-0",
                                      container_names=["liaison"], series=[static("x", 1)])
        entry = fodc_proxy.proxy.registry.get(agent.agent_id)
        assert entry.pod_name == "banyandb-liaison-0" and entry.address is None
        _, r = await up_by_agent(fodc_proxy)
        [sample] = samples_of(r.text, "x")
        assert (sample.labels["pod_name"], sample.labels["container_name"]) == (
            "banyandb-liaison-0", "liaison")


def test_pod_shaped_fleet_names_pods_and_roles_like_upstream():
    config = FakeAgentsConfig(proxy_host="127.0.0.1", proxy_port=1, count=6, series=3,
                              shape="pod", labels={"cluster": "c1"})
    agents = build_fake_agents(config)
    specs = [a.client.spec for a in agents]
    assert [s.pod_name for s in specs] == [
        "banyandb-liaison-0", "banyandb-data-hot-0", "banyandb-data-warm-0",
        "banyandb-data-cold-0", "banyandb-liaison-1", "banyandb-data-hot-1"]
    assert all(s.is_pod and s.ip == "" for s in specs)
    assert [(s.role, s.labels.get("type"), s.container_names) for s in specs[:4]] == [
        ("ROLE_LIAISON", None, ("liaison",)), ("ROLE_DATA", "hot", ("data",)),
        ("ROLE_DATA", "warm", ("data",)), ("ROLE_DATA", "cold", ("data",))]
    [synthetic] = agents[1].series
    metrics = synthetic.produce(TimeWindow(), 0, 1_800_000_000.0)
    assert len(metrics) == 3
    for m in metrics:  # stamped once, in the series themselves
        assert {k: m.labels[k] for k in ("node_role", "pod_name", "container_name", "node_type",
                                         "node_cluster")} == {
            "node_role": "ROLE_DATA", "pod_name": "banyandb-data-hot-0", "container_name": "data",
            "node_type": "hot", "node_cluster": "c1"}
    assert agents[1].stamp == {}  # not stamped a second time per reply


# --- the pytest plugin ------------------------------------------------------------------------------


@pytest.fixture
def fodc_proxy_settings():
    return {"collect_timeout": 1.5}


async def test_plugin_fixtures_three_roles(fodc_proxy, fodc_fake_agent):
    with trio.fail_after(10):
        assert fodc_proxy.proxy.config.collect_timeout == 1.5  # fodc_proxy_settings applies
        for role in ("liaison", "datanode-hot", "datanode-cold"):
            await fodc_fake_agent(role=role, series=[static("x", 1)])
        ups, r = await up_by_agent(fodc_proxy)
        assert sorted(s.labels["node_role"] for s in samples_of(r.text, "x")) == [
            "datanode-cold", "datanode-hot", "liaison"]
        assert set(ups.values()) == {1.0}


def test_plugin_import_has_no_side_effects():
    code = ("import sys; import fodcproxy.testing.pytest_plugin as p; "
            "assert 'trio' not in sys.modules and 'fodcproxy.proxy' not in sys.modules, sorted(sys.modules); "
            "print(sorted(n for n in vars(p) if n.startswith('fodc_')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['fodc_fake_agent', 'fodc_proxy', 'fodc_proxy_settings']"


_PLUGIN_TEST = '''
import pytest
import trio
from fodcproxy.testing import static
from fodcproxy.testing.http import http_get

@pytest.mark.trio
async def test_it(fodc_proxy, fodc_fake_agent):
    with trio.fail_after(10):
        agent = await fodc_fake_agent(role="liaison", series=[static("x", 7)])
        text = (await http_get(fodc_proxy.http_url + "/metrics")).text
        assert 'x{agent_id="%s"' % agent.agent_id in text
'''


@pytest.mark.slow
@pytest.mark.parametrize("opt_in", ["conftest", "entry point", "both"])
def test_plugin_opt_in_by_conftest_and_by_entry_point(tmp_path, opt_in):
    """The entry point the package registers is named like the module, so a conftest that also
    lists it (or `-p` with it) does not register it twice."""
    (tmp_path / "test_it.py").write_text(_PLUGIN_TEST)
    (tmp_path / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    env = dict(os.environ)
    if opt_in in ("conftest", "both"):
        (tmp_path / "conftest.py").write_text('pytest_plugins = ["fodcproxy.testing.pytest_plugin"]\n')
    if opt_in in ("entry point", "both"):
        # A distribution whose only content is the pytest11 entry point the lead adds to setup.cfg.
        dist = tmp_path / "site" / "fodcproxy_plugin_probe-0.dist-info"
        dist.mkdir(parents=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fodcproxy-plugin-probe\nVersion: 0\n")
        (dist / "entry_points.txt").write_text(
            "[pytest11]\nfodcproxy.testing.pytest_plugin = fodcproxy.testing.pytest_plugin\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "site"), env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-W", "error"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


# --- the programs as processes ---------------------------------------------------------------------


async def _read_until(stream, pattern, buf=b""):
    """Read a process's output until `pattern` matches; returns (match, everything read)."""
    while (m := re.search(pattern, buf)) is None:
        chunk = await stream.receive_some()
        assert chunk, f"the process ended its output first: {buf.decode(errors='replace')}"
        buf += chunk
    return m, buf


@pytest.mark.slow
async def test_fake_agents_program_registers_then_says_goodbye_on_sigterm():
    with trio.fail_after(60):
        async with open_proxy(collect_timeout=1.0) as proxy:
            proc = await trio.lowlevel.open_process(
                PROGRAM + ["fake-agents", "--proxy-addr", proxy.grpc_address, "--count", "20",
                           "--series", "5", "--history-points", "6", "--misbehave", "hung=0.1",
                           "--labels", "cluster=test"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                m, _ = await _read_until(proc.stdout, rb"(\d+) agents registered in [0-9.]+ s\n")
                assert m.group(1) == b"20"
                registry = proxy.proxy.registry
                assert len(list(registry)) == 20
                assert {e.identity.port for e in registry} == set(range(20000, 20020))
                assert {e.identity.role for e in registry} == {
                    "liaison", "datanode-hot", "datanode-warm", "datanode-cold"}
                ups, r = await up_by_agent(proxy)
                assert sorted(ups.values()) == [0.0] * 2 + [1.0] * 18  # two hung agents
                names = {s.name for f in text_string_to_metric_families(r.text) for s in f.samples
                         if s.labels.get("node_cluster") == "test" and not s.name.startswith("fodc_")}
                assert len(names) == 5
                series = [s for f in text_string_to_metric_families(r.text) for s in f.samples
                          if s.name in names]
                assert len(series) == 18 * 5
                assert all(len(s.labels) == 5 + 5 for s in series)  # 5 own + agent_id, node_*
                start = rfc3339(time.time() - 3600)
                windows = (await http_get(f"{proxy.http_url}/metrics-windows?start_time={start}")).json()
                assert len(windows) == 18 * 5
                assert {len(w["data"]) for w in windows} == {6}
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
                assert list(registry) == []  # every agent said goodbye
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


@pytest.mark.slow
async def test_fake_agents_program_pod_shape_registers_pod_agents():
    with trio.fail_after(60):
        async with open_proxy(collect_timeout=1.0) as proxy:
            proc = await trio.lowlevel.open_process(
                PROGRAM + ["fake-agents", "--proxy-addr", proxy.grpc_address, "--count", "8",
                           "--series", "3", "--shape", "pod"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                m, _ = await _read_until(proc.stdout, rb"(\d+) agents registered in [0-9.]+ s\n")
                assert m.group(1) == b"8"
                entries = list(proxy.proxy.registry)
                assert len(entries) == 8 and all(e.address is None for e in entries)
                assert {e.pod_name for e in entries} == {
                    f"banyandb-{p}-{n}" for p in ("liaison", "data-hot", "data-warm", "data-cold")
                    for n in (0, 1)}
                assert {(e.role, dict(e.labels).get("type")) for e in entries} == {
                    ("ROLE_LIAISON", None), ("ROLE_DATA", "hot"), ("ROLE_DATA", "warm"),
                    ("ROLE_DATA", "cold")}
                ups, r = await up_by_agent(proxy)
                assert sorted(ups.values()) == [1.0] * 8
                series = [s for f in text_string_to_metric_families(r.text) for s in f.samples
                          if not s.name.startswith("fodc_")]
                assert len(series) == 8 * 3
                assert {s.labels["pod_name"] for s in series} == {e.pod_name for e in entries}
                assert {s.labels["container_name"] for s in series} == {"liaison", "data"}
                proc.send_signal(signal.SIGTERM)
                assert await proc.wait() == 0
                assert list(proxy.proxy.registry) == []
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()


@pytest.mark.parametrize("args, flag", [
    (["--count", "0"], "--count"),
    (["--count", "lots"], "--count"),
    (["--series", "-1"], "--series"),
    (["--proxy-addr", "nowhere"], "--proxy-addr"),
    (["--misbehave", "slow=2"], "--misbehave"),
    (["--misbehave", "sleepy=0.1"], "--misbehave"),
    (["--misbehave", "slow=0.6,hung=0.6"], "--misbehave"),
    (["--history-step", "0s"], "--history-step"),
    (["--ip-base", "not-an-ip"], "--ip-base"),
    (["--labels", "bad key=1"], "--labels"),
    (["--roles", ","], "--roles"),
    (["--shape", "pods"], "--shape"),
])
def test_fake_agents_bad_flag_exits_2_naming_it(args, flag):
    out = subprocess.run(PROGRAM + ["fake-agents", *args], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0], out.stderr


@pytest.mark.slow
async def test_demo_program_shows_every_role_and_stops_on_sigterm():
    with trio.fail_after(60):
        proc = await trio.lowlevel.open_process(
            PROGRAM + ["demo", "--grpc-listen-addr", "127.0.0.1:0", "--http-listen-addr", "127.0.0.1:0",
                       "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _, out = await _read_until(proc.stdout, rb"stops it\.\n")
            text = out.decode()
            base = re.search(r"(http://127\.0\.0\.1:\d+)/metrics\s", text).group(1)
            for path in ("/metrics", "/cluster", "/cluster/config", "/health", "/metrics-windows?start_time="):
                assert base + path in text
            cluster = (await http_get(base + "/cluster")).json()
            roles = sorted(n["node_role"] for n in cluster["nodes"])
            assert roles == ["ROLE_DATA", "ROLE_DATA", "ROLE_LIAISON", "datanode-hot",
                             "datanode-hot", "liaison"]
            # A mixed fleet: address agents and pod agents (upstream BanyanDB's kind).
            pods = {n["pod_name"]: (n["labels"].get("type"), n["container_names"])
                    for n in cluster["nodes"] if n["primary_address"] is None}
            assert pods == {"banyandb-liaison-0": (None, ["liaison"]),
                            "banyandb-data-warm-0": ("warm", ["data"]),
                            "banyandb-data-cold-0": ("cold", ["data"])}
            assert sum(n["primary_address"] is not None for n in cluster["nodes"]) == 3
            assert "3 address agents" in text and "3 pod agents" in text
            assert {n["status"] for n in cluster["nodes"]} == {"online"}
            assert cluster["calls"]
            r = await http_get(base + "/metrics")
            fams = {f.name: f for f in text_string_to_metric_families(r.text)}
            assert {s.value for s in fams["fodc_agent_up"].samples} == {1.0}
            assert {"counter", "gauge", "histogram", "summary"} <= {f.type for f in fams.values()}
            cpu = fams["banyandb_system_cpu_usage_ratio"].samples
            assert {s.labels["node_role"] for s in cpu} == {
                "liaison", "datanode-hot", "ROLE_LIAISON", "ROLE_DATA"}
            # Pod agents stamp their series like upstream's agent.
            assert {(s.labels.get("pod_name"), s.labels.get("container_name")) for s in cpu} == {
                (None, None), ("banyandb-liaison-0", "liaison"), ("banyandb-data-warm-0", "data"),
                ("banyandb-data-cold-0", "data")}
            config = (await http_get(base + "/cluster/config")).json()
            assert [(i["role"], i["key"]) for i in config["inconsistencies"]] == [
                ("datanode-hot", "measure-flush-timeout")]
            windows_url = re.search(r"(http://\S+/metrics-windows\?start_time=\S+)", text).group(1)
            windows = (await http_get(windows_url)).json()
            longest = max(len(w["data"]) for w in windows)
            assert 85 <= longest <= 92  # every 10 s over the last 15 minutes
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def test_demo_bad_flag_exits_2_naming_it():
    out = subprocess.run(PROGRAM + ["demo", "--collect-timeout", "soon"], capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "--collect-timeout" in out.stderr


def test_hostile_helpers_cover_what_they_promise():
    assert any("\n" in v for v in HOSTILE_LABEL_VALUES) and "" in HOSTILE_LABEL_VALUES
    assert "agent_id" in HOSTILE_LABEL_NAMES and any(n.startswith("__") for n in HOSTILE_LABEL_NAMES)
    assert not all(LABEL_NAME.fullmatch(n) for n in HOSTILE_LABEL_NAMES)
