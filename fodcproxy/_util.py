"""Small helpers with no better home."""

from __future__ import annotations

import trio


def lone_exception(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The single non-Cancelled exception inside `group` (however nested), or None.

    Trio and anyio wrap an error raised through a nursery in an ExceptionGroup; where exactly one
    real error ended the block, callers want that error itself.
    """
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for e in exc.exceptions:
                walk(e)
        elif not isinstance(exc, trio.Cancelled):
            leaves.append(exc)

    walk(group)
    return leaves[0] if len(leaves) == 1 else None
