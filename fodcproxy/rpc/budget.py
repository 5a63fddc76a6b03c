"""The proxy-wide budget for bytes held in gRPC messages that are not yet consumed.

A connection reserves a message's declared length from the budget when the message's 5-byte
gRPC header arrives, before its body is buffered; the reservation is returned when the handler
has consumed the message (its next `receive()`, or the end of the call). When the budget is
spent, the connection that needs more stops reading its socket until bytes are returned: TCP and
HTTP/2 flow control push back on the peer instead of the proxy buffering. A message can always
be granted eventually (the budget is at least one maximum message), so honest traffic waits,
never fails; a peer that starts messages and never finishes them is ended by the message
deadline (see `rpc/wire.py`), which returns its reservation.
"""

from __future__ import annotations

import attrs
import trio


@attrs.frozen
class BudgetStatistics:
    limit: int
    used: int
    peak: int
    waiting: int


class ByteBudget:
    """A counter of reserved bytes with a limit; `acquire()` waits for room, `release()` frees."""

    def __init__(self, limit: int) -> None:
        if limit <= 0:
            raise ValueError("the budget must be positive")
        self.limit = limit
        # The share that connections with no registered agent draw from instead (rpc/wire.py):
        # they can never take what registered agents' replies wait for. Itself when unset.
        self.unclaimed: ByteBudget = self
        self.used = 0
        self.peak = 0
        self._lot = trio.lowlevel.ParkingLot()
        # Tasks inside acquire(), parked or woken but not yet run: release() empties the lot,
        # so the lot alone would let a newcomer take the bytes freed for them.
        self._waiters = 0

    def fits(self, n: int) -> bool:
        return self.used + n <= self.limit

    def try_reserve(self, n: int) -> bool:
        """Reserve `n` bytes now if they fit (and nobody is queued before us)."""
        if self._waiters or not self.fits(n):
            return False
        self._take(n)
        return True

    async def acquire(self, n: int) -> None:
        """Wait until `n` bytes fit, then reserve them. Cancellation leaves nothing reserved.

        Raises:
            ValueError: `n` is over the whole budget (it could never be granted).
        """
        if n > self.limit:
            raise ValueError(f"{n} bytes can never fit a budget of {self.limit}")
        self._waiters += 1
        try:
            while not self.fits(n):
                await self._lot.park()
            self._take(n)
        finally:
            self._waiters -= 1
        await trio.lowlevel.cancel_shielded_checkpoint()

    def release(self, n: int) -> None:
        if n <= 0:
            return
        self.used -= n
        assert self.used >= 0, "released more than was reserved"
        self._lot.unpark_all()

    def _take(self, n: int) -> None:
        self.used += n
        if self.used > self.peak:
            self.peak = self.used

    def statistics(self) -> BudgetStatistics:
        return BudgetStatistics(self.limit, self.used, self.peak,
                                self._lot.statistics().tasks_waiting)
