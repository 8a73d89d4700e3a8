"""The published examples of RFC 8224/8225/8588/8946 (standards.md §7), with the known spec
defects of §8 encoded: we test what the standard says, not the RFC typos."""

from __future__ import annotations

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from helpers import assert_error, assert_verdict, requires_deterministic
from secsipid import (
    Reason,
    Signer,
    SigningError,
    VerificationError,
    Verifier,
    b64url_decode,
    b64url_encode,
    canonical_json,
    decode_token,
    load_credential,
    load_private_key,
)
from secsipid._passport import check_shaken_claims

# -- keys (verbatim) ---------------------------------------------------------------------------

# RFC 8225 Appendix A.2 public key; matching private key from draft-ietf-stir-passport-08.
RFC8225_A2_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8HNbQd/TmvCKwPKHkMF9fScavGeH
78YTU8qLS8I5HLHSSmlATLcslQMhNC/OhlWBYC626nIlo7XeebYS7Sb37g==
-----END PUBLIC KEY-----
"""
DRAFT08_PRIVATE = b"""-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFeZ1R208QCvcu5GuYyMfG4W7sH4m99/7eHSDLpdYllFoAoGCCqGSM49
AwEHoUQDQgAE8HNbQd/TmvCKwPKHkMF9fScavGeH78YTU8qLS8I5HLHSSmlATLcs
lQMhNC/OhlWBYC626nIlo7XeebYS7Sb37g==
-----END EC PRIVATE KEY-----
"""
# RFC 8225 Appendix A.1 private key (PKCS#8); its public key is NOT A.2's.
RFC8225_A1_PRIVATE = b"""-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgi7q2TZvN9VDFg8Vy
qCP06bETrR2v8MRvr89rn4i+UAahRANCAAQWfaj1HUETpoNCrOtp9KA8o0V79IuW
ARKt9C1cFPkyd3FBP4SeiNZxQhDrD0tdBHls3/wFe8++K2FrPyQF9vuh
-----END PRIVATE KEY-----
"""
A1_DERIVED_PUBLIC_B64 = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEFn2o9R1BE6aDQqzrafSgPKNFe/SLlgESrfQtXBT5MndxQT+EnojW"
    "cUIQ6w9LXQR5bN/8BXvPvithaz8kBfb7oQ=="
)
# RFC 8946 Appendix A (a matched pair).
RFC8946_PUBLIC = b"""-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEmzGM1VsO+3IqbMF54rQMaYKQftO4
hUYm9wv5wutLgEd9FsiTy3+4+Wa2O7pffOXPC0QzO+yD8hGEXGP/2mZo6w==
-----END PUBLIC KEY-----
"""
RFC8946_PRIVATE = b"""-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFKCsFZ4Wsw3ZpBxgc4Z0sOjaXDdMk07Ny1fKg6OntAkoAoGCCqGSM49
AwEHoUQDQgAEmzGM1VsO+3IqbMF54rQMaYKQftO4hUYm9wv5wutLgEd9FsiTy3+4
+Wa2O7pffOXPC0QzO+yD8hGEXGP/2mZo6w==
-----END EC PRIVATE KEY-----
"""

# -- tokens (verbatim) -------------------------------------------------------------------------

# §7.1: RFC 8225 §7.1 / RFC 8224 §4.1.1, string iat.
RFC8225_7_1 = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3Bhc3"
    "Nwb3J0LmNlciJ9.eyJkZXN0Ijp7InVyaSI6WyJzaXA6YWxpY2VAZXhhbXBsZS5jb20iXX0sImlhdCI6IjE0NDMyMDg"
    "zNDUiLCJvcmlnIjp7InRuIjoiMTIxNTU1NTEyMTIifX0.rq3pjT1hoRwakEGjHCnWSwUnshd0-zJ6F1VOgFWSjHBr8Q"
    "jpjlk-cpFYpFYsojNCpTzO3QfPOlckGaS6hEck7w"
)
RFC8225_7_1_COMPACT = (
    "..rq3pjT1hoRwakEGjHCnWSwUnshd0-zJ6F1VOgFWSjHBr8Qjpjlk-cpFYpFYsojNCpTzO3QfPOlckGaS6hEck7w"
)

# §7.2: RFC 8225 Appendix A, numeric iat.
A_PAYLOAD_B64 = (
    "eyJkZXN0Ijp7InVyaSI6WyJzaXA6YWxpY2VAZXhhbXBsZS5jb20iXX0sImlhdCI6MTQ3MTM3NTQxOCwib3JpZyI6eyJ0"
    "biI6IjEyMTU1NTUxMjEyIn19"
)
A_HEADER_B64 = (
    "eyJhbGciOiJFUzI1NiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4YW1wbGUub3JnL3Bhc3Nw"
    "b3J0LmNlciJ9"
)
A_RFC_SIGNATURE = (
    "VLBCIVDCaeK6M4hLJb6SHQvacAQVvoiiEOWQ_iUkqk79UD81fHQ0E1b3_GluIkba7UWYRM47ZbNFdOJquE35cw"
)
A_PROJECT_SIGNATURE = (
    "2c_SAul3BxIuvMR3G8VfbFwj6ZoOHBQF-qVaR-Mef0V2ipEhTe0ZYBaLrnhuSRVNwy1Tu-tr334XUBdnPYi3tA"
)
A_HEADER = {"alg": "ES256", "typ": "passport", "x5u": "https://cert.example.org/passport.cer"}
A_PAYLOAD = {
    "dest": {"uri": ["sip:alice@example.com"]},
    "iat": 1471375418,
    "orig": {"tn": "12155551212"},
}

# §7.3: RFC 8588 §6, corrected, with the project-derived signature (RFC 8946 key).
SHAKEN_X5U = "https://cert.example.org/passport.cer"
SHAKEN_HEADER_JSON = (
    b'{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/passport.cer"}'
)
SHAKEN_PAYLOAD_JSON = (
    b'{"attest":"A","dest":{"tn":["12155550131"]},"iat":1443208345,"orig":{"tn":"12155550121"},'
    b'"origid":"123e4567-e89b-12d3-a456-426655440000"}'
)
SHAKEN_TOKEN = (
    "eyJhbGciOiJFUzI1NiIsInBwdCI6InNoYWtlbiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly9jZXJ0LmV4"
    "YW1wbGUub3JnL3Bhc3Nwb3J0LmNlciJ9.eyJhdHRlc3QiOiJBIiwiZGVzdCI6eyJ0biI6WyIxMjE1NTU1MDEzMSJdfSw"
    "iaWF0IjoxNDQzMjA4MzQ1LCJvcmlnIjp7InRuIjoiMTIxNTU1NTAxMjEifSwib3JpZ2lkIjoiMTIzZTQ1NjctZTg5Yi0"
    "xMmQzLWE0NTYtNDI2NjU1NDQwMDAwIn0.BuOEj7jvXtnbzdCr8wbRgkqvUU7mhB96bmzgU5u7kTDmEIpts_ziGWeGPGro"
    "PgI5tb7RWl8HdWk_91EupeMMfA"
)
SHAKEN_IAT = 1443208345

# §7.4: RFC 8946 div (all verify with the Appendix A key).
DIV_TOKEN = (
    "eyJhbGciOiJFUzI1NiIsInBwdCI6ImRpdiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly93d3cuZXhhbXBs"
    "ZS5jb20vY2VydC5jZXIifQ.eyJkZXN0Ijp7InRuIjpbIjEyMTU1NTUxMjE0Il19LCJkaXYiOnsidG4iOiIxMjE1NTU1NT"
    "EyMTMifSwiaWF0IjoxNDQzMjA4MzQ1LCJvcmlnIjp7InRuIjoiMTIxNTU1NTEyMTIifX0.xBHWipDEEJ8a6TsdX6xUXA"
    "nblsFiGUiAxwLiv0HLC9IICj6eG9jQd6WzeSSjHRBwxmChHhVIiMTSqIlk3yCNkg"
)
DIV_INFO = "https://www.example.com/cert.cer"
DIV_INNER_HEADER = {"alg": "ES256", "typ": "passport", "x5u": DIV_INFO}
DIV_INNER_PAYLOAD = {
    "dest": {"tn": ["12155551213"]},
    "iat": 1443208345,
    "orig": {"tn": "12155551212"},
}
DIV_INNER_SIGNATURE = (
    "1bEzkzcNbKvgz4QoMx0_DJ2T8qFMDC1sPqHPXl1WvbauzRJRvYlZqQ0qgGTlS8tJ_wXjVe07Z3wvDrdApHhhYw"
)


def _pub(pem: bytes) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    return key


def _crypto_verifies(key: ec.EllipticCurvePublicKey, token: str) -> bool:
    """The bare ES256 math (raw r||s -> DER), independent of any PASSporT rule."""
    h, c, s = token.split(".")
    sig = b64url_decode(s)
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


def _spki_b64(key: ec.EllipticCurvePublicKey) -> str:
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


# -- keys --------------------------------------------------------------------------------------


def test_draft08_private_key_matches_rfc8225_a2_public_key() -> None:
    """The draft-08 SEC1 private key is the pair of RFC 8225 A.2's public key."""
    private = load_private_key(DRAFT08_PRIVATE)
    assert private.public_key().public_numbers() == _pub(RFC8225_A2_PUBLIC).public_numbers()


def test_rfc8225_a1_key_is_not_a2() -> None:
    """Spec defect: A.1's private key does not belong to A.2's public key."""
    a1 = load_private_key(RFC8225_A1_PRIVATE)
    assert _spki_b64(a1.public_key()) == A1_DERIVED_PUBLIC_B64
    assert a1.public_key().public_numbers() != _pub(RFC8225_A2_PUBLIC).public_numbers()


def test_rfc8946_key_pair_matches() -> None:
    """RFC 8946 Appendix A private and public keys are a pair."""
    private = load_private_key(RFC8946_PRIVATE)
    assert private.public_key().public_numbers() == _pub(RFC8946_PUBLIC).public_numbers()
    assert load_credential(RFC8946_PUBLIC).public_key.public_numbers() == (
        private.public_key().public_numbers()
    )


# -- §7.1 string iat ----------------------------------------------------------------------------


def test_7_1_decodes_with_string_iat() -> None:
    """The §7.1 token decodes; its iat is the string "1443208345" (errata 5985)."""
    d = decode_token(RFC8225_7_1)
    assert d.header == {"alg": "ES256", "typ": "passport", "x5u": SHAKEN_X5U}
    assert d.claims == {
        "dest": {"uri": ["sip:alice@example.com"]},
        "iat": "1443208345",
        "orig": {"tn": "12155551212"},
    }
    assert d.header_json == canonical_json(d.header)
    assert d.claims_json == canonical_json(d.claims)
    assert ".." + RFC8225_7_1.split(".")[2] == RFC8225_7_1_COMPACT


def test_7_1_signature_math_verifies_with_a2_key() -> None:
    """At the crypto level the §7.1 signature verifies with the RFC 8225 A.2 public key."""
    assert _crypto_verifies(_pub(RFC8225_A2_PUBLIC), RFC8225_7_1)


def test_7_1_numeric_iat_rebuild_does_not_verify() -> None:
    """Spec defect: the same signature over a numeric-iat payload (RFC 8224 §5.1) is false."""
    h, _, s = RFC8225_7_1.split(".")
    claims = b64url_encode(
        canonical_json(
            {
                "dest": {"uri": ["sip:alice@example.com"]},
                "iat": 1443208345,
                "orig": {"tn": "12155551212"},
            }
        )
    )
    assert not _crypto_verifies(_pub(RFC8225_A2_PUBLIC), f"{h}.{claims}.{s}")


def test_7_1_string_iat_is_invalid_claim() -> None:
    """R7: a string iat is invalid (RFC 8225 §9 rule 4); the claim checker says invalid-claim
    and names iat."""
    with pytest.raises(VerificationError) as exc:
        check_shaken_claims(decode_token(RFC8225_7_1).claims)
    assert exc.value.reason is Reason.INVALID_CLAIM
    assert "iat" in exc.value.message


def test_7_1_rejected_by_verifier() -> None:
    """The Verifier, with the right key and info = x5u, rejects the §7.1 PASSporT (438): it is
    a baseline PASSporT without "ppt" (ppt-mismatch) whose iat is a string."""
    value = f"{RFC8225_7_1};info=<{SHAKEN_X5U}>;alg=ES256"
    v = Verifier(_pub(RFC8225_A2_PUBLIC))
    verdict = v.check(value, now=1443208345)
    assert not verdict
    assert verdict.sip_status == 438
    assert verdict.reason is Reason.PPT_MISMATCH
    assert verdict.claims["iat"] == "1443208345"


def test_7_1_rfc8224_identity_example_rejected() -> None:
    """RFC 8224 §4.1.1 puts the token under info=<https://biloxi.example.org/biloxi.cert>,
    which is not its x5u (spec defect): rejected, never valid; the compact form too."""
    v = Verifier(_pub(RFC8225_A2_PUBLIC))
    full = v.check(f"{RFC8225_7_1};info=<https://biloxi.example.org/biloxi.cert>", now=1443208345)
    assert not full
    assert full.sip_status in (436, 438)
    compact = v.check(f"{RFC8225_7_1_COMPACT};info=<https://biloxi.example.org/biloxi.cert>")
    assert_verdict(compact, Reason.COMPACT_FORM)


# -- §7.2 RFC 8225 Appendix A ------------------------------------------------------------------


def test_7_2_serialization_bytes() -> None:
    """Canonical JSON + base64url of the Appendix A objects give the RFC's exact segments."""
    assert b64url_encode(canonical_json(A_PAYLOAD)) == A_PAYLOAD_B64
    assert b64url_encode(canonical_json(A_HEADER)) == A_HEADER_B64
    assert b64url_decode(A_PAYLOAD_B64) == (
        b'{"dest":{"uri":["sip:alice@example.com"]},"iat":1471375418,"orig":{"tn":"12155551212"}}'
    )
    assert b64url_decode(A_HEADER_B64) == (
        b'{"alg":"ES256","typ":"passport","x5u":"https://cert.example.org/passport.cer"}'
    )


def test_7_2_rfc_signature_verifies_under_neither_key() -> None:
    """Spec defect: the Appendix A signature verifies under neither the A.1 nor the A.2 key."""
    token = f"{A_HEADER_B64}.{A_PAYLOAD_B64}.{A_RFC_SIGNATURE}"
    assert len(b64url_decode(A_RFC_SIGNATURE)) == 64
    assert not _crypto_verifies(load_private_key(RFC8225_A1_PRIVATE).public_key(), token)
    assert not _crypto_verifies(_pub(RFC8225_A2_PUBLIC), token)


def test_7_2_project_vector_verifies() -> None:
    """The project-derived signature verifies with the A.1-derived public key."""
    token = f"{A_HEADER_B64}.{A_PAYLOAD_B64}.{A_PROJECT_SIGNATURE}"
    a1_pub = serialization.load_der_public_key(base64.b64decode(A1_DERIVED_PUBLIC_B64))
    assert isinstance(a1_pub, ec.EllipticCurvePublicKey)
    assert _crypto_verifies(a1_pub, token)
    assert not _crypto_verifies(_pub(RFC8225_A2_PUBLIC), token)


@requires_deterministic
def test_7_2_signer_reproduces_project_vector() -> None:
    """RFC 6979 deterministic signing with the A.1 key reproduces the project vector exactly."""
    token = Signer(load_private_key(RFC8225_A1_PRIVATE)).sign_json(A_HEADER, A_PAYLOAD)
    assert token == f"{A_HEADER_B64}.{A_PAYLOAD_B64}.{A_PROJECT_SIGNATURE}"


# -- §7.3 RFC 8588 SHAKEN ----------------------------------------------------------------------


def test_7_3_corrected_canonical_form() -> None:
    """RFC 8588 §6 with commas restored and iat an integer (errata 6656), canonicalized."""
    header = {"alg": "ES256", "typ": "passport", "ppt": "shaken", "x5u": SHAKEN_X5U}
    payload = {
        "attest": "A",
        "dest": {"tn": ["12155550131"]},
        "iat": 1443208345,
        "orig": {"tn": "12155550121"},
        "origid": "123e4567-e89b-12d3-a456-426655440000",
    }
    assert canonical_json(header) == SHAKEN_HEADER_JSON
    assert canonical_json(payload) == SHAKEN_PAYLOAD_JSON
    h, c, _ = SHAKEN_TOKEN.split(".")
    assert b64url_decode(h) == SHAKEN_HEADER_JSON
    assert b64url_decode(c) == SHAKEN_PAYLOAD_JSON


def test_7_3_verbatim_rfc_text_is_not_json() -> None:
    """The RFC's payload text as printed (missing commas) is not JSON: unsignable."""
    printed = (
        '{"attest":"A"\n"dest":{"tn":["12155550131"]}\n"iat":"1443208345",\n'
        '"orig":{"tn":"12155550121"},\n"origid":"123e4567-e89b-12d3-a456-426655440000"}'
    )
    signer = Signer(load_private_key(RFC8946_PRIVATE), SHAKEN_X5U)
    with pytest.raises(SigningError) as exc:
        signer.sign_json(SHAKEN_HEADER_JSON, printed, verbatim=True)
    assert exc.value.code == "invalid-json"


def test_7_3_shaken_token_verifies_as_identity() -> None:
    """The project-derived SHAKEN token verifies as a full Identity header with info = x5u."""
    value = f"{SHAKEN_TOKEN};info=<{SHAKEN_X5U}>;alg=ES256;ppt=shaken"
    v = Verifier(_pub(RFC8946_PUBLIC))
    passport = v.verify(value, orig_tn="+1 215 555 0121", dest_tn="12155550131", now=SHAKEN_IAT)
    assert passport.attest == "A"
    assert passport.orig == "12155550121"
    assert passport.dest == ["12155550131"]
    assert passport.origid == "123e4567-e89b-12d3-a456-426655440000"
    assert passport.iat == SHAKEN_IAT
    assert passport.warnings == []
    verdict = v.check(value, now=SHAKEN_IAT)
    assert verdict.ok
    assert verdict.verstat == "TN-Validation-Passed"
    assert v.check(value, now=SHAKEN_IAT + 301).reason is Reason.STALE


def test_7_3_rfc_string_iat_variant_rejected() -> None:
    """The RFC 8588 payload with the RFC's string iat (errata 6656), signed: invalid-claim."""
    signer = Signer(load_private_key(RFC8946_PRIVATE), SHAKEN_X5U)
    payload = SHAKEN_PAYLOAD_JSON.replace(b"1443208345", b'"1443208345"')
    token = signer.sign_json(SHAKEN_HEADER_JSON, payload, verbatim=True)
    value = f"{token};info=<{SHAKEN_X5U}>;alg=ES256;ppt=shaken"
    with pytest.raises(VerificationError) as exc:
        Verifier(_pub(RFC8946_PUBLIC)).verify(value, now=SHAKEN_IAT)
    assert_error(exc.value, Reason.INVALID_CLAIM)
    assert "iat" in exc.value.message


@requires_deterministic
def test_7_3_signer_reproduces_token() -> None:
    """Signer.sign with the RFC 8946 key (RFC 6979) reproduces the project token exactly."""
    signer = Signer(load_private_key(RFC8946_PRIVATE), SHAKEN_X5U)
    token = signer.sign(
        "12155550121", "12155550131", "A", "123e4567-e89b-12d3-a456-426655440000", iat=SHAKEN_IAT
    )
    assert token == SHAKEN_TOKEN


# -- §7.4 RFC 8946 div -------------------------------------------------------------------------


def test_7_4_div_signature_verifies() -> None:
    """The div PASSporT's signature verifies with the RFC 8946 key; its header is ppt div."""
    assert _crypto_verifies(_pub(RFC8946_PUBLIC), DIV_TOKEN)
    d = decode_token(DIV_TOKEN)
    assert d.header == {"alg": "ES256", "ppt": "div", "typ": "passport", "x5u": DIV_INFO}
    assert d.claims["div"] == {"tn": "121555551213"}  # spec defect: 12 digits


@pytest.mark.parametrize("ppt", ['"div"', "div"])
def test_7_4_div_identity_alone(ppt: str) -> None:
    """RFC 8946 §4.1 form ppt="div" (and unquoted) is read; a div PASSporT alone is not a
    valid request (no SHAKEN PASSporT to chain to), and verify() refuses it on its own."""
    value = f"{DIV_TOKEN};info=<{DIV_INFO}>;ppt={ppt}"
    v = Verifier(_pub(RFC8946_PUBLIC))
    with pytest.raises(VerificationError) as exc:
        v.verify(value, now=1443208345)
    assert_error(exc.value, Reason.UNSUPPORTED_PPT)
    verdict = v.check(value, now=1443208345)
    assert_verdict(verdict, Reason.DIV_WITHOUT_SHAKEN)
    assert verdict.chain[0].ok  # the div PASSporT itself verified
    assert verdict.chain[0].div == "121555551213"


def test_7_4_div_next_to_shaken_does_not_change_the_verdict() -> None:
    """A div header next to a valid SHAKEN header: the SHAKEN one decides (valid); the div
    chains to nothing (its div is the RFC's 12-digit typo), which the verdict reports."""
    v = Verifier(_pub(RFC8946_PUBLIC))
    shaken = f"{SHAKEN_TOKEN};info=<{SHAKEN_X5U}>;alg=ES256;ppt=shaken"
    div = f'{DIV_TOKEN};info=<{DIV_INFO}>;ppt="div"'
    verdict = v.check([div, shaken], now=SHAKEN_IAT)
    assert verdict.ok
    assert verdict.index == 1
    assert verdict.chain_failure is not None
    assert verdict.chain_failure.reason is Reason.DIV_CHAIN_BROKEN


def test_7_4_div_without_ppt_param_is_ppt_mismatch() -> None:
    """A div PASSporT under an Identity without ppt parameter is not ignored: ppt-mismatch."""
    v = Verifier(_pub(RFC8946_PUBLIC))
    verdict = v.check(f"{DIV_TOKEN};info=<{DIV_INFO}>", now=1443208345)
    assert_verdict(verdict, Reason.PPT_MISMATCH)


def test_7_4_inner_original_passport_verifies() -> None:
    """The div-o inner original PASSporT, rebuilt canonically, verifies with the RFC 8946 key."""
    token = (
        f"{b64url_encode(canonical_json(DIV_INNER_HEADER))}."
        f"{b64url_encode(canonical_json(DIV_INNER_PAYLOAD))}.{DIV_INNER_SIGNATURE}"
    )
    assert _crypto_verifies(_pub(RFC8946_PUBLIC), token)
    verdict = Verifier(_pub(RFC8946_PUBLIC)).check(f"{token};info=<{DIV_INFO}>", now=1443208345)
    assert not verdict  # a baseline PASSporT: not SHAKEN
    assert verdict.reason is Reason.PPT_MISMATCH


def test_7_4_div_o_dest_string_is_invalid_claim() -> None:
    """Spec defect: div-o's "dest":{"tn":"12155551214"} (a string) violates R9: invalid-claim."""
    claims = {
        "attest": "A",
        "dest": {"tn": "12155551214"},
        "iat": 1443208345,
        "orig": {"tn": "12155551212"},
        "origid": "123e4567-e89b-12d3-a456-426655440000",
    }
    with pytest.raises(VerificationError) as exc:
        check_shaken_claims(claims)
    assert exc.value.reason is Reason.INVALID_CLAIM
    assert "dest" in exc.value.message


# -- §7.5 is in test_codec.py; §7.6 (TNAuthList DER) belongs to the TNAuthList tests. --------
