"""The agent as a whole (`fodcproxy.agent.main`): flags, and end to end against a real proxy.

Test policy:
- Every test that touches a socket runs its body under `trio.fail_after(...)`: a hang fails fast.
- Traffic goes to 127.0.0.1 only: a real exporter started here (trio + h11 serving what
  prometheus-client's `generate_latest` renders) and proxies from `fodcproxy.testing.open_proxy`.
- Nothing sleeps and hopes: tests wait on events (`nursery.start`, `Watchdog.wait_polls`,
  `AgentClient.wait_registered`) or poll a condition (`helpers.wait_for`) that `fail_after`
  bounds. The reconnect backoff is timed on virtual time, in test_agent_backoff.py.
- Nothing asserts on wall-clock speed; durations worth knowing are printed (`pytest -s`).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import attrs
import h11
import pytest
import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from prometheus_client.parser import text_string_to_metric_families

from fodcproxy.agent import selfmetrics
from fodcproxy.agent.main import (
    DEFAULT_METRICS_ENDPOINT,
    Agent,
    AgentConfig,
    NodeConfigWatcher,
    agent_config_from_args,
    agent_main,
    build_parser,
    local_address_towards,
    parse_labels,
    parse_proxy_addr,
    parse_size,
    run_agent,
)
from fodcproxy.core.model import TimeWindow
from fodcproxy.core.registry import AgentStatus
from fodcproxy.core.windows import parse_rfc3339, rfc3339
from fodcproxy.errors import ConfigError
from fodcproxy.testing import ProxyHandle, open_proxy
from fodcproxy.testing.http import http_get

from helpers import wait_for

POLL = 0.2
NODE_LABELS = {"zone": "a", "rack": "r1"}
ENRICHMENT = {"node_role": "liaison", "node_ip": "127.0.0.1", "node_port": "17912",
              "node_zone": "a", "node_rack": "r1"}


# --- a node's metrics endpoint -------------------------------------------------------------------


class NodeExporter:
    """A real Prometheus endpoint on 127.0.0.1: `generate_latest` of its own registry at /metrics.

    `start(nursery)` listens on a port picked by the OS; `stop()` closes the listener, so
    connections are refused (a node that is down). Change the metrics at any time.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("requests", "Requests served", ["method"], registry=self.registry)
        self.requests.labels("get").inc(3)
        self.temperature = Gauge("temperature", "Room temperature", registry=self.registry)
        self.temperature.set(21.5)
        self.latency = Histogram("latency_seconds", "Request latency", buckets=(0.1, 1.0),
                                 registry=self.registry)
        for value in (0.05, 0.5, 2.0):
            self.latency.observe(value)
        self.port = 0
        self.scrapes = 0
        self._scope: trio.CancelScope | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def start(self, nursery: trio.Nursery) -> None:
        self._scope = trio.CancelScope()
        scope = self._scope

        async def serve(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await trio.serve_tcp(self._handle, 0, host="127.0.0.1", task_status=task_status)

        listeners = await nursery.start(serve)
        self.port = listeners[0].socket.getsockname()[1]

    def stop(self) -> None:
        assert self._scope is not None
        self._scope.cancel()

    async def _handle(self, stream: trio.SocketStream) -> None:
        async with stream:
            try:
                await self._exchange(stream)
            except trio.BrokenResourceError:
                pass  # the scraper went away mid-exchange (an agent stopped): not our failure

    async def _exchange(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(our_role=h11.SERVER)
        target = b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                target = event.target
            elif isinstance(event, h11.EndOfMessage):
                break
        if target == b"/metrics":
            self.scrapes += 1
            status, body = 200, generate_latest(self.registry)
        else:
            status, body = 404, b""
        headers = [("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body)))]
        data = conn.send(h11.Response(status_code=status, headers=headers))
        await stream.send_all(data + conn.send(h11.Data(data=body))
                              + conn.send(h11.EndOfMessage()))


@pytest.fixture
async def exporter(nursery: trio.Nursery) -> NodeExporter:
    node = NodeExporter()
    await node.start(nursery)
    return node


# --- helpers -------------------------------------------------------------------------------------


def agent_config(proxy: ProxyHandle | int, endpoints: tuple[str, ...], **overrides: Any) -> AgentConfig:
    port = proxy if isinstance(proxy, int) else proxy.addresses.grpc_port
    settings: dict[str, Any] = {
        "node_role": "liaison", "node_ip": "127.0.0.1", "node_port": 17912,
        "node_labels": NODE_LABELS, "proxy_host": "127.0.0.1", "proxy_port": port,
        "metrics_endpoints": endpoints, "poll_metrics_interval": POLL,
        "flight_recorder_retention": 60.0, "reconnect_interval": 0.1, "reconnect_max": 0.5,
    }
    settings.update(overrides)
    return AgentConfig(**settings)


async def get_json(url: str) -> Any:
    response = await http_get(url)
    assert response.status == 200, response.text
    return response.json()


def find(series: list[dict[str, Any]], name: str, **labels: str) -> dict[str, Any]:
    """The one series of `/metrics-windows` with this name whose labels include `labels`."""
    found = [s for s in series
             if s["name"] == name and labels.items() <= s["labels"].items()]
    assert len(found) == 1, (name, labels, [s["name"] for s in series])
    return found[0]


def times_of(series: dict[str, Any]) -> list[float]:
    return [parse_rfc3339(p["timestamp"]) for p in series["data"]]


def exposition_types(text: str) -> dict[str, str]:
    """`# TYPE` lines of a Prometheus text exposition: family -> type."""
    types = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
    return types


def sample_lines(text: str, name: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(name + "{")]


# --- flags ---------------------------------------------------------------------------------------


def parse(*argv: str) -> AgentConfig:
    return agent_config_from_args(build_parser().parse_args(["--node-role", "liaison", *argv]))


def test_flag_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "banyandb-liaison-0")  # as Kubernetes sets it
    cfg = parse()
    assert (cfg.proxy_host, cfg.proxy_port) == ("localhost", 17900)
    assert (cfg.proxy_tls, cfg.proxy_tls_ca_file, cfg.proxy_token_file) == (False, None, None)
    assert cfg.node_role == "liaison"
    assert cfg.is_pod and cfg.pod_name == "banyandb-liaison-0" and cfg.container_names == ()
    assert cfg.node_ip is None
    assert cfg.node_port == 17912
    address = parse("--node-port", "17912")  # an address agent; POD_NAME is not its identity
    assert not address.is_pod and address.pod_name is None
    assert address.node_ip is None  # found at start: the local address towards the proxy
    assert dict(cfg.node_labels) == {}
    assert cfg.heartbeat_interval == 10.0
    assert cfg.reconnect_interval == 5.0
    assert cfg.reconnect_max == 60.0
    assert cfg.metrics_endpoints == (DEFAULT_METRICS_ENDPOINT,)
    assert DEFAULT_METRICS_ENDPOINT == "http://localhost:2121/metrics"
    assert cfg.poll_metrics_interval == 10.0
    assert cfg.scrape_timeout is None
    assert cfg.flight_recorder_budget == 64 * 1024 * 1024
    assert cfg.flight_recorder_max_points is None
    assert cfg.flight_recorder_retention == 600.0
    assert cfg.node_config_file is None and cfg.node_pid is None
    assert cfg.grpc_max_msg_size == 4194304
    assert cfg.log_level == "info"


def test_flag_values() -> None:
    cfg = parse(
        "--proxy-addr", "[::1]:18000", "--node-ip", "10.0.0.7", "--node-port", "17913",
        "--node-labels", "zone=us-east-1a, rack=r7,empty=", "--heartbeat-interval", "2s",
        "--reconnect-interval", "250ms", "--reconnect-max", "30s",
        "--metrics-endpoint", "http://127.0.0.1:2121/metrics",
        "--metrics-endpoint", "http://127.0.0.1:9100/metrics?x=1",
        "--poll-metrics-interval", "1m", "--scrape-timeout", "5s",
        "--flight-recorder-budget", "16MiB", "--flight-recorder-max-points", "100000",
        "--flight-recorder-retention", "1h30m", "--node-config-file", "/etc/banyandb/node.toml",
        "--node-pid", "4242", "--grpc-max-msg-size", "1MiB", "--log-level", "debug",
        "--proxy-tls-ca-file", "/etc/fodc/ca.pem", "--proxy-token-file", "/etc/fodc/token",
    )
    assert (cfg.proxy_tls, cfg.proxy_tls_ca_file) == (True, "/etc/fodc/ca.pem")  # CA implies TLS
    assert cfg.proxy_token_file == "/etc/fodc/token"
    assert parse("--proxy-tls", "--node-port", "1").proxy_tls
    assert (cfg.proxy_host, cfg.proxy_port) == ("::1", 18000)
    assert (cfg.node_ip, cfg.node_port) == ("10.0.0.7", 17913)
    assert dict(cfg.node_labels) == {"zone": "us-east-1a", "rack": "r7", "empty": ""}
    assert (cfg.heartbeat_interval, cfg.reconnect_interval, cfg.reconnect_max) == (2, 0.25, 30)
    assert cfg.metrics_endpoints == ("http://127.0.0.1:2121/metrics",
                                     "http://127.0.0.1:9100/metrics?x=1")
    assert (cfg.poll_metrics_interval, cfg.scrape_timeout) == (60, 5)
    assert cfg.flight_recorder_budget == 16 * 1024 * 1024
    assert cfg.flight_recorder_max_points == 100000
    assert cfg.flight_recorder_retention == 5400
    assert (cfg.node_config_file, cfg.node_pid) == ("/etc/banyandb/node.toml", 4242)
    assert cfg.grpc_max_msg_size == 1024 * 1024
    assert cfg.log_level == "debug"


def test_pod_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    cfg = parse("--pod-name", "banyandb-data-hot-0", "--container-names", "data, lifecycle",
                "--metrics-endpoint", "http://127.0.0.1:2121/metrics",
                "--metrics-endpoint", "http://127.0.0.1:17913/metrics")
    assert cfg.is_pod and cfg.pod_name == "banyandb-data-hot-0" and cfg.node_ip is None
    assert cfg.container_names == ("data", "lifecycle")
    assert cfg.container_name("http://127.0.0.1:17913/metrics") == "lifecycle"
    repeated = parse("--pod-name", "p", "--container-names", "data", "--container-names",
                     "lifecycle", "--metrics-endpoint", "http://a:1/m", "--metrics-endpoint",
                     "http://b:1/m")
    assert repeated.container_names == ("data", "lifecycle")
    monkeypatch.setenv("POD_NAME", "from-env")
    assert parse().pod_name == "from-env"
    assert parse("--pod-name", "from-flag").pod_name == "from-flag"  # the flag wins
    assert parse("--node-ip", "10.0.0.1").pod_name is None  # an address agent ignores POD_NAME
    # An address agent may name its endpoints' containers too: stamped on their series.
    address = parse("--node-ip", "10.0.0.1", "--container-names", "data")
    assert not address.is_pod and address.container_name(DEFAULT_METRICS_ENDPOINT) == "data"


def test_registration_message_pod_and_address() -> None:
    from fodcproxy.agent.client import AgentClient, AgentSpec

    async def source(window: TimeWindow) -> list[Any]:
        return []

    pod = AgentSpec(role="ROLE_DATA", labels={"type": "hot"}, pod_name="banyandb-data-hot-0",
                    container_names=["data", "lifecycle"])
    req = AgentClient("127.0.0.1", 1, pod, source)._registration()
    assert not req.HasField("primary_address")
    assert (req.node_role, dict(req.labels), req.pod_name, list(req.container_names)) == (
        "ROLE_DATA", {"type": "hot"}, "banyandb-data-hot-0", ["data", "lifecycle"])
    address = AgentSpec(role="liaison", ip="10.0.0.1", port=17912, labels={"zone": "a"})
    req = AgentClient("127.0.0.1", 1, address, source)._registration()
    assert (req.primary_address.ip, req.primary_address.port) == ("10.0.0.1", 17912)
    assert (req.pod_name, list(req.container_names)) == ("", [])
    assert (pod.describe(), address.describe()) == ("ROLE_DATA pod banyandb-data-hot-0",
                                                    "liaison 10.0.0.1:17912")
    with pytest.raises(ValueError, match="pod_name"):
        AgentSpec(role="liaison")


@pytest.mark.parametrize("text, expected", [
    ("4194304", 4194304), ("64MiB", 64 * 1024**2), ("100MB", 100 * 1000**2), ("1gib", 1024**3),
    ("512 KiB", 512 * 1024), ("2KB", 2000), ("7B", 7),
])
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text, flag="--x") == expected


@pytest.mark.parametrize("text", ["", "MiB", "-1", "1.5MiB", "64 MiBs", "10QB", "0x10"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="^--x: "):
        parse_size(text, flag="--x")


def test_parse_labels_and_proxy_addr() -> None:
    assert parse_labels("") == {}
    assert parse_labels("a=b=c,d=") == {"a": "b=c", "d": ""}
    assert parse_proxy_addr("proxy.example:17900") == ("proxy.example", 17900)
    assert parse_proxy_addr("[fe80::1]:1") == ("fe80::1", 1)


BAD_FLAGS = [
    (["--pod-name", "p", "--node-ip", "10.0.0.1"], "--pod-name"),
    (["--pod-name", "p", "--node-port", "17912"], "--pod-name"),
    (["--pod-name", "bad pod/name"], "--pod-name"),
    (["--pod-name", "p", "--container-names", "a,b"], "--container-names"),  # 1 endpoint
    (["--pod-name", "p", "--container-names", "a", "--container-names", "b",
      "--metrics-endpoint", "http://127.0.0.1:2121/metrics"], "--container-names"),
    (["--pod-name", "p", "--container-names", "bad name"], "--container-names"),
    (["--pod-name", "p", "--container-names", "a,b", "--metrics-endpoint", "http://h:1/m",
      "--metrics-endpoint", "http://h:1/m"], "--metrics-endpoint"),
    (["--node-labels", "zone"], "--node-labels"),
    (["--node-labels", "zone=a,zone=b"], "--node-labels"),
    (["--node-labels", "bad-key=x"], "--node-labels"),
    (["--node-labels", "=x"], "--node-labels"),
    (["--node-port", "0"], "--node-port"),
    (["--node-port", "65536"], "--node-port"),
    (["--node-port", "http"], "--node-port"),
    (["--node-ip", "not an ip!"], "--node-ip"),
    (["--node-role", "data/node"], "--node-role"),
    (["--proxy-addr", "localhost"], "--proxy-addr"),
    (["--proxy-addr", ":17900"], "--proxy-addr"),
    (["--proxy-addr", "localhost:0"], "--proxy-addr"),
    (["--heartbeat-interval", "10"], "--heartbeat-interval"),
    (["--heartbeat-interval", "0s"], "--heartbeat-interval"),
    (["--reconnect-interval=-1s"], "--reconnect-interval"),
    (["--reconnect-interval", "5s", "--reconnect-max", "1s"], "--reconnect-max"),
    (["--metrics-endpoint", "https://127.0.0.1:2121/metrics"], "--metrics-endpoint"),
    (["--metrics-endpoint", "127.0.0.1:2121/metrics"], "--metrics-endpoint"),
    (["--metrics-endpoint", "http://127.0.0.1:99999/metrics"], "--metrics-endpoint"),
    (["--poll-metrics-interval", "fast"], "--poll-metrics-interval"),
    (["--scrape-timeout", "11s"], "--scrape-timeout"),
    (["--flight-recorder-budget", "lots"], "--flight-recorder-budget"),
    (["--flight-recorder-budget", "10"], "--flight-recorder-budget"),
    (["--flight-recorder-max-points", "0"], "--flight-recorder-max-points"),
    (["--flight-recorder-retention", "5s"], "--flight-recorder-retention"),
    (["--node-pid", "self"], "--node-pid"),
    (["--grpc-max-msg-size", "100"], "--grpc-max-msg-size"),
    (["--log-level", "loud"], "--log-level"),
]


@pytest.mark.parametrize("argv, flag", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_bad_flag_exits_2_with_one_line_naming_it(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    with pytest.raises(SystemExit) as info:
        agent_main(["--node-role", "liaison", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"python -m fodcproxy agent: error: {flag}: "), err


def test_neither_pod_nor_address_is_an_address_agent_as_before(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    cfg = parse()
    assert not cfg.is_pod and cfg.pod_name is None
    assert cfg.node_ip is None and cfg.node_port == 17912  # the ip is found at start


def test_missing_role_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        agent_main(["--node-ip", "127.0.0.1"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--node-role" in err, err


def test_help_lists_every_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        agent_main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--proxy-addr", "--node-ip", "--node-port", "--node-role", "--node-labels",
                 "--pod-name", "--container-names",
                 "--heartbeat-interval", "--reconnect-interval", "--reconnect-max",
                 "--metrics-endpoint", "--poll-metrics-interval", "--scrape-timeout",
                 "--flight-recorder-budget", "--flight-recorder-retention", "--node-config-file",
                 "--node-pid", "--grpc-max-msg-size", "--log-level"):
        assert flag in out


def test_config_validates_when_built_in_code() -> None:
    with pytest.raises(ConfigError, match="^--flight-recorder-retention: "):
        AgentConfig(node_role="liaison", poll_metrics_interval=10, flight_recorder_retention=10)
    with pytest.raises(ConfigError, match="^--metrics-endpoint: "):
        AgentConfig(node_role="liaison", metrics_endpoints=())


# --- node configuration --------------------------------------------------------------------------


def test_node_config_watcher_reloads_on_change_and_keeps_the_last_good(tmp_path: Any) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"startup_params": {"port": 17912},
                                "runtime_config": {"cache": {"size": "1g"}}}))
    now = [1000.0]
    watcher = NodeConfigWatcher(str(path), pid=os.getpid(), clock=lambda: now[0])
    first = watcher()
    assert first is not None
    assert first.startup_params["port"] == "17912"
    assert first.startup_params["_command"]  # from this process's command line
    assert first.runtime_config == {"cache": {"size": "1g"}}
    assert first.collected_at == 1000.0

    now[0] = 1001.0
    assert watcher() is first  # unchanged file: the same configuration, no reload
    assert watcher.reloads == 0

    path.write_text(json.dumps({"startup_params": {"port": 17913, "_command": "banyand"}}))
    second = watcher()
    assert second is not None and second is not first
    assert second.startup_params["port"] == "17913"
    assert second.startup_params["_command"] == "banyand"  # the file wins over the command line
    assert second.collected_at == 1001.0
    assert watcher.reloads == 1

    path.write_text("{ half written")
    assert watcher() is second  # a broken file keeps the last good configuration
    path.unlink()
    assert watcher() is second


def test_node_config_watcher_refuses_a_bad_first_load(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="^--node-config-file: "):
        NodeConfigWatcher(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="^--node-config-file: "):
        NodeConfigWatcher(str(tmp_path / "bad.json"))


# --- end to end ----------------------------------------------------------------------------------


async def test_end_to_end_windows_cluster_and_metrics(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy:
            # Second real target: the proxy's own /metrics. The role filter selects no agent, so
            # the proxy does not ask this agent for the series it is scraping (no feedback loop).
            own = f"{proxy.http_url}/metrics?role=none"
            agent = await nursery.start(run_agent, agent_config(proxy, (exporter.url, own)))
            agent_id = agent.client.agent_id
            assert agent_id is not None
            await agent.watchdog.wait_polls(4)
            assert agent.watchdog.statistics().scrapes_failed == {exporter.url: 0, own: 0}
            # A series that appears late must not borrow the timestamps of earlier scrapes.
            late = Gauge("late_arrival", "Appears after a few scrapes", registry=exporter.registry)
            late.set(1)
            polls = agent.watchdog.statistics().polls
            await agent.watchdog.wait_polls(polls + 3)

            series = await get_json(f"{proxy.http_url}/metrics-windows?start_time="
                                    + rfc3339(time.time() - 3600))
            enriched = {"agent_id": agent_id, **ENRICHMENT}
            requests = find(series, "requests_total", method="get", **enriched)
            assert requests["type"] == "counter" and requests["description"] == "Requests served"
            assert requests["agent_id"] == agent_id
            assert (requests["ip"], requests["port"]) == ("127.0.0.1", 17912)
            assert {p["value"] for p in requests["data"]} == {3.0}
            assert find(series, "temperature", **enriched)["type"] == "gauge"
            bucket = find(series, "latency_seconds_bucket", le="1.0", **enriched)
            assert bucket["type"] == "histogram"
            assert {p["value"] for p in bucket["data"]} == {2.0}
            assert find(series, "latency_seconds_count", **enriched)["type"] == "histogram"
            proxy_own = find(series, "fodc_proxy_registrations_total", **enriched)
            assert proxy_own["type"] == "counter"
            assert proxy_own["data"][-1]["value"] >= 1

            temperature = times_of(find(series, "temperature", **enriched))
            assert len(temperature) >= 7
            assert temperature == sorted(temperature)
            late_times = times_of(find(series, "late_arrival", **enriched))
            assert 3 <= len(late_times) < len(temperature)
            # Every point of the late series was taken in a scrape that also took a temperature.
            assert set(late_times) <= set(temperature)
            assert late_times == temperature[-len(late_times):]

            # A window answers exactly the recorder's points inside it, timestamps intact.
            start, end = temperature[1] - POLL / 4, temperature[3] + POLL / 4
            window = await get_json(f"{proxy.http_url}/metrics-windows?start_time={rfc3339(start)}"
                                    f"&end_time={rfc3339(end)}")
            assert times_of(find(window, "temperature", **enriched)) == temperature[1:4]
            # The node's own labels: without the agent's stamps (node_role, node_<k>) and the
            # proxy's enrichment, whichever of the two copies of a stamp the proxy shows.
            def own(labels: dict[str, str]) -> frozenset[tuple[str, str]]:
                return frozenset((k, v) for k, v in labels.items()
                                 if re.sub(r"^(exported_)+", "", k) not in enriched)

            recorded: dict[tuple[str, frozenset[tuple[str, str]]], list[float]] = {}
            for sample in agent.recorder.window(TimeWindow(start, end)):
                assert {k: sample.labels[k] for k in ("node_role", "node_zone", "node_rack")} == {
                    "node_role": "liaison", "node_zone": "a", "node_rack": "r1"}  # stamped
                key = (sample.name, own(dict(sample.labels)))
                recorded.setdefault(key, []).append(sample.timestamp or 0.0)
            answered = {(s["name"], own(s["labels"])): times_of(s) for s in window}
            assert answered.keys() == recorded.keys()
            for key, times in answered.items():
                # Each endpoint's scrapes carry their own start time, so compare per series.
                assert len(times) == 3, key
                assert times == pytest.approx(recorded[key], abs=1e-6), key

            cluster = await get_json(f"{proxy.http_url}/cluster")
            assert len(cluster["nodes"]) == 1
            node = cluster["nodes"][0]
            assert node["node_id"] == agent_id
            assert node["node_role"] == "liaison" and node["status"] == "online"
            assert node["labels"] == NODE_LABELS
            assert node["primary_address"] == {"ip": "127.0.0.1", "port": 17912}

            response = await http_get(f"{proxy.http_url}/metrics")
            assert response.status == 200
            types = exposition_types(response.text)
            assert response.text.count("# TYPE ") == len(types)  # one TYPE line per family
            assert types["requests_total"] == "counter"
            assert types["temperature"] == "gauge"
            assert types["latency_seconds"] == "histogram"
            assert types["fodc_proxy_registrations_total"] == "counter"  # the proxy's own
            # The agent's copy of it (scraped from the second target) keeps its type; the proxy
            # may rename it so that it cannot pass for the proxy's own family.
            [copy] = [name for name in types
                      if name != "fodc_proxy_registrations_total"
                      and name.endswith("fodc_proxy_registrations_total")
                      and any(f'agent_id="{agent_id}"' in line
                              for line in sample_lines(response.text, name))]
            assert types[copy] == "counter"
            [line] = sample_lines(response.text, "temperature")
            assert line.endswith(" 21.5")
            for label, value in enriched.items():
                assert f'{label}="{value}"' in line
            [line] = sample_lines(response.text, "requests_total")
            assert 'method="get"' in line and line.endswith(" 3.0")
            assert len(sample_lines(response.text, "latency_seconds_bucket")) == 3

            stats = agent.statistics()
            assert stats.client.registrations == 1 and stats.client.requests_answered >= 3
            node_series = [s for s in series if s["name"] not in selfmetrics.NAMES
                           and not s["name"].startswith("fodc_pressure_")]  # the profiler's
            assert len(node_series) < len(series)  # the agent's own figures came along
            assert stats.recorder.series >= len(node_series) and stats.watchdog.polls >= 7
            agent.stop()


async def test_pod_agent_end_to_end_cluster_and_metrics(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy:
            own = f"{proxy.http_url}/metrics?role=none"  # a second endpoint: the proxy's own
            agent = await nursery.start(run_agent, agent_config(
                proxy, (exporter.url, own), node_ip=None, node_role="ROLE_DATA",
                node_labels={"type": "hot", "zone": "a"}, pod_name="banyandb-data-hot-0",
                container_names=("data", "lifecycle")))
            agent_id = agent.client.agent_id
            assert agent_id is not None and agent_id.startswith("pod-")
            await agent.watchdog.wait_polls(2)

            cluster = await get_json(f"{proxy.http_url}/cluster")
            [node] = cluster["nodes"]
            assert node["node_id"] == agent_id and node["status"] == "online"
            assert node["primary_address"] is None
            assert node["pod_name"] == "banyandb-data-hot-0"
            assert node["container_names"] == ["data", "lifecycle"]
            assert node["node_role"] == "ROLE_DATA" and node["labels"] == {"type": "hot",
                                                                           "zone": "a"}

            response = await http_get(f"{proxy.http_url}/metrics")
            assert response.status == 200
            [line] = sample_lines(response.text, "temperature")
            for label in ('pod_name="banyandb-data-hot-0"', 'container_name="data"',
                          'node_type="hot"', f'agent_id="{agent_id}"'):
                assert label in line, line
            copies = [ln for ln in response.text.splitlines()
                      if "fodc_proxy_registrations_total{" in ln and 'container_name="lifecycle"'
                      in ln]
            assert copies and all('pod_name="banyandb-data-hot-0"' in ln for ln in copies)
            # The agent's own figures carry the stamps too; scrape series their container's.
            [up] = [ln for ln in sample_lines(response.text, "fodc_scrape_up")
                    if f'endpoint="{exporter.url}"' in ln]
            assert 'pod_name="banyandb-data-hot-0"' in up and 'container_name="data"' in up
            [points] = sample_lines(response.text, "fodc_recorder_points")
            assert 'pod_name="banyandb-data-hot-0"' in points and "container_name" not in points
            # The recorder holds the stamps once per series.
            [temperature] = [s for s in agent.recorder.latest() if s.name == "temperature"]
            assert {k: temperature.labels[k] for k in ("node_role", "pod_name", "container_name",
                                                       "node_type", "node_zone")} == {
                "node_role": "ROLE_DATA", "pod_name": "banyandb-data-hot-0",
                "container_name": "data", "node_type": "hot", "node_zone": "a"}
            agent.stop()


async def test_running_agent_stays_within_its_byte_budget(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    # The exporter's 9 series cost ~12.5 KiB (with the node_role, node_zone and node_rack the
    # agent stamps) before any point: room for ~8 polls.
    budget = 13 * 1024 + 512
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy:
            agent = await nursery.start(run_agent, agent_config(
                proxy, (exporter.url,), poll_metrics_interval=0.05,
                flight_recorder_budget=budget))
            sizes = []
            for polls in range(2, 21):
                await agent.watchdog.wait_polls(polls)
                sizes.append(agent.recorder.size_bytes)
            stats = agent.recorder.statistics()
            assert max(sizes) <= budget
            assert stats.evicted_points > 0 and stats.series == 9  # points went, series stayed
            series = await get_json(f"{proxy.http_url}/metrics-windows?start_time={rfc3339(time.time() - 3600)}")
            kept = times_of(find(series, "temperature"))
            assert 2 <= len(kept) < 20  # the oldest points were dropped ...
            [latest] = [s for s in agent.recorder.latest() if s.name == "temperature"]
            assert kept[-1] == pytest.approx(latest.timestamp, abs=1e-6)  # ... never the newest
            agent.stop()


async def test_running_agent_evicts_a_vanished_series_after_the_retention(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    ephemeral = Gauge("ephemeral", "Here for a moment", registry=exporter.registry)
    ephemeral.set(7)
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy:
            agent = await nursery.start(run_agent, agent_config(
                proxy, (exporter.url,), poll_metrics_interval=0.05,
                flight_recorder_retention=0.3))
            await agent.watchdog.wait_polls(3)
            assert any(s.name == "ephemeral" for s in agent.recorder.latest())
            exporter.registry.unregister(ephemeral)
            await wait_for(lambda: agent.recorder.statistics().evicted_series >= 1)
            # Run well past the retention, so that keeping everything would show.
            await agent.watchdog.wait_polls(agent.watchdog.statistics().polls + 12)
            series = await get_json(f"{proxy.http_url}/metrics-windows?start_time={rfc3339(time.time() - 3600)}")
            assert not [s for s in series if s["name"] == "ephemeral"]
            scraped = agent.watchdog.statistics().polls * 0.05
            kept = times_of(find(series, "temperature"))
            # The others keep the retention's worth: at most 0.3s, plus one poll recorded but not
            # yet expired when the proxy asked, plus scheduling slack.
            assert scraped >= 0.9 and kept[-1] - kept[0] <= 0.3 + 0.05 + 0.05
            agent.stop()


async def test_replies_are_chunked_under_the_message_limit(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    many = Gauge("shard_bytes", "Bytes per shard", ["shard", "padding"], registry=exporter.registry)
    for i in range(300):
        many.labels(str(i), "x" * 40).set(i)
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0, grpc_max_msg_size=8192) as proxy:
            agent = await nursery.start(
                run_agent, agent_config(proxy, (exporter.url,), grpc_max_msg_size=8192))
            series = await get_json(f"{proxy.http_url}/metrics-windows")
            shards = [s for s in series if s["name"] == "shard_bytes"]
            assert len(shards) == 300
            stats = agent.client.statistics()
            assert stats.requests_answered == 1
            assert stats.chunks_sent > 3  # 300 series of ~100 bytes do not fit in 8 KiB
            agent.stop()


async def test_exporter_down_agent_stays_registered_and_answers_what_it_has(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy:
            agent = await nursery.start(run_agent, agent_config(proxy, (exporter.url,)))
            await agent.watchdog.wait_polls(2)
            exporter.stop()
            down_at = trio.current_time()
            polls = agent.watchdog.statistics().polls
            last_point = agent.recorder.latest()
            await agent.watchdog.wait_polls(polls + 3)
            stats = agent.watchdog.statistics()
            assert stats.scrapes_failed[exporter.url] >= 3
            assert "cannot connect" in (stats.last_error[exporter.url] or "")

            entry = proxy.proxy.registry.get(agent.client.agent_id or "")
            assert entry is not None and entry.status is AgentStatus.ONLINE
            assert agent.client.connected
            series = await get_json(f"{proxy.http_url}/metrics-windows")
            temperature = find(series, "temperature", node_zone="a")
            [point] = temperature["data"]
            recorded = {s.name: s for s in last_point}
            assert parse_rfc3339(point["timestamp"]) == pytest.approx(
                recorded["temperature"].timestamp, abs=1e-6)
            assert point["value"] == 21.5
            response = await http_get(f"{proxy.http_url}/metrics")
            [up] = sample_lines(response.text, "fodc_agent_up")
            assert up.endswith(" 1")
            assert sample_lines(response.text, "temperature")
            print(f"exporter down for {trio.current_time() - down_at:.2f}s; agent still answering")
            agent.stop()


async def test_agent_reports_its_own_scrapes_and_recorder_through_the_proxy(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    """The node's endpoint down while the agent is fine: `fodc_agent_up 1`, and the agent's own
    `fodc_scrape_up` says 0 for that endpoint (1 for the one that works), on the proxy's /metrics."""
    down = NodeExporter()
    await down.start(nursery)
    with trio.fail_after(20):
        async with open_proxy(collect_timeout=2.0) as proxy:
            agent = await nursery.start(run_agent, agent_config(proxy, (exporter.url, down.url)))
            agent_id = agent.client.agent_id
            down.stop()
            polls = agent.watchdog.statistics().polls
            await agent.watchdog.wait_polls(polls + 2)
            assert agent.watchdog.statistics().last_error[down.url] is not None

            response = await http_get(f"{proxy.http_url}/metrics")
            assert response.status == 200
            families = {f.name: f for f in text_string_to_metric_families(response.text)}
            [up] = families["fodc_agent_up"].samples
            assert up.value == 1.0
            enriched = {"agent_id": agent_id, **ENRICHMENT}
            scrape_up = {s.labels["endpoint"]: s.value for s in families["fodc_scrape_up"].samples
                         if enriched.items() <= s.labels.items()}
            assert scrape_up == {exporter.url: 1.0, down.url: 0.0}
            assert families["fodc_scrape_up"].type == "gauge"
            durations = {s.labels["endpoint"]: s.value
                         for s in families["fodc_scrape_duration_seconds"].samples}
            assert set(durations) == {exporter.url, down.url}
            assert all(d >= 0 for d in durations.values())
            # The endpoint that went down had worked before (the first poll): its last success
            # is older than the working one's.
            last = {s.labels["endpoint"]: s.value
                    for s in families["fodc_scrape_last_success_timestamp_seconds"].samples}
            assert last[down.url] < last[exporter.url]
            recorder = agent.recorder.statistics()
            [series] = families["fodc_recorder_series"].samples
            assert series.value == recorder.series
            assert families["fodc_recorder_bytes"].samples[0].value > 0
            assert families["fodc_recorder_points"].samples[0].value >= recorder.series
            assert families["fodc_reconnects"].type == "counter"
            [reconnects] = families["fodc_reconnects"].samples
            assert reconnects.name == "fodc_reconnects_total" and reconnects.value == 0.0
            assert "exported_fodc" not in response.text
            # ... and in /metrics-windows, at the moment of asking.
            series_list = await get_json(f"{proxy.http_url}/metrics-windows")
            assert find(series_list, "fodc_scrape_up", endpoint=down.url)["data"][0]["value"] == 0.0
            agent.stop()


async def test_proxy_restart_on_the_same_port_agent_comes_back_with_the_same_id(
    exporter: NodeExporter, nursery: trio.Nursery
) -> None:
    fast = {"heartbeat_interval": 1.0, "agent_heartbeat_timeout": 3.0,
            "agent_cleanup_timeout": 6.0}
    with trio.fail_after(30):
        async with open_proxy(**fast) as first:
            port = first.addresses.grpc_port
            cfg = agent_config(port, (exporter.url,))
            agent = await nursery.start(run_agent, cfg)
            agent_id = agent.client.agent_id
            assert first.proxy.registry.get(agent_id or "") is not None
        # The first proxy has shut down; the agent notices and starts reconnecting (the schedule
        # of its attempts is tested on virtual time in test_agent_backoff.py).
        await wait_for(lambda: not agent.client.connected)
        connects_before = agent.client.statistics().connects
        await wait_for(lambda: agent.client.statistics().connects >= connects_before + 2)

        async with open_proxy(grpc_port=port, **fast) as second:
            up_at = trio.current_time()
            with trio.fail_after(5 * cfg.reconnect_max + 2):
                again = await agent.client.wait_registered()
            took = trio.current_time() - up_at
            assert again == agent_id
            entries = list(second.proxy.registry)
            assert [e.agent_id for e in entries] == [agent_id]
            assert entries[0].status is AgentStatus.ONLINE
            cluster = await get_json(f"{second.http_url}/cluster")
            assert [n["node_id"] for n in cluster["nodes"]] == [agent_id]
            # The same agent answers on the new proxy, from the same flight recorder.
            series = await get_json(f"{second.http_url}/metrics-windows")
            assert find(series, "temperature", agent_id=agent_id)["data"]
            print(f"re-registered {took:.3f}s after the proxy came back")
            agent.stop()


async def test_node_config_reported_and_updated_on_heartbeat(
    exporter: NodeExporter, nursery: trio.Nursery, tmp_path: Any
) -> None:
    path = tmp_path / "node.json"
    path.write_text(json.dumps({"startup_params": {"flag": "one"},
                                "runtime_config": {"retention": {"days": 7}}}))
    with trio.fail_after(20):
        async with open_proxy(heartbeat_interval=1.0, agent_heartbeat_timeout=3.0,
                              agent_cleanup_timeout=6.0) as proxy:
            agent = await nursery.start(run_agent, agent_config(
                proxy, (exporter.url,), node_config_file=str(path)))

            async def configuration() -> dict[str, Any]:
                body = await get_json(f"{proxy.http_url}/cluster/config")
                [conf] = body["configurations"]
                assert conf["agent_id"] == agent.client.agent_id
                assert conf["node_role"] == "liaison"
                return conf

            conf = await configuration()
            assert conf["startup_params"] == {"flag": "one"}
            assert conf["runtime_config"] == {"retention": {"days": 7}}
            assert conf["collected_at"]

            path.write_text(json.dumps({"startup_params": {"flag": "two!"},
                                        "runtime_config": {"retention": {"days": 30}}}))
            changed_at = trio.current_time()
            while (conf := await configuration())["startup_params"] != {"flag": "two!"}:
                await trio.sleep(0.05)
            assert conf["runtime_config"] == {"retention": {"days": 30}}
            assert agent.node_config is not None and agent.node_config.reloads == 1
            print(f"changed node config reached the proxy after "
                  f"{trio.current_time() - changed_at:.2f}s (heartbeat every 1s)")
            agent.stop()


async def test_over_tls_with_a_token(
    exporter: NodeExporter, nursery: trio.Nursery, tmp_path: Any
) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    paths = {name: str(tmp_path / name) for name in ("cert.pem", "key.pem", "ca.pem", "token")}
    cert.cert_chain_pems[0].write_to_path(paths["cert.pem"])
    cert.private_key_pem.write_to_path(paths["key.pem"])
    ca.cert_pem.write_to_path(paths["ca.pem"])
    token = "agent-token-0123456789"
    (tmp_path / "token").write_text(token + "\n")
    with trio.fail_after(20):
        async with open_proxy(agent_token=token, grpc_tls_cert_file=paths["cert.pem"],
                              grpc_tls_key_file=paths["key.pem"]) as proxy:
            agent = await nursery.start(run_agent, agent_config(
                proxy, (exporter.url,), proxy_tls_ca_file=paths["ca.pem"],
                proxy_token_file=paths["token"]))
            series = await get_json(f"{proxy.http_url}/metrics-windows")
            assert find(series, "temperature", agent_id=agent.client.agent_id or "")
            agent.stop()


def test_unreadable_token_or_ca_file_is_a_config_error(tmp_path: Any) -> None:
    with pytest.raises(ConfigError, match="^--proxy-token-file: "):
        Agent(agent_config(1, (DEFAULT_METRICS_ENDPOINT,),
                           proxy_token_file=str(tmp_path / "missing")))
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError, match="^--proxy-tls-ca-file: "):
        Agent(agent_config(1, (DEFAULT_METRICS_ENDPOINT,),
                           proxy_tls_ca_file=str(tmp_path / "ca.pem")))


async def test_stop_before_the_proxy_is_reachable(exporter: NodeExporter) -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
    with sock, trio.fail_after(10):
        agent = Agent(agent_config(sock.getsockname()[1], (exporter.url,)))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(agent.run)
            await wait_for(lambda: agent._client is not None
                           and agent.client.statistics().failures >= 2)
            assert agent.watchdog.statistics().polls >= 1  # scraping goes on meanwhile
            agent.stop()
        assert agent.client.agent_id is None


async def test_default_node_ip_is_the_local_address_towards_the_proxy() -> None:
    with trio.fail_after(10):
        assert await local_address_towards("127.0.0.1", 17900) == "127.0.0.1"


# --- the program ---------------------------------------------------------------------------------


@attrs.frozen
class Program:
    process: trio.Process
    log: BinaryIO

    @property
    def stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")


@pytest.fixture
def program_log(tmp_path: Any) -> Iterator[BinaryIO]:
    """A file for a program's stderr (a pipe could fill up and block it). Its content is printed
    at teardown, so pytest shows it when the test fails."""
    with open(tmp_path / "program.stderr", "w+b") as f:
        yield f
        f.seek(0)
        print("--- the program's stderr ---", f.read().decode(errors="replace"), sep="\n")


async def start_agent_program(argv: list[str], log: BinaryIO) -> Program:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "fodcproxy", "agent", *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    return Program(process, log)


@pytest.mark.slow
async def test_program_serves_the_proxy_and_says_goodbye_on_sigterm(
    exporter: NodeExporter, program_log: BinaryIO
) -> None:
    with trio.fail_after(30):
        async with open_proxy(collect_timeout=2.0) as proxy:
            program = await start_agent_program([
                "--proxy-addr", proxy.grpc_address, "--node-ip", "127.0.0.1",
                "--node-port", "17912", "--node-role", "liaison", "--node-labels", "zone=a",
                "--metrics-endpoint", exporter.url, "--poll-metrics-interval", "200ms",
                "--reconnect-interval", "100ms",
            ], program_log)
            try:
                registry = proxy.proxy.registry
                await wait_for(lambda: len(registry) == 1 or program.process.poll() is not None,
                               step=0.05)
                assert program.process.poll() is None, program.stderr
                [entry] = list(registry)
                # What the issue's "done when" asks: the exporter's series on /metrics.
                while not sample_lines((await http_get(f"{proxy.http_url}/metrics")).text,
                                       "temperature"):
                    await trio.sleep(0.05)
                text = (await http_get(f"{proxy.http_url}/metrics")).text
                [line] = sample_lines(text, "temperature")
                assert f'agent_id="{entry.agent_id}"' in line and 'node_zone="a"' in line
                assert exposition_types(text)["temperature"] == "gauge"

                program.process.send_signal(signal.SIGTERM)
                assert await program.process.wait() == 0, program.stderr
                # The goodbye was processed before the program exited: gone at once, not offline.
                assert len(registry) == 0
                assert registry.statistics().removals == 1
                assert "Traceback" not in program.stderr, program.stderr
            finally:
                if program.process.poll() is None:
                    program.process.kill()
                    await program.process.wait()


@pytest.mark.slow
async def test_program_refuses_an_unreadable_node_config(
    tmp_path: Any, program_log: BinaryIO
) -> None:
    bad = tmp_path / "node.json"
    bad.write_text("not json")
    with trio.fail_after(30):
        program = await start_agent_program([
            "--node-role", "liaison", "--node-ip", "127.0.0.1", "--proxy-addr", "127.0.0.1:1",
            "--node-config-file", str(bad)], program_log)
        assert await program.process.wait() == 2
    lines = program.stderr.strip().splitlines()
    assert len(lines) == 1 and "--node-config-file" in lines[0], lines


async def start_proxy_program(grpc_port: int, log: BinaryIO) -> tuple[trio.Process, int, str]:
    """`python -m fodcproxy` on 127.0.0.1; returns (process, gRPC port, HTTP URL) once ready."""
    log.seek(0)
    log.truncate()
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "fodcproxy", "--grpc-listen-addr", f"127.0.0.1:{grpc_port}",
         "--http-listen-addr", "127.0.0.1:0", "--heartbeat-interval", "1s",
         "--agent-heartbeat-timeout", "3s", "--agent-cleanup-timeout", "6s"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    ready = re.compile(r"proxy ready: gRPC [^ ]+:(\d+), HTTP (http://\S+)")
    while True:
        log.seek(0)
        text = log.read().decode(errors="replace")
        if m := ready.search(text):
            return process, int(m[1]), m[2]
        assert process.poll() is None, text
        await trio.sleep(0.05)


@pytest.mark.slow
async def test_proxy_killed_and_restarted_agent_comes_back_with_the_same_id(
    exporter: NodeExporter, nursery: trio.Nursery, program_log: BinaryIO
) -> None:
    with trio.fail_after(30):
        process, port, http_url = await start_proxy_program(0, program_log)
        try:
            agent = await nursery.start(run_agent, agent_config(port, (exporter.url,)))
            agent_id = agent.client.agent_id
            process.kill()  # SIGKILL: no trailers, no GOAWAY; the kernel closes the sockets
            await process.wait()
            await wait_for(lambda: not agent.client.connected)
            process, port_again, http_url = await start_proxy_program(port, program_log)
            assert port_again == port
            up_at = trio.current_time()
            assert await agent.client.wait_registered() == agent_id
            took = trio.current_time() - up_at
            cluster = await get_json(f"{http_url}/cluster")
            assert [(n["node_id"], n["status"]) for n in cluster["nodes"]] == [(agent_id, "online")]
            print(f"re-registered {took:.3f}s after the killed proxy was restarted")
            agent.stop()
        finally:
            if process.poll() is None:
                process.kill()
                await process.wait()
