"""Helpers for the service tests: an in-process ASGI client and a real ``secsipid serve``
process on a loopback port (stopped by PID).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from secsipid.service import ServiceApp


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode()

    def json(self) -> Any:
        return json.loads(self.body)


async def acall(
    app: ServiceApp,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    content_length: bool = True,
    stall: bool = False,
) -> Reply:
    """One request through the ASGI app.  ``body`` may be a list of chunks (sent with
    ``more_body``); ``content_length=False`` leaves the header out (chunked upload);
    ``stall=True`` never delivers the end of the body."""
    chunks = [body] if isinstance(body, bytes) else list(body)
    raw = [(k.lower().encode(), v.encode()) for k, v in headers]
    if content_length and not any(k == b"content-length" for k, _ in raw):
        raw.append((b"content-length", str(sum(len(c) for c in chunks)).encode()))
    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "headers": raw,
        "client": ("127.0.0.1", 40000),
    }
    pending = list(chunks)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            chunk = pending.pop(0)
            more = bool(pending) or stall
            return {"type": "http.request", "body": chunk, "more_body": more}
        if stall:
            await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent, "the app sent nothing"
    start = sent[0]
    assert start["type"] == "http.response.start"
    body_out = b"".join(m.get("body", b"") for m in sent[1:])
    hdrs = {k.decode(): v.decode() for k, v in start["headers"]}
    return Reply(start["status"], hdrs, body_out)


def call(app: ServiceApp, method: str, path: str, *args: Any, **kwargs: Any) -> Reply:
    return asyncio.run(acall(app, method, path, *args, **kwargs))


# -- a real server process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``secsipid serve ARGS --listen 127.0.0.1:PORT`` as a child process."""

    def __init__(self, *args: str, workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = [
            sys.executable, "-m", "secsipid", "serve", "--listen", f"127.0.0.1:{self.port}",
            "--workers", str(workers), *args,
        ]  # fmt: skip
        self.env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    def start(self, log_path: Path, timeout: float = 20.0) -> ServerProcess:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.args, stdout=self._log, stderr=subprocess.STDOUT, env=self.env
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited {self.proc.returncode}: {self.log()}")
            try:
                if self.request("GET", "/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"server did not start: {self.log()}")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""

    def connection(self, timeout: float = 10.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> Reply:
        own = conn is None
        conn = conn or self.connection()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        finally:
            if own:
                conn.close()

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
