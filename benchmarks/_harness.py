"""What every benchmark needs: the proxy and the fake agents as processes of their own, a raw HTTP
client that reads whole bodies, /proc figures of a process, the reference render, and the figures
line.

Everything here is bounded: each wait has a deadline, each loop a count, and every process started
is stopped (SIGTERM, then SIGKILL) when its `with` block ends, whatever happened inside.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import attrs
import trio

#: Every agent gets one node label, so each sample carries 5 enrichment labels (agent_id,
#: node_role, node_ip, node_port, node_zone) beside its own 5.
NODE_LABELS = "zone=a"
_READY_RE = re.compile(r"proxy ready: gRPC (\S+), HTTP http://([0-9.]+):([0-9]+)")
_CLK_TCK = os.sysconf("SC_CLK_TCK")
MB = 1024 * 1024
#: A keep-alive connection idle for longer than this is replaced before the next request
#: (hypercorn closes idle connections after 5 s).
IDLE_REUSE = 2.0


# --- processes ------------------------------------------------------------------------------------


def _stop(proc: subprocess.Popen[Any], grace: float) -> None:
    """SIGTERM (an orderly stop), then SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@attrs.define
class ProxyProcess:
    proc: subprocess.Popen[Any]
    grpc_address: str
    http_host: str
    http_port: int
    log_path: str

    @property
    def pid(self) -> int:
        return self.proc.pid


#: The proxy started the way `python -m fodcproxy` starts it, after changing the garbage
#: collector's settings (the --gc-threshold and --gc-freeze experiments; the proxy itself leaves
#: the interpreter's defaults): a threshold, and/or the imported modules frozen out of collection.
_GC_BOOT = ("import gc, runpy, sys\n"
            "if {threshold}: gc.set_threshold({threshold}, 10, 10)\n"
            "if {freeze}:\n"
            "    import fodcproxy.cli, fodcproxy.proxy\n"
            "    gc.collect(); gc.freeze()\n"
            "runpy.run_module('fodcproxy', run_name='__main__', alter_sys=True)\n")


@contextlib.contextmanager
def run_proxy(*extra: str, timeout: float = 30.0, gc_threshold: int | None = None,
              gc_freeze: bool = False) -> Iterator[ProxyProcess]:
    """`python -m fodcproxy` on 127.0.0.1, ports picked by the OS; stopped when the block ends.

    Experiments: `gc_threshold` starts it with that first garbage-collector threshold instead of
    700; `gc_freeze` with every module it imports frozen out of the collector's way.
    """
    start = (["-m", "fodcproxy"] if gc_threshold is None and not gc_freeze
             else ["-c", _GC_BOOT.format(threshold=int(gc_threshold or 0), freeze=gc_freeze)])
    cmd = [sys.executable, *start, "--grpc-listen-addr", "127.0.0.1:0",
           "--http-listen-addr", "127.0.0.1:0", *extra]
    with tempfile.NamedTemporaryFile("w+b", prefix="fodc-bench-proxy-", suffix=".log",
                                     delete=False) as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + timeout
            while True:
                with open(log.name, encoding="utf-8", errors="replace") as f:
                    match = _READY_RE.search(f.read())
                if match:
                    break
                if proc.poll() is not None or time.monotonic() > deadline:
                    with open(log.name, encoding="utf-8", errors="replace") as f:
                        tail = f.read()[-2000:]
                    raise RuntimeError(f"the proxy did not start (status {proc.poll()}):\n{tail}")
                time.sleep(0.05)
            yield ProxyProcess(proc, match.group(1), match.group(2), int(match.group(3)),
                               log.name)
        finally:
            _stop(proc, 5.0)
            if os.environ.get("FODC_BENCH_KEEP_LOG"):
                sys.stderr.write(f"proxy log kept: {log.name}\n")
            else:
                os.unlink(log.name)


@attrs.define
class AgentsProcess:
    proc: subprocess.Popen[Any]
    started: float  # time.monotonic() just before the process was spawned
    out_path: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def fleet_seconds(self) -> float | None:
        """What the fleet printed: "N agents registered in X s" (None if not printed yet)."""
        with open(self.out_path, encoding="utf-8", errors="replace") as f:
            match = re.search(r"registered in ([0-9.]+) s", f.read())
        return float(match.group(1)) if match else None


@contextlib.contextmanager
def run_agents(proxy: ProxyProcess, *, count: int, series: int, history_points: int = 0,
               extra: Sequence[str] = ()) -> Iterator[AgentsProcess]:
    """`python -m fodcproxy fake-agents`: `count` agents with `series` series of 5 labels each."""
    cmd = [sys.executable, "-m", "fodcproxy", "fake-agents", "--proxy-addr", proxy.grpc_address,
           "--count", str(count), "--series", str(series), "--labels", NODE_LABELS,
           "--history-points", str(history_points), *extra]
    with tempfile.NamedTemporaryFile("w+b", prefix="fodc-bench-agents-", suffix=".log",
                                     delete=False) as out:
        started = time.monotonic()
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        try:
            yield AgentsProcess(proc, started, out.name)
        finally:
            _stop(proc, 10.0)
            os.unlink(out.name)


@contextlib.contextmanager
def profiled(pid: int, path: str | None) -> Iterator[None]:
    """Sample the process with py-spy (if `path` is given) while the block runs: raw folded
    stacks (one per line) to `path`. py-spy is not a dependency: `pip install py-spy`."""
    if not path:
        yield
        return
    proc = subprocess.Popen(["py-spy", "record", "-p", str(pid), "-o", path, "-f", "raw",
                             "-r", "200", "--nonblocking"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)  # attached
        yield
    finally:
        proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def start_profile(pid: int, path: str | None) -> contextlib.ExitStack:
    """`profiled()` until the returned stack is closed."""
    stack = contextlib.ExitStack()
    stack.enter_context(profiled(pid, path))
    return stack


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/<pid>/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    fields = data[data.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of a process, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux: write 5 to clear_refs). False where not allowed."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- a raw HTTP/1.1 client ------------------------------------------------------------------------


@attrs.frozen
class Reply:
    status: int
    headers: dict[str, str]
    size: int  # body bytes
    seconds: float  # request sent -> last body byte received
    body: bytes | None


class HttpConnection:
    """One keep-alive HTTP/1.1 connection that reads whole bodies (Content-Length or chunked)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._sock: trio.SocketStream | None = None
        self._buf = bytearray()
        self._last_used = 0.0

    async def aclose(self) -> None:
        if self._sock is not None:
            await self._sock.aclose()
            self._sock = None

    async def _fill(self) -> None:
        assert self._sock is not None
        data = await self._sock.receive_some(1 << 20)
        if not data:
            raise EOFError("the server closed the connection")
        self._buf += data

    async def get(self, path: str, *, headers: dict[str, str] | None = None, keep: bool = False,
                  timeout: float = 60.0) -> Reply:
        """GET `path`; the body is kept only when `keep` (its size always is)."""
        with trio.fail_after(timeout):
            if self._sock is not None and time.monotonic() - self._last_used > IDLE_REUSE:
                await self.aclose()  # the server may be closing it (keep-alive timeout)
            if self._sock is None:
                self._sock = await trio.open_tcp_stream(self.host, self.port)
                self._buf = bytearray()
            lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
            lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
            request = ("\r\n".join(lines) + "\r\n\r\n").encode()
            start = time.perf_counter()
            await self._sock.send_all(request)
            buf = self._buf
            while (end := buf.find(b"\r\n\r\n")) < 0:
                await self._fill()
            head = buf[:end].decode("latin-1").split("\r\n")
            del buf[: end + 4]
            status = int(head[0].split()[1])
            hdrs: dict[str, str] = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                hdrs[name.strip().lower()] = value.strip()
            parts: list[bytes] = []
            size = 0
            if "content-length" in hdrs:
                length = int(hdrs["content-length"])
                while len(buf) < length:
                    await self._fill()
                if keep:
                    parts.append(bytes(buf[:length]))
                size = length
                del buf[:length]
            elif hdrs.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    while (eol := buf.find(b"\r\n")) < 0:
                        await self._fill()
                    n = int(bytes(buf[:eol]).split(b";")[0], 16)
                    if n == 0:
                        # The last chunk, then trailers (if any) up to an empty line.
                        while (eot := buf.find(b"\r\n\r\n", eol)) < 0:
                            await self._fill()
                        del buf[: eot + 4]
                        break
                    while len(buf) < eol + 2 + n + 2:
                        await self._fill()
                    if keep:
                        parts.append(bytes(buf[eol + 2: eol + 2 + n]))
                    size += n
                    del buf[: eol + 2 + n + 2]
            else:  # delimited by the end of the connection
                with contextlib.suppress(EOFError):
                    while True:
                        await self._fill()
                size = len(buf)
                if keep:
                    parts.append(bytes(buf))
                buf.clear()
                await self.aclose()
            seconds = time.perf_counter() - start
            self._last_used = time.monotonic()
            if hdrs.get("connection", "").lower() == "close":
                await self.aclose()
        return Reply(status, hdrs, size, seconds, b"".join(parts) if keep else None)


@attrs.frozen
class Measured:
    """The measured requests of one benchmark run (see measure())."""

    times: list[float]
    sizes: list[int]
    collects: list[float]  # the fan-out's part, from the proxy's own header
    missed: int  # agent answers missing over all requests
    cpu: float  # proxy CPU seconds per request
    agents_cpu: float  # fake-agents CPU seconds per request
    rss: int
    peak: int
    exact_peak: bool  # False: the kernel could not reset VmHWM, so peak is since start


def scrape_figures(m: Measured, ref: Reference, target: float) -> str:
    """The part of a /metrics line P1 and P2 share: timings against the reference, body, CPU."""
    median = statistics.median(m.times)
    ratio = median / ref.median()
    return (
        f"runs={len(m.times)} median={fmt_s(median)} ({spread(m.times)}) "
        f"collect={fmt_s(statistics.median(m.collects))} "
        f"ref_generate_latest={fmt_s(ref.median())} ({spread(ref.times)}) "
        f"ratio={ratio:.2f} target<={target} {verdict(ratio <= target)} "
        f"body={fmt_mb(statistics.median(m.sizes))} missed={m.missed} "
        f"proxy_cpu={m.cpu:.3f}s/scrape agents_cpu={m.agents_cpu:.3f}s/scrape"
    )


async def measure(conn: HttpConnection, path: str, proxy: ProxyProcess, agents: AgentsProcess,
                  ref: Reference, args: argparse.Namespace, *, timeout: float = 60.0) -> Measured:
    """`args.runs` GETs of `path`, alternating with `args.ref_runs` reference renders (the
    cluster is idle meanwhile, so only this process works), profiled with `args.py_spy`."""
    profile = start_profile(proxy.pid, args.py_spy)
    exact_peak = reset_peak(proxy.pid)
    cpu0, acpu0 = cpu_seconds(proxy.pid), cpu_seconds(agents.pid)
    times: list[float] = []
    sizes: list[int] = []
    collects: list[float] = []
    missed = 0
    for i in range(max(args.runs, args.ref_runs)):
        if i < args.runs:
            reply = await conn.get(path, timeout=timeout)
            if reply.status != 200:
                raise RuntimeError(f"{path} answered {reply.status}")
            missed += args.agents - int(reply.headers.get("x-fodc-agents-answered", 0))
            times.append(reply.seconds)
            sizes.append(reply.size)
            collects.append(float(reply.headers["x-fodc-collect-duration-seconds"]))
        if i < args.ref_runs:
            ref.run()
    profile.close()
    cpu = (cpu_seconds(proxy.pid) - cpu0) / args.runs
    acpu = (cpu_seconds(agents.pid) - acpu0) / args.runs
    rss, peak = memory(proxy.pid)
    return Measured(times, sizes, collects, missed, cpu, acpu, rss, peak, exact_peak)


async def get_json(host: str, port: int, path: str) -> Any:
    conn = HttpConnection(host, port)
    try:
        reply = await conn.get(path, keep=True, timeout=10.0)
    finally:
        await conn.aclose()
    assert reply.body is not None
    return json.loads(reply.body)


async def wait_registered(proxy: ProxyProcess, agents: AgentsProcess, count: int, *,
                          timeout: float) -> float:
    """Poll /health until `count` agents are online; returns seconds since the agents' process
    was spawned. Raises RuntimeError after `timeout`."""
    deadline = time.monotonic() + timeout
    conn = HttpConnection(proxy.http_host, proxy.http_port)
    try:
        while True:
            reply = await conn.get("/health", keep=True, timeout=10.0)
            assert reply.body is not None
            if json.loads(reply.body)["agents_online"] >= count:
                return time.monotonic() - agents.started
            if agents.proc.poll() is not None:
                raise RuntimeError(f"fake-agents exited with status {agents.proc.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"fewer than {count} agents registered within {timeout} s")
            await trio.sleep(0.05)
    finally:
        await conn.aclose()


# --- the reference: prometheus_client rendering the same samples ---------------------------------


class _Shapes:
    """Series shaped like the fake agents' (16 families, 5 labels), for when their generator
    cannot be imported."""

    def __init__(self, series: int) -> None:
        from fodcproxy.rpc.convert import pb

        kinds = ("write", "query", "flush", "merge", "sync")
        services = ("measure", "stream", "trace", "property")
        self.metrics = [
            pb.Metric(name=f"banyandb_family_{i % 16}_total_written",
                      labels={"group": f"sw_group_{(i + i // 16) % 6}", "shard": str(i // 16),
                              "segment": f"2026{1 + i % 12:02d}{1 + i % 28:02d}",
                              "kind": kinds[i % 5], "service": services[i % 4]},
                      description=f"Help text of family {i % 16}.", type=1 + i % 2)
            for i in range(series)
        ]

    def produce(self, window: Any, n: int, now: float) -> list[Any]:
        return self.metrics

    def value_at(self, i: int, t: float) -> float:
        return float(i) * 1234.5 + t % 1000


def _synthetic(series: int, seed: int, history_points: int) -> Any:
    try:
        from fodcproxy.testing.synthetic import SyntheticSeries
    except ImportError:
        return _Shapes(series)
    return SyntheticSeries(series, seed=seed, history_points=history_points)


def reference_blocks(nodes: Sequence[dict[str, Any]], series: int, history_points: int = 0,
                     block: int = 100_000) -> Iterator[list[Any]]:
    """The samples the proxy answers with, as prometheus_client metric families, in blocks of
    about `block` samples (agent by agent): the same names, label sets (5 own + 5 enrichment) and,
    with `history_points`, that many timestamped points per series."""
    from prometheus_client.core import Metric

    from fodcproxy.core.model import LATEST, MetricType

    now = time.time()
    families: dict[str, Any] = {}
    pending = 0
    for i, node in enumerate(nodes):
        enrich = {
            "agent_id": node["node_id"],
            "node_role": node["node_role"],
            "node_ip": node["primary_address"]["ip"],
            "node_port": str(node["primary_address"]["port"]),
        }
        enrich.update({f"node_{k}": v for k, v in sorted(node["labels"].items())})
        synthetic = _synthetic(series, i, history_points)
        points = ([now] if history_points <= 0
                  else [now - 10.0 * (history_points - 1 - k) for k in range(history_points)])
        for idx, m in enumerate(synthetic.produce(LATEST, 0, now)):
            fam = families.get(m.name)
            if fam is None:
                fam = families[m.name] = Metric(m.name, m.description,
                                                MetricType(m.type).prom_name)
            labels = {**enrich, **dict(m.labels)}
            for ts in points:
                fam.add_sample(m.name, labels, synthetic.value_at(idx, ts),
                               timestamp=ts if history_points > 0 else None)
            pending += len(points)
        if pending >= block:
            yield list(families.values())
            families, pending = {}, 0
    if families:
        yield list(families.values())


class _Fixed:
    def __init__(self, families: list[Any]) -> None:
        self.families = families

    def collect(self) -> list[Any]:
        return self.families


def render_reference(families: list[Any]) -> tuple[float, int]:
    """Seconds `generate_latest` takes to render `families`, and the bytes it wrote."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    start = time.perf_counter()
    body = generate_latest(registry)
    return time.perf_counter() - start, len(body)


class Reference:
    """Times the reference render; blocks are built once when small, else again for each run
    (building is never timed)."""

    def __init__(self, nodes: Sequence[dict[str, Any]], series: int, history_points: int = 0,
                 keep_limit: int = 150_000) -> None:
        self._args = (nodes, series, history_points)
        total = len(nodes) * series * max(history_points, 1)
        self.samples = total
        self._kept = list(reference_blocks(*self._args)) if total <= keep_limit else None
        self.times: list[float] = []
        self.size = 0

    def run(self) -> float:
        blocks = self._kept if self._kept is not None else reference_blocks(*self._args)
        seconds = 0.0
        size = 0
        for families in blocks:
            t, n = render_reference(families)
            seconds += t
            size += n
        self.times.append(seconds)
        self.size = size
        return seconds

    def median(self) -> float:
        return statistics.median(self.times)


# --- figures -----------------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0-100)."""
    ordered = sorted(values)
    k = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[k - 1]


def fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}s" if seconds >= 1 else f"{seconds * 1000:.1f}ms"


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}ms"


def fmt_mb(n: float) -> str:
    return f"{n / MB:.1f}MB" if n >= MB else f"{n / 1024:.1f}kB"


def spread(values: Sequence[float], fmt: Callable[[float], str] = fmt_s) -> str:
    return f"{fmt(min(values))}-{fmt(max(values))}"


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def common_flags(p: argparse.ArgumentParser, *, agents: int, series: int, runs: int,
                 ref_runs: int = 3) -> None:
    p.add_argument("--agents", type=int, default=agents, help=f"fake agents (default {agents})")
    p.add_argument("--series", type=int, default=series,
                   help=f"series per agent, 5 labels each (default {series})")
    p.add_argument("--runs", type=int, default=runs, help=f"measured requests (default {runs})")
    p.add_argument("--ref-runs", type=int, default=ref_runs,
                   help=f"reference renders (default {ref_runs})")
    p.add_argument("--warmup", type=int, default=1, help="unmeasured requests first (default 1)")
    p.add_argument("--register-timeout", type=float, default=120.0,
                   help="seconds allowed for every agent to register (default 120)")
    p.add_argument("--gc-threshold", type=int, default=None, metavar="N",
                   help="experiment: run the proxy after gc.set_threshold(N, 10, 10) (the default "
                        "is Python's, 700); the line then says gc_threshold=N")
    p.add_argument("--gc-freeze", action="store_true",
                   help="experiment: run the proxy with its modules frozen out of the garbage "
                        "collector (gc.freeze() after import); the line then says gc_freeze")
    p.add_argument("--py-spy", metavar="FILE", default=None,
                   help="profile the proxy with py-spy during the measured requests (raw folded "
                        "stacks to FILE; the timings are then not comparable)")


async def nodes_of(proxy: ProxyProcess) -> list[dict[str, Any]]:
    """The proxy's nodes, in the fake agents' order (their node port is port-base + index)."""
    cluster = await get_json(proxy.http_host, proxy.http_port, "/cluster")
    return sorted(cluster["nodes"], key=lambda n: n["primary_address"]["port"])


def emit(line: str, args: argparse.Namespace | None = None) -> None:
    """Print the figures line (marked when the proxy ran with a non-default GC threshold)."""
    if args is not None and getattr(args, "gc_threshold", None) is not None:
        line += f" gc_threshold={args.gc_threshold}"
    if args is not None and getattr(args, "gc_freeze", False):
        line += " gc_freeze"
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
