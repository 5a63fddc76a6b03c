"""Embedding: start a proxy and fake agents inside the caller's Trio run (no sockets of your own).

    async with open_proxy(collect_timeout=1.0) as proxy:
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="10.0.0.1", port=17912,
                                   series=[static("cpu_usage", 0.5)]) as agent:
            ...  # GET proxy.http_url + "/metrics" shows cpu_usage{agent_id=agent.agent_id, ...}

Misbehaviours: `FakeAgent.delay` (answer slowly), `FakeAgent.hang` (never answer),
`FakeAgent.echo_request_id = False` (an agent built from the seed's proto), `drop()` (lose the
connection without a goodbye), `disconnect()` (graceful goodbye).
"""

from fodcproxy.testing.fake import (
    FakeAgent,
    Series,
    counter,
    histogram,
    history,
    open_fake_agent,
    static,
)
from fodcproxy.testing.harness import ProxyHandle, open_proxy

__all__ = ["FakeAgent", "ProxyHandle", "Series", "counter", "histogram", "history",
           "open_fake_agent", "open_proxy", "static"]
