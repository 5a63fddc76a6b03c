"""A real Prometheus server (Debian's `prometheus` package) scrapes the proxy.

Skipped with a reason when `prometheus` is not installed (`.ci/run` installs it).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import textwrap
import urllib.parse

import pytest
import trio

from fodcproxy.testing import counter, histogram, open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get

pytestmark = [
    pytest.mark.external,
    pytest.mark.skipif(shutil.which("prometheus") is None,
                       reason="Debian's prometheus package is not installed (apt-get install prometheus)"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def promql(base: str, expr: str) -> list:
    r = await http_get(f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


async def wait_promql(base: str, expr: str, predicate=bool):
    while True:
        result = await promql(base, expr)
        if predicate(result):
            return result
        await trio.sleep(0.2)


@pytest.mark.parametrize("mode", ["one-scrape", "http-sd"])
async def test_real_prometheus_scrapes_the_proxy(tmp_path, mode):
    with trio.fail_after(90):
        async with open_proxy(collect_timeout=0.8) as proxy:
            async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=17912,
                                       labels={"zone": "z1"},
                                       series=[counter("banyandb_queries_total", step=5, labels={"group": "g"}),
                                               histogram("banyandb_query_seconds")]) as li, \
                    open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=17913,
                                    series=[static("banyandb_disk_used_bytes", 1e9),
                                            counter("banyandb_queries_total", step=1)]) as hot:
                host_port = proxy.http_url.removeprefix("http://")
                if mode == "one-scrape":
                    scrape = f"""
                      - job_name: fodc
                        scrape_interval: 1s
                        scrape_timeout: 1s
                        honor_labels: true
                        static_configs: [{{targets: ["{host_port}"]}}]
                    """
                else:
                    scrape = f"""
                      - job_name: fodc
                        scrape_interval: 1s
                        scrape_timeout: 1s
                        honor_labels: true
                        http_sd_configs: [{{url: "{proxy.http_url}/sd", refresh_interval: 1s}}]
                        relabel_configs:
                          - source_labels: [__meta_fodc_agent_id]
                            target_label: instance
                    """
                config = tmp_path / "prometheus.yml"
                config.write_text("global: {evaluation_interval: 1s}\nscrape_configs:\n" + textwrap.dedent(scrape))
                port = free_port()
                proc = await trio.lowlevel.open_process(
                    ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                     f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                base = f"http://127.0.0.1:{port}"
                try:
                    while True:  # wait for the server to answer
                        try:
                            if (await http_get(base + "/-/ready", timeout=2)).status == 200:
                                break
                        except OSError:
                            pass
                        await trio.sleep(0.2)
                    want_up = 1 if mode == "one-scrape" else 2
                    up = await wait_promql(base, 'up{job="fodc"}',
                                           lambda r: len(r) == want_up and all(x["value"][1] == "1" for x in r))
                    assert len(up) == want_up
                    series = await wait_promql(base, "banyandb_queries_total", lambda r: len(r) == 2)
                    by_agent = {s["metric"]["agent_id"]: s["metric"] for s in series}
                    assert set(by_agent) == {li.agent_id, hot.agent_id}
                    assert by_agent[li.agent_id]["node_role"] == "liaison"
                    assert by_agent[li.agent_id]["node_zone"] == "z1"
                    assert by_agent[li.agent_id]["group"] == "g"
                    agent_up = await wait_promql(base, "fodc_agent_up", lambda r: len(r) == 2)
                    assert {x["value"][1] for x in agent_up} == {"1"}
                    # counters are counters: rate() over a few scrapes is positive
                    rates = await wait_promql(
                        base, f'rate(banyandb_queries_total{{agent_id="{li.agent_id}"}}[5s])',
                        lambda r: r and float(r[0]["value"][1]) > 0)
                    assert float(rates[0]["value"][1]) > 0
                    buckets = await wait_promql(base, "banyandb_query_seconds_bucket", lambda r: len(r) == 3)
                    assert {b["metric"]["le"] for b in buckets} == {"0.1", "1.0", "+Inf"}
                    # Prometheus asks for OpenMetrics, where the counter family is "banyandb_queries"
                    meta = (await http_get(base + "/api/v1/targets/metadata")).json()["data"]
                    types = {m["metric"]: m["type"] for m in meta}
                    assert types["banyandb_queries"] == "counter"
                    assert types["banyandb_query_seconds"] == "histogram"
                    assert types["banyandb_disk_used_bytes"] == "gauge"
                finally:
                    proc.terminate()
                    with trio.move_on_after(10):
                        await proc.wait()
                    if proc.returncode is None:
                        proc.kill()
                        await proc.wait()


async def test_sd_shape_and_per_agent_metrics(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   labels={"zone": "a"}, series=[static("x", 1)]) as a, \
                open_fake_agent(proxy.grpc_address, role="datanode-cold", ip="127.0.0.1", port=2,
                                series=[static("x", 2)]) as b:
            groups = (await http_get(proxy.http_url + "/sd")).json()
            one = await http_get(proxy.http_url + f"/metrics?agent_id={b.agent_id}")
    by_id = {g["labels"]["__meta_fodc_agent_id"]: g for g in groups}
    assert set(by_id) == {a.agent_id, b.agent_id}
    ga = by_id[a.agent_id]
    assert ga["targets"] == [proxy.http_url.removeprefix("http://")]
    assert ga["labels"]["__param_agent_id"] == a.agent_id
    assert ga["labels"]["__meta_fodc_node_role"] == "liaison"
    assert ga["labels"]["__meta_fodc_node_label_zone"] == "a"
    assert f'agent_id="{b.agent_id}"' in one.text and f'agent_id="{a.agent_id}"' not in one.text
