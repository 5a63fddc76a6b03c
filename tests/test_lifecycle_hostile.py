"""Hostile agents and clients on the lifecycle streams and GET /cluster/lifecycle (issue 16).

Each case costs only its own stream, request or group: the endpoint still answers, by its
deadline, with what the honest agents sent, and never calls a group CONSISTENT on missing
evidence. Real gRPC and HTTP; every test bounded by `trio.fail_after`.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.errors import GrpcCode
from fodcproxy.lifecycle import LifecycleReportStream, RegistryStream
from fodcproxy.rpc.client import open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_LIFECYCLE
from fodcproxy.testing.http import http_get
from fodcproxy.testing.lifecycle import Group, SchemaWorld
from helpers import wait_for
from lifecycle_cluster import DATA0, DATA1, LIAISON, cluster, gauge, statuses

UNKNOWN = "CONSISTENCY_STATUS_UNKNOWN"
CONSISTENT = "CONSISTENCY_STATUS_CONSISTENT"


def errors_of(doc: dict, group: str) -> list[str]:
    return next(g for g in doc["groups"] if g["name"] == group)["errors"]


async def test_a_lifecycle_stream_from_another_connection_is_refused_and_the_owner_keeps_its_own():
    with trio.fail_after(30):
        async with cluster() as c:
            victim = c.agents[DATA0].agent_id
            owner_stream = c.hub.sessions[victim].stream(LifecycleReportStream)
            async with open_channel("127.0.0.1", c.proxy.addresses.grpc_port) as attacker:
                call = await attacker.start_call(STREAM_LIFECYCLE, pb.StreamLifecycleResponse,
                                                 metadata={"agent_id": victim})
                await call.send(pb.StreamLifecycleRequest(pod_name="forged"))
                assert await call.receive() is None
                assert call.status[0] == GrpcCode.PERMISSION_DENIED
            assert c.hub.sessions[victim].stream(LifecycleReportStream) is owner_stream
            _, _, doc = await c.get()
            assert doc["agent_summary"]["responded"] == 3
            assert "forged" not in [s["pod_name"] for s in doc["lifecycle_statuses"]]


async def test_unasked_messages_are_dropped():
    with trio.fail_after(30):
        # The fakes send their unasked messages as soon as their streams open.
        async with cluster(unasked=True) as c:
            _, _, doc = await c.get()
            reports = [r["filename"] for s in doc["lifecycle_statuses"] for r in s["reports"]]
            assert reports and "unasked.json" not in reports
            # the unasked registry reply (every group failed) was not taken for the answer
            assert set(statuses(doc).values()) == {CONSISTENT}
            assert all(g["errors"] == [] for g in doc["groups"])


async def test_registry_that_never_sends_done_is_unknown_by_the_deadline():
    with trio.fail_after(30):
        async with cluster(lifecycle_timeout=1.0) as c:
            c.registry[LIAISON].never_done = True
            _, _, doc = await c.get()
            assert doc["agent_summary"]["responded"] == 3  # the lifecycle data still came
            assert set(statuses(doc).values()) == {UNKNOWN}
            liaison = c.agents[LIAISON].agent_id
            assert errors_of(doc, "sw_stream") == [
                "registry unavailable: schema registry read failed on all 1 liaison agent(s): "
                f"agent {liaison} sent no complete registry reply within "
                "--lifecycle-timeout=1s"]
            # It answers in full again: the next collection drops the reply that comes (the tail
            # of the unfinished one cannot be told apart from it) up to its done ...
            c.registry[LIAISON].never_done = False
            _, _, doc = await c.get()
            assert set(statuses(doc).values()) == {UNKNOWN}
            # ... and the stream is in step again for the one after.
            _, _, doc = await c.get()
            assert set(statuses(doc).values()) == {CONSISTENT}


async def test_fatal_registry_read_fails_over_to_the_next_liaison():
    world = SchemaWorld.sample()
    world.liaisons.append("banyandb-liaison-1")
    with trio.fail_after(30):
        async with cluster(world, nodes=(LIAISON, "banyandb-liaison-1", DATA0, DATA1)) as c:
            first, second = sorted((c.agents[n].agent_id, n) for n in world.liaisons)
            c.registry[first[1]].fatal = "etcd: context deadline exceeded"
            _, headers, doc = await c.get()
            assert headers["x-fodc-registry-agent"] == second[0]
            assert set(statuses(doc).values()) == {CONSISTENT}
            c.registry[second[1]].fatal = "etcd: no leader"
            _, headers, doc = await c.get()
            assert "x-fodc-registry-agent" not in headers
            assert errors_of(doc, "sw_metric") == [
                "registry unavailable: schema registry read failed on all 2 liaison agent(s): "
                f"agent {second[0]} registry read failed: etcd: no leader"]


async def test_a_group_whose_registry_read_failed_is_unknown_with_its_reason():
    with trio.fail_after(30):
        async with cluster() as c:
            c.registry[LIAISON].group_errors = {"sw_stream": "list streams: permission denied"}
            _, _, doc = await c.get()
            assert statuses(doc)["sw_stream"] == UNKNOWN
            assert errors_of(doc, "sw_stream") == [
                "registry read failed: list streams: permission denied"]
            assert statuses(doc)["sw_metric"] == CONSISTENT
            sc = next(g for g in doc["groups"] if g["name"] == "sw_stream")["schema_consistency"]
            assert sc == {"status": UNKNOWN, "objects": [], "issues": []}


async def test_oversized_registry_reply_is_refused_and_bounded():
    with trio.fail_after(30):
        async with cluster(max_reply_bytes=64 * 1024) as c:
            c.registry[LIAISON].oversized = 100 * 1024  # in one chunk below the message limit
            _, _, doc = await c.get()
            assert set(statuses(doc).values()) == {UNKNOWN}
            (error,) = errors_of(doc, "sw_metric")
            assert "over --max-reply-bytes=65536 bytes" in error
            stream = c.hub.sessions[c.agents[LIAISON].agent_id].stream(RegistryStream)
            assert stream is not None  # the stream stays for the next collection
            c.registry[LIAISON].oversized = 0
            _, _, doc = await c.get()
            assert errors_of(doc, "sw_metric") == []


async def test_oversized_lifecycle_reply_counts_as_not_responded():
    with trio.fail_after(30):
        async with cluster(max_reply_bytes=64 * 1024) as c:
            c.lifecycle[DATA1].oversized = 100 * 1024
            _, headers, doc = await c.get()
            assert doc["agent_summary"]["not_responded"] == 1
            assert headers["x-fodc-agents-missed"] == c.agents[DATA1].agent_id
            assert set(statuses(doc).values()) == {UNKNOWN}


async def test_malformed_lifecycle_message_ends_that_stream_only():
    with trio.fail_after(30):
        async with cluster(lifecycle_timeout=20.0) as c:
            c.lifecycle[DATA1].malformed = True
            with trio.fail_after(10):  # its request fails at once, not at the deadline
                _, headers, doc = await c.get()
            assert doc["agent_summary"]["not_responded"] == 1
            assert headers["x-fodc-agents-missed"] == c.agents[DATA1].agent_id
            assert doc["agent_summary"]["responded"] == 2


async def test_malformed_registry_message_fails_over():
    world = SchemaWorld.sample()
    world.liaisons.append("banyandb-liaison-1")
    with trio.fail_after(30):
        async with cluster(world, nodes=(LIAISON, "banyandb-liaison-1", DATA0),
                           lifecycle_timeout=20.0) as c:
            first, second = sorted((c.agents[n].agent_id, n) for n in world.liaisons)
            c.registry[first[1]].malformed = True
            with trio.fail_after(10):
                _, headers, doc = await c.get()
            assert headers["x-fodc-registry-agent"] == second[0]


async def test_agent_leaving_mid_collection_is_not_waited_for():
    with trio.fail_after(30):
        async with cluster(lifecycle_timeout=60.0) as c:
            c.lifecycle[DATA1].delay = 60.0
            result: list[dict] = []

            async def ask() -> None:
                result.append((await c.get())[2])

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask)
                await wait_for(lambda: c.lifecycle[DATA1].requests == 1)
                c.agents[DATA1].drop()  # the connection is lost without a goodbye
            (doc,) = result
            assert doc["agent_summary"] == {"total": 3, "requested": 3, "responded": 2,
                                            "not_responded": 1}
            assert set(statuses(doc).values()) == {UNKNOWN}


async def test_http_timeouts_never_cut_a_collection_inside_its_deadline():
    with trio.fail_after(30):
        async with cluster(http_read_timeout=0.2, http_write_timeout=0.2,
                           lifecycle_timeout=10.0) as c:
            for fake in c.lifecycle.values():
                fake.delay = 1.0  # far beyond both HTTP timeouts
            status, _, doc = await c.get()
            assert status == 200
            assert doc["agent_summary"]["responded"] == 3


async def test_a_client_going_away_costs_one_collection_and_others_join_it():
    """The HTTP server does not cancel a handler whose client left: its collection runs to the
    deadline (bounded), and identical requests meanwhile join it instead of queueing."""
    with trio.fail_after(30):
        async with cluster(lifecycle_timeout=2.0) as c:
            c.lifecycle[DATA0].silent = True
            with trio.move_on_after(0.5):
                await http_get(c.proxy.http_url + "/cluster/lifecycle", timeout=30)
            docs: list[dict] = []

            async def ask() -> None:
                docs.append((await c.get())[2])

            async with trio.open_nursery() as nursery:
                for _ in range(3):
                    nursery.start_soon(ask)
            assert c.proxy.proxy.lifecycle.collections == 1  # all three joined the first
            assert [d["agent_summary"]["not_responded"] for d in docs] == [1, 1, 1]
            c.lifecycle[DATA0].silent = False
            _, _, doc = await c.get()
            assert doc["agent_summary"]["responded"] == 3
            assert c.proxy.proxy.lifecycle.collections == 2


HOSTILE = 'sw"\\n}\n{evil="1"} # HELP'


@pytest.mark.parametrize("om", [False, True], ids=["text", "openmetrics"])
async def test_hostile_group_name_cannot_break_the_exposition(om):
    world = SchemaWorld.sample()
    world.groups.append(Group(HOSTILE, "CATALOG_STREAM", {("group", HOSTILE): 5}))
    with trio.fail_after(30):
        async with cluster(world) as c:
            _, _, doc = await c.get()
            assert statuses(doc)[HOSTILE] == CONSISTENT
            headers = {"Accept": "application/openmetrics-text; version=1.0.0"} if om else {}
            r = await http_get(c.proxy.http_url + "/metrics", headers=headers)
            text = r.body.decode()
            if om:
                from prometheus_client.openmetrics.parser import \
                    text_string_to_metric_families as om_parse
                families = list(om_parse(text))
                values = {s.labels["group"]: s.value for f in families for s in f.samples
                          if s.name == "banyandb_fodc_schema_consistency_status"}
            else:
                values = {k[0][1]: v for k, v in
                          gauge(text, "banyandb_fodc_schema_consistency_status").items()}
                promtool = shutil.which("promtool")
                if promtool is None:
                    pytest.skip("promtool is not on PATH")
                out = subprocess.run([promtool, "check", "metrics"], input=text,
                                     capture_output=True, text=True, timeout=120)
                assert out.returncode in (0, 3), out.stdout + out.stderr
                assert "schema" not in out.stdout + out.stderr
            assert values[HOSTILE] == 1.0
            assert set(values) == {"sw_metric", "sw_stream", "sw_property", HOSTILE}


async def test_gauges_are_absent_until_a_collection_and_without_lifecycle_groups():
    with trio.fail_after(30):
        async with cluster(nodes=(DATA0,)) as c:
            text = (await http_get(c.proxy.http_url + "/metrics")).body.decode()
            assert "banyandb_fodc_schema" not in text
            _, _, doc = await c.get()  # no liaison: every group UNKNOWN, still a verdict
            assert errors_of(doc, "sw_metric") == [
                "registry unavailable: no schema-serving (liaison) agent available to read the "
                "registry"]
            values = gauge((await http_get(c.proxy.http_url + "/metrics")).body.decode(),
                           "banyandb_fodc_schema_consistency_status")
            assert set(values.values()) == {3.0}
            names = [f.name for f in text_string_to_metric_families(
                (await http_get(c.proxy.http_url + "/metrics")).body.decode())]
            assert names.count("banyandb_fodc_schema_consistency_status") == 1
            assert json.dumps(doc)  # the body is plain JSON
