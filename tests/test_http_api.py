"""HTTP API behaviour of issue 15 over real sockets: node filters, /cluster/config, /health,
OPTIONS, content negotiation, /sd, manual removal and /status, each with its hostile cases.

Test policy: a real proxy on 127.0.0.1 and real fake agents; every test under `trio.fail_after`;
every error answer is checked to be JSON `{"error": ...}`.
"""

from __future__ import annotations

import gzip
import json
import socket

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families as parse_text

from fodcproxy.core.model import NodeConfig
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.service import REGISTER, STREAM_METRICS
from fodcproxy.testing import open_fake_agent, open_proxy, static
from fodcproxy.testing.http import http_get, http_request

TOKEN = "http-token-0123456789abcdef"


def agents_in(text: str, name: str = "x") -> set[str]:
    return {s.labels["agent_id"] for f in parse_text(text) for s in f.samples if s.name == name}


def is_json_error(r, status: int, fragment: str = "") -> bool:
    assert r.status == status, (r.status, r.text)
    assert r.headers["content-type"].startswith("application/json"), r.headers
    assert fragment in r.json()["error"], r.json()
    return True


async def wait_for(predicate, step=0.005):
    while not predicate():
        await trio.sleep(step)


# -- filters -------------------------------------------------------------------------------------


async def test_agent_id_is_a_list_and_node_id_an_alias(proxy):
    with trio.fail_after(15):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("x", 1)]) as a, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=2,
                                series=[static("x", 2)]) as b, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=3,
                                series=[static("x", 3)]) as c:
            async def pick(query: str) -> set[str]:
                r = await http_get(proxy.http_url + "/metrics" + query)
                assert r.status == 200, r.text
                return agents_in(r.text)

            assert await pick(f"?agent_id={a.agent_id}&agent_id={b.agent_id}") == {a.agent_id, b.agent_id}
            assert await pick(f"?agent_id={a.agent_id}&node_id={c.agent_id}") == {a.agent_id, c.agent_id}
            assert await pick(f"?node_id={b.agent_id}&node_id={b.agent_id}") == {b.agent_id}
            # combined with the other filters: both must hold
            assert await pick(f"?agent_id={a.agent_id}&agent_id={c.agent_id}&role=liaison") == {a.agent_id}
            assert await pick("?agent_id=nobody") == set()  # an unknown id selects nothing
            cluster = (await http_get(proxy.http_url + f"/cluster?node_id={a.agent_id}&node_id={c.agent_id}")).json()
            assert {n["node_id"] for n in cluster["nodes"]} == {a.agent_id, c.agent_id}
            for bad, fragment in [("?agent_id=", "agent_id is empty"),
                                  (f"?agent_id={a.agent_id}&node_id=", "node_id is empty"),
                                  ("?" + "&".join(f"agent_id=a{i}" for i in range(1001)), "at most 1000")]:
                assert is_json_error(await http_get(proxy.http_url + "/metrics" + bad), 400, fragment)


@pytest.mark.parametrize("address", ["garbage", "not an address", "1.2.3.4.5", "[zz]:1", "-x", "a..b:80"])
async def test_an_address_that_is_no_node_address_is_400_naming_the_forms(proxy, address):
    with trio.fail_after(10):
        for path in ("/metrics", "/cluster", "/cluster/config", "/metrics-windows", "/sd", "/status"):
            r = await http_get(proxy.http_url + f"{path}?address={address.replace(' ', '%20')}")
            assert is_json_error(r, 400, "address")
            assert "ip:port" in r.json()["error"]


async def test_address_accepts_the_host_name_an_agent_registered_with(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="node-a.example", port=1,
                                   series=[static("x", 1)]) as a:
            r = await http_get(proxy.http_url + "/metrics?address=node-a.example:1")
            assert r.status == 200 and agents_in(r.text) == {a.agent_id}
            r = await http_get(proxy.http_url + "/metrics?address=127.0.0.9")  # an IP: fine, nobody
            assert r.status == 200 and agents_in(r.text) == set()


# -- /cluster/config -------------------------------------------------------------------------------


async def test_cluster_config_filter_keeps_the_inconsistencies_of_the_selected_nodes(proxy):
    def cfg(**params: str) -> NodeConfig:
        return NodeConfig(startup_params=params)

    with trio.fail_after(15):
        async with open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=1,
                                   node_config=cfg(flush="1s", mode="a")) as hot1, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                node_config=cfg(flush="5s", mode="a")) as hot2, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=3,
                                node_config=cfg(flush="5s", mode="b")) as hot3, \
                open_fake_agent(proxy.grpc_address, role="datanode-cold", ip="127.0.0.1", port=4,
                                node_config=cfg(flush="1m")) as cold1, \
                open_fake_agent(proxy.grpc_address, role="datanode-cold", ip="127.0.0.1", port=5,
                                node_config=cfg(flush="2m")):
            async def config(query: str) -> dict:
                r = await http_get(proxy.http_url + "/cluster/config" + query)
                assert r.status == 200, r.text
                return r.json()

            whole = await config("")
            assert {(i["role"], i["key"]) for i in whole["inconsistencies"]} == {
                ("datanode-hot", "flush"), ("datanode-hot", "mode"), ("datanode-cold", "flush")}

            one = await config(f"?agent_id={hot1.agent_id}")
            assert [c["agent_id"] for c in one["configurations"]] == [hot1.agent_id]
            # compared with all its peers (not only with itself), and only its role's shown
            assert {(i["role"], i["key"]) for i in one["inconsistencies"]} == {
                ("datanode-hot", "flush"), ("datanode-hot", "mode")}
            flush = next(i for i in one["inconsistencies"] if i["key"] == "flush")
            held = {v["value"]: set(v["nodes"]) for v in flush["values"]}
            assert held == {"1s": {hot1.agent_id}, "5s": {hot2.agent_id, hot3.agent_id}}

            by_address = await config("?address=127.0.0.1:3")
            assert {i["key"] for i in by_address["inconsistencies"]} == {"flush", "mode"}
            assert [c["agent_id"] for c in by_address["configurations"]] == [hot3.agent_id]

            cold = await config(f"?agent_id={cold1.agent_id}")
            assert {(i["role"], i["key"]) for i in cold["inconsistencies"]} == {("datanode-cold", "flush")}

            pair = await config(f"?agent_id={hot1.agent_id}&agent_id={cold1.agent_id}")
            assert len(pair["configurations"]) == 2
            assert pair["inconsistencies"] == whole["inconsistencies"]

            assert await config("?agent_id=nobody") == {"configurations": [], "inconsistencies": []}
            assert is_json_error(await http_get(proxy.http_url + "/cluster/config?agent_id="), 400)
            assert is_json_error(await http_get(proxy.http_url + "/cluster/config?bogus=1"), 400,
                                 "unknown query parameter")


# -- /health -----------------------------------------------------------------------------------------


async def test_health_is_200_and_degraded_while_agents_are_offline(proxy):
    with trio.fail_after(15):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   reconnect_interval=60) as a, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=2,
                                reconnect_interval=60) as b:
            ok = (await http_get(proxy.http_url + "/health")).json()
            assert ok["status"] == "ok" and ok["agents_online"] == 2 and ok["agents_total"] == 2
            a.drop()
            b.drop()
            await wait_for(lambda: proxy.proxy.registry.statistics().online == 0)
            r = await http_get(proxy.http_url + "/health")
    assert r.status == 200
    assert r.json()["status"] == "degraded"
    assert (r.json()["agents_online"], r.json()["agents_offline"], r.json()["agents_total"]) == (0, 2, 2)


# -- methods, negotiation, errors ----------------------------------------------------------------


@pytest.mark.parametrize("path, allowed", [
    ("/metrics", "GET, HEAD, OPTIONS"),
    ("/health", "GET, HEAD, OPTIONS"),
    ("/cluster/nodes/some-agent", "DELETE, OPTIONS"),
])
async def test_options_is_204_with_allow(proxy, path, allowed):
    with trio.fail_after(10):
        r = await http_request("OPTIONS", proxy.http_url + path)
    assert r.status == 204 and r.body == b""
    assert r.headers["allow"] == allowed


async def test_options_needs_no_token_but_everything_else_does():
    with trio.fail_after(10):
        async with open_proxy(http_token=TOKEN) as proxy:
            r = await http_request("OPTIONS", proxy.http_url + "/metrics")
            assert r.status == 204
            assert is_json_error(await http_request("DELETE", proxy.http_url + "/cluster/nodes/x"), 401, "token")
            assert is_json_error(await http_get(proxy.http_url + "/status"), 401, "token")


async def test_wrong_method_is_405_json_with_allow(proxy):
    with trio.fail_after(10):
        r = await http_request("POST", proxy.http_url + "/metrics")
        assert is_json_error(r, 405, "use GET")
        assert "GET" in r.headers["allow"]
        r = await http_get(proxy.http_url + "/cluster/nodes/some-agent")
        assert is_json_error(r, 405, "use DELETE")
        assert "DELETE" in r.headers["allow"]


@pytest.mark.parametrize("accept_encoding, gzipped", [
    ("gzip", True),
    ("gzip;q=0", False),
    ("gzip; q=0.0, identity", False),
    ("deflate, gzip;q=0.5", True),
    ("*", True),
    ("*, gzip;q=0", False),
    ("identity", False),
    ("", False),
])
async def test_gzip_only_when_the_client_accepts_it(proxy, accept_encoding, gzipped):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("x", 1)]):
            for path in ("/metrics", "/metrics-windows"):
                r = await http_get(proxy.http_url + path, headers={"Accept-Encoding": accept_encoding})
                assert r.status == 200
                assert ("content-encoding" in r.headers) is gzipped, (path, r.headers)
                body = gzip.decompress(r.body) if gzipped else r.body
                assert b"x" in body


# -- /sd ---------------------------------------------------------------------------------------------


async def sd_with_host(port: int, host: str) -> list:
    """GET /sd with the given Host header (the test client always sends its own)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET /sd HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        raw = b""
        while data := await stream.receive_some(65536):
            raw += data
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    return json.loads(body)


async def test_sd_targets_the_advertised_address_not_the_host_header():
    with trio.fail_after(15):
        async with open_proxy(advertise_http_addr="proxy.example:9090") as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1):
            groups = await sd_with_host(proxy.addresses.http_port, "evil.example:1")
    [group] = groups
    assert group["targets"] == ["proxy.example:9090"]


async def test_sd_defaults_to_the_bound_address(proxy):
    with trio.fail_after(10):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1):
            groups = await sd_with_host(proxy.addresses.http_port, "evil.example:1")
    [group] = groups
    assert group["targets"] == [f"127.0.0.1:{proxy.addresses.http_port}"]


async def test_sd_when_bound_to_all_interfaces_names_the_host():
    with trio.fail_after(15):
        async with open_proxy(http_host="0.0.0.0") as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1):
            r = await http_get(proxy.http_url + "/sd")
    [group] = r.json()
    assert group["targets"] == [f"{socket.gethostname()}:{proxy.addresses.http_port}"]


# -- DELETE /cluster/nodes/{agent_id} --------------------------------------------------------------


async def test_delete_node_unregisters_it_and_ends_its_streams_saying_so():
    with trio.fail_after(20):
        async with open_proxy(http_token=TOKEN, collect_timeout=2.0) as proxy:
            auth = {"Authorization": f"Bearer {TOKEN}"}
            async with open_channel("127.0.0.1", proxy.addresses.grpc_port) as ch:
                reg = await ch.start_call(REGISTER, pb.RegisterAgentResponse)
                await reg.send(convert.registration_to_proto(role="liaison", ip="127.0.0.1", port=1))
                agent_id = (await reg.receive()).agent_id
                metrics = await ch.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                              metadata={"agent_id": agent_id})
                await wait_for(lambda: proxy.proxy.hub.sessions[agent_id].metrics_stream is not None)
                url = proxy.http_url + f"/cluster/nodes/{agent_id}"

                assert is_json_error(await http_request("DELETE", url), 401, "token")
                assert proxy.proxy.registry.get(agent_id) is not None  # refused: nothing done

                r = await http_request("DELETE", url, headers=auth)
                assert r.status == 200, r.text
                assert r.json() == {"agent_id": agent_id, "removed": True, "status_before": "online"}
                assert proxy.proxy.registry.get(agent_id) is None
                for call in (reg, metrics):
                    assert await call.receive() is None
                    code, message = call.status
                    assert code == GrpcCode.FAILED_PRECONDITION
                    assert "removed by an operator" in message
                cluster = (await http_get(proxy.http_url + "/cluster", headers=auth)).json()
                assert cluster["nodes"] == []
                assert is_json_error(await http_request("DELETE", url, headers=auth), 404, "no agent")


async def test_delete_node_hostile_cases(proxy):
    with trio.fail_after(15):
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   reconnect_interval=60) as agent:
            base = proxy.http_url + "/cluster/nodes/"
            assert is_json_error(await http_request("DELETE", base + "nobody"), 404, "GET /cluster")
            assert is_json_error(await http_request("DELETE", base + "x" * 5000), 404, "...")
            assert is_json_error(await http_request("DELETE", base + "%00%ff"), 404)
            assert is_json_error(await http_request("DELETE", base), 404)
            assert is_json_error(await http_request("DELETE", base + f"{agent.agent_id}?force=1"),
                                 400, "no query parameters")
            assert is_json_error(await http_request("PUT", base + agent.agent_id), 405, "use DELETE")
            assert proxy.proxy.registry.get(agent.agent_id) is not None
            # an offline node can be removed too (the operator knows it will not come back)
            agent.drop()
            await wait_for(lambda: proxy.proxy.registry.get(agent.agent_id).status.value == "unconnected")
            r = await http_request("DELETE", base + agent.agent_id)
            assert r.status == 200 and r.json()["status_before"] == "unconnected"
            assert proxy.proxy.registry.get(agent.agent_id) is None


# -- /status -------------------------------------------------------------------------------------------


async def test_status_summarizes_agents_and_the_collection():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=1.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as good, \
                open_fake_agent(proxy.grpc_address, role="datanode-hot", ip="127.0.0.1", port=2,
                                series=[static("x", 2)]) as hung, \
                open_fake_agent(proxy.grpc_address, role="datanode-cold", ip="127.0.0.1", port=3,
                                reconnect_interval=60) as gone:
            first = (await http_get(proxy.http_url + "/status")).json()
            hung.hang = True
            gone.drop()
            await wait_for(lambda: proxy.proxy.registry.get(gone.agent_id).status.value == "unconnected")
            r = await http_get(proxy.http_url + "/status")
            picked = (await http_get(proxy.http_url + f"/status?agent_id={good.agent_id}")).json()
    assert all(a["up"] for a in first["agents"])
    assert r.status == 200 and r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["agents_by_status"] == {"online": 2, "unconnected": 1}
    assert body["agents_total"] == 3
    assert body["collect"]["asked"] == 3 and body["collect"]["answered"] == 1
    agents = {a["agent_id"]: a for a in body["agents"]}
    assert agents[good.agent_id]["up"] is True and agents[good.agent_id]["error"] is None
    assert agents[hung.agent_id]["up"] is False and agents[hung.agent_id]["error"] == "missed the deadline"
    assert agents[hung.agent_id]["last_answer_at"] is not None  # it answered the first time
    assert agents[gone.agent_id]["status"] == "unconnected" and agents[gone.agent_id]["error"] == "offline"
    assert agents[good.agent_id]["node_role"] == "liaison"
    proxy_counters = body["proxy"]
    assert proxy_counters["registrations"] == 3 and proxy_counters["collections"] == 2
    assert proxy_counters["uptime_seconds"] >= 0
    assert [a["agent_id"] for a in picked["agents"]] == [good.agent_id]
    assert picked["agents_total"] == 3  # the counts are of the whole registry


async def test_status_hostile_parameters(proxy):
    with trio.fail_after(10):
        assert is_json_error(await http_get(proxy.http_url + "/status?bogus=1"), 400, "unknown query parameter")
        assert is_json_error(await http_get(proxy.http_url + "/status?address=garbage"), 400, "address")
        assert is_json_error(await http_request("POST", proxy.http_url + "/status"), 405)
        r = await http_get(proxy.http_url + "/status?agent_id=nobody")
        assert r.status == 200 and r.json()["agents"] == []


async def test_client_going_away_mid_collection_leaves_the_proxy_serving():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)]) as hung:
            hung.hang = True
            for path in ("/status", "/metrics", "/cluster/config"):
                with trio.move_on_after(0.3):  # the client gives up and closes its connection
                    await http_get(proxy.http_url + path, timeout=5)
            hung.hang = False
            r = await http_get(proxy.http_url + "/status")
            assert r.status == 200
            assert (await http_get(proxy.http_url + "/health")).status == 200


async def test_removing_an_agent_releases_a_collection_waiting_for_it_at_once():
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=10.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                series=[static("x", 1)], reconnect_interval=30) as agent:
            agent.hang = True
            answers = []

            async def scrape() -> None:
                answers.append(await http_get(proxy.http_url + "/metrics", timeout=15))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scrape)
                while agent.request_count == 0:
                    await trio.sleep(0.01)
                start = trio.current_time()
                r = await http_request("DELETE", proxy.http_url + f"/cluster/nodes/{agent.agent_id}")
                assert r.status == 200
            waited = trio.current_time() - start
    [scraped] = answers
    assert scraped.status == 200
    assert waited < 8  # released by the removal, not by the 10 s collect deadline
    assert [s.value for f in parse_text(scraped.text) for s in f.samples if s.name == "fodc_agent_up"] == [0.0]
