"""secsipid.kamailio in a real Kamailio 5.6 with real sipp traffic, on loopback.

Each test starts the processes it needs, on ports of its own, runs the examples of
examples/kamailio/ unchanged (settings through -A defines) and stops everything by PID.
"""

from __future__ import annotations

from pathlib import Path

import kamharness as kh
import pytest

from conftest import Pki

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


def _uas(tmp: Path, port: int, verstat: str, calls: int) -> kh.Sipp:
    return kh.Sipp(tmp, "uas", "uas.xml", port=port, subst={"VERSTAT": verstat}, calls=calls)


def _uac(
    tmp: Path, target: int, calls: int, *, rate: float = 20, inject: list[str] | None = None
) -> kh.Sipp:
    return kh.Sipp(
        tmp,
        "uac",
        "uac.xml",
        port=kh.free_port(),
        target=f"127.0.0.1:{target}",
        calls=calls,
        rate=rate,
        inject=inject or ["X-Test: plain"],
    )


def test_chain_sign_verify_calls_complete(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """sipp UAC -> STI-AS (ours) -> STI-VS (ours, certificate file) -> sipp UAS."""
    uas_port = kh.free_port()
    vs = _vs(tmp_path, uas_port, str(pki.cert))
    procs.append(vs.start())
    as_ = _as(tmp_path, pki, vs.port)
    procs.append(as_.start())
    uas = _uas(tmp_path, uas_port, PASSED, 20)
    procs.append(uas.start())
    uac = _uac(tmp_path, as_.port, 20)
    procs.append(uac)
    result = uac.run()
    assert result.returncode == 0 and result.successful == 20, result.describe()
    served = uas.wait(30)
    assert served.returncode == 0 and served.successful == 20, served.describe()
    assert vs.alive() and as_.alive()
