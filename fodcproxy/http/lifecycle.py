"""`GET /cluster/lifecycle` (issue 16): where each group's data lives, and the schema verdict.

Upstream's endpoint and body (see `fodcproxy.core.lifecycle`): always 200 with a JSON body,
`"error"` in it when nothing could be gathered. The same node filters as the other endpoints
(`role` of either generation, `pod_name`, `address`, `agent_id`) narrow which agents are asked;
the registry is read from a liaison whatever the filter. The collection waits up to
--lifecycle-timeout; no HTTP timeout cuts it (docs/http-timeouts.md). Headers say how many agents
were asked and answered, which missed (the first 20), and which liaison's registry was used.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING

import trio
from quart import Response, request
from quart_trio import QuartTrio

from fodcproxy.core import query
from fodcproxy.http.selection import NodeSelection
from fodcproxy.lifecycle import EVERYONE

if TYPE_CHECKING:
    from fodcproxy.http.services import HttpServices


def register_lifecycle(app: QuartTrio, proxy: HttpServices,
                       selection: Callable[[], NodeSelection]) -> None:
    """Add `GET /cluster/lifecycle` to `app`; `selection()` reads the request's node filters."""

    @app.route("/cluster/lifecycle", methods=["GET"])
    async def cluster_lifecycle() -> Response:
        params = {k: request.args.getlist(k) for k in request.args.keys()}
        query.check_unknown(params, query.SELECTION_PARAMS)
        chosen = selection()
        collector = proxy.lifecycle
        if collector is None:
            return Response(json.dumps({"error": "this proxy collects no lifecycle data"}),
                            status=503, content_type="application/json")
        entries = proxy.hub.select(chosen.matches)
        everyone = not chosen.narrowed
        result = await collector.collect(entries, everyone=everyone,
                                         key=EVERYONE if everyone else chosen)
        # Merging and writing a big cluster's body takes a while: in a worker thread, so the
        # event loop keeps its turns.
        text = await trio.to_thread.run_sync(
            lambda: json.dumps(result.body(), separators=(",", ":")))
        response = Response(text, status=200, content_type="application/json")
        summary = result.summary
        response.headers["X-Fodc-Agents-Asked"] = str(summary.requested)
        response.headers["X-Fodc-Agents-Answered"] = str(summary.responded)
        missed = [a for a, _ in result.failures]
        if missed:  # the first 20, as the fan-outs' header
            response.headers["X-Fodc-Agents-Missed"] = (
                ",".join(missed[:20]) + (",..." if len(missed) > 20 else ""))
        if result.registry_agent:
            response.headers["X-Fodc-Registry-Agent"] = result.registry_agent
        return response
