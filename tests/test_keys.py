"""Loading keys and certificates (EC P-256 only, ES256) and the per-file cache."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from helpers import KeyFiles, make_self_signed
from secsipid import (
    Credential,
    KeyLoadError,
    credential_from_file,
    load_credential,
    load_private_key,
    private_key_from_file,
)

ENC = serialization.Encoding
FMT = serialization.PrivateFormat
SPKI = serialization.PublicFormat.SubjectPublicKeyInfo
NONE = serialization.NoEncryption()

# What "openssl ecparam -name prime256v1 -genkey" writes before the key.
EC_PARAMETERS = b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def p384_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP384R1())


def _same_key(a: ec.EllipticCurvePrivateKey, b: ec.EllipticCurvePrivateKey) -> bool:
    return a.private_numbers() == b.private_numbers()


def _code(exc: pytest.ExceptionInfo[KeyLoadError]) -> str:
    return exc.value.code


# -- private keys ------------------------------------------------------------------------------


def test_private_key_sec1_pem(private_key: ec.EllipticCurvePrivateKey) -> None:
    """SEC1 'EC PRIVATE KEY' PEM loads."""
    pem = private_key.private_bytes(ENC.PEM, FMT.TraditionalOpenSSL, NONE)
    assert pem.startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert _same_key(load_private_key(pem), private_key)


def test_private_key_pkcs8_pem(private_key: ec.EllipticCurvePrivateKey) -> None:
    """PKCS#8 'PRIVATE KEY' PEM (RFC 8226 §6 recommends PKCS#8) loads."""
    pem = private_key.private_bytes(ENC.PEM, FMT.PKCS8, NONE)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert _same_key(load_private_key(pem), private_key)


def test_private_key_with_ec_parameters_block(private_key: ec.EllipticCurvePrivateKey) -> None:
    """openssl ecparam -genkey output: an 'EC PARAMETERS' block, then the key."""
    pem = EC_PARAMETERS + private_key.private_bytes(ENC.PEM, FMT.TraditionalOpenSSL, NONE)
    assert _same_key(load_private_key(pem), private_key)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_private_key_from_openssl_ecparam_genkey(tmp_path: Path) -> None:
    """The real `openssl ecparam -name prime256v1 -genkey` output (parameters + SEC1) loads."""
    path = tmp_path / "ec.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-out", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )
    data = path.read_bytes()
    assert data.startswith(b"-----BEGIN EC PARAMETERS-----")
    assert b"-----BEGIN EC PRIVATE KEY-----" in data
    key = private_key_from_file(path)
    assert isinstance(key.curve, ec.SECP256R1)


def test_private_key_der(private_key: ec.EllipticCurvePrivateKey) -> None:
    """DER SEC1 and DER PKCS#8 load too."""
    for fmt in (FMT.TraditionalOpenSSL, FMT.PKCS8):
        assert _same_key(
            load_private_key(private_key.private_bytes(ENC.DER, fmt, NONE)), private_key
        )


def test_private_key_crlf_pem(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A PEM file with CRLF line ends (edited on Windows) loads."""
    pem = private_key.private_bytes(ENC.PEM, FMT.PKCS8, NONE).replace(b"\n", b"\r\n")
    assert _same_key(load_private_key(pem), private_key)


def test_encrypted_pkcs8(private_key: ec.EllipticCurvePrivateKey) -> None:
    """Encrypted PKCS#8: loads with its password, else key-encrypted; wrong one: key-invalid."""
    pem = private_key.private_bytes(
        ENC.PEM, FMT.PKCS8, serialization.BestAvailableEncryption(b"s3cret")
    )
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert _same_key(load_private_key(pem, b"s3cret"), private_key)
    with pytest.raises(KeyLoadError) as exc:
        load_private_key(pem)
    assert _code(exc) == "key-encrypted"
    with pytest.raises(KeyLoadError) as exc:
        load_private_key(pem, b"wrong")
    assert _code(exc) == "key-invalid"


def test_password_for_unencrypted_key(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A password given for a plain key is a configuration error: key-invalid."""
    pem = private_key.private_bytes(ENC.PEM, FMT.PKCS8, NONE)
    with pytest.raises(KeyLoadError) as exc:
        load_private_key(pem, b"pw")
    assert _code(exc) == "key-invalid"


@pytest.mark.parametrize(
    ("fmt", "label"),
    [(FMT.PKCS8, b"PRIVATE KEY"), (FMT.TraditionalOpenSSL, b"RSA PRIVATE KEY")],
    ids=["pkcs8", "pkcs1"],
)
def test_private_key_rsa_is_not_ec(
    rsa_key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat, label: bytes
) -> None:
    """An RSA private key, PKCS#8 or PKCS#1 ('openssl genrsa' output): key-not-ec."""
    pem = rsa_key.private_bytes(ENC.PEM, fmt, NONE)
    assert pem.startswith(b"-----BEGIN " + label + b"-----")
    with pytest.raises(KeyLoadError) as exc:
        load_private_key(pem)
    assert _code(exc) == "key-not-ec"


def test_private_key_p384_wrong_curve(p384_key: ec.EllipticCurvePrivateKey) -> None:
    """An EC key on P-384: key-wrong-curve (ES256 needs P-256)."""
    for fmt in (FMT.PKCS8, FMT.TraditionalOpenSSL):
        with pytest.raises(KeyLoadError) as exc:
            load_private_key(p384_key.private_bytes(ENC.PEM, fmt, NONE))
        assert _code(exc) == "key-wrong-curve"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"\x30\x03\x02\x01\x00",
        b"-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI",  # truncated
        EC_PARAMETERS,  # parameters only, no key
    ],
)
def test_private_key_garbage(data: bytes) -> None:
    """Anything that is not a private key: key-invalid."""
    with pytest.raises(KeyLoadError) as exc:
        load_private_key(data)
    assert _code(exc) == "key-invalid"


def test_private_key_from_public_pem(public_key: ec.EllipticCurvePublicKey) -> None:
    """A public key where a private one is needed: key-invalid."""
    with pytest.raises(KeyLoadError) as exc:
        load_private_key(public_key.public_bytes(ENC.PEM, SPKI))
    assert _code(exc) == "key-invalid"


def test_private_key_str_is_type_error(private_key: ec.EllipticCurvePrivateKey) -> None:
    """Key data must be bytes (a str is a programming error)."""
    pem = private_key.private_bytes(ENC.PEM, FMT.PKCS8, NONE).decode()
    with pytest.raises(TypeError):
        load_private_key(pem)  # type: ignore[arg-type]


def test_key_load_error_carries_path(tmp_path: Path) -> None:
    """The message names the file; .path is set."""
    path = tmp_path / "bad.pem"
    path.write_bytes(b"garbage")
    with pytest.raises(KeyLoadError) as exc:
        private_key_from_file(path)
    assert exc.value.code == "key-invalid"
    assert exc.value.path == str(path)
    assert str(path) in str(exc.value)


# -- public credentials ------------------------------------------------------------------------


def _same_pub(cred: Credential, key: ec.EllipticCurvePublicKey) -> bool:
    return cred.public_key.public_numbers() == key.public_numbers()


def test_credential_public_key_pem_and_der(public_key: ec.EllipticCurvePublicKey) -> None:
    """SubjectPublicKeyInfo in PEM and DER: a Credential without certificate."""
    for enc in (ENC.PEM, ENC.DER):
        cred = load_credential(public_key.public_bytes(enc, SPKI))
        assert _same_pub(cred, public_key)
        assert cred.certificate is None
        assert cred.intermediates == ()


def test_credential_certificate_pem_and_der(
    certificate: x509.Certificate, public_key: ec.EllipticCurvePublicKey
) -> None:
    """A certificate in PEM and DER: the Credential keeps it."""
    for enc in (ENC.PEM, ENC.DER):
        cred = load_credential(certificate.public_bytes(enc))
        assert _same_pub(cred, public_key)
        assert cred.certificate == certificate
        assert cred.intermediates == ()


def test_credential_chain_pem(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A PEM chain (leaf first, as x5u serves it): the rest become intermediates, in order."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = make_self_signed(ca_key, "SHAKEN CA", ca=True)
    leaf = make_self_signed(private_key, "SHAKEN 1234", issuer_key=ca_key, issuer_name=ca.subject)
    cred = load_credential(leaf.public_bytes(ENC.PEM) + ca.public_bytes(ENC.PEM))
    assert cred.certificate == leaf
    assert cred.intermediates == (ca,)
    assert _same_pub(cred, private_key.public_key())


def test_credential_cert_preferred_over_other_blocks(certificate: x509.Certificate) -> None:
    """PEM text around the blocks and non-certificate blocks do not disturb loading."""
    data = b"subject=CN = x\n" + EC_PARAMETERS + certificate.public_bytes(ENC.PEM) + b"trailer\n"
    assert load_credential(data).certificate == certificate


def test_credential_private_key_refused(private_key: ec.EllipticCurvePrivateKey) -> None:
    """A private key given as the public credential: key-is-private (never publish it)."""
    for fmt in (FMT.PKCS8, FMT.TraditionalOpenSSL):
        with pytest.raises(KeyLoadError) as exc:
            load_credential(private_key.private_bytes(ENC.PEM, fmt, NONE))
        assert _code(exc) == "key-is-private"


@pytest.mark.parametrize("fmt", [FMT.PKCS8, FMT.TraditionalOpenSSL], ids=["pkcs8", "pkcs1"])
def test_credential_rsa_private_key_refused(
    rsa_key: rsa.RSAPrivateKey, fmt: serialization.PrivateFormat
) -> None:
    """Any private key PEM (also PKCS#1 'RSA PRIVATE KEY') as a credential: key-is-private."""
    with pytest.raises(KeyLoadError) as exc:
        load_credential(rsa_key.private_bytes(ENC.PEM, fmt, NONE))
    assert _code(exc) == "key-is-private"


def test_credential_rsa(rsa_key: rsa.RSAPrivateKey) -> None:
    """RSA public key or RSA certificate: key-not-ec."""
    with pytest.raises(KeyLoadError) as exc:
        load_credential(rsa_key.public_key().public_bytes(ENC.PEM, SPKI))
    assert _code(exc) == "key-not-ec"
    with pytest.raises(KeyLoadError) as exc:
        load_credential(make_self_signed(rsa_key).public_bytes(ENC.PEM))
    assert _code(exc) == "key-not-ec"


def test_credential_p384(p384_key: ec.EllipticCurvePrivateKey) -> None:
    """P-384 public key (PEM, DER) or certificate: key-wrong-curve."""
    for data in (
        p384_key.public_key().public_bytes(ENC.PEM, SPKI),
        p384_key.public_key().public_bytes(ENC.DER, SPKI),
        make_self_signed(p384_key).public_bytes(ENC.PEM),
    ):
        with pytest.raises(KeyLoadError) as exc:
            load_credential(data)
        assert _code(exc) == "key-wrong-curve"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"garbage",
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        b"-----BEGIN PUBLIC KEY-----\nMFkw",
        EC_PARAMETERS,
    ],
)
def test_credential_garbage(data: bytes) -> None:
    """Anything that is neither a certificate nor a public key: key-invalid."""
    with pytest.raises(KeyLoadError) as exc:
        load_credential(data)
    assert _code(exc) == "key-invalid"


def test_credential_constructor_checks_curve(p384_key: ec.EllipticCurvePrivateKey) -> None:
    """Credential(P-384 key) refuses with key-wrong-curve."""
    with pytest.raises(KeyLoadError) as exc:
        Credential(p384_key.public_key())  # type: ignore[arg-type]
    assert _code(exc) == "key-wrong-curve"


# -- files and the file cache ------------------------------------------------------------------


def test_key_files_all_formats_load(
    key_files: KeyFiles, private_key: ec.EllipticCurvePrivateKey
) -> None:
    """Every file the session fixture writes loads through the file functions."""
    assert _same_key(private_key_from_file(key_files.key_pem), private_key)
    assert _same_key(private_key_from_file(str(key_files.key_pkcs8_pem)), private_key)
    for path in (key_files.pub_pem, key_files.pub_der, key_files.cert_pem, key_files.cert_der):
        assert _same_pub(credential_from_file(path), private_key.public_key())


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist: key-not-found, for keys and credentials."""
    with pytest.raises(KeyLoadError) as exc:
        private_key_from_file(tmp_path / "nope.pem")
    assert _code(exc) == "key-not-found"
    with pytest.raises(KeyLoadError) as exc:
        credential_from_file(tmp_path / "nope.pem")
    assert _code(exc) == "key-not-found"


def test_directory_is_unreadable(tmp_path: Path) -> None:
    """A directory where a file is expected: key-unreadable."""
    with pytest.raises(KeyLoadError) as exc:
        private_key_from_file(tmp_path)
    assert _code(exc) == "key-unreadable"


def test_oversized_file_refused(tmp_path: Path) -> None:
    """A file over 1 MiB is not a key: key-invalid without parsing it."""
    path = tmp_path / "big.pem"
    path.write_bytes(b"A" * ((1 << 20) + 1))
    with pytest.raises(KeyLoadError) as exc:
        credential_from_file(path)
    assert _code(exc) == "key-invalid"


def _rewrite(path: Path, data: bytes, bump_ns: int) -> None:
    st = path.stat()
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + bump_ns))


def test_private_key_file_cache_and_reload(tmp_path: Path) -> None:
    """Same object while the file is unchanged; a new key after it is rewritten."""
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(k1.private_bytes(ENC.PEM, FMT.PKCS8, NONE))
    first = private_key_from_file(path)
    assert private_key_from_file(path) is first
    assert private_key_from_file(str(path)) is first
    assert _same_key(first, k1)
    _rewrite(path, k2.private_bytes(ENC.PEM, FMT.PKCS8, NONE), 1_000_000_000)
    second = private_key_from_file(path)
    assert second is not first
    assert _same_key(second, k2)
    assert private_key_from_file(path) is second


def test_credential_file_reload_same_size_new_mtime(tmp_path: Path) -> None:
    """A same-size rewrite is noticed through the nanosecond mtime."""
    k1, k2 = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    pem1, pem2 = (k.public_key().public_bytes(ENC.PEM, SPKI) for k in (k1, k2))
    assert len(pem1) == len(pem2)
    path = tmp_path / "pub.pem"
    path.write_bytes(pem1)
    first = credential_from_file(path)
    assert credential_from_file(path) is first
    _rewrite(path, pem2, 1)  # one nanosecond later
    second = credential_from_file(path)
    assert second is not first
    assert _same_pub(second, k2.public_key())


def test_broken_file_keeps_failing_then_recovers(tmp_path: Path) -> None:
    """A broken file fails with the same code on every use, and loads once it is fixed."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "cred.pem"
    path.write_bytes(b"-----BEGIN PUBLIC KEY-----\ngarbage\n-----END PUBLIC KEY-----\n")
    codes = []
    for _ in range(3):
        with pytest.raises(KeyLoadError) as exc:
            credential_from_file(path)
        codes.append(exc.value.code)
    assert codes == ["key-invalid"] * 3
    _rewrite(path, key.public_key().public_bytes(ENC.PEM, SPKI), 1_000)
    assert _same_pub(credential_from_file(path), key.public_key())


def test_file_deleted_after_caching(tmp_path: Path) -> None:
    """Removing a cached file is noticed (key-not-found), not served from the cache."""
    key = ec.generate_private_key(ec.SECP256R1())
    path = tmp_path / "key.pem"
    path.write_bytes(key.private_bytes(ENC.PEM, FMT.PKCS8, NONE))
    assert _same_key(private_key_from_file(path), key)
    path.unlink()
    with pytest.raises(KeyLoadError) as exc:
        private_key_from_file(path)
    assert _code(exc) == "key-not-found"


def test_encrypted_key_file_is_key_encrypted(
    tmp_path: Path, private_key: ec.EllipticCurvePrivateKey
) -> None:
    """An encrypted key file (no password can be given for files): key-encrypted."""
    path = tmp_path / "enc.pem"
    path.write_bytes(
        private_key.private_bytes(ENC.PEM, FMT.PKCS8, serialization.BestAvailableEncryption(b"x"))
    )
    with pytest.raises(KeyLoadError) as exc:
        private_key_from_file(path)
    assert _code(exc) == "key-encrypted"


@pytest.mark.parametrize(
    "body",
    [
        b"-----BEGIN CERTIFICATE-----\n" * 2000,
        b"-----BEGIN A-----\n-----END B-----\n" * 1000,
        b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END PUBLIC KEY-----\n",
    ],
    ids=["unterminated", "mismatched-labels", "wrong-end"],
)
def test_hostile_pem_is_a_clean_error(body: bytes) -> None:
    """PEM a hostile certificate server could send: unterminated or mismatched blocks give
    key-invalid (the scanner makes one forward pass over the body)."""
    with pytest.raises(KeyLoadError) as exc:
        load_credential(body)
    assert exc.value.code == "key-invalid"


def test_pem_blocks_among_text(key_files: KeyFiles) -> None:
    """Explanatory text around PEM blocks (as openssl x509 -text writes) is skipped."""
    pem = key_files.cert_pem.read_bytes()
    cred = load_credential(b"Certificate:\n  Data: ...\n" + pem + b"\ntrailing words\n")
    assert cred.certificate is not None
