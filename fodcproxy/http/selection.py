"""The node filters of the HTTP API (SPEC section 6), as the HTTP side reads them. Sans-IO.

`fodcproxy.core.query.Selection` parses `role` and `address`; this adds what the HTTP API
promises on top of it:
- `agent_id` takes a list, as the seed's filter does: `?agent_id=a&agent_id=b` selects both, and
  `node_id` (the seed's name) is an alias whose values join the same list;
- `address` is a node address: an IP address, or a host name that some registered agent uses as
  its address (agents may register by host name). Anything else is a 400 naming the forms, not
  an empty answer.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Container

import attrs

from fodcproxy.core import query
from fodcproxy.core.model import NodeMeta
from fodcproxy.errors import InvalidArgument

ID_PARAMS = ("agent_id", "node_id")
MAX_IDS = 1000
_ADDRESS_FORMS = ("an IP address, ip:port, [ipv6]:port, or the host name of a registered agent "
                  "(e.g. 10.0.0.5 or 10.0.0.5:17912)")


def _show(text: str) -> str:
    return repr(text if len(text) <= 64 else text[:61] + "...")


@attrs.frozen
class NodeSelection:
    """Which agents a request is about: the core filters, and a set of agent ids (None: any).

    Frozen and hashable: it is part of the key under which identical requests share a fan-out.
    """

    base: query.Selection = query.Selection()
    agent_ids: frozenset[str] | None = None

    def matches(self, meta: NodeMeta) -> bool:
        return (self.agent_ids is None or meta.agent_id in self.agent_ids) and self.base.matches(meta)

    @property
    def narrowed(self) -> bool:
        """Whether any filter is set."""
        return self.agent_ids is not None or self.base != query.Selection()

    @classmethod
    def from_query(cls, params: query.QueryParams, *,
                   known_hosts: Container[str] = frozenset()) -> NodeSelection:
        """Read `role`, `address`, `agent_id` and `node_id` from query parameters.

        `known_hosts` are the non-IP addresses agents registered with; only those are accepted
        as a host name in `address`.

        Raises `InvalidArgument` (400) for an empty or repeated `role`/`address`/`pod_name`, an empty id,
        more than MAX_IDS ids, and an `address` that is neither of the accepted forms.
        """
        ids: list[str] = []
        for name in ID_PARAMS:
            for value in _values(params, name):
                if value == "":
                    raise InvalidArgument(f"{name} is empty: give an agent id or leave it out")
                ids.append(value)
        if len(ids) > MAX_IDS:
            raise InvalidArgument(f"{len(ids)} agent ids given: at most {MAX_IDS} per request")
        rest = {k: _values(params, k) for k in ("role", "address", "pod_name")}
        base = query.Selection.from_query(rest)
        if base.ip is not None and not _is_ip(base.ip) and base.ip not in known_hosts:
            address = _values(params, "address")[0]
            raise InvalidArgument(f"address {_show(address)} is not valid: expected {_ADDRESS_FORMS}")
        return cls(base, frozenset(ids) if ids else None)


def _values(params: query.QueryParams, name: str) -> list[str]:
    getlist: Callable[[str], list[str]] | None = getattr(params, "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    raw = params.get(name)
    if raw is None:
        return []
    return [raw] if isinstance(raw, str) else list(raw)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
