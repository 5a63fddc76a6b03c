"""The files in examples/ run as they are.

Test policy (as in conftest.py): socket test bodies run under `trio.fail_after`; subprocesses run
with a timeout; no assertion on wall-clock speed; traffic only to 127.0.0.1.
"""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

import pytest
import trio

from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples"
ROOT = EXAMPLES.parent

pytestmark = pytest.mark.slow


def run(args: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.py")), ids=lambda p: p.name)
def test_every_example_says_what_to_try_in_its_first_lines(path):
    head = "\n".join(path.read_text().splitlines()[:6])
    assert head.startswith('"""')
    assert "Try:" in head


def test_pytest_example():
    out = run(["-m", "pytest", "examples/test_with_fake_agents.py", "-p", "fodcproxy.testing.pytest_plugin",
               "-q", "-p", "no:cacheprovider"])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "1 passed" in out.stdout


def test_pytest_example_body_is_under_ten_lines():
    text = (EXAMPLES / "test_with_fake_agents.py").read_text()
    body = text.split("async def test_three_roles_on_metrics", 1)[1].splitlines()[1:]
    assert 0 < len([ln for ln in body if ln.strip()]) < 10


def test_embed_proxy_example():
    out = run([str(EXAMPLES / "embed_proxy.py")], timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""
    assert re.search(r"agent registered as datanode-hot-[0-9a-f]+", out.stdout)
    assert "# TYPE banyandb_measure_total_written counter" in out.stdout
    assert 'fodc_agent_up{agent_id="datanode-hot-' in out.stdout


def test_custom_agent_example_with_its_own_proxy():
    out = run([str(EXAMPLES / "custom_agent.py")], timeout=60)
    assert out.returncode == 0, out.stderr
    assert "no --proxy-addr: started a proxy" in out.stdout
    assert re.search(r"request 1 \(window .*\): answered \d+ samples: node_load1=", out.stdout)
    assert "request 3 (latest): answered 2 samples" in out.stdout
    assert out.stdout.rstrip().endswith("done: 3 requests answered")


async def test_custom_agent_example_against_a_proxy_given_on_the_command_line():
    with trio.fail_after(60):
        async with open_proxy() as proxy:
            proc = await trio.lowlevel.open_process(
                [sys.executable, str(EXAMPLES / "custom_agent.py"), "--proxy-addr", proxy.grpc_address,
                 "--requests", "2", "--duration", "50"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
            try:
                out = b""
                while b"registered with the proxy" not in out:
                    chunk = await proc.stdout.receive_some()
                    assert chunk, out
                    out += chunk
                agent_id = re.search(rb"as (datanode-hot-[0-9a-f]+)", out).group(1).decode()
                for _ in range(2):  # the second is the last request it answers before it leaves
                    text = (await http_get(proxy.http_url + "/metrics")).text
                    assert f'node_load1{{agent_id="{agent_id}"' in text
                while chunk := await proc.stdout.receive_some():
                    out += chunk
                assert await proc.wait() == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()
            assert b"done: 2 requests answered" in out
            assert proxy.proxy.registry.get(agent_id) is None  # it said goodbye
