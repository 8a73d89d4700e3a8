"""TNAuthList (RFC 8226 §9) DER reading and writing, and the lab PKI built with it."""

from __future__ import annotations

import base64
import re

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from secsipid._pki import make_crl, make_lab_pki, make_self_signed
from secsipid._tnauthlist import TNAuthList, TNAuthListError, TNRange


def test_spc_vector_from_peeringhub_guide() -> None:
    """SPC 818H encodes to MAigBhYEODE4SA== (standards.md §7.6) and decodes back."""
    der = base64.b64decode("MAigBhYEODE4SA==")
    assert der == bytes.fromhex("3008a00616043831 3848".replace(" ", ""))
    assert TNAuthList(spcs=("818H",)).to_der() == der
    parsed = TNAuthList.from_der(der)
    assert parsed.spc == "818H" and not parsed.lists_numbers


def test_rfc8226_spc_1234_explicit_tags() -> None:
    """RFC 8226 Appendix A uses EXPLICIT tags: SPC 1234 is 30 08 a0 06 16 04 31 32 33 34."""
    assert TNAuthList(spcs=("1234",)).to_der().hex() == "3008a0061604" + b"1234".hex()


def test_ranges_and_numbers_cover() -> None:
    """Delegate-certificate scopes (RFC 9060): ranges and single TNs decide coverage."""
    t = TNAuthList(ranges=(TNRange("12155550100", 100),), tns=("12155559999",))
    back = TNAuthList.from_der(t.to_der())
    assert back == t and back.lists_numbers
    assert back.covers("12155550100") and back.covers("12155550199")
    assert not back.covers("12155550200") and not back.covers("1215555010")
    assert back.covers("12155559999") and not back.covers("12155559998")


def _tlv(tag: int, content: bytes) -> bytes:
    """A DER TLV, written here rather than with the module's own writer (X.690 §8.1.3)."""
    n = len(content)
    if n < 0x80:
        return bytes([tag, n]) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def _seq(*entries: bytes) -> str:
    return _tlv(0x30, b"".join(entries)).hex()


def _ia5(text: bytes) -> bytes:
    return _tlv(0x16, text)


def _range(*fields: bytes) -> bytes:
    return _tlv(0xA1, _tlv(0x30, b"".join(fields)))


def _int(raw: bytes) -> bytes:
    return _tlv(0x02, raw)


@pytest.mark.parametrize(
    ("hexder", "message"),
    [
        ("", "truncated DER"),
        ("30", "truncated DER"),
        ("3000", "TNAuthList is empty"),  # SEQUENCE SIZE (1..MAX)
        ("3003a00116", "truncated DER"),  # the [0] holds one byte: no room for a TLV
        ("3008a0061604313233", "truncated DER value"),  # length beyond the data
        ("3006a30416023132", "unknown TNEntry tag 0xa3"),  # choice [3]
        ("1f00", "multi-byte DER tags are not used by TNAuthList"),
        ("3080", "bad DER length"),  # indefinite length
        ("3081", "bad DER length"),  # the length byte is missing
        ("308180", "truncated DER value"),  # a long-form length that is there
        ("308400000010", "bad DER length"),  # 4 length bytes: more than a TNAuthList needs
        ("3081063004a0021601", "non-minimal DER length"),  # 6 fits the short form
        ("30820092" + _seq(_tlv(0xA0, _ia5(b"X" * 140)))[6:], "non-minimal DER length"),
        (_seq(_range(_ia5(b"1"), _int(b"\x01"))), "TN range count must be at least 2"),
        (_seq(_range(_ia5(b"1"), _int(b"\x01" + bytes(8)))), "TN range count must be at least 2"),
        (_seq(_range(_int(b"\x02"), _ia5(b"1"))), "TN range is not {IA5String, INTEGER}"),
        (_seq(_range(_ia5(b"1"), _ia5(b"2"))), "TN range is not {IA5String, INTEGER}"),
        (_seq(_range(_int(b"\x01"), _int(b"\x02"))), "TN range is not {IA5String, INTEGER}"),
        (_seq(_range(_ia5(b"1"), _int(b"\xff"))), "TN range count must be at least 2"),  # -1
        (_seq(_range(_ia5(b"1"), _int(b""))), "TN range count must be at least 2"),
        (_seq(_tlv(0xA1, _tlv(0x30, _ia5(b"1") + _int(b"\x02")) + b"\x00")),
         "TN range is not a SEQUENCE"),  # a byte after the SEQUENCE
        (_seq(_tlv(0xA1, _tlv(0x31, _ia5(b"1") + _int(b"\x02")))), "TN range is not a SEQUENCE"),
        (_seq(_tlv(0xA2, _ia5(b"1234:x"))), "not a TelephoneNumber: '1234:x'"),
        (_seq(_tlv(0xA0, _ia5(b"123"))) + "ff", "TNAuthList is not a single DER SEQUENCE"),
        (_tlv(0x31, _tlv(0xA0, _ia5(b"1"))).hex(), "TNAuthList is not a single DER SEQUENCE"),
        (_seq(_tlv(0xA0, _tlv(0x0C, b"123"))), "expected an IA5String"),  # a UTF8String
        (_seq(_tlv(0xA0, _ia5(b"12") + b"\xff")), "expected an IA5String"),  # a byte after
        (_seq(_tlv(0xA0, _ia5(b""))), "IA5String must be non-empty ASCII"),
        (_seq(_tlv(0xA0, _ia5(b"\x80"))), "IA5String must be non-empty ASCII"),
    ],
)  # fmt: skip
def test_malformed_der_is_a_clean_error(hexder: str, message: str) -> None:
    """Hostile encodings raise TNAuthListError naming what is wrong, never IndexError or a
    crash."""
    with pytest.raises(TNAuthListError) as exc:
        TNAuthList.from_der(bytes.fromhex(hexder))
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "hexder",
    [
        _seq(_tlv(0xA0, _ia5(b"1"))),  # the smallest: one SPC of one character
        _seq(_tlv(0xA0, _ia5(b"\x7f"))),  # IA5 goes up to 0x7f
        _seq(_tlv(0xA0, _ia5(b"X" * 124))),  # a SEQUENCE of 128 bytes: 30 81 80
        _seq(_tlv(0xA0, _ia5(b"X" * 300))),  # two length bytes
        _seq(_tlv(0xA0, _ia5(b"X" * 70_000))),  # three length bytes
        _seq(_range(_ia5(b"1"), _int(b"\x7f" + b"\xff" * 7))),  # the largest count: 8 bytes
        _seq(_range(_ia5(b"1"), _int(b"\x02"), _int(b"\x7b"), _tlv(0x01, b"\xff"))),  # "..."
    ],
)  # fmt: skip
def test_well_formed_der_parses(hexder: str) -> None:
    """Boundaries of the reader that are still valid: they parse and survive re-encoding."""
    parsed = TNAuthList.from_der(bytes.fromhex(hexder))
    assert TNAuthList.from_der(parsed.to_der()) == parsed


def test_entry_count_limit() -> None:
    """At most 10,000 entries: a hostile list cannot make the reader work without end."""
    tn = _tlv(0xA2, _ia5(b"1"))
    ok = TNAuthList.from_der(bytes.fromhex(_seq(tn * 10_000)))
    assert len(ok.tns) == 10_000
    with pytest.raises(TNAuthListError) as exc:
        TNAuthList.from_der(bytes.fromhex(_seq(tn * 10_001)))
    assert str(exc.value) == "TNAuthList has too many entries"


# Every refusal of TNAuthList.from_der, by its message (TNAuthListError has no code).
_DER_ERRORS = re.compile(
    "|".join(
        (
            r"TNAuthList is not a single DER SEQUENCE",
            r"TNAuthList has too many entries",
            r"TNAuthList is empty",
            r"TN range is not a SEQUENCE",
            r"TN range is not \{IA5String, INTEGER\}",
            r"TN range count must be at least 2",
            r"unknown TNEntry tag 0x[0-9a-f]{2}",
            r"truncated DER",
            r"truncated DER value",
            r"multi-byte DER tags are not used by TNAuthList",
            r"bad DER length",
            r"non-minimal DER length",
            r"expected an IA5String",
            r"IA5String must be non-empty ASCII",
            r"not a TelephoneNumber: .*",
        )
    )
)


@st.composite
def _der_like(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or a valid TNAuthList encoding with a few bytes changed, cut or added
    (so that the parser is driven past its first check)."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    spcs = draw(st.lists(st.from_regex(r"[0-9A-Z]{1,4}", fullmatch=True), max_size=2))
    tns = draw(st.lists(st.from_regex(r"[0-9]{1,15}", fullmatch=True), min_size=1, max_size=2))
    ranges = draw(st.lists(st.tuples(st.from_regex(r"[0-9]{4}", fullmatch=True),
                                     st.integers(2, 300)), max_size=2))  # fmt: skip
    data = bytearray(TNAuthList(tuple(spcs), tuple(TNRange(a, n) for a, n in ranges),
                                tuple(tns)).to_der())  # fmt: skip
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(data) - 1)) if data else 0
        op = draw(st.sampled_from(["set", "cut", "insert"]))
        if op == "set" and data:
            data[i] = draw(st.integers(0, 255))
        elif op == "cut":
            del data[i:]
        else:
            data[i:i] = bytes([draw(st.integers(0, 255))])
    return bytes(data)


@given(_der_like())
def test_any_bytes_parse_or_clean_error(data: bytes) -> None:
    """Property: any bytes either parse into a TNAuthList that survives its own encoding, or
    raise TNAuthListError with one of the parser's own messages (never another exception)."""
    try:
        parsed = TNAuthList.from_der(data)
    except TNAuthListError as exc:
        assert _DER_ERRORS.fullmatch(str(exc)), str(exc)
        return
    assert parsed.spcs or parsed.ranges or parsed.tns
    assert TNAuthList.from_der(parsed.to_der()) == parsed


@given(
    st.lists(st.from_regex(r"[0-9A-Z]{1,8}", fullmatch=True), max_size=2),
    st.lists(st.from_regex(r"[0-9#*]{1,15}", fullmatch=True), max_size=3),
    st.lists(st.tuples(st.from_regex(r"[0-9]{4,12}", fullmatch=True), st.integers(2, 10**6))),
)
def test_round_trip(spcs: list[str], tns: list[str], ranges: list[tuple[str, int]]) -> None:
    """Property: to_der/from_der round-trips any valid list."""
    t = TNAuthList(tuple(spcs), tuple(TNRange(s, c) for s, c in ranges), tuple(tns))
    if not (spcs or tns or ranges):
        return
    assert TNAuthList.from_der(t.to_der()) == t


def test_lab_pki_shape() -> None:
    """The lab chain follows ATIS-1000080's shape: CA flags, key usages, SPC only in the leaf."""
    from cryptography.hazmat.primitives.asymmetric import ec

    pki = make_lab_pki(spc="1234", crl_url="http://127.0.0.1/crl.der")
    bc = x509.BasicConstraints
    assert pki.root.extensions.get_extension_for_class(bc).value.ca
    assert pki.intermediate.extensions.get_extension_for_class(bc).value.ca
    leaf_bc = pki.leaf.extensions.get_extension_for_class(bc)
    assert leaf_bc.critical and not leaf_bc.value.ca
    ku = pki.leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert TNAuthList.from_certificate(pki.leaf) == TNAuthList(spcs=("1234",))
    assert TNAuthList.from_certificate(pki.intermediate) is None
    assert pki.leaf.issuer == pki.intermediate.subject
    assert pki.intermediate.issuer == pki.root.subject
    assert isinstance(pki.leaf.public_key(), ec.EllipticCurvePublicKey)
    pki.leaf.verify_directly_issued_by(pki.intermediate)
    pki.intermediate.verify_directly_issued_by(pki.root)
    assert pki.chain_pem.count(b"BEGIN CERTIFICATE") == 2
    crl = make_crl(pki.intermediate, pki.intermediate_key, [pki.leaf.serial_number])
    assert crl.is_signature_valid(pki.intermediate.public_key())
    assert crl.get_revoked_certificate_by_serial_number(pki.leaf.serial_number) is not None


def test_self_signed_without_spc_has_no_tnauthlist() -> None:
    """keygen without --spc makes no TNAuthList extension."""
    from cryptography.hazmat.primitives.asymmetric import ec

    cert = make_self_signed(ec.generate_private_key(ec.SECP256R1()))
    assert TNAuthList.from_certificate(cert) is None


def test_der_encoding_is_minimal() -> None:
    """DER (X.690 §10.1, §8.3.2): integers and lengths in their shortest form; a length of
    exactly 128 needs the long form (0x80 alone would mean "indefinite")."""
    for count, encoded in ((2, "020102"), (127, "02017f"), (128, "02020080"),
                           (255, "020200ff"), (256, "02020100")):  # fmt: skip
        der = TNAuthList(ranges=(TNRange("1215", count),)).to_der()
        assert der.endswith(bytes.fromhex(encoded)), (count, der.hex())
    spcs = tuple(f"S{i:03d}" for i in range(20))  # 20 entries of 8 bytes: 160 content bytes
    der = TNAuthList(spcs=spcs).to_der()
    assert der[:3] == bytes.fromhex("3081a0") and len(der) == 163
    # One SPC of n characters: IA5String n + 2 bytes, [0] n + 4, so the SEQUENCE holds n + 4.
    assert TNAuthList(spcs=("X" * 123,)).to_der()[:2] == bytes.fromhex("307f")
    assert TNAuthList(spcs=("X" * 124,)).to_der()[:3] == bytes.fromhex("308180")
    assert TNAuthList.from_der(TNAuthList(spcs=("X" * 124,)).to_der()).spc == "X" * 124


def test_telephone_number_rules() -> None:
    """TelephoneNumber: 1 to 15 characters from "0123456789#*" (RFC 8226 §9), all of them
    allowed together; one more character, or another one, is refused by name."""
    assert TNAuthList.from_der(TNAuthList(tns=("0123456789#*",)).to_der()).tns == ("0123456789#*",)
    assert TNAuthList.from_der(TNAuthList(tns=("1" * 15,)).to_der()).tns == ("1" * 15,)
    for bad in ("1" * 16, "12a"):
        with pytest.raises(TNAuthListError) as exc:
            TNAuthList.from_der(TNAuthList(tns=(bad,)).to_der())
        assert str(exc.value) == f"not a TelephoneNumber: {bad!r}"


def test_range_covers_only_numbers_of_its_length() -> None:
    """A range covers numbers of the same length as its start, digits only: a longer number
    with the same value (a leading zero) or one with '#'/'*' is outside, never an error."""
    r = TNRange("12155550100", 100)
    assert r.covers("12155550150")
    assert not r.covers("012155550150")
    assert not r.covers("1215555015#")
    assert not TNRange("1215555010#", 100).covers("12155550150")
