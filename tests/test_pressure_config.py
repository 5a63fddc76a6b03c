"""The --pressure-profiler-* flags: upstream's names and defaults, ours beside them, every bad
value refused naming its flag; and how the agent composes the profiler from them."""

from __future__ import annotations

import pytest

from fodcproxy.agent.config import agent_config_from_args, build_parser
from fodcproxy.agent.main import Agent
from fodcproxy.agent.profileservice import PressureProfilesService
from fodcproxy.errors import ConfigError


def config(*argv: str):
    return agent_config_from_args(build_parser().parse_args(["--node-role", "liaison", *argv]))


def test_defaults_are_upstreams() -> None:
    c = config()
    assert (c.pressure_profiler_enabled, c.pressure_trigger_percent, c.pressure_pprof_url,
            c.pressure_cooldown, c.pressure_dir, c.pressure_max_artifacts,
            c.pressure_max_disk_bytes, c.pressure_limit_bytes) == (
        True, 75, "http://localhost:6060", 300.0, "/tmp/pressure-profiles", 16, 512 * 1024**2,
        None)
    assert (c.pressure_capture_timeout, c.pressure_max_profile_bytes) == (30.0, 128 * 1024**2)


@pytest.mark.parametrize("argv, enabled", [
    (["--pressure-profiler-enabled=false"], False),
    (["--pressure-profiler-enabled", "false"], False),
    (["--pressure-profiler-enabled"], True),
    (["--pressure-profiler-enabled=TRUE"], True),
    (["--pressure-profiler-enabled=0"], False),
])
def test_enabled_reads_like_a_go_bool(argv: list[str], enabled: bool) -> None:
    assert config(*argv).pressure_profiler_enabled is enabled


def test_values() -> None:
    c = config("--pressure-profiler-trigger-percent", "90",
               "--pressure-profiler-pprof-port", "7070",
               "--pressure-profiler-cooldown", "90s", "--pressure-profiler-dir", "/data/pp",
               "--pressure-profiler-max-artifacts", "0",
               "--pressure-profiler-max-disk-bytes", "1GiB",
               "--pressure-profiler-limit-bytes", "2GiB",
               "--pressure-profiler-capture-timeout", "5s",
               "--pressure-profiler-max-profile-bytes", "10MB")
    assert (c.pressure_trigger_percent, c.pressure_pprof_url, c.pressure_cooldown, c.pressure_dir,
            c.pressure_max_artifacts, c.pressure_max_disk_bytes, c.pressure_limit_bytes,
            c.pressure_capture_timeout, c.pressure_max_profile_bytes) == (
        90, "http://localhost:7070", 90.0, "/data/pp", 0, 1024**3, 2 * 1024**3, 5.0, 10**7)
    assert config("--pressure-profiler-pprof-url", "http://10.0.0.5:6060/").pressure_pprof_url \
        == "http://10.0.0.5:6060/"


@pytest.mark.parametrize("argv, flag", [
    (["--pressure-profiler-enabled=maybe"], "--pressure-profiler-enabled"),
    (["--pressure-profiler-trigger-percent", "0"], "--pressure-profiler-trigger-percent"),
    (["--pressure-profiler-trigger-percent", "101"], "--pressure-profiler-trigger-percent"),
    (["--pressure-profiler-trigger-percent", "high"], "--pressure-profiler-trigger-percent"),
    (["--pressure-profiler-pprof-port", "70000"], "--pressure-profiler-pprof-port"),
    (["--pressure-profiler-pprof-url", "https://x:6060"], "--pressure-profiler-pprof-url"),
    (["--pressure-profiler-pprof-url", "http://"], "--pressure-profiler-pprof-url"),
    (["--pressure-profiler-pprof-url", "http://x", "--pressure-profiler-pprof-port", "1"],
     "--pressure-profiler-pprof-url"),
    (["--pressure-profiler-cooldown", "soon"], "--pressure-profiler-cooldown"),
    (["--pressure-profiler-dir", ""], "--pressure-profiler-dir"),
    (["--pressure-profiler-max-artifacts", "-1"], "--pressure-profiler-max-artifacts"),
    (["--pressure-profiler-max-disk-bytes", "lots"], "--pressure-profiler-max-disk-bytes"),
    (["--pressure-profiler-limit-bytes", "0"], "--pressure-profiler-limit-bytes"),
    (["--pressure-profiler-capture-timeout", "0s"], "--pressure-profiler-capture-timeout"),
    (["--pressure-profiler-max-profile-bytes", "0"], "--pressure-profiler-max-profile-bytes"),
])
def test_bad_values_name_their_flag(argv: list[str], flag: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(*argv)
    assert err.value.flag == flag


def test_the_agent_serves_the_stream_with_or_without_the_profiler(tmp_path) -> None:
    on = Agent(config("--pressure-profiler-dir", str(tmp_path / "pp")))
    assert on.pressure is not None and (tmp_path / "pp").is_dir()
    [service] = [s for s in on.services if isinstance(s, PressureProfilesService)]
    assert service.store is on.pressure.store
    off = Agent(config("--pressure-profiler-enabled=false",
                       "--pressure-profiler-dir", str(tmp_path / "never")))
    assert off.pressure is None and not (tmp_path / "never").exists()
    [service] = [s for s in off.services if isinstance(s, PressureProfilesService)]
    assert service.store is None
