"""The fixed-shape JSON documents of the HTTP API as attrs classes, and the one cattrs converter
that turns them into JSON: the HTTP side's wire format in one place (STYLE: one private
converter per wire format). Documents whose shape follows the data (series, topology) are built
by the core as plain dicts and pass through unchanged."""

from __future__ import annotations

import json
from typing import Any

import attrs
import cattrs

_converter = cattrs.Converter()


@attrs.frozen
class ErrorBody:
    """Every error: what went wrong and how to fix it."""

    error: str


@attrs.frozen
class Health:
    """`GET /health`: always 200 while serving; "degraded" while agents are offline."""

    status: str
    agents_online: int
    agents_offline: int
    agents_total: int
    uptime_seconds: float


@attrs.frozen
class NodeRemoved:
    """`DELETE /cluster/nodes/{agent_id}`."""

    agent_id: str
    removed: bool
    status_before: str


def dumps(doc: Any) -> str:
    """Compact JSON of a document (an attrs class of this module) or of plain data."""
    if attrs.has(type(doc)):
        doc = _converter.unstructure(doc)
    return json.dumps(doc, separators=(",", ":"))
