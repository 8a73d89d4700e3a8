"""Hostile certificates: what a caller who runs the ``info`` server can serve.

Each one is an STI end-entity certificate shaped like the lab leaf (``secsipid._pki``), built
with cryptography's ``CertificateBuilder`` and then changed by DER surgery on the encoded
TBSCertificate, and signed again by the lab intermediate, so that everything except the one
defect is right: the chain would validate to the lab root if the defect were ignored.
``tools/fuzz.py`` uses the same kit (DER reading, re-signing) for its certificate targets.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from secsipid._pki import SHAKEN_POLICY_OID, LabPKI
from secsipid._tnauthlist import TNAuthList

# -- DER ------------------------------------------------------------------------------------------


def der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, value: bytes) -> bytes:
    return bytes([tag]) + der_len(len(value)) + value


def read_tlv(data: bytes, pos: int = 0) -> tuple[int, int, int]:
    """(tag, start of the value, end of the value) of the DER TLV at ``pos`` (single-byte tags,
    definite lengths; raises ValueError on anything else)."""
    if pos + 2 > len(data):
        raise ValueError("truncated")
    tag, first = data[pos], data[pos + 1]
    pos += 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("bad length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated value")
    return tag, pos, pos + length


def split_certificate(der: bytes) -> tuple[bytes, bytes, bytes]:
    """Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }: the
    three encoded elements."""
    _, start, end = read_tlv(der)
    parts = []
    pos = start
    while pos < end:
        _, _, stop = read_tlv(der, pos)
        parts.append(der[pos:stop])
        pos = stop
    if len(parts) != 3:
        raise ValueError("not a Certificate SEQUENCE of three elements")
    return parts[0], parts[1], parts[2]


def sign_tbs(tbs: bytes, issuer_key: ec.EllipticCurvePrivateKey) -> bytes:
    """A Certificate for an encoded TBSCertificate, signed ecdsa-with-SHA256 by ``issuer_key``
    (whatever the TBS says: the point is to sign what was changed by hand)."""
    signature = issuer_key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    alg = tlv(0x30, tlv(0x06, bytes.fromhex("2a8648ce3d040302")))  # 1.2.840.10045.4.3.2
    return tlv(0x30, tbs + alg + tlv(0x03, b"\0" + signature))


def resign(der: bytes, issuer_key: ec.EllipticCurvePrivateKey, old: bytes, new: bytes) -> bytes:
    """``der`` with ``old`` replaced by ``new`` (once, same length) in its TBSCertificate, then
    signed again by ``issuer_key``."""
    tbs, _, _ = split_certificate(der)
    if tbs.count(old) != 1 or len(old) != len(new):
        raise ValueError(f"surgery needs one same-length match, found {tbs.count(old)}")
    return sign_tbs(tbs.replace(old, new), issuer_key)


# -- the lab-shaped leaf -----------------------------------------------------------------------

CN = "SHAKEN 1234"
_GARBAGE = b"\x04\x02zz"  # an OCTET STRING where each extension expects a SEQUENCE/BIT STRING
_TNAUTH_OTHER = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.27")  # same DER length as TNAuthList's


def leaf_der(
    pki: LabPKI,
    *,
    replace: dict[str, x509.ExtensionType] | None = None,
    extra: tuple[tuple[x509.ExtensionType, bool], ...] = (),
) -> bytes:
    """The lab leaf's twin (same key, issuer and extensions; CN a UTF8String so that DER
    surgery finds it), signed by the lab intermediate.  ``replace`` swaps the named extension
    (``bc``, ``ku``, ``aki``, ``cp``, ``tnauth``) for another value; ``extra`` adds some."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    inter_ski = pki.intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    extensions: dict[str, tuple[x509.ExtensionType, bool]] = {
        "bc": (x509.BasicConstraints(ca=False, path_length=None), True),
        "ku": (
            x509.KeyUsage(True, False, False, False, False, False, False, False, False),
            True,
        ),
        "aki": (
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(inter_ski.value),
            False,
        ),
        "cp": (x509.CertificatePolicies([x509.PolicyInformation(SHAKEN_POLICY_OID, None)]), False),
        "tnauth": (TNAuthList(spcs=("1234",)).extension(), False),
    }
    for name, value in (replace or {}).items():
        extensions[name] = (value, extensions[name][1])
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
                    x509.NameAttribute(NameOID.COMMON_NAME, CN, _ASN1Type.UTF8String),
                ]
            )
        )
        .issuer_name(pki.intermediate.subject)
        .public_key(pki.leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    for value, critical in (*extensions.values(), *extra):
        builder = builder.add_extension(value, critical)
    return builder.sign(pki.intermediate_key, hashes.SHA256()).public_bytes(Encoding.DER)


def _garbage(oid: x509.ObjectIdentifier) -> x509.UnrecognizedExtension:
    return x509.UnrecognizedExtension(oid, _GARBAGE)


# -- the catalogue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Hostile:
    """One hostile certificate chain: the PEM body an x5u server sends (leaf, intermediate)."""

    name: str
    leaf: bytes  # DER
    intermediate: bytes  # DER

    @property
    def chain_pem(self) -> bytes:
        return b"".join(_pem(der) for der in (self.leaf, self.intermediate))


def _pem(der: bytes) -> bytes:
    """PEM written by hand: cryptography cannot load (so cannot re-encode) all of them."""
    b64 = base64.b64encode(der)
    lines = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return b"-----BEGIN CERTIFICATE-----\n" + lines + b"\n-----END CERTIFICATE-----\n"


def _v4(pki: LabPKI) -> bytes:
    # version [0] EXPLICIT INTEGER: a0 03 02 01 02 is v3; 03 would be "v4" (RFC 5280 §4.1.2.1).
    return resign(
        leaf_der(pki), pki.intermediate_key, b"\xa0\x03\x02\x01\x02", b"\xa0\x03\x02\x01\x03"
    )


def _garbage_ext(name: str, oid: x509.ObjectIdentifier) -> Callable[[LabPKI], bytes]:
    def build(pki: LabPKI) -> bytes:
        if name in ("bc", "ku", "aki", "cp"):
            return leaf_der(pki, replace={name: _garbage(oid)})
        return leaf_der(pki, extra=((_garbage(oid), False),))

    return build


def _tnauth_twice(pki: LabPKI) -> bytes:
    # The builder refuses a repeated extension: add TNAuthList under a neighbouring OID, then
    # rename it (RFC 5280 §4.2: "MUST NOT include more than one instance").
    second = x509.UnrecognizedExtension(_TNAUTH_OTHER, TNAuthList(spcs=("9999",)).to_der())
    der = leaf_der(pki, extra=((second, False),))
    return resign(
        der, pki.intermediate_key, bytes.fromhex("06082b0601050507011b"),
        bytes.fromhex("06082b0601050507011a"),
    )  # fmt: skip


def _subject_tag(tag: int) -> Callable[[LabPKI], bytes]:
    def build(pki: LabPKI) -> bytes:
        old = bytes([0x0C, len(CN)]) + CN.encode()
        return resign(leaf_der(pki), pki.intermediate_key, old, bytes([tag, len(CN)]) + CN.encode())

    return build


def _issuer_tag(pki: LabPKI) -> bytes:
    # The issuer's CN (a UTF8String, tag 0x0c) as a GeneralString (0x1b).
    cn = pki.intermediate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(cn, str)
    old = bytes([0x0C, len(cn)]) + cn.encode()
    return resign(leaf_der(pki), pki.intermediate_key, old, bytes([0x1B, len(cn)]) + cn.encode())


def _unknown_key_algorithm(pki: LabPKI) -> bytes:
    # SubjectPublicKeyInfo algorithm id-ecPublicKey (1.2.840.10045.2.1) -> 1.2.840.10045.2.9.
    ec_oid = bytes.fromhex("06072a8648ce3d0201")
    return resign(leaf_der(pki), pki.intermediate_key, ec_oid, ec_oid[:-1] + b"\x09")


def _bad_intermediate(pki: LabPKI) -> bytes:
    """The lab intermediate again, with its AKI replaced by garbage, signed by the root."""
    inter_der = pki.intermediate.public_bytes(Encoding.DER)
    aki = pki.intermediate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    value = aki.value.public_bytes()  # the extnValue contents
    return resign(inter_der, pki.root_key, value, b"\x04" + bytes([len(value) - 2]) + value[2:])


_OIDS = {
    "bc": x509.oid.ExtensionOID.BASIC_CONSTRAINTS,
    "ku": x509.oid.ExtensionOID.KEY_USAGE,
    "aki": x509.oid.ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    "cp": x509.oid.ExtensionOID.CERTIFICATE_POLICIES,
    "cdp": x509.oid.ExtensionOID.CRL_DISTRIBUTION_POINTS,
    "san": x509.oid.ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    "eku": x509.oid.ExtensionOID.EXTENDED_KEY_USAGE,
    "aia": x509.oid.ExtensionOID.AUTHORITY_INFORMATION_ACCESS,
    "nc": x509.oid.ExtensionOID.NAME_CONSTRAINTS,
}

# Each malformed leaf: the list (v4, garbage KeyUsage/BasicConstraints/AKI/CDP,
# TNAuthList twice, a subject string with an unusual tag) and more of the same kinds.
MALFORMED_LEAVES: dict[str, Callable[[LabPKI], bytes]] = {
    "version-v4": _v4,
    **{f"garbage-{name}": _garbage_ext(name, oid) for name, oid in _OIDS.items()},
    "tnauthlist-twice": _tnauth_twice,
    "subject-videotexstring": _subject_tag(0x15),
    "subject-generalstring": _subject_tag(0x1B),
    "subject-null": _subject_tag(0x05),
    # A BIT STRING value for CN: cryptography raises TypeError ("oid must be
    # X500_UNIQUE_IDENTIFIER for BitString type"); found by tools/fuzz.py.
    "subject-bitstring": _subject_tag(0x03),
    "issuer-generalstring": _issuer_tag,
    "unknown-key-algorithm": _unknown_key_algorithm,
}


def hostile_chains(pki: LabPKI) -> dict[str, Hostile]:
    """Every malformed chain (malformed leaf, or a malformed intermediate behind a good leaf),
    plus ``control``: the same construction without a defect, which must verify."""
    inter = pki.intermediate.public_bytes(Encoding.DER)
    chains = {name: Hostile(name, build(pki), inter) for name, build in MALFORMED_LEAVES.items()}
    chains["intermediate-garbage-aki"] = Hostile(
        "intermediate-garbage-aki", leaf_der(pki), _bad_intermediate(pki)
    )
    chains["control"] = Hostile("control", leaf_der(pki), inter)
    return chains


# -- CRLs --------------------------------------------------------------------------------------


def hostile_crls(
    issuer: x509.Certificate, issuer_key: ec.EllipticCurvePrivateKey
) -> dict[str, bytes]:
    """Malformed CRLs (DER) from ``issuer``, signed by it, as a distribution point could serve
    them: an issuer name string with an unusual tag (cryptography: KeyError), version v6
    (InvalidVersion), a garbage CRL extension and a garbage entry extension (ValueError)."""
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)

    def crl(
        ext: x509.ExtensionType | None = None, entry_ext: x509.ExtensionType | None = None
    ) -> bytes:
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(issuer.subject)
            .last_update(now - dt.timedelta(minutes=5))
            .next_update(now + dt.timedelta(days=1))
        )
        if ext is not None:
            builder = builder.add_extension(ext, critical=False)
        entry = x509.RevokedCertificateBuilder().serial_number(12345).revocation_date(now)
        if entry_ext is not None:
            entry = entry.add_extension(entry_ext, critical=False)
        builder = builder.add_revoked_certificate(entry.build())
        return builder.sign(issuer_key, hashes.SHA256()).public_bytes(Encoding.DER)

    good = crl()
    tbs, _, _ = split_certificate(good)  # CertificateList has the same three-part shape
    cn = issuer.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert isinstance(cn, str)
    name = bytes([0x0C, len(cn)]) + cn.encode()
    # TBSCertList starts SEQUENCE { version INTEGER 1 (v2) ...: 02 01 01 -> 02 01 05.
    _, start, _ = read_tlv(tbs)
    assert tbs[start : start + 3] == b"\x02\x01\x01"
    v6 = tbs[:start] + b"\x02\x01\x05" + tbs[start + 3 :]
    return {
        "crl-issuer-generalstring": sign_tbs(
            tbs.replace(name, bytes([0x1B, len(cn)]) + cn.encode()), issuer_key
        ),
        "crl-version-v6": sign_tbs(v6, issuer_key),
        "crl-garbage-crl-number": crl(ext=_garbage(x509.oid.ExtensionOID.CRL_NUMBER)),
        "crl-garbage-entry-reason": crl(
            entry_ext=_garbage(x509.oid.CRLEntryExtensionOID.CRL_REASON)
        ),
    }
