"""`python -m fodcproxy [proxy|agent|fake-agents|demo] ...`: argument parsing and process setup.

The library never configures logging handlers; this module does, for the programs.
A bad flag value exits with status 2 and one line naming the flag.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import trio

from fodcproxy.config import ProxyConfig, format_duration, parse_duration, parse_listen_addr
from fodcproxy.errors import ConfigError
from fodcproxy.security import load_token, server_context

log = logging.getLogger("fodcproxy")

PROGRAMS = ("proxy", "agent", "fake-agents", "demo")


class FlagParser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage dump) on a bad flag."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def exit_bad_flag(exc: ConfigError, prog: str) -> NoReturn:
    """Exit 2 with one line naming the bad flag."""
    sys.stderr.write(f"{prog}: error: {exc.message}\n")
    raise SystemExit(2)


def add_proxy_flags(p: argparse.ArgumentParser) -> None:
    d = ProxyConfig()
    dur = format_duration
    p.add_argument("--grpc-listen-addr", default=":17900", help="gRPC address for agents (default :17900)")
    p.add_argument("--http-listen-addr", default=":17901", help="HTTP API address (default :17901)")
    p.add_argument("--agent-heartbeat-timeout", default=dur(d.agent_heartbeat_timeout),
                   help="an agent with no heartbeat for this long is offline (default 30s)")
    p.add_argument("--agent-cleanup-timeout", default=dur(d.agent_cleanup_timeout),
                   help="an agent offline this long is unregistered; must exceed the heartbeat "
                        "timeout (default 5m)")
    p.add_argument("--heartbeat-interval", default=dur(d.heartbeat_interval),
                   help="heartbeat interval told to agents, below the heartbeat timeout (default 10s)")
    p.add_argument("--max-agents", default=str(d.max_agents),
                   help="most agents registered at once, offline ones included (default 1000)")
    p.add_argument("--grpc-max-msg-size", default=str(d.grpc_max_msg_size),
                   help="largest gRPC message accepted, bytes (default 4194304)")
    p.add_argument("--http-read-timeout", default=dur(d.http_read_timeout),
                   help="how long a client may take to send a request, and how long an idle "
                        "keep-alive connection is kept; never cuts an answer being prepared or "
                        "sent (default 10s)")
    p.add_argument("--http-write-timeout", default=dur(d.http_write_timeout),
                   help="how long sending one response may take; a client reading slower is cut "
                        "off (default 10s)")
    p.add_argument("--collect-timeout", default=dur(d.collect_timeout),
                   help="metrics fan-out deadline; lowered by X-Prometheus-Scrape-Timeout-Seconds "
                        "(default 8s)")
    p.add_argument("--log-level", default="info", help="debug, info, warning or error (default info)")
    sec = p.add_argument_group("security (off by default)")
    sec.add_argument("--grpc-tls-cert-file", help="serve gRPC over TLS with this certificate (PEM)")
    sec.add_argument("--grpc-tls-key-file", help="... and this private key (PEM)")
    sec.add_argument("--http-tls-cert-file", help="serve HTTP over TLS with this certificate (PEM)")
    sec.add_argument("--http-tls-key-file", help="... and this private key (PEM)")
    sec.add_argument("--agent-token-file", help="agents must send 'authorization: Bearer <token>' with "
                                                "the token in this file")
    sec.add_argument("--http-token-file", help="HTTP clients must send 'Authorization: Bearer <token>' "
                                               "(except on /health)")
    p.add_argument("--max-query-window", default="24h",
                   help="longest /metrics-windows window accepted (default 24h)")
    p.add_argument("--shutdown-grace", default=dur(d.shutdown_grace),
                   help="on SIGTERM, how long running HTTP requests get to finish (then agents' "
                        "calls get as long to end); keep it above --collect-timeout (default 10s)")
    p.add_argument("--advertise-http-addr", default=None,
                   help="host:port that /sd gives Prometheus as the scrape target (default: the "
                        "HTTP listen address; the host name when listening on all interfaces)")


def parse_int(text: str, flag: str) -> int:
    """A whole number, or ConfigError naming `flag`."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(flag, f"{text!r} is not a whole number") from None


def _readable(path: str | None, flag: str) -> str | None:
    if path is not None and not os.access(path, os.R_OK):
        raise ConfigError(flag, f"cannot read {path}")
    return path


def proxy_config_from_args(ns: argparse.Namespace) -> ProxyConfig:
    """Raises ConfigError naming the first bad flag."""
    grpc_host, grpc_port = parse_listen_addr(ns.grpc_listen_addr, flag="--grpc-listen-addr")
    http_host, http_port = parse_listen_addr(ns.http_listen_addr, flag="--http-listen-addr")
    config = ProxyConfig(
        grpc_host=grpc_host,
        grpc_port=grpc_port,
        http_host=http_host,
        http_port=http_port,
        agent_heartbeat_timeout=parse_duration(ns.agent_heartbeat_timeout, flag="--agent-heartbeat-timeout"),
        agent_cleanup_timeout=parse_duration(ns.agent_cleanup_timeout, flag="--agent-cleanup-timeout"),
        heartbeat_interval=parse_duration(ns.heartbeat_interval, flag="--heartbeat-interval"),
        max_agents=parse_int(ns.max_agents, "--max-agents"),
        grpc_max_msg_size=parse_int(ns.grpc_max_msg_size, "--grpc-max-msg-size"),
        http_read_timeout=parse_duration(ns.http_read_timeout, flag="--http-read-timeout"),
        http_write_timeout=parse_duration(ns.http_write_timeout, flag="--http-write-timeout"),
        collect_timeout=parse_duration(ns.collect_timeout, flag="--collect-timeout"),
        log_level=ns.log_level,
        grpc_tls_cert_file=_readable(ns.grpc_tls_cert_file, "--grpc-tls-cert-file"),
        grpc_tls_key_file=_readable(ns.grpc_tls_key_file, "--grpc-tls-key-file"),
        http_tls_cert_file=_readable(ns.http_tls_cert_file, "--http-tls-cert-file"),
        http_tls_key_file=_readable(ns.http_tls_key_file, "--http-tls-key-file"),
        agent_token=load_token(ns.agent_token_file, flag="--agent-token-file") if ns.agent_token_file else None,
        http_token=load_token(ns.http_token_file, flag="--http-token-file") if ns.http_token_file else None,
        max_query_window=parse_duration(ns.max_query_window, flag="--max-query-window"),
        shutdown_grace=parse_duration(ns.shutdown_grace, flag="--shutdown-grace"),
        advertise_http_addr=ns.advertise_http_addr,
    )
    # Load certificates now, so a bad one is a flag error and not a crash after binding.
    if config.grpc_tls_cert_file and config.grpc_tls_key_file:
        server_context(config.grpc_tls_cert_file, config.grpc_tls_key_file, flag="--grpc-tls-cert-file")
    if config.http_tls_cert_file and config.http_tls_key_file:
        server_context(config.http_tls_cert_file, config.http_tls_key_file, flag="--http-tls-cert-file")
    return config


def tune_gc_for_serving() -> None:
    """For the long-running programs, not the library: freeze what start-up allocated and collect
    the young generation less often. A scrape of a big fleet allocates many short-lived objects;
    with the defaults, full collections that free nothing took 200-290 ms every few scrapes at
    1,000 agents (benchmarks/README.md, P2)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper().replace("WARN", "WARNING").replace("WARNINGING", "WARNING")),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # h2/hpack debug lines are noise even at debug level.
    for noisy in ("hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def run_until_signal(serve: Callable[..., Any], stop: Callable[[], None], *args: Any) -> None:
    """Run `serve(*args)`; on SIGINT/SIGTERM call `stop()` once (orderly), twice: cancel."""
    async with trio.open_nursery() as nursery:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async def watch() -> None:
                count = 0
                async for signum in signals:
                    count += 1
                    log.info("received %s%s", signal.Signals(signum).name,
                             "" if count == 1 else " again: stopping now")
                    if count == 1:
                        stop()
                    else:
                        nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await serve(*args)
            nursery.cancel_scope.cancel()


def proxy_main(argv: Sequence[str], prog: str = "python -m fodcproxy") -> None:
    parser = FlagParser(prog=prog, description="FODC proxy: agent registry, metrics fan-out and HTTP API.")
    add_proxy_flags(parser)
    ns = parser.parse_args(argv)
    try:
        config = proxy_config_from_args(ns)
    except ConfigError as exc:
        exit_bad_flag(exc, prog)
    setup_logging(config.log_level)

    from fodcproxy.proxy import Proxy  # imported before tune_gc_for_serving() freezes it

    async def main() -> None:
        proxy = Proxy(config)
        await run_until_signal(proxy.run, proxy.shutdown)

    tune_gc_for_serving()
    trio.run(main)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    program = args[0] if args and args[0] in PROGRAMS else "proxy"
    if args and args[0] in PROGRAMS:
        args = args[1:]
    if program == "proxy":
        proxy_main(args)
    elif program == "agent":
        from fodcproxy.agent.main import agent_main

        agent_main(args)
    elif program == "fake-agents":
        from fodcproxy.testing.cli import fake_agents_main

        fake_agents_main(args)
    else:
        from fodcproxy.testing.cli import demo_main

        demo_main(args)
