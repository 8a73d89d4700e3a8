"""The ``secsipid serve`` command: flags, validation at start, the HTTP server and its workers.

The main process validates the whole configuration first (one line per problem, exit 2), then
runs Granian with one worker process per core.  SIGHUP to the main process re-validates and,
if the configuration builds, touches a stamp file that every worker watches: each worker
rebuilds its state in place, between requests, without restarting and without closing a
connection.  A configuration that does not build is refused with its problems logged, and the
service goes on with the old one.  Workers also pick up changed key, certificate, token and
configuration files by themselves (checked once a second).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import ServiceConfig

__all__ = ["add_parser", "run", "serve"]

EXIT_OK, EXIT_USAGE = 0, 2

# argparse dest -> ServiceConfig field, for flags whose names differ from the field.
_FLAG_FIELDS = {
    "crl_file": "crl_files",
    "no_tnauthlist": "require_tnauthlist",
    "no_verify_cert": "verify_cert",
    "no_keep_alive": "keep_alive",
    "no_metrics": "metrics",
    "redis": "cache_redis",
}
_NEGATIVE = {"no_tnauthlist", "no_verify_cert", "no_keep_alive", "no_metrics"}
_NOT_SETTINGS = {"command", "func", "config", "check_config"}


def _flag(group: Any, *names: str, **kwargs: Any) -> None:
    """Every flag defaults to None, so that only the flags given override the file."""
    if kwargs.pop("switch", False):
        kwargs.update(action="store_const", const=True)
    group.add_argument(*names, default=None, **kwargs)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``secsipid`` sub-command parser."""
    p: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="run the STI-AS/STI-VS HTTP service (ATIS-1000082 and secsipidx endpoints)",
        description="Run the signing and verification HTTP service: POST /v1/check, "
        "/v1/sign-csv (secsipidx-compatible), /stir/v1/signing, /stir/v1/verification "
        "(ATIS-1000082), /v1/verify, /v1/sign (JSON, with div and Rich Call Data), GET "
        "/v1/pub/<file>, /healthz, /metrics, /openapi.json. Flags override the TOML file given "
        "with --config. See docs/service.md.",
    )
    p.add_argument("--config", help="TOML configuration file")
    p.add_argument(
        "--check-config", action="store_true", help="validate the configuration and exit"
    )
    g = p.add_argument_group("server")
    _flag(g, "--listen", metavar="HOST:PORT", help="address to listen on (127.0.0.1:8088)")
    _flag(g, "--workers", type=int, metavar="N", help="worker processes (one per core)")
    _flag(g, "--pub-dir", help="directory served at /v1/pub/<file> (like secsipidx -http-dir)")
    _flag(g, "--max-body", type=int, metavar="BYTES", help="request body limit (9216)")
    _flag(g, "--header-timeout", type=float, metavar="S", help="request header deadline (10)")
    _flag(g, "--body-timeout", type=float, metavar="S", help="request body deadline (10)")
    _flag(g, "--no-keep-alive", switch=True, help="close every connection after one response")
    _flag(g, "--backlog", type=int, help="listen backlog (1024)")
    _flag(g, "--max-concurrency", type=int, metavar="N", help="requests in progress per worker")
    _flag(g, "--runtime-threads", type=int, metavar="N", help="HTTP I/O threads per worker (1)")
    _flag(g, "--graceful-timeout", type=float, metavar="S", help="drain time on stop (10)")
    _flag(g, "--access-log", switch=True, help="one JSON line per request on stdout")
    _flag(g, "--no-metrics", switch=True, help="no /metrics endpoint")
    _flag(g, "--tls-cert", help="serve HTTPS with this certificate chain (PEM)")
    _flag(g, "--tls-key", help="the private key of --tls-cert")
    _flag(g, "--tls-client-ca", help="require client certificates from this CA (mTLS)")
    g = p.add_argument_group("signing (STI-AS)")
    _flag(g, "--key", help="EC P-256 signing key (like secsipidx -fprvkey)")
    _flag(g, "--x5u", help="default x5u URL of the signing certificate")
    _flag(g, "--sign-cert", help="the certificate of --key, checked to match it at start")
    _flag(g, "--token-file", help="bearer tokens for the signing endpoints, one per line")
    g = p.add_argument_group("verification (STI-VS)")
    _flag(g, "--cert", help="verify with this certificate or public key (like -fpubkey)")
    _flag(g, "--expire", type=int, metavar="S", help="max age of iat in seconds (300)")
    _flag(g, "--future-skew", type=int, metavar="S", help="max iat in the future (5)")
    _flag(g, "--strict", switch=True, help="also reject non-canonical forms")
    _flag(g, "--fetch-rcd", switch=True, help="also check rcdi of RCD content behind URLs")
    g = p.add_argument_group("fetching the certificate from info")
    _flag(g, "--timeout", type=float, help="total seconds per fetch (5)")
    _flag(g, "--allow-http", switch=True, help="accept http:// URLs (labs)")
    _flag(g, "--allow-private", switch=True, help="accept loopback/private destinations (labs)")
    _flag(g, "--tls-ca-file", help="CA bundle for HTTPS certificate servers (default: system)")
    _flag(g, "--max-size", type=int, help="certificate body cap in bytes (65536)")
    _flag(g, "--cache-dir", help="directory cache for fetched certificates")
    _flag(g, "--redis", metavar="URL", help="certificate cache shared by a cluster (redis://...)")
    g = p.add_argument_group("trust (chain validation)")
    _flag(g, "--ca-file", help="trust anchors: PEM bundle (the STI-PA trust list)")
    _flag(g, "--ca-dir", help="trust anchors: directory of PEM/DER certificates")
    _flag(g, "--system-cas", switch=True, help="also trust the system CAs")
    _flag(g, "--intermediates", help="extra intermediate CA certificates (PEM)")
    _flag(g, "--crl-file", action="append", help="CRL file (PEM or DER); repeatable")
    _flag(g, "--fetch-crls", switch=True, help="fetch CRL distribution points")
    _flag(g, "--require-crl", switch=True, help="refuse unknown revocation status")
    _flag(g, "--no-tnauthlist", switch=True, help="do not require TNAuthList")
    _flag(g, "--no-verify-cert", switch=True, help="accept any certificate from info (labs)")
    p.set_defaults(func=run)
    return p


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the user gave as flags (field name -> value)."""
    found: dict[str, Any] = {}
    for dest, value in vars(args).items():
        if dest in _NOT_SETTINGS or value is None:
            continue
        name = _FLAG_FIELDS.get(dest, dest)
        found[name] = (not value) if dest in _NEGATIVE else value
    return found


def _err(line: str) -> None:
    print(f"secsipid serve: {line}", file=sys.stderr, flush=True)


def _validate(config_file: str | None, overrides: dict[str, Any]) -> ServiceConfig | None:
    from .config import ConfigError, load_config
    from .state import build_state

    try:
        config = load_config(config_file, overrides)
        state = build_state(config)
    except ConfigError as exc:
        for problem in exc.problems:
            _err(f"config: {problem}")
        return None
    if state.verify_error is not None:
        _err(f"warning: {state.verify_error.message}")
    for path in sorted(state.published_secrets()):
        _err(f"warning: {path} is in server.pub_dir: never served there (not a certificate)")
    return config


def run(args: argparse.Namespace) -> int:
    config = _validate(args.config, overrides_from_args(args))
    if config is None:
        return EXIT_USAGE
    if args.check_config:
        print(f"secsipid serve: configuration OK (listen {config.listen})")
        return EXIT_OK
    return serve(config)


def serve(config: ServiceConfig) -> int:
    """Run the HTTP server for a validated configuration until SIGINT/SIGTERM."""
    try:
        from granian.constants import HTTPModes, Interfaces, Loops, RuntimeModes
        from granian.http import HTTP1Settings
        from granian.log import LogLevels
        from granian.server import Server
    except ImportError:
        _err("error: the HTTP server is not installed: pip install 'secsipid[service]'")
        return EXIT_USAGE
    from .app import SPEC_ENV
    from .metrics import MULTIPROC_ENV

    # Runtime files: the metrics of every worker and the reload stamp.  systemd's
    # RuntimeDirectory= provides a place; otherwise a private temporary directory.
    base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or None
    runtime = tempfile.mkdtemp(prefix="secsipid-serve-", dir=base)
    metrics_dir = os.path.join(runtime, "metrics")
    os.mkdir(metrics_dir)
    stamp = os.path.join(runtime, "reload")
    Path(stamp).write_text("0")
    # Before any worker imports prometheus_client (they are forked from this process, which
    # never imports it).
    os.environ[MULTIPROC_ENV] = metrics_dir
    spec = {
        "config_file": config.config_file,
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in config.overrides},
        "stamp_file": stamp,
    }
    os.environ[SPEC_ENV] = json.dumps(spec)
    loop = Loops.uvloop if importlib.util.find_spec("uvloop") else Loops.asyncio
    tls: dict[str, Any] = {}
    if config.tls_cert and config.tls_key:
        tls = {"ssl_cert": Path(config.tls_cert), "ssl_key": Path(config.tls_key)}
        if config.tls_client_ca:
            tls.update(ssl_ca=Path(config.tls_client_ca), ssl_client_verify=True)
    server = Server(
        "secsipid.service.app:create_app_from_env",
        factory=True,
        address=config.host,
        port=config.port,
        # Granian's own interface: a third less CPU per request than its ASGI (docs/service.md).
        interface=Interfaces.RSGI,
        workers=config.workers,
        # The app runs on one Python thread per worker: ECDSA holds the GIL, processes give
        # the parallelism; runtime_threads are Granian's I/O threads (docs/service.md has the
        # measurements of both).
        runtime_mode=RuntimeModes.st,
        runtime_threads=config.runtime_threads,
        loop=loop,
        http=HTTPModes.http1,
        websockets=False,
        backlog=config.backlog,
        backpressure=config.max_concurrency,
        http1_settings=HTTP1Settings(
            header_read_timeout=int(config.header_timeout * 1000), keep_alive=config.keep_alive
        ),
        log_level=LogLevels.warning,
        log_access=False,
        respawn_failed_workers=True,
        workers_kill_timeout=max(1, int(config.graceful_timeout)),
        **tls,
    )

    def reload(signum: int, frame: Any) -> None:
        if _validate(config.config_file, dict(config.overrides)) is None:
            _err("reload refused: the configuration above has problems; keeping the old one")
            return
        Path(stamp).write_text(str(time.time_ns()))
        _err("reload: configuration valid, workers reload it")

    def started() -> None:
        # Replaces Granian's own SIGHUP handling (respawning every worker) by an in-place
        # reload that keeps connections open.
        signal.signal(signal.SIGHUP, reload)
        scheme = "https" if tls else "http"
        _err(
            f"listening on {scheme}://{config.listen} with {config.workers} worker(s), "
            f"pid {os.getpid()}"
        )

    server.on_startup(started)
    try:
        server.serve()
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
    return EXIT_OK
