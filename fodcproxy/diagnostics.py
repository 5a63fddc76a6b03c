"""Crash records and pressure profiles, the hub's side: the two streams and their collections.

`CrashDiagnosticsStream` (StreamCrashDiagnostics): the proxy sends `request_diagnostics`; the
agent answers with one message per crash record and no end marker. The answer is complete when
the stream has been quiet for `--diagnostics-settle` after the request or its last record, and
never waits past the fan-out's deadline (`core.diagnostics.CrashAnswer` holds the rule). This
stream does not use the request tracker: with no id and no end marker its id-0 rule (one reply
per request, ended by its last chunk) cannot tell one answer from the next; one collection runs
at a time (the stream's lock) and records arriving while none runs are dropped and counted.

`PressureProfilesStream` (StreamPressureProfiles): `list_profiles{request_id}` is answered by
records then `list_complete{request_id}`; the tracker routes them (records are id-0 chunks with
more to come, `list_complete` the last one; its echoed id is checked too; a caller that comes
while a list is in progress takes its answer). A download
(`fetch_profile`) has a request id of its own (`fetch-<n>`) and its chunks bypass the tracker:
they go to that fetch's bounded channel (`FETCH_QUEUE` chunks), and the stream's handler waits
for the hand-off, so a slow HTTP client slows the agent down through gRPC flow control instead
of filling the proxy's memory. A fetch whose HTTP client left, whose chunk deadline passed or
whose chunk was refused is abandoned: the agent is told to stop (our extension, a
`FetchPressureProfile` with only the request id) and its later chunks are dropped and counted.

Neither stream stores what agents send beyond one answer (SPEC section 9): each endpoint asks
again. Only the number of records of each agent's latest answer is kept (`latest_count`), for
the `fodc_agent_crash_records` and `fodc_agent_pressure_profiles` gauges.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

import attrs
import trio

from fodcproxy.core.diagnostics import (
    MAX_RECORDS,
    CancelFetch,
    Chunk,
    CrashAnswer,
    CrashRecord,
    FetchCommand,
    ProfileList,
    ProfileRecord,
    chunk_problem,
)
from fodcproxy.core.registry import AgentEntry, AgentStatus
from fodcproxy.core.tracker import Verdict
from fodcproxy.hub import AgentHub, AgentSession
from fodcproxy.link import RequestCall, StreamClosed
from fodcproxy.metrics import ProxyMetrics
from fodcproxy.streams import MAX_REPLY_BYTES, AgentGone, ReportStream

__all__ = ["ARRIVAL_GRACE", "FETCH_QUEUE", "MAX_FETCHES_PER_AGENT", "Arrivals", "Collected",
           "CrashDiagnosticsStream", "DiagnosticsSettings", "DownloadAgents", "FetchFailed",
           "PressureProfilesStream", "ProfileFetch", "TooManyDownloads", "attach", "collect_crash_records",
           "collect_profiles", "counts", "refresh_forever", "stream_of"]

log = logging.getLogger(__name__)

#: Chunks a download holds between the agent's stream and its HTTP client.
FETCH_QUEUE = 1
#: Downloads from one agent at once; more are refused (503).
MAX_FETCHES_PER_AGENT = 4
#: Abandoned downloads remembered per agent (their late chunks are recognised and counted).
MAX_ABANDONED = 16
#: How long the stream's handler tries to send the cancel of an abandoned download.
CANCEL_SEND_TIMEOUT = 1.0


class DownloadAgents:
    """How many agents may have profile downloads in progress at once, proxy-wide.

    While a download waits for its HTTP client, the agent's StreamPressureProfiles is not read,
    so the chunks queued on it (up to one HTTP/2 stream window, two --grpc-max-msg-size
    messages) hold their bytes of --grpc-buffer-budget, which every agent's metrics share. The
    downloads of one agent share its stream's window; so the proxy bounds the number of agents
    with downloads in progress (`limit`), to keep most of the budget for metrics."""

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self._active: dict[str, int] = {}  # agent_id -> downloads in progress

    def acquire(self, agent_id: str) -> bool:
        if agent_id not in self._active and len(self._active) >= self.limit:
            return False
        self._active[agent_id] = self._active.get(agent_id, 0) + 1
        return True

    def release(self, agent_id: str) -> None:
        n = self._active.get(agent_id, 0) - 1
        if n > 0:
            self._active[agent_id] = n
        else:
            self._active.pop(agent_id, None)

    @property
    def agents(self) -> int:
        return len(self._active)


class Arrivals:
    """Agents whose crash or pressure stream attached since the refresh task last looked. The
    refresh task counts them soon after (`refresh_forever`), so the gauges are there for a new or
    reconnected agent without waiting a whole --diagnostics-refresh-interval. Bounded: an id is
    kept once, and agents are bounded by --max-agents."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._event = trio.Event()

    def add(self, agent_id: str) -> None:
        self._ids.add(agent_id)
        self._event.set()

    async def wait(self) -> None:
        """Until some agent has arrived since the last `take`."""
        await self._event.wait()

    def take(self) -> set[str]:
        ids, self._ids = self._ids, set()
        self._event = trio.Event()
        return ids


#: After an agent's first stream attaches, the refresh waits this long for its others.
ARRIVAL_GRACE = 1.0


@attrs.frozen(kw_only=True)
class DiagnosticsSettings:
    """The proxy's settings for these streams (flags of `fodcproxy.config`)."""

    settle: float = 0.5  # --diagnostics-settle
    chunk_timeout: float = 30.0  # --profile-chunk-timeout
    max_records: int = MAX_RECORDS
    max_bytes: int = MAX_REPLY_BYTES  # --max-reply-bytes
    # Agents with downloads in progress at once, proxy-wide (see DownloadAgents): as many
    # stream windows as fit in half of --grpc-buffer-budget (2 with the defaults).
    download_agents: int = 2
    # Told of every attach; None: nobody listens (no background refresh).
    arrivals: Arrivals | None = attrs.field(default=None, eq=False)


_CANCELLED = "the collection was cancelled"


class TooManyDownloads(AgentGone):
    """MAX_FETCHES_PER_AGENT downloads from the agent are running."""


class FetchFailed(Exception):
    """A download ended before its last chunk; says why."""


class CrashDiagnosticsStream(ReportStream):
    """StreamCrashDiagnostics of one agent."""

    def __init__(self, session: AgentSession, call: RequestCall, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        super().__init__(session, call, clock=clock)
        self.metrics: ProxyMetrics | None = None  # set by the transport's handler
        self._answer: CrashAnswer | None = None
        self._over = trio.Event()  # set when the collection in progress is over
        self._wake = trio.Event()
        self.unasked = 0  # records that arrived while no collection ran
        self.latest_count: int | None = None

    async def collect(self, answer: CrashAnswer) -> None:
        """Ask for the agent's crash records and fill `answer` until it is over.

        A caller that comes while a collection is in progress joins it (the agent is sending its
        records now; they are this caller's answer too) instead of asking again.

        Raises:
            AgentGone: the stream ended (or was gone) before the answer was over.
        """
        while (running := self._answer) is not None:
            over = self._over
            await over.wait()
            if running.failed is None and running.quiet(self._clock()):
                answer.take(running)
                return
            if running.failed is not None and running.failed != _CANCELLED:
                raise AgentGone(running.failed)
            # The collection we joined was cut short (its caller went away, or its deadline was
            # earlier than ours): ask ourselves.
        if self._ended is not None:
            raise AgentGone(self._ended)
        # Ours from now on (no checkpoint before): a caller in the same turn joins it.
        self._answer = answer
        over = self._over = trio.Event()
        try:
            async with self._lock:
                try:
                    await self.call.send_request(0, None)
                except StreamClosed as exc:
                    raise AgentGone(str(exc)) from None
                answer.sent = True
                answer.last = max(answer.last, self._clock())
                while not answer.finished(self._clock()):
                    if self._ended is not None:
                        raise AgentGone(self._ended)
                    self._wake = trio.Event()
                    with trio.move_on_at(answer.wake_at()):
                        await self._wake.wait()
                if self._ended is not None:
                    raise AgentGone(self._ended)
        except AgentGone as exc:
            answer.failed = str(exc)
            raise
        except BaseException:
            answer.failed = answer.failed or _CANCELLED
            raise
        finally:
            if self._answer is answer:
                self._answer = None
            over.set()

    def on_record(self, record: CrashRecord, size: int) -> None:
        """One StreamCrashDiagnosticsRequest (`size` serialized bytes)."""
        answer = self._answer
        if answer is None:
            self.unasked += 1
            if self.metrics is not None:
                self.metrics.dropped_reply()
            log.debug("agent %s: dropped a crash record nobody asked for", self.agent_id)
            return
        if not answer.add(record, size, self._clock()) and answer.dropped == 1:
            log.warning("agent %s: crash records left out: %s", self.agent_id, answer.truncated)
        self._wake.set()

    def end(self, why: str) -> None:
        super().end(why)
        self._wake.set()


class ProfileFetch:
    """One download from an agent: its chunks, handed over one at a time."""

    def __init__(self, request_id: str, profile_id: str, type_: str, queue: int,
                 now: float = 0.0) -> None:
        self.request_id = request_id
        self.profile_id = profile_id
        self.type = type_
        self._send, self._receive = trio.open_memory_channel[Chunk](queue)
        self.error: str | None = None
        self.finished = False  # the last chunk was handed over
        self.abandoned = False  # nobody reads it any more; its later chunks are dropped
        self.cancel_sent = False
        self.bytes = 0
        self.chunks = 0
        self.peak_queued = 0  # most chunks held in the channel at once
        self.touched = now  # the latest hand-off or read
        self.read_all = False  # the reader took the last chunk

    def fail(self, why: str) -> None:
        if self.error is None:
            self.error = why
        self._send.close()


class _Listing:
    """A list in progress: its answer, or why it failed (neither: its caller went away)."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: ProfileList | None = None
        self.error: str | None = None


class PressureProfilesStream(ReportStream):
    """StreamPressureProfiles of one agent: lists through the tracker, downloads beside it."""

    def __init__(self, session: AgentSession, call: RequestCall, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        super().__init__(session, call, clock=clock)
        self.metrics: ProxyMetrics | None = None  # set by the transport's handler
        self.settings = DiagnosticsSettings()  # set by the transport's handler
        self.downloads = DownloadAgents(self.settings.download_agents)  # shared: see attach()
        self._send_lock = trio.Lock()  # lists, fetches and cancels share the call
        self._fetches: dict[str, ProfileFetch] = {}
        self._abandoned: OrderedDict[str, ProfileFetch] = OrderedDict()
        self._ids = itertools.count(1)
        self.unasked_chunks = 0  # chunks of no download of ours, or of an abandoned one
        self.latest_count: int | None = None
        self._listing: _Listing | None = None  # the list in progress, joined by later callers

    # -- lists ---------------------------------------------------------------------------------

    def _new_result(self, payload: Any) -> ProfileList:
        return ProfileList(self.settings.max_records, self.settings.max_bytes)

    async def _send(self, request_id: int, payload: Any) -> None:
        async with self._send_lock:
            await self.call.send_request(request_id, payload)

    async def list_profiles(self, deadline: float) -> ProfileList:
        """The agent's capture events, answered by `deadline` (the caller's cancel scope ends
        the wait).

        A caller that comes while a list is in progress takes its answer (the agent is sending
        its records now) instead of queueing behind it for a list of its own; when that list is
        cut short by its own caller going away, it asks itself.

        Raises:
            AgentGone: the stream ended, or the answer was for another request.
        """
        while (running := self._listing) is not None:
            await running.done.wait()
            if running.result is not None:
                return running.result
            if running.error is not None:
                raise AgentGone(running.error)
        listing = _Listing()
        self._listing = listing
        try:
            result: ProfileList = await self._ask(None, None, deadline)
            listing.result = result
            return result
        except AgentGone as exc:
            listing.error = str(exc)
            raise
        finally:
            if self._listing is listing:
                self._listing = None
            listing.done.set()

    def on_record(self, record: ProfileRecord, size: int) -> None:
        verdict, w = self._route(0, True)
        if w is not None:
            result: ProfileList = w.result
            if not result.add(record, size) and result.dropped == 1:
                log.warning("agent %s: pressure profiles left out: %s", self.agent_id,
                            result.truncated)

    def on_list_complete(self, echoed: str) -> None:
        verdict, w = self._route(0, False)
        if w is None:
            return
        if echoed and echoed != str(w.request_id):
            w.fail(f"the agent's list_complete names request {echoed[:64]!r}, not "
                   f"{w.request_id}")
        elif verdict is Verdict.DONE:
            w.done.set()

    def _dropped(self, request_id: int) -> None:
        if self.metrics is not None:
            self.metrics.dropped_reply()
        super()._dropped(request_id)

    # -- downloads -----------------------------------------------------------------------------

    async def start_fetch(self, profile_id: str, type_: str, filepath: str, *,
                          queue: int = FETCH_QUEUE) -> ProfileFetch:
        """Ask the agent for one profile's bytes; read them with `next_data()`, then `close()`.

        Raises:
            AgentGone: the stream is gone.
            TooManyDownloads: MAX_FETCHES_PER_AGENT downloads from the agent are running.
        """
        if self._ended is not None:
            raise AgentGone(self._ended)
        now = self._clock()
        for stale in list(self._fetches.values()):
            # A live download is touched at least every chunk deadline (a read or a hand-off,
            # else one of their deadlines abandons it); this one's reader never started.
            if now - stale.touched > 2 * self.settings.chunk_timeout:
                self._abandon(stale, "nobody read it")
        if len(self._fetches) >= MAX_FETCHES_PER_AGENT:
            raise TooManyDownloads(f"{MAX_FETCHES_PER_AGENT} downloads from this agent are "
                                   "running: try again when one is done")
        if not self.downloads.acquire(self.agent_id):
            raise TooManyDownloads(
                f"downloads from {self.downloads.limit} other agents are running (each holds "
                "part of --grpc-buffer-budget while its client reads): try again when one is "
                "done")
        fetch = ProfileFetch(f"fetch-{next(self._ids)}", profile_id, type_, queue, now)
        self._fetches[fetch.request_id] = fetch
        try:
            await self._send(0, FetchCommand(fetch.request_id, profile_id, type_, filepath))
        except StreamClosed as exc:
            self._forget(fetch)
            raise AgentGone(str(exc)) from None
        except BaseException:
            self._forget(fetch)
            raise
        return fetch

    def _forget(self, fetch: ProfileFetch) -> bool:
        """`fetch` is no longer in progress (its slot is freed). Returns whether it was."""
        if self._fetches.pop(fetch.request_id, None) is None:
            return False
        self.downloads.release(self.agent_id)
        return True

    async def next_data(self, fetch: ProfileFetch) -> bytes | None:
        """The download's next piece of data, or None after its last chunk.

        Raises:
            FetchFailed: the agent sent an error or a bad chunk, the stream ended, or no chunk
                came within the chunk deadline.
        """
        timeout = self.settings.chunk_timeout
        # One deadline for the next piece of data (or the end), not per chunk: empty chunks
        # must not keep a download alive.
        deadline = trio.current_time() + timeout
        while not fetch.read_all:
            chunk: Chunk | None = None
            with trio.move_on_at(deadline):
                try:
                    chunk = await fetch._receive.receive()
                    fetch.touched = self._clock()
                except trio.EndOfChannel:
                    raise FetchFailed(fetch.error or "the download ended") from None
            if chunk is None:
                self._abandon(fetch, f"no chunk within --profile-chunk-timeout={timeout:g}s")
                raise FetchFailed(fetch.error or "no chunk in time")
            fetch.read_all = chunk.last
            if chunk.data:
                return chunk.data
        return None

    def close(self, fetch: ProfileFetch) -> None:
        """The reader is done with `fetch` (read to its end or not)."""
        fetch._receive.close()
        if not fetch.finished and fetch.error is None:
            self._abandon(fetch, "its HTTP client went away")

    def _abandon(self, fetch: ProfileFetch, why: str) -> None:
        """Stop `fetch`: its later chunks are dropped, the next one sends the agent a cancel."""
        fetch.fail(why)
        if self._forget(fetch) and not fetch.finished:
            fetch.abandoned = True
            log.info("agent %s: download %s of profile %r abandoned: %s", self.agent_id,
                     fetch.request_id, fetch.profile_id[:128], why)
            self._abandoned[fetch.request_id] = fetch
            while len(self._abandoned) > MAX_ABANDONED:
                self._abandoned.popitem(last=False)

    async def _cancel(self, fetch: ProfileFetch) -> None:
        if fetch.cancel_sent:
            return
        fetch.cancel_sent = True
        with trio.move_on_after(CANCEL_SEND_TIMEOUT):
            try:
                await self._send(0, CancelFetch(fetch.request_id))
            except StreamClosed:
                pass

    def _drop_chunk(self, chunk: Chunk) -> None:
        self.unasked_chunks += 1
        if self.metrics is not None:
            self.metrics.dropped_reply()

    async def on_chunk(self, chunk: Chunk) -> None:
        """One PressureProfileChunk: handed to its download (waiting until the reader takes it,
        at most the chunk deadline), or dropped and counted."""
        fetch = self._fetches.get(chunk.request_id)
        if fetch is None:
            self._drop_chunk(chunk)
            late = self._abandoned.get(chunk.request_id)
            if late is not None:
                if chunk.last or chunk.error:
                    del self._abandoned[chunk.request_id]
                else:
                    await self._cancel(late)
            else:
                log.debug("agent %s: dropped a profile chunk of no download (request id %r)",
                          self.agent_id, chunk.request_id[:64])
            return
        problem = chunk_problem(profile_id=chunk.profile_id, type_=chunk.type,
                                data_len=len(chunk.data), error=chunk.error,
                                want_profile_id=fetch.profile_id, want_type=fetch.type)
        if problem is not None:
            self._forget(fetch)
            fetch.fail(problem)
            if not chunk.error and not chunk.last:
                log.warning("agent %s: download %s refused: %s", self.agent_id,
                            fetch.request_id, problem)
                fetch.abandoned = True
                self._abandoned[fetch.request_id] = fetch
                await self._cancel(fetch)
            return
        timeout = self.settings.chunk_timeout
        with trio.move_on_after(timeout) as waited:
            try:
                await fetch._send.send(chunk)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                # The reader left meanwhile (close() abandoned the download).
                self._drop_chunk(chunk)
                if not chunk.last:
                    await self._cancel(fetch)
                return
        if waited.cancelled_caught:
            self._drop_chunk(chunk)
            self._abandon(fetch, f"its HTTP client did not take a chunk within "
                                 f"--profile-chunk-timeout={timeout:g}s")
            await self._cancel(fetch)
            return
        fetch.touched = self._clock()
        fetch.chunks += 1
        fetch.bytes += len(chunk.data)
        fetch.peak_queued = max(fetch.peak_queued,
                                fetch._send.statistics().current_buffer_used)
        if chunk.last:
            fetch.finished = True
            self._forget(fetch)
            fetch._send.close()

    def end(self, why: str) -> None:
        super().end(why)
        for fetch in list(self._fetches.values()):
            fetch.fail(why)
            self._forget(fetch)
        self._abandoned.clear()


S = TypeVar("S", CrashDiagnosticsStream, PressureProfilesStream)


async def attach(hub: AgentHub, agent_id: str, call: RequestCall, kind: type[S],
                 settings: DiagnosticsSettings, downloads: DownloadAgents | None = None) -> S:
    """`hub.attach` for these streams, wired to the hub's metrics, `settings` and the proxy's
    `downloads` limit (see `AgentHub.attach` for what it raises)."""
    stream = await hub.attach(agent_id, call, kind)
    stream.metrics = hub.metrics
    if settings.arrivals is not None:
        settings.arrivals.add(agent_id)
    if isinstance(stream, PressureProfilesStream):
        stream.settings = settings
        if downloads is not None:
            stream.downloads = downloads
    return stream


# -- collections -------------------------------------------------------------------------------


@attrs.frozen
class Collected:
    """One asked agent's answer: its records (crash or profile records), or why there are none.

    `complete` is False when the answer was cut at the deadline (crash records: the agent was
    still sending) or records were left out (`truncated`)."""

    entry: AgentEntry
    records: Sequence[Any]
    error: str = ""
    complete: bool = True
    truncated: str | None = None

    @property
    def answered(self) -> bool:
        return not self.error


def stream_of(entry: AgentEntry, kind: type[S]) -> S | None:
    """The online agent's stream of `kind`, if it holds one."""
    session = entry.owner
    if entry.status is not AgentStatus.ONLINE or not isinstance(session, AgentSession):
        return None
    return session.stream(kind)


def _streams(entries: Sequence[AgentEntry],
             kind: type[S]) -> tuple[list[tuple[AgentEntry, S]], list[AgentEntry]]:
    """The entries holding a stream of `kind` (with it), and the online ones without one."""
    asked: list[tuple[AgentEntry, S]] = []
    without: list[AgentEntry] = []
    for entry in entries:
        if entry.status is not AgentStatus.ONLINE or not isinstance(entry.owner, AgentSession):
            continue
        stream = stream_of(entry, kind)
        if stream is None:
            without.append(entry)
        else:
            asked.append((entry, stream))
    return asked, without


async def collect_crash_records(entries: Sequence[AgentEntry], settings: DiagnosticsSettings, *,
                                timeout: float) -> tuple[list[Collected], list[AgentEntry]]:
    """Ask every entry with a crash stream for its records, under one deadline.

    Returns the asked agents' answers and the online entries without the stream.
    """
    asked, without = _streams(entries, CrashDiagnosticsStream)
    start = trio.current_time()
    deadline = start + timeout
    answers = [CrashAnswer(started=start, deadline=deadline, settle=settings.settle,
                           max_records=settings.max_records, max_bytes=settings.max_bytes)
               for _ in asked]
    errors: list[str | None] = [None] * len(asked)

    async def one(i: int, stream: CrashDiagnosticsStream) -> None:
        try:
            await stream.collect(answers[i])
        except AgentGone as exc:
            errors[i] = str(exc)

    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            for i, (_, stream) in enumerate(asked):
                nursery.start_soon(one, i, stream)
    now = trio.current_time()
    out = []
    for (entry, stream), answer, error in zip(asked, answers, errors):
        if error is None and not answer.sent:
            error = "missed the deadline"
        if error is not None:
            out.append(Collected(entry, [], error, False))
            continue
        quiet = answer.quiet(now)
        # An answer cut at the deadline holds only part of the agent's records: it may raise
        # the gauge (at least that many), never lower it (that is for a complete answer).
        if quiet or stream.latest_count is None or len(answer.records) > stream.latest_count:
            stream.latest_count = len(answer.records)
        out.append(Collected(entry, answer.kept, "", quiet and answer.truncated is None,
                             answer.truncated if answer.truncated else
                             (None if quiet else "still sending at the deadline")))
    return out, without


async def collect_profiles(entries: Sequence[AgentEntry], *,
                           timeout: float) -> tuple[list[Collected], list[AgentEntry]]:
    """Ask every entry with a pressure stream for its capture events, under one deadline."""
    asked, without = _streams(entries, PressureProfilesStream)
    deadline = trio.current_time() + timeout
    results: list[Collected | None] = [None] * len(asked)

    async def one(i: int, entry: AgentEntry, stream: PressureProfilesStream) -> None:
        try:
            answer = await stream.list_profiles(deadline)
        except AgentGone as exc:
            results[i] = Collected(entry, [], str(exc), False)
            return
        stream.latest_count = len(answer.records)
        results[i] = Collected(entry, answer.kept, "", answer.truncated is None,
                               answer.truncated)

    with trio.move_on_at(deadline):
        async with trio.open_nursery() as nursery:
            for i, (entry, stream) in enumerate(asked):
                nursery.start_soon(one, i, entry, stream)
    return [r if r is not None else Collected(entry, [], "missed the deadline", False)
            for r, (entry, _) in zip(results, asked)], without


def counts(hub: AgentHub, agent_id: str) -> tuple[int | None, int | None]:
    """The agent's crash records and pressure profiles in its latest answers (None: never
    answered on this connection's streams)."""
    session = hub.sessions.get(agent_id)
    if session is None:
        return None, None
    crash = session.stream(CrashDiagnosticsStream)
    pressure = session.stream(PressureProfilesStream)
    return (crash.latest_count if crash is not None else None,
            pressure.latest_count if pressure is not None else None)


async def refresh_forever(hub: AgentHub, settings: DiagnosticsSettings, *, interval: float,
                          timeout: float,
                          task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    """Every `interval` seconds, collect every agent's crash records and capture events (only
    their numbers are kept, for the gauges), so an alert fires without anyone browsing; and
    `ARRIVAL_GRACE` after an agent's stream attaches (`settings.arrivals`), that agent's, so a new
    or reconnected agent's gauges do not wait for the next round."""
    task_status.started()
    if not interval > 0 or math.isinf(interval):
        return
    arrivals = settings.arrivals
    next_round = trio.current_time() + interval
    while True:
        arrived: set[str] = set()
        with trio.move_on_at(next_round):
            if arrivals is None:
                await trio.sleep_forever()
            await arrivals.wait()
            await trio.sleep(ARRIVAL_GRACE)  # its other streams attach meanwhile
            arrived = arrivals.take()
        if trio.current_time() >= next_round:
            next_round = trio.current_time() + interval
            entries = hub.select(lambda meta: True)
        else:
            entries = [e for e in hub.select(lambda meta: True) if e.agent_id in arrived]
        async with trio.open_nursery() as nursery:
            nursery.start_soon(partial(collect_crash_records, entries, settings,
                                       timeout=timeout))
            nursery.start_soon(partial(collect_profiles, entries, timeout=timeout))
