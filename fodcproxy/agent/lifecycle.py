"""The agent's lifecycle and schema-registry streams: what the node's groups hold and how its
schema compares with the registry's (issue 16; upstream BanyanDB's fodc/agent/internal/lifecycle).

Two `AgentService`s share one `LifecycleCollector`:

- `LifecycleService` (StreamLifecycle) answers each `request_lifecycle` with one
  StreamLifecycleRequest: the report files of `--lifecycle-report-dir` and the groups of the
  node's `GroupLifecycleService.InspectAll` (lifecycle port), each with this node's cache and
  runtime fingerprints from `NodeSchemaStateService.StreamGroupSchemaState` (same port).
- `SchemaRegistryService` (StreamSchemaRegistry) answers each `request_registry` with the
  registry's fingerprints, read from the liaison's registry services (schema-registry port):
  chunks per group, a group's `error`, or the fatal empty-name error; then `done`.

Every call to the node runs under a deadline (`timeout`, upstream's 40 s) and a receive limit
(`max_message_size`); a failed InspectAll leaves that request unanswered (upstream's agent does
the same: the proxy then counts the agent as not reporting and says UNKNOWN, instead of taking
an empty answer for "no groups here"). The rules themselves are in
`fodcproxy.agent.lifecycle_rules` and `fodcproxy.agent.fingerprint` (sans-IO).
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any

import attrs
import trio
from google.protobuf.message import DecodeError, Message

from fodcproxy._proto.banyandb.common.v1 import common_pb2
from fodcproxy._proto.banyandb.database.v1 import rpc_pb2 as db
from fodcproxy.agent.fingerprint import registry_fingerprints, resource_kind
from fodcproxy.agent.lifecycle_rules import (
    RegistryGroup,
    ReportLimits,
    SchemaStateFold,
    add_error_to_all,
    apply_schema_states,
    decode_report,
    fit_lifecycle,
    registry_messages,
    select_reports,
)
from fodcproxy.errors import GrpcCode
from fodcproxy.rpc.client import Channel, ClientCall, RpcError, open_channel
from fodcproxy.rpc.convert import pb, ts_to_proto
from fodcproxy.rpc.methods import STREAM_LIFECYCLE, STREAM_SCHEMA_REGISTRY

__all__ = [
    "DEFAULT_REPORT_DIR",
    "LifecycleCollector",
    "LifecycleService",
    "LifecycleSettings",
    "NodeCallError",
    "SchemaRegistryService",
]

log = logging.getLogger(__name__)

DEFAULT_REPORT_DIR = "/tmp/lifecycle-reports"  # upstream's lifecycle.DefaultReportDir
_MARGIN = 1024  # bytes of every reply kept for framing, as the metrics chunks keep

INSPECT_ALL = "/banyandb.fodc.v1.GroupLifecycleService/InspectAll"
SCHEMA_STATE = "/banyandb.database.v1.NodeSchemaStateService/StreamGroupSchemaState"
_DB = "/banyandb.database.v1."
GROUP_LIST = _DB + "GroupRegistryService/List"
INDEX_RULE_LIST = _DB + "IndexRuleRegistryService/List"
BINDING_LIST = _DB + "IndexRuleBindingRegistryService/List"
# A group's resources by its catalog: the List method, its reply type and the reply's field.
_RESOURCE_LIST: dict[int, tuple[str, type[Message], type[Message], str]] = {
    common_pb2.CATALOG_STREAM: (_DB + "StreamRegistryService/List",
                                db.StreamRegistryServiceListRequest,
                                db.StreamRegistryServiceListResponse, "stream"),
    common_pb2.CATALOG_MEASURE: (_DB + "MeasureRegistryService/List",
                                 db.MeasureRegistryServiceListRequest,
                                 db.MeasureRegistryServiceListResponse, "measure"),
    common_pb2.CATALOG_TRACE: (_DB + "TraceRegistryService/List",
                               db.TraceRegistryServiceListRequest,
                               db.TraceRegistryServiceListResponse, "trace"),
}


class NodeCallError(Exception):
    """A call to the node failed (unreachable, an error status, no answer in time, too big)."""

    def __init__(self, message: str, code: int = GrpcCode.UNKNOWN) -> None:
        super().__init__(message)
        self.code = code


@attrs.frozen(kw_only=True)
class LifecycleSettings:
    """Where the node's services are and how far the agent trusts them.

    `lifecycle_port` 0 turns the feature off (the agent opens neither stream, as upstream);
    `registry_port` 0 means this agent cannot read the registry (a request_registry gets the
    fatal error). `cache_ttl` 0 collects afresh for every request.
    """

    host: str = "127.0.0.1"
    lifecycle_port: int = 18912
    registry_port: int = 17912
    report_dir: str = DEFAULT_REPORT_DIR
    cache_ttl: float = 600.0
    timeout: float = 40.0  # upstream's timeouts.AgentInspectAll
    max_message_size: int = 4 * 1024 * 1024
    report_limits: ReportLimits = ReportLimits()
    max_schema_state_bytes: int = 64 * 1024 * 1024
    max_schema_groups: int = 10_000


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RpcError):
        return str(exc)
    if isinstance(exc, DecodeError):
        return f"the answer does not decode: {exc}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _finish(call: ClientCall, what: str) -> None:
    """Read the call to its status; raise NodeCallError unless it is OK."""
    while await call.receive() is not None:
        pass
    code, message = call.status or (GrpcCode.UNAVAILABLE, "")
    if code != GrpcCode.OK:
        try:
            name = GrpcCode(code).name
        except ValueError:
            name = str(code)
        raise NodeCallError(f"{what}: {name}: {message[:500]}", code)


async def _unary(channel: Channel, method: str, request: Message, reply_type: type[Message],
                 what: str) -> Any:
    """One unary call. Raises NodeCallError (also for a call that ends without a reply)."""
    try:
        call = await channel.start_call(method, reply_type)
        await call.send(request)
        await call.done_sending()
        reply = await call.receive()
        await _finish(call, what)
    except (RpcError, OSError, DecodeError) as exc:
        raise NodeCallError(f"{what}: {_describe(exc)}") from None
    if reply is None:
        raise NodeCallError(f"{what}: the call ended without an answer")
    return reply


class LifecycleCollector:
    """Collects what the two streams send. One per agent; its calls to the node are sequential
    per stream and each opens its own connection (as upstream dials per collection)."""

    def __init__(self, settings: LifecycleSettings) -> None:
        self.settings = settings
        self._cached: pb.LifecycleData | None = None
        self._cached_at = 0.0
        self._inspect_unimplemented = False

    @property
    def lifecycle_address(self) -> str:
        return f"{self.settings.host}:{self.settings.lifecycle_port}"

    @property
    def registry_address(self) -> str:
        return f"{self.settings.host}:{self.settings.registry_port}"

    # --- StreamLifecycle ------------------------------------------------------------------------

    async def collect(self) -> pb.LifecycleData:
        """The reports and the groups, from the cache while it is fresh. A failed collection is
        not cached, so the next request tries again.

        Raises NodeCallError when InspectAll fails (unreachable, error status, timeout, an
        answer over the message limit).
        """
        s = self.settings
        now = trio.current_time()
        if self._cached is not None and s.cache_ttl > 0 and now - self._cached_at < s.cache_ttl:
            return self._cached
        reports = await trio.to_thread.run_sync(read_reports, s.report_dir, s.report_limits)
        groups = await self._groups()
        data = pb.LifecycleData(reports=reports, groups=groups or [])
        self._cached, self._cached_at = data, trio.current_time()
        return data

    def _connect(self, port: int) -> AbstractAsyncContextManager[Channel]:
        return open_channel(self.settings.host, port, max_message_length=self.settings.max_message_size,
                            connect_timeout=self.settings.timeout)

    async def _groups(self) -> list[pb.GroupLifecycleInfo] | None:
        """InspectAll's groups with this node's schema state folded in; None when no call is
        made (the node does not implement InspectAll: known after the first Unimplemented)."""
        if self._inspect_unimplemented:
            return None
        s = self.settings
        what = f"InspectAll on {self.lifecycle_address}"
        try:
            with trio.fail_after(s.timeout):
                async with self._connect(s.lifecycle_port) as channel:
                    reply = await _unary(channel, INSPECT_ALL, pb.InspectAllRequest(),
                                         pb.InspectAllResponse, what)
        except NodeCallError as exc:
            if exc.code == GrpcCode.UNIMPLEMENTED:
                self._inspect_unimplemented = True
                log.info("%s: not implemented; not calling it again", what)
                return None
            raise
        except trio.TooSlowError:
            raise NodeCallError(f"{what}: no answer within {s.timeout:g}s",
                                GrpcCode.DEADLINE_EXCEEDED) from None
        except OSError as exc:
            raise NodeCallError(f"{what}: {_describe(exc)}", GrpcCode.UNAVAILABLE) from None
        groups = list(reply.groups)
        try:
            states = await self._schema_states()
        except NodeCallError as exc:
            log.warning("node schema state: %s; reporting lifecycle without it", exc)
            add_error_to_all(groups, f"node schema state: {exc}")
            return groups
        return apply_schema_states(groups, states) if states is not None else groups

    async def _schema_states(self) -> dict[str, Any] | None:
        """This node's cache and runtime fingerprints per group; None when the node does not
        implement NodeSchemaStateService (it then contributes none, as upstream)."""
        s = self.settings
        what = f"StreamGroupSchemaState on {self.lifecycle_address}"
        fold = SchemaStateFold(max_groups=s.max_schema_groups)
        received = 0
        try:
            with trio.fail_after(s.timeout):
                async with self._connect(s.lifecycle_port) as channel:
                    call = await channel.start_call(SCHEMA_STATE, db.StreamGroupSchemaStateResponse)
                    await call.send(db.StreamGroupSchemaStateRequest())
                    await call.done_sending()
                    while (event := await call.receive()) is not None:
                        received += event.ByteSize()
                        if received > s.max_schema_state_bytes:
                            raise NodeCallError(f"{what}: over {s.max_schema_state_bytes} bytes "
                                                "of schema state")
                        fold.feed(event)
                        await trio.lowlevel.checkpoint()
                    await _finish(call, what)
        except NodeCallError as exc:
            if exc.code == GrpcCode.UNIMPLEMENTED:
                return None
            raise
        except trio.TooSlowError:
            raise NodeCallError(f"{what}: no answer within {s.timeout:g}s",
                                GrpcCode.DEADLINE_EXCEEDED) from None
        except (OSError, RpcError, DecodeError) as exc:
            raise NodeCallError(f"{what}: {_describe(exc)}", GrpcCode.UNAVAILABLE) from None
        if fold.dropped_groups:
            for state in fold.states.values():
                state.error(f"{what}: {fold.dropped_groups} more groups were left out "
                            f"(the agent keeps at most {fold.max_groups})")
        return fold.states

    # --- StreamSchemaRegistry -------------------------------------------------------------------

    async def fetch_registry(self) -> list[RegistryGroup]:
        """The registry's fingerprints, one entry per group, in the order the registry lists
        them; a group whose own read failed, or was not reached before the deadline, carries its
        error. One deadline (`timeout`) covers the whole read, as upstream's.

        Raises NodeCallError when the registry cannot be read at all (no port configured,
        unreachable, the group list failing or not answered in time): the fatal error.
        """
        s = self.settings
        if s.registry_port == 0:
            raise NodeCallError("no schema-registry address configured (--schema-registry-port 0)")
        deadline = trio.current_time() + s.timeout
        where = self.registry_address
        out: list[RegistryGroup] = []
        try:
            async with self._connect(s.registry_port) as channel:
                try:
                    with trio.fail_at(deadline):
                        listed = await _unary(channel, GROUP_LIST,
                                              db.GroupRegistryServiceListRequest(),
                                              db.GroupRegistryServiceListResponse,
                                              f"list groups on {where}")
                except trio.TooSlowError:
                    raise NodeCallError(f"list groups on {where}: no answer within "
                                        f"{s.timeout:g}s", GrpcCode.DEADLINE_EXCEEDED) from None
                for group in listed.group:
                    name = group.metadata.name
                    try:
                        with trio.fail_at(deadline):
                            objects = await self._group_registry(channel, group)
                    except trio.TooSlowError:
                        out.append(RegistryGroup(name, error=f"read {name} on {where}: no answer "
                                                 f"within {s.timeout:g}s"))
                    except NodeCallError as exc:
                        out.append(RegistryGroup(name, error=str(exc)))
                    else:
                        out.append(RegistryGroup(name, tuple(
                            (kind, obj, fp) for (kind, obj), fp in sorted(objects.items()))))
                    await trio.lowlevel.checkpoint()
        except (OSError, RpcError) as exc:
            raise NodeCallError(f"read the registry on {where}: {_describe(exc)}",
                                GrpcCode.UNAVAILABLE) from None
        return out

    async def _group_registry(self, channel: Channel, group: common_pb2.Group
                              ) -> dict[tuple[str, str], int]:
        name = group.metadata.name
        rules = await _unary(channel, INDEX_RULE_LIST, db.IndexRuleRegistryServiceListRequest(group=name),
                             db.IndexRuleRegistryServiceListResponse, f"list index rules of {name}")
        bindings = await _unary(channel, BINDING_LIST,
                                db.IndexRuleBindingRegistryServiceListRequest(group=name),
                                db.IndexRuleBindingRegistryServiceListResponse,
                                f"list index rule bindings of {name}")
        resources: Sequence[Any] = ()
        if resource_kind(group.catalog) is not None:
            method, request_type, reply_type, field = _RESOURCE_LIST[group.catalog]
            reply = await _unary(channel, method, request_type(group=name), reply_type,
                                 f"list {field}s of {name}")
            resources = getattr(reply, field)
        return registry_fingerprints(group, rules.index_rule, bindings.index_rule_binding, resources)


def read_reports(directory: str, limits: ReportLimits) -> list[pb.LifecycleReport]:
    """The report files to send (blocking; run in a thread): see `select_reports` and
    `decode_report`. A missing directory gives none; every file that cannot be used is skipped
    with a warning. Symbolic links and other non-regular files are never read, and no read takes
    more than `max_file_size` + 1 bytes, whatever the file's size says."""
    try:
        with os.scandir(directory) as it:
            names = select_reports(((e.name, e.is_file(follow_symlinks=False)) for e in it), limits)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("lifecycle reports: cannot list %s: %s", directory, exc)
        return []
    reports: list[pb.LifecycleReport] = []
    for name in names:
        path = os.path.join(directory, name)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError as exc:
            log.warning("lifecycle reports: cannot open %s: %s", path, exc)
            continue
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                log.warning("lifecycle reports: %s is not a regular file", path)
                continue
            if info.st_size > limits.max_file_size:
                log.warning("lifecycle reports: %s has %d bytes, over the %d-byte limit; skipped",
                            path, info.st_size, limits.max_file_size)
                continue
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read(limits.max_file_size + 1)
        except OSError as exc:
            log.warning("lifecycle reports: cannot read %s: %s", path, exc)
            continue
        finally:
            os.close(fd)
        report = decode_report(name, data, limits)
        if isinstance(report, str):
            log.warning("lifecycle reports: skipped %s", report)
            continue
        reports.append(report)
    return reports


class LifecycleService:
    """StreamLifecycle: one StreamLifecycleRequest per `request_lifecycle` (see the module)."""

    method = STREAM_LIFECYCLE
    response_type = pb.StreamLifecycleResponse

    def __init__(self, collector: LifecycleCollector, *, pod_name: str = "") -> None:
        self.collector = collector
        self.pod_name = pod_name
        self.answered = 0
        self.failed = 0
        self.last_error = ""

    async def serve(self, call: ClientCall) -> None:
        limit = self.collector.settings.max_message_size - _MARGIN
        while (command := await call.receive()) is not None:
            if not command.request_lifecycle:
                continue
            try:
                data = await self.collector.collect()
            except NodeCallError as exc:
                self._fail(f"lifecycle data not sent: {exc}")
                continue
            except Exception as exc:  # a bug here must not take the agent's metrics down
                log.exception("lifecycle collection failed unexpectedly")
                self._fail(f"lifecycle data not sent: {_describe(exc)}")
                continue
            request = pb.StreamLifecycleRequest(pod_name=self.pod_name, lifecycle_data=data,
                                                timestamp=ts_to_proto(time.time()))
            fitted = fit_lifecycle(request, limit)
            if fitted is None:
                self._fail(f"lifecycle data not sent: its groups alone are over the "
                           f"{limit}-byte message limit (--grpc-max-msg-size)")
                continue
            if fitted.dropped_reports or fitted.stripped_data_info:
                log.warning("lifecycle answer over %d bytes: left out reports %s%s", limit,
                            ", ".join(fitted.dropped_reports) or "(none)",
                            " and every group's data_info" if fitted.stripped_data_info else "")
            await call.send(fitted.request)
            self.answered += 1

    def _fail(self, reason: str) -> None:
        self.failed += 1
        self.last_error = reason
        log.warning("%s", reason)


class SchemaRegistryService:
    """StreamSchemaRegistry: the registry's fingerprints per `request_registry` (see the module)."""

    method = STREAM_SCHEMA_REGISTRY
    response_type = pb.StreamSchemaRegistryResponse

    def __init__(self, collector: LifecycleCollector) -> None:
        self.collector = collector
        self.answered = 0
        self.last_error = ""

    async def serve(self, call: ClientCall) -> None:
        limit = self.collector.settings.max_message_size - _MARGIN
        while (command := await call.receive()) is not None:
            if not command.request_registry:
                continue
            groups: list[RegistryGroup] | None = None
            fatal = ""
            try:
                groups = await self.collector.fetch_registry()
            except NodeCallError as exc:
                fatal = str(exc) or "the registry could not be read"
                self.last_error = fatal
                log.warning("schema registry: %s", fatal)
            except Exception as exc:  # a bug here must not take the agent's metrics down
                log.exception("schema registry read failed unexpectedly")
                fatal = self.last_error = f"the agent failed reading the registry: {_describe(exc)}"
            for message in registry_messages(groups, fatal, max_bytes=limit):
                await call.send(message)
            self.answered += 1
