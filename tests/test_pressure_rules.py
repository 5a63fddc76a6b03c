"""The memory-pressure profiler's rules (fodcproxy.agent.pressure), sans-IO: plain tables."""

from __future__ import annotations

import json

import pytest

from fodcproxy.agent.pressure import (
    CaptureRecord,
    CgroupPaths,
    FetchQueue,
    Mount,
    PathRefused,
    PressureError,
    PressureTrigger,
    ProfileFile,
    Verdict,
    format_profile_id,
    memory_limit_files,
    parse_memory_limit,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_profile_id,
    parse_vmrss,
    plan_eviction,
    resolve_profile_path,
    stale_partials,
)

BASE = "/tmp/pressure-profiles"
ID = "20260627T101112.123456789Z"


# --- profile ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize("ns, text", [
    (1782555072_123456789, "20260627T101112.123456789Z"),
    (0, "19700101T000000.000000000Z"),
    (1782555072_000000001, "20260627T101112.000000001Z"),
])
def test_profile_id_round_trip(ns: int, text: str) -> None:
    assert format_profile_id(ns) == text
    assert parse_profile_id(text) == ns


@pytest.mark.parametrize("text", [
    "", "..", "20260627T101112Z", "20260627T101112.12345678Z", "20261327T101112.123456789Z",
    "20260627T101112.123456789Z/..", " 20260627T101112.123456789Z", ".partial-" + ID,
])
def test_not_profile_ids(text: str) -> None:
    assert parse_profile_id(text) is None


def test_profile_ids_sort_as_times() -> None:
    times = [1_000_000_000_000_000_001, 999_999_999_999_999_999, 1_782_555_072_123_456_789]
    assert sorted(format_profile_id(t) for t in times) == [format_profile_id(t)
                                                           for t in sorted(times)]


# --- the trigger ---------------------------------------------------------------------------------


def test_trigger_table() -> None:
    t = PressureTrigger(trigger_percent=75, cooldown=300)
    steps = [
        # rss, sample time, limit, now -> verdict
        (None, None, 1000, 0, Verdict.NO_RSS),
        (800, 1.0, None, 0, Verdict.NO_LIMIT),
        (800, 1.0, 1000, 0, Verdict.STALE),          # the same sample again
        (749, 2.0, 1000, 1, Verdict.BELOW),          # 75% of 1000 is 750
        (750, 3.0, 1000, 2, Verdict.CAPTURE),
        (900, 4.0, 1000, 3, Verdict.BUSY),           # the capture still runs
    ]
    for rss, ts, limit, now, verdict in steps:
        assert t.evaluate(rss=rss, sample_time=ts, limit=limit, now=now).verdict is verdict
    t.finished(ok=True, now=10)
    assert t.evaluate(rss=900, sample_time=5.0, limit=1000, now=309).verdict is Verdict.COOLDOWN
    d = t.evaluate(rss=900, sample_time=6.0, limit=1000, now=310)
    assert (d.verdict, d.rss, d.limit, d.threshold) == (Verdict.CAPTURE, 900, 1000, 750)


def test_a_failed_capture_starts_no_cooldown() -> None:
    t = PressureTrigger(trigger_percent=50, cooldown=300)
    assert t.evaluate(rss=600, sample_time=None, limit=1000, now=0).verdict is Verdict.CAPTURE
    t.finished(ok=False, now=1)
    # sample_time None (read from /proc just now) is never stale
    assert t.evaluate(rss=600, sample_time=None, limit=1000, now=2).verdict is Verdict.CAPTURE


@pytest.mark.parametrize("limit, percent, threshold", [
    (1000, 75, 750), (1001, 75, 750), (2**40, 100, 2**40), (3, 1, 0), (8 * 2**30, 90, 7730941132),
])
def test_threshold_is_integer(limit: int, percent: int, threshold: int) -> None:
    assert PressureTrigger(trigger_percent=percent, cooldown=0).threshold(limit) == threshold


@pytest.mark.parametrize("percent, cooldown", [(0, 1), (101, 1), (75, -1)])
def test_trigger_refuses_bad_settings(percent: int, cooldown: float) -> None:
    with pytest.raises(ValueError):
        PressureTrigger(trigger_percent=percent, cooldown=cooldown)


# --- eviction ------------------------------------------------------------------------------------


def ids(*n: int) -> list[str]:
    return [format_profile_id(k * 1_000_000_000) for k in n]


@pytest.mark.parametrize("sizes, max_count, max_bytes, evicted", [
    ([10, 10, 10], 16, 0, []),
    ([10, 10, 10], 2, 0, [1]),                    # oldest first
    ([10, 10, 10, 10], 1, 0, [1, 2, 3]),
    ([10, 10, 10], 0, 25, [1]),                   # bytes: 10 + 10 fit, the third does not
    ([10, 30, 10], 0, 25, [1, 2]),                # nothing older than a misfit is kept
    ([10, 10, 100], 16, 50, [1, 2]),              # the newest stays even alone over the cap
    ([5, 5, 5, 5], 3, 12, [1, 2]),                # both caps: bytes bind first
    ([], 16, 512, []),
    ([7], 0, 0, []),                               # 0 disables both caps
])
def test_plan_eviction(sizes: list[int], max_count: int, max_bytes: int,
                       evicted: list[int]) -> None:
    events = list(zip(ids(*range(1, len(sizes) + 1)), sizes, strict=True))
    shuffled = events[1::2] + events[::2]  # order of the listing does not matter
    assert plan_eviction(shuffled, max_count=max_count, max_bytes=max_bytes) == ids(*evicted)


def test_stale_partials() -> None:
    entries = [(".partial-" + ID, 0.0), (".partial-x", 950.0), (ID, 0.0), (".write-probe", 0.0)]
    assert stale_partials(entries, now=1000.0, age=600) == [".partial-" + ID]


# --- which file a fetch may open -----------------------------------------------------------------


@pytest.mark.parametrize("filepath, profile_id, type_, expect", [
    (f"{BASE}/{ID}/heap.pprof", ID, "heap", (ID, "heap.pprof")),
    (f"{BASE}/{ID}/goroutine.pprof", "", "", (ID, "goroutine.pprof")),
    ("", ID, "goroutine", (ID, "goroutine.pprof")),
])
def test_resolve_accepts(filepath: str, profile_id: str, type_: str,
                         expect: tuple[str, str]) -> None:
    assert resolve_profile_path(BASE, filepath, profile_id=profile_id, type_=type_) == expect


@pytest.mark.parametrize("filepath, profile_id, type_, why", [
    ("/etc/passwd", "", "", "outside the profile directory"),
    (f"{BASE}/../../etc/passwd", "", "", "not a profile file"),
    (f"{BASE}/{ID}/../../../etc/shadow", "", "", "not a profile file"),
    (f"{BASE}/{ID}/./heap.pprof", "", "", "not a profile file"),
    (f"{BASE}//{ID}/heap.pprof", "", "", "not a profile file"),
    (f"{BASE}/{ID}/heap.pprof/", "", "", "not a profile file"),
    (f"{BASE}/{ID}/meta.json", "", "", "not a profile file"),
    (f"{BASE}/.partial-{ID}/heap.pprof", "", "", "not a profile file"),
    (f"{BASE}-evil/{ID}/heap.pprof", "", "", "outside the profile directory"),
    (f"tmp/pressure-profiles/{ID}/heap.pprof", "", "", "outside the profile directory"),
    (f"{BASE}/{ID}/heap.pprof\x00", "", "", "not a valid path"),
    (f"{BASE}/{ID}/heap.pprof", "20260627T101112.000000000Z", "", "is not in profile"),
    (f"{BASE}/{ID}/heap.pprof", "", "goroutine", "is not the goroutine profile"),
    (f"{BASE}/{ID}/heap.pprof", "", "cpu", "unknown profile type"),
    ("", ID, "", "names no filepath"),
    ("", "../..", "heap", "not a profile file"),
    (BASE + "/" + "a" * 5000, "", "", "not a valid path"),
])
def test_resolve_refuses(filepath: str, profile_id: str, type_: str, why: str) -> None:
    with pytest.raises(PathRefused, match=why):
        resolve_profile_path(BASE, filepath, profile_id=profile_id, type_=type_)


# --- meta.json -----------------------------------------------------------------------------------


def record() -> CaptureRecord:
    return CaptureRecord(
        profile_id=ID, captured_at_ns=parse_profile_id(ID) or 0,
        source_endpoint="http://localhost:6060", rss_bytes=800, cgroup_limit_bytes=1000,
        trigger_percent=75, threshold_bytes=750, pod_name="data-0", role="ROLE_DATA",
        profiles=(ProfileFile("heap", "heap.pprof", f"{BASE}/{ID}/heap.pprof", 11),
                  ProfileFile("goroutine", "goroutine.pprof", f"{BASE}/{ID}/goroutine.pprof", 7)))


def test_meta_json_round_trip_in_upstreams_schema() -> None:
    data = record().to_meta_json()
    meta = json.loads(data)
    assert meta["capturedAt"] == "2026-06-27T10:11:12.123456789Z"
    assert {"podName", "role", "sourceEndpoint", "profiles", "rssBytes", "cgroupLimitBytes",
            "thresholdBytes", "triggerPercent"} <= meta.keys()
    assert meta["profiles"][0] == {"type": "heap", "filename": "heap.pprof",
                                   "filepath": f"{BASE}/{ID}/heap.pprof", "format": "pprof",
                                   "size_bytes": 11}
    assert CaptureRecord.from_meta_json(BASE, ID, data) == record()
    assert record().size_bytes == 18


def test_meta_json_filepaths_are_rebuilt_and_sizes_taken_from_disk() -> None:
    meta = json.loads(record().to_meta_json())
    meta["profiles"][0]["filepath"] = "/etc/passwd"
    meta["profiles"].append({"type": "cpu", "filename": "../x", "size_bytes": 1})
    got = CaptureRecord.from_meta_json("/data/pp", ID, json.dumps(meta).encode(),
                                       sizes={"heap.pprof": 99})
    assert [(p.filepath, p.size_bytes) for p in got.profiles] == [(f"/data/pp/{ID}/heap.pprof", 99)]


@pytest.mark.parametrize("data, why", [
    (b"{", "not a capture record"),
    (b"[]", "not a capture record"),
    (b'{"rssBytes": -1}', "not a capture record"),
    (b'{"rssBytes": "12"}', "not a capture record"),
    (b'{"profiles": 3}', "not a capture record"),
    (b" " * 70_000, "larger than"),
])
def test_meta_json_refused(data: bytes, why: str) -> None:
    with pytest.raises(PressureError, match=why):
        CaptureRecord.from_meta_json(BASE, ID, data)


# --- cgroup and /proc files ----------------------------------------------------------------------

MOUNTINFO_V2 = """\
25 30 0:23 / /sys rw,nosuid - sysfs sysfs rw
35 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
MOUNTINFO_V1 = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
36 31 0:33 / /sys/fs/cgroup/cpu\\040x rw,relatime - cgroup cgroup rw,cpu
"""
MOUNTINFO_NS = """\
40 35 0:30 /kubepods/pod1/c1 /sys/fs/cgroup ro,nosuid - cgroup2 cgroup2 rw
"""


@pytest.mark.parametrize("proc_cgroup, mountinfo, files", [
    ("0::/user.slice/app.scope\n", MOUNTINFO_V2, [
        ("/sys/fs/cgroup/user.slice/app.scope/memory.max", False),
        ("/sys/fs/cgroup/user.slice/memory.max", False),
        ("/sys/fs/cgroup/memory.max", False)]),
    ("0::/\n", MOUNTINFO_V2, [("/sys/fs/cgroup/memory.max", False)]),
    # a container's cgroup namespace: the mount's root is the container's cgroup
    ("0::/kubepods/pod1/c1\n", MOUNTINFO_NS, [("/sys/fs/cgroup/memory.max", False)]),
    ("4:memory:/process_api/b8f5\n3:cpuset:/\n0::/\n", MOUNTINFO_V1, [
        ("/sys/fs/cgroup/memory/process_api/b8f5/memory.limit_in_bytes", True)]),
    ("5:cpu,cpuacct:/x\n", MOUNTINFO_V1, []),
    ("", "", []),
])
def test_memory_limit_files(proc_cgroup: str, mountinfo: str,
                            files: list[tuple[str, bool]]) -> None:
    assert memory_limit_files(parse_proc_cgroup(proc_cgroup), parse_mountinfo(mountinfo)) == files


def test_parse_mountinfo_unescapes_and_keeps_cgroup_mounts_only() -> None:
    assert parse_mountinfo(MOUNTINFO_V1) == [
        Mount("/", "/sys/fs/cgroup/memory", "cgroup", ("rw", "memory")),
        Mount("/", "/sys/fs/cgroup/cpu x", "cgroup", ("rw", "cpu"))]


def test_parse_proc_cgroup() -> None:
    text = "12:memory:/a/b\n0::/c\ngarbage\n3:cpu:relative\n"
    assert parse_proc_cgroup(text) == CgroupPaths(v2="/c", v1_memory="/a/b")


@pytest.mark.parametrize("text, v1, limit", [
    ("max\n", False, None), ("1073741824\n", False, 1073741824), ("0", False, None),
    ("9223372036854771712\n", True, None), ("536870912", True, 536870912),
])
def test_parse_memory_limit(text: str, v1: bool, limit: int | None) -> None:
    assert parse_memory_limit(text, v1=v1) == limit


@pytest.mark.parametrize("text", ["", "lots", "12.5"])
def test_parse_memory_limit_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory_limit(text)


@pytest.mark.parametrize("status, rss", [
    ("Name:\tx\nVmRSS:\t   12345 kB\nVmSwap:\t0 kB\n", 12345 * 1024),
    ("Name:\tkthreadd\nState:\tS\n", None),
    ("VmRSS:\tnope kB\n", None),
])
def test_parse_vmrss(status: str, rss: int | None) -> None:
    assert parse_vmrss(status) == rss


# --- the fetch queue -----------------------------------------------------------------------------


def test_fetch_queue_one_running_bounded_waiting() -> None:
    q = FetchQueue(max_waiting=2)
    assert q.offer("a", "A") == (None, False)
    assert q.next() == ("a", "A") and q.running == "a"
    assert q.next() is None                       # one at a time
    assert q.offer("b", "B") == (None, False)
    assert q.offer("c", "C") == (None, False)
    refused, stop = q.offer("d", "D")
    assert refused is not None and "busy" in refused and not stop
    assert (q.waiting, q.refused, q.peak_waiting) == (2, 1, 2)
    q.done()
    assert q.next() == ("b", "B")


def test_fetch_queue_before_the_sender_picks_up() -> None:
    q = FetchQueue(max_waiting=0)                 # nothing may wait, one may be handed over
    assert q.offer("a", "A") == (None, False)
    assert q.offer("b", "B")[0] is not None


def test_fetch_queue_cancel() -> None:
    q = FetchQueue(max_waiting=4)
    for rid in "abc":
        q.offer(rid, rid.upper())
    q.next()
    assert q.cancel("b") == "queued"
    assert q.cancel("a") == "running"
    assert q.cancel("zz") is None and q.cancel("") is None
    q.done()
    assert q.next() == ("c", "C")


def test_fetch_queue_reused_request_id_drops_both() -> None:
    q = FetchQueue(max_waiting=4)
    q.offer("a", 1)
    q.next()
    refused, stop = q.offer("a", 2)
    assert refused is not None and "already in use" in refused and stop
    q.offer("b", 3)
    refused, stop = q.offer("b", 4)
    assert refused is not None and not stop and q.waiting == 0
    # "" is never matched: a proxy that sets no request id still gets its fetches served
    assert q.offer("", 5) == (None, False) and q.offer("", 6) == (None, False)


def test_meta_json_profile_listed_twice_counts_once() -> None:
    meta = json.loads(record().to_meta_json())
    meta["profiles"].append(dict(meta["profiles"][0]))
    got = CaptureRecord.from_meta_json(BASE, ID, json.dumps(meta).encode())
    assert [p.type for p in got.profiles] == ["heap", "goroutine"]


@pytest.mark.parametrize("fields, why", [
    ({"request_id": "r", "profile_id": ID, "type": "heap", "filepath": f"{BASE}/{ID}/heap.pprof"},
     None),
    ({"request_id": "r" * 257}, "request_id is longer than 256"),
    ({"profile_id": "p" * 65}, "profile_id is longer than 64"),
    ({"type": "t" * 33}, "type is longer than 32"),
    ({"filepath": "/" * 4097}, "filepath is longer than 4096"),
])
def test_oversized_fetch_fields(fields: dict[str, str], why: str | None) -> None:
    from fodcproxy.agent.pressure import oversized_fetch_field

    expect = None if why is None else f"fetch_profile {why} characters"
    assert oversized_fetch_field(fields) == expect
