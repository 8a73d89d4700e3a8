"""``secsipid sx``: secsipidx's command line, so that scripts written for it keep working.

secsipidx (the CLI of libsecsipid, the Go library behind Kamailio's native ``secsipid``
module) parses its flags with Go's ``flag`` package: ``-name value``, ``-name=value``,
``--name value``, boolean flags alone, parsing stops at the first argument that is not a
flag.  Its modes and exit statuses, reproduced here:

* ``-check``/``-c``: verify ``-identity``/``-fidentity`` with ``-fpubkey``/``-p`` (a file, a
  ``file://`` URL or an ``http(s)://`` URL); prints ``ok`` or ``error message: ...`` then
  ``not-ok``; the exit status is libsecsipid's return code modulo 256 (0 valid, e.g. -251 ->
  5, -232 -> 24).  ``-expire`` defaults to 0, as in secsipidx.
* ``-sign-full``/``-S``: print the Identity value for ``-orig-tn``, ``-dest-tn``, ``-attest``
  (default C), ``-orig-id`` (default: a new UUID), ``-x5u``, key ``-fprvkey``/``-k``; exit 0,
  or ``error: ...`` and exit 255.
* ``-sign``/``-s``: sign ``-header``/``-fheader`` and ``-payload``/``-fpayload`` JSON text byte
  for byte (``-json-parse``: canonical JSON); a missing one is built from the flags.
* ``-version``, ``-help`` and flag errors exit 1, as secsipidx's usage function does.

The checks are ours (docs/cli.md lists where results differ: we refuse what libsecsipid
signs without a complaint, and we never follow redirects or fetch from private addresses).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__
from ._errors import KeyLoadError, SecSIPIDError, VerificationError
from ._keys import Credential, private_key_from_file
from ._reasons import Reason
from ._signer import Signer
from ._source import CertificateSource
from ._trust import TrustPolicy
from ._verifier import Verifier, VerifyPolicy

DEFAULT_X5U = "https://127.0.0.1/cert.pem"  # libsecsipid's default x5u


@dataclass
class _Flag:
    names: tuple[str, ...]
    dest: str
    kind: type  # bool, int or str
    default: Any
    help: str


FLAGS = [
    _Flag(("check", "c"), "check", bool, False, "check validity of the signature"),
    _Flag(("sign-full", "S"), "sign_full", bool, False, "sign, claims from the flags"),
    _Flag(("sign", "s"), "sign", bool, False, "sign -header/-payload JSON documents"),
    _Flag(("json-parse",), "json_parse", bool, False, "re-serialize -header/-payload JSON"),
    _Flag(("fprvkey", "k"), "fprvkey", str, "", "path to private key"),
    _Flag(("fpubkey", "p"), "fpubkey", str, "", "path (or file:// or http(s) URL) to public key"),
    _Flag(("identity",), "identity", str, "", "identity value"),
    _Flag(("fidentity",), "fidentity", str, "", "path to file with identity value"),
    _Flag(("header",), "header", str, "", "header value in JSON format"),
    _Flag(("fheader",), "fheader", str, "", "path to file with header value in JSON format"),
    _Flag(("payload",), "payload", str, "", "payload value in JSON format"),
    _Flag(("fpayload",), "fpayload", str, "", "path to file with payload value in JSON format"),
    _Flag(("alg",), "alg", str, "ES256", "encryption algorithm"),
    _Flag(("ppt",), "ppt", str, "shaken", "used extension"),
    _Flag(("typ",), "typ", str, "passport", "token type"),
    _Flag(("x5u",), "x5u", str, "", "location of the certificate used to sign the token"),
    _Flag(("attest", "a"), "attest", str, "C", "attestation level"),
    _Flag(("dest-tn", "d"), "dest_tn", str, "", "destination (called) number"),
    _Flag(("orig-tn", "o"), "orig_tn", str, "", "origination (calling) number"),
    _Flag(("iat",), "iat", int, 0, "timestamp when the token was created"),
    _Flag(("orig-id",), "orig_id", str, "", "origination identifier"),
    _Flag(("expire",), "expire", int, 0, "duration of token validity (in seconds)"),
    _Flag(("timeout",), "timeout", int, 3, "http get timeout (in seconds)"),
    _Flag(("cache-dir",), "cache_dir", str, "", "directory with cached certificates"),
    _Flag(("cache-expire",), "cache_expire", int, 3600, "duration of cached certificates (s)"),
    _Flag(("ca-file",), "ca_file", str, "", "file with root CA certificates in pem format"),
    _Flag(("ca-inter",), "ca_inter", str, "", "file with intermediate CA certificates (pem)"),
    _Flag(("crl-file",), "crl_file", str, "", "file with CRL in pem format"),
    _Flag(("cert-verify",), "cert_verify", int, 0, "certificate verification mode"),
    _Flag(("verbosity", "vl"), "verbosity", int, 0, "verbosity level"),
    _Flag(("version",), "version", bool, False, "print version"),
    # secsipidx's own HTTP server and self test: recognised, refused with a pointer.
    _Flag(("http-srv", "H"), "http_srv", str, "", "(not supported: HTTP server)"),
    _Flag(("https-srv",), "https_srv", str, "", "(not supported: HTTPS server)"),
    _Flag(("https-pubkey",), "https_pubkey", str, "", "(not supported)"),
    _Flag(("https-prvkey",), "https_prvkey", str, "", "(not supported)"),
    _Flag(("http-dir",), "http_dir", str, "", "(not supported)"),
    _Flag(("ltest", "l"), "ltest", bool, False, "(not supported: local test)"),
]
_BY_NAME = {name: flag for flag in FLAGS for name in flag.names}


class _FlagError(Exception):
    pass


@dataclass
class Options:
    values: dict[str, Any] = field(default_factory=lambda: {f.dest: f.default for f in FLAGS})
    rest: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None


def parse(argv: Sequence[str]) -> Options:
    """Go ``flag`` semantics (what secsipidx's command lines rely on)."""
    opts = Options()
    args = list(argv)
    while args:
        arg = args[0]
        if len(arg) < 2 or arg[0] != "-":
            break
        if arg == "--":
            args.pop(0)
            break
        args.pop(0)
        name = arg[2:] if arg.startswith("--") else arg[1:]
        value: str | None = None
        if "=" in name:
            name, value = name.split("=", 1)
        if name in ("h", "help"):
            raise _FlagError("")
        flag = _BY_NAME.get(name)
        if flag is None:
            raise _FlagError(f"flag provided but not defined: -{name}")
        if flag.kind is bool:
            if value is None or value.lower() in ("1", "t", "true"):
                opts.values[flag.dest] = True
            elif value.lower() in ("0", "f", "false"):
                opts.values[flag.dest] = False
            else:
                raise _FlagError(f'invalid boolean value "{value}" for -{name}: parse error')
            continue
        if value is None:
            if not args:
                raise _FlagError(f"flag needs an argument: -{name}")
            value = args.pop(0)
        if flag.kind is int:
            try:
                opts.values[flag.dest] = int(value, 0)
            except ValueError:
                raise _FlagError(f'invalid value "{value}" for flag -{name}: parse error') from None
        else:
            opts.values[flag.dest] = value
    opts.rest = args
    return opts


def usage() -> str:
    lines = ["Usage of secsipid sx (secsipidx-compatible flags):"]
    for flag in FLAGS:
        spelled = ", ".join(f"-{n}" for n in flag.names)
        kind = "" if flag.kind is bool else f" {flag.kind.__name__}"
        default = (
            "" if flag.kind is bool or flag.default in ("", 0) else f" (default {flag.default})"
        )
        lines.append(f"  {spelled}{kind}\n    \t{flag.help}{default}")
    return "\n".join(lines)


# -- check ---------------------------------------------------------------------------------


class _FixedURL:
    """``-fpubkey http(s)://...``: the credential at that URL, whatever ``info`` says."""

    def __init__(self, source: CertificateSource, url: str) -> None:
        self.source = source
        self.url = url
        self.trust = source.trust
        self.fetcher = source.fetcher

    def credential_for(self, info: str) -> Credential:
        return self.source.credential_for(self.url)


def _trust(opts: Options) -> TrustPolicy | None:
    return TrustPolicy.from_libsecsipid(
        opts.cert_verify, opts.ca_file, opts.ca_inter, opts.crl_file
    )


def _check(opts: Options) -> int:
    if not opts.fpubkey:
        print("path to public key not provided")
        return -1
    if opts.fidentity:
        try:
            identity = Path(opts.fidentity).read_text("utf-8", errors="replace")
        except OSError:
            identity = ""  # secsipidx ignores the read error and checks an empty value
    elif opts.identity:
        identity = opts.identity
    else:
        print("Identity value not provided")
        return -1
    policy = VerifyPolicy(expire=max(opts.expire, 0))
    trust = _trust(opts)
    key = opts.fpubkey
    verifier: Verifier
    if key.startswith(("http://", "https://")):
        source = CertificateSource(
            trust=trust,
            timeout=max(opts.timeout, 1),
            cache_dir=opts.cache_dir or None,
            cache_expire=opts.cache_expire,
            cache_naming="libsecsipid",
        )
        verifier = Verifier(_FixedURL(source, key), policy=policy, trust=trust)
    else:
        path = key.removeprefix("file://")
        verifier = Verifier(path, policy=policy, trust=trust)
    if not identity.strip():
        print("error message: empty Identity value")
        return Reason.MALFORMED_IDENTITY.lib_code  # libsecsipid: -301 for an empty value
    verdict = verifier.check(identity.strip())
    if verdict.ok:
        return 0
    print(f"error message: {verdict.message}")
    return verdict.lib_code


# -- sign ----------------------------------------------------------------------------------


def _sign_full(opts: Options) -> int:
    try:
        signer = Signer(private_key_from_file(opts.fprvkey))
        value = signer.identity(
            opts.orig_tn,
            opts.dest_tn,
            opts.attest,
            opts.orig_id,
            x5u=opts.x5u or DEFAULT_X5U,
        )
    except SecSIPIDError as exc:
        print(f"error: {exc.message}")
        return -1
    print(value)
    return 0


def _document(opts: Options, text: str, path: str) -> str | None:
    if path:
        return Path(path).read_text("utf-8")
    return text or None


def _sign(opts: Options) -> int:
    if not opts.fprvkey:
        print("path to private key not provided")
        return -1
    try:
        header = _document(opts, opts.header, opts.fheader)
        payload = _document(opts, opts.payload, opts.fpayload)
        verbatim = not opts.json_parse
        if header is None:
            verbatim = False
            header = json.dumps(
                {"alg": opts.alg, "ppt": opts.ppt, "typ": opts.typ, "x5u": opts.x5u or DEFAULT_X5U}
            )
        if payload is None:
            verbatim = False
            payload = json.dumps(
                {
                    "attest": opts.attest,
                    "dest": {"tn": [opts.dest_tn]},
                    "iat": opts.iat or int(__import__("time").time()),
                    "orig": {"tn": opts.orig_tn},
                    "origid": opts.orig_id,
                }
            )
        token = Signer(private_key_from_file(opts.fprvkey)).sign_json(
            header, payload, verbatim=verbatim
        )
    except OSError as exc:
        print(f"error: {exc.filename}: {exc.strerror}")
        return -1
    except (SecSIPIDError, ValueError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}")
        return -1
    print(token)
    return 0


def main(argv: Sequence[str]) -> int:
    """Run secsipidx's command line; returns the process exit status."""
    try:
        opts = parse(argv)
    except _FlagError as exc:
        if str(exc):
            print(str(exc), file=sys.stderr)
        print(usage(), file=sys.stderr)
        return 1
    if opts.version:
        print(f"secsipid sx v{__version__}")
        return 1
    if opts.http_srv or opts.https_srv or opts.ltest:
        print(
            "secsipid sx: secsipidx's HTTP server and -ltest are not part of secsipid "
            "(see docs/cli.md)",
            file=sys.stderr,
        )
        return 1
    try:
        if opts.check:
            ret = _check(opts)
            print("ok" if ret == 0 else "not-ok")
        elif opts.sign_full:
            ret = _sign_full(opts)
        elif opts.sign:
            ret = _sign(opts)
        else:
            print(f"secsipid sx v{__version__}")
            print("run 'secsipid sx -help' to see the options")
            return 0
    except (KeyLoadError, VerificationError) as exc:
        print(f"error message: {exc.message}")
        ret = getattr(exc, "lib_code", Reason.INTERNAL_ERROR.lib_code)
    return ret & 0xFF
