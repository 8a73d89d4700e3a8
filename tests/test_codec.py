"""Base64url and JSON as PASSporT needs them (RFC 7515 §2, RFC 8225 §6 and §9)."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secsipid import b64url_decode, b64url_encode, canonical_json
from secsipid._codec import MAX_DEPTH, B64Error, JSONError, loads_strict

# -- base64url ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "text"),
    [
        (b"", ""),
        (b"f", "Zg"),
        (b"fo", "Zm8"),
        (b"foo", "Zm9v"),
        (b"\xfb\xff", "-_8"),  # RFC 4648 §5: "-" and "_" instead of "+" and "/"
        (b"\xfb\xef\xbe", "----"),
        (b"\xff\xff\xff", "____"),
    ],
)
def test_b64url_encode_known_values(data: bytes, text: str) -> None:
    """Encoding is RFC 4648 §5 base64url without padding."""
    assert b64url_encode(data) == text
    assert b64url_decode(text) == data


def test_b64url_encode_never_pads() -> None:
    """No '=' for any length remainder (RFC 7515 §2)."""
    for n in range(10):
        assert "=" not in b64url_encode(bytes(range(n)))


@pytest.mark.parametrize(
    "text",
    [
        "Zg==",  # padding
        "Zm8=",
        "Zg=",
        "+/8",  # standard alphabet
        "ab+c",
        "ab/c",
        "Zm 9v",  # whitespace inside
        " Zm9v",
        "Zm9v\n",
        "Zm9v\t",
        "Zm9\r\nv",
        "Zm9v!",
        "Zm9v.",
        "Z",  # bad length: 4n+1 characters never occur
        "Zm9vY",
        "Zm9vé",  # non-ASCII
        "Zm9v\u00a0",
        "Ｚｍ９ｖ",  # fullwidth letters
        "\x00\x00",
    ],
)
def test_b64url_decode_rejects(text: str) -> None:
    """Padding, the standard alphabet, whitespace, bad lengths and non-ASCII raise B64Error."""
    with pytest.raises(B64Error):
        b64url_decode(text)


def test_b64error_is_value_error() -> None:
    """B64Error is a ValueError, so generic callers can catch it."""
    assert issubclass(B64Error, ValueError)
    assert issubclass(JSONError, ValueError)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_b64url_round_trip(data: bytes) -> None:
    """decode(encode(x)) == x, and the text uses only the URL-safe alphabet."""
    text = b64url_encode(data)
    assert set(text) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(text) % 4 != 1
    assert b64url_decode(text) == data
    assert text == base64.urlsafe_b64encode(data).decode().rstrip("=")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_b64url_decode_any_text_decodes_or_raises_b64error(text: str) -> None:
    """Any text either decodes (and then is pure base64url) or raises B64Error, nothing else."""
    try:
        data = b64url_decode(text)
    except B64Error:
        return
    assert isinstance(data, bytes)
    assert all(c.isascii() and (c.isalnum() or c in "-_") for c in text)
    assert len(data) == len(text) * 3 // 4


# -- canonical JSON ----------------------------------------------------------------------------

DIG1 = "021ACC5427ABEB9C533F3E4B652E7D463F5442CD54F17A03A27DF9B07F4619B2"
DIG2 = "4AADB9B13F82183B540212DF3E5D496B19E57CAB3E4B652E7D463F5442CD54F1"


def test_canonical_json_rfc8225_9_1_example() -> None:
    """RFC 8225 §9.1 example (with the RFC's missing '}' after the dest array restored)."""
    obj = {
        "orig": {"tn": "12155551212"},
        "mky": [{"dig": DIG1, "alg": "sha-256"}, {"alg": "sha-256", "dig": DIG2}],
        "iat": 1443208345,
        "dest": {"uri": ["sip:alice@example.com"]},
    }
    expected = (
        '{"dest":{"uri":["sip:alice@example.com"]},"iat":1443208345,"mky":'
        f'[{{"alg":"sha-256","dig":"{DIG1}"}},{{"alg":"sha-256","dig":"{DIG2}"}}],'
        '"orig":{"tn":"12155551212"}}'
    )
    assert canonical_json(obj) == expected.encode()


def test_canonical_json_rules() -> None:
    """No whitespace, sorted keys at every depth, lowercase literals, integers, raw UTF-8."""
    obj = {"b": [True, False, None], "a": {"z": 1, "y": "é"}, "A": -0}
    assert canonical_json(obj) == '{"A":0,"a":{"y":"é","z":1},"b":[true,false,null]}'.encode()


def test_canonical_json_refuses_nan() -> None:
    """NaN/Infinity are not JSON: serialization refuses them."""
    with pytest.raises(ValueError):
        canonical_json({"iat": float("nan")})
    with pytest.raises(ValueError):
        canonical_json({"iat": float("inf")})


def test_canonical_json_shaken_key_order() -> None:
    """RFC 8588 §8: SHAKEN claims come out as attest, dest, iat, orig, origid."""
    claims = {"origid": "u", "orig": {"tn": "1"}, "iat": 1, "dest": {"tn": ["2"]}, "attest": "A"}
    text = canonical_json(claims).decode()
    positions = [text.index(f'"{k}"') for k in ("attest", "dest", "iat", "orig", "origid")]
    assert positions == sorted(positions)


# -- strict JSON parsing -----------------------------------------------------------------------


def test_loads_strict_accepts_plain_json() -> None:
    """Ordinary JSON objects parse, surrounding whitespace allowed."""
    assert loads_strict(b'{"a":[1,"x",true,null]}') == {"a": [1, "x", True, None]}
    assert loads_strict(b' \n{"a" : 1}\t') == {"a": 1}
    assert loads_strict('{"n":"é"}'.encode()) == {"n": "é"}


@pytest.mark.parametrize(
    "data",
    [
        b'{"a":1,"a":2}',
        b'{"a":1,"a":1}',
        b'{"x":{"a":1,"a":2}}',
        b'[{"a":{"b":1,"b":1}}]',
        b'{"dest":{"tn":["1"],"tn":["2"]}}',
        b'{"a":1,"\\u0061":2}',  # the same name, escaped
    ],
)
def test_loads_strict_rejects_duplicate_keys_at_any_depth(data: bytes) -> None:
    """RFC 8225 §9: member names MUST NOT repeat within an object."""
    with pytest.raises(JSONError, match="duplicate"):
        loads_strict(data)


@pytest.mark.parametrize(
    "data", [b"NaN", b"Infinity", b"-Infinity", b'{"iat":NaN}', b"[1,Infinity]"]
)
def test_loads_strict_rejects_nan_and_infinity(data: bytes) -> None:
    """NaN and Infinity are Python extensions, not JSON (RFC 8259 §6)."""
    with pytest.raises(JSONError):
        loads_strict(data)


@pytest.mark.parametrize(
    "data",
    [
        b"1e400",
        b"-1e400",
        b"1E+400",
        b'{"iat":1e400}',
        b'{"a":[2.5e308]}',
        b"-" + b"9" * 400 + b".0",
    ],
)
def test_loads_strict_rejects_numbers_that_overflow(data: bytes) -> None:
    """A number beyond the double range would parse as inf, which is not JSON and cannot be
    written back (RFC 8259 §6 lets a parser limit the range): refused like NaN."""
    with pytest.raises(JSONError, match="out of range"):
        loads_strict(data)


@pytest.mark.parametrize(
    ("data", "value"),
    [(b"1.5e308", 1.5e308), (b"-0.0", -0.0), (b"1e-400", 0.0), (b"[1.25,-2E3]", [1.25, -2000.0])],
)
def test_loads_strict_accepts_finite_numbers(data: bytes, value: object) -> None:
    """Fractions and exponents within the double range (and underflow to 0) still parse."""
    assert loads_strict(data) == value


def _nested(depth: int, kind: str) -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    if kind == "object":
        return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)
    return b'{"a":[' * (depth // 2) + b"1" + b"]}" * (depth // 2)


@pytest.mark.parametrize("kind", ["array", "object", "mixed"])
def test_loads_strict_nesting_limit(kind: str) -> None:
    """Nesting up to MAX_DEPTH parses; one level more is refused (RFC 8259 §9 allows a limit),
    so no parsed document is too deep to be re-encoded."""
    assert loads_strict(_nested(MAX_DEPTH, kind)) is not None
    with pytest.raises(JSONError, match="nested deeper"):
        loads_strict(_nested(MAX_DEPTH + 2, kind))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 100, 990])
def test_loads_strict_refuses_depth_the_encoder_could_not_write(depth: int) -> None:
    """Claims nested ~990 deep used to parse and then make json.dumps raise RecursionError."""
    with pytest.raises(JSONError, match="nested"):
        loads_strict(b'{"a":' * depth + b"1" + b"}" * depth)


def test_loads_strict_brackets_inside_strings_do_not_count() -> None:
    """The bracket count is only a bound: brackets inside strings do not make a flat
    document too deep."""
    data = b'{"a":"' + b"[{" * 100 + b'"}'
    assert loads_strict(data) == {"a": "[{" * 100}


@pytest.mark.parametrize(
    "data",
    [b'{"a":"\xff"}', b'{"a":"\xc3"}', b'{"a":"\xed\xa0\x80"}', b"\xef\xbb\xbf{}", b"\x80"],
)
def test_loads_strict_rejects_invalid_utf8(data: bytes) -> None:
    """Invalid UTF-8 (bad bytes, truncated sequences, encoded surrogates, a BOM) is refused."""
    with pytest.raises(JSONError):
        loads_strict(data)


@pytest.mark.parametrize(
    "data",
    [b'"\\ud800"', b'{"x":"\\udc00"}', b'{"x":["a\\ud83d"]}', b'{"\\ud800":1}'],
)
def test_loads_strict_rejects_unpaired_surrogate_escapes(data: bytes) -> None:
    """An unpaired UTF-16 surrogate escape is not a character (RFC 8259 §8.2, RFC 7493 §2.1)."""
    with pytest.raises(JSONError):
        loads_strict(data)


def test_loads_strict_accepts_surrogate_pairs() -> None:
    """A correctly paired escape is the non-BMP character it encodes."""
    assert loads_strict(b'{"x":"\\ud83d\\ude00"}') == {"x": "\U0001f600"}


@pytest.mark.parametrize("data", [b"", b"{", b"{'a':1}", b'{"a":1}x', b"{} {}", b"[1,]", b"01"])
def test_loads_strict_rejects_malformed_json(data: bytes) -> None:
    """Anything that is not exactly one JSON text raises JSONError."""
    with pytest.raises(JSONError):
        loads_strict(data)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_loads_strict_deep_nesting_is_json_error(depth: int) -> None:
    """Pathological nesting gives JSONError, never RecursionError."""
    with pytest.raises(JSONError):
        loads_strict(b"[" * depth + b"]" * depth)
    with pytest.raises(JSONError):
        loads_strict(b'{"a":' * depth + b"1" + b"}" * depth)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_loads_strict_any_bytes_parse_or_json_error(data: bytes) -> None:
    """Arbitrary bytes either parse or raise JSONError, nothing else."""
    try:
        value = loads_strict(data)
    except JSONError:
        return
    assert json.loads(data) == value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_canonical_json_round_trips_through_strict_parser(value: object) -> None:
    """canonical_json output parses back strictly to the same value and is a fixed point."""
    data = canonical_json(value)
    assert loads_strict(data) == value
    assert canonical_json(loads_strict(data)) == data
    assert data == json.dumps(
        value, separators=(",", ":"), sort_keys=True, ensure_ascii=False
    ).encode("utf-8")


def test_b64url_encode_keeps_every_alphabet_character_at_the_end() -> None:
    """Only padding is stripped: a last character that is any of the 64 (here each value of
    the last sextet, "X" among them) stays."""
    for value in range(64):
        text = b64url_encode(bytes([0, 0, value]))
        assert len(text) == 4 and b64url_decode(text) == bytes([0, 0, value])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff", "not UTF-8"),
        (b'{"b":1,"a":1,"a":2}', "duplicate member name 'a'"),
        (b"[NaN]", "NaN is not valid JSON"),
        (b"-Infinity", "-Infinity is not valid JSON"),
        (b'["\\udc00"]', "unpaired UTF-16 surrogate escape in a string"),
        (b"[" * 100_000, "JSON nested too deeply"),
    ],
)
def test_loads_strict_error_messages(data: bytes, message: str) -> None:
    """Each refusal says what was wrong (the messages reach the verdict and the logs)."""
    with pytest.raises(JSONError) as exc:
        loads_strict(data)
    assert str(exc.value) == message


def test_loads_strict_malformed_message_carries_the_parser_detail() -> None:
    """Malformed JSON: "not JSON: " and where the parser stopped."""
    with pytest.raises(JSONError, match=r"^not JSON: Expecting value: line 1 column 6"):
        loads_strict(b'{"a":}')


@pytest.mark.parametrize(
    ("text", "message"),
    [("A", "not unpadded base64url (bad length)"), ("AB=C", "not unpadded base64url"),
     ("AAé", "not unpadded base64url")],
)  # fmt: skip
def test_b64url_decode_error_messages(text: str, message: str) -> None:
    """The two refusals of the decoder, by message."""
    with pytest.raises(B64Error) as exc:
        b64url_decode(text)
    assert str(exc.value) == message


def test_depth_limit_is_exactly_max_depth() -> None:
    """JSON nested exactly MAX_DEPTH levels parses; one level more is refused; a scalar, or a
    document with many brackets inside strings, is not deep."""
    from secsipid._codec import MAX_DEPTH, too_deep

    assert loads_strict(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None
    deeper = b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)
    with pytest.raises(JSONError, match=rf"^JSON nested deeper than {MAX_DEPTH} levels$"):
        loads_strict(deeper)
    assert not too_deep(1) and not too_deep("[[[[")
    assert not too_deep([[]] * 3) and too_deep(json.loads(deeper))
    assert loads_strict(b'["' + b"[" * 100 + b'"]') == ["[" * 100]
    nested: object = {}
    for _ in range(MAX_DEPTH - 1):
        nested = {"a": nested}
    assert not too_deep(nested) and too_deep({"b": nested})


def test_out_of_range_number_message() -> None:
    """A number too large for a float is refused and shown (its first 24 characters)."""
    with pytest.raises(JSONError) as exc:
        loads_strict(b"[1" + b"0" * 400 + b".5]")
    assert str(exc.value) == f"number 1{'0' * 23} is out of range"
