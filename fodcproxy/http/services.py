"""What the HTTP side uses of a proxy, and nothing more (not the whole `Proxy`).

The composition root (`fodcproxy.proxy`) builds one `HttpServices` and hands it to
`serve_http`; the app, `/status` and `/sd` read only these parts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from fodcproxy.config import ProxyConfig
    from fodcproxy.core.exposition import ExpositionCache
    from fodcproxy.core.registry import Registry
    from fodcproxy.core.windows import WindowsCache
    from fodcproxy.diagnostics import DiagnosticsSettings
    from fodcproxy.hub import AgentHub
    from fodcproxy.lifecycle import LifecycleCollector
    from fodcproxy.metrics import ProxyMetrics


@attrs.frozen(kw_only=True)
class HttpServices:
    config: ProxyConfig
    registry: Registry
    hub: AgentHub
    metrics: ProxyMetrics
    exposition_cache: ExpositionCache  # the /metrics renderer's memory, one per proxy
    windows_cache: WindowsCache  # the /metrics-windows renderer's
    started_at: float  # Unix seconds
    # Where the HTTP server is bound once it is: (host, port), or None before.
    http_bound: Callable[[], tuple[str, int] | None]
    # GET /cluster/lifecycle's collections and the schema verdicts /metrics shows; None: the
    # endpoint answers 503 and /metrics has no schema gauges.
    lifecycle: LifecycleCollector | None = None
    # Crash records and pressure profiles (--diagnostics-settle, --profile-chunk-timeout, ...);
    # None: the defaults.
    diagnostics: DiagnosticsSettings | None = None
