"""Signing SHAKEN PASSporTs (RFC 8224 §6.1, RFC 8225, RFC 8588)."""

from __future__ import annotations

import json
import os
import re
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import DEST, NOW, ORIG, ORIGID, X5U, KeyFiles, requires_deterministic
from secsipid import (
    KeyLoadError,
    RichCallData,
    Signer,
    SigningError,
    Verifier,
    add_identity,
    b64url_decode,
    canonical_json,
    check_identity,
    new_origid,
    parse_identity,
)


def _split(token: str) -> tuple[bytes, bytes, bytes]:
    h, c, s = token.split(".")
    return b64url_decode(h), b64url_decode(c), b64url_decode(s)


def _verifies(key: ec.EllipticCurvePublicKey, token: str) -> bool:
    """Check the ES256 signature directly with cryptography (independent of Verifier)."""
    h, c, s = token.split(".")
    sig = b64url_decode(s)
    assert len(sig) == 64
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        key.verify(der, f"{h}.{c}".encode(), ec.ECDSA(hashes.SHA256()))
    except Exception:  # noqa: BLE001 - InvalidSignature or anything else means "does not verify"
        return False
    return True


# -- the token ---------------------------------------------------------------------------------


def test_header_and_claims_exactly_canonical(signer: Signer) -> None:
    """Header and claims are the RFC 8225 §9 canonical bytes of the expected objects."""
    header, claims, sig = _split(signer.sign(ORIG, DEST, "A", ORIGID, iat=NOW))
    assert header == canonical_json(
        {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
    )
    assert (
        header == b'{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"' + X5U.encode() + b'"}'
    )
    expected = {
        "attest": "A",
        "dest": {"tn": [DEST]},
        "iat": NOW,
        "orig": {"tn": ORIG},
        "origid": ORIGID,
    }
    assert claims == canonical_json(expected)
    assert json.loads(claims) == expected
    assert len(sig) == 64


def test_claim_key_order(signer: Signer) -> None:
    """RFC 8588 §8: keys in the order attest, dest, iat, orig, origid."""
    _, claims, _ = _split(signer.sign(ORIG, DEST, "B", iat=NOW))
    assert list(json.loads(claims)) == ["attest", "dest", "iat", "orig", "origid"]
    assert re.fullmatch(
        rb'\{"attest":"B","dest":\{"tn":\["\d+"\]\},"iat":\d+,"orig":\{"tn":"\d+"\},'
        rb'"origid":"[0-9a-f-]{36}"\}',
        claims,
    )


def test_signature_verifies_and_is_raw_64_bytes(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """The signature is raw r||s (RFC 7518 §3.4), 86 base64url chars, and verifies."""
    token = signer.sign(ORIG, DEST, "C", iat=NOW)
    assert len(token.split(".")[2]) == 86
    assert _verifies(public_key, token)


def test_tns_are_canonicalized(signer: Signer) -> None:
    """Numbers with separators and URIs become canonical TNs (RFC 8224 §8.3)."""
    token = signer.sign("+1 (215) 555-0121", "sip:+1-215-555-0131;npdi@h", "A", iat=NOW)
    claims = json.loads(_split(token)[1])
    assert claims["orig"] == {"tn": ORIG}
    assert claims["dest"] == {"tn": [DEST]}


def test_dest_sorted_and_deduplicated(signer: Signer) -> None:
    """Several dest TNs: canonical, sorted lexicographically and deduplicated (RFC 8225 §5.2.1)."""
    dests = ["+1-215-555-0199", "12155550131", "tel:+12155550131", "#123", "*67"]
    claims = json.loads(_split(signer.sign(ORIG, dests, "A", iat=NOW))[1])
    assert claims["dest"] == {"tn": sorted({"12155550199", "12155550131", "#123", "*67"})}
    assert claims["dest"]["tn"] == ["#123", "*67", "12155550131", "12155550199"]


def test_dest_tuple_and_single_element_list(signer: Signer) -> None:
    """A one-element list gives the same claims as a plain string."""
    a = signer.sign(ORIG, [DEST], "A", ORIGID, iat=NOW).split(".")[1]
    b = signer.sign(ORIG, (DEST,), "A", ORIGID, iat=NOW).split(".")[1]
    c = signer.sign(ORIG, DEST, "A", ORIGID, iat=NOW).split(".")[1]
    assert a == b == c


def test_hash_and_star_kept(signer: Signer) -> None:
    """'#' and '*' survive into the claims (RFC 8225 §5.2.1.1 tn-char)."""
    claims = json.loads(_split(signer.sign("*67#1", "#21#", "A", iat=NOW))[1])
    assert claims["orig"]["tn"] == "*67#1"
    assert claims["dest"]["tn"] == ["#21#"]


# -- origid ------------------------------------------------------------------------------------


def test_auto_origid_is_uuid4(signer: Signer) -> None:
    """An empty origid becomes a random canonical lowercase UUIDv4 (RFC 8588 §5)."""
    seen = set()
    for _ in range(64):
        origid = json.loads(_split(signer.sign(ORIG, DEST, "A", iat=NOW))[1])["origid"]
        u = uuid.UUID(origid)
        assert str(u) == origid
        assert u.version == 4
        assert u.variant == uuid.RFC_4122
        assert origid[14] == "4"
        assert origid[19] in "89ab"
        seen.add(origid)
    assert len(seen) == 64


def test_new_origid_bits() -> None:
    """new_origid(): version nibble 4, variant 10xx, every variant digit reachable."""
    variants = set()
    for _ in range(400):
        value = new_origid()
        assert re.fullmatch(
            r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", value
        )
        assert uuid.UUID(value).version == 4
        variants.add(value[19])
    assert variants == set("89ab")


def test_given_origid_kept(signer: Signer) -> None:
    """A given UUID origid is used unchanged."""
    claims = json.loads(_split(signer.sign(ORIG, DEST, "A", ORIGID, iat=NOW))[1])
    assert claims["origid"] == ORIGID
    upper = ORIGID.upper()
    claims = json.loads(_split(signer.sign(ORIG, DEST, "A", upper, iat=NOW))[1])
    assert claims["origid"] == upper


@pytest.mark.parametrize(
    "origid",
    [
        "not-a-uuid",
        "123e4567e89b42d3a456426655440000",
        "{123e4567-e89b-42d3-a456-426655440000}",
        "123e4567-e89b-42d3-a456-42665544000g",
        "123e4567-e89b-42d3-a456-426655440000 ",
        'x","attest":"A',  # injection attempt into the hand-built JSON
    ],
)
def test_non_uuid_origid_refused(signer: Signer, origid: str) -> None:
    """A non-UUID origid: SigningError invalid-origid (and it is a ValueError)."""
    with pytest.raises(SigningError) as exc:
        signer.sign(ORIG, DEST, "A", origid, iat=NOW)
    assert exc.value.code == "invalid-origid"
    assert isinstance(exc.value, ValueError)


# -- bad values --------------------------------------------------------------------------------


@pytest.mark.parametrize("attest", ["Z", "a", "", "AB", " A", None, 1])
def test_bad_attest(signer: Signer, attest: object) -> None:
    """attest outside A/B/C (RFC 8588 §4): invalid-attest."""
    with pytest.raises(SigningError) as exc:
        signer.sign(ORIG, DEST, attest, iat=NOW)  # type: ignore[arg-type]
    assert exc.value.code == "invalid-attest"


@pytest.mark.parametrize("tn", ["", "abc", "+()- ", "sip:alice@example.com", None, 12155550121])
def test_bad_orig_tn(signer: Signer, tn: object) -> None:
    """An orig without digits (or not a string): invalid-tn."""
    with pytest.raises(SigningError) as exc:
        signer.sign(tn, DEST, "A", iat=NOW)  # type: ignore[arg-type]
    assert exc.value.code == "invalid-tn"


@pytest.mark.parametrize("dest", ["", "letters", [], ["1", ""], ["1", None]])
def test_bad_dest_tn(signer: Signer, dest: object) -> None:
    """An empty dest list or a dest without digits: invalid-tn."""
    with pytest.raises(SigningError) as exc:
        signer.sign(ORIG, dest, "A", iat=NOW)  # type: ignore[arg-type]
    assert exc.value.code == "invalid-tn"


@pytest.mark.parametrize("iat", [0, -1, 1.5, float(NOW), "1700000000", True])
def test_bad_iat(signer: Signer, iat: object) -> None:
    """iat must be a positive int (RFC 8225 §5.1.1, §9 rule 4): invalid-iat."""
    with pytest.raises(SigningError) as exc:
        signer.sign(ORIG, DEST, "A", iat=iat)  # type: ignore[arg-type]
    assert exc.value.code == "invalid-iat"


def _refused_on_every_type(signer: Signer, orig: str, iat: int, code: str, words: str) -> None:
    """SHAKEN (token and Identity value), div and rcd signing all refuse with ``code``."""
    for sign in (
        lambda: signer.sign(orig, DEST, "A", iat=iat),
        lambda: signer.identity(orig, DEST, "A", iat=iat),
        lambda: signer.div_identity(orig, DEST, "12155550199", iat=iat),
        lambda: signer.rcd_identity(orig, DEST, RichCallData(nam="Alice"), iat=iat),
    ):
        with pytest.raises(SigningError) as exc:
            sign()
        assert exc.value.code == code
        assert words in exc.value.message


@pytest.mark.parametrize("iat", [253402300800, 10**13, 9 * 10**399])
def test_iat_past_year_9999_refused(signer: Signer, iat: int) -> None:
    """An iat past 9999-12-31 (milliseconds by mistake, an overflow, 400 digits from a JSON
    body) is invalid-iat, on every PASSporT type; the last second of 9999 is signed."""
    _refused_on_every_type(signer, ORIG, iat, "invalid-iat", "9999")
    claims = json.loads(_split(signer.sign(ORIG, DEST, "A", iat=253402300799))[1])
    assert claims["iat"] == 253402300799


def test_signer_never_makes_a_value_verifiers_refuse_for_its_size(
    signer: Signer, verifier: Verifier
) -> None:
    """A PASSporT whose claims segment is over the 6,144 characters verifiers accept, or whose
    Identity value is over 8 KiB (R45), is refused with too-large instead of being signed; the
    largest that fits is signed and verifies."""
    over = "1" * 6000  # a 6,000-digit number: over the claims segment cap
    _refused_on_every_type(signer, over, NOW, "too-large", "over the 6144 that verifiers accept")
    with pytest.raises(SigningError) as exc:  # 700 dest numbers
        signer.identity(ORIG, [str(10**11 + i) for i in range(700)], "A", iat=NOW)
    assert exc.value.code == "too-large"
    # A long x5u and long claims, each under the segment cap, together over the value cap.
    long_x5u = "https://cert.example.org/" + "a" * 2500 + ".pem"
    with pytest.raises(SigningError) as exc:
        signer.identity("1" * 4000, DEST, "A", iat=NOW, x5u=long_x5u)
    assert exc.value.code == "too-large"
    assert "over the 8192 that verifiers accept" in exc.value.message

    # The longest orig that still fits, by bisection: signed, and a verifier takes it.
    def longest(x5u: str) -> str:
        low, high = 1, 6000  # signs, refused
        while high - low > 1:
            mid = (low + high) // 2
            try:
                signer.identity("1" * mid, DEST, "A", ORIGID, iat=NOW, x5u=x5u)
                low = mid
            except SigningError:
                high = mid
        return signer.identity("1" * low, DEST, "A", ORIGID, iat=NOW, x5u=x5u)

    claims_b64 = longest(X5U).split(".")[1]
    assert 6144 - 4 < len(claims_b64) <= 6144  # base64 grows by 4 characters per 3 bytes
    value = longest(long_x5u)
    assert 8192 - 4 < len(value) <= 8192
    for fits in (longest(X5U), value):
        assert verifier.check(fits, now=NOW).ok


def test_iat_given_and_default_from_clock(private_key: ec.EllipticCurvePrivateKey) -> None:
    """iat= is used as given; without it the Signer's clock (truncated to int) is used."""
    s = Signer(private_key, X5U, clock=lambda: 1234567890.9)
    assert json.loads(_split(s.sign(ORIG, DEST, "A"))[1])["iat"] == 1234567890
    assert json.loads(_split(s.sign(ORIG, DEST, "A", iat=42))[1])["iat"] == 42


@pytest.mark.parametrize(
    "x5u", ["", "cert.pem", "https://x/ y", "https://x/<y>", 'https://x/"', None]
)
def test_bad_x5u(private_key: ec.EllipticCurvePrivateKey, x5u: object) -> None:
    """x5u must be an absolute URI usable inside info=<...>: invalid-x5u."""
    with pytest.raises(SigningError) as exc:
        Signer(private_key).sign(ORIG, DEST, "A", iat=NOW, x5u=x5u)  # type: ignore[arg-type]
    assert exc.value.code == "invalid-x5u"
    if x5u is not None:
        with pytest.raises(SigningError) as exc:
            Signer(private_key, x5u)  # type: ignore[arg-type]
        assert exc.value.code == "invalid-x5u"


def test_per_call_x5u_overrides(signer: Signer) -> None:
    """x5u= per call goes into the header and the info parameter."""
    other = "https://other.example/cert.pem"
    value = signer.identity(ORIG, DEST, "A", iat=NOW, x5u=other)
    header = json.loads(_split(value.split(";")[0])[0])
    assert header["x5u"] == other
    assert parse_identity(value).info == other


def test_signer_refuses_wrong_curve() -> None:
    """A P-384 key cannot make ES256 signatures: KeyLoadError key-wrong-curve."""
    with pytest.raises(KeyLoadError) as exc:
        Signer(ec.generate_private_key(ec.SECP384R1()), X5U)
    assert exc.value.code == "key-wrong-curve"


# -- determinism -------------------------------------------------------------------------------


@requires_deterministic
def test_deterministic_signatures(signer: Signer, private_key: ec.EllipticCurvePrivateKey) -> None:
    """RFC 8225 §4.2 / RFC 6979: same inputs give the same token, across Signer instances."""
    a = signer.sign(ORIG, DEST, "A", ORIGID, iat=NOW)
    b = signer.sign(ORIG, DEST, "A", ORIGID, iat=NOW)
    c = Signer(private_key, X5U).sign(ORIG, DEST, "A", ORIGID, iat=NOW)
    assert a == b == c
    assert signer.sign(ORIG, DEST, "A", ORIGID, iat=NOW + 1) != a


def test_randomized_signatures_still_verify(
    private_key: ec.EllipticCurvePrivateKey, public_key: ec.EllipticCurvePublicKey
) -> None:
    """deterministic=False gives different signatures that all verify."""
    s = Signer(private_key, X5U, deterministic=False)
    tokens = {s.sign(ORIG, DEST, "A", ORIGID, iat=NOW) for _ in range(5)}
    assert len(tokens) == 5
    assert all(_verifies(public_key, t) for t in tokens)


# -- sign_json ---------------------------------------------------------------------------------


def test_sign_json_canonicalizes_text(signer: Signer) -> None:
    """JSON text is parsed and re-serialized canonically unless verbatim."""
    token = signer.sign_json(' {"typ":"passport", "alg":"ES256"} ', '{ "b" : 1, "a" : [1, 2] }')
    header, claims, _ = _split(token)
    assert header == b'{"alg":"ES256","typ":"passport"}'
    assert claims == b'{"a":[1,2],"b":1}'


def test_sign_json_verbatim_keeps_bytes(signer: Signer) -> None:
    """verbatim=True signs the text byte for byte (stripped of surrounding whitespace)."""
    h, p = '{"typ":"passport", "alg":"ES256"}', '{ "b" : 1, "a" : 2 }'
    header, claims, _ = _split(signer.sign_json(f"\n{h}\n", p, verbatim=True))
    assert header == h.encode()
    assert claims == p.encode()
    header, claims, _ = _split(signer.sign_json(h.encode(), p.encode(), verbatim=True))
    assert (header, claims) == (h.encode(), p.encode())


def test_sign_json_objects_always_canonical(signer: Signer) -> None:
    """Mappings are serialized canonically whether or not verbatim is set."""
    for verbatim in (False, True):
        header, claims, _ = _split(
            signer.sign_json(
                {"typ": "passport", "alg": "ES256"}, {"b": 1, "a": "é"}, verbatim=verbatim
            )
        )
        assert header == b'{"alg":"ES256","typ":"passport"}'
        assert claims == '{"a":"é","b":1}'.encode()


def _nested(depth: int, kind: type[list[object]] | type[tuple[object, ...]]) -> object:
    value: object = kind()
    for _ in range(depth - 1):
        value = kind([value])
    return value


@pytest.mark.parametrize(
    ("header", "payload"),
    [
        ('{"alg":"HS256"}', "{}"),
        ('{"alg":"none"}', "{}"),
        ({"alg": "ES384"}, {}),
        ("[1]", "{}"),
        ("{}", "[1]"),
        ("{}", "not json"),
        ('{"a":1,"a":2}', "{}"),
        ("{}", '{"iat":NaN}'),
        ({}, {"x": float("nan")}),
        ({}, {"x": object()}),
        (b'{"x":"\xff"}', b"{}"),
        ("{}", '{"iat":1e400}'),
        ("{}", '{"x":' + "[" * 40 + "]" * 40 + "}"),
        ({}, {"x": _nested(40, list)}),
        ({}, {"x": _nested(40, tuple)}),
        ({"crit": ["foo"]}, {}),
        ('{"crit":[]}', "{}"),
        ({"alg": "ES256", "b64": False, "crit": ["b64"]}, {}),
    ],
)
def test_sign_json_refuses(signer: Signer, header: object, payload: object) -> None:
    """Non-ES256 alg, non-objects, invalid or duplicate-key JSON, numbers that overflow,
    nesting deeper than the parser's limit, and a crit header (which every verifier of ours
    rejects, RFC 7515 §4.1.11): SigningError invalid-json, never a token we would refuse."""
    with pytest.raises(SigningError) as exc:
        signer.sign_json(header, payload)  # type: ignore[arg-type]
    assert exc.value.code == "invalid-json"


def test_sign_claims_header(signer: Signer) -> None:
    """sign_claims uses the standard header; ppt=None gives a baseline PASSporT header."""
    header, claims, _ = _split(signer.sign_claims({"iat": NOW}))
    assert header == canonical_json(
        {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
    )
    assert claims == b'{"iat":1700000000}'
    header, _, _ = _split(signer.sign_claims({"iat": NOW}, ppt=None, x5u="https://o/c"))
    assert header == b'{"alg":"ES256","typ":"passport","x5u":"https://o/c"}'


# -- identity / add_identity -------------------------------------------------------------------


def test_identity_value_form(signer: Signer) -> None:
    """identity() is <token>;info=<x5u>;alg=ES256;ppt=shaken with info equal to x5u."""
    value = signer.identity(ORIG, DEST, "A", ORIGID, iat=NOW)
    token, rest = value.split(";", 1)
    assert rest == f"info=<{X5U}>;alg=ES256;ppt=shaken"
    assert token.count(".") == 2
    assert json.loads(_split(token)[0])["x5u"] == X5U


def test_identity_verifies(signer: Signer, verifier: Verifier) -> None:
    """A signed identity verifies, with the claims as signed."""
    passport = verifier.verify(
        signer.identity(ORIG, [DEST, "12155550132"], "B", ORIGID, iat=NOW), now=NOW
    )
    assert passport.attest == "B"
    assert passport.orig == ORIG
    assert passport.dest == [DEST, "12155550132"]
    assert passport.origid == ORIGID
    assert passport.iat == NOW


def test_from_file_and_from_pem(key_files: KeyFiles, public_key: ec.EllipticCurvePublicKey) -> None:
    """Signer.from_file (SEC1, PKCS#8) and Signer.from_pem produce verifying tokens."""
    signers = [
        Signer.from_file(key_files.key_pem, X5U),
        Signer.from_file(key_files.key_pkcs8_pem, X5U),
        Signer.from_pem(key_files.key_pem.read_bytes(), X5U),
    ]
    for s in signers:
        assert _verifies(public_key, s.sign(ORIG, DEST, "A", iat=NOW))


def test_add_identity_empty_origid(key_files: KeyFiles) -> None:
    """add_identity with origid '' makes a UUIDv4 origid; check_identity accepts the value."""
    value = add_identity(ORIG, DEST, "A", "", X5U, key_files.key_pem, iat=NOW)
    assert value.endswith(f";info=<{X5U}>;alg=ES256;ppt=shaken")
    claims = json.loads(_split(value.split(";")[0])[1])
    assert uuid.UUID(claims["origid"]).version == 4
    assert claims["attest"] == "A"
    verdict = check_identity(value, key_files.pub_pem, now=NOW)
    assert verdict.ok, verdict.message
    assert verdict.claims == claims


def test_add_identity_given_origid_and_list_dest(key_files: KeyFiles) -> None:
    """add_identity keeps a given origid and accepts several dest numbers."""
    value = add_identity(ORIG, ["2", "1"], "C", ORIGID, X5U, str(key_files.key_pkcs8_pem), iat=NOW)
    claims = json.loads(_split(value.split(";")[0])[1])
    assert claims["origid"] == ORIGID
    assert claims["dest"] == {"tn": ["1", "2"]}


def test_add_identity_errors(key_files: KeyFiles, tmp_path: Path) -> None:
    """add_identity raises SigningError for bad values and KeyLoadError for bad key files."""
    with pytest.raises(SigningError) as exc:
        add_identity(ORIG, DEST, "Z", "", X5U, key_files.key_pem)
    assert exc.value.code == "invalid-attest"
    with pytest.raises(KeyLoadError) as kexc:
        add_identity(ORIG, DEST, "A", "", X5U, tmp_path / "missing.pem")
    assert kexc.value.code == "key-not-found"
    with pytest.raises(KeyLoadError) as kexc:
        add_identity(ORIG, DEST, "A", "", X5U, key_files.cert_pem)
    assert kexc.value.code == "key-invalid"


def test_add_identity_follows_key_file_rotation(tmp_path: Path) -> None:
    """add_identity re-reads a key file that was replaced (new mtime): the new key signs."""
    path = tmp_path / "key.pem"
    keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(2)]
    pem = [
        k.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        for k in keys
    ]
    path.write_bytes(pem[0])
    first = add_identity(ORIG, DEST, "A", ORIGID, X5U, path, iat=NOW)
    assert Verifier(keys[0].public_key()).check(first, now=NOW).ok
    st_ = path.stat()
    path.write_bytes(pem[1])
    os.utime(path, ns=(st_.st_atime_ns, st_.st_mtime_ns + 10**9))
    second = add_identity(ORIG, DEST, "A", ORIGID, X5U, path, iat=NOW)
    assert Verifier(keys[1].public_key()).check(second, now=NOW).ok
    assert not Verifier(keys[0].public_key()).check(second, now=NOW)


@settings(max_examples=40, deadline=None)
@given(
    orig=st.text(alphabet="0123456789#*", min_size=1, max_size=15),
    dests=st.lists(
        st.text(alphabet="0123456789#*", min_size=1, max_size=15), min_size=1, max_size=4
    ),
    attest=st.sampled_from("ABC"),
    iat=st.integers(min_value=1, max_value=253402300799),  # to 9999-12-31 (then invalid-iat)
)
def test_sign_verify_property(
    signer: Signer, verifier: Verifier, orig: str, dests: list[str], attest: str, iat: int
) -> None:
    """Anything the Signer accepts, the Verifier accepts with the same claims."""
    value = signer.identity(orig, dests, attest, ORIGID, iat=iat)
    passport = verifier.verify(value, orig_tn=orig, dest_tn=dests[0], now=iat)
    assert passport.orig == orig
    assert passport.dest == sorted(set(dests))
    assert passport.attest == attest
