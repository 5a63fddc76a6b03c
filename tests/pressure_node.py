"""A small stand-in for a BanyanDB node under memory pressure (tests/test_pressure_e2e.py).

    python tests/pressure_node.py [--heap-bytes N]

Serves on 127.0.0.1, a port of its choosing, printed as the first line of stdout:
- ``GET /metrics``: ``process_resident_memory_bytes`` of this very process (VmRSS), Prometheus
  text format;
- ``GET /debug/pprof/heap`` and ``GET /debug/pprof/goroutine``: recognisable bytes
  (`profile_body`), the heap one `--heap-bytes` long;
- ``POST /grow?mb=N``: allocates N MiB more and touches every page, so the RSS really grows;
  answers the new RSS in bytes.
Standard library only; stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import http.server
import sys
import urllib.parse

_held: list[bytearray] = []


def profile_body(kind: str, size: int) -> bytes:
    """The bytes served for profile `kind`: a header naming it, then a repeating pattern."""
    head = f"pressure-node {kind} profile\n".encode()
    pattern = bytes(range(256))
    body = head + pattern * (max(0, size - len(head)) // 256 + 1)
    return body[:max(size, len(head))]


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Handler(http.server.BaseHTTPRequestHandler):
    heap_bytes = 2_500_000
    goroutine_bytes = 4096

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _answer(self, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        path = urllib.parse.urlsplit(self.path).path
        if path == "/metrics":
            text = ("# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
                    "# TYPE process_resident_memory_bytes gauge\n"
                    f"process_resident_memory_bytes {rss_bytes()}\n")
            self._answer(text.encode(), "text/plain; version=0.0.4")
        elif path == "/debug/pprof/heap":
            self._answer(profile_body("heap", self.heap_bytes))
        elif path == "/debug/pprof/goroutine":
            self._answer(profile_body("goroutine", self.goroutine_bytes))
        else:
            self.send_error(404)

    def do_POST(self) -> None:
        parts = urllib.parse.urlsplit(self.path)
        if parts.path != "/grow":
            self.send_error(404)
            return
        mb = int(urllib.parse.parse_qs(parts.query).get("mb", ["0"])[0])
        block = bytearray(mb * 1024 * 1024)
        for i in range(0, len(block), 4096):  # touch every page: resident, not just reserved
            block[i] = 1
        _held.append(block)
        self._answer(str(rss_bytes()).encode(), "text/plain")


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--heap-bytes", type=int, default=Handler.heap_bytes)
    args = parser.parse_args(argv)
    Handler.heap_bytes = args.heap_bytes
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    print(server.server_address[1], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


def _stop(*_: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    import signal

    signal.signal(signal.SIGTERM, _stop)
    main(sys.argv[1:])
