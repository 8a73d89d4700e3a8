"""secsipid for Kamailio: the ``secsipid`` module's functions for a KEMI Python script.

Kamailio's ``app_python3`` runs a Python routing script (KEMI).  This module gives that script
the functions of Kamailio's native ``secsipid`` module -- same names, same parameters, same
return convention (``1`` success, a negative number failure, never ``0``) -- working on the
current SIP message through ``KSR``, plus what the native module lacks: the full verdict in
variables, replies with a ``Reason`` header and the ATIS-1000074 ``verstat`` marking.

.. code-block:: python

    import KSR
    from secsipid import kamailio as secsipid

    def mod_init():
        secsipid.mod_init(expire=300, timeout=5, libopt=["CertVerify=0"])
        return Router()

    class Router:
        def child_init(self, rank):
            return secsipid.child_init(rank)

        def ksr_request_route(self, msg):
            if KSR.is_INVITE():
                if KSR.tm.t_newtran() <= 0:  # 0: a retransmission, absorbed by tm
                    return 1
                if secsipid.secsipid_check_identity("/etc/kamailio/stir/cert.pem") < 0:
                    secsipid.reply(secsipid.last_verdict())
                    return 1
            KSR.tm.t_relay()
            return 1

Settings (the native modparams ``expire``, ``timeout``, ``cache_dir``, ``cache_expire``,
``libopt``) are given once to :func:`mod_init`, in Kamailio's main process before it forks;
a bad setting raises :class:`ConfigError` there, so Kamailio refuses to start with a clear
message instead of failing on calls.  Keys and certificates are loaded once per process and
cached (reloaded only when the file changes); nothing reads a file per request.  No function
here lets an exception escape into Kamailio: bad input gives a negative return code and a log
line, never a dead worker.

String arguments may contain Kamailio pseudo-variables (``"$fU"``, ``"sip:$rU@$rd"``); they
are expanded with Kamailio's own PV engine, as the native module's parameters are.

Return values of the checking functions are libsecsipid's codes (``Verdict.lib_code``), so
logs and scripts written for the native module keep their meaning; see ``docs/kamailio.md``.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ParamSpec, TypeVar

from ._errors import KeyLoadError, SecSIPIDError, VerificationError
from ._fetch import Fetcher
from ._identity import split_comma_values
from ._keys import (
    Credential,
    credential_from_file,
    load_credential,
    load_private_key,
    private_key_from_file,
)
from ._passport import decode_token
from ._reasons import Reason
from ._shared import RedisCache
from ._signer import Signer, identity_for_json
from ._source import CertificateSource
from ._tn import canonical_tn
from ._trust import TrustPolicy
from ._verifier import Verdict, Verifier, VerifyPolicy

__all__ = [
    "LIBOPT_NAMES",
    "ConfigError",
    "Settings",
    "add_call_info",
    "add_verstat",
    "check_request",
    "child_init",
    "define",
    "define_int",
    "expand",
    "last_verdict",
    "mod_init",
    "preload_certificate",
    "preload_signing_key",
    "reason_header",
    "reply",
    "secsipid_add_div_identity",
    "secsipid_add_identity",
    "secsipid_add_identity_prvkey",
    "secsipid_add_verstat",
    "secsipid_build_identity",
    "secsipid_build_identity_prvkey",
    "secsipid_check",
    "secsipid_check_identity",
    "secsipid_check_identity_pubkey",
    "secsipid_get_url",
    "secsipid_get_val",
    "secsipid_reply",
    "secsipid_sign",
    "secsipid_sign_prvkey",
    "secsipid_verdict",
    "secsipid_verify",
    "settings",
    "verstat_uri",
]

log = logging.getLogger("secsipid.kamailio")

P = ParamSpec("P")
R = TypeVar("R")

#: Where the ``build``/``sign`` functions leave their result (the native module's
#: ``$secsipid(val)`` and ``$secsipid(ret)``).
VAL_VAR = "$var(secsipid_val)"
RET_VAR = "$var(secsipid_ret)"
#: Scratch variable for expanding strings that mix text and pseudo-variables.
_TMP_VAR = "$var(secsipid_tmp)"

#: libsecsipid option names accepted in ``libopt`` (case-insensitive), mapped to our settings.
LIBOPT_NAMES = {
    "cachedirpath": "cache_dir",
    "cacheexpire": "cache_expire",
    "cacheexpires": "cache_expire",
    "certverify": "cert_verify",
    "certcafile": "ca_file",
    "certcainter": "ca_inter",
    "certcrlfile": "crl_file",
    "x5u": "x5u",
}
_LIBOPT_INT = frozenset({"cache_expire", "cert_verify"})
_LIBOPT_FILE = frozenset({"ca_file", "ca_inter", "crl_file"})

_MAX_URL_BODY = 1 << 20
_CACHE_MAX = 64

#: Seconds between two checks (one ``stat()`` each) of a key or certificate file named in the
#: calls: a replaced file is used from the next call after at most this long.  In a Kamailio
#: worker a ``stat()`` per call costs ~20 µs of CPU (cold system call and path walk; measured
#: with ``bench/kamailio_ab.py``), a clock read does not.  0 checks on every call.
FILE_CHECK_INTERVAL = 1.0


class ConfigError(ValueError):
    """A setting given to :func:`mod_init` is not usable.  Raised at start, never per call."""


# -- KSR ---------------------------------------------------------------------------------------

_KSR: Any = None


def _ksr() -> Any:
    """Kamailio's ``KSR`` module, imported on first use (it exists only inside Kamailio)."""
    global _KSR
    if _KSR is None:
        import KSR  # type: ignore[import-not-found]

        _KSR = KSR
    return _KSR


def _set_ksr(ksr: Any) -> None:
    """Use another ``KSR`` object (unit tests run outside Kamailio with a fake one)."""
    global _KSR
    _KSR = ksr


def _log_err(message: str) -> None:
    try:
        _ksr().err("secsipid: " + message + "\n")
    except Exception:  # noqa: BLE001 - logging must never fail a call
        log.error("%s", message)


def _log_dbg(message: str) -> None:
    try:
        _ksr().dbg("secsipid: " + message + "\n")
    except Exception:  # noqa: BLE001
        log.debug("%s", message)


def _guard(default: R) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Never let an exception escape into Kamailio: log it and return ``default``."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - a worker must survive anything
                _log_err(f"{fn.__name__}: {type(exc).__name__}: {exc}")
                return default

        return guarded

    return wrap


# -- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """The native module's parameters, validated.  Build with :func:`mod_init`.

    ``cert_verify``/``ca_file``/``ca_inter``/``crl_file`` come from ``libopt`` (libsecsipid's
    ``CertVerify`` bitmask and files); ``x5u`` from ``libopt X5u`` is the default x5u when a
    signing call passes an empty one.  ``allow_http``/``allow_private`` let the certificate
    download use ``http://`` and private/loopback addresses (labs and tests; libsecsipid has no
    such restriction, ours refuses both by default).  ``redis``: the URL of the cluster's
    shared certificate cache (:class:`~secsipid.RedisCache`; empty: none).
    """

    expire: int = 300
    timeout: float = 5.0
    cache_dir: str = ""
    cache_expire: int = 3600
    cache_naming: str = "secsipid"
    cert_verify: int = 0
    ca_file: str = ""
    ca_inter: str = ""
    crl_file: str = ""
    x5u: str = ""
    allow_http: bool = False
    allow_private: bool = False
    libopt: tuple[str, ...] = field(default=())
    redis: str = ""


def _int_setting(name: str, value: object, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ConfigError(f"{name} must be an integer, not {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {number}")
    return number


def _parse_libopt(entries: Iterable[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, str) or "=" not in entry:
            raise ConfigError(f"libopt {entry!r}: expected name=value (e.g. CertVerify=1)")
        name, _, value = entry.partition("=")
        key = LIBOPT_NAMES.get(name.strip().lower())
        if key is None:
            known = (
                "CacheDirPath, CacheExpires, CertVerify, CertCAFile, CertCAInter, CertCRLFile, X5u"
            )
            raise ConfigError(f"libopt {entry!r}: unknown option {name.strip()!r} (known: {known})")
        value = value.strip()
        out[key] = _int_setting(f"libopt {name.strip()}", value) if key in _LIBOPT_INT else value
    return out


def _check_file(name: str, path: str) -> None:
    if path and not os.access(path, os.R_OK):
        raise ConfigError(f"{name} {path!r}: not a readable file")


def _build_settings(
    *,
    expire: object,
    timeout: object,
    cache_dir: object,
    cache_expire: object,
    libopt: str | Sequence[str] | None,
    allow_http: bool,
    cache_naming: object = "secsipid",
    allow_private: bool,
) -> Settings:
    entries = (libopt,) if isinstance(libopt, str) else tuple(libopt or ())
    opts = _parse_libopt(entries)
    if not isinstance(cache_dir, str):
        raise ConfigError(f"cache_dir must be a string, not {cache_dir!r}")
    if cache_naming not in ("secsipid", "libsecsipid"):
        raise ConfigError(
            f"cache_naming must be 'secsipid' or 'libsecsipid' (the native module's file names), "
            f"not {cache_naming!r}"
        )
    if isinstance(timeout, bool) or not isinstance(timeout, int | float | str):
        raise ConfigError(f"timeout must be a number of seconds, not {timeout!r}")
    try:
        timeout_s = float(timeout)
    except ValueError:
        raise ConfigError(f"timeout must be a number of seconds, not {timeout!r}") from None
    if not 0 < timeout_s <= 300:
        raise ConfigError(f"timeout must be between 0 and 300 seconds, not {timeout_s}")
    values: dict[str, Any] = {
        "expire": _int_setting("expire", expire),
        "timeout": timeout_s,
        "cache_dir": cache_dir,
        "cache_expire": _int_setting("cache_expire", cache_expire),
        "cache_naming": cache_naming,
    }
    # libopt wins over the plain parameters, as in libsecsipid (options are applied last).
    values.update(opts)
    directory = values["cache_dir"]
    if directory and not (os.path.isdir(directory) and os.access(directory, os.W_OK | os.X_OK)):
        raise ConfigError(f"cache_dir {directory!r}: not a writable directory")
    for key in _LIBOPT_FILE:
        _check_file(f"libopt {key}", values.get(key, ""))
    x5u = values.get("x5u", "")
    if x5u and not re.fullmatch(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+", x5u):
        raise ConfigError(f"libopt X5u {x5u!r}: not an absolute URI")
    if not 0 <= values.get("cert_verify", 0) < 64:
        raise ConfigError("libopt CertVerify: a bitmask of 1, 2, 4, 8, 16, 32 (0-63)")
    return Settings(
        **values,
        allow_http=allow_http,
        allow_private=allow_private,
        libopt=entries,
    )


class _CheckedFile:
    """The credential in a file for a :class:`Verifier`, checked for changes (one ``stat()``)
    at most every :data:`FILE_CHECK_INTERVAL` seconds.  Failures are not cached: a missing or
    unusable file is looked at again on the next call, with the core's codes."""

    __slots__ = ("_credential", "_next", "path")

    def __init__(self, path: str) -> None:
        self.path = path
        self._credential: Credential | None = None
        self._next = 0.0

    def credential_for(self, info: str) -> Credential:
        now = time.monotonic()
        credential = self._credential
        if credential is not None and now < self._next:
            return credential
        self._credential = None
        credential = credential_from_file(self.path)  # KeyLoadError: the Verifier maps it
        self._credential, self._next = credential, now + FILE_CHECK_INTERVAL
        return credential


class _State:
    """Per-process state: settings, verifiers and signers built on first use."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.policy = VerifyPolicy(expire=settings.expire)
        try:
            # libsecsipid applies CertVerify to key files and downloads alike; so do we.
            self.trust = TrustPolicy.from_libsecsipid(
                settings.cert_verify, settings.ca_file, settings.ca_inter, settings.crl_file
            )
        except ValueError as exc:
            raise ConfigError(f"libopt: {exc}") from exc
        self.verifiers: dict[str, Verifier] = {}
        self.pubkey_verifiers: dict[str, Verifier] = {}
        self.signers: dict[str, Signer] = {}
        self.path_signers: dict[str, tuple[float, object, Signer]] = {}
        self.source: CertificateSource | None = None
        self.last: Verdict | None = None
        self.value = ""
        self.ret = 0

    def info_source(self) -> CertificateSource:
        """The certificate source for an empty key path (download from ``info``): the fetch
        policy, caches and trust of the settings; built on first use in each worker."""
        if self.source is None:
            s = self.settings
            self.source = CertificateSource(
                trust=self.trust,
                timeout=s.timeout,
                cache_dir=s.cache_dir or None,
                cache_expire=s.cache_expire,
                cache_naming=s.cache_naming,
                allow_http=s.allow_http,
                allow_private=s.allow_private,
                redis=s.redis or None,
            )
        return self.source

    def verifier(self, key_path: str) -> Verifier:
        verifier = self.verifiers.get(key_path)
        if verifier is None:
            if key_path:
                verifier = Verifier(_CheckedFile(key_path), policy=self.policy, trust=self.trust)
            else:
                verifier = Verifier(self.info_source(), policy=self.policy)
            if len(self.verifiers) >= _CACHE_MAX:
                self.verifiers.clear()
            self.verifiers[key_path] = verifier
        return verifier

    def pubkey_verifier(self, pem: str) -> Verifier:
        verifier = self.pubkey_verifiers.get(pem)
        if verifier is None:
            credential: Credential = load_credential(pem.encode())
            verifier = Verifier(credential, policy=self.policy)
            if len(self.pubkey_verifiers) >= _CACHE_MAX:
                self.pubkey_verifiers.clear()
            self.pubkey_verifiers[pem] = verifier
        return verifier

    def signer_for_path(self, path: str) -> Signer:
        """The signer for a key file, checked for changes at most every
        :data:`FILE_CHECK_INTERVAL` (the file cache reloads a changed file and then hands out
        a new key object, which gets a new signer).  Failures are not cached."""
        now = time.monotonic()
        entry = self.path_signers.get(path)
        if entry is not None and now < entry[0]:
            return entry[2]
        key = private_key_from_file(path)
        signer = entry[2] if entry is not None and entry[1] is key else Signer(key)
        if entry is None and len(self.path_signers) >= _CACHE_MAX:
            self.path_signers.clear()
        self.path_signers[path] = (now + FILE_CHECK_INTERVAL, key, signer)
        return signer

    def signer_for_data(self, pem: str) -> Signer:
        signer = self.signers.get(pem)
        if signer is None:
            signer = Signer(load_private_key(pem.encode()))
            if len(self.signers) >= _CACHE_MAX:
                self.signers.clear()
            self.signers[pem] = signer
        return signer


_state: _State | None = None


def _st() -> _State:
    global _state
    if _state is None:
        _state = _State(Settings())
    return _state


def mod_init(
    *,
    expire: int = 300,
    timeout: float = 5,
    cache_dir: str = "",
    cache_expire: int = 3600,
    libopt: str | Sequence[str] | None = None,
    allow_http: bool = False,
    allow_private: bool = False,
    cache_naming: str = "secsipid",
    redis: str = "",
) -> Settings:
    """Configure the module once, from the script's ``mod_init()`` (Kamailio's main process).

    The parameters are the native modparams; ``libopt`` is one ``"Name=value"`` string or a
    list of them (``CertVerify``, ``CertCAFile``, ``CertCAInter``, ``CertCRLFile``,
    ``CacheDirPath``, ``CacheExpires``, ``X5u``).  ``cache_naming="libsecsipid"`` reads and
    writes ``cache_dir`` with the native module's file names, so both can share one directory
    while a cluster migrates.  ``redis`` (``"redis://host:6379/0"``) shares downloaded
    certificates and their fetches with the other processes and nodes using the same Redis
    (``pip install 'secsipid[redis]'``; Redis need not be up: without it each process
    fetches for itself).  Raises :class:`ConfigError` for anything
    unusable -- let it propagate: Kamailio then refuses to start and logs the message.
    Calling it again replaces the settings (and drops the caches built on them).
    """
    global _state
    new = _build_settings(
        expire=expire,
        timeout=timeout,
        cache_dir=cache_dir,
        cache_expire=cache_expire,
        libopt=libopt,
        allow_http=bool(allow_http),
        allow_private=bool(allow_private),
        cache_naming=cache_naming,
    )
    if redis:
        new = replace(new, redis=_check_redis(redis))
    _state = _State(new)
    return new


def _check_redis(url: object) -> str:
    """A usable Redis URL (its syntax and the client; nothing is connected here: a Redis
    that is down at startup is a slower cluster, not a reason to refuse to start)."""
    if not isinstance(url, str):
        raise ConfigError(f"redis must be a URL string, not {url!r}")
    try:
        RedisCache(url).close()
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"redis {url!r}: {exc}") from None
    return url


def child_init(rank: int) -> int:
    """Per-process initialisation (call from the script's ``child_init``); returns 0.

    Nothing is shared with the main process that should not be: verifiers and the certificate
    source are created lazily in each worker on first use.
    """
    del rank
    return 0


def settings() -> Settings:
    """The settings in force."""
    return _st().settings


def last_verdict() -> Verdict | None:
    """The :class:`Verdict` of the last check in this process (``None`` before any).

    Use it after a native-shaped call such as :func:`secsipid_check_identity` to reply or mark
    with the exact reason: ``if secsipid_check_identity(path) < 0: reply(last_verdict())``.
    """
    return _st().last


def define(name: str, default: str = "") -> str:
    """The value of a ``#!define NAME value`` of kamailio.cfg (or ``-A NAME=value``), without
    surrounding quotes; ``default`` when not defined.  Lets a KEMI script take its settings
    from kamailio.cfg: ``key = define("STIR_KEY", "/etc/kamailio/stir/key.pem")``."""
    value = _ksr().pv.get("$def(" + name + ")")
    if value is None:
        return default
    text = str(value).strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text


def define_int(name: str, default: int) -> int:
    """An integer ``#!define``; :class:`ConfigError` when it is not an integer."""
    text = define(name, "")
    return default if text == "" else _int_setting(name, text, minimum=-(2**31))


def preload_signing_key(path: str) -> None:
    """Load a private key now (in ``mod_init``): a missing or unusable key refuses the start
    with :class:`ConfigError` instead of failing every call.  The key stays cached for the
    workers (loaded before fork, reloaded only if the file changes), with its signer built
    under the settings in force (call it after :func:`mod_init`)."""
    try:
        _st().signer_for_path(path)
    except KeyLoadError as exc:
        raise ConfigError(f"signing key: {exc.message} ({exc.code})") from exc


def preload_certificate(path: str) -> None:
    """Load a public key or certificate file now; :class:`ConfigError` when unusable."""
    from ._keys import credential_from_file

    try:
        credential_from_file(path)
    except KeyLoadError as exc:
        raise ConfigError(f"certificate: {exc.message} ({exc.code})") from exc


# -- pseudo-variables --------------------------------------------------------------------------

_SIMPLE_PV = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*(?:\([^()$]*\))?")
_kinds: dict[str, int] = {}  # 0: literal, 1: one PV, 2: text mixed with PVs


def _kind(value: str) -> int:
    kind = _kinds.get(value)
    if kind is None:
        if "$" not in value:
            kind = 0
        elif _SIMPLE_PV.fullmatch(value) or _whole_paren_pv(value):
            kind = 1
        else:
            kind = 2
        if len(_kinds) >= 1024:
            _kinds.clear()
        _kinds[value] = kind
    return kind


def _whole_paren_pv(value: str) -> bool:
    """``$( ... )`` spanning the whole string (a PV with index or transformations)."""
    if not value.startswith("$("):
        return False
    depth = 0
    for i, c in enumerate(value[1:], 1):
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i == len(value) - 1
    return False


def _str(value: object) -> str:
    return "" if value is None else str(value)


def expand(value: str) -> str:
    """Expand the pseudo-variables in ``value`` as Kamailio does for module parameters.

    A string without ``$`` is returned as is; a single PV (``"$fU"``, ``"$(hdr(X)[*])"``) is
    read with ``KSR.pv.get``; text mixed with PVs (``"sip:$rU@$rd"``) goes through the ``pv``
    module's ``KSR.pvx.evalx``.  A PV that is not set expands to ``""``.
    """
    if not isinstance(value, str):
        return _str(value)
    kind = _kind(value)
    if kind == 0:
        return value
    ksr = _ksr()
    if kind == 1:
        return _str(ksr.pv.get(value))
    if ksr.pvx.evalx(_TMP_VAR, value) < 0:
        raise ValueError(f"cannot evaluate {value!r}")
    return _str(ksr.pv.get(_TMP_VAR))


# -- verification ------------------------------------------------------------------------------


def _request_identities() -> str:
    """All Identity header values of the current message (also the compact form ``y``)."""
    return _str(_ksr().pv.get("$(hdr(Identity)[*])"))


def _code(verdict: Verdict) -> int:
    """The native return convention: 1 valid, else libsecsipid's (negative) code."""
    if verdict.ok:
        return 1
    code = verdict.lib_code
    return code if code < 0 else -1


def _checked(verdict: Verdict) -> int:
    _st().last = verdict
    if not verdict.ok:
        _log_dbg(f"identity check failed: {verdict.reason.value}: {verdict.message}")
    return _code(verdict)


def _key_failed(exc: KeyLoadError) -> Verdict:
    """The verdict for a key value that cannot be loaded (same codes as the core's files)."""
    verdict = Verdict.from_error(VerificationError.from_key_error(exc))
    _st().last = verdict
    return verdict


def secsipid_check_identity(key_path: str) -> int:
    """Check the request's Identity header(s) with the key or certificate file ``key_path``,
    or, when it is empty, with the certificate downloaded from ``info`` (within ``timeout``).

    Returns 1 when one Identity header is valid; otherwise a negative libsecsipid code: -1 no
    Identity header, -232 stale (``expire``), -251 bad signature, -301 malformed, -305 missing
    or bad ``info``, ... (``docs/kamailio.md`` lists them all).  :func:`last_verdict` has the
    details.
    """
    # The hot path, written out as in secsipid_add_identity (~9 µs per call less).
    try:
        ksr = _KSR if _KSR is not None else _ksr()
        state = _state if _state is not None else _st()
        # A literal path is its own key in the verifier cache.
        literal = type(key_path) is str and "$" not in key_path
        verifier = state.verifiers.get(key_path) if literal else None
        if verifier is None:
            verifier = state.verifier(expand(key_path))
        value = ksr.pv.get("$(hdr(Identity)[*])")
        verdict = verifier.check("" if value is None else str(value))
        state.last = verdict
        return 1 if verdict.ok else _checked(verdict)
    except Exception as exc:  # noqa: BLE001 - a worker must survive anything
        _log_err(f"secsipid_check_identity: {type(exc).__name__}: {exc}")
        return -1


@_guard(-1)
def secsipid_check_identity_pubkey(pubkey: str) -> int:
    """Check the request's Identity header(s) with a public key (PEM) given as a value."""
    state = _st()
    try:
        verifier = state.pubkey_verifier(expand(pubkey))
    except KeyLoadError as exc:
        return _code(_key_failed(exc))
    return _checked(verifier.check(_request_identities()))


@_guard(-1)
def secsipid_check(identity: str, key_path: str) -> int:
    """Check the given Identity value (not the header) with ``key_path`` (empty: ``info``)."""
    return _checked(_st().verifier(expand(key_path)).check(expand(identity)))


@_guard(-1)
def secsipid_verify(identity: str, key_value: str, opts: str = "") -> int:
    """Check the given Identity value with a public key or certificate (PEM) given as a value.

    ``opts`` is accepted for compatibility; the native ``"A"`` (skip the JWS header attribute
    checks) is not honoured: the header is always checked (RFC 8224 §6.2).
    """
    if "A" in expand(opts):
        _log_dbg("secsipid_verify: option 'A' ignored, the PASSporT header is always checked")
    state = _st()
    try:
        verifier = state.pubkey_verifier(expand(key_value))
    except KeyLoadError as exc:
        return _code(_key_failed(exc))
    return _checked(verifier.check(expand(identity)))


def check_request(
    key_path: str = "",
    *,
    orig_tn: str | None = None,
    dest_tn: str | Sequence[str] | None = None,
) -> Verdict:
    """Check the request's Identity header(s) and return the :class:`Verdict` (never raises).

    ``orig_tn``/``dest_tn`` (e.g. ``KSR.pv.get("$ai")``, ``KSR.pv.get("$tU")``) are compared
    with the PASSporT's ``orig``/``dest`` when given (RFC 8224 §6.2 step 2).
    """
    try:
        state = _st()
        verdict = state.verifier(expand(key_path)).check(
            _request_identities(), orig_tn=orig_tn, dest_tn=dest_tn
        )
    except Exception as exc:  # noqa: BLE001 - a worker must survive anything
        _log_err(f"check_request: {type(exc).__name__}: {exc}")
        verdict = Verdict(False, Reason.INTERNAL_ERROR, str(exc), -1)
    _checked(verdict)
    return verdict


def verdict_fields(verdict: Verdict) -> dict[str, str | int]:
    """The verdict as the flat fields :func:`secsipid_verdict` stores in an xavp."""
    claims = verdict.claims
    orig = claims.get("orig") if isinstance(claims.get("orig"), dict) else {}
    dest = claims.get("dest") if isinstance(claims.get("dest"), dict) else {}
    assert isinstance(orig, dict) and isinstance(dest, dict)
    dests = [str(d) for d in (dest.get("tn") or [])] + [str(d) for d in (dest.get("uri") or [])]
    rcd = verdict.rcd
    return {
        "ok": 1 if verdict.ok else 0,
        "ret": _code(verdict),
        "reason": verdict.reason.value,
        "code": verdict.sip_status,
        "text": verdict.sip_reason,
        "verstat": verdict.verstat,
        "message": verdict.message,
        "index": verdict.index,
        "attest": _str(claims.get("attest")),
        "orig": _str(orig.get("tn", orig.get("uri"))),
        "dest": ",".join(dests),
        "origid": _str(claims.get("origid")),
        "iat": claims["iat"] if isinstance(claims.get("iat"), int) else 0,
        "x5u": _str(verdict.header.get("x5u")),
        "ppt": _str(verdict.header.get("ppt")),
        "spc": verdict.spc or "",
        "header": json.dumps(verdict.header, separators=(",", ":")),
        "claims": json.dumps(verdict.claims, separators=(",", ":")),
        "diverted": 1 if verdict.diverted else 0,
        "chain": json.dumps([hop.to_dict() for hop in verdict.chain], separators=(",", ":")),
        "rcd_nam": rcd.nam if rcd is not None else "",
        "call_info": ", ".join(rcd.call_info()) if rcd is not None else "",
    }


def _store_xavp(name: str, fields: dict[str, str | int]) -> None:
    pv = _ksr().pv
    first = True
    for key, value in fields.items():
        target = f"$xavp({name}=>{key})" if first else f"$xavp({name}[0]=>{key})"
        first = False
        if isinstance(value, int):
            pv.seti(target, value)
        else:
            pv.sets(target, value)


@_guard(-1)
def secsipid_verdict(key_path: str = "", xavp: str = "secsipid", dest_tn: str = "") -> int:
    """:func:`secsipid_check_identity` that also stores the whole verdict in ``$xavp(xavp)``.

    ``dest_tn`` (e.g. ``"$rU"``), when given, is the call target the PASSporT's ``dest`` --
    or the outermost ``dest`` of a chain of div PASSporTs (RFC 8946 §4.2 step 1) -- must
    match; a forwarded call is valid only through its chain then.

    Fields: ``ok`` (1/0), ``ret`` (the return code), ``reason`` (stable reason code),
    ``code``/``text`` (the SIP status and phrase to reject with; 0/"" when valid), ``verstat``,
    ``message``, ``index``, ``attest``, ``orig``, ``dest`` (comma-separated), ``origid``,
    ``iat``, ``x5u``, ``ppt``, ``spc`` (from the certificate's TNAuthList, when verified with
    a certificate), ``header`` and ``claims`` (JSON), ``diverted`` (1 when valid through a div
    chain), ``chain`` (JSON), ``rcd_nam`` and ``call_info`` (the verified Rich Call Data).
    Read them as ``$xavp(secsipid=>reason)``; each call adds a new item on top (``[0]`` is
    the latest).
    """
    state = _st()
    target = expand(dest_tn) if dest_tn else ""
    verdict = state.verifier(expand(key_path)).check(_request_identities(), dest_tn=target or None)
    code = _checked(verdict)
    _store_xavp(expand(xavp), verdict_fields(verdict))
    return code


# -- signing -----------------------------------------------------------------------------------


def _set_result(value: str, ret: int) -> None:
    state = _st()
    state.value, state.ret = value, ret
    pv = _ksr().pv
    pv.sets(VAL_VAR, value)
    pv.seti(RET_VAR, ret)


def _x5u(x5u: str) -> str:
    return x5u or _st().settings.x5u


def _sign_identity(
    orig_tn: str, dest_tn: str, attest: str, origid: str, x5u: str, key: str, *, key_is_path: bool
) -> str | None:
    """The Identity value, or None after logging why not."""
    args = [expand(v) for v in (orig_tn, dest_tn, attest, origid, x5u, key)]
    orig, dest, att, oid, url, key_s = args
    url = _x5u(url)
    try:
        state = _st()
        signer = state.signer_for_path(key_s) if key_is_path else state.signer_for_data(key_s)
        return signer.identity(orig, dest, att, oid, x5u=url)
    except SecSIPIDError as exc:
        _log_err(f"cannot sign ({exc.code}): {exc.message}")
        return None


def _append_identity(value: str) -> int:
    return 1 if _ksr().hdr.append("Identity: " + value + "\r\n") >= 0 else -1


def secsipid_add_identity(
    orig_tn: str, dest_tn: str, attest: str, origid: str, x5u: str, key_path: str
) -> int:
    """Sign a SHAKEN PASSporT and append ``Identity: <value>`` to the request.

    An empty ``origid`` gets a random UUID.  Returns 1, or -1 when the key cannot be loaded or
    the values cannot be signed (attest not A/B/C, a number without digits): logged at error.
    """
    # The hot path, written out (no _guard, no helper calls for literal arguments): each
    # Python call runs with cold caches in a Kamailio worker; this saves ~8 µs per call
    # (bench/kamailio_ab.py) with the same results, logs and return codes.
    try:
        ksr = _KSR if _KSR is not None else _ksr()
        state = _state if _state is not None else _st()
        orig = orig_tn if type(orig_tn) is str and "$" not in orig_tn else expand(orig_tn)
        dest = dest_tn if type(dest_tn) is str and "$" not in dest_tn else expand(dest_tn)
        att = attest if type(attest) is str and "$" not in attest else expand(attest)
        oid = origid if type(origid) is str and "$" not in origid else expand(origid)
        url = x5u if type(x5u) is str and "$" not in x5u else expand(x5u)
        key = key_path if type(key_path) is str and "$" not in key_path else expand(key_path)
        try:
            value = state.signer_for_path(key).identity(
                orig, dest, att, oid, x5u=url or state.settings.x5u
            )
        except SecSIPIDError as exc:
            _log_err(f"cannot sign ({exc.code}): {exc.message}")
            return -1
        return 1 if ksr.hdr.append("Identity: " + value + "\r\n") >= 0 else -1
    except Exception as exc:  # noqa: BLE001 - a worker must survive anything
        _log_err(f"secsipid_add_identity: {type(exc).__name__}: {exc}")
        return -1


@_guard(-1)
def add_call_info(verdict: Verdict | None = None) -> int:
    """Append ``Call-Info`` header(s) (RFC 9796) for the verified Rich Call Data of
    ``verdict`` (default: the last one): the icon and the jCard URL with their integrity
    digests and the call reason.  Returns the number of values added, -1 when the verdict
    has no verified RCD with a URL to put there."""
    verdict = verdict if verdict is not None else _st().last
    rcd = verdict.rcd if verdict is not None else None
    values = rcd.call_info() if rcd is not None else []
    if not values:
        return -1
    hdr = _ksr().hdr
    for value in values:
        if hdr.append("Call-Info: " + value + "\r\n") < 0:
            return -1
    return len(values)


@_guard(-1)
def secsipid_add_div_identity(dest_tn: str, x5u: str, key_path: str, div_tn: str = "$oU") -> int:
    """On retargeting (call forwarding): append a ``div`` Identity header (RFC 8946) beside
    the request's Identity header(s), never replacing them.

    ``dest_tn`` is the new target (e.g. ``"$rU"`` after rewriting the Request-URI),
    ``div_tn`` the number the call is diverted from (default ``"$oU"``, the user of the
    original Request-URI).  For every Identity value of the request whose ``dest`` is
    ``div_tn`` (a SHAKEN PASSporT, or the ``div`` of an earlier forwarding) one ``div``
    PASSporT is signed per distinct caller, copying ``orig`` and ``iat`` (RFC 8946 §3, §4.1),
    with the key at ``key_path`` (it needs authority over ``div_tn``).  Verify the request
    first (``secsipid_check_identity``): the originals are copied, not checked, here.

    Returns 1 when at least one header was added; -1 when the request has no Identity
    header with that ``dest`` (RFC 8946 §4.1: no div without an original), the numbers do not
    change, or the key cannot be used (logged at error).
    """
    dest, url, key, div = (expand(v) for v in (dest_tn, x5u, key_path, div_tn))
    values = split_comma_values(_request_identities()) if _request_identities() else []
    want = canonical_tn(div)
    if not want:
        _log_err(f"secsipid_add_div_identity: div_tn {div!r} holds no number")
        return -1
    signer = _st().signer_for_path(key)
    added: list[str] = []
    callers: set[str] = set()
    for value in (v.strip() for v in values):
        token = value.split(";", 1)[0].strip()
        try:
            claims = decode_token(token).claims
        except SecSIPIDError:
            continue
        dest_claim, orig = claims.get("dest"), claims.get("orig")
        if not isinstance(dest_claim, dict) or not isinstance(orig, dict):
            continue
        tns = dest_claim.get("tn", ())
        if not isinstance(tns, list) or want not in [
            canonical_tn(t) for t in tns if isinstance(t, str)
        ]:
            continue
        caller = json.dumps(orig, sort_keys=True)
        if caller in callers:
            continue  # RFC 8946 §4.1: one div per distinct original
        try:
            added.append(signer.div_for(value, dest, div_tn=want, x5u=_x5u(url)))
        except SecSIPIDError as exc:
            _log_err(f"cannot sign div ({exc.code}): {exc.message}")
            return -1
        callers.add(caller)
    if not added:
        _log_err(f"secsipid_add_div_identity: no Identity header with dest {want}")
        return -1
    for value in added:
        if _append_identity(value) < 0:
            return -1
    return 1


@_guard(-1)
def secsipid_add_identity_prvkey(
    orig_tn: str, dest_tn: str, attest: str, origid: str, x5u: str, key_data: str
) -> int:
    """:func:`secsipid_add_identity` with the private key (PEM) given as a value."""
    value = _sign_identity(orig_tn, dest_tn, attest, origid, x5u, key_data, key_is_path=False)
    return -1 if value is None else _append_identity(value)


def _built(value: str | None) -> int:
    if value is None:
        _set_result("", -1)
        return -1
    _set_result(value, len(value))
    return 1


@_guard(-1)
def secsipid_build_identity(
    orig_tn: str, dest_tn: str, attest: str, origid: str, x5u: str, key_path: str
) -> int:
    """Like :func:`secsipid_add_identity`, but the value goes to ``$var(secsipid_val)`` (and
    :func:`secsipid_get_val`) instead of a header; ``$var(secsipid_ret)`` is its length on
    success, -1 on failure (as the native ``$secsipid(ret)``).  Returns 1 or -1."""
    return _built(_sign_identity(orig_tn, dest_tn, attest, origid, x5u, key_path, key_is_path=True))


@_guard(-1)
def secsipid_build_identity_prvkey(
    orig_tn: str, dest_tn: str, attest: str, origid: str, x5u: str, key_data: str
) -> int:
    """:func:`secsipid_build_identity` with the private key (PEM) given as a value."""
    return _built(
        _sign_identity(orig_tn, dest_tn, attest, origid, x5u, key_data, key_is_path=False)
    )


def _sign_json(headers: str, payload: str, key: str, *, key_is_path: bool) -> int:
    hdrs, body, key_s = expand(headers), expand(payload), expand(key)
    try:
        state = _st()
        signer = state.signer_for_path(key_s) if key_is_path else state.signer_for_data(key_s)
        token = signer.sign_json(hdrs, body, verbatim=True)
    except SecSIPIDError as exc:
        _log_err(f"cannot sign ({exc.code}): {exc.message}")
        return _built(None)
    return _built(token)


@_guard(-1)
def secsipid_sign(headers: str, payload: str, key_path: str) -> int:
    """Sign an arbitrary JWS header and payload (JSON text, signed byte for byte); the compact
    JWS goes to ``$var(secsipid_val)``.  Returns 1 or -1."""
    return _sign_json(headers, payload, key_path, key_is_path=True)


@_guard(-1)
def secsipid_sign_prvkey(headers: str, payload: str, key_data: str) -> int:
    """:func:`secsipid_sign` with the private key (PEM) given as a value."""
    return _sign_json(headers, payload, key_data, key_is_path=False)


def secsipid_get_val() -> str:
    """The value of the last build/sign call in this process (the native ``$secsipid(val)``)."""
    return _st().value


def identity_value(token: str, header: str, x5u: str) -> str:
    """An Identity value for a token from :func:`secsipid_sign` (``ppt`` from its header)."""
    return identity_for_json(token, header, x5u)


@_guard(-1)
def secsipid_get_url(url: str, ovar: str) -> int:
    """GET ``url`` (within ``timeout``) and store the body in the PV named by ``ovar``
    (e.g. ``"$var(cert)"``).  Returns 1, -1 for a refused URL or a failed download, -2 when the
    body is over 1 MiB or not text.  The fetch follows the certificate fetch policy of the
    settings: https (http with ``allow_http``), public addresses (``allow_private`` for
    labs), no redirects, ``timeout`` for the whole download."""
    target = _str(ovar)
    address = expand(url)
    try:
        # The same fetch policy as certificate downloads (scheme, SSRF guard, no redirects,
        # total deadline), with the 1 MiB cap of this function.
        source = _st().info_source()
        fetcher = Fetcher(source.fetch_policy.replace(max_size=_MAX_URL_BODY + 1))
        body = fetcher.get(address).body
    except VerificationError as exc:
        _log_err(f"secsipid_get_url {address}: {exc.reason.value}: {exc.message}")
        return -2 if exc.reason is Reason.CERT_TOO_LARGE else -1
    if len(body) > _MAX_URL_BODY:
        return -2
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return -2
    _ksr().pv.sets(target, text)
    return 1


# -- replies and verstat -----------------------------------------------------------------------


def reason_header(verdict: Verdict | Reason, *, stir: bool = False) -> str:
    """The ``Reason`` header line for a failed verdict: ``Reason: SIP;cause=438;text="..."``,
    or with ``stir`` the RFC 9410 form ``Reason: STIR;cause=438;text="..."``."""
    reason = verdict.reason if isinstance(verdict, Verdict) else verdict
    text = reason.sip_reason.replace("\\", "\\\\").replace('"', '\\"')
    protocol = "STIR" if stir else "SIP"
    return f'Reason: {protocol};cause={reason.sip_status};text="{text}"\r\n'


def _send_reply(code: int, text: str, extra: str) -> int:
    ksr = _ksr()
    if extra and ksr.hdr.append_to_reply(extra) < 0:
        return -1
    return 1 if ksr.sl.send_reply(code, text) >= 0 else -1


@_guard(-1)
def reply(verdict: Verdict | None = None, *, stir: bool = False) -> int:
    """Reject the request as RFC 8224 §6.2.2 says for this verdict (default: the last one):
    428 Use Identity Header, 436 Bad Identity Info, 437 Unsupported Credential, 438 Invalid
    Identity Header, 403 Stale Date, with a ``Reason`` header (``stir``: RFC 9410 form).

    Returns 1 when a reply was sent, -1 when not (e.g. the verdict is valid: nothing to reject).
    """
    verdict = _st().last if verdict is None else verdict
    if verdict is None or verdict.ok:
        return -1
    return _send_reply(verdict.sip_status, verdict.sip_reason, reason_header(verdict, stir=stir))


@_guard(-1)
def secsipid_reply(code: int | str = 0, text: str = "", stir: int = 0) -> int:
    """Native-style reply helper.  With ``code`` 0 (the default) reply for the last verdict;
    otherwise reply ``code text`` with ``Reason: SIP|STIR;cause=code;text="text"``.
    ``stir`` 1 selects the RFC 9410 ``STIR`` form."""
    status = int(expand(code) if isinstance(code, str) else code)
    if status == 0:
        return reply(None, stir=bool(stir))
    if not 300 <= status <= 699:
        _log_err(f"secsipid_reply: {status} is not a failure status")
        return -1
    phrase = expand(text) or _PHRASES.get(status, "Rejected")
    quoted = phrase.replace("\\", "\\\\").replace('"', '\\"')
    header = f'Reason: {"STIR" if stir else "SIP"};cause={status};text="{quoted}"\r\n'
    return _send_reply(status, phrase, header)


_PHRASES = {
    403: "Stale Date",
    428: "Use Identity Header",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
}

_VERSTAT_RE = re.compile(r";verstat=[^;@>?,]*", re.IGNORECASE)
_VERSTAT_VALUE = re.compile(r"[A-Za-z0-9\-_.]+")


_PHONE_USER = re.compile(r"\+?[0-9()\-.]*[0-9][0-9()\-.]*")
_USER_PHONE = re.compile(r";user=phone(?=$|[;?])", re.IGNORECASE)


def verstat_uri(uri: str, verstat: str) -> str:
    """Put ``verstat`` into a TN-bearing URI (ATIS-1000074 §5.3.2, 3GPP TS 24.229 §7.2A.20),
    after removing any ``verstat`` already there (an upstream claim is never passed on).

    ``verstat`` is a tel URI parameter: it follows the number of a tel URI, and in a SIP or
    SIPS URI it belongs to the user part, which is a telephone number (RFC 3261 §19.1.6) only
    with ``user=phone``.  So:

    * ``tel:+12155551212`` -> ``tel:+12155551212;verstat=TN-Validation-Passed``;
    * ``sip:+12155551212@host;user=phone`` ->
      ``sip:+12155551212;verstat=TN-Validation-Passed@host;user=phone``;
    * ``sip:12155551212@host`` (a number without ``user=phone``, as many From URIs are) ->
      ``sip:12155551212;verstat=TN-Validation-Passed@host;user=phone``: ``user=phone`` is
      added, or the parameter would be part of an opaque user name.

    Other URIs (a user part that is not a number, e.g. ``sip:alice@host``) are returned
    without any ``verstat``.
    """
    clean = _VERSTAT_RE.sub("", uri)
    colon = clean.find(":")
    scheme = clean[:colon].lower() if colon > 0 else ""
    if not verstat:
        return clean
    if scheme == "tel":
        q = clean.find("?")
        return (
            clean + f";verstat={verstat}" if q < 0 else f"{clean[:q]};verstat={verstat}{clean[q:]}"
        )
    if scheme in ("sip", "sips"):
        at = clean.find("@")
        user = clean[colon + 1 : at] if at > 0 else ""
        if not user or _PHONE_USER.fullmatch(user.split(";", 1)[0]) is None:
            return clean
        rest = clean[at:]
        if _USER_PHONE.search(rest) is None:
            q = rest.find("?")
            rest = rest + ";user=phone" if q < 0 else f"{rest[:q]};user=phone{rest[q:]}"
        return f"{clean[:at]};verstat={verstat}{rest}"
    return clean


def _mark_name_addr(value: str, verstat: str) -> str:
    lt = value.find("<")
    if lt >= 0:
        gt = value.find(">", lt)
        if gt < 0:
            return value
        return value[: lt + 1] + verstat_uri(value[lt + 1 : gt], verstat) + value[gt:]
    # An addr-spec without brackets: by RFC 3261 §20 anything after ";" is a header
    # parameter, not part of the URI.  The marked URI gets brackets (it now holds ";").
    uri, sep, params = value.partition(";")
    return "<" + verstat_uri(uri.strip(), verstat) + ">" + (sep + params if sep else "")


def _mark_pai(verstat: str) -> int:
    ksr = _ksr()
    current = _str(ksr.pv.get("$(hdr(P-Asserted-Identity)[*])"))
    values = [v.strip() for v in split_comma_values(current) if v.strip()]
    if not values:
        return -1
    marked = [_mark_name_addr(v, verstat) for v in values]
    if marked == values:
        return 1
    ksr.hdr.remove("P-Asserted-Identity")
    for value in marked:
        ksr.hdr.append("P-Asserted-Identity: " + value + "\r\n")
    return 1


def _mark_from(verstat: str) -> int:
    ksr = _ksr()
    uri = _str(ksr.pv.get("$fu"))
    if not uri:
        return -1
    new = verstat_uri(uri, verstat)
    if new != uri:
        ksr.pv.sets("$fu", new)
    return 1


def add_verstat(verdict: Verdict | str | None = None, where: str = "auto") -> int:
    """Add ``;verstat=<value>`` to P-Asserted-Identity (``where="pai"``), From (``"from"``),
    both, or P-Asserted-Identity when present and else From (``"auto"``), removing any
    ``verstat`` that came from upstream.  ``verdict`` is a :class:`Verdict`, a verstat string
    (``TN-Validation-Passed``, ``TN-Validation-Failed``, ``No-TN-Validation``) or ``None`` for
    the last verdict.  Returns 1, or -1 when there was nothing to mark or a bad argument."""
    try:
        if verdict is None:
            verdict = _st().last
            if verdict is None:
                return -1
        verstat = verdict.verstat if isinstance(verdict, Verdict) else expand(verdict)
        if verstat and _VERSTAT_VALUE.fullmatch(verstat) is None:
            _log_err(f"add_verstat: bad verstat value {verstat!r}")
            return -1
        if where == "pai":
            return _mark_pai(verstat)
        if where == "from":
            return _mark_from(verstat)
        if where == "both":
            return max(_mark_pai(verstat), _mark_from(verstat))
        if where == "auto":
            if _ksr().hdr.is_present("P-Asserted-Identity") > 0:
                return _mark_pai(verstat)
            return _mark_from(verstat)
        _log_err(f"add_verstat: where must be auto, pai, from or both, not {where!r}")
        return -1
    except Exception as exc:  # noqa: BLE001 - a worker must survive anything
        _log_err(f"add_verstat: {type(exc).__name__}: {exc}")
        return -1


def secsipid_add_verstat(verstat: str = "", where: str = "auto") -> int:
    """Native-style :func:`add_verstat`: an empty ``verstat`` means the last verdict's."""
    return add_verstat(verstat or None, expand(where) or "auto")
