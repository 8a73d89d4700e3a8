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

import contextlib
import contextvars
import ipaddress
import os
import socket
import ssl
import time
import urllib.parse
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpcore

from ._errors import VerificationError
from ._reasons import Reason

__all__ = ["FetchPolicy", "FetchResult", "Fetcher"]

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
    """

    timeout: float = DEFAULT_TIMEOUT
    max_size: int = DEFAULT_MAX_SIZE
    allow_http: bool = False
    allow_private: bool = False
    allow_networks: tuple[str, ...] = ()
    allowed_ports: frozenset[int] | None = None
    tls_ca_file: str | None = None
    user_agent: str = "secsipid"
    _networks: tuple[IPNetwork, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (0 < self.timeout <= 300):
            raise ValueError(f"FetchPolicy.timeout must be in (0, 300] seconds, not {self.timeout}")
        if self.max_size <= 0:
            raise ValueError("FetchPolicy.max_size must be positive")
        try:
            nets = tuple(ipaddress.ip_network(n, strict=False) for n in self.allow_networks)
        except ValueError as exc:
            raise ValueError(f"FetchPolicy.allow_networks: {exc}") from exc
        object.__setattr__(self, "_networks", nets)

    @property
    def cache_key(self) -> tuple[object, ...]:
        """What makes two policies accept different URLs: cached fetches are not shared
        between policies that differ here."""
        return (self.allow_http, self.allow_private, self.allow_networks, self.allowed_ports)

    def replace(self, **changes: Any) -> FetchPolicy:
        values = {
            name: getattr(self, name)
            for name in (
                "timeout", "max_size", "allow_http", "allow_private", "allow_networks",
                "allowed_ports", "tls_ca_file", "user_agent",
            )
        }  # fmt: skip
        values.update(changes)
        return FetchPolicy(**values)

    # -- checks ------------------------------------------------------------------------------

    def check_url(self, url: str, *, allow_http: bool | None = None) -> tuple[str, str, int]:
        """Parse and check a URL; return (scheme, netloc, port).  Raises ``cert-url-refused``."""
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
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise _refused(url, "userinfo in the URL is not allowed")
        if parts.fragment or url.endswith("#"):
            raise _refused(url, "a fragment in the URL is not allowed")
        host = parts.hostname
        if not host:
            raise _refused(url, "no host")
        if any(c.isspace() for c in url) or any(ord(c) < 0x20 or ord(c) == 0x7F for c in url):
            raise _refused(url, "whitespace or control characters in the URL")
        port = port or (443 if scheme == "https" else 80)
        if self.allowed_ports is not None and port not in self.allowed_ports:
            raise _refused(url, f"port {port} is not allowed")
        return scheme, parts.netloc, port

    def check_address(self, address: IPAddress, url: str) -> None:
        """Refuse special-purpose destinations (RFC 6890) unless allowed."""
        if self.allow_private:
            return
        if any(address in net for net in self._networks):
            return
        check = address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            check = address.ipv4_mapped
        if not check.is_global or check.is_multicast:
            raise _refused(url, f"destination {address} is in a special-purpose address range")


def _refused(url: str, why: str) -> VerificationError:
    return VerificationError(Reason.CERT_URL_REFUSED, f"{_short(url)}: {why}")


def _short(url: str) -> str:
    return url if len(url) <= 120 else url[:117] + "..."


@dataclass(frozen=True, slots=True)
class FetchResult:
    url: str
    status: int
    headers: Mapping[str, str]
    body: bytes
    fetched_at: float


# -- the network backends ------------------------------------------------------------------------

# The deadline of the fetch running in this thread/task; the sync stream wrapper consults it
# for every read and write, so a server trickling one byte a second cannot stretch a fetch.
_DEADLINE: contextvars.ContextVar[float] = contextvars.ContextVar("secsipid_fetch_deadline")
_resolver: tuple[int, ThreadPoolExecutor] | None = None


def _resolver_pool() -> ThreadPoolExecutor:
    """DNS lookups run here so that they obey the deadline (getaddrinfo has no timeout).
    One pool per process: Kamailio forks its workers, and threads do not survive a fork."""
    global _resolver
    pid = os.getpid()
    if _resolver is None or _resolver[0] != pid:
        _resolver = (pid, ThreadPoolExecutor(max_workers=4, thread_name_prefix="secsipid-dns"))
    return _resolver[1]


def _remaining() -> float:
    deadline = _DEADLINE.get(None)
    if deadline is None:
        return DEFAULT_TIMEOUT
    left = deadline - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("total fetch deadline exceeded")
    return left


def _checked_addresses(
    infos: Iterable[tuple[Any, ...]], policy: FetchPolicy, url: str
) -> list[str]:
    addresses: list[str] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        policy.check_address(addr, url)  # every address must pass, not just the first
        addresses.append(str(addr))
    if not addresses:
        raise httpcore.ConnectError("name resolution returned no address")
    return addresses


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
    """Resolve once, check every address, connect to a checked address."""

    def __init__(self, policy: FetchPolicy, url_of: contextvars.ContextVar[str]) -> None:
        self._policy = policy
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
        future = _resolver_pool().submit(socket.getaddrinfo, host, port, 0, socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=_remaining())
        except FutureTimeout as exc:
            raise httpcore.ConnectTimeout(f"DNS resolution of {host} timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in _checked_addresses(infos, self._policy, url):
            try:
                stream = super().connect_tcp(
                    address, port, _remaining(), local_address, socket_options
                )
                return _DeadlineStream(stream)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}")


class _PinnedAsyncBackend(httpcore.AnyIOBackend):
    def __init__(self, policy: FetchPolicy, url_of: contextvars.ContextVar[str]) -> None:
        self._policy = policy
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
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        last: Exception | None = None
        for address in _checked_addresses(infos, self._policy, url):
            try:
                return await super().connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"cannot connect to {host}")


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
        self._url: contextvars.ContextVar[str] = contextvars.ContextVar("secsipid_fetch_url")
        self._ssl = _ssl_context(self.policy)
        self._pid = os.getpid()
        self._pool = self._new_pool()
        self._inherited: list[httpcore.ConnectionPool] = []
        self.requests = 0

    def _new_pool(self) -> httpcore.ConnectionPool:
        return httpcore.ConnectionPool(
            ssl_context=self._ssl,
            max_connections=32,
            keepalive_expiry=30.0,
            network_backend=_PinnedSyncBackend(self.policy, self._url),
        )

    def _sync_pool(self) -> httpcore.ConnectionPool:
        """The keep-alive pool of this process.  After a fork the parent's connections are
        left alone (kept referenced, never used or closed here: they are the parent's)."""
        if self._pid != os.getpid():
            self._inherited.append(self._pool)
            self._pid, self._pool = os.getpid(), self._new_pool()
        return self._pool

    def _request_args(
        self, url: str, netloc: str
    ) -> tuple[list[tuple[bytes, bytes]], dict[str, Any]]:
        headers = [
            (b"Host", netloc.encode("idna") if not netloc.isascii() else netloc.encode()),
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
            if name.lower() == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    continue
                if length > self.policy.max_size:
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
    def _request(self, url: str) -> Iterator[None]:
        """Count the request, expose the URL to the backend, and translate transport errors
        into reason codes (a TimeoutError here is anyio's total deadline)."""
        url_token = self._url.set(url)
        self.requests += 1
        try:
            yield
        except (TimeoutError, httpcore.TimeoutException) as exc:
            raise VerificationError(
                Reason.CERT_FETCH_TIMEOUT,
                f"{_short(url)}: no complete answer within {self.policy.timeout:g} s",
            ) from exc
        except (httpcore.NetworkError, httpcore.ProtocolError, ssl.SSLError, OSError) as exc:
            raise VerificationError(
                Reason.CERT_FETCH_FAILED, f"{_short(url)}: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            self._url.reset(url_token)

    def _add_chunk(self, url: str, chunks: list[bytes], chunk: bytes) -> None:
        chunks.append(chunk)
        if sum(map(len, chunks)) > self.policy.max_size:
            raise self._too_large(url)

    def get(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        """Fetch ``url`` (blocking, within the policy's total deadline)."""
        _, netloc, _ = self.policy.check_url(url, allow_http=allow_http)
        headers, extensions = self._request_args(url, netloc)
        deadline_token = _DEADLINE.set(time.monotonic() + self.policy.timeout)
        try:
            with (
                self._request(url),
                self._sync_pool().stream(
                    "GET", url, headers=headers, extensions=extensions
                ) as resp,
            ):
                self._check_response(url, resp.status, resp.headers)
                chunks: list[bytes] = []
                for chunk in resp.iter_stream():
                    self._add_chunk(url, chunks, chunk)
                return self._result(url, resp.status, resp.headers, b"".join(chunks))
        finally:
            _DEADLINE.reset(deadline_token)

    async def aget(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        """Fetch ``url`` without blocking the event loop (same policy and deadline)."""
        _, netloc, _ = self.policy.check_url(url, allow_http=allow_http)
        headers, extensions = self._request_args(url, netloc)
        # A pool per fetch: async connections belong to one event loop, and a source may serve
        # several loops (or outlive one).  Fetches are rare: the cache answers.
        with self._request(url), anyio.fail_after(self.policy.timeout):
            async with (
                httpcore.AsyncConnectionPool(
                    ssl_context=self._ssl,
                    network_backend=_PinnedAsyncBackend(self.policy, self._url),
                ) as pool,
                pool.stream("GET", url, headers=headers, extensions=extensions) as resp,
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
