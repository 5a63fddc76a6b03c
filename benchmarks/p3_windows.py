"""P3: `GET /metrics-windows` of 100 agents x 100 series x 60 points (600k points).

    python -m benchmarks.p3_windows [--agents 100] [--series 100] [--points 60] [--runs 5]

Targets: median <= 2 s; the proxy's RSS growth during the requests (peak RSS minus the RSS before
them) <= 3x the response size. The reference is generate_latest rendering the same 600k points as
timestamped samples (built in blocks of 100k, building not timed).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import trio

from benchmarks import _harness as h
from fodcproxy.core.windows import rfc3339

MEDIAN_TARGET = 2.0
GROWTH_TARGET = 3.0


async def main(args: argparse.Namespace) -> None:
    extra = ["--grpc-buffer-budget", str(args.buffer_budget)] if args.buffer_budget else []
    with h.run_proxy(*extra, gc_threshold=args.gc_threshold,
                     gc_freeze=args.gc_freeze) as proxy, \
            h.run_agents(proxy, count=args.agents, series=args.series,
                         history_points=args.points) as agents:
        await h.wait_registered(proxy, agents, args.agents, timeout=args.register_timeout)
        ref = h.Reference(await h.nodes_of(proxy), args.series, history_points=args.points)
        conn = h.HttpConnection(proxy.http_host, proxy.http_port)
        # Every point of the agents' history (a point every 10 s), with room to spare.
        start = rfc3339(int(time.time()) - 10 * args.points - 3600)
        path = f"/metrics-windows?start_time={start}"
        try:
            for _ in range(args.warmup):
                await conn.get(path)
            await trio.sleep(0.5)
            before, _ = h.memory(proxy.pid)
            m = await h.measure(conn, path, proxy, agents, ref, args, timeout=120.0)
        finally:
            await conn.aclose()
    median = statistics.median(m.times)
    body = statistics.median(m.sizes)
    growth = m.peak - before
    h.emit(
        f"P3 /metrics-windows agents={args.agents} series={args.series} points={args.points} "
        f"samples={ref.samples} runs={args.runs} median={h.fmt_s(median)} ({h.spread(m.times)}) "
        f"collect={h.fmt_s(statistics.median(m.collects))} "
        f"target<={MEDIAN_TARGET:g}s {h.verdict(median <= MEDIAN_TARGET)} "
        f"ref_generate_latest={h.fmt_s(ref.median())} ({h.spread(ref.times)}) "
        f"ratio={median / ref.median():.2f} body={h.fmt_mb(body)} missed={m.missed} "
        f"rss_before={h.fmt_mb(before)} rss_growth={h.fmt_mb(growth)} "
        f"({growth / body:.2f}x body{'' if m.exact_peak else ', peak since start'}) "
        f"target<={GROWTH_TARGET:g}x {h.verdict(growth <= GROWTH_TARGET * body)} "
        f"proxy_cpu={m.cpu:.3f}s/request agents_cpu={m.agents_cpu:.3f}s/request peak_rss={h.fmt_mb(m.peak)}"
        + (f" buffer_budget={args.buffer_budget}" if args.buffer_budget else ""),
        args,
    )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p3_windows", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    h.common_flags(p, agents=100, series=100, runs=5, ref_runs=1)
    p.add_argument("--points", type=int, default=60, help="points per series (default 60)")
    p.add_argument("--buffer-budget", type=int, default=0,
                   help="the proxy's --grpc-buffer-budget in bytes (default: the proxy's)")
    trio.run(main, p.parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
