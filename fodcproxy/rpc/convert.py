"""Protobuf <-> core value types, in one place next to the gRPC adapter.

The core never imports generated code; only this module and the gRPC handlers do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from fodcproxy._proto.banyandb.fodc.v1 import rpc_pb2 as pb
from fodcproxy.core.model import Address, NodeConfig, Sample, TimeWindow
from fodcproxy.errors import InvalidArgument, LimitExceeded

if TYPE_CHECKING:
    from fodcproxy.core.registry import Registration, RegistrationLimits

__all__ = ["varint", "pb", "registration_from_proto", "registration_to_proto", "window_to_proto",
           "window_from_proto", "samples_from_proto", "samples_to_proto", "ts_to_proto",
           "ts_from_proto"]


def varint(n: int) -> bytes:
    """The protobuf wire encoding of a non-negative integer (for writing messages by hand)."""
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ts_to_proto(ts: float) -> Timestamp:
    seconds = math.floor(ts)
    return Timestamp(seconds=seconds, nanos=int(round((ts - seconds) * 1e9)) % 1_000_000_000)


def ts_from_proto(ts: Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def registration_from_proto(req: pb.RegisterAgentRequest, *,
                            limits: RegistrationLimits | None = None) -> Registration:
    """Validate a RegisterAgentRequest: an address agent's when `primary_address` is set, a pod
    agent's (upstream BanyanDB's agent today) otherwise.

    Raises:
        InvalidArgument: a field is missing or malformed; the message names it.
        LimitExceeded: a field is over one of `limits`; the message names the flag.
    """
    # Imported here: the agent uses this module too and must not load the proxy's registry.
    from fodcproxy.core.registry import DEFAULT_LIMITS, Registration

    if limits is None:
        limits = DEFAULT_LIMITS
    node_config = None
    if req.HasField("node_config"):
        nc = req.node_config
        size = nc.ByteSize()  # checked before it is turned into Python objects
        if size > limits.max_node_config_bytes:
            raise LimitExceeded(
                f"node_config is {size} bytes serialized: at most {limits.max_node_config_bytes} "
                "(the proxy's --max-node-config-bytes); report fewer parameters")
        node_config = NodeConfig(
            startup_params=dict(nc.startup_params),
            runtime_config=json_format.MessageToDict(nc.runtime_config),
            collected_at=ts_from_proto(nc.collected_at) if nc.HasField("collected_at") else None,
        )
    secondary = {k: Address(v.ip, v.port) for k, v in req.secondary_addresses.items()}
    if not req.HasField("primary_address"):
        return Registration.build_pod(
            pod_name=req.pod_name, role=req.node_role, labels=dict(req.labels),
            container_names=list(req.container_names), secondary_addresses=secondary,
            node_config=node_config, limits=limits)
    return Registration.build(
        role=req.node_role,
        ip=req.primary_address.ip,
        port=req.primary_address.port,
        labels=dict(req.labels),
        secondary_addresses=secondary,
        node_config=node_config,
        limits=limits,
    )


def registration_to_proto(
    *, role: str, ip: str = "", port: int = 0, labels: dict[str, str] | None = None,
    secondary_addresses: dict[str, Address] | None = None, node_config: NodeConfig | None = None,
    pod_name: str = "", container_names: Sequence[str] = (),
) -> pb.RegisterAgentRequest:
    """A RegisterAgentRequest: an address agent's (`primary_address` = `ip`:`port`) when `ip` is
    given, else a pod agent's (`pod_name`, `container_names`, no `primary_address`)."""
    req = pb.RegisterAgentRequest(node_role=role, labels=labels or {})
    if ip:
        req.primary_address.CopyFrom(pb.Address(ip=ip, port=port))
    else:
        req.pod_name = pod_name
        req.container_names.extend(container_names)
    for name, addr in (secondary_addresses or {}).items():
        req.secondary_addresses[name].CopyFrom(pb.Address(ip=addr.ip, port=addr.port))
    if node_config is not None:
        req.node_config.startup_params.update(node_config.startup_params)
        req.node_config.runtime_config.update(dict(node_config.runtime_config))
        if node_config.collected_at is not None:
            req.node_config.collected_at.CopyFrom(ts_to_proto(node_config.collected_at))
    return req


def window_to_proto(window: TimeWindow, request_id: int) -> pb.StreamMetricsResponse:
    msg = pb.StreamMetricsResponse(request_id=request_id)
    if window.start is not None:
        msg.start_time.CopyFrom(ts_to_proto(window.start))
    if window.end is not None:
        msg.end_time.CopyFrom(ts_to_proto(window.end))
    return msg


def window_from_proto(msg: pb.StreamMetricsResponse) -> TimeWindow:
    return TimeWindow(
        start=ts_from_proto(msg.start_time) if msg.HasField("start_time") else None,
        end=ts_from_proto(msg.end_time) if msg.HasField("end_time") else None,
    )


def samples_from_proto(metrics: Iterable[pb.Metric]) -> list[Sample]:
    return [
        Sample(
            name=m.name,
            labels=dict(m.labels),
            value=m.value,
            description=m.description,
            type=m.type,
            timestamp=ts_from_proto(m.timestamp) if m.HasField("timestamp") else None,
        )
        for m in metrics
    ]


def samples_to_proto(samples: Sequence[Sample]) -> list[pb.Metric]:
    out = []
    for s in samples:
        m = pb.Metric(name=s.name, labels=s.labels, value=s.value, description=s.description,
                      type=int(s.type))  # type: ignore[arg-type]  # protobuf accepts the int
        if s.timestamp is not None:
            m.timestamp.CopyFrom(ts_to_proto(s.timestamp))
        out.append(m)
    return out


def topology_from_proto(topology: pb.Topology) -> dict[str, Any]:
    """An agent's reported topology as JSON-ready data: `{"nodes": [...], "calls": [...]}`, each
    node a `database.v1.Node` in protojson with the proto's field names (roles as their names,
    times as RFC 3339), each call `{"id", "target", "source"}`; default values left out."""
    return {
        "nodes": [json_format.MessageToDict(n, preserving_proto_field_name=True)
                  for n in topology.nodes],
        "calls": [json_format.MessageToDict(c, preserving_proto_field_name=True)
                  for c in topology.calls],
    }
