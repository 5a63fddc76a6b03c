"""`GET /status`: the console's summary of the proxy, as JSON (documented in docs/console.md).

`CollectLog` remembers, per agent, when it last answered a collection, so the console can say
"last answered 5 minutes ago" of an agent that is down now. It holds one small entry per agent
id and forgets the ids the registry no longer holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fodcproxy.core.windows import rfc3339
from fodcproxy.hub import AgentResult

if TYPE_CHECKING:
    from fodcproxy.http.services import HttpServices

# The proxy counters /status shows, by their name in /metrics.
COUNTERS = {
    "registrations": "fodc_proxy_registrations_total",
    "dropped_replies": "fodc_proxy_dropped_replies_total",
    "shared_collections": "fodc_proxy_shared_collections_total",
    "agent_collect_failures": "fodc_proxy_agent_collect_failures_total",
    "collections": "fodc_proxy_collect_duration_seconds_count",
    "collect_seconds": "fodc_proxy_collect_duration_seconds_sum",
}


class CollectLog:
    """agent_id -> Unix time of its last answer to a collection (any request's)."""

    def __init__(self) -> None:
        self.last_answer: dict[str, float] = {}

    def record(self, results: Sequence[AgentResult], *, at: float) -> None:
        for r in results:
            if r.up:
                self.last_answer[r.meta.agent_id] = at

    def forget_except(self, agent_ids: set[str]) -> None:
        for gone in set(self.last_answer) - agent_ids:
            del self.last_answer[gone]


def status_json(proxy: HttpServices, results: Sequence[AgentResult], duration: float,
                log: CollectLog, *, now: float) -> dict[str, Any]:
    """The /status document for one collection `results` that took `duration` seconds."""
    entries = {e.agent_id: e for e in proxy.registry}
    log.forget_except(set(entries))
    by_status: dict[str, int] = {"online": 0, "unconnected": 0}
    for e in entries.values():
        by_status[e.status.value] = by_status.get(e.status.value, 0) + 1
    agents = []
    for r in results:
        entry = entries.get(r.meta.agent_id)
        last = log.last_answer.get(r.meta.agent_id)
        agents.append({
            "agent_id": r.meta.agent_id,
            "node_role": r.meta.role,
            "status": entry.status.value if entry is not None else "removed",
            "up": r.up,
            "collect_duration_seconds": round(r.duration, 6),
            "error": r.error or None,
            "last_answer_at": None if last is None else rfc3339(last),
        })
    metrics = proxy.metrics
    return {
        "agents_by_status": by_status,
        "agents_total": len(entries),
        "collect": {
            "at": rfc3339(now),
            "duration_seconds": round(duration, 6),
            "asked": len(results),
            "answered": sum(1 for r in results if r.up),
        },
        "agents": agents,
        "proxy": {
            "uptime_seconds": round(now - proxy.started_at, 3),
            **{name: metrics.value(sample) for name, sample in COUNTERS.items()},
        },
    }
