"""The agent's calls to the node against Google's gRPC server (grpcio, the C core; BanyanDB's nodes
run grpc-go), not only against our own server: the same fake node's answers, served from a
thread, reach the agent the same way, and a status error and an unimplemented method read the
same."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import grpc
import trio

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as db
from fodcproxy.agent.fingerprint import fingerprint
from fodcproxy.agent.lifecycle import LifecycleService, SchemaRegistryService
from fodcproxy.rpc.convert import pb

from lifecycle_fakes import drive, group
from test_agent_lifecycle import R1, S1, S1_DRIFTED, cluster_node, collector


def _handler(request_type: Any, fn: Any, *, stream: bool = False) -> Any:
    make = grpc.unary_stream_rpc_method_handler if stream else grpc.unary_unary_rpc_method_handler
    return make(fn, request_deserializer=request_type.FromString,
                response_serializer=lambda m: m.SerializeToString())


def grpcio_node(node: Any, *, failing_group: str = "") -> tuple[grpc.Server, int]:
    """The fake node's data served by grpcio; the rules of `failing_group` fail with INTERNAL."""

    def inspect(request: Any, context: Any) -> Any:
        return node.inspect

    def schema_state(request: Any, context: Any) -> Any:
        yield from node.schema_events

    def list_groups(request: Any, context: Any) -> Any:
        return db.GroupRegistryServiceListResponse(group=node.groups)

    def list_rules(request: Any, context: Any) -> Any:
        if request.group == failing_group:
            context.abort(grpc.StatusCode.INTERNAL, "rules unreadable")
        return db.IndexRuleRegistryServiceListResponse(index_rule=node.rules.get(request.group, []))

    def list_bindings(request: Any, context: Any) -> Any:
        return db.IndexRuleBindingRegistryServiceListResponse(
            index_rule_binding=node.bindings.get(request.group, []))

    def list_streams(request: Any, context: Any) -> Any:
        return db.StreamRegistryServiceListResponse(stream=node.streams.get(request.group, []))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    d = "banyandb.database.v1."
    server.add_generic_rpc_handlers((
        grpc.method_handlers_generic_handler("banyandb.fodc.v1.GroupLifecycleService", {
            "InspectAll": _handler(pb.InspectAllRequest, inspect)}),
        grpc.method_handlers_generic_handler(d + "NodeSchemaStateService", {
            "StreamGroupSchemaState": _handler(db.StreamGroupSchemaStateRequest, schema_state,
                                               stream=True)}),
        grpc.method_handlers_generic_handler(d + "GroupRegistryService", {
            "List": _handler(db.GroupRegistryServiceListRequest, list_groups)}),
        grpc.method_handlers_generic_handler(d + "IndexRuleRegistryService", {
            "List": _handler(db.IndexRuleRegistryServiceListRequest, list_rules)}),
        grpc.method_handlers_generic_handler(d + "IndexRuleBindingRegistryService", {
            "List": _handler(db.IndexRuleBindingRegistryServiceListRequest, list_bindings)}),
        grpc.method_handlers_generic_handler(d + "StreamRegistryService", {
            "List": _handler(db.StreamRegistryServiceListRequest, list_streams)}),
        # No MeasureRegistryService: a measure group's read is UNIMPLEMENTED.
    ))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    return server, port


async def test_both_streams_against_grpcio():
    node = cluster_node(groups=[group("sw"), group("bad"), group("sm", common_pb2.CATALOG_MEASURE)])
    server, port = grpcio_node(node, failing_group="bad")
    try:
        with trio.fail_after(20):
            c = collector(port)
            async with drive(LifecycleService(c, pod_name="liaison-0")) as proxy:
                lifecycle = await proxy.ask_lifecycle()
            async with drive(SchemaRegistryService(c)) as proxy:
                registry = await proxy.ask_registry()
    finally:
        server.stop(None)
    sw = lifecycle.lifecycle_data.groups[0]
    s1 = [o for o in sw.schema_consistency.objects if o.name == "s1"][0].node_fingerprints[0]
    assert (s1.cache_fingerprint, s1.runtime_fingerprint) == (fingerprint(S1, [R1]),
                                                              fingerprint(S1_DRIFTED, [R1]))
    by_group = {m.group.group: m.group for m in registry[:-1]}
    assert registry[-1].done and list(by_group) == ["sw", "bad", "sm"]
    assert {o.name: o.fingerprint for o in by_group["sw"].objects}["s1"] == fingerprint(S1, [R1])
    assert by_group["bad"].error == "list index rules of bad: INTERNAL: rules unreadable"
    assert by_group["sm"].error.startswith("list measures of sm: UNIMPLEMENTED")


async def test_inspect_all_unimplemented_on_grpcio_sends_reports_only():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))  # serves nothing
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with trio.fail_after(20):
            async with drive(LifecycleService(collector(port))) as proxy:
                got = await proxy.ask_lifecycle()
    finally:
        server.stop(None)
    assert not got.lifecycle_data.groups
