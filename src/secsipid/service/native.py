"""Our own JSON API: ``POST /v1/verify`` and ``POST /v1/sign``.

Where the secsipidx endpoints answer in text and the ATIS-1000082 ones in the shapes their
clients expect, these speak the library's own terms, so that everything a verification
found reaches the client (a diversion chain hop by hop, the verified Rich Call Data and its
Call-Info values, every failure) and everything the library signs can be asked for::

    POST /v1/verify  {"identity": "..." | ["...", ...],      every Identity header value
                      "orig_tn": "...",                      optional: the caller (PAI/From)
                      "dest_tn": "..." | ["...", ...]}       optional: the call target (R-URI)
    200              Verdict.to_dict(): the JSON of ``secsipid check --json``

    POST /v1/sign    {"orig_tn", "dest_tn", "attest", "origid", "iat", "x5u",
                      "ppt": "shaken" | "div" | "rcd",
                      "div_tn", "original",                  div (RFC 8946)
                      "rcd": {"nam", ...}, "crn", "rcdi"}    Rich Call Data (RFC 9795)
    200              {"identity": "..."}

Members are named as the library's arguments (``Signer.identity``, ``div_identity``,
``div_for``, ``rcd_identity``, ``Verifier.check``); an unknown member is refused, so that a
typo never signs something else than meant.  Every error is ``{"error": code, "message":
text}`` with its HTTP status; the codes are the signing refusal codes of the other
endpoints (``invalid-tn``, ``invalid-attest``, ...) and the request's own
(``invalid-json``, ``missing-parameter``, ``invalid-parameter``, ...), docs/service.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._codec import JSONError, loads_strict
from .signing import PPT_VALUES, FieldError, SignSpec, check_ppt, rcd_from_json

__all__ = ["ApiError", "VerifyRequest", "check_json_type", "parse_sign", "parse_verify"]

_SIGN_MEMBERS = frozenset(
    {
        *("orig_tn", "dest_tn", "attest", "origid", "iat", "x5u", "ppt"),
        *("div_tn", "original"),  # div (RFC 8946)
        *("rcd", "crn", "rcdi"),  # Rich Call Data (RFC 9795)
    }
)
_VERIFY_MEMBERS = frozenset({"identity", "orig_tn", "dest_tn"})
# Our member names for the shared rules (signing.check_ppt).
_NAMES = {"div": "div_tn"}


@dataclass(frozen=True, slots=True)
class ApiError(Exception):
    """An error answer: HTTP status, stable code, message."""

    status: int
    code: str
    message: str

    def body(self) -> bytes:
        return json.dumps({"error": self.code, "message": self.message}).encode()

    @classmethod
    def field(cls, exc: FieldError) -> ApiError:
        if exc.missing:
            return cls(400, "missing-parameter", f"{exc.name!r} is required")
        return cls(400, "invalid-parameter", f"{exc.name}: {exc.why}")


def check_json_type(content_type: str | None) -> None:
    """The body must be declared JSON (415 otherwise)."""
    if content_type == "application/json":
        return
    if content_type is None or content_type.split(";", 1)[0].strip().lower() != (
        "application/json"
    ):
        raise ApiError(415, "unsupported-media-type", "Content-Type must be application/json")


def _load(body: bytes, members: frozenset[str]) -> dict[str, Any]:
    try:
        # Strict, as for PASSporTs and the ATIS bodies: no member twice (which one would
        # sign?), no NaN or overflowing numbers, at most MAX_DEPTH levels, UTF-8 only.
        doc = loads_strict(body)
    except JSONError as exc:
        raise ApiError(400, "invalid-json", str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise ApiError(400, "invalid-json", "the body is not a JSON object")
    unknown = sorted(set(doc) - members)
    if unknown:
        raise ApiError(400, "invalid-parameter", f"unknown member {unknown[0][:60]!r}")
    return doc


def _text(req: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = req.get(name)
    if value is None:
        if required:
            raise FieldError(name, missing=True)
        return None
    if not isinstance(value, str):
        raise FieldError(name, "must be a string")
    return value


def _numbers(req: dict[str, Any], name: str, *, required: bool = False) -> list[str] | None:
    """A string, or a non-empty array of strings."""
    value = req.get(name)
    if value is None:
        if required:
            raise FieldError(name, missing=True)
        return None
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not values or not all(isinstance(v, str) for v in values):
        raise FieldError(name, "must be a string or a non-empty array of strings")
    return values


def parse_sign(body: bytes) -> SignSpec:
    """The PASSporT a ``/v1/sign`` body asks for; values are checked by the library when it
    signs (``SigningError``), types here (:class:`ApiError`)."""
    req = _load(body, _SIGN_MEMBERS)
    try:
        ppt = _text(req, "ppt")
        if ppt is None:
            diverted = req.get("div_tn") is not None or req.get("original") is not None
            ppt = "div" if diverted else "shaken"
        elif ppt not in PPT_VALUES:
            raise FieldError("ppt", f"must be one of {', '.join(PPT_VALUES)}")
        check_ppt(ppt, req, _NAMES)
        iat = req.get("iat")
        if iat is not None and (type(iat) is not int or iat <= 0):
            raise FieldError("iat", "must be a positive integer (seconds since 1970)")
        dest = _numbers(req, "dest_tn", required=True)
        assert dest is not None
        x5u = _text(req, "x5u")
        if ppt == "div":
            div = _text(req, "div_tn")
            original = _text(req, "original")
            if original is not None:
                if req.get("orig_tn") is not None:
                    raise FieldError("orig_tn", "copied from original: leave it out")
                return SignSpec("div", dest, None, iat=iat, div=div, original=original, x5u=x5u)
            if div is None:
                raise FieldError("div_tn", missing=True)
            orig = _text(req, "orig_tn", required=True)
            return SignSpec("div", dest, orig, iat=iat, div=div, x5u=x5u)
        orig = _text(req, "orig_tn", required=True)
        rcd = None
        if req.get("rcd") is not None:
            rcd = rcd_from_json(req["rcd"], req.get("crn"), req.get("rcdi"))
        if ppt == "rcd":
            if rcd is None:
                raise FieldError("rcd", missing=True)
            return SignSpec("rcd", dest, orig, iat=iat, rcd=rcd, x5u=x5u)
        attest = _text(req, "attest", required=True)
        origid = _text(req, "origid") or ""
        assert attest is not None
        return SignSpec("shaken", dest, orig, attest, origid, iat, rcd=rcd, x5u=x5u)
    except FieldError as exc:
        raise ApiError.field(exc) from None


@dataclass(frozen=True, slots=True)
class VerifyRequest:
    identity: str | list[str]
    orig_tn: str | None
    dest_tn: list[str] | None


def parse_verify(body: bytes) -> VerifyRequest:
    req = _load(body, _VERIFY_MEMBERS)
    try:
        identity = _numbers(req, "identity", required=True)
        assert identity is not None
        if not all(v.strip() for v in identity):
            raise FieldError("identity", "holds an empty value")
        return VerifyRequest(identity, _text(req, "orig_tn"), _numbers(req, "dest_tn"))
    except FieldError as exc:
        raise ApiError.field(exc) from None
