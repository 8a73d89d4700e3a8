"""Hostile certificates (issue 7, item 5): served from ``info`` by a real HTTPS server on
loopback, and configured as files, through the whole verification path (sync and async,
without trust checks and with a TrustPolicy).  Every malformed certificate is ``cert-invalid``
(437) from ``info``, never ``internal-error`` or a traceback, and every Verdict property reads.
The certificates are built in ``hostile_certs.py`` (builder plus DER surgery, re-signed by the
lab intermediate so that only the defect is wrong)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.serialization import Encoding

from fetchkit import CertServer, TLSFiles, make_tls_files
from helpers import assert_verdict_readable
from hostile_certs import MALFORMED_LEAVES, Hostile, hostile_chains, hostile_crls
from secsipid import (
    CertificateSource,
    Credential,
    FetchPolicy,
    KeyLoadError,
    MemoryCache,
    Reason,
    Signer,
    TrustPolicy,
    Verdict,
    Verifier,
    check_identity,
    load_credential,
)
from secsipid._keys import describe_certificate
from secsipid._pki import LabPKI, make_crl, make_lab_pki, pem
from secsipid._source import freshness, parse_certificate_body

ORIG, DEST = "12155550121", "12155550131"
MALFORMED = [*MALFORMED_LEAVES, "intermediate-garbage-aki"]


@pytest.fixture(scope="module")
def pki() -> LabPKI:
    return make_lab_pki(spc="1234")


@pytest.fixture(scope="module")
def chains(pki: LabPKI) -> dict[str, Hostile]:
    return hostile_chains(pki)


@pytest.fixture(scope="module")
def root_file(pki: LabPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("root") / "root.pem"
    path.write_bytes(pem(pki.root))
    return path


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


# Caching headers a hostile server may send with a good certificate.
HOSTILE_HEADERS: dict[str, dict[str, str]] = {
    "date-year-overflow": {
        "Expires": "Wed, 21 Oct 2015 07:28:00 GMT",
        "Date": "Wed, 21 Oct 2019999999999999999999999999999995 07:00:00 GMT",
    },
    "expires-year-overflow": {"Expires": "Wed, 21 Oct 99999999999999999999999 07:28:00 GMT"},
    "expires-year-99999": {"Expires": "Wed, 21 Oct 99999 07:28:00 GMT"},
    "max-age-huge": {"Cache-Control": "max-age=" + "9" * 400},
}


@pytest.fixture(scope="module")
def server(
    chains: dict[str, Hostile], tls: TLSFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CertServer]:
    """One HTTPS server on 127.0.0.1 serving every chain at /<name>.pem."""
    routes = {
        f"/{name}.pem": {
            "body": chain.chain_pem.decode(),
            "headers": {"Content-Type": "application/pem-certificate-chain"},
        }
        for name, chain in chains.items()
    }
    for name, headers in HOSTILE_HEADERS.items():
        routes[f"/headers-{name}.pem"] = {
            "body": chains["control"].chain_pem.decode(),
            "headers": headers,
        }
    srv = CertServer(tmp_path_factory.mktemp("hostile-srv"), routes, tls)
    yield srv
    srv.stop()


def _source(tls: TLSFiles, trust: TrustPolicy | None) -> CertificateSource:
    # A private memory cache per source: each check fetches and parses the body itself.
    return CertificateSource(
        fetch=FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True),
        trust=trust,
        memory=MemoryCache(),
    )


def _trusts(root_file: Path) -> dict[str, TrustPolicy | None]:
    return {"no-trust": None, "trust-policy": TrustPolicy(ca_file=str(root_file))}


def _check_both_ways(verifier: Verifier, value: str) -> tuple[Verdict, Verdict]:
    sync = verifier.check(value, orig_tn=ORIG, dest_tn=DEST)
    async_ = asyncio.run(verifier.acheck(value, orig_tn=ORIG, dest_tn=DEST))
    return sync, async_


@pytest.mark.parametrize("trust", ["no-trust", "trust-policy"])
def test_control_chain_verifies(
    server: CertServer, tls: TLSFiles, pki: LabPKI, root_file: Path, trust: str
) -> None:
    """The kit's certificate without a defect verifies, with and without trust checks: the
    failures below come from the defects, not from the construction."""
    url = server.url("/control.pem")
    value = Signer(pki.leaf_key, url).identity(ORIG, DEST, "A")
    verifier = Verifier(_source(tls, _trusts(root_file)[trust]))
    for verdict in _check_both_ways(verifier, value):
        assert verdict.ok, verdict.message
        assert assert_verdict_readable(verdict)["spc"] == "1234"


@pytest.mark.parametrize("trust", ["no-trust", "trust-policy"])
@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_certificate_from_info_is_cert_invalid(
    server: CertServer, tls: TLSFiles, pki: LabPKI, root_file: Path, name: str, trust: str
) -> None:
    """A malformed certificate (or intermediate) from info: cert-invalid (437, lib -102),
    sync and async, with trust=None and with a TrustPolicy; the Verdict reads, to_dict() is
    strict JSON.  Before: internal-error (500), or with trust=None a *valid* Verdict whose
    .spc and .to_dict() raised (TNAuthList twice)."""
    url = server.url(f"/{name}.pem")
    value = Signer(pki.leaf_key, url).identity(ORIG, DEST, "A")
    verifier = Verifier(_source(tls, _trusts(root_file)[trust]))
    for verdict in _check_both_ways(verifier, value):
        assert verdict.reason is Reason.CERT_INVALID, (verdict.reason, verdict.message)
        assert (verdict.sip_status, verdict.lib_code) == (437, -102)
        assert "malformed certificate" in verdict.message
        doc = assert_verdict_readable(verdict)
        assert doc["valid"] is False and doc["spc"] is None


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_certificate_body_and_credential(chains: dict[str, Hostile], name: str) -> None:
    """The layers under the source: parse_certificate_body says cert-invalid; load_credential
    and Credential.from_certificates raise KeyLoadError key-invalid (never cryptography's
    InvalidVersion, DuplicateExtension, KeyError or ValueError)."""
    chain = chains[name]
    with pytest.raises(Exception) as exc:
        parse_certificate_body(chain.chain_pem, "https://sti.example/x.pem")
    assert getattr(exc.value, "reason", None) is Reason.CERT_INVALID, repr(exc.value)
    for body in (chain.chain_pem, chain.leaf):
        if body is chain.leaf and name == "intermediate-garbage-aki":
            continue  # the leaf alone is fine
        with pytest.raises(KeyLoadError) as key_exc:
            load_credential(body)
        assert key_exc.value.code == "key-invalid"


@pytest.mark.parametrize("trust", ["no-trust", "trust-policy"])
@pytest.mark.parametrize("name", ["version-v4", "garbage-ku", "tnauthlist-twice",
                                  "subject-generalstring"])  # fmt: skip
def test_malformed_certificate_file(
    chains: dict[str, Hostile],
    pki: LabPKI,
    root_file: Path,
    tmp_path: Path,
    name: str,
    trust: str,
) -> None:
    """A malformed certificate in a configured file is the operator's file, not the caller's
    credential: key-unavailable (500, lib -102) like any broken key file, naming the defect;
    never internal-error.  Also through check_identity(value, path)."""
    path = tmp_path / "cert.pem"
    path.write_bytes(chains[name].chain_pem)
    value = Signer(pki.leaf_key, "https://sti.example/cert.pem").identity(ORIG, DEST, "A")
    verifier = Verifier(path, trust=_trusts(root_file)[trust])
    verdicts = [*_check_both_ways(verifier, value)]
    if trust == "no-trust":
        verdicts.append(check_identity(value, path, orig_tn=ORIG, dest_tn=DEST))
    for verdict in verdicts:
        assert verdict.reason is Reason.KEY_UNAVAILABLE, (verdict.reason, verdict.message)
        assert (verdict.sip_status, verdict.lib_code) == (500, -102)
        assert "malformed certificate" in verdict.message
        assert_verdict_readable(verdict)


@pytest.mark.parametrize("name", ["tnauthlist-twice", "subject-null", "garbage-aki"])
def test_static_credential_refuses_malformed_certificate(
    chains: dict[str, Hostile], name: str
) -> None:
    """A certificate object handed to the Verifier (or to Credential) is checked when the
    credential is built: KeyLoadError key-invalid at configuration time, not a valid Verdict
    whose .spc raises later."""
    cert = x509.load_der_x509_certificate(chains[name].leaf)
    for build in (
        lambda: Credential.from_certificates([cert]),
        lambda: Credential(cert.public_key(), cert),  # type: ignore[arg-type]
        lambda: Verifier(cert),
    ):
        with pytest.raises(KeyLoadError) as exc:
            build()
        assert exc.value.code == "key-invalid"


@pytest.mark.parametrize("name", ["subject-videotexstring", "subject-null"])
def test_describe_certificate_is_total(chains: dict[str, Hostile], name: str) -> None:
    """Messages name a certificate by its subject, or by its serial number when cryptography
    cannot render the subject (a KeyError before, in _describe and Credential.__repr__)."""
    cert = x509.load_der_x509_certificate(chains[name].leaf)
    assert describe_certificate(cert) == f"serial {cert.serial_number:x}"
    good = x509.load_der_x509_certificate(chains["control"].leaf)
    assert describe_certificate(good) == "CN=SHAKEN 1234,C=US"


# -- CRLs from a distribution point ----------------------------------------------------------


@pytest.fixture(scope="module")
def crl_farm(
    pki: LabPKI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[CertServer, dict[str, LabPKI]]]:
    """An http server on loopback serving, per hostile CRL, a lab chain whose certificates
    name /<crl>.crl as CRL distribution point, and that malformed CRL (signed by the chain's
    intermediate) there."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    labs: dict[str, LabPKI] = {}
    routes: dict[str, dict[str, str]] = {}
    for name in hostile_crls(pki.intermediate, pki.intermediate_key):
        lab = make_lab_pki(
            root=(pki.root_key, pki.root), crl_url=f"http://127.0.0.1:{port}/{name}.crl"
        )
        labs[name] = lab
        routes[f"/{name}.pem"] = {"body": lab.chain_pem.decode()}
        routes[f"/{name}.crl"] = {
            "body_hex": hostile_crls(lab.intermediate, lab.intermediate_key)[name].hex()
        }
    server = CertServer(tmp_path_factory.mktemp("crl-farm"), routes, None, port=port)
    yield server, labs
    server.stop()


CRL_NAMES = ["crl-issuer-generalstring", "crl-version-v6", "crl-garbage-crl-number",
             "crl-garbage-entry-reason"]  # fmt: skip


@pytest.mark.parametrize("require_crl", [False, True])
@pytest.mark.parametrize("name", CRL_NAMES)
def test_malformed_crl_from_distribution_point_is_no_crl(
    crl_farm: tuple[CertServer, dict[str, LabPKI]], root_file: Path, name: str, require_crl: bool
) -> None:
    """fetch_crls with a malformed CRL at the distribution point: the CRL says nothing (valid
    when CRLs are optional, cert-revocation-unknown when required), sync and async.  Before:
    internal-error (a KeyError comparing the CRL's issuer name, InvalidVersion loading it)."""
    server, labs = crl_farm
    lab = labs[name]
    source = CertificateSource(
        fetch=FetchPolicy(allow_http=True, allow_private=True),
        trust=TrustPolicy(ca_file=str(root_file), fetch_crls=True, require_crl=require_crl),
        memory=MemoryCache(),
    )
    value = Signer(lab.leaf_key, server.url(f"/{name}.pem")).identity(ORIG, DEST, "A")
    expected = Reason.CERT_REVOCATION_UNKNOWN if require_crl else Reason.VALID
    for verdict in _check_both_ways(Verifier(source), value):
        assert verdict.reason is expected, (verdict.reason, verdict.message)
        assert_verdict_readable(verdict)


@pytest.mark.parametrize("name", ["crl-issuer-generalstring", "crl-version-v6"])
def test_malformed_crl_file_is_a_problem_not_a_crash(
    pki: LabPKI, root_file: Path, tmp_path: Path, name: str
) -> None:
    """The same CRLs as configured files (crl_files): refused like any unreadable CRL file."""
    path = tmp_path / "bad.crl"
    path.write_bytes(hostile_crls(pki.intermediate, pki.intermediate_key)[name])
    value = Signer(pki.leaf_key, "https://sti.example/c.pem").identity(ORIG, DEST, "A")
    credential = Credential.from_certificates([pki.leaf, pki.intermediate])
    for require_crl, expected in ((False, Reason.VALID), (True, Reason.CERT_REVOCATION_UNKNOWN)):
        trust = TrustPolicy(ca_file=str(root_file), crl_files=(str(path),), require_crl=require_crl)
        for verdict in _check_both_ways(Verifier(credential, trust=trust), value):
            assert verdict.reason is expected, (verdict.reason, verdict.message)


def test_crl_issuer_with_a_key_that_cannot_sign(pki: LabPKI, tmp_path: Path) -> None:
    """Without chain validation the "intermediate" is whatever the server sent: one with an
    X25519 key (which cannot sign) signed no CRL -- before, cryptography's TypeError from
    is_signature_valid gave internal-error."""
    fake = (
        x509.CertificateBuilder()
        .subject_name(pki.intermediate.subject)
        .issuer_name(pki.root.subject)
        .public_key(x25519.X25519PrivateKey.generate().public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(pki.intermediate.not_valid_before_utc)
        .not_valid_after(pki.intermediate.not_valid_after_utc)
        .sign(pki.root_key, hashes.SHA256())
    )
    path = tmp_path / "crl.der"
    path.write_bytes(make_crl(pki.intermediate, pki.intermediate_key).public_bytes(Encoding.DER))
    credential = Credential.from_certificates([pki.leaf, fake])
    value = Signer(pki.leaf_key, "https://sti.example/c.pem").identity(ORIG, DEST, "A")
    for require_crl, expected in ((False, Reason.VALID), (True, Reason.CERT_REVOCATION_UNKNOWN)):
        trust = TrustPolicy(verify_chain=False, crl_files=(str(path),), require_crl=require_crl)
        for verdict in _check_both_ways(Verifier(credential, trust=trust), value):
            assert verdict.reason is expected, (verdict.reason, verdict.message)


# -- hostile caching headers -------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_HEADERS)
def test_hostile_caching_headers_with_a_good_certificate(
    server: CertServer, tls: TLSFiles, pki: LabPKI, root_file: Path, name: str
) -> None:
    """Caching headers are parsed from the server's answer: a Date whose year overflows a C
    long (email.utils raises OverflowError) used to give internal-error for a good
    certificate.  Found by tools/fuzz.py (target headers).  An unusable date is no date."""
    url = server.url(f"/headers-{name}.pem")
    value = Signer(pki.leaf_key, url).identity(ORIG, DEST, "A")
    verifier = Verifier(_source(tls, TrustPolicy(ca_file=str(root_file))))
    for verdict in _check_both_ways(verifier, value):
        assert verdict.ok, (verdict.reason, verdict.message)
        assert_verdict_readable(verdict)


@pytest.mark.parametrize("name", HOSTILE_HEADERS)
def test_freshness_of_hostile_headers(name: str) -> None:
    """freshness() itself, for headers the loopback server cannot send alone (http.server adds
    its own Date first): an unusable Date or Expires is ignored or means expired."""
    headers = {k.lower(): v for k, v in HOSTILE_HEADERS[name].items()}
    # A max-age that is not a number is no max-age (the default applies); an unusable Expires
    # means already expired (RFC 9111 §5.3); an unusable Date is "now" (Expires 2015: expired).
    expected = 3600.0 if name == "max-age-huge" else 0.0
    assert freshness(headers, 1_700_000_000.0, 3600.0) == (expected, True)
