"""Rich Call Data (RFC 9795): the ``rcd``, ``crn`` and ``rcdi`` claims, pure functions only.

RFC 9795 extends PASSporT with what a called party may be shown besides the number::

    rcd   {"nam": display name,                       RFC 9795 §4: "nam" MUST be present
           "apn": alternate presentation number,      optional
           "icn": URL of an icon (logo),              optional
           "jcd": jCard (RFC 7095) inline,            optional, not with "jcl"
           "jcl": URL of a jCard}                     optional, not with "jcd"
    crn   call reason, a string                      RFC 9795 §5
    rcdi  {JSON pointer (RFC 6901) into rcd: digest}  RFC 9795 §6: integrity of the content

The claims ride in a ``shaken`` PASSporT (the signer adds them, ``ppt`` stays ``shaken``) or
in a PASSporT of type ``rcd`` (``orig``, ``dest``, ``iat`` plus the RCD claims).

``rcdi`` maps JSON pointers, relative to the ``rcd`` object (``"/icn"``, ``"/jcd"``,
``"/jcd/1/3/3"``), to integrity digests written as W3C Subresource Integrity metadata:
``sha256-`` (or ``sha384-``/``sha512-``) followed by the base64 of the digest.  What is
digested depends on what the pointer designates:

* a URL (``/icn``, ``/jcl``, a ``uri`` value inside a jCard): the bytes of the resource;
* a pointer below ``/jcl`` (``/jcl/1/3/3``): a URL inside the fetched jCard, likewise;
* anything else (the inline jCard ``/jcd``, a property of it): its JSON value serialized as
  RFC 8225 §9 prescribes for the PASSporT itself (no whitespace, keys sorted, UTF-8), which for
  the strings, integers and ASCII keys of a jCard is the same text as RFC 8785 (JCS).

Digests of inline content are checked on every verification (no I/O); URL content only when
the verifier is asked to fetch it (``VerifyPolicy.fetch_rcd``), through the certificate
fetcher's safety policy and size cap (the I/O lives in the verifier, not here).

This module does no I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ._codec import canonical_json
from ._errors import VerificationError
from ._reasons import Reason

__all__ = [
    "RCD_DIGEST_ALGORITHMS",
    "PointerError",
    "RichCallData",
    "check_rcd_claims",
    "check_rcdi_inline",
    "format_pointer",
    "parse_digest",
    "parse_pointer",
    "rcd_digest",
    "rcd_integrity",
    "resolve_pointer",
    "url_targets",
]

#: SRI hash names accepted in ``rcdi`` values, with their digest sizes.
RCD_DIGEST_ALGORITHMS: dict[str, tuple[Callable[[bytes], Any], int]] = {
    "sha256": (hashlib.sha256, 32),
    "sha384": (hashlib.sha384, 48),
    "sha512": (hashlib.sha512, 64),
}
_DIGEST_RE = re.compile(r"(sha256|sha384|sha512)-([A-Za-z0-9+/_-]+={0,2})")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+")
_INDEX_RE = re.compile(r"0|[1-9][0-9]*")
# RFC 9795 defines these keys of the rcd object; others are extensions and are kept as given.
RCD_KEYS = ("nam", "apn", "icn", "jcd", "jcl")
# Nesting of a pointer we follow: a jCard is ["vcard", [[name, params, type, value...]...]],
# so /jcd/1/N/3 is four levels; more than this is not a pointer into RCD.
_MAX_POINTER_TOKENS = 8


class PointerError(ValueError):
    """A JSON pointer that is malformed (RFC 6901 §3) or designates nothing (§4)."""


# -- JSON pointers (RFC 6901) -----------------------------------------------------------------


def parse_pointer(pointer: str) -> list[str]:
    """The reference tokens of a JSON pointer (RFC 6901 §3): ``""`` is the whole document,
    otherwise ``"/"``-prefixed tokens in which ``~1`` is ``/`` and ``~0`` is ``~``."""
    if not isinstance(pointer, str):
        raise PointerError(f"a JSON pointer is a string, not {type(pointer).__name__}")
    if pointer == "":
        return []
    if pointer[0] != "/":
        raise PointerError(f"JSON pointer {pointer[:40]!r} does not start with '/'")
    tokens = pointer[1:].split("/")
    if len(tokens) > _MAX_POINTER_TOKENS:
        raise PointerError(f"JSON pointer {pointer[:40]!r} is deeper than RCD content")
    out = []
    for token in tokens:
        if "~" in token:
            if re.search(r"~(?![01])", token):
                raise PointerError(f"JSON pointer {pointer[:40]!r}: '~' not followed by 0 or 1")
            token = token.replace("~1", "/").replace("~0", "~")
        out.append(token)
    return out


def format_pointer(tokens: Sequence[str | int]) -> str:
    """The JSON pointer text of ``tokens`` (the inverse of :func:`parse_pointer`)."""
    return "".join("/" + str(t).replace("~", "~0").replace("/", "~1") for t in tokens)


def resolve_pointer(document: Any, pointer: str | Sequence[str]) -> Any:
    """The value ``pointer`` designates in ``document`` (RFC 6901 §4); :class:`PointerError`
    when it designates nothing.  Array indexes are decimal without leading zeros; ``-`` (the
    element after the last) designates nothing."""
    tokens = parse_pointer(pointer) if isinstance(pointer, str) else list(pointer)
    node = document
    for token in tokens:
        if isinstance(node, dict):
            if token not in node:
                raise PointerError(f"no member {token[:40]!r}")
            node = node[token]
        elif isinstance(node, list):
            if _INDEX_RE.fullmatch(token) is None or int(token) >= len(node):
                raise PointerError(f"no element {token[:40]!r} in an array of {len(node)}")
            node = node[int(token)]
        else:
            raise PointerError(f"cannot descend into a {type(node).__name__} with {token[:40]!r}")
    return node


# -- digests ----------------------------------------------------------------------------------


def rcd_digest(content: bytes, algorithm: str = "sha256") -> str:
    """The ``rcdi`` value for ``content``: ``sha256-`` and the padded base64 of its SHA-256
    (W3C Subresource Integrity metadata, the form RFC 9795 §6 and RFC 9796 use)."""
    entry = RCD_DIGEST_ALGORITHMS.get(algorithm)
    if entry is None:
        raise ValueError(f"rcdi algorithm must be one of {sorted(RCD_DIGEST_ALGORITHMS)}")
    return f"{algorithm}-{base64.b64encode(entry[0](content).digest()).decode('ascii')}"


def parse_digest(value: object) -> tuple[str, bytes]:
    """``(algorithm, digest bytes)`` of an ``rcdi`` value.  Padding is optional and the
    base64url alphabet is accepted too (peers differ); the length must be the hash's.
    Raises :class:`ValueError`."""
    if not isinstance(value, str):
        raise ValueError(f"an rcdi digest is a string, not {type(value).__name__}")
    match = _DIGEST_RE.fullmatch(value)
    if match is None:
        raise ValueError(f"rcdi digest {value[:40]!r} is not sha256-/sha384-/sha512-<base64>")
    algorithm, text = match.groups()
    text = text.rstrip("=").replace("-", "+").replace("_", "/")
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except binascii.Error as exc:
        raise ValueError(f"rcdi digest {value[:40]!r}: {exc}") from exc
    if len(raw) != RCD_DIGEST_ALGORITHMS[algorithm][1]:
        raise ValueError(f"rcdi digest {value[:40]!r} has {len(raw)} bytes, not a {algorithm}")
    return algorithm, raw


def digest_matches(expected: str, content: bytes) -> bool:
    algorithm, raw = parse_digest(expected)
    actual = RCD_DIGEST_ALGORITHMS[algorithm][0](content).digest()
    return hmac.compare_digest(actual, raw)


# -- the claims ---------------------------------------------------------------------------------


def is_url(value: object) -> bool:
    """Whether an RCD value is a reference to remote content (an http(s) URL)."""
    return isinstance(value, str) and value[:8].lower().startswith(("https://", "http://"))


def _invalid(message: str) -> VerificationError:
    return VerificationError(Reason.INVALID_RCD, message)


def _check_jcard(jcard: object, where: str) -> None:
    """The shape of a jCard (RFC 7095 §3.2): ``["vcard", [property, ...]]`` with each
    property ``[name, {params}, type, value, ...]``."""
    if not (isinstance(jcard, list) and len(jcard) == 2 and jcard[0] == "vcard"):
        raise _invalid(f'{where} is not a jCard ["vcard", [properties]] (RFC 7095)')
    properties = jcard[1]
    if not isinstance(properties, list):
        raise _invalid(f"{where}: the jCard properties are not an array")
    for n, prop in enumerate(properties):
        if not (
            isinstance(prop, list)
            and len(prop) >= 4
            and isinstance(prop[0], str)
            and isinstance(prop[1], dict)
            and isinstance(prop[2], str)
        ):
            raise _invalid(f"{where}/1/{n} is not a jCard property [name, {{}}, type, value]")


def check_rcd_claims(claims: Mapping[str, Any]) -> None:
    """Enforce RFC 9795's rules on ``rcd``, ``crn`` and ``rcdi`` when present; raise
    :class:`VerificationError` (``invalid-rcd``), or ``rcd-integrity-mismatch`` when an
    ``rcdi`` digest of inline content does not match it."""
    rcd = claims.get("rcd")
    if "rcd" in claims:  # present: an object, never null (RichCallData.from_claims reads it)
        if not isinstance(rcd, dict):
            raise _invalid("rcd must be a JSON object")
        nam = rcd.get("nam")
        if nam is None:
            raise _invalid('rcd has no "nam": RFC 9795 §4 requires the display name')
        if not isinstance(nam, str):
            raise _invalid(f"rcd nam must be a string, not {type(nam).__name__}")
        apn = rcd.get("apn")
        if apn is not None and (not isinstance(apn, str) or not apn):
            raise _invalid("rcd apn must be a non-empty string (a telephone number)")
        for key in ("icn", "jcl"):
            value = rcd.get(key)
            if value is not None and (not isinstance(value, str) or not _URI_RE.fullmatch(value)):
                raise _invalid(f"rcd {key} must be an absolute URL, not {str(value)[:60]!r}")
        if "jcd" in rcd and "jcl" in rcd:
            raise _invalid('rcd holds both "jcd" and "jcl": RFC 9795 allows one of them')
        if "jcd" in rcd:
            _check_jcard(rcd["jcd"], "rcd jcd")
    crn = claims.get("crn")
    if crn is not None and not isinstance(crn, str):
        raise _invalid(f"crn (call reason) must be a string, not {type(crn).__name__}")
    rcdi = claims.get("rcdi")
    if rcdi is None:
        return
    if rcd is None:
        raise _invalid('rcdi without an "rcd" claim')
    if not isinstance(rcdi, dict) or not rcdi:
        raise _invalid("rcdi must be a non-empty JSON object of pointer: digest")
    for pointer, digest in rcdi.items():
        try:
            tokens = parse_pointer(pointer)
            parse_digest(digest)
        except ValueError as exc:
            raise _invalid(f"rcdi: {exc}") from None
        if not tokens:
            raise _invalid("rcdi pointer '' (the whole rcd object) designates no content")
        if tokens[0] == "jcl" and len(tokens) > 1:
            if "jcl" not in rcd:
                raise _invalid(f"rcdi pointer {pointer[:40]!r}: rcd has no jcl")
            continue  # a pointer into the jCard behind jcl: checked when it is fetched
        try:
            resolve_pointer(rcd, tokens)
        except PointerError as exc:
            raise _invalid(
                f"rcdi pointer {pointer[:40]!r} designates nothing in rcd: {exc}"
            ) from None
    check_rcdi_inline(rcd, rcdi)


def check_rcdi_inline(rcd: Mapping[str, Any], rcdi: Mapping[str, str]) -> None:
    """Check the ``rcdi`` digests of inline content (no I/O).  Pointers to URLs and into the
    jCard behind ``jcl`` are left to :func:`url_targets`."""
    for pointer, digest in rcdi.items():
        tokens = parse_pointer(pointer)
        if tokens[0] == "jcl" and len(tokens) > 1:
            continue
        target = resolve_pointer(rcd, tokens)
        if is_url(target):
            continue
        if not digest_matches(digest, canonical_json(target)):
            raise VerificationError(
                Reason.RCD_INTEGRITY_MISMATCH,
                f"rcdi {pointer[:40]!r}: the digest does not match the inline content",
            )


def url_targets(rcd: Mapping[str, Any], rcdi: Mapping[str, str]) -> Iterator[tuple[str, str]]:
    """``(pointer, URL)`` of each ``rcdi`` entry whose content is behind a URL in ``rcd``
    (pointers below ``/jcl`` are resolved by the caller in the fetched jCard)."""
    for pointer in rcdi:
        tokens = parse_pointer(pointer)
        if tokens[0] == "jcl" and len(tokens) > 1:
            continue
        target = resolve_pointer(rcd, tokens)
        if is_url(target):
            yield pointer, target


# -- building RCD (the signer's side) -----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RichCallData:
    """The ``rcd`` claim (RFC 9795 §4) and the call reason ``crn`` (§5), validated when built.

    ``nam`` is required (may be ``""``); ``jcd`` (a jCard, RFC 7095) and ``jcl`` (its URL)
    exclude each other; ``icn`` and ``jcl`` are URLs.  ``extra`` holds further rcd keys.
    ``rcdi`` is the integrity claim as received (a verified PASSporT's), or digests a signer
    already has; :meth:`claims` adds the ones it can compute.
    """

    nam: str
    apn: str | None = None
    icn: str | None = None
    jcd: list[Any] | None = None
    jcl: str | None = None
    crn: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    rcdi: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if set(self.extra) & {*RCD_KEYS}:
            raise ValueError(f"extra must not repeat the RFC 9795 keys {RCD_KEYS}")
        claims: dict[str, Any] = {"rcd": self.claim()}
        if self.crn is not None:
            claims["crn"] = self.crn
        if self.rcdi is not None:
            claims["rcdi"] = dict(self.rcdi)
        try:
            check_rcd_claims(claims)
        except VerificationError as exc:
            raise ValueError(exc.message) from None

    def claim(self) -> dict[str, Any]:
        """The ``rcd`` claim value."""
        rcd: dict[str, Any] = {"nam": self.nam}
        for key in ("apn", "icn", "jcd", "jcl"):
            value = getattr(self, key)
            if value is not None:
                rcd[key] = value
        rcd.update(self.extra)
        return rcd

    def claims(
        self, contents: Mapping[str, bytes] | None = None, *, algorithm: str = "sha256"
    ) -> dict[str, Any]:
        """``rcd``, ``crn`` when set, and ``rcdi``: see :func:`rcd_integrity`."""
        out: dict[str, Any] = {"rcd": self.claim()}
        if self.crn is not None:
            out["crn"] = self.crn
        rcdi = dict(self.rcdi or {})
        rcdi.update(rcd_integrity(out["rcd"], contents or {}, algorithm=algorithm))
        if rcdi:
            out["rcdi"] = dict(sorted(rcdi.items()))
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the ``rcd`` object, ``crn`` and ``rcdi`` (None when absent)."""
        return {"rcd": self.claim(), "crn": self.crn, "rcdi": dict(self.rcdi or {}) or None}

    def call_info(self) -> list[str]:
        """SIP ``Call-Info`` values for this RCD (RFC 9796): the icon as ``purpose=icon``,
        the jCard URL as ``purpose=jcard``, each with its ``integrity`` digest when ``rcdi``
        covers it, and the call reason as ``call-reason`` on the first value.  The display
        name (``nam``) belongs in the From/P-Asserted-Identity display-name instead, and an
        inline jCard (``jcd``) has no URL to put here: both are left to the caller."""
        values = []
        rcdi = self.rcdi or {}
        for key, purpose in (("icn", "icon"), ("jcl", "jcard")):
            url = getattr(self, key)
            if url is None:
                continue
            value = f"<{url}>;purpose={purpose}"
            digest = rcdi.get("/" + key)
            if digest is not None:
                value += f';integrity="{digest}"'
            values.append(value)
        if self.crn is not None and values:
            values[0] += f";call-reason={_quoted_string(self.crn)}"
        return values

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> RichCallData:
        """The RCD of checked claims (see :func:`check_rcd_claims`)."""
        rcd = claims["rcd"]
        return cls(
            nam=rcd["nam"],
            apn=rcd.get("apn"),
            icn=rcd.get("icn"),
            jcd=rcd.get("jcd"),
            jcl=rcd.get("jcl"),
            crn=claims.get("crn"),
            extra={k: v for k, v in rcd.items() if k not in RCD_KEYS},
            rcdi=claims.get("rcdi"),
        )


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _quoted_string(text: str) -> str:
    """A SIP quoted-string (RFC 3261 §25.1) for text from a remote PASSporT: control
    characters (CR and LF above all: header injection) become spaces, ``"`` and ``\\`` are
    escaped."""
    clean = _CONTROL.sub(" ", text).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{clean}"'


def rcd_integrity(
    rcd: Mapping[str, Any], contents: Mapping[str, bytes], *, algorithm: str = "sha256"
) -> dict[str, str]:
    """The ``rcdi`` claim for ``rcd``: the inline jCard (``/jcd``) is always digested; URL
    content (``icn``, ``jcl``, ``uri`` values inside the jCard) is digested when its bytes are
    in ``contents``, keyed by the URL or by the JSON pointer.  A pointer in ``contents`` that
    is not a URL of ``rcd`` (e.g. ``/jcl/1/3/3`` into a jCard behind ``jcl``) is digested as
    given.  Raises :class:`ValueError` for an unknown URL or pointer."""
    rcdi: dict[str, str] = {}
    used: set[str] = set()
    if "jcd" in rcd:
        rcdi["/jcd"] = rcd_digest(canonical_json(rcd["jcd"]), algorithm)
    for pointer, url in _urls(rcd):
        for key in (pointer, url):
            if key in contents:
                rcdi[pointer] = rcd_digest(contents[key], algorithm)
                used.add(key)
    for key, content in contents.items():
        if key in used:
            continue
        tokens = parse_pointer(key) if key.startswith("/") else None
        if tokens is None or tokens[0] != "jcl" or len(tokens) < 2 or "jcl" not in rcd:
            raise ValueError(f"{key[:60]!r} is not a URL of the rcd claim nor a /jcl/ pointer")
        rcdi[key] = rcd_digest(content, algorithm)
    return dict(sorted(rcdi.items()))


def _urls(rcd: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every URL of an rcd object with its pointer: icn, jcl, and jCard values that are URLs."""
    for key in ("icn", "jcl"):
        if is_url(rcd.get(key)):
            yield "/" + key, rcd[key]
    jcd = rcd.get("jcd")
    if isinstance(jcd, list) and len(jcd) == 2 and isinstance(jcd[1], list):
        for n, prop in enumerate(jcd[1]):
            if isinstance(prop, list):
                for m, value in enumerate(prop[3:], start=3):
                    if is_url(value):
                        yield format_pointer(["jcd", 1, n, m]), value
