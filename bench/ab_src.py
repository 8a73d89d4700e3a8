#!/usr/bin/env python3
"""A/B of the hot path between two source trees: CPU time per call, alternating processes.

    git archive main src | tar -x -C /tmp/base
    .venv/bin/python bench/ab_src.py /tmp/base/src            # main vs this work tree
    .venv/bin/python bench/ab_src.py /tmp/base/src --pairs 10

Each measurement is a fresh process pinned to one CPU, importing ``secsipid`` from the tree
given in PYTHONPATH: it signs a pool of 2,000 SHAKEN Identity values, then times
``Verifier.check`` and ``Verifier.verify`` over the pool and ``Signer.identity`` with
``time.process_time`` (best of three passes).  Base and new processes alternate, so load on a
shared machine hits both alike; the report gives each side's median and the median of the
paired differences with their range.  A report, not a gate.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
OPS = ("Verifier.check", "Verifier.verify", "Signer.identity")

_CHILD = r"""
import os, time
cpus = sorted(os.sched_getaffinity(0))
os.sched_setaffinity(0, {cpus[-1]})
from cryptography.hazmat.primitives.asymmetric import ec
import secsipid
key = ec.generate_private_key(ec.SECP256R1())
signer = secsipid.Signer(key, "https://cert.example.org/stir/shaken/cert.pem")
now = int(time.time())
pool = [signer.identity("12155550121", "12155550131", "A", iat=now) for _ in range(2000)]
verifier = secsipid.Verifier(key.public_key())
for value in pool:
    assert verifier.check(value).ok
def run(fn, n):
    start = time.process_time()
    for i in range(n):
        fn(pool[i % 2000])
    return (time.process_time() - start) / n * 1e6
passes = [
    (run(verifier.check, 6000), run(verifier.verify, 6000),
     run(lambda _: signer.identity("12155550121", "12155550131", "A"), 12000))
    for _ in range(3)
]
print(" ".join(f"{min(p[i] for p in passes):.3f}" for i in range(3)))
"""


def measure(src: str) -> list[float]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], env=env, capture_output=True, text=True, check=True
    )
    return [float(x) for x in out.stdout.split()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("base", help="src directory of the base tree (e.g. main's)")
    parser.add_argument("new", nargs="?", default=str(HERE.parent / "src"), help="(this tree)")
    parser.add_argument("--pairs", type=int, default=6)
    args = parser.parse_args()
    base: list[list[float]] = []
    new: list[list[float]] = []
    for n in range(args.pairs):
        base.append(measure(args.base))
        new.append(measure(args.new))
        print(f"pair {n + 1}: base {base[-1]}  new {new[-1]}", flush=True)
    print(
        f"\nCPU us per call, {args.pairs} alternated pairs; load average {os.getloadavg()[0]:.1f}"
    )
    for i, op in enumerate(OPS):
        diffs = [b[i] - a[i] for a, b in zip(base, new, strict=True)]
        print(
            f"{op:16} base {statistics.median(a[i] for a in base):7.2f}"
            f"  new {statistics.median(b[i] for b in new):7.2f}"
            f"  paired diff {statistics.median(diffs):+.2f} ({min(diffs):+.2f}..{max(diffs):+.2f})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
