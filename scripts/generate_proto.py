"""Regenerate fodcproxy/_proto from proto/ (protobuf messages, type stubs, purerpc stubs).

Run from the repository root:  python scripts/generate_proto.py
Never edit the generated files by hand; tests/test_proto.py fails when they are stale.
"""

from __future__ import annotations

import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTO_ROOT = ROOT / "proto"
OUT = ROOT / "fodcproxy" / "_proto"
PACKAGE = "fodcproxy._proto"


def _plugin_path() -> str:
    found = shutil.which("protoc-gen-purerpc")
    if found is None:
        sys.exit("protoc-gen-purerpc is not on PATH: pip install purerpc")
    return found


def generate(out: pathlib.Path = OUT) -> list[pathlib.Path]:
    """Generate into `out`; return the written files."""
    import grpc_tools
    from grpc_tools import protoc

    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as tmp:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"-I{include}",
            f"--python_out={tmp}",
            f"--pyi_out={tmp}",
            f"--purerpc_out={tmp}",
            f"--plugin=protoc-gen-purerpc={_plugin_path()}",
            *protos,
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        written = []
        for src in sorted(pathlib.Path(tmp).rglob("*.py*")):
            rel = src.relative_to(tmp)
            text = src.read_text()
            # purerpc stubs import the messages as a top-level package; make it ours.
            text = re.sub(
                r"^import (banyandb(?:\.\w+)*)\.(\w+_pb2) as (\w+)$",
                lambda m: f"from {PACKAGE}.{m.group(1)} import {m.group(2)} as {m.group(3)}",
                text,
                flags=re.M,
            )
            # ... and so do the messages and stubs of one proto that imports another.
            text = re.sub(r"^from (banyandb(?:\.\w+)*) import ", rf"from {PACKAGE}.\1 import ",
                          text, flags=re.M)
            dest = out / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text)
            written.append(dest)
        for d in {p.parent for p in written}:
            while d != out.parent:
                (d / "__init__.py").touch()
                d = d.parent
    return written


if __name__ == "__main__":
    for path in generate():
        print(path.relative_to(ROOT))
