"""The shared certificate cache of a cluster: Redis (or Valkey), behind ``CertificateSource``.

Several Kamailio nodes or ``secsipid serve`` instances share what each would otherwise fetch
and cache alone: a certificate fetched by one is a hit for all, and a cold ``info`` URL wanted
everywhere at once is fetched once (issue 11).  :class:`RedisCache` holds the Redis side:

* **entries**: the normalized PEM chain a fetch produced, with its expiry (Cache-Control /
  Expires, never past the leaf's notAfter, as in memory) and Redis TTL to match; failed
  fetches as negative entries (reason and message only) for ``negative_ttl``.  Keys are
  hashed from the fetch policy's cache key and the URL; the value names both again, and a
  value read back is checked against them, size-capped and (by ``CertificateSource``) parsed
  and validated like a fresh download: Redis is a cache, never a trust anchor.  With a
  ``secret``, values carry an HMAC-SHA256 and one that does not match is refused.
* **the fetch lock** (``SET key token NX PX lease``): one caller in the cluster fetches; the
  others poll for its result within their own request's budget and fetch themselves only
  when the lock is gone without a result (the holder died: its lease, renewed while the
  fetch runs, lapses within ``lock_lease`` seconds; or its budget ran out).
* **faults**: every Redis call has a short timeout (``timeout``, 0.25 s by default).  A fault
  (down, slow, restarted, an answer that is not Redis's) makes that call fall back to what
  the process would do without Redis; after ``breaker_failures`` faults in a row a circuit
  breaker skips Redis for ``breaker_cooldown`` seconds, then lets one call probe it.  An
  outage is logged once when the breaker opens and once when Redis is back.

The ``redis`` client (sync and asyncio) comes with ``pip install 'secsipid[redis]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, hmac

from ._reasons import Reason

__all__ = [
    "RedisCache",
    "SharedEntry",
    "SharedLookup",
    "SharedNegative",
    "SharedUnavailableError",
    "redis_cache",
]

log = logging.getLogger("secsipid.redis")

_MAGIC = b"secsipid-shared-v1 "
# Failures a negative entry may carry: those of a fetch and of reading what it returned.
NEGATIVE_REASONS = frozenset(
    {
        Reason.CERT_FETCH_FAILED,
        Reason.CERT_FETCH_TIMEOUT,
        Reason.CERT_FETCH_REDIRECT,
        Reason.CERT_FETCH_STATUS,
        Reason.CERT_TOO_LARGE,
        Reason.CERT_INVALID,
        Reason.UNSUPPORTED_KEY,
    }
)
_MAX_MESSAGE = 300

# Compare-and-delete and compare-and-extend: only the holder's token releases or renews a lock.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end
return 0
"""

BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN = "closed", "open", "half-open"


class SharedUnavailableError(Exception):
    """Redis cannot be used for this call (breaker open, or the call failed): do what the
    process would do without it.  Internal: never reaches a caller of the package."""


@dataclass(frozen=True, slots=True)
class SharedEntry:
    """A fetched chain as read back from Redis (still to be parsed and validated)."""

    body: bytes
    expires: float  # wall clock; the reader also caps it at the leaf's notAfter
    token: str  # the fetch lock's token of the fetch that stored it


@dataclass(frozen=True, slots=True)
class SharedNegative:
    """A failed fetch as read back from Redis."""

    reason: Reason
    message: str
    lib_code: int | None
    until: float
    token: str


@dataclass(frozen=True, slots=True)
class SharedLookup:
    """One round trip's answer: the entry, the negative entry, the fetch lock's token, and
    whether that lock can be waited for (a lock no caller of ours could have taken -- no
    expiry, a longer lease, another type of key -- is not: it would stall every caller)."""

    entry: SharedEntry | None
    negative: SharedNegative | None
    lock: str | None
    lock_usable: bool = True


@dataclass(frozen=True, slots=True)
class _Keys:
    cert: str
    neg: str
    lock: str


class _Breaker:
    """Closed (use Redis), open (skip it until ``reopen``), half-open (one probe at a time)."""

    def __init__(self, failures: int, cooldown: float) -> None:
        self.failures = failures
        self.cooldown = cooldown
        self.state = BREAKER_CLOSED
        self.opens = 0
        self._in_row = 0
        self._reopen = 0.0
        self._probing = False
        self._lock = threading.Lock()

    def allow(self) -> bool:
        if self.state == BREAKER_CLOSED:
            return True
        with self._lock:
            if self.state == BREAKER_OPEN and time.monotonic() >= self._reopen:
                self.state = BREAKER_HALF_OPEN
            if self.state == BREAKER_HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def success(self) -> bool:
        """Record a good call; True when that ends an outage (a fault since the last good
        call)."""
        if self.state == BREAKER_CLOSED and not self._in_row:
            return False
        with self._lock:
            ended = self._in_row > 0 or self.state != BREAKER_CLOSED
            self._in_row = 0
            self._probing = False
            self.state = BREAKER_CLOSED
            return ended

    def failure(self) -> tuple[bool, bool]:
        """Record a fault: (it starts an outage, it opens the breaker)."""
        with self._lock:
            started = self._in_row == 0 and self.state == BREAKER_CLOSED
            self._in_row += 1
            self._probing = False
            if self.state == BREAKER_HALF_OPEN or self._in_row >= self.failures:
                opening = self.state == BREAKER_CLOSED
                self.state = BREAKER_OPEN
                self._reopen = time.monotonic() + self.cooldown
                if opening:
                    self.opens += 1
                return started, opening
            return started, False


class _Counters:
    """Counters a service exports (Prometheus counters, a stats page): see
    :meth:`RedisCache.stats`."""

    NAMES = (
        "hits",  # a usable entry was read (a certificate found by another process or node)
        "negative_hits",  # a remembered failure was read
        "misses",  # nothing usable: this caller takes the fetch lock or waits
        "fetches",  # fetches made while holding the fetch lock
        "lock_waits",  # callers that waited for another holder's fetch
        "takeovers",  # locks taken after waiting (the holder died or gave up)
        "stores",  # entries and negative entries written
        "refused",  # values read back and refused (malformed, another URL, MAC, body)
        "errors",  # Redis calls that failed (down, slow, garbage)
        "skipped",  # calls that did not ask Redis because the breaker was open
        "breaker_opens",  # outages: the breaker went from closed to open
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(self.NAMES, 0)
        self.hook: Callable[[str, int], None] | None = None

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.values[name] += n
        hook = self.hook
        if hook is not None:
            hook(name, n)


class RedisCache:
    """A certificate cache in Redis/Valkey shared by the processes and nodes of a cluster.

    Give it to :class:`CertificateSource` (``shared=RedisCache("redis://host:6379/0")`` or
    ``redis="redis://..."``).  ``url``: ``redis://``, ``rediss://`` (TLS) or ``unix://``, with
    the database, user and password as the ``redis`` client reads them.

    * ``prefix``: of every key (several deployments in one database keep apart).
    * ``timeout``: seconds for connecting and for each Redis call (short: Redis is a cache).
    * ``lock_lease``: seconds a fetch lock lives unless its holder renews it (every quarter
      lease while the fetch runs); a dead holder is taken over within about that long.
    * ``breaker_failures``/``breaker_cooldown``: faults in a row that open the breaker, and
      how long it then stays open before one call probes Redis again.
    * ``secret``: bytes or text shared by the nodes; values are authenticated with it
      (HMAC-SHA256), so a process that can write to Redis but lacks the secret cannot plant
      a certificate.  Without it, anything that can write to the database can replace
      entries (they are still validated like a download: the chain against the trust
      store, the signature against the PASSporT).
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "secsipid:",
        timeout: float = 0.25,
        lock_lease: float = 2.0,
        poll_interval: float = 0.005,
        max_poll_interval: float = 0.05,
        breaker_failures: int = 3,
        breaker_cooldown: float = 5.0,
        secret: bytes | str | None = None,
        max_value: int = 256 * 1024,
    ) -> None:
        try:
            import redis
            import redis.asyncio
            import redis.asyncio.retry
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:  # pragma: no cover - the extra is installed for the tests
            raise ImportError(
                "the Redis shared cache needs the redis client: pip install 'secsipid[redis]'"
            ) from exc
        if not (0 < timeout <= 30):
            raise ValueError(f"RedisCache.timeout must be in (0, 30] seconds, not {timeout}")
        if not (0.05 <= lock_lease <= 300):
            raise ValueError("RedisCache.lock_lease must be in [0.05, 300] seconds")
        if not (0 < poll_interval <= max_poll_interval <= 5):
            raise ValueError("RedisCache: 0 < poll_interval <= max_poll_interval <= 5 s")
        if breaker_failures < 1 or breaker_cooldown < 0:
            raise ValueError("RedisCache: breaker_failures >= 1 and breaker_cooldown >= 0")
        self.url = url
        self.prefix = prefix
        self.timeout = float(timeout)
        self.lock_lease = float(lock_lease)
        self.poll_interval = float(poll_interval)
        self.max_poll_interval = float(max_poll_interval)
        self.max_value = max_value
        self._secret = secret.encode() if isinstance(secret, str) else secret
        # One retry, immediately, and only for a connection error: a pooled connection that
        # a Redis restart closed fails once and is replaced; a timeout is not retried.
        self._options: dict[str, Any] = {
            "socket_timeout": self.timeout,
            "socket_connect_timeout": self.timeout,
            "retry": Retry(NoBackoff(), 1, (redis.ConnectionError,)),
            "health_check_interval": 0,
        }
        # The asyncio client takes its own Retry class (redis-py 8.2 warns about a sync one,
        # and converts it).
        self._aoptions: dict[str, Any] = {
            **self._options,
            "retry": redis.asyncio.retry.Retry(NoBackoff(), 1, (redis.ConnectionError,)),
        }
        try:
            self._client: Any = redis.Redis.from_url(url, **self._options)
        except ValueError as exc:
            raise ValueError(f"RedisCache: {exc}") from exc
        self._aclients: dict[asyncio.AbstractEventLoop, Any] = {}
        self._aclients_lock = threading.Lock()
        self._aredis = redis.asyncio
        self._breaker = _Breaker(breaker_failures, breaker_cooldown)
        self._counters = _Counters()
        self._keeper = _LockKeeper(self)

    def __repr__(self) -> str:
        return f"RedisCache({_redact(self.url)!r}, prefix={self.prefix!r})"

    # -- keys and values ---------------------------------------------------------------------

    def _keys(self, scope: str, url: str) -> _Keys:
        digest = hashlib.sha256(f"{scope}\n{url}".encode()).hexdigest()[:40]
        p = self.prefix
        return _Keys(f"{p}cert:{digest}", f"{p}neg:{digest}", f"{p}lock:{digest}")

    def _mac(self, key: str, meta: bytes, body: bytes) -> str:
        assert self._secret is not None
        mac = hmac.HMAC(self._secret, hashes.SHA256())
        mac.update(b"%d:%s\n%d:%s\n" % (len(key), key.encode(), len(meta), meta))
        mac.update(body)
        return mac.finalize().hex()

    def _encode(self, key: str, meta: dict[str, Any], body: bytes = b"") -> bytes:
        raw = json.dumps(meta, sort_keys=True, separators=(",", ":")).encode()
        mac = self._mac(key, raw, body) if self._secret is not None else ""
        return _MAGIC + mac.encode() + b" " + raw + b"\n" + body

    def _decode(self, key: str, value: object, scope: str, url: str
                ) -> tuple[dict[str, Any], bytes] | None:  # fmt: skip
        """The metadata and body of a value stored for (scope, url), or None (refused)."""
        if value is None:
            return None
        try:
            if not isinstance(value, bytes) or len(value) > self.max_value:
                raise ValueError("not a value of ours")
            if not value.startswith(_MAGIC):
                raise ValueError("unknown format")
            head, sep, body = value[len(_MAGIC) :].partition(b"\n")
            mac, _, raw = head.partition(b" ")
            if not sep:
                raise ValueError("truncated")
            if self._secret is not None:
                check = hmac.HMAC(self._secret, hashes.SHA256())
                check.update(b"%d:%s\n%d:%s\n" % (len(key), key.encode(), len(raw), raw))
                check.update(body)
                check.verify(bytes.fromhex(mac.decode("ascii")))
            meta = json.loads(raw)
            if not isinstance(meta, dict):
                raise ValueError("metadata is not an object")
            if meta.get("url") != url or meta.get("scope") != scope:
                raise ValueError("stored for another URL or fetch policy")
            if not isinstance(meta.get("token"), str):
                raise ValueError("no token")
            return meta, body
        except (ValueError, UnicodeError, InvalidSignature) as exc:
            self._counters.add("refused")
            log.debug("secsipid: Redis value %s refused: %s", key, exc)
            return None

    def _entry(self, keys: _Keys, value: object, scope: str, url: str) -> SharedEntry | None:
        decoded = self._decode(keys.cert, value, scope, url)
        if decoded is None:
            return None
        meta, body = decoded
        expires = meta.get("expires")
        if not isinstance(expires, int | float) or not _is_time(expires) or not body:
            self._counters.add("refused")
            return None
        return SharedEntry(body, float(expires), meta["token"])

    def _negative(self, keys: _Keys, value: object, scope: str, url: str
                  ) -> SharedNegative | None:  # fmt: skip
        decoded = self._decode(keys.neg, value, scope, url)
        if decoded is None:
            return None
        meta, _ = decoded
        try:
            reason = Reason(str(meta.get("reason")))
            message, lib_code, until = meta.get("message"), meta.get("lib_code"), meta["until"]
            if (
                reason not in NEGATIVE_REASONS
                or not isinstance(message, str)
                or len(message) > _MAX_MESSAGE
                or not (lib_code is None or (isinstance(lib_code, int) and -999 < lib_code < 0))
                or not _is_time(until)
            ):
                raise ValueError("not a negative entry")
        except (ValueError, KeyError):
            self._counters.add("refused")
            return None
        return SharedNegative(reason, message, lib_code, float(until), meta["token"])

    def _lookup_result(self, keys: _Keys, answer: object, scope: str, url: str) -> SharedLookup:
        """Read the answers to ``MGET cert neg lock`` and ``PTTL lock``."""
        if not isinstance(answer, list) or len(answer) != 2:
            raise SharedUnavailableError(f"unexpected answer: {type(answer).__name__}")
        values, pttl = answer
        if not isinstance(values, list) or len(values) != 3 or not isinstance(pttl, int):
            raise SharedUnavailableError("unexpected answer to MGET/PTTL")
        cert, neg, lock = values
        if lock is not None and not isinstance(lock, bytes):
            raise SharedUnavailableError("unexpected lock value")
        token = lock.decode("ascii", "replace") if lock is not None else None
        # PTTL: -2 no key, -1 no expiry.  A key that MGET reads as nothing is of another type.
        usable = pttl == -2 if token is None else 0 <= pttl <= self.lock_lease * 1000 + 1000
        if not usable:
            self._counters.add("refused")
            log.debug("secsipid: Redis lock %s ignored (PTTL %d)", keys.lock, pttl)
        return SharedLookup(
            self._entry(keys, cert, scope, url),
            self._negative(keys, neg, scope, url),
            token,
            usable,
        )

    def _entry_value(self, keys: _Keys, scope: str, url: str, body: bytes, expires: float,
                     token: str) -> bytes:  # fmt: skip
        meta = {"scope": scope, "url": url, "expires": expires, "token": token,
                "stored": time.time()}  # fmt: skip
        return self._encode(keys.cert, meta, body)

    def _negative_value(self, keys: _Keys, scope: str, url: str, reason: Reason, message: str,
                        lib_code: int | None, until: float, token: str) -> bytes:  # fmt: skip
        if len(message) > _MAX_MESSAGE:
            message = message[: _MAX_MESSAGE - 3] + "..."
        meta = {"scope": scope, "url": url, "reason": str(reason), "message": message,
                "lib_code": lib_code, "until": until, "token": token}  # fmt: skip
        return self._encode(keys.neg, meta)

    def _ttl_ms(self, until: float) -> int:
        """Redis TTL for a value good until ``until``: at least a lock lease, so that the
        callers waiting on the fetch that wrote it can read it (even when it came back
        already expired, as with ``max-age=0``)."""
        return max(int((until - time.time()) * 1000), int(self.lock_lease * 1000), 1)

    # -- faults ------------------------------------------------------------------------------

    def _allow(self) -> None:
        if not self._breaker.allow():
            self._counters.add("skipped")
            raise SharedUnavailableError("circuit breaker open")

    def _fault(self, exc: BaseException) -> SharedUnavailableError:
        self._counters.add("errors")
        started, opened = self._breaker.failure()
        if opened:
            self._counters.add("breaker_opens")
        if started:
            log.warning(
                "secsipid: Redis shared cache %s unusable (%s: %s): certificates are fetched "
                "by each process until it answers again (after %d faults in a row it is "
                "asked again every %g s)",
                _redact(self.url), type(exc).__name__, exc, self._breaker.failures,
                self._breaker.cooldown,
            )  # fmt: skip
        return SharedUnavailableError(f"{type(exc).__name__}: {exc}")

    def _ok(self) -> None:
        if self._breaker.success():
            log.warning("secsipid: Redis shared cache %s is back", _redact(self.url))

    # -- sync --------------------------------------------------------------------------------

    def lookup(self, scope: str, url: str) -> SharedLookup:
        """The entry, negative entry and lock for ``url`` (one round trip).  Raises
        :class:`SharedUnavailableError`."""
        self._allow()
        keys = self._keys(scope, url)
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.mget(keys.cert, keys.neg, keys.lock)
            pipe.pttl(keys.lock)
            found = self._lookup_result(keys, pipe.execute(), scope, url)
        except SharedUnavailableError as exc:
            raise self._fault(exc) from None
        except Exception as exc:  # noqa: BLE001 - the client reads a remote server: any failure is a Redis fault
            raise self._fault(exc) from None
        self._ok()
        return found

    def acquire(self, scope: str, url: str) -> str | None:
        """Take the fetch lock of ``url``: its token, or None when another caller holds it.
        The lease is renewed until :meth:`release`."""
        self._allow()
        keys = self._keys(scope, url)
        token = secrets.token_hex(12)
        try:
            got = self._client.set(keys.lock, token, nx=True, px=int(self.lock_lease * 1000))
        except Exception as exc:  # noqa: BLE001 - see lookup
            raise self._fault(exc) from None
        self._ok()
        if not got:
            return None
        self._keeper.hold(keys.lock, token)
        return token

    def release(self, scope: str, url: str, token: str) -> None:
        """Give the fetch lock back (only if still ours); failures are left to the lease."""
        key = self._keys(scope, url).lock
        self._keeper.drop(key, token)
        if not self._breaker.allow():
            return
        try:
            self._client.eval(_RELEASE, 1, key, token)
        except Exception as exc:  # noqa: BLE001 - see lookup
            self._fault(exc)
        else:
            self._ok()

    def store(self, scope: str, url: str, body: bytes, expires: float, until: float,
              token: str) -> None:  # fmt: skip
        """Write a fetched chain (kept in Redis until ``until``: its expiry plus any
        ``stale_if_error``) and drop a negative entry of the URL.  Failures are ignored."""
        keys = self._keys(scope, url)
        value = self._entry_value(keys, scope, url, body, expires, token)
        with contextlib.suppress(SharedUnavailableError):
            self._allow()
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.set(keys.cert, value, px=self._ttl_ms(until))
                pipe.delete(keys.neg)
                pipe.execute()
            except Exception as exc:  # noqa: BLE001 - see lookup
                self._fault(exc)
            else:
                self._ok()
                self._counters.add("stores")

    def store_negative(self, scope: str, url: str, reason: Reason, message: str,
                       lib_code: int | None, until: float, token: str) -> None:  # fmt: skip
        """Write a failed fetch, kept until ``until``.  Failures are ignored."""
        keys = self._keys(scope, url)
        value = self._negative_value(keys, scope, url, reason, message, lib_code, until, token)
        with contextlib.suppress(SharedUnavailableError):
            self._allow()
            try:
                self._client.set(keys.neg, value, px=self._ttl_ms(until))
            except Exception as exc:  # noqa: BLE001 - see lookup
                self._fault(exc)
            else:
                self._ok()
                self._counters.add("stores")

    # -- asyncio -----------------------------------------------------------------------------

    async def _aclient(self) -> Any:
        """This event loop's client.  Async connections belong to one loop; each loop gets
        a pool, closed when the loop shuts down (``asyncio.run`` and servers close their
        async generators then: the pool's closer is one)."""
        loop = asyncio.get_running_loop()
        found = self._aclients.get(loop)
        if found is not None:
            return found[0]
        client = self._aredis.Redis.from_url(self.url, **self._aoptions)
        closer = _close_at_loop_end(client, self, loop)
        await closer.__anext__()
        with self._aclients_lock:  # loops of other threads may come and go meanwhile
            for old in [old for old in self._aclients if old.is_closed()]:
                del self._aclients[old]  # a loop closed without shutting down its generators
            self._aclients[loop] = (client, closer)
        return client

    async def alookup(self, scope: str, url: str) -> SharedLookup:
        """:meth:`lookup` for asyncio."""
        self._allow()
        keys = self._keys(scope, url)
        try:
            client = await self._aclient()
            pipe = client.pipeline(transaction=False)
            pipe.mget(keys.cert, keys.neg, keys.lock)
            pipe.pttl(keys.lock)
            found = self._lookup_result(keys, await pipe.execute(), scope, url)
        except SharedUnavailableError as exc:
            raise self._fault(exc) from None
        except Exception as exc:  # noqa: BLE001 - see lookup
            raise self._fault(exc) from None
        self._ok()
        return found

    async def aacquire(self, scope: str, url: str) -> str | None:
        """:meth:`acquire` for asyncio."""
        self._allow()
        keys = self._keys(scope, url)
        token = secrets.token_hex(12)
        try:
            client = await self._aclient()
            got = await client.set(keys.lock, token, nx=True, px=int(self.lock_lease * 1000))
        except Exception as exc:  # noqa: BLE001 - see lookup
            raise self._fault(exc) from None
        self._ok()
        if not got:
            return None
        self._keeper.hold(keys.lock, token)
        return token

    def arelease(self, scope: str, url: str, token: str) -> None:
        """Release from asyncio: handed to the lease keeper's thread, so that it happens even
        when the releasing task is being cancelled (nothing here awaits)."""
        self._keeper.drop(self._keys(scope, url).lock, token, release=True)

    async def astore(self, scope: str, url: str, body: bytes, expires: float, until: float,
                     token: str) -> None:  # fmt: skip
        """:meth:`store` for asyncio."""
        keys = self._keys(scope, url)
        value = self._entry_value(keys, scope, url, body, expires, token)
        with contextlib.suppress(SharedUnavailableError):
            self._allow()
            try:
                client = await self._aclient()
                pipe = client.pipeline(transaction=False)
                pipe.set(keys.cert, value, px=self._ttl_ms(until))
                pipe.delete(keys.neg)
                await pipe.execute()
            except Exception as exc:  # noqa: BLE001 - see lookup
                self._fault(exc)
            else:
                self._ok()
                self._counters.add("stores")

    async def astore_negative(self, scope: str, url: str, reason: Reason, message: str,
                              lib_code: int | None, until: float, token: str) -> None:  # fmt: skip
        """:meth:`store_negative` for asyncio."""
        keys = self._keys(scope, url)
        value = self._negative_value(keys, scope, url, reason, message, lib_code, until, token)
        with contextlib.suppress(SharedUnavailableError):
            self._allow()
            try:
                client = await self._aclient()
                await client.set(keys.neg, value, px=self._ttl_ms(until))
            except Exception as exc:  # noqa: BLE001 - see lookup
                self._fault(exc)
            else:
                self._ok()
                self._counters.add("stores")

    # -- metrics -----------------------------------------------------------------------------

    def count(self, name: str, n: int = 1) -> None:
        """Add to one of the counters of :meth:`stats` (the certificate source reports its
        side: hits, misses, fetches, waits)."""
        self._counters.add(name, n)

    def stats(self) -> dict[str, int | str]:
        """Counters since the start of the process (see ``_Counters.NAMES``), the breaker's
        state (``closed``, ``open``, ``half-open``) and how often it opened."""
        stats: dict[str, int | str] = dict(self._counters.values)
        stats["breaker"] = self._breaker.state
        return stats

    @property
    def on_count(self) -> Callable[[str, int], None] | None:
        """Called with (counter name, increment) whenever a counter of :meth:`stats` moves
        (a service forwards them to its metrics; keep it cheap and never raising)."""
        return self._counters.hook

    @on_count.setter
    def on_count(self, hook: Callable[[str, int], None] | None) -> None:
        self._counters.hook = hook

    @property
    def breaker_state(self) -> str:
        return self._breaker.state

    def close(self) -> None:
        """Close the sync connections (async pools close with their event loop)."""
        self._keeper.stop()
        with contextlib.suppress(Exception):
            self._client.close()


async def _close_at_loop_end(
    client: Any, owner: RedisCache, loop: asyncio.AbstractEventLoop
) -> AsyncIterator[None]:
    """Holds a loop's client: finalized by ``loop.shutdown_asyncgens()`` (``asyncio.run``,
    uvicorn, anyio), which closes the client's connections and forgets it."""
    try:
        yield
    finally:
        with owner._aclients_lock:
            owner._aclients.pop(loop, None)
        with contextlib.suppress(Exception):
            await client.aclose()


class _LockKeeper:
    """Renews the leases of the fetch locks this process holds (every quarter lease) and
    releases the locks handed over by asyncio callers, in one daemon thread started on first
    use in each process (Kamailio workers are forked after ``mod_init``)."""

    def __init__(self, cache: RedisCache) -> None:
        self._cache = cache
        self._held: dict[str, str] = {}
        self._release: list[tuple[str, str]] = []
        self._cond = threading.Condition()
        self._pid = 0
        self._stopped = False

    def hold(self, key: str, token: str) -> None:
        with self._cond:
            self._held[key] = token
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._held = {key: token}
                self._release = []
                thread = threading.Thread(
                    target=self._run, name="secsipid-redis-locks", daemon=True
                )
                thread.start()
            self._cond.notify()

    def drop(self, key: str, token: str, *, release: bool = False) -> None:
        with self._cond:
            if self._held.get(key) == token:
                del self._held[key]
            if release:
                self._release.append((key, token))
                self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        pid = os.getpid()
        interval = self._cache.lock_lease / 4
        lease_ms = int(self._cache.lock_lease * 1000)
        client = self._cache._client
        while True:
            with self._cond:
                if not self._release:
                    self._cond.wait(interval if self._held else None)
                if self._stopped or self._pid != pid:
                    return
                releases, self._release = self._release, []
                held = list(self._held.items())
            for key, token in releases:
                with contextlib.suppress(Exception):
                    client.eval(_RELEASE, 1, key, token)
            for key, token in held:
                with contextlib.suppress(Exception):
                    client.eval(_RENEW, 1, key, token, lease_ms)


_BY_URL: dict[tuple[str, tuple[tuple[str, Any], ...]], RedisCache] = {}
_BY_URL_LOCK = threading.Lock()


def redis_cache(url: str, **options: Any) -> RedisCache:
    """The process's :class:`RedisCache` for ``url`` and ``options``: sources (and reloaded
    configurations) naming the same share one connection pool, lock keeper, breaker and
    counters."""
    key = (url, tuple(sorted(options.items())))
    with _BY_URL_LOCK:
        cache = _BY_URL.get(key)
        if cache is None:
            cache = _BY_URL[key] = RedisCache(url, **options)
        return cache


def _is_time(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _redact(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user = userinfo.split(":", 1)[0]
        return f"{scheme}://{user + ':***' if ':' in userinfo else user}@{host}"
    return url
