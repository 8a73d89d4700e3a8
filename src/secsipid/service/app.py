"""The HTTP service as a plain ASGI application (no framework: see docs/service.md for the
measurements behind that choice).

Endpoints::

    POST /v1/check                 secsipidx-compatible verification (body = Identity value)
    POST /v1/sign-csv              secsipidx-compatible signing (OrigTN,DestTN,ATTEST,OrigID,X5U)
    GET  /v1/pub/<file>            the operator's public certificates (no listing, no traversal)
    POST /stir/v1/signing          ATIS-1000082 signing
    POST /stir/v1/verification     ATIS-1000082 verification
    GET  /healthz                  liveness and what is configured
    GET  /metrics                  Prometheus text format
    GET  /openapi.json             the API description

The app is a thin shell: verification is ``Verifier.acheck`` and its :class:`Verdict`, signing is
``Signer.identity``; this module only translates HTTP into those calls and back.  Every
request takes the :class:`ServiceState` once, so a reload (SIGHUP or a changed file) swaps the
state between requests, never under one.
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
from .openapi import openapi_document
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

_TEXT = (b"content-type", b"text/plain; charset=utf-8")
_JSON = (b"content-type", b"application/json")
_NOSNIFF = (b"x-content-type-options", b"nosniff")

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

    def __init__(
        self, status: int, headers: list[tuple[bytes, bytes]], body: bytes, reason: str = ""
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.reason = reason


def _text(
    status: int, text: str, reason: str = "", extra: tuple[tuple[bytes, bytes], ...] = ()
) -> Response:
    return Response(status, [_TEXT, _NOSNIFF, *extra], text.encode(), reason)


class _Headers:
    """The request headers the service reads, found in one pass."""

    __slots__ = (
        "accept",
        "authorization",
        "content_length",
        "content_type",
        "request_id",
        "spc",
        "transfer_encoding",
    )

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.accept: bytes | None = None
        self.authorization: bytes | None = None
        self.content_length: bytes | None = None
        self.content_type: bytes | None = None
        self.request_id: bytes | None = None
        self.spc: bytes | None = None
        self.transfer_encoding: bytes | None = None
        for name, value in raw:
            if name == b"content-length":
                self.content_length = value
            elif name == b"content-type":
                self.content_type = value
            elif name == b"authorization":
                self.authorization = value
            elif name == b"accept":
                self.accept = value
            elif name == b"x-requestid":
                self.request_id = value
            elif name == b"x-spc":
                self.spc = value
            elif name == b"transfer-encoding":
                self.transfer_encoding = value


class _BodyError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class _DisconnectedError(Exception):
    pass


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

    async def run(self) -> None:
        while True:
            await asyncio.sleep(RELOAD_INTERVAL)
            try:
                self.check()
            except Exception:  # a bug must not stop the watcher
                log.exception("secsipid serve: reload check failed")


# -- the app -----------------------------------------------------------------------------------


Handler = Callable[["ServiceApp", ServiceState, Scope, _Headers, Receive], Awaitable[Response]]


class _Route:
    __slots__ = ("atis", "handler", "methods", "name")

    def __init__(self, name: str, methods: tuple[str, ...], handler: Handler, atis: bool) -> None:
        self.name = name
        self.methods = methods
        self.handler = handler
        self.atis = atis


class ServiceApp:
    """The ASGI application.  ``state`` may be replaced at any time (reload)."""

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
        self._openapi = json.dumps(openapi_document(), indent=1).encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                if self.watch:
                    self._start_watching()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for task in self._tasks:
                    task.cancel()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _start_watching(self) -> None:
        loop = asyncio.get_running_loop()
        task = loop.create_task(self.reloader.run())
        self._tasks.add(task)
        with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
            # SIGHUP sent to a worker itself reloads it at once (the main process's SIGHUP
            # reaches the workers through the stamp file).
            loop.add_signal_handler(signal.SIGHUP, self.reloader.reload)

    # -- dispatch ------------------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        start = time.perf_counter()
        state = self.state
        path: str = scope["path"]
        method: str = scope["method"]
        route = _ROUTES.get(path)
        if route is None:
            if path.startswith("/v1/pub/"):
                route = _PUB
            elif path.startswith("/stir/"):
                route = _STIR_OTHER
            else:
                route = _OTHER
        hdrs = _Headers(scope["headers"])
        request_id = b""
        try:
            if route.atis:
                request_id = hdrs.request_id or new_origid().encode()
            if route.methods and method not in route.methods:
                response = self._not_allowed(route, method)
            else:
                response = await route.handler(self, state, scope, hdrs, receive)
        except AtisError as exc:
            response = Response(exc.status, [_JSON], exc.body(), exc.message_id)
        except _BodyError as exc:
            response = self._body_error(route, exc)
        except _DisconnectedError:
            self.metrics.request(route.name, 499, time.perf_counter() - start)
            return
        except Exception:
            log.exception("secsipid serve: unexpected error on %s %s", method, path)
            if route.atis:
                exc2 = AtisError.internal()
                response = Response(500, [_JSON], exc2.body(), exc2.message_id)
            else:
                response = _text(500, "FAILED\ninternal-error\n", "internal-error")
        headers = response.headers
        if request_id:
            headers = [*headers, (b"x-requestid", request_id)]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": response.body})
        elapsed = time.perf_counter() - start
        self.metrics.request(route.name, response.status, elapsed)
        if self.access_log is not None:
            self._log_access(scope, route, response, elapsed, request_id)

    def _not_allowed(self, route: _Route, method: str) -> Response:
        allow = (b"allow", ", ".join(route.methods).encode())
        if route.atis:
            exc = AtisError.method_not_allowed(method)
            return Response(405, [_JSON, allow], exc.body(), exc.message_id)
        return _text(405, "method not allowed\n", "method-not-allowed", (allow,))

    def _body_error(self, route: _Route, exc: _BodyError) -> Response:
        if route.atis:
            if exc.code == "length-required":
                err = AtisError.length_required()
            else:
                err = AtisError.parse_failed(exc.message, exc.status)
            return Response(err.status, [_JSON], err.body(), err.message_id)
        return _text(exc.status, f"FAILED\n{exc.code}: {exc.message}\n", exc.code)

    def _log_access(
        self, scope: Scope, route: _Route, response: Response, elapsed: float, request_id: bytes
    ) -> None:
        client = scope.get("client")
        entry = {
            "time": round(self.clock(), 3),
            "remote": client[0] if client else None,
            "method": scope["method"],
            "path": scope["path"],  # never the query string or a header: no secrets here
            "endpoint": route.name,
            "status": response.status,
            "bytes": len(response.body),
            "ms": round(elapsed * 1000, 3),
            "reason": response.reason or None,
            "request_id": request_id.decode("latin-1") or None,
        }
        stream = self.access_log
        assert stream is not None
        stream.write(json.dumps(entry, separators=(",", ":")) + "\n")
        stream.flush()

    # -- body ----------------------------------------------------------------------------------

    async def _body(
        self, state: ServiceState, hdrs: _Headers, receive: Receive, *, need_length: bool = False
    ) -> bytes:
        """The request body, within ``server.max_body`` bytes and ``server.body_timeout``."""
        limit = state.config.max_body
        length = hdrs.content_length
        if length is not None:
            if not length.isdigit():
                raise _BodyError(400, "bad-content-length", "Content-Length is not a number")
            if int(length) > limit:
                raise _BodyError(413, "too-large", f"the body exceeds {limit} bytes")
        elif need_length:
            raise _BodyError(411, "length-required", "Content-Length is required")
        chunks = []
        size = 0
        try:
            async with asyncio.timeout(state.config.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _DisconnectedError
                    chunk = message.get("body", b"")
                    if chunk:
                        size += len(chunk)
                        if size > limit:
                            raise _BodyError(413, "too-large", f"the body exceeds {limit} bytes")
                        chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise _BodyError(
                408,
                "body-timeout",
                f"the body did not arrive within {state.config.body_timeout:g} s",
            ) from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- secsipidx-compatible endpoints -------------------------------------------------------

    async def check_v1(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        body = await self._body(state, hdrs, receive)
        text = body.decode("utf-8", "replace")
        values = [line for line in text.splitlines() if line.strip()]
        if state.verifier is None:
            assert state.verify_error is not None
            error = state.verify_error
            verdict = Verdict.from_error(VerificationError(error.reason, error.message))
        else:
            verdict = await state.verifier.acheck(values)
        reason = verdict.reason
        self.metrics.verdict(reason.value)
        if verdict.ok:
            return Response(
                200,
                [_TEXT, (b"x-secsipid-reason", b"valid"), (b"x-secsipid-verstat", _PASSED)],
                b"OK\n",
                "valid",
            )
        sip = f"{verdict.sip_status} {verdict.sip_reason}"
        body_text = (
            f"FAILED\nreason: {reason.value}\nsip: {sip}\nverstat: {verdict.verstat}\n"
            f"lib_code: {verdict.lib_code}\nmessage: {verdict.message}\n"
        )
        headers = [
            _TEXT,
            _NOSNIFF,
            (b"x-secsipid-reason", reason.value.encode()),
            (b"x-secsipid-sip-status", str(verdict.sip_status).encode()),
            (b"x-secsipid-sip-reason", verdict.sip_reason.encode()),
            (b"x-secsipid-verstat", verdict.verstat.encode()),
        ]
        return Response(http_status(reason), headers, body_text.encode(), reason.value)

    def _unauthorized(self, atis: bool) -> Response:
        self.metrics.signature("unauthorized")
        challenge = (b"www-authenticate", b'Bearer realm="secsipid"')
        if atis:
            exc = AtisError.unauthorized()
            return Response(401, [_JSON, challenge], exc.body(), exc.message_id)
        return _text(401, "FAILED\nunauthorized: a bearer token is required\n", "unauthorized",
                     (challenge,))  # fmt: skip

    async def sign_csv(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        if state.needs_token and not state.authorized(hdrs.authorization):
            return self._unauthorized(False)
        body = await self._body(state, hdrs, receive)
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
        orig, dest, attest, origid, x5u = (f.strip() for f in fields[:5])
        profile = state.profile_for(orig, hdrs.spc.decode("latin-1") if hdrs.spc else None)
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

    async def pub(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        name = scope["path"][len("/v1/pub/") :]
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
        try:
            with open(target, "rb") as fh:
                data = fh.read(MAX_PUB_FILE + 1)
        except OSError:
            return _text(404, "404 page not found\n", "not-found")
        if len(data) > MAX_PUB_FILE:
            return _text(404, "404 page not found\n", "not-found")
        ext = name.rsplit(".", 1)[-1].lower()
        kind = {
            "pem": b"application/x-x509-ca-cert",
            "crt": b"application/pkix-cert",
            "cer": b"application/pkix-cert",
            "der": b"application/pkix-cert",
            "crl": b"application/pkix-crl",
        }.get(ext, b"application/octet-stream")
        headers = [(b"content-type", kind), _NOSNIFF, (b"cache-control", b"max-age=3600")]
        return Response(200, headers, b"" if scope["method"] == "HEAD" else data)

    # -- ATIS-1000082 -------------------------------------------------------------------------

    async def atis_signing(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        check_accept(hdrs.accept)
        if state.needs_token and not state.authorized(hdrs.authorization):
            return self._unauthorized(True)
        check_content_type(hdrs.content_type)
        body = await self._body(state, hdrs, receive, need_length=True)
        if state.default is None:
            self.metrics.signature("not-configured")
            raise AtisError.not_configured("signing is not configured")
        req = parse_signing(body)
        spc = hdrs.spc.decode("latin-1") if hdrs.spc else None
        profile = state.profile_for(req.orig, spc)
        if profile is None:
            self.metrics.signature("unknown-spc")
            raise AtisError.invalid_value("X-SPC", "no signing key for this SPC")
        if profile.x5u is None:
            self.metrics.signature("not-configured")
            raise AtisError.not_configured("no x5u is configured for the signing key")
        try:
            identity = profile.signer.identity(
                req.orig, req.dest, req.attest, req.origid, iat=req.iat, x5u=profile.x5u
            )
        except SigningError as exc:
            self.metrics.signature(exc.code)
            raise AtisError.invalid_value(exc.code.removeprefix("invalid-"), exc.message) from None
        self.metrics.signature("signed")
        answer = json.dumps({"signingResponse": {"identity": identity}}, separators=(",", ":"))
        return Response(200, [_JSON], answer.encode())

    async def atis_verification(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        check_accept(hdrs.accept)
        check_content_type(hdrs.content_type)
        body = await self._body(state, hdrs, receive, need_length=True)
        req = parse_verification(body)
        now = self.clock()
        skew = int(now) - req.time
        if abs(skew) > ATIS_TIME_SKEW:
            verdict = Verdict.from_error(
                VerificationError(
                    Reason.STALE,
                    f"the request time is {abs(skew)} s {'behind' if skew > 0 else 'ahead of'} "
                    f"the server clock (more than {ATIS_TIME_SKEW} s)",
                )
            )
        elif state.verifier is None:
            assert state.verify_error is not None
            error = state.verify_error
            verdict = Verdict.from_error(VerificationError(error.reason, error.message))
        else:
            verdict = await state.verifier.acheck(
                req.identity, orig_tn=req.orig, dest_tn=req.dest, now=now
            )
        self.metrics.verdict(verdict.reason.value)
        headers = [_JSON, (b"x-secsipid-reason", verdict.reason.value.encode())]
        return Response(200, headers, verification_body(verdict), verdict.reason.value)

    # -- operations ----------------------------------------------------------------------------

    async def healthz(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        body = {
            "status": "ok",
            "version": __version__,
            "signing": state.default is not None,
            "verification": state.verifier is not None,
        }
        return Response(200, [_JSON, (b"cache-control", b"no-store")], json.dumps(body).encode())

    async def metrics_endpoint(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        if not self.metrics.enabled:
            return _text(404, "404 page not found\n", "not-found")
        from .metrics import CONTENT_TYPE

        return Response(200, [(b"content-type", CONTENT_TYPE.encode())], self.metrics.render())

    async def openapi(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        return Response(200, [_JSON], self._openapi)

    async def not_found(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        return _text(404, "404 page not found\n", "not-found")

    async def atis_not_found(
        self, state: ServiceState, scope: Scope, hdrs: _Headers, receive: Receive
    ) -> Response:
        raise AtisError.not_found()


_PASSED = Verdict(True, Reason.VALID).verstat.encode()
_ANY: tuple[str, ...] = ()  # any method
_ROUTES: dict[str, _Route] = {
    # PUT: secsipidx's mux answers any method; POST is what its clients use.
    "/v1/check": _Route("v1_check", ("POST", "PUT"), ServiceApp.check_v1, False),
    "/v1/sign-csv": _Route("v1_sign_csv", ("POST", "PUT"), ServiceApp.sign_csv, False),
    "/stir/v1/signing": _Route("stir_signing", ("POST",), ServiceApp.atis_signing, True),
    "/stir/v1/verification": _Route(
        "stir_verification", ("POST",), ServiceApp.atis_verification, True
    ),
    "/healthz": _Route("healthz", ("GET", "HEAD"), ServiceApp.healthz, False),
    "/metrics": _Route("metrics", ("GET",), ServiceApp.metrics_endpoint, False),
    "/openapi.json": _Route("openapi", ("GET",), ServiceApp.openapi, False),
}
_PUB = _Route("v1_pub", ("GET", "HEAD"), ServiceApp.pub, False)
_STIR_OTHER = _Route("other", _ANY, ServiceApp.atis_not_found, True)
_OTHER = _Route("other", _ANY, ServiceApp.not_found, False)


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


def create_app_from_env() -> ServiceApp:
    """The worker-side factory ``secsipid serve`` hands to the HTTP server: the configuration
    file and flags come in ``SECSIPID_SERVE_SPEC`` (JSON; paths and settings, never a secret)."""
    spec = json.loads(os.environ[SPEC_ENV])
    config = load_config(spec.get("config_file"), spec.get("overrides") or {})
    return create_app(config, stamp_file=spec.get("stamp_file"), watch=True)
