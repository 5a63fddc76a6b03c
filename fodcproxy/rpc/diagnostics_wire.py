"""StreamCrashDiagnostics and StreamPressureProfiles messages, to and from the core's records.

The proxy's commands (`StreamCrashDiagnosticsResponse`, `StreamPressureProfilesResponse`: the
proto's naming is inverted) and the agent's messages decoded into `fodcproxy.core.diagnostics`
records. Our extension: a `FetchPressureProfile` with a request id and an empty profile id, type
and file path cancels the running fetch of that request id (docs/protocol.md).
"""

from __future__ import annotations

from typing import Any

from google.protobuf.message import Message

from fodcproxy.core.diagnostics import (
    Breadcrumb,
    CancelFetch,
    Chunk,
    CrashRecord,
    FetchCommand,
    PanicRecord,
    ProfileFile,
    ProfileRecord,
    Timestamp,
)
from fodcproxy.rpc.convert import pb

__all__ = ["chunk_from_proto", "crash_record_from_proto", "crash_request",
           "pressure_command", "profile_record_from_proto"]


def crash_request(request_id: int, payload: Any) -> Message:
    return pb.StreamCrashDiagnosticsResponse(request_diagnostics=True)


def pressure_command(request_id: int, payload: Any) -> Message:
    """The command for a request of the pressure stream: a list (payload None, the tracker's id
    as request id), a fetch or a cancel."""
    if isinstance(payload, FetchCommand):
        return pb.StreamPressureProfilesResponse(fetch_profile=pb.FetchPressureProfile(
            request_id=payload.request_id, profile_id=payload.profile_id, type=payload.type,
            filepath=payload.filepath))
    if isinstance(payload, CancelFetch):
        return pb.StreamPressureProfilesResponse(fetch_profile=pb.FetchPressureProfile(
            request_id=payload.request_id))
    return pb.StreamPressureProfilesResponse(list_profiles=pb.ListProfiles(
        request_id=str(request_id)))


def _ts(msg: Any, field: str) -> Timestamp | None:
    if not msg.HasField(field):
        return None
    t = getattr(msg, field)
    return (int(t.seconds), int(t.nanos))


def crash_record_from_proto(msg: Any) -> CrashRecord:
    panic = None
    if msg.HasField("panic_record"):
        p = msg.panic_record
        panic = PanicRecord(
            occurred_at=_ts(p, "occurred_at"), component=p.component, panic_value=p.panic_value,
            recovered=p.recovered, goroutine_stack=p.goroutine_stack,
            breadcrumbs=tuple(Breadcrumb(_ts(b, "time"), b.stage, b.component,
                                         tuple(sorted(b.fields.items())))
                              for b in p.breadcrumbs),
            process_metadata=tuple(sorted(p.process_metadata.items())))
    return CrashRecord(fetched_at=_ts(msg, "fetched_at"), source_endpoint=msg.source_endpoint,
                       artifact_dir=msg.artifact_dir, files=tuple(msg.files), panic=panic)


def profile_record_from_proto(msg: Any) -> ProfileRecord:
    return ProfileRecord(
        profile_id=msg.profile_id, captured_at=_ts(msg, "captured_at"),
        source_endpoint=msg.source_endpoint, rss_bytes=msg.rss_bytes,
        cgroup_limit_bytes=msg.cgroup_limit_bytes, trigger_percent=msg.trigger_percent,
        threshold_bytes=msg.threshold_bytes,
        profiles=tuple(ProfileFile(p.type, p.filename, p.filepath, p.format, p.size_bytes)
                       for p in msg.profiles))


def chunk_from_proto(msg: Any) -> Chunk:
    return Chunk(request_id=msg.request_id, profile_id=msg.profile_id, type=msg.type,
                 data=msg.data, last=msg.last, error=msg.error)
