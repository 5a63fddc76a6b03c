"""Schema fingerprints, computed the way upstream BanyanDB's FODC agent computes them
(fodc/internal/consistency: Fingerprint, DeriveBoundRules). Sans-IO: plain functions of messages.

A fingerprint is a 64-bit XXH64 digest, so the registry's view of an object and a node's cache
and runtime views of it compare equal exactly when their content does:

- `base(message)`: XXH64 (seed 0) of the message's deterministic protobuf encoding, after
  zeroing the identity fields that move without a content change (`metadata.id`,
  `metadata.create_revision`, `metadata.mod_revision`). `updated_at`/`created_at` are kept, as
  upstream keeps them. No message (an absent body) encodes as zero bytes.
- `fingerprint(subject, rules)`: the index rules bound to the subject are keyed by
  `group/name` (the first of a repeated key is kept), sorted by key, and XXH64 runs over the
  little-endian 8-byte `base` of the subject followed by the `base` of each rule in key order.

The digest is only equal to upstream's when the encoding is byte-identical to Go's deterministic
marshalling: fields in field-number order, map entries sorted by key, unknown fields last, which
is also what protobuf's Python runtime writes with `deterministic=True`, provided every field Go
knows is declared here too (our database/common protos declare these messages completely;
tests/test_lifecycle_proto.py compares them with upstream's field by field).
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from google.protobuf.message import Message

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import schema_pb2

__all__ = [
    "KIND_GROUP",
    "KIND_INDEX_RULE",
    "KIND_MEASURE",
    "KIND_STREAM",
    "KIND_TRACE",
    "base",
    "derive_bound_rules",
    "fingerprint",
    "registry_fingerprints",
    "resource_kind",
    "xxh64",
]

# The kind strings of schema objects (upstream's schema.Kind.String()), the same on the registry
# side and on the node's ObjectSnapshot.kind, so both key the same object.
KIND_GROUP = "group"
KIND_STREAM = "stream"
KIND_MEASURE = "measure"
KIND_TRACE = "trace"
KIND_INDEX_RULE = "indexRule"

# --- XXH64 ---------------------------------------------------------------------------------------

_M = 0xFFFFFFFFFFFFFFFF
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
_STRIPE = struct.Struct("<4Q")
_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M
    return (_rotl(acc, 31) * _P1) & _M


def _merge(acc: int, value: int) -> int:
    acc ^= _round(0, value)
    return (acc * _P1 + _P4) & _M


def xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64 of `data` (the xxHash specification's 64-bit hash; Go's cespare/xxhash with seed 0)."""
    n = len(data)
    i = 0
    if n >= 32:
        v1 = (seed + _P1 + _P2) & _M
        v2 = (seed + _P2) & _M
        v3 = seed & _M
        v4 = (seed - _P1) & _M
        last = n - 32
        while i <= last:
            a, b, c, d = _STRIPE.unpack_from(data, i)
            v1, v2, v3, v4 = _round(v1, a), _round(v2, b), _round(v3, c), _round(v4, d)
            i += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = (seed + _P5) & _M
    h = (h + n) & _M
    while i + 8 <= n:
        h ^= _round(0, _U64.unpack_from(data, i)[0])
        h = (_rotl(h, 27) * _P1 + _P4) & _M
        i += 8
    if i + 4 <= n:
        h ^= (_U32.unpack_from(data, i)[0] * _P1) & _M
        h = (_rotl(h, 23) * _P2 + _P3) & _M
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M
        h = (_rotl(h, 11) * _P1) & _M
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M
    h ^= h >> 29
    h = (h * _P3) & _M
    h ^= h >> 32
    return h


# --- fingerprints --------------------------------------------------------------------------------


def _encode(message: Message | None) -> bytes:
    """The deterministic encoding with the volatile identity fields zeroed (on a copy)."""
    if message is None:
        return b""
    if "metadata" in message.DESCRIPTOR.fields_by_name and message.HasField("metadata"):
        clone = type(message)()
        clone.CopyFrom(message)
        md = clone.metadata
        md.id = 0
        md.create_revision = 0
        md.mod_revision = 0
        message = clone
    return message.SerializeToString(deterministic=True)


def base(message: Message | None) -> int:
    """XXH64 of one schema message without its volatile identity fields (upstream's `base`)."""
    return xxh64(_encode(message))


def fingerprint(subject: Message | None, rules: Iterable[schema_pb2.IndexRule] = ()) -> int:
    """The fingerprint of a schema object with the index rules bound to it (upstream's
    `consistency.Fingerprint`): rules de-duplicated by `group/name` and sorted, so the order
    they were derived in does not matter."""
    hashes: dict[str, int] = {}
    for rule in rules:
        key = f"{rule.metadata.group}/{rule.metadata.name}"
        if key not in hashes:
            hashes[key] = base(rule)
    parts = [_U64.pack(base(subject))]
    parts.extend(_U64.pack(hashes[key]) for key in sorted(hashes))
    return xxh64(b"".join(parts))


def derive_bound_rules(group: str, name: str, bindings: Sequence[schema_pb2.IndexRuleBinding],
                       catalog: int, rules: Mapping[str, schema_pb2.IndexRule],
                       ) -> list[schema_pb2.IndexRule]:
    """The index rules bound to resource `name` of `group` (upstream's DeriveBoundRules with the
    registry's lookups): every binding whose subject is `name` in `catalog`, each of its rule
    names resolved in `rules` (keyed by rule name) when present. No sorting, no de-duplication
    and no begin_at/expire_at filtering, as upstream (`fingerprint` makes the result
    deterministic)."""
    del group  # the lookups are already scoped to one group
    out: list[schema_pb2.IndexRule] = []
    for binding in bindings:
        if binding.subject.name != name or binding.subject.catalog != catalog:
            continue
        for rule_name in binding.rules:
            rule = rules.get(rule_name)
            if rule is not None:
                out.append(rule)
    return out


_RESOURCE_KIND: dict[int, str] = {
    common_pb2.CATALOG_STREAM: KIND_STREAM,
    common_pb2.CATALOG_MEASURE: KIND_MEASURE,
    common_pb2.CATALOG_TRACE: KIND_TRACE,
}


def resource_kind(catalog: int) -> str | None:
    """The kind of a group's resources by its catalog; None for property and unspecified
    groups, which hold nothing the consistency check fingerprints."""
    return _RESOURCE_KIND.get(catalog)


def registry_fingerprints(group: common_pb2.Group, index_rules: Sequence[schema_pb2.IndexRule],
                          bindings: Sequence[schema_pb2.IndexRuleBinding],
                          resources: Sequence[Any]) -> dict[tuple[str, str], int]:
    """The registry-truth fingerprint of every object of one group, keyed by (kind, name): the
    group itself, each index rule, and each resource (stream, measure or trace, by the group's
    catalog) with the rules its bindings bind to it. A later object with the same key replaces
    an earlier one, as upstream's map does."""
    name = group.metadata.name
    out: dict[tuple[str, str], int] = {(KIND_GROUP, name): fingerprint(group)}
    by_name: dict[str, schema_pb2.IndexRule] = {}
    for rule in index_rules:
        by_name[rule.metadata.name] = rule
        out[(KIND_INDEX_RULE, rule.metadata.name)] = fingerprint(rule)
    kind = resource_kind(group.catalog)
    if kind is not None:
        for resource in resources:
            bound = derive_bound_rules(name, resource.metadata.name, bindings, group.catalog,
                                       by_name)
            out[(kind, resource.metadata.name)] = fingerprint(resource, bound)
    return out
