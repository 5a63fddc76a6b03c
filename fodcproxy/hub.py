"""The Trio shell around the registry: agent sessions, lifecycle supervision and metrics fan-out.

The hub knows no transport: it talks to agents through the small protocol of `fodcproxy.link`
(implemented over gRPC in `fodcproxy.rpc.link`, in memory in `fodcproxy.testing.agentlink`), and
which reply answers which request is decided by the sans-IO `core.tracker`, one per stream
(`fodcproxy.streams`).

Who owns what:
- `AgentHub.run()` runs in the proxy's root nursery: the supervisor that applies heartbeat and
  cleanup timeouts (`Registry.expire(now)`) at the exact deadlines the registry names.
- An `AgentSession` is one connection's registration of one agent. It owns no tasks: each gRPC call
  (RegisterAgent, StreamMetrics) runs in its TCP connection's nursery and joins the session; when
  the last call of a session ends, the registry takes the agent offline (or removes it, after a
  goodbye). No polling: the end of a call *is* the event.
- Every per-agent stream joins its session through `AgentHub.bind()`, which accepts only calls of
  the connection whose RegisterAgent call registered the agent: an agent's id is public (`/sd`,
  `/cluster`), the connection is not. A live session `claim()`s its connection (the transport
  closes connections that carry no registered agent) and releases it when it ends. The stream
  objects (`MetricsStream`, ...) hang off the session (`AgentSession.streams`).
- `AgentHub.collect()` fans a request out to the selected agents in a nursery of its own, under
  one `trio.move_on_at(deadline)` for all of them. Callers that join a fan-out in flight (same
  `key`) wait for it under their own deadline.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

import attrs
import trio
from trio_util import RepeatedEvent

from fodcproxy.core.model import NodeMeta, TimeWindow
from fodcproxy.core.registry import (
    AgentEntry,
    AgentStatus,
    Change,
    ChangeKind,
    Registration,
    Registry,
)
from fodcproxy.errors import (
    FodcError,
    Goodbye,
    NotRegistered,
    PermissionDenied,
    Replaced,
    TakenOver,
)
from fodcproxy.link import AgentCall, AgentConnection, MetricsCall, RequestCall
from fodcproxy.metrics import ProxyMetrics
from fodcproxy.streams import (
    DIGESTS_PER_TURN,
    MAX_REPLY_BYTES,
    MAX_SAMPLES_PER_REPLY,
    AgentGone,
    MetricsStream,
    ReportStream,
    RequestStream,
)

__all__ = ["MAX_REPLY_BYTES", "MAX_SAMPLES_PER_REPLY", "AgentGone", "AgentHub", "AgentResult",
           "AgentSession", "Report"]

log = logging.getLogger(__name__)

# The fan-out starts this many requests per event-loop turn.
FAN_OUT_BATCH = 10

S = TypeVar("S", bound=RequestStream[Any, Any])


class AgentSession:
    """One live registration: the calls of one connection that speak for one agent.

    Its per-agent streams (`streams`, one per kind) hang off it; each is bound to `connection`.
    """

    def __init__(self, agent_id: str, register_call: AgentCall, registered_at: float) -> None:
        self.agent_id = agent_id
        self.register_call = register_call
        # Every other stream of this agent must come on this connection (see AgentHub.bind).
        self.connection: AgentConnection = register_call.connection
        self.registered_at = registered_at
        self.calls: set[AgentCall] = {register_call}
        self.streams: dict[type[RequestStream[Any, Any]], RequestStream[Any, Any]] = {}
        self.graceful = False

    def stream(self, kind: type[S]) -> S | None:
        """The attached stream of `kind`, if any."""
        return cast("S | None", self.streams.get(kind))

    @property
    def metrics_stream(self) -> MetricsStream | None:
        return self.stream(MetricsStream)

    def abort(self, error: FodcError) -> None:
        for call in list(self.calls):
            call.abort(error)

    def release(self) -> None:
        """The session is over (last call ended, taken over or removed): free its connection."""
        self.connection.release(self)


@attrs.frozen
class AgentResult:
    meta: NodeMeta
    samples: Sequence[Any]  # the digested samples when up (a Sequence of Sample), else []
    up: bool
    duration: float
    error: str = ""


@attrs.frozen
class Report:
    """One agent's answer to `AgentHub.collect_reports`: `report` as the transport decoded it,
    or None with the reason in `error`."""

    entry: AgentEntry
    report: Any
    error: str = ""


@attrs.define(eq=False)
class _FanOut:
    """One collection in flight; identical requests join it (`AgentHub.collect(key=...)`)."""

    entries: Sequence[AgentEntry]
    start: float
    results: list[AgentResult | None]
    done: trio.Event = attrs.field(factory=trio.Event)
    final: list[AgentResult] | None = None  # set when it completed (not cancelled)


class AgentHub:
    """The registry's Trio shell: sessions, per-agent streams, supervision and fan-out."""

    def __init__(self, registry: Registry, metrics: ProxyMetrics, *,
                 heartbeat_interval_seconds: int, attach_grace: float = 2.0,
                 max_reply_bytes: int = MAX_REPLY_BYTES,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.registry = registry
        self.metrics = metrics
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.attach_grace = attach_grace
        self.max_reply_bytes = max_reply_bytes
        self._clock = clock
        self.sessions: dict[str, AgentSession] = {}
        self._changed = RepeatedEvent()  # the registry's next deadline may have moved
        self._registered = RepeatedEvent()  # wakes streams waiting for their registration
        self._attached = RepeatedEvent()  # wakes requests waiting for a stream to attach
        self._inflight: dict[Any, _FanOut] = {}
        self._digesting = trio.CapacityLimiter(DIGESTS_PER_TURN)

    # -- supervision ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply heartbeat and cleanup timeouts at the deadlines the registry names. Runs forever."""
        task_status.started()
        while True:
            deadline = self.registry.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await self._changed.wait()
            self._apply(self.registry.expire(self._clock()))

    def _apply(self, changes: Sequence[Change]) -> None:
        for ch in changes:
            if ch.kind is not ChangeKind.REGISTERED:  # register() logs that with more detail
                log.info("agent %s %s (%s)", ch.agent_id, ch.kind.value, ch.reason)
            self.metrics.lifecycle(ch.kind.value)
            if ch.kind is ChangeKind.REMOVED:
                session = self.sessions.get(ch.agent_id)
                if session is not None and (ch.owner is None or ch.owner is session):
                    del self.sessions[ch.agent_id]
                    session.abort(NotRegistered(
                        f"agent {ch.agent_id} was unregistered ({ch.reason})"))
                    session.release()

    def remove(self, agent_id: str, *, reason: str) -> bool:
        """Unregister `agent_id` now (DELETE /cluster/nodes/{id}); its open streams end with
        FAILED_PRECONDITION naming `reason`. Returns False when there is no such agent."""
        changes = self.registry.remove(agent_id, reason=reason)
        self._apply(changes)
        self._changed.set()
        return bool(changes)

    # -- registration stream -------------------------------------------------------------------

    def register(self, reg: Registration, call: AgentCall) -> AgentSession:
        """Register the identity in `reg` for the connection of `call`.

        The session claims `call.connection` until it ends. A live session of the same identity
        is taken over: its calls end with ABORTED.

        Raises:
            LimitExceeded: --max-agents reached.
        """
        agent_id = reg.identity.agent_id
        now = self._clock()
        session = AgentSession(agent_id, call, now)
        try:
            result = self.registry.register(reg, owner=session, now=now)
        except Exception:
            self.metrics.refusal("max_agents")
            raise
        session.connection.claim(session)  # before the old one releases: same connection, maybe
        old = result.displaced
        if isinstance(old, AgentSession):
            log.info("agent %s: taken over by a new registration from %s (was %s)", agent_id,
                     call.peer, old.connection.peer)
            self.metrics.takeover()
            old.abort(TakenOver(
                f"agent {agent_id} was registered again by another connection ({call.peer})"))
            old.release()
        if result.evicted is not None:
            log.info("agent %s: its --max-agents slot went to %s (it was offline and never "
                     "carried a metrics stream)", result.evicted, agent_id)
        self.sessions[agent_id] = session
        self.metrics.registration()
        self._apply(result.changes)
        self._changed.set()
        self._registered.set()
        log.info("agent %s registered from %s (%s, role %s)", agent_id, call.peer,
                 reg.identity.describe(), reg.role)
        return session

    def refuse(self, reason: str) -> None:
        self.registry.refuse()
        self.metrics.refusal(reason)

    def heartbeat(self, session: AgentSession, reg: Registration) -> None:
        """Raises IdentityChanged when `reg` is another identity."""
        self._apply(self.registry.heartbeat(session.agent_id, reg, owner=session, now=self._clock()))

    def goodbye(self, session: AgentSession) -> None:
        """The agent closed its registration stream cleanly: remove it now, end its other calls."""
        session.graceful = True
        for call in list(session.calls):
            if call is not session.register_call:
                call.abort(Goodbye("goodbye"))

    def call_ended(self, session: AgentSession, call: AgentCall) -> None:
        """A call of `session` ended; when it was the last one, the agent is offline or gone."""
        session.calls.discard(call)
        for kind, stream in list(session.streams.items()):
            if stream.call is call:
                del session.streams[kind]
                stream.end(f"the agent's {call.method.rsplit('/', 1)[-1]} stream ended")
        if session.calls:
            return
        changes = self.registry.disconnect(session.agent_id, owner=session, now=self._clock(),
                                           graceful=session.graceful)
        if self.sessions.get(session.agent_id) is session:
            del self.sessions[session.agent_id]
        session.release()
        self._apply(changes)
        self._changed.set()

    # -- per-agent streams ---------------------------------------------------------------------

    async def bind(self, agent_id: str, call: AgentCall) -> AgentSession:
        """Join `call` (a per-agent stream) to the live session of `agent_id` on its connection.

        Only a registration made on `call.connection` qualifies: a stream naming an agent that
        another connection registered is refused, never attached, and the other session is left
        untouched. Waits up to `attach_grace` for a registration on this connection that is
        still being processed. On success `call` is one of the session's calls: the caller must
        call `call_ended(session, call)` when it ends.

        Raises:
            PermissionDenied: the agent is registered by another connection.
            NotRegistered: no live registration of that agent.
        """
        connection = call.connection

        def ours() -> AgentSession | None:
            s = self.sessions.get(agent_id)
            return s if s is not None and s.connection is connection else None

        session = ours()
        if session is None:
            with trio.move_on_after(self.attach_grace):
                while (session := ours()) is None:
                    await self._registered.wait()
        if session is None:
            other = self.sessions.get(agent_id)
            if other is not None:
                self.metrics.refusal("other_connection")
                log.warning("%s from %s refused: it names agent %r, which the connection from %s "
                            "registered", call.method, call.peer, agent_id[:128],
                            other.connection.peer)
                raise PermissionDenied(
                    f"agent_id {agent_id[:128]!r} was registered by another connection: open this "
                    "stream on the connection whose RegisterAgent call returned that agent_id")
            entry = self.registry.get(agent_id)
            state = "offline" if entry is not None else "not registered"
            self.metrics.refusal("unknown_agent")
            raise NotRegistered(
                f"agent_id {agent_id[:128]!r} is {state}: open RegisterAgent first and use the "
                "agent_id it returns"
            )
        session.calls.add(call)
        return session

    def _attach(self, session: AgentSession, stream: RequestStream[Any, Any]) -> None:
        """`stream` becomes the session's stream of its kind; the previous one is replaced."""
        kind = type(stream)
        old = session.streams.get(kind)
        if old is not None:
            old.call.abort(Replaced(
                f"replaced by a newer {stream.call.method.rsplit('/', 1)[-1]} call of the same agent"))
            session.calls.discard(old.call)
            old.end(f"the {old.call.method.rsplit('/', 1)[-1]} stream was replaced")
        session.streams[kind] = stream
        self._attached.set()

    async def attach_metrics(self, agent_id: str, call: MetricsCall) -> MetricsStream:
        """Bind a StreamMetrics call (see `bind`); it replaces the session's previous one.

        Returns the stream: feed it the call's replies (`on_reply`), and call
        `call_ended(stream.session, call)` when the call ends.

        Raises:
            PermissionDenied: the agent is registered by another connection.
            NotRegistered: no live registration of that agent.
        """
        session = await self.bind(agent_id, call)
        stream = MetricsStream(session, call, metrics=self.metrics, digesting=self._digesting,
                               max_reply_bytes=self.max_reply_bytes, clock=self._clock)
        self._attach(session, stream)
        self.registry.metrics_attached(agent_id, owner=session)
        return stream

    async def attach(self, agent_id: str, call: RequestCall, kind: type[S]) -> S:
        """Bind one of a pod agent's other streams (topology, lifecycle, ...) as a stream of
        `kind`, replacing the session's previous one of that kind (see `bind`).

        Returns the stream: feed it the call's replies, and call `call_ended(stream.session,
        call)` when the call ends.

        Raises:
            PermissionDenied: the agent is registered by another connection.
            NotRegistered: no live registration of that agent.
        """
        session = await self.bind(agent_id, call)
        stream = kind(session, call, clock=self._clock)
        self._attach(session, stream)
        return stream

    async def collect_reports(self, entries: Sequence[AgentEntry], kind: type[ReportStream], *,
                              timeout: float) -> list[Report]:
        """Ask every entry that holds a stream of `kind` for its report, under one deadline.

        Entries without such a stream (address agents, pod agents that did not open it, offline
        ones) are left out; an agent that fails or misses the deadline comes back with `report`
        None and the reason.
        """
        start = self._clock()
        deadline = start + timeout
        asked: list[tuple[AgentEntry, ReportStream]] = []
        for entry in entries:
            session = entry.owner
            if entry.status is AgentStatus.ONLINE and isinstance(session, AgentSession):
                stream = session.stream(kind)
                if stream is not None:
                    asked.append((entry, stream))
        results: list[Report | None] = [None] * len(asked)

        async def one(i: int, entry: AgentEntry, stream: ReportStream) -> None:
            try:
                results[i] = Report(entry, await stream.request(deadline), "")
            except AgentGone as exc:
                results[i] = Report(entry, None, str(exc))

        with trio.move_on_at(deadline):
            async with trio.open_nursery() as nursery:
                for i, (entry, stream) in enumerate(asked):
                    nursery.start_soon(one, i, entry, stream)
        return [r if r is not None else Report(entry, None, "missed the deadline")
                for r, (entry, _) in zip(results, asked)]

    # -- fan-out -------------------------------------------------------------------------------

    def select(self, predicate: Callable[[NodeMeta], bool]) -> list[AgentEntry]:
        entries = [e for e in self.registry if predicate(e.meta)]
        entries.sort(key=lambda e: (e.role, e.meta.ip, e.meta.port, e.meta.pod_name, e.agent_id))
        return entries

    async def collect(self, entries: Sequence[AgentEntry], window: TimeWindow, *,
                      timeout: float, key: Any = None) -> list[AgentResult]:
        """Ask every entry for `window`; answer within `timeout` seconds whatever happens.

        Agents that are offline, have no metrics stream, fail or miss the deadline come back with
        up=False. Concurrent calls with the same `key` (not None) share one fan-out: a call that
        joins one in flight still answers by its own deadline (agents still pending then are
        up=False in its answer) while the fan-out goes on for the call that started it.
        """
        start = self._clock()
        deadline = start + timeout
        if key is not None:
            running = self._inflight.get(key)
            if running is not None:
                self.metrics.shared_collect()
                with trio.move_on_at(deadline):
                    await running.done.wait()
                if running.final is not None:
                    return running.final
                if not running.done.is_set():
                    return self._settle(running, self._clock())  # our deadline came first
                # The fan-out we joined was cancelled: do our own in the time left.
                return await self.collect(entries, window,
                                          timeout=max(0.0, deadline - self._clock()))
        fan = _FanOut(entries, start, [None] * len(entries))
        if key is not None:
            self._inflight[key] = fan
        try:
            # One deadline for the whole fan-out (not one cancel scope per agent: at 1,000 agents
            # those are thousands of objects per scrape); an agent whose result is missing when
            # it passes missed it.
            with trio.move_on_at(deadline):
                async with trio.open_nursery() as nursery:
                    for i, entry in enumerate(entries):
                        nursery.start_soon(self._collect_one, entry, window, deadline,
                                           fan.results, i)
                        if i % FAN_OUT_BATCH == FAN_OUT_BATCH - 1:
                            # Each request costs ~0.3 ms to send: started all at once, 1,000 of
                            # them would hold the event loop (and every /health) for long.
                            await trio.lowlevel.checkpoint()
            now = self._clock()
            done = self._settle(fan, now)
            self.metrics.collect_finished(now - start, done)
            fan.final = done
            return done
        finally:
            if key is not None:
                del self._inflight[key]
            fan.done.set()

    def _settle(self, fan: _FanOut, now: float) -> list[AgentResult]:
        """The fan-out's results at `now`: an agent still pending missed the deadline."""
        elapsed = now - fan.start
        done = []
        for entry, result in zip(fan.entries, fan.results):
            if result is None:
                log.debug("agent %s: collection failed: missed the deadline", entry.agent_id)
                result = AgentResult(entry.meta, [], False, elapsed, "missed the deadline")
            done.append(result)
        return done

    async def _collect_one(self, entry: AgentEntry, window: TimeWindow, deadline: float,
                           results: list[AgentResult | None], i: int) -> None:
        """Fill results[i]; cancelled at the fan-out's deadline (results[i] is then left None)."""
        start = self._clock()
        session = entry.owner  # the registry's owner of a live entry is its session
        if entry.status is not AgentStatus.ONLINE or not isinstance(session, AgentSession):
            results[i] = AgentResult(entry.meta, [], False, 0.0, "offline")
            return
        samples: Sequence[Any] = []
        error = ""
        try:
            stream = session.metrics_stream
            if stream is None:
                stream = await self._wait_attached(session, start)
            samples = await stream.request(window, deadline)
        except AgentGone as exc:
            error = str(exc)
            log.debug("agent %s: collection failed: %s", entry.agent_id, error)
        results[i] = AgentResult(entry.meta, samples if not error else [], not error,
                                 self._clock() - start, error)

    async def _wait_attached(self, session: AgentSession, now: float) -> MetricsStream:
        """The session's metrics stream, waiting for it until `attach_grace` after registration.

        Raises:
            AgentGone: no metrics stream by then (at once when the grace is over).
        """
        grace_end = session.registered_at + self.attach_grace
        if now < grace_end:
            with trio.move_on_at(grace_end):
                while (stream := session.metrics_stream) is None:
                    await self._attached.wait()
                return stream
        raise AgentGone(f"no metrics stream (none attached within {self.attach_grace:g}s of "
                        "registering)")
