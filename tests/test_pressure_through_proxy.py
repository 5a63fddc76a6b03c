"""Issue 14 end to end, every part real: a process (tests/pressure_node.py) grows its RSS past the
trigger; our agent program (`python -m fodcproxy agent`, a subprocess) captures its heap and
goroutine profiles; our proxy lists the capture on `GET /pressure-profiles` and streams it on
`GET /pressure-profiles/{pod_name}/{profile_id}/{type}` byte-exact; the gauge counts it.
`--pressure-profiler-limit-bytes` stands in for the cgroup limit.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get, http_request
from helpers import wait_for
from pressure_node import profile_body
from test_pressure_e2e import HEAP_BYTES, MIB, NODE, first_line, node_rss, running

pytestmark = pytest.mark.slow


async def test_a_capture_is_listed_and_downloaded_byte_exact_through_the_proxy(tmp_path) -> None:
    profiles = tmp_path / "profiles"
    with trio.fail_after(90):
        async with open_proxy(heartbeat_interval=1.0, diagnostics_refresh_interval=0.5) as proxy, \
                running([sys.executable, NODE, "--heap-bytes", str(HEAP_BYTES)],
                        stdout=subprocess.PIPE) as node:
            node_url = f"http://127.0.0.1:{await first_line(node)}"
            limit = (await node_rss(node_url) + 40 * MIB) * 4 // 3  # trigger 40 MiB above now
            argv = [sys.executable, "-m", "fodcproxy", "agent",
                    "--proxy-addr", proxy.grpc_address, "--pod-name", "node-0",
                    "--node-role", "ROLE_DATA", "--metrics-endpoint", f"{node_url}/metrics",
                    "--poll-metrics-interval", "200ms",
                    "--pressure-profiler-pprof-url", node_url,
                    "--pressure-profiler-limit-bytes", str(limit),
                    "--pressure-profiler-dir", str(profiles),
                    "--pressure-profiler-cooldown", "1h"]
            async with running(argv, stderr=subprocess.DEVNULL):
                await wait_for(lambda: any(e.meta.pod_name == "node-0"
                                           for e in proxy.proxy.registry), step=0.05)
                listing = await http_get(proxy.http_url + "/pressure-profiles?pod_name=node-0")
                assert listing.status == 200 and listing.json() == []
                await http_request("POST", node_url + "/grow?mb=80")

                async def listed() -> list:
                    while True:
                        records = (await http_get(proxy.http_url + "/pressure-profiles")).json()
                        if records:
                            return records
                        await trio.sleep(0.2)

                [record] = await listed()
                assert record["pod_name"] == "node-0" and record["role"] == "ROLE_DATA"
                assert record["cgroup_limit_bytes"] == limit and record["trigger_percent"] == 75
                assert [p["type"] for p in record["profiles"]] == ["heap", "goroutine"]
                for kind, size in (("heap", HEAP_BYTES), ("goroutine", 4096)):
                    got = await http_get(
                        f"{proxy.http_url}/pressure-profiles/node-0/{record['profile_id']}/{kind}")
                    assert got.status == 200
                    assert got.headers["content-type"] == "application/octet-stream"
                    assert (f"node-0-ROLE_DATA-{record['profile_id']}-{kind}.pprof"
                            in got.headers["content-disposition"])
                    assert got.body == profile_body(kind, size)  # byte-exact, through the proxy

                async def counted() -> None:
                    while True:
                        text = (await http_get(proxy.http_url + "/metrics")).text
                        for family in text_string_to_metric_families(text):
                            for s in family.samples:
                                if s.name == "fodc_agent_pressure_profiles" \
                                        and s.labels.get("pod_name") == "node-0" and s.value == 1:
                                    return
                        await trio.sleep(0.2)

                await counted()  # the gauge an alert fires on
