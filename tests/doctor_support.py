"""Shared by the doctor tests: the steps a report lists, in order, and a loopback HTTP server
that publishes a JWKS (our public key)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# Every report lists these steps, in this order.
STEP_IDS = (
    "reachable",
    "tls",
    "token",
    "registry_jwks",
    "our_key",
    "clock_skew",
    "search",
    "answer_signature",
    "answer_binding",
    "answer_spec",
)


@contextmanager
def published_jwks(jwks: dict[str, Any]) -> Iterator[str]:
    """Serves ``jwks`` at ``http://127.0.0.1:<port>/.well-known/jwks.json`` while open."""
    body = json.dumps(jwks).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    finally:
        server.shutdown()
        server.server_close()
