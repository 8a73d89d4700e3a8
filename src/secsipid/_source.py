"""The certificate source: the credential for an ``info`` URL, fetched safely and cached.

``CertificateSource.credential_for(url)`` (and ``await acredential_for(url)``):

1. the process-wide in-memory cache (bounded LRU: entries and bytes) -- the hot path, one dict
   lookup;
2. a recent failure for the URL (negative cache) is answered without asking the server again;
3. the optional directory cache (parity with secsipidx ``cache_dir``): atomic writes, safe
   with several processes, corrupt files ignored;
4. with a shared cache (``shared=RedisCache(...)`` or ``redis=URL``, see ``_shared``): what
   another process or node fetched, and one fetch for the whole cluster (a Redis lock);
5. otherwise one fetch, shared by every caller that wants the same URL meanwhile (single
   flight, for threads and for asyncio tasks).

Freshness: ``Cache-Control`` ``s-maxage``/``max-age`` (``no-cache`` = 0) and ``Expires``
are honoured, else ``default_ttl`` (3600 s, secsipidx's ``cache_expire``); never beyond the
leaf certificate's notAfter; ``no-store`` keeps the entry out of the directory cache.  With
``stale_if_error`` an expired entry is served for that long when refetching fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import hashlib
import json
import math
import os
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import CancelledError as FutureCancelled
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from ._errors import KeyLoadError, VerificationError
from ._fetch import (
    BudgetExhaustedError,
    Fetcher,
    FetchPolicy,
    FetchResult,
    TransientFetchError,
    _short,
    request_remaining,
)
from ._keys import Credential, load_credential
from ._reasons import Reason
from ._shared import RedisCache, SharedLookup, SharedUnavailableError, redis_cache
from ._trust import TrustPolicy, TrustValidator

__all__ = ["CacheConfig", "CertificateSource", "MemoryCache"]

MAX_CHAIN_CERTS = 10
CACHE_NAMINGS = ("secsipid", "libsecsipid")


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheConfig:
    """Certificate cache settings.  Immutable.

    * ``default_ttl``: seconds to keep a certificate whose response had no caching headers
      (secsipidx/Kamailio ``cache_expire``: 3600).  ``min_ttl`` raises short lifetimes
      (ATIS-1000074 suggests 24 h); lifetimes never go past the certificate's notAfter.
    * ``negative_ttl``: seconds a failed fetch is remembered (a dead server is not hammered).
    * ``stale_if_error``: seconds past expiry an entry may still be used when refetching fails
      (0: never).
    * ``cache_dir``: directory cache shared by processes (None: memory only).
    * ``cache_naming``: the files of ``cache_dir``: ``"secsipid"`` (ours: one file per URL
      and fetch policy, with its expiry inside) or ``"libsecsipid"`` (libsecsipid's: the URL
      with ``://`` and ``/`` turned into ``_``, the bare body, expiry = mtime +
      ``default_ttl``), so that the native Kamailio module or secsipidx and secsipid can share
      one directory while a cluster migrates (see :class:`LibsecsipidDirectoryCache`).
    """

    default_ttl: float = 3600.0
    min_ttl: float = 0.0
    negative_ttl: float = 30.0
    stale_if_error: float = 0.0
    cache_dir: str | None = None
    cache_naming: str = "secsipid"

    def __post_init__(self) -> None:
        for name in ("default_ttl", "min_ttl", "negative_ttl", "stale_if_error"):
            if getattr(self, name) < 0:
                raise ValueError(f"CacheConfig.{name} must not be negative")
        if self.cache_naming not in CACHE_NAMINGS:
            raise ValueError(
                f"CacheConfig.cache_naming must be one of {', '.join(CACHE_NAMINGS)}, "
                f"not {self.cache_naming!r}"
            )


@dataclass(slots=True)
class _Entry:
    credential: Credential
    body: bytes  # normalized PEM chain, also what the directory cache stores
    expires: float  # wall-clock seconds


@dataclass(frozen=True, slots=True)
class _Negative:
    """A remembered failure: the reason and message only.  Keeping the exception would keep
    its traceback and frames (~16 KiB each: 60k failing URLs once grew a process by 150 MB)."""

    reason: Reason
    message: str
    lib_code: int | None
    until: float

    @property
    def size(self) -> int:
        return len(self.message) + 200  # the key's URL is counted by the cache

    def error(self) -> VerificationError:
        return VerificationError(self.reason, self.message, lib_code=self.lib_code)


_MAX_NEGATIVE_MESSAGE = 300


class MemoryCache:
    """A bounded LRU of fetched certificates (by entries and by bytes), thread-safe, meant to
    be shared by every verifier of the process; plus the negative cache, bounded the same way
    (oldest first out)."""

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        max_bytes: int = 32 * 1024 * 1024,
        max_negative: int = 4096,
        max_negative_bytes: int = 4 * 1024 * 1024,
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_negative = max_negative
        self.max_negative_bytes = max_negative_bytes
        self._entries: OrderedDict[tuple[Any, ...], _Entry] = OrderedDict()
        self._negative: OrderedDict[tuple[Any, ...], _Negative] = OrderedDict()
        self._bytes = 0
        self._negative_bytes = 0
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            with contextlib.suppress(KeyError):  # evicted meanwhile by another thread
                self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple[Any, ...], entry: _Entry) -> None:
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)
            self._entries[key] = entry
            self._bytes += len(entry.body)
            self._drop_negative(key)
            while self._entries and (
                len(self._entries) > self.max_entries or self._bytes > self.max_bytes
            ):
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.body)

    def negative(self, key: tuple[Any, ...]) -> _Negative | None:
        return self._negative.get(key)

    def put_negative(self, key: tuple[Any, ...], error: VerificationError, until: float) -> None:
        message = error.message
        if len(message) > _MAX_NEGATIVE_MESSAGE:
            message = message[: _MAX_NEGATIVE_MESSAGE - 3] + "..."
        entry = _Negative(error.reason, message, error._lib_code, until)
        with self._lock:
            self._drop_negative(key)
            self._negative[key] = entry
            self._negative_bytes += entry.size + _key_size(key)
            while self._negative and (
                len(self._negative) > self.max_negative
                or self._negative_bytes > self.max_negative_bytes
            ):
                old_key, old = self._negative.popitem(last=False)
                self._negative_bytes -= old.size + _key_size(old_key)

    def _drop_negative(self, key: tuple[Any, ...]) -> None:
        old = self._negative.pop(key, None)
        if old is not None:
            self._negative_bytes -= old.size + _key_size(key)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._negative.clear()
            self._bytes = self._negative_bytes = 0

    def stats(self) -> dict[str, int]:
        """Entries and bytes held (positive and negative)."""
        return {
            "entries": len(self._entries),
            "bytes": self._bytes,
            "negative_entries": len(self._negative),
            "negative_bytes": self._negative_bytes,
        }

    def __len__(self) -> int:
        return len(self._entries)


def _key_size(key: tuple[Any, ...]) -> int:
    return sum(len(part) for part in key if isinstance(part, str))


_SHARED_MEMORY = MemoryCache()


def shared_memory_cache() -> MemoryCache:
    """The process-wide certificate cache every :class:`CertificateSource` uses by default."""
    return _SHARED_MEMORY


# -- freshness -----------------------------------------------------------------------------------


def _cache_control(value: str) -> dict[str, str | None]:
    directives: dict[str, str | None] = {}
    for part in value.split(","):
        name, _, arg = part.strip().partition("=")
        if name:
            directives[name.lower()] = arg.strip().strip('"') if arg else None
    return directives


def _seconds(value: str | None) -> float | None:
    try:
        return float(int(value)) if value is not None else None
    except (ValueError, OverflowError):  # OverflowError: beyond a float ("max-age=9999...")
        return None


def freshness(headers: Mapping[str, str], now: float, default_ttl: float) -> tuple[float, bool]:
    """(seconds fresh, may be stored on disk) from the response headers (RFC 9111 §4.2.1)."""
    cc = _cache_control(headers.get("cache-control", ""))
    storable = "no-store" not in cc
    for directive in ("s-maxage", "max-age"):
        ttl = _seconds(cc.get(directive)) if directive in cc else None
        if ttl is not None:
            return max(ttl, 0.0), storable
    if "no-cache" in cc or "no-store" in cc:
        return 0.0, storable
    expires = headers.get("expires")
    if expires is not None:
        try:
            when = email.utils.parsedate_to_datetime(expires).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):  # Overflow: a year > C long
            return 0.0, storable  # RFC 9111 §5.3: an invalid Expires means already expired
        date_hdr = headers.get("date")
        try:
            date = email.utils.parsedate_to_datetime(date_hdr).timestamp() if date_hdr else now
        except (TypeError, ValueError, IndexError, OverflowError):
            date = now
        return max(when - date, 0.0), storable
    return default_ttl, storable


# -- the directory cache ---------------------------------------------------------------------------

_DISK_MAGIC = "secsipid-cache-v1 "


class DirectoryCache:
    """Fetched certificate chains as files, one per URL, shared between processes.

    A file is ``secsipid-cache-v1 {json metadata}`` on the first line, then the PEM chain.
    Writes go to a temporary file in the same directory and are renamed into place, so a
    reader sees the old file or the new one, never half of one.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, url: str, policy_key: str) -> Path:
        digest = hashlib.sha256(f"{policy_key}\n{url}".encode()).hexdigest()[:40]
        return self.directory / f"{digest}.pem"

    def load(self, url: str, policy_key: str) -> tuple[bytes, float] | None:
        try:
            data = self._path(url, policy_key).read_bytes()
        except OSError:
            return None
        head, sep, body = data.partition(b"\n")
        if not sep or not head.startswith(_DISK_MAGIC.encode()):
            return None
        try:
            meta = json.loads(head[len(_DISK_MAGIC) :])
            if meta.get("url") != url or meta.get("policy") != policy_key:
                return None
            expires = float(meta["expires"])
            return (body, expires) if math.isfinite(expires) else None
        except (ValueError, KeyError, TypeError):
            return None

    def store(self, url: str, policy_key: str, body: bytes, expires: float) -> None:
        meta = {"url": url, "policy": policy_key, "expires": expires, "stored": time.time()}
        data = (_DISK_MAGIC + json.dumps(meta, sort_keys=True) + "\n").encode() + body
        target = self._path(url, policy_key)
        try:
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pem")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.chmod(tmp, 0o644)
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError:
            pass  # a cache that cannot be written is only a slower cache


class LibsecsipidDirectoryCache(DirectoryCache):
    """libsecsipid's directory cache layout, read and written (``cache_naming="libsecsipid"``).

    libsecsipid (``SJWTGetURLCacheFilePath``/``SJWTGetURLCachedContent``) names the file after
    the URL, ``://`` and every ``/`` turned into ``_`` (``https_cert.example.org_sti.pem``),
    stores the response body as it came, and treats it as expired when it is older (mtime)
    than its ``cache_expire``.  Here: the same names, the normalized PEM chain as body, written
    atomically (temporary file + rename, which libsecsipid never sees half-written); the
    modification time is set so that mtime + ``expire`` is the entry's expiry, so both readers
    agree when they use the same ``cache_expire``; a file is read as expiring at mtime +
    ``expire``.  The files carry no fetch policy: what another program stored there is taken as
    fetched (its chain is still validated, its signature still checked), so the directory must
    be writable only by the programs that share it.  Only ``http://`` and ``https://`` URLs
    have a file (libsecsipid refuses the others).
    """

    def __init__(self, directory: str | os.PathLike[str], *, expire: float) -> None:
        super().__init__(directory)
        self.expire = expire

    def _path(self, url: str, policy_key: str) -> Path:
        del policy_key
        if not url.startswith(("http://", "https://")):
            raise ValueError("libsecsipid caches http(s) URLs only")
        return self.directory / url.replace("://", "_").replace("/", "_")

    def load(self, url: str, policy_key: str) -> tuple[bytes, float] | None:
        try:
            path = self._path(url, policy_key)
            mtime = path.stat().st_mtime
            return path.read_bytes(), mtime + self.expire
        except (OSError, ValueError):
            return None

    def store(self, url: str, policy_key: str, body: bytes, expires: float) -> None:
        try:
            target = self._path(url, policy_key)
            fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=".tmp-", suffix=".pem")
            try:
                with os.fdopen(fd, "wb") as fh:
                    fh.write(body)
                os.chmod(tmp, 0o640)  # as libsecsipid writes them
                mtime = min(time.time(), expires - self.expire)
                os.utime(tmp, (mtime, mtime))
                os.replace(tmp, target)
            except BaseException:
                os.unlink(tmp)
                raise
        except (OSError, ValueError):
            pass  # a cache that cannot be written is only a slower cache


def _directory_cache(config: CacheConfig) -> DirectoryCache | None:
    if not config.cache_dir:
        return None
    if config.cache_naming == "libsecsipid":
        return LibsecsipidDirectoryCache(config.cache_dir, expire=config.default_ttl)
    return DirectoryCache(config.cache_dir)


# -- the source ----------------------------------------------------------------------------------


def _copy(error: VerificationError) -> VerificationError:
    """A fresh exception for each caller: callers attach their PASSporT to it."""
    return VerificationError(error.reason, error.message, lib_code=error._lib_code)


def parse_certificate_body(body: bytes, url: str) -> tuple[Credential, bytes]:
    """The credential in an x5u response (PEM chain, leaf first, or one DER certificate),
    and its normalized PEM form.  Raises ``cert-invalid`` or ``unsupported-key``."""
    if body.count(b"-----BEGIN CERTIFICATE-----") > MAX_CHAIN_CERTS:
        raise VerificationError(Reason.CERT_INVALID, f"{url}: more than {MAX_CHAIN_CERTS} certs")
    try:
        credential = load_credential(body)
    except KeyLoadError as exc:
        if exc.code in ("key-not-ec", "key-wrong-curve"):
            raise VerificationError(Reason.UNSUPPORTED_KEY, f"{url}: {exc.message}") from exc
        raise VerificationError(Reason.CERT_INVALID, f"{url}: {exc.message}") from exc
    if credential.certificate is None:
        raise VerificationError(Reason.CERT_INVALID, f"{url}: a public key, not a certificate")
    from cryptography.hazmat.primitives.serialization import Encoding

    chain = (credential.certificate, *credential.intermediates)
    return credential, b"".join(c.public_bytes(Encoding.PEM) for c in chain)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


_F = TypeVar("_F", bound="asyncio.Future[Any]")


def _retrieved(future: _F) -> _F:
    """``future``, its outcome marked as seen once it ends.  A caller that leaves stops
    awaiting (through ``asyncio.shield``, which on Python 3.11 then drops its own callback),
    and an exception that comes later would be logged as "never retrieved" when the future is
    collected; the callers still waiting get the outcome all the same."""
    future.add_done_callback(_see)
    return future


def _see(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class CertificateSource:
    """Credentials for ``info`` URLs: fetched under a :class:`FetchPolicy`, cached per
    :class:`CacheConfig`, and (with ``trust``) validated per :class:`TrustPolicy` by the
    verifier that uses this source.

    ``trust`` must be given: a :class:`TrustPolicy`, or ``None`` to accept any certificate
    (libsecsipid's default, ``CertVerify=0``) -- an explicit choice, never a silent default.
    Shortcuts (``timeout``, ``allow_http``, ``allow_private``, ``cache_dir``,
    ``cache_expire``, ``cache_naming``) override the matching fields of ``fetch``/``cache``.

    ``shared``: a cache shared by the processes and nodes of a cluster (:class:`RedisCache`),
    asked after the memory and directory caches and before the network; ``redis`` is the
    shortcut (a URL: the process's :class:`RedisCache` for it, default settings).  Whatever
    happens to Redis, a credential is then obtained as without it.
    """

    def __init__(
        self,
        *,
        trust: TrustPolicy | None = UNSET,
        fetch: FetchPolicy | None = None,
        cache: CacheConfig | None = None,
        timeout: float | None = None,
        allow_http: bool | None = None,
        allow_private: bool | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        cache_expire: float | None = None,
        cache_naming: str | None = None,
        memory: MemoryCache | None = None,
        fetcher: Fetcher | None = None,
        shared: RedisCache | None = None,
        redis: str | None = None,
    ) -> None:
        if trust is UNSET:
            raise TypeError(
                "CertificateSource needs trust=TrustPolicy(ca_file=...) (the STI-PA trust list), "
                "or trust=None to accept any certificate without chain validation"
            )
        fetch = fetch or (fetcher.policy if fetcher is not None else FetchPolicy())
        changes = {
            k: v
            for k, v in (
                ("timeout", timeout), ("allow_http", allow_http), ("allow_private", allow_private)
            )
            if v is not None
        }  # fmt: skip
        if changes:
            fetch = fetch.replace(**changes)
        cache = cache or CacheConfig()
        if cache_dir is not None:
            cache = replace(cache, cache_dir=os.fspath(cache_dir) or None)
        if cache_expire is not None:
            cache = replace(cache, default_ttl=float(cache_expire))
        if cache_naming is not None:
            cache = replace(cache, cache_naming=cache_naming)
        self.fetch_policy = fetch
        self.cache_config = cache
        self.fetcher = (
            fetcher if fetcher is not None and fetcher.policy == fetch else Fetcher(fetch)
        )
        self.memory = memory if memory is not None else _SHARED_MEMORY
        self.disk = _directory_cache(cache)
        self.trust_policy = trust
        self.trust = TrustValidator(trust, self.fetcher) if trust is not None else None
        if redis is not None:
            if shared is not None:
                raise TypeError("CertificateSource: give shared= or redis=, not both")
            shared = redis_cache(redis)
        self.shared = shared
        self._policy_key = repr(fetch.cache_key)
        # Fetches in progress, by URL: one map for threads and for every event loop (the
        # synchronous check runs several fetches on a private loop), so however a caller waits,
        # one request goes out per URL.
        self._inflight: dict[str, Future[Credential]] = {}
        # Callers waiting on each of those fetches (not counting the one that leads it), and
        # the asyncio fetches whose leading caller has left while others waited.
        self._waiting: dict[Future[Credential], int] = {}
        self._orphans: dict[Future[Credential], asyncio.Task[Credential]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CertificateSource(fetch={self.fetch_policy!r}, trust={self.trust_policy!r})"

    # -- lookups ---------------------------------------------------------------------------------

    def _lookup(self, url: str, now: float) -> tuple[Credential | None, _Entry | None]:
        """(fresh credential, stale entry usable on error) from memory, negative and disk."""
        key = (self._policy_key, url)
        entry = self.memory.get(key)
        if entry is not None and now < entry.expires:
            return entry.credential, entry
        negative = self.memory.negative(key)
        if negative is not None and now < negative.until:
            stale = self._usable_stale(entry, now)
            if stale is not None:
                return stale.credential, stale
            raise negative.error()
        if self.disk is not None:
            loaded = self.disk.load(url, self._policy_key)
            if loaded is not None and now < loaded[1]:
                try:
                    credential, body = parse_certificate_body(loaded[0], url)
                except VerificationError:
                    credential = None  # corrupt: ignore, refetch
                if credential is not None:
                    fresh = _Entry(credential, body, loaded[1])
                    self.memory.put(key, fresh)
                    return credential, fresh
        return None, entry

    def cached_credential(self, info: str) -> Credential | None:
        """The credential for ``info`` if the caches can answer without the network (None:
        a fetch is needed).  Raises the remembered error of a recent failure."""
        return self._lookup(info, time.time())[0]

    def _usable_stale(self, entry: _Entry | None, now: float) -> _Entry | None:
        if entry is not None and now < entry.expires + self.cache_config.stale_if_error:
            return entry
        return None

    def _store(self, url: str, result: FetchResult) -> tuple[_Entry, bool]:
        """Remember a fetched chain (memory, directory): the entry, and whether it may be
        stored outside the process (no ``no-store``)."""
        credential, body = parse_certificate_body(result.body, url)
        now = result.fetched_at
        ttl, storable = freshness(result.headers, now, self.cache_config.default_ttl)
        ttl = max(ttl, self.cache_config.min_ttl)
        assert credential.certificate is not None
        expires = min(now + ttl, credential.certificate.not_valid_after_utc.timestamp())
        entry = _Entry(credential, body, expires)
        self.memory.put((self._policy_key, url), entry)
        if self.disk is not None and storable and expires > now:
            self.disk.store(url, self._policy_key, body, expires)
        return entry, storable

    def _remember_failure(self, url: str, error: VerificationError) -> float | None:
        """Put a failure in the negative cache: until when (None: not remembered)."""
        # Refusals are instant anyway; a fetch cut short by its request's budget says nothing
        # about the server (the budget may have gone to another URL of the same request).
        # So does a fetch refused because this process has too many in flight.
        if isinstance(error, TransientFetchError) or error.reason is Reason.CERT_URL_REFUSED:
            return None
        until = time.time() + self.cache_config.negative_ttl
        self.memory.put_negative((self._policy_key, url), error, until)
        return until

    def _stale_or_raise(self, error: VerificationError, stale: _Entry | None) -> Credential:
        usable = self._usable_stale(stale, time.time())
        if usable is not None:
            return usable.credential
        raise error

    def _wait_timeout(self) -> float:
        """How long a caller waits for another caller's fetch of the same URL: its own
        request's budget, or the fetch timeout (plus slack) outside of a request."""
        return max(request_remaining(self.fetch_policy.timeout + 5), 0.0)

    # -- fetching, alone or through the shared cache ----------------------------------------

    def _fetch(self, info: str, stale: _Entry | None, token: str | None = None) -> Credential:
        """Fetch ``info`` here and remember the outcome (in Redis too when holding its fetch
        lock ``token``)."""
        shared = self.shared
        try:
            entry, storable = self._store(info, self.fetcher.get(info))
        except VerificationError as exc:
            until = self._remember_failure(info, exc)
            if token is not None and shared is not None and until is not None:
                shared.store_negative(self._policy_key, info, exc.reason, exc.message,
                                      exc._lib_code, until, token)  # fmt: skip
            return self._stale_or_raise(exc, stale)
        if token is not None and shared is not None and storable:
            until = entry.expires + self.cache_config.stale_if_error
            shared.store(self._policy_key, info, entry.body, entry.expires, until, token)
        return entry.credential

    async def _afetch(self, info: str, stale: _Entry | None, token: str | None = None
                      ) -> Credential:  # fmt: skip
        """:meth:`_fetch` for asyncio."""
        shared = self.shared
        try:
            entry, storable = self._store(info, await self.fetcher.aget(info))
        except VerificationError as exc:
            until = self._remember_failure(info, exc)
            if token is not None and shared is not None and until is not None:
                await shared.astore_negative(self._policy_key, info, exc.reason, exc.message,
                                             exc._lib_code, until, token)  # fmt: skip
            return self._stale_or_raise(exc, stale)
        if token is not None and shared is not None and storable:
            until = entry.expires + self.cache_config.stale_if_error
            await shared.astore(self._policy_key, info, entry.body, entry.expires, until, token)
        return entry.credential

    def _from_shared(self, info: str, found: SharedLookup, seen: set[str],
                     stale: _Entry | None) -> tuple[Credential | None, _Entry | None]:  # fmt: skip
        """What Redis said, validated like a download: (credential, stale entry).  A fresh
        entry, or one written by a fetch this caller waited for (``seen`` lock tokens), is
        used; a negative one raises its error (or gives the stale entry when allowed)."""
        shared = self.shared
        assert shared is not None
        now = time.time()
        key = (self._policy_key, info)
        if found.entry is not None:
            try:
                credential, body = parse_certificate_body(found.entry.body, info)
            except VerificationError:
                shared.count("refused")
            else:
                assert credential.certificate is not None
                expires = min(
                    found.entry.expires, credential.certificate.not_valid_after_utc.timestamp()
                )
                entry = _Entry(credential, body, expires)
                if now < expires or found.entry.token in seen:
                    self.memory.put(key, entry)
                    shared.count("hits")
                    return credential, entry
                if stale is None or stale.expires < expires:
                    stale = entry
        negative = found.negative
        if negative is not None and (now < negative.until or negative.token in seen):
            error = VerificationError(negative.reason, negative.message, lib_code=negative.lib_code)
            self.memory.put_negative(
                key, error, min(negative.until, now + self.cache_config.negative_ttl)
            )
            shared.count("negative_hits")
            return self._stale_or_raise(error, stale), stale
        return None, stale

    def _waited_too_long(self, info: str) -> BudgetExhaustedError:
        return BudgetExhaustedError(
            Reason.CERT_FETCH_TIMEOUT,
            f"{_short(info)}: waited too long for another process's fetch in progress",
        )

    def _obtain(self, info: str, stale: _Entry | None) -> Credential:
        """The credential at ``info`` when the local caches had nothing: from the shared
        cache, or fetched (by this caller when it holds the cluster's fetch lock, else by the
        holder, waited for within the request's budget); fetched here whenever Redis cannot
        be used."""
        shared = self.shared
        if shared is None:
            return self._fetch(info, stale)
        scope = self._policy_key
        deadline = time.monotonic() + self._wait_timeout()
        seen: set[str] = set()
        delay = shared.poll_interval
        waited = False
        try:
            found = shared.lookup(scope, info)
            while True:
                credential, stale = self._from_shared(info, found, seen, stale)
                if credential is not None:
                    return credential
                if not waited:
                    shared.count("misses")
                if not found.lock_usable:
                    return self._fetch(info, stale)
                if found.lock is None:
                    token = shared.acquire(scope, info)
                    if token is not None:
                        try:
                            # A fetch may have ended between the lookup and the lock.
                            found = shared.lookup(scope, info)
                            credential, stale = self._from_shared(info, found, seen, stale)
                            if credential is not None:
                                return credential
                            shared.count("fetches")
                            if waited:
                                shared.count("takeovers")
                            return self._fetch(info, stale, token)
                        finally:
                            shared.release(scope, info, token)
                else:
                    seen.add(found.lock)
                if not waited:
                    waited = True
                    shared.count("lock_waits")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._waited_too_long(info)
                time.sleep(min(delay, left))
                delay = min(delay * 2, shared.max_poll_interval)
                found = shared.lookup(scope, info)
        except SharedUnavailableError:
            return self._fetch(info, stale)

    async def _aobtain(self, info: str, stale: _Entry | None) -> Credential:
        """:meth:`_obtain` for asyncio."""
        shared = self.shared
        if shared is None:
            return await self._afetch(info, stale)
        scope = self._policy_key
        deadline = time.monotonic() + self._wait_timeout()
        seen: set[str] = set()
        delay = shared.poll_interval
        waited = False
        try:
            found = await shared.alookup(scope, info)
            while True:
                credential, stale = self._from_shared(info, found, seen, stale)
                if credential is not None:
                    return credential
                if not waited:
                    shared.count("misses")
                if not found.lock_usable:
                    return await self._afetch(info, stale)
                if found.lock is None:
                    token = await shared.aacquire(scope, info)
                    if token is not None:
                        try:
                            found = await shared.alookup(scope, info)
                            credential, stale = self._from_shared(info, found, seen, stale)
                            if credential is not None:
                                return credential
                            shared.count("fetches")
                            if waited:
                                shared.count("takeovers")
                            return await self._afetch(info, stale, token)
                        finally:
                            shared.arelease(scope, info, token)
                else:
                    seen.add(found.lock)
                if not waited:
                    waited = True
                    shared.count("lock_waits")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._waited_too_long(info)
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, shared.max_poll_interval)
                found = await shared.alookup(scope, info)
        except SharedUnavailableError:
            return await self._afetch(info, stale)

    def _join(self, info: str) -> tuple[Future[Credential], bool]:
        """The fetch of ``info`` in progress, or a new one: (future, this caller leads).  A
        caller that does not lead counts as waiting until it calls :meth:`_unwait`."""
        with self._lock:
            future = self._inflight.get(info)
            if future is not None and not future.done():
                self._waiting[future] = self._waiting.get(future, 0) + 1
                return future, False
            future = self._inflight[info] = Future()
            return future, True

    def _unwait(self, future: Future[Credential]) -> None:
        """A waiting caller is done with ``future``; the last one to leave a fetch whose
        leading caller left already cancels that fetch (from any thread)."""
        with self._lock:
            left = self._waiting.get(future, 0) - 1
            if left > 0:
                self._waiting[future] = left
                return
            self._waiting.pop(future, None)
            orphan = self._orphans.pop(future, None)
        if orphan is not None and not orphan.done():
            with contextlib.suppress(RuntimeError):  # its loop is closed: it ended with it
                orphan.get_loop().call_soon_threadsafe(orphan.cancel)

    def _adopt(self, future: Future[Credential], fetch: asyncio.Task[Credential]) -> bool:
        """The leading caller of ``fetch`` leaves: True (the fetch goes on) when others wait
        on it; the last of them to leave forgets it, and cancels it if it still runs."""
        with self._lock:
            if self._waiting.get(future, 0) <= 0:
                return False
            self._orphans[future] = fetch
            return True

    def _leave(self, info: str, future: Future[Credential]) -> None:
        with self._lock:
            if self._inflight.get(info) is future:
                del self._inflight[info]

    # -- sync --------------------------------------------------------------------------------

    def credential_for(self, info: str) -> Credential:
        """The credential at ``info`` (blocking; cached; one fetch per URL at a time)."""
        credential, stale = self._lookup(info, time.time())
        if credential is not None:
            return credential
        while True:
            future, leader = self._join(info)
            if leader:
                break
            try:
                return future.result(timeout=self._wait_timeout())
            except BudgetExhaustedError:
                continue  # the budget of the caller that fetched, not this one's: fetch again
            except VerificationError as exc:
                raise _copy(exc) from None
            except FutureTimeout:
                raise BudgetExhaustedError(
                    Reason.CERT_FETCH_TIMEOUT, f"{info}: waited too long for a fetch in progress"
                ) from None
            except FutureCancelled:
                continue  # the fetch was cancelled (its loop ended): fetch (or wait) again
            finally:
                self._unwait(future)
        try:
            # A fetch of the same URL may have ended between the lookup above and _join:
            # look again before going to the network (its result, or its failure).
            credential, stale = self._lookup(info, time.time())
            if credential is None:
                credential = self._obtain(info, stale)
            future.set_result(credential)
            return credential
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            raise
        finally:
            self._leave(info, future)

    # -- async -------------------------------------------------------------------------------

    async def acredential_for(self, info: str) -> Credential:
        """The credential at ``info`` without blocking the event loop.

        The caller that starts a fetch runs it in a task of its own.  Cancelled (its request
        found a valid value elsewhere, or ran out of budget), it returns at once; the fetch
        goes on while other callers wait on it, and is cancelled when none does, so it leaves
        nothing behind.  A fetch ends with its event loop: where that was a private one (the
        synchronous check's), callers waiting on it fetch again."""
        credential, _ = self._lookup(info, time.time())
        if credential is not None:
            return credential
        while True:
            future, leader = self._join(info)
            if leader:
                break
            try:
                async with asyncio.timeout(self._wait_timeout()):
                    # shield: a waiter that is cancelled must not cancel the shared fetch
                    return await asyncio.shield(_retrieved(asyncio.wrap_future(future)))
            except BudgetExhaustedError:
                continue  # as in credential_for
            except VerificationError as exc:
                raise _copy(exc) from None
            except TimeoutError:
                raise BudgetExhaustedError(
                    Reason.CERT_FETCH_TIMEOUT, f"{info}: waited too long for a fetch in progress"
                ) from None
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if not future.cancelled() or (task is not None and task.cancelling()):
                    raise
                # The fetch was cancelled, not this caller: fetch (or wait) again.
            finally:
                self._unwait(future)
        fetch = _retrieved(asyncio.ensure_future(self._alead(info, future)))
        try:
            return await asyncio.shield(fetch)
        except asyncio.CancelledError:
            if not fetch.done() and not self._adopt(future, fetch):
                fetch.cancel()
            raise

    async def _alead(self, info: str, future: Future[Credential]) -> Credential:
        """The fetch :meth:`acredential_for` leads; its outcome goes to ``future`` (and so to
        every caller waiting on it)."""
        try:
            credential, stale = self._lookup(info, time.time())  # as in credential_for
            if credential is None:
                credential = await self._aobtain(info, stale)
            future.set_result(credential)
            return credential
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            if not future.done():
                future.set_exception(exc)
            raise
        finally:
            self._leave(info, future)
