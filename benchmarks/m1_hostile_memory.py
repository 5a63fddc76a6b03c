"""M1: what hostile gRPC clients make the proxy hold.

    python -m benchmarks.m1_hostile_memory [--registered 20] [--anonymous 40] [--seconds 5]

`--registered` connections register an agent (no token is configured, so anyone may), then open
every stream they may (16 per connection) and start a 4,000,000-byte message on each without
ever finishing it; `--anonymous` connections do the same without registering. They keep sending
as flow control lets them for `--seconds`. Meanwhile one real agent registers and `/health` and
`/metrics` are asked. Figures: the proxy's RSS growth (target <= 150 MB), the bytes its budget
holds (`fodc_proxy_grpc_buffer_bytes`), /health latency, and whether the real agent was scraped.
Loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import trio

from benchmarks import _harness as h
from fodcproxy.rpc import convert
from fodcproxy.testing import open_fake_agent, static
from fodcproxy.testing.rawh2 import RawH2, frame
from fodcproxy.testing.http import http_get

GROWTH_TARGET = 150 * h.MB
PROBE = """
import sys, time, urllib.request
url, seconds = sys.argv[1], float(sys.argv[2])
end = time.monotonic() + seconds
while time.monotonic() < end:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        assert r.status == 200
    print(time.perf_counter() - t0, flush=True)
    time.sleep(0.1)
"""


async def attacker(port: int, registered: bool, i: int, stop_at: float) -> RawH2:
    raw = await RawH2.open(port)
    if registered:
        sid = raw.new_stream("RegisterAgent")
        raw.send(sid, frame(convert.registration_to_proto(
            role="liaison", ip="127.0.0.1", port=40000 + i).SerializeToString()))
    body = frame(b"\0" * 4_000_000)[:3_900_000]
    sids = [raw.new_stream("RegisterAgent") for _ in range(15 if registered else 16)]
    offsets = dict.fromkeys(sids, 0)
    await raw.flush()
    while trio.current_time() < stop_at:
        for sid in sids:
            if raw.reset(sid) or raw.trailers(sid) is not None:
                continue
            try:
                offsets[sid] += raw.send(sid, body[offsets[sid]:])
            except Exception:  # the proxy ended the stream meanwhile
                continue
        await raw.flush()
        await raw.pump(0.05)
        if raw.closed:
            break
    return raw


async def main(args: argparse.Namespace) -> None:
    with h.run_proxy() as proxy:
        port = int(proxy.grpc_address.rpartition(":")[2])
        url = f"http://{proxy.http_host}:{proxy.http_port}"
        await trio.sleep(0.5)
        before, _ = h.memory(proxy.pid)
        h.reset_peak(proxy.pid)
        stop_at = trio.current_time() + args.seconds
        raws: list[RawH2] = []
        held: list[float] = []

        async def run(registered: bool, i: int) -> None:
            raws.append(await attacker(port, registered, i, stop_at))

        async with trio.open_nursery() as nursery:
            for i in range(args.registered):
                nursery.start_soon(run, True, i)
            for i in range(args.anonymous):
                nursery.start_soon(run, False, i)
            # /health is timed from another process: this one is busy attacking.
            prober = await trio.lowlevel.open_process(
                [sys.executable, "-c", PROBE, url + "/health", str(args.seconds)],
                stdout=subprocess.PIPE)
            while trio.current_time() < stop_at:
                text = (await http_get(url + "/metrics")).text
                held.append(float(re.search(r"^fodc_proxy_grpc_buffer_bytes (\S+)$", text,
                                            re.M).group(1)))
                await trio.sleep(0.2)
        out = b""
        while chunk := await prober.stdout.receive_some():
            out += chunk
        await prober.wait()
        health = [float(x) for x in out.split()]
        rss, peak = h.memory(proxy.pid)
        async with open_fake_agent(proxy.grpc_address, role="liaison", ip="127.0.0.1", port=1,
                                   series=[static("real_agent_series", 1.0)]):
            body = (await http_get(url + "/metrics")).text
        scraped = "real_agent_series{" in body
        for raw in raws:
            await raw.aclose()
    growth = peak - before
    h.emit(
        f"M1 hostile memory registered={args.registered} anonymous={args.anonymous} "
        f"streams={16 * (args.registered + args.anonymous)} declared={h.fmt_mb(4e6 * 16 * (args.registered + args.anonymous))} "
        f"seconds={args.seconds:g} rss_before={h.fmt_mb(before)} peak_growth={h.fmt_mb(growth)} "
        f"target<={h.fmt_mb(GROWTH_TARGET)} {h.verdict(growth <= GROWTH_TARGET)} "
        f"budget_held_max={h.fmt_mb(max(held))} health_p50={h.fmt_s(h.percentile(health, 50))} "
        f"health_max={h.fmt_s(max(health))} real_agent_scraped={scraped}"
    )


def cli(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.m1_hostile_memory", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--registered", type=int, default=20)
    p.add_argument("--anonymous", type=int, default=40)
    p.add_argument("--seconds", type=float, default=5.0)
    trio.run(main, p.parse_args(argv))


if __name__ == "__main__":
    cli(sys.argv[1:])
