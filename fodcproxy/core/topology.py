"""The cluster as `/cluster` and `/cluster/config` show it (SPEC section 6). Sans-IO.

The caller (the HTTP side) builds one `NodeView` per registry entry, with wall-clock times, and
turns the dicts returned here into JSON. Nothing here reads the registry, the clock or a socket.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import attrs

from fodcproxy.core import roles
from fodcproxy.core.model import Address, NodeConfig, NodeMeta
from fodcproxy.core.windows import rfc3339


@attrs.frozen
class NodeView:
    """What `/cluster` shows of one agent. Built by the caller from the registry.

    `last_heartbeat` and `registered_at` are Unix seconds (wall clock). `status` is "online" or
    "unconnected" (SPEC section 4).
    """

    agent_id: str
    role: str
    primary_address: Address | None  # None for a pod agent
    secondary_addresses: Mapping[str, Address]
    labels: Mapping[str, str]
    status: str
    last_heartbeat: float
    registered_at: float
    node_config: NodeConfig | None = None
    pod_name: str = ""  # pod agents
    container_names: tuple[str, ...] = ()

    @property
    def meta(self) -> NodeMeta:
        """The node as a `NodeMeta`, so a `query.Selection` can filter views."""
        addr = self.primary_address
        return NodeMeta(
            self.agent_id,
            self.role,
            addr.ip if addr is not None else "",
            addr.port if addr is not None else 0,
            tuple(sorted(self.labels.items())),
            self.pod_name,
            self.container_names,
        )

    @property
    def kind(self) -> roles.NodeKind:
        return roles.kind_of(self.role, self.labels)


def cluster_calls(nodes: Sequence[NodeView]) -> list[dict[str, str]]:
    """The relationships between nodes: who calls whom.

    - kind "query": every liaison (role "liaison", "liaison-*", "ROLE_LIAISON") calls every data
      node (role "data", "datanode*", "data-*", "ROLE_DATA").
    - kind "tier": every node of a data tier hands data to every node of the next colder tier
      that is present (hot -> warm -> cold; hot -> cold when there is no warm node). The tier is
      the last word of a seed-style role ("datanode-hot") or the node label `type` of a
      ROLE_DATA node; a data node without one takes no part here.

    Both namings mix freely (see `core.roles`); any other role is ignored. Every node given is used,
    whatever its status: an offline node is still part of the topology the operator sees.

    Returns a list of `{"source": agent_id, "target": agent_id, "kind": ...}`: the query calls
    first, then the tier calls from hot to cold, each in the node order of `cluster_json`.
    """
    ordered = sorted(nodes, key=_node_order)
    liaisons = [n for n in ordered if n.kind.kind == roles.LIAISON]
    data = [n for n in ordered if n.kind.kind == roles.DATA]
    calls = [
        {"source": src.agent_id, "target": dst.agent_id, "kind": "query"}
        for src in liaisons
        for dst in data
    ]
    tiers = [[n for n in data if n.kind.tier == tier] for tier in roles.TIERS]
    present = [members for members in tiers if members]
    for hotter, colder in zip(present, present[1:]):
        calls.extend(
            {"source": src.agent_id, "target": dst.agent_id, "kind": "tier"}
            for src in hotter
            for dst in colder
        )
    return calls


def cluster_json(nodes: Sequence[NodeView], *, now: float) -> dict[str, Any]:
    """The `/cluster` document: `{"nodes": [...], "calls": [...], "updated_at": RFC3339}`.

    Nodes are sorted by (role, ip, port, agent_id), IP addresses in numeric order. `now` is the
    wall-clock time (Unix seconds) written as `updated_at`. Returns plain dicts and lists, ready
    for `json.dumps`.
    """
    return {
        "nodes": [_node_json(n) for n in sorted(nodes, key=_node_order)],
        "calls": cluster_calls(nodes),
        "updated_at": rfc3339(now),
    }


_PER_NODE_WORDS = frozenset(
    {"host", "hosts", "hostname", "ip", "ips", "port", "addr", "addrs", "address", "addresses"}
)


def is_per_node_key(key: str) -> bool:
    """Whether a configuration key is expected to differ from node to node.

    The last dotted segment of `key` is split into words (at "-", "_" and camelCase; leading
    dashes of a flag dropped). The key is per-node when its last word is host, hostname, ip, port,
    addr, address (or a plural), when it ends in "node id" ("node-id", "node_id", "nodeID") or
    when it begins with "advertise". So "grpc-port", "storage.node_id", "advertiseAddr" are
    per-node; "etcd-endpoints", "storage.flush_interval", "node-host-provider" are not.
    Paths such as "data-path" are *not* excluded: nodes of one role normally share a layout.
    """
    last = key.rsplit(".", 1)[-1].lstrip("-")
    last = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", last)
    last = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", last)
    words = [w for w in re.split(r"[-_]+", last.lower()) if w]
    if not words:
        return False
    return (
        words[-1] in _PER_NODE_WORDS
        or words[-2:] == ["node", "id"]
        or words[-1] == "nodeid"
        or words[0] == "advertise"
    )


def config_json(
    nodes: Sequence[NodeView], *, ignore_key: Callable[[str], bool] = is_per_node_key
) -> dict[str, Any]:
    """The `/cluster/config` document: `{"configurations": [...], "inconsistencies": [...]}`.

    `configurations` lists only the nodes that reported a config, in `cluster_json` node order:
    `{"agent_id", "node_role", "startup_params", "runtime_config", "collected_at"}` with
    `collected_at` RFC3339 or null.

    `inconsistencies`: among the reporting nodes of one role, every key whose value is not the
    same on all of them. Keys are the `startup_params` names and the `runtime_config` leaves as
    dotted paths ("storage.flush_interval"; a list or an empty object is one leaf). A key present
    on some nodes and absent on others is inconsistent, the absent side showing the value null
    (an explicit null counts as absent). Keys for which `ignore_key` is true are not checked
    (by default `is_per_node_key`: addresses, ports, node ids). Each entry is
    `{"role", "key", "source": "startup_params" | "runtime_config", "values": [{"value",
    "nodes": [agent_id, ...]}]}`; entries are sorted by (role, source, key), values by the number
    of nodes holding them (most first) then by their JSON text, nodes in node order.
    """
    reporting = [
        (n, n.node_config) for n in sorted(nodes, key=_node_order) if n.node_config is not None
    ]
    configurations = [
        {
            "agent_id": n.agent_id,
            "node_role": n.role,
            "startup_params": _plain(cfg.startup_params),
            "runtime_config": _plain(cfg.runtime_config),
            "collected_at": None if cfg.collected_at is None else rfc3339(cfg.collected_at),
        }
        for n, cfg in reporting
    ]
    by_role: dict[str, list[tuple[str, NodeConfig]]] = {}
    for n, cfg in reporting:
        by_role.setdefault(n.role, []).append((n.agent_id, cfg))

    inconsistencies: list[dict[str, Any]] = []
    for role, members in by_role.items():
        for source in ("startup_params", "runtime_config"):
            flats = [(agent_id, _flat_config(cfg, source)) for agent_id, cfg in members]
            inconsistencies.extend(
                {"role": role, "key": key, "source": source, "values": values}
                for key, values in _differences(flats, ignore_key)
            )
    inconsistencies.sort(key=lambda i: (i["role"], i["source"], i["key"]))
    return {"configurations": configurations, "inconsistencies": inconsistencies}


def _flat_config(config: NodeConfig, source: str) -> dict[str, object]:
    if source == "startup_params":
        return dict(config.startup_params)
    return _flatten(config.runtime_config)


def _flatten(tree: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    # A key that itself contains "." can collide with a nested path; the later one wins. Real
    # configs do not mix the two spellings, so this is not worth an escaping scheme.
    flat: dict[str, object] = {}
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(_flatten(value, path + "."))
        else:
            flat[path] = value
    return flat


def _differences(
    flats: Sequence[tuple[str, Mapping[str, object]]], ignore_key: Callable[[str], bool]
) -> Iterable[tuple[str, list[dict[str, Any]]]]:
    keys = sorted({k for _, flat in flats for k in flat if not ignore_key(k)})
    for key in keys:
        groups: dict[str, tuple[object, list[str]]] = {}
        for agent_id, flat in flats:
            value = _plain(flat.get(key))
            groups.setdefault(_canonical(value), (value, []))[1].append(agent_id)
        if len(groups) > 1:
            ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1][1]), kv[0]))
            yield key, [{"value": value, "nodes": ids} for _, (value, ids) in ranked]


def _canonical(value: object) -> str:
    """A text equal for equal JSON values, used to group nodes by value."""
    return json.dumps(value, sort_keys=True, default=repr)


def _plain(value: object) -> Any:
    """Mappings become dicts (str keys, sorted) and sequences lists, so `json.dumps` takes them."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _node_json(n: NodeView) -> dict[str, Any]:
    pod = {"pod_name": n.pod_name, "container_names": list(n.container_names)} if n.pod_name else {}
    return {
        "node_id": n.agent_id,
        "node_role": n.role,
        **pod,
        "primary_address": None if n.primary_address is None else _address_json(n.primary_address),
        "secondary_addresses": {
            name: _address_json(addr) for name, addr in sorted(n.secondary_addresses.items())
        },
        "labels": dict(sorted(n.labels.items())),
        "status": n.status,
        "last_heartbeat": rfc3339(n.last_heartbeat),
        "registered_at": rfc3339(n.registered_at),
    }


def _address_json(addr: Address) -> dict[str, Any]:
    return {"ip": addr.ip, "port": addr.port}


def _node_order(n: NodeView) -> tuple[str, tuple[int, int, int, str], int, str, str]:
    addr = n.primary_address
    if addr is None:
        return (n.role, (2, 0, 0, ""), 0, n.pod_name, n.agent_id)
    return (n.role, _ip_order(addr.ip), addr.port, "", n.agent_id)


def _ip_order(ip: str) -> tuple[int, int, int, str]:
    # IP addresses in numeric order (10.0.0.2 before 10.0.0.10), IPv4 first, host names last.
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return (1, 0, 0, ip)
    return (0, addr.version, int(addr), ip)




def reported_topology_json(reports: Sequence[Mapping[str, Any]],
                           agents: Mapping[str, tuple[str, float]]) -> dict[str, Any]:
    """`GET /cluster/topology`: the topologies pod agents reported, merged as upstream's proxy
    merges them.

    `reports` are `{"nodes": [...], "calls": [...]}` (nodes as `database.v1.Node` JSON); nodes are
    de-duplicated by `metadata.name` (a later report wins; nodes without a name are left out),
    calls by `id`. Every node gets `roles` (its role names, `[]` when none). `agents` maps a pod
    name to its agent's (status, last heartbeat in Unix seconds): a node whose label `pod_name`
    is one of them gets `status` and `last_heartbeat` (RFC 3339). Nodes are sorted by name,
    calls by id, so the answer is stable.
    """
    nodes: dict[str, dict[str, Any]] = {}
    calls: dict[str, dict[str, Any]] = {}
    for report in reports:
        for node in report.get("nodes", ()):
            name = (node.get("metadata") or {}).get("name")
            if isinstance(name, str) and name:
                nodes[name] = dict(node)
        for call in report.get("calls", ()):
            cid = call.get("id")
            if isinstance(cid, str) and cid:
                calls[cid] = dict(call)
    for node in nodes.values():
        node["roles"] = list(node.get("roles") or [])
        pod = (node.get("labels") or {}).get("pod_name")
        if isinstance(pod, str) and pod in agents:
            status, heartbeat = agents[pod]
            node["status"] = status
            node["last_heartbeat"] = rfc3339(heartbeat)
    return {"nodes": [nodes[k] for k in sorted(nodes)], "calls": [calls[k] for k in sorted(calls)]}
