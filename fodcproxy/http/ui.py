"""The web console: `GET /` (the page) and `GET /ui/<path>` (its static assets).

The files live in `fodcproxy/http/static/` and ship inside the package; there is no build step
and nothing is fetched from elsewhere, so the console works offline. They are read once, when the
app is built, into an in-memory table: a request never touches the file system, so no path a
client sends can reach a file outside that table (and a proxy upgraded in place keeps serving
the files it started with until it restarts).

The page itself is served only at `/`, and it refers to its assets and to the API by relative
URLs (`ui/app.js`, `cluster`), so the console also works behind a reverse proxy that mounts the
whole API under a prefix.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from importlib import resources
from importlib.resources.abc import Traversable

import attrs
from quart import Response, request
from quart_trio import QuartTrio

from fodcproxy.http import documents

STATIC_PACKAGE = "fodcproxy.http"
STATIC_DIR = "static"
PAGE = "index.html"

# Only files of these kinds are served; anything else in static/ (a README, a licence file
# without a suffix) stays private to the source tree.
CONTENT_TYPES: dict[str, str] = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".txt": "text/plain; charset=utf-8",
}

# The page and our own files may change with every proxy release and their names carry no
# version, so the browser revalidates them each time (cheap: a 304 thanks to the ETag). The
# vendored library is only replaced together with its README entry, rarely; a day is fine.
REVALIDATE = "no-cache"
VENDOR_MAX_AGE = "public, max-age=86400"

# The page loads nothing but its own files; inline styles are allowed because the charting
# library positions its cursor and legend with them.
PAGE_SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": (
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'"),
    "Referrer-Policy": "no-referrer",
}


@attrs.frozen
class Asset:
    """One static file, ready to send."""

    body: bytes
    content_type: str
    etag: str  # quoted, strong
    cache_control: str

    @classmethod
    def from_bytes(cls, name: str, body: bytes) -> Asset:
        """Build the asset for the file `name` (a '/'-separated path below static/).

        Raises:
            KeyError: `name` has a suffix not in CONTENT_TYPES.
        """
        suffix = "." + name.rsplit(".", 1)[-1] if "." in name else ""
        content_type = CONTENT_TYPES[suffix.lower()]
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        cache = VENDOR_MAX_AGE if name.startswith("vendor/") else REVALIDATE
        return cls(body=body, content_type=content_type, etag=etag, cache_control=cache)


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.startswith((".", "_")):
            continue
        if entry.is_dir():
            yield from _walk(entry, f"{prefix}{entry.name}/")
        else:
            yield f"{prefix}{entry.name}", entry


def load_assets() -> dict[str, Asset]:
    """Read every servable file under static/ into memory, keyed by its path below static/.

    Works the same from a source tree, an installed wheel or a zip (importlib.resources).
    Files with a suffix not in CONTENT_TYPES are skipped.
    """
    root = resources.files(STATIC_PACKAGE).joinpath(STATIC_DIR)
    assets: dict[str, Asset] = {}
    for name, entry in _walk(root):
        try:
            assets[name] = Asset.from_bytes(name, entry.read_bytes())
        except KeyError:
            continue
    return assets


def _not_modified(asset: Asset) -> bool:
    wanted = request.headers.get("If-None-Match", "")
    tags = {t.strip().removeprefix("W/") for t in wanted.split(",")}
    return asset.etag in tags or "*" in tags


def _send(asset: Asset, extra: dict[str, str] | None = None) -> Response:
    headers = {"ETag": asset.etag, "Cache-Control": asset.cache_control,
               "X-Content-Type-Options": "nosniff", **(extra or {})}
    if _not_modified(asset):
        return Response(b"", status=304, headers=headers)
    return Response(asset.body, status=200, content_type=asset.content_type, headers=headers)


def _missing(path: str, names: list[str]) -> Response:
    listing = ", ".join(f"/ui/{n}" for n in names if not n.startswith("vendor/"))
    body = documents.ErrorBody(f"no such console asset {path!r}: the console is at / "
                               f"and its files are {listing}")
    return Response(documents.dumps(body), status=404, content_type="application/json")


def register_ui(app: QuartTrio) -> None:
    """Add `GET /` (the console page) and `GET /ui/<path>` (its assets) to `app`.

    A missing asset answers 404 with a JSON `{"error": ...}` body like the rest of the API.
    Responses carry an ETag (a matching If-None-Match gets a 304) and a Cache-Control header.

    Raises:
        RuntimeError: the package was installed without its static files.
    """
    assets = load_assets()
    page = assets.pop(PAGE, None)
    if page is None:
        raise RuntimeError(
            f"the console's {STATIC_DIR}/{PAGE} is missing from the installed package: "
            "reinstall fodcproxy with its package data")
    names = sorted(assets)

    @app.route("/", methods=["GET"])
    async def console_page() -> Response:
        return _send(page, PAGE_SECURITY_HEADERS)

    @app.route("/ui/<path:name>", methods=["GET"])
    async def console_asset(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            return _missing(request.path, names)
        return _send(asset)
