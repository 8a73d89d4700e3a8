"""A caller who controls the Identity header, the certificate server and its name servers
(issue 7): the whole check of a request fits in one time budget, a slow name delays only the
fetches that need it, hostile URLs and addresses are refused with reason codes, caches are
keyed by everything that changes what a fetch accepts, and failures cost little memory.

Real servers on loopback in their own processes (certserver.py for HTTP(S), dnsserver.py for
DNS), stopped by PID.  The wall-clock assertions are deadlines (a bounded stall is the
property under test), with margins far below what the unbounded behaviour took (15-80 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import random
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fetchkit import CertServer, DNSServer, TLSFiles, make_tls_files
from helpers import run_cli
from secsipid import (
    CertificateSource,
    Credential,
    FetchPolicy,
    MemoryCache,
    Reason,
    Signer,
    TrustPolicy,
    VerificationError,
    Verifier,
    VerifyPolicy,
)
from secsipid._fetch import (
    Fetcher,
    request_budget,
    request_deadline,
    request_remaining,
    special_purpose,
)
from secsipid._pki import LabPKI, make_lab_pki

ORIG, DEST = "12155550121", "12155550131"
Routes = dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLSFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabPKI, Path]:
    lab = make_lab_pki(spc="1234")
    files = lab.write(tmp_path_factory.mktemp("pki"))
    return lab, files["root"]


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


@pytest.fixture
def dns_server(tmp_path: Path) -> Iterator[Callable[[dict[str, Any]], DNSServer]]:
    started: list[DNSServer] = []

    def start(zone: dict[str, Any]) -> DNSServer:
        server = DNSServer(tmp_path / f"dns{len(started)}", zone)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def chain(pki: tuple[LabPKI, Path]) -> dict[str, Any]:
    return {"body": pki[0].chain_pem.decode()}


def source_for(
    tls: TLSFiles, pki: tuple[LabPKI, Path], *, memory: MemoryCache | None = None, **fetch: Any
) -> CertificateSource:
    options: dict[str, Any] = {"tls_ca_file": str(tls.ca), "allow_private": True, **fetch}
    return CertificateSource(
        fetch=FetchPolicy(**options),
        trust=TrustPolicy(ca_file=str(pki[1])),
        memory=memory if memory is not None else MemoryCache(),
    )


def sign(pki: tuple[LabPKI, Path], url: str) -> str:
    return Signer(pki[0].leaf_key, url).identity(ORIG, DEST, "A")


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


# -- item 1: one time budget per request ----------------------------------------------------------


def hostile_routes(count: int, mode: str = "hang") -> Routes:
    return {f"/hang{i}.pem": {"mode": mode} for i in range(count)}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_trust_checks_of_a_many_url_request_run_where_the_loop_is(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two values at two uncached URLs are fetched at once.  On check()'s private event loop
    the trust check of the certificate that arrives runs inline (nothing else shares that
    loop: a worker thread would only add a hop); acheck() runs it in a worker thread, so that
    a CRL fetch does not block the caller's loop."""
    import anyio.to_thread

    server = serve({"/gone.pem": {"status": 404}, "/sti.pem": chain(pki)})
    values = [sign(pki, server.url("/gone.pem")), sign(pki, server.url("/sti.pem"))]
    verifier = Verifier(source_for(tls, pki, timeout=3.0))
    offloaded: list[object] = []
    run_sync = anyio.to_thread.run_sync

    async def counting(func: Any, *args: Any, **kwargs: Any) -> Any:
        offloaded.append(func)
        return await run_sync(func, *args, **kwargs)

    monkeypatch.setattr(anyio.to_thread, "run_sync", counting)
    if mode == "sync":
        verdict = verifier.check(values, orig_tn=ORIG, dest_tn=DEST)
    else:
        verdict = asyncio.run(verifier.acheck(values, orig_tn=ORIG, dest_tn=DEST))
    assert verdict.ok and verdict.index == 1, verdict
    assert verdict.failures[0].reason is Reason.CERT_FETCH_STATUS
    assert len(offloaded) == (0 if mode == "sync" else 1)


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_valid_value_behind_fifteen_hanging_ones(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """15 values whose info never answers, then one valid value whose certificate is not
    cached: the certificates are fetched at once, the valid one ends the check long before
    the budget, and the hanging fetches are abandoned (the request took 15 x timeout)."""
    server = serve({**hostile_routes(15), "/sti.pem": chain(pki)})
    values = [sign(pki, server.url(f"/hang{i}.pem")) for i in range(15)]
    values.append(sign(pki, server.url("/sti.pem")))
    verifier = Verifier(source_for(tls, pki, timeout=3.0))
    if mode == "sync":
        verdict, elapsed = timed(lambda: verifier.check(values, orig_tn=ORIG, dest_tn=DEST))
    else:
        verdict, elapsed = timed(
            lambda: asyncio.run(verifier.acheck(values, orig_tn=ORIG, dest_tn=DEST))
        )
    assert verdict.ok, verdict.message
    assert verdict.index == 15
    assert elapsed < 3.0, f"{elapsed:.2f} s: the check waited for the hanging servers"
    assert server.hits()["/sti.pem"] == 1


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_cached_credential_is_tried_first(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A value whose certificate is cached is checked before any fetch: the hostile servers
    of the other values are never even asked."""
    server = serve({**hostile_routes(15), "/sti.pem": chain(pki)})
    good = sign(pki, server.url("/sti.pem"))
    verifier = Verifier(source_for(tls, pki, timeout=3.0))
    assert verifier.check(good).ok  # warms the cache
    values = [sign(pki, server.url(f"/hang{i}.pem")) for i in range(15)] + [good]
    if mode == "sync":
        verdict, elapsed = timed(lambda: verifier.check(values))
    else:
        verdict, elapsed = timed(lambda: asyncio.run(verifier.acheck(values)))
    assert verdict.ok and verdict.index == 15
    assert elapsed < 1.0
    hits = server.hits()
    assert hits == {"/sti.pem": 1}, hits


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_hostile_farm_fits_in_the_budget(
    serve: Callable[..., CertServer],
    dns_server: Callable[[dict[str, Any]], DNSServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    mode: str,
) -> None:
    """Sixteen values at a hostile farm -- servers that never answer, trickle the body, send
    headers slowly, and names whose DNS server never answers -- take one budget in all, and
    the verdict is the 436 of a fetch timeout, never an internal error."""
    budget = 1.5
    body = pki[0].chain_pem.decode()
    routes: Routes = {
        **hostile_routes(4),
        **{
            f"/trickle{i}.pem": {"mode": "trickle", "interval": 0.2, "body": body} for i in range(4)
        },
        **{f"/slow{i}.pem": {"delay": 30, "body": body} for i in range(4)},
    }
    server = serve(routes)
    dns = dns_server({"*.hang.test": {"mode": "hang"}})
    urls = [server.url(path) for path in routes]
    urls += [f"https://h{i}.hang.test:{server.port}/sti.pem" for i in range(4)]
    values = [sign(pki, url) for url in urls]
    assert len(values) == 16
    source = source_for(tls, pki, timeout=5.0, nameservers=(dns.nameserver,))
    verifier = Verifier(source, policy=VerifyPolicy(timeout=budget))
    if mode == "sync":
        verdict, elapsed = timed(lambda: verifier.check(values))
    else:
        verdict, elapsed = timed(lambda: asyncio.run(verifier.acheck(values)))
    assert not verdict.ok
    assert verdict.reason is Reason.CERT_FETCH_TIMEOUT and verdict.sip_status == 436
    assert {f.reason for f in verdict.failures} == {Reason.CERT_FETCH_TIMEOUT}
    assert len(verdict.failures) == 16
    assert budget - 0.1 <= elapsed < budget + 1.5, f"{elapsed:.2f} s for a {budget} s budget"


def test_budget_holds_when_called_inside_an_event_loop(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """The synchronous check called from async code (no private loop possible) fetches one
    URL after the other, still within one budget."""
    server = serve(hostile_routes(3))
    values = [sign(pki, server.url(f"/hang{i}.pem")) for i in range(3)]
    verifier = Verifier(source_for(tls, pki, timeout=5.0), policy=VerifyPolicy(timeout=1.0))

    async def inside() -> Any:
        return verifier.check(values)

    verdict, elapsed = timed(lambda: asyncio.run(inside()))
    assert verdict.reason is Reason.CERT_FETCH_TIMEOUT
    assert elapsed < 2.5, f"{elapsed:.2f} s for a 1 s budget (3 hanging servers: was 15 s)"


def test_budget_bounds_fetches_and_nests(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """``request_budget`` yields its deadline; a fetch within a budget it fits in succeeds;
    an inner budget never extends an outer one (the earlier deadline wins)."""
    server = serve({"/sti.pem": chain(pki)})
    source = source_for(tls, pki, timeout=5.0)
    start = time.monotonic()
    with request_budget(3.0) as deadline:
        assert start + 3.0 <= deadline <= time.monotonic() + 3.0
        assert 0 < request_remaining(60.0) <= 3.0
        assert source.credential_for(server.url("/sti.pem")).certificate is not None
        with request_budget(30.0) as inner:
            assert inner == deadline
        with request_budget(1.0) as inner:
            assert inner < deadline and 0 < request_remaining(60.0) <= 1.0
    assert request_remaining(60.0) == 60.0  # outside of any request


def test_budget_cut_is_not_remembered_as_a_dead_server(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A fetch cut short by its request's budget says nothing about the server: it is not
    put in the negative cache (a fetch that used its whole own timeout is)."""
    server = serve({"/slow.pem": {"delay": 1.0, **chain(pki)}})
    url = server.url("/slow.pem")
    memory = MemoryCache()
    source = source_for(tls, pki, memory=memory, timeout=5.0)
    with request_budget(0.3), pytest.raises(VerificationError) as exc:
        source.credential_for(url)
    assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
    assert memory.stats()["negative_entries"] == 0
    assert source.credential_for(url).certificate is not None  # the server was fine
    short = source_for(tls, pki, memory=MemoryCache(), timeout=0.3)
    with pytest.raises(VerificationError):
        short.credential_for(url)
    assert short.memory.stats()["negative_entries"] == 1


def test_waiting_for_another_callers_fetch_respects_the_budget(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A caller that finds the URL being fetched by another thread waits only as long as its
    own request's budget (it used to wait for the fetch timeout plus 5 s)."""
    server = serve({"/hang.pem": {"mode": "hang"}})
    url = server.url("/hang.pem")
    source = source_for(tls, pki, timeout=3.0)
    led: list[VerificationError] = []

    def lead() -> None:
        try:
            source.credential_for(url)
        except VerificationError as exc:
            led.append(exc)

    leader = threading.Thread(target=lead)
    leader.start()
    time.sleep(0.2)
    try:
        start = time.monotonic()
        with request_budget(0.3), pytest.raises(VerificationError) as exc:
            source.credential_for(url)
        elapsed = time.monotonic() - start
        assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
        assert exc.value.message == f"{url}: waited too long for a fetch in progress"
        assert elapsed < 1.5, f"{elapsed:.2f} s"
    finally:
        leader.join()
    assert [e.reason for e in led] == [Reason.CERT_FETCH_TIMEOUT]


def test_task_waiting_for_another_tasks_fetch_respects_the_budget(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """asyncio: a task that finds the URL being fetched by another task waits only as long as
    its own request's budget, then says so; the other task's fetch goes on, and nothing is
    left in flight afterwards."""
    server = serve({"/hang.pem": {"mode": "hang"}})
    url = server.url("/hang.pem")
    source = source_for(tls, pki, timeout=3.0)

    async def main() -> tuple[VerificationError, bool]:
        leader = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.2)
        with request_budget(0.3), pytest.raises(VerificationError) as exc:
            await source.acredential_for(url)
        still_fetching = not leader.done()
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        return exc.value, still_fetching

    error, still_fetching = asyncio.run(main())
    assert error.reason is Reason.CERT_FETCH_TIMEOUT
    assert error.message == f"{url}: waited too long for a fetch in progress"
    assert still_fetching
    assert not source._inflight


def _idle(source: CertificateSource) -> bool:
    """The single flight keeps nothing: no fetch in progress, no waiter count, no fetch whose
    leading caller left."""
    return not source._inflight and not source._waiting and not source._orphans


def _slow_url(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], delay: float
) -> tuple[CertServer, str, CertificateSource]:
    """A server whose /slow.pem answers the lab chain after ``delay`` seconds, its URL, and a
    source with a 3 s fetch timeout."""
    server = serve({"/slow.pem": {"delay": delay, **chain(pki)}})
    return server, server.url("/slow.pem"), source_for(tls, pki, timeout=3.0)


async def _leader_leaves_while_a_thread_waits(
    source: CertificateSource, url: str, got: list[Any], budget: float | None = None
) -> threading.Thread:
    """A task starts the fetch of ``url``, a thread waits for it (within ``budget``, if
    given), then the task is cancelled.  Returns the thread; its outcome lands in ``got``."""

    def wait() -> None:
        try:
            with request_budget(budget) if budget else contextlib.nullcontext():
                got.append(source.credential_for(url))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertions
            got.append(exc)

    leader = asyncio.ensure_future(source.acredential_for(url))
    await asyncio.sleep(0.1)
    waiter = threading.Thread(target=wait)
    waiter.start()
    await asyncio.sleep(0.1)
    leader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leader
    return waiter


def test_thread_waiting_keeps_a_cancelled_tasks_fetch(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A thread waiting for the fetch of an asyncio task that is then cancelled (its request
    found a valid value elsewhere): the task returns at once, the fetch goes on for the
    thread, which gets its result; one request in all."""
    server, url, source = _slow_url(serve, tls, pki, 0.5)
    got: list[Any] = []

    async def main() -> None:
        waiter = await _leader_leaves_while_a_thread_waits(source, url, got)
        await asyncio.to_thread(waiter.join)

    asyncio.run(main())
    assert len(got) == 1 and got[0].certificate == pki[0].leaf, got
    assert server.hits()["/slow.pem"] == 1
    assert _idle(source)


def test_last_thread_to_give_up_cancels_a_fetch_its_leader_left(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """The task that started a fetch is cancelled while a thread waits for it: the fetch goes
    on for the thread; when the thread's own budget runs out (the last caller to leave), it
    cancels the fetch on the task's event loop: nothing keeps running, nothing is cached."""
    server, url, source = _slow_url(serve, tls, pki, 1.0)
    got: list[Any] = []

    async def main() -> Credential | None:
        waiter = await _leader_leaves_while_a_thread_waits(source, url, got, budget=0.4)
        assert source._orphans  # going on for the thread
        await asyncio.to_thread(waiter.join)
        await asyncio.sleep(0.05)  # the cancellation the thread sent is handled
        assert not source._inflight and not source._orphans
        await asyncio.sleep(1.0)  # past the server's delay: no answer was taken in
        return source._lookup(url, time.time())[0]

    assert asyncio.run(main()) is None
    assert len(got) == 1 and isinstance(got[0], VerificationError), got
    assert got[0].reason is Reason.CERT_FETCH_TIMEOUT
    assert server.hits()["/slow.pem"] == 1
    assert not source._waiting


@pytest.mark.parametrize("waiter", ["task", "thread"])
def test_a_fetch_cut_by_its_leaders_budget_is_fetched_again_by_a_waiter(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], waiter: str
) -> None:
    """The caller that started a fetch had a short budget, which cut the fetch; a caller
    waiting for it with time left does not inherit that cut (it is no verdict on the URL): it
    fetches again within its own budget and gets the certificate."""
    server, url, source = _slow_url(serve, tls, pki, 0.6)

    async def lead() -> None:
        with request_budget(0.3), pytest.raises(VerificationError) as exc:
            await source.acredential_for(url)
        assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT

    async def wait_in_a_task() -> Any:
        await asyncio.sleep(0.1)
        with request_budget(3.0):
            return await source.acredential_for(url)

    def wait_in_a_thread() -> Any:
        time.sleep(0.1)
        with request_budget(3.0):
            return source.credential_for(url)

    async def main() -> Any:
        if waiter == "task":
            _, got = await asyncio.gather(lead(), wait_in_a_task())
        else:
            _, got = await asyncio.gather(lead(), asyncio.to_thread(wait_in_a_thread))
        return got

    credential = asyncio.run(main())
    assert credential.certificate == pki[0].leaf
    assert server.hits()["/slow.pem"] == 2
    assert _idle(source)


def test_a_fetch_nobody_waits_for_ends_with_its_leader(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """The only caller of a fetch is cancelled: the fetch is cancelled with it (nothing left
    running, no answer taken in afterwards)."""
    server, url, source = _slow_url(serve, tls, pki, 0.5)

    async def main() -> Credential | None:
        leader = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.1)
        leader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leader
        await asyncio.sleep(0.05)
        assert not source._inflight and not source._orphans
        await asyncio.sleep(0.6)  # past the server's delay
        return source._lookup(url, time.time())[0]

    assert asyncio.run(main()) is None
    assert server.hits()["/slow.pem"] == 1


def test_a_fetch_goes_on_until_its_last_waiter_leaves(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """The caller that started a fetch and one of two callers waiting for it leave: the
    fetch goes on for the other, which gets its result (one request)."""
    server, url, source = _slow_url(serve, tls, pki, 0.5)

    async def main() -> Any:
        leader = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.1)
        first, second = (asyncio.ensure_future(source.acredential_for(url)) for _ in range(2))
        await asyncio.sleep(0.1)
        assert source._waiting == {source._inflight[url]: 2}
        for task in (leader, first):
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await asyncio.sleep(0.05)
        assert source._orphans and not second.done()  # still fetching for the second
        return await second

    assert asyncio.run(main()).certificate == pki[0].leaf
    assert server.hits()["/slow.pem"] == 1
    assert _idle(source)


def test_a_waiter_cancelled_with_its_fetch_stays_cancelled(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """The fetch and a task waiting for it are cancelled together (as when their event loop
    shuts down): the waiter ends cancelled; it does not take the cancelled fetch for its cue
    to fetch the URL itself."""
    server, url, source = _slow_url(serve, tls, pki, 0.5)
    outcome: list[Any] = []

    async def wait() -> None:
        try:
            outcome.append(await source.acredential_for(url))
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise

    async def main() -> None:
        leader = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.1)
        waiter = asyncio.ensure_future(wait())
        await asyncio.sleep(0.1)
        (fetch,) = [t for t in asyncio.all_tasks() if t.get_coro().__name__ == "_alead"]
        shared = source._inflight[url]
        fetch.cancel()
        while not shared.cancelled():  # the fetch has ended; the waiter has not heard yet
            await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(leader, waiter, return_exceptions=True)
        await asyncio.sleep(0.6)  # a fetch started again would be answered by now

    asyncio.run(main())
    assert outcome == ["cancelled"]
    assert server.hits()["/slow.pem"] == 1
    assert _idle(source)


@pytest.mark.parametrize("waiter_kind", ["task", "blocking"])
def test_a_waiter_on_another_loop_fetches_again_when_the_fetch_ends_with_its_loop(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], waiter_kind: str
) -> None:
    """A fetch runs on one thread's event loop; another thread waits for it, in a task on its
    own loop or blocking; the first loop ends (asyncio.run cancels what is left, the fetch with
    it).  The waiter, not cancelled itself, fetches the URL again and gets the certificate: the
    cancellation of a loop it does not run on never reaches it as its own."""
    server, url, source = _slow_url(serve, tls, pki, 0.5)
    got: list[Any] = []

    async def lead() -> None:
        leading = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.3)  # then the loop ends, with the fetch still running
        assert not leading.done()

    def wait_on_its_own_loop() -> None:
        try:
            if waiter_kind == "task":
                got.append(asyncio.run(source.acredential_for(url)))
            else:
                got.append(source.credential_for(url))
        except BaseException as exc:  # noqa: BLE001 - collected for the assertions
            got.append(exc)

    leader = threading.Thread(target=asyncio.run, args=(lead(),))
    leader.start()
    time.sleep(0.1)
    waiter = threading.Thread(target=wait_on_its_own_loop)
    waiter.start()
    leader.join()
    waiter.join()
    assert len(got) == 1 and got[0].certificate == pki[0].leaf, got
    assert server.hits()["/slow.pem"] == 2
    assert _idle(source)


def test_a_waiter_outliving_the_loop_of_its_fetch_ends_on_its_budget(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A thread waits for a fetch that a task started; the task is cancelled and its event
    loop closed without running what was left (the fetch dies with it).  The thread ends on
    its own budget with cert-fetch-timeout, not an error about the closed loop."""
    server, url, source = _slow_url(serve, tls, pki, 1.0)
    got: list[Any] = []
    loop = asyncio.new_event_loop()
    try:
        waiter = loop.run_until_complete(
            _leader_leaves_while_a_thread_waits(source, url, got, budget=0.6)
        )
    finally:
        loop.close()  # the adopted fetch is still pending: it is never run again
    waiter.join()
    assert len(got) == 1 and isinstance(got[0], VerificationError), got
    assert got[0].reason is Reason.CERT_FETCH_TIMEOUT
    assert server.hits()["/slow.pem"] == 1
    assert not source._waiting and not source._orphans


@pytest.mark.parametrize("who_leaves", ["leader", "waiter"])
def test_a_failure_after_its_caller_left_is_not_logged_as_unread(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    caplog: pytest.LogCaptureFixture,
    who_leaves: str,
) -> None:
    """A shared fetch fails (HTTP 404) after a caller left it: the caller that started it (the
    waiter gets the failure), or a waiter whose budget ran out.  asyncio would log the
    failure as "exception was never retrieved" when the future is collected; it is read."""
    server = serve({"/gone.pem": {"delay": 0.4, "status": 404}})
    url = server.url("/gone.pem")
    source = source_for(tls, pki, timeout=3.0)

    async def wait(budget: float) -> Any:
        with request_budget(budget):
            return await source.acredential_for(url)

    async def main() -> list[Any]:
        leader = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.1)
        waiter = asyncio.ensure_future(wait(3.0 if who_leaves == "leader" else 0.1))
        await asyncio.sleep(0.05)
        if who_leaves == "leader":
            leader.cancel()
        return list(await asyncio.gather(leader, waiter, return_exceptions=True))

    results = asyncio.run(main())
    reasons = [getattr(r, "reason", type(r).__name__) for r in results]
    if who_leaves == "leader":
        assert reasons == ["CancelledError", Reason.CERT_FETCH_STATUS]
    else:
        assert reasons == [Reason.CERT_FETCH_STATUS, Reason.CERT_FETCH_TIMEOUT]
    gc.collect()
    assert [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()] == []


def test_single_flight_bookkeeping_survives_a_storm_of_leaving_callers(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """60 tasks and 12 threads want 4 slow URLs; a third are cancelled at random moments and a
    third have budgets shorter than the server's delay.  Every caller ends (the certificate,
    its own cancellation, or cert-fetch-timeout), and the single flight keeps nothing: no
    fetch in progress, no waiter count, no fetch without a caller, and no future whose
    failure nobody read (asyncio logs "exception was never retrieved" when it is collected,
    an error line in a service's log)."""
    rng = random.Random(20261129)
    server = serve({f"/c{i}.pem": {"delay": 0.3, **chain(pki)} for i in range(4)})
    urls = [server.url(f"/c{i}.pem") for i in range(4)]
    source = source_for(tls, pki, timeout=3.0)
    outcomes: list[str] = []

    def outcome(result: Any) -> str:
        if isinstance(result, asyncio.CancelledError):
            return "cancelled"
        if isinstance(result, VerificationError):
            assert result.reason is Reason.CERT_FETCH_TIMEOUT, result
            return "timeout"
        assert result.certificate == pki[0].leaf
        return "ok"

    def in_a_thread(url: str, budget: float | None, start: float) -> None:
        time.sleep(start)
        try:
            with request_budget(budget) if budget else contextlib.nullcontext():
                outcomes.append(outcome(source.credential_for(url)))
        except VerificationError as exc:
            outcomes.append(outcome(exc))

    async def in_a_task(url: str, budget: float | None, start: float) -> Any:
        await asyncio.sleep(start)
        with request_budget(budget) if budget else contextlib.nullcontext():
            return await source.acredential_for(url)

    def plan() -> tuple[str, float | None, float]:
        budget = rng.choice([None, None, rng.uniform(0.05, 0.25)])
        return rng.choice(urls), budget, rng.uniform(0.0, 0.4)

    async def main() -> None:
        threads = [threading.Thread(target=in_a_thread, args=plan()) for _ in range(12)]
        for t in threads:
            t.start()
        tasks = [asyncio.ensure_future(in_a_task(*plan())) for _ in range(60)]
        for task in rng.sample(tasks, 20):
            asyncio.get_running_loop().call_later(rng.uniform(0.0, 0.5), task.cancel)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        outcomes.extend(outcome(r) for r in results)
        await asyncio.wait_for(asyncio.to_thread(lambda: [t.join() for t in threads]), 20)
        await asyncio.sleep(0.1)  # cancellations sent from threads are handled
        assert _idle(source)

    asyncio.run(main())
    assert len(outcomes) == 72 and "ok" in outcomes
    assert _idle(source)
    gc.collect()
    unread = [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]
    assert unread == []


def test_how_long_a_caller_waits_for_another_callers_fetch(
    tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """The bound a caller waits for another caller's fetch of the same URL (computed, not
    timed): its request's remaining budget; none left, no wait; outside of a request, the
    fetch timeout plus 5 s of slack (the fetch itself ends within its timeout)."""
    source = source_for(tls, pki, timeout=3.0)
    assert source._wait_timeout() == 8.0
    with request_budget(0.5):
        assert 0.0 < source._wait_timeout() <= 0.5
    with request_deadline(time.monotonic() - 1.0):
        assert source._wait_timeout() == 0.0


@pytest.mark.parametrize("waiter_cancelled", [False, True])
def test_cancelled_fetcher_does_not_strand_its_waiters(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    waiter_cancelled: bool,
) -> None:
    """asyncio: when the task that started the fetch of a URL is cancelled (its request found
    a valid value elsewhere), it returns at once and the fetch goes on for a task waiting for
    the same URL, which gets its result: one request.  When the waiter is cancelled too (both
    requests ended), the fetch is cancelled with it: nothing left running, nothing cached."""
    server, url, source = _slow_url(serve, tls, pki, 0.5)

    async def main() -> Any:
        first = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.1)
        second = asyncio.ensure_future(source.acredential_for(url))
        await asyncio.sleep(0.1)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        assert source._inflight and not second.done()  # the fetch goes on for the waiter
        if not waiter_cancelled:
            return await second
        second.cancel()  # now no request wants the URL: the fetch ends too
        with pytest.raises(asyncio.CancelledError):
            await second
        await asyncio.sleep(0.05)  # the fetch's task handles its cancellation
        assert not source._inflight and not source._orphans
        await asyncio.sleep(0.6)  # past the server's delay: no answer was taken in
        return source._lookup(url, time.time())[0]

    credential = asyncio.run(main())
    assert server.hits()["/slow.pem"] == 1
    if waiter_cancelled:
        assert credential is None
    else:
        assert credential.certificate is not None
    assert _idle(source)


def test_single_flight_across_threads_and_private_loops(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """20 threads check requests with two cold URLs each (fetched on each call's private
    event loop) while asyncio tasks want the same URLs: one request per URL in all.

    The value of /a.pem is signed by another key (refused once its certificate is in) and
    /a.pem answers well before /b.pem, so every request needs both fetches to their end: a
    request that a valid value ends early cancels the fetches it still leads, and where the
    loop those run on ends with the request (a private one), callers waiting on them fetch
    again (test_waiters_keep_a_fetch_whose_leader_left covers that case)."""
    server = serve({"/a.pem": {"delay": 0.1, **chain(pki)}, "/b.pem": {"delay": 0.5, **chain(pki)}})
    stranger = Signer(make_lab_pki().leaf_key, server.url("/a.pem")).identity(ORIG, DEST, "A")
    values = [stranger, sign(pki, server.url("/b.pem"))]
    verifier = Verifier(source_for(tls, pki, timeout=3.0))
    verdicts: list[Any] = []

    def sync_caller() -> None:
        verdicts.append(verifier.check(list(reversed(values)) if len(verdicts) % 2 else values))

    async def async_callers() -> list[Any]:
        return list(await asyncio.gather(*(verifier.acheck(values) for _ in range(10))))

    threads = [threading.Thread(target=sync_caller) for _ in range(20)]
    for t in threads:
        t.start()
    verdicts += asyncio.run(async_callers())
    for t in threads:
        t.join()
    assert len(verdicts) == 30 and all(v.ok for v in verdicts)
    assert server.hits() == {"/a.pem": 1, "/b.pem": 1}


@contextlib.contextmanager
def _slow_crl_lab(
    serve: Callable[..., CertServer],
    tls: TLSFiles,
    pki: tuple[LabPKI, Path],
    tmp_path: Path,
    *,
    revoked: bool,
    delay: float,
    next_update_days: int = 7,
) -> Iterator[tuple[LabPKI, CertificateSource, str, CertServer]]:
    """A lab chain whose CRL (revoking the leaf or not) answers after ``delay`` seconds, and a
    source that fetches CRLs: (lab, source, x5u URL, CRL server)."""
    from cryptography.hazmat.primitives import serialization

    from secsipid._pki import make_crl
    from servicekit import free_port

    port = free_port()
    lab = make_lab_pki(
        root=(pki[0].root_key, pki[0].root), crl_url=f"http://127.0.0.1:{port}/ca.crl"
    )
    serials = [lab.leaf.serial_number] if revoked else []
    crl = make_crl(
        lab.intermediate, lab.intermediate_key, serials, next_update_days=next_update_days
    )
    crl_hex = crl.public_bytes(serialization.Encoding.DER).hex()
    crl_server = CertServer(
        tmp_path / "crl", {"/ca.crl": {"delay": delay, "body_hex": crl_hex}}, None, port=port
    )
    try:
        server = serve({"/sti.pem": {"body": lab.chain_pem.decode()}})
        source = CertificateSource(
            fetch=FetchPolicy(tls_ca_file=str(tls.ca), allow_private=True),
            trust=TrustPolicy(ca_file=str(pki[1]), fetch_crls=True),
            memory=MemoryCache(),
        )
        yield lab, source, server.url("/sti.pem"), crl_server
    finally:
        crl_server.stop()


def test_crl_fetch_cut_by_the_budget_is_not_remembered(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], tmp_path: Path
) -> None:
    """A CRL fetch cut short by a request's budget leaves no remembered failure: the next
    request fetches the CRL and refuses the revoked certificate (a remembered failure would
    have let it pass for a minute)."""
    with _slow_crl_lab(serve, tls, pki, tmp_path, revoked=True, delay=0.8) as (lab, source, url, _):
        value = Signer(lab.leaf_key, url).identity(ORIG, DEST, "A")
        hurried = Verifier(source, policy=VerifyPolicy(timeout=0.4))
        verdict, elapsed = timed(lambda: hurried.check(value))
        assert verdict.ok and elapsed < 0.8  # revocation unknown and not required: accepted
        patient = Verifier(source, policy=VerifyPolicy(timeout=3.0))
        assert patient.check(value).reason is Reason.CERT_REVOKED
        assert hurried.check(value).reason is Reason.CERT_REVOKED  # the CRL is now cached


def test_crl_refetch_for_a_later_request_time_is_within_the_budget(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], tmp_path: Path
) -> None:
    """A cached chain whose CRLs are current now but past their nextUpdate at the request's
    time (``now=``, a replayed capture or a clock ahead) is checked again, fetching the CRL,
    and that fetch is held to the request's budget: judged by the request's time, not by the
    clock of the machine."""
    lab_args = {"revoked": False, "delay": 1.5, "next_update_days": 1}
    with _slow_crl_lab(serve, tls, pki, tmp_path, **lab_args) as (lab, source, url, crl_server):
        signer = Signer(lab.leaf_key, url)
        patient = Verifier(source, policy=VerifyPolicy(timeout=5.0))
        assert patient.check(signer.identity(ORIG, DEST, "A")).ok  # chain and CRL cached
        assert crl_server.hits()["/ca.crl"] == 1
        later = time.time() + 2 * 86400  # past the CRL's nextUpdate
        value = signer.identity(ORIG, DEST, "A", iat=int(later))
        hurried = Verifier(source, policy=VerifyPolicy(timeout=0.4))
        verdict, elapsed = timed(lambda: hurried.check(value, now=later))
        assert verdict.ok, verdict.message  # revocation unknown, not required: accepted
        assert crl_server.hits()["/ca.crl"] == 2
        assert elapsed < 1.1, f"{elapsed:.2f} s: the CRL fetch outlived the 0.4 s budget"


# -- item 2: a slow name server delays only the fetches that need it --------------------------


def test_hanging_names_do_not_starve_other_lookups_sync(
    serve: Callable[..., CertServer],
    dns_server: Callable[[dict[str, Any]], DNSServer],
    pki: tuple[LabPKI, Path],
) -> None:
    """48 fetches stuck on names whose DNS server never answers; a fetch of a good name at
    the same time completes at once (a 4-thread lookup pool once made it wait 20 s, and a
    32-connection keep-alive pool made it queue for a free connection)."""
    server = serve({"/sti.pem": chain(pki)}, https=False)
    dns = dns_server({"good.test": {"A": ["127.0.0.1"]}, "*.hang.test": {"mode": "hang"}})
    policy = FetchPolicy(
        timeout=3.0, allow_http=True, allow_private=True, nameservers=(dns.nameserver,)
    )
    fetcher = Fetcher(policy)
    errors: list[VerificationError] = []

    def stuck(i: int) -> None:
        try:
            fetcher.get(f"http://h{i}.hang.test:{server.port}/sti.pem")
        except VerificationError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=stuck, args=(i,)) for i in range(48)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    result, elapsed = timed(lambda: fetcher.get(f"http://good.test:{server.port}/sti.pem"))
    assert result.status == 200 and b"BEGIN CERTIFICATE" in result.body
    assert elapsed < 1.5, f"{elapsed:.2f} s behind the hanging lookups"
    start = time.monotonic()
    for t in threads:
        t.join(timeout=10)
    assert time.monotonic() - start < 4.0
    assert [e.reason for e in errors] == [Reason.CERT_FETCH_TIMEOUT] * 48


def test_hanging_names_do_not_starve_other_lookups_async(
    serve: Callable[..., CertServer],
    dns_server: Callable[[dict[str, Any]], DNSServer],
    pki: tuple[LabPKI, Path],
) -> None:
    server = serve({"/sti.pem": chain(pki)}, https=False)
    dns = dns_server({"good.test": {"A": ["127.0.0.1"]}, "*.hang.test": {"mode": "hang"}})
    policy = FetchPolicy(
        timeout=3.0, allow_http=True, allow_private=True, nameservers=(dns.nameserver,)
    )
    fetcher = Fetcher(policy)

    async def main() -> tuple[float, list[Any]]:
        stuck = [
            asyncio.ensure_future(fetcher.aget(f"http://h{i}.hang.test:{server.port}/x"))
            for i in range(40)
        ]
        await asyncio.sleep(0.3)
        start = time.monotonic()
        result = await fetcher.aget(f"http://good.test:{server.port}/sti.pem")
        elapsed = time.monotonic() - start
        assert result.status == 200
        outcomes = await asyncio.gather(*stuck, return_exceptions=True)
        return elapsed, outcomes

    elapsed, outcomes = asyncio.run(main())
    assert elapsed < 1.5, f"{elapsed:.2f} s behind the hanging lookups"
    assert all(
        isinstance(o, VerificationError) and o.reason is Reason.CERT_FETCH_TIMEOUT for o in outcomes
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_name_server_that_never_answers(
    dns_server: Callable[[dict[str, Any]], DNSServer], mode: str
) -> None:
    """A lookup that is never answered ends at the fetch deadline as cert-fetch-timeout."""
    dns = dns_server({"*.test": {"mode": "hang"}})
    fetcher = Fetcher(FetchPolicy(timeout=0.8, nameservers=(dns.nameserver,)))
    url = "https://certs.test/sti.pem"
    start = time.monotonic()
    with pytest.raises(VerificationError) as exc:
        if mode == "sync":
            fetcher.get(url)
        else:
            asyncio.run(fetcher.aget(url))
    elapsed = time.monotonic() - start
    assert exc.value.reason is Reason.CERT_FETCH_TIMEOUT
    assert 0.7 <= elapsed < 2.0, f"{elapsed:.2f} s for a 0.8 s timeout"


def test_a_slow_aaaa_answer_does_not_eat_the_budget(
    serve: Callable[..., CertServer],
    dns_server: Callable[[dict[str, Any]], DNSServer],
    pki: tuple[LabPKI, Path],
) -> None:
    """A name server that drops AAAA queries (it happens) delays a name with an A record by
    at most the resolution delay, not the whole fetch timeout."""
    server = serve({"/sti.pem": chain(pki)}, https=False)
    dns = dns_server({"v4.test": {"A": ["127.0.0.1"], "AAAA_mode": "hang"}})
    policy = FetchPolicy(
        timeout=3.0, allow_http=True, allow_private=True, nameservers=(dns.nameserver,)
    )
    fetcher = Fetcher(policy)
    url = f"http://v4.test:{server.port}/sti.pem"
    result, elapsed = timed(lambda: fetcher.get(url))
    assert result.status == 200 and elapsed < 1.5
    result, elapsed = timed(lambda: asyncio.run(fetcher.aget(url)))
    assert result.status == 200 and elapsed < 1.5


def test_nxdomain_is_a_fetch_failure(dns_server: Callable[[dict[str, Any]], DNSServer]) -> None:
    dns = dns_server({})
    fetcher = Fetcher(FetchPolicy(timeout=2.0, nameservers=(dns.nameserver,)))
    for run in (
        lambda: fetcher.get("https://nowhere.test/x.pem"),
        lambda: asyncio.run(fetcher.aget("https://nowhere.test/x.pem")),
    ):
        with pytest.raises(VerificationError) as exc:
            run()
        assert exc.value.reason is Reason.CERT_FETCH_FAILED
        assert "NXDOMAIN" in exc.value.message


def test_hosts_file_is_consulted_before_dns(
    serve: Callable[..., CertServer],
    dns_server: Callable[[dict[str, Any]], DNSServer],
    pki: tuple[LabPKI, Path],
    tmp_path: Path,
) -> None:
    """Names in the hosts file resolve without asking DNS (here a server that never
    answers), as glibc's default ``hosts: files dns`` does."""
    server = serve({"/sti.pem": chain(pki)}, https=False)
    dns = dns_server({"*.internal": {"mode": "hang"}})
    hosts = tmp_path / "hosts"
    hosts.write_text("# test\n127.0.0.1   certs.internal  alias.internal # comment\n")
    policy = FetchPolicy(
        timeout=2.0,
        allow_http=True,
        allow_private=True,
        nameservers=(dns.nameserver,),
        hosts_file=str(hosts),
    )
    result, elapsed = timed(
        lambda: Fetcher(policy).get(f"http://CERTS.internal:{server.port}/sti.pem")
    )
    assert result.status == 200 and elapsed < 1.0


# -- the address checks (issue 7 item 9; issue 12's fetch rows) -------------------------------


def test_every_resolved_address_is_checked_before_any_connect(
    serve: Callable[..., CertServer],
    dns_server: Callable[[dict[str, Any]], DNSServer],
    pki: tuple[LabPKI, Path],
) -> None:
    """A name with an allowed address and a private one is refused before any connection:
    the server at the allowed address never sees a request."""
    server = serve({"/sti.pem": chain(pki)}, https=False, host="127.0.0.2")
    dns = dns_server(
        {
            "clean.test": {"A": ["127.0.0.2"]},
            "mixed.test": {"A": ["127.0.0.2", "10.0.0.1"]},
            "mixed6.test": {"A": ["127.0.0.2"], "AAAA": ["fd00::1"]},
        }
    )
    policy = FetchPolicy(
        timeout=2.0,
        allow_http=True,
        allow_networks=("127.0.0.2/32",),
        nameservers=(dns.nameserver,),
    )
    fetcher = Fetcher(policy)
    assert fetcher.get(f"http://clean.test:{server.port}/sti.pem").status == 200
    for name, bad in (("mixed.test", "10.0.0.1"), ("mixed6.test", "fd00::1")):
        url = f"http://{name}:{server.port}/sti.pem"
        for asynchronous in (False, True):
            with pytest.raises(VerificationError) as exc:
                if asynchronous:
                    asyncio.run(fetcher.aget(url))
                else:
                    fetcher.get(url)
            assert exc.value.reason is Reason.CERT_URL_REFUSED, exc.value
            assert bad in exc.value.message
    assert server.hits() == {"/sti.pem": 1}


@pytest.mark.parametrize(
    "address",
    ["224.0.0.1", "239.255.255.250", "ff02::1", "ff0e::1", "::ffff:224.0.0.1", "ff05::1:3"],
)
def test_multicast_destinations_refused(address: str) -> None:
    """Multicast is refused though Python 3.11 calls 224.0.0.1 and ff0e::1 global."""
    with pytest.raises(VerificationError) as exc:
        FetchPolicy().check_address(ipaddress.ip_address(address), "https://x.test/")
    assert exc.value.reason is Reason.CERT_URL_REFUSED
    assert "multicast" in exc.value.message


def test_multicast_answer_refused_through_dns(
    dns_server: Callable[[dict[str, Any]], DNSServer],
) -> None:
    dns = dns_server({"mcast.test": {"A": ["224.0.0.251"]}})
    fetcher = Fetcher(FetchPolicy(timeout=2.0, nameservers=(dns.nameserver,)))
    with pytest.raises(VerificationError) as exc:
        fetcher.get("https://mcast.test/x.pem")
    assert exc.value.reason is Reason.CERT_URL_REFUSED and "multicast" in exc.value.message


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("224.0.0.1", "a multicast address"),
        ("::ffff:224.0.0.1", "a multicast address: it embeds 224.0.0.1"),
        ("10.0.0.1", "in a special-purpose address range"),
        ("fd00::1", "in a special-purpose address range"),
        ("64:ff9b::7f00:1", "in a special-purpose address range: it embeds 127.0.0.1"),
        ("64:ff9b:1::808:808", "a local-use NAT64 address (RFC 8215)"),
        ("::808:808", "an IPv4-compatible IPv6 address (deprecated)"),
        ("fec0::1", "a site-local IPv6 address (deprecated)"),
    ],
)
def test_refused_destination_says_why(address: str, why: str) -> None:
    """The message an operator reads: the URL, the address and what kind of address it is."""
    ip = ipaddress.ip_address(address)
    with pytest.raises(VerificationError) as exc:
        FetchPolicy().check_address(ip, "https://x.test/a.pem")
    assert exc.value.message == f"https://x.test/a.pem: destination {ip} is {why}"


REFUSED_V6 = [
    ("64:ff9b::a00:1", "10.0.0.1 behind the NAT64 well-known prefix"),
    ("64:ff9b::7f00:1", "loopback behind NAT64"),
    ("64:ff9b::c0a8:101", "192.168.1.1 behind NAT64"),
    ("64:ff9b:1::808:808", "local-use NAT64 prefix (RFC 8215)"),
    ("2002:a00:1::1", "6to4 of 10.0.0.1"),
    ("2002:7f00:1::", "6to4 of 127.0.0.1"),
    ("2002:a9fe:a9fe::1", "6to4 of the link-local metadata address"),
    ("::ffff:0:a00:1", "IPv4-translated 10.0.0.1"),
    ("::ffff:0:7f00:1", "IPv4-translated loopback"),
    ("::a00:1", "IPv4-compatible 10.0.0.1"),
    ("::808:808", "IPv4-compatible, deprecated even for a public address"),
    ("fec0::1", "site-local (deprecated)"),
    ("fed0::1", "site-local (deprecated)"),
    ("::ffff:10.0.0.1", "IPv4-mapped private"),
    ("fd00::1", "unique local"),
    ("fe80::1", "link-local"),
    ("2001:db8::1", "documentation"),
]


@pytest.mark.parametrize(("address", "what"), REFUSED_V6)
def test_ipv6_forms_that_lead_to_special_purpose_addresses(address: str, what: str) -> None:
    ip = ipaddress.ip_address(address)
    assert special_purpose(ip) is not None, what
    with pytest.raises(VerificationError) as exc:
        FetchPolicy().check_address(ip, "https://x.test/")
    assert exc.value.reason is Reason.CERT_URL_REFUSED


@pytest.mark.parametrize(
    "address",
    ["8.8.8.8", "64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111", "::ffff:1.1.1.1"],
)
def test_public_destinations_accepted(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert special_purpose(ip) is None
    FetchPolicy().check_address(ip, "https://x.test/")


def test_embedded_private_address_refused_through_dns(
    dns_server: Callable[[dict[str, Any]], DNSServer],
) -> None:
    dns = dns_server({"nat64.test": {"AAAA": ["64:ff9b::7f00:1"]}})
    fetcher = Fetcher(FetchPolicy(timeout=2.0, nameservers=(dns.nameserver,)))
    with pytest.raises(VerificationError) as exc:
        fetcher.get("https://nat64.test/x.pem")
    assert exc.value.reason is Reason.CERT_URL_REFUSED and "embeds 127.0.0.1" in exc.value.message


# -- item 4: internationalized and malformed URLs -----------------------------------------------


def test_idna_host_and_utf8_path_are_encoded() -> None:
    target = FetchPolicy().check_url("https://Exämple.com:8443/cért/ä%20b?q=ü&r=%41")
    assert target.url == "https://xn--exmple-cua.com:8443/c%C3%A9rt/%C3%A4%20b?q=%C3%BC&r=%41"
    assert target.host == "xn--exmple-cua.com" and target.port == 8443
    assert target.netloc == "xn--exmple-cua.com:8443"
    assert FetchPolicy().check_url("https://[::1]:8443/x").netloc == "[::1]:8443"


@pytest.mark.parametrize(
    "url",
    [
        "https://" + "a" * 64 + ".example.com/x",  # label over 63
        "https://" + ".".join(["abcdefghij"] * 24) + ".com/x",  # name over 253
        "https://ex☃mple.com/x",  # disallowed in IDNA 2008
        "https://ex%41mple.com/x",
        "https://exa..mple.com/x",
        "https://-bad.example.com/x",
        "https://1.2.3/x",  # not an IPv4 address
        "https://0x7f.1/x",  # inet_aton shorthand for loopback
        "https://127.1/x",
        "https://2130706433/x",
        "https://certs.example.0x7f000001/x",
        "https://[::1%25lo/x",
        "https://\u0000.com/x",
        "https://xn--a.xn--/x",
    ],
)
@pytest.mark.parametrize("mode", ["sync", "async"])
def test_malformed_hosts_refused_with_a_reason(url: str, mode: str) -> None:
    """Over-long, non-IDNA and otherwise malformed hosts are ``cert-url-refused`` (436)
    through the verifier, sync and async: never an internal error."""
    signer = Signer(make_lab_pki().leaf_key, url)
    value = signer.identity(ORIG, DEST, "A")
    verifier = Verifier(CertificateSource(trust=None, memory=MemoryCache()))
    verdict = verifier.check(value) if mode == "sync" else asyncio.run(verifier.acheck(value))
    assert verdict.reason in (Reason.CERT_URL_REFUSED, Reason.INVALID_INFO), verdict.message
    assert verdict.sip_status == 436
    assert verdict.to_dict()["reason"] == verdict.reason.value


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_internationalized_info_url_verifies(
    serve: Callable[..., CertServer],
    dns_server: Callable[[dict[str, Any]], DNSServer],
    pki: tuple[LabPKI, Path],
    mode: str,
) -> None:
    """An info URL with a Unicode host and path: the host is looked up and sent as its
    A-label, the path percent-encoded as UTF-8; the PASSporT verifies."""
    server = serve({"/c%C3%A9rt.pem": chain(pki)}, https=False)
    dns = dns_server({"xn--exmple-cua.test": {"A": ["127.0.0.1"]}})
    url = f"http://exämple.test:{server.port}/cért.pem"
    source = CertificateSource(
        fetch=FetchPolicy(
            timeout=2.0, allow_http=True, allow_private=True, nameservers=(dns.nameserver,)
        ),
        trust=TrustPolicy(ca_file=str(pki[1])),
        memory=MemoryCache(),
    )
    verifier = Verifier(source)
    value = sign(pki, url)
    verdict = verifier.check(value) if mode == "sync" else asyncio.run(verifier.acheck(value))
    assert verdict.ok, verdict.message
    assert server.hosts()["/c%C3%A9rt.pem"] == f"xn--exmple-cua.test:{server.port}"


def test_cli_fetch_of_a_unicode_url_is_a_one_line_error(
    dns_server: Callable[[dict[str, Any]], DNSServer], capsys: pytest.CaptureFixture[str]
) -> None:
    # The last: bytes that were not UTF-8 on the command line (Python's surrogateescape).
    for url in ("https://ex☃mple.com/x", "https://" + "a" * 64 + ".com/x", "https://x.com/\udcff"):
        status, _, err = run_cli(capsys, "fetch", url, "--timeout", "1")
        assert status != 0 and "Traceback" not in err
        assert err.startswith("secsipid: error: cert-url-refused"), err
        assert len(err.strip().splitlines()) == 1


# -- item 10: caches keyed by every policy field that changes what a fetch accepts -------------


def test_tls_ca_file_is_part_of_the_cache_key(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], tmp_path: Path
) -> None:
    """A certificate fetched by a source that trusts a custom TLS CA is not handed to a
    source that trusts only the system CAs (whose own fetch fails TLS) -- neither from the
    memory cache nor from a shared directory cache."""
    server = serve({"/sti.pem": chain(pki)})
    url = server.url("/sti.pem")
    memory = MemoryCache()
    cache_dir = tmp_path / "cache"
    custom = source_for(tls, pki, memory=memory)
    custom_disk = CertificateSource(
        fetch=custom.fetch_policy, trust=None, memory=MemoryCache(), cache_dir=cache_dir
    )
    assert custom.credential_for(url).certificate is not None
    assert custom_disk.credential_for(url).certificate is not None
    system = FetchPolicy(allow_private=True)
    for other in (
        CertificateSource(fetch=system, trust=None, memory=memory),
        CertificateSource(fetch=system, trust=None, memory=MemoryCache(), cache_dir=cache_dir),
    ):
        with pytest.raises(VerificationError) as exc:
            other.credential_for(url)
        assert exc.value.reason is Reason.CERT_FETCH_FAILED
        assert "certificate verify failed" in exc.value.message  # its own fetch, refused by TLS
    assert server.hits()["/sti.pem"] == 2


def test_cache_key_covers_what_a_fetch_accepts() -> None:
    base = FetchPolicy()
    for change in (
        {"allow_http": True},
        {"allow_private": True},
        {"allow_networks": ("192.0.2.0/24",)},
        {"allowed_ports": frozenset({443})},
        {"tls_ca_file": "/tmp/ca.pem"},
        {"max_size": 1024},
        {"nameservers": ("192.0.2.53",)},
        {"hosts_file": None},
    ):
        assert base.replace(**change).cache_key != base.cache_key, change
    assert base.replace(timeout=1.0, user_agent="x").cache_key == base.cache_key


# -- item 11: the negative cache is small and bounded -------------------------------------------


def test_negative_cache_keeps_no_tracebacks(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """Failures are remembered as reason and message only (an exception with its traceback
    cost ~16 KiB)."""
    count = 80
    server = serve({f"/gone{i}.pem": {"status": 404} for i in range(count)})
    memory = MemoryCache(max_negative=10_000)
    source = source_for(tls, pki, memory=memory)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            with pytest.raises(VerificationError):
                source.credential_for(server.url(f"/gone{i}.pem"))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert memory.stats()["negative_entries"] == count
    assert held / count < 4000, f"{held / count:.0f} bytes per remembered failure"
    with pytest.raises(VerificationError) as exc:  # answered from the negative cache
        source.credential_for(server.url("/gone0.pem"))
    assert exc.value.reason is Reason.CERT_FETCH_STATUS
    assert server.hits()["/gone0.pem"] == 1


def test_negative_cache_is_bounded() -> None:
    """Remembered failures are bounded by entries and by bytes (each weighs its message, cut
    to 300 characters, 200 bytes of bookkeeping and its key), oldest out first, the byte
    count exact through evictions and replacements."""

    def key(i: int) -> tuple[str, str]:
        return ("policy", f"https://h{i:03d}.test/" + "p" * 200)

    weight = 300 + 200 + len("policy") + len(key(0)[1])  # 724 bytes
    error = VerificationError(Reason.CERT_FETCH_FAILED, "x" * 5000)
    by_bytes = MemoryCache(max_negative=50, max_negative_bytes=20_000)
    for i in range(500):
        by_bytes.put_negative(key(i), error, time.time() + 60)
        stats = by_bytes.stats()
        assert stats["negative_entries"] <= 50 and stats["negative_bytes"] <= 20_000
    kept = 20_000 // weight  # 27
    assert by_bytes.stats()["negative_entries"] == kept
    assert by_bytes.stats()["negative_bytes"] == kept * weight
    assert [k for k in by_bytes._negative] == [key(i) for i in range(500 - kept, 500)]
    by_bytes.put_negative(key(499), error, time.time() + 60)  # a replacement: no growth
    assert by_bytes.stats()["negative_bytes"] == kept * weight

    by_count = MemoryCache(max_negative=5, max_negative_bytes=20_000)
    for i in range(8):
        by_count.put_negative(key(i), error, time.time() + 60)
    assert [k for k in by_count._negative] == [key(i) for i in range(3, 8)]
    assert by_count.stats()["negative_bytes"] == 5 * weight

    exact = MemoryCache(max_negative=5, max_negative_bytes=3 * weight)  # bounds are inclusive
    for i in range(4):
        exact.put_negative(key(i), error, time.time() + 60)
    assert [k for k in exact._negative] == [key(i) for i in range(1, 4)]


def test_fetches_in_flight_are_bounded(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path]
) -> None:
    """A flood of hostile URLs holds at most ``max_in_flight`` fetches (and their sockets);
    one more is refused at once, is not remembered as a dead server, and cached
    certificates keep verifying."""
    server = serve({**hostile_routes(4), "/sti.pem": chain(pki)})
    good = sign(pki, server.url("/sti.pem"))
    memory = MemoryCache()
    source = source_for(tls, pki, memory=memory, timeout=2.0, max_in_flight=4)
    verifier = Verifier(source)
    assert verifier.check(good).ok  # cached from now on

    async def flood() -> tuple[list[Any], Any, Any]:
        stuck = [
            asyncio.ensure_future(source.acredential_for(server.url(f"/hang{i}.pem")))
            for i in range(4)
        ]
        await asyncio.sleep(0.3)
        start = time.monotonic()
        with pytest.raises(VerificationError) as refused:
            await source.acredential_for(server.url("/other.pem"))
        assert time.monotonic() - start < 0.5
        cached = await verifier.acheck(good)
        outcomes = await asyncio.gather(*stuck, return_exceptions=True)
        return outcomes, refused.value, cached

    outcomes, refused, cached = asyncio.run(flood())
    assert refused.reason is Reason.CERT_FETCH_FAILED and "in progress" in refused.message
    assert cached.ok
    assert [o.reason for o in outcomes] == [Reason.CERT_FETCH_TIMEOUT] * 4
    assert memory.negative((source._policy_key, server.url("/other.pem"))) is None
    assert "/other.pem" not in server.hits()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_fetch_that_ends_just_before_joining_is_not_repeated(
    serve: Callable[..., CertServer], tls: TLSFiles, pki: tuple[LabPKI, Path], mode: str
) -> None:
    """A caller that missed the cache just before another caller's fetch of the same URL
    finished (and left) looks again when it becomes the fetcher: no second request."""
    server = serve({"/sti.pem": chain(pki)})
    url = server.url("/sti.pem")
    source = source_for(tls, pki)
    assert source.credential_for(url).certificate is not None  # "the other caller"
    real_lookup = source._lookup
    calls = 0

    def lookup(info: str, now: float) -> Any:
        nonlocal calls
        calls += 1
        return (None, None) if calls == 1 else real_lookup(info, now)  # the stale miss

    source._lookup = lookup  # type: ignore[method-assign]
    if mode == "sync":
        credential = source.credential_for(url)
    else:
        credential = asyncio.run(source.acredential_for(url))
    assert credential.certificate is not None and calls == 2
    assert server.hits() == {"/sti.pem": 1}


def test_directory_cache_entry_with_an_endless_expiry_is_ignored(tmp_path: Path) -> None:
    """A cache file whose metadata says it never expires (``Infinity``, which Python's JSON
    reader accepts) is not used."""
    from secsipid._source import DirectoryCache

    disk = DirectoryCache(tmp_path)
    disk.store("https://a.test/x.pem", "key", b"body", time.time() + 60)
    assert disk.load("https://a.test/x.pem", "key") is not None
    (path,) = tmp_path.glob("*.pem")
    head, _, body = path.read_bytes().partition(b"\n")
    path.write_bytes(head.replace(b'"expires": ', b'"expires": Infinity, "was": ') + b"\n" + body)
    assert disk.load("https://a.test/x.pem", "key") is None
