"""Signing SHAKEN PASSporTs (the STI-AS side, RFC 8224 §6.1, RFC 8588).

:class:`Signer` is configured once with a private key (and usually the x5u URL of its
certificate) and then signs many calls.  Per call it builds the claims, signs and encodes; the
encoded JWS header is computed once per x5u.

Signatures are deterministic ECDSA (RFC 6979) by default: RFC 8225 §4.2 says ES256 signers
SHOULD use it, and it removes the dependency on a good random source at signing time.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from ._codec import MAX_DEPTH, JSONError, b64url_encode, canonical_json, loads_strict, too_deep
from ._errors import SigningError, VerificationError
from ._identity import DEFAULT_MAX_IDENTITY_SIZE, build_identity, parse_identity
from ._keys import _check_curve, load_private_key, private_key_from_file
from ._passport import ATTEST_VALUES, MAX_SEGMENT_SIZE, UUID_RE, decode_token
from ._rcd import RichCallData
from ._tn import canonical_tn

__all__ = ["Signer", "new_origid"]

_X5U_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+")
_VARIANT = "89ab89ab89ab89ab"
_HEADER_CACHE_MAX = 64
# The latest iat a Signer writes: 9999-12-31T23:59:59Z.  A NumericDate past it is a mistake
# (a value in milliseconds, or an overflow), and no verifier would ever find it fresh.
MAX_IAT = 253402300799


def new_origid() -> str:
    """A random (version 4) UUID in canonical lowercase form (RFC 4122, RFC 8588 §5).

    Written out rather than ``str(uuid.uuid4())`` because that costs a tenth of an ECDSA
    signature on the signing hot path; the bits are the same: 122 random, version 4, variant 10.
    """
    h = os.urandom(16).hex()
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{_VARIANT[int(h[16], 16)]}{h[17:20]}-{h[20:]}"


def _tn(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise SigningError("invalid-tn", f"{what} must be a string, not {type(value).__name__}")
    tn = canonical_tn(value)
    if not tn:
        raise SigningError("invalid-tn", f"{what} {value!r} holds no telephone number digits")
    return tn


def _fits(value: str) -> str:
    """``value`` (an Identity value or a token), refused when a verifier would refuse it for
    its size: ours, by default, takes at most 8 KiB (R45, ``VerifyPolicy.max_identity_size``),
    so a longer one only fails later, at the terminating side."""
    if len(value) > DEFAULT_MAX_IDENTITY_SIZE:
        raise SigningError(
            "too-large",
            f"the Identity value would be {len(value)} characters, over the "
            f"{DEFAULT_MAX_IDENTITY_SIZE} that verifiers accept",
        )
    return value


def _check_x5u(x5u: object) -> str:
    if not isinstance(x5u, str) or _X5U_RE.fullmatch(x5u) is None:
        raise SigningError("invalid-x5u", f"x5u must be an absolute URI, not {x5u!r}")
    return x5u


def _raw_signature(der: bytes) -> bytes:
    """DER ``SEQUENCE { INTEGER r, INTEGER s }`` to the 64-byte ``r || s`` of JWS (RFC 7518
    §3.4).  Sliced by hand: a P-256 signature is always short-form DER, and this is a third of
    the cost of decode_dss_signature plus two int.to_bytes on the signing hot path.  Anything
    unexpected takes the library route."""
    rl = der[3]
    sl = der[5 + rl] if len(der) > 5 + rl else 0
    if (
        der[0] == 0x30
        and der[1] == 4 + rl + sl
        and der[2] == 0x02
        and der[4 + rl] == 0x02
        and rl <= 33
        and sl <= 33
        and len(der) == 6 + rl + sl
    ):
        r = der[4 : 4 + rl][-32:].rjust(32, b"\0")
        s = der[6 + rl : 6 + rl + sl][-32:].rjust(32, b"\0")
        return r + s
    r_int, s_int = decode_dss_signature(der)
    return r_int.to_bytes(32, "big") + s_int.to_bytes(32, "big")


class Signer:
    """Signs SHAKEN PASSporTs with one EC P-256 private key.

    >>> signer = Signer.from_file("key.pem", "https://cert.example.org/sti.pem")  # doctest: +SKIP
    >>> signer.identity("12155550121", "12155550131", "A")  # doctest: +SKIP
    'eyJhbGciOiJFUzI1NiIs...;info=<https://cert.example.org/sti.pem>;alg=ES256;ppt=shaken'
    """

    __slots__ = ("_algorithm", "_clock", "_headers", "_key", "_other_headers", "x5u")

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        x5u: str | None = None,
        *,
        deterministic: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        _check_curve(key, None)
        self._key = key
        self.x5u = None if x5u is None else _check_x5u(x5u)
        self._clock = clock
        self._headers: dict[str, str] = {}
        self._other_headers: dict[tuple[str, str], str] = {}
        algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=deterministic)
        if deterministic:
            try:
                key.sign(b"probe", algorithm)
            except UnsupportedAlgorithm:  # OpenSSL older than 3.2: fall back to random k
                algorithm = ec.ECDSA(hashes.SHA256())
        self._algorithm = algorithm

    @classmethod
    def from_file(
        cls, path: str | os.PathLike[str], x5u: str | None = None, **kwargs: Any
    ) -> Signer:
        return cls(private_key_from_file(path), x5u, **kwargs)

    @classmethod
    def from_pem(
        cls, data: bytes, x5u: str | None = None, *, password: bytes | None = None, **kwargs: Any
    ) -> Signer:
        return cls(load_private_key(data, password), x5u, **kwargs)

    @property
    def key(self) -> ec.EllipticCurvePrivateKey:
        return self._key

    # -- the JWS itself ----------------------------------------------------------------------

    def _signature(self, signing_input: bytes) -> str:
        return b64url_encode(_raw_signature(self._key.sign(signing_input, self._algorithm)))

    def _jws(self, header_b64: str, payload: bytes, *, checked: bool = True) -> str:
        """The JWS compact serialization; ``checked``: refused (too-large) when a verifier
        would refuse it for its size (the segment cap, then the Identity value cap), before
        the signature is computed."""
        claims_b64 = b64url_encode(payload)
        if checked and (len(claims_b64) > MAX_SEGMENT_SIZE or len(header_b64) > MAX_SEGMENT_SIZE):
            raise SigningError(
                "too-large",
                f"the PASSporT's claims would be {len(claims_b64)} characters of base64url "
                f"(header {len(header_b64)}), over the {MAX_SEGMENT_SIZE} that verifiers accept",
            )
        signing_input = header_b64 + "." + claims_b64
        token = signing_input + "." + self._signature(signing_input.encode("ascii"))
        return _fits(token) if checked else token

    def _shaken_header(self, x5u: str | None) -> tuple[str, str]:
        x5u = self.x5u if x5u is None else x5u
        if x5u is None:
            raise SigningError("invalid-x5u", "no x5u given and none configured on the Signer")
        header_b64 = self._headers.get(x5u)
        if header_b64 is None:
            _check_x5u(x5u)
            header = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u}
            header_b64 = b64url_encode(canonical_json(header))
            if len(self._headers) >= _HEADER_CACHE_MAX:
                self._headers.clear()
            self._headers[x5u] = header_b64
        return x5u, header_b64

    def _ppt_header(self, x5u: str | None, ppt: str) -> tuple[str, str]:
        """``(x5u, encoded header)`` of a PASSporT of type ``ppt`` (div, div-o, rcd)."""
        x5u = self.x5u if x5u is None else x5u
        if x5u is None:
            raise SigningError("invalid-x5u", "no x5u given and none configured on the Signer")
        header_b64 = self._other_headers.get((ppt, x5u))
        if header_b64 is None:
            _check_x5u(x5u)
            header = {"alg": "ES256", "ppt": ppt, "typ": "passport", "x5u": x5u}
            header_b64 = b64url_encode(canonical_json(header))
            if len(self._other_headers) >= _HEADER_CACHE_MAX:
                self._other_headers.clear()
            self._other_headers[(ppt, x5u)] = header_b64
        return x5u, header_b64

    def _iat(self, iat: int | None) -> int:
        if iat is None:
            return int(self._clock())
        if type(iat) is not int or iat <= 0:
            raise SigningError("invalid-iat", f"iat must be a positive integer, not {iat!r}")
        if iat > MAX_IAT:
            raise SigningError(
                "invalid-iat", f"iat must be seconds since 1970 up to {MAX_IAT} (year 9999)"
            )
        return iat

    # -- SHAKEN ------------------------------------------------------------------------------

    def sign(
        self,
        orig_tn: str,
        dest_tn: str | Sequence[str],
        attest: str,
        origid: str = "",
        *,
        iat: int | None = None,
        x5u: str | None = None,
        rcd: RichCallData | None = None,
        rcd_contents: Mapping[str, bytes] | None = None,
    ) -> str:
        """Return a SHAKEN PASSporT (JWS compact serialization) for a call.

        ``orig_tn``/``dest_tn`` may be numbers with visual separators or SIP/TEL URIs; they are
        canonicalized (RFC 8224 §8.3).  Several ``dest_tn`` are sorted (RFC 8225 §5.2.1).
        An empty ``origid`` gets a random UUID.  ``iat`` defaults to now.

        ``rcd`` adds Rich Call Data claims (RFC 9795: ``rcd``, ``crn``, and ``rcdi`` digests
        of the inline jCard and of the URL content given in ``rcd_contents``, keyed by URL or
        JSON pointer); the PASSporT stays of type ``shaken``.
        """
        if not isinstance(attest, str) or attest not in ATTEST_VALUES:
            raise SigningError("invalid-attest", f"attest must be A, B or C, not {attest!r}")
        orig = _tn(orig_tn, "orig_tn")
        if isinstance(dest_tn, str):
            dest = '"' + _tn(dest_tn, "dest_tn") + '"'
        else:
            dests = sorted({_tn(d, "dest_tn") for d in dest_tn})
            if not dests:
                raise SigningError("invalid-tn", "dest_tn is empty")
            dest = '"' + '","'.join(dests) + '"'
        if not origid:
            origid = new_origid()
        elif not isinstance(origid, str) or UUID_RE.fullmatch(origid) is None:
            raise SigningError("invalid-origid", f"origid must be a UUID (RFC 8588 §5): {origid!r}")
        _, header_b64 = self._shaken_header(x5u)
        if rcd is not None:
            claims: dict[str, Any] = {
                "attest": attest,
                "dest": {"tn": json_list(dest)},
                "iat": self._iat(iat),
                "orig": {"tn": orig},
                "origid": origid,
                **_rcd_claims(rcd, rcd_contents),
            }
            return self._jws(header_b64, canonical_json(claims))
        # Canonical JSON (RFC 8225 §9) written out directly: every value here is validated to
        # contain only [0-9#*A-Fa-f-], so nothing needs escaping, and this is several times
        # cheaper than json.dumps on the hot path.  Keys are in lexicographic order (RFC 8588 §8).
        payload = (
            f'{{"attest":"{attest}","dest":{{"tn":[{dest}]}},"iat":{self._iat(iat)},'
            f'"orig":{{"tn":"{orig}"}},"origid":"{origid}"}}'
        )
        return self._jws(header_b64, payload.encode("ascii"))

    def identity(
        self,
        orig_tn: str,
        dest_tn: str | Sequence[str],
        attest: str,
        origid: str = "",
        *,
        iat: int | None = None,
        x5u: str | None = None,
        rcd: RichCallData | None = None,
        rcd_contents: Mapping[str, bytes] | None = None,
    ) -> str:
        """The full Identity header value: ``<PASSporT>;info=<x5u>;alg=ES256;ppt=shaken``."""
        x5u, _ = self._shaken_header(x5u)
        token = self.sign(
            orig_tn, dest_tn, attest, origid, iat=iat, x5u=x5u, rcd=rcd, rcd_contents=rcd_contents
        )
        return _fits(f"{token};info=<{x5u}>;alg=ES256;ppt=shaken")

    # -- diverted calls (RFC 8946) -------------------------------------------------------------

    def div_identity(
        self,
        orig_tn: str,
        dest_tn: str | Sequence[str],
        div_tn: str,
        *,
        iat: int | None = None,
        x5u: str | None = None,
    ) -> str:
        """The Identity value of a ``div`` PASSporT (RFC 8946 §3, §4.1) for a call
        retargeted from ``div_tn`` (the original called number) to ``dest_tn`` (the new
        target), placed by ``orig_tn``: ``<PASSporT>;info=<x5u>;alg=ES256;ppt=div``.

        Sign with a credential that has authority over ``div_tn`` (RFC 8946 §3), keep
        ``iat`` of the original PASSporT (SHOULD), and add the value beside the original
        Identity header, never instead of it (§4.1).  ``ppt=div`` is emitted as a token,
        as RFC 8224 §4's grammar has it (RFC 8946's example quotes it; both are read).
        """
        orig = {"tn": _tn(orig_tn, "orig_tn")}
        return self._div(orig, _dests(dest_tn), {"tn": _tn(div_tn, "div_tn")}, iat, x5u, None)

    def div_for(
        self,
        original: str,
        dest_tn: str | Sequence[str],
        *,
        div_tn: str | None = None,
        iat: int | None = None,
        x5u: str | None = None,
        ppt: str = "div",
    ) -> str:
        """The ``div`` (or, with ``ppt="div-o"``, the ``div-o``) Identity value that
        retargets the call of ``original`` (its Identity value or token) to ``dest_tn``.

        ``orig`` and ``iat`` are copied from the original PASSporT (RFC 8946 §3), ``div`` is
        its ``dest`` (``div_tn`` picks one when it has several).  ``iat`` overrides the copied
        one (when the retargeting entity changes the Date, §3).  ``div-o`` (§5) also carries
        the original full-form PASSporT in ``opt``; it is meant for non-SIP transports.  The
        original is decoded, not verified: verify the request first (RFC 8946 §4.1 SHOULD).
        Raises :class:`SigningError` (``invalid-original``) when it cannot be used.
        """
        if ppt not in ("div", "div-o"):
            raise SigningError("invalid-ppt", f"ppt must be div or div-o, not {ppt!r}")
        token = original
        if ";" in original:
            try:
                token = parse_identity(original).token
            except VerificationError as exc:
                raise SigningError("invalid-original", exc.message) from None
        try:
            decoded = decode_token(token.strip())
        except VerificationError as exc:
            raise SigningError("invalid-original", f"original PASSporT: {exc.message}") from None
        claims = decoded.claims
        orig, dest = claims.get("orig"), claims.get("dest")
        if not isinstance(orig, dict) or len([k for k in ("tn", "uri") if k in orig]) != 1:
            raise SigningError("invalid-original", "the original PASSporT has no usable orig")
        kind = "tn" if "tn" in orig else "uri"
        if not isinstance(orig[kind], str) or not isinstance(dest, dict):
            raise SigningError("invalid-original", "the original PASSporT has no usable orig/dest")
        targets = [("tn", t) for t in dest.get("tn", ()) if isinstance(t, str)] + [
            ("uri", u) for u in dest.get("uri", ()) if isinstance(u, str)
        ]
        if div_tn is not None:
            want = _tn(div_tn, "div_tn")
            found = [t for t in targets if t[0] == "tn" and canonical_tn(t[1]) == want]
            if not found:
                raise SigningError(
                    "invalid-original", f"{div_tn!r} is not a dest of the original PASSporT"
                )
            targets = found
        if len(targets) != 1:
            raise SigningError(
                "invalid-original",
                "the original PASSporT has several dest values: name the one retargeted (div_tn)",
            )
        div_kind, div_value = targets[0]
        div = {div_kind: canonical_tn(div_value) if div_kind == "tn" else div_value}
        copied = claims.get("iat")
        if iat is None and type(copied) is int and copied > 0:
            iat = copied
        opt = decoded.token if ppt == "div-o" else None
        return self._div({kind: orig[kind]}, _dests(dest_tn), div, iat, x5u, opt)

    def _div(
        self,
        orig: dict[str, str],
        dest: list[str],
        div: dict[str, str],
        iat: int | None,
        x5u: str | None,
        opt: str | None,
    ) -> str:
        if div.get("tn") in dest:
            # RFC 8946 §3: no div PASSporT when the canonical dest does not change.
            raise SigningError("invalid-tn", f"the call is not retargeted: div {div} is a dest")
        ppt = "div" if opt is None else "div-o"
        x5u, header_b64 = self._ppt_header(x5u, ppt)
        claims: dict[str, Any] = {"dest": {"tn": dest}, "div": div, "iat": self._iat(iat)}
        claims["orig"] = orig
        if opt is not None:
            claims["opt"] = opt  # RFC 8946 §5-§6: the prior full-form PASSporT
        token = self._jws(header_b64, canonical_json(claims))
        return _fits(f"{token};info=<{x5u}>;alg=ES256;ppt={ppt}")

    # -- Rich Call Data (RFC 9795) ---------------------------------------------------------------

    def rcd_identity(
        self,
        orig_tn: str,
        dest_tn: str | Sequence[str],
        rcd: RichCallData,
        *,
        rcd_contents: Mapping[str, bytes] | None = None,
        iat: int | None = None,
        x5u: str | None = None,
    ) -> str:
        """The Identity value of an ``rcd`` PASSporT (RFC 9795): the baseline claims
        (``orig``, ``dest``, ``iat``) with ``rcd``, ``crn`` and ``rcdi`` (see :meth:`sign`),
        ``...;ppt=rcd``.  To put RCD into the SHAKEN PASSporT instead, pass ``rcd`` to
        :meth:`identity`."""
        x5u, header_b64 = self._ppt_header(x5u, "rcd")
        claims: dict[str, Any] = {
            "dest": {"tn": _dests(dest_tn)},
            "iat": self._iat(iat),
            "orig": {"tn": _tn(orig_tn, "orig_tn")},
            **_rcd_claims(rcd, rcd_contents),
        }
        token = self._jws(header_b64, canonical_json(claims))
        return _fits(f"{token};info=<{x5u}>;alg=ES256;ppt=rcd")

    def sign_claims(
        self, claims: Mapping[str, Any], *, x5u: str | None = None, ppt: str | None = "shaken"
    ) -> str:
        """Sign arbitrary claims under a standard PASSporT header (canonical JSON).

        Use this for ``uri`` identities or extension claims (e.g. ``rcd``); ``ppt`` selects the
        extension (``None`` for a baseline PASSporT).
        """
        x5u = _check_x5u(self.x5u if x5u is None else x5u)
        header: dict[str, Any] = {"alg": "ES256", "typ": "passport", "x5u": x5u}
        if ppt:
            header["ppt"] = ppt
        return self.sign_json(header, claims)

    def sign_json(
        self,
        header: Mapping[str, Any] | str | bytes,
        payload: Mapping[str, Any] | str | bytes,
        *,
        verbatim: bool = False,
    ) -> str:
        """Sign a given JWS header and payload (parity with ``secsipidx -sign`` and
        ``SecSIPIDSignJSONHP``), so that any PASSporT type can be produced.

        Objects are serialized canonically (RFC 8225 §9).  JSON text is parsed, checked and
        re-serialized canonically, unless ``verbatim`` is true: then the text (stripped of
        surrounding whitespace) is signed byte for byte, as secsipidx does.
        The header's ``alg`` must be ``ES256`` when present, and it must not hold ``crit``
        (verifiers, ours included, reject it: RFC 7515 §4.1.11).
        """
        parts: list[bytes] = []
        for name, doc in (("header", header), ("payload", payload)):
            if isinstance(doc, str | bytes):
                raw = doc.encode("utf-8") if isinstance(doc, str) else doc
                raw = raw.strip()
                try:
                    obj = loads_strict(raw)
                except JSONError as exc:
                    raise SigningError("invalid-json", f"{name}: {exc}") from exc
            else:
                obj, raw = doc, b""
            if not isinstance(obj, Mapping):
                raise SigningError("invalid-json", f"{name} must be a JSON object")
            if name == "header" and obj.get("alg", "ES256") != "ES256":
                raise SigningError("invalid-json", "header alg must be ES256")
            if name == "header" and "crit" in obj:
                # Verifiers refuse it (RFC 7515 §4.1.11; ours: unsupported-crit): no PASSporT
                # extension defines a critical header parameter, so never sign one silently.
                raise SigningError(
                    "invalid-json",
                    "header crit is not supported: no PASSporT extension defines critical "
                    "header parameters, and verifiers reject it (RFC 7515 §4.1.11)",
                )
            if not raw and too_deep(dict(obj)):  # text was checked by loads_strict
                raise SigningError(
                    "invalid-json", f"{name} is nested deeper than {MAX_DEPTH} levels"
                )
            try:
                parts.append(raw if verbatim and raw else canonical_json(dict(obj)))
            except (TypeError, ValueError) as exc:
                raise SigningError(
                    "invalid-json", f"{name} is not JSON-serializable: {exc}"
                ) from exc
        # Unchecked for size, like secsipidx -sign: a lab tool may make oversized tokens on
        # purpose (the typed methods above never do).
        return self._jws(b64url_encode(parts[0]), parts[1], checked=False)

    def __repr__(self) -> str:
        return f"Signer(x5u={self.x5u!r})"


def json_list(quoted: str) -> list[str]:
    """The numbers of ``sign()``'s pre-quoted dest list (``'"1","2"'``)."""
    return quoted[1:-1].split('","')


def _dests(dest_tn: str | Sequence[str]) -> list[str]:
    if isinstance(dest_tn, str):
        return [_tn(dest_tn, "dest_tn")]
    dests = sorted({_tn(d, "dest_tn") for d in dest_tn})
    if not dests:
        raise SigningError("invalid-tn", "dest_tn is empty")
    return dests


def _rcd_claims(rcd: object, contents: Mapping[str, bytes] | None) -> dict[str, Any]:
    if not isinstance(rcd, RichCallData):
        raise TypeError(f"rcd must be a RichCallData, not {type(rcd).__name__}")
    try:
        return rcd.claims(contents)
    except ValueError as exc:
        raise SigningError("invalid-rcd", str(exc)) from None


def identity_for_json(token: str, header: Mapping[str, Any] | str | bytes, x5u: str) -> str:
    """Identity value for a token made by :meth:`Signer.sign_json`: ``ppt`` from its header."""
    if isinstance(header, str | bytes):
        try:
            obj = loads_strict(header.encode() if isinstance(header, str) else header)
        except JSONError:
            obj = {}
    else:
        obj = header
    ppt = obj.get("ppt") if isinstance(obj, Mapping) else None
    return build_identity(token, _check_x5u(x5u), ppt=ppt if isinstance(ppt, str) else None)
