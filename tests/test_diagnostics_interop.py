"""Crash records and pressure profiles from an agent built from upstream's own proto with grpcio
(`tests/upstream_agent.py`), answering as upstream's Go agent does: one message per crash record
and no end marker; records then list_complete; chunks of at most 1 MiB, the last one empty. Our
proxy serves what it sends, byte-exact, and our cancel extension is answered by upstream's agent
with an error chunk that the proxy drops."""

from __future__ import annotations

import os

import pytest
import trio
from google.protobuf.timestamp_pb2 import Timestamp

from fodcproxy.core.diagnostics import CancelFetch
from fodcproxy.diagnostics import PressureProfilesStream
from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get
from helpers import wait_for
from test_upstream_agents import Running
from upstream_agent import UPSTREAM, UpstreamLikeAgent, compile_upstream

pytestmark = pytest.mark.skipif(not UPSTREAM.exists(),
                                reason="upstream's proto (../shared/upstream) is not beside the checkout")

STREAMS = ("StreamMetrics", "StreamClusterTopology", "StreamCrashDiagnostics",
           "StreamPressureProfiles")


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    return compile_upstream(tmp_path_factory.mktemp("upstream"))


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


def crash(m, artifact_dir: str):
    return m.StreamCrashDiagnosticsRequest(
        fetched_at=_ts(1_790_000_001), source_endpoint="/var/crash", artifact_dir=artifact_dir,
        files=["panic.json"], panic_record=m.CrashPanicRecord(
            occurred_at=_ts(1_790_000_000, 120_000_000), component="liaison",
            panic_value="boom", goroutine_stack="goroutine 7 [running]:\n"))


async def test_upstream_agent_crash_records_are_served(up):
    agent = UpstreamLikeAgent("127.0.0.1:0", up, pod_name="liaison-0", role="ROLE_LIAISON",
                              streams=STREAMS, crash_records=(crash(up, "/a/1"), crash(up, "/a/2")))
    with trio.fail_after(30):
        async with open_proxy(heartbeat_interval=1.0) as proxy:
            agent.target = proxy.grpc_address
            async with Running(agent):
                r = await http_get(proxy.http_url + "/diagnostics?role=liaison")
                assert r.status == 200
                body = r.json()
                assert [d["artifact_dir"] for d in body] == ["/a/1", "/a/2"]
                rec = body[0]
                assert rec["role"] == "ROLE_LIAISON" and rec["pod_name"] == "liaison-0"
                assert rec["fetched_at"] == "2026-09-21T14:13:21Z"
                assert rec["panic_record"]["occurred_at"] == "2026-09-21T14:13:20.12Z"
                assert "breadcrumbs" not in rec["panic_record"]  # omitted when empty, as upstream
                assert r.headers["x-fodc-agents-answered"] == "1"
                assert agent.diagnostics_requests == 1


async def test_upstream_agent_profiles_listed_and_downloaded_byte_exact(up):
    heap = os.urandom((2 << 20) + 333)
    record = up.PressureProfileRecord(
        profile_id="20260921T141320.000000000Z", captured_at=_ts(1_790_000_000),
        source_endpoint="http://localhost:6060", rss_bytes=900, cgroup_limit_bytes=1000,
        trigger_percent=75, threshold_bytes=750,
        profiles=[up.PressureProfileInfo(type="heap", filename="heap.pprof",
                                         filepath="/tmp/pressure-profiles/x/heap.pprof",
                                         format="pprof", size_bytes=len(heap))])
    agent = UpstreamLikeAgent("127.0.0.1:0", up, pod_name="data-0", role="ROLE_DATA",
                              streams=STREAMS,
                              profiles={record.profile_id: (record, {"heap": heap})})
    with trio.fail_after(30):
        async with open_proxy(heartbeat_interval=1.0) as proxy:
            agent.target = proxy.grpc_address
            async with Running(agent):
                r = await http_get(proxy.http_url + "/pressure-profiles")
                (doc,) = r.json()
                assert doc["profiles"][0]["filepath"] == "/tmp/pressure-profiles/x/heap.pprof"
                assert doc["threshold_bytes"] == 750
                url = (proxy.http_url + "/pressure-profiles/data-0/"
                       "20260921T141320.000000000Z/heap")
                d = await http_get(url)
                assert d.status == 200 and d.body == heap
                assert d.headers["content-disposition"] == (
                    'attachment; filename="data-0-ROLE_DATA-20260921T141320.000000000Z-heap.pprof"')
                # Upstream's agent answers our cancel (empty profile id, type, path) with an
                # error chunk of that request id: nobody waits for it, it is dropped and counted.
                stream = proxy.proxy.hub.sessions[agent.agent_id].stream(PressureProfilesStream)
                await stream._send(0, CancelFetch("fetch-1"))
                await wait_for(lambda: stream.unasked_chunks == 1)
                # And the stream still answers.
                assert len((await http_get(proxy.http_url + "/pressure-profiles")).json()) == 1


@pytest.mark.parametrize("method", ["StreamCrashDiagnostics", "StreamPressureProfiles"])
async def test_a_diagnostics_stream_from_another_connection_is_refused(up, method):
    import grpc
    import threading

    with trio.fail_after(30):
        async with open_proxy() as proxy:
            async with Running(UpstreamLikeAgent(proxy.grpc_address, up, pod_name="data-0",
                                                 streams=STREAMS)) as agent:
                done = threading.Event()
                req = getattr(up, method + "Request")
                resp = getattr(up, method + "Response")

                def nothing():
                    done.wait(10)
                    yield from ()

                def hijack() -> grpc.StatusCode:
                    options = [("grpc.use_local_subchannel_pool", 1)]
                    with grpc.insecure_channel(proxy.grpc_address, options=options) as channel:
                        call = channel.stream_stream(
                            "/banyandb.fodc.v1.FODCService/" + method,
                            request_serializer=req.SerializeToString,
                            response_deserializer=resp.FromString)
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
                # The real agent's streams still answer.
                r = await http_get(proxy.http_url + "/pressure-profiles")
                assert r.headers["x-fodc-agents-answered"] == "1"
