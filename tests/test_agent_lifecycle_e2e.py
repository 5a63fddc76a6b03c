"""The real agent (`fodcproxy.agent.main.Agent`) opens StreamLifecycle and StreamSchemaRegistry
after registering, with its agent_id, and answers them from a fake node; what it sends decodes
with upstream BanyanDB's own proto (tests/upstream_agent.py `compile_upstream`).

The proxy here is a test-side GrpcServer with just enough of the FODC service (RegisterAgent,
StreamMetrics held open, and the two streams driven by the test), so this does not depend on the
proxy's handlers of these streams."""

from __future__ import annotations

from typing import Any

import pytest
import trio
from google.protobuf import json_format

from fodcproxy.agent.config import AgentConfig
from fodcproxy.agent.main import Agent
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import (
    REGISTER,
    STREAM_LIFECYCLE,
    STREAM_METRICS,
    STREAM_SCHEMA_REGISTRY,
)
from fodcproxy.rpc.server import Method, ServerCall

from lifecycle_fakes import ProxySide, open_fake_node, serve
from test_agent_lifecycle import cluster_node
from upstream_agent import UPSTREAM, compile_upstream


class MiniProxy:
    """RegisterAgent (one agent, agent_id "liaison-0"), StreamMetrics held, and the lifecycle
    streams, each call's agent_id metadata recorded."""

    def __init__(self) -> None:
        self.registration: Any = None
        self.lifecycle = ProxySide()
        self.registry = ProxySide()
        self.agent_ids: dict[str, str] = {}
        self.registered = trio.Event()

    def methods(self) -> dict[str, Method]:
        async def register(call: ServerCall) -> None:
            while (msg := await call.receive()) is not None:
                self.registration = msg
                await call.send(pb.RegisterAgentResponse(success=True, agent_id="liaison-0",
                                                         heartbeat_interval_seconds=10))
                self.registered.set()

        async def hold(call: ServerCall) -> None:
            self.agent_ids[call.method] = call.metadata.get("agent_id", "")
            while await call.receive() is not None:
                pass

        def routed(side: ProxySide, method: str) -> Method:
            inner = side.methods()[method]

            async def handler(call: ServerCall) -> None:
                self.agent_ids[call.method] = call.metadata.get("agent_id", "")
                await inner.handler(call)
            return Method(inner.request_type, handler)

        return {REGISTER: Method(pb.RegisterAgentRequest, register),
                STREAM_METRICS: Method(pb.StreamMetricsRequest, hold),
                STREAM_LIFECYCLE: routed(self.lifecycle, STREAM_LIFECYCLE),
                STREAM_SCHEMA_REGISTRY: routed(self.registry, STREAM_SCHEMA_REGISTRY)}


async def _free_port() -> int:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


@pytest.fixture(scope="module")
def upstream_pb(tmp_path_factory):
    if not UPSTREAM.exists():
        pytest.skip("upstream's proto (../shared/upstream) is not beside the checkout")
    return compile_upstream(tmp_path_factory.mktemp("upstream-lifecycle"))


async def test_the_agent_answers_both_streams_and_upstream_s_proto_decodes_them(tmp_path,
                                                                                 upstream_pb):
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "2026-11-29.json").write_text('{"phase": "done"}')
    proxy = MiniProxy()
    with trio.fail_after(30):
        async with open_fake_node(cluster_node()) as node_port, serve(proxy.methods()) as port:
            config = AgentConfig(node_role="ROLE_LIAISON", pod_name="liaison-0",
                                 proxy_host="127.0.0.1", proxy_port=port,
                                 metrics_endpoints=(f"http://127.0.0.1:{await _free_port()}/m",),
                                 lifecycle_port=node_port, schema_registry_port=node_port,
                                 lifecycle_report_dir=str(reports), lifecycle_cache_ttl=0)
            async with trio.open_nursery() as nursery:
                agent: Agent = await nursery.start(Agent(config).run)
                await proxy.lifecycle.connected.wait()
                await proxy.registry.connected.wait()
                lifecycle = await proxy.lifecycle.ask_lifecycle()
                registry = await proxy.registry.ask_registry()
                agent.stop()
    assert set(proxy.agent_ids.values()) == {"liaison-0"}  # every stream carries the agent_id
    assert lifecycle.pod_name == "liaison-0"
    assert [r.filename for r in lifecycle.lifecycle_data.reports] == ["2026-11-29.json"]
    assert [g.name for g in lifecycle.lifecycle_data.groups] == ["sw", "sm"]
    assert registry[-1].done and [m.group.group for m in registry[:-1]] == ["sw", "sm"]

    # Upstream's messages read ours field for field: re-encoded, the bytes are the same (nothing
    # unknown to upstream), and the JSON names and values are the same.
    for ours, up_type in [(lifecycle, upstream_pb.StreamLifecycleRequest),
                          *[(m, upstream_pb.StreamSchemaRegistryRequest) for m in registry]]:
        wire = ours.SerializeToString(deterministic=True)
        theirs = up_type.FromString(wire)
        assert theirs.SerializeToString(deterministic=True) == wire
        assert json_format.MessageToDict(theirs, preserving_proto_field_name=True) == \
            json_format.MessageToDict(ours, preserving_proto_field_name=True)
    theirs = upstream_pb.StreamLifecycleRequest.FromString(lifecycle.SerializeToString())
    s1 = [o for o in theirs.lifecycle_data.groups[0].schema_consistency.objects
          if o.name == "s1"][0]
    assert s1.node_fingerprints[0].cache_fingerprint == \
        [o.fingerprint for m in registry[:-1] for o in m.group.objects if o.name == "s1"][0]
