"""The four programs on a first run: --help names them all, --version, and an address that cannot be
listened on is one line naming it and the flag to change (exit status 2), not a traceback.

Test policy: every program runs as a subprocess (`python -m fodcproxy ...`) with a timeout; a busy
port is one this test holds open itself, so nothing depends on what else runs on the machine.
"""

from __future__ import annotations

import errno
import importlib.metadata
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fodcproxy.errors import ConfigError
from fodcproxy.proxy import listen_error

PROGRAM = [sys.executable, "-m", "fodcproxy"]
VERSION = importlib.metadata.version("fodcproxy")


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PROGRAM, *args], capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 that this test holds open (listening) while it runs."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_help_names_every_program() -> None:
    out = run("--help")
    assert out.returncode == 0
    programs = out.stdout[out.stdout.index("programs ("):]
    for name in ("proxy", "agent", "fake-agents", "demo"):
        assert f"\n  {name} " in programs
    assert "python -m fodcproxy PROGRAM --help" in programs


def test_a_mistyped_program_is_one_line_naming_the_programs() -> None:
    out = run("agnet", "--node-role", "liaison")
    line = _one_error_line(out, "python -m fodcproxy")
    assert line == ("python -m fodcproxy: error: unknown program 'agnet': choose one of proxy, "
                    "agent, fake-agents, demo (see --help)")


@pytest.mark.parametrize("program", [[], ["proxy"], ["agent"], ["fake-agents"], ["demo"]])
def test_version_prints_the_package_version(program: list[str]) -> None:
    out = run(*program, "--version")
    assert (out.returncode, out.stdout, out.stderr) == (0, f"fodcproxy {VERSION}\n", "")


@pytest.mark.parametrize("program", [["agent"], ["fake-agents"], ["demo"]])
def test_every_program_lists_version_in_its_help(program: list[str]) -> None:
    out = run(*program, "--help")
    assert out.returncode == 0
    assert "--version" in out.stdout


def _one_error_line(out: subprocess.CompletedProcess[str], prog: str) -> str:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(f"{prog}: error: ")
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("flag", ["--grpc-listen-addr", "--http-listen-addr"])
def test_proxy_on_a_busy_port_says_so_in_one_line(busy_port: int, flag: str) -> None:
    other = "--http-listen-addr" if flag == "--grpc-listen-addr" else "--grpc-listen-addr"
    out = run(flag, f"127.0.0.1:{busy_port}", other, "127.0.0.1:0", "--log-level", "warning")
    line = _one_error_line(out, "python -m fodcproxy")
    assert f"{flag}: cannot listen on 127.0.0.1:{busy_port}: the address is already in use" in line
    assert line.endswith(f"pick another with {flag}")


@pytest.mark.slow
def test_proxy_on_a_busy_port_at_info_level_ends_with_the_one_line(busy_port: int) -> None:
    # At the default level the gRPC server logs that it listens before HTTP fails: the failure is
    # still one line, the last, and no traceback.
    out = run("--grpc-listen-addr", "127.0.0.1:0", "--http-listen-addr", f"127.0.0.1:{busy_port}")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr and "ExceptionGroup" not in out.stderr
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("python -m fodcproxy: error: --http-listen-addr: cannot listen on "
                           f"127.0.0.1:{busy_port}")


@pytest.mark.slow
def test_demo_on_a_busy_port_says_so_in_one_line(busy_port: int) -> None:
    out = run("demo", "--grpc-listen-addr", f"127.0.0.1:{busy_port}",
              "--http-listen-addr", "127.0.0.1:0", "--log-level", "warning")
    line = _one_error_line(out, "python -m fodcproxy demo")
    assert f"--grpc-listen-addr: cannot listen on 127.0.0.1:{busy_port}" in line


@pytest.mark.slow
def test_agent_with_an_unloadable_file_says_so_in_one_line(tmp_path: object) -> None:
    # The agent listens on nothing; its first-run failures are the files it must load.
    out = run("agent", "--node-role", "liaison", "--node-ip", "127.0.0.1",
              "--proxy-addr", "127.0.0.1:1", "--agent-token-file", "/nonexistent/token")
    line = _one_error_line(out, "python -m fodcproxy agent")
    assert line.endswith("--proxy-token-file: cannot read /nonexistent/token: No such file or directory")


# --- the translation itself, without processes ----------------------------------------------------


def test_listen_error_names_the_address_and_the_flag() -> None:
    busy = OSError(errno.EADDRINUSE, "Address already in use")
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [busy])])
    err = listen_error(nested, "--http-listen-addr", "::1", 17901)
    assert isinstance(err, ConfigError) and err.flag == "--http-listen-addr"
    assert err.message == ("--http-listen-addr: cannot listen on [::1]:17901: the address is "
                           "already in use (is another proxy running?); pick another with "
                           "--http-listen-addr")
    gone = listen_error(OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address"),
                        "--grpc-listen-addr", "10.255.255.1", 17900)
    assert isinstance(gone, ConfigError)
    assert "cannot listen on 10.255.255.1:17900: cannot assign requested address" in gone.message
    # Anything but a lone OSError is left as it is: it is not about the address.
    other = ExceptionGroup("g", [busy, ValueError("x")])
    assert listen_error(other, "--grpc-listen-addr", "", 17900) is other
    bug = ExceptionGroup("g", [KeyError("y")])
    assert listen_error(bug, "--grpc-listen-addr", "", 17900) is bug
    not_os = RuntimeError("z")
    assert listen_error(not_os, "--grpc-listen-addr", "", 17900) is not_os
