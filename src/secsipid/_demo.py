"""``secsipid demo``: the main job end to end on loopback.

1. make a lab PKI (root -> STI-CA -> leaf with TNAuthList SPC);
2. serve the leaf + intermediate chain over HTTP on 127.0.0.1 (an ephemeral port);
3. sign an INVITE's identity as an STI-AS would;
4. verify it as an STI-VS would: download the certificate from ``info`` (once: cached),
   validate its chain to the lab root and its TNAuthList, check the signature, the claims,
   freshness and the called/calling numbers;
5. show the verdicts a verifier gives for a tampered, a stale and a missing Identity header.
"""

from __future__ import annotations

import http.server
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._codec import b64url_decode, b64url_encode, canonical_json, loads_strict
from ._pki import make_lab_pki
from ._signer import Signer
from ._source import CertificateSource, MemoryCache
from ._trust import TrustPolicy
from ._verifier import Verdict, Verifier

ORIG, DEST = "+1 215-555-0121", "sip:+12155550131@terminating.example;user=phone"


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    hits = 0

    def do_GET(self) -> None:
        type(self).hits += 1
        if self.path != "/sti/cert.pem":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/pem-certificate-chain")
        self.send_header("Cache-Control", "max-age=3600")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def _serve(body: bytes) -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("DemoHandler", (_Handler,), {"body": body, "hits": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/sti/cert.pem", handler
    finally:
        server.shutdown()
        server.server_close()


def _show(title: str, verdict: Verdict, verbose: bool) -> None:
    if not verbose:
        return
    status = "valid" if verdict.ok else f"{verdict.sip_status} {verdict.sip_reason}"
    print(f"  {title:<28} -> {verdict.reason.value:<14} {status:<28} verstat={verdict.verstat}")


def run_demo(*, verbose: bool = True) -> int:
    def say(text: str = "") -> None:
        if verbose:
            print(text)

    with tempfile.TemporaryDirectory(prefix="secsipid-demo-") as tmp:
        pki = make_lab_pki(spc="1234")
        files = pki.write(Path(tmp))
        say(f"lab PKI in {tmp}: root, STI-CA, leaf 'SHAKEN 1234' (TNAuthList SPC 1234)")
        with _serve(files["chain"].read_bytes()) as (x5u, handler):
            say(f"certificate chain served at {x5u}")
            signer = Signer(pki.leaf_key, x5u)
            identity = signer.identity(ORIG, DEST, "A")
            say("\nSTI-AS signed (orig +1 215-555-0121 -> dest 12155550131, attest A):")
            say(f"  Identity: {identity}\n")

            # Loopback and plain http are refused by default (SSRF guard, https only); a lab
            # has to allow them.  The chain is validated up to the lab root.
            source = CertificateSource(
                trust=TrustPolicy(ca_file=str(files["root"])),
                allow_http=True,
                allow_private=True,
                memory=MemoryCache(),
            )
            verifier = Verifier(source)
            say("STI-VS verdicts:")
            checks = [
                ("the signed header", verifier.check(identity, orig_tn=ORIG, dest_tn=DEST), True),
                ("orig changed by a spoofer", verifier.check(_tamper(identity)), False),
                (
                    "replayed 10 minutes later",
                    verifier.check(identity, now=time.time() + 600),
                    False,
                ),
                ("wrong called number", verifier.check(identity, dest_tn="12155550199"), False),
                ("no Identity header", verifier.check([]), False),
            ]
            for title, verdict, _ in checks:
                _show(title, verdict, verbose)
            good = checks[0][1]
            if good.ok and good.passport is not None and verbose:
                p = good.passport
                print(f"\nverified: attest {p.attest}, orig {p.orig}, dest {p.dest}")
                print(f"origid: {p.origid}")
                print(f"certificate: {p.credential!r}, SPC {p.spc}, chain to the lab root")
                print(f"fetched {handler.hits} time(s) for {len(checks)} verifications (cached)")
    ok = all(verdict.ok == expected for _, verdict, expected in checks)
    print(("\n" if verbose else "") + "demo: " + ("OK" if ok else "FAILED"))
    return 0 if ok else 1


def _tamper(identity: str) -> str:
    """A spoofer's edit: another calling number, the original signature kept."""
    token, _, params = identity.partition(";")
    header, claims, sig = token.split(".")
    forged = loads_strict(b64url_decode(claims))
    forged["orig"] = {"tn": "12155559999"}
    return f"{header}.{b64url_encode(canonical_json(forged))}.{sig};{params}"
