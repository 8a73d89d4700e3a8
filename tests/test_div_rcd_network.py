"""div chains and Rich Call Data over the network: certificates of every hop fetched at once
within the request's one time budget, and RCD content (icon, jCard) fetched only when asked,
through the same safe fetcher and size cap.  Real HTTPS servers on 127.0.0.1 (certserver.py),
started and stopped by PID."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from fetchkit import CertServer, TLSFiles, make_tls_files
from helpers import assert_verdict
from secsipid import (
    CertificateSource,
    Failure,
    Fetcher,
    FetchPolicy,
    MemoryCache,
    Reason,
    RichCallData,
    Signer,
    TrustPolicy,
    Verdict,
    Verifier,
    VerifyPolicy,
)
from secsipid._codec import JSONError, loads_strict
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
    # The JSON of `secsipid check --json` and /v1/verify says what was checked, too.
    doc = verdict.to_dict()
    assert doc["rcd_checked"] == ["/icn", "/jcl", "/jcl/1/1/3"]
    assert doc["call_info"] == verdict.rcd.call_info() if verdict.rcd else False
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
    verifier = _rcd_verifier(tls, pki, fetch_rcd=False)
    verdict = verifier.check(value, dest_tn=FIRST)
    assert verdict.ok and verdict.rcd is not None and verdict.rcd_checked == ()
    # nor asynchronously, nor with several Identity values (each takes another path)
    signer = Signer(pki.leaf_key, "https://cert.example.org/sti.pem")
    rcd_passport = signer.rcd_identity(CALLER, FIRST, RichCallData(nam="Example Bank"))
    for values in (value, [value, rcd_passport]):
        for verdict in _both(verifier, values):
            assert verdict.ok and verdict.rcd is not None, verdict.message
            assert verdict.rcd.icn == pictures.url("/icon.png")
            assert verdict.rcd_failure is None and verdict.rcd_checked == ()
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
    # the request's budget (1 s) answered, not the fetcher's own timeout (5 s): sync and async
    budget = f"{hanging.url('/icon.png')}: no complete answer within the request's time budget"
    assert verdict.ok and verdict.rcd_failure == _failure(Reason.RCD_FETCH_FAILED, budget)
    verdict = asyncio.run(_rcd_verifier(tls, pki, timeout=1).acheck(value, dest_tn=FIRST))
    assert verdict.ok and verdict.rcd_failure == _failure(Reason.RCD_FETCH_FAILED, budget)


# -- what a failed RCD content check reports ---------------------------------------------------
# Each case goes through check() and acheck(): the sync and the async RCD checks are two
# functions that must agree.  The call stays validated; the RCD is withheld with one Failure
# (index, reason, message, libsecsipid code) that names the pointer and says why.

# A jCard parameter name long enough that a pointer through it is over the 40 characters of a
# pointer that a message quotes (the pointer is the caller's text).
PARAM = "x-variant-for-a-dark-background"
DARK = b"\x89PNG\r\n\x1a\n dark logo bytes"


def _card(server: CertServer, *, logo: str | None = None) -> bytes:
    """A jCard naming the logo and, in a long-named parameter, its dark variant."""
    jcard = [
        "vcard",
        [
            ["fn", {PARAM: "plain text, not a URL"}, "text", "Example Bank"],
            ["logo", {PARAM: server.url("/dark.png")}, "uri", logo or server.url("/logo.png")],
        ],
    ]
    return json.dumps(jcard).encode()


def _serve_card(
    serve: Callable[..., CertServer],
    tmp_path: Path,
    make_card: Callable[[CertServer], bytes] = _card,
) -> tuple[CertServer, bytes]:
    """One server for the icon, the logos and the jCard (``make_card`` writes it from the
    server, whose URLs it names); the jCard's bytes."""
    card_file = tmp_path / "card.json"
    server = serve(
        {
            "/icon.png": {"body_hex": ICON.hex(), "headers": {"Content-Type": "image/png"}},
            "/logo.png": {"body_hex": LOGO.hex(), "headers": {"Content-Type": "image/png"}},
            "/dark.png": {"body_hex": DARK.hex(), "headers": {"Content-Type": "image/png"}},
            "/card.json": {
                "body_file": str(card_file),
                "headers": {"Content-Type": "application/vcard+json"},
            },
        }
    )
    card = make_card(server)
    card_file.write_bytes(card)
    return server, card


def _sign_card(pki: LabPKI, server: CertServer, card: bytes, deep: dict[str, bytes]) -> str:
    """A SHAKEN PASSporT with RCD (icn and jcl) whose rcdi covers the icon, the jCard as
    served and the pointers of ``deep`` (below /jcl, with the content they are signed for)."""
    rcd = RichCallData(
        nam="Example Bank", icn=server.url("/icon.png"), jcl=server.url("/card.json")
    )
    contents = {server.url("/icon.png"): ICON, server.url("/card.json"): card, **deep}
    return Signer(pki.leaf_key, "https://cert.example.org/sti.pem").identity(
        CALLER, FIRST, "A", rcd=rcd, rcd_contents=contents
    )


def _both(verifier: Verifier, values: str | list[str]) -> list[Verdict]:
    return [
        verifier.check(values, dest_tn=FIRST),
        asyncio.run(verifier.acheck(values, dest_tn=FIRST)),
    ]


def _failure(reason: Reason, message: str, index: int = 0) -> Failure:
    return Failure(index, reason, message, reason.lib_code)


def _assert_withheld(verdict: Verdict, failure: Failure, checked: tuple[str, ...] = ()) -> None:
    assert verdict.ok and verdict.verstat == "TN-Validation-Passed", verdict.message
    assert verdict.rcd is None and verdict.to_dict()["call_info"] == []
    assert verdict.rcd_failure == failure
    assert verdict.rcd_checked == checked


def test_jcard_behind_jcl_that_is_not_json(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    tmp_path: Path,
) -> None:
    """invalid-rcd, with the parser's reason; nothing else is fetched once the jCard that
    the /jcl/ pointers lead into is refused."""
    pki = pkis[0][0]
    server, card = _serve_card(serve, tmp_path, lambda s: b'["vcard", [["fn", {}, "text"')
    value = _sign_card(pki, server, card, {"/jcl/1/1/3": LOGO})
    with pytest.raises(JSONError) as parsed:
        loads_strict(card)
    for verdict in _both(_rcd_verifier(tls, pki), value):
        _assert_withheld(
            verdict,
            _failure(Reason.INVALID_RCD, f"the jCard at jcl is not JSON: {parsed.value}"),
        )
    assert server.hits() == {"/card.json": 2}


def test_rcdi_pointer_below_jcl_that_designates_nothing(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    tmp_path: Path,
) -> None:
    """invalid-rcd; the message quotes the pointer (its first 40 characters: it is the
    caller's text) and what is missing."""
    pki = pkis[0][0]
    server, card = _serve_card(serve, tmp_path)
    verifier = _rcd_verifier(tls, pki)
    missing = "x-no-such-parameter-in-this-jcard"
    for pointer, why in [
        ("/jcl/1/5/3", "no element '5' in an array of 2"),
        ("/jcl/1/0/3/x", "cannot descend into a str with 'x'"),
        (f"/jcl/1/0/1/{missing}", f"no member {missing!r}"),
    ]:
        value = _sign_card(pki, server, card, {pointer: LOGO})
        message = f"rcdi {pointer[:40]!r} designates nothing: {why}"
        for verdict in _both(verifier, value):
            _assert_withheld(verdict, _failure(Reason.INVALID_RCD, message))
    assert len(f"/jcl/1/0/1/{missing}") > 41
    assert set(server.hits()) == {"/card.json"}  # neither the icon nor a logo


def test_rcdi_pointer_below_jcl_to_something_else_than_a_url(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    tmp_path: Path,
) -> None:
    """invalid-rcd: a /jcl/ digest is of content behind a URL; a pointer to text or to an
    object of the jCard leads to no URL (nothing is fetched for it)."""
    pki = pkis[0][0]
    server, card = _serve_card(serve, tmp_path)
    verifier = _rcd_verifier(tls, pki)
    for pointer in ["/jcl/1/0/3", "/jcl/1/0/1", f"/jcl/1/0/1/{PARAM}", "/jcl/1/1/0"]:
        value = _sign_card(pki, server, card, {pointer: LOGO})
        message = f"rcdi {pointer[:40]!r} does not designate a URL"
        for verdict in _both(verifier, value):
            _assert_withheld(verdict, _failure(Reason.INVALID_RCD, message))
    assert len(f"/jcl/1/0/1/{PARAM}") > 41
    assert set(server.hits()) == {"/card.json"}


def test_rcdi_mismatch_below_jcl_names_the_pointer(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    tmp_path: Path,
) -> None:
    """A URL in a jCard parameter is followed like one in a value; the mismatch message
    quotes the first 40 characters of the pointer."""
    pki = pkis[0][0]
    server, card = _serve_card(serve, tmp_path)
    verifier = _rcd_verifier(tls, pki)
    pointer = f"/jcl/1/1/1/{PARAM}"
    for verdict in _both(verifier, _sign_card(pki, server, card, {pointer: DARK})):
        assert verdict.ok and verdict.rcd_failure is None, verdict.rcd_failure
        assert verdict.rcd_checked == ("/icn", "/jcl", pointer)
    message = f"rcdi {pointer[:40]!r}: the digest does not match the fetched content"
    for verdict in _both(verifier, _sign_card(pki, server, card, {pointer: LOGO})):
        _assert_withheld(
            verdict, _failure(Reason.RCD_INTEGRITY_MISMATCH, message), ("/icn", "/jcl")
        )
    assert server.hits() == {"/icon.png": 4, "/card.json": 4, "/dark.png": 4}


def test_http_url_in_the_jcard_is_refused_by_the_fetch_policy(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    tmp_path: Path,
) -> None:
    """An http: URL below /jcl is a URL (not invalid-rcd): the fetch policy refuses it
    (https only), and the server never sees the request."""
    pki = pkis[0][0]
    http_logo = ""

    def card(server: CertServer) -> bytes:
        nonlocal http_logo
        http_logo = server.url("/logo.png").replace("https:", "http:", 1)
        return _card(server, logo=http_logo)

    server, body = _serve_card(serve, tmp_path, card)
    value = _sign_card(pki, server, body, {"/jcl/1/1/3": LOGO})
    message = f"{http_logo}: scheme 'http' is not allowed (only https)"
    for verdict in _both(_rcd_verifier(tls, pki), value):
        _assert_withheld(verdict, _failure(Reason.RCD_FETCH_FAILED, message), ("/icn", "/jcl"))
    assert server.hits() == {"/icon.png": 2, "/card.json": 2}


def test_rcd_failure_names_the_value_that_carried_the_rcd(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    tmp_path: Path,
) -> None:
    """The Failure's index is the Identity value whose RCD failed: the verdict's own (here
    the second value; the first has a bad signature), or -1 for an rcd PASSporT beside a
    SHAKEN one without RCD (its index is not kept)."""
    pki, other = pkis[0][0], pkis[0][1]
    server, _ = _serve_card(serve, tmp_path)
    verifier = _rcd_verifier(tls, pki)
    wrong_icon = {server.url("/icon.png"): b"another icon"}
    message = "rcdi '/icn': the digest does not match the fetched content"
    forged = Signer(other.leaf_key, "https://cert.example.org/sti.pem").identity(CALLER, FIRST, "A")
    rcd = RichCallData(nam="Example Bank", icn=server.url("/icon.png"))
    shaken_with_rcd = Signer(pki.leaf_key, "https://cert.example.org/sti.pem").identity(
        CALLER, FIRST, "A", rcd=rcd, rcd_contents=wrong_icon
    )
    for verdict in _both(verifier, [forged, shaken_with_rcd]):
        assert verdict.index == 1
        _assert_withheld(verdict, _failure(Reason.RCD_INTEGRITY_MISMATCH, message, 1))
    signer = Signer(pki.leaf_key, "https://cert.example.org/sti.pem")
    shaken = signer.identity(CALLER, FIRST, "A")
    rcd_passport = signer.rcd_identity(CALLER, FIRST, rcd, rcd_contents=wrong_icon)
    for verdict in _both(verifier, [shaken, rcd_passport]):
        assert verdict.index == 0 and verdict.passport is not None
        assert verdict.passport.ppt == "shaken"
        _assert_withheld(verdict, _failure(Reason.RCD_INTEGRITY_MISMATCH, message, -1))
        assert verdict.to_dict()["rcd_failure"]["index"] == -1


def test_rcd_content_fetched_only_when_rcdi_covers_it(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pkis: tuple[list[LabPKI], Path],
    tmp_path: Path,
) -> None:
    """fetch_rcd fetches what an rcdi digest covers: nothing without rcdi (the RCD is given as
    signed), only the icon when rcdi covers the icon and not the jCard."""
    pki = pkis[0][0]
    server, _ = _serve_card(serve, tmp_path)
    verifier = _rcd_verifier(tls, pki)
    signer = Signer(pki.leaf_key, "https://cert.example.org/sti.pem")
    rcd = RichCallData(
        nam="Example Bank", icn=server.url("/icon.png"), jcl=server.url("/card.json")
    )
    for verdict in _both(verifier, signer.identity(CALLER, FIRST, "A", rcd=rcd)):
        assert verdict.ok and verdict.rcd == rcd
        assert verdict.rcd_failure is None and verdict.rcd_checked == ()
    assert server.hits() == {}
    value = signer.identity(
        CALLER, FIRST, "A", rcd=rcd, rcd_contents={server.url("/icon.png"): ICON}
    )
    for verdict in _both(verifier, value):
        assert verdict.ok and verdict.rcd is not None and verdict.rcd.jcl == rcd.jcl
        assert verdict.rcd_failure is None and verdict.rcd_checked == ("/icn",)
    assert server.hits() == {"/icon.png": 2}


class _BrokenFetcher:
    """A fetcher with a bug: it raises what no fetcher should."""

    def get(self, url: str, **_: Any) -> Any:
        raise RuntimeError(f"broken fetcher: {url}")

    async def aget(self, url: str, **_: Any) -> Any:
        raise RuntimeError(f"broken fetcher: {url}")


def test_unexpected_error_in_the_rcd_check_is_logged_and_reported(
    pkis: tuple[list[LabPKI], Path], caplog: pytest.LogCaptureFixture
) -> None:
    """An exception that is not a VerificationError (a bug, here in the fetcher) never
    escapes: the RCD is withheld with internal-error and the exception's type and text, and
    the traceback is logged for the operator."""
    pki = pkis[0][0]
    icon = "https://rcd.example/icon.png"
    value = Signer(pki.leaf_key, "https://cert.example.org/sti.pem").identity(
        CALLER, FIRST, "A", rcd=RichCallData(nam="x", icn=icon), rcd_contents={icon: ICON}
    )
    verifier = Verifier(
        pki.leaf.public_key(),
        policy=VerifyPolicy(fetch_rcd=True),
        fetcher=cast(Fetcher, _BrokenFetcher()),
    )
    caplog.set_level(logging.ERROR, logger="secsipid")
    message = f"RuntimeError: broken fetcher: {icon}"
    for verdict in _both(verifier, value):
        _assert_withheld(verdict, _failure(Reason.INTERNAL_ERROR, message))
    records = [r for r in caplog.records if r.name == "secsipid"]
    assert [(r.levelno, r.getMessage()) for r in records] == 2 * [
        (logging.ERROR, "secsipid: unexpected error checking RCD content")
    ]
    for record in records:
        assert record.exc_info is not None
        assert isinstance(record.exc_info[1], RuntimeError)
        assert str(record.exc_info[1]) == f"broken fetcher: {icon}"
