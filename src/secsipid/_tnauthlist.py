"""The TNAuthList certificate extension (RFC 8226 §9, OID 1.3.6.1.5.5.7.1.26).

::

    TNAuthorizationList ::= SEQUENCE SIZE (1..MAX) OF TNEntry
    TNEntry ::= CHOICE {
      spc   [0] ServiceProviderCode,          -- IA5String
      range [1] TelephoneNumberRange,         -- SEQUENCE { start TelephoneNumber,
                                              --   count INTEGER (2..MAX), ... }
      one   [2] TelephoneNumber               -- IA5String (SIZE (1..15)) (FROM ("0123456789#*"))
    }

The ASN.1 module is ``DEFINITIONS EXPLICIT TAGS`` (RFC 8226 Appendix A), so each choice is a
constructed context tag wrapping the universal type: SPC "1234" is
``30 08 a0 06 16 04 31 32 33 34``.

``cryptography`` hands us unknown extensions as raw bytes and has no ASN.1 toolkit for custom
types, so this module carries a small, strict DER reader and writer for exactly this structure
(definite lengths, minimal encodings, bounded sizes).  Hostile certificates get
:class:`TNAuthListError`, never an IndexError.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

__all__ = ["OID_TN_AUTH_LIST", "TNAuthList", "TNAuthListError", "TNRange"]

OID_TN_AUTH_LIST = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")
_TN_CHARS = frozenset("0123456789#*")
_MAX_ENTRIES = 10_000


class TNAuthListError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TNRange:
    """``count`` consecutive numbers from ``start`` (same length: RFC 8226 §9)."""

    start: str
    count: int

    def covers(self, tn: str) -> bool:
        if len(tn) != len(self.start) or not tn.isdigit() or not self.start.isdigit():
            return False
        first = int(self.start)
        return first <= int(tn) < first + self.count


@dataclass(frozen=True, slots=True)
class TNAuthList:
    spcs: tuple[str, ...] = ()
    ranges: tuple[TNRange, ...] = ()
    tns: tuple[str, ...] = ()

    @property
    def spc(self) -> str | None:
        """The Service Provider Code (ATIS-1000080 requires exactly one in an STI cert)."""
        return self.spcs[0] if self.spcs else None

    @property
    def lists_numbers(self) -> bool:
        """True for a certificate scoped to TNs or ranges (RFC 9060 delegate certificates)."""
        return bool(self.ranges or self.tns)

    def covers(self, tn: str) -> bool:
        """Whether a canonical TN is in the listed TNs or ranges."""
        return tn in self.tns or any(r.covers(tn) for r in self.ranges)

    # -- DER ---------------------------------------------------------------------------------

    @classmethod
    def from_der(cls, data: bytes) -> TNAuthList:
        tag, body, rest = _read(data, 0)
        if tag != 0x30 or rest != len(data):
            raise TNAuthListError("TNAuthList is not a single DER SEQUENCE")
        spcs: list[str] = []
        ranges: list[TNRange] = []
        tns: list[str] = []
        pos, count = 0, 0
        while pos < len(body):
            tag, inner, pos = _read(body, pos)
            count += 1
            if count > _MAX_ENTRIES:
                raise TNAuthListError("TNAuthList has too many entries")
            if tag == 0xA0:
                spcs.append(_ia5(inner))
            elif tag == 0xA1:
                seq_tag, seq, end = _read(inner, 0)
                if seq_tag != 0x30 or end != len(inner):
                    raise TNAuthListError("TN range is not a SEQUENCE")
                s_tag, s_val, p = _read(seq, 0)
                c_tag, c_val, p = _read(seq, p)  # extension fields ("...") may follow
                if s_tag != 0x16 or c_tag != 0x02:
                    raise TNAuthListError("TN range is not {IA5String, INTEGER}")
                start = _tn(_ia5_bytes(s_val))
                n = int.from_bytes(c_val, "big", signed=True) if c_val else -1
                if n < 2 or len(c_val) > 8:
                    raise TNAuthListError("TN range count must be at least 2")
                ranges.append(TNRange(start, n))
            elif tag == 0xA2:
                tns.append(_tn(_ia5(inner)))
            else:
                raise TNAuthListError(f"unknown TNEntry tag 0x{tag:02x}")
        if count == 0:
            raise TNAuthListError("TNAuthList is empty")
        return cls(tuple(spcs), tuple(ranges), tuple(tns))

    @classmethod
    def from_certificate(cls, cert: x509.Certificate) -> TNAuthList | None:
        """The certificate's TNAuthList, or None when it has none.  Raises on a bad one."""
        try:
            ext = cert.extensions.get_extension_for_oid(OID_TN_AUTH_LIST)
        except x509.ExtensionNotFound:
            return None
        value = ext.value
        if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover
            raise TNAuthListError("unexpected TNAuthList representation")
        return cls.from_der(value.value)

    def to_der(self) -> bytes:
        entries = b"".join(_tlv(0xA0, _tlv(0x16, spc.encode("ascii"))) for spc in self.spcs)
        for r in self.ranges:
            seq = _tlv(0x16, r.start.encode("ascii")) + _tlv(0x02, _der_int(r.count))
            entries += _tlv(0xA1, _tlv(0x30, seq))
        entries += b"".join(_tlv(0xA2, _tlv(0x16, tn.encode("ascii"))) for tn in self.tns)
        return _tlv(0x30, entries)

    def extension(self) -> x509.UnrecognizedExtension:
        return x509.UnrecognizedExtension(OID_TN_AUTH_LIST, self.to_der())


def _read(data: bytes, pos: int) -> tuple[int, bytes, int]:
    """One DER TLV at ``pos``: (tag, value, position after it)."""
    if pos + 2 > len(data):
        raise TNAuthListError("truncated DER")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if tag & 0x1F == 0x1F:
        raise TNAuthListError("multi-byte DER tags are not used by TNAuthList")
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 3 or pos + n > len(data):
            raise TNAuthListError("bad DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or (n > 1 and data[pos] == 0):
            raise TNAuthListError("non-minimal DER length")
        pos += n
    end = pos + length
    if end > len(data):
        raise TNAuthListError("truncated DER value")
    return tag, data[pos:end], end


def _ia5(inner: bytes) -> str:
    tag, value, end = _read(inner, 0)
    if tag != 0x16 or end != len(inner):
        raise TNAuthListError("expected an IA5String")
    return _ia5_bytes(value)


def _ia5_bytes(value: bytes) -> str:
    if not value or any(b > 0x7F for b in value):
        raise TNAuthListError("IA5String must be non-empty ASCII")
    return value.decode("ascii")


def _tn(value: str) -> str:
    if len(value) > 15 or not set(value) <= _TN_CHARS:
        raise TNAuthListError(f"not a TelephoneNumber: {value!r}")
    return value


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def _tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + _len(len(value)) + value


def _der_int(n: int) -> bytes:
    return n.to_bytes(n.bit_length() // 8 + 1, "big", signed=True)
