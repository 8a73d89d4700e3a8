#!/usr/bin/env python3
"""Mutational fuzzer for what secsipid reads from the network and from callers.

    .venv/bin/python tools/fuzz.py                          # every target, 10,000 cases each
    .venv/bin/python tools/fuzz.py --target verify --cases 100000
    .venv/bin/python tools/fuzz.py --target certificate --target crl --seed 7
    .venv/bin/python tools/fuzz.py --list                   # the targets
    .venv/bin/python tools/fuzz.py --replay verify:1234     # one case again, with its traceback
    .venv/bin/python tools/fuzz.py --save-dir fuzz-out      # write each finding's input there

Each case takes a real sample (Identity values and PASSporTs signed by a lab key, their JSON,
PEM/DER keys, certificates and chains of a lab PKI, hostile certificates from
``tests/hostile_certs.py``, TNAuthList DER, CRLs, response headers), mutates it -- bytes
(bit flips, interesting bytes, dictionary tokens, splices, repeats), text (odd Unicode), JSON
trees (overflowing numbers, deep nesting, ``crit``, type swaps) and DER trees (tags, lengths,
duplicated/removed/swapped elements, interesting INTEGER/OID/time values; certificates and
CRLs signed again by their issuer so that the mutation survives signature checks) -- and runs
the target on it.  Inputs that produce an outcome not seen before are kept and mutated further
(a small outcome-guided corpus).  Every case is reproducible from ``--seed``, the target and
its number (``--replay``).

The invariant (docs/testing.md, "Fuzzing"): every input gives a result or the package's own
exception -- ``SecSIPIDError`` subclasses (``VerificationError``, ``KeyLoadError``,
``SigningError``); for the low-level parsers their documented ``ValueError`` subclasses
(``JSONError``, ``B64Error``, ``TNAuthListError``) -- never ``internal-error``, never anything
else; each case within 1 s; every Verdict's properties and ``to_dict()`` readable and strict
JSON (``json.dumps(..., allow_nan=False)``); what a parser accepts re-encodes (canonical JSON,
TNAuthList DER) and parses back the same.  Exit status 1 when anything broke it.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import heapq
import io
import json
import logging
import random
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # the hostile-certificate kit (DER surgery, samples)

from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

import secsipid  # noqa: E402
from helpers import read_every_property  # noqa: E402
from hostile_certs import hostile_chains, hostile_crls, sign_tbs  # noqa: E402
from secsipid import (  # noqa: E402
    Credential,
    KeyLoadError,
    Reason,
    RichCallData,
    Signer,
    StaticCredential,
    TNAuthList,
    TNRange,
    TrustPolicy,
    TrustValidator,
    Verdict,
    VerificationError,
    Verifier,
    VerifyPolicy,
    b64url_decode,
    b64url_encode,
    canonical_json,
)
from secsipid._codec import B64Error, JSONError, loads_strict  # noqa: E402
from secsipid._fetch import FetchResult  # noqa: E402
from secsipid._identity import parse_identity, split_identity_values  # noqa: E402
from secsipid._passport import check_shaken_claims, claim_warnings, decode_token  # noqa: E402
from secsipid._pki import LabPKI, make_crl, make_lab_pki, pem  # noqa: E402
from secsipid._source import freshness, parse_certificate_body  # noqa: E402
from secsipid._tnauthlist import TNAuthListError  # noqa: E402

CASE_LIMIT = 1.0  # seconds: the invariant's bound for one input
# The verification time and the samples' iat, rounded down to 10 minutes (the same inputs for
# a seed within that time), so that samples are fresh and certificates valid: the lab
# certificates are valid from an hour before they are made, and a run makes them up to 50
# minutes after this import.  (Rounding to the hour made a run that crossed an hour between
# this import and the certificate target see its certificates as not yet valid.)
NOW = int(time.time()) // 600 * 600
ORIG, DEST, DIVERTED = "12155550121", "12155550131", "12155550141"
ORIGID = "123e4567-e89b-42d3-a456-426655440000"
X5U = "https://cert.example.org/sti.pem"


class InvariantError(Exception):
    """An input broke the invariant."""


# -- byte and text mutations -------------------------------------------------------------------

INTERESTING_BYTES = (
    0x00, 0x01, 0x02, 0x05, 0x0A, 0x0D, 0x20, 0x22, 0x2C, 0x2E, 0x30, 0x3B, 0x3C, 0x3E, 0x5C, 0x7F,
    0x80, 0x81, 0x82, 0x84, 0xC0, 0xFF,
)  # fmt: skip
ODD_TEXT = (
    "é", "\u00a0", "\u2028", "\ufeff", "\U0001f600", "\ud800", "\udfff", "Ｚ", "\x00", "\r\n",
    "\r\n ", "\t", "ı", "ß", "İ", "\u0301", "%00", "%2e%2e/",
)  # fmt: skip


def mutate_bytes(
    rng: random.Random, data: bytes, tokens: Sequence[bytes], others: Sequence[bytes], limit: int
) -> bytes:
    """A few stacked AFL-style edits of ``data``."""
    buf = bytearray(data)
    for _ in range(rng.choice((1, 1, 1, 2, 2, 3, 4, 8))):
        op = rng.randrange(12)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:  # flip a bit
            i = rng.randrange(len(buf))
            buf[i] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:  # an interesting byte
            buf[rng.randrange(len(buf))] = rng.choice(INTERESTING_BYTES)
        elif op == 2 and buf:  # arithmetic
            i = rng.randrange(len(buf))
            buf[i] = (buf[i] + rng.choice((-35, -2, -1, 1, 2, 35))) & 0xFF
        elif op in (3, 4):  # a dictionary token
            token = rng.choice(tokens) if tokens else b"\x00"
            if rng.random() < 0.5 or not buf:
                buf[pos:pos] = token
            else:
                buf[pos : pos + len(token)] = token
        elif op == 5 and buf:  # delete a range
            buf[pos : pos + rng.choice((1, 2, 4, 16, 64, 512))] = b""
        elif op == 6 and buf:  # duplicate a range
            start = rng.randrange(len(buf))
            chunk = buf[start : start + rng.choice((1, 4, 16, 64, 256))]
            buf[pos:pos] = chunk * rng.choice((1, 2, 8, 100))
        elif op == 7:  # random bytes
            buf[pos:pos] = rng.randbytes(rng.choice((1, 2, 4, 16)))
        elif op == 8 and others:  # splice with another sample
            other = rng.choice(others)
            buf = buf[:pos] + other[rng.randrange(len(other) + 1) :]
        elif op == 9 and buf:  # truncate
            del buf[rng.randrange(len(buf)) :]
        elif op == 10 and buf:  # swap two ranges
            a, b = sorted(rng.randrange(len(buf)) for _ in range(2))
            n = min(rng.choice((1, 4, 16)), b - a)
            buf[a : a + n], buf[b : b + n] = buf[b : b + n], buf[a : a + n]
        elif op == 11 and buf:  # overwrite with a repeated byte
            n = rng.choice((2, 8, 64))
            buf[pos : pos + n] = bytes([rng.choice(INTERESTING_BYTES)]) * n
    return bytes(buf[:limit])


def mutate_text(
    rng: random.Random, text: str, tokens: Sequence[bytes], others: Sequence[str], limit: int
) -> str:
    """Byte edits of the UTF-8 text, decoded back in one of several ways, plus odd Unicode."""
    data = mutate_bytes(
        rng,
        text.encode("utf-8", "surrogatepass"),
        tokens,
        [o.encode("utf-8", "surrogatepass") for o in others[:8]],
        limit,
    )
    how = rng.randrange(4)
    if how == 0:
        out = data.decode("latin-1")
    elif how == 1:
        out = data.decode("utf-8", "surrogateescape")
    else:
        out = data.decode("utf-8", "replace")
    if rng.random() < 0.25:
        pos = rng.randrange(len(out) + 1)
        out = out[:pos] + rng.choice(ODD_TEXT) + out[pos:]
    return out[:limit]


# -- JSON tree mutations -------------------------------------------------------------------------

JSON_KEYS = (
    "alg", "typ", "ppt", "x5u", "crit", "b64", "kid", "x5c", "jku", "attest", "dest", "iat",
    "orig", "origid", "tn", "uri", "rcd", "div", "opt", "", "\u00e9", "a" * 300,
)  # fmt: skip
RAW_JSON = (
    "1e400", "-1e400", "1E+999", "2.5e308", "NaN", "Infinity", "-0", "-0.0", "1e-400", "1" * 5000,
    "-" + "9" * 4301, "0.1", "1.0", "9007199254740993", '"\\ud800"', '"\\udc00\\ud800"',
    '"\\u0000"', '"\\/"', "[" * 40 + "]" * 40, "[" * 1000 + "]" * 1000,
    '{"a":' * 33 + "1" + "}" * 33, "true", "null", '""', "[]", "{}",
)  # fmt: skip
JSON_TOKENS = (
    *(t.encode() for t in RAW_JSON),
    b'"crit":["b64"],', b",", b":", b'"', b"\\", b"{", b"}", b"[", b"]", b"\\u", b" ",
)  # fmt: skip


def json_paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Where each node of a parsed JSON document is: ``()`` for the root, then key and index
    paths (tests/test_service_fuzz.py walks them too)."""
    found = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += json_paths(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += json_paths(value, (*path, i))
    return found


def json_get(obj: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        obj = obj[step]
    return obj


def mutate_json(rng: random.Random, data: bytes, *, extra_only: bool = False) -> bytes:
    """Parse, change one node, serialize in some style; raw tokens (overflowing numbers, lone
    surrogates, deep nesting) are spliced in as text.  ``extra_only``: only add a member with a
    hostile value to the top-level object, so that a PASSporT stays otherwise valid."""
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError):  # a corpus sample may be nested ~1000 deep
        return mutate_bytes(rng, data, JSON_TOKENS, (), 8192)
    raws: list[str] = []

    def value() -> Any:
        kind = rng.randrange(10)
        if kind < 4:
            raws.append(rng.choice(RAW_JSON))
            return f"\x00RAW{len(raws) - 1}\x00"
        return rng.choice(
            [
                0,
                -1,
                1,
                2**63,
                -(2**63) - 1,
                1.5,
                True,
                None,
                "",
                "A",
                "x" * 200,
                [],
                {},
                [ORIG],
                {"tn": ORIG},
                {"uri": "sip:a@b"},
                "Z",
                NOW,
            ]
        )

    if extra_only and isinstance(obj, dict):
        extra = rng.choice(("x", "rcd", "kid", "crit", "opt", "\u00e9", "div"))
        obj[extra] = value() if rng.random() < 0.7 else {"nam": value(), "jcd": [value(), value()]}
    for _ in range(0 if extra_only else rng.choice((1, 1, 2, 3))):
        paths = json_paths(obj)
        path = rng.choice(paths)
        op = rng.randrange(6)
        if not path:
            if op == 0:
                obj = value()
            elif isinstance(obj, dict):
                obj[rng.choice(JSON_KEYS)] = value()
            continue
        parent, last = json_get(obj, path[:-1]), path[-1]
        if op == 0:
            parent[last] = value()
        elif op == 1:
            del parent[last]
        elif op == 2 and isinstance(parent, dict):
            parent[rng.choice(JSON_KEYS)] = value()
        elif op == 3:
            depth = rng.choice((1, 2, 30, 31, 32, 33, 100))
            wrapped = parent[last]
            for _ in range(depth):
                wrapped = [wrapped] if rng.random() < 0.5 else {"a": wrapped}
            parent[last] = wrapped
        elif op == 4:
            node = parent[last]
            parent[last] = str(node) if not isinstance(node, str) else [node]
        else:
            parent[last] = rng.choice((node := parent[last], [node, node], {"tn": node}))
    style = rng.randrange(4)
    try:
        text = json.dumps(
            obj,
            separators=(",", ":") if style < 2 else (", ", ": "),
            sort_keys=style % 2 == 0,
            ensure_ascii=rng.random() < 0.3,
        )
    except RecursionError:
        return mutate_bytes(rng, data, JSON_TOKENS, (), 8192)
    for i, raw in enumerate(raws):
        text = text.replace(json.dumps(f"\x00RAW{i}\x00"), raw)
    out = text.encode("utf-8", "surrogatepass")
    if rng.random() < 0.15:
        out = mutate_bytes(rng, out, JSON_TOKENS, (), 8192)
    return out


# -- DER tree mutations --------------------------------------------------------------------------


@dataclass
class Node:
    """One DER TLV; ``children`` for constructed values and for OCTET/BIT STRINGs whose content
    parses as DER (extension values, public keys), ``value`` otherwise."""

    tag: int
    value: bytes = b""
    children: list[Node] | None = None
    prefix: bytes = b""  # a BIT STRING's unused-bits byte, kept before encapsulated content


def parse_der(data: bytes, depth: int = 0) -> list[Node] | None:
    """The TLVs filling ``data`` exactly, or None (single-byte tags, definite lengths)."""
    nodes: list[Node] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            return None
        tag, first = data[pos], data[pos + 1]
        pos += 2
        if tag & 0x1F == 0x1F:
            return None
        if first < 0x80:
            length = first
        else:
            n = first & 0x7F
            if n == 0 or n > 3 or pos + n > len(data):
                return None
            length = int.from_bytes(data[pos : pos + n], "big")
            pos += n
        if pos + length > len(data):
            return None
        content = data[pos : pos + length]
        pos += length
        node = Node(tag, content)
        if depth < 12:
            if tag & 0x20 or (
                tag == 0x04 and content[:1] in (b"\x30", b"\x03", b"\x04", b"\x02", b"\x16")
            ):
                node.children = parse_der(content, depth + 1)
            elif tag == 0x03 and content[:1] == b"\x00" and content[1:2] == b"\x30":
                node.children = parse_der(content[1:], depth + 1)
                node.prefix = b"\x00"
        nodes.append(node)
    return nodes


def _der_len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def encode_der(nodes: Sequence[Node]) -> bytes:
    out = bytearray()
    for node in nodes:
        content = (
            node.prefix + encode_der(node.children) if node.children is not None else node.value
        )
        out += bytes([node.tag]) + _der_len(len(content)) + content
    return bytes(out)


DER_VALUES: dict[int, tuple[bytes, ...]] = {
    0x01: (b"", b"\x00", b"\x01", b"\xff", b"\xff\xff"),  # BOOLEAN (non-DER TRUE, bad length)
    0x02: (
        b"",
        b"\x00",
        b"\xff",
        b"\x00\x01",
        b"\x80",
        b"\x7f" + b"\xff" * 40,
        b"\xff" * 9,
        b"\x00" * 30 + b"\x01",
    ),
    0x06: (
        b"",
        b"\x80",
        b"\x2a\x86",
        b"\x2b\x06\x01\x05\x05\x07\x01\x1a",
        b"\x55\x1d\x0f",
        b"\x2a" + b"\xff" * 20 + b"\x01",
        b"\x06\x03\x55\x1d\x13",
    ),
    0x17: (
        b"991231235959Z",
        b"500101000000Z",
        b"000000000000Z",
        b"2401011200Z",
        b"",
        b"991331235959Z",
        b"491231235959+0100",
    ),
    0x18: (
        b"20500101000000Z",
        b"99991231235959Z",
        b"00000101000000Z",
        b"20240101120000.5Z",
        b"2024010112Z",
    ),
    0x0C: (b"", b"\xff\xfe", b"\xed\xa0\x80", "é".encode(), b"a" * 300),
    0x13: (b"", b"*", b"\x00", b"a" * 200),
    0x16: (b"", b"1234", b"\x80", b"0" * 16, b"#*", b"SHAKEN"),
}
DER_TAGS = (
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1A, 0x1B,
    0x1C, 0x1E, 0x30, 0x31, 0x80, 0x81, 0x82, 0xA0, 0xA1, 0xA2, 0xA3, 0xA4,
)  # fmt: skip
DER_TOKENS = (
    b"\x30\x00", b"\x30\x80", b"\x05\x00", b"\x02\x01\x00", b"\x81\x01", b"\x84\xff\xff",
    b"\xa3\x00", b"\x06\x00", b"\x04\x00", b"\x01\x01\x00", b"\x00\x00",
)  # fmt: skip


def _flatten(nodes: list[Node]) -> list[tuple[list[Node], int]]:
    """Every node as (its sibling list, its index), for in-place edits."""
    found: list[tuple[list[Node], int]] = []
    for i, node in enumerate(nodes):
        found.append((nodes, i))
        if node.children is not None:
            found += _flatten(node.children)
    return found


def mutate_der_nodes(rng: random.Random, nodes: list[Node], donors: Sequence[Node]) -> None:
    """Change a few nodes of the tree in place."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        spots = _flatten(nodes)
        if not spots:
            return
        siblings, i = rng.choice(spots)
        node = siblings[i]
        op = rng.randrange(11)
        if op == 0:  # an interesting value for its type, or random bytes
            choices = DER_VALUES.get(node.tag)
            node.children = None
            node.value = (
                rng.choice(choices)
                if choices and rng.random() < 0.8
                else (rng.randbytes(rng.choice((0, 1, 3, 8, 40))))
            )
        elif op == 1:  # another tag
            node.tag = rng.choice(DER_TAGS)
        elif op == 2 and len(siblings) > 1:  # remove
            del siblings[i]
        elif op == 3:  # duplicate
            siblings.insert(i, _copy(node))
        elif op == 4 and len(siblings) > 1:  # swap with a sibling
            j = rng.randrange(len(siblings))
            siblings[i], siblings[j] = siblings[j], siblings[i]
        elif op == 5 and donors:  # a node of another sample in its place
            siblings[i] = _copy(rng.choice(donors))
        elif op == 6 and donors:  # insert a node of another sample
            siblings.insert(i, _copy(rng.choice(donors)))
        elif op == 7 and node.children is None:  # truncate or extend the value
            node.value = (
                node.value[: rng.randrange(len(node.value) + 1)]
                if rng.random() < 0.5
                else (node.value + rng.randbytes(rng.choice((1, 2, 100))))
            )
        elif op == 8:  # wrap in SEQUENCEs / context tags
            wrapped = node
            for _ in range(rng.choice((1, 2, 40))):
                wrapped = Node(rng.choice((0x30, 0xA0, 0x31)), children=[wrapped])
            siblings[i] = wrapped
        elif op == 9 and node.children is not None:  # garbage instead of the encapsulated DER
            node.children = None
            node.value = node.prefix + rng.randbytes(rng.choice((1, 4, 20)))
        elif op == 10 and node.children is not None and node.children:  # drop all but one child
            node.children = [rng.choice(node.children)]


def _copy(node: Node) -> Node:
    return Node(
        node.tag,
        node.value,
        None if node.children is None else [_copy(c) for c in node.children],
        node.prefix,
    )


def mutate_der(rng: random.Random, der: bytes, donors: Sequence[Node]) -> bytes:
    nodes = parse_der(der)
    if nodes is None:
        return mutate_bytes(rng, der, DER_TOKENS, (), 1 << 16)
    mutate_der_nodes(rng, nodes, donors)
    out = encode_der(nodes)
    if rng.random() < 0.1:
        out = mutate_bytes(rng, out, DER_TOKENS, (), 1 << 16)
    return out


def pem_block(der: bytes, label: str = "CERTIFICATE") -> bytes:
    b64 = base64.b64encode(der)
    lines = b"\n".join(b64[i : i + 64] for i in range(0, len(b64), 64))
    return (
        b"-----BEGIN "
        + label.encode()
        + b"-----\n"
        + lines
        + b"\n-----END "
        + label.encode()
        + b"-----\n"
    )


def _signed_tbs(
    rng: random.Random, der: bytes, key: ec.EllipticCurvePrivateKey, donors: Sequence[Node]
) -> bytes:
    """Mutate the TBS part of a certificate/CRL and sign it again with ``key`` (mostly), so that
    the mutation reaches what comes after the signature check."""
    nodes = parse_der(der)
    if nodes is None or len(nodes) != 1 or not nodes[0].children:
        return mutate_bytes(rng, der, DER_TOKENS, (), 1 << 16)
    tbs = nodes[0].children[0]
    mutate_der_nodes(rng, [tbs], donors)
    tbs_der = encode_der([tbs])
    if rng.random() < 0.85:
        return sign_tbs(tbs_der, key)
    nodes[0].children[0] = parse_der(tbs_der)[0]  # type: ignore[index]
    return encode_der(nodes)


# -- the samples -----------------------------------------------------------------------------------


class Kit:
    """Everything the targets need, built once: a lab PKI, keys, signed samples, verifiers."""

    def __init__(self) -> None:
        # Internal errors show in verdicts: keep their log lines quiet while the kit lives
        # (close() restores the level, so that tests run after it still see the logs).
        self._log_level = logging.getLogger("secsipid").level
        logging.getLogger("secsipid").setLevel(logging.CRITICAL)
        self.tmp = Path(tempfile.mkdtemp(prefix="secsipid-fuzz-"))
        self.pki: LabPKI = make_lab_pki(
            spc="1234", tns=("12155550121",), ranges=(("1215555", 100),)
        )
        self.lab = make_lab_pki(
            root=(self.pki.root_key, self.pki.root), crl_url="http://127.0.0.1/i.crl"
        )
        self.root_file = self.tmp / "root.pem"
        self.root_file.write_bytes(pem(self.pki.root))
        self.key = self.pki.leaf_key
        self.signer = Signer(self.key, X5U)
        self.identities = self._identities()
        self.tokens = [
            part.split(";", 1)[0] for value in self.identities for part in value.split(",")
        ]
        self.json_docs = sorted(
            {b64url_decode(part) for t in self.tokens for part in t.split(".")[:2]}
        )
        self.trust = TrustValidator(TrustPolicy(ca_file=str(self.root_file)))
        self.verifiers = [
            Verifier(self.key.public_key()),
            Verifier(self.key.public_key(), policy=VerifyPolicy(strict=True)),
            Verifier(
                Credential.from_certificates([self.pki.leaf, self.pki.intermediate]),
                trust=self.trust,
            ),
        ]
        self.loop = asyncio.new_event_loop()
        self.cert_ders = [
            c.public_bytes(serialization.Encoding.DER)
            for c in (self.pki.leaf, self.pki.intermediate, self.pki.root)
        ]
        self.hostile = hostile_chains(self.pki)
        self.der_donors = [
            n
            for d in self.cert_ders + [h.leaf for h in self.hostile.values()]
            for n in _flatten_nodes(parse_der(d) or [])
        ]
        self.credential_samples = self._credential_samples()
        self.tnauth_samples = [
            TNAuthList(spcs=("1234",)).to_der(),
            TNAuthList(spcs=("818H",), tns=("12155550121", "#1*")).to_der(),
            TNAuthList(ranges=(TNRange("12155550000", 100), TNRange("1", 2))).to_der(),
            TNAuthList(spcs=("1", "2"), ranges=(TNRange("0" * 15, 2**40),)).to_der(),
        ]
        self.crls = [
            make_crl(
                self.lab.intermediate, self.lab.intermediate_key, [1, self.lab.leaf.serial_number]
            ).public_bytes(serialization.Encoding.DER),
            make_crl(self.lab.intermediate, self.lab.intermediate_key).public_bytes(
                serialization.Encoding.DER
            ),
            *hostile_crls(self.lab.intermediate, self.lab.intermediate_key).values(),
        ]
        self.lab_credential = Credential.from_certificates([self.lab.leaf, self.lab.intermediate])
        self.crl_policies = [
            TrustPolicy(ca_file=str(self.root_file), fetch_crls=True, require_crl=r)
            for r in (False, True)
        ]
        self.headers = [
            {"cache-control": "max-age=600"},
            {"cache-control": "no-store, s-maxage=5"},
            {"expires": "Wed, 21 Oct 2015 07:28:00 GMT", "date": "Wed, 21 Oct 2015 07:00:00 GMT"},
            {"cache-control": 'max-age="60", no-cache'},
            {},
        ]

    def _identities(self) -> list[str]:
        s = self.signer
        values = [
            s.identity(ORIG, DEST, "A", ORIGID, iat=NOW),
            s.identity("+1 215 555 0121", [DEST, "12155550132"], "C", iat=NOW),
            s.sign_claims(
                {
                    "attest": "B",
                    "dest": {"uri": ["sip:bob@example.org"]},
                    "iat": NOW,
                    "orig": {"uri": "sip:alice@example.org"},
                    "origid": ORIGID,
                    "rcd": {"nam": "Alice", "jcd": ["vcard", [["version", {}, "text", "4.0"]]]},
                }
            )
            + f";info=<{X5U}>;alg=ES256;ppt=shaken",
            s.identity(ORIG, DEST, "A", ORIGID, iat=NOW).replace(";alg=ES256;ppt=shaken", ""),
            s.identity(ORIG, DEST, "B", iat=NOW)
            .replace(";info=<", ' ; INFO = "<')
            .replace(">;alg", '>";alg'),
            # RFC 9795 rcd: in the SHAKEN PASSporT, and as a PASSporT of its own
            s.identity(ORIG, DEST, "A", ORIGID, iat=NOW, rcd=RichCallData(nam="Alice", crn="x")),
            s.rcd_identity(
                ORIG, DEST, RichCallData(nam="Bob", jcl="https://rcd.example/c.json"), iat=NOW
            ),
            # RFC 8946 div: a call from ORIG to DEST, retargeted to DIVERTED, as one request
            s.identity(ORIG, DEST, "A", ORIGID, iat=NOW)
            + ","
            + s.div_identity(ORIG, DIVERTED, DEST, iat=NOW),
        ]
        return values

    def _credential_samples(self) -> list[bytes]:
        enc, fmt = serialization.Encoding, serialization.PrivateFormat
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        key = self.key
        return [
            pem(self.pki.leaf),
            self.pki.chain_pem,
            self.cert_ders[0],
            key.public_key().public_bytes(enc.PEM, spki),
            key.public_key().public_bytes(enc.DER, spki),
            key.private_bytes(enc.PEM, fmt.PKCS8, serialization.NoEncryption()),
            key.private_bytes(enc.PEM, fmt.TraditionalOpenSSL, serialization.NoEncryption()),
            key.private_bytes(enc.DER, fmt.PKCS8, serialization.NoEncryption()),
            *(h.chain_pem for h in self.hostile.values()),
        ]

    def close(self) -> None:
        logging.getLogger("secsipid").setLevel(self._log_level)
        self.loop.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _flatten_nodes(nodes: list[Node]) -> list[Node]:
    out: list[Node] = []
    for node in nodes:
        out.append(node)
        if node.children is not None:
            out += _flatten_nodes(node.children)
    return out


# -- invariants ------------------------------------------------------------------------------------


def check_verdict(verdict: Verdict) -> str:
    """Raise InvariantError unless the verdict is an honest outcome whose every property (and
    those of the passports and credentials it holds) reads and whose to_dict() is strict
    JSON; return its reason code."""
    if not isinstance(verdict, Verdict):
        raise InvariantError(f"not a Verdict: {verdict!r}")
    if verdict.reason is Reason.INTERNAL_ERROR:
        raise InvariantError(f"internal-error: {verdict.message}")
    read_every_property(verdict)
    json.dumps(verdict.to_dict(), allow_nan=False)
    if bool(verdict) != (verdict.reason is Reason.VALID):
        raise InvariantError("truthiness disagrees with the reason")
    return verdict.reason.value


# -- targets -------------------------------------------------------------------------------------


@dataclass
class Target:
    name: str
    description: str
    samples: Callable[[Kit], list[Any]]
    mutate: Callable[[random.Random, Any, Kit, Sequence[Any]], Any]
    run: Callable[[Any, Kit, random.Random], str]  # returns an outcome label


IDENTITY_TOKENS = (
    b";", b"=", b"<", b">", b'"', b"\\", b",", b";info=", b";alg=", b";ppt=",
    b"info=<https://a/b>", b"Identity:", b"y:", b"\r\n", b"  ", b"..", b'="', b';ppt="shaken"',
    b"<<", b";info=<" + b"x" * 5000 + b">",
)  # fmt: skip


def _identity_mutate(rng: random.Random, value: Any, kit: Kit, corpus: Sequence[Any]) -> Any:
    if isinstance(value, list):  # a request of several header lines, from the corpus
        value = ",".join(value)
    out = mutate_text(rng, value, IDENTITY_TOKENS, kit.identities, 20000)
    if rng.random() < 0.1:
        return [out, rng.choice(kit.identities)] if rng.random() < 0.5 else out + "," + out
    return out


def _run_identity(value: Any, kit: Kit, rng: random.Random) -> str:
    try:
        values = split_identity_values(value)
    except TypeError as exc:  # only for non-str input, which the mutators never produce
        raise InvariantError(f"TypeError for str input: {exc}") from exc
    outcomes = []
    for one in values[:20]:
        try:
            hdr = parse_identity(one)
        except VerificationError as exc:
            outcomes.append(exc.code)
            continue
        hdr.info, hdr.alg, hdr.ppt, hdr.compact, repr(hdr)
        outcomes.append("parsed")
    return ",".join(sorted(set(outcomes))) or "empty"


def _token_mutate(rng: random.Random, token: str, kit: Kit, corpus: Sequence[Any]) -> str:
    parts = token.split(".")
    if len(parts) != 3 or rng.random() < 0.3:
        return mutate_text(
            rng, token, (b".", b"=", b"+", b"/", b"-", b"_", b" "), kit.tokens, 12000
        )
    which = rng.randrange(4)
    if which < 2:
        try:
            doc = b64url_decode(parts[which])
        except B64Error:
            doc = parts[which].encode()
        parts[which] = b64url_encode(mutate_json(rng, doc))
    elif which == 2:
        parts[2] = b64url_encode(rng.randbytes(rng.choice((64, 64, 63, 65, 0, 72))))
    else:
        parts = rng.choice(
            (parts[:2], [*parts, "x"], ["", parts[1], parts[2]], [parts[0], "", parts[2]])
        )
    return ".".join(parts)


def _run_token(token: str, kit: Kit, rng: random.Random) -> str:
    try:
        decoded = decode_token(token)
    except VerificationError as exc:
        return exc.code
    canonical_json(decoded.header)
    canonical_json(decoded.claims)
    claim_warnings(decoded)
    try:
        check_shaken_claims(decoded.claims)
    except VerificationError as exc:
        return "decoded/" + exc.code
    return "decoded"


def _verify_mutate(rng: random.Random, value: Any, kit: Kit, corpus: Sequence[Any]) -> Any:
    if isinstance(value, list):
        value = ",".join(value)
    token, sep, params = value.partition(";")
    choice = rng.randrange(10)
    if choice < 5:  # mutate header or claims, then sign again: the signature verifies
        parts = token.split(".")
        if len(parts) == 3:
            which = rng.randrange(2)
            try:
                doc = b64url_decode(parts[which])
            except B64Error:
                doc = b"{}"
            parts[which] = b64url_encode(mutate_json(rng, doc, extra_only=choice < 3))
            signing_input = (parts[0] + "." + parts[1]).encode()
            sig = kit.key.sign(signing_input, ec.ECDSA(hashes.SHA256()))
            r, s = _decode_dss(sig)
            parts[2] = b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
            token = ".".join(parts)
    elif choice < 7:
        token = _token_mutate(rng, token, kit, corpus)
    elif choice < 9:
        params = mutate_text(
            rng, params, IDENTITY_TOKENS, [v.partition(";")[2] for v in kit.identities], 9000
        )
    else:
        return _identity_mutate(rng, value, kit, corpus)
    return token + sep + params


def _decode_dss(sig: bytes) -> tuple[int, int]:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    return decode_dss_signature(sig)


def _run_verify(value: Any, kit: Kit, rng: random.Random) -> str:
    verifier = rng.choice(kit.verifiers)
    kwargs: dict[str, Any] = {"now": NOW}
    if rng.random() < 0.3:
        kwargs.update(
            orig_tn=rng.choice((ORIG, "sip:+12155550121@x", "")), dest_tn=[DEST, "tel:+1"]
        )
    if rng.random() < 0.1:
        verdict = kit.loop.run_until_complete(verifier.acheck(value, **kwargs))
    else:
        verdict = verifier.check(value, **kwargs)
    reason = check_verdict(verdict)
    if isinstance(value, str) and rng.random() < 0.2:
        try:
            verifier.verify(value, **kwargs)
        except VerificationError as exc:
            if exc.reason is Reason.INTERNAL_ERROR:
                raise InvariantError(f"verify: internal-error {exc.message}") from exc
    return reason


def _json_mutate(rng: random.Random, doc: bytes, kit: Kit, corpus: Sequence[Any]) -> bytes:
    if rng.random() < 0.6:
        return mutate_json(rng, doc)
    return mutate_bytes(rng, doc, JSON_TOKENS, kit.json_docs, 10000)


def _run_json(doc: bytes, kit: Kit, rng: random.Random) -> str:
    try:
        obj = loads_strict(doc)
    except JSONError:
        return "refused"
    data = canonical_json(obj)  # what a parser accepts must be writable as strict JSON ...
    json.dumps(obj, allow_nan=False, indent=2)
    if loads_strict(data) != obj:  # ... and read back the same
        raise InvariantError("canonical JSON does not parse back to the same value")
    return "parsed/" + type(obj).__name__


def _credential_mutate(rng: random.Random, data: bytes, kit: Kit, corpus: Sequence[Any]) -> bytes:
    choice = rng.randrange(10)
    if b"-----BEGIN" in data and choice < 6:
        # mutate the DER inside the PEM armour (the blocks of a chain joined into one)
        lines = data.split(b"\n")
        body = b"".join(line for line in lines if line and not line.startswith(b"-----"))
        try:
            der = base64.b64decode(body)
        except ValueError:
            return mutate_bytes(
                rng, data, (*DER_TOKENS, b"-----BEGIN CERTIFICATE-----\n"), (), 1 << 16
            )
        label = data.split(b"-----BEGIN ", 1)[1].split(b"-----", 1)[0].decode("latin-1")
        return pem_block(mutate_der(rng, der, kit.der_donors), label)
    if choice < 8:
        return mutate_der(rng, data, kit.der_donors)
    return mutate_bytes(
        rng,
        data,
        (
            *DER_TOKENS,
            b"-----BEGIN CERTIFICATE-----\n",
            b"-----END CERTIFICATE-----\n",
            b"-----BEGIN PUBLIC KEY-----\n",
        ),
        kit.credential_samples,
        1 << 16,
    )


def _run_credential(data: bytes, kit: Kit, rng: random.Random) -> str:
    outcome = []
    try:
        credential = secsipid.load_credential(data)
    except KeyLoadError as exc:
        outcome.append(exc.code)
    else:
        repr(credential), credential.spc, credential.tnauthlist
        outcome.append("credential")
    try:
        secsipid.load_private_key(data)
    except KeyLoadError as exc:
        outcome.append(exc.code)
    else:
        outcome.append("private-key")
    return "/".join(outcome)


def _certificate_mutate(
    rng: random.Random, sample: tuple[bytes, bytes], kit: Kit, corpus: Sequence[Any]
) -> tuple[bytes, bytes]:
    leaf, inter = sample
    if rng.random() < 0.75:
        leaf = _signed_tbs(rng, leaf, kit.pki.intermediate_key, kit.der_donors)
    else:
        inter = _signed_tbs(rng, inter, kit.pki.root_key, kit.der_donors)
    return leaf, inter


def _run_certificate(sample: tuple[bytes, bytes], kit: Kit, rng: random.Random) -> str:
    leaf, inter = sample
    body = leaf if rng.random() < 0.15 else pem_block(leaf) + pem_block(inter)
    try:
        credential, normalized = parse_certificate_body(body, X5U)
    except VerificationError as exc:
        return "body/" + exc.code
    repr(credential), credential.spc
    parse_certificate_body(normalized, X5U)  # the normalized form (the disk cache) loads again
    identity = kit.identities[0]
    verifier = Verifier(StaticCredential(credential), trust=kit.trust)
    return "check/" + check_verdict(verifier.check(identity, now=NOW))


def _tnauth_mutate(rng: random.Random, der: bytes, kit: Kit, corpus: Sequence[Any]) -> bytes:
    if rng.random() < 0.7:
        return mutate_der(rng, der, [])
    return mutate_bytes(
        rng, der, (*DER_TOKENS, b"\xa0\x06\x16\x04", b"\xa2\x03\x16\x01"), kit.tnauth_samples, 4096
    )


def _run_tnauth(der: bytes, kit: Kit, rng: random.Random) -> str:
    try:
        tnauth = TNAuthList.from_der(der)
    except TNAuthListError:
        return "refused"
    again = TNAuthList.from_der(tnauth.to_der())
    if again != tnauth:
        raise InvariantError("TNAuthList does not round-trip through to_der")
    tnauth.covers(ORIG), tnauth.spc, tnauth.lists_numbers
    return "parsed"


class _FakeFetcher:
    """Serves one CRL body for every URL (what a hostile distribution point can answer)."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def get(self, url: str, *, allow_http: bool | None = None) -> FetchResult:
        return FetchResult(url, 200, {}, self.body, time.time())


def _crl_mutate(rng: random.Random, der: bytes, kit: Kit, corpus: Sequence[Any]) -> bytes:
    if rng.random() < 0.8:
        return _signed_tbs(rng, der, kit.lab.intermediate_key, kit.der_donors)
    return mutate_bytes(rng, der, DER_TOKENS, kit.crls, 1 << 16)


def _run_crl(der: bytes, kit: Kit, rng: random.Random) -> str:
    body = der if rng.random() < 0.7 else pem_block(der, "X509 CRL")
    validator = TrustValidator(rng.choice(kit.crl_policies), _FakeFetcher(body))  # type: ignore[arg-type]
    verifier = Verifier(StaticCredential(kit.lab_credential), trust=validator)
    value = Signer(kit.lab.leaf_key, X5U).identity(ORIG, DEST, "A", iat=int(time.time()))
    return check_verdict(verifier.check(value))


def _cli_mutate(rng: random.Random, value: str, kit: Kit, corpus: Sequence[Any]) -> str:
    if rng.random() < 0.5:
        token, sep, params = value.partition(";")
        return _token_mutate(rng, token, kit, corpus) + sep + params
    out = _identity_mutate(rng, value, kit, corpus)
    return out if isinstance(out, str) else ",".join(out)


def _run_cli(value: str, kit: Kit, rng: random.Random) -> str:
    from secsipid.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(["decode", "--", value])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 2
    if status == 2 and "no Identity value given" in err.getvalue():
        return "usage:no-value"
    if status not in (0, 1) or err.getvalue():
        raise InvariantError(f"decode exit {status}, stderr {err.getvalue()[-300:]!r}")

    def refuse(name: str) -> Any:
        raise InvariantError(f"{name} in decode output")

    # One JSON document per line (JSON Lines: split on "\n" only; str.splitlines() would also
    # split on U+2028 or U+0085, which JSON strings may hold unescaped).
    for line in out.getvalue().rstrip("\n").split("\n"):
        json.loads(line, parse_constant=refuse)
    return f"exit{status}"


def _headers_mutate(
    rng: random.Random, headers: dict[str, str], kit: Kit, corpus: Sequence[Any]
) -> dict[str, str]:
    out = dict(headers)
    name = rng.choice(("cache-control", "expires", "date"))
    base = out.get(name, rng.choice(("max-age=60", "Wed, 21 Oct 2015 07:28:00 GMT", "no-cache")))
    tokens = (
        b"max-age=",
        b"s-maxage=",
        b"no-store",
        b",",
        b"=",
        b'"',
        b"1e400",
        b"-1",
        b"9" * 30,
        b"GMT",
        b"+0000",
        b"99999",
        b"Feb 30",
        b"0000",
    )
    out[name] = mutate_text(rng, base, tokens, [], 300)
    return out


def _run_headers(headers: dict[str, str], kit: Kit, rng: random.Random) -> str:
    ttl, storable = freshness(headers, float(NOW), 3600.0)
    if not (ttl >= 0) or ttl != ttl:
        raise InvariantError(f"freshness gave {ttl!r}")
    return f"storable={storable}"


TARGETS: dict[str, Target] = {
    t.name: t
    for t in (
        Target(
            "identity",
            "Identity header values: split_identity_values + parse_identity",
            lambda kit: kit.identities,
            _identity_mutate,
            _run_identity,
        ),
        Target(
            "token",
            "PASSporT decoding: decode_token, claim checks, warnings",
            lambda kit: kit.tokens,
            _token_mutate,
            _run_token,
        ),
        Target(
            "json",
            "strict JSON parsing (loads_strict) and canonical re-encoding",
            lambda kit: kit.json_docs,
            _json_mutate,
            _run_json,
        ),
        Target(
            "verify",
            "Verifier.check/acheck/verify with a static key, a strict policy, and "
            "a certificate under a TrustPolicy; mutated claims are signed again",
            lambda kit: kit.identities,
            _verify_mutate,
            _run_verify,
        ),
        Target(
            "credential",
            "load_credential and load_private_key on PEM/DER keys, certificates and chains",
            lambda kit: kit.credential_samples,
            _credential_mutate,
            _run_credential,
        ),
        Target(
            "certificate",
            "parse_certificate_body + Verifier with a TrustPolicy (lab root); "
            "mutated certificates are signed again by their issuer",
            lambda kit: (
                [(h.leaf, h.intermediate) for h in kit.hostile.values()]
                + [(kit.cert_ders[0], kit.cert_ders[1])] * 8
            ),
            _certificate_mutate,
            _run_certificate,
        ),
        Target(
            "tnauthlist",
            "TNAuthList.from_der (and its DER round trip)",
            lambda kit: kit.tnauth_samples,
            _tnauth_mutate,
            _run_tnauth,
        ),
        Target(
            "crl",
            "CRLs from a distribution point through TrustValidator (fetch_crls); "
            "mutated CRLs are signed again by the intermediate",
            lambda kit: kit.crls,
            _crl_mutate,
            _run_crl,
        ),
        Target(
            "cli-decode",
            "the CLI's decode command in-process: exit 0/1, strict JSON out",
            lambda kit: kit.identities,
            _cli_mutate,
            _run_cli,
        ),
        Target(
            "headers",
            "certificate response caching headers (freshness)",
            lambda kit: kit.headers,
            _headers_mutate,
            _run_headers,
        ),
    )
}

# -- the driver ------------------------------------------------------------------------------------


@dataclass
class Report:
    target: str
    cases: int = 0
    seconds: float = 0.0
    max_case: float = 0.0
    slowest: int = -1
    outcomes: Counter[str] = field(default_factory=Counter)
    slow: list[tuple[float, int]] = field(default_factory=list)  # the 5 slowest (seconds, case)
    retimed: int = 0  # cases over the limit once, timed again
    findings: list[tuple[int, str, Any]] = field(default_factory=list)  # (case, what, input)

    def summary(self) -> str:
        top = ", ".join(f"{k} {v}" for k, v in self.outcomes.most_common(6))
        return (
            f"{self.target:12} {self.cases:8d} cases {self.seconds:7.1f} s "
            f"({self.cases / max(self.seconds, 1e-9):7.0f}/s)  "
            f"max case {self.max_case * 1000:7.1f} ms (#{self.slowest})  "
            f"findings {len(self.findings)}  retimed {self.retimed}  "
            f"outcomes {len(self.outcomes)}: {top}"
        )


def _case_rng(seed: int, target: str, case: int) -> random.Random:
    return random.Random(f"{seed}/{target}/{case}")


def _input_for(target: Target, kit: Kit, rng: random.Random, corpus: list[Any]) -> Any:
    pool = corpus if corpus and rng.random() < 0.5 else target.samples(kit)
    return target.mutate(rng, rng.choice(pool), kit, corpus)


def run_target(
    name: str,
    cases: int,
    *,
    seed: int = 1,
    kit: Kit | None = None,
    time_limit: float | None = None,
    corpus_max: int = 256,
) -> Report:
    """Run ``cases`` cases of one target; a report with the counts and any findings."""
    target = TARGETS[name]
    kit = kit or Kit()
    report = Report(name)
    corpus: list[Any] = []
    seen: set[str] = set()
    started = time.perf_counter()
    with warnings.catch_warnings():
        # cryptography warns (once per place, on stderr) about odd certificates, e.g. a country
        # name that is not 2 characters: a message, not an error, unless warnings are errors.
        warnings.simplefilter("ignore", UserWarning)
        _run_cases(target, kit, report, corpus, seen, seed, cases, started, time_limit, corpus_max)
    report.seconds = time.perf_counter() - started
    return report


def _run_cases(
    target: Target,
    kit: Kit,
    report: Report,
    corpus: list[Any],
    seen: set[str],
    seed: int,
    cases: int,
    started: float,
    time_limit: float | None,
    corpus_max: int,
) -> None:
    name = target.name
    for case in range(cases):
        if time_limit is not None and time.perf_counter() - started > time_limit:
            break
        rng = _case_rng(seed, name, case)
        data = _input_for(target, kit, rng, corpus)
        state = rng.getstate()
        t0 = time.perf_counter()
        try:
            outcome = target.run(data, kit, rng)
        except InvariantError as exc:
            report.findings.append((case, str(exc), data))
            outcome = "FINDING"
        except Exception as exc:  # noqa: BLE001 - anything else is what we are looking for
            where = traceback.extract_tb(exc.__traceback__)[-1]
            report.findings.append(
                (
                    case,
                    f"{type(exc).__name__}: {str(exc)[:200]} at {where.filename}:{where.lineno}",
                    data,
                )
            )
            outcome = "FINDING"
        elapsed = time.perf_counter() - t0
        if elapsed > CASE_LIMIT:
            # Time it again: on a shared machine a process can lose the CPU for seconds; only
            # an input that is slow twice is a finding.
            elapsed = min(elapsed, _time_run(target, data, kit, state))
            report.retimed += 1
        if elapsed > report.max_case:
            report.max_case, report.slowest = elapsed, case
        if len(report.slow) < 5 or elapsed > report.slow[0][0]:
            heapq.heappush(report.slow, (elapsed, case))
            if len(report.slow) > 5:
                heapq.heappop(report.slow)
        if elapsed > CASE_LIMIT:
            report.findings.append((case, f"slow: {elapsed:.2f} s", data))
        report.cases += 1
        label = outcome.split(":", 1)[0]
        report.outcomes[label] += 1
        if label not in seen and outcome != "FINDING":
            seen.add(label)
            corpus.append(data)
            if len(corpus) > corpus_max:
                del corpus[rng.randrange(len(corpus))]


def _time_run(target: Target, data: Any, kit: Kit, state: Any) -> float:
    rng = random.Random()
    rng.setstate(state)
    t0 = time.perf_counter()
    with contextlib.suppress(Exception):
        target.run(data, kit, rng)
    return time.perf_counter() - t0


def replay(name: str, case: int, seed: int, kit: Kit) -> None:
    """Rebuild one case (the corpus is rebuilt by running the cases before it) and run it with
    the full traceback."""
    target = TARGETS[name]
    corpus: list[Any] = []
    seen: set[str] = set()
    for i in range(case + 1):
        rng = _case_rng(seed, name, i)
        data = _input_for(target, kit, rng, corpus)
        if i == case:
            print(f"input ({_size(data)} bytes): {data!r}"[:4000])
            state = rng.getstate()
            for _ in range(3):
                again = random.Random()
                again.setstate(state)
                t0 = time.perf_counter()
                outcome = target.run(data, kit, again)
                print(f"outcome: {outcome} in {(time.perf_counter() - t0) * 1000:.1f} ms")
            return
        try:
            label = target.run(data, kit, rng).split(":", 1)[0]
        except Exception:  # noqa: BLE001 - replay only needs the corpus, not the outcome
            continue
        if label not in seen:
            seen.add(label)
            corpus.append(data)


def _size(data: Any) -> int:
    if isinstance(data, bytes | str):
        return len(data)
    if isinstance(data, tuple | list):
        return sum(_size(d) for d in data)
    return len(repr(data))


def _save(directory: Path, report: Report) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for case, what, data in report.findings:
        stem = directory / f"{report.target}-{case}"
        raw = data if isinstance(data, bytes) else repr(data).encode("utf-8", "surrogatepass")
        stem.with_suffix(".input").write_bytes(raw)
        stem.with_suffix(".txt").write_text(f"{report.target} case {case}: {what}\n")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument(
        "--target", action="append", choices=sorted(TARGETS), help="repeatable; default: all"
    )
    parser.add_argument(
        "--cases", type=int, default=10_000, help="cases per target (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, help="seconds per target (stop early)")
    parser.add_argument("--save-dir", type=Path, help="write each finding's input and message here")
    parser.add_argument(
        "--replay", metavar="TARGET:CASE", help="run one case again, with its traceback"
    )
    parser.add_argument("--list", action="store_true", help="list the targets")
    parser.add_argument("--verbose", action="store_true", help="also list the slowest cases")
    args = parser.parse_args(argv)
    if args.list:
        for t in TARGETS.values():
            print(f"{t.name:12} {t.description}")
        return 0
    kit = Kit()
    try:
        if args.replay:
            name, _, case = args.replay.partition(":")
            replay(name, int(case), args.seed, kit)
            return 0
        failed = False
        for name in args.target or list(TARGETS):
            report = run_target(
                name, args.cases, seed=args.seed, kit=kit, time_limit=args.time_limit
            )
            print(report.summary(), flush=True)
            if args.verbose:
                slow = sorted(report.slow, reverse=True)
                print("  slowest: " + ", ".join(f"#{c} {t * 1000:.1f} ms" for t, c in slow))
            for case, what, data in report.findings[:10]:
                print(f"  case {case}: {what}\n    input {data!r}"[:600], flush=True)
            if args.save_dir and report.findings:
                _save(args.save_dir, report)
            failed = failed or bool(report.findings)
        return 1 if failed else 0
    finally:
        kit.close()


if __name__ == "__main__":
    sys.exit(main())
