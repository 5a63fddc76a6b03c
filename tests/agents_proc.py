"""Run N fake agents in one process, for the process-level fault tests.

    python tests/agents_proc.py HOST:PORT COUNT PORT_BASE [RECONNECT_INTERVAL] [--churn SECONDS]

Each agent's identity is (127.0.0.1, PORT_BASE + i, role by i) and it reports one gauge
`agent_port` whose value is its own port, so a test can check nothing is misattributed. Prints
`READY id id ...` once all are registered. On SIGTERM: goodbyes, then `STATS connects=N` and exit 0.
With --churn, agents drop their connection at random (and reconnect) until stopped.
"""

from __future__ import annotations

import random
import signal
import sys

import trio

from fodcproxy.testing import FakeAgent, static

ROLES = ["liaison", "datanode-hot", "datanode-warm", "datanode-cold"]


async def main() -> None:
    addr, count, port_base = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    reconnect = float(sys.argv[4]) if len(sys.argv) > 4 and not sys.argv[4].startswith("--") else 0.5
    churn = float(sys.argv[sys.argv.index("--churn") + 1]) if "--churn" in sys.argv else 0.0
    agents = [
        FakeAgent(addr, role=ROLES[i % len(ROLES)], ip="127.0.0.1", port=port_base + i,
                  series=[static("agent_port", float(port_base + i))], reconnect_interval=reconnect)
        for i in range(count)
    ]
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            ids = [await nursery.start(a.run) for a in agents]
            print("READY", *ids, flush=True)

            async def churner() -> None:
                rng = random.Random(7)
                while True:
                    await trio.sleep(churn)
                    rng.choice(agents).drop()

            if churn:
                nursery.start_soon(churner)
            async for _ in signals:
                break
            for a in agents:
                a.disconnect()
            nursery.cancel_scope.deadline = trio.current_time() + 5
    connects = sum(a.client.statistics().connects for a in agents)
    print(f"STATS connects={connects}", flush=True)


if __name__ == "__main__":
    trio.run(main)
