"""M2: proxy memory while a big pressure profile is downloaded through it.

    python -m benchmarks.m2_profile_download [--megabytes 200] [--slow-reader]

A fake pod agent (in this process, real gRPC) holds one heap profile of `--megabytes` MiB; the
proxy runs as a process of its own. An HTTP client downloads
`GET /pressure-profiles/{pod}/{id}/heap` through it, reading as fast as it can (or, with
`--slow-reader`, pausing 50 ms per MiB), while the proxy's RSS is sampled from /proc. Figures: the
proxy's RSS before, its peak growth during the download (target: independent of the profile's
size, <= 64 MB for 200 MB), throughput, and whether the bytes arrived complete.
Loopback only; bounded in time.
"""

from __future__ import annotations

import argparse
import time

import h11
import trio

from benchmarks import _harness as h
from fodcproxy.testing import open_fake_agent
from fodcproxy.testing.diagnostics import FakePressureService

GROWTH_TARGET = 64 * h.MB


async def main(args: argparse.Namespace) -> None:
    size = args.megabytes * h.MB
    pressure = FakePressureService({"p1": {"heap": size}})
    with h.run_proxy() as proxy, trio.fail_after(args.timeout):
        async with open_fake_agent(proxy.grpc_address, role="ROLE_DATA", pod_name="data-0",
                                   services=[pressure]):
            # Wait for the stream, then measure.
            while pressure.call is None:
                await trio.sleep(0.01)
            before, _ = h.memory(proxy.pid)
            peak = before
            done = trio.Event()

            async def sample() -> None:
                nonlocal peak
                while not done.is_set():
                    peak = max(peak, h.memory(proxy.pid)[0])
                    await trio.sleep(0.02)

            got = 0
            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(sample)
                stream = await trio.open_tcp_stream(proxy.http_host, proxy.http_port)
                conn = h11.Connection(h11.CLIENT)
                await stream.send_all(conn.send(h11.Request(
                    method="GET", target="/pressure-profiles/data-0/p1/heap",
                    headers=[("Host", "bench"), ("Connection", "close")]))
                    + conn.send(h11.EndOfMessage()))
                status = 0
                next_pause = h.MB
                try:
                    while True:
                        event = conn.next_event()
                        if event is h11.NEED_DATA:
                            conn.receive_data(await stream.receive_some(256 * 1024))
                        elif isinstance(event, h11.Response):
                            status = event.status_code
                        elif isinstance(event, h11.Data):
                            got += len(event.data)
                            if args.slow_reader and got >= next_pause:
                                next_pause += h.MB
                                await trio.sleep(0.05)
                        else:
                            break
                except h11.RemoteProtocolError:
                    pass  # the proxy cut a download that failed midway: complete=False says so
                await stream.aclose()
                elapsed = time.perf_counter() - start
                done.set()
    growth = peak - before
    ok = growth <= GROWTH_TARGET
    h.emit(f"M2 profile download megabytes={args.megabytes} status={status} complete={got == size} "
           f"rss_before={h.fmt_mb(before)} peak_growth={h.fmt_mb(growth)} "
           f"target<={h.fmt_mb(GROWTH_TARGET)} {h.verdict(ok)} "
           f"throughput={got / h.MB / max(elapsed, 1e-9):.1f}MB/s slow_reader={args.slow_reader}")


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--megabytes", type=int, default=200)
    p.add_argument("--slow-reader", action="store_true")
    p.add_argument("--timeout", type=float, default=300.0)
    trio.run(main, p.parse_args())


if __name__ == "__main__":
    cli()
