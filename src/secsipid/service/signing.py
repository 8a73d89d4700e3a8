"""What a signing request asks for, whichever API it came through, and the library call that
signs it.

Both signing APIs (ATIS-1000082 ``/stir/v1/signing`` and our ``/v1/sign``) parse their JSON
into one :class:`SignSpec`; :func:`sign` turns it into the one :class:`~secsipid.Signer` call
that makes the Identity value:

* a SHAKEN PASSporT (RFC 8588), optionally with Rich Call Data claims (RFC 9795 ``rcd``,
  ``crn``, ``rcdi``): ``Signer.identity``;
* a ``div`` PASSporT for a retargeted call (RFC 8946 §3), from the numbers
  (``Signer.div_identity``) or from the original Identity value, whose ``orig`` and ``iat``
  it copies (``Signer.div_for``);
* an ``rcd`` PASSporT (RFC 9795) to go beside the SHAKEN one: ``Signer.rcd_identity``.

The rules of what goes with what live here once; each API only names its fields.  Field
problems are :class:`FieldError` (missing, or an invalid value), which each API answers in
its own error shape.  No signing logic: the library checks numbers, URLs, UUIDs and RCD.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .._errors import VerificationError
from .._passport import decode_token
from .._rcd import RCD_KEYS, RichCallData
from .._signer import Signer
from .._tn import canonical_tn

__all__ = ["PPT_VALUES", "FieldError", "SignSpec", "rcd_from_json", "sign"]

#: The PASSporT types the service signs.  (``div-o``, RFC 8946 §5, is for non-SIP transports:
#: the library signs it, the service does not offer it.)
PPT_VALUES = ("shaken", "div", "rcd")


class FieldError(Exception):
    """A request member is missing (``missing``) or has an unusable value (``why``)."""

    def __init__(self, name: str, why: str = "", *, missing: bool = False) -> None:
        super().__init__(f"{name}: {why or 'missing'}")
        self.name = name
        self.why = why
        self.missing = missing


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs ~1 us per request
class SignSpec:
    """One PASSporT to sign (treat it as read-only).  ``orig`` is None for a div PASSporT
    made from ``original`` (copied from it); ``iat`` None means now (or, from ``original``,
    the original's); ``x5u`` None means the signing key's configured one."""

    ppt: str
    dest: list[str]
    orig: str | None = None
    attest: str = ""
    origid: str = ""
    iat: int | None = None
    div: str | None = None
    original: str | None = None
    rcd: RichCallData | None = None
    x5u: str | None = None

    def key_number(self) -> str:
        """The number whose signing key signs (for choosing a key by number prefix): the
        calling number, except for a div PASSporT, which the credential of the diverting
        number signs (RFC 8946 §3): ``div``, or the original's single ``dest``."""
        if self.ppt != "div":
            return self.orig or ""
        if self.div is not None:
            return self.div
        if self.original is not None:
            try:
                token = self.original.split(";", 1)[0].strip()
                dest = decode_token(token).claims.get("dest")
            except (VerificationError, ValueError):
                return ""  # Signer.div_for says why, with the default key
            tns = dest.get("tn") if isinstance(dest, dict) else None
            if isinstance(tns, list) and len(tns) == 1 and isinstance(tns[0], str):
                return canonical_tn(tns[0])
        return self.orig or ""


# The members that only some PASSporT types take, and which types take them.
_TYPED_MEMBERS = ("attest", "origid", "div", "original", "rcd", "crn", "rcdi")
_ALLOWED = {
    "shaken": frozenset({"attest", "origid", "rcd", "crn", "rcdi"}),
    "div": frozenset({"div", "original"}),
    "rcd": frozenset({"rcd", "crn", "rcdi"}),
}


def check_ppt(ppt: str, req: Mapping[str, Any], names: Mapping[str, str]) -> None:
    """Which members go with which PASSporT type (``names`` maps our member names to the
    API's): attest and origid only in SHAKEN, div and original only in div, rcd not in div,
    crn and rcdi only with rcd."""
    allowed = _ALLOWED[ppt]
    for ours in _TYPED_MEMBERS:
        name = names.get(ours, ours)
        if req.get(name) is None:
            continue
        if ours not in allowed:
            raise FieldError(name, f"not part of a {ppt} PASSporT")
        if ours in ("crn", "rcdi") and req.get(names.get("rcd", "rcd")) is None:
            raise FieldError(name, "goes with rcd (RFC 9795)")


def rcd_from_json(rcd: Any, crn: Any, rcdi: Any, *, where: str = "") -> RichCallData:
    """The :class:`RichCallData` of an ``rcd`` object (``nam``, ``apn``, ``icn``, ``jcd``,
    ``jcl``; other members kept as extensions), a call reason and client-computed ``rcdi``
    digests (pointer: digest, for URL content; the inline jCard's is computed)."""
    if not isinstance(rcd, dict):
        raise FieldError(where + "rcd", "must be a JSON object")
    if rcd.get("nam") is None:
        raise FieldError(where + "rcd.nam", missing=True)
    if crn is not None and not isinstance(crn, str):
        raise FieldError(where + "crn", "must be a string")
    if rcdi is not None and not (
        isinstance(rcdi, dict) and all(isinstance(v, str) for v in rcdi.values())
    ):
        raise FieldError(where + "rcdi", "must be a JSON object of JSON pointer: digest")
    extra = {k: v for k, v in rcd.items() if k not in RCD_KEYS}
    try:
        return RichCallData(
            nam=rcd["nam"],
            apn=rcd.get("apn"),
            icn=rcd.get("icn"),
            jcd=rcd.get("jcd"),
            jcl=rcd.get("jcl"),
            crn=crn,
            extra=extra,
            rcdi=rcdi,
        )
    except (ValueError, TypeError) as exc:
        raise FieldError(where + "rcd", str(exc)) from None


def sign(spec: SignSpec, signer: Signer, x5u: str) -> str:
    """The Identity value for ``spec`` (raises :class:`~secsipid.SigningError`)."""
    if spec.ppt == "div":
        if spec.original is not None:
            return signer.div_for(spec.original, spec.dest, div_tn=spec.div, iat=spec.iat, x5u=x5u)
        assert spec.orig is not None and spec.div is not None
        return signer.div_identity(spec.orig, spec.dest, spec.div, iat=spec.iat, x5u=x5u)
    assert spec.orig is not None
    if spec.ppt == "rcd":
        assert spec.rcd is not None
        return signer.rcd_identity(spec.orig, spec.dest, spec.rcd, iat=spec.iat, x5u=x5u)
    return signer.identity(
        spec.orig, spec.dest, spec.attest, spec.origid, iat=spec.iat, x5u=x5u, rcd=spec.rcd
    )
