"""The SIP Identity header field (RFC 8224 §4).

Grammar (RFC 8224 §4, with errata 6499 applied: the digest is base64url)::

    Identity = "Identity" HCOLON signed-identity-digest SEMI ident-info *( SEMI ident-info-params )
    signed-identity-digest = 1*(base64-char / ".")
    ident-info      = "info" EQUAL ident-info-uri
    ident-info-uri  = LAQUOT absoluteURI RAQUOT
    ident-info-params = ident-info-alg / ident-type / ident-info-extension
    ident-info-alg  = "alg" EQUAL token
    ident-type      = "ppt" EQUAL token
    ident-info-extension = generic-param

What peers send is looser than the grammar, and we accept it where the meaning is clear:
whitespace around ``;`` and ``=`` (LWS, line folding), ``info`` without angle brackets (some
carriers), a quoted ``ppt="shaken"`` (T-Mobile; RFC 8946's own examples), parameter names in
any case (RFC 3261 §7.3.1), unknown parameters (kept, RFC 8224 §4 ``generic-param``).  Several
Identity values may arrive as several header lines or comma-joined on one (RFC 8224 §4, §9;
RFC 3261 §7.3.1); :func:`split_identity_values` separates them.  The compact header name ``y``
(RFC 8224 §13.1) is recognised when a whole header line is given.

The digest itself is checked by the PASSporT decoder, not here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from types import MappingProxyType

from ._errors import VerificationError
from ._reasons import Reason

__all__ = [
    "DEFAULT_MAX_IDENTITY_SIZE",
    "IdentityHeader",
    "build_identity",
    "parse_identity",
    "split_identity_values",
]

# R45 (standards.md): a SHAKEN Identity value is about 500-700 bytes; 8 KiB leaves room for
# long x5u URLs and extension claims while refusing abuse before any parsing.
DEFAULT_MAX_IDENTITY_SIZE = 8192

# generic-param = token [ EQUAL gen-value ]; gen-value = token / host / quoted-string.
# We also accept "<...>" for info (the grammar) and any run of characters up to the next ";".
_PARAM_RE = re.compile(
    r"""[ \t\r\n]*;[ \t\r\n]*
        (?P<name>[A-Za-z0-9!%'*+\-._`~]+)
        (?:[ \t\r\n]*=[ \t\r\n]*
           (?P<value>"(?:[^"\\\r\n]|\\.)*"|<[^<>]*>|[^;"<>\s]*)
        )?
    """,
    re.VERBOSE,
)
_TRAILING_WS = re.compile(r"[ \t\r\n]*")
_QUOTED_PAIR = re.compile(r"\\(.)")
_HEADER_NAME_RE = re.compile(r"\s*(?:identity|y)\s*:", re.IGNORECASE)
# The first characters of a name _HEADER_NAME_RE matches: "i" and "y" in either case, and the
# Turkish dotted and dotless I, which Unicode case-insensitive matching takes for "i".
_NAME_FIRST = "iIyY\u0130\u0131"
_ABSOLUTE_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:\S+")

_PARAMS_CACHE: dict[str, Mapping[str, str]] = {}
_PARAMS_CACHE_MAX = 512


class IdentityHeader:
    """One parsed Identity header value.

    ``token`` is the signed-identity-digest (a full ``h.p.s`` or compact ``..s`` PASSporT);
    ``params`` maps lower-cased parameter names to their values, unquoted, with the angle
    brackets of ``info`` removed, in the order received.
    """

    __slots__ = ("params", "raw", "token")

    token: str
    params: Mapping[str, str]
    raw: str

    def __init__(self, token: str, params: Mapping[str, str], raw: str = "") -> None:
        self.token = token
        self.params = params
        self.raw = raw

    @property
    def info(self) -> str | None:
        return self.params.get("info")

    @property
    def alg(self) -> str | None:
        return self.params.get("alg")

    @property
    def ppt(self) -> str | None:
        return self.params.get("ppt")

    @property
    def compact(self) -> bool:
        """True for the compact form: no claims segment, ``..signature`` (RFC 8225 §7) or
        ``header..signature``."""
        parts = self.token.split(".")
        return len(parts) == 3 and parts[1] == "" and parts[2] != ""

    def __repr__(self) -> str:
        return f"IdentityHeader(token={self.token[:24]!r}..., params={dict(self.params)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityHeader):
            return NotImplemented
        return self.token == other.token and dict(self.params) == dict(other.params)

    __hash__ = None  # type: ignore[assignment]


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        return _QUOTED_PAIR.sub(r"\1", value[1:-1])
    if len(value) >= 2 and value[0] == "<" and value[-1] == ">":
        return value[1:-1].strip()
    return value


def _parse_params(text: str) -> Mapping[str, str]:
    cached = _PARAMS_CACHE.get(text)
    if cached is not None:
        return cached
    params: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        match = _PARAM_RE.match(text, pos)
        if match is None:
            tail = _TRAILING_WS.match(text, pos)
            if tail is not None and tail.end() == end:
                break
            raise VerificationError(
                Reason.MALFORMED_IDENTITY,
                f"cannot parse Identity parameters at {text[pos : pos + 40]!r}",
            )
        name = match.group("name").lower()
        if name in params:
            raise VerificationError(
                Reason.MALFORMED_IDENTITY, f"Identity parameter {name!r} appears twice"
            )
        value = match.group("value")
        params[name] = "" if value is None else _unquote(value)
        pos = match.end()
    frozen = MappingProxyType(params)
    if len(_PARAMS_CACHE) >= _PARAMS_CACHE_MAX:
        _PARAMS_CACHE.clear()
    _PARAMS_CACHE[text] = frozen
    return frozen


def parse_identity(value: str, *, max_size: int = DEFAULT_MAX_IDENTITY_SIZE) -> IdentityHeader:
    """Parse one Identity header value.

    Raises :class:`VerificationError` with reason ``too-large`` or ``malformed-identity``.
    """
    if len(value) > max_size:
        raise VerificationError(
            Reason.TOO_LARGE,
            f"Identity value is {len(value)} characters, over the {max_size} limit",
        )
    semi = value.find(";")
    if semi < 0:
        token, params_text = value.strip(), ""
    else:
        token, params_text = value[:semi].strip(), value[semi:]
    if not token:
        raise VerificationError(Reason.MALFORMED_IDENTITY, "Identity value has no PASSporT")
    # The digest's alphabet is checked by the PASSporT decoder (strict base64url).
    params = _parse_params(params_text) if params_text else MappingProxyType({})
    return IdentityHeader(token, params, value)


def is_absolute_uri(value: str) -> bool:
    return _ABSOLUTE_URI_RE.fullmatch(value) is not None


def split_comma_values(text: str) -> list[str]:
    """Split a header line's value on commas that are outside quotes and angle brackets
    (RFC 3261 §7.3.1), as several Identity, P-Asserted-Identity, ... values share a line."""
    if "," not in text:
        return [text]
    parts: list[str] = []
    start = 0
    quoted = bracketed = False
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            bracketed = True
        elif c == ">":
            bracketed = False
        elif c == "," and not bracketed:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def split_identity_values(values: str | Iterable[str]) -> list[str]:
    """Separate Identity header values.

    ``values`` is one string or several (one per header line).  Each may be a bare value or a
    whole header line (``Identity: ...`` or ``y: ...``); comma-joined values are split.  Empty
    values are dropped.
    """
    lines = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for line in lines:
        if not isinstance(line, str):
            raise TypeError(f"Identity values must be str, not {type(line).__name__}")
        # A header line's name ("Identity", "y"), blanks allowed before its colon (RFC 3261
        # HCOLON); a bare value starts with base64url and fails the match at its first letter.
        first = line[:1]
        # Only a line starting with a blank or a letter the pattern's case-insensitive "i" or
        # "y" matches may hold a name (_NAME_FIRST, checked against the pattern over all of
        # Unicode by the tests): the regular expression is skipped for a bare value (a
        # PASSporT starts "eyJ"); str.isspace() and the pattern's \s are the same characters.
        if first in _NAME_FIRST or first.isspace():
            match = _HEADER_NAME_RE.match(line)
            if match is not None:
                line = line[match.end() :]
        for part in split_comma_values(line):
            part = part.strip()
            if part:
                out.append(part)
    return out


def build_identity(
    token: str, info: str, *, alg: str | None = "ES256", ppt: str | None = "shaken"
) -> str:
    """The full Identity value ``<token>;info=<info>;alg=ES256;ppt=shaken`` (RFC 8224 §4.1)."""
    value = f"{token};info=<{info}>"
    if alg:
        value += f";alg={alg}"
    if ppt:
        value += f";ppt={ppt}"
    return value
