"""A real network fault between a client and the moto server: an HTTP forwarder on 127.0.0.1 that
passes every request through, except the GET of one chosen key, whose answer it sends in part
and then stalls (the client's read times out) or cuts (the connection drops mid-body)."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Literal
from urllib.parse import urlsplit

Fault = Literal["stall", "cut"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection"}


@dataclass
class FaultPlan:
    """Which GET to break and how; ``hits`` counts the answers that were broken."""

    key: str = ""
    fault: Fault | None = None
    hits: int = 0
    #: break at most this many answers (None: every one); ranged answers (206) break too
    limit: int | None = None
    released: threading.Event = field(default_factory=threading.Event)


def _handler(upstream: str, plan: FaultPlan) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Forward(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            connection.request(self.command, self.path, body=body, headers=headers)
            answer = connection.getresponse()
            payload = answer.read()
            connection.close()
            broken = (
                plan.fault is not None
                and self.command == "GET"
                and urlsplit(self.path).path.endswith("/" + plan.key)
                and answer.status in (200, 206)
                and (plan.limit is None or plan.hits < plan.limit)
            )
            self.send_response(answer.status)
            for name, value in answer.getheaders():
                if name.lower() not in HOP_BY_HOP | {"content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            if not broken:
                self.wfile.write(payload)
                return
            plan.hits += 1
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            if plan.fault == "stall":  # the rest never comes: the client's read timeout fires
                plan.released.wait(timeout=30)
            self.close_connection = True  # "cut": the socket closes with half the body sent

        do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    return Forward


@contextmanager
def faulty_forwarder(upstream: str) -> Iterator[tuple[str, FaultPlan]]:
    """``(endpoint, plan)``: point a client at ``endpoint``; set ``plan`` to break a key's GET."""
    plan = FaultPlan()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(upstream, plan))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", plan
    finally:
        plan.released.set()
        server.shutdown()
        server.server_close()
