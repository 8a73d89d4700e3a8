"""The CLI for diverted calls and Rich Call Data: ``secsipid sign --ppt div|div-o|rcd``, the
``--rcd-*`` options, and ``secsipid check`` with every Identity value of a request."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from helpers import NOW, X5U, KeyFiles, run_cli
from secsipid import decode_token, rcd_digest

CALLER, FIRST, SECOND = "12155551212", "12155551213", "12155551214"


def _claims(value: str) -> dict[str, object]:
    return decode_token(value.split(";", 1)[0]).claims


def _sign(capsys: pytest.CaptureFixture[str], key_files: KeyFiles, *args: str) -> str:
    status, out, err = run_cli(
        capsys, "sign", "--key", str(key_files.key_pem), "--x5u", X5U, "--iat", str(NOW), *args
    )
    assert status == 0, err
    return out.strip()


def test_sign_div_and_check_the_chain(
    capsys: pytest.CaptureFixture[str], key_files: KeyFiles, monkeypatch: pytest.MonkeyPatch
) -> None:
    shaken = _sign(capsys, key_files, "--orig-tn", CALLER, "--dest-tn", FIRST, "--attest", "A")
    div = _sign(
        capsys,
        key_files,
        "--ppt", "div", "--orig-tn", CALLER, "--div-tn", FIRST, "--dest-tn", SECOND,
    )  # fmt: skip
    assert div.endswith(f";info=<{X5U}>;alg=ES256;ppt=div")
    assert _claims(div) == {
        "dest": {"tn": [SECOND]},
        "div": {"tn": FIRST},
        "iat": NOW,
        "orig": {"tn": CALLER},
    }
    # --original copies orig and iat
    copied = _sign(capsys, key_files, "--ppt", "div", "--original", shaken, "--dest-tn", SECOND)
    assert _claims(copied) == _claims(div)
    # check: both values on stdin, one per line, as header lines
    monkeypatch.setattr("sys.stdin", io.StringIO(f"Identity: {div}\nIdentity: {shaken}\n"))
    status, out, _ = run_cli(
        capsys, "check", "-", "--cert", str(key_files.cert_pem), "--dest-tn", SECOND,
        "--now", str(NOW),
    )  # fmt: skip
    assert status == 0, out
    assert "valid: yes" in out
    assert "chain [1] shaken:" in out and f"chain [0] div: div {FIRST} -> {SECOND}  ok" in out
    # --json: the chain, strict JSON
    status, out, _ = run_cli(
        capsys, "check", f"{shaken},{div}", "--cert", str(key_files.cert_pem),
        "--dest-tn", "12155550000", "--now", str(NOW), "--json",
    )  # fmt: skip
    assert status == 1
    data = json.loads(out)
    assert data["reason"] == "div-target-mismatch" and data["sip_status"] == 438
    assert [hop["ppt"] for hop in data["chain"]] == ["div"]


def test_sign_div_o(capsys: pytest.CaptureFixture[str], key_files: KeyFiles) -> None:
    shaken = _sign(capsys, key_files, "--orig-tn", CALLER, "--dest-tn", FIRST, "--attest", "A")
    value = _sign(capsys, key_files, "--ppt", "div-o", "--original", shaken, "--dest-tn", SECOND)
    assert value.endswith(";ppt=div-o")
    assert _claims(value)["opt"] == shaken.split(";", 1)[0]


def test_sign_with_rich_call_data(
    capsys: pytest.CaptureFixture[str], key_files: KeyFiles, tmp_path: Path
) -> None:
    icon = tmp_path / "icon.png"
    icon.write_bytes(b"picture")
    jcard = tmp_path / "card.json"
    jcard.write_text('["vcard", [["fn", {}, "text", "Example Bank"]]]')
    url = "https://rcd.example/icon.png"
    value = _sign(
        capsys, key_files, "--orig-tn", CALLER, "--dest-tn", FIRST, "--attest", "A",
        "--rcd-nam", "Example Bank", "--rcd-icn", url, "--rcd-jcd", f"@{jcard}",
        "--crn", "Card blocked", "--rcd-content", f"{url}={icon}",
    )  # fmt: skip
    claims = _claims(value)
    assert claims["rcd"] == {
        "icn": url,
        "jcd": ["vcard", [["fn", {}, "text", "Example Bank"]]],
        "nam": "Example Bank",
    }
    assert claims["crn"] == "Card blocked"
    assert claims["rcdi"]["/icn"] == rcd_digest(b"picture")  # type: ignore[index]
    status, out, _ = run_cli(
        capsys, "check", value, "--pubkey", str(key_files.pub_pem), "--now", str(NOW)
    )
    assert status == 0
    assert "rcd: nam 'Example Bank'  crn 'Card blocked'" in out
    assert f"call-info: <{url}>;purpose=icon;integrity=" in out
    # an rcd PASSporT of its own
    rcd_value = _sign(
        capsys, key_files, "--ppt", "rcd", "--orig-tn", CALLER, "--dest-tn", FIRST,
        "--rcd-nam", "Example Bank",
    )  # fmt: skip
    assert rcd_value.endswith(";ppt=rcd") and _claims(rcd_value)["rcd"] == {"nam": "Example Bank"}


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--ppt", "div", "--dest-tn", SECOND, "--orig-tn", CALLER), "--div-tn"),
        (("--ppt", "div-o", "--dest-tn", SECOND), "--original"),
        (("--ppt", "rcd", "--dest-tn", SECOND, "--orig-tn", CALLER), "--rcd-nam"),
        (("--orig-tn", CALLER, "--dest-tn", FIRST, "--attest", "A", "--crn", "x"), "--rcd-nam"),
        (
            (
                "--orig-tn",
                CALLER,
                "--dest-tn",
                FIRST,
                "--attest",
                "A",
                "--rcd-nam",
                "x",
                "--rcd-jcd",
                "{not json",
            ),
            "--rcd-jcd",
        ),
        (
            (
                "--orig-tn",
                CALLER,
                "--dest-tn",
                FIRST,
                "--attest",
                "A",
                "--rcd-nam",
                "x",
                "--rcd-icn",
                "logo.png",
            ),
            "absolute URL",
        ),
        (("--ppt", "div", "--dest-tn", FIRST, "--orig-tn", CALLER, "--div-tn", FIRST), "retarget"),
        (("--ppt", "div", "--original", "garbage", "--dest-tn", SECOND), "invalid-original"),
    ],
)
def test_sign_refusals_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], key_files: KeyFiles, args: tuple[str, ...], fragment: str
) -> None:
    status, out, err = run_cli(capsys, "sign", "--key", str(key_files.key_pem), "--x5u", X5U, *args)
    assert status == 2 and out == ""
    assert fragment in err and "Traceback" not in err


def test_check_fetch_rcd_goes_through_the_fetch_policy(
    capsys: pytest.CaptureFixture[str], key_files: KeyFiles
) -> None:
    """--fetch-rcd fetches the RCD URLs rcdi covers under the default fetch policy: a
    loopback URL is refused, the call stays valid and the RCD is withheld with the reason."""
    url = "https://127.0.0.1:9/icon.png"
    icon = key_files.dir / "icon.bin"
    icon.write_bytes(b"x")
    value = _sign(
        capsys, key_files, "--orig-tn", CALLER, "--dest-tn", FIRST, "--attest", "A",
        "--rcd-nam", "Example Bank", "--rcd-icn", url, "--rcd-content", f"{url}={icon}",
    )  # fmt: skip
    args = ("check", value, "--pubkey", str(key_files.pub_pem), "--now", str(NOW))
    status, out, _ = run_cli(capsys, *args)
    assert status == 0 and "rcd: nam 'Example Bank'" in out and "rcd failure" not in out
    status, out, _ = run_cli(capsys, *args, "--fetch-rcd", "--json")
    data = json.loads(out)
    assert status == 0 and data["valid"] is True and data["rcd"] is None
    assert data["rcd_failure"]["reason"] == "rcd-fetch-failed"
