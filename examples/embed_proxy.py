"""Embed the proxy in your own Trio program: start it, register a fake agent, print /metrics.

Try:  python examples/embed_proxy.py
It starts a proxy on 127.0.0.1 (ports picked by the OS) inside this program's `trio.run`, connects
one fake agent, prints the proxy's /metrics and exits. Change the series below, add agents, or pass
proxy settings to `open_proxy(...)` (e.g. `collect_timeout=1.0`) and run it again.

`open_proxy()` owns its nursery and stops the proxy in order when the block ends. To run a proxy in
a nursery of your own instead, `addresses = await nursery.start(serve_proxy, config)`
(`fodcproxy.proxy.serve_proxy`): it serves until that nursery is cancelled.
"""

import trio

from fodcproxy.testing import counter, histogram, open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get


async def main() -> None:
    async with open_proxy(collect_timeout=2.0) as proxy:
        print(f"proxy: agents dial {proxy.grpc_address}, HTTP at {proxy.http_url}")
        series = [
            static("banyandb_system_cpu_usage_ratio", 0.42, help="CPU used, as a ratio of one core."),
            counter("banyandb_measure_total_written", start=1000, step=250, labels={"group": "sw_metric"},
                    help="Data points written."),
            histogram("banyandb_measure_query_latency_seconds", buckets=(0.01, 0.1, 1.0),
                      help="Query latency, in seconds."),
        ]
        async with open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="10.0.0.2",
                                   port=17912, labels={"zone": "a"}, series=series) as agent:
            print(f"agent registered as {agent.agent_id}\n")
            response = await http_get(proxy.http_url + "/metrics")
            # The proxy's own fodc_proxy_* metrics follow the agents' samples; left out here.
            print("\n".join(line for line in response.text.splitlines() if "fodc_proxy_" not in line))
        # Leaving the blocks: the agent says goodbye, then the proxy stops (HTTP, agents, tasks).


if __name__ == "__main__":
    trio.run(main)
