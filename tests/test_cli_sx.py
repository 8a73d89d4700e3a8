"""``secsipid sx``: secsipidx's flags and exit codes, compared with the real secsipidx binary
(Debian package secsipidx 1.2.0) on the same inputs (issue 8 item 12).

Values are signed "now" (secsipidx reads the wall clock).  Missing secsipidx fails the run with
an install hint unless SECSIPID_SKIP_INTEROP=1 is set.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from secsipid import Signer, b64url_decode, decode_token, private_key_from_file
from secsipid._sx import parse

pytestmark = pytest.mark.interop

X5U = "https://cert.example.org/sti.pem"


def _run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def _both(secsipidx: str, cwd: Path, *flags: str) -> tuple[Any, Any]:
    theirs = _run([secsipidx, *flags], cwd)
    ours = _run([sys.executable, "-m", "secsipid", "sx", *flags], cwd)
    return theirs, ours


@pytest.fixture
def lab(tmp_path: Path, key_files: Any) -> Path:
    """A working directory with keys, a valid Identity and broken variants as files."""
    for name, src in (("key.pem", key_files.key_pem), ("pub.pem", key_files.pub_pem)):
        shutil.copy(src, tmp_path / name)
    shutil.copy(key_files.cert_pem, tmp_path / "cert.pem")
    signer = Signer(private_key_from_file(key_files.key_pem))
    value = signer.identity("12155550121", "12155550131", "A", x5u=X5U)
    token, _, params = value.partition(";")
    h, c, s = token.split(".")
    flipped = s[:10] + ("A" if s[10] != "A" else "B") + s[11:]
    files = {
        "valid.txt": value + "\n",
        "badsig.txt": f"{h}.{c}.{flipped};{params}",
        "stale.txt": signer.identity("1", "2", "A", x5u=X5U, iat=1_600_000_000),
        "ppt.txt": value.replace("ppt=shaken", "ppt=div"),
        "alg.txt": value.replace("alg=ES256", "alg=RS256"),
        "twoparts.txt": f"{h}.{c};{params}",
        "empty.txt": "",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    other = tmp_path / "other"
    other.mkdir()
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    (other / "pub.pem").write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return tmp_path


CHECKS = [
    ("valid", ["-check", "-fidentity", "valid.txt", "-fpubkey", "pub.pem", "-expire", "300"], 0),
    ("cert", ["-c", "-fidentity", "valid.txt", "-p", "cert.pem", "-expire=300"], 0),
    (
        "double-dash",
        ["--check", "--fidentity=valid.txt", "--fpubkey", "pub.pem", "--expire=300"],
        0,
    ),
    ("bad-sig", ["-check", "-fidentity", "badsig.txt", "-fpubkey", "pub.pem", "-expire", "300"], 5),
    (
        "other-key",
        ["-check", "-fidentity", "valid.txt", "-fpubkey", "other/pub.pem", "-expire", "300"],
        5,
    ),
    # -expire defaults to 0: a value older than this second is stale on both sides.
    ("default-expire", ["-check", "-fidentity", "stale.txt", "-fpubkey", "pub.pem"], 24),
    ("stale", ["-check", "-fidentity", "stale.txt", "-fpubkey", "pub.pem", "-expire", "300"], 24),
    ("ppt", ["-check", "-fidentity", "ppt.txt", "-fpubkey", "pub.pem", "-expire", "300"], 209),
    ("alg", ["-check", "-fidentity", "alg.txt", "-fpubkey", "pub.pem", "-expire", "300"], 210),
    ("2 parts", ["-check", "-fidentity", "twoparts.txt", "-fpubkey", "pub.pem"], 211),
    ("empty", ["-check", "-fidentity", "empty.txt", "-fpubkey", "pub.pem"], 211),
    ("no file", ["-check", "-fidentity", "nofile.txt", "-fpubkey", "pub.pem"], 211),
    (
        "no key file",
        ["-check", "-fidentity", "valid.txt", "-fpubkey", "nokey.pem", "-expire", "300"],
        61,
    ),
    ("no -fpubkey", ["-check", "-fidentity", "valid.txt"], 255),
    ("no identity", ["-check", "-fpubkey", "pub.pem"], 255),
    ("unknown flag", ["-check", "-nosuchflag"], 1),
    ("bad int", ["-check", "-expire", "soon"], 1),
    ("help", ["-help"], 1),
    ("version", ["-version"], 1),
    ("nothing", [], 0),
]


@pytest.mark.parametrize(("name", "flags", "status"), CHECKS, ids=[c[0] for c in CHECKS])
def test_sx_exit_codes_match_secsipidx(
    secsipidx: str, lab: Path, name: str, flags: list[str], status: int
) -> None:
    """The same flags give the same exit status as secsipidx, and the same ok/not-ok line."""
    theirs, ours = _both(secsipidx, lab, *flags)
    assert theirs.returncode == status, (name, theirs.stdout, theirs.stderr)
    assert ours.returncode == status, (name, ours.stdout, ours.stderr)
    if "-check" in flags or "-c" in flags or "--check" in flags:
        last = [line for line in theirs.stdout.splitlines() if line][-1:]
        if last in (["ok"], ["not-ok"]):
            assert ours.stdout.splitlines()[-1:] == last
    assert "Traceback" not in ours.stderr


def test_sx_sign_full_both_ways(secsipidx: str, lab: Path) -> None:
    """-sign-full with secsipidx's flags: each side's value checks ok with the other's -check."""
    flags = ["-sign-full", "-o", "12155550121", "-d", "12155550131", "-a", "B", "-x5u", X5U,
             "-k", "key.pem"]  # fmt: skip
    theirs, ours = _both(secsipidx, lab, *flags)
    assert theirs.returncode == ours.returncode == 0, (theirs.stdout, ours.stdout)
    for value in (theirs.stdout.strip(), ours.stdout.strip()):
        check = ["-check", "-identity", value, "-fpubkey", "pub.pem", "-expire", "60"]
        t, o = _both(secsipidx, lab, *check)
        assert (t.returncode, o.returncode) == (0, 0), (t.stdout, o.stdout)
    claims = decode_token(ours.stdout.strip().split(";")[0]).claims
    assert claims["attest"] == "B" and claims["orig"] == {"tn": "12155550121"}
    assert ours.stdout.strip().endswith(f";info=<{X5U}>;alg=ES256;ppt=shaken")
    theirs, ours = _both(secsipidx, lab, "-sign-full", "-o", "1", "-d", "2", "-k", "nokey.pem")
    assert theirs.returncode == ours.returncode == 255
    assert ours.stdout.startswith("error: ")


def test_sx_sign_json_verbatim(secsipidx: str, lab: Path) -> None:
    """-sign with -header/-payload signs the text byte for byte, as secsipidx does."""
    header = '{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://a.example/c.pem"}'
    payload = '{"orig":{"tn":"1"},  "iat":1700000000,"dest":{"tn":["2"]},"attest":"C"}'
    theirs, ours = _both(
        secsipidx, lab, "-sign", "-header", header, "-payload", payload, "-k", "key.pem"
    )
    assert theirs.returncode == ours.returncode == 0
    t_h, t_p, _ = theirs.stdout.strip().split(".")
    o_h, o_p, _ = ours.stdout.strip().split(".")
    assert (o_h, o_p) == (t_h, t_p)
    assert b64url_decode(o_p) == payload.encode()


def test_go_flag_parsing() -> None:
    """Go's flag rules: -name value, -name=value, --name, booleans alone, stop at the first
    non-flag or at --."""
    opts = parse(["-c", "--expire=60", "-fpubkey", "k.pem", "-o", "1", "rest", "-d", "2"])
    assert (opts.check, opts.expire, opts.fpubkey, opts.orig_tn) == (True, 60, "k.pem", "1")
    assert opts.rest == ["rest", "-d", "2"] and opts.dest_tn == ""
    opts = parse(["-check=false", "-timeout", "0x10", "--", "-x"])
    assert opts.check is False and opts.timeout == 16 and opts.rest == ["-x"]
