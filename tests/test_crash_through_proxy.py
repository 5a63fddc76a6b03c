"""Issue 14 end to end, every part real: our agent program (`python -m fodcproxy agent
--crash-source-dir D`, a subprocess) on our proxy; the node writes a panic record into D; our
proxy's `GET /diagnostics` shows it with upstream's keys, and `fodc_agent_crash_records` counts it.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get
from helpers import wait_for
from test_crash_records import go_marshal, node_record
from test_pressure_e2e import ROOT

pytestmark = pytest.mark.slow


async def test_a_panic_record_written_beside_the_node_is_served_by_the_proxy(tmp_path) -> None:
    crash = tmp_path / "crash"
    name = "20260415T080000.123456789Z-liaison-grpc-4242"
    with trio.fail_after(60):
        async with open_proxy(heartbeat_interval=1.0, diagnostics_refresh_interval=0.5) as proxy:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "fodcproxy", "agent", "--proxy-addr", proxy.grpc_address,
                 "--pod-name", "liaison-0", "--node-role", "ROLE_LIAISON",
                 "--metrics-endpoint", "http://127.0.0.1:9/metrics",
                 "--crash-source-dir", str(crash), "--crash-poll-interval", "100ms",
                 "--pressure-profiler-dir", str(tmp_path / "profiles")],
                cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL)
            try:
                await wait_for(lambda: any(e.meta.pod_name == "liaison-0"
                                           for e in proxy.proxy.registry), step=0.05)
                first = await http_get(proxy.http_url + "/diagnostics?pod_name=liaison-0")
                assert first.status == 200 and first.json() == []
                (crash / name).mkdir(parents=True)
                (crash / name / "panic.json").write_bytes(go_marshal(node_record()))
                while not (records := (await http_get(proxy.http_url + "/diagnostics")).json()):
                    await trio.sleep(0.1)
                [record] = records
                assert (record["pod_name"], record["role"], record["artifact_dir"],
                        record["files"]) == ("liaison-0", "ROLE_LIAISON", name, ["panic.json"])
                panic = record["panic_record"]
                assert panic["component"] == "liaison-grpc" and panic["recovered"] is True
                assert panic["goroutine_stack"].startswith("goroutine 42 [running]:")
                assert panic["occurred_at"] == "2026-04-15T08:00:00.123456789Z"

                async def counted() -> None:
                    while True:
                        text = (await http_get(proxy.http_url + "/metrics")).text
                        if any(s.name == "fodc_agent_crash_records" and s.value == 1
                               and s.labels.get("pod_name") == "liaison-0"
                               for f in text_string_to_metric_families(text) for s in f.samples):
                            return
                        await trio.sleep(0.2)

                await counted()
                process.send_signal(signal.SIGTERM)
                assert await process.wait() == 0
            finally:
                if process.poll() is None:
                    process.kill()
                    await process.wait()
