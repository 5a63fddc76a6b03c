"""Content negotiation for the HTTP API: which format (Accept) and which coding (Accept-Encoding).

Sans-IO: header text in, a decision out. Never raises; a header that does not parse counts as
absent, so a broken client still gets an answer (the plain text, uncompressed).
"""

from __future__ import annotations

from collections.abc import Iterator

OPENMETRICS = "application/openmetrics-text"
_OPENMETRICS_VERSIONS = ("1.0.0", "0.0.1")


def _elements(header: str) -> Iterator[tuple[str, dict[str, str]]]:
    """The comma-separated elements of a header, as (lower-case name, {param: value})."""
    for part in header.split(","):
        name, *raw_params = part.split(";")
        name = name.strip().lower()
        if not name:
            continue
        params: dict[str, str] = {}
        for raw in raw_params:
            key, _, value = raw.partition("=")
            params[key.strip().lower()] = value.strip().strip('"')
        yield name, params


def _q(params: dict[str, str]) -> float:
    """The q-value of an element (RFC 9110 12.4.2): 0 to 1, at most three decimals; else 0."""
    text = params.get("q")
    if text is None:
        return 1.0
    try:
        q = float(text)
    except ValueError:
        return 0.0
    return q if 0.0 <= q <= 1.0 else 0.0


def wants_openmetrics(accept: str | None) -> bool:
    """Whether to answer /metrics in OpenMetrics (True) or Prometheus text 0.0.4 (False).

    OpenMetrics is chosen when `application/openmetrics-text` (version 1.0.0 or 0.0.1, or no
    version) has a q-value above 0 and at least as high as the best of `text/plain`, `text/*`
    and `*/*`. A missing or empty header means text.
    """
    if not accept:
        return False
    best_om = best_text = 0.0
    for media, params in _elements(accept):
        q = _q(params)
        if media == OPENMETRICS:
            if params.get("version", "1.0.0") in _OPENMETRICS_VERSIONS:
                best_om = max(best_om, q)
        elif media in ("text/plain", "text/*", "*/*"):
            best_text = max(best_text, q)
    return best_om > 0.0 and best_om >= best_text


def wants_gzip(accept_encoding: str | None) -> bool:
    """Whether to gzip the answer, by Accept-Encoding (RFC 9110 12.5.3).

    gzip (or its alias x-gzip) is used when it is listed with a q-value above 0, or when it is
    not listed and `*` is, with a q-value above 0. `gzip;q=0` refuses it. A missing header
    means no compression.
    """
    if not accept_encoding:
        return False
    gzip_q: float | None = None
    star_q: float | None = None
    for coding, params in _elements(accept_encoding):
        if coding in ("gzip", "x-gzip"):
            gzip_q = max(gzip_q or 0.0, _q(params))
        elif coding == "*":
            star_q = _q(params)
    if gzip_q is not None:
        return gzip_q > 0.0
    return star_q is not None and star_q > 0.0
