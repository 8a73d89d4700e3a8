"""div chains and Rich Call Data over the network: certificates of every hop fetched at once
within the request's one time budget, and RCD content (icon, jCard) fetched only when asked,
through the same safe fetcher and size cap.  Real HTTPS servers on 127.0.0.1 (certserver.py),
started and stopped by PID."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fetchkit import CertServer, TLSFiles, make_tls_files
from helpers import assert_verdict
from secsipid import (
    CertificateSource,
    Fetcher,
    FetchPolicy,
    MemoryCache,
    Reason,
    RichCallData,
    Signer,
    TrustPolicy,
    Verifier,
    VerifyPolicy,
)
from secsipid._pki import LabPKI, make_lab_pki, pem

CALLER, FIRST, SECOND, THIRD = "12155551212", "12155551213", "12155551214", "12155551215"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[LabPKI], Path]:
    """Three carriers' certificates under one lab STI root."""
    first = make_lab_pki(spc="100A")
    rest = [make_lab_pki(spc=f"10{n}A", root=(first.root_key, first.root)) for n in (1, 2)]
    root = tmp_path_factory.mktemp("root") / "root.pem"
    root.write_bytes(pem(first.root))
    return [first, *rest], root


@pytest.fixture
def serve(tmp_path: Path, tls: TLSFiles) -> Iterator[Callable[..., CertServer]]:
    started: list[CertServer] = []

    def start(routes: dict[str, dict[str, Any]]) -> CertServer:
        server = CertServer(tmp_path / f"srv{len(started)}", routes, tls)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def _source(tls: TLSFiles, root: Path, **fetch: Any) -> CertificateSource:
    return CertificateSource(
        fetch=FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True, **fetch),
        trust=TrustPolicy(ca_file=str(root)),
        memory=MemoryCache(),
    )


def _chain_values(pkis: list[LabPKI], server: CertServer, now: int) -> list[str]:
    urls = [server.url(f"/c{n}.pem") for n in range(3)]
    return [
        Signer(pkis[0].leaf_key, urls[0]).identity(CALLER, FIRST, "A", iat=now),
        Signer(pkis[1].leaf_key, urls[1]).div_identity(CALLER, SECOND, FIRST, iat=now),
        Signer(pkis[2].leaf_key, urls[2]).div_identity(CALLER, THIRD, SECOND, iat=now),
    ]


def _chain_routes(pkis: list[LabPKI], **extra: dict[str, Any]) -> dict[str, dict[str, Any]]:
    routes = {
        f"/c{n}.pem": {
            "body": pki.chain_pem.decode(),
            "headers": {"Content-Type": "application/pem-certificate-chain"},
        }
        for n, pki in enumerate(pkis)
    }
    for path, route in extra.items():
        routes[path].update(route)
    return routes


# -- div chains ----------------------------------------------------------------------------------


def test_chain_certificates_fetched_once_each_and_validated(
    serve: Callable[..., CertServer], tls: TLSFiles, pkis: tuple[list[LabPKI], Path]
) -> None:
    server = serve(_chain_routes(pkis[0]))
    verifier = Verifier(_source(tls, pkis[1]))
    now = int(time.time())
    values = _chain_values(pkis[0], server, now)
    verdict = verifier.check(values[::-1], orig_tn=CALLER, dest_tn=THIRD, now=now)
    assert verdict.ok and verdict.diverted, (verdict.reason, verdict.message)
    assert verdict.spc == "100A"  # the SHAKEN PASSporT's signer
    assert [hop.index for hop in verdict.chain] == [2, 1, 0]
    assert server.hits() == {"/c0.pem": 1, "/c1.pem": 1, "/c2.pem": 1}
    # from the caches now: no more fetches
    assert verifier.check(values, dest_tn=THIRD, now=now).ok
    assert server.hits() == {"/c0.pem": 1, "/c1.pem": 1, "/c2.pem": 1}


def test_chain_with_acheck(
    serve: Callable[..., CertServer], tls: TLSFiles, pkis: tuple[list[LabPKI], Path]
) -> None:
    server = serve(_chain_routes(pkis[0]))
    verifier = Verifier(_source(tls, pkis[1]))
    now = int(time.time())
    values = _chain_values(pkis[0], server, now)
    verdict = asyncio.run(verifier.acheck(values, dest_tn=THIRD, now=now))
    assert verdict.ok and verdict.diverted, (verdict.reason, verdict.message)


@pytest.mark.parametrize("asynchronous", [False, True])
def test_one_slow_certificate_costs_one_budget_not_more(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    asynchronous: bool,
) -> None:
    """Two hops' servers each take 1.2 s, a third hangs: with a 2 s budget the two slow
    ones arrive (fetched at once: 1.2 s, not 2.4 s), the hanging hop is cert-fetch-timeout,
    and the whole check ends within the budget."""
    slow = {"delay": 1.2}
    routes = _chain_routes(
        pkis[0], **{"/c0.pem": slow, "/c1.pem": slow, "/c2.pem": {"mode": "hang"}}
    )
    server = serve(routes)
    verifier = Verifier(_source(tls, pkis[1], timeout=5), policy=VerifyPolicy(timeout=2))
    now = int(time.time())
    values = _chain_values(pkis[0], server, now)
    start = time.monotonic()
    if asynchronous:
        verdict = asyncio.run(verifier.acheck(values, dest_tn=THIRD, now=now))
    else:
        verdict = verifier.check(values, dest_tn=THIRD, now=now)
    elapsed = time.monotonic() - start
    assert elapsed < 3.0, elapsed
    assert_verdict(verdict, Reason.CERT_FETCH_TIMEOUT)
    assert verdict.index == 2
    assert [hop.reason for hop in verdict.chain] == [
        Reason.VALID,
        Reason.VALID,
        Reason.CERT_FETCH_TIMEOUT,
    ]


# -- Rich Call Data behind URLs --------------------------------------------------------------

ICON = b"\x89PNG\r\n\x1a\n icon bytes"
LOGO = b"\x89PNG\r\n\x1a\n logo bytes"


def _rcd_verifier(tls: TLSFiles, pki: LabPKI, **policy: Any) -> Verifier:
    fetcher = Fetcher(FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True, max_size=4096))
    return Verifier(
        pki.leaf.public_key(), policy=VerifyPolicy(**{"fetch_rcd": True, **policy}), fetcher=fetcher
    )


def _serve_rcd(
    serve: Callable[..., CertServer], icon: bytes = ICON
) -> tuple[CertServer, CertServer]:
    """The pictures on one server; the jCard (which names the logo's URL) on a second."""
    pictures = serve(
        {
            "/icon.png": {"body_hex": icon.hex(), "headers": {"Content-Type": "image/png"}},
            "/logo.png": {"body_hex": LOGO.hex(), "headers": {"Content-Type": "image/png"}},
        }
    )
    jcard = [
        "vcard",
        [["fn", {}, "text", "Example Bank"], ["logo", {}, "uri", pictures.url("/logo.png")]],
    ]
    cards = serve(
        {
            "/card.json": {
                "body": json.dumps(jcard),
                "headers": {"Content-Type": "application/vcard+json"},
            }
        }
    )
    return pictures, cards


def _sign_rcd(
    pki: LabPKI, pictures: CertServer, cards: CertServer, *, icon: bytes = ICON, logo: bytes = LOGO
) -> str:
    rcd = RichCallData(
        nam="Example Bank",
        icn=pictures.url("/icon.png"),
        jcl=cards.url("/card.json"),
        crn="Card blocked",
    )
    jcard = [
        "vcard",
        [["fn", {}, "text", "Example Bank"], ["logo", {}, "uri", pictures.url("/logo.png")]],
    ]
    contents = {
        pictures.url("/icon.png"): icon,
        cards.url("/card.json"): json.dumps(jcard).encode(),
        "/jcl/1/1/3": logo,
    }
    return Signer(pki.leaf_key, "https://cert.example.org/sti.pem").identity(
        CALLER, FIRST, "A", rcd=rcd, rcd_contents=contents
    )


def test_rcd_content_fetched_and_checked_when_asked(
    serve: Callable[..., CertServer], tls: TLSFiles, pkis: tuple[list[LabPKI], Path]
) -> None:
    pki = pkis[0][0]
    pictures, cards = _serve_rcd(serve)
    value = _sign_rcd(pki, pictures, cards)
    verdict = _rcd_verifier(tls, pki).check(value, dest_tn=FIRST)
    assert verdict.ok and verdict.rcd_failure is None, verdict.rcd_failure
    assert verdict.rcd_checked == ("/icn", "/jcl", "/jcl/1/1/3")
    rcd = verdict.rcd
    assert rcd is not None and rcd.crn == "Card blocked"
    call_info = rcd.call_info()
    assert call_info[0].startswith(f"<{pictures.url('/icon.png')}>;purpose=icon;integrity=")
    assert call_info[0].endswith(';call-reason="Card blocked"')
    assert call_info[1].startswith(f"<{cards.url('/card.json')}>;purpose=jcard;integrity=")
    assert pictures.hits() == {"/icon.png": 1, "/logo.png": 1}
    assert cards.hits() == {"/card.json": 1}
    # asynchronously too
    verdict = asyncio.run(_rcd_verifier(tls, pki).acheck(value, dest_tn=FIRST))
    assert verdict.ok and verdict.rcd_checked == ("/icn", "/jcl", "/jcl/1/1/3")


def test_rcd_content_not_fetched_unless_asked(
    serve: Callable[..., CertServer], tls: TLSFiles, pkis: tuple[list[LabPKI], Path]
) -> None:
    pki = pkis[0][0]
    pictures, cards = _serve_rcd(serve)
    value = _sign_rcd(pki, pictures, cards)
    verdict = _rcd_verifier(tls, pki, fetch_rcd=False).check(value, dest_tn=FIRST)
    assert verdict.ok and verdict.rcd is not None and verdict.rcd_checked == ()
    assert pictures.hits() == {} and cards.hits() == {}


def test_rcdi_mismatch_on_fetched_content(
    serve: Callable[..., CertServer], tls: TLSFiles, pkis: tuple[list[LabPKI], Path]
) -> None:
    """The logo the jCard points to is not the one signed for: the call stays validated, the
    RCD is withheld and the reason given."""
    pki = pkis[0][0]
    pictures, cards = _serve_rcd(serve)
    value = _sign_rcd(pki, pictures, cards, logo=b"another logo")
    verdict = _rcd_verifier(tls, pki).check(value, dest_tn=FIRST)
    assert verdict.ok and verdict.verstat == "TN-Validation-Passed"
    assert verdict.rcd is None
    assert verdict.rcd_failure is not None
    assert verdict.rcd_failure.reason is Reason.RCD_INTEGRITY_MISMATCH
    assert "/jcl/1/1/3" in verdict.rcd_failure.message
    assert verdict.rcd_checked == ("/icn", "/jcl")
    data = verdict.to_dict()
    assert data["rcd"] is None and data["rcd_failure"]["reason"] == "rcd-integrity-mismatch"
    assert data["call_info"] == []


def test_oversized_rcd_content(
    serve: Callable[..., CertServer], tls: TLSFiles, pkis: tuple[list[LabPKI], Path]
) -> None:
    """An icon over the fetcher's size cap (4 KiB here) is not read past the cap."""
    pki = pkis[0][0]
    big = b"\x89PNG" + b"x" * 10_000
    pictures, cards = _serve_rcd(serve, icon=big)
    value = _sign_rcd(pki, pictures, cards, icon=big)
    verdict = _rcd_verifier(tls, pki).check(value, dest_tn=FIRST)
    assert verdict.ok and verdict.rcd is None
    assert verdict.rcd_failure is not None
    assert verdict.rcd_failure.reason is Reason.RCD_CONTENT_TOO_LARGE


def test_unreachable_rcd_content_and_the_budget(
    serve: Callable[..., CertServer], tls: TLSFiles, pkis: tuple[list[LabPKI], Path]
) -> None:
    pki = pkis[0][0]
    pictures, cards = _serve_rcd(serve)
    value = _sign_rcd(pki, pictures, cards)
    cards.stop()  # the jCard server is gone
    verdict = _rcd_verifier(tls, pki).check(value, dest_tn=FIRST)
    assert verdict.ok and verdict.rcd is None
    assert verdict.rcd_failure is not None
    assert verdict.rcd_failure.reason is Reason.RCD_FETCH_FAILED
    # a hanging icon server: the check still ends within the request's budget
    hanging = serve({"/icon.png": {"mode": "hang"}})
    rcd = RichCallData(nam="x", icn=hanging.url("/icon.png"))
    value = Signer(pki.leaf_key, "https://cert.example.org/sti.pem").identity(
        CALLER, FIRST, "A", rcd=rcd, rcd_contents={hanging.url("/icon.png"): b"x"}
    )
    start = time.monotonic()
    verdict = _rcd_verifier(tls, pki, timeout=1).check(value, dest_tn=FIRST)
    assert time.monotonic() - start < 2.5
    assert verdict.ok and verdict.rcd_failure is not None
    assert verdict.rcd_failure.reason is Reason.RCD_FETCH_FAILED
