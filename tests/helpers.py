"""Helpers shared by the test modules (imported as `helpers`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from collections.abc import Callable

import trio


async def wait_for(predicate: Callable[[], object], step: float = 0.005) -> None:
    """Poll `predicate` every `step` seconds until it is true.

    Never times out by itself: the caller's `trio.fail_after` bounds it, so a condition that never
    comes fails the test at the caller's deadline instead of hanging it.
    """
    while not predicate():
        await trio.sleep(step)
