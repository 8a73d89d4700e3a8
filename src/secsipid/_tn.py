"""Canonical telephone numbers and URIs (RFC 8224 §8.3 and §8.5).

RFC 8224 §8.3: canonicalization "MUST drop any "+"s, internal dashes, parentheses, or other
non-numeric characters, except for the "#" or "*" keys".  RFC 8225 §5.2.1.1 then restricts a
``tn`` claim to ``1*("#" / "*" / DIGIT)``.

Callers hand us numbers in every shape SIP produces, so :func:`canonical_tn` accepts:

* bare numbers with visual separators: ``+1 (215) 555-1212``;
* SIP/SIPS URIs, taking the user part: ``sip:+1-215-555-1212;npdi;rn=+12155550000@host;user=phone``
  (RFC 4904 user parameters after ``;`` and a password after ``:`` are not part of the number);
* TEL URIs: ``tel:+1-215-555-1212;phone-context=example.com``;
* a name-addr as found in From/To/P-Asserted-Identity: ``"Alice" <sip:+12155551212@host>;tag=1``.

We do not guess a country code: converting a national number to E.164 needs the network's
numbering plan, which only the caller knows (RFC 8224 §8.3 "when possible").
"""

from __future__ import annotations

import re
from urllib.parse import unquote

__all__ = ["canonical_tn", "canonical_uri", "is_canonical_tn"]

_NOT_TN_CHAR = re.compile(r"[^0-9#*]")
_TN_RE = re.compile(r"[0-9#*]+")
_UNRESERVED_PCT = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _addr_spec(value: str) -> str:
    """The URI inside a name-addr (``"Name" <uri>;params``), or the value itself."""
    value = value.strip()
    start = 0
    if value.startswith('"'):  # skip a quoted display-name, which may itself hold "<"
        i = 1
        while i < len(value) and value[i] != '"':
            i += 2 if value[i] == "\\" else 1
        start = i + 1
    lt = value.find("<", start)
    if lt >= 0:
        gt = value.find(">", lt + 1)
        return value[lt + 1 : gt if gt >= 0 else len(value)].strip()
    return value


def _user_part(value: str) -> str:
    """The telephone-number-bearing part of a SIP/SIPS/TEL URI, or the value unchanged."""
    uri = _addr_spec(value)
    colon = uri.find(":")
    scheme = uri[:colon].lower() if colon > 0 else ""
    if scheme in ("sip", "sips"):
        rest = uri[colon + 1 :]
        at = rest.find("@")
        # Without "@" there is no user part; keep whatever precedes the URI parameters so
        # that a sloppy "sip:+12155551212" still yields the number.
        user = rest[:at] if at >= 0 else rest.split(";", 1)[0]
        user = user.split(";", 1)[0].split(":", 1)[0]
        return unquote(user)
    if scheme == "tel":
        return unquote(uri[colon + 1 :].split(";", 1)[0])
    return uri


def canonical_tn(value: str) -> str:
    """Return the RFC 8224 §8.3 canonical form of a telephone number, number-bearing URI or
    name-addr.  The result may be empty when ``value`` holds no digits (e.g. ``sip:alice@host``)."""
    if value.isdigit() and value.isascii():  # already canonical: the common case, made cheap
        return value
    return _NOT_TN_CHAR.sub("", _user_part(value))


def is_canonical_tn(value: str) -> bool:
    return _TN_RE.fullmatch(value) is not None


def _decode_unreserved(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def canonical_uri(value: str) -> str:
    """RFC 8224 §8.5: ``scheme ":" user "@" host`` with scheme, user and host lowercased, port,
    password, URI parameters and headers dropped, and percent-encoded unreserved characters
    decoded.  Returns ``""`` when ``value`` is not a SIP or SIPS URI."""
    uri = _addr_spec(value)
    colon = uri.find(":")
    scheme = uri[:colon].lower() if colon > 0 else ""
    if scheme not in ("sip", "sips"):
        return ""
    rest = uri[colon + 1 :].split("?", 1)[0]  # drop URI headers
    at = rest.find("@")
    if at >= 0:
        user, hostport = rest[:at], rest[at + 1 :]
        user = user.split(":", 1)[0]
    else:
        user, hostport = "", rest
    hostport = hostport.split(";", 1)[0]
    if hostport.startswith("["):  # IPv6 reference
        host = hostport[: hostport.find("]") + 1] if "]" in hostport else hostport
    else:
        host = hostport.split(":", 1)[0]
    user = _UNRESERVED_PCT.sub(_decode_unreserved, user).lower()
    host = host.lower()
    if not host:
        return ""
    return f"{scheme}:{user}@{host}" if user else f"{scheme}:{host}"
