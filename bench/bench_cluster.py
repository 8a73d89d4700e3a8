"""A cluster on loopback: ``secsipid serve`` instances behind haproxy, one Redis (issue 11).

Not part of the tests.  Everything runs on this machine, on 127.0.0.1 (Debian ``redis-server``,
``haproxy`` and ``wrk``; ``apt-get install redis-server haproxy wrk`` first):

* a counting certificate server (plain HTTP, ``Cache-Control: max-age=3600``);
* one ``redis-server`` (no persistence) and N ``secsipid serve --workers 1 --redis URL``
  instances, haproxy balancing round-robin over them (keep-alive both sides);
* **cold bursts**: a certificate no instance has seen, wanted by ``--burst`` concurrent
  requests spread over every instance: the certificate server counts the downloads (the
  issue asks exactly one per burst);
* **rates**: ``wrk -t1 -c32`` through haproxy on ``/v1/check`` (a warm certificate) with
  haproxy balancing over 1, 2 and 3 instances, interleaved round by round; medians, with the
  CPU seconds per request of the instances (main process and worker), haproxy and Redis
  (from /proc, over the same window);
* **a Redis hit**: in this process, the time to get a certificate that the memory cache
  does not have from Redis (one round trip, the PEM parsed and checked) against a download
  from the loopback certificate server;
* **the reply parser**: when ``hiredis`` is installed, one lookup (the pipelined MGET + PTTL
  of a 2-3 KiB entry) with redis-py's Python parser and with hiredis, alternating.

Run from the repository root::

    .venv/bin/python bench/bench_cluster.py                # 3 rounds of 8 s per size
    .venv/bin/python bench/bench_cluster.py --quick        # 1 round of 3 s

It prints a table and exits 0 whatever the figures are; a non-zero exit means a run failed
(a server did not start, wrk reported errors, a check was not valid).
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from _common import machine_info
from bench_service import Run, free_port, lua_post, process, wrk
from rediskit import CountingCertServer, RedisServer
from secsipid import CertificateSource, FetchPolicy, MemoryCache, RedisCache, Signer, TrustPolicy
from secsipid._pki import make_lab_pki

ORIG, DEST = "12155550121", "12155550131"
CLK_TCK = os.sysconf("SC_CLK_TCK")

HAPROXY_CFG = """
global
    maxconn 4096
    nbthread 1
defaults
    mode http
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    option http-keep-alive
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    balance roundrobin
{servers}
"""


def cpu_seconds(pids: list[int]) -> float:
    """utime + stime of processes and their children (service workers), in seconds."""
    total = 0.0
    seen = set()
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
        except (OSError, IndexError, ValueError):
            continue
        children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)],
                                  capture_output=True, text=True).stdout.split()  # fmt: skip
        todo += [int(c) for c in children]
    return total


@contextmanager
def haproxy(tmp: Path, backends: list[int], name: str) -> Iterator[tuple[int, int]]:
    """haproxy in the foreground over ``backends``: (its port, its pid)."""
    port = free_port()
    servers = "\n".join(f"    server s{i} 127.0.0.1:{p}" for i, p in enumerate(backends))
    cfg = tmp / f"haproxy-{name}.cfg"
    cfg.write_text(HAPROXY_CFG.format(port=port, servers=servers))
    with process(["haproxy", "-db", "-f", str(cfg)], port, tmp / f"haproxy-{name}.log") as proc:
        yield port, proc.pid


def post(port: int, body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", "/v1/check", body=body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


def cold_bursts(port: int, certs: CountingCertServer, chain: bytes, key: object, burst: int,
                rounds: int) -> list[int]:  # fmt: skip
    """Downloads per burst of ``burst`` concurrent checks of a certificate never seen."""
    fetches = []
    for n in range(rounds):
        path = f"/cold-{n}-{time.time_ns()}.pem"
        url = certs.route(path, chain, delay=0.2, headers={"Cache-Control": "max-age=3600"})
        value = Signer(key, url).identity(ORIG, DEST, "A").encode()  # type: ignore[arg-type]
        statuses: list[int] = []

        def one(body: bytes = value, out: list[int] = statuses) -> None:
            out.append(post(port, body))

        threads = [threading.Thread(target=one) for _ in range(burst)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if statuses != [200] * burst:
            raise SystemExit(f"cold burst: statuses {sorted(set(statuses))}")
        fetches.append(certs.count(path))
    return fetches


def redis_hit_times(redis_url: str, url: str, root: Path, n: int) -> tuple[float, float]:
    """Median microseconds for a certificate from Redis and from a download (memory cache
    emptied before each)."""
    memory = MemoryCache()
    policy = FetchPolicy(allow_http=True, allow_private=True)
    trust = TrustPolicy(ca_file=str(root))
    shared = RedisCache(redis_url)
    with_redis = CertificateSource(fetch=policy, trust=trust, memory=memory, shared=shared)
    alone = CertificateSource(fetch=policy, trust=trust, memory=memory)
    with_redis.credential_for(url)  # in Redis now
    times: dict[str, list[float]] = {"redis": [], "fetch": []}
    for _ in range(n):
        for name, source in (("redis", with_redis), ("fetch", alone)):
            memory.clear()
            started = time.perf_counter()
            source.credential_for(url)
            times[name].append((time.perf_counter() - started) * 1e6)
    if shared.stats()["hits"] < n:
        raise SystemExit(f"redis hits: {shared.stats()}")
    return statistics.median(times["redis"]), statistics.median(times["fetch"])


def parser_times(redis_url: str, chain: bytes, n: int) -> dict[str, float]:
    """Median microseconds of one lookup with each reply parser, alternating."""
    import redis
    from redis.connection import _HiredisParser, _RESP2Parser

    caches = {}
    for name, parser in (("python", _RESP2Parser), ("hiredis", _HiredisParser)):
        cache = RedisCache(redis_url)
        cache._client = redis.Redis.from_url(redis_url, parser_class=parser, **cache._options)
        caches[name] = cache
    until = time.time() + 3600
    caches["python"].store("bench", "https://x.invalid/sti.pem", chain, until, until, "t")
    times: dict[str, list[float]] = {name: [] for name in caches}
    for _ in range(n):
        for name, cache in caches.items():
            started = time.perf_counter()
            found = cache.lookup("bench", "https://x.invalid/sti.pem")
            times[name].append((time.perf_counter() - started) * 1e6)
            if found.entry is None:
                raise SystemExit("parser comparison: the entry was not read back")
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--burst", type=int, default=48, help="concurrent checks per burst")
    parser.add_argument("--quick", action="store_true", help="1 round of 3 s")
    parser.add_argument(
        "--without-redis", action="store_true", help="the same instances, no shared cache"
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.duration = 1, 3.0
    for tool in ("redis-server", "haproxy", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install redis-server haproxy wrk")
    import redis.utils

    info = machine_info()
    hiredis = "yes" if redis.utils.HIREDIS_AVAILABLE else "no"
    print(f"# {info['cpu_model']}, {os.cpu_count()} cores (shared with other work); "
          f"redis client {redis.__version__}, hiredis {hiredis}")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmpdir, ExitStack() as stack:
        tmp = Path(tmpdir)
        lab = make_lab_pki(spc="1234")
        root = lab.write(tmp / "pki")["root"]
        certs = CountingCertServer()
        stack.callback(certs.stop)
        redis_server = RedisServer(tmp / "redis")
        stack.callback(redis_server.stop)
        ports, pids = [], []
        for i in range(args.instances):
            port = free_port()
            cmd = [sys.executable, "-m", "secsipid", "serve", "--listen", f"127.0.0.1:{port}",
                   "--workers", "1", "--allow-http", "--allow-private", "--ca-file", str(root),
                   "--no-metrics"]  # fmt: skip
            if not args.without_redis:
                cmd += ["--redis", redis_server.url]
            proc = stack.enter_context(process(cmd, port, tmp / f"serve{i}.log"))
            ports.append(port)
            pids.append(proc.pid)

        # Cold bursts through haproxy over every instance.
        with haproxy(tmp, ports, "all") as (port, _):
            fetches = cold_bursts(port, certs, lab.chain_pem, lab.leaf_key, args.burst, 5)
        print(f"\ncold bursts of {args.burst} concurrent checks over {args.instances} "
              f"instances: downloads per burst {fetches}")  # fmt: skip

        # Rates with 1..N instances behind haproxy, interleaved.
        warm = certs.route("/warm.pem", lab.chain_pem, headers={"Cache-Control": "max-age=3600"})
        value = Signer(lab.leaf_key, warm).identity(ORIG, DEST, "A", iat=int(time.time()) + 3)
        script = tmp / "check.lua"
        script.write_text(lua_post(value, {}))
        sizes = list(range(1, args.instances + 1))
        runs: dict[int, list[tuple[Run, float, float, float]]] = {n: [] for n in sizes}
        redis_pid = redis_server.proc.pid if redis_server.proc else 0
        for _ in range(args.rounds):
            for n in sizes:
                with haproxy(tmp, ports[:n], f"n{n}") as (port, hpid):
                    for p in ports[:n]:
                        if post(p, value.encode()) != 200:  # each instance warm
                            raise SystemExit("warm-up check failed")
                    before = (cpu_seconds(pids[:n]), cpu_seconds([hpid]), cpu_seconds([redis_pid]))
                    run = wrk(f"http://127.0.0.1:{port}/v1/check", script, args.duration)
                    after = (cpu_seconds(pids[:n]), cpu_seconds([hpid]), cpu_seconds([redis_pid]))
                if run.errors:
                    raise SystemExit(f"wrk errors with {n} instance(s): {run.errors}")
                requests = run.rps * args.duration
                cpu = [(a - b) / requests * 1e6 for a, b in zip(after, before, strict=True)]
                runs[n].append((run, cpu[0], cpu[1], cpu[2]))
        print(f"\n/v1/check through haproxy, wrk -t1 -c32, {args.rounds} x {args.duration:g} s "
              "(medians; CPU microseconds per request)")  # fmt: skip
        print(f"{'instances':>9} {'requests/s':>10} {'(min-max)':>15} {'p99 ms':>7} "
              f"{'service CPU':>12} {'haproxy CPU':>12} {'redis CPU':>10}")  # fmt: skip
        med = statistics.median
        for n in sizes:
            rps = [r[0].rps for r in runs[n]]
            spread = f"({min(rps):,.0f}-{max(rps):,.0f})"
            p99 = med(r[0].p99_ms for r in runs[n])
            print(f"{n:>9} {med(rps):>10,.0f} {spread:>15} {p99:>7.1f}"
                  f" {med(r[1] for r in runs[n]):>12.0f} {med(r[2] for r in runs[n]):>12.0f}"
                  f" {med(r[3] for r in runs[n]):>10.1f}")  # fmt: skip
        print(f"downloads of the warm certificate: {certs.count('/warm.pem')}")

        if args.without_redis:
            return 0
        # A Redis hit against a download, in this process.
        hit, fetch = redis_hit_times(redis_server.url, warm, root, 300)
        print(f"\ncertificate not in memory: from Redis {hit:.0f} us, downloaded {fetch:.0f} us "
              "(medians of 300, PEM parsed both times)")  # fmt: skip
        if redis.utils.HIREDIS_AVAILABLE:
            parsers = parser_times(redis_server.url, lab.chain_pem, 3000)
            print(f"one lookup (MGET + PTTL): python parser {parsers['python']:.1f} us, "
                  f"hiredis {parsers['hiredis']:.1f} us (medians of 3000)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
