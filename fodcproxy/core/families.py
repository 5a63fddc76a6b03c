"""Families of the `/metrics` body: which family each (name, type) of a scrape goes to (sans-IO).

`make_plans()` settles, once per scrape, the family, type and label handling of every (sample
name, type) the agents sent, whatever they sent:

* A sample declares a family by its name and type (`declare()`): `x_bucket` of a histogram is
  family `x`; an OpenMetrics counter needs `_total`; text 0.0.4 has no `_created` samples (they
  become gauges of their own name, as prometheus_client writes them). Agent families named
  `fodc_agent_*` / `fodc_proxy_*` / `banyandb_fodc_schema_*` get an `exported_` prefix: those
  names are the proxy's own.
* A family's type is the first *typed* (not untyped) declaration seen. Samples declared with
  another type are dropped: the first family wins, and each conflict is reported (`FamilyConflict`).
  Untyped samples claim no type: they join the family when their name fits its type.
* A family named like a sample of a histogram, summary or (OpenMetrics) counter family, e.g. a
  gauge `x_count` beside a histogram `x`, cannot be written beside it: parsers would file its
  samples under the other family. Again the first typed one wins: the later one's typed samples
  are dropped and reported. Untyped samples of a family named like such a sample join the
  grouped family when their name fits it.

"First" is the order the renderer sees (name, type) pairs in: agents in the order given, samples in
the order each agent sent them.
"""

from __future__ import annotations

import itertools
import math
import operator
from collections.abc import Iterable
from typing import Any

import attrs

from fodcproxy.core.labels import EXPORTED, sanitize_metric_name
from fodcproxy.core.model import MetricType

__all__ = ["FamilyConflict", "Plans", "make_plans"]

GAUGE = "gauge"
COUNTER = "counter"
HISTOGRAM = "histogram"
SUMMARY = "summary"
UNTYPED = "untyped"

# Role of a sample in its family, and its rank: the order of the roles inside a series group.
PLAIN, BUCKET, QUANTILE, TOTAL, COUNT, SUM, CREATED = range(7)
RANKS = {PLAIN: 0, BUCKET: 0, QUANTILE: 0, TOTAL: 0, COUNT: 1, SUM: 2, CREATED: 3}

# How a sample's own labels are rendered (index into the per-agent list of label caches).
MODE_PLAIN = 0
MODE_LE = 1  # histogram bucket: `le` required, written last
MODE_NO_LE = 2  # other histogram sample: an `le` label would confuse parsers, rename it
MODE_QUANTILE = 3  # summary quantile: `quantile` required, written last
MODE_NO_QUANTILE = 4
MODES = 5

HISTOGRAM_SUFFIXES = (
    ("_bucket", BUCKET), ("_count", COUNT), ("_sum", SUM), ("_created", CREATED)
)
SUMMARY_SUFFIXES = (("_count", COUNT), ("_sum", SUM), ("_created", CREATED))

TYPE_WORDS = {
    int(MetricType.GAUGE): GAUGE,
    int(MetricType.COUNTER): COUNTER,
    int(MetricType.HISTOGRAM): HISTOGRAM,
    int(MetricType.SUMMARY): SUMMARY,
}


def sample_suffixes(ftype: str, openmetrics: bool) -> dict[str, int]:
    """The sample names (as suffixes of the family name) a family of type `ftype` may hold."""
    if ftype == HISTOGRAM:
        suffixes = {"_bucket": BUCKET, "_count": COUNT, "_sum": SUM}
    elif ftype == SUMMARY:
        suffixes = {"": QUANTILE, "_count": COUNT, "_sum": SUM}
    elif ftype == COUNTER and openmetrics:
        return {"_total": TOTAL, "_created": CREATED}
    else:
        return {"": PLAIN}
    if openmetrics:
        suffixes["_created"] = CREATED
    return suffixes


def declare(name: str, mtype: int, openmetrics: bool) -> tuple[str, str, int, str] | None:
    """(family name, family type, role, sample name) a sample declares by its name and type.

    Returns None when the name is empty (even after sanitising).
    """
    name = sanitize_metric_name(name)
    if not name:
        return None
    ftype = TYPE_WORDS.get(mtype, UNTYPED)
    family, role = name, PLAIN
    if ftype == COUNTER:
        if openmetrics:
            # OpenMetrics counter families are named without `_total` and their samples must
            # carry it. A counter sample without `_total` cannot be written as a counter; it is
            # written as an `unknown` family of its own name rather than renamed.
            if name.endswith("_total") and len(name) > 6:
                family, role = name[:-6], TOTAL
            elif name.endswith("_created") and len(name) > 8:
                family, role = name[:-8], CREATED
            else:
                ftype = UNTYPED
        elif name.endswith("_created"):
            # Text 0.0.4 has no created timestamps: write them as gauges, as prometheus_client does.
            ftype = GAUGE
    elif ftype in (HISTOGRAM, SUMMARY):
        suffixes = HISTOGRAM_SUFFIXES if ftype == HISTOGRAM else SUMMARY_SUFFIXES
        for suffix, suffix_role in suffixes:
            if name.endswith(suffix) and len(name) > len(suffix):
                if suffix_role == CREATED and not openmetrics:
                    ftype = GAUGE
                else:
                    family, role = name[: -len(suffix)], suffix_role
                break
        else:
            if ftype == SUMMARY:
                role = QUANTILE
            else:
                # A "histogram" sample without a histogram suffix: keep it, untyped.
                ftype = UNTYPED
    if family.startswith(("fodc_agent_", "fodc_proxy_", "banyandb_fodc_schema_")) or family in (
            "fodc_agent", "fodc_proxy"):
        # These would collide with the proxy's own families (the schema gauges of
        # `fodcproxy.lifecycle` are `banyandb_fodc_schema_*`, upstream's proxy's names).
        family, name = EXPORTED + family, EXPORTED + name
    return family, ftype, role, name


def mode(ftype: str, role: int) -> int:
    if ftype == HISTOGRAM:
        return MODE_LE if role == BUCKET else MODE_NO_LE
    if ftype == SUMMARY:
        return MODE_QUANTILE if role == QUANTILE else MODE_NO_QUANTILE
    return MODE_PLAIN


@attrs.frozen
class FamilyConflict:
    """Two agents' families that cannot both be written: the samples of `family` declared as
    `type` are dropped, because `kept` (of type `kept_type`) came first.

    `family` == `kept` when the same name came with two types (a counter `x` and a gauge `x`);
    otherwise one is named like a sample of the other (a gauge `h_bucket` beside a histogram `h`).
    """

    family: str
    type: str
    kept: str
    kept_type: str

    def __str__(self) -> str:
        if self.family == self.kept:
            why = f"the family was first declared a {self.kept_type}"
        else:
            why = (f"its name is a sample name of {self.kept_type} family {self.kept!r}, "
                   "declared first")
        return f"{self.type} samples of {self.family!r} are dropped: {why}"


class Family:
    """One output family while it is being filled (internal, mutable)."""

    __slots__ = (
        "counts", "dropped", "grouped", "groups", "help", "name", "need_help", "seen", "segments",
        "type",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.type = UNTYPED
        self.help = ""
        self.need_help = True
        self.grouped = False  # several sample names per series group: lines are grouped
        self.dropped = False
        # Plain families, by agent_id in first-seen order: line head (`name{labels} `) -> value
        # text; or, for an agent written by its route, its lines as one string (a list of them,
        # one per chunk, when there are more), `counts` lines in all. Heads of different agent_ids
        # never collide: each starts with its agent_id label.
        self.segments: dict[str, dict[str, str] | str | list[str]] = {}
        self.counts: dict[str, int] = {}
        # Grouped families: the line heads written (each names one series), and the lines by
        # series group, (agent prefix, labels without le/quantile) -> [(rank, bound, value,
        # line)], so that a group's samples are contiguous, as OpenMetrics requires.
        self.seen: set[str] = set()
        self.groups: dict[tuple[str, str], list[GroupItem]] = {}


GroupItem = tuple[int, float, Any, str]

#: How to write the samples of one (name, type): (family, sample name, label mode, role).
Plan = tuple[Family, str, int, int]


@attrs.frozen
class Plans:
    """`make_plans()`'s answer. `plans`: the plan of each (name, type) pair, None for pairs whose
    samples are dropped; `families` by name; `invalid`: the pairs dropped because their name is
    empty; `conflicts`: each family conflict once, in the order found."""

    plans: dict[tuple[str, int], Plan | None]
    families: dict[str, Family]
    invalid: set[tuple[str, int]]
    conflicts: list[FamilyConflict]


def make_plans(keys: Iterable[tuple[str, int]], openmetrics: bool) -> Plans:
    """Settle families, their types and conflicts for all (name, type) pairs of a scrape, given
    in first-seen order (see the module docstring for the rules)."""
    declared: dict[tuple[str, int], tuple[str, str, int, str]] = {}
    invalid: set[tuple[str, int]] = set()
    families: dict[str, Family] = {}
    typed_at: dict[str, int] = {}  # family -> position of its first typed declaration
    for n, key in enumerate(keys):
        decl = declare(key[0], key[1], openmetrics)
        if decl is None:
            invalid.add(key)
            continue
        declared[key] = decl
        fam = families.get(decl[0])
        if fam is None:
            fam = families[decl[0]] = Family(decl[0])
        if fam.type == UNTYPED and decl[1] != UNTYPED:
            fam.type = decl[1]  # the first typed declaration wins
            typed_at[fam.name] = n

    conflicts: dict[tuple[str, str], FamilyConflict] = {}
    suffixes_of = {name: sample_suffixes(fam.type, openmetrics) for name, fam in families.items()}
    claimed_by: dict[str, Family] = {}
    # A grouped family and the families named like its samples: the first typed one wins. In the
    # order they were typed, so a family that lost claims nothing.
    grouped = [fam for fam in families.values() if len(suffixes_of[fam.name]) > 1]
    grouped.sort(key=lambda fam: typed_at[fam.name])
    for fam in grouped:
        if fam.dropped:
            continue
        rivals = [families[fam.name + suffix] for suffix in suffixes_of[fam.name]
                  if suffix and fam.name + suffix in families]
        rivals = [other for other in rivals if not other.dropped]
        first = [other for other in rivals
                 if other.type != UNTYPED and typed_at[other.name] < typed_at[fam.name]]
        if first:
            other = min(first, key=lambda other: typed_at[other.name])
            conflicts[(fam.name, fam.type)] = FamilyConflict(fam.name, fam.type, other.name,
                                                             other.type)
            # Only its untyped samples are left, as a plain untyped family.
            fam.type = UNTYPED
            suffixes_of[fam.name] = sample_suffixes(UNTYPED, openmetrics)
            continue
        for other in rivals:
            other.dropped = True
            claimed_by[other.name] = fam
            if other.type != UNTYPED:
                conflicts[(other.name, other.type)] = FamilyConflict(other.name, other.type,
                                                                     fam.name, fam.type)
    for fam in families.values():
        fam.grouped = len(suffixes_of[fam.name]) > 1

    plans: dict[tuple[str, int], Plan | None] = dict.fromkeys(invalid)
    for key, (family, ftype, _role, sample_name) in declared.items():
        fam = families[family]
        if fam.dropped:
            # An untyped sample makes no claim of its own: it joins the family that claims its
            # name if it fits there (untyped `x_total` beside OpenMetrics counter `x`). Typed
            # ones were reported above.
            fam = claimed_by[family]
            if ftype != UNTYPED or fam.dropped:
                plans[key] = None
                continue
        elif ftype != UNTYPED and ftype != fam.type:
            plans[key] = None
            if (family, ftype) not in conflicts:
                conflicts[(family, ftype)] = FamilyConflict(family, ftype, family, fam.type)
            continue
        role = suffixes_of[fam.name].get(sample_name[len(fam.name) :])
        if role is None:
            plans[key] = None
        else:
            plans[key] = (fam, sample_name, mode(fam.type, role), role)
    return Plans(plans, families, invalid, list(conflicts.values()))


RANK_KEY = operator.itemgetter(0, 1)


def om_value_ok(role: int, value: object) -> bool:
    """Whether OpenMetrics allows `value` for a sample of this role (a strict parser checks)."""
    if role in (PLAIN, CREATED):
        return True
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return False
    if math.isnan(number):
        return role == QUANTILE
    if number < 0:
        return False  # counter-like samples and quantile values cannot be negative
    return number.is_integer() if role in (BUCKET, COUNT) else True


def om_histogram_ok(group: list[GroupItem]) -> bool:
    """Whether one sorted histogram group is what OpenMetrics requires: buckets up to +Inf with
    non-decreasing values, `_count` equal to the +Inf bucket, `_sum` and `_count` together, no
    `_sum` beside negative buckets."""
    buckets = [(bound, float(value)) for rank, bound, value, _ in group if rank == 0]
    ranks = {item[0] for item in group}
    if not buckets or buckets[-1][0] != math.inf:
        return False
    if any(a[1] > b[1] for a, b in itertools.pairwise(buckets)):
        return False
    has_count, has_sum = RANKS[COUNT] in ranks, RANKS[SUM] in ranks
    if has_count != has_sum or (has_sum and buckets[0][0] < 0):
        return False
    if has_count:
        count = next(float(value) for rank, _, value, _ in group if rank == RANKS[COUNT])
        return count == buckets[-1][1]
    return True


def family_lines(fam: Family, openmetrics: bool) -> tuple[list[str], int, int]:
    """The sample lines of a grouped family in output order, and how many samples were left out
    as duplicates and as conflicts (OpenMetrics histogram groups it would reject)."""
    lines: list[str] = []
    duplicates = conflicts = 0
    check = openmetrics and fam.type == HISTOGRAM
    for group in fam.groups.values():
        if len(group) > 1:
            group.sort(key=RANK_KEY)  # stable: the first of equal buckets stays first
            kept: list[GroupItem] = []
            for item in group:
                if kept and kept[-1][:2] == item[:2]:
                    # e.g. le="1" and le="1.0": the same bucket twice would break the exposition.
                    duplicates += 1
                else:
                    kept.append(item)
            group = kept
        if check and not om_histogram_ok(group):
            conflicts += len(group)
            continue
        lines.extend(item[3] for item in group)
    return lines, duplicates, conflicts
