"""The verifier (RFC 8224 §6.2): every reason code end to end, freshness, orig/dest matching,
several Identity headers, Verdicts, robustness properties and the async entry points."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import (
    DEST,
    NOW,
    ORIG,
    ORIGID,
    PARAMS,
    SHAKEN_CLAIMS,
    SHAKEN_HEADER,
    X5U,
    AsyncProbeSource,
    CachingProbeSource,
    KeyFiles,
    LocalProbeSource,
    MakeIdentity,
    ProbeSource,
    assert_error,
    assert_verdict,
    assert_verdict_readable,
)
from secsipid import (
    Credential,
    CredentialFile,
    Failure,
    KeyLoadError,
    Reason,
    Signer,
    StaticCredential,
    Verdict,
    VerificationError,
    VerifiedPassport,
    Verifier,
    VerifyPolicy,
    b64url_encode,
    canonical_json,
    check_identity,
)

SPKI = serialization.PublicFormat.SubjectPublicKeyInfo

# -- the reason table --------------------------------------------------------------------------

# Reason -> (SIP status, phrase, verstat, libsecsipid code): RFC 8224 §6.2.2, ATIS-1000082
# error table (standards.md §9, atis-1000082-api.md §4), secsipidx.md §2.1 codes.
_N, _F, _P = "No-TN-Validation", "TN-Validation-Failed", "TN-Validation-Passed"
EXPECTED_TABLE: dict[Reason, tuple[int, str, str, int]] = {
    Reason.VALID: (0, "", _P, 0),
    Reason.NO_IDENTITY: (428, "Use Identity Header", _N, -1),
    Reason.UNSUPPORTED_PPT: (428, "Use Supported PASSporT Format", _N, -303),
    Reason.TOO_LARGE: (438, "Invalid Identity Header", _N, -301),
    Reason.MALFORMED_IDENTITY: (438, "Invalid Identity Header", _N, -301),
    Reason.COMPACT_FORM: (438, "Invalid Identity Header", _N, -231),
    Reason.MISSING_INFO: (436, "Bad Identity Info", _N, -305),
    Reason.INVALID_INFO: (436, "Bad Identity Info", _N, -305),
    Reason.UNSUPPORTED_ALG: (437, "Unsupported Credential", _N, -202),
    Reason.MALFORMED_TOKEN: (438, "Invalid Identity Header", _N, -301),
    Reason.INVALID_JWS_HEADER: (438, "Invalid Identity Header", _N, -201),
    Reason.UNSUPPORTED_CRIT: (438, "Invalid Identity Header", _N, -201),
    Reason.INVALID_TYP: (437, "Unsupported Credential", _N, -204),
    Reason.PPT_MISMATCH: (438, "Invalid Identity Header", _N, -203),
    Reason.MISSING_X5U: (436, "Bad Identity Info", _N, -205),
    Reason.X5U_MISMATCH: (436, "Bad Identity Info", _N, -205),
    Reason.INVALID_CLAIMS_JSON: (438, "Invalid PASSporT", _N, -231),
    Reason.MISSING_CLAIM: (438, "Invalid PASSporT", _N, -231),
    Reason.INVALID_CLAIM: (438, "Invalid PASSporT", _N, -231),
    Reason.NON_CANONICAL: (438, "Invalid PASSporT", _N, -231),
    Reason.STALE: (403, "Stale Date", _N, -232),
    Reason.IAT_IN_FUTURE: (403, "Stale Date", _N, -232),
    Reason.ORIG_MISMATCH: (438, "Invalid Identity Header", _N, -1),
    Reason.DEST_MISMATCH: (438, "Invalid Identity Header", _N, -1),
    Reason.MALFORMED_SIGNATURE: (438, "Invalid Identity Header", _F, -253),
    Reason.BAD_SIGNATURE: (438, "Invalid Identity Header", _F, -251),
    Reason.UNSUPPORTED_KEY: (437, "Unsupported Credential", _N, -114),
    Reason.KEY_UNAVAILABLE: (500, "Server Internal Error", _N, -451),
    Reason.NO_KEY_SOURCE: (500, "Server Internal Error", _N, -401),
    Reason.INTERNAL_ERROR: (500, "Server Internal Error", _N, -1),
}


# The reasons the core (no certificate fetching) produces; the certificate source adds its own
# (cert-*, tested with the fetcher).
CORE_REASONS = frozenset(EXPECTED_TABLE)


def test_reason_table_as_documented() -> None:
    """Every core Reason has the SIP status, phrase, verstat and libsecsipid code we expect."""
    assert set(Reason) >= CORE_REASONS
    for reason, (status, phrase, verstat, lib) in EXPECTED_TABLE.items():
        assert (reason.sip_status, reason.sip_reason, reason.verstat, reason.lib_code) == (
            status,
            phrase,
            verstat,
            lib,
        ), reason
        assert reason.info.description
        assert reason == reason.value  # StrEnum: compares equal to its code


# -- every reason end to end -------------------------------------------------------------------


class BrokenSource:
    """A credential source with a bug in it."""

    def credential_for(self, info: str) -> Credential:
        raise RuntimeError("boom")


@dataclass
class Case:
    """One way to provoke a reason: Identity value(s), verifier, call arguments."""

    reason: Reason
    value: str | list[str]
    verifier: Verifier
    kwargs: dict[str, Any] = field(default_factory=dict)
    lib_code: int | None = None  # None: the reason's own code
    key_path: str | None = None  # check_identity(value, key_path); None: not expressible


@dataclass
class Env:
    verifier: Verifier
    identity: str
    make: MakeIdentity
    files: KeyFiles
    p384_pub: Path
    private_pem: Path
    missing: Path


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory,
    verifier: Verifier,
    identity: str,
    make_identity: MakeIdentity,
    key_files: KeyFiles,
) -> Env:
    d = tmp_path_factory.mktemp("reasons")
    p384 = d / "p384.pem"
    p384.write_bytes(
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, SPKI)
    )
    return Env(
        verifier, identity, make_identity, key_files, p384, key_files.key_pem, d / "nope.pem"
    )


def _token(value: str) -> str:
    return value.split(";", 1)[0]


CaseFactory = Callable[[Env], Case]
PUB = "pub"  # marker: check_identity with the session public key file


def _cases() -> dict[str, CaseFactory]:
    R = Reason  # noqa: N806
    v = lambda e: e.verifier  # noqa: E731
    return {
        "no-identity-empty": lambda e: Case(R.NO_IDENTITY, "", v(e), key_path=PUB),
        "no-identity-list": lambda e: Case(R.NO_IDENTITY, ["", " "], v(e), key_path=PUB),
        "unsupported-ppt": lambda e: Case(
            # rph (RFC 8443): a PASSporT type this verifier does not support (div and rcd are)
            R.UNSUPPORTED_PPT,
            e.identity.replace("ppt=shaken", "ppt=rph"),
            v(e),
            key_path=PUB,
        ),
        "unsupported-ppt-quoted": lambda e: Case(
            R.UNSUPPORTED_PPT, e.identity.replace("ppt=shaken", 'ppt="rph"'), v(e), key_path=PUB
        ),
        "too-large-value": lambda e: Case(
            R.TOO_LARGE, e.identity + ";x=" + "a" * 8192, v(e), key_path=PUB
        ),
        "too-many-values": lambda e: Case(R.TOO_LARGE, [e.identity] * 17, v(e), key_path=PUB),
        "malformed-identity": lambda e: Case(
            R.MALFORMED_IDENTITY, e.identity + ";alg=ES256", v(e), key_path=PUB
        ),
        "malformed-identity-no-token": lambda e: Case(
            R.MALFORMED_IDENTITY, PARAMS, v(e), key_path=PUB
        ),
        "compact-form": lambda e: Case(
            R.COMPACT_FORM, ".." + _token(e.identity).split(".")[2] + PARAMS, v(e), key_path=PUB
        ),
        "missing-info": lambda e: Case(
            R.MISSING_INFO, _token(e.identity) + ";alg=ES256;ppt=shaken", v(e), key_path=PUB
        ),
        # libsecsipid: a bare JWT without any parameter is -301 (secsipidx.md §4.2).
        "missing-info-bare-token": lambda e: Case(
            R.MISSING_INFO, _token(e.identity), v(e), lib_code=-301, key_path=PUB
        ),
        "invalid-info": lambda e: Case(
            R.INVALID_INFO, _token(e.identity) + ";info=<sti.pem>;ppt=shaken", v(e), key_path=PUB
        ),
        "unsupported-alg-param": lambda e: Case(
            R.UNSUPPORTED_ALG,
            e.identity.replace("alg=ES256", "alg=ES384"),
            v(e),
            lib_code=-302,
            key_path=PUB,
        ),
        "unsupported-alg-header": lambda e: Case(
            R.UNSUPPORTED_ALG,
            e.make(
                header=canonical_json({**SHAKEN_HEADER, "alg": "none"}),
                claims=canonical_json(SHAKEN_CLAIMS),
                raw=True,
            ),
            v(e),
            key_path=PUB,
        ),
        "malformed-token": lambda e: Case(
            R.MALFORMED_TOKEN, "abc.def" + PARAMS, v(e), key_path=PUB
        ),
        "malformed-token-header-b64": lambda e: Case(
            R.MALFORMED_TOKEN, "ab+c" + e.identity[4:], v(e), lib_code=-201, key_path=PUB
        ),
        "invalid-jws-header": lambda e: Case(
            R.INVALID_JWS_HEADER,
            e.make(header=b"[]", claims=canonical_json(SHAKEN_CLAIMS), raw=True),
            v(e),
            key_path=PUB,
        ),
        "unsupported-crit": lambda e: Case(
            R.UNSUPPORTED_CRIT,
            e.make(
                header=canonical_json({**SHAKEN_HEADER, "crit": ["foo"]}),
                claims=canonical_json(SHAKEN_CLAIMS),
                raw=True,
            ),
            v(e),
            key_path=PUB,
        ),
        "invalid-typ": lambda e: Case(
            R.INVALID_TYP, e.make(update={"typ": "JWT"}), v(e), key_path=PUB
        ),
        "ppt-mismatch": lambda e: Case(
            R.PPT_MISMATCH, e.make(update={"ppt": "div"}), v(e), key_path=PUB
        ),
        "missing-x5u": lambda e: Case(R.MISSING_X5U, e.make(drop=("x5u",)), v(e), key_path=PUB),
        "x5u-mismatch": lambda e: Case(
            R.X5U_MISMATCH, e.make(update={"x5u": "https://evil.example/c.pem"}), v(e), key_path=PUB
        ),
        "invalid-claims-json": lambda e: Case(
            R.INVALID_CLAIMS_JSON,
            e.make(header=canonical_json(SHAKEN_HEADER), claims=b'{"a":1,"a":1}', raw=True),
            v(e),
            key_path=PUB,
        ),
        "missing-claim": lambda e: Case(
            R.MISSING_CLAIM, e.make(drop_claims=("origid",)), v(e), key_path=PUB
        ),
        "invalid-claim": lambda e: Case(
            R.INVALID_CLAIM, e.make(claims_update={"iat": str(NOW)}), v(e), key_path=PUB
        ),
        "non-canonical": lambda e: Case(
            R.NON_CANONICAL,
            e.make(claims=json.dumps(SHAKEN_CLAIMS)),
            Verifier(e.verifier.source, policy=VerifyPolicy(strict=True)),
        ),
        "stale": lambda e: Case(R.STALE, e.identity, v(e), kwargs={"now": NOW + 301}, key_path=PUB),
        "iat-in-future": lambda e: Case(
            R.IAT_IN_FUTURE, e.identity, v(e), kwargs={"now": NOW - 6}, key_path=PUB
        ),
        "orig-mismatch": lambda e: Case(
            R.ORIG_MISMATCH, e.identity, v(e), kwargs={"orig_tn": "12155550199"}, key_path=PUB
        ),
        "dest-mismatch": lambda e: Case(
            R.DEST_MISMATCH, e.identity, v(e), kwargs={"dest_tn": "12155550199"}, key_path=PUB
        ),
        "malformed-signature": lambda e: Case(
            R.MALFORMED_SIGNATURE,
            _token(e.identity)[:-2] + PARAMS,  # 84 characters: 63 bytes
            v(e),
            key_path=PUB,
        ),
        "malformed-signature-alphabet": lambda e: Case(
            R.MALFORMED_SIGNATURE,
            _token(e.identity)[:-3] + "+" + _token(e.identity)[-2:] + PARAMS,
            v(e),
            lib_code=-255,
            key_path=PUB,
        ),
        "bad-signature": lambda e: Case(
            R.BAD_SIGNATURE,
            e.identity.replace(
                _token(e.identity).split(".")[1],
                b64url_encode(canonical_json({**SHAKEN_CLAIMS, "attest": "B"})),
            ),
            v(e),
            key_path=PUB,
        ),
        "unsupported-key": lambda e: Case(
            R.UNSUPPORTED_KEY,
            e.identity,
            Verifier(CredentialFile(e.p384_pub)),
            key_path=str(e.p384_pub),
        ),
        "key-unavailable-missing": lambda e: Case(
            R.KEY_UNAVAILABLE, e.identity, Verifier(str(e.missing)), key_path=str(e.missing)
        ),
        "key-unavailable-private": lambda e: Case(
            R.KEY_UNAVAILABLE,
            e.identity,
            Verifier(e.private_pem),
            lib_code=-102,
            key_path=str(e.private_pem),
        ),
        "no-key-source": lambda e: Case(R.NO_KEY_SOURCE, e.identity, Verifier()),
        "internal-error": lambda e: Case(R.INTERNAL_ERROR, e.identity, Verifier(BrokenSource())),
    }


CASES = _cases()
# Request-level outcomes (no value, too many values) exist only for check(); a source's own
# exception passes through verify() (see test_internal_error_is_not_swallowed_by_verify).
NOT_VIA_VERIFY = frozenset(
    {"no-identity-empty", "no-identity-list", "too-many-values", "internal-error"}
)
VIA_VERIFY = [name for name in CASES if name not in NOT_VIA_VERIFY]
# check_identity(value, key_path) has no strict mode and no custom source; with an empty
# key_path it uses the certificate fetcher (tested with the fetcher).
VIA_CHECK_IDENTITY = [
    n for n in CASES if n not in ("non-canonical", "internal-error", "no-key-source")
]


def test_every_failure_reason_has_a_case(env: Env) -> None:
    """The case table provokes every core Reason except VALID."""
    assert {factory(env).reason for factory in CASES.values()} == CORE_REASONS - {Reason.VALID}


def _expected_lib(case: Case) -> int:
    return case.reason.lib_code if case.lib_code is None else case.lib_code


def _check_case_verdict(verdict: Verdict, case: Case) -> None:
    assert isinstance(verdict, Verdict)
    assert_verdict(verdict, case.reason)
    assert verdict.lib_code == _expected_lib(case)
    assert verdict.passport is None
    if case.reason in (Reason.NO_IDENTITY,) or isinstance(case.value, list):
        return
    assert verdict.index == 0
    assert verdict.failures == (Failure(0, case.reason, verdict.message, _expected_lib(case)),)


def _call_kwargs(case: Case) -> dict[str, Any]:
    return {"now": NOW, **case.kwargs}


@pytest.mark.parametrize("name", VIA_VERIFY)
def test_reason_via_verify(env: Env, name: str) -> None:
    """Verifier.verify raises VerificationError with the reason and its mapping."""
    case = CASES[name](env)
    assert isinstance(case.value, str)
    with pytest.raises(VerificationError) as exc:
        case.verifier.verify(case.value, **_call_kwargs(case))
    assert_error(exc.value, case.reason)
    assert exc.value.lib_code == _expected_lib(case)


@pytest.mark.parametrize("name", list(CASES))
def test_reason_via_check(env: Env, name: str) -> None:
    """Verifier.check returns a failed Verdict with reason, SIP status/phrase, verstat, lib code."""
    case = CASES[name](env)
    _check_case_verdict(case.verifier.check(case.value, **_call_kwargs(case)), case)


@pytest.mark.parametrize("name", list(CASES))
def test_reason_via_async(env: Env, name: str) -> None:
    """acheck/averify give the same outcome as check/verify."""
    case = CASES[name](env)
    kw = _call_kwargs(case)
    verdict = asyncio.run(case.verifier.acheck(case.value, **kw))
    _check_case_verdict(verdict, case)
    assert verdict == case.verifier.check(case.value, **kw)
    if name in VIA_VERIFY:
        assert isinstance(case.value, str)
        with pytest.raises(VerificationError) as exc:
            asyncio.run(case.verifier.averify(case.value, **kw))
        assert_error(exc.value, case.reason)
        assert exc.value.lib_code == _expected_lib(case)


@pytest.mark.parametrize("name", VIA_CHECK_IDENTITY)
def test_reason_via_check_identity(env: Env, name: str) -> None:
    """check_identity(value, key_path) gives the same Verdict as the Verifier."""
    case = CASES[name](env)
    assert case.key_path is not None
    key_path = str(env.files.pub_pem) if case.key_path == PUB else case.key_path
    verdict = check_identity(case.value, key_path, **_call_kwargs(case))
    _check_case_verdict(verdict, case)


def test_internal_error_is_not_swallowed_by_verify(env: Env) -> None:
    """verify lets a credential source's own exception through; check turns it into a 500
    internal-error Verdict and never passes."""
    v = Verifier(BrokenSource())
    with pytest.raises(RuntimeError, match="boom"):
        v.verify(env.identity, now=NOW)
    verdict = v.check(env.identity, now=NOW)
    assert not verdict
    assert verdict.reason is Reason.INTERNAL_ERROR
    assert verdict.sip_status == 500
    assert "RuntimeError" in verdict.message


def test_examination_messages(
    verifier: Verifier, make_identity: MakeIdentity, identity: str
) -> None:
    """Each refusal of the PASSporT says what it found (RFC 8224 §6.2 steps 1-5)."""
    info = "https://other.example/c.pem"
    h, _, s = _token(identity).split(".")
    hs256 = canonical_json({**SHAKEN_HEADER, "alg": "HS256"})
    cases = [
        (make_identity(header=hs256, claims=canonical_json(SHAKEN_CLAIMS), raw=True),
         "PASSporT alg 'HS256' is not ES256"),
        (make_identity(update={"typ": "JWT"}), "PASSporT typ 'JWT' is not passport"),
        (make_identity(update={"ppt": "div"}),
         "PASSporT ppt 'div' is not shaken (Identity ppt parameter 'shaken')"),
        (make_identity(drop=("x5u",)), "PASSporT header has no x5u"),
        (make_identity(update={"x5u": info}), f"x5u {info!r} differs from info {X5U!r}"),
        (make_identity(claims_update={"iat": NOW - 301}), "iat is 301 s old, over the 300 s limit"),
        (make_identity(claims_update={"iat": NOW + 6}),
         "iat is 6 s in the future, over the 5 s skew"),
        (f"{h}.{b64url_encode(canonical_json({**SHAKEN_CLAIMS, 'attest': 'B'}))}.{s}{PARAMS}",
         "the ES256 signature does not verify"),
    ]  # fmt: skip
    for value, message in cases:
        assert verifier.check(value, now=NOW).message == message


def test_internal_errors_are_logged(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    """A bug (an unexpected exception) is logged with its traceback for the operator."""
    with caplog.at_level("ERROR", logger="secsipid"):
        verdict = Verifier(BrokenSource()).check(env.identity, now=NOW)
    assert verdict.reason is Reason.INTERNAL_ERROR
    (record,) = caplog.records
    assert record.getMessage() == "secsipid: unexpected error verifying an Identity header"
    assert record.exc_info is not None and record.exc_info[0] is RuntimeError


def test_unusable_key_argument_names_its_type() -> None:
    """Verifier(key) with something that is not a key, certificate, path or source."""
    with pytest.raises(TypeError, match=r"^cannot verify with a int$"):
        Verifier(123)  # type: ignore[arg-type]


def test_trust_policy_uses_the_sources_fetcher(
    tmp_path: Path, public_key: ec.EllipticCurvePublicKey
) -> None:
    """Verifier(source, trust=TrustPolicy(...)) fetches CRLs with the source's fetcher (its
    fetch policy: here loopback allowed), like the source's own trust would."""
    from fetchkit import CertServer
    from secsipid import Fetcher, FetchPolicy, TrustPolicy
    from secsipid._pki import make_crl, make_lab_pki, pem

    published = tmp_path / "ca.crl"
    server = CertServer(tmp_path / "srv", {"/ca.crl": {"body_file": str(published)}}, None)
    try:
        pki = make_lab_pki(crl_url=server.url("/ca.crl"))
        published.write_bytes(
            make_crl(pki.intermediate, pki.intermediate_key, [pki.leaf.serial_number])
            .public_bytes(serialization.Encoding.DER)
        )  # fmt: skip
        root = tmp_path / "root.pem"
        root.write_bytes(pem(pki.root))

        class SourceWithFetcher:
            fetcher = Fetcher(FetchPolicy(allow_private=True))

            def credential_for(self, info: str) -> Credential:
                return Credential.from_certificates([pki.leaf, pki.intermediate])

        verifier = Verifier(
            SourceWithFetcher(), trust=TrustPolicy(ca_file=str(root), fetch_crls=True)
        )
        value = Signer(pki.leaf_key, X5U).identity(ORIG, DEST, "A")
        assert verifier.check(value).reason is Reason.CERT_REVOKED
        assert server.hits()["/ca.crl"] == 1
    finally:
        server.stop()


def test_verify_empty_value_is_malformed(verifier: Verifier) -> None:
    """verify('') (a single empty value) is malformed-identity; no-identity is per request."""
    with pytest.raises(VerificationError) as exc:
        verifier.verify("", now=NOW)
    assert exc.value.reason is Reason.MALFORMED_IDENTITY


def test_error_carries_decoded_header_and_claims(verifier: Verifier, identity: str) -> None:
    """A failure after decoding keeps the header and claims (for logs / CLI --json)."""
    with pytest.raises(VerificationError) as exc:
        verifier.verify(identity, now=NOW + 1000)
    assert exc.value.header == SHAKEN_HEADER
    assert exc.value.claims == SHAKEN_CLAIMS
    verdict = verifier.check(identity, now=NOW + 1000)
    assert verdict.header == SHAKEN_HEADER
    assert verdict.claims == SHAKEN_CLAIMS
    with pytest.raises(VerificationError) as exc:
        verifier.verify("x" + PARAMS, now=NOW)
    assert exc.value.header == {}
    assert exc.value.claims == {}


# -- Identity parameters at the verifier -------------------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        f";info=<{X5U}>;alg=ES256;ppt=shaken",
        f";info=<{X5U}>;ppt=shaken",  # alg defaults to ES256 (RFC 8224 §4.1)
        f";info=<{X5U}>",  # no ppt: lenient default
        f";info={X5U};alg=ES256;ppt=shaken",  # no angle brackets
        f';info=<{X5U}>;alg=ES256;ppt="shaken"',  # quoted ppt
        f" ; INFO = <{X5U}> ;\r\n ALG=ES256 ; PPT=shaken ; foo=bar ; baz",
        f";ppt=shaken;alg=ES256;info=<{X5U}>",  # any order
    ],
)
def test_accepted_identity_params(verifier: Verifier, identity: str, params: str) -> None:
    """Parameter spellings seen in the field all verify."""
    verdict = verifier.check(_token(identity) + params, now=NOW)
    assert verdict.ok, verdict.message


@pytest.mark.parametrize("params", [";info=<X>;alg=ES256;ppt=SHAKEN", ";info=<X>;alg=es256"])
def test_param_token_values_case_insensitive(
    verifier: Verifier, identity: str, params: str
) -> None:
    """RFC 8224 §4 makes alg and ppt values tokens, and RFC 3261 §7.3.1 says "Tokens are always
    case-insensitive": ppt=SHAKEN and alg=es256 name the supported values."""
    verdict = verifier.check(_token(identity) + params.replace("X", X5U), now=NOW)
    assert verdict.ok, (verdict.reason, verdict.message)


@pytest.mark.parametrize("alg", ["ES384", "RS256", "none", "HS256", ""])
def test_alg_param_not_es256(verifier: Verifier, identity: str, alg: str) -> None:
    """An Identity alg parameter other than ES256: unsupported-alg with lib code -302."""
    value = identity.replace("alg=ES256", f"alg={alg}")
    with pytest.raises(VerificationError) as exc:
        verifier.verify(value, now=NOW)
    assert exc.value.reason is Reason.UNSUPPORTED_ALG
    assert exc.value.lib_code == -302


@pytest.mark.parametrize("info", ["", "<>", "< >", "cert.pem", "<cert.pem>", "</a/b>", "<://x>"])
def test_bad_info_values(verifier: Verifier, identity: str, info: str) -> None:
    """An empty info is missing-info; a relative reference is invalid-info (both 436)."""
    value = identity.replace(f"info=<{X5U}>", f"info={info}")
    verdict = verifier.check(value, now=NOW)
    assert verdict.reason in (Reason.MISSING_INFO, Reason.INVALID_INFO)
    assert verdict.sip_status == 436
    expected = Reason.MISSING_INFO if info.strip("<> ") == "" else Reason.INVALID_INFO
    assert verdict.reason is expected


# -- freshness ---------------------------------------------------------------------------------


def test_freshness_boundaries_default_policy(verifier: Verifier, identity: str) -> None:
    """expire 300 s: iat exactly 300 s old passes, 301 s is stale (403 Stale Date)."""
    assert verifier.check(identity, now=NOW + 300).ok
    assert verifier.check(identity, now=NOW + 300.999).ok  # whole seconds
    verdict = verifier.check(identity, now=NOW + 301)
    assert_verdict(verdict, Reason.STALE)
    assert (verdict.sip_status, verdict.sip_reason) == (403, "Stale Date")


def test_future_skew_boundaries(verifier: Verifier, identity: str) -> None:
    """iat up to future_skew (5 s) ahead passes; 6 s ahead is iat-in-future (403)."""
    assert verifier.check(identity, now=NOW - 5).ok
    verdict = verifier.check(identity, now=NOW - 6)
    assert_verdict(verdict, Reason.IAT_IN_FUTURE)
    assert verdict.sip_status == 403


@pytest.mark.parametrize(("expire", "skew"), [(60, 0), (0, 0), (3600, 30)])
def test_freshness_policy(
    public_key: ec.EllipticCurvePublicKey, identity: str, expire: int, skew: int
) -> None:
    """expire/future_skew are honoured exactly at their boundaries."""
    v = Verifier(public_key, policy=VerifyPolicy(expire=expire, future_skew=skew))
    assert v.check(identity, now=NOW + expire).ok
    assert v.check(identity, now=NOW + expire + 1).reason is Reason.STALE
    assert v.check(identity, now=NOW - skew).ok
    assert v.check(identity, now=NOW - skew - 1).reason is Reason.IAT_IN_FUTURE


def test_check_identity_expire(key_files: KeyFiles, identity: str) -> None:
    """check_identity(expire=) sets the window; a negative expire is a ValueError."""
    assert check_identity(identity, key_files.pub_pem, expire=60, now=NOW + 60).ok
    assert check_identity(identity, key_files.pub_pem, expire=60, now=NOW + 61).reason == "stale"
    assert check_identity(identity, key_files.pub_pem, now=NOW + 300).ok  # default 300
    with pytest.raises(ValueError):
        check_identity(identity, key_files.pub_pem, expire=-1)


def test_stale_checked_before_signature(verifier: Verifier, identity: str) -> None:
    """A stale token with a bad signature reports stale (freshness is Step 4, before Step 5)."""
    token = _token(identity)
    value = token[:-5] + ("AAAAA" if token[-5:] != "AAAAA" else "BBBBA") + PARAMS
    assert verifier.check(value, now=NOW).reason is Reason.BAD_SIGNATURE
    assert verifier.check(value, now=NOW + 1000).reason is Reason.STALE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"expire": -1},
        {"future_skew": -1},
        {"max_identity_size": -1},
        {"expire": 1.5},
        {"expire": True},
    ],
)
def test_policy_validation(kwargs: dict[str, Any]) -> None:
    """VerifyPolicy refuses negative or non-int values."""
    with pytest.raises(ValueError):
        VerifyPolicy(**kwargs)


@pytest.mark.parametrize("timeout", [0, -1, 0.0, 300.001, 301, "5", True, float("nan")])
def test_policy_timeout_validation(timeout: Any) -> None:
    """The request budget is a number of seconds in (0, 300]; anything else is refused,
    saying which setting and what value."""
    with pytest.raises(ValueError) as exc:
        VerifyPolicy(timeout=timeout)
    assert str(exc.value) == f"VerifyPolicy.timeout must be in (0, 300] seconds, not {timeout!r}"


@pytest.mark.parametrize("timeout", [None, 0.001, 1, 5.0, 300, 300.0])
def test_policy_timeout_accepted(timeout: float | None) -> None:
    assert VerifyPolicy(timeout=timeout).timeout == timeout


def test_policy_validation_message() -> None:
    with pytest.raises(ValueError) as exc:
        VerifyPolicy(max_identities=-2)
    assert str(exc.value) == "VerifyPolicy.max_identities must be a non-negative int, not -2"


def test_policy_defaults_and_immutability() -> None:
    """Defaults follow Kamailio (expire 300 s) and the policy is frozen."""
    p = VerifyPolicy()
    assert (p.expire, p.future_skew, p.strict) == (300, 5, False)
    assert p.max_identity_size == 8192
    with pytest.raises(AttributeError):
        p.expire = 60  # type: ignore[misc]


# -- orig / dest matching ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "orig",
    [
        ORIG,
        "+1 (215) 555-0121",
        "+1-215-555-0121",
        "sip:+12155550121@example.com;user=phone",
        "sip:+1-215-555-0121;npdi@example.com",
        "tel:+1-215-555-0121;phone-context=example.com",
        '"Alice" <sip:+12155550121@example.com>;tag=1928301774',
    ],
)
def test_orig_matches(verifier: Verifier, identity: str, orig: str) -> None:
    """orig_tn in any SIP notation matches the canonical orig claim (RFC 8224 §6.2 Step 2)."""
    assert verifier.check(identity, orig_tn=orig, now=NOW).ok


@pytest.mark.parametrize(
    "orig",
    ["12155550122", "2155550121", "sip:alice@example.com", "", "+1 215 555 012"],
)
def test_orig_mismatch(verifier: Verifier, identity: str, orig: str) -> None:
    """Another number, a national form (no country code guessed), or a non-TN: orig-mismatch,
    and the message names the calling party as the verifier understood it."""
    verdict = verifier.check(identity, orig_tn=orig, now=NOW)
    assert_verdict(verdict, Reason.ORIG_MISMATCH)
    want = {"sip:alice@example.com": "sip:alice@example.com", "": "(no number)"}.get(orig)
    if want is not None:
        assert verdict.message == (
            f"orig {ORIG} in the PASSporT is not the calling party {want} "
            "(canonical forms compared)"
        )


@pytest.mark.parametrize(
    "dest",
    [
        DEST,
        "+1 215 555 0131",
        "sip:+12155550131@example.com",
        "tel:+12155550131",
        ["sip:+19995550000@example.com", "tel:+1-215-555-0131"],  # To and Request-URI
        ("12155550131",),
    ],
)
def test_dest_matches(verifier: Verifier, identity: str, dest: str | list[str]) -> None:
    """dest_tn (one or several, e.g. To and R-URI) matches when any one is in dest.tn."""
    assert verifier.check(identity, dest_tn=dest, now=NOW).ok


@pytest.mark.parametrize("dest", ["12155550132", [], ["1", "2"], "sip:bob@example.com"])
def test_dest_mismatch(verifier: Verifier, identity: str, dest: str | list[str]) -> None:
    """No dest_tn in the dest claim: dest-mismatch."""
    assert_verdict(verifier.check(identity, dest_tn=dest, now=NOW), Reason.DEST_MISMATCH)


def test_multi_dest_claim(signer: Signer, verifier: Verifier) -> None:
    """A PASSporT for several destinations matches any of them."""
    value = signer.identity(ORIG, ["12155550131", "12155550132"], "A", iat=NOW)
    for dest in ("12155550131", "+1 215 555 0132"):
        assert verifier.check(value, orig_tn=ORIG, dest_tn=dest, now=NOW).ok
    assert verifier.check(value, dest_tn="12155550133", now=NOW).reason is Reason.DEST_MISMATCH


@pytest.mark.parametrize(
    ("dest", "want"),
    [
        ("12155550199", "12155550199"),
        (["12155550199", "sip:Carol@Example.org;user=phone"], "12155550199, sip:carol@example.org"),
        ("alice", "(no number)"),  # neither a number nor a SIP URI: nothing to compare
    ],
)
def test_dest_mismatch_message_names_both_sides(
    verifier: Verifier, make_identity: MakeIdentity, dest: str | list[str], want: str
) -> None:
    """The dest-mismatch message lists every tn and uri of the PASSporT and every canonical
    called number/URI it was compared with: what an operator needs to see the mismatch."""
    value = make_identity(
        claims_update={
            "dest": {"tn": ["12155550131", "12155550132"], "uri": ["sip:bob@example.org"]}
        }
    )
    verdict = verifier.check(value, dest_tn=dest, now=NOW)
    assert verdict.reason is Reason.DEST_MISMATCH
    assert verdict.message == (
        "dest 12155550131, 12155550132, sip:bob@example.org in the PASSporT does not include "
        f"the called party {want} (canonical forms compared)"
    )


def test_uri_identities_match(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """orig/dest uri claims are compared in RFC 8224 §8.5 canonical form."""
    value = make_identity(
        claims_update={
            "orig": {"uri": "sip:Alice@Example.com"},
            "dest": {"uri": ["sip:bob@example.com"]},
        }
    )
    ok = verifier.check(
        value,
        orig_tn='"A" <sip:alice:pw@EXAMPLE.com:5060;transport=tcp>',
        dest_tn="sip:Bob@example.com;user=x?h=1",
        now=NOW,
    )
    assert ok.ok, ok.message
    bad = verifier.check(value, orig_tn="sip:mallory@example.com", now=NOW)
    assert bad.reason is Reason.ORIG_MISMATCH
    bad = verifier.check(value, dest_tn="sip:carol@example.com", now=NOW)
    assert bad.reason is Reason.DEST_MISMATCH


def test_orig_checked_before_dest(verifier: Verifier, identity: str) -> None:
    """Both wrong: orig-mismatch is reported; only one given: only that one is checked."""
    verdict = verifier.check(identity, orig_tn="1", dest_tn="2", now=NOW)
    assert verdict.reason is Reason.ORIG_MISMATCH
    assert verifier.check(identity, dest_tn=DEST, now=NOW).ok
    assert verifier.check(identity, orig_tn=ORIG, now=NOW).ok


def test_mismatch_messages_show_the_claim(verifier: Verifier, make_identity: MakeIdentity,
                                          identity: str) -> None:  # fmt: skip
    """The refusal shows what the PASSporT claimed (number, URI or dest object)."""
    verdict = verifier.check(identity, orig_tn="12155550122", now=NOW)
    assert verdict.message == (
        "orig 12155550121 in the PASSporT is not the calling party 12155550122 "
        "(canonical forms compared)"
    )
    value = make_identity(claims_update={"orig": {"uri": "sip:alice@example.com"},
                                         "dest": {"uri": ["sip:bob@example.com"]}})  # fmt: skip
    verdict = verifier.check(value, orig_tn="sip:mallory@example.com", now=NOW)
    assert verdict.message == (
        "orig sip:alice@example.com in the PASSporT is not the calling party "
        "sip:mallory@example.com (canonical forms compared)"
    )
    verdict = verifier.check(identity, dest_tn="12155550132", now=NOW)
    assert verdict.message == (
        "dest 12155550131 in the PASSporT does not include the called party 12155550132 "
        "(canonical forms compared)"
    )
    # A URI dest claim checked against a number: a mismatch, not an error.
    verdict = verifier.check(value, dest_tn="12155550131", now=NOW)
    assert verdict.reason is Reason.DEST_MISMATCH, verdict.message


def test_wrong_argument_types_name_the_type(verifier: Verifier) -> None:
    """verify/averify take one Identity value as str: anything else is a programmer error
    that says what it got."""
    with pytest.raises(TypeError, match=r"^identity must be str, not list$"):
        verifier.verify(["x"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"^identity must be str, not bytes$"):
        asyncio.run(verifier.averify(b"x"))  # type: ignore[arg-type]


def test_no_key_source_message(identity: str) -> None:
    """A Verifier without key or source says so (500: a configuration problem)."""
    for verdict in (Verifier().check(identity, now=NOW),
                    asyncio.run(Verifier().acheck(identity, now=NOW))):  # fmt: skip
        assert_verdict(verdict, Reason.NO_KEY_SOURCE)
        assert verdict.message == "no key, certificate or certificate source is configured"


def test_async_uses_a_sync_source_per_info(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """A source without acredential_for is asked, from averify/acheck, for the info URL of
    the header at hand; the VerifiedPassport keeps that header."""
    other = ec.generate_private_key(ec.SECP256R1())
    keys = {
        X5U: Credential(public_key),
        "https://other.example/c.pem": Credential(other.public_key()),
    }

    class BySource:
        def credential_for(self, info: str) -> Credential:
            return keys[info]

    verifier = Verifier(BySource())
    for key, url in ((signer.key, X5U), (other, "https://other.example/c.pem")):
        value = Signer(key, url).identity(ORIG, DEST, "A", ORIGID, iat=NOW)
        passport = asyncio.run(verifier.averify(value, now=NOW))
        assert passport.info == url and passport.identity.info == url
        assert asyncio.run(verifier.acheck(value, now=NOW)).ok


# -- several Identity headers ------------------------------------------------------------------


@pytest.fixture(scope="module")
def bad(identity: str, make_identity: MakeIdentity) -> dict[str, str]:
    """Identity values that fail with a known status."""
    token = _token(identity)
    h, _, s = token.split(".")
    other_claims = b64url_encode(canonical_json({**SHAKEN_CLAIMS, "attest": "C"}))
    return {
        "438-sig": f"{h}.{other_claims}.{s}{PARAMS}",
        "438-claim": make_identity(claims_update={"attest": "Z"}),
        "437-alg": identity.replace("alg=ES256", "alg=ES384"),
        "436-info": token + ";alg=ES256;ppt=shaken",
        "436-x5u": make_identity(update={"x5u": "https://other.example/c.pem"}),
        "428-ppt": identity.replace("ppt=shaken", "ppt=rph"),  # RFC 8443, not supported
        "403-stale": make_identity(claims_update={"iat": NOW - 1000}),
        "malformed": "garbage;;",
    }


def test_one_valid_among_invalid(verifier: Verifier, identity: str, bad: dict[str, str]) -> None:
    """RFC 8224 §6.2.1: valid if any one Identity is valid; failures lists the others."""
    values = [bad["438-sig"], bad["436-info"], identity, bad["malformed"]]
    verdict = verifier.check(values, now=NOW)
    assert verdict.ok
    assert verdict.index == 2
    assert verdict.reason is Reason.VALID
    assert isinstance(verdict.passport, VerifiedPassport)
    assert [(f.index, f.reason) for f in verdict.failures] == [
        (0, Reason.BAD_SIGNATURE),
        (1, Reason.MISSING_INFO),
    ]


def test_valid_first_stops(verifier: Verifier, identity: str, bad: dict[str, str]) -> None:
    """The first valid value wins; values after it are not examined."""
    verdict = verifier.check([identity, bad["438-sig"]], now=NOW)
    assert verdict.ok
    assert verdict.index == 0
    assert verdict.failures == ()


def test_comma_joined_and_header_lines(
    verifier: Verifier, identity: str, bad: dict[str, str]
) -> None:
    """Comma-joined values and 'Identity:'/'y:' header lines are split before checking."""
    assert verifier.check(f"{bad['436-info']}, {identity}", now=NOW).index == 1
    lines = [f"Identity: {bad['438-sig']}", f"y: {identity}"]
    verdict = verifier.check(lines, now=NOW)
    assert verdict.ok
    assert verdict.index == 1


def test_unsupported_ppt_ignored(verifier: Verifier, identity: str, bad: dict[str, str]) -> None:
    """RFC 8224 §6.2 Step 1: an unsupported ppt header is ignored, the others decide."""
    verdict = verifier.check([bad["428-ppt"], identity], now=NOW)
    assert verdict.ok
    assert verdict.index == 1
    verdict = verifier.check([bad["428-ppt"], bad["436-info"]], now=NOW)
    assert verdict.reason is Reason.MISSING_INFO
    assert verdict.index == 1
    assert [f.reason for f in verdict.failures] == [Reason.UNSUPPORTED_PPT, Reason.MISSING_INFO]


def test_only_unsupported_ppt_is_428(verifier: Verifier, bad: dict[str, str]) -> None:
    """Only unsupported-ppt headers: 428 'Use Supported PASSporT Format', No-TN-Validation."""
    verdict = verifier.check([bad["428-ppt"], bad["428-ppt"]], now=NOW)
    assert_verdict(verdict, Reason.UNSUPPORTED_PPT)
    assert (verdict.sip_status, verdict.sip_reason) == (428, "Use Supported PASSporT Format")
    assert verdict.verstat == "No-TN-Validation"
    assert verdict.index == 0


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["436-info", "438-sig"], Reason.BAD_SIGNATURE),  # 436 only if all failed to fetch
        (["438-sig", "436-info"], Reason.BAD_SIGNATURE),
        (["436-x5u", "437-alg"], Reason.UNSUPPORTED_ALG),  # 437 before 436
        (["437-alg", "436-info"], Reason.UNSUPPORTED_ALG),
        (["436-info", "436-x5u"], Reason.MISSING_INFO),  # tie: the first one
        (["436-x5u", "436-info"], Reason.X5U_MISMATCH),
        (["403-stale", "437-alg"], Reason.STALE),  # a PASSporT examined: 403 before 437
        (["403-stale", "438-claim"], Reason.INVALID_CLAIM),  # 438 before 403
        (["428-ppt", "403-stale"], Reason.STALE),
        (["malformed", "428-ppt"], Reason.MALFORMED_IDENTITY),
        (["428-ppt", "436-info", "437-alg", "403-stale", "438-sig"], Reason.BAD_SIGNATURE),
    ],
)
def test_best_failure(
    verifier: Verifier, bad: dict[str, str], names: list[str], expected: Reason
) -> None:
    """RFC 8224 §6.2.2: the most specific failure is reported (438/403, then 437, then 436)."""
    verdict = verifier.check([bad[n] for n in names], now=NOW)
    assert_verdict(verdict, expected)
    assert len(verdict.failures) == len(names)
    assert verdict.failures[verdict.index].reason is expected


def test_max_identities(public_key: ec.EllipticCurvePublicKey, identity: str) -> None:
    """More values than max_identities: too-large before any is examined."""
    v = Verifier(public_key, policy=VerifyPolicy(max_identities=2))
    assert v.check([identity, identity], now=NOW).ok
    verdict = v.check([identity] * 3, now=NOW)
    assert_verdict(verdict, Reason.TOO_LARGE)
    assert verdict.failures == ()


def test_max_identity_size_policy(public_key: ec.EllipticCurvePublicKey, identity: str) -> None:
    """VerifyPolicy.max_identity_size caps each value: at the limit fine, one over too-large."""
    v = Verifier(public_key, policy=VerifyPolicy(max_identity_size=len(identity)))
    assert v.check(identity, now=NOW).ok
    v = Verifier(public_key, policy=VerifyPolicy(max_identity_size=len(identity) - 1))
    assert_verdict(v.check(identity, now=NOW), Reason.TOO_LARGE)


@pytest.mark.parametrize("value", ["", [], ["", "  "], ", ,", "Identity:", ["y:  "]])
def test_no_identity(verifier: Verifier, value: str | list[str]) -> None:
    """No Identity value at all: 428 Use Identity Header (RFC 8224 §6.2.2), index -1."""
    verdict = verifier.check(value, now=NOW)
    assert_verdict(verdict, Reason.NO_IDENTITY)
    assert (verdict.sip_status, verdict.sip_reason) == (428, "Use Identity Header")
    assert verdict.index == -1
    assert verdict.failures == ()


# -- Verdict -----------------------------------------------------------------------------------


def test_verdict_valid_fields(verifier: Verifier, identity: str) -> None:
    """A valid Verdict is truthy and carries the passport, TN-Validation-Passed and code 0."""
    verdict = verifier.check(identity, now=NOW)
    assert verdict
    assert bool(verdict) is True
    assert verdict.valid is True
    assert (verdict.sip_status, verdict.sip_reason, verdict.lib_code) == (0, "", 0)
    assert verdict.verstat == "TN-Validation-Passed"
    assert verdict.message == ""
    p = verdict.passport
    assert p is not None
    assert (p.attest, p.orig, p.dest, p.origid, p.iat, p.info) == (
        "A",
        ORIG,
        [DEST],
        ORIGID,
        NOW,
        X5U,
    )
    assert p.token == _token(identity)
    assert p.header == SHAKEN_HEADER
    assert p.claims == SHAKEN_CLAIMS
    assert isinstance(p.credential, Credential)


def test_verdict_invalid_is_falsy(verifier: Verifier, identity: str) -> None:
    """A failed Verdict is falsy; valid is False."""
    verdict = verifier.check(identity, now=NOW + 301)
    assert not verdict
    assert bool(verdict) is False
    assert verdict.valid is False
    assert verdict.passport is None


def test_verdict_to_dict(verifier: Verifier, identity: str, bad: dict[str, str]) -> None:
    """to_dict() has the documented keys and values and is JSON-serializable."""
    keys = {
        "valid",
        "reason",
        "message",
        "sip_status",
        "sip_reason",
        "verstat",
        "lib_code",
        "header",
        "claims",
        "index",
        "failures",
    }
    ok = verifier.check([bad["436-info"], identity], now=NOW).to_dict()
    assert set(ok) >= keys
    assert ok["valid"] is True
    assert ok["reason"] == "valid"
    assert ok["index"] == 1
    assert ok["claims"] == SHAKEN_CLAIMS
    assert ok["failures"] == [
        {"index": 0, "reason": "missing-info", "message": ok["failures"][0]["message"]}
    ]
    fail = verifier.check(identity, now=NOW + 301).to_dict()
    assert set(fail) >= keys
    assert (fail["valid"], fail["reason"], fail["sip_status"], fail["sip_reason"]) == (
        False,
        "stale",
        403,
        "Stale Date",
    )
    assert (fail["verstat"], fail["lib_code"]) == ("No-TN-Validation", -232)
    json.dumps(ok)
    json.dumps(fail)


# -- credentials -------------------------------------------------------------------------------


def test_key_kinds(
    identity: str,
    public_key: ec.EllipticCurvePublicKey,
    certificate: x509.Certificate,
    key_files: KeyFiles,
) -> None:
    """The Verifier takes a public key, certificate, Credential, path (PEM/DER) or source."""
    keys: list[Any] = [
        public_key,
        certificate,
        Credential(public_key),
        Credential.from_certificates([certificate]),
        StaticCredential(Credential(public_key)),
        CredentialFile(key_files.cert_pem),
        str(key_files.pub_pem),
        key_files.pub_der,
        key_files.cert_pem,
        key_files.cert_der,
    ]
    for key in keys:
        assert Verifier(key).check(identity, now=NOW).ok, key
    for path in (key_files.pub_pem, key_files.pub_der, key_files.cert_pem, key_files.cert_der):
        assert check_identity(identity, path, now=NOW).ok, path


def test_verifier_rejects_unusable_key_objects(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A private key or other object as key is a programming error: TypeError."""
    for key in (private_key, 42, b"pem bytes"):
        with pytest.raises(TypeError):
            Verifier(key)  # type: ignore[arg-type]


def test_verify_rejects_non_str(verifier: Verifier) -> None:
    """verify/averify take one str."""
    with pytest.raises(TypeError):
        verifier.verify(b"a.b.c;info=<x:y>")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        asyncio.run(verifier.averify(["a"]))  # type: ignore[arg-type]


def test_credential_file_reloaded_on_change(
    tmp_path: Path, identity: str, key_files: KeyFiles
) -> None:
    """check_identity with a key file follows the file when it is replaced."""
    path = tmp_path / "pub.pem"
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    path.write_bytes(other.public_bytes(serialization.Encoding.PEM, SPKI))
    assert check_identity(identity, path, now=NOW).reason is Reason.BAD_SIGNATURE
    st_ = path.stat()
    path.write_bytes(key_files.pub_pem.read_bytes())
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))
    assert check_identity(identity, path, now=NOW).ok


class AsyncOnlySource:
    """A source with both entry points, counting which one was used."""

    def __init__(self, credential: Credential) -> None:
        self.credential = credential
        self.sync_calls = 0
        self.async_calls: list[str] = []

    def credential_for(self, info: str) -> Credential:
        self.sync_calls += 1
        return self.credential

    async def acredential_for(self, info: str) -> Credential:
        await asyncio.sleep(0)
        self.async_calls.append(info)
        return self.credential


def test_async_uses_acredential_for(public_key: ec.EllipticCurvePublicKey, identity: str) -> None:
    """acheck/averify await the source's acredential_for with the info URL; sync uses the
    sync method."""
    source = AsyncOnlySource(Credential(public_key))
    v = Verifier(source)
    assert asyncio.run(v.acheck(identity, now=NOW)).ok
    passport = asyncio.run(v.averify(identity, orig_tn=ORIG, dest_tn=DEST, now=NOW))
    assert passport.orig == ORIG
    assert source.async_calls == [X5U, X5U]
    assert source.sync_calls == 0
    assert v.check(identity, now=NOW).ok
    assert source.sync_calls == 1


BUDGET = 2.0  # VerifyPolicy.timeout of the probe tests: far from the 5 s default


def test_verify_asks_each_kind_of_source_as_its_protocol_says(
    public_key: ec.EllipticCurvePublicKey, identity: str
) -> None:
    """verify, averify, check and acheck ask a source the way CredentialSource documents
    it, always for the header's info URL: a local one directly, outside any time budget; a
    cached credential through cached_credential alone (no fetch); a cold one, and any source
    of unknown kind, as a fetch within the request's budget (VerifyPolicy.timeout)."""
    keys = {X5U: Credential(public_key)}

    def sync(source: ProbeSource) -> VerifiedPassport:
        return Verifier(source, policy=VerifyPolicy(timeout=BUDGET)).verify(identity, now=NOW)

    def asyn(source: ProbeSource) -> VerifiedPassport:
        verifier = Verifier(source, policy=VerifyPolicy(timeout=BUDGET))
        return asyncio.run(verifier.averify(identity, now=NOW))

    def sync_check(source: ProbeSource) -> VerifiedPassport:
        verifier = Verifier(source, policy=VerifyPolicy(timeout=BUDGET))
        verdict = verifier.check(identity, now=NOW)
        if verdict.passport is None:
            raise VerificationError(verdict.reason, verdict.message)
        return verdict.passport

    def async_check(source: ProbeSource) -> VerifiedPassport:
        verifier = Verifier(source, policy=VerifyPolicy(timeout=BUDGET))
        verdict = asyncio.run(verifier.acheck(identity, now=NOW))
        if verdict.passport is None:
            raise VerificationError(verdict.reason, verdict.message)
        return verdict.passport

    for run in (sync, asyn, sync_check, async_check):
        local = LocalProbeSource(keys)
        assert run(local).info == X5U
        assert [(c.how, c.info, c.left) for c in local.calls] == [
            ("credential_for", X5U, math.inf)
        ], run
        cached = CachingProbeSource(keys, {X5U})
        assert run(cached).info == X5U
        assert [(c.how, c.info) for c in cached.calls] == [("cached_credential", X5U)], run
        cold = CachingProbeSource(keys, set())
        assert run(cold).info == X5U
        assert [(c.how, c.info) for c in cold.calls] == [
            ("cached_credential", X5U),
            ("credential_for", X5U),
        ], run
        assert cold.calls[1].within(BUDGET), (run, cold.calls)
        unknown = ProbeSource(keys)
        assert run(unknown).info == X5U
        assert [(c.how, c.info) for c in unknown.calls] == [("credential_for", X5U)], run
        assert unknown.calls[0].within(BUDGET), (run, unknown.calls)
        nothing = CachingProbeSource({}, set())
        with pytest.raises(VerificationError) as exc:
            run(nothing)
        assert_error(exc.value, Reason.CERT_FETCH_FAILED)
        if run in (sync, asyn):
            assert exc.value.header["x5u"] == X5U  # the failure names the PASSporT


class _SlowFetch(AsyncProbeSource):
    """Fetches that take ``delay`` seconds whatever the request's budget (a source that does
    not watch it); nothing cached."""

    def __init__(self, keys: dict[str, Credential], delay: float) -> None:
        super().__init__(keys, set())
        self.delay = delay

    async def acredential_for(self, info: str) -> Credential:
        if self.delay:
            await asyncio.sleep(self.delay)
        return self._answer("acredential_for", info)


OTHER_X5U = "https://other.example/sti.pem"


def _check_both(verifier: Verifier, values: list[str]) -> list[Verdict]:
    """check (several URLs: fetched at once on a private loop) and acheck of ``values``."""
    return [verifier.check(values, now=NOW), asyncio.run(verifier.acheck(values, now=NOW))]


def test_several_certificates_fetched_at_once_are_checked_in_request_order(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """Values whose certificates arrive together are checked in request order, and a value
    whose fetch or signature fails does not keep the others from being checked."""
    other = ec.generate_private_key(ec.SECP256R1())
    keys = {X5U: Credential(public_key), OTHER_X5U: Credential(other.public_key())}
    first = signer.identity(ORIG, DEST, "A", ORIGID, iat=NOW)
    second = Signer(other, OTHER_X5U).identity(ORIG, DEST, "B", ORIGID, iat=NOW)
    source = _SlowFetch(keys, 0)
    for verdict in _check_both(Verifier(source), [first, second]):
        assert verdict.ok and verdict.index == 0 and verdict.failures == ()
        assert_verdict_readable(verdict)
        assert verdict.passport is not None and verdict.passport.info == X5U
    # both URLs at once, through acredential_for, by check (private loop) and acheck alike
    assert sorted(source.asked("acredential_for")) == sorted([X5U, OTHER_X5U] * 2)
    assert source.asked("credential_for") == []
    # the first URL cannot be fetched: the second value is checked all the same
    missing = {OTHER_X5U: keys[OTHER_X5U]}
    for verdict in _check_both(Verifier(_SlowFetch(missing, 0)), [first, second]):
        assert verdict.ok and verdict.index == 1
        assert [(f.index, f.reason) for f in verdict.failures] == [(0, Reason.CERT_FETCH_FAILED)]
    # the first certificate holds another key: bad-signature, and the second is checked
    wrong = {X5U: keys[OTHER_X5U], OTHER_X5U: keys[OTHER_X5U]}
    for verdict in _check_both(Verifier(_SlowFetch(wrong, 0)), [first, second]):
        assert verdict.ok and verdict.index == 1
        assert [(f.index, f.reason) for f in verdict.failures] == [(0, Reason.BAD_SIGNATURE)]
    # two values behind one URL, the first signed by another key: the second is checked
    forged = Signer(other, X5U).identity(ORIG, DEST, "A", ORIGID, iat=NOW)
    third = Signer(other, "https://third.example/sti.pem").identity(ORIG, DEST, "C", iat=NOW)
    for verdict in _check_both(Verifier(_SlowFetch(keys, 0)), [forged, first, third]):
        assert verdict.ok and verdict.index == 1, (verdict.reason, verdict.failures)
        assert [(f.index, f.reason) for f in verdict.failures] == [(0, Reason.BAD_SIGNATURE)]


class _Unloadable(_SlowFetch):
    """OTHER_X5U holds something that is no certificate (KeyLoadError key-invalid)."""

    def _answer(self, how: str, info: str | None) -> Credential:
        if info == OTHER_X5U:
            raise KeyLoadError("key-invalid", f"{info}: not a certificate")
        return super()._answer(how, info)


def test_a_certificate_that_cannot_be_loaded_keeps_its_reason_and_code(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """A fetched body that is no certificate is key-unavailable with libsecsipid's -102 for
    its value, on every fetch path (one URL, several at once); the other value is checked."""
    other = ec.generate_private_key(ec.SECP256R1())
    keys = {X5U: Credential(public_key)}
    values = [
        Signer(other, OTHER_X5U).identity(ORIG, DEST, "B", ORIGID, iat=NOW),
        signer.identity(ORIG, DEST, "A", ORIGID, iat=NOW),
    ]
    for verdict in _check_both(Verifier(_Unloadable(keys, 0)), values):
        assert verdict.ok and verdict.index == 1
        assert [(f.index, f.reason, f.lib_code) for f in verdict.failures] == [
            (0, Reason.KEY_UNAVAILABLE, -102)
        ]
    for verdict in _check_both(Verifier(_Unloadable(keys, 0)), values[:1]):
        assert_verdict(verdict, Reason.KEY_UNAVAILABLE)
        assert verdict.lib_code == -102 and verdict.message == f"{OTHER_X5U}: not a certificate"


def test_failures_are_reported_in_request_order(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """Values are checked out of order (the one whose credential is at hand first), but the
    failures are reported in request order."""
    other = ec.generate_private_key(ec.SECP256R1())
    keys = {X5U: Credential(public_key), OTHER_X5U: Credential(public_key)}
    values = [  # both signed with a key their certificate does not hold
        Signer(other, OTHER_X5U).identity(ORIG, DEST, "B", ORIGID, iat=NOW),
        Signer(other, X5U).identity(ORIG, DEST, "A", ORIGID, iat=NOW),
    ]
    for verdict in _check_both(Verifier(CachingProbeSource(keys, {X5U})), values):
        assert_verdict(verdict, Reason.BAD_SIGNATURE)
        assert [f.index for f in verdict.failures] == [0, 1]


def test_fetches_left_behind_by_a_valid_value_log_nothing(
    signer: Signer, public_key: ec.EllipticCurvePublicKey, caplog: pytest.LogCaptureFixture
) -> None:
    """A value found valid ends the check while other fetches may have failed in the same
    instant: their failures are not the request's, and asyncio must not log them as
    "Task exception was never retrieved" (with a traceback) when the tasks are collected."""
    other = ec.generate_private_key(ec.SECP256R1())
    values = [
        signer.identity(ORIG, DEST, "A", ORIGID, iat=NOW),
        Signer(other, OTHER_X5U).identity(ORIG, DEST, "B", ORIGID, iat=NOW),
    ]
    keys = {X5U: Credential(public_key)}  # the second URL fails
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for verdict in _check_both(Verifier(_SlowFetch(keys, 0)), values):
            assert verdict.ok and verdict.index == 0
        gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


def test_fetches_of_several_certificates_end_with_the_request_budget(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """A source that ignores the budget is not waited for past it: cert-fetch-timeout for
    each value, naming its URL.  Within a budget under a second a quick answer is used."""
    other = ec.generate_private_key(ec.SECP256R1())
    keys = {X5U: Credential(public_key), OTHER_X5U: Credential(other.public_key())}
    values = [
        signer.identity(ORIG, DEST, "A", ORIGID, iat=NOW),
        Signer(other, OTHER_X5U).identity(ORIG, DEST, "B", ORIGID, iat=NOW),
    ]
    # URLs of 120 characters are named whole, longer ones cut to 117 and "..."
    long120 = "https://long.example/" + "a" * 95 + ".pem"
    long121 = "https://long.example/" + "b" * 96 + ".pem"
    assert (len(long120), len(long121)) == (120, 121)
    values += [Signer(other, url).identity(ORIG, DEST, "B", iat=NOW) for url in (long120, long121)]
    slow = Verifier(_SlowFetch(keys, 3.0), policy=VerifyPolicy(timeout=0.3))
    for verdict in _check_both(slow, values):
        assert_verdict(verdict, Reason.CERT_FETCH_TIMEOUT)
        assert [(f.index, f.message) for f in verdict.failures] == [
            (0, f"{X5U}: no certificate within the request's time budget"),
            (1, f"{OTHER_X5U}: no certificate within the request's time budget"),
            (2, f"{long120}: no certificate within the request's time budget"),
            (3, f"{long121[:117]}...: no certificate within the request's time budget"),
        ]
    values = values[:2]
    quick = Verifier(_SlowFetch(keys, 0.05), policy=VerifyPolicy(timeout=0.8))
    for verdict in _check_both(quick, values):
        assert verdict.ok and verdict.index == 0, (verdict.reason, verdict.message)


def test_async_matches_sync_on_mixed_request(
    verifier: Verifier, identity: str, bad: dict[str, str]
) -> None:
    """acheck and check agree on a multi-header request, valid or not, wherever the valid
    value is: the values after it are not examined (their failures are not reported)."""
    middle = len(bad) // 2
    for values in (
        list(bad.values()),
        [*bad.values(), identity],
        [identity, *bad.values()],
        [*list(bad.values())[:middle], identity, *list(bad.values())[middle:]],
    ):
        a, b = asyncio.run(verifier.acheck(values, now=NOW)), verifier.check(values, now=NOW)
        assert a.to_dict() == b.to_dict()
        assert (a.passport is None) is (b.passport is None)
        if identity in values:
            assert a.ok and a.index == values.index(identity)
            assert [f.index for f in a.failures] == list(range(a.index))


def test_verifier_uses_wall_clock_without_now(signer: Signer, verifier: Verifier) -> None:
    """Without now= the current time is used: a token signed now is fresh, one from NOW is not."""
    assert verifier.check(signer.identity(ORIG, DEST, "A")).ok
    assert verifier.check(signer.identity(ORIG, DEST, "A", iat=NOW)).reason is Reason.STALE


# -- robustness properties ---------------------------------------------------------------------


# What the examination of an Identity value (RFC 8224 §6.2 steps before the credential) can
# refuse it for: the header syntax, the PASSporT's encoding, header and claims, freshness and
# the caller's numbers.  Never a credential, trust, fetch or internal (500) reason.
_EXAMINATION_FAILURES = frozenset(
    {
        Reason.NO_IDENTITY,
        Reason.TOO_LARGE,
        Reason.MALFORMED_IDENTITY,
        Reason.UNSUPPORTED_PPT,
        Reason.UNSUPPORTED_ALG,
        Reason.MISSING_INFO,
        Reason.INVALID_INFO,
        Reason.COMPACT_FORM,
        Reason.MALFORMED_TOKEN,
        Reason.INVALID_JWS_HEADER,
        Reason.INVALID_TYP,
        Reason.PPT_MISMATCH,
        Reason.MISSING_X5U,
        Reason.X5U_MISMATCH,
        Reason.INVALID_CLAIMS_JSON,
        Reason.MISSING_CLAIM,
        Reason.INVALID_CLAIM,
        Reason.NON_CANONICAL,
        Reason.STALE,
        Reason.IAT_IN_FUTURE,
        Reason.ORIG_MISMATCH,
        Reason.DEST_MISMATCH,
        Reason.MALFORMED_SIGNATURE,
    }
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=300) | st.lists(st.text(max_size=80), max_size=4))
def test_check_any_text_returns_verdict(verifier: Verifier, value: str | list[str]) -> None:
    """For arbitrary text check returns a failed Verdict and never raises or hits a bug: with
    a key configured, the text fails while it is examined, before any credential is used."""
    verdict = verifier.check(value, now=NOW)
    assert isinstance(verdict, Verdict)
    assert not verdict
    assert verdict.reason in _EXAMINATION_FAILURES, (verdict.reason, verdict.message)
    assert verdict.sip_status in (428, 436, 437, 438, 403), verdict.sip_status


_MUTATION_CHARS = 'AZaz09-_.;=<>", \t\r\n+/é\x00'


@st.composite
def _mutations(draw: st.DrawFn, base: str) -> str:
    value = base
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["replace", "insert", "delete", "truncate", "dup"]))
        i = draw(st.integers(min_value=0, max_value=max(len(value) - 1, 0)))
        if op == "replace" and value:
            value = value[:i] + draw(st.sampled_from(_MUTATION_CHARS)) + value[i + 1 :]
        elif op == "insert":
            value = value[:i] + draw(st.sampled_from(_MUTATION_CHARS)) + value[i:]
        elif op == "delete" and value:
            value = value[:i] + value[i + 1 :]
        elif op == "truncate":
            value = value[:i]
        elif op == "dup":
            value = value[:i] + value[i:] * 2
    return value


# A mutated value fails its examination, or reaches the signature (which then fails unless
# the mutation left the signed bytes and the parameters' meaning intact).
_MUTATION_OUTCOMES = _EXAMINATION_FAILURES | {Reason.BAD_SIGNATURE, Reason.VALID}


@pytest.fixture(scope="module")
def mutation_base(signer: Signer) -> str:
    return signer.identity(ORIG, DEST, "A", ORIGID, iat=NOW)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_check_mutated_header_returns_verdict(
    verifier: Verifier, mutation_base: str, data: st.DataObject
) -> None:
    """Random mutations of a valid header give a Verdict, never an exception or internal
    error; if still valid, the verified header and claims are exactly the signed ones."""
    value = data.draw(_mutations(mutation_base))
    for v in (verifier, Verifier(verifier.source, policy=VerifyPolicy(strict=True))):
        verdict = v.check(value, orig_tn=ORIG, dest_tn=DEST, now=NOW)
        assert isinstance(verdict, Verdict)
        assert verdict.reason in _MUTATION_OUTCOMES, (verdict.reason, verdict.message)
        if verdict:
            assert verdict.header == SHAKEN_HEADER
            assert verdict.claims == SHAKEN_CLAIMS


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.text(max_size=200))
def test_acheck_any_text_same_as_check(verifier: Verifier, value: str) -> None:
    """acheck agrees with check on arbitrary text."""
    assert asyncio.run(verifier.acheck(value, now=NOW)) == verifier.check(value, now=NOW)


def test_der_signature_matches_encode_dss_signature() -> None:
    """The hand-built DER of the verify hot path is byte for byte the library's."""
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    from secsipid._verifier import _der_signature

    edge = [
        bytes(64),
        b"\xff" * 64,
        b"\x80" + bytes(31) + b"\x7f" + bytes(31),
        bytes(31) + b"\x01" + bytes(31) + b"\x80",
        bytes(5) + b"\x7f" * 27 + bytes(32),
        bytes(32) + b"\x00\x80" + b"\x01" * 30,
        # no leading zero byte: the four high-bit combinations of the precomputed prefixes
        b"\x01" * 32 + b"\xff" * 32,
        b"\xff" * 32 + b"\x01" * 32,
        b"\x7f" * 32 + b"\x7f" * 32,
        b"\x80" * 32 + b"\x80" * 32,
    ]
    for sig in edge + [os.urandom(64) for _ in range(5000)]:
        r, s = int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")
        assert _der_signature(sig) == encode_dss_signature(r, s), sig.hex()


def test_request_and_parameter_messages(verifier: Verifier, identity: str) -> None:
    """Refusals of the request as a whole and of the Identity parameters say what they saw;
    a request of exactly the size limit is examined value by value, one more character is
    refused whole; a valid verdict carries the verified header and claims."""
    policy = verifier.policy
    limit = policy.max_identity_size * policy.max_identities
    at_limit = ["x" * policy.max_identity_size] * policy.max_identities
    verdict = verifier.check(at_limit, now=NOW)
    assert verdict.reason is Reason.MISSING_INFO and len(verdict.failures) == len(at_limit)
    over = [*at_limit[:-1], "x" * (policy.max_identity_size + 1)]
    verdict = verifier.check(over, now=NOW)
    assert (verdict.reason, verdict.message) == (
        Reason.TOO_LARGE,
        f"{limit + 1} characters of Identity headers, over the limit of {limit}",
    )
    count = policy.max_identities + 1
    verdict = verifier.check(["x"] * count, now=NOW)
    assert verdict.message == f"{count} Identity headers, over the limit of {count - 1}"
    for value, message in (
        ("", "no Identity header"),
        ("a.b.c;info=<https://x/y>;ppt=foo",
         "Identity ppt 'foo' is not supported (only shaken, div and rcd)"),
        ("a.b.c;info=<https://x/y>;alg=ES384", "Identity alg 'ES384' is not ES256"),
        ("a.b.c;alg=ES256", "Identity header has no info parameter"),
        ("a.b.c;info=relative", "info 'relative' is not an absolute URI"),
    ):  # fmt: skip
        assert verifier.check(value, now=NOW).message == message
    valid = verifier.check(identity, now=NOW)
    assert (valid.header, valid.claims) == (SHAKEN_HEADER, SHAKEN_CLAIMS)


def test_oversized_request_refused_before_splitting(verifier: Verifier) -> None:
    """More than max_identities x max_identity_size characters of Identity input is refused as
    a whole (too-large, 438), whether one comma-joined line or many lines."""
    policy = verifier.policy
    limit = policy.max_identity_size * policy.max_identities
    for identity in ("a," * (limit // 2 + 1), ["x" * 1000] * (limit // 1000 + 1)):
        verdict = verifier.check(identity)
        assert verdict.reason is Reason.TOO_LARGE and verdict.sip_status == 438
        assert "over the limit" in verdict.message
