"""README.md and docs/ stand on their own: their links resolve inside the repository, and the
code they show runs as written.

Test policy (as in conftest.py): snippets run in subprocesses with a timeout; no assertion on
wall-clock speed; traffic only to 127.0.0.1.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def python_blocks(path: pathlib.Path, after: str = "") -> list[str]:
    text = path.read_text()
    if after:
        text = text[text.index(after):]
    return re.findall(r"```python\n(.*?)```", text, re.DOTALL)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_links_resolve_inside_the_repository(path):
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        file = (path.parent / target.split("#", 1)[0]).resolve()
        assert file.is_relative_to(ROOT), f"{path.name} links outside the repository: {target}"
        assert file.exists(), f"{path.name} links to a missing file: {target}"


def run_pytest(tmp_path: pathlib.Path, code: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_snippet.py").write_text(code)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p",
         "fodcproxy.testing.pytest_plugin", "test_snippet.py"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.slow
def test_readme_embedding_snippet_runs_as_written(tmp_path):
    (code,) = python_blocks(ROOT / "README.md", after="## Embedding")[:1]
    out = run_pytest(tmp_path, code)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


@pytest.mark.slow
def test_embedding_doc_snippets_run_as_written(tmp_path):
    plugin_opt_in, with_pytest, without_pytest = python_blocks(ROOT / "docs" / "embedding.md")[:3]
    assert "pytest_plugins" in plugin_opt_in
    out = run_pytest(tmp_path, with_pytest)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout
    (tmp_path / "snippet.py").write_text(without_pytest)
    out = subprocess.run([sys.executable, "snippet.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert re.search(r'writes_total\{agent_id="datanode-hot-[0-9a-f]+"', out.stdout), out.stdout
