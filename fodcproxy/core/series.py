"""The series model: an agent's series as columns, and one reply's samples over them (sans-IO).

`SeriesSet` holds what identifies each series (name, own labels, help, type). `DigestedSamples`
holds one reply: for each sample, its series' index, its value and its timestamp. The gRPC decoder
(`fodcproxy.rpc.replies`) fills both and keeps an agent's set across its replies; the renderers
only read them. A renderer that remembers text per series keeps it itself, keyed by the set (see
`ExpositionCache`, `WindowsCache`): nothing here knows the renderers.

Columns, not an object per series or sample: 100k series are then a few dozen objects for the
garbage collector, not 100k (a full collection would otherwise pause the event loop for tens of
milliseconds).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from typing import Any, overload

from fodcproxy.core.model import Sample, TimeWindow

__all__ = ["DigestedSamples", "SeriesSet", "digest_samples", "is_identity"]


class SeriesSet:
    """Series as columns: for series `i`, `names[i]`, `labels[i]` (own labels as (name, value)
    items), `descriptions[i]`, `types[i]`, and `keys[i]` = (name, type).

    Series are only ever appended, so an index stays valid for the life of the set. Renderers key
    what they remember on the set itself (it is hashable by identity and weakly referenceable).
    """

    __slots__ = ("__weakref__", "descriptions", "keys", "labels", "names", "types")

    def __init__(self) -> None:
        self.names: list[str] = []
        self.labels: list[tuple[tuple[str, str], ...]] = []
        self.descriptions: list[str] = []
        self.types: list[int] = []
        self.keys: list[tuple[str, int]] = []

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
        return len(self.names) - 1


class DigestedSamples(Sequence[Sample]):
    """An agent's samples as columns: sample `i` is of series `ids[i]` of `series` (a
    `SeriesSet`), with value `values[i]` and timestamp `stamps[i]` (Unix seconds, or None when
    the agent sent none). The renderers read the columns; as a sequence, it gives `Sample`s.

    `window` is the request these samples answer (None: not known, e.g. hand-made samples);
    `restrict_to()` makes them fit it.
    """

    __slots__ = ("ids", "series", "stamps", "values", "window")

    def __init__(self, series: SeriesSet | None = None, *,
                 window: TimeWindow | None = None) -> None:
        self.series = SeriesSet() if series is None else series
        self.window = window
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

    def restrict_to(self, window: TimeWindow) -> int:
        """Keep only what a request for `window` asks for, whatever the agent sent.

        Latest (`window.is_latest`): the newest point of each series. A point without a timestamp
        counts as current (newer than any timestamped one); of equally new points the last one
        sent wins. Otherwise: the points whose timestamp is inside the window (both ends
        included); a point without a timestamp cannot be placed in a window and is dropped.
        Returns how many samples were dropped; the order of the kept ones is unchanged. Cheap when
        nothing is to be dropped (the usual case): a few C-speed passes over the columns.
        """
        keep = _newest(self.ids, self.stamps) if window.is_latest else _inside(self.stamps, window)
        if keep is None:
            return 0
        dropped = len(self.ids) - len(keep)
        ids, values, stamps = self.ids, self.values, self.stamps
        self.ids = array("q", [ids[p] for p in keep])
        if type(values) is array:
            self.values = array("d", [values[p] for p in keep])
        else:  # hand-made samples keep their value objects
            self.values = [values[p] for p in keep]  # type: ignore[assignment]
        self.stamps = [stamps[p] for p in keep]
        return dropped


#: 0, 1, 2, ...: compared against, so that `is_identity()` costs a memcmp, not a Python loop.
#: A constant (never written, only replaced by a longer one), so sharing it is harmless.
_COUNTING = array("q", range(1 << 12))
_COUNTING_MAX = 1 << 16


def is_identity(index: Sequence[int]) -> bool:
    """Whether index[i] == i for every i (checked at C speed for arrays)."""
    global _COUNTING
    n = len(index)
    if not n or index[0] != 0 or index[n - 1] != n - 1:
        return False
    if type(index) is not array:
        return list(index) == list(range(n))
    if n > len(_COUNTING):
        if n > _COUNTING_MAX:
            return index == array("q", range(n))
        _COUNTING = array("q", range(_COUNTING_MAX))
    return index == _COUNTING[:n]


def _newest(ids: Sequence[int], stamps: list[float | None]) -> list[int] | None:
    """Positions of each series' newest point, in order; None when every series has one point."""
    if is_identity(ids) or len(set(ids)) == len(ids):
        return None
    best: dict[int, int] = {}
    for pos, i in enumerate(ids):
        b = best.get(i)
        if b is None:
            best[i] = pos
            continue
        ts, old = stamps[pos], stamps[b]
        if ts is None or (old is not None and ts >= old):
            best[i] = pos
    return sorted(best.values())


def _inside(stamps: list[float | None], window: TimeWindow) -> list[int] | None:
    """Positions of the points inside `window`, in order; None when all of them are."""
    if not stamps:
        return None
    try:
        lo, hi = min(stamps), max(stamps)  # type: ignore[type-var]
        if window.contains(lo) and window.contains(hi):  # type: ignore[arg-type]
            return None
    except TypeError:  # a None among them (it does not compare with a float): filter
        pass
    start = -float("inf") if window.start is None else window.start
    end = float("inf") if window.end is None else window.end
    return [p for p, ts in enumerate(stamps) if ts is not None and start <= ts <= end]


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
