"""Content negotiation (fodcproxy/http/negotiation.py): plain tables, no I/O."""

from __future__ import annotations

import pytest

from fodcproxy.http.negotiation import wants_gzip, wants_openmetrics


@pytest.mark.parametrize("header, gzip", [
    (None, False),
    ("", False),
    ("gzip", True),
    ("GZIP", True),
    ("x-gzip", True),
    ("gzip;q=0", False),
    ("gzip; q=0", False),
    ("gzip;q=0.0", False),
    ("gzip;q=0.000", False),
    ("gzip;q=0.001", True),
    ("gzip;q=0.5", True),
    ("gzip;q=1", True),
    ("gzip;q=1.5", False),  # not a q-value: refused, not guessed
    ("gzip;q=abc", False),
    ("deflate, gzip;q=0.5", True),
    ("br, deflate", False),
    ("identity", False),
    ("*", True),
    ("*;q=0", False),
    ("*, gzip;q=0", False),
    ("gzip;q=0, *", False),
    ("gzip;q=0, x-gzip;q=1", True),
    ("identity;q=1, *;q=0", False),
    (" , ,gzip", True),
    (";;;", False),
])
def test_accept_encoding(header, gzip):
    assert wants_gzip(header) is gzip


@pytest.mark.parametrize("header, openmetrics", [
    (None, False),
    ("", False),
    ("text/plain", False),
    ("*/*", False),
    ("application/openmetrics-text", True),
    ("application/openmetrics-text; version=1.0.0", True),
    ("application/openmetrics-text; version=0.0.1", True),
    ("application/openmetrics-text; version=2.0.0", False),
    ("application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4", True),
    ("application/openmetrics-text;q=0.4, text/plain;q=0.5", False),
    ("application/openmetrics-text;q=0", False),
    ("application/openmetrics-text;q=1, */*;q=1", True),  # a tie goes to OpenMetrics
    ("APPLICATION/OPENMETRICS-TEXT", True),
    ("application/openmetrics-text; q=x", False),
    ("garbage;;;=,", False),
])
def test_accept(header, openmetrics):
    assert wants_openmetrics(header) is openmetrics
