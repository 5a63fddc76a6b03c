"""HTTP query parameters and headers turned into value types (SPEC section 6). Sans-IO.

Every function takes the parameters as a mapping from name to value: either one string per name
(`{"role": "liaison"}`) or a list of every value given (`{"role": ["liaison"]}`, what
`parse_qs` and `MultiDict.to_dict(flat=False)` return). A werkzeug/Quart `MultiDict` may be passed
as it is: its `getlist` is used, so a repeated parameter is still seen.

Bad input raises `fodcproxy.errors.InvalidArgument` (HTTP 400) with a message that names the
parameter and the form expected. Nothing else is raised for any string input.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence

import attrs

from fodcproxy.core.model import LATEST, NodeMeta, TimeWindow
from fodcproxy.core.roles import role_matches
from fodcproxy.core.windows import parse_rfc3339
from fodcproxy.errors import InvalidArgument

QueryParams = Mapping[str, Sequence[str]]
"""Name -> values (a plain `str` value counts as one value)."""

SELECTION_PARAMS = frozenset({"role", "address", "agent_id", "node_id", "pod_name"})
WINDOW_PARAMS = frozenset({"start_time", "end_time"})

KNOWN_PARAMS: dict[str, frozenset[str]] = {
    "/metrics": SELECTION_PARAMS,
    "/metrics-windows": SELECTION_PARAMS | WINDOW_PARAMS,
    "/cluster": SELECTION_PARAMS,
    "/cluster/config": SELECTION_PARAMS,
    "/cluster/topology": SELECTION_PARAMS,
    "/cluster/lifecycle": SELECTION_PARAMS,
    "/diagnostics": SELECTION_PARAMS,
    "/pressure-profiles": SELECTION_PARAMS,
    "/sd": SELECTION_PARAMS,
    "/health": frozenset(),
}
"""The query parameters each endpoint accepts; anything else is a 400 (see `check_unknown`)."""

_ADDRESS_FORMS = "ip, ip:port, [ipv6]:port or a bare IPv6 address (e.g. 10.0.0.5:17912)"
_HOST = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")
_BRACKETED = re.compile(r"\[([^\[\]]+)\](?::(.*))?", re.DOTALL)
_PORT = re.compile(r"[0-9]{1,5}")

_RFC3339_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_RFC3339_FORMS = (
    "an RFC3339 timestamp such as 2026-11-28T04:08:20Z or 2026-11-28T12:08:20.250+08:00"
    " (Unix seconds are not accepted)"
)
# "+08:00" sent unencoded in a URL arrives as " 08:00": the "+" was read as a space.
_PLUS_AS_SPACE = re.compile(r".*[0-9] [0-9]{2}:[0-9]{2}", re.DOTALL)

_TIMEOUT_HEADER = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")


@attrs.frozen
class Selection:
    """Which agents a request is about. A field left None matches every agent."""

    role: str | None = None
    ip: str | None = None
    port: int | None = None
    agent_id: str | None = None
    pod_name: str | None = None

    def matches(self, meta: NodeMeta) -> bool:
        """Whether the node passes every filter that is set.

        `role` matches the node's role whatever naming either side uses (`liaison` selects
        `ROLE_LIAISON` nodes, `datanode-hot` selects `ROLE_DATA` nodes labelled `type=hot`; see
        `core.roles.role_matches`); `agent_id` and `pod_name` compare exactly; `ip` compares as
        an address when both sides are IP addresses ("::1" matches "0:0:0:0:0:0:0:1"), else as
        text; `port` only when set. A pod agent has no address: an `address` filter never
        selects it.
        """
        return (
            (self.role is None or role_matches(self.role, meta.role, meta.labels))
            and (self.agent_id is None or meta.agent_id == self.agent_id)
            and (self.pod_name is None or meta.pod_name == self.pod_name)
            and (self.ip is None or (not meta.is_pod and _same_ip(meta.ip, self.ip)))
            and (self.port is None or meta.port == self.port)
        )

    @classmethod
    def from_query(cls, params: QueryParams) -> Selection:
        """Read `role`, `address` and `agent_id` (or its alias `node_id`) from query parameters.

        `address` is `ip`, `ip:port`, `[ipv6]:port`, `[ipv6]` or a bare IPv6 address. Other
        parameters are not looked at (see `check_unknown`).

        Raises `InvalidArgument` when a parameter is repeated or empty, when `address` is not one
        of those forms or its port is outside 1-65535, and when `agent_id` and `node_id` are both
        given and differ.
        """
        role = _single(params, "role")
        pod_name = _single(params, "pod_name")
        agent_id = _single(params, "agent_id")
        node_id = _single(params, "node_id")
        if agent_id is not None and node_id is not None and agent_id != node_id:
            raise InvalidArgument(
                f"agent_id {_show(agent_id)} and node_id {_show(node_id)} differ:"
                " node_id is another name for agent_id, give one of them"
            )
        address = _single(params, "address")
        ip, port = (None, None) if address is None else _parse_address(address)
        return cls(
            role=role, ip=ip, port=port, agent_id=agent_id if agent_id is not None else node_id,
            pod_name=pod_name,
        )


def window_from_query(
    params: QueryParams, *, max_window: float | None = None, now: float | None = None
) -> TimeWindow:
    """Read `start_time` and `end_time` (RFC3339) into a `TimeWindow` of Unix seconds.

    Neither given: `LATEST`. One given: the window is open on the other side. Timestamps must be
    RFC3339 with a "Z" or a numeric offset, fractional seconds allowed; "t" or a space may stand
    for "T"; a leap second (:60) counts as the next second. Unix seconds are refused.

    `max_window` (seconds), when set, bounds the window's length, and `now` (Unix seconds) must be
    given with it: an open end counts as `now`, so `start_time` alone is measured from
    `start_time` to `now` (a start in the future is a window of length 0). An open start reaches
    back without bound (it asks for everything the agents still hold), so `end_time` alone is
    over any limit and refused; without `max_window` it is accepted.

    Raises `InvalidArgument` when a value is repeated, empty or not RFC3339, when start_time is
    after end_time, and when the window is longer than `max_window`. Raises `TypeError` when
    `max_window` is set and `now` is not (a programming error, not a client's).
    """
    if max_window is not None and now is None:
        raise TypeError("window_from_query: now is required with max_window")
    start_text = _single(params, "start_time")
    end_text = _single(params, "end_time")
    if start_text is None and end_text is None:
        return LATEST
    start = None if start_text is None else _parse_rfc3339("start_time", start_text)
    end = None if end_text is None else _parse_rfc3339("end_time", end_text)
    if start is not None and end is not None and start > end:
        raise InvalidArgument(
            f"start_time {_show(start_text or '')} is after end_time {_show(end_text or '')}:"
            " start_time must not be later than end_time"
        )
    if max_window is not None and now is not None:
        if start is None:
            raise InvalidArgument(
                f"end_time without start_time asks for everything before it, a window with no"
                f" start and so longer than the limit of {max_window:g}s (--max-query-window):"
                f" give start_time too, at most {max_window:g}s before end_time"
            )
        if end is not None and end - start > max_window:
            raise InvalidArgument(
                f"the window from start_time to end_time is {end - start:g}s long;"
                f" the limit is {max_window:g}s: ask for a shorter window"
            )
        if end is None and now - start > max_window:
            raise InvalidArgument(
                f"the window from start_time to now (no end_time: the window ends now) is"
                f" {now - start:g}s long; the limit is {max_window:g}s: give a later start_time"
                f" or an end_time at most {max_window:g}s after it"
            )
    return TimeWindow(start, end)


def parse_scrape_timeout(
    header: str | None, *, default: float, margin: float = 0.25, minimum: float = 0.1
) -> float:
    """The fan-out deadline (seconds) for a request carrying X-Prometheus-Scrape-Timeout-Seconds.

    With a header value `h`, the answer is `min(default, h - m)` where `m` is the larger of
    `margin` and 10% of `h`, so the answer reaches Prometheus before it gives up. The header can
    lower the deadline but never below `minimum` (nor raise it above `default`).

    A missing header, or one that is not a plain positive decimal number ("10", "9.5"), is
    ignored: the answer is `default`. A broken header must not break the scrape. Never raises.
    """
    if header is None:
        return default
    text = header.strip()
    if not _TIMEOUT_HEADER.fullmatch(text):
        return default
    seconds = float(text)
    if not (math.isfinite(seconds) and seconds > 0):
        return default
    lowered = seconds - max(margin, 0.1 * seconds)
    return max(min(default, lowered), min(default, minimum))


def check_unknown(params: Mapping[str, object], allowed: frozenset[str]) -> None:
    """Refuse parameters an endpoint does not know, so a typo is not silently ignored.

    `allowed` is usually `KNOWN_PARAMS[path]`. Raises `InvalidArgument` naming the unknown
    parameters and listing the accepted ones.
    """
    unknown = sorted(set(params) - allowed)
    if not unknown:
        return
    shown = ", ".join(_show(name) for name in unknown[:10])
    if len(unknown) > 10:
        shown += f" and {len(unknown) - 10} more"
    accepted = (
        "accepted parameters: " + ", ".join(sorted(allowed))
        if allowed
        else "this endpoint takes no query parameters"
    )
    noun = "parameter" if len(unknown) == 1 else "parameters"
    raise InvalidArgument(f"unknown query {noun} {shown}; {accepted}")


def _values(params: QueryParams, name: str) -> list[str]:
    getlist = getattr(params, "getlist", None)
    if callable(getlist):
        return list(getlist(name))
    raw = params.get(name)
    if raw is None:
        return []
    if isinstance(raw, str):
        return [raw]
    return list(raw)


def _single(params: QueryParams, name: str) -> str | None:
    values = _values(params, name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidArgument(f"{name} is given {len(values)} times: give it at most once")
    if values[0] == "":
        raise InvalidArgument(f"{name} is empty: give a value or leave the parameter out")
    return values[0]


def _parse_address(value: str) -> tuple[str, int | None]:
    bracketed = _BRACKETED.fullmatch(value)
    if bracketed is not None:
        ip, port = bracketed[1], bracketed[2]
        if not _is_ipv6(ip):
            raise _bad_address(value)
        return ip, None if port is None else _parse_port(port)
    if value.count(":") > 1:
        if not _is_ipv6(value):
            raise _bad_address(value)
        return value, None
    host, colon, port = value.partition(":")
    if not _HOST.fullmatch(host):
        raise _bad_address(value)
    return host, _parse_port(port) if colon else None


def _parse_port(text: str) -> int:
    port = int(text) if _PORT.fullmatch(text) else 0
    if not 1 <= port <= 65535:
        raise InvalidArgument(
            f"address: the port {_show(text)} is not a number from 1 to 65535;"
            f" expected {_ADDRESS_FORMS}"
        )
    return port


def _bad_address(value: str) -> InvalidArgument:
    return InvalidArgument(f"address {_show(value)} is not valid: expected {_ADDRESS_FORMS}")


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def _same_ip(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return ipaddress.ip_address(a) == ipaddress.ip_address(b)
    except ValueError:
        return False


def _parse_rfc3339(name: str, text: str) -> float:
    try:
        return parse_rfc3339(text)
    except ValueError as exc:
        if _RFC3339_SHAPE.fullmatch(text):  # the right shape, but no such date, time or offset
            raise InvalidArgument(
                f"{name}: {_show(text)} is not a real date and time; expected {_RFC3339_FORMS}"
            ) from exc
        hint = (
            "; a '+' in a URL means a space, write the offset as %2B08:00"
            if _PLUS_AS_SPACE.fullmatch(text)
            else ""
        )
        raise InvalidArgument(f"{name}: expected {_RFC3339_FORMS}, got {_show(text)}{hint}") from None


def _show(text: str) -> str:
    """`text` quoted for an error message, cut short so a huge value is not echoed back whole."""
    return repr(text if len(text) <= 64 else text[:61] + "...")
