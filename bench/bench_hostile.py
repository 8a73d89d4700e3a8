"""The request budget under attack: how long one request's whole check takes when the caller
runs a hostile server farm, and how a hostile name server affects the other lookups.

    .venv/bin/python bench/bench_hostile.py [--rounds 5] [--budget 5]

Real servers on loopback, in their own processes (tests/certserver.py, tests/dnsserver.py),
stopped by PID.  Scenarios, each timed over ``--rounds`` rounds (medians, min-max):

* ``farm``: 16 Identity values at servers that never answer, trickle the body, send headers
  after 30 s, and at names whose DNS server never answers; default budget (5 s, Kamailio's
  ``timeout``); sync ``Verifier.check`` and async ``acheck``;
* ``valid-behind-15``: the same with a valid value (certificate not cached) after 15 hostile
  ones: the check ends when the valid certificate arrives;
* ``cached-behind-15``: the valid value's certificate cached: no fetch at all;
* ``dns``: a good name looked up while 64 lookups of hostile names are stuck.

Not a test: it prints figures (and exits non-zero only if something that should be valid is
not).  Before the request budget, ``farm`` took 16 x 5 s = 80 s and ``valid-behind-15``
15 x 5 s = 75 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import contextlib

from fetchkit import CertServer, DNSServer, make_tls_files
from secsipid import (
    CertificateSource,
    FetchPolicy,
    MemoryCache,
    Signer,
    TrustPolicy,
    VerificationError,
    Verifier,
)
from secsipid._fetch import Fetcher
from secsipid._pki import make_lab_pki

ORIG, DEST = "12155550121", "12155550131"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def summary(name: str, times: list[float], note: str = "") -> None:
    med = statistics.median(times)
    print(f"{name:34s} median {med:6.3f} s  (min {min(times):.3f}, max {max(times):.3f}) {note}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--budget", type=float, default=5.0, help="fetch timeout = budget (5)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="secsipid-hostile-"))
    tls = make_tls_files(work)
    lab = make_lab_pki(spc="1234")
    root = lab.write(work / "pki")["root"]
    body = lab.chain_pem.decode()
    routes: dict[str, dict[str, Any]] = {f"/hang{i}.pem": {"mode": "hang"} for i in range(4)}
    routes |= {f"/trickle{i}.pem": {"mode": "trickle", "interval": 0.2, "body": body}
               for i in range(4)}  # fmt: skip
    routes |= {f"/slow{i}.pem": {"delay": 30, "body": body} for i in range(4)}
    routes |= {f"/hang{i}.pem": {"mode": "hang"} for i in range(4, 15)}
    routes |= {f"/sti{i}.pem": {"body": body} for i in range(2 * args.rounds + 2)}
    server = CertServer(work / "srv", routes, tls)
    plain = CertServer(work / "plain", {"/sti.pem": {"body": body}}, None)
    dns = DNSServer(
        work / "dns", {"good.test": {"A": ["127.0.0.1"]}, "*.hang.test": {"mode": "hang"}}
    )
    failures = 0
    try:

        def verifier() -> Verifier:
            source = CertificateSource(
                fetch=FetchPolicy(
                    timeout=args.budget, tls_ca_file=str(tls.ca), allow_private=True,
                    allow_http=True, nameservers=(dns.nameserver,),
                ),
                trust=TrustPolicy(ca_file=str(root)),
                memory=MemoryCache(),
            )  # fmt: skip
            return Verifier(source)

        def sign(url: str) -> str:
            return Signer(lab.leaf_key, url).identity(ORIG, DEST, "A")

        farm_urls = [server.url(p) for p in list(routes)[:12]]
        farm_urls += [f"https://h{i}.hang.test:{server.port}/x.pem" for i in range(4)]
        farm = [sign(u) for u in farm_urls]
        behind = [sign(server.url(f"/hang{i}.pem")) for i in range(15)]
        print(f"budget {args.budget:g} s, {args.rounds} rounds, 16 values per request")
        for mode in ("sync", "async"):
            times = []
            for _ in range(args.rounds):
                v = verifier()
                run = (lambda v=v: v.check(farm)) if mode == "sync" else (
                    lambda v=v: asyncio.run(v.acheck(farm)))  # fmt: skip
                verdict, elapsed = timed(run)
                failures += verdict.ok
                times.append(elapsed)
            summary(f"farm ({mode})", times, f"-> {verdict.reason.value} {verdict.sip_status}")
        n = 0
        for mode in ("sync", "async"):
            times = []
            for _ in range(args.rounds):
                v = verifier()
                values = [*behind, sign(server.url(f"/sti{n}.pem"))]
                n += 1
                run = (lambda v=v, x=values: v.check(x)) if mode == "sync" else (
                    lambda v=v, x=values: asyncio.run(v.acheck(x)))  # fmt: skip
                verdict, elapsed = timed(run)
                failures += not verdict.ok
                times.append(elapsed)
            summary(f"valid-behind-15 ({mode})", times, f"-> {verdict.reason.value}")
        v = verifier()
        good = sign(server.url(f"/sti{n}.pem"))
        assert v.check(good).ok
        times = []
        for _ in range(args.rounds):
            verdict, elapsed = timed(lambda: v.check([*behind, good]))
            failures += not verdict.ok
            times.append(elapsed)
        summary("cached-behind-15 (sync)", times, f"-> {verdict.reason.value}")

        fetcher = Fetcher(FetchPolicy(timeout=args.budget, allow_http=True, allow_private=True,
                                      nameservers=(dns.nameserver,)))  # fmt: skip
        times = []
        for r in range(args.rounds):
            stuck = [threading.Thread(target=_swallow, args=(fetcher, f"http://r{r}h{i}.hang.test:1/"))
                     for i in range(64)]  # fmt: skip
            for t in stuck:
                t.start()
            time.sleep(0.3)
            _, elapsed = timed(lambda: fetcher.get(f"http://good.test:{plain.port}/sti.pem"))
            times.append(elapsed)
            for t in stuck:
                t.join()
        summary("dns: good name, 64 stuck lookups", times)
    finally:
        server.stop()
        plain.stop()
        dns.stop()
    return 1 if failures else 0


def _swallow(fetcher: Fetcher, url: str) -> None:
    with contextlib.suppress(VerificationError):
        fetcher.get(url)


if __name__ == "__main__":
    sys.exit(main())
