"""L1: `GET /cluster/lifecycle` over a big cluster, and `/health` while it runs (issue 16).

In one process: a proxy (`fodcproxy.testing.open_proxy`) and fake pod agents (`--data-nodes`
data nodes and one liaison) answering from a `SchemaWorld` of `--groups` groups with
`--segments` segments x 3 shards per data node; the liaison's answer carries every data node's
`data_info` (as upstream's InspectAll does), so it is the big message. Prints one line: the
liaison's answer size, the time to decode it alone, the endpoint's median and worst time, the
body size, and `/health`'s worst latency while the collections ran (the answers are decoded and
the body written in worker threads, so the event loop keeps its turns). The fakes run in the same
process, with their answers built once. No pass/fail.

    python -m benchmarks.l1_lifecycle [--groups 50] [--data-nodes 10] [--segments 30] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import AsyncExitStack

import trio

from fodcproxy.lifecycle import LifecycleReportStream, RegistryStream
from fodcproxy.rpc.convert import pb
from fodcproxy.rpc.lifecycle_convert import lifecycle_from_proto
from fodcproxy.testing import open_fake_agent, open_proxy
from fodcproxy.testing.http import http_get
from fodcproxy.testing.lifecycle import Group, SchemaWorld, services_for


def world(groups: int, data_nodes: int, segments: int) -> SchemaWorld:
    return SchemaWorld(
        groups=[Group(f"group-{i}", "CATALOG_MEASURE",
                      {("group", f"group-{i}"): i, **{("measure", f"m{j}"): 1000 * i + j
                                                       for j in range(40)}},
                      shards=3, segments=segments) for i in range(groups)],
        data_nodes=[f"data-{i}" for i in range(data_nodes)], liaisons=["liaison-0"])


async def main(args: argparse.Namespace) -> None:
    w = world(args.groups, args.data_nodes, args.segments)
    big = pb.StreamLifecycleRequest(pod_name="liaison-0", lifecycle_data=w.lifecycle_data("liaison-0"))
    t = time.perf_counter()
    lifecycle_from_proto(big, "x")
    decode = time.perf_counter() - t
    with trio.fail_after(600):
        async with open_proxy(grpc_max_msg_size=16 * 1024 * 1024,
                              grpc_buffer_budget=64 * 1024 * 1024) as proxy, AsyncExitStack() as stack:
            agents = []
            for node in ["liaison-0", *w.data_nodes]:
                services = services_for(w, node)
                # The fakes share this process: their answers are built once, so what is
                # measured is the proxy (and the transfer), not the fakes building messages.
                prebuilt = services[0].answer()
                services[0].answer = lambda m=prebuilt: m  # type: ignore[method-assign]
                agents.append(await stack.enter_async_context(open_fake_agent(
                    proxy.grpc_address, role="ROLE_LIAISON" if node == "liaison-0" else "ROLE_DATA",
                    pod_name=node, services=services, max_message_size=16 * 1024 * 1024)))
            hub = proxy.proxy.hub
            while not all((s := hub.sessions.get(a.agent_id)) is not None
                          and s.stream(LifecycleReportStream) and s.stream(RegistryStream)
                          for a in agents):
                await trio.sleep(0.01)
            worst_health = 0.0
            done = trio.Event()

            async def probe() -> None:
                nonlocal worst_health
                while not done.is_set():
                    start = time.perf_counter()
                    await http_get(proxy.http_url + "/health")
                    worst_health = max(worst_health, time.perf_counter() - start)
                    await trio.sleep(0.01)

            times, size = [], 0
            async with trio.open_nursery() as nursery:
                nursery.start_soon(probe)
                for _ in range(args.runs):
                    start = time.perf_counter()
                    r = await http_get(proxy.http_url + "/cluster/lifecycle", timeout=300)
                    times.append(time.perf_counter() - start)
                    size = len(r.body)
                    doc = await trio.to_thread.run_sync(json.loads, r.body)  # off the loop
                    assert r.status == 200 and doc["agent_summary"]["responded"] == len(agents)
                done.set()
    print(f"L1 /cluster/lifecycle groups={args.groups} data_nodes={args.data_nodes} "
          f"segments={args.segments}: liaison answer {big.ByteSize() / 1e6:.2f} MB, decoded alone "
          f"in {decode:.3f} s; endpoint median {statistics.median(times):.3f} s, max "
          f"{max(times):.3f} s, body {size / 1e6:.2f} MB; /health worst {worst_health * 1000:.1f} ms "
          f"during {args.runs} collections")


def cli() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.l1_lifecycle", description=__doc__.split("\n")[0])
    p.add_argument("--groups", type=int, default=50)
    p.add_argument("--data-nodes", type=int, default=10)
    p.add_argument("--segments", type=int, default=30)
    p.add_argument("--runs", type=int, default=3)
    trio.run(main, p.parse_args())


if __name__ == "__main__":
    cli()
