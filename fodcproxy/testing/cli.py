"""`python -m fodcproxy fake-agents`: N simulated agents in one process, for demos and load.

Thin: the agents are `fodcproxy.testing.fake.FakeAgent`s answering from `SyntheticSeries`; the flags
are `fodcproxy.testing.config`'s. A bad flag exits with status 2 and one line naming it;
SIGINT/SIGTERM make every agent say goodbye, a second signal stops at once. The demo program is
`fodcproxy.testing.demo`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import trio
from trio_util import AsyncValue

from fodcproxy.agent.recorder import stamp_labels
from fodcproxy.process import print_line, read_config, run_program, run_until_signal
from fodcproxy.testing.config import (
    MISBEHAVIOURS,
    OVERSIZED_BYTES,
    ROLES,
    FakeAgentsConfig,
    fake_agents_config_from_args,
    fake_agents_parser,
    parse_misbehave,
)
from fodcproxy.testing.diagnostics import FakeCrashService, FakePressureService, crash_record
from fodcproxy.testing.fake import FakeAgent
from fodcproxy.testing.synthetic import SyntheticSeries

# Re-exported for the callers of the single module this used to be.
__all__ = ["MISBEHAVIOURS", "OVERSIZED_BYTES", "ROLES", "FakeAgentFleet", "FakeAgentsConfig",
           "SyntheticSeries", "build_fake_agents", "fake_agents_config_from_args",
           "fake_agents_main", "parse_misbehave"]

log = logging.getLogger(__name__)


def fake_diagnostics(config: FakeAgentsConfig, i: int) -> list[Any]:
    """Agent `i`'s crash and pressure services (--crash-records, --pressure-profiles)."""
    services: list[Any] = []
    if config.crash_records:
        services.append(FakeCrashService([crash_record(f"/var/lib/banyandb/crash/{i}-{n:04d}")
                                          for n in range(config.crash_records)]))
    if config.pressure_profiles:
        services.append(FakePressureService({
            f"20260101T00{n // 60:02d}{n % 60:02d}.{i:09d}Z": {"heap": 64 * 1024,
                                                              "goroutine": 64 * 1024}
            for n in range(config.pressure_profiles)}))
    return services


def build_fake_agents(config: FakeAgentsConfig) -> list[FakeAgent]:
    """The agents `config` describes, not yet started (misbehaviours already set)."""
    host = f"[{config.proxy_host}]" if ":" in config.proxy_host else config.proxy_host
    address = f"{host}:{config.proxy_port}"
    kinds = config.assign_misbehaviours()
    agents = []
    for i in range(config.count):
        role = config.roles[i % len(config.roles)]
        identity: dict[str, Any]
        if config.shape == "pod":
            pod_name, shape = config.pod(i)
            role, labels = shape.role, {**config.labels, **shape.labels}
            identity = {"pod_name": pod_name, "container_names": [shape.container],
                        "services": fake_diagnostics(config, i)}
            # Stamped like upstream's agent, into the series' templates once (stamp=False: the
            # fake does not stamp every reply again).
            stamp = stamp_labels(role=role, labels=labels, pod_name=pod_name,
                                 container_name=shape.container)
        else:
            ip, port = config.identity(i)
            labels, identity, stamp = dict(config.labels), {"ip": ip, "port": port}, {}
        synthetic = SyntheticSeries(config.series, seed=config.seed * 1_000_003 + i,
                                    history_points=config.history_points,
                                    history_step=config.history_step, labels=stamp)
        kind = kinds[i]
        agent = FakeAgent(address, role=role, labels=labels, series=[synthetic.as_series()],
                          heartbeat_interval=config.heartbeat_interval,
                          reconnect_interval=config.reconnect_interval, keep_requests=False,
                          stamp=False, **identity)
        if kind == "slow":
            agent.delay = config.slow_delay
        elif kind == "hung":
            agent.hang = True
        elif kind == "drop":
            agent.drop_mid_reply = True
        elif kind == "noheartbeat":
            agent.heartbeats = False
        elif kind == "noecho":
            agent.echo_request_id = False
        elif kind == "oversized":
            agent.oversized = OVERSIZED_BYTES
        elif kind == "malformed":
            agent.malformed = True
        agents.append(agent)
    return agents


class FakeAgentFleet:
    """Runs many fake agents in one nursery; `stop()` makes them all say goodbye."""

    def __init__(self, agents: Sequence[FakeAgent], *, out: Callable[[str], None] | None = None) -> None:
        self.agents = list(agents)
        self.registered = 0
        self.all_registered = trio.Event()
        self._out = out

    def stop(self) -> None:
        """Every agent says goodbye; `run()` returns when all have."""
        for agent in self.agents:
            agent.disconnect()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start every agent (without waiting for one before the next) and run until `stop()`.

        Reports (and prints "N agents registered in X s") once every agent has registered, or
        been stopped before it could.
        """
        start = time.monotonic()
        launched = AsyncValue(0)  # agents whose start has returned

        async def launch(agent: FakeAgent) -> None:
            await nursery.start(agent.run)
            if agent.client.agent_id is not None:
                self.registered += 1
            launched.value += 1

        progress_scope = trio.CancelScope()

        async def progress() -> None:
            # Say why, when registration takes long (e.g. the proxy's --max-agents is reached).
            with progress_scope:
                while True:
                    await trio.sleep(10)
                    waiting = [a for a in self.agents if a.client.agent_id is None]
                    errors = {a.client.statistics().last_error for a in waiting} - {""}
                    log.warning("%d of %d agents registered; the others keep retrying (%s)",
                                len(self.agents) - len(waiting), len(self.agents),
                                "; ".join(sorted(errors)[:3]) or "no answer yet")

        async with trio.open_nursery() as nursery:
            for i, agent in enumerate(self.agents):
                nursery.start_soon(launch, agent)
                if i % 100 == 99:
                    # A breath between batches keeps the proxy's accept queue short; connects
                    # still overlap (this is not one at a time).
                    await trio.sleep(0.01)
            nursery.start_soon(progress)
            await launched.wait_value(len(self.agents))
            progress_scope.cancel()
            if self.registered == len(self.agents):
                self.all_registered.set()
                if self._out is not None:
                    self._out(f"{len(self.agents)} agents registered in {time.monotonic() - start:.2f} s")
            task_status.started()


def fake_agents_main(argv: Sequence[str], prog: str = "python -m fodcproxy fake-agents") -> None:
    """The `fake-agents` program: exits 0 after SIGINT/SIGTERM, 2 on a bad flag."""
    config = read_config(fake_agents_parser(prog), argv, fake_agents_config_from_args, prog)
    agents = build_fake_agents(config)
    fleet = FakeAgentFleet(agents, out=print_line)
    log.info("%d fake %s agents (%d series each) dialing %s:%s", len(agents), config.shape,
             config.series, config.proxy_host, config.proxy_port)
    run_program(lambda: run_until_signal(fleet.run, fleet.stop), prog)
