"""Name resolution for certificate fetches, with a deadline on every lookup.

The x5u host name comes from the caller, who may also run its name servers: a lookup that never
answers is an attack, not an accident.  ``socket.getaddrinfo`` cannot be given a timeout or be
cancelled, so a design that runs it in threads and abandons the slow ones leaves each hostile
name holding a thread (16 such names once starved every other fetch of the process for 20 s).

Here a lookup runs in the caller (the blocking call in the calling thread, the async one as a
coroutine on its event loop) and ends at the caller's deadline, answered or not: nothing
outlives the request that asked, so a slow name delays only the fetches that need it and no
bound on lookups in flight is needed beyond the callers' own concurrency.

Order, as glibc's default ``hosts: files dns``:

1. an IP literal is its own answer;
2. the hosts file (``/etc/hosts``; re-read when it changes, checked at most once a second);
3. DNS through dnspython (the maintained stub resolver with per-query lifetimes and an
   asyncio flavour), with the system's ``/etc/resolv.conf`` or the configured name servers:
   A first, then AAAA.  When one family has answered, the other gets at most
   ``SECOND_FAMILY_WAIT`` seconds (RFC 8305 §3 calls this the resolution delay), so a server
   that drops AAAA queries cannot eat the budget of the connection.

Every address returned is checked by the fetcher before any connection is made.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import threading
import time
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

__all__ = ["ResolveError", "ResolveTimeoutError", "Resolver", "parse_nameserver"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_HOSTS_FILE = "/etc/hosts"
SECOND_FAMILY_WAIT = 0.5
_HOSTS_RECHECK = 1.0
_MAX_HOSTS_FILE = 1 << 20


class ResolveError(Exception):
    """The name has no usable address (no such name, no answer, no configuration)."""


class ResolveTimeoutError(ResolveError):
    """The deadline passed before the name servers answered."""


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"192.0.2.53"``, ``"192.0.2.53:5353"``, ``"2001:db8::53"`` or ``"[2001:db8::53]:5353"``
    to (address, port).  Raises ``ValueError``."""
    host, port = text, 53
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"name server {text!r}: expected [IPv6]:port")
        if rest:
            port = int(rest[1:])
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text)
    ipaddress.ip_address(host)  # raises ValueError
    if not 0 < port < 65536:
        raise ValueError(f"name server {text!r}: port out of range")
    return host, port


def ip_literal(host: str) -> IPAddress | None:
    """The address when ``host`` is an IP literal (brackets allowed, zone ids refused)."""
    text = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


class _HostsFile:
    """The hosts file, parsed once per version (mtime, size, inode)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int, int] | None = None
        # Not 0.0: time.monotonic() counts from boot, so a process started within a second
        # of it (a micro-VM, a container at boot) would skip the file on its first lookups.
        self._checked: float | None = None
        self._names: dict[str, list[IPAddress]] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str) -> list[IPAddress]:
        now = time.monotonic()
        if self._checked is None or now - self._checked >= _HOSTS_RECHECK:
            with self._lock:
                self._refresh(now)
        return self._names.get(name.lower().rstrip("."), [])

    def _refresh(self, now: float) -> None:
        self._checked = now
        try:
            st = os.stat(self.path)
        except OSError:
            self._stamp, self._names = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        names: dict[str, list[IPAddress]] = {}
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(_MAX_HOSTS_FILE)
        except OSError:
            data = b""
        for raw in data.decode("utf-8", "replace").splitlines():
            fields = raw.split("#", 1)[0].split()
            if len(fields) < 2:
                continue
            try:
                address = ipaddress.ip_address(fields[0].split("%", 1)[0])
            except ValueError:
                continue
            for alias in fields[1:]:
                found = names.setdefault(alias.lower().rstrip("."), [])
                if address not in found:
                    found.append(address)
        self._stamp, self._names = stamp, names


_FAMILIES = (dns.rdatatype.A, dns.rdatatype.AAAA)


class Resolver:
    """Resolves host names within a deadline (``time.monotonic()`` seconds), sync or async.

    ``nameservers``: ``("192.0.2.53", "[2001:db8::53]:5353", ...)`` instead of the system's
    resolv.conf; ``hosts_file``: consulted first (None: skip it).
    """

    def __init__(
        self,
        nameservers: Sequence[str] = (),
        hosts_file: str | None = DEFAULT_HOSTS_FILE,
    ) -> None:
        self._nameservers = tuple(parse_nameserver(n) for n in nameservers)
        self._hosts = _HostsFile(hosts_file) if hosts_file else None
        self._sync: dns.resolver.Resolver | None = None
        self._async: dns.asyncresolver.Resolver | None = None
        self._lock = threading.Lock()

    def _configure(self, resolver: dns.resolver.BaseResolver) -> None:
        if self._nameservers:
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port) for address, port in self._nameservers
            ]
        # Retry a server that answered SERVFAIL (rare); the lifetime bounds everything anyway.
        resolver.retry_servfail = False

    def _resolver(self) -> dns.resolver.Resolver:
        if self._sync is None:
            with self._lock:
                if self._sync is None:
                    resolver = dns.resolver.Resolver(configure=not self._nameservers)
                    self._configure(resolver)
                    self._sync = resolver
        return self._sync

    def _aresolver(self) -> dns.asyncresolver.Resolver:
        if self._async is None:
            with self._lock:
                if self._async is None:
                    resolver = dns.asyncresolver.Resolver(configure=not self._nameservers)
                    self._configure(resolver)
                    self._async = resolver
        return self._async

    def _local(self, host: str) -> list[IPAddress] | None:
        literal = ip_literal(host)
        if literal is not None:
            return [literal]
        if self._hosts is not None:
            found = self._hosts.lookup(host)
            if found:
                return list(found)
        return None

    # -- sync --------------------------------------------------------------------------------

    def resolve(self, host: str, deadline: float) -> list[IPAddress]:
        """Every address of ``host`` (IPv4 first), answered before ``deadline``."""
        local = self._local(host)
        if local is not None:
            return local
        try:
            resolver = self._resolver()
        except dns.exception.DNSException as exc:
            raise ResolveError(f"no DNS configuration: {exc}") from exc
        found: list[IPAddress] = []
        errors: list[ResolveError] = []
        for rdtype in _FAMILIES:
            left = deadline - time.monotonic()
            if found:
                left = min(left, SECOND_FAMILY_WAIT)
            if left <= 0:
                errors.append(ResolveTimeoutError(f"{host}: no DNS answer within the deadline"))
                break
            try:
                answer = resolver.resolve(
                    host, rdtype, lifetime=left, search=True, raise_on_no_answer=False
                )
            except dns.resolver.NXDOMAIN as exc:
                raise _translate(host, exc) from exc  # no such name: no other family either
            except dns.exception.DNSException as exc:
                errors.append(_translate(host, exc))
                continue
            found += _addresses(answer)
        return _result(host, found, errors)

    # -- async -------------------------------------------------------------------------------

    async def aresolve(self, host: str, deadline: float) -> list[IPAddress]:
        """:meth:`resolve` on the running event loop: A and AAAA are asked at once."""
        local = self._local(host)
        if local is not None:
            return local
        try:
            resolver = self._aresolver()
        except dns.exception.DNSException as exc:
            raise ResolveError(f"no DNS configuration: {exc}") from exc
        left = deadline - time.monotonic()
        if left <= 0:
            raise ResolveTimeoutError(f"{host}: no DNS answer within the deadline")
        tasks = {
            asyncio.ensure_future(
                resolver.resolve(host, rdtype, lifetime=left, search=True, raise_on_no_answer=False)
            ): rdtype
            for rdtype in _FAMILIES
        }
        results: dict[dns.rdatatype.RdataType, list[IPAddress]] = {}
        errors: list[ResolveError] = []
        pending = set(tasks)
        try:
            while pending:
                wait = deadline - time.monotonic()
                if any(results.values()):
                    wait = min(wait, SECOND_FAMILY_WAIT)
                if wait <= 0:
                    break
                done, pending = await asyncio.wait(
                    pending, timeout=wait, return_when=asyncio.FIRST_COMPLETED
                )
                if not done:
                    break
                for task in done:
                    failure = task.exception()
                    if failure is None:
                        results[tasks[task]] = _addresses(task.result())
                    elif isinstance(failure, dns.resolver.NXDOMAIN):
                        raise _translate(host, failure) from failure
                    elif isinstance(failure, dns.exception.DNSException):
                        errors.append(_translate(host, failure))
                    else:
                        raise failure
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if pending:
            errors.append(ResolveTimeoutError(f"{host}: no DNS answer within the deadline"))
        found = [a for rdtype in _FAMILIES for a in results.get(rdtype, [])]
        return _result(host, found, errors)


def _addresses(answer: dns.resolver.Answer) -> list[IPAddress]:
    if answer.rrset is None:
        return []
    return [ipaddress.ip_address(rdata.address) for rdata in answer.rrset]


def _translate(host: str, exc: dns.exception.DNSException) -> ResolveError:
    if isinstance(exc, dns.exception.Timeout):
        return ResolveTimeoutError(f"{host}: no DNS answer within the deadline")
    if isinstance(exc, dns.resolver.NXDOMAIN):
        return ResolveError(f"{host}: no such name (NXDOMAIN)")
    if isinstance(exc, dns.resolver.NoNameservers):
        return ResolveError(f"{host}: every name server failed")
    return ResolveError(f"{host}: {type(exc).__name__}: {exc}")


def _result(host: str, found: list[IPAddress], errors: list[ResolveError]) -> list[IPAddress]:
    if found:
        return found
    for error in errors:
        if isinstance(error, ResolveTimeoutError):
            raise error
    if errors:
        raise errors[0]
    raise ResolveError(f"{host}: the name has no IPv4 or IPv6 address")
