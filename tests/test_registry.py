"""The sans-IO registry: lifecycle at exact times, validation, limits, take-over."""

from __future__ import annotations

import pytest

from fodcproxy.core.model import Address, NodeConfig
from fodcproxy.core.registry import (
    AgentStatus,
    ChangeKind,
    Registration,
    RegistrationLimits,
    Registry,
)
from fodcproxy.errors import IdentityChanged, InvalidArgument, LimitExceeded


def reg(role="liaison", ip="10.0.0.1", port=17912, labels=None, **kw) -> Registration:
    return Registration.build(role=role, ip=ip, port=port, labels=labels, **kw)


def registry(**kw) -> Registry:
    kw.setdefault("heartbeat_timeout", 30.0)
    kw.setdefault("cleanup_timeout", 300.0)
    return Registry(**kw)


def test_agent_id_is_stable_and_depends_on_identity():
    a = reg(labels={"zone": "a"}).identity.agent_id
    assert a == reg(labels={"zone": "a"}).identity.agent_id
    assert a.startswith("liaison-")
    assert a != reg(labels={"zone": "b"}).identity.agent_id
    assert a != reg(labels={"zone": "a"}, port=17913).identity.agent_id
    assert a != reg(role="datanode-hot", labels={"zone": "a"}).identity.agent_id
    # label order does not matter
    assert (reg(labels={"a": "1", "b": "2"}).identity.agent_id
            == reg(labels={"b": "2", "a": "1"}).identity.agent_id)


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        (dict(role=""), "node_role is empty"),
        (dict(role="  "), "node_role is empty"),
        (dict(role="bad role!"), "is not valid"),
        (dict(ip=""), "ip is missing"),
        (dict(ip="not an ip!"), "neither an IP address nor a host name"),
        (dict(port=0), "outside 1-65535"),
        (dict(port=70000), "outside 1-65535"),
        (dict(labels={"bad-name": "x"}), "node_bad-name"),
        (dict(labels={"ok": "x" * 5000}), "at most 1024"),
        (dict(labels={f"k{i}": "v" for i in range(100)}), "at most 64"),
        (dict(secondary_addresses={"gossip": Address("", 1)}), "secondary_addresses['gossip'].ip"),
    ],
)
def test_validation_messages_name_the_problem(kwargs, fragment):
    with pytest.raises(InvalidArgument, match=None) as info:
        reg(**kwargs)
    assert fragment in info.value.message


def test_host_names_and_ipv6_are_accepted():
    assert reg(ip="node-1.example").identity.ip == "node-1.example"
    assert reg(ip="::1").identity.address.__str__() == "[::1]:17912"


def test_heartbeat_timeout_then_cleanup_at_exact_times():
    r = registry()
    owner = object()
    res = r.register(reg(), owner=owner, now=100.0)
    aid = res.entry.agent_id
    assert [c.kind for c in res.changes] == [ChangeKind.REGISTERED]
    assert r.next_deadline() == 130.0
    assert r.expire(129.999) == []
    # heartbeats keep it online and move the deadline
    assert r.heartbeat(aid, reg(), owner=owner, now=125.0) == []
    assert r.next_deadline() == 155.0
    changes = r.expire(155.0)
    assert [(c.kind, c.reason) for c in changes] == [(ChangeKind.OFFLINE, "heartbeat timeout")]
    assert r.get(aid).status is AgentStatus.OFFLINE
    assert r.get(aid).status.value == "unconnected"
    assert r.next_deadline() == 455.0
    assert r.expire(454.9) == []
    changes = r.expire(455.0)
    assert [c.kind for c in changes] == [ChangeKind.REMOVED]
    assert changes[0].owner is owner  # streams still open: the shell cancels them
    assert r.get(aid) is None and len(r) == 0
    assert r.next_deadline() is None


def test_heartbeat_brings_offline_agent_back():
    r = registry()
    owner = object()
    aid = r.register(reg(), owner=owner, now=0.0).entry.agent_id
    r.expire(31.0)
    changes = r.heartbeat(aid, reg(), owner=owner, now=32.0)
    assert [c.kind for c in changes] == [ChangeKind.ONLINE]
    assert r.get(aid).status is AgentStatus.ONLINE and r.get(aid).offline_since is None


def test_connection_lost_goes_offline_and_reregistration_keeps_the_id():
    r = registry()
    a, b = object(), object()
    aid = r.register(reg(), owner=a, now=0.0).entry.agent_id
    changes = r.disconnect(aid, owner=a, now=5.0, graceful=False)
    assert [(c.kind, c.reason) for c in changes] == [(ChangeKind.OFFLINE, "connection lost")]
    assert r.get(aid).offline_since == 5.0
    res = r.register(reg(), owner=b, now=6.0)
    assert res.entry.agent_id == aid and res.displaced is None
    assert [c.kind for c in res.changes] == [ChangeKind.ONLINE]
    assert len(r) == 1


def test_goodbye_removes_at_once():
    r = registry()
    a = object()
    aid = r.register(reg(), owner=a, now=0.0).entry.agent_id
    changes = r.disconnect(aid, owner=a, now=1.0, graceful=True)
    assert [(c.kind, c.reason) for c in changes] == [(ChangeKind.REMOVED, "goodbye")]
    assert len(r) == 0


def test_take_over_names_the_displaced_owner_and_ignores_it_afterwards():
    r = registry()
    a, b = object(), object()
    aid = r.register(reg(), owner=a, now=0.0).entry.agent_id
    res = r.register(reg(), owner=b, now=1.0)
    assert res.displaced is a
    assert r.statistics().takeovers == 1
    # the old connection's heartbeats and disconnect no longer count
    assert r.heartbeat(aid, reg(), owner=a, now=2.0) == []
    assert r.disconnect(aid, owner=a, now=3.0, graceful=True) == []
    assert r.get(aid).owner is b and r.get(aid).status is AgentStatus.ONLINE


def test_changed_identity_on_heartbeat_is_refused():
    r = registry()
    a = object()
    aid = r.register(reg(), owner=a, now=0.0).entry.agent_id
    with pytest.raises(IdentityChanged):
        r.heartbeat(aid, reg(port=1), owner=a, now=1.0)


def test_heartbeat_updates_node_config():
    r = registry()
    a = object()
    aid = r.register(reg(), owner=a, now=0.0).entry.agent_id
    cfg = NodeConfig(startup_params={"x": "1"})
    r.heartbeat(aid, reg(node_config=cfg), owner=a, now=1.0)
    assert r.get(aid).node_config == cfg


def test_max_agents_counts_offline_entries_but_not_takeovers():
    r = registry(max_agents=2)
    a, b, c = object(), object(), object()
    r.register(reg(port=1), owner=a, now=0.0)
    aid2 = r.register(reg(port=2), owner=b, now=0.0).entry.agent_id
    r.metrics_attached(aid2, owner=b)  # a real agent: it carried a metrics stream
    r.disconnect(aid2, owner=b, now=1.0, graceful=False)  # offline still counts
    with pytest.raises(LimitExceeded, match="--max-agents=2") as info:
        r.register(reg(port=3), owner=c, now=2.0)
    assert "carried a metrics stream" in info.value.message
    assert "--agent-cleanup-timeout" in info.value.message
    # same identity again is not a new entry
    assert r.register(reg(port=1), owner=c, now=2.0).displaced is a
    assert r.statistics().refusals == 1
    # once cleaned up there is room
    r.expire(1000.0)
    r.register(reg(port=3), owner=object(), now=1000.0)


def test_registry_rejects_inconsistent_timeouts():
    with pytest.raises(ValueError):
        Registry(heartbeat_timeout=30, cleanup_timeout=30)
    with pytest.raises(ValueError):
        Registry(heartbeat_timeout=0, cleanup_timeout=30)


def test_wall_clock_conversion():
    r = registry(wall_offset=1_700_000_000.0)
    assert r.wall(5.0) == 1_700_000_005.0


# -- lock-out: offline entries that never carried a metrics stream yield their slot ----------------


def test_offline_entries_without_metrics_stream_yield_their_slot_oldest_first():
    r = registry(max_agents=3)
    junk = [object() for _ in range(3)]
    ids = [r.register(reg(port=10 + i), owner=o, now=float(i)).entry.agent_id
           for i, o in enumerate(junk)]
    # dropped without a goodbye, the second one first
    for now, i in enumerate((1, 0, 2)):
        r.disconnect(ids[i], owner=junk[i], now=10.0 + now, graceful=False)
    res = r.register(reg(port=1), owner=object(), now=20.0)
    assert res.evicted == ids[1]  # offline since 10.0: the oldest
    assert [(c.kind, c.agent_id) for c in res.changes] == [
        (ChangeKind.REMOVED, ids[1]), (ChangeKind.REGISTERED, res.entry.agent_id)]
    assert "never carried a metrics stream" in res.changes[0].reason
    assert r.get(ids[1]) is None and len(r) == 3
    assert r.register(reg(port=2), owner=object(), now=21.0).evicted == ids[0]
    assert r.register(reg(port=3), owner=object(), now=22.0).evicted == ids[2]
    assert r.statistics().removals == 3
    # now only online entries: full
    with pytest.raises(LimitExceeded, match="--max-agents=3"):
        r.register(reg(port=4), owner=object(), now=23.0)


def test_online_and_attached_entries_keep_their_slot():
    r = registry(max_agents=2)
    a, b = object(), object()
    online = r.register(reg(port=1), owner=a, now=0.0).entry.agent_id  # never attached, online
    real = r.register(reg(port=2), owner=b, now=0.0).entry.agent_id
    r.metrics_attached(real, owner=b)
    r.disconnect(real, owner=b, now=1.0, graceful=False)
    with pytest.raises(LimitExceeded):
        r.register(reg(port=3), owner=object(), now=2.0)
    assert r.get(online) is not None and r.get(real) is not None


def test_metrics_attached_is_kept_across_reregistration_and_ignores_others():
    r = registry(max_agents=1)
    a, b, stranger = object(), object(), object()
    aid = r.register(reg(port=1), owner=a, now=0.0).entry.agent_id
    r.metrics_attached(aid, owner=stranger)  # not the owner: ignored
    assert not r.get(aid).metrics_attached
    r.metrics_attached(aid, owner=a)
    r.register(reg(port=1), owner=b, now=1.0)  # taken over: still a real agent
    r.disconnect(aid, owner=b, now=2.0, graceful=False)
    with pytest.raises(LimitExceeded):
        r.register(reg(port=2), owner=object(), now=3.0)


def test_timed_out_entry_with_open_stream_yields_and_names_its_owner():
    r = registry(max_agents=1)
    a = object()
    aid = r.register(reg(port=1), owner=a, now=0.0).entry.agent_id
    r.expire(30.0)  # no heartbeat: offline, its stream (owner) still open
    res = r.register(reg(port=2), owner=object(), now=31.0)
    assert res.evicted == aid and res.changes[0].owner is a  # the shell cancels it


# -- size caps ------------------------------------------------------------------------------------


def test_secondary_address_caps_name_their_flags():
    limits = RegistrationLimits(max_secondary_addresses=2, max_secondary_address_key_length=8)
    ok = {"a": Address("10.0.0.1", 1), "b": Address("10.0.0.2", 2)}
    assert len(reg(secondary_addresses=ok, limits=limits).secondary_addresses) == 2
    three = dict(ok, c=Address("10.0.0.3", 3))
    with pytest.raises(LimitExceeded, match="--max-secondary-addresses") as info:
        reg(secondary_addresses=three, limits=limits)
    assert "3 secondary_addresses: at most 2" in info.value.message
    with pytest.raises(LimitExceeded, match="--max-secondary-address-key-length") as info:
        reg(secondary_addresses={"é" * 5: Address("10.0.0.1", 1)}, limits=limits)  # 10 bytes
    assert "10 bytes: at most 8" in info.value.message
    with pytest.raises(InvalidArgument, match="at most 255"):
        reg(secondary_addresses={"a": Address("h" * 300, 1)}, limits=limits)


def test_default_limits_refuse_what_the_issue_sent():
    many = {f"k{i}": Address("10.0.0.1", 1) for i in range(65)}
    with pytest.raises(LimitExceeded, match="--max-secondary-addresses"):
        reg(secondary_addresses=many)
    with pytest.raises(LimitExceeded, match="--max-secondary-address-key-length"):
        reg(secondary_addresses={"k" * 257: Address("10.0.0.1", 1)})
    with pytest.raises(InvalidArgument, match="label name is 2000 characters"):
        reg(labels={"k" * 2000: "v"})


def test_manual_removal_names_the_owner_and_frees_the_slot():
    r = registry(max_agents=1)
    a = object()
    aid = r.register(reg(), owner=a, now=0.0).entry.agent_id
    assert r.remove("nobody", reason="by hand") == []
    [change] = r.remove(aid, reason="removed by an operator")
    assert (change.kind, change.agent_id, change.reason, change.owner) == (
        ChangeKind.REMOVED, aid, "removed by an operator", a)
    assert r.get(aid) is None and r.statistics().removals == 1
    assert r.disconnect(aid, owner=a, now=1.0, graceful=False) == []  # its streams ending later
    assert r.next_deadline() is None
    r.register(reg(port=1), owner=object(), now=2.0)  # the slot is free again
    # an offline entry can be removed too; its owner is gone, so there is nothing to cancel
    b = object()
    bid = r.register(reg(port=1), owner=b, now=3.0).entry.agent_id
    r.disconnect(bid, owner=b, now=4.0, graceful=False)
    [change] = r.remove(bid, reason="x")
    assert change.owner is None
