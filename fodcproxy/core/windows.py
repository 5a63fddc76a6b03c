"""The proxy's `GET /metrics-windows` body: samples as JSON time series (sans-IO).

One object per series (agent, sample name, labels), its points sorted by time:

    {"name": ..., "description": ..., "type": "counter", "labels": {...}, "agent_id": ...,
     "ip": ..., "port": ..., "data": [{"timestamp": "2026-11-28T04:08:20.123Z", "value": 1.5}]}

`labels` are the sample's own labels enriched exactly as on `/metrics` (`agent_id`, `node_role`,
`node_ip`, `node_port`, `node_<k>`; clashing own labels kept as `exported_<name>`). Non-finite
values are the strings "NaN", "+Inf", "-Inf", so the body is always valid JSON.

Big answers (hundreds of thousands of points) are the normal case, so the JSON is assembled from
cached fragments (per agent, per label set, per timestamp) instead of `json.dumps` per point.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

from fodcproxy.core.exposition import enrichment_labels, own_labels
from fodcproxy.core.model import MetricType, NodeMeta, Sample

__all__ = ["parse_rfc3339", "render_windows", "rfc3339"]

#: Roughly how many points go into one chunk of `render_windows()`'s output.
CHUNK_POINTS = 20000

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_SECOND = timedelta(seconds=1)
# The instants `datetime` can represent: year 1 to year 9999.
_MIN_TS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH).total_seconds()
_MAX_TS = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - _EPOCH).total_seconds() + 1

_RFC3339_RE = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})"
    r"(?:\.([0-9]{1,9}))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)


def rfc3339(ts: float) -> str:
    """Format Unix seconds as an RFC 3339 UTC time: `2026-11-28T04:08:20Z`, or with the fraction
    when there is one, to the microsecond and without trailing zeros (`...:20.123Z`).

    Raises ValueError for NaN, infinities and instants outside years 1 to 9999.
    """
    if not _MIN_TS <= ts < _MAX_TS:
        raise ValueError(f"timestamp {ts!r} cannot be written as an RFC 3339 time")
    seconds, micros = divmod(round(ts * 1_000_000), 1_000_000)
    try:
        dt = _EPOCH + timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"timestamp {ts!r} cannot be written as an RFC 3339 time") from None
    text = (
        f"{dt.year:04d}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}"
    )
    if micros:
        text += "." + f"{micros:06d}".rstrip("0")
    return text + "Z"


def parse_rfc3339(text: str) -> float:
    """Parse an RFC 3339 time (`2026-11-28T04:08:20Z`, `2026-11-28T12:08:20.5+08:00`, fractions
    up to nanoseconds) into Unix seconds.

    Raises ValueError, with a message that shows the expected form, for anything else, including
    out-of-range fields (month 13, offset +24:00, leap second 60).
    """
    example = "expected e.g. 2026-11-28T04:08:20Z or 2026-11-28T12:08:20.5+08:00"
    match = _RFC3339_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"{text!r} is not an RFC 3339 time: {example}")
    year, month, day, hour, minute, second, fraction, zulu, sign, off_h, off_m = match.groups()
    try:
        dt = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second),
            tzinfo=UTC,
        )
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid RFC 3339 time ({exc}): {example}") from None
    offset = 0
    if not zulu:
        if int(off_h) > 23 or int(off_m) > 59:
            raise ValueError(f"{text!r} has an invalid RFC 3339 UTC offset: {example}")
        offset = (int(off_h) * 3600 + int(off_m) * 60) * (-1 if sign == "-" else 1)
    seconds = (dt - _EPOCH) // _ONE_SECOND - offset
    if fraction:
        return seconds + int(fraction.ljust(9, "0")) / 1e9
    return float(seconds)


_SPECIAL_JSON = {"nan": '"NaN"', "inf": '"+Inf"', "-inf": '"-Inf"'}
_float_repr = float.__repr__
_BY_TIME = operator.itemgetter(0)
_TYPE_WORDS = {int(t): t.prom_name for t in MetricType}


def _json_value(value: object) -> str:
    """A sample value as JSON: a number, or "NaN", "+Inf", "-Inf" as strings."""
    if type(value) is not float:
        try:
            value = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError, OverflowError):
            return '"NaN"'
    text = _float_repr(value)
    # repr of a finite float is a valid JSON number ("1e+21", "-0.0"); nan and inf are not.
    return _SPECIAL_JSON.get(text, text)


def _data_json(points: list[Any], times: dict[float, str]) -> str:
    """The `data` array's contents for the flat [ts, value, ts, value, ...] list `points`."""
    pairs = sorted(zip(points[::2], points[1::2]), key=_BY_TIME)  # stable for equal timestamps
    out: list[str] = []
    previous = ""
    for ts, value in pairs:
        stamp = times.get(ts)
        if stamp is None:
            stamp = times[ts] = rfc3339(ts)
        if type(value) is float:
            text = _float_repr(value)
            if text[-1] > "9":  # nan, inf, -inf: every other float repr ends in a digit
                text = _SPECIAL_JSON[text]
        else:
            text = _json_value(value)
        point = f'{{"timestamp":"{stamp}","value":{text}}}'
        # Timestamps are compared as written (to the microsecond): two that print the same would
        # be a duplicate in the answer. Of equal ones the last given wins (the sort is stable).
        if stamp == previous:
            out[-1] = point
        else:
            out.append(point)
        previous = stamp
    return ",".join(out)


def render_windows(
    groups: Sequence[tuple[NodeMeta, Sequence[Sample]]], *, now: float
) -> list[bytes]:
    """Render the `/metrics-windows` body: a JSON array with one object per series.

    `groups` pairs each agent's metadata with the samples it returned. A series is (agent_id,
    sample name, labels); series appear in the order they are first seen. A sample without a
    timestamp counts as taken at `now` (Unix seconds). Points are sorted by time; points whose
    timestamps are equal to the microsecond (as written) collapse into one: the last one given,
    or the later one where they differ below a microsecond. Points whose timestamp cannot be
    written (NaN, infinite, outside years 1-9999) are left out. A series keeps the description and
    type of its first sample.

    Returns the body as UTF-8 chunks of about CHUNK_POINTS points each (concatenate or stream
    them). Raises nothing for any content of the samples; ValueError if `now` is needed and is
    not a time `rfc3339()` can write.
    """
    # Each series is one flat list, [first sample, enrichment JSON, agent fields JSON, own labels
    # JSON, ts, value, ts, value, ...]: a latest-values answer has one series per point, so the
    # objects allocated per series count.
    by_agent: dict[str, dict[str, list[Any]]] = {}
    label_caches: dict[frozenset[str], dict[tuple[tuple[str, str], ...], str]] = {}
    for meta, samples in groups:
        pairs = enrichment_labels(meta)
        reserved = frozenset(name for name, _ in pairs)
        cache = label_caches.get(reserved)
        if cache is None:
            cache = label_caches[reserved] = {}
        agent = meta.agent_id
        series = by_agent.get(agent)
        if series is None:
            series = by_agent[agent] = {}
        # The agent's part of each of its series objects, rendered once.
        enriched = ",".join(f"{_json_str(k)}:{_json_str(v)}" for k, v in pairs)
        agent_json = (
            f'"agent_id":{_json_str(agent)},"ip":{_json_str(meta.ip)},"port":{int(meta.port)}'
        )
        for sample in samples:
            ts = sample.timestamp
            if ts is None:
                ts = now
            elif not _MIN_TS <= ts < _MAX_TS:  # also false for NaN
                continue
            labels = sample.labels
            if type(labels) is dict:
                items = tuple(labels.items())
            else:
                items = tuple([(k, labels[k]) for k in labels])
            own = cache.get(items)
            if own is None:
                own = cache[items] = "".join(
                    f",{_json_str(k)}:{_json_str(v)}" for k, v in own_labels(items, reserved)
                )
            # A string key (not a tuple) keeps the garbage collector out of the way: the own part
            # is JSON-escaped, so it holds no raw NUL and the key is unambiguous.
            key = f"{own}\0{sample.name}"
            entry = series.get(key)
            if entry is None:
                series[key] = [sample, enriched, agent_json, own, ts, sample.value]
            else:
                entry.append(ts)
                entry.append(sample.value)

    chunks: list[bytes] = []
    parts: list[str] = []
    pending = 0
    times: dict[float, str] = {}
    heads: dict[tuple[str, int, str], str] = {}
    separator = "["
    for entry in (entry for series in by_agent.values() for entry in series.values()):
        sample, enriched, agent_json, own = entry[:4]
        if len(entry) == 6:
            ts, value = entry[4], entry[5]
            stamp = times.get(ts)
            if stamp is None:
                stamp = times[ts] = rfc3339(ts)
            if type(value) is float:
                text = _float_repr(value)
                if text[-1] > "9":  # nan, inf, -inf: every other float repr ends in a digit
                    text = _SPECIAL_JSON[text]
            else:
                text = _json_value(value)
            data = f'{{"timestamp":"{stamp}","value":{text}}}'
            pending += 1
        else:
            data = _data_json(entry[4:], times)
            pending += len(entry) // 2 - 2
        head_key = (sample.name, sample.type, sample.description)
        head = heads.get(head_key)
        if head is None:
            head = heads[head_key] = (
                f'{{"name":{_json_str(str(sample.name))},'
                f'"description":{_json_str(str(sample.description))},'
                f'"type":"{_TYPE_WORDS.get(sample.type, "untyped")}","labels":{{'
            )
        parts.append(f'{separator}{head}{enriched}{own}}},{agent_json},"data":[{data}]}}')
        separator = ","
        if pending >= CHUNK_POINTS:
            chunks.append("".join(parts).encode())
            parts = []
            pending = 0
    parts.append("[]" if separator == "[" else "]")
    chunks.append("".join(parts).encode())
    return chunks
