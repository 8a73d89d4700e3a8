"""Fetching certificates (and CRLs) over HTTP(S), safely.

The x5u/info URL comes from the remote party, so everything about the fetch is hostile until
proven otherwise.  Policy (``FetchPolicy``), safe by default:

* https only; http only when allowed (labs, parity with secsipidx).  CRLs are signed objects
  and ATIS-1000080 publishes them over http, so CRL fetches may allow http separately;
* no userinfo and no fragment in the URL (ATIS-1000074 §5.3.1); optional port allow-list;
* no redirects (ATIS-1000074: "The STI-VS shall not follow HTTP redirections");
* the host is resolved once, every address is checked against the special-purpose ranges of
  RFC 6890 (loopback, private, link-local, multicast, documentation, ...; IPv4-mapped IPv6
  included), and the connection goes to the checked address, never to a second lookup (no
  DNS-rebinding window).  TLS still verifies the certificate for the URL's host name;
* one total deadline (``timeout``, default 5 s like Kamailio's ``timeout``) covering DNS,
  connect, TLS and the whole body, not a per-read timeout that a trickling server can stretch;
* the body is capped (default 64 KiB) before and while reading.

HTTP itself is httpcore (the transport under httpx), with a network backend of ours that does
the resolution, the address check and the deadline.  Sync and async share the policy code.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import anyio
import anyio.abc
import httpcore
import idna

# httpcore's wrapper of an anyio stream (what its AnyIOBackend returns), for connections we
# open ourselves; not re-exported by httpcore, hence the module path (httpcore is pinned <2).
from httpcore._backends.anyio import AnyIOStream

from ._errors import VerificationError
from ._reasons import Reason
from ._resolve import (
    DEFAULT_HOSTS_FILE,
    ResolveError,
    Resolver,
    ResolveTimeoutError,
    parse_nameserver,
)

__all__ = ["FetchPolicy", "FetchResult", "Fetcher", "request_budget", "request_deadline"]

DEFAULT_TIMEOUT = 5.0
# libstirshaken and siphon-ai cap at 64 KiB; a leaf + intermediate PEM chain is about 2-3 KiB.
DEFAULT_MAX_SIZE = 64 * 1024

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True, kw_only=True)
class FetchPolicy:
    """How certificates may be fetched.  Immutable.

    * ``timeout``: total seconds for one fetch (DNS + connect + TLS + body).
    * ``max_size``: largest body accepted, in bytes.
    * ``allow_http``: accept ``http://`` URLs (labs; secsipidx parity).  Off by default.
    * ``allow_private``: accept destinations in loopback/private/special-purpose ranges (labs).
    * ``allow_networks``: specific ranges to accept anyway (e.g. an internal repository).
    * ``allowed_ports``: if set, the only ports accepted (ATIS-1000074 suggests 443 and 8443).
    * ``tls_ca_file``: CA bundle to verify HTTPS servers with (default: the system's).
    * ``nameservers``: DNS servers to ask (``"192.0.2.53"``, ``"[2001:db8::53]:5353"``)
      instead of the system's resolv.conf; ``hosts_file`` is consulted first (None: skip).
    * ``max_in_flight``: fetches one :class:`Fetcher` runs at once (threads and tasks
      together); one more is refused at once (``cert-fetch-failed``, not remembered).  Each
      fetch holds up to three sockets (two DNS queries, one connection) until its deadline,
      so this bounds what a flood of hostile URLs can hold; cached certificates are not
      affected.
    """

    timeout: float = DEFAULT_TIMEOUT
    max_size: int = DEFAULT_MAX_SIZE
    allow_http: bool = False
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    allowed_ports: frozenset[int] | None = None
    tls_ca_file: str | None = None
    user_agent: str = "secsipid"
    nameservers: tuple[str, ...] = ()
    hosts_file: str | None = DEFAULT_HOSTS_FILE
    max_in_flight: int = 256
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (0 < self.timeout <= 300):
            raise ValueError(f"FetchPolicy.timeout must be in (0, 300] seconds, not {self.timeout}")
        if self.max_size <= 0:
            raise ValueError("FetchPolicy.max_size must be positive")
        if self.max_in_flight <= 0:
            raise ValueError("FetchPolicy.max_in_flight must be positive")
        try:
            nets = tuple(ipaddress.ip_network(n, strict=False) for n in self.allow_networks)
        except ValueError as exc:
            raise ValueError(f"FetchPolicy.allow_networks: {exc}") from exc
        object.__setattr__(self, "_networks", nets)
        if isinstance(self.nameservers, str):
            object.__setattr__(self, "nameservers", (self.nameservers,))
        for server in self.nameservers:
            try:
                parse_nameserver(server)
            except ValueError as exc:
                raise ValueError(f"FetchPolicy.nameservers: {exc}") from exc

    @property
    def cache_key(self) -> tuple[object, ...]:
        """Everything that changes what a fetch accepts or where it goes: cached fetches are
        not shared between policies that differ here (only the timeout and the User-Agent
        are left out)."""
        return (
            self.allow_http, self.allow_private, self.allow_networks,
            None if self.allowed_ports is None else tuple(sorted(self.allowed_ports)),
            self.max_size, self.tls_ca_file, self.nameservers, self.hosts_file,
        )  # fmt: skip

    def replace(self, **changes: Any) -> FetchPolicy:
        values = {
            name: getattr(self, name)
            for name in (
                "timeout", "max_size", "allow_http", "allow_private", "allow_networks",
                "allowed_ports", "tls_ca_file", "user_agent", "nameservers", "hosts_file",
                "max_in_flight",
            )
        }  # fmt: skip
        values.update(changes)
        return FetchPolicy(**values)

    # -- checks ------------------------------------------------------------------------------

    def check_url(self, url: str, *, allow_http: bool | None = None) -> Target:
        """Parse and check a URL; return the :class:`Target` to fetch (ASCII: the host
        IDNA-encoded, the path and query percent-encoded as UTF-8, RFC 3987 §3.1).
        Raises ``cert-url-refused``."""
        if any(c.isspace() for c in url) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise _refused(url, "whitespace or control characters in the URL")
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise _refused(url, f"not a valid URL ({exc})") from exc
        scheme = parts.scheme.lower()
        http_ok = self.allow_http if allow_http is None else allow_http
        if scheme != "https" and not (scheme == "http" and http_ok):
            allowed = "https or http" if http_ok else "https"
            raise _refused(url, f"scheme {scheme or '(none)'!r} is not allowed (only {allowed})")
        if "@" in parts.netloc:  # what urlsplit's username and password are set from
            raise _refused(url, "userinfo in the URL is not allowed")
        if parts.fragment or url.endswith("#"):
            raise _refused(url, "a fragment in the URL is not allowed")
        host = _ascii_host(url, parts.hostname or "")
        port = port or (443 if scheme == "https" else 80)
        if self.allowed_ports is not None and port not in self.allowed_ports:
            raise _refused(url, f"port {port} is not allowed")
        try:
            path, query = _ascii_part(parts.path), _ascii_part(parts.query)
        except UnicodeEncodeError as exc:  # e.g. argv bytes that were not UTF-8 (surrogateescape)
            raise _refused(url, "the URL is not valid Unicode (a lone surrogate)") from exc
        name = f"[{host}]" if ":" in host else host
        netloc = name if parts.port is None else f"{name}:{port}"
        target = f"{scheme}://{netloc}{path or '/'}"
        if query or url.endswith("?"):
            target += "?" + query
        return Target(target, host, port, netloc)

    def check_address(self, address: IPAddress, url: str) -> None:
        """Refuse special-purpose destinations (RFC 6890) unless allowed, including IPv6
        addresses that embed an IPv4 address (checked as that address) and the deprecated or
        local-use IPv6 ranges that lead to one."""
        if self.allow_private:
            return
        if any(address in net for net in self._networks):
            return
        why = special_purpose(address)
        if why is not None:
            raise _refused(url, f"destination {address} is {why}")


class Target(NamedTuple):
    """A checked URL: what to ask for, and where."""

    url: str  # ASCII
    host: str  # ASCII: IDNA A-labels, or an IP address without brackets
    port: int
    netloc: str  # for the Host header


_HOST_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*")
_PCHARS = "/:@!$&'()*+,;=-._~%?"


def _ascii_host(url: str, host: str) -> str:
    """The host in ASCII, or ``cert-url-refused``: IP literals as they are, names
    IDNA-encoded (UTS #46, IDNA 2008) and then held to DNS syntax (labels of letters, digits,
    hyphens and underscores, at most 63 characters each, 253 in all)."""
    if not host:
        raise _refused(url, "no host")
    if ":" in host or host.replace(".", "").isdigit():
        try:
            return str(ipaddress.ip_address(host.split("%", 1)[0] if ":" in host else host))
        except ValueError as exc:
            raise _refused(url, f"host {_short(host)!r} is not a valid IP address") from exc
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise _refused(url, f"host is not a valid internationalized name ({exc})") from exc
    name = host.lower().rstrip(".")
    labels = name.split(".")
    if len(name) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise _refused(url, f"host {_short(host)!r} is not a valid DNS name")
    if _NUMERIC_LABEL.fullmatch(labels[-1]):
        # "0x7f.1", "127.1", "2130706433": IPv4 in the shorthand forms inet_aton and browsers
        # accept (WHATWG URL "ends in a number"); no DNS name ends in a numeric label.
        raise _refused(url, f"host {_short(host)!r} is not a dotted-quad IPv4 address")
    return name


def _ascii_part(text: str) -> str:
    """Path or query with non-ASCII characters percent-encoded as UTF-8 (existing escapes
    and the RFC 3986 sub-delimiters kept as they are)."""
    if text.isascii():
        return text
    return urllib.parse.quote(text, safe=_PCHARS, encoding="utf-8", errors="strict")


# IPv6 ranges that carry an IPv4 address in their low 32 bits (RFC 6052 well-known NAT64
# prefix, RFC 2765/6145 IPv4-translated), or that are deprecated or local-use and have no
# business in an x5u: RFC 8215 local-use NAT64, RFC 4291 §2.5.5.1 IPv4-compatible, RFC 3879
# site-local.  6to4 (RFC 3056) embeds its IPv4 address in bits 16-47 (``sixtofour``).
_EMBEDS_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("::ffff:0:0:0/96"),
)
_REFUSED_V6 = (
    (ipaddress.IPv6Network("64:ff9b:1::/48"), "a local-use NAT64 address (RFC 8215)"),
    (ipaddress.IPv6Network("::/96"), "an IPv4-compatible IPv6 address (deprecated)"),
    (ipaddress.IPv6Network("fec0::/10"), "a site-local IPv6 address (deprecated)"),
)


def special_purpose(address: IPAddress) -> str | None:
    """Why ``address`` is not a public unicast destination, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in net for net in _EMBEDS_IPV4):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            why = special_purpose(embedded)
            return None if why is None else f"{why}: it embeds {embedded}"
        for net, why in _REFUSED_V6:
            if address in net:
                return why
    if address.is_multicast:
        return "a multicast address"
    if not address.is_global:
        return "in a special-purpose address range"
    return None


def _refused(url: str, why: str) -> VerificationError:
    return VerificationError(Reason.CERT_URL_REFUSED, f"{_short(url)}: {why}")


def _short(url: str) -> str:
    """``url`` for a message: one line of printable text that any log can take (control
    characters and lone surrogates escaped as repr() would), at most 120 characters."""
    if not url.isprintable():
        url = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in url)
    return url if len(url) <= 120 else url[:117] + "..."


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    fetched_at: float


# -- deadlines -----------------------------------------------------------------------------------

# The deadline of the fetch running in this thread/task (time.monotonic()); the backends and
# the sync stream wrapper consult it for the lookup, the connect and every read and write, so a
# server trickling one byte a second cannot stretch a fetch.
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("secsipid_fetch_deadline")
# The deadline of the whole request being verified (see request_budget): every fetch started
# on its behalf (certificates, CRLs; in this thread, its tasks, or threads given its context)
# ends by then, whatever its own timeout.
_REQUEST_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "secsipid_request_deadline", default=None
)


def request_budget(seconds: float) -> contextlib.AbstractContextManager[float]:
    """Run the block with ``seconds`` as the budget of every fetch it starts, in all (within
    an outer budget, the earlier deadline wins).  Yields the deadline (``time.monotonic()``)."""
    return request_deadline(time.monotonic() + seconds)


@contextlib.contextmanager
def request_deadline(deadline: float) -> Iterator[float]:
    """:func:`request_budget` with an absolute deadline (``time.monotonic()`` seconds)."""
    outer = _REQUEST_DEADLINE.get()
    if outer is not None:
        deadline = min(deadline, outer)
    token = _REQUEST_DEADLINE.set(deadline)
    try:
        yield deadline
    finally:
        _REQUEST_DEADLINE.reset(token)


def request_remaining(default: float) -> float:
    """Seconds left in the current request's budget (``default`` outside of one)."""
    deadline = _REQUEST_DEADLINE.get()
    return default if deadline is None else deadline - time.monotonic()


class TransientFetchError(VerificationError):
    """A fetch that did not happen, or was cut short, for reasons of ours rather than the
    server's: never remembered in a negative cache."""


class BudgetExhaustedError(TransientFetchError):
    """``cert-fetch-timeout`` because the request's budget ran out, not because the server
    was slow within its own timeout."""


class FetchesBusyError(TransientFetchError):
    """``cert-fetch-failed`` because this process already has ``max_in_flight`` fetches in
    progress (each holds sockets until its deadline)."""


def _remaining() -> float:
    deadline = _DEADLINE.get(None)
    if deadline is None:
        return DEFAULT_TIMEOUT
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("total fetch deadline exceeded")
    return left


# -- the network backends ------------------------------------------------------------------------


def _checked_addresses(addresses: Iterable[IPAddress], policy: FetchPolicy, url: str) -> list[str]:
    """Every address, checked before any is connected to (the resolver never returns none:
    it raises ``ResolveError`` instead)."""
    checked: list[str] = []
    for address in addresses:
        policy.check_address(address, url)  # every address must pass, not just the first
        checked.append(str(address))
    return checked


def _resolve_error(exc: ResolveError) -> httpcore.ConnectError | httpcore.ConnectTimeout:
    if isinstance(exc, ResolveTimeoutError):
        return httpcore.ConnectTimeout(f"DNS: {exc}")
    return httpcore.ConnectError(f"DNS: {exc}")


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining())

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining())

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _remaining()))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _PinnedSyncBackend(httpcore.SyncBackend):
    """Resolve once (within the deadline), check every address, connect to a checked one."""

    def __init__(
        self, policy: FetchPolicy, resolver: Resolver, url_of: contextvars.ContextVar[str]
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._url = url_of

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        url = self._url.get("")
        try:
            found = self._resolver.resolve(host, time.monotonic() + _remaining())
        except ResolveError as exc:
            raise _resolve_error(exc) from exc
        last: Exception | None = None
        for address in _checked_addresses(found, self._policy, url):
            try:
                stream = super().connect_tcp(
                    address, port, _remaining(), local_address, socket_options
                )
                return _DeadlineStream(stream)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}")


class _PinnedAsyncBackend(httpcore.AnyIOBackend):
    def __init__(
        self, policy: FetchPolicy, resolver: Resolver, url_of: contextvars.ContextVar[str]
    ) -> None:
        self._policy = policy
        self._resolver = resolver
        self._url = url_of

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        url = self._url.get("")
        try:
            found = await self._resolver.aresolve(host, time.monotonic() + _remaining())
        except ResolveError as exc:
            raise _resolve_error(exc) from exc
        last: Exception | None = None
        for address in _checked_addresses(found, self._policy, url):
            try:
                with anyio.fail_after(_remaining()):
                    return _ClosingStream(await _aconnect(address, port))
            except TimeoutError as exc:
                raise httpcore.ConnectTimeout(f"connect to {address} timed out") from exc
            except OSError as exc:
                last = httpcore.ConnectError(f"cannot connect to {address}: {exc}")
        raise last or httpcore.ConnectError(f"cannot connect to {host}")


class _ClosingStream(AnyIOStream):
    """httpcore's stream, closed when a TLS handshake is cancelled: httpcore closes it on an
    ``Exception`` only, and the fetch's deadline (``anyio.fail_after`` in ``aget``) cancels,
    which left the socket open for the garbage collector."""

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            return await super().start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise


async def _aconnect(address: str, port: int) -> anyio.abc.SocketStream:
    """A TCP connection to a checked address.  Not ``anyio.connect_tcp``: a fetch cancelled
    while that connects (another value of the request was valid) can lose the connected
    socket inside its Happy Eyeballs task group; here the socket is ours until handed over,
    and closed on any exit."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().sock_connect(sock, (address, port))
        return await anyio.abc.SocketStream.from_socket(sock)
    except BaseException:
        sock.close()
        raise


# -- the fetcher ---------------------------------------------------------------------------------


def _ssl_context(policy: FetchPolicy) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=policy.tls_ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


class Fetcher:
    """HTTP GET under a :class:`FetchPolicy`, sync and async, with connection reuse.

    Raises :class:`VerificationError` with ``cert-url-refused``, ``cert-fetch-failed``,
    ``cert-fetch-timeout``, ``cert-fetch-redirect``, ``cert-fetch-status`` or
    ``cert-too-large``.  Counts requests in ``requests`` (for tests and benchmarks).
    """

    def __init__(self, policy: FetchPolicy | None = None) -> None:
        self.policy = policy or FetchPolicy()
        self.resolver = Resolver(self.policy.nameservers, self.policy.hosts_file)
        self._url: contextvars.ContextVar[str] = contextvars.ContextVar("secsipid_fetch_url")
        self._ssl = _ssl_context(self.policy)
        self._pid = os.getpid()
        self._pool = self._new_pool()
        self._inherited: list[httpcore.ConnectionPool] = []
        self.requests = 0
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()

    def _new_pool(self) -> httpcore.ConnectionPool:
        return httpcore.ConnectionPool(
            ssl_context=self._ssl,
            # Never fewer connections than fetches allowed in flight: a fetch stuck on a
            # hostile server holds its connection until its deadline, and the others must not
            # queue behind it for a free one (max_in_flight refuses at once instead).
            max_connections=self.policy.max_in_flight,
            max_keepalive_connections=32,
            keepalive_expiry=30.0,
            network_backend=_PinnedSyncBackend(self.policy, self.resolver, self._url),
        )

    def _sync_pool(self) -> httpcore.ConnectionPool:
        """The keep-alive pool of this process.  After a fork the parent's connections are
        left alone (kept referenced, never used or closed here: they are the parent's)."""
        if self._pid != os.getpid():
            self._inherited.append(self._pool)
            self._pid, self._pool = os.getpid(), self._new_pool()
        return self._pool

    def _request_args(self, target: Target) -> tuple[list[tuple[bytes, bytes]], dict[str, Any]]:
        headers = [
            (b"Host", target.netloc.encode("ascii")),
            (b"User-Agent", self.policy.user_agent.encode()),
            (b"Accept", b"application/pem-certificate-chain, application/x-x509-ca-cert, */*"),
        ]
        t = self.policy.timeout
        return headers, {"timeout": {"connect": t, "read": t, "write": t, "pool": t}}

    def _check_response(self, url: str, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        if 300 <= status < 400:
            raise VerificationError(
                Reason.CERT_FETCH_REDIRECT, f"{_short(url)}: HTTP {status} redirect not followed"
            )
        if status != 200:
            raise VerificationError(Reason.CERT_FETCH_STATUS, f"{_short(url)}: HTTP {status}")
        for name, value in headers:
            # h11 has already refused a Content-Length that is not a number, or two that differ.
            if name.lower() == b"content-length" and int(value) > self.policy.max_size:
                raise self._too_large(url)

    def _too_large(self, url: str) -> VerificationError:
        return VerificationError(
            Reason.CERT_TOO_LARGE,
            f"{_short(url)}: body over the {self.policy.max_size} byte limit",
        )

    def _result(self, url: str, status: int, headers: list[tuple[bytes, bytes]], body: bytes
                ) -> FetchResult:  # fmt: skip
        merged: dict[str, str] = {}
        for name, value in headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            merged[key] = f"{merged[key]}, {text}" if key in merged else text
        return FetchResult(url, status, merged, body, time.time())

    @contextlib.contextmanager
    def _request(self, url: str) -> Iterator[float]:
        """One fetch: its deadline (the policy's timeout, or the request's budget when that
        ends first: yielded, and set for the backends), the URL for the backends, the count,
        and transport errors translated into reason codes (a TimeoutError here is anyio's)."""
        now = time.monotonic()
        deadline = now + self.policy.timeout
        budget = _REQUEST_DEADLINE.get()
        cut = budget is not None and budget < deadline
        if cut:
            assert budget is not None
            deadline = budget
            if deadline <= now:
                raise BudgetExhaustedError(
                    Reason.CERT_FETCH_TIMEOUT,
                    f"{_short(url)}: not fetched, the request's time budget is spent",
                )
        with self._in_flight_lock:
            if self._in_flight >= self.policy.max_in_flight:
                raise FetchesBusyError(
                    Reason.CERT_FETCH_FAILED,
                    f"{_short(url)}: not fetched, {self._in_flight} fetches already in progress",
                )
            self._in_flight += 1
            self.requests += 1
        url_token = self._url.set(url)
        deadline_token = _DEADLINE.set(deadline)
        try:
            yield deadline
        except (TimeoutError, httpcore.TimeoutException) as exc:
            if cut:
                raise BudgetExhaustedError(
                    Reason.CERT_FETCH_TIMEOUT,
                    f"{_short(url)}: no complete answer within the request's time budget",
                ) from exc
            raise VerificationError(
                Reason.CERT_FETCH_TIMEOUT,
                f"{_short(url)}: no complete answer within {self.policy.timeout:g} s",
            ) from exc
        except (
            httpcore.NetworkError,
            httpcore.ProtocolError,
            httpcore.UnsupportedProtocol,
            ssl.SSLError,
            OSError,
            ValueError,  # UnicodeError included: a hostile server's bytes, never our bug
        ) as exc:
            raise VerificationError(
                Reason.CERT_FETCH_FAILED, f"{_short(url)}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            _DEADLINE.reset(deadline_token)
            self._url.reset(url_token)
            with self._in_flight_lock:
                self._in_flight -= 1

    def _add_chunk(self, url: str, chunks: list[bytes], chunk: bytes) -> None:
        chunks.append(chunk)
        if sum(map(len, chunks)) > self.policy.max_size:
            raise self._too_large(url)

    def get(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        """Fetch ``url`` (blocking, within the policy's total deadline and the request's
        budget, see :func:`request_budget`)."""
        target = self.policy.check_url(url, allow_http=allow_http)
        headers, extensions = self._request_args(target)
        with (
            self._request(url),
            self._sync_pool().stream(
                "GET", target.url, headers=headers, extensions=extensions
            ) as resp,
        ):
            self._check_response(url, resp.status, resp.headers)
            chunks: list[bytes] = []
            for chunk in resp.iter_stream():
                self._add_chunk(url, chunks, chunk)
            return self._result(url, resp.status, resp.headers, b"".join(chunks))

    async def aget(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        """Fetch ``url`` without blocking the event loop (same policy and deadlines)."""
        target = self.policy.check_url(url, allow_http=allow_http)
        headers, extensions = self._request_args(target)
        # A pool per fetch: async connections belong to one event loop, and a source may serve
        # several loops (or outlive one).  Fetches are rare: the cache answers.
        with self._request(url) as deadline, anyio.fail_after(deadline - time.monotonic()):
            async with (
                httpcore.AsyncConnectionPool(
                    ssl_context=self._ssl,
                    network_backend=_PinnedAsyncBackend(self.policy, self.resolver, self._url),
                ) as pool,
                pool.stream("GET", target.url, headers=headers, extensions=extensions) as resp,
            ):
                self._check_response(url, resp.status, resp.headers)
                chunks: list[bytes] = []
                async for chunk in resp.aiter_stream():
                    self._add_chunk(url, chunks, chunk)
                return self._result(url, resp.status, resp.headers, b"".join(chunks))

    def close(self) -> None:
        """Close the pooled keep-alive connections."""
        self._pool.close()

    def __del__(self) -> None:
        # Sources usually live as long as the process; one dropped earlier should not leave
        # its keep-alive sockets to the garbage collector.
        with contextlib.suppress(Exception):  # interpreter shutdown, half-built object
            if self._pid == os.getpid():
                self._pool.close()
