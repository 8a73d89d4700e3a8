"""Loading keys and certificates, and caching what was loaded from files.

SHAKEN keys are EC P-256 (RFC 8225 §4.2 ES256, ATIS-1000080 §6.4.1).  We accept what operators
actually have on disk:

* private keys: PEM ``EC PRIVATE KEY`` (SEC1, as ``openssl ecparam -genkey`` writes it, with or
  without the ``EC PARAMETERS`` block), PEM ``PRIVATE KEY`` (PKCS#8, RFC 8226 §6 recommends it),
  ``ENCRYPTED PRIVATE KEY`` with a password, and DER of either;
* public credentials: PEM ``PUBLIC KEY``, PEM ``CERTIFICATE`` (one or several: leaf first, then
  intermediates, as x5u serves them), DER certificate or DER SubjectPublicKeyInfo.

Everything else (RSA, P-384, garbage, an encrypted key without password, a private key where
a public credential is expected) raises :class:`KeyLoadError` with a stable code.

Certificates come from servers we do not trust (the ``info`` URL), and ``cryptography`` parses
most of a certificate lazily: a v4 version field, a garbage extension, an extension present
twice or a name with an unusual string tag loads fine and raises (``ValueError``,
``DuplicateExtension``, ``KeyError``...) only when that part is first read -- during trust
checks, ``repr`` or ``Verdict.spc``.  A :class:`Credential` therefore reads every part of its
certificates that this package uses when it is built, and refuses a malformed one with
``KeyLoadError("key-invalid")`` (``cert-invalid``, 437, for a certificate from ``info``).

A key loaded from a path is cached by the file's identity (mtime with nanoseconds, size,
inode, device) and reloaded only when that changes: one ``stat()`` per use, no read, no parse.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ._errors import KeyLoadError
from ._tnauthlist import TNAuthList

__all__ = [
    "Credential",
    "credential_from_file",
    "load_credential",
    "load_private_key",
    "private_key_from_file",
]

# What cryptography raises when a lazily parsed part of a hostile certificate is malformed:
# ValueError (bad DER inside an extension), KeyError (a name attribute with a string tag it has
# no type for), InvalidVersion (version field not v1-v3), DuplicateExtension (RFC 5280 §4.2:
# "A certificate MUST NOT include more than one instance of a particular extension"),
# UnsupportedGeneralNameType, UnsupportedAlgorithm (a key type it cannot load), TypeError (a
# name attribute whose ASN.1 type does not fit its OID, e.g. a BIT STRING common name).
CERT_PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    KeyError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
    UnsupportedAlgorithm,
)

_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]{1,64})-----")
_PEM_END = b"-----END "
# Files larger than this are not keys or certificate chains; refuse before reading them whole.
MAX_KEY_FILE_SIZE = 1 << 20


def _check_curve(key: object, path: str | None) -> None:
    if not isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        raise KeyLoadError(
            "key-not-ec", f"{type(key).__name__} is not an EC key: ES256 needs EC P-256", path=path
        )
    if not isinstance(key.curve, ec.SECP256R1):
        raise KeyLoadError(
            "key-wrong-curve", f"EC key on curve {key.curve.name}: ES256 needs P-256", path=path
        )


def _pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """The PEM blocks of ``data`` as (label, block).  One forward pass: certificate bodies come
    from servers we do not trust, and a backtracking pattern (BEGIN ... END with the same
    label) costs seconds on 64 KiB of unmatched BEGIN lines."""
    blocks: list[tuple[bytes, bytes]] = []
    pos = 0
    while (begin := _PEM_BEGIN.search(data, pos)) is not None:
        end = data.find(_PEM_END, begin.end())
        if end < 0:
            break
        label = begin.group(1)
        end_marker = _PEM_END + label + b"-----"
        if data.startswith(end_marker, end):
            blocks.append((label, data[begin.start() : end + len(end_marker)]))
            pos = end + len(end_marker)
        else:  # an END for another label: this block is broken, look further
            pos = end + len(_PEM_END)
    return blocks


def load_private_key(
    data: bytes, password: bytes | None = None, *, path: str | None = None
) -> ec.EllipticCurvePrivateKey:
    """Load an EC P-256 private key from PEM (SEC1 or PKCS#8, optionally encrypted) or DER."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError("key data must be bytes")
    blocks = _pem_blocks(bytes(data))
    key: object
    try:
        if blocks:
            private = [pem for label, pem in blocks if label.endswith(b"PRIVATE KEY")]
            if not private:
                labels = ", ".join(label.decode() for label, _ in blocks)
                raise KeyLoadError(
                    "key-invalid", f"no private key in PEM (found: {labels})", path=path
                )
            key = serialization.load_pem_private_key(private[0], password)
        elif b"-----BEGIN" in data:
            raise KeyLoadError("key-invalid", "truncated or malformed PEM", path=path)
        else:
            key = serialization.load_der_private_key(bytes(data), password)
    except KeyLoadError:
        raise
    except TypeError as exc:
        # cryptography raises TypeError for a missing or superfluous password.
        code = "key-encrypted" if password is None else "key-invalid"
        raise KeyLoadError(code, str(exc), path=path) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        msg = (
            "cannot load the private key (wrong password?)"
            if password
            else ("not a valid PEM or DER private key")
        )
        raise KeyLoadError("key-invalid", msg, path=path) from exc
    _check_curve(key, path)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def check_certificate(cert: x509.Certificate, path: str | None = None) -> None:
    """Read every part of ``cert`` that this package (and path validation) uses -- version,
    subject, issuer, validity, every extension, the public key -- so that a malformed one is
    refused here, once, instead of raising later from a lazy property.

    Raises :class:`KeyLoadError` ``key-invalid``.
    """
    part = "version"
    try:
        cert.version  # noqa: B018 - read for its parse errors
        part = "subject"
        cert.subject.rfc4514_string()
        part = "issuer"
        cert.issuer.rfc4514_string()
        part = "validity"
        cert.not_valid_before_utc  # noqa: B018
        cert.not_valid_after_utc  # noqa: B018
        part = "extensions"
        cert.extensions  # noqa: B018 - parses each known extension, refuses duplicates
        part = "public key"
        cert.public_key()
    except CERT_PARSE_ERRORS as exc:
        if isinstance(exc, KeyError):
            detail = f"a value with an unsupported ASN.1 string tag ({exc})"
        else:
            detail = str(exc).split(" {", 1)[0][:120] or type(exc).__name__
        raise KeyLoadError(
            "key-invalid", f"malformed certificate {part}: {detail}", path=path
        ) from exc


class Credential:
    """A verification credential: an EC P-256 public key, and the certificate (plus any
    intermediates) it came with, if it came in one.

    Certificates are checked when the credential is built (:func:`check_certificate`), so every
    property of a credential, and of the verdicts that carry it, is safe to read.
    """

    __slots__ = ("__weakref__", "_tnauth", "certificate", "intermediates", "public_key")

    _tnauth: TNAuthList | None

    def __init__(
        self,
        public_key: ec.EllipticCurvePublicKey,
        certificate: x509.Certificate | None = None,
        intermediates: tuple[x509.Certificate, ...] = (),
    ) -> None:
        _check_curve(public_key, None)
        if certificate is not None:
            for cert in (certificate, *intermediates):
                check_certificate(cert)
        self.public_key = public_key
        self.certificate = certificate
        self.intermediates = intermediates

    @classmethod
    def from_certificates(cls, chain: list[x509.Certificate]) -> Credential:
        """The credential of a chain, leaf first.  Raises :class:`KeyLoadError`: ``key-invalid``
        for a malformed certificate, ``key-not-ec``/``key-wrong-curve`` for the leaf's key."""
        leaf = chain[0]
        check_certificate(leaf)
        key = leaf.public_key()
        _check_curve(key, None)
        return cls(key, leaf, tuple(chain[1:]))  # type: ignore[arg-type]

    @property
    def tnauthlist(self) -> TNAuthList | None:
        """The leaf certificate's TNAuthList (RFC 8226), or None (none, malformed, no cert)."""
        try:
            return self._tnauth
        except AttributeError:
            pass
        tnauth = None
        if self.certificate is not None:
            try:
                tnauth = TNAuthList.from_certificate(self.certificate)
            except CERT_PARSE_ERRORS:  # TNAuthListError is a ValueError
                tnauth = None
        self._tnauth = tnauth
        return tnauth

    @property
    def spc(self) -> str | None:
        """The Service Provider Code of the leaf certificate's TNAuthList, if any."""
        tnauth = self.tnauthlist
        return tnauth.spc if tnauth is not None else None

    def __repr__(self) -> str:
        if self.certificate is not None:
            return f"Credential(certificate={describe_certificate(self.certificate)!r})"
        return "Credential(public_key=P-256)"


def describe_certificate(cert: x509.Certificate) -> str:
    """The subject as an RFC 4514 string, for messages; never raises (a certificate that was
    not checked may hold a name cryptography cannot render: then its serial number)."""
    try:
        return cert.subject.rfc4514_string() or f"serial {cert.serial_number:x}"
    except CERT_PARSE_ERRORS:
        return f"serial {cert.serial_number:x}"


def load_credential(data: bytes, *, path: str | None = None) -> Credential:
    """Load a public credential: PEM/DER certificate(s) or public key."""
    if not isinstance(data, bytes | bytearray):
        raise TypeError("credential data must be bytes")
    data = bytes(data)
    blocks = _pem_blocks(data)
    try:
        if blocks:
            certs = [pem for label, pem in blocks if label == b"CERTIFICATE"]
            if certs:
                return Credential.from_certificates(
                    [x509.load_pem_x509_certificate(pem) for pem in certs]
                )
            pubs = [pem for label, pem in blocks if label == b"PUBLIC KEY"]
            if pubs:
                key = serialization.load_pem_public_key(pubs[0])
                _check_curve(key, path)
                assert isinstance(key, ec.EllipticCurvePublicKey)
                return Credential(key)
            if any(label.endswith(b"PRIVATE KEY") for label, _ in blocks):
                raise KeyLoadError(
                    "key-is-private",
                    "a private key was given where a public key or certificate is expected",
                    path=path,
                )
            labels = ", ".join(label.decode() for label, _ in blocks)
            raise KeyLoadError(
                "key-invalid", f"no certificate or public key in PEM (found: {labels})", path=path
            )
        if b"-----BEGIN" in data:
            raise KeyLoadError("key-invalid", "truncated or malformed PEM", path=path)
        try:
            return Credential.from_certificates([x509.load_der_x509_certificate(data)])
        except ValueError:
            pass
        key = serialization.load_der_public_key(data)
        _check_curve(key, path)
        assert isinstance(key, ec.EllipticCurvePublicKey)
        return Credential(key)
    except KeyLoadError as exc:
        if exc.path is None and path is not None:
            raise KeyLoadError(exc.code, exc.message, path=path) from exc
        raise
    except x509.InvalidVersion as exc:  # raised by the loaders themselves
        raise KeyLoadError(
            "key-invalid", f"malformed certificate version: {exc}", path=path
        ) from exc
    except CERT_PARSE_ERRORS as exc:
        raise KeyLoadError(
            "key-invalid", "not a valid PEM or DER certificate or public key", path=path
        ) from exc


T = TypeVar("T")


class FileCache(Generic[T]):
    """Objects loaded from files, reloaded only when the file changes.

    Load failures are cached too (per file version), so a broken file is reported on every
    use without being re-read and re-parsed each time.
    """

    _MAX_ENTRIES = 256

    def __init__(self, loader: Callable[[bytes, str], T]) -> None:
        self._loader = loader
        self._entries: dict[str, tuple[tuple[int, int, int, int], T | KeyLoadError]] = {}
        self._lock = threading.Lock()

    def get(self, path: str) -> T:
        try:
            st = os.stat(path)
        except FileNotFoundError as exc:
            raise KeyLoadError("key-not-found", "no such file", path=path) from exc
        except OSError as exc:
            raise KeyLoadError("key-unreadable", exc.strerror or str(exc), path=path) from exc
        version = (st.st_mtime_ns, st.st_size, st.st_ino, st.st_dev)
        entry = self._entries.get(path)
        if entry is None or entry[0] != version:
            entry = (version, self._load(path, st.st_size))
            with self._lock:
                if len(self._entries) >= self._MAX_ENTRIES:
                    self._entries.clear()
                self._entries[path] = entry
        value = entry[1]
        if isinstance(value, KeyLoadError):
            raise value
        return value

    def _load(self, path: str, size: int) -> T | KeyLoadError:
        if size > MAX_KEY_FILE_SIZE:
            return KeyLoadError("key-invalid", f"file is {size} bytes: not a key", path=path)
        try:
            with open(path, "rb") as fh:
                data = fh.read(MAX_KEY_FILE_SIZE + 1)
        except OSError as exc:
            return KeyLoadError("key-unreadable", exc.strerror or str(exc), path=path)
        try:
            return self._loader(data, path)
        except KeyLoadError as exc:
            return exc

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_PRIVATE_KEYS: FileCache[ec.EllipticCurvePrivateKey] = FileCache(
    lambda data, path: load_private_key(data, path=path)
)
_CREDENTIALS: FileCache[Credential] = FileCache(lambda data, path: load_credential(data, path=path))


def private_key_from_file(path: str | os.PathLike[str]) -> ec.EllipticCurvePrivateKey:
    """The private key in ``path``, from the process-wide cache when the file is unchanged."""
    return _PRIVATE_KEYS.get(os.fspath(path))


def credential_from_file(path: str | os.PathLike[str]) -> Credential:
    """The public credential in ``path``, from the process-wide cache when unchanged."""
    return _CREDENTIALS.get(os.fspath(path))
