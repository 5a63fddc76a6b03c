"""Tests of `fodcproxy.core.query`: HTTP query parameters and the scrape-timeout header.

Test policy: plain synchronous tests, one per branch of the parsers, each bad input checked for
the error type *and* for a message that names the parameter (the message is what an operator
reads). Hypothesis covers the promise that no string input raises anything but
`InvalidArgument`, and round trips through the formats we print ourselves.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fodcproxy.core.model import LATEST, Address, NodeMeta, TimeWindow
from fodcproxy.core.query import (
    KNOWN_PARAMS,
    Selection,
    check_unknown,
    parse_scrape_timeout,
    window_from_query,
)
from fodcproxy.errors import InvalidArgument

T0 = 1_795_838_900.0  # 2026-11-28T04:08:20Z


def bad(match: str) -> pytest.RaisesExc[InvalidArgument]:
    return pytest.raises(InvalidArgument, match=match)


# --- Selection.from_query ----------------------------------------------------------------------


def test_no_parameters_select_everything() -> None:
    assert Selection.from_query({}) == Selection()


def test_role_and_agent_id() -> None:
    sel = Selection.from_query({"role": "datanode-hot", "agent_id": "abc"})
    assert sel == Selection(role="datanode-hot", agent_id="abc")


def test_node_id_is_an_alias_of_agent_id() -> None:
    assert Selection.from_query({"node_id": "abc"}) == Selection(agent_id="abc")
    assert Selection.from_query({"node_id": "abc", "agent_id": "abc"}) == Selection(agent_id="abc")


def test_agent_id_and_node_id_differ() -> None:
    with bad("agent_id 'a' and node_id 'b' differ"):
        Selection.from_query({"agent_id": "a", "node_id": "b"})


def test_list_values_as_from_parse_qs() -> None:
    sel = Selection.from_query({"role": ["liaison"], "address": ["10.0.0.1:80"], "node_id": []})
    assert sel == Selection(role="liaison", ip="10.0.0.1", port=80)


@pytest.mark.parametrize("name", ["role", "address", "agent_id", "node_id"])
def test_repeated_parameter(name: str) -> None:
    with bad(f"^{name} is given 2 times"):
        Selection.from_query({name: ["x", "x"]})


@pytest.mark.parametrize("name", ["role", "address", "agent_id", "node_id"])
def test_empty_value(name: str) -> None:
    with bad(f"^{name} is empty"):
        Selection.from_query({name: ""})
    with bad(f"^{name} is empty"):
        Selection.from_query({name: [""]})


class FakeMultiDict(Mapping[str, str]):
    """Like werkzeug's MultiDict: item access gives the first value, `getlist` gives them all."""

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._items = items

    def __getitem__(self, key: str) -> str:
        return next(v for k, v in self._items if k == key)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._items))

    def __len__(self) -> int:
        return len(dict.fromkeys(k for k, _ in self._items))

    def getlist(self, key: str) -> list[str]:
        return [v for k, v in self._items if k == key]


def test_multidict_repeats_are_seen() -> None:
    assert Selection.from_query(FakeMultiDict([("role", "liaison")])) == Selection(role="liaison")
    with bad("^role is given 2 times"):
        Selection.from_query(FakeMultiDict([("role", "liaison"), ("role", "datanode-hot")]))


@pytest.mark.parametrize(
    ("address", "ip", "port"),
    [
        ("10.0.0.1", "10.0.0.1", None),
        ("10.0.0.1:17912", "10.0.0.1", 17912),
        ("10.0.0.1:1", "10.0.0.1", 1),
        ("10.0.0.1:65535", "10.0.0.1", 65535),
        ("node-1.example", "node-1.example", None),
        ("node-1.example:80", "node-1.example", 80),
        ("[::1]:17912", "::1", 17912),
        ("[fd00::5]", "fd00::5", None),
        ("::1", "::1", None),
        ("fd00::1:1791", "fd00::1:1791", None),  # bare IPv6: all of it is the address
        ("fe80::1%eth0", "fe80::1%eth0", None),
    ],
)
def test_address_forms(address: str, ip: str, port: int | None) -> None:
    assert Selection.from_query({"address": address}) == Selection(ip=ip, port=port)


@pytest.mark.parametrize(
    "address",
    [
        ":80",
        "host_1",
        "a b",
        "-host",
        "10.0.0.1:1:2",
        "::zz",
        "[10.0.0.1]:80",
        "[::1]x",
        "[]:80",
        "[::1",
        "10.0.0.1/24",
        "fd00::1:17912",  # a port after a bare IPv6 address: write [fd00::1]:17912
    ],
)
def test_bad_address(address: str) -> None:
    with bad(r"^address .* is not valid: expected ip, ip:port, \[ipv6\]:port"):
        Selection.from_query({"address": address})


@pytest.mark.parametrize(
    "address",
    [
        "10.0.0.1:",
        "10.0.0.1:0",
        "10.0.0.1:65536",
        "10.0.0.1:99999",
        "10.0.0.1:123456",
        "10.0.0.1:abc",
        "10.0.0.1:-1",
        "10.0.0.1:٣",  # a digit, but not an ASCII one
        "[::1]:",
        "[::1]:0",
        "[::1]:http",
    ],
)
def test_bad_port(address: str) -> None:
    with bad("^address: the port .* is not a number from 1 to 65535"):
        Selection.from_query({"address": address})


def test_long_values_are_cut_short_in_messages() -> None:
    with pytest.raises(InvalidArgument) as info:
        Selection.from_query({"address": "x y" * 1000})
    assert len(info.value.message) < 250


# --- Selection.matches -------------------------------------------------------------------------

META = NodeMeta("hot-1", "datanode-hot", "10.0.0.5", 17912, (("zone", "a"),))


@pytest.mark.parametrize(
    ("sel", "expected"),
    [
        (Selection(), True),
        (Selection(role="datanode-hot"), True),
        (Selection(role="datanode"), False),  # exact, not a prefix
        (Selection(role="DataNode-Hot"), False),
        (Selection(agent_id="hot-1"), True),
        (Selection(agent_id="hot-2"), False),
        (Selection(ip="10.0.0.5"), True),
        (Selection(ip="10.0.0.50"), False),
        (Selection(ip="10.0.0.5", port=17912), True),
        (Selection(ip="10.0.0.5", port=17913), False),
        (Selection(port=17912), True),
        (Selection(role="datanode-hot", ip="10.0.0.5", port=17912, agent_id="hot-1"), True),
        (Selection(role="liaison", ip="10.0.0.5", port=17912, agent_id="hot-1"), False),
    ],
)
def test_matches(sel: Selection, expected: bool) -> None:
    assert sel.matches(META) is expected


def test_ipv6_addresses_compare_as_addresses() -> None:
    meta = NodeMeta("a", "liaison", "fd00:0:0:0:0:0:0:1", 80)
    assert Selection.from_query({"address": "[fd00::1]:80"}).matches(meta)
    assert not Selection.from_query({"address": "[fd00::2]:80"}).matches(meta)


def test_host_names_compare_as_text() -> None:
    meta = NodeMeta("a", "liaison", "node-1", 80)
    assert Selection.from_query({"address": "node-1"}).matches(meta)
    assert not Selection.from_query({"address": "node-2"}).matches(meta)
    assert not Selection.from_query({"address": "10.0.0.1"}).matches(meta)


# --- window_from_query -------------------------------------------------------------------------


def test_no_window_is_latest() -> None:
    assert window_from_query({}) is LATEST


def test_open_windows() -> None:
    assert window_from_query({"start_time": "2026-11-28T04:08:20Z"}) == TimeWindow(T0, None)
    assert window_from_query({"end_time": "2026-11-28T04:08:20Z"}) == TimeWindow(None, T0)


@pytest.mark.parametrize(
    ("text", "ts"),
    [
        ("2026-11-28T04:08:20Z", T0),
        ("2026-11-28t04:08:20z", T0),
        ("2026-11-28 04:08:20Z", T0),
        ("2026-11-28T04:08:20.5Z", T0 + 0.5),
        ("2026-11-28T04:08:20.123456789Z", T0 + 0.123456789),
        ("2026-11-28T12:08:20+08:00", T0),
        ("2026-11-27T22:38:20-05:30", T0),
        ("2026-11-28T04:08:20+00:00", T0),
        ("2026-11-28T04:08:20-00:00", T0),
        ("2026-11-28T04:08:19.250+00:00", T0 - 0.75),
        ("1970-01-01T00:00:00Z", 0.0),
        ("1969-12-31T23:59:59Z", -1.0),
    ],
)
def test_rfc3339_forms(text: str, ts: float) -> None:
    window = window_from_query({"start_time": text})
    assert window.start == pytest.approx(ts, abs=1e-6)


@pytest.mark.parametrize(
    "text",
    [
        "1795838900",
        "1795838900.5",
        "2026-11-28",
        "2026-11-28T04:08:20",  # no offset
        "2026-11-28T04:08Z",
        "2026-11-28T04:08:20.Z",
        "2026-11-28T04:08:20+0800",
        "2026-11-28T04:08:20+08",
        "26-11-28T04:08:20Z",
        "2026-11-28T04:08:20Z ",
        "２０２６-11-28T04:08:20Z",  # full-width digits
        "now",
    ],
)
def test_not_rfc3339(text: str) -> None:
    with bad(r"^start_time: expected an RFC3339 timestamp .*Unix seconds are not accepted"):
        window_from_query({"start_time": text})


@pytest.mark.parametrize(
    "text",
    [
        "2026-13-01T00:00:00Z",
        "2026-02-29T00:00:00Z",  # not a leap year
        "2026-11-31T00:00:00Z",
        "2026-00-10T00:00:00Z",
        "2026-11-28T24:00:00Z",
        "2026-11-28T04:60:00Z",
        "2026-11-28T04:08:61Z",
        "2026-11-28T04:08:20+24:00",
        "2026-11-28T04:08:20+08:60",
        "0000-01-01T00:00:00Z",
    ],
)
def test_not_a_real_time(text: str) -> None:
    with bad("^end_time: .* is not a real date and time"):
        window_from_query({"end_time": text})


def test_plus_sent_as_space_gets_a_hint() -> None:
    # "...+08:00" in a URL query string without %2B arrives like this.
    with bad("%2B08:00"):
        window_from_query({"start_time": "2026-11-28T12:08:20 08:00"})


def test_repeated_and_empty_times() -> None:
    with bad("^start_time is given 2 times"):
        window_from_query({"start_time": ["2026-11-28T04:08:20Z"] * 2})
    with bad("^end_time is empty"):
        window_from_query({"end_time": ""})


def test_start_after_end() -> None:
    with bad("^start_time '2026-11-28T04:08:21Z' is after end_time '2026-11-28T04:08:20Z'"):
        window_from_query(
            {"start_time": "2026-11-28T04:08:21Z", "end_time": "2026-11-28T04:08:20Z"}
        )


def test_offsets_are_compared_as_instants() -> None:
    # 12:08:20+08:00 is 04:08:20Z: a valid, empty-length window, though "12" > "04" as text.
    window = window_from_query(
        {"start_time": "2026-11-28T12:08:20+08:00", "end_time": "2026-11-28T04:08:20Z"}
    )
    assert window == TimeWindow(T0, T0)


def test_max_window() -> None:
    params = {"start_time": "2026-11-28T04:08:20Z", "end_time": "2026-11-28T05:08:20Z"}
    assert window_from_query(params, max_window=3600, now=T0) == TimeWindow(T0, T0 + 3600)
    with bad("^the window from start_time to end_time is 3600s long; the limit is 1800s"):
        window_from_query(params, max_window=1800, now=T0)
    # Without a limit, open windows are taken as they are.
    assert window_from_query({"start_time": params["start_time"]}) == TimeWindow(T0, None)
    assert window_from_query({"end_time": params["start_time"]}) == TimeWindow(None, T0)


def test_max_window_open_end_is_measured_to_now() -> None:
    start = {"start_time": "2026-11-28T04:08:20Z"}
    assert window_from_query(start, max_window=3600, now=T0 + 3600) == TimeWindow(T0, None)
    with bad(r"^the window from start_time to now \(no end_time: the window ends now\) is 3601s"
             r" long; the limit is 3600s"):
        window_from_query(start, max_window=3600, now=T0 + 3601)
    # A start in the future is an empty window, within any limit.
    assert window_from_query(start, max_window=1, now=T0 - 86400) == TimeWindow(T0, None)


def test_max_window_open_start_is_over_any_limit() -> None:
    end = {"end_time": "2026-11-28T04:08:20Z"}
    for now in (T0 - 86400, T0, T0 + 86400):
        with bad("^end_time without start_time asks for everything before it, a window with no"
                 " start and so longer than the limit of 1e[+]09s [(]--max-query-window[)]:"
                 " give start_time too"):
            window_from_query(end, max_window=1e9, now=now)


def test_max_window_needs_now() -> None:
    with pytest.raises(TypeError, match="now is required"):
        window_from_query({}, max_window=3600)


@given(
    st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30)),
    st.integers(min_value=-(23 * 60 + 59), max_value=23 * 60 + 59),
)
def test_rfc3339_round_trip(moment: dt.datetime, offset_minutes: int) -> None:
    aware = moment.replace(tzinfo=dt.timezone(dt.timedelta(minutes=offset_minutes)))
    text = aware.isoformat()
    window = window_from_query({"end_time": text})
    assert window.end == pytest.approx(aware.timestamp(), abs=1e-6)


# --- parse_scrape_timeout ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, 8.0),
        ("10", 8.0),  # 10 - 1 = 9: the flag's 8 is lower
        ("5", 4.5),  # margin = 10% of 5
        ("2", 1.75),  # margin = 0.25, more than 10% of 2
        ("1", 0.75),
        ("9.5", 8.0),
        (" 3.0 ", 2.7),
        (".5", 0.25),
        ("0.3", 0.1),  # 0.05 would be below the minimum
        ("0.2", 0.1),
    ],
)
def test_scrape_timeout(header: str | None, expected: float) -> None:
    assert parse_scrape_timeout(header, default=8.0) == pytest.approx(expected)


@pytest.mark.parametrize(
    "header", ["", "0", "0.0", "-1", "abc", "nan", "inf", "1e3", "1_0", "10s", "9" * 400, "٣"]
)
def test_bad_scrape_timeout_header_is_ignored(header: str) -> None:
    assert parse_scrape_timeout(header, default=8.0) == 8.0


def test_scrape_timeout_options() -> None:
    assert parse_scrape_timeout("5", default=8.0, margin=2.0) == pytest.approx(3.0)
    assert parse_scrape_timeout("1", default=8.0, minimum=0.9) == pytest.approx(0.9)
    # The minimum never raises the deadline above the configured default.
    assert parse_scrape_timeout("10", default=0.05) == pytest.approx(0.05)


@given(st.text(), st.floats(min_value=0.01, max_value=100))
def test_scrape_timeout_never_raises(header: str, default: float) -> None:
    got = parse_scrape_timeout(header, default=default)
    assert min(default, 0.1) <= got <= default


# --- check_unknown / KNOWN_PARAMS --------------------------------------------------------------


def test_known_params() -> None:
    selection = {"role", "address", "agent_id", "node_id", "pod_name"}
    assert KNOWN_PARAMS["/metrics"] == selection
    assert KNOWN_PARAMS["/metrics-windows"] == selection | {"start_time", "end_time"}
    assert KNOWN_PARAMS["/cluster"] == selection
    assert KNOWN_PARAMS["/cluster/config"] == selection
    assert KNOWN_PARAMS["/health"] == frozenset()


def test_known_parameters_pass() -> None:
    check_unknown({"role": "liaison", "start_time": "x"}, KNOWN_PARAMS["/metrics-windows"])
    check_unknown({}, KNOWN_PARAMS["/health"])


def test_unknown_parameter() -> None:
    with bad(
        "^unknown query parameter 'start_time'; "
        "accepted parameters: address, agent_id, node_id, pod_name, role$"
    ):
        check_unknown({"role": "x", "start_time": "y"}, KNOWN_PARAMS["/metrics"])


def test_unknown_parameters_listed_sorted() -> None:
    with bad("^unknown query parameters 'a', 'b'; this endpoint takes no query parameters$"):
        check_unknown({"b": "", "a": ""}, KNOWN_PARAMS["/health"])


def test_many_unknown_parameters_are_cut_short() -> None:
    with bad("'p18', 'p19' and 2 more; "):
        check_unknown({f"p{i}": "" for i in range(10, 22)}, frozenset())


# --- nothing but InvalidArgument ---------------------------------------------------------------

NAMES = st.sampled_from(
    ["role", "address", "agent_id", "node_id", "start_time", "end_time", "other"]
)
VALUES = st.one_of(st.text(), st.lists(st.text(), max_size=3))
PARAMS = st.dictionaries(NAMES, VALUES)


@given(PARAMS)
def test_selection_raises_only_invalid_argument(params: dict[str, str | list[str]]) -> None:
    try:
        Selection.from_query(params)
    except InvalidArgument:
        pass


@given(PARAMS, st.none() | st.floats(min_value=0, max_value=1e9))
def test_window_raises_only_invalid_argument(
    params: dict[str, str | list[str]], max_window: float | None
) -> None:
    try:
        window = window_from_query(params, max_window=max_window, now=T0)
    except InvalidArgument:
        return
    if window.start is not None and window.end is not None:
        assert window.start <= window.end


@given(st.dictionaries(st.text(), st.text()))
def test_check_unknown_raises_only_invalid_argument(params: dict[str, str]) -> None:
    try:
        check_unknown(params, KNOWN_PARAMS["/metrics"])
    except InvalidArgument:
        pass


@given(st.ip_addresses(), st.integers(min_value=1, max_value=65535))
def test_address_round_trip(ip: object, port: int) -> None:
    text = str(Address(str(ip), port))
    assert Selection.from_query({"address": text}) == Selection(ip=str(ip), port=port)


@given(st.text(alphabet="0123456789:-+.TZ ", max_size=40))
def test_timestamp_like_text_raises_only_invalid_argument(text: str) -> None:
    try:
        window_from_query({"start_time": text})
    except InvalidArgument:
        pass
