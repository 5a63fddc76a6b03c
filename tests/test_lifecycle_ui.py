"""The console's Lifecycle panel in headless Chromium (issue 16), as tests/test_ui.py runs it.

A proxy with fake pod agents answering the lifecycle streams (`SchemaWorld.sample()`, one object
drifted); two collections run first so the drift is past its one-round suppression, then the
page's own collection (its third) is what the panel shows. Saves
`test-artifacts/console-lifecycle.png` for a person to look at.
"""

from __future__ import annotations

import html
import re

import pytest
import trio

from lifecycle_cluster import DATA0, DATA1, LIAISON, cluster
from test_ui import ARTIFACTS, CHROMIUM, console_messages, element, run_chromium

pytestmark = [
    pytest.mark.slow, pytest.mark.external,
    pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` on PATH"),
]


async def test_lifecycle_panel_shows_groups_by_nodes_and_the_verdict(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with trio.fail_after(120):
        async with cluster() as c:
            c.world.drift(DATA1, "sw_stream", "stream", "segment")
            c.world.forget(DATA0, "sw_metric", "indexRule", "service_id")
            for _ in range(2):
                await c.get()
            dom, stderr = await run_chromium(tmp_path, c.proxy.http_url + "/", "--dump-dom")
            shot = ARTIFACTS / "console-lifecycle.png"
            shot.unlink(missing_ok=True)
            _, shot_stderr = await run_chromium(tmp_path, c.proxy.http_url + "/",
                                                f"--screenshot={shot}", "--window-size=1280,1400")
            assert shot.stat().st_size > 10_000
            assert not console_messages(shot_stderr), console_messages(shot_stderr)
            liaison_id = c.agents[LIAISON].agent_id

    assert 'data-lifecycle="loaded"' in dom
    assert element(dom, "errors") == '<div id="errors" role="alert"></div>', element(dom, "errors")
    assert not console_messages(stderr), console_messages(stderr)
    panel = html.unescape(element(dom, "lifecycle-body"))
    # one column per data node, one row group per group, in the API's order (by name)
    assert re.findall(r'<th class="node-col">([^<]+)</th>', panel) == [DATA0, DATA1]
    assert re.findall(r'<tbody data-group="([^"]+)" data-status="([^"]+)"', panel) == [
        ("sw_metric", "CONSISTENCY_STATUS_INCONSISTENT"),
        ("sw_property", "CONSISTENCY_STATUS_CONSISTENT"),
        ("sw_stream", "CONSISTENCY_STATUS_INCONSISTENT"),
    ]
    assert "inconsistent · 1 issue" in panel and ">consistent<" in panel
    # the issues behind the verdicts, in words
    assert re.search(r"<code>stream segment</code> on <code>" + DATA1
                     + r"</code>: the node's cache is behind the registry", panel)
    assert re.search(r"<code>indexRule service_id</code> on <code>" + DATA0
                     + r"</code>: missing in the node's cache", panel)
    # sizes: sw_stream has 2 segments x 3 shards x 4 MiB on each node
    stream = panel[panel.index('data-group="sw_stream"'):]
    assert "24 MiB" in stream and "2 segments, 3 shards" in stream
    assert "3 of 3 asked agents answered (3 registered)" in panel
    assert f"registry read from {liaison_id}" in panel


async def test_lifecycle_panel_says_why_nothing_was_gathered(tmp_path):
    from fodcproxy.testing import open_proxy

    with trio.fail_after(60):
        async with open_proxy() as proxy:
            dom, stderr = await run_chromium(tmp_path, proxy.http_url + "/", "--dump-dom")
    assert not console_messages(stderr), console_messages(stderr)
    panel = element(dom, "lifecycle-body")
    assert '<p class="problem">FODC unavailable: no agents registered</p>' in panel
    assert element(dom, "errors") == '<div id="errors" role="alert"></div>'
