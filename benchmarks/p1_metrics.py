"""P1: `GET /metrics` of 100 agents x 1,000 series (5 labels each) against generate_latest.

    python -m benchmarks.p1_metrics [--agents 100] [--series 1000] [--runs 7]

Target: median <= 0.5x the time prometheus_client's `generate_latest` takes to render the same
samples (measured in this run, alternating with the scrapes).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import trio

from benchmarks import _harness as h

TARGET = 0.5


async def main(args: argparse.Namespace) -> None:
    with h.run_proxy(gc_threshold=args.gc_threshold,
                     gc_freeze=args.gc_freeze) as proxy, \
            h.run_agents(proxy, count=args.agents, series=args.series) as agents:
        await h.wait_registered(proxy, agents, args.agents, timeout=args.register_timeout)
        ref = h.Reference(await h.nodes_of(proxy), args.series)
        conn = h.HttpConnection(proxy.http_host, proxy.http_port)
        try:
            for _ in range(args.warmup):
                await conn.get("/metrics")
            profile = h.start_profile(proxy.pid, args.py_spy)
            h.reset_peak(proxy.pid)
            cpu0, acpu0 = h.cpu_seconds(proxy.pid), h.cpu_seconds(agents.pid)
            times: list[float] = []
            sizes: list[int] = []
            collects: list[float] = []  # the fan-out's part (the proxy's own header)
            missed = 0
            for i in range(max(args.runs, args.ref_runs)):
                if i < args.runs:
                    reply = await conn.get("/metrics")
                    if reply.status != 200:
                        raise RuntimeError(f"/metrics answered {reply.status}")
                    missed += args.agents - int(reply.headers.get("x-fodc-agents-answered", 0))
                    times.append(reply.seconds)
                    sizes.append(reply.size)
                    collects.append(float(reply.headers["x-fodc-collect-duration-seconds"]))
                if i < args.ref_runs:
                    ref.run()  # the cluster is idle meanwhile: only this process works
            profile.close()
            cpu = (h.cpu_seconds(proxy.pid) - cpu0) / args.runs
            acpu = (h.cpu_seconds(agents.pid) - acpu0) / args.runs
            _, peak = h.memory(proxy.pid)
        finally:
            await conn.aclose()
    median = statistics.median(times)
    ratio = median / ref.median()
    h.emit(
        f"P1 /metrics agents={args.agents} series={args.series} samples={ref.samples} "
        f"runs={args.runs} median={h.fmt_s(median)} ({h.spread(times)}) "
        f"collect={h.fmt_s(statistics.median(collects))} "
        f"ref_generate_latest={h.fmt_s(ref.median())} ({h.spread(ref.times)}) "
        f"ratio={ratio:.2f} target<={TARGET} {h.verdict(ratio <= TARGET)} "
        f"body={h.fmt_mb(statistics.median(sizes))} missed={missed} "
        f"proxy_cpu={cpu:.3f}s/scrape agents_cpu={acpu:.3f}s/scrape peak_rss={h.fmt_mb(peak)}",
        args,
    )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p1_metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    h.common_flags(p, agents=100, series=1000, runs=7)
    trio.run(main, p.parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
