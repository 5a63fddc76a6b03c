"""An agent that talks like upstream BanyanDB's FODC agent does today, on Google's gRPC stack.

Its messages are compiled at test time from upstream's own proto (`../shared/upstream/
fodc-v1-rpc.head.proto`, beside the checkout), with its imports of BanyanDB's `common/v1` and
`database/v1` trimmed to the messages used: our `proto/banyandb/{common,database}/v1` stand in
for them. Everything is renamed into the package prefix `upstreamcopy` so that it never meets
our own generated code in protobuf's descriptor pool; the wire does not carry package names, and
the method paths are given as upstream's.

What it does, as upstream's agent does (the facts are in `../shared/upstream/README.md`):
- one gRPC connection; RegisterAgent first, then StreamMetrics, StreamClusterTopology,
  StreamLifecycle, StreamSchemaRegistry, StreamCrashDiagnostics, StreamPressureProfiles, in that
  order, each with metadata `agent_id`;
- registers with `pod_name`, `container_names` and (by default) ROLE_UNSPECIFIED; needs a
  non-empty `agent_id`; heartbeats resend the full request (`upgrade()` changes it);
- answers each metrics request with one reply carrying no request id, stamped with
  `node_role`, `pod_name`, `container_name`; `skip_next()` makes it ignore one request;
- answers `request_topology` with the topology it was given;
- when given `lifecycle` (a function of the message module returning its `LifecycleData`, or
  None for a collection that failed, after which upstream's agent sends nothing, or bytes to
  send as they are), answers
  `request_lifecycle` with one `StreamLifecycleRequest{timestamp, pod_name, lifecycle_data}`;
- when given `registry` (a function returning its `SchemaRegistryGroup`s, or a string: the
  fatal whole-read error), answers `request_registry` as upstream's `sendSchemaRegistry` does: a
  failed group as one message with its error, a group's objects in chunks of `registry_chunk`
  (50 upstream; an empty group still one message), or the fatal error as one chunk with an empty
  group name; then a message with only `done`;
- holds the other streams idle;
- if any stream ends, it records why (upstream's agent would tear everything down and register
  again: a test asserts that never happens while it is healthy).
"""

from __future__ import annotations

import importlib
import pathlib
import queue
import re
import sys
import threading
from typing import Any

import grpc

ROOT = pathlib.Path(__file__).resolve().parent.parent
# `shared/` sits beside the checkout (or beside the folder of git worktrees, /work/wt/<name>).
UPSTREAM = next((p / "shared" / "upstream" / "fodc-v1-rpc.head.proto" for p in ROOT.parents
                 if (p / "shared" / "upstream" / "fodc-v1-rpc.head.proto").is_file()),
                ROOT.parent / "shared" / "upstream" / "fodc-v1-rpc.head.proto")
SERVICE = "/banyandb.fodc.v1.FODCService/"
STREAMS = ("StreamMetrics", "StreamClusterTopology", "StreamLifecycle", "StreamSchemaRegistry",
           "StreamCrashDiagnostics", "StreamPressureProfiles")
_PREFIX = "upstreamcopy"


def _rename(text: str) -> str:
    text = re.sub(r"^package banyandb\.", f"package {_PREFIX}.", text, flags=re.M)
    text = re.sub(r"(?<![\w.])banyandb\.(common|database)\.v1\.", rf"{_PREFIX}.\1.v1.", text)
    return re.sub(r'^import "banyandb/', f'import "{_PREFIX}/banyandb/', text, flags=re.M)


def compile_upstream(out: pathlib.Path) -> Any:
    """Compile upstream's proto (and our stand-ins for its imports) into `out`; returns the
    module of upstream's FODC messages. Skips the calling test when upstream's proto is not
    beside the checkout (../shared/upstream)."""
    if not UPSTREAM.exists():
        import pytest

        pytest.skip("upstream's proto (../shared/upstream) is not beside the checkout")
    import grpc_tools
    from grpc_tools import protoc

    src = out / "src"
    files = {
        "banyandb/fodc/v1/rpc.proto": UPSTREAM.read_text(),
        "banyandb/common/v1/common.proto": (ROOT / "proto/banyandb/common/v1/common.proto").read_text(),
        "banyandb/database/v1/database.proto": (ROOT / "proto/banyandb/database/v1/database.proto").read_text(),
        "banyandb/database/v1/rpc.proto": (ROOT / "proto/banyandb/database/v1/rpc.proto").read_text(),
        "banyandb/database/v1/schema.proto": (ROOT / "proto/banyandb/database/v1/schema.proto").read_text(),
    }
    for rel, text in files.items():
        path = src / _PREFIX / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_rename(text))
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    py = out / "py"
    py.mkdir(exist_ok=True)
    names = [f"{_PREFIX}/{rel}" for rel in files]
    assert protoc.main(["protoc", f"-I{src}", f"-I{include}", f"--python_out={py}", *names]) == 0
    for d in [py, *[p for p in py.rglob("*") if p.is_dir()]]:
        (d / "__init__.py").touch()
    if str(py) not in sys.path:
        sys.path.insert(0, str(py))
    return importlib.import_module(f"{_PREFIX}.banyandb.fodc.v1.rpc_pb2")


class UpstreamLikeAgent:
    """Run with `threading.Thread(target=agent.run)`; `stop()` ends it (a goodbye)."""

    def __init__(self, target: str, m: Any, *, pod_name: str, role: str = "ROLE_UNSPECIFIED",
                 labels: dict[str, str] | None = None, containers: tuple[str, ...] = ("data",),
                 heartbeat: float = 0.2, topology: Any = None,
                 streams: tuple[str, ...] = STREAMS, answer_topology: bool = True,
                 unasked: bytes | None = None, lifecycle: Any = None, registry: Any = None,
                 registry_chunk: int = 50, crash_records: tuple[Any, ...] = (),
                 profiles: dict[str, tuple[Any, dict[str, bytes]]] | None = None) -> None:
        self.target = target
        self.m = m
        self.pod_name = pod_name
        self.role = role
        self.labels = dict(labels or {})
        self.containers = containers
        self.heartbeat = heartbeat
        self.topology = topology
        self.streams = streams
        self.answer_topology = answer_topology
        # Sent on StreamClusterTopology as soon as it opens, unasked (raw bytes of one message).
        self.unasked = unasked
        self.lifecycle = lifecycle
        self.registry = registry
        self.registry_chunk = registry_chunk
        self.lifecycle_requests = 0
        self.registry_requests = 0
        # StreamCrashDiagnostics: these StreamCrashDiagnosticsRequest, one message each, no end
        # marker, on every request_diagnostics (as upstream's sendCrashCollections).
        self.crash_records = crash_records
        # StreamPressureProfiles: profile id -> (PressureProfileRecord, {type: bytes}); served as
        # upstream's handlePressureProfilesStream does, one command at a time.
        self.profiles = dict(profiles or {})
        self.diagnostics_requests = 0
        self.pressure_commands: list[Any] = []
        self.agent_id = ""
        self.registered = threading.Event()
        self.opened = threading.Event()  # every stream is open
        self.metrics_requests = 0
        self.topology_requests = 0
        self.ended: list[tuple[str, Any]] = []  # (stream, status code) of streams that ended
        self.stopping = threading.Event()
        self._skip = 0
        self._lock = threading.Lock()
        self._queues: dict[str, queue.Queue] = {}

    # -- what a test changes -------------------------------------------------------------------

    def upgrade(self, role: str, labels: dict[str, str] | None = None) -> None:
        """Later heartbeats carry this role (and labels), as upstream's agent does once it knows."""
        with self._lock:
            self.role = role
            if labels is not None:
                self.labels = dict(labels)

    def skip_next(self) -> None:
        """Do not answer the next metrics request at all."""
        with self._lock:
            self._skip += 1

    def stop(self) -> None:
        self.stopping.set()
        for q in self._queues.values():
            q.put(None)

    # -- the agent -----------------------------------------------------------------------------

    def request(self) -> Any:
        with self._lock:
            return self.m.RegisterAgentRequest(node_role=self.role, labels=self.labels,
                                               pod_name=self.pod_name,
                                               container_names=list(self.containers))

    def _stream(self, channel: grpc.Channel, name: str, req_type: Any, resp_type: Any) -> Any:
        q: queue.Queue = queue.Queue()
        self._queues[name] = q

        def drain():
            while (item := q.get()) is not None:
                yield item

        call = channel.stream_stream(SERVICE + name, request_serializer=_serialize,
                                     response_deserializer=resp_type.FromString)
        return q, call(drain(), metadata=(("agent_id", self.agent_id),))

    def run(self) -> None:
        m = self.m
        # Its own connection, as a real agent has (grpcio would share one between channels).
        options = [("grpc.use_local_subchannel_pool", 1)]
        with grpc.insecure_channel(self.target, options=options) as channel:
            reg_q: queue.Queue = queue.Queue()
            self._queues["RegisterAgent"] = reg_q

            def drain():
                while (item := reg_q.get()) is not None:
                    yield item

            register = channel.stream_stream(
                SERVICE + "RegisterAgent", request_serializer=m.RegisterAgentRequest.SerializeToString,
                response_deserializer=m.RegisterAgentResponse.FromString)
            reg_q.put(self.request())
            responses = register(drain())
            first = next(responses)
            assert first.success and first.agent_id, first.message
            self.agent_id = first.agent_id
            self.registered.set()
            types = {
                "StreamMetrics": (m.StreamMetricsRequest, m.StreamMetricsResponse),
                "StreamClusterTopology": (m.StreamClusterTopologyRequest,
                                          m.StreamClusterTopologyResponse),
                "StreamLifecycle": (m.StreamLifecycleRequest, m.StreamLifecycleResponse),
                "StreamSchemaRegistry": (m.StreamSchemaRegistryRequest,
                                         m.StreamSchemaRegistryResponse),
                "StreamCrashDiagnostics": (m.StreamCrashDiagnosticsRequest,
                                           m.StreamCrashDiagnosticsResponse),
                "StreamPressureProfiles": (m.StreamPressureProfilesRequest,
                                           m.StreamPressureProfilesResponse),
            }
            threads = [threading.Thread(target=self._acks, args=(responses,), daemon=True)]
            for name in self.streams:
                q, incoming = self._stream(channel, name, *types[name])
                threads.append(threading.Thread(target=self._serve, args=(name, q, incoming),
                                                daemon=True))
            for t in threads:
                t.start()
            self.opened.set()
            while not self.stopping.wait(self.heartbeat):
                reg_q.put(self.request())  # a heartbeat is the full request again
            for q in self._queues.values():
                q.put(None)
            for t in threads:
                t.join(timeout=5)

    def _acks(self, responses: Any) -> None:
        try:
            for _ in responses:  # upstream's agent ignores the acks
                pass
            self.ended.append(("RegisterAgent", grpc.StatusCode.OK))
        except grpc.RpcError as exc:
            self.ended.append(("RegisterAgent", exc.code()))

    def _serve(self, name: str, q: queue.Queue, incoming: Any) -> None:
        m = self.m
        if name == "StreamClusterTopology" and self.unasked is not None:
            q.put(_Raw(self.unasked))
        try:
            for req in incoming:
                if name == "StreamMetrics":
                    self.metrics_requests += 1
                    with self._lock:
                        if self._skip:
                            self._skip -= 1
                            continue
                        role = self.role
                    q.put(m.StreamMetricsRequest(metrics=[m.Metric(
                        name="banyandb_system_up_time", value=float(self.metrics_requests),
                        type=m.METRIC_TYPE_GAUGE, description="seconds up",
                        labels={"node_role": role, "pod_name": self.pod_name,
                                "container_name": self.containers[0]})]))
                elif name == "StreamLifecycle" and req.request_lifecycle:
                    self.lifecycle_requests += 1
                    data = self.lifecycle(m) if self.lifecycle is not None else None
                    if isinstance(data, bytes):  # sent as it is: a malformed message
                        q.put(_Raw(data))
                    elif data is not None:
                        request = m.StreamLifecycleRequest(pod_name=self.pod_name,
                                                           lifecycle_data=data)
                        request.timestamp.GetCurrentTime()
                        q.put(request)
                elif name == "StreamSchemaRegistry" and req.request_registry:
                    self.registry_requests += 1
                    if self.registry is not None:
                        for message in self._registry_messages(self.registry(m)):
                            q.put(message)
                elif name == "StreamCrashDiagnostics" and req.request_diagnostics:
                    self.diagnostics_requests += 1
                    for record in self.crash_records:
                        q.put(record)
                elif name == "StreamPressureProfiles":
                    self.pressure_commands.append(req)
                    self._pressure(q, req)
                elif name == "StreamClusterTopology" and req.request_topology:
                    self.topology_requests += 1
                    if self.answer_topology:
                        q.put(m.StreamClusterTopologyRequest(topology=self.topology or m.Topology()))
            self.ended.append((name, grpc.StatusCode.OK))
        except grpc.RpcError as exc:
            if not self.stopping.is_set():
                self.ended.append((name, exc.code()))


    def _registry_messages(self, groups: Any) -> list[Any]:
        """Upstream's `sendSchemaRegistry` and `sendSchemaRegistryGroup`, message by message."""
        m = self.m
        out = []
        if isinstance(groups, str):
            out.append(m.StreamSchemaRegistryRequest(group=m.SchemaRegistryGroup(error=groups)))
        else:
            for g in groups:
                if g.error:
                    out.append(m.StreamSchemaRegistryRequest(group=m.SchemaRegistryGroup(
                        group=g.group, error=g.error)))
                    continue
                objects = list(g.objects)
                start = 0
                while True:
                    end = min(start + self.registry_chunk, len(objects))
                    out.append(m.StreamSchemaRegistryRequest(group=m.SchemaRegistryGroup(
                        group=g.group, objects=objects[start:end])))
                    if end == len(objects):
                        break
                    start = end
        out.append(m.StreamSchemaRegistryRequest(done=True))
        return out
    def _pressure(self, q: queue.Queue, req: Any) -> None:
        m = self.m
        which = req.WhichOneof("command")
        if which == "list_profiles":
            for record, _ in self.profiles.values():
                q.put(m.StreamPressureProfilesRequest(record=record))
            q.put(m.StreamPressureProfilesRequest(list_complete=m.ListComplete(
                request_id=req.list_profiles.request_id)))
            return
        if which != "fetch_profile":
            return
        f = req.fetch_profile
        data = None
        for record, blobs in self.profiles.values():
            for info in record.profiles:
                if info.filepath and info.filepath == f.filepath:
                    data = blobs.get(info.type)

        def chunk(**fields: Any) -> Any:
            return m.StreamPressureProfilesRequest(chunk=m.PressureProfileChunk(
                request_id=f.request_id, profile_id=f.profile_id, type=f.type, **fields))

        if data is None:  # upstream: the open error, in one last chunk
            q.put(chunk(error=f"open {f.filepath}: no such file or directory", last=True))
            return
        size = 1 << 20  # upstream's pressureChunkSize; the last chunk carries no data (EOF)
        for start in range(0, len(data), size):
            q.put(chunk(data=data[start:start + size]))
        q.put(chunk(last=True))


class _Raw:
    """Bytes sent as they are, in place of a message (an unasked or malformed one)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _serialize(message: Any) -> bytes:
    return message.data if isinstance(message, _Raw) else message.SerializeToString()
