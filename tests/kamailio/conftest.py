"""Fixtures for the tests with real Kamailio and sipp (loopback only).

Set ``SECSIPID_SKIP_KAMAILIO=1`` to skip them; otherwise a missing program or module is a
failure that names the Debian package to install.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import kamharness as kh
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kamailio: runs real Kamailio and sipp processes (SECSIPID_SKIP_KAMAILIO=1 skips)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kamailio" in item.keywords and kh.skip_requested():
            item.add_marker(pytest.mark.skip(reason="SECSIPID_SKIP_KAMAILIO=1"))


@pytest.fixture(scope="session")
def kamailio_ready() -> str:
    """Kamailio, its modules and sipp are installed; returns Kamailio's PYTHONPATH."""
    if kh.skip_requested():
        pytest.skip("SECSIPID_SKIP_KAMAILIO=1")
    try:
        kh.find_program("kamailio")
        kh.find_program("sipp")
        kh.check_module("app_python3.so")
        kh.check_module("secsipid.so")
        return kh.kamailio_pythonpath()
    except kh.MissingError as exc:
        pytest.fail(str(exc))


@dataclass(frozen=True)
class Pki:
    dir: Path
    key: Path  # SEC1 PEM private key
    cert: Path  # self-signed certificate
    pub: Path  # PEM public key
    cert_pem: bytes
    other_key: Path  # a second key: its signatures do not verify with ``cert``


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    other = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SHAKEN kamailio test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    _write_key(key, d / "key.pem")
    _write_key(other, d / "other.pem")
    (d / "cert.pem").write_bytes(cert_pem)
    (d / "pub.pem").write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    for p in d.iterdir():
        p.chmod(0o644)
    d.chmod(0o755)
    return Pki(d, d / "key.pem", d / "cert.pem", d / "pub.pem", cert_pem, d / "other.pem")


@pytest.fixture
def procs() -> Iterator[list[kh.Kamailio | kh.Sipp]]:
    """Processes a test started; all stopped (by PID) at the end, whatever happened."""
    started: list[kh.Kamailio | kh.Sipp] = []
    yield started
    kh.stop_all(list(reversed(started)))
