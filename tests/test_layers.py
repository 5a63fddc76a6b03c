"""The layering of `fodcproxy` (docs/architecture.md): no import cycles between units, the agent
program loads nothing of the proxy, no module grows past 800 lines.

A *unit* is a top-level module or subpackage of `fodcproxy` (`fodcproxy.cli`, `fodcproxy.agent`,
`fodcproxy.hub`, `fodcproxy.rpc`, ...). The graph is read from the source with `ast`, imports
inside functions included (a lazy import is still a dependency); imports under
`if TYPE_CHECKING:` are left out, as they never run.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fodcproxy"
ROOT = "fodcproxy"

# Edges allowed to close a cycle; each names the issue that removes it. None left.
ALLOWED_CYCLE_EDGES: set[tuple[str, str]] = set()

# Modules allowed past MAX_LINES, each with the reason.
MAX_LINES = 800
LONG_MODULES: dict[str, str] = {}

# What the agent program must not load: the proxy's own parts.
PROXY_ONLY = ("fodcproxy.hub", "fodcproxy.core.exposition", "fodcproxy.core.registry",
              "fodcproxy.http", "fodcproxy.metrics", "fodcproxy.proxy", "fodcproxy.config",
              "fodcproxy.rpc.service", "fodcproxy.rpc.server", "fodcproxy.rpc.replies",
              "fodcproxy.testing")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] == "_proto":  # generated code
            continue
        parts = [ROOT, *rel.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Every fodcproxy module `module` imports, anywhere in its body (not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                if not is_package:
                    anchor = anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            for a in node.names:  # `from fodcproxy.rpc import convert` imports a module
                if f"{base}.{a.name}" in known:
                    found.add(f"{base}.{a.name}")
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return {m for m in found if m == ROOT or m.startswith(ROOT + ".")}


def unit_graph() -> dict[str, set[str]]:
    """unit -> the units it imports (itself excluded)."""
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        src = _unit(module)
        targets = graph.setdefault(src, set())
        for imported in _imports(module, path, set(modules)):
            dst = _unit(imported)
            if dst != src:
                targets.add(dst)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one unit (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def test_the_graph_sees_lazy_imports_and_skips_type_checking_ones() -> None:
    graph = unit_graph()
    # cli imports every program lazily, inside main()
    assert {"fodcproxy.agent", "fodcproxy.testing", "fodcproxy.proxy"} <= graph["fodcproxy.cli"]
    # http names the Proxy type only under TYPE_CHECKING
    assert "fodcproxy.proxy" not in graph["fodcproxy.http"]


def test_cycle_detection_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_units() -> None:
    graph = unit_graph()
    for src, dst in ALLOWED_CYCLE_EDGES:
        graph.get(src, set()).discard(dst)
    assert cycles(graph) == []


@pytest.mark.parametrize("unit", ["fodcproxy.agent", "fodcproxy.process", "fodcproxy.errors",
                                  "fodcproxy.core"])
def test_shared_and_agent_units_import_nothing_of_the_programs(unit: str) -> None:
    programs = {"fodcproxy.cli", "fodcproxy.proxy", "fodcproxy.config", "fodcproxy.testing",
                "fodcproxy.hub", "fodcproxy.http", "fodcproxy.metrics"}
    assert unit_graph()[unit] & programs == set()


def test_no_module_over_800_lines() -> None:
    long = {}
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel.startswith("_proto/") or rel in LONG_MODULES:
            continue
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_LINES:
            long[rel] = n
    assert long == {}


def _loaded_after(code: str) -> set[str]:
    script = textwrap.dedent(code) + textwrap.dedent("""
        import sys
        print("\\n".join(m for m in sys.modules if m.startswith("fodcproxy")))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, check=True)
    return set(out.stdout.split())


@pytest.mark.parametrize("code", [
    "import fodcproxy.agent.client",
    "import fodcproxy.agent.main",
    # the agent program as `python -m fodcproxy agent` starts it, up to its flags
    """
    from fodcproxy.cli import main
    try:
        main(["agent", "--help"])
    except SystemExit:
        pass
    """,
])
def test_the_agent_loads_nothing_of_the_proxy(code: str) -> None:
    loaded = _loaded_after(code)
    assert "fodcproxy.agent.client" in loaded or "fodcproxy.agent.config" in loaded
    assert {m for m in loaded if m.startswith(PROXY_ONLY)} == set()


def test_the_proxy_program_does_load_the_proxy() -> None:
    # The check above can fail: the same probe sees the proxy's parts when they are loaded.
    loaded = _loaded_after("import fodcproxy.proxy")
    assert {"fodcproxy.hub", "fodcproxy.core.registry", "fodcproxy.metrics"} <= loaded
