#!/usr/bin/env python3
"""Core signing/verification throughput of secsipid against OpenSSL and libsecsipid.

    .venv/bin/python bench/bench_core.py             # full run: 5 rounds, ~2 minutes
    .venv/bin/python bench/bench_core.py --quick     # 2 short rounds, ~20 seconds
    .venv/bin/python bench/bench_core.py --json results.json
    .venv/bin/python bench/bench_core.py --breakdown # where the time goes (crypto vs overhead)

Everything runs on ONE CPU: this process pins itself with ``os.sched_setaffinity`` before
loading libsecsipid (so the Go runtime's threads inherit the pin and size GOMAXPROCS to 1) and
runs ``openssl speed`` under ``taskset -c`` on the same CPU.  Contenders are interleaved: each
round measures every one of them for a fixed time, in an order rotated from round to round,
and the report gives the median ops/s per contender with the spread (min-max); ratios are
computed from medians of the same run.

Verification always runs on distinct Identity values: a pool of a few thousand headers is
signed before each round (untimed) and cycled through; libsecsipid verifies a pool of its own
signatures.  Every call's result is checked; a failure aborts the run with an error.

The script is a report, not a gate: it prints pass/fail per target and exits 0 unless
something errored.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import timeit
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

import secsipid
from _common import (
    LIBSECSIPID_PATH,
    Credentials,
    LibSecSIPID,
    Pool,
    Series,
    calibrate,
    machine_info,
    measure,
    openssl_speed_ecdsap256,
    pin_to_cpu,
    temp_credentials,
    thread_affinities,
)

ORIG = "12155550121"
DEST = "12155550131"
X5U = "https://cert.example.org/stir/shaken/cert.pem"
EXPIRE = 300  # seconds; Kamailio's default, and the default of Verifier and check_identity

# Targets from issue 2, item 10.
SIGN_VS_OPENSSL = 0.55
SIGN_VS_LIB = 1.4
VERIFY_VS_OPENSSL = 0.75
VERIFY_VS_LIB = 1.5
CONVENIENCE_VS_REUSABLE = 0.90


@dataclass(frozen=True, slots=True)
class Settings:
    rounds: int
    duration: float
    pool: int
    openssl_seconds: int


FULL = Settings(rounds=5, duration=1.5, pool=4096, openssl_seconds=3)
QUICK = Settings(rounds=2, duration=0.5, pool=2048, openssl_seconds=1)


@dataclass(slots=True)
class Contender:
    key: str
    op: str  # "sign" or "verify"
    label: str
    run: Callable[[int], None]
    batch: int = 0


# -- setup ------------------------------------------------------------------------------------


def _ecdsa(deterministic: bool, key: ec.EllipticCurvePrivateKey) -> ec.ECDSA:
    if deterministic:
        algorithm = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
        try:
            key.sign(b"probe", algorithm)
            return algorithm
        except UnsupportedAlgorithm:  # OpenSSL < 3.2
            pass
    return ec.ECDSA(hashes.SHA256())


def _der(signature: bytes) -> bytes:
    return encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )


class Bench:
    """All contenders and the state they share (keys, pools)."""

    def __init__(self, creds: Credentials, lib: LibSecSIPID | None, pool_size: int) -> None:
        self.creds = creds
        self.lib = lib
        self.pool_size = pool_size
        key = secsipid.load_private_key(creds.key_pem)
        credential = secsipid.load_credential(creds.cert_pem)
        self.key = key
        self.signer = secsipid.Signer(key, X5U)
        self.verifier = secsipid.Verifier(credential)
        self.public_key = credential.public_key
        self.det = _ecdsa(True, key)
        self.rnd = _ecdsa(False, key)
        self.es256 = ec.ECDSA(hashes.SHA256())
        # A SHAKEN-sized signing input (BASE64URL(header) "." BASE64URL(claims)).
        self.message = self.signer.sign(ORIG, DEST, "A").rsplit(".", 1)[0].encode("ascii")
        self.ours = Pool([""])
        self.theirs = Pool([b""])
        self.floor = Pool([(b"", b"")])
        self.new_pools()

    def new_pools(self) -> None:
        """Fresh, distinct Identity values (iat = now) for the verifiers: untimed."""
        n = self.pool_size
        ours = [self.signer.identity(ORIG, f"1215{i:07d}", "A") for i in range(n)]
        self.ours = Pool(ours)
        floor = []
        for value in ours:
            token = value.split(";", 1)[0]
            signing_input, sig = token.rsplit(".", 1)
            floor.append((_der(secsipid.b64url_decode(sig)), signing_input.encode("ascii")))
        self.floor = Pool(floor)
        if self.lib is not None:
            theirs = [
                self.lib.identity(
                    ORIG.encode(),
                    f"1215{i:07d}".encode(),
                    b"A",
                    b"",
                    X5U.encode(),
                    self.creds.key_pem,
                )
                for i in range(n)
            ]
            if len(set(theirs)) != n or len(set(ours)) != n:
                raise RuntimeError("the verification pools hold duplicate values")
            self.theirs = Pool(theirs)

    def sanity(self) -> list[str]:
        """Each side verifies the other's output once (untimed), and the checks that the
        benchmark relies on (a bad value fails) hold."""
        notes = []
        value = self.ours.values[0]
        self.verifier.verify(value)
        if secsipid.check_identity(value, str(self.creds.cert_path)).ok is not True:
            raise RuntimeError("check_identity refused a fresh value")
        tampered = value.replace(".", ".x", 1)
        if self.verifier.check(tampered).ok:
            raise RuntimeError("Verifier.check accepted a tampered value: benchmark invalid")
        if self.lib is not None:
            theirs = self.theirs.values[0]
            self.verifier.verify(theirs.decode("ascii"))
            code = self.lib.check(value.encode("ascii"), EXPIRE, self.creds.pub_pem)
            if code != 0:
                raise RuntimeError(f"libsecsipid refused our header: {code}")
            code = self.lib.check(theirs.replace(b".", b".x", 1), EXPIRE, self.creds.pub_pem)
            if code == 0:
                raise RuntimeError("libsecsipid accepted a tampered value: benchmark invalid")
            notes.append("interop: secsipid verifies libsecsipid's headers and vice versa")
        return notes

    # -- contenders --------------------------------------------------------------------------

    def contenders(self) -> list[Contender]:
        signer, verifier = self.signer, self.verifier
        key, public_key, message = self.key, self.public_key, self.message
        det, rnd, es256 = self.det, self.rnd, self.es256
        key_path, cert_path = str(self.creds.key_path), str(self.creds.cert_path)
        add_identity, check_identity = secsipid.add_identity, secsipid.check_identity

        def crypto_sign_det(n: int) -> None:
            sign = key.sign
            for _ in range(n):
                sign(message, det)

        def crypto_sign_rnd(n: int) -> None:
            sign = key.sign
            for _ in range(n):
                sign(message, rnd)

        def signer_identity(n: int) -> None:
            identity = signer.identity
            for _ in range(n):
                identity(ORIG, DEST, "A")

        def add_identity_path(n: int) -> None:
            for _ in range(n):
                add_identity(ORIG, DEST, "A", "", X5U, key_path)

        def crypto_verify(n: int) -> None:
            verify = public_key.verify
            for der, data in self.floor.take(n):
                verify(der, data, es256)  # raises InvalidSignature

        def verifier_verify(n: int) -> None:
            verify = verifier.verify
            for value in self.ours.take(n):
                verify(value)  # raises VerificationError

        def verifier_check(n: int) -> None:
            check = verifier.check
            for value in self.ours.take(n):
                verdict = check(value)
                if not verdict.ok:
                    raise RuntimeError(f"Verifier.check: {verdict.reason} {verdict.message}")

        def check_identity_path(n: int) -> None:
            for value in self.ours.take(n):
                verdict = check_identity(value, cert_path)
                if not verdict.ok:
                    raise RuntimeError(f"check_identity: {verdict.reason} {verdict.message}")

        items = [
            Contender("crypto_sign_det", "sign", "cryptography sign, RFC 6979", crypto_sign_det),
            Contender("crypto_sign_rnd", "sign", "cryptography sign, random k", crypto_sign_rnd),
            Contender("signer", "sign", "Signer.identity", signer_identity),
            Contender("add_identity", "sign", "add_identity (key path)", add_identity_path),
            Contender("crypto_verify", "verify", "cryptography verify", crypto_verify),
            Contender("verifier_verify", "verify", "Verifier.verify", verifier_verify),
            Contender("verifier_check", "verify", "Verifier.check", verifier_check),
            Contender(
                "check_identity", "verify", "check_identity (cert path)", check_identity_path
            ),
        ]
        lib = self.lib
        if lib is not None:
            orig_b, dest_b, x5u_b = ORIG.encode(), DEST.encode(), X5U.encode()
            key_pem, pub_pem = self.creds.key_pem, self.creds.pub_pem

            def lib_sign(n: int) -> None:
                lib.sign_loop(n, orig_b, dest_b, b"A", x5u_b, key_pem)

            def lib_check(n: int) -> None:
                lib.check_loop(self.theirs.take(n), EXPIRE, pub_pem)

            items.insert(
                4, Contender("lib_sign", "sign", "libsecsipid GetIdentityPrvKey", lib_sign)
            )
            items.append(Contender("lib_check", "verify", "libsecsipid CheckFullPubKey", lib_check))
        return items


# -- the run ----------------------------------------------------------------------------------


def run_rounds(
    bench: Bench, settings: Settings, cpu: int, openssl: bool, log: Callable[[str], None]
) -> dict[str, Series]:
    contenders = bench.contenders()
    series: dict[str, Series] = {c.key: Series() for c in contenders}
    if openssl:
        series["openssl_sign"] = Series()
        series["openssl_verify"] = Series()
    for c in contenders:  # warm-up and batch size (~20 ms), capped at the pool size
        c.batch = min(calibrate(c.run), bench.pool_size)
    slots: list[Contender | None] = [*contenders, None] if openssl else [*contenders]
    for rnd in range(settings.rounds):
        bench.new_pools()
        shift = rnd * max(1, len(slots) // settings.rounds + 1)
        order = slots[shift % len(slots) :] + slots[: shift % len(slots)]
        parts = []
        for slot in order:
            if slot is None:
                sign, verify = openssl_speed_ecdsap256(cpu, settings.openssl_seconds)
                # openssl speed divides by CPU user time unless given -elapsed.
                series["openssl_sign"].add(sign, sign)
                series["openssl_verify"].add(verify, verify)
                parts.append(f"openssl {sign:,.0f}/{verify:,.0f}")
                continue
            sample = measure(slot.run, settings.duration, slot.batch)
            series[slot.key].add(sample.rate, sample.cpu_rate)
            parts.append(f"{slot.key} {sample.rate:,.0f}")
        log(f"round {rnd + 1}/{settings.rounds}: " + ", ".join(parts))
    return series


LABELS = {
    "openssl_sign": ("sign", "openssl speed ecdsap256"),
    "openssl_verify": ("verify", "openssl speed ecdsap256"),
}
ORDER = [
    "openssl_sign",
    "crypto_sign_det",
    "crypto_sign_rnd",
    "signer",
    "add_identity",
    "lib_sign",
    "openssl_verify",
    "crypto_verify",
    "verifier_verify",
    "verifier_check",
    "check_identity",
    "lib_check",
]


@dataclass(slots=True)
class Target:
    row: str  # the table row it belongs to
    description: str
    short: str  # for the table's target column
    ratio: float  # of wall-clock medians
    cpu_ratio: float  # of CPU-time medians
    threshold: float

    @property
    def passed(self) -> bool:
        return not math.isnan(self.ratio) and self.ratio >= self.threshold

    @property
    def cpu_passed(self) -> bool:
        return not math.isnan(self.cpu_ratio) and self.cpu_ratio >= self.threshold


def _ratio(series: dict[str, Series], a: str, b: str, cpu: bool = False) -> float:
    if a not in series or b not in series:
        return float("nan")
    if cpu:
        return series[a].cpu_median / series[b].cpu_median
    return series[a].median / series[b].median


def evaluate(series: dict[str, Series]) -> list[Target]:
    """The issue's targets, as ratios of medians; verify targets apply to both the
    VerifiedPassport path (verify) and the Verdict path (check)."""
    spec = [
        ("signer", "openssl_sign", SIGN_VS_OPENSSL, "openssl"),
        ("signer", "lib_sign", SIGN_VS_LIB, "lib"),
        ("verifier_verify", "openssl_verify", VERIFY_VS_OPENSSL, "openssl"),
        ("verifier_verify", "lib_check", VERIFY_VS_LIB, "lib"),
        ("verifier_check", "openssl_verify", VERIFY_VS_OPENSSL, "openssl"),
        ("verifier_check", "lib_check", VERIFY_VS_LIB, "lib"),
        ("add_identity", "signer", CONVENIENCE_VS_REUSABLE, "Signer.identity"),
        ("check_identity", "verifier_check", CONVENIENCE_VS_REUSABLE, "Verifier.check"),
    ]
    names = {
        "signer": "Signer.identity",
        "verifier_verify": "Verifier.verify",
        "verifier_check": "Verifier.check",
        "add_identity": "add_identity",
        "check_identity": "check_identity",
        "openssl": "openssl speed",
        "lib": "libsecsipid",
    }
    return [
        Target(
            row,
            f"{names[row]} >= {threshold:g}x {names.get(short, short)}",
            f">={threshold:g}x {short}",
            _ratio(series, row, ref),
            _ratio(series, row, ref, cpu=True),
            threshold,
        )
        for row, ref, threshold, short in spec
    ]


def _x(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.2f}x"


def report(
    series: dict[str, Series], labels: dict[str, tuple[str, str]], targets: list[Target]
) -> str:
    by_row: dict[str, list[Target]] = {}
    for t in targets:
        by_row.setdefault(t.row, []).append(t)
    head = (
        f"{'':6} {'':30} {'ops/s (median)':>14} {'min - max':>17} {'us/op':>7}"
        f" {'CPU ops/s':>9} {'vs openssl':>10} {'vs libsecsipid':>14}   {'target':<27} pass"
    )
    lines = [head]
    for key in ORDER:
        if key not in series:
            continue
        s = series[key]
        op, label = labels[key]
        ref_openssl = "openssl_sign" if op == "sign" else "openssl_verify"
        ref_lib = "lib_sign" if op == "sign" else "lib_check"
        row_targets = by_row.get(key, [])
        target_text = ", ".join(t.short for t in row_targets)
        passed = ", ".join(
            "n/a" if math.isnan(t.ratio) else ("yes" if t.passed else "NO") for t in row_targets
        )
        if key == "openssl_verify":
            lines.append("")
        line = (
            f"{op:6} {label:30} {s.median:>14,.0f} {s.low:>8,.0f}-{s.high:<8,.0f}"
            f" {1e6 / s.median:>7.1f} {s.cpu_median:>9,.0f}"
            f" {_x(_ratio(series, key, ref_openssl)):>10}"
            f" {_x(_ratio(series, key, ref_lib)):>14}   {target_text:<27} {passed}"
        )
        lines.append(line.rstrip())
    return "\n".join(lines)


# -- where the time goes ----------------------------------------------------------------------


class _StubPrivateKey(ec.EllipticCurvePrivateKey):
    """A real key whose ``sign`` returns a fixed signature: measures everything but ECDSA."""

    def __init__(self, real: ec.EllipticCurvePrivateKey, der: bytes) -> None:
        self._real, self._der = real, der

    def sign(self, data: Any, signature_algorithm: Any) -> bytes:
        return self._der

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._real.curve

    @property
    def key_size(self) -> int:
        return self._real.key_size

    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self._real.public_key()

    def exchange(self, algorithm: Any, peer_public_key: Any) -> bytes:
        return self._real.exchange(algorithm, peer_public_key)

    def private_numbers(self) -> ec.EllipticCurvePrivateNumbers:
        return self._real.private_numbers()

    def private_bytes(self, encoding: Any, format: Any, encryption_algorithm: Any) -> bytes:
        return self._real.private_bytes(encoding, format, encryption_algorithm)

    def __copy__(self) -> _StubPrivateKey:
        return self

    def __deepcopy__(self, memo: Any) -> _StubPrivateKey:
        return self


class _StubPublicKey(ec.EllipticCurvePublicKey):
    """A real public key whose ``verify`` accepts everything."""

    def __init__(self, real: ec.EllipticCurvePublicKey) -> None:
        self._real = real

    def verify(self, signature: Any, data: Any, signature_algorithm: Any) -> None:
        return None

    @property
    def curve(self) -> ec.EllipticCurve:
        return self._real.curve

    @property
    def key_size(self) -> int:
        return self._real.key_size

    def public_numbers(self) -> ec.EllipticCurvePublicNumbers:
        return self._real.public_numbers()

    def public_bytes(self, encoding: Any, format: Any) -> bytes:
        return self._real.public_bytes(encoding, format)

    def __eq__(self, other: object) -> bool:
        return other is self

    __hash__ = object.__hash__

    def __copy__(self) -> _StubPublicKey:
        return self

    def __deepcopy__(self, memo: Any) -> _StubPublicKey:
        return self


def _us(fn: Callable[[], object], number: int = 20000, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


def breakdown(bench: Bench, log: Callable[[str], None]) -> dict[str, float]:
    """Real key vs stub key (crypto vs everything else), then the pipeline's steps."""
    key, message = bench.key, bench.message
    stub_signer = secsipid.Signer(_StubPrivateKey(key, key.sign(message, bench.rnd)), X5U)
    stub_verifier = secsipid.Verifier(secsipid.Credential(_StubPublicKey(bench.public_key)))
    signer, verifier = bench.signer, bench.verifier
    values = bench.ours.values
    n = len(values)
    it = iter(range(1 << 62))

    def cycling(fn: Callable[[str], object]) -> Callable[[], object]:
        return lambda: fn(values[next(it) % n])

    results: dict[str, float] = {}

    def row(name: str, fn: Callable[[], object], number: int = 5000) -> None:
        results[name] = _us(fn, number=number)
        log(f"  {name:50} {results[name]:7.2f} us")

    log("end to end (min of 7 repeats, us/op):")
    row("cryptography sign RFC 6979 (floor)", lambda: key.sign(message, bench.det))
    row("Signer.identity, real key", lambda: signer.identity(ORIG, DEST, "A"))
    row("Signer.identity, stub key (= overhead)", lambda: stub_signer.identity(ORIG, DEST, "A"))
    floor_pool = bench.floor.values
    j = iter(range(1 << 62))

    def floor_verify() -> None:
        der, data = floor_pool[next(j) % n]
        bench.public_key.verify(der, data, bench.es256)

    row("cryptography verify (floor)", floor_verify)
    row("Verifier.verify, real key", cycling(verifier.verify))
    row("Verifier.verify, stub key (= overhead)", cycling(stub_verifier.verify))
    row("Verifier.check, real key", cycling(verifier.check))
    row("Verifier.check, stub key (= overhead)", cycling(stub_verifier.check))
    key_path, cert_path = str(bench.creds.key_path), str(bench.creds.cert_path)
    row(
        "add_identity (key path), real key",
        lambda: secsipid.add_identity(ORIG, DEST, "A", "", X5U, key_path),
    )
    row(
        "check_identity (cert path), real key",
        cycling(lambda v: secsipid.check_identity(v, cert_path)),
    )

    # The steps, each timed alone on a representative value (private helpers where needed).
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    value = values[0]
    token = value.split(";", 1)[0]
    _, claims_b64, sig_b64 = token.split(".")
    claims_json = secsipid.b64url_decode(claims_b64)
    der = key.sign(message, bench.rnd)
    sig = secsipid.b64url_decode(sig_b64)
    decoded = secsipid.decode_token(token)
    private_key_from_file, credential_from_file = (
        secsipid.private_key_from_file,
        secsipid.credential_from_file,
    )
    steps: list[tuple[str, Callable[[], object]]] = [
        ("verify: split_identity_values", lambda: secsipid.split_identity_values(value)),
        ("verify: parse_identity", lambda: secsipid.parse_identity(value)),
        ("verify: decode_token (all of it)", lambda: secsipid.decode_token(token)),
        ("verify:   b64url_decode(claims)", lambda: secsipid.b64url_decode(claims_b64)),
        ("verify:   b64url_decode(signature)", lambda: secsipid.b64url_decode(sig_b64)),
        ("verify: encode_dss_signature + 2 int.from_bytes", lambda: _der(sig)),
        ("sign:   decode_dss_signature + 2 int.to_bytes", lambda: _raw(decode_dss_signature(der))),
        ("sign:   b64url_encode(claims)", lambda: secsipid.b64url_encode(claims_json)),
        ("sign:   b64url_encode(signature)", lambda: secsipid.b64url_encode(sig)),
        ("sign:   new_origid", secsipid.new_origid),
        ("sign:   canonical_tn", lambda: secsipid.canonical_tn(ORIG)),
        ("files:  os.stat(key file)", lambda: os.stat(key_path)),
        ("files:  private_key_from_file (stat + cache)", lambda: private_key_from_file(key_path)),
        ("files:  credential_from_file (stat + cache)", lambda: credential_from_file(cert_path)),
        ("files:  VerifyPolicy(expire=300)", lambda: secsipid.VerifyPolicy(expire=300)),
    ]
    try:
        from secsipid._codec import loads_strict
        from secsipid._passport import check_shaken_claims

        steps.insert(5, ("verify:   loads_strict(claims)", lambda: loads_strict(claims_json)))
        steps.insert(
            6, ("verify: check_shaken_claims", lambda: check_shaken_claims(decoded.claims))
        )
    except ImportError:
        pass
    log("steps (min of 7 repeats, us/call):")
    for name, fn in steps:
        row(name, fn, number=50000)
    return results


def _raw(rs: tuple[int, int]) -> bytes:
    return rs[0].to_bytes(32, "big") + rs[1].to_bytes(32, "big")


# -- main -------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="secsipid core sign/verify throughput vs openssl speed and libsecsipid"
    )
    parser.add_argument("--quick", action="store_true", help="2 short rounds (~20 s)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 5, quick 2)")
    parser.add_argument("--duration", type=float, help="seconds per contender per round")
    parser.add_argument("--pool", type=int, help="distinct Identity values per verify pool")
    parser.add_argument("--openssl-seconds", type=int, help="openssl speed -seconds (3, quick 1)")
    parser.add_argument("--cpu", type=int, help="CPU to pin to (default: the highest allowed)")
    parser.add_argument("--no-openssl", action="store_true", help="skip openssl speed")
    parser.add_argument("--no-libsecsipid", action="store_true", help="skip libsecsipid")
    parser.add_argument(
        "--lib-unpinned",
        action="store_true",
        help="load libsecsipid before pinning, so its Go runtime may use every CPU",
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="only split crypto vs overhead and time steps"
    )
    args = parser.parse_args(argv)
    base = QUICK if args.quick else FULL
    settings = Settings(
        rounds=args.rounds or base.rounds,
        duration=args.duration or base.duration,
        pool=args.pool or base.pool,
        openssl_seconds=args.openssl_seconds or base.openssl_seconds,
    )

    def log(text: str) -> None:
        print(text, flush=True)

    use_lib = not args.no_libsecsipid and not args.breakdown
    if use_lib and not os.path.exists(LIBSECSIPID_PATH):
        log(f"note: {LIBSECSIPID_PATH} not found (apt install libsecsipid1): skipping it")
        use_lib = False
    lib = LibSecSIPID() if use_lib and args.lib_unpinned else None
    cpu = pin_to_cpu(args.cpu)
    if use_lib and lib is None:
        lib = LibSecSIPID()  # after pinning: the Go runtime's threads inherit the pin

    info = machine_info()
    log(
        f"secsipid {info['secsipid']} ({info.get('git', '?')}), Python {info['python']}, "
        f"cryptography {info['cryptography']} ({info['cryptography_openssl']}), "
        f"openssl CLI: {info['openssl_cli']}, {info['libsecsipid'] or 'libsecsipid ?'}"
    )
    log(f"{info['cpu_model']}, nproc {info['nproc']}, pinned to CPU {cpu}")

    with temp_credentials() as creds:
        bench = Bench(creds, lib, settings.pool)
        notes = bench.sanity()
        if args.breakdown:
            results = breakdown(bench, log)
            if args.json:
                with open(args.json, "w", encoding="utf-8") as fh:
                    json.dump({"machine": info, "cpu": cpu, "breakdown_us": results}, fh, indent=2)
            return 0
        log(
            f"{settings.rounds} rounds x {settings.duration:g} s per contender, "
            f"openssl speed -seconds {settings.openssl_seconds}, "
            f"verify pools of {settings.pool} distinct values"
        )
        started, load_before = time.time(), os.getloadavg()[0]
        series = run_rounds(bench, settings, cpu, not args.no_openssl, log)
        elapsed = time.time() - started
        threads = thread_affinities()

    labels = dict(LABELS)
    for c in bench.contenders():
        labels[c.key] = (c.op, c.label)
    targets = evaluate(series)
    log("")
    log(report(series, labels, targets))
    log("")
    log(
        "ops/s, min-max and the table's ratios are wall-clock; CPU ops/s is per second of"
        " process CPU time (user+sys, all threads; openssl speed's own figure is per second"
        " of CPU user time)"
    )
    log("")
    log("targets (ratios of medians from this run):     wall-clock      CPU time")
    for t in targets:
        cells = []
        for ratio, ok in ((t.ratio, t.passed), (t.cpu_ratio, t.cpu_passed)):
            verdict = "n/a" if math.isnan(ratio) else ("pass" if ok else "FAIL")
            cells.append(f"{'' if math.isnan(ratio) else f'{ratio:.3f}x':>7} {verdict:<5}")
        log(f"  {t.description:42} {cells[0]}   {cells[1]}".rstrip())
    log("")
    log("notes:")
    for note in notes:
        log(f"  {note}")
    stray = {tid: cpus for tid, cpus in threads.items() if cpus != str(cpu)}
    log(
        f"  threads: {len(threads)} in this process, "
        + (f"all pinned to CPU {cpu}" if not stray else f"{len(stray)} NOT pinned: {stray}")
        + (" (libsecsipid loaded before pinning)" if args.lib_unpinned else "")
    )
    if "lib_sign" in series:
        for key, ours in (("lib_sign", "signer"), ("lib_check", "verifier_verify")):
            s, o = series[key], series[ours]
            log(
                f"  {labels[key][1]}: wall {1e6 / s.median:.1f} us/op, process CPU "
                f"{1e6 / s.cpu_median:.1f} us/op (all threads); {labels[ours][1]} "
                f"CPU-time ratio {o.cpu_median / s.cpu_median:.2f}x "
                f"(the table's ratios use wall-clock ops/s)"
            )
        log(
            "  libsecsipid is called through ctypes (under 1 us/call of binding cost, included);"
            " it parses the key PEM on every call, as its API requires, and verifies with the"
            " public key PEM, its cheapest input"
        )
    load_after = os.getloadavg()[0]
    noisy = [
        labels[key][1]
        for key, s in series.items()
        if not key.startswith("openssl")
        and (s.high > 1.10 * s.low or s.median < 0.95 * s.cpu_median)
    ]
    if noisy:
        log(
            f"  NOISY: {', '.join(noisy)} varied by more than 10% between rounds or lost over 5%"
            " of wall-clock time to other processes; rerun on a quiet machine"
        )
    log(
        f"  run took {elapsed:.0f} s; spreads are min-max over {settings.rounds} rounds; "
        f"1-min load average {load_before:.2f} before, {load_after:.2f} after "
        f"(on {info['nproc']} CPUs: other work on the machine shows up as spread)"
    )

    if args.json:
        out = {
            "machine": info,
            "cpu": cpu,
            "settings": {
                "rounds": settings.rounds,
                "duration": settings.duration,
                "pool": settings.pool,
                "openssl_seconds": settings.openssl_seconds,
                "lib_unpinned": args.lib_unpinned,
            },
            "results": {
                key: {
                    "op": labels[key][0],
                    "label": labels[key][1],
                    "median": s.median,
                    "min": s.low,
                    "max": s.high,
                    "rates": s.rates,
                    "cpu_median": None if math.isnan(s.cpu_median) else s.cpu_median,
                    "cpu_rates": [None if math.isnan(r) else r for r in s.cpu_rates],
                }
                for key, s in series.items()
            },
            "targets": [
                {
                    "target": t.description,
                    "ratio": None if math.isnan(t.ratio) else t.ratio,
                    "cpu_ratio": None if math.isnan(t.cpu_ratio) else t.cpu_ratio,
                    "threshold": t.threshold,
                    "pass": None if math.isnan(t.ratio) else t.passed,
                    "cpu_pass": None if math.isnan(t.cpu_ratio) else t.cpu_passed,
                }
                for t in targets
            ],
            "threads": {str(k): v for k, v in threads.items()},
            "elapsed_s": elapsed,
            "loadavg_1min": [load_before, load_after],
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=2)
        log(f"  results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
