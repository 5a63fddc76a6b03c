"""P4: 10 concurrent scrapers of `GET /metrics` on the P1 cluster (100 agents x 1,000 series).

    python -m benchmarks.p4_concurrent_scrapes [--scrapers 10] [--requests 3] [--runs 5]

First `--runs` lone scrapes give the lone median; then `--scrapers` scrapers, each on its own
keep-alive connection, start together and each scrape `--requests` times back to back (they drift
apart after the first round, as unsynchronised Prometheus servers would). Target: the p99 of all
their scrape times <= 2x the lone median.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import trio

from benchmarks import _harness as h

TARGET = 2.0


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
            lone: list[float] = []
            for i in range(max(args.runs, args.ref_runs)):
                if i < args.runs:
                    lone.append((await conn.get("/metrics")).seconds)
                if i < args.ref_runs:
                    ref.run()
        finally:
            await conn.aclose()

        profile = h.start_profile(proxy.pid, args.py_spy)
        h.reset_peak(proxy.pid)
        cpu0, acpu0 = h.cpu_seconds(proxy.pid), h.cpu_seconds(agents.pid)
        times: list[float] = []
        sizes: list[int] = []
        failures = 0

        async def scraper() -> None:
            nonlocal failures
            c = h.HttpConnection(proxy.http_host, proxy.http_port)
            try:
                for _ in range(args.requests):
                    reply = await c.get("/metrics", timeout=120.0)
                    if reply.status != 200:
                        failures += 1
                    times.append(reply.seconds)
                    sizes.append(reply.size)
            finally:
                await c.aclose()

        async with trio.open_nursery() as nursery:
            for _ in range(args.scrapers):
                nursery.start_soon(scraper)
        profile.close()
        cpu = h.cpu_seconds(proxy.pid) - cpu0
        acpu = h.cpu_seconds(agents.pid) - acpu0
        _, peak = h.memory(proxy.pid)
    lone_median = statistics.median(lone)
    p99 = h.percentile(times, 99)
    ratio = p99 / lone_median
    h.emit(
        f"P4 concurrent-scrapes agents={args.agents} series={args.series} "
        f"scrapers={args.scrapers}x{args.requests} lone_median={h.fmt_s(lone_median)} "
        f"({h.spread(lone)}) concurrent_median={h.fmt_s(statistics.median(times))} "
        f"p99={h.fmt_s(p99)} ({h.spread(times)}) ratio={ratio:.2f} target<={TARGET:g} "
        f"{h.verdict(ratio <= TARGET and not failures)} failures={failures} "
        f"ref_generate_latest={h.fmt_s(ref.median())} lone_ratio={lone_median / ref.median():.2f} "
        f"body={h.fmt_mb(statistics.median(sizes))} "
        f"proxy_cpu={cpu / len(times):.3f}s/scrape agents_cpu={acpu / len(times):.3f}s/scrape "
        f"peak_rss={h.fmt_mb(peak)}",
        args,
    )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p4_concurrent_scrapes",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    h.common_flags(p, agents=100, series=1000, runs=5, ref_runs=1)
    p.add_argument("--scrapers", type=int, default=10, help="concurrent scrapers (default 10)")
    p.add_argument("--requests", type=int, default=3,
                   help="scrapes each scraper makes, back to back (default 3)")
    trio.run(main, p.parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
