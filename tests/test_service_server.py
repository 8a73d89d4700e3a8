"""``secsipid serve`` as a real process (Granian workers on 127.0.0.1, stopped by PID):
interop with the real secsipidx both ways and against ``secsipidx -http-srv``, slow clients,
keep-alive, SIGHUP reload under load, metrics across workers, certificate fetches."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from helpers import DEST, ORIG, ORIGID, X5U, KeyFiles, make_self_signed
from secsipid import Signer, Verifier, rcd_digest
from servicekit import ServerProcess, free_port
from test_interop_secsipidx import _sign_full, _sx_check, _variants

pytestmark = pytest.mark.interop


@pytest.fixture(scope="module")
def server(
    key_files: KeyFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """Two workers, signing and verification with the session key pair."""
    d = tmp_path_factory.mktemp("serve")
    pub = d / "pub"
    pub.mkdir()
    shutil.copy(key_files.cert_pem, pub / "cert.pem")
    proc = ServerProcess(
        "--key", str(key_files.key_pem), "--x5u", X5U, "--cert", str(key_files.cert_pem),
        "--pub-dir", str(pub), "--expire", "300", "--header-timeout", "1", "--body-timeout", "1",
        workers=2,
    )  # fmt: skip
    with proc.start(d / "server.log"):
        yield proc


def _sign_csv(server: ServerProcess, csv: str) -> str:
    reply = server.request("POST", "/v1/sign-csv", csv.encode())
    assert reply.status == 200, reply.body
    return reply.body.decode().strip()


# -- interop -----------------------------------------------------------------------------------


def test_sign_csv_passes_secsipidx_check(
    server: ServerProcess, secsipidx: str, key_files: KeyFiles, tmp_path: Path
) -> None:
    """A value from our /v1/sign-csv passes `secsipidx -check` (public key and certificate)."""
    value = _sign_csv(server, f"{ORIG},{DEST},A,,")
    for credential in (key_files.pub_pem, key_files.cert_pem):
        assert _sx_check(secsipidx, value, credential, tmp_path) == (0, "ok")


def test_secsipidx_sign_full_passes_v1_check(
    server: ServerProcess, secsipidx: str, key_files: KeyFiles
) -> None:
    """A value from `secsipidx -sign-full` passes our /v1/check."""
    value = _sign_full(secsipidx, key_files.key_pem)
    reply = server.request("POST", "/v1/check", value.encode())
    assert (reply.status, reply.body) == (200, b"OK\n")


def _post(port: int, path: str, body: bytes) -> int:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", path, body=body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    finally:
        conn.close()


# Where we answer differently from `secsipidx -http-srv -fpubkey`, on purpose:
# a bare JWT without parameters is "OK" there although its library returns -301 (a known bug
# of secsipidx's HTTP server, shared/reference/secsipidx.md §3.2); and several values, one a
# line, pass when one of them is valid (RFC 8224 §6.2.1), where secsipidx strips the line breaks
# and checks one value.
DELIBERATE = {"bare-token", "two-values"}


def test_same_split_as_secsipidx_http_srv(
    server: ServerProcess, secsipidx: str, key_files: KeyFiles, tmp_path: Path
) -> None:
    """The interop inputs against `secsipidx -http-srv` and against us: the same
    success/failure split, except the documented deliberate difference."""
    signer = Signer.from_file(key_files.key_pem, X5U)
    variants = _variants(signer, int(time.time()))
    variants["empty"] = ""
    variants["whitespace-around"] = "  " + variants["valid"] + "\n"
    variants["two-values"] = variants["tampered"] + "\n" + variants["valid"]
    port = free_port()
    sx = subprocess.Popen(
        [secsipidx, "-http-srv", f"127.0.0.1:{port}", "-fprvkey", str(key_files.key_pem),
         "-fpubkey", str(key_files.cert_pem), "-expire", "300"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "secsipidx -http-srv did not start"
                time.sleep(0.05)
        theirs = {n: _post(port, "/v1/check", v.encode()) == 200 for n, v in variants.items()}
    finally:
        sx.terminate()
        sx.wait(timeout=10)
    ours = {n: _post(server.port, "/v1/check", v.encode()) == 200 for n, v in variants.items()}
    assert len(variants) >= 19
    assert ours["valid"] and theirs["valid"]
    differ = {n for n in variants if ours[n] != theirs[n]}
    assert differ == DELIBERATE, {n: (ours[n], theirs[n]) for n in differ}
    assert theirs["bare-token"] and not ours["bare-token"]
    assert ours["two-values"] and not theirs["two-values"]


# -- the server's defences ---------------------------------------------------------------------


def _raw(server: ServerProcess, data: bytes, wait: float) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=wait) as sock:
        sock.sendall(data)
        received = b""
        try:
            while chunk := sock.recv(65536):
                received += chunk
        except (TimeoutError, ConnectionResetError):
            pass
    return received, time.monotonic() - started


def test_slow_headers_closed(server: ServerProcess) -> None:
    """Headers that never complete: the connection is closed after --header-timeout (1 s)."""
    received, elapsed = _raw(server, b"POST /v1/check HTTP/1.1\r\nHost: x\r\n", wait=10)
    assert elapsed < 8, elapsed
    assert b"200 OK" not in received


def test_slow_body_408(server: ServerProcess) -> None:
    """A body that stops arriving: 408 after --body-timeout (1 s)."""
    request = b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\neyJ"
    received, elapsed = _raw(server, request, wait=10)
    assert received.startswith(b"HTTP/1.1 408"), received[:100]
    assert elapsed < 8


def test_body_limit_413(server: ServerProcess) -> None:
    reply = server.request("POST", "/v1/check", b"x" * 20000)
    assert reply.status == 413


def test_keep_alive(server: ServerProcess, key_files: KeyFiles) -> None:
    """Several requests on one connection."""
    conn = server.connection()
    try:
        for _ in range(3):
            assert server.request("GET", "/healthz", conn=conn).status == 200
    finally:
        conn.close()


def test_metrics_add_up_across_workers(server: ServerProcess) -> None:
    """Whichever of the two workers answers /metrics, it counts every worker's requests:
    those of the worker answering at once, the other's within its next housekeeping second
    (the samples are handed to prometheus-client in batches, docs/service.md)."""

    def count() -> float:
        text = server.request("GET", "/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith('secsipid_http_requests_total{endpoint="openapi",status="200"}'):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    before = count()
    for _ in range(20):  # new connections: spread over the workers
        assert server.request("GET", "/openapi.json").status == 200
    seen = [count()]
    deadline = time.monotonic() + 5
    while seen[-1] != before + 20 and time.monotonic() < deadline:
        time.sleep(0.2)
        seen.append(count())
    assert seen[-1] == before + 20, seen
    assert max(seen) == before + 20  # never more than was answered
    time.sleep(1.2)  # every worker's housekeeping ran again: nothing counted twice
    assert count() == before + 20


# -- starting, stopping, reloading -------------------------------------------------------------


def test_refuses_non_loopback_signing_without_token(key_files: KeyFiles) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "secsipid", "serve", "--listen", "0.0.0.0:18099",
         "--key", str(key_files.key_pem)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "is not a loopback address: signing there needs a bearer token" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_runtime_threads_reach_the_server(key_files: KeyFiles, tmp_path: Path) -> None:
    """--runtime-threads sets Granian's I/O threads per worker: a worker started with 2 runs
    more threads than one started with 1, and both sign."""

    def worker_threads(n: int) -> int:
        proc = ServerProcess(
            "--key", str(key_files.key_pem), "--x5u", X5U, "--runtime-threads", str(n)
        )  # fmt: skip
        with proc.start(tmp_path / f"threads-{n}.log"):
            assert proc.request("POST", "/v1/sign-csv", f"{ORIG},{DEST},A,,".encode()).status == 200
            workers = subprocess.run(
                ["ps", "-o", "pid=", "--ppid", str(proc.pid)], capture_output=True, text=True
            ).stdout.split()
            assert len(workers) == 1, workers
            return len(os.listdir(f"/proc/{workers[0]}/task"))

    assert worker_threads(2) > worker_threads(1)


def test_sighup_reload_without_dropping_requests(key_files: KeyFiles, tmp_path: Path) -> None:
    """SIGHUP with a new key: signatures switch to the new key while clients keep sending on
    open connections; no request fails.  A broken key on the next SIGHUP is refused and the
    service goes on with the working one."""
    key = tmp_path / "key.pem"
    shutil.copy(key_files.key_pem, key)
    from secsipid.cli import main

    assert main(["keygen", "--out", str(tmp_path / "new")]) == 0
    old_verifier = Verifier(str(key_files.cert_pem))
    new_verifier = Verifier(str(tmp_path / "new/cert.pem"))
    server = ServerProcess("--key", str(key), "--x5u", X5U, workers=2)
    server.start(tmp_path / "server.log")
    failures: list[str] = []
    done = threading.Event()
    counts = [0]

    def client() -> None:
        conn = server.connection()
        try:
            while not done.is_set():
                reply = server.request(
                    "POST", "/v1/sign-csv", f"{ORIG},{DEST},A,{ORIGID},".encode(), conn=conn
                )
                counts[0] += 1
                if reply.status != 200:
                    failures.append(f"{reply.status} {reply.body!r}")
        except Exception as exc:  # noqa: BLE001 - recorded, asserted below
            failures.append(repr(exc))
        finally:
            conn.close()

    threads = [threading.Thread(target=client) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        time.sleep(0.5)
        os.replace(tmp_path / "new/key.pem", key)
        os.kill(server.pid, signal.SIGHUP)
        deadline = time.monotonic() + 15
        while True:
            values = [_fresh_value(server) for _ in range(6)]  # both workers
            if all(new_verifier.check(v).ok for v in values):
                break
            assert time.monotonic() < deadline, "the new key was not picked up"
            time.sleep(0.2)
        key.write_text("not a key")
        os.kill(server.pid, signal.SIGHUP)
        time.sleep(2.5)
        values = [_fresh_value(server) for _ in range(6)]
        assert all(new_verifier.check(v).ok for v in values)
        assert not any(old_verifier.check(v).ok for v in values)
    finally:
        done.set()
        for t in threads:
            t.join(timeout=20)
        status = server.stop()
    assert failures == []
    assert counts[0] > 20
    assert status == 0
    log = server.log()
    assert "reload refused" in log and "signing.key" in log


def _fresh_value(server: ServerProcess) -> str:
    return _sign_csv(server, f"{ORIG},{DEST},A,,")


def test_url_mode_fetch_metrics(key_files: KeyFiles, tmp_path: Path) -> None:
    """Without --cert the certificate comes from info (here our own /v1/pub/): the first
    check downloads it (a miss), the next ones hit the cache; metrics count both."""
    pub = tmp_path / "pub"
    pub.mkdir()
    shutil.copy(key_files.cert_pem, pub / "cert.pem")
    server = ServerProcess(
        "--key", str(key_files.key_pem), "--pub-dir", str(pub), "--allow-http",
        "--allow-private", "--no-verify-cert", workers=1,
    )  # fmt: skip
    with server.start(tmp_path / "server.log"):
        x5u = f"http://127.0.0.1:{server.port}/v1/pub/cert.pem"
        value = _sign_csv(server, f"{ORIG},{DEST},A,,{x5u}")
        for _ in range(3):
            reply = server.request("POST", "/v1/check", value.encode())
            assert (reply.status, reply.body) == (200, b"OK\n")
        missing = _sign_csv(server, f"{ORIG},{DEST},A,,http://127.0.0.1:{server.port}/v1/pub/x")
        reply = server.request("POST", "/v1/check", missing.encode())
        assert reply.status == 502
        assert reply.headers["x-secsipid-reason"] == "cert-fetch-status"
        text = server.request("GET", "/metrics").body.decode()
    assert 'secsipid_cert_fetches_total{result="ok"} 1.0' in text
    assert 'secsipid_cert_fetches_total{result="cert-fetch-status"} 1.0' in text
    assert 'secsipid_cert_cache_total{result="miss"} 2.0' in text
    assert 'secsipid_cert_cache_total{result="hit"} 2.0' in text


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def test_diverted_call_and_rich_call_data_end_to_end(tmp_path: Path) -> None:
    """Two carriers' keys in one real server (the caller's carrier signs the SHAKEN PASSporT
    with RCD, the forwarding carrier the div, chosen by number prefix), their certificates
    and the caller's logo fetched from its own /v1/pub/ through the safe fetcher (URL mode,
    --fetch-rcd): the ATIS verification reports the chain and the Call-Info, /v1/verify the
    whole verdict with the logo's digest checked."""
    caller, first, second = "12155551212", "12155551213", "12155551214"
    pub = tmp_path / "pub"
    pub.mkdir()
    keys = {}
    orig_key = ec.generate_private_key(ec.SECP256R1())
    for name in ("orig", "fwd"):
        key = orig_key if name == "orig" else ec.generate_private_key(ec.SECP256R1())
        keys[name] = tmp_path / f"{name}-key.pem"
        keys[name].write_bytes(_key_pem(key))
        (pub / f"{name}.pem").write_bytes(
            make_self_signed(key, f"carrier {name}").public_bytes(serialization.Encoding.PEM)
        )
    logo = b"\x89PNG logo of Example Bank"
    (pub / "logo.png").write_bytes(logo)
    port = free_port()
    base = f"http://127.0.0.1:{port}/v1/pub"
    config = tmp_path / "serve.toml"
    config.write_text(
        f'[signing]\nkey = "{keys["orig"]}"\nx5u = "{base}/orig.pem"\n\n'
        f'[[signing.profiles]]\nkey = "{keys["fwd"]}"\nx5u = "{base}/fwd.pem"\n'
        f'prefixes = ["{first}"]\n'
    )
    server = ServerProcess(
        "--config", str(config), "--pub-dir", str(pub), "--allow-http", "--allow-private",
        "--no-verify-cert", "--fetch-rcd", workers=1, port=port,
    )  # fmt: skip
    json_hdrs = {"Content-Type": "application/json"}
    now = int(time.time())
    with server.start(tmp_path / "server.log"):

        def post(path: str, doc: dict[str, object]) -> dict[str, Any]:
            reply = server.request("POST", path, json.dumps(doc).encode(), json_hdrs)
            assert reply.status == 200, reply.body
            return cast("dict[str, Any]", reply.json())

        shaken = post("/stir/v1/signing", {"signingRequest": {
            "attest": "A", "orig": {"tn": caller}, "dest": {"tn": [first]}, "iat": now,
            "rcd": {"nam": "Example Bank", "icn": f"{base}/logo.png"}, "crn": "Card blocked",
            "rcdi": {"/icn": rcd_digest(logo)},
        }})["signingResponse"]["identity"]  # fmt: skip
        div = post("/stir/v1/signing", {"signingRequest": {
            "original": shaken, "dest": {"tn": [second]},
        }})["signingResponse"]["identity"]  # fmt: skip
        assert f";info=<{base}/orig.pem>;" in shaken and f";info=<{base}/fwd.pem>;" in div
        answer = post("/stir/v1/verification", {"verificationRequest": {
            "from": {"tn": caller}, "to": {"tn": [second]}, "time": now,
            "identity": [div, shaken],
        }})["verificationResponse"]  # fmt: skip
        assert answer["verstat"] == "TN-Validation-Passed" and answer["diverted"] is True
        assert [hop["ppt"] for hop in answer["chain"]] == ["shaken", "div"]
        assert answer["rcd"]["nam"] == "Example Bank" and answer["crn"] == "Card blocked"
        assert answer["callinfo"] == [
            f'<{base}/logo.png>;purpose=icon;integrity="{rcd_digest(logo)}";'
            'call-reason="Card blocked"'
        ]
        verdict = post("/v1/verify", {"identity": [shaken, div], "dest_tn": second})
        assert verdict["valid"] and verdict["diverted"]
        assert verdict["rcd_checked"] == ["/icn"]  # the logo was fetched and matched
        # the logo changes after signing: the call stays valid, its RCD is not shown
        (pub / "logo.png").write_bytes(b"another picture")
        verdict = post("/v1/verify", {"identity": [shaken, div], "dest_tn": second})
        assert verdict["valid"] and verdict["rcd"] is None
        assert verdict["rcd_failure"]["reason"] == "rcd-integrity-mismatch"
        # a div signed with another key than its certificate's: the chain's hop fails
        forged = Signer(orig_key, f"{base}/fwd.pem").div_for(shaken, second)
        answer = post("/stir/v1/verification", {"verificationRequest": {
            "from": {"tn": caller}, "to": {"tn": [second]}, "time": now,
            "identity": [shaken, forged],
        }})["verificationResponse"]  # fmt: skip
        assert answer["verstat"] == "TN-Validation-Failed"
        assert answer["reasoncode"] == 438 and "diverted" not in answer
        assert [(hop["ppt"], hop["valid"], hop["reason"]) for hop in answer["chain"]] == [
            ("shaken", True, "valid"),
            ("div", False, "bad-signature"),
        ]
