"""Fake agents with scripted series and misbehaviours on tap.

A fake agent is the real `AgentClient` (same protocol code as `python -m fodcproxy agent`) with a
scripted source instead of a flight recorder. Misbehaviours are attributes that can be changed at
any time, and take effect at the next request (or heartbeat):

| attribute / method        | what the proxy sees                                                |
|---------------------------|--------------------------------------------------------------------|
| `delay = 2.0`             | a slow answer (`fodc_agent_up 0` when over the collect timeout)    |
| `hang = True`             | no answer at all, until `hang = False` (see below)                 |
| `echo_request_id = False` | replies with request id 0, like an agent built from the seed's proto |
| `skip = 1`                | the next request(s) get no reply at all; later ones are answered   |
| `heartbeats = False`      | streams open, heartbeats stop: offline after the heartbeat timeout |
| `oversized = 5_000_000`   | one reply message of that many bytes, unchunked: RESOURCE_EXHAUSTED |
| `malformed = True`        | a reply that is not protobuf: INVALID_ARGUMENT                     |
| `drop_mid_reply = True`   | part of a reply, then the connection is lost (no goodbye)          |
| `drop()`                  | the connection is lost now (no goodbye); the client reconnects     |
| `disconnect()`            | graceful goodbye: removed at once                                  |

A fake agent is an *address agent* (`ip`, `port`: identity = the node's primary address, like
`python -m fodcproxy agent --node-ip ...`) or, given `pod_name` and no `ip`, a *pod agent* like
upstream BanyanDB's agent today (identity = the pod, `container_names` registered with it; roles
such as `ROLE_LIAISON`, or `ROLE_DATA` with node label `type`). A pod agent stamps `node_role`,
`pod_name`, `container_name` (its first container's) and `node_<k>` on every series it answers,
as upstream's does (`stamp=False` turns that off; `stamp=True` turns it on for an address agent).

After an oversized or malformed reply the proxy ends the metrics stream; the client then starts a
new session (same identity, same `agent_id`) after its reconnect backoff.

`hang = False` undoes `hang = True`: the request held meanwhile is answered then (late: the proxy
has given up on it and drops the reply, counting it in `fodc_proxy_dropped_replies_total`), so
are the requests that queued up behind it, and the agent answers as usual from then on, with
whatever misbehaviour is set by then.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

import attrs
import trio
from trio_util import AsyncBool

from fodcproxy.agent.client import AgentClient, AgentService, AgentSpec
from fodcproxy.agent.recorder import EXPORTED, stamp_labels
from fodcproxy.core.model import MetricType, NodeConfig, TimeWindow
from fodcproxy.rpc import convert
from fodcproxy.rpc.client import ClientCall
from fodcproxy.rpc.convert import pb

#: Not a protobuf message: a field tag whose varint never ends.
MALFORMED_REPLY = b"\xff\xff\xff\xff"


@attrs.define(eq=False)
class Series:
    """One scripted metric family. `produce(window, request_no, now)` -> protobuf Metrics."""

    name: str
    produce: Callable[[TimeWindow, int, float], list[Any]]


def _metric(name: str, value: float, labels: Mapping[str, str] | None, mtype: MetricType,
            help: str, ts: float | None = None) -> Any:
    m = pb.Metric(name=name, value=value, labels=dict(labels or {}), description=help,
                  type=int(mtype))  # type: ignore[arg-type]  # protobuf accepts the int
    if ts is not None:
        m.timestamp.CopyFrom(convert.ts_to_proto(ts))
    return m


def static(name: str, value: float, *, labels: Mapping[str, str] | None = None,
           type: MetricType = MetricType.GAUGE, help: str = "") -> Series:
    """A series whose value never changes (latest requests; windows get one point at `now`)."""
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        return [_metric(name, value, labels, type, help, None if window.is_latest else now)]
    return Series(name, produce)


def counter(name: str, *, start: float = 0.0, step: float = 1.0,
            labels: Mapping[str, str] | None = None, help: str = "") -> Series:
    """A counter that grows by `step` with every request answered."""
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        return [_metric(name, start + step * n, labels, MetricType.COUNTER, help,
                        None if window.is_latest else now)]
    return Series(name, produce)


def histogram(name: str, *, buckets: Sequence[float] = (0.1, 1.0), observations: Sequence[float] = (0.05, 0.5, 2.0),
              labels: Mapping[str, str] | None = None, help: str = "") -> Series:
    """A histogram family (`_bucket` with `le`, `_sum`, `_count`) over fixed observations."""
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        base = dict(labels or {})
        out = []
        for b in list(buckets) + [float("inf")]:
            le = "+Inf" if b == float("inf") else repr(float(b))
            count = sum(1 for o in observations if o <= b)
            out.append(_metric(f"{name}_bucket", count, {**base, "le": le}, MetricType.HISTOGRAM, help))
        out.append(_metric(f"{name}_sum", sum(observations), base, MetricType.HISTOGRAM, help))
        out.append(_metric(f"{name}_count", len(observations), base, MetricType.HISTOGRAM, help))
        return out
    return Series(name, produce)


def summary(name: str, *, quantiles: Mapping[float, float] | None = None, count: float = 100.0,
            sum_value: float = 2.5, labels: Mapping[str, str] | None = None, help: str = "") -> Series:
    """A summary family: `name{quantile=...}` for each of `quantiles` (q -> value), `_sum`, `_count`.

    The default quantiles are {0.5: 0.01, 0.9: 0.05, 0.99: 0.2}.
    """
    qs = dict(quantiles if quantiles is not None else {0.5: 0.01, 0.9: 0.05, 0.99: 0.2})

    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        base = dict(labels or {})
        ts = None if window.is_latest else now
        out = [_metric(name, v, {**base, "quantile": repr(float(q))}, MetricType.SUMMARY, help, ts)
               for q, v in sorted(qs.items())]
        out.append(_metric(f"{name}_sum", sum_value, base, MetricType.SUMMARY, help, ts))
        out.append(_metric(f"{name}_count", count, base, MetricType.SUMMARY, help, ts))
        return out
    return Series(name, produce)


def history(name: str, points: Sequence[tuple[float, float]], *, labels: Mapping[str, str] | None = None,
            type: MetricType = MetricType.GAUGE, help: str = "") -> Series:
    """Timestamped points (Unix seconds, value): latest gives the last, a window those inside it."""
    pts = sorted(points)

    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        if window.is_latest:
            chosen = pts[-1:]
        else:
            chosen = [p for p in pts if window.contains(p[0])]
        return [_metric(name, v, labels, type, help, ts) for ts, v in chosen]
    return Series(name, produce)


def rolling(name: str, value_at: Callable[[float], float], *, step: float = 10.0,
            span: float = 900.0, labels: Mapping[str, str] | None = None,
            type: MetricType = MetricType.GAUGE, help: str = "") -> Series:
    """A history that moves with the clock: a point every `step` seconds over the last `span`.

    `value_at(t)` gives the value at Unix time `t`. A latest request gets `value_at(now)` stamped
    `now`; a window gets the points on the `step` grid inside both the window and the last `span`
    seconds, so a counter written as `lambda t: rate * (t - t0)` grows, and a window over the last
    15 minutes is always full.
    """
    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        if window.is_latest:
            return [_metric(name, value_at(now), labels, type, help, now)]
        last = math.floor(now / step) * step
        first = last - math.floor(span / step) * step
        if window.start is not None:
            first = max(first, math.ceil(window.start / step) * step)
        if window.end is not None:
            last = min(last, math.floor(window.end / step) * step)
        out = []
        t = first
        while t <= last:
            out.append(_metric(name, value_at(t), labels, type, help, t))
            t += step
        return out
    return Series(name, produce)


#: Label values that break naive exposition writers: quotes, backslashes, newlines, braces,
#: comment markers, control and non-ASCII characters, an empty and a very long value.
HOSTILE_LABEL_VALUES: tuple[str, ...] = (
    'a "quoted" value',
    "back\\slash \\n not a newline",
    "line one\nline two",
    "tab\there\r\nand CRLF",
    "} # HELP x y\n# TYPE x counter",
    'x{a="b"} 1',
    "",
    "nul \x00 char",
    "ünïcødé ☃ 日本語 🙂",
    "=,;:'",
    "v" * 4096,
)

#: Label names that are not valid Prometheus label names, are reserved (`__*`), or clash with
#: the labels the proxy adds (`agent_id`, `node_role`, `exported_agent_id`, ...).
HOSTILE_LABEL_NAMES: tuple[str, ...] = (
    "0starts_with_digit",
    "has-dash",
    "has space",
    "has.dot",
    "__reserved",
    "__name__",
    "agent_id",
    "node_role",
    "exported_agent_id",
    "ünï",
    "le",
    "quantile",
    "a" * 300,
)


def hostile(name: str = "fodc_fake_hostile", *, help: str = 'help with "quotes", \\ and\na newline',
            type: MetricType = MetricType.GAUGE) -> Series:
    """Samples whose label values and names are hostile to exposition writers and parsers.

    One sample per entry of `HOSTILE_LABEL_VALUES` (as the value of label `v`), one per entry of
    `HOSTILE_LABEL_NAMES` (as a label name), and one carrying every hostile name at once. Each
    sample also has a `case` label, so no two are the same series however names are repaired.
    """
    samples: list[tuple[dict[str, str], float]] = []
    for i, value in enumerate(HOSTILE_LABEL_VALUES):
        samples.append(({"case": f"value-{i}", "v": value}, float(i)))
    for i, label in enumerate(HOSTILE_LABEL_NAMES):
        samples.append(({"case": f"name-{i}", label: "x"}, float(i)))
    samples.append(({"case": "all-names", **{label: str(i) for i, label in enumerate(HOSTILE_LABEL_NAMES)}},
                    -1.0))

    def produce(window: TimeWindow, n: int, now: float) -> list[Any]:
        ts = None if window.is_latest else now
        return [_metric(name, v, labels, type, help, ts) for labels, v in samples]
    return Series(name, produce)


class _ScriptedClient(AgentClient):
    """The protocol client, with a way to reply wrongly on purpose (oversized, garbage, cut off)."""

    def __init__(self, fake: FakeAgent, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._fake = fake
        self.reply_call: ClientCall | None = None

    async def _send_chunks(self, call: ClientCall, request_id: int, metrics: Sequence[Any]) -> None:
        fake = self._fake
        self.reply_call = call
        if fake.skip > 0:
            fake.skip -= 1
        elif fake.malformed:
            await call._stream._send(MALFORMED_REPLY)
        elif fake.oversized:
            padding = pb.Metric(name="fodc_fake_padding", description="x" * fake.oversized)
            data = pb.StreamMetricsRequest(request_id=request_id,
                                           metrics=[*_as_metrics(metrics), padding]).SerializeToString()
            # purerpc also refuses to *send* over the connection's own limit; lift it for this one
            # message, since going over the proxy's limit is the point.
            config = call._stream._grpc_connection.config
            config._max_message_length = max(config._max_message_length, len(data))
            await call._stream._send(data)
        elif fake.drop_mid_reply:
            half = _as_metrics(metrics[: len(metrics) // 2])
            await call.send(pb.StreamMetricsRequest(request_id=request_id, metrics=half, more=True))
            self.drop_connection()
            await trio.sleep_forever()  # cancelled by the drop
        else:
            await super()._send_chunks(call, request_id, metrics)


def _stamp(metric: Any, stamp: Mapping[str, str]) -> Any:
    """`metric` (a protobuf Metric or its bytes) with the `stamp` labels, like an upstream agent:
    a label of a stamped name with another value is kept as exported_<name>. Series may hand out
    the same object again: stamping it twice changes nothing."""
    m = pb.Metric.FromString(metric) if type(metric) is bytes else metric
    labels = m.labels
    for key, value in stamp.items():
        old = labels.get(key)
        if old is not None and old != value:
            name = EXPORTED + key
            while name in labels:
                name = EXPORTED + name
            labels[name] = old
        labels[key] = value
    return m


def _as_metrics(metrics: Sequence[Any]) -> list[Any]:
    """Metrics as protobuf objects (a source may hand over serialized ones)."""
    return [pb.Metric.FromString(m) if type(m) is bytes else m for m in metrics]


class FakeAgent:
    """A scripted agent. Change `series` and the misbehaviours (see the module doc) at any time.

    `requests` lists every window asked for (unless `keep_requests=False`, for long load runs);
    `request_count` counts them either way.
    """

    def __init__(self, proxy_address: str, *, role: str, ip: str = "", port: int = 0,
                 labels: Mapping[str, str] | None = None, series: Sequence[Series] = (),
                 heartbeat_interval: float = 10.0, reconnect_interval: float = 0.5,
                 node_config: NodeConfig | None = None, max_message_size: int = 4 * 1024 * 1024,
                 clock: Callable[[], float] = time.time, keep_requests: bool = True,
                 pod_name: str = "", container_names: Sequence[str] = (),
                 stamp: bool | None = None, services: Sequence[AgentService] = ()) -> None:
        if not ip and not pod_name:
            raise ValueError("a fake agent needs ip and port (an address agent) or pod_name "
                             "(a pod agent)")
        host, _, port_text = proxy_address.rpartition(":")
        spec = AgentSpec(role=role, ip=ip, port=port, labels=dict(labels or {}),
                         pod_name="" if ip else pod_name,
                         container_names=() if ip else tuple(container_names))
        if stamp if stamp is not None else spec.is_pod:
            self.stamp: dict[str, str] = stamp_labels(
                role=role, labels=labels, pod_name=spec.pod_name,
                container_name=container_names[0] if container_names else "")
        else:
            self.stamp = {}
        self.series: list[Series] = list(series)
        self.delay = 0.0
        self._hang = AsyncBool(False)
        self.skip = 0
        self.oversized = 0
        self.malformed = False
        self.drop_mid_reply = False
        self.requests: list[TimeWindow] = []
        self.request_count = 0
        self.node_config = node_config
        self._keep_requests = keep_requests
        self._clock = clock
        self.client: AgentClient = _ScriptedClient(
            self,
            host.strip("[]"), int(port_text), spec, self._source, heartbeat_interval=heartbeat_interval,
            reconnect_interval=reconnect_interval, reconnect_max=max(reconnect_interval, 5.0),
            max_message_size=max_message_size, node_config=lambda: self.node_config,
            services=services)

    @property
    def agent_id(self) -> str:
        """The id the proxy gave at the first registration (stable across reconnects)."""
        assert self.client.agent_id is not None, "not registered yet"
        return self.client.agent_id

    @property
    def hang(self) -> bool:
        """True: requests get no answer. Setting it back to False answers the held request (late)
        and the agent carries on."""
        return self._hang.value

    @hang.setter
    def hang(self, value: bool) -> None:
        self._hang.value = bool(value)

    @property
    def echo_request_id(self) -> bool:
        return self.client.echo_request_id

    @echo_request_id.setter
    def echo_request_id(self, value: bool) -> None:
        self.client.echo_request_id = value

    @property
    def heartbeats(self) -> bool:
        """False: keep both streams open but send no heartbeats (the proxy's timeout applies)."""
        return self.client.send_heartbeats

    @heartbeats.setter
    def heartbeats(self, value: bool) -> None:
        self.client.send_heartbeats = value

    @property
    def reply_status(self) -> tuple[int, str] | None:
        """How the proxy ended the metrics stream that carried the last reply (None: still open).

        E.g. `(GrpcCode.RESOURCE_EXHAUSTED, "message of ... bytes is over ...")` after `oversized`.
        """
        call = self.client.reply_call if isinstance(self.client, _ScriptedClient) else None
        return call.status if call is not None else None

    def set_series(self, series: Sequence[Series]) -> None:
        """Replace every series; the next request sees the new ones."""
        self.series = list(series)

    async def _source(self, window: TimeWindow) -> list[Any]:
        n = self.request_count
        self.request_count += 1
        if self._keep_requests:
            self.requests.append(window)
        if self._hang.value:
            await self._hang.wait_value(False)
        if self.delay:
            await trio.sleep(self.delay)
        now = self._clock()
        out: list[Any] = []
        for s in self.series:
            out.extend(s.produce(window, n, now))
        if self.stamp:
            out = [_stamp(m, self.stamp) for m in out]
        return out

    async def run(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Stay connected until `disconnect()`; reports the agent_id once registered."""
        await self.client.run(task_status=task_status)

    async def wait_registered(self) -> str:
        """Wait until the agent is registered (again, after a drop); returns its agent_id."""
        return await self.client.wait_registered()

    def disconnect(self) -> None:
        """Graceful goodbye: the proxy removes the agent at once."""
        self.client.stop()

    def drop(self) -> None:
        """Lose the connection without a goodbye; the client reconnects after its backoff."""
        self.client.drop_connection()


@contextlib.asynccontextmanager
async def open_fake_agent(proxy_address: str, *, role: str, ip: str = "", port: int = 0,
                          labels: Mapping[str, str] | None = None, series: Sequence[Series] = (),
                          **options: Any) -> AsyncIterator[FakeAgent]:
    """A fake agent, registered and with its metrics stream open, for the duration of the block.

    `options` are the other keyword arguments of `FakeAgent` (`pod_name=..., container_names=...`
    without `ip` and `port` make a pod agent). Leaving the block says goodbye.
    """
    agent = FakeAgent(proxy_address, role=role, ip=ip, port=port, labels=labels, series=series,
                      **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(agent.run)
        try:
            yield agent
        finally:
            agent.disconnect()
