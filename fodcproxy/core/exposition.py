"""The proxy's `GET /metrics` body: many agents' samples as one Prometheus exposition (sans-IO).

`render()` takes one `AgentBatch` per selected agent and returns text chunks whose concatenation is
the body, in Prometheus text format 0.0.4 or OpenMetrics 1.0. The output must be accepted by strict
parsers (the Go text parser behind Prometheus and `promtool`, and prometheus_client's parsers)
whatever the agents send, so every name and label is checked and nothing is trusted:

* Families are grouped across all agents (never interleaved), sorted by name, with one `# HELP`
  (the first non-empty description seen) and one `# TYPE`. Which family each sample goes to, and
  which samples are dropped when agents disagree on a family's type, is settled by
  `fodcproxy.core.families` (the first typed family wins; each conflict is reported once per
  render, see `ExpositionCache`).
* Every sample gets the agent's enrichment labels (`fodcproxy.core.labels`: `agent_id`,
  `node_role`, `node_ip` and `node_port` or, for a pod agent, `pod_name`, and `node_<k>`); an own
  label with the name and the value of one of them is that label (written once, in the
  enrichment), one with another value is renamed `exported_<name>` (repeatedly, until unique).
  Invalid metric and label names are sanitised; an empty metric name is dropped and counted.
* Series that end up with the same name and labels are written once (the first) and counted.
* OpenMetrics has value rules its parsers enforce (no negative or NaN counter-like values,
  integer bucket counts, every histogram series up to a `+Inf` bucket that equals `_count`):
  samples and histogram series breaking them are dropped and counted as conflicts, in OpenMetrics
  only.

Counts of what was dropped are returned by `render_with_stats()`.

Performance matters (100 agents x 1000 samples per scrape, answered well under a second): samples
are read as columns (`DigestedSamples`: series index, value) of a `SeriesSet` (name, labels,
help, type of each series). The text of a line up to its value (`name{labels} `) is remembered per
series, and how each agent's reply was routed into families, for as long as its family's plan and
its agent's enrichment stay the same: in an `ExpositionCache`, which the proxy owns and passes to
every render (the decoder keeps each agent's set across scrapes, `fodcproxy.rpc.replies`), so a
steady scrape formats only values. The enrichment is rendered once per agent, escaped label
strings are cached per label set for the call, and `Rendering` works in steps so that its caller
can yield to an event loop.
"""

from __future__ import annotations

import collections
import itertools
import math
import operator
import weakref
from array import array
from collections.abc import Callable, Collection, Generator, Iterable, Iterator, Sequence
from typing import Any

import attrs

from fodcproxy.core.families import (
    GAUGE,
    MODE_PLAIN,
    MODES,
    RANKS,
    Family,
    FamilyConflict,
    family_lines,
    make_plans,
    om_value_ok,
)
from fodcproxy.core.labels import Enrichment, own_labels, values_matter
from fodcproxy.core.model import MetricLike, NodeMeta
from fodcproxy.core.series import DigestedSamples, SeriesSet, digest_samples, is_identity
from fodcproxy.core.textformat import (
    CHUNK_LINES,
    MISFIT,
    SPECIAL_VALUES,
    BoundEntry,
    Chunker,
    bound_labels,
    format_value,
    format_value_or_nan,
    header,
    label_pairs_text,
)

__all__ = [
    "CONTENT_TYPE_OPENMETRICS",
    "CONTENT_TYPE_TEXT",
    "AgentBatch",
    "ExpositionCache",
    "FamilyConflict",
    "RenderStats",
    "Rendered",
    "Rendering",
    "format_value",
    "render",
    "render_with_stats",
]

CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"
CONTENT_TYPE_OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"

UP_FAMILY = "fodc_agent_up"
UP_HELP = "1 if the agent answered the collection in time, 0 otherwise"
DURATION_FAMILY = "fodc_agent_collect_duration_seconds"
DURATION_HELP = "Seconds the proxy spent collecting this agent's samples"
CRASH_FAMILY = "fodc_agent_crash_records"
CRASH_HELP = "Crash records the agent reported in its latest answer (GET /diagnostics)"
PRESSURE_FAMILY = "fodc_agent_pressure_profiles"
PRESSURE_HELP = ("Memory-pressure capture events the agent reported in its latest answer "
                 "(GET /pressure-profiles)")


@attrs.frozen
class AgentBatch:
    """What one agent contributed to a scrape.

    `samples` may be protobuf `Metric` objects (only the `MetricLike` attributes are read) or,
    fastest, `DigestedSamples`.
    `up` says whether the agent answered in time; `duration` is how long its collection took, in
    seconds. `crash_records` and `pressure_profiles` are the numbers of records in the agent's
    latest answers on those streams (None: no answer yet, no line).
    """

    meta: NodeMeta
    samples: Sequence[MetricLike]
    up: bool
    duration: float
    crash_records: int | None = None
    pressure_profiles: int | None = None


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
    `family_conflicts`: the agents' families that could not be written together, each once.
    """

    samples: int = 0
    invalid_names: int = 0
    conflicts: int = 0
    duplicates: int = 0
    family_conflicts: tuple[FamilyConflict, ...] = ()


@attrs.frozen
class Rendered:
    """`render_with_stats()`'s answer: the body's chunks and what was dropped on the way."""

    chunks: list[str]
    stats: RenderStats


_float_repr = float.__repr__
_isfinite = math.isfinite
_add = operator.add
_repeat = itertools.repeat



def _plain_family_out(fam: Family, chunker: Chunker) -> None:
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




# --------------------------------------------------------------------------------------------
# What the renderer remembers across scrapes


class _SetMemo:
    """What a renderer remembers of one `SeriesSet` in one format: per series its memo, and the
    route of the last reply written from the set."""

    __slots__ = ("memos", "route")

    def __init__(self) -> None:
        self.memos: list[_Memo | None] = []
        self.route: _Route | None = None


class ExpositionCache:
    """What `Rendering` remembers across scrapes, for one proxy (pass the same one to every render).

    Per `SeriesSet` (held weakly: an agent's set goes when the decoder lets go of it) and format:
    the line head of each series and the route of the last reply. Interned across scrapes, so a
    memo is recognised with `is`: the memo signatures (sample name, label mode, grouped,
    OpenMetrics) and each agent's enrichment text. Both tables are bounded (cleared when full).

    `on_conflict` is called with each `FamilyConflict` of every render (the proxy counts them and
    warns); it must not raise. Without a cache, a render remembers nothing beyond itself.
    Sans-IO; not thread-safe (one event loop renders).
    """

    #: Entries of each interning table before it is cleared.
    MAX_INTERNED = 100_000

    def __init__(self, *, on_conflict: Callable[[FamilyConflict], None] | None = None) -> None:
        self.on_conflict = on_conflict
        self._sets: weakref.WeakKeyDictionary[SeriesSet, tuple[_SetMemo, _SetMemo]] = (
            weakref.WeakKeyDictionary())
        self._signatures: dict[_Sig, _Sig] = {}
        self._prefixes: dict[NodeMeta, tuple[str, Enrichment]] = {}

    def _memo(self, sset: SeriesSet, openmetrics: bool) -> _SetMemo:
        """The memo of `sset` in one format, with a slot for each of its series."""
        pair = self._sets.get(sset)
        if pair is None:
            pair = self._sets[sset] = (_SetMemo(), _SetMemo())
        memo = pair[1 if openmetrics else 0]
        missing = len(sset) - len(memo.memos)
        if missing > 0:  # series the decoder added since
            memo.memos.extend(itertools.repeat(None, missing))
        return memo

    def _signature(self, name: str, mode: int, grouped: bool, om: bool) -> _Sig:
        key = (name, mode, grouped, om)
        sig = self._signatures.get(key)
        if sig is None:
            if len(self._signatures) >= self.MAX_INTERNED:
                self._signatures.clear()
            sig = self._signatures[key] = key
        return sig

    def _prefix(self, meta: NodeMeta) -> tuple[str, Enrichment]:
        """The enrichment label text of an agent (without its leading comma) and its enrichment
        labels (what the own labels give way to, `own_labels()`)."""
        try:
            found = self._prefixes.get(meta)
        except TypeError:  # unhashable label values in a hand-made NodeMeta
            found = None
        if found is None:
            enrichment = Enrichment.of(meta)
            found = (label_pairs_text(enrichment.pairs)[1:], enrichment)
            if len(self._prefixes) >= self.MAX_INTERNED:
                self._prefixes.clear()
            try:
                self._prefixes[meta] = found
            except TypeError:
                pass
        return found


# --------------------------------------------------------------------------------------------
# Rendering

#: Samples rendered between two `Rendering.steps()` yields.
STEP_SAMPLES = 1000

# A memo signature: (sample name, label mode, grouped, OpenMetrics); interned by the cache.
_Sig = tuple[str, int, bool, bool]
# How to write the samples of one (name, type), with the memo signature.
_FullPlan = tuple[Family, str, int, int, _Sig]
# What a series' memo holds: (signature, prefix, line head `name{labels} `, label entry).
_Memo = tuple[_Sig, str, str | None, BoundEntry]


class _Route:
    """Where the samples of one agent's reply go, kept for its SeriesSet for the next scrape.

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

    `cache`: what is remembered across renders (the proxy's `ExpositionCache`); None: a cache of
    this render's own. Each family conflict is reported to `cache.on_conflict` once `steps()` has
    settled the families, and listed in `stats.family_conflicts`.
    """

    def __init__(self, batches: Sequence[AgentBatch], *, openmetrics: bool = False,
                 tail: str = "", cache: ExpositionCache | None = None) -> None:
        self.batches = batches
        self.openmetrics = openmetrics
        self.tail = tail
        self.cache = ExpositionCache() if cache is None else cache
        self.stats = RenderStats()
        self._family_conflicts: tuple[FamilyConflict, ...] = ()
        self._written = self._conflicts = self._duplicates = self._invalid = 0
        self._families: dict[str, Family] = {}
        self._agents: list[tuple[str, AgentBatch]] = []

    def steps(self) -> Iterator[None]:
        """Sort every sample into its family; yields between pieces of about STEP_SAMPLES."""
        om = self.openmetrics
        cache = self.cache
        columns = [digest_samples(batch.samples) for batch in self.batches]
        memos = [cache._memo(d.series, om) for d in columns]

        # Pass 1: every (name, type) of the scrape, in first-seen order, to settle families.
        keys: dict[tuple[str, int], None] = {}
        count = 0
        for d, smemo in zip(columns, memos):
            set_keys = d.series.keys
            route = smemo.route
            if route is not None and route.index == d.ids:
                keys.update(dict.fromkeys(route.keys))  # the same series as last time
            elif len(d.ids) == len(set_keys) and is_identity(d.ids):
                # One sample per series, in the set's order (the usual latest reply).
                keys.update(dict.fromkeys(set_keys))
            else:
                for i in d.ids:
                    keys[set_keys[i]] = None
            count += len(d.ids)
            if count >= 4 * STEP_SAMPLES:
                count = 0
                yield
        settled = make_plans(keys, om)
        plans, self._families, invalid_keys = settled.plans, settled.families, settled.invalid
        self._family_conflicts = tuple(settled.conflicts)
        if cache.on_conflict is not None:
            for conflict in settled.conflicts:
                cache.on_conflict(conflict)
        full: dict[tuple[str, int], _FullPlan | None] = {}
        route_sigs: dict[tuple[str, int], tuple[str, Any] | None] = {}
        for key, plan in plans.items():
            if plan is None:
                full[key] = route_sigs[key] = None
            else:
                fam, name, mode, role = plan
                sig = cache._signature(name, mode, fam.grouped, om)
                full[key] = (fam, name, mode, role, sig)
                route_sigs[key] = (fam.name, sig)
        agents = collections.Counter(batch.meta.agent_id for batch in self.batches)
        yield

        # Pass 2: write each sample into its family.
        label_caches: dict[frozenset[str], _LabelTexts] = {}
        count = 0
        for batch, d, smemo in zip(self.batches, columns, memos):
            prefix, reserved = cache._prefix(batch.meta)
            agent = batch.meta.agent_id
            self._agents.append((prefix, batch))
            caches = label_caches.get(reserved.names)
            if caches is None:
                caches = label_caches[reserved.names] = _LabelTexts()
            index, values = d.ids, d.values
            if type(values) is array and agents[agent] == 1:
                # A proxy reply (float values) of an agent that is here once: by its route.
                route = smemo.route
                if (route is None or route.prefix != prefix or route.index != index
                        or route.sig != tuple([route_sigs[k] for k in route.keys])):
                    route = yield from self._route(d, smemo.memos, prefix, reserved, caches,
                                                   full, invalid_keys, route_sigs)
                    smemo.route = route
                yield from self._follow(route, d, smemo.memos, prefix, agent, reserved, caches,
                                        full, invalid_keys)
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
                               smemo.memos, index[start:end], values[start:end])
                else:
                    self._pass(prefix, agent, reserved, caches, full, invalid_keys, d.series,
                               smemo.memos, index, values)
                count += min(STEP_SAMPLES, n - start)
                if count >= STEP_SAMPLES:
                    count = 0
                    yield

    def _route(self, d: DigestedSamples, memos: list[_Memo | None], prefix: str,
               reserved: Enrichment, caches: _LabelTexts,
               plans: dict[tuple[str, int], _FullPlan | None],
               invalid_keys: set[tuple[str, int]],
               route_sigs: dict[tuple[str, int], tuple[str, Any] | None],
               ) -> Generator[None, None, _Route]:
        """Work out where each sample of an agent's reply goes (see `_Route`)."""
        om = self.openmetrics
        sset = d.series
        keys = sset.keys
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
            if mode != MODE_PLAIN or fam.grouped:
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

    def _follow(self, route: _Route, d: DigestedSamples, memos: list[_Memo | None],
                prefix: str, agent: str,
                reserved: Enrichment, caches: _LabelTexts,
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
                texts = [SPECIAL_VALUES.get(text, text) for text in texts]
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
            self._pass(prefix, agent, reserved, caches, plans, invalid_keys, d.series, memos,
                       [d.ids[p] for p in part], [d.values[p] for p in part])
            yield

    def _pass(self, prefix: str, agent: str, reserved: Enrichment, caches: _LabelTexts,
              plans: dict[tuple[str, int], _FullPlan | None], invalid_keys: set[tuple[str, int]],
              sset: SeriesSet, memos: list[_Memo | None], index: Sequence[int],
              values: Sequence[Any]) -> None:
        om = self.openmetrics
        keys = sset.keys
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
                    text = SPECIAL_VALUES[text]
            else:
                text = format_value_or_nan(value)
            memo: _Memo | None = memos[i]
            if memo is None or memo[0] is not sig or memo[1] != prefix:
                memo = memos[i] = _make_memo(sset.labels[i], name, mode, fam.grouped, sig,
                                             prefix, reserved, caches)
            head = memo[2]
            if head is None:  # a histogram/summary sample without a usable le/quantile
                conflicts += 1
                continue
            if mode == MODE_PLAIN and not fam.grouped:
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
            if om and not om_value_ok(role, value):
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
            group.append((RANKS[role], bound, value, f"{head}{text}\n"))
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
        chunker = Chunker()
        for family_name in sorted(families):
            fam = families[family_name]
            if fam.dropped:
                continue
            if not fam.grouped:
                if fam.segments:
                    chunker.add([header(fam.name, fam.help, fam.type, om)])
                    _plain_family_out(fam, chunker)
                    yield from chunker.take()
                continue
            lines, dups, misfits = family_lines(fam, om)
            self._duplicates += dups
            self._conflicts += misfits
            self._written -= dups + misfits
            if lines:
                chunker.add([header(fam.name, fam.help, fam.type, om), *lines])
                yield from chunker.take()
        up_lines: dict[str, str] = {}
        duration_lines: dict[str, str] = {}
        crash_lines: dict[str, str] = {}
        pressure_lines: dict[str, str] = {}
        for prefix, batch in self._agents:
            if prefix not in up_lines:  # the same agent twice: one series, the first
                up_lines[prefix] = f"{UP_FAMILY}{{{prefix}}} {1 if batch.up else 0}\n"
                duration = format_value_or_nan(batch.duration)
                duration_lines[prefix] = f"{DURATION_FAMILY}{{{prefix}}} {duration}\n"
                if batch.crash_records is not None:
                    crash_lines[prefix] = f"{CRASH_FAMILY}{{{prefix}}} {batch.crash_records}\n"
                if batch.pressure_profiles is not None:
                    pressure_lines[prefix] = (f"{PRESSURE_FAMILY}{{{prefix}}} "
                                              f"{batch.pressure_profiles}\n")
        chunker.add([header(UP_FAMILY, UP_HELP, GAUGE, om), *up_lines.values()])
        chunker.add([header(DURATION_FAMILY, DURATION_HELP, GAUGE, om), *duration_lines.values()])
        if crash_lines:
            chunker.add([header(CRASH_FAMILY, CRASH_HELP, GAUGE, om), *crash_lines.values()])
        if pressure_lines:
            chunker.add([header(PRESSURE_FAMILY, PRESSURE_HELP, GAUGE, om),
                         *pressure_lines.values()])
        yield from chunker.finish()
        tail = self.tail
        if tail:
            yield tail if tail.endswith("\n") else tail + "\n"
        if om:
            yield "# EOF\n"
        self.stats = RenderStats(samples=self._written, invalid_names=self._invalid,
                                 conflicts=self._conflicts, duplicates=self._duplicates,
                                 family_conflicts=self._family_conflicts)


_MISSING = object()
_VALUES = object()  # in `_LabelTexts.shared`: the text depends on the enrichment's values


class _LabelTexts:
    """The own label texts of one render (`label_pairs_text` for MODE_PLAIN, `bound_labels`
    for the other modes), for the agents whose enrichment has one set of names. Shared by these
    agents when an own label set names none of the enrichment's labels (then only the names
    matter, `values_matter()`), else kept per enrichment (a label with the enrichment's name and
    value is written once, by the enrichment)."""

    __slots__ = ("by_enrichment", "shared")

    def __init__(self) -> None:
        self.shared: list[dict[tuple[tuple[str, str], ...], Any]] = [{} for _ in range(MODES)]
        self.by_enrichment: dict[Enrichment, list[dict[tuple[tuple[str, str], ...], Any]]] = {}

    def text(self, items: tuple[tuple[str, str], ...], reserved: Enrichment,
             mode: int) -> str | BoundEntry:
        shared = self.shared[mode]
        found = shared.get(items, _MISSING)
        if found is _MISSING:
            if not values_matter(items, reserved.names):
                found = shared[items] = _label_text(items, reserved.names, mode)
                return found
            found = shared[items] = _VALUES
        if found is _VALUES:
            tables = self.by_enrichment.get(reserved)
            if tables is None:
                tables = self.by_enrichment[reserved] = [{} for _ in range(MODES)]
            table = tables[mode]
            found = table.get(items, _MISSING)
            if found is _MISSING:
                found = table[items] = _label_text(items, reserved, mode)
        return found


def _label_text(items: tuple[tuple[str, str], ...], reserved: Collection[str],
                mode: int) -> str | BoundEntry:
    if mode == MODE_PLAIN:
        return label_pairs_text(own_labels(items, reserved))
    return bound_labels(items, reserved, mode)


def _make_memo(items: tuple[tuple[str, str], ...], name: str, mode: int, grouped: bool,
               sig: tuple[str, int, bool, bool], prefix: str, reserved: Enrichment,
               caches: _LabelTexts) -> _Memo:
    entry: BoundEntry
    if mode == MODE_PLAIN:
        label_text: str = caches.text(items, reserved, MODE_PLAIN)  # type: ignore[assignment]
        if not grouped:  # only the head is needed (and memos are kept for every series)
            return (sig, prefix, f"{name}{{{prefix}{label_text}}} ", None)
        entry = (label_text, label_text, 0.0)
    else:
        entry = caches.text(items, reserved, mode)  # type: ignore[assignment]
    head = None if entry is MISFIT else f"{name}{{{prefix}{entry[0]}}} "
    return (sig, prefix, head, entry)


def render(
    batches: Sequence[AgentBatch], *, openmetrics: bool = False, tail: str = "",
    cache: ExpositionCache | None = None,
) -> list[str]:
    """Render the `/metrics` body for `batches`; see `render_with_stats()` (which also counts
    what was dropped) for the layout. Returns the body's chunks."""
    return render_with_stats(batches, openmetrics=openmetrics, tail=tail, cache=cache).chunks


def render_with_stats(
    batches: Sequence[AgentBatch], *, openmetrics: bool = False, tail: str = "",
    cache: ExpositionCache | None = None,
) -> Rendered:
    """Render the `/metrics` body for `batches` as text 0.0.4 or (`openmetrics`) OpenMetrics 1.0.

    Returns the body as chunks of a few thousand lines at most (concatenate or stream them) and the
    counts of samples written and dropped. Agent families come first, sorted by name, then
    `fodc_agent_up` and `fodc_agent_collect_duration_seconds` with one line per batch (batches
    with the same enrichment labels are written once), then `tail`: already-rendered exposition
    text of the proxy's own metrics (a newline is added if missing), then `# EOF` for OpenMetrics.
    The chunks are `str`: encode them as UTF-8. Raises nothing for any content of the samples.
    `Rendering` does the same in steps; `cache` is as there.
    """
    rendering = Rendering(batches, openmetrics=openmetrics, tail=tail, cache=cache)
    for _ in rendering.steps():
        pass
    chunks = list(rendering.chunks())
    return Rendered(chunks=chunks, stats=rendering.stats)
