"""``secsipid serve`` configuration: TOML plus flags, validated with one line per problem;
reloads that swap the state or refuse a broken configuration."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from helpers import X5U, KeyFiles, run_cli
from secsipid.service import ConfigError, build_state, create_app, load_config
from secsipid.service.config import is_loopback, parse_listen

TOKEN = "s3cret-token-0123456789abcdef"


def _problems(config_file: str | None = None, **overrides: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build_state(load_config(config_file, overrides))
    return info.value.problems


def test_toml_and_flags(tmp_path: Path, key_files: KeyFiles) -> None:
    """The file sets everything; flags given override it."""
    path = tmp_path / "serve.toml"
    path.write_text(
        f"""
listen = "127.0.0.2:9000"
workers = 3
[signing]
key = "{key_files.key_pem}"
x5u = "{X5U}"
[verification]
cert = "{key_files.cert_pem}"
expire = 60
crl_files = []
[cache]
backend = "memory"
[server]
max_body = 4096
access_log = true
"""
    )
    config = load_config(str(path), {"expire": 120, "workers": 1})
    assert (config.host, config.port, config.workers) == ("127.0.0.2", 9000, 1)
    assert (config.expire, config.max_body, config.access_log) == (120, 4096, True)
    assert config.key == str(key_files.key_pem) and config.x5u == X5U
    state = build_state(config)
    assert state.default is not None and state.verifier is not None


@pytest.mark.parametrize(
    ("toml", "problem"),
    [
        ("lisen = '127.0.0.1:1'", "lisen: unknown setting"),
        ("[verification]\nca_fil = 'x'", "verification.ca_fil: unknown setting"),
        ("workers = 'two'", "workers: 'two' is not a valid int"),
        ("workers = 0", "workers: must be positive and at most 256"),
        ("[verification]\nexpire = -1", "verification.expire: must not be negative"),
        ("[verification]\ntimeout = 0", "verification.timeout: must be positive"),
        ("[server]\nkeep_alive = 'yes'", "server.keep_alive: 'yes' is not a valid bool"),
        ("[server]\nruntime_threads = 0", "runtime_threads: must be positive and at most 64"),
        ("[cache]\nbackend = 'disk'", "cache.backend: 'disk' is not one of memory, redis"),
        ("[cache]\nbackend = 'redis'", 'cache.backend "redis" needs cache.redis'),
        ("[cache]\nbackend = 'memory'\nredis = 'redis://h/0'", 'cache.backend is "memory"'),
        ("listen = 'nohost'", "listen: 'nohost' is not HOST:PORT"),
        ("listen = '127.0.0.1:0'", "listen: '127.0.0.1:0': port must be in 1..65535"),
        ("listen = 'bad host:80'", "is not an address or host name"),
        ("[signing]\nx5u = 'not a url'", "signing.x5u: 'not a url' is not an absolute URL"),
        ("[signing]\nkey = ''", "signing.key: must not be empty"),
        ("[server]\ntls_cert = 'c.pem'", "server.tls_cert and server.tls_key go together"),
        ("[signing]\nprofiles = 5", "signing.profiles: must be an array of tables"),
        ("[[signing.profiles]]\nx5u = 'https://a/b'", "signing.profiles[0].key: a key file"),
        ("[[signing.profiles]]\nkey = 'k'\nprefixes = ['12a']", "prefixes: must be a list"),
        ("[[signing.profiles]]\nkey = 'k'\ncolour = 1", "signing.profiles[0].colour: unknown"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_form_problems(tmp_path: Path, toml: str, problem: str) -> None:
    path = tmp_path / "serve.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    assert any(problem in p for p in info.value.problems), info.value.problems


def test_every_problem_reported(tmp_path: Path) -> None:
    """Several problems: one line each, all at once."""
    with pytest.raises(ConfigError) as info:
        load_config(None, {"listen": "x", "workers": -1, "x5u": "nope", "expire": -5})
    assert len(info.value.problems) == 4


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path / "none.toml"))
    assert info.value.problems == [f"config: {tmp_path / 'none.toml'}: no such file"]


def test_file_problems(tmp_path: Path, key_files: KeyFiles) -> None:
    """Missing and unreadable files, a key/certificate mismatch, trust files."""
    other = tmp_path / "other"
    assert run_cli_keygen(other) == 0
    problems = _problems(
        key=str(tmp_path / "missing.pem"),
        cert=str(key_files.key_pem),
        pub_dir=str(tmp_path / "nodir"),
    )
    assert f"signing.key: {tmp_path / 'missing.pem'}: no such file" in problems
    assert any(p.startswith("verification.cert: ") and "private key" in p for p in problems)
    assert f"server.pub_dir: {tmp_path / 'nodir'}: not a directory" in problems
    problems = _problems(key=str(key_files.key_pem), sign_cert=str(other / "cert.pem"))
    assert problems == [
        f"signing.cert: {other / 'cert.pem'} does not match the key in {key_files.key_pem}"
    ]
    problems = _problems(ca_file=str(tmp_path / "roots.pem"))
    assert problems == [f"verification.ca_file: {tmp_path / 'roots.pem'}: no such file"]
    problems = _problems(key=str(key_files.pub_pem))
    assert len(problems) == 1 and problems[0].startswith("signing.key: ")


def run_cli_keygen(out: Path, spc: str | None = None) -> int:
    from secsipid.cli import main

    return main(["keygen", "--out", str(out), *(["--spc", spc] if spc else [])])


def test_unreadable_key(tmp_path: Path, key_files: KeyFiles) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    key = tmp_path / "key.pem"
    shutil.copy(key_files.key_pem, key)
    key.chmod(0)
    assert _problems(key=str(key))[0].startswith("signing.key: ")


def test_spc_checks(tmp_path: Path) -> None:
    """A profile's SPC must agree with its certificate's TNAuthList; SPCs are unique."""
    assert run_cli_keygen(tmp_path / "a", "1234") == 0
    a = {"key": str(tmp_path / "a/key.pem"), "cert": str(tmp_path / "a/cert.pem")}
    problems = _problems(x5u=X5U, profiles=[{**a, "spc": "999"}])
    assert problems == [
        f"signing.profiles[0].spc: '999' differs from the SPC '1234' in the TNAuthList of "
        f"{tmp_path / 'a/cert.pem'}"
    ]
    problems = _problems(x5u=X5U, profiles=[a, a])
    assert problems == ["signing.profiles: SPC '1234' is configured more than once"]


def test_non_loopback_signing_needs_token(tmp_path: Path, key_files: KeyFiles) -> None:
    """Signing on a non-loopback address: refused without a bearer token or mTLS."""
    problems = _problems(listen="0.0.0.0:8088", key=str(key_files.key_pem))
    assert problems == [
        "listen: 0.0.0.0:8088 is not a loopback address: signing there needs a bearer token "
        "(--token-file / signing.token_file) or mTLS (server.tls_client_ca)"
    ]
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    config = load_config(
        None, {"listen": "[::]:8088", "key": str(key_files.key_pem), "token_file": str(tokens)}
    )
    assert build_state(config).needs_token
    # Verification only: no token needed anywhere.
    config = load_config(None, {"listen": "0.0.0.0:8088", "cert": str(key_files.cert_pem)})
    assert not build_state(config).needs_token


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "holds no token"),
        ("# only a comment\n", "holds no token"),
        ("short\n", "line 1: a token must be at least 16"),
        (f"{TOKEN}\nbad token with spaces\n", "line 2: a token must be at least 16"),
    ],
    ids=["empty", "comment", "too-short", "spaces"],
)
def test_token_file_problems(
    tmp_path: Path, key_files: KeyFiles, content: str, problem: str
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(content)
    problems = _problems(key=str(key_files.key_pem), token_file=str(tokens))
    assert any(problem in p for p in problems), problems
    assert all("short" not in p and "spaces" not in p for p in problems)  # never the token


def test_config_repr_has_no_secret(tmp_path: Path, key_files: KeyFiles) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKEN + "\n")
    config = load_config(None, {"key": str(key_files.key_pem), "token_file": str(tokens)})
    state = build_state(config)
    text = repr(config) + repr(state.default) + repr(state.__slots__)
    assert TOKEN not in text
    assert key_files.key_pem.read_text().splitlines()[1] not in text


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8088", ("127.0.0.1", 8088)),
        ("[::1]:80", ("::1", 80)),
        ("localhost:1", ("localhost", 1)),
        ("sti.example.net:443", ("sti.example.net", 443)),
    ],
)
def test_parse_listen(value: str, expected: tuple[str, int]) -> None:
    assert parse_listen(value) == expected


@pytest.mark.parametrize("value", ["8088", ":80", "[::1:80", "[nope]:80", "a b:1", "h:99999"])
def test_parse_listen_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_listen(value)


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.5.5.5", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.org"]))


# -- the serve command's validation ------------------------------------------------------------


def test_cli_check_config(capsys: pytest.CaptureFixture[str], key_files: KeyFiles) -> None:
    status, out, err = run_cli(
        capsys, "serve", "--key", str(key_files.key_pem), "--cert", str(key_files.cert_pem),
        "--check-config",
    )  # fmt: skip
    assert (status, err) == (0, "")
    assert out == "secsipid serve: configuration OK (listen 127.0.0.1:8088)\n"


def test_cli_problems_one_line_each(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, key_files: KeyFiles
) -> None:
    status, _, err = run_cli(
        capsys, "serve", "--listen", "0.0.0.0:8088", "--key", str(tmp_path / "k.pem"),
        "--cert", str(key_files.cert_pem), "--check-config",
    )  # fmt: skip
    assert status == 2
    assert err.splitlines() == [
        f"secsipid serve: config: signing.key: {tmp_path / 'k.pem'}: no such file",
        "secsipid serve: config: listen: 0.0.0.0:8088 is not a loopback address: signing there "
        "needs a bearer token (--token-file / signing.token_file) or mTLS "
        "(server.tls_client_ca)",
    ]
    assert "Traceback" not in err


def test_cli_warns_without_verification(
    capsys: pytest.CaptureFixture[str], key_files: KeyFiles
) -> None:
    status, _, err = run_cli(capsys, "serve", "--key", str(key_files.key_pem), "--check-config")
    assert status == 0
    assert err.startswith("secsipid serve: warning: verification is not configured")


def test_cli_warns_when_the_key_is_in_pub_dir(
    capsys: pytest.CaptureFixture[str], key_files: KeyFiles
) -> None:
    """A signing key in the directory served at /v1/pub/ (a lab's keygen output): the service
    starts, says the key is never served there, and /v1/pub/ refuses it (test_service_app)."""
    pub = key_files.key_pem.parent
    status, _, err = run_cli(
        capsys, "serve", "--key", str(key_files.key_pem), "--cert", str(key_files.cert_pem),
        "--pub-dir", str(pub), "--check-config",
    )  # fmt: skip
    assert status == 0
    key = os.path.realpath(key_files.key_pem)
    assert err == (
        f"secsipid serve: warning: {key} is in server.pub_dir: never served there "
        "(not a certificate)\n"
    )


def test_cli_flags_map_to_settings(capsys: pytest.CaptureFixture[str]) -> None:
    """Negative switches and repeatable flags become the right settings."""
    from secsipid.cli import build_parser
    from secsipid.service.cli import overrides_from_args

    args = build_parser().parse_args(
        ["serve", "--no-verify-cert", "--no-keep-alive", "--crl-file", "a", "--crl-file", "b",
         "--allow-http", "--workers", "3", "--runtime-threads", "2"]
    )  # fmt: skip
    assert overrides_from_args(args) == {
        "verify_cert": False, "keep_alive": False, "crl_files": ["a", "b"], "allow_http": True,
        "workers": 3, "runtime_threads": 2,
    }  # fmt: skip


def test_fetch_rcd_setting(tmp_path: Path, key_files: KeyFiles) -> None:
    """verification.fetch_rcd (--fetch-rcd) turns VerifyPolicy.fetch_rcd on, with a fetcher
    under the service's fetch policy in both modes (file and info URL); off by default."""
    from secsipid.cli import build_parser
    from secsipid.service.cli import overrides_from_args

    args = build_parser().parse_args(["serve", "--fetch-rcd"])
    assert overrides_from_args(args) == {"fetch_rcd": True}
    toml = tmp_path / "serve.toml"
    toml.write_text("[verification]\nfetch_rcd = true\nallow_http = true\ntimeout = 2.5\n")
    for settings in ({"cert": str(key_files.cert_pem)}, {"verify_cert": False}):
        verifier = build_state(load_config(str(toml), settings)).verifier
        assert verifier is not None and verifier.policy.fetch_rcd
        fetcher = verifier._fetcher
        assert fetcher is not None and fetcher.policy.allow_http and fetcher.policy.timeout == 2.5
    plain = build_state(load_config(None, {"cert": str(key_files.cert_pem)})).verifier
    assert plain is not None and not plain.policy.fetch_rcd and plain._fetcher is None


# -- reload ------------------------------------------------------------------------------------


def test_reload_on_key_change(tmp_path: Path, key_files: KeyFiles) -> None:
    """A changed key file is picked up; a broken one is refused and the old state stays."""
    key = tmp_path / "key.pem"
    shutil.copy(key_files.key_pem, key)
    app = create_app(load_config(None, {"key": str(key), "x5u": X5U}))
    first = app.state
    assert not app.reloader.check()  # nothing changed
    assert run_cli_keygen(tmp_path / "new") == 0
    os.replace(tmp_path / "new/key.pem", key)
    assert app.reloader.check()
    assert app.state is not first
    assert app.state.default is not None
    assert app.state.default.signer.key.private_numbers() != (
        first.default.signer.key.private_numbers() if first.default else None
    )
    second = app.state
    key.write_text("garbage")
    assert not app.reloader.check()
    assert app.state is second
    assert not app.reloader.check()  # refused once, not retried until the next change


def test_reload_stamp_and_config_file(tmp_path: Path, key_files: KeyFiles) -> None:
    """Touching the stamp reloads (SIGHUP path); a changed TOML file too."""
    path = tmp_path / "serve.toml"
    path.write_text("[verification]\nexpire = 60\n")
    stamp = tmp_path / "reload"
    stamp.write_text("0")
    app = create_app(
        load_config(str(path), {"cert": str(key_files.cert_pem)}), stamp_file=str(stamp)
    )
    assert app.state.config.expire == 60
    path.write_text("[verification]\nexpire = 90\n")
    assert app.reloader.check()
    assert app.state.config.expire == 90
    assert app.state.config.cert == str(key_files.cert_pem)  # the flags still apply
    state = app.state
    stamp.write_text("1")
    assert app.reloader.check() and app.state is not state
    path.write_text("[verification]\nexpire = 'x'\n")
    assert not app.reloader.check()
    assert app.state.config.expire == 90
