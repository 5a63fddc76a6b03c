"""The agent's own figures as samples, answered beside the node's (sans-IO).

`fodc_agent_up` on the proxy says whether the *agent* answered; it stays 1 while the node behind
the agent is down. These series say how the agent itself is doing: whether its last scrape of
each endpoint worked, how long it took, when one last worked, how full the flight recorder is and
how often the agent had to reconnect. The agent adds them to every answer (see
`fodcproxy.agent.main.Agent`), so they reach the proxy's `/metrics` like any node series, with
the same `agent_id` and `node_*` labels.

Names: the proxy renames agent series named `fodc_agent_*` or `fodc_proxy_*` to
`exported_fodc_…` (those names are its own, e.g. `fodc_agent_up`), so these use the prefixes
`fodc_scrape_`, `fodc_recorder_` and `fodc_reconnects_`, which pass through unchanged and clash
with nothing the proxy or a BanyanDB node writes. The list, with meanings, is in docs/agent.md.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping

from fodcproxy.agent.recorder import RecorderStatistics
from fodcproxy.agent.scrape import WatchdogStatistics
from fodcproxy.core.model import MetricType, Sample

SCRAPE_UP = "fodc_scrape_up"
SCRAPE_DURATION = "fodc_scrape_duration_seconds"
SCRAPE_LAST_SUCCESS = "fodc_scrape_last_success_timestamp_seconds"
RECORDER_BYTES = "fodc_recorder_bytes"
RECORDER_SERIES = "fodc_recorder_series"
RECORDER_POINTS = "fodc_recorder_points"
RECONNECTS = "fodc_reconnects_total"

NAMES = (SCRAPE_UP, SCRAPE_DURATION, SCRAPE_LAST_SUCCESS, RECORDER_BYTES, RECORDER_SERIES,
         RECORDER_POINTS, RECONNECTS)
"""Every series name `self_samples` can produce."""


def endpoint_label(url: str) -> str:
    """`url` as the `endpoint` label: without user and password, if the URL carries them."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def self_samples(watchdog: WatchdogStatistics, recorder: RecorderStatistics, *,
                 connects: int, now: float | None, labels: Mapping[str, str] | None = None,
                 endpoint_labels: Mapping[str, Mapping[str, str]] | None = None) -> list[Sample]:
    """The agent's figures as samples stamped `now` (Unix seconds; None: unstamped).

    `labels` go on every sample (the agent's stamp: `node_role`, `pod_name`, `node_<k>`);
    `endpoint_labels[url]`, when given, replace them on that endpoint's scrape series (the stamp
    with the endpoint's `container_name`).

    `connects` is the number of connection attempts to the proxy so far (the client's
    `statistics().connects`); reconnects are the attempts after the first. Endpoints not scraped
    yet get no scrape series; `fodc_scrape_last_success_timestamp_seconds` appears for an
    endpoint once one of its scrapes has worked.
    """
    out: list[Sample] = []
    base = dict(labels or {})
    per_endpoint = endpoint_labels or {}

    def add(name: str, labels: dict[str, str], value: float, help: str,
            mtype: MetricType = MetricType.GAUGE) -> None:
        out.append(Sample(name, labels, float(value), help, int(mtype), now))

    for url in watchdog.scrapes_failed:
        if url not in watchdog.last_duration:
            continue  # not scraped yet
        scrape_labels = {**per_endpoint.get(url, base), "endpoint": endpoint_label(url)}
        up = watchdog.last_error.get(url) is None
        add(SCRAPE_UP, scrape_labels, 1.0 if up else 0.0,
            "1 if the agent's last scrape of the node's endpoint worked, 0 otherwise.")
        add(SCRAPE_DURATION, scrape_labels, watchdog.last_duration[url],
            "Seconds the agent's last scrape of the node's endpoint took.")
        if url in watchdog.last_success:
            add(SCRAPE_LAST_SUCCESS, scrape_labels, watchdog.last_success[url],
                "Unix time at which the agent last scraped the node's endpoint successfully.")
    add(RECORDER_BYTES, base, recorder.size_bytes,
        "Bytes the agent's flight recorder holds (its estimate, counted against its budget).")
    add(RECORDER_SERIES, base, recorder.series, "Series in the agent's flight recorder.")
    add(RECORDER_POINTS, base, recorder.points, "Points in the agent's flight recorder.")
    add(RECONNECTS, base, max(0, connects - 1),
        "Connection attempts to the proxy after the first (after a lost or refused connection).",
        MetricType.COUNTER)
    return out
