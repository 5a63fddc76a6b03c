"""Lifecycle and schema consistency, the hub's side (issue 16): two streams and one collection.

- `LifecycleReportStream` (StreamLifecycle): a request is `request_lifecycle`, the reply one
  `StreamLifecycleRequest`, decoded (in a worker thread) into a `core.lifecycle.AgentLifecycle`.
- `RegistryStream` (StreamSchemaRegistry): a request is `request_registry`, the reply every
  `StreamSchemaRegistryRequest` up to the one with `done`, each group chunk decoded into a
  `core.schema.RegistryChunk`. The chunks' serialized bytes are summed: a reply over
  `max_reply_bytes` (--max-reply-bytes) is refused and its later chunks dropped.
- `LifecycleCollector.collect(entries)` asks every selected agent holding a StreamLifecycle, and
  at the same time ONE liaison for the registry (liaisons holding a StreamSchemaRegistry are
  tried in agent id order until one answers in full, as upstream's proxy does), all under one
  deadline (--lifecycle-timeout), then judges the schema with `core.schema.judge`: agents asked
  that did not answer are silent, and so (beyond upstream, which only counts the agents it could
  ask) are selected agents that answered an earlier collection but cannot be asked now (offline,
  say), so a lost node makes the verdicts UNKNOWN rather than letting the rest pass. One
  collection runs at a time; identical requests arriving while one runs share its result.
  Only a collection over every agent (no filter) advances the two-round suppression streaks
  and replaces the verdicts `/metrics` shows: a filtered one judges with the streaks as they
  are and leaves them.

Both streams' replies carry no request id (see each class for how they are matched); what an
agent sends while nothing is asked is dropped before it is decoded. Messages are decoded by the
gRPC adapter (`fodcproxy.rpc.lifecycle_convert`), only for a wanted reply: a registry chunk at
once (when that raises, the request fails and the exception ends that call only), a lifecycle
answer in a worker thread once collected (when that raises, that agent has not responded). A
message that is not protobuf never gets here: the gRPC layer ends its call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_latest_om

from fodcproxy.core import lifecycle as merge
from fodcproxy.core.registry import AgentEntry, AgentStatus, Registry
from fodcproxy.core.roles import LIAISON, kind_of
from fodcproxy.core.schema import (
    RegistryChunk,
    RegistryRead,
    Streaks,
    Verdicts,
    judge,
    merge_registry_chunks,
)
from fodcproxy.hub import AgentHub, AgentSession, Report
from fodcproxy.streams import MAX_REPLY_BYTES, AgentGone, ReportStream

if TYPE_CHECKING:
    from fodcproxy.streams import _Waiter

log = logging.getLogger(__name__)

# Worker threads decoding lifecycle answers at once (per proxy).
DECODE_THREADS = 2
# Default of --lifecycle-timeout: upstream waits 40 s for a liaison's InspectAll plus 10 s.
LIFECYCLE_TIMEOUT = 50.0

NO_LIAISON = "no schema-serving (liaison) agent available to read the registry"
# The key under which collections over every agent share a flight (HTTP and the periodic one).
EVERYONE = "everyone"


class LifecycleReportStream(ReportStream):
    """StreamLifecycle of one agent.

    Its replies carry no request id and every request asks the same thing (the agent's data
    now), so any reply that arrives while a request waits answers it, as upstream's proxy takes
    whatever arrives during a collection; a reply while nobody waits is dropped. (The tracker's
    stricter rule for windows would lose the next round after an agent skipped one.)
    """

    max_reply_bytes = MAX_REPLY_BYTES  # set per proxy by the handler (--max-reply-bytes)

    def _waiting(self) -> _Waiter[Any] | None:
        w = self._waiter
        if w is None or w.over:
            self._dropped(0)
            return None
        self.tracker.expire(w.request_id)  # answered (or refused): the request is closed
        return w

    def on_message(self, size: int, decode: Callable[[], merge.AgentLifecycle]) -> None:
        """One StreamLifecycleRequest of `size` serialized bytes, and how to decode it.

        The waiting request gets `decode` itself, not called: decoding a big answer takes a
        while (about a second for 2 MB of segments), so the collection runs it in a worker
        thread; a message nobody waits for is dropped undecoded.
        """
        w = self._waiting()
        if w is None:
            return
        if size > self.max_reply_bytes:
            w.fail(f"lifecycle reply of {size} bytes is over --max-reply-bytes="
                   f"{self.max_reply_bytes}")
            log.warning("agent %s: lifecycle reply refused (%d bytes)", self.agent_id, size)
            return
        w.result = decode
        w.done.set()


class RegistryStream(ReportStream):
    """StreamSchemaRegistry of one agent; its reply is the list of chunks before `done`.

    No request ids here either: the chunks that arrive while a request waits are its reply, up
    to `done`. When a request is sent while the agent is in the middle of another reply (one
    that was cut short by a deadline or a refusal, or began unasked), that reply's chunks are
    dropped until its `done`, so the rest of an old reply never passes for the start of the new
    one; the request then takes the chunks after it.
    """

    max_reply_bytes = MAX_REPLY_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mid_reply = False  # the agent has sent chunks of a reply and not yet its done
        self.stale = False  # the reply under way when the open request was sent goes on

    def _new_result(self, payload: Any) -> Any:
        return []

    async def request(self, deadline: float) -> Any:
        """The chunks of one registry reply, complete by `deadline`.

        Raises:
            AgentGone: the stream ended, or the reply was refused or malformed.
        """
        self.stale = self.mid_reply
        return await super().request(deadline)

    def on_message(self, size: int, done: bool,
                   decode: Callable[[], RegistryChunk | None]) -> None:
        """One StreamSchemaRegistryRequest of `size` bytes; `done` ends the reply; `decode` gives
        its group chunk (None when it has none), called only when a request waits for it.

        Raises whatever `decode` raises (the request fails first).
        """
        self.mid_reply = not done
        w = self._waiter
        if w is None or w.over or self.stale:
            if done:
                self.stale = False  # the old reply is over: the next chunks are the answer
            self._dropped(0)
            return
        w.size += size
        if w.size > self.max_reply_bytes:
            self.tracker.expire(w.request_id)
            w.fail(f"registry reply over --max-reply-bytes={self.max_reply_bytes} bytes")
            log.warning("agent %s: registry reply refused (over %d bytes)", self.agent_id,
                        self.max_reply_bytes)
            return
        try:
            chunk = decode()
        except Exception as exc:
            self.tracker.expire(w.request_id)
            w.fail(f"malformed registry chunk: {exc}")
            raise
        if chunk is not None:
            w.result.append(chunk)
        if done:
            self.tracker.expire(w.request_id)
            w.done.set()


@attrs.frozen(eq=False)
class Collection:
    """One collection: who was asked and answered, the registry read, the verdicts."""

    summary: merge.AgentSummary
    answers: tuple[merge.AgentLifecycle, ...]
    failures: tuple[tuple[str, str], ...]  # (agent id, why) of agents asked that did not answer
    # Selected agents that answered an earlier collection but could not be asked this time
    # (offline, or their StreamLifecycle not reopened yet): silent too, for the verdict.
    absent: tuple[str, ...]
    registry: RegistryRead
    registry_agent: str  # the liaison whose registry was used ("" when none)
    verdicts: Verdicts

    def body(self) -> merge.Json:
        """The body of `GET /cluster/lifecycle`."""
        return merge.body(self.summary, self.answers, self.verdicts)


class _Flight:
    """A collection in flight, for identical requests to join."""

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: Collection | None = None


def _liaisons(entries: Iterable[AgentEntry]) -> list[RegistryStream]:
    """The registry streams of online liaison agents, in agent id order."""
    out = []
    for e in sorted(entries, key=lambda e: e.agent_id):
        session = e.owner
        if (e.status is AgentStatus.ONLINE and isinstance(session, AgentSession)
                and kind_of(e.role, e.labels).kind == LIAISON):
            stream = session.stream(RegistryStream)
            if stream is not None:
                out.append(stream)
    return out


class LifecycleCollector:
    """Runs collections (one at a time) and keeps what the next one and `/metrics` need."""

    def __init__(self, hub: AgentHub, registry: Registry, *,
                 timeout: float = LIFECYCLE_TIMEOUT,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.hub = hub
        self.registry = registry
        self.timeout = timeout
        self._clock = clock
        self._lock = trio.Lock()
        self._decoding = trio.CapacityLimiter(DECODE_THREADS)
        self._streaks = Streaks()
        self._flights: dict[Hashable, _Flight] = {}
        self.latest: Verdicts | None = None  # of the last unfiltered collection
        # The schema gauges of `latest` as exposition text, per format (OpenMetrics or not),
        # made when first asked for (see `schema_metrics`).
        self._rendered: dict[bool, tuple[Verdicts, str]] = {}
        self._rendering = trio.Lock()
        self.collections = 0
        # Agents that have answered a collection, with the time of the registration they
        # answered under: one of them that cannot be asked later is missing evidence, not an
        # agent without lifecycle data (forgotten once unregistered, or once registered again
        # without the stream for longer than the hub's attach grace: restarted with lifecycle
        # off, it is an agent without lifecycle data like one that never had the stream).
        self._answered: dict[str, float] = {}

    async def collect(self, entries: Sequence[AgentEntry], *, everyone: bool,
                      key: Hashable = None) -> Collection:
        """Ask `entries` (the request's selection) and one liaison; `everyone` when no filter
        narrowed the selection (then the streaks and `latest` are updated).

        A call with a `key` (not None) that finds a collection of the same key in flight waits
        for it and shares its result instead of running another (a burst of identical requests
        costs one collection, and does not queue one deadline after another).
        """
        while key is not None and (flight := self._flights.get(key)) is not None:
            await flight.done.wait()
            if flight.result is not None:
                return flight.result
            # it was cancelled before it finished: run our own (or join the next one)
        if key is None:
            return await self._collect(entries, everyone)
        flight = self._flights[key] = _Flight()
        try:
            flight.result = await self._collect(entries, everyone)
            return flight.result
        finally:
            del self._flights[key]
            flight.done.set()

    async def _collect(self, entries: Sequence[AgentEntry], everyone: bool) -> Collection:
        async with self._lock:
            deadline = self._clock() + self.timeout
            reports: list[Report] = []
            read = RegistryRead.unavailable(NO_LIAISON)
            used = ""

            async def lifecycle() -> None:
                reports.extend(await self.hub.collect_reports(
                    entries, LifecycleReportStream, timeout=self.timeout))

            async def registry() -> None:
                nonlocal read, used
                read, used = await self._read_registry(deadline)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(lifecycle)
                nursery.start_soon(registry)
            decoded = await self._decode(reports)
            answers = tuple(a for a in decoded if isinstance(a, merge.AgentLifecycle))
            failures = tuple((r.entry.agent_id, a) for r, a in zip(reports, decoded)
                             if isinstance(a, str))
            for agent_id, why in failures:
                log.info("agent %s gave no lifecycle data: %s", agent_id, why)
            summary = merge.AgentSummary(total=len(entries), requested=len(reports),
                                         responded=len(answers))
            asked = {r.entry.agent_id for r in reports}
            absent = tuple(e.agent_id for e in entries
                           if e.agent_id not in asked and self._missing(e))
            silent = [a for a, _ in failures] + list(absent)
            streaks = self._streaks
            # Pure, and a large cluster has tens of thousands of fingerprints: off the loop.
            verdicts = await trio.to_thread.run_sync(
                lambda: judge(read, merge.schema_reports(answers), silent=silent,
                              streaks=streaks))
            registered = {e.agent_id: e.registered_at for e in self.registry}
            self._answered.update((a.agent_id, registered[a.agent_id]) for a in answers
                                  if a.agent_id in registered)
            for agent_id in [a for a in self._answered if a not in registered]:
                del self._answered[agent_id]
            if everyone:
                self._streaks = verdicts.streaks
                self.latest = verdicts
                self.collections += 1
            return Collection(summary, answers, failures, absent, read, used, verdicts)

    async def schema_metrics(self, *, openmetrics: bool = False) -> str:
        """The schema gauges of the last unfiltered collection as exposition text (see
        `render_schema_metrics`).

        Made in a worker thread, once per collection and format, and reused by every scrape
        until the next collection: the gauges have five series per group, and a cluster (or one
        agent) with tens of thousands of groups takes seconds to render, which must not hold up
        the event loop at every scrape.
        """
        verdicts = self.latest
        if verdicts is None or not verdicts.groups:
            return ""
        async with self._rendering:
            done = self._rendered.get(openmetrics)
            if done is None or done[0] is not verdicts:
                text = await trio.to_thread.run_sync(
                    lambda: render_schema_metrics(verdicts, openmetrics=openmetrics))
                done = self._rendered[openmetrics] = (verdicts, text)
        return done[1]

    def _missing(self, entry: AgentEntry) -> bool:
        """`entry`, not asked this time, answered before: under the same registration (offline
        since, or its StreamLifecycle ended), or registered again so recently that its stream
        may still come (within the hub's attach grace)."""
        answered_under = self._answered.get(entry.agent_id)
        if answered_under is None:
            return False
        return (entry.registered_at == answered_under
                or self._clock() < entry.registered_at + self.hub.attach_grace)

    async def _decode(self, reports: Sequence[Report]) -> list[merge.AgentLifecycle | str]:
        """Each report decoded in a worker thread (at most DECODE_THREADS at once, so the event
        loop keeps its turns), or why there is none."""
        out: list[merge.AgentLifecycle | str] = [r.error or "no answer" for r in reports]

        async def one(i: int, decode: Callable[[], merge.AgentLifecycle]) -> None:
            try:
                out[i] = await trio.to_thread.run_sync(decode, limiter=self._decoding)
            except Exception as exc:  # a message that decodes as protobuf but not as data
                out[i] = f"malformed lifecycle reply: {exc}"
                log.warning("agent %s: %s", reports[i].entry.agent_id, out[i])

        async with trio.open_nursery() as nursery:
            for i, r in enumerate(reports):
                if r.report is not None:
                    nursery.start_soon(one, i, r.report)
        return out

    async def run_periodic(self, interval: float) -> None:
        """Collect over every agent every `interval` seconds (from the end of one collection to
        the start of the next) until cancelled: --lifecycle-interval."""
        while True:
            await trio.sleep(interval)
            result = await self.collect(self.hub.select(lambda meta: True), everyone=True,
                                        key=EVERYONE)
            log.debug("periodic lifecycle collection: %d of %d agents answered",
                      result.summary.responded, result.summary.requested)

    async def _read_registry(self, deadline: float) -> tuple[RegistryRead, str]:
        """The registry truth from the first liaison (in agent id order) that answers in full
        by `deadline`, and that liaison's agent id."""
        streams = _liaisons(self.registry)
        if not streams:
            return RegistryRead.unavailable(NO_LIAISON), ""
        last = ""
        asking = ""
        tried = 0
        with trio.move_on_at(deadline) as waited:
            for stream in streams:
                asking = stream.agent_id
                tried += 1
                try:
                    chunks = await stream.request(deadline)
                except AgentGone as exc:
                    last = f"agent {asking}: {exc}"
                    continue
                read = merge_registry_chunks(chunks)
                if read.fatal:
                    last = f"agent {asking} registry read failed: {read.fatal}"
                    continue
                return read, asking
        if waited.cancelled_caught:
            last = (f"agent {asking} sent no complete registry reply within "
                    f"--lifecycle-timeout={self.timeout:g}s")
        log.warning("schema registry unavailable: %s", last)
        on = f"all {tried}" if tried == len(streams) else f"{tried} of {len(streams)}"
        return RegistryRead.unavailable(
            f"schema registry read failed on {on} liaison agent(s): {last}"), ""


class _SchemaCollector:
    def __init__(self, verdicts: Verdicts) -> None:
        self._verdicts = verdicts

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        status = GaugeMetricFamily(
            "banyandb_fodc_schema_consistency_status",
            "Schema consistency verdict per group of the last lifecycle collection "
            "(1=CONSISTENT, 2=INCONSISTENT, 3=UNKNOWN).", labels=["group"])
        for group, value in sorted(self._verdicts.statuses().items()):
            status.add_metric([group], float(value))
        yield status
        issues = GaugeMetricFamily(
            "banyandb_fodc_schema_issues",
            "Schema issues per group and type reported by the last lifecycle collection.",
            labels=["group", "type"])
        for (group, kind), n in sorted(merge.issue_counts(self._verdicts).items()):
            issues.add_metric([group, kind], float(n))
        yield issues


def render_schema_metrics(verdicts: Verdicts | None, *, openmetrics: bool = False) -> str:
    """The schema gauges of the last unfiltered collection as exposition text ("" before one;
    OpenMetrics without its `# EOF`)."""
    if verdicts is None or not verdicts.groups:
        return ""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_SchemaCollector(verdicts))
    if openmetrics:
        text = generate_latest_om(reg).decode()
        return text[: -len("# EOF\n")] if text.endswith("# EOF\n") else text
    return generate_latest(reg).decode()
