"""The ``secsipid`` command line: a thin shell over the library.

Exit codes: 0 success (valid), 1 invalid (the PASSporT or input is bad), 2 usage or
configuration error (bad option, unreadable key file), 141 when the reader of the output went
away (``| head``), as a tool killed by SIGPIPE.  Every error is one line on stderr,
``secsipid: error: <code>: <message>``, never a traceback (docs/cli.md).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from cryptography import x509

from . import __version__
from ._codec import B64Error, JSONError, b64url_decode, loads_strict
from ._errors import KeyLoadError, SecSIPIDError, SigningError, VerificationError
from ._fetch import Fetcher, FetchPolicy, FetchResult
from ._identity import DEFAULT_MAX_IDENTITY_SIZE, parse_identity, split_identity_values
from ._keys import Credential, credential_from_file, private_key_from_file
from ._rcd import RichCallData
from ._reasons import Reason
from ._signer import Signer, identity_for_json
from ._source import CertificateSource, freshness, parse_certificate_body
from ._tnauthlist import TNAuthList
from ._trust import TrustPolicy, TrustValidator
from ._verifier import DEFAULT_MAX_IDENTITIES, Verdict, Verifier, VerifyPolicy

EXIT_VALID, EXIT_INVALID, EXIT_USAGE = 0, 1, 2
EXIT_PIPE = 128 + 13  # what a shell reports for a tool killed by SIGPIPE

log = logging.getLogger("secsipid.cli")


class _UsageError(Exception):
    """A bad command line: one line on stderr, exit 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: the message and where to read more, no usage dump."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _fail(code: str, message: str, status: int = EXIT_USAGE) -> NoReturn:
    print(f"secsipid: error: {code}: {message}", file=sys.stderr)
    raise SystemExit(status)


# -- option values: refused with the option's name and what to give instead ------------------


def _int_at_least(minimum: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of {what}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is too small: give {minimum} or more {what}")
        return value

    return parse


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"{text} is not allowed: give a number of seconds > 0")
    return value


def _epoch_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a time in seconds since 1970") from None
    if not 0 <= value < 1e11:
        raise argparse.ArgumentTypeError(f"{text} is not a time in seconds since 1970")
    return value


# -- input -----------------------------------------------------------------------------------


# ``check`` reads at most this much of stdin for one request (and for one line with --each):
# a request holds at most 16 Identity values of 8 KiB (VerifyPolicy's caps), and 1 MiB leaves
# room for header names and blank lines while keeping a huge or endless input out of memory.
STDIN_LIMIT = 1 << 20


def _read_values(value: str | None, limit: int | None = None) -> list[str] | None:
    """The Identity value(s) from the argument, or from stdin for ``-`` or no argument; None
    when stdin holds more than ``limit`` characters (the rest is not read)."""
    if value is None or value == "-":
        text = sys.stdin.read() if limit is None else sys.stdin.read(limit + 1)
        if limit is not None and len(text) > limit:
            return None
        return split_identity_values([line for line in text.splitlines() if line.strip()])
    return split_identity_values(value)


def _too_much_input(what: str) -> Verdict:
    return Verdict.from_error(
        VerificationError(
            Reason.TOO_LARGE,
            f"{what} holds more than {STDIN_LIMIT} characters, over what one request can be "
            f"({DEFAULT_MAX_IDENTITIES} Identity values of {DEFAULT_MAX_IDENTITY_SIZE} "
            "characters at most)",
        )
    )


def _stdin_lines(limit: int) -> Iterator[tuple[int, str | None]]:
    """``(number, line)`` for each stdin line; the line is None when it is longer than
    ``limit`` characters (then skipped to its end in bounded reads, never held whole)."""
    number = 0
    while True:
        line = sys.stdin.readline(limit + 1)
        if not line:
            return
        number += 1
        if len(line) > limit and not line.endswith("\n"):
            while True:
                rest = sys.stdin.readline(65536)
                if not rest or rest.endswith("\n"):
                    break
            yield number, None
        else:
            yield number, line


def _json_arg(text: str, what: str) -> str:
    """``--header``/``--payload`` take JSON text, or ``@FILE`` to read it from a file."""
    if text.startswith("@"):
        try:
            return Path(text[1:]).read_text("utf-8")
        except OSError as exc:
            raise _UsageError(f"{what}: cannot read {text[1:]}: {exc.strerror}") from exc
    return text


# -- what to do about a failure (the library's messages say what is wrong; these say which
# -- option of this command changes it) ------------------------------------------------------


def _hint(reason: str, message: str) -> str | None:
    if reason == "cert-url-refused":
        if "scheme 'http'" in message:
            return "a lab certificate server over http://? add --allow-http"
        if "address" in message or "destination" in message:
            return "a lab certificate server on a loopback or private address? add --allow-private"
        return None
    if reason == "cert-untrusted":
        return (
            "give the root that issued it with --ca-file or --ca-dir (and the intermediate with "
            "--intermediates when the info URL does not serve it), or --no-verify-cert to skip "
            "chain validation"
        )
    if reason == "orig-mismatch":
        return "--orig-tn is the calling number to compare with orig"
    if reason == "dest-mismatch":
        return "--dest-tn is the called number to compare with dest (repeatable)"
    if reason == "stale":
        return "--expire SECONDS allows older PASSporTs (300 by default); --now T checks as of T"
    if reason == "future-iat":
        return "--future-skew SECONDS allows clocks further ahead (5 by default)"
    if reason in ("cert-fetch-timeout", "cert-fetch-failed"):
        return "--timeout SECONDS gives a slow certificate server more time (5 by default)"
    if reason == "cert-crl-unavailable":
        return "give the CRL with --crl-file, or drop --require-crl"
    return None


def _with_hint(reason: str, message: str) -> str:
    hint = _hint(reason, message)
    return f"{message} ({hint})" if hint else message


# -- logging (-v / --log-level) --------------------------------------------------------------


@contextlib.contextmanager
def _logging(args: argparse.Namespace) -> Iterator[None]:
    """Log records of the ``secsipid`` loggers to stderr at the level the options ask for."""
    level_name = getattr(args, "log_level", None)
    verbose = getattr(args, "verbose", 0) or 0
    if level_name:
        level = getattr(logging, level_name.upper())
    elif verbose:
        level = logging.INFO if verbose == 1 else logging.DEBUG
    else:
        yield
        return
    logger = logging.getLogger("secsipid")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("secsipid: %(levelname)s: %(message)s"))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate


class _LoggingFetcher:
    """The fetcher of a source, logging each download (what ``-v`` shows about fetches)."""

    def __init__(self, fetcher: Fetcher) -> None:
        self._fetcher = fetcher
        self.policy = fetcher.policy
        self.fetched: list[str] = []

    def get(self, url: str) -> FetchResult:
        started = self._start(url)
        try:
            result = self._fetcher.get(url)
        except VerificationError as exc:
            log.info("fetch %s failed: %s: %s", url, exc.code, exc.message)
            raise
        return self._done(url, result, started)

    async def aget(self, url: str) -> FetchResult:
        started = self._start(url)
        try:
            result = await self._fetcher.aget(url)
        except VerificationError as exc:
            log.info("fetch %s failed: %s: %s", url, exc.code, exc.message)
            raise
        return self._done(url, result, started)

    def _start(self, url: str) -> float:
        self.fetched.append(url)
        log.info("fetch %s (timeout %gs)", url, self.policy.timeout)
        return time.monotonic()

    def _done(self, url: str, result: FetchResult, started: float) -> FetchResult:
        headers = result.headers
        log.info(
            "fetched %s: HTTP %d, %d bytes, %s, in %.0f ms",
            url,
            result.status,
            len(result.body),
            headers.get("content-type", "no content-type"),
            (time.monotonic() - started) * 1000,
        )
        for name in ("cache-control", "expires"):
            if name in headers:
                log.debug("  %s: %s", name, headers[name])
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fetcher, name)


class _LoggingSource:
    """A certificate source that says where each credential came from (fetch or cache)."""

    def __init__(self, source: CertificateSource) -> None:
        self._source = source
        self._fetcher = _LoggingFetcher(source.fetcher)
        source.fetcher = self._fetcher  # type: ignore[assignment]
        self.fetcher = self._fetcher
        self.fetch_policy = source.fetch_policy  # the verifier's time budget comes from it
        self.trust = _LoggingTrust(source.trust) if source.trust is not None else None
        where = source.cache_config.cache_dir
        log.info("certificates from info; directory cache: %s", where or "none (memory only)")

    def cached_credential(self, info: str) -> Credential | None:
        try:
            credential: Credential | None = self._source.cached_credential(info)
        except VerificationError as exc:
            log.info("%s: a recent failure, not fetched again: %s: %s", info, exc.code, exc.message)
            raise
        if credential is not None:
            log.info("%s: certificate from the cache (no fetch)", info)
        return credential

    def credential_for(self, info: str) -> Credential:
        before = len(self._fetcher.fetched)
        try:
            credential = self._source.credential_for(info)
        except VerificationError as exc:
            if len(self._fetcher.fetched) == before:
                log.info("%s: not fetched: %s: %s", info, exc.code, exc.message)
            raise
        if len(self._fetcher.fetched) == before:
            log.info("%s: certificate from the cache (no fetch)", info)
        return credential

    async def acredential_for(self, info: str) -> Credential:
        before = len(self._fetcher.fetched)
        try:
            credential = await self._source.acredential_for(info)
        except VerificationError as exc:
            if len(self._fetcher.fetched) == before:
                log.info("%s: not fetched: %s: %s", info, exc.code, exc.message)
            raise
        if len(self._fetcher.fetched) == before:
            log.info("%s: certificate from the cache (no fetch)", info)
        return credential

    def __getattr__(self, name: str) -> Any:
        return getattr(self._source, name)


class _LoggingTrust:
    """The chain validator, logging each decision."""

    def __init__(self, trust: TrustValidator) -> None:
        self._trust = trust

    def check(self, credential: Credential, **kwargs: Any) -> Any:
        leaf = credential.certificate
        subject = leaf.subject.rfc4514_string() if leaf is not None else "a bare public key"
        try:
            result = self._trust.check(credential, **kwargs)
        except VerificationError as exc:
            log.info("trust: %s refused: %s: %s", subject, exc.code, exc.message)
            raise
        spc = None if result is None else ", ".join(getattr(result, "spcs", ()))
        log.info("trust: %s validated%s", subject, f" (SPC {spc})" if spc else "")
        return result

    def __getattr__(self, name: str) -> Any:
        return getattr(self._trust, name)


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
    if args.ppt != "shaken":
        print(_sign_extension(signer, args))
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
    rcd, contents = _rcd_from_args(args)
    value = signer.identity(
        args.orig_tn,
        args.dest_tn,
        args.attest,
        args.origid or "",
        iat=args.iat,
        x5u=args.x5u,
        rcd=rcd,
        rcd_contents=contents,
    )
    print(value)
    return EXIT_VALID


def _rcd_from_args(args: argparse.Namespace) -> tuple[RichCallData | None, dict[str, bytes]]:
    """Rich Call Data (RFC 9795) from the --rcd-* and --crn options, and the content to
    digest into rcdi from --rcd-content URL-or-POINTER=FILE."""
    contents: dict[str, bytes] = {}
    for entry in args.rcd_content or ():
        key, sep, path = entry.rpartition("=")
        if not sep or not key or not path:
            raise _UsageError("--rcd-content takes URL=FILE or /POINTER=FILE")
        try:
            contents[key] = Path(path).read_bytes()
        except OSError as exc:
            raise _UsageError(f"--rcd-content: cannot read {path}: {exc.strerror}") from exc
    given = (args.rcd_apn, args.rcd_icn, args.rcd_jcd, args.rcd_jcl, args.crn, contents)
    if args.rcd_nam is None:
        if any(given):
            raise _UsageError("Rich Call Data needs --rcd-nam (RFC 9795: nam is required)")
        return None, contents
    jcd = None
    if args.rcd_jcd is not None:
        try:
            jcd = loads_strict(_json_arg(args.rcd_jcd, "--rcd-jcd").encode())
        except JSONError as exc:
            raise _UsageError(f"--rcd-jcd: {exc}") from exc
    try:
        rcd = RichCallData(
            nam=args.rcd_nam,
            apn=args.rcd_apn,
            icn=args.rcd_icn,
            jcd=jcd,
            jcl=args.rcd_jcl,
            crn=args.crn,
        )
    except ValueError as exc:
        raise _UsageError(f"Rich Call Data: {exc}") from exc
    return rcd, contents


def _sign_extension(signer: Signer, args: argparse.Namespace) -> str:
    """``--ppt div``, ``div-o`` (RFC 8946) or ``rcd`` (RFC 9795)."""
    if not args.x5u:
        raise _UsageError(f"--ppt {args.ppt} needs --x5u")
    if args.attest or args.origid:
        raise _UsageError(f"--attest/--origid are SHAKEN claims, not {args.ppt} ones")
    if not args.dest_tn:
        raise _UsageError(f"--ppt {args.ppt} needs --dest-tn (the new target for div)")
    rcd, contents = _rcd_from_args(args)
    if args.ppt == "rcd":
        if rcd is None or not args.orig_tn:
            raise _UsageError("--ppt rcd needs --orig-tn and --rcd-nam")
        return signer.rcd_identity(
            args.orig_tn, args.dest_tn, rcd, rcd_contents=contents, iat=args.iat, x5u=args.x5u
        )
    if rcd is not None:
        raise _UsageError("Rich Call Data goes into a shaken or rcd PASSporT, not a div one")
    if args.original is not None:
        if args.orig_tn:
            raise _UsageError("--orig-tn is copied from --original; give one of them")
        original = _json_arg(args.original, "--original").strip()
        return signer.div_for(
            original, args.dest_tn, div_tn=args.div_tn, iat=args.iat, x5u=args.x5u, ppt=args.ppt
        )
    if args.ppt == "div-o":
        raise _UsageError("--ppt div-o needs --original (the PASSporT carried in opt)")
    if not (args.orig_tn and args.div_tn):
        raise _UsageError("--ppt div needs --orig-tn and --div-tn (or --original)")
    return signer.div_identity(args.orig_tn, args.dest_tn, args.div_tn, iat=args.iat, x5u=args.x5u)


# -- check -----------------------------------------------------------------------------------


def _trust_from_args(args: argparse.Namespace) -> TrustPolicy | None:
    if args.no_verify_cert:
        return None
    if not (args.ca_file or args.ca_dir or args.system_cas):
        if getattr(args, "cert", None) or getattr(args, "pubkey", None):
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
    policy = VerifyPolicy(
        expire=args.expire,
        future_skew=args.future_skew,
        strict=args.strict,
        fetch_rcd=args.fetch_rcd,
    )
    trust = _trust_from_args(args)
    key_path = args.cert or args.pubkey
    if key_path:
        credential_from_file(key_path)  # refuse an unusable key up front, as a usage error
        log.info("key: %s (the info URL is not fetched)", key_path)
        return Verifier(key_path, policy=policy, trust=trust)
    try:
        source = CertificateSource(
            trust=trust,
            fetch=_fetch_policy_from_args(args),
            cache_dir=args.cache_dir,
            cache_naming=args.cache_naming,
            cache_expire=args.cache_expire,
            redis=args.redis,
        )
    except (ValueError, ImportError) as exc:  # --redis: not a Redis URL, or no redis client
        raise _UsageError(f"--redis: {exc}") from exc
    if log.isEnabledFor(logging.INFO):
        logged = _LoggingSource(source)
        return Verifier(logged, policy=policy, trust=logged.trust)  # type: ignore[arg-type]
    return Verifier(source, policy=policy)


def _verdict_dict(verdict: Verdict) -> dict[str, Any]:
    doc = verdict.to_dict()
    doc["hint"] = None if verdict.ok else _hint(verdict.reason.value, verdict.message)
    return doc


def _print_verdict(verdict: Verdict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_verdict_dict(verdict), indent=2, sort_keys=True, allow_nan=False))
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
        hint = _hint(verdict.reason.value, verdict.message)
        if hint:
            print(f"hint: {hint}")
        print(f"libsecsipid code: {verdict.lib_code}")
    for hop in verdict.chain:
        div = f" div {hop.div}" if hop.div else ""
        state = "ok" if hop.ok else f"{hop.reason.value}: {hop.message}"
        print(f"chain [{hop.index}] {hop.ppt}:{div} -> {', '.join(hop.dest)}  {state}")
    if verdict.chain_failure is not None:
        print(
            f"chain failure: {verdict.chain_failure.reason.value}: {verdict.chain_failure.message}"
        )
    rcd = verdict.rcd
    if rcd is not None:
        print(f"rcd: nam {rcd.nam!r}" + (f"  crn {rcd.crn!r}" if rcd.crn is not None else ""))
        for value in rcd.call_info():
            print(f"call-info: {value}")
    if verdict.rcd_failure is not None:
        print(f"rcd failure: {verdict.rcd_failure.reason.value}: {verdict.rcd_failure.message}")
    print(f"verstat: {verdict.verstat}")


def _check_once(verifier: Verifier, values: list[str], args: argparse.Namespace) -> Verdict:
    verdict = verifier.check(
        values, orig_tn=args.orig_tn, dest_tn=args.dest_tn or None, now=args.now
    )
    log.info("verdict: %s (%s)", verdict.reason.value, verdict.message or "valid")
    return verdict


def _cmd_check(args: argparse.Namespace) -> int:
    verifier = _verifier_from_args(args)
    if args.each:
        return _check_each(verifier, args)
    values = _read_values(args.value, STDIN_LIMIT)
    verdict = _too_much_input("stdin") if values is None else _check_once(verifier, values, args)
    _print_verdict(verdict, args.json)
    return EXIT_VALID if verdict.ok else EXIT_INVALID


def _check_each(verifier: Verifier, args: argparse.Namespace) -> int:
    """``--each``: every non-empty input line is one request; one JSON object per line."""
    if args.value not in (None, "-"):
        raise _UsageError("--each reads the values from stdin: give - or no VALUE")
    status = EXIT_VALID
    for number, line in _stdin_lines(STDIN_LIMIT):
        if line is None:
            verdict = _too_much_input(f"line {number}")
        elif not line.strip():
            continue
        else:
            verdict = _check_once(verifier, split_identity_values(line.rstrip("\r\n")), args)
        doc = _verdict_dict(verdict)
        doc["line"] = number
        print(json.dumps(doc, sort_keys=True))
        if not verdict.ok:
            status = EXIT_INVALID
    return status


# -- fetch -----------------------------------------------------------------------------------


def _cmd_fetch(args: argparse.Namespace) -> int:
    fetcher: Fetcher | _LoggingFetcher = Fetcher(_fetch_policy_from_args(args))
    if log.isEnabledFor(logging.INFO):
        fetcher = _LoggingFetcher(fetcher)  # type: ignore[arg-type]
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
            TrustValidator(trust, fetcher).check(  # type: ignore[arg-type]
                credential, iat=int(result.fetched_at), now=result.fetched_at, orig_tn=None
            )
            info["trusted"] = True
        except VerificationError as exc:
            info["trusted"] = False
            info["trust_reason"] = exc.reason.value
            info["trust_message"] = exc.message
            info["hint"] = _hint(exc.reason.value, exc.message)
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


def _decode_segment(segment: str, part: str, errors: list[str]) -> Any:
    try:
        return loads_strict(b64url_decode(segment))
    except (B64Error, JSONError) as exc:
        errors.append(f"{part}: {exc}")
        return None


def decode_value(value: str) -> dict[str, Any]:
    """Header, claims and parameters of one Identity value, without verifying anything.

    Always the same keys: ``params``, ``compact``, ``header``, ``claims``, ``signature``
    (``null`` for what could not be decoded), ``errors`` (one message per part that could not
    be decoded; empty when all could) and ``reason`` (the stable code when the value could not
    even be split into token and parameters).
    """
    result: dict[str, Any] = {
        "params": None,
        "compact": None,
        "header": None,
        "claims": None,
        "signature": None,
        "errors": [],
        "reason": None,
    }
    errors: list[str] = result["errors"]
    try:
        hdr = parse_identity(value)
    except VerificationError as exc:
        errors.append(exc.message)
        result["reason"] = exc.reason.value
        return result
    result["params"] = dict(hdr.params)
    result["compact"] = hdr.compact
    parts = hdr.token.split(".")
    if len(parts) != 3:
        errors.append(f"token: {len(parts)} segments, not 3 (header.claims.signature)")
        return result
    if parts[0]:
        result["header"] = _decode_segment(parts[0], "header", errors)
    elif not hdr.compact:
        errors.append("header: empty")
    if parts[1]:
        result["claims"] = _decode_segment(parts[1], "claims", errors)
    elif not hdr.compact:
        errors.append("claims: empty")
    result["signature"] = parts[2]
    try:
        if len(b64url_decode(parts[2])) != 64:
            errors.append("signature: not 64 bytes (ES256 is r || s)")
    except B64Error as exc:
        errors.append(f"signature: {exc}")
    return result


def _cmd_decode(args: argparse.Namespace) -> int:
    values = _read_values(args.value)
    assert values is not None  # no limit: decode reads any number of values
    if not values:
        raise _UsageError("no Identity value given (VALUE, or - to read stdin)")
    status = EXIT_VALID
    for value in values:
        result = decode_value(value)
        if result["errors"]:
            status = EXIT_INVALID
        # ASCII: a JSON line must not hold U+2028/U+0085, which line splitters split on.
        print(json.dumps(result, allow_nan=False))
    return status


# -- keygen ----------------------------------------------------------------------------------


def _parse_range(text: str) -> tuple[str, int]:
    start, sep, count = text.partition(":")
    if not sep or not start.isdigit() or not count.isdigit():
        raise _UsageError(f"--range {text!r}: give START:COUNT, e.g. 12155550100:100")
    if int(count) < 1:
        raise _UsageError(f"--range {text!r}: COUNT must be 1 or more")
    return start, int(count)


def _cmd_keygen(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from ._pki import make_crl, make_lab_pki, make_self_signed, pem, write_key

    if not args.ca:
        stray = [
            opt
            for opt, val in (
                ("--tn", args.tn),
                ("--range", args.range),
                ("--crl-url", args.crl_url),
            )
            if val
        ]
        if stray:
            raise _UsageError(f"{', '.join(stray)} only go with --ca (a lab PKI with TNAuthList)")
    out = Path(args.out)
    names = (
        ("root.pem", "intermediate.pem", "cert.pem", "chain.pem", "key.pem",
         "intermediate-key.pem", "crl.pem", "root-crl.pem")
        if args.ca
        else ("key.pem", "pub.pem", "cert.pem")
    )  # fmt: skip
    ranges = [_parse_range(r) for r in args.range or ()]
    existing = [name for name in names if (out / name).exists()]
    if existing and not args.force:
        raise _UsageError(
            f"--out {out} already holds {', '.join(existing)}: add --force to replace them "
            "(what was signed with the old key stops verifying), or choose another --out"
        )
    out.mkdir(parents=True, exist_ok=True)
    if args.ca:
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


# -- kamailio-example ------------------------------------------------------------------------

KAMAILIO_EXAMPLES = ("sti_as.py", "sti_vs.py", "redirect.py", "kamailio.cfg")


def kamailio_examples_dir() -> Path:
    """Where the Kamailio examples are: inside the installed package (wheel), or in the
    source tree's ``examples/kamailio`` (an editable install)."""
    packaged = Path(__file__).resolve().parent / "kamailio_examples"
    if (packaged / "sti_vs.py").is_file():
        return packaged
    return Path(__file__).resolve().parents[2] / "examples" / "kamailio"


def _cmd_kamailio_example(args: argparse.Namespace) -> int:
    where = kamailio_examples_dir()
    if args.name is None:
        print(f"# in {where}")
        for name in KAMAILIO_EXAMPLES:
            print(name)
        return EXIT_VALID
    name = args.name if args.name in KAMAILIO_EXAMPLES else f"{args.name}.py"
    if name not in KAMAILIO_EXAMPLES:
        raise _UsageError(
            f"no Kamailio example {args.name!r}: choose one of {', '.join(KAMAILIO_EXAMPLES)}"
        )
    sys.stdout.write((where / name).read_text("utf-8"))
    return EXIT_VALID


# -- demo ------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    return run_demo(verbose=not args.quiet)


def _cmd_sx(args: argparse.Namespace) -> int:
    from ._sx import main as sx_main

    return sx_main(args.sx_args)


# -- parser ----------------------------------------------------------------------------------


def _add_log_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("logging (stderr)")
    g.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="show fetch, cache and trust decisions (-vv: also response headers)",
    )
    g.add_argument(
        "--log-level",
        choices=("debug", "info", "warning", "error"),
        help="level of the secsipid loggers (overrides -v)",
    )


def _add_fetch_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fetching the certificate from info")
    g.add_argument(
        "--timeout", type=_positive_seconds, default=5.0, help="total seconds per fetch (5)"
    )
    g.add_argument("--allow-http", action="store_true", help="accept http:// URLs (labs)")
    g.add_argument(
        "--allow-private",
        action="store_true",
        help="accept loopback/private/special-purpose destinations (labs)",
    )
    g.add_argument("--tls-ca-file", help="CA bundle for the HTTPS server (default: system)")
    g.add_argument(
        "--max-size",
        type=_int_at_least(1, "bytes"),
        default=65536,
        help="body cap in bytes (65536)",
    )


def _add_cache_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("certificate cache")
    g.add_argument("--cache-dir", help="directory cache for fetched certificates")
    g.add_argument(
        "--cache-naming",
        choices=("secsipid", "libsecsipid"),
        default="secsipid",
        help="file names in --cache-dir: ours (default), or libsecsipid's (share the directory "
        "with the native Kamailio module / secsipidx)",
    )
    g.add_argument(
        "--cache-expire",
        type=_int_at_least(0, "seconds"),
        default=3600,
        help="seconds to keep a certificate whose response sets no lifetime (3600)",
    )


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
    parser = _Parser(
        prog="secsipid",
        description="STIR/SHAKEN: sign and verify PASSporTs and SIP Identity headers.",
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"secsipid {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "sign",
        help="sign a SHAKEN (or div, rcd) PASSporT and print the Identity header value",
        description="Sign a SHAKEN PASSporT and print the full Identity header value "
        "(<jws>;info=<x5u>;alg=ES256;ppt=shaken), with Rich Call Data when --rcd-nam is given. "
        "--ppt div signs the div PASSporT of a retargeted call (RFC 8946), --ppt rcd an rcd "
        "PASSporT (RFC 9795). With --header/--payload, sign given JSON "
        "(any ppt) and print the token, or the Identity value when --x5u is given.",
        allow_abbrev=False,
    )
    p.add_argument("--orig-tn", help="calling number (separators and sip:/tel: URIs accepted)")
    p.add_argument("--dest-tn", action="append", help="called number; repeat for several (sorted)")
    p.add_argument(
        "--ppt",
        choices=("shaken", "div", "div-o", "rcd"),
        default="shaken",
        help="PASSporT type: shaken (default), div/div-o for a retargeted call (RFC 8946: "
        "--dest-tn is the new target), rcd for Rich Call Data alone (RFC 9795)",
    )
    p.add_argument("--div-tn", help="div: the number the call is diverted from (original dest)")
    p.add_argument(
        "--original",
        help="div/div-o: the original Identity value or PASSporT (or @FILE): orig and iat "
        "are copied from it, div is its dest (div-o also carries it in opt)",
    )
    p.add_argument("--attest", choices=("A", "B", "C"), help="attestation level")
    p.add_argument("--x5u", help="URL of the signing certificate (becomes info=<...>)")
    p.add_argument("--key", required=True, help="EC P-256 private key (PEM or DER)")
    p.add_argument("--origid", help="origination identifier UUID (default: a new UUID4)")
    p.add_argument(
        "--iat", type=_int_at_least(0, "seconds"), help="issued-at, seconds since 1970 (now)"
    )
    p.add_argument("--header", help="JWS header JSON text, or @FILE")
    p.add_argument("--payload", help="JWS payload JSON text, or @FILE")
    p.add_argument(
        "--verbatim",
        action="store_true",
        help="sign --header/--payload text byte for byte (default: canonical JSON, RFC 8225 §9)",
    )
    p.add_argument("--random-k", action="store_true", help="random ECDSA nonce instead of RFC 6979")
    g = p.add_argument_group("Rich Call Data (RFC 9795; shaken or --ppt rcd)")
    g.add_argument("--rcd-nam", help="display name (required for RCD)")
    g.add_argument("--rcd-apn", help="alternate presentation number")
    g.add_argument("--rcd-icn", help="URL of the caller's icon/logo")
    g.add_argument("--rcd-jcd", help="jCard JSON (RFC 7095) inline, or @FILE")
    g.add_argument("--rcd-jcl", help="URL of the caller's jCard")
    g.add_argument("--crn", help="call reason")
    g.add_argument(
        "--rcd-content",
        action="append",
        metavar="URL=FILE",
        help="content behind an RCD URL (or /jcl/... pointer), digested into rcdi; repeatable",
    )
    _add_log_options(p)
    p.set_defaults(func=_cmd_sign)

    p = sub.add_parser(
        "check",
        help="verify Identity header value(s)",
        description="Verify Identity header value(s). Exit 0 when valid, 1 when invalid, "
        "2 on usage errors. VALUE may hold several comma-joined values; '-' or nothing reads "
        "stdin (one value or header line per line, all for one request; with --each, one "
        "request per line).",
        allow_abbrev=False,
    )
    p.add_argument("value", nargs="?", help="Identity header value, or - for stdin")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--cert", help="certificate of the signer (default: fetch from info)")
    key.add_argument("--pubkey", help="public key of the signer (default: fetch from info)")
    _add_fetch_options(p)
    _add_cache_options(p)
    p.add_argument(
        "--redis", metavar="URL", help="certificate cache shared by a cluster (redis://host/0)"
    )
    _add_trust_options(p)
    p.add_argument(
        "--expire",
        type=_int_at_least(0, "seconds"),
        default=300,
        help="max age of iat in seconds (300)",
    )
    p.add_argument(
        "--future-skew",
        type=_int_at_least(0, "seconds"),
        default=5,
        help="max iat in the future (5 s)",
    )
    p.add_argument("--orig-tn", help="calling number to match orig (from PAI/From)")
    p.add_argument(
        "--dest-tn", action="append", help="called number to match dest (To/R-URI); repeatable"
    )
    p.add_argument("--strict", action="store_true", help="also reject non-canonical forms")
    p.add_argument(
        "--fetch-rcd",
        action="store_true",
        help="fetch Rich Call Data URLs (icn, jcl) covered by rcdi and check their digests",
    )
    p.add_argument("--now", type=_epoch_seconds, help="verify as of this time (seconds since 1970)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--each",
        action="store_true",
        help="each stdin line is one request: print one JSON object per line (JSON lines)",
    )
    _add_log_options(p)
    p.set_defaults(func=_cmd_check)

    p = sub.add_parser(
        "fetch",
        help="download a certificate from a URL through the fetch policy and describe it",
        description="Fetch URL (an x5u/info URL) with the same safety policy as verification "
        "and print the chain, its TNAuthList and the cache lifetime as JSON; with trust options, "
        "also whether it validates (exit 1 when not).",
        allow_abbrev=False,
    )
    p.add_argument("url")
    _add_fetch_options(p)
    _add_trust_options(p)
    _add_log_options(p)
    p.set_defaults(func=_cmd_fetch)

    p = sub.add_parser(
        "decode",
        help="print header, claims and parameters as JSON lines, without verifying",
        description="Decode Identity header value(s) without verifying anything: one JSON "
        "object per value, one per line (JSON lines). Exit 1 when a part of a value could "
        "not be decoded (its 'errors' say which); what could be decoded is printed.",
        allow_abbrev=False,
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
        "and the root (root-crl.pem). Existing files are kept unless --force.",
        allow_abbrev=False,
    )
    p.add_argument("--ca", action="store_true", help="root -> intermediate -> leaf lab PKI")
    p.add_argument("--tn", action="append", help="--ca: a TN in the leaf's TNAuthList")
    p.add_argument("--range", action="append", help="--ca: START:COUNT TN range (RFC 9060)")
    p.add_argument("--crl-url", help="--ca: CRL distribution point URL in the certificates")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--cn", help="certificate common name (default: 'SHAKEN <spc>')")
    p.add_argument("--spc", help="Service Provider Code for the TNAuthList extension")
    p.add_argument(
        "--days", type=_int_at_least(1, "days"), default=365, help="validity in days (365)"
    )
    p.add_argument("--force", action="store_true", help="replace existing key and certificates")
    p.set_defaults(func=_cmd_keygen)

    p = sub.add_parser(
        "kamailio-example",
        help="print a Kamailio example (kamailio.cfg, sti_as, sti_vs, redirect)",
        description="Print one of the Kamailio examples shipped with the package (the files "
        "of examples/kamailio/), e.g. 'secsipid kamailio-example sti_vs > sti_vs.py'; without "
        "NAME, list them and where they are. See docs/kamailio.md.",
        allow_abbrev=False,
    )
    p.add_argument("name", nargs="?", help="sti_as, sti_vs, redirect or kamailio.cfg")
    p.set_defaults(func=_cmd_kamailio_example)

    p = sub.add_parser(
        "sx",
        help="secsipidx-compatible command line (-check, -sign-full, -sign, ...)",
        description="secsipidx's flags and exit codes, for scripts written for secsipidx: "
        "e.g. 'secsipid sx -check -fidentity id.txt -fpubkey pub.pem -expire 300'. "
        "'secsipid sx -help' lists the flags; docs/cli.md has the mapping.",
        add_help=False,
        prefix_chars="\0",
    )
    p.add_argument("sx_args", nargs=argparse.REMAINDER, help="secsipidx flags")
    p.set_defaults(func=_cmd_sx)

    p = sub.add_parser(
        "demo",
        help="sign, serve the certificate on loopback, fetch it and verify",
        description="A self-contained demonstration on 127.0.0.1.",
        allow_abbrev=False,
    )
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    p.set_defaults(func=_cmd_demo)

    from .service.cli import add_parser as add_serve_parser  # the HTTP service's options

    add_serve_parser(sub)
    return parser


def _stdout_gone() -> None:
    """The reader of stdout went away: send whatever is still buffered to /dev/null, so that
    the interpreter's flush at exit does not fail again."""
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        with _logging(args):
            status: int = args.func(args)
        sys.stdout.flush()  # a reader that went away is noticed here, not at exit
    except _UsageError as exc:
        _fail("usage", str(exc))
    except (KeyLoadError, SigningError) as exc:
        _fail(exc.code, exc.message)
    except SecSIPIDError as exc:
        reason = getattr(exc, "reason", None)
        code = reason.value if reason is not None else exc.code
        _fail(exc.code, _with_hint(code, exc.message), EXIT_INVALID)
    except BrokenPipeError:
        _stdout_gone()
        return EXIT_PIPE
    except OSError as exc:  # an output directory or input file the command cannot use
        where = f"{exc.filename}: " if exc.filename else ""
        _fail("os-error", f"{where}{exc.strerror or exc}")
    except ValueError as exc:  # a value the library refuses that no option check caught
        _fail("usage", str(exc))
    return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
