"""The proxy's `GET /metrics` body: many agents' samples as one Prometheus exposition (sans-IO).

`render()` takes one `AgentBatch` per selected agent and returns text chunks whose concatenation is
the body, in Prometheus text format 0.0.4 or OpenMetrics 1.0. The output must be accepted by strict
parsers (the Go text parser behind Prometheus and `promtool`, and prometheus_client's parsers)
whatever the agents send, so every name and label is checked here and nothing is trusted:

* Families are grouped across all agents (never interleaved), sorted by name, with one `# HELP`
  (the first non-empty description seen) and one `# TYPE`.
* A family's type is the first *typed* (not untyped) declaration seen; samples declared with another
  type are kept when their name is one of that type's sample names, otherwise dropped and counted
  as conflicts. A family whose name is a sample name of a histogram, summary or (OpenMetrics)
  counter family, e.g. a gauge `x_count` beside a histogram `x`, is not written: parsers would file
  its samples under the other family. Its untyped samples (which claim no type) join that other
  family when their name fits it; its typed samples are dropped and counted as conflicts.
* Every sample gets the agent's enrichment labels (`enrichment_labels()`); an own label that clashes
  with one of them is renamed `exported_<name>` (repeatedly, until unique).
* Invalid metric and label names are sanitised; an empty metric name is dropped and counted.
* Agent families named `fodc_agent_*` / `fodc_proxy_*` get an `exported_` prefix: those names are
  the proxy's own.
* Series that end up with the same name and labels are written once (the first) and counted.
* Text 0.0.4 has no created timestamps: `_created` samples become gauges of their own name (as
  prometheus_client writes them). OpenMetrics has no counter without `_total`: such a counter is
  written as an `unknown` family of its own name. OpenMetrics also has value rules its parsers
  enforce (no negative or NaN counter-like values, integer bucket counts, every histogram series
  up to a `+Inf` bucket that equals `_count`): samples and histogram series breaking them are
  dropped and counted as conflicts, in OpenMetrics only.

Counts of what was dropped are returned by `render_with_stats()`.

Performance matters (100 agents x 1000 samples per scrape, answered well under a second): samples
are read as columns (`DigestedSamples`: series index, value) of a `SeriesSet` (name, labels,
help, type of each series). The text of a line up to its value (`name{labels} `) is remembered in
the set for as long as its family's plan and its agent's enrichment stay the same; the proxy keeps
each agent's set across scrapes (`fodcproxy.rpc.replies`), so a steady scrape formats only
values. The enrichment is rendered once per agent, escaped label strings are cached per label set
for the call, and `Rendering` works in steps so that its caller can yield to an event loop.
"""

from __future__ import annotations

import collections
import itertools
import math
import operator
import re
from array import array
from collections.abc import Generator, Iterable, Iterator, Sequence
from functools import lru_cache
from typing import Any, overload

import attrs

from fodcproxy.core.model import MetricLike, MetricType, NodeMeta, Sample

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "AgentBatch",
    "DigestedSamples",
    "RenderStats",
    "Rendered",
    "Rendering",
    "SeriesSet",
    "digest_samples",
    "enrichment_labels",
    "format_value",
    "negotiate",
    "own_labels",
    "render",
    "render_with_stats",
    "sanitize_label_name",
    "sanitize_metric_name",
]

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

UP_FAMILY = "fodc_agent_up"
UP_HELP = "1 if the agent answered the collection in time, 0 otherwise"
DURATION_FAMILY = "fodc_agent_collect_duration_seconds"
DURATION_HELP = "Seconds the proxy spent collecting this agent's samples"

#: Roughly how many lines go into one chunk of `render()`'s output.
CHUNK_LINES = 2000

_EXPORTED = "exported_"


@attrs.frozen
class AgentBatch:
    """What one agent contributed to a scrape.

    `samples` may be protobuf `Metric` objects (only the `MetricLike` attributes are read) or,
    fastest, `DigestedSamples`.
    `up` says whether the agent answered in time; `duration` is how long its collection took, in
    seconds.
    """

    meta: NodeMeta
    samples: Sequence[MetricLike]
    up: bool
    duration: float


@attrs.frozen
class RenderStats:
    """What `render_with_stats()` wrote and what it had to leave out.

    `samples`: agent sample lines written (the `fodc_agent_*` lines not included).
    `invalid_names`: samples dropped because their metric name was empty.
    `conflicts`: samples dropped because they did not fit the type their family was given, were
    a histogram bucket without a usable `le` (summary quantile without a usable `quantile`), or
    (OpenMetrics only) broke its value rules: negative or NaN counter-like values, fractional
    bucket counts, histogram series without a `+Inf` bucket or with a `_count` that disagrees.
    `duplicates`: samples dropped because an earlier one had the same name and final labels.
    """

    samples: int = 0
    invalid_names: int = 0
    conflicts: int = 0
    duplicates: int = 0


@attrs.frozen
class Rendered:
    """`render_with_stats()`'s answer: the body's chunks and what was dropped on the way."""

    chunks: list[str]
    stats: RenderStats


# --------------------------------------------------------------------------------------------
# Names


_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_METRIC_BAD_CHAR_RE = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_BAD_CHAR_RE = re.compile(r"[^a-zA-Z0-9_]")


@lru_cache(maxsize=16384)
def sanitize_metric_name(name: str) -> str:
    """Return `name` as a valid Prometheus metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).

    Invalid characters become `_`, a leading digit gets a `_` in front. Returns "" for an empty
    name, which cannot be repaired (the caller drops the sample).
    """
    if _METRIC_NAME_RE.fullmatch(name):
        return name
    if not name:
        return ""
    name = _METRIC_BAD_CHAR_RE.sub("_", name)
    return "_" + name if name[0].isdigit() else name


@lru_cache(maxsize=16384)
def sanitize_label_name(name: str) -> str:
    """Return `name` with the characters a label name may not hold replaced by `_`.

    A leading digit gets a `_` in front and "" becomes "_". Names starting with `__` are left so:
    they are reserved for Prometheus, and `own_labels()` renames them like a clash.
    """
    if _LABEL_NAME_RE.fullmatch(name):
        return name
    if not name:
        return "_"
    name = _LABEL_BAD_CHAR_RE.sub("_", name)
    return "_" + name if name[0].isdigit() else name


def enrichment_labels(meta: NodeMeta) -> list[tuple[str, str]]:
    """The labels the proxy adds to every sample of the agent `meta` describes, in order.

    `agent_id`, `node_role`, `node_ip`, `node_port`, then each node label `k` as `node_<k>` (with
    `k` sanitised; a name already taken, e.g. node label `role`, gets `exported_` in front).
    """
    out = [
        ("agent_id", meta.agent_id),
        ("node_role", meta.role),
        ("node_ip", meta.ip),
        ("node_port", str(meta.port)),
    ]
    taken = {name for name, _ in out}
    for key, value in meta.labels:
        name = "node_" + _LABEL_BAD_CHAR_RE.sub("_", key)
        while name in taken:
            name = _EXPORTED + name
        taken.add(name)
        out.append((name, value))
    return out


def own_labels(
    items: Iterable[tuple[str, str]], reserved: frozenset[str] | set[str]
) -> list[tuple[str, str]]:
    """Return a sample's own labels renamed so they can sit beside the `reserved` label names.

    Names are sanitised; a name in `reserved`, starting with `__`, or equal to an earlier label's
    (after sanitising) is prefixed with `exported_` until it is unique. Labels that needed no
    renaming keep their names, so `{agent_id, exported_agent_id}` becomes
    `{exported_exported_agent_id, exported_agent_id}`. Sorted by name.
    """
    kept: list[tuple[str, str]] = []
    clashed: list[tuple[str, str]] = []
    taken = set(reserved)
    for key, value in items:
        name = sanitize_label_name(str(key))
        if name in taken or name.startswith("__"):
            clashed.append((name, str(value)))
        else:
            taken.add(name)
            kept.append((name, str(value)))
    for name, value in clashed:
        name = _EXPORTED + name
        while name in taken:
            name = _EXPORTED + name
        taken.add(name)
        kept.append((name, value))
    kept.sort()
    return kept


# --------------------------------------------------------------------------------------------
# Values and escaping


_SPECIAL_VALUES = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}
_float_repr = float.__repr__
_isfinite = math.isfinite
_add = operator.add
_repeat = itertools.repeat


def format_value(value: float) -> str:
    """Write a sample value so it parses back to the same float: `repr`, `NaN`, `+Inf`, `-Inf`.

    Raises TypeError or ValueError if `value` is not a number.
    """
    text = _float_repr(float(value))
    return _SPECIAL_VALUES.get(text, text)


def _escape_label_value(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    # Text 0.0.4 knows only the two escapes above (the Go parser rejects `\"` in HELP).
    return text.replace('"', '\\"') if openmetrics else text


def _label_pairs_text(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(f',{name}="{_escape_label_value(value)}"' for name, value in pairs)


_PLAIN_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _canonical_bound(text: str, quantile: bool) -> tuple[str, float] | None:
    """An `le` or `quantile` value both the Go and the OpenMetrics parser accept, or None."""
    try:
        bound = float(text)
    except ValueError:
        return None
    if math.isnan(bound) or (quantile and not 0.0 <= bound <= 1.0):
        return None
    if math.isinf(bound):
        return ("+Inf" if bound > 0 else "-Inf"), bound
    # Python's float() accepts spellings Go's ParseFloat does not ("1_0", " 1").
    return (text if _PLAIN_NUMBER_RE.fullmatch(text) else _float_repr(bound)), bound


# --------------------------------------------------------------------------------------------
# Families

_GAUGE = "gauge"
_COUNTER = "counter"
_HISTOGRAM = "histogram"
_SUMMARY = "summary"
_UNTYPED = "untyped"

# Role of a sample in its family, and its rank: the order of the roles inside a series group.
_PLAIN, _BUCKET, _QUANTILE, _TOTAL, _COUNT, _SUM, _CREATED = range(7)
_RANKS = {_PLAIN: 0, _BUCKET: 0, _QUANTILE: 0, _TOTAL: 0, _COUNT: 1, _SUM: 2, _CREATED: 3}

# How a sample's own labels are rendered (index into the per-agent list of label caches).
_MODE_PLAIN = 0
_MODE_LE = 1  # histogram bucket: `le` required, written last
_MODE_NO_LE = 2  # other histogram sample: an `le` label would confuse parsers, rename it
_MODE_QUANTILE = 3  # summary quantile: `quantile` required, written last
_MODE_NO_QUANTILE = 4
_MODES = 5

_HISTOGRAM_SUFFIXES = (
    ("_bucket", _BUCKET), ("_count", _COUNT), ("_sum", _SUM), ("_created", _CREATED)
)
_SUMMARY_SUFFIXES = (("_count", _COUNT), ("_sum", _SUM), ("_created", _CREATED))

_TYPE_WORDS = {
    int(MetricType.GAUGE): _GAUGE,
    int(MetricType.COUNTER): _COUNTER,
    int(MetricType.HISTOGRAM): _HISTOGRAM,
    int(MetricType.SUMMARY): _SUMMARY,
}


def _sample_suffixes(ftype: str, openmetrics: bool) -> dict[str, int]:
    """The sample names (as suffixes of the family name) a family of type `ftype` may hold."""
    if ftype == _HISTOGRAM:
        suffixes = {"_bucket": _BUCKET, "_count": _COUNT, "_sum": _SUM}
    elif ftype == _SUMMARY:
        suffixes = {"": _QUANTILE, "_count": _COUNT, "_sum": _SUM}
    elif ftype == _COUNTER and openmetrics:
        return {"_total": _TOTAL, "_created": _CREATED}
    else:
        return {"": _PLAIN}
    if openmetrics:
        suffixes["_created"] = _CREATED
    return suffixes


def _declare(name: str, mtype: int, openmetrics: bool) -> tuple[str, str, int, str] | None:
    """(family name, family type, role, sample name) a sample declares by its name and type.

    Returns None when the name is empty (even after sanitising).
    """
    name = sanitize_metric_name(name)
    if not name:
        return None
    ftype = _TYPE_WORDS.get(mtype, _UNTYPED)
    family, role = name, _PLAIN
    if ftype == _COUNTER:
        if openmetrics:
            # OpenMetrics counter families are named without `_total` and their samples must
            # carry it. A counter sample without `_total` cannot be written as a counter; it is
            # written as an `unknown` family of its own name rather than renamed.
            if name.endswith("_total") and len(name) > 6:
                family, role = name[:-6], _TOTAL
            elif name.endswith("_created") and len(name) > 8:
                family, role = name[:-8], _CREATED
            else:
                ftype = _UNTYPED
        elif name.endswith("_created"):
            # Text 0.0.4 has no created timestamps: write them as gauges, as prometheus_client does.
            ftype = _GAUGE
    elif ftype in (_HISTOGRAM, _SUMMARY):
        suffixes = _HISTOGRAM_SUFFIXES if ftype == _HISTOGRAM else _SUMMARY_SUFFIXES
        for suffix, suffix_role in suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                if suffix_role == _CREATED and not openmetrics:
                    ftype = _GAUGE
                else:
                    family, role = name[: -len(suffix)], suffix_role
                break
        else:
            if ftype == _SUMMARY:
                role = _QUANTILE
            else:
                # A "histogram" sample without a histogram suffix: keep it, untyped.
                ftype = _UNTYPED
    if family.startswith(("fodc_agent_", "fodc_proxy_")) or family in ("fodc_agent", "fodc_proxy"):
        # These would collide with the proxy's own families.
        family, name = _EXPORTED + family, _EXPORTED + name
    return family, ftype, role, name


def _mode(ftype: str, role: int) -> int:
    if ftype == _HISTOGRAM:
        return _MODE_LE if role == _BUCKET else _MODE_NO_LE
    if ftype == _SUMMARY:
        return _MODE_QUANTILE if role == _QUANTILE else _MODE_NO_QUANTILE
    return _MODE_PLAIN


class _Family:
    """One output family while it is being filled (internal, mutable)."""

    __slots__ = (
        "counts", "dropped", "grouped", "groups", "help", "name", "need_help", "seen", "segments",
        "type",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.type = _UNTYPED
        self.help = ""
        self.need_help = True
        self.grouped = False  # several sample names per series group: lines are grouped
        self.dropped = False
        # Plain families, by agent_id in first-seen order: line head (`name{labels} `) -> value
        # text; or, for an agent written by its route (see _Route), its lines as one string
        # (a list of them, CHUNK_LINES lines each, when there are more), `counts` lines in all.
        # Heads of different agent_ids never collide: each starts with its agent_id label.
        self.segments: dict[str, dict[str, str] | str | list[str]] = {}
        self.counts: dict[str, int] = {}
        # Grouped families: the line heads written (each names one series), and
        # the lines by series group, (agent prefix, labels without le/quantile) -> [(rank, bound,
        # value, line)], so that a group's samples are contiguous, as OpenMetrics requires.
        self.seen: set[str] = set()
        self.groups: dict[tuple[str, str], list[_GroupItem]] = {}


_GroupItem = tuple[int, float, Any, str]


# How to write the samples of one (name, type): (family, sample name, label mode, role).
_Plan = tuple[_Family, str, int, int]


def _make_plans(
    keys: Iterable[tuple[str, int]], openmetrics: bool
) -> tuple[dict[tuple[str, int], _Plan | None], dict[str, _Family], set[tuple[str, int]]]:
    """Resolve families, their types and conflicts for all (name, type) pairs of a scrape.

    Returns the plan of each pair (None: drop its samples), the families, and the pairs whose name
    was invalid.
    """
    declared: dict[tuple[str, int], tuple[str, str, int, str]] = {}
    invalid: set[tuple[str, int]] = set()
    families: dict[str, _Family] = {}
    for key in keys:
        decl = _declare(key[0], key[1], openmetrics)
        if decl is None:
            invalid.add(key)
            continue
        declared[key] = decl
        fam = families.get(decl[0])
        if fam is None:
            fam = families[decl[0]] = _Family(decl[0])
        if fam.type == _UNTYPED:
            fam.type = decl[1]  # the first typed declaration wins

    suffixes_of: dict[str, dict[str, int]] = {}
    claimed_by: dict[str, _Family] = {}
    for fam in families.values():
        suffixes = suffixes_of[fam.name] = _sample_suffixes(fam.type, openmetrics)
        fam.grouped = len(suffixes) > 1
        if fam.grouped:
            for suffix in suffixes:
                other = families.get(fam.name + suffix) if suffix else None
                if other is not None:
                    other.dropped = True
                    claimed_by[other.name] = fam

    plans: dict[tuple[str, int], _Plan | None] = dict.fromkeys(invalid)
    for key, (family, ftype, _role, sample_name) in declared.items():
        fam = families[family]
        if fam.dropped:
            # An untyped sample makes no claim of its own: it joins the family that claims its
            # name if it fits there (untyped `x_total` beside OpenMetrics counter `x`). Typed
            # ones disagree with that family and are dropped.
            fam = claimed_by[family]
            if ftype != _UNTYPED or fam.dropped:
                plans[key] = None
                continue
        role = suffixes_of[fam.name].get(sample_name[len(fam.name) :])
        if role is None:
            plans[key] = None
        else:
            plans[key] = (fam, sample_name, _mode(fam.type, role), role)
    return plans, families, invalid


_MISFIT = None
_BoundEntry = tuple[str, str, float] | None


def _bound_labels(
    items: tuple[tuple[str, str], ...], reserved: frozenset[str], mode: int
) -> _BoundEntry:
    """Label text of a histogram/summary sample: (full text, text without le/quantile, bound)."""
    special = "le" if mode in (_MODE_LE, _MODE_NO_LE) else "quantile"
    if mode in (_MODE_NO_LE, _MODE_NO_QUANTILE):
        text = _label_pairs_text(own_labels(items, reserved | {special}))
        return text, text, 0.0
    rest = [(k, v) for k, v in items if k != special]
    if len(rest) == len(items):
        return _MISFIT
    raw = next(str(v) for k, v in items if k == special)
    bound = _canonical_bound(raw, mode == _MODE_QUANTILE)
    if bound is None:
        return _MISFIT
    text = _label_pairs_text(own_labels(rest, reserved | {special}))
    return f'{text},{special}="{bound[0]}"', text, bound[1]


_RANK_KEY = operator.itemgetter(0, 1)


def _om_value_ok(role: int, value: object) -> bool:
    """Whether OpenMetrics allows `value` for a sample of this role (a strict parser checks)."""
    if role in (_PLAIN, _CREATED):
        return True
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    if math.isnan(number):
        return role == _QUANTILE
    if number < 0:
        return False  # counter-like samples and quantile values cannot be negative
    return number.is_integer() if role in (_BUCKET, _COUNT) else True


def _om_histogram_ok(group: list[_GroupItem]) -> bool:
    """Whether one sorted histogram group is what OpenMetrics requires: buckets up to +Inf with
    non-decreasing values, `_count` equal to the +Inf bucket, `_sum` and `_count` together, no
    `_sum` beside negative buckets."""
    buckets = [(bound, float(value)) for rank, bound, value, _ in group if rank == 0]
    ranks = {item[0] for item in group}
    if not buckets or buckets[-1][0] != math.inf:
        return False
    if any(a[1] > b[1] for a, b in itertools.pairwise(buckets)):
        return False
    has_count, has_sum = _RANKS[_COUNT] in ranks, _RANKS[_SUM] in ranks
    if has_count != has_sum or (has_sum and buckets[0][0] < 0):
        return False
    if has_count:
        count = next(float(value) for rank, _, value, _ in group if rank == _RANKS[_COUNT])
        return count == buckets[-1][1]
    return True


def _plain_family_out(fam: _Family, chunker: _Chunker) -> None:
    """Hand the lines of a plain family to `chunker`, in output order."""
    for agent, segment in fam.segments.items():
        if isinstance(segment, dict):
            chunker.add([f"{head}{text}\n" for head, text in segment.items()])
        elif isinstance(segment, str):
            chunker.add_block(segment, fam.counts[agent])
        else:
            left = fam.counts[agent]
            for piece in segment:
                chunker.add_block(piece, min(left, CHUNK_LINES))
                left -= CHUNK_LINES


def _family_lines(fam: _Family, openmetrics: bool) -> tuple[list[str], int, int]:
    """The sample lines of a grouped family in output order, and how many samples were left out
    as duplicates and as conflicts (OpenMetrics histogram groups it would reject)."""
    lines: list[str] = []
    duplicates = conflicts = 0
    check = openmetrics and fam.type == _HISTOGRAM
    for group in fam.groups.values():
        if len(group) > 1:
            group.sort(key=_RANK_KEY)  # stable: the first of equal buckets stays first
            kept: list[_GroupItem] = []
            for item in group:
                if kept and kept[-1][:2] == item[:2]:
                    # e.g. le="1" and le="1.0": the same bucket twice would break the exposition.
                    duplicates += 1
                else:
                    kept.append(item)
            group = kept
        if check and not _om_histogram_ok(group):
            conflicts += len(group)
            continue
        lines.extend(item[3] for item in group)
    return lines, duplicates, conflicts


class _Chunker:
    """Collects lines and cuts them into chunks of at most CHUNK_LINES lines (a `# HELP`/`# TYPE`
    pair counts as one); `take()` hands over the chunks completed so far (so a body can be
    streamed while it is being cut)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._buf: list[str] = []
        self._count = 0  # lines in _buf

    def add(self, lines: list[str]) -> None:
        """Lines, one per item."""
        buf = self._buf
        room = CHUNK_LINES - self._count
        if len(lines) < room:
            buf.extend(lines)
            self._count += len(lines)
            return
        buf.extend(lines[:room])
        self.chunks.append("".join(buf))
        start = room
        while len(lines) - start >= CHUNK_LINES:
            self.chunks.append("".join(lines[start : start + CHUNK_LINES]))
            start += CHUNK_LINES
        self._buf = lines[start:]
        self._count = len(self._buf)

    def add_block(self, text: str, lines: int) -> None:
        """`lines` lines (at most CHUNK_LINES) in one string."""
        if self._count and self._count + lines > CHUNK_LINES:
            self.chunks.append("".join(self._buf))
            self._buf = []
            self._count = 0
        self._buf.append(text)
        self._count += lines
        if self._count >= CHUNK_LINES:
            self.chunks.append("".join(self._buf))
            self._buf = []
            self._count = 0

    def take(self) -> list[str]:
        chunks, self.chunks = self.chunks, []
        return chunks

    def finish(self) -> list[str]:
        if self._buf:
            self.chunks.append("".join(self._buf))
            self._buf = []
            self._count = 0
        return self.take()


def _format_value_slow(value: object) -> str:
    try:
        return format_value(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return "NaN"


# --------------------------------------------------------------------------------------------
# Series and digested samples


class SeriesSet:
    """Series as columns: for series `i`, `names[i]`, `labels[i]` (own labels as (name, value)
    items), `descriptions[i]`, `types[i]`, and `keys[i]` = (name, type).

    The renderers remember the text they made for a series in `memos` (text 0.0.4), `om_memos`
    and `wmemos` (/metrics-windows), valid for as long as what it depends on (the family's plan,
    the agent's enrichment) is unchanged. The proxy keeps one set per connected agent across its
    replies (`fodcproxy.rpc.replies`), so a steady scrape only formats values. Columns, not an
    object per series: 100k series are then a few dozen objects for the garbage collector, not
    100k (a full collection would otherwise pause the event loop for tens of milliseconds).
    """

    __slots__ = ("descriptions", "keys", "labels", "memos", "names", "om_memos", "routes", "types",
                 "wmemos")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.labels: list[tuple[tuple[str, str], ...]] = []
        self.descriptions: list[str] = []
        self.types: list[int] = []
        self.keys: list[tuple[str, int]] = []
        self.memos: list[Any] = []
        self.om_memos: list[Any] = []
        self.wmemos: list[Any] = []
        # How the last reply was written (text 0.0.4, OpenMetrics): see `_Route`.
        self.routes: list[_Route | None] = [None, None]

    def __len__(self) -> int:
        return len(self.names)

    def add(self, name: str, labels: tuple[tuple[str, str], ...], description: str, type: int,
            key: tuple[str, int] | None = None) -> int:
        """Append a series; returns its index."""
        self.names.append(name)
        self.labels.append(labels)
        self.descriptions.append(description)
        self.types.append(type)
        self.keys.append((name, type) if key is None else key)
        self.memos.append(None)
        self.om_memos.append(None)
        self.wmemos.append(None)
        return len(self.names) - 1


class DigestedSamples(Sequence[Sample]):
    """An agent's samples as columns: sample `i` is of series `ids[i]` of `series` (a
    `SeriesSet`), with value `values[i]` and timestamp `stamps[i]` (Unix seconds, or None when
    the agent sent none). The renderers read the columns; as a sequence, it gives `Sample`s.
    """

    __slots__ = ("ids", "series", "stamps", "values")

    def __init__(self, series: SeriesSet | None = None) -> None:
        self.series = SeriesSet() if series is None else series
        self.ids: array[int] = array("q")
        self.values: array[float] = array("d")
        self.stamps: list[float | None] = []

    def __len__(self) -> int:
        return len(self.ids)

    @overload
    def __getitem__(self, i: int) -> Sample: ...
    @overload
    def __getitem__(self, i: slice) -> list[Sample]: ...

    def __getitem__(self, i: int | slice) -> Sample | list[Sample]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        s = self.series
        j = self.ids[i]
        return Sample(s.names[j], dict(s.labels[j]), self.values[i], s.descriptions[j],
                      s.types[j], self.stamps[i])

    def __repr__(self) -> str:
        return f"<DigestedSamples of {len(self)} samples>"


def digest_samples(samples: Sequence[Any]) -> DigestedSamples:
    """Any `MetricLike` samples (with `timestamp` in Unix seconds or None, if they have one) as
    `DigestedSamples`; series with the same name, type, help and labels share an index."""
    if type(samples) is DigestedSamples:
        return samples
    out = DigestedSamples()
    sset = out.series
    seen: dict[Any, int] = {}
    ids = out.ids
    values: list[Any] = []
    stamps = out.stamps
    for m in samples:
        labels = m.labels
        if type(labels) is dict:
            items = tuple(labels.items())
        else:
            # Faster than .items() on protobuf maps, whose views are the slow Mapping mixins.
            items = tuple([(k, labels[k]) for k in labels])
        key = (m.name, m.type, m.description, items)
        i = seen.get(key)
        if i is None:
            i = seen[key] = sset.add(m.name, items, m.description, m.type)
        ids.append(i)
        values.append(m.value)
        ts = getattr(m, "timestamp", None)
        # A protobuf Timestamp (a Metric's) is not read: /metrics writes no timestamps.
        stamps.append(ts if ts is None or isinstance(ts, (int, float)) else None)
    # Values stay objects: a hand-made sample's value need not be a float.
    out.values = values  # type: ignore[assignment]
    return out


#: Interned memo signatures (sample name, label mode, grouped, OpenMetrics), so a memo made in an
#: earlier scrape is recognised with `is`. Bounded: cleared when it grows past this many.
_SIGNATURES: dict[tuple[str, int, bool, bool], tuple[str, int, bool, bool]] = {}
_SIGNATURES_MAX = 100_000
#: Enrichment text per node, interned across scrapes for the same reason.
_PREFIXES: dict[NodeMeta, tuple[str, frozenset[str]]] = {}
_PREFIXES_MAX = 100_000


def _is_identity(index: Sequence[int]) -> bool:
    """Whether index[i] == i for every i (checked at C speed for arrays)."""
    n = len(index)
    if not n or index[0] != 0 or index[n - 1] != n - 1:
        return False
    return index == array("q", range(n)) if type(index) is array else list(index) == list(range(n))


def _signature(name: str, mode: int, grouped: bool, om: bool) -> tuple[str, int, bool, bool]:
    key = (name, mode, grouped, om)
    sig = _SIGNATURES.get(key)
    if sig is None:
        if len(_SIGNATURES) >= _SIGNATURES_MAX:
            _SIGNATURES.clear()
        sig = _SIGNATURES[key] = key
    return sig


def _prefix(meta: NodeMeta) -> tuple[str, frozenset[str]]:
    """The enrichment label text of an agent (without its leading comma) and the label names it
    reserves."""
    try:
        found = _PREFIXES.get(meta)
    except TypeError:  # unhashable label values in a hand-made NodeMeta
        found = None
    if found is None:
        pairs = enrichment_labels(meta)
        found = (_label_pairs_text(pairs)[1:], frozenset(name for name, _ in pairs))
        if len(_PREFIXES) >= _PREFIXES_MAX:
            _PREFIXES.clear()
        try:
            _PREFIXES[meta] = found
        except TypeError:
            pass
    return found


# --------------------------------------------------------------------------------------------
# Rendering

#: Samples rendered between two `Rendering.steps()` yields.
STEP_SAMPLES = 1000

# How to write the samples of one (name, type), with the memo signature.
_FullPlan = tuple[_Family, str, int, int, tuple[str, int, bool, bool]]
# What a series' memo holds: (signature, prefix, line head `name{labels} `, label entry).
_Memo = tuple[tuple[str, int, bool, bool], str, str | None, _BoundEntry]


class _Route:
    """Where the samples of one agent's reply go, kept on its SeriesSet for the next scrape.

    Valid while the reply has the same series in the same order (`index`), under the same
    enrichment (`prefix`) and the same plans for its (name, type) keys (`sig`). Then each plain
    family gets the agent's lines by formatting the values at `positions` in bulk and putting
    them after the remembered `heads`: no per-sample Python code. `rest` lists the samples of
    grouped (histogram, summary, OpenMetrics counter) families, written one by one. `counts`:
    (written, duplicates, conflicts, invalid names) among the plain samples.
    """

    __slots__ = ("counts", "families", "index", "keys", "prefix", "rest", "sig")

    def __init__(self, *, index: Sequence[int], prefix: str, keys: tuple[tuple[str, int], ...],
                 sig: tuple[Any, ...], families: list[tuple[str, array[int], list[str], str]],
                 rest: array[int], counts: tuple[int, int, int, int]) -> None:
        self.index = index
        self.prefix = prefix
        self.keys = keys
        self.sig = sig
        self.families = families
        self.rest = rest
        self.counts = counts


class Rendering:
    """One `/metrics` body being rendered, in steps (see `render_with_stats()` for the layout).

    Drive `steps()` to the end (a Trio caller can checkpoint at each yield, so a big render never
    blocks the event loop for long), then iterate `chunks()` for the body; `stats` is complete once
    `chunks()` is exhausted. Sans-IO: no clock, no event loop.
    """

    def __init__(self, batches: Sequence[AgentBatch], *, openmetrics: bool = False,
                 tail: str = "") -> None:
        self.batches = batches
        self.openmetrics = openmetrics
        self.tail = tail
        self.stats = RenderStats()
        self._written = self._conflicts = self._duplicates = self._invalid = 0
        self._families: dict[str, _Family] = {}
        self._agents: list[tuple[str, AgentBatch]] = []

    def steps(self) -> Iterator[None]:
        """Sort every sample into its family; yields between pieces of about STEP_SAMPLES."""
        om = self.openmetrics
        columns = [digest_samples(batch.samples) for batch in self.batches]

        # Pass 1: every (name, type) of the scrape, in first-seen order, to settle families.
        keys: dict[tuple[str, int], None] = {}
        count = 0
        for d in columns:
            set_keys = d.series.keys
            route = d.series.routes[1 if om else 0]
            if route is not None and route.index == d.ids:
                keys.update(dict.fromkeys(route.keys))  # the same series as last time
            elif len(d.ids) == len(set_keys) and _is_identity(d.ids):
                # One sample per series, in the set's order (the usual latest reply).
                keys.update(dict.fromkeys(set_keys))
            else:
                for i in d.ids:
                    keys[set_keys[i]] = None
            count += len(d.ids)
            if count >= 4 * STEP_SAMPLES:
                count = 0
                yield
        plans, self._families, invalid_keys = _make_plans(keys, om)
        full: dict[tuple[str, int], _FullPlan | None] = {}
        route_sigs: dict[tuple[str, int], tuple[str, Any] | None] = {}
        for key, plan in plans.items():
            if plan is None:
                full[key] = route_sigs[key] = None
            else:
                fam, name, mode, role = plan
                sig = _signature(name, mode, fam.grouped, om)
                full[key] = (fam, name, mode, role, sig)
                route_sigs[key] = (fam.name, sig)
        agents = collections.Counter(batch.meta.agent_id for batch in self.batches)
        yield

        # Pass 2: write each sample into its family.
        label_caches: dict[frozenset[str], list[dict[tuple[tuple[str, str], ...], Any]]] = {}
        count = 0
        for batch, d in zip(self.batches, columns):
            prefix, reserved = _prefix(batch.meta)
            agent = batch.meta.agent_id
            self._agents.append((prefix, batch))
            caches = label_caches.get(reserved)
            if caches is None:
                caches = label_caches[reserved] = [{} for _ in range(_MODES)]
            index, values = d.ids, d.values
            if type(values) is array and agents[agent] == 1:
                # A proxy reply (float values) of an agent that is here once: by its route.
                sset = d.series
                slot = 1 if om else 0
                route = sset.routes[slot]
                if (route is None or route.prefix != prefix or route.index != index
                        or route.sig != tuple([route_sigs[k] for k in route.keys])):
                    route = yield from self._route(d, prefix, reserved, caches, full,
                                                   invalid_keys, route_sigs)
                    sset.routes[slot] = route
                yield from self._follow(route, d, prefix, agent, reserved, caches, full,
                                        invalid_keys)
                count += len(index)
                if count >= STEP_SAMPLES:
                    count = 0
                    yield
                continue
            n = len(index)
            for start in range(0, n, STEP_SAMPLES):
                if start or n > STEP_SAMPLES:
                    end = start + STEP_SAMPLES
                    self._pass(prefix, agent, reserved, caches, full, invalid_keys, d.series,
                               index[start:end], values[start:end])
                else:
                    self._pass(prefix, agent, reserved, caches, full, invalid_keys, d.series,
                               index, values)
                count += min(STEP_SAMPLES, n - start)
                if count >= STEP_SAMPLES:
                    count = 0
                    yield

    def _route(self, d: DigestedSamples, prefix: str, reserved: frozenset[str],
               caches: list[dict[tuple[tuple[str, str], ...], Any]],
               plans: dict[tuple[str, int], _FullPlan | None],
               invalid_keys: set[tuple[str, int]],
               route_sigs: dict[tuple[str, int], tuple[str, Any] | None],
               ) -> Generator[None, None, _Route]:
        """Work out where each sample of an agent's reply goes (see `_Route`)."""
        om = self.openmetrics
        sset = d.series
        keys = sset.keys
        memos = sset.om_memos if om else sset.memos
        descriptions = sset.descriptions
        families: dict[str, tuple[array[int], list[str], list[str], set[str]]] = {}
        distinct: dict[tuple[str, int], None] = {}
        rest: array[int] = array("q")
        written = duplicates = conflicts = invalid = 0
        for pos, i in enumerate(d.ids):
            key = keys[i]
            distinct[key] = None
            plan = plans[key]
            if plan is None:
                if key in invalid_keys:
                    invalid += 1
                else:
                    conflicts += 1
                continue
            fam, name, mode, _role, sig = plan
            if mode != _MODE_PLAIN or fam.grouped:
                rest.append(pos)  # grouped families are written sample by sample
                continue
            memo: _Memo | None = memos[i]
            if memo is None or memo[0] is not sig or memo[1] != prefix:
                memo = memos[i] = _make_memo(sset.labels[i], name, mode, False, sig, prefix,
                                             reserved, caches)
            head: str = memo[2]  # type: ignore[assignment]
            entry = families.get(fam.name)
            if entry is None:
                entry = families[fam.name] = (array("q"), [], [""], set())
            if not entry[2][0]:  # help comes from the first sample that has one, kept or not
                entry[2][0] = descriptions[i]
            if head in entry[3]:
                duplicates += 1
                continue
            entry[3].add(head)
            entry[0].append(pos)
            entry[1].append(head)
            if pos % STEP_SAMPLES == STEP_SAMPLES - 1:
                yield
        route_keys = tuple(distinct)
        return _Route(
            index=d.ids, prefix=prefix, keys=route_keys,
            sig=tuple([route_sigs[k] for k in route_keys]),
            families=[(name, e[0], e[1], e[2][0]) for name, e in families.items()],
            rest=rest, counts=(written + sum(len(e[0]) for e in families.values()), duplicates,
                               conflicts, invalid),
        )

    def _follow(self, route: _Route, d: DigestedSamples, prefix: str, agent: str,
                reserved: frozenset[str], caches: list[dict[tuple[tuple[str, str], ...], Any]],
                plans: dict[tuple[str, int], _FullPlan | None],
                invalid_keys: set[tuple[str, int]]) -> Iterator[None]:
        """Write an agent's reply by its route: per family, values formatted in bulk."""
        families = self._families
        value_at = d.values.__getitem__
        # NaN and infinities are written NaN, +Inf, -Inf, not as repr() has them.
        fix = not all(map(_isfinite, d.values))
        count = 0
        for fam_name, positions, heads, description in route.families:
            fam = families[fam_name]
            if fam.need_help and description:
                fam.help = description
                fam.need_help = False
            texts: Iterable[str] = map(_float_repr, map(value_at, positions))
            if fix:
                texts = [_SPECIAL_VALUES.get(text, text) for text in texts]
            n = len(positions)
            # One string per agent and family (strings are no work for the garbage collector).
            if n <= CHUNK_LINES:
                fam.segments[agent] = "".join(map(_add, heads, map(_add, texts, _repeat("\n"))))
            else:
                texts = list(texts)
                fam.segments[agent] = [
                    "".join(map(_add, heads[k : k + CHUNK_LINES],
                                map(_add, texts[k : k + CHUNK_LINES], _repeat("\n"))))
                    for k in range(0, n, CHUNK_LINES)
                ]
            fam.counts[agent] = n
            count += n
            if count >= 2 * STEP_SAMPLES:  # a big agent: yield within it too
                count = 0
                yield
        written, duplicates, conflicts, invalid = route.counts
        self._written += written
        self._duplicates += duplicates
        self._conflicts += conflicts
        self._invalid += invalid
        rest = route.rest
        for start in range(0, len(rest), STEP_SAMPLES):
            part = rest[start : start + STEP_SAMPLES]
            self._pass(prefix, agent, reserved, caches, plans, invalid_keys, d.series,
                       [d.ids[p] for p in part], [d.values[p] for p in part])
            yield

    def _pass(self, prefix: str, agent: str, reserved: frozenset[str],
              caches: list[dict[tuple[tuple[str, str], ...], Any]],
              plans: dict[tuple[str, int], _FullPlan | None], invalid_keys: set[tuple[str, int]],
              sset: SeriesSet, index: Sequence[int], values: Sequence[Any]) -> None:
        om = self.openmetrics
        keys = sset.keys
        memos = sset.om_memos if om else sset.memos
        written = conflicts = duplicates = invalid = 0
        for i, value in zip(index, values):
            key = keys[i]
            plan = plans[key]
            if plan is None:
                if key in invalid_keys:
                    invalid += 1
                else:
                    conflicts += 1
                continue
            fam, name, mode, role, sig = plan
            if fam.need_help:
                description = sset.descriptions[i]
                if description:
                    fam.help = description
                    fam.need_help = False
            if type(value) is float:
                text = _float_repr(value)
                if text[-1] > "9":  # nan, inf, -inf: every other float repr ends in a digit
                    text = _SPECIAL_VALUES[text]
            else:
                text = _format_value_slow(value)
            memo: _Memo | None = memos[i]
            if memo is None or memo[0] is not sig or memo[1] != prefix:
                memo = memos[i] = _make_memo(sset.labels[i], name, mode, fam.grouped, sig,
                                             prefix, reserved, caches)
            head = memo[2]
            if head is None:  # a histogram/summary sample without a usable le/quantile
                conflicts += 1
                continue
            if mode == _MODE_PLAIN and not fam.grouped:
                # The line head holds the name and every label: it identifies the series.
                segment = fam.segments.get(agent)
                if segment is None:
                    segment = fam.segments[agent] = {}
                if head in segment:
                    duplicates += 1
                    continue
                segment[head] = text  # type: ignore[index,call-overload]
                written += 1
                continue
            _, group_text, bound = memo[3]  # type: ignore[misc]
            if om and not _om_value_ok(role, value):
                conflicts += 1
                continue
            if head in fam.seen:
                duplicates += 1
                continue
            fam.seen.add(head)
            group_key = (prefix, group_text)
            group = fam.groups.get(group_key)
            if group is None:
                group = fam.groups[group_key] = []
            group.append((_RANKS[role], bound, value, f"{head}{text}\n"))
            written += 1
        self._written += written
        self._conflicts += conflicts
        self._duplicates += duplicates
        self._invalid += invalid

    def chunks(self) -> Iterator[str]:
        """The body, chunk by chunk: agent families sorted by name, the per-agent families, the
        tail, `# EOF` for OpenMetrics. Run `steps()` to the end first."""
        om = self.openmetrics
        families = self._families
        chunker = _Chunker()
        for family_name in sorted(families):
            fam = families[family_name]
            if fam.dropped:
                continue
            if not fam.grouped:
                if fam.segments:
                    chunker.add([_header(fam.name, fam.help, fam.type, om)])
                    _plain_family_out(fam, chunker)
                    yield from chunker.take()
                continue
            lines, dups, misfits = _family_lines(fam, om)
            self._duplicates += dups
            self._conflicts += misfits
            self._written -= dups + misfits
            if lines:
                chunker.add([_header(fam.name, fam.help, fam.type, om), *lines])
                yield from chunker.take()
        up_lines: dict[str, str] = {}
        duration_lines: dict[str, str] = {}
        for prefix, batch in self._agents:
            if prefix not in up_lines:  # the same agent twice: one series, the first
                up_lines[prefix] = f"{UP_FAMILY}{{{prefix}}} {1 if batch.up else 0}\n"
                duration = _format_value_slow(batch.duration)
                duration_lines[prefix] = f"{DURATION_FAMILY}{{{prefix}}} {duration}\n"
        chunker.add([_header(UP_FAMILY, UP_HELP, _GAUGE, om), *up_lines.values()])
        chunker.add([_header(DURATION_FAMILY, DURATION_HELP, _GAUGE, om), *duration_lines.values()])
        yield from chunker.finish()
        tail = self.tail
        if tail:
            yield tail if tail.endswith("\n") else tail + "\n"
        if om:
            yield "# EOF\n"
        self.stats = RenderStats(samples=self._written, invalid_names=self._invalid,
                                 conflicts=self._conflicts, duplicates=self._duplicates)


def _make_memo(items: tuple[tuple[str, str], ...], name: str, mode: int, grouped: bool,
               sig: tuple[str, int, bool, bool], prefix: str, reserved: frozenset[str],
               caches: list[dict[tuple[tuple[str, str], ...], Any]]) -> _Memo:
    entry: _BoundEntry
    if mode == _MODE_PLAIN:
        cache = caches[_MODE_PLAIN]
        label_text = cache.get(items)
        if label_text is None:
            label_text = cache[items] = _label_pairs_text(own_labels(items, reserved))
        if not grouped:  # only the head is needed (and memos are kept for every series)
            return (sig, prefix, f"{name}{{{prefix}{label_text}}} ", None)
        entry = (label_text, label_text, 0.0)
    else:
        cache = caches[mode]
        entry = cache.get(items, cache)
        if entry is cache:
            entry = cache[items] = _bound_labels(items, reserved, mode)
    head = None if entry is _MISFIT else f"{name}{{{prefix}{entry[0]}}} "
    return (sig, prefix, head, entry)


def render(
    batches: Sequence[AgentBatch], *, openmetrics: bool = False, tail: str = ""
) -> list[str]:
    """Render the `/metrics` body for `batches`; see `render_with_stats()` (which also counts
    what was dropped) for the layout. Returns the body's chunks."""
    return render_with_stats(batches, openmetrics=openmetrics, tail=tail).chunks


def render_with_stats(
    batches: Sequence[AgentBatch], *, openmetrics: bool = False, tail: str = ""
) -> Rendered:
    """Render the `/metrics` body for `batches` as text 0.0.4 or (`openmetrics`) OpenMetrics 1.0.

    Returns the body as chunks of a few thousand lines at most (concatenate or stream them) and the
    counts of samples written and dropped. Agent families come first, sorted by name, then
    `fodc_agent_up` and `fodc_agent_collect_duration_seconds` with one line per batch (batches
    with the same enrichment labels are written once), then `tail`: already-rendered exposition
    text of the proxy's own metrics (a newline is added if missing), then `# EOF` for OpenMetrics.
    The chunks are `str`: encode them as UTF-8. Raises nothing for any content of the samples.
    `Rendering` does the same in steps.
    """
    rendering = Rendering(batches, openmetrics=openmetrics, tail=tail)
    for _ in rendering.steps():
        pass
    chunks = list(rendering.chunks())
    return Rendered(chunks=chunks, stats=rendering.stats)


def _header(name: str, help_text: str, ftype: str, openmetrics: bool) -> str:
    if openmetrics and ftype == _UNTYPED:
        ftype = "unknown"
    return f"# HELP {name} {_escape_help(help_text, openmetrics)}\n# TYPE {name} {ftype}\n"


# --------------------------------------------------------------------------------------------
# Content negotiation


def _media_ranges(accept: str) -> Iterator[tuple[str, dict[str, str]]]:
    for part in accept.split(","):
        media, _, params_text = part.partition(";")
        params: dict[str, str] = {}
        for param in params_text.split(";"):
            key, sep, value = param.partition("=")
            if sep:
                params[key.strip().lower()] = value.strip().strip('"')
        yield media.strip().lower(), params


def negotiate(accept_header: str | None) -> bool:
    """Decide from an Accept header whether to answer in OpenMetrics (True) or text 0.0.4 (False).

    OpenMetrics is chosen when `application/openmetrics-text` (version 1.0.0 or 0.0.1, or no
    version) has a q-value above 0 and at least as high as the best of `text/plain`, `text/*` and
    `*/*`. A missing or empty header, or one that does not parse, means text. Never raises.
    """
    if not accept_header:
        return False
    best_om = best_text = 0.0
    for media, params in _media_ranges(accept_header):
        try:
            q = float(params.get("q", "1"))
        except ValueError:
            q = 0.0
        if not 0.0 <= q <= 1.0:
            q = 0.0
        if media == "application/openmetrics-text":
            if params.get("version", "1.0.0") in ("1.0.0", "0.0.1"):
                best_om = max(best_om, q)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, q)
    return best_om > 0.0 and best_om >= best_text

