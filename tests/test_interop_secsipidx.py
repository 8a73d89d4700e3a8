"""Interop with the real asipto secsipidx CLI and libsecsipid (Debian packages secsipidx and
libsecsipid1, 1.2.0): each side verifies what the other signs, and both reject tampering.

secsipidx and libsecsipid read the wall clock, so tokens for them are signed "now" (no sleeping:
every check runs well inside the 300 s window).  Missing binaries fail the run with an install
hint unless SECSIPID_SKIP_INTEROP=1 is set (then these tests are skipped).
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import DEST, NOW, ORIG, ORIGID, X5U, KeyFiles, raw_jws
from secsipid import (
    Reason,
    Signer,
    Verifier,
    VerifyPolicy,
    add_identity,
    b64url_decode,
    b64url_encode,
    canonical_json,
    check_identity,
    decode_token,
)

pytestmark = pytest.mark.interop

LIBSECSIPID_PATHS = ("/usr/lib/x86_64-linux-gnu/libsecsipid.so.1",)


def _missing(what: str, package: str) -> None:
    if os.environ.get("SECSIPID_SKIP_INTEROP") == "1":
        pytest.skip(f"{what} not installed and SECSIPID_SKIP_INTEROP=1")
    pytest.fail(
        f"{what} not found: run `apt-get install {package}` (CI installs it), "
        "or set SECSIPID_SKIP_INTEROP=1 to skip the interop tests",
        pytrace=False,
    )


@pytest.fixture(scope="module")
def libsecsipid() -> str:
    for path in LIBSECSIPID_PATHS:
        if os.path.exists(path):
            return path
    name = ctypes.util.find_library("secsipid")
    if name is None:
        _missing("libsecsipid", "libsecsipid1")
    assert name is not None
    return name


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)


def _sign_full(secsipidx: str, key: Path, x5u: str = X5U) -> str:
    proc = _run(
        secsipidx, "-sign-full", "-orig-tn", ORIG, "-dest-tn", DEST, "-attest", "A",
        "-orig-id", ORIGID, "-x5u", x5u, "-k", str(key),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _sx_check(secsipidx: str, identity: str, pub: Path, tmp_path: Path) -> tuple[int, str]:
    """secsipidx -check of one Identity value; returns (exit status, stdout)."""
    ident = tmp_path / "identity.txt"
    ident.write_text(identity)
    proc = _run(
        secsipidx, "-check", "-fidentity", str(ident), "-fpubkey", str(pub), "-expire", "300"
    )
    return proc.returncode, proc.stdout.strip()


def _iat(identity: str) -> int:
    return int(decode_token(identity.split(";", 1)[0]).claims["iat"])


def _tamper(identity: str) -> str:
    """Same signature, claims re-encoded with attest C."""
    token, params = identity.split(";", 1)
    h, c, s = token.split(".")
    claims = json.loads(b64url_decode(c))
    claims["attest"] = "C"
    return f"{h}.{b64url_encode(canonical_json(claims))}.{s};{params}"


# -- secsipidx signs, we verify ----------------------------------------------------------------


@pytest.mark.parametrize("key_attr", ["key_pem", "key_pkcs8_pem"])
def test_secsipidx_sign_full_verifies_here(
    secsipidx: str, key_files: KeyFiles, key_attr: str
) -> None:
    """secsipidx -sign-full output verifies with check_identity (cert and key) and Verifier."""
    value = _sign_full(secsipidx, getattr(key_files, key_attr))
    assert value.endswith(f";info=<{X5U}>;alg=ES256;ppt=shaken")
    now = _iat(value)
    for path in (key_files.cert_pem, key_files.pub_pem, key_files.cert_der):
        verdict = check_identity(value, path, now=now)
        assert verdict.ok, (path, verdict.reason, verdict.message)
        assert verdict.claims["origid"] == ORIGID
    passport = Verifier(key_files.cert_pem).verify(value, orig_tn=ORIG, dest_tn=DEST, now=now)
    assert (passport.attest, passport.orig, passport.dest) == ("A", ORIG, [DEST])
    assert passport.warnings == []  # secsipidx emits canonical JSON for SHAKEN claims
    assert Verifier(key_files.pub_pem, policy=VerifyPolicy(strict=True)).check(value, now=now).ok
    # ... which the verifier's hot path reads without the JSON decoder (docs/performance.md)
    assert decode_token(value.split(";", 1)[0]).shaken_claims


def test_secsipidx_sign_full_wall_clock(secsipidx: str, key_files: KeyFiles) -> None:
    """Without now= our verifier accepts a token secsipidx has just signed (same clock)."""
    value = _sign_full(secsipidx, key_files.key_pem)
    assert check_identity(value, key_files.pub_pem).ok


def test_secsipidx_sign_custom_json_verifies_here(secsipidx: str, key_files: KeyFiles) -> None:
    """secsipidx -sign of canonical custom JSON: the JWT verifies under info = x5u."""
    header = canonical_json({"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U})
    payload = canonical_json(
        {"attest": "B", "dest": {"tn": [DEST]}, "iat": NOW, "orig": {"tn": ORIG}, "origid": ORIGID}
    )
    proc = _run(
        secsipidx, "-sign", "-header", header.decode(), "-payload", payload.decode(),
        "-k", str(key_files.key_pem),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    jwt = proc.stdout.strip()
    h, c, _ = jwt.split(".")
    assert (b64url_decode(h), b64url_decode(c)) == (header, payload)
    value = f"{jwt};info=<{X5U}>;alg=ES256;ppt=shaken"
    verdict = check_identity(value, key_files.cert_pem, now=NOW)
    assert verdict.ok, verdict.message
    assert verdict.claims["attest"] == "B"


def test_secsipidx_sign_verbatim_non_canonical(secsipidx: str, key_files: KeyFiles) -> None:
    """secsipidx signs JSON text verbatim: non-canonical text passes by default with a
    warning and is non-canonical in strict mode."""
    header = '{"typ":"passport", "alg":"ES256", "ppt":"shaken", "x5u":"' + X5U + '"}'
    payload = json.dumps(
        {"origid": ORIGID, "orig": {"tn": ORIG}, "iat": NOW, "dest": {"tn": [DEST]}, "attest": "A"}
    )
    proc = _run(
        secsipidx, "-sign", "-header", header, "-payload", payload, "-k", str(key_files.key_pem)
    )
    assert proc.returncode == 0, proc.stderr
    value = f"{proc.stdout.strip()};info=<{X5U}>;alg=ES256;ppt=shaken"
    passport = Verifier(key_files.pub_pem).verify(value, now=NOW)
    assert passport.warnings
    strict = Verifier(key_files.pub_pem, policy=VerifyPolicy(strict=True)).check(value, now=NOW)
    assert strict.reason is Reason.NON_CANONICAL


def test_secsipidx_html_escaped_x5u(secsipidx: str, key_files: KeyFiles) -> None:
    """Go's encoder writes '&' in x5u as \\u0026; the decoded x5u still equals info."""
    x5u = "https://cert.example.org/sti.pem?a=1&b=2"
    value = _sign_full(secsipidx, key_files.key_pem, x5u=x5u)
    assert b"\\u0026" in b64url_decode(value.split(".")[0])
    verdict = check_identity(value, key_files.pub_pem, now=_iat(value))
    assert verdict.ok, verdict.message
    assert verdict.header["x5u"] == x5u


def test_secsipidx_tampered_rejected_here(secsipidx: str, key_files: KeyFiles) -> None:
    """A secsipidx token with altered claims is bad-signature here."""
    value = _tamper(_sign_full(secsipidx, key_files.key_pem))
    verdict = check_identity(value, key_files.cert_pem, now=_iat(value))
    assert verdict.reason is Reason.BAD_SIGNATURE
    assert verdict.sip_status == 438


# -- we sign, secsipidx verifies ---------------------------------------------------------------


@pytest.mark.parametrize("cred_attr", ["pub_pem", "cert_pem"])
def test_add_identity_passes_secsipidx_check(
    secsipidx: str, key_files: KeyFiles, tmp_path: Path, cred_attr: str
) -> None:
    """add_identity output passes `secsipidx -check ... -expire 300`: prints ok, exit 0."""
    value = add_identity(ORIG, DEST, "A", "", X5U, key_files.key_pem)
    status, out = _sx_check(secsipidx, value, getattr(key_files, cred_attr), tmp_path)
    assert (status, out) == (0, "ok")


def test_signer_multi_dest_passes_secsipidx(
    secsipidx: str, key_files: KeyFiles, signer: Signer, tmp_path: Path
) -> None:
    """A Signer token with several dest TNs and a given origid passes secsipidx too."""
    value = signer.identity("+1 215 555 0121", [DEST, "12155550132"], "C", ORIGID)
    status, out = _sx_check(secsipidx, value, key_files.pub_pem, tmp_path)
    assert (status, out) == (0, "ok")


def test_tampered_rejected_by_secsipidx(
    secsipidx: str, key_files: KeyFiles, tmp_path: Path
) -> None:
    """Our header with altered claims fails secsipidx (-251, not-ok) and our verifier."""
    value = _tamper(add_identity(ORIG, DEST, "A", "", X5U, key_files.key_pem))
    status, out = _sx_check(secsipidx, value, key_files.pub_pem, tmp_path)
    assert status == (-251) & 0xFF
    assert out.endswith("not-ok")
    assert check_identity(value, key_files.pub_pem).reason is Reason.BAD_SIGNATURE


def test_stale_rejected_by_both(secsipidx: str, key_files: KeyFiles, tmp_path: Path) -> None:
    """A token from 2023 is expired for secsipidx (-232) and stale here."""
    value = add_identity(ORIG, DEST, "A", "", X5U, key_files.key_pem, iat=NOW)
    status, out = _sx_check(secsipidx, value, key_files.pub_pem, tmp_path)
    assert status == (-232) & 0xFF
    assert out.endswith("not-ok")
    assert check_identity(value, key_files.pub_pem).reason is Reason.STALE


# -- libsecsipid through ctypes ----------------------------------------------------------------

# Run in a child interpreter: libsecsipid embeds a Go runtime (threads, signal handlers) that
# should not live inside the pytest process.
_CTYPES_CHECK = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
f = lib.SecSIPIDCheckFullPubKey
f.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
f.restype = ctypes.c_int
identity = sys.argv[2].encode()
pub = open(sys.argv[3], "rb").read()
print(f(identity, len(identity), int(sys.argv[4]), pub, len(pub)))
"""


def _lib_check(lib: str, identity: str, pub: Path, expire: int = 300) -> int:
    proc = _run(sys.executable, "-c", _CTYPES_CHECK, lib, identity, str(pub), str(expire))
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


@pytest.mark.parametrize("cred_attr", ["pub_pem", "cert_pem"])
def test_libsecsipid_check_full_pubkey_accepts_ours(
    libsecsipid: str, key_files: KeyFiles, cred_attr: str
) -> None:
    """SecSIPIDCheckFullPubKey returns 0 for an add_identity header (key or cert PEM)."""
    value = add_identity(ORIG, DEST, "A", "", X5U, key_files.key_pem)
    assert _lib_check(libsecsipid, value, getattr(key_files, cred_attr)) == 0


def test_libsecsipid_rejects_tampered(libsecsipid: str, key_files: KeyFiles) -> None:
    """SecSIPIDCheckFullPubKey returns -251 (bad signature) for tampered claims."""
    value = _tamper(add_identity(ORIG, DEST, "A", "", X5U, key_files.key_pem))
    assert _lib_check(libsecsipid, value, key_files.pub_pem) == -251


# -- the same return codes as libsecsipid ------------------------------------------------------

_CTYPES_CHECK_FULL = r"""
import ctypes, json, sys
lib = ctypes.CDLL(sys.argv[1])
f = lib.SecSIPIDCheckFull
f.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
f.restype = ctypes.c_int
values = json.loads(sys.stdin.read())
print(json.dumps([f(v.encode(), 0, 300, sys.argv[2].encode(), 5) for v in values]))
"""


def _variants(signer: Signer, now: int) -> dict[str, str]:
    """One defect each, in what Kamailio's secsipid_check_identity(keyPath) would see."""
    good = signer.identity(ORIG, DEST, "A", ORIGID, iat=now)
    token, params = good.split(";", 1)
    h, c, s = token.split(".")
    header = json.loads(b64url_decode(h))
    claims = json.loads(b64url_decode(c))

    def signed(hdr: dict[str, object] | None = None, cl: dict[str, object] | None = None) -> str:
        # raw_jws: the Signer itself refuses to put anything but ES256 in a header.
        return raw_jws(signer.key, canonical_json(hdr or header), canonical_json(cl or claims))

    return {
        "valid": good,
        "tampered": _tamper(good),
        "stale": signer.identity(ORIG, DEST, "A", ORIGID, iat=now - 3600),
        "alg-param": f"{token};info=<{X5U}>;alg=ES384;ppt=shaken",
        "ppt-param": f"{token};info=<{X5U}>;alg=ES256;ppt=div",
        "header-alg": signed({**header, "alg": "ES384"}) + ";" + params,
        "header-typ": signed({**header, "typ": "JWT"}) + ";" + params,
        "header-ppt": signed({**header, "ppt": "div"}) + ";" + params,
        "x5u-mismatch": f"{token};info=<https://other.example.org/c.pem>;alg=ES256;ppt=shaken",
        "bare-token": token,
        "four-segments": f"{h}.{c}.{s}.x;{params}",
        "compact": f"{h}..{s};{params}",
        "dest-tn-string": signed(None, {**claims, "dest": {"tn": DEST}}) + ";" + params,
        "iat-string": signed(None, {**claims, "iat": str(now)}) + ";" + params,
        "iat-missing": signed(None, {k: v for k, v in claims.items() if k != "iat"}) + ";" + params,
        "short-signature": f"{h}.{c}.{s[:-4]};{params}",
    }


def test_lib_codes_match_libsecsipid(libsecsipid: str, key_files: KeyFiles) -> None:
    """For single defects both reject, Verdict.lib_code is the code libsecsipid's
    SecSIPIDCheckFull (Kamailio's secsipid_check_identity with a key file) returns."""
    import time

    signer = Signer.from_file(key_files.key_pem, X5U)
    variants = _variants(signer, int(time.time()))
    proc = subprocess.run(
        [sys.executable, "-c", _CTYPES_CHECK_FULL, libsecsipid, str(key_files.pub_pem)],
        input=json.dumps(list(variants.values())), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    theirs = dict(zip(variants, json.loads(proc.stdout), strict=True))
    ours = {
        name: check_identity(value, key_files.pub_pem).lib_code for name, value in variants.items()
    }
    assert theirs["valid"] == 0 and ours["valid"] == 0
    mismatched = {n: (ours[n], theirs[n]) for n in variants if ours[n] != theirs[n]}
    assert mismatched == {}, f"(ours, libsecsipid): {mismatched}"
