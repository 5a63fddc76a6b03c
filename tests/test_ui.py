"""The web console (`GET /`, `GET /ui/...`): its files over HTTP, and the page in a real browser.

Test policy:
- Every test that touches a socket runs its body under `trio.fail_after(...)`: a hang fails fast.
- Traffic goes to 127.0.0.1 only: a proxy from `open_proxy` and fake agents in the test's own
  Trio run. The browser (Debian's `chromium`, headless) is a subprocess started with
  `trio.run_process`, so the proxy keeps serving while the test waits for it.
- Nothing sleeps and hopes: the browser is given a virtual-time budget (its clock runs only while
  nothing is loading), so the page has rendered when `--dump-dom` prints it; the proxy side waits
  on conditions in loops bounded by `fail_after`.
- Nothing asserts on wall-clock speed.
- The browser test saves `test-artifacts/console.png` (the first screen, 1280x900),
  `test-artifacts/console-full.png` (the whole page) and `test-artifacts/console.html` (the
  rendered DOM) for a person to look at.
"""

from __future__ import annotations

import html
import math
import os
import re
import shutil
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit

import attrs
import pytest
import trio

from fodcproxy.core.model import MetricType, NodeConfig
from fodcproxy.http import ui
from fodcproxy.testing import (
    FakeAgent,
    ProxyHandle,
    history,
    open_fake_agent,
    open_proxy,
)
from fodcproxy.testing.http import http_get, http_request

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ASSETS = {
    "app.js": "text/javascript",
    "api.js": "text/javascript",
    "charts.js": "text/javascript",
    "diagnostics.js": "text/javascript",
    "format.js": "text/javascript",
    "proxy.js": "text/javascript",
    "topology.js": "text/javascript",
    "lifecycle.js": "text/javascript",
    "app.css": "text/css",
    "favicon.svg": "image/svg+xml",
    "vendor/uPlot.esm.js": "text/javascript",
    "vendor/uPlot.min.css": "text/css",
    "vendor/uPlot-LICENSE.txt": "text/plain",
}


# ---- plain HTTP ---------------------------------------------------------------------------------

async def test_page_is_html_and_refers_to_its_assets(proxy):
    with trio.fail_after(10):
        r = await http_get(proxy.http_url + "/")
    assert r.status == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache" and r.headers["etag"]
    assert "default-src 'self'" in r.headers["content-security-policy"]
    page = r.text
    assert page.startswith("<!doctype html>") and '<html lang="en">' in page
    referenced = set(re.findall(r'(?:src|href)="(ui/[^"]+)"', page))
    assert referenced == {"ui/favicon.svg", "ui/vendor/uPlot.min.css", "ui/app.css", "ui/app.js"}
    assert '<div id="errors" role="alert"></div>' in page


async def test_every_asset_is_served_with_its_content_type(proxy):
    with trio.fail_after(10):
        answers = {name: await http_get(f"{proxy.http_url}/ui/{name}") for name in ASSETS}
    for name, r in answers.items():
        assert r.status == 200, name
        assert r.headers["content-type"].split(";")[0] == ASSETS[name], name
        assert r.headers["x-content-type-options"] == "nosniff"
        expected_cache = "public, max-age=86400" if name.startswith("vendor/") else "no-cache"
        assert r.headers["cache-control"] == expected_cache, name
        assert r.body == (Path(ui.__file__).parent / "static" / name).read_bytes(), name


async def test_every_module_the_page_imports_is_served(proxy):
    """Follow the ES-module imports from app.js: each must resolve to a served file."""
    with trio.fail_after(10):
        seen: set[str] = set()
        todo = ["app.js"]
        while todo:
            name = todo.pop()
            seen.add(name)
            r = await http_get(f"{proxy.http_url}/ui/{name}")
            assert r.status == 200, name
            folder = name.rpartition("/")[0]
            for target in re.findall(r'^import .* from "\./([^"]+)";$', r.text, re.MULTILINE):
                path = f"{folder}/{target}" if folder else target
                if path not in seen:
                    todo.append(path)
    assert seen == {n for n, t in ASSETS.items() if t == "text/javascript"}


async def test_unchanged_asset_answers_304(proxy):
    with trio.fail_after(10):
        first = await http_get(proxy.http_url + "/ui/app.js")
        again = await http_get(proxy.http_url + "/ui/app.js", headers={"If-None-Match": first.headers["etag"]})
        page = await http_get(proxy.http_url + "/")
        page_again = await http_get(proxy.http_url + "/", headers={"If-None-Match": f'W/{page.headers["etag"]}'})
        stale = await http_get(proxy.http_url + "/ui/app.js", headers={"If-None-Match": '"other"'})
    assert again.status == 304 and again.body == b"" and again.headers["etag"] == first.headers["etag"]
    assert page_again.status == 304
    assert stale.status == 200 and stale.body == first.body


@pytest.mark.parametrize("path", [
    "/ui/nope.js",
    "/ui/index.html",          # the page is served at / only (its URLs are relative to /)
    "/ui/vendor/README.md",    # not a servable kind of file
    "/ui/vendor/../app.js",
    "/ui/%2e%2e/ui.py",
    "/ui/",
])
async def test_missing_asset_is_404_json(proxy, path):
    with trio.fail_after(10):
        r = await http_get(proxy.http_url + path)
    assert r.status == 404
    assert r.headers["content-type"] == "application/json"
    assert isinstance(r.json()["error"], str) and r.json()["error"]


async def test_missing_asset_error_names_the_console_files(proxy):
    with trio.fail_after(10):
        r = await http_get(proxy.http_url + "/ui/app.jss")
    message = r.json()["error"]
    assert "'/ui/app.jss'" in message and "/ui/app.js" in message and "the console is at /" in message


async def test_console_answers_only_get(proxy):
    with trio.fail_after(10):
        r = await http_request("POST", proxy.http_url + "/")
    assert r.status == 405 and r.json()["error"]


def test_assets_are_read_from_the_package():
    assets = ui.load_assets()
    assert set(ASSETS) | {"index.html"} == set(assets)
    assert assets["index.html"].content_type == "text/html; charset=utf-8"
    assert assets["vendor/uPlot.esm.js"].cache_control == ui.VENDOR_MAX_AGE


# ---- a real browser -----------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
]
# The page has loaded, fetched every endpoint and drawn, well within this much virtual time
# (virtual time does not pass while requests are outstanding, so slow answers do not eat it).
VIRTUAL_TIME_MS = 5000


@attrs.frozen
class Cluster:
    proxy: ProxyHandle
    liaisons: list[FakeAgent]
    hot: list[FakeAgent]
    warm: FakeAgent  # never answers a collection: "missed the deadline"
    cold: FakeAgent  # dropped: offline

    @property
    def all(self) -> list[FakeAgent]:
        return [*self.liaisons, *self.hot, self.warm, self.cold]


def _points(now: float, shape: float, scale: float, *, cumulative: bool = False) -> list[tuple[float, float]]:
    """Ten minutes of points every 20 s, different per node (`shape`), all in the past."""
    out, total = [], 0.0
    for i in range(30):
        value = scale * (1 + 0.3 * math.sin(i / 4 + shape))
        total += value
        out.append((now - 600 + 20 * i, total if cumulative else value))
    return out


@asynccontextmanager
async def open_cluster() -> AsyncIterator[Cluster]:
    """A proxy and six agents of four roles, with history, configs that differ, one agent that
    never answers and one that went offline."""
    now = time.time()

    def disk(shape: float) -> list:
        return [history("banyandb_disk_used_bytes", _points(now, shape, 2e9), help="Disk used by the node.")]

    async with AsyncExitStack() as stack:
        proxy = await stack.enter_async_context(open_proxy(collect_timeout=1.0, attach_grace=0.5))

        async def agent(role: str, port: int, **options) -> FakeAgent:
            return await stack.enter_async_context(open_fake_agent(
                proxy.grpc_address, role=role, ip="127.0.0.1", port=port, **options))

        liaisons = [await agent("liaison", 17910 + i, labels={"zone": zone}, series=[
            history("banyandb_liaison_grpc_total", _points(now, i, 40, cumulative=True),
                    labels={"method": "query"}, type=MetricType.COUNTER, help="gRPC calls handled."),
            history("banyandb_query_latency_seconds", _points(now, i + 2, 0.02), help="Query latency."),
        ]) for i, zone in enumerate(["a", "b"])]
        hot = [await agent("datanode-hot", 17920 + i, labels={"zone": "a"}, series=disk(i),
                           node_config=NodeConfig(startup_params={"flush-timeout": flush, "host": f"hot{i}"},
                                                  runtime_config={"cache": {"size": 64}}))
               for i, flush in enumerate(["1s", "5s"])]
        warm = await agent("datanode-warm", 17930, series=disk(3))
        cold = await agent("datanode-cold", 17940, series=disk(4), reconnect_interval=600)
        warm.hang = True
        cold.drop()
        while proxy.proxy.registry.get(cold.agent_id).status.value != "unconnected":
            await trio.sleep(0.01)
        yield Cluster(proxy, liaisons, hot, warm, cold)


async def run_chromium(tmp_path: Path, url: str, *extra: str) -> tuple[str, str]:
    """Run headless Chromium on `url`; returns (stdout, stderr). Fails if it exits non-zero."""
    profile = tmp_path / f"profile-{len(list(tmp_path.iterdir()))}"
    profile.mkdir()
    env = {**os.environ, "HOME": str(tmp_path)}
    cmd = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
           f"--virtual-time-budget={VIRTUAL_TIME_MS}", *extra, url]
    done = await trio.run_process(cmd, capture_stdout=True, capture_stderr=True, check=False, env=env)
    stdout, stderr = done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace")
    assert done.returncode == 0, f"chromium exited with {done.returncode}:\n{stderr[-3000:]}"
    return stdout, stderr


def console_messages(stderr: str) -> list[str]:
    """What the page wrote to the browser console (uncaught errors, CSP refusals, console.*),
    from Chromium's log (`--enable-logging=stderr` logs each as an `INFO:CONSOLE` line).

    The console writes nothing there when all is well (it shows its problems on the page), so
    any line is a failure. Failed requests are not logged there; the page lists them in #errors.
    """
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def element(dom: str, element_id: str) -> str:
    """The outer HTML of the element with `element_id` in the serialized `dom`."""
    start = re.search(rf'<(\w+)[^>]*\bid="{element_id}"', dom)
    assert start, f"no element #{element_id} in the page"
    tag, depth = start.group(1), 0
    for m in re.finditer(rf"<(/?){tag}\b[^>]*>", dom[start.start():]):
        depth += -1 if m.group(1) else 1
        if depth == 0:
            return dom[start.start():start.start() + m.end()]
    raise AssertionError(f"#{element_id} is not closed")


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` on PATH (`apt-get install chromium`; .ci/run installs it)")
async def test_console_in_a_real_browser(tmp_path):
    ARTIFACTS.mkdir(exist_ok=True)
    with trio.fail_after(120):
        async with open_cluster() as cluster:
            hot0 = cluster.hot[0].agent_id
            metrics = "banyandb_disk_used_bytes,banyandb_liaison_grpc_total,banyandb_query_latency_seconds"
            url = f"{cluster.proxy.http_url}/#metrics={metrics}&select={hot0}"
            calls = (await http_get(cluster.proxy.http_url + "/cluster")).json()["calls"]
            netlog = tmp_path / "netlog.json"
            dom, stderr = await run_chromium(tmp_path, url, "--dump-dom", f"--log-net-log={netlog}")
            (ARTIFACTS / "console.html").write_text(dom)
            # The first screen of the default view (no #fragment: the console picks metrics
            # itself), and the whole page with a node selected.
            for name, fragment, size in [("console.png", "", "1280,900"),
                                         ("console-full.png", f"#select={hot0}", "1280,2200")]:
                path = ARTIFACTS / name
                path.unlink(missing_ok=True)
                _, shot_stderr = await run_chromium(
                    tmp_path, f"{cluster.proxy.http_url}/{fragment}",
                    f"--screenshot={path}", f"--window-size={size}")
                assert path.stat().st_size > 10_000, f"{name} looks empty"
                assert not console_messages(shot_stderr), console_messages(shot_stderr)

    # The console's summary comes from the small JSON /status, never from the whole /metrics.
    fetched = {urlsplit(u).path for u in re.findall(r'"url":"(http://127\.0\.0\.1:\d+/[^"]*)"', netlog.read_text())}
    assert "/status" in fetched and "/metrics-windows" in fetched, sorted(fetched)
    assert "/metrics" not in fetched, sorted(fetched)

    # The page ran and loaded, without any script error or failed request.
    assert re.search(r'<body[^>]*data-loaded="true"', dom), "the console never finished a refresh"
    assert element(dom, "errors") == '<div id="errors" role="alert"></div>', element(dom, "errors")
    assert not console_messages(stderr), console_messages(stderr)

    # Topology: every node, grouped by role, online or offline, with its calls drawn.
    tiers = element(dom, "tiers")
    for agent in cluster.all:
        status = "unconnected" if agent is cluster.cold else "online"
        assert re.search(rf'data-node-id="{agent.agent_id}" data-status="{status}"', tiers), agent.agent_id
    roles = re.findall(r'<section class="tier" data-role="([^"]+)"', tiers)
    assert roles == ["liaison", "datanode-hot", "datanode-warm", "datanode-cold"]
    assert "zone=a" in tiers and "1 config difference" in tiers
    edges = element(dom, "edges")
    for kind in ("query", "tier"):
        assert edges.count(f'class="edge {kind}') == sum(c["kind"] == kind for c in calls) > 0

    # The selected node's configuration, with where it differs from its peer.
    detail = html.unescape(element(dom, "node-detail"))
    assert hot0 in detail and "flush-timeout" in detail
    assert f"5s on {cluster.hot[1].agent_id}" in detail
    assert re.search(r'<tr class="differs"><th scope="row"><code>flush-timeout</code>', detail)

    # Proxy panel: agents online/total and who missed the deadline (too slow, or offline).
    proxy_panel = element(dom, "proxy-stats")
    assert '<span id="proxy-online">5 / 6</span>' in proxy_panel
    missed = element(dom, "proxy-missed")
    assert f'data-agent-id="{cluster.warm.agent_id}"' in missed and "(too slow)" in missed
    assert f'data-agent-id="{cluster.cold.agent_id}"' in missed and "(offline)" in missed

    # Charts: one per chosen metric, one line per node that has the metric, in a guessed unit.
    charts = {m.group(1): m.group(0) for m in re.finditer(
        r'<figure class="chart" data-metric="([^"]+)"[^>]*>', dom)}
    assert list(charts) == metrics.split(",")
    disk = charts["banyandb_disk_used_bytes"]
    assert 'data-series="2"' in disk and 'data-unit="bytes"' in disk  # hot x2 (warm hangs, cold is offline)
    assert int(re.search(r'data-points="(\d+)"', disk).group(1)) >= 2 * 10
    rate = charts["banyandb_liaison_grpc_total"]
    assert 'data-series="2"' in rate and 'data-unit="per second"' in rate
    assert 'data-unit="seconds"' in charts["banyandb_query_latency_seconds"]
    assert dom.count('class="uplot') == 3
    legend = html.unescape(dom)
    assert f"{cluster.liaisons[0].agent_id} {{method=query}}" in legend
    assert "Collected from 4 of 6 agents" in dom  # warm timed out, cold is offline


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` on PATH (`apt-get install chromium`; .ci/run installs it)")
async def test_console_shows_api_errors_in_the_page(tmp_path):
    """An API error is shown on the page (here: a custom range longer than the proxy allows),
    and the panels whose calls succeeded still render."""
    def iso(t: float) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))

    to = time.time()
    fragment = f"#metrics=x&range=custom&from={iso(to - 7200)}&to={iso(to)}"
    with trio.fail_after(60):
        async with open_proxy(collect_timeout=1.0, max_query_window=3600.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1) as agent:
            dom, stderr = await run_chromium(tmp_path, f"{proxy.http_url}/{fragment}", "--dump-dom")
    assert re.search(r'<body[^>]*data-loaded="true"', dom)
    errors = html.unescape(element(dom, "errors"))
    assert "/metrics-windows?start_time=" in errors and "the limit is 3600s" in errors and "HTTP 400" in errors
    assert f'data-node-id="{agent.agent_id}"' in dom  # the topology still rendered
    assert not console_messages(stderr), console_messages(stderr)


@pytest.mark.slow
@pytest.mark.external
@pytest.mark.skipif(CHROMIUM is None, reason="needs Debian's `chromium` on PATH (`apt-get install chromium`; .ci/run installs it)")
async def test_console_shows_pod_agents_beside_address_agents(tmp_path):
    """A pod agent (upstream's naming: ROLE_DATA, tier in label `type`) is shown by its pod,
    in its role's column, with the liaison's call to it drawn, and its series charted."""
    now = time.time()
    with trio.fail_after(90):
        async with open_proxy(collect_timeout=1.0) as proxy, \
                open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=17910):
            async with open_fake_agent(
                    proxy.grpc_address, role="ROLE_DATA", pod_name="banyandb-data-hot-0",
                    container_names=["data"], labels={"type": "hot"},
                    series=[history("banyandb_disk_used_bytes", _points(now, 1, 2e9),
                                    help="Disk used by the node.")]) as pod:
                url = f"{proxy.http_url}/#metrics=banyandb_disk_used_bytes&select={pod.agent_id}"
                dom, stderr = await run_chromium(tmp_path, url, "--dump-dom")
    assert re.search(r'<body[^>]*data-loaded="true"', dom), "the console never finished a refresh"
    assert element(dom, "errors") == '<div id="errors" role="alert"></div>', element(dom, "errors")
    assert not console_messages(stderr), console_messages(stderr)
    tiers = element(dom, "tiers")
    roles = re.findall(r'<section class="tier" data-role="([^"]+)"', tiers)
    assert roles == ["liaison", "ROLE_DATA"]
    assert f'data-node-id="{pod.agent_id}" data-status="online"' in tiers
    assert "pod banyandb-data-hot-0" in tiers
    assert element(dom, "edges").count('class="edge query') == 1
    detail = html.unescape(element(dom, "node-detail"))
    assert "banyandb-data-hot-0" in detail and "data" in detail
    chart = re.search(r'<figure class="chart" data-metric="banyandb_disk_used_bytes"[^>]*>', dom)
    assert chart and 'data-series="1"' in chart.group(0)
