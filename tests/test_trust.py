"""Trust in the signer's certificate: chain to the STI roots, validity at iat and now,
revocation (CRL files and distribution points), TNAuthList, profile, hot reload."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import math
import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from fetchkit import CertServer
from helpers import CachingProbeSource
from secsipid import (
    CertificateSource,
    Credential,
    Fetcher,
    FetchPolicy,
    FetchResult,
    Reason,
    RichCallData,
    Signer,
    TrustPolicy,
    TrustValidator,
    Verdict,
    VerificationError,
    Verifier,
    VerifyPolicy,
    build_identity,
)
from secsipid._fetch import request_remaining
from secsipid._pki import LabPKI, make_crl, make_lab_pki, make_self_signed, pem
from secsipid._trust import _brief, _describe

ORIG, DEST = "12155550121", "12155550131"
ORIGID = "123e4567-e89b-42d3-a456-426655440000"
X5U = "https://cert.example.org/sti.pem"
UTC = dt.UTC


@pytest.fixture(scope="module")
def lab() -> LabPKI:
    return make_lab_pki(spc="1234")


@pytest.fixture
def root_file(tmp_path: Path, lab: LabPKI) -> Path:
    path = tmp_path / "roots.pem"
    path.write_bytes(pem(lab.root))
    return path


def credential(pki: LabPKI) -> Credential:
    return Credential.from_certificates([pki.leaf, pki.intermediate])


def check(pki: LabPKI, trust: TrustPolicy | TrustValidator, *, orig: str = ORIG,
          now: float | None = None, iat: int | None = None) -> str:  # fmt: skip
    """Sign with the lab leaf and verify with the chain as x5u would deliver it."""
    now = time.time() if now is None else now
    value = Signer(pki.leaf_key, X5U).identity(orig, DEST, "A", iat=iat or int(now))
    verdict = Verifier(credential(pki), trust=trust).check(value, now=now)
    return verdict.reason.value


def test_valid_chain(lab: LabPKI, root_file: Path) -> None:
    """Leaf + intermediate from x5u, root from the trust list: valid, SPC exposed."""
    trust = TrustPolicy(ca_file=str(root_file))
    value = Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    verdict = Verifier(credential(lab), trust=trust).check(value)
    assert verdict.ok and verdict.spc == "1234" and verdict.verstat == "TN-Validation-Passed"


def test_wrong_issuer_untrusted(root_file: Path) -> None:
    """A chain from another root is cert-untrusted (437, TN-Validation-Failed)."""
    other = make_lab_pki()
    value = Signer(other.leaf_key, X5U).identity(ORIG, DEST, "A")
    verdict = Verifier(credential(other), trust=TrustPolicy(ca_file=str(root_file))).check(value)
    assert verdict.reason is Reason.CERT_UNTRUSTED
    assert (verdict.sip_status, verdict.verstat, verdict.lib_code) == (
        437, "TN-Validation-Failed", -101,
    )  # fmt: skip


def test_missing_intermediate_untrusted_then_configured(lab: LabPKI, root_file: Path,
                                                         tmp_path: Path) -> None:  # fmt: skip
    """Without the intermediate the chain breaks; intermediates_file (CertCAInter) mends it."""
    leaf_only = Credential.from_certificates([lab.leaf])
    value = Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    trust = TrustPolicy(ca_file=str(root_file))
    assert Verifier(leaf_only, trust=trust).check(value).reason is Reason.CERT_UNTRUSTED
    inter = tmp_path / "inter.pem"
    inter.write_bytes(pem(lab.intermediate))
    trust = TrustPolicy(ca_file=str(root_file), intermediates_file=str(inter))
    assert Verifier(leaf_only, trust=trust).check(value).ok


def test_expired_and_not_yet_valid(lab: LabPKI, root_file: Path) -> None:
    """Validity is checked now and at iat, each with its own reason code."""
    now = dt.datetime.now(UTC)
    root = (lab.root_key, lab.root)
    trust = TrustPolicy(ca_file=str(root_file))
    expired = make_lab_pki(root=root, leaf_not_before=now - dt.timedelta(days=30),
                           leaf_not_after=now - dt.timedelta(days=1))  # fmt: skip
    assert check(expired, trust) == "cert-expired"
    future = make_lab_pki(root=root, leaf_not_before=now + dt.timedelta(days=1),
                          leaf_not_after=now + dt.timedelta(days=30))  # fmt: skip
    assert check(future, trust) == "cert-not-yet-valid"
    # Valid now, but iat lies before notBefore: not valid at the time of signing.
    recent = make_lab_pki(root=root, leaf_not_before=now - dt.timedelta(seconds=2),
                          leaf_not_after=now + dt.timedelta(days=30))  # fmt: skip
    t = time.time()
    assert check(recent, trust, now=t, iat=int(t) - 30) == "cert-not-yet-valid"
    assert check(recent, trust, now=t, iat=int(t)) == "valid"


def test_time_only_mode(root_file: Path) -> None:
    """libsecsipid CertVerify=32: validity times only, no chain (any issuer)."""
    trust = TrustPolicy.from_libsecsipid(32)
    assert trust is not None and not trust.verify_chain
    assert check(make_lab_pki(), trust) == "valid"
    now = dt.datetime.now(UTC)
    expired = make_lab_pki(leaf_not_before=now - dt.timedelta(days=3),
                           leaf_not_after=now - dt.timedelta(days=1))  # fmt: skip
    assert check(expired, trust) == "cert-expired"


def test_no_tnauthlist(lab: LabPKI, root_file: Path) -> None:
    """A leaf without TNAuthList is cert-no-tnauthlist, unless not required."""
    bare = make_lab_pki(root=(lab.root_key, lab.root), tnauthlist=False)
    assert check(bare, TrustPolicy(ca_file=str(root_file))) == "cert-no-tnauthlist"
    relaxed = TrustPolicy(ca_file=str(root_file), require_tnauthlist=False)
    assert check(bare, relaxed) == "valid"


def test_delegate_certificate_tn_scope(lab: LabPKI, root_file: Path) -> None:
    """RFC 9060: a certificate listing TNs/ranges authorizes only those origs."""
    delegate = make_lab_pki(root=(lab.root_key, lab.root), spc="1234",
                            ranges=[("12155550100", 100)], tns=["12155559999"])  # fmt: skip
    trust = TrustPolicy(ca_file=str(root_file))
    assert check(delegate, trust, orig="12155550121") == "valid"
    assert check(delegate, trust, orig="+1 215-555-9999") == "valid"
    assert check(delegate, trust, orig="12155550200") == "cert-tn-not-authorized"
    assert check(delegate, trust, orig="12155550099") == "cert-tn-not-authorized"


def test_revoked_by_crl_file(lab: LabPKI, root_file: Path, tmp_path: Path) -> None:
    """A CRL file (PEM or DER) from the leaf's issuer revokes it; one signed by another key
    with the same issuer name is ignored (libsecsipid trusts any CRL's serials)."""
    crl = make_crl(lab.intermediate, lab.intermediate_key, [lab.leaf.serial_number])
    for n, encoding in enumerate((serialization.Encoding.PEM, serialization.Encoding.DER)):
        path = tmp_path / f"crl{n}"
        path.write_bytes(crl.public_bytes(encoding))
        trust = TrustPolicy(ca_file=str(root_file), crl_files=(str(path),))
        assert check(lab, trust) == "cert-revoked"
    # Forged CRL: right issuer name, wrong key.
    forger = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    forged = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(lab.intermediate.subject)
        .last_update(now - dt.timedelta(minutes=1))
        .next_update(now + dt.timedelta(days=1))
        .add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(lab.leaf.serial_number)
            .revocation_date(now - dt.timedelta(minutes=1))
            .build()
        )
        .sign(forger, hashes.SHA256())
    )
    path = tmp_path / "forged.pem"
    path.write_bytes(forged.public_bytes(serialization.Encoding.PEM))
    trust = TrustPolicy(ca_file=str(root_file), crl_files=(str(path),))
    assert check(lab, trust) == "valid"
    strict = TrustPolicy(ca_file=str(root_file), crl_files=(str(path),), require_crl=True)
    assert check(lab, strict) == "cert-revocation-unknown"


def test_not_revoked_with_good_crls(lab: LabPKI, root_file: Path, tmp_path: Path) -> None:
    """CRLs from both CAs not listing the chain: valid even when CRLs are required."""
    files = []
    for issuer, key in ((lab.intermediate, lab.intermediate_key), (lab.root, lab.root_key)):
        path = tmp_path / f"{issuer.serial_number}.crl"
        path.write_bytes(make_crl(issuer, key, [12345]).public_bytes(serialization.Encoding.DER))
        files.append(str(path))
    trust = TrustPolicy(ca_file=str(root_file), crl_files=tuple(files), require_crl=True)
    assert check(lab, trust) == "valid"


def test_revoked_by_distribution_point(lab: LabPKI, root_file: Path, tmp_path: Path) -> None:
    """fetch_crls: the CRL named in the certificate is fetched (http, signed), cached, and
    revokes; the fetch happens once for many verifications."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    crl_url = f"http://127.0.0.1:{port}/sti-ca.crl"
    root = (lab.root_key, lab.root)
    revoked = make_lab_pki(root=root, crl_url=crl_url)
    good = make_lab_pki(root=root, crl_url=crl_url)
    # The two leaves have different intermediates; publish a CRL for the revoked one's CA.
    crl = make_crl(revoked.intermediate, revoked.intermediate_key, [revoked.leaf.serial_number])
    routes = {"/sti-ca.crl": {"body_hex": crl.public_bytes(serialization.Encoding.DER).hex()}}
    server = CertServer(tmp_path / "crl", routes, None, port=port)
    try:
        fetcher = Fetcher(FetchPolicy(allow_private=True))
        trust = TrustValidator(TrustPolicy(ca_file=str(root_file), fetch_crls=True), fetcher)
        assert check(revoked, trust) == "cert-revoked"
        for _ in range(5):
            assert check(revoked, trust) == "cert-revoked"
        assert server.hits()["/sti-ca.crl"] == 1
        # The good leaf's CA publishes nothing at that URL that it signed: no status, accepted.
        assert check(good, trust) == "valid"
        strict = TrustValidator(
            TrustPolicy(ca_file=str(root_file), fetch_crls=True, require_crl=True), fetcher
        )
        assert check(good, strict) == "cert-revocation-unknown"
    finally:
        server.stop()


def test_anchor_file_reloads_without_restart(lab: LabPKI, tmp_path: Path) -> None:
    """Replacing the trust-anchor file takes effect without a restart."""
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pem(make_lab_pki().root))  # the wrong root
    validator = TrustValidator(TrustPolicy(ca_file=str(anchors), reload_interval=0))
    assert check(lab, validator) == "cert-untrusted"
    anchors.write_bytes(pem(lab.root) + pem(make_lab_pki().root))
    os.utime(anchors, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert check(lab, validator) == "valid"
    anchors.write_bytes(b"")
    os.utime(anchors, ns=(time.time_ns(), time.time_ns() + 2_000_000))
    assert check(lab, validator) == "no-trust-anchors"


def test_anchor_directory(lab: LabPKI, tmp_path: Path) -> None:
    """ca_dir: every PEM/DER certificate in the directory is an anchor (the STI-PA list)."""
    d = tmp_path / "anchors"
    d.mkdir()
    (d / "other.pem").write_bytes(pem(make_lab_pki().root))
    (d / "lab.der").write_bytes(lab.root.public_bytes(serialization.Encoding.DER))
    assert check(lab, TrustPolicy(ca_dir=str(d))) == "valid"


def test_validated_chain_is_cached(lab: LabPKI, root_file: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Path validation runs once per credential, not per verification."""
    validator = TrustValidator(TrustPolicy(ca_file=str(root_file)))
    calls = _counting(monkeypatch, validator, "_verify_path")
    cred = credential(lab)
    verifier = Verifier(cred, trust=validator)
    signer = Signer(lab.leaf_key, X5U)
    for _ in range(20):
        assert verifier.check(signer.identity(ORIG, DEST, "B")).ok
    assert calls == [1]
    assert validator.is_cached(cred)


def test_bare_public_key_cannot_be_validated(lab: LabPKI, root_file: Path) -> None:
    """With trust on, a public key without certificate is refused (cert-invalid)."""
    key_only = Credential(lab.leaf_key.public_key())
    value = Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    verdict = Verifier(key_only, trust=TrustPolicy(ca_file=str(root_file))).check(value)
    assert verdict.reason is Reason.CERT_INVALID


def test_profile_key_usage(lab: LabPKI, root_file: Path) -> None:
    """A leaf whose key usage lacks digitalSignature is cert-profile (ATIS-1000080)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "SHAKEN 9")]))
        .issuer_name(lab.intermediate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, True, False, False, False, False, False, False),
            critical=True,
        )
    )
    leaf = builder.sign(lab.intermediate_key, hashes.SHA256())
    value = Signer(key, X5U).identity(ORIG, DEST, "A")
    cred = Credential.from_certificates([leaf, lab.intermediate])
    verdict = Verifier(cred, trust=TrustPolicy(ca_file=str(root_file))).check(value)
    assert verdict.reason is Reason.CERT_PROFILE


def test_from_libsecsipid_mapping() -> None:
    """libsecsipid CertVerify bits map onto named options (file options whose bit is not set
    are ignored, as libsecsipid does); missing files are refused, each with its option named."""
    parity = {"require_tnauthlist": False, "check_profile": False}
    cases = [
        ((0,), None),
        ((32,), TrustPolicy(verify_chain=False, **parity)),
        ((32 | 1,), TrustPolicy(verify_chain=False, **parity)),
        ((1,), TrustPolicy(system_cas=True, **parity)),  # Go falls back to the system roots
        ((2,), TrustPolicy(system_cas=True, **parity)),
        ((4, "/a", "/b", "/c"), TrustPolicy(ca_file="/a", **parity)),
        ((2 | 4, "/a"), TrustPolicy(ca_file="/a", system_cas=True, **parity)),
        ((8, "", "/b"), TrustPolicy(system_cas=True, intermediates_file="/b", **parity)),
        ((4 | 8 | 16, "/a", "/b", "/c"),
         TrustPolicy(ca_file="/a", intermediates_file="/b", crl_files=("/c",), **parity)),
    ]  # fmt: skip
    for args, expected in cases:
        assert TrustPolicy.from_libsecsipid(*args) == expected, args
    for args, message in (
        ((-1,), "CertVerify must not be negative"),
        ((4,), "CertVerify bit 4 needs CertCAFile"),
        ((8, "/a"), "CertVerify bit 8 needs CertCAInter"),
        ((16, "/a"), "CertVerify bit 16 needs CertCRLFile"),
    ):
        with pytest.raises(ValueError, match=f"^{message}$"):
            TrustPolicy.from_libsecsipid(*args)


# -- refusals that must hold on every path (issue 12) ----------------------------------------


def test_async_refuses_like_sync(lab: LabPKI, root_file: Path, tmp_path: Path) -> None:
    """averify/acheck apply the TrustPolicy exactly as verify/check do: an untrusted root, a
    revoked certificate and an orig outside a delegate certificate's TNs are refused, both
    while the chain is being validated (worker thread) and once it is cached (inline)."""
    import asyncio

    root = (lab.root_key, lab.root)
    crl = tmp_path / "revoked.crl"
    revoked = make_lab_pki(root=root)
    crl.write_bytes(
        make_crl(revoked.intermediate, revoked.intermediate_key, [revoked.leaf.serial_number])
        .public_bytes(serialization.Encoding.PEM)
    )  # fmt: skip
    delegate = make_lab_pki(root=root, ranges=[("12155550100", 100)])
    cases = [
        (make_lab_pki(), TrustPolicy(ca_file=str(root_file)), ORIG, Reason.CERT_UNTRUSTED),
        (revoked, TrustPolicy(ca_file=str(root_file), crl_files=(str(crl),)), ORIG,
         Reason.CERT_REVOKED),
        (delegate, TrustPolicy(ca_file=str(root_file)), "12155550200",
         Reason.CERT_TN_NOT_AUTHORIZED),
        (delegate, TrustPolicy(ca_file=str(root_file)), ORIG, Reason.VALID),
    ]  # fmt: skip
    for pki, policy, orig, reason in cases:
        value = Signer(pki.leaf_key, X5U).identity(orig, DEST, "A")
        sync = Verifier(credential(pki), trust=policy)
        asyn = Verifier(credential(pki), trust=policy)
        for _ in range(2):  # first the chain is built, then it comes from the cache
            verdict = asyncio.run(asyn.acheck(value))
            assert verdict.reason is reason, (verdict.reason, verdict.message)
            assert verdict.to_dict() == sync.check(value).to_dict()
            if reason is Reason.VALID:
                assert asyncio.run(asyn.averify(value)).orig == orig
            else:
                with pytest.raises(VerificationError) as exc:
                    asyncio.run(asyn.averify(value))
                assert exc.value.reason is reason


class _BudgetFetcher:
    """A CRL fetcher that refuses every fetch and notes the request budget left at each one
    (``inf``: asked outside any budget)."""

    def __init__(self) -> None:
        self.left: list[float] = []
        self.on_loop: list[bool] = []  # whether an event loop ran in the fetching thread

    def get(self, url: str, *, allow_http: bool | None = None) -> object:
        self.left.append(request_remaining(math.inf))
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        raise VerificationError(Reason.CERT_FETCH_FAILED, f"{url}: refused by the test")


def test_every_entry_point_checks_trust_at_its_now_within_its_budget(
    lab: LabPKI, tmp_path: Path
) -> None:
    """verify, averify, check and acheck, for a SHAKEN PASSporT and for an rcd one (which
    takes the path of div and rcd requests), judge the certificate at the ``now`` they are
    given -- here two days after it expired -- and fetch its CRLs within the request's
    budget (VerifyPolicy.timeout)."""
    pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url="http://crl.example/ca.crl",
                       leaf_not_after=dt.datetime.now(UTC) + dt.timedelta(days=1))  # fmt: skip
    policy = TrustPolicy(ca_file=str(pki.write(tmp_path)["root"]), fetch_crls=True)
    signer = Signer(pki.leaf_key, X5U)

    def values(iat: int) -> dict[str, str]:
        return {
            "shaken": signer.identity(ORIG, DEST, "A", iat=iat),
            "rcd": signer.rcd_identity(ORIG, DEST, RichCallData(nam="Bob's Plumbing"), iat=iat),
        }

    def outcomes(value: str, now: float, fetcher: _BudgetFetcher) -> list[Reason]:
        got = []
        for entry in ("verify", "averify", "check", "acheck"):
            verifier = Verifier(credential(pki), trust=TrustValidator(policy, fetcher),
                                policy=VerifyPolicy(timeout=2.0))  # fmt: skip
            if entry in ("check", "acheck"):
                run = verifier.check(value, now=now) if entry == "check" else asyncio.run(
                    verifier.acheck(value, now=now))  # fmt: skip
                got.append(run.reason)
                continue
            try:
                if entry == "verify":
                    verifier.verify(value, now=now)
                else:
                    asyncio.run(verifier.averify(value, now=now))
                got.append(Reason.VALID)
            except VerificationError as exc:
                got.append(exc.reason)
        return got

    later = pki.leaf.not_valid_after_utc.timestamp() + 2 * 86400
    for kind, value in values(int(later)).items():
        fetcher = _BudgetFetcher()
        assert outcomes(value, later, fetcher) == [Reason.CERT_EXPIRED] * 4, kind
    now = time.time()
    for kind, value in values(int(now)).items():
        fetcher = _BudgetFetcher()
        assert outcomes(value, now, fetcher) == [Reason.VALID] * 4, kind
        assert len(fetcher.left) >= 4, kind  # every entry point fetched the CRLs
        assert all(0 < left <= 2.0 for left in fetcher.left), (kind, fetcher.left)
        assert not any(fetcher.on_loop), kind  # averify/acheck: on a worker thread


def test_async_checks_each_chain_once_off_the_event_loop(
    lab: LabPKI, root_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """acheck validates a chain that is not cached yet on a worker thread, once; then, cached,
    inline, once per request; whether it is cached is judged at the request's now."""
    validator = TrustValidator(TrustPolicy(ca_file=str(root_file)))
    checks = _counting(monkeypatch, validator, "check")
    value = Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    chain = credential(lab)
    verifier = Verifier(chain, trust=validator)
    assert not validator.is_cached(chain)
    assert asyncio.run(verifier.acheck(value)).ok
    assert checks[0] == 1
    assert validator.is_cached(chain)
    assert asyncio.run(verifier.acheck(value)).ok
    assert checks[0] == 2

    # With revocation: a CRL that could not be fetched is asked again after a minute, judged
    # at the request's now -- two minutes on, on a worker thread again.
    pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url="http://crl.example/ca.crl")
    fetcher = _BudgetFetcher()
    validator = TrustValidator(TrustPolicy(ca_file=str(root_file), fetch_crls=True), fetcher)
    verifier = Verifier(credential(pki), trust=validator)
    signer = Signer(pki.leaf_key, X5U)
    t0 = time.time()
    for now in (t0, t0 + 120):
        value = signer.identity(ORIG, DEST, "A", iat=int(now))
        assert asyncio.run(verifier.acheck(value, now=now)).ok
    assert len(fetcher.on_loop) >= 2 and not any(fetcher.on_loop), fetcher.on_loop


def test_trust_of_a_fetched_certificate_within_the_budget_and_off_the_event_loop(
    lab: LabPKI, root_file: Path
) -> None:
    """check and acheck validate a certificate they had to fetch, fetching its CRLs within
    the request's budget; acheck on a worker thread, never blocking the event loop."""
    pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url="http://crl.example/ca.crl")
    value = Signer(pki.leaf_key, X5U).identity(ORIG, DEST, "A")
    for mode in ("sync", "async"):
        fetcher = _BudgetFetcher()
        validator = TrustValidator(TrustPolicy(ca_file=str(root_file), fetch_crls=True), fetcher)
        source = CachingProbeSource({X5U: credential(pki)}, set())
        verifier = Verifier(source, trust=validator, policy=VerifyPolicy(timeout=2.0))
        verdict = verifier.check(value) if mode == "sync" else asyncio.run(verifier.acheck(value))
        assert verdict.ok, (mode, verdict.reason, verdict.message)
        assert source.asked("credential_for") == [X5U]
        assert fetcher.left and all(0 < left <= 2.0 for left in fetcher.left), fetcher.left
        if mode == "async":
            assert not any(fetcher.on_loop), fetcher.on_loop


class _LendingSource(CachingProbeSource):
    """A certificate source as CertificateSource is one: it carries its fetch policy (whose
    timeout is the request budget by default), the trust its user chose (a TrustPolicy here)
    and its fetcher (which the verifier also uses for CRLs)."""

    def __init__(self, cred: Credential, trust: TrustPolicy | None, fetcher: Fetcher) -> None:
        super().__init__({X5U: cred}, set())
        self.fetch_policy = FetchPolicy(timeout=0.7)
        self.trust = trust
        self.fetcher = fetcher


class _RefusingFetcher(Fetcher):
    """Refuses every fetch, noting the URLs and the request budget left at each."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[tuple[str, float]] = []

    def get(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        self.asked.append((url, request_remaining(math.inf)))
        raise VerificationError(Reason.CERT_FETCH_FAILED, f"{url}: refused by the test")


def test_a_source_lends_the_verifier_its_budget_trust_and_fetcher(
    lab: LabPKI, root_file: Path
) -> None:
    """A Verifier over a certificate source takes, unless told otherwise, the source's fetch
    timeout as the request budget, the source's trust (a TrustPolicy is validated with the
    source's fetcher, CRLs included) and the source's fetcher for Rich Call Data content."""
    crl_url = "http://crl.example/ca.crl"
    pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url=crl_url)
    value = Signer(pki.leaf_key, X5U).identity(ORIG, DEST, "A")
    policy = TrustPolicy(ca_file=str(root_file), fetch_crls=True)
    fetcher = _RefusingFetcher()
    source = _LendingSource(credential(pki), policy, fetcher)
    assert Verifier(source).check(value).ok
    (fetch,) = [c for c in source.calls if c.how == "credential_for"]
    assert 0.5 < fetch.left <= 0.7, fetch  # the source's timeout, not the 5 s default
    assert [url for url, _ in fetcher.asked] == [crl_url]  # the source's fetcher
    assert 0 < fetcher.asked[0][1] <= 0.7
    # the source's trust refuses a chain from another root, unless the caller says no trust
    other = make_lab_pki()
    stranger = Signer(other.leaf_key, X5U).identity(ORIG, DEST, "A")
    untrusted = _LendingSource(credential(other), policy, _RefusingFetcher())
    assert Verifier(untrusted).check(stranger).reason is Reason.CERT_UNTRUSTED
    assert Verifier(untrusted, trust=None).check(stranger).ok
    assert Verifier(_LendingSource(credential(other), None, fetcher)).check(stranger).ok
    # Rich Call Data content goes through the source's fetcher too (its safety policy)
    icon = "https://rcd.example/icon.png"
    with_rcd = Signer(pki.leaf_key, X5U).identity(
        ORIG, DEST, "A", rcd=RichCallData(nam="Bob", icn=icon), rcd_contents={icon: b"icon"}
    )
    content = _RefusingFetcher()
    verifier = Verifier(_LendingSource(credential(pki), None, content),
                        policy=VerifyPolicy(fetch_rcd=True))  # fmt: skip
    verdict = verifier.check(with_rcd)
    assert verdict.ok and verdict.rcd_failure is not None
    assert verdict.rcd_failure.reason is Reason.RCD_FETCH_FAILED
    assert [url for url, _ in content.asked] == [icon]


def test_delegate_certificate_refuses_uri_orig(lab: LabPKI, root_file: Path) -> None:
    """RFC 9060: a certificate that lists TNs/ranges authorizes those numbers only; a PASSporT
    whose orig is a URI (no number) is outside them.  An SPC-only certificate does not scope
    orig, so the same URI PASSporT passes with it."""
    delegate = make_lab_pki(root=(lab.root_key, lab.root), spc="1234",
                            ranges=[("12155550100", 100)], tns=["12155559999"])  # fmt: skip
    trust = TrustPolicy(ca_file=str(root_file))
    claims = {"attest": "A", "dest": {"tn": [DEST]}, "iat": int(time.time()),
              "orig": {"uri": "sip:alice@example.org"}, "origid": ORIGID}  # fmt: skip
    for pki, reason in ((delegate, Reason.CERT_TN_NOT_AUTHORIZED), (lab, Reason.VALID)):
        token = Signer(pki.leaf_key, X5U).sign_claims(claims)
        value = build_identity(token, X5U)
        verdict = Verifier(credential(pki), trust=trust).check(value)
        assert verdict.reason is reason, (verdict.reason, verdict.message)


def test_a_stray_div_claim_does_not_move_the_authority_check(lab: LabPKI, root_file: Path) -> None:
    """The number a certificate must cover is orig, and div only in a div PASSporT (RFC 8946
    §4.2): a SHAKEN PASSporT that also carries a div claim (an extension claim, ignored) is
    judged on its orig, in both directions."""
    delegate = make_lab_pki(root=(lab.root_key, lab.root), spc="1234",
                            ranges=[("12155550100", 100)], tns=["12155559999"])  # fmt: skip
    verifier = Verifier(credential(delegate), trust=TrustPolicy(ca_file=str(root_file)))
    signer = Signer(delegate.leaf_key, X5U)
    for orig, div, reason in (
        ("12155550121", "12155550300", Reason.VALID),  # orig covered, div not
        ("12155550300", "12155550121", Reason.CERT_TN_NOT_AUTHORIZED),  # div covered, orig not
    ):
        claims = {"attest": "A", "dest": {"tn": [DEST]}, "iat": int(time.time()),
                  "orig": {"tn": orig}, "origid": ORIGID, "div": {"tn": div}}  # fmt: skip
        value = build_identity(signer.sign_claims(claims), X5U)
        verdict = verifier.check(value)
        assert verdict.reason is reason, (orig, div, verdict.reason, verdict.message)


def test_require_crl_refuses_a_one_certificate_chain(tmp_path: Path) -> None:
    """With require_crl, a chain of one certificate (a self-signed certificate that is itself
    the anchor, or a lone leaf without chain validation) has no issuer whose CRL could speak
    for it: cert-revocation-unknown.  Without require_crl the same chains pass."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = make_self_signed(key, spc="1234")
    anchor = tmp_path / "self.pem"
    anchor.write_bytes(pem(cert))
    value = Signer(key, X5U).identity(ORIG, DEST, "A")
    lone = Credential.from_certificates([cert])
    for base in (TrustPolicy(ca_file=str(anchor)), TrustPolicy(verify_chain=False)):
        strict = dataclasses.replace(base, require_crl=True)
        assert Verifier(lone, trust=base).check(value).ok
        verdict = Verifier(lone, trust=strict).check(value)
        assert verdict.reason is Reason.CERT_REVOCATION_UNKNOWN, verdict.message
        assert (verdict.sip_status, verdict.lib_code) == (437, -110)
        assert verdict.message == "revocation cannot be checked without the issuer"


def _crl(
    issuer: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    serials: list[int],
    *,
    this_update: dt.datetime,
    next_update: dt.datetime,
) -> x509.CertificateRevocationList:
    """A CRL with the given thisUpdate/nextUpdate (``make_crl`` dates from now)."""
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(this_update)
        .next_update(next_update)
    )
    for serial in serials:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial)
            .revocation_date(this_update).build()
        )  # fmt: skip
    return builder.sign(key, hashes.SHA256())


def test_require_crl_refuses_a_crl_past_next_update(
    lab: LabPKI, root_file: Path, tmp_path: Path
) -> None:
    """A CRL whose nextUpdate has passed is not current (RFC 5280 §5.1.2.5): with require_crl
    the leaf's revocation status is unknown.  The same CRL issued again with a future
    nextUpdate establishes it."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    root_crl = tmp_path / "root.crl"
    root_crl.write_bytes(make_crl(lab.root, lab.root_key).public_bytes(serialization.Encoding.PEM))
    for next_update, reason in ((now - dt.timedelta(hours=1), "cert-revocation-unknown"),
                                (now + dt.timedelta(hours=1), "valid")):  # fmt: skip
        crl = _crl(lab.intermediate, lab.intermediate_key, [12345],
                   this_update=now - dt.timedelta(days=2), next_update=next_update)  # fmt: skip
        path = tmp_path / f"inter-{reason}.crl"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        trust = TrustPolicy(ca_file=str(root_file), crl_files=(str(path), str(root_crl)),
                            require_crl=True)  # fmt: skip
        assert check(lab, trust) == reason


def test_fetched_crl_refreshed_after_next_update(lab: LabPKI, root_file: Path,
                                                 tmp_path: Path) -> None:  # fmt: skip
    """A CRL fetched from the distribution point holds until its nextUpdate; once time passes
    it, the CRL is fetched again and a serial revoked in the new one is refused, for a chain
    that was validated (and cached) before."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url=f"http://127.0.0.1:{port}/ca.crl")
    published = tmp_path / "published.crl"
    start = dt.datetime.now(UTC).replace(microsecond=0)
    first = _crl(pki.intermediate, pki.intermediate_key, [],
                 this_update=start - dt.timedelta(minutes=1),
                 next_update=start + dt.timedelta(minutes=10))  # fmt: skip
    published.write_bytes(first.public_bytes(serialization.Encoding.DER))
    server = CertServer(tmp_path / "crl", {"/ca.crl": {"body_file": str(published)}}, None,
                        port=port)  # fmt: skip
    try:
        trust = TrustValidator(
            TrustPolicy(ca_file=str(root_file), fetch_crls=True),
            Fetcher(FetchPolicy(allow_private=True)),
        )
        # One credential, as a certificate source hands it out while cached: its validated
        # chain is kept by the validator between verifications.
        verifier = Verifier(credential(pki), trust=trust)
        signer = Signer(pki.leaf_key, X5U)
        t0 = start.timestamp()

        def reason_at(t: float) -> str:
            return verifier.check(signer.identity(ORIG, DEST, "A", iat=int(t)), now=t).reason

        assert reason_at(t0) == "valid"
        assert server.hits()["/ca.crl"] == 1
        second = _crl(
            pki.intermediate,
            pki.intermediate_key,
            [pki.leaf.serial_number],
            this_update=start + dt.timedelta(minutes=5),
            next_update=start + dt.timedelta(minutes=20),
        )
        published.write_bytes(second.public_bytes(serialization.Encoding.DER))
        # Up to the first CRL's nextUpdate (inclusive) its answer stands (no refetch)...
        assert reason_at(t0 + 9 * 60) == "valid"
        assert reason_at(t0 + 10 * 60) == "valid"
        assert server.hits()["/ca.crl"] == 1
        # ...after it, the new CRL is fetched and revokes the leaf.
        assert reason_at(t0 + 11 * 60) == "cert-revoked"
        assert server.hits()["/ca.crl"] == 2
        assert reason_at(t0 + 12 * 60) == "cert-revoked"
    finally:
        server.stop()


# -- what mutation testing found unguarded (docs/testing.md) ----------------------------------


def test_refusal_messages_name_the_certificate_and_the_cause(lab: LabPKI, root_file: Path) -> None:
    """An operator reads which certificate failed and why: the subject (or, without one, the
    serial) and path validation's reason in words, without its object dump."""
    other = make_lab_pki()
    value = Signer(other.leaf_key, X5U).identity(ORIG, DEST, "A")
    verdict = Verifier(credential(other), trust=TrustPolicy(ca_file=str(root_file))).check(value)
    assert verdict.message == (
        f"{other.leaf.subject.rfc4514_string()} does not chain to a trusted root: none of the "
        "trust anchors (or intermediates given) issued it (signature does not match)"
    )
    anchors = "none of the trust anchors (or intermediates given) issued it"
    for text, brief in (
        ("validation failed: x (encountered processing <a> (encountered processing <b>)", "x"),
        ("validation failed: candidates exhausted: no interior errors", anchors),
        ("validation failed: candidates exhausted: expired", f"{anchors} (expired)"),
        ("something else", "something else"),
    ):
        assert _brief(ValueError(text)) == brief
    key = ec.generate_private_key(ec.SECP256R1())
    nameless = make_self_signed(key, spc="1234")
    assert _describe(nameless) == nameless.subject.rfc4514_string() != ""
    empty = (
        x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(nameless.subject)
        .public_key(key.public_key()).serial_number(4242)
        .not_valid_before(nameless.not_valid_before_utc)
        .not_valid_after(nameless.not_valid_after_utc).sign(key, hashes.SHA256())
    )  # fmt: skip
    assert _describe(empty) == "serial 1092"  # in hex


def test_failed_validation_is_cached(lab: LabPKI, root_file: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """An untrusted chain is validated once, not once per verification, and every refusal
    carries the reason and message of the first."""
    validator = TrustValidator(TrustPolicy(ca_file=str(root_file)))
    calls = _counting(monkeypatch, validator, "_verify_path")
    other = make_lab_pki()
    verifier = Verifier(credential(other), trust=validator)
    signer = Signer(other.leaf_key, X5U)
    verdicts = [verifier.check(signer.identity(ORIG, DEST, "A")) for _ in range(5)]
    assert calls == [1]
    assert {(v.reason, v.message) for v in verdicts} == {
        (Reason.CERT_UNTRUSTED, verdicts[0].message)
    }
    assert "does not chain to a trusted root" in verdicts[0].message


def test_bundle_with_an_unparsable_certificate_keeps_the_others(
    lab: LabPKI, tmp_path: Path
) -> None:
    """One certificate of an anchor bundle that cannot be parsed is skipped (and reported),
    not the reason to drop the whole bundle."""
    broken = b"-----BEGIN CERTIFICATE-----\nMIIBbroken\n-----END CERTIFICATE-----\n"
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(pem(make_lab_pki().root) + broken + pem(lab.root))
    validator = TrustValidator(TrustPolicy(ca_file=str(bundle)))
    assert check(lab, validator) == "valid"
    assert validator._material.problems == [f"{bundle}: 1 certificate(s) could not be parsed"]
    assert len(validator._material.anchors) == 2


# The system bundle holds roots with serial number 0, which cryptography warns about.
@pytest.mark.filterwarnings(
    "ignore:Parsed a serial number:cryptography.utils.CryptographyDeprecationWarning"
)
@pytest.mark.skipif(
    not os.path.exists("/etc/ssl/certs/ca-certificates.crt"),
    reason="no system CA bundle (Debian package ca-certificates)",
)
def test_system_cas(lab: LabPKI, root_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """system_cas (libsecsipid CertVerify 1/2) trusts the system bundle: OpenSSL's default file,
    SSL_CERT_FILE when set (even a missing one, which is then reported), else the usual
    bundle paths.  Our lab root is in none of the system bundles."""
    policy = TrustPolicy(system_cas=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(root_file))
    assert check(lab, policy) == "valid"
    missing = root_file.parent / "missing.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    verdict = Verifier(credential(lab), trust=policy).check(
        Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    )
    assert verdict.reason is Reason.NO_TRUST_ANCHORS and str(missing) in verdict.message
    monkeypatch.delenv("SSL_CERT_FILE")
    assert check(lab, policy) == "cert-untrusted"  # the system roots, not ours
    # An OpenSSL without a default file: the Debian/RHEL bundle paths are tried.
    import ssl

    paths = ssl.get_default_verify_paths()
    monkeypatch.setattr(ssl, "get_default_verify_paths", lambda: paths._replace(cafile=None))
    validator = TrustValidator(policy)
    assert check(lab, validator) == "cert-untrusted"
    assert validator._material.problems == []
    assert len(validator._material.anchors) > 10
    # On a RHEL-family system the bundle is elsewhere.
    rhel = "/etc/pki/tls/certs/ca-bundle.crt"
    monkeypatch.setattr(os.path, "exists", lambda path: path == rhel)
    validator = TrustValidator(policy)
    verdict = Verifier(credential(lab), trust=validator).check(
        Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    )
    assert verdict.message == f"no trust anchors: {rhel}: No such file or directory"


def test_revocation_edge_cases(lab: LabPKI, root_file: Path, tmp_path: Path) -> None:
    """A CRL not signed by the issuer is skipped, not the end of the search; a CRL is current
    up to and including its nextUpdate; a two-certificate chain (no chain validation) needs
    the one CRL of its issuer; each refusal says which certificate."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    forger = ec.generate_private_key(ec.SECP256R1())
    serial = lab.leaf.serial_number
    forged = _crl(lab.intermediate, forger, [], this_update=now - dt.timedelta(hours=1),
                  next_update=now + dt.timedelta(hours=1))  # fmt: skip
    revoking = _crl(lab.intermediate, lab.intermediate_key, [serial],
                    this_update=now - dt.timedelta(hours=1),
                    next_update=now + dt.timedelta(hours=1))  # fmt: skip
    files = []
    for name, crl in (("forged", forged), ("revoking", revoking)):
        path = tmp_path / f"{name}.crl"
        path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
        files.append(str(path))
    verdict = Verifier(credential(lab), trust=TrustPolicy(
        ca_file=str(root_file), crl_files=tuple(files))).check(
        Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A"))  # fmt: skip
    assert verdict.reason is Reason.CERT_REVOKED
    assert verdict.message == f"{lab.leaf.subject.rfc4514_string()} is revoked (CRL)"

    # Current up to nextUpdate inclusive (RFC 5280 §5.1.2.5), then not.
    next_update = now + dt.timedelta(hours=1)
    good = _crl(lab.intermediate, lab.intermediate_key, [], this_update=now,
                next_update=next_update)  # fmt: skip
    good_file = tmp_path / "good.crl"
    good_file.write_bytes(good.public_bytes(serialization.Encoding.DER))
    root_crl = tmp_path / "root.crl"
    root_crl.write_bytes(make_crl(lab.root, lab.root_key, next_update_days=30)
                         .public_bytes(serialization.Encoding.DER))  # fmt: skip
    strict = TrustPolicy(ca_file=str(root_file), crl_files=(str(good_file), str(root_crl)),
                         require_crl=True)  # fmt: skip
    t = next_update.timestamp()
    assert check(lab, strict, now=t) == "valid"
    unknown = Verifier(credential(lab), trust=strict).check(
        Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A", iat=int(t) + 1), now=t + 1
    )
    assert unknown.reason is Reason.CERT_REVOCATION_UNKNOWN
    assert unknown.message == (
        f"no current CRL signed by the issuer of {lab.leaf.subject.rfc4514_string()}"
    )

    # Without chain validation the chain is what x5u sent: leaf and intermediate.
    two = dataclasses.replace(strict, verify_chain=False, ca_file=None, crl_files=(str(good_file),))
    assert check(lab, two) == "valid"


def test_crl_fetch_only_when_asked_and_failures_handled(lab: LabPKI, root_file: Path,
                                                        tmp_path: Path) -> None:  # fmt: skip
    """fetch_crls off: the distribution points are not fetched even with a fetcher; on: a
    distribution point that fails leaves the status unknown (refused only with require_crl)
    and is not asked again within a minute; certificates without a distribution point are
    checked with what there is."""
    server = CertServer(tmp_path / "srv", {"/gone.crl": {"status": 404}}, None)
    try:
        fetcher = Fetcher(FetchPolicy(allow_private=True))
        pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url=server.url("/gone.crl"))
        # Revocation is checked (a CRL file), but distribution points are not fetched.
        crl_file = tmp_path / "root.crl"
        crl_file.write_bytes(
            make_crl(lab.root, lab.root_key).public_bytes(serialization.Encoding.DER)
        )
        off = TrustValidator(TrustPolicy(ca_file=str(root_file), crl_files=(str(crl_file),)),
                             fetcher)  # fmt: skip
        assert check(pki, off) == "valid"
        assert server.hits().get("/gone.crl", 0) == 0
        on = TrustValidator(TrustPolicy(ca_file=str(root_file), fetch_crls=True), fetcher)
        now = time.time()
        assert check(pki, on, now=now) == "valid"
        hits = server.hits()["/gone.crl"]
        assert hits >= 1
        assert check(pki, on, now=now + 30) == "valid"
        assert server.hits()["/gone.crl"] == hits  # remembered for a minute
        strict = TrustValidator(
            TrustPolicy(ca_file=str(root_file), fetch_crls=True, require_crl=True), fetcher
        )
        assert check(pki, strict) == "cert-revocation-unknown"
        # The lab chain without distribution points: nothing to fetch, nothing fails.
        assert check(lab, on) == "valid"
    finally:
        server.stop()


def test_validity_bounds_are_inclusive(root_file: Path, lab: LabPKI) -> None:
    """A certificate is valid from notBefore through notAfter inclusive (RFC 5280 §4.1.2.5),
    in UTC whatever the local time zone; outside, the refusal names the certificate."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    pki = make_lab_pki(root=(lab.root_key, lab.root), leaf_not_before=now - dt.timedelta(hours=1),
                       leaf_not_after=now + dt.timedelta(hours=1))  # fmt: skip
    trust = TrustPolicy(ca_file=str(root_file))
    subject = pki.leaf.subject.rfc4514_string()
    first, last = (
        pki.leaf.not_valid_before_utc.timestamp(),
        pki.leaf.not_valid_after_utc.timestamp(),
    )
    for t, reason in ((first - 1, "cert-not-yet-valid"), (first, "valid"), (last, "valid"),
                      (last + 1, "cert-expired")):  # fmt: skip
        verdict = Verifier(credential(pki), trust=trust).check(
            Signer(pki.leaf_key, X5U).identity(ORIG, DEST, "A", iat=int(t)), now=t
        )
        assert verdict.reason == reason, (t - first, verdict.message)
        if reason == "cert-expired":
            assert verdict.message == f"{subject} has expired"
        elif reason == "cert-not-yet-valid":
            assert verdict.message == f"{subject} is not yet valid"


def test_path_validation_time_is_utc(root_file: Path, lab: LabPKI,
                                     monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Path validation runs at the verification time in UTC: a local time zone 14 hours
    ahead does not make a certificate that expires within the hour look expired."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    pki = make_lab_pki(root=(lab.root_key, lab.root), leaf_not_after=now + dt.timedelta(hours=1))
    monkeypatch.setenv("TZ", "TST-14")
    time.tzset()
    try:
        assert check(pki, TrustPolicy(ca_file=str(root_file))) == "valid"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_no_trust_anchors_says_why(lab: LabPKI, tmp_path: Path) -> None:
    """Without any usable anchor the refusal (500: our configuration) lists the problems of
    the configured files, or says that they hold no certificate."""
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    missing = tmp_path / "missing"
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"not a certificate")
    value = Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    for policy, message in (
        (TrustPolicy(ca_dir=str(empty_dir)), "no certificates in the configured files"),
        (TrustPolicy(ca_dir=str(missing)), f"{missing}: No such file or directory"),
        (TrustPolicy(ca_file=str(junk), intermediates_file=str(missing)),
         f"{junk}: no certificate; {missing}: No such file or directory"),
    ):  # fmt: skip
        verdict = Verifier(credential(lab), trust=policy).check(value)
        assert verdict.reason is Reason.NO_TRUST_ANCHORS and verdict.sip_status == 500
        assert verdict.message == f"no trust anchors: {message}"


def test_anchor_sources_add_up(lab: LabPKI, root_file: Path, tmp_path: Path,
                               monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """ca_file, ca_dir and the system CAs are all anchors together: none replaces another."""
    other = tmp_path / "other"
    other.mkdir()
    (other / "other.pem").write_bytes(pem(make_lab_pki().root))
    assert check(lab, TrustPolicy(ca_file=str(root_file), ca_dir=str(other))) == "valid"
    monkeypatch.setenv("SSL_CERT_FILE", str(other / "other.pem"))
    assert check(lab, TrustPolicy(ca_file=str(root_file), system_cas=True)) == "valid"
    assert check(lab, TrustPolicy(ca_dir=str(other), system_cas=True)) == "cert-untrusted"


def test_anchor_files_are_rechecked_only_every_reload_interval(lab: LabPKI,
                                                               tmp_path: Path) -> None:  # fmt: skip
    """Within reload_interval a changed anchor file is not read again (one stat per interval,
    not per verification)."""
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pem(lab.root))
    validator = TrustValidator(TrustPolicy(ca_file=str(anchors), reload_interval=3600))
    assert check(lab, validator) == "valid"
    anchors.write_bytes(pem(make_lab_pki().root))
    os.utime(anchors, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert check(lab, validator) == "valid"


def test_is_cached_tells_when_check_needs_no_io(lab: LabPKI, root_file: Path,
                                                tmp_path: Path) -> None:  # fmt: skip
    """is_cached: False before a credential's chain is validated, True after; with fetched
    CRLs, only up to the time their answer holds (inclusive); False after the trust files
    changed."""
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pem(lab.root))
    plain = TrustValidator(TrustPolicy(ca_file=str(anchors), reload_interval=0))
    cred = credential(lab)
    verifier = Verifier(cred, trust=plain)
    assert not plain.is_cached(cred)
    assert verifier.check(Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")).ok
    assert plain.is_cached(cred) and plain.is_cached(cred, time.time() + 10**6)
    anchors.write_bytes(pem(lab.root) + pem(make_lab_pki().root))
    os.utime(anchors, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    plain._material.refresh()
    assert not plain.is_cached(cred)

    published = tmp_path / "published.crl"  # read by the server at each request
    server = CertServer(tmp_path / "srv", {"/ca.crl": {"body_file": str(published)}}, None)
    try:
        pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url=server.url("/ca.crl"))
        start = dt.datetime.now(UTC).replace(microsecond=0)
        until = start + dt.timedelta(minutes=10)
        crl = _crl(
            pki.intermediate,
            pki.intermediate_key,
            [],
            this_update=start - dt.timedelta(minutes=1),
            next_update=until,
        )
        published.write_bytes(crl.public_bytes(serialization.Encoding.DER))
        revoking = TrustValidator(
            TrustPolicy(ca_file=str(root_file), fetch_crls=True),
            Fetcher(FetchPolicy(allow_private=True)),
        )
        cred = credential(pki)
        t0 = start.timestamp()
        assert not revoking.is_cached(cred, t0)
        value = Signer(pki.leaf_key, X5U).identity(ORIG, DEST, "A", iat=int(t0))
        assert Verifier(cred, trust=revoking).check(value, now=t0).ok
        t1 = until.timestamp()
        assert revoking.is_cached(cred, t0) and revoking.is_cached(cred, t1)
        assert not revoking.is_cached(cred, t1 + 1)
        assert revoking.is_cached(cred)  # the wall clock is still before nextUpdate
    finally:
        server.stop()


class _CountingFetcher:
    """Stands in for the Fetcher in CRL cache timing tests: answers ``body`` (or raises a
    fetch failure when it is None) and counts the requests per URL."""

    def __init__(self, body: bytes | None) -> None:
        self.body = body
        self.calls: dict[str, int] = {}

    def get(self, url: str, *, allow_http: bool | None = None) -> object:
        assert allow_http is True  # CRLs are signed: http is fine for them (ATIS-1000080)
        self.calls[url] = self.calls.get(url, 0) + 1
        if self.body is None:
            raise VerificationError(Reason.CERT_FETCH_FAILED, f"{url}: refused by the test")
        return FetchResult(url, 200, {}, self.body, time.time())


def test_fetched_crl_lifetimes(lab: LabPKI, root_file: Path) -> None:
    """A fetched CRL is kept until its nextUpdate, at most an hour; an expired one for a
    second; a failed fetch is retried after a minute; the CRL cache holds 257 URLs and then
    starts afresh."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    t0 = now.timestamp()
    policy = TrustPolicy(ca_file=str(root_file), fetch_crls=True)

    def lifetime(next_update: dt.datetime | None) -> tuple[_CountingFetcher, TrustValidator]:
        body = None
        if next_update is not None:
            crl = _crl(lab.intermediate, lab.intermediate_key, [],
                       this_update=now - dt.timedelta(days=2), next_update=next_update)  # fmt: skip
            body = crl.public_bytes(serialization.Encoding.DER)
        fetcher = _CountingFetcher(body)
        return fetcher, TrustValidator(policy, fetcher)  # type: ignore[arg-type]

    for next_update, kept in (
        (now + dt.timedelta(days=7), 3600.0),  # at most an hour
        (now + dt.timedelta(minutes=10), 600.0),  # until nextUpdate
        (now - dt.timedelta(days=1), 1.0),  # expired: a second
        (None, 60.0),  # the fetch failed: a minute
    ):
        fetcher, validator = lifetime(next_update)
        expires, crl = validator._fetch_crl("http://ca.example/a.crl", t0)
        assert expires == t0 + kept and (crl is None) is (next_update is None)
        validator._fetch_crl("http://ca.example/a.crl", t0)
        validator._fetch_crl("http://ca.example/a.crl", t0 + kept - 0.5)
        assert fetcher.calls["http://ca.example/a.crl"] == 1, next_update
        validator._fetch_crl("http://ca.example/a.crl", t0 + kept)
        assert fetcher.calls["http://ca.example/a.crl"] == 2, next_update

    fetcher, validator = lifetime(now + dt.timedelta(days=7))
    urls = [f"http://ca.example/{i}.crl" for i in range(258)]
    for url in urls[:257]:
        validator._fetch_crl(url, t0)
    validator._fetch_crl(urls[0], t0)
    assert fetcher.calls[urls[0]] == 1  # 257 URLs: all still cached
    validator._fetch_crl(urls[257], t0)  # the 258th: the cache starts afresh
    validator._fetch_crl(urls[0], t0)
    assert fetcher.calls[urls[0]] == 2


def _counting(monkeypatch: pytest.MonkeyPatch, validator: TrustValidator, name: str) -> list[int]:
    """Count the calls of one of ``validator``'s methods (calls[0])."""
    calls = [0]
    original = getattr(validator, name)

    def counting(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(validator, name, counting)
    return calls


def test_cached_chain_refusals_at_iat_and_now(lab: LabPKI, root_file: Path) -> None:
    """Once a chain is validated, each verification still checks its validity window at iat
    and at now, and says which of the two fell outside."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    pki = make_lab_pki(root=(lab.root_key, lab.root), leaf_not_before=now - dt.timedelta(hours=1),
                       leaf_not_after=now + dt.timedelta(hours=1))  # fmt: skip
    first = pki.leaf.not_valid_before_utc.timestamp()
    last = pki.leaf.not_valid_after_utc.timestamp()
    verifier = Verifier(credential(pki), trust=TrustPolicy(ca_file=str(root_file)))
    signer = Signer(pki.leaf_key, X5U)

    def verdict(iat: float, t: float) -> tuple[str, str]:
        v = verifier.check(signer.identity(ORIG, DEST, "A", iat=int(iat)), now=t)
        return v.reason.value, v.message

    assert verdict(first + 60, first + 60)[0] == "valid"  # validated and cached
    assert verdict(first - 1, first + 1) == (
        "cert-not-yet-valid",
        f"certificate chain not yet valid at iat ({first - 1:.0f})",
    )
    assert verdict(last, last) == ("valid", "")
    assert verdict(last - 1, last + 1) == (
        "cert-expired",
        f"certificate chain expired before now ({last + 1:.0f})",
    )
    assert verdict(last + 1, last + 1) == (
        "cert-expired", f"certificate chain expired before iat ({last + 1:.0f})")  # fmt: skip


def test_revocation_is_checked_once_per_chain(lab: LabPKI, root_file: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """With CRL files, the chain's revocation status is established once and kept with the
    validated chain: later verifications neither rebuild the path nor recheck the CRLs."""
    crl = tmp_path / "inter.crl"
    crl.write_bytes(make_crl(lab.intermediate, lab.intermediate_key, [])
                    .public_bytes(serialization.Encoding.DER))  # fmt: skip
    validator = TrustValidator(TrustPolicy(ca_file=str(root_file), crl_files=(str(crl),)))
    paths = _counting(monkeypatch, validator, "_verify_path")
    revocations = _counting(monkeypatch, validator, "_check_revocation")
    verifier = Verifier(credential(lab), trust=validator)
    signer = Signer(lab.leaf_key, X5U)
    for _ in range(5):
        assert verifier.check(signer.identity(ORIG, DEST, "A")).ok
    assert (paths[0], revocations[0]) == (1, 1)


def test_revoked_is_remembered_unknown_is_not(lab: LabPKI, root_file: Path, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A revoked chain stays refused without being validated again; an unknown revocation
    status (the CRL could not be fetched) is asked again once the failed fetch is due for a
    retry, and the chain passes as soon as a CRL says it is good."""
    published = tmp_path / "published.crl"
    server = CertServer(tmp_path / "srv", {"/ca.crl": {"body_file": str(published)}}, None)
    try:
        pki = make_lab_pki(root=(lab.root_key, lab.root), crl_url=server.url("/ca.crl"))
        root_crl = tmp_path / "root.crl"  # the intermediate's status, from a file
        root_crl.write_bytes(
            make_crl(lab.root, lab.root_key).public_bytes(serialization.Encoding.DER)
        )
        strict = TrustValidator(
            TrustPolicy(
                ca_file=str(root_file),
                crl_files=(str(root_crl),),
                fetch_crls=True,
                require_crl=True,
            ),
            Fetcher(FetchPolicy(allow_private=True)),
        )
        paths = _counting(monkeypatch, strict, "_verify_path")
        verifier = Verifier(credential(pki), trust=strict)
        signer = Signer(pki.leaf_key, X5U)
        t0 = time.time()

        def reason_at(t: float) -> str:
            return verifier.check(signer.identity(ORIG, DEST, "A", iat=int(t)), now=t).reason

        assert reason_at(t0) == "cert-revocation-unknown"  # nothing published yet (404)
        good = make_crl(pki.intermediate, pki.intermediate_key, [])
        published.write_bytes(good.public_bytes(serialization.Encoding.DER))
        assert reason_at(t0 + 61) == "valid"

        revoked = make_lab_pki(root=(lab.root_key, lab.root), crl_url=server.url("/ca.crl"))
        published.write_bytes(make_crl(revoked.intermediate, revoked.intermediate_key,
                                       [revoked.leaf.serial_number])
                              .public_bytes(serialization.Encoding.DER))  # fmt: skip
        before = paths[0]
        fresh = TrustValidator(TrustPolicy(ca_file=str(root_file), fetch_crls=True),
                               Fetcher(FetchPolicy(allow_private=True)))  # fmt: skip
        fresh_paths = _counting(monkeypatch, fresh, "_verify_path")
        v = Verifier(credential(revoked), trust=fresh)
        value = Signer(revoked.leaf_key, X5U).identity(ORIG, DEST, "A")
        assert [v.check(value).reason for _ in range(3)] == ["cert-revoked"] * 3
        assert fresh_paths[0] == 1 and paths[0] == before
    finally:
        server.stop()


def test_chain_recheck_keeps_the_rest_of_the_chain(
    lab: LabPKI, root_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a fetched CRL is due, only the revocation status is established again: the chain
    stays validated (no path building), keeps its validity window and TNAuthList scope, and
    the next CRL is asked for when that one is due in turn."""
    published = tmp_path / "published.crl"
    server = CertServer(tmp_path / "srv", {"/ca.crl": {"body_file": str(published)}}, None)
    try:
        start = dt.datetime.now(UTC).replace(microsecond=0)
        t0 = start.timestamp()
        pki = make_lab_pki(
            root=(lab.root_key, lab.root),
            crl_url=server.url("/ca.crl"),
            ranges=[("12155550100", 100)],
            leaf_not_before=start - dt.timedelta(hours=1),
            leaf_not_after=start + dt.timedelta(days=1),
        )

        def publish(minutes: int) -> None:
            crl = _crl(
                pki.intermediate,
                pki.intermediate_key,
                [],
                this_update=start - dt.timedelta(minutes=1),
                next_update=start + dt.timedelta(minutes=minutes),
            )
            published.write_bytes(crl.public_bytes(serialization.Encoding.DER))

        validator = TrustValidator(
            TrustPolicy(ca_file=str(root_file), fetch_crls=True),
            Fetcher(FetchPolicy(allow_private=True)),
        )
        paths = _counting(monkeypatch, validator, "_verify_path")
        revocations = _counting(monkeypatch, validator, "_check_revocation")
        verifier = Verifier(credential(pki), trust=validator)
        signer = Signer(pki.leaf_key, X5U)

        def verdict(t: float, orig: str = ORIG) -> Verdict:
            return verifier.check(signer.identity(orig, DEST, "A", iat=int(t)), now=t)

        publish(10)
        assert verdict(t0).ok
        publish(30)
        for minutes, fetches in ((11, 2), (12, 2), (31, 3), (32, 3)):
            t = t0 + minutes * 60
            if minutes == 31:
                publish(60)
            assert verdict(t).ok
            assert server.hits()["/ca.crl"] == fetches
        assert (paths[0], revocations[0]) == (1, 3)  # built once; statuses at 0, 11 and 31 min
        t = t0 + 33 * 60
        outside = verdict(t, "12155550200")
        assert outside.reason is Reason.CERT_TN_NOT_AUTHORIZED
        assert outside.message == (
            "orig '12155550200' is not among the TNs/ranges of the certificate's TNAuthList"
        )
        end = pki.leaf.not_valid_after_utc.timestamp() + 1
        assert verdict(end).reason is Reason.CERT_EXPIRED
        assert verdict(t0 - 2 * 3600).reason is Reason.CERT_NOT_YET_VALID
        assert paths[0] == 1
    finally:
        server.stop()


def test_tnauthlist_and_profile_refusals(lab: LabPKI, root_file: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The SHAKEN certificate rules (RFC 8226 §9, ATIS-1000080 §6.4.1) refuse with messages
    that name the problem; a malformed TNAuthList is only refused when one is required;
    these refusals are remembered like path failures."""
    root = (lab.root_key, lab.root)
    trust = TrustPolicy(ca_file=str(root_file))
    bare = make_lab_pki(root=root, tnauthlist=False)
    verdict = Verifier(credential(bare), trust=trust).check(
        Signer(bare.leaf_key, X5U).identity(ORIG, DEST, "A"))  # fmt: skip
    assert verdict.message == (
        f"certificate {bare.leaf.subject.rfc4514_string()} has no TNAuthList extension"
    )

    def leaf_with(
        *,
        tnauth_der: bytes | None = None,
        sha: hashes.HashAlgorithm | None = None,
        key_usage: bool = True,
    ) -> tuple[ec.EllipticCurvePrivateKey, Credential]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "S")]))
            .issuer_name(lab.intermediate.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(key_usage, False, False, False, False, False, False,
                                         False, False), critical=True)
            .add_extension(x509.UnrecognizedExtension(
                x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26"),
                tnauth_der or bytes.fromhex("3008a0061604") + b"1234"), critical=False)
        )  # fmt: skip
        leaf = builder.sign(lab.intermediate_key, sha or hashes.SHA256())
        return key, Credential.from_certificates([leaf, lab.intermediate])

    malformed = bytes.fromhex("3003a00116")
    key, cred = leaf_with(tnauth_der=malformed)
    value = Signer(key, X5U).identity(ORIG, DEST, "A")
    validator = TrustValidator(trust)
    profile_checks = _counting(monkeypatch, validator, "_check_profile")
    verifier = Verifier(cred, trust=validator)
    for _ in range(3):
        verdict = verifier.check(value)
        assert verdict.reason is Reason.CERT_NO_TNAUTHLIST
        assert verdict.message == "malformed TNAuthList: truncated DER"
    assert profile_checks[0] == 1
    relaxed = dataclasses.replace(trust, require_tnauthlist=False)
    assert Verifier(cred, trust=relaxed).check(value).ok

    for kwargs, message in (
        ({"sha": hashes.SHA384()}, "certificate signature algorithm is ecdsa-with-SHA384, "
                                   "not ecdsa-with-SHA256 (ATIS-1000080 §6.4.1)"),
        ({"key_usage": False}, "key usage lacks digitalSignature"),
    ):  # fmt: skip
        key, cred = leaf_with(**kwargs)  # type: ignore[arg-type]
        validator = TrustValidator(trust)
        paths = _counting(monkeypatch, validator, "_verify_path")
        verifier = Verifier(cred, trust=validator)
        value = Signer(key, X5U).identity(ORIG, DEST, "A")
        for _ in range(3):
            verdict = verifier.check(value)
            assert (verdict.reason, verdict.message) == (Reason.CERT_PROFILE, message)
        assert paths[0] == 0  # refused before path validation, and remembered
        assert Verifier(cred, trust=dataclasses.replace(trust, check_profile=False)).check(value).ok

    key_only = Credential(lab.leaf_key.public_key())
    verdict = Verifier(key_only, trust=trust).check(
        Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    )
    assert verdict.message == (
        "a bare public key cannot be validated: the credential must be a certificate"
    )


def test_trust_files_loading(lab: LabPKI, tmp_path: Path) -> None:
    """Anchor directories skip subdirectories and notes (*.txt, *.md, *.0) without complaint;
    a missing file or a bad CRL is reported and the rest still loads; certificates of the
    intermediates file never become anchors."""
    d = tmp_path / "anchors"
    (d / "a-subdir").mkdir(parents=True)
    for name in ("README.txt", "notes.md", "1a2b3c4d.0"):
        (d / name).write_text("not a certificate")
    (d / "z-lab.pem").write_bytes(pem(lab.root))
    validator = TrustValidator(TrustPolicy(ca_dir=str(d)))
    assert check(lab, validator) == "valid"
    assert validator._material.problems == []

    missing = tmp_path / "missing.pem"
    bad_crl = tmp_path / "bad.crl"
    bad_crl.write_bytes(b"not a CRL")
    validator = TrustValidator(
        TrustPolicy(ca_file=str(missing), ca_dir=str(d), crl_files=(str(bad_crl),))
    )
    assert check(lab, validator) == "valid"
    assert validator._material.problems == [
        f"{missing}: No such file or directory",
        f"{bad_crl}: not a PEM or DER CRL",
    ]

    other = make_lab_pki()
    inter = tmp_path / "inter.pem"
    inter.write_bytes(pem(other.root) + pem(other.intermediate))
    policy = TrustPolicy(ca_dir=str(d), intermediates_file=str(inter))
    assert check(other, policy) == "cert-untrusted"


def test_remembered_failure_ends_when_the_trust_files_change(lab: LabPKI, tmp_path: Path) -> None:
    """A chain refused as untrusted is validated again, for the same credential, once the
    anchors change."""
    anchors = tmp_path / "anchors.pem"
    anchors.write_bytes(pem(make_lab_pki().root))
    verifier = Verifier(credential(lab),
                        trust=TrustPolicy(ca_file=str(anchors), reload_interval=0))  # fmt: skip
    value = Signer(lab.leaf_key, X5U).identity(ORIG, DEST, "A")
    assert verifier.check(value).reason is Reason.CERT_UNTRUSTED
    anchors.write_bytes(pem(lab.root))
    os.utime(anchors, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert verifier.check(value).ok


def test_anchor_bundle_parsing(lab: LabPKI, tmp_path: Path) -> None:
    """PEM bundles: other blocks (a key, a CRL) are passed over, every certificate after them
    is read, every unparsable one counted; a DER file is one certificate."""
    other = make_lab_pki()
    key_block = other.leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    broken = b"-----BEGIN CERTIFICATE-----\nMIIBbroken\n-----END CERTIFICATE-----\n"
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(key_block + broken + pem(other.root) + broken + pem(lab.root))
    der = tmp_path / "root.der"
    der.write_bytes(lab.root.public_bytes(serialization.Encoding.DER))
    for path, anchors, problems in (
        (bundle, 2, [f"{bundle}: 2 certificate(s) could not be parsed"]),
        (der, 1, []),
    ):
        validator = TrustValidator(TrustPolicy(ca_file=str(path)))
        assert check(lab, validator) == "valid"
        assert len(validator._material.anchors) == anchors
        assert validator._material.problems == problems


def test_trust_policy_arguments() -> None:
    """One CRL file may be given as a string; chain validation without any anchor is a
    configuration error that says what to give."""
    assert TrustPolicy(verify_chain=False, crl_files="/etc/stir/ca.crl").crl_files == (  # type: ignore[arg-type]
        "/etc/stir/ca.crl",
    )
    with pytest.raises(ValueError) as exc:
        TrustPolicy()
    assert str(exc.value) == (
        "TrustPolicy: chain validation needs trust anchors: give ca_file or ca_dir (the "
        "STI-PA trust list) or system_cas=True; or verify_chain=False"
    )


def test_path_validity_is_judged_at_now_for_every_certificate(lab: LabPKI, root_file: Path) -> None:
    """Every certificate of the path is judged at the verifier's now: an intermediate that
    expired is cert-expired (named), not merely untrusted; a root that expired makes the path
    untrusted even while the leaf and the intermediate are still valid."""
    root = (lab.root_key, lab.root)
    trust = TrustPolicy(ca_file=str(root_file))
    now = dt.datetime.now(UTC)
    # intermediate for 2 x 10 days, leaf for 100 days: at +30 days only the leaf is valid
    short = make_lab_pki(root=root, days=10, leaf_not_after=now + dt.timedelta(days=100))
    later = (now + dt.timedelta(days=30)).timestamp()
    value = Signer(short.leaf_key, X5U).identity(ORIG, DEST, "A", iat=int(later))
    verdict = Verifier(credential(short), trust=trust).check(value, now=later)
    assert verdict.reason is Reason.CERT_EXPIRED
    assert "secsipid lab STI-CA" in verdict.message and "has expired" in verdict.message
    # leaf and intermediate outlive the root: a day after the root expired, no path holds
    long = make_lab_pki(root=root, days=2000)
    after_root = lab.root.not_valid_after_utc.timestamp() + 86400
    value = Signer(long.leaf_key, X5U).identity(ORIG, DEST, "A", iat=int(after_root))
    verdict = Verifier(credential(long), trust=trust).check(value, now=after_root)
    assert verdict.reason is Reason.CERT_UNTRUSTED, (verdict.reason, verdict.message)
    assert check(long, trust) == "valid"  # today the same path holds


def test_max_chain_depth_is_applied(lab: LabPKI, root_file: Path) -> None:
    """TrustPolicy.max_chain_depth bounds the path: the lab path (leaf, intermediate, root)
    holds with the default, not with a depth that leaves no room for the intermediate."""
    assert check(lab, TrustPolicy(ca_file=str(root_file))) == "valid"
    assert check(lab, TrustPolicy(ca_file=str(root_file), max_chain_depth=0)) == "cert-untrusted"


def test_certificate_source_keeps_and_shows_its_trust_policy(root_file: Path) -> None:
    """The policy a CertificateSource was given stays readable on it (trust_policy) and in its
    repr, as the fetch policy does: what a log line or a debugger shows of a node."""
    policy = TrustPolicy(ca_file=str(root_file))
    source = CertificateSource(trust=policy)
    assert source.trust_policy is policy
    assert f"trust={policy!r}" in repr(source)
    assert CertificateSource(trust=None).trust_policy is None
