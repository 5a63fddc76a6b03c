"""Fake StreamLifecycle and StreamSchemaRegistry services for fake pod agents (issue 16).

A `SchemaWorld` is a small BanyanDB cluster as the lifecycle endpoint sees it: groups with their
registry objects, data nodes holding segments of them, and each node's cache and runtime
fingerprints, which start equal to the registry's and can be made to drift (`drift`, `forget`,
`orphan`). Give each fake pod agent the services of its node:

    world = SchemaWorld.sample()  # groups sw_metric, sw_stream, sw_property on 2 data nodes
    lifecycle = FakeLifecycle(world, node="data-0")      # answers request_lifecycle
    registry = FakeRegistry(world)                          # answers request_registry (liaisons)
    async with open_fake_agent(addr, role="ROLE_DATA", pod_name="data-0",
                               services=[lifecycle, registry]) as agent: ...
    world.drift("data-0", "sw_stream", "stream", "segment")   # the next rounds see it drift

As upstream's agents do, a liaison's lifecycle answer carries every data node's `data_info`
(what its InspectAll sees), a data node's only its own; each sends the schema partial of its own
node. Hostile knobs, on the service objects, may be changed at any time:
`FakeLifecycle`: `silent` (never answers), `delay`, `unasked` (an answer with a report named
`unasked.json`, sent as soon as the stream opens), `malformed` (answers are not protobuf),
`oversized` (bytes of padding in a report); `FakeRegistry`: `never_done`, `fatal` (the whole
read fails), `group_errors`, `malformed`, `oversized` (bytes of padding in a last chunk),
`unasked` (every group failed with "unasked", then done, as soon as the stream opens),
`chunk_size` (objects per message; upstream's agent sends 50).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs
import trio

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import database_pb2, rpc_pb2 as db
from fodcproxy.rpc.client import ClientCall
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import STREAM_LIFECYCLE, STREAM_SCHEMA_REGISTRY

__all__ = ["FakeLifecycle", "FakeRegistry", "SchemaWorld", "demo_world", "services_for"]

ObjectId = tuple[str, str]  # (kind, name)


@attrs.define
class Group:
    name: str
    catalog: str  # CATALOG_STREAM, CATALOG_MEASURE, CATALOG_PROPERTY, ...
    objects: dict[ObjectId, int]  # the registry's fingerprints
    shards: int = 2
    segments: int = 2  # per data node
    size_per_shard: int = 4 * 1024 * 1024


@attrs.define
class SchemaWorld:
    """A cluster: groups, data nodes, and what each node holds of each group's schema."""

    groups: list[Group]
    data_nodes: list[str]
    liaisons: list[str] = attrs.Factory(list)
    # (node, group, kind, name) -> (cache, runtime) where a node differs from the registry;
    # None: the node does not hold the object at all.
    overrides: dict[tuple[str, str, str, str], tuple[int, int] | None] = attrs.Factory(dict)

    @classmethod
    def sample(cls) -> SchemaWorld:
        return cls(
            groups=[
                Group("sw_metric", "CATALOG_MEASURE", {
                    ("group", "sw_metric"): 11, ("measure", "service_cpm_minute"): 1101,
                    ("measure", "endpoint_resp_time"): 1102, ("indexRule", "service_id"): 1103}),
                Group("sw_stream", "CATALOG_STREAM", {
                    ("group", "sw_stream"): 22, ("stream", "segment"): 2201,
                    ("stream", "log"): 2202, ("indexRule", "trace_id"): 2203}, shards=3),
                Group("sw_property", "CATALOG_PROPERTY", {
                    ("group", "sw_property"): 33, ("property", "ui_template"): 3301}, shards=1,
                    segments=1),
            ],
            data_nodes=["banyandb-data-hot-0", "banyandb-data-hot-1"],
            liaisons=["banyandb-liaison-0"],
        )

    # -- drift on tap ----------------------------------------------------------------------

    def drift(self, node: str, group: str, kind: str, name: str, *,
              runtime_only: bool = False) -> None:
        """The node's cache (or only its runtime) of one object differs from the registry."""
        fp = self.group(group).objects[(kind, name)]
        key = (node, group, kind, name)
        self.overrides[key] = (fp, fp + 7) if runtime_only else (fp + 7, fp + 7)

    def forget(self, node: str, group: str, kind: str, name: str) -> None:
        """The node does not hold the object (MISSING_IN_CACHE)."""
        self.overrides[(node, group, kind, name)] = None

    def orphan(self, node: str, group: str, kind: str, name: str, fp: int = 999) -> None:
        """The node holds an object the registry does not have (ORPHAN)."""
        self.overrides[(node, group, kind, name)] = (fp, fp)

    def heal(self) -> None:
        self.overrides.clear()

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    # -- what a node reports -----------------------------------------------------------------

    def node_objects(self, node: str, group: Group) -> list[tuple[str, str, int, int]]:
        out = []
        for (kind, name), fp in group.objects.items():
            o = self.overrides.get((node, group.name, kind, name), (fp, fp))
            if o is not None:
                out.append((kind, name, *o))
        for (n, g, kind, name), o in self.overrides.items():
            extra = (kind, name) not in group.objects
            if n == node and g == group.name and extra and o is not None:
                out.append((kind, name, *o))
        return out

    def data_info(self, node: str, group: Group) -> Any:
        segments = []
        for s in range(group.segments):
            shards = [db.ShardInfo(
                shard_id=i, data_count=1000 * (i + 1), data_size_bytes=group.size_per_shard,
                part_count=3, file_part_count=2) for i in range(group.shards)]
            segments.append(db.SegmentInfo(
                segment_id=f"seg-2026112{8 + s}", time_range_start=f"2026-11-2{8 + s}T00:00:00Z",
                time_range_end=f"2026-11-2{9 + s}T00:00:00Z", shard_info=shards,
                series_index_info=db.SeriesIndexInfo(data_count=50,
                                                                  data_size_bytes=4096)))
        node_msg = database_pb2.Node(grpc_address=f"{node}:17912")
        node_msg.metadata.name = node
        node_msg.roles.append(database_pb2.ROLE_DATA)
        return db.DataInfo(
            node=node_msg, segment_info=segments,
            data_size_bytes=group.segments * group.shards * group.size_per_shard)

    def lifecycle_data(self, node: str) -> Any:
        """What `node`'s agent answers to request_lifecycle."""
        holders = self.data_nodes if node in self.liaisons else [node]
        groups = []
        for g in self.groups:
            info = pb.GroupLifecycleInfo(name=g.name, catalog=g.catalog)
            info.resource_opts.shard_num = g.shards
            info.resource_opts.segment_interval.unit = common_pb2.IntervalRule.UNIT_DAY
            info.resource_opts.segment_interval.num = 1
            info.resource_opts.ttl.unit = common_pb2.IntervalRule.UNIT_DAY
            info.resource_opts.ttl.num = 7
            info.data_info.extend(self.data_info(n, g) for n in holders)
            sc = info.schema_consistency
            for kind, name, cache, runtime in self.node_objects(node, g):
                sc.objects.append(pb.ObjectConsistency(kind=kind, name=name, node_fingerprints=[
                    pb.NodeFingerprint(node=node, cache_fingerprint=cache,
                                       runtime_fingerprint=runtime)]))
            groups.append(info)
        reports = [] if node in self.liaisons else [pb.LifecycleReport(
            filename=f"{node}-lifecycle-20261129.json",
            report_json='{"migrated_segments": 2, "status": "ok"}')]
        return pb.LifecycleData(reports=reports, groups=groups)

    def registry_groups(self) -> list[Any]:
        return [pb.SchemaRegistryGroup(group=g.name, objects=[
            pb.SchemaObjectFingerprint(kind=k, name=n, fingerprint=fp)
            for (k, n), fp in g.objects.items()]) for g in self.groups]


class FakeLifecycle:
    """StreamLifecycle of one fake pod agent: answers request_lifecycle with its node's data."""

    method = STREAM_LIFECYCLE
    response_type = pb.StreamLifecycleResponse

    def __init__(self, world: SchemaWorld, node: str) -> None:
        self.world = world
        self.node = node
        self.requests = 0
        self.silent = False
        self.delay = 0.0
        self.unasked = False
        self.malformed = False
        self.oversized = 0

    def answer(self) -> Any:
        data = self.world.lifecycle_data(self.node)
        if self.oversized:
            data.reports.append(pb.LifecycleReport(filename="padding.json",
                                                   report_json="x" * self.oversized))
        return pb.StreamLifecycleRequest(pod_name=self.node, lifecycle_data=data)

    async def serve(self, call: ClientCall) -> None:
        if self.unasked:  # marked, so a test can tell it apart from an answer
            unasked = self.answer()
            unasked.lifecycle_data.reports.append(pb.LifecycleReport(filename="unasked.json"))
            await call.send(unasked)
        while (msg := await call.receive()) is not None:
            if not msg.request_lifecycle:
                continue
            self.requests += 1
            if self.silent:
                continue
            if self.delay:
                await trio.sleep(self.delay)
            if self.malformed:
                await call.send_raw(b"\x0a\xff\xff\xff\xff\x0f")  # a length beyond the message
                continue
            await call.send(self.answer())


class FakeRegistry:
    """StreamSchemaRegistry of one fake pod agent: answers request_registry with the world's
    registry, in chunks of `chunk_size` objects, then `done`."""

    method = STREAM_SCHEMA_REGISTRY
    response_type = pb.StreamSchemaRegistryResponse

    def __init__(self, world: SchemaWorld, *, chunk_size: int = 50) -> None:
        self.world = world
        self.chunk_size = chunk_size
        self.requests = 0
        self.never_done = False
        self.fatal = ""
        self.group_errors: dict[str, str] = {}
        self.malformed = False
        self.oversized = 0
        self.unasked = False

    def messages(self) -> Iterable[Any]:
        if self.fatal:
            yield pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(error=self.fatal))
        else:
            for g in self.world.registry_groups():
                if g.group in self.group_errors:
                    yield pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(
                        group=g.group, error=self.group_errors[g.group]))
                    continue
                objects = list(g.objects)
                for start in range(0, max(len(objects), 1), self.chunk_size):
                    yield pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(
                        group=g.group, objects=objects[start:start + self.chunk_size]))
            if self.oversized:
                yield pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(
                    group="padding", error="x" * self.oversized))
        if not self.never_done:
            yield pb.StreamSchemaRegistryRequest(done=True)

    async def serve(self, call: ClientCall) -> None:
        if self.unasked:  # a reply nobody asked for: a group error, then done
            for g in self.world.groups:
                await call.send(pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(
                    group=g.name, error="unasked")))
            await call.send(pb.StreamSchemaRegistryRequest(done=True))
        while (msg := await call.receive()) is not None:
            if not msg.request_registry:
                continue
            self.requests += 1
            if self.malformed:
                await call.send_raw(b"\x0a\xff\xff\xff\xff\x0f")
                continue
            for m in self.messages():
                await call.send(m)


def services_for(world: SchemaWorld, node: str) -> list[FakeLifecycle | FakeRegistry]:
    """The lifecycle and registry services of `node`'s fake pod agent (every pod agent opens
    both streams, as upstream's does; the proxy asks only a liaison for the registry)."""
    return [FakeLifecycle(world, node), FakeRegistry(world)]


def demo_world(*, liaison: str, data_nodes: list[str]) -> SchemaWorld:
    """The demo's cluster: the sample groups on `data_nodes`, and one drifted object (the last
    data node's cache of stream `segment` in `sw_stream` is behind the registry)."""
    world = SchemaWorld.sample()
    world.data_nodes = list(data_nodes)
    world.liaisons = [liaison]
    world.drift(data_nodes[-1], "sw_stream", "stream", "segment")
    return world
