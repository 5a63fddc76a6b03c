"""FODCService: the handlers of the agents' streams (SPEC section 3).

RegisterAgent and StreamMetrics for every agent; for pod agents (upstream BanyanDB's agent) also
StreamClusterTopology (asked by `GET /cluster/topology`), StreamLifecycle and
StreamSchemaRegistry (asked by `GET /cluster/lifecycle`, see `fodcproxy.lifecycle`), and
StreamCrashDiagnostics and StreamPressureProfiles (`GET /diagnostics`, `/pressure-profiles`:
see `fodcproxy.diagnostics`). Each is bound to the registering connection and held for the
agent's life; what an agent sends on one unasked is dropped.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio
from google.protobuf.message import Message

from fodcproxy.core.registry import DEFAULT_LIMITS, RegistrationLimits
from fodcproxy.errors import (
    DeadlineExceeded,
    FodcError,
    InvalidArgument,
    LimitExceeded,
    Unauthenticated,
)
from fodcproxy.diagnostics import (
    CrashDiagnosticsStream,
    DiagnosticsSettings,
    DownloadAgents,
    PressureProfilesStream,
)
from fodcproxy.diagnostics import attach as attach_diagnostics
from fodcproxy.hub import AgentHub
from fodcproxy.streams import RequestStream, TopologyStream
from fodcproxy.core.lifecycle import AgentLifecycle
from fodcproxy.lifecycle import LifecycleReportStream, RegistryStream
from fodcproxy.rpc import convert, diagnostics_wire, lifecycle_convert, replies
from fodcproxy.rpc.replies import Interner
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.link import GrpcAgentCall, GrpcMetricsCall, GrpcRequestCall
from fodcproxy.rpc.methods import (
    REGISTER,
    SERVICE,
    STREAM_CLUSTER_TOPOLOGY,
    STREAM_CRASH_DIAGNOSTICS,
    STREAM_LIFECYCLE,
    STREAM_METRICS,
    STREAM_PRESSURE_PROFILES,
    STREAM_SCHEMA_REGISTRY,
)
from fodcproxy.rpc.server import Method, ServerCall
from fodcproxy.security import bearer_matches

log = logging.getLogger(__name__)

R = TypeVar("R", bound=RequestStream[Any, Any])
L = TypeVar("L", LifecycleReportStream, RegistryStream)

__all__ = ["REGISTER", "SERVICE", "STREAM_METRICS", "FodcService"]


class FodcService:
    """The handlers. `registration_timeout` (--grpc-handshake-timeout) bounds the wait for a
    RegisterAgent call's first message; `limits` caps what a registration may carry."""

    def __init__(self, hub: AgentHub, *, token: str | None = None,
                 registration_timeout: float = 10.0,
                 limits: RegistrationLimits = DEFAULT_LIMITS,
                 diagnostics: DiagnosticsSettings | None = None) -> None:
        self.hub = hub
        self.diagnostics = diagnostics or DiagnosticsSettings(max_bytes=hub.max_reply_bytes)
        # Agents with profile downloads in progress, shared by every pressure stream.
        self.downloads = DownloadAgents(self.diagnostics.download_agents)
        self._token = token
        self.registration_timeout = registration_timeout
        self.limits = limits
        # Label names and values shared by the series of every agent of this proxy (one per
        # proxy: never shared with another proxy in the same process).
        self.interner = Interner()

    def _authenticate(self, call: ServerCall) -> None:
        """Refuse a call without the agent token, before anything is registered or attached."""
        if self._token is None:
            return
        if not bearer_matches(call.metadata.get("authorization"), self._token):
            self.hub.metrics.refusal("unauthenticated")
            log.warning("call %s from %s refused: missing or wrong agent token", call.method, call.peer)
            raise Unauthenticated(
                "missing or wrong agent token: send the metadata 'authorization: Bearer <token>' "
                "with the token of the proxy's --agent-token-file")

    def methods(self) -> dict[str, Method]:
        return {
            REGISTER: Method(pb.RegisterAgentRequest, self.register_agent),
            # Metrics stay serialized until the hub digests them (see rpc/replies.py).
            STREAM_METRICS: Method(replies.RawReply, self.stream_metrics),
            STREAM_CLUSTER_TOPOLOGY: Method(pb.StreamClusterTopologyRequest,
                                            self.stream_cluster_topology),
            STREAM_LIFECYCLE: Method(pb.StreamLifecycleRequest, self.stream_lifecycle),
            STREAM_SCHEMA_REGISTRY: Method(pb.StreamSchemaRegistryRequest,
                                           self.stream_schema_registry),
            STREAM_CRASH_DIAGNOSTICS: Method(pb.StreamCrashDiagnosticsRequest,
                                             self.stream_crash_diagnostics),
            STREAM_PRESSURE_PROFILES: Method(pb.StreamPressureProfilesRequest,
                                             self.stream_pressure_profiles),
        }

    def _ack(self, agent_id: str, message: str = "") -> pb.RegisterAgentResponse:
        return pb.RegisterAgentResponse(
            success=True, agent_id=agent_id, message=message,
            heartbeat_interval_seconds=self.hub.heartbeat_interval_seconds)

    async def register_agent(self, call: ServerCall) -> None:
        self._authenticate(call)
        hub = self.hub
        with trio.move_on_after(self.registration_timeout) as waited:
            first = await call.receive()
        if waited.cancelled_caught:
            hub.refuse("registration_timeout")
            log.info("registration from %s refused: no RegisterAgentRequest within %gs",
                     call.peer, self.registration_timeout)
            raise DeadlineExceeded(
                f"no RegisterAgentRequest arrived within {self.registration_timeout:g}s of opening "
                "RegisterAgent (the proxy's --grpc-handshake-timeout): send the agent's identity "
                "first")
        if first is None:
            raise InvalidArgument("the stream closed before a RegisterAgentRequest was sent")
        try:
            try:
                reg = convert.registration_from_proto(first, limits=self.limits)
            except InvalidArgument:
                hub.refuse("invalid")
                raise
            except LimitExceeded:
                hub.refuse("size_limit")
                raise
            agent_call = GrpcAgentCall(call)
            session = hub.register(reg, agent_call)  # counts its own refusals (--max-agents)
        except FodcError as exc:
            log.info("registration from %s refused: %s", call.peer, exc.message)
            await call.send(pb.RegisterAgentResponse(success=False, message=exc.message))
            raise
        try:
            await call.send(self._ack(session.agent_id, "registered"))
            while True:
                msg = await call.receive()
                if msg is None:
                    log.info("agent %s said goodbye", session.agent_id)
                    hub.goodbye(session)
                    return
                hub.heartbeat(session, convert.registration_from_proto(msg, limits=self.limits))
                await call.send(self._ack(session.agent_id))
        finally:
            hub.call_ended(session, agent_call)

    async def stream_metrics(self, call: ServerCall) -> None:
        self._authenticate(call)
        agent_id = self._agent_id(call)
        metrics_call = GrpcMetricsCall(call, interner=self.interner)
        stream = await self.hub.attach_metrics(agent_id, metrics_call)
        try:
            while True:
                msg = await call.receive()
                if msg is None:
                    return
                await stream.on_reply(msg.request_id, msg.more, msg.ByteSize(), msg.metrics)
        finally:
            self.hub.call_ended(stream.session, metrics_call)

    def _agent_id(self, call: ServerCall) -> str:
        agent_id = call.metadata.get("agent_id", "").strip()
        if not agent_id:
            self.hub.metrics.refusal("missing_agent_id")
            name = call.method.rsplit("/", 1)[-1]
            raise Unauthenticated(
                f"{name} needs the metadata 'agent_id: <id>' returned by RegisterAgent")
        return agent_id

    async def _request_stream(self, call: ServerCall, request: Callable[[int, Any], Message],
                              attach: Callable[[str, GrpcRequestCall], Awaitable[R]],
                              on_message: Callable[[R, Any], Awaitable[None]]) -> None:
        """One of a pod agent's request streams: authenticate, bind it to the agent that
        registered on this connection (`attach`), hand every message the agent sends to
        `on_message` until the call ends, then tell the hub."""
        self._authenticate(call)
        agent_call = GrpcRequestCall(call, request)
        stream = await attach(self._agent_id(call), agent_call)
        try:
            while (msg := await call.receive()) is not None:
                await on_message(stream, msg)
        finally:
            self.hub.call_ended(stream.session, agent_call)

    async def stream_cluster_topology(self, call: ServerCall) -> None:
        async def on_message(stream: TopologyStream, msg: Any) -> None:
            stream.on_reply(convert.topology_from_proto(msg.topology))

        await self._request_stream(
            call, lambda rid, p: pb.StreamClusterTopologyResponse(request_topology=True),
            lambda agent_id, c: self.hub.attach(agent_id, c, TopologyStream), on_message)

    async def _attach_limited(self, agent_id: str, call: GrpcRequestCall, kind: type[L]) -> L:
        stream = await self.hub.attach(agent_id, call, kind)
        stream.max_reply_bytes = self.hub.max_reply_bytes
        return stream

    async def stream_lifecycle(self, call: ServerCall) -> None:
        """StreamLifecycle: `request_lifecycle` asked by `GET /cluster/lifecycle`, answered by one
        StreamLifecycleRequest (decoded later, in a worker thread, only when asked for)."""
        async def on_message(stream: LifecycleReportStream, msg: Any) -> None:
            stream.on_message(msg.ByteSize(),
                              functools.partial(self._decode_lifecycle, msg, stream.agent_id))

        await self._request_stream(
            call, lifecycle_convert.request_lifecycle,
            lambda agent_id, c: self._attach_limited(agent_id, c, LifecycleReportStream),
            on_message)

    @staticmethod
    def _decode_lifecycle(msg: Any, agent_id: str) -> AgentLifecycle:
        try:
            return lifecycle_convert.lifecycle_from_proto(msg, agent_id)
        except (ValueError, TypeError) as exc:
            raise InvalidArgument(f"StreamLifecycleRequest cannot be read: {exc}") from None

    async def stream_schema_registry(self, call: ServerCall) -> None:
        """StreamSchemaRegistry: `request_registry` asked of one liaison per collection, answered
        by group chunks up to `done`."""
        async def on_message(stream: RegistryStream, msg: Any) -> None:
            stream.on_message(msg.ByteSize(), msg.done, functools.partial(
                lifecycle_convert.registry_chunk_from_proto, msg))

        await self._request_stream(
            call, lifecycle_convert.request_registry,
            lambda agent_id, c: self._attach_limited(agent_id, c, RegistryStream), on_message)

    async def stream_crash_diagnostics(self, call: ServerCall) -> None:
        """One message per crash record, no end marker (see fodcproxy.diagnostics)."""
        async def on_message(stream: CrashDiagnosticsStream, msg: Any) -> None:
            stream.on_record(diagnostics_wire.crash_record_from_proto(msg), msg.ByteSize())

        await self._request_stream(
            call, diagnostics_wire.crash_request,
            lambda agent_id, c: attach_diagnostics(self.hub, agent_id, c, CrashDiagnosticsStream,
                                                   self.diagnostics),
            on_message)

    async def stream_pressure_profiles(self, call: ServerCall) -> None:
        """Records then list_complete (through the tracker); download chunks routed by their
        request id, each handed over before the next message is read (back-pressure)."""
        async def on_message(stream: PressureProfilesStream, msg: Any) -> None:
            which = msg.WhichOneof("payload")
            if which == "chunk":
                await stream.on_chunk(diagnostics_wire.chunk_from_proto(msg.chunk))
            elif which == "record":
                stream.on_record(diagnostics_wire.profile_record_from_proto(msg.record),
                                 msg.ByteSize())
            elif which == "list_complete":
                stream.on_list_complete(msg.list_complete.request_id)
            else:
                raise InvalidArgument("a StreamPressureProfilesRequest carries none of "
                                      "record, list_complete, chunk")

        await self._request_stream(
            call, diagnostics_wire.pressure_command,
            lambda agent_id, c: attach_diagnostics(self.hub, agent_id, c, PressureProfilesStream,
                                                   self.diagnostics, self.downloads),
            on_message)
