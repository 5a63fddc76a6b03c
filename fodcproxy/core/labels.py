"""Names and labels as the proxy writes them: sanitising and enrichment (sans-IO).

Both renderers (`/metrics` in `fodcproxy.core.exposition`, `/metrics-windows` in
`fodcproxy.core.windows`) label every sample the same way: the agent's enrichment labels
(`enrichment_labels()`, or as a mapping `Enrichment`) and the sample's own labels around them
(`own_labels()`):

* address agents: `agent_id`, `node_role`, `node_ip`, `node_port`, `node_<k>`;
* pod agents (upstream BanyanDB's agent): `agent_id`, `node_role`, `pod_name`, `node_<k>`;
* an own label with an enrichment label's name *and value* is the same label: it is written once
  (upstream's agents stamp `node_role`, `pod_name`, `container_name` and `node_<k>` themselves,
  and SkyWalking's dashboards key on them); with another value it is kept as `exported_<name>`.

Nothing here caches: callers that render the same labels again keep the text they made.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Iterator, Mapping

from fodcproxy.core.model import NodeMeta

__all__ = ["EXPORTED", "Enrichment", "enrichment_labels", "own_labels", "sanitize_label_name",
           "sanitize_metric_name", "values_matter"]

#: The prefix that renames a label (or family) whose name is taken.
EXPORTED = "exported_"

_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_METRIC_BAD_CHAR_RE = re.compile(r"[^a-zA-Z0-9_:]")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_BAD_CHAR_RE = re.compile(r"[^a-zA-Z0-9_]")


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

    `agent_id`, `node_role`, then `node_ip`, `node_port` (an address agent) or `pod_name` (a pod
    agent: it has no address), then each node label `k` as `node_<k>` (with `k` sanitised; a name
    already taken, e.g. node label `role`, gets `exported_` in front).
    """
    out = [("agent_id", meta.agent_id), ("node_role", meta.role)]
    if meta.is_pod:
        out.append(("pod_name", meta.pod_name))
    else:
        out.append(("node_ip", meta.ip))
        out.append(("node_port", str(meta.port)))
    taken = {name for name, _ in out}
    for key, value in meta.labels:
        name = "node_" + _LABEL_BAD_CHAR_RE.sub("_", key)
        while name in taken:
            name = EXPORTED + name
        taken.add(name)
        out.append((name, value))
    return out


class Enrichment(Mapping[str, str]):
    """An agent's enrichment labels (`enrichment_labels()`) as a read-only mapping name -> value,
    in order, hashable (renderers key their caches on it). `names` is the set of the names."""

    __slots__ = ("_hash", "_values", "names", "pairs")

    def __init__(self, pairs: Iterable[tuple[str, str]]) -> None:
        # str(): a hand-made NodeMeta may hold other values; labels are text (and hashable).
        self.pairs: tuple[tuple[str, str], ...] = tuple([(str(k), str(v)) for k, v in pairs])
        self._values = dict(self.pairs)
        self.names: frozenset[str] = frozenset(self._values)
        self._hash = hash(self.pairs)

    @classmethod
    def of(cls, meta: NodeMeta) -> Enrichment:
        return cls(enrichment_labels(meta))

    def __getitem__(self, name: str) -> str:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __contains__(self, name: object) -> bool:
        return name in self._values

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Enrichment):
            return self is other or (self._hash == other._hash and self.pairs == other.pairs)
        return super().__eq__(other)

    def __repr__(self) -> str:
        return f"Enrichment({list(self.pairs)!r})"


def values_matter(items: Iterable[tuple[str, str]], reserved: Collection[str]) -> bool:
    """Whether `own_labels(items, reserved)` depends on the values of `reserved` (a mapping):
    whether one of the own label names is, once sanitised, one of `reserved`'s names. When it is
    not, the result is the same for every mapping with these names (renderers share it)."""
    return any(sanitize_label_name(str(key)) in reserved for key, _ in items)


def own_labels(
    items: Iterable[tuple[str, str]], reserved: Collection[str], extra: Collection[str] = ()
) -> list[tuple[str, str]]:
    """Return a sample's own labels renamed so they can sit beside the `reserved` labels.

    `reserved`: the enrichment's label names, or (an `Enrichment`, any mapping name -> value) its
    labels; `extra`: more names taken, whatever the value (`le`, `quantile`). Names are
    sanitised. A label with the name and the value of one of a mapping's labels is the same label
    and is left out (the enrichment carries it: written once, not renamed). A name in `reserved`
    (with another value), starting with `__`, or equal to an earlier label's
    (after sanitising) is prefixed with `exported_` until it is unique. Labels that needed no
    renaming keep their names, so `{agent_id, exported_agent_id}` becomes
    `{exported_exported_agent_id, exported_agent_id}`. Sorted by name.
    """
    same = reserved if isinstance(reserved, Mapping) else None
    kept: list[tuple[str, str]] = []
    clashed: list[tuple[str, str]] = []
    taken = set(reserved)
    taken.update(extra)
    for key, value in items:
        name = sanitize_label_name(str(key))
        if name in taken or name.startswith("__"):
            value = str(value)
            if same is not None and same.get(name, None) == value:
                continue  # the enrichment's own label: written once, by the enrichment
            clashed.append((name, value))
        else:
            taken.add(name)
            kept.append((name, str(value)))
    for name, value in clashed:
        name = EXPORTED + name
        while name in taken:
            name = EXPORTED + name
        taken.add(name)
        kept.append((name, value))
    kept.sort()
    return kept
