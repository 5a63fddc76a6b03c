"""Our BanyanDB common/database protos against upstream's (read from the mirrored repository):
every message and enum we declare exists upstream with the same fields, numbers, labels and
types, and every message is complete (no upstream field left out), since the agent fingerprints
these messages by their encoding. Upstream's files import validation and HTTP annotations we do
not have, so they are read as text (a small parser of message, enum and field lines)."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import database_pb2, schema_pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as db

MIRROR = pathlib.Path("/work/.mirror/apache+skywalking-banyandb/repo")
UPSTREAM_FILES = {
    "banyandb.common.v1": ["api/proto/banyandb/common/v1/common.proto"],
    "banyandb.database.v1": ["api/proto/banyandb/database/v1/database.proto",
                             "api/proto/banyandb/database/v1/schema.proto",
                             "api/proto/banyandb/database/v1/rpc.proto"],
}


def _read(path: str) -> str:
    return subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


_FIELD = re.compile(r"^(repeated\s+|optional\s+)?([\w.]+)\s+(\w+)\s*=\s*(\d+)")
_MAP = re.compile(r"^map\s*<[^>]*>\s+(\w+)\s*=\s*(\d+)")


def _strip_options(text: str) -> str:
    """Drop every [...] (field options), brackets nested inside them included."""
    out, depth = [], 0
    for ch in text:
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0:
            out.append(ch)
    return "".join(out)
_VALUE = re.compile(r"^(\w+)\s*=\s*(-?\d+)")


def parse(text: str) -> tuple[dict[str, dict[str, tuple]], dict[str, dict[str, int]]]:
    """Messages (qualified by nesting: "IndexRule.Type") -> field -> (number, repeated, type's
    last name), and enums -> value -> number."""
    text = re.sub(r"//[^\n]*", "", text)
    text = _strip_options(text)
    messages: dict[str, dict[str, tuple]] = {}
    enums: dict[str, dict[str, int]] = {}
    stack: list[tuple[str, str]] = []  # (kind, qualified name)
    for raw in re.split(r"(?<=[{};])", text):
        line = raw.strip()
        if not line:
            continue
        opened = re.match(r"^(message|enum|oneof|service|rpc|option|extend)\s+([\w.]+)?.*\{$", line)
        if opened and line.endswith("{"):
            kind, name = opened.group(1), opened.group(2) or ""
            parent = next((n for k, n in reversed(stack) if k == "message"), "")
            qual = f"{parent}.{name}" if parent and kind in ("message", "enum") else name
            stack.append((kind, qual))
            if kind == "message":
                messages.setdefault(qual, {})
            elif kind == "enum":
                enums.setdefault(qual, {})
            continue
        if line.endswith("{"):  # an option block or similar
            stack.append(("other", ""))
            continue
        for _ in range(line.count("}")):
            if stack:
                stack.pop()
        line = line.lstrip("}").strip()
        if not stack or not line:
            continue
        kind, qual = stack[-1]
        if kind == "oneof":
            kind, qual = next(((k, n) for k, n in reversed(stack) if k == "message"), ("", ""))
        if kind == "message" and (m := _MAP.match(line)):
            entry = "".join(part.capitalize() for part in m.group(1).split("_")) + "Entry"
            messages[qual][m.group(1)] = (int(m.group(2)), True, entry)
        elif kind == "message" and (m := _FIELD.match(line)) and m.group(2) not in ("option",):
            messages[qual][m.group(3)] = (int(m.group(4)), bool(m.group(1) and "repeated" in
                                                                 m.group(1)),
                                          m.group(2).rsplit(".", 1)[-1])
        elif kind == "enum" and (m := _VALUE.match(line)):
            enums[qual][m.group(1)] = int(m.group(2))
    return messages, enums


_SCALARS = {getattr(FieldDescriptor, f"TYPE_{n.upper()}"): n for n in (
    "double", "float", "int64", "uint64", "int32", "fixed64", "fixed32", "bool", "string",
    "bytes", "uint32", "sfixed32", "sfixed64", "sint32", "sint64")}


def _ours(module, package: str):
    messages: dict[str, dict[str, tuple]] = {}
    enums: dict[str, dict[str, int]] = {}

    def walk_enum(e: EnumDescriptor) -> None:
        enums[e.full_name[len(package) + 1:]] = {v.name: v.number for v in e.values}

    def walk(d: Descriptor) -> None:
        fields = {}
        for f in d.fields:
            if f.message_type is not None:
                type_name = f.message_type.name
            elif f.enum_type is not None:
                type_name = f.enum_type.name
            else:
                type_name = _SCALARS[f.type]
            fields[f.name] = (f.number, f.is_repeated, type_name)
        messages[d.full_name[len(package) + 1:]] = fields
        for nested in d.nested_types:
            if not nested.GetOptions().map_entry:
                walk(nested)
        for e in d.enum_types:
            walk_enum(e)

    for d in module.DESCRIPTOR.message_types_by_name.values():
        walk(d)
    for e in module.DESCRIPTOR.enum_types_by_name.values():
        walk_enum(e)
    return messages, enums


@pytest.mark.skipif(not MIRROR.exists(), reason="upstream's repository is not mirrored here")
@pytest.mark.parametrize("package, modules", [
    ("banyandb.common.v1", [common_pb2]),
    ("banyandb.database.v1", [database_pb2, schema_pb2, db]),
])
def test_our_messages_are_upstream_s_complete(package, modules) -> None:
    up_messages: dict[str, dict[str, tuple]] = {}
    up_enums: dict[str, dict[str, int]] = {}
    for path in UPSTREAM_FILES[package]:
        m, e = parse(_read(path))
        up_messages.update(m)
        up_enums.update(e)
    checked = 0
    for module in modules:
        messages, enums = _ours(module, package)
        for name, fields in messages.items():
            assert name in up_messages, f"{name} is not upstream's"
            # Complete and equal: a missing field would change the fingerprint's bytes.
            assert fields == up_messages[name], name
            checked += 1
        for name, values in enums.items():
            assert values == up_enums[name], name
    assert checked >= 9  # every message of ours was compared


def test_the_parser_reads_nesting_oneofs_and_options() -> None:
    messages, enums = parse('''
        message A {
          string x = 1 [(validate.rules).string = {
            min_len: 1
          }];
          enum Kind { KIND_UNSPECIFIED = 0; KIND_B = 2; }
          Kind kind = 2;
          oneof choice { B b = 3; }
          repeated common.v1.Metadata m = 4 [(v.rules).repeated = {not_in: [0]}];
          map<string, string> node_labels = 5;
          message B { optional int64 y = 7; }
        }
        service S { rpc List(A) returns (A) { option (google.api.http) = {get: "/x"}; } }
    ''')
    assert messages == {"A": {"x": (1, False, "string"), "kind": (2, False, "Kind"),
                              "b": (3, False, "B"), "m": (4, True, "Metadata"),
                              "node_labels": (5, True, "NodeLabelsEntry")},
                        "A.B": {"y": (7, False, "int64")}}
    assert enums == {"A.Kind": {"KIND_UNSPECIFIED": 0, "KIND_B": 2}}
