"""Trust in the signer's certificate (RFC 8226, RFC 5280, ATIS-1000080, RFC 9060).

:class:`TrustPolicy` says what to check; :class:`TrustValidator` checks it for a credential at
the time of ``iat`` and now:

* the chain, built from the x5u response (leaf first, then intermediates) plus configured
  intermediates, up to a configured trust anchor (the STI-PA trust list: a PEM bundle or a
  directory), with ``cryptography.x509.verification`` (RFC 5280 path validation: signatures,
  name chaining, basic constraints, validity);
* validity of every certificate in the chain at ``iat`` and at ``now`` (RFC 8224 §6.2 step 4);
* revocation from CRLs in files and from the certificates' CRL distribution points (fetched
  through the same safe fetcher and cached), each CRL's issuer and signature checked against
  the issuing certificate of the chain (libsecsipid only compares serial numbers);
* the leaf's profile: ECDSA P-256 key, ecdsa-with-SHA256 signature, key usage including
  digitalSignature when the extension is present (ATIS-1000080 §6.4.1);
* the TNAuthList (RFC 8226 §9): present; for certificates that list TNs or ranges (RFC 9060
  delegate certificates) ``orig`` must fall inside them.

Validated chains are cached per credential (the source hands out the same object while its
cache entry lives); per verification only the validity window, revocation version and
TNAuthList coverage are re-checked.  Anchor, intermediate and CRL files are re-read when they
change (checked at most every ``reload_interval`` seconds), without a restart.
"""

from __future__ import annotations

import datetime as dt
import itertools
import os
import ssl
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import SignatureAlgorithmOID
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
)
from cryptography.x509.verification import VerificationError as X509VerificationError

from ._errors import VerificationError
from ._fetch import TransientFetchError
from ._keys import CERT_PARSE_ERRORS, Credential, _pem_blocks, describe_certificate
from ._reasons import Reason
from ._tnauthlist import TNAuthList, TNAuthListError

if TYPE_CHECKING:
    from ._fetch import Fetcher

__all__ = ["TrustPolicy", "TrustValidator"]

_CV_TIME, _CV_SYSCA, _CV_CAFILE, _CV_INTER, _CV_CRL, _CV_TIME_ONLY = 1, 2, 4, 8, 16, 32


@dataclass(frozen=True, slots=True, kw_only=True)
class TrustPolicy:
    """What makes a signer's certificate acceptable.  Immutable.

    * ``ca_file``/``ca_dir``: trust anchors (PEM bundle / directory of PEM or DER files);
      ``system_cas`` adds the system store (libsecsipid ``CertVerify`` bit 2).
    * ``intermediates_file``: extra intermediate CAs (besides those in the x5u response).
    * ``crl_files``: CRL files (PEM or DER); ``fetch_crls``: also fetch the CRL distribution
      points named in the certificates; ``require_crl``: refuse when revocation status cannot
      be established for every non-root certificate (default: check what is available).
    * ``verify_chain``: build and check the chain to an anchor (default on).  With it off,
      only validity times (``check_time``) and the profile/TNAuthList checks apply.
    * ``require_tnauthlist``, ``check_profile``: the SHAKEN certificate rules (default on).
    * ``reload_interval``: how often anchor/intermediate/CRL files are checked for changes.
    """

    ca_file: str | None = None
    ca_dir: str | None = None
    system_cas: bool = False
    intermediates_file: str | None = None
    crl_files: tuple[str, ...] = ()
    fetch_crls: bool = False
    require_crl: bool = False
    verify_chain: bool = True
    check_time: bool = True
    require_tnauthlist: bool = True
    check_profile: bool = True
    max_chain_depth: int = 4
    reload_interval: float = 1.0

    def __post_init__(self) -> None:
        if isinstance(self.crl_files, str):
            object.__setattr__(self, "crl_files", (self.crl_files,))
        if self.verify_chain and not (self.ca_file or self.ca_dir or self.system_cas):
            raise ValueError(
                "TrustPolicy: chain validation needs trust anchors: give ca_file or ca_dir (the "
                "STI-PA trust list) or system_cas=True; or verify_chain=False"
            )

    @classmethod
    def from_libsecsipid(
        cls, cert_verify: int, ca_file: str = "", ca_inter: str = "", crl_file: str = ""
    ) -> TrustPolicy | None:
        """The equivalent of libsecsipid's ``CertVerify`` bitmask and file options (Kamailio
        ``libopt``: ``CertVerify``, ``CertCAFile``, ``CertCAInter``, ``CertCRLFile``).

        0 -> ``None`` (no certificate checks, libsecsipid's default); 32 -> validity times only;
        1 -> times and a chain to the system CAs (as libsecsipid: Go falls back to system
        roots); 2 system CAs; 4 ``ca_file``; 8 ``ca_inter``; 16 ``crl_file`` (whose issuer
        and signature we check, unlike libsecsipid).  TNAuthList and profile checks stay off
        for parity; switch them on with :meth:`dataclasses.replace`.
        """
        if cert_verify < 0:
            raise ValueError("CertVerify must not be negative")
        if cert_verify == 0:
            return None
        if cert_verify & _CV_TIME_ONLY:
            return cls(
                verify_chain=False, check_time=True, require_tnauthlist=False, check_profile=False
            )
        if cert_verify & _CV_CAFILE and not ca_file:
            raise ValueError("CertVerify bit 4 needs CertCAFile")
        if cert_verify & _CV_INTER and not ca_inter:
            raise ValueError("CertVerify bit 8 needs CertCAInter")
        if cert_verify & _CV_CRL and not crl_file:
            raise ValueError("CertVerify bit 16 needs CertCRLFile")
        custom = bool(cert_verify & _CV_CAFILE)
        return cls(
            ca_file=ca_file if custom else None,
            system_cas=bool(cert_verify & _CV_SYSCA) or not custom,
            intermediates_file=ca_inter if cert_verify & _CV_INTER else None,
            crl_files=(crl_file,) if cert_verify & _CV_CRL else (),
            require_tnauthlist=False,
            check_profile=False,
        )


# -- loading trust material ----------------------------------------------------------------------


def _load_certs(data: bytes) -> tuple[list[x509.Certificate], int]:
    """The certificates of a PEM bundle or a DER file, and how many could not be parsed.

    PEM blocks are parsed one by one: a bundle (the system's, the STI-PA list) with one
    certificate that cryptography refuses keeps all the others.  (System bundles hold roots
    with serial number 0, which cryptography warns about and announces it will refuse.)
    """
    if b"-----BEGIN" in data:
        certs: list[x509.Certificate] = []
        bad = 0
        for label, block in _pem_blocks(data):
            if label != b"CERTIFICATE":
                continue
            try:
                certs.append(x509.load_pem_x509_certificate(block))
            except ValueError:
                bad += 1
        return certs, bad
    try:
        return [x509.load_der_x509_certificate(data)], 0
    except ValueError:
        return [], 0


def _load_crl(data: bytes) -> x509.CertificateRevocationList | None:
    """The CRL in ``data``, or None.  A CRL may come from a distribution point the signer's
    certificate names: the parts revocation checking reads (issuer, update times, revoked
    serial numbers) are parsed here, so that a malformed one is "no CRL", never an exception
    from a lazy property later (a KeyError for an odd issuer string tag, ValueError...)."""
    try:
        crl = (
            x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
        )
        crl.issuer.rfc4514_string()
        crl.last_update_utc  # noqa: B018 - read for its parse errors
        crl.next_update_utc  # noqa: B018
        crl.extensions  # noqa: B018
        for revoked in crl:
            revoked.serial_number  # noqa: B018
    except CERT_PARSE_ERRORS:
        return None
    return crl


def _system_ca_paths() -> list[str]:
    paths = ssl.get_default_verify_paths()
    found = [p for p in (paths.cafile, os.environ.get("SSL_CERT_FILE")) if p]
    for candidate in ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"):
        if not found and os.path.exists(candidate):
            found.append(candidate)
    return found


class _Material:
    """Anchors, intermediates and CRLs from files, with the files' versions."""

    def __init__(self, policy: TrustPolicy) -> None:
        self.policy = policy
        self.version = 0
        self.anchors: list[x509.Certificate] = []
        self.store: Store | None = None
        self.intermediates: list[x509.Certificate] = []
        self.crls: list[x509.CertificateRevocationList] = []
        self.problems: list[str] = []
        self._stamp: tuple[object, ...] | None = None
        self._checked = 0.0
        self._lock = threading.Lock()

    def _files(self) -> list[tuple[str, str]]:
        p = self.policy
        files = [("ca", f) for f in ([p.ca_file] if p.ca_file else [])]
        if p.system_cas:
            files += [("ca", f) for f in _system_ca_paths()]
        if p.ca_dir:
            try:
                names = sorted(os.listdir(p.ca_dir))
            except OSError:
                names = []
                files.append(("ca", p.ca_dir))
            files += [("ca", os.path.join(p.ca_dir, n)) for n in names]
        if p.intermediates_file:
            files.append(("inter", p.intermediates_file))
        files += [("crl", f) for f in p.crl_files]
        return files

    @staticmethod
    def _stat(path: str) -> object:
        try:
            st = os.stat(path)
        except OSError as exc:
            return exc.errno
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def refresh(self) -> None:
        """Reload when a file changed; at most every ``reload_interval`` seconds."""
        now = time.monotonic()
        if self._stamp is not None and now - self._checked < self.policy.reload_interval:
            return
        with self._lock:
            if self._stamp is not None and now - self._checked < self.policy.reload_interval:
                return
            files = self._files()
            stamp = tuple((kind, path, self._stat(path)) for kind, path in files)
            if stamp != self._stamp:
                self._load(files)
                self._stamp = stamp
                self.version += 1
            self._checked = now

    def _load(self, files: list[tuple[str, str]]) -> None:
        anchors: list[x509.Certificate] = []
        inters: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        problems: list[str] = []
        for kind, path in files:
            try:
                if os.path.isdir(path):
                    continue
                data = Path(path).read_bytes()
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror}")
                continue
            if kind == "crl":
                crl = _load_crl(data)
                if crl is None:
                    problems.append(f"{path}: not a PEM or DER CRL")
                else:
                    crls.append(crl)
                continue
            certs, bad = _load_certs(data)
            if bad:
                problems.append(f"{path}: {bad} certificate(s) could not be parsed")
            if not certs and not path.endswith((".txt", ".md", ".0")):
                problems.append(f"{path}: no certificate")
            (anchors if kind == "ca" else inters).extend(certs)
        self.anchors, self.intermediates, self.crls, self.problems = anchors, inters, crls, problems
        self.store = Store(anchors) if anchors else None


# -- validation ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Chain:
    """A chain validated once, re-checked cheaply per verification."""

    chain: tuple[x509.Certificate, ...]
    not_before: float
    not_after: float
    tnauth: TNAuthList | None
    material_version: int
    revocation_until: float  # when fetched CRLs used for the revocation check go stale


def _ts(value: dt.datetime) -> float:
    return value.timestamp()


_describe = describe_certificate


class TrustValidator:
    """Applies a :class:`TrustPolicy` to credentials (see the module docstring)."""

    def __init__(self, policy: TrustPolicy, fetcher: Fetcher | None = None) -> None:
        self.policy = policy
        self._material = _Material(policy)
        self._fetcher = fetcher
        self._chains: weakref.WeakKeyDictionary[Credential, _Chain | VerificationError] = (
            weakref.WeakKeyDictionary()
        )
        self._crl_cache: dict[str, tuple[float, x509.CertificateRevocationList | None]] = {}
        self._lock = threading.Lock()

    # The hot path: a cached chain costs a dict lookup and a few comparisons.
    def check(
        self, credential: Credential, *, iat: int, now: float, orig_tn: str | None
    ) -> TNAuthList | None:
        """Raise :class:`VerificationError` unless ``credential`` is acceptable for a PASSporT
        issued at ``iat`` with calling number ``orig_tn`` (canonical, or None for a URI)."""
        self._material.refresh()
        cached = self._chains.get(credential)
        if isinstance(cached, VerificationError):
            if self._material.version == getattr(cached, "material_version", -1):
                raise VerificationError(cached.reason, cached.message)
            cached = None
        if cached is None or cached.material_version != self._material.version:
            cached = self._build(credential, now)
        if self.policy.check_time:
            for t, what in ((iat, "iat"), (now, "now")):
                if t > cached.not_after:
                    raise VerificationError(
                        Reason.CERT_EXPIRED, f"certificate chain expired before {what} ({t:.0f})"
                    )
                if t < cached.not_before:
                    raise VerificationError(
                        Reason.CERT_NOT_YET_VALID,
                        f"certificate chain not yet valid at {what} ({t:.0f})",
                    )
        if self._needs_revocation() and now > cached.revocation_until:
            until = self._check_revocation(cached.chain, now)
            cached = _Chain(
                cached.chain, cached.not_before, cached.not_after, cached.tnauth,
                cached.material_version, until,
            )  # fmt: skip
            self._chains[credential] = cached
        tnauth = cached.tnauth
        if (
            tnauth is not None
            and tnauth.lists_numbers
            and (orig_tn is None or not tnauth.covers(orig_tn))
        ):
            raise VerificationError(
                Reason.CERT_TN_NOT_AUTHORIZED,
                f"orig {orig_tn!r} is not among the TNs/ranges of the certificate's TNAuthList",
            )
        return tnauth

    def is_cached(self, credential: Credential, now: float | None = None) -> bool:
        """Whether :meth:`check` can answer without I/O (no path building, no CRL fetch):
        async callers run it on a worker thread otherwise."""
        cached = self._chains.get(credential)
        if not isinstance(cached, _Chain) or cached.material_version != self._material.version:
            return False
        if not self._needs_revocation():
            return True
        now = time.time() if now is None else now
        return now <= cached.revocation_until

    def _needs_revocation(self) -> bool:
        p = self.policy
        return bool(p.crl_files or p.fetch_crls or p.require_crl)

    def _fail(self, credential: Credential, error: VerificationError) -> VerificationError:
        error.material_version = self._material.version  # type: ignore[attr-defined]
        self._chains[credential] = error
        return VerificationError(error.reason, error.message)

    def _build(self, credential: Credential, now: float) -> _Chain:
        policy, material = self.policy, self._material
        leaf = credential.certificate
        if leaf is None:
            raise self._fail(
                credential,
                VerificationError(
                    Reason.CERT_INVALID,
                    "a bare public key cannot be validated: the credential must be a certificate",
                ),
            )
        if policy.check_profile:
            self._check_profile(credential, leaf)
        tnauth: TNAuthList | None
        try:
            tnauth = TNAuthList.from_certificate(leaf)
        except (TNAuthListError, ValueError) as exc:
            if policy.require_tnauthlist:
                raise self._fail(
                    credential,
                    VerificationError(Reason.CERT_NO_TNAUTHLIST, f"malformed TNAuthList: {exc}"),
                ) from exc
            tnauth = None
        if tnauth is None and policy.require_tnauthlist:
            raise self._fail(
                credential,
                VerificationError(
                    Reason.CERT_NO_TNAUTHLIST,
                    f"certificate {_describe(leaf)} has no TNAuthList extension",
                ),
            )
        chain: tuple[x509.Certificate, ...] = (leaf, *credential.intermediates)
        if policy.verify_chain:
            chain = self._verify_path(credential, leaf, now)
        not_before = max(_ts(c.not_valid_before_utc) for c in chain)
        not_after = min(_ts(c.not_valid_after_utc) for c in chain)
        until = float("inf")
        if self._needs_revocation():
            try:
                until = self._check_revocation(chain, now)
            except VerificationError as exc:
                if exc.reason is Reason.CERT_REVOKED:
                    raise self._fail(credential, exc) from None
                raise
        result = _Chain(chain, not_before, not_after, tnauth, material.version, until)
        self._chains[credential] = result
        return result

    def _check_profile(self, credential: Credential, leaf: x509.Certificate) -> None:
        if not isinstance(leaf.public_key(), ec.EllipticCurvePublicKey):  # pragma: no cover
            raise self._fail(credential, VerificationError(Reason.CERT_PROFILE, "not an EC key"))
        if leaf.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
            raise self._fail(
                credential,
                VerificationError(
                    Reason.CERT_PROFILE,
                    f"certificate signature algorithm is {leaf.signature_algorithm_oid._name}, "
                    "not ecdsa-with-SHA256 (ATIS-1000080 §6.4.1)",
                ),
            )
        try:
            ku = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
        except x509.ExtensionNotFound:
            return
        if not ku.digital_signature:
            raise self._fail(
                credential,
                VerificationError(Reason.CERT_PROFILE, "key usage lacks digitalSignature"),
            )

    def _verify_path(
        self, credential: Credential, leaf: x509.Certificate, now: float
    ) -> tuple[x509.Certificate, ...]:
        material = self._material
        if material.store is None:
            problems = "; ".join(material.problems) or "no certificates in the configured files"
            raise VerificationError(Reason.NO_TRUST_ANCHORS, f"no trust anchors: {problems}")
        when = dt.datetime.fromtimestamp(now, dt.UTC)
        intermediates = [*credential.intermediates, *material.intermediates]
        # Time problems first, so that they get their own reason codes.
        # Not cached: a certificate that is not yet valid becomes valid.
        for cert in (leaf, *credential.intermediates):
            if _ts(cert.not_valid_after_utc) < now:
                raise VerificationError(Reason.CERT_EXPIRED, f"{_describe(cert)} has expired")
            if _ts(cert.not_valid_before_utc) > now:
                raise VerificationError(
                    Reason.CERT_NOT_YET_VALID, f"{_describe(cert)} is not yet valid"
                )
        verifier = (
            PolicyBuilder()
            .store(material.store)
            .time(when)
            .max_chain_depth(self.policy.max_chain_depth)
            .extension_policies(
                # CA certificates: RFC 5280/CABF rules.  The SHAKEN leaf has no SAN or EKU, so
                # the end-entity policy permits any extension; its profile is checked above.
                ca_policy=ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )
        try:
            verified = verifier.verify(leaf, intermediates)
        except X509VerificationError as exc:
            raise self._fail(
                credential,
                VerificationError(
                    Reason.CERT_UNTRUSTED,
                    f"{_describe(leaf)} does not chain to a trusted root: {_brief(exc)}",
                ),
            ) from None
        return tuple(verified.chain)

    # -- revocation ------------------------------------------------------------------------------

    def _crls_for(
        self, cert: x509.Certificate, now: float
    ) -> tuple[list[x509.CertificateRevocationList], float]:
        """CRLs that may cover ``cert``, and until when the fetched ones are current."""
        crls = list(self._material.crls)
        until = float("inf")
        if self.policy.fetch_crls and self._fetcher is not None:
            try:
                cdp = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
            except x509.ExtensionNotFound:
                cdp = x509.CRLDistributionPoints([])
            for point in cdp:
                for name in point.full_name or ():
                    if isinstance(name, x509.UniformResourceIdentifier):
                        expires, crl = self._fetch_crl(name.value, now)
                        until = min(until, expires)
                        if crl is not None:
                            crls.append(crl)
        return [c for c in crls if c.issuer == cert.issuer], until

    def _fetch_crl(
        self, url: str, now: float
    ) -> tuple[float, x509.CertificateRevocationList | None]:
        cached = self._crl_cache.get(url)
        if cached is not None and cached[0] > now:
            return cached
        assert self._fetcher is not None
        crl: x509.CertificateRevocationList | None = None
        try:
            # ATIS-1000080 publishes CRLs over http; they are signed, so http is acceptable.
            result = self._fetcher.get(url, allow_http=True)
            crl = _load_crl(result.body)
        except TransientFetchError:
            # Cut short by the request's time budget (or not started: too many fetches at
            # once): nothing learnt about the server, nothing remembered; the next request
            # tries again.
            return now, None
        except VerificationError:
            crl = None
        if crl is not None and crl.next_update_utc is not None:
            expires = min(_ts(crl.next_update_utc), now + 3600)
        else:
            expires = now + 60  # failed or undated: retry within a minute, no sooner
        with self._lock:
            if len(self._crl_cache) > 256:
                self._crl_cache.clear()
            entry = (max(expires, now + 1), crl)
            self._crl_cache[url] = entry
        return entry

    def _check_revocation(self, chain: tuple[x509.Certificate, ...], now: float) -> float:
        """Raise when a certificate of the chain is revoked; return until when the answer
        holds (the earliest expiry of the fetched CRLs used)."""
        until = float("inf")
        for cert, issuer in itertools.pairwise(chain):
            status = None
            crls, crls_until = self._crls_for(cert, now)
            until = min(until, crls_until)
            for crl in crls:
                if not _signed_by(crl, issuer):
                    continue  # a CRL not signed by this certificate's issuer says nothing
                if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                    raise VerificationError(
                        Reason.CERT_REVOKED, f"{_describe(cert)} is revoked (CRL)"
                    )
                if crl.next_update_utc is None or _ts(crl.next_update_utc) >= now:
                    status = "good"
            if status is None and self.policy.require_crl:
                raise VerificationError(
                    Reason.CERT_REVOCATION_UNKNOWN,
                    f"no current CRL signed by the issuer of {_describe(cert)}",
                )
        if len(chain) == 1 and self.policy.require_crl:
            raise VerificationError(
                Reason.CERT_REVOCATION_UNKNOWN, "revocation cannot be checked without the issuer"
            )
        return until


def _signed_by(crl: x509.CertificateRevocationList, issuer: x509.Certificate) -> bool:
    """Whether ``issuer`` signed ``crl``.  Without chain validation (``verify_chain=False``) the
    issuer is whatever the x5u server sent, possibly with a key that cannot sign at all
    (X25519: cryptography raises TypeError): such a certificate signed nothing."""
    try:
        return crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except CERT_PARSE_ERRORS:  # TypeError included
        return False


def _brief(exc: Exception) -> str:
    """The path builder's reason in words a user can act on."""
    text = str(exc).split(" (encountered processing", 1)[0].removeprefix("validation failed: ")
    if text.startswith("candidates exhausted: "):
        detail = text.removeprefix("candidates exhausted: ")
        if "no interior errors" in detail:
            return "none of the trust anchors (or intermediates given) issued it"
        return f"none of the trust anchors (or intermediates given) issued it ({detail})"
    return text
