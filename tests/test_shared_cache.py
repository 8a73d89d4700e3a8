"""The Redis shared certificate cache (issue 11), against a real ``redis-server`` on loopback
(started by the tests on a free port, stopped by PID; skipped where it is not installed).

Separate processes stand for separate cluster nodes (each with its own memory cache); the
certificate server counts its requests, so "one fetch" is what the server saw.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from rediskit import CountingCertServer, GarbageServer, RedisServer, free_port, need_redis_server
from secsipid import (
    CacheConfig,
    CertificateSource,
    FetchPolicy,
    MemoryCache,
    Reason,
    RedisCache,
    Signer,
    TrustPolicy,
    VerificationError,
    Verifier,
)
from secsipid._fetch import request_budget
from secsipid._pki import LabPKI, make_lab_pki, make_self_signed, pem
from secsipid._shared import BREAKER_CLOSED, BREAKER_HALF_OPEN, BREAKER_OPEN, _Breaker

HERE = Path(__file__).parent
ORIG, DEST = "12155550121", "12155550131"
CHAIN_HEADERS = {"Content-Type": "application/pem-certificate-chain"}


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[RedisServer]:
    """The module's redis-server, emptied (and running) for each test."""
    if redis_server.proc is None:
        redis_server.start()
    client = _client(redis_server)
    client.flushall()
    client.close()
    yield redis_server


@pytest.fixture
def certs() -> Iterator[CountingCertServer]:
    server = CountingCertServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabPKI, Path]:
    lab = make_lab_pki(spc="1234")
    return lab, lab.write(tmp_path_factory.mktemp("pki"))["root"]


def _client(server: RedisServer) -> Any:
    import redis

    return redis.Redis(host="127.0.0.1", port=server.port, socket_timeout=5)


def source(pki: tuple[LabPKI, Path], shared: RedisCache | None, **cache: Any) -> CertificateSource:
    """A fresh 'node': its own memory cache, the lab trust anchor, loopback http allowed."""
    return CertificateSource(
        fetch=FetchPolicy(allow_http=True, allow_private=True, timeout=cache.pop("timeout", 5.0)),
        trust=TrustPolicy(ca_file=str(pki[1])),
        cache=CacheConfig(**cache),
        memory=MemoryCache(),
        shared=shared,
    )


def sign(pki: tuple[LabPKI, Path], url: str) -> str:
    return Signer(pki[0].leaf_key, url).identity(ORIG, DEST, "A")


def check(src: CertificateSource, identity: str) -> Reason:
    return Verifier(src).check(identity, orig_tn=ORIG, dest_tn=DEST).reason


def cache(server: RedisServer | GarbageServer | str, **options: Any) -> RedisCache:
    url = server if isinstance(server, str) else server.url
    options.setdefault("breaker_cooldown", 0.3)
    return RedisCache(url, **options)


# -- shared hits -------------------------------------------------------------------------------


def test_shared_hit_between_sources(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """What one node fetched is a hit for another (own memory cache, same Redis): one fetch."""
    url = certs.route("/a.pem", pki[0].chain_pem, headers=CHAIN_HEADERS)
    first, second = cache(redis), cache(redis)
    assert check(source(pki, first), sign(pki, url)) is Reason.VALID
    assert check(source(pki, second), sign(pki, url)) is Reason.VALID
    assert certs.count("/a.pem") == 1
    assert first.stats()["fetches"] == 1 and first.stats()["stores"] == 1
    assert second.stats()["hits"] == 1 and second.stats()["fetches"] == 0


def test_async_shared_hit_and_pools_closed(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """The asyncio path reads and writes Redis too; each event loop's connections are closed
    when the loop ends (asyncio.run), so nothing is left unclosed (warnings are errors here)."""
    url = certs.route("/b.pem", pki[0].chain_pem, headers=CHAIN_HEADERS)
    first, second = cache(redis), cache(redis)
    one, two = source(pki, first), source(pki, second)
    assert asyncio.run(Verifier(one).acheck(sign(pki, url), orig_tn=ORIG)).ok
    assert asyncio.run(Verifier(two).acheck(sign(pki, url), orig_tn=ORIG)).ok
    assert certs.count("/b.pem") == 1
    assert second.stats()["hits"] == 1
    assert not first._aclients and not second._aclients


def test_each_client_gets_the_retry_of_its_kind() -> None:
    """The asyncio client's Retry is redis.asyncio's (redis-py 8.2 warns about a synchronous
    one there, and under warnings-as-errors every asyncio call failed); whatever the installed
    redis-py warns about, the kinds are checked here."""
    import redis.asyncio
    import redis.asyncio.retry
    import redis.retry

    shared = cache("redis://127.0.0.1:1/0")
    assert type(shared._client.get_retry()) is redis.retry.Retry

    async def kind() -> type:
        client = await shared._aclient()
        assert isinstance(client, redis.asyncio.Redis)
        return type(client.get_retry())

    assert asyncio.run(kind()) is redis.asyncio.retry.Retry
    assert not shared._aclients  # closed with its loop


def test_sync_check_of_two_urls_uses_redis_on_a_private_loop(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A synchronous check with two certificates to fetch runs them on a private event loop:
    the Redis pool of that loop is closed with it, and the other node gets both as hits."""
    u1 = certs.route("/c1.pem", pki[0].chain_pem, headers=CHAIN_HEADERS, delay=0.3)
    u2 = certs.route("/c2.pem", b"not a certificate", headers=CHAIN_HEADERS)
    shared = cache(redis)
    verdict = Verifier(source(pki, shared)).check([sign(pki, u2), sign(pki, u1)], orig_tn=ORIG)
    assert verdict.ok and verdict.index == 1
    assert not shared._aclients
    other = cache(redis)
    node = source(pki, other)
    assert Verifier(node).check(sign(pki, u1), orig_tn=ORIG).ok
    assert Verifier(node).check(sign(pki, u2), orig_tn=ORIG).reason is Reason.CERT_INVALID
    assert certs.count("/c1.pem") == certs.count("/c2.pem") == 1
    assert other.stats()["hits"] == 1 and other.stats()["negative_hits"] == 1


def _run_workers(
    tmp_path: Path, redis: RedisServer, pki: tuple[LabPKI, Path], identities: list[str],
    jobs: list[dict[str, Any]], start_in: float = 1.5,
) -> list[dict[str, Any]]:  # fmt: skip
    """Start one cluster_worker process per job, all starting at the same moment."""
    start_at = time.time() + start_in
    procs = []
    for n, extra in enumerate(jobs):
        job = {"redis": redis.url, "root": str(pki[1]), "identities": identities,
               "orig": ORIG, "dest": DEST, "start_at": start_at, **extra}  # fmt: skip
        path = tmp_path / f"job{n}.json"
        path.write_text(json.dumps(job))
        procs.append(_worker(path))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        results.append(json.loads(out))
    return results


def _worker(job: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(HERE)}
    return subprocess.Popen(
        [sys.executable, str(HERE / "cluster_worker.py"), str(job)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )  # fmt: skip


def test_shared_hit_across_processes(
    tmp_path: Path, redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A second process (a restarted node, another machine) starts warm: no fetch."""
    url = certs.route("/p.pem", pki[0].chain_pem, headers=CHAIN_HEADERS)
    ids = [sign(pki, url)]
    (first,) = _run_workers(tmp_path, redis, pki, ids, [{}], start_in=0)
    (second,) = _run_workers(tmp_path, redis, pki, ids, [{}], start_in=0)
    assert first["reasons"] == second["reasons"] == ["valid"]
    assert first["stats"]["fetches"] == 1
    assert second["stats"]["hits"] == 1 and second["stats"]["fetches"] == 0
    assert certs.count("/p.pem") == 1


def test_single_flight_across_processes(
    tmp_path: Path, redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A cold URL wanted by 4 processes x 8 callers at once (threads in two processes, asyncio
    tasks in the other two), with a slow certificate server: exactly one fetch, every check
    valid, the others waited for it."""
    url = certs.route("/cold.pem", pki[0].chain_pem, headers=CHAIN_HEADERS, delay=0.4)
    jobs = [{"threads": 8, "mode": mode} for mode in ("sync", "async", "sync", "async")]
    results = _run_workers(tmp_path, redis, pki, [sign(pki, url)], jobs)
    assert certs.count("/cold.pem") == 1
    for result in results:
        assert result["reasons"] == ["valid"] * 8
    assert sum(r["stats"]["fetches"] for r in results) == 1
    assert sum(r["stats"]["lock_waits"] + r["stats"]["hits"] for r in results) >= 3


def test_lock_holder_killed_mid_fetch(
    tmp_path: Path, redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """The process holding the fetch lock is killed while its fetch hangs: its lease lapses
    and a waiting process fetches, within its request's budget."""
    url = certs.route("/dies.pem", pki[0].chain_pem, headers=CHAIN_HEADERS,
                      slow_first=1, first_delay=30)  # fmt: skip
    ids = [sign(pki, url)]
    common = {"lock_lease": 0.5, "timeout": 5.0}
    holder_job = tmp_path / "holder.json"
    holder_job.write_text(json.dumps({"redis": redis.url, "root": str(pki[1]), "identities": ids,
                                      "orig": ORIG, "dest": DEST, **common}))  # fmt: skip
    holder = _worker(holder_job)
    try:
        certs.wait_for("/dies.pem", 1)  # the holder's fetch is in progress
        waiter_job = tmp_path / "waiter.json"
        waiter_job.write_text(json.dumps({**json.loads(holder_job.read_text()),
                                          "ready": str(tmp_path / "ready")}))  # fmt: skip
        waiter = _worker(waiter_job)
        deadline = time.monotonic() + 20
        while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # the waiter is polling the lock
        os.kill(holder.pid, signal.SIGKILL)
        out, err = waiter.communicate(timeout=30)
        assert waiter.returncode == 0, err.decode()
        result = json.loads(out)
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGKILL)
        holder.communicate()
    assert result["reasons"] == ["valid"]
    # Valid: it took over within its 5 s budget (else cert-fetch-timeout).
    assert result["stats"]["takeovers"] == 1 and result["stats"]["lock_waits"] == 1
    assert certs.count("/dies.pem") == 2


def test_waiter_bounded_by_request_budget(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A caller waiting for another node's slow fetch gives up when its own request's budget
    is spent (cert-fetch-timeout), without fetching itself; the holder's fetch completes."""
    url = certs.route("/slow.pem", pki[0].chain_pem, headers=CHAIN_HEADERS, delay=0.8)
    holder_cache = cache(redis)
    holder = source(pki, holder_cache)
    done: list[Reason] = []
    thread = threading.Thread(target=lambda: done.append(check(holder, sign(pki, url))))
    thread.start()
    certs.wait_for("/slow.pem", 1)
    waiter_cache = cache(redis)
    waiter = Verifier(source(pki, waiter_cache))
    verdict = waiter.check(sign(pki, url), orig_tn=ORIG)
    thread.join()
    assert done == [Reason.VALID]
    assert verdict.reason is Reason.VALID
    assert certs.count("/slow.pem") == 1
    assert waiter_cache.stats()["lock_waits"] == 1 and waiter_cache.stats()["fetches"] == 0
    short = Verifier(source(pki, cache(redis), timeout=0.3))
    url2 = certs.route("/slow2.pem", pki[0].chain_pem, headers=CHAIN_HEADERS, delay=0.8)
    thread = threading.Thread(target=lambda: done.append(check(holder, sign(pki, url2))))
    thread.start()
    certs.wait_for("/slow2.pem", 1)
    verdict = short.check(sign(pki, url2), orig_tn=ORIG)
    thread.join()
    # Not the holder's result (it came 0.8 s later): the waiter stopped at its 0.3 s budget.
    assert verdict.reason is Reason.CERT_FETCH_TIMEOUT, verdict.message
    assert "another process" in verdict.message
    assert certs.count("/slow2.pem") == 1


def _check_in(mode: str, src: CertificateSource, identity: str) -> Any:
    """The verdict of one check, made with the synchronous or the asyncio API."""
    if mode == "sync":
        return Verifier(src).check(identity, orig_tn=ORIG, dest_tn=DEST)
    return asyncio.run(Verifier(src).acheck(identity, orig_tn=ORIG, dest_tn=DEST))


def _counters(shared: RedisCache) -> dict[str, Any]:
    names = ("hits", "negative_hits", "misses", "fetches", "lock_waits", "takeovers", "stores")
    stats = shared.stats()
    return {name: stats[name] for name in names}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_counters_of_a_fetch_and_of_a_hit(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """The metrics (docs/cluster.md): the node that fetched counts a miss, a fetch and a
    store, and gives its fetch lock back (long before its 30 s lease ends); the node answered
    by Redis a hit, and nothing else."""
    url = certs.route(f"/count-{mode}.pem", pki[0].chain_pem)
    first, second = cache(redis, lock_lease=30), cache(redis)
    assert _check_in(mode, source(pki, first), sign(pki, url)).ok
    client = _client(redis)
    deadline = time.monotonic() + 10  # asyncio hands the release to the lease keeper's thread
    while client.keys("secsipid:lock:*") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.keys("secsipid:lock:*") == []
    assert _check_in(mode, source(pki, second), sign(pki, url)).ok
    zero = dict.fromkeys(("hits", "negative_hits", "misses", "fetches", "lock_waits",
                          "takeovers", "stores"), 0)  # fmt: skip
    assert _counters(first) == {**zero, "misses": 1, "fetches": 1, "stores": 1}
    assert _counters(second) == {**zero, "hits": 1}
    assert certs.count(f"/count-{mode}.pem") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_lock_of_a_dead_holder_is_taken_over(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A fetch lock whose holder died (its lease runs out, nothing is stored): the node waits
    for it, within its request's budget (0.9 s, the lease 0.3 s), then takes the lock and
    fetches itself -- one miss, one wait, one takeover, one fetch, counted once however often
    it looked while waiting."""
    shared = cache(redis, poll_interval=0.02, max_poll_interval=0.05)
    node = source(pki, shared)
    url = certs.route(f"/dead-{mode}.pem", pki[0].chain_pem)
    _client(redis).set(shared._keys(node._policy_key, url).lock, "dead-holder", px=300)
    with request_budget(0.9):
        verdict = _check_in(mode, node, sign(pki, url))
    assert verdict.ok, verdict.message
    counters = _counters(shared)
    assert counters == {"hits": 0, "negative_hits": 0, "misses": 1, "fetches": 1,
                        "lock_waits": 1, "takeovers": 1, "stores": 1}  # fmt: skip
    assert certs.count(f"/dead-{mode}.pem") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_waiting_backs_off(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A node waiting for a lock asks Redis less and less often (poll_interval, doubling up
    to max_poll_interval), not in a busy loop: waiting out a 0.5 s lease with a 0.05 s poll
    interval takes at most a dozen lookups (every pause is at least 0.05 s).  It tries to take
    the lock once, when a lookup finds it free, not at every look."""
    shared = cache(redis, poll_interval=0.05, max_poll_interval=0.2)
    node = source(pki, shared)
    url = certs.route(f"/backoff-{mode}.pem", pki[0].chain_pem)
    client = _client(redis)
    client.set(shared._keys(node._policy_key, url).lock, "slow-holder", px=500)
    attempts: list[str] = []
    acquire, aacquire = shared.acquire, shared.aacquire

    def counted(scope: str, info: str) -> str | None:
        attempts.append(info)
        return acquire(scope, info)

    async def acounted(scope: str, info: str) -> str | None:
        attempts.append(info)
        return await aacquire(scope, info)

    shared.acquire = counted  # type: ignore[method-assign]
    shared.aacquire = acounted  # type: ignore[method-assign]
    client.config_resetstat()
    assert _check_in(mode, node, sign(pki, url)).ok
    lookups = client.info("commandstats")["cmdstat_mget"]["calls"]
    assert 2 <= lookups <= 12, lookups
    assert _counters(shared)["takeovers"] == 1
    assert attempts == [url]


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_fetch_ended_between_lookup_and_lock(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """Another node's fetch ends between this node's lookup (nothing there) and its taking
    the lock: this node looks again once it holds the lock and uses that result instead of
    fetching the URL a second time."""
    url = certs.route(f"/race-{mode}.pem", pki[0].chain_pem)
    shared = cache(redis)
    node = source(pki, shared)
    other = source(pki, cache(redis))

    def other_node_first() -> None:
        assert check(other, sign(pki, url)) is Reason.VALID

    acquire, aacquire = shared.acquire, shared.aacquire

    def late_acquire(scope: str, info: str) -> str | None:
        other_node_first()
        return acquire(scope, info)

    async def late_aacquire(scope: str, info: str) -> str | None:
        await asyncio.to_thread(other_node_first)
        return await aacquire(scope, info)

    shared.acquire = late_acquire  # type: ignore[method-assign]
    shared.aacquire = late_aacquire  # type: ignore[method-assign]
    assert _check_in(mode, node, sign(pki, url)).ok
    assert certs.count(f"/race-{mode}.pem") == 1
    assert _counters(shared)["hits"] == 1 and _counters(shared)["fetches"] == 0
    # What the second look found went to this node's memory: its next check asks no one.
    assert _check_in(mode, node, sign(pki, url)).ok
    assert _counters(shared)["hits"] == 1 and certs.count(f"/race-{mode}.pem") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_wait_for_a_lock_bounded_by_the_budget(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A lock held longer than the caller's request budget (0.3 s): the source gives up with
    cert-fetch-timeout, saying why, without fetching."""
    shared = cache(redis)
    node = source(pki, shared)
    url = certs.route(f"/held-{mode}.pem", pki[0].chain_pem)
    _client(redis).set(shared._keys(node._policy_key, url).lock, "busy-holder", px=2900)

    async def in_a_task() -> Any:
        with request_budget(0.3):
            return await node.acredential_for(url)

    with pytest.raises(VerificationError) as exc:
        if mode == "sync":
            with request_budget(0.3):
                node.credential_for(url)
        else:
            asyncio.run(in_a_task())
    assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
    assert exc.value.message == f"{url}: waited too long for another process's fetch in progress"
    assert _counters(shared)["lock_waits"] == 1 and _counters(shared)["fetches"] == 0
    assert certs.count(f"/held-{mode}.pem") == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cached_answer_does_not_wait_for_a_fetch_in_flight(
    certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A certificate in the memory cache is answered at once, even while a fetch of the same
    URL is in progress on this source (here: stuck on a slow first response, while another
    source sharing the memory cache got the certificate)."""
    url = certs.route(f"/inflight-{mode}.pem", pki[0].chain_pem, slow_first=1, first_delay=5)
    memory = MemoryCache()
    node = CertificateSource(trust=None, allow_http=True, allow_private=True, memory=memory)
    other = CertificateSource(trust=None, allow_http=True, allow_private=True, memory=memory)

    async def main() -> bool:
        leader = asyncio.ensure_future(node.acredential_for(url))
        await asyncio.to_thread(certs.wait_for, f"/inflight-{mode}.pem", 1)
        await asyncio.to_thread(other.credential_for, url)  # the second request: fast
        if mode == "sync":
            credential = await asyncio.to_thread(node.credential_for, url)
        else:
            credential = await node.acredential_for(url)
        answered_first = not leader.done()
        assert credential.certificate == pki[0].leaf
        leader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await leader
        return answered_first

    assert asyncio.run(main())


# -- negative entries, TTLs, keys ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_negative_entry_shared(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A failed fetch is remembered in Redis for negative_ttl: another node answers it
    without asking the server, with the same reason and message."""
    url = certs.route("/gone.pem", b"gone", status=404)
    first, second = cache(redis), cache(redis)
    failed = _check_in(mode, source(pki, first, negative_ttl=30), sign(pki, url))
    assert failed.reason is Reason.CERT_FETCH_STATUS
    answered = _check_in(mode, source(pki, second, negative_ttl=30), sign(pki, url))
    assert (answered.reason, answered.message) == (failed.reason, failed.message)
    assert failed.message == f"{url}: HTTP 404"
    assert certs.count("/gone.pem") == 1
    assert second.stats()["negative_hits"] == 1
    (key,) = _client(redis).keys("secsipid:neg:*")
    assert 29_000 < _client(redis).pttl(key) <= 30_000


@pytest.mark.parametrize(
    ("headers", "stale", "expected"),
    [
        ({"Cache-Control": "max-age=120"}, 0, 120),
        ({"Cache-Control": "s-maxage=50, max-age=120"}, 0, 50),
        ({"Cache-Control": "max-age=120"}, 60, 180),
        ({}, 0, 3600),  # default_ttl
        ({"Cache-Control": "max-age=0"}, 0, 2),  # kept for the lock lease only, for waiters
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_ttl_follows_cache_control(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path],
    headers: dict[str, str], stale: float, expected: float, mode: str,
) -> None:  # fmt: skip
    """The Redis TTL is the response's freshness (plus stale_if_error), like the memory
    cache's expiry; an entry that is already stale is kept only as long as a lock lease."""
    url = certs.route("/ttl.pem", pki[0].chain_pem, headers={**CHAIN_HEADERS, **headers})
    assert _check_in(mode, source(pki, cache(redis), stale_if_error=stale), sign(pki, url)).ok
    client = _client(redis)
    (key,) = client.keys("secsipid:cert:*")
    assert (expected - 2) * 1000 < client.pttl(key) <= expected * 1000


def test_ttl_capped_by_not_after(
    redis: RedisServer, certs: CountingCertServer, tmp_path: Path
) -> None:
    """A certificate that expires before its Cache-Control lifetime is kept until notAfter."""
    import datetime as dt

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=100)
    lab = make_lab_pki(leaf_not_after=soon)
    root = lab.write(tmp_path)["root"]
    url = certs.route("/soon.pem", lab.chain_pem, headers={"Cache-Control": "max-age=86400"})
    assert check(source((lab, root), cache(redis)), sign((lab, root), url)) is Reason.VALID
    client = _client(redis)
    (key,) = client.keys("secsipid:cert:*")
    assert 90_000 < client.pttl(key) <= 100_000


def test_no_store_stays_out_of_redis(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """Cache-Control no-store: not written to Redis (like the directory cache)."""
    url = certs.route("/ns.pem", pki[0].chain_pem, headers={"Cache-Control": "no-store"})
    assert check(source(pki, cache(redis)), sign(pki, url)) is Reason.VALID
    assert _client(redis).keys("secsipid:cert:*") == []


def test_keys_are_hashed(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """Key names carry a digest of the fetch policy and URL, never the URL itself; another
    fetch policy (here: http not allowed) does not share the entry."""
    url = certs.route("/hashed.pem", pki[0].chain_pem)
    assert check(source(pki, cache(redis)), sign(pki, url)) is Reason.VALID
    keys = [k.decode() for k in _client(redis).keys("*")]
    assert len(keys) == 1 and keys[0].startswith("secsipid:cert:")
    assert "hashed" not in keys[0] and "127.0.0.1" not in keys[0]
    assert len(keys[0].rsplit(":", 1)[1]) == 40
    other = cache(redis)
    strict = CertificateSource(
        fetch=FetchPolicy(allow_http=True, allow_private=True, max_size=32 * 1024),
        trust=TrustPolicy(ca_file=str(pki[1])), memory=MemoryCache(), shared=other,
    )  # fmt: skip
    assert check(strict, sign(pki, url)) is Reason.VALID
    assert other.stats()["hits"] == 0 and certs.count("/hashed.pem") == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_shared_answers_are_kept_in_memory(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """What a node got from Redis (a certificate, or a failure with its reason and message)
    goes to its memory cache: its next checks of those URLs ask neither Redis nor the
    server."""
    good = certs.route(f"/kept-{mode}.pem", pki[0].chain_pem, headers=CHAIN_HEADERS)
    gone = certs.route(f"/kept-gone-{mode}.pem", b"gone", status=404)
    failed = Verifier(source(pki, cache(redis))).check(sign(pki, gone), orig_tn=ORIG)
    assert check(source(pki, cache(redis)), sign(pki, good)) is Reason.VALID
    shared = cache(redis)
    node = source(pki, shared)
    for _ in range(2):
        assert _check_in(mode, node, sign(pki, good)).ok
        verdict = _check_in(mode, node, sign(pki, gone))
        assert verdict.reason is Reason.CERT_FETCH_STATUS
        assert verdict.message == failed.message and "404" in verdict.message
    assert shared.stats()["hits"] == 1 and shared.stats()["negative_hits"] == 1
    assert shared.stats()["misses"] == 0
    assert certs.count(f"/kept-{mode}.pem") == certs.count(f"/kept-gone-{mode}.pem") == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_expired_shared_entries_are_fetched_again(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A certificate that was stale at once (max-age=0) and a failure remembered for no time
    (negative_ttl=0) stay in Redis for a lock lease, for the callers that waited for that
    fetch; any other node fetches again."""
    path, gone_path = f"/zero-{mode}.pem", f"/zero-gone-{mode}.pem"
    url = certs.route(path, pki[0].chain_pem, headers={"Cache-Control": "max-age=0"})
    gone = certs.route(gone_path, b"gone", status=404)
    for _ in range(2):
        shared = cache(redis)
        node = source(pki, shared, negative_ttl=0)
        assert _check_in(mode, node, sign(pki, url)).ok
        assert _check_in(mode, node, sign(pki, gone)).reason is Reason.CERT_FETCH_STATUS
        assert shared.stats()["fetches"] == 2 and shared.stats()["hits"] == 0
    assert _client(redis).keys("secsipid:cert:*") and _client(redis).keys("secsipid:neg:*")
    assert certs.count(path) == certs.count(gone_path) == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_waiter_takes_the_fetch_it_waited_for_even_when_stale_at_once(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A node waiting for another node's fetch takes its result, even a certificate with
    max-age=0 (already stale when it is read): it does not fetch the same URL again."""
    path = f"/zero-slow-{mode}.pem"
    url = certs.route(path, pki[0].chain_pem, delay=0.8, headers={"Cache-Control": "max-age=0"})
    done: list[Reason] = []
    holder = source(pki, cache(redis))
    thread = threading.Thread(target=lambda: done.append(check(holder, sign(pki, url))))
    thread.start()
    try:
        certs.wait_for(path, 1)
        waiter_cache = cache(redis)
        assert _check_in(mode, source(pki, waiter_cache), sign(pki, url)).ok
    finally:
        thread.join()
    assert done == [Reason.VALID]
    assert waiter_cache.stats()["lock_waits"] == 1 and waiter_cache.stats()["fetches"] == 0
    assert certs.count(path) == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_stale_shared_entry_served_while_the_server_fails(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """With stale_if_error, an expired certificate in Redis serves nodes that never had it
    while the server fails: the node whose refetch failed, and then a node that finds that
    failure in Redis (no fetch of its own); without stale_if_error the failure is the
    answer."""
    path = f"/stale-{mode}.pem"
    url = certs.route(path, pki[0].chain_pem, headers={"Cache-Control": "max-age=0"})
    assert check(source(pki, cache(redis), stale_if_error=60), sign(pki, url)) is Reason.VALID
    certs.route(path, b"down", status=503)
    refetched = cache(redis)
    assert _check_in(mode, source(pki, refetched, stale_if_error=60), sign(pki, url)).ok
    assert refetched.stats()["fetches"] == 1 and certs.count(path) == 2
    later = cache(redis)
    assert _check_in(mode, source(pki, later, stale_if_error=60), sign(pki, url)).ok
    assert later.stats()["negative_hits"] == 1 and later.stats()["fetches"] == 0
    failed = _check_in(mode, source(pki, cache(redis)), sign(pki, url))
    assert failed.reason is Reason.CERT_FETCH_STATUS
    assert certs.count(path) == 2


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_own_stale_entry_served_when_redis_has_none_and_the_server_fails(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """stale_if_error with a stale certificate in the node's own memory and nothing in Redis
    (evicted, or Redis flushed): the node takes the lock, its refetch fails, and its own stale
    copy answers -- the stale entry survives every step of the shared-cache dance."""
    path = f"/own-stale-{mode}.pem"
    url = certs.route(path, pki[0].chain_pem, headers={"Cache-Control": "max-age=0"})
    shared = cache(redis)
    node = source(pki, shared, stale_if_error=60)
    assert _check_in(mode, node, sign(pki, url)).ok
    _client(redis).flushall()
    certs.route(path, b"down", status=503)
    assert _check_in(mode, node, sign(pki, url)).ok
    assert certs.count(path) == 2 and _counters(shared)["fetches"] == 2
    # Without stale_if_error the failure is the answer.
    other = source(pki, cache(redis))
    assert _check_in(mode, other, sign(pki, url)).reason is Reason.CERT_FETCH_STATUS


# -- what comes back from Redis is not trusted ---------------------------------------------------


def _stored(redis: RedisServer) -> tuple[bytes, bytes]:
    client = _client(redis)
    (key,) = client.keys("secsipid:cert:*")
    value: bytes = client.get(key)
    return key, value


def test_entry_of_another_url_refused(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """An entry copied under another URL's key (it names its own URL) is refused: fetched."""
    good = certs.route("/good.pem", pki[0].chain_pem)
    assert check(source(pki, cache(redis)), sign(pki, good)) is Reason.VALID
    _, value = _stored(redis)
    other_lab = make_lab_pki(root=(pki[0].root_key, pki[0].root))
    target = certs.route("/target.pem", other_lab.chain_pem)
    node = source(pki, cache(redis))
    target_key = node.shared._keys(node._policy_key, target).cert  # type: ignore[union-attr]
    _client(redis).set(target_key, value)
    identity = Signer(other_lab.leaf_key, target).identity(ORIG, DEST, "A")
    assert check(node, identity) is Reason.VALID
    assert certs.count("/target.pem") == 1
    assert node.shared.stats()["refused"] >= 1  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda v: v.replace(b"CERTIFICATE-----\nMII", b"CERTIFICATE-----\nXXX"),
        lambda v: v.split(b"\n", 1)[0] + b"\n" + b"garbage",
        lambda v: b"\x00\xff" * 10,
        lambda v: v[: len(v) // 2],
        lambda v: v.replace(b'"expires":', b'"expires":"x","e":'),
    ],
    ids=["corrupt-der", "garbage-body", "not-ours", "truncated", "bad-expiry"],
)
def test_corrupt_entry_refused(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], tamper: Any
) -> None:
    """An entry whose body or metadata does not parse is refused and fetched again (and the
    fresh fetch replaces it)."""
    url = certs.route("/corrupt.pem", pki[0].chain_pem)
    assert check(source(pki, cache(redis)), sign(pki, url)) is Reason.VALID
    key, value = _stored(redis)
    _client(redis).set(key, tamper(value))
    node = cache(redis)
    assert check(source(pki, node), sign(pki, url)) is Reason.VALID
    assert node.stats()["refused"] >= 1 and node.stats()["fetches"] == 1
    assert certs.count("/corrupt.pem") == 2
    assert _stored(redis)[1] != tamper(value)


def test_planted_certificate_is_validated_not_trusted(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A well-formed entry for the right URL holding an attacker's certificate is validated
    like a download: its chain does not lead to the trust anchor (cert-untrusted)."""
    url = certs.route("/planted.pem", pki[0].chain_pem)
    node = source(pki, cache(redis))
    assert check(node, sign(pki, url)) is Reason.VALID
    key, value = _stored(redis)
    rogue_key = ec.generate_private_key(ec.SECP256R1())
    rogue = make_self_signed(rogue_key, spc="1234")
    head = value.split(b"\n", 1)[0]
    _client(redis).set(key, head + b"\n" + pem(rogue))
    victim = source(pki, cache(redis))
    forged = Signer(rogue_key, url).identity(ORIG, DEST, "A")
    assert check(victim, forged) is Reason.CERT_UNTRUSTED


def test_secret_refuses_planted_entries(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """With a secret, values carry an HMAC: one written without the secret (or changed) is
    refused and the certificate is fetched; nodes with the secret share entries."""
    url = certs.route("/mac.pem", pki[0].chain_pem)
    assert check(source(pki, cache(redis, secret="s3cret")), sign(pki, url)) is Reason.VALID
    key, value = _stored(redis)
    node = cache(redis, secret="s3cret")
    assert check(source(pki, node), sign(pki, url)) is Reason.VALID
    assert node.stats()["hits"] == 1 and certs.count("/mac.pem") == 1
    wrong = cache(redis, secret="other")
    assert check(source(pki, wrong), sign(pki, url)) is Reason.VALID
    assert wrong.stats()["refused"] >= 1 and certs.count("/mac.pem") == 2
    _client(redis).set(key, value.replace(b'"expires":', b'"expires":1e12,"x":'))
    node = cache(redis, secret="s3cret")
    assert check(source(pki, node), sign(pki, url)) is Reason.VALID
    assert node.stats()["refused"] >= 1 and certs.count("/mac.pem") == 3


def test_poisoned_negative_entry_refused(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A negative entry with a reason a fetch cannot produce (here: valid) is refused."""
    url = certs.route("/neg.pem", b"x", status=500)
    assert check(source(pki, cache(redis)), sign(pki, url)) is Reason.CERT_FETCH_STATUS
    client = _client(redis)
    (key,) = client.keys("secsipid:neg:*")
    client.set(key, client.get(key).replace(b'"cert-fetch-status"', b'"valid"'))
    certs.route("/neg.pem", pki[0].chain_pem)
    node = cache(redis)
    assert check(source(pki, node), sign(pki, url)) is Reason.VALID
    assert node.stats()["refused"] >= 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_refusals_and_budget_cuts_are_not_shared(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """What says nothing about the server is not written to Redis for the cluster: a URL
    refused by this node's policy, a fetch cut short by its request's budget."""
    shared = cache(redis)
    node = source(pki, shared)
    refused = f"http://user@127.0.0.1:{certs.port}/refused.pem"  # userinfo: always refused
    verdict = _check_in(mode, node, sign(pki, refused))
    assert verdict.reason is Reason.CERT_URL_REFUSED
    slow = certs.route(f"/budget-{mode}.pem", pki[0].chain_pem, delay=1.0)
    with request_budget(0.3):
        assert _check_in(mode, node, sign(pki, slow)).reason is Reason.CERT_FETCH_TIMEOUT
    assert _client(redis).keys("secsipid:neg:*") == []
    assert certs.count("/refused.pem") == 0


def test_negative_entry_keeps_its_libsecsipid_code(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A negative entry carries the failure's libsecsipid code (None: the reason's own): a
    node answered from it gives that code back, as the node that failed would have."""
    url = certs.route("/neg-code.pem", b"x", status=500)
    first = Verifier(source(pki, cache(redis))).check(sign(pki, url), orig_tn=ORIG)
    assert (first.reason, first.lib_code) == (Reason.CERT_FETCH_STATUS, -403)
    client = _client(redis)
    (key,) = client.keys("secsipid:neg:*")
    value = client.get(key)
    assert b'"lib_code":null' in value
    client.set(key, value.replace(b'"lib_code":null', b'"lib_code":-402'), keepttl=True)
    node = cache(redis)
    verdict = Verifier(source(pki, node)).check(sign(pki, url), orig_tn=ORIG)
    assert (verdict.reason, verdict.lib_code) == (Reason.CERT_FETCH_STATUS, -402)
    assert node.stats()["negative_hits"] == 1 and certs.count("/neg-code.pem") == 1


# -- faults ------------------------------------------------------------------------------------


def test_redis_down_verifications_succeed(
    certs: CountingCertServer, pki: tuple[LabPKI, Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing listens at the Redis URL: every verification succeeds (fetched locally); the
    breaker opens after 3 faults and Redis is then not asked; one log line."""
    need_redis_server()
    shared = cache(f"redis://127.0.0.1:{free_port()}/0", breaker_cooldown=60)
    caplog.set_level(logging.WARNING, logger="secsipid.redis")
    for n in range(6):
        url = certs.route(f"/down{n}.pem", pki[0].chain_pem)
        assert check(source(pki, shared), sign(pki, url)) is Reason.VALID
    stats = shared.stats()
    assert stats["breaker"] == BREAKER_OPEN and stats["breaker_opens"] == 1
    assert stats["errors"] == 3 and stats["skipped"] >= 3
    assert len([r for r in caplog.records if "unusable" in r.getMessage()]) == 1


def test_redis_stopped_and_restarted(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """Redis stops mid-service and comes back on the same port: verifications go on
    (fetched locally meanwhile); the breaker closes again by itself, logged once each way."""
    caplog.set_level(logging.WARNING, logger="secsipid.redis")
    shared = cache(redis, breaker_cooldown=0.2)
    node = source(pki, shared)
    url = certs.route("/r0.pem", pki[0].chain_pem)
    assert check(node, sign(pki, url)) is Reason.VALID
    redis.stop()
    for n in range(1, 5):
        url = certs.route(f"/r{n}.pem", pki[0].chain_pem)
        assert check(node, sign(pki, url)) is Reason.VALID
    assert shared.breaker_state == BREAKER_OPEN
    redis.start()
    time.sleep(0.3)
    url = certs.route("/r5.pem", pki[0].chain_pem)
    assert check(node, sign(pki, url)) is Reason.VALID
    assert shared.breaker_state == BREAKER_CLOSED
    assert _client(redis).keys("secsipid:cert:*")  # r5 went to Redis again
    messages = [r.getMessage() for r in caplog.records]
    assert len([m for m in messages if "unusable" in m]) == 1
    assert len([m for m in messages if "is back" in m]) == 1


def test_redis_restart_with_pooled_connection(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A restart between two calls closes the pooled connection: the next call reconnects
    (one immediate retry), no fault is counted and the breaker stays closed."""
    shared = cache(redis)
    node = source(pki, shared)
    assert check(node, sign(pki, certs.route("/pool0.pem", pki[0].chain_pem))) is Reason.VALID
    redis.restart()
    assert check(node, sign(pki, certs.route("/pool1.pem", pki[0].chain_pem))) is Reason.VALID
    assert shared.stats()["errors"] == 0 and shared.stats()["stores"] == 2


def test_redis_slow(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A Redis that accepts connections but answers nothing (SIGSTOP): each call gives up
    after the short timeout, then the breaker stops asking; verifications succeed."""
    shared = cache(redis, timeout=0.2, breaker_cooldown=60)
    node = source(pki, shared)
    assert check(node, sign(pki, certs.route("/s0.pem", pki[0].chain_pem))) is Reason.VALID
    redis.pause()
    try:
        for n in range(1, 6):
            url = certs.route(f"/s{n}.pem", pki[0].chain_pem)
            assert check(node, sign(pki, url)) is Reason.VALID
    finally:
        redis.resume()
    stats = shared.stats()
    assert stats["breaker"] == BREAKER_OPEN
    assert stats["errors"] == 3  # each a timed-out call; then Redis is not asked
    assert stats["skipped"] >= 2


def test_redis_slow_async(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """The same with asyncio: the event loop is never blocked past the Redis timeout."""
    shared = cache(redis, timeout=0.2, breaker_cooldown=60)
    verifier = Verifier(source(pki, shared))

    async def run() -> list[bool]:
        oks = []
        for n in range(4):
            url = certs.route(f"/as{n}.pem", pki[0].chain_pem)
            oks.append((await verifier.acheck(sign(pki, url), orig_tn=ORIG)).ok)
        return oks

    redis.pause()
    try:
        assert asyncio.run(run()) == [True] * 4
    finally:
        redis.resume()
    assert shared.breaker_state == BREAKER_OPEN


def test_garbage_server(certs: CountingCertServer, pki: tuple[LabPKI, Path]) -> None:
    """Something that is not Redis answers at the URL: verifications succeed, sync and async;
    the answers count as faults and open the breaker."""
    need_redis_server()
    garbage = GarbageServer()
    try:
        shared = cache(garbage, breaker_cooldown=60)
        node = source(pki, shared)
        for n in range(4):
            url = certs.route(f"/g{n}.pem", pki[0].chain_pem)
            assert check(node, sign(pki, url)) is Reason.VALID
            assert asyncio.run(Verifier(node).acheck(sign(pki, url + "?a"), orig_tn=ORIG)).ok
        assert shared.stats()["errors"] >= 3 and shared.breaker_state == BREAKER_OPEN
        assert garbage.connections >= 1
    finally:
        garbage.stop()


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "plant",
    [
        lambda c, k: c.rpush(k, "x"),  # a key of another type (MGET reads it as nothing)
        lambda c, k: c.set(k, "held-forever"),  # a lock without expiry
        lambda c, k: c.set(k, "too-long", px=3_600_000),  # a lease no holder asks for
    ],
    ids=["wrong-type", "no-expiry", "long-lease"],
)
def test_lock_that_no_fetch_holds_is_ignored(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], plant: Any,
    mode: str,
) -> None:  # fmt: skip
    """A fetch lock that no caller of ours could hold (another type, no expiry, a lease
    longer than ours): not waited for, the certificate is fetched at once -- and, fetched
    without the lock, neither it nor a failure is written to Redis."""
    shared = cache(redis)
    node = source(pki, shared)
    url = certs.route("/badlock.pem", pki[0].chain_pem)
    gone = certs.route("/badlock-gone.pem", b"gone", status=404)
    plant(_client(redis), shared._keys(node._policy_key, url).lock)
    plant(_client(redis), shared._keys(node._policy_key, gone).lock)
    assert _check_in(mode, node, sign(pki, url)).ok
    assert shared.stats()["refused"] == 1 and shared.stats()["lock_waits"] == 0
    assert certs.count("/badlock.pem") == 1
    assert _check_in(mode, node, sign(pki, gone)).reason is Reason.CERT_FETCH_STATUS
    assert certs.count("/badlock-gone.pem") == 1
    assert _client(redis).keys("secsipid:cert:*") == _client(redis).keys("secsipid:neg:*") == []


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("redis_state", ["none", "down", "unusable-lock"])
def test_stale_if_error_whatever_redis_does(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path], mode: str,
    redis_state: str,
) -> None:  # fmt: skip
    """stale_if_error serves an expired certificate while its server fails, whether there is
    no shared cache, Redis is down, or a lock no fetch of ours holds makes the node fetch on
    its own."""
    url = certs.route(f"/soe-{redis_state}-{mode}.pem", pki[0].chain_pem,
                      headers={"Cache-Control": "max-age=0"})  # fmt: skip
    shared = {
        "none": None,
        "down": cache(f"redis://127.0.0.1:{free_port()}/0"),
        "unusable-lock": cache(redis),
    }[redis_state]
    node = source(pki, shared, stale_if_error=600)
    assert _check_in(mode, node, sign(pki, url)).ok
    certs.route(f"/soe-{redis_state}-{mode}.pem", b"down", status=503)
    if shared is not None and redis_state == "unusable-lock":
        _client(redis).set(shared._keys(node._policy_key, url).lock, "held-forever")
    verdict = _check_in(mode, node, sign(pki, url))
    assert verdict.ok, verdict.message
    assert certs.count(f"/soe-{redis_state}-{mode}.pem") == 2


# -- the breaker, alone ------------------------------------------------------------------------


def test_breaker_states() -> None:
    """Closed until N faults in a row; open for the cooldown; then one probe at a time
    (half-open); a good probe closes it, a bad one opens it again.  failure() tells when an
    outage starts (the first fault after a good call) and when the breaker opens; success()
    when an outage ends."""
    breaker = _Breaker(failures=2, cooldown=0.05)
    assert breaker.allow() and breaker.failure() == (True, False)
    assert breaker.state == BREAKER_CLOSED
    assert breaker.success() is True  # a blip: started and ended
    assert breaker.success() is False
    assert breaker.failure() == (True, False)
    assert breaker.failure() == (False, True)
    assert breaker.state == BREAKER_OPEN and breaker.opens == 1
    assert not breaker.allow()
    time.sleep(0.06)
    assert breaker.allow() and breaker.state == BREAKER_HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    assert breaker.failure() == (False, False)
    assert breaker.state == BREAKER_OPEN and breaker.opens == 1
    time.sleep(0.06)
    assert breaker.allow()
    assert breaker.success() is True and breaker.state == BREAKER_CLOSED
    assert breaker.allow()


def test_settings_refused() -> None:
    """Unusable settings are refused when the cache is built."""
    for bad in ({"timeout": 0}, {"lock_lease": 0.01}, {"breaker_failures": 0},
                {"poll_interval": 1, "max_poll_interval": 0.5}):  # fmt: skip
        with pytest.raises(ValueError, match="RedisCache"):
            RedisCache("redis://127.0.0.1:1/0", **bad)
    with pytest.raises(ValueError, match="RedisCache"):
        RedisCache("http://127.0.0.1/")
    with pytest.raises(TypeError, match=r"^CertificateSource: give shared= or redis=, not both$"):
        CertificateSource(trust=None, shared=RedisCache("redis://127.0.0.1:1/0"),
                          redis="redis://127.0.0.1:1/0")  # fmt: skip
    assert "hunter2" not in repr(RedisCache("redis://user:hunter2@127.0.0.1:1/0"))


# -- the CLI -----------------------------------------------------------------------------------


def _cli(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "secsipid", *argv], capture_output=True, text=True, timeout=60
    )


def test_cli_check_redis(
    redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """``secsipid check --redis URL``: a second process finds the certificate in Redis; a
    Redis that is down changes nothing but the fetch; a bad URL is a usage error."""
    url = certs.route("/cli.pem", pki[0].chain_pem)
    common = ["--allow-http", "--allow-private", "--ca-file", str(pki[1]), "--orig-tn", ORIG]
    for _ in range(2):
        done = _cli("check", sign(pki, url), "--redis", redis.url, *common)
        assert done.returncode == 0, done.stdout + done.stderr
    assert certs.count("/cli.pem") == 1
    dead = f"redis://127.0.0.1:{free_port()}/0"
    done = _cli("check", sign(pki, url), "--redis", dead, *common)
    assert done.returncode == 0 and "valid: yes" in done.stdout, done.stderr
    assert certs.count("/cli.pem") == 2
    done = _cli("check", sign(pki, url), "--redis", "mysql://127.0.0.1/0", *common)
    assert done.returncode == 2 and "--redis" in done.stderr and "Traceback" not in done.stderr
