"""Agents' metric replies on the proxy's hot path: `StreamMetricsRequest` chunks, digested.

A scrape of a big cluster is ~100k `Metric` messages, and most of them differ from the agent's
previous reply only in their value (and, for windows, their timestamp). Turning each into a Python
protobuf object and reading its label map costs more than everything else the proxy does with it,
so the metrics stream is decoded with `RawReply`: the same wire format, with each `Metric` kept as
its serialized bytes. A `SeriesTable` (one per agent connection) then digests each blob:

- A blob is split around its `value` field (3) and its `timestamp` field (5). What is left (name,
  labels, description, type, in the order the agent wrote them) identifies the series: its
  *template*. The first blob of a template is decoded in full by protobuf (so anything protobuf
  refuses is refused here too) and the series is added to the table's `SeriesSet`.
- A later blob that is byte for byte the template with another value and timestamp (checked with
  `startswith`/`endswith` against the series at the same position in the previous reply, else the
  previous blob's) is read without protobuf: the value is 8 bytes, the timestamp a small message
  decoded once per distinct timestamp. Blobs that do not line up are split by a small wire-format
  walker and looked up by their template (or, for agents that write map entries in random order
  as Go does, by their sorted fields); blobs the walker does not accept (a field twice, groups,
  ...) are decoded by protobuf every time.

The result is `DigestedSamples` (series ids, values, timestamps as columns of the agent's
`SeriesSet`), which the renderers read directly; the table fills only that series model (what a
renderer remembers per series, it keeps itself). When a reply is complete (`finish()`), its
samples are restricted to what the request asked for (`DigestedSamples.restrict_to`): the newest
point of each series for "latest", the points inside the window otherwise, whatever the agent
sent. Nothing here knows Trio.
"""

from __future__ import annotations

import struct
from array import array
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError
from google.protobuf.timestamp_pb2 import Timestamp

from fodcproxy.core.model import TimeWindow
from fodcproxy.core.series import DigestedSamples, SeriesSet
from fodcproxy.errors import InvalidArgument, LimitExceeded
from fodcproxy.rpc.convert import pb, ts_from_proto

__all__ = ["MAX_LABELS_PER_SAMPLE", "MAX_LABEL_LENGTH", "Interner", "RawReply",
           "SampleLimitExceeded", "SeriesTable"]

_VALUE_FIELD = 3
_TIMESTAMP_FIELD = 5
_VALUE_TAG = (_VALUE_FIELD << 3) | 1  # fixed64
_TIMESTAMP_TAG = (_TIMESTAMP_FIELD << 3) | 2  # length-delimited
_unpack_double = struct.Struct("<d").unpack_from


def _raw_reply_class() -> Any:
    """`StreamMetricsRequest` with every message field (the metrics, the timestamp) as `bytes`.

    Built from the generated descriptor, so the field numbers can never drift from the proto.
    """
    fdp = descriptor_pb2.FileDescriptorProto(name="fodcproxy_raw_reply.proto",
                                             package="fodcproxy.raw", syntax="proto3")
    msg = fdp.message_type.add()
    pb.StreamMetricsRequest.DESCRIPTOR.CopyToProto(msg)
    msg.name = "RawReply"
    for field in msg.field:
        if field.type == descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            field.ClearField("type_name")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("fodcproxy.raw.RawReply"))


#: Decodes a `StreamMetricsRequest` with `metrics` as a list of serialized `Metric` blobs.
RawReply = _raw_reply_class()


# Limits on one sample, checked once per new series (a repeated series is the same bytes).
MAX_LABELS_PER_SAMPLE = 128
MAX_LABEL_LENGTH = 4096  # characters of a metric name, label name or label value


class SampleLimitExceeded(LimitExceeded):
    """A sample in an agent's reply is over a per-sample limit; the reply is refused."""


def _check_limits(name: str, items: tuple[tuple[str, str], ...]) -> None:
    if len(items) > MAX_LABELS_PER_SAMPLE:
        raise SampleLimitExceeded(
            f"a sample of {name[:64]!r} has {len(items)} labels: at most {MAX_LABELS_PER_SAMPLE} "
            "per sample are accepted")
    longest = max([len(name)] + [max(len(k), len(v)) for k, v in items])
    if longest > MAX_LABEL_LENGTH:
        raise SampleLimitExceeded(
            f"a sample of {name[:64]!r} has a name, label name or label value of {longest} "
            f"characters: at most {MAX_LABEL_LENGTH} are accepted")


def _bad(exc: Exception) -> InvalidArgument:
    return InvalidArgument(f"the message does not decode as the expected protobuf: a Metric: {exc}")


_Cut = tuple[int, int, int, int, list[tuple[int, int, int]]]


def _split(b: bytes) -> _Cut | None:
    """Where the value and timestamp fields of a serialized `Metric` are.

    Returns (v, v_end, t, t_end, fields): the value field is b[v:v_end] (empty when absent: v ==
    v_end is where it would be), the timestamp field b[t:t_end] (the same), with v_end <= t;
    `fields` lists every field as (start, end, number). None when the blob does not have that
    shape (value or timestamp twice, groups, bad framing): such blobs are decoded by protobuf each
    time.
    """
    n = len(b)
    pos = 0
    fields: list[tuple[int, int, int]] = []
    v = v_end = t = t_end = -1
    after3 = after5 = -1  # where the first field numbered above 3 (above 5) starts
    while pos < n:
        start = pos
        tag = b[pos]
        pos += 1
        if tag >= 0x80:
            tag &= 0x7F
            shift = 7
            while True:
                if pos >= n or shift > 28:
                    return None
                byte = b[pos]
                pos += 1
                tag |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
        number, wire = tag >> 3, tag & 7
        if number == 0 or (number in (_VALUE_FIELD, _TIMESTAMP_FIELD) and pos - start != 1):
            return None
        if wire == 0:
            while True:
                if pos >= n:
                    return None
                byte = b[pos]
                pos += 1
                if byte < 0x80:
                    break
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length = 0
            shift = 0
            while True:
                if pos >= n or shift > 28:
                    return None
                byte = b[pos]
                pos += 1
                length |= (byte & 0x7F) << shift
                if byte < 0x80:
                    break
                shift += 7
            pos += length
        elif wire == 5:
            pos += 4
        else:
            return None
        if pos > n:
            return None
        fields.append((start, pos, number))
        if number == _VALUE_FIELD:
            if wire != 1 or v >= 0 or t >= 0:
                return None
            v, v_end = start, pos
        elif number == _TIMESTAMP_FIELD:
            if wire != 2 or t >= 0:
                return None
            t, t_end = start, pos
        if number > 3 and after3 < 0:
            after3 = start
        if number > 5 and after5 < 0:
            after5 = start
    if v < 0:
        v = v_end = after3 if after3 >= 0 else n
    if t < 0:
        t = t_end = after5 if after5 >= 0 else n
        if t < v_end:
            t = t_end = v_end
    if t < v_end:
        return None
    return v, v_end, t, t_end, fields


def _canonical(b: bytes, fields: list[tuple[int, int, int]]) -> tuple[bytes, int] | None:
    """The blob's fields but value and timestamp, sorted, and how many label entries it has.

    Agents in Go serialize map entries in random order: blobs of one series differ in order only,
    and the same sorted fields mean the same series, as long as no field but the label entries
    comes twice (checked here) and no label key comes twice (checked against the decoded map by
    the caller). None when a field comes twice.
    """
    parts = []
    numbers = set()
    entries = 0
    for start, end, number in fields:
        if number == _VALUE_FIELD or number == _TIMESTAMP_FIELD:
            continue
        if number == 2:
            entries += 1
        elif number in numbers:
            return None
        else:
            numbers.add(number)
        parts.append(b[start:end])
    parts.sort()
    return b"".join(parts), entries


class Interner:
    """Keeps one copy of the strings, label pairs and byte strings that many series share (label
    names and values, help texts, ...): a proxy remembers every series of every agent. Tables may
    share one (the agents of one proxy have much in common). Bounded: cleared when it holds
    `max_size` objects (sharing then starts over; nothing is lost)."""

    def __init__(self, max_size: int = 1_000_000) -> None:
        self.max_size = max_size
        self._table: dict[Any, Any] = {}

    def __len__(self) -> int:
        return len(self._table)

    def __call__(self, obj: Any) -> Any:
        """`obj`, or the equal object seen first."""
        found = self._table.get(obj)
        if found is None:
            if len(self._table) >= self.max_size:
                self._table.clear()
            found = self._table[obj] = obj
        return found


_HAS_VALUE = 1
_HAS_TS = 2


class SeriesTable:
    """The series of one agent, kept across its replies (see the module docstring).

    `samples(window)` makes the container for a reply to a request for `window`; `digest()`
    appends one chunk of it; `finish()` closes the reply: restricts the container it filled last to
    its window, and (when series that are no longer sent outnumber the live ones) moves the live
    ones to a new `SeriesSet`. Per series `i` of `series`, the template: `_pre[i]`, `_mid[i]`,
    `_post[i]` (None: the blob could not be split, so it is not predicted), `_shape[i]` (value
    and timestamp present in the blob seen last), `_canon[i]`.

    `interner`: shared with other tables (the proxy's agents), or None for one of its own.
    """

    def __init__(self, *, interner: Interner | None = None) -> None:
        self._share = Interner() if interner is None else interner
        self.series = SeriesSet()
        self._pre: list[bytes | None] = []
        self._mid: list[bytes | None] = []
        self._post: list[bytes | None] = []
        self._shape = bytearray()
        self._canon: list[bytes | None] = []
        self._templates: dict[tuple[bytes, bytes, bytes], int] = {}
        # Sorted fields -> series, for agents whose field order changes between replies (Go's
        # random map order); filled from the second reply on, when such agents show.
        self._canonical: dict[bytes, int] = {}
        self._previous = array("q")  # series of each position of the last reply
        self._current = array("q")
        self._replies = 0
        self._stamps: dict[bytes, float] = {}
        self._out: DigestedSamples | None = None  # what the reply in progress is digested into

    def __len__(self) -> int:
        return len(self.series)

    def samples(self, window: TimeWindow | None) -> DigestedSamples:
        """An empty container for the next reply, which answers a request for `window`: `finish()`
        keeps only what the window asks for. None keeps every sample as sent (hand-made tests)."""
        return DigestedSamples(self.series, window=window)

    def digest(self, blobs: Any, out: DigestedSamples) -> None:
        """Append `blobs` (serialized `Metric`s, or `Metric` objects) to `out`.

        Raises:
            InvalidArgument: a metric does not decode.
        """
        if out.series is not self.series:
            if len(out):
                raise ValueError("these samples belong to another series set")
            out.series = self.series
        self._out = out
        previous = self._previous
        n_previous = len(previous)
        current = self._current
        i = len(current)
        add_current = current.append
        add_index = out.ids.append
        add_value = out.values.append
        add_stamp = out.stamps.append
        match = self._match
        last = -1
        for b in blobs:
            if type(b) is not bytes:
                b = b.SerializeToString()  # a decoded Metric (a caller that did not use RawReply)
            # The series at this position last time, else the previous blob's (a window's points).
            t = previous[i] if i < n_previous else last
            i += 1
            found = match(b, t) if t >= 0 else None
            if found is None and last >= 0 and last != t:
                t = last
                found = match(b, t)
            if found is None:
                t, value, ts = self._slow(b)
                add_index(t)
                add_value(value)
                add_stamp(ts)
                if self._pre[t] is None:  # decoded in full: nothing to predict with
                    t = -1
            else:
                add_index(t)
                add_value(found[0])
                add_stamp(found[1])
            add_current(t)
            last = t

    def _match(self, b: bytes, t: int) -> tuple[float, float | None] | None:
        """(value, timestamp) of `b` if it is series `t`'s template with its own value and
        timestamp; None otherwise."""
        pre = self._pre[t]
        if not b.startswith(pre):  # type: ignore[arg-type]
            return None
        try:
            pos = len(pre)  # type: ignore[arg-type]
            shape = self._shape[t]
            if shape & _HAS_VALUE:
                if b[pos] != _VALUE_TAG:
                    return None
                value = _unpack_double(b, pos + 1)[0]
                pos += 9
            else:
                value = 0.0
            mid = self._mid[t]
            if not b.startswith(mid, pos):  # type: ignore[arg-type]
                return None
            pos += len(mid)  # type: ignore[arg-type]
            ts = None
            if shape & _HAS_TS:
                if b[pos] != _TIMESTAMP_TAG:
                    return None
                length = b[pos + 1]
                if length >= 0x80:
                    return None
                end = pos + 2 + length
                raw = b[pos + 2 : end]
                ts = self._stamps.get(raw)
                if ts is None:
                    ts = self._stamp(raw)
                pos = end
            post = self._post[t]
            if len(b) - pos != len(post) or not b.endswith(post):  # type: ignore[arg-type]
                return None
        except IndexError:
            return None
        return value, ts

    def finish(self) -> None:
        """The reply is complete: its samples are restricted to their window, and its order
        predicts the next one's."""
        out, self._out = self._out, None
        if out is not None and out.window is not None:
            out.restrict_to(out.window)
        self._previous = self._current
        self._current = array("q")
        self._replies += 1
        live = len(self._previous)
        if len(self.series) > 2 * live + 1000:
            self._compact()
        if len(self._stamps) > 10_000:
            self._stamps.clear()

    def abandon(self) -> None:
        """A reply was cut short: forget its partial order."""
        self._current = array("q")
        self._out = None

    def _compact(self) -> None:
        """Keep only the series of the last reply, in a new set (earlier replies keep theirs)."""
        old = self.series
        pres, mids, posts, shapes = self._pre, self._mid, self._post, self._shape
        canons = self._canon
        self.series = SeriesSet()
        self._pre, self._mid, self._post, self._canon = [], [], [], []
        self._shape = bytearray()
        self._templates, self._canonical = {}, {}
        moved: dict[int, int] = {}
        previous = array("q")
        for t in self._previous:
            j = moved.get(t, -1) if t >= 0 else -1
            if t >= 0 and j < 0:
                # The renderers remember nothing of the new set yet: one cold render.
                j = moved[t] = self._add(old.names[t], old.labels[t], old.descriptions[t],
                                         old.types[t], old.keys[t], pres[t], mids[t], posts[t],
                                         shapes[t], canons[t])
            previous.append(j)
        self._previous = previous

    def _add(self, name: str, labels: tuple[tuple[str, str], ...], description: str, mtype: int,
             key: tuple[str, int] | None, pre: bytes | None, mid: bytes | None,
             post: bytes | None, shape: int, canon: bytes | None) -> int:
        i = self.series.add(name, labels, description, mtype, key)
        self._pre.append(pre)
        self._mid.append(mid)
        self._post.append(post)
        self._shape.append(shape)
        self._canon.append(canon)
        if pre is not None:
            self._templates[(pre, mid, post)] = i  # type: ignore[index]
        if canon is not None:
            self._canonical[canon] = i
        return i

    def _stamp(self, raw: bytes) -> float:
        try:
            ts = ts_from_proto(Timestamp.FromString(raw))
        except DecodeError as exc:
            raise _bad(exc) from None
        self._stamps[raw] = ts
        return ts

    def _slow(self, b: bytes) -> tuple[int, float, float | None]:
        """Split `b`, find or make its series; without a usable split, decode it fully."""
        cut = _split(b)
        canon = None
        if cut is not None:
            v, v_end, t, t_end, fields = cut
            key = (b[:v], self._share(b[v_end:t]), self._share(b[t_end:]))
            shape = (_HAS_VALUE if v_end > v else 0) | (_HAS_TS if t_end > t else 0)
            found = self._templates.get(key)
            if found is not None:
                self._shape[found] = shape
            elif self._replies:
                # A new series, or a known one with its fields in another order: the same
                # series then (the renderers' memos stay warm), but its order is not kept.
                canon = _canonical(b, fields)
                if canon is not None:
                    found = self._canonical.get(canon[0])
            if found is not None:
                value = _unpack_double(b, v + 1)[0] if shape & _HAS_VALUE else 0.0
                ts = None
                if shape & _HAS_TS:
                    raw = _message_body(b, t + 1, t_end)  # the tag is one byte, the length varies
                    ts = self._stamps.get(raw)
                    if ts is None:
                        ts = self._stamp(raw)
                return found, value, ts
        try:
            m = pb.Metric.FromString(b)
        except DecodeError as exc:
            raise _bad(exc) from None
        ts = ts_from_proto(m.timestamp) if m.HasField("timestamp") else None
        labels = m.labels
        items = tuple([self._share((k, labels[k])) for k in labels])
        name, description, mtype = self._share(m.name), self._share(m.description), m.type
        _check_limits(name, items)
        if cut is None:
            i = self._add(name, items, description, mtype, self._share((name, mtype)), None, None,
                          None, 0, None)
            return i, m.value, ts
        kept = None
        if canon is not None and canon[1] == len(items):  # no label key came twice
            kept = canon[0]
        i = self._add(name, items, description, mtype, self._share((name, mtype)), key[0], key[1],
                      key[2], shape, kept)
        return i, m.value, ts


def _message_body(b: bytes, pos: int, end: int) -> bytes:
    """The body of the length-delimited field whose length varint starts at b[pos]."""
    while b[pos] >= 0x80:
        pos += 1
    return b[pos + 1 : end]
