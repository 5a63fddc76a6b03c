"""Which request a reply answers, on one agent stream. Sans-IO: no Trio, time is an argument.

The proxy sends requests on a per-agent stream (StreamMetrics today; the other request/response
streams of SPEC section 3 next) and the agent sends replies, each in one or more chunks (`more`
set on every chunk but the last). A `RequestTracker` decides for every chunk whether it belongs to
the request the proxy is waiting for, and keeps the book of requests still unanswered. The Trio
shell (`fodcproxy.streams`) owns the waiting; this module owns the rules.

Rules (SPEC section 3):

- One request is *open* at a time (the shell sends the next one only once the open one is done).
  A request stops being open when its reply is complete, when its deadline passes (`on_deadline`),
  when its waiter gives up (`expire`: cancelled, or the reply was refused) or when the stream ends.
- A reply that carries a request id (our agents echo it) answers that request: it is delivered
  while the request is open, dropped otherwise (late, unknown or forgotten).
- A reply with id 0 (upstream's agents: one reply per request, in order) answers the **oldest
  unanswered** request. When that is the open one it is delivered; when that one has expired, the
  reply is late and dropped.
- An agent without ids that *skips* a request would stay off by one forever under that rule: each
  reply would be taken for the previous (expired) request's. So when a late reply is dropped while
  a newer request is open, the newer one becomes *doubtful*: the dropped reply may have been its
  own. The next id-0 reply after a doubtful request is either that request's late reply or the open
  request's own; it is delivered to the open request when every candidate asked for the same
  window (the request's `key`): whichever it answers, it is an answer for that window. Otherwise
  it is dropped. An agent that skips one request thus recovers within two requests of the same
  window (the first after the skip is dropped, the second delivered).
- When in doubt, drop: a reply is never delivered to a request whose window differs from the one
  it may have been asked for. Every dropped reply is counted once, at its last chunk (`LATE`).

Memory is bounded: at most `MAX_KEPT` unanswered requests are kept; older ones (all expired) are
only counted, which is all the id-0 rule needs of them.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Hashable

import attrs

__all__ = ["MAX_KEPT", "RequestTracker", "TrackerStatistics", "Verdict"]

#: Unanswered requests kept in full; older ones are only counted.
MAX_KEPT = 16


class Verdict(enum.Enum):
    """What to do with one reply chunk (see `RequestTracker.on_reply`)."""

    DELIVER = "deliver"  # a chunk of the open request's reply; more chunks follow
    DONE = "done"  # the last chunk of the open request's reply: the request is answered
    DROP = "drop"  # a chunk of a reply nobody waits for; more chunks follow
    LATE = "late"  # the last chunk of a reply nobody waits for: count it as dropped

    @property
    def wanted(self) -> bool:
        return self is Verdict.DELIVER or self is Verdict.DONE


class _Request:
    __slots__ = ("id", "key", "deadline", "doubtful")

    def __init__(self, request_id: int, key: Hashable, deadline: float) -> None:
        self.id = request_id
        self.key = key
        self.deadline = deadline
        # An id-0 reply that may have been this request's own was dropped (or delivered under
        # doubt): its real reply may or may not still come.
        self.doubtful = False


@attrs.frozen
class TrackerStatistics:
    open: int | None  # the id of the open request
    unanswered: int  # requests sent whose reply has not (fully) come, the open one included
    delivered: int  # replies delivered to their request
    dropped: int  # replies dropped (late, unknown, in doubt, unsolicited)


class RequestTracker:
    """The requests of one agent stream and the rules that route its replies to them."""

    def __init__(self, *, first_id: int = 1) -> None:
        self._next_id = first_id
        self._unanswered: deque[_Request] = deque()  # in the order sent
        self._forgotten = 0  # unanswered requests older than every kept one (all expired)
        self._open: _Request | None = None
        self._in_reply = False  # an id-0 reply has begun and not ended
        self._replying: _Request | None = None  # ... and it is delivered to this request
        self._ended = False
        self._delivered = 0
        self._dropped = 0

    # -- queries -------------------------------------------------------------------------------

    @property
    def open(self) -> int | None:
        """The id of the request being waited for, if any."""
        return self._open.id if self._open is not None else None

    def next_deadline(self) -> float | None:
        """When `on_deadline` will expire the open request, or None."""
        return self._open.deadline if self._open is not None else None

    def statistics(self) -> TrackerStatistics:
        return TrackerStatistics(self.open, len(self._unanswered) + self._forgotten,
                                 self._delivered, self._dropped)

    # -- events --------------------------------------------------------------------------------

    def begin(self, now: float, deadline: float, key: Hashable = None) -> int:
        """Open a request answered until `deadline`; returns its id (never 0).

        `key` names what is asked (the window): replies in doubt are delivered only between
        requests of equal keys.

        Raises:
            RuntimeError: a request is still open, or the stream has ended.
        """
        if self._ended:
            raise RuntimeError("the stream has ended")
        if self._open is not None:
            raise RuntimeError(f"request {self._open.id} is still open: one request at a time")
        request = _Request(self._next_id, key, deadline)
        self._next_id += 1
        self._unanswered.append(request)
        self._open = request
        unanswered = self._unanswered
        while len(unanswered) > MAX_KEPT:
            # Expired (only the new one is open): the id-0 rule needs only their number. A reply
            # in progress keeps its request (`_replying`) whether it is kept here or not.
            unanswered.popleft()
            self._forgotten += 1
        if now >= deadline:
            self._open = None
        return request.id

    def on_deadline(self, now: float) -> int | None:
        """Expire the open request if its deadline is past at `now`; returns its id if so."""
        request = self._open
        if request is not None and now >= request.deadline:
            self._open = None
            return request.id
        return None

    def expire(self, request_id: int) -> bool:
        """The waiter of `request_id` gave up (cancelled, or it refused the reply).

        Its reply, or the rest of it, will be dropped. Returns whether it was open.
        """
        request = self._open
        if request is not None and request.id == request_id:
            self._open = None
            return True
        return False

    def on_stream_end(self) -> int | None:
        """The stream is gone. Returns the id of the open request (its waiter fails), if any."""
        request = self._open
        self._open = None
        self._ended = True
        self._unanswered.clear()
        self._forgotten = 0
        self._in_reply = False
        self._replying = None
        return request.id if request is not None else None

    def on_reply(self, request_id: int, more: bool, now: float) -> Verdict:
        """Route one reply chunk: carrying `request_id` (0: none), `more` chunks to follow.

        A chunk that arrives at or after the open request's deadline is late.
        """
        self.on_deadline(now)
        target: _Request | None
        if request_id:
            target = None
            for r in reversed(self._unanswered):
                if r.id == request_id:
                    target = r
                    break
            if target is not None and not more:
                self._unanswered.remove(target)
        else:
            if not self._in_reply:
                target = self._attribute()
                self._in_reply = more
                self._replying = target if more else None
            else:
                target = self._replying
                if not more:
                    self._in_reply = False
                    self._replying = None
        if target is not None and target is self._open:
            if more:
                return Verdict.DELIVER
            self._open = None
            self._delivered += 1
            return Verdict.DONE
        if more:
            return Verdict.DROP
        self._dropped += 1
        return Verdict.LATE

    def _attribute(self) -> _Request | None:
        """The request a new id-0 reply is delivered to, or None when it is dropped.

        Each id-0 reply settles the oldest unanswered request (it answers that one or a later one:
        the agent answers in order and may have skipped some).
        """
        open_ = self._open
        if self._forgotten:
            self._forgotten -= 1
            if open_ is not None:
                open_.doubtful = True
            return None
        if not self._unanswered:
            return None  # nothing was asked: unsolicited
        oldest = self._unanswered.popleft()
        if oldest is open_:
            return open_  # the usual case: nothing older is unanswered
        if open_ is None:
            return None  # a late reply, and nobody waits
        # `oldest` has expired: the reply is its late one, or the open request's own if `oldest`
        # was answered already (it is doubtful) or skipped.
        if oldest.doubtful and oldest.key == open_.key \
                and all(r.key == open_.key for r in self._unanswered):
            # Whichever it answers, it was asked for this window. The open request keeps its
            # place: its own reply may still come (then it is settled like any late one).
            open_.doubtful = True
            return open_
        open_.doubtful = True
        return None
