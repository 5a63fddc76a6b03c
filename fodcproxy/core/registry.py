"""The agent registry: identities, validation and the lifecycle of SPEC section 4. Sans-IO.

Time is always an argument (`now`, monotonic seconds of the caller's clock). The registry turns it
into wall-clock time for display with `wall_offset` (wall = now + wall_offset), so tests drive it
with virtual time and still see stable timestamps.

Lifecycle (the whole table):

| from     | event                                   | to       |
|----------|-----------------------------------------|----------|
| (none)   | register                                | online   |
| online   | heartbeat                               | online   |
| offline  | heartbeat / register (same identity)    | online   |
| online   | no heartbeat for heartbeat_timeout      | offline  |
| online   | every stream closed without goodbye     | offline  |
| any      | goodbye (send side closed cleanly)      | (none)   |
| offline  | offline for cleanup_timeout             | (none)   |
| offline  | a new identity needs its --max-agents   | (none)   |
|          | slot, and it never carried a metrics    |          |
|          | stream (oldest first)                   |          |

An entry remembers the opaque `owner` of its registration stream (the Trio shell's session
object). A registration of an identity whose owner is still connected takes it over: the result
names the displaced owner so the shell can cancel it. Events from a displaced owner are ignored.

An entry also remembers whether a metrics stream was ever attached to it (`metrics_attached`):
registrations that never carried one and went offline (junk dropped without a goodbye) give their
`max_agents` slot to a new registration instead of locking real agents out until cleanup.
"""

from __future__ import annotations

import enum
import hashlib
import ipaddress
import re
from collections.abc import Iterator, Mapping

import attrs

from fodcproxy.core.model import Address, NodeConfig, NodeMeta
from fodcproxy.errors import IdentityChanged, InvalidArgument, LimitExceeded

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_MAX_LABELS = 64
_MAX_TEXT = 1024


@attrs.frozen(kw_only=True)
class RegistrationLimits:
    """Size caps on what one registration may carry (the proxy's flags name them)."""

    max_secondary_addresses: int = 64  # --max-secondary-addresses
    max_secondary_address_key_length: int = 256  # --max-secondary-address-key-length, bytes
    max_node_config_bytes: int = 256 * 1024  # --max-node-config-bytes, serialized


DEFAULT_LIMITS = RegistrationLimits()


class AgentStatus(str, enum.Enum):
    ONLINE = "online"
    OFFLINE = "unconnected"


class ChangeKind(str, enum.Enum):
    REGISTERED = "registered"
    ONLINE = "online"  # an offline entry came back
    OFFLINE = "offline"
    REMOVED = "removed"


@attrs.frozen
class Identity:
    """Who an address agent is: (primary ip, primary port, role, labels). Labels sorted."""

    ip: str
    port: int
    role: str
    labels: tuple[tuple[str, str], ...] = ()

    @property
    def agent_id(self) -> str:
        """Derived from the identity alone: stable across reconnects and proxy restarts."""
        canon = "\x00".join(
            [self.role, self.ip, str(self.port)] + [f"{k}={v}" for k, v in self.labels]
        )
        digest = hashlib.sha256(canon.encode()).hexdigest()[:12]
        return f"{self.role}-{digest}"

    @property
    def address(self) -> Address:
        return Address(self.ip, self.port)

    def describe(self) -> str:
        return f"{self.role} {self.ip}:{self.port}"


@attrs.frozen
class PodIdentity:
    """Who a pod agent (upstream BanyanDB's agent today) is: its Kubernetes pod, alone.

    Its role and labels are not part of it: such agents register as ROLE_UNSPECIFIED and say
    their role in later heartbeats.
    """

    pod_name: str

    @property
    def agent_id(self) -> str:
        """Derived from the pod alone: stable across reconnects, role changes and restarts."""
        digest = hashlib.sha256(f"pod\x00{self.pod_name}".encode()).hexdigest()[:12]
        return f"pod-{digest}"

    def describe(self) -> str:
        return f"pod {self.pod_name}"


@attrs.frozen
class Registration:
    """A validated registration request, as the registry sees it."""

    identity: Identity | PodIdentity
    secondary_addresses: Mapping[str, Address] = attrs.field(factory=dict)
    node_config: NodeConfig | None = None
    # The node's role and labels (for address agents also part of their identity).
    role: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    container_names: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        if isinstance(self.identity, Identity) and not self.role:
            object.__setattr__(self, "role", self.identity.role)
            object.__setattr__(self, "labels", self.identity.labels)

    @classmethod
    def build(
        cls,
        *,
        role: str,
        ip: str,
        port: int,
        labels: Mapping[str, str] | None = None,
        secondary_addresses: Mapping[str, Address] | None = None,
        node_config: NodeConfig | None = None,
        limits: RegistrationLimits = DEFAULT_LIMITS,
    ) -> Registration:
        """Validate the parts of an address agent's registration.

        Raises:
            InvalidArgument: with a message an operator can act on.
            LimitExceeded: a part is over one of `limits`; the message names its flag.
        """
        role = _check_role(role, hint="set the agent's --node-role (e.g. liaison)")
        _check_address("primary_address", ip, port)
        sorted_labels = _check_labels(labels)
        secondary = _check_secondary(secondary_addresses, limits)
        identity = Identity(ip=ip, port=port, role=role, labels=sorted_labels)
        return cls(identity=identity, secondary_addresses=secondary, node_config=node_config,
                   role=role, labels=sorted_labels)

    @classmethod
    def build_pod(
        cls,
        *,
        pod_name: str,
        role: str,
        labels: Mapping[str, str] | None = None,
        container_names: tuple[str, ...] | list[str] = (),
        secondary_addresses: Mapping[str, Address] | None = None,
        node_config: NodeConfig | None = None,
        limits: RegistrationLimits = DEFAULT_LIMITS,
    ) -> Registration:
        """Validate the parts of a pod agent's registration (no primary address).

        An empty role is taken as ROLE_UNSPECIFIED (the agent says its role later).

        Raises:
            InvalidArgument: with a message an operator can act on.
            LimitExceeded: a part is over one of `limits`; the message names its flag.
        """
        pod = pod_name.strip()
        if not pod:
            raise InvalidArgument(
                "neither primary_address nor pod_name is set: an address agent sends its node's "
                "primary_address (--node-ip, --node-port), a pod agent its pod_name (--pod-name)")
        if len(pod) > 253 or not _NAME.fullmatch(pod):
            raise InvalidArgument(
                f"pod_name {pod[:64]!r} is not a pod name: at most 253 letters, digits, '-', '.' "
                "or '_'")
        role = _check_role(role or "ROLE_UNSPECIFIED", hint="set the agent's --node-role")
        if len(container_names) > _MAX_LABELS:
            raise InvalidArgument(
                f"{len(container_names)} container_names: at most {_MAX_LABELS} are accepted")
        for name in container_names:
            if not name or len(name) > 253 or not _NAME.fullmatch(name):
                raise InvalidArgument(
                    f"container name {name[:64]!r} is not valid: 1-253 letters, digits, '-', '.' "
                    "or '_'")
        return cls(identity=PodIdentity(pod), secondary_addresses=_check_secondary(
                       secondary_addresses, limits),
                   node_config=node_config, role=role, labels=_check_labels(labels),
                   container_names=tuple(container_names))


_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.\-]*[A-Za-z0-9])?")


def _check_role(role: str, *, hint: str) -> str:
    role = role.strip()
    if not role:
        raise InvalidArgument(f"node_role is empty: {hint}")
    if len(role) > 128 or not re.fullmatch(r"[A-Za-z0-9_.\-]+", role):
        raise InvalidArgument(
            f"node_role {role[:64]!r} is not valid: use letters, digits, '-', '_' or '.'"
        )
    return role


def _check_labels(labels: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    labels = dict(labels or {})
    if len(labels) > _MAX_LABELS:
        raise InvalidArgument(f"{len(labels)} labels: at most {_MAX_LABELS} are accepted")
    for k, v in labels.items():
        if len(k) > _MAX_TEXT:
            raise InvalidArgument(f"a label name is {len(k)} characters: at most {_MAX_TEXT}")
        if not _LABEL_NAME.match(f"node_{k}"):
            raise InvalidArgument(
                f"label name {k[:64]!r} is not valid: once prefixed as node_{k[:64]} it must "
                "match [a-zA-Z_][a-zA-Z0-9_]* (use letters, digits and '_')"
            )
        if len(v) > _MAX_TEXT:
            raise InvalidArgument(f"label {k!r} value is {len(v)} characters: at most {_MAX_TEXT}")
    return tuple(sorted(labels.items()))


def _check_secondary(secondary_addresses: Mapping[str, Address] | None,
                     limits: RegistrationLimits) -> dict[str, Address]:
    secondary = dict(secondary_addresses or {})
    if len(secondary) > limits.max_secondary_addresses:
        raise LimitExceeded(
            f"{len(secondary)} secondary_addresses: at most {limits.max_secondary_addresses} "
            f"are accepted (the proxy's --max-secondary-addresses)")
    for name, addr in secondary.items():
        size = len(name.encode())
        if size > limits.max_secondary_address_key_length:
            raise LimitExceeded(
                f"a secondary_addresses name ({name[:32]!r}...) is {size} bytes: at most "
                f"{limits.max_secondary_address_key_length} (the proxy's "
                "--max-secondary-address-key-length)")
        _check_address(f"secondary_addresses[{name[:64]!r}]", addr.ip, addr.port)
    return secondary


def _check_address(what: str, ip: str, port: int) -> None:
    if not ip:
        raise InvalidArgument(f"{what}.ip is missing: set the agent's --node-ip")
    if len(ip) > 255:  # no IP address or host name is longer (RFC 1035)
        raise InvalidArgument(f"{what}.ip is {len(ip)} characters long: at most 255")
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        if not re.fullmatch(r"[A-Za-z0-9]([A-Za-z0-9\-.]*[A-Za-z0-9])?", ip):
            raise InvalidArgument(
                f"{what}.ip {ip[:64]!r} is neither an IP address nor a host name"
            ) from None
    if not 1 <= port <= 65535:
        raise InvalidArgument(f"{what}.port {port} is outside 1-65535: set the agent's --node-port")


@attrs.define
class AgentEntry:
    """One registered agent. Mutable, owned by the registry; read it, do not change it."""

    identity: Identity | PodIdentity
    agent_id: str
    secondary_addresses: Mapping[str, Address]
    node_config: NodeConfig | None
    registered_at: float  # monotonic
    last_heartbeat: float  # monotonic
    status: AgentStatus
    owner: object | None  # the connection holding the registration stream; None when gone
    offline_since: float | None = None
    # A metrics stream was attached to this entry at least once (kept across re-registrations):
    # until then an offline entry yields its max_agents slot to a new registration.
    metrics_attached: bool = False
    # The node's role and labels: fixed by an address agent's identity, followed by heartbeat
    # for a pod agent.
    role: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    container_names: tuple[str, ...] = ()
    meta: NodeMeta = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._remeta()

    def _remeta(self) -> None:
        ident = self.identity
        if isinstance(ident, Identity):
            self.meta = NodeMeta(self.agent_id, self.role, ident.ip, ident.port, self.labels)
        else:
            self.meta = NodeMeta(self.agent_id, self.role, "", 0, self.labels,
                                 ident.pod_name, self.container_names)

    @property
    def address(self) -> Address | None:
        """An address agent's primary address; None for a pod agent."""
        ident = self.identity
        return ident.address if isinstance(ident, Identity) else None

    @property
    def pod_name(self) -> str:
        ident = self.identity
        return ident.pod_name if isinstance(ident, PodIdentity) else ""

    def _follow(self, reg: Registration) -> bool:
        """Take the role, labels and containers of `reg`; True when something changed."""
        new = (reg.role, reg.labels, reg.container_names)
        if new == (self.role, self.labels, self.container_names):
            return False
        self.role, self.labels, self.container_names = new
        self._remeta()
        return True


@attrs.frozen
class Change:
    kind: ChangeKind
    agent_id: str
    reason: str = ""
    owner: object | None = None  # for REMOVED: the connection to cancel, if still attached


@attrs.frozen
class RegisterResult:
    entry: AgentEntry
    changes: tuple[Change, ...]
    displaced: object | None  # an owner that was taken over; the caller cancels it
    evicted: str | None = None  # the agent_id of an entry that yielded its slot, if any


@attrs.frozen
class RegistryStatistics:
    online: int
    offline: int
    registrations: int
    refusals: int
    takeovers: int
    removals: int


class Registry:
    """All registered agents, keyed by agent_id (which is derived from the identity)."""

    def __init__(
        self,
        *,
        heartbeat_timeout: float = 30.0,
        cleanup_timeout: float = 300.0,
        max_agents: int = 1000,
        wall_offset: float = 0.0,
    ) -> None:
        if heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be > 0")
        if cleanup_timeout <= heartbeat_timeout:
            raise ValueError("cleanup_timeout must be greater than heartbeat_timeout")
        self.heartbeat_timeout = heartbeat_timeout
        self.cleanup_timeout = cleanup_timeout
        self.max_agents = max_agents
        self.wall_offset = wall_offset
        self._entries: dict[str, AgentEntry] = {}
        self._registrations = 0
        self._refusals = 0
        self._takeovers = 0
        self._removals = 0

    # -- queries -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[AgentEntry]:
        return iter(list(self._entries.values()))

    def get(self, agent_id: str) -> AgentEntry | None:
        return self._entries.get(agent_id)

    def wall(self, now: float) -> float:
        """Convert a monotonic time of this registry to Unix seconds."""
        return now + self.wall_offset

    def statistics(self) -> RegistryStatistics:
        online = sum(1 for e in self._entries.values() if e.status is AgentStatus.ONLINE)
        return RegistryStatistics(
            online=online,
            offline=len(self._entries) - online,
            registrations=self._registrations,
            refusals=self._refusals,
            takeovers=self._takeovers,
            removals=self._removals,
        )

    def next_deadline(self) -> float | None:
        """The earliest time at which `expire` will change something, or None."""
        best: float | None = None
        for e in self._entries.values():
            if e.status is AgentStatus.ONLINE:
                t = e.last_heartbeat + self.heartbeat_timeout
            else:
                assert e.offline_since is not None
                t = e.offline_since + self.cleanup_timeout
            if best is None or t < best:
                best = t
        return best

    # -- events --------------------------------------------------------------------------------

    def register(self, reg: Registration, *, owner: object, now: float) -> RegisterResult:
        """Register (or re-register) an identity held by `owner`.

        Raises:
            LimitExceeded: the registry holds max_agents entries (offline ones count).
        """
        agent_id = reg.identity.agent_id
        entry = self._entries.get(agent_id)
        changes: list[Change] = []
        displaced = None
        evicted = None
        if entry is None:
            if len(self._entries) >= self.max_agents:
                evicted = self._yield_slot()
                if evicted is None:
                    self._refusals += 1
                    raise LimitExceeded(
                        f"the proxy already holds {len(self._entries)} agents (--max-agents="
                        f"{self.max_agents}); every one is online or carried a metrics stream, "
                        "and offline ones count until --agent-cleanup-timeout removes them"
                    )
                changes.append(evicted)
            entry = AgentEntry(
                identity=reg.identity,
                agent_id=agent_id,
                secondary_addresses=reg.secondary_addresses,
                node_config=reg.node_config,
                registered_at=now,
                last_heartbeat=now,
                status=AgentStatus.ONLINE,
                owner=owner,
                role=reg.role,
                labels=reg.labels,
                container_names=reg.container_names,
            )
            self._entries[agent_id] = entry
            changes.append(Change(ChangeKind.REGISTERED, agent_id))
        else:
            if entry.owner is not None and entry.owner is not owner:
                displaced = entry.owner
                self._takeovers += 1
            if entry.status is AgentStatus.OFFLINE:
                changes.append(Change(ChangeKind.ONLINE, agent_id, "registered again"))
            entry.owner = owner
            entry._follow(reg)
            entry.secondary_addresses = reg.secondary_addresses
            entry.node_config = reg.node_config
            entry.registered_at = now
            entry.last_heartbeat = now
            entry.status = AgentStatus.ONLINE
            entry.offline_since = None
        self._registrations += 1
        return RegisterResult(entry, tuple(changes), displaced,
                              evicted.agent_id if evicted is not None else None)

    def _yield_slot(self) -> Change | None:
        """Remove the offline entry that never carried a metrics stream and went offline first.

        Returns its REMOVED change, or None when there is no such entry.
        """
        candidates = [e for e in self._entries.values()
                      if e.status is AgentStatus.OFFLINE and not e.metrics_attached]
        if not candidates:
            return None
        oldest = min(candidates, key=lambda e: (e.offline_since or 0.0, e.registered_at))
        del self._entries[oldest.agent_id]
        self._removals += 1
        return Change(ChangeKind.REMOVED, oldest.agent_id,
                      "offline and never carried a metrics stream: its slot went to a new "
                      "registration", owner=oldest.owner)

    def metrics_attached(self, agent_id: str, *, owner: object) -> None:
        """A metrics stream of `owner`'s registration attached: the entry keeps its slot."""
        entry = self._entries.get(agent_id)
        if entry is not None and entry.owner is owner:
            entry.metrics_attached = True

    def refuse(self) -> None:
        """Count a registration refused before it reached the registry (invalid input)."""
        self._refusals += 1

    def heartbeat(
        self, agent_id: str, reg: Registration, *, owner: object, now: float
    ) -> list[Change]:
        """A heartbeat from `owner`: the full registration again.

        A changed node_config updates the entry. Returns the changes (offline -> online).

        Raises:
            IdentityChanged: the heartbeat carries another identity than the registration.
        """
        entry = self._entries.get(agent_id)
        if entry is None or entry.owner is not owner:
            return []  # taken over or cleaned up; the shell cancels this stream
        if reg.identity != entry.identity:
            if isinstance(entry.identity, PodIdentity):
                raise IdentityChanged(
                    "the heartbeat carries another pod_name (or a primary_address) than the "
                    "registration: close this stream and register again as the new pod")
            raise IdentityChanged(
                "the heartbeat carries another identity (role, address or labels) than the "
                "registration: close this stream and register again under the new identity"
            )
        entry._follow(reg)  # a pod agent's role and labels follow its heartbeats
        entry.last_heartbeat = now
        entry.secondary_addresses = reg.secondary_addresses
        if reg.node_config is not None:
            entry.node_config = reg.node_config
        if entry.status is AgentStatus.OFFLINE:
            entry.status = AgentStatus.ONLINE
            entry.offline_since = None
            return [Change(ChangeKind.ONLINE, agent_id, "heartbeat")]
        return []

    def disconnect(
        self, agent_id: str, *, owner: object, now: float, graceful: bool
    ) -> list[Change]:
        """Every stream of `owner` closed: a goodbye removes the entry, otherwise it goes offline."""
        entry = self._entries.get(agent_id)
        if entry is None or entry.owner is not owner:
            return []
        entry.owner = None
        if graceful:
            del self._entries[agent_id]
            self._removals += 1
            return [Change(ChangeKind.REMOVED, agent_id, "goodbye")]
        if entry.status is AgentStatus.ONLINE:
            entry.status = AgentStatus.OFFLINE
            entry.offline_since = now
            return [Change(ChangeKind.OFFLINE, agent_id, "connection lost")]
        return []

    def remove(self, agent_id: str, *, reason: str) -> list[Change]:
        """Unregister `agent_id` now, whatever its state (an operator's manual removal).

        Returns the REMOVED change, naming the owner whose streams the shell must end; an
        empty list when there is no such agent.
        """
        entry = self._entries.pop(agent_id, None)
        if entry is None:
            return []
        self._removals += 1
        return [Change(ChangeKind.REMOVED, agent_id, reason, owner=entry.owner)]

    def expire(self, now: float) -> list[Change]:
        """Apply the timeouts due at `now`. Returns what changed, in a deterministic order."""
        changes: list[Change] = []
        for agent_id, e in list(self._entries.items()):
            if e.status is AgentStatus.ONLINE:
                due = e.last_heartbeat + self.heartbeat_timeout
                if now >= due:
                    e.status = AgentStatus.OFFLINE
                    e.offline_since = due
                    changes.append(Change(ChangeKind.OFFLINE, agent_id, "heartbeat timeout"))
            if e.status is AgentStatus.OFFLINE:
                assert e.offline_since is not None
                if now >= e.offline_since + self.cleanup_timeout:
                    del self._entries[agent_id]
                    self._removals += 1
                    changes.append(
                        Change(ChangeKind.REMOVED, agent_id, "cleanup timeout", owner=e.owner)
                    )
        return changes
