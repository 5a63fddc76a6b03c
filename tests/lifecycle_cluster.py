"""A small cluster of fake pod agents answering the lifecycle streams, for the lifecycle tests
(imported as `lifecycle_cluster`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.lifecycle import LifecycleReportStream, RegistryStream
from fodcproxy.testing import open_fake_agent, open_proxy
from fodcproxy.testing.http import http_get
from fodcproxy.testing.lifecycle import FakeLifecycle, FakeRegistry, SchemaWorld
from helpers import wait_for

LIAISON = "banyandb-liaison-0"
DATA0, DATA1 = "banyandb-data-hot-0", "banyandb-data-hot-1"


class Cluster:
    def __init__(self, proxy, world: SchemaWorld) -> None:
        self.proxy = proxy
        self.world = world
        self.lifecycle: dict[str, FakeLifecycle] = {}
        self.registry: dict[str, FakeRegistry] = {}
        self.agents: dict[str, object] = {}

    @property
    def hub(self):
        return self.proxy.proxy.hub

    async def get(self, query: str = "") -> tuple[int, Any, dict]:
        r = await http_get(self.proxy.http_url + "/cluster/lifecycle" + query, timeout=30)
        return r.status, r.headers, json.loads(r.body)

    async def metrics(self, query: str = "") -> str:
        r = await http_get(self.proxy.http_url + "/metrics" + query)
        assert r.status == 200
        return r.body.decode()


@asynccontextmanager
async def cluster(world: SchemaWorld | None = None, *,
                  nodes: tuple[str, ...] = (LIAISON, DATA0, DATA1), unasked: bool = False,
                  **proxy_options: Any) -> AsyncIterator[Cluster]:
    """Fake agents of `nodes` (a liaison when `world.liaisons` names it) on a proxy started with
    `proxy_options`; `unasked`: their services send an unasked message as their streams open."""
    world = world or SchemaWorld.sample()
    proxy_options.setdefault("lifecycle_timeout", 2.0)
    async with open_proxy(heartbeat_interval=1.0, **proxy_options) as proxy, \
            AsyncExitStack() as stack:
        c = Cluster(proxy, world)
        for node in nodes:
            liaison = node in world.liaisons
            c.lifecycle[node] = FakeLifecycle(world, node)
            c.registry[node] = FakeRegistry(world, chunk_size=2)
            c.lifecycle[node].unasked = c.registry[node].unasked = unasked
            agent = await stack.enter_async_context(open_fake_agent(
                proxy.grpc_address, role="ROLE_LIAISON" if liaison else "ROLE_DATA",
                labels=None if liaison else {"type": "hot"}, pod_name=node,
                container_names=["liaison" if liaison else "data"],
                services=[c.lifecycle[node], c.registry[node]]))
            c.agents[node] = agent
            session = lambda a=agent: c.hub.sessions.get(a.agent_id)  # noqa: E731
            await wait_for(lambda s=session: s() is not None
                           and s().stream(LifecycleReportStream) is not None
                           and s().stream(RegistryStream) is not None)
        yield c


def statuses(doc: dict) -> dict[str, str]:
    return {g["name"]: (g["schema_consistency"] or {}).get("status") for g in doc["groups"]}


def gauge(text: str, name: str) -> dict[tuple, float]:
    return {tuple(sorted(s.labels.items())): s.value
            for f in text_string_to_metric_families(text) for s in f.samples if s.name == name}
