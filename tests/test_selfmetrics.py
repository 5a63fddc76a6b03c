"""`fodcproxy.agent.selfmetrics`: the agent's own figures as samples. Plain synchronous tests; the
way they reach the proxy's /metrics is tested end to end in test_agent.py."""

from __future__ import annotations

from fodcproxy.agent.recorder import RecorderStatistics
from fodcproxy.agent.scrape import WatchdogStatistics
from fodcproxy.agent.selfmetrics import NAMES, endpoint_label, self_samples
from fodcproxy.core.model import MetricType

A = "http://127.0.0.1:2121/metrics"
B = "http://user:secret@10.0.0.1:2121/metrics"
C = "http://10.0.0.2:2121/metrics"
RECORDER = RecorderStatistics(series=3, points=30, size_bytes=4096, budget_bytes=1 << 20,
                              evicted_points=0, evicted_series=0)


def test_figures_per_endpoint_and_for_the_agent() -> None:
    watchdog = WatchdogStatistics(
        polls=5, scrapes_ok={A: 5, B: 1, C: 0}, scrapes_failed={A: 0, B: 4, C: 0},
        last_error={A: None, B: "refused", C: None},
        last_duration={A: 0.01, B: 0.5}, last_success={A: 100.0, B: 60.0})
    samples = self_samples(watchdog, RECORDER, connects=3, now=123.0)
    got = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in samples}
    b = (("endpoint", "http://10.0.0.1:2121/metrics"),)  # the password stays out of the label
    assert got == {
        ("fodc_scrape_up", (("endpoint", A),)): 1.0,
        ("fodc_scrape_duration_seconds", (("endpoint", A),)): 0.01,
        ("fodc_scrape_last_success_timestamp_seconds", (("endpoint", A),)): 100.0,
        ("fodc_scrape_up", b): 0.0,
        ("fodc_scrape_duration_seconds", b): 0.5,
        ("fodc_scrape_last_success_timestamp_seconds", b): 60.0,
        # C was not scraped yet: no scrape series for it.
        ("fodc_recorder_bytes", ()): 4096.0,
        ("fodc_recorder_series", ()): 3.0,
        ("fodc_recorder_points", ()): 30.0,
        ("fodc_reconnects_total", ()): 2.0,
    }
    assert all(s.timestamp == 123.0 and s.description for s in samples)
    assert {s.name for s in samples} == set(NAMES)
    types = {s.name: s.type for s in samples}
    assert types["fodc_reconnects_total"] == MetricType.COUNTER
    assert types["fodc_scrape_up"] == MetricType.GAUGE


def test_an_endpoint_that_never_worked_has_no_last_success() -> None:
    watchdog = WatchdogStatistics(polls=1, scrapes_ok={A: 0}, scrapes_failed={A: 1},
                                  last_error={A: "refused"}, last_duration={A: 0.2})
    names = {s.name for s in self_samples(watchdog, RECORDER, connects=0, now=None)}
    assert "fodc_scrape_up" in names and "fodc_scrape_last_success_timestamp_seconds" not in names


def test_names_survive_the_proxys_renaming() -> None:
    # The proxy prefixes agent series named fodc_agent_* / fodc_proxy_* with exported_.
    assert not [n for n in NAMES if n.startswith(("fodc_agent_", "fodc_proxy_"))]


def test_endpoint_label() -> None:
    assert endpoint_label(A) == A
    assert endpoint_label("https://u:p@[::1]:9/m?x=1") == "https://[::1]:9/m?x=1"
