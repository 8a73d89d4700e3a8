"""HTTP contract of ``secsipid serve`` (the app in-process): every endpoint, every status and
every error body, each through both server interfaces (ASGI, and RSGI as Granian drives it,
which ``secsipid serve`` uses).  Real server processes are in test_service_server.py."""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

import servicekit
from helpers import DEST, ORIG, ORIGID, X5U, KeyFiles
from secsipid import Reason, Signer, Verifier, VerifyPolicy, decode_token
from secsipid.service import ServiceApp, create_app, load_config
from secsipid.service.app import http_status
from servicekit import Reply, RSGIHeaders, RSGIProtocol, RSGIScope, call

TOKEN = "s3cret-token-0123456789abcdef"


@pytest.fixture(autouse=True, params=["asgi", "rsgi"])
def interface(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test of this module runs through both interfaces of the app."""
    monkeypatch.setattr(servicekit, "INTERFACE", request.param)
    return str(request.param)


def _now() -> int:
    return int(time.time())


@pytest.fixture
def pub_dir(tmp_path: Path, key_files: KeyFiles) -> Path:
    d = tmp_path / "pub"
    d.mkdir()
    (d / "cert.pem").write_bytes(key_files.cert_pem.read_bytes())
    (tmp_path / "secret.pem").write_bytes(key_files.key_pem.read_bytes())
    (d / ".hidden.pem").write_bytes(b"hidden")
    (d / "sub").mkdir()
    (d / "escape.pem").symlink_to(tmp_path / "secret.pem")
    return d


def make_app(key_files: KeyFiles, **overrides: Any) -> ServiceApp:
    settings: dict[str, Any] = {
        "key": str(key_files.key_pem),
        "x5u": X5U,
        "cert": str(key_files.cert_pem),
        "expire": 300,
    }
    settings.update(overrides)
    settings = {k: v for k, v in settings.items() if v is not None}
    return create_app(load_config(None, settings))


@pytest.fixture
def app(key_files: KeyFiles, pub_dir: Path) -> ServiceApp:
    return make_app(key_files, pub_dir=str(pub_dir))


@pytest.fixture
def fresh(signer: Signer) -> str:
    """A valid Identity value signed now (the app verifies against the wall clock)."""
    return signer.identity(ORIG, DEST, "A", ORIGID, iat=_now())


def _tamper(value: str) -> str:
    token, params = value.split(";", 1)
    h, c, s = token.split(".")
    return f"{h}.{c}.{s[:-2]}AA;{params}"


def _failure(reply: Reply, reason: Reason, status: int) -> None:
    """A failed /v1/check: status, the four headers and the body lines."""
    assert reply.status == status, reply.text
    assert reply.headers["x-secsipid-reason"] == reason.value
    assert reply.headers["x-secsipid-sip-status"] == str(reason.sip_status)
    assert reply.headers["x-secsipid-sip-reason"] == reason.sip_reason
    assert reply.headers["x-secsipid-verstat"] == reason.verstat
    lines = reply.text.splitlines()
    assert lines[0] == "FAILED"
    assert f"reason: {reason.value}" in lines
    assert f"sip: {reason.sip_status} {reason.sip_reason}" in lines
    assert f"verstat: {reason.verstat}" in lines


# -- POST /v1/check ----------------------------------------------------------------------------


def test_check_valid(app: ServiceApp, fresh: str) -> None:
    """A valid value: 200 "OK\\n" as secsipidx, plus reason and verstat headers."""
    reply = call(app, "POST", "/v1/check", fresh.encode())
    assert (reply.status, reply.body) == (200, b"OK\n")
    assert reply.headers["x-secsipid-reason"] == "valid"
    assert reply.headers["x-secsipid-verstat"] == "TN-Validation-Passed"


def test_check_put_like_secsipidx(app: ServiceApp, fresh: str) -> None:
    """secsipidx answers PUT /v1/check like POST; so do we."""
    assert call(app, "PUT", "/v1/check", fresh.encode()).status == 200


def test_check_bad_signature(app: ServiceApp, fresh: str) -> None:
    _failure(call(app, "POST", "/v1/check", _tamper(fresh).encode()), Reason.BAD_SIGNATURE, 400)


def test_check_stale(app: ServiceApp, signer: Signer) -> None:
    value = signer.identity(ORIG, DEST, "A", ORIGID, iat=_now() - 3600)
    _failure(call(app, "POST", "/v1/check", value.encode()), Reason.STALE, 400)


def test_check_empty_body(app: ServiceApp) -> None:
    """secsipidx answers 500 FAILED; we say which: no Identity (SIP 428)."""
    _failure(call(app, "POST", "/v1/check", b""), Reason.NO_IDENTITY, 400)


def test_check_garbage_and_binary(app: ServiceApp) -> None:
    _failure(call(app, "POST", "/v1/check", b"garbage"), Reason.MISSING_INFO, 400)
    reply = call(app, "POST", "/v1/check", b"\xff\xfe\x00;info=<x>")
    assert reply.status == 400
    assert reply.text.startswith("FAILED\n")


def test_check_several_lines(app: ServiceApp, fresh: str) -> None:
    """One value per line: valid when any is (RFC 8224 §6.2.1)."""
    reply = call(app, "POST", "/v1/check", f"garbage\n{fresh}\n".encode())
    assert reply.status == 200


def test_check_body_limit(app: ServiceApp) -> None:
    """413 before reading when Content-Length is over the limit, and while reading a
    chunked body that grows over it."""
    limit = app.state.config.max_body
    reply = call(app, "POST", "/v1/check", b"x" * (limit + 1))
    assert reply.status == 413
    assert reply.text == f"FAILED\ntoo-large: the body exceeds {limit} bytes\n"
    chunks = [b"x" * 4096] * (limit // 4096 + 2)
    assert call(app, "POST", "/v1/check", chunks, content_length=False).status == 413
    assert call(app, "POST", "/v1/check", [b"x" * 10, b"y"], content_length=False).status == 400


def test_check_bad_content_length(app: ServiceApp) -> None:
    reply = call(app, "POST", "/v1/check", b"", [("Content-Length", "-1")])
    assert reply.status == 400
    assert "bad-content-length" in reply.text


def test_check_body_timeout(key_files: KeyFiles) -> None:
    """A body that never completes is answered 408 after server.body_timeout."""
    app = make_app(key_files, body_timeout=0.2)
    started = time.monotonic()
    reply = call(app, "POST", "/v1/check", [b"eyJ"], content_length=False, stall=True)
    assert reply.status == 408
    assert "body-timeout" in reply.text
    assert time.monotonic() - started < 5


def test_body_deadlines_each_request_its_own(key_files: KeyFiles) -> None:
    """Stalled bodies are answered 408 at their own deadline, a shorter one (after a reload
    shortened server.body_timeout) before a longer one that started earlier, and a request
    whose body arrives meanwhile is answered as usual."""
    app = make_app(key_files, body_timeout=0.8)
    shorter = make_app(key_files, body_timeout=0.1)

    async def run() -> None:
        def stalled() -> asyncio.Task[Reply]:
            return asyncio.create_task(
                servicekit.acall(
                    app, "POST", "/v1/check", [b"eyJ"], content_length=False, stall=True
                )
            )

        loop = asyncio.get_running_loop()
        started = loop.time()
        slow = stalled()
        await asyncio.sleep(0.05)
        app.state = shorter.state
        quick = stalled()
        normal = await servicekit.acall(app, "POST", "/v1/check", b"garbage")
        assert normal.status == 400 and "missing-info" in normal.text
        done, _ = await asyncio.wait({slow, quick}, return_when=asyncio.FIRST_COMPLETED)
        assert done == {quick} and not slow.done()  # the timer was re-armed for it
        assert quick.result().status == 408
        reply = await slow
        assert reply.status == 408 and "within 0.8 s" in reply.text
        assert loop.time() - started >= 0.8  # never before its deadline
        assert not app._deadlines._reading and not app._deadlines._expired

    asyncio.run(run())


def test_body_read_cancelled_by_the_server(key_files: KeyFiles) -> None:
    """A cancellation that is not the body deadline's (the server stopping the request) goes
    on as a cancellation, not as a 408."""
    app = make_app(key_files, body_timeout=5)

    async def run() -> None:
        task = asyncio.create_task(
            servicekit.acall(app, "POST", "/v1/check", [b"eyJ"], content_length=False, stall=True)
        )
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not app._deadlines._reading and not app._deadlines._expired

    asyncio.run(run())


def test_content_length_not_ascii_digits(app: ServiceApp, interface: str) -> None:
    """A Content-Length of non-ASCII "digits" (str.isdigit() accepts "²") is a bad request,
    never an int() error (ASGI hands the bytes over; Granian's RSGI drops such a value)."""
    reply = call(app, "POST", "/v1/check", b"", [("Content-Length", "\u00b2")])
    assert reply.status == 400
    if interface == "asgi":
        assert "bad-content-length" in reply.text


def test_check_client_gone(app: ServiceApp, interface: str) -> None:
    """A client that disconnects mid-body gets no response (and nothing breaks)."""
    if interface == "rsgi":
        proto = RSGIProtocol([b"eyJ"], stall=False, gone=True)
        headers = RSGIHeaders([("content-length", "100")])
        asyncio.run(app.__rsgi__(RSGIScope("POST", "/v1/check", headers), proto))
        assert proto.response is None
        assert 'endpoint="v1_check",status="499"' in call(app, "GET", "/metrics").text
        return

    async def run() -> list[Any]:
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.disconnect"}

        async def send(message: Any) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/check", "headers": []}
        await app(scope, receive, send)
        return sent

    assert asyncio.run(run()) == []


def test_check_method_not_allowed(app: ServiceApp) -> None:
    reply = call(app, "GET", "/v1/check")
    assert reply.status == 405
    assert reply.headers["allow"] == "POST, PUT"


def test_check_without_verification_configured(key_files: KeyFiles) -> None:
    """No --cert and no trust anchors: verification answers no-trust-anchors (500)."""
    app = make_app(key_files, cert=None)
    assert app.state.verifier is None
    reply = call(app, "POST", "/v1/check", b"x;info=<https://a.example/c.pem>")
    _failure(reply, Reason.NO_TRUST_ANCHORS, 500)


def test_http_status_mapping() -> None:
    """Our configuration -> 500, the certificate server -> 502/504, the request -> 400."""
    assert http_status(Reason.KEY_UNAVAILABLE) == 500
    assert http_status(Reason.INTERNAL_ERROR) == 500
    assert http_status(Reason.CERT_FETCH_FAILED) == 502
    assert http_status(Reason.CERT_FETCH_TIMEOUT) == 504
    assert http_status(Reason.BAD_SIGNATURE) == 400
    assert http_status(Reason.CERT_URL_REFUSED) == 400


# -- POST /v1/sign-csv -------------------------------------------------------------------------


def _verify(value: str, key_files: KeyFiles) -> Any:
    return Verifier(str(key_files.cert_pem), policy=VerifyPolicy()).verify(value)


def test_sign_csv(app: ServiceApp, key_files: KeyFiles) -> None:
    """secsipidx's CSV: the value verifies, ends with a newline, origid kept."""
    reply = call(app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},B,{ORIGID},{X5U}".encode())
    assert reply.status == 200
    assert reply.body.endswith(b";alg=ES256;ppt=shaken\n")
    passport = _verify(reply.text.strip(), key_files)
    assert (passport.attest, passport.orig, passport.dest, passport.origid) == (
        "B", ORIG, [DEST], ORIGID,
    )  # fmt: skip


def test_sign_csv_defaults(app: ServiceApp, key_files: KeyFiles) -> None:
    """Empty OrigID -> a new UUID, empty X5U -> --x5u; extra fields are ignored."""
    reply = call(app, "POST", "/v1/sign-csv", f" {ORIG},{DEST},A,,, extra\n".encode())
    assert reply.status == 200, reply.text
    passport = _verify(reply.text.strip(), key_files)
    assert passport.info == X5U
    assert len(passport.origid) == 36 and passport.origid != ORIGID


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (f"{ORIG},{DEST},Z,,{X5U}", "invalid-attest"),  # secsipidx signs attest Z
        ("a,b,c", "invalid-csv"),
        (f"{ORIG},{DEST},A,not-a-uuid,{X5U}", "invalid-origid"),
        (f"abc,{DEST},A,,{X5U}", "invalid-tn"),
        (f"{ORIG},{DEST},A,,not a url", "invalid-x5u"),
        ("", "invalid-csv"),
        # The Signer never makes a value verifiers refuse for its size.
        (f"{'1' * 6000},{DEST},A,,{X5U}", "too-large"),
    ],
)
def test_sign_csv_refused(app: ServiceApp, body: str, code: str) -> None:
    reply = call(app, "POST", "/v1/sign-csv", body.encode())
    assert reply.status == 400
    assert reply.text.startswith(f"FAILED\n{code}: ")


def test_sign_csv_non_ascii(app: ServiceApp) -> None:
    reply = call(app, "POST", "/v1/sign-csv", "1215555ü,1,A,,".encode())
    assert (reply.status, reply.text.split(":")[0]) == (400, "FAILED\ninvalid-csv")


def test_sign_csv_no_x5u(key_files: KeyFiles) -> None:
    """No X5U in the request and none configured: refused (secsipidx invents one)."""
    app = make_app(key_files, x5u=None)
    reply = call(app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,".encode())
    assert reply.status == 400
    assert reply.text.startswith("FAILED\ninvalid-x5u: ")


def test_sign_csv_not_configured(key_files: KeyFiles) -> None:
    app = make_app(key_files, key=None, x5u=None)
    reply = call(app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,{X5U}".encode())
    assert reply.status == 503
    assert reply.text.startswith("FAILED\nsigning-not-configured: ")


@pytest.fixture
def token_app(key_files: KeyFiles, tmp_path: Path) -> ServiceApp:
    tokens = tmp_path / "tokens"
    tokens.write_text(f"# signing clients\n{TOKEN}\nanother-token-abcdefghijkl\n")
    return make_app(key_files, token_file=str(tokens))


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-0123456789abc", f"Basic {TOKEN}", "Bearer"]
)
def test_sign_csv_token_refused(token_app: ServiceApp, authorization: str | None) -> None:
    headers = [("Authorization", authorization)] if authorization else []
    reply = call(token_app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,".encode(), headers)
    assert reply.status == 401
    assert reply.headers["www-authenticate"] == 'Bearer realm="secsipid"'
    assert reply.text.startswith("FAILED\nunauthorized: ")


@pytest.mark.parametrize("token", [TOKEN, "another-token-abcdefghijkl"])
def test_sign_csv_token_accepted(token_app: ServiceApp, token: str) -> None:
    headers = [("Authorization", f"bearer  {token}")]
    reply = call(token_app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,".encode(), headers)
    assert reply.status == 200, reply.text


def test_verification_needs_no_token(token_app: ServiceApp, fresh: str) -> None:
    assert call(token_app, "POST", "/v1/check", fresh.encode()).status == 200


# -- GET /v1/pub/<file> ------------------------------------------------------------------------


def test_pub_serves_certificate(app: ServiceApp, key_files: KeyFiles) -> None:
    reply = call(app, "GET", "/v1/pub/cert.pem")
    assert reply.status == 200
    assert reply.body == key_files.cert_pem.read_bytes()
    assert reply.headers["content-type"] == "application/x-x509-ca-cert"
    head = call(app, "HEAD", "/v1/pub/cert.pem")
    assert (head.status, head.body) == (200, b"")


@pytest.mark.parametrize(
    "path",
    [
        "/v1/pub/",  # secsipidx lists the directory
        "/v1/pub/../secret.pem",
        "/v1/pub/..%2Fsecret.pem",
        "/v1/pub/%2e%2e/secret.pem",
        "/v1/pub/sub",
        "/v1/pub/sub/",
        "/v1/pub/.hidden.pem",
        "/v1/pub/escape.pem",  # a symlink out of the directory
        "/v1/pub/missing.pem",
        "/v1/pub//etc/passwd",
    ],
)
def test_pub_refuses(app: ServiceApp, path: str) -> None:
    reply = call(app, "GET", path)
    assert reply.status == 404
    assert reply.body == b"404 page not found\n"


def _der_key(password: bytes | None) -> bytes:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    if password:
        encryption = serialization.BestAvailableEncryption(password)
    return ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, encryption
    )


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("key.pem", b"-----BEGIN PRIVATE KEY-----\nMIGHAgEA\n-----END PRIVATE KEY-----\n"),
        ("ec.pem", b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE\n-----END EC PRIVATE KEY-----\n"),
        ("enc.pem", b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIH\n-----END ENCRYPTED ..."),
        ("both.pem", b"-----BEGIN CERTIFICATE-----\n...\n-----BEGIN PRIVATE KEY-----\n..."),
        ("key.der", None),  # DER PKCS#8
        ("key-enc.der", b"password"),  # encrypted DER PKCS#8
    ],
)
def test_pub_never_serves_a_private_key(
    key_files: KeyFiles,
    pub_dir: Path,
    name: str,
    content: bytes | None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A private key put in pub_dir by mistake is never published: 404, logged once."""
    (pub_dir / name).write_bytes(
        content if content and content.startswith(b"-") else _der_key(content)
    )
    app = make_app(key_files, pub_dir=str(pub_dir))
    for _ in range(3):
        reply = call(app, "GET", f"/v1/pub/{name}")
        assert (reply.status, reply.body) == (404, b"404 page not found\n")
    logged = [r.getMessage() for r in caplog.records if "/v1/pub/ refuses" in r.getMessage()]
    assert logged == [f"secsipid serve: /v1/pub/ refuses {pub_dir / name}: it holds a private key"]
    # A DER certificate is served (it is a SEQUENCE too, but not a key).
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    cert = x509.load_pem_x509_certificate(key_files.cert_pem.read_bytes())
    (pub_dir / "cert.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    assert call(app, "GET", "/v1/pub/cert.der").status == 200


def test_pub_never_serves_configured_secrets(
    key_files: KeyFiles, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The signing key, the token file and the configuration are never served from pub_dir,
    whatever their content (a token file is plain text), and `secsipid serve` warns at start."""
    d = tmp_path / "lab"  # `secsipid keygen --out lab` then `--pub-dir lab`: one directory
    d.mkdir()
    (d / "cert.pem").write_bytes(key_files.cert_pem.read_bytes())
    (d / "key.pem").write_bytes(key_files.key_pem.read_bytes())
    (d / "tokens.txt").write_text(TOKEN + "\n")
    (d / "secsipid.toml").write_text(f'[signing]\nkey = "{d / "key.pem"}"\nx5u = "{X5U}"\n')
    config = load_config(
        str(d / "secsipid.toml"),
        {"token_file": str(d / "tokens.txt"), "pub_dir": str(d), "cert": str(d / "cert.pem")},
    )
    app = create_app(config)
    assert sorted(app.state.published_secrets()) == sorted(
        str(d / n) for n in ("key.pem", "tokens.txt", "secsipid.toml")
    )
    for name in ("key.pem", "tokens.txt", "secsipid.toml"):
        reply = call(app, "GET", f"/v1/pub/{name}")
        assert (reply.status, reply.body) == (404, b"404 page not found\n")
    assert call(app, "GET", "/v1/pub/cert.pem").status == 200
    refused = [r.getMessage() for r in caplog.records if "/v1/pub/ refuses" in r.getMessage()]
    assert len(refused) == 3 and all("configured key, token or config" in m for m in refused)


def test_pub_not_configured(key_files: KeyFiles) -> None:
    assert call(make_app(key_files), "GET", "/v1/pub/cert.pem").status == 404


def test_pub_method(app: ServiceApp) -> None:
    assert call(app, "POST", "/v1/pub/cert.pem", b"x").status == 405


# -- ATIS-1000082 signing ----------------------------------------------------------------------

JSON_HDRS = [("Content-Type", "application/json")]


def _signing_body(**changes: Any) -> bytes:
    req: dict[str, Any] = {
        "attest": "A",
        "dest": {"tn": [DEST]},
        "iat": _now(),
        "orig": {"tn": ORIG},
        "origid": ORIGID,
    }
    req.update(changes)
    req = {k: v for k, v in req.items() if v is not None}
    return json.dumps({"signingRequest": req}).encode()


def _atis_error(reply: Reply, status: int, message_id: str, *variables: str) -> None:
    assert reply.status == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    kind = "policyException" if message_id.startswith("POL") else "serviceException"
    inner = reply.json()["requestError"][kind]
    assert inner["messageId"] == message_id
    assert isinstance(inner["text"], str) and inner["text"]
    if variables:
        assert inner["variables"][: len(variables)] == list(variables)
    assert reply.headers["x-requestid"]


def test_atis_signing(app: ServiceApp, key_files: KeyFiles) -> None:
    iat = _now()
    reply = call(app, "POST", "/stir/v1/signing", _signing_body(iat=iat), JSON_HDRS)
    assert reply.status == 200, reply.text
    identity = reply.json()["signingResponse"]["identity"]
    passport = _verify(identity, key_files)
    assert (passport.attest, passport.orig, passport.dest, passport.iat, passport.origid) == (
        "A", ORIG, [DEST], iat, ORIGID,
    )  # fmt: skip
    assert passport.info == X5U
    assert len(reply.headers["x-requestid"]) == 36  # generated


def test_atis_request_id_echoed(app: ServiceApp) -> None:
    headers = [*JSON_HDRS, ("X-RequestID", "req-42")]
    assert (
        call(app, "POST", "/stir/v1/signing", _signing_body(), headers).headers["x-requestid"]
        == "req-42"
    )
    reply = call(app, "GET", "/stir/v1/signing", b"", [("X-RequestID", "req-43")])
    assert reply.headers["x-requestid"] == "req-43"


@pytest.mark.parametrize("given", ["x" * 129, "a\tb", "caf\u00e9"])
def test_atis_request_id_not_echoed_when_unfit(app: ServiceApp, given: str) -> None:
    """An X-RequestID that is long, not printable or not ASCII is not echoed: a new one is
    generated (a header value we send back must be safe to send)."""
    headers = [*JSON_HDRS, ("X-RequestID", given)]
    reply = call(app, "POST", "/stir/v1/signing", _signing_body(), headers)
    assert reply.status == 200
    assert len(reply.headers["x-requestid"]) == 36 and reply.headers["x-requestid"] != given


def test_atis_signing_origid_generated_lowercase_attest(
    app: ServiceApp, key_files: KeyFiles
) -> None:
    reply = call(app, "POST", "/stir/v1/signing", _signing_body(origid=None, attest="b"), JSON_HDRS)
    assert reply.status == 200, reply.text
    passport = _verify(reply.json()["signingResponse"]["identity"], key_files)
    assert passport.attest == "B"
    assert passport.origid != ORIGID


@pytest.mark.parametrize(
    ("body", "status", "message_id", "variables"),
    [
        (b"", 400, "SVC4000", ()),
        (b"  ", 400, "SVC4000", ()),
        (b"{}", 400, "SVC4001", ("signingRequest",)),
        (_signing_body(attest=None), 400, "SVC4001", ("attest",)),
        (_signing_body(orig=None), 400, "SVC4001", ("orig",)),
        (_signing_body(dest={}), 400, "SVC4001", ("dest.tn",)),
        (_signing_body(iat=None), 400, "SVC4001", ("iat",)),
        (_signing_body(attest="Z"), 400, "SVC4005", ("attest",)),
        (_signing_body(attest=1), 400, "SVC4005", ("attest",)),
        (_signing_body(origid="nope"), 400, "SVC4005", ("origid",)),
        (_signing_body(iat="1700000000"), 400, "SVC4005", ("iat",)),
        (_signing_body(iat=True), 400, "SVC4005", ("iat",)),
        (_signing_body(iat=0), 400, "SVC4005", ("iat",)),
        (_signing_body(iat=253402300800), 400, "SVC4005", ("iat",)),  # past year 9999
        (_signing_body(iat=10**400), 400, "SVC4005", ("iat",)),  # 401 digits
        # A PASSporT too large for verifiers to accept: the request as a whole is at fault.
        (_signing_body(orig={"tn": "1" * 6000}), 400, "SVC4005", ("signingRequest",)),
        (_signing_body(dest={"tn": []}), 400, "SVC4005", ("dest.tn",)),
        (_signing_body(dest={"tn": [5]}), 400, "SVC4005", ("dest.tn",)),
        (_signing_body(dest=[DEST]), 400, "SVC4005", ("dest",)),
        (_signing_body(orig={"tn": "abc"}), 400, "SVC4005", ("orig.tn",)),
        (b'{"signingRequest": 5}', 400, "SVC4005", ("signingRequest",)),
        (b"[1]", 400, "SVC4006", ()),
        (b"{not json", 400, "SVC4006", ()),
        (b'{"a":' * 100000, 413, "SVC4006", ()),
        # Strict JSON, as for PASSporTs (_codec.loads_strict): a member twice (which one
        # counts?), NaN, a number that overflows to inf, nesting deeper than 32, not UTF-8.
        (_signing_body()[:-1] + b', "signingRequest": {}}', 400, "SVC4006", ()),
        (_signing_body(x=None)[:-2] + b', "x": NaN}}', 400, "SVC4006", ()),
        (_signing_body()[:-2] + b', "x": 1e400}}', 400, "SVC4006", ()),
        (_signing_body()[:-2] + b', "x": ' + b"[" * 40 + b"]" * 40 + b"}}", 400, "SVC4006", ()),
        (_signing_body(orig={"tn": "\u00e9"}).replace(b"\\u00e9", b"\xe9"), 400, "SVC4006", ()),
    ],
)
def test_atis_signing_request_errors(
    app: ServiceApp, body: bytes, status: int, message_id: str, variables: tuple[str, ...]
) -> None:
    reply = call(app, "POST", "/stir/v1/signing", body, JSON_HDRS)
    _atis_error(reply, status, message_id, *variables)


def test_atis_deep_json_is_a_parse_error(key_files: KeyFiles) -> None:
    """Deeply nested JSON within the size limit: SVC4006, not a crash."""
    app = make_app(key_files, max_body=200000)
    reply = call(app, "POST", "/stir/v1/signing", b"[" * 100000, JSON_HDRS)
    _atis_error(reply, 400, "SVC4006")


@pytest.mark.parametrize(
    ("headers", "status", "message_id", "variables"),
    [
        ([("Content-Type", "text/plain")], 415, "SVC4004", ("application/json",)),
        ([], 415, "SVC4004", ("application/json",)),
        ([*JSON_HDRS, ("Accept", "text/html")], 406, "SVC4002", ("text/html",)),
    ],
)
def test_atis_header_errors(
    app: ServiceApp,
    headers: list[tuple[str, str]],
    status: int,
    message_id: str,
    variables: tuple[str, ...],
) -> None:
    for path in ("/stir/v1/signing", "/stir/v1/verification"):
        reply = call(app, "POST", path, _signing_body(), headers)
        _atis_error(reply, status, message_id, *variables)


@pytest.mark.parametrize("accept", ["application/json", "*/*", "text/html, application/json;q=0.9"])
def test_atis_accept_allowed(app: ServiceApp, accept: str) -> None:
    headers = [*JSON_HDRS, ("Accept", accept)]
    assert call(app, "POST", "/stir/v1/signing", _signing_body(), headers).status == 200


def test_atis_content_type_with_charset(app: ServiceApp) -> None:
    headers = [("Content-Type", "application/json; charset=utf-8")]
    assert call(app, "POST", "/stir/v1/signing", _signing_body(), headers).status == 200


def test_atis_length_required(app: ServiceApp) -> None:
    reply = call(app, "POST", "/stir/v1/signing", _signing_body(), JSON_HDRS, content_length=False)
    _atis_error(reply, 411, "SVC4007")


def test_atis_not_found_and_method(app: ServiceApp) -> None:
    _atis_error(call(app, "POST", "/stir/v1/nothing", b"{}", JSON_HDRS), 404, "SVC4003")
    reply = call(app, "GET", "/stir/v1/verification")
    _atis_error(reply, 405, "POL4050", "GET")
    assert reply.headers["allow"] == "POST"


def test_atis_signing_token(token_app: ServiceApp) -> None:
    reply = call(token_app, "POST", "/stir/v1/signing", _signing_body(), JSON_HDRS)
    _atis_error(reply, 401, "POL4001")
    assert reply.headers["www-authenticate"].startswith("Bearer")
    headers = [*JSON_HDRS, ("Authorization", f"Bearer {TOKEN}")]
    assert call(token_app, "POST", "/stir/v1/signing", _signing_body(), headers).status == 200


def test_atis_signing_not_configured(key_files: KeyFiles) -> None:
    app = make_app(key_files, key=None, x5u=None)
    reply = call(app, "POST", "/stir/v1/signing", _signing_body(), JSON_HDRS)
    _atis_error(reply, 503, "POL5003")
    app = make_app(key_files, x5u=None)
    reply = call(app, "POST", "/stir/v1/signing", _signing_body(), JSON_HDRS)
    _atis_error(reply, 503, "POL5003")


def test_atis_internal_error(app: ServiceApp, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unexpected exception is POL5000 with a generic text, not a traceback."""
    profile = app.state.default
    assert profile is not None

    def boom(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("secret detail")

    monkeypatch.setattr(Signer, "identity", boom)
    reply = call(app, "POST", "/stir/v1/signing", _signing_body(), JSON_HDRS)
    _atis_error(reply, 500, "POL5000")
    assert b"secret detail" not in reply.body
    reply = call(app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,".encode())
    assert (reply.status, reply.body) == (500, b"FAILED\ninternal-error\n")


# -- signing profiles --------------------------------------------------------------------------


def test_profiles_by_prefix_and_spc(key_files: KeyFiles, tmp_path: Path) -> None:
    """Several keys: the X-SPC header picks by SPC, else the longest calling-number prefix,
    else the default key."""
    from secsipid.cli import main

    for name in ("a", "b"):
        assert main(["keygen", "--out", str(tmp_path / name), "--spc", f"10{name == 'b':d}"]) == 0
    config = load_config(
        None,
        {
            "key": str(key_files.key_pem),
            "x5u": X5U,
            "profiles": [
                {"key": str(tmp_path / "a/key.pem"), "cert": str(tmp_path / "a/cert.pem"),
                 "x5u": "https://a.example/a.pem", "prefixes": ["1215"]},
                {"key": str(tmp_path / "b/key.pem"), "cert": str(tmp_path / "b/cert.pem"),
                 "x5u": "https://b.example/b.pem", "prefixes": ["121555"]},
            ],
        },
    )  # fmt: skip
    app = create_app(config)

    def signed_info(orig: str, spc: str | None = None) -> Any:
        headers = [*JSON_HDRS] + ([("X-SPC", spc)] if spc else [])
        reply = call(app, "POST", "/stir/v1/signing", _signing_body(orig={"tn": orig}), headers)
        if reply.status != 200:
            return reply
        identity = reply.json()["signingResponse"]["identity"]
        return decode_token(identity.split(";")[0]).header["x5u"]

    assert signed_info("12155550121") == "https://b.example/b.pem"  # longest prefix
    assert signed_info("12159990121") == "https://a.example/a.pem"
    assert signed_info("13105550121") == X5U  # default key
    assert signed_info("12155550121", "100") == "https://a.example/a.pem"  # SPC from TNAuthList
    _atis_error(signed_info("12155550121", "999"), 400, "SVC4005", "X-SPC")


# -- ATIS-1000082 verification -----------------------------------------------------------------


def _verification_body(value: str, **changes: Any) -> bytes:
    req: dict[str, Any] = {
        "from": {"tn": ORIG},
        "to": {"tn": [DEST]},
        "time": _now(),
        "identity": value,
    }
    req.update(changes)
    req = {k: v for k, v in req.items() if v is not None}
    return json.dumps({"verificationRequest": req}).encode()


def _verification(app: ServiceApp, body: bytes) -> dict[str, Any]:
    reply = call(app, "POST", "/stir/v1/verification", body, JSON_HDRS)
    assert reply.status == 200, reply.text
    assert reply.headers["x-requestid"]
    result: dict[str, Any] = reply.json()["verificationResponse"]
    return result


def test_atis_verification_pass(app: ServiceApp, fresh: str) -> None:
    assert _verification(app, _verification_body(fresh)) == {"verstat": "TN-Validation-Passed"}


def test_atis_verification_alternative_names(app: ServiceApp, fresh: str) -> None:
    """orig/dest/iat inside verificationRequest (a client spelling) work like from/to/time."""
    body = json.dumps(
        {"verificationRequest": {"orig": {"tn": [ORIG]}, "dest": {"tn": DEST}, "iat": _now(),
                                 "identity": fresh}}
    ).encode()  # fmt: skip
    assert _verification(app, body) == {"verstat": "TN-Validation-Passed"}


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("bad-signature", Reason.BAD_SIGNATURE),
        ("orig-mismatch", Reason.ORIG_MISMATCH),
        ("dest-mismatch", Reason.DEST_MISMATCH),
        ("stale-iat", Reason.STALE),
        ("time-skew", Reason.STALE),
        ("no-info", Reason.MISSING_INFO),
    ],
)
def test_atis_verification_failures(
    app: ServiceApp, signer: Signer, fresh: str, case: str, reason: Reason
) -> None:
    """A PASSporT that is not valid: HTTP 200 with reasoncode/reasontext/reasondesc and the
    verstat of the ATIS-1000082 error table."""
    identity, changes = fresh, {}
    if case == "bad-signature":
        identity = _tamper(fresh)
    elif case == "orig-mismatch":
        changes = {"from": {"tn": "12155550199"}}
    elif case == "dest-mismatch":
        changes = {"to": {"tn": ["12155550199"]}}
    elif case == "stale-iat":
        identity = signer.identity(ORIG, DEST, "A", ORIGID, iat=_now() - 3600)
    elif case == "time-skew":
        changes = {"time": _now() - 120}
    elif case == "no-info":
        identity = fresh.split(";")[0]
    result = _verification(app, _verification_body(identity, **changes))
    assert result["reasoncode"] == reason.sip_status
    assert result["reasontext"] == reason.sip_reason
    assert isinstance(result["reasondesc"], str) and result["reasondesc"]
    assert result["verstat"] == reason.verstat
    expected = "TN-Validation-Failed" if case == "bad-signature" else "No-TN-Validation"
    assert result["verstat"] == expected


@pytest.mark.parametrize(
    ("changes", "message_id", "variables"),
    [
        ({"identity": None}, "SVC4001", ("identity",)),
        ({"from": None}, "SVC4001", ("from",)),
        ({"to": None}, "SVC4001", ("to",)),
        ({"time": None}, "SVC4001", ("time",)),
        ({"identity": ""}, "SVC4005", ("identity",)),
        ({"identity": 5}, "SVC4005", ("identity",)),
        ({"time": "now"}, "SVC4005", ("time",)),
        ({"from": {"tn": 5}}, "SVC4005", ("from.tn",)),
        ({"to": "x"}, "SVC4005", ("to",)),
    ],
)
def test_atis_verification_request_errors(
    app: ServiceApp,
    fresh: str,
    changes: dict[str, Any],
    message_id: str,
    variables: tuple[str, ...],
) -> None:
    reply = call(app, "POST", "/stir/v1/verification", _verification_body(fresh, **changes),
                 JSON_HDRS)  # fmt: skip
    _atis_error(reply, 400, message_id, *variables)


def test_atis_verification_wrapper_missing(app: ServiceApp) -> None:
    reply = call(app, "POST", "/stir/v1/verification", b'{"verificationResponse":{}}', JSON_HDRS)
    _atis_error(reply, 400, "SVC4001", "verificationRequest")


def test_atis_verification_needs_no_token(token_app: ServiceApp, fresh: str) -> None:
    assert _verification(token_app, _verification_body(fresh))["verstat"] == (
        "TN-Validation-Passed"
    )


# -- operations --------------------------------------------------------------------------------


def test_healthz(app: ServiceApp, key_files: KeyFiles) -> None:
    reply = call(app, "GET", "/healthz")
    assert reply.status == 200
    assert reply.json() == {
        "status": "ok", "version": "0.1.0", "signing": True, "verification": True,
    }  # fmt: skip
    reply = call(make_app(key_files, key=None, x5u=None, cert=None), "GET", "/healthz")
    assert (reply.json()["signing"], reply.json()["verification"]) == (False, False)


def test_not_found(app: ServiceApp) -> None:
    for method in ("GET", "POST", "BREW"):
        reply = call(app, method, "/nothing")
        assert (reply.status, reply.body) == (404, b"404 page not found\n")


def test_openapi_describes_every_route(app: ServiceApp) -> None:
    """Every route the app answers is in /openapi.json with its methods."""
    from secsipid.service.app import _PUB, _ROUTES

    reply = call(app, "GET", "/openapi.json")
    assert reply.status == 200
    doc = reply.json()
    assert doc["openapi"].startswith("3.")
    routes = {path: route.methods for path, route in _ROUTES.items()}
    routes["/v1/pub/{file}"] = _PUB.methods
    assert set(doc["paths"]) == set(routes)
    for path, methods in routes.items():
        described = {m.upper() for m in doc["paths"][path]}
        assert described, path
        assert described <= set(methods), (path, described, methods)
    schema = doc["paths"]["/v1/check"]["post"]["responses"]["400"]["headers"]
    assert set(schema["X-SecSIPID-Reason"]["schema"]["enum"]) == {r.value for r in Reason}


def _samples(text: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


def test_metrics(app: ServiceApp, fresh: str) -> None:
    """Requests by endpoint and status, verdicts by reason, signatures, latency."""
    call(app, "POST", "/v1/check", fresh.encode())
    call(app, "POST", "/v1/check", _tamper(fresh).encode())
    call(app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,".encode())
    call(app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},Z,,".encode())
    reply = call(app, "GET", "/metrics")
    assert reply.status == 200
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    s = _samples(reply.text)
    assert s['secsipid_http_requests_total{endpoint="v1_check",status="200"}'] == 1
    assert s['secsipid_http_requests_total{endpoint="v1_check",status="400"}'] == 1
    assert s['secsipid_http_requests_total{endpoint="v1_sign_csv",status="200"}'] == 1
    assert s['secsipid_verdicts_total{reason="valid"}'] == 1
    assert s['secsipid_verdicts_total{reason="bad-signature"}'] == 1
    assert s['secsipid_signatures_total{result="signed"}'] == 1
    assert s['secsipid_signatures_total{result="invalid-attest"}'] == 1
    assert s['secsipid_http_request_duration_seconds_count{endpoint="v1_check"}'] == 2


def test_metrics_disabled(key_files: KeyFiles) -> None:
    assert call(make_app(key_files, metrics=False), "GET", "/metrics").status == 404


def _latency_samples(text: str) -> dict[str, float]:
    s = _samples(text)
    prefix = "secsipid_http_request_duration_seconds"
    return {
        k[len(prefix) :]: v
        for k, v in s.items()
        if k.startswith(prefix) and not k.startswith(prefix + "_created")
    }


def test_metrics_batches_add_up() -> None:
    """Batched samples render exactly as one observation at a time would: counters, and the
    latency histogram's buckets, count and sum."""
    from secsipid.service.metrics import Metrics

    m = Metrics()
    for _ in range(3):
        m.request("v1_check", 200, 0.003)
    m.request("v1_check", 200, 7.0)
    m.request("v1_check", 400, 0.0005)
    m.verdict("valid")
    m.signature("signed")
    text = m.render().decode()
    s = _samples(text)
    assert s['secsipid_http_requests_total{endpoint="v1_check",status="200"}'] == 4
    assert s['secsipid_http_requests_total{endpoint="v1_check",status="400"}'] == 1
    assert s['secsipid_verdicts_total{reason="valid"}'] == 1
    assert s['secsipid_signatures_total{result="signed"}'] == 1
    lat = _latency_samples(text)
    assert lat['_bucket{endpoint="v1_check",le="0.0005"}'] == 1  # le is inclusive
    assert lat['_bucket{endpoint="v1_check",le="0.0025"}'] == 1
    assert lat['_bucket{endpoint="v1_check",le="0.005"}'] == 4
    assert lat['_bucket{endpoint="v1_check",le="5.0"}'] == 4
    assert lat['_bucket{endpoint="v1_check",le="10.0"}'] == 5
    assert lat['_bucket{endpoint="v1_check",le="+Inf"}'] == 5
    assert lat['_count{endpoint="v1_check"}'] == 5
    assert lat['_sum{endpoint="v1_check"}'] == pytest.approx(7.0095)
    m.request("v1_check", 200, 0.003)  # a second batch adds to the first
    again = _latency_samples(m.render().decode())
    assert again['_bucket{endpoint="v1_check",le="0.005"}'] == 5
    assert again['_count{endpoint="v1_check"}'] == 6


def test_metrics_unbatched_histogram_same_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Should prometheus-client's histogram internals ever change, observations go to it one
    by one, with the same figures."""
    from secsipid.service import metrics

    def load(m: metrics.Metrics) -> None:
        for seconds in (0.003, 0.003, 7.0, 0.0005, 42.0):
            m.request("v1_sign_csv", 200, seconds)

    batched = metrics.Metrics()
    load(batched)
    monkeypatch.setattr(metrics, "_batchable", lambda child: False)
    direct = metrics.Metrics()
    load(direct)
    assert direct._latency_batched is False and batched._latency_batched is True
    assert _latency_samples(direct.render().decode()) == _latency_samples(batched.render().decode())


def test_histogram_internals_for_batching() -> None:
    """The installed prometheus-client has the per-bucket values batches are added to (if a
    new version drops them the service still counts right, one observation at a time, but
    slower: this test says so)."""
    from secsipid.service.metrics import Metrics, _batchable

    m = Metrics()
    assert _batchable(m._latency.labels("probe"))


def test_metrics_handed_over_every_256_requests() -> None:
    from secsipid.service.metrics import FLUSH_EVERY, Metrics

    m = Metrics()
    labels = {"endpoint": "v1_check", "status": "200"}
    for _ in range(FLUSH_EVERY - 1):
        m.request("v1_check", 200, 0.001)
    assert not m.registry.get_sample_value("secsipid_http_requests_total", labels)
    m.request("v1_check", 200, 0.001)
    assert m.registry.get_sample_value("secsipid_http_requests_total", labels) == FLUSH_EVERY


def test_metrics_handed_over_by_housekeeping_and_at_stop(
    key_files: KeyFiles, interface: str, monkeypatch: pytest.MonkeyPatch, fresh: str
) -> None:
    """Each worker hands its batch over once a second (here: sped up) without a /metrics
    request, and when it stops (ASGI lifespan shutdown, RSGI __rsgi_del__)."""
    from secsipid.service import app as app_module

    monkeypatch.setattr(app_module, "RELOAD_INTERVAL", 0.02)
    app = make_app(key_files)
    labels = {"endpoint": "v1_check", "status": "200"}

    def handed_over() -> float:
        return (
            app.metrics.registry.get_sample_value(  # type: ignore[attr-defined]
                "secsipid_http_requests_total", labels
            )
            or 0.0
        )

    async def run() -> None:
        loop = asyncio.get_running_loop()
        shutdown = asyncio.Event()
        lifespan: asyncio.Task[None] | None = None
        if interface == "rsgi":
            app.__rsgi_init__(loop)
        else:
            events = [{"type": "lifespan.startup"}]

            async def receive() -> dict[str, Any]:
                if events:
                    return events.pop(0)
                await shutdown.wait()
                return {"type": "lifespan.shutdown"}

            async def send(message: dict[str, Any]) -> None:
                pass

            lifespan = asyncio.create_task(app({"type": "lifespan"}, receive, send))
            await asyncio.sleep(0)
        assert (await servicekit.acall(app, "POST", "/v1/check", fresh.encode())).status == 200
        for _ in range(100):
            if handed_over() == 1:
                break
            await asyncio.sleep(0.02)
        assert handed_over() == 1
        assert (await servicekit.acall(app, "POST", "/v1/check", fresh.encode())).status == 200
        assert handed_over() == 1  # batched
        if interface == "rsgi":
            app.__rsgi_del__(loop)
        else:
            shutdown.set()
            assert lifespan is not None
            await lifespan
        assert handed_over() == 2
        assert not app._tasks

    asyncio.run(run())


def test_access_log(key_files: KeyFiles, tmp_path: Path, fresh: str) -> None:
    """One JSON line per request; never the token, the body or the query string."""
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    config = load_config(
        None, {"key": str(key_files.key_pem), "x5u": X5U, "cert": str(key_files.cert_pem),
               "token_file": str(tokens)},
    )  # fmt: skip
    stream = io.StringIO()
    app = create_app(config, access_log=stream)
    call(app, "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,".encode(),
         [("Authorization", f"Bearer {TOKEN}")])  # fmt: skip
    call(app, "POST", "/v1/check", _tamper(fresh).encode())
    call(app, "POST", "/stir/v1/signing", _signing_body(), [*JSON_HDRS, ("X-RequestID", "r1")])
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    entries = [json.loads(line) for line in lines]
    assert [e["status"] for e in entries] == [200, 400, 401]
    assert entries[0]["endpoint"] == "v1_sign_csv" and entries[0]["remote"] == "127.0.0.1"
    assert entries[1]["reason"] == "bad-signature"
    assert entries[2]["request_id"] == "r1" and entries[2]["reason"] == "POL4001"
    assert TOKEN not in stream.getvalue()
    assert ORIG not in stream.getvalue()


def test_lifespan_and_watch(key_files: KeyFiles) -> None:
    """Lifespan startup starts the file watcher, shutdown stops it."""
    app = make_app(key_files)
    app.watch = True

    async def run() -> list[str]:
        events = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
        sent: list[str] = []

        async def receive() -> dict[str, Any]:
            await asyncio.sleep(0)
            return events.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message["type"])

        await app({"type": "lifespan"}, receive, send)
        tasks = list(app._tasks)
        await asyncio.sleep(0)
        assert all(t.cancelled() or t.done() for t in tasks)
        return sent

    assert asyncio.run(run()) == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def test_state_swap_between_requests(key_files: KeyFiles, fresh: str, interface: str) -> None:
    """A request keeps the state it started with when a reload swaps it meanwhile."""
    app = make_app(key_files)
    other = make_app(key_files, cert=None)  # verification not configured: would answer 500

    async def run() -> int:
        gate = asyncio.Event()
        parts = [fresh.encode()[:10], fresh.encode()[10:]]
        sent: list[Any] = []

        async def receive() -> dict[str, Any]:
            if len(parts) == 1:
                await gate.wait()  # the rest of the body arrives after the swap
            return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}

        async def send(message: Any) -> None:
            sent.append(message)

        class GatedProtocol(RSGIProtocol):
            async def __call__(self) -> bytes:
                await gate.wait()
                return b"".join(parts)

        proto = GatedProtocol([], stall=False, gone=False)
        if interface == "rsgi":
            headers = RSGIHeaders([("content-length", str(len(fresh)))])
            task = asyncio.create_task(app.__rsgi__(RSGIScope("POST", "/v1/check", headers), proto))
        else:
            scope = {"type": "http", "method": "POST", "path": "/v1/check", "headers": []}
            task = asyncio.create_task(app(scope, receive, send))
        await asyncio.sleep(0.01)
        assert not sent and proto.response is None  # still waiting for its body
        app.state = other.state
        gate.set()
        await task
        return int(proto.response[0] if proto.response else sent[0]["status"])

    assert asyncio.run(run()) == 200
    assert call(app, "POST", "/v1/check", fresh.encode()).status == 500  # the new state


def test_env_factory(key_files: KeyFiles, monkeypatch: pytest.MonkeyPatch) -> None:
    """The worker-side factory builds the app from SECSIPID_SERVE_SPEC."""
    from secsipid.service.app import SPEC_ENV, create_app_from_env

    spec = {"config_file": None, "overrides": {"key": str(key_files.key_pem), "x5u": X5U}}
    monkeypatch.setenv(SPEC_ENV, json.dumps(spec))
    app = create_app_from_env()
    assert app.watch and app.state.default is not None
    assert os.environ[SPEC_ENV]
