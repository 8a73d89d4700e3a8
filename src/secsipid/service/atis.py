"""The ATIS-1000082 STI-AS/STI-VS REST API: request shapes, responses and error bodies.

Request and response shapes follow what deployed ATIS-1000082 clients send and read
(``shared/reference/atis-1000082-api.md``):

* ``POST /stir/v1/signing`` ``{"signingRequest": {"attest", "dest": {"tn": [...]}, "iat",
  "orig": {"tn"}, "origid"?}}`` -> ``{"signingResponse": {"identity": "..."}}``;
* ``POST /stir/v1/verification`` ``{"verificationRequest": {"from": {"tn"}, "to": {"tn":
  [...]}, "time", "identity"}}`` -> 200 ``{"verificationResponse": {"verstat", ...}}`` for
  every request that parses, with ``reasoncode``/``reasontext``/``reasondesc`` when the
  PASSporT is not valid (lowercase keys, as the deployed implementations send them).  The
  ``orig``/``dest``/``iat`` spelling some clients use inside ``verificationRequest`` is
  accepted too.

Request-level errors are OMA-style ``requestError`` bodies: ``serviceException`` SVC4000..SVC4007
and ``policyException`` POL4050/POL5000.  Two are ours, for what the standard's list lacks:
POL4001 (401, a bearer token is required) and POL5003 (503, signing is not configured).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._codec import JSONError, loads_strict
from .._passport import UUID_RE
from .._reasons import VERSTAT_PASSED
from .._tn import canonical_tn
from .._verifier import Verdict

__all__ = [
    "ATIS_TIME_SKEW",
    "AtisError",
    "SigningRequest",
    "VerificationRequest",
    "parse_signing",
    "parse_verification",
    "verification_body",
]

# ATIS-1000082 error case E3: the request's "time" more than 60 s away from the server's clock.
ATIS_TIME_SKEW = 60
JSON_TYPE = b"application/json"


@dataclass(frozen=True, slots=True)
class AtisError(Exception):
    """A request-level error: HTTP status and its ``requestError`` body."""

    status: int
    message_id: str
    text: str
    variables: tuple[str, ...] = ()

    @property
    def policy(self) -> bool:
        return self.message_id.startswith("POL")

    def body(self) -> bytes:
        kind = "policyException" if self.policy else "serviceException"
        inner: dict[str, Any] = {"messageId": self.message_id, "text": self.text}
        if self.variables:
            inner["variables"] = list(self.variables)
        return json.dumps({"requestError": {kind: inner}}, separators=(",", ":")).encode()

    # The catalogue (ATIS-1000082 as deployed; texts with %1/%2 filled from variables).
    @classmethod
    def missing_body(cls) -> AtisError:
        return cls(400, "SVC4000", "Missing request body")

    @classmethod
    def missing_parameter(cls, name: str) -> AtisError:
        return cls(400, "SVC4001", "Missing mandatory parameter '%1'", (name,))

    @classmethod
    def not_acceptable(cls, accept: str) -> AtisError:
        return cls(406, "SVC4002", "Requested response body type '%1' is not supported", (accept,))

    @classmethod
    def not_found(cls) -> AtisError:
        return cls(404, "SVC4003", "Requested resource was not found")

    @classmethod
    def unsupported_type(cls) -> AtisError:
        return cls(
            415, "SVC4004", "Unsupported request body type, expected '%1'", ("application/json",)
        )

    @classmethod
    def invalid_value(cls, name: str, why: str) -> AtisError:
        return cls(400, "SVC4005", "Invalid '%1' parameter value: %2", (name, why))

    @classmethod
    def parse_failed(cls, why: str, status: int = 400) -> AtisError:
        return cls(status, "SVC4006", "Failed to parse received message body: %1", (why,))

    @classmethod
    def length_required(cls) -> AtisError:
        return cls(411, "SVC4007", "Missing mandatory Content-Length header")

    @classmethod
    def method_not_allowed(cls, method: str) -> AtisError:
        return cls(405, "POL4050", "Method not allowed: %1", (method,))

    @classmethod
    def unauthorized(cls) -> AtisError:
        return cls(401, "POL4001", "Unauthorized: a valid bearer token is required")

    @classmethod
    def internal(cls) -> AtisError:
        return cls(500, "POL5000", "Internal Server Error. Please try again later")

    @classmethod
    def not_configured(cls, what: str) -> AtisError:
        return cls(503, "POL5003", "Service not available: %1", (what,))


def check_accept(accept: bytes | None) -> None:
    """Only JSON answers are made: ``Accept`` must allow ``application/json`` (406 otherwise)."""
    if accept is None:
        return
    for item in accept.split(b","):
        media = item.split(b";", 1)[0].strip().lower()
        if media in (JSON_TYPE, b"*/*", b"application/*", b""):
            return
    raise AtisError.not_acceptable(accept.decode("latin-1"))


def check_content_type(content_type: bytes | None) -> None:
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != JSON_TYPE:
        raise AtisError.unsupported_type()


def _load(body: bytes, wrapper: str) -> dict[str, Any]:
    if not body.strip():
        raise AtisError.missing_body()
    try:
        # Strict, as for PASSporTs: no member twice, no NaN/Infinity or numbers beyond a
        # double, at most MAX_DEPTH levels, UTF-8 only (RFC 8259 §8.1).
        doc = loads_strict(body)
    except JSONError as exc:
        raise AtisError.parse_failed(str(exc)[:200]) from None
    if not isinstance(doc, dict):
        raise AtisError.parse_failed("the body is not a JSON object")
    inner = doc.get(wrapper)
    if inner is None:
        raise AtisError.missing_parameter(wrapper)
    if not isinstance(inner, dict):
        raise AtisError.invalid_value(wrapper, "not a JSON object")
    return inner


def _required(obj: dict[str, Any], name: str, where: str = "") -> Any:
    if name not in obj or obj[name] is None:
        raise AtisError.missing_parameter(where + name)
    return obj[name]


def _tn(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise AtisError.invalid_value(name, "must be a string")
    if not canonical_tn(value):
        raise AtisError.invalid_value(name, "holds no telephone number digits")
    return value


def _tn_object(obj: Any, name: str, *, many: bool) -> Any:
    """``{"tn": "..."}`` (or ``{"tn": ["..."]}`` when ``many``)."""
    if not isinstance(obj, dict):
        raise AtisError.invalid_value(name, "must be a JSON object")
    tn = _required(obj, "tn", name + ".")
    if many:
        values = [tn] if isinstance(tn, str) else tn
        if not isinstance(values, list) or not values:
            raise AtisError.invalid_value(name + ".tn", "must be a non-empty array of strings")
        return [_tn(v, name + ".tn") for v in values]
    if isinstance(tn, list) and len(tn) == 1:  # some clients send orig.tn as a 1-element array
        tn = tn[0]
    return _tn(tn, name + ".tn")


def _int_time(value: Any, name: str) -> int:
    if type(value) is not int or value <= 0:
        raise AtisError.invalid_value(name, "must be a positive integer (seconds since 1970)")
    return value


@dataclass(frozen=True, slots=True)
class SigningRequest:
    orig: str
    dest: list[str]
    attest: str
    iat: int
    origid: str


def parse_signing(body: bytes) -> SigningRequest:
    req = _load(body, "signingRequest")
    attest = _required(req, "attest")
    if not isinstance(attest, str) or attest.upper() not in ("A", "B", "C"):
        raise AtisError.invalid_value("attest", "must be A, B or C")
    orig = _tn_object(_required(req, "orig"), "orig", many=False)
    dest = _tn_object(_required(req, "dest"), "dest", many=True)
    iat = _int_time(_required(req, "iat"), "iat")
    origid = req.get("origid")
    if origid is None or origid == "":
        origid = ""
    elif not isinstance(origid, str) or UUID_RE.fullmatch(origid) is None:
        raise AtisError.invalid_value("origid", "must be a UUID (RFC 8588 §5)")
    return SigningRequest(orig, dest, attest.upper(), iat, origid)


@dataclass(frozen=True, slots=True)
class VerificationRequest:
    orig: str
    dest: list[str]
    time: int
    identity: str


def parse_verification(body: bytes) -> VerificationRequest:
    req = _load(body, "verificationRequest")
    identity = _required(req, "identity")
    if not isinstance(identity, str) or not identity.strip():
        raise AtisError.invalid_value("identity", "must be a non-empty string")
    # ATIS-1000082 names them from/to/time; some clients send orig/dest/iat instead.
    from_name = "from" if "from" in req or "orig" not in req else "orig"
    to_name = "to" if "to" in req or "dest" not in req else "dest"
    time_name = "time" if "time" in req or "iat" not in req else "iat"
    orig = _tn_object(_required(req, from_name), from_name, many=False)
    dest = _tn_object(_required(req, to_name), to_name, many=True)
    when = _int_time(_required(req, time_name), time_name)
    return VerificationRequest(orig, dest, when, identity)


def verification_body(verdict: Verdict) -> bytes:
    """The ``verificationResponse`` for a verdict (HTTP 200 either way)."""
    if verdict.ok:
        return b'{"verificationResponse":{"verstat":"' + VERSTAT_PASSED.encode() + b'"}}'
    inner = {
        "reasoncode": verdict.sip_status,
        "reasontext": verdict.sip_reason,
        "reasondesc": verdict.message or verdict.reason.description,
        "verstat": verdict.verstat,
    }
    return json.dumps({"verificationResponse": inner}, separators=(",", ":")).encode()
