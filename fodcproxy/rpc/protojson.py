"""Protojson as Go's `protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: true}`
writes it, several times faster than `google.protobuf.json_format`.

What upstream's `GET /cluster/lifecycle` returns: proto field names; every field present, with
its zero value when unset (`""`, `0`, `false`, `[]`, `{}`, the enum's zero name), an unset
message field as `null`; 64-bit integers as strings; enums by name (the number when unknown);
bytes as base64; a oneof member (and a proto3 `optional` field) only when set; the well-known
types (`Timestamp`, `Duration`, `Struct`, ...) in their JSON forms, by `json_format`.

Generic, driven by the descriptors: the plan of each message type (which converter for which
field) is made once and cached, then every message is walked with plain attribute access.
`json_format.MessageToDict` checks every field of every message anew, which costs about a
second for the 2 MB `LifecycleData` of a liaison of a large cluster.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Callable
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["to_json"]

_F = FieldDescriptor
_INT64 = {_F.TYPE_INT64, _F.TYPE_UINT64, _F.TYPE_SINT64, _F.TYPE_FIXED64, _F.TYPE_SFIXED64}
_FLOAT = {_F.TYPE_FLOAT, _F.TYPE_DOUBLE}
_WELL_KNOWN = "google.protobuf."

Convert = Callable[[Any], Any]
# Per message type: (field name, how to read that field of a message as JSON).
_Plan = list[tuple[str, Callable[[Message], Any]]]
_PLANS: dict[Descriptor, _Plan] = {}


def to_json(message: Message) -> dict[str, Any]:
    """`message` as a JSON-ready dict (see the module docstring)."""
    out = {}
    for name, read in _plan(message.DESCRIPTOR):
        value = read(message)
        if value is not _ABSENT:
            out[name] = value
    return out


def _float(v: float) -> Any:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def _enum(field: FieldDescriptor) -> Convert:
    names = {v.number: v.name for v in field.enum_type.values}
    return lambda v: names.get(v, v)


def _value(field: FieldDescriptor) -> Convert:
    """The converter of one value of `field` (an element, for a repeated one)."""
    t = field.type
    if t == _F.TYPE_MESSAGE:
        if field.message_type.full_name.startswith(_WELL_KNOWN):
            return json_format.MessageToDict
        return to_json
    if t == _F.TYPE_ENUM:
        return _enum(field)
    if t in _INT64:
        return str
    if t in _FLOAT:
        return _float
    if t == _F.TYPE_BYTES:
        return lambda v: base64.b64encode(v).decode()
    return lambda v: v  # bool, string, 32-bit integers


def _map_key(field: FieldDescriptor) -> Convert:
    if field.type == _F.TYPE_BOOL:
        return lambda k: "true" if k else "false"
    return str


_ABSENT = object()  # a oneof member or proto3 optional field that is not set: left out


def _reader(field: FieldDescriptor) -> Callable[[Message], Any]:
    """How to read `field` from a message into JSON."""
    name = field.name
    if field.is_repeated:
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            key = _map_key(entry.fields_by_name["key"])
            value = _value(entry.fields_by_name["value"])
            return lambda m: {key(k): value(v) for k, v in getattr(m, name).items()}
        element = _value(field)
        return lambda m: [element(v) for v in getattr(m, name)]
    one = _value(field)
    if field.containing_oneof is not None:  # a oneof member, or a proto3 optional field
        return lambda m: one(getattr(m, name)) if m.HasField(name) else _ABSENT
    if field.type == _F.TYPE_MESSAGE:
        return lambda m: one(getattr(m, name)) if m.HasField(name) else None
    return lambda m: one(getattr(m, name))


def _plan(desc: Descriptor) -> _Plan:
    plan = _PLANS.get(desc)
    if plan is None:
        # Built whole, then published: worker threads may build the same plan at once, and must
        # never see one half made. (Sub-messages look theirs up when converted, not here.)
        plan = [(field.name, _reader(field)) for field in desc.fields]
        _PLANS[desc] = plan
    return plan
