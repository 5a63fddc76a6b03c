"""The agent client's reconnect backoff, on virtual time and without sockets.

Test policy: the delay schedule is a pure function (`backoff_delay`), tested with plain
synchronous tests; the reconnect loop is tested against dialers that stand in for `open_channel`
(one that always refuses, one that lets chosen attempts register and then lose the proxy), under
`autojump_clock` (trio's MockClock), asserting the exact virtual times of the attempts. Every test
that runs the loop has a `fail_after` guard (virtual seconds). No sockets.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from fodcproxy.agent.client import AgentClient, AgentSpec, backoff_delay
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc.client import Channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import REGISTER

SPEC = AgentSpec(role="liaison", ip="127.0.0.1", port=17912)


class FixedJitter:
    """A random source whose every draw is `value`."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


class RefusingDialer:
    """Stands in for `open_channel`: records the virtual time of every attempt, then refuses."""

    def __init__(self) -> None:
        self.attempts: list[float] = []

    @contextlib.asynccontextmanager
    async def __call__(self, host: str, port: int, *, max_message_length: int = 0,
                       ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Channel]:
        self.attempts.append(trio.current_time())
        raise ConnectionRefusedError(111, f"Connection refused: {host}:{port}")
        yield  # pragma: no cover - never reached; makes this an async generator


class FakeCall:
    """A call that answers with `replies`, then ends with `status` (None: stays open forever)."""

    def __init__(self, replies: list[object], status: tuple[int, str] | None) -> None:
        self.replies = replies
        self.end_status = status
        self.status: tuple[int, str] | None = None

    async def send(self, message: object) -> None:
        await trio.lowlevel.checkpoint()

    async def done_sending(self) -> None:
        await trio.lowlevel.checkpoint()

    async def receive(self) -> object:
        await trio.lowlevel.checkpoint()
        if self.replies:
            return self.replies.pop(0)
        if self.end_status is None:
            await trio.sleep_forever()
        self.status = self.end_status
        return None


class FakeChannel:
    """Registration succeeds at once; the metrics stream then ends (the proxy went away)."""

    async def start_call(self, method: str, response_type: object, *,
                         metadata: object = None) -> FakeCall:
        await trio.lowlevel.checkpoint()
        if method == REGISTER:
            return FakeCall([pb.RegisterAgentResponse(success=True, agent_id="liaison-x",
                                                      heartbeat_interval_seconds=10)], None)
        return FakeCall([], (GrpcCode.UNAVAILABLE, "the proxy went away"))


class ScriptedDialer(RefusingDialer):
    """Refuses, except on the attempts (0-based) in `registers_on`, which register and then lose
    the connection at once."""

    def __init__(self, registers_on: set[int]) -> None:
        super().__init__()
        self.registers_on = registers_on

    @contextlib.asynccontextmanager
    async def __call__(self, host: str, port: int, *, max_message_length: int = 0,
                       ssl_context: ssl.SSLContext | None = None) -> AsyncIterator[Channel]:
        attempt = len(self.attempts)
        self.attempts.append(trio.current_time())
        if attempt not in self.registers_on:
            raise ConnectionRefusedError(111, "Connection refused")
        yield FakeChannel()  # type: ignore[misc]


async def _nothing(window: object) -> list[object]:
    return []


def client(dialer: RefusingDialer, jitter: float, *, interval: float = 1.0,
           maximum: float = 8.0) -> AgentClient:
    return AgentClient("proxy.invalid", 17900, SPEC, _nothing, reconnect_interval=interval,
                       reconnect_max=maximum, rng=FixedJitter(jitter),  # type: ignore[arg-type]
                       dial=dialer)


def test_backoff_doubles_from_the_interval_up_to_the_cap() -> None:
    delays = [backoff_delay(n, interval=0.5, maximum=5.0, jitter=1.0) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


@pytest.mark.parametrize(("jitter", "factor"), [(0.0, 0.5), (0.5, 0.75), (0.999, 0.9995)])
def test_jitter_scales_the_delay_between_half_and_all_of_it(jitter: float, factor: float) -> None:
    assert backoff_delay(3, interval=1.0, maximum=60.0, jitter=jitter) == pytest.approx(4.0 * factor)


def test_a_huge_failure_count_stays_at_the_cap() -> None:
    assert backoff_delay(10_000, interval=5.0, maximum=60.0, jitter=0.0) == 30.0


def test_the_client_draws_its_jitter_from_its_random_source() -> None:
    c = client(RefusingDialer(), 0.5, interval=2.0, maximum=60.0)
    assert [c.backoff(n) for n in (1, 2, 3)] == [1.5, 3.0, 6.0]


async def test_reconnect_attempts_follow_the_schedule_exactly(
        autojump_clock: trio.testing.MockClock) -> None:
    dialer = RefusingDialer()
    agent = client(dialer, 0.5)  # delays x0.75: 0.75, 1.5, 3, 6, then the cap 8 x0.75 = 6
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            await trio.sleep(30)
            nursery.cancel_scope.cancel()
    assert dialer.attempts == [0.0, 0.75, 2.25, 5.25, 11.25, 17.25, 23.25, 29.25]
    stats = agent.statistics()
    assert (stats.connects, stats.failures, stats.registrations) == (8, 8, 0)
    assert "Connection refused" in stats.last_error
    assert not agent.connected


async def test_a_registered_session_resets_the_backoff(
        autojump_clock: trio.testing.MockClock) -> None:
    dialer = ScriptedDialer(registers_on={3})
    agent = client(dialer, 0.0)  # delays x0.5: 0.5, 1, 2, 4, 4, ...
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            await trio.sleep(8)
            nursery.cancel_scope.cancel()
    # Attempts 0-2 refused (delays 0.5, 1, 2); attempt 3 at 3.5 registers and loses the proxy at
    # once; the count starts again: 0.5, 1, 2 more.
    assert dialer.attempts == [0.0, 0.5, 1.5, 3.5, 4.0, 5.0, 7.0]
    stats = agent.statistics()
    assert (stats.registrations, agent.agent_id) == (1, "liaison-x")


async def test_stop_during_the_backoff_returns_at_once(
        autojump_clock: trio.testing.MockClock) -> None:
    dialer = RefusingDialer()
    agent = client(dialer, 0.0, interval=4.0)  # the first delay is 2s
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            await trio.sleep(1.0)  # virtual: inside the first 2s delay
            agent.stop()
            stopped_at = trio.current_time()
        # run() returned as soon as stop() was called: no further attempt, no virtual time spent
        assert trio.current_time() == stopped_at == 1.0
    assert dialer.attempts == [0.0]


async def test_start_reports_when_stopped_before_ever_registering(
        autojump_clock: trio.testing.MockClock) -> None:
    dialer = RefusingDialer()
    agent = client(dialer, 0.0)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_stop_after, agent, 3.0)
            agent_id = await nursery.start(agent.run)
    assert agent_id == ""
    assert dialer.attempts == [0.0, 0.5, 1.5]  # delays 0.5, 1, then stopped inside the 2s one


async def _stop_after(agent: AgentClient, seconds: float) -> None:
    await trio.sleep(seconds)
    agent.stop()
