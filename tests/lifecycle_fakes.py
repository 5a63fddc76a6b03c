"""An in-process fake of a BanyanDB node's lifecycle side, served over real gRPC on 127.0.0.1:
GroupLifecycleService.InspectAll and NodeSchemaStateService.StreamGroupSchemaState (the node's
lifecycle port), and the registry services' List methods (a liaison's client port).

Each method's behaviour is a field the test sets: what to answer, an error status, or to hang.
Also a stand-in for the proxy's two streams (`ProxySide`): a GrpcServer whose handlers send
request_lifecycle / request_registry and collect what the agent answers.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import trio
from google.protobuf import any_pb2

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as db
from fodcproxy._proto.banyandb.database.v1 import schema_pb2
from fodcproxy.errors import FodcError, GrpcCode
from fodcproxy.rpc.client import ClientCall, open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_LIFECYCLE, STREAM_SCHEMA_REGISTRY
from fodcproxy.rpc.server import GrpcServer, Method, ServerCall

HANG = "hang"


def status(code: GrpcCode, message: str) -> FodcError:
    err = FodcError(message)
    err.grpc_code = code
    return err


def any_of(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def snapshot(group: str, kind: str, name: str, cache: Any, runtime: Any = None,
             cache_refs: tuple[int, ...] = (), runtime_refs: tuple[int, ...] = ()) -> Any:
    obj = db.ObjectSnapshot(group=group, kind=kind, name=name,
                            cache=db.SchemaBody(payload=any_of(cache),
                                                bound_index_rule_refs=cache_refs))
    if runtime is not None:
        obj.runtime.CopyFrom(db.SchemaBody(payload=any_of(runtime),
                                           bound_index_rule_refs=runtime_refs))
    return db.StreamGroupSchemaStateResponse(object=obj)


def rule(group: str, name: str, *tags: str) -> schema_pb2.IndexRule:
    return schema_pb2.IndexRule(metadata=common_pb2.Metadata(group=group, name=name),
                                tags=list(tags or ("t",)), type=schema_pb2.IndexRule.TYPE_INVERTED)


def stream(group: str, name: str, *tags: str) -> schema_pb2.Stream:
    return schema_pb2.Stream(
        metadata=common_pb2.Metadata(group=group, name=name),
        tag_families=[schema_pb2.TagFamilySpec(name="default", tags=[
            schema_pb2.TagSpec(name=t, type=schema_pb2.TAG_TYPE_STRING) for t in tags or ("id",)])],
        entity=schema_pb2.Entity(tag_names=[(tags or ("id",))[0]]))


def group(name: str, catalog: int = common_pb2.CATALOG_STREAM) -> common_pb2.Group:
    return common_pb2.Group(metadata=common_pb2.Metadata(name=name), catalog=catalog,
                            resource_opts=common_pb2.ResourceOpts(shard_num=2))


def binding(group_name: str, subject: str, *rules: str,
            catalog: int = common_pb2.CATALOG_STREAM) -> schema_pb2.IndexRuleBinding:
    return schema_pb2.IndexRuleBinding(
        metadata=common_pb2.Metadata(group=group_name, name=f"{subject}-binding"),
        rules=list(rules), subject=schema_pb2.Subject(catalog=catalog, name=subject))


@attrs.define
class FakeNode:
    """What the fake answers. A field set to HANG never answers; to a FodcError, fails with its
    status; a method named in `unimplemented` is not served (UNIMPLEMENTED)."""

    inspect: Any = attrs.field(factory=pb.InspectAllResponse)
    schema_events: Any = attrs.field(factory=list)  # a list of events, or HANG, or a FodcError
    groups: Any = attrs.field(factory=list)  # the registry's groups, or HANG / a FodcError
    rules: dict[str, list[Any]] = attrs.field(factory=dict)
    bindings: dict[str, list[Any]] = attrs.field(factory=dict)
    streams: dict[str, list[Any]] = attrs.field(factory=dict)
    measures: dict[str, list[Any]] = attrs.field(factory=dict)
    failing: dict[str, Any] = attrs.field(factory=dict)  # group -> HANG or FodcError on its rules
    unimplemented: set[str] = attrs.field(factory=set)
    calls: list[str] = attrs.field(factory=list)

    async def _behave(self, what: Any) -> None:
        if isinstance(what, str) and what == HANG:
            await trio.sleep_forever()
        if isinstance(what, FodcError):
            raise what

    def methods(self) -> dict[str, Method]:
        def unary(path: str, request_type: Any, answer: Callable[[Any], Any]) -> Method:
            async def handler(call: ServerCall) -> None:
                request = await call.receive()
                service, method = path.rsplit("/", 2)[1:]
                self.calls.append(f"{service.rsplit('.', 1)[-1]}/{method}")
                await call.send(await answer(request))
            return Method(request_type, handler)

        async def inspect(_: Any) -> Any:
            await self._behave(self.inspect)
            return self.inspect

        async def list_groups(_: Any) -> Any:
            await self._behave(self.groups)
            return db.GroupRegistryServiceListResponse(group=self.groups)

        async def list_rules(req: Any) -> Any:
            await self._behave(self.failing.get(req.group))
            return db.IndexRuleRegistryServiceListResponse(index_rule=self.rules.get(req.group, []))

        async def list_bindings(req: Any) -> Any:
            return db.IndexRuleBindingRegistryServiceListResponse(
                index_rule_binding=self.bindings.get(req.group, []))

        async def list_streams(req: Any) -> Any:
            return db.StreamRegistryServiceListResponse(stream=self.streams.get(req.group, []))

        async def list_measures(req: Any) -> Any:
            return db.MeasureRegistryServiceListResponse(measure=self.measures.get(req.group, []))

        async def schema_state(call: ServerCall) -> None:
            await call.receive()
            self.calls.append("NodeSchemaStateService/StreamGroupSchemaState")
            await self._behave(self.schema_events)
            for event in self.schema_events:
                await call.send(event)

        d = "/banyandb.database.v1."
        methods = {
            "/banyandb.fodc.v1.GroupLifecycleService/InspectAll":
                unary("/banyandb.fodc.v1.GroupLifecycleService/InspectAll", pb.InspectAllRequest,
                      inspect),
            d + "NodeSchemaStateService/StreamGroupSchemaState":
                Method(db.StreamGroupSchemaStateRequest, schema_state),
            d + "GroupRegistryService/List":
                unary(d + "GroupRegistryService/List", db.GroupRegistryServiceListRequest,
                      list_groups),
            d + "IndexRuleRegistryService/List":
                unary(d + "IndexRuleRegistryService/List", db.IndexRuleRegistryServiceListRequest,
                      list_rules),
            d + "IndexRuleBindingRegistryService/List":
                unary(d + "IndexRuleBindingRegistryService/List",
                      db.IndexRuleBindingRegistryServiceListRequest, list_bindings),
            d + "StreamRegistryService/List":
                unary(d + "StreamRegistryService/List", db.StreamRegistryServiceListRequest,
                      list_streams),
            d + "MeasureRegistryService/List":
                unary(d + "MeasureRegistryService/List", db.MeasureRegistryServiceListRequest,
                      list_measures),
        }
        return {k: v for k, v in methods.items()
                if not any(k.endswith(u) for u in self.unimplemented)}


@contextlib.asynccontextmanager
async def serve(methods: dict[str, Method], *, max_message_length: int = 64 * 1024 * 1024
                ) -> AsyncIterator[int]:
    """Serve `methods` on 127.0.0.1; yields the port."""
    server = GrpcServer(methods, max_message_length=max_message_length)
    async with trio.open_nursery() as nursery:
        _, port = await nursery.start(server.serve, "127.0.0.1", 0)
        yield port
        nursery.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def open_fake_node(node: FakeNode, **kw: Any) -> AsyncIterator[int]:
    async with serve(node.methods(), **kw) as port:
        yield port


class ProxySide:
    """The proxy's end of StreamLifecycle and StreamSchemaRegistry, for one agent service:
    `ask()` sends one command and returns what the agent answered (for the registry: every
    message up to and including `done`)."""

    def __init__(self) -> None:
        self.call: ServerCall | None = None
        self.connected = trio.Event()
        self.received: trio.MemorySendChannel[Any]
        self.received, self._inbox = trio.open_memory_channel[Any](1000)
        self.closed = trio.Event()
        self.served = trio.Event()  # the agent's serve() returned

    def methods(self) -> dict[str, Method]:
        async def handler(call: ServerCall) -> None:
            self.call = call
            self.connected.set()
            try:
                while (msg := await call.receive()) is not None:
                    await self.received.send(msg)
            finally:
                self.closed.set()
        return {STREAM_LIFECYCLE: Method(pb.StreamLifecycleRequest, handler),
                STREAM_SCHEMA_REGISTRY: Method(pb.StreamSchemaRegistryRequest, handler)}

    async def ask_lifecycle(self) -> Any:
        assert self.call is not None
        await self.call.send(pb.StreamLifecycleResponse(request_lifecycle=True))
        return await self._inbox.receive()

    async def ask_registry(self) -> list[Any]:
        assert self.call is not None
        await self.call.send(pb.StreamSchemaRegistryResponse(request_registry=True))
        out = []
        while True:
            msg = await self._inbox.receive()
            out.append(msg)
            if msg.done:
                return out

    def pending(self) -> int:
        return self._inbox.statistics().current_buffer_used


@contextlib.asynccontextmanager
async def drive(service: Any) -> AsyncIterator[ProxySide]:
    """Run `service` (an AgentService) on a real gRPC call to a test-side proxy handler."""
    side = ProxySide()
    async with serve(side.methods()) as port, open_channel("127.0.0.1", port) as channel:
        call: ClientCall = await channel.start_call(service.method, service.response_type,
                                                    metadata={"agent_id": "test"})
        async def run() -> None:
            await service.serve(call)
            side.served.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run)
            await side.connected.wait()  # the call's headers have reached the handler
            yield side
            nursery.cancel_scope.cancel()
