"""Schema fingerprints (fodcproxy.agent.fingerprint) as upstream BanyanDB's consistency package
defines them: plain tables. The expected encodings are written by hand from the proto field
numbers; the expected digests come from the system's libxxhash (an independent implementation,
when installed) and are also pinned as literals computed with it."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import struct

import pytest

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import schema_pb2
from fodcproxy.agent.fingerprint import (
    _encode,
    base,
    derive_bound_rules,
    fingerprint,
    registry_fingerprints,
    xxh64,
)


def _libxxhash():
    for name in ("libxxhash.so.0", ctypes.util.find_library("xxhash")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        lib.XXH64.restype = ctypes.c_uint64
        lib.XXH64.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
        return lib
    return None


LIB = _libxxhash()


def le(x: int) -> bytes:
    return struct.pack("<Q", x)


@pytest.mark.parametrize("data, expected", [
    # The xxHash specification's and cespare/xxhash's test vectors.
    (b"", 0xEF46DB3751D8E999),
    (b"a", 0xD24EC4F1A98C6E5B),
    (b"abc", 0x44BC2CF5AD770999),
])
def test_xxh64_vectors(data: bytes, expected: int) -> None:
    assert xxh64(data) == expected


@pytest.mark.skipif(LIB is None, reason="libxxhash is not installed")
def test_xxh64_equals_libxxhash_on_every_length_and_seed() -> None:
    rng = random.Random(16)
    for n in [*range(0, 100), 255, 256, 1000, 4097]:
        data = os.urandom(n)
        seed = rng.getrandbits(64)
        assert xxh64(data) == LIB.XXH64(data, n, 0), n
        assert xxh64(data, seed) == LIB.XXH64(data, n, seed), n


GROUP = common_pb2.Group(metadata=common_pb2.Metadata(name="g", id=7, create_revision=3,
                                                      mod_revision=9),
                         catalog=common_pb2.CATALOG_STREAM)
STREAM = schema_pb2.Stream(metadata=common_pb2.Metadata(group="g", name="s", mod_revision=4),
                           entity=schema_pb2.Entity(tag_names=["id"]))
RULE_A = schema_pb2.IndexRule(metadata=common_pb2.Metadata(group="g", name="a", id=1), tags=["x"])
RULE_A_OTHER = schema_pb2.IndexRule(metadata=common_pb2.Metadata(group="g", name="a"), tags=["z"])
RULE_B = schema_pb2.IndexRule(metadata=common_pb2.Metadata(group="g", name="b"), tags=["y"],
                              type=schema_pb2.IndexRule.TYPE_INVERTED)

# By hand: tag (field << 3 | wire type), length, bytes. id/create_revision/mod_revision are gone.
ENCODED = [
    (GROUP, "0a03 120167 1001"),  # metadata{name "g"}, catalog 1
    (STREAM, "0a06 0a0167 120173 1a04 0a026964"),  # metadata{group "g", name "s"}, entity{"id"}
    (RULE_A, "0a06 0a0167 120161 120178"),  # metadata{g, a}, tags "x"
    (RULE_B, "0a06 0a0167 120162 120179 1801"),  # metadata{g, b}, tags "y", type 1
    (None, ""),  # no body: no bytes (Go marshals a nil message to nothing)
]


@pytest.mark.parametrize("message, hex_bytes", ENCODED)
def test_encoding_without_volatile_fields(message, hex_bytes: str) -> None:
    assert _encode(message) == bytes.fromhex(hex_bytes.replace(" ", ""))


def test_the_caller_s_message_is_not_changed() -> None:
    copy = common_pb2.Group()
    copy.CopyFrom(GROUP)
    base(GROUP)
    assert GROUP == copy and GROUP.metadata.id == 7


def H(hex_bytes: str) -> int:
    data = bytes.fromhex(hex_bytes.replace(" ", ""))
    return LIB.XXH64(data, len(data), 0) if LIB is not None else xxh64(data)


def test_fingerprint_of_an_object_without_rules() -> None:
    # fingerprint = XXH64(le64(base)); pinned from libxxhash.
    assert base(GROUP) == H(ENCODED[0][1]) == 0x4CF69FF24E2D8B8D
    assert fingerprint(GROUP) == 0x2372D60B4E91C11F
    assert fingerprint(None) == 0x90760494A54B0E51  # XXH64(le64(XXH64(b"")))


def test_fingerprint_with_rules_sorts_by_group_and_name_and_keeps_the_first_of_a_key() -> None:
    expected = 0x836F51CCE20F5AEE  # XXH64(le64(H(stream)) + le64(H(a)) + le64(H(b)))
    if LIB is not None:
        payload = le(H(ENCODED[1][1])) + le(H(ENCODED[2][1])) + le(H(ENCODED[3][1]))
        assert LIB.XXH64(payload, len(payload), 0) == expected
    assert fingerprint(STREAM, [RULE_B, RULE_A, RULE_A_OTHER]) == expected
    assert fingerprint(STREAM, [RULE_A, RULE_B]) == expected
    assert fingerprint(STREAM, [RULE_A_OTHER, RULE_B]) != expected  # the first "g/a" counts
    assert fingerprint(STREAM) != expected


@pytest.mark.parametrize("change, same", [
    (lambda g: setattr(g.metadata, "id", 99), True),
    (lambda g: setattr(g.metadata, "mod_revision", 99), True),
    (lambda g: setattr(g.metadata, "create_revision", 99), True),
    (lambda g: g.updated_at.FromSeconds(5), False),  # kept, as upstream keeps it
    (lambda g: setattr(g.resource_opts, "shard_num", 3), False),
    (lambda g: setattr(g, "catalog", common_pb2.CATALOG_MEASURE), False),
])
def test_which_changes_move_the_fingerprint(change, same: bool) -> None:
    changed = common_pb2.Group()
    changed.CopyFrom(GROUP)
    change(changed)
    assert (fingerprint(changed) == fingerprint(GROUP)) is same


def _binding(subject: str, *rules: str, catalog=common_pb2.CATALOG_STREAM):
    return schema_pb2.IndexRuleBinding(rules=list(rules),
                                       subject=schema_pb2.Subject(catalog=catalog, name=subject))


@pytest.mark.parametrize("bindings, expected", [
    ([], []),
    ([_binding("s", "b", "a")], ["b", "a"]),  # binding order, no sorting
    ([_binding("s", "a"), _binding("s", "a")], ["a", "a"]),  # no de-duplication
    ([_binding("other", "a")], []),  # another subject
    ([_binding("s", "a", catalog=common_pb2.CATALOG_MEASURE)], []),  # another catalog
    ([_binding("s", "missing", "a")], ["a"]),  # an unknown rule is skipped
])
def test_derive_bound_rules(bindings, expected) -> None:
    rules = {"a": RULE_A, "b": RULE_B}
    got = derive_bound_rules("g", "s", bindings, common_pb2.CATALOG_STREAM, rules)
    assert [r.metadata.name for r in got] == expected


def test_registry_fingerprints_of_a_stream_group() -> None:
    got = registry_fingerprints(GROUP, [RULE_A, RULE_B], [_binding("s", "b", "a")], [STREAM])
    assert got == {
        ("group", "g"): fingerprint(GROUP),
        ("indexRule", "a"): fingerprint(RULE_A),
        ("indexRule", "b"): fingerprint(RULE_B),
        ("stream", "s"): 0x836F51CCE20F5AEE,
    }


def test_a_property_group_has_only_the_group_and_its_rules() -> None:
    prop = common_pb2.Group(metadata=common_pb2.Metadata(name="p"),
                            catalog=common_pb2.CATALOG_PROPERTY)
    got = registry_fingerprints(prop, [RULE_A], [], [STREAM])
    assert set(got) == {("group", "p"), ("indexRule", "a")}
