"""HTTP contract of ``secsipid serve`` for diverted calls (RFC 8946) and Rich Call Data
(RFC 9795): the ATIS-1000082 shapes extended for them, our own JSON API (``/v1/sign``,
``/v1/verify``), and the secsipidx endpoints, which keep secsipidx's behaviour.  In-process,
through both interfaces of the app; the real server is in test_service_server.py."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import servicekit
from helpers import X5U, KeyFiles
from secsipid import Reason, RichCallData, Signer, Verifier, decode_token, rcd_digest
from secsipid.service import ServiceApp, create_app, load_config
from servicekit import Reply, call

CALLER, FIRST, SECOND, OTHER = "12155551212", "12155551213", "12155551214", "12155559999"
ICON = "https://rcd.example/logo.png"
JCARD = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Example Bank"]]]
TOKEN = "s3cret-token-0123456789abcdef"
JSON_HDRS = [("Content-Type", "application/json")]


@pytest.fixture(autouse=True, params=["asgi", "rsgi"])
def interface(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test of this module runs through both interfaces of the app."""
    monkeypatch.setattr(servicekit, "INTERFACE", request.param)
    return str(request.param)


def make_app(key_files: KeyFiles, **overrides: Any) -> ServiceApp:
    settings: dict[str, Any] = {
        "key": str(key_files.key_pem),
        "x5u": X5U,
        "cert": str(key_files.cert_pem),
    }
    settings.update(overrides)
    return create_app(load_config(None, {k: v for k, v in settings.items() if v is not None}))


@pytest.fixture
def app(key_files: KeyFiles) -> ServiceApp:
    return make_app(key_files)


def _now() -> int:
    return int(time.time())


def _claims(value: str) -> dict[str, Any]:
    return decode_token(value.split(";", 1)[0]).claims


@pytest.fixture
def shaken(signer: Signer) -> str:
    """The caller's SHAKEN PASSporT, to FIRST."""
    return signer.identity(CALLER, FIRST, "A", iat=_now())


@pytest.fixture
def div(signer: Signer, shaken: str) -> str:
    """FIRST forwards the call to SECOND."""
    return signer.div_for(shaken, SECOND)


def _atis_sign(app: ServiceApp, **request: Any) -> Reply:
    body = json.dumps({"signingRequest": request}).encode()
    return call(app, "POST", "/stir/v1/signing", body, JSON_HDRS)


def _atis_identity(reply: Reply) -> str:
    assert reply.status == 200, reply.text
    return str(reply.json()["signingResponse"]["identity"])


def _atis_verify(app: ServiceApp, identity: Any, to: str, **more: Any) -> dict[str, Any]:
    request = {"from": {"tn": CALLER}, "to": {"tn": [to]}, "time": _now(), "identity": identity}
    request.update(more)
    body = json.dumps({"verificationRequest": request}).encode()
    reply = call(app, "POST", "/stir/v1/verification", body, JSON_HDRS)
    assert reply.status == 200, reply.text
    answer: dict[str, Any] = reply.json()["verificationResponse"]
    return answer


def _atis_error(reply: Reply, status: int, message_id: str, *variables: str) -> None:
    assert reply.status == status, reply.text
    kind = "policyException" if message_id.startswith("POL") else "serviceException"
    error = reply.json()["requestError"][kind]
    assert error["messageId"] == message_id
    if variables:
        assert error["variables"][: len(variables)] == list(variables), error


# -- ATIS verification: the chain and the RCD in the response ----------------------------------


def test_atis_verification_of_a_diverted_call(app: ServiceApp, shaken: str, div: str) -> None:
    """All Identity values as an array (any order), to.tn the new target: valid through the
    chain, which the response reports hop by hop."""
    answer = _atis_verify(app, [div, shaken], SECOND)
    assert answer["verstat"] == "TN-Validation-Passed"
    assert answer["diverted"] is True
    assert "reasoncode" not in answer
    hops = answer["chain"]
    assert [(h["ppt"], h["dest"], h["div"], h["valid"]) for h in hops] == [
        ("shaken", [FIRST], None, True),
        ("div", [SECOND], FIRST, True),
    ]
    assert [h["index"] for h in hops] == [1, 0]  # positions in the identity array


def test_atis_verification_chain_failures(app: ServiceApp, shaken: str, div: str) -> None:
    """A chain that does not reach the call target, a div without its SHAKEN PASSporT: not
    valid, with the reason and the chain; the SHAKEN PASSporT alone for the new target is a
    plain dest mismatch (no chain to report)."""
    for identity, to, reason in (
        ([shaken, div], OTHER, Reason.DIV_TARGET_MISMATCH),
        ([div], SECOND, Reason.DIV_WITHOUT_SHAKEN),
        (shaken, SECOND, Reason.DEST_MISMATCH),
    ):
        answer = _atis_verify(app, identity, to)
        assert answer["reasoncode"] == reason.sip_status, (reason, answer)
        assert answer["reasontext"] == reason.sip_reason
        assert answer["verstat"] == reason.verstat
        assert "diverted" not in answer
        assert ("chain" in answer) == (reason is not Reason.DEST_MISMATCH)


def test_atis_verification_valid_shaken_beside_a_broken_chain(
    app: ServiceApp, signer: Signer, shaken: str
) -> None:
    """A SHAKEN PASSporT valid for the target stays valid whatever a div beside it says
    (docs/diversion.md); the chain is reported, not diverted."""
    stray = signer.div_identity(CALLER, OTHER, "12155550000", iat=_now())
    answer = _atis_verify(app, [shaken, stray], FIRST)
    assert answer["verstat"] == "TN-Validation-Passed"
    assert "diverted" not in answer
    assert answer["chain"][0]["ppt"] == "div"


@pytest.mark.parametrize(
    "identity",
    [[], [1], ["", "x"], [None], {"a": "b"}],
    ids=["empty", "int", "blank", "null", "obj"],
)
def test_atis_verification_identity_array_refused(app: ServiceApp, identity: Any) -> None:
    request = {"from": {"tn": CALLER}, "to": {"tn": [FIRST]}, "time": _now(), "identity": identity}
    body = json.dumps({"verificationRequest": request}).encode()
    _atis_error(
        call(app, "POST", "/stir/v1/verification", body, JSON_HDRS), 400, "SVC4005", "identity"
    )


def test_atis_verification_reports_rich_call_data(app: ServiceApp, signer: Signer) -> None:
    """A SHAKEN PASSporT with RCD: the verified rcd, crn and the Call-Info values (RFC 9796)
    an SBC puts in its Call-Info header."""
    rcd = RichCallData(nam="Example Bank", icn=ICON, jcd=JCARD, crn="Card blocked")
    value = signer.identity(
        CALLER, FIRST, "A", iat=_now(), rcd=rcd, rcd_contents={ICON: b"logo bytes"}
    )
    answer = _atis_verify(app, value, FIRST)
    assert answer["verstat"] == "TN-Validation-Passed"
    assert answer["rcd"] == {"nam": "Example Bank", "icn": ICON, "jcd": JCARD}
    assert answer["crn"] == "Card blocked"
    digest = rcd_digest(b"logo bytes")
    assert answer["callinfo"] == [
        f'<{ICON}>;purpose=icon;integrity="{digest}";call-reason="Card blocked"'
    ]
    assert "chain" not in answer and "diverted" not in answer


def test_atis_verification_rcd_passport_beside_shaken(
    app: ServiceApp, signer: Signer, shaken: str
) -> None:
    """RCD in an rcd PASSporT of its own: the response carries it (no Call-Info without a
    URL: nam goes in the display name)."""
    rcd = signer.rcd_identity(CALLER, FIRST, RichCallData(nam="Example Bank"), iat=_now())
    answer = _atis_verify(app, [rcd, shaken], FIRST)
    assert answer["verstat"] == "TN-Validation-Passed"
    assert answer["rcd"] == {"nam": "Example Bank"}
    assert "callinfo" not in answer and "crn" not in answer


def test_atis_verification_rcd_integrity_mismatch(app: ServiceApp, signer: Signer) -> None:
    """An rcdi digest that does not match the inline jCard: the PASSporT is invalid (438)."""
    claims = {
        "attest": "A",
        "dest": {"tn": [FIRST]},
        "iat": _now(),
        "orig": {"tn": CALLER},
        "origid": "123e4567-e89b-42d3-a456-426655440000",
        "rcd": {"nam": "Example Bank", "jcd": JCARD},
        "rcdi": {"/jcd": rcd_digest(b"something else")},
    }
    value = signer.sign_claims(claims) + f";info=<{X5U}>;alg=ES256;ppt=shaken"
    answer = _atis_verify(app, value, FIRST)
    reason = Reason.RCD_INTEGRITY_MISMATCH
    assert (answer["reasoncode"], answer["verstat"]) == (reason.sip_status, reason.verstat)
    assert "rcd" not in answer


# -- ATIS signing: div and RCD ---------------------------------------------------------------


def test_atis_signing_div_from_the_numbers(app: ServiceApp, key_files: KeyFiles) -> None:
    iat = _now()
    value = _atis_identity(
        _atis_sign(
            app, ppt="div", orig={"tn": CALLER}, dest={"tn": [SECOND]}, div={"tn": FIRST}, iat=iat
        )
    )
    assert value.endswith(f";info=<{X5U}>;alg=ES256;ppt=div")
    assert _claims(value) == {
        "dest": {"tn": [SECOND]},
        "div": {"tn": FIRST},
        "iat": iat,
        "orig": {"tn": CALLER},
    }
    original = _atis_identity(
        _atis_sign(app, attest="A", orig={"tn": CALLER}, dest={"tn": [FIRST]}, iat=iat)
    )
    verdict = Verifier(str(key_files.cert_pem)).check([value, original], dest_tn=SECOND)
    assert verdict.ok and verdict.diverted


def test_atis_signing_div_from_the_original(app: ServiceApp, shaken: str) -> None:
    """``original`` alone (ppt inferred): orig and iat copied, div = the original's dest."""
    value = _atis_identity(_atis_sign(app, original=shaken, dest={"tn": [SECOND]}))
    assert value.endswith(";ppt=div")
    claims, first = _claims(value), _claims(shaken)
    assert claims["orig"] == first["orig"] and claims["iat"] == first["iat"]
    assert claims["div"] == {"tn": FIRST}
    later = _atis_identity(
        _atis_sign(app, ppt="div", original=shaken, dest={"tn": [SECOND]}, iat=first["iat"] + 5)
    )
    assert _claims(later)["iat"] == first["iat"] + 5


def test_atis_signing_shaken_with_rich_call_data(app: ServiceApp, key_files: KeyFiles) -> None:
    """RCD claims in the SHAKEN PASSporT: the inline jCard's digest is computed, a digest the
    client computed for URL content is kept; the answer verifies with its RCD."""
    iat = _now()
    value = _atis_identity(
        _atis_sign(
            app,
            attest="A",
            orig={"tn": CALLER},
            dest={"tn": [FIRST]},
            iat=iat,
            rcd={"nam": "Example Bank", "icn": ICON, "jcd": JCARD, "x-brand": 7},
            crn="Card blocked",
            rcdi={"/icn": rcd_digest(b"logo bytes")},
        )
    )
    assert value.endswith(";ppt=shaken")
    claims = _claims(value)
    assert claims["rcd"] == {"nam": "Example Bank", "icn": ICON, "jcd": JCARD, "x-brand": 7}
    assert claims["crn"] == "Card blocked"
    assert claims["rcdi"]["/icn"] == rcd_digest(b"logo bytes")
    assert claims["rcdi"]["/jcd"].startswith("sha256-")
    verdict = Verifier(str(key_files.cert_pem)).check(value)
    assert verdict.ok and verdict.rcd is not None and verdict.rcd.nam == "Example Bank"


def test_atis_signing_rcd_passport(app: ServiceApp) -> None:
    value = _atis_identity(
        _atis_sign(
            app,
            ppt="rcd",
            orig={"tn": CALLER},
            dest={"tn": [FIRST]},
            iat=_now(),
            rcd={"nam": "Example Bank"},
            crn="Appointment",
        )
    )
    assert value.endswith(";ppt=rcd")
    claims = _claims(value)
    assert claims["rcd"] == {"nam": "Example Bank"} and claims["crn"] == "Appointment"
    assert "attest" not in claims and "origid" not in claims


def _valid_div(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "ppt": "div",
        "orig": {"tn": CALLER},
        "dest": {"tn": [SECOND]},
        "div": {"tn": FIRST},
        "iat": 1_700_000_000,
    }
    request.update(changes)
    return {k: v for k, v in request.items() if v is not None}


def _valid_shaken(**changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "attest": "A",
        "orig": {"tn": CALLER},
        "dest": {"tn": [FIRST]},
        "iat": 1_700_000_000,
    }
    request.update(changes)
    return {k: v for k, v in request.items() if v is not None}


@pytest.mark.parametrize(
    ("request_", "message_id", "variable"),
    [
        (_valid_div(ppt="div-o"), "SVC4005", "ppt"),
        (_valid_div(ppt=3), "SVC4005", "ppt"),
        (_valid_div(div=None), "SVC4001", "div"),
        (_valid_div(div={"tn": 5}), "SVC4005", "div.tn"),
        (_valid_div(attest="A"), "SVC4005", "attest"),
        (_valid_div(rcd={"nam": "X"}), "SVC4005", "rcd"),
        (_valid_div(iat=None), "SVC4001", "iat"),
        (_valid_div(div={"tn": SECOND}), "SVC4005", "tn"),  # not retargeted (RFC 8946 §3)
        (_valid_div(original="x.y.z", orig=None, div=None), "SVC4005", "original"),
        (_valid_div(original="", orig=None), "SVC4005", "original"),
        (_valid_div(original="a.b.c"), "SVC4005", "orig"),  # orig is copied from it
        (_valid_shaken(div={"tn": FIRST}, ppt="shaken"), "SVC4005", "div"),
        (_valid_shaken(rcd={"icn": ICON}), "SVC4001", "rcd.nam"),
        (_valid_shaken(rcd="Example Bank"), "SVC4005", "rcd"),
        (_valid_shaken(rcd={"nam": "X", "jcd": JCARD, "jcl": ICON}), "SVC4005", "rcd"),
        (_valid_shaken(rcd={"nam": "X", "icn": "not a url"}), "SVC4005", "rcd"),
        (_valid_shaken(rcd={"nam": "X"}, rcdi={"/nam": "md5-abc"}), "SVC4005", "rcd"),
        (_valid_shaken(rcd={"nam": "X"}, rcdi=["sha256-x"]), "SVC4005", "rcdi"),
        (_valid_shaken(rcd={"nam": "X"}, crn=5), "SVC4005", "crn"),
        (_valid_shaken(crn="Card blocked"), "SVC4005", "crn"),
        (_valid_shaken(ppt="rcd", attest=None), "SVC4001", "rcd"),
        (_valid_shaken(ppt="rcd", rcd={"nam": "X"}), "SVC4005", "attest"),
    ],
)
def test_atis_signing_div_and_rcd_refused(
    app: ServiceApp, request_: dict[str, Any], message_id: str, variable: str
) -> None:
    _atis_error(_atis_sign(app, **request_), 400, message_id, variable)


def _second_profile(key_files: KeyFiles, tmp_path: Path) -> tuple[ServiceApp, str]:
    """The app with a second key for the diverting number's prefix (its own x5u)."""
    other = ec.generate_private_key(ec.SECP256R1())
    key = tmp_path / "fwd-key.pem"
    key.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    x5u = "https://fwd.example/sti.pem"
    toml = tmp_path / "serve.toml"
    toml.write_text(f'[[signing.profiles]]\nkey = "{key}"\nx5u = "{x5u}"\nprefixes = ["{FIRST}"]\n')
    settings = {"key": str(key_files.key_pem), "x5u": X5U, "cert": str(key_files.cert_pem)}
    return create_app(load_config(str(toml), settings)), x5u


def test_div_signed_with_the_key_of_the_diverting_number(
    key_files: KeyFiles, tmp_path: Path, shaken: str
) -> None:
    """RFC 8946 §3: a div PASSporT is signed by whoever has authority over ``div``, so with
    several keys the one for the diverting number's prefix signs it, in every API."""
    app, fwd_x5u = _second_profile(key_files, tmp_path)
    by_numbers = _atis_identity(_atis_sign(app, **_valid_div()))
    from_original = _atis_identity(_atis_sign(app, original=shaken, dest={"tn": [SECOND]}))
    own = call(
        app,
        "POST",
        "/v1/sign",
        json.dumps({"original": shaken, "dest_tn": SECOND}).encode(),
        JSON_HDRS,
    ).json()["identity"]
    for value in (by_numbers, from_original, own):
        assert f";info=<{fwd_x5u}>;" in value
    caller = _atis_identity(_atis_sign(app, **_valid_shaken()))
    assert f";info=<{X5U}>;" in caller


# -- our own JSON API ----------------------------------------------------------------------------


def _own(app: ServiceApp, path: str, body: Any, headers: Any = JSON_HDRS) -> Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return call(app, "POST", path, raw, headers)


def _own_error(reply: Reply, status: int, code: str) -> None:
    assert reply.status == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert body["error"] == code, body
    assert body["message"]


def test_own_sign_every_kind(app: ServiceApp, key_files: KeyFiles, shaken: str) -> None:
    """SHAKEN (with RCD), div from numbers and from the original, rcd: one endpoint, the
    library's argument names."""
    iat = _now()
    first = _own(
        app,
        "/v1/sign",
        {
            "orig_tn": CALLER,
            "dest_tn": FIRST,
            "attest": "B",
            "iat": iat,
            "rcd": {"nam": "Example Bank"},
            "crn": "Card blocked",
        },
    )
    assert first.status == 200, first.text
    value = first.json()["identity"]
    assert value.endswith(";ppt=shaken")
    claims = _claims(value)
    assert claims["attest"] == "B" and claims["rcd"] == {"nam": "Example Bank"}
    div = _own(
        app,
        "/v1/sign",
        {"ppt": "div", "orig_tn": CALLER, "div_tn": FIRST, "dest_tn": [SECOND], "iat": iat},
    ).json()["identity"]
    copied = _own(app, "/v1/sign", {"original": value, "dest_tn": SECOND}).json()["identity"]
    assert _claims(div) == _claims(copied)
    verdict = Verifier(str(key_files.cert_pem)).check([copied, value], dest_tn=SECOND)
    assert verdict.ok and verdict.diverted and verdict.rcd is not None
    rcd = _own(
        app,
        "/v1/sign",
        {"ppt": "rcd", "orig_tn": CALLER, "dest_tn": FIRST, "rcd": {"nam": "Example Bank"}},
    ).json()["identity"]
    assert rcd.endswith(";ppt=rcd")
    other_x5u = "https://cert2.example.org/sti.pem"
    given = _own(
        app, "/v1/sign", {"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A", "x5u": other_x5u}
    ).json()["identity"]
    assert given.endswith(f";info=<{other_x5u}>;alg=ES256;ppt=shaken")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "invalid-json"),
        (b"[1]", "invalid-json"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A", "origTn": "x"}, "invalid-parameter"),
        ({"dest_tn": FIRST, "attest": "A"}, "missing-parameter"),
        ({"orig_tn": CALLER, "attest": "A"}, "missing-parameter"),
        ({"orig_tn": CALLER, "dest_tn": FIRST}, "missing-parameter"),
        ({"orig_tn": 1, "dest_tn": FIRST, "attest": "A"}, "invalid-parameter"),
        ({"orig_tn": CALLER, "dest_tn": [], "attest": "A"}, "invalid-parameter"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A", "iat": "now"}, "invalid-parameter"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "attest": "Z"}, "invalid-attest"),
        ({"orig_tn": "abc", "dest_tn": FIRST, "attest": "A"}, "invalid-tn"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A", "origid": "x"}, "invalid-origid"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A", "x5u": "no url"}, "invalid-x5u"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A", "ppt": "div"}, "invalid-parameter"),
        ({"orig_tn": CALLER, "dest_tn": SECOND, "ppt": "div"}, "missing-parameter"),
        (
            {"orig_tn": CALLER, "dest_tn": SECOND, "div_tn": FIRST, "attest": "A"},
            "invalid-parameter",
        ),
        ({"dest_tn": SECOND, "original": "x.y.z"}, "invalid-original"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "div_tn": FIRST}, "invalid-tn"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "ppt": "rcd"}, "missing-parameter"),
        ({"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A", "iat": 10**13}, "invalid-iat"),
        ({"orig_tn": "1" * 6000, "dest_tn": FIRST, "attest": "A"}, "too-large"),
        ({"orig_tn": "1" * 6000, "dest_tn": SECOND, "div_tn": FIRST}, "too-large"),
        ({"orig_tn": "1" * 6000, "dest_tn": FIRST, "ppt": "rcd", "rcd": {"nam": "A"}}, "too-large"),
        (
            {"orig_tn": CALLER, "dest_tn": FIRST, "ppt": "rcd", "rcd": {"nam": 1}},
            "invalid-parameter",
        ),
    ],
)
def test_own_sign_refused(app: ServiceApp, body: Any, code: str) -> None:
    _own_error(_own(app, "/v1/sign", body), 400, code)


_GOOD = b'{"orig_tn": "12155551212", "dest_tn": "12155551213", "attest": "A"'


@pytest.mark.parametrize(
    "body",
    [
        _GOOD + b', "attest": "C"}',  # a member twice: which one would sign?
        _GOOD + b', "iat": NaN}',
        _GOOD + b', "iat": 1e400}',
        _GOOD + b', "rcd": {"nam": "x", "x": ' + b"[" * 40 + b"]" * 40 + b"}}",
        _GOOD.replace(b"12155551212", b"\xe9") + b"}",  # not UTF-8
    ],
    ids=["duplicate", "nan", "overflow", "deep", "latin-1"],
)
def test_own_api_strict_json(app: ServiceApp, body: bytes) -> None:
    """Bodies are parsed as strictly as PASSporTs and ATIS bodies are."""
    _own_error(_own(app, "/v1/sign", body), 400, "invalid-json")
    _own_error(_own(app, "/v1/verify", body.replace(b"orig_tn", b"identity")), 400, "invalid-json")
    assert _own(app, "/v1/sign", _GOOD + b"}").status == 200


def test_own_sign_request_errors(key_files: KeyFiles, app: ServiceApp, tmp_path: Path) -> None:
    good = {"orig_tn": CALLER, "dest_tn": FIRST, "attest": "A"}
    _own_error(
        _own(app, "/v1/sign", good, [("Content-Type", "text/plain")]), 415, "unsupported-media-type"
    )
    _own_error(_own(app, "/v1/sign", good, []), 415, "unsupported-media-type")
    reply = call(app, "GET", "/v1/sign")
    _own_error(reply, 405, "method-not-allowed")
    assert reply.headers["allow"] == "POST"
    big = json.dumps({**good, "rcd": {"nam": "x" * 20000}}).encode()
    _own_error(_own(app, "/v1/sign", big), 413, "too-large")
    unsigned = make_app(key_files, key=None, x5u=None)
    _own_error(_own(unsigned, "/v1/sign", good), 503, "signing-not-configured")
    no_x5u = make_app(key_files, x5u=None)
    _own_error(_own(no_x5u, "/v1/sign", good), 400, "invalid-x5u")
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    guarded = make_app(key_files, token_file=str(tokens))
    reply = _own(guarded, "/v1/sign", good)
    _own_error(reply, 401, "unauthorized")
    assert reply.headers["www-authenticate"] == 'Bearer realm="secsipid"'
    ok = _own(guarded, "/v1/sign", good, [*JSON_HDRS, ("Authorization", f"Bearer {TOKEN}")])
    assert ok.status == 200
    assert len(ok.headers["x-requestid"]) == 36


def test_own_verify_the_whole_verdict(app: ServiceApp, signer: Signer, shaken: str) -> None:
    """/v1/verify: the verdict of secsipid check --json, with the chain and the RCD."""
    rcd = RichCallData(nam="Example Bank", icn=ICON, crn="Card blocked")
    first = signer.identity(CALLER, FIRST, "A", iat=_now(), rcd=rcd)
    div = signer.div_for(first, SECOND)
    reply = _own(
        app, "/v1/verify", {"identity": [first, div], "orig_tn": CALLER, "dest_tn": SECOND}
    )
    assert reply.status == 200
    assert reply.headers["x-secsipid-reason"] == "valid"
    verdict = reply.json()
    assert verdict["valid"] is True and verdict["diverted"] is True
    assert [hop["ppt"] for hop in verdict["chain"]] == ["shaken", "div"]
    assert verdict["rcd"]["rcd"] == {"nam": "Example Bank", "icn": ICON}
    assert verdict["call_info"] == [f'<{ICON}>;purpose=icon;call-reason="Card blocked"']
    # not valid: still 200, the verdict says why
    reply = _own(app, "/v1/verify", {"identity": [div], "dest_tn": SECOND})
    assert reply.status == 200
    verdict = reply.json()
    assert verdict["valid"] is False and verdict["reason"] == "div-without-shaken"
    assert verdict["sip_status"] == Reason.DIV_WITHOUT_SHAKEN.sip_status
    assert reply.headers["x-secsipid-reason"] == "div-without-shaken"
    # one value as a string, no numbers to compare
    assert _own(app, "/v1/verify", {"identity": shaken}).json()["valid"] is True


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "missing-parameter"),
        ({"identity": []}, 400, "invalid-parameter"),
        ({"identity": [" "]}, 400, "invalid-parameter"),
        ({"identity": "x", "dest": "1"}, 400, "invalid-parameter"),
        ({"identity": "x", "dest_tn": 5}, 400, "invalid-parameter"),
        (b"\xff", 400, "invalid-json"),
    ],
)
def test_own_verify_refused(app: ServiceApp, body: Any, status: int, code: str) -> None:
    _own_error(_own(app, "/v1/verify", body), status, code)


def test_own_verify_without_verification_configured(key_files: KeyFiles, shaken: str) -> None:
    app = make_app(key_files, cert=None)
    verdict = _own(app, "/v1/verify", {"identity": shaken}).json()
    assert verdict["valid"] is False and verdict["reason"] == "no-trust-anchors"


# -- secsipidx endpoints: secsipidx's behaviour, the library's chains ----------------------------


def test_v1_check_with_a_chain(app: ServiceApp, shaken: str, div: str) -> None:
    """/v1/check takes every Identity value, one a line: "OK" when the chain holds (no call
    target there: the chain is judged from its outermost div), the chain's reason when not."""
    reply = call(app, "POST", "/v1/check", f"{div}\n{shaken}\n".encode())
    assert (reply.status, reply.body) == (200, b"OK\n")
    reply = call(app, "POST", "/v1/check", f"{div}\n".encode())
    assert reply.status == 400
    assert reply.headers["x-secsipid-reason"] == "div-without-shaken"


def test_v1_sign_csv_stays_shaken(app: ServiceApp) -> None:
    """secsipidx's CSV has five fields; more are ignored as secsipidx ignores them: no way
    to ask for div or RCD there."""
    reply = call(app, "POST", "/v1/sign-csv", f"{CALLER},{FIRST},A,,,div,{SECOND}".encode())
    assert reply.status == 200
    assert reply.text.strip().endswith(";ppt=shaken")
    assert "div" not in _claims(reply.text.strip())


def test_openapi_describes_div_and_rcd(app: ServiceApp) -> None:
    doc = call(app, "GET", "/openapi.json").json()
    signing = doc["paths"]["/stir/v1/signing"]["post"]["requestBody"]["content"][
        "application/json"
    ]["schema"]["properties"]["signingRequest"]["properties"]
    assert {"ppt", "div", "original", "rcd", "crn", "rcdi"} <= set(signing)
    verification = doc["paths"]["/stir/v1/verification"]["post"]
    answer = verification["responses"]["200"]["content"]["application/json"]["schema"]
    members = answer["properties"]["verificationResponse"]["properties"]
    assert {"diverted", "chain", "rcd", "crn", "callinfo"} <= set(members)
    sign = doc["paths"]["/v1/sign"]["post"]["requestBody"]["content"]["application/json"]
    from secsipid.service.native import _SIGN_MEMBERS

    assert set(sign["schema"]["properties"]) == set(_SIGN_MEMBERS)
    assert {"ApiError", "ChainHop", "Rcd"} <= set(doc["components"]["schemas"])
