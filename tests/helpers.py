"""Constants and helpers shared by the test modules (fixtures live in ``conftest.py``).

Import as ``from helpers import NOW, X5U, ...``: pytest puts ``tests/`` on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from secsipid import Credential, Reason, Verdict, VerificationError, b64url_encode
from secsipid._fetch import request_remaining

X5U = "https://cert.example.org/sti.pem"
NOW = 1_700_000_000
ORIG = "12155550121"
DEST = "12155550131"
ORIGID = "123e4567-e89b-42d3-a456-426655440000"
PARAMS = f";info=<{X5U}>;alg=ES256;ppt=shaken"

SHAKEN_HEADER: dict[str, Any] = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
SHAKEN_CLAIMS: dict[str, Any] = {
    "attest": "A",
    "dest": {"tn": [DEST]},
    "iat": NOW,
    "orig": {"tn": ORIG},
    "origid": ORIGID,
}


def deterministic_ecdsa_supported() -> bool:
    """RFC 6979 signing needs OpenSSL 3.2+; the Signer falls back to random k without it."""
    key = ec.generate_private_key(ec.SECP256R1())
    try:
        key.sign(b"probe", ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except UnsupportedAlgorithm:
        return False
    return True


requires_deterministic = pytest.mark.skipif(
    not deterministic_ecdsa_supported(), reason="OpenSSL without RFC 6979 deterministic ECDSA"
)


def raw_signature(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> bytes:
    """ES256 signature as JWS wants it: 64 bytes ``r || s`` (RFC 7518 §3.4)."""
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def raw_jws(key: ec.EllipticCurvePrivateKey, header: bytes, claims: bytes) -> str:
    """A JWS over arbitrary header/claims bytes, for what ``Signer.sign_json`` refuses to sign
    (``alg`` other than ES256, duplicate keys, NaN, invalid UTF-8)."""
    signing_input = b64url_encode(header) + "." + b64url_encode(claims)
    return signing_input + "." + b64url_encode(raw_signature(key, signing_input.encode()))


def replace_char(text: str, index: int) -> str:
    """``text`` with the base64url character at ``index`` changed to another one whose 6 bits
    differ in the high bits, so the decoded bytes change even in a final partial group."""
    old = text[index]
    new = "A" if old not in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdef" else "w"
    return text[:index] + new + text[index + 1 :]


def make_self_signed(
    key: ec.EllipticCurvePrivateKey | Any,
    common_name: str = "SHAKEN TEST",
    *,
    issuer_key: Any = None,
    issuer_name: x509.Name | None = None,
    ca: bool = False,
) -> x509.Certificate:
    """A minimal certificate valid 2000..2100, self-signed unless ``issuer_key`` is given."""
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "secsipid tests"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2100, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(issuer_key or key, hashes.SHA256())
    )


def assert_verdict(verdict: Verdict, reason: Reason) -> None:
    """A failed Verdict carries ``reason`` and the SIP/verstat/lib mapping of its table row."""
    assert not verdict
    assert verdict.ok is False
    assert verdict.reason is reason, (verdict.reason, verdict.message)
    assert verdict.sip_status == reason.sip_status
    assert verdict.sip_reason == reason.sip_reason
    assert verdict.verstat == reason.verstat


def read_every_property(obj: object, depth: int = 0) -> None:
    """Read every public property, dataclass field and slot of ``obj`` (a Verdict, a
    VerifiedPassport, a Credential...), and ``repr`` it; recurse into the Verdicts and
    passports it holds (a div chain, an rcd PASSporT).  Found by introspection, so that a
    property added later is read too."""
    cls = type(obj)
    names = {n for n in dir(cls) if isinstance(getattr(cls, n, None), property)}
    if dataclasses.is_dataclass(obj):
        names |= {f.name for f in dataclasses.fields(obj)}
    names |= set(getattr(cls, "__slots__", ()))
    repr(obj)
    for name in sorted(n for n in names if not n.startswith("_")):
        value = getattr(obj, name)
        for item in value if isinstance(value, list | tuple) else (value,):
            if depth < 4 and type(item).__module__.startswith("secsipid."):
                read_every_property(item, depth + 1)


def assert_verdict_readable(verdict: Verdict) -> dict[str, Any]:
    """Every property of a Verdict (and of the passports and credentials it holds) reads
    without raising, and ``to_dict()`` is strict JSON (no NaN/Infinity, no nesting too deep to
    encode): what the Kamailio adapter, the CLI and the HTTP service read.  Returns the parsed
    ``to_dict()``."""
    read_every_property(verdict)
    bool(verdict)
    text = json.dumps(verdict.to_dict(), allow_nan=False, sort_keys=True)
    doc: dict[str, Any] = json.loads(text)
    return doc


def assert_error(exc: VerificationError, reason: Reason) -> None:
    """A VerificationError carries ``reason`` and its SIP mapping."""
    assert exc.reason is reason, (exc.reason, exc.message)
    assert exc.code == reason.value
    assert exc.sip_status == reason.sip_status
    assert exc.sip_reason == reason.sip_reason
    assert exc.verstat == reason.verstat


@dataclass(frozen=True)
class KeyFiles:
    """Paths of the session key pair and certificate in every format we read."""

    dir: Path
    key_pem: Path  # SEC1 "EC PRIVATE KEY"
    key_pkcs8_pem: Path  # PKCS#8 "PRIVATE KEY"
    pub_pem: Path
    pub_der: Path
    cert_pem: Path
    cert_der: Path


# The type of the ``make_identity`` fixture.
MakeIdentity = Callable[..., str]


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``secsipid`` in-process: (exit status, stdout, stderr)."""
    from secsipid.cli import main

    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = int(exc.code or 0)
    out, err = capsys.readouterr()
    return status, out, err


# -- credential sources that tell how the verifier asks them ---------------------------------


@dataclass(frozen=True)
class SourceCall:
    """One question a :class:`ProbeSource` was asked: the entry point, the ``info`` URL, the
    request budget left then (``inf``: asked outside any budget) and whether an event loop
    was running in the asking thread."""

    how: str
    info: str | None
    left: float
    in_loop: bool

    def within(self, budget: float) -> bool:
        """Asked within a request budget of ``budget`` seconds that had not run out."""
        return 0 < self.left <= budget


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class ProbeSource:
    """A credential source of no kind the verifier knows (neither ``local`` nor
    ``cached_credential``): the verifier must treat each question as a fetch.  ``keys`` maps
    an info URL to its credential (``cert-fetch-failed`` for any other); ``calls`` records
    every question."""

    def __init__(self, keys: dict[str, Credential]) -> None:
        self.keys = keys
        self.calls: list[SourceCall] = []

    def _answer(self, how: str, info: str | None) -> Credential:
        self.calls.append(SourceCall(how, info, request_remaining(math.inf), _loop_running()))
        found = self.keys.get(info or "")
        if found is None:
            raise VerificationError(Reason.CERT_FETCH_FAILED, f"no certificate at {info}")
        return found

    def credential_for(self, info: str) -> Credential:
        return self._answer("credential_for", info)

    def asked(self, how: str) -> list[str | None]:
        return [call.info for call in self.calls if call.how == how]


class LocalProbeSource(ProbeSource):
    """A source that says it does no network I/O: asked without a time budget."""

    local = True


class CachingProbeSource(ProbeSource):
    """A source with a cache: ``cached`` are the info URLs whose credential is at hand."""

    def __init__(self, keys: dict[str, Credential], cached: set[str]) -> None:
        super().__init__(keys)
        self.cached = cached

    def cached_credential(self, info: str) -> Credential | None:
        self.calls.append(
            SourceCall("cached_credential", info, request_remaining(math.inf), _loop_running())
        )
        return self.keys.get(info) if info in self.cached else None


class AsyncProbeSource(CachingProbeSource):
    """A caching source with an asyncio twin (``acredential_for``)."""

    async def acredential_for(self, info: str) -> Credential:
        await asyncio.sleep(0)
        return self._answer("acredential_for", info)
