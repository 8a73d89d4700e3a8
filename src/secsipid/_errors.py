"""Exceptions.

::

    SecSIPIDError                   base of everything this package raises on purpose
    ├── VerificationError           the remote party's Identity header or PASSporT is not valid;
    │                               carries a Reason (SIP status, verstat, libsecsipid code)
    ├── KeyLoadError                a key or certificate could not be loaded (our configuration)
    └── SigningError (ValueError)   the values given to sign are not acceptable

Anything else escaping from this package is a bug.  Programmer errors (wrong argument types)
raise the usual ``TypeError``.
"""

from __future__ import annotations

from typing import Any

from ._reasons import Reason

__all__ = ["KeyLoadError", "SecSIPIDError", "SigningError", "VerificationError"]


class SecSIPIDError(Exception):
    """Base class of the exceptions this package raises deliberately.

    ``code`` is a stable, machine-readable string; ``str(exc)`` is for humans.
    """

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    @property
    def message(self) -> str:
        return str(self.args[0])


class VerificationError(SecSIPIDError):
    """An Identity header or PASSporT failed verification.

    ``reason`` says why; ``sip_status``/``sip_reason``/``verstat`` say what to do about it.
    ``lib_code`` is the equivalent libsecsipid return code (some reasons have more than one,
    e.g. ``unsupported-alg`` is -302 for the Identity parameter and -202 for the JWS header).
    """

    reason: Reason
    #: The decoded PASSporT header and claims when decoding got that far, else empty.
    header: dict[str, Any]
    claims: dict[str, Any]

    def __init__(self, reason: Reason, message: str, *, lib_code: int | None = None) -> None:
        super().__init__(reason.value, message)
        self.reason = reason
        self._lib_code = lib_code
        self.header = {}
        self.claims = {}

    @property
    def sip_status(self) -> int:
        return self.reason.sip_status

    @property
    def sip_reason(self) -> str:
        return self.reason.sip_reason

    @property
    def verstat(self) -> str:
        return self.reason.verstat

    @property
    def lib_code(self) -> int:
        return self.reason.lib_code if self._lib_code is None else self._lib_code

    def __repr__(self) -> str:
        return f"VerificationError({self.reason.value!r}, {self.message!r})"

    @classmethod
    def from_key_error(cls, exc: KeyLoadError) -> VerificationError:
        """The verification failure for a credential that could not be loaded: the key type
        is the signer's problem (437), an unreadable or broken local file is ours (500)."""
        if exc.code in ("key-not-ec", "key-wrong-curve"):
            return cls(Reason.UNSUPPORTED_KEY, exc.message)
        lib = -451 if exc.code in ("key-not-found", "key-unreadable") else -102
        return cls(Reason.KEY_UNAVAILABLE, exc.message, lib_code=lib)


class KeyLoadError(SecSIPIDError):
    """A private key, public key or certificate could not be loaded.

    Codes: ``key-not-found``, ``key-unreadable``, ``key-invalid``, ``key-encrypted``,
    ``key-not-ec``, ``key-wrong-curve``, ``key-is-private`` (a private key where a public one
    was expected is refused, so that private keys are never published by mistake).
    """

    def __init__(self, code: str, message: str, *, path: str | None = None) -> None:
        super().__init__(code, message if path is None else f"{path}: {message}")
        self.path = path


class SigningError(SecSIPIDError, ValueError):
    """The values given to sign are not acceptable (e.g. attest ``Z``, an empty number).

    Codes: ``invalid-attest``, ``invalid-tn``, ``invalid-origid``, ``invalid-iat``,
    ``invalid-x5u``, ``invalid-json``, ``invalid-rcd``, ``invalid-original``, ``invalid-ppt``,
    ``too-large`` (the Identity value would be over the 8 KiB verifiers accept).
    """
