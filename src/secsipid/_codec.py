"""Base64url and JSON as PASSporT needs them.

* Base64url without padding (RFC 7515 §2, RFC 8225 §6).  The decoder is strict: only the
  URL-safe alphabet, no ``=``, no whitespace.  ``base64.urlsafe_b64decode`` silently drops
  characters outside the alphabet, so it cannot be used on input from the network.
* Deterministic JSON (RFC 8225 §9): no whitespace, keys sorted, integers, UTF-8.
* Strict JSON parsing: duplicate member names are an error (RFC 8225 §9: "member names within
  the scope of a JSON object MUST NOT be equal"), as are ``NaN``/``Infinity``, numbers too large
  for a double (``1e400`` would become ``inf``: RFC 8259 §6 lets a parser limit the range, and a
  value that cannot be written back as JSON is refused here rather than fail later), nesting
  deeper than :data:`MAX_DEPTH` (RFC 8259 §9 lets a parser limit it) and invalid UTF-8.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "B64Error",
    "JSONError",
    "b64url_decode",
    "b64url_encode",
    "canonical_json",
    "loads_strict",
    "too_deep",
]

# bytes.translate with a 256-byte table is a C loop; str.translate with a dict is ~10x slower.
_URL_TO_STD = bytes.maketrans(b"-_+/=", b"+/!!!")
_TO_URL = bytes.maketrans(b"+/", b"-_")
_PAD = (b"", None, b"==", b"=")  # indexed by len % 4; a remainder of 1 is never valid.

# Nesting limit of parsed JSON (RFC 8259 §9: "An implementation may set limits on ... the
# maximum depth of nesting").  A SHAKEN PASSporT nests 3 deep (claims > dest > tn), rcd/jCard
# extension claims about 7; 32 leaves room for any sane extension while keeping every parsed
# document far below the interpreter's recursion limit, so that re-encoding it (warnings,
# to_dict, the CLI) can never raise RecursionError.
MAX_DEPTH = 32


class B64Error(ValueError):
    pass


class JSONError(ValueError):
    pass


def b64url_encode(data: bytes) -> str:
    # binascii is the C implementation under base64; calling it directly saves a layer of
    # Python on the signing hot path.
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(_TO_URL).decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Decode unpadded base64url strictly; raise :class:`B64Error` on anything else."""
    pad = _PAD[len(text) % 4]
    if pad is None:
        raise B64Error("not unpadded base64url (bad length)")
    try:
        # "-_" become "+/"; "+", "/" and "=" become "!", which strict mode refuses, as it
        # refuses whitespace and every other byte outside the alphabet.
        return binascii.a2b_base64(
            text.encode("ascii").translate(_URL_TO_STD) + pad, strict_mode=True
        )
    except (UnicodeEncodeError, binascii.Error) as exc:
        raise B64Error("not unpadded base64url") from exc


def canonical_json(obj: Any) -> bytes:
    """RFC 8225 §9 deterministic serialization.

    ``sort_keys`` orders by UTF-16 code unit rather than by code point; the two orders differ
    only for member names outside the BMP, which RFC 8225 §5 excludes (names are ASCII).
    """
    return json.dumps(
        obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def _pairs_no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise JSONError(f"duplicate member name {key!r}")
            seen.add(key)
    return result


def _no_constants(name: str) -> Any:
    raise JSONError(f"{name} is not valid JSON")


def _finite_float(text: str) -> float:
    """``parse_float`` hook: the C scanner calls it only for numbers with a fraction or an
    exponent, which a SHAKEN PASSporT never holds, so the hot path does not pay for it."""
    value = float(text)
    if math.isinf(value):
        raise JSONError(f"number {text[:24]} is out of range")
    return value


def too_deep(obj: Any) -> bool:
    """Whether ``obj`` nests containers (objects, arrays; tuples as json.dumps writes them)
    more than :data:`MAX_DEPTH` deep.  Iterative: what it looks at may be deeper than the
    recursion limit allows to walk."""
    if not isinstance(obj, dict | list | tuple):
        return False
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list | tuple):
                stack.append((child, depth + 1))
    return False


def _no_lone_surrogates(obj: Any) -> None:
    """RFC 8259 §8.2 / RFC 7493 §2.1: a "\\ud800" escape without its pair is not a character;
    refuse it here rather than fail later when the text is re-encoded as UTF-8."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError as exc:
        raise JSONError("unpaired UTF-16 surrogate escape in a string") from exc


# One decoder built once: json.loads() with hooks builds a new decoder per call, which costs
# more than the decoding itself for PASSporT-sized documents.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_pairs_no_duplicates, parse_constant=_no_constants, parse_float=_finite_float
)
_SCAN_ONCE: Callable[[str, int], tuple[Any, int]] = _DECODER.scan_once  # type: ignore[attr-defined]


def loads_strict(data: bytes) -> Any:
    """Parse UTF-8 JSON strictly; raise :class:`JSONError` with a short message otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONError("not UTF-8") from exc
    try:
        # Fast path: the C scanner alone, for documents without surrounding whitespace (every
        # canonical PASSporT); decode() adds two regex matches that cost a third as much again.
        try:
            obj, end = _SCAN_ONCE(text, 0)
            if end != len(text):
                obj = _DECODER.decode(text)
        except StopIteration:
            obj = _DECODER.decode(text)
        # Counting brackets is a C loop over the text and bounds the depth from above (brackets
        # inside strings count too): only a document with more than MAX_DEPTH of them is walked.
        if text.count("{") + text.count("[") > MAX_DEPTH and too_deep(obj):
            raise JSONError(f"JSON nested deeper than {MAX_DEPTH} levels")
        if "\\u" in text:
            _no_lone_surrogates(obj)
        return obj
    except JSONError:
        raise
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise JSONError(f"not JSON: {exc}") from exc
    except RecursionError as exc:
        raise JSONError("JSON nested too deeply") from exc
