"""Today's BanyanDB agents on our proxy: an independent grpcio client compiled from upstream's
own proto (`tests/upstream_agent.py`) behaves as upstream's agent does — one connection, seven
streams in upstream's order, heartbeats resending the full request, replies with no request id,
a skipped request, a role upgrade — beside an address agent built from our proto, on one proxy.

Each test runs the grpcio agent in a thread and bounds itself with `trio.fail_after`; waits poll
a condition, never sleep for a fixed time.
"""

from __future__ import annotations

import importlib
import threading

import grpc
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.testing import open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get
from helpers import wait_for
from upstream_agent import STREAMS, UPSTREAM, UpstreamLikeAgent, compile_upstream

pytestmark = pytest.mark.skipif(not UPSTREAM.exists(),
                                reason="upstream's proto (../shared/upstream) is not beside the checkout")


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    return compile_upstream(tmp_path_factory.mktemp("upstream"))


class Running:
    """An UpstreamLikeAgent in a thread for the duration of an `async with`."""

    def __init__(self, agent: UpstreamLikeAgent) -> None:
        self.agent = agent
        self.thread = threading.Thread(target=agent.run, daemon=True)

    async def __aenter__(self) -> UpstreamLikeAgent:
        self.thread.start()
        await wait_for(self.agent.opened.is_set)
        return self.agent

    async def __aexit__(self, *exc) -> None:
        self.agent.stop()
        await trio.to_thread.run_sync(self.thread.join, 10)


def samples(text: str, name: str) -> list:
    return [s for f in text_string_to_metric_families(text) for s in f.samples if s.name == name]


async def test_upstream_agent_registers_holds_seven_streams_and_is_scraped(up):
    with trio.fail_after(30):
        async with open_proxy(heartbeat_interval=1.0) as proxy, \
                Running(UpstreamLikeAgent(proxy.grpc_address, up, pod_name="banyandb-data-hot-0",
                                          heartbeat=0.05)) as agent:
            session = proxy.proxy.hub.sessions[agent.agent_id]
            await wait_for(lambda: len(session.streams) == len(STREAMS))
            assert agent.agent_id.startswith("pod-")
            entry = proxy.proxy.registry.get(agent.agent_id)
            assert entry.role == "ROLE_UNSPECIFIED"
            # Upstream's agents register as unspecified and say their role in later heartbeats.
            agent.upgrade("ROLE_DATA", {"type": "hot"})
            await wait_for(lambda: entry.role == "ROLE_DATA")
            node = (await http_get(proxy.http_url + "/cluster")).json()["nodes"][0]
            assert (node["node_role"], node["pod_name"], node["labels"]) == (
                "ROLE_DATA", "banyandb-data-hot-0", {"type": "hot"})
            for i in range(3):  # scrapes of an agent whose replies carry no request id
                body = (await http_get(proxy.http_url + "/metrics")).text
                [up_sample] = samples(body, "fodc_agent_up")
                assert up_sample.value == 1.0 and up_sample.labels["pod_name"] == "banyandb-data-hot-0"
                [value] = samples(body, "banyandb_system_up_time")
                assert value.value == float(i + 1)  # the reply to this very request
            # a role filter in either naming selects it
            for role in ("ROLE_DATA", "datanode-hot"):
                body = (await http_get(proxy.http_url + f"/metrics?role={role}")).text
                assert samples(body, "banyandb_system_up_time")
            assert not agent.ended  # no stream ended: the agent never had to start over
            assert proxy.proxy.hub.sessions[agent.agent_id] is session


async def test_an_id_less_agent_that_skips_a_request_recovers(up):
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=0.5) as proxy, \
                Running(UpstreamLikeAgent(proxy.grpc_address, up, pod_name="banyandb-liaison-0",
                                          role="ROLE_LIAISON", streams=("StreamMetrics",))) as agent:
            async def up_value() -> float:
                body = (await http_get(proxy.http_url + "/metrics")).text
                return samples(body, "fodc_agent_up")[0].value

            assert await up_value() == 1.0
            agent.skip_next()
            assert await up_value() == 0.0  # the skipped request: up 0, nothing misattributed
            ups = [await up_value() for _ in range(3)]
            assert ups[1:] == [1.0, 1.0], ups  # recovered within two requests
            assert not agent.ended


async def test_pod_and_address_agents_on_one_proxy(up):
    with trio.fail_after(30):
        async with open_proxy() as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=17912,
                                series=[static("address_agent_series", 1.0)]), \
                Running(UpstreamLikeAgent(proxy.grpc_address, up, pod_name="banyandb-data-warm-0",
                                          role="ROLE_DATA", labels={"type": "warm"})):
            body = (await http_get(proxy.http_url + "/metrics")).text
            ups = {s.labels["agent_id"]: s.value for s in samples(body, "fodc_agent_up")}
            assert len(ups) == 2 and set(ups.values()) == {1.0}
            assert samples(body, "address_agent_series") and samples(body, "banyandb_system_up_time")
            cluster = (await http_get(proxy.http_url + "/cluster")).json()
            # the liaison (address agent) calls the pod agent's data node
            assert [c["kind"] for c in cluster["calls"]] == ["query"]
            pods = (await http_get(proxy.http_url + "/metrics?pod_name=banyandb-data-warm-0")).text
            assert len(samples(pods, "fodc_agent_up")) == 1
            sd = (await http_get(proxy.http_url + "/sd")).json()
            assert sorted("__meta_fodc_pod_name" in g["labels"] for g in sd) == [False, True]


async def test_cluster_topology_merges_what_pod_agents_report(up):
    database = importlib.import_module("upstreamcopy.banyandb.database.v1.database_pb2")
    common = importlib.import_module("upstreamcopy.banyandb.common.v1.common_pb2")

    def topology(m, names, calls):
        return m.Topology(
            nodes=[database.Node(
                metadata=common.Metadata(name=n),
                roles=[2], grpc_address=f"{n}:17912", labels={"pod_name": n})
                for n in names],
            calls=[m.Call(id=f"{s}->{t}", source=s, target=t) for s, t in calls])

    with trio.fail_after(30):
        async with open_proxy() as proxy:
            a = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0", role="ROLE_DATA",
                                  topology=topology(up, ["data-0", "data-1"], [("liaison-0", "data-0")]))
            b = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-1", role="ROLE_DATA",
                                  topology=topology(up, ["data-1", "ghost"],
                                                    [("liaison-0", "data-0"), ("liaison-0", "data-1")]))
            async with Running(a), Running(b):
                for ag in (a, b):
                    s = proxy.proxy.hub.sessions[ag.agent_id]
                    await wait_for(lambda s=s: len(s.streams) == len(STREAMS))
                response = await http_get(proxy.http_url + "/cluster/topology")
                doc = response.json()
                assert response.headers["x-fodc-agents-asked"] == "2"
                assert [n["metadata"]["name"] for n in doc["nodes"]] == ["data-0", "data-1", "ghost"]
                assert [c["id"] for c in doc["calls"]] == ["liaison-0->data-0", "liaison-0->data-1"]
                by_name = {n["metadata"]["name"]: n for n in doc["nodes"]}
                assert by_name["data-0"]["roles"] == ["ROLE_DATA"]
                assert by_name["data-0"]["grpc_address"] == "data-0:17912"
                assert by_name["data-0"]["status"] == "online" and "last_heartbeat" in by_name["data-0"]
                assert "status" not in by_name["ghost"]  # no agent of that pod
                only = (await http_get(proxy.http_url + "/cluster/topology?pod_name=data-0")).json()
                assert [n["metadata"]["name"] for n in only["nodes"]] == ["data-0", "data-1"]
                assert a.topology_requests >= 2 and b.topology_requests == 1
                bad = await http_get(proxy.http_url + "/cluster/topology?pods=x")
                assert bad.status == 400 and "pods" in bad.json()["error"]


async def test_a_heartbeat_with_another_pod_name_ends_the_registration(up):
    with trio.fail_after(30):
        async with open_proxy() as proxy:
            agent = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0",
                                      streams=("StreamMetrics",), heartbeat=0.05)
            async with Running(agent):
                agent.pod_name = "data-9"  # later heartbeats name another pod
                await wait_for(lambda: any(name == "RegisterAgent" for name, _ in agent.ended))
                [(_, code)] = [e for e in agent.ended if e[0] == "RegisterAgent"]
                assert code == grpc.StatusCode.FAILED_PRECONDITION


async def test_two_connections_claiming_one_pod_take_over(up):
    with trio.fail_after(30):
        async with open_proxy() as proxy:
            first = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0")
            async with Running(first):
                second = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0")
                async with Running(second):
                    assert second.agent_id == first.agent_id
                    await wait_for(lambda: len(first.ended) == 1 + len(STREAMS))
                    assert {code for _, code in first.ended} == {grpc.StatusCode.ABORTED}
                    session = proxy.proxy.hub.sessions[second.agent_id]
                    await wait_for(lambda: len(session.streams) == len(STREAMS))
                    assert not second.ended
                    assert proxy.proxy.grpc.statistics().connection_errors == 0


async def test_a_pod_agents_stream_from_another_connection_is_refused(up):
    with trio.fail_after(30):
        async with open_proxy() as proxy:
            async with Running(UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0",
                                                 streams=("StreamMetrics",))) as agent:
                done = threading.Event()

                def nothing():  # an open stream that sends nothing, as upstream's agent does
                    done.wait(10)
                    yield from ()

                def hijack() -> grpc.StatusCode:
                    # Its own connection: grpcio would otherwise share the agent's.
                    options = [("grpc.use_local_subchannel_pool", 1)]
                    with grpc.insecure_channel(proxy.grpc_address, options=options) as channel:
                        call = channel.stream_stream(
                            "/banyandb.fodc.v1.FODCService/StreamClusterTopology",
                            request_serializer=up.StreamClusterTopologyRequest.SerializeToString,
                            response_deserializer=up.StreamClusterTopologyResponse.FromString)
                        try:
                            for _ in call(nothing(), metadata=(("agent_id", agent.agent_id),)):
                                pass
                        except grpc.RpcError as exc:
                            return exc.code()
                        finally:
                            done.set()
                    return grpc.StatusCode.OK

                assert await trio.to_thread.run_sync(hijack) == grpc.StatusCode.PERMISSION_DENIED
                assert not agent.ended


async def test_topology_hostile_cases(up):
    """Unasked, never answered and undecodable topology messages: each costs only its own
    stream or its own request; the endpoint answers within its deadline."""
    unasked = up.StreamClusterTopologyRequest(topology=up.Topology(
        calls=[up.Call(id="stale", source="a", target="b")])).SerializeToString()
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=0.5) as proxy:
            early = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="early-0", unasked=unasked,
                                      topology=up.Topology(calls=[up.Call(id="fresh")]))
            silent = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="silent-0",
                                       answer_topology=False)
            garbage = UpstreamLikeAgent(proxy.grpc_address, up, pod_name="garbage-0",
                                        unasked=b"\xff\xff\xff")
            async with Running(early), Running(silent), Running(garbage):
                for ag in (early, silent):
                    s = proxy.proxy.hub.sessions[ag.agent_id]
                    await wait_for(lambda s=s: len(s.streams) == len(STREAMS))
                # The undecodable message ends that agent's topology stream only.
                await wait_for(lambda: ("StreamClusterTopology", grpc.StatusCode.INVALID_ARGUMENT)
                            in garbage.ended)
                assert [e for e in garbage.ended if e[0] != "StreamClusterTopology"] == []
                start = trio.current_time()
                response = await http_get(proxy.http_url + "/cluster/topology")
                assert trio.current_time() - start < 5  # the silent agent is not waited for
                assert response.headers["x-fodc-agents-asked"] == "2"
                assert response.headers["x-fodc-agents-missed"] == silent.agent_id
                # The unasked report was dropped, never taken for the answer to a request.
                assert [c["id"] for c in response.json()["calls"]] == ["fresh"]
                assert not early.ended and not silent.ended
