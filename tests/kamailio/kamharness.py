"""Run real Kamailio and sipp processes on loopback for the tests and the benchmark.

Every process gets its own ports and run directory and is stopped by its PID.  Kamailio's
embedded Python (Debian's /usr/bin/python3) finds secsipid through PYTHONPATH: the work tree's
``src`` first, then a directory with the dependencies made by ``setup_python.sh``.
"""

from __future__ import annotations

import contextlib
import csv
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
EXAMPLES = REPO / "examples" / "kamailio"
SCENARIOS = HERE / "scenarios"
NATIVE = HERE / "native"

APT_PACKAGES = {
    "kamailio": "kamailio",
    "sipp": "sip-tester",
    "app_python3.so": "kamailio-python3-modules",
    "secsipid.so": "kamailio-secsipid-modules",
}
MODULES_DIR = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")


class MissingError(RuntimeError):
    """A program or module the Kamailio tests need is not installed."""


def skip_requested() -> bool:
    return os.environ.get("SECSIPID_SKIP_KAMAILIO") == "1"


def find_program(name: str) -> str:
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin")
    if path is None:
        raise MissingError(f"{name} not found: apt-get install {APT_PACKAGES[name]}")
    return path


def check_module(name: str) -> None:
    if not (MODULES_DIR / name).exists():
        raise MissingError(
            f"Kamailio module {name} not found: apt-get install {APT_PACKAGES[name]}"
        )


@cache
def kamailio_pythonpath() -> str:
    """PYTHONPATH for Kamailio: src/ of this work tree, then the dependency directory."""
    target = os.environ.get("SECSIPID_KAMAILIO_PYTHONPATH") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "secsipid/kamailio-py"
    )
    result = subprocess.run(
        ["bash", str(HERE / "setup_python.sh"), target],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if result.returncode != 0:
        raise MissingError(f"setup_python.sh failed:\n{result.stdout}\n{result.stderr}")
    return f"{REPO / 'src'}:{target}"


def free_port() -> int:
    """A UDP port free on 127.0.0.1 for both UDP and TCP (sipp binds both for some modes)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port > 10000:
            return port


def _udp_bound(port: int) -> bool:
    needle = f":{port:04X} "
    with open("/proc/net/udp") as fh:
        return any(needle in line.split()[1] + " " for line in fh.readlines()[1:] if line.strip())


@dataclass
class Kamailio:
    """One Kamailio instance running the example kamailio.cfg (or another cfg)."""

    workdir: Path
    name: str
    port: int
    defines: Mapping[str, str | int]
    cfg: Path = EXAMPLES / "kamailio.cfg"
    children: int = 2
    shm_mb: int = 256
    pkg_mb: int = 16
    env: Mapping[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def rundir(self) -> Path:
        return self.workdir / f"kam-{self.name}"

    @property
    def log_path(self) -> Path:
        return self.rundir / "kamailio.log"

    def command(self) -> list[str]:
        cmd = [
            find_program("kamailio"),
            "-f",
            str(self.cfg),
            "-DD",
            "-E",
            "-Y",
            str(self.rundir),
            "-w",
            str(self.rundir),
            "-m",
            str(self.shm_mb),
            "-M",
            str(self.pkg_mb),
            "-A",
            f"LISTEN=udp:127.0.0.1:{self.port}",
            "-A",
            f"CHILDREN={self.children}",
        ]
        for key, value in self.defines.items():
            text = str(value) if isinstance(value, int) else f'"{value}"'
            cmd += ["-A", f"{key}={text}"]
        return cmd

    def start(self, *, wait: bool = True) -> Kamailio:
        self.rundir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["PYTHONPATH"] = kamailio_pythonpath()
        # The embedded interpreter looks for its standard library next to the first python3
        # on PATH: an active venv or pyenv of the same minor version (3.11.7) would give it
        # that one, whose extension modules need symbols Debian's libpython lacks
        # ("undefined symbol: _PyModule_Add").  docs/kamailio.md, Troubleshooting.
        env["PYTHONHOME"] = "/usr"
        env.update(self.env)
        log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            self.command(), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.rundir
        )
        log.close()
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"kamailio {self.name} exited with {self.proc.returncode}:\n{self.log()}"
                )
            if _udp_bound(self.port):
                time.sleep(0.3)  # the workers run child_init, then read the socket
                return
            time.sleep(0.05)
        raise RuntimeError(f"kamailio {self.name} not listening after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def pids(self) -> list[int]:
        """The main process and its children (the workers)."""
        assert self.proc is not None
        main = self.proc.pid
        out = [main]
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                ppid = int(stat.rsplit(")", 1)[1].split()[1])
                if ppid == main:
                    out.append(int(entry.name))
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU time of all the instance's processes so far."""
        ticks = os.sysconf("SC_CLK_TCK")
        total = 0
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[11]) + int(fields[12])
        return total / ticks

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> int | None:
        """SIGTERM to the main process; then SIGKILL to any of its processes (by PID) that did
        not exit within the grace period, so no worker outlives a test."""
        if self.proc is None:
            return None
        pids = self.pids() if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        deadline = time.monotonic() + 5
        for pid in pids[1:]:
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        return self.proc.returncode


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@dataclass
class SippResult:
    returncode: int
    successful: int
    failed: int
    errors: str
    messages: str
    stdout: str

    def describe(self) -> str:
        return (
            f"sipp rc={self.returncode} successful={self.successful} failed={self.failed}\n"
            f"--- errors ---\n{self.errors[-4000:]}\n--- stdout ---\n{self.stdout[-2000:]}"
        )


class Sipp:
    """One sipp process (UAC or UAS) with a scenario file; templates are filled in first."""

    def __init__(
        self,
        workdir: Path,
        name: str,
        scenario: str,
        *,
        port: int,
        target: str | None = None,
        subst: Mapping[str, str] | None = None,
        inject: list[str] | None = None,
        calls: int = 1,
        rate: float = 10,
        limit: int = 100,
        service: str = "+12155550131",
        trace_msg: bool = True,
        timeout_s: float | None = None,
    ) -> None:
        self.dir = workdir / f"sipp-{name}"
        self.dir.mkdir(parents=True, exist_ok=True)
        text = (SCENARIOS / scenario).read_text()
        for key, value in (subst or {}).items():
            text = text.replace(f"@{key}@", value)
        self.scenario = self.dir / scenario
        self.scenario.write_text(text)
        cmd = [
            find_program("sipp"),
            "-sf",
            str(self.scenario),
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            "-m",
            str(calls),
            "-nostdin",
            "-trace_err",
            "-error_file",
            str(self.dir / "errors.log"),
            "-trace_stat",
            "-stf",
            str(self.dir / "stat.csv"),
            "-fd",
            "3600",
            "-s",
            service,
            "-max_recv_loops",
            "5000",
        ]
        if trace_msg:
            cmd += ["-trace_msg", "-message_file", str(self.dir / "messages.log")]
        if target is not None:
            cmd += ["-r", f"{rate:g}", "-l", str(limit), target]
        if timeout_s is not None:
            cmd += ["-timeout", f"{timeout_s:g}s", "-timeout_error"]
        if inject is not None:
            inf = self.dir / "inject.csv"
            inf.write_text("SEQUENTIAL\n" + "".join(line + "\n" for line in inject))
            cmd += ["-inf", str(inf)]
        self.cmd = cmd
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Sipp:
        out = open(self.dir / "stdout.log", "wb")  # noqa: SIM115 - closed right after
        self.proc = subprocess.Popen(
            self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir
        )
        out.close()
        return self

    def wait(self, timeout: float = 120) -> SippResult:
        assert self.proc is not None
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            rc = -999
        return self.result(rc)

    def run(self, timeout: float = 120) -> SippResult:
        return self.start().wait(timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGUSR1)  # sipp: stop gracefully, dump statistics
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)

    def result(self, rc: int) -> SippResult:
        successful = failed = 0
        stat = self.dir / "stat.csv"
        if stat.exists():
            rows = list(csv.reader(stat.read_text().splitlines(), delimiter=";"))
            if len(rows) >= 2:
                header, last = rows[0], rows[-1]
                successful = int(last[header.index("SuccessfulCall(C)")])
                failed = int(last[header.index("FailedCall(C)")])

        def read(name: str) -> str:
            path = self.dir / name
            return path.read_text(errors="replace") if path.exists() else ""

        return SippResult(
            rc, successful, failed, read("errors.log"), read("messages.log"), read("stdout.log")
        )


class CertServer:
    """A loopback HTTP server for certificates: ``/cert.pem`` and friends from a dict,
    ``/slow/...`` never answers (for timeout tests)."""

    def __init__(self, files: Mapping[str, bytes]) -> None:
        self.files = dict(files)
        self.hits: list[str] = []
        self._release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.hits.append(self.path)
                if self.path.startswith("/slow/"):
                    owner._release.wait(30)
                    return
                body = owner.files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-pem-file")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "max-age=3600")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def __enter__(self) -> CertServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


def stop_all(items: Iterator[Kamailio | Sipp] | list[Kamailio | Sipp]) -> None:
    for item in items:
        with contextlib.suppress(Exception):
            item.stop()
