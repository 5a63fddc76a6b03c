"""The benchmarks still run: each scenario at a tiny size, as the subprocess it is meant to be.

Policy: only that it exits 0 and prints its one line of figures. Never an assertion on timing:
these runs are far too small to mean anything, and the machines are noisy (see benchmarks/).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

TINY = ["--agents", "3", "--series", "10", "--ref-runs", "1", "--warmup", "1",
        "--register-timeout", "30"]
SCENARIOS = [
    ("p1_metrics", "P1 /metrics ", [*TINY, "--runs", "2"]),
    ("p2_many_agents", "P2 many-agents ", [*TINY, "--runs", "2", "--settle", "0"]),
    ("p3_windows", "P3 /metrics-windows ", [*TINY, "--runs", "2", "--points", "3"]),
    ("p4_concurrent_scrapes", "P4 concurrent-scrapes ",
     [*TINY, "--runs", "2", "--scrapers", "3", "--requests", "2"]),
    ("p5_health_latency", "P5 health-latency ", [*TINY, "--scrapes", "3"]),
    ("m1_hostile_memory", "M1 hostile memory ",
     ["--registered", "2", "--anonymous", "2", "--seconds", "1"]),
    ("m2_profile_download", "M2 profile download ", ["--megabytes", "4"]),
]


@pytest.mark.parametrize(("module", "prefix", "args"), SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_benchmark_runs_and_prints_its_figures(module: str, prefix: str, args: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    [line] = lines
    assert line.startswith(prefix)
    if module == "m2_profile_download":
        assert "peak_growth=" in line and "complete=True" in line
    elif module.startswith("m"):
        assert "peak_growth=" in line and "real_agent_scraped=True" in line
    else:
        assert "median=" in line and "proxy_cpu=" in line and "peak_rss=" in line
