"""The Trio shell around the registry: agent sessions, lifecycle supervision and metrics fan-out.

Who owns what:
- `AgentHub.run()` runs in the proxy's root nursery: the supervisor that applies heartbeat and
  cleanup timeouts (`Registry.expire(now)`) at the exact deadlines the registry names.
- An `AgentSession` is one connection's registration of one agent. It owns no tasks: each gRPC call
  (RegisterAgent, StreamMetrics) runs in its TCP connection's nursery and joins the session; when
  the last call of a session ends, the registry takes the agent offline (or removes it, after a
  goodbye). No polling: the end of a call *is* the event.
- `AgentHub.collect()` fans a request out to the selected agents in a nursery of its own, each
  under `trio.move_on_at(deadline)`.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from fodcproxy.core.model import NodeMeta, TimeWindow
from fodcproxy.core.registry import (
    AgentEntry,
    AgentStatus,
    Change,
    ChangeKind,
    Registration,
    Registry,
)
from fodcproxy.core.series import DigestedSamples
from fodcproxy.errors import GrpcCode, InvalidArgument, NotRegistered
from fodcproxy.metrics import ProxyMetrics
from fodcproxy.rpc import convert
from fodcproxy.rpc.replies import Interner, SampleLimitExceeded, SeriesTable
from fodcproxy.rpc.server import CallClosed, ServerCall

log = logging.getLogger(__name__)

# A reply larger than this many samples (over all its chunks) is refused: it protects the proxy.
MAX_SAMPLES_PER_REPLY = 2_000_000
# The fan-out starts this many requests per event-loop turn.
FAN_OUT_BATCH = 10
# A reply chunk is digested this many metrics per event-loop turn.
DIGEST_SLICE = 100
# ... and at most this many slices (of all agents) per turn.
DIGESTS_PER_TURN = 4


class AgentGone(Exception):
    """The agent's metrics stream ended while a request waited for it."""


@attrs.define(eq=False)
class _Pending:
    request_id: int
    window: TimeWindow
    done: trio.Event = attrs.field(factory=trio.Event)
    samples: DigestedSamples = attrs.field(factory=DigestedSamples)
    error: str | None = None


@attrs.define(eq=False)
class _Shared:
    done: trio.Event = attrs.field(factory=trio.Event)
    results: list[AgentResult] | None = None


class AgentSession:
    """One live registration: the calls of one connection that speak for one agent."""

    def __init__(self, agent_id: str, register_call: ServerCall, *,
                 interner: Interner | None = None) -> None:
        self.agent_id = agent_id
        self.register_call = register_call
        self.calls: set[ServerCall] = {register_call}
        self.metrics_call: ServerCall | None = None
        # Set once the first StreamMetrics call attaches: a request to a session that is still
        # opening its metrics stream waits for it (within its deadline) instead of failing.
        self.attached = trio.Event()
        self.graceful = False
        self.lock = trio.Lock()  # one outstanding request per agent
        self.pending: _Pending | None = None
        # This connection's series, kept across its replies; strings shared with the proxy's
        # other agents through `interner`.
        self.table = SeriesTable(interner=interner)
        self.unanswered = 0  # timed-out requests whose id-0 replies may still come
        self.digesting: _Pending | None = None  # the request a reply chunk is being digested for
        self.ended_while_digesting: str | None = None

    def abort(self, code: GrpcCode, message: str) -> None:
        for call in list(self.calls):
            call.abort(code, message)

    def _fail_pending(self, why: str) -> None:
        p = self.pending
        if p is not None and not p.done.is_set():
            if self.digesting is p:
                self.ended_while_digesting = why  # on_reply decides, once the chunk is in
                return
            p.error = why
            p.done.set()


@attrs.frozen
class AgentResult:
    meta: NodeMeta
    samples: Sequence[Any]  # DigestedSamples when up (a Sequence of Sample), else []
    up: bool
    duration: float
    error: str = ""


class AgentHub:
    def __init__(self, registry: Registry, metrics: ProxyMetrics, *,
                 heartbeat_interval_seconds: int, attach_grace: float = 2.0,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.registry = registry
        self.metrics = metrics
        self.heartbeat_interval_seconds = heartbeat_interval_seconds
        self.attach_grace = attach_grace
        self._clock = clock
        self.sessions: dict[str, AgentSession] = {}
        self._changed = trio.Event()
        self._registered = trio.Event()  # wakes StreamMetrics calls waiting for a registration
        self._ids = itertools.count(1)
        self._inflight: dict[Any, _Shared] = {}
        self._digesting = trio.CapacityLimiter(DIGESTS_PER_TURN)
        self.interner = Interner()  # strings the series of this proxy's agents share

    # -- supervision ---------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply heartbeat and cleanup timeouts at the deadlines the registry names. Runs forever."""
        task_status.started()
        while True:
            deadline = self.registry.next_deadline()
            with trio.move_on_at(deadline if deadline is not None else math.inf):
                await self._changed.wait()
            self._changed = trio.Event()
            self._apply(self.registry.expire(self._clock()))

    def _wake(self) -> None:
        self._changed.set()

    def _apply(self, changes: Sequence[Change]) -> None:
        for ch in changes:
            if ch.kind is not ChangeKind.REGISTERED:  # register() logs that with more detail
                log.info("agent %s %s (%s)", ch.agent_id, ch.kind.value, ch.reason)
            self.metrics.lifecycle(ch.kind.value)
            if ch.kind is ChangeKind.REMOVED:
                session = self.sessions.get(ch.agent_id)
                if session is not None and (ch.owner is None or ch.owner is session):
                    del self.sessions[ch.agent_id]
                    session.abort(GrpcCode.FAILED_PRECONDITION,
                                  f"agent {ch.agent_id} was unregistered ({ch.reason})")

    # -- registration stream -------------------------------------------------------------------

    def register(self, reg: Registration, call: ServerCall) -> AgentSession:
        """Register the identity in `reg` for the connection of `call`.

        Raises:
            LimitExceeded: --max-agents reached.
        """
        agent_id = reg.identity.agent_id
        session = AgentSession(agent_id, call, interner=self.interner)
        try:
            result = self.registry.register(reg, owner=session, now=self._clock())
        except Exception:
            self.metrics.refusal("max_agents")
            raise
        old = result.displaced
        if isinstance(old, AgentSession):
            log.info("agent %s: taken over by a new connection from %s", agent_id, call.peer)
            old.abort(GrpcCode.ABORTED,
                      f"agent {agent_id} was registered again by another connection ({call.peer})")
        self.sessions[agent_id] = session
        self.metrics.registration()
        self._apply(result.changes)
        self._wake()
        self._registered.set()
        self._registered = trio.Event()
        log.info("agent %s registered from %s (%s %s)", agent_id, call.peer, reg.identity.role,
                 reg.identity.address)
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
                call.abort(GrpcCode.OK, "goodbye")

    def call_ended(self, session: AgentSession, call: ServerCall) -> None:
        """A call of `session` ended; when it was the last one, the agent is offline or gone."""
        session.calls.discard(call)
        if call is session.metrics_call:
            session.metrics_call = None
            session._fail_pending("the agent's metrics stream ended")
        if session.calls:
            return
        changes = self.registry.disconnect(session.agent_id, owner=session, now=self._clock(),
                                           graceful=session.graceful)
        if self.sessions.get(session.agent_id) is session:
            del self.sessions[session.agent_id]
        self._apply(changes)
        self._wake()

    # -- metrics stream ------------------------------------------------------------------------

    async def attach_metrics(self, agent_id: str, call: ServerCall) -> AgentSession:
        """Attach a StreamMetrics call to the live session of `agent_id`.

        Waits up to `attach_grace` for a registration that is still being processed.

        Raises:
            NotRegistered: no live registration of that agent.
        """
        with trio.move_on_after(self.attach_grace):
            while agent_id not in self.sessions:
                await self._registered.wait()
        session = self.sessions.get(agent_id)
        if session is None:
            entry = self.registry.get(agent_id)
            state = "offline" if entry is not None else "not registered"
            self.metrics.refusal("unknown_agent")
            raise NotRegistered(
                f"agent_id {agent_id[:128]!r} is {state}: open RegisterAgent first and use the "
                "agent_id it returns"
            )
        old = session.metrics_call
        if old is not None:
            old.abort(GrpcCode.ABORTED, "replaced by a newer StreamMetrics call of the same agent")
            session.calls.discard(old)
            session._fail_pending("the metrics stream was replaced")
        session.metrics_call = call
        session.calls.add(call)
        session.attached.set()
        return session

    async def on_reply(self, session: AgentSession, msg: Any) -> None:
        """Route one StreamMetricsRequest chunk to the request it answers; drop late ones.

        Raises:
            InvalidArgument: a metric of the chunk does not decode.
        """
        p = session.pending
        rid = msg.request_id
        if rid == 0 and session.unanswered > 0:
            # An agent built from the seed's proto does not echo ids: the first id-0 reply after a
            # timed-out request is that request's, late.
            if not msg.more:
                session.unanswered -= 1
                self.metrics.dropped_reply()
            return
        target = p if p is not None and (rid == 0 or rid == p.request_id) else None
        if target is None or target.done.is_set():
            if not msg.more:
                self.metrics.dropped_reply()
                log.debug("agent %s: dropped a late reply to request %s", session.agent_id, rid)
            return
        # Digested as it arrives (see rpc/replies.py): the fan-out waits for the slowest agent
        # anyway, and what is left for the renderer is mostly writing values. A big chunk goes
        # in slices, a few per turn of the event loop whatever the number of agents answering
        # at once, so /health (and everything else) keeps getting its turns. A chunk being
        # digested still counts if the stream ends meanwhile (an agent that answers and leaves).
        metrics = msg.metrics
        n = len(metrics)
        table = session.table
        session.digesting = target
        try:
            # Shielded: a goodbye right after the reply aborts this call, and the chunk it
            # already sent must count. A chunk is at most --grpc-max-msg-size: milliseconds.
            with trio.CancelScope(shield=True):
                for start in range(0, n, DIGEST_SLICE):
                    if start:
                        async with self._digesting:  # held over a checkpoint: a few per turn
                            await trio.lowlevel.checkpoint()
                        if session.pending is not target:
                            return  # the request gave up meanwhile
                    table.digest(metrics[start : start + DIGEST_SLICE] if n > DIGEST_SLICE
                                 else metrics, target.samples)
            if len(target.samples) > MAX_SAMPLES_PER_REPLY:
                target.samples = DigestedSamples()
                table.abandon()
                target.error = f"reply over {MAX_SAMPLES_PER_REPLY} samples"
                target.done.set()
            elif not msg.more:
                table.finish()
                target.done.set()
        except SampleLimitExceeded as exc:
            # Refuse this reply (the agent shows up 0), keep the stream: the next may be fine.
            table.abandon()
            target.samples = DigestedSamples()
            target.error = exc.message
            target.done.set()
            self.metrics.refusal("sample_limit")
            log.warning("agent %s: reply refused: %s", session.agent_id, exc.message)
        except InvalidArgument:
            table.abandon()
            raise
        finally:
            session.digesting = None
            why, session.ended_while_digesting = session.ended_while_digesting, None
            if why is not None and not target.done.is_set():
                target.error = why  # more chunks were to come, and will not
                target.done.set()

    async def _request(self, session: AgentSession, window: TimeWindow) -> DigestedSamples:
        if not session.attached.is_set():
            await session.attached.wait()
        call = session.metrics_call
        if call is None:
            raise AgentGone("the agent's metrics stream has ended")
        p = _Pending(next(self._ids), window, samples=session.table.samples(window))
        session.pending = p
        session.table.abandon()  # whatever part of an earlier reply it holds is not this one's
        try:
            try:
                await call.send(convert.window_to_proto(window, p.request_id))
            except CallClosed as exc:
                raise AgentGone(str(exc)) from None
            await p.done.wait()
            if p.error is not None:
                raise AgentGone(p.error)
            return p.samples
        finally:
            if session.pending is p:
                session.pending = None
            if not p.done.is_set():
                session.unanswered += 1

    # -- fan-out -------------------------------------------------------------------------------

    def select(self, predicate: Callable[[NodeMeta], bool]) -> list[AgentEntry]:
        entries = [e for e in self.registry if predicate(e.meta)]
        entries.sort(key=lambda e: (e.identity.role, e.identity.ip, e.identity.port, e.agent_id))
        return entries

    async def collect(self, entries: Sequence[AgentEntry], window: TimeWindow, *,
                      timeout: float, key: Any = None) -> list[AgentResult]:
        """Ask every entry for `window`; answer within `timeout` seconds whatever happens.

        Agents that are offline, have no metrics stream, fail or miss the deadline come back with
        up=False. Concurrent calls with the same `key` (not None) share one fan-out.
        """
        if key is not None:
            running = self._inflight.get(key)
            if running is not None:
                self.metrics.shared_collect()
                await running.done.wait()
                if running.results is not None:
                    return running.results
                # The fan-out we waited for was cancelled: do our own.
                return await self.collect(entries, window, timeout=timeout)
        shared = _Shared()
        if key is not None:
            self._inflight[key] = shared
        start = self._clock()
        deadline = start + timeout
        results: list[AgentResult | None] = [None] * len(entries)
        try:
            # One deadline for the whole fan-out (not one cancel scope per agent: at 1,000 agents
            # those are thousands of objects per scrape); an agent whose result is missing when
            # it passes missed it.
            with trio.move_on_at(deadline):
                async with trio.open_nursery() as nursery:
                    for i, entry in enumerate(entries):
                        nursery.start_soon(self._collect_one, entry, window, results, i)
                        if i % FAN_OUT_BATCH == FAN_OUT_BATCH - 1:
                            # Each request costs ~0.3 ms to send: started all at once, 1,000 of
                            # them would hold the event loop (and every /health) for long.
                            await trio.lowlevel.checkpoint()
            elapsed = self._clock() - start
            done = []
            for entry, result in zip(entries, results):
                if result is None:
                    offline = (entry.status is not AgentStatus.ONLINE
                               or entry.agent_id not in self.sessions)
                    error = "offline" if offline else "missed the deadline"
                    log.debug("agent %s: collection failed: %s", entry.agent_id, error)
                    result = AgentResult(entry.meta, [], False, 0.0 if offline else elapsed,
                                         error)
                done.append(result)
            self.metrics.collect_finished(elapsed, done)
            if key is not None:
                shared.results = done
            return done
        finally:
            if key is not None:
                del self._inflight[key]
                shared.done.set()

    async def _collect_one(self, entry: AgentEntry, window: TimeWindow,
                           results: list[AgentResult | None], i: int) -> None:
        """Fill results[i]; cancelled at the fan-out's deadline (results[i] is then left None)."""
        meta = entry.meta
        start = self._clock()
        session = self.sessions.get(entry.agent_id)
        if entry.status is not AgentStatus.ONLINE or session is None:
            results[i] = AgentResult(meta, [], False, 0.0, "offline")
            return
        samples: Sequence[Any] = []
        error = ""
        try:
            async with session.lock:
                samples = await self._request(session, window)
        except AgentGone as exc:
            error = str(exc)
            log.debug("agent %s: collection failed: %s", entry.agent_id, error)
        results[i] = AgentResult(meta, samples if not error else [], not error,
                                 self._clock() - start, error)
