"""The ``secsipid`` command line: in-process through ``main()`` for speed, and once through
the installed console script to prove the entry point works."""

from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from helpers import run_cli
from secsipid import Signer, b64url_decode, private_key_from_file

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


DECODE_KEYS = {"params", "compact", "header", "claims", "signature", "errors", "reason"}


def _json_lines(out: str) -> list[dict[str, Any]]:
    lines = out.splitlines()
    assert lines and all(line.startswith("{") and line.endswith("}") for line in lines), out
    return [json.loads(line) for line in lines]


def test_decode(capsys: pytest.CaptureFixture[str], key_files: Any) -> None:
    """decode prints params, header and claims as one JSON line; a malformed value exits 1."""
    value = sign(capsys, key_files.key_pem, "--origid", "123e4567-e89b-42d3-a456-426655440000")
    status, out, _ = run(capsys, "decode", value)
    [doc] = _json_lines(out)
    assert status == 0
    assert set(doc) == DECODE_KEYS and doc["errors"] == [] and doc["reason"] is None
    assert doc["params"] == {"info": X5U, "alg": "ES256", "ppt": "shaken"}
    assert doc["claims"]["origid"] == "123e4567-e89b-42d3-a456-426655440000"
    assert doc["header"]["ppt"] == "shaken" and doc["compact"] is False
    status, out, _ = run(capsys, "decode", "x" * 9000)
    [doc] = _json_lines(out)
    assert status == 1 and doc["reason"] == "too-large" and set(doc) == DECODE_KEYS


@pytest.mark.parametrize(
    ("value", "decoded", "failed"),
    [
        ("a.b.c;info=<x>", {"params": {"info": "x"}}, ["header", "claims", "signature"]),
        ("eyJ!.eyJ.x", {"signature": "x"}, ["header", "claims", "signature"]),
        ("e30.eyJ.AAAA;info=<x>", {"header": {}}, ["claims", "signature"]),
        ("e30.e30;info=<x>", {"params": {"info": "x"}}, ["token"]),
    ],
)
def test_decode_undecodable_part_exits_1(
    capsys: pytest.CaptureFixture[str], value: str, decoded: dict[str, Any], failed: list[str]
) -> None:
    """A part that cannot be decoded makes the exit status 1 and is named in "errors"; what
    could be decoded is printed (issue 8 item 1: these exited 0)."""
    status, out, err = run(capsys, "decode", value)
    [doc] = _json_lines(out)
    assert status == 1, out
    assert err == ""
    assert [e.split(":")[0] for e in doc["errors"]] == failed
    for key, want in decoded.items():
        assert doc[key] == want


def test_decode_several_values_one_line_each(
    capsys: pytest.CaptureFixture[str], key_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One shape whatever the count: one JSON object per value, one per line."""
    import io

    value = sign(capsys, key_files.key_pem)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"Identity: {value}\n\ny: garbage\n"))
    status, out, _ = run(capsys, "decode", "-")
    docs = _json_lines(out)
    assert status == 1
    assert [bool(d["errors"]) for d in docs] == [False, True]
    assert all(set(d) == DECODE_KEYS for d in docs)


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
    (they printed Infinity); check exits 1 with the invalid-claims-json reason, decode names the
    claims as undecodable."""
    from helpers import NOW

    value = _hostile_value(key_files.key_pem, extra)
    cert = str(key_files.cert_pem)
    status, out, err = run(capsys, "check", value, "--cert", cert, "--now", str(NOW))
    assert (status, err) == (1, "")
    assert "valid: no" in out and "reason: invalid-claims-json" in out
    status, out, _ = run(capsys, "check", value, "--cert", cert, "--now", str(NOW), "--json")
    assert status == 1
    assert _strict_json(out)["reason"] == "invalid-claims-json"
    status, out, _ = run(capsys, "decode", value)
    doc = _strict_json(out)
    assert status == 1 and doc["claims"] is None
    assert [e for e in doc["errors"] if e.startswith("claims: ")], doc["errors"]


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
        (["check", "x", "--no-verify-cert", "--max-size", "-1"], 2, "--max-size"),
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


# -- issue 8: first use ------------------------------------------------------------------------

ERROR_LINE = re.compile(r"secsipid: error: [a-z0-9-]+: \S.*\n")


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "x", "--pubkey", "PUB", "--expire", "-1"],
        ["check", "x", "--bogus-option"],
        ["sign", "--key"],
        ["keygen"],
        ["check", "x", "--pubkey", "PUB", "--now", "soon"],
        ["sign", "--key", "PUB", "--attest", "Z"],
        ["nosuchcommand"],
        ["check", "x", "--cert", "/nonexistent/cert.pem"],
        ["check", "x"],
        ["fetch", "https://[::1"],
        ["keygen", "--out", "/proc/secsipid-nope"],
        ["kamailio-example", "nope"],
    ],
)
def test_every_error_is_the_documented_line(
    capsys: pytest.CaptureFixture[str], key_files: Any, argv: list[str]
) -> None:
    """docs/cli.md: an error is one line, `secsipid: error: <code>: <message>`, for option
    errors of subcommands too (issue 8 item 5: argparse printed usage plus a second line)."""
    argv = [str(key_files.pub_pem) if a == "PUB" else a for a in argv]
    status, out, err = run(capsys, *argv)
    assert status in (1, 2)
    assert ERROR_LINE.fullmatch(err), err
    assert "usage: secsipid" not in err and "Traceback" not in err
    assert out == ""


def test_option_errors_name_the_option_not_internals(
    capsys: pytest.CaptureFixture[str], key_files: Any
) -> None:
    """--expire -1 said "VerifyPolicy.expire must be a non-negative int" (issue 8 item 4)."""
    for argv, option in (
        (["check", "x", "--pubkey", str(key_files.pub_pem), "--expire", "-1"], "--expire"),
        (
            ["check", "x", "--pubkey", str(key_files.pub_pem), "--future-skew", "-3"],
            "--future-skew",
        ),
        (["check", "x", "--no-verify-cert", "--timeout", "0"], "--timeout"),
        (["check", "x", "--no-verify-cert", "--timeout", "nan"], "--timeout"),
    ):
        status, _, err = run(capsys, *argv)
        assert status == 2
        assert option in err and argv[-1] in err, err
        assert "Policy" not in err and "non-negative int" not in err


def test_mismatch_messages_show_both_numbers(
    capsys: pytest.CaptureFixture[str], key_files: Any
) -> None:
    """orig-mismatch/dest-mismatch show the number in the PASSporT and the one given."""
    value = sign(capsys, key_files.key_pem)
    cert = str(key_files.cert_pem)
    _, out, _ = run(capsys, "check", value, "--cert", cert, "--orig-tn", "+1 999-555-0100")
    assert "12155550121" in out and "19995550100" in out and "hint: --orig-tn" in out
    _, out, _ = run(capsys, "check", value, "--cert", cert, "--dest-tn", "12155550199", "--json")
    doc = json.loads(out)
    assert "12155550131" in doc["message"] and "12155550199" in doc["message"]
    assert "--dest-tn" in doc["hint"]


def test_untrusted_chain_message(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A chain to another root: no "candidates exhausted" jargon, and the options to use."""
    run(capsys, "keygen", "--ca", "--out", str(tmp_path / "a"))
    run(capsys, "keygen", "--ca", "--out", str(tmp_path / "b"))
    _, value, _ = run(
        capsys, "sign", "--orig-tn", "12155550121", "--dest-tn", "1", "--attest", "A",
        "--x5u", X5U, "--key", str(tmp_path / "a" / "key.pem"),
    )  # fmt: skip
    status, out, _ = run(
        capsys, "check", value.strip(), "--cert", str(tmp_path / "a" / "chain.pem"),
        "--ca-file", str(tmp_path / "b" / "root.pem"), "--json",
    )  # fmt: skip
    doc = json.loads(out)
    assert status == 1 and doc["reason"] == "cert-untrusted"
    assert "candidates exhausted" not in doc["message"]
    assert "interior" not in doc["message"]
    assert "trust anchors" in doc["message"]
    assert "--ca-file" in doc["hint"] and "--no-verify-cert" in doc["hint"]


def test_refused_urls_name_the_lab_options(
    capsys: pytest.CaptureFixture[str], key_files: Any
) -> None:
    """http:// and loopback info URLs are refused with the option that allows them."""
    lab = Signer(private_key_from_file(key_files.key_pem))
    for url, allow, option in (
        ("http://cert.example.org/sti.pem", [], "--allow-http"),
        ("https://127.0.0.1:9/sti.pem", [], "--allow-private"),
        ("http://127.0.0.1:9/sti.pem", ["--allow-http"], "--allow-private"),
    ):
        value = lab.identity("12155550121", "12155550131", "A", x5u=url)
        status, out, _ = run(capsys, "check", value, "--no-verify-cert", *allow)
        assert status == 1 and "cert-url-refused" in out
        assert "hint: a lab certificate server" in out and option in out, out
        status, _, err = run(capsys, "fetch", url, *allow)
        assert status == 1 and ERROR_LINE.fullmatch(err) and option in err, err


def test_keygen_refuses_to_overwrite(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Re-running keygen replaced key.pem silently; now it needs --force (issue 8 item 3)."""
    out = tmp_path / "lab"
    assert run(capsys, "keygen", "--out", str(out))[0] == 0
    before = (out / "key.pem").read_bytes()
    status, stdout, err = run(capsys, "keygen", "--out", str(out))
    assert status == 2 and ERROR_LINE.fullmatch(err) and "--force" in err and "key.pem" in err
    assert stdout == ""
    assert (out / "key.pem").read_bytes() == before
    assert run(capsys, "keygen", "--out", str(out), "--force")[0] == 0
    assert (out / "key.pem").read_bytes() != before
    pki = tmp_path / "pki"
    assert run(capsys, "keygen", "--ca", "--out", str(pki))[0] == 0
    root = (pki / "root.pem").read_bytes()
    status, _, err = run(capsys, "keygen", "--ca", "--out", str(pki))
    assert status == 2 and "--force" in err
    assert (pki / "root.pem").read_bytes() == root


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["--days", "0"], "--days"),
        (["--days", "-5"], "--days"),
        (["--ca", "--range", "12155550100:0"], "--range"),
        (["--ca", "--range", "x:5"], "--range"),
        (["--tn", "12155550100"], "--tn"),
        (["--range", "12155550100:10"], "--range"),
        (["--crl-url", "http://crl.example/x.crl"], "--crl-url"),
    ],
)
def test_keygen_refuses_nonsense(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], option: str
) -> None:
    """Values that make no certificate (or were silently ignored without --ca) are refused
    with a one-line error naming the option, and nothing is written."""
    status, _, err = run(capsys, "keygen", "--out", str(tmp_path / "x"), *argv)
    assert status == 2 and ERROR_LINE.fullmatch(err) and option in err, err
    assert not (tmp_path / "x").exists()


def _close_stdout_then_feed(cmd: list[str], data: str) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` with a stdout pipe whose reader is gone before anything is written."""
    proc = subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdin is not None and proc.stderr is not None
    proc.stdout.close()
    with contextlib.suppress(BrokenPipeError):  # it may stop reading once its output is gone
        proc.stdin.write(data)
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    err = proc.stderr.read()
    proc.stderr.close()
    return subprocess.CompletedProcess(cmd, proc.wait(30), "", err)


def test_broken_pipe_exits_quietly(key_files: Any) -> None:
    """`secsipid check ... | head -1`: the reader going away is not a usage error (it exited
    2) and prints nothing; the status is a SIGPIPE death's, 141 (issue 8 item 2)."""
    signer = Signer(private_key_from_file(key_files.key_pem))
    lines = "".join(signer.identity("1", "2", "A", x5u=X5U) + "\n" for _ in range(200))
    for argv in (
        ["check", "-", "--cert", str(key_files.cert_pem)],
        ["check", "--each", "--cert", str(key_files.cert_pem)],
        ["decode", "-"],
    ):
        done = _close_stdout_then_feed([sys.executable, "-m", "secsipid", *argv], lines)
        assert done.returncode == 141, (argv, done.returncode, done.stderr)
        assert done.stderr == "", done.stderr


def test_check_each_line(
    capsys: pytest.CaptureFixture[str], key_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--each: one verdict per input line, as JSON lines with the line number (issue 8
    item 10); exit 1 when any line is invalid."""
    import io

    value = sign(capsys, key_files.key_pem)
    text = f"{value}\n\nIdentity: garbage;info=<{X5U}>\ny: {value}, {value}x\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    status, out, _ = run(capsys, "check", "--each", "--cert", str(key_files.cert_pem))
    docs = _json_lines(out)
    assert status == 1
    assert [(d["line"], d["valid"], d["reason"]) for d in docs] == [
        (1, True, "valid"),
        (3, False, "malformed-token"),
        (4, True, "valid"),
    ]
    assert docs[1]["sip_status"] == 438
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{value}\n{value}\n"))
    status, out, _ = run(capsys, "check", "--each", "--cert", str(key_files.cert_pem))
    assert status == 0 and len(_json_lines(out)) == 2
    status, _, err = run(capsys, "check", "somefile", "--each", "--cert", str(key_files.cert_pem))
    assert status == 2 and "--each" in err


class _Endless:
    """A stdin that never ends (``read()`` without a size would hang: refused here)."""

    def __init__(self) -> None:
        self.given = 0

    def read(self, size: int = -1) -> str:
        assert 0 <= size <= (1 << 20) + 1, f"unbounded read({size})"
        self.given += size
        return "a" * size


class _Recording(io.StringIO):
    """A stdin that records the longest piece handed out at once."""

    longest = 0

    def readline(self, size: int | None = -1) -> str:
        line = super().readline(-1 if size is None else size)
        self.longest = max(self.longest, len(line))
        return line


def test_check_stdin_is_read_within_a_bound(
    capsys: pytest.CaptureFixture[str], key_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """More stdin than one request can hold (16 values of 8 KiB) is too-large (438) after
    reading 1 MiB, never read whole: an endless input does not hang or fill the memory."""
    endless = _Endless()
    monkeypatch.setattr(sys, "stdin", endless)
    status, out, _ = run(capsys, "check", "--cert", str(key_files.cert_pem), "--json")
    doc = json.loads(out)
    assert (status, doc["reason"], doc["sip_status"]) == (1, "too-large", 438)
    assert doc["message"].startswith("stdin holds more than 1048576 characters")
    assert endless.given == (1 << 20) + 1
    # Just under the bound: read and verified as usual.
    value = sign(capsys, key_files.key_pem)
    padded = value + "\n" * ((1 << 20) - len(value))
    monkeypatch.setattr(sys, "stdin", io.StringIO(padded))
    status, out, _ = run(capsys, "check", "-", "--cert", str(key_files.cert_pem), "--json")
    assert status == 0 and json.loads(out)["valid"]


def test_check_each_long_line_is_too_large_and_the_next_is_checked(
    capsys: pytest.CaptureFixture[str], key_files: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--each: a line over 1 MiB is one too-large verdict (its line number kept), read in
    bounded pieces; the lines after it are checked."""
    value = sign(capsys, key_files.key_pem)
    stdin = _Recording(f"{value}\n{'x' * (3 << 20)}\n{value}\n")
    monkeypatch.setattr(sys, "stdin", stdin)
    status, out, _ = run(capsys, "check", "--each", "--cert", str(key_files.cert_pem))
    docs = _json_lines(out)
    assert status == 1
    assert [(d["line"], d["reason"]) for d in docs] == [
        (1, "valid"),
        (2, "too-large"),
        (3, "valid"),
    ]
    assert docs[1]["message"].startswith("line 2 holds more than 1048576 characters")
    assert stdin.longest <= (1 << 20) + 1


@pytest.fixture
def lab_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A lab PKI and its chain served over HTTP on 127.0.0.1: (x5u URL, PKI directory)."""
    import http.server
    import threading

    from secsipid.cli import main

    pki = tmp_path / "pki"
    assert main(["keygen", "--ca", "--out", str(pki)]) == 0
    body = (pki / "chain.pem").read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/pem-certificate-chain")
            self.send_header("Cache-Control", "max-age=600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sti.pem", pki
    finally:
        server.shutdown()
        server.server_close()


def test_verbose_shows_fetch_cache_and_trust(
    capsys: pytest.CaptureFixture[str], lab_server: tuple[str, Path], tmp_path: Path
) -> None:
    """-v logs the fetch (status, size, time), where the certificate came from and the trust
    decision; --log-level debug adds the response's caching headers (issue 8 item 11)."""
    url, pki = lab_server
    capsys.readouterr()
    value = Signer(private_key_from_file(pki / "key.pem")).identity("1", "2", "A", x5u=url)
    common = ["--allow-http", "--allow-private", "--ca-file", str(pki / "root.pem")]
    cache = ["--cache-dir", str(tmp_path / "cache")]
    status, out, err = run(capsys, "check", value, *common, *cache, "-v")
    assert status == 0 and "valid: yes" in out
    assert f"fetch {url}" in err and f"fetched {url}: HTTP 200" in err
    assert "trust: CN=SHAKEN 1234" in err and "validated (SPC 1234)" in err
    assert "verdict: valid" in err
    assert "cache-control" not in err
    status, _, err = run(capsys, "check", value, *common, *cache, "--log-level", "debug")
    assert status == 0
    assert f"{url}: certificate from the cache (no fetch)" in err and "fetched" not in err
    # Another URL: the in-process memory cache has the first one.
    fresh = Signer(private_key_from_file(pki / "key.pem")).identity("1", "2", "A", x5u=url + "2")
    status, _, err = run(capsys, "check", fresh, *common, "-vv")
    assert status == 0 and "cache-control: max-age=600" in err
    status, _, err = run(capsys, "check", value, *common)
    assert status == 0 and err == ""
    other = tmp_path / "other"
    run(capsys, "keygen", "--ca", "--out", str(other))
    status, _, err = run(
        capsys, "check", value, "--allow-http", "--allow-private", "--ca-file",
        str(other / "root.pem"), "-v",
    )  # fmt: skip
    assert status == 1 and "refused: cert-untrusted" in err
    status, _, err = run(capsys, "fetch", url, "--allow-http", "--allow-private", "-v")
    assert status == 0 and f"fetched {url}: HTTP 200" in err


def test_kamailio_example_prints_the_shipped_scripts(capsys: pytest.CaptureFixture[str]) -> None:
    """`secsipid kamailio-example NAME` prints the files of examples/kamailio (issue 8 item 8;
    tests/test_packaging.py checks the same from a built wheel)."""
    examples = Path(__file__).resolve().parent.parent / "examples" / "kamailio"
    for name, file in (
        ("sti_vs", "sti_vs.py"),
        ("sti_as.py", "sti_as.py"),
        ("redirect", "redirect.py"),
        ("kamailio.cfg", "kamailio.cfg"),
    ):
        status, out, _ = run(capsys, "kamailio-example", name)
        assert status == 0 and out == (examples / file).read_text()
    status, out, _ = run(capsys, "kamailio-example")
    assert status == 0 and "sti_vs.py" in out and "kamailio.cfg" in out


def test_decode_json_lines_are_ascii(capsys: pytest.CaptureFixture[str]) -> None:
    """decode prints one JSON object per line, in ASCII: a claim holding U+2028 or U+0085
    (line breaks to str.splitlines) cannot split a line."""
    import base64

    def b64(obj: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    value = b64({"alg": "ES256"}) + "." + b64({"x": "a\u2028b\u0085c"}) + ".x;info=<https://a/b>"
    _, out, _ = run_cli(capsys, "decode", value)
    assert out.isascii() and len(out.splitlines()) == 1
    assert json.loads(out)["claims"] == {"x": "a\u2028b\u0085c"}
