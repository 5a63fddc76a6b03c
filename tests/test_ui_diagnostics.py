"""The console's Diagnostics panel in headless Chromium: crash records per node with the stack,
memory-pressure captures with a download link per profile, and the link downloads the bytes."""

from __future__ import annotations

import html
import re

import pytest
import trio

from fodcproxy.testing import open_fake_agent, open_proxy
from fodcproxy.testing.diagnostics import FakeCrashService, FakePressureService, crash_record
from fodcproxy.testing.http import http_get
from helpers import wait_for
from test_ui import CHROMIUM, console_messages, element, run_chromium


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` on PATH")
async def test_console_diagnostics_panel(tmp_path):
    crash = FakeCrashService([crash_record("/var/crash/0001", panic_value="nil map write")])
    pressure = FakePressureService({"20260101T000000Z": {"heap": b"H" * 2048, "goroutine": b"G"}})
    with trio.fail_after(90):
        async with open_proxy(collect_timeout=2.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="ROLE_DATA", pod_name="banyandb-data-0",
                                labels={"type": "hot"}, services=[crash, pressure]) as pod:
            await wait_for(lambda: pressure.call is not None and crash.call is not None)
            await wait_for(lambda: pod.agent_id in proxy.proxy.hub.sessions
                           and len(proxy.proxy.hub.sessions[pod.agent_id].streams) >= 3)
            dom, stderr = await run_chromium(tmp_path, proxy.http_url + "/", "--dump-dom")
            assert re.search(r'<body[^>]*data-loaded="true"', dom)
            assert element(dom, "errors") == '<div id="errors" role="alert"></div>', \
                element(dom, "errors")
            assert not console_messages(stderr), console_messages(stderr)
            panel = html.unescape(element(dom, "diagnostics"))
            assert 'data-node="banyandb-data-0"' in panel
            assert "nil map write" in panel and "goroutine 1 [running]" in panel
            links = re.findall(r'<a class="profile-link" href="([^"]+)"', panel)
            assert links == ["pressure-profiles/banyandb-data-0/20260101T000000Z/heap",
                             "pressure-profiles/banyandb-data-0/20260101T000000Z/goroutine"]
            got = await http_get(f"{proxy.http_url}/{links[0]}")
            assert got.status == 200 and got.body == b"H" * 2048


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` on PATH")
async def test_an_open_crash_record_stays_open_across_refreshes(tmp_path):
    # The console re-renders the panel every refresh (15 s): a stack the operator opened to
    # read must not fold up under them. The module runs in Chromium on a page of its own;
    # agent text (a panic value, a pod name, a stack) is shown as text, never as markup.
    from pathlib import Path

    module = Path(__file__).resolve().parent.parent / "fodcproxy/http/static/diagnostics.js"
    page = tmp_path / "page.html"
    page.write_text(f"""<!doctype html><meta charset="utf-8"><div id="out"></div>
<p id="result"></p>
<script type="module">
import {{ renderDiagnostics }} from "{module.as_uri()}";
const evil = '<img src=x onerror="document.title=1">';
const rec = (dir) => ({{agent_id: "a", pod_name: 'p"><b>x</b>', role: "ROLE_DATA",
  fetched_at: "2026-01-01T00:00:00Z", artifact_dir: dir,
  panic_record: {{panic_value: evil, goroutine_stack: evil, component: "c",
                  occurred_at: "2026-01-01T00:00:00Z"}}}});
const el = document.getElementById("out");
renderDiagnostics(el, [rec("/c/1"), rec("/c/2")], []);
el.querySelectorAll("details")[1].open = true;
renderDiagnostics(el, [rec("/c/0"), rec("/c/1"), rec("/c/2")], []);
const open = [...el.querySelectorAll("details")].filter((d) => d.open)
  .map((d) => d.dataset.artifact);
document.getElementById("result").textContent = JSON.stringify({{
  open, markup: el.querySelectorAll("img, b").length}});
</script>""")
    dom, stderr = await run_chromium(tmp_path, page.as_uri(), "--allow-file-access-from-files",
                                     "--dump-dom")
    assert not console_messages(stderr), console_messages(stderr)
    result = html.unescape(element(dom, "result"))
    assert '{"open":["/c/2"],"markup":0}' in result, result
