"""The HTTP service as a plain application (no framework: see docs/service.md for the
measurements behind that choice).

Endpoints::

    POST /v1/check                 secsipidx-compatible verification (body = Identity value)
    POST /v1/sign-csv              secsipidx-compatible signing (OrigTN,DestTN,ATTEST,OrigID,X5U)
    GET  /v1/pub/<file>            the operator's public certificates (no listing, no traversal)
    POST /stir/v1/signing          ATIS-1000082 signing (extended: div, Rich Call Data)
    POST /stir/v1/verification     ATIS-1000082 verification (extended: chains, RCD)
    POST /v1/verify                our JSON API: the whole verdict (Verdict.to_dict())
    POST /v1/sign                  our JSON API: SHAKEN (with RCD), div or rcd PASSporTs
    GET  /healthz                  liveness and what is configured
    GET  /metrics                  Prometheus text format
    GET  /openapi.json             the API description

The app is a thin shell: verification is ``Verifier.acheck`` and its :class:`Verdict`, signing is
``Signer.identity`` and its siblings (``service/signing.py``); this module only translates
HTTP into those calls and back.  Every
request takes the :class:`ServiceState` once, so a reload (SIGHUP or a changed file) swaps the
state between requests, never under one.

One dispatcher serves two server interfaces: ASGI (``__call__``: uvicorn or any ASGI server,
and the tests) and RSGI (``__rsgi__``: Granian's native interface, which ``secsipid serve``
uses because it costs markedly less CPU per request than Granian's ASGI, docs/service.md).
Each interface only reads the request and writes the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, TextIO

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from .. import __version__
from .._errors import SigningError, VerificationError
from .._reasons import Reason
from .._signer import new_origid
from .._verifier import Verdict
from .atis import (
    ATIS_TIME_SKEW,
    AtisError,
    check_accept,
    check_content_type,
    parse_signing,
    parse_verification,
    verification_body,
)
from .config import ConfigError, ServiceConfig, load_config
from .metrics import NullMetrics, make_metrics
from .native import ApiError, check_json_type, parse_sign, parse_verify
from .openapi import openapi_document
from .signing import sign
from .state import ServiceState, build_state

__all__ = ["Reloader", "ServiceApp", "create_app", "create_app_from_env"]

log = logging.getLogger("secsipid.service")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SPEC_ENV = "SECSIPID_SERVE_SPEC"
# Files are checked for changes this often (seconds), in a background task of each worker.
RELOAD_INTERVAL = 1.0
MAX_PUB_FILE = 1 << 20

Header = tuple[str, str]
_TEXT: Header = ("content-type", "text/plain; charset=utf-8")
_JSON: Header = ("content-type", "application/json")
_NOSNIFF: Header = ("x-content-type-options", "nosniff")
# An X-RequestID is echoed when it is this short and printable ASCII; else one is generated.
MAX_REQUEST_ID = 128

# Reasons whose failure is the certificate server's, not the request's: 502/504 for /v1/check.
_UPSTREAM = {
    Reason.CERT_FETCH_FAILED: 502,
    Reason.CERT_FETCH_REDIRECT: 502,
    Reason.CERT_FETCH_STATUS: 502,
    Reason.CERT_TOO_LARGE: 502,
    Reason.CERT_FETCH_TIMEOUT: 504,
}


def http_status(reason: Reason) -> int:
    """The HTTP status of a failed ``/v1/check``: 500 for our own configuration (the reasons
    whose SIP status is 500), 502/504 when the certificate server failed, 400 otherwise."""
    if reason.sip_status == 500:
        return 500
    return _UPSTREAM.get(reason, 400)


class Response:
    __slots__ = ("body", "headers", "reason", "status")

    def __init__(self, status: int, headers: list[Header], body: bytes, reason: str = "") -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason


def _text(status: int, text: str, reason: str = "", extra: tuple[Header, ...] = ()) -> Response:
    return Response(status, [_TEXT, _NOSNIFF, *extra], text.encode(), reason)


class _Headers:
    """The request headers the service reads (values as text; None when absent).

    Read when a handler asks for them: under Granian each read is a call into its (Rust)
    header map that builds a ``str``, and a request needs two or three of the six below
    (``/v1/sign-csv`` without a token reads only Content-Length and X-SPC).
    """

    __slots__ = ("content_length", "get")

    def __init__(self, get: Callable[[str], str | None]) -> None:
        self.get = get
        self.content_length = get("content-length")  # every body read needs it

    @classmethod
    def from_asgi(cls, raw: list[tuple[bytes, bytes]]) -> _Headers:
        """From ASGI's (name, value) byte pairs (the last of repeated headers wins)."""
        found = {name: value for name, value in raw if name in _ASGI_WANTED}
        return cls({k.decode(): v.decode("latin-1") for k, v in found.items()}.get)

    @property
    def authorization(self) -> str | None:
        return self.get("authorization")

    @property
    def content_type(self) -> str | None:
        return self.get("content-type")

    @property
    def accept(self) -> str | None:
        return self.get("accept")

    @property
    def request_id(self) -> str | None:
        return self.get("x-requestid")

    @property
    def spc(self) -> str | None:
        return self.get("x-spc")


_ASGI_WANTED = frozenset(
    (b"content-length", b"content-type", b"authorization", b"accept", b"x-requestid", b"x-spc")
)


class _BodyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _DisconnectedError(Exception):
    pass


class _Request:
    """A request as the handlers see it, whatever the server interface: method, path, the
    headers they read, and a way to read the body (:meth:`read`, interface-specific)."""

    __slots__ = ("hdrs", "method", "path")

    def __init__(self, method: str, path: str, hdrs: _Headers) -> None:
        self.method = method
        self.path = path
        self.hdrs = hdrs

    async def read(self, limit: int) -> bytes:
        """The whole body; :class:`_BodyError` past ``limit`` bytes, :class:`_DisconnectedError`
        when the client leaves before it ends."""
        raise NotImplementedError

    def remote(self) -> str | None:
        """The client's address, for the access log."""
        raise NotImplementedError


def _too_large(limit: int) -> _BodyError:
    return _BodyError(413, "too-large", f"the body exceeds {limit} bytes")


class _ASGIRequest(_Request):
    __slots__ = ("_receive", "_scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        super().__init__(scope["method"], scope["path"], _Headers.from_asgi(scope["headers"]))
        self._scope = scope
        self._receive = receive

    async def read(self, limit: int) -> bytes:
        chunks = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                raise _DisconnectedError
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def remote(self) -> str | None:
        client = self._scope.get("client")
        return str(client[0]) if client else None


class _RSGIRequest(_Request):
    __slots__ = ("_proto", "_scope")

    def __init__(self, scope: Any, proto: Any) -> None:
        # _Request.__init__ written out, a call fewer per request.  Granian's header map has
        # lower-case names, and values that are not ASCII text never reach the app.
        self.method = scope.method
        self.path = scope.path
        self.hdrs = _Headers(scope.headers.get)
        self._scope = scope
        self._proto = proto

    async def read(self, limit: int) -> bytes:
        try:
            if self.hdrs.content_length is not None:
                # Known length, already checked against the limit: one read of the whole body
                # (Granian raises RSGIProtocolClosed when the client leaves before its end).
                body: bytes = await self._proto()
                if len(body) > limit:
                    raise _too_large(limit)
                return body
            # Chunked: counted as it arrives, never buffered past the limit.  (Granian ends
            # the iteration quietly when the client leaves; the answer then goes nowhere.)
            chunks = []
            size = 0
            async for chunk in self._proto:
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
            return b"".join(chunks)
        except RuntimeError:  # RSGIProtocolClosed, RSGIProtocolError
            raise _DisconnectedError from None

    def remote(self) -> str | None:
        client = self._scope.client
        return client.rsplit(":", 1)[0].strip("[]") if client else None


class _Deadlines:
    """The body deadline (``server.body_timeout``) of every request still reading its body,
    enforced by one timer per event loop.

    ``asyncio.timeout()`` around each body read costs a timer handle per request (about a
    fifth of the app's own per-request cost, measured with bench/profile_service.py); here a
    request costs a dictionary entry, and the one timer is re-armed only when it fires or a
    deadline earlier than its own comes in.  A request past its deadline is cancelled like
    ``asyncio.timeout`` does it, and :meth:`expired` tells the reader that the cancellation
    was ours (then undone with ``uncancel``), so that it answers 408; any other cancellation
    (the server's) goes on as it came.
    """

    __slots__ = ("_expired", "_handle", "_loop", "_reading", "_wake")

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reading: dict[asyncio.Task[Any], float] = {}
        self._expired: set[asyncio.Task[Any]] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._wake = 0.0

    def start(self, timeout: float) -> asyncio.Task[Any] | None:
        """Watch the current task for ``timeout`` seconds; returns it (None outside a task)."""
        task = asyncio.current_task()
        if task is None:
            return None
        loop = task.get_loop()
        if loop is not self._loop:  # the first request, or a new event loop (tests)
            self._loop = loop
            self._reading = {}
            self._expired = set()
            self._handle = None
        deadline = loop.time() + timeout
        self._reading[task] = deadline
        if self._handle is None or deadline < self._wake:
            self._arm(deadline)
        return task

    def done(self, task: asyncio.Task[Any] | None) -> None:
        if task is not None:
            self._reading.pop(task, None)

    def expired(self, task: asyncio.Task[Any] | None) -> bool:
        """Whether ``task`` was cancelled for its deadline (and if so, undo that)."""
        if task is None or task not in self._expired:
            return False
        self._expired.discard(task)
        task.uncancel()
        return True

    def _arm(self, when: float) -> None:
        assert self._loop is not None
        if self._handle is not None:
            self._handle.cancel()
        self._wake = when
        self._handle = self._loop.call_at(when, self._fire)

    def _fire(self) -> None:
        assert self._loop is not None
        self._handle = None
        now = self._loop.time()
        upcoming = None
        for task, deadline in list(self._reading.items()):
            if deadline <= now:
                del self._reading[task]
                if not task.done():
                    self._expired.add(task)
                    task.cancel()
            elif upcoming is None or deadline < upcoming:
                upcoming = deadline
        if upcoming is not None:
            self._arm(upcoming)


# -- reloading ---------------------------------------------------------------------------------


def _stamp(path: str) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class Reloader:
    """Rebuilds the state when a watched file changes or the reload stamp is touched
    (``secsipid serve`` touches it on SIGHUP).  A configuration that does not build is
    logged, one line per problem, and the running state stays."""

    def __init__(self, app: ServiceApp, stamp_file: str | None = None) -> None:
        self.app = app
        self.stamp_file = stamp_file
        self._seen = self._fingerprint(app.state)

    def _fingerprint(self, state: ServiceState) -> tuple[object, ...]:
        files = (*state.watched, *((self.stamp_file,) if self.stamp_file else ()))
        return tuple((path, _stamp(path)) for path in files)

    def changed(self) -> bool:
        return self._fingerprint(self.app.state) != self._seen

    def reload(self) -> bool:
        """Rebuild from the configuration file and the original flags; True if swapped."""
        old = self.app.state.config
        try:
            config = load_config(old.config_file, dict(old.overrides))
            state = build_state(config, self.app.metrics)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("secsipid serve: reload refused: %s", problem)
            self.app.metrics.reload(False)
            self._seen = self._fingerprint(self.app.state)
            return False
        self.app.state = state
        self._seen = self._fingerprint(state)
        self.app.metrics.reload(True)
        log.warning("secsipid serve: configuration reloaded (pid %d)", os.getpid())
        return True

    def check(self) -> bool:
        return self.reload() if self.changed() else False


# -- the app -----------------------------------------------------------------------------------


Handler = Callable[["ServiceApp", ServiceState, _Request], Awaitable[Response]]


# What a route's answers look like: text (secsipidx's endpoints), ATIS-1000082 JSON, or our
# own JSON API.
TEXT, ATIS, OWN = "text", "atis", "json"


class _Route:
    __slots__ = ("handler", "kind", "methods", "name")

    def __init__(self, name: str, methods: tuple[str, ...], handler: Handler, kind: str) -> None:
        self.name = name
        self.methods = methods
        self.handler = handler
        self.kind = kind


class ServiceApp:
    """The application (ASGI and RSGI).  ``state`` may be replaced at any time (reload)."""

    def __init__(
        self,
        state: ServiceState,
        *,
        metrics: NullMetrics | None = None,
        access_log: TextIO | None = None,
        stamp_file: str | None = None,
        watch: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state
        self.metrics = metrics if metrics is not None else NullMetrics()
        self.access_log = access_log
        self.clock = clock
        self.reloader = Reloader(self, stamp_file)
        self.watch = watch
        self._tasks: set[asyncio.Task[None]] = set()
        self._deadlines = _Deadlines()
        self._pub_warned: set[str] = set()
        self._openapi = json.dumps(openapi_document(), indent=1).encode()

    # -- the two server interfaces ------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI 3."""
        kind = scope["type"]
        if kind == "http":
            start = time.perf_counter()
            req = _ASGIRequest(scope, receive)
            route, response = await self._dispatch(req)
            if response is None:  # the client left
                self.metrics.request(route.name, 499, time.perf_counter() - start)
                return
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.headers]
            await send({"type": "http.response.start", "status": response.status,
                        "headers": headers})  # fmt: skip
            await send({"type": "http.response.body", "body": response.body})
            self._done(req, route, response, start)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        """RSGI (Granian's interface): HTTP only (the service has no websocket)."""
        if scope.proto != "http":
            return
        start = time.perf_counter()
        req = _RSGIRequest(scope, proto)
        route, response = await self._dispatch(req)
        if response is None:
            self.metrics.request(route.name, 499, time.perf_counter() - start)
            return
        proto.response_bytes(response.status, response.headers, response.body)
        self._done(req, route, response, start)

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """RSGI worker start (the loop is not running yet)."""
        self._start_background(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        """RSGI worker end."""
        self._stop_background()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._start_background(asyncio.get_running_loop())
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._stop_background()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start_background(self, loop: asyncio.AbstractEventLoop) -> None:
        """Each worker's housekeeping: metrics handed to prometheus-client and, when watching,
        changed files reloaded, once a second."""
        task = loop.create_task(self._housekeeping())
        self._tasks.add(task)
        if self.watch:
            with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
                # SIGHUP sent to a worker itself reloads it at once (the main process's SIGHUP
                # reaches the workers through the stamp file).
                loop.add_signal_handler(signal.SIGHUP, self.reloader.reload)

    def _stop_background(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks.clear()
        self.metrics.flush()

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                self.metrics.flush()
                if self.watch:
                    self.reloader.check()
            except Exception:  # a bug must not stop the housekeeping
                log.exception("secsipid serve: housekeeping failed")

    # -- dispatch ------------------------------------------------------------------------------

    async def _dispatch(self, req: _Request) -> tuple[_Route, Response | None]:
        """The route and the response of a request (None when the client left)."""
        state = self.state
        path = req.path
        route = _ROUTES.get(path)
        if route is None:
            if path.startswith("/v1/pub/"):
                route = _PUB
            elif path.startswith("/stir/"):
                route = _STIR_OTHER
            else:
                route = _OTHER
        try:
            if route.methods and req.method not in route.methods:
                response = self._not_allowed(route, req.method)
            else:
                response = await route.handler(self, state, req)
        except AtisError as exc:
            response = Response(exc.status, [_JSON], exc.body(), exc.message_id)
        except ApiError as exc:
            response = Response(exc.status, [_JSON], exc.body(), exc.code)
        except _BodyError as exc:
            response = self._body_error(route, exc)
        except _DisconnectedError:
            return route, None
        except Exception:
            log.exception("secsipid serve: unexpected error on %s %s", req.method, path)
            if route.kind == ATIS:
                exc2 = AtisError.internal()
                response = Response(500, [_JSON], exc2.body(), exc2.message_id)
            elif route.kind == OWN:
                error = ApiError(500, "internal-error", "an unexpected error (logged)")
                response = Response(500, [_JSON], error.body(), error.code)
            else:
                response = _text(500, "FAILED\ninternal-error\n", "internal-error")
        if route.kind != TEXT:
            response.headers.append(("x-requestid", _request_id(req.hdrs.request_id)))
        return route, response

    def _done(self, req: _Request, route: _Route, response: Response, start: float) -> None:
        elapsed = time.perf_counter() - start
        self.metrics.request(route.name, response.status, elapsed)
        if self.access_log is not None:
            self._log_access(req, route, response, elapsed)

    def _not_allowed(self, route: _Route, method: str) -> Response:
        allow = ("allow", ", ".join(route.methods))
        if route.kind == ATIS:
            exc = AtisError.method_not_allowed(method)
            return Response(405, [_JSON, allow], exc.body(), exc.message_id)
        if route.kind == OWN:
            error = ApiError(405, "method-not-allowed", f"{method} is not allowed here")
            return Response(405, [_JSON, allow], error.body(), error.code)
        return _text(405, "method not allowed\n", "method-not-allowed", (allow,))

    def _body_error(self, route: _Route, exc: _BodyError) -> Response:
        if route.kind == OWN:
            error = ApiError(exc.status, exc.code, exc.message)
            return Response(exc.status, [_JSON], error.body(), exc.code)
        if route.kind == ATIS:
            if exc.code == "length-required":
                err = AtisError.length_required()
            else:
                err = AtisError.parse_failed(exc.message, exc.status)
            return Response(err.status, [_JSON], err.body(), err.message_id)
        return _text(exc.status, f"FAILED\n{exc.code}: {exc.message}\n", exc.code)

    def _log_access(self, req: _Request, route: _Route, response: Response, elapsed: float) -> None:
        request_id = next((v for k, v in response.headers if k == "x-requestid"), None)
        entry = {
            "time": round(self.clock(), 3),
            "remote": req.remote(),
            "method": req.method,
            "path": req.path,  # never the query string or a header: no secrets here
            "endpoint": route.name,
            "status": response.status,
            "bytes": len(response.body),
            "ms": round(elapsed * 1000, 3),
            "reason": response.reason or None,
            "request_id": request_id,
        }
        stream = self.access_log
        assert stream is not None
        stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        stream.flush()

    # -- body ----------------------------------------------------------------------------------

    async def _body(
        self, state: ServiceState, req: _Request, *, need_length: bool = False
    ) -> bytes:
        """The request body, within ``server.max_body`` bytes and ``server.body_timeout``."""
        limit = state.config.max_body
        length = req.hdrs.content_length
        if length is not None:
            if not (length.isascii() and length.isdigit()):
                raise _BodyError(400, "bad-content-length", "Content-Length is not a number")
            if int(length) > limit:
                raise _too_large(limit)
        elif need_length:
            raise _BodyError(411, "length-required", "Content-Length is required")
        timeout = state.config.body_timeout
        task = self._deadlines.start(timeout)
        try:
            return await req.read(limit)
        except asyncio.CancelledError:
            if self._deadlines.expired(task):
                raise _BodyError(
                    408, "body-timeout", f"the body did not arrive within {timeout:g} s"
                ) from None
            raise
        finally:
            self._deadlines.done(task)

    # -- secsipidx-compatible endpoints -------------------------------------------------------

    async def check_v1(self, state: ServiceState, req: _Request) -> Response:
        body = await self._body(state, req)
        text = body.decode("utf-8", "replace")
        values = list(filter(str.strip, text.splitlines()))  # the lines not blank
        if state.verifier is None:
            assert state.verify_error is not None
            error = state.verify_error
            verdict = Verdict.from_error(VerificationError(error.reason, error.message))
        else:
            verdict = await state.verifier.acheck(values)
        reason = verdict.reason
        self.metrics.verdict(reason.value)
        if verdict.ok:
            return Response(200, [_TEXT, *_VALID_HEADERS], b"OK\n", "valid")
        sip = f"{verdict.sip_status} {verdict.sip_reason}"
        body_text = (
            f"FAILED\nreason: {reason.value}\nsip: {sip}\nverstat: {verdict.verstat}\n"
            f"lib_code: {verdict.lib_code}\nmessage: {verdict.message}\n"
        )
        headers = [
            _TEXT,
            _NOSNIFF,
            ("x-secsipid-reason", reason.value),
            ("x-secsipid-sip-status", str(verdict.sip_status)),
            ("x-secsipid-sip-reason", verdict.sip_reason),
            ("x-secsipid-verstat", verdict.verstat),
        ]
        return Response(http_status(reason), headers, body_text.encode(), reason.value)

    def _unauthorized(self, kind: str) -> Response:
        self.metrics.signature("unauthorized")
        challenge = ("www-authenticate", 'Bearer realm="secsipid"')
        if kind == ATIS:
            exc = AtisError.unauthorized()
            return Response(401, [_JSON, challenge], exc.body(), exc.message_id)
        if kind == OWN:
            error = ApiError(401, "unauthorized", "a bearer token is required")
            return Response(401, [_JSON, challenge], error.body(), error.code)
        return _text(
            401, "FAILED\nunauthorized: a bearer token is required\n", "unauthorized", (challenge,)
        )

    async def sign_csv(self, state: ServiceState, req: _Request) -> Response:
        if state.needs_token and not state.authorized(req.hdrs.authorization):
            return self._unauthorized(TEXT)
        body = await self._body(state, req)
        if state.default is None:
            self.metrics.signature("not-configured")
            return _text(503, "FAILED\nsigning-not-configured: no signing key (--key)\n",
                         "signing-not-configured")  # fmt: skip
        try:
            text = body.decode("ascii")
        except UnicodeDecodeError:
            return self._sign_refused("invalid-csv", "the body is not ASCII text")
        fields = text.strip().split(",")
        if len(fields) < 5:
            return self._sign_refused(
                "invalid-csv", "too few tokens: expected OrigTN,DestTN,ATTEST,OrigID,X5U"
            )
        orig, dest, attest, origid, x5u = map(str.strip, fields[:5])
        profile = state.profile_for(orig, req.hdrs.spc)
        if profile is None:
            return self._sign_refused("unknown-spc", "no signing key for the X-SPC given")
        x5u = x5u or profile.x5u or ""
        if not x5u:
            return self._sign_refused("invalid-x5u", "no X5U in the request and no --x5u set")
        try:
            identity = profile.signer.identity(orig, dest, attest, origid, x5u=x5u)
        except SigningError as exc:
            return self._sign_refused(exc.code, exc.message)
        self.metrics.signature("signed")
        return Response(200, [_TEXT], identity.encode() + b"\n")

    def _sign_refused(self, code: str, message: str) -> Response:
        self.metrics.signature(code)
        return _text(400, f"FAILED\n{code}: {message}\n", code)

    async def pub(self, state: ServiceState, req: _Request) -> Response:
        name = req.path[len("/v1/pub/") :]
        directory = state.pub_dir
        # One plain file name: no listing, no sub-directories, no dot files, no traversal.
        if (
            directory is None
            or not name
            or name.startswith(".")
            or not all(c.isalnum() or c in "._-" for c in name)
        ):
            return _text(404, "404 page not found\n", "not-found")
        root = os.path.realpath(directory)
        target = os.path.realpath(os.path.join(root, name))
        if os.path.dirname(target) != root or not os.path.isfile(target):
            return _text(404, "404 page not found\n", "not-found")
        if target in state.secret_files:
            return self._pub_refused(target, "it is a configured key, token or configuration file")
        try:
            with open(target, "rb") as fh:
                data = fh.read(MAX_PUB_FILE + 1)
        except OSError:
            return _text(404, "404 page not found\n", "not-found")
        if len(data) > MAX_PUB_FILE:
            return _text(404, "404 page not found\n", "not-found")
        if _holds_private_key(data):
            return self._pub_refused(target, "it holds a private key")
        ext = name.rsplit(".", 1)[-1].lower()
        kind = {
            "pem": "application/x-x509-ca-cert",
            "crt": "application/pkix-cert",
            "cer": "application/pkix-cert",
            "der": "application/pkix-cert",
            "crl": "application/pkix-crl",
        }.get(ext, "application/octet-stream")
        headers = [("content-type", kind), _NOSNIFF, ("cache-control", "max-age=3600")]
        return Response(200, headers, b"" if req.method == "HEAD" else data)

    def _pub_refused(self, path: str, why: str) -> Response:
        """404 for a file of pub_dir that must never be published; logged once per file."""
        if path not in self._pub_warned:
            self._pub_warned.add(path)
            log.warning("secsipid serve: /v1/pub/ refuses %s: %s", path, why)
        return _text(404, "404 page not found\n", "not-found")

    # -- our own JSON API ---------------------------------------------------------------------

    async def verify_json(self, state: ServiceState, req: _Request) -> Response:
        check_json_type(req.hdrs.content_type)
        body = await self._body(state, req)
        vreq = parse_verify(body)
        verdict = await self._verdict(state, vreq.identity, vreq.orig_tn, vreq.dest_tn)
        reason = verdict.reason.value
        self.metrics.verdict(reason)
        answer = json.dumps(verdict.to_dict(), separators=(",", ":")).encode()
        return Response(200, [_JSON, ("x-secsipid-reason", reason)], answer, reason)

    async def sign_json(self, state: ServiceState, req: _Request) -> Response:
        if state.needs_token and not state.authorized(req.hdrs.authorization):
            return self._unauthorized(OWN)
        try:
            check_json_type(req.hdrs.content_type)
            body = await self._body(state, req)
            if state.default is None:
                raise ApiError(503, "signing-not-configured", "no signing key (--key)")
            spec = parse_sign(body)
            profile = state.profile_for(spec.key_number(), req.hdrs.spc)
            if profile is None:
                raise ApiError(400, "unknown-spc", "no signing key for the X-SPC given")
            x5u = spec.x5u or profile.x5u
            if x5u is None:
                raise ApiError(400, "invalid-x5u", "no x5u in the request and none configured")
            try:
                identity = sign(spec, profile.signer, x5u)
            except SigningError as exc:
                raise ApiError(400, exc.code, exc.message) from None
        except ApiError as exc:
            self.metrics.signature(exc.code)
            raise
        self.metrics.signature("signed")
        return Response(200, [_JSON], json.dumps({"identity": identity}).encode())

    async def _verdict(
        self,
        state: ServiceState,
        identity: str | list[str],
        orig_tn: str | None = None,
        dest_tn: str | list[str] | None = None,
        now: float | None = None,
    ) -> Verdict:
        if state.verifier is None:
            assert state.verify_error is not None
            error = state.verify_error
            return Verdict.from_error(VerificationError(error.reason, error.message))
        return await state.verifier.acheck(identity, orig_tn=orig_tn, dest_tn=dest_tn, now=now)

    # -- ATIS-1000082 -------------------------------------------------------------------------

    async def atis_signing(self, state: ServiceState, req: _Request) -> Response:
        check_accept(req.hdrs.accept)
        if state.needs_token and not state.authorized(req.hdrs.authorization):
            return self._unauthorized(ATIS)
        check_content_type(req.hdrs.content_type)
        body = await self._body(state, req, need_length=True)
        if state.default is None:
            self.metrics.signature("not-configured")
            raise AtisError.not_configured("signing is not configured")
        spec = parse_signing(body)
        profile = state.profile_for(spec.key_number(), req.hdrs.spc)
        if profile is None:
            self.metrics.signature("unknown-spc")
            raise AtisError.invalid_value("X-SPC", "no signing key for this SPC")
        if profile.x5u is None:
            self.metrics.signature("not-configured")
            raise AtisError.not_configured("no x5u is configured for the signing key")
        try:
            identity = sign(spec, profile.signer, profile.x5u)
        except SigningError as exc:
            self.metrics.signature(exc.code)
            # The parameter at fault: invalid-tn names "tn", ...; an Identity value that would
            # be too large comes from the request as a whole.
            name = exc.code.removeprefix("invalid-")
            if exc.code == "too-large":
                name = "signingRequest"
            raise AtisError.invalid_value(name, exc.message) from None
        self.metrics.signature("signed")
        answer = json.dumps({"signingResponse": {"identity": identity}}, separators=(",", ":"))
        return Response(200, [_JSON], answer.encode())

    async def atis_verification(self, state: ServiceState, req: _Request) -> Response:
        check_accept(req.hdrs.accept)
        check_content_type(req.hdrs.content_type)
        body = await self._body(state, req, need_length=True)
        vreq = parse_verification(body)
        now = self.clock()
        skew = int(now) - vreq.time
        if abs(skew) > ATIS_TIME_SKEW:
            verdict = Verdict.from_error(
                VerificationError(
                    Reason.STALE,
                    f"the request time is {abs(skew)} s {'behind' if skew > 0 else 'ahead of'} "
                    f"the server clock (more than {ATIS_TIME_SKEW} s)",
                )
            )
        else:
            verdict = await self._verdict(state, vreq.identity, vreq.orig, vreq.dest, now)
        self.metrics.verdict(verdict.reason.value)
        headers = [_JSON, ("x-secsipid-reason", verdict.reason.value)]
        return Response(200, headers, verification_body(verdict), verdict.reason.value)

    # -- operations ----------------------------------------------------------------------------

    async def healthz(self, state: ServiceState, req: _Request) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "signing": state.default is not None,
            "verification": state.verifier is not None,
        }
        return Response(200, [_JSON, ("cache-control", "no-store")], json.dumps(body).encode())

    async def metrics_endpoint(self, state: ServiceState, req: _Request) -> Response:
        if not self.metrics.enabled:
            return _text(404, "404 page not found\n", "not-found")
        from .metrics import CONTENT_TYPE

        return Response(200, [("content-type", CONTENT_TYPE)], self.metrics.render())

    async def openapi(self, state: ServiceState, req: _Request) -> Response:
        return Response(200, [_JSON], self._openapi)

    async def not_found(self, state: ServiceState, req: _Request) -> Response:
        return _text(404, "404 page not found\n", "not-found")

    async def atis_not_found(self, state: ServiceState, req: _Request) -> Response:
        raise AtisError.not_found()


_VALID_HEADERS: tuple[Header, ...] = (
    ("x-secsipid-reason", Reason.VALID.value),
    ("x-secsipid-verstat", Reason.VALID.verstat),
)
_ANY: tuple[str, ...] = ()  # any method
_ROUTES: dict[str, _Route] = {
    # PUT: secsipidx's mux answers any method; POST is what its clients use.
    "/v1/check": _Route("v1_check", ("POST", "PUT"), ServiceApp.check_v1, TEXT),
    "/v1/sign-csv": _Route("v1_sign_csv", ("POST", "PUT"), ServiceApp.sign_csv, TEXT),
    "/v1/verify": _Route("v1_verify", ("POST",), ServiceApp.verify_json, OWN),
    "/v1/sign": _Route("v1_sign", ("POST",), ServiceApp.sign_json, OWN),
    "/stir/v1/signing": _Route("stir_signing", ("POST",), ServiceApp.atis_signing, ATIS),
    "/stir/v1/verification": _Route(
        "stir_verification", ("POST",), ServiceApp.atis_verification, ATIS
    ),
    "/healthz": _Route("healthz", ("GET", "HEAD"), ServiceApp.healthz, TEXT),
    "/metrics": _Route("metrics", ("GET",), ServiceApp.metrics_endpoint, TEXT),
    "/openapi.json": _Route("openapi", ("GET",), ServiceApp.openapi, TEXT),
}
_PUB = _Route("v1_pub", ("GET", "HEAD"), ServiceApp.pub, TEXT)
_STIR_OTHER = _Route("other", _ANY, ServiceApp.atis_not_found, ATIS)
_OTHER = _Route("other", _ANY, ServiceApp.not_found, TEXT)


# -- construction -----------------------------------------------------------------------------


def create_app(
    config: ServiceConfig,
    *,
    access_log: TextIO | None = None,
    stamp_file: str | None = None,
    watch: bool = False,
    clock: Callable[[], float] = time.time,
) -> ServiceApp:
    """The app for ``config`` (raises :class:`ConfigError`)."""
    metrics = make_metrics(config.metrics)
    state = build_state(config, metrics)
    if access_log is None and config.access_log:
        access_log = sys.stdout
    return ServiceApp(
        state,
        metrics=metrics,
        access_log=access_log,
        stamp_file=stamp_file,
        watch=watch,
        clock=clock,
    )


def _holds_private_key(data: bytes) -> bool:
    """Whether a file's content is a private key: PEM of any kind (PKCS#8, SEC 1, RSA,
    encrypted), or DER that parses as one (or as an encrypted one)."""
    if b"PRIVATE KEY-----" in data:
        return True
    if data[:1] != b"\x30":  # DER is a SEQUENCE
        return False
    try:
        serialization.load_der_private_key(data, None)
    except TypeError:  # encrypted: a key all the same
        return True
    except (ValueError, UnsupportedAlgorithm):
        return False
    return True


def _request_id(given: str | None) -> str:
    """The X-RequestID to answer with: the client's when it is a short printable ASCII value
    (echoed, ATIS-1000082), else a new UUID."""
    if given and len(given) <= MAX_REQUEST_ID and given.isascii() and given.isprintable():
        return given
    return new_origid()


def create_app_from_env() -> ServiceApp:
    """The worker-side factory ``secsipid serve`` hands to the HTTP server: the configuration
    file and flags come in ``SECSIPID_SERVE_SPEC`` (JSON; paths and settings, never a secret)."""
    spec = json.loads(os.environ[SPEC_ENV])
    config = load_config(spec.get("config_file"), spec.get("overrides") or {})
    return create_app(config, stamp_file=spec.get("stamp_file"), watch=True)
