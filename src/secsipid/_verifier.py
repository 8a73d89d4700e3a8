"""Verifying Identity headers (the STI-VS side, RFC 8224 §6.2, ATIS-1000074 §5.3).

Per Identity value, in the order of RFC 8224 §6.2 and cheapest first:

1. size cap, header syntax (RFC 8224 §4);
2. ``ppt`` parameter: an unsupported one means the header is ignored (Step 1, R47);
3. ``alg`` parameter ES256 (RFC 8224 §4.1 default), ``info`` present and an absolute URI;
4. the PASSporT: full form (RFC 8588 §3), JWS header ``alg`` ES256 -- never ``none``, never an
   HMAC: the algorithm is fixed, not read from the token -- no ``crit`` (RFC 7515 §4.1.11: no
   PASSporT extension we support defines one), ``typ`` passport, ``ppt`` shaken and
   agreeing with the parameter when present, ``x5u`` equal to ``info`` (RFC 8224 §4.1, simple string
   comparison per RFC 3986 §6.2.1);
5. SHAKEN claims present with the right types (RFC 8225 §5, RFC 8588);
6. freshness: ``iat`` not older than ``expire`` and not beyond ``future_skew`` (Step 4);
7. ``orig``/``dest`` against the numbers the caller took from the SIP request (Step 2, §6.2.4,
   RFC 8225 §10.1), when given;
8. the credential (from a key, a certificate, a file, or a certificate source), then the
   signature over the received bytes (Step 5).

Steps 1-7 and the signature are pure; only step 8's credential lookup may do I/O, through a
:class:`CredentialSource`.  The sync and async entry points share everything else.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import anyio.to_thread
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from ._codec import JSONError, loads_strict
from ._div import (
    ChainHop,
    Hop,
    build_chain,
    check_base_claims,
    check_div_claims,
)
from ._errors import KeyLoadError, VerificationError
from ._fetch import DEFAULT_TIMEOUT, BudgetExhaustedError, Fetcher, request_deadline
from ._identity import (
    DEFAULT_MAX_IDENTITY_SIZE,
    IdentityHeader,
    is_absolute_uri,
    parse_identity,
    split_identity_values,
)
from ._keys import Credential, credential_from_file
from ._passport import DecodedPassport, check_shaken_claims, claim_warnings, decode_token
from ._rcd import (
    PointerError,
    RichCallData,
    check_rcd_claims,
    digest_matches,
    parse_pointer,
    resolve_pointer,
    url_targets,
)
from ._reasons import Reason, failure_rank
from ._tn import canonical_tn, canonical_uri
from ._trust import TrustPolicy, TrustValidator

__all__ = [
    "CredentialFile",
    "CredentialSource",
    "StaticCredential",
    "Verdict",
    "VerifiedPassport",
    "Verifier",
    "VerifyPolicy",
]

log = logging.getLogger("secsipid")

_ES256 = ec.ECDSA(hashes.SHA256())

# Kamailio's secsipid module: expire 300 s (modparam "expire").  RFC 8224 recommends 60 s;
# operators who want that set it (docs: "hardened" settings).
DEFAULT_EXPIRE = 300
# RFC 8225 §10.1 allows "reasonable" clock drift; 5 s in the future is plenty for NTP hosts.
DEFAULT_FUTURE_SKEW = 5
# RFC 8224 §4 allows several Identity headers; more than this is abuse, not signalling.
DEFAULT_MAX_IDENTITIES = 16


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifyPolicy:
    """How strict a :class:`Verifier` is.  Immutable; build once, share freely.

    * ``expire``: seconds after ``iat`` a PASSporT stays fresh (``now > iat + expire`` is stale).
    * ``future_skew``: seconds ``iat`` may lie in the future (clock drift).
    * ``strict``: also reject what RFCs phrase as SHOULD or canonical form: non-canonical JSON
      (RFC 8225 §9), non-UUID ``origid`` (RFC 8588 §5), non-canonical ``tn`` (RFC 8224 §8.3),
      a missing ``ppt`` parameter (RFC 8224 §4.1).  Off by default: peers in the field send
      these and the signature still binds what they signed.
    * ``max_identity_size``/``max_identities``: input caps, refused before any parsing.
    * ``timeout``: seconds for the whole check of one request, whatever it carries: every
      certificate and CRL fetch of every Identity value, DNS included, ends within it (None:
      the certificate source's fetch timeout, 5 s by default like Kamailio's ``timeout``).
    * ``fetch_rcd``: also fetch the Rich Call Data content behind URLs (``icn``, ``jcl``)
      that an ``rcdi`` digest covers, and check it (RFC 9795 §6), within the same budget and
      through the same fetcher (safety policy, size cap) as certificates.  Off by default:
      inline content is always checked, URLs only on request.
    """

    expire: int = DEFAULT_EXPIRE
    future_skew: int = DEFAULT_FUTURE_SKEW
    strict: bool = False
    max_identity_size: int = DEFAULT_MAX_IDENTITY_SIZE
    max_identities: int = DEFAULT_MAX_IDENTITIES
    timeout: float | None = None
    fetch_rcd: bool = False

    def __post_init__(self) -> None:
        for name in ("expire", "future_skew", "max_identity_size", "max_identities"):
            value = getattr(self, name)
            if type(value) is not int or value < 0:
                raise ValueError(f"VerifyPolicy.{name} must be a non-negative int, not {value!r}")
        t = self.timeout
        if t is not None and (type(t) not in (int, float) or not 0 < t <= 300):
            raise ValueError(f"VerifyPolicy.timeout must be in (0, 300] seconds, not {t!r}")


@runtime_checkable
class CredentialSource(Protocol):
    """Where the verifier gets the credential for an ``info`` URL.

    Raise :class:`VerificationError` (e.g. ``cert-fetch-failed``) or :class:`KeyLoadError`
    when there is none.  Optional members the verifier uses when present:

    * ``local = True``: the source does no network I/O (a key, a file);
    * ``cached_credential(info) -> Credential | None``: the credential if it is at hand
      without the network (values whose credential is at hand are checked first);
    * ``async def acredential_for(info)``: the asyncio twin (also lets a synchronous check
      fetch several URLs at once).
    """

    def credential_for(self, info: str) -> Credential: ...


class StaticCredential:
    """Always the same credential, whatever ``info`` says (a configured key or certificate)."""

    __slots__ = ("credential",)
    local = True  # no network: the verifier calls it without a time budget

    def __init__(self, credential: Credential) -> None:
        self.credential = credential

    def credential_for(self, info: str) -> Credential:
        return self.credential


class CredentialFile:
    """The credential in a file, reloaded when the file changes (one ``stat()`` per use)."""

    __slots__ = ("path",)
    local = True

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def credential_for(self, info: str) -> Credential:
        return credential_from_file(self.path)


_SOURCE_TRUST: Any = object()  # "whatever the source says": no trust for keys and files


class _NoSource:
    local = True

    def credential_for(self, info: str) -> Credential:
        raise VerificationError(
            Reason.NO_KEY_SOURCE, "no key, certificate or certificate source is configured"
        )


def _as_source(key: object) -> CredentialSource:
    if key is None:
        return _NoSource()
    if isinstance(key, Credential):
        return StaticCredential(key)
    if isinstance(key, ec.EllipticCurvePublicKey):
        return StaticCredential(Credential(key))
    if isinstance(key, x509.Certificate):
        return StaticCredential(Credential.from_certificates([key]))
    if isinstance(key, str | os.PathLike):
        return CredentialFile(key)
    if isinstance(key, CredentialSource):
        return key
    raise TypeError(f"cannot verify with a {type(key).__name__}")


class VerifiedPassport:
    """A PASSporT whose header, claims and signature were all checked."""

    __slots__ = ("_decoded", "credential", "identity")

    def __init__(
        self, identity: IdentityHeader, decoded: DecodedPassport, credential: Credential
    ) -> None:
        self.identity = identity
        self._decoded = decoded
        self.credential = credential

    @property
    def header(self) -> dict[str, Any]:
        return self._decoded.header

    @property
    def claims(self) -> dict[str, Any]:
        return self._decoded.claims

    @property
    def token(self) -> str:
        return self._decoded.token

    @property
    def ppt(self) -> str:
        """The PASSporT type: ``shaken``, ``div`` or ``rcd``."""
        return str(self.header.get("ppt", ""))

    @property
    def attest(self) -> str:
        """SHAKEN attestation (``""`` for a ``div`` or ``rcd`` PASSporT, which has none)."""
        return str(self.claims.get("attest", ""))

    @property
    def iat(self) -> int:
        return int(self.claims["iat"])

    @property
    def origid(self) -> str:
        return str(self.claims.get("origid", ""))

    @property
    def div(self) -> str | None:
        """A ``div`` PASSporT's diverting identity (RFC 8946 §3), else None."""
        div = self.claims.get("div") if self.ppt == "div" else None
        if not isinstance(div, dict):
            return None
        return canonical_tn(div["tn"]) if "tn" in div else str(div.get("uri", ""))

    @property
    def rcd(self) -> RichCallData | None:
        """The Rich Call Data this PASSporT carries (``rcd``/``crn`` claims), else None."""
        return RichCallData.from_claims(self.claims) if "rcd" in self.claims else None

    @property
    def orig(self) -> str:
        """The ``orig`` identity: the canonical number, or the URI."""
        orig = self.claims["orig"]
        return canonical_tn(orig["tn"]) if "tn" in orig else str(orig["uri"])

    @property
    def dest(self) -> list[str]:
        dest = self.claims["dest"]
        return [canonical_tn(t) for t in dest.get("tn", ())] + list(dest.get("uri", ()))

    @property
    def info(self) -> str:
        return self.identity.info or ""

    @property
    def spc(self) -> str | None:
        """The signer's Service Provider Code, from its certificate's TNAuthList."""
        return self.credential.spc

    @property
    def warnings(self) -> list[str]:
        """What a strict verifier would have refused (computed on demand)."""
        found = claim_warnings(self._decoded)
        if self.identity.ppt is None:
            found.append("Identity header has no ppt parameter (RFC 8224 §4.1)")
        return found

    def __repr__(self) -> str:
        return f"VerifiedPassport(attest={self.attest!r}, orig={self.orig!r}, dest={self.dest!r})"


@dataclass(frozen=True, slots=True)
class Failure:
    """Why one Identity value of a request did not pass."""

    index: int
    reason: Reason
    message: str
    lib_code: int


@dataclass(slots=True)  # not frozen: frozen dataclass __init__ costs ~1 us on the hot path
class Verdict:
    """The outcome of checking a request's Identity header(s).  Truthy only when valid.
    Treat it as read-only.

    ``reason`` is the stable reason code (``"valid"`` on success); ``sip_status`` and
    ``sip_reason`` are the response a rejecting verifier sends (0 and ``""`` when valid);
    ``verstat`` goes into P-Asserted-Identity/From; ``lib_code`` is libsecsipid's equivalent
    return code.  ``header``/``claims`` are the decoded PASSporT (empty when undecodable);
    ``index`` is the position of the Identity value they come from (-1 for none);
    ``failures`` lists every Identity value that did not pass.

    Diverted calls (RFC 8946): ``chain`` lists the PASSporTs of the diversion chain that was
    judged, innermost (the SHAKEN PASSporT) first, each with its own outcome; when the chain
    made the request valid, ``passport`` is its SHAKEN PASSporT and ``diverted`` is true.
    When a SHAKEN PASSporT was valid on its own but the request's chain did not hold,
    ``chain_failure`` says why.

    Rich Call Data (RFC 9795): ``rcd`` is the verified RCD of the call (from the valid
    PASSporT, or from an ``rcd`` PASSporT of the same caller), None when there is none or it
    failed a content check (``rcd_failure``); ``rcd_checked`` lists the ``rcdi`` pointers
    whose URL content was fetched and matched.
    """

    ok: bool
    reason: Reason
    message: str = ""
    lib_code: int = 0
    header: dict[str, Any] = field(default_factory=dict)
    claims: dict[str, Any] = field(default_factory=dict)
    passport: VerifiedPassport | None = None
    index: int = -1
    failures: tuple[Failure, ...] = ()
    chain: tuple[ChainHop, ...] = ()
    chain_failure: Failure | None = None
    rcd_passport: VerifiedPassport | None = None
    rcd_failure: Failure | None = None
    rcd_checked: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return self.ok

    @property
    def valid(self) -> bool:
        return self.ok

    @property
    def sip_status(self) -> int:
        return self.reason.sip_status

    @property
    def sip_reason(self) -> str:
        return self.reason.sip_reason

    @property
    def verstat(self) -> str:
        return self.reason.verstat

    @property
    def spc(self) -> str | None:
        """The signer's Service Provider Code (TNAuthList), when valid and known."""
        return self.passport.spc if self.passport is not None else None

    @property
    def diverted(self) -> bool:
        """Valid through a chain of div PASSporTs (the call was forwarded)."""
        return (
            self.ok
            and bool(self.chain)
            and self.chain_failure is None
            and all(hop.ok for hop in self.chain)
        )

    @property
    def rcd(self) -> RichCallData | None:
        """The verified Rich Call Data of the call, or None."""
        if not self.ok or self.rcd_failure is not None:
            return None
        source = self.rcd_passport if self.rcd_passport is not None else self.passport
        return source.rcd if source is not None else None

    @classmethod
    def from_error(
        cls, exc: VerificationError, index: int = -1, failures: tuple[Failure, ...] = ()
    ) -> Verdict:
        return cls(
            False,
            exc.reason,
            exc.message,
            exc.lib_code,
            exc.header,
            exc.claims,
            None,
            index,
            failures,
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (the CLI's ``--json`` output): strict JSON, every value a
        str, int, bool, None, list or object."""
        rcd = self.rcd
        return {
            "valid": self.ok,
            "reason": self.reason.value,
            "message": self.message,
            "sip_status": self.sip_status,
            "sip_reason": self.sip_reason,
            "verstat": self.verstat,
            "lib_code": self.lib_code,
            "spc": self.spc,
            "header": self.header,
            "claims": self.claims,
            "index": self.index,
            "failures": [
                {"index": f.index, "reason": f.reason.value, "message": f.message}
                for f in self.failures
            ],
            "diverted": self.diverted,
            "chain": [hop.to_dict() for hop in self.chain],
            "chain_failure": _failure_dict(self.chain_failure),
            "rcd": None if rcd is None else rcd.to_dict(),
            "rcd_failure": _failure_dict(self.rcd_failure),
            "rcd_checked": list(self.rcd_checked),
            "call_info": [] if rcd is None else rcd.call_info(),
        }


def _failure_dict(failure: Failure | None) -> dict[str, Any] | None:
    if failure is None:
        return None
    return {"index": failure.index, "reason": failure.reason.value, "message": failure.message}


def _der_parts(r_high: bool, s_high: bool) -> tuple[bytes, bytes]:
    """The DER bytes before r and between r and s, for 32-byte r and s without a leading
    zero byte (a set high bit needs a zero byte before it: DER integers are signed)."""
    r_len, s_len = 32 + r_high, 32 + s_high
    head = bytes((0x30, 4 + r_len + s_len, 2, r_len)) + b"\0" * r_high
    return head, bytes((2, s_len)) + b"\0" * s_high


_DER_PARTS = [_der_parts(bool(i & 2), bool(i & 1)) for i in range(4)]


def _der_signature(sig: bytes) -> bytes:
    """JWS ``r || s`` (64 bytes, checked by the decoder) to DER ``SEQUENCE { INTEGER r,
    INTEGER s }`` for OpenSSL, built by hand: minimal big-endian integers (leading zeros
    dropped, one zero byte added before a set high bit), always short-form lengths (at most
    70 bytes).  Same bytes as ``encode_dss_signature``; inside a Kamailio worker, where every
    call runs with cold caches, it saves ~9 µs per verification (bench/kamailio_ab.py)."""
    r, s = sig[:32], sig[32:]
    if r[0] and s[0]:  # neither has a leading zero byte: 127 signatures in 128
        # The DER around them only depends on their high bits: one of four prefixes.
        head, middle = _DER_PARTS[(r[0] >> 7) << 1 | s[0] >> 7]
        return b"".join((head, r, middle, s))
    r = r.lstrip(b"\0")
    s = s.lstrip(b"\0")
    if not r or r[0] & 0x80:
        r = b"\0" + r
    if not s or s[0] & 0x80:
        s = b"\0" + s
    return bytes((0x30, 4 + len(r) + len(s), 2, len(r))) + r + bytes((2, len(s))) + s


class _Expected:
    """The caller's numbers, canonicalized once per request."""

    __slots__ = ("dest_tns", "dest_uris", "orig_tn", "orig_uri")

    def __init__(self, orig: str | None, dest: str | Sequence[str] | None) -> None:
        self.orig_tn = self.orig_uri = None
        if orig is not None:
            self.orig_tn = canonical_tn(orig)
            self.orig_uri = canonical_uri(orig)
        self.dest_tns: frozenset[str] | None = None
        self.dest_uris: frozenset[str] = frozenset()
        if dest is not None:
            dests = [dest] if isinstance(dest, str) else list(dest)
            self.dest_tns = frozenset(t for t in map(canonical_tn, dests) if t)
            self.dest_uris = frozenset(u for u in map(canonical_uri, dests) if u)

    def without_dest(self) -> _Expected:
        """The same caller, no called party (a chain is judged on its outermost dest)."""
        plain = _Expected(None, None)
        plain.orig_tn, plain.orig_uri = self.orig_tn, self.orig_uri
        return plain


def _orig_tn(decoded: DecodedPassport) -> str | None:
    """The number the signer's credential must have authority over: ``orig``, or for a
    ``div`` PASSporT the diverting number ``div`` (RFC 8946 §3, §4.2 step 2)."""
    claims = decoded.claims
    who = claims["orig"]
    if "div" in claims and decoded.header.get("ppt") == "div":
        who = claims["div"]
    return canonical_tn(who["tn"]) if "tn" in who else None


def _check_orig(claims: dict[str, Any], expected: _Expected) -> None:
    orig = claims["orig"]
    if "tn" in orig:
        if expected.orig_tn and canonical_tn(orig["tn"]) == expected.orig_tn:
            return
        got = orig["tn"]
    else:
        if expected.orig_uri and canonical_uri(orig["uri"]) == expected.orig_uri:
            return
        got = orig["uri"]
    want = expected.orig_tn or expected.orig_uri or "(no number)"
    raise VerificationError(
        Reason.ORIG_MISMATCH,
        f"orig {got} in the PASSporT is not the calling party {want} (canonical forms compared)",
    )


def _check_dest(claims: dict[str, Any], expected: _Expected) -> None:
    dest = claims["dest"]
    assert expected.dest_tns is not None
    for tn in dest.get("tn", ()):
        if canonical_tn(tn) in expected.dest_tns:
            return
    for uri in dest.get("uri", ()):
        if canonical_uri(uri) in expected.dest_uris:
            return
    got = ", ".join([*dest.get("tn", ()), *dest.get("uri", ())]) or "(empty)"
    want = ", ".join(sorted(expected.dest_tns | expected.dest_uris)) or "(no number)"
    raise VerificationError(
        Reason.DEST_MISMATCH,
        f"dest {got} in the PASSporT does not include the called party {want} "
        "(canonical forms compared)",
    )


class Verifier:
    """Verifies Identity headers with one credential or credential source.

    ``key`` is a :class:`Credential`, an EC public key, an ``x509.Certificate``, a path to a
    PEM/DER public key or certificate file (reloaded when it changes), or a
    :class:`CredentialSource` (e.g. a certificate fetcher for the ``info`` URL).

    :meth:`verify` returns a :class:`VerifiedPassport` or raises :class:`VerificationError`;
    :meth:`check` takes all the Identity values of a request and returns a :class:`Verdict`
    (valid if any one value is valid, RFC 8224 §6.2.1) without raising for bad input.
    """

    __slots__ = ("_fetcher", "_local", "_peek", "_source_timeout", "policy", "source", "trust")

    def __init__(
        self,
        key: Credential
        | ec.EllipticCurvePublicKey
        | x509.Certificate
        | str
        | os.PathLike[str]
        | CredentialSource
        | None = None,
        *,
        policy: VerifyPolicy | None = None,
        trust: TrustPolicy | TrustValidator | None = _SOURCE_TRUST,
        fetcher: Fetcher | None = None,
    ) -> None:
        self.source = source = _as_source(key)
        # Rich Call Data content (VerifyPolicy.fetch_rcd) goes through the certificate
        # source's fetcher (its safety policy and size cap), or this one, or a default one.
        self._fetcher = fetcher or getattr(source, "fetcher", None)
        self.policy = policy if policy is not None else VerifyPolicy()
        # What the request flow needs to know of the source, looked up once.
        self._local = bool(getattr(source, "local", False))
        self._peek = getattr(source, "cached_credential", None)
        timeout = getattr(getattr(source, "fetch_policy", None), "timeout", None)
        self._source_timeout = (
            float(timeout) if isinstance(timeout, int | float) else DEFAULT_TIMEOUT
        )
        if trust is _SOURCE_TRUST:
            # A CertificateSource carries the trust its user chose for it; keys and files
            # configured by the operator are trusted as they are unless trust is given.
            trust = getattr(self.source, "trust", None)
        if isinstance(trust, TrustPolicy):
            trust = TrustValidator(trust, getattr(self.source, "fetcher", None))
        self.trust: TrustValidator | None = trust

    # -- the pure part -----------------------------------------------------------------------

    def _examine(
        self,
        value: str,
        expected: _Expected | None,
        now: float,
        allow: frozenset[str] = frozenset(),
    ) -> tuple[IdentityHeader, DecodedPassport]:
        """Everything except the credential and the signature.  ``allow``: PASSporT types
        accepted besides ``shaken`` (``div``, ``rcd``)."""
        policy = self.policy
        hdr = parse_identity(value, max_size=policy.max_identity_size)
        params = hdr.params
        # Parameter values are tokens, compared case-insensitively (RFC 3261 §7.3.1); the
        # JWS header's own "alg"/"ppt" below are compared exactly (RFC 7515 §4.1.1).
        ppt = params.get("ppt")
        kind = "shaken"
        if ppt is not None and ppt != "shaken":
            kind = ppt.lower()
            if kind != "shaken" and kind not in allow:
                raise VerificationError(
                    Reason.UNSUPPORTED_PPT,
                    f"Identity ppt {ppt!r} is not supported"
                    + (
                        " here: a div PASSporT is verified with its chain, by check()"
                        if kind == "div"
                        else " (only shaken, div and rcd)"
                    ),
                )
        alg = params.get("alg")
        if alg is not None and alg != "ES256" and alg.upper() != "ES256":
            raise VerificationError(
                Reason.UNSUPPORTED_ALG, f"Identity alg {alg!r} is not ES256", lib_code=-302
            )
        info = params.get("info")
        if not info:
            # libsecsipid says -301 for a value without any parameter, -305 otherwise.
            raise VerificationError(
                Reason.MISSING_INFO,
                "Identity header has no info parameter",
                lib_code=-305 if params else -301,
            )
        if not is_absolute_uri(info):
            raise VerificationError(Reason.INVALID_INFO, f"info {info!r} is not an absolute URI")
        decoded = decode_token(hdr.token)
        try:
            self._check_passport(hdr, decoded, expected, now, kind)
        except VerificationError as exc:
            exc.header, exc.claims = decoded.header, decoded.claims
            raise
        return hdr, decoded

    def _check_passport(
        self,
        hdr: IdentityHeader,
        decoded: DecodedPassport,
        expected: _Expected | None,
        now: float,
        kind: str,
    ) -> None:
        header, claims, policy = decoded.header, decoded.claims, self.policy
        if header.get("alg") != "ES256":
            raise VerificationError(
                Reason.UNSUPPORTED_ALG, f"PASSporT alg {header.get('alg')!r} is not ES256"
            )
        if "crit" in header:
            # RFC 7515 §4.1.11: a recipient MUST reject a JWS whose crit names an extension it
            # does not understand (or that is malformed: not a non-empty list of extension
            # names).  PASSporT (RFC 8225 §8.1) and the extensions verified here, shaken (RFC
            # 8588), div (RFC 8946) and rcd (RFC 9795), define no critical header parameters,
            # so every crit, whatever its value, is refused.
            raise VerificationError(
                Reason.UNSUPPORTED_CRIT,
                f"PASSporT header crit {repr(header['crit'])[:64]} names parameters this "
                "verifier does not support (RFC 7515 §4.1.11)",
            )
        if header.get("typ") != "passport":
            raise VerificationError(
                Reason.INVALID_TYP, f"PASSporT typ {header.get('typ')!r} is not passport"
            )
        if header.get("ppt") != kind:
            raise VerificationError(
                Reason.PPT_MISMATCH,
                f"PASSporT ppt {header.get('ppt')!r} is not {kind}"
                f" (Identity ppt parameter {hdr.ppt!r})",
                # libsecsipid refuses any ppt parameter but shaken (-303) before the header
                lib_code=None if kind == "shaken" else -303,
            )
        x5u = header.get("x5u")
        if x5u is None:
            raise VerificationError(Reason.MISSING_X5U, "PASSporT header has no x5u")
        if x5u != hdr.info:
            raise VerificationError(
                Reason.X5U_MISMATCH, f"x5u {x5u!r} differs from info {hdr.info!r}"
            )
        if kind == "shaken":
            if not decoded.shaken_claims:  # the fast path's claims pass these checks
                check_shaken_claims(claims)
            # RFC 9795 claims in a SHAKEN PASSporT (which has five claims without them)
            if len(claims) != 5 and ("rcd" in claims or "rcdi" in claims or "crn" in claims):
                check_rcd_claims(claims)
        elif kind == "div":
            check_div_claims(claims)  # RFC 8946 §3
        else:
            check_base_claims(claims)  # an rcd PASSporT (RFC 9795): baseline claims + rcd
            if "rcd" not in claims:
                raise VerificationError(Reason.MISSING_CLAIM, "rcd PASSporT without rcd claim")
            check_rcd_claims(claims)
        iat = claims["iat"]
        now_i = int(now)
        if now_i - iat > policy.expire:
            raise VerificationError(
                Reason.STALE, f"iat is {now_i - iat} s old, over the {policy.expire} s limit"
            )
        if iat - now_i > policy.future_skew:
            raise VerificationError(
                Reason.IAT_IN_FUTURE,
                f"iat is {iat - now_i} s in the future, over the {policy.future_skew} s skew",
            )
        if expected is not None:
            if expected.orig_tn is not None:
                _check_orig(claims, expected)
            if expected.dest_tns is not None and kind != "div":
                _check_dest(claims, expected)  # a div's dest is judged with its chain
        if policy.strict:
            if hdr.ppt is None:
                raise VerificationError(
                    Reason.PPT_MISMATCH, "Identity header has no ppt parameter (strict mode)"
                )
            problems = claim_warnings(decoded)
            if problems:
                raise VerificationError(Reason.NON_CANONICAL, "; ".join(problems))

    @staticmethod
    def _finish(
        hdr: IdentityHeader, decoded: DecodedPassport, credential: Credential
    ) -> VerifiedPassport:
        der = _der_signature(decoded.signature)
        try:
            credential.public_key.verify(der, decoded.signing_input, _ES256)
        except InvalidSignature:
            exc = VerificationError(Reason.BAD_SIGNATURE, "the ES256 signature does not verify")
            exc.header, exc.claims = decoded.header, decoded.claims
            raise exc from None
        return VerifiedPassport(hdr, decoded, credential)

    # -- credentials -----------------------------------------------------------------------

    def _budget(self) -> float:
        timeout = self.policy.timeout
        return self._source_timeout if timeout is None else timeout

    def _credential(self, info: str) -> Credential:
        try:
            return self.source.credential_for(info)
        except KeyLoadError as exc:
            raise VerificationError.from_key_error(exc) from exc

    def _at_hand(self, info: str, deadline: float) -> Credential | None:
        """The credential for ``info`` when no network is needed (None: fetch it later)."""
        if self._local:
            return self._credential(info)
        peek = self._peek
        if peek is not None:
            credential: Credential | None = peek(info)
            return credential
        with request_deadline(deadline):  # a source of unknown kind: ask it, within budget
            return self._credential(info)

    def _accept(
        self,
        hdr: IdentityHeader,
        decoded: DecodedPassport,
        credential: Credential,
        now: float,
        deadline: float,
    ) -> VerifiedPassport:
        """Trust in the credential, then the signature."""
        trust = self.trust
        if trust is not None:
            iat, orig_tn = decoded.claims["iat"], _orig_tn(decoded)
            try:
                if trust.is_cached(credential, now):
                    trust.check(credential, iat=iat, now=now, orig_tn=orig_tn)
                else:  # building the chain may fetch CRLs: within the request's budget
                    with request_deadline(deadline):
                        trust.check(credential, iat=iat, now=now, orig_tn=orig_tn)
            except VerificationError as exc:
                exc.header, exc.claims = decoded.header, decoded.claims
                raise
        return self._finish(hdr, decoded, credential)

    async def _aaccept(
        self,
        hdr: IdentityHeader,
        decoded: DecodedPassport,
        credential: Credential,
        now: float,
        deadline: float,
    ) -> VerifiedPassport:
        trust = self.trust
        if trust is not None and not trust.is_cached(credential, now):
            check = functools.partial(
                trust.check, credential, iat=decoded.claims["iat"], now=now,
                orig_tn=_orig_tn(decoded),
            )  # fmt: skip
            try:
                with request_deadline(deadline):  # the worker thread gets this context
                    await anyio.to_thread.run_sync(check)
            except VerificationError as exc:
                exc.header, exc.claims = decoded.header, decoded.claims
                raise
            trust = None  # checked
        if trust is None:
            return self._finish(hdr, decoded, credential)
        return self._accept(hdr, decoded, credential, now, deadline)

    # -- one value ---------------------------------------------------------------------------

    def _verify(
        self, value: str, expected: _Expected | None, now: float | None
    ) -> VerifiedPassport:
        deadline = time.monotonic() + self._budget()
        now = time.time() if now is None else now
        hdr, decoded = self._examine(value, expected, now, _ONE_VALUE)
        info = hdr.info or ""
        try:
            credential = self._at_hand(info, deadline)
            if credential is None:
                with request_deadline(deadline):
                    credential = self._credential(info)
        except VerificationError as exc:
            exc.header, exc.claims = decoded.header, decoded.claims
            raise
        return self._accept(hdr, decoded, credential, now, deadline)

    async def _averify(
        self, value: str, expected: _Expected | None, now: float | None
    ) -> VerifiedPassport:
        deadline = time.monotonic() + self._budget()
        now = time.time() if now is None else now
        hdr, decoded = self._examine(value, expected, now, _ONE_VALUE)
        info = hdr.info or ""
        try:
            credential = None
            if self._local or self._peek is not None:
                credential = self._at_hand(info, deadline)
            if credential is None:
                with request_deadline(deadline):
                    credential = await self._acredential(info)
        except VerificationError as exc:
            exc.header, exc.claims = decoded.header, decoded.claims
            raise
        return await self._aaccept(hdr, decoded, credential, now, deadline)

    def verify(
        self,
        identity: str,
        *,
        orig_tn: str | None = None,
        dest_tn: str | Sequence[str] | None = None,
        now: float | None = None,
    ) -> VerifiedPassport:
        """Verify one Identity header value; raise :class:`VerificationError` if invalid.

        ``orig_tn`` (from P-Asserted-Identity or From) and ``dest_tn`` (To and/or Request-URI)
        are compared with the claims when given; numbers or SIP/TEL URIs are accepted.
        """
        if not isinstance(identity, str):
            raise TypeError(f"identity must be str, not {type(identity).__name__}")
        expected = None if orig_tn is None and dest_tn is None else _Expected(orig_tn, dest_tn)
        return self._verify(identity, expected, now)

    async def averify(
        self,
        identity: str,
        *,
        orig_tn: str | None = None,
        dest_tn: str | Sequence[str] | None = None,
        now: float | None = None,
    ) -> VerifiedPassport:
        """:meth:`verify` for asyncio: the credential lookup awaits instead of blocking."""
        if not isinstance(identity, str):
            raise TypeError(f"identity must be str, not {type(identity).__name__}")
        expected = None if orig_tn is None and dest_tn is None else _Expected(orig_tn, dest_tn)
        return await self._averify(identity, expected, now)

    async def _acredential(self, info: str) -> Credential:
        getter = getattr(self.source, "acredential_for", None)
        try:
            if getter is not None:
                credential: Credential = await getter(info)
                return credential
            return self.source.credential_for(info)
        except KeyLoadError as exc:
            raise VerificationError.from_key_error(exc) from exc

    # -- a request ---------------------------------------------------------------------------
    #
    # RFC 8224 §6.2.1: a request is valid when one of its Identity values is.  The whole check
    # of a request fits in one time budget (VerifyPolicy.timeout), whatever the request
    # carries: values whose credential is at hand (a key, a file, a cached certificate) are
    # checked first, in order, and the first valid one ends the check; only then are the
    # other values' certificates fetched, every distinct URL at once, and each value is
    # checked as its certificate arrives; the first valid one ends the check and the fetches
    # still running are cancelled.  What has not arrived by the deadline is cert-fetch-timeout.
    #
    # A request with a div or rcd PASSporT (its Identity ppt parameter says so) takes the
    # extended path instead: a chain needs every PASSporT of it verified, not the first valid
    # one.  Same budget and order: values whose credential is at hand first, then every
    # distinct URL fetched at once; then the chain is built and judged (RFC 8946 §4.2).  A
    # SHAKEN PASSporT valid for the call target on its own still makes the request valid.
    # The hot path (no div, no rcd) pays one lower-cased scan of the parameters for this.

    def check(
        self,
        identity: str | Iterable[str],
        *,
        orig_tn: str | None = None,
        dest_tn: str | Sequence[str] | None = None,
        now: float | None = None,
    ) -> Verdict:
        """Check all Identity values of a request (one string, comma-joined values, or one
        string per header line).  Never raises for bad input: every outcome is a Verdict."""
        deadline = time.monotonic() + self._budget()
        outcome = _Outcome(self.policy, identity, orig_tn, dest_tn)
        now = time.time() if now is None else now
        waiting: list[_Waiting] = []
        for index, value in outcome.values:
            try:
                hdr, decoded = self._examine(value, outcome.expected, now, _EXTENDED)
                if decoded.header["ppt"] != "shaken":  # div or rcd: every value is needed
                    return self._rcd_checked(self._check_all(outcome, now, deadline), deadline)
                credential = self._at_hand(hdr.info or "", deadline)
                if credential is None:
                    waiting.append(_Waiting(index, hdr, decoded))
                    continue
                passport = self._accept(hdr, decoded, credential, now, deadline)
            except Exception as exc:  # noqa: BLE001 - _Outcome separates bugs from failures
                if _names_extension(exc):
                    return self._rcd_checked(self._check_all(outcome, now, deadline), deadline)
                outcome.fail(index, exc)
                continue
            if index + 1 < len(outcome.values) and _extended(outcome.values[index + 1 :]):
                return self._rcd_checked(self._check_all(outcome, now, deadline), deadline)
            verdict = outcome.success(index, passport)
            return self._rcd_checked(verdict, deadline) if self.policy.fetch_rcd else verdict
        if waiting:
            with request_deadline(deadline):
                found = self._fetch_and_check(waiting, outcome, now, deadline)
            if found is not None:
                return self._rcd_checked(outcome.success(*found), deadline)
        return outcome.verdict()

    def _fetch_and_check(
        self, waiting: list[_Waiting], outcome: _Outcome, now: float, deadline: float
    ) -> tuple[int, VerifiedPassport] | None:
        by_url = _by_url(waiting)
        if len(by_url) > 1 and hasattr(self.source, "acredential_for") and not _in_event_loop():
            # Several certificates to fetch: all at once, on a private event loop that ends
            # with this call (no thread or fetch outlives the request).
            return asyncio.run(self._afetch_and_check(by_url, outcome, now, deadline, False))
        for url, values in by_url.items():
            try:
                credential = self._credential(url)
            except Exception as exc:  # noqa: BLE001
                for item in values:
                    outcome.fail(item.index, _for_value(exc, item))
                continue
            for item in values:
                try:
                    passport = self._accept(item.hdr, item.decoded, credential, now, deadline)
                except Exception as exc:  # noqa: BLE001
                    outcome.fail(item.index, exc)
                    continue
                return item.index, passport
        return None

    async def acheck(
        self,
        identity: str | Iterable[str],
        *,
        orig_tn: str | None = None,
        dest_tn: str | Sequence[str] | None = None,
        now: float | None = None,
    ) -> Verdict:
        """:meth:`check` for asyncio."""
        deadline = time.monotonic() + self._budget()
        outcome = _Outcome(self.policy, identity, orig_tn, dest_tn)
        now = time.time() if now is None else now
        waiting: list[_Waiting] = []
        for index, value in outcome.values:
            try:
                hdr, decoded = self._examine(value, outcome.expected, now, _EXTENDED)
                if decoded.header["ppt"] != "shaken":  # div or rcd: every value is needed
                    verdict = await self._acheck_all(outcome, now, deadline)
                    return await self._arcd_checked(verdict, deadline)
                if self._local or self._peek is not None:
                    credential = self._at_hand(hdr.info or "", deadline)
                else:
                    credential = None  # a source of unknown kind: asked like a fetch, below
                if credential is None:
                    waiting.append(_Waiting(index, hdr, decoded))
                    continue
                if self.trust is None:  # nothing to await: no coroutine for it
                    passport = self._finish(hdr, decoded, credential)
                else:
                    passport = await self._aaccept(hdr, decoded, credential, now, deadline)
            except Exception as exc:  # noqa: BLE001 - _Outcome separates bugs from failures
                if _names_extension(exc):
                    verdict = await self._acheck_all(outcome, now, deadline)
                    return await self._arcd_checked(verdict, deadline)
                outcome.fail(index, exc)
                continue
            if index + 1 < len(outcome.values) and _extended(outcome.values[index + 1 :]):
                verdict = await self._acheck_all(outcome, now, deadline)
                return await self._arcd_checked(verdict, deadline)
            verdict = outcome.success(index, passport)
            if self.policy.fetch_rcd:
                return await self._arcd_checked(verdict, deadline)
            return verdict
        if waiting:
            with request_deadline(deadline):
                found = await self._afetch_and_check(_by_url(waiting), outcome, now, deadline, True)
            if found is not None:
                return await self._arcd_checked(outcome.success(*found), deadline)
        return outcome.verdict()

    async def _afetch_and_check(
        self,
        by_url: dict[str, list[_Waiting]],
        outcome: _Outcome,
        now: float,
        deadline: float,
        offload: bool,
    ) -> tuple[int, VerifiedPassport] | None:
        """Fetch every URL at once; check values as their certificate arrives (trust checks
        that may block go to a worker thread when ``offload``, else run here)."""
        tasks = {asyncio.ensure_future(self._acredential(url)): url for url in by_url}
        order = {url: n for n, url in enumerate(by_url)}
        pending = set(tasks)
        try:
            while pending:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for task in sorted(done, key=lambda t: order[tasks[t]]):
                    values = by_url[tasks[task]]
                    error = task.exception()
                    if error is not None:
                        for item in values:
                            outcome.fail(item.index, _for_value(error, item))
                        continue
                    credential = task.result()
                    for item in values:
                        try:
                            if offload:
                                passport = await self._aaccept(
                                    item.hdr, item.decoded, credential, now, deadline
                                )
                            else:
                                passport = self._accept(
                                    item.hdr, item.decoded, credential, now, deadline
                                )
                        except Exception as exc:  # noqa: BLE001
                            outcome.fail(item.index, exc)
                            continue
                        return item.index, passport
            for task in pending:
                url = tasks[task]
                for item in by_url[url]:
                    outcome.fail(
                        item.index,
                        _for_value(
                            BudgetExhaustedError(
                                Reason.CERT_FETCH_TIMEOUT,
                                f"{_short(url)}: no certificate within the request's time budget",
                            ),
                            item,
                        ),
                    )
            return None
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
            for task in tasks:
                # A fetch that failed in the batch a valid value ended: its error is not the
                # request's, and unread it would be logged when the task is collected.
                if not task.cancelled():  # every task is done by now
                    task.exception()

    # -- the extended path: every PASSporT verified, then the chain -------------------------

    def _examine_all(self, outcome: _Outcome, now: float) -> tuple[list[_Waiting], list[Hop]]:
        """Step one of the extended path: every value examined (no dest check: a chain is
        judged on its outermost dest); the failures recorded, and kept as chain hops when
        their claims were valid.  Starts afresh: what the single-value path recorded before
        it met a div or rcd PASSporT is examined again."""
        outcome.errors.clear()
        outcome.failures.clear()
        expected = outcome.expected
        plain = None if expected is None else expected.without_dest()
        examined: list[_Waiting] = []
        failed_hops: list[Hop] = []
        for index, value in outcome.values:
            try:
                hdr, decoded = self._examine(value, plain, now, _EXTENDED)
            except Exception as exc:  # noqa: BLE001 - _Outcome separates bugs from failures
                error = outcome.fail(index, exc)
                hop = _failed_hop(index, value, error)
                if hop is not None:
                    failed_hops.append(hop)
                continue
            examined.append(_Waiting(index, hdr, decoded))
        return examined, failed_hops

    def _check_all(self, outcome: _Outcome, now: float, deadline: float) -> Verdict:
        examined, failed_hops = self._examine_all(outcome, now)
        results: dict[int, VerifiedPassport | BaseException] = {}
        waiting: list[_Waiting] = []
        for item in examined:
            try:
                credential = self._at_hand(item.hdr.info or "", deadline)
                if credential is None:
                    waiting.append(item)
                    continue
                results[item.index] = self._accept(
                    item.hdr, item.decoded, credential, now, deadline
                )
            except Exception as exc:  # noqa: BLE001
                results[item.index] = exc
        if waiting:
            by_url = _by_url(waiting)
            with request_deadline(deadline):
                if (
                    len(by_url) > 1
                    and hasattr(self.source, "acredential_for")
                    and not (_in_event_loop())
                ):
                    credentials = asyncio.run(self._afetch_all(list(by_url), deadline))
                else:
                    credentials = {}
                    for url in by_url:
                        try:
                            credentials[url] = self._credential(url)
                        except Exception as exc:  # noqa: BLE001
                            credentials[url] = exc
                for url, items in by_url.items():
                    got = credentials[url]
                    for item in items:
                        if isinstance(got, Credential):
                            try:
                                results[item.index] = self._accept(
                                    item.hdr, item.decoded, got, now, deadline
                                )
                            except Exception as exc:  # noqa: BLE001
                                results[item.index] = exc
                        else:
                            results[item.index] = _for_value(got, item)
        return self._decide(outcome, examined, failed_hops, results)

    async def _acheck_all(self, outcome: _Outcome, now: float, deadline: float) -> Verdict:
        examined, failed_hops = self._examine_all(outcome, now)
        results: dict[int, VerifiedPassport | BaseException] = {}
        waiting: list[_Waiting] = []
        for item in examined:
            try:
                credential = None
                if self._local or self._peek is not None:
                    credential = self._at_hand(item.hdr.info or "", deadline)
                if credential is None:
                    waiting.append(item)
                    continue
                results[item.index] = await self._aaccept(
                    item.hdr, item.decoded, credential, now, deadline
                )
            except Exception as exc:  # noqa: BLE001
                results[item.index] = exc
        if waiting:
            by_url = _by_url(waiting)
            with request_deadline(deadline):
                credentials = await self._afetch_all(list(by_url), deadline)
                for url, items in by_url.items():
                    got = credentials[url]
                    for item in items:
                        if isinstance(got, Credential):
                            try:
                                results[item.index] = await self._aaccept(
                                    item.hdr, item.decoded, got, now, deadline
                                )
                            except Exception as exc:  # noqa: BLE001
                                results[item.index] = exc
                        else:
                            results[item.index] = _for_value(got, item)
        return self._decide(outcome, examined, failed_hops, results)

    async def _afetch_all(
        self, urls: list[str], deadline: float
    ) -> dict[str, Credential | BaseException]:
        """Every URL's credential at once; what has not arrived by the deadline is a
        cert-fetch-timeout."""
        tasks = {asyncio.ensure_future(self._acredential(url)): url for url in urls}
        got: dict[str, Credential | BaseException] = {}
        left = max(deadline - time.monotonic(), 0.0)
        done, pending = await asyncio.wait(tasks, timeout=left) if left > 0 else (set(), set(tasks))
        for task in done:
            error = task.exception()
            got[tasks[task]] = error if error is not None else task.result()
        for task in pending:
            task.cancel()
            url = tasks[task]
            got[url] = BudgetExhaustedError(
                Reason.CERT_FETCH_TIMEOUT,
                f"{_short(url)}: no certificate within the request's time budget",
            )
        if pending:
            await asyncio.wait(pending)
        return got

    def _decide(
        self,
        outcome: _Outcome,
        examined: list[_Waiting],
        failed_hops: list[Hop],
        results: dict[int, VerifiedPassport | BaseException],
    ) -> Verdict:
        """Step three: what the verified PASSporTs say about the request."""
        expected = outcome.expected
        hops = list(failed_hops)
        verified: dict[int, VerifiedPassport] = {}
        alone: list[tuple[int, VerifiedPassport]] = []
        for item in examined:
            index, decoded = item.index, item.decoded
            result = results[index]
            ppt = str(decoded.header.get("ppt"))
            if not isinstance(result, VerifiedPassport):
                error = outcome.fail(index, result)
                if ppt in ("shaken", "div"):
                    hops.append(Hop(index, ppt, decoded.token, decoded.claims, error))
                continue
            verified[index] = result
            if ppt in ("shaken", "div"):
                hops.append(Hop(index, ppt, decoded.token, decoded.claims))
            if ppt == "div":
                continue  # a div says nothing on its own
            if expected is not None and expected.dest_tns is not None:
                try:
                    _check_dest(decoded.claims, expected)
                except VerificationError as exc:
                    exc.header, exc.claims = decoded.header, decoded.claims
                    outcome.fail(index, exc)
                    continue
            alone.append((index, result))
        hops.sort(key=lambda h: h.index)
        chain = build_chain(hops, _targets(expected), max_depth=self.policy.max_identities)
        primary = next(((i, p) for i, p in alone if p.ppt == "shaken"), None)
        by_chain = False
        if primary is None and chain is not None and chain.ok:
            root = chain.hops[0].index
            primary, by_chain = (root, verified[root]), True
        if primary is None:
            primary = next(((i, p) for i, p in alone if p.ppt == "rcd"), None)
        if primary is None:
            if chain is None:
                return outcome.verdict()
            broken = VerificationError(chain.reason, chain.message)
            at = results.get(chain.index)
            if isinstance(at, VerifiedPassport | VerificationError):
                broken.header, broken.claims = at.header, at.claims
            verdict = Verdict.from_error(broken, chain.index, outcome.failures_tuple())
            verdict.chain = chain.hops
            return verdict
        index, passport = primary
        verdict = outcome.success(index, passport)
        if by_chain:
            assert chain is not None
            members = {hop.index for hop in chain.hops}
            verdict.failures = tuple(
                f
                for f in verdict.failures
                if not (f.index in members and f.reason is Reason.DEST_MISMATCH)
            )
        if chain is not None:
            verdict.chain = chain.hops
            if not chain.ok:
                verdict.chain_failure = Failure(
                    chain.index, chain.reason, chain.message, chain.reason.lib_code
                )
        if passport.rcd is None:
            caller = passport.orig
            verdict.rcd_passport = next(
                (p for _, p in alone if p.ppt == "rcd" and p.orig == caller), None
            )
        return verdict

    # -- Rich Call Data behind URLs (VerifyPolicy.fetch_rcd) -------------------------------

    def _content_fetcher(self) -> Fetcher:
        fetcher = self._fetcher
        if fetcher is None:
            fetcher = self._fetcher = Fetcher()
        return fetcher

    def _rcd_targets(self, verdict: Verdict) -> tuple[dict[str, Any], dict[str, str]] | None:
        if not self.policy.fetch_rcd or not verdict.ok:
            return None
        source = verdict.rcd_passport or verdict.passport
        if source is None:
            return None
        rcd, rcdi = source.claims.get("rcd"), source.claims.get("rcdi")
        if not isinstance(rcd, dict) or not isinstance(rcdi, dict):
            return None
        return rcd, rcdi

    def _rcd_checked(self, verdict: Verdict, deadline: float) -> Verdict:
        found = self._rcd_targets(verdict)
        if found is None:
            return verdict
        rcd, rcdi = found
        fetcher = self._content_fetcher()
        bodies: dict[str, bytes] = {}
        checked: list[str] = []
        try:
            with request_deadline(deadline):
                for pointer, url in _content_urls(rcd, rcdi, bodies, fetcher.get):
                    if url not in bodies:
                        bodies[url] = fetcher.get(url).body
                    _match(pointer, rcdi[pointer], bodies[url])
                    checked.append(pointer)
        except Exception as exc:  # noqa: BLE001 - reported in the verdict, never raised
            verdict.rcd_failure = _rcd_failure(verdict, exc)
        verdict.rcd_checked = tuple(checked)
        return verdict

    async def _arcd_checked(self, verdict: Verdict, deadline: float) -> Verdict:
        found = self._rcd_targets(verdict)
        if found is None:
            return verdict
        rcd, rcdi = found
        fetcher = self._content_fetcher()
        bodies: dict[str, bytes] = {}
        checked: list[str] = []
        try:
            with request_deadline(deadline):
                jcl = rcd.get("jcl")
                if any(p.startswith("/jcl/") for p in rcdi) and isinstance(jcl, str):
                    bodies[jcl] = (await fetcher.aget(jcl)).body
                for pointer, url in _content_urls(rcd, rcdi, bodies, None):
                    if url not in bodies:
                        bodies[url] = (await fetcher.aget(url)).body
                    _match(pointer, rcdi[pointer], bodies[url])
                    checked.append(pointer)
        except Exception as exc:  # noqa: BLE001 - reported in the verdict, never raised
            verdict.rcd_failure = _rcd_failure(verdict, exc)
        verdict.rcd_checked = tuple(checked)
        return verdict


_ONE_VALUE = frozenset({"rcd"})
_EXTENDED = frozenset({"div", "rcd"})


def _extended(values: list[tuple[int, str]]) -> bool:
    """Whether a request carries a div or rcd PASSporT (by its Identity ppt parameter)."""
    for _, value in values:
        semi = value.find(";")
        if semi < 0:
            continue
        tail = value[semi:].lower()
        if "div" not in tail and "rcd" not in tail:
            continue
        try:
            ppt = parse_identity(value).ppt
        except VerificationError:
            continue
        if ppt is not None and ppt.lower() in _EXTENDED:
            return True
    return False


def _names_extension(exc: BaseException) -> bool:
    """Whether a value that failed its checks is a div or rcd PASSporT (by its header).  The
    header is the caller's JSON: its ppt may be a list or an object (unhashable)."""
    if not isinstance(exc, VerificationError):
        return False
    ppt = exc.header.get("ppt")
    return isinstance(ppt, str) and ppt in _EXTENDED


# Failures of a value whose header and claims were fine: it can still be placed in a chain
# (and reported there); a value with a bad header or bad claims cannot be linked reliably.
_HOP_FAILURES = frozenset({Reason.STALE, Reason.IAT_IN_FUTURE, Reason.ORIG_MISMATCH})


def _failed_hop(index: int, value: str, error: VerificationError) -> Hop | None:
    """A value that failed its own checks, as a chain hop when its claims were valid."""
    claims = error.claims
    if error.reason not in _HOP_FAILURES or not isinstance(claims.get("orig"), dict):
        return None
    ppt = error.header.get("ppt")
    if ppt not in ("shaken", "div"):
        return None
    return Hop(index, str(ppt), value.split(";", 1)[0].strip(), claims, error)


def _targets(expected: _Expected | None) -> frozenset[tuple[str, str]] | None:
    if expected is None or expected.dest_tns is None:
        return None
    return frozenset(
        [("tn", t) for t in expected.dest_tns] + [("uri", u) for u in expected.dest_uris]
    )


def _content_urls(
    rcd: dict[str, Any],
    rcdi: dict[str, str],
    bodies: dict[str, bytes],
    get: Any,
) -> list[tuple[str, str]]:
    """``(pointer, URL)`` of each rcdi digest of URL content: in rcd itself, then below
    ``/jcl`` (in the jCard fetched from jcl, which ``get`` fetches when not in ``bodies``)."""
    out = list(url_targets(rcd, rcdi))
    deep = [p for p in rcdi if p.startswith("/jcl/")]
    if deep:
        jcl = rcd["jcl"]
        if jcl not in bodies:
            bodies[jcl] = get(jcl).body
        try:
            jcard = loads_strict(bodies[jcl])
        except JSONError as exc:
            raise VerificationError(
                Reason.INVALID_RCD, f"the jCard at jcl is not JSON: {exc}"
            ) from None
        for pointer in deep:
            try:
                target = resolve_pointer(jcard, parse_pointer(pointer)[1:])
            except PointerError as exc:
                raise VerificationError(
                    Reason.INVALID_RCD, f"rcdi {pointer[:40]!r} designates nothing: {exc}"
                ) from None
            if not isinstance(target, str) or not target.lower().startswith(("https:", "http:")):
                raise VerificationError(
                    Reason.INVALID_RCD, f"rcdi {pointer[:40]!r} does not designate a URL"
                )
            out.append((pointer, target))
    return out


def _match(pointer: str, digest: str, body: bytes) -> None:
    if not digest_matches(digest, body):
        raise VerificationError(
            Reason.RCD_INTEGRITY_MISMATCH,
            f"rcdi {pointer[:40]!r}: the digest does not match the fetched content",
        )


def _rcd_failure(verdict: Verdict, exc: BaseException) -> Failure:
    # The RCD of an rcd PASSporT of its own (beside a SHAKEN one without RCD) has index -1:
    # that PASSporT's index is not kept.
    index = verdict.index if verdict.rcd_passport is None else -1
    if not isinstance(exc, VerificationError):
        log.error("secsipid: unexpected error checking RCD content", exc_info=exc)
        exc = VerificationError(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
    reason = exc.reason
    if reason is Reason.CERT_TOO_LARGE:
        reason = Reason.RCD_CONTENT_TOO_LARGE
    elif reason.name.startswith("CERT_"):
        reason = Reason.RCD_FETCH_FAILED
    return Failure(index, reason, exc.message, reason.lib_code)


@dataclass(frozen=True, slots=True)
class _Waiting:
    """A value whose checks passed so far and whose certificate must be fetched."""

    index: int
    hdr: IdentityHeader
    decoded: DecodedPassport


def _by_url(waiting: list[_Waiting]) -> dict[str, list[_Waiting]]:
    by_url: dict[str, list[_Waiting]] = {}
    for item in waiting:
        by_url.setdefault(item.hdr.info or "", []).append(item)
    return by_url


def _for_value(error: BaseException, item: _Waiting) -> BaseException:
    """The error of a URL's fetch, as its own exception for each value that needed it (a
    KeyLoadError arrives converted: _credential and _acredential convert it)."""
    if not isinstance(error, VerificationError):
        return error
    copy = VerificationError(error.reason, error.message, lib_code=error._lib_code)
    copy.header, copy.claims = item.decoded.header, item.decoded.claims
    return copy


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


class _Outcome:
    """Collects the per-header results of one request and turns them into a Verdict."""

    __slots__ = ("early", "errors", "expected", "failures", "values")

    def __init__(
        self,
        policy: VerifyPolicy,
        identity: str | Iterable[str],
        orig_tn: str | None,
        dest_tn: str | Sequence[str] | None,
    ) -> None:
        # Refuse a request's worth of oversized input before splitting it (the splitter walks
        # comma-joined values character by character).
        limit = policy.max_identity_size * policy.max_identities
        if type(identity) is list and len(identity) == 1 and type(identity[0]) is str:
            identity = identity[0]  # one header line, as the service passes it
        if type(identity) is str:  # the usual case: one string, no list or sum to build
            total = len(identity)
            values = split_identity_values(identity) if total <= limit else []
        else:
            lines = [identity] if isinstance(identity, str) else list(identity)
            total = sum(len(line) for line in lines if isinstance(line, str))
            values = split_identity_values(lines) if total <= limit else []
        self.expected = None if orig_tn is None and dest_tn is None else _Expected(orig_tn, dest_tn)
        self.errors: list[tuple[int, VerificationError]] = []
        self.failures: list[Failure] = []
        self.early: VerificationError | None = None
        if total > limit:
            self.early = VerificationError(
                Reason.TOO_LARGE,
                f"{total} characters of Identity headers, over the limit of {limit}",
            )
        elif not values:
            self.early = VerificationError(Reason.NO_IDENTITY, "no Identity header")
        elif len(values) > policy.max_identities:
            self.early = VerificationError(
                Reason.TOO_LARGE,
                f"{len(values)} Identity headers, over the limit of {policy.max_identities}",
            )
        self.values = [] if self.early else list(enumerate(values))

    def fail(self, index: int, exc: BaseException) -> VerificationError:
        if not isinstance(exc, VerificationError):
            log.error("secsipid: unexpected error verifying an Identity header", exc_info=exc)
            exc = VerificationError(Reason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")
        self.errors.append((index, exc))
        self.failures.append(Failure(index, exc.reason, exc.message, exc.lib_code))
        return exc

    def failures_tuple(self) -> tuple[Failure, ...]:
        return self._failures()

    def success(self, index: int, passport: VerifiedPassport) -> Verdict:
        return Verdict(
            True,
            Reason.VALID,
            "",
            0,
            passport.header,
            passport.claims,
            passport,
            index,
            self._failures(),
        )

    def verdict(self) -> Verdict:
        """RFC 8224 §6.2.2: unsupported-ppt headers are ignored; 436 only if every credential
        was unreachable; otherwise the most specific failure (438/403 before 437 before 436)."""
        if self.early is not None:
            return Verdict.from_error(self.early)
        supported = [(i, e) for i, e in self.errors if e.reason is not Reason.UNSUPPORTED_PPT]
        index, best = min(
            supported or self.errors, key=lambda item: (failure_rank(item[1].reason), item[0])
        )
        return Verdict.from_error(best, index, self._failures())

    def _failures(self) -> tuple[Failure, ...]:
        # In request order, whatever order the values were checked in.
        failures = self.failures
        if len(failures) > 1:
            failures = sorted(failures, key=lambda f: f.index)
        return tuple(failures)
