"""What a node's role means, whatever naming its agent uses. Sans-IO.

Two generations of agents name roles differently (SPEC section 3):
- address agents: `liaison`, `datanode-hot`, `datanode-warm`, `datanode-cold` (also `data`,
  `data-hot`, `liaison-1`, ...): the tier is the role's last word;
- pod agents (upstream BanyanDB's agent): `ROLE_LIAISON`, `ROLE_DATA` with the tier in the node
  label `type` (`hot`, `warm`, `cold`), `ROLE_META`, and `ROLE_UNSPECIFIED` until they know.

`kind_of(role, labels)` reduces both to a `NodeKind` (liaison / data / meta / other, and a tier),
so filters and the topology's calls treat `liaison` and `ROLE_LIAISON` alike.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import attrs

TIERS = ("hot", "warm", "cold")  # hottest first: data flows along this order

LIAISON, DATA, META, OTHER = "liaison", "data", "meta", ""


@attrs.frozen
class NodeKind:
    kind: str  # LIAISON, DATA, META or OTHER
    tier: str = ""  # for DATA: "hot", "warm", "cold" or "" when unknown


def _label(labels: Mapping[str, str] | Iterable[tuple[str, str]], key: str) -> str:
    items = labels.items() if isinstance(labels, Mapping) else labels
    for k, v in items:
        if k == key:
            return v
    return ""


def kind_of(role: str, labels: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> NodeKind:
    """The kind of node `role` (with the node's `labels`) names."""
    r = role.strip().lower()
    if r.startswith("role_"):
        name = r[len("role_"):]
        if name == "liaison":
            return NodeKind(LIAISON)
        if name == "meta":
            return NodeKind(META)
        if name == "data":
            tier = _label(labels, "type").strip().lower()
            return NodeKind(DATA, tier if tier in TIERS else "")
        return NodeKind(OTHER)
    if r == "liaison" or r.startswith(("liaison-", "liaison_")):
        return NodeKind(LIAISON)
    if r == "meta" or r.startswith(("meta-", "meta_")):
        return NodeKind(META)
    if r == "data" or r.startswith(("datanode", "data-", "data_")):
        last = re.split(r"[-_]", r)[-1]
        return NodeKind(DATA, last if last in TIERS else "")
    return NodeKind(OTHER)


def role_matches(wanted: str, role: str,
                 labels: Mapping[str, str] | Iterable[tuple[str, str]] = ()) -> bool:
    """Whether a `role` filter value selects a node of `role` (with `labels`).

    The same text always matches, and two names of the same generation match only when they are
    the same text (`datanode` does not select `datanode-hot`). Across generations both sides are
    reduced to their kind: `liaison` selects `ROLE_LIAISON` nodes and the other way round;
    `datanode-hot` selects `ROLE_DATA` nodes labelled `type=hot`, and `ROLE_DATA` every data
    node. A role of no known kind matches only itself.
    """
    if wanted == role:
        return True
    if wanted.startswith("ROLE_") == role.startswith("ROLE_"):
        return False
    want = kind_of(wanted)
    if want.kind == OTHER:
        return False
    have = kind_of(role, labels)
    return want.kind == have.kind and (not want.tier or want.tier == have.tier)
