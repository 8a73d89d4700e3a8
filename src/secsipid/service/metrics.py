"""Prometheus metrics of the service (``GET /metrics``), with ``prometheus-client``.

With several workers every process writes its samples to files in a shared directory and
``/metrics`` adds them up, whichever worker answers (prometheus-client's multi-process mode:
``PROMETHEUS_MULTIPROC_DIR`` must be set before ``prometheus_client`` is first imported;
``secsipid serve`` does that in the main process, before the workers start).  Without that
variable (one process, e.g. the app embedded in tests) the samples live in memory.

Only counters and histograms: they add up across processes without a per-process mode.
Labels have bounded values (route names, HTTP statuses, reason codes), never paths or numbers
taken from a request.

The per-request samples (requests, latency, verdicts, signatures) are added up in the worker
and handed to prometheus-client in batches: every 256 requests, once a second (the worker's
housekeeping), before ``/metrics`` renders, and when the worker stops.  In multi-process mode
each sample handed over is a locked write into a memory-mapped file, which cost about 40 % of
the app's own per-request work when done per request (bench/profile_service.py).  So another
worker's requests reach ``/metrics`` within a second, this worker's at once.
"""

from __future__ import annotations

import contextvars
import os
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from .._errors import VerificationError
from .._fetch import Fetcher, FetchResult
from .._keys import Credential
from .._source import CertificateSource

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

__all__ = ["MULTIPROC_ENV", "MeteredFetcher", "MeteredSource", "Metrics", "NullMetrics"]

# The downloads made on behalf of the lookup in progress (a list shared with any task the
# lookup starts, so a download in another task still counts for it).
_DOWNLOADS: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
    "secsipid_service_downloads", default=None
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds; a signature is ~0.05 ms of CPU, a verification with a cached certificate ~0.1 ms,
# one with a fetch up to the fetch timeout (5 s by default).
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# The histogram's bucket bounds as prometheus-client keeps them (with +Inf last).
_BOUNDS = (*LATENCY_BUCKETS, float("inf"))
# Batched samples are handed to prometheus-client at least every this many requests.
FLUSH_EVERY = 256


class NullMetrics:
    """Metrics switched off (``server.metrics = false``): every call does nothing."""

    enabled = False

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        pass

    def verdict(self, reason: str) -> None:
        pass

    def signature(self, result: str) -> None:
        pass

    def fetch(self, result: str) -> None:
        pass

    def cache(self, hit: bool) -> None:
        pass

    def reload(self, ok: bool) -> None:
        pass

    def shared_cache(self, event: str, n: int = 1) -> None:
        pass

    def flush(self) -> None:
        pass

    def render(self) -> bytes:
        return b""


class _Latency:
    """One endpoint's requests since the last flush: their count by HTTP status, and their
    latency observations (sum and a count per bucket, non-cumulative, as prometheus-client
    stores them)."""

    __slots__ = ("child", "counts", "statuses", "total")

    def __init__(self, child: Any) -> None:
        self.child = child
        self.counts = [0] * len(_BOUNDS)
        self.total = 0.0
        self.statuses: dict[int, int] = {}


def _batchable(child: Any) -> bool:
    """Whether a histogram child has the per-bucket values that a batch is added to (the
    internals of every prometheus-client 0.x; ``tests/test_service_app.py`` checks them).
    If not, observations go to ``observe()`` one by one, as before batching."""
    buckets = getattr(child, "_buckets", None)
    return (
        isinstance(buckets, list)
        and len(buckets) == len(_BOUNDS)
        and all(hasattr(b, "inc") for b in buckets)
        and hasattr(getattr(child, "_sum", None), "inc")
    )


class Metrics(NullMetrics):
    """The service's counters and histograms.

    :meth:`request`, :meth:`verdict` and :meth:`signature` (once per request, on the event
    loop's thread) are batched, see the module docstring; the others (rare, and some called
    from worker threads) go to prometheus-client at once.
    """

    enabled = True

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        # A registry of our own: several apps in one process (tests) do not collide, and in
        # multi-process mode the samples go to the shared files whatever registry holds them.
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._requests = Counter(
            "secsipid_http_requests",
            "HTTP requests answered, by endpoint and status",
            ["endpoint", "status"],
            registry=r,
        )
        self._latency = Histogram(
            "secsipid_http_request_duration_seconds",
            "Time from the request's arrival to the end of the response, by endpoint",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._verdicts = Counter(
            "secsipid_verdicts",
            "Verification outcomes by reason code ('valid' when the PASSporT is valid)",
            ["reason"],
            registry=r,
        )
        self._signatures = Counter(
            "secsipid_signatures",
            "Signing requests by result ('signed' or the refusal code)",
            ["result"],
            registry=r,
        )
        self._fetches = Counter(
            "secsipid_cert_fetches",
            "Certificate (and CRL) downloads by result ('ok' or the failure reason)",
            ["result"],
            registry=r,
        )
        self._cache = Counter(
            "secsipid_cert_cache",
            "Certificate lookups for info URLs answered from the caches (hit) or by a "
            "download (miss)",
            ["result"],
            registry=r,
        )
        self._shared = Counter(
            "secsipid_shared_cache_events",
            "The Redis shared certificate cache (cache.backend redis), by event: hits, "
            "negative_hits, misses, fetches (made holding the cluster's fetch lock), "
            "lock_waits, takeovers, stores, refused (values read back and refused), errors "
            "(Redis calls that failed), skipped (calls not made: breaker open), breaker_opens",
            ["event"],
            registry=r,
        )
        self._reloads = Counter(
            "secsipid_reloads",
            "Configuration reloads (SIGHUP or a changed file) by result",
            ["result"],
            registry=r,
        )
        # Children by label value: .labels() costs more than the increment itself.
        self._children: dict[tuple[str, Any], Any] = {}
        # Batched since the last flush, per endpoint (requests by status and latency), and
        # verdicts and signatures by label: kept apart and keyed by plain values (a composite
        # key built per request was half of the recording's cost: timeit, 0.63 against
        # 0.34 us per request; bench/profile_service.py --callgrind: 3,800 instructions fewer).
        self._latency_by: dict[str, _Latency] = {}
        self._latency_batched: bool | None = None  # known at the first endpoint
        self._verdict_counts: dict[str, int] = {}
        self._signature_counts: dict[str, int] = {}
        self._unflushed = 0

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (metric._name, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        latency = self._latency_by.get(endpoint)
        if latency is None:
            latency = self._latency_by[endpoint] = self._new_latency(endpoint)
        statuses = latency.statuses
        statuses[status] = statuses.get(status, 0) + 1
        if self._latency_batched:
            latency.total += seconds
            latency.counts[bisect_left(_BOUNDS, seconds)] += 1
        else:
            latency.child.observe(seconds)
        self._unflushed += 1
        if self._unflushed >= FLUSH_EVERY:
            self.flush()

    def _new_latency(self, endpoint: str) -> _Latency:
        child = self._child(self._latency, endpoint)
        if self._latency_batched is None:
            self._latency_batched = _batchable(child)
        return _Latency(child)

    def verdict(self, reason: str) -> None:
        counts = self._verdict_counts
        counts[reason] = counts.get(reason, 0) + 1

    def signature(self, result: str) -> None:
        counts = self._signature_counts
        counts[result] = counts.get(result, 0) + 1

    def flush(self) -> None:
        """Hand the batched samples to prometheus-client (on the event loop's thread)."""
        self._unflushed = 0
        verdicts, self._verdict_counts = self._verdict_counts, {}
        signatures, self._signature_counts = self._signature_counts, {}
        for metric, counts in ((self._verdicts, verdicts), (self._signatures, signatures)):
            for label, n in counts.items():
                self._child(metric, label).inc(n)
        for endpoint, latency in self._latency_by.items():
            if latency.statuses:
                statuses, latency.statuses = latency.statuses, {}
                for status, n in statuses.items():
                    self._child(self._requests, endpoint, str(status)).inc(n)
            if latency.total or any(latency.counts):
                child = latency.child
                child._sum.inc(latency.total)
                for bucket, n in zip(child._buckets, latency.counts, strict=True):
                    if n:
                        bucket.inc(n)
                latency.total = 0.0
                latency.counts = [0] * len(_BOUNDS)

    def fetch(self, result: str) -> None:
        self._child(self._fetches, result).inc()

    def cache(self, hit: bool) -> None:
        self._child(self._cache, "hit" if hit else "miss").inc()

    def reload(self, ok: bool) -> None:
        self._child(self._reloads, "ok" if ok else "failed").inc()

    def shared_cache(self, event: str, n: int = 1) -> None:
        self._child(self._shared, event).inc(n)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        self.flush()
        registry: CollectorRegistry = self.registry
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import CollectorRegistry as Registry
            from prometheus_client import multiprocess

            registry = Registry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)


def make_metrics(enabled: bool) -> NullMetrics:
    return Metrics() if enabled else NullMetrics()


class MeteredFetcher(Fetcher):
    """A :class:`Fetcher` that counts its downloads (certificates from info, CRLs) by result,
    and marks the lookup that caused one as a cache miss."""

    metrics: NullMetrics = NullMetrics()

    def _count(self, error: VerificationError | None) -> None:
        result = "ok" if error is None else error.reason.value
        self.metrics.fetch(result)
        downloads = _DOWNLOADS.get()
        if downloads is not None:
            downloads.append(result)

    def get(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        try:
            result = super().get(url, allow_http=allow_http)
        except VerificationError as exc:
            self._count(exc)
            raise
        self._count(None)
        return result

    async def aget(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        try:
            result = await super().aget(url, allow_http=allow_http)
        except VerificationError as exc:
            self._count(exc)
            raise
        self._count(None)
        return result


class MeteredSource(CertificateSource):
    """A :class:`CertificateSource` that counts its lookups as cache hits (answered from the
    memory, negative or directory cache, or by a download another request made) or misses
    (this lookup downloaded)."""

    metrics: NullMetrics = NullMetrics()

    def cached_credential(self, info: str) -> Credential | None:
        # The verifier asks here first; None means it will call (a)credential_for next,
        # which counts the lookup then.
        try:
            credential = super().cached_credential(info)
        except VerificationError:
            self.metrics.cache(True)  # a remembered failure: answered from the cache
            raise
        if credential is not None:
            self.metrics.cache(True)
        return credential

    def credential_for(self, info: str) -> Credential:
        downloads: list[str] = []
        token = _DOWNLOADS.set(downloads)
        try:
            return super().credential_for(info)
        finally:
            _DOWNLOADS.reset(token)
            self.metrics.cache(not downloads)

    async def acredential_for(self, info: str) -> Credential:
        downloads: list[str] = []
        token = _DOWNLOADS.set(downloads)
        try:
            return await super().acredential_for(info)
        finally:
            _DOWNLOADS.reset(token)
            self.metrics.cache(not downloads)
