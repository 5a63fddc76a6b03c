"""Pod agents (upstream BanyanDB's agent today) in the sans-IO core: identity, role upgrades by
heartbeat, roles of both generations in filters and topology. Plain synchronous tests."""

from __future__ import annotations

import pytest

from fodcproxy.core import roles
from fodcproxy.core.model import Address, NodeMeta
from fodcproxy.core.query import Selection
from fodcproxy.core.registry import AgentStatus, PodIdentity, Registration, Registry
from fodcproxy.core.topology import NodeView, cluster_calls, cluster_json
from fodcproxy.errors import IdentityChanged, InvalidArgument
from fodcproxy.rpc import convert
from fodcproxy.rpc.convert import pb


def pod(name="banyandb-data-hot-0", role="ROLE_UNSPECIFIED", labels=None, containers=("data",)):
    return Registration.build_pod(pod_name=name, role=role, labels=labels,
                                  container_names=list(containers))


def registry() -> Registry:
    return Registry(heartbeat_timeout=30.0, cleanup_timeout=300.0)


# -- identity ----------------------------------------------------------------------------------


def test_pod_agent_id_depends_on_the_pod_alone():
    a = pod(role="ROLE_UNSPECIFIED").identity.agent_id
    assert a == pod(role="ROLE_DATA", labels={"type": "hot"}).identity.agent_id
    assert a != pod(name="banyandb-data-hot-1").identity.agent_id
    assert a.startswith("pod-") and len(a) == len("pod-") + 12
    # an address agent never shares an id with a pod agent
    addr = Registration.build(role="liaison", ip="10.0.0.1", port=17912).identity.agent_id
    assert not addr.startswith("pod-")


def test_registration_from_upstream_request_without_primary_address():
    req = pb.RegisterAgentRequest(node_role="ROLE_UNSPECIFIED", labels={"zone": "a"},
                                  pod_name="banyandb-liaison-0", container_names=["liaison"])
    reg = convert.registration_from_proto(req)
    assert reg.identity == PodIdentity("banyandb-liaison-0")
    assert (reg.role, reg.labels, reg.container_names) == (
        "ROLE_UNSPECIFIED", (("zone", "a"),), ("liaison",))
    # empty role: taken as unspecified (the agent says later)
    assert convert.registration_from_proto(
        pb.RegisterAgentRequest(pod_name="p")).role == "ROLE_UNSPECIFIED"


@pytest.mark.parametrize(("req", "words"), [
    (pb.RegisterAgentRequest(node_role="ROLE_DATA"), "neither primary_address nor pod_name"),
    (pb.RegisterAgentRequest(pod_name="bad pod/name"), "is not a pod name"),
    (pb.RegisterAgentRequest(pod_name="p" * 254), "is not a pod name"),
    (pb.RegisterAgentRequest(pod_name="p", container_names=["ok", ""]), "container name"),
    (pb.RegisterAgentRequest(pod_name="p", container_names=["c"] * 65), "container_names"),
    (pb.RegisterAgentRequest(pod_name="p", labels={"bad-label": "x"}), "label name"),
    (pb.RegisterAgentRequest(pod_name="p", node_role="ROLE DATA"), "node_role"),
])
def test_bad_pod_registrations_say_what_is_wrong(req, words):
    with pytest.raises(InvalidArgument, match=words):
        convert.registration_from_proto(req)


def test_primary_address_makes_an_address_agent_even_with_a_pod_name():
    req = convert.registration_to_proto(role="liaison", ip="10.0.0.1", port=17912)
    req.pod_name = "ignored"
    reg = convert.registration_from_proto(req)
    assert reg.identity.agent_id.startswith("liaison-")


# -- lifecycle ----------------------------------------------------------------------------------


def test_role_and_labels_follow_heartbeats_and_the_entry_follows():
    r = registry()
    owner = object()
    entry = r.register(pod(), owner=owner, now=0.0).entry
    assert entry.meta == NodeMeta(entry.agent_id, "ROLE_UNSPECIFIED", "", 0, (),
                                  "banyandb-data-hot-0", ("data",))
    assert entry.address is None and entry.pod_name == "banyandb-data-hot-0"
    r.heartbeat(entry.agent_id, pod(role="ROLE_DATA", labels={"type": "hot"},
                                    containers=("data", "lifecycle")), owner=owner, now=10.0)
    assert entry.role == "ROLE_DATA" and entry.labels == (("type", "hot"),)
    assert entry.meta.role == "ROLE_DATA" and entry.meta.container_names == ("data", "lifecycle")
    assert entry.last_heartbeat == 10.0


def test_a_heartbeat_with_another_pod_is_an_identity_change():
    r = registry()
    owner = object()
    entry = r.register(pod(), owner=owner, now=0.0).entry
    with pytest.raises(IdentityChanged, match="pod_name"):
        r.heartbeat(entry.agent_id, pod(name="other-pod"), owner=owner, now=1.0)


def test_two_connections_claiming_one_pod_take_over():
    r = registry()
    first, second = object(), object()
    entry = r.register(pod(), owner=first, now=0.0).entry
    res = r.register(pod(role="ROLE_DATA", labels={"type": "warm"}), owner=second, now=1.0)
    assert res.displaced is first and res.entry is entry and entry.owner is second
    assert entry.role == "ROLE_DATA" and entry.status is AgentStatus.ONLINE


# -- roles -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("role", "labels", "kind"), [
    ("liaison", (), roles.NodeKind(roles.LIAISON)),
    ("ROLE_LIAISON", (), roles.NodeKind(roles.LIAISON)),
    ("datanode-hot", (), roles.NodeKind(roles.DATA, "hot")),
    ("ROLE_DATA", (("type", "warm"),), roles.NodeKind(roles.DATA, "warm")),
    ("ROLE_DATA", (), roles.NodeKind(roles.DATA, "")),
    ("ROLE_DATA", (("type", "lukewarm"),), roles.NodeKind(roles.DATA, "")),
    ("ROLE_META", (), roles.NodeKind(roles.META)),
    ("ROLE_UNSPECIFIED", (), roles.NodeKind(roles.OTHER)),
    ("gateway", (), roles.NodeKind(roles.OTHER)),
])
def test_kinds(role, labels, kind):
    assert roles.kind_of(role, labels) == kind


@pytest.mark.parametrize(("wanted", "role", "labels", "selected"), [
    ("liaison", "ROLE_LIAISON", (), True),
    ("ROLE_LIAISON", "liaison", (), True),
    ("datanode-hot", "ROLE_DATA", (("type", "hot"),), True),
    ("datanode-hot", "ROLE_DATA", (("type", "cold"),), False),
    ("ROLE_DATA", "datanode-cold", (), True),
    ("ROLE_DATA", "ROLE_DATA", (("type", "hot"),), True),
    ("ROLE_DATA", "liaison", (), False),
    ("datanode", "datanode-hot", (), False),  # the same generation compares exactly
    ("ROLE_UNSPECIFIED", "gateway", (), False),
    ("gateway", "gateway", (), True),
])
def test_role_filters_understand_both_namings(wanted, role, labels, selected):
    meta = NodeMeta("a", role, "", 0, labels, "p")
    assert Selection(role=wanted).matches(meta) is selected


def test_pod_name_filter_and_address_filter():
    pod_meta = NodeMeta("a", "ROLE_DATA", "", 0, (), "banyandb-data-0")
    addr_meta = NodeMeta("b", "liaison", "10.0.0.1", 17912)
    assert Selection(pod_name="banyandb-data-0").matches(pod_meta)
    assert not Selection(pod_name="banyandb-data-0").matches(addr_meta)
    assert not Selection(ip="10.0.0.1").matches(pod_meta)  # a pod agent has no address
    assert Selection(ip="10.0.0.1").matches(addr_meta)


# -- topology of a mixed fleet -----------------------------------------------------------------


def view(agent_id, role, *, labels=None, pod_name="", ip=None):
    return NodeView(agent_id=agent_id, role=role,
                    primary_address=Address(ip, 17912) if ip else None,
                    secondary_addresses={}, labels=labels or {}, status="online",
                    last_heartbeat=1_795_838_905.0, registered_at=1_795_838_900.0,
                    pod_name=pod_name, container_names=("data",) if pod_name else ())


def test_calls_across_namings_and_tiers_from_labels():
    nodes = [
        view("L1", "liaison", ip="10.0.0.1"),
        view("L2", "ROLE_LIAISON", pod_name="banyandb-liaison-0"),
        view("H1", "ROLE_DATA", labels={"type": "hot"}, pod_name="banyandb-data-hot-0"),
        view("W1", "datanode-warm", ip="10.0.0.3"),
        view("C1", "ROLE_DATA", labels={"type": "cold"}, pod_name="banyandb-data-cold-0"),
        view("M1", "ROLE_META", pod_name="banyandb-meta-0"),
        view("U1", "ROLE_UNSPECIFIED", pod_name="starting-0"),
    ]
    calls = cluster_calls(nodes)
    query = {(c["source"], c["target"]) for c in calls if c["kind"] == "query"}
    assert query == {(src, dst) for src in ("L1", "L2") for dst in ("H1", "W1", "C1")}
    tier = [(c["source"], c["target"]) for c in calls if c["kind"] == "tier"]
    assert tier == [("H1", "W1"), ("W1", "C1")]


def test_cluster_json_shows_pod_agents_without_an_address():
    doc = cluster_json([view("H1", "ROLE_DATA", labels={"type": "hot"},
                             pod_name="banyandb-data-hot-0"),
                        view("L1", "liaison", ip="10.0.0.1")], now=1_795_838_910.0)
    by_id = {n["node_id"]: n for n in doc["nodes"]}
    assert by_id["H1"]["pod_name"] == "banyandb-data-hot-0"
    assert by_id["H1"]["container_names"] == ["data"]
    assert by_id["H1"]["primary_address"] is None
    assert "pod_name" not in by_id["L1"]
    assert by_id["L1"]["primary_address"] == {"ip": "10.0.0.1", "port": 17912}
