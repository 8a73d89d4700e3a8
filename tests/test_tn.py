"""Canonical telephone numbers (RFC 8224 §8.3) and URIs (RFC 8224 §8.5)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from secsipid import canonical_tn, canonical_uri


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("12155551212", "12155551212"),
        ("+12155551212", "12155551212"),
        ("+1 (215) 555-1212", "12155551212"),
        ("+1.215.555.1212", "12155551212"),
        ("sip:+1-215-555-1212;npdi@host", "12155551212"),
        ("sip:+1-215-555-1212;npdi;rn=+12155550000@host;user=phone", "12155551212"),
        ("sip:+12155551212@example.com;user=phone", "12155551212"),
        ("sip:+12155551212:secret@example.com", "12155551212"),
        ("SIP:+12155551212@example.com", "12155551212"),
        ("sips:+12155551212@example.com", "12155551212"),
        ("tel:+1-215-555-1212", "12155551212"),
        ("tel:+1-215-555-1212;phone-context=x", "12155551212"),
        ("TEL:5551212;phone-context=+1215", "5551212"),
        ('"A" <sip:+12155551212@h>;tag=1', "12155551212"),
        ("<sip:+12155551212@h>", "12155551212"),
        ("Alice <tel:+1-215-555-1212>;tag=abc", "12155551212"),
        ('"Support 24/7" <sip:+12155551212@h>', "12155551212"),
        ("*67#1234", "*67#1234"),
        ("+1 (215) 555-1212#*", "12155551212#*"),
        ("sip:%2B12155551212@host", "12155551212"),
        ("sip:%2b1-215-555-1212@host", "12155551212"),
        ("sip:%2312%2A@host", "#12*"),
        ("sip:alice@host", ""),
        ("", ""),
        ("+()-. ", ""),
    ],
)
def test_canonical_tn(value: str, expected: str) -> None:
    """RFC 8224 §8.3: drop '+', dashes, parentheses and other non-digits, keep '#' and '*'."""
    assert canonical_tn(value) == expected


def test_canonical_tn_display_name_with_angle_bracket() -> None:
    """A quoted display name may contain '<' (RFC 3261 §25.1 quoted-string); the number comes
    from the addr-spec in the real angle brackets."""
    assert canonical_tn('"Alice <x>" <sip:+12155551212@h>;tag=1') == "12155551212"


def test_canonical_uri_display_name_with_angle_bracket() -> None:
    """The addr-spec of a name-addr whose quoted display name contains '<' and '>'."""
    assert canonical_uri('"Alice <x>" <sip:Alice@Example.com>;tag=1') == "sip:alice@example.com"


def test_canonical_tn_ignores_non_ascii_digits() -> None:
    """Only ASCII 0-9 are DIGIT (RFC 5234): Arabic-Indic or fullwidth digits are dropped."""
    assert canonical_tn("١٢٣") == ""
    assert canonical_tn("１２３") == ""
    assert canonical_tn("1²3") == "13"


_TN = re.compile(r"[0-9#*]*")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_canonical_tn_output_alphabet_and_idempotent(value: str) -> None:
    """For any input the output matches [0-9#*]* and canonicalizing again changes nothing."""
    out = canonical_tn(value)
    assert _TN.fullmatch(out)
    assert canonical_tn(out) == out


@settings(max_examples=150, deadline=None)
@given(
    st.text(alphabet="0123456789#*", min_size=1, max_size=15),
    st.sampled_from(
        ["{}", "+{}", "sip:+{}@h", "sips:{}@h;user=phone", "tel:+{}", '"X" <sip:{}@h>']
    ),
)
def test_canonical_tn_extracts_number_from_any_wrapper(number: str, template: str) -> None:
    """A canonical number wrapped in any supported notation comes back unchanged."""
    value = template.format(number.replace("#", "%23") if "sip" in template else number)
    assert canonical_tn(value) == number


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sip:alice@example.com", "sip:alice@example.com"),
        ("SIP:Alice@Example.COM", "sip:alice@example.com"),
        ("sips:bob@example.com", "sips:bob@example.com"),
        ("sip:alice:secret@example.com", "sip:alice@example.com"),
        ("sip:alice@example.com:5060", "sip:alice@example.com"),
        ("sip:alice@example.com;transport=tcp", "sip:alice@example.com"),
        ("sip:alice@example.com?subject=hi", "sip:alice@example.com"),
        ("sip:alice:pw@Example.COM:5061;transport=tls?x=y", "sip:alice@example.com"),
        ('"Alice" <sip:alice@example.com>;tag=1', "sip:alice@example.com"),
        ("sip:%61lice@example.com", "sip:alice@example.com"),
        ("sip:%41lice@example.com", "sip:alice@example.com"),
        ("sip:%7Euser@example.com", "sip:~user@example.com"),
        ("sip:a%2Db@example.com", "sip:a-b@example.com"),
        ("sip:alice@[2001:db8::1]:5060", "sip:alice@[2001:db8::1]"),
        ("sip:example.com", "sip:example.com"),
        ("tel:+12155551212", ""),
        ("mailto:alice@example.com", ""),
        ("alice@example.com", ""),
    ],
)
def test_canonical_uri(value: str, expected: str) -> None:
    """RFC 8224 §8.5: scheme:user@host, lowercased, without password, port, params, headers."""
    assert canonical_uri(value) == expected


def test_canonical_uri_keeps_reserved_escapes_encoded() -> None:
    """Only unreserved characters are decoded; an escaped ':' or '@' stays escaped."""
    out = canonical_uri("sip:a%3Ab%40c@example.com")
    assert out.startswith("sip:a%3")
    assert "@example.com" in out
    assert out.count("@") == 1
    assert out.lower() == "sip:a%3ab%40c@example.com"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_canonical_uri_is_idempotent(value: str) -> None:
    """canonical_uri(canonical_uri(x)) == canonical_uri(x), and the result is sip/sips or ''."""
    out = canonical_uri(value)
    assert out == "" or out.startswith(("sip:", "sips:"))
    assert canonical_uri(out) == out
