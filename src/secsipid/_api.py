"""The seed's two functions, shaped like Kamailio's ``secsipid`` module.

``add_identity`` is ``secsipid_add_identity(origTN, destTN, attest, origID, x5u, keyPath)``
returning the header value; ``check_identity`` is ``secsipid_check_identity(keyPath)`` returning
a :class:`Verdict`.  Both take key paths and reload the files when they change; behind them sit
one cached :class:`Signer` per key and one :class:`Verifier` per configuration.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from ._keys import private_key_from_file
from ._signer import Signer
from ._verifier import CredentialFile, Verdict, Verifier, VerifyPolicy

__all__ = ["add_identity", "check_identity"]

_CACHE_MAX = 64
_lock = threading.Lock()
_signers: dict[int, Signer] = {}
_verifiers: dict[tuple[str, int], Verifier] = {}


def _signer_for(key: ec.EllipticCurvePrivateKey) -> Signer:
    # Keyed by the key object's identity: the file cache hands out the same object until the
    # file changes, and the Signer keeps a reference so the id cannot be reused meanwhile.
    signer = _signers.get(id(key))
    if signer is None:
        signer = Signer(key)
        with _lock:
            if len(_signers) >= _CACHE_MAX:
                _signers.clear()
            _signers[id(key)] = signer
    return signer


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
    return _signer_for(key).identity(orig_tn, dest_tn, attest, origid, iat=iat, x5u=x5u)


def _verifier_for(key_path: str, expire: int) -> Verifier:
    verifier = _verifiers.get((key_path, expire))
    if verifier is None:
        verifier = Verifier(CredentialFile(key_path), policy=VerifyPolicy(expire=expire))
        with _lock:
            if len(_verifiers) >= _CACHE_MAX:
                _verifiers.clear()
            _verifiers[(key_path, expire)] = verifier
    return verifier


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

    ``key_path`` names a public key or certificate file (PEM or DER).  An empty ``key_path``
    means "the certificate from the info URL", which needs a certificate source; without one
    the verdict is ``no-key-source``.  ``expire`` is the freshness window in seconds (Kamailio's
    ``expire`` modparam, default 300); ``timeout`` bounds the certificate download.
    """
    if expire < 0:
        raise ValueError("expire must not be negative")
    del timeout  # used once certificates are fetched from info (see the certificate issue)
    path = os.fspath(key_path)
    verifier = (
        _verifier_for(path, int(expire))
        if path
        else Verifier(policy=VerifyPolicy(expire=int(expire)))
    )
    return verifier.check(identity, orig_tn=orig_tn, dest_tn=dest_tn, now=now)
