"""Lab certificates: a self-signed STI certificate, or a root -> intermediate -> leaf chain with
TNAuthList and a CRL, shaped after ATIS-1000080 §6.4.1 so that chain validation can be tried
locally.  For labs and tests only: real STI certificates come from an STI-CA.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ._tnauthlist import TNAuthList, TNRange

__all__ = ["LabPKI", "make_crl", "make_lab_pki", "make_self_signed", "write_key"]

# The SHAKEN certificate policy OID used by the US STI-PA (ATIS-1000080 v005, via zlint).
SHAKEN_POLICY_OID = x509.ObjectIdentifier("2.16.840.1.114569.1.1.3")


def _name(cn: str, org: str = "secsipid lab") -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=not ca,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePublicKey,
    not_before: dt.datetime,
    not_after: dt.datetime,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
    )


def _validity(
    days: int, not_before: dt.datetime | None, not_after: dt.datetime | None
) -> tuple[dt.datetime, dt.datetime]:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    start = not_before or now - dt.timedelta(hours=1)
    return start, not_after or now + dt.timedelta(days=days)


def _tnauth(
    spc: str | None, tns: Sequence[str], ranges: Sequence[tuple[str, int]]
) -> TNAuthList | None:
    if not (spc or tns or ranges):
        return None
    return TNAuthList((spc,) if spc else (), tuple(TNRange(s, c) for s, c in ranges), tuple(tns))


def make_self_signed(
    key: ec.EllipticCurvePrivateKey,
    *,
    cn: str = "SHAKEN lab",
    spc: str | None = None,
    days: int = 365,
) -> x509.Certificate:
    """A self-signed end-entity certificate for ``key`` (TNAuthList with ``spc`` if given)."""
    name = _name(cn)
    start, end = _validity(days, None, None)
    builder = (
        _builder(name, name, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
    )
    tnauth = _tnauth(spc, (), ())
    if tnauth is not None:
        builder = builder.add_extension(tnauth.extension(), critical=False)
    return builder.sign(key, hashes.SHA256())


@dataclass
class LabPKI:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate

    @property
    def chain_pem(self) -> bytes:
        """What an x5u URL serves: the leaf, then the intermediate (RFC 9060 §7 order)."""
        return pem(self.leaf) + pem(self.intermediate)

    def write(self, directory: str | os.PathLike[str]) -> dict[str, Path]:
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        files = {
            "root": out / "root.pem",
            "intermediate": out / "intermediate.pem",
            "cert": out / "cert.pem",
            "chain": out / "chain.pem",
            "key": out / "key.pem",
        }
        files["root"].write_bytes(pem(self.root))
        files["intermediate"].write_bytes(pem(self.intermediate))
        files["cert"].write_bytes(pem(self.leaf))
        files["chain"].write_bytes(self.chain_pem)
        write_key(self.leaf_key, files["key"])
        return files


def make_lab_pki(
    *,
    spc: str = "1234",
    tns: Sequence[str] = (),
    ranges: Sequence[tuple[str, int]] = (),
    days: int = 365,
    crl_url: str | None = None,
    leaf_not_before: dt.datetime | None = None,
    leaf_not_after: dt.datetime | None = None,
    tnauthlist: bool = True,
    root: tuple[ec.EllipticCurvePrivateKey, x509.Certificate] | None = None,
) -> LabPKI:
    """Root CA -> intermediate CA -> STI end-entity certificate with TNAuthList.

    ``crl_url`` adds a CRL Distribution Point to the intermediate and the leaf;
    ``leaf_not_before``/``leaf_not_after`` make expired or not-yet-valid leaves;
    ``tnauthlist=False`` leaves it out (to test that refusal); ``root`` reuses a root.
    """
    if root is None:
        root_key = ec.generate_private_key(ec.SECP256R1())
        root_name = _name("secsipid lab STI ROOT")
        start, end = _validity(days * 4, None, None)
        root_cert = (
            _builder(root_name, root_name, root_key.public_key(), start, end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_key_usage(ca=True), critical=True)
            .sign(root_key, hashes.SHA256())
        )
    else:
        root_key, root_cert = root
    cdp = (
        x509.CRLDistributionPoints(
            [x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url)], None, None, None)]
        )
        if crl_url
        else None
    )
    inter_key = ec.generate_private_key(ec.SECP256R1())
    inter_name = _name("secsipid lab STI-CA")
    start, end = _validity(days * 2, None, None)
    inter_builder = (
        _builder(inter_name, root_cert.subject, inter_key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(ca=True), critical=True)
        .add_extension(_aki(root_cert), critical=False)
    )
    if cdp is not None:
        inter_builder = inter_builder.add_extension(cdp, critical=False)
    inter = inter_builder.sign(root_key, hashes.SHA256())

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    start, end = _validity(days, leaf_not_before, leaf_not_after)
    leaf_builder = (
        _builder(_name(f"SHAKEN {spc}"), inter.subject, leaf_key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(ca=False), critical=True)
        .add_extension(_aki(inter), critical=False)
        .add_extension(
            x509.CertificatePolicies([x509.PolicyInformation(SHAKEN_POLICY_OID, None)]),
            critical=False,
        )
    )
    tnauth = _tnauth(spc, tns, ranges) if tnauthlist else None
    if tnauth is not None:
        leaf_builder = leaf_builder.add_extension(tnauth.extension(), critical=False)
    if cdp is not None:
        leaf_builder = leaf_builder.add_extension(cdp, critical=False)
    leaf = leaf_builder.sign(inter_key, hashes.SHA256())
    return LabPKI(root_key, root_cert, inter_key, inter, leaf_key, leaf)


def _aki(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def make_crl(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    revoked_serials: Iterable[int] = (),
    *,
    next_update_days: int = 7,
) -> x509.CertificateRevocationList:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - dt.timedelta(minutes=5))
        .next_update(now + dt.timedelta(days=next_update_days))
        .add_extension(_aki(issuer), critical=False)
        .add_extension(x509.CRLNumber(1), critical=False)
    )
    for serial in revoked_serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
    return builder.sign(issuer_key, hashes.SHA256())


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write_key(key: ec.EllipticCurvePrivateKey, path: str | os.PathLike[str]) -> None:
    """Write a private key as PKCS#8 PEM (RFC 8226 §6), readable by the owner only."""
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
