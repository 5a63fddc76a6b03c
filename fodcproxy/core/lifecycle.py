"""`GET /cluster/lifecycle`: merging what the agents answered into upstream's body. Sans-IO.

The proxy asks every lifecycle-capable agent for its `LifecycleData` (report files and groups)
and one liaison for the registry's fingerprints (`fodcproxy.lifecycle` does the asking). This
module turns the answers into the body of `GET /cluster/lifecycle`, as upstream's proxy
(`fodc/proxy/internal/lifecycle/manager.go`, `fodc/proxy/internal/api/server.go`) builds it:

- `agent_summary`: `total` agents considered, `requested` (those holding a StreamLifecycle),
  `responded` in time, `not_responded` = requested - responded.
- `groups`: `GroupLifecycleInfo` as protojson (proto field names, zero values emitted, unset
  messages `null`), merged by name over the answering agents in order: the group's other fields
  are the last agent's; `errors` are the de-duplicated union, sorted, with the registry's error
  strings (`core.schema.Verdicts.errors`) added; `schema_consistency` is the verdict of
  `core.schema.judge` for the group, or null when no agent sent a schema partial for it. Groups
  are sorted by name.
- **Beyond upstream**, `data_info` is the union over the agents too (upstream keeps the last
  agent's list whole, and which agent is last depends on arrival order): entries are keyed by the
  node's `metadata.name` (an entry without one by its whole content), a later agent's entry
  replaces an earlier one of the same node in place, and new nodes are appended. For one agent,
  or agents that saw the same nodes, this is upstream's result.
- `lifecycle_statuses`: `{pod_name, reports}` per answering agent that sent at least one report.
- `error` when nothing could be gathered, with upstream's three messages (`error_message`).

The inputs are plain values: the gRPC adapter (`fodcproxy.rpc.lifecycle_convert`) turns each
agent's message into an `AgentLifecycle` with its JSON already in protojson form.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from fodcproxy.core.schema import GroupReport, GroupVerdict, SchemaIssueType, Verdicts

Json = dict[str, Any]

# Label values of `banyandb_fodc_schema_issues{type}`: the SchemaIssueType names, lower case and
# without the enum's prefix.
ISSUE_TYPE_LABELS: dict[SchemaIssueType, str] = {
    SchemaIssueType.MISSING_IN_CACHE: "missing_in_cache",
    SchemaIssueType.ORPHAN: "orphan",
    SchemaIssueType.CACHE_STALE: "cache_stale",
    SchemaIssueType.RUNTIME_NOT_APPLIED: "runtime_not_applied",
}


@attrs.frozen(eq=False)
class AgentGroup:
    """One agent's `GroupLifecycleInfo`, decoded.

    `body` holds every field as protojson except `data_info`, `errors` and `schema_consistency`,
    which are kept apart because the merge treats them apart.
    """

    name: str
    body: Mapping[str, Any]
    data_info: tuple[Mapping[str, Any], ...] = ()
    errors: tuple[str, ...] = ()
    schema: GroupReport | None = None  # the agent's schema partial, None when it sent none


@attrs.frozen(eq=False)
class AgentLifecycle:
    """One agent's answer (`StreamLifecycleRequest`): its pod, report files and groups."""

    agent_id: str
    pod_name: str
    reports: tuple[Mapping[str, Any], ...] = ()  # LifecycleReport as protojson
    groups: tuple[AgentGroup, ...] = ()


@attrs.frozen
class AgentSummary:
    """How many agents one collection considered, asked, and heard from."""

    total: int = 0
    requested: int = 0
    responded: int = 0

    @property
    def not_responded(self) -> int:
        return max(self.requested - self.responded, 0)

    def json(self) -> Json:
        return {"total": self.total, "requested": self.requested, "responded": self.responded,
                "not_responded": self.not_responded}


def error_message(summary: AgentSummary) -> str | None:
    """Upstream's `"error"` when nothing could be gathered, else None."""
    if summary.total == 0:
        return "FODC unavailable: no agents registered"
    if summary.requested == 0:
        return (f"FODC unavailable: 0/{summary.total} registered agents support the lifecycle "
                "stream")
    if summary.responded == 0:
        return f"FODC unavailable: 0/{summary.requested} requested agents responded"
    return None


def schema_reports(answers: Iterable[AgentLifecycle]) -> list[GroupReport]:
    """Every schema partial of the answers, in order (the input of `core.schema.judge`)."""
    return [g.schema for a in answers for g in a.groups if g.schema is not None]


def _node_key(entry: Mapping[str, Any]) -> str:
    node = entry.get("node")
    meta = node.get("metadata") if isinstance(node, Mapping) else None
    name = meta.get("name") if isinstance(meta, Mapping) else None
    if isinstance(name, str) and name:
        return "name:" + name
    return "entry:" + json.dumps(entry, sort_keys=True, separators=(",", ":"))


def verdict_json(verdict: GroupVerdict | None) -> Json | None:
    """A verdict as protojson of upstream's `SchemaConsistency` (uint64 as strings, enums by
    name, empty lists emitted); None (JSON null) for no verdict. `unknown_causes` is ours and
    is left out."""
    if verdict is None:
        return None
    return {
        "status": "CONSISTENCY_STATUS_" + verdict.status.name,
        "objects": [{
            "kind": o.kind,
            "name": o.name,
            "registry_fingerprint": str(o.registry_fingerprint),
            "node_fingerprints": [{
                "node": nf.node,
                "cache_fingerprint": str(nf.cache),
                "runtime_fingerprint": str(nf.runtime),
            } for nf in o.node_fingerprints],
        } for o in verdict.objects],
        "issues": [{"kind": i.kind, "name": i.name, "node": i.node,
                    "type": "SCHEMA_ISSUE_TYPE_" + i.type.name} for i in verdict.issues],
    }


def merge_groups(answers: Sequence[AgentLifecycle], verdicts: Verdicts) -> list[Json]:
    """The `groups` of the body: every group some answer carried, merged by name (see the
    module docstring), as protojson dicts sorted by name."""
    bodies: dict[str, Mapping[str, Any]] = {}
    data: dict[str, dict[str, Mapping[str, Any]]] = {}
    errors: dict[str, set[str]] = {}
    for answer in answers:
        for g in answer.groups:
            bodies[g.name] = g.body
            nodes = data.setdefault(g.name, {})
            for entry in g.data_info:
                nodes[_node_key(entry)] = entry  # replaces in place, or appends
            errors.setdefault(g.name, set()).update(g.errors)
    out = []
    for name in sorted(bodies):
        doc: Json = dict(bodies[name])
        doc["name"] = name
        doc["data_info"] = list(data[name].values())
        doc["errors"] = sorted(errors[name] | set(verdicts.errors_of(name)))
        doc["schema_consistency"] = verdict_json(verdicts.verdict(name))
        out.append(doc)
    return out


def lifecycle_statuses(answers: Iterable[AgentLifecycle]) -> list[Json]:
    """`lifecycle_statuses`: each answering agent with at least one report, in order."""
    return [{"pod_name": a.pod_name, "reports": [dict(r) for r in a.reports]}
            for a in answers if a.reports]


def body(summary: AgentSummary, answers: Sequence[AgentLifecycle], verdicts: Verdicts) -> Json:
    """The whole body of `GET /cluster/lifecycle`."""
    doc: Json = {
        "agent_summary": summary.json(),
        "groups": merge_groups(answers, verdicts),
        "lifecycle_statuses": lifecycle_statuses(answers),
    }
    error = error_message(summary)
    if error is not None:
        doc["error"] = error
    return doc


def issue_counts(verdicts: Verdicts) -> dict[tuple[str, str], int]:
    """(group, issue type label) -> reported issues, every type listed (0 included) for each group
    with a verdict: the `banyandb_fodc_schema_issues` gauge."""
    out: dict[tuple[str, str], int] = {}
    for v in verdicts.groups:
        for kind, label in ISSUE_TYPE_LABELS.items():
            out[(v.group, label)] = sum(1 for i in v.issues if i.type is kind)
    return out
