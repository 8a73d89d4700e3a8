"""A/B of code variants inside one Kamailio: the variants alternate per INVITE in the same workers.

``bench_kamailio.py`` compares modes in separate Kamailio runs, whose figures move by ±10-25 %
on a shared machine as the neighbours' load changes; a 10 µs change in a 250 µs step is lost
in that.  Here each variant is a copy of the package (a ``src`` directory holding
``secsipid/``, e.g. a ``git worktree`` of another commit), imported under its own name
(``secsipid_<label>``: the package uses relative imports only), configured by its own
``mod_init``, and the route calls them in turn, one per INVITE, timing each call with the
process CPU clock.  So every variant runs in the same workers, in the same cold-cache state,
under the same load; the differences to the first variant are paired per run.

    git worktree add /tmp/base HEAD~1
    .venv/bin/python bench/kamailio_ab.py verify new=src base=/tmp/base/src --repeat 4
    .venv/bin/python bench/kamailio_ab.py sign new=src base=/tmp/base/src same=src   # A/A

``sign`` runs ``secsipid_add_identity`` with a key file, ``verify``
``secsipid_check_identity`` with a certificate file, ``verify-url`` with the certificate from
the ``info`` URL (loopback, cached).  An A/A pair (the same source twice) shows the noise.

Besides package variants, a variant may be one of the steps of ``bench_kamailio.py``:
``floor`` (raw ``key.sign``, or header read + ``public_key.verify``), ``core`` (the core
without the KEMI wrapper, key or certificate loaded once) or ``native`` (``KSR.secsipid.*``):

    .venv/bin/python bench/kamailio_ab.py verify ours=src core floor native

Caveat for those: alternated, each step's own code runs only every Nth INVITE of a worker, so
a step sharing little code with the others (``native``: Go) may find colder caches than when
it runs alone; compare with ``bench_kamailio.py``'s separate runs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests" / "kamailio"))

import kamharness as kh  # noqa: E402

import bench_kamailio as bk  # noqa: E402

ROUTE = """
import json
import os
import sys
import time

sys.path.insert(0, {packages!r})
import base64

import KSR
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from secsipid import Signer, Verifier, VerifyPolicy, credential_from_file

LABELS = {labels!r}
KINDS = {kinds!r}
MODS = [
    __import__("secsipid_%s.kamailio" % label, fromlist=["kamailio"]) if kind == "pkg" else kind
    for label, kind in zip(LABELS, KINDS)
]
MODE = {mode!r}
SIGNING_INPUT = {signing_input!r}
KEY = {key!r}
CERT = {cert!r}
X5U = {x5u!r}
NEXT_HOP = {next_hop!r}
OUT = {out!r}
SKIP = 50  # first INVITEs of a worker: lazy set-up, first fetch
STATS = {{label: {{"count": 0, "sum": 0, "hist": [0] * 1001}} for label in LABELS}}
SEEN = [0]


def mod_init():
    global PRIVATE, PUBLIC, SIGNER, VERIFIER, STEPS
    with open(KEY, "rb") as fh:
        PRIVATE = serialization.load_pem_private_key(fh.read(), None)
    with open(CERT, "rb") as fh:
        PUBLIC = x509.load_pem_x509_certificate(fh.read()).public_key()
    SIGNER = Signer.from_file(KEY, X5U)
    VERIFIER = Verifier(credential_from_file(CERT), policy=VerifyPolicy(expire=86400))
    STEPS = [step_for(mod) for mod in MODS]
    for mod in MODS:
        if isinstance(mod, str):
            continue
        if MODE == "verify-url":
            mod.mod_init(
                expire=86400, allow_http=True, allow_private=True, libopt=["CertVerify=0"]
            )
        else:
            mod.mod_init(expire=86400)
        if MODE == "sign":
            mod.preload_signing_key(KEY)
    return Router()


ALG = ec.ECDSA(hashes.SHA256())


def floor_sign():
    PRIVATE.sign(SIGNING_INPUT, ALG)
    return 1


def core_sign():
    value = SIGNER.identity(KSR.pv.get("$fU"), KSR.pv.get("$rU"), "A")
    return 1 if KSR.hdr.append("Identity: " + value + "\\r\\n") >= 0 else -1


def floor_verify():
    token = KSR.pv.get("$(hdr(Identity)[*])").split(";", 1)[0]
    signing_input, _, sig = token.rpartition(".")
    raw = base64.urlsafe_b64decode(sig + "==")
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    PUBLIC.verify(der, signing_input.encode("ascii"), ALG)
    return 1


def core_verify():
    return 1 if VERIFIER.check(KSR.pv.get("$(hdr(Identity)[*])")).ok else -1


def step_for(mod):
    sign = MODE == "sign"
    path = CERT if MODE == "verify" else ""
    if mod == "floor":
        return floor_sign if sign else floor_verify
    if mod == "core":
        return core_sign if sign else core_verify
    if mod == "native":
        if sign:
            return lambda: KSR.secsipid.secsipid_add_identity("$fU", "$rU", "A", "", X5U, KEY)
        return lambda: KSR.secsipid.secsipid_check_identity(path)
    if sign:
        return lambda: mod.secsipid_add_identity("$fU", "$rU", "A", "", X5U, KEY)
    return lambda: mod.secsipid_check_identity(path)


class Router:
    def child_init(self, rank):
        return 0

    def ksr_request_route(self, msg):
        if KSR.is_ACK() or KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if KSR.is_INVITE():
            SEEN[0] += 1
            i = SEEN[0] % len(MODS)
            cpu = time.process_time_ns()
            rc = STEPS[i]()
            ns = time.process_time_ns() - cpu
            if SEEN[0] > SKIP:
                st = STATS[LABELS[i]]
                st["count"] += 1
                st["sum"] += ns
                st["hist"][min(ns // 2000, 1000)] += 1
            if SEEN[0] % 200 == 0:
                with open(os.path.join(OUT, "%d.json" % os.getpid()), "w") as fh:
                    json.dump(STATS, fh)
            if rc != 1:
                KSR.sl.sl_send_reply(500, "STIR Failed")
                return 1
        KSR.pv.sets("$du", NEXT_HOP)
        KSR.tm.t_relay()
        return 1
"""


#: steps that are not a package variant: the floor (raw crypto), the core without the wrapper
#: (key or certificate loaded once), the native module (needs ``loadmodule "secsipid.so"``).
STEP_KINDS = ("floor", "core", "native")


def _median_of_hist(hist: list[int], count: int) -> float:
    seen = 0
    for i, n in enumerate(hist):
        seen += n
        if seen * 2 >= count:
            return (i + 0.5) * 2.0
    return 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=["sign", "verify", "verify-url"])
    parser.add_argument(
        "variants",
        nargs="+",
        help="label=SRC_DIR (SRC_DIR holds secsipid/), or floor, core, native",
    )
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--repeat", type=int, default=4)
    parser.add_argument("--children", type=int, default=4)
    args = parser.parse_args()
    variants = [v.split("=", 1) if "=" in v else [v, ""] for v in args.variants]
    if any(
        not label.isidentifier() or (not src and label not in STEP_KINDS) for label, src in variants
    ):
        parser.error("variants are label=SRC_DIR (label a Python identifier), floor, core, native")
    labels = [label for label, _ in variants]
    kinds = dict((label, "pkg" if src else label) for label, src in variants)
    if len(set(labels)) != len(labels):
        parser.error("labels must differ")
    packages = Path(tempfile.mkdtemp(prefix="kamailio-ab-"))
    for label, src in variants:
        if not src:
            continue
        shutil.copytree(
            Path(src) / "secsipid",
            packages / f"secsipid_{label}",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    kh.kamailio_pythonpath()
    calls = int(args.rate * args.seconds)
    bench = bk.Bench(
        argparse.Namespace(
            rates=[args.rate], max_rates=[args.rate], seconds=args.seconds, children=args.children
        )
    )
    means: dict[str, list[float]] = {label: [] for label in labels}
    medians: dict[str, list[float]] = {label: [] for label in labels}
    try:
        for rep in range(args.repeat):
            order = labels[rep % len(labels) :] + labels[: rep % len(labels)]
            work = bench.tmp / f"ab-{rep}"
            out = work / "stats"
            out.mkdir(parents=True)
            uas_port = kh.free_port()
            script = work / "route.py"
            script.write_text(
                ROUTE.format(
                    packages=str(packages),
                    labels=order,
                    kinds=[kinds[label] for label in order],
                    mode=args.mode,
                    signing_input=bench.signing_input,
                    key=str(bench.key),
                    cert=str(bench.cert),
                    x5u=bench.x5u,
                    next_hop=f"sip:127.0.0.1:{uas_port}",
                    out=str(out),
                )
            )
            defines: dict[str, str | int] = {"KEMI_SCRIPT": str(script), "EXPIRE": bk.EXPIRE}
            if "native" in labels:
                defines["WITH_NATIVE"] = 1
                if args.mode == "verify-url":
                    defines["NATIVE_CACHE_DIR"] = str(bench.native_cache)
            kam = kh.Kamailio(
                work,
                "k",
                kh.free_port(),
                defines,
                cfg=bench.tmp / "bench.cfg",
                children=args.children,
                shm_mb=1024,
                pkg_mb=32,
            )
            uas = kh.Sipp(work, "uas", "uas_plain.xml", port=uas_port, calls=0, trace_msg=False)
            uas.cmd = bk._drop_option(uas.cmd, "-m")
            try:
                kam.start()
                uas.start()
                time.sleep(0.3)
                uac = bench._uac(work, "uac", kam.port, args.rate, calls, args.mode != "sign")
                res = uac.run(60 + calls / args.rate * 3)
                time.sleep(0.3)
            finally:
                uas.stop()
                kam.stop()
            counts = dict.fromkeys(labels, 0)
            sums = dict.fromkeys(labels, 0)
            hists = {label: [0] * 1001 for label in labels}
            for path in out.glob("*.json"):
                for label, st in json.loads(path.read_text()).items():
                    counts[label] += st["count"]
                    sums[label] += st["sum"]
                    hists[label] = [x + y for x, y in zip(hists[label], st["hist"], strict=True)]
            parts = []
            for label in labels:
                if not counts[label]:
                    raise SystemExit(f"no samples for {label}: see {work}")
                mean = sums[label] / counts[label] / 1000
                means[label].append(mean)
                medians[label].append(_median_of_hist(hists[label], counts[label]))
                parts.append(f"{label} {mean:6.1f} us (n {counts[label]})")
            print(
                f"run {rep}: ok {res.successful}/{calls} failed {res.failed}: " + "  ".join(parts),
                file=sys.stderr,
                flush=True,
            )
            if res.failed or res.successful != calls:
                raise SystemExit(f"failed or incomplete calls: see {work}")
    finally:
        bench.close()
        shutil.rmtree(packages, ignore_errors=True)
    base = labels[0]
    print(
        f"\n{args.mode}, {args.rate} calls/s, {args.repeat} runs of {calls} calls, variants "
        "alternating per INVITE; in-worker CPU µs per call: median of the runs' means [min-max]"
    )
    for label in labels:
        diffs = [a - b for a, b in zip(means[label], means[base], strict=True)]
        print(
            f"  {label:12s} {statistics.median(means[label]):6.1f}"
            f" [{min(means[label]):.1f}-{max(means[label]):.1f}]"
            f"  per-call median {statistics.median(medians[label]):4.0f}"
            f"  vs {base}: {statistics.median(diffs):+6.1f} [{min(diffs):+.1f}..{max(diffs):+.1f}]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
