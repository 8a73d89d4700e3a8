"""Fetching the certificate from info: real HTTP(S) servers on loopback (own processes, stopped
by PID), a test CA trusted through configuration, never by disabling checks."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from fetchkit import CertServer, TLSFiles, make_tls_files
from helpers import run_cli
from secsipid import (
    CacheConfig,
    CertificateSource,
    FetchPolicy,
    MemoryCache,
    Reason,
    Signer,
    TrustPolicy,
    VerificationError,
    Verifier,
)
from secsipid._fetch import Fetcher, FetchResult
from secsipid._pki import LabPKI, make_lab_pki, pem
from secsipid._source import freshness

ORIG, DEST = "12155550121", "12155550131"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabPKI, Path]:
    lab = make_lab_pki(spc="1234")
    files = lab.write(tmp_path_factory.mktemp("pki"))
    return lab, files["root"]


Routes = dict[str, dict[str, Any]]


@pytest.fixture
def serve(tmp_path: Path, tls: TLSFiles) -> Iterator[Callable[..., CertServer]]:
    started: list[CertServer] = []

    def start(routes: Routes, *, https: bool = True, host: str = "127.0.0.1") -> CertServer:
        server = CertServer(
            tmp_path / f"srv{len(started)}", routes, tls if https else None, host=host
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def chain_route(pki: tuple[LabPKI, Path], **extra: Any) -> dict[str, Any]:
    route: dict[str, Any] = {
        "body": pki[0].chain_pem.decode(),
        "headers": {"Content-Type": "application/pem-certificate-chain"},
    }
    route.update(extra)
    return route


def lab_source(
    tls: TLSFiles, root: Path, *, fetch: dict[str, Any] | None = None, **kwargs: Any
) -> CertificateSource:
    """A source that trusts the test TLS CA and the lab STI root; loopback allowed."""
    options = {"tls_ca_file": str(tls.ca), "allow_private": True, **(fetch or {})}
    kwargs.setdefault("memory", MemoryCache())
    return CertificateSource(
        fetch=FetchPolicy(**options), trust=TrustPolicy(ca_file=str(root)), **kwargs
    )


def sign(pki: tuple[LabPKI, Path], url: str) -> str:
    return Signer(pki[0].leaf_key, url).identity(ORIG, DEST, "A")


def reason_of(source: CertificateSource, url: str) -> VerificationError:
    with pytest.raises(VerificationError) as exc:
        source.credential_for(url)
    return exc.value


# -- the happy path ----------------------------------------------------------------------------


def test_https_fetch_verifies_and_caches(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A certificate fetched over HTTPS (test CA via tls_ca_file) verifies; the chain is
    validated to the lab root; the SPC is exposed; the second verification uses the cache."""
    server = serve({"/sti.pem": chain_route(pki)})
    url = server.url("/sti.pem")
    verifier = Verifier(lab_source(tls, pki[1]))
    for _ in range(3):
        verdict = verifier.check(sign(pki, url), orig_tn=ORIG, dest_tn=DEST)
        assert verdict.ok, verdict.message
    assert verdict.spc == "1234" and verdict.to_dict()["spc"] == "1234"
    assert server.hits()["/sti.pem"] == 1


def test_hostname_is_resolved_checked_and_tls_verified(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A host name is resolved, every address checked, and TLS verified for the name."""
    server = serve({"/sti.pem": chain_route(pki)})
    url = server.url("/sti.pem", host="localhost")
    assert Verifier(lab_source(tls, pki[1])).check(sign(pki, url)).ok
    strict = lab_source(tls, pki[1], fetch={"allow_private": False})
    err = reason_of(strict, url)
    assert err.reason is Reason.CERT_URL_REFUSED and "special-purpose" in err.message


def test_tls_server_not_trusted_without_its_ca(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """Without the test CA configured, the HTTPS server's certificate is refused (436)."""
    server = serve({"/sti.pem": chain_route(pki)})
    source = CertificateSource(
        fetch=FetchPolicy(allow_private=True), trust=None, memory=MemoryCache()
    )
    err = reason_of(source, server.url("/sti.pem"))
    assert err.reason is Reason.CERT_FETCH_FAILED and err.sip_status == 436


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_tls_certificate_for_another_name_is_refused(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    tmp_path: Path,
    use_async: bool,
) -> None:
    """The TLS server's certificate must name the URL's host (RFC 6125 via OpenSSL's
    hostname check), on both paths: the server's certificate, issued by the trusted test CA,
    names localhost and 127.0.0.1, and the same server reached as cert.example (mapped to
    127.0.0.1 by the hosts file) is refused before any request, as an untrusted server is."""
    server = serve({"/sti.pem": chain_route(pki)})
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 cert.example localhost\n")
    policy = FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True, hosts_file=str(hosts))
    fetcher = Fetcher(policy)

    def get(url: str) -> FetchResult:
        return asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)

    assert get(server.url("/sti.pem", host="localhost")).body == pki[0].chain_pem
    with pytest.raises(VerificationError) as exc:
        get(server.url("/sti.pem", host="cert.example"))
    assert exc.value.reason is Reason.CERT_FETCH_FAILED and exc.value.sip_status == 436
    assert "cert.example" in exc.value.message
    assert server.hits()["/sti.pem"] == 1


# -- policy refusals ---------------------------------------------------------------------------


def test_http_refused_by_default_allowed_when_asked(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """http:// is refused unless allow_http (and the server never sees the request)."""
    server = serve({"/sti.pem": chain_route(pki)}, https=False)
    url = server.url("/sti.pem")
    err = reason_of(lab_source(tls, pki[1]), url)
    assert err.reason is Reason.CERT_URL_REFUSED and err.sip_status == 436
    assert server.hits().get("/sti.pem", 0) == 0
    assert lab_source(tls, pki[1], fetch={"allow_http": True}).credential_for(url)


def test_loopback_refused_unless_allowed(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """127.0.0.1, [::1] and IPv4-mapped loopback are special-purpose: refused by default."""
    server = serve({"/sti.pem": chain_route(pki)})
    source = lab_source(tls, pki[1], fetch={"allow_private": False})
    for host in ("127.0.0.1", "[::1]", "[::ffff:127.0.0.1]", "10.1.2.3", "169.254.1.1"):
        err = reason_of(source, f"https://{host}:{server.port}/sti.pem")
        assert err.reason is Reason.CERT_URL_REFUSED, host
    assert server.hits().get("/sti.pem", 0) == 0
    allowed = lab_source(
        tls, pki[1], fetch={"allow_private": False, "allow_networks": ("127.0.0.0/8",)}
    )
    assert allowed.credential_for(server.url("/sti.pem"))


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("https://user:pw@127.0.0.1/x.pem", "userinfo"),
        ("https://127.0.0.1/x.pem#frag", "fragment"),
        ("ftp://127.0.0.1/x.pem", "scheme"),
        ("file:///etc/passwd", "scheme"),
        ("https:///x.pem", "no host"),
        ("https://127.0.0.1:99999/x.pem", "valid URL"),
    ],
)
def test_bad_urls_refused(tls: TLSFiles, pki: tuple[LabPKI, Path], url: str, why: str) -> None:
    """URLs with userinfo, fragments, other schemes or bad ports are refused before any I/O."""
    err = reason_of(lab_source(tls, pki[1]), url)
    assert err.reason is Reason.CERT_URL_REFUSED and why in err.message


def test_port_allow_list(tls: TLSFiles, pki: tuple[LabPKI, Path]) -> None:
    """With allowed_ports (ATIS: 443, 8443) other ports are refused."""
    source = lab_source(tls, pki[1], fetch={"allowed_ports": frozenset({443, 8443})})
    assert reason_of(source, "https://127.0.0.1:8080/x.pem").reason is Reason.CERT_URL_REFUSED


TARGETS = [
    # (url, policy options, (url to ask for, host to resolve, port, Host header))
    (
        "https://certs.example.com/sti.pem",
        {},
        ("https://certs.example.com/sti.pem", "certs.example.com", 443, "certs.example.com"),
    ),
    (
        "HTTPS://Certs.Example.COM./a.pem",
        {},
        ("https://certs.example.com/a.pem", "certs.example.com", 443, "certs.example.com"),
    ),
    (
        "https://certs.example.com",
        {},
        ("https://certs.example.com/", "certs.example.com", 443, "certs.example.com"),
    ),
    (
        "https://certs.example.com:443/x",
        {},
        ("https://certs.example.com:443/x", "certs.example.com", 443, "certs.example.com:443"),
    ),
    (
        "https://certs.example.com:8443/x?",
        {},
        ("https://certs.example.com:8443/x?", "certs.example.com", 8443, "certs.example.com:8443"),
    ),
    (
        "https://certs.example.com/x?a=1&b",
        {},
        ("https://certs.example.com/x?a=1&b", "certs.example.com", 443, "certs.example.com"),
    ),
    (  # UTS #46 maps the full-width letters (what a browser shows as the same name)
        "https://\uff23\uff25\uff32\uff34\uff33.example.com/x",
        {},
        ("https://certs.example.com/x", "certs.example.com", 443, "certs.example.com"),
    ),
    (
        "https://[2001:db8::1]/x",
        {},
        ("https://[2001:db8::1]/x", "2001:db8::1", 443, "[2001:db8::1]"),
    ),
    (
        "https://[fe80::1%25eth0]:8443/x",
        {},
        ("https://[fe80::1]:8443/x", "fe80::1", 8443, "[fe80::1]:8443"),
    ),
    (
        "https://192.0.2.1:8443/x",
        {},
        ("https://192.0.2.1:8443/x", "192.0.2.1", 8443, "192.0.2.1:8443"),
    ),
    (
        "http://certs.example.com/x",
        {"allow_http": True},
        ("http://certs.example.com/x", "certs.example.com", 80, "certs.example.com"),
    ),
    (
        "https://certs.example.com:8443/x",
        {"allowed_ports": frozenset({8443})},
        ("https://certs.example.com:8443/x", "certs.example.com", 8443, "certs.example.com:8443"),
    ),
]


@pytest.mark.parametrize(("url", "options", "target"), TARGETS)
def test_url_to_target(
    url: str, options: dict[str, Any], target: tuple[str, str, int, str]
) -> None:
    """What is asked for, of which host and port, with which Host header: scheme and host
    lowered, the default port implied (and kept out of the Host header), the path never
    empty, an IPv6 literal bracketed where a URL needs it and bare where an address does."""
    assert tuple(FetchPolicy(**options).check_url(url)) == target


REFUSED_URLS = [
    ("https://certs.example.com/a b", {}, "whitespace or control characters in the URL"),
    ("https://certs.example.com:99999/x", {}, "not a valid URL (Port out of range 0-65535)"),
    ("https://[::1/x", {}, "not a valid URL (Invalid IPv6 URL)"),
    ("ftp://certs.example.com/x", {}, "scheme 'ftp' is not allowed (only https)"),
    (
        "ftp://certs.example.com/x",
        {"allow_http": True},
        "scheme 'ftp' is not allowed (only https or http)",
    ),
    ("http://certs.example.com/x", {}, "scheme 'http' is not allowed (only https)"),
    ("//certs.example.com/x", {}, "scheme '(none)' is not allowed (only https)"),
    ("https://user@certs.example.com/x", {}, "userinfo in the URL is not allowed"),
    ("https://:pw@certs.example.com/x", {}, "userinfo in the URL is not allowed"),
    ("https://@certs.example.com/x", {}, "userinfo in the URL is not allowed"),
    ("https://certs.example.com/a#b", {}, "a fragment in the URL is not allowed"),
    ("https://certs.example.com/a#", {}, "a fragment in the URL is not allowed"),
    ("https:///x", {}, "no host"),
    (
        "https://ex\u2603mple.com/x",
        {},
        "host is not a valid internationalized name "
        "(Codepoint U+2603 at position 3 of 'ex\u2603mple' not allowed)",
    ),
    (
        "https://certs.example.com/x",
        {"allowed_ports": frozenset({8443})},
        "port 443 is not allowed",
    ),
    (
        "http://certs.example.com/x",
        {"allow_http": True, "allowed_ports": frozenset({443})},
        "port 80 is not allowed",
    ),
    (
        "https://certs.example.com:8080/x",
        {"allowed_ports": frozenset({443, 8443})},
        "port 8080 is not allowed",
    ),
    ("https://999.1.1.1/x", {}, "host '999.1.1.1' is not a valid IP address"),
    ("https://[v1.x:y]/x", {}, "host 'v1.x:y' is not a valid IP address"),
    ("https://ex_ample..com/x", {}, "host 'ex_ample..com' is not a valid DNS name"),
    (
        "https://certs.example.0x7f/x",
        {},
        "host 'certs.example.0x7f' is not a dotted-quad IPv4 address",
    ),
]


@pytest.mark.parametrize(("url", "options", "why"), REFUSED_URLS)
def test_refused_url_says_why(url: str, options: dict[str, Any], why: str) -> None:
    """cert-url-refused, and the message an operator reads: the URL, then what is wrong."""
    with pytest.raises(VerificationError) as exc:
        FetchPolicy(**options).check_url(url)
    assert exc.value.reason is Reason.CERT_URL_REFUSED
    assert exc.value.message == f"{url}: {why}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "https://certs.example.com/a\x01b",
            "https://certs.example.com/a\\x01b: whitespace or control characters in the URL",
        ),
        (
            "https://certs.example.com/a\x7fb",
            "https://certs.example.com/a\\x7fb: whitespace or control characters in the URL",
        ),
        (
            "https://certs.example.com/a\nFAKE",
            "https://certs.example.com/a\\nFAKE: whitespace or control characters in the URL",
        ),
        (
            "https://certs.example.com/\udcff",
            "https://certs.example.com/\\udcff: the URL is not valid Unicode (a lone surrogate)",
        ),
        (
            "https://certs.example.com/x?\udcff",
            "https://certs.example.com/x?\\udcff: the URL is not valid Unicode (a lone surrogate)",
        ),
        (
            "https://cért.example.com/\x00",
            "https://cért.example.com/\\x00: whitespace or control characters in the URL",
        ),
    ],
)
def test_refusal_messages_are_one_printable_line(url: str, message: str) -> None:
    """A URL that a log line cannot hold as it is (control characters, a line break, a lone
    surrogate from bytes that were not UTF-8) is refused, and shown escaped in the message,
    so that it can neither forge a log line nor make writing the message fail."""
    with pytest.raises(VerificationError) as exc:
        FetchPolicy().check_url(url)
    assert exc.value.reason is Reason.CERT_URL_REFUSED
    assert exc.value.message == message and message.isprintable()


def test_host_names_up_to_253_characters() -> None:
    """RFC 1035 §2.3.4: a name of 253 characters (without the root dot) is accepted, 254 not."""
    for length, ok in ((253, True), (254, False)):
        name = ".".join(["a" * 63] * 3) + "." + "b" * (length - 3 * 64)
        assert len(name) == length
        url = f"https://{name}/x"
        if ok:
            assert FetchPolicy().check_url(url).host == name
        else:
            with pytest.raises(VerificationError) as exc:
                FetchPolicy().check_url(url)
            assert exc.value.message.endswith("is not a valid DNS name")


def test_http_allowed_per_fetch() -> None:
    """The per-call ``allow_http`` (CRLs over http) wins over the policy's, both ways."""
    assert FetchPolicy().check_url("http://crl.example.com/ca.crl", allow_http=True).port == 80
    with pytest.raises(VerificationError):
        FetchPolicy(allow_http=True).check_url("http://crl.example.com/ca.crl", allow_http=False)
    assert FetchPolicy(allow_http=True).check_url("https://crl.example.com/ca.crl").port == 443


def test_long_urls_shortened_in_messages() -> None:
    """A URL in a message is cut to 120 characters (117 and "...")."""
    for length, shown in ((120, None), (121, 117)):
        url = "https://user@certs.example.com/" + "a" * (length - 31)
        assert len(url) == length
        with pytest.raises(VerificationError) as exc:
            FetchPolicy().check_url(url)
        expected = url if shown is None else url[:shown] + "..."
        assert exc.value.message == f"{expected}: userinfo in the URL is not allowed"


# -- the request and the response ------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_what_the_repository_sees_and_what_comes_back(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], use_async: bool
) -> None:
    """The request: a GET with the URL's Host, the policy's User-Agent and an Accept that asks
    for a PEM chain first (header names compared as HTTP does, without case).  The result:
    the body, the status, the URL asked for, and the headers by lower-case name, repeated
    field lines joined with ", " (RFC 9110 §5.3)."""
    route = chain_route(pki, header_lines=[["X-Test", "a"], ["x-test", "b"]])
    server = serve({"/sti.pem": route})
    policy = FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True, user_agent="sbc-7/2.1")
    fetcher = Fetcher(policy)
    url = server.url("/sti.pem", host="localhost")
    start = time.time()
    result = asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
    seen = [(name.lower(), value) for name, value in server.headers()["/sti.pem"]]
    assert seen == [
        ("host", f"localhost:{server.port}"),
        ("user-agent", "sbc-7/2.1"),
        ("accept", "application/pem-certificate-chain, application/x-x509-ca-cert, */*"),
    ]
    assert (result.url, result.status, result.body) == (url, 200, pki[0].chain_pem)
    assert result.headers["content-type"] == "application/pem-certificate-chain"
    assert result.headers["x-test"] == "a, b"
    assert result.headers["content-length"] == str(len(pki[0].chain_pem))
    assert start <= result.fetched_at <= time.time()
    assert fetcher.requests == 1


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_ipv6_destination(
    serve: Callable[..., CertServer], pki: tuple[LabPKI, Path], use_async: bool
) -> None:
    """An IPv6 literal is connected to over IPv6 (the async connect makes its own socket)."""
    server = serve({"/sti.pem": chain_route(pki)}, https=False, host="::1")
    fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True))
    url = server.url("/sti.pem")
    assert url == f"http://[::1]:{server.port}/sti.pem"
    result = asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
    assert result.body == pki[0].chain_pem
    assert server.hosts()["/sti.pem"] == f"[::1]:{server.port}"


# -- hostile servers ---------------------------------------------------------------------------


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_handshake_that_never_completes(use_async: bool) -> None:
    """A destination that never completes the TCP handshake (here a listening socket whose
    accept queue is full: the kernel drops the SYN): cert-fetch-timeout at the deadline,
    not the minutes the kernel would wait."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    queued = []
    for _ in range(3):  # fill the accept queue
        client = socket.socket()
        client.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            client.connect(("127.0.0.1", port))
        queued.append(client)
    try:
        fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True, timeout=1.0))
        url = f"http://127.0.0.1:{port}/sti.pem"
        start = time.monotonic()
        with pytest.raises(VerificationError) as exc:
            asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
        assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
        assert time.monotonic() - start < 2.5
    finally:
        for sock in [*queued, server]:
            sock.close()


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_tls_handshake_that_never_completes(use_async: bool) -> None:
    """A server that accepts the TCP connection and never answers the TLS handshake:
    cert-fetch-timeout at the deadline."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # the kernel completes the TCP handshake; nobody reads the ClientHello
    try:
        fetcher = Fetcher(FetchPolicy(allow_private=True, timeout=1.0))
        url = f"https://127.0.0.1:{server.getsockname()[1]}/sti.pem"
        start = time.monotonic()
        with pytest.raises(VerificationError) as exc:
            asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
        assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
        assert time.monotonic() - start < 2.5
    finally:
        server.close()


def test_keep_alive_connection_closed_by_the_server_not_reused(
    serve: Callable[..., CertServer], pki: tuple[LabPKI, Path]
) -> None:
    """A server that closed an idle keep-alive connection (unannounced): the next fetch opens
    a new one instead of failing on the dead one."""
    route = chain_route(pki, hang_up=True)
    server = serve({"/a.pem": route, "/b.pem": route}, https=False)
    fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True))
    assert fetcher.get(server.url("/a.pem")).status == 200
    time.sleep(0.2)  # the server's close has arrived
    assert fetcher.get(server.url("/b.pem")).status == 200
    peers = server.peers()
    assert peers["/a.pem"] != peers["/b.pem"]


def test_connection_refused_says_so() -> None:
    """cert-fetch-failed, with what the connect said (an operator tells a closed port from a
    dead host by it)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True, timeout=2.0))
    url = f"http://127.0.0.1:{port}/sti.pem"
    refused = f"[Errno {errno.ECONNREFUSED}]"
    with pytest.raises(VerificationError) as exc:
        fetcher.get(url)
    assert exc.value.reason is Reason.CERT_FETCH_FAILED
    assert exc.value.message == f"{url}: ConnectError: {refused} {os.strerror(errno.ECONNREFUSED)}"
    with pytest.raises(VerificationError) as exc:
        asyncio.run(fetcher.aget(url))
    assert exc.value.reason is Reason.CERT_FETCH_FAILED
    assert exc.value.message.startswith(
        f"{url}: ConnectError: cannot connect to 127.0.0.1: {refused} "
    )


def test_keep_alive_connection_reused(
    serve: Callable[..., CertServer], pki: tuple[LabPKI, Path]
) -> None:
    """Fetches of one Fetcher (sync) reuse its keep-alive connection to a server."""
    server = serve({"/a.pem": chain_route(pki), "/b.pem": chain_route(pki)}, https=False)
    fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True))
    assert fetcher.get(server.url("/a.pem")).status == 200
    assert fetcher.get(server.url("/b.pem")).status == 200
    peers = server.peers()
    assert peers["/a.pem"] == peers["/b.pem"]
    assert fetcher.requests == 2


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_http_allowed_for_one_fetch(
    serve: Callable[..., CertServer], pki: tuple[LabPKI, Path], use_async: bool
) -> None:
    """``allow_http`` given to a fetch (CRLs: ATIS-1000080 publishes them over http) wins over
    the policy's, both ways."""
    server = serve({"/ca.crl": chain_route(pki)}, https=False)
    url = server.url("/ca.crl")
    strict = Fetcher(FetchPolicy(allow_private=True))
    lax = Fetcher(FetchPolicy(allow_private=True, allow_http=True))
    if use_async:
        assert asyncio.run(strict.aget(url, allow_http=True)).status == 200
        with pytest.raises(VerificationError) as exc:
            asyncio.run(lax.aget(url, allow_http=False))
    else:
        assert strict.get(url, allow_http=True).status == 200
        with pytest.raises(VerificationError) as exc:
            lax.get(url, allow_http=False)
    assert exc.value.reason is Reason.CERT_URL_REFUSED


@pytest.mark.parametrize(
    "route",
    [
        {"mode": "hang"},  # accepts, reads the request, never answers
        {"mode": "trickle", "interval": 0.25, "body": "x" * 40},  # 10 s of body, 1 byte at a time
    ],
    ids=["never-answers", "trickles"],
)
def test_total_deadline_holds(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], route: Any
) -> None:
    """The timeout bounds the whole fetch (connect + TLS + body), sync and async."""
    server = serve({"/slow.pem": route})
    source = lab_source(tls, pki[1], fetch={"timeout": 1.0})
    start = time.monotonic()
    err = reason_of(source, server.url("/slow.pem"))
    assert err.reason is Reason.CERT_FETCH_TIMEOUT and err.sip_status == 436
    assert time.monotonic() - start < 2.5
    other = lab_source(tls, pki[1], fetch={"timeout": 1.0})
    start = time.monotonic()
    with pytest.raises(VerificationError) as exc:
        asyncio.run(other.acredential_for(server.url("/slow.pem")))
    assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
    assert time.monotonic() - start < 2.5


@pytest.mark.parametrize(
    "route",
    [
        # Content-Length over the cap, then no body at all: refused on the announced length
        # (before reading) or the fetch would wait out its deadline (cert-fetch-timeout).
        {"mode": "announce-then-hang", "length": 5000},
        # No Content-Length and a body that never ends: refused once the bytes read pass the
        # cap (while reading), or the fetch would run into its deadline.
        {"mode": "endless", "body": "A" * 1024, "seconds": 20},
        # No Content-Length, 5000 bytes, then the connection closes.
        {"body": "A" * 5000, "no_length": True},
    ],
    ids=["announced", "endless", "until-close"],
)
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_body_over_cap(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    route: dict[str, Any],
    use_async: bool,
) -> None:
    """Bodies over max_size are refused: on the announced Content-Length before the body is
    read, and while reading when there is none; sync and async."""
    server = serve({"/big.pem": route})
    source = lab_source(tls, pki[1], fetch={"max_size": 4096, "timeout": 3.0})
    url = server.url("/big.pem")
    with pytest.raises(VerificationError) as exc:
        if use_async:
            asyncio.run(source.acredential_for(url))
        else:
            source.credential_for(url)
    err = exc.value
    assert err.reason is Reason.CERT_TOO_LARGE, (err.reason, err.message)
    assert err.lib_code == -404 and err.message == f"{url}: body over the 4096 byte limit"


@pytest.mark.parametrize("no_length", [False, True], ids=["announced", "until-close"])
@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_body_of_exactly_the_cap_accepted(
    serve: Callable[..., CertServer], pki: tuple[LabPKI, Path], no_length: bool, use_async: bool
) -> None:
    """max_size is the largest body accepted, with or without a Content-Length."""
    body = pki[0].chain_pem
    server = serve({"/sti.pem": {"body": body.decode(), "no_length": no_length}}, https=False)
    size = len(body)
    for max_size, ok in ((size, True), (size - 1, False)):
        fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True, max_size=max_size))
        url = server.url("/sti.pem")
        if ok:
            result = asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
            assert result.body == body
        else:
            with pytest.raises(VerificationError) as exc:
                asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
            assert exc.value.reason is Reason.CERT_TOO_LARGE


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_fetch_under_a_second_succeeds(
    serve: Callable[..., CertServer], pki: tuple[LabPKI, Path], use_async: bool
) -> None:
    """A timeout under a second is a deadline, not an error: a fast server is fetched."""
    server = serve({"/sti.pem": chain_route(pki)}, https=False)
    fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True, timeout=0.9))
    url = server.url("/sti.pem")
    result = asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
    assert result.body == pki[0].chain_pem


@pytest.mark.parametrize("use_async", [False, True], ids=["sync", "async"])
def test_body_in_pieces_put_together(serve: Callable[..., CertServer], use_async: bool) -> None:
    """A body that arrives a byte at a time comes back whole, in order."""
    server = serve(
        {"/x.pem": {"mode": "trickle", "interval": 0.02, "body": "ABCDEFGH"}}, https=False
    )
    fetcher = Fetcher(FetchPolicy(allow_http=True, allow_private=True, timeout=3.0))
    url = server.url("/x.pem")
    result = asyncio.run(fetcher.aget(url)) if use_async else fetcher.get(url)
    assert result.body == b"ABCDEFGH"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"timeout": 0}, "FetchPolicy.timeout must be in (0, 300] seconds, not 0"),
        ({"timeout": -1.5}, "FetchPolicy.timeout must be in (0, 300] seconds, not -1.5"),
        ({"timeout": 300.5}, "FetchPolicy.timeout must be in (0, 300] seconds, not 300.5"),
        ({"max_size": 0}, "FetchPolicy.max_size must be positive"),
        ({"max_in_flight": 0}, "FetchPolicy.max_in_flight must be positive"),
        (
            {"allow_networks": ("10.0.0.0/33",)},
            "FetchPolicy.allow_networks: '10.0.0.0/33' does not appear to be an IPv4 or IPv6 "
            "network",
        ),
        (
            {"nameservers": ("ns1.example.com",)},
            "FetchPolicy.nameservers: 'ns1.example.com' does not appear to be an IPv4 or IPv6 "
            "address",
        ),
    ],
)
def test_fetch_policy_refuses_bad_values(options: dict[str, Any], message: str) -> None:
    """A configuration error, at construction, that names the field and the rule."""
    with pytest.raises(ValueError) as exc:
        FetchPolicy(**options)
    assert str(exc.value) == message


def test_fetch_policy_limits_and_forms() -> None:
    """The edges of what is accepted, and the forms taken for convenience."""
    for timeout in (0.001, 300):
        assert FetchPolicy(timeout=timeout).timeout == timeout
    assert FetchPolicy(max_size=1, max_in_flight=1).max_size == 1
    policy = FetchPolicy(allow_networks=("10.1.2.3/8",))  # host bits set: the network meant
    policy.check_address(ipaddress.ip_address("10.200.0.1"), "https://x.test/")
    with pytest.raises(VerificationError):
        policy.check_address(ipaddress.ip_address("192.168.0.1"), "https://x.test/")
    assert FetchPolicy(nameservers="192.0.2.53").nameservers == ("192.0.2.53",)  # type: ignore[arg-type]


def test_redirect_not_followed(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A 302 is an error, and its target is never requested (ATIS-1000074)."""
    server = serve({"/sti.pem": chain_route(pki)})
    target = server.url("/sti.pem")
    server2 = serve({"/moved.pem": {"status": 302, "headers": {"Location": target}}})
    err = reason_of(lab_source(tls, pki[1]), server2.url("/moved.pem"))
    assert err.reason is Reason.CERT_FETCH_REDIRECT
    assert server.hits().get("/sti.pem", 0) == 0


@pytest.mark.parametrize("status", [300, 301, 307, 308, 399])
def test_every_3xx_is_a_redirect_not_followed(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], status: int
) -> None:
    server = serve({"/x.pem": {"status": status, "headers": {"Location": "/y.pem"}}})
    url = server.url("/x.pem")
    err = reason_of(lab_source(tls, pki[1]), url)
    assert err.reason is Reason.CERT_FETCH_REDIRECT
    assert err.message == f"{url}: HTTP {status} redirect not followed"


@pytest.mark.parametrize("status", [404, 500, 204, 201, 206, 400])
def test_non_200(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], status: int
) -> None:
    """Any status but 200 is cert-fetch-status (436)."""
    server = serve({"/x.pem": {"status": status, "body": "" if status == 204 else "err"}})
    url = server.url("/x.pem")
    err = reason_of(lab_source(tls, pki[1]), url)
    assert err.reason is Reason.CERT_FETCH_STATUS and err.message == f"{url}: HTTP {status}"


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>Login</body></html>",
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
        "-----BEGIN PUBLIC KEY-----\n"
        "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8HNbQd/TmvCKwPKHkMF9fScavGeH\n"
        "78YTU8qLS8I5HLHSSmlATLcslQMhNC/OhlWBYC626nIlo7XeebYS7Sb37g==\n"
        "-----END PUBLIC KEY-----\n",
    ],
    ids=["html", "bad-pem", "bare-public-key"],
)
def test_not_a_certificate(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], body: str
) -> None:
    """HTML, broken PEM or a bare key instead of a certificate: cert-invalid (437)."""
    server = serve({"/x.pem": {"body": body, "headers": {"Content-Type": "text/html"}}})
    err = reason_of(lab_source(tls, pki[1]), server.url("/x.pem"))
    assert err.reason is Reason.CERT_INVALID and err.sip_status == 437
    assert err.message.startswith(server.url("/x.pem") + ": ")  # which URL served it


def test_der_certificate_accepted(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A single DER certificate is accepted (secsipidx refuses it)."""
    from cryptography.hazmat.primitives.serialization import Encoding

    lab = make_lab_pki(root=(pki[0].root_key, pki[0].root))
    der = lab.leaf.public_bytes(Encoding.DER)
    server = serve({"/c.der": {"body_hex": der.hex()}})
    source = CertificateSource(  # the leaf alone: no intermediate, so no chain validation
        fetch=FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True),
        trust=None,
        memory=MemoryCache(),
    )
    credential = source.credential_for(server.url("/c.der"))
    assert credential.certificate == lab.leaf


# -- single flight -----------------------------------------------------------------------------


def test_single_flight_threads(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """Many threads verifying with the same uncached URL cause exactly one fetch."""
    server = serve({"/sti.pem": chain_route(pki, delay=0.5)})
    url = server.url("/sti.pem")
    verifier = Verifier(lab_source(tls, pki[1]))
    values = [sign(pki, url) for _ in range(40)]
    results: list[bool] = []
    barrier = threading.Barrier(len(values))

    def run(value: str) -> None:
        barrier.wait()
        results.append(verifier.check(value).ok)

    threads = [threading.Thread(target=run, args=(v,)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [True] * len(values)
    assert server.hits()["/sti.pem"] == 1


def test_single_flight_asyncio(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """Many asyncio tasks verifying with the same uncached URL cause exactly one fetch."""
    server = serve({"/sti.pem": chain_route(pki, delay=0.3)})
    url = server.url("/sti.pem")
    verifier = Verifier(lab_source(tls, pki[1]))
    values = [sign(pki, url) for _ in range(100)]

    async def main() -> list[bool]:
        verdicts = await asyncio.gather(*(verifier.acheck(v) for v in values))
        return [v.ok for v in verdicts]

    assert asyncio.run(main()) == [True] * len(values)
    assert server.hits()["/sti.pem"] == 1


def test_concurrent_failures_each_get_the_reason(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """Followers of a failed fetch get the same reason; the failure is fetched once."""
    server = serve({"/gone.pem": {"status": 503, "delay": 0.3}})
    source = lab_source(tls, pki[1])
    url = server.url("/gone.pem")

    async def main() -> list[str]:
        async def one() -> str:
            try:
                await source.acredential_for(url)
            except VerificationError as exc:
                return exc.reason.value
            return "ok"

        return await asyncio.gather(*(one() for _ in range(20)))

    assert asyncio.run(main()) == ["cert-fetch-status"] * 20
    assert server.hits()["/gone.pem"] == 1


# -- caching -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "ttl", "storable"),
    [
        ({}, 3600.0, True),
        ({"cache-control": "max-age=60"}, 60.0, True),
        ({"cache-control": "public, s-maxage=120, max-age=60"}, 120.0, True),
        ({"cache-control": "no-cache"}, 0.0, True),
        ({"cache-control": "no-store, max-age=30"}, 30.0, False),
        ({"expires": "Thu, 01 Jan 2026 01:00:00 GMT", "date": "Thu, 01 Jan 2026 00:00:00 GMT"},
         3600.0, True),
        ({"expires": "garbage"}, 0.0, True),
        ({"cache-control": "max-age=abc"}, 3600.0, True),
        ({"cache-control": "max-age"}, 3600.0, True),  # no value: ignored, not an error
        ({"cache-control": "s-maxage, max-age=60"}, 60.0, True),
        ({"cache-control": 'max-age="60"'}, 60.0, True),  # a quoted value
        ({"cache-control": "no-store"}, 0.0, False),
        # Expires counts from the response's Date (RFC 9111 §4.2.1), else from now.
        ({"expires": "Thu, 01 Jan 2026 01:00:00 GMT", "date": "Wed, 31 Dec 2025 23:00:00 GMT"},
         7200.0, True),
        ({"expires": "Thu, 01 Jan 2026 01:00:00 GMT", "date": "garbage"}, 3600.0, True),
        ({"expires": "Thu, 01 Jan 2026 01:00:00 GMT"}, 3600.0, True),
        ({"expires": "Wed, 31 Dec 2025 23:00:00 GMT", "date": "Thu, 01 Jan 2026 00:00:00 GMT"},
         0.0, True),
    ],
)  # fmt: skip
def test_freshness_from_headers(headers: dict[str, str], ttl: float, storable: bool) -> None:
    """Cache-Control s-maxage/max-age/no-cache/no-store and Expires (RFC 9111)."""
    assert freshness(headers, 1_767_225_600.0, 3600.0) == (ttl, storable)


def test_cache_headers_honoured(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """max-age=0 means every use refetches; a long max-age is capped at the leaf's notAfter."""
    server = serve(
        {
            "/zero.pem": chain_route(pki, headers={"Cache-Control": "max-age=0"}),
            "/long.pem": chain_route(pki, headers={"Cache-Control": "max-age=999999999"}),
        }
    )
    source = lab_source(tls, pki[1])
    for _ in range(3):
        source.credential_for(server.url("/zero.pem"))
        source.credential_for(server.url("/long.pem"))
    hits = server.hits()
    assert hits["/zero.pem"] == 3 and hits["/long.pem"] == 1
    entry = source.memory.get((repr(source.fetch_policy.cache_key), server.url("/long.pem")))
    assert entry is not None
    assert entry.expires == pki[0].leaf.not_valid_after_utc.timestamp()


def test_cached_credential_never_fetches(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """cached_credential() (what the verifier asks first) answers from the caches only: None
    before a fetch, the credential after one, the remembered error of a recent failure."""
    server = serve({"/sti.pem": chain_route(pki), "/down.pem": {"status": 500}})
    url, down = server.url("/sti.pem"), server.url("/down.pem")
    source = lab_source(tls, pki[1])
    assert source.cached_credential(url) is None and source.cached_credential(down) is None
    assert server.hits() == {}
    source.credential_for(url)
    cached = source.cached_credential(url)
    assert cached is not None and cached.certificate == pki[0].leaf
    assert reason_of(source, down).reason is Reason.CERT_FETCH_STATUS
    with pytest.raises(VerificationError) as exc:
        source.cached_credential(down)
    assert (exc.value.reason, exc.value.message) == (Reason.CERT_FETCH_STATUS, f"{down}: HTTP 500")
    assert server.hits() == {"/sti.pem": 1, "/down.pem": 1}


def test_min_ttl_raises_short_lifetimes(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """min_ttl (ATIS-1000074 suggests 24 h) keeps a certificate served with max-age=0 that
    long, never past the leaf's notAfter; a longer lifetime is left as it is."""
    server = serve({
        "/zero.pem": chain_route(pki, headers={"Cache-Control": "max-age=0"}),
        "/long.pem": chain_route(pki, headers={"Cache-Control": "max-age=7200"}),
    })  # fmt: skip
    source = lab_source(tls, pki[1], cache=CacheConfig(min_ttl=3600))
    before = time.time()
    for _ in range(2):
        source.credential_for(server.url("/zero.pem"))
        source.credential_for(server.url("/long.pem"))
    assert server.hits()["/zero.pem"] == server.hits()["/long.pem"] == 1
    policy = repr(source.fetch_policy.cache_key)
    zero = source.memory.get((policy, server.url("/zero.pem")))
    long = source.memory.get((policy, server.url("/long.pem")))
    assert zero is not None and before + 3599 <= zero.expires <= time.time() + 3601
    assert long is not None and before + 7199 <= long.expires <= time.time() + 7201
    capped = lab_source(tls, pki[1], cache=CacheConfig(min_ttl=10**12))
    capped.credential_for(server.url("/zero.pem"))
    entry = capped.memory.get((policy, server.url("/zero.pem")))
    assert entry is not None
    assert entry.expires == pki[0].leaf.not_valid_after_utc.timestamp()


def test_expires_without_a_date_counts_from_the_fetch(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A server without a clock sends no Date (RFC 9110 §6.6.1): its Expires then counts
    from the moment of the fetch (RFC 9111 §4.2.1), and the certificate is cached that long."""
    import email.utils

    expires = email.utils.formatdate(time.time() + 600, usegmt=True)
    server = serve({"/sti.pem": chain_route(pki, no_date=True, headers={"Expires": expires})})
    url = server.url("/sti.pem")
    source = lab_source(tls, pki[1])
    before = time.time()
    for _ in range(2):
        assert source.credential_for(url).certificate == pki[0].leaf
    assert server.hits()["/sti.pem"] == 1
    entry = source.memory.get((repr(source.fetch_policy.cache_key), url))
    assert entry is not None and before + 598 <= entry.expires <= time.time() + 601


def test_negative_cache(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A failed fetch is remembered for negative_ttl: the dead server is asked once."""
    server = serve({"/down.pem": {"status": 500}})
    source = lab_source(tls, pki[1])
    for _ in range(5):
        assert reason_of(source, server.url("/down.pem")).reason is Reason.CERT_FETCH_STATUS
    assert server.hits()["/down.pem"] == 1
    no_negative = lab_source(tls, pki[1], cache=CacheConfig(negative_ttl=0))
    for _ in range(2):
        reason_of(no_negative, server.url("/down.pem"))
    assert server.hits()["/down.pem"] == 3


def test_negative_cache_asyncio(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """The asyncio path remembers a failed fetch too: the dead server is asked once."""
    server = serve({"/down.pem": {"status": 500}})
    source = lab_source(tls, pki[1])

    async def twice() -> list[Reason]:
        reasons = []
        for _ in range(2):
            with pytest.raises(VerificationError) as exc:
                await source.acredential_for(server.url("/down.pem"))
            reasons.append(exc.value.reason)
        return reasons

    assert asyncio.run(twice()) == [Reason.CERT_FETCH_STATUS] * 2
    assert server.hits()["/down.pem"] == 1


def test_stale_if_error(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """With stale_if_error, an expired entry is served while the server is down; without, 436."""
    server = serve({"/sti.pem": chain_route(pki, headers={"Cache-Control": "max-age=0"})})
    url = server.url("/sti.pem")
    memory = MemoryCache()
    tolerant = lab_source(tls, pki[1], memory=memory, cache=CacheConfig(stale_if_error=600))
    verifier = Verifier(tolerant)
    assert verifier.check(sign(pki, url)).ok
    server.stop()
    assert verifier.check(sign(pki, url)).ok  # stale, served on error
    strict = lab_source(tls, pki[1], memory=memory)  # same cache, no stale-if-error
    verdict = Verifier(strict).check(sign(pki, url))
    assert verdict.reason is Reason.CERT_FETCH_FAILED and verdict.sip_status == 436


_CHILD = """
import sys
from secsipid import CertificateSource, FetchPolicy, MemoryCache, TrustPolicy, Verifier
source = CertificateSource(
    fetch=FetchPolicy(tls_ca_file=sys.argv[1], allow_private=True),
    trust=TrustPolicy(ca_file=sys.argv[2]), cache_dir=sys.argv[3], memory=MemoryCache())
verdict = Verifier(source).check(sys.argv[4])
print(verdict.reason.value)
"""


def test_directory_cache_shared_by_processes(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], tmp_path: Path
) -> None:
    """Two processes with the same cache_dir: one fetch; a corrupt file is ignored and refetched."""
    server = serve({"/sti.pem": chain_route(pki)})
    url = server.url("/sti.pem")
    cache_dir = tmp_path / "cache"

    def child() -> str:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(tls.ca), str(pki[1]), str(cache_dir),
             sign(pki, url)],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    assert child() == "valid"
    assert child() == "valid"
    assert server.hits()["/sti.pem"] == 1
    files = list(cache_dir.glob("*.pem"))
    assert len(files) == 1 and files[0].read_bytes().startswith(b"secsipid-cache-v1 ")
    files[0].write_bytes(b"secsipid-cache-v1 {not json\n garbage")
    assert child() == "valid"
    assert server.hits()["/sti.pem"] == 2
    assert not list(cache_dir.glob(".tmp-*"))


def test_directory_cache_file_and_sharing(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """cache_dir (created when missing) holds one file per URL and fetch policy, written to a
    temporary file in the same directory and renamed into place, readable by other users:
    a first line with the format and the entry's metadata, then the PEM chain.  A source
    with another memory cache reads it instead of fetching; another policy does not."""
    import hashlib
    import tempfile

    server = serve({"/sti.pem": chain_route(pki, headers={"Cache-Control": "max-age=600"})})
    url = server.url("/sti.pem")
    cache_dir = tmp_path / "not" / "yet" / "there"
    made_in: list[str] = []
    mkstemp = tempfile.mkstemp

    def recording_mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        fd, name = mkstemp(*args, **kwargs)
        made_in.append(str(Path(name).parent))
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", recording_mkstemp)
    first = lab_source(tls, pki[1], cache_dir=cache_dir)
    before = time.time()
    credential = first.credential_for(url)
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and made_in == [str(cache_dir)]
    policy_key = repr(first.fetch_policy.cache_key)
    digest = hashlib.sha256(f"{policy_key}\n{url}".encode()).hexdigest()[:40]
    assert files[0].name == f"{digest}.pem"
    assert files[0].stat().st_mode & 0o777 == 0o644
    head, _, body = files[0].read_bytes().partition(b"\n")
    assert head.startswith(b"secsipid-cache-v1 ")
    meta = json.loads(head[len(b"secsipid-cache-v1 ") :])
    assert head[len(b"secsipid-cache-v1 ") :] == json.dumps(meta, sort_keys=True).encode()
    assert (meta["url"], meta["policy"]) == (url, policy_key)
    assert before + 599 <= meta["expires"] <= time.time() + 601
    assert before <= meta["stored"] <= time.time()
    assert body == pki[0].chain_pem

    second = lab_source(tls, pki[1], cache_dir=cache_dir)  # its own, empty memory cache
    assert second.credential_for(url).certificate == credential.certificate
    assert server.hits()["/sti.pem"] == 1
    other = lab_source(tls, pki[1], cache_dir=cache_dir,
                       fetch={"allowed_ports": frozenset({server.port})})  # fmt: skip
    assert other.credential_for(url).certificate == credential.certificate
    assert server.hits()["/sti.pem"] == 2 and len(list(cache_dir.iterdir())) == 2


@pytest.mark.parametrize(
    "content",
    [
        b"secsipid-cache-v1 {}",  # no newline: no body
        b"secsipid-cache-v2 {META}\n{BODY}",  # another format
        b"secsipid-cache-v1 {not json\n{BODY}",
        b'secsipid-cache-v1 {"url": "https://other.example/x.pem", "policy": "{POLICY}", '
        b'"expires": {EXPIRES}}\n{BODY}',
        b'secsipid-cache-v1 {"url": "{URL}", "policy": "other", "expires": {EXPIRES}}\n{BODY}',
        b'secsipid-cache-v1 {"url": "{URL}", "policy": "{POLICY}"}\n{BODY}',
        b'secsipid-cache-v1 {"url": "{URL}", "policy": "{POLICY}", "expires": "soon"}\n{BODY}',
        b'secsipid-cache-v1 {"url": "{URL}", "policy": "{POLICY}", "expires": 1}\n{BODY}',
        b"secsipid-cache-v1 {META}\nnot a certificate",
    ],
    ids=["no-newline", "other-format", "bad-json", "other-url", "other-policy", "no-expiry",
         "bad-expiry", "expired", "bad-body"],
)  # fmt: skip
def test_directory_cache_ignores_unusable_files(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    tmp_path: Path,
    content: bytes,
) -> None:
    """A cache file that is not exactly ours, for this URL and policy, current and holding a
    certificate, is ignored: the certificate is fetched and the file replaced."""
    server = serve({"/sti.pem": chain_route(pki)})
    url = server.url("/sti.pem")
    cache_dir = tmp_path / "cache"
    lab_source(tls, pki[1], cache_dir=cache_dir).credential_for(url)
    (path,) = cache_dir.iterdir()
    good = path.read_bytes()
    meta, _, body = good.partition(b"\n")
    fields = json.loads(meta[len(b"secsipid-cache-v1 ") :])
    replacements = {b"{META}": meta[len(b"secsipid-cache-v1 ") :], b"{BODY}": body,
                    b"{URL}": url.encode(), b"{EXPIRES}": str(fields["expires"]).encode(),
                    b"{POLICY}": fields["policy"].replace("\\", "\\\\").encode()}  # fmt: skip
    for key, value in replacements.items():
        content = content.replace(key, value)
    path.write_bytes(content)
    source = lab_source(tls, pki[1], cache_dir=cache_dir)
    assert source.credential_for(url).certificate == pki[0].leaf
    assert server.hits()["/sti.pem"] == 2
    assert path.read_bytes().partition(b"\n")[2] == body  # replaced by a good file
    assert list(cache_dir.iterdir()) == [path]


def test_directory_cache_write_failures_are_harmless(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A cache directory that cannot be written (gone, or a write that fails half way) makes
    a slower cache, never a failed verification, and leaves no temporary file behind."""
    server = serve({"/sti.pem": chain_route(pki)})
    url = server.url("/sti.pem")
    cache_dir = tmp_path / "cache"
    source = lab_source(tls, pki[1], cache_dir=cache_dir)

    def failing_chmod(path: Any, mode: int) -> None:
        raise PermissionError(13, "refused by the test", path)

    monkeypatch.setattr(os, "chmod", failing_chmod)
    assert source.credential_for(url).certificate == pki[0].leaf
    assert list(cache_dir.iterdir()) == []
    monkeypatch.undo()
    cache_dir.rmdir()
    source.memory.clear()
    assert source.credential_for(url).certificate == pki[0].leaf
    assert not cache_dir.exists()
    assert server.hits()["/sti.pem"] == 2


def test_memory_cache_bounds(pki: tuple[LabPKI, Path]) -> None:
    """The memory cache holds at most max_entries entries and max_bytes bytes of chains,
    least recently used out first, its byte count exact through replacements, evictions and
    clear(); storing a URL forgets its failure."""
    from secsipid._keys import Credential
    from secsipid._source import _Entry

    credential = Credential.from_certificates([pki[0].leaf])
    default = MemoryCache()
    assert (default.max_entries, default.max_bytes) == (4096, 32 * 1024 * 1024)
    assert (default.max_negative, default.max_negative_bytes) == (4096, 4 * 1024 * 1024)

    def entry(size: int) -> _Entry:
        return _Entry(credential, b"x" * size, 0.0)

    def keys(cache: MemoryCache) -> list[str]:
        return [k[1] for k in cache._entries]

    cache = MemoryCache(max_entries=3, max_bytes=10)
    cache.put(("p", "a"), entry(10))
    cache.put(("p", "a"), entry(10))  # a replacement: still 10 bytes, not 20
    assert keys(cache) == ["a"]
    cache.clear()
    cache.put(("p", "b"), entry(10))  # exactly max_bytes again after clear()
    assert keys(cache) == ["b"]
    cache.put(("p", "c"), entry(6))  # 16 bytes: the oldest goes
    cache.put(("p", "d"), entry(4))  # 10 bytes: both stay
    assert keys(cache) == ["c", "d"] and cache._bytes == 10
    cache.get(("p", "c"))  # c is now the most recently used
    cache.put(("p", "e"), entry(1))  # 11 bytes: d goes, not c
    assert keys(cache) == ["c", "e"] and cache._bytes == 7
    for name in ("f", "g"):
        cache.put(("p", name), entry(0))  # entries, not bytes, over the bound
    assert keys(cache) == ["e", "f", "g"] and cache._bytes == 1
    assert cache.stats() == {"entries": 3, "bytes": 1, "negative_entries": 0, "negative_bytes": 0}

    error = VerificationError(Reason.CERT_FETCH_STATUS, "x: HTTP 500")
    negatives = MemoryCache(max_negative=2)
    for name in ("first", "second", "second", "third"):  # "second" twice: counted once
        negatives.put_negative(("p", name), error, time.time() + 600)
    assert list(negatives._negative) == [("p", "second"), ("p", "third")]  # oldest out
    negatives.put(("p", "third"), entry(1))  # fetched at last: no longer a failure
    assert negatives.negative(("p", "third")) is None
    assert negatives.negative(("p", "second")) is not None
    # a failure weighs its message, 200 bytes of bookkeeping and its key's strings
    assert negatives.stats() == {
        "entries": 1,
        "bytes": 1,
        "negative_entries": 1,
        "negative_bytes": len("x: HTTP 500") + 200 + len("psecond"),
    }


def test_memory_cache_lookup_during_an_eviction(pki: tuple[LabPKI, Path]) -> None:
    """get() reads without the lock (the hot path): an entry that another thread evicts
    between the lookup and the move to the LRU end is still returned, without a KeyError."""
    from collections import OrderedDict

    from secsipid._keys import Credential
    from secsipid._source import _Entry

    class EvictedMeanwhile(OrderedDict[tuple[Any, ...], _Entry]):
        def move_to_end(self, key: tuple[Any, ...], last: bool = True) -> None:
            del self[key]  # what a put() in another thread does when the cache is full
            super().move_to_end(key, last)

    entry = _Entry(Credential.from_certificates([pki[0].leaf]), b"x", time.time() + 60)
    cache = MemoryCache()
    cache._entries = EvictedMeanwhile({("p", "a"): entry})
    assert cache.get(("p", "a")) is entry
    assert cache.get(("p", "a")) is None and len(cache) == 0


def test_negative_cache_remembers_the_error() -> None:
    """A remembered failure answers with the same reason, libsecsipid code and message (a
    fresh exception each time); a message over 300 characters is cut to 300, ending in
    "...", so that hostile servers cannot grow the cache with long errors."""
    cache = MemoryCache()
    until = time.time() + 600
    error = VerificationError(Reason.CERT_FETCH_STATUS, "m" * 300, lib_code=-999)
    cache.put_negative(("p", "exact"), error, until)
    remembered = cache.negative(("p", "exact"))
    assert remembered is not None and remembered.until == until
    again = remembered.error()
    assert again is not error and again is not remembered.error()
    assert (again.reason, again.message, again.lib_code) == (error.reason, "m" * 300, -999)
    cache.put_negative(("p", "long"), VerificationError(Reason.CERT_INVALID, "n" * 301), until)
    long = cache.negative(("p", "long"))
    assert long is not None
    assert long.error().message == "n" * 297 + "..."
    assert long.error().lib_code == Reason.CERT_INVALID.lib_code


def test_no_store_never_written_to_the_directory_cache(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], tmp_path: Path
) -> None:
    """Cache-Control: no-store (RFC 9111 §5.2.2.5) keeps a response out of cache_dir, even
    with a max-age; the same response without it is written there."""
    server = serve(
        {
            "/private.pem": chain_route(pki, headers={"Cache-Control": "no-store, max-age=600"}),
            "/public.pem": chain_route(pki, headers={"Cache-Control": "max-age=600"}),
        }
    )
    cache_dir = tmp_path / "cache"
    source = lab_source(tls, pki[1], cache_dir=cache_dir)
    verifier = Verifier(source)
    assert verifier.check(sign(pki, server.url("/private.pem"))).ok
    assert list(cache_dir.iterdir()) == []
    assert verifier.check(sign(pki, server.url("/public.pem"))).ok
    files = list(cache_dir.iterdir())
    assert len(files) == 1 and server.url("/public.pem").encode() in files[0].read_bytes()


def test_policies_do_not_share_cache_entries(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A certificate fetched under a lax policy is not served to a strict one."""
    server = serve({"/sti.pem": chain_route(pki)})
    memory = MemoryCache()
    lax = lab_source(tls, pki[1], memory=memory)
    assert lax.credential_for(server.url("/sti.pem"))
    strict = lab_source(tls, pki[1], memory=memory, fetch={"allow_private": False})
    assert reason_of(strict, server.url("/sti.pem")).reason is Reason.CERT_URL_REFUSED


def test_source_requires_an_explicit_trust_choice() -> None:
    """CertificateSource without trust= is refused: off only when asked (the signature shows
    the default as UNSET)."""
    import inspect

    assert repr(inspect.signature(CertificateSource).parameters["trust"].default) == "UNSET"
    with pytest.raises(TypeError, match="trust"):
        CertificateSource()
    with pytest.raises(ValueError, match="trust anchors"):
        TrustPolicy()


def test_check_identity_downloads_from_info(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """check_identity(value, "") uses the default source; without trust anchors it says so."""
    import secsipid

    server = serve({"/sti.pem": chain_route(pki)})
    value = sign(pki, server.url("/sti.pem"))
    monkeypatch.delenv("SECSIPID_CA_FILE", raising=False)
    monkeypatch.delenv("SECSIPID_CA_DIR", raising=False)
    verdict = secsipid.check_identity(value, "")
    assert verdict.reason is Reason.NO_TRUST_ANCHORS and verdict.sip_status == 500
    secsipid.set_default_source(lab_source(tls, pki[1]))
    try:
        assert secsipid.check_identity(value).ok
        assert secsipid.check_identity(value, "", expire=0, now=time.time() + 5).reason == "stale"
    finally:
        secsipid.set_default_source(None)


# -- the command line -------------------------------------------------------------------------


_cli = run_cli


def test_cli_fetch_and_check_through_info(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`secsipid fetch URL` describes the chain; `secsipid check` without --cert fetches from
    info and validates against --ca-file; the lab options are needed for loopback."""
    import json

    server = serve({"/sti.pem": chain_route(pki, headers={"Cache-Control": "max-age=600"})})
    url = server.url("/sti.pem")
    lab = ["--allow-private", "--tls-ca-file", str(tls.ca)]
    status, out, _ = _cli(capsys, "fetch", url, *lab, "--ca-file", str(pki[1]))
    doc = json.loads(out)
    assert status == 0 and doc["trusted"] is True and doc["spc"] == "1234"
    assert doc["cache_seconds"] == 600 and len(doc["chain"]) == 2
    assert doc["chain"][0]["tnauthlist"] == {"spc": ["1234"], "tns": [], "ranges": []}

    value = sign(pki, url)
    status, out, _ = _cli(capsys, "check", value, *lab, "--ca-file", str(pki[1]), "--json")
    assert status == 0 and json.loads(out)["spc"] == "1234"
    # Refused by default: loopback destination.
    status, out, _ = _cli(capsys, "check", value, "--tls-ca-file", str(tls.ca), "--ca-file",
                          str(pki[1]), "--json")  # fmt: skip
    assert status == 1 and json.loads(out)["reason"] == "cert-url-refused"
    # Another root: untrusted.
    other = make_lab_pki()
    other_root = pki[1].parent / "other-root.pem"
    other_root.write_bytes(pem(other.root))
    status, out, _ = _cli(capsys, "check", value, *lab, "--ca-file", str(other_root), "--json")
    assert status == 1 and json.loads(out)["reason"] == "cert-untrusted"
    # No trust configured: a usage error, unless explicitly waived.
    status, _, err = _cli(capsys, "check", value, *lab)
    assert status == 2 and "--no-verify-cert" in err
    status, _, _ = _cli(capsys, "check", value, *lab, "--no-verify-cert")
    assert status == 0
    status, _, err = _cli(capsys, "fetch", server.url("/missing.pem"), *lab)
    assert status == 1 and "cert-fetch-status" in err


def _child_fetch(url: str, ca: str, queue: Any, source: CertificateSource | None = None) -> None:
    source = source or CertificateSource(
        fetch=FetchPolicy(tls_ca_file=ca, allow_private=True, timeout=3),
        trust=None,
        memory=MemoryCache(),
    )
    try:
        source.credential_for(url)
        queue.put("ok")
    except VerificationError as exc:
        queue.put(exc.reason.value)


def test_keep_alive_pool_is_bounded() -> None:
    """The synchronous keep-alive pool's bounds, a defence against an info URL per call on a
    new server: as many connections as fetches in flight (a fetch never queues behind stuck
    ones), at most 32 of them idle, each idle one closed after 30 s.  (Exercising the idle
    bound through the network takes 33 servers; the pool's settings are read instead.)"""
    for limit in (8, 256):
        pool = Fetcher(FetchPolicy(max_in_flight=limit))._new_pool()
        assert pool._max_connections == limit
        assert pool._max_keepalive_connections == min(32, limit)
        assert pool._keepalive_expiry == 30.0


def test_fetch_after_fork(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A process forked after a fetch (Kamailio forks its workers) can still resolve and
    fetch: the DNS thread pool is per process."""
    import multiprocessing

    server = serve({"/sti.pem": chain_route(pki), "/other.pem": chain_route(pki)})
    url = server.url("/sti.pem", host="localhost")
    parent = lab_source(tls, pki[1])
    parent.credential_for(url)  # the parent's resolver threads and keep-alive pool now exist
    ctx = multiprocessing.get_context("fork")
    for args in ((url, str(tls.ca)), (server.url("/other.pem", host="localhost"), "", parent)):
        queue = ctx.Queue()
        child = ctx.Process(target=_child_fetch, args=(args[0], args[1], queue, *args[2:]))
        child.start()
        child.join(timeout=20)
        assert child.exitcode == 0
        assert queue.get(timeout=1) == "ok"
    # The parent's pooled connection still works after the children are gone.
    parent.memory.clear()
    assert parent.credential_for(url)


def test_forked_child_leaves_the_parents_pooled_connections_alone(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """After a fork the child fetches through a pool of its own and keeps the parent's
    referenced, never used or closed: were it dropped, the child's garbage collector would
    close the inherited TLS sockets (a ResourceWarning per connection), which belong to the
    parent; the parent's connection goes on working."""
    import gc
    import warnings

    server = serve({"/sti.pem": chain_route(pki)})
    url = server.url("/sti.pem")
    fetcher = Fetcher(FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True, timeout=3))
    assert fetcher.get(url).status == 200  # the parent now holds a keep-alive connection
    port = url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[1]
    with warnings.catch_warnings():  # earlier tests' garbage is collected here, not in the child
        warnings.simplefilter("ignore")
        gc.collect()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            os.close(read_end)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ok = fetcher.get(url).status == 200
                gc.collect()
            unclosed = [
                str(w.message)
                for w in caught
                if issubclass(w.category, ResourceWarning) and f", {port})" in str(w.message)
            ]
            os.write(write_end, json.dumps({"ok": ok, "unclosed": unclosed}).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        report = pipe.read()
    _, status = os.waitpid(pid, 0)
    assert status == 0, status
    assert json.loads(report) == {"ok": True, "unclosed": []}
    assert fetcher.get(url).status == 200
    assert server.hits()["/sti.pem"] == 3


def test_parse_certificate_body(pki: tuple[LabPKI, Path]) -> None:
    """What an x5u response may hold: a PEM chain of at most 10 certificates (kept, normalized)
    or one DER certificate, on P-256 keys; everything else is refused with the URL and why."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from secsipid._pki import make_self_signed
    from secsipid._source import parse_certificate_body

    url = "https://cert.example.org/sti.pem"
    lab = pki[0]
    credential, body = parse_certificate_body(b"\\n" + lab.chain_pem + b"\\n\\n", url)
    assert credential.certificate == lab.leaf and body == lab.chain_pem
    ten = lab.chain_pem + pem(lab.root) * 8
    assert parse_certificate_body(ten, url)[0].certificate == lab.leaf

    p384 = make_self_signed(ec.generate_private_key(ec.SECP384R1()))  # type: ignore[arg-type]
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rsa_cert = (
        x509.CertificateBuilder().subject_name(lab.leaf.subject).issuer_name(lab.leaf.subject)
        .public_key(rsa_key.public_key()).serial_number(1)
        .not_valid_before(lab.leaf.not_valid_before_utc)
        .not_valid_after(lab.leaf.not_valid_after_utc).sign(rsa_key, hashes.SHA256())
    )  # fmt: skip
    public = lab.leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    for data, reason, message in (
        (ten + pem(lab.root), "cert-invalid", f"{url}: more than 10 certs"),
        (pem(p384), "unsupported-key", f"{url}: EC key on curve secp384r1: ES256 needs P-256"),
        (pem(rsa_cert), "unsupported-key",
         f"{url}: RSAPublicKey is not an EC key: ES256 needs EC P-256"),
        (b"<html>", "cert-invalid", f"{url}: not a valid PEM or DER certificate or public key"),
        (public, "cert-invalid", f"{url}: a public key, not a certificate"),
    ):  # fmt: skip
        with pytest.raises(VerificationError) as exc:
            parse_certificate_body(data, url)
        assert (exc.value.reason, exc.value.message) == (reason, message)


def test_async_source_caches_like_sync(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """acredential_for: the answer is cached under its URL (a second call does not fetch), a
    failure too (negative cache), an expired entry serves on error with stale_if_error, each
    URL gets its own certificate even when fetched at the same time, and a response that may
    not be cached (max-age=0) is fetched again on the next call."""
    other = make_lab_pki(root=(pki[0].root_key, pki[0].root), spc="5678")
    server = serve({
        "/a.pem": chain_route(pki, delay=0.2),
        "/b.pem": {"body": other.chain_pem.decode(), "delay": 0.2},
        "/zero.pem": chain_route(pki, headers={"Cache-Control": "max-age=0"}),
        "/down.pem": {"status": 503},
    })  # fmt: skip
    source = lab_source(tls, pki[1], cache=CacheConfig(stale_if_error=600))

    async def main() -> None:
        a, b = await asyncio.gather(
            source.acredential_for(server.url("/a.pem")),
            source.acredential_for(server.url("/b.pem")),
        )
        assert (a.spc, b.spc) == ("1234", "5678")
        assert (await source.acredential_for(server.url("/a.pem"))).spc == "1234"
        for _ in range(2):
            await source.acredential_for(server.url("/zero.pem"))
            with pytest.raises(VerificationError):
                await source.acredential_for(server.url("/down.pem"))

    asyncio.run(main())
    hits = server.hits()
    assert (hits["/a.pem"], hits["/b.pem"], hits["/zero.pem"], hits["/down.pem"]) == (1, 1, 2, 1)
    server.stop()  # expired entries now serve on error
    assert asyncio.run(source.acredential_for(server.url("/zero.pem"))).spc == "1234"


def test_async_fetches_from_several_event_loops(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """Two threads, each with its own event loop, asking for the same uncached URL at the same
    time: each waits on a fetch of its own loop, both get the certificate."""
    server = serve({"/sti.pem": chain_route(pki, delay=0.3)})
    source = lab_source(tls, pki[1])
    results: list[str] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        credential = asyncio.run(source.acredential_for(server.url("/sti.pem")))
        results.append(str(credential.spc))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["1234", "1234"]
    assert 1 <= server.hits()["/sti.pem"] <= 2


def test_single_flight_threads_share_failures(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """Threads waiting on another thread's fetch get its failure (each its own exception
    object, same reason and message), or its bug (an exception that is not ours) as it is."""
    server = serve({"/gone.pem": {"status": 503, "delay": 0.3}})
    url = server.url("/gone.pem")
    source = lab_source(tls, pki[1])

    def in_threads(call: Callable[[], object], n: int = 4) -> list[BaseException]:
        errors: list[BaseException] = []
        barrier = threading.Barrier(n)

        def run() -> None:
            barrier.wait()
            try:
                call()
            except BaseException as exc:  # noqa: BLE001 - collected for the assertions
                errors.append(exc)

        threads = [threading.Thread(target=run) for _ in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return errors

    errors = in_threads(lambda: source.credential_for(url))
    assert [type(e) for e in errors] == [VerificationError] * 4
    assert {(e.reason, e.message) for e in errors} == {  # type: ignore[attr-defined]
        (Reason.CERT_FETCH_STATUS, f"{url}: HTTP 503")
    }
    assert len({id(e) for e in errors}) == 4
    assert server.hits()["/gone.pem"] == 1

    class BuggyFetcher:
        policy = source.fetch_policy

        def get(self, url: str, *, allow_http: bool | None = None) -> object:
            time.sleep(0.3)
            raise RuntimeError("a bug in the fetcher")

    buggy = CertificateSource(fetch=source.fetch_policy, trust=None, memory=MemoryCache(),
                              fetcher=BuggyFetcher())  # type: ignore[arg-type]  # fmt: skip
    errors = in_threads(lambda: buggy.credential_for(url))
    assert [str(e) for e in errors] == ["a bug in the fetcher"] * 4


def test_uncacheable_response_not_written_to_the_directory_cache(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], tmp_path: Path
) -> None:
    """A response that is stale at once (max-age=0) is not written to cache_dir either."""
    server = serve({"/zero.pem": chain_route(pki, headers={"Cache-Control": "max-age=0"})})
    cache_dir = tmp_path / "cache"
    assert lab_source(tls, pki[1], cache_dir=cache_dir).credential_for(server.url("/zero.pem"))
    assert list(cache_dir.iterdir()) == []


def test_source_configuration_shortcuts() -> None:
    """The shortcut arguments override the matching fetch policy fields; a given fetcher brings
    its own policy; refused configurations say what to give."""
    from secsipid import Fetcher

    source = CertificateSource(trust=None, timeout=2.5, allow_http=True, allow_private=True,
                               memory=MemoryCache())  # fmt: skip
    assert source.fetch_policy == FetchPolicy(timeout=2.5, allow_http=True, allow_private=True)
    fetcher = Fetcher(FetchPolicy(allow_private=True, timeout=3))
    source = CertificateSource(trust=None, fetcher=fetcher, memory=MemoryCache())
    assert source.fetch_policy == fetcher.policy and source.fetcher is fetcher
    with pytest.raises(TypeError) as exc:
        CertificateSource()
    assert str(exc.value) == (
        "CertificateSource needs trust=TrustPolicy(ca_file=...) (the STI-PA trust list), "
        "or trust=None to accept any certificate without chain validation"
    )
    with pytest.raises(ValueError, match=r"^CacheConfig\.default_ttl must not be negative$"):
        CacheConfig(default_ttl=-1)


def test_source_cache_shortcuts(tmp_path: Path) -> None:
    """cache_dir, cache_expire and cache_naming (the secsipidx/Kamailio names) override the
    CacheConfig given; an empty cache_dir means none; redis= is the process's RedisCache for
    that URL."""
    from secsipid._shared import redis_cache
    from secsipid._source import LibsecsipidDirectoryCache

    base = CacheConfig(negative_ttl=5, cache_dir="/nonexistent")
    source = CertificateSource(
        trust=None, cache=base, cache_dir=tmp_path, cache_expire=120,
        cache_naming="libsecsipid", redis="redis://127.0.0.1:1/0", memory=MemoryCache(),
    )  # fmt: skip
    assert source.cache_config == CacheConfig(
        negative_ttl=5, cache_dir=str(tmp_path), default_ttl=120.0, cache_naming="libsecsipid"
    )
    assert isinstance(source.disk, LibsecsipidDirectoryCache) and source.disk.expire == 120.0
    assert source.shared is redis_cache("redis://127.0.0.1:1/0")
    plain = CertificateSource(trust=None, cache=base, cache_dir="", memory=MemoryCache())
    assert plain.cache_config.cache_dir is None and plain.disk is None and plain.shared is None


def test_directory_cache_entry_kept_in_memory_and_stale_on_error(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], tmp_path: Path
) -> None:
    """A certificate read from cache_dir is kept in memory (the file may go); an expired entry
    keeps serving, with stale_if_error, while the failure of its refetch is remembered."""
    server = serve({
        "/sti.pem": chain_route(pki, headers={"Cache-Control": "max-age=600"}),
        "/zero.pem": chain_route(pki, headers={"Cache-Control": "max-age=0"}),
    })  # fmt: skip
    cache_dir = tmp_path / "cache"
    url = server.url("/sti.pem")
    lab_source(tls, pki[1], cache_dir=cache_dir).credential_for(url)
    reader = lab_source(tls, pki[1], cache_dir=cache_dir)
    assert reader.credential_for(url).certificate == pki[0].leaf  # from the file
    for path in cache_dir.iterdir():
        path.unlink()
    assert reader.credential_for(url).certificate == pki[0].leaf  # from memory now
    assert server.hits()["/sti.pem"] == 1

    tolerant = lab_source(tls, pki[1], cache=CacheConfig(stale_if_error=600))
    zero = server.url("/zero.pem")
    tolerant.credential_for(zero)
    server.stop()
    for _ in range(3):  # the first refetch fails and is remembered; the entry still serves
        assert tolerant.credential_for(zero).certificate == pki[0].leaf
