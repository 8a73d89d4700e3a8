"""div chains and Rich Call Data signed by a foreign implementation: the real asipto
``secsipidx`` (Debian package secsipidx) signs arbitrary JSON with ``-sign -header -payload``,
byte for byte; we verify what it produced.  (secsipidx itself refuses ``ppt=div`` in
``-check``, libsecsipid -303: it cannot verify what we sign, so this direction is one-way.)

Missing binary: the run fails with an install hint unless SECSIPID_SKIP_INTEROP=1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import NOW, ORIGID, KeyFiles, assert_verdict
from secsipid import (
    Credential,
    Reason,
    VerificationError,
    Verifier,
    canonical_json,
    check_identity,
    rcd_digest,
)

pytestmark = pytest.mark.interop

CALLER, FIRST, SECOND, THIRD = "12155551212", "12155551213", "12155551214", "12155551215"
X5U = ["https://c0.example/sti.pem", "https://c1.example/sti.pem", "https://c2.example/sti.pem"]
JCARD = ["vcard", [["fn", {}, "text", "Example Bank"], ["org", {}, "text", "Example"]]]


@pytest.fixture(scope="module")
def secsipidx() -> str:
    path = shutil.which("secsipidx")
    if path is None:
        if os.environ.get("SECSIPID_SKIP_INTEROP") == "1":
            pytest.skip("secsipidx not installed and SECSIPID_SKIP_INTEROP=1")
        pytest.fail(
            "secsipidx not found: run `apt-get install secsipidx` (CI installs it), "
            "or set SECSIPID_SKIP_INTEROP=1 to skip the interop tests",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, ec.EllipticCurvePrivateKey]]:
    """Three carriers' keys, as PEM files for secsipidx."""
    out = []
    directory = tmp_path_factory.mktemp("carriers")
    for n in range(3):
        key = ec.generate_private_key(ec.SECP256R1())
        path = directory / f"key{n}.pem"
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        out.append((path, key))
    return out


class KeySource:
    local = True

    def __init__(self, keys: list[tuple[Path, ec.EllipticCurvePrivateKey]]) -> None:
        self.by_url = {X5U[n]: Credential(k.public_key()) for n, (_, k) in enumerate(keys)}

    def credential_for(self, info: str) -> Credential:
        if info not in self.by_url:
            raise VerificationError(Reason.CERT_FETCH_FAILED, info)
        return self.by_url[info]


def _sign(secsipidx: str, key: Path, header: str | bytes, payload: str | bytes) -> str:
    header = header.decode() if isinstance(header, bytes) else header
    payload = payload.decode() if isinstance(payload, bytes) else payload
    proc = subprocess.run(
        [secsipidx, "-sign", "-header", header, "-payload", payload, "-k", str(key)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _header(ppt: str, x5u: str) -> bytes:
    return canonical_json({"alg": "ES256", "ppt": ppt, "typ": "passport", "x5u": x5u})


def _shaken(secsipidx: str, key: Path, x5u: str, dest: str, **extra: object) -> str:
    claims = {
        "attest": "A",
        "dest": {"tn": [dest]},
        "iat": NOW,
        "orig": {"tn": CALLER},
        "origid": ORIGID,
        **extra,
    }
    jwt = _sign(secsipidx, key, _header("shaken", x5u), canonical_json(claims))
    return f"{jwt};info=<{x5u}>;alg=ES256;ppt=shaken"


def _div(secsipidx: str, key: Path, x5u: str, div: str, dest: str, orig: str = CALLER) -> str:
    claims = {"dest": {"tn": [dest]}, "div": {"tn": div}, "iat": NOW, "orig": {"tn": orig}}
    jwt = _sign(secsipidx, key, _header("div", x5u), canonical_json(claims))
    return f'{jwt};info=<{x5u}>;ppt="div"'


def test_secsipidx_div_chain_verifies_here(
    secsipidx: str, keys: list[tuple[Path, ec.EllipticCurvePrivateKey]]
) -> None:
    values = [
        _shaken(secsipidx, keys[0][0], X5U[0], FIRST),
        _div(secsipidx, keys[1][0], X5U[1], FIRST, SECOND),
        _div(secsipidx, keys[2][0], X5U[2], SECOND, THIRD),
    ]
    verifier = Verifier(KeySource(keys))
    verdict = verifier.check(values[::-1], orig_tn=CALLER, dest_tn=THIRD, now=NOW)
    assert verdict.ok and verdict.diverted, (verdict.reason, verdict.message)
    assert [hop.div for hop in verdict.chain] == [None, FIRST, SECOND]
    # the same chain with one hop re-signed by the wrong carrier's key
    forged = _div(secsipidx, keys[0][0], X5U[2], SECOND, THIRD)
    verdict = verifier.check([values[0], values[1], forged], dest_tn=THIRD, now=NOW)
    assert_verdict(verdict, Reason.BAD_SIGNATURE)
    # a changed orig in the last hop
    moved = _div(secsipidx, keys[2][0], X5U[2], SECOND, THIRD, orig="12155550666")
    verdict = verifier.check([values[0], values[1], moved], dest_tn=THIRD, now=NOW)
    assert_verdict(verdict, Reason.DIV_ORIG_MISMATCH)


def test_secsipidx_div_chain_through_check_identity(secsipidx: str, key_files: KeyFiles) -> None:
    """check_identity([...], key_path, dest_tn=...): every hop signed with one key file."""
    key = key_files.key_pem
    values = [
        _shaken(secsipidx, key, X5U[0], FIRST),
        _div(secsipidx, key, X5U[0], FIRST, SECOND),
    ]
    verdict = check_identity(values, key_files.cert_pem, dest_tn=SECOND, now=NOW)
    assert verdict.ok and verdict.diverted
    verdict = check_identity(values, key_files.cert_pem, dest_tn=THIRD, now=NOW)
    assert_verdict(verdict, Reason.DIV_TARGET_MISMATCH)


def test_secsipidx_rcd_in_shaken_and_rcd_passport(secsipidx: str, key_files: KeyFiles) -> None:
    key = key_files.key_pem
    rcdi = {"/jcd": rcd_digest(canonical_json(JCARD))}
    shaken = _shaken(
        secsipidx,
        key,
        X5U[0],
        FIRST,
        rcd={"nam": "Example Bank", "jcd": JCARD},
        rcdi=rcdi,
        crn="Card blocked",
    )
    verdict = check_identity(shaken, key_files.pub_pem, dest_tn=FIRST, now=NOW)
    assert verdict.ok, (verdict.reason, verdict.message)
    assert verdict.rcd is not None and verdict.rcd.jcd == JCARD
    assert verdict.rcd.crn == "Card blocked" and verdict.rcd.rcdi == rcdi
    # an rcd PASSporT (ppt rcd) beside a plain SHAKEN one, its JSON not canonical: signed
    # byte for byte by secsipidx, the digest of the inline jCard still matches
    plain = _shaken(secsipidx, key, X5U[0], FIRST)
    payload = json.dumps(
        {
            "rcdi": rcdi,
            "rcd": {"nam": "Example Bank", "jcd": JCARD},
            "orig": {"tn": CALLER},
            "iat": NOW,
            "dest": {"tn": [FIRST]},
        },
        indent=1,
    )
    jwt = _sign(secsipidx, key, _header("rcd", X5U[0]), payload)
    rcd_value = f"{jwt};info=<{X5U[0]}>;alg=ES256;ppt=rcd"
    verdict = check_identity([rcd_value, plain], key_files.pub_pem, dest_tn=FIRST, now=NOW)
    assert verdict.ok and verdict.passport is not None and verdict.passport.ppt == "shaken"
    assert verdict.rcd is not None and verdict.rcd.nam == "Example Bank"
    assert verdict.rcd_passport is not None and verdict.rcd_passport.warnings  # not canonical


def test_secsipidx_rcd_integrity_mismatch_and_missing_nam(
    secsipidx: str, key_files: KeyFiles
) -> None:
    key = key_files.key_pem
    wrong = {"/jcd": rcd_digest(b"[]")}
    value = _shaken(secsipidx, key, X5U[0], FIRST, rcd={"nam": "x", "jcd": JCARD}, rcdi=wrong)
    verdict = check_identity(value, key_files.pub_pem, now=NOW)
    assert_verdict(verdict, Reason.RCD_INTEGRITY_MISMATCH)
    value = _shaken(secsipidx, key, X5U[0], FIRST, rcd={"jcd": JCARD})
    verdict = check_identity(value, key_files.pub_pem, now=NOW)
    assert_verdict(verdict, Reason.INVALID_RCD)
