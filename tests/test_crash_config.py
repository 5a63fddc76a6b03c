"""The agent's crash-record flags: defaults, repeated directories, and one clear line naming the
flag for each bad value."""

from __future__ import annotations

import subprocess
import sys

import pytest

from fodcproxy.agent.config import AgentConfig, agent_config_from_args, build_parser
from fodcproxy.errors import ConfigError


def parse(*argv: str) -> AgentConfig:
    return agent_config_from_args(build_parser().parse_args(["--node-role", "liaison", *argv]))


def test_defaults_watch_nothing() -> None:
    config = parse()
    assert config.crash_source_dirs == ()
    assert (config.crash_max_records, config.crash_poll_interval) == (32, 5.0)


def test_repeated_directories_and_values() -> None:
    config = parse("--crash-source-dir", "/data/crash", "--crash-source-dir", "crash",
                   "--crash-max-records", "5", "--crash-poll-interval", "250ms")
    assert config.crash_source_dirs == ("/data/crash", "crash")
    assert (config.crash_max_records, config.crash_poll_interval) == (5, 0.25)


@pytest.mark.parametrize(("argv", "flag", "message"), [
    (["--crash-source-dir", ""], "--crash-source-dir", "is not a directory name"),
    (["--crash-source-dir", "/a", "--crash-source-dir", "/a/"], "--crash-source-dir",
     "'/a/' is given twice (as '/a')"),
    (["--crash-max-records", "0"], "--crash-max-records", "between 1 and 1024"),
    (["--crash-max-records", "100000"], "--crash-max-records", "between 1 and 1024"),
    (["--crash-max-records", "many"], "--crash-max-records", "is not a whole number"),
    (["--crash-poll-interval", "10ms"], "--crash-poll-interval", "at least 100ms"),
    (["--crash-poll-interval", "soon"], "--crash-poll-interval", ""),
])
def test_bad_values_name_the_flag(argv: list[str], flag: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse(*argv)
    assert info.value.flag == flag and message in str(info.value)


def test_the_program_says_one_line() -> None:
    out = subprocess.run([sys.executable, "-m", "fodcproxy", "agent", "--node-role", "liaison",
                          "--crash-max-records", "0"], capture_output=True, text=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert out.returncode == 2
    [line] = out.stderr.strip().splitlines()
    assert "--crash-max-records" in line and "between 1 and 1024" in line


def test_a_directory_name_that_is_not_utf8_or_not_printable() -> None:
    with pytest.raises(ConfigError, match="is not UTF-8"):
        AgentConfig(node_role="liaison", crash_source_dirs=("/data/\udcff",))
    with pytest.raises(ConfigError, match="is not a directory name"):
        AgentConfig(node_role="liaison", crash_source_dirs=("/data/\ncrash",))
