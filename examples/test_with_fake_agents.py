"""A proxy and three fake agents of different roles, with an assertion on /metrics.

Try:  python -m pytest examples/test_with_fake_agents.py -p fodcproxy.testing.pytest_plugin
(the plugin is also registered by entry point: with fodcproxy installed, `-p` is optional).
Then change a series, add a fourth agent, or set `fodc_proxy_settings` to shorten the timeouts.
"""

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.testing import counter, static
from fodcproxy.testing.http import http_get


@pytest.fixture
def fodc_proxy_settings():
    return {"collect_timeout": 2.0}  # ProxyConfig overrides for the fodc_proxy fixture


@pytest.mark.trio
async def test_three_roles_on_metrics(fodc_proxy, fodc_fake_agent):
    with trio.fail_after(10):
        for role in ("liaison", "datanode-hot", "datanode-cold"):
            await fodc_fake_agent(role=role, series=[static("banyandb_up", 1), counter("writes_total")])
        body = (await http_get(fodc_proxy.http_url + "/metrics")).text
        up = next(f for f in text_string_to_metric_families(body) if f.name == "banyandb_up")
        by_role = {s.labels["node_role"]: s.value for s in up.samples}
        assert by_role == {"liaison": 1, "datanode-hot": 1, "datanode-cold": 1}
