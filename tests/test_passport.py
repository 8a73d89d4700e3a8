"""PASSporT decoding and the JWS header / SHAKEN claim rules, through ``Verifier.verify`` and
``Verifier.check`` (RFC 8225, RFC 8588, RFC 7515/7518)."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import example, given, settings
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
    MakeIdentity,
    assert_error,
    assert_verdict,
    assert_verdict_readable,
    raw_signature,
    replace_char,
)
from secsipid import (
    DecodedPassport,
    Reason,
    Signer,
    VerificationError,
    Verifier,
    VerifyPolicy,
    b64url_decode,
    b64url_encode,
    canonical_json,
    decode_token,
)
from secsipid._codec import JSONError, loads_strict
from secsipid._passport import _fast_shaken_claims, check_shaken_claims, claim_warnings


def _reject(verifier: Verifier, value: str, reason: Reason, **kw: Any) -> VerificationError:
    """verify raises ``reason``; check gives the same reason in a Verdict."""
    kw.setdefault("now", NOW)
    with pytest.raises(VerificationError) as exc:
        verifier.verify(value, **kw)
    assert_error(exc.value, reason)
    verdict = verifier.check(value, **kw)
    assert_verdict(verdict, reason)
    assert verdict.lib_code == exc.value.lib_code
    assert verdict.index == 0
    assert [f.reason for f in verdict.failures] == [reason]
    return exc.value


def _parts(value: str) -> tuple[str, str, str, str]:
    token, params = value.split(";", 1)
    h, c, s = token.split(".")
    return h, c, s, ";" + params


# -- decode_token ------------------------------------------------------------------------------


def test_decode_token_fields(identity: str) -> None:
    """decode_token splits and decodes: header, claims, raw JSON, signing input, 64-byte sig."""
    h, c, s, _ = _parts(identity)
    token = f"{h}.{c}.{s}"
    d = decode_token(token)
    assert isinstance(d, DecodedPassport)
    assert d.token == token
    assert d.header == SHAKEN_HEADER
    assert d.claims == SHAKEN_CLAIMS
    assert d.header_json == canonical_json(SHAKEN_HEADER)
    assert d.claims_json == canonical_json(SHAKEN_CLAIMS)
    assert d.signing_input == f"{h}.{c}".encode()
    assert d.signature == b64url_decode(s)
    assert len(d.signature) == 64


def test_decode_token_returns_fresh_dicts(identity: str) -> None:
    """Mutating a decoded header does not leak into the next decode (header cache)."""
    token = identity.split(";")[0]
    decode_token(token).header["alg"] = "none"
    assert decode_token(token).header["alg"] == "ES256"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("", Reason.MALFORMED_TOKEN),
        ("abc", Reason.MALFORMED_TOKEN),
        ("a.b", Reason.MALFORMED_TOKEN),
        ("a.b.c.d", Reason.MALFORMED_TOKEN),
        ("a.b.c.d.e", Reason.MALFORMED_TOKEN),  # JWE-like
        (".e30.sig", Reason.MALFORMED_TOKEN),
        ("..c2ln", Reason.COMPACT_FORM),
        ("e30..c2ln", Reason.COMPACT_FORM),
    ],
)
def test_decode_token_structure(token: str, reason: Reason) -> None:
    """Only a three-segment JWS; an empty claims segment is the compact form."""
    with pytest.raises(VerificationError) as exc:
        decode_token(token)
    assert exc.value.reason is reason


# -- the SHAKEN claims fast path ----------------------------------------------------------------
#
# decode_token reads canonical SHAKEN claims with one regular expression instead of the strict
# JSON decoder plus check_shaken_claims.  It must never accept what those two refuse, and must
# read what it accepts to the very same claims.


def _general_path(raw: bytes) -> dict[str, Any] | None:
    """What the strict decoder and the SHAKEN claim checks make of ``raw`` (None: refused)."""
    try:
        claims = loads_strict(raw)
    except JSONError:
        return None
    if not isinstance(claims, dict):
        return None
    try:
        check_shaken_claims(claims)
    except VerificationError:
        return None
    return claims


def _assert_fast_path_agrees(raw: bytes) -> None:
    fast = _fast_shaken_claims(raw)
    if fast is None:
        return  # declined: the general path decides, as before
    general = _general_path(raw)
    assert general is not None, f"fast path accepted what the general path refuses: {raw!r}"
    assert fast == general
    # same member order and the same JSON types (1 == True in Python; not in JSON)
    assert json.dumps(fast) == json.dumps(general)
    assert len(fast) == 5


def test_fast_path_reads_what_signers_emit(identity: str) -> None:
    """Not vacuous: the canonical claims of our Signer (and secsipidx's, the same bytes) take
    the fast path, several dest numbers too; the uri forms and extra claims do not."""
    decoded = decode_token(identity.split(";")[0])
    assert decoded.shaken_claims
    assert decoded.claims == SHAKEN_CLAIMS
    several = dict(SHAKEN_CLAIMS, dest={"tn": ["12155550131", "12155550132", "1215555"]})
    assert _fast_shaken_claims(canonical_json(several)) == several
    for other in (
        dict(SHAKEN_CLAIMS, orig={"uri": "sip:+12155550121@example.org"}),
        dict(SHAKEN_CLAIMS, dest={"uri": ["sip:+12155550131@example.org"]}),
        dict(SHAKEN_CLAIMS, crn="a call"),
    ):
        assert _fast_shaken_claims(canonical_json(other)) is None
        assert _general_path(canonical_json(other)) == other


_CANONICAL = canonical_json(SHAKEN_CLAIMS)
# Pieces that sit at the fast path's edges: JSON escapes, quotes, whitespace, non-ASCII,
# numbers the strict decoder reads differently or refuses.
_EDGES = [
    "",
    " ",
    '"',
    "\\",
    "\\u0041",
    '\\"',
    "\x7f",
    "\x1f",
    "\t",
    "\u00e9",
    "\ud800",
    "\U0001f600",
    "0",
    "01",
    "-1",
    "1.0",
    "1e3",
    "true",
    "null",
    "[]",
    "{}",
    ",",
    ":",
    "A",
    "D",
    "a",
    "12155550121",
    '","',
    '"],"',
    "\u2028",
]


def _or_valid(valid: str, other: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A claim's valid text half of the time: a deviation in one claim alone is what tells
    whether the fast path checks that claim."""
    return st.one_of(st.just(valid), st.just(valid), other)


@settings(max_examples=600, deadline=None)
@given(
    attest=_or_valid("A", st.sampled_from(["B", "C", "D", "a", "", "AB", '"', "\\u0041", " A"])),
    dests=st.one_of(
        st.just(["12155550131"]),
        st.lists(st.one_of(st.text(max_size=12), st.sampled_from(_EDGES)), max_size=3),
    ),
    iat=_or_valid(
        str(NOW),
        st.one_of(
            st.integers(-(10**20), 10**20).map(str),
            st.sampled_from(["01", "1.0", "1e3", "-0", "0", "true", '"1"', "1" * 19, "1" * 18]),
        ),
    ),
    orig=_or_valid("12155550121", st.one_of(st.text(max_size=12), st.sampled_from(_EDGES))),
    origid=_or_valid(ORIGID, st.one_of(st.text(max_size=40), st.sampled_from(_EDGES))),
)
@example(attest="A", dests=["12155550131"], iat=str(NOW), orig="12155550121", origid=ORIGID)
@example(attest="D", dests=["12155550131"], iat=str(NOW), orig="12155550121", origid=ORIGID)
@example(attest="A", dests=[], iat=str(NOW), orig="12155550121", origid=ORIGID)
@example(attest="A", dests=[""], iat=str(NOW), orig="12155550121", origid=ORIGID)
@example(attest="A", dests=["1"], iat="0", orig="12155550121", origid=ORIGID)
@example(attest="A", dests=["1"], iat="01", orig="12155550121", origid=ORIGID)
@example(attest="A", dests=["1"], iat="-1", orig="12155550121", origid=ORIGID)
@example(attest="A", dests=["1"], iat=str(NOW), orig="", origid=ORIGID)
@example(attest="A", dests=["1"], iat=str(NOW), orig="1", origid="")
@example(attest="A", dests=["a\\"], iat=str(NOW), orig="1", origid=ORIGID)
@example(attest="A", dests=["1"], iat=str(NOW), orig="\u00e9", origid=ORIGID)
@example(attest="A", dests=['1""2'], iat=str(NOW), orig="1", origid=ORIGID)
@example(attest="A", dests=['1" , "2'], iat=str(NOW), orig="1", origid=ORIGID)
def test_fast_path_agrees_on_built_claims(
    attest: str, dests: list[str], iat: str, orig: str, origid: str
) -> None:
    """Claims written into the canonical template without escaping (so many are not JSON at
    all, or are JSON with escapes, spaces or non-ASCII): whatever the fast path accepts, the
    general path accepts too and reads the same."""
    dest = ",".join(f'"{d}"' for d in dests)
    raw = (
        f'{{"attest":"{attest}","dest":{{"tn":[{dest}]}},"iat":{iat},'
        f'"orig":{{"tn":"{orig}"}},"origid":"{origid}"}}'
    ).encode("utf-8", "surrogatepass")
    _assert_fast_path_agrees(raw)


@settings(max_examples=400, deadline=None)
@given(
    edits=st.lists(
        st.tuples(
            st.integers(0, len(_CANONICAL)),
            st.integers(0, 3),
            st.one_of(
                st.binary(max_size=3),
                st.sampled_from([e.encode("utf-8", "surrogatepass") for e in _EDGES]),
            ),
        ),
        min_size=1,
        max_size=3,
    )
)
def test_fast_path_agrees_on_mutated_claims(edits: list[tuple[int, int, bytes]]) -> None:
    """The canonical claims with bytes deleted, replaced or inserted anywhere."""
    raw = _CANONICAL
    for at, cut, insert in edits:
        at = min(at, len(raw))
        raw = raw[:at] + insert + raw[at + cut :]
    _assert_fast_path_agrees(raw)


def test_fast_path_refusals_through_the_verifier(
    verifier: Verifier, make_identity: MakeIdentity
) -> None:
    """Values the fast path declines meet the same verdicts as before: a duplicate member,
    an escape, a leading zero, an empty origid."""
    for raw, reason in (
        (
            _CANONICAL.replace(b'"attest":"A"', b'"attest":"A","attest":"B"'),
            Reason.INVALID_CLAIMS_JSON,
        ),
        (_CANONICAL.replace(b'"iat":', b'"iat":0'), Reason.INVALID_CLAIMS_JSON),
        (_CANONICAL.replace(ORIGID.encode(), b""), Reason.INVALID_CLAIM),
        (_CANONICAL.replace(b'"attest":"A"', b'"attest":"\\u0041"'), Reason.VALID),
    ):
        assert _fast_shaken_claims(raw) is None
        value = make_identity(header=canonical_json(SHAKEN_HEADER), claims=raw, raw=True)
        if reason is Reason.VALID:
            assert verifier.check(value, now=NOW).ok
        else:
            _reject(verifier, value, reason)


# -- the Identity value around the token ---------------------------------------------------------


def test_valid_identity(verifier: Verifier, identity: str) -> None:
    """The fixture identity is valid at NOW; the Verdict carries header and claims."""
    passport = verifier.verify(identity, now=NOW)
    assert passport.header == SHAKEN_HEADER
    assert passport.claims == SHAKEN_CLAIMS
    verdict = verifier.check(identity, now=NOW)
    assert verdict.ok
    assert verdict.reason is Reason.VALID
    assert verdict.claims == SHAKEN_CLAIMS


def test_compact_form_rejected(verifier: Verifier, identity: str) -> None:
    """RFC 8588 §3: compact form (..sig or hdr..sig) is not used in SHAKEN: compact-form."""
    h, _, s, params = _parts(identity)
    for token in (f"..{s}", f"{h}..{s}"):
        err = _reject(verifier, token + params, Reason.COMPACT_FORM)
        assert err.sip_status == 438
        assert err.lib_code == -231


def test_malformed_token_segments(verifier: Verifier, identity: str) -> None:
    """Two or four segments, or an empty header: malformed-token (-301)."""
    h, c, s, params = _parts(identity)
    for token in (f"{h}.{c}", f"{h}.{c}.{s}.{s}", f".{c}.{s}", f"{h}{c}{s}"):
        assert _reject(verifier, token + params, Reason.MALFORMED_TOKEN).lib_code == -301


@pytest.mark.parametrize("segment", [0, 1])
@pytest.mark.parametrize("bad", ["=", "+", "/", " ", "é"])
def test_non_base64url_segments(verifier: Verifier, identity: str, segment: int, bad: str) -> None:
    """Padding, '+', '/', whitespace or non-ASCII in header or claims: malformed-token."""
    parts = list(_parts(identity))
    parts[segment] = parts[segment][:10] + bad + parts[segment][11:]
    value = ".".join(parts[:3]) + parts[3]
    err = _reject(verifier, value, Reason.MALFORMED_TOKEN)
    assert err.lib_code == (-201 if segment == 0 else -231)


def test_padded_segments_rejected(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """B64URL with '=' padding added (a common encoder mistake) is refused."""
    value = make_identity(claims_update={"x": "ab"})
    h, c, s, params = _parts(value)
    pad = "=" * (-len(c) % 4) or "===="
    _reject(verifier, f"{h}.{c}{pad}.{s}{params}", Reason.MALFORMED_TOKEN)


# -- JWS header --------------------------------------------------------------------------------


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", "ES256K", "es256", "", None])
def test_header_alg_not_es256(
    verifier: Verifier, make_identity: MakeIdentity, alg: str | None
) -> None:
    """JWS alg other than ES256 (incl. none, HMAC): unsupported-alg (437, lib -202)."""
    header = {**SHAKEN_HEADER, "alg": alg}
    value = make_identity(
        header=canonical_json(header), claims=canonical_json(SHAKEN_CLAIMS), raw=True
    )
    err = _reject(verifier, value, Reason.UNSUPPORTED_ALG)
    assert err.sip_status == 437
    assert err.lib_code == -202
    assert err.header["alg"] == alg


def test_header_alg_missing(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """No alg in the JWS header: unsupported-alg (never defaulted from the token)."""
    header = {k: v for k, v in SHAKEN_HEADER.items() if k != "alg"}
    _reject(verifier, make_identity(header=header), Reason.UNSUPPORTED_ALG)


def test_alg_none_with_empty_signature(verifier: Verifier, identity: str) -> None:
    """The classic alg=none attack (unsigned token, empty signature) is refused."""
    header = b64url_encode(canonical_json({**SHAKEN_HEADER, "alg": "none"}))
    _, c, _, params = _parts(identity)
    verdict = verifier.check(f"{header}.{c}.{params}", now=NOW)
    assert not verdict
    assert verdict.reason in {Reason.UNSUPPORTED_ALG, Reason.MALFORMED_SIGNATURE}


def test_hs256_key_confusion(
    verifier: Verifier, public_key: ec.EllipticCurvePublicKey, identity: str
) -> None:
    """An HS256 token MACed with the public key bytes as secret is refused (no key confusion)."""
    header = b64url_encode(canonical_json({**SHAKEN_HEADER, "alg": "HS256"}))
    _, c, _, params = _parts(identity)
    for secret in (
        public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public_key.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        ),
    ):
        mac = hmac.new(secret, f"{header}.{c}".encode(), hashlib.sha256).digest()
        value = f"{header}.{c}.{b64url_encode(mac)}{params}"
        verdict = verifier.check(value, now=NOW)
        assert not verdict
        assert verdict.reason in {Reason.UNSUPPORTED_ALG, Reason.MALFORMED_SIGNATURE}


@pytest.mark.parametrize("typ", ["JWT", "PASSPORT", "Passport", "", 1, None])
def test_header_typ(verifier: Verifier, make_identity: MakeIdentity, typ: object) -> None:
    """RFC 8225 §4.1: typ MUST be "passport" (case-sensitive): invalid-typ (-204)."""
    err = _reject(verifier, make_identity(update={"typ": typ}), Reason.INVALID_TYP)
    assert err.lib_code == -204


def test_header_typ_missing(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """No typ: invalid-typ."""
    _reject(verifier, make_identity(drop=("typ",)), Reason.INVALID_TYP)


@pytest.mark.parametrize("ppt", ["div", "rcd", "SHAKEN", "", None])
def test_header_ppt_mismatch(verifier: Verifier, make_identity: MakeIdentity, ppt: object) -> None:
    """A JWS ppt other than shaken under an Identity ppt=shaken: ppt-mismatch (438, -203)."""
    err = _reject(verifier, make_identity(update={"ppt": ppt}), Reason.PPT_MISMATCH)
    assert err.sip_status == 438
    assert err.lib_code == -203


def test_header_ppt_missing(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """A baseline PASSporT (no ppt) is not a SHAKEN PASSporT: ppt-mismatch, with or without
    the Identity ppt parameter."""
    _reject(verifier, make_identity(drop=("ppt",)), Reason.PPT_MISMATCH)
    _reject(
        verifier,
        make_identity(drop=("ppt",), params=f";info=<{X5U}>;alg=ES256"),
        Reason.PPT_MISMATCH,
    )


def test_header_x5u_missing(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """No x5u in the header: missing-x5u (436, -205)."""
    err = _reject(verifier, make_identity(drop=("x5u",)), Reason.MISSING_X5U)
    assert err.sip_status == 436
    assert err.lib_code == -205


@pytest.mark.parametrize(
    "x5u",
    [
        "https://other.example.org/sti.pem",
        "https://CERT.example.org/sti.pem",  # simple string comparison, RFC 3986 §6.2.1
        "https://cert.example.org:443/sti.pem",
        X5U + "/",
        X5U + " ",
        "",
        ["https://cert.example.org/sti.pem"],
    ],
)
def test_header_x5u_differs_from_info(
    verifier: Verifier, make_identity: MakeIdentity, x5u: object
) -> None:
    """RFC 8224 §4.1: x5u equals info by simple string comparison, else x5u-mismatch (436)."""
    err = _reject(verifier, make_identity(update={"x5u": x5u}), Reason.X5U_MISMATCH)
    assert err.lib_code == -205


def test_header_extra_members_accepted(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """Unknown JWS header members (e.g. kid) do not fail verification."""
    assert verifier.check(make_identity(update={"kid": "k1", "zzz": [1]}), now=NOW).ok


@pytest.mark.parametrize(
    "header",
    [
        b"not json",
        b"[1,2]",
        b'"passport"',
        b"null",
        b'{"alg":"ES256","alg":"ES256","ppt":"shaken","typ":"passport","x5u":"'
        + X5U.encode()
        + b'"}',
        b'{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"' + X5U.encode() + b'","x":NaN}',
        b'{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"' + X5U.encode() + b'","x":"\xff"}',
    ],
)
def test_invalid_jws_header(verifier: Verifier, make_identity: MakeIdentity, header: bytes) -> None:
    """A header that is not a strict JSON object (dupes, NaN, bad UTF-8): invalid-jws-header."""
    value = make_identity(header=header, claims=canonical_json(SHAKEN_CLAIMS), raw=True)
    assert _reject(verifier, value, Reason.INVALID_JWS_HEADER).lib_code == -201


def test_oversized_header(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """A JWS header segment over the size cap: invalid-jws-header, before JSON parsing."""
    value = make_identity(update={"pad": "x" * 5000})
    _reject(verifier, value, Reason.INVALID_JWS_HEADER)


# -- claims ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "claims",
    [
        b"not json",
        b"[1]",
        b"1700000000",
        b'"claims"',
        b"null",
        b'{"attest":"A","attest":"A","dest":{"tn":["1"]},"iat":1,"orig":{"tn":"2"},"origid":"x"}',
        b'{"attest":"A","dest":{"tn":["1"],"tn":["9"]},"iat":1,"orig":{"tn":"2"},"origid":"x"}',
        b'{"attest":"A","dest":{"tn":["1"]},"iat":NaN,"orig":{"tn":"2"},"origid":"x"}',
        b'{"attest":"A","dest":{"tn":["1"]},"iat":Infinity,"orig":{"tn":"2"},"origid":"x"}',
        b'{"attest":"\xc3","dest":{"tn":["1"]},"iat":1,"orig":{"tn":"2"},"origid":"x"}',
        b'{"attest":"A"',
        b"[" * 2000 + b"]" * 2000,  # deep nesting: JSONError, never RecursionError
    ],
)
def test_invalid_claims_json(
    verifier: Verifier, make_identity: MakeIdentity, claims: bytes
) -> None:
    """Claims that are not a strict JSON object: invalid-claims-json (438 Invalid PASSporT)."""
    value = make_identity(header=canonical_json(SHAKEN_HEADER), claims=claims, raw=True)
    err = _reject(verifier, value, Reason.INVALID_CLAIMS_JSON)
    assert err.sip_reason == "Invalid PASSporT"
    assert err.lib_code == -231


def test_oversized_claims(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """A claims segment over the size cap: invalid-claims-json, before JSON parsing."""
    _reject(verifier, make_identity(claims_update={"pad": "x" * 4700}), Reason.INVALID_CLAIMS_JSON)


@pytest.mark.parametrize("claim", ["attest", "dest", "iat", "orig", "origid"])
def test_missing_claim(verifier: Verifier, make_identity: MakeIdentity, claim: str) -> None:
    """Each SHAKEN claim is required (RFC 8225 §5, RFC 8588): missing-claim names it."""
    err = _reject(verifier, make_identity(drop_claims=(claim,)), Reason.MISSING_CLAIM)
    assert claim in err.message
    assert err.sip_reason == "Invalid PASSporT"
    assert claim not in err.claims


def test_all_claims_missing(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """An empty claims object lists every missing claim."""
    err = _reject(verifier, make_identity(claims={}), Reason.MISSING_CLAIM)
    for claim in ("attest", "dest", "iat", "orig", "origid"):
        assert repr(claim) in err.message


@pytest.mark.parametrize(
    "update",
    [
        {"attest": "Z"},
        {"attest": "a"},
        {"attest": ""},
        {"attest": ["A"]},
        {"attest": 1},
        {"dest": {"tn": DEST}},  # a string, not an array (RFC 8946 div-o quirk)
        {"dest": {"tn": []}},
        {"dest": {"tn": [1]}},
        {"dest": {"tn": [""]}},
        {"dest": {"uri": "sip:a@b"}},
        {"dest": {}},
        {"dest": [DEST]},  # RFC 8224 §4.1 "dest array" (errata 5715)
        {"dest": DEST},
        {"iat": str(NOW)},  # RFC 8225 §7.1 / RFC 8588 §6 string iat (errata 5985, 6656)
        {"iat": float(NOW)},
        {"iat": NOW + 0.5},
        {"iat": True},
        {"iat": 0},
        {"iat": -1},
        {"iat": [NOW]},
        {"orig": {"tn": ORIG, "uri": "sip:a@b"}},
        {"orig": {"tn": [ORIG]}},
        {"orig": {"tn": ""}},
        {"orig": {"tn": 12155550121}},
        {"orig": {}},
        {"orig": ORIG},
        {"origid": ""},
        {"origid": 5},
        {"origid": [ORIGID]},
    ],
)
def test_invalid_claim(
    verifier: Verifier, make_identity: MakeIdentity, update: dict[str, Any]
) -> None:
    """Claims with a wrong type or value: invalid-claim (438 Invalid PASSporT, -231)."""
    err = _reject(verifier, make_identity(claims_update=update), Reason.INVALID_CLAIM)
    assert err.lib_code == -231
    name = next(iter(update))
    assert name in err.message
    assert err.claims[name] == update[name]


def test_invalid_wins_over_missing(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """An invalid claim and a missing one: invalid-claim, and the message lists both."""
    err = _reject(
        verifier,
        make_identity(claims_update={"attest": "Z"}, drop_claims=("origid",)),
        Reason.INVALID_CLAIM,
    )
    assert "attest" in err.message
    assert "origid" in err.message


@pytest.mark.parametrize(
    "update",
    [
        {"rcd": {"nam": "Alice"}},
        {"crn": "reason"},
        {"div": {"tn": "12155550100"}},
        {"dest": {"tn": [DEST], "uri": ["sip:bob@example.com"]}},
        {"dest": {"uri": ["sip:bob@example.com"]}},
        {"orig": {"uri": "sip:alice@example.com"}},
        {"attest": "B"},
        {"attest": "C"},
        {"origid": "not-a-uuid"},
        {"orig": {"tn": "+1-215-555-0121"}},
    ],
)
def test_lenient_claims_accepted(
    verifier: Verifier, make_identity: MakeIdentity, update: dict[str, Any]
) -> None:
    """Extension claims, uri identities, B/C attestation, non-UUID origid and non-canonical tn
    are accepted by default (RFC 8225 §8.3: claims may be appended)."""
    verdict = verifier.check(make_identity(claims_update=update), now=NOW)
    assert verdict.ok, verdict.message
    assert verdict.claims == {**SHAKEN_CLAIMS, **update}


# -- canonical form and strict mode ------------------------------------------------------------


_HEADER_TEXT = json.dumps(SHAKEN_HEADER, separators=(", ", ": "))
_REVERSED_CLAIMS = json.dumps(dict(reversed(list(SHAKEN_CLAIMS.items()))), separators=(",", ":"))
_ESCAPED_CLAIMS = canonical_json(SHAKEN_CLAIMS).decode().replace("A", "\\u0041", 1)
_H = "PASSporT header is not in RFC 8225 §9 canonical JSON form"
_C = "PASSporT claims are not in RFC 8225 §9 canonical JSON form"
NON_CANONICAL = [
    pytest.param(_HEADER_TEXT, SHAKEN_CLAIMS, _H, id="header-whitespace"),
    pytest.param(SHAKEN_HEADER, _REVERSED_CLAIMS, _C, id="claims-key-order"),
    pytest.param(SHAKEN_HEADER, json.dumps(SHAKEN_CLAIMS, indent=1), _C, id="claims-whitespace"),
    pytest.param(SHAKEN_HEADER, _ESCAPED_CLAIMS, _C, id="claims-escaped-ascii"),
    pytest.param(
        SHAKEN_HEADER,
        {**SHAKEN_CLAIMS, "origid": "call-1234"},
        "origid is not a UUID (RFC 8588 §5)",
        id="non-uuid-origid",
    ),
    pytest.param(
        SHAKEN_HEADER,
        {**SHAKEN_CLAIMS, "orig": {"tn": "+12155550121"}},
        "orig.tn is not a canonical telephone number (RFC 8224 §8.3)",
        id="orig-tn-plus",
    ),
    pytest.param(
        SHAKEN_HEADER,
        {**SHAKEN_CLAIMS, "dest": {"tn": ["1-215-555-0131"]}},
        "dest.tn holds a non-canonical telephone number (RFC 8224 §8.3)",
        id="dest-tn-dash",
    ),
]


@pytest.mark.parametrize(("header", "claims", "warning"), NON_CANONICAL)
def test_non_canonical_lenient_then_strict(
    public_key: ec.EllipticCurvePublicKey,
    make_identity: MakeIdentity,
    header: Any,
    claims: Any,
    warning: str,
) -> None:
    """Accepted by default with a warning (R15, R20), rejected as non-canonical when strict;
    the warning and the refusal name the deviation."""
    value = make_identity(header=header, claims=claims)
    lenient = Verifier(public_key).verify(value, now=NOW)
    assert lenient.warnings == [warning]
    strict = Verifier(public_key, policy=VerifyPolicy(strict=True))
    err = _reject(strict, value, Reason.NON_CANONICAL)
    assert err.sip_reason == "Invalid PASSporT" and err.message == warning


def test_canonical_token_has_no_warnings(verifier: Verifier, identity: str) -> None:
    """A Signer-made token is canonical: no warnings, and strict mode accepts it."""
    assert verifier.verify(identity, now=NOW).warnings == []
    strict = Verifier(verifier.source, policy=VerifyPolicy(strict=True))
    assert strict.check(identity, now=NOW).ok


def test_strict_requires_ppt_param(
    public_key: ec.EllipticCurvePublicKey, make_identity: MakeIdentity
) -> None:
    """No Identity ppt parameter: a warning by default, ppt-mismatch when strict."""
    value = make_identity(params=f";info=<{X5U}>;alg=ES256")
    passport = Verifier(public_key).verify(value, now=NOW)
    assert passport.warnings == ["Identity header has no ppt parameter (RFC 8224 §4.1)"]
    err = _reject(Verifier(public_key, policy=VerifyPolicy(strict=True)), value,
                  Reason.PPT_MISMATCH)  # fmt: skip
    assert err.message == "Identity header has no ppt parameter (strict mode)"


def test_lone_surrogate_escape_in_claims(
    public_key: ec.EllipticCurvePublicKey, make_identity: MakeIdentity
) -> None:
    """A claims string holding an unpaired UTF-16 surrogate escape ("\\ud800", not a Unicode
    character, RFC 8259 §8.2 / RFC 7493 §2.1) is an invalid PASSporT for the strict verifier,
    never an internal error; the lenient verifier's warnings must not crash either."""
    claims = canonical_json(SHAKEN_CLAIMS)[:-1].decode() + ',"x":"\\ud800"}'
    # The Signer refuses to sign such JSON, so sign the raw bytes.
    value = make_identity(header=canonical_json(SHAKEN_HEADER), claims=claims, raw=True)
    strict = Verifier(public_key, policy=VerifyPolicy(strict=True))
    verdict = strict.check(value, now=NOW)
    assert verdict.reason is not Reason.INTERNAL_ERROR, verdict.message
    assert not verdict
    assert verdict.sip_status == 438
    with pytest.raises(VerificationError):
        strict.verify(value, now=NOW)
    lenient = Verifier(public_key)
    try:
        passport = lenient.verify(value, now=NOW)
    except VerificationError as exc:
        assert exc.sip_status == 438
    else:
        assert isinstance(passport.warnings, list)


# -- JSON a hostile signer may send (issue 7, items 6 and 7) ------------------------------------


def _claims_with(extra: str) -> bytes:
    return canonical_json(SHAKEN_CLAIMS)[:-1] + b',"x":' + extra.encode() + b"}"


def _header_with(extra: str) -> bytes:
    return canonical_json(SHAKEN_HEADER)[:-1] + b',"x":' + extra.encode() + b"}"


HOSTILE_JSON = {
    "overflow": "1e400",
    "negative-overflow": "-1e400",
    "overflow-in-array": "[1,2E+999]",
    "nested-40": "[" * 40 + "]" * 40,
    "nested-990": "[" * 990 + "]" * 990,
}


@pytest.mark.parametrize("strict", [False, True], ids=["lenient", "strict"])
@pytest.mark.parametrize("extra", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_hostile_json_in_claims(
    public_key: ec.EllipticCurvePublicKey, make_identity: MakeIdentity, extra: str, strict: bool
) -> None:
    """A number that overflows to inf or claims nested deeper than MAX_DEPTH are refused
    when parsing (invalid-claims-json, 438), lenient or strict.  They used to verify as valid
    with a .warnings/.to_dict() that raised (lenient), or give internal-error (strict)."""
    value = make_identity(
        header=canonical_json(SHAKEN_HEADER), claims=_claims_with(extra), raw=True
    )
    verifier = Verifier(public_key, policy=VerifyPolicy(strict=strict))
    err = _reject(verifier, value, Reason.INVALID_CLAIMS_JSON)
    assert err.lib_code == -231
    assert_verdict_readable(verifier.check(value, now=NOW))


@pytest.mark.parametrize("extra", HOSTILE_JSON.values(), ids=HOSTILE_JSON.keys())
def test_hostile_json_in_header(
    verifier: Verifier, make_identity: MakeIdentity, extra: str
) -> None:
    """The same in the JWS header: invalid-jws-header (438)."""
    value = make_identity(
        header=_header_with(extra), claims=canonical_json(SHAKEN_CLAIMS), raw=True
    )
    assert _reject(verifier, value, Reason.INVALID_JWS_HEADER).lib_code == -201
    assert_verdict_readable(verifier.check(value, now=NOW))


def test_nesting_a_passport_extension_needs_is_accepted(
    verifier: Verifier, make_identity: MakeIdentity
) -> None:
    """A jCard-shaped extension claim (RFC 8225 rcd/jcd, ~7 levels) stays well inside the
    limit: valid, with readable warnings and to_dict()."""
    jcard = ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", "Alice"]]]
    value = make_identity(claims_update={"rcd": {"jcd": jcard, "nam": "Alice"}})
    verdict = verifier.check(value, now=NOW)
    assert verdict.ok, verdict.message
    assert assert_verdict_readable(verdict)["claims"]["rcd"]["jcd"] == jcard


@pytest.mark.parametrize("ppt", [["shaken"], [], {"shaken": 1}, 1, None, True])
def test_header_ppt_of_another_json_type(
    verifier: Verifier, make_identity: MakeIdentity, ppt: Any
) -> None:
    """A JWS header ppt that is not a string (a list, an object...): ppt-mismatch (438), never
    internal-error.  Found by tools/fuzz.py: a list or object ppt made the check for div/rcd
    PASSporTs raise "unhashable type" (it looked the value up in a set)."""
    value = make_identity(update={"ppt": ppt})
    _reject(verifier, value, Reason.PPT_MISMATCH)
    assert_verdict_readable(verifier.check(value, now=NOW))


# -- crit (issue 7, item 8) --------------------------------------------------------------------

CRIT_VALUES: dict[str, Any] = {
    "unknown-name": ["foo"],
    "empty-list": [],
    "not-a-list": "foo",
    "b64": ["b64"],
    "registered-name": ["alg"],
    "null": None,
}


@pytest.mark.parametrize("crit", CRIT_VALUES.values(), ids=CRIT_VALUES.keys())
def test_crit_is_refused(
    verifier: Verifier,
    make_identity: MakeIdentity,
    private_key: ec.EllipticCurvePrivateKey,
    crit: Any,
) -> None:
    """RFC 7515 §4.1.11: a recipient MUST reject a JWS whose crit lists an extension it does
    not understand (and crit must be a non-empty list of extension names); the PASSporT
    extensions we support (RFC 8225 §8.1, RFC 8588) define none, so any crit is refused:
    unsupported-crit, 438.  These all used to verify as valid."""
    header = {**SHAKEN_HEADER, "crit": crit}
    if crit == ["b64"]:
        header["b64"] = False  # RFC 7797 unencoded payload: must not be read as a PASSporT
    value = make_identity(
        header=json.dumps(header).encode(), claims=canonical_json(SHAKEN_CLAIMS), raw=True
    )
    err = _reject(verifier, value, Reason.UNSUPPORTED_CRIT)
    assert (err.sip_status, err.sip_reason) == (438, "Invalid Identity Header")
    assert err.verstat == "No-TN-Validation"
    assert err.header["crit"] == crit  # the decoded header is still reported


def test_crit_message_shows_the_value_cut_to_64_characters(
    verifier: Verifier, make_identity: MakeIdentity
) -> None:
    """The refusal shows crit as received (its repr, cut at 64 characters: a header can be
    large) and says why, for the operator reading the log."""
    for crit, shown in (
        (["foo"], "['foo']"),
        (["x" * 100], repr(["x" * 100])[:64]),
    ):
        header = {**SHAKEN_HEADER, "crit": crit}
        value = make_identity(
            header=json.dumps(header).encode(), claims=canonical_json(SHAKEN_CLAIMS), raw=True
        )
        err = _reject(verifier, value, Reason.UNSUPPORTED_CRIT)
        assert err.message == (
            f"PASSporT header crit {shown} names parameters this verifier does not support "
            "(RFC 7515 §4.1.11)"
        )


def test_alg_is_checked_before_crit(verifier: Verifier, make_identity: MakeIdentity) -> None:
    """An alg-confused header with crit still reports unsupported-alg (checked first)."""
    header = {**SHAKEN_HEADER, "alg": "none", "crit": ["foo"]}
    value = make_identity(
        header=json.dumps(header).encode(), claims=canonical_json(SHAKEN_CLAIMS), raw=True
    )
    _reject(verifier, value, Reason.UNSUPPORTED_ALG)


# -- signature ---------------------------------------------------------------------------------


def test_flip_any_claims_character_never_valid(verifier: Verifier, identity: str) -> None:
    """Changing any one character of the claims segment never leaves a valid PASSporT: the
    claims no longer decode or type-check, or they do and the signature fails over them."""
    h, c, s, params = _parts(identity)
    seen = set()
    for i in range(len(c)):
        verdict = verifier.check(f"{h}.{replace_char(c, i)}.{s}{params}", now=NOW)
        assert verdict.reason in _CLAIMS_FLIP_OUTCOMES, (i, verdict.reason, verdict.message)
        seen.add(verdict.reason)
    # Both kinds occur: flips that break the JSON and flips that only the signature catches.
    assert Reason.INVALID_CLAIMS_JSON in seen and Reason.BAD_SIGNATURE in seen, seen


# What a changed claims segment can end in (RFC 8225 §5 claims, RFC 8224 §6.2 steps 4-5).
_CLAIMS_FLIP_OUTCOMES = frozenset(
    {
        Reason.MALFORMED_TOKEN,
        Reason.INVALID_CLAIMS_JSON,
        Reason.MISSING_CLAIM,
        Reason.INVALID_CLAIM,
        Reason.STALE,
        Reason.IAT_IN_FUTURE,
        Reason.BAD_SIGNATURE,
    }
)


def test_changed_claims_with_old_signature(verifier: Verifier, identity: str) -> None:
    """Re-encoded claims (attest A -> B, another orig) under the old signature: bad-signature."""
    h, _, s, params = _parts(identity)
    for update in ({"attest": "B"}, {"orig": {"tn": "12155550199"}}, {"iat": NOW + 1}):
        c = b64url_encode(canonical_json({**SHAKEN_CLAIMS, **update}))
        err = _reject(verifier, f"{h}.{c}.{s}{params}", Reason.BAD_SIGNATURE)
        assert err.verstat == "TN-Validation-Failed"
        assert err.lib_code == -251
        assert err.claims == {**SHAKEN_CLAIMS, **update}


def test_changed_header_with_old_signature(verifier: Verifier, identity: str) -> None:
    """Header re-encoded with an extra member under the old signature: bad-signature."""
    _, c, s, params = _parts(identity)
    h = b64url_encode(canonical_json({**SHAKEN_HEADER, "kid": "1"}))
    _reject(verifier, f"{h}.{c}.{s}{params}", Reason.BAD_SIGNATURE)


def test_flip_each_signature_character(verifier: Verifier, identity: str) -> None:
    """Changing any one signature character (incl. the last, partial group): bad-signature."""
    h, c, s, params = _parts(identity)
    for i in range(len(s)):
        verdict = verifier.check(f"{h}.{c}.{replace_char(s, i)}{params}", now=NOW)
        assert_verdict(verdict, Reason.BAD_SIGNATURE)


def test_signature_from_other_key(make_identity: MakeIdentity, identity: str) -> None:
    """A signature by another P-256 key: bad-signature."""
    other = Verifier(ec.generate_private_key(ec.SECP256R1()).public_key())
    _reject(other, identity, Reason.BAD_SIGNATURE)


def test_der_signature(
    verifier: Verifier, private_key: ec.EllipticCurvePrivateKey, identity: str
) -> None:
    """A DER (ASN.1) ECDSA signature instead of raw r||s: malformed-signature (-253)."""
    h, c, _, params = _parts(identity)
    der = private_key.sign(f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    assert len(der) != 64
    err = _reject(verifier, f"{h}.{c}.{b64url_encode(der)}{params}", Reason.MALFORMED_SIGNATURE)
    assert err.lib_code == -253
    assert err.verstat == "TN-Validation-Failed"


@pytest.mark.parametrize("size", [0, 1, 32, 63, 65, 66, 96, 128])
def test_wrong_signature_length(verifier: Verifier, identity: str, size: int) -> None:
    """Signatures that are not exactly 64 bytes: malformed-signature."""
    h, c, s, params = _parts(identity)
    sig = (b64url_decode(s) * 2)[:size]
    _reject(verifier, f"{h}.{c}.{b64url_encode(sig)}{params}", Reason.MALFORMED_SIGNATURE)


@pytest.mark.parametrize("bad", ["+", "/", "=", " ", "é"])
def test_signature_not_base64url(verifier: Verifier, identity: str, bad: str) -> None:
    """A signature with characters outside base64url (86 chars long): malformed-signature."""
    h, c, s, params = _parts(identity)
    sig = s[:40] + bad + s[41:]
    assert len(sig) == 86
    err = _reject(verifier, f"{h}.{c}.{sig}{params}", Reason.MALFORMED_SIGNATURE)
    assert err.lib_code == -255


def test_swapped_r_and_s(verifier: Verifier, identity: str) -> None:
    """s||r instead of r||s: bad-signature."""
    h, c, s, params = _parts(identity)
    raw = b64url_decode(s)
    _reject(verifier, f"{h}.{c}.{b64url_encode(raw[32:] + raw[:32])}{params}", Reason.BAD_SIGNATURE)


@pytest.mark.parametrize("sig", [bytes(64), b"\xff" * 64, bytes(32) + b"\x01" * 32])
def test_degenerate_signatures(verifier: Verifier, identity: str, sig: bytes) -> None:
    """r or s zero, or beyond the group order: bad-signature (not an exception)."""
    h, c, _, params = _parts(identity)
    _reject(verifier, f"{h}.{c}.{b64url_encode(sig)}{params}", Reason.BAD_SIGNATURE)


def test_signature_over_other_input(
    verifier: Verifier, private_key: ec.EllipticCurvePrivateKey, identity: str
) -> None:
    """A valid signature of the right key over other bytes (header only): bad-signature."""
    h, c, _, params = _parts(identity)
    sig = raw_signature(private_key, h.encode())
    _reject(verifier, f"{h}.{c}.{b64url_encode(sig)}{params}", Reason.BAD_SIGNATURE)


def test_signature_checked_over_received_bytes(
    verifier: Verifier, make_identity: MakeIdentity
) -> None:
    """A non-canonical but correctly signed token verifies (the received bytes are signed)."""
    value = make_identity(claims=json.dumps(SHAKEN_CLAIMS, indent=2))
    assert verifier.check(value, now=NOW).ok


def test_verbatim_sign_json_round_trip(signer: Signer, verifier: Verifier) -> None:
    """A token from sign_json(verbatim=True) with canonical text is identical to sign_json of
    the objects, and verifies."""
    a = signer.sign_json(
        canonical_json(SHAKEN_HEADER), canonical_json(SHAKEN_CLAIMS), verbatim=True
    )
    b = signer.sign_json(SHAKEN_HEADER, SHAKEN_CLAIMS)
    assert a.split(".")[:2] == b.split(".")[:2]
    assert verifier.check(a + PARAMS, now=NOW).ok
    assert ORIGID in b64url_decode(a.split(".")[1]).decode()


@pytest.mark.parametrize(
    ("update", "reason", "message", "lib_code"),
    [
        ({"attest": "Z"}, "invalid-claim", "attest must be A, B or C, not 'Z'", -231),
        ({"dest": "x"}, "invalid-claim", "dest must be an object", -231),
        ({"dest": {}}, "invalid-claim", 'dest must hold "tn" and/or "uri"', -231),
        ({"dest": {"tn": []}}, "invalid-claim", "dest.tn must be a non-empty array of strings",
         -231),
        ({"dest": {"uri": [""]}}, "invalid-claim",
         "dest.uri must be a non-empty array of strings", -231),
        ({"iat": "1"}, "invalid-claim", "iat must be an integer NumericDate, not str", -231),
        ({"iat": 0}, "invalid-claim", "iat must be positive", -231),
        ({"orig": "x"}, "invalid-claim", "orig must be an object", -231),
        ({"orig": {}}, "invalid-claim", 'orig must hold exactly one of "tn" or "uri"', -231),
        ({"orig": {"tn": ""}}, "invalid-claim", "orig.tn must be a non-empty string", -231),
        ({"origid": ""}, "invalid-claim", "origid must be a non-empty string", -231),
        ({"attest": "Z", "origid": None}, "invalid-claim",
         "attest must be A, B or C, not 'Z'; missing claim 'origid'", -231),
        ({"iat": None}, "missing-claim", "missing claim 'iat'", -232),  # libsecsipid: iat 0
        ({"iat": None, "attest": "Z"}, "invalid-claim",
         "attest must be A, B or C, not 'Z'; missing claim 'iat'", -231),
        ({"attest": None, "origid": None}, "missing-claim",
         "missing claim 'attest'; missing claim 'origid'", -231),
    ],
)  # fmt: skip
def test_claim_refusals_list_every_problem(
    update: dict[str, Any], reason: str, message: str, lib_code: int
) -> None:
    """Every problem of the claims is reported at once, invalid ones before missing ones; a
    missing iat alone is libsecsipid's "expired" (-232), anything else its -231."""
    claims = {k: v for k, v in {**SHAKEN_CLAIMS, **update}.items() if v is not None}
    with pytest.raises(VerificationError) as exc:
        check_shaken_claims(claims)
    assert (exc.value.reason, exc.value.message, exc.value.lib_code) == (reason, message, lib_code)


_SIG = "A" * 86  # 64 zero bytes: well formed, never a valid signature


@pytest.mark.parametrize(
    ("token", "reason", "message"),
    [
        ("a.b", "malformed-token", "PASSporT has 2 segments, not 3"),
        ("..c2ln", "compact-form", "compact-form PASSporT: SHAKEN requires the full form"),
        (".e30.sig", "malformed-token", "PASSporT header segment is empty"),
        ("e" * 6145 + ".e30." + _SIG, "invalid-jws-header", "PASSporT header is too large"),
        ("e3=.e30." + _SIG, "malformed-token", "PASSporT header is not unpadded base64url"),
        ("e30x.e30." + _SIG, "invalid-jws-header",
         "PASSporT header: not JSON: Extra data: line 1 column 3 (char 2)"),
        ("W10.e30." + _SIG, "invalid-jws-header", "PASSporT header is not a JSON object"),
        ("e30." + "e" * 6145 + "." + _SIG, "invalid-claims-json", "PASSporT claims are too large"),
        ("e30.e3=." + _SIG, "malformed-token", "PASSporT claims are not unpadded base64url"),
        ("e30.W10." + _SIG, "invalid-claims-json", "PASSporT claims are not a JSON object"),
        ("e30.e30x." + _SIG, "invalid-claims-json",
         "PASSporT claims: not JSON: Extra data: line 1 column 3 (char 2)"),
        ("e30.e30.AAAA", "malformed-signature",
         "ES256 signature must be 64 bytes (86 base64url characters), got 4 characters"),
        ("e30.e30." + "=" * 86, "malformed-signature", "signature is not unpadded base64url"),
    ],
)  # fmt: skip
def test_decode_token_messages(token: str, reason: str, message: str) -> None:
    """Each structural refusal of a PASSporT says what was wrong with which segment."""
    with pytest.raises(VerificationError) as exc:
        decode_token(token)
    assert (exc.value.reason, exc.value.message) == (reason, message)


def test_header_segment_size_limit_and_cache() -> None:
    """A header segment of exactly 6144 characters is decoded (one more is refused unread,
    see above); a decoded header is kept, so the same segment is not decoded twice."""
    from secsipid._passport import MAX_SEGMENT_SIZE, _decode_header

    size = MAX_SEGMENT_SIZE * 3 // 4  # JSON bytes whose base64url is exactly the limit
    empty = len(canonical_json({**SHAKEN_HEADER, "pad": ""}))
    segment = b64url_encode(canonical_json({**SHAKEN_HEADER, "pad": "x" * (size - empty)}))
    assert len(segment) == MAX_SEGMENT_SIZE
    assert decode_token(f"{segment}.e30.{_SIG}").header["pad"] == "x" * (size - empty)
    assert _decode_header(segment) is _decode_header(segment)
    claims = b64url_encode(canonical_json({"pad": "x" * (size - len(b'{"pad":""}'))}))
    assert len(claims) == MAX_SEGMENT_SIZE
    assert decode_token(f"e30.{claims}.{_SIG}").claims["pad"].startswith("xxx")


def test_strict_refusal_lists_every_deviation(
    public_key: ec.EllipticCurvePublicKey, make_identity: MakeIdentity
) -> None:
    """Strict mode names every deviation at once, in one message."""
    value = make_identity(claims_update={"origid": "call-1234", "orig": {"tn": "+12155550121"}})
    err = _reject(Verifier(public_key, policy=VerifyPolicy(strict=True)), value,
                  Reason.NON_CANONICAL)  # fmt: skip
    assert err.message == (
        "origid is not a UUID (RFC 8588 §5); "
        "orig.tn is not a canonical telephone number (RFC 8224 §8.3)"
    )


def test_header_cache_is_bounded() -> None:
    """The decoded-header cache keeps at most 1,024 segments, then starts afresh: a flood of
    distinct headers cannot grow it without bound."""
    from secsipid import _passport

    segments = [b64url_encode(canonical_json({"n": n})) for n in range(1025)]
    for segment in segments[:1024]:
        _passport._decode_header(segment)
    assert len(_passport._HEADER_CACHE) == 1024
    _passport._decode_header(segments[1024])
    assert list(_passport._HEADER_CACHE) == [segments[1024]]


@pytest.mark.parametrize("dest", ["12155550131", ["12155550131"], 5, None])
def test_claim_warnings_take_any_decoded_claims(dest: object) -> None:
    """claim_warnings reads whatever a token decodes to (it serves the lenient path and
    ``VerifiedPassport.warnings``): a dest that is not an object is no dest.tn to judge, never
    an exception."""
    claims = {**SHAKEN_CLAIMS, "dest": dest, "orig": {"tn": "+1 215 555 0121"}}
    token = ".".join(b64url_encode(canonical_json(part)) for part in (SHAKEN_HEADER, claims))
    decoded = decode_token(token + "." + b64url_encode(b"\0" * 64))
    assert claim_warnings(decoded) == [
        "orig.tn is not a canonical telephone number (RFC 8224 §8.3)"
    ]
    canonical = {**claims, "dest": {"tn": ["12155550131", "+1-215"]}}
    token = ".".join(b64url_encode(canonical_json(part)) for part in (SHAKEN_HEADER, canonical))
    assert claim_warnings(decode_token(token + "." + b64url_encode(b"\0" * 64)))[-1] == (
        "dest.tn holds a non-canonical telephone number (RFC 8224 §8.3)"
    )
