"""Configuration of ``secsipid serve``: a TOML file plus command-line flags.

Configuration is data (DESIGN.md): :class:`ServiceConfig` is a frozen object built once from
the merged TOML document and flags, and :func:`build_state` turns it into the objects the
HTTP app uses (signers, verifier, tokens).  Every problem found on the way is collected and
reported as one line each (:class:`ConfigError`), so an operator fixes them all at once::

    secsipid serve: config: signing.key: /etc/secsipid/key.pem: no such file
    secsipid serve: config: listen: 'localhost:99999' is not HOST:PORT with a port in 1..65535

The TOML layout (every key optional; flags override the file)::

    listen = "127.0.0.1:8088"          # --listen
    workers = 2                        # --workers (default: one per core)

    [signing]                          # the STI-AS side
    key = "/etc/secsipid/key.pem"      # --key
    x5u = "https://cert.example.net/sti.pem"   # --x5u
    cert = "/etc/secsipid/cert.pem"    # optional local copy of the x5u certificate
    token_file = "/etc/secsipid/tokens"        # --token-file: bearer tokens, one a line

    [[signing.profiles]]               # several keys: chosen per SPC or calling-number prefix
    spc = "1234"
    key = "/etc/secsipid/1234/key.pem"
    x5u = "https://cert.example.net/1234.pem"
    prefixes = ["1215", "1267"]

    [verification]                     # the STI-VS side
    cert = "/etc/secsipid/peer.pem"    # --cert: verify with this file instead of info
    expire = 300                       # --expire
    ca_file = "/etc/secsipid/sti-pa-roots.pem"   # --ca-file (and ca_dir, crl_files, ...)
    fetch_rcd = false                  # --fetch-rcd: check rcdi of RCD content behind URLs

    [cache]                            # fetched certificates
    backend = "memory"                 # "memory" (this machine) or "redis" (a cluster)
    dir = "/var/cache/secsipid"        # --cache-dir
    redis = "redis://10.0.0.5:6379/0"  # --redis: shared by the instances (backend "redis")
    redis_secret_file = "/etc/secsipid/redis-secret"  # optional: values authenticated

    [server]
    pub_dir = "/srv/secsipid/pub"      # --pub-dir: served at /v1/pub/<file>
    access_log = false                 # --access-log
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .._identity import DEFAULT_MAX_IDENTITY_SIZE, is_absolute_uri

__all__ = [
    "CACHE_BACKENDS",
    "ConfigError",
    "ServiceConfig",
    "SigningProfileConfig",
    "is_loopback",
    "load_config",
    "parse_listen",
]

DEFAULT_PORT = 8088
# An Identity value is capped at 8 KiB (DEFAULT_MAX_IDENTITY_SIZE); a JSON request carrying one
# needs a little more for its other members.
DEFAULT_MAX_BODY = DEFAULT_MAX_IDENTITY_SIZE + 1024
# A client gets this long to send its request headers, then its body (slow-client defence).
DEFAULT_HEADER_TIMEOUT = 10.0
DEFAULT_BODY_TIMEOUT = 10.0
# Granian's I/O threads per worker (HTTP parsing and sockets; the app runs on one Python
# thread per worker whatever this is).
DEFAULT_RUNTIME_THREADS = 1
# How long a stopping worker lets requests in progress finish.
DEFAULT_GRACEFUL_TIMEOUT = 10.0
# Where fetched certificates are shared: this machine (memory, plus cache.dir), or a cluster
# through Redis/Valkey (cache.redis; docs/cluster.md).
CACHE_BACKENDS = ("memory", "redis")


class ConfigError(Exception):
    """The configuration is not usable; ``problems`` holds one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (127.0.0.0/8, ::1) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` to (host, port); raises ValueError."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"{value!r} is not HOST:PORT")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"{value!r}: port must be in 1..65535")
    if host.startswith("["):
        if not host.endswith("]"):
            raise ValueError(f"{value!r} is not HOST:PORT")
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as exc:
            raise ValueError(f"{value!r}: {host!r} is not an IPv6 address") from exc
        return host, port
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost" and not all(
            label and label.replace("-", "").isalnum() for label in host.split(".")
        ):
            raise ValueError(f"{value!r}: {host!r} is not an address or host name") from None
    return host, port


@dataclass(frozen=True, slots=True, kw_only=True)
class SigningProfileConfig:
    """One signing key: its x5u, and when it is used (an SPC, calling-number prefixes)."""

    key: str
    x5u: str | None = None
    cert: str | None = None
    spc: str | None = None
    prefixes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServiceConfig:
    """Everything ``secsipid serve`` is told, validated for form (files are checked by
    :func:`~secsipid.service.state.build_state`).  Immutable; never holds a secret: tokens
    stay in their file and are read when the state is built."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    workers: int = 1
    # signing
    key: str | None = None
    x5u: str | None = None
    sign_cert: str | None = None
    profiles: tuple[SigningProfileConfig, ...] = ()
    token_file: str | None = None
    # verification
    cert: str | None = None
    expire: int = 300
    future_skew: int = 5
    strict: bool = False
    timeout: float = 5.0
    allow_http: bool = False
    allow_private: bool = False
    tls_ca_file: str | None = None
    max_size: int = 65536
    ca_file: str | None = None
    ca_dir: str | None = None
    system_cas: bool = False
    intermediates: str | None = None
    crl_files: tuple[str, ...] = ()
    fetch_crls: bool = False
    require_crl: bool = False
    require_tnauthlist: bool = True
    verify_cert: bool = True
    fetch_rcd: bool = False
    # cache
    cache_backend: str = "memory"
    cache_dir: str | None = None
    cache_ttl: float = 3600.0
    cache_redis: str | None = None
    cache_redis_secret_file: str | None = None
    # server
    pub_dir: str | None = None
    max_body: int = DEFAULT_MAX_BODY
    header_timeout: float = DEFAULT_HEADER_TIMEOUT
    body_timeout: float = DEFAULT_BODY_TIMEOUT
    keep_alive: bool = True
    backlog: int = 1024
    max_concurrency: int | None = None
    runtime_threads: int = DEFAULT_RUNTIME_THREADS
    graceful_timeout: float = DEFAULT_GRACEFUL_TIMEOUT
    access_log: bool = False
    metrics: bool = True
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    # where it came from (for reloads)
    config_file: str | None = None
    overrides: tuple[tuple[str, Any], ...] = field(default=(), repr=False)

    @property
    def listen(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    @property
    def signing_enabled(self) -> bool:
        return bool(self.key or self.profiles)

    @property
    def mtls(self) -> bool:
        return bool(self.tls_client_ca)


# -- the TOML document and the flags -------------------------------------------------------------

# Where each setting lives in the TOML document: dotted path -> ServiceConfig field.
_TOML_KEYS: dict[str, str] = {
    "listen": "listen",
    "workers": "workers",
    "signing.key": "key",
    "signing.x5u": "x5u",
    "signing.cert": "sign_cert",
    "signing.token_file": "token_file",
    "signing.profiles": "profiles",
    "verification.cert": "cert",
    "verification.expire": "expire",
    "verification.future_skew": "future_skew",
    "verification.strict": "strict",
    "verification.timeout": "timeout",
    "verification.allow_http": "allow_http",
    "verification.allow_private": "allow_private",
    "verification.tls_ca_file": "tls_ca_file",
    "verification.max_size": "max_size",
    "verification.ca_file": "ca_file",
    "verification.ca_dir": "ca_dir",
    "verification.system_cas": "system_cas",
    "verification.intermediates": "intermediates",
    "verification.crl_files": "crl_files",
    "verification.fetch_crls": "fetch_crls",
    "verification.require_crl": "require_crl",
    "verification.require_tnauthlist": "require_tnauthlist",
    "verification.verify_cert": "verify_cert",
    "verification.fetch_rcd": "fetch_rcd",
    "cache.backend": "cache_backend",
    "cache.dir": "cache_dir",
    "cache.default_ttl": "cache_ttl",
    "cache.redis": "cache_redis",
    "cache.redis_secret_file": "cache_redis_secret_file",
    "server.pub_dir": "pub_dir",
    "server.max_body": "max_body",
    "server.header_timeout": "header_timeout",
    "server.body_timeout": "body_timeout",
    "server.keep_alive": "keep_alive",
    "server.backlog": "backlog",
    "server.max_concurrency": "max_concurrency",
    "server.runtime_threads": "runtime_threads",
    "server.graceful_timeout": "graceful_timeout",
    "server.access_log": "access_log",
    "server.metrics": "metrics",
    "server.tls_cert": "tls_cert",
    "server.tls_key": "tls_key",
    "server.tls_client_ca": "tls_client_ca",
}
_SETTING_NAME = {v: k for k, v in _TOML_KEYS.items()}
_FIELD_TYPES = {f.name: f.type for f in fields(ServiceConfig)}
_STR = ("str | None", "str")
_PROFILE_KEYS = {"key", "x5u", "cert", "spc", "prefixes"}


def _flatten(doc: Mapping[str, Any], problems: list[str]) -> dict[str, Any]:
    """TOML document -> {field name: value}; unknown keys are problems (typos must not pass
    silently: a misspelt ``ca_file`` would otherwise turn validation off)."""
    flat: dict[str, Any] = {}

    def walk(table: Mapping[str, Any], prefix: str) -> None:
        for name, value in table.items():
            path = f"{prefix}{name}"
            if path in _TOML_KEYS:
                flat[_TOML_KEYS[path]] = value
            elif isinstance(value, Mapping) and any(k.startswith(path + ".") for k in _TOML_KEYS):
                walk(value, path + ".")
            else:
                problems.append(f"{path}: unknown setting")

    walk(doc, "")
    return flat


def _check_type(name: str, value: Any, problems: list[str]) -> Any:
    """``value`` converted to the field's type, or a problem line and None."""
    kind = str(_FIELD_TYPES[name])
    setting = _SETTING_NAME.get(name, name)
    if kind == "bool":
        if isinstance(value, bool):
            return value
    elif kind in ("int", "int | None"):
        if type(value) is int:
            return value
    elif kind == "float":
        if type(value) in (int, float):
            return float(value)
    elif kind in _STR:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, str):
            problems.append(f"{setting}: must not be empty")
            return None
    elif kind == "tuple[str, ...]":
        if isinstance(value, str):
            value = [value]
        if isinstance(value, list | tuple) and all(isinstance(v, str) and v for v in value):
            return tuple(value)
    else:  # pragma: no cover - a field added without a type rule
        raise AssertionError(f"no type rule for {name}: {kind}")
    problems.append(f"{setting}: {value!r} is not a valid {kind.replace(' | None', '')}")
    return None


def _profiles(value: Any, problems: list[str]) -> tuple[SigningProfileConfig, ...]:
    if not isinstance(value, list):
        problems.append("signing.profiles: must be an array of tables ([[signing.profiles]])")
        return ()
    found = []
    for i, item in enumerate(value):
        where = f"signing.profiles[{i}]"
        if not isinstance(item, Mapping):
            problems.append(f"{where}: must be a table")
            continue
        for name in sorted(set(item) - _PROFILE_KEYS):
            problems.append(f"{where}.{name}: unknown setting")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            problems.append(f"{where}.key: a key file is required")
            continue
        texts = {}
        for name in ("x5u", "cert", "spc"):
            v = item.get(name)
            if v is not None and (not isinstance(v, str) or not v):
                problems.append(f"{where}.{name}: {v!r} is not a non-empty string")
                v = None
            texts[name] = v
        prefixes = item.get("prefixes", ())
        if isinstance(prefixes, str):
            prefixes = [prefixes]
        if not isinstance(prefixes, list | tuple) or not all(
            isinstance(p, str) and p.isdigit() for p in prefixes
        ):
            problems.append(f"{where}.prefixes: must be a list of digit strings")
            prefixes = ()
        found.append(
            SigningProfileConfig(
                key=key,
                x5u=texts["x5u"],
                cert=texts["cert"],
                spc=texts["spc"],
                prefixes=tuple(prefixes),
            )
        )
    return tuple(found)


def _read_toml(path: str, problems: list[str]) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        problems.append(f"config: {path}: no such file")
    except OSError as exc:
        problems.append(f"config: {path}: {exc.strerror or exc}")
    except tomllib.TOMLDecodeError as exc:
        problems.append(f"config: {path}: not valid TOML: {exc}")
    except UnicodeDecodeError as exc:
        problems.append(f"config: {path}: not UTF-8 text: {exc.reason}")
    return {}


def load_config(
    config_file: str | None = None, overrides: Mapping[str, Any] | None = None
) -> ServiceConfig:
    """The configuration from a TOML file (optional) and flag ``overrides`` (field name ->
    value, for flags the user gave).  Raises :class:`ConfigError` listing every problem of
    form; files are checked later, by ``build_state``."""
    problems: list[str] = []
    values: dict[str, Any] = {"workers": os.cpu_count() or 1}
    if config_file:
        values.update(_flatten(_read_toml(config_file, problems), problems))
    given = dict(overrides or {})
    values.update(given)
    listen = values.pop("listen", None)
    if listen is not None:
        if not isinstance(listen, str):
            problems.append(f"listen: {listen!r} is not HOST:PORT")
        else:
            try:
                values["host"], values["port"] = parse_listen(listen)
            except ValueError as exc:
                problems.append(f"listen: {exc}")
    if "profiles" in values:
        values["profiles"] = _profiles(values["profiles"], problems)
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name in ("host", "port", "profiles"):
            checked[name] = value
            continue
        if name not in _FIELD_TYPES or name in ("config_file", "overrides"):
            problems.append(f"{name}: unknown setting")
            continue
        if value is None:
            continue
        converted = _check_type(name, value, problems)
        if converted is not None:
            checked[name] = converted
    _check_values(checked, problems)
    if problems:
        raise ConfigError(problems)
    return ServiceConfig(**checked, config_file=config_file, overrides=tuple(sorted(given.items())))


def _check_values(v: dict[str, Any], problems: list[str]) -> None:
    """Range and consistency rules that need no file access."""

    def positive(name: str, upper: float | None = None) -> None:
        if name in v and (v[name] <= 0 or (upper is not None and v[name] > upper)):
            limit = f" and at most {upper:g}" if upper is not None else ""
            problems.append(f"{_SETTING_NAME.get(name, name)}: must be positive{limit}")

    positive("workers", 256)
    positive("timeout", 300)
    positive("max_size")
    positive("max_body", 1 << 20)
    positive("header_timeout", 3600)
    positive("body_timeout", 3600)
    positive("graceful_timeout", 3600)
    positive("backlog", 65535)
    positive("max_concurrency")
    positive("runtime_threads", 64)
    for name in ("expire", "future_skew"):
        if name in v and v[name] < 0:
            problems.append(f"{_SETTING_NAME[name]}: must not be negative")
    if v.get("cache_ttl", 0) < 0:
        problems.append("cache.default_ttl: must not be negative")
    if v.get("cache_redis") and "cache_backend" not in v:
        v["cache_backend"] = "redis"  # a Redis URL alone turns the shared cache on
    backend = v.get("cache_backend", "memory")
    if backend not in CACHE_BACKENDS:
        problems.append(
            f"cache.backend: {v['cache_backend']!r} is not one of {', '.join(CACHE_BACKENDS)}"
        )
    elif backend == "redis" and not v.get("cache_redis"):
        problems.append('cache.backend "redis" needs cache.redis (a redis:// URL)')
    elif backend == "memory" and v.get("cache_redis"):
        problems.append('cache.redis is given but cache.backend is "memory"')
    x5u = v.get("x5u")
    if x5u is not None and not is_absolute_uri(x5u):
        problems.append(f"signing.x5u: {x5u!r} is not an absolute URL")
    for i, profile in enumerate(v.get("profiles", ())):
        if profile.x5u is not None and not is_absolute_uri(profile.x5u):
            problems.append(f"signing.profiles[{i}].x5u: {profile.x5u!r} is not an absolute URL")
    if bool(v.get("tls_cert")) != bool(v.get("tls_key")):
        problems.append("server.tls_cert and server.tls_key go together")
    if v.get("tls_client_ca") and not v.get("tls_cert"):
        problems.append("server.tls_client_ca (mTLS) needs server.tls_cert and server.tls_key")
