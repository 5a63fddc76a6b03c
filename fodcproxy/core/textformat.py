"""The Prometheus text formats' small print: values, escaping, label text, headers, chunks (sans-IO).

Shared by text 0.0.4 and OpenMetrics 1.0 as `fodcproxy.core.exposition` writes them; the rules are
those the strict parsers enforce (the Go text parser behind Prometheus and `promtool`, and
prometheus_client's OpenMetrics parser).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterable

from fodcproxy.core.families import MODE_LE, MODE_NO_LE, MODE_NO_QUANTILE, MODE_QUANTILE, UNTYPED
from fodcproxy.core.labels import own_labels

__all__ = ["CHUNK_LINES", "Chunker", "bound_labels", "escape_help", "escape_label_value",
           "format_value", "format_value_or_nan", "header", "label_pairs_text"]

#: Roughly how many lines go into one chunk of a rendered body.
CHUNK_LINES = 2000

SPECIAL_VALUES = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}
_float_repr = float.__repr__


def format_value(value: float) -> str:
    """Write a sample value so it parses back to the same float: `repr`, `NaN`, `+Inf`, `-Inf`.

    Raises TypeError or ValueError if `value` is not a number.
    """
    text = _float_repr(float(value))
    return SPECIAL_VALUES.get(text, text)


def escape_label_value(value: str) -> str:
    """A label value as written between double quotes."""
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value


def escape_help(text: str, openmetrics: bool) -> str:
    """A HELP text as written after the family name."""
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    # Text 0.0.4 knows only the two escapes above (the Go parser rejects `\"` in HELP).
    return text.replace('"', '\\"') if openmetrics else text


def label_pairs_text(pairs: Iterable[tuple[str, str]]) -> str:
    """`,name="value"` for each pair, values escaped (names must be valid already)."""
    return "".join(f',{name}="{escape_label_value(value)}"' for name, value in pairs)


_PLAIN_NUMBER_RE = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def canonical_bound(text: str, quantile: bool) -> tuple[str, float] | None:
    """An `le` or `quantile` value both the Go and the OpenMetrics parser accept, or None."""
    try:
        bound = float(text)
    except ValueError:
        return None
    if math.isnan(bound) or (quantile and not 0.0 <= bound <= 1.0):
        return None
    if math.isinf(bound):
        return ("+Inf" if bound > 0 else "-Inf"), bound
    # Python's float() accepts spellings Go's ParseFloat does not ("1_0", " 1").
    return (text if _PLAIN_NUMBER_RE.fullmatch(text) else _float_repr(bound)), bound


#: What `bound_labels()` gives for a bucket (quantile) without a usable `le` (`quantile`).
MISFIT = None
BoundEntry = tuple[str, str, float] | None


def bound_labels(
    items: tuple[tuple[str, str], ...], reserved: Collection[str], mode: int
) -> BoundEntry:
    """Label text of a histogram/summary sample: (full text, text without le/quantile, bound).

    `reserved` as for `own_labels()` (the enrichment's names, or its labels)."""
    special = "le" if mode in (MODE_LE, MODE_NO_LE) else "quantile"
    if mode in (MODE_NO_LE, MODE_NO_QUANTILE):
        text = label_pairs_text(own_labels(items, reserved, (special,)))
        return text, text, 0.0
    rest = [(k, v) for k, v in items if k != special]
    if len(rest) == len(items):
        return MISFIT
    raw = next(str(v) for k, v in items if k == special)
    bound = canonical_bound(raw, mode == MODE_QUANTILE)
    if bound is None:
        return MISFIT
    text = label_pairs_text(own_labels(rest, reserved, (special,)))
    return f'{text},{special}="{bound[0]}"', text, bound[1]


def format_value_or_nan(value: object) -> str:
    """`format_value()`, or "NaN" for what is not a number."""
    try:
        return format_value(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return "NaN"


def header(name: str, help_text: str, ftype: str, openmetrics: bool) -> str:
    """The `# HELP` and `# TYPE` lines of a family."""
    if openmetrics and ftype == UNTYPED:
        ftype = "unknown"
    return f"# HELP {name} {escape_help(help_text, openmetrics)}\n# TYPE {name} {ftype}\n"


class Chunker:
    """Collects lines and cuts them into chunks of at most CHUNK_LINES lines (a `# HELP`/`# TYPE`
    pair counts as one); `take()` hands over the chunks completed so far (so a body can be
    streamed while it is being cut)."""

    def __init__(self) -> None:
        self.chunks: list[str] = []
        self._buf: list[str] = []
        self._count = 0  # lines in _buf

    def add(self, lines: list[str]) -> None:
        """Lines, one per item."""
        buf = self._buf
        room = CHUNK_LINES - self._count
        if len(lines) < room:
            buf.extend(lines)
            self._count += len(lines)
            return
        buf.extend(lines[:room])
        self.chunks.append("".join(buf))
        start = room
        while len(lines) - start >= CHUNK_LINES:
            self.chunks.append("".join(lines[start : start + CHUNK_LINES]))
            start += CHUNK_LINES
        self._buf = lines[start:]
        self._count = len(self._buf)

    def add_block(self, text: str, lines: int) -> None:
        """`lines` lines (at most CHUNK_LINES) in one string."""
        if self._count and self._count + lines > CHUNK_LINES:
            self.chunks.append("".join(self._buf))
            self._buf = []
            self._count = 0
        self._buf.append(text)
        self._count += lines
        if self._count >= CHUNK_LINES:
            self.chunks.append("".join(self._buf))
            self._buf = []
            self._count = 0

    def take(self) -> list[str]:
        chunks, self.chunks = self.chunks, []
        return chunks

    def finish(self) -> list[str]:
        if self._buf:
            self.chunks.append("".join(self._buf))
            self._buf = []
            self._count = 0
        return self.take()
