"""Test kit for certificate fetching: a TLS CA for loopback servers, and the certificate server
process (``certserver.py``) started and stopped by PID."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class TLSFiles:
    ca: Path  # what the client trusts (FetchPolicy.tls_ca_file)
    cert: Path  # the server's certificate (127.0.0.1, ::1, localhost)
    key: Path


def make_tls_files(directory: Path) -> TLSFiles:
    """A throwaway CA and a server certificate for the loopback names."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "secsipid test TLS CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("::1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    files = TLSFiles(
        directory / "tls-ca.pem", directory / "tls-cert.pem", directory / "tls-key.pem"
    )
    files.ca.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


class _ScriptProcess:
    """A test server script in its own process: started, waited for (it writes its port to a
    ready file), stopped by PID."""

    def _start(self, script: str, directory: Path, args: list[str]) -> int:
        ready = directory / "ready.txt"
        ready.unlink(missing_ok=True)
        cmd = [sys.executable, str(HERE / script), "--ready", str(ready), *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not ready.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                self.stop()
                raise RuntimeError(f"{script} did not start: {err}")
            time.sleep(0.02)
        return int(ready.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc.stderr is not None:
            self.proc.stderr.close()


class CertServer(_ScriptProcess):
    """``certserver.py`` in its own process, on a loopback address and an ephemeral port."""

    def __init__(
        self,
        directory: Path,
        routes: dict[str, dict[str, Any]],
        tls: TLSFiles | None,
        *,
        port: int = 0,
        host: str = "127.0.0.1",
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.tls = tls
        routes_file = directory / "routes.json"
        routes_file.write_text(json.dumps(routes))
        args = ["--routes", str(routes_file), "--port", str(port), "--host", host]
        if tls is not None:
            args += ["--tls-cert", str(tls.cert), "--tls-key", str(tls.key)]
        self.port = self._start("certserver.py", directory, args)
        self.host = host
        self.scheme = "https" if tls is not None else "http"

    def url(self, path: str, host: str | None = None) -> str:
        host = host or self.host
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{self.port}{path}"

    def _ask(self, path: str) -> Any:
        import ssl

        ctx = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        with urllib.request.urlopen(self.url(path), timeout=5, context=ctx) as resp:
            return json.loads(resp.read())

    def hits(self) -> dict[str, int]:
        """Per-path request counts, asked over plain HTTP(S) with urllib (not our fetcher)."""
        result: dict[str, int] = self._ask("/_hits")
        return result

    def hosts(self) -> dict[str, str]:
        """The Host header of each path's last request."""
        result: dict[str, str] = self._ask("/_hosts")
        return result

    def peers(self) -> dict[str, list[Any]]:
        """The client (address, port) of each path's last request."""
        result: dict[str, list[Any]] = self._ask("/_peers")
        return result

    def headers(self) -> dict[str, list[list[str]]]:
        """The header lines (name, value) of each path's last request."""
        result: dict[str, list[list[str]]] = self._ask("/_headers")
        return result


class DNSServer(_ScriptProcess):
    """``dnsserver.py`` in its own process, on 127.0.0.1 UDP and an ephemeral port."""

    def __init__(self, directory: Path, zone: dict[str, dict[str, Any]]) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        zone_file = directory / "zone.json"
        zone_file.write_text(json.dumps(zone))
        self.port = self._start("dnsserver.py", directory, ["--zone", str(zone_file)])
        self.nameserver = f"127.0.0.1:{self.port}"
