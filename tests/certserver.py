"""A misbehaving-on-demand certificate server for the fetch tests (run as its own process).

    python certserver.py --routes routes.json --ready ready.txt [--tls-cert C --tls-key K]

``routes.json`` maps a path to ``{"status": 200, "headers": {...}, "body": "<text>" or
"body_hex": ".." or "body_file": "<path, read at each request>", "header_lines": [[name,
value], ...] (repeatable, after "headers"), "hang_up": true (close the connection after the
response, unannounced), "no_date": true (no Date header), "mode": "normal" | "hang" |
"trickle" | "slow-headers" | "announce-then-hang" | "endless"}``.  ``GET /_hits`` returns the
per-path request counts as JSON, ``GET /_hosts`` the Host header of each path's last request,
``GET /_headers`` all its header lines (``[name, value]`` pairs, in order), ``GET /_peers``
the client's address and port (one connection reused: the same port).  The bound port is
written to the ready file.  Listens on a loopback address (``--host``: 127.0.0.0/8 or ::1,
default 127.0.0.1).  Stopped by the tests with SIGTERM (by PID).
"""

from __future__ import annotations

import argparse
import http.server
import json
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

HITS: dict[str, int] = {}
HOSTS: dict[str, str] = {}
HEADERS: dict[str, list[tuple[str, str]]] = {}
PEERS: dict[str, list[Any]] = {}
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    routes: ClassVar[dict[str, dict[str, Any]]] = {}
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in ("/_hits", "/_hosts", "/_headers", "/_peers"):
            with LOCK:
                answers = {"/_hits": HITS, "/_hosts": HOSTS, "/_headers": HEADERS, "/_peers": PEERS}
                body = json.dumps(answers[path])
            self._send(200, {"Content-Type": "application/json"}, body.encode())
            return
        with LOCK:
            HITS[path] = HITS.get(path, 0) + 1
            HOSTS[path] = self.headers.get("Host", "")
            HEADERS[path] = list(self.headers.items())
            PEERS[path] = list(self.client_address[:2])
        route = self.routes.get(path)
        if route is None:
            self._send(404, {"Content-Type": "text/plain"}, b"not found\n")
            return
        if "body_file" in route:
            body = Path(route["body_file"]).read_bytes()  # what the test put there last
        elif "body_hex" in route:
            body = bytes.fromhex(route["body_hex"])
        else:
            body = route.get("body", "").encode()
        mode = route.get("mode", "normal")
        delay = float(route.get("delay", 0))
        if delay:
            time.sleep(delay)
        if mode == "hang":
            time.sleep(3600)
            return
        headers = dict(route.get("headers", {}))
        if mode == "announce-then-hang":
            # Headers promising a body of `length` bytes, then nothing: only a client that
            # refuses on the announced length answers before its deadline.
            self.send_response(route.get("status", 200))
            self.send_header("Content-Length", str(route["length"]))
            self.end_headers()
            self.wfile.flush()
            time.sleep(3600)
            return
        if mode == "endless":
            # No Content-Length, then `body` over and over (for at most `seconds`): only a
            # client that caps the body while reading answers before its deadline.
            self.send_response(route.get("status", 200))
            self.send_header("Connection", "close")
            self.end_headers()
            stop = time.monotonic() + float(route.get("seconds", 30))
            try:
                while time.monotonic() < stop:
                    self.wfile.write(body)
                    self.wfile.flush()
            except OSError:
                pass  # the client hung up
            self.close_connection = True
            return
        if mode == "trickle":
            # Headers at once, then the body one byte every `interval` seconds.
            self.send_response(route.get("status", 200))
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            interval = float(route.get("interval", 0.5))
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                time.sleep(interval)
            return
        if route.get("no_length"):
            # No Content-Length: the body runs until the connection closes.
            self.send_response(route.get("status", 200))
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.close_connection = True
            return
        self._send(route.get("status", 200), headers, body, route.get("header_lines", []),
                   date=not route.get("no_date"))  # fmt: skip
        if route.get("hang_up"):
            # Close the connection after the response without saying so (no "Connection:
            # close"), as a server does with an idle keep-alive connection.
            self.close_connection = True

    def _send(
        self, status: int, headers: dict[str, str], body: bytes,
        lines: Sequence[Sequence[str]] = (), date: bool = True,
    ) -> None:  # fmt: skip
        if date:
            self.send_response(status)  # adds Server and Date
        else:  # a server without a clock (RFC 9110 §6.6.1): no Date header
            self.send_response_only(status)
        for k, v in [*headers.items(), *lines]:
            self.send_header(k, v)
        if "Content-Length" not in headers:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--routes", required=True)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--tls-cert")
    parser.add_argument("--tls-key")
    args = parser.parse_args()
    Handler.routes = json.loads(Path(args.routes).read_text())
    if not args.host.startswith("127.") and args.host != "::1":
        raise SystemExit("certserver: loopback (127.0.0.0/8, ::1) only")
    http.server.ThreadingHTTPServer.request_queue_size = 128  # 16 fetches at once, no SYN drops
    if ":" in args.host:
        http.server.ThreadingHTTPServer.address_family = socket.AF_INET6
    server = http.server.ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    if args.tls_cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.tls_cert, args.tls_key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    Path(args.ready + ".tmp").write_text(str(server.server_address[1]))
    Path(args.ready + ".tmp").rename(args.ready)
    server.serve_forever()


if __name__ == "__main__":
    main()
