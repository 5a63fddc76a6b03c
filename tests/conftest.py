"""Shared fixtures.

Test policy: every test that touches a socket runs its body under `trio.fail_after` so a hang
fails fast; timeouts and heartbeats without sockets run under MockClock (autojump) or pass time as
an argument to the sans-IO core; no test asserts on wall-clock speed (that is benchmarks/).
"""

from __future__ import annotations

import pytest

from fodcproxy.testing import open_proxy


@pytest.fixture
async def proxy():
    async with open_proxy(collect_timeout=2.0, attach_grace=0.5) as handle:
        yield handle
