"""The agent's crash-directory watcher (`fodcproxy.agent.crashwatch.CrashWatcher`) on real
directories, under trio's MockClock: no socket is involved, and the listing and reading run inline
(the `offload` seam) instead of in a worker thread, so the clock only moves when the watcher waits.

What is checked: a new record is read within one poll interval (plus the settle delay); the
newest N are kept; hostile files (huge, garbage, symbolic links out of the directory, FIFOs,
half-written, vanishing mid-read, unreadable) are refused and said once each, never stopping the
watcher; a directory that does not exist yet, or goes away, is waited for; listing is periodic,
never a tight loop.
"""

from __future__ import annotations

import functools
import logging
import os
import pathlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from fodcproxy.agent.crash import PANIC_FILE, CrashLimits
from fodcproxy.agent.crashwatch import (
    CrashWatcher,
    RefusedFile,
    list_crash_dir,
    read_panic_file,
)
from helpers import wait_for
from test_crash_records import go_marshal, node_record

INTERVAL = 5.0
SETTLE = 0.25


async def inline(fn: Callable[[], Any]) -> Any:
    return fn()


def name(i: int, component: str = "liaison-grpc") -> str:
    return f"20260415T08{i:02d}00.000000000Z-{component}-42"


def record(i: int, **override: Any) -> bytes:
    return go_marshal(node_record(occurredAt=f"2026-04-15T08:{i:02d}:00Z", **override))


def write_artifact(root: pathlib.Path, dirname: str, data: bytes, *,
                   dump: bool = True) -> pathlib.Path:
    d = root / dirname
    d.mkdir(parents=True, exist_ok=True)
    if dump:
        (d / "deep-dump.json").write_bytes(b"{}")
    (d / PANIC_FILE).write_bytes(data)
    return d


def said(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


@asynccontextmanager
async def running(w: CrashWatcher) -> AsyncIterator[trio.Nursery]:
    """`w` running; the deadline is virtual (MockClock): a condition that never comes fails the
    test instead of hanging it."""
    with trio.fail_after(1000):
        async with trio.open_nursery() as nursery:
            await nursery.start(w.run)
            yield nursery
            nursery.cancel_scope.cancel()


def watcher(*dirs: pathlib.Path, **kwargs: Any) -> CrashWatcher:
    kwargs.setdefault("offload", inline)
    kwargs.setdefault("poll_interval", INTERVAL)
    return CrashWatcher([str(d) for d in dirs], **kwargs)


# --- finding records -----------------------------------------------------------------------------


async def test_a_new_record_is_read_within_one_interval(tmp_path: pathlib.Path,
                                                        autojump_clock: Any) -> None:
    crash = tmp_path / "crash"
    write_artifact(crash, name(0), record(0))  # there before the agent starts
    w = watcher(crash)
    start = trio.current_time()
    async with running(w):
        await wait_for(lambda: len(w.records()) == 1)
        assert trio.current_time() - start <= SETTLE + 1e-6
        # New ones, written at odd moments between listings: each is read by the first listing
        # after it plus the settle delay (the second look that proves panic.json is complete).
        for i, offset in enumerate([0.1, 2.4, 4.99, 7.3], start=1):
            await trio.sleep(offset)
            written = trio.current_time()
            write_artifact(crash, name(i), record(i))
            changed = w.changed
            await changed.wait()
            assert trio.current_time() - written <= INTERVAL + SETTLE + 1e-6, i
            assert len(w.records()) == i + 1
    newest = w.records()[0]
    assert newest.artifact_dir == name(4) and newest.component == "liaison-grpc"
    assert newest.files == ("deep-dump.json", "panic.json")
    assert newest.source == f"file://{crash}"
    assert [r.artifact_dir for r in w.records()] == [name(i) for i in (4, 3, 2, 1, 0)]


async def test_the_newest_n_are_kept(tmp_path: pathlib.Path, autojump_clock: Any) -> None:
    crash = tmp_path / "crash"
    for i in (3, 1, 4, 2, 5):
        write_artifact(crash, name(i), record(i))
    w = watcher(crash, max_records=3)
    async with running(w):
        await wait_for(lambda: w.statistics().records_read == 5)
        assert [r.artifact_dir for r in w.records()] == [name(5), name(4), name(3)]
        # An older one found late is not kept; a newer one pushes the oldest out.
        write_artifact(crash, name(0), record(0))
        await trio.sleep(INTERVAL * 2)
        assert [r.artifact_dir for r in w.records()] == [name(5), name(4), name(3)]
        write_artifact(crash, name(9), record(9))
        await wait_for(lambda: w.records()[0].artifact_dir == name(9))
        assert [r.artifact_dir for r in w.records()] == [name(9), name(5), name(4)]
        # The node prunes its oldest artifacts: the records stay (the first occurrence is the
        # evidence), until newer ones push them out.
        for i in (3, 4, 5):
            for f in (crash / name(i)).iterdir():
                f.unlink()
            (crash / name(i)).rmdir()
        await trio.sleep(INTERVAL * 2)
        assert [r.artifact_dir for r in w.records()] == [name(9), name(5), name(4)]


async def test_records_of_several_directories_are_merged(tmp_path: pathlib.Path,
                                                         autojump_clock: Any) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_artifact(a, name(1), record(1))
    write_artifact(b, name(2, "data"), record(2, component="data"))
    write_artifact(a, name(3), record(3))
    write_artifact(b, name(3), record(3))  # the same name in both: counted once (a's)
    w = watcher(a, b, max_records=2)
    async with running(w):
        await wait_for(lambda: w.statistics().records_read == 4)
    got = w.records()
    assert [(r.artifact_dir, r.source) for r in got] == [(name(3), f"file://{a}"),
                                                         (name(2, "data"), f"file://{b}")]


# --- hostile directories -------------------------------------------------------------------------


async def test_hostile_files_are_refused_and_said_once(tmp_path: pathlib.Path,
                                                       autojump_clock: Any,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fodcproxy")
    crash, outside = tmp_path / "crash", tmp_path / "outside"
    write_artifact(outside, name(50), record(50))
    write_artifact(crash, name(1), os.urandom(4096))                      # binary garbage
    huge = write_artifact(crash, name(2), b"")
    with open(huge / PANIC_FILE, "wb") as f:                              # 10 GiB, sparse
        f.truncate(10 * 1024**3)
    (crash / name(3)).symlink_to(outside / name(50))                       # a link out of it
    write_artifact(crash, name(4), b"", dump=False)
    (crash / name(4) / PANIC_FILE).unlink()
    (crash / name(4) / PANIC_FILE).symlink_to(outside / name(50) / PANIC_FILE)
    (crash / name(5)).mkdir()
    os.mkfifo(crash / name(5) / PANIC_FILE)                                # would block a read
    write_artifact(crash, name(6), b"")                                   # empty
    write_artifact(crash, name(7), record(7)[:40])                        # cut short
    (crash / name(8) / PANIC_FILE).mkdir(parents=True)                   # not an artifact
    (crash / "stray-file").write_bytes(b"x")                              # not a directory
    write_artifact(crash, name(9), record(9))                             # the one good record
    w = watcher(crash)
    async with running(w):
        await trio.sleep(INTERVAL * 10)
    assert [r.artifact_dir for r in w.records()] == [name(9)]
    expected = {
        name(1): "refused: not UTF-8",
        name(2): "refused: oversized: more than 1048576 bytes",
        name(3): "a symbolic link to a directory: not followed",
        name(4): "cannot read panic.json: panic.json is a symbolic link: not followed",
        name(5): "cannot read panic.json: panic.json is not a regular file",
        name(6): "refused: empty file",
        name(7): "refused: truncated",
    }
    for artifact, message in expected.items():
        lines = said(caplog, f"crash directory {crash}, {artifact}")
        assert len(lines) == 1, (artifact, lines)  # said once in ten intervals, not each time
        assert message in lines[0], (artifact, lines)
    assert not said(caplog, name(8)) and not said(caplog, "stray-file")
    assert w.statistics().listings <= 10 + 1 + 3 * 11  # every interval, plus settle re-listings


async def test_a_record_refused_half_written_is_read_once_complete(
        tmp_path: pathlib.Path, autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fodcproxy")
    crash = tmp_path / "crash"
    data = record(1)
    write_artifact(crash, name(1), data[:50])
    w = watcher(crash)
    async with running(w):
        await trio.sleep(INTERVAL)
        assert w.records() == () and w.statistics().bad_records == 1
        (crash / name(1) / PANIC_FILE).write_bytes(data)
        await wait_for(lambda: len(w.records()) == 1)
    assert len(said(caplog, f"{name(1)}: fine again")) == 1


async def test_a_directory_that_does_not_exist_yet_or_goes_away(
        tmp_path: pathlib.Path, autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fodcproxy")
    crash = tmp_path / "crash"
    w = watcher(crash)
    async with running(w):
        await trio.sleep(INTERVAL * 5)
        assert said(caplog, f"crash directory {crash}: does not exist (yet)") == [
            f"crash directory {crash}: does not exist (yet): looking again every 5s"]
        write_artifact(crash, name(1), record(1))
        await wait_for(lambda: len(w.records()) == 1)
        assert len(said(caplog, f"crash directory {crash}: fine again")) == 1
        for f in (crash / name(1)).iterdir():
            f.unlink()
        (crash / name(1)).rmdir()
        crash.rmdir()
        await trio.sleep(INTERVAL * 5)
        assert len(said(caplog, "does not exist (yet)")) == 2  # once per absence
        assert len(w.records()) == 1  # what was read is kept
        crash.write_bytes(b"now a file")
        await trio.sleep(INTERVAL * 3)
        assert len(said(caplog, "cannot be listed: Not a directory")) == 1
        crash.unlink()
        write_artifact(crash, name(2), record(2))
        await wait_for(lambda: len(w.records()) == 2)


async def test_a_file_vanishing_mid_read_is_no_error(tmp_path: pathlib.Path,
                                                     autojump_clock: Any,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fodcproxy")
    crash = tmp_path / "crash"
    write_artifact(crash, name(1), record(1))
    write_artifact(crash, name(2), record(2))

    async def vanishing(fn: Callable[[], Any]) -> Any:
        # The node prunes name(1) between the listing and the read.
        if isinstance(fn, functools.partial) and fn.func is read_panic_file \
                and fn.args[1] == name(1):
            (crash / name(1) / PANIC_FILE).unlink()
        return fn()

    w = watcher(crash, offload=vanishing)
    async with running(w):
        await trio.sleep(INTERVAL * 3)
    assert [r.artifact_dir for r in w.records()] == [name(2)]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING
                and "crash directory" in r.getMessage()]


async def test_permission_errors_are_said_once_and_retried(
        tmp_path: pathlib.Path, autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="fodcproxy")
    crash = tmp_path / "crash"
    write_artifact(crash, name(1), record(1))
    denied = {"list": True, "read": True}

    async def guarded(fn: Callable[[], Any]) -> Any:
        # The agent runs as root here, so chmod would not stop it: the errors are the OS's own.
        kind = "read" if fn.func is read_panic_file else "list"  # type: ignore[attr-defined]
        if denied[kind]:
            raise PermissionError(13, "Permission denied")
        return fn()

    w = watcher(crash, offload=guarded)
    async with running(w):
        await trio.sleep(INTERVAL * 4)
        assert said(caplog, f"crash directory {crash}: cannot be listed: Permission denied")
        denied["list"] = False
        await trio.sleep(INTERVAL * 4)
        assert w.records() == ()
        denied["read"] = False
        await wait_for(lambda: len(w.records()) == 1)
    assert len(said(caplog, "cannot be listed")) == 1
    assert len(said(caplog, f"{name(1)}: cannot read panic.json: Permission denied")) == 1
    assert len(said(caplog, f"{name(1)}: fine again")) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
async def test_unreadable_artifact_directory(tmp_path: pathlib.Path, autojump_clock: Any,
                                             caplog: pytest.LogCaptureFixture) -> None:
    crash = tmp_path / "crash"
    write_artifact(crash, name(1), record(1))
    write_artifact(crash, name(2), record(2))
    (crash / name(1)).chmod(0)
    try:
        w = watcher(crash)
        async with running(w):
            await trio.sleep(INTERVAL * 3)
        assert [r.artifact_dir for r in w.records()] == [name(2)]
        assert len(said(caplog, f"{name(1)}: cannot open the directory")) == 1
    finally:
        (crash / name(1)).chmod(0o755)


async def test_an_unexpected_error_is_said_and_the_watcher_goes_on(
        tmp_path: pathlib.Path, autojump_clock: Any, caplog: pytest.LogCaptureFixture) -> None:
    crash = tmp_path / "crash"
    write_artifact(crash, name(1), record(1))
    broken = [True]

    async def buggy(fn: Callable[[], Any]) -> Any:
        if broken[0]:
            raise RuntimeError("a bug")
        return fn()

    w = watcher(crash, offload=buggy)
    async with running(w):
        await trio.sleep(INTERVAL * 3)
        broken[0] = False
        await wait_for(lambda: len(w.records()) == 1)
    assert len(said(caplog, "unexpected error, retrying next interval: RuntimeError('a bug')")) == 1


async def test_listing_is_periodic_even_when_a_file_never_settles(
        tmp_path: pathlib.Path, autojump_clock: Any) -> None:
    crash = tmp_path / "crash"
    d = write_artifact(crash, name(1), b"{")
    listings: list[float] = []

    async def growing(fn: Callable[[], Any]) -> Any:
        # A writer that never finishes: panic.json is longer at every listing.
        if fn.func is list_crash_dir:  # type: ignore[attr-defined]
            listings.append(trio.current_time())
            with open(d / PANIC_FILE, "ab") as f:
                f.write(b" ")
        return fn()

    w = watcher(crash, offload=growing)
    async with running(w):
        await trio.sleep(INTERVAL * 10 - 0.01)
    # Each interval: one listing on the grid and at most three settle re-listings after it.
    assert len(listings) <= 10 * 4
    per_interval = [sum(1 for t in listings if k * INTERVAL <= t - listings[0] < (k + 1) * INTERVAL)
                    for k in range(10)]
    assert per_interval == [4] * 10
    assert w.statistics().records_read == 0


async def test_an_idle_directory_is_listed_once_per_interval(tmp_path: pathlib.Path,
                                                             autojump_clock: Any) -> None:
    crash = tmp_path / "crash"
    write_artifact(crash, name(1), record(1))
    w = watcher(crash)
    start = trio.current_time()
    async with running(w):
        await trio.sleep(INTERVAL * 20 - 0.01)
    assert trio.current_time() - start == pytest.approx(INTERVAL * 20, abs=0.02)
    assert w.statistics().listings == 20 + 1  # 20 on the grid and one settle re-listing


async def test_too_many_artifact_directories(tmp_path: pathlib.Path, autojump_clock: Any,
                                             caplog: pytest.LogCaptureFixture) -> None:
    crash = tmp_path / "crash"
    for i in range(12):
        write_artifact(crash, name(i), record(i), dump=False)
    w = watcher(crash, max_dirs=4, max_records=10)
    async with running(w):
        await trio.sleep(INTERVAL * 3)
        write_artifact(crash, name(12), record(12), dump=False)  # more still: said once, above
        await trio.sleep(INTERVAL * 3)
    # 8 drops out of the listing, not out of memory: its record was read and is kept
    assert [r.artifact_dir for r in w.records()] == [name(i) for i in (12, 11, 10, 9, 8)]
    assert len(said(caplog, "more than 4 sub-directories: only the newest 4")) == 1


# --- the blocking parts, directly ----------------------------------------------------------------


def test_read_is_bounded_and_refuses_links_and_fifos(tmp_path: pathlib.Path) -> None:
    crash = tmp_path / "crash"
    d = write_artifact(crash, name(1), b"x" * 100_000)
    assert read_panic_file(str(crash), name(1), PANIC_FILE, 1000) == b"x" * 1000
    assert len(read_panic_file(str(crash), name(1), PANIC_FILE, 10**9)) == 100_000
    (d / "link.json").symlink_to(d / PANIC_FILE)
    with pytest.raises(RefusedFile, match="symbolic link"):
        read_panic_file(str(crash), name(1), "link.json", 1000)
    (crash / "linked-dir").symlink_to(d)
    with pytest.raises(RefusedFile, match="symbolic link"):
        read_panic_file(str(crash), "linked-dir", PANIC_FILE, 1000)
    os.mkfifo(d / "fifo")
    with pytest.raises(RefusedFile, match="not a regular file"):
        read_panic_file(str(crash), name(1), "fifo", 1000)
    with pytest.raises(FileNotFoundError):
        read_panic_file(str(crash), name(2), PANIC_FILE, 1000)


def test_listing_caps_files_but_always_finds_panic_json(tmp_path: pathlib.Path) -> None:
    crash = tmp_path / "crash"
    d = write_artifact(crash, name(1), record(1))
    for i in range(50):
        (d / f"extra-{i}").write_bytes(b"")
    (d / "sub").mkdir()
    listing = list_crash_dir(str(crash), max_files=5)
    [artifact] = listing.artifacts
    names = [f.name for f in artifact.files]
    assert PANIC_FILE in names and "sub" not in names and len(names) <= 6
    assert listing.problems == {name(1): "more than 5 files: only 5 are listed"}


def test_limits_reach_the_keepers(tmp_path: pathlib.Path) -> None:
    w = CrashWatcher([str(tmp_path)], limits=CrashLimits(max_file_bytes=10), max_records=7)
    [keeper] = w.keepers.values()
    assert keeper.limits.max_file_bytes == 10 and keeper.max_records == 7
    with pytest.raises(ValueError):
        CrashWatcher([])


# --- memory --------------------------------------------------------------------------------------


def hostile_record(i: int) -> bytes:
    """A record under every cap that costs CPython the most: one character past U+FFFF makes
    each string 4 bytes per character (0.8 MB of file, 3.2 MB of strings)."""
    wide = "\U0001f600"
    return record(i, goroutineStack=wide + "x" * (256 * 1024 - 1),
                  panicValue=wide + "y" * (64 * 1024 - 1),
                  processMetadata={f"k{j}": wide + "v" * 3000 for j in range(64)},
                  breadcrumbs=[{"stage": f"s{j}", "fields": {f"f{k}": wide + "w" * 400
                                                               for k in range(10)}}
                               for j in range(64)])


def many_values_record(i: int) -> bytes:
    return record(i, breadcrumbs=[{"stage": "s", "time": "2026-04-15T08:00:00Z",
                                   "fields": {f"f{k}": "" for k in range(60)}}
                                  for _ in range(60)])


@pytest.mark.parametrize("make", [hostile_record, many_values_record, record])
def test_record_cost_is_what_tracemalloc_sees(make: Callable[[int], bytes]) -> None:
    import gc
    import tracemalloc

    from fodcproxy.agent.crash import parse_crash_record, record_cost

    datas = [make(i) for i in range(8)]
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        records = [parse_crash_record(d, artifact_dir=name(i), limits=CrashLimits(max_values=10**5))
                   for i, d in enumerate(datas)]
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    estimate = sum(record_cost(r) for r in records)
    print(f"{make.__name__}: file {len(datas[0])} B, held {used // 8} B, estimate {estimate // 8} B")
    assert used <= 1.1 * estimate  # never much under: the budget below rests on it
    if make is hostile_record:
        assert estimate <= 1.2 * used  # and close where it matters


async def test_memory_held_is_bounded(tmp_path: pathlib.Path, autojump_clock: Any) -> None:
    crash = tmp_path / "crash"
    for i in range(8):
        write_artifact(crash, name(i), hostile_record(i), dump=False)
    budget = 8 * 1024 * 1024
    w = watcher(crash, max_bytes=budget)
    async with running(w):
        await wait_for(lambda: w.statistics().records_read >= 1 and not w.keepers[str(crash)].pending)
        await trio.sleep(INTERVAL)
    held = w.statistics().bytes_held
    assert budget - 3.5 * 1024 * 1024 < held <= budget  # two hostile records, not eight
    assert [r.artifact_dir for r in w.records()] == [name(7), name(6)]


async def test_names_that_are_not_utf8_or_not_printable(tmp_path: pathlib.Path,
                                                        autojump_clock: Any,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    from fodcproxy.agent.crash import encode_record

    caplog.set_level(logging.INFO, logger="fodcproxy")
    crash = tmp_path / "crash"
    crash.mkdir()
    raw = os.fsencode(crash)
    os.mkdir(raw + b"/bad-\xff-name")                   # not UTF-8: cannot be sent, ignored
    with open(raw + b"/bad-\xff-name/" + PANIC_FILE.encode(), "wb") as f:
        f.write(record(2))
    forged = "x\nERROR forged log line"                 # printable it is not: escaped in logs
    d = write_artifact(crash, forged, record(1, panicValue="boom\nERROR forged too"))
    with open(os.fsencode(d) + b"/dump-\xfe.bin", "wb"):  # a file name that is not UTF-8
        pass
    async with running(w := watcher(crash)):
        await wait_for(lambda: len(w.records()) == 1)
    [rec] = w.records()
    assert rec.artifact_dir == forged
    assert "dump-\ufffd.bin" in rec.files
    encode_record(rec)  # protobuf takes every string of it
    messages = [r.getMessage() for r in caplog.records]
    assert not any("\nERROR" in m for m in messages), messages
    assert any("x\\nERROR forged log line" in m and "boom\\nERROR forged too" in m
               for m in messages), messages
    assert len(said(caplog, "the name is not UTF-8: ignored")) == 1


async def test_a_hung_file_system_holds_up_neither_start_nor_stop(
        tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Real worker threads here (the default offload), and a listing that never returns, as on a
    # dead NFS mount: the watcher reports started at once and is cancelled at once, leaving the
    # thread behind (it is released at the end, so the test leaks nothing).
    import threading

    from fodcproxy.agent import crashwatch

    release = threading.Event()
    entered = threading.Event()

    def hung(root: str, **kwargs: Any) -> Any:
        entered.set()
        release.wait(30)
        raise FileNotFoundError(root)

    w = CrashWatcher([str(tmp_path)], poll_interval=INTERVAL)
    monkeypatch.setattr(crashwatch, "list_crash_dir", hung)  # no dead mount to be had here
    try:
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                await nursery.start(w.run)
                await trio.to_thread.run_sync(entered.wait)
                nursery.cancel_scope.cancel()
    finally:
        release.set()
