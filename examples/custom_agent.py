"""A custom FODC agent written against the public client API: `AgentClient` + `AgentSpec` + a source.

Try:  python examples/custom_agent.py
      (starts its own proxy, scrapes it a few times, prints what the agent answered, exits)
or:   python -m fodcproxy --grpc-listen-addr 127.0.0.1:17900 --http-listen-addr 127.0.0.1:17901 &
      python examples/custom_agent.py --proxy-addr 127.0.0.1:17900 --requests 3 --duration 60
      curl -s 127.0.0.1:17901/metrics         # each request to the proxy reaches the agent

The source is any `async def source(window) -> list[Sample]`: here a tiny flight recorder that
samples this machine's load average and this process's CPU time every second and answers "latest"
with the last reading and a time window with the readings inside it.
"""

from __future__ import annotations

import argparse
import collections
import functools
import os
import time

import trio

from fodcproxy.agent.client import AgentClient, AgentSpec
from fodcproxy.core.model import MetricType, Sample, TimeWindow
from fodcproxy.testing import open_proxy
from fodcproxy.testing.http import http_get


class LoadRecorder:
    """Readings of the host's 1-minute load and this process's CPU seconds, one per second."""

    def __init__(self, keep: int = 300) -> None:
        self.readings: collections.deque[tuple[float, float, float]] = collections.deque(maxlen=keep)

    def read(self) -> None:
        self.readings.append((time.time(), os.getloadavg()[0], time.process_time()))

    async def run(self) -> None:
        while True:
            self.read()
            await trio.sleep(1)

    def samples(self, window: TimeWindow) -> list[Sample]:
        chosen = list(self.readings)[-1:] if window.is_latest else [
            r for r in self.readings if window.contains(r[0])]
        out = []
        for ts, load1, cpu in chosen:
            out.append(Sample("node_load1", {}, load1, "1-minute load average of the host.",
                              MetricType.GAUGE, ts))
            out.append(Sample("custom_agent_cpu_seconds_total", {"process": "custom_agent"}, cpu,
                              "CPU seconds used by this agent.", MetricType.COUNTER, ts))
        return out


def describe(window: TimeWindow) -> str:
    if window.is_latest:
        return "latest"

    def hms(ts: float | None, default: str) -> str:
        return default if ts is None else time.strftime("%H:%M:%SZ", time.gmtime(ts))

    return f"window {hms(window.start, 'the start')} to {hms(window.end, 'now')}"


async def run_agent(host: str, port: int, *, requests: int, duration: float,
                    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> int:
    """Serve as a custom agent until `requests` requests are answered or `duration` has passed.

    Reports the agent_id once registered; returns how many requests were answered.
    """
    recorder = LoadRecorder()
    recorder.read()
    answered = trio.Event()
    count = 0

    async def source(window: TimeWindow) -> list[Sample]:
        nonlocal count
        samples = recorder.samples(window)
        count += 1
        shown = ", ".join(f"{s.name}={s.value:.3f}" for s in samples[:2])
        print(f"request {count} ({describe(window)}): answered {len(samples)} samples: {shown}", flush=True)
        if count >= requests:
            answered.set()
        return samples

    spec = AgentSpec(role="datanode-hot", ip="127.0.0.1", port=17912, labels={"zone": "a"})
    client = AgentClient(host, port, spec, source, reconnect_interval=1.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        async with trio.open_nursery() as agent_nursery:
            agent_id = await agent_nursery.start(client.run)
            print(f"registered with the proxy at {host}:{port} as {agent_id}", flush=True)
            task_status.started(agent_id)
            with trio.move_on_after(duration):
                await answered.wait()
                # The source has returned; let the client send that last reply before leaving.
                while client.statistics().requests_answered < requests:
                    await trio.sleep(0.01)
            client.stop()  # goodbye: the proxy unregisters the agent; client.run() then returns
        nursery.cancel_scope.cancel()  # the recorder
    print(f"done: {count} requests answered", flush=True)
    return count


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--proxy-addr", help="a running proxy's gRPC address; none: start one here")
    parser.add_argument("--requests", type=int, default=3, help="exit after answering this many (default 3)")
    parser.add_argument("--duration", type=float, default=60.0, help="or after this many seconds (default 60)")
    args = parser.parse_args()
    if args.proxy_addr:
        host, _, port = args.proxy_addr.rpartition(":")
        await run_agent(host, int(port), requests=args.requests, duration=args.duration)
    else:
        async with open_proxy() as proxy, trio.open_nursery() as nursery:
            print(f"no --proxy-addr: started a proxy at {proxy.grpc_address} (HTTP {proxy.http_url})")
            await nursery.start(functools.partial(run_agent, "127.0.0.1", proxy.addresses.grpc_port,
                                                  requests=args.requests, duration=args.duration))
            # Be our own client: the first request is a 1-minute window, the rest are latest.
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - 60))
            await http_get(f"{proxy.http_url}/metrics-windows?start_time={since}")
            for _ in range(args.requests - 1):
                await http_get(proxy.http_url + "/metrics")


if __name__ == "__main__":
    trio.run(main)
