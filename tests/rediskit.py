"""A real ``redis-server`` for the tests (Debian package), and a server that is not Redis.

``RedisServer`` runs ``redis-server`` on 127.0.0.1 and a free port, without persistence, in its
own process; the tests stop it by PID (and may pause it with SIGSTOP to make it slow, or stop
and start it again on the same port).  ``GarbageServer`` accepts connections on loopback and
answers every read with bytes that are not the Redis protocol.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

REDIS_SERVER = shutil.which("redis-server")


def need_redis_server() -> str:
    """The path of redis-server, or skip the test with the reason."""
    if REDIS_SERVER is None:
        pytest.skip(
            "redis-server is not installed (Debian package redis-server; "
            "scripts/setup.sh --test installs it)"
        )
    return REDIS_SERVER


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """``redis-server`` on 127.0.0.1, no persistence, stopped by PID."""

    def __init__(self, directory: Path, port: int | None = None) -> None:
        self.binary = need_redis_server()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        cmd = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
               "--save", "", "--appendonly", "no", "--dir", str(self.directory),
               "--daemonize", "no", "--protected-mode", "yes", "--loglevel", "warning"]  # fmt: skip
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not self.ping():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"redis-server did not start: {err}")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def pause(self) -> None:
        """SIGSTOP: the server keeps its socket (connections are accepted by the kernel) but
        answers nothing, like an overloaded or stuck Redis."""
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGCONT)
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> None:
        self.stop()
        self.start()


class GarbageServer:
    """Accepts TCP connections on 127.0.0.1 and answers whatever it reads with bytes that are
    not RESP (a misconfigured port: another service, or a broken proxy)."""

    def __init__(self, answer: bytes = b"\x00\xffHTTP/1.1 400 Bad Request\r\n\r\n?x\r\n") -> None:
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port: int = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _serve(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        with conn:
            try:
                while conn.recv(65536):
                    conn.sendall(self.answer)
            except OSError:
                pass

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


class CountingCertServer:
    """A plain-HTTP certificate server in a thread of the test process, on 127.0.0.1: counts
    requests per path; a route may delay its first N answers (a fetch in progress that the
    tests can interrupt) or all of them."""

    def __init__(self) -> None:
        import http.server

        self.routes: dict[str, dict[str, object]] = {}
        self.hits: dict[str, int] = {}
        self.lock = threading.Lock()
        self.requested = threading.Condition(self.lock)
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are separate writes

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                with outer.lock:
                    n = outer.hits[path] = outer.hits.get(path, 0) + 1
                    outer.requested.notify_all()
                    route = outer.routes.get(path)
                if route is None:
                    self._send(404, {}, b"not found\n")
                    return
                delay = float(route.get("delay", 0))  # type: ignore[arg-type]
                if n <= int(route.get("slow_first", 0)):  # type: ignore[call-overload]
                    delay = float(route.get("first_delay", 0))  # type: ignore[arg-type]
                if delay:
                    time.sleep(delay)
                headers = dict(route.get("headers", {}))  # type: ignore[call-overload]
                body = route["body"]
                assert isinstance(body, bytes)
                self._send(int(route.get("status", 200)), headers, body)  # type: ignore[call-overload]

            def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: object, client_address: object) -> None:
                pass  # a client that went away (a cancelled fetch) is no news here

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()

    def route(self, path: str, body: bytes, **options: object) -> str:
        with self.lock:
            self.routes[path] = {"body": body, **options}
        return f"http://127.0.0.1:{self.port}{path}"

    def count(self, path: str) -> int:
        with self.lock:
            return self.hits.get(path, 0)

    def wait_for(self, path: str, n: int, timeout: float = 10) -> None:
        with self.lock:
            if not self.requested.wait_for(lambda: self.hits.get(path, 0) >= n, timeout):
                raise AssertionError(f"{path}: {self.hits.get(path, 0)} requests, wanted {n}")

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
