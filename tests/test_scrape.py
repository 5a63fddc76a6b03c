"""Scraping a node: the exposition parser, the HTTP fetch and the watchdog; node configuration.

Test policy:
- The HTTP tests talk to a REAL exporter on 127.0.0.1 (port 0): a small h11 server in this file,
  serving what prometheus-client's own `generate_latest` renders, plus misbehaving routes.
- Every test that touches a socket runs under `trio.fail_after(10)`; nothing sleeps and hopes.
  Waiting is on events (`nursery.start`, `Watchdog.wait_polls`), never on wall time.
- Scheduling (no drift, skipped ticks, timeouts) is tested with a stand-in fetch and the
  autojump `MockClock`, asserting exact virtual times.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import sys
from collections.abc import Awaitable, Callable

import h11
import pytest
import trio
import trio.testing
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Summary,
    generate_latest,
)
from prometheus_client.openmetrics import exposition as openmetrics

from fodcproxy.agent.nodeconfig import load_node_config, parse_cmdline
from fodcproxy.agent.recorder import FlightRecorder
from fodcproxy.agent.scrape import ACCEPT, ScrapeError, Watchdog, fetch, parse_exposition
from fodcproxy.core.model import MetricType, Sample, TimeWindow
from fodcproxy.errors import ConfigError, FodcError

# --- a node's exposition -------------------------------------------------------------------------


def make_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("requests", "Requests served", ["method"], registry=registry).labels("get").inc(3)
    Gauge("temperature", "Room temperature", registry=registry).set(21.5)
    latency = Histogram("latency_seconds", "Latency", buckets=(0.1, 1.0), registry=registry)
    for value in (0.05, 0.5, 2.0):
        latency.observe(value)
    payload = Summary("payload_bytes", "Payload size", registry=registry)
    payload.observe(100)
    payload.observe(300)
    return registry


# What a Go node (client_golang) writes: quantiles, a counter without `_total`, escapes.
GO_STYLE = """\
# HELP go_gc_duration_seconds A summary of the pause duration of garbage collection cycles.
# TYPE go_gc_duration_seconds summary
go_gc_duration_seconds{quantile="0"} 2.1e-05
go_gc_duration_seconds{quantile="0.5"} 4.5e-05
go_gc_duration_seconds{quantile="1"} 0.000312
go_gc_duration_seconds_sum 0.0123
go_gc_duration_seconds_count 120
# HELP banyandb_liaison_grpc_total_started Total number of started RPCs.
# TYPE banyandb_liaison_grpc_total_started counter
banyandb_liaison_grpc_total_started{group="sw",method="write"} 42
# HELP banyandb_up Help with a \\\\ backslash and a \\n newline.
# TYPE banyandb_up gauge
banyandb_up{node="a \\"quoted\\" name"} 1
"""

STAMPED = """\
# TYPE stamped gauge
stamped{x="1"} 7 1700000000123
plain 8
"""

REGISTRY = make_registry()
TEXT_BODY = generate_latest(REGISTRY).decode() + GO_STYLE
OPENMETRICS_BODY = openmetrics.generate_latest(REGISTRY).decode()


def by_series(samples: list[Sample]) -> dict[tuple[str, frozenset[tuple[str, str]]], Sample]:
    return {(s.name, frozenset(s.labels.items())): s for s in samples}


def key(name: str, **labels: str) -> tuple[str, frozenset[tuple[str, str]]]:
    return (name, frozenset(labels.items()))


# --- parse_exposition ----------------------------------------------------------------------------


def test_parse_text_keeps_types_help_and_structure() -> None:
    got = by_series(parse_exposition(TEXT_BODY, content_type=CONTENT_TYPE_LATEST))
    counter = got[key("requests_total", method="get")]
    assert (counter.value, counter.type, counter.description) == (
        3.0, MetricType.COUNTER, "Requests served")
    assert got[key("temperature")].type == MetricType.GAUGE
    assert got[key("temperature")].value == 21.5
    for le, count in (("0.1", 1.0), ("1.0", 2.0), ("+Inf", 3.0)):
        bucket = got[key("latency_seconds_bucket", le=le)]
        assert (bucket.value, bucket.type, bucket.description) == (
            count, MetricType.HISTOGRAM, "Latency")
    assert got[key("latency_seconds_count")].value == 3.0
    assert got[key("latency_seconds_sum")].value == pytest.approx(2.55)
    assert got[key("latency_seconds_sum")].type == MetricType.HISTOGRAM
    assert got[key("payload_bytes_sum")].value == 400.0
    assert got[key("payload_bytes_count")].type == MetricType.SUMMARY
    assert all(s.timestamp is None for s in got.values())


def test_parse_text_go_style_summary_counter_and_escapes() -> None:
    got = by_series(parse_exposition(GO_STYLE))
    median = got[key("go_gc_duration_seconds", quantile="0.5")]
    assert (median.value, median.type) == (4.5e-05, MetricType.SUMMARY)
    assert got[key("go_gc_duration_seconds_count")].value == 120
    assert got[key("go_gc_duration_seconds_count")].type == MetricType.SUMMARY
    # The counter keeps the name the node gave it: no `_total` invented.
    started = got[key("banyandb_liaison_grpc_total_started", group="sw", method="write")]
    assert (started.value, started.type) == (42.0, MetricType.COUNTER)
    up = got[key("banyandb_up", node='a "quoted" name')]
    assert up.description == "Help with a \\ backslash and a \n newline."


def test_parse_openmetrics() -> None:
    ctype = "application/openmetrics-text; version=1.0.0; charset=utf-8"
    got = by_series(parse_exposition(OPENMETRICS_BODY, content_type=ctype))
    assert got[key("requests_total", method="get")].type == MetricType.COUNTER
    assert got[key("requests_created", method="get")].type == MetricType.COUNTER
    assert got[key("latency_seconds_bucket", le="+Inf")].value == 3.0
    assert got[key("latency_seconds_bucket", le="+Inf")].type == MetricType.HISTOGRAM
    assert got[key("payload_bytes_sum")].description == "Payload size"


def test_parse_keeps_exposition_timestamps_in_seconds() -> None:
    got = by_series(parse_exposition(STAMPED))
    assert got[key("stamped", x="1")].timestamp == pytest.approx(1700000000.123)
    assert got[key("plain")].timestamp is None
    om = "# TYPE m gauge\nm 1 1700000000.5\n# EOF\n"
    (sample,) = parse_exposition(om, content_type="application/openmetrics-text")
    assert sample.timestamp == 1700000000.5


def test_parse_untyped_and_empty() -> None:
    (sample,) = parse_exposition("lonely 3\n")
    assert (sample.name, sample.value, sample.type, sample.description) == (
        "lonely", 3.0, MetricType.UNTYPED, "")
    assert parse_exposition("") == []


@pytest.mark.parametrize(
    ("text", "content_type"),
    [
        ("<html><body>404 page not found</body></html>", "text/html"),
        ("metric_without_value\n", None),
        ('m{a="unterminated} 1\n', None),
        ("m not-a-number\n", None),
        ("# TYPE m gauge\nm 1\n", "application/openmetrics-text"),  # no `# EOF`
        ("\x00\x01\x02 binary", None),
    ],
)
def test_parse_garbage_raises_scrape_error(text: str, content_type: str | None) -> None:
    with pytest.raises(ScrapeError, match="not a valid .* exposition") as info:
        parse_exposition(text, content_type=content_type)
    assert isinstance(info.value, FodcError)


# --- a real exporter -----------------------------------------------------------------------------

Handler = Callable[[trio.SocketStream, h11.Connection], Awaitable[None]]


class Exporter:
    """A tiny HTTP/1.1 server (h11 over trio) with one route per behaviour under test."""

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[h11.Request] = []
        self.routes: dict[str, Handler] = {
            "/metrics": self.metrics,
            "/openmetrics": self.openmetrics,
            "/stamped": self.stamped,
            "/garbage": self.garbage,
            "/slow": self.slow,
            "/error": self.error,
            "/chunked-gzip": self.chunked_gzip,
            "/close-delimited": self.close_delimited,
            "/truncated": self.truncated,
            "/gzip-bomb": self.gzip_bomb,
        }

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            conn = h11.Connection(our_role=h11.SERVER)
            request = None
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.Request):
                    request = event
                elif isinstance(event, h11.EndOfMessage):
                    break
            assert request is not None
            self.requests.append(request)
            route = self.routes.get(request.target.decode(), self.not_found)
            await route(stream, conn)

    @staticmethod
    async def respond(
        stream: trio.SocketStream,
        conn: h11.Connection,
        status: int,
        body_chunks: list[bytes],
        headers: list[tuple[str, str]],
    ) -> None:
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        for chunk in body_chunks:
            await stream.send_all(conn.send(h11.Data(data=chunk)))
        await stream.send_all(conn.send(h11.EndOfMessage()))

    async def body(self, stream: trio.SocketStream, conn: h11.Connection, text: str,
                   content_type: str) -> None:
        data = text.encode()
        await self.respond(stream, conn, 200, [data],
                           [("Content-Type", content_type), ("Content-Length", str(len(data)))])

    async def metrics(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await self.body(stream, conn, TEXT_BODY, CONTENT_TYPE_LATEST)

    async def openmetrics(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await self.body(stream, conn, OPENMETRICS_BODY, openmetrics.CONTENT_TYPE_LATEST)

    async def stamped(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await self.body(stream, conn, STAMPED, "text/plain; version=0.0.4")

    async def garbage(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await self.body(stream, conn, "<html><body>It works!</body></html>", "text/plain")

    async def slow(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await trio.sleep_forever()

    async def error(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await self.respond(stream, conn, 500, [b"boom"], [("Content-Length", "4")])

    async def not_found(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await self.respond(stream, conn, 404, [], [("Content-Length", "0")])

    async def chunked_gzip(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        packed = gzip.compress(TEXT_BODY.encode())
        third = len(packed) // 3
        chunks = [packed[:third], packed[third:2 * third], packed[2 * third:]]
        await self.respond(stream, conn, 200, chunks, [
            ("Content-Type", CONTENT_TYPE_LATEST),
            ("Content-Encoding", "gzip"),
            ("Transfer-Encoding", "chunked"),
        ])

    async def close_delimited(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        # No Content-Length, not chunked: the body ends when the connection does.
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
        await stream.send_all(head + TEXT_BODY.encode())

    async def truncated(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nshort")

    async def gzip_bomb(self, stream: trio.SocketStream, conn: h11.Connection) -> None:
        packed = gzip.compress(b"0" * 10_000_000)
        await self.respond(stream, conn, 200, [packed], [
            ("Content-Encoding", "gzip"), ("Content-Length", str(len(packed)))])


async def serve(nursery: trio.Nursery, exporter: Exporter, port: int = 0) -> None:
    listeners = await nursery.start(
        functools.partial(trio.serve_tcp, exporter.handle, port, host="127.0.0.1"))
    exporter.port = listeners[0].socket.getsockname()[1]


@pytest.fixture
async def exporter(nursery: trio.Nursery) -> Exporter:
    server = Exporter()
    await serve(nursery, server)
    return server


async def refused_url() -> tuple[trio.socket.SocketType, str]:
    """A bound port that does not listen (yet): connections to it are refused."""
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}/metrics"


# --- fetch ---------------------------------------------------------------------------------------


async def test_fetch_text_exposition(exporter: Exporter) -> None:
    with trio.fail_after(10):
        body, content_type = await fetch(exporter.url("/metrics"), timeout=5)
    assert body == TEXT_BODY
    assert content_type == CONTENT_TYPE_LATEST
    (request,) = exporter.requests
    headers = dict(request.headers)
    assert headers[b"accept"] == ACCEPT.encode()
    assert headers[b"host"] == f"127.0.0.1:{exporter.port}".encode()
    assert headers[b"accept-encoding"] == b"gzip"


async def test_fetch_chunked_gzip(exporter: Exporter) -> None:
    with trio.fail_after(10):
        body, _ = await fetch(exporter.url("/chunked-gzip"), timeout=5)
    assert body == TEXT_BODY


async def test_fetch_close_delimited_body(exporter: Exporter) -> None:
    with trio.fail_after(10):
        body, content_type = await fetch(exporter.url("/close-delimited"), timeout=5)
    assert (body, content_type) == (TEXT_BODY, "text/plain")


async def test_fetch_openmetrics_then_parse(exporter: Exporter) -> None:
    with trio.fail_after(10):
        body, content_type = await fetch(exporter.url("/openmetrics"), timeout=5)
    samples = by_series(parse_exposition(body, content_type=content_type))
    assert samples[key("requests_created", method="get")].type == MetricType.COUNTER


@pytest.mark.parametrize(
    ("path", "match"),
    [
        ("/error", "HTTP 500"),
        ("/nowhere", "HTTP 404"),
        ("/truncated", "broken HTTP response"),
    ],
)
async def test_fetch_failures(exporter: Exporter, path: str, match: str) -> None:
    with trio.fail_after(10):
        with pytest.raises(ScrapeError, match=match) as info:
            await fetch(exporter.url(path), timeout=5)
    assert exporter.url(path) in info.value.message


async def test_fetch_times_out(exporter: Exporter) -> None:
    with trio.fail_after(10):
        with pytest.raises(ScrapeError, match=r"no complete answer within 0.2s"):
            await fetch(exporter.url("/slow"), timeout=0.2)


async def test_fetch_bounds_the_body(exporter: Exporter) -> None:
    with trio.fail_after(10):
        with pytest.raises(ScrapeError, match="larger than 100 bytes"):
            await fetch(exporter.url("/metrics"), timeout=5, max_bytes=100)
        with pytest.raises(ScrapeError, match="decompressed body is larger than 1000000 bytes"):
            await fetch(exporter.url("/gzip-bomb"), timeout=5, max_bytes=1_000_000)


async def test_fetch_connection_refused() -> None:
    sock, url = await refused_url()
    with sock, trio.fail_after(10):
        with pytest.raises(ScrapeError, match="cannot connect"):
            await fetch(url, timeout=5)


@pytest.mark.parametrize(
    ("url", "match"),
    [
        ("https://127.0.0.1:1/metrics", "https is not supported"),
        ("ftp://127.0.0.1/metrics", "only http://"),
        ("http:///metrics", "names no host"),
        ("http://127.0.0.1:99999/metrics", "not a valid URL"),
    ],
)
async def test_fetch_refuses_urls_it_cannot_serve(url: str, match: str) -> None:
    with trio.fail_after(10):
        with pytest.raises(ScrapeError, match=match):
            await fetch(url, timeout=5)


# --- the watchdog on real sockets ----------------------------------------------------------------


async def test_watchdog_records_series(exporter: Exporter, nursery: trio.Nursery) -> None:
    recorder = FlightRecorder()
    wall = 1_700_000_000.0
    watchdog = Watchdog(recorder, [exporter.url("/metrics"), exporter.url("/stamped")],
                        interval=60, timeout=5, clock=lambda: wall)
    with trio.fail_after(10):
        await nursery.start(watchdog.run)
    latest = by_series(recorder.latest())
    assert latest[key("requests_total", method="get")].timestamp == wall
    assert latest[key("latency_seconds_bucket", le="+Inf")].type == MetricType.HISTOGRAM
    assert latest[key("go_gc_duration_seconds", quantile="1")].value == 0.000312
    assert latest[key("stamped", x="1")].timestamp == pytest.approx(1700000000.123)
    stats = watchdog.statistics()
    assert stats.polls == 1
    assert set(stats.scrapes_ok.values()) == {1}
    assert set(stats.scrapes_failed.values()) == {0}


async def test_watchdog_survives_bad_endpoints(exporter: Exporter, nursery: trio.Nursery) -> None:
    good, garbage, error = (exporter.url(p) for p in ("/metrics", "/garbage", "/error"))
    recorder = FlightRecorder()
    watchdog = Watchdog(recorder, [good, garbage, error], interval=0.05, timeout=5)
    with trio.fail_after(10):
        await nursery.start(watchdog.run)
        await watchdog.wait_polls(2)
    stats = watchdog.statistics()
    assert stats.scrapes_ok == {good: 2, garbage: 0, error: 0}
    assert stats.scrapes_failed == {good: 0, garbage: 2, error: 2}
    assert stats.last_error[good] is None
    assert "not a valid Prometheus text format exposition" in str(stats.last_error[garbage])
    assert "HTTP 500" in str(stats.last_error[error])
    assert key("temperature") in by_series(recorder.latest())


async def test_watchdog_slow_endpoint_does_not_hold_up_the_others(
    exporter: Exporter, nursery: trio.Nursery,
) -> None:
    good, slow = exporter.url("/metrics"), exporter.url("/slow")
    watchdog = Watchdog(FlightRecorder(), [slow, good], interval=60, timeout=0.5)
    with trio.fail_after(10):
        await nursery.start(watchdog.run)
    stats = watchdog.statistics()
    assert (stats.scrapes_ok, stats.scrapes_failed) == ({slow: 0, good: 1}, {slow: 1, good: 0})
    assert "no complete answer within 0.5s" in str(stats.last_error[slow])


async def test_watchdog_endpoint_down_then_back(nursery: trio.Nursery) -> None:
    sock, url = await refused_url()
    recorder = FlightRecorder()
    watchdog = Watchdog(recorder, [url], interval=0.05, timeout=1)
    with trio.fail_after(10):
        await nursery.start(watchdog.run)
        stats = watchdog.statistics()
        assert (stats.scrapes_ok[url], stats.scrapes_failed[url]) == (0, 1)
        assert "cannot connect" in str(stats.last_error[url])
        assert recorder.latest() == []
        # The node comes back on the same port.
        sock.listen()
        nursery.start_soon(trio.serve_listeners, Exporter().handle, [trio.SocketListener(sock)])
        while watchdog.statistics().scrapes_ok[url] == 0:
            await watchdog.wait_polls(watchdog.statistics().polls + 1)
    assert watchdog.statistics().last_error[url] is None
    assert key("temperature") in by_series(recorder.latest())


# --- the watchdog's schedule, in virtual time ----------------------------------------------------


class FakeNode:
    """A stand-in for `fetch`: records when it is called, can be slow or down."""

    def __init__(self, body: str = "up 1\n") -> None:
        self.body = body
        self.calls: list[float] = []
        self.delays: list[float] = []
        self.down = False

    async def fetch(self, url: str, *, timeout: float) -> tuple[str, str | None]:
        self.calls.append(trio.current_time())
        await trio.sleep(self.delays.pop(0) if self.delays else 0)
        if self.down:
            raise ScrapeError(f"{url}: cannot connect: connection refused")
        return self.body, None


async def run_polls(watchdog: Watchdog, count: int) -> None:
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.run)
        await watchdog.wait_polls(count)
        nursery.cancel_scope.cancel()


async def test_watchdog_does_not_drift(autojump_clock: trio.testing.MockClock) -> None:
    node = FakeNode()
    node.delays = [0.0, 3.0, 7.5, 0.25, 9.9]
    watchdog = Watchdog(FlightRecorder(), ["http://node/metrics"], interval=10, fetch=node.fetch)
    await run_polls(watchdog, 6)
    start = node.calls[0]
    assert [t - start for t in node.calls] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]


async def test_watchdog_skips_ticks_it_overran(autojump_clock: trio.testing.MockClock) -> None:
    node = FakeNode()
    node.delays = [25.0]
    watchdog = Watchdog(FlightRecorder(), ["http://node/metrics"], interval=10, timeout=30,
                        fetch=node.fetch)
    await run_polls(watchdog, 3)
    start = node.calls[0]
    assert [t - start for t in node.calls] == [0.0, 30.0, 40.0]


async def test_watchdog_timeout_in_virtual_time(autojump_clock: trio.testing.MockClock) -> None:
    node = FakeNode()
    node.delays = [1000.0]
    url = "http://node/metrics"
    watchdog = Watchdog(FlightRecorder(), [url], interval=10, timeout=2, fetch=node.fetch)
    await run_polls(watchdog, 2)
    start = node.calls[0]
    assert [t - start for t in node.calls] == [0.0, 10.0]
    stats = watchdog.statistics()
    assert (stats.scrapes_failed[url], stats.scrapes_ok[url]) == (1, 1)


async def test_watchdog_down_recovers_and_stamps_wall_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    node = FakeNode()
    url = "http://node/metrics"
    recorder = FlightRecorder(retention=35)
    wall_base = 1_700_000_000.0
    watchdog = Watchdog(recorder, [url], interval=10, fetch=node.fetch,
                        clock=lambda: wall_base + trio.current_time())
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.run)
        t0 = trio.current_time()
        await watchdog.wait_polls(2)
        node.down = True
        await watchdog.wait_polls(4)
        assert watchdog.statistics().scrapes_failed[url] == 2
        node.down = False
        await watchdog.wait_polls(5)
        nursery.cancel_scope.cancel()
    stats = watchdog.statistics()
    assert (stats.scrapes_ok[url], stats.scrapes_failed[url], stats.last_error[url]) == (3, 2, None)
    stamps = [s.timestamp for s in recorder.window(TimeWindow(0, None))]
    # Polls at 0, 10 (ok), 20, 30 (down), 40 (ok); retention 35 s drops the point at 0.
    assert stamps == [wall_base + t0 + 10, wall_base + t0 + 40]


async def test_watchdog_never_dies_of_an_unexpected_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls = 0

    async def broken_fetch(url: str, *, timeout: float) -> tuple[str, str | None]:
        nonlocal calls
        calls += 1
        raise RuntimeError("bug in a stand-in")

    url = "http://node/metrics"
    watchdog = Watchdog(FlightRecorder(), [url], interval=10, fetch=broken_fetch)
    await run_polls(watchdog, 3)
    assert calls == 3
    last_error = str(watchdog.statistics().last_error[url])
    assert "unexpected RuntimeError: bug in a stand-in" in last_error


def test_watchdog_refuses_bad_options() -> None:
    with pytest.raises(ValueError, match="endpoint"):
        Watchdog(FlightRecorder(), [])
    with pytest.raises(ValueError, match="interval"):
        Watchdog(FlightRecorder(), ["http://x/"], interval=0)
    with pytest.raises(ValueError, match="timeout"):
        Watchdog(FlightRecorder(), ["http://x/"], timeout=-1)


# --- node configuration --------------------------------------------------------------------------


def write(path: os.PathLike[str] | str, text: str) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return os.fspath(path)


def test_node_config_json(tmp_path: os.PathLike[str]) -> None:
    path = write(os.path.join(tmp_path, "node.json"), json.dumps({
        "startup_params": {"measure-root-path": "/data", "replicas": 2, "debug": True,
                           "ratio": 0.5},
        "runtime_config": {"retention": {"days": 7}, "groups": ["sw_metric", "sw_stream"]},
    }))
    config = load_node_config(path, now=123.0)
    assert config.startup_params == {
        "measure-root-path": "/data", "replicas": "2", "debug": "true", "ratio": "0.5"}
    assert config.runtime_config == {
        "retention": {"days": 7}, "groups": ["sw_metric", "sw_stream"]}
    assert config.collected_at == 123.0


def test_node_config_toml(tmp_path: os.PathLike[str]) -> None:
    path = write(os.path.join(tmp_path, "node.toml"), """\
[startup_params]
grpc-port = 17912
etcd-endpoints = "http://etcd:2379"

[runtime_config]
started = 2024-05-01T12:00:00Z
[runtime_config.cache]
size = "64MB"
""")
    config = load_node_config(path, now=1.0)
    assert config.startup_params == {"grpc-port": "17912", "etcd-endpoints": "http://etcd:2379"}
    assert config.runtime_config == {"started": "2024-05-01T12:00:00+00:00",
                                     "cache": {"size": "64MB"}}


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("node.json", "{not json", "invalid JSON"),
        ("node.toml", "a = [", "invalid TOML"),
        ("node.json", "[1, 2]", "top level must be a table"),
        ("node.json", '{"startup_params": {}, "extra": 1, "more": 2}',
         "unknown top-level key.*extra, more"),
        ("node.json", '{"startup_params": {"a": {"b": 1}}}', "startup_params.a must be a single"),
        ("node.json", '{"startup_params": [1]}', "startup_params must be a table"),
        ("node.json", '{"runtime_config": "x"}', "runtime_config must be a table"),
        ("node.yaml", "a: 1", "unknown file type '.yaml'"),
    ],
)
def test_node_config_bad_files(tmp_path: os.PathLike[str], name: str, text: str,
                               match: str) -> None:
    path = write(os.path.join(tmp_path, name), text)
    with pytest.raises(ConfigError, match=match) as info:
        load_node_config(path, now=0.0)
    assert info.value.flag == "--node-config-file"


def test_node_config_missing_file(tmp_path: os.PathLike[str]) -> None:
    with pytest.raises(ConfigError, match="cannot read .*missing.json") as info:
        load_node_config(os.path.join(tmp_path, "missing.json"), now=0.0)
    assert info.value.flag == "--node-config-file"


def test_parse_cmdline_forms() -> None:
    argv = ["/usr/bin/banyand", "liaison", "--grpc-port=17912", "--etcd-endpoints",
            "http://etcd:2379", "--debug", "--offset", "-5", "-logging-level=warn", "--empty=",
            "--", "--not-a-flag"]
    assert parse_cmdline(argv) == {
        "_command": "/usr/bin/banyand",
        "_args": "liaison --not-a-flag",
        "grpc-port": "17912",
        "etcd-endpoints": "http://etcd:2379",
        "debug": "true",
        "offset": "-5",
        "logging-level": "warn",
        "empty": "",
    }
    assert parse_cmdline(["banyand", "--last"]) == {"_command": "banyand", "last": "true"}
    assert parse_cmdline([]) == {}


def fake_proc(root: str, pid: int, argv: list[str]) -> None:
    os.makedirs(os.path.join(root, str(pid)))
    with open(os.path.join(root, str(pid), "cmdline"), "wb") as f:
        f.write(b"".join(a.encode() + b"\0" for a in argv))


def test_node_config_from_pid_merged_with_file(tmp_path: os.PathLike[str]) -> None:
    root = os.path.join(tmp_path, "proc")
    fake_proc(root, 4242, ["banyand", "data", "--grpc-port", "17912", "--stream-root-path=/a"])
    path = write(os.path.join(tmp_path, "node.json"),
                 '{"startup_params": {"stream-root-path": "/b"}, "runtime_config": {"k": 1}}')
    config = load_node_config(path, pid=4242, now=5.0, proc_root=root)
    assert config.startup_params == {"_command": "banyand", "_args": "data",
                                     "grpc-port": "17912", "stream-root-path": "/b"}
    assert config.runtime_config == {"k": 1}
    only_pid = load_node_config(pid=4242, now=5.0, proc_root=root)
    assert only_pid.startup_params["stream-root-path"] == "/a"
    assert only_pid.runtime_config == {}


def test_node_config_bad_pid(tmp_path: os.PathLike[str]) -> None:
    root = os.path.join(tmp_path, "proc")
    fake_proc(root, 7, [])  # a kernel thread: empty command line
    with pytest.raises(ConfigError, match="empty command line") as info:
        load_node_config(pid=7, now=0.0, proc_root=root)
    assert info.value.flag == "--node-pid"
    with pytest.raises(ConfigError, match="no process 8"):
        load_node_config(pid=8, now=0.0, proc_root=root)


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/cmdline"), reason="needs /proc")
def test_node_config_of_this_process() -> None:
    config = load_node_config(pid=os.getpid(), now=0.0)
    assert config.startup_params["_command"] == sys.orig_argv[0]
    assert config.startup_params == parse_cmdline(sys.orig_argv)


def test_node_config_empty() -> None:
    config = load_node_config(now=9.0)
    assert (dict(config.startup_params), dict(config.runtime_config), config.collected_at) == (
        {}, {}, 9.0)
