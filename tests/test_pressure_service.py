"""StreamPressureProfiles, the agent's side (fodcproxy.agent.profileservice), over real gRPC on
loopback: lists, byte-exact chunked fetches, every way a path may escape the profile directory,
files gone between list and fetch, cancel, lists during a long fetch, a flood of commands, and
interop with upstream's proto."""

from __future__ import annotations

import os
import shutil

import pytest
import trio

from fodcproxy.agent.profiler import ProfileStore
from fodcproxy.agent.profileservice import CHUNK_SIZE, PressureProfilesService
from fodcproxy.agent.client import AgentService
from pressure_harness import make_event, open_pressure_stream
from upstream_agent import compile_upstream

HEAP = b"heap:" + bytes(range(256)) * 10_000          # 2.5 MiB: three chunks
GOROUTINE = b"goroutines\n" * 100


@pytest.fixture(scope="module")
def up(tmp_path_factory):
    return compile_upstream(tmp_path_factory.mktemp("upstream-pressure"))


@pytest.fixture
def store(tmp_path):
    return ProfileStore(str(tmp_path / "profiles"), max_events=16, max_bytes=0)


def test_it_is_an_agent_service() -> None:
    service: AgentService = PressureProfilesService(None)
    assert service.method.endswith("/StreamPressureProfiles")


async def test_list_sends_records_oldest_first_then_complete(store, up) -> None:
    store.self_check()
    old = make_event(store, 1_782_555_000, heap=HEAP, goroutine=GOROUTINE)
    new = make_event(store, 1_782_555_300, heap=b"h2")
    with trio.fail_after(20):
        async with open_pressure_stream(PressureProfilesService(store)) as proxy:
            records = await proxy.records("list-1")
            assert [r.profile_id for r in records] == [old.profile_id, new.profile_id]
            r = records[0]
            assert r.captured_at.ToNanoseconds() == 1_782_555_000 * 10**9
            assert (r.source_endpoint, r.rss_bytes, r.cgroup_limit_bytes, r.trigger_percent,
                    r.threshold_bytes) == ("http://localhost:6060", 800 + 1_782_555_000, 1000,
                                           75, 750)
            assert [(p.type, p.filename, p.filepath, p.format, p.size_bytes)
                    for p in r.profiles] == [
                ("heap", "heap.pprof", f"{store.base}/{old.profile_id}/heap.pprof", "pprof",
                 len(HEAP)),
                ("goroutine", "goroutine.pprof",
                 f"{store.base}/{old.profile_id}/goroutine.pprof", "pprof", len(GOROUTINE))]
            # an empty listing still completes
            shutil.rmtree(store.base)
            assert await proxy.records("list-2") == []
    # Interop: what our agent sent decodes with upstream's proto, to the same fields.
    first = up.StreamPressureProfilesRequest.FromString(proxy.raw[0])
    assert first.record.profile_id == old.profile_id
    assert first.record.profiles[0].size_bytes == len(HEAP)
    assert first.record.captured_at.ToNanoseconds() == 1_782_555_000 * 10**9
    done = up.StreamPressureProfilesRequest.FromString(proxy.raw[2])
    assert done.WhichOneof("payload") == "list_complete"
    assert done.list_complete.request_id == "list-1"


async def test_fetch_is_byte_exact_in_chunks_of_at_most_1_mib(store, up) -> None:
    store.self_check()
    event = make_event(store, 1_782_555_000, heap=HEAP, goroutine=b"")
    heap_path = f"{store.base}/{event.profile_id}/heap.pprof"
    with trio.fail_after(20):
        async with open_pressure_stream(PressureProfilesService(store)) as proxy:
            data, error, chunks = await proxy.download(
                "f-1", profile_id=event.profile_id, type="heap", filepath=heap_path)
            assert (data, error) == (HEAP, "")
            assert [len(c.data) for c in chunks] == [CHUNK_SIZE, CHUNK_SIZE,
                                                     len(HEAP) - 2 * CHUNK_SIZE]
            assert [c.last for c in chunks] == [False, False, True]
            assert {(c.profile_id, c.type) for c in chunks} == {(event.profile_id, "heap")}
            # an empty profile: one empty chunk, last
            data, error, chunks = await proxy.download(
                "f-2", profile_id=event.profile_id, type="goroutine")  # no filepath: built
            assert (data, error, len(chunks), chunks[0].last) == (b"", "", 1, True)
    chunk = up.StreamPressureProfilesRequest.FromString(proxy.raw[0]).chunk
    assert (chunk.request_id, chunk.profile_id, chunk.type, chunk.last) == (
        "f-1", event.profile_id, "heap", False)
    assert chunk.data == HEAP[:CHUNK_SIZE]


def _escapes(store: ProfileStore, tmp_path) -> dict[str, dict[str, str]]:
    """Every way a fetch may point outside the profile directory, set up on disk."""
    event = make_event(store, 1_782_555_000, heap=b"fine")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "heap.pprof").write_bytes(b"SECRET")
    # a symlinked profile file inside a real event directory
    linked = make_event(store, 1_782_555_100, goroutine=b"g")
    os.symlink(secret / "heap.pprof", os.path.join(store.event_dir(linked.profile_id),
                                                   "heap.pprof"))
    # a symlinked event directory
    os.symlink(secret, store.event_dir("20260627T000000.000000000Z"))
    # a FIFO where a profile should be
    fifo = make_event(store, 1_782_555_200, goroutine=b"g")
    os.mkfifo(os.path.join(store.event_dir(fifo.profile_id), "heap.pprof"))
    base, pid = store.base, event.profile_id
    return {
        "dotdot": {"filepath": f"{base}/{pid}/../../secret/heap.pprof"},
        "dotdot-id": {"profile_id": "../secret", "type": "heap"},
        "absolute": {"filepath": str(secret / "heap.pprof")},
        "etc": {"filepath": "/etc/passwd"},
        "prefix-sibling": {"filepath": f"{base}-evil/{pid}/heap.pprof"},
        "meta": {"filepath": f"{base}/{pid}/meta.json"},
        "symlinked-file": {"filepath": f"{base}/{linked.profile_id}/heap.pprof"},
        "symlinked-dir": {"filepath": f"{base}/20260627T000000.000000000Z/heap.pprof"},
        "fifo": {"filepath": f"{base}/{fifo.profile_id}/heap.pprof"},
        "mismatch": {"profile_id": linked.profile_id, "type": "heap",
                     "filepath": f"{base}/{pid}/heap.pprof"},
    }


async def test_paths_that_escape_get_an_error_chunk(store, tmp_path) -> None:
    store.self_check()
    cases = _escapes(store, tmp_path)
    service = PressureProfilesService(store)
    with trio.fail_after(20):
        async with open_pressure_stream(service) as proxy:
            for name, fetch in cases.items():
                data, error, chunks = await proxy.download(name, **fetch)
                assert (data, len(chunks)) == (b"", 1), name
                assert error, name
                assert "SECRET" not in error
            # the listing does not show the symlinked event directory
            assert len(await proxy.records()) == 3
            # the legitimate file is still served
            ok = await proxy.download("ok", filepath=cases["dotdot"]["filepath"].split(
                "/../")[0] + "/heap.pprof")
            assert ok[:2] == (b"fine", "")
    assert service.fetch_errors == len(cases)


@pytest.mark.parametrize("name, why", [
    ("symlinked-file", "symbolic link"), ("symlinked-dir", "symbolic link"),
    ("fifo", "not a regular file"), ("etc", "outside the profile directory"),
    ("dotdot", "not a profile file"), ("mismatch", "is not in profile"),
])
async def test_escape_errors_say_why(store, tmp_path, name: str, why: str) -> None:
    store.self_check()
    fetch = _escapes(store, tmp_path)[name]
    with trio.fail_after(20):
        async with open_pressure_stream(PressureProfilesService(store)) as proxy:
            _, error, _ = await proxy.download("x", **fetch)
    assert why in error


async def test_unknown_and_deleted_profiles_get_an_error_chunk(store) -> None:
    store.self_check()
    event = make_event(store, 1_782_555_000, heap=b"h", goroutine=b"g")
    with trio.fail_after(20):
        async with open_pressure_stream(PressureProfilesService(store)) as proxy:
            _, error, _ = await proxy.download("u", profile_id="20200101T000000.000000000Z",
                                               type="heap")
            assert "not found" in error
            _, error, _ = await proxy.download("t", profile_id=event.profile_id, type="cpu")
            assert "unknown profile type" in error
            listed = await proxy.records()
            path = listed[0].profiles[0].filepath
            os.unlink(path)                       # deleted between list and fetch
            _, error, _ = await proxy.download("d", profile_id=event.profile_id, type="heap",
                                               filepath=path)
            assert "not found (evicted or deleted)" in error
            shutil.rmtree(store.event_dir(event.profile_id))  # the whole event evicted
            _, error, _ = await proxy.download("e", profile_id=event.profile_id,
                                               type="goroutine")
            assert "not found" in error


async def test_without_a_store_lists_nothing_and_refuses_fetches() -> None:
    with trio.fail_after(20):
        async with open_pressure_stream(PressureProfilesService(None)) as proxy:
            assert await proxy.records() == []
            _, error, _ = await proxy.download("x", profile_id="20200101T000000.000000000Z",
                                               type="heap")
            assert "not enabled" in error


async def test_cancel_stops_a_running_fetch_and_a_list_is_answered_meanwhile(store) -> None:
    store.self_check()
    big = os.urandom(64 * 1024) * 64                  # 4 MiB in 4 KiB chunks: 1024 chunks
    event = make_event(store, 1_782_555_000, heap=big)
    service = PressureProfilesService(store, chunk_size=4096)
    with trio.fail_after(20):
        async with open_pressure_stream(service) as proxy:
            await proxy.fetch_profile("big", profile_id=event.profile_id, type="heap")
            first = await proxy.receive()
            assert first.chunk.request_id == "big" and not first.chunk.last
            # A list while the fetch runs is answered between its chunks.
            await proxy.list_profiles("during")
            chunks = 1
            while True:
                message = await proxy.receive()
                if message.WhichOneof("payload") == "list_complete":
                    break
                if message.WhichOneof("payload") == "chunk":
                    chunks += 1
                    assert not message.chunk.last
            # Cancel: same request id, everything else empty.
            await proxy.fetch_profile("big")
            await proxy.list_profiles("after")
            while True:
                message = await proxy.receive()
                if message.WhichOneof("payload") == "list_complete":
                    break
                if message.WhichOneof("payload") == "chunk":
                    chunks += 1
                    assert not message.chunk.last       # no last, no error: it just stops
            await proxy.list_profiles("later")       # and stays stopped
            message = await proxy.receive()
            assert message.WhichOneof("payload") == "record"
            assert chunks < len(big) // 4096
    assert service.queue is not None and service.queue.cancelled == 1
    assert service.fetches_sent == 0


async def test_cancel_of_a_waiting_fetch_and_of_nothing(store) -> None:
    store.self_check()
    event = make_event(store, 1_782_555_000, heap=b"x" * 200_000, goroutine=b"g")
    service = PressureProfilesService(store, chunk_size=1024)
    with trio.fail_after(20):
        async with open_pressure_stream(service) as proxy:
            await proxy.fetch_profile("a", profile_id=event.profile_id, type="heap")
            await proxy.fetch_profile("b", profile_id=event.profile_id, type="goroutine")
            await proxy.fetch_profile("b")            # cancel b while it waits
            await proxy.fetch_profile("nobody")       # cancel of no fetch: ignored
            await proxy.fetch_profile("c", profile_id=event.profile_id, type="goroutine")
            lasts = []
            while len(lasts) < 2:
                message = await proxy.receive()
                if message.chunk.last:
                    lasts.append((message.chunk.request_id, message.chunk.error))
            assert lasts == [("a", ""), ("c", "")]


async def test_a_flood_of_fetches_is_bounded(store) -> None:
    """A proxy that sends commands faster than the agent answers: one fetch is sent, 8 wait,
    the rest are refused at once; every fetch gets exactly one final chunk."""
    store.self_check()
    event = make_event(store, 1_782_555_000, heap=os.urandom(512 * 1024))
    service = PressureProfilesService(store, chunk_size=1024, max_waiting=8)
    total = 60
    with trio.fail_after(30):
        async with open_pressure_stream(service) as proxy, trio.open_nursery() as nursery:
            async def flood() -> None:
                for k in range(total):
                    await proxy.fetch_profile(f"f{k}", profile_id=event.profile_id, type="heap")

            nursery.start_soon(flood)
            finals: dict[str, str] = {}
            sizes: dict[str, int] = {}
            while len(finals) < total:
                chunk = (await proxy.receive()).chunk
                assert chunk.request_id not in finals
                sizes[chunk.request_id] = sizes.get(chunk.request_id, 0) + len(chunk.data)
                if chunk.last:
                    finals[chunk.request_id] = chunk.error
    refused = [rid for rid, error in finals.items() if error]
    served = [rid for rid, error in finals.items() if not error]
    assert refused and all("busy" in finals[rid] for rid in refused)
    assert all(sizes[rid] == 512 * 1024 for rid in served)
    assert service.queue is not None and service.queue.peak_waiting <= 8


async def test_a_reused_request_id_is_refused_and_drops_the_running_fetch(store) -> None:
    store.self_check()
    event = make_event(store, 1_782_555_000, heap=os.urandom(1024 * 1024))
    service = PressureProfilesService(store, chunk_size=1024)
    with trio.fail_after(20):
        async with open_pressure_stream(service) as proxy:
            await proxy.fetch_profile("r", profile_id=event.profile_id, type="heap")
            assert not (await proxy.receive()).chunk.last
            await proxy.fetch_profile("r", profile_id=event.profile_id, type="heap")
            while True:
                chunk = (await proxy.receive()).chunk
                if chunk.last:
                    break
            assert "already in use" in chunk.error
            await proxy.list_profiles("after")
            while (await proxy.receive()).WhichOneof("payload") != "list_complete":
                pass
    assert service.fetches_sent == 0


async def test_a_proxy_that_goes_away_mid_fetch_ends_the_serving(store) -> None:
    store.self_check()
    event = make_event(store, 1_782_555_000, heap=os.urandom(2 * 1024 * 1024))
    service = PressureProfilesService(store, chunk_size=1024)
    with trio.fail_after(20):
        async with open_pressure_stream(service) as proxy:
            await proxy.fetch_profile("big", profile_id=event.profile_id, type="heap")
            assert not (await proxy.receive()).chunk.last
            proxy.end()                                   # the proxy ends the call mid-fetch
            await proxy.ended.wait()                      # serve() returned, nothing leaked
    assert service.fetches_sent == 0


async def test_oversized_fetch_fields_are_refused_before_queueing(store) -> None:
    store.self_check()
    service = PressureProfilesService(store)
    with trio.fail_after(20):
        async with open_pressure_stream(service) as proxy:
            await proxy.fetch_profile("big-path", filepath="/x" * 1_000_000)  # 2 MB of path
            chunk = (await proxy.receive()).chunk
            assert (chunk.request_id, chunk.last, chunk.profile_id) == ("big-path", True, "")
            assert "filepath is longer than 4096" in chunk.error
            await proxy.fetch_profile("r" * 300_000, profile_id="x")
            chunk = (await proxy.receive()).chunk
            assert chunk.request_id == "" and "request_id is longer" in chunk.error
    assert service.queue is not None and service.queue.peak_waiting == 0


async def test_a_proxy_that_stops_reading_is_given_up(store) -> None:
    store.self_check()
    event = make_event(store, 1_782_555_000, heap=os.urandom(1024 * 1024) * 16)   # 16 MiB
    service = PressureProfilesService(store, send_timeout=0.5)
    with trio.fail_after(20):
        async with open_pressure_stream(service) as proxy:
            await proxy.fetch_profile("stuck", profile_id=event.profile_id, type="heap")
            # ... and never reads: the flow-control windows fill, the agent's send waits.
            await proxy.ended.wait()
    assert service.stalled == 1 and service.fetches_sent == 0


@pytest.mark.parametrize("meta_json", [
    '{"sourceEndpoint": "\\ud800", "profiles": []}',
    '{"podName": "\\udfff"}',
    '{"profiles": [{"type": "heap", "filename": "heap.pprof", "format": "\\ud800"}]}',
])
async def test_a_meta_json_with_text_that_is_not_utf8_is_skipped_not_fatal(store, meta_json):
    """JSON may escape a lone surrogate ("\\ud800"): Python reads it as a str that protobuf
    cannot encode. Such an event (a file anyone with write access to the profile directory can
    plant) made every list_profiles raise UnicodeEncodeError out of serve(), which ended the
    agent. It is now skipped as a bad meta.json, like one that is not JSON."""
    store.self_check()
    good = make_event(store, 1_782_555_000, heap=b"h")
    bad = make_event(store, 1_782_555_300, heap=b"h")
    meta = os.path.join(store.event_dir(bad.profile_id), "meta.json")
    with open(meta, "w") as f:
        f.write(meta_json)
    with trio.fail_after(20):
        async with open_pressure_stream(PressureProfilesService(store)) as proxy:
            records = await proxy.records("list-1")
            assert [r.profile_id for r in records] == [good.profile_id]
            assert [r.profile_id for r in await proxy.records("list-2")] == [good.profile_id]
