"""The HTTP API over real sockets: shapes, errors, fan-out honesty (deadlines, late replies)."""

from __future__ import annotations

import gzip
import math
import time

import pytest
import trio
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_om
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fodcproxy.core.model import NodeConfig
from fodcproxy.core.windows import parse_rfc3339
from fodcproxy.testing import counter, histogram, history, open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get, http_request

from helpers import wait_for


def families(text):
    return {f.name: f for f in parse_text(text)}


def samples_of(text, name):
    return [s for f in parse_text(text) for s in f.samples if s.name == name]


async def test_health_shape(proxy):
    with trio.fail_after(10):
        r = await http_get(proxy.http_url + "/health")
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["status"] == "ok" and body["agents_online"] == 0 and body["agents_total"] == 0
    assert body["uptime_seconds"] >= 0


@pytest.mark.parametrize(
    "method, path, status, fragment",
    [
        ("GET", "/nope", 404, "no such path"),
        ("POST", "/metrics", 405, "use GET"),
        ("DELETE", "/cluster", 405, "use GET"),
        ("GET", "/metrics?role=a&role=b", 400, "role"),
        ("GET", "/metrics?bogus=1", 400, "unknown query parameter"),
        ("GET", "/metrics?address=1.2.3.4:99999", 400, "address"),
        ("GET", "/metrics-windows?start_time=yesterday", 400, "start_time"),
        ("GET", "/metrics-windows?start_time=2026-01-02T00:00:00Z&end_time=2026-01-01T00:00:00Z", 400, "start_time"),
        ("GET", "/health?x=1", 400, "no query parameters"),
        ("GET", "/metrics?agent_id=a&node_id=", 400, "node_id is empty"),
    ],
)
async def test_errors_are_json_with_the_right_status(proxy, method, path, status, fragment):
    with trio.fail_after(10):
        r = await http_request(method, proxy.http_url + path)
    assert r.status == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    assert fragment in r.json()["error"]


async def test_metrics_exposition_enriched_typed_and_parsable(proxy):
    series_a = [counter("requests_total", start=10, labels={"path": "/a"}, help="Requests.\nAll of them."),
                static("temperature", 21.5, labels={"agent_id": "clash", "v": 'a"b\\c\nd'}),
                histogram("latency_seconds", help="Latency")]
    series_b = [counter("requests_total", start=100, labels={"path": "/a"}),
                static("temperature", float("nan"))]
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   labels={"zone": "z1"}, series=series_a) as a, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                series=series_b) as b:
            r = await http_get(proxy.http_url + "/metrics")
    assert r.status == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert r.headers["x-fodc-agents-asked"] == "2" and r.headers["x-fodc-agents-answered"] == "2"
    fams = families(r.text)
    assert fams["requests"].type == "counter"
    assert fams["latency_seconds"].type == "histogram"
    assert fams["temperature"].type == "gauge"
    assert fams["requests"].documentation == "Requests.\nAll of them."
    # one HELP and one TYPE per family, families not interleaved
    lines = r.text.splitlines()
    assert sum(1 for ln in lines if ln.startswith("# TYPE requests_total ")) == 1
    req_lines = [i for i, ln in enumerate(lines) if ln.startswith("requests_total{")]
    assert req_lines == list(range(req_lines[0], req_lines[0] + 2))
    by_agent = {s.labels["agent_id"]: s for s in samples_of(r.text, "requests_total")}
    assert by_agent[a.agent_id].value == 10 and by_agent[b.agent_id].value == 100
    sa = by_agent[a.agent_id].labels
    assert sa == {"agent_id": a.agent_id, "node_role": "liaison", "node_ip": "127.0.0.1",
                  "node_port": "1", "node_zone": "z1", "path": "/a"}
    temps = {s.labels["agent_id"]: s for s in samples_of(r.text, "temperature")}
    assert temps[a.agent_id].labels["exported_agent_id"] == "clash"
    assert temps[a.agent_id].labels["v"] == 'a"b\\c\nd'
    assert math.isnan(temps[b.agent_id].value)
    ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
    assert ups == {a.agent_id: 1.0, b.agent_id: 1.0}
    assert len(samples_of(r.text, "fodc_agent_collect_duration_seconds")) == 2
    assert "fodc_proxy_agents" in fams and "fodc_proxy_collect_duration_seconds" in fams
    buckets = [s for s in samples_of(r.text, "latency_seconds_bucket") if s.labels["agent_id"] == a.agent_id]
    assert [s.labels["le"] for s in buckets] == ["0.1", "1.0", "+Inf"]


async def test_openmetrics_and_gzip_when_asked(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[counter("jobs_total")]):
            r = await http_get(proxy.http_url + "/metrics", headers={
                "Accept": "application/openmetrics-text; version=1.0.0, text/plain;q=0.5",
                "Accept-Encoding": "gzip"})
    assert r.status == 200
    assert r.headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
    assert r.headers["content-encoding"] == "gzip"
    text = gzip.decompress(r.body).decode()
    assert text.endswith("# EOF\n")
    fams = {f.name: f for f in parse_om(text)}
    assert fams["jobs"].type == "counter"


async def test_filters_select_agents(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("x", 1)]) as a, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.2", port=2,
                                series=[static("x", 2)]) as b:
            async def agents(query):
                r = await http_get(proxy.http_url + "/metrics" + query)
                assert r.status == 200, r.text
                return {s.labels["agent_id"] for s in samples_of(r.text, "x")}

            assert await agents("") == {a.agent_id, b.agent_id}
            assert await agents("?role=liaison") == {a.agent_id}
            assert await agents("?address=127.0.0.2") == {b.agent_id}
            assert await agents("?address=127.0.0.2:2") == {b.agent_id}
            assert await agents("?address=127.0.0.2:3") == set()
            assert await agents(f"?agent_id={a.agent_id}") == {a.agent_id}
            assert await agents(f"?node_id={b.agent_id}") == {b.agent_id}
            assert len(a.requests) == 3 and len(b.requests) == 4  # only selected agents are asked


async def test_hung_agent_shows_up_0_and_scrape_returns_in_time():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=0.5) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                       series=[static("x", 1)]) as good, \
                    open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                    series=[static("x", 2)]) as hung:
                hung.hang = True
                start = trio.current_time()
                r = await http_get(proxy.http_url + "/metrics")
                elapsed = trio.current_time() - start
    assert r.status == 200
    ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
    assert ups == {good.agent_id: 1.0, hung.agent_id: 0.0}
    assert {s.labels["agent_id"] for s in samples_of(r.text, "x")} == {good.agent_id}
    assert r.headers["x-fodc-agents-answered"] == "1"
    assert hung.agent_id in r.headers["x-fodc-agents-missed"]
    assert elapsed < 5  # bounded by the deadline, not by the hung agent


async def test_scrape_timeout_header_lowers_the_deadline():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=8.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                       series=[static("x", 1)]) as hung:
                hung.hang = True
                start = trio.current_time()
                r = await http_get(proxy.http_url + "/metrics",
                                   headers={"X-Prometheus-Scrape-Timeout-Seconds": "1"})
                elapsed = trio.current_time() - start
    assert r.status == 200 and elapsed < 4
    assert samples_of(r.text, "fodc_agent_up")[0].value == 0.0


async def test_a_scrape_joining_a_slower_one_answers_by_its_own_deadline():
    """Identical concurrent scrapes share one fan-out, but each answers by its own deadline."""
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=8.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                       series=[static("x", 1)]) as good, \
                    open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1",
                                    port=2, series=[static("x", 2)]) as slow:
                slow.delay = 4.0
                bodies = {}

                async def scrape(name, headers):
                    start = trio.current_time()
                    r = await http_get(proxy.http_url + "/metrics", headers=headers)
                    bodies[name] = (r, trio.current_time() - start)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(scrape, "first", {})
                    await wait_for(lambda: len(slow.requests) == 1)
                    nursery.start_soon(scrape, "short", {"X-Prometheus-Scrape-Timeout-Seconds": "1"})
                r, elapsed = bodies["short"]
                ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
                assert ups == {good.agent_id: 1.0, slow.agent_id: 0.0}
                assert elapsed < 3.0  # its own deadline (0.75 s), not the slow agent's 4 s
                r, elapsed = bodies["first"]
                ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
                assert ups == {good.agent_id: 1.0, slow.agent_id: 1.0}
                assert len(slow.requests) == 1  # one fan-out, shared
                assert proxy.proxy.metrics.value("fodc_proxy_shared_collections_total") == 1


async def test_seed_agent_without_request_ids_that_skips_a_request_recovers():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=1.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                       series=[counter("c_total", start=1)]) as agent:
                agent.echo_request_id = False

                async def up():
                    r = await http_get(proxy.http_url + "/metrics")
                    return samples_of(r.text, "fodc_agent_up")[0].value, r

                assert (await up())[0] == 1.0
                agent.skip = 1
                assert (await up())[0] == 0.0  # skipped: no reply at all
                # the next reply may as well be the skipped request's, late: dropped in doubt
                assert (await up())[0] == 0.0
                value, r = await up()
                assert value == 1.0  # recovered within two requests, and for good
                assert samples_of(r.text, "c_total")[0].value == 4.0  # this request's own
                for _ in range(3):
                    assert (await up())[0] == 1.0


async def test_late_reply_is_never_misattributed():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=1.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                       series=[counter("c_total", start=1)]) as agent:
                agent.delay = 1.5  # request 1 answers after its deadline
                r1 = await http_get(proxy.http_url + "/metrics")
                assert samples_of(r1.text, "fodc_agent_up")[0].value == 0.0
                agent.delay = 0.0
                # while request 2 is outstanding, request 1's reply (value 1) arrives late
                r2 = await http_get(proxy.http_url + "/metrics?role=liaison")
                [sample] = samples_of(r2.text, "c_total")
                assert sample.value == 2.0  # request 2's value (start + 1 * requests before it)
                await wait_for(lambda: proxy.proxy.metrics.value("fodc_proxy_dropped_replies_total") >= 1)


async def test_late_reply_of_seed_agent_without_request_ids_is_dropped():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=1.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                       series=[counter("c_total", start=1)]) as agent:
                agent.echo_request_id = False
                r0 = await http_get(proxy.http_url + "/metrics")
                assert samples_of(r0.text, "c_total")[0].value == 1.0  # id 0 matches the outstanding one
                agent.delay = 1.5
                r1 = await http_get(proxy.http_url + "/metrics")
                assert samples_of(r1.text, "fodc_agent_up")[0].value == 0.0
                await wait_for(lambda: proxy.proxy.metrics.value("fodc_proxy_dropped_replies_total") >= 1)
                agent.delay = 0.0
                r2 = await http_get(proxy.http_url + "/metrics")
                assert samples_of(r2.text, "c_total")[0].value == 3.0


async def test_concurrent_scrapes_and_an_agent_dying_mid_reply():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                       series=[static("x", 1)]) as a, \
                    open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                    series=[static("x", 2)]) as b:
                b.delay = 0.2
                bodies = []

                async def scrape():
                    bodies.append(await http_get(proxy.http_url + "/metrics"))

                async with trio.open_nursery() as nursery:
                    for _ in range(10):
                        nursery.start_soon(scrape)
                assert all(r.status == 200 for r in bodies)
                for r in bodies:
                    assert {s.labels["agent_id"]: s.value for s in samples_of(r.text, "x")} == {
                        a.agent_id: 1.0, b.agent_id: 2.0}
                # identical concurrent requests shared fan-outs
                assert proxy.proxy.metrics.value("fodc_proxy_shared_collections_total") >= 1
                # b dies while a reply is being prepared: released at once, not at the deadline
                b.delay = 1.0
                asked = len(b.requests)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(scrape)
                    await wait_for(lambda: len(b.requests) > asked)
                    start = trio.current_time()
                    b.drop()
                r = bodies[-1]
                assert trio.current_time() - start < 1.0
                ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
                assert ups[a.agent_id] == 1.0 and ups[b.agent_id] == 0.0


async def test_metrics_windows_exact_and_open_ended(proxy):
    t0 = 1_800_000_000.0
    points = [(t0 + i, float(i)) for i in range(10)]
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="datanode-warm", ip="127.0.0.1", port=3,
                                   series=[history("disk_used_bytes", points, labels={"disk": "a"},
                                                   help="Disk used"),
                                           history("weird", [(t0, float("inf")), (t0 + 1.5, float("nan"))])]) as agent:
            async def window(query):
                r = await http_get(proxy.http_url + "/metrics-windows" + query)
                assert r.status == 200, r.text
                assert r.headers["x-fodc-agents-asked"] == "1"
                return r.json()

            def ts(i):
                return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0 + i))

            body = await window(f"?start_time={ts(2)}&end_time={ts(5)}")
            disk = next(s for s in body if s["name"] == "disk_used_bytes")
            assert [d["value"] for d in disk["data"]] == [2.0, 3.0, 4.0, 5.0]
            assert [parse_rfc3339(d["timestamp"]) for d in disk["data"]] == [t0 + i for i in range(2, 6)]
            assert disk["type"] == "gauge" and disk["description"] == "Disk used"
            assert disk["agent_id"] == agent.agent_id and disk["ip"] == "127.0.0.1" and disk["port"] == 3
            assert disk["labels"]["disk"] == "a" and disk["labels"]["node_role"] == "datanode-warm"
            body = await window(f"?start_time={ts(8)}")
            disk = next(s for s in body if s["name"] == "disk_used_bytes")
            assert [d["value"] for d in disk["data"]] == [8.0, 9.0]
            latest = await window("")
            disk = next(s for s in latest if s["name"] == "disk_used_bytes")
            assert [d["value"] for d in disk["data"]] == [9.0]
            weird = next(s for s in await window(f"?start_time={ts(0)}") if s["name"] == "weird")
            assert [d["value"] for d in weird["data"]] == ["+Inf", "NaN"]
            assert weird["data"][1]["timestamp"].endswith(":01.5Z")
            assert await window(f"?start_time={ts(100)}") == []


async def test_max_query_window_bounds_open_windows_too():
    """--max-query-window measures an open end to now, and refuses an open start (no limit back);
    with the limit off, end_time alone answers everything before it."""
    def iso(t):
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    now = time.time()
    points = [(now - 7200, 1.0), (now - 60, 2.0)]
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0, max_query_window=3600.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[history("temp", points)]):
            url = proxy.http_url + "/metrics-windows"
            r = await http_get(f"{url}?start_time={iso(now - 7200)}")
            assert r.status == 400, r.text
            assert "to now" in r.json()["error"] and "3600s" in r.json()["error"]
            r = await http_get(f"{url}?end_time={iso(now)}")
            assert r.status == 400, r.text
            assert "end_time without start_time" in r.json()["error"]
            r = await http_get(f"{url}?start_time={iso(now - 600)}")
            assert r.status == 200, r.text
            assert [d["value"] for d in r.json()[0]["data"]] == [2.0]
        async with open_proxy(collect_timeout=2.0, max_query_window=None) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[history("temp", points)]):
            r = await http_get(f"{proxy.http_url}/metrics-windows?end_time={iso(now - 3600)}")
            assert r.status == 200, r.text
            assert [d["value"] for d in r.json()[0]["data"]] == [1.0]


async def test_cluster_and_config(proxy):
    cfg_a = NodeConfig(startup_params={"flush": "1s", "host": "a"}, runtime_config={"cache": {"size": 10}})
    cfg_b = NodeConfig(startup_params={"flush": "5s", "host": "b"}, runtime_config={"cache": {"size": 10}})
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1) as li, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                node_config=cfg_a) as hot1, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=3,
                                node_config=cfg_b) as hot2, \
                open_fake_agent(proxy.grpc_address, role="datanode-cold", ip="127.0.0.1", port=4) as cold:
            cluster = (await http_get(proxy.http_url + "/cluster")).json()
            hot2.drop()
            await wait_for(lambda: proxy.proxy.registry.get(hot2.agent_id).status.value == "unconnected")
            after = (await http_get(proxy.http_url + "/cluster")).json()
            config = (await http_get(proxy.http_url + "/cluster/config")).json()
    assert {n["node_id"] for n in cluster["nodes"]} == {li.agent_id, hot1.agent_id, hot2.agent_id, cold.agent_id}
    node = next(n for n in cluster["nodes"] if n["node_id"] == li.agent_id)
    assert node["node_role"] == "liaison" and node["primary_address"] == {"ip": "127.0.0.1", "port": 1}
    assert node["status"] == "online" and parse_rfc3339(node["last_heartbeat"]) > 0
    assert "registered_at" in node and "labels" in node and "secondary_addresses" in node
    calls = {(c["source"], c["target"]) for c in cluster["calls"]}
    assert (li.agent_id, hot1.agent_id) in calls and (li.agent_id, cold.agent_id) in calls
    assert (hot1.agent_id, cold.agent_id) in calls  # hot hands to the next colder present tier
    assert "updated_at" in cluster
    status = {n["node_id"]: n["status"] for n in after["nodes"]}
    assert status[hot2.agent_id] == "unconnected"  # offline nodes stay listed
    confs = {c["agent_id"]: c for c in config["configurations"]}
    assert confs[hot1.agent_id]["startup_params"]["flush"] == "1s"
    [inc] = [i for i in config["inconsistencies"] if i["key"] == "flush"]
    assert inc["role"] == "datanode-hot"
    assert sorted(v["value"] for v in inc["values"]) == ["1s", "5s"]
    assert not [i for i in config["inconsistencies"] if i["key"] == "host"]  # per-node key
    assert not [i for i in config["inconsistencies"] if "cache" in i["key"]]


async def test_offline_agent_is_reported_down_without_being_asked(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("x", 1)], reconnect_interval=30) as agent:
            agent.drop()
            await wait_for(lambda: proxy.proxy.registry.get(agent.agent_id).status.value == "unconnected")
            r = await http_get(proxy.http_url + "/metrics")
    assert samples_of(r.text, "fodc_agent_up")[0].value == 0.0
    assert r.headers["x-fodc-agents-answered"] == "0"


async def test_health_stays_prompt_while_a_big_scrape_renders(proxy):
    """Rendering yields to the event loop: /health answers while a large body is built and sent."""
    big = [static(f"m{i}", float(i), labels={"a": "1", "b": "2", "c": "3", "d": "4", "e": "5"}) for i in range(5000)]
    with trio.fail_after(30):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1, series=big), \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=2, series=big):
            results = {}

            async def scrape():
                results["metrics"] = await http_get(proxy.http_url + "/metrics")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scrape)
                health = await http_get(proxy.http_url + "/health")
            assert health.status == 200
            assert len(samples_of(results["metrics"].text, "m1")) == 2


async def test_a_sample_over_the_label_limits_refuses_that_reply_only(proxy, caplog):
    from fodcproxy.rpc.replies import MAX_LABEL_LENGTH, MAX_LABELS_PER_SAMPLE

    many = {f"l{i}": "v" for i in range(MAX_LABELS_PER_SAMPLE + 1)}
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("fine", 1)]) as good, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=2,
                                series=[static("fine", 2), static("wide", 1, labels=many)]) as wide:
            r = await http_get(proxy.http_url + "/metrics")
            ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
            assert ups == {good.agent_id: 1.0, wide.agent_id: 0.0}
            assert f"at most {MAX_LABELS_PER_SAMPLE} per sample" in caplog.text
            # the stream survives: once the agent behaves, it answers again
            wide.set_series([static("fine", 2), static("long", 1, labels={"v": "x" * (MAX_LABEL_LENGTH + 1)})])
            r = await http_get(proxy.http_url + "/metrics")
            ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
            assert ups[wide.agent_id] == 0.0
            assert f"at most {MAX_LABEL_LENGTH} are accepted" in caplog.text
            wide.set_series([static("fine", 2)])
            r = await http_get(proxy.http_url + "/metrics")
            ups = {s.labels["agent_id"]: s.value for s in samples_of(r.text, "fodc_agent_up")}
            assert ups == {good.agent_id: 1.0, wide.agent_id: 1.0}
    assert proxy.proxy.metrics.value("fodc_proxy_registration_refusals_total", {"reason": "sample_limit"}) == 2
