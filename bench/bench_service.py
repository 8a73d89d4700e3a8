"""Benchmark of ``secsipid serve`` against ``secsipidx -http-srv`` (not part of the tests).

Same machine, same load generator (Debian ``wrk``, a Lua script for each POST body,
``-t1 -c32``), same run, interleaved round by round:

* ``floor``: the same Granian settings serving a constant body from a plain RSGI app (the
  interface ``secsipid serve`` uses) and from a plain ASGI app: the HTTP cost alone, what no
  endpoint of ours can beat; and the same RSGI floor plus the bare ECDSA (``bare sign``,
  ``bare verify``) or plus the least a Python SHAKEN signer does per request (``minimal
  signer``: CSV split, origid, claims, base64url, ECDSA), with none of our code; and plus
  our core alone (``core sign``: ``Signer.identity``; ``core verify``: ``Verifier.check``):
  the floor and the core measured together, where a request runs;
* ``/v1/sign-csv`` and ``/v1/check`` (certificate file on both sides), ours and secsipidx;
* ``/stir/v1/signing`` and ``/stir/v1/verification`` (ours only: secsipidx has no ATIS API);
* the core's sign and verify rate in this process (one core), and the ceiling they leave:
  one request costs the floor's time plus the core operation, spread over the workers.

Besides requests per second and p99, each run reports the servers' CPU time per request (user +
system time of the server's processes, read from ``/proc`` before and after, divided by the
requests answered): on a machine that other jobs share, requests per second move with their
load, CPU time per request much less.  Every target is checked to give the expected answer
(200, and ``TN-Validation-Passed`` for the ATIS verification) before the runs.

``--pairs N`` then runs ours back to back with the floor + core, with secsipidx and (with
``--base-src``) with the other tree, N pairs per endpoint (``--pair-duration`` seconds each,
ours first and last alternately) and reports the median of the pairs' ratios: steadier than
two medians taken minutes apart on a machine whose load drifts (``--rounds 0 --pairs N``
runs only these).

``--soak MINUTES`` then runs ``/v1/check`` at about half the measured rate for that long
(the issue asks 10 minutes) and prints the errors and the servers' RSS at start and end.

Run from the repository root (``apt-get install wrk secsipidx`` first)::

    .venv/bin/python bench/bench_service.py                # 3 rounds of 10 s per target
    .venv/bin/python bench/bench_service.py --quick        # 1 round of 3 s
    .venv/bin/python bench/bench_service.py --soak 10      # plus the 10-minute soak
    .venv/bin/python bench/bench_service.py --base-src /tmp/base/src   # A/B: + another tree
    .venv/bin/python bench/bench_service.py --rounds 0 --pairs 20      # ours vs floor + core

``--base-src DIR`` also runs ``secsipid serve`` from another source tree (e.g. ``git archive
main src | tar -x -C /tmp/base``) on ``/v1/sign-csv`` and ``/v1/check``, interleaved with the
rest: a before/after in one run.

It reports medians over the rounds (min-max in brackets) and exits 0 whatever the figures
are; a non-zero exit means a run failed (a server did not start, wrk reported errors).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_info, temp_credentials

ORIG, DEST = "12155550121", "12155550131"
X5U = "https://cert.example.org/sti.pem"

FLOOR_APP = """
import os
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
BODY = b"OK\\n"
HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
RSGI_HEADERS = [("content-type", "text/plain; charset=utf-8")]
class RSGIApp:
    async def __rsgi__(self, scope, proto):
        await proto()
        proto.response_bytes(200, RSGI_HEADERS, BODY)
rsgi_app = RSGIApp()
# The floor plus the bare ECDSA a request needs, in the same server: what a request costs
# with no code of ours at all (the crypto runs with the caches a server leaves it, which a
# tight in-process loop does not show).
with open(os.environ.get("FLOOR_KEY", "/dev/null"), "rb") as fh:
    _DATA = fh.read()
if _DATA:
    _KEY = serialization.load_pem_private_key(_DATA, None)
    _PUB = _KEY.public_key()
    _MSG = b"e" * 319  # a SHAKEN signing input's length
    _SIGN = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    _VERIFY = ec.ECDSA(hashes.SHA256())
    _SIG = _KEY.sign(_MSG, _VERIFY)
class SignApp:
    async def __rsgi__(self, scope, proto):
        await proto()
        _KEY.sign(_MSG, _SIGN)
        proto.response_bytes(200, RSGI_HEADERS, BODY)
class VerifyApp:
    async def __rsgi__(self, scope, proto):
        await proto()
        _PUB.verify(_SIG, _MSG, _VERIFY)
        proto.response_bytes(200, RSGI_HEADERS, BODY)
# The least any Python SHAKEN signer can do per request, with none of our code: split the
# CSV body, a random origid, the claims written out, base64url, the ECDSA, r||s from DER, the
# Identity value.  What separates ours from this is our own code (the app and Signer).
import base64, binascii, time
_HDR = base64.urlsafe_b64encode(
    b'{"alg":"ES256","ppt":"shaken","typ":"passport","x5u":"https://cert.example.org/sti.pem"}'
).rstrip(b"=").decode()
_TAIL = ";info=<https://cert.example.org/sti.pem>;alg=ES256;ppt=shaken\\n"
def _b64(data):
    return binascii.b2a_base64(data, newline=False).rstrip(b"=").translate(
        bytes.maketrans(b"+/", b"-_")).decode()
class MinimalSignApp:
    async def __rsgi__(self, scope, proto):
        orig, dest, attest, _, _ = (await proto()).decode().strip().split(",")[:5]
        h = os.urandom(16).hex()
        origid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        claims = (f'{{"attest":"{attest}","dest":{{"tn":["{dest}"]}},"iat":{int(time.time())},'
                  f'"orig":{{"tn":"{orig}"}},"origid":"{origid}"}}')
        signing_input = _HDR + "." + _b64(claims.encode())
        der = _KEY.sign(signing_input.encode(), _SIGN)
        rl = der[3]
        raw = der[4:4 + rl][-32:].rjust(32, b"\\0") + der[6 + rl:][-32:].rjust(32, b"\\0")
        body = signing_input + "." + _b64(raw) + _TAIL
        proto.response_bytes(200, RSGI_HEADERS, body.encode())
# The floor plus our core and nothing else: Signer.identity with constant arguments, and
# Verifier.check of the body, in the same server (what "floor + core" allows when the core runs
# where a request runs: with the caches and the CPU sharing a loaded server leaves it).
if _DATA:
    from secsipid import Signer, Verifier, VerifyPolicy, credential_from_file
    _SIGNER = Signer(_KEY, "https://cert.example.org/sti.pem")
    # The credential loaded once, as secsipid serve --cert does (a path would stat per call).
    _CRED = credential_from_file(os.environ["FLOOR_CERT"])
    _VERIFIER = Verifier(_CRED, policy=VerifyPolicy(expire=3600))
class CoreSignApp:
    async def __rsgi__(self, scope, proto):
        await proto()
        body = _SIGNER.identity("12155550121", "12155550131", "A") + "\\n"
        proto.response_bytes(200, RSGI_HEADERS, body.encode())
class CoreVerifyApp:
    async def __rsgi__(self, scope, proto):
        ok = _VERIFIER.check((await proto()).decode()).ok
        proto.response_bytes(200 if ok else 403, RSGI_HEADERS, BODY if ok else b"FAILED\\n")
sign_app = SignApp()
verify_app = VerifyApp()
minimal_sign_app = MinimalSignApp()
core_sign_app = CoreSignApp()
core_verify_app = CoreVerifyApp()
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            kind = message["type"] + ".complete"
            await send({"type": kind})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {' '.join(proc.args)}")  # type: ignore[arg-type]
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"server did not listen on {port}")


@contextmanager
def process(
    args: list[str], port: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes] | None]:
    """Run a server until the block ends (nothing when ``args`` is empty)."""
    if not args:
        yield None
        return
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_port(port, proc)
            time.sleep(0.5)  # every worker up
            yield proc
        finally:
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()


def lua_post(body: str, headers: dict[str, str], delay_ms: float = 0) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body)}"]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    if delay_ms:
        lines.append(f"function delay() return {delay_ms:.3f} end")
    return "\n".join(lines) + "\n"


@dataclass
class Run:
    rps: float
    p99_ms: float
    errors: int
    cpu_us: float = float("nan")  # server CPU time per request
    error_detail: str = ""  # wrk's lines on the errors, when there were any


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def process_tree(pid: int) -> list[int]:
    """A process and its descendants (the server's workers)."""
    found = [pid]
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                              text=True).stdout.split()  # fmt: skip
    for child in children:
        found += process_tree(int(child))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes (all their threads), from /proc."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def wrk(
    url: str, script: Path, duration: float, connections: int = 32, server: int | None = None
) -> Run:
    pids = process_tree(server) if server is not None else []
    cpu_before = cpu_seconds(pids)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script),
         url],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    errors = 0
    detail = []
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: connect (\d+), "
                    r"read (\d+), write (\d+), timeout (\d+)"):  # fmt: skip
        found = re.search(pattern, out)
        if found:
            errors += sum(int(g) for g in found.groups())
            detail.append(found.group(0))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    cpu_us = (cpu_seconds(pids) - cpu_before) / requests * 1e6 if pids and requests else nan
    return Run(rps, p99, errors, cpu_us, "; ".join(detail))


nan = float("nan")


def preflight(url: str, body: str, headers: dict[str, str], expect: bytes) -> None:
    """One request: the target must answer 200 with ``expect`` in the body (so that a run
    never measures an error path by mistake)."""
    req = urllib.request.Request(url, body.encode(), headers, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = resp.read()
    if expect not in answer:
        raise SystemExit(f"{url}: unexpected answer {answer[:200]!r}")


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def spread(self, attr: str) -> str:
        values = [getattr(r, attr) for r in self.runs]
        return (
            f"[{min(values):,.0f}-{max(values):,.0f}]"
            if attr in ("rps", "cpu_us")
            else (f"[{min(values):.1f}-{max(values):.1f}]")
        )

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


def core_rates(key: Path, cert: Path, seconds: float = 2.0) -> tuple[float, float, float, float]:
    """Signatures and verifications per second on one core, in this process: the core's
    (``Signer.identity``, ``Verifier.check``), then the bare ECDSA's (the floor apps' own)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from secsipid import Signer, Verifier, VerifyPolicy, credential_from_file

    signer = Signer.from_file(key, X5U)
    # The credential loaded once, as secsipid serve --cert does (a path would stat per call).
    verifier = Verifier(credential_from_file(cert), policy=VerifyPolicy(expire=3600))
    value = signer.identity(ORIG, DEST, "A")
    msg = b"e" * 319  # as in FLOOR_APP
    deterministic, plain = (ec.ECDSA(hashes.SHA256(), deterministic_signing=flag)
                            for flag in (True, False))  # fmt: skip
    sig = signer.key.sign(msg, plain)
    pub = signer.key.public_key()
    rates = []
    for op in (
        lambda: signer.identity(ORIG, DEST, "A"),
        lambda: verifier.check(value),
        lambda: signer.key.sign(msg, deterministic),
        lambda: pub.verify(sig, msg, plain),
    ):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(100):
                op()
            n += 100
        rates.append(n / (time.perf_counter() - start))
    assert verifier.check(value).ok
    return rates[0], rates[1], rates[2], rates[3]


Target = tuple[str, "subprocess.Popen[bytes] | None", int, str, str]
PAIRS = (
    ("ours /v1/sign-csv", "floor RSGI + core sign"),
    ("ours /v1/check", "floor RSGI + core verify"),
    ("ours /v1/sign-csv", "secsipidx /v1/sign-csv"),
    ("ours /v1/check", "secsipidx /v1/check"),
)


def measure_pairs(
    targets: list[Target], script: Callable[[str], Path], args: argparse.Namespace
) -> dict[str, list[tuple[Run, Run]]]:
    """Ours against the floor plus the core, against secsipidx and (with --base-src) against
    the other tree, in back-to-back runs (ours first, then the other way round, alternately):
    on a machine whose load drifts, two runs a few seconds apart see the same load, so the
    ratio of each pair is steadier than the ratio of two medians taken minutes apart.  Returns
    (ours, other) per pair, by "ours vs other"."""
    by_name = {t[0]: t for t in targets}
    found: dict[str, list[tuple[Run, Run]]] = {}
    print(f"\npairs: {args.pairs} back-to-back runs of {args.pair_duration:g} s per endpoint, "
          "ours and the other alternately first", flush=True)  # fmt: skip
    pairs: tuple[tuple[str, str], ...] = PAIRS
    if "base /v1/sign-csv" in by_name:  # --base-src: ours against the other tree, too (A/B)
        pairs += (("ours /v1/sign-csv", "base /v1/sign-csv"), ("ours /v1/check", "base /v1/check"))
    for ours_name, core_name in pairs:
        runs = found[f"{ours_name} vs {core_name}"] = []
        for i in range(args.pairs):
            got: dict[str, Run] = {}
            for name in (ours_name, core_name) if i % 2 == 0 else (core_name, ours_name):
                _, proc, port, path, kind = by_name[name]
                assert proc is not None
                got[name] = wrk(f"http://127.0.0.1:{port}{path}", script(kind),
                                args.pair_duration, server=proc.pid)  # fmt: skip
            runs.append((got[ours_name], got[core_name]))
        rps = [a.rps / b.rps for a, b in runs]
        cpu = [b.cpu_us / a.cpu_us for a, b in runs]
        print(f"  {ours_name} against '{core_name}': requests/s {statistics.median(rps):.0%} "
              f"[{min(rps):.0%}-{max(rps):.0%}], CPU per request: the other's is "
              f"{statistics.median(cpu):.0%} of ours [{min(cpu):.0%}-{max(cpu):.0%}], p99 "
              f"{statistics.median(a.p99_ms for a, _ in runs):.1f} against "
              f"{statistics.median(b.p99_ms for _, b in runs):.1f} ms; "
              f"errors {sum(a.errors + b.errors for a, b in runs)}", flush=True)  # fmt: skip
    return found


def rss_kib(pid: int) -> int:
    """RSS of a process and its children (the workers), KiB."""
    total = 0
    pids = [pid]
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True,
                              text=True).stdout.split()  # fmt: skip
    pids += [int(p) for p in children]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per wrk run")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--soak", type=float, default=0.0, metavar="MINUTES")
    parser.add_argument("--pairs", type=int, default=0, metavar="N",
                        help="then N back-to-back runs of ours and the floor + core, and of "
                        "ours and secsipidx, per endpoint (--rounds 0: only these)")  # fmt: skip
    parser.add_argument("--pair-duration", type=float, default=3.0, metavar="S",
                        help="seconds per run of --pairs (3)")  # fmt: skip
    parser.add_argument("--json", help="also write the raw figures to this file")
    parser.add_argument("--base-src", metavar="DIR", help="also serve from this src tree (A/B)")
    parser.add_argument("--runtime-threads", type=int, metavar="N",
                        help="Granian I/O threads per worker, for ours and the floors (serve's "
                        "default when not given)")  # fmt: skip
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 3.0
    for tool in ("wrk", "secsipidx"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install {tool}")
    python = sys.executable
    status = 0
    with temp_credentials() as creds, tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "floorapp.py").write_text(FLOOR_APP)
        from secsipid import Signer

        value = Signer.from_file(creds.key_path, X5U).identity(ORIG, DEST, "A")
        csv = f"{ORIG},{DEST},A,,{X5U}"
        text_hdr = {"Content-Type": "text/plain"}
        json_hdr = {"Content-Type": "application/json"}

        def atis_sign() -> str:
            return json.dumps({"signingRequest": {"attest": "A", "dest": {"tn": [DEST]},
                               "iat": int(time.time()), "orig": {"tn": ORIG}}})  # fmt: skip

        def atis_verify() -> str:
            # "time" must be within 60 s of the server's clock (ATIS-1000082 E3): the body is
            # written afresh before every run, or the later rounds would measure 403 Stale Date.
            return json.dumps({"verificationRequest": {
                "from": {"tn": ORIG}, "to": {"tn": [DEST]}, "time": int(time.time()),
                "identity": value}})  # fmt: skip

        bodies = {
            "csv": (lambda: csv, text_hdr, b"eyJ"),
            "check": (lambda: value, text_hdr, b"OK"),
            "atis_sign": (atis_sign, json_hdr, b'"identity":"eyJ'),
            "atis_verify": (atis_verify, json_hdr, b"TN-Validation-Passed"),
        }

        def script(name: str) -> Path:
            make, headers, _ = bodies[name]
            path = tmp / f"{name}.lua"
            path.write_text(lua_post(make(), headers))
            return path

        ours_port, sx_port, base_port = free_port(), free_port(), free_port()
        floor_port, floor_asgi_port = free_port(), free_port()
        floor_sign_port, floor_verify_port = free_port(), free_port()
        floor_minimal_port = free_port()
        floor_core_sign_port, floor_core_verify_port = free_port(), free_port()
        workers = str(args.workers)
        ours_cmd = [python, "-m", "secsipid", "serve", "--listen", f"127.0.0.1:{ours_port}",
                    "--workers", workers, "--key", str(creds.key_path), "--x5u", X5U,
                    "--cert", str(creds.cert_path), "--expire", "3600"]  # fmt: skip
        threads = [] if args.runtime_threads is None else ["--runtime-threads",
                                                           str(args.runtime_threads)]  # fmt: skip
        ours_cmd += threads
        base_cmd, base_env = [], None
        if args.base_src:
            base_cmd = [*ours_cmd[:4], "--listen", f"127.0.0.1:{base_port}", *ours_cmd[6:]]
            base_env = {**os.environ, "PYTHONPATH": os.path.abspath(args.base_src)}
        sx_cmd = [
            "secsipidx", "-http-srv", f"127.0.0.1:{sx_port}", "-fprvkey", str(creds.key_path),
            "-fpubkey", str(creds.cert_path), "-expire", "3600",
        ]  # fmt: skip
        granian = str(Path(python).with_name("granian"))

        def floor_cmd(interface: str, port: int, target: str) -> list[str]:
            return [granian, "--interface", interface, "--host", "127.0.0.1", "--port",
                    str(port), "--workers", workers, "--runtime-mode", "st", *threads,
                    "--loop", "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
                    "--working-dir", str(tmp), target]  # fmt: skip

        floor_env = {**os.environ, "FLOOR_KEY": str(creds.key_path),
                     "FLOOR_CERT": str(creds.cert_path)}  # fmt: skip
        with (
            process(ours_cmd, ours_port, tmp / "ours.log") as ours,
            process(sx_cmd, sx_port, tmp / "secsipidx.log") as sx,
            process(
                floor_cmd("rsgi", floor_port, "floorapp:rsgi_app"), floor_port, tmp / "floor.log"
            ) as floor,
            process(
                floor_cmd("asgi", floor_asgi_port, "floorapp:app"),
                floor_asgi_port,
                tmp / "floor-asgi.log",
            ) as floor_asgi,
            process(
                floor_cmd("rsgi", floor_sign_port, "floorapp:sign_app"),
                floor_sign_port,
                tmp / "floor-sign.log",
                floor_env,
            ) as floor_sign,
            process(
                floor_cmd("rsgi", floor_verify_port, "floorapp:verify_app"),
                floor_verify_port,
                tmp / "floor-verify.log",
                floor_env,
            ) as floor_verify,
            process(
                floor_cmd("rsgi", floor_minimal_port, "floorapp:minimal_sign_app"),
                floor_minimal_port,
                tmp / "floor-minimal.log",
                floor_env,
            ) as floor_minimal,
            process(
                floor_cmd("rsgi", floor_core_sign_port, "floorapp:core_sign_app"),
                floor_core_sign_port,
                tmp / "floor-core-sign.log",
                floor_env,
            ) as floor_core_sign,
            process(
                floor_cmd("rsgi", floor_core_verify_port, "floorapp:core_verify_app"),
                floor_core_verify_port,
                tmp / "floor-core-verify.log",
                floor_env,
            ) as floor_core_verify,
            process(base_cmd, base_port, tmp / "base.log", base_env) as base,
        ):
            targets = [
                ("floor RSGI (constant body)", floor, floor_port, "/", "csv"),
                ("floor ASGI (constant body)", floor_asgi, floor_asgi_port, "/", "csv"),
                ("floor RSGI + bare sign", floor_sign, floor_sign_port, "/", "csv"),
                ("floor RSGI + bare verify", floor_verify, floor_verify_port, "/", "check"),
                ("floor RSGI + minimal signer", floor_minimal, floor_minimal_port, "/", "csv"),
                ("floor RSGI + core sign", floor_core_sign, floor_core_sign_port, "/", "csv"),
                ("floor RSGI + core verify", floor_core_verify, floor_core_verify_port, "/",
                 "check"),
                ("ours /v1/sign-csv", ours, ours_port, "/v1/sign-csv", "csv"),
                ("secsipidx /v1/sign-csv", sx, sx_port, "/v1/sign-csv", "csv"),
                ("ours /v1/check", ours, ours_port, "/v1/check", "check"),
                ("secsipidx /v1/check", sx, sx_port, "/v1/check", "check"),
                ("ours /stir/v1/signing", ours, ours_port, "/stir/v1/signing", "atis_sign"),
                ("ours /stir/v1/verification", ours, ours_port, "/stir/v1/verification",
                 "atis_verify"),
            ]  # fmt: skip
            if base is not None:
                for endpoint, kind in (("/v1/sign-csv", "csv"), ("/v1/check", "check")):
                    at = [t[0] for t in targets].index(f"ours {endpoint}") + 1
                    targets.insert(at, (f"base {endpoint}", base, base_port, endpoint, kind))
            series = {name: Series() for name, *_ in targets}
            for name, _, port, path, kind in targets:
                if not name.startswith("floor") or "core" in name:
                    make, headers, expect = bodies[kind]
                    preflight(f"http://127.0.0.1:{port}{path}", make(), headers, expect)
            for _, _, port, path, kind in targets:  # warm-up
                wrk(f"http://127.0.0.1:{port}{path}", script(kind), 1)
            for round_no in range(args.rounds):
                order = targets if round_no % 2 == 0 else targets[::-1]
                for name, proc, port, path, kind in order:
                    assert proc is not None
                    run = wrk(f"http://127.0.0.1:{port}{path}", script(kind), args.duration,
                              server=proc.pid)  # fmt: skip
                    series[name].runs.append(run)
                    print(f"  round {round_no + 1}: {name:28} {run.rps:10,.0f} req/s  "
                          f"p99 {run.p99_ms:6.1f} ms  CPU {run.cpu_us:6.1f} us/req  "
                          f"errors {run.errors}", flush=True)  # fmt: skip
            pairs = measure_pairs(targets, script, args) if args.pairs else {}
            for key, runs in pairs.items():  # secsipidx's own errors fail no run, as below
                if any(a.errors or (b.errors and "secsipidx" not in key) for a, b in runs):
                    status = 1
            if args.rounds < 1:
                return status
            sign_rate, verify_rate, bare_sign_rate, bare_verify_rate = core_rates(
                creds.key_path, creds.cert_path
            )
            print()
            print(f"wrk -t1 -c32 -d{args.duration:g}s, {args.rounds} round(s), "
                  f"{args.workers} worker(s), Granian runtime threads "
                  f"{args.runtime_threads or 'default'}, medians [min-max]:")  # fmt: skip
            for name in series:
                s = series[name]
                print(f"  {name:28} {s.median('rps'):10,.0f} req/s {s.spread('rps'):>17}  "
                      f"p99 {s.median('p99_ms'):6.1f} ms {s.spread('p99_ms'):>13}  "
                      f"CPU {s.median('cpu_us'):6.1f} us/req {s.spread('cpu_us'):>11}  "
                      f"errors {s.errors}")  # fmt: skip
                if name != "secsipidx /v1/check" and s.errors:
                    status = 1
            floor_rps = series["floor RSGI (constant body)"].median("rps")
            print(
                f"\ncore, one process: sign {sign_rate:,.0f}/s, verify {verify_rate:,.0f}/s; "
                f"bare ECDSA: sign {bare_sign_rate:,.0f}/s, verify {bare_verify_rate:,.0f}/s"
            )
            n = args.workers

            def additive(rate: float) -> float:
                """The floor's time plus one operation at this in-process rate, spread over
                the workers: the ceiling the floor and the core leave, by addition."""
                return float(1 / (1 / floor_rps + 1 / (rate * n)))

            for ours_name, sx_name, rate, bare_rate, bare, core in (
                ("ours /v1/sign-csv", "secsipidx /v1/sign-csv", sign_rate, bare_sign_rate,
                 "floor RSGI + bare sign", "floor RSGI + core sign"),
                ("ours /v1/check", "secsipidx /v1/check", verify_rate, bare_verify_rate,
                 "floor RSGI + bare verify", "floor RSGI + core verify"),
            ):  # fmt: skip
                ours_rps = series[ours_name].median("rps")
                sx_rps = series[sx_name].median("rps")
                bare_rps = series[bare].median("rps")
                core_rps = series[core].median("rps")
                ceiling = additive(rate)
                if ours_name == "ours /v1/sign-csv":
                    ceiling_sign = ceiling
                print(f"  {ours_name}: {ours_rps / sx_rps:.2f}x secsipidx "
                      f"(p99 {series[ours_name].median('p99_ms'):.1f} vs "
                      f"{series[sx_name].median('p99_ms'):.1f} ms, CPU "
                      f"{series[ours_name].median('cpu_us'):.0f} vs "
                      f"{series[sx_name].median('cpu_us'):.0f} us/req)\n"
                      f"    floor + core measured in one server ('{core}', "
                      f"{core_rps / sx_rps:.2f}x secsipidx): {core_rps:,.0f} req/s, "
                      f"reached {ours_rps / core_rps:.0%}\n"
                      f"    floor + core by addition: {ceiling:,.0f} req/s, reached "
                      f"{ours_rps / ceiling:.0%} ('{core}' reached "
                      f"{core_rps / ceiling:.0%} of it)\n"
                      f"    no code at all: '{bare}' {bare_rps:,.0f} req/s "
                      f"({bare_rps / sx_rps:.2f}x secsipidx), reached "
                      f"{bare_rps / additive(bare_rate):.0%} of floor + bare ECDSA by "
                      f"addition ({additive(bare_rate):,.0f} req/s)")  # fmt: skip
            minimal_rps = series["floor RSGI + minimal signer"].median("rps")
            sign_rps = series["ours /v1/sign-csv"].median("rps")
            print(f"  ours /v1/sign-csv reached {sign_rps / minimal_rps:.0%} of 'floor RSGI + "
                  f"minimal signer' ({minimal_rps:,.0f} req/s, "
                  f"{minimal_rps / ceiling_sign:.0%} of floor + core by addition)")  # fmt: skip
            soak = None
            if args.soak > 0:
                target = series["ours /v1/check"].median("rps") / 2
                # 32 connections, each pausing so that together they send ~half the rate.
                delay = max(32 / target * 1000 - 1000 / verify_rate, 0.1)
                (tmp / "soak.lua").write_text(lua_post(value, text_hdr, delay))
                assert ours is not None
                rss_start = rss_kib(ours.pid)
                print(f"\nsoak: /v1/check at ~{target:,.0f} req/s for {args.soak:g} min, "
                      f"RSS at start {rss_start / 1024:.1f} MiB", flush=True)  # fmt: skip
                run = wrk(f"http://127.0.0.1:{ours_port}/v1/check", tmp / "soak.lua",
                          args.soak * 60, server=ours.pid)  # fmt: skip
                rss_end = rss_kib(ours.pid)
                growth = (rss_end - rss_start) / 1024
                print(f"soak: {run.rps:,.0f} req/s, p99 {run.p99_ms:.1f} ms, CPU "
                      f"{run.cpu_us:.1f} us/req, errors {run.errors}, RSS at end "
                      f"{rss_end / 1024:.1f} MiB ({growth:+.1f} MiB)")  # fmt: skip
                soak = {"rps": run.rps, "p99_ms": run.p99_ms, "errors": run.errors,
                        "cpu_us": run.cpu_us, "rss_start_kib": rss_start,
                        "rss_end_kib": rss_end}  # fmt: skip
                if run.errors:
                    status = 1
                    log_tail = (tmp / "ours.log").read_text(errors="replace")[-3000:]
                    print(f"soak errors: {run.error_detail}\nours.log, end:\n{log_tail}")
        if args.json:
            raw = {name: [r.__dict__ for r in s.runs] for name, s in series.items()}
            Path(args.json).write_text(json.dumps(
                {"machine": machine_info(), "runs": raw, "core": [sign_rate, verify_rate],
                 "bare": [bare_sign_rate, bare_verify_rate],
                 "pairs": {name: [[a.__dict__, b.__dict__] for a, b in runs]
                           for name, runs in pairs.items()},
                 "soak": soak}, indent=2))  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
