"""The resolver of certificate fetches (``_resolve.py``): IP literals, the hosts file, then DNS
through dnspython with the caller's deadline on every lookup, sync and async; the name servers
of the policy, or the system's resolv.conf when there are none.

A real DNS server on loopback (``dnsserver.py``, its own process, stopped by PID).  The
wall-clock assertions are deadlines (a bounded wait is the property under test), with margins
far below what the unbounded behaviour takes (the 5 s default lifetime of a dnspython query).
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dns.resolver
import pytest

from fetchkit import DNSServer
from secsipid import FetchPolicy, Reason, VerificationError, _resolve
from secsipid._fetch import Fetcher
from secsipid._resolve import (
    ResolveError,
    Resolver,
    ResolveTimeoutError,
    ip_literal,
    parse_nameserver,
)

ZONE: dict[str, dict[str, Any]] = {
    "both.test": {"A": ["192.0.2.1"], "AAAA": ["2001:db8::1"]},
    "four.test": {"A": ["192.0.2.1", "192.0.2.2", "192.0.2.5"]},
    "v6.test": {"AAAA": ["2001:db8::6"]},
    "late6.test": {"A": ["192.0.2.3"], "AAAA": ["2001:db8::3"], "AAAA_delay": 0.2},
    "hang6.test": {"A": ["192.0.2.4"], "AAAA_mode": "hang"},
    "empty.test": {},  # the name exists, with no address of either family
    "sf.test": {"mode": "servfail"},
    "sf4.test": {"A_mode": "servfail"},  # and AAAA answered, empty
    "sf4v6.test": {"A_mode": "servfail", "AAAA": ["2001:db8::4"]},
    "*.hang.test": {"mode": "hang"},
    "certs.search.secsipid.test": {"A": ["192.0.2.9"]},
}


@pytest.fixture(scope="module")
def dns_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DNSServer]:
    server = DNSServer(tmp_path_factory.mktemp("dns"), ZONE)
    yield server
    server.stop()


def lookup(resolver: Resolver, host: str, seconds: float, mode: str) -> list[str]:
    deadline = time.monotonic() + seconds
    if mode == "sync":
        found = resolver.resolve(host, deadline)
    else:
        found = asyncio.run(resolver.aresolve(host, deadline))
    return [str(address) for address in found]


def failure(resolver: Resolver, host: str, seconds: float, mode: str) -> ResolveError:
    with pytest.raises(ResolveError) as exc:
        lookup(resolver, host, seconds, mode)
    return exc.value


MODES = pytest.mark.parametrize("mode", ["sync", "async"])


# -- name server addresses -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("192.0.2.53", ("192.0.2.53", 53)),
        ("192.0.2.53:5353", ("192.0.2.53", 5353)),
        ("192.0.2.53:1", ("192.0.2.53", 1)),
        ("2001:db8::53", ("2001:db8::53", 53)),
        ("[2001:db8::53]", ("2001:db8::53", 53)),
        ("[2001:db8::53]:5353", ("2001:db8::53", 5353)),
        ("[::1]:65535", ("::1", 65535)),
    ],
)
def test_name_server_forms(text: str, expected: tuple[str, int]) -> None:
    assert parse_nameserver(text) == expected
    assert FetchPolicy(nameservers=(text,)).nameservers == (text,)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("[2001:db8::53", "expected [IPv6]:port"),
        ("[::1]]:53", "expected [IPv6]:port"),
        ("[::1]53", "expected [IPv6]:port"),
        ("192.0.2.53:0", "port out of range"),
        ("192.0.2.53:65536", "port out of range"),
        ("[::1]:65536", "port out of range"),
    ],
)
def test_bad_name_servers_refused_with_the_reason(text: str, why: str) -> None:
    """A name server the policy cannot use is a configuration error that says why."""
    message = f"FetchPolicy.nameservers: name server {text!r}: {why}"
    with pytest.raises(ValueError, match=re.escape(message)):
        FetchPolicy(nameservers=(text,))


@pytest.mark.parametrize("text", ["ns.example.test", "192.0.2.530", "192.0.2.53:dns"])
def test_name_servers_are_addresses(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape("FetchPolicy.nameservers: ")):
        FetchPolicy(nameservers=(text,))


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8::7", "2001:db8::7"),
        ("[2001:db8::7]", "2001:db8::7"),
        ("[::1]", "::1"),
        ("certs.example.test", None),
        ("[::1", None),
        ("::1]", None),
    ],
)
def test_ip_literals(host: str, expected: str | None) -> None:
    literal = ip_literal(host)
    assert (None if literal is None else str(literal)) == expected


@MODES
def test_an_ip_literal_is_its_own_answer(dns_server: DNSServer, mode: str) -> None:
    """No lookup for an address (the name server would say NXDOMAIN)."""
    resolver = Resolver((dns_server.nameserver,), hosts_file=None)
    assert lookup(resolver, "192.0.2.7", 2.0, mode) == ["192.0.2.7"]
    assert lookup(resolver, "2001:db8::7", 2.0, mode) == ["2001:db8::7"]


# -- the hosts file --------------------------------------------------------------------------------


HOSTS = (
    b"# the hosts file of a lab\n"
    b"127.0.0.1\tlocalhost\n"
    b"192.0.2.10   certs.lab.test  Alias.Lab.Test.   # comment.lab.test\n"
    b"2001:db8::10 certs.lab.test\n"
    b"192.0.2.10   certs.lab.test\n"  # listed again: the address once
    b"fe80::10%eth0  link.lab.test\n"  # a zone index is dropped
    b"fe80::11%eth0%x  zones.lab.test\n"  # all of it, from the first "%"
    b"not-an-address  bogus.lab.test\n"
    b"lonely.lab.test\n"
    b"192.0.2.11 after.lab.test # one # two.lab.test\n"
    b"192.0.2.12 caf\xe9.lab.test utf.lab.test\n"  # not UTF-8: that name unusable, not the file
)


class Clock:
    """``time`` for ``_resolve`` with a monotonic clock the test moves."""

    def __init__(self, now: float) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now


def names(hosts: Any, *queries: str) -> list[list[str]]:
    return [[str(a) for a in hosts.lookup(q)] for q in queries]


def test_hosts_file_entries(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_bytes(HOSTS)
    hosts = _resolve._HostsFile(str(path))
    assert names(hosts, "certs.lab.test", "CERTS.Lab.Test.", "alias.lab.test") == [
        ["192.0.2.10", "2001:db8::10"],
        ["192.0.2.10", "2001:db8::10"],
        ["192.0.2.10"],
    ]
    assert names(hosts, "link.lab.test", "zones.lab.test", "after.lab.test", "utf.lab.test") == [
        ["fe80::10"],
        ["fe80::11"],
        ["192.0.2.11"],
        ["192.0.2.12"],
    ]
    # Comments, lines without a name and lines without an address give nothing.
    for name in (
        "comment.lab.test",
        "one",
        "two.lab.test",
        "#",
        "bogus.lab.test",
        "lonely.lab.test",
    ):
        assert hosts.lookup(name) == [], name


def test_hosts_file_is_read_up_to_one_mebibyte(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_bytes(
        b"192.0.2.10 early.lab.test\n#" + b"x" * (1 << 20) + b"\n192.0.2.11 late.lab.test\n"
    )
    hosts = _resolve._HostsFile(str(path))
    assert names(hosts, "early.lab.test", "late.lab.test") == [["192.0.2.10"], []]


def test_hosts_file_reread_when_it_changes_checked_once_a_second(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock(0.25)  # a process started right after boot: the file is read at once
    monkeypatch.setattr(_resolve, "time", clock)
    path = tmp_path / "hosts"
    hosts = _resolve._HostsFile(str(path))
    assert hosts.lookup("certs.lab.test") == []  # no file yet
    path.write_bytes(HOSTS)
    clock.now = 1.25
    assert names(hosts, "certs.lab.test") == [["192.0.2.10", "2001:db8::10"]]
    path.write_bytes(b"192.0.2.20 certs.lab.test\n")
    clock.now = 2.0
    assert names(hosts, "certs.lab.test") == [["192.0.2.10", "2001:db8::10"]]  # not yet
    clock.now = 2.25
    assert names(hosts, "certs.lab.test") == [["192.0.2.20"]]
    clock.now = 3.5
    assert names(hosts, "certs.lab.test") == [["192.0.2.20"]]  # unchanged, kept
    path.unlink()
    clock.now = 5.0
    assert hosts.lookup("certs.lab.test") == []


def test_hosts_file_that_cannot_be_read_is_empty(tmp_path: Path) -> None:
    assert _resolve._HostsFile(str(tmp_path / "missing")).lookup("localhost") == []
    assert _resolve._HostsFile(str(tmp_path)).lookup("localhost") == []  # a directory


@MODES
def test_hosts_file_answers_before_dns(dns_server: DNSServer, tmp_path: Path, mode: str) -> None:
    """``hosts: files dns``: a name in the file is never asked of DNS (here a server that
    never answers for it); without a hosts file it is."""
    path = tmp_path / "hosts"
    path.write_bytes(b"192.0.2.30 certs.hang.test\n")
    with_file = Resolver((dns_server.nameserver,), hosts_file=str(path))
    assert lookup(with_file, "certs.hang.test", 2.0, mode) == ["192.0.2.30"]
    assert lookup(with_file, "both.test", 2.0, mode) == ["192.0.2.1", "2001:db8::1"]
    without = Resolver((dns_server.nameserver,), hosts_file=None)
    assert isinstance(failure(without, "certs.hang.test", 0.5, mode), ResolveTimeoutError)


# -- DNS -------------------------------------------------------------------------------------------


@MODES
def test_every_address_ipv4_first(dns_server: DNSServer, mode: str) -> None:
    resolver = Resolver((dns_server.nameserver,), hosts_file=None)
    assert lookup(resolver, "both.test", 5.0, mode) == ["192.0.2.1", "2001:db8::1"]
    assert lookup(resolver, "v6.test", 5.0, mode) == ["2001:db8::6"]
    assert lookup(resolver, "sf4v6.test", 5.0, mode) == ["2001:db8::4"]  # A failed, AAAA asked
    assert sorted(lookup(resolver, "four.test", 5.0, mode)) == [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.5",
    ]
    for _ in range(2):  # the dnspython resolver is made once and kept
        assert lookup(resolver, "both.test.", 5.0, mode)[0] == "192.0.2.1"


@MODES
def test_second_family_gets_the_resolution_delay(dns_server: DNSServer, mode: str) -> None:
    """Once one family has answered, the other gets SECOND_FAMILY_WAIT (0.5 s, RFC 8305 §3):
    an answer within it is used, a query that is never answered is given up after it."""
    resolver = Resolver((dns_server.nameserver,), hosts_file=None)
    assert lookup(resolver, "late6.test", 5.0, mode) == ["192.0.2.3", "2001:db8::3"]
    start = time.monotonic()
    assert lookup(resolver, "hang6.test", 5.0, mode) == ["192.0.2.4"]
    assert time.monotonic() - start < 2.5  # not the 5 s deadline


@MODES
def test_failures_name_the_host_and_the_cause(dns_server: DNSServer, mode: str) -> None:
    """What an operator reads in the cert-fetch-failed message (after ``DNS: ``)."""
    resolver = Resolver((dns_server.nameserver,), hosts_file=None)
    expected = {
        "nowhere.test": "nowhere.test: no such name (NXDOMAIN)",
        "empty.test": "empty.test: the name has no IPv4 or IPv6 address",
        "sf.test": "sf.test: every name server failed",
        "sf4.test": "sf4.test: every name server failed",
        "a..b.test": "a..b.test: EmptyLabel: A DNS label is empty.",
    }
    for host, message in expected.items():
        error = failure(resolver, host, 3.0, mode)
        assert type(error) is ResolveError, (host, error)
        assert str(error) == message


@MODES
def test_a_lookup_ends_at_its_deadline(dns_server: DNSServer, mode: str) -> None:
    resolver = Resolver((dns_server.nameserver,), hosts_file=None)
    start = time.monotonic()
    error = failure(resolver, "x.hang.test", 0.5, mode)
    assert time.monotonic() - start < 2.0
    assert isinstance(error, ResolveTimeoutError)
    assert str(error) == "x.hang.test: no DNS answer within the deadline"
    error = failure(resolver, "both.test", -1.0, mode)  # the deadline has passed: no query
    assert isinstance(error, ResolveTimeoutError)
    assert str(error) == "both.test: no DNS answer within the deadline"


def test_a_deadline_that_passes_while_the_queries_are_sent(
    dns_server: DNSServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Async: the queries go out at once; if the deadline has passed by the time the answers
    are awaited (a stalled event loop), the lookup is a timeout, whatever arrives later."""
    readings = iter([100.0])  # when the queries are sent; every later reading: 110

    class Stepping:
        def monotonic(self) -> float:
            return next(readings, 110.0)

    monkeypatch.setattr(_resolve, "time", Stepping())
    resolver = Resolver((dns_server.nameserver,), hosts_file=None)
    with pytest.raises(ResolveTimeoutError) as exc:
        asyncio.run(resolver.aresolve("both.test", 105.0))
    assert str(exc.value) == "both.test: no DNS answer within the deadline"


@MODES
def test_an_answer_just_before_the_deadline_counts(dns_server: DNSServer, mode: str) -> None:
    resolver = Resolver((dns_server.nameserver,), hosts_file=None)
    assert lookup(resolver, "both.test", 0.9, mode) == ["192.0.2.1", "2001:db8::1"]


# -- the system's configuration --------------------------------------------------------------------


@pytest.fixture
def resolv_conf(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dns_server: DNSServer
) -> Callable[[str | None], None]:
    """Stand in for /etc/resolv.conf: ``text`` (pointing at the test server, whose port
    resolv.conf cannot say) or, with None, no file at all."""

    def use(text: str | None) -> None:
        path = tmp_path / "resolv.conf"
        if text is not None:
            path.write_text(text)
        read = dns.resolver.BaseResolver.read_resolv_conf

        def read_ours(self: dns.resolver.BaseResolver, f: Any) -> None:
            self.port = dns_server.port
            read(self, str(path))

        monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", read_ours)

    return use


@MODES
def test_without_name_servers_the_system_configuration_is_used(
    resolv_conf: Callable[[str | None], None], dns_server: DNSServer, mode: str
) -> None:
    """resolv.conf's name servers and search list, as glibc would use them."""
    resolv_conf("search search.secsipid.test\nnameserver 127.0.0.1\n")
    system = Resolver(hosts_file=None)
    assert lookup(system, "certs", 3.0, mode) == ["192.0.2.9"]
    # Name servers of the policy replace resolv.conf, search list included.
    configured = Resolver((dns_server.nameserver,), hosts_file=None)
    assert str(failure(configured, "certs", 3.0, mode)) == "certs: no such name (NXDOMAIN)"


@MODES
def test_no_dns_configuration_is_a_fetch_failure(
    resolv_conf: Callable[[str | None], None], mode: str
) -> None:
    """No resolv.conf (a bare container): cert-fetch-failed that says so, not a traceback."""
    resolv_conf(None)
    fetcher = Fetcher(FetchPolicy(timeout=2.0, hosts_file=None))
    url = "https://certs.example.test/sti.pem"
    with pytest.raises(VerificationError) as exc:
        if mode == "sync":
            fetcher.get(url)
        else:
            asyncio.run(fetcher.aget(url))
    assert exc.value.reason is Reason.CERT_FETCH_FAILED
    assert "DNS: no DNS configuration: cannot open " in exc.value.message


def test_addresses_are_ip_addresses(dns_server: DNSServer) -> None:
    found = Resolver((dns_server.nameserver,), hosts_file=None).resolve(
        "both.test", time.monotonic() + 5
    )
    assert found == [ipaddress.ip_address(a) for a in ("192.0.2.1", "2001:db8::1")]


def test_a_dns_timeout_is_a_fetch_timeout_that_names_dns(dns_server: DNSServer) -> None:
    """cert-fetch-timeout; the exception it is raised from (what a logged traceback shows)
    says that DNS did not answer, and for which name.  (Async, the fetch's own deadline
    cancels the lookup at the same instant: the cause is then the cancellation.)"""
    policy = FetchPolicy(timeout=0.5, nameservers=(dns_server.nameserver,), hosts_file=None)
    with pytest.raises(VerificationError) as exc:
        Fetcher(policy).get("https://certs.hang.test/sti.pem")
    assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
    assert str(exc.value.__cause__) == "DNS: certs.hang.test: no DNS answer within the deadline"
