"""P5: `GET /health` latency while P1 scrapes (100 agents x 1,000 series) run back to back.

    python -m benchmarks.p5_health_latency [--scrapes 16] [--interval 0.01]

One task scrapes `/metrics` `--scrapes` times back to back; another asks `/health` every
`--interval` seconds on its own keep-alive connection for as long as the scrapes run. Target:
/health p99 <= 50 ms (the event loop never blocks long).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import trio

from benchmarks import _harness as h

TARGET = 0.050


async def main(args: argparse.Namespace) -> None:
    with h.run_proxy(gc_threshold=args.gc_threshold,
                     gc_freeze=args.gc_freeze) as proxy, \
            h.run_agents(proxy, count=args.agents, series=args.series) as agents:
        await h.wait_registered(proxy, agents, args.agents, timeout=args.register_timeout)
        ref = h.Reference(await h.nodes_of(proxy), args.series)
        for _ in range(args.ref_runs):
            ref.run()
        scrape_conn = h.HttpConnection(proxy.http_host, proxy.http_port)
        health_conn = h.HttpConnection(proxy.http_host, proxy.http_port)
        scrapes: list[float] = []
        health: list[float] = []
        idle: list[float] = []
        try:
            for _ in range(args.warmup):
                await scrape_conn.get("/metrics")
            for _ in range(20):  # /health on an idle proxy, for comparison
                idle.append((await health_conn.get("/health")).seconds)
            profile = h.start_profile(proxy.pid, args.py_spy)
            h.reset_peak(proxy.pid)
            cpu0, acpu0 = h.cpu_seconds(proxy.pid), h.cpu_seconds(agents.pid)
            done = trio.Event()

            async def scraper() -> None:
                try:
                    for _ in range(args.scrapes):
                        scrapes.append((await scrape_conn.get("/metrics")).seconds)
                finally:
                    done.set()

            async def prober() -> None:
                while not done.is_set():
                    reply = await health_conn.get("/health", timeout=30.0)
                    if reply.status != 200:
                        raise RuntimeError(f"/health answered {reply.status}")
                    health.append(reply.seconds)
                    await trio.sleep(args.interval)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(scraper)
                nursery.start_soon(prober)
            profile.close()
            cpu = (h.cpu_seconds(proxy.pid) - cpu0) / args.scrapes
            acpu = (h.cpu_seconds(agents.pid) - acpu0) / args.scrapes
            _, peak = h.memory(proxy.pid)
        finally:
            await scrape_conn.aclose()
            await health_conn.aclose()
    p99 = h.percentile(health, 99)
    scrape_median = statistics.median(scrapes)
    h.emit(
        f"P5 health-latency agents={args.agents} series={args.series} scrapes={args.scrapes} "
        f"health_probes={len(health)} health_p99={h.fmt_ms(p99)} "
        f"median={h.fmt_ms(statistics.median(health))} max={h.fmt_ms(max(health))} "
        f"target<={h.fmt_ms(TARGET)} {h.verdict(p99 <= TARGET)} "
        f"idle_health_median={h.fmt_ms(statistics.median(idle))} "
        f"scrape_median={h.fmt_s(scrape_median)} ({h.spread(scrapes)}) "
        f"ref_generate_latest={h.fmt_s(ref.median())} ratio={scrape_median / ref.median():.2f} "
        f"proxy_cpu={cpu:.3f}s/scrape agents_cpu={acpu:.3f}s/scrape peak_rss={h.fmt_mb(peak)}",
        args,
    )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p5_health_latency", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    h.common_flags(p, agents=100, series=1000, runs=0, ref_runs=1)
    p.add_argument("--scrapes", type=int, default=16, help="back-to-back scrapes (default 16)")
    p.add_argument("--interval", type=float, default=0.01,
                   help="seconds between /health probes (default 0.01)")
    trio.run(main, p.parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
