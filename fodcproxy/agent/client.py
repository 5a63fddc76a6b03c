"""The agent's side of the protocol: register, heartbeat, answer metric requests, reconnect.

`AgentClient.run()` keeps one agent connected to a proxy forever: it registers, opens
StreamMetrics with the `agent_id` it was given, answers every request from its `source`, and after
any failure reconnects with exponential backoff, jitter and a cap. It treats missing heartbeat
acknowledgements as a dead proxy, so it never stays connected-but-unregistered (a zombie), and the
backoff means a proxy that refuses it is not hammered (a storm). `stop()` says goodbye.

Both the real agent (`python -m fodcproxy agent`) and the fake agents of `fodcproxy.testing` are
this client with a different `source`.
"""

from __future__ import annotations

import logging
import math
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs
import trio
from trio_util import AsyncBool

from fodcproxy.core.model import Address, NodeConfig, TimeWindow
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import Channel, ClientCall, RpcError, open_channel
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.methods import REGISTER, STREAM_METRICS

log = logging.getLogger(__name__)

# Per-message overhead beside the metrics themselves (request_id, more, timestamp, framing).
_CHUNK_MARGIN = 1024

Source = Callable[[TimeWindow], Awaitable[Sequence[Any]]]
"""Answers one request: protobuf `Metric` objects (or `Sample`s) for the window."""


class AgentService(Protocol):
    """One of the pod agent's other streams (crash diagnostics, pressure profiles, lifecycle, schema
    registry): the client opens `method` after StreamMetrics, with the `agent_id` metadata, and
    runs `serve` in the session's nursery for the connection's life.

    `serve` answers the proxy's commands (messages of `response_type`, the proto's naming is
    inverted) until `call.receive()` returns None, then returns. The session ends when a service's
    call ends or `serve` raises (like upstream's agent, which closes every stream and registers
    again when any one of them ends); `stop()` cancels it.
    """

    @property
    def method(self) -> str: ...

    @property
    def response_type(self) -> type[Any]: ...

    async def serve(self, call: ClientCall) -> None: ...


class Dialer(Protocol):
    """Opens a channel to the proxy (`fodcproxy.rpc.client.open_channel`, or a test's stand-in).

    Raises OSError when the proxy cannot be reached.
    """

    def __call__(self, host: str, port: int, *, max_message_length: int = ...,
                 ssl_context: ssl.SSLContext | None = ...) -> AbstractAsyncContextManager[Channel]:
        ...


def backoff_delay(failures: int, *, interval: float, maximum: float, jitter: float) -> float:
    """The delay before reconnect attempt `failures` (1, 2, ...): `interval` doubling with every
    failure, capped at `maximum`, then scaled by 0.5 + 0.5 * `jitter` (`jitter` in [0, 1), a
    random draw), so agents that lost the same proxy do not all come back at the same instant."""
    # The exponent stops growing long after the cap is reached: 2.0 ** 1024 overflows a float,
    # and a proxy can stay unreachable for more than a thousand attempts.
    base = min(maximum, interval * 2.0 ** min(max(0, failures - 1), 64))
    return base * (0.5 + jitter * 0.5)


class RegistrationRefused(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"registration refused ({code}): {message}")
        self.code = code
        self.message = message


class ProxyGone(Exception):
    """The connection to the proxy ended or stopped answering."""


def _names(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(names)


@attrs.frozen(kw_only=True)
class AgentSpec:
    """Who the agent says it is: an *address agent* (`ip`, `port`: the node's primary address is
    its identity) or a *pod agent* (no `ip`; `pod_name` is its identity, `container_names` one per
    polled metrics endpoint), like upstream BanyanDB's agent.

    Raises ValueError when it is neither (no `ip` and no `pod_name`).
    """

    role: str
    ip: str = ""
    port: int = 0
    labels: Mapping[str, str] = attrs.field(factory=dict)
    secondary_addresses: Mapping[str, Address] = attrs.field(factory=dict)
    pod_name: str = ""
    container_names: tuple[str, ...] = attrs.field(default=(), converter=_names)

    def __attrs_post_init__(self) -> None:
        if not self.ip and not self.pod_name:
            raise ValueError("an agent needs its node's ip and port (an address agent) or a "
                             "pod_name (a pod agent)")

    @property
    def is_pod(self) -> bool:
        """True for a pod agent (registers without a primary address)."""
        return not self.ip

    def describe(self) -> str:
        """How logs name the agent: `role ip:port` or `role pod <name>`."""
        return f"{self.role} pod {self.pod_name}" if self.is_pod else f"{self.role} {self.ip}:{self.port}"


@attrs.frozen
class AgentClientStatistics:
    connects: int
    registrations: int
    failures: int
    requests_answered: int
    chunks_sent: int
    last_error: str


class AgentClient:
    def __init__(
        self,
        proxy_host: str,
        proxy_port: int,
        spec: AgentSpec,
        source: Source,
        *,
        heartbeat_interval: float = 10.0,
        reconnect_interval: float = 5.0,
        reconnect_max: float = 60.0,
        max_message_size: int = 4 * 1024 * 1024,
        node_config: Callable[[], NodeConfig | None] | None = None,
        echo_request_id: bool = True,
        rng: random.Random | None = None,
        token: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        dial: Dialer = open_channel,
        services: Sequence[AgentService] = (),
    ) -> None:
        self._dial = dial
        # Opened in this order after StreamMetrics (upstream's agent opens topology, lifecycle,
        # schema registry, crash diagnostics, pressure profiles).
        self.services = tuple(services)
        self._auth = {"authorization": f"Bearer {token}"} if token else {}
        self.ssl_context = ssl_context
        self.proxy_host = proxy_host
        self.proxy_port = proxy_port
        self.spec = spec
        self.source = source
        self.heartbeat_interval = heartbeat_interval
        self.reconnect_interval = reconnect_interval
        self.reconnect_max = reconnect_max
        self.max_message_size = max_message_size
        self.node_config = node_config or (lambda: None)
        self.echo_request_id = echo_request_id
        # Test hook (fake agents): False stops heartbeats while the streams stay open, so the
        # proxy takes the agent offline by its heartbeat timeout. Not a flag of the real agent.
        self.send_heartbeats = True
        self._rng = rng or random.Random()
        self.agent_id: str | None = None
        self.connected = False
        self._stop = trio.Event()
        self._registered = AsyncBool(False)  # registered on the current connection
        self._connects = 0
        self._registrations = 0
        self._failures = 0
        self._answered = 0
        self._chunks = 0
        self._last_error = ""
        self._abort: Callable[[], None] | None = None
        self._last_session_registered = False
        # Connecting and registering must finish within this, or the proxy counts as dead: an
        # agent is never left connected but unregistered.
        self.registration_timeout = max(10.0, 3 * heartbeat_interval)
        self._setup_scope: trio.CancelScope | None = None

    def statistics(self) -> AgentClientStatistics:
        return AgentClientStatistics(self._connects, self._registrations, self._failures,
                                     self._answered, self._chunks, self._last_error)

    async def wait_registered(self) -> str:
        """Wait until the agent is registered (again); returns its agent_id."""
        await self._registered.wait_value(True)
        assert self.agent_id is not None
        return self.agent_id

    def stop(self) -> None:
        """Say goodbye and make `run()` return (at once when not yet registered)."""
        self._stop.set()
        if self._setup_scope is not None:
            self._setup_scope.cancel()

    def drop_connection(self) -> None:
        """Drop the current connection abruptly (no goodbye); `run()` reconnects."""
        if self._abort is not None:
            self._abort()

    def backoff(self, failures: int) -> float:
        """Delay before reconnect attempt `failures` (1, 2, ...): exponential, capped, jittered
        (`backoff_delay` with a draw from the client's random source)."""
        return backoff_delay(failures, interval=self.reconnect_interval,
                             maximum=self.reconnect_max, jitter=self._rng.random())

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected until `stop()`. Reports the agent_id after the first registration
        (or "" if `stop()` came first)."""
        failures = 0
        started = [False]

        def registered() -> None:
            if not started[0]:
                started[0] = True
                task_status.started(self.agent_id or "")

        while not self._stop.is_set():
            self._connects += 1
            try:
                await self._session(registered)
                if self._stop.is_set():
                    break
                reason = "the proxy ended the connection"
            except (OSError, RpcError, ProxyGone, RegistrationRefused) as exc:
                reason = str(exc)
            finally:
                self.connected = False
                self._registered.value = False
            # A session that got registered resets the backoff; a refused one does not.
            failures = 1 if self._last_session_registered else failures + 1
            self._failures += 1
            self._last_error = reason
            delay = self.backoff(failures)
            log.info("agent %s: %s; reconnecting in %.1fs", self.agent_id or self.spec.role,
                     reason, delay)
            with trio.move_on_after(delay):
                await self._stop.wait()
        if not started[0]:
            task_status.started(self.agent_id or "")

    async def _session(self, registered: Callable[[], None]) -> None:
        self._last_session_registered = False
        # Until registered, the session runs under a deadline and stop() may cancel it outright.
        with trio.CancelScope(deadline=trio.current_time() + self.registration_timeout) as setup:
            self._setup_scope = setup
            if self._stop.is_set():
                setup.cancel()
            try:
                await self._connect_and_run(setup, registered)
            finally:
                self._setup_scope = None
        if setup.cancelled_caught and not self._stop.is_set():
            raise ProxyGone(f"no answer to the registration within {self.registration_timeout:g}s")

    async def _connect_and_run(self, setup: trio.CancelScope, registered: Callable[[], None]) -> None:
        async with self._dial(self.proxy_host, self.proxy_port, ssl_context=self.ssl_context,
                              max_message_length=self.max_message_size) as channel:
            reg_call = await channel.start_call(REGISTER, pb.RegisterAgentResponse,
                                                metadata=self._auth)
            await reg_call.send(self._registration())
            first = await reg_call.receive()
            if first is None or not first.success:
                while await reg_call.receive() is not None:  # the trailers carry the status
                    pass
                code, message = reg_call.status or (GrpcCode.UNKNOWN, "")
                raise RegistrationRefused(code, first.message if first is not None else message)
            metadata = {"agent_id": first.agent_id, **self._auth}
            metrics_call = await channel.start_call(STREAM_METRICS, pb.StreamMetricsResponse,
                                                    metadata=metadata)
            service_calls = [(service, await channel.start_call(
                service.method, service.response_type, metadata=metadata))
                for service in self.services]
            setup.deadline = math.inf  # registered: from here on heartbeats judge the proxy
            self._setup_scope = None
            self.agent_id = first.agent_id
            interval = float(first.heartbeat_interval_seconds or self.heartbeat_interval)
            self.connected = True
            self._registrations += 1
            self._registered.value = True
            self._last_session_registered = True
            registered()
            log.info("agent %s: registered (heartbeat every %ss)", self.agent_id, interval)
            try:
                async with trio.open_nursery() as nursery:
                    self._abort = nursery.cancel_scope.cancel
                    last_ack = [trio.current_time()]
                    ended = trio.Event()
                    nursery.start_soon(self._read_acks, reg_call, last_ack, ended)
                    nursery.start_soon(self._heartbeats, reg_call, interval, last_ack)
                    nursery.start_soon(self._answer, metrics_call)
                    for service, call in service_calls:
                        nursery.start_soon(self._serve, service, call)
                    await self._stop.wait()
                    # Goodbye: close our send side; the proxy removes us at once and ends the call.
                    await reg_call.done_sending()
                    with trio.move_on_after(2):
                        await ended.wait()
                    nursery.cancel_scope.cancel()
            except BaseExceptionGroup as group:
                # A dead proxy ends the session, often failing several tasks at once (both streams
                # end together when it shuts down): surface the first such error plainly.
                failures, others = group.split((OSError, RpcError, ProxyGone))
                if failures is None or (others is not None
                                        and others.split(trio.Cancelled)[1] is not None):
                    raise
                leaf: BaseException = failures
                while isinstance(leaf, BaseExceptionGroup):
                    leaf = leaf.exceptions[0]
                raise leaf from None
            finally:
                self._abort = None
            if not self._stop.is_set():
                raise ProxyGone("connection dropped")

    def _registration(self) -> pb.RegisterAgentRequest:
        s = self.spec
        return convert.registration_to_proto(
            role=s.role, ip=s.ip, port=s.port, labels=dict(s.labels),
            secondary_addresses=dict(s.secondary_addresses), node_config=self.node_config(),
            pod_name=s.pod_name, container_names=s.container_names)

    async def _read_acks(self, call: ClientCall, last_ack: list[float], ended: trio.Event) -> None:
        while True:
            msg = await call.receive()
            if msg is None:
                ended.set()
                if self._stop.is_set():
                    return
                code, message = call.status or (GrpcCode.UNAVAILABLE, "")
                raise ProxyGone(f"registration stream ended ({code}): {message}")
            last_ack[0] = trio.current_time()

    async def _heartbeats(self, call: ClientCall, interval: float, last_ack: list[float]) -> None:
        # Three missed acknowledgements mean the proxy is dead, however quiet the socket looks.
        patience = 3 * interval
        start = trio.current_time()
        k = 0
        while True:
            k += 1
            await trio.sleep_until(start + k * interval)
            if not self.send_heartbeats:
                last_ack[0] = trio.current_time()  # nothing sent, so no acknowledgement is due
                continue
            if trio.current_time() - last_ack[0] > patience:
                raise ProxyGone(f"no heartbeat acknowledgement for {patience:g}s")
            await call.send(self._registration())

    async def _answer(self, call: ClientCall) -> None:
        while True:
            req = await call.receive()
            if req is None:
                code, message = call.status or (GrpcCode.UNAVAILABLE, "")
                if self._stop.is_set():
                    return
                raise ProxyGone(f"metrics stream ended ({code}): {message}")
            window = convert.window_from_proto(req)
            metrics = await self.source(window)
            await self._send_chunks(call, req.request_id if self.echo_request_id else 0, metrics)
            self._answered += 1

    async def _serve(self, service: AgentService, call: ClientCall) -> None:
        name = service.method.rsplit('/', 1)[-1]
        try:
            await service.serve(call)
        except (OSError, RpcError, ProxyGone):
            raise
        except Exception as exc:
            # A service's bug (or an input it did not foresee) ends the session, as the protocol
            # says, not the agent: it registers again, and its metrics go on being served.
            log.exception("agent %s: %s failed", self.agent_id, name)
            raise ProxyGone(f"{name} failed: {type(exc).__name__}: {exc}") from None
        if self._stop.is_set():
            return
        code, message = call.status or (GrpcCode.UNAVAILABLE, "")
        raise ProxyGone(f"{name} ended ({code}): {message}")

    async def _send_chunks(self, call: ClientCall, request_id: int, metrics: Sequence[Any]) -> None:
        """Answer one request in StreamMetricsRequest chunks under the message limit.

        `metrics` are protobuf Metrics, Samples, or Metrics already serialized (bytes): the
        chunks are written as bytes, so a source may hand over pre-serialized series.
        """
        budget = self.max_message_size - _CHUNK_MARGIN
        chunk: list[bytes] = []
        size = 0
        pending: list[list[bytes]] = []
        for m in metrics:
            if type(m) is not bytes:
                if not isinstance(m, pb.Metric):
                    m = convert.samples_to_proto([m])[0]
                m = m.SerializeToString()
            n = len(m) + 6  # the field's tag and length
            if chunk and size + n > budget:
                pending.append(chunk)
                chunk, size = [], 0
            chunk.append(m)
            size += n
        pending.append(chunk)
        for k, part in enumerate(pending):
            await call.send_raw(encode_reply(part, request_id, more=k < len(pending) - 1))
            self._chunks += 1




def encode_reply(metrics: Sequence[bytes], request_id: int, *, more: bool) -> bytes:
    """A serialized StreamMetricsRequest from serialized Metrics: metrics=1, request_id=16, more=17
    (it decodes to the same message as protobuf's own; tests/test_agent_client.py checks)."""
    parts = [b"".join([b"\x0a" + convert.varint(len(m)) + m for m in metrics])]
    if request_id:
        parts.append(b"\x80\x01" + convert.varint(request_id))
    if more:
        parts.append(b"\x88\x01\x01")
    return b"".join(parts)
