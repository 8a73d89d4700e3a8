"""The ``secsipid`` command line: in-process through ``main()`` for speed, and once through
the installed console script to prove the entry point works."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from helpers import run_cli
from secsipid import b64url_decode

X5U = "https://cert.example.org/sti.pem"


run = run_cli


def sign(capsys: pytest.CaptureFixture[str], key: Path, *extra: str) -> str:
    status, out, err = run(
        capsys, "sign", "--orig-tn", "+1 215-555-0121", "--dest-tn", "12155550131",
        "--attest", "A", "--x5u", X5U, "--key", str(key), *extra,
    )  # fmt: skip
    assert status == 0, err
    return out.strip()


def test_sign_then_check_valid(capsys: pytest.CaptureFixture[str], key_files: Any) -> None:
    """A signed header checks valid with the certificate and the public key (exit 0)."""
    value = sign(capsys, key_files.key_pem)
    assert value.endswith(f";info=<{X5U}>;alg=ES256;ppt=shaken")
    for opt, path in (("--cert", key_files.cert_pem), ("--pubkey", key_files.pub_pem)):
        status, out, _ = run(capsys, "check", value, opt, str(path))
        assert status == 0
        assert "valid: yes" in out and "TN-Validation-Passed" in out


def test_check_json_keys_and_failure_exit(
    capsys: pytest.CaptureFixture[str], key_files: Any
) -> None:
    """--json prints one object with the documented keys; an invalid header exits 1."""
    value = sign(capsys, key_files.key_pem)
    status, out, _ = run(
        capsys, "check", value, "--cert", str(key_files.cert_pem), "--json",
        "--dest-tn", "12155550199",
    )  # fmt: skip
    assert status == 1
    doc = json.loads(out)
    assert {"valid", "reason", "sip_status", "sip_reason", "verstat", "header", "claims"} <= set(
        doc
    )
    assert doc["valid"] is False
    assert doc["reason"] == "dest-mismatch"
    assert doc["sip_status"] == 438
    assert doc["claims"]["orig"] == {"tn": "12155550121"}


def test_check_stale_with_now(capsys: pytest.CaptureFixture[str], key_files: Any) -> None:
    """--iat and --now make freshness testable: 301 s old with --expire 300 is 403 Stale."""
    value = sign(capsys, key_files.key_pem, "--iat", "1700000000")
    status, out, _ = run(
        capsys, "check", value, "--pubkey", str(key_files.pub_pem), "--now", "1700000301",
        "--json",
    )  # fmt: skip
    assert status == 1
    doc = json.loads(out)
    assert (doc["reason"], doc["sip_status"], doc["sip_reason"]) == ("stale", 403, "Stale Date")
    status, _, _ = run(
        capsys, "check", value, "--pubkey", str(key_files.pub_pem), "--now", "1700000300"
    )
    assert status == 0


def test_check_reads_stdin_lines(
    capsys: pytest.CaptureFixture[str], key_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """'-' reads header lines from stdin; one valid value among bad ones passes."""
    value = sign(capsys, key_files.key_pem)
    import io

    monkeypatch.setattr(
        sys, "stdin", io.StringIO(f"Identity: garbage;info=<{X5U}>\n\ny: {value}\n")
    )
    status, out, _ = run(capsys, "check", "-", "--cert", str(key_files.cert_pem), "--json")
    doc = json.loads(out)
    assert status == 0 and doc["valid"] and doc["index"] == 1
    assert doc["failures"][0]["reason"] == "malformed-token"


def test_check_usage_errors_exit_2(capsys: pytest.CaptureFixture[str], key_files: Any) -> None:
    """No key and no trust anchors for the certificate from info, a missing key file, or a
    private key as credential: exit 2, no traceback."""
    value = sign(capsys, key_files.key_pem)
    status, _, err = run(capsys, "check", value)
    assert status == 2 and "--ca-file" in err and "--no-verify-cert" in err
    status, _, err = run(capsys, "check", value, "--cert", "/nonexistent/cert.pem")
    assert status == 2 and "key-not-found" in err and "Traceback" not in err
    status, _, err = run(capsys, "check", value, "--pubkey", str(key_files.key_pem))
    assert status == 2 and "key-is-private" in err


def test_sign_errors(capsys: pytest.CaptureFixture[str], key_files: Any) -> None:
    """Bad sign input is a usage error with a stable code."""
    status, _, err = run(
        capsys, "sign", "--orig-tn", "alice", "--dest-tn", "1", "--attest", "A",
        "--x5u", X5U, "--key", str(key_files.key_pem),
    )  # fmt: skip
    assert status == 2 and "invalid-tn" in err
    status, _, err = run(capsys, "sign", "--key", str(key_files.key_pem), "--orig-tn", "1")
    assert status == 2 and "--dest-tn" in err
    status, _, err = run(
        capsys, "sign", "--orig-tn", "1", "--dest-tn", "2", "--attest", "A", "--x5u", X5U,
        "--key", str(key_files.cert_pem),
    )  # fmt: skip
    assert status == 2 and "key-invalid" in err


def test_sign_given_json(capsys: pytest.CaptureFixture[str], key_files: Any) -> None:
    """--header/--payload sign any PASSporT (here div); --x5u gives the Identity with its ppt."""
    header = '{"x5u":"https://a.example/c.pem","typ":"passport","ppt":"div","alg":"ES256"}'
    payload = '{"orig":{"tn":"1"},"iat":1,"div":{"tn":"3"},"dest":{"tn":["2"]}}'
    status, out, err = run(
        capsys, "sign", "--key", str(key_files.key_pem), "--header", header, "--payload",
        payload, "--x5u", "https://a.example/c.pem",
    )  # fmt: skip
    assert status == 0, err
    value = out.strip()
    assert value.endswith(";info=<https://a.example/c.pem>;alg=ES256;ppt=div")
    h, _p, _ = value.split(";")[0].split(".")
    assert b64url_decode(h) == (
        b'{"alg":"ES256","ppt":"div","typ":"passport","x5u":"https://a.example/c.pem"}'
    )
    # --verbatim signs the text as given (secsipidx parity).
    status, out, _ = run(
        capsys, "sign", "--key", str(key_files.key_pem), "--header", header, "--payload",
        payload, "--verbatim",
    )  # fmt: skip
    assert status == 0
    assert b64url_decode(out.strip().split(".")[1]) == payload.encode()


def test_decode(capsys: pytest.CaptureFixture[str], key_files: Any) -> None:
    """decode prints params, header and claims; a malformed value exits 1."""
    value = sign(capsys, key_files.key_pem, "--origid", "123e4567-e89b-42d3-a456-426655440000")
    status, out, _ = run(capsys, "decode", value)
    doc = json.loads(out)
    assert status == 0
    assert doc["params"] == {"info": X5U, "alg": "ES256", "ppt": "shaken"}
    assert doc["claims"]["origid"] == "123e4567-e89b-42d3-a456-426655440000"
    assert doc["header"]["ppt"] == "shaken" and doc["compact"] is False
    status, out, _ = run(capsys, "decode", "x" * 9000)
    assert status == 1 and json.loads(out)["reason"] == "too-large"


def test_keygen_with_spc(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """keygen writes a P-256 key and a certificate with a TNAuthList carrying the SPC."""
    from secsipid._tnauthlist import TNAuthList

    status, _out, _ = run(capsys, "keygen", "--out", str(tmp_path / "lab"), "--spc", "818H")
    assert status == 0
    cert = x509.load_pem_x509_certificate((tmp_path / "lab" / "cert.pem").read_bytes())
    tnauth = TNAuthList.from_certificate(cert)
    assert tnauth is not None and tnauth.spc == "818H"
    assert cert.subject.rfc4514_string().startswith("CN=SHAKEN 818H")
    assert (tmp_path / "lab" / "key.pem").stat().st_mode & 0o777 == 0o600
    value = sign(capsys, tmp_path / "lab" / "key.pem")
    assert run(capsys, "check", value, "--cert", str(tmp_path / "lab" / "cert.pem"))[0] == 0


def test_every_command_has_help(capsys: pytest.CaptureFixture[str]) -> None:
    """--help works on the program and on every command."""
    for argv in (
        ["--help"],
        *[[c, "--help"] for c in ("sign", "check", "decode", "keygen", "demo", "fetch")],
    ):
        status, out, _ = run(capsys, *argv)
        assert status == 0 and "usage: secsipid" in out


def test_console_script_entry_point(key_files: Any, tmp_path: Path) -> None:
    """The installed `secsipid` script signs and the real process exits with the right codes."""
    exe = shutil.which("secsipid", path=str(Path(sys.executable).parent))
    assert exe is not None, "secsipid console script not installed in the venv"
    signed = subprocess.run(
        [exe, "sign", "--orig-tn", "1", "--dest-tn", "2", "--attest", "C", "--x5u", X5U,
         "--key", str(key_files.key_pem)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    ok = subprocess.run(
        [exe, "check", "-", "--cert", str(key_files.cert_pem)],
        input=signed.stdout, capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "secsipid", "check", signed.stdout.strip() + "x",
         "--cert", str(key_files.cert_pem)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 1 and "Traceback" not in bad.stderr


def _strict_json(text: str) -> Any:
    """Parse CLI output as strict JSON: NaN/Infinity are not JSON (RFC 8259 §6)."""

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the output is not JSON")

    return json.loads(text, parse_constant=refuse)


def _hostile_value(key_path: Path, extra: str) -> str:
    from cryptography.hazmat.primitives import serialization

    from helpers import PARAMS, SHAKEN_CLAIMS, SHAKEN_HEADER, raw_jws
    from secsipid import canonical_json

    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    claims = canonical_json(SHAKEN_CLAIMS)[:-1] + b',"x":' + extra.encode() + b"}"
    return raw_jws(key, canonical_json(SHAKEN_HEADER), claims) + PARAMS  # type: ignore[arg-type]


@pytest.mark.parametrize("extra", ["1e400", "-1e400", "[" * 40 + "]" * 40])
def test_hostile_json_output_is_strict_json(
    capsys: pytest.CaptureFixture[str], key_files: Any, extra: str
) -> None:
    """Claims with a number that overflows (or nested too deep): check prints "valid: no"
    (it printed "valid: yes" and then exited 2), and check --json / decode print strict JSON
    (they printed Infinity); check exits 1 with the invalid-claims-json reason."""
    from helpers import NOW

    value = _hostile_value(key_files.key_pem, extra)
    cert = str(key_files.cert_pem)
    status, out, err = run(capsys, "check", value, "--cert", cert, "--now", str(NOW))
    assert (status, err) == (1, "")
    assert "valid: no" in out and "reason: invalid-claims-json" in out
    status, out, _ = run(capsys, "check", value, "--cert", cert, "--now", str(NOW), "--json")
    assert status == 1
    assert _strict_json(out)["reason"] == "invalid-claims-json"
    _, out, _ = run(capsys, "decode", value)
    claims = _strict_json(out)["claims"]
    assert list(claims) == ["error"] and "PASSporT" not in claims["error"]


def test_claims_nested_900_deep_in_a_real_process(key_files: Any) -> None:
    """In a process with a shallow stack, claims nested 900 deep used to parse; then the check
    said "valid: yes", and --json died with a RecursionError traceback while printing them
    (~990 deep, the verifier's own re-encoding failed too: internal-error in strict mode).
    Now refused when parsing: invalid-claims-json, exit 1, nothing on stderr."""
    from helpers import NOW

    value = _hostile_value(key_files.key_pem, "[" * 900 + "]" * 900)
    for extra in ([], ["--json"]):
        proc = subprocess.run(
            [sys.executable, "-m", "secsipid", "check", "-", "--cert", str(key_files.cert_pem),
             "--now", str(NOW), *extra],
            input=value, capture_output=True, text=True,
        )  # fmt: skip
        assert (proc.returncode, proc.stderr) == (1, "")
        assert "invalid-claims-json" in proc.stdout


def test_demo_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """The README's demo command succeeds and shows each expected verdict."""
    status, out, _ = run(capsys, "demo")
    assert status == 0, out
    assert "demo: OK" in out
    for reason in ("valid", "bad-signature", "stale", "dest-mismatch", "no-identity"):
        assert reason in out


def test_keygen_ca_lab_pki(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """keygen --ca makes root -> intermediate -> leaf; the chain validates with the CRLs
    required, and a TN range in the leaf limits orig (RFC 9060)."""
    out = tmp_path / "pki"
    status, _, _ = run(
        capsys, "keygen", "--ca", "--out", str(out), "--spc", "567B",
        "--range", "12155550100:100",
    )  # fmt: skip
    assert status == 0
    trust = ["--cert", str(out / "chain.pem"), "--ca-file", str(out / "root.pem"),
             "--crl-file", str(out / "crl.pem"), "--crl-file", str(out / "root-crl.pem"),
             "--require-crl", "--json"]  # fmt: skip
    for orig, reason in (("12155550150", "valid"), ("12155550250", "cert-tn-not-authorized")):
        status, value, _ = run(
            capsys, "sign", "--orig-tn", orig, "--dest-tn", "1", "--attest", "A",
            "--x5u", X5U, "--key", str(out / "key.pem"),
        )  # fmt: skip
        status, out_json, _ = run(capsys, "check", value.strip(), *trust)
        doc = json.loads(out_json)
        assert doc["reason"] == reason
        assert status == (0 if reason == "valid" else 1)
    assert doc["sip_status"] == 437
    status, _, err = run(capsys, "keygen", "--ca", "--out", str(out), "--range", "x")
    assert status == 2 and "START:COUNT" in err


@pytest.mark.parametrize(
    ("argv", "status", "needle"),
    [
        (["check", "x", "--pubkey", "PUB", "--expire", "-5"], 2, "expire"),
        (["check", "x", "--no-verify-cert", "--timeout", "0"], 2, "timeout"),
        (["check", "x", "--no-verify-cert", "--max-size", "-1"], 2, "max_size"),
        (["keygen", "--out", "/proc/secsipid-nope"], 2, "os-error"),
        (["decode", "abc"], 1, ""),
        (["fetch", "https://[::1"], 1, "cert-url-refused"),
    ],
)
def test_bad_options_are_clean_errors(
    capsys: pytest.CaptureFixture[str], key_files: Any, argv: list[str], status: int, needle: str
) -> None:
    """Option values the library refuses, unusable paths and undecodable values give a
    one-line error and the documented exit code, never a traceback."""
    argv = [str(key_files.pub_pem) if a == "PUB" else a for a in argv]
    got, out, err = run(capsys, *argv)
    assert got == status
    assert needle in err + out
    assert "Traceback" not in err
