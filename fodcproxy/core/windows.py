"""The proxy's `GET /metrics-windows` body: samples as JSON time series (sans-IO).

One object per series (agent, sample name, labels), its points sorted by time:

    {"name": ..., "description": ..., "type": "counter", "labels": {...}, "agent_id": ...,
     "ip": ..., "port": ..., "data": [{"timestamp": "2026-11-28T04:08:20.123Z", "value": 1.5}]}

A pod agent's series (upstream BanyanDB's agent: no address) carry `"pod_name": ...` instead of
`"ip"` and `"port"`. `labels` are the sample's own labels enriched exactly as on `/metrics`
(`agent_id`, `node_role`, `node_ip` and `node_port` or `pod_name`, `node_<k>`; an own label with
an enrichment label's name and value is written once, one with another value is kept as
`exported_<name>`, `fodcproxy.core.labels`). Non-finite values are the strings "NaN", "+Inf",
"-Inf", so the body is always valid JSON.

Which points a request gets (the newest of each series for "latest", those inside the window
otherwise) is settled before rendering, as the reply is digested (`DigestedSamples.restrict_to`):
this module writes every point it is given.

Big answers (hundreds of thousands of points) are the normal case, so the JSON is assembled from
cached fragments (per agent, per label set, per timestamp) instead of `json.dumps` per point, the
proxy's `DigestedSamples` are read as columns (no object per point), points already in time order
are not sorted again, and `WindowsRendering` works in steps and hands the body out as it writes it.
The labels' JSON of each series is remembered across requests in a `WindowsCache`, which the proxy
owns and passes to every render.
"""

from __future__ import annotations

import itertools
import operator
import re
import weakref
from array import array
from collections.abc import Collection, Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring_ascii as _json_str
from typing import Any

from fodcproxy.core.labels import Enrichment, own_labels, values_matter
from fodcproxy.core.model import MetricType, NodeMeta
from fodcproxy.core.series import SeriesSet, digest_samples

__all__ = ["WindowsCache", "WindowsRendering", "parse_rfc3339", "render_windows", "rfc3339"]

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


def _point_head(ts: float, times: dict[float, str]) -> str:
    """`{"timestamp":"<RFC 3339>","value":` for `ts`, cached in `times`."""
    head = times[ts] = f'{{"timestamp":"{rfc3339(ts)}","value":'
    return head


def _data_json(where: list[Any], now: float, times: dict[float, str]) -> tuple[str, int]:
    """The `data` array's contents of a series and its number of points. `where` alternates a
    DigestedSamples and the position (int) or positions (array) of the series' points in it."""
    stamps: list[float] = []
    values: list[Any] = []
    for k in range(0, len(where), 2):
        d, pos = where[k], where[k + 1]
        positions = (pos,) if type(pos) is int else pos
        stamps += map(d.stamps.__getitem__, positions)
        values += map(d.values.__getitem__, positions)
    if None in stamps:
        stamps = [now if ts is None else ts for ts in stamps]
    ordered = sorted(stamps)
    if stamps == ordered:  # the usual case: the agent sent them in time order
        pairs: Iterable[tuple[float, Any]] = zip(stamps, values)
    else:
        pairs = sorted(zip(stamps, values), key=_BY_TIME)  # stable for equal timestamps
    out: list[str] = []
    previous = ""
    for ts, value in pairs:
        head = times.get(ts)
        if head is None:
            head = _point_head(ts, times)
        if type(value) is float:
            text = _float_repr(value)
            if text[-1] > "9":  # nan, inf, -inf: every other float repr ends in a digit
                text = _SPECIAL_JSON[text]
        else:
            text = _json_value(value)
        # Timestamps are compared as written (to the microsecond): two that print the same would
        # be a duplicate in the answer. Of equal ones the last given wins (the sort is stable).
        if head == previous:
            out[-1] = f"{head}{text}}}"
        else:
            out.append(f"{head}{text}}}")
        previous = head
    return ",".join(out), len(stamps)


def _own_json(items: tuple[tuple[str, str], ...], reserved: Collection[str]) -> str:
    """`,"name":"value"` for each of a series' own labels (`own_labels()`)."""
    return "".join(f",{_json_str(k)}:{_json_str(v)}" for k, v in own_labels(items, reserved))


def _series_head(name: str, mtype: int, description: str,
                 heads: dict[tuple[str, int, str], str]) -> str:
    """`{"name":...,"description":...,"type":...,"labels":{` of a series, cached in `heads`."""
    key = (name, mtype, description)
    head = heads.get(key)
    if head is None:
        head = heads[key] = (
            f'{{"name":{_json_str(str(name))},'
            f'"description":{_json_str(str(description))},'
            f'"type":"{_TYPE_WORDS.get(mtype, "untyped")}","labels":{{'
        )
    return head


#: Points grouped between two `WindowsRendering.steps()` yields.
STEP_POINTS = 20000

# What is remembered of a series: (the agent's enrichment, own labels JSON, series key).
_WMemo = tuple[Enrichment, str, str]
# What is remembered of an agent: (its enrichment, the enrichment's JSON, its own fields' JSON).
_AgentParts = tuple[Enrichment, str, str]


def _agent_parts(meta: NodeMeta) -> _AgentParts:
    enrichment = Enrichment.of(meta)
    enriched = ",".join(f"{_json_str(k)}:{_json_str(v)}" for k, v in enrichment.pairs)
    where = (f'"pod_name":{_json_str(meta.pod_name)}' if meta.is_pod
             else f'"ip":{_json_str(meta.ip)},"port":{int(meta.port)}')
    return enrichment, enriched, f'"agent_id":{_json_str(meta.agent_id)},{where}'


class WindowsCache:
    """What `WindowsRendering` remembers across requests, for one proxy (pass the same one to every
    render): per `SeriesSet` (held weakly: it goes when the decoder lets go of the set), the JSON
    of each series' own labels under its agent's enrichment; per agent (`NodeMeta`), its
    enrichment and the JSON of its part of each series object. Sans-IO."""

    #: Agents remembered before the table is cleared.
    MAX_AGENTS = 100_000

    def __init__(self) -> None:
        self._sets: weakref.WeakKeyDictionary[SeriesSet, list[_WMemo | None]] = (
            weakref.WeakKeyDictionary())
        self._agents: dict[NodeMeta, _AgentParts] = {}

    def _agent(self, meta: NodeMeta) -> _AgentParts:
        """`meta`'s enrichment (the same object while `meta` is the same) and JSON parts."""
        try:
            found = self._agents.get(meta)
        except TypeError:  # unhashable label values in a hand-made NodeMeta
            return _agent_parts(meta)
        if found is None:
            found = _agent_parts(meta)
            if len(self._agents) >= self.MAX_AGENTS:
                self._agents.clear()
            self._agents[meta] = found
        return found

    def _memos(self, sset: SeriesSet) -> list[_WMemo | None]:
        """The memo column of `sset`, with a slot for each of its series."""
        memos = self._sets.get(sset)
        if memos is None:
            memos = self._sets[sset] = []
        missing = len(sset) - len(memos)
        if missing > 0:  # series the decoder added since
            memos.extend(itertools.repeat(None, missing))
        return memos


class WindowsRendering:
    """One `/metrics-windows` body being rendered, in steps (see `render_windows()`).

    Drive `steps()` to the end (a Trio caller can checkpoint at each yield), then iterate
    `chunks()` once: it hands out the body as it writes it, and lets go of each series' points
    once written, so the whole body never sits in memory. Sans-IO.

    `cache`: what is remembered across renders (the proxy's `WindowsCache`); None: nothing is.
    """

    def __init__(self, groups: Sequence[tuple[NodeMeta, Sequence[Any]]], *, now: float,
                 cache: WindowsCache | None = None) -> None:
        self.groups = groups
        self.now = now
        self.cache = WindowsCache() if cache is None else cache
        # Each series is one flat list, [head JSON (name, help, type of its first sample),
        # enrichment JSON, agent fields JSON, own labels JSON, then pairs of a DigestedSamples
        # and the position (an int) or positions (an array) of the series' points in it]: a
        # latest-values answer has one series per point, so the objects per series count.
        self._by_agent: dict[str, dict[str, list[Any]]] = {}

    def steps(self) -> Iterator[None]:
        """Group the points into series; yields between pieces of about STEP_POINTS points."""
        by_agent = self._by_agent
        # Own labels' JSON by the enrichment's names: shared by the agents whose enrichment has
        # these names where it depends on the names only (`values_matter()`), else by enrichment.
        label_caches: dict[frozenset[str], dict[tuple[tuple[str, str], ...], str | None]] = {}
        agent_caches: dict[Enrichment, dict[tuple[tuple[str, str], ...], str]] = {}
        heads: dict[tuple[str, int, str], str] = {}
        count = 0
        for meta, samples in self.groups:
            # The agent's part of each of its series objects, rendered once.
            reserved, enriched, agent_json = self.cache._agent(meta)
            names = reserved.names
            cache = label_caches.get(names)
            if cache is None:
                cache = label_caches[names] = {}
            own_cache = agent_caches.get(reserved)
            if own_cache is None:
                own_cache = agent_caches[reserved] = {}
            agent = meta.agent_id
            series = by_agent.get(agent)
            if series is None:
                series = by_agent[agent] = {}
            d = digest_samples(samples)
            sset = d.series
            wmemos = self.cache._memos(sset)
            index, stamps = d.ids, d.stamps
            entries: dict[int, list[Any]] = {}  # this agent's series, by index in its set
            n = len(index)
            for start in range(0, n, STEP_POINTS):
                end = min(n, start + STEP_POINTS)
                for pos, i, ts in zip(range(start, end), index[start:end], stamps[start:end]):
                    if ts is not None and not _MIN_TS <= ts < _MAX_TS:  # also false for NaN
                        continue
                    entry = entries.get(i)
                    if entry is None:
                        memo = wmemos[i]
                        if memo is not None and (memo[0] is reserved or memo[0] == reserved):
                            own, key = memo[1], memo[2]
                        else:
                            items = sset.labels[i]
                            known = cache.get(items, "")
                            if known == "":  # not seen yet
                                if values_matter(items, names):
                                    known = cache[items] = None
                                else:
                                    known = cache[items] = _own_json(items, names)
                            if known is None:  # depends on the enrichment's values
                                known = own_cache.get(items)
                                if known is None:
                                    known = own_cache[items] = _own_json(items, reserved)
                            own = known
                            # A string key (not a tuple) keeps the garbage collector out of the
                            # way: the own part is JSON-escaped, so it holds no raw NUL.
                            key = f"{own}\0{sset.names[i]}"
                            wmemos[i] = (reserved, own, key)
                        entry = series.get(key)
                        if entry is None:
                            head = _series_head(sset.names[i], sset.types[i],
                                                sset.descriptions[i], heads)
                            entry = series[key] = [head, enriched, agent_json, own]
                        entries[i] = entry
                    # The points stay in `d`: the entry keeps where (one position, or an array
                    # of them once there are several), per DigestedSamples it has points in.
                    if len(entry) == 4:
                        entry.append(d)
                        entry.append(pos)
                    elif entry[-2] is d:
                        where = entry[-1]
                        if type(where) is int:
                            entry[-1] = array("q", (where, pos))
                        else:
                            where.append(pos)
                    else:  # the same agent in two groups: points from both
                        entry.append(d)
                        entry.append(pos)
                count += end - start
                if count >= STEP_POINTS:
                    count = 0
                    yield

    def chunks(self) -> Iterator[bytes]:
        """The body as UTF-8 chunks of about CHUNK_POINTS points each (iterate once)."""
        parts: list[str] = []
        pending = 0
        times: dict[float, str] = {}
        now = self.now
        separator = "["
        for series in self._by_agent.values():
            for entry in series.values():
                head, enriched, agent_json, own = entry[:4]
                if len(entry) == 6 and type(entry[5]) is int:
                    d, pos = entry[4], entry[5]
                    ts, value = d.stamps[pos], d.values[pos]
                    if ts is None:
                        ts = now
                    point = times.get(ts)
                    if point is None:
                        point = _point_head(ts, times)
                    if type(value) is float:
                        text = _float_repr(value)
                        if text[-1] > "9":  # nan, inf, -inf: every other repr ends in a digit
                            text = _SPECIAL_JSON[text]
                    else:
                        text = _json_value(value)
                    data = f"{point}{text}}}"
                    pending += 1
                else:
                    data, count = _data_json(entry[4:], now, times)
                    pending += count
                del entry[4:]  # written: let go of the points
                parts.append(f'{separator}{head}{enriched}{own}}},{agent_json},"data":[{data}]}}')
                separator = ","
                if pending >= CHUNK_POINTS:
                    yield "".join(parts).encode()
                    parts = []
                    pending = 0
            series.clear()
        parts.append("[]" if separator == "[" else "]")
        yield "".join(parts).encode()


def render_windows(
    groups: Sequence[tuple[NodeMeta, Sequence[Any]]], *, now: float,
    cache: WindowsCache | None = None,
) -> list[bytes]:
    """Render the `/metrics-windows` body: a JSON array with one object per series.

    `groups` pairs each agent's metadata with the samples it returned (`Sample`s, or faster,
    `DigestedSamples`). A series is (agent_id, sample name, labels); series appear in the order
    they are first seen. A sample without a timestamp counts as taken at `now` (Unix seconds).
    Points are sorted by time; points whose timestamps are equal to the microsecond (as written)
    collapse into one: the last one given, or the later one where they differ below a microsecond.
    Points whose timestamp cannot be written (NaN, infinite, outside years 1-9999) are left out. A
    series keeps the description and type of its first sample.

    Returns the body as UTF-8 chunks of about CHUNK_POINTS points each (concatenate or stream
    them); `WindowsRendering` does the same in steps (`cache` is as there). Raises nothing for any
    content of the samples; ValueError if `now` is needed and is not a time `rfc3339()` can write.
    """
    rendering = WindowsRendering(groups, now=now, cache=cache)
    for _ in rendering.steps():
        pass
    return list(rendering.chunks())
