"""Shared by the sandbox tests: a loopback HTTP server collecting callbacks (stdlib only)."""

from __future__ import annotations

import json
import queue
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Receiver:
    """Collects every POST as ``(path, body)`` and answers with the spec's ACK; ``url`` is
    ``http://127.0.0.1:PORT`` + ``path``."""

    def __init__(self, path: str) -> None:
        self.received: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put((self.path, json.loads(body)))
                now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
                ack = json.dumps(
                    {"message": {"ack_status": "ACK", "timestamp": now, "correlation_id": "c"}}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(ack)))
                self.end_headers()
                self.wfile.write(ack)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def next(self) -> tuple[str, dict[str, Any]]:
        return self.received.get(timeout=15)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
