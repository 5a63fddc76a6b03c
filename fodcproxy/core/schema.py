"""The schema-consistency verdict per group (SPEC section 9, issue 16). Sans-IO.

Three layers hold a schema object (a group, stream, measure, index rule, ...): the schema
registry, each node's schema cache, and each node's runtime. Agents compute a fingerprint per
object and layer; the proxy never sees a schema body. This module compares those fingerprints and
says, per group, whether everything agrees:

- `merge_registry_chunks(chunks)` turns the chunks one liaison agent streamed
  (`SchemaRegistryGroup` messages, all received before its `done`) into a `RegistryRead`.
- `judge(registry, reports, silent=..., streaks=...)` compares that truth with every node's
  reported fingerprints and returns `Verdicts`: one `GroupVerdict` per group (status, the object
  table, the issues), the error strings to union onto each group's `errors`, and the new
  `Streaks` to pass to the next round.

No clock, no I/O, no protobuf: the gRPC adapter converts messages to these types and back.

Rules, as upstream's proxy has them (`fodc/proxy/internal/lifecycle/{manager,schema_check}.go`,
`fodc/internal/consistency/{checker,objects}.go` and `fodc/proxy/internal/grpc/service.go` in
apache/skywalking-banyandb):

1. Registry chunks are merged by group name in order of first appearance: objects append, a
   later non-empty error replaces an earlier one. A chunk with an empty group name and an error is
   the agent's fatal whole-read failure; with one, the read as a whole failed. Within a group a
   repeated (kind, name) keeps its last fingerprint. A group whose read carried an error has no
   truth: its objects are ignored.
2. Only groups for which some agent reported a schema partial get a verdict; each node's
   fingerprints for a group are the union over all agents' partials (keyed by node id).
3. A group gets UNKNOWN with an empty object table and no issues when the registry read failed as
   a whole, when the group's own read failed, or when the registry has no objects for it (missing
   or empty): nothing can be verified, and every node object would otherwise look like an orphan.
   Streaks of that group are left as they were.
4. Otherwise, per node and registry object: absent on the node -> MISSING_IN_CACHE; cache differs
   from the registry -> CACHE_STALE; else runtime differs from cache -> RUNTIME_NOT_APPLIED (only
   the upstream boundary is reported when both differ). An object the node holds and the registry
   does not -> ORPHAN.
5. A divergence is reported only once it has been seen in `report_after` (upstream: 2)
   consecutive rounds on the same (group, node, kind, name), whatever its type; a younger one is
   suppressed. Streaks of objects in a judged group that no longer diverge are dropped.
6. Status: any reported issue -> INCONSISTENT (it wins over every cause of doubt); no node
   reported for the group -> UNKNOWN; a suppressed divergence, or an agent that should have
   reported and did not (`silent`) -> UNKNOWN; else CONSISTENT. UNSPECIFIED is never returned.
7. The object table lists every registry object (with its fingerprint) and every orphan (registry
   fingerprint 0), each with the fingerprints of every node that reported it. Objects are ordered
   by (kind, name), node fingerprints by node, issues by (kind, name, node), groups by name.
8. Error strings for `GroupLifecycleInfo.errors`: `"registry read failed: <error>"` on a group
   whose read failed (whether or not it has a verdict), and `"registry unavailable: <reason>"` on
   every group with a verdict when the whole read failed.

Where this differs from upstream, deliberately:
- The two-round suppression counters are a value (`Streaks`) passed in and returned, not state
  behind a mutex; `report_after` can be set (1 disables suppression).
- Node fingerprints of one object are ordered by (node, cache, runtime) rather than by node
  alone, so a node reported twice (two agents claiming it) still gives a deterministic table. Its
  classification uses the last report in input order, as upstream's map does.
- `GroupVerdict.unknown_causes` says why a group is UNKNOWN. It is ours, for logs and the console;
  upstream's wire message has no such field and the adapter must not invent one.
- Upstream's agent sends each object with at most one node (its own); here a reported object may
  carry any number of nodes, and an object with none adds nothing (as upstream).

Not taken into account, as upstream's proxy does not either: the collection errors a group
carries (`GroupLifecycleInfo.errors`). Upstream's agent drops a node fingerprint without a node
id and expects those errors to make the group UNKNOWN, but the proxy's checker never reads them;
the group is UNKNOWN then only when no other node reported it.
"""

from __future__ import annotations

import enum
from collections.abc import Collection, Iterable, Mapping

import attrs

REPORT_AFTER_ROUNDS = 2  # upstream's consecutiveCyclesToReport

_Key = tuple[str, str]  # (kind, name): `ObjectKey` inside `judge`, as a plain tuple


class ConsistencyStatus(enum.IntEnum):
    """The group-level rollup; the numbers of upstream's `ConsistencyStatus` enum."""

    UNSPECIFIED = 0
    CONSISTENT = 1
    INCONSISTENT = 2
    UNKNOWN = 3


class SchemaIssueType(enum.IntEnum):
    """Which layer boundary a disagreement sits on; the numbers of upstream's `SchemaIssueType`."""

    UNSPECIFIED = 0
    MISSING_IN_CACHE = 1  # the registry has it, the node's cache does not
    ORPHAN = 2  # the node has it, the registry does not
    CACHE_STALE = 3  # registry and cache disagree: the node's watch is behind
    RUNTIME_NOT_APPLIED = 4  # cache and runtime disagree: the change was never applied


class UnknownCause(enum.Enum):
    """Why a group's verdict is UNKNOWN (ours; not on the wire)."""

    REGISTRY_UNAVAILABLE = "registry-unavailable"  # the whole registry read failed
    REGISTRY_ERROR = "registry-error"  # this group's registry read failed
    REGISTRY_MISSING = "registry-missing"  # the registry gave no objects for this group
    NO_NODES = "no-nodes"  # no node reported fingerprints for this group
    SUPPRESSED = "suppressed"  # a divergence has not yet lasted `report_after` rounds
    AGENTS_SILENT = "agents-silent"  # an agent that should have reported did not


@attrs.frozen(order=True)
class ObjectKey:
    """One schema object inside a group."""

    kind: str  # upstream's schema.Kind.String(), e.g. "stream", "indexRule"
    name: str


@attrs.frozen
class RegistryObject:
    """One object's fingerprint in the registry (upstream's `SchemaObjectFingerprint`)."""

    kind: str
    name: str
    fingerprint: int


@attrs.frozen
class RegistryChunk:
    """One `SchemaRegistryGroup` message as a liaison agent streams it.

    `group == ""` with an `error` is the agent's fatal whole-read failure.
    """

    group: str
    objects: tuple[RegistryObject, ...] = ()
    error: str = ""


@attrs.frozen
class RegistryGroup:
    """One group's registry truth after merging its chunks; `error` set means no truth."""

    group: str
    objects: tuple[RegistryObject, ...] = ()
    error: str = ""

    def fingerprints(self) -> dict[ObjectKey, int]:
        """Fingerprint by object; a repeated object keeps its last fingerprint."""
        return {ObjectKey(o.kind, o.name): o.fingerprint for o in self.objects}


@attrs.frozen
class RegistryRead:
    """What the proxy learned from the registry in one round.

    `fatal` non-empty means there is no truth at all: no liaison agent, every liaison failed or
    timed out, or the agent sent its fatal empty-name chunk. Build that case with `unavailable`.
    """

    groups: tuple[RegistryGroup, ...] = ()
    fatal: str = ""

    @classmethod
    def unavailable(cls, reason: str) -> RegistryRead:
        """A read that failed as a whole, for `reason` (must be non-empty)."""
        if not reason:
            raise ValueError("an unavailable registry read needs a reason")
        return cls((), reason)

    def group(self, name: str) -> RegistryGroup | None:
        """The merged group called `name`, or None when the registry did not mention it."""
        for g in self.groups:
            if g.group == name:
                return g
        return None


@attrs.frozen
class NodeFingerprint:
    """One node's cache and runtime fingerprints of one object."""

    node: str
    cache: int
    runtime: int


@attrs.frozen
class ObjectConsistency:
    """One object across all layers: the registry's fingerprint and every reporting node's.

    Agents report this shape too (with `registry_fingerprint` 0, which is ignored on input).
    """

    kind: str
    name: str
    registry_fingerprint: int = 0  # 0 for an orphan: the registry does not have it
    node_fingerprints: tuple[NodeFingerprint, ...] = ()


@attrs.frozen
class GroupReport:
    """One agent's schema partial for one group (`GroupLifecycleInfo.schema_consistency`).

    An agent that sent the group without a schema partial (a property group, say) contributes no
    `GroupReport`; one that sent an empty partial contributes a `GroupReport` with no objects.
    """

    group: str
    objects: tuple[ObjectConsistency, ...] = ()


@attrs.frozen
class SchemaIssue:
    """One object disagreeing on one node."""

    kind: str
    name: str
    node: str
    type: SchemaIssueType


@attrs.frozen
class GroupVerdict:
    """The verdict on one group (upstream's `SchemaConsistency`, plus the group's name)."""

    group: str
    status: ConsistencyStatus
    objects: tuple[ObjectConsistency, ...] = ()
    issues: tuple[SchemaIssue, ...] = ()
    unknown_causes: tuple[UnknownCause, ...] = ()  # empty unless status is UNKNOWN


@attrs.frozen
class Streaks:
    """For how many consecutive rounds each (group, node, kind, name) has diverged.

    Keep the `Verdicts.streaks` of one round and pass it to the next; start from `Streaks()`.
    """

    counts: tuple[tuple[tuple[str, str, str, str], int], ...] = ()

    def get(self, group: str, node: str, kind: str, name: str) -> int:
        """Rounds the object has diverged on the node so far (0 when it agrees)."""
        return dict(self.counts).get((group, node, kind, name), 0)


@attrs.frozen
class Verdicts:
    """The result of one round: verdicts, error strings per group, and the next round's streaks."""

    groups: tuple[GroupVerdict, ...] = ()  # by group name
    # (group, error strings), by group name. A group's own read error is listed even when no
    # agent sent a schema partial for it; the caller unions these onto the groups it shows and
    # drops the rest, as upstream's merge only outputs groups some agent reported.
    errors: tuple[tuple[str, tuple[str, ...]], ...] = ()
    streaks: Streaks = Streaks()
    # Lookups by group name, made once: the body looks every group up, and one agent can send
    # hundreds of thousands of groups (a scan per look-up was quadratic).
    _by_group: dict[str, GroupVerdict] = attrs.field(init=False, eq=False, repr=False)
    _errors_by_group: dict[str, tuple[str, ...]] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_by_group", {v.group: v for v in reversed(self.groups)})
        object.__setattr__(self, "_errors_by_group", dict(self.errors))

    def verdict(self, group: str) -> GroupVerdict | None:
        """The verdict on `group`, or None when no agent reported a schema partial for it."""
        return self._by_group.get(group)

    def errors_of(self, group: str) -> tuple[str, ...]:
        """The registry error strings to union onto `group`'s errors."""
        return self._errors_by_group.get(group, ())

    def statuses(self) -> dict[str, ConsistencyStatus]:
        """Status by group, for the `banyandb_fodc_schema_consistency_status` gauge."""
        return {v.group: v.status for v in self.groups}


def merge_registry_chunks(chunks: Iterable[RegistryChunk]) -> RegistryRead:
    """Merge the chunks of one registry read (everything received before `done`).

    Chunks of one group append their objects in order; a non-empty error replaces an earlier
    one. A chunk with an empty group name and an error makes the whole read fatal (the last such
    error is kept), and the groups are then dropped. Groups keep the order of first appearance.
    """
    order: list[str] = []
    objects: dict[str, list[RegistryObject]] = {}
    errors: dict[str, str] = {}
    fatal = ""
    for chunk in chunks:
        if chunk.group == "" and chunk.error:
            fatal = chunk.error
            continue
        if chunk.group not in objects:
            order.append(chunk.group)
            objects[chunk.group] = []
            errors[chunk.group] = ""
        objects[chunk.group].extend(chunk.objects)
        if chunk.error:
            errors[chunk.group] = chunk.error
    if fatal:
        return RegistryRead.unavailable(fatal)
    return RegistryRead(tuple(RegistryGroup(g, tuple(objects[g]), errors[g]) for g in order))


def judge(
    registry: RegistryRead,
    reports: Iterable[GroupReport],
    *,
    silent: Collection[str] = (),
    streaks: Streaks = Streaks(),
    report_after: int = REPORT_AFTER_ROUNDS,
) -> Verdicts:
    """Judge every group some agent reported a schema partial for.

    `registry` is this round's truth; `reports` every answering agent's partials in arrival
    order; `silent` names the agents that were asked and did not answer (any one makes every
    group doubtful, since nobody knows which groups it would have reported); `streaks` comes from
    the previous round. Returns the verdicts, the registry error strings per group, and the
    streaks for the next round. Raises ValueError when `report_after` < 1.
    """
    if report_after < 1:
        raise ValueError(f"report_after must be at least 1, not {report_after}")
    # group -> node -> [(kind, name, cache, runtime)], in input order
    # Objects are keyed by plain (kind, name) tuples here: hashing and ordering them is done in
    # C, which matters with tens of thousands of fingerprints per round.
    by_group: dict[str, dict[str, list[tuple[_Key, int, int]]]] = {}
    for report in reports:
        nodes = by_group.setdefault(report.group, {})
        for obj in report.objects:
            key = (obj.kind, obj.name)
            for nf in obj.node_fingerprints:
                nodes.setdefault(nf.node, []).append((key, nf.cache, nf.runtime))

    counts = dict(streaks.counts)
    previous: dict[str, list[tuple[str, str, str, str]]] = {}  # the streaks' keys by group
    for streak_key in counts:
        previous.setdefault(streak_key[0], []).append(streak_key)
    errors: dict[str, list[str]] = {}
    if not registry.fatal:
        for g in registry.groups:
            if g.error:
                errors.setdefault(g.group, []).append("registry read failed: " + g.error)
    truths = {g.group: g for g in registry.groups}
    verdicts = []
    for group in sorted(by_group):
        if registry.fatal:
            errors.setdefault(group, []).append("registry unavailable: " + registry.fatal)
            verdicts.append(_unknown(group, UnknownCause.REGISTRY_UNAVAILABLE))
            continue
        truth = truths.get(group)
        if truth is not None and truth.error:
            verdicts.append(_unknown(group, UnknownCause.REGISTRY_ERROR))
            continue
        fingerprints = ({(o.kind, o.name): o.fingerprint for o in truth.objects}
                        if truth is not None else {})
        if not fingerprints:
            verdicts.append(_unknown(group, UnknownCause.REGISTRY_MISSING))
            continue
        verdicts.append(_check(group, fingerprints, by_group[group], counts,
                               previous.get(group, []), report_after, shortfall=bool(silent)))
    return Verdicts(
        tuple(verdicts),
        tuple((g, tuple(errs)) for g, errs in sorted(errors.items())),
        Streaks(tuple(sorted(counts.items()))),
    )


def _unknown(group: str, cause: UnknownCause) -> GroupVerdict:
    return GroupVerdict(group, ConsistencyStatus.UNKNOWN, unknown_causes=(cause,))


def _classify(registry_fp: int, reported: tuple[int, int] | None) -> SchemaIssueType:
    if reported is None:
        return SchemaIssueType.MISSING_IN_CACHE
    cache, runtime = reported
    if cache != registry_fp:
        return SchemaIssueType.CACHE_STALE
    if runtime != cache:
        return SchemaIssueType.RUNTIME_NOT_APPLIED
    return SchemaIssueType.UNSPECIFIED


def _check(
    group: str,
    registry: Mapping[_Key, int],
    nodes: Mapping[str, list[tuple[_Key, int, int]]],
    counts: dict[tuple[str, str, str, str], int],
    previous: list[tuple[str, str, str, str]],
    report_after: int,
    *,
    shortfall: bool,
) -> GroupVerdict:
    """Upstream's `Checker.Check` for one group whose registry truth is known; updates `counts`."""
    table: dict[_Key, list[NodeFingerprint]] = {key: [] for key in registry}
    issues: list[SchemaIssue] = []
    live: set[tuple[str, str, str, str]] = set()
    suppressed = False

    def diverges(node: str, key: _Key, kind: SchemaIssueType) -> None:
        nonlocal suppressed
        streak_key = (group, node, key[0], key[1])
        live.add(streak_key)
        counts[streak_key] = counts.get(streak_key, 0) + 1
        if counts[streak_key] < report_after:
            suppressed = True
        else:
            issues.append(SchemaIssue(key[0], key[1], node, kind))

    for node, objects in nodes.items():
        reported: dict[_Key, tuple[int, int]] = {}
        for key, cache, runtime in objects:
            reported[key] = (cache, runtime)  # last report wins, as upstream's map
            table.setdefault(key, []).append(NodeFingerprint(node, cache, runtime))
        for key, registry_fp in registry.items():
            kind = _classify(registry_fp, reported.get(key))
            if kind is not SchemaIssueType.UNSPECIFIED:
                diverges(node, key, kind)
        for key in reported:
            if key not in registry:
                diverges(node, key, SchemaIssueType.ORPHAN)

    for streak_key in previous:
        if streak_key not in live:
            del counts[streak_key]

    objects_out = tuple(
        ObjectConsistency(
            key[0], key[1], registry.get(key, 0),
            tuple(sorted(table[key], key=lambda nf: (nf.node, nf.cache, nf.runtime))),
        )
        for key in sorted(table)
    )
    issues.sort(key=lambda i: (i.kind, i.name, i.node))
    causes: list[UnknownCause] = []
    if issues:
        status = ConsistencyStatus.INCONSISTENT
    else:
        if not nodes:
            causes.append(UnknownCause.NO_NODES)
        if suppressed:
            causes.append(UnknownCause.SUPPRESSED)
        if shortfall:
            causes.append(UnknownCause.AGENTS_SILENT)
        status = ConsistencyStatus.UNKNOWN if causes else ConsistencyStatus.CONSISTENT
    return GroupVerdict(group, status, objects_out, tuple(issues), tuple(causes))
