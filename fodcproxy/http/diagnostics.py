"""`GET /diagnostics`, `GET /pressure-profiles` and a profile's download (docs/http-api.md).

Every request asks the selected agents afresh (SPEC section 9: the proxy keeps no records) under
the collect deadline; the answer is upstream's JSON array with upstream's keys, and headers say
which agents were asked, which answered, which failed and which hold no such stream. A download
asks the pod's agent for a fresh list to find the file, then streams the chunks to the HTTP
client as they arrive (`fodcproxy.diagnostics`: at most one chunk held, back-pressure to the
agent, a per-chunk deadline both ways, the agent told to stop when the client leaves).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from fodcproxy.core import query
from fodcproxy.core.diagnostics import (
    PROFILE_TYPES,
    attachment_name,
    crash_record_json,
    profile_record_json,
)
from fodcproxy.core.registry import AgentEntry
from fodcproxy.diagnostics import (
    Collected,
    DiagnosticsSettings,
    FetchFailed,
    PressureProfilesStream,
    ProfileFetch,
    TooManyDownloads,
    collect_crash_records,
    collect_profiles,
    stream_of,
)
from fodcproxy.http import documents
from fodcproxy.http.selection import NodeSelection
from fodcproxy.streams import AgentGone

if TYPE_CHECKING:
    from fodcproxy.http.services import HttpServices

log = logging.getLogger(__name__)

JSON = "application/json"
#: Longest pod name and profile id accepted in a download path (a Kubernetes name is <= 253).
MAX_PATH_PART = 253
_SHOWN = 20


class DownloadCut(Exception):
    """Raised out of a download's body to make the server close the connection without the
    body's end: the client must see a truncated download, not a short file that looks whole."""


class _QuietCutDownloads(logging.Filter):
    """hypercorn logs an exception out of a body ("Error in ASGI Framework") with a traceback;
    a cut download is logged once, as a warning, by `_body`."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, BaseExceptionGroup):
            return exc.split(DownloadCut)[1] is not None  # keep it if anything else is inside
        return not isinstance(exc, DownloadCut)


logging.getLogger("fodcproxy.http.hypercorn").addFilter(_QuietCutDownloads())


def _error(status: int, message: str) -> Response:
    return Response(documents.dumps(documents.ErrorBody(message)), status=status,
                    content_type=JSON)


def _ids(entries: Sequence[AgentEntry]) -> str:
    ids = [e.agent_id for e in entries]
    return ",".join(ids[:_SHOWN]) + (",..." if len(ids) > _SHOWN else "")


def collection_headers(results: Sequence[Collected], without: Sequence[AgentEntry],
                       duration: float) -> dict[str, str]:
    """Who was asked and who answered, as /metrics says it, plus the agents without the stream
    (`X-Fodc-Agents-Without-Stream`) and those whose answer is partial
    (`X-Fodc-Agents-Incomplete`: cut at the deadline or over the record caps)."""
    missed = [r.entry for r in results if not r.answered]
    partial = [r.entry for r in results if r.answered and not r.complete]
    headers = {
        "X-Fodc-Agents-Asked": str(len(results)),
        "X-Fodc-Agents-Answered": str(len(results) - len(missed)),
        "X-Fodc-Collect-Duration-Seconds": f"{duration:.6f}",
    }
    if missed:
        headers["X-Fodc-Agents-Missed"] = _ids(missed)
    if partial:
        headers["X-Fodc-Agents-Incomplete"] = _ids(partial)
    if without:
        headers["X-Fodc-Agents-Without-Stream"] = _ids(without)
    return headers


async def _json_array(docs: Iterable[dict[str, Any]]) -> bytes:
    """`docs` as one JSON array, encoded a document at a time with a turn of the event loop
    after each: an answer may hold up to --max-reply-bytes of records per agent (a second or
    more of encoding), which must not starve /health or the agents' streams."""
    parts = []
    for doc in docs:
        parts.append(documents.dumps(doc).encode())
        await trio.lowlevel.checkpoint()
    return b"[" + b",".join(parts) + b"]"


def register_diagnostics(app: QuartTrio, proxy: HttpServices, *,
                         select: Callable[[], tuple[list[AgentEntry], NodeSelection]],
                         deadline: Callable[[], float]) -> None:
    """Add the three routes to `app`. `select` reads the node filters of the request,
    `deadline` its collect timeout (as the other fan-out endpoints do)."""
    hub = proxy.hub
    settings = proxy.diagnostics or DiagnosticsSettings(max_bytes=hub.max_reply_bytes)

    def params() -> dict[str, list[str]]:
        return {k: request.args.getlist(k) for k in request.args.keys()}

    async def records(
            collect: Callable[[Sequence[AgentEntry], float],
                              Awaitable[tuple[list[Collected], list[AgentEntry]]]],
            to_json: Callable[..., dict[str, Any]]) -> Response:
        """Collect from the selected agents under the request's deadline and answer their
        records as one JSON array, with the collection's headers."""
        query.check_unknown(params(), query.SELECTION_PARAMS)
        entries, _ = select()
        start = trio.current_time()
        results, without = await collect(entries, deadline())
        duration = trio.current_time() - start
        body = await _json_array(
            to_json(rec, agent_id=r.entry.agent_id, pod_name=r.entry.pod_name, role=r.entry.role)
            for r in results for rec in r.records)
        return Response(body, content_type=JSON,
                        headers=collection_headers(results, without, duration))

    @app.route("/diagnostics", methods=["GET"])
    async def diagnostics() -> Response:
        """Crash records of the selected agents (upstream's `AggregatedCrashRecord` array)."""
        return await records(
            lambda entries, timeout: collect_crash_records(entries, settings, timeout=timeout),
            crash_record_json)

    @app.route("/pressure-profiles", methods=["GET"])
    async def pressure_profiles() -> Response:
        """Capture events of the selected agents (upstream's `AggregatedPressureProfile`)."""
        return await records(
            lambda entries, timeout: collect_profiles(entries, timeout=timeout),
            profile_record_json)

    @app.route("/pressure-profiles/<pod_name>/<profile_id>/<type_>", methods=["GET"])
    async def download(pod_name: str, profile_id: str, type_: str) -> Response:
        """One profile's bytes, streamed as they arrive from the pod's agent."""
        query.check_unknown(params(), frozenset())
        if type_ not in PROFILE_TYPES:
            return _error(400, f"unknown profile type {type_[:32]!r}: use "
                               f"{' or '.join(PROFILE_TYPES)}")
        for name, value in (("pod name", pod_name), ("profile id", profile_id)):
            if len(value) > MAX_PATH_PART:
                return _error(400, f"the {name} is {len(value)} characters long: at most "
                                   f"{MAX_PATH_PART}")
        shown = f"{profile_id!r} of pod {pod_name!r}"
        candidates = [(e, s) for e in hub.select(lambda meta: meta.pod_name == pod_name)
                      if (s := stream_of(e, PressureProfilesStream)) is not None]
        if not candidates:
            return _error(404, f"profile {shown} not found: no online agent of that pod holds "
                               "a pressure-profiles stream (see GET /pressure-profiles)")
        entry, stream = candidates[0]
        timeout = deadline()
        listed = None
        with trio.move_on_after(timeout):
            try:
                listed = await stream.list_profiles(trio.current_time() + timeout)
            except AgentGone as exc:
                return _error(404, f"profile {shown} not available: the agent's list failed: {exc}")
        if listed is None:
            return _error(404, f"profile {shown} not available: the agent did not list its "
                               f"profiles within {timeout:g}s")
        stream.latest_count = len(listed.records)
        record = next((r for r in listed.kept if r.profile_id == profile_id), None)
        file = record.file(type_) if record is not None else None
        if file is None:
            return _error(404, f"profile {shown} with a {type_} profile not found (see "
                               "GET /pressure-profiles)")
        name = attachment_name(pod_name, entry.role, profile_id, type_)
        headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        # The listed size, so that a body cut short can be told from a whole one by any client
        # (one reading to the connection's end too): `_body` sends exactly this many bytes or
        # cuts the connection.
        size = file.size_bytes if file.size_bytes > 0 else None
        if request.method == "HEAD":  # the profile is there; its bytes are not asked for
            response = Response(b"", content_type="application/octet-stream", headers=headers)
            if size is not None:
                response.content_length = size
            return response
        try:
            fetch = await stream.start_fetch(profile_id, type_, file.filepath)
        except TooManyDownloads as exc:
            return _error(503, f"profile {shown} not available now: {exc}")
        except AgentGone as exc:
            return _error(404, f"profile {shown} not available: {exc}")
        try:
            first = await stream.next_data(fetch)
        except FetchFailed as exc:
            stream.close(fetch)
            return _error(404, f"profile {shown} not available: {exc}")
        except BaseException:
            stream.close(fetch)
            raise
        if size is not None:
            headers["Content-Length"] = str(size)
        response = Response(_body(stream, fetch, first, size),
                            content_type="application/octet-stream", headers=headers)
        # No whole-response timeout: each chunk has its own deadline (--profile-chunk-timeout).
        response.timeout = None
        return response


async def _body(stream: PressureProfilesStream, fetch: ProfileFetch, first: bytes | None,
                size: int | None = None) -> AsyncIterator[bytes]:
    """The download's data as it arrives (`first` already taken); closes the fetch whatever
    happens (quart closes the generator when the client goes away). With a `size` (the
    response's Content-Length), exactly that many bytes or a cut connection."""
    try:
        data = first
        sent = 0
        while data is not None:
            if size is not None and sent + len(data) > size:
                raise FetchFailed(f"the agent sent more than the {size} bytes it listed")
            sent += len(data)
            yield data
            data = await stream.next_data(fetch)
        if size is not None and sent != size:
            raise FetchFailed(f"the agent sent {sent} bytes of the {size} it listed")
    except FetchFailed as exc:
        # Bytes are on the wire already: the status cannot change. Raising makes the server
        # abort the connection without the body's end, so the client sees a truncated download
        # (not a short file that looks complete).
        log.warning("download %s of profile %r from agent %s cut short after %d bytes: %s",
                    fetch.request_id, fetch.profile_id[:128], stream.agent_id, fetch.bytes, exc)
        raise DownloadCut(str(exc)) from None
    finally:
        stream.close(fetch)
