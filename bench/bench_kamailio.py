"""STIR cost per call in a real Kamailio: secsipid.kamailio (ours) against the native module.

sipp and Kamailio share this machine's two cores, so the call rate alone cannot tell the
modules apart.  The figure that can is Kamailio's CPU time per call: the same proxy shape (a
Python KEMI script relaying INVITEs statefully to a sipp UAS), the same Kamailio settings
(children, memory), the same sipp scenario, at fixed rates below saturation; once without STIR,
once with our ``secsipid_add_identity``/``secsipid_check_identity`` and once with the native
module's (``KSR.secsipid.*``, libsecsipid).  STIR cost per call = CPU ms/call with STIR minus
CPU ms/call of the same route without.

Every call carries its own PASSporT (fresh ``origid``, signed at the start of the run), so the
verifiers do the full work on each call.  Then, for each STIR mode, the rate is raised until a
call fails: the highest zero-failure rate.

    .venv/bin/python bench/bench_kamailio.py                 # ~6 minutes
    .venv/bin/python bench/bench_kamailio.py --rates 500 --seconds 5 --no-max   # quick look
    .venv/bin/python bench/bench_kamailio.py --json results.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "kamailio"))

import kamharness as kh  # noqa: E402

from secsipid import Signer  # noqa: E402

X5U = "https://cert.example.org/sti.pem"

CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=CHILDREN
listen=LISTEN
auto_aliases=no
kemi.onsend_route_callback="none"
kemi.reply_route_callback="none"
kemi.event_route_callback="none"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "app_python3.so"
#!ifdef WITH_NATIVE
loadmodule "secsipid.so"
modparam("secsipid", "expire", 3600)
#!endif
modparam("app_python3", "load", KEMI_SCRIPT)
cfgengine "python"
"""

SCRIPT = """
import KSR
from secsipid import kamailio as stir

MODE = {mode!r}
KEY = {key!r}
CERT = {cert!r}
X5U = {x5u!r}
NEXT_HOP = {next_hop!r}


def mod_init():
    stir.mod_init(expire=3600)
    if MODE.startswith("ours-sign"):
        stir.preload_signing_key(KEY)
    return Router()


class Router:
    def child_init(self, rank):
        return 0

    def ksr_request_route(self, msg):
        if KSR.is_ACK() or KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if KSR.is_INVITE():
            if MODE == "ours-sign":
                rc = stir.secsipid_add_identity("$fU", "$rU", "A", "", X5U, KEY)
            elif MODE == "native-sign":
                rc = KSR.secsipid.secsipid_add_identity("$fU", "$rU", "A", "", X5U, KEY)
            elif MODE == "ours-verify":
                rc = stir.secsipid_check_identity(CERT)
            elif MODE == "native-verify":
                rc = KSR.secsipid.secsipid_check_identity(CERT)
            else:
                rc = 1
            if rc != 1:
                KSR.sl.sl_send_reply(500, "STIR Failed")
                return 1
        KSR.pv.sets("$du", NEXT_HOP)
        KSR.tm.t_relay()
        return 1
"""

#: mode -> (INVITE carries an Identity, baseline mode)
MODES = {
    "relay-plain": (False, None),
    "relay-identity": (True, None),
    "ours-sign": (False, "relay-plain"),
    "native-sign": (False, "relay-plain"),
    "ours-verify": (True, "relay-identity"),
    "native-verify": (True, "relay-identity"),
}


@dataclass
class Run:
    mode: str
    rate: int
    calls: int
    successful: int
    failed: int
    cpu_ms_per_call: float


def make_pki(d: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .sign(key, hashes.SHA256())
    )
    (d / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    (d / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return d / "key.pem", d / "cert.pem"


def identities(key: Path, count: int) -> list[str]:
    """``count`` distinct Identity values (fresh origid each) as sipp injection lines: sipp
    splits fields on ";", the scenario joins them back."""
    signer = Signer.from_file(key, X5U)
    return [signer.identity("+12155550121", "+12155550131", "A") for _ in range(count)]


def write_scenario(d: Path, with_identity: bool) -> Path:
    extra = "Identity: [field0];[field1];[field2];[field3]" if with_identity else "X-Bench: plain"
    text = (kh.SCENARIOS / "uac.xml").read_text().replace("@EXTRA@", extra)
    path = d / ("uac_identity.xml" if with_identity else "uac_plain.xml")
    path.write_text(text)
    return path


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="bench-kamailio-"))
        self.key, self.cert = make_pki(self.tmp)
        total = int(max(args.rates + args.max_rates) * (args.seconds + 3)) + 2000
        print(f"signing {total} PASSporTs for the verify runs ...", file=sys.stderr)
        lines = identities(self.key, total)
        self.inject = self.tmp / "identities.csv"
        self.inject.write_text("SEQUENTIAL\n" + "\n".join(lines) + "\n")
        (self.tmp / "bench.cfg").write_text(CFG)
        self.scenarios = {flag: write_scenario(self.tmp, flag) for flag in (False, True)}
        self.seq = 0

    def run(self, mode: str, rate: int, calls: int) -> Run:
        self.seq += 1
        work = self.tmp / f"{self.seq:03d}-{mode}-{rate}"
        work.mkdir()
        uas_port = kh.free_port()
        script = work / "route.py"
        script.write_text(
            SCRIPT.format(
                mode=mode,
                key=str(self.key),
                cert=str(self.cert),
                x5u=X5U,
                next_hop=f"sip:127.0.0.1:{uas_port}",
            )
        )
        defines: dict[str, str | int] = {"KEMI_SCRIPT": str(script)}
        kam = kh.Kamailio(
            work,
            "k",
            kh.free_port(),
            defines,
            cfg=self.tmp / "bench.cfg",
            children=self.args.children,
            shm_mb=1024,
            pkg_mb=32,
        )
        if mode.startswith("native"):
            kam.defines = {**defines, "WITH_NATIVE": 1}
        uas = kh.Sipp(work, "uas", "uas_plain.xml", port=uas_port, calls=0, trace_msg=False)
        uas.cmd = _drop_option(uas.cmd, "-m")  # serve until stopped
        with_identity = MODES[mode][0]
        try:
            kam.start()
            uas.start()
            time.sleep(0.3)
            warm = max(200, rate)
            self._uac(work, "warm", kam.port, rate, warm, with_identity).run(120)
            cpu0 = kam.cpu_seconds()
            res = self._uac(work, "uac", kam.port, rate, calls, with_identity).run(
                60 + calls / rate * 3
            )
            time.sleep(0.5)  # let the last BYEs and retransmission timers settle
            cpu1 = kam.cpu_seconds()
        finally:
            uas.stop()
            kam.stop()
        return Run(mode, rate, calls, res.successful, res.failed, (cpu1 - cpu0) / calls * 1000)

    def _uac(
        self, work: Path, name: str, port: int, rate: int, calls: int, with_identity: bool
    ) -> kh.Sipp:
        sipp = kh.Sipp(
            work,
            name,
            "uac.xml",
            port=kh.free_port(),
            target=f"127.0.0.1:{port}",
            calls=calls,
            rate=rate,
            limit=max(200, rate),
            subst={"EXTRA": "X-Bench: plain"},
            trace_msg=False,
        )
        sipp.scenario.write_text(self.scenarios[with_identity].read_text())
        if with_identity:
            sipp.cmd += ["-inf", str(self.inject)]
        return sipp


def _drop_option(cmd: list[str], option: str) -> list[str]:
    out: list[str] = []
    skip = False
    for arg in cmd:
        if skip:
            skip = False
            continue
        if arg == option:
            skip = True
            continue
        out.append(arg)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", type=int, nargs="+", default=[500, 1000])
    parser.add_argument("--seconds", type=float, default=10, help="length of a measured run")
    parser.add_argument("--children", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="runs per point (median kept)")
    parser.add_argument("--max-rates", type=int, nargs="+", default=[1250, 1500, 1750, 2000, 2250])
    parser.add_argument("--no-max", action="store_true", help="skip the maximum-rate search")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    kh.kamailio_pythonpath()
    bench = Bench(args)
    results: dict[str, object] = {"rates": {}, "max_rate": {}}
    order = ["relay-plain", "ours-sign", "native-sign", "relay-identity", "ours-verify"]
    order.append("native-verify")
    for rate in args.rates:
        calls = int(rate * args.seconds)
        per_mode: dict[str, list[Run]] = {m: [] for m in order}
        for _ in range(args.repeat):
            for mode in order:  # interleaved, so drifts in machine load hit every mode
                run = bench.run(mode, rate, calls)
                per_mode[mode].append(run)
                print(
                    f"{rate:5d} cps {mode:15s} {run.cpu_ms_per_call:6.3f} ms/call"
                    f"  ok {run.successful}/{run.calls} failed {run.failed}",
                    file=sys.stderr,
                )
        table = {}
        for mode, runs in per_mode.items():
            costs = sorted(r.cpu_ms_per_call for r in runs)
            table[mode] = {
                "cpu_ms_per_call": costs[len(costs) // 2],
                "failed": sum(r.failed for r in runs),
                "runs": [asdict(r) for r in runs],
            }
        for mode, (_, base) in MODES.items():
            if base is not None:
                cost = table[mode]["cpu_ms_per_call"] - table[base]["cpu_ms_per_call"]
                table[mode]["stir_ms_per_call"] = round(cost, 3)
        results["rates"][str(rate)] = table  # type: ignore[index]
        _print_rate(rate, table)
    if not args.no_max:
        for mode in ("ours-sign", "native-sign", "ours-verify", "native-verify"):
            best = 0
            for rate in args.max_rates:
                run = bench.run(mode, rate, int(rate * args.seconds))
                print(
                    f"max {mode:15s} {rate:5d} cps ok {run.successful}/{run.calls}"
                    f" failed {run.failed}",
                    file=sys.stderr,
                )
                if run.failed or run.successful != run.calls:
                    break
                best = rate
            results["max_rate"][mode] = best  # type: ignore[index]
            print(f"highest zero-failure rate {mode}: {best} calls/s")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def _print_rate(rate: int, table: dict[str, dict[str, object]]) -> None:
    print(f"\n## {rate} calls/s (Kamailio CPU ms per call, median)")
    print("| route | ms/call | STIR cost ms/call | failed calls |")
    print("|---|---|---|---|")
    for mode, row in table.items():
        stir = row.get("stir_ms_per_call")
        stir_s = f"{stir:.3f}" if isinstance(stir, float) else ""
        print(f"| {mode} | {row['cpu_ms_per_call']:.3f} | {stir_s} | {row['failed']} |")
    for kind in ("sign", "verify"):
        ours = table[f"ours-{kind}"].get("stir_ms_per_call")
        native = table[f"native-{kind}"].get("stir_ms_per_call")
        if isinstance(ours, float) and isinstance(native, float) and native > 0:
            print(f"{kind}: ours / native STIR cost = {ours / native:.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    raise SystemExit(main())
