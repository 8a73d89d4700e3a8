"""Helpers for the service tests: in-process clients for the app's two interfaces (ASGI, and
RSGI as Granian drives it) and a real ``secsipid serve`` process on a loopback port (stopped
by PID).

``call()`` uses the interface named by :data:`INTERFACE` (a test module may switch it, as
test_service_app.py does to run every contract test through both).
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

#: The interface ``call``/``acall`` drive: "asgi" or "rsgi".
INTERFACE = "asgi"


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


async def acall(app: ServiceApp, method: str, path: str, *args: Any, **kwargs: Any) -> Reply:
    if INTERFACE == "rsgi":
        return await rsgi_call(app, method, path, *args, **kwargs)
    return await asgi_call(app, method, path, *args, **kwargs)


async def asgi_call(
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
    raw = [(k.lower().encode(), v.encode("latin-1")) for k, v in headers]
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


# -- RSGI, as Granian drives it ----------------------------------------------------------------


class RSGIProtocolClosed(RuntimeError):  # noqa: N818 - Granian's name
    """Granian's ``RSGIProtocolClosed`` (a RuntimeError): the client is gone."""


class RSGIHeaders:
    """Granian's RSGI header map: lower-case names; a value that is not ASCII text never
    reaches the app (Granian leaves it out, as observed with Granian 2.8)."""

    def __init__(self, raw: list[tuple[str, str]]) -> None:
        self._items = [(k.lower(), v) for k, v in raw if v.isascii()]

    def get(self, key: str, default: Any = None) -> Any:
        for name, value in self._items:
            if name == key:
                return value
        return default

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, key: str) -> bool:
        return any(name == key for name, _ in self._items)


class RSGIScope:
    def __init__(self, method: str, path: str, headers: RSGIHeaders) -> None:
        self.proto = "http"
        self.http_version = "1.1"
        self.method = method
        self.path = path
        self.query_string = ""
        self.client = "127.0.0.1:40000"
        self.headers = headers


class RSGIProtocol:
    """The request side as Granian 2.8 behaves: ``await proto()`` returns the whole body, or
    raises RSGIProtocolClosed when the client leaves before its end; ``async for`` yields the
    chunks and ends quietly when the client leaves; ``stall`` never delivers the end."""

    def __init__(self, chunks: list[bytes], *, stall: bool, gone: bool) -> None:
        self.chunks = chunks
        self.stall = stall
        self.gone = gone
        self.response: tuple[int, list[tuple[str, str]], bytes] | None = None

    async def __call__(self) -> bytes:
        if self.gone:
            raise RSGIProtocolClosed("RSGI transport is closed")
        if self.stall:
            await asyncio.sleep(3600)
        return b"".join(self.chunks)

    def __aiter__(self) -> Any:
        return self._iterate()

    async def _iterate(self) -> Any:
        for chunk in self.chunks:
            yield chunk
        if self.stall:
            await asyncio.sleep(3600)

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        assert self.response is None, "two responses"
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in headers), headers
        self.response = (status, headers, body)


async def rsgi_call(
    app: ServiceApp,
    method: str,
    path: str,
    body: bytes | Iterable[bytes] = b"",
    headers: Iterable[tuple[str, str]] = (),
    *,
    content_length: bool = True,
    stall: bool = False,
    gone: bool = False,
) -> Reply:
    """One request through ``app.__rsgi__`` (same arguments as :func:`asgi_call`)."""
    chunks = [body] if isinstance(body, bytes) else list(body)
    raw = list(headers)
    if content_length and not any(k.lower() == "content-length" for k, _ in raw):
        raw.append(("content-length", str(sum(len(c) for c in chunks))))
    proto = RSGIProtocol(chunks, stall=stall, gone=gone)
    await app.__rsgi__(RSGIScope(method, path, RSGIHeaders(raw)), proto)
    assert proto.response is not None, "the app sent nothing"
    status, hdrs, body_out = proto.response
    return Reply(status, dict(hdrs), body_out)


# -- a real server process ---------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """``secsipid serve ARGS --listen 127.0.0.1:PORT`` as a child process."""

    def __init__(
        self,
        *args: str,
        workers: int = 1,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.port = port or free_port()
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
