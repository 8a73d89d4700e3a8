"""Shared helpers for the benchmarks in ``bench/`` (not part of the library or the tests).

* pinning the process to one CPU and checking that every thread stayed there;
* timing a contender for a fixed duration (wall clock and process CPU time);
* medians and spreads over interleaved rounds;
* a throw-away P-256 key, certificate and public key in a temporary directory;
* ``openssl speed`` pinned with ``taskset``, and its output parsed;
* libsecsipid (the Go C library) through ctypes, with every return code checked;
* a description of the machine and of the software versions.
"""

from __future__ import annotations

import ctypes
import datetime
import glob
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LIBSECSIPID_PATH",
    "Credentials",
    "LibSecSIPID",
    "Pool",
    "Sample",
    "Series",
    "machine_info",
    "measure",
    "openssl_speed_ecdsap256",
    "pin_to_cpu",
    "temp_credentials",
    "thread_affinities",
]

LIBSECSIPID_PATH = "/usr/lib/x86_64-linux-gnu/libsecsipid.so.1"


# -- CPU pinning ------------------------------------------------------------------------------


def pin_to_cpu(cpu: int | None) -> int:
    """Pin the calling thread (and every thread it creates later) to one CPU; return it.

    ``None`` picks the highest CPU this process may run on.  Threads that already exist keep
    their mask: load native libraries that start threads (libsecsipid's Go runtime) *after*
    this call so that they inherit the pin.
    """
    allowed = sorted(os.sched_getaffinity(0))
    if cpu is None:
        cpu = allowed[-1]
    if cpu not in allowed:
        raise SystemExit(f"CPU {cpu} is not available to this process (allowed: {allowed})")
    os.sched_setaffinity(0, {cpu})
    return cpu


def thread_affinities() -> dict[int, str]:
    """``Cpus_allowed_list`` of every thread of this process, by thread id (Linux)."""
    result: dict[int, str] = {}
    for status in glob.glob("/proc/self/task/*/status"):
        tid = int(status.split("/")[-2])
        try:
            with open(status, encoding="ascii") as fh:
                for line in fh:
                    if line.startswith("Cpus_allowed_list:"):
                        result[tid] = line.split(":", 1)[1].strip()
        except OSError:  # the thread exited meanwhile
            continue
    return result


# -- timing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sample:
    """``ops`` operations took ``wall`` seconds of wall-clock time and ``cpu`` seconds of
    process CPU time (all threads)."""

    ops: int
    wall: float
    cpu: float

    @property
    def rate(self) -> float:
        return self.ops / self.wall

    @property
    def cpu_rate(self) -> float:
        return self.ops / self.cpu if self.cpu > 0 else float("nan")


def measure(run: Callable[[int], object], duration: float, batch: int) -> Sample:
    """Call ``run(batch)`` (which performs ``batch`` operations) until ``duration`` seconds
    of wall-clock time have passed; the clock is read only between batches."""
    ops = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    deadline = wall0 + duration
    while True:
        run(batch)
        ops += batch
        now = time.perf_counter()
        if now >= deadline:
            break
    return Sample(ops, now - wall0, time.process_time() - cpu0)


def calibrate(run: Callable[[int], object], target: float = 0.02) -> int:
    """A batch size that takes about ``target`` seconds (at least 1), after a warm-up."""
    batch = 1
    while True:
        t0 = time.perf_counter()
        run(batch)
        elapsed = time.perf_counter() - t0
        if elapsed >= target / 4 or batch >= 1 << 20:
            return max(1, int(batch * target / max(elapsed, 1e-9)))
        batch *= 4


@dataclass(slots=True)
class Series:
    """Rates (ops/s) of one contender over the rounds of a run."""

    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    def add(self, rate: float, cpu_rate: float = float("nan")) -> None:
        self.rates.append(rate)
        self.cpu_rates.append(cpu_rate)

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def cpu_median(self) -> float:
        values = [r for r in self.cpu_rates if r == r]  # drop NaN
        return statistics.median(values) if values else float("nan")

    @property
    def low(self) -> float:
        return min(self.rates)

    @property
    def high(self) -> float:
        return max(self.rates)


class Pool:
    """A fixed list of distinct values handed out in slices, cycling."""

    __slots__ = ("_pos", "values")

    def __init__(self, values: Sequence[Any]) -> None:
        if not values:
            raise ValueError("empty pool")
        self.values = list(values)
        self._pos = 0

    def take(self, n: int) -> list[Any]:
        values, pos = self.values, self._pos
        out = values[pos : pos + n]
        while len(out) < n:
            out += values[: n - len(out)]
        self._pos = (pos + n) % len(values)
        return out


# -- keys -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Credentials:
    """A P-256 key pair and a self-signed certificate, as PEM bytes and as files."""

    directory: Path
    key_pem: bytes  # PKCS#8
    cert_pem: bytes
    pub_pem: bytes  # SubjectPublicKeyInfo
    key_path: Path
    cert_path: Path
    pub_path: Path


@contextmanager
def temp_credentials() -> Iterator[Credentials]:
    """Generate a throw-away P-256 key and certificate in a temporary directory, removed on
    exit."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secsipid benchmark")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    pub_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with tempfile.TemporaryDirectory(prefix="secsipid-bench-") as tmp:
        directory = Path(tmp)
        paths = []
        for filename, data in (("key.pem", key_pem), ("cert.pem", cert_pem), ("pub.pem", pub_pem)):
            path = directory / filename
            path.write_bytes(data)
            path.chmod(0o600)
            paths.append(path)
        yield Credentials(directory, key_pem, cert_pem, pub_pem, *paths)


# -- openssl speed ----------------------------------------------------------------------------

_SPEED_LINE = re.compile(
    r"^\s*256 bits ecdsa \(nistp256\)\s+\S+\s+\S+\s+([0-9.]+)\s+([0-9.]+)\s*$", re.MULTILINE
)


def openssl_speed_ecdsap256(cpu: int, seconds: int) -> tuple[float, float]:
    """``taskset -c CPU openssl speed -seconds N ecdsap256``: (sign/s, verify/s)."""
    for tool in ("openssl", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found in PATH")
    cmd = ["taskset", "-c", str(cpu), "openssl", "speed", "-seconds", str(seconds), "ecdsap256"]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
    matches = _SPEED_LINE.findall(proc.stdout)
    if not matches:
        raise RuntimeError(f"cannot parse `{' '.join(cmd)}` output:\n{proc.stdout[-2000:]}")
    sign, verify = matches[-1]
    return float(sign), float(verify)


# -- libsecsipid ------------------------------------------------------------------------------


class LibSecSIPID:
    """The two libsecsipid 1.2.0 calls we compare with, through ctypes.

    ``int SecSIPIDGetIdentityPrvKey(char* origTN, char* destTN, char* attestVal,
    char* origID, char* x5uVal, char* prvkeyData, char** outPtr)`` returns the length of
    ``*outPtr`` (malloc'd, freed here with libc ``free``) or a negative code;
    ``int SecSIPIDCheckFullPubKey(char* identityVal, int identityLen, int expireVal,
    char* pubkeyVal, int pubkeyLen)`` returns 0 when valid.
    """

    def __init__(self, path: str = LIBSECSIPID_PATH) -> None:
        self.path = path
        lib = ctypes.CDLL(path)
        libc = ctypes.CDLL(None)
        self._free = libc.free
        self._free.argtypes = [ctypes.c_void_p]
        self._free.restype = None
        sign = lib.SecSIPIDGetIdentityPrvKey
        sign.argtypes = [ctypes.c_char_p] * 6 + [ctypes.POINTER(ctypes.c_void_p)]
        sign.restype = ctypes.c_int
        check = lib.SecSIPIDCheckFullPubKey
        check.argtypes = [
            ctypes.c_char_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        check.restype = ctypes.c_int
        self.sign_fn = sign
        self.check_fn = check

    def identity(
        self, orig: bytes, dest: bytes, attest: bytes, origid: bytes, x5u: bytes, key_pem: bytes
    ) -> bytes:
        out = ctypes.c_void_p()
        length = self.sign_fn(orig, dest, attest, origid, x5u, key_pem, ctypes.byref(out))
        try:
            if length <= 0:
                raise RuntimeError(f"SecSIPIDGetIdentityPrvKey returned {length}")
            return ctypes.string_at(out.value, length) if out.value else b""
        finally:
            if out.value:
                self._free(out.value)

    def sign_loop(
        self,
        n: int,
        orig: bytes,
        dest: bytes,
        attest: bytes,
        x5u: bytes,
        key_pem: bytes,
    ) -> None:
        """``n`` signatures (random origid each), each result copied out and freed."""
        sign, free, string_at = self.sign_fn, self._free, ctypes.string_at
        out = ctypes.c_void_p()
        ref = ctypes.byref(out)
        for _ in range(n):
            length = sign(orig, dest, attest, b"", x5u, key_pem, ref)
            ptr = out.value
            if length <= 0 or not ptr:
                if ptr:
                    free(ptr)
                raise RuntimeError(f"SecSIPIDGetIdentityPrvKey returned {length}")
            string_at(ptr, length)
            free(ptr)

    def check(self, value: bytes, expire: int, pub_pem: bytes) -> int:
        return int(self.check_fn(value, len(value), expire, pub_pem, len(pub_pem)))

    def check_loop(self, values: list[bytes], expire: int, pub_pem: bytes) -> None:
        check, plen = self.check_fn, len(pub_pem)
        for value in values:
            code = check(value, len(value), expire, pub_pem, plen)
            if code != 0:
                raise RuntimeError(f"SecSIPIDCheckFullPubKey returned {code}")


# -- machine description ----------------------------------------------------------------------


def _command_output(cmd: Sequence[str]) -> str:
    try:
        return subprocess.run(list(cmd), capture_output=True, text=True, check=False).stdout
    except OSError:
        return ""


def machine_info() -> dict[str, Any]:
    """What the numbers were measured on."""
    import cryptography
    from cryptography.hazmat.backends.openssl import backend

    lscpu = _command_output(["lscpu"])
    fields = {}
    for line in lscpu.splitlines():
        name, _, value = line.partition(":")
        fields[name.strip()] = value.strip()
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu_model": fields.get("Model name", platform.processor()),
        "hypervisor": fields.get("Hypervisor vendor", ""),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "cryptography": cryptography.__version__,
        "cryptography_openssl": backend.openssl_version_text(),
        "openssl_cli": _command_output(["openssl", "version"]).strip(),
        "libsecsipid": _command_output(
            ["dpkg-query", "-W", "-f", "${Package} ${Version}", "libsecsipid1"]
        ).strip(),
    }
    try:
        import secsipid

        info["secsipid"] = secsipid.__version__
    except ImportError:
        info["secsipid"] = "not importable"
    here = Path(__file__).resolve().parent
    commit = _command_output(["git", "-C", str(here), "rev-parse", "--short", "HEAD"]).strip()
    if commit:
        dirty = _command_output(["git", "-C", str(here), "status", "--porcelain", "--", "../src"])
        info["git"] = commit + ("+dirty-src" if dirty.strip() else "")
    return info
