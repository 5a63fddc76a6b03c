"""StreamLifecycle and StreamSchemaRegistry messages to the plain values of `core.lifecycle` and
`core.schema`, and protojson as upstream's proxy writes it.

`message_json` is Go's `protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}`
(`fodcproxy.rpc.protojson`): field names as in the proto, every scalar, list and map emitted
with its zero value, 64-bit integers as strings, enums by name, and an unset message field (not
in a oneof) as null. `reference_json` gets the same from `json_format.MessageToDict` (which
leaves unset messages out, so they are added), about 3.5 times slower: the tests compare them.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from fodcproxy.core.lifecycle import AgentGroup, AgentLifecycle
from fodcproxy.core.schema import (
    GroupReport,
    NodeFingerprint,
    ObjectConsistency,
    RegistryChunk,
    RegistryObject,
)
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.protojson import to_json

_MESSAGE = FieldDescriptor.TYPE_MESSAGE


def _json(message: Message) -> dict[str, Any]:
    # protobuf >= 5.26 calls the option always_print_fields_with_no_presence, older ones
    # including_default_value_fields.
    for option in ("always_print_fields_with_no_presence", "including_default_value_fields"):
        try:
            doc: dict[str, Any] = json_format.MessageToDict(
                message, preserving_proto_field_name=True, **{option: True})
            return doc
        except TypeError:
            continue
    raise RuntimeError("this protobuf's MessageToDict cannot emit zero values")


def _fill_nulls(message: Message, doc: dict[str, Any]) -> None:
    for field in message.DESCRIPTOR.fields:
        if field.type != _MESSAGE:
            continue
        name = field.name
        if field.is_repeated:
            if field.message_type.GetOptions().map_entry:
                continue
            for sub, sub_doc in zip(getattr(message, name), doc.get(name) or ()):
                if isinstance(sub_doc, dict):
                    _fill_nulls(sub, sub_doc)
        elif field.containing_oneof is None:
            if not message.HasField(name):
                doc[name] = None
            elif isinstance(doc.get(name), dict):
                _fill_nulls(getattr(message, name), doc[name])


def message_json(message: Message) -> dict[str, Any]:
    """`message` as upstream's lifecycle endpoint writes it (see the module docstring)."""
    return to_json(message)


def reference_json(message: Message) -> dict[str, Any]:
    """`message_json` done with `json_format`, slower: the reference the tests compare with."""
    doc = _json(message)
    _fill_nulls(message, doc)
    return doc


def _schema(g: Any) -> GroupReport | None:
    if not g.HasField("schema_consistency"):
        return None
    return GroupReport(g.name, tuple(
        ObjectConsistency(o.kind, o.name, o.registry_fingerprint, tuple(
            NodeFingerprint(nf.node, nf.cache_fingerprint, nf.runtime_fingerprint)
            for nf in o.node_fingerprints))
        for o in g.schema_consistency.objects))


def group_from_proto(g: Any) -> AgentGroup:
    """One `GroupLifecycleInfo` of an agent."""
    body = message_json(g)
    data_info = tuple(body.pop("data_info", ()))
    body.pop("errors", None)
    body.pop("schema_consistency", None)
    return AgentGroup(g.name, body, data_info, tuple(g.errors), _schema(g))


def lifecycle_from_proto(msg: Any, agent_id: str) -> AgentLifecycle:
    """One `StreamLifecycleRequest` (an agent's whole answer); no `lifecycle_data` is empty data,
    as upstream's proxy reads it."""
    data = msg.lifecycle_data
    return AgentLifecycle(
        agent_id, msg.pod_name,
        tuple(message_json(r) for r in data.reports),
        tuple(group_from_proto(g) for g in data.groups))


def registry_chunk_from_proto(msg: Any) -> RegistryChunk | None:
    """The group chunk of one `StreamSchemaRegistryRequest`, None when it carries none (a bare
    `done`)."""
    if not msg.HasField("group"):
        return None
    g = msg.group
    return RegistryChunk(g.group, tuple(RegistryObject(o.kind, o.name, o.fingerprint)
                                        for o in g.objects), g.error)


def request_lifecycle(request_id: int, payload: Any) -> Message:
    return pb.StreamLifecycleResponse(request_lifecycle=True)


def request_registry(request_id: int, payload: Any) -> Message:
    return pb.StreamSchemaRegistryResponse(request_registry=True)
