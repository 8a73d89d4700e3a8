"""Shared fixtures: one EC P-256 key pair and self-signed certificate per session, written to
disk in every format the library reads, plus a ``signer``/``verifier`` pair built on them.

Fixtures other test modules (CLI, certificate fetcher) can reuse:

* ``private_key`` / ``public_key`` / ``certificate``: the objects;
* ``key_files``: a :class:`KeyFiles` with the paths ``key_pem`` (SEC1), ``key_pkcs8_pem``,
  ``pub_pem``, ``pub_der``, ``cert_pem``, ``cert_der`` in one session tmp dir;
* ``signer`` (x5u = ``helpers.X5U``) and ``verifier`` (the public key);
* ``identity``: a valid Identity value signed at ``helpers.NOW`` (verify with ``now=NOW``);
* ``make_identity``: a factory for crafted (tampered) Identity values.

Constants and plain helpers are in ``helpers.py``.  Times are fixed, never the wall clock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import (
    DEST,
    NOW,
    ORIG,
    ORIGID,
    PARAMS,
    SHAKEN_CLAIMS,
    SHAKEN_HEADER,
    X5U,
    KeyFiles,
    MakeIdentity,
    make_self_signed,
    raw_jws,
)
from secsipid import Signer, Verifier


@pytest.fixture(autouse=True)
def _fresh_parse_caches() -> None:
    """Each test parses what it sends: the Identity parameter and PASSporT header caches start
    empty, so no test passes on what an earlier one left there (and mutation testing, which
    forks each mutant's tests from a process that ran every test once, sees every mutant of
    the parsers)."""
    from secsipid import _identity, _passport

    _identity._PARAMS_CACHE.clear()
    _passport._HEADER_CACHE.clear()


@pytest.fixture(scope="session")
def private_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def public_key(private_key: ec.EllipticCurvePrivateKey) -> ec.EllipticCurvePublicKey:
    return private_key.public_key()


@pytest.fixture(scope="session")
def certificate(private_key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    return make_self_signed(private_key)


@pytest.fixture(scope="session")
def key_files(
    tmp_path_factory: pytest.TempPathFactory,
    private_key: ec.EllipticCurvePrivateKey,
    certificate: x509.Certificate,
) -> KeyFiles:
    d = tmp_path_factory.mktemp("keys")
    files = KeyFiles(
        dir=d,
        key_pem=d / "key.pem",
        key_pkcs8_pem=d / "key_pkcs8.pem",
        pub_pem=d / "pub.pem",
        pub_der=d / "pub.der",
        cert_pem=d / "cert.pem",
        cert_der=d / "cert.der",
    )
    enc, fmt = serialization.Encoding, serialization.PrivateFormat
    none = serialization.NoEncryption()
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    files.key_pem.write_bytes(private_key.private_bytes(enc.PEM, fmt.TraditionalOpenSSL, none))
    files.key_pkcs8_pem.write_bytes(private_key.private_bytes(enc.PEM, fmt.PKCS8, none))
    files.pub_pem.write_bytes(private_key.public_key().public_bytes(enc.PEM, spki))
    files.pub_der.write_bytes(private_key.public_key().public_bytes(enc.DER, spki))
    files.cert_pem.write_bytes(certificate.public_bytes(enc.PEM))
    files.cert_der.write_bytes(certificate.public_bytes(enc.DER))
    return files


@pytest.fixture(scope="session")
def signer(private_key: ec.EllipticCurvePrivateKey) -> Signer:
    return Signer(private_key, X5U)


@pytest.fixture(scope="session")
def verifier(public_key: ec.EllipticCurvePublicKey) -> Verifier:
    return Verifier(public_key)


@pytest.fixture(scope="session")
def identity(signer: Signer) -> str:
    """A valid SHAKEN Identity value (orig ORIG, dest DEST, attest A, iat NOW, info X5U)."""
    return signer.identity(ORIG, DEST, "A", ORIGID, iat=NOW)


@pytest.fixture(scope="session")
def make_identity(signer: Signer, private_key: ec.EllipticCurvePrivateKey) -> MakeIdentity:
    """Build an Identity value from a (possibly broken) header and claims.

    ``header``/``claims`` default to the valid SHAKEN ones; ``update``/``claims_update`` merge
    into them and ``drop``/``drop_claims`` remove keys.  Dicts are serialized canonically,
    text is signed byte for byte with ``Signer.sign_json(verbatim=True)``; ``raw=True`` signs
    bytes the Signer refuses (alg other than ES256, duplicate keys, invalid UTF-8).
    ``params`` is the text after the token (default ``;info=<X5U>;alg=ES256;ppt=shaken``).
    """

    def make(
        *,
        header: Mapping[str, Any] | str | bytes | None = None,
        claims: Mapping[str, Any] | str | bytes | None = None,
        update: Mapping[str, Any] | None = None,
        claims_update: Mapping[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        drop_claims: tuple[str, ...] = (),
        params: str = PARAMS,
        raw: bool = False,
    ) -> str:
        if header is None:
            merged = {**SHAKEN_HEADER, **(update or {})}
            header = {k: v for k, v in merged.items() if k not in drop}
        if claims is None:
            merged = {**SHAKEN_CLAIMS, **(claims_update or {})}
            claims = {k: v for k, v in merged.items() if k not in drop_claims}
        if raw:
            assert isinstance(header, bytes | str) and isinstance(claims, bytes | str)
            h = header.encode() if isinstance(header, str) else header
            c = claims.encode() if isinstance(claims, str) else claims
            token = raw_jws(private_key, h, c)
        else:
            token = signer.sign_json(header, claims, verbatim=True)
        return token + params

    return make


@pytest.fixture(scope="session")
def secsipidx() -> str:
    """The real secsipidx binary (Debian package secsipidx) for the interop tests; missing, it
    fails the run with the install hint, unless SECSIPID_SKIP_INTEROP=1 skips those tests."""
    path = shutil.which("secsipidx")
    if path is None:
        if os.environ.get("SECSIPID_SKIP_INTEROP") == "1":
            pytest.skip("secsipidx not installed and SECSIPID_SKIP_INTEROP=1")
        pytest.fail(
            "secsipidx not found: apt-get install secsipidx "
            "(or set SECSIPID_SKIP_INTEROP=1 to skip the interop tests)",
            pytrace=False,
        )
    return path
