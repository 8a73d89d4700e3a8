#!/usr/bin/env python3
"""What the JSON limits cost on the verify hot path (overflowing numbers refused, nesting at
most MAX_DEPTH): a paired A/B in one process.

    .venv/bin/python bench/ab_json_limits.py [--rounds 40]

A is ``secsipid._codec.loads_strict`` as it was before the limits (the C scanner with the
duplicate-name and NaN hooks and the lone-surrogate check; no ``parse_float`` hook, no bracket
count); B is ``loads_strict``.  Rounds alternate A and B (order rotated); the report gives
medians of the per-call time and of the paired differences, for the claims parse alone and for
a whole ``Verifier.verify`` with ``_passport.loads_strict`` swapped.  Timing on a shared machine is
noisy: read the paired median, not a single round.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import timeit
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

import secsipid._passport as passport
from secsipid import Signer, Verifier
from secsipid._codec import (
    JSONError,
    _no_constants,
    _no_lone_surrogates,
    _pairs_no_duplicates,
    loads_strict,
)

_BASE = json.JSONDecoder(object_pairs_hook=_pairs_no_duplicates, parse_constant=_no_constants)
_BASE_SCAN: Callable[[str, int], tuple[Any, int]] = _BASE.scan_once  # type: ignore[attr-defined]


def loads_baseline(data: bytes) -> Any:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise JSONError("not UTF-8") from exc
    try:
        obj, end = _BASE_SCAN(text, 0)
        if end != len(text):
            obj = _BASE.decode(text)
    except StopIteration:
        obj = _BASE.decode(text)
    if "\\u" in text:
        _no_lone_surrogates(obj)
    return obj


def paired(rounds: int, a: Callable[[], float], b: Callable[[], float]) -> None:
    res: dict[str, list[float]] = {"A baseline": [], "B limits": []}
    for r in range(rounds):
        order = (
            (("A baseline", a), ("B limits", b)) if r % 2 else (("B limits", b), ("A baseline", a))
        )
        for name, fn in order:
            res[name].append(fn())
    for name, values in res.items():
        print(f"  {name}: median {statistics.median(values):8.3f} us (min {min(values):.3f})")
    diffs = [bb - aa for aa, bb in zip(res["A baseline"], res["B limits"], strict=True)]
    print(f"  paired B-A: median {statistics.median(diffs) * 1000:+.0f} ns")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    key = ec.generate_private_key(ec.SECP256R1())
    signer = Signer(key, "https://cert.example.org/sti.pem")
    now = int(time.time())
    pool = [signer.identity("12155550121", "12155550131", "A", iat=now) for _ in range(2000)]
    claims = passport.decode_token(pool[0].split(";", 1)[0]).claims_json

    def parse(fn: Callable[[bytes], Any]) -> Callable[[], float]:
        return lambda: min(timeit.repeat(lambda: fn(claims), number=2000, repeat=3)) / 2000 * 1e6

    verifier = Verifier(key.public_key())

    def verify(fn: Callable[[bytes], Any]) -> Callable[[], float]:
        def run() -> float:
            passport.loads_strict = fn
            t0 = time.perf_counter()
            for value in pool:
                verifier.verify(value, now=now)
            return (time.perf_counter() - t0) / len(pool) * 1e6

        return run

    print(f"claims parse ({len(claims)} bytes):")
    paired(args.rounds, parse(loads_baseline), parse(loads_strict))
    print("Verifier.verify:")
    paired(args.rounds, verify(loads_baseline), verify(loads_strict))
    passport.loads_strict = loads_strict


if __name__ == "__main__":
    main()
