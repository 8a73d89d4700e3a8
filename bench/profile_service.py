#!/usr/bin/env python3
"""Where a request's time goes in ``secsipid serve``'s app, measured in-process (not part of
the tests).

The app is driven directly, without a server or a socket: a loop on one event loop (uvloop)
hands it the same scope, headers and body a server would, through the ASGI or the RSGI
interface, so that only our code runs.  For each endpoint it reports the cost of one request
next to what no app can avoid:

* ``null``: a trivial app that reads the body and answers a constant, through the same driver
  (the driver's own cost);
* ``core sign`` / ``core verify``: ``Signer.identity`` and ``Verifier.acheck`` called directly;
* ``bare sign`` / ``bare verify``: the ES256 signature alone (cryptography), on the same bytes:
  core - bare is the core's own Python;
* the app's overhead: endpoint - core - null.

Two units, both insensitive to what else runs on the machine (unlike requests per second):

* CPU time per request (``time.process_time``, best of five passes), the default;
* ``--callgrind``: instructions per request counted by valgrind (``apt-get install
  valgrind``): each target runs twice under callgrind, with 100 and 1,100 requests, and the
  difference is divided by 1,000, so start-up cost cancels out.  Runs repeat within a few
  thousand instructions per request (random UUIDs, dictionary growth); the crypto's count is
  not representative of native speed (valgrind hides some CPU features from OpenSSL), the
  app's Python code is.

Run from the repository root::

    .venv/bin/python bench/profile_service.py                      # CPU us/request, ASGI
    .venv/bin/python bench/profile_service.py --interface rsgi     # through __rsgi__
    .venv/bin/python bench/profile_service.py --callgrind          # instructions/request
    .venv/bin/python bench/profile_service.py --profile v1_sign_csv   # cProfile, top 30

``PYTHONPATH=/tmp/base/src`` measures another source tree (e.g. ``git archive main src``), as
``ab_src.py`` does.  A report, not a gate: it exits 0 whatever the figures are.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import temp_credentials

ORIG, DEST = "12155550121", "12155550131"
X5U = "https://cert.example.org/sti.pem"
TARGETS = (
    "null",
    "bare_sign",
    "core_sign",
    "v1_sign_csv",
    "stir_signing",
    "bare_verify",
    "core_verify",
    "v1_check",
    "stir_verification",
)
SMALL, LARGE = 100, 1100  # requests per callgrind run
_CORE_BARE = (("core_sign", "bare_sign"), ("core_verify", "bare_verify"))


# -- the drivers -------------------------------------------------------------------------------


def _asgi_runner(app: Any, method: str, path: str, body: bytes, headers: list[tuple[str, str]]):
    raw = [(b"host", b"127.0.0.1:8088"), (b"user-agent", b"wrk")]
    raw += [(k.encode(), v.encode()) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    message = {"type": "http.request", "body": body, "more_body": False}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return message

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    async def run(n: int) -> int:
        for _ in range(n):
            sent.clear()
            scope = {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.3"},
                "http_version": "1.1",
                "server": ("127.0.0.1", 8088),
                "client": ("127.0.0.1", 40000),
                "scheme": "http",
                "method": method,
                "root_path": "",
                "path": path,
                "raw_path": path.encode(),
                "query_string": b"",
                "headers": list(raw),
                "state": {},
            }
            await app(scope, receive, send)
        return int(sent[0]["status"])

    return run


class _RSGIHeaders:
    __slots__ = ("_d",)

    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._d = dict(items)

    def get(self, key: str, default: Any = None) -> Any:
        return self._d.get(key, default)

    def items(self) -> list[tuple[str, str]]:
        return list(self._d.items())

    def __contains__(self, key: str) -> bool:
        return key in self._d


class _RSGIScope:
    __slots__ = ("client", "headers", "method", "path", "proto", "query_string")

    def __init__(self, method: str, path: str, headers: _RSGIHeaders) -> None:
        self.proto = "http"
        self.method = method
        self.path = path
        self.query_string = ""
        self.client = "127.0.0.1:40000"
        self.headers = headers


class _RSGIProtocol:
    __slots__ = ("body", "status")

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 0

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status

    def response_str(self, status: int, headers: list[tuple[str, str]], body: str) -> None:
        self.status = status

    def response_empty(self, status: int, headers: list[tuple[str, str]]) -> None:
        self.status = status


def _rsgi_runner(app: Any, method: str, path: str, body: bytes, headers: list[tuple[str, str]]):
    items = [("host", "127.0.0.1:8088"), ("user-agent", "wrk"), *headers]
    items.append(("content-length", str(len(body))))
    hdrs = _RSGIHeaders(items)

    async def run(n: int) -> int:
        proto = _RSGIProtocol(body)
        for _ in range(n):
            proto = _RSGIProtocol(body)
            await app.__rsgi__(_RSGIScope(method, path, hdrs), proto)
        return proto.status

    return run


async def _null_asgi(scope: Any, receive: Any, send: Any) -> None:
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"a", b"b")]})
    await send({"type": "http.response.body", "body": b"OK\n"})


class _NullRSGI:
    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        await proto()
        proto.response_bytes(200, [("a", "b")], b"OK\n")


# -- the targets -------------------------------------------------------------------------------


def build(target: str, interface: str, creds: Any) -> Callable[[int], Awaitable[object]]:
    from secsipid import Signer, Verifier, VerifyPolicy, credential_from_file

    signer = Signer.from_file(creds.key_path, X5U)
    value = signer.identity(ORIG, DEST, "A")
    if target in ("bare_sign", "bare_verify"):
        # The ES256 signature alone, with the token's own bytes: what the core adds is
        # core_sign - bare_sign and core_verify - bare_verify.
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from secsipid import decode_token
        from secsipid._verifier import _der_signature

        decoded = decode_token(value.split(";", 1)[0])
        signing_input = decoded.signing_input
        if target == "bare_sign":
            private, algorithm = signer.key, signer._algorithm  # deterministic as the Signer's

            async def bare_sign(n: int) -> None:
                for _ in range(n):
                    private.sign(signing_input, algorithm)

            return bare_sign
        public = credential_from_file(creds.cert_path).public_key
        der, es256 = _der_signature(decoded.signature), ec.ECDSA(hashes.SHA256())

        async def bare_verify(n: int) -> None:
            for _ in range(n):
                public.verify(der, signing_input, es256)

        return bare_verify
    if target == "core_sign":

        async def sign(n: int) -> None:
            for _ in range(n):
                signer.identity(ORIG, DEST, "A", "", x5u=X5U)

        return sign
    if target == "core_verify":
        # The credential loaded once, as secsipid serve --cert does (a path would stat per call).
        verifier = Verifier(credential_from_file(creds.cert_path), policy=VerifyPolicy(expire=3600))

        async def verify(n: int) -> None:
            for _ in range(n):
                verdict = await verifier.acheck([value])
            assert verdict.ok

        return verify
    runner = _rsgi_runner if interface == "rsgi" else _asgi_runner
    text = [("content-type", "text/plain")]
    json_type = [("content-type", "application/json"), ("accept", "application/json")]
    now = int(time.time())
    signing = {"attest": "A", "dest": {"tn": [DEST]}, "iat": now, "orig": {"tn": ORIG}}
    verification = {"from": {"tn": ORIG}, "to": {"tn": [DEST]}, "time": now, "identity": value}
    requests = {
        "null": ("POST", "/", f"{ORIG},{DEST},A,,{X5U}".encode(), text),
        "v1_sign_csv": ("POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,{X5U}".encode(), text),
        "v1_check": ("POST", "/v1/check", value.encode(), text),
        "stir_signing": (
            "POST",
            "/stir/v1/signing",
            json.dumps({"signingRequest": signing}).encode(),
            json_type,
        ),
        "stir_verification": (
            "POST",
            "/stir/v1/verification",
            json.dumps({"verificationRequest": verification}).encode(),
            json_type,
        ),
    }
    method, path, body, headers = requests[target]
    if target == "null":
        app: Any = _NullRSGI() if interface == "rsgi" else _null_asgi
    else:
        from secsipid.service import create_app, load_config

        settings = {"key": str(creds.key_path), "x5u": X5U, "cert": str(creds.cert_path),
                    "expire": 3600}  # fmt: skip
        app = create_app(load_config(None, settings))
    run = runner(app, method, path, body, headers)

    async def checked(n: int) -> None:
        status = await run(n)
        assert status == 200, f"{target}: HTTP {status}"

    return checked


def _loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop

        return uvloop.new_event_loop()
    except ImportError:
        return asyncio.new_event_loop()


def cpu_per_request(target: str, interface: str, creds: Any, n: int = 3000) -> float:
    loop = _loop()
    run = build(target, interface, creds)
    loop.run_until_complete(run(300))  # warm-up: caches, first-use paths
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        loop.run_until_complete(run(n))
        best = min(best, (time.process_time() - start) / n)
    loop.close()
    return best * 1e6


def worker(target: str, interface: str, n: int) -> None:
    """One callgrind run: set up, then ``n`` requests."""
    with temp_credentials() as creds:
        loop = _loop()
        run = build(target, interface, creds)
        loop.run_until_complete(run(n))
        loop.close()


def instructions_per_request(target: str, interface: str, tmp: Path) -> float:
    counts = []
    for n in (SMALL, LARGE):
        out = tmp / f"cg.{target}.{n}.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
             __file__, "--worker", target, str(n), "--interface", interface],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.M)
        assert found, f"no instruction count in {out}"
        counts.append(int(found.group(1)))
    return (counts[1] - counts[0]) / (LARGE - SMALL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interface", choices=("asgi", "rsgi"), default="asgi")
    parser.add_argument("--callgrind", action="store_true", help="instructions per request")
    parser.add_argument("--profile", metavar="TARGET", choices=TARGETS, help="cProfile one")
    parser.add_argument("--multiprocess", action="store_true", default=True,
                        help="prometheus-client in multi-process mode, as secsipid serve runs "
                        "it (default)")  # fmt: skip
    parser.add_argument("--single-process-metrics", dest="multiprocess", action="store_false")
    parser.add_argument("--worker", nargs=2, metavar=("TARGET", "N"), help=argparse.SUPPRESS)
    parser.add_argument("targets", nargs="*", help=f"some of {', '.join(TARGETS)} (all)")
    args = parser.parse_args()
    unknown = set(args.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown target(s): {', '.join(sorted(unknown))}")
    if args.multiprocess and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        # Before prometheus_client is imported, as `secsipid serve` does for its workers.
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="secsipid-prof-")
    if args.worker:
        worker(args.worker[0], args.interface, int(args.worker[1]))
        return 0
    import secsipid

    print(f"secsipid from {os.path.dirname(secsipid.__file__)}, interface {args.interface}")
    if args.profile:
        with temp_credentials() as creds:
            loop = _loop()
            run = build(args.profile, args.interface, creds)
            loop.run_until_complete(run(300))
            prof = cProfile.Profile()
            prof.enable()
            loop.run_until_complete(run(3000))
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(30)
        return 0
    targets = args.targets or list(TARGETS)
    results: dict[str, float] = {}
    unit = "instructions" if args.callgrind else "us CPU"
    with temp_credentials() as creds, tempfile.TemporaryDirectory() as tmp_name:
        for target in targets:
            if args.callgrind:
                results[target] = instructions_per_request(target, args.interface, Path(tmp_name))
            else:
                results[target] = cpu_per_request(target, args.interface, creds)
            print(f"  {target:20} {results[target]:12,.1f} {unit}/request", flush=True)
    if any(core in results and bare in results for core, bare in _CORE_BARE):
        print(f"\nthe core's own cost (core - bare ECDSA), {unit}/request:")
        for core, bare in _CORE_BARE:
            if core in results and bare in results:
                print(f"  {core:20} {results[core] - results[bare]:12,.1f}")
    null = results.get("null")
    if null is not None:
        print(f"\napp overhead (endpoint - core - null), {unit}/request:")
        for endpoint, core in (
            ("v1_sign_csv", "core_sign"),
            ("stir_signing", "core_sign"),
            ("v1_check", "core_verify"),
            ("stir_verification", "core_verify"),
        ):
            if endpoint in results and core in results:
                print(f"  {endpoint:20} {results[endpoint] - results[core] - null:12,.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
