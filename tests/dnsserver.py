"""A misbehaving-on-demand DNS server for the resolver tests (run as its own process).

    python dnsserver.py --zone zone.json --ready ready.txt

``zone.json`` maps a name (lower case, no trailing dot) to ``{"A": [...], "AAAA": [...],
"mode": "normal" | "hang" | "nxdomain" | "servfail", "delay": seconds, "AAAA_mode": ...,
"AAAA_delay": ...}`` (a ``TYPE_`` key applies to that query type only);
names under a ``"*.suffix"`` entry match it.  Unknown names get NXDOMAIN.  ``hang`` never
answers (the resolver must give up at its deadline).  UDP on 127.0.0.1 and an ephemeral port,
written to the ready file.  Stopped by the tests with SIGTERM (by PID).
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset


def _entry(zone: dict[str, Any], name: str) -> dict[str, Any] | None:
    if name in zone:
        entry: dict[str, Any] = zone[name]
        return entry
    for key, value in zone.items():
        if key.startswith("*.") and name.endswith(key[1:]):
            return dict(value)
    return None


def _answer(sock: socket.socket, data: bytes, peer: Any, zone: dict[str, Any]) -> None:
    try:
        query = dns.message.from_wire(data)
    except Exception:  # noqa: BLE001 - a test server ignores garbage
        return
    question = query.question[0]
    name = question.name.to_text(omit_final_dot=True).lower()
    rdtype = dns.rdatatype.to_text(question.rdtype)
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    entry = _entry(zone, name)
    if entry is None:
        response.set_rcode(dns.rcode.NXDOMAIN)
    else:
        mode = entry.get(f"{rdtype}_mode", entry.get("mode", "normal"))
        if mode == "hang":
            return
        time.sleep(float(entry.get(f"{rdtype}_delay", entry.get("delay", 0))))
        if mode == "nxdomain":
            response.set_rcode(dns.rcode.NXDOMAIN)
        elif mode == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif entry.get(rdtype):
            response.answer.append(
                dns.rrset.from_text_list(question.name, 60, "IN", rdtype, entry[rdtype])
            )
    sock.sendto(response.to_wire(), peer)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--zone", required=True)
    parser.add_argument("--ready", required=True)
    args = parser.parse_args()
    zone = json.loads(Path(args.zone).read_text())
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    Path(args.ready + ".tmp").write_text(str(sock.getsockname()[1]))
    Path(args.ready + ".tmp").rename(args.ready)
    while True:
        data, peer = sock.recvfrom(4096)
        # A thread per query: a "delay" entry must not hold up the others.
        threading.Thread(target=_answer, args=(sock, data, peer, zone), daemon=True).start()


if __name__ == "__main__":
    main()
