"""Per-agent request/response streams, the hub's side: a Trio shell around `core.tracker`.

A `RequestStream` is one attached call of one agent (it hangs off the agent's `AgentSession`). It
sends one request at a time (a `trio.Lock`), waits for its reply and lets its `RequestTracker`
decide where every reply chunk goes. It owns no task: requests are awaited by the fan-out's tasks,
replies are fed by the call's handler (`on_reply`), and the call's end is reported with `end()`.
Its waiter never sets a deadline of its own: the caller's cancel scope does (the fan-out has one
for all agents), and a waiter that is cancelled expires its request in the tracker, so its reply,
when it comes, is dropped and counted.

`MetricsStream` is the StreamMetrics one, `TopologyStream` the StreamClusterTopology one; the other
stream kinds subclass these in the units that use them (`fodcproxy.lifecycle`,
`fodcproxy.diagnostics`): what a request carries, what a reply accumulates into.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from fodcproxy.core.model import TimeWindow
from fodcproxy.core.tracker import RequestTracker, Verdict
from fodcproxy.errors import InvalidArgument, LimitExceeded
from fodcproxy.link import AgentCall, MetricsCall, RequestCall, StreamClosed
from fodcproxy.metrics import ProxyMetrics

if TYPE_CHECKING:
    from fodcproxy.hub import AgentSession

log = logging.getLogger(__name__)

# A reply larger than this many samples (over all its chunks) is refused: it protects the proxy.
MAX_SAMPLES_PER_REPLY = 2_000_000
# Default of --max-reply-bytes: the serialized chunks of one reply, summed. A typical Metric with a
# handful of labels is ~100-150 bytes, so an honest reply meets MAX_SAMPLES_PER_REPLY first.
MAX_REPLY_BYTES = 256 * 1024 * 1024
# A reply chunk is digested this many metrics per event-loop turn.
DIGEST_SLICE = 100
# ... and at most this many slices (of all agents) per turn.
DIGESTS_PER_TURN = 4

C = TypeVar("C", bound=AgentCall)
R = TypeVar("R")


class AgentGone(Exception):
    """A request got no answer: the stream ended, or the reply was refused. Says why."""


class _Waiter(Generic[R]):
    """The open request of a stream, as its waiting task sees it."""

    __slots__ = ("request_id", "result", "done", "error", "size", "gave_up")

    def __init__(self, request_id: int, result: R) -> None:
        self.request_id = request_id
        self.result = result
        self.done = trio.Event()
        self.error: str | None = None
        self.size = 0  # bytes of the reply's chunks so far
        self.gave_up = False

    @property
    def over(self) -> bool:
        return self.gave_up or self.done.is_set()

    def fail(self, why: str) -> None:
        if not self.done.is_set():
            self.error = why
            self.done.set()


class RequestStream(Generic[C, R]):
    """One attached request/response call of an agent. Subclasses say what a request sends
    (`_send`) and what its reply accumulates into (`_new_result`)."""

    def __init__(self, session: AgentSession, call: C, *,
                 clock: Callable[[], float] = trio.current_time) -> None:
        self.session = session
        self.call = call
        self.tracker = RequestTracker()
        self._clock = clock
        self._lock = trio.Lock()  # one outstanding request per agent and stream (SPEC section 3)
        self._waiter: _Waiter[R] | None = None
        self._ended: str | None = None

    @property
    def agent_id(self) -> str:
        return self.session.agent_id

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def _new_result(self, payload: Any) -> R:
        raise NotImplementedError

    async def _send(self, request_id: int, payload: Any) -> None:
        raise NotImplementedError

    async def _ask(self, payload: Any, key: Hashable, deadline: float) -> R:
        """Send `payload` and wait for its reply until the caller's cancel scope ends the wait.

        `deadline` (the caller's) is the request's deadline in the tracker: a reply completed at
        or after it is late.

        Raises:
            AgentGone: the stream ended or the reply was refused.
        """
        async with self._lock:
            if self._ended is not None:
                raise AgentGone(self._ended)
            tracker = self.tracker
            w = _Waiter(tracker.begin(self._clock(), deadline, key), self._new_result(payload))
            self._waiter = w
            try:
                try:
                    await self._send(w.request_id, payload)
                except StreamClosed as exc:
                    raise AgentGone(str(exc)) from None
                await w.done.wait()
            finally:
                if self._waiter is w:
                    self._waiter = None
                if not w.done.is_set():
                    w.gave_up = True
                    tracker.expire(w.request_id)
            if w.error is not None:
                raise AgentGone(w.error)
            return w.result

    def end(self, why: str) -> None:
        """The call is over: a request waiting for its reply fails with `why` at once.

        A reply whose last chunk has arrived is no longer waiting: it still counts once digested.
        """
        if self._ended is None:
            self._ended = why
        open_request = self.tracker.on_stream_end()
        w = self._waiter
        if w is not None and w.request_id == open_request:
            w.fail(why)

    def _route(self, request_id: int, more: bool) -> tuple[Verdict, _Waiter[R] | None]:
        """The tracker's verdict on a chunk, and the waiter it is for (when wanted)."""
        verdict = self.tracker.on_reply(request_id, more, self._clock())
        if verdict.wanted:
            return verdict, self._waiter
        if verdict is Verdict.LATE:
            self._dropped(request_id)
        return verdict, None

    def _dropped(self, request_id: int) -> None:
        log.debug("agent %s: dropped a reply nobody waits for (request id %s)", self.agent_id,
                  request_id)


class MetricsStream(RequestStream[MetricsCall, Any]):
    """StreamMetrics: asks for a window, digests the reply's chunks as they arrive."""

    def __init__(self, session: AgentSession, call: MetricsCall, *, metrics: ProxyMetrics,
                 digesting: trio.CapacityLimiter, max_reply_bytes: int = MAX_REPLY_BYTES,
                 clock: Callable[[], float] = trio.current_time) -> None:
        super().__init__(session, call, clock=clock)
        self._metrics = metrics
        self._digesting = digesting
        self.max_reply_bytes = max_reply_bytes

    def _new_result(self, payload: Any) -> Any:
        digester = self.call.digester
        samples = digester.samples(payload)  # the window: the reply is kept to what it asks
        digester.abandon()  # whatever part of an earlier reply it holds is not this one's
        return samples

    async def _send(self, request_id: int, payload: Any) -> None:
        await self.call.send_request(request_id, payload)

    async def request(self, window: TimeWindow, deadline: float) -> Any:
        """The agent's samples for `window` (a Sequence of Sample), answered by `deadline`.

        The wait ends with the caller's cancel scope; the deadline tells the tracker.

        Raises:
            AgentGone: the stream ended or the reply was refused (the message says why).
        """
        return await self._ask(window, window, deadline)

    def _dropped(self, request_id: int) -> None:
        self._metrics.dropped_reply()
        super()._dropped(request_id)

    def _refuse(self, w: _Waiter[Any], reason: str | None, message: str) -> None:
        """Refuse this reply only (the agent shows up 0); the stream stays for the next one."""
        self.tracker.expire(w.request_id)  # its later chunks are dropped
        self.call.digester.abandon()
        w.fail(message)
        if reason is not None:
            self._metrics.refusal(reason)
            log.warning("agent %s: reply refused: %s", self.agent_id, message)

    async def on_reply(self, request_id: int, more: bool, size: int, items: Any) -> None:
        """One StreamMetricsRequest chunk: `size` serialized bytes, its `items` (metrics).

        Raises:
            InvalidArgument: a metric of the chunk does not decode.
        """
        verdict, w = self._route(request_id, more)
        if w is None:
            return
        w.size += size
        if w.size > self.max_reply_bytes:
            self._refuse(w, "reply_bytes", f"reply over --max-reply-bytes={self.max_reply_bytes} bytes")
            return
        # Digested as it arrives (see rpc/replies.py): the fan-out waits for the slowest agent
        # anyway, and what is left for the renderer is mostly writing values. A big chunk goes in
        # slices, a few per turn of the event loop whatever the number of agents answering at
        # once, so /health (and everything else) keeps getting its turns.
        digester = self.call.digester
        n = len(items)
        try:
            # Shielded: a goodbye right after the reply aborts this call, and the chunk it already
            # sent must count. A chunk is at most --grpc-max-msg-size: milliseconds.
            with trio.CancelScope(shield=True):
                for start in range(0, n, DIGEST_SLICE):
                    if start:
                        async with self._digesting:  # held over a checkpoint: a few per turn
                            await trio.lowlevel.checkpoint()
                        if w.over:
                            return  # the request gave up or failed meanwhile
                    digester.digest(items[start : start + DIGEST_SLICE] if n > DIGEST_SLICE
                                    else items, w.result)
            if len(w.result) > MAX_SAMPLES_PER_REPLY:
                self._refuse(w, None, f"reply over {MAX_SAMPLES_PER_REPLY} samples")
            elif verdict is Verdict.DONE:
                digester.finish()
                w.done.set()
        except LimitExceeded as exc:
            self._refuse(w, "sample_limit", exc.message)
        except InvalidArgument:
            digester.abandon()
            raise


class ReportStream(RequestStream[RequestCall, Any]):
    """A stream whose request asks "report now" and whose reply is one message (upstream's agents
    send no ids: the tracker matches replies in order). The reply is stored as the transport's
    handler decoded it; subclasses name the stream."""

    def _new_result(self, payload: Any) -> Any:
        return None

    async def _send(self, request_id: int, payload: Any) -> None:
        await self.call.send_request(request_id, payload)

    async def request(self, deadline: float) -> Any:
        """The agent's report, answered by `deadline` (the caller's cancel scope ends the wait).

        Raises:
            AgentGone: the stream ended before the reply came.
        """
        return await self._ask(None, None, deadline)

    def on_reply(self, report: Any, *, request_id: int = 0, more: bool = False) -> None:
        """One reply message of the agent, decoded by the transport."""
        verdict, w = self._route(request_id, more)
        if w is None:
            return
        w.result = report
        if verdict is Verdict.DONE:
            w.done.set()


class TopologyStream(ReportStream):
    """StreamClusterTopology: the cluster as the agent's node sees it."""
