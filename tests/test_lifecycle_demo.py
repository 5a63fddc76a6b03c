"""`python -m fodcproxy demo` shows an inconsistent group at once (issue 16), run in-process."""

from __future__ import annotations

import re

import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.config import ProxyConfig
from fodcproxy.testing.demo import Demo
from fodcproxy.testing.http import http_get
from helpers import wait_for


async def test_demo_shows_sw_stream_inconsistent_on_the_first_look():
    lines: list[str] = []
    config = ProxyConfig(grpc_host="127.0.0.1", grpc_port=0, http_host="127.0.0.1", http_port=0)
    demo = Demo(config, out=lines.append)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(demo.run)
            await wait_for(lambda: lines)
            url = re.search(r"(http://\S+/cluster/lifecycle)\s", lines[0]).group(1)
            doc = (await http_get(url)).json()
            status = {g["name"]: g["schema_consistency"]["status"] for g in doc["groups"]}
            assert status == {"sw_metric": "CONSISTENCY_STATUS_CONSISTENT",
                              "sw_property": "CONSISTENCY_STATUS_CONSISTENT",
                              "sw_stream": "CONSISTENCY_STATUS_INCONSISTENT"}
            (issue,) = next(g for g in doc["groups"]
                            if g["name"] == "sw_stream")["schema_consistency"]["issues"]
            assert issue == {"kind": "stream", "name": "segment", "node": "banyandb-data-cold-0",
                             "type": "SCHEMA_ISSUE_TYPE_CACHE_STALE"}
            assert doc["agent_summary"] == {"total": 6, "requested": 3, "responded": 3,
                                            "not_responded": 0}
            metrics = (await http_get(url.replace("/cluster/lifecycle", "/metrics"))).text
            values = {s.labels["group"]: s.value for f in text_string_to_metric_families(metrics)
                      for s in f.samples if s.name == "banyandb_fodc_schema_consistency_status"}
            assert values == {"sw_metric": 1.0, "sw_property": 1.0, "sw_stream": 2.0}
            demo.stop()
