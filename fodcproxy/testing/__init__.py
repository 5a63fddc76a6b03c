"""Embedding: start a proxy and fake agents inside the caller's Trio run (no sockets of your own).

    async with open_proxy(collect_timeout=1.0) as proxy:
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="10.0.0.1", port=17912,
                                   series=[static("cpu_usage", 0.5)]) as agent:
            ...  # GET proxy.http_url + "/metrics" shows cpu_usage{agent_id=agent.agent_id, ...}

Pod agents (upstream BanyanDB's kind: identity = the pod, no primary address): give
`pod_name=` and `container_names=` instead of `ip` and `port`, with upstream's roles:

    async with open_fake_agent(proxy.grpc_address, role="ROLE_DATA", labels={"type": "hot"},
                               pod_name="banyandb-data-hot-0", container_names=["data"]) as agent:
        ...  # its series carry node_role, pod_name, container_name and node_type, like upstream's

`python -m fodcproxy fake-agents --shape pod` runs many of them; `python -m fodcproxy demo` mixes
both kinds.

Series: `static`, `counter` (grows per request), `histogram`, `summary`, `history` (fixed
timestamped points), `rolling` (a point every step over the last span, from a function of time),
`hostile` (label values and names that break naive exposition).

Misbehaviours (attributes of `FakeAgent`, see `fodcproxy.testing.fake`): `delay` (answer
slowly), `hang` (no answer until set back to False), `skip` (leave the next requests
unanswered), `echo_request_id = False` (an agent built from the seed's proto),
`heartbeats = False` (stop heartbeating), `oversized` (one reply over the proxy's message limit),
`malformed` (a reply that is not protobuf), `drop_mid_reply`; `drop()` (lose the connection without
a goodbye), `disconnect()` (graceful goodbye).

pytest fixtures: `fodcproxy.testing.pytest_plugin` (see docs/embedding.md). Agents without
sockets, for hub tests under MockClock: `fodcproxy.testing.agentlink`.

The names below are imported on first use, so that importing a submodule (the pytest plugin, which
pytest loads in every run once fodcproxy is installed) does not import Trio and the proxy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fodcproxy.testing.fake import (
        HOSTILE_LABEL_NAMES,
        HOSTILE_LABEL_VALUES,
        FakeAgent,
        Series,
        counter,
        histogram,
        history,
        hostile,
        open_fake_agent,
        rolling,
        static,
        summary,
    )
    from fodcproxy.testing.harness import ProxyHandle, open_proxy

_FAKE = "fodcproxy.testing.fake"
_HARNESS = "fodcproxy.testing.harness"
_EXPORTS = {
    "HOSTILE_LABEL_NAMES": _FAKE, "HOSTILE_LABEL_VALUES": _FAKE, "FakeAgent": _FAKE,
    "Series": _FAKE, "counter": _FAKE, "histogram": _FAKE, "history": _FAKE, "hostile": _FAKE,
    "open_fake_agent": _FAKE, "rolling": _FAKE, "static": _FAKE, "summary": _FAKE,
    "ProxyHandle": _HARNESS, "open_proxy": _HARNESS,
}

__all__ = [
    "HOSTILE_LABEL_NAMES", "HOSTILE_LABEL_VALUES", "FakeAgent", "ProxyHandle", "Series", "counter",
    "histogram", "history", "hostile", "open_fake_agent", "open_proxy", "rolling", "static", "summary",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
