"""Call forwarding in real Kamailio with real sipp traffic, on loopback: our STI-AS signs, the
forwarding proxy (examples/kamailio/forward.py) retargets the call and adds a div Identity
header beside the original, and our STI-VS checks the chain against its Request-URI."""

from __future__ import annotations

from pathlib import Path

import kamharness as kh
import pytest
from test_kamailio_e2e import PASSED, X5U, _as, _assert_all, _uac, _uas, _vs

from conftest import Pki

pytestmark = pytest.mark.kamailio

FORWARD_TO = "+12155550141"


def _forward(tmp: Path, pki: Pki, next_port: int, **defines: str | int) -> kh.Kamailio:
    return kh.Kamailio(
        tmp,
        "forward",
        kh.free_port(),
        {
            "KEMI_SCRIPT": str(kh.EXAMPLES / "forward.py"),
            "STIR_KEY": str(pki.key),
            "STIR_X5U": X5U,
            "STIR_FORWARD_TO": FORWARD_TO,
            "NEXT_HOP": f"sip:127.0.0.1:{next_port}",
            **defines,
        },
    )


def _run(
    tmp: Path,
    procs: list[kh.Kamailio | kh.Sipp],
    pki: Pki,
    verstat: str,
    *,
    add_div: int,
    mode: str,
) -> None:
    uas_port = kh.free_port()
    vs = _vs(tmp, uas_port, str(pki.cert), STIR_MATCH_DEST=1, STIR_VS_MODE=mode)
    forward = _forward(tmp, pki, vs.port, STIR_FORWARD_DIV=add_div)
    signer = _as(tmp, pki, forward.port)
    for proc in (vs, forward, signer):
        procs.append(proc.start())
    uas = _uas(tmp, uas_port, verstat, 10)
    procs.append(uas.start())
    uac = _uac(tmp, signer.port, 10, rate=10)
    procs.append(uac)
    _assert_all(uac.run(60), 10)
    _assert_all(uas.wait(30), 10)
    assert signer.alive() and forward.alive() and vs.alive()


def test_forwarded_call_with_div_is_validated(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """UAC -> STI-AS -> forwarding proxy (adds div) -> STI-VS (dest = R-URI) -> UAS: every
    call completes with verstat TN-Validation-Passed."""
    _run(tmp_path, procs, pki, PASSED, add_div=1, mode="reject")


def test_forwarded_call_without_div_is_not(
    kamailio_ready: str, pki: Pki, tmp_path: Path, procs: list[kh.Kamailio | kh.Sipp]
) -> None:
    """The same forwarding without the div header: the SHAKEN dest is not the Request-URI,
    so the STI-VS (mark mode) relays with No-TN-Validation (dest-mismatch)."""
    _run(tmp_path, procs, pki, "No-TN-Validation", add_div=0, mode="mark")
