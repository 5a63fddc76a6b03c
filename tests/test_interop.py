"""Interop with Google's gRPC stack (grpcio) as an independent client.

Two clients: one built from our proto (echoes request_id), and one built from the seed design's
proto (fields 1-15 only, so it cannot echo request_id and sends 0): the proxy must match its replies
to the single outstanding request.
"""

from __future__ import annotations

import importlib.util
import pathlib
import queue
import sys
import threading

import grpc
import pytest
import trio

from fodcproxy.core.model import LATEST
from fodcproxy.core.registry import AgentStatus
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.service import REGISTER, STREAM_METRICS

DATA = pathlib.Path(__file__).parent / "data"


@pytest.fixture(scope="session")
def seed_pb(tmp_path_factory):
    """Messages compiled (now, with grpc_tools) from the seed design's proto."""
    import grpc_tools
    from grpc_tools import protoc

    out = tmp_path_factory.mktemp("seed")
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    assert protoc.main(["protoc", f"-I{DATA}", f"-I{include}", f"--python_out={out}",
                        "seed_rpc.proto"]) == 0
    spec = importlib.util.spec_from_file_location("seed_rpc_pb2", out / "seed_rpc_pb2.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["seed_rpc_pb2"] = module
    spec.loader.exec_module(module)
    return module


class GrpcioAgent:
    """An agent on grpcio's blocking API, run in a thread."""

    def __init__(self, target: str, messages, *, role="liaison", port=17920, echo=True):
        self.target = target
        self.m = messages
        self.role, self.port, self.echo = role, port, echo
        self.registered = threading.Event()
        self.agent_id = ""
        self.acks = 0
        self.requests: list = []
        self.status = None
        self._reg_q: queue.Queue = queue.Queue()
        self._met_q: queue.Queue = queue.Queue()

    @staticmethod
    def _drain(q):
        while (item := q.get()) is not None:
            yield item

    def identity(self):
        m = self.m
        return m.RegisterAgentRequest(node_role=self.role, labels={"zone": "z1"},
                                      primary_address=m.Address(ip="127.0.0.1", port=self.port))

    def run(self):
        m = self.m
        with grpc.insecure_channel(self.target) as channel:
            register = channel.stream_stream(REGISTER, request_serializer=m.RegisterAgentRequest.SerializeToString,
                                             response_deserializer=m.RegisterAgentResponse.FromString)
            stream = channel.stream_stream(STREAM_METRICS, request_serializer=m.StreamMetricsRequest.SerializeToString,
                                           response_deserializer=m.StreamMetricsResponse.FromString)
            self._reg_q.put(self.identity())
            responses = register(self._drain(self._reg_q))
            first = next(responses)
            assert first.success, first.message
            self.agent_id = first.agent_id
            self._reg_q.put(self.identity())  # one heartbeat
            next(responses)
            self.acks += 1
            requests = stream(self._drain(self._met_q), metadata=(("agent_id", self.agent_id),))
            self.registered.set()
            try:
                for req in requests:
                    self.requests.append(req)
                    reply = m.StreamMetricsRequest(metrics=[
                        m.Metric(name="grpcio_requests_total", value=float(len(self.requests)),
                                 type=m.METRIC_TYPE_COUNTER, description="answered by grpcio",
                                 labels={"path": "/x"}),
                    ])
                    if self.echo:
                        reply.request_id = req.request_id
                    self._met_q.put(reply)
            except grpc.RpcError as exc:
                self.status = exc.code()
            self._met_q.put(None)
            for _ in responses:
                pass

    def goodbye(self):
        self._reg_q.put(None)


async def _run_agent(nursery, agent):
    nursery.start_soon(lambda: trio.to_thread.run_sync(agent.run, abandon_on_cancel=True))
    await trio.to_thread.run_sync(agent.registered.wait, abandon_on_cancel=True)


@pytest.mark.parametrize("flavour", ["ours", "seed"])
async def test_grpcio_agent_registers_heartbeats_and_answers(proxy, seed_pb, flavour):
    messages = pb if flavour == "ours" else seed_pb
    agent = GrpcioAgent(proxy.grpc_address, messages, echo=flavour == "ours")
    hub = proxy.proxy.hub
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            await _run_agent(nursery, agent)
            assert agent.acks == 1
            entry = proxy.proxy.registry.get(agent.agent_id)
            assert entry.status is AgentStatus.ONLINE
            assert dict(entry.identity.labels) == {"zone": "z1"}
            while hub.sessions[agent.agent_id].metrics_stream is None:
                await trio.sleep(0.01)
            for expected in (1.0, 2.0, 3.0):
                [result] = await hub.collect(hub.select(lambda m: True), LATEST, timeout=5)
                assert result.up, result.error
                [metric] = result.samples
                assert metric.name == "grpcio_requests_total" and metric.value == expected
                assert dict(metric.labels) == {"path": "/x"}
            if flavour == "ours":
                assert [r.request_id for r in agent.requests] == sorted({r.request_id for r in agent.requests})
            agent.goodbye()
            while proxy.proxy.registry.get(agent.agent_id) is not None:
                await trio.sleep(0.01)


async def test_grpcio_sees_unavailable_status_on_unknown_agent(proxy):
    def call():
        with grpc.insecure_channel(proxy.grpc_address) as channel:
            stream = channel.stream_stream(STREAM_METRICS, request_serializer=pb.StreamMetricsRequest.SerializeToString,
                                           response_deserializer=pb.StreamMetricsResponse.FromString)
            try:
                list(stream(iter([]), metadata=(("agent_id", "nobody"),)))
            except grpc.RpcError as exc:
                return exc.code(), exc.details()
        return None

    with trio.fail_after(20):
        code, details = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert "not registered" in details


async def test_grpcio_invalid_registration_gets_answer_and_status(proxy):
    def call():
        with grpc.insecure_channel(proxy.grpc_address) as channel:
            register = channel.stream_stream(REGISTER, request_serializer=pb.RegisterAgentRequest.SerializeToString,
                                             response_deserializer=pb.RegisterAgentResponse.FromString)
            got = []
            try:
                for resp in register(iter([pb.RegisterAgentRequest(node_role="", primary_address=pb.Address(ip="127.0.0.1", port=1))])):
                    got.append(resp)
            except grpc.RpcError as exc:
                return got, exc.code(), exc.details()
        return got, None, None

    with trio.fail_after(20):
        got, code, details = await trio.to_thread.run_sync(call, abandon_on_cancel=True)
    assert len(got) == 1 and not got[0].success and "node_role is empty" in got[0].message
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "node_role is empty" in details
