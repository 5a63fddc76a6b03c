"""Replies are not trusted (issue 15), end to end: a real proxy, fake agents that misbehave.

Test policy: each case is one thing an agent can send that the proxy must not pass on as it came:
several points of one series for a "latest" request, points outside the requested window, and
families that disagree with another agent's. Unit-level cases are in `test_series.py`,
`test_replies.py` and `test_exposition.py`; here each is checked once through gRPC and HTTP. Every
test runs under `trio.fail_after`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import time
from typing import Any

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fodcproxy.core.model import MetricType, TimeWindow
from fodcproxy.core.windows import rfc3339
from fodcproxy.rpc import convert
from fodcproxy.rpc.convert import pb
from fodcproxy.testing import Series, histogram, open_fake_agent, static
from fodcproxy.testing.http import http_get

T0 = float(int(time.time()) - 600)


def three_points(name: str = "queue_depth") -> Series:
    """Whatever the request: three points of one series, values 1, 2, 3 in time order."""
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        out = []
        for value in (1.0, 2.0, 3.0):
            m = pb.Metric(name=name, labels={"queue": "q1"}, value=value, description="Depth.",
                          type=int(MetricType.GAUGE))
            m.timestamp.CopyFrom(convert.ts_to_proto(T0 + 10 * value))
            out.append(m)
        return out
    return Series(name, produce)


def values_of(text: str, name: str) -> list[float]:
    return [s.value for f in parse_text(text) for s in f.samples if s.name == name]


async def test_latest_and_windows_show_only_what_was_asked_for(proxy: Any) -> None:
    with trio.fail_after(15):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[three_points()]):
            r = await http_get(proxy.http_url + "/metrics")
            assert r.status == 200
            assert values_of(r.text, "queue_depth") == [3.0]  # the newest, not the first

            r = await http_get(proxy.http_url + "/metrics-windows")
            [series] = r.json()
            assert series["data"] == [{"timestamp": rfc3339(T0 + 30), "value": 3.0}]

            query = f"?start_time={rfc3339(T0 + 15)}&end_time={rfc3339(T0 + 25)}"
            r = await http_get(proxy.http_url + "/metrics-windows" + query)
            [series] = r.json()
            assert series["data"] == [{"timestamp": rfc3339(T0 + 20), "value": 2.0}]


def gauge_named(name: str) -> Series:
    return static(name, 5.0, help="Not what the other agent says.")


async def test_conflicting_families_first_wins_warned_once_and_counted(
        proxy: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="fodcproxy.proxy")
    first = [static("x", 1.0, type=MetricType.COUNTER, help="A counter."),
             histogram("h", help="A histogram.")]
    second = [gauge_named("x"), gauge_named("h_bucket")]
    with trio.fail_after(15):
        # Agents are ordered by role, so the datanode's families come first.
        async with open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1",
                                   port=1, series=first) as a, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=2,
                                series=second):
            bodies = [(await http_get(proxy.http_url + "/metrics")).text for _ in range(3)]
    fams = {f.name: f for f in parse_text(bodies[-1])}
    assert fams["x"].type == "counter"
    assert [s.labels["agent_id"] for s in fams["x"].samples] == [a.agent_id]
    assert fams["h"].type == "histogram" and "h_bucket" not in fams
    assert {s.labels["agent_id"] for s in fams["h"].samples} == {a.agent_id}
    # Counted at every render (two families per body; the tail is rendered before the body).
    [conflicts] = [s.value for s in fams["fodc_proxy_family_conflicts"].samples
                   if s.name == "fodc_proxy_family_conflicts_total"]
    assert conflicts == 4.0
    warnings = [r.getMessage() for r in caplog.records if "are dropped" in r.getMessage()]
    assert len(warnings) == 2, warnings  # once per family, not once per scrape
    assert any("'h_bucket'" in w and "histogram family 'h'" in w for w in warnings)
    if shutil.which("promtool"):
        result = subprocess.run(["promtool", "check", "metrics"], input=bodies[-1],
                                capture_output=True, text=True, timeout=120, check=False)
        # Exit 3 is promtool's lint (e.g. a counter without _total), never a parse error (1).
        assert result.returncode in (0, 3), result.stdout + result.stderr
        assert "error while linting" not in result.stdout + result.stderr
