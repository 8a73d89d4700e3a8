"""The seed's two functions, shaped like Kamailio's ``secsipid`` module.

``add_identity`` is ``secsipid_add_identity(origTN, destTN, attest, origID, x5u, keyPath)``
returning the header value; ``check_identity`` is ``secsipid_check_identity(keyPath)`` returning
a :class:`Verdict`.  Both take key paths and reload the files when they change; behind them sit
one cached :class:`Signer` per key and one :class:`Verifier` per configuration.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import TypeVar

from ._errors import VerificationError
from ._keys import private_key_from_file
from ._reasons import Reason
from ._signer import Signer
from ._source import CertificateSource
from ._trust import TrustPolicy
from ._verifier import CredentialFile, Verdict, Verifier, VerifyPolicy

__all__ = ["add_identity", "check_identity", "set_default_source"]

T = TypeVar("T")
_CACHE_MAX = 64
_lock = threading.Lock()
_memo: dict[Hashable, object] = {}
_signers: dict[int, Signer] = {}
_default_source: CertificateSource | None = None


def _memoized(key: Hashable, make: Callable[[], T]) -> T:
    """One object per configuration, built on first use (bounded; cleared when full)."""
    found = _memo.get(key)
    if found is None:
        found = make()
        with _lock:
            if len(_memo) >= _CACHE_MAX:
                _memo.clear()
            _memo[key] = found
    return found  # type: ignore[return-value]


def add_identity(
    orig_tn: str,
    dest_tn: str | Sequence[str],
    attest: str,
    origid: str,
    x5u: str,
    key_path: str | os.PathLike[str],
    *,
    iat: int | None = None,
) -> str:
    """Sign a SHAKEN PASSporT and return the full Identity header value
    ``<jws>;info=<x5u>;alg=ES256;ppt=shaken``.  An empty ``origid`` gets a random UUID.

    Raises :class:`KeyLoadError` for an unusable key file and :class:`SigningError` for
    unacceptable values (attest not A/B/C, a number without digits, a non-UUID origid).
    """
    key = private_key_from_file(key_path)
    # Keyed by the key object: the file cache hands out the same object until the file
    # changes, and the Signer keeps a reference, so the id cannot be reused meanwhile.
    signer = _signers.get(id(key))
    if signer is None:
        signer = Signer(key)
        with _lock:
            if len(_signers) >= _CACHE_MAX:
                _signers.clear()
            _signers[id(key)] = signer
    return signer.identity(orig_tn, dest_tn, attest, origid, iat=iat, x5u=x5u)


def set_default_source(source: CertificateSource | None) -> None:
    """The certificate source ``check_identity(identity, "")`` uses (None: from environment).

    Without one, the source is built from ``SECSIPID_CA_FILE`` / ``SECSIPID_CA_DIR`` (the STI-PA
    trust list) with the default fetch policy (https only, public addresses only).
    """
    global _default_source
    _default_source = source


def _source_for(timeout: float) -> CertificateSource:
    if _default_source is not None:
        return _default_source
    ca_file = os.environ.get("SECSIPID_CA_FILE", "")
    ca_dir = os.environ.get("SECSIPID_CA_DIR", "")
    if not (ca_file or ca_dir):
        raise VerificationError(
            Reason.NO_TRUST_ANCHORS,
            "downloading the certificate from info needs trust anchors: set SECSIPID_CA_FILE or "
            "SECSIPID_CA_DIR to the STI-PA trust list, or call secsipid.set_default_source("
            "CertificateSource(trust=...)) (trust=None accepts any certificate)",
        )
    return _memoized(
        ("source", float(timeout), ca_file, ca_dir),
        lambda: CertificateSource(
            trust=TrustPolicy(ca_file=ca_file or None, ca_dir=ca_dir or None), timeout=timeout
        ),
    )


def check_identity(
    identity: str | Iterable[str],
    key_path: str | os.PathLike[str] = "",
    *,
    expire: int = 300,
    timeout: float = 5,
    orig_tn: str | None = None,
    dest_tn: str | Sequence[str] | None = None,
    now: float | None = None,
) -> Verdict:
    """Check a request's Identity header value(s) and return a :class:`Verdict`.

    ``key_path`` names a public key or certificate file (PEM or DER), trusted as configured.
    An empty ``key_path`` means "the certificate from the info URL": downloaded within
    ``timeout`` seconds, cached, and validated against the trust anchors of the default source
    (see :func:`set_default_source`).  ``expire`` is the freshness window in seconds (Kamailio's
    ``expire`` modparam, default 300).

    Give all the Identity values of the request: a forwarded call is valid through its chain
    of ``div`` PASSporTs (RFC 8946), whose last ``dest`` must be ``dest_tn`` (the call target,
    normally the Request-URI); the Verdict reports the chain and any Rich Call Data.
    """
    if expire < 0:
        raise ValueError("expire must not be negative")
    path = os.fspath(key_path)
    if path:
        verifier = _memoized(
            ("file", path, expire),
            lambda: Verifier(CredentialFile(path), policy=VerifyPolicy(expire=int(expire))),
        )
    else:
        try:
            source = _source_for(timeout)
        except VerificationError as exc:
            return Verdict.from_error(exc)
        verifier = _memoized(
            ("url", id(source), expire),
            lambda: Verifier(source, policy=VerifyPolicy(expire=int(expire))),
        )
    return verifier.check(identity, orig_tn=orig_tn, dest_tn=dest_tn, now=now)
