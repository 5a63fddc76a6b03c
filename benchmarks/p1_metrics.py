"""P1: `GET /metrics` of 100 agents x 1,000 series (5 labels each) against generate_latest.

    python -m benchmarks.p1_metrics [--agents 100] [--series 1000] [--runs 7]

Target: median <= 0.5x the time prometheus_client's `generate_latest` takes to render the same
samples (measured in this run, alternating with the scrapes).
"""

from __future__ import annotations

import argparse
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
            m = await h.measure(conn, "/metrics", proxy, agents, ref, args)
        finally:
            await conn.aclose()
    h.emit(
        f"P1 /metrics agents={args.agents} series={args.series} samples={ref.samples} "
        f"{h.scrape_figures(m, ref, TARGET)} peak_rss={h.fmt_mb(m.peak)}",
        args,
    )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p1_metrics", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    h.common_flags(p, agents=100, series=1000, runs=7)
    trio.run(main, p.parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
