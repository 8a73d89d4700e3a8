"""PASSporT tokens (RFC 8225) with the SHAKEN extension (RFC 8588): decoding and claim rules.

A PASSporT is a JWS in compact serialization (RFC 8225 §6)::

    BASE64URL(header) "." BASE64URL(claims) "." BASE64URL(signature)

with ES256 only (RFC 8225 §4.2): the signature is the 64-byte ``r || s`` of ECDSA P-256 with
SHA-256 over the ASCII bytes ``BASE64URL(header) "." BASE64URL(claims)`` (RFC 7518 §3.4).

SHAKEN header: ``{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":URL}``.
SHAKEN claims (RFC 8588 §8 lists them in this order)::

    attest  "A" / "B" / "C"                           RFC 8588 §4
    dest    {"tn":[TN,...]} and/or {"uri":[URI,...]}  RFC 8225 §5.2.1: at least one identity
    iat     integer seconds                           RFC 8225 §5.1.1, §9 rule 4 (errata 6656)
    orig    {"tn":TN} or {"uri":URI}                  RFC 8225 §5.2.1: exactly one
    origid  UUID string                               RFC 8588 §5

This module does no I/O and reads no clock: the verifier passes ``now`` in.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ._codec import B64Error, JSONError, b64url_decode, canonical_json, loads_strict
from ._errors import VerificationError
from ._reasons import Reason
from ._tn import is_canonical_tn

__all__ = ["ATTEST_VALUES", "DecodedPassport", "check_shaken_claims", "decode_token"]

ATTEST_VALUES = frozenset({"A", "B", "C"})
UUID_RE = re.compile(r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}")
SIGNATURE_B64_LEN = 86  # 64 bytes, unpadded base64url
# JSON inside a PASSporT is small; anything larger is refused before json parsing.
MAX_SEGMENT_SIZE = 6144

# The claims every SHAKEN signer emits (RFC 8588 §8: keys in this order, canonical JSON, RFC
# 8225 §9), read by one regular expression instead of the JSON parser plus the claim checks:
# on the verifier's hot path that is about a third of the Python a verification runs (the
# strict JSON decoder calls back into Python for every object, to refuse duplicate names).
# Written by hand because it is the hot path; it only ever accepts documents that the strict
# decoder parses to the very same dict and that check_shaken_claims accepts: string values
# of printable ASCII without '"' or '\' (so no escape: the text is the value), non-empty,
# iat a positive integer without leading zeros, no whitespace, no other member.  Anything
# else (uri forms, RCD claims, other orders or spacing) takes the general path.
_STR = r"[\x20\x21\x23-\x5b\x5d-\x7e]+"
_SHAKEN_CLAIMS_RE = re.compile(
    r'\{"attest":"([ABC])","dest":\{"tn":\["(' + _STR + r'(?:","' + _STR + r')*)"\]\},'
    r'"iat":([1-9][0-9]{0,17}),"orig":\{"tn":"(' + _STR + r')"\},"origid":"(' + _STR + r')"\}'
)

# Decoded JWS headers by their base64url text.  A signer emits the same header for every call
# (only the claims change), so on the verifier's hot path this turns a base64 decode plus a
# JSON parse into one dict lookup.  Bounded; cleared when full.
_HEADER_CACHE: dict[str, tuple[dict[str, Any], bytes]] = {}
_HEADER_CACHE_MAX = 1024


class DecodedPassport:
    """A PASSporT split and decoded, not yet checked or verified."""

    __slots__ = (
        "claims",
        "claims_json",
        "header",
        "header_json",
        "shaken_claims",
        "signature",
        "signing_input",
        "token",
    )

    def __init__(
        self,
        token: str,
        header: dict[str, Any],
        claims: dict[str, Any],
        header_json: bytes,
        claims_json: bytes,
        signing_input: bytes,
        signature: bytes,
        shaken_claims: bool = False,
    ) -> None:
        self.token = token
        self.header = header
        self.claims = claims
        self.header_json = header_json
        self.claims_json = claims_json
        self.signing_input = signing_input
        self.signature = signature
        # The claims were read by the SHAKEN fast path: check_shaken_claims holds for them.
        self.shaken_claims = shaken_claims


def _fast_shaken_claims(claims_json: bytes) -> dict[str, Any] | None:
    """The claims of a canonical SHAKEN PASSporT, or None (then the general path decides)."""
    match = _SHAKEN_CLAIMS_RE.fullmatch(claims_json.decode("latin-1"))
    if match is None:
        return None
    attest, dests, iat, orig, origid = match.groups()
    return {
        "attest": attest,
        "dest": {"tn": dests.split('","')},  # no '"' inside a value: the split is exact
        "iat": int(iat),
        "orig": {"tn": orig},
        "origid": origid,
    }


def _decode_header(segment: str) -> tuple[dict[str, Any], bytes]:
    cached = _HEADER_CACHE.get(segment)
    if cached is not None:
        return cached
    if len(segment) > MAX_SEGMENT_SIZE:
        raise VerificationError(Reason.INVALID_JWS_HEADER, "PASSporT header is too large")
    try:
        raw = b64url_decode(segment)
    except B64Error as exc:
        raise VerificationError(
            Reason.MALFORMED_TOKEN, "PASSporT header is not unpadded base64url", lib_code=-201
        ) from exc
    try:
        header = loads_strict(raw)
    except JSONError as exc:
        raise VerificationError(Reason.INVALID_JWS_HEADER, f"PASSporT header: {exc}") from exc
    if not isinstance(header, dict):
        raise VerificationError(Reason.INVALID_JWS_HEADER, "PASSporT header is not a JSON object")
    entry = (header, raw)
    if len(_HEADER_CACHE) >= _HEADER_CACHE_MAX:
        _HEADER_CACHE.clear()
    _HEADER_CACHE[segment] = entry
    return entry


def decode_token(token: str) -> DecodedPassport:
    """Split and decode a full-form PASSporT.

    Raises :class:`VerificationError` (``compact-form``, ``malformed-token``,
    ``invalid-jws-header``, ``invalid-claims-json``, ``malformed-signature``).
    The returned ``header`` and ``claims`` are fresh dicts the caller may keep.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise VerificationError(
            Reason.MALFORMED_TOKEN, f"PASSporT has {len(parts)} segments, not 3"
        )
    header_b64, claims_b64, sig_b64 = parts
    if not claims_b64:
        raise VerificationError(
            Reason.COMPACT_FORM, "compact-form PASSporT: SHAKEN requires the full form"
        )
    if not header_b64:
        raise VerificationError(Reason.MALFORMED_TOKEN, "PASSporT header segment is empty")
    header, header_json = _decode_header(header_b64)
    if len(claims_b64) > MAX_SEGMENT_SIZE:
        raise VerificationError(Reason.INVALID_CLAIMS_JSON, "PASSporT claims are too large")
    try:
        claims_json = b64url_decode(claims_b64)
    except B64Error as exc:
        raise VerificationError(
            Reason.MALFORMED_TOKEN, "PASSporT claims are not unpadded base64url", lib_code=-231
        ) from exc
    claims = _fast_shaken_claims(claims_json)
    shaken_claims = claims is not None
    if claims is None:
        try:
            claims = loads_strict(claims_json)
        except JSONError as exc:
            raise VerificationError(Reason.INVALID_CLAIMS_JSON, f"PASSporT claims: {exc}") from exc
        if not isinstance(claims, dict):
            raise VerificationError(
                Reason.INVALID_CLAIMS_JSON, "PASSporT claims are not a JSON object"
            )
    if len(sig_b64) != SIGNATURE_B64_LEN:
        raise VerificationError(
            Reason.MALFORMED_SIGNATURE,
            f"ES256 signature must be 64 bytes ({SIGNATURE_B64_LEN} base64url characters), "
            f"got {len(sig_b64)} characters",
        )
    try:
        signature = b64url_decode(sig_b64)
    except B64Error as exc:
        raise VerificationError(
            Reason.MALFORMED_SIGNATURE, "signature is not unpadded base64url", lib_code=-255
        ) from exc
    signing_input = token[: len(header_b64) + 1 + len(claims_b64)].encode("ascii")
    return DecodedPassport(
        token, dict(header), claims, header_json, claims_json, signing_input, signature,
        shaken_claims,
    )  # fmt: skip


def _is_str_list(value: object) -> bool:
    return (
        isinstance(value, list) and len(value) > 0 and all(isinstance(v, str) and v for v in value)
    )


def check_dest_claim(claims: Mapping[str, Any], missing: list[str], invalid: list[str]) -> None:
    """``dest`` (RFC 8225 §5.2.1), the same in every PASSporT type: an object with ``tn``
    and/or ``uri``, each a non-empty array of strings.  Adds to ``missing``/``invalid``."""
    dest = claims.get("dest")
    if dest is None:
        missing.append("dest")
    elif not isinstance(dest, dict):
        invalid.append("dest must be an object")
    else:
        tn, uri = dest.get("tn"), dest.get("uri")
        if tn is None and uri is None:
            invalid.append('dest must hold "tn" and/or "uri"')
        if tn is not None and not _is_str_list(tn):
            invalid.append("dest.tn must be a non-empty array of strings")
        if uri is not None and not _is_str_list(uri):
            invalid.append("dest.uri must be a non-empty array of strings")


def check_shaken_claims(claims: dict[str, Any]) -> None:
    """Enforce the SHAKEN claim rules; report every problem at once.

    Raises :class:`VerificationError` with ``missing-claim`` when a required claim is absent
    (and nothing else is wrong with a present one), else ``invalid-claim``.
    """
    missing: list[str] = []
    invalid: list[str] = []

    attest = claims.get("attest")
    if attest is None:
        missing.append("attest")
    elif not isinstance(attest, str) or attest not in ATTEST_VALUES:
        invalid.append(f"attest must be A, B or C, not {attest!r}")

    check_dest_claim(claims, missing, invalid)

    iat = claims.get("iat")
    if iat is None:
        missing.append("iat")
    elif type(iat) is not int:
        invalid.append(f"iat must be an integer NumericDate, not {type(iat).__name__}")
    elif iat <= 0:
        invalid.append("iat must be positive")

    orig = claims.get("orig")
    if orig is None:
        missing.append("orig")
    elif not isinstance(orig, dict):
        invalid.append("orig must be an object")
    else:
        kinds = [k for k in ("tn", "uri") if k in orig]
        if len(kinds) != 1:
            invalid.append('orig must hold exactly one of "tn" or "uri"')
        else:
            value = orig[kinds[0]]
            if not isinstance(value, str) or not value:
                invalid.append(f"orig.{kinds[0]} must be a non-empty string")

    origid = claims.get("origid")
    if origid is None:
        missing.append("origid")
    elif not isinstance(origid, str) or not origid:
        invalid.append("origid must be a non-empty string")

    if invalid or missing:
        parts = invalid + [f"missing claim {name!r}" for name in missing]
        reason = Reason.INVALID_CLAIM if invalid else Reason.MISSING_CLAIM
        # libsecsipid reads a missing iat as 0, "expired" (-232); type errors come first (-231).
        lib_code = -232 if "iat" in missing and not invalid else None
        raise VerificationError(reason, "; ".join(parts), lib_code=lib_code)


def claim_warnings(passport: DecodedPassport) -> list[str]:
    """Deviations from SHOULDs and canonical forms that a lenient verifier accepts."""
    warnings: list[str] = []
    if canonical_json(passport.header) != passport.header_json:
        warnings.append("PASSporT header is not in RFC 8225 §9 canonical JSON form")
    if canonical_json(passport.claims) != passport.claims_json:
        warnings.append("PASSporT claims are not in RFC 8225 §9 canonical JSON form")
    claims = passport.claims
    origid = claims.get("origid")
    if isinstance(origid, str) and UUID_RE.fullmatch(origid) is None:
        warnings.append("origid is not a UUID (RFC 8588 §5)")
    orig = claims.get("orig")
    if (
        isinstance(orig, dict)
        and isinstance(orig.get("tn"), str)
        and not is_canonical_tn(orig["tn"])
    ):
        warnings.append("orig.tn is not a canonical telephone number (RFC 8224 §8.3)")
    dest = claims.get("dest")
    tns = dest.get("tn") if isinstance(dest, dict) else None
    if isinstance(tns, list) and not all(isinstance(t, str) and is_canonical_tn(t) for t in tns):
        warnings.append("dest.tn holds a non-canonical telephone number (RFC 8224 §8.3)")
    return warnings
