"""Tests of `fodcproxy.core.topology`: the `/cluster` and `/cluster/config` documents.

Test policy: the module is sans-IO, so these are plain synchronous tests on hand-built `NodeView`
lists. Whole documents are compared with `==` where the shape is the point (SPEC section 6), so
an added or renamed field fails a test. Inputs are given in a shuffled order wherever the output
order is claimed to be deterministic.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import pytest

from fodcproxy.core.model import Address, NodeConfig
from fodcproxy.core.topology import (
    NodeView,
    cluster_calls,
    cluster_json,
    config_json,
    is_per_node_key,
)

T0 = 1_795_838_900.0  # 2026-11-28T04:08:20Z


def node(
    agent_id: str,
    role: str,
    ip: str = "10.0.0.1",
    port: int = 17912,
    *,
    config: NodeConfig | None = None,
    labels: Mapping[str, str] | None = None,
    secondary: Mapping[str, Address] | None = None,
    status: str = "online",
) -> NodeView:
    return NodeView(
        agent_id=agent_id,
        role=role,
        primary_address=Address(ip, port),
        secondary_addresses=secondary or {},
        labels=labels or {},
        status=status,
        last_heartbeat=T0 + 5,
        registered_at=T0,
        node_config=config,
    )


def pairs(calls: list[dict[str, str]], kind: str) -> list[tuple[str, str]]:
    return [(c["source"], c["target"]) for c in calls if c["kind"] == kind]


# --- calls -------------------------------------------------------------------------------------


def test_calls_liaison_and_three_tiers() -> None:
    nodes = [
        node("cold1", "datanode-cold", "10.0.0.7"),
        node("hot2", "datanode-hot", "10.0.0.3"),
        node("li", "liaison", "10.0.0.1"),
        node("warm", "datanode-warm", "10.0.0.5"),
        node("hot1", "datanode-hot", "10.0.0.2"),
    ]
    calls = cluster_calls(nodes)
    # Query calls in node order: roles sorted (cold < hot < warm), then by address.
    assert calls == [
        {"source": "li", "target": "cold1", "kind": "query"},
        {"source": "li", "target": "hot1", "kind": "query"},
        {"source": "li", "target": "hot2", "kind": "query"},
        {"source": "li", "target": "warm", "kind": "query"},
        {"source": "hot1", "target": "warm", "kind": "tier"},
        {"source": "hot2", "target": "warm", "kind": "tier"},
        {"source": "warm", "target": "cold1", "kind": "tier"},
    ]


def test_calls_do_not_depend_on_input_order() -> None:
    nodes = [
        node("li2", "liaison", "10.0.0.10"),
        node("li1", "liaison", "10.0.0.9"),
        node("h", "datanode-hot", "10.0.1.1"),
        node("w", "datanode-warm", "10.0.1.2"),
    ]
    assert cluster_calls(nodes) == cluster_calls(list(reversed(nodes)))
    # 10.0.0.9 sorts before 10.0.0.10: addresses compare as numbers, not text.
    assert pairs(cluster_calls(nodes), "query") == [
        ("li1", "h"),
        ("li1", "w"),
        ("li2", "h"),
        ("li2", "w"),
    ]


def test_missing_warm_tier_hot_hands_to_cold() -> None:
    nodes = [node("h", "datanode-hot"), node("c", "datanode-cold"), node("li", "liaison")]
    assert pairs(cluster_calls(nodes), "tier") == [("h", "c")]


def test_missing_hot_tier_warm_hands_to_cold() -> None:
    nodes = [node("w", "datanode-warm"), node("c", "datanode-cold")]
    assert pairs(cluster_calls(nodes), "tier") == [("w", "c")]


def test_single_tier_has_no_tier_calls() -> None:
    nodes = [node("h1", "datanode-hot", "10.0.0.1"), node("h2", "datanode-hot", "10.0.0.2")]
    assert cluster_calls(nodes) == []


def test_no_liaison_only_tier_calls() -> None:
    nodes = [node("h", "datanode-hot"), node("w", "datanode-warm")]
    assert cluster_calls(nodes) == [{"source": "h", "target": "w", "kind": "tier"}]


def test_unknown_roles_are_ignored() -> None:
    nodes = [
        node("li", "liaison"),
        node("x", "standalone"),
        node("db", "database"),  # not "data" followed by a separator
        node("m", "meta"),
        node("h", "datanode-hot"),
    ]
    assert cluster_calls(nodes) == [{"source": "li", "target": "h", "kind": "query"}]


def test_untiered_data_node_is_queried_but_not_in_the_tier_chain() -> None:
    nodes = [
        node("li", "liaison"),
        node("d", "datanode"),
        node("d2", "data"),
        node("h", "Data-Hot"),  # case-insensitive, "data-" prefix
        node("c", "datanode_cold"),
    ]
    calls = cluster_calls(nodes)
    assert sorted(pairs(calls, "query")) == [("li", "c"), ("li", "d"), ("li", "d2"), ("li", "h")]
    assert pairs(calls, "tier") == [("h", "c")]


def test_offline_nodes_are_part_of_the_topology() -> None:
    nodes = [node("li", "liaison", status="unconnected"), node("h", "datanode-hot")]
    assert pairs(cluster_calls(nodes), "query") == [("li", "h")]


def test_no_nodes() -> None:
    assert cluster_calls([]) == []


# --- /cluster ----------------------------------------------------------------------------------


def test_cluster_json_shape() -> None:
    li = node(
        "li",
        "liaison",
        "10.0.0.1",
        17912,
        labels={"zone": "b", "env": "prod"},
        secondary={"http": Address("10.0.0.1", 17913), "grpc": Address("::1", 17914)},
    )
    hot = node("h", "datanode-hot", "10.0.0.2", 17912, status="unconnected")
    doc = cluster_json([hot, li], now=T0 + 60.25)
    assert doc == {
        "nodes": [
            {
                "node_id": "h",
                "node_role": "datanode-hot",
                "primary_address": {"ip": "10.0.0.2", "port": 17912},
                "secondary_addresses": {},
                "labels": {},
                "status": "unconnected",
                "last_heartbeat": "2026-11-28T04:08:25Z",
                "registered_at": "2026-11-28T04:08:20Z",
            },
            {
                "node_id": "li",
                "node_role": "liaison",
                "primary_address": {"ip": "10.0.0.1", "port": 17912},
                "secondary_addresses": {
                    "grpc": {"ip": "::1", "port": 17914},
                    "http": {"ip": "10.0.0.1", "port": 17913},
                },
                "labels": {"env": "prod", "zone": "b"},
                "status": "online",
                "last_heartbeat": "2026-11-28T04:08:25Z",
                "registered_at": "2026-11-28T04:08:20Z",
            },
        ],
        "calls": [{"source": "li", "target": "h", "kind": "query"}],
        "updated_at": "2026-11-28T04:09:20.25Z",
    }
    # Secondary addresses and labels come out sorted: stable JSON for diffing.
    assert list(doc["nodes"][1]["secondary_addresses"]) == ["grpc", "http"]
    assert list(doc["nodes"][1]["labels"]) == ["env", "zone"]
    json.dumps(doc)


def test_cluster_nodes_sorted_by_role_ip_port_agent_id() -> None:
    nodes = [
        node("b", "liaison", "10.0.0.2", 2),
        node("a", "liaison", "10.0.0.2", 2),
        node("c", "liaison", "10.0.0.2", 1),
        node("d", "liaison", "10.0.0.10", 1),
        node("e", "liaison", "node-1.local", 1),  # host names after IP addresses
        node("f", "liaison", "::1", 1),  # IPv6 after IPv4
        node("g", "datanode-hot", "10.0.0.99", 1),
    ]
    doc = cluster_json(nodes, now=T0)
    assert [n["node_id"] for n in doc["nodes"]] == ["g", "c", "a", "b", "d", "f", "e"]


def test_cluster_json_empty() -> None:
    assert cluster_json([], now=T0) == {
        "nodes": [],
        "calls": [],
        "updated_at": "2026-11-28T04:08:20Z",
    }


def test_node_view_meta() -> None:
    meta = node("x", "liaison", "10.0.0.9", 80, labels={"z": "1", "a": "2"}).meta
    assert (meta.agent_id, meta.role, meta.ip, meta.port) == ("x", "liaison", "10.0.0.9", 80)
    assert meta.labels == (("a", "2"), ("z", "1"))


# --- /cluster/config ---------------------------------------------------------------------------


def cfg(
    startup: Mapping[str, str] | None = None,
    runtime: Mapping[str, object] | None = None,
    collected_at: float | None = None,
) -> NodeConfig:
    return NodeConfig(
        startup_params=startup or {}, runtime_config=runtime or {}, collected_at=collected_at
    )


def test_configurations_list_only_reporting_nodes() -> None:
    nodes = [
        node("h2", "datanode-hot", "10.0.0.3", config=cfg({"b": "2", "a": "1"}, {"x": {"y": 1.0}})),
        node("quiet", "datanode-hot", "10.0.0.4"),
        node("h1", "datanode-hot", "10.0.0.2", config=cfg(collected_at=T0 + 1.5)),
    ]
    doc = config_json(nodes)
    assert doc["configurations"] == [
        {
            "agent_id": "h1",
            "node_role": "datanode-hot",
            "startup_params": {},
            "runtime_config": {},
            "collected_at": "2026-11-28T04:08:21.5Z",
        },
        {
            "agent_id": "h2",
            "node_role": "datanode-hot",
            "startup_params": {"a": "1", "b": "2"},
            "runtime_config": {"x": {"y": 1.0}},
            "collected_at": None,
        },
    ]
    # "quiet" reported nothing: it is not counted as holding null for every key.
    assert all("quiet" not in v["nodes"] for i in doc["inconsistencies"] for v in i["values"])
    json.dumps(doc)


def test_consistent_role_has_no_inconsistencies() -> None:
    same = cfg({"etcd-endpoints": "http://etcd:2379"}, {"storage": {"flush_interval": "1s"}})
    nodes = [node(f"h{i}", "datanode-hot", f"10.0.0.{i}", config=same) for i in range(1, 4)]
    assert config_json(nodes)["inconsistencies"] == []


def test_startup_param_differs() -> None:
    nodes = [
        node("h1", "datanode-hot", "10.0.0.1", config=cfg({"flush": "1s", "same": "x"})),
        node("h2", "datanode-hot", "10.0.0.2", config=cfg({"flush": "5s", "same": "x"})),
        node("h3", "datanode-hot", "10.0.0.3", config=cfg({"flush": "1s", "same": "x"})),
    ]
    assert config_json(nodes)["inconsistencies"] == [
        {
            "role": "datanode-hot",
            "key": "flush",
            "source": "startup_params",
            "values": [
                {"value": "1s", "nodes": ["h1", "h3"]},  # the majority first
                {"value": "5s", "nodes": ["h2"]},
            ],
        }
    ]


def test_nested_runtime_config_and_absent_keys() -> None:
    nodes = [
        node(
            "h1",
            "datanode-hot",
            "10.0.0.1",
            config=cfg(runtime={"storage": {"flush_interval": "1s", "cache": {"size": 10.0}}}),
        ),
        node(
            "h2",
            "datanode-hot",
            "10.0.0.2",
            config=cfg(runtime={"storage": {"flush_interval": "2s", "cache": {"size": 10.0}}}),
        ),
        node("h3", "datanode-hot", "10.0.0.3", config=cfg(runtime={"storage": {"extra": True}})),
    ]
    found = {i["key"]: i for i in config_json(nodes)["inconsistencies"]}
    assert sorted(found) == ["storage.cache.size", "storage.extra", "storage.flush_interval"]
    assert {i["source"] for i in found.values()} == {"runtime_config"}
    assert found["storage.cache.size"]["values"] == [
        {"value": 10.0, "nodes": ["h1", "h2"]},
        {"value": None, "nodes": ["h3"]},
    ]
    assert found["storage.extra"]["values"] == [
        {"value": None, "nodes": ["h1", "h2"]},
        {"value": True, "nodes": ["h3"]},
    ]
    # One node each: ties are broken by the JSON text of the value ('"1s"' < '"2s"' < 'null').
    assert found["storage.flush_interval"]["values"] == [
        {"value": "1s", "nodes": ["h1"]},
        {"value": "2s", "nodes": ["h2"]},
        {"value": None, "nodes": ["h3"]},
    ]


def test_lists_and_empty_objects_are_leaves() -> None:
    nodes = [
        node("a", "liaison", "10.0.0.1", config=cfg(runtime={"peers": ["x", "y"], "opts": {}})),
        node("b", "liaison", "10.0.0.2", config=cfg(runtime={"peers": ["y", "x"]})),
    ]
    found = {i["key"]: i["values"] for i in config_json(nodes)["inconsistencies"]}
    assert found == {
        # Ties are broken by JSON text: 'null' < '{}'.
        "opts": [{"value": None, "nodes": ["b"]}, {"value": {}, "nodes": ["a"]}],
        "peers": [{"value": ["x", "y"], "nodes": ["a"]}, {"value": ["y", "x"], "nodes": ["b"]}],
    }


def test_explicit_null_equals_absent() -> None:
    nodes = [
        node("a", "liaison", "10.0.0.1", config=cfg(runtime={"k": None})),
        node("b", "liaison", "10.0.0.2", config=cfg(runtime={})),
    ]
    assert config_json(nodes)["inconsistencies"] == []


def test_roles_are_checked_separately() -> None:
    nodes = [
        node("li", "liaison", config=cfg({"mode": "a"})),
        node("h", "datanode-hot", config=cfg({"mode": "b"})),
    ]
    assert config_json(nodes)["inconsistencies"] == []


def test_per_node_keys_are_excluded_by_default() -> None:
    def conf(i: int) -> NodeConfig:
        return cfg(
            {
                "grpc-port": str(17912 + i),
                "--http-host": f"10.0.0.{i}",
                "node-id": f"n{i}",
                "advertise-grpc": f"10.0.0.{i}:17912",
                "etcd-endpoints": f"http://etcd{i}:2379",
            },
            {"server": {"listenAddr": f":{i}", "nodeID": f"n{i}"}, "hostname": f"h{i}"},
        )

    nodes = [node(f"h{i}", "datanode-hot", f"10.0.0.{i}", config=conf(i)) for i in (1, 2)]
    keys = [i["key"] for i in config_json(nodes)["inconsistencies"]]
    assert keys == ["etcd-endpoints"]
    # The excluded keys are still shown in the configurations.
    assert config_json(nodes)["configurations"][0]["startup_params"]["grpc-port"] == "17913"
    # A caller can check every key.
    everything = config_json(nodes, ignore_key=lambda key: False)["inconsistencies"]
    assert len(everything) == 8


@pytest.mark.parametrize(
    "key",
    [
        "host",
        "grpc-host",
        "--http-port",
        "pod_ip",
        "storage.node_id",
        "node-id",
        "nodeID",
        "nodeid",
        "advertise-addr",
        "advertiseGrpc",
        "listen.address",
        "HTTPPort",
        "hostname",
        "etcd.hosts",
    ],
)
def test_is_per_node_key(key: str) -> None:
    assert is_per_node_key(key)


@pytest.mark.parametrize(
    "key",
    [
        "etcd-endpoints",
        "storage.flush_interval",
        "node-host-provider",
        "data-path",
        "measure-root-path",
        "ipsec",
        "report",
        "",
        "--",
        "storage.",
    ],
)
def test_is_not_per_node_key(key: str) -> None:
    assert not is_per_node_key(key)


def test_inconsistencies_sorted_by_role_source_key() -> None:
    def pair(role: str, base: str) -> list[NodeView]:
        return [
            node(
                f"{role}{i}",
                role,
                f"{base}.{i}",
                config=cfg({"z": str(i), "a": str(i)}, {"m": {"k": float(i)}, "b": float(i)}),
            )
            for i in (1, 2)
        ]

    nodes = [
        *pair("liaison", "10.0.1"),
        *pair("datanode-warm", "10.0.2"),
        *pair("datanode-hot", "10.0.3"),
    ]
    got = config_json(nodes[::-1])["inconsistencies"]
    assert got == config_json(nodes)["inconsistencies"]
    assert [(i["role"], i["source"], i["key"]) for i in got] == [
        (role, source, key)
        for role in ("datanode-hot", "datanode-warm", "liaison")
        for source, keys in (("runtime_config", ("b", "m.k")), ("startup_params", ("a", "z")))
        for key in keys
    ]
    # Nodes within a value appear in node order.
    assert got[0]["values"][0]["nodes"] == ["datanode-hot1"]
