"""The vocabulary of verification outcomes.

Every way a verification can end has one stable reason code (a short kebab-case string that
never changes once released).  Each reason maps to:

* the SIP response a verifier that rejects should send (RFC 8224 §6.2.2, ATIS-1000074):
  428 Use Identity Header, 436 Bad Identity Info, 437 Unsupported Credential,
  438 Invalid Identity Header, 403 Stale Date;
* the ``verstat`` value to pass downstream (ATIS-1000074 / 3GPP TS 24.229 §7.2A.20).  We follow
  the ATIS-1000082 error table (cases E1..E19): ``TN-Validation-Failed`` when the signature or
  the signer's credential was checked and found wrong, ``No-TN-Validation`` when the PASSporT
  could not be validated at all (missing, malformed, stale, credential unreachable);
* the libsecsipid return code a Kamailio ``secsipid`` user knows from their logs
  (``secsipid/secsipid.go`` of asipto/secsipidx, HEAD numbering: -305 for a missing ``info``).

The table is data, kept in one place: the verifier, the CLI, the Kamailio adapter and the HTTP
service all read it from here.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["VERSTAT_FAILED", "VERSTAT_NONE", "VERSTAT_PASSED", "Reason", "ReasonInfo"]

VERSTAT_PASSED = "TN-Validation-Passed"
VERSTAT_FAILED = "TN-Validation-Failed"
VERSTAT_NONE = "No-TN-Validation"


@dataclass(frozen=True, slots=True)
class ReasonInfo:
    """What a reason means on the wire."""

    sip_status: int
    sip_reason: str
    verstat: str
    lib_code: int
    description: str


class Reason(enum.StrEnum):
    """Stable reason codes.  The value is the code itself (e.g. ``"bad-signature"``)."""

    VALID = "valid"
    # No usable Identity header at all (RFC 8224 §6.2.2: 428).
    NO_IDENTITY = "no-identity"
    UNSUPPORTED_PPT = "unsupported-ppt"
    # The Identity header value itself.
    TOO_LARGE = "too-large"
    MALFORMED_IDENTITY = "malformed-identity"
    COMPACT_FORM = "compact-form"
    MISSING_INFO = "missing-info"
    INVALID_INFO = "invalid-info"
    UNSUPPORTED_ALG = "unsupported-alg"
    # The PASSporT (RFC 8225, RFC 8588).
    MALFORMED_TOKEN = "malformed-token"
    INVALID_JWS_HEADER = "invalid-jws-header"
    UNSUPPORTED_CRIT = "unsupported-crit"
    INVALID_TYP = "invalid-typ"
    PPT_MISMATCH = "ppt-mismatch"
    MISSING_X5U = "missing-x5u"
    X5U_MISMATCH = "x5u-mismatch"
    INVALID_CLAIMS_JSON = "invalid-claims-json"
    MISSING_CLAIM = "missing-claim"
    INVALID_CLAIM = "invalid-claim"
    NON_CANONICAL = "non-canonical"
    STALE = "stale"
    IAT_IN_FUTURE = "iat-in-future"
    ORIG_MISMATCH = "orig-mismatch"
    DEST_MISMATCH = "dest-mismatch"
    # Diverted calls: the chain of div PASSporTs (RFC 8946 §4.2).
    DIV_WITHOUT_SHAKEN = "div-without-shaken"
    DIV_CHAIN_BROKEN = "div-chain-broken"
    DIV_ORIG_MISMATCH = "div-orig-mismatch"
    DIV_TARGET_MISMATCH = "div-target-mismatch"
    DIV_LOOP = "div-loop"
    DIV_DUPLICATE_HOP = "div-duplicate-hop"
    # Rich Call Data (RFC 9795).
    INVALID_RCD = "invalid-rcd"
    RCD_INTEGRITY_MISMATCH = "rcd-integrity-mismatch"
    RCD_FETCH_FAILED = "rcd-fetch-failed"
    RCD_CONTENT_TOO_LARGE = "rcd-content-too-large"
    MALFORMED_SIGNATURE = "malformed-signature"
    BAD_SIGNATURE = "bad-signature"
    # The credential used to verify.
    UNSUPPORTED_KEY = "unsupported-key"
    KEY_UNAVAILABLE = "key-unavailable"
    NO_KEY_SOURCE = "no-key-source"
    # Getting the certificate from info (RFC 8224 §6.2.2: 436 Bad Identity Info).
    CERT_URL_REFUSED = "cert-url-refused"
    CERT_FETCH_FAILED = "cert-fetch-failed"
    CERT_FETCH_TIMEOUT = "cert-fetch-timeout"
    CERT_FETCH_REDIRECT = "cert-fetch-redirect"
    CERT_FETCH_STATUS = "cert-fetch-status"
    CERT_TOO_LARGE = "cert-too-large"
    # The certificate itself (437 Unsupported Credential).
    CERT_INVALID = "cert-invalid"
    CERT_EXPIRED = "cert-expired"
    CERT_NOT_YET_VALID = "cert-not-yet-valid"
    CERT_UNTRUSTED = "cert-untrusted"
    CERT_REVOKED = "cert-revoked"
    CERT_REVOCATION_UNKNOWN = "cert-revocation-unknown"
    CERT_NO_TNAUTHLIST = "cert-no-tnauthlist"
    CERT_TN_NOT_AUTHORIZED = "cert-tn-not-authorized"
    CERT_PROFILE = "cert-profile"
    NO_TRUST_ANCHORS = "no-trust-anchors"
    # A bug: an unexpected exception inside the verifier.  Never a silent pass.
    INTERNAL_ERROR = "internal-error"

    @property
    def info(self) -> ReasonInfo:
        return _TABLE[self]

    @property
    def sip_status(self) -> int:
        return _TABLE[self].sip_status

    @property
    def sip_reason(self) -> str:
        return _TABLE[self].sip_reason

    @property
    def verstat(self) -> str:
        return _TABLE[self].verstat

    @property
    def lib_code(self) -> int:
        return _TABLE[self].lib_code

    @property
    def description(self) -> str:
        return _TABLE[self].description


_S403 = (403, "Stale Date")
_S428 = (428, "Use Identity Header")
_S436 = (436, "Bad Identity Info")
_S437 = (437, "Unsupported Credential")
_S438 = (438, "Invalid Identity Header")
_S438P = (438, "Invalid PASSporT")  # RFC 8224 §6.2.2: alternative phrase for missing claims.
_S500 = (500, "Server Internal Error")


def _r(status: tuple[int, str], verstat: str, lib_code: int, description: str) -> ReasonInfo:
    return ReasonInfo(status[0], status[1], verstat, lib_code, description)


_F, _N = VERSTAT_FAILED, VERSTAT_NONE

_TABLE: dict[Reason, ReasonInfo] = {
    Reason.VALID: ReasonInfo(0, "", VERSTAT_PASSED, 0, "the PASSporT is valid"),
    Reason.NO_IDENTITY: _r(_S428, _N, -1, "no Identity header in the request"),
    Reason.UNSUPPORTED_PPT: ReasonInfo(
        428,
        "Use Supported PASSporT Format",
        _N,
        -303,
        "the Identity ppt parameter names a PASSporT extension this verifier does not support "
        "(supported: shaken, div, rcd)",
    ),
    Reason.TOO_LARGE: _r(_S438, _N, -301, "the Identity header value exceeds the size limit"),
    Reason.MALFORMED_IDENTITY: _r(_S438, _N, -301, "the Identity header value is not well formed"),
    Reason.COMPACT_FORM: _r(
        _S438, _N, -231, "compact-form PASSporT: SHAKEN requires the full form (RFC 8588 §3)"
    ),
    Reason.MISSING_INFO: _r(_S436, _N, -305, "the Identity header has no info parameter"),
    Reason.INVALID_INFO: _r(_S436, _N, -305, "the info parameter is not an absolute URI"),
    Reason.UNSUPPORTED_ALG: _r(_S437, _N, -202, "alg is not ES256"),
    Reason.MALFORMED_TOKEN: _r(_S438, _N, -301, "the PASSporT is not a JWS compact serialization"),
    Reason.INVALID_JWS_HEADER: _r(_S438, _N, -201, "the PASSporT header is not a JSON object"),
    Reason.UNSUPPORTED_CRIT: _r(
        _S438,
        _N,
        -201,
        "the PASSporT header has crit: no supported PASSporT extension defines critical "
        "header parameters (RFC 7515 §4.1.11)",
    ),
    Reason.INVALID_TYP: _r(_S437, _N, -204, "the PASSporT typ is not passport"),
    Reason.PPT_MISMATCH: _r(
        _S438,
        _N,
        -203,
        "the PASSporT ppt disagrees with the Identity ppt parameter or is not supported",
    ),
    Reason.MISSING_X5U: _r(_S436, _N, -205, "the PASSporT header has no x5u"),
    Reason.X5U_MISMATCH: _r(_S436, _N, -205, "the PASSporT x5u differs from the info parameter"),
    Reason.INVALID_CLAIMS_JSON: _r(_S438P, _N, -231, "the PASSporT claims are not a JSON object"),
    Reason.MISSING_CLAIM: _r(_S438P, _N, -231, "a required PASSporT claim is missing"),
    Reason.INVALID_CLAIM: _r(_S438P, _N, -231, "a PASSporT claim has a wrong type or value"),
    Reason.NON_CANONICAL: _r(
        _S438P, _N, -231, "the PASSporT JSON is not in RFC 8225 §9 canonical form (strict mode)"
    ),
    Reason.STALE: _r(_S403, _N, -232, "iat is older than the freshness window"),
    Reason.IAT_IN_FUTURE: _r(_S403, _N, -232, "iat is further in the future than the allowed skew"),
    Reason.ORIG_MISMATCH: _r(
        _S438, _N, -1, "orig does not match the calling number (P-Asserted-Identity/From)"
    ),
    Reason.DEST_MISMATCH: _r(
        _S438, _N, -1, "dest does not match the called number (To/Request-URI)"
    ),
    Reason.DIV_WITHOUT_SHAKEN: _r(
        _S438, _N, -1, "div PASSporT(s) but no SHAKEN PASSporT to start the chain (RFC 8946 §4.2)"
    ),
    Reason.DIV_CHAIN_BROKEN: _r(
        _S438,
        _N,
        -1,
        "a div PASSporT's div matches the dest of no other PASSporT: the chain is broken "
        "(RFC 8946 §4.2)",
    ),
    Reason.DIV_ORIG_MISMATCH: _r(
        _S438, _N, -1, "orig differs between the PASSporTs of a div chain (RFC 8946 §4.2 step 3)"
    ),
    Reason.DIV_TARGET_MISMATCH: _r(
        _S438,
        _N,
        -1,
        "no div chain ends at the call target: the outermost dest is not the called number "
        "(RFC 8946 §4.2 step 1)",
    ),
    Reason.DIV_LOOP: _r(_S438, _N, -1, "the div chain diverts through the same number twice"),
    Reason.DIV_DUPLICATE_HOP: _r(
        _S438, _N, -1, "the same div PASSporT appears more than once in the request"
    ),
    Reason.INVALID_RCD: _r(
        _S438P, _N, -231, "the rcd, crn or rcdi claim breaks RFC 9795 (e.g. rcd without nam)"
    ),
    Reason.RCD_INTEGRITY_MISMATCH: _r(
        _S438P, _N, -231, "an rcdi digest does not match the content it covers (RFC 9795 §6)"
    ),
    Reason.RCD_FETCH_FAILED: _r(
        _S436, _N, -402, "RCD content (icn, jcl) could not be fetched to check its rcdi digest"
    ),
    Reason.RCD_CONTENT_TOO_LARGE: _r(
        _S436, _N, -404, "RCD content (icn, jcl) exceeds the fetch size cap"
    ),
    Reason.MALFORMED_SIGNATURE: _r(
        _S438, _F, -253, "the signature is not 64 bytes of unpadded base64url"
    ),
    Reason.BAD_SIGNATURE: _r(_S438, _F, -251, "the signature does not verify"),
    Reason.UNSUPPORTED_KEY: _r(_S437, _N, -114, "the credential's key is not an EC P-256 key"),
    Reason.KEY_UNAVAILABLE: _r(
        _S500, _N, -451, "the configured key or certificate could not be loaded"
    ),
    Reason.NO_KEY_SOURCE: _r(
        _S500, _N, -401, "no key, certificate or certificate source is configured"
    ),
    Reason.CERT_URL_REFUSED: _r(
        _S436,
        _N,
        -401,
        "the info URL is refused by policy (scheme, userinfo, port, special-purpose address)",
    ),
    Reason.CERT_FETCH_FAILED: _r(
        _S436, _N, -402, "the certificate could not be fetched (DNS, connect, TLS, protocol)"
    ),
    Reason.CERT_FETCH_TIMEOUT: _r(
        _S436, _N, -402, "the certificate fetch did not complete within the timeout"
    ),
    Reason.CERT_FETCH_REDIRECT: _r(
        _S436, _N, -403, "the certificate server answered with a redirect (not followed)"
    ),
    Reason.CERT_FETCH_STATUS: _r(_S436, _N, -403, "the certificate server did not answer 200"),
    Reason.CERT_TOO_LARGE: _r(_S436, _N, -404, "the certificate response exceeds the size cap"),
    Reason.CERT_INVALID: _r(
        _S437, _N, -102, "the info resource is not a PEM or DER X.509 certificate (chain)"
    ),
    Reason.CERT_EXPIRED: _r(_S437, _F, -103, "a certificate of the chain has expired"),
    Reason.CERT_NOT_YET_VALID: _r(_S437, _F, -104, "a certificate of the chain is not yet valid"),
    Reason.CERT_UNTRUSTED: _r(
        _S437, _F, -101, "the certificate does not chain to a trusted STI root"
    ),
    Reason.CERT_REVOKED: _r(_S437, _F, -112, "a certificate of the chain is revoked (CRL)"),
    Reason.CERT_REVOCATION_UNKNOWN: _r(
        _S437, _N, -110, "no valid CRL could be obtained and a CRL is required"
    ),
    Reason.CERT_NO_TNAUTHLIST: _r(
        _S437, _F, -101, "the certificate has no (valid) TNAuthList extension (RFC 8226)"
    ),
    Reason.CERT_TN_NOT_AUTHORIZED: _r(
        _S437, _F, -101, "orig is outside the TNs and ranges the certificate's TNAuthList lists"
    ),
    Reason.CERT_PROFILE: _r(
        _S437,
        _F,
        -101,
        "the certificate is not usable for SHAKEN (key usage, key type, signature algorithm)",
    ),
    Reason.NO_TRUST_ANCHORS: _r(
        _S500, _N, -106, "certificate validation is on but no trust anchors are configured"
    ),
    Reason.INTERNAL_ERROR: _r(_S500, _N, -1, "unexpected error inside the verifier (a bug)"),
}

# Which failure to report when every Identity header of a request failed (RFC 8224 §6.2.2):
# 436 only when all credentials were unreachable, 437 when a credential was reached but not
# supported, 438/403 as soon as one PASSporT was actually examined.  Lower ranks win.
_STATUS_RANK = {438: 0, 403: 1, 437: 2, 436: 3, 500: 4, 428: 5}


def failure_rank(reason: Reason) -> int:
    return _STATUS_RANK.get(reason.sip_status, 6)
