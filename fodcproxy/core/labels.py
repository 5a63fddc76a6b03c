"""Names and labels as the proxy writes them: sanitising and enrichment (sans-IO).

Both renderers (`/metrics` in `fodcproxy.core.exposition`, `/metrics-windows` in
`fodcproxy.core.windows`) label every sample the same way: the agent's enrichment labels
(`enrichment_labels()`) and the sample's own labels renamed around them (`own_labels()`).
Nothing here caches: callers that render the same labels again keep the text they made.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fodcproxy.core.model import NodeMeta

__all__ = ["EXPORTED", "enrichment_labels", "own_labels", "sanitize_label_name",
           "sanitize_metric_name"]

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
            name = EXPORTED + name
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
        name = EXPORTED + name
        while name in taken:
            name = EXPORTED + name
        taken.add(name)
        kept.append((name, value))
    kept.sort()
    return kept
