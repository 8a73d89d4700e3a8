"""Benchmark of ``secsipid serve`` against ``secsipidx -http-srv`` (not part of the tests).

Same machine, same load generator (Debian ``wrk``, a Lua script for each POST body,
``-t1 -c32``), same run, interleaved round by round:

* ``floor``: the same Granian settings serving a constant body from a plain ASGI app (the HTTP
  cost alone: what no endpoint of ours can beat);
* ``/v1/sign-csv`` and ``/v1/check`` (certificate file on both sides), ours and secsipidx;
* ``/stir/v1/signing`` and ``/stir/v1/verification`` (ours only: secsipidx has no ATIS API);
* the core's sign and verify rate in this process (one core), and the ceiling they leave:
  one request costs the floor's time plus the core operation, spread over the workers.

``--soak MINUTES`` then runs ``/v1/check`` at about half the measured rate for that long
(the issue asks 10 minutes) and prints the errors and the servers' RSS at start and end.

Run from the repository root (``apt-get install wrk secsipidx`` first)::

    .venv/bin/python bench/bench_service.py                # 3 rounds of 10 s per target
    .venv/bin/python bench/bench_service.py --quick        # 1 round of 3 s
    .venv/bin/python bench/bench_service.py --soak 10      # plus the 10-minute soak

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
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import machine_info, temp_credentials

ORIG, DEST = "12155550121", "12155550131"
X5U = "https://cert.example.org/sti.pem"

FLOOR_APP = """
BODY = b"OK\\n"
HEADERS = [(b"content-type", b"text/plain; charset=utf-8")]
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
def process(args: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with open(log, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
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


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def wrk(url: str, script: Path, duration: float, connections: int = 32) -> Run:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script),
         url],
        capture_output=True, text=True, check=True, timeout=duration + 60,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] if m else float("nan")
    errors = 0
    for pattern in (r"Non-2xx or 3xx responses: (\d+)", r"Socket errors: connect (\d+), "
                    r"read (\d+), write (\d+), timeout (\d+)"):  # fmt: skip
        found = re.search(pattern, out)
        if found:
            errors += sum(int(g) for g in found.groups())
    return Run(rps, p99, errors)


@dataclass
class Series:
    runs: list[Run] = field(default_factory=list)

    def median(self, attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in self.runs)

    def spread(self, attr: str) -> str:
        values = [getattr(r, attr) for r in self.runs]
        return (
            f"[{min(values):,.0f}-{max(values):,.0f}]"
            if attr == "rps"
            else (f"[{min(values):.1f}-{max(values):.1f}]")
        )

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.runs)


def core_rates(key: Path, cert: Path, seconds: float = 2.0) -> tuple[float, float]:
    """Signatures and verifications per second on one core, in this process."""
    from secsipid import Signer, Verifier, VerifyPolicy

    signer = Signer.from_file(key, X5U)
    verifier = Verifier(str(cert), policy=VerifyPolicy(expire=3600))
    value = signer.identity(ORIG, DEST, "A")
    rates = []
    for op in (lambda: signer.identity(ORIG, DEST, "A"), lambda: verifier.check(value)):
        n, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for _ in range(100):
                op()
            n += 100
        rates.append(n / (time.perf_counter() - start))
    assert verifier.check(value).ok
    return rates[0], rates[1]


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
    parser.add_argument("--json", help="also write the raw figures to this file")
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
        now = int(time.time())
        csv = f"{ORIG},{DEST},A,,{X5U}"
        json_hdr = {"Content-Type": "application/json"}
        atis_sign = json.dumps({"signingRequest": {"attest": "A", "dest": {"tn": [DEST]},
                                "iat": now, "orig": {"tn": ORIG}}})  # fmt: skip
        atis_verify = json.dumps(
            {"verificationRequest": {"from": {"tn": ORIG}, "to": {"tn": [DEST]}, "time": now,
                                     "identity": value}}
        )  # fmt: skip
        scripts = {
            "csv": lua_post(csv, {"Content-Type": "text/plain"}),
            "check": lua_post(value, {"Content-Type": "text/plain"}),
            "atis_sign": lua_post(atis_sign, json_hdr),
            "atis_verify": lua_post(atis_verify, json_hdr),
        }
        for name, text in scripts.items():
            (tmp / f"{name}.lua").write_text(text)
        ours_port, sx_port, floor_port = free_port(), free_port(), free_port()
        workers = str(args.workers)
        ours_cmd = [python, "-m", "secsipid", "serve", "--listen", f"127.0.0.1:{ours_port}",
                    "--workers", workers, "--key", str(creds.key_path), "--x5u", X5U,
                    "--cert", str(creds.cert_path), "--expire", "3600"]  # fmt: skip
        sx_cmd = [
            "secsipidx", "-http-srv", f"127.0.0.1:{sx_port}", "-fprvkey", str(creds.key_path),
            "-fpubkey", str(creds.cert_path), "-expire", "3600",
        ]  # fmt: skip
        granian = str(Path(python).with_name("granian"))
        floor_cmd = [granian, "--interface", "asgi", "--host", "127.0.0.1", "--port",
                     str(floor_port), "--workers", workers, "--runtime-mode", "st", "--loop",
                     "uvloop", "--http", "1", "--no-ws", "--log-level", "warning",
                     "--working-dir", str(tmp), "floorapp:app"]  # fmt: skip
        targets = [
            ("floor (constant body)", floor_port, "/", "csv"),
            ("ours /v1/sign-csv", ours_port, "/v1/sign-csv", "csv"),
            ("secsipidx /v1/sign-csv", sx_port, "/v1/sign-csv", "csv"),
            ("ours /v1/check", ours_port, "/v1/check", "check"),
            ("secsipidx /v1/check", sx_port, "/v1/check", "check"),
            ("ours /stir/v1/signing", ours_port, "/stir/v1/signing", "atis_sign"),
            ("ours /stir/v1/verification", ours_port, "/stir/v1/verification", "atis_verify"),
        ]
        series = {name: Series() for name, *_ in targets}
        with (
            process(ours_cmd, ours_port, tmp / "ours.log") as ours,
            process(sx_cmd, sx_port, tmp / "secsipidx.log"),
            process(floor_cmd, floor_port, tmp / "floor.log"),
        ):
            for _, port, path, script in targets:  # warm-up
                wrk(f"http://127.0.0.1:{port}{path}", tmp / f"{script}.lua", 1)
            for round_no in range(args.rounds):
                order = targets if round_no % 2 == 0 else targets[::-1]
                for name, port, path, script in order:
                    run = wrk(f"http://127.0.0.1:{port}{path}", tmp / f"{script}.lua",
                              args.duration)  # fmt: skip
                    series[name].runs.append(run)
                    print(f"  round {round_no + 1}: {name:28} {run.rps:10,.0f} req/s  "
                          f"p99 {run.p99_ms:6.1f} ms  errors {run.errors}", flush=True)  # fmt: skip
            sign_rate, verify_rate = core_rates(creds.key_path, creds.cert_path)
            print()
            print(f"wrk -t1 -c32 -d{args.duration:g}s, {args.rounds} round(s), "
                  f"{args.workers} worker(s), medians [min-max]:")  # fmt: skip
            for name in series:
                s = series[name]
                print(f"  {name:28} {s.median('rps'):10,.0f} req/s {s.spread('rps'):>17}  "
                      f"p99 {s.median('p99_ms'):6.1f} ms {s.spread('p99_ms'):>13}  "
                      f"errors {s.errors}")  # fmt: skip
                if name != "secsipidx /v1/check" and s.errors:
                    status = 1
            floor = series["floor (constant body)"].median("rps")
            print(f"\ncore, one process: sign {sign_rate:,.0f}/s, verify {verify_rate:,.0f}/s")
            n = args.workers
            for ours_name, sx_name, rate in (
                ("ours /v1/sign-csv", "secsipidx /v1/sign-csv", sign_rate),
                ("ours /v1/check", "secsipidx /v1/check", verify_rate),
            ):
                ours_rps = series[ours_name].median("rps")
                sx_rps = series[sx_name].median("rps")
                ceiling = 1 / (1 / floor + 1 / (rate * n))
                print(f"  {ours_name}: {ours_rps / sx_rps:.2f}x secsipidx "
                      f"(p99 {series[ours_name].median('p99_ms'):.1f} vs "
                      f"{series[sx_name].median('p99_ms'):.1f} ms); ceiling from floor + core "
                      f"{ceiling:,.0f} req/s, reached {ours_rps / ceiling:.0%}")  # fmt: skip
            soak = None
            if args.soak > 0:
                target = series["ours /v1/check"].median("rps") / 2
                # 32 connections, each pausing so that together they send ~half the rate.
                delay = max(32 / target * 1000 - 1000 / verify_rate, 0.1)
                (tmp / "soak.lua").write_text(lua_post(value, {"Content-Type": "text/plain"},
                                                       delay))  # fmt: skip
                rss_start = rss_kib(ours.pid)
                print(f"\nsoak: /v1/check at ~{target:,.0f} req/s for {args.soak:g} min, "
                      f"RSS at start {rss_start / 1024:.1f} MiB", flush=True)  # fmt: skip
                run = wrk(f"http://127.0.0.1:{ours_port}/v1/check", tmp / "soak.lua",
                          args.soak * 60)  # fmt: skip
                rss_end = rss_kib(ours.pid)
                print(f"soak: {run.rps:,.0f} req/s, p99 {run.p99_ms:.1f} ms, errors "
                      f"{run.errors}, RSS at end {rss_end / 1024:.1f} MiB "
                      f"({(rss_end - rss_start) / 1024:+.1f} MiB)")  # fmt: skip
                soak = {"rps": run.rps, "p99_ms": run.p99_ms, "errors": run.errors,
                        "rss_start_kib": rss_start, "rss_end_kib": rss_end}  # fmt: skip
                if run.errors:
                    status = 1
        if args.json:
            raw = {name: [r.__dict__ for r in s.runs] for name, s in series.items()}
            Path(args.json).write_text(json.dumps(
                {"machine": machine_info(), "runs": raw, "core": [sign_rate, verify_rate],
                 "soak": soak}, indent=2))  # fmt: skip
    return status


if __name__ == "__main__":
    sys.exit(main())
