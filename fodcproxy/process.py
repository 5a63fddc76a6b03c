"""Process helpers the four programs share: flags, Go durations, logging, GC tuning, signals, and
turning a first-run failure into one line and exit status 2.

Neutral ground: this module imports nothing of the proxy, the agent or the fakes (only
`fodcproxy.errors`), so every program may use it without loading the others. The library never
configures logging handlers; the programs do, through `setup_logging`.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import logging
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NoReturn, Protocol, TypeVar

import trio

from fodcproxy._util import lone_exception
from fodcproxy.errors import ConfigError


class _HasLogLevel(Protocol):
    @property
    def log_level(self) -> str: ...


C = TypeVar("C", bound=_HasLogLevel)

__all__ = [
    "FlagParser",
    "LOG_LEVELS",
    "PROGRAMS_HELP",
    "exit_bad_flag",
    "format_duration",
    "package_version",
    "parse_duration",
    "parse_int",
    "print_line",
    "run_program",
    "run_until_signal",
    "setup_logging",
    "tune_gc_for_serving",
]

log = logging.getLogger("fodcproxy")

#: What --log-level accepts, in every program.
LOG_LEVELS = ("debug", "info", "warning", "warn", "error", "critical")

#: The four programs, for the proxy's --help (the proxy is the default program).
PROGRAMS_HELP = """\
programs (python -m fodcproxy PROGRAM --help for each one's flags):
  proxy        the FODC proxy (the default: python -m fodcproxy [flags] runs it)
  agent        the FODC agent: scrapes a BanyanDB node and answers the proxy
  fake-agents  N simulated agents in one process, for demos and load
  demo         a proxy with fake agents of every role, for a first look"""


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


# --- flag values ---------------------------------------------------------------------------------


def parse_duration(text: str, *, flag: str = "duration") -> float:
    """Parse a Go duration ("500ms", "30s", "5m", "1h30m"; a bare "0" too) into seconds.

    Raises:
        ConfigError: naming `flag`, when the text is not a duration.
    """
    s = text.strip()
    if s in ("0", "0s"):
        return 0.0
    neg = s.startswith("-")
    if neg or s.startswith("+"):
        s = s[1:]
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if m is None:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if not s or pos != len(s):
        raise ConfigError(flag, f"{text!r} is not a duration: write it like 500ms, 30s, 5m or 1h30m")
    return -total if neg else total


def format_duration(seconds: float) -> str:
    """The shortest Go-style spelling of a duration, for messages and --help."""
    if seconds and seconds < 1:
        return f"{seconds * 1000:g}ms"
    if seconds % 3600 == 0 and seconds:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0 and seconds:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"


def parse_int(text: str, flag: str) -> int:
    """A whole number, or ConfigError naming `flag`."""
    try:
        return int(text)
    except ValueError:
        raise ConfigError(flag, f"{text!r} is not a whole number") from None


# --- parsing and exiting -------------------------------------------------------------------------


def package_version() -> str:
    """The installed distribution's version (falls back to `fodcproxy.__version__`)."""
    try:
        return importlib.metadata.version("fodcproxy")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a bare checkout
        from fodcproxy import __version__

        return __version__


class FlagParser(argparse.ArgumentParser):
    """argparse that exits 2 with one line (no usage dump) on a bad flag, and knows --version."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument("--version", action="version", version=f"fodcproxy {package_version()}",
                          help="print the version and exit")

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def exit_bad_flag(exc: ConfigError, prog: str) -> NoReturn:
    """Exit 2 with one line naming the bad flag."""
    sys.stderr.write(f"{prog}: error: {exc.message}\n")
    raise SystemExit(2)


# --- process setup -------------------------------------------------------------------------------


def tune_gc_for_serving() -> None:
    """For the long-running programs, not the library: freeze what start-up allocated and collect
    the young generation less often. A scrape of a big fleet allocates many short-lived objects;
    with the defaults, full collections that free nothing took 200-290 ms every few scrapes at
    1,000 agents (benchmarks/README.md, P2)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)


def read_config(parser: argparse.ArgumentParser, argv: Sequence[str],
                build: Callable[[argparse.Namespace], C], prog: str) -> C:
    """A program's settings from its command line, and logging set up from them.

    `build` turns the parsed flags into the settings (raising ConfigError naming a bad flag);
    a bad flag exits 2 with one line (`exit_bad_flag`).
    """
    ns = parser.parse_args(argv)
    try:
        config = build(ns)
    except ConfigError as exc:
        exit_bad_flag(exc, prog)
    setup_logging(config.log_level)
    return config


def raise_descriptor_limit() -> None:
    """Raise the soft limit on open files to the hard one (a server's first act; programs only).

    The proxy holds one descriptor per agent connection; the kernel's usual soft limit (1024)
    is below what --max-agents allows. The library never touches it.
    """
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper().replace("WARN", "WARNING").replace("WARNINGING", "WARNING")),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # h2/hpack debug lines are noise even at debug level.
    for noisy in ("hpack", "h2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def print_line(text: str) -> None:
    """Write one line of program output to stdout at once (flushed: another process may wait
    for it)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


# --- running -------------------------------------------------------------------------------------


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


def run_program(main: Callable[[], Awaitable[None]], prog: str) -> None:
    """`trio.run(main)`, where a ConfigError (a bad flag, a file that cannot be loaded, an address
    that cannot be listened on) ends the process with one line naming the flag and status 2,
    however deep in nurseries it was raised. Any other error propagates as it is."""
    try:
        trio.run(main)
    except ConfigError as exc:
        exit_bad_flag(exc, prog)
    except BaseExceptionGroup as group:
        lone = lone_exception(group)
        if isinstance(lone, ConfigError):
            exit_bad_flag(lone, prog)
        raise
