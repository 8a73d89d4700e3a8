"""secsipid.kamailio in a real Kamailio 5.6 with real sipp traffic, on loopback.

Each test starts the processes it needs, on ports of its own, runs the examples of
examples/kamailio/ unchanged (settings through -A defines) and stops everything by PID.
"""

from __future__ import annotations

import time
from pathlib import Path

import kamharness as kh
import pytest

from conftest import Pki
from secsipid import Signer, b64url_decode, b64url_encode, private_key_from_file

pytestmark = pytest.mark.kamailio

X5U = "https://cert.example.org/sti.pem"
PASSED = "TN-Validation-Passed"


def _as(tmp: Path, pki: Pki, next_port: int, **defines: str | int) -> kh.Kamailio:
    return kh.Kamailio(
        tmp,
        "as",
        kh.free_port(),
        {
            "KEMI_SCRIPT": str(kh.EXAMPLES / "sti_as.py"),
            "STIR_KEY": str(pki.key),
            "STIR_X5U": X5U,
            "NEXT_HOP": f"sip:127.0.0.1:{next_port}",
            **defines,
        },
    )


def _vs(tmp: Path, next_port: int, cert: str, **defines: str | int) -> kh.Kamailio:
    return kh.Kamailio(
        tmp,
        "vs",
        kh.free_port(),
        {
            "KEMI_SCRIPT": str(kh.EXAMPLES / "sti_vs.py"),
            "STIR_CERT": cert,
            "NEXT_HOP": f"sip:127.0.0.1:{next_port}",
            **defines,
        },
    )


def _native(tmp: Path, name: str, role: str, next_port: int, **defines: str | int) -> kh.Kamailio:
    return kh.Kamailio(
        tmp,
        name,
        kh.free_port(),
        {"ROLE": role, "NEXT_HOP": f"sip:127.0.0.1:{next_port}", **defines},
        cfg=kh.NATIVE / "native.cfg",
    )


def _uas(
    tmp: Path, port: int, verstat: str, calls: int, *, identity: bool = True, name: str = "uas"
) -> kh.Sipp:
    subst = {"VERSTAT": verstat, "HAS_IDENTITY": "true" if identity else "false"}
    return kh.Sipp(tmp, name, "uas.xml", port=port, subst=subst, calls=calls)


def _uac(
    tmp: Path, target: int, calls: int, *, rate: float = 20, extra: str = "X-Test: plain"
) -> kh.Sipp:
    return kh.Sipp(
        tmp,
        "uac",
        "uac.xml",
        port=kh.free_port(),
        target=f"127.0.0.1:{target}",
        calls=calls,
        rate=rate,
        limit=max(10, int(rate * 2)),
        subst={"EXTRA": extra},
    )


def _reject(tmp: Path, name: str, target: int, extra: str, code: int, reason: str) -> kh.SippResult:
    """One INVITE that must be answered with ``code`` and a Reason header matching ``reason``."""
    sipp = kh.Sipp(
        tmp,
        name,
        "uac_reject.xml",
        port=kh.free_port(),
        target=f"127.0.0.1:{target}",
        subst={"EXTRA": extra, "CODE": str(code), "REASON": reason},
    )
    return sipp.run(60)


def _identity(key: Path, *, iat: int | None = None, x5u: str = X5U) -> str:
    signer = Signer(private_key_from_file(key))
    return signer.identity("+12155550121", "+12155550131", "A", iat=iat, x5u=x5u)


def _tampered(value: str) -> str:
    """The same Identity with the dest number changed in the claims: signature no longer fits."""
    token, _, params = value.partition(";")
    header, claims, sig = token.split(".")
    changed = b64url_decode(claims).replace(b"12155550131", b"12155550199")
    return f"{header}.{b64url_encode(changed)}.{sig};{params}"


def _assert_all(result: kh.SippResult, calls: int) -> None:
    assert result.returncode == 0, result.describe()
    assert result.successful == calls and result.failed == 0, result.describe()


def _chain(
    tmp: Path,
    procs: list[kh.Kamailio | kh.Sipp],
    signer: kh.Kamailio,
    verifier: kh.Kamailio,
    uas_port: int,
    calls: int,
    verstat: str = PASSED,
    rate: float = 20,
) -> None:
    """Start verifier, signer and UAS; run ``calls`` calls through them; all must complete."""
    procs.append(verifier.start())
    procs.append(signer.start())
    uas = _uas(tmp, uas_port, verstat, calls)
    procs.append(uas.start())
    uac = _uac(tmp, signer.port, calls, rate=rate)
    procs.append(uac)
    _assert_all(uac.run(120 + calls / rate), calls)
    _assert_all(uas.wait(30), calls)
    assert signer.alive() and verifier.alive()


def test_chain_sign_verify_calls_complete(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """sipp UAC -> STI-AS (ours) -> STI-VS (ours, certificate file) -> sipp UAS."""
    uas_port = kh.free_port()
    vs = _vs(tmp_path, uas_port, str(pki.cert))
    _chain(tmp_path, procs, _as(tmp_path, pki, vs.port), vs, uas_port, 20)


def test_ours_signs_native_verifies(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """Our STI-AS -> the native module's secsipid_check_identity (certificate file)."""
    uas_port = kh.free_port()
    native_vs = _native(tmp_path, "native-vs", "vs", uas_port, STIR_CERT=str(pki.cert))
    # The UAC's PAI carries an "upstream" verstat that the native module leaves alone.
    _chain(tmp_path, procs, _as(tmp_path, pki, native_vs.port), native_vs, uas_port, 10)
    # Control: signed with another key, the native module rejects (so it did verify).
    other = _as(tmp_path, pki, native_vs.port, STIR_KEY=str(pki.other_key))
    other.name = "as-other"
    procs.append(other.start())
    rejected = _reject(
        tmp_path, "uac-other", other.port, "X-Test: other", 438, "X-Secsipid-Ret: -[0-9]+"
    )
    assert rejected.returncode == 0, rejected.describe()


def test_native_signs_ours_verifies(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """The native module's secsipid_add_identity -> our STI-VS (certificate file)."""
    uas_port = kh.free_port()
    vs = _vs(tmp_path, uas_port, str(pki.cert))
    native_as = _native(tmp_path, "native-as", "as", vs.port, STIR_KEY=str(pki.key), STIR_X5U=X5U)
    _chain(tmp_path, procs, native_as, vs, uas_port, 10)


def test_redirect_signer(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """INVITE -> 302 with Identity from the redirect example; the SBC (sipp) then sends the
    call with that Identity to our STI-VS, which verifies it, and the call completes."""
    uas_port = kh.free_port()
    vs = _vs(tmp_path, uas_port, str(pki.cert))
    procs.append(vs.start())
    redirect = kh.Kamailio(
        tmp_path,
        "redirect",
        kh.free_port(),
        {
            "KEMI_SCRIPT": str(kh.EXAMPLES / "redirect.py"),
            "STIR_KEY": str(pki.key),
            "STIR_X5U": X5U,
            "NEXT_HOP": f"sip:127.0.0.1:{vs.port}",
        },
    )
    procs.append(redirect.start())
    uas = _uas(tmp_path, uas_port, PASSED, 5)
    procs.append(uas.start())
    uac = kh.Sipp(
        tmp_path,
        "uac",
        "uac_redirect.xml",
        port=kh.free_port(),
        target=f"127.0.0.1:{redirect.port}",
        calls=5,
        rate=10,
        subst={"VS_PORT": str(vs.port)},
    )
    procs.append(uac)
    _assert_all(uac.run(60), 5)
    _assert_all(uas.wait(30), 5)


REJECT_CASES = [
    # (name, extra header or None for a crafted one, code, Reason regexp)
    ("none", "X-Test: no identity", 428, 'Reason: SIP;cause=428;text="Use Identity Header"'),
    ("tampered", "tampered", 438, 'Reason: SIP;cause=438;text="Invalid Identity Header"'),
    ("other-key", "other-key", 438, 'Reason: SIP;cause=438;text="Invalid Identity Header"'),
    ("stale", "stale", 403, 'Reason: SIP;cause=403;text="Stale Date"'),
    ("garbage", "garbage", 438, 'Reason: SIP;cause=438;text="Invalid Identity Header"'),
    ("no-info", "no-info", 436, 'Reason: SIP;cause=436;text="Bad Identity Info"'),
]


def _crafted(pki: Pki, kind: str) -> str:
    if kind == "tampered":
        return "Identity: " + _tampered(_identity(pki.key))
    if kind == "other-key":
        return "Identity: " + _identity(pki.other_key)
    if kind == "stale":
        return "Identity: " + _identity(pki.key, iat=int(time.time()) - 3600)
    if kind == "garbage":
        return f"Identity: %%%not-a-passport%%%;info=<{X5U}>;alg=ES256;ppt=shaken"
    if kind == "no-info":
        return "Identity: " + _identity(pki.key).split(";", 1)[0] + ";alg=ES256;ppt=shaken"
    return kind


def test_vs_rejects_with_reason(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """STI-VS in reject mode: 428, 438, 403 Stale Date, 436, each with its Reason header;
    the workers survive bad input and the next valid call still completes."""
    uas_port = kh.free_port()
    vs = _vs(tmp_path, uas_port, str(pki.cert))
    procs.append(vs.start())
    for name, extra, code, reason in REJECT_CASES:
        result = _reject(tmp_path, f"uac-{name}", vs.port, _crafted(pki, extra), code, reason)
        assert result.returncode == 0, f"{name}: {result.describe()}"
    assert vs.alive()
    uas = _uas(tmp_path, uas_port, PASSED, 1)
    procs.append(uas.start())
    uac = _uac(tmp_path, vs.port, 1, extra="Identity: " + _identity(pki.key))
    procs.append(uac)
    _assert_all(uac.run(60), 1)
    _assert_all(uas.wait(30), 1)
    assert "Traceback" not in vs.log()


def test_vs_reason_stir_form(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """STIR_REASON_STIR=1: the RFC 9410 form ``Reason: STIR;cause=...``."""
    vs = _vs(tmp_path, kh.free_port(), str(pki.cert), STIR_REASON_STIR=1)
    procs.append(vs.start())
    result = _reject(
        tmp_path,
        "uac-stir",
        vs.port,
        _crafted(pki, "tampered"),
        438,
        'Reason: STIR;cause=438;text="Invalid Identity Header"',
    )
    assert result.returncode == 0, result.describe()


@pytest.mark.parametrize(
    ("kind", "verstat"),
    [
        ("tampered", "TN-Validation-Failed"),
        ("stale", "No-TN-Validation"),
        ("X-Test: no identity", "No-TN-Validation"),
    ],
)
def test_vs_mark_mode_verstat(
    kamailio_ready: str,
    pki: Pki,
    tmp_path: Path,
    procs: list[kh.Kamailio | kh.Sipp],
    kind: str,
    verstat: str,
) -> None:
    """STI-VS in mark mode relays failed calls with the ATIS-1000074 verstat, replacing the
    upstream one (the UAS checks there is exactly one verstat, the expected one)."""
    uas_port = kh.free_port()
    vs = _vs(tmp_path, uas_port, str(pki.cert), STIR_VS_MODE="mark")
    procs.append(vs.start())
    uas = _uas(tmp_path, uas_port, verstat, 1, identity=kind.startswith("X-") is False)
    procs.append(uas.start())
    uac = _uac(tmp_path, vs.port, 1, extra=_crafted(pki, kind))
    procs.append(uac)
    _assert_all(uac.run(60), 1)
    _assert_all(uas.wait(30), 1)


@pytest.mark.parametrize(
    ("defines", "message"),
    [
        ({"STIR_LIBOPT": "CertVerify"}, "libopt 'CertVerify': expected name=value"),
        ({"STIR_LIBOPT": "NoSuchOption=1"}, "unknown option 'NoSuchOption'"),
        ({"STIR_KEY": "/nonexistent/key.pem"}, "signing key: /nonexistent/key.pem: no such file"),
        ({"STIR_EXPIRE": "-5"}, "expire must be at least 0"),
    ],
)
def test_bad_config_refused_at_start(
    kamailio_ready: str,
    pki: Pki,
    tmp_path: Path,
    procs: list[kh.Kamailio | kh.Sipp],
    defines: dict[str, str],
    message: str,
) -> None:
    """Bad settings stop Kamailio at start with a clear message (the native module's libopt
    without "=" panics in Go at the first call instead)."""
    kam = _as(tmp_path, pki, kh.free_port(), **defines)
    procs.append(kam.start(wait=False))
    assert kam.proc is not None
    rc = kam.proc.wait(timeout=30)
    assert rc != 0
    assert message in kam.log(), kam.log()[-3000:]


def test_load_fixed_rate_zero_failures(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """3,000 calls at 300 calls/s through STI-AS and STI-VS: every call completes."""
    uas_port = kh.free_port()
    vs = _vs(tmp_path, uas_port, str(pki.cert))
    vs.shm_mb = 512
    as_ = _as(tmp_path, pki, vs.port)
    as_.shm_mb = 512
    _chain(tmp_path, procs, as_, vs, uas_port, 3000, rate=300)


# -- the certificate from the info URL (issue 3's CertificateSource) -------------------------


def test_native_signs_ours_verifies_via_info_url(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """Native signer with x5u on a loopback HTTP server; our STI-VS downloads the certificate
    once per worker (cached), not once per call."""
    with kh.CertServer({"/sti.pem": pki.cert_pem}) as server:
        uas_port = kh.free_port()
        vs = _vs(tmp_path, uas_port, "", STIR_LAB=1)
        native_as = _native(
            tmp_path,
            "native-as",
            "as",
            vs.port,
            STIR_KEY=str(pki.key),
            STIR_X5U=server.url("/sti.pem"),
        )
        _chain(tmp_path, procs, native_as, vs, uas_port, 20)
        assert 1 <= len(server.hits) <= vs.children, server.hits


def test_ours_signs_native_verifies_via_info_url(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """Our signer's x5u, downloaded by the native module's secsipid_check_identity("")."""
    with kh.CertServer({"/sti.pem": pki.cert_pem}) as server:
        uas_port = kh.free_port()
        native_vs = _native(tmp_path, "native-vs", "vs", uas_port, STIR_CERT="")
        as_ = _as(tmp_path, pki, native_vs.port, STIR_X5U=server.url("/sti.pem"))
        _chain(tmp_path, procs, as_, native_vs, uas_port, 10)
        assert server.hits and set(server.hits) == {"/sti.pem"}


def test_unreachable_certificate_436_within_timeout(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """info URL that never answers (or refuses): 436 Bad Identity Info within ``timeout``."""
    with kh.CertServer({}) as server:
        vs = _vs(tmp_path, kh.free_port(), "", STIR_LAB=1, STIR_TIMEOUT=1)
        procs.append(vs.start())
        closed = kh.free_port()  # nothing listens there
        for name, url in (
            ("slow", server.url("/slow/sti.pem")),
            ("refused", f"http://127.0.0.1:{closed}/sti.pem"),
        ):
            value = _identity(pki.key, x5u=url)
            started = time.monotonic()
            result = _reject(
                tmp_path,
                f"uac-{name}",
                vs.port,
                "Identity: " + value,
                436,
                'Reason: SIP;cause=436;text="Bad Identity Info"',
            )
            elapsed = time.monotonic() - started
            assert result.returncode == 0, f"{name}: {result.describe()}"
            assert elapsed < 3.0, f"{name}: 436 after {elapsed:.1f}s with timeout 1s"
        assert vs.alive()


# -- retransmissions (issue 7 item 3) ---------------------------------------------------------


def test_vs_verifies_each_invite_once_despite_retransmissions(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """The STI-VS example creates the transaction before verifying: an INVITE whose info URL
    never answers is verified once, not once per retransmission in another worker (it was
    verified 2-3 times, each holding a worker for `timeout`).  Two ways to retransmit: sipp's
    own timers (T1 = 500 ms, stopped by the 100 Trying the transaction sends), and three
    copies with one branch sent back to back."""
    with kh.CertServer({}) as server:
        vs = _vs(tmp_path, kh.free_port(), "", STIR_LAB=1, STIR_TIMEOUT=2)
        vs.children = 4
        procs.append(vs.start())
        reason = 'Reason: SIP;cause=436;text="Bad Identity Info"'
        timers = "Identity: " + _identity(pki.key, x5u=server.url("/slow/timers.pem"))
        result = _reject(tmp_path, "uac-timers", vs.port, timers, 436, reason)
        assert result.returncode == 0, result.describe()
        copies = "Identity: " + _identity(pki.key, x5u=server.url("/slow/copies.pem"))
        sipp = kh.Sipp(
            tmp_path,
            "uac-copies",
            "uac_retrans.xml",
            port=kh.free_port(),
            target=f"127.0.0.1:{vs.port}",
            subst={"EXTRA": copies, "CODE": "436"},
        )
        procs.append(sipp)
        result = sipp.run(60)
        assert result.returncode == 0, result.describe()
        time.sleep(3)  # a second verification of either INVITE would have ended by now
        log = vs.log()
        assert log.count("STIR: rejecting ") == 2, log[-4000:]
        assert server.hits.count("/slow/timers.pem") == 1, server.hits
        assert server.hits.count("/slow/copies.pem") == 1, server.hits
        assert vs.alive()


# -- one cache directory for the native module and ours (issue 8 item 15) ----------------------


def _one_call(tmp: Path, name: str, target: int, extra: str) -> kh.SippResult:
    return kh.Sipp(
        tmp,
        name,
        "uac.xml",
        port=kh.free_port(),
        target=f"127.0.0.1:{target}",
        subst={"EXTRA": extra},
    ).run(60)


def test_native_and_ours_share_one_cache_dir(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """STIR_CACHE_NAMING=libsecsipid: with the certificate server gone, what the native
    module's cache_dir holds verifies calls in our STI-VS and what ours stored there serves
    the native module; a control with an empty directory shows the server really is gone."""
    shared = tmp_path / "shared-cache"
    empty = tmp_path / "empty-cache"
    shared.mkdir()
    empty.mkdir()
    native_uas, ours_uas = kh.free_port(), kh.free_port()
    procs.append(_uas(tmp_path, native_uas, "TN-Validation-Passed", 2, name="uas-native").start())
    procs.append(_uas(tmp_path, ours_uas, PASSED, 2, name="uas-ours").start())
    native_vs = _native(
        tmp_path, "native-vs", "vs", native_uas, STIR_CERT="", STIR_CACHE_DIR=str(shared)
    )
    ours_vs = _vs(
        tmp_path, ours_uas, "", STIR_LAB=1, STIR_CACHE_DIR=str(shared),
        STIR_CACHE_NAMING="libsecsipid",
    )  # fmt: skip
    control = _vs(
        tmp_path, kh.free_port(), "", STIR_LAB=1, STIR_TIMEOUT=1, STIR_CACHE_DIR=str(empty),
        STIR_CACHE_NAMING="libsecsipid",
    )  # fmt: skip
    control.name = "vs-control"
    for kam in (native_vs, ours_vs, control):
        procs.append(kam.start())
    with kh.CertServer({"/native.pem": pki.cert_pem, "/ours.pem": pki.cert_pem}) as server:
        native_url, ours_url = server.url("/native.pem"), server.url("/ours.pem")
        native_id = "Identity: " + _identity(pki.key, x5u=native_url)
        ours_id = "Identity: " + _identity(pki.key, x5u=ours_url)
        _assert_all(_one_call(tmp_path, "native-fetches", native_vs.port, native_id), 1)
        _assert_all(_one_call(tmp_path, "ours-fetches", ours_vs.port, ours_id), 1)
        assert sorted(server.hits) == ["/native.pem", "/ours.pem"]
    names = sorted(p.name for p in shared.iterdir())
    assert names == sorted(u.replace("://", "_").replace("/", "_") for u in (native_url, ours_url))
    # The server is gone: each side verifies with the file the other one wrote.
    _assert_all(_one_call(tmp_path, "ours-reads-native", ours_vs.port, native_id), 1)
    _assert_all(_one_call(tmp_path, "native-reads-ours", native_vs.port, ours_id), 1)
    rejected = _reject(
        tmp_path, "control", control.port, native_id, 436,
        'Reason: SIP;cause=436;text="Bad Identity Info"',
    )  # fmt: skip
    assert rejected.returncode == 0, rejected.describe()
    assert "Traceback" not in ours_vs.log()


def test_starts_with_another_python3_first_on_path(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """An active virtualenv (or pyenv) first on PATH: Kamailio's embedded Python loaded that
    interpreter's standard library and stopped at start with "undefined symbol:
    _PyModule_Add" when it was another build of 3.11; PYTHONHOME=/usr (the harness, and
    docs/kamailio.md) keeps it on the system's own (issue 8 item 14)."""
    import os
    import sys

    venv_bin = str(Path(sys.executable).parent)
    kam = _as(tmp_path, pki, kh.free_port())
    kam.env = {"PATH": f"{venv_bin}:{os.environ.get('PATH', '/usr/bin')}"}
    procs.append(kam.start())
    assert kam.alive()
    assert "undefined symbol" not in kam.log()


# -- a cluster: the certificate cache shared through Redis (issue 11) --------------------------


def test_two_verifiers_share_one_fetch_through_redis(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """Two STI-VS Kamailio instances (2 workers each) with mod_init(redis=...) on one real
    redis-server: calls through both download the certificate once in all, where each
    worker of each instance would download it once without Redis."""
    from rediskit import RedisServer

    redis = RedisServer(tmp_path / "redis")
    try:
        with kh.CertServer({"/sti.pem": pki.cert_pem}) as server:
            for n in range(2):
                uas_port = kh.free_port()
                vs = _vs(tmp_path / f"vs{n}", uas_port, "", STIR_LAB=1, STIR_REDIS=redis.url)
                native_as = _native(
                    tmp_path / f"as{n}", "native-as", "as", vs.port,
                    STIR_KEY=str(pki.key), STIR_X5U=server.url("/sti.pem"),
                )  # fmt: skip
                _chain(tmp_path / f"run{n}", procs, native_as, vs, uas_port, 20)
            assert server.hits == ["/sti.pem"], server.hits
    finally:
        redis.stop()


def test_verifier_with_redis_down_still_verifies(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """mod_init(redis=...) naming a Redis that is not running: Kamailio starts, and every
    call verifies (each worker downloads for itself)."""
    with kh.CertServer({"/sti.pem": pki.cert_pem}) as server:
        uas_port = kh.free_port()
        dead = f"redis://127.0.0.1:{kh.free_port()}/0"
        vs = _vs(tmp_path, uas_port, "", STIR_LAB=1, STIR_REDIS=dead)
        native_as = _native(
            tmp_path, "native-as", "as", vs.port,
            STIR_KEY=str(pki.key), STIR_X5U=server.url("/sti.pem"),
        )  # fmt: skip
        _chain(tmp_path, procs, native_as, vs, uas_port, 10)
        assert 1 <= len(server.hits) <= vs.children, server.hits


def test_one_budget_for_an_invite_with_several_identity_headers(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """An INVITE with two Identity headers whose info never answers and a valid one behind
    them: inside a Kamailio worker the certificates are fetched at once (on a private event
    loop), the valid value passes, and the call is not held for one timeout per header
    (issue 7 item 1)."""
    uas_port = kh.free_port()
    procs.append(_uas(tmp_path, uas_port, PASSED, 1).start())
    with kh.CertServer({"/cert.pem": pki.cert_pem}) as server:
        vs = _vs(tmp_path, uas_port, "", STIR_LAB=1, STIR_TIMEOUT=3)
        procs.append(vs.start())
        values = [
            _identity(pki.key, x5u=server.url("/slow/a.pem")),
            _identity(pki.key, x5u=server.url("/slow/b.pem")),
            _identity(pki.key, x5u=server.url("/cert.pem")),
        ]
        extra = "\n".join(f"Identity: {v}" for v in values)
        start = time.monotonic()
        result = _one_call(tmp_path, "uac-three", vs.port, extra)
        elapsed = time.monotonic() - start
        _assert_all(result, 1)
        assert elapsed < 3.0, f"{elapsed:.1f} s: the hanging servers held the call"
        assert sorted(server.hits) == ["/cert.pem", "/slow/a.pem", "/slow/b.pem"]
        assert "Traceback" not in vs.log()
