"""Scraping a node's Prometheus endpoint: parse, fetch, and the periodic watchdog.

- `parse_exposition` turns exposition text into `Sample`s with prometheus-client's own parsers.
- `fetch` is a small HTTP/1.1 GET on `trio.open_tcp_stream` + h11 (plain http only).
- `Watchdog` polls the node's endpoints on a fixed grid and records every scrape into a
  `FlightRecorder`. A failing endpoint is logged, counted and tried again next interval.
"""

from __future__ import annotations

import logging
import math
import time
import urllib.parse
import zlib
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Protocol

import attrs
import h11
import trio
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as _parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as _parse_text
from trio_util import AsyncValue

from fodcproxy.agent.recorder import FlightRecorder
from fodcproxy.core.model import MetricType, Sample
from fodcproxy.errors import FodcError, GrpcCode

__all__ = [
    "ACCEPT",
    "Fetcher",
    "HttpTarget",
    "ScrapeError",
    "Watchdog",
    "WatchdogStatistics",
    "fetch",
    "parse_exposition",
]

log = logging.getLogger(__name__)

ACCEPT = "text/plain;version=0.0.4;q=1.0,*/*;q=0.1"
"""Sent on every scrape: the Prometheus text format, anything else only as a fallback."""

_OPENMETRICS = "application/openmetrics-text"
_RECEIVE_SIZE = 64 * 1024
_MAX_ERROR_DETAIL = 200


class ScrapeError(FodcError):
    """A node's metrics endpoint could not be scraped: unreachable, slow, an error status, or an
    answer that is not a metrics exposition. The message names the cause."""

    grpc_code = GrpcCode.UNAVAILABLE
    http_status = 502


# --- parsing -------------------------------------------------------------------------------------


def parse_exposition(text: str, *, content_type: str | None = None) -> list[Sample]:
    """Parse one scrape into samples, in exposition order.

    The OpenMetrics parser is used when `content_type` is `application/openmetrics-text`, the
    Prometheus text-format parser otherwise. Each sample carries its family's type and HELP text;
    histogram and summary families become their component samples (`x_bucket` with `le`, `x_sum`,
    `x_count`, quantile samples, `x_created` where present), all with the family's type. A
    timestamp written in the exposition is kept (in seconds); otherwise `timestamp` is None.
    Text-format counters keep the name the exposition used (prometheus-client would append
    `_total` to a counter declared without it). A native histogram sample becomes its `_count`
    and `_sum`.

    Raises ScrapeError when the text is not a valid exposition.
    """
    openmetrics = _is_openmetrics(content_type)
    parser = _parse_openmetrics if openmetrics else _parse_text
    counters_without_total = set() if openmetrics else _counters_declared_without_total(text)
    samples: list[Sample] = []
    try:
        for family in parser(text):
            samples.extend(_family_samples(family, counters_without_total))
    # The parsers raise whatever their string handling runs into on garbage (ValueError mostly,
    # but also IndexError, KeyError, TypeError): translate all of it here, once.
    except Exception as exc:
        fmt = "OpenMetrics" if openmetrics else "Prometheus text format"
        detail = str(exc) or type(exc).__name__
        if len(detail) > _MAX_ERROR_DETAIL:
            detail = detail[:_MAX_ERROR_DETAIL] + "..."
        raise ScrapeError(f"not a valid {fmt} exposition: {detail}") from exc
    return samples


def _is_openmetrics(content_type: str | None) -> bool:
    if not content_type:
        return False
    return content_type.split(";", 1)[0].strip().lower() == _OPENMETRICS


def _counters_declared_without_total(text: str) -> set[str]:
    # prometheus-client's text parser renames the samples of `# TYPE foo counter` to `foo_total`.
    # Remember which counters were declared without the suffix so their samples get their name
    # back; a node's metric names must reach the proxy as the node wrote them.
    names = set()
    for line in text.splitlines():
        line = line.lstrip()
        if not line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) == 4 and parts[1] == "TYPE" and parts[3] == "counter":
            name = parts[2].strip('"')
            if not name.endswith("_total"):
                names.add(name)
    return names


def _family_samples(family: Metric, counters_without_total: set[str]) -> Iterable[Sample]:
    type_ = MetricType.from_prom_name(family.type)
    rename = family.type == "counter" and family.name in counters_without_total
    for s in family.samples:
        name = s.name
        labels: Mapping[str, str] = s.labels or {}
        timestamp = None if s.timestamp is None else float(s.timestamp)
        if s.native_histogram is not None:
            nh = s.native_histogram
            yield Sample(f"{name}_count", labels, float(nh.count_value), family.documentation,
                         type_, timestamp)
            yield Sample(f"{name}_sum", labels, float(nh.sum_value), family.documentation,
                         type_, timestamp)
            continue
        if rename and name == family.name + "_total":
            name = family.name
        yield Sample(name, labels, float(s.value), family.documentation, type_, timestamp)


# --- fetching ------------------------------------------------------------------------------------


class Fetcher(Protocol):
    """What `Watchdog` calls to get one scrape: `fetch`, or a stand-in in tests."""

    def __call__(self, url: str, *, timeout: float) -> Awaitable[tuple[str, str | None]]: ...


@attrs.frozen
class HttpTarget:
    """Where a GET of an http:// URL goes: `from_url` checks and splits the URL (ScrapeError)."""

    host: str
    port: int
    host_header: str
    path: str

    @classmethod
    def from_url(cls, url: str) -> HttpTarget:
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ScrapeError(f"{url}: not a valid URL: {exc}") from None
        if parts.scheme == "https":
            raise ScrapeError(
                f"{url}: https is not supported; expose the node's metrics over http://"
            )
        if parts.scheme != "http":
            raise ScrapeError(f"{url}: only http:// metrics endpoints are supported")
        if not parts.hostname:
            raise ScrapeError(f"{url}: the URL names no host")
        host = parts.hostname
        host_header = f"[{host}]" if ":" in host else host
        if port is not None:
            host_header = f"{host_header}:{port}"
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        return cls(host, 80 if port is None else port, host_header, path)


async def fetch(
    url: str, *, timeout: float, max_bytes: int = 64 * 1024 * 1024
) -> tuple[str, str | None]:
    """GET `url` (http:// only) and return `(body text, Content-Type or None)`.

    Asks for the Prometheus text format (see `ACCEPT`) and gzip. Handles Content-Length,
    chunked and read-until-close bodies and `Content-Encoding: gzip`. The whole exchange (connect,
    request, response) must finish within `timeout` seconds, and the body (compressed and
    decompressed) must not exceed `max_bytes`. One connection per call, closed before returning.

    Raises ScrapeError on an unsupported or malformed URL, a connection failure, a timeout, a
    status other than 200, a broken HTTP exchange, an oversized or undecodable body.
    """
    target = HttpTarget.from_url(url)
    try:
        with trio.fail_after(timeout):
            return await _get(url, target, max_bytes)
    except trio.TooSlowError:
        raise ScrapeError(f"{url}: no complete answer within {timeout:g}s") from None


async def _get(url: str, target: HttpTarget, max_bytes: int) -> tuple[str, str | None]:
    try:
        stream = await trio.open_tcp_stream(target.host, target.port)
    except OSError as exc:
        raise ScrapeError(f"{url}: cannot connect: {exc}") from exc
    async with stream:
        try:
            response, body = await _exchange(url, stream, target, max_bytes)
        except (OSError, trio.BrokenResourceError) as exc:
            raise ScrapeError(f"{url}: connection failed: {exc}") from exc
        except h11.RemoteProtocolError as exc:
            raise ScrapeError(f"{url}: broken HTTP response: {exc}") from exc
        except h11.LocalProtocolError as exc:
            raise ScrapeError(f"{url}: cannot request this URL: {exc}") from exc
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in response.headers}
    content_type = headers.get("content-type")
    body = _decode_content(url, body, headers.get("content-encoding"), max_bytes)
    charset = "utf-8"
    if content_type:
        for param in content_type.split(";")[1:]:
            key, _, value = param.partition("=")
            if key.strip().lower() == "charset" and value.strip():
                charset = value.strip().strip('"')
    try:
        return body.decode(charset), content_type
    except (LookupError, UnicodeDecodeError) as exc:
        raise ScrapeError(f"{url}: body is not {charset} text: {exc}") from None


async def _exchange(
    url: str, stream: trio.SocketStream, target: HttpTarget, max_bytes: int
) -> tuple[h11.Response, bytes]:
    conn = h11.Connection(our_role=h11.CLIENT)
    request = h11.Request(
        method="GET",
        target=target.path,
        headers=[
            ("Host", target.host_header),
            ("Accept", ACCEPT),
            ("Accept-Encoding", "gzip"),
            ("User-Agent", "fodcproxy-agent"),
            ("Connection", "close"),
        ],
    )
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    response: h11.Response | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await stream.receive_some(_RECEIVE_SIZE))
        elif isinstance(event, h11.Response):
            if event.status_code != 200:
                reason = event.reason.decode("latin-1")
                raise ScrapeError(f"{url}: HTTP {event.status_code} {reason}".rstrip())
            response = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_bytes:
                raise ScrapeError(f"{url}: response body is larger than {max_bytes} bytes")
            chunks.append(event.data)
        elif isinstance(event, h11.EndOfMessage):
            assert response is not None  # h11 sends EndOfMessage only after a Response
            return response, b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise ScrapeError(f"{url}: connection closed before a complete response")
        # InformationalResponse (1xx): nothing to do, the final response follows.


def _decode_content(url: str, body: bytes, encoding: str | None, max_bytes: int) -> bytes:
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise ScrapeError(f"{url}: unsupported Content-Encoding {encoding!r}")
    decompressor = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    try:
        # max_length bounds the output, so a small gzip bomb cannot blow up memory.
        data = decompressor.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ScrapeError(f"{url}: body is not valid gzip: {exc}") from None
    if len(data) > max_bytes:
        raise ScrapeError(f"{url}: decompressed body is larger than {max_bytes} bytes")
    if not decompressor.eof:
        raise ScrapeError(f"{url}: gzip body is truncated")
    return data


# --- the watchdog --------------------------------------------------------------------------------


@attrs.frozen
class WatchdogStatistics:
    """A snapshot of the watchdog: completed polls, and per endpoint the scrapes that succeeded,
    the scrapes that failed and the last failure's message (None once a scrape succeeds again).

    `last_duration` holds, per endpoint scraped at least once, the seconds its last scrape took
    (fetch and parse, success or failure, on Trio's clock); `last_success` the wall-clock time
    (Unix seconds) at which its last successful scrape started, for endpoints that had one.
    """

    polls: int
    scrapes_ok: Mapping[str, int]
    scrapes_failed: Mapping[str, int]
    last_error: Mapping[str, str | None]
    last_duration: Mapping[str, float] = attrs.field(factory=dict)
    last_success: Mapping[str, float] = attrs.field(factory=dict)


class Watchdog:
    """Scrapes a node's metrics endpoints every `interval` seconds into a `FlightRecorder`.

    Polls run on a fixed grid (start + k * interval, on Trio's clock), so they never drift; a poll
    that overruns skips the ticks it missed. In each poll the endpoints are scraped concurrently,
    each within `timeout` seconds (default: `interval`); each scrape's samples are recorded with the
    wall-clock time (`clock`, Unix seconds) at which the scrape started, then the recorder's
    retention is applied. An endpoint that is down, slow or answers garbage is logged and counted,
    and tried again at the next tick: the watchdog does not stop for it.

    `labels` maps an endpoint to the labels stamped on every series scraped from it (see
    `FlightRecorder.record`; the agent's `stamp_labels`); endpoints not in it get none.

    `fetch` is the function that gets one scrape (`fetch` of this module by default; tests pass a
    stand-in). The watchdog owns no nursery: `run` is a task for the caller's nursery.

    Raises ValueError for no endpoints or a non-positive interval or timeout.
    """

    def __init__(
        self,
        recorder: FlightRecorder,
        endpoints: Sequence[str],
        *,
        interval: float = 10.0,
        timeout: float | None = None,
        clock: Callable[[], float] = time.time,
        fetch: Fetcher = fetch,
        labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        if not endpoints:
            raise ValueError("a watchdog needs at least one metrics endpoint")
        if not interval > 0:
            raise ValueError(f"interval must be positive, not {interval}")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self._recorder = recorder
        self._endpoints = list(dict.fromkeys(endpoints))
        self._interval = float(interval)
        self._timeout = self._interval if timeout is None else float(timeout)
        self._clock = clock
        self._fetch = fetch
        self._labels = {url: dict(stamp) for url, stamp in (labels or {}).items()}
        self._polls = AsyncValue(0)  # polls completed; wait_polls waits on it
        self._ok = dict.fromkeys(self._endpoints, 0)
        self._failed = dict.fromkeys(self._endpoints, 0)
        self._last_error: dict[str, str | None] = dict.fromkeys(self._endpoints)
        self._last_duration: dict[str, float] = {}
        self._last_success: dict[str, float] = {}

    @property
    def endpoints(self) -> list[str]:
        """The endpoints scraped, in order, without duplicates."""
        return list(self._endpoints)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Poll forever. Signals `started()` once the first poll has completed (whether or not its
        scrapes succeeded), so the recorder holds data, if the node had any, when `start` returns.
        Returns only by cancellation."""
        # Ticks on the grid start + k * interval, skipping the ticks a slow poll overran, so the
        # loop never drifts. (trio_util.periodic() restarts its period from each wake-up: it drifts
        # by the scheduling latency, 0.7 ms a tick here, and shifts its phase after an overrun.)
        start = trio.current_time()
        tick = 0
        while True:
            await self._poll()
            if tick == 0:
                task_status.started()
            tick += 1
            now = trio.current_time()
            due = math.ceil((now - start) / self._interval)
            if due > tick:
                log.warning(
                    "poll of %s took %.3fs, longer than the %ss interval; skipping %d tick(s)",
                    ", ".join(self._endpoints), now - (start + (tick - 1) * self._interval),
                    self._interval, due - tick,
                )
                tick = due
            await trio.sleep_until(start + tick * self._interval)

    async def wait_polls(self, count: int) -> None:
        """Wait until at least `count` polls have completed since `run` began."""
        await self._polls.wait_value(lambda done: done >= count)

    def statistics(self) -> WatchdogStatistics:
        """A frozen snapshot of poll and scrape counters."""
        return WatchdogStatistics(
            polls=self._polls.value,
            scrapes_ok=dict(self._ok),
            scrapes_failed=dict(self._failed),
            last_error=dict(self._last_error),
            last_duration=dict(self._last_duration),
            last_success=dict(self._last_success),
        )

    async def _poll(self) -> None:
        async with trio.open_nursery() as nursery:
            for endpoint in self._endpoints:
                nursery.start_soon(self._scrape, endpoint)
        self._recorder.expire(self._clock())
        self._polls.value += 1

    async def _scrape(self, endpoint: str) -> None:
        now = self._clock()
        began = trio.current_time()
        try:
            await self._scrape_into(endpoint, now)
        finally:
            self._last_duration[endpoint] = trio.current_time() - began

    async def _scrape_into(self, endpoint: str, now: float) -> None:
        try:
            with trio.move_on_after(self._timeout) as scope:
                body, content_type = await self._fetch(endpoint, timeout=self._timeout)
            if scope.cancelled_caught:
                raise ScrapeError(f"no complete answer within {self._timeout:g}s")
            samples = parse_exposition(body, content_type=content_type)
        except ScrapeError as exc:
            self._fail(endpoint, exc.message)
            return
        # Whatever else goes wrong with one endpoint must not end the watchdog (and with it the
        # flight recorder): log it with its traceback and try again next tick.
        except Exception as exc:
            log.exception("scrape of %s failed unexpectedly", endpoint)
            self._fail(endpoint, f"unexpected {type(exc).__name__}: {exc}", logged=True)
            return
        self._recorder.record(samples, now=now, labels=self._labels.get(endpoint))
        self._ok[endpoint] += 1
        self._last_success[endpoint] = now
        if self._last_error[endpoint] is not None:
            log.info("scrape of %s recovered: %d samples", endpoint, len(samples))
            self._last_error[endpoint] = None

    def _fail(self, endpoint: str, message: str, *, logged: bool = False) -> None:
        # fetch's messages already start with the URL; the others get it here.
        if not message.startswith(endpoint):
            message = f"{endpoint}: {message}"
        self._failed[endpoint] += 1
        if not logged:
            # Say it loudly when an endpoint starts failing or fails differently, not every tick.
            if message != self._last_error[endpoint]:
                log.warning("scrape failed: %s", message)
            else:
                log.debug("scrape failed again: %s", message)
        self._last_error[endpoint] = message
