"""The HTTP API of SPEC section 6, as a Quart-Trio app. Thin: the core renders, the hub collects."""

from __future__ import annotations

import logging
import socket
import time
import weakref
import zlib
from collections.abc import AsyncIterator, Iterable
from typing import TYPE_CHECKING, Any

import trio
from quart import Response, request
from quart.globals import request_ctx
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from fodcproxy.core import exposition, query, topology, windows
from fodcproxy.core.model import LATEST
from fodcproxy.core.series import DigestedSamples
from fodcproxy.core.registry import AgentEntry
from fodcproxy.diagnostics import counts as diagnostic_counts
from fodcproxy.errors import FodcError
from fodcproxy.hub import AgentResult
from fodcproxy.http import documents, negotiation
from fodcproxy.http.lifecycle import register_lifecycle
from fodcproxy.http.selection import NodeSelection
from fodcproxy.http.status import CollectLog, status_json
from fodcproxy.http.diagnostics import register_diagnostics
from fodcproxy.http.ui import register_ui
from fodcproxy.rpc import convert
from fodcproxy.security import bearer_matches
from fodcproxy.streams import TopologyStream

if TYPE_CHECKING:
    from fodcproxy.http.services import HttpServices

log = logging.getLogger(__name__)

JSON = "application/json"
# Lines of text (or JSON objects) handed to the server per write: big enough to be cheap, small
# enough that the event loop gets a checkpoint often while a 100k-sample answer streams out.
_CHUNK_BYTES = 256 * 1024


def _error(status: int, message: str) -> Response:
    return Response(documents.dumps(documents.ErrorBody(message)), status=status,
                    content_type=JSON)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(documents.dumps(body), status=status, content_type=JSON, headers=headers)


def _params() -> dict[str, list[str]]:
    return {k: request.args.getlist(k) for k in request.args.keys()}


def _node_view(proxy: HttpServices, e: AgentEntry) -> topology.NodeView:
    wall = proxy.registry.wall
    return topology.NodeView(
        agent_id=e.agent_id,
        role=e.role,
        primary_address=e.address,
        secondary_addresses=dict(e.secondary_addresses),
        labels=dict(e.labels),
        status=e.status.value,
        last_heartbeat=wall(e.last_heartbeat),
        registered_at=wall(e.registered_at),
        node_config=e.node_config,
        pod_name=e.pod_name,
        container_names=e.container_names,
    )


class _Body:
    """A rendered `/metrics` body, shared by the requests answered from one collection."""

    def __init__(self, results: list[AgentResult]) -> None:
        self.results = results
        self.done = trio.Event()
        self.chunks: list[bytes] | None = None


async def _stream(chunks: Iterable[str | bytes], gzip: bool, *,
                  keep: object = None) -> AsyncIterator[bytes]:
    """Yield the body in pieces of about _CHUNK_BYTES, with a checkpoint between pieces.

    `keep` is held until the body has been sent (a shared `_Body`).
    """
    comp = zlib.compressobj(6, zlib.DEFLATED, 31) if gzip else None
    buf: list[bytes] = []
    size = 0
    for chunk in chunks:
        b = chunk.encode() if isinstance(chunk, str) else chunk
        buf.append(b)
        size += len(b)
        if size >= _CHUNK_BYTES:
            data = b"".join(buf)
            buf, size = [], 0
            yield comp.compress(data) if comp else data
            await trio.sleep(0)
    data = b"".join(buf)
    if comp:
        yield comp.compress(data) + comp.flush()
    elif data:
        yield data


def _wants_gzip() -> bool:
    return negotiation.wants_gzip(request.headers.get("Accept-Encoding"))


class _App(QuartTrio):
    async def make_default_options_response(self) -> Response:
        """OPTIONS: 204 with the methods the path allows, no body."""
        adapter = request_ctx.url_adapter
        methods = sorted(adapter.allowed_methods()) if adapter is not None else ["GET", "OPTIONS"]
        return Response("", status=204, headers={"Allow": ", ".join(methods)})


def sd_target(proxy: HttpServices) -> str:
    """The host:port /sd gives Prometheus: --advertise-http-addr, else the bound address (the
    machine's host name when bound to all interfaces, where the bound address is not dialable)."""
    cfg = proxy.config
    if cfg.advertise_http_addr is not None:
        return cfg.advertise_http_addr
    host, port = cfg.http_host, cfg.http_port
    bound = proxy.http_bound()
    if bound is not None:
        host, port = bound
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _collect_headers(results: list[AgentResult], duration: float) -> dict[str, str]:
    missed = [r.meta.agent_id for r in results if not r.up]
    headers = {
        "X-Fodc-Agents-Asked": str(len(results)),
        "X-Fodc-Agents-Answered": str(len(results) - len(missed)),
        "X-Fodc-Collect-Duration-Seconds": f"{duration:.6f}",
    }
    if missed:
        shown = ",".join(missed[:20]) + (",..." if len(missed) > 20 else "")
        headers["X-Fodc-Agents-Missed"] = shown
    return headers


def create_app(proxy: HttpServices) -> QuartTrio:
    """Build the app over a proxy's `HttpServices`. Every error answers JSON {"error": ...}."""
    app = _App("fodcproxy")
    app.config["RESPONSE_TIMEOUT"] = proxy.config.http_write_timeout
    app.config["BODY_TIMEOUT"] = proxy.config.http_read_timeout
    app.config["MAX_CONTENT_LENGTH"] = 64 * 1024
    hub = proxy.hub
    cfg = proxy.config

    @app.errorhandler(FodcError)
    async def _fodc_error(exc: FodcError) -> Response:
        return _error(exc.http_status, exc.message)

    @app.errorhandler(HTTPException)
    async def _http_error(exc: HTTPException) -> Response:
        code = exc.code or 500
        if code == 404:
            msg = (f"no such path {request.path!r}: try /metrics, /metrics-windows, /cluster, "
                   "/cluster/config, /cluster/topology, /cluster/lifecycle, /cluster/nodes/<agent_id> (DELETE), "
                   "/diagnostics, /pressure-profiles, /sd, /status, /health, or / for the console")
        elif code == 405:
            allowed = sorted(set(getattr(exc, "valid_methods", None) or ["GET"]) - {"HEAD", "OPTIONS"})
            msg = f"{request.method} is not allowed on {request.path}: use {' or '.join(allowed)}"
            resp = _error(code, msg)
            resp.headers["Allow"] = ", ".join(sorted(set(allowed) | {"OPTIONS"}))
            return resp
        else:
            msg = exc.description or exc.name
        return _error(code, msg)

    @app.errorhandler(Exception)
    async def _crash(exc: Exception) -> Response:
        log.exception("HTTP %s %s failed", request.method, request.path)
        return _error(500, "internal error in the proxy (see its log)")

    # Requests answered from the same collection (concurrent identical scrapes share one fan-out)
    # share its rendered body too; held only while one of them still streams it.
    bodies: weakref.WeakValueDictionary[Any, _Body] = weakref.WeakValueDictionary()

    async def metrics_body(key: Any, results: list[AgentResult], openmetrics: bool,
                           schema: bool = False) -> _Body:
        body = bodies.get(key)
        if body is not None and body.results is results:
            await body.done.wait()
            if body.chunks is not None:
                return body
        body = bodies[key] = _Body(results)
        try:
            batches = [exposition.AgentBatch(r.meta, r.samples, r.up, r.duration,
                                             *diagnostic_counts(hub, r.meta.agent_id))
                       for r in results]
            rendering = exposition.Rendering(batches, openmetrics=openmetrics,
                                             tail=proxy.metrics.render(openmetrics=openmetrics)
                                             + (await schema_gauges(openmetrics) if schema
                                                else ""),
                                             cache=proxy.exposition_cache)
            # In steps, so /health and the gRPC side stay prompt while 100k samples render.
            for _ in rendering.steps():
                await trio.lowlevel.checkpoint()
            chunks = []
            for chunk in rendering.chunks():
                chunks.append(chunk.encode())
                await trio.lowlevel.checkpoint()
            body.chunks = chunks
        finally:
            body.done.set()
        return body

    collect_log = CollectLog()

    async def schema_gauges(openmetrics: bool) -> str:
        collector = proxy.lifecycle
        if collector is None:
            return ""
        return await collector.schema_metrics(openmetrics=openmetrics)

    def known_hosts() -> set[str]:
        return {e.meta.ip for e in proxy.registry if e.meta.ip}

    def selection() -> NodeSelection:
        return NodeSelection.from_query(request.args, known_hosts=known_hosts())

    def select() -> tuple[list[AgentEntry], NodeSelection]:
        chosen = selection()
        return hub.select(chosen.matches), chosen

    async def collect(entries: list[AgentEntry], window: Any, key: Any) -> tuple[list[AgentResult], float]:
        start = trio.current_time()
        results = await hub.collect(entries, window, timeout=deadline(), key=key)
        duration = trio.current_time() - start
        collect_log.record(results, at=time.time())
        if len(collect_log.last_answer) > 2 * len(proxy.registry) + 100:
            collect_log.forget_except({e.agent_id for e in proxy.registry})
        return results, duration

    def deadline() -> float:
        return query.parse_scrape_timeout(
            request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"),
            default=cfg.collect_timeout)

    @app.before_request
    async def _authorize() -> Response | None:
        # /health is for probes; the console's page and assets hold no data (it asks for the token);
        # OPTIONS answers only which methods a path allows.
        if (cfg.http_token is None or request.method == "OPTIONS"
                or request.path in ("/health", "/") or request.path.startswith("/ui/")):
            return None
        if bearer_matches(request.headers.get("Authorization"), cfg.http_token):
            return None
        resp = _error(401, "missing or wrong token: send 'Authorization: Bearer <token>' with the "
                           "token of the proxy's --http-token-file (/health and the console page "
                           "need none)")
        resp.headers["WWW-Authenticate"] = 'Bearer realm="fodcproxy"'
        return resp

    @app.route("/health", methods=["GET"])
    async def health() -> Response:
        query.check_unknown(_params(), frozenset())
        stats = proxy.registry.statistics()
        # Always 200 while serving: it is the liveness probe. Offline agents make it "degraded".
        return _json(documents.Health(
            status="degraded" if stats.offline else "ok",
            agents_online=stats.online,
            agents_offline=stats.offline,
            agents_total=stats.online + stats.offline,
            uptime_seconds=round(time.time() - proxy.started_at, 3),
        ))

    @app.route("/metrics", methods=["GET"])
    async def metrics() -> Response:
        query.check_unknown(_params(), query.SELECTION_PARAMS)
        entries, chosen = select()
        openmetrics = negotiation.wants_openmetrics(request.headers.get("Accept"))
        key = ("latest", chosen)
        results, duration = await collect(entries, LATEST, key)
        # The schema verdicts are cluster-wide: only an unfiltered /metrics shows them (upstream).
        body = await metrics_body((key, openmetrics), results, openmetrics,
                                  schema=not chosen.narrowed)
        gzip = _wants_gzip()
        headers = _collect_headers(results, duration)
        if gzip:
            headers["Content-Encoding"] = "gzip"
        headers["Vary"] = "Accept, Accept-Encoding"
        ctype = exposition.CONTENT_TYPE_OPENMETRICS if openmetrics else exposition.CONTENT_TYPE_TEXT
        return Response(_stream(body.chunks or [], gzip, keep=body), content_type=ctype,
                        headers=headers)

    @app.route("/metrics-windows", methods=["GET"])
    async def metrics_windows() -> Response:
        params = _params()
        query.check_unknown(params, query.SELECTION_PARAMS | query.WINDOW_PARAMS)
        window = query.window_from_query(params, max_window=cfg.max_query_window,
                                          now=time.time())
        entries, chosen = select()
        results, duration = await collect(entries, window, (window, chosen))
        groups = [(r.meta, r.samples if isinstance(r.samples, DigestedSamples)
                   else convert.samples_from_proto(r.samples)) for r in results if r.up]
        rendering = windows.WindowsRendering(groups, now=time.time(), cache=proxy.windows_cache)
        for _ in rendering.steps():
            await trio.lowlevel.checkpoint()
        chunks = rendering.chunks()  # written as the body streams out
        gzip = _wants_gzip()
        headers = _collect_headers(results, duration)
        if gzip:
            headers["Content-Encoding"] = "gzip"
        return Response(_stream(chunks, gzip), content_type=JSON, headers=headers)

    @app.route("/cluster", methods=["GET"])
    async def cluster() -> Response:
        query.check_unknown(_params(), query.SELECTION_PARAMS)
        entries, _ = select()
        nodes = [_node_view(proxy, e) for e in entries]
        return _json(topology.cluster_json(nodes, now=time.time()))

    @app.route("/cluster/topology", methods=["GET"])
    async def cluster_topology() -> Response:
        """The cluster as the selected pod agents' nodes see it (upstream's endpoint and keys):
        each such agent is asked on its StreamClusterTopology under the collect deadline; nodes
        are merged by `metadata.name`, calls by `id`, and each node whose `pod_name` label names
        a registered agent gets that agent's `status` and `last_heartbeat`. Headers say which
        agents were asked and which answered."""
        query.check_unknown(_params(), query.SELECTION_PARAMS)
        entries, _ = select()
        reports = await hub.collect_reports(entries, TopologyStream, timeout=deadline())
        wall = proxy.registry.wall
        agents = {e.pod_name: (e.status.value, wall(e.last_heartbeat))
                  for e in proxy.registry if e.pod_name}
        doc = topology.reported_topology_json([r.report for r in reports if r.report is not None],
                                              agents)
        response = _json(doc)
        missed = [r.entry.agent_id for r in reports if r.report is None]
        response.headers["X-Fodc-Agents-Asked"] = str(len(reports))
        response.headers["X-Fodc-Agents-Answered"] = str(len(reports) - len(missed))
        if missed:
            response.headers["X-Fodc-Agents-Missed"] = ",".join(missed)
        return response

    @app.route("/cluster/config", methods=["GET"])
    async def cluster_config() -> Response:
        """Configurations of the selected nodes, and the inconsistencies that involve them.

        Nodes are compared with every node of their role, selected or not (a filter must not
        hide that the selected node differs from its peers); then only the inconsistencies
        in which a selected node takes part are shown.
        """
        query.check_unknown(_params(), query.SELECTION_PARAMS)
        chosen = selection()
        every = hub.select(lambda meta: True)
        doc = topology.config_json([_node_view(proxy, e) for e in every])
        if not chosen.narrowed:
            return _json(doc)
        ids = {e.agent_id for e in every if chosen.matches(e.meta)}
        doc["configurations"] = [c for c in doc["configurations"] if c["agent_id"] in ids]
        doc["inconsistencies"] = [
            i for i in doc["inconsistencies"]
            if any(node in ids for value in i["values"] for node in value["nodes"])]
        return _json(doc)

    @app.route("/cluster/nodes/<path:agent_id>", methods=["DELETE"])
    async def remove_node(agent_id: str) -> Response:
        """Unregister an agent now (the seed's UnregisterAgent). Its streams end with
        FAILED_PRECONDITION saying so; an agent still running registers again."""
        query.check_unknown(_params(), frozenset())
        entry = proxy.registry.get(agent_id)
        if entry is None:
            shown = agent_id if len(agent_id) <= 64 else agent_id[:61] + "..."
            return _error(404, f"no agent {shown!r} is registered: see GET /cluster for the "
                               "node_id of each agent")
        was = entry.status.value
        peer = request.remote_addr or "?"
        hub.remove(agent_id, reason=f"removed by an operator over HTTP from {peer}")
        log.info("agent %s removed over HTTP by %s (was %s)", agent_id, peer, was)
        return _json(documents.NodeRemoved(agent_id=agent_id, removed=True, status_before=was))

    @app.route("/status", methods=["GET"])
    async def status() -> Response:
        """A small JSON summary for the console (docs/console.md): agents by status, each
        agent's up/duration in a latest collection (shared with /metrics), proxy counters."""
        query.check_unknown(_params(), query.SELECTION_PARAMS)
        entries, chosen = select()
        results, duration = await collect(entries, LATEST, ("latest", chosen))
        return _json(status_json(proxy, results, duration, collect_log, now=time.time()),
                     headers=_collect_headers(results, duration))

    @app.route("/sd", methods=["GET"])
    async def service_discovery() -> Response:
        """Prometheus HTTP service discovery: one target group per agent, scraped through us.

        Each group's target is this proxy (`sd_target`: --advertise-http-addr, else the bound
        address; never the client's Host header, which a client controls) with
        `__param_agent_id`, so a scrape of it is `GET /metrics?agent_id=<id>`: a fleet of
        Prometheus servers can shard the cluster with hashmod on `__meta_fodc_agent_id`.
        """
        query.check_unknown(_params(), query.SELECTION_PARAMS)
        entries, _ = select()
        target = sd_target(proxy)
        groups = []
        for e in entries:
            labels = {
                "__meta_fodc_agent_id": e.agent_id,
                "__meta_fodc_node_role": e.role,
                "__meta_fodc_status": e.status.value,
                "__param_agent_id": e.agent_id,
                "__metrics_path__": "/metrics",
            }
            if e.pod_name:
                labels["__meta_fodc_pod_name"] = e.pod_name
            else:
                labels["__meta_fodc_node_ip"] = e.meta.ip
                labels["__meta_fodc_node_port"] = str(e.meta.port)
            for k, v in e.labels:
                labels[f"__meta_fodc_node_label_{k}"] = v
            groups.append({"targets": [target], "labels": labels})
        return _json(groups)

    register_lifecycle(app, proxy, selection)
    register_diagnostics(app, proxy, select=select, deadline=deadline)
    register_ui(app)
    return app
