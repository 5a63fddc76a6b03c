"""P2: 1,000 agents x 100 series: registration time, idle memory, and `GET /metrics`.

    python -m benchmarks.p2_many_agents [--agents 1000] [--series 100] [--runs 7]

Targets: every agent registered within 5 s of starting them; `/metrics` median <= 0.6x the
reference render (generate_latest, same samples, this run); proxy RSS with the agents idle
<= 150 MB. Registration is timed twice: from spawning the fake-agents process (interpreter start
and building the agents' series included) until /health counts them all, and as the fleet reports
it (from starting the agents to the last registration acknowledged).
"""

from __future__ import annotations

import argparse
import sys

import trio

from benchmarks import _harness as h

REGISTER_TARGET = 5.0
RATIO_TARGET = 0.6
RSS_TARGET = 150 * h.MB


async def main(args: argparse.Namespace) -> None:
    with h.run_proxy("--max-agents", str(max(1000, args.agents)),
                     gc_threshold=args.gc_threshold,
                     gc_freeze=args.gc_freeze) as proxy, \
            h.run_agents(proxy, count=args.agents, series=args.series) as agents:
        registered = await h.wait_registered(proxy, agents, args.agents,
                                             timeout=args.register_timeout)
        fleet = None
        for _ in range(100):  # the fleet prints its line right after the last acknowledgement
            fleet = agents.fleet_seconds()
            if fleet is not None:
                break
            await trio.sleep(0.05)
        await trio.sleep(args.settle)
        idle_rss, _ = h.memory(proxy.pid)
        ref = h.Reference(await h.nodes_of(proxy), args.series)
        conn = h.HttpConnection(proxy.http_host, proxy.http_port)
        try:
            for _ in range(args.warmup):
                await conn.get("/metrics")
            m = await h.measure(conn, "/metrics", proxy, agents, ref, args)
        finally:
            await conn.aclose()
    fleet_text = "?" if fleet is None else h.fmt_s(fleet)
    h.emit(
        f"P2 many-agents agents={args.agents} series={args.series} samples={ref.samples} "
        f"registered={h.fmt_s(registered)} (fleet {fleet_text}) target<={REGISTER_TARGET:g}s "
        f"{h.verdict(registered <= REGISTER_TARGET)} "
        f"idle_rss={h.fmt_mb(idle_rss)} target<=150MB {h.verdict(idle_rss <= RSS_TARGET)} "
        f"{h.scrape_figures(m, ref, RATIO_TARGET)} "
        f"rss_after={h.fmt_mb(m.rss)} peak_rss={h.fmt_mb(m.peak)}",
        args,
    )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.p2_many_agents", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    h.common_flags(p, agents=1000, series=100, runs=7)
    p.add_argument("--settle", type=float, default=1.0,
                   help="seconds to wait after registration before reading idle RSS (default 1)")
    trio.run(main, p.parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
