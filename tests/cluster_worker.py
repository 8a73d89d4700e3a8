"""One node of a test cluster: a process that verifies Identity headers through a Redis
shared cache (its own memory cache, as a separate Kamailio worker or service would have).

    python cluster_worker.py JOB.json

JOB: ``redis`` (URL), ``root`` (STI trust anchor file), ``identities`` (list), ``orig``,
``dest``, ``threads`` (callers at once), ``mode`` (``sync`` threads or ``async`` tasks),
``start_at`` (wall clock time to start at, so that several processes start together),
``timeout`` (request budget), ``lock_lease``, ``ready`` (file written when about to start).
Prints one JSON object: the reasons of every check, and the shared cache's counters.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from pathlib import Path

from secsipid import CertificateSource, FetchPolicy, MemoryCache, RedisCache, TrustPolicy, Verifier


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    shared = RedisCache(job["redis"], lock_lease=job.get("lock_lease", 2.0))
    source = CertificateSource(
        fetch=FetchPolicy(allow_http=True, allow_private=True, timeout=job.get("timeout", 5.0)),
        trust=TrustPolicy(ca_file=job["root"]),
        memory=MemoryCache(),
        shared=shared,
    )
    verifier = Verifier(source)
    identities: list[str] = job["identities"]
    threads = int(job.get("threads", 1))
    reasons: list[str] = []
    lock = threading.Lock()
    if "ready" in job:
        Path(job["ready"]).write_text("ready")
    time.sleep(max(float(job.get("start_at", 0)) - time.time(), 0))
    started = time.monotonic()
    if job.get("mode", "sync") == "async":

        async def run() -> list[str]:
            verdicts = await asyncio.gather(
                *(
                    verifier.acheck(identities[n % len(identities)], orig_tn=job["orig"],
                                    dest_tn=job["dest"])
                    for n in range(threads)
                )
            )  # fmt: skip
            return [str(v.reason) for v in verdicts]

        reasons = asyncio.run(run())
    else:

        def one(n: int) -> None:
            verdict = verifier.check(
                identities[n % len(identities)], orig_tn=job["orig"], dest_tn=job["dest"]
            )
            with lock:
                reasons.append(str(verdict.reason))

        workers = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
    elapsed = time.monotonic() - started
    print(json.dumps({"reasons": reasons, "stats": shared.stats(), "elapsed": elapsed}))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
