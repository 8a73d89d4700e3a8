"""Certificate benchmark: verification with the certificate from the info URL.

    .venv/bin/python bench/bench_certs.py [--quick] [--json FILE]

In one run, pinned to one core, with a real HTTP server on 127.0.0.1 (its own process) serving
a lab chain (root -> STI-CA -> leaf with TNAuthList) and counting requests:

* ``file``       Verifier with the certificate file (one stat() per call);
* ``url-warm``   Verifier with a CertificateSource, cache warm (the info URL path);
* ``key``        Verifier with the key in memory, no trust checks (plain signature verification);
* ``url-chain``  CertificateSource + TrustPolicy (root file, intermediate from x5u, CRL file);
* ``libsecsipid`` SecSIPIDCheckFull with its file cache and CertVerify=4|16 (CA file + CRL),
  in a child process (the Go runtime stays out of ours);
* the number of HTTP requests a burst of 1,000 verifications on a cold URL causes, with
  threads and with asyncio tasks (must be 1).

Every verification checks a different Identity value (a pool signed beforehand), and every
result is asserted valid.  Rounds are interleaved; medians are reported with min-max.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

import secsipid
from secsipid import CertificateSource, FetchPolicy, MemoryCache, Signer, TrustPolicy, Verifier
from secsipid._pki import make_crl, make_lab_pki

ORIG, DEST = "12155550121", "12155550131"

SERVER = r"""
import http.server, sys, threading
body = open(sys.argv[1], "rb").read()
hits = {}
lock = threading.Lock()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == "/_hits":
            with lock: out = repr(hits).encode()
        else:
            with lock: hits[self.path] = hits.get(self.path, 0) + 1
            out = body
        self.send_response(200)
        self.send_header("Content-Type", "application/pem-certificate-chain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
s.daemon_threads = True
print(s.server_address[1], flush=True)
s.serve_forever()
"""

LIBSECSIPID_CHILD = r"""
import ctypes, json, sys, time
lib = ctypes.CDLL("libsecsipid.so.1")
lib.SecSIPIDCheckFull.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p,
                                  ctypes.c_int]
lib.SecSIPIDSetFileCacheOptions.argtypes = [ctypes.c_char_p, ctypes.c_int]
lib.SecSIPIDOptSetN.argtypes = [ctypes.c_char_p, ctypes.c_int]
lib.SecSIPIDOptSetS.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
cfg = json.loads(sys.argv[1])
lib.SecSIPIDSetFileCacheOptions(cfg["cache_dir"].encode(), 3600)
assert lib.SecSIPIDOptSetN(b"CertVerify", cfg["cert_verify"]) == 0
assert lib.SecSIPIDOptSetS(b"CertCAFile", cfg["ca_file"].encode()) == 0
assert lib.SecSIPIDOptSetS(b"CertCRLFile", cfg["crl_file"].encode()) == 0
values = [v.encode() for v in json.load(open(cfg["values"]))]
warm = lib.SecSIPIDCheckFull(values[0], 0, 3600, b"", 5)
if warm != 0:
    print(json.dumps({"error": warm})); sys.exit(0)
results = []
for _ in range(cfg["rounds"]):
    n, i, t0, c0 = 0, 1, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < cfg["seconds"]:
        rc = lib.SecSIPIDCheckFull(values[i % len(values)], 0, 3600, b"", 5)
        if rc != 0:
            print(json.dumps({"error": rc})); sys.exit(0)
        n += 1; i += 1
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    results.append({"wall_ops": n / wall, "cpu_ops": n / cpu})
print(json.dumps({"rounds": results}))
"""


class Server:
    def __init__(self, body_file: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(body_file)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.port = int(self.proc.stdout.readline())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def hits(self, path: str) -> int:
        with urllib.request.urlopen(self.url("/_hits"), timeout=5) as resp:
            counts: dict[str, int] = eval(resp.read().decode())
        return counts.get(path, 0)

    def stop(self) -> None:
        os.kill(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=5)


def rate(fn: Callable[[], object], seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while True:
        for _ in range(50):
            fn()
        n += 50
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return n / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 short rounds")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--cpu", type=int, default=0, help="core to pin to (0)")
    args = parser.parse_args()
    rounds, seconds = (2, 0.5) if args.quick else (5, 1.5)
    os.sched_setaffinity(0, {args.cpu})

    tmp = Path(tempfile.mkdtemp(prefix="secsipid-bench-certs-"))
    pki = make_lab_pki(spc="1234")
    files = pki.write(tmp)
    crl = make_crl(pki.intermediate, pki.intermediate_key, [12345])
    crl_file = tmp / "crl.pem"
    crl_file.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    server = Server(files["chain"])
    try:
        return run(args, rounds, seconds, tmp, pki, files, crl_file, server)
    finally:
        server.stop()


def run(args: argparse.Namespace, rounds: int, seconds: float, tmp: Path, pki: Any,
        files: dict[str, Path], crl_file: Path, server: Server) -> int:  # fmt: skip
    url = server.url("/sti.pem")
    signer = Signer(pki.leaf_key, url)
    pool = [signer.identity(ORIG, DEST, "A") for _ in range(4000)]
    lab = FetchPolicy(allow_http=True, allow_private=True)
    plain = CertificateSource(trust=None, fetch=lab, memory=MemoryCache())
    chained = CertificateSource(
        trust=TrustPolicy(ca_file=str(files["root"]), crl_files=(str(crl_file),)),
        fetch=lab,
        memory=MemoryCache(),
    )
    contenders: dict[str, Verifier] = {
        "key": Verifier(secsipid.Credential(pki.leaf.public_key())),
        "file": Verifier(str(files["chain"])),
        "url-warm": Verifier(plain),
        "url-chain": Verifier(chained),
    }
    for name, verifier in contenders.items():
        verdict = verifier.check(pool[0])
        assert verdict.ok, (name, verdict.reason, verdict.message)
    before = server.hits("/sti.pem")

    results: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(rounds):
        for name, verifier in contenders.items():
            values = iter(pool * 1000)
            results[name].append(rate(lambda v=verifier, it=values: v.verify(next(it)), seconds))
    assert server.hits("/sti.pem") == before, "a warm cache must not fetch"

    lib = libsecsipid(tmp, files, crl_file, pool, rounds, seconds)
    burst_threads, burst_async = burst(server, pki)

    med = {name: statistics.median(v) for name, v in results.items()}
    print(f"certificate verification, one core (cpu {args.cpu}), {rounds} rounds x {seconds} s")
    print(f"{'contender':<38}{'verifies/s':>12}{'min-max':>20}")
    labels = {
        "key": "Verifier(key), no trust",
        "file": "Verifier(cert file)",
        "url-warm": "Verifier(info URL), warm cache",
        "url-chain": "info URL + chain + CRL (TrustPolicy)",
    }
    for name, values in results.items():
        print(f"{labels[name]:<38}{med[name]:>12,.0f}{min(values):>10,.0f}-{max(values):<9,.0f}")
    if "rounds" in lib:
        walls = [r["wall_ops"] for r in lib["rounds"]]
        cpus = [r["cpu_ops"] for r in lib["rounds"]]
        lib_med = statistics.median(walls)
        print(
            f"{'libsecsipid CheckFull, cache+CertVerify':<38}{lib_med:>12,.0f}"
            f"{min(walls):>10,.0f}-{max(walls):<9,.0f} (per CPU-s: {statistics.median(cpus):,.0f})"
        )
    else:
        lib_med = 0.0
        print(f"libsecsipid: failed with code {lib.get('error')}")
    ratios = {
        "url-warm / file": (med["url-warm"] / med["file"], 0.9),
        "url-chain / key": (med["url-chain"] / med["key"], 0.8),
    }
    if lib_med:
        ratios["url-chain / libsecsipid"] = (med["url-chain"] / lib_med, 0.0)
    print()
    for label, (value, target) in ratios.items():
        passed = "pass" if value >= target else "FAIL"
        verdict = f"  target >= {target:.2f}: {passed}" if target else ""
        print(f"{label:<30}{value:>6.2f}x{verdict}")
    print(
        f"HTTP requests for 1,000 verifications on a cold URL: threads {burst_threads}, "
        f"asyncio {burst_async} (target 1)"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({
            "verifies_per_s": results, "medians": med, "libsecsipid": lib,
            "ratios": {k: v[0] for k, v in ratios.items()},
            "burst_requests": {"threads": burst_threads, "asyncio": burst_async},
        }, indent=2))  # fmt: skip
    return 0


def libsecsipid(tmp: Path, files: dict[str, Path], crl_file: Path, pool: list[str],
                rounds: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    try:
        ctypes.CDLL("libsecsipid.so.1")
    except OSError:
        return {"error": "libsecsipid.so.1 not installed (apt-get install libsecsipid1)"}
    values = tmp / "values.json"
    values.write_text(json.dumps(pool))
    cache = tmp / "sxcache"
    cache.mkdir()
    cfg = {
        "cache_dir": str(cache), "cert_verify": 4 | 16, "ca_file": str(files["root"]),
        "crl_file": str(crl_file), "values": str(values), "rounds": rounds, "seconds": seconds,
    }  # fmt: skip
    out = subprocess.run(
        ["taskset", "-c", str(next(iter(os.sched_getaffinity(0)))), sys.executable, "-c",
         LIBSECSIPID_CHILD, json.dumps(cfg)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if out.returncode != 0:
        return {"error": out.stderr.strip()[-300:]}
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def burst(server: Server, pki: Any) -> tuple[int, int]:
    """1,000 verifications at once on a URL nobody has fetched: count the requests."""
    return _burst(server, pki, "threads", _with_threads), _burst(
        server, pki, "asyncio", _with_tasks
    )


def _burst(server: Server, pki: Any, mode: str,
           run_all: Callable[[Verifier, list[str]], list[bool]]) -> int:  # fmt: skip
    path = f"/cold-{mode}.pem"
    url = server.url(path)
    signer = Signer(pki.leaf_key, url)
    values = [signer.identity(ORIG, DEST, "A") for _ in range(1000)]
    lab = FetchPolicy(allow_http=True, allow_private=True)
    verifier = Verifier(CertificateSource(trust=None, fetch=lab, memory=MemoryCache()))
    assert run_all(verifier, values) == [True] * len(values), mode
    return server.hits(path)


def _with_threads(verifier: Verifier, values: list[str], n: int = 50) -> list[bool]:
    ok: list[bool] = []
    barrier = threading.Barrier(n)

    def worker(chunk: list[str]) -> None:
        barrier.wait()
        ok.extend(verifier.check(v).ok for v in chunk)

    threads = [threading.Thread(target=worker, args=(values[i::n],)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return ok


def _with_tasks(verifier: Verifier, values: list[str]) -> list[bool]:
    async def all_at_once() -> list[bool]:
        verdicts = await asyncio.gather(*(verifier.acheck(v) for v in values))
        return [v.ok for v in verdicts]

    return asyncio.run(all_at_once())


if __name__ == "__main__":
    sys.exit(main())
