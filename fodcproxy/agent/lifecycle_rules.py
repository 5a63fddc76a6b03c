"""The rules of the agent's lifecycle and schema-registry answers, without I/O.

What upstream BanyanDB's agent does (fodc/agent/internal/lifecycle, proxy/client.go), as plain
functions and one small class, tested with tables (tests/test_lifecycle_rules.py):

- which report files of `--lifecycle-report-dir` are sent: regular files whose name ends in
  `.json`, the `max_files` greatest names first (upstream: 5), each at most `max_file_size` bytes
  (upstream: 5 MiB); ours also skips a file that is not UTF-8 text (report_json is a proto
  string, which Go could not even marshal);
- how a node's NodeSchemaStateService events become each group's `schema_consistency` partial
  (`SchemaStateFold`, `apply_schema_states`) and how a snapshot's cache and runtime bodies are
  fingerprinted against the group's rule table (`snapshot_fingerprints`);
- how the registry's fingerprints travel: one group at a time, at most 50 objects a message
  (upstream's chunk size), a failed group as one message with its `error`, a fatal read failure
  as one message with an empty group name, then `done` (`registry_messages`);
- and, beyond upstream, that no reply is larger than the gRPC message limit (`fit_lifecycle`).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Sequence

import attrs
from google.protobuf.message import DecodeError, Message

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as db
from fodcproxy._proto.banyandb.database.v1 import schema_pb2
from fodcproxy.agent.fingerprint import fingerprint
from fodcproxy.rpc.convert import pb

__all__ = [
    "DATA_INFO_LEFT_OUT",
    "MAX_ERRORS_PER_GROUP",
    "MAX_ERROR_CHARS",
    "REGISTRY_CHUNK",
    "Fitted",
    "GroupSchemaState",
    "RegistryGroup",
    "ReportLimits",
    "SchemaStateFold",
    "SnapshotError",
    "add_error_to_all",
    "apply_schema_states",
    "decode_report",
    "fit_lifecycle",
    "registry_messages",
    "select_reports",
    "snapshot_fingerprints",
]

REGISTRY_CHUNK = 50  # objects per StreamSchemaRegistryRequest, upstream's schemaObjectChunkSize
MAX_ERROR_CHARS = 2048  # one error string sent to the proxy
MAX_ERRORS_PER_GROUP = 64  # errors one group carries (a node reporting thousands is cut)


@attrs.frozen
class ReportLimits:
    """Bounds of the report files sent with each lifecycle answer (upstream's constants)."""

    max_files: int = 5
    max_file_size: int = 5 * 1024 * 1024


def select_reports(entries: Iterable[tuple[str, bool]], limits: ReportLimits) -> list[str]:
    """The report files to read from a directory listing of (name, is_regular_file): the `.json`
    regular files, greatest name first (report names carry their time), at most `max_files`.
    Memory is bounded by `max_files` however long the listing is."""
    names = (name for name, regular in entries if regular and name.endswith(".json"))
    return heapq.nlargest(limits.max_files, names)


def decode_report(name: str, data: bytes, limits: ReportLimits) -> pb.LifecycleReport | str:
    """The LifecycleReport of one file's bytes, or why it is skipped."""
    try:
        name.encode("utf-8")  # `filename` is a protobuf string
    except UnicodeEncodeError:
        # os.scandir gives bytes that are not UTF-8 as lone surrogates: shown escaped
        try:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "backslashreplace").decode("ascii")
        return f"{shown}: the name is not UTF-8"
    if len(data) > limits.max_file_size:
        return f"{name}: over {limits.max_file_size} bytes"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})"
    return pb.LifecycleReport(filename=name, report_json=text)


def _clip(text: str) -> str:
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS - 3] + "..."


# --- a node's schema state -----------------------------------------------------------------------

# The payload types a SchemaBody may carry (upstream's node wraps Group, IndexRule, Stream,
# Measure and Trace); anything else is refused, not guessed.
_PAYLOADS: dict[str, type[Message]] = {
    cls.DESCRIPTOR.full_name: cls
    for cls in (common_pb2.Group, schema_pb2.IndexRule, schema_pb2.IndexRuleBinding,
                schema_pb2.Stream, schema_pb2.Measure, schema_pb2.Trace)
}


class SnapshotError(Exception):
    """A snapshot body that cannot be fingerprinted (the node is then UNKNOWN for its group)."""


def _body(body: db.SchemaBody | None, table: Sequence[schema_pb2.IndexRule]
          ) -> tuple[Message | None, list[schema_pb2.IndexRule]]:
    if body is None:
        return None, []
    type_name = body.payload.type_url.rsplit("/", 1)[-1]
    cls = _PAYLOADS.get(type_name)
    if cls is None:
        raise SnapshotError(f"unwrap schema body payload: unknown type {type_name[:200]!r}")
    payload = cls()
    try:
        payload.ParseFromString(body.payload.value)
    except DecodeError as exc:
        raise SnapshotError(f"unwrap schema body payload: {exc}") from None
    rules = []
    for ref in body.bound_index_rule_refs:
        if ref >= len(table):
            raise SnapshotError(f"bound index rule ref {ref} out of range (table size {len(table)})")
        rules.append(table[ref])
    return payload, rules


def snapshot_fingerprints(obj: db.ObjectSnapshot, table: Sequence[schema_pb2.IndexRule]
                          ) -> tuple[int, int]:
    """(cache, runtime) fingerprints of one object on a node, its bodies resolved against the
    group's rule table. No runtime body means runtime = cache (nothing materialized, or an
    object without derived structure), as upstream.

    Raises SnapshotError naming the object.
    """
    where = f"{obj.kind} {obj.name[:200]!r}"
    try:
        subject, rules = _body(obj.cache if obj.HasField("cache") else None, table)
    except SnapshotError as exc:
        raise SnapshotError(f"resolve cache {where}: {exc}") from None
    cache = fingerprint(subject, rules)
    if not obj.HasField("runtime"):
        return cache, cache
    try:
        subject, rules = _body(obj.runtime, table)
    except SnapshotError as exc:
        raise SnapshotError(f"resolve runtime {where}: {exc}") from None
    return cache, fingerprint(subject, rules)


@attrs.define
class _Object:
    cache: int = 0
    runtime: int = 0


@attrs.define
class GroupSchemaState:
    """One group's schema evidence on this node: object fingerprints, node id, errors."""

    objects: dict[tuple[str, str], _Object] = attrs.field(factory=dict)
    node: str = ""
    errors: list[str] = attrs.field(factory=list)
    table: list[schema_pb2.IndexRule] = attrs.field(factory=list)
    received: int = 0

    def error(self, text: str) -> None:
        if len(self.errors) < MAX_ERRORS_PER_GROUP:
            self.errors.append(_clip(text))

    def to_proto(self) -> pb.SchemaConsistency:
        """This node's partial: objects sorted by (kind, name), each with this node's cache and
        runtime fingerprints; no registry fingerprint and no status (the proxy decides). Without
        a node id (the trailer never came) the fingerprints are left out, so the proxy sees no
        phantom "" node; the group's errors say why."""
        out = pb.SchemaConsistency()
        for (kind, name), o in sorted(self.objects.items()):
            oc = out.objects.add(kind=kind, name=name)
            if self.node:
                oc.node_fingerprints.add(node=self.node, cache_fingerprint=o.cache,
                                         runtime_fingerprint=o.runtime)
        return out


class SchemaStateFold:
    """Folds a node's StreamGroupSchemaState events into one GroupSchemaState per group
    (upstream's collectNodeSchemaState): rule tables concatenate in arrival order, objects are
    fingerprinted against their group's table so far, a trailer names the node and carries its
    errors, and a trailer whose object_count differs from what arrived marks a torn stream.

    `max_groups` bounds the groups held: events of further groups are dropped and counted in
    `dropped_groups` (the caller reports that as an error).
    """

    def __init__(self, *, max_groups: int = 10_000) -> None:
        self.states: dict[str, GroupSchemaState] = {}
        self.max_groups = max_groups
        self.dropped_groups = 0

    def _state(self, group: str) -> GroupSchemaState | None:
        state = self.states.get(group)
        if state is None:
            if len(self.states) >= self.max_groups:
                self.dropped_groups += 1
                return None
            state = self.states[group] = GroupSchemaState()
        return state

    def feed(self, event: db.StreamGroupSchemaStateResponse) -> None:
        which = event.WhichOneof("event")
        if which == "rule_table":
            state = self._state(event.rule_table.group)
            if state is not None:
                state.table.extend(event.rule_table.rules)
        elif which == "object":
            obj = event.object
            state = self._state(obj.group)
            if state is None:
                return
            try:
                cache, runtime = snapshot_fingerprints(obj, state.table)
            except SnapshotError as exc:
                state.error(str(exc))
                return
            state.objects[(obj.kind, obj.name)] = _Object(cache, runtime)
            state.received += 1
        elif which == "trailer":
            t = event.trailer
            state = self._state(t.group)
            if state is None:
                return
            state.node = t.node
            for text in t.errors:
                state.error(text)
            if state.received != t.object_count:
                state.error(f"torn stream: received {state.received} objects, trailer reported "
                            f"{t.object_count}")


def apply_schema_states(groups: list[pb.GroupLifecycleInfo],
                        states: dict[str, GroupSchemaState]) -> list[pb.GroupLifecycleInfo]:
    """Fold each group's schema evidence into its GroupLifecycleInfo (InspectAll's), adding a
    bare entry for a group InspectAll did not return (upstream's applySchemaStates)."""
    by_name = {g.name: g for g in groups}
    for name in sorted(states):
        state = states[name]
        group = by_name.get(name)
        if group is None:
            group = by_name[name] = pb.GroupLifecycleInfo(name=name)
            groups.append(group)
        group.schema_consistency.CopyFrom(state.to_proto())
        group.errors.extend(state.errors)
    return groups


def add_error_to_all(groups: Iterable[pb.GroupLifecycleInfo], text: str) -> None:
    """Every group carries `text` (upstream: a failed schema-state read, "node schema state: ")."""
    for group in groups:
        group.errors.append(_clip(text))


# --- the registry's fingerprints, in messages ----------------------------------------------------


@attrs.frozen
class RegistryGroup:
    """One group of the registry: its objects' fingerprints, or why it could not be read."""

    name: str
    objects: tuple[tuple[str, str, int], ...] = ()  # (kind, name, fingerprint), sorted
    error: str = ""


def registry_messages(groups: Sequence[RegistryGroup] | None, fatal: str = "", *,
                      chunk: int = REGISTRY_CHUNK, max_bytes: int = 4 * 1024 * 1024 - 1024,
                      ) -> Iterator[pb.StreamSchemaRegistryRequest]:
    """The answer to one request_registry, message by message: with `fatal`, one message whose
    group has an empty name and the error; otherwise each group in turn (a failed one as one
    message with its error; one with objects in messages of at most `chunk` objects and at most
    `max_bytes` bytes sharing its name; an empty one as one message, so the proxy sees it);
    then `done`."""
    if fatal:
        yield pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(error=_clip(fatal)))
    for group in groups or ():
        if group.error:
            yield pb.StreamSchemaRegistryRequest(
                group=pb.SchemaRegistryGroup(group=group.name, error=_clip(group.error)))
            continue
        msg = pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(group=group.name))
        empty = msg.ByteSize()
        size = empty
        for kind, name, fp in group.objects:
            item = pb.SchemaObjectFingerprint(kind=kind, name=name, fingerprint=fp)
            n = item.ByteSize() + 8  # its tag and length, and the group's length growing
            if msg.group.objects and (len(msg.group.objects) >= chunk or size + n > max_bytes):
                yield msg
                msg = pb.StreamSchemaRegistryRequest(group=pb.SchemaRegistryGroup(group=group.name))
                size = empty
            msg.group.objects.append(item)
            size += n
        yield msg
    yield pb.StreamSchemaRegistryRequest(done=True)


# --- one lifecycle answer under the message limit -------------------------------------------------


@attrs.frozen
class Fitted:
    """A lifecycle answer that fits: what was left out to make it fit is named."""

    request: pb.StreamLifecycleRequest
    dropped_reports: tuple[str, ...] = ()
    stripped_data_info: bool = False


DATA_INFO_LEFT_OUT = ("data_info left out by the agent: its lifecycle answer would exceed the "
                      "gRPC message limit (--grpc-max-msg-size)")


def fit_lifecycle(request: pb.StreamLifecycleRequest, max_bytes: int) -> Fitted | None:
    """`request` made to fit `max_bytes`: the groups are what the proxy's verdict needs, so the
    reports go first (the last, oldest ones first); if the groups alone are still too big, each
    group's `data_info` is left out and an error says so. None when even that is too big (the
    agent then does not answer; the proxy counts it as not reporting, as upstream does for a
    failed collection)."""
    if request.ByteSize() <= max_bytes:
        return Fitted(request)
    dropped: list[str] = []
    reports = request.lifecycle_data.reports
    while reports and request.ByteSize() > max_bytes:
        dropped.append(reports[-1].filename)
        del reports[-1]
    if request.ByteSize() <= max_bytes:
        return Fitted(request, tuple(dropped))
    for group in request.lifecycle_data.groups:
        if group.data_info:
            del group.data_info[:]
            group.errors.append(DATA_INFO_LEFT_OUT)
    if request.ByteSize() <= max_bytes:
        return Fitted(request, tuple(dropped), stripped_data_info=True)
    return None
