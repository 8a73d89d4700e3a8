"""Rich Call Data (RFC 9795): rcd/crn/rcdi signed in a SHAKEN PASSporT or an rcd PASSporT,
checked by the verifier, exposed by the Verdict; JSON pointers and digests; hypothesis for the
parsers.  URL content (fetching) is in test_div_rcd_network.py."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import math
import time
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import (
    DEST,
    NOW,
    ORIG,
    X5U,
    CachingProbeSource,
    MakeIdentity,
    assert_error,
    assert_verdict,
)
from secsipid import (
    Credential,
    Fetcher,
    FetchResult,
    Reason,
    RichCallData,
    Signer,
    SigningError,
    VerificationError,
    Verifier,
    VerifyPolicy,
    canonical_json,
    decode_token,
)
from secsipid._fetch import request_remaining
from secsipid._rcd import (
    PointerError,
    check_rcd_claims,
    format_pointer,
    parse_digest,
    parse_pointer,
    rcd_digest,
    rcd_integrity,
    resolve_pointer,
)

JCARD = [
    "vcard",
    [
        ["version", {}, "text", "4.0"],
        ["fn", {}, "text", "Example Bank"],
        ["logo", {}, "uri", "https://rcd.example/logo.png"],
    ],
]
ICON = b"\x89PNG\r\n\x1a\n not really a picture"


def _claims(value: str) -> dict[str, Any]:
    return decode_token(value.split(";", 1)[0]).claims


# -- signing -------------------------------------------------------------------------------


def test_shaken_with_rcd_claims(signer: Signer, verifier: Verifier) -> None:
    rcd = RichCallData(
        nam="Example Bank", icn="https://rcd.example/icon.png", jcd=JCARD, crn="Fraud alert"
    )
    value = signer.identity(
        ORIG, DEST, "A", iat=NOW, rcd=rcd, rcd_contents={"https://rcd.example/icon.png": ICON}
    )
    assert value.endswith(";ppt=shaken")
    claims = _claims(value)
    assert claims["rcd"] == {
        "icn": "https://rcd.example/icon.png",
        "jcd": JCARD,
        "nam": "Example Bank",
    }
    assert claims["crn"] == "Fraud alert"
    sri = "sha256-" + base64.b64encode(hashlib.sha256(ICON).digest()).decode()
    assert claims["rcdi"] == {"/icn": sri, "/jcd": rcd_digest(canonical_json(JCARD))}
    assert {"attest", "origid"} <= set(claims)
    verdict = verifier.check(value, orig_tn=ORIG, dest_tn=DEST, now=NOW)
    assert verdict.ok
    got = verdict.rcd
    assert got is not None
    assert (got.nam, got.icn, got.jcd, got.crn) == (
        "Example Bank",
        "https://rcd.example/icon.png",
        JCARD,
        "Fraud alert",
    )
    assert got.rcdi == claims["rcdi"]
    assert verdict.rcd_checked == ()  # URL content is not fetched unless asked
    assert got.call_info() == [
        f'<https://rcd.example/icon.png>;purpose=icon;integrity="{sri}";call-reason="Fraud alert"'
    ]
    data = json.loads(json.dumps(verdict.to_dict(), allow_nan=False))
    assert data["rcd"]["rcd"]["nam"] == "Example Bank" and data["rcd"]["crn"] == "Fraud alert"
    assert data["call_info"] == got.call_info()


def test_shaken_without_rcd_has_none(identity: str, verifier: Verifier) -> None:
    verdict = verifier.check(identity, now=NOW)
    assert verdict.ok and verdict.rcd is None and verdict.to_dict()["rcd"] is None


def test_rcd_passport_alone_and_beside_shaken(signer: Signer, verifier: Verifier) -> None:
    rcd_value = signer.rcd_identity(ORIG, DEST, RichCallData(nam="Bob's Plumbing"), iat=NOW)
    assert rcd_value.endswith(";ppt=rcd")
    claims = _claims(rcd_value)
    assert set(claims) == {"dest", "iat", "orig", "rcd"}
    # beside a SHAKEN PASSporT: the SHAKEN one validates the call, the rcd one gives the RCD
    shaken = signer.identity(ORIG, DEST, "B", iat=NOW)
    for values in ([rcd_value, shaken], [shaken, rcd_value]):
        verdict = verifier.check(values, orig_tn=ORIG, dest_tn=DEST, now=NOW)
        assert verdict.ok and verdict.passport is not None
        assert verdict.passport.ppt == "shaken" and verdict.passport.attest == "B"
        assert verdict.rcd is not None and verdict.rcd.nam == "Bob's Plumbing"
    # alone: a valid PASSporT of a supported type (RFC 8224 §6.2.1), without attestation
    verdict = verifier.check(rcd_value, dest_tn=DEST, now=NOW)
    assert verdict.ok and verdict.passport is not None
    assert verdict.passport.ppt == "rcd" and verdict.passport.attest == ""
    assert verdict.rcd is not None
    # verify() takes one rcd PASSporT too
    assert verifier.verify(rcd_value, now=NOW).rcd == RichCallData(nam="Bob's Plumbing")


def test_rcd_passport_without_rcd_claim(signer: Signer, verifier: Verifier) -> None:
    """An rcd PASSporT must carry the rcd claim (RFC 9795): alone it is missing-claim (438);
    beside a valid SHAKEN PASSporT the call is still valid, without RCD, and the failure says
    why."""
    claims = {"dest": {"tn": [DEST]}, "iat": NOW, "orig": {"tn": ORIG}}
    value = f"{signer.sign_claims(claims, ppt='rcd')};info=<{X5U}>;alg=ES256;ppt=rcd"
    with pytest.raises(VerificationError) as exc:
        verifier.verify(value, now=NOW)
    assert (exc.value.reason, exc.value.message) == (
        Reason.MISSING_CLAIM,
        "rcd PASSporT without rcd claim",
    )
    verdict = verifier.check([signer.identity(ORIG, DEST, "A", iat=NOW), value], now=NOW)
    assert verdict.ok and verdict.rcd is None
    assert [(f.index, f.reason, f.message) for f in verdict.failures] == [
        (1, Reason.MISSING_CLAIM, "rcd PASSporT without rcd claim")
    ]


def test_rcd_passport_of_another_caller_is_not_used(signer: Signer, verifier: Verifier) -> None:
    shaken = signer.identity(ORIG, DEST, "A", iat=NOW)
    other = signer.rcd_identity("12155550999", DEST, RichCallData(nam="Someone Else"), iat=NOW)
    verdict = verifier.check([shaken, other], dest_tn=DEST, now=NOW)
    assert verdict.ok and verdict.rcd is None


def test_signer_refuses_bad_rcd(signer: Signer) -> None:
    with pytest.raises(ValueError, match="both"):
        RichCallData(nam="x", jcd=JCARD, jcl="https://rcd.example/card.json")
    with pytest.raises(ValueError, match="absolute URL"):
        RichCallData(nam="x", icn="logo.png")
    with pytest.raises(ValueError, match="jCard"):
        RichCallData(nam="x", jcd=["vcard"])
    with pytest.raises(ValueError, match="repeat"):
        RichCallData(nam="x", extra={"nam": "y"})
    rcd = RichCallData(nam="x", icn="https://rcd.example/i.png")
    with pytest.raises(SigningError) as exc:
        signer.identity(ORIG, DEST, "A", rcd=rcd, rcd_contents={"https://other.example/": b""})
    assert exc.value.code == "invalid-rcd"


# -- verification failures -------------------------------------------------------------------


def test_missing_nam(make_identity: MakeIdentity, verifier: Verifier) -> None:
    value = make_identity(claims_update={"rcd": {"icn": "https://rcd.example/i.png"}})
    verdict = verifier.check(value, now=NOW)
    assert_verdict(verdict, Reason.INVALID_RCD)
    assert verdict.sip_status == 438 and verdict.sip_reason == "Invalid PASSporT"
    assert "nam" in verdict.message


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"rcd": "Example Bank"}, "object"),
        # null used to pass the checks and then make Verdict.rcd raise (found by the fuzzer)
        ({"rcd": None}, "object"),
        ({"rcd": {"nam": 7}}, "string"),
        ({"rcd": {"nam": "x", "jcd": JCARD, "jcl": "https://rcd.example/c.json"}}, "both"),
        ({"rcd": {"nam": "x", "icn": "not a url"}}, "URL"),
        ({"rcd": {"nam": "x", "jcd": {"vcard": []}}}, "jCard"),
        ({"rcd": {"nam": "x"}, "crn": ["reason"]}, "crn"),
        ({"crn": 5}, "crn"),  # a call reason alone (RFC 9795 §5) is checked too
        ({"rcdi": {"/nam": rcd_digest(b'"x"')}}, "without"),
        ({"rcd": {"nam": "x"}, "rcdi": {"/icn": rcd_digest(b"")}}, "designates nothing"),
        ({"rcd": {"nam": "x"}, "rcdi": {"nam": rcd_digest(b"")}}, "start with"),
        ({"rcd": {"nam": "x"}, "rcdi": {"/nam": "md5-AAAA"}}, "sha256-"),
        ({"rcd": {"nam": "x"}, "rcdi": {"/nam": "sha256-AAAA"}}, "bytes"),
        ({"rcd": {"nam": "x"}, "rcdi": {}}, "non-empty"),
        ({"rcd": {"nam": "x"}, "rcdi": {"/jcl/1/0/3": rcd_digest(b"")}}, "no jcl"),
    ],
)
def test_invalid_rcd_claims(
    make_identity: MakeIdentity, verifier: Verifier, extra: dict[str, Any], fragment: str
) -> None:
    verdict = verifier.check(make_identity(claims_update=extra), now=NOW)
    assert_verdict(verdict, Reason.INVALID_RCD)
    assert fragment in verdict.message, verdict.message


def test_rcdi_mismatch_on_inline_content(make_identity: MakeIdentity, verifier: Verifier) -> None:
    rcd = {"nam": "Example Bank", "jcd": JCARD}
    good = {"/jcd": rcd_digest(canonical_json(JCARD))}
    assert verifier.check(make_identity(claims_update={"rcd": rcd, "rcdi": good}), now=NOW).ok
    bad = {"/jcd": rcd_digest(canonical_json(JCARD) + b" ")}
    verdict = verifier.check(make_identity(claims_update={"rcd": rcd, "rcdi": bad}), now=NOW)
    assert_verdict(verdict, Reason.RCD_INTEGRITY_MISMATCH)
    # a property inside the jCard, inline too (the fn text)
    fn = {"/jcd/1/1/3": rcd_digest(b'"Example Bank"')}
    assert verifier.check(make_identity(claims_update={"rcd": rcd, "rcdi": fn}), now=NOW).ok
    fn_bad = {"/jcd/1/1/3": rcd_digest(b'"Example Bunk"')}
    verdict = verifier.check(make_identity(claims_update={"rcd": rcd, "rcdi": fn_bad}), now=NOW)
    assert_verdict(verdict, Reason.RCD_INTEGRITY_MISMATCH)


def test_url_digests_are_not_checked_without_fetching(
    make_identity: MakeIdentity, verifier: Verifier
) -> None:
    """The logo URL's digest is a digest of the picture: without fetching nothing can be said."""
    rcd = {"nam": "x", "icn": "https://rcd.example/i.png"}
    value = make_identity(claims_update={"rcd": rcd, "rcdi": {"/icn": rcd_digest(b"anything")}})
    verdict = verifier.check(value, now=NOW)
    assert verdict.ok and verdict.rcd is not None and verdict.rcd_checked == ()


def test_oversized_inline_content_is_refused(
    make_identity: MakeIdentity, verifier: Verifier
) -> None:
    """A PASSporT's claims are capped before JSON parsing (R45), the Identity value before
    that: a huge jCard never reaches the RCD checks."""
    for size, reason in ((4700, Reason.INVALID_CLAIMS_JSON), (8000, Reason.TOO_LARGE)):
        big = ["vcard", [["note", {}, "text", "x" * size]]]
        value = make_identity(claims_update={"rcd": {"nam": "x", "jcd": big}})
        verdict = verifier.check(value, now=NOW)
        assert_verdict(verdict, reason)
        assert "too large" in verdict.message or "over the" in verdict.message


def test_call_info_cannot_inject_headers() -> None:
    rcd = RichCallData(nam="x", icn="https://rcd.example/i.png", crn='Hi\r\nVia: evil "x" \\')
    (value,) = rcd.call_info()
    assert "\r" not in value and "\n" not in value
    assert value.endswith(';call-reason="Hi  Via: evil \\"x\\" \\\\"')


def test_rcd_claims_in_strict_mode_and_unknown_keys_kept(
    make_identity: MakeIdentity, verifier: Verifier
) -> None:
    value = make_identity(claims_update={"rcd": {"nam": "", "xyz": {"a": 1}}})
    verdict = verifier.check(value, now=NOW)
    assert verdict.ok and verdict.rcd is not None
    assert verdict.rcd.nam == "" and verdict.rcd.extra == {"xyz": {"a": 1}}


# -- JSON pointers and digests -----------------------------------------------------------------


def test_pointer_examples_from_rfc_6901() -> None:
    doc = {"foo": ["bar", "baz"], "": 0, "a/b": 1, "m~n": 8, " ": 7}
    assert resolve_pointer(doc, "") is doc
    assert resolve_pointer(doc, "/foo") == ["bar", "baz"]
    assert resolve_pointer(doc, "/foo/0") == "bar"
    assert resolve_pointer(doc, "/") == 0
    assert resolve_pointer(doc, "/a~1b") == 1
    assert resolve_pointer(doc, "/m~0n") == 8
    assert resolve_pointer(doc, "/ ") == 7
    for bad in ("/foo/01", "/foo/-", "/foo/2", "/nope", "/foo/0/x"):
        with pytest.raises(PointerError):
            resolve_pointer(doc, bad)
    for bad in ("foo", "/a~2", "/~"):
        with pytest.raises(PointerError):
            parse_pointer(bad)


def test_digest_forms() -> None:
    digest = rcd_digest(b"abc")
    assert digest == "sha256-ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
    raw = hashlib.sha256(b"abc").digest()
    assert parse_digest(digest) == ("sha256", raw)
    assert parse_digest(digest.rstrip("=")) == ("sha256", raw)  # unpadded
    url_form = digest.replace("+", "-").replace("/", "_")
    assert parse_digest(url_form) == ("sha256", raw)  # base64url
    assert parse_digest(rcd_digest(b"abc", "sha512"))[1] == hashlib.sha512(b"abc").digest()
    with pytest.raises(ValueError):
        rcd_digest(b"abc", "md5")


def test_rcd_integrity_covers_urls_in_the_jcard() -> None:
    rcdi = rcd_integrity({"nam": "x", "jcd": JCARD}, {"https://rcd.example/logo.png": b"logo"})
    assert rcdi == {
        "/jcd": rcd_digest(canonical_json(JCARD)),
        "/jcd/1/2/3": rcd_digest(b"logo"),
    }
    deep = rcd_integrity({"nam": "x", "jcl": "https://rcd.example/c.json"}, {"/jcl/1/2/3": b"l"})
    assert deep == {"/jcl/1/2/3": rcd_digest(b"l")}
    with pytest.raises(ValueError):
        rcd_integrity({"nam": "x"}, {"/jcl/1": b""})


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=6),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=15,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=6), st.integers(0, 20)), max_size=6))
def test_pointer_round_trip(tokens: list[str | int]) -> None:
    text = format_pointer(tokens)
    assert parse_pointer(text) == [str(t) for t in tokens]


@settings(max_examples=300, deadline=None)
@given(_json, st.text(max_size=20))
def test_resolve_only_raises_pointer_errors(doc: Any, pointer: str) -> None:
    with contextlib.suppress(PointerError):
        resolve_pointer(doc, pointer)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["rcd", "rcdi", "crn", "x"]), _json, max_size=4),
    st.dictionaries(st.sampled_from(["nam", "apn", "icn", "jcd", "jcl"]), _json, max_size=5),
)
def test_rcd_checker_only_raises_verification_errors(
    claims: dict[str, Any], rcd: dict[str, Any]
) -> None:
    for candidate in (claims, {**claims, "rcd": rcd}):
        try:
            check_rcd_claims(candidate)
        except VerificationError as exc:
            assert exc.reason in (Reason.INVALID_RCD, Reason.RCD_INTEGRITY_MISMATCH)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from(["sha256", "sha384", "sha512"]))
def test_digest_round_trip(content: bytes, algorithm: str) -> None:
    text = rcd_digest(content, algorithm)
    name, raw = parse_digest(text)
    assert name == algorithm and raw == hashlib.new(algorithm, content).digest()


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_digest_parser_only_raises_value_errors(text: str) -> None:
    with contextlib.suppress(ValueError):
        parse_digest(text)


def test_invalid_rcd_maps_like_the_other_claim_errors() -> None:
    """invalid-rcd keeps the RFC 8224 §6.2.2 alternative phrase for claims."""
    exc = VerificationError(Reason.INVALID_RCD, "x")
    assert_error(exc, Reason.INVALID_RCD)
    assert (exc.sip_status, exc.sip_reason, exc.lib_code) == (438, "Invalid PASSporT", -231)


# -- content fetches share the request's budget ------------------------------------------------


class _ContentProbe(Fetcher):
    """Serves RCD content from memory and notes the request budget left at each fetch (inf:
    outside any budget)."""

    def __init__(self, contents: dict[str, bytes]) -> None:
        super().__init__()
        self.contents = contents
        self.left: list[float] = []

    def _serve(self, url: str) -> FetchResult:
        self.left.append(request_remaining(math.inf))
        return FetchResult(url, 200, {}, self.contents[url], time.time())

    def get(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        return self._serve(url)

    async def aget(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        return self._serve(url)


def test_rcd_content_is_fetched_within_the_request_budget(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """check and acheck fetch RCD content (fetch_rcd) within the request's budget, whichever
    way the verdict was reached: a value valid at once, a SHAKEN value before or after a div,
    a div that failed before a SHAKEN value, a value whose certificate was fetched."""
    icon_url = "https://rcd.example/icon.png"
    icon = b"\x89PNG\r\n\x1a\n icon"
    shaken = signer.identity(
        ORIG, DEST, "A", iat=NOW, rcd=RichCallData(nam="Bob", icn=icon_url),
        rcd_contents={icon_url: icon},
    )  # fmt: skip
    div = signer.div_identity(ORIG, "12155550999", DEST, iat=NOW)
    stale_div = signer.div_identity(ORIG, "12155550999", DEST, iat=NOW - 3600)
    policy = VerifyPolicy(fetch_rcd=True, timeout=2.0)
    cold = {X5U: Credential(public_key)}
    cases = [
        (public_key, [shaken], {}),
        (public_key, [shaken, div], {}),
        (public_key, [div, shaken], {}),
        (public_key, [stale_div, shaken], {"dest_tn": DEST}),
        (CachingProbeSource(cold, set()), [shaken], {}),
    ]
    for key, values, kw in cases:
        for mode in ("sync", "async"):
            fetcher = _ContentProbe({icon_url: icon})
            verifier = Verifier(key, policy=policy, fetcher=fetcher)  # type: ignore[arg-type]
            verdict = (
                verifier.check(values, now=NOW, **kw)
                if mode == "sync"
                else asyncio.run(verifier.acheck(values, now=NOW, **kw))
            )
            assert verdict.ok and verdict.rcd_failure is None, (values, mode, verdict)
            assert verdict.rcd_checked == ("/icn",), (values, mode)
            assert len(fetcher.left) == 1 and 0 < fetcher.left[0] <= 2.0, (mode, fetcher.left)


def test_rcd_content_mismatch_names_the_pointer_cut_to_40_characters(
    signer: Signer, public_key: ec.EllipticCurvePublicKey
) -> None:
    """Content behind a URL under an extension key of rcd that is not what was signed:
    rcd-integrity-mismatch, the call still validated; the message names the rcdi pointer,
    cut to its first 40 characters (it is the caller's text)."""
    key = "x-" + "long-extension-name-" * 3
    url = "https://rcd.example/extra.bin"
    rcd = RichCallData(nam="Bob", extra={key: url}, rcdi={f"/{key}": rcd_digest(b"signed")})
    value = signer.identity(ORIG, DEST, "A", iat=NOW, rcd=rcd)
    for body, failure in ((b"signed", None), (b"tampered", Reason.RCD_INTEGRITY_MISMATCH)):
        policy = VerifyPolicy(fetch_rcd=True)
        verifier = Verifier(public_key, policy=policy, fetcher=_ContentProbe({url: body}))
        verdict = verifier.check(value, now=NOW)
        assert verdict.ok
        if failure is None:
            assert verdict.rcd_failure is None and verdict.rcd_checked == (f"/{key}",)
            continue
        assert verdict.rcd_failure is not None and verdict.rcd_failure.reason is failure
        assert verdict.rcd_failure.message == (
            f"rcdi {f'/{key}'[:40]!r}: the digest does not match the fetched content"
        )
