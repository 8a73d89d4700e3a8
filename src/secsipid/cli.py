"""The ``secsipid`` command line: a thin shell over the library.

Exit codes: 0 success (valid), 1 invalid (the PASSporT or input is bad), 2 usage or
configuration error (bad option, unreadable key file).  Errors are one line on stderr with a
stable code, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from cryptography import x509

from . import __version__
from ._codec import B64Error, JSONError, b64url_decode, loads_strict
from ._errors import KeyLoadError, SecSIPIDError, SigningError, VerificationError
from ._fetch import Fetcher, FetchPolicy
from ._identity import parse_identity, split_identity_values
from ._keys import credential_from_file, private_key_from_file
from ._signer import Signer, identity_for_json
from ._source import CertificateSource, freshness, parse_certificate_body
from ._tnauthlist import TNAuthList
from ._trust import TrustPolicy, TrustValidator
from ._verifier import Verdict, Verifier, VerifyPolicy

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2


class _UsageError(Exception):
    pass


def _fail(code: str, message: str, status: int = EXIT_USAGE) -> NoReturn:
    print(f"secsipid: error: {code}: {message}", file=sys.stderr)
    raise SystemExit(status)


def _read_values(value: str | None) -> list[str]:
    """The Identity value(s) from the argument, or from stdin for ``-`` or no argument."""
    if value is None or value == "-":
        text = sys.stdin.read()
        return split_identity_values([line for line in text.splitlines() if line.strip()])
    return split_identity_values(value)


def _json_arg(text: str, what: str) -> str:
    """``--header``/``--payload`` take JSON text, or ``@FILE`` to read it from a file."""
    if text.startswith("@"):
        try:
            return Path(text[1:]).read_text("utf-8")
        except OSError as exc:
            raise _UsageError(f"{what}: cannot read {text[1:]}: {exc.strerror}") from exc
    return text


# -- sign ------------------------------------------------------------------------------------


def _cmd_sign(args: argparse.Namespace) -> int:
    signer = Signer(private_key_from_file(args.key), deterministic=not args.random_k)
    if args.header is not None or args.payload is not None:
        if args.header is None or args.payload is None:
            raise _UsageError("--header and --payload go together")
        if args.orig_tn or args.dest_tn or args.attest:
            raise _UsageError("--header/--payload cannot be combined with SHAKEN claim options")
        header = _json_arg(args.header, "--header")
        payload = _json_arg(args.payload, "--payload")
        token = signer.sign_json(header, payload, verbatim=args.verbatim)
        print(identity_for_json(token, header, args.x5u) if args.x5u else token)
        return EXIT_VALID
    missing = [
        opt
        for opt, val in (
            ("--orig-tn", args.orig_tn),
            ("--dest-tn", args.dest_tn),
            ("--attest", args.attest),
            ("--x5u", args.x5u),
        )
        if not val
    ]
    if missing:
        raise _UsageError(f"missing {', '.join(missing)} (or use --header/--payload)")
    value = signer.identity(
        args.orig_tn, args.dest_tn, args.attest, args.origid or "", iat=args.iat, x5u=args.x5u
    )
    print(value)
    return EXIT_VALID


# -- check -----------------------------------------------------------------------------------


def _trust_from_args(args: argparse.Namespace) -> TrustPolicy | None:
    if args.no_verify_cert:
        return None
    if not (args.ca_file or args.ca_dir or args.system_cas):
        if args.cert or args.pubkey:
            return None  # a key given on the command line is trusted as given
        raise _UsageError(
            "the certificate from info must be validated: give --ca-file/--ca-dir (the STI-PA "
            "trust list) or --system-cas, or --no-verify-cert to skip chain validation"
        )
    try:
        return TrustPolicy(
            ca_file=args.ca_file,
            ca_dir=args.ca_dir,
            system_cas=args.system_cas,
            intermediates_file=args.intermediates,
            crl_files=tuple(args.crl_file or ()),
            fetch_crls=args.fetch_crls,
            require_crl=args.require_crl,
            require_tnauthlist=not args.no_tnauthlist,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc


def _fetch_policy_from_args(args: argparse.Namespace) -> FetchPolicy:
    try:
        return FetchPolicy(
            timeout=args.timeout,
            allow_http=args.allow_http,
            allow_private=args.allow_private,
            tls_ca_file=args.tls_ca_file,
            max_size=args.max_size,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from exc


def _verifier_from_args(args: argparse.Namespace) -> Verifier:
    policy = VerifyPolicy(expire=args.expire, future_skew=args.future_skew, strict=args.strict)
    trust = _trust_from_args(args)
    key_path = args.cert or args.pubkey
    if key_path:
        credential_from_file(key_path)  # refuse an unusable key up front, as a usage error
        return Verifier(key_path, policy=policy, trust=trust)
    source = CertificateSource(
        trust=trust, fetch=_fetch_policy_from_args(args), cache_dir=args.cache_dir
    )
    return Verifier(source, policy=policy)


def _print_verdict(verdict: Verdict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(verdict.to_dict(), indent=2, sort_keys=True, allow_nan=False))
        return
    print(f"valid: {'yes' if verdict.ok else 'no'}")
    print(f"reason: {verdict.reason.value}")
    if verdict.ok and verdict.passport is not None:
        p = verdict.passport
        print(f"attest: {p.attest}  orig: {p.orig}  dest: {', '.join(p.dest)}  iat: {p.iat}")
        print(f"origid: {p.origid}")
        for warning in p.warnings:
            print(f"warning: {warning}")
    else:
        print(f"sip: {verdict.sip_status} {verdict.sip_reason}")
        print(f"message: {verdict.message}")
        print(f"libsecsipid code: {verdict.lib_code}")
    print(f"verstat: {verdict.verstat}")


def _cmd_check(args: argparse.Namespace) -> int:
    verifier = _verifier_from_args(args)
    values = _read_values(args.value)
    verdict = verifier.check(
        values, orig_tn=args.orig_tn, dest_tn=args.dest_tn or None, now=args.now
    )
    _print_verdict(verdict, args.json)
    return EXIT_VALID if verdict.ok else EXIT_INVALID


# -- fetch -----------------------------------------------------------------------------------


def _cmd_fetch(args: argparse.Namespace) -> int:
    fetcher = Fetcher(_fetch_policy_from_args(args))
    result = fetcher.get(args.url)
    credential, _ = parse_certificate_body(result.body, args.url)
    ttl, storable = freshness(result.headers, result.fetched_at, 3600.0)
    chain = [c for c in (credential.certificate, *credential.intermediates) if c is not None]
    info: dict[str, Any] = {
        "url": args.url,
        "status": result.status,
        "content_type": result.headers.get("content-type"),
        "bytes": len(result.body),
        "cache_seconds": ttl,
        "cache_storable": storable,
        "spc": credential.spc,
        "chain": [_describe_cert(c) for c in chain],
    }
    trust = _trust_from_args(args) if (args.ca_file or args.ca_dir or args.system_cas) else None
    if trust is not None:
        try:
            TrustValidator(trust, fetcher).check(
                credential, iat=int(result.fetched_at), now=result.fetched_at, orig_tn=None
            )
            info["trusted"] = True
        except VerificationError as exc:
            info["trusted"] = False
            info["trust_reason"] = exc.reason.value
            info["trust_message"] = exc.message
    print(json.dumps(info, indent=2))
    return EXIT_INVALID if info.get("trusted") is False else EXIT_VALID


def _describe_cert(cert: x509.Certificate) -> dict[str, Any]:
    tnauth = None
    with contextlib.suppress(ValueError):
        tnauth = TNAuthList.from_certificate(cert)
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "x"),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "tnauthlist": None
        if tnauth is None
        else {
            "spc": list(tnauth.spcs),
            "tns": list(tnauth.tns),
            "ranges": [[r.start, r.count] for r in tnauth.ranges],
        },
    }


# -- decode ----------------------------------------------------------------------------------


def _decode_segment(segment: str) -> Any:
    try:
        return loads_strict(b64url_decode(segment))
    except (B64Error, JSONError) as exc:
        return {"error": str(exc)}


def decode_value(value: str) -> dict[str, Any]:
    """Header, claims and parameters of one Identity value, without verifying anything."""
    hdr = parse_identity(value)
    parts = hdr.token.split(".")
    result: dict[str, Any] = {"params": dict(hdr.params), "compact": hdr.compact}
    if len(parts) == 3:
        result["header"] = _decode_segment(parts[0]) if parts[0] else {}
        result["claims"] = _decode_segment(parts[1]) if parts[1] else {}
        result["signature"] = parts[2]
    else:
        result["error"] = f"PASSporT has {len(parts)} segments, not 3"
    return result


def _cmd_decode(args: argparse.Namespace) -> int:
    values = _read_values(args.value)
    if not values:
        raise _UsageError("no Identity value given")
    decoded = []
    status = EXIT_VALID
    for value in values:
        try:
            result = decode_value(value)
        except VerificationError as exc:
            result = {"error": exc.message, "reason": exc.reason.value}
        if "error" in result:
            status = EXIT_INVALID
        decoded.append(result)
    doc = decoded[0] if len(decoded) == 1 else decoded
    print(json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False))
    return status


# -- keygen ----------------------------------------------------------------------------------


def _cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from ._pki import make_crl, make_lab_pki, make_self_signed, pem, write_key

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.ca:
        try:
            ranges = [(start, int(count)) for start, _, count in
                      (r.partition(":") for r in args.range or ())]  # fmt: skip
        except ValueError as exc:
            raise _UsageError("--range takes START:COUNT") from exc
        pki = make_lab_pki(
            spc=args.spc or "1234", tns=args.tn or (), ranges=ranges, days=args.days,
            crl_url=args.crl_url,
        )  # fmt: skip
        files = pki.write(out)
        write_key(pki.intermediate_key, out / "intermediate-key.pem")
        written = [*files.values(), out / "intermediate-key.pem"]
        for name, issuer, issuer_key in (
            ("crl.pem", pki.intermediate, pki.intermediate_key),
            ("root-crl.pem", pki.root, pki.root_key),
        ):
            crl = make_crl(issuer, issuer_key)
            (out / name).write_bytes(crl.public_bytes(serialization.Encoding.PEM))
            written.append(out / name)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        cn = args.cn or (f"SHAKEN {args.spc}" if args.spc else "SHAKEN lab")
        cert = make_self_signed(key, cn=cn, spc=args.spc, days=args.days)
        write_key(key, out / "key.pem")
        (out / "pub.pem").write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        (out / "cert.pem").write_bytes(pem(cert))
        written = [out / name for name in ("key.pem", "pub.pem", "cert.pem")]
    for path in written:
        print(path)
    return EXIT_VALID


# -- demo ------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(verbose=not args.quiet)


# -- parser ----------------------------------------------------------------------------------


def _add_fetch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fetching the certificate from info")
    g.add_argument("--timeout", type=float, default=5.0, help="total seconds per fetch (5)")
    g.add_argument("--allow-http", action="store_true", help="accept http:// URLs (labs)")
    g.add_argument(
        "--allow-private",
        action="store_true",
        help="accept loopback/private/special-purpose destinations (labs)",
    )
    g.add_argument("--tls-ca-file", help="CA bundle for the HTTPS server (default: system)")
    g.add_argument("--max-size", type=int, default=65536, help="body cap in bytes (65536)")
    g.add_argument("--cache-dir", help="directory cache for fetched certificates")


def _add_trust_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("trust (chain validation)")
    g.add_argument("--ca-file", help="trust anchors: PEM bundle (the STI-PA trust list)")
    g.add_argument("--ca-dir", help="trust anchors: directory of PEM/DER certificates")
    g.add_argument("--system-cas", action="store_true", help="also trust the system CAs")
    g.add_argument("--intermediates", help="extra intermediate CA certificates (PEM)")
    g.add_argument("--crl-file", action="append", help="CRL file (PEM or DER); repeatable")
    g.add_argument("--fetch-crls", action="store_true", help="fetch CRL distribution points")
    g.add_argument("--require-crl", action="store_true", help="refuse unknown revocation status")
    g.add_argument("--no-tnauthlist", action="store_true", help="do not require TNAuthList")
    g.add_argument(
        "--no-verify-cert",
        action="store_true",
        help="accept any certificate from info without chain validation (libsecsipid default)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="secsipid",
        description="STIR/SHAKEN: sign and verify PASSporTs and SIP Identity headers.",
    )
    parser.add_argument("--version", action="version", version=f"secsipid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "sign",
        help="sign a SHAKEN PASSporT and print the Identity header value",
        description="Sign a SHAKEN PASSporT and print the full Identity header value "
        "(<jws>;info=<x5u>;alg=ES256;ppt=shaken). With --header/--payload, sign given JSON "
        "(any ppt) and print the token, or the Identity value when --x5u is given.",
    )
    p.add_argument("--orig-tn", help="calling number (separators and sip:/tel: URIs accepted)")
    p.add_argument("--dest-tn", action="append", help="called number; repeat for several (sorted)")
    p.add_argument("--attest", choices=("A", "B", "C"), help="attestation level")
    p.add_argument("--x5u", help="URL of the signing certificate (becomes info=<...>)")
    p.add_argument("--key", required=True, help="EC P-256 private key (PEM or DER)")
    p.add_argument("--origid", help="origination identifier UUID (default: a new UUID4)")
    p.add_argument("--iat", type=int, help="issued-at, seconds since the epoch (default: now)")
    p.add_argument("--header", help="JWS header JSON text, or @FILE")
    p.add_argument("--payload", help="JWS payload JSON text, or @FILE")
    p.add_argument(
        "--verbatim",
        action="store_true",
        help="sign --header/--payload text byte for byte (default: canonical JSON, RFC 8225 §9)",
    )
    p.add_argument("--random-k", action="store_true", help="random ECDSA nonce instead of RFC 6979")
    p.set_defaults(func=_cmd_sign)

    p = sub.add_parser(
        "check",
        help="verify Identity header value(s)",
        description="Verify Identity header value(s). Exit 0 when valid, 1 when invalid, "
        "2 on usage errors. VALUE may hold several comma-joined values; '-' or nothing reads "
        "stdin (one value or header line per line).",
    )
    p.add_argument("value", nargs="?", help="Identity header value, or - for stdin")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--cert", help="certificate of the signer (default: fetch from info)")
    key.add_argument("--pubkey", help="public key of the signer (default: fetch from info)")
    _add_fetch_options(p)
    _add_trust_options(p)
    p.add_argument("--expire", type=int, default=300, help="max age of iat in seconds (300)")
    p.add_argument("--future-skew", type=int, default=5, help="max iat in the future (5 s)")
    p.add_argument("--orig-tn", help="calling number to match orig (from PAI/From)")
    p.add_argument(
        "--dest-tn", action="append", help="called number to match dest (To/R-URI); repeatable"
    )
    p.add_argument("--strict", action="store_true", help="also reject non-canonical forms")
    p.add_argument("--now", type=float, help="verify as of this time (seconds since epoch)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "fetch",
        help="download a certificate from a URL through the fetch policy and describe it",
        description="Fetch URL (an x5u/info URL) with the same safety policy as verification "
        "and print the chain, its TNAuthList and the cache lifetime as JSON; with trust options, "
        "also whether it validates (exit 1 when not).",
    )
    p.add_argument("url")
    _add_fetch_options(p)
    _add_trust_options(p)
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "decode",
        help="print header, claims and parameters as JSON, without verifying",
        description="Decode Identity header value(s) without verifying anything.",
    )
    p.add_argument("value", nargs="?", help="Identity header value, or - for stdin")
    p.set_defaults(func=_cmd_decode)

    p = sub.add_parser(
        "keygen",
        help="make a P-256 key and a lab certificate (self-signed, or a CA chain with --ca)",
        description="Write key.pem (PKCS#8), pub.pem and a self-signed cert.pem for labs; "
        "with --spc, the certificate carries a TNAuthList extension with that SPC. With --ca, "
        "write a lab PKI instead: root.pem (the trust anchor), intermediate.pem and its key, "
        "cert.pem (leaf 'SHAKEN <spc>' with TNAuthList), chain.pem (leaf + intermediate: what "
        "x5u serves), key.pem (the leaf's key), and empty CRLs from the intermediate (crl.pem) "
        "and the root (root-crl.pem).",
    )
    p.add_argument("--ca", action="store_true", help="root -> intermediate -> leaf lab PKI")
    p.add_argument("--tn", action="append", help="--ca: a TN in the leaf's TNAuthList")
    p.add_argument("--range", action="append", help="--ca: START:COUNT TN range (RFC 9060)")
    p.add_argument("--crl-url", help="--ca: CRL distribution point URL in the certificates")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--cn", help="certificate common name (default: 'SHAKEN <spc>')")
    p.add_argument("--spc", help="Service Provider Code for the TNAuthList extension")
    p.add_argument("--days", type=int, default=365, help="validity in days (365)")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser(
        "demo",
        help="sign, serve the certificate on loopback, fetch it and verify",
        description="A self-contained demonstration on 127.0.0.1.",
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_cmd_demo)

    from .service.cli import add_parser as add_serve_parser  # the HTTP service's options

    add_serve_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status: int = args.func(args)
    except _UsageError as exc:
        parser.error(str(exc))
    except (KeyLoadError, SigningError) as exc:
        _fail(exc.code, exc.message)
    except SecSIPIDError as exc:
        _fail(exc.code, exc.message, EXIT_INVALID)
    except BrokenPipeError:
        return EXIT_USAGE
    except OSError as exc:  # an output directory or input file the command cannot use
        where = f"{exc.filename}: " if exc.filename else ""
        _fail("os-error", f"{where}{exc.strerror or exc}")
    except ValueError as exc:  # an option value the library refuses (e.g. a negative expire)
        parser.error(str(exc))
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
