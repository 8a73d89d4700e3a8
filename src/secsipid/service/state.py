"""What a worker serves with: the signers, the verifier, the tokens, built from a
:class:`ServiceConfig` and swapped whole on reload.

:func:`build_state` loads and checks every file the configuration names (keys, certificates,
trust anchors, token file, public directory) and raises :class:`ConfigError` with one line per
problem.  A request takes the state once at its start, so a reload never changes the keys
under a request in progress, and a failed reload leaves the running state alone.
"""

from __future__ import annotations

import hmac
import logging
import os
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization

from .._errors import KeyLoadError, VerificationError
from .._fetch import Fetcher, FetchPolicy
from .._keys import Credential, credential_from_file, private_key_from_file
from .._reasons import Reason
from .._shared import RedisCache, redis_cache
from .._signer import Signer
from .._source import CacheConfig
from .._trust import TrustPolicy
from .._verifier import Verifier, VerifyPolicy
from .config import ConfigError, ServiceConfig
from .metrics import MeteredFetcher, MeteredSource, NullMetrics

__all__ = ["ServiceState", "SigningProfile", "build_state"]

log = logging.getLogger("secsipid.service")

# Bearer tokens shorter than this are guessable; refuse them at start.
MIN_TOKEN_LENGTH = 16


@dataclass(frozen=True, slots=True)
class SigningProfile:
    """One configured signing key with its default x5u and when it applies."""

    signer: Signer
    x5u: str | None
    spc: str | None
    prefixes: tuple[str, ...]
    key_file: str

    def __repr__(self) -> str:  # never the key
        return f"SigningProfile(key_file={self.key_file!r}, x5u={self.x5u!r}, spc={self.spc!r})"


class ServiceState:
    """Immutable once built; the app replaces it whole on reload."""

    __slots__ = (
        "_by_prefix",
        "_by_spc",
        "_tokens",
        "config",
        "default",
        "pub_dir",
        "secret_files",
        "verifier",
        "verify_error",
        "watched",
    )

    def __init__(
        self,
        config: ServiceConfig,
        profiles: list[SigningProfile],
        default: SigningProfile | None,
        tokens: tuple[bytes, ...],
        verifier: Verifier | None,
        verify_error: VerificationError | None,
        watched: tuple[str, ...],
    ) -> None:
        self.config = config
        self.default = default
        self._by_spc = {p.spc: p for p in profiles if p.spc}
        # Longest prefix first: "1215" wins over "1".
        self._by_prefix = sorted(
            ((prefix, p) for p in profiles for prefix in p.prefixes), key=lambda e: -len(e[0])
        )
        self._tokens = tokens
        self.verifier = verifier
        self.verify_error = verify_error
        self.pub_dir = config.pub_dir
        self.watched = watched
        # Never served from pub_dir, whatever their content: the signing keys, the token
        # file, the TLS key and the configuration (real paths).
        self.secret_files = frozenset(
            os.path.realpath(path)
            for path in (
                config.key,
                *(p.key for p in config.profiles),
                config.token_file,
                config.tls_key,
                config.config_file,
            )
            if path
        )

    def published_secrets(self) -> list[str]:
        """The secret files that sit in ``pub_dir`` (``/v1/pub/`` refuses them; the operator
        is warned at start)."""
        if not self.pub_dir:
            return []
        root = os.path.realpath(self.pub_dir)
        return [path for path in self.secret_files if os.path.dirname(path) == root]

    @property
    def needs_token(self) -> bool:
        return bool(self._tokens)

    def authorized(self, authorization: str | None) -> bool:
        """Whether an ``Authorization`` header value carries one of the bearer tokens
        (RFC 6750 §2.1); compared in constant time."""
        if not self._tokens:
            return True
        if authorization is None:
            return False
        scheme, _, text = authorization.strip().partition(" ")
        if scheme.lower() != "bearer":
            return False
        token = text.strip().encode("utf-8", "backslashreplace")
        found = False
        for known in self._tokens:
            found |= hmac.compare_digest(token, known)
        return found

    def profile_for(self, orig_tn: str, spc: str | None) -> SigningProfile | None:
        """The signing key for a call: the SPC the client names, else the longest prefix of
        the calling number, else the default key."""
        if spc:
            return self._by_spc.get(spc)
        for prefix, profile in self._by_prefix:
            if orig_tn.startswith(prefix):
                return profile
        return self.default


def _public_bytes(credential: Credential) -> bytes:
    return credential.public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _readable(path: str, setting: str, problems: list[str], *, directory: bool = False) -> None:
    if directory:
        if not os.path.isdir(path):
            problems.append(f"{setting}: {path}: not a directory")
        elif not os.access(path, os.R_OK | os.X_OK):
            problems.append(f"{setting}: {path}: not readable")
        return
    if not os.path.exists(path):
        problems.append(f"{setting}: {path}: no such file")
    elif not os.path.isfile(path) or not os.access(path, os.R_OK):
        problems.append(f"{setting}: {path}: not a readable file")


def _profile(
    setting: str,
    key_file: str,
    x5u: str | None,
    cert_file: str | None,
    spc: str | None,
    prefixes: tuple[str, ...],
    problems: list[str],
) -> SigningProfile | None:
    try:
        key = private_key_from_file(key_file)
    except KeyLoadError as exc:
        problems.append(f"{setting}.key: {exc.message}")
        return None
    if cert_file is not None:
        try:
            credential = credential_from_file(cert_file)
        except KeyLoadError as exc:
            problems.append(f"{setting}.cert: {exc.message}")
        else:
            public = key.public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            if _public_bytes(credential) != public:
                problems.append(f"{setting}.cert: {cert_file} does not match the key in {key_file}")
            elif credential.spc is not None:
                if spc is None:
                    spc = credential.spc
                elif spc != credential.spc:
                    problems.append(
                        f"{setting}.spc: {spc!r} differs from the SPC {credential.spc!r} in the "
                        f"TNAuthList of {cert_file}"
                    )
    return SigningProfile(Signer(key, x5u), x5u, spc, prefixes, key_file)


def _tokens(config: ServiceConfig, problems: list[str]) -> tuple[bytes, ...]:
    if config.token_file is None:
        return ()
    try:
        with open(config.token_file, "rb") as fh:
            text = fh.read(1 << 16)
    except OSError as exc:
        problems.append(f"signing.token_file: {config.token_file}: {exc.strerror or exc}")
        return ()
    tokens = []
    for number, line in enumerate(text.splitlines(), 1):
        token = line.strip()
        if not token or token.startswith(b"#"):
            continue
        if len(token) < MIN_TOKEN_LENGTH or any(c <= 0x20 or c >= 0x7F for c in token):
            # The token itself is never printed, not even in an error.
            problems.append(
                f"signing.token_file: {config.token_file}: line {number}: a token must be at "
                f"least {MIN_TOKEN_LENGTH} visible ASCII characters"
            )
            continue
        tokens.append(token)
    if not tokens and not any(p.startswith("signing.token_file") for p in problems):
        problems.append(f"signing.token_file: {config.token_file}: holds no token")
    return tuple(tokens)


def _trust(config: ServiceConfig, problems: list[str]) -> TrustPolicy | None:
    anchors = bool(config.ca_file or config.ca_dir or config.system_cas)
    if not config.verify_cert or not anchors:
        return None  # a --cert is trusted as given; without anchors, see _verifier
    if config.ca_file:
        _readable(config.ca_file, "verification.ca_file", problems)
    if config.ca_dir:
        _readable(config.ca_dir, "verification.ca_dir", problems, directory=True)
    if config.intermediates:
        _readable(config.intermediates, "verification.intermediates", problems)
    for crl in config.crl_files:
        _readable(crl, "verification.crl_files", problems)
    try:
        return TrustPolicy(
            ca_file=config.ca_file,
            ca_dir=config.ca_dir,
            system_cas=config.system_cas,
            intermediates_file=config.intermediates,
            crl_files=config.crl_files,
            fetch_crls=config.fetch_crls,
            require_crl=config.require_crl,
            require_tnauthlist=config.require_tnauthlist,
        )
    except ValueError as exc:
        problems.append(f"verification: {exc}")
        return None


def fetch_policy(config: ServiceConfig) -> FetchPolicy:
    """What may be fetched (certificates from ``info``, CRLs, RCD content), and how."""
    return FetchPolicy(
        timeout=config.timeout,
        allow_http=config.allow_http,
        allow_private=config.allow_private,
        tls_ca_file=config.tls_ca_file,
        max_size=config.max_size,
    )


def certificate_source(
    config: ServiceConfig,
    trust: TrustPolicy | None,
    metrics: NullMetrics,
    shared: RedisCache | None = None,
) -> MeteredSource:
    """The certificate source for ``info`` URLs.  ``cache.backend`` chooses where fetched
    certificates are shared: "memory" (this process, plus ``cache.dir`` on disk for all of
    them) or "redis" (``shared``: every instance using the same Redis)."""
    fetch = fetch_policy(config)
    fetcher = MeteredFetcher(fetch)
    fetcher.metrics = metrics
    source = MeteredSource(
        trust=trust,
        fetch=fetch,
        fetcher=fetcher,
        cache=CacheConfig(default_ttl=config.cache_ttl, cache_dir=config.cache_dir),
        shared=shared,
    )
    source.metrics = metrics
    if shared is not None:
        shared.on_count = metrics.shared_cache
    return source


def _shared_cache(config: ServiceConfig, problems: list[str]) -> RedisCache | None:
    """The process's RedisCache for ``cache.redis`` (not connected here: a Redis that is down
    at start is a slower cluster, every instance fetching for itself until it answers)."""
    if config.cache_backend != "redis" or not config.cache_redis:
        return None
    secret = None
    path = config.cache_redis_secret_file
    if path:
        try:
            with open(path, "rb") as fh:
                secret = fh.read(4096).strip()
        except OSError as exc:
            problems.append(f"cache.redis_secret_file: {path}: {exc.strerror or exc}")
            return None
        if len(secret) < 16:  # the secret itself is never printed
            problems.append(f"cache.redis_secret_file: {path}: must hold at least 16 bytes")
            return None
    try:
        return redis_cache(config.cache_redis, secret=secret)
    except (ValueError, ImportError) as exc:
        problems.append(f"cache.redis: {exc}")
        return None


def _verifier(
    config: ServiceConfig, metrics: NullMetrics, problems: list[str]
) -> tuple[Verifier | None, VerificationError | None]:
    policy = VerifyPolicy(
        expire=config.expire,
        future_skew=config.future_skew,
        strict=config.strict,
        fetch_rcd=config.fetch_rcd,
    )
    # Rich Call Data behind URLs (fetch_rcd) comes through a fetcher of its own, under the
    # same policy as certificates; its downloads are not certificate fetches in the metrics.
    try:
        rcd_fetcher = Fetcher(fetch_policy(config)) if config.fetch_rcd else None
    except ValueError as exc:
        problems.append(f"verification: {exc}")
        return None, None
    trust = _trust(config, problems)
    if config.cert:
        try:
            credential = credential_from_file(config.cert)
        except KeyLoadError as exc:
            problems.append(f"verification.cert: {exc.message}")
            return None, None
        return Verifier(credential, policy=policy, trust=trust, fetcher=rcd_fetcher), None
    if trust is None and config.verify_cert:
        # Signing-only deployments are fine; verification then answers no-trust-anchors.
        return None, VerificationError(
            Reason.NO_TRUST_ANCHORS,
            "verification is not configured: give --cert, or trust anchors (--ca-file, "
            "--ca-dir, --system-cas), or --no-verify-cert",
        )
    if config.cache_dir:
        try:
            os.makedirs(config.cache_dir, exist_ok=True)
        except OSError as exc:
            problems.append(f"cache.dir: {config.cache_dir}: {exc.strerror or exc}")
            return None, None
    shared = _shared_cache(config, problems)
    if config.cache_backend == "redis" and shared is None:
        return None, None
    try:
        source = certificate_source(config, trust, metrics, shared)
    except ValueError as exc:
        problems.append(f"verification: {exc}")
        return None, None
    return Verifier(source, policy=policy, fetcher=rcd_fetcher), None


def build_state(config: ServiceConfig, metrics: NullMetrics | None = None) -> ServiceState:
    """Load and check everything ``config`` names; raise :class:`ConfigError` with every
    problem found."""
    metrics = metrics if metrics is not None else NullMetrics()
    problems: list[str] = []
    profiles: list[SigningProfile] = []
    default = None
    if config.key:
        default = _profile("signing", config.key, config.x5u, config.sign_cert, None, (), problems)
        if default is not None:
            profiles.append(default)
    elif config.sign_cert:
        problems.append("signing.cert: needs signing.key (--key)")
    for i, p in enumerate(config.profiles):
        profile = _profile(
            f"signing.profiles[{i}]", p.key, p.x5u or config.x5u, p.cert, p.spc, p.prefixes,
            problems,
        )  # fmt: skip
        if profile is not None:
            profiles.append(profile)
            if default is None:
                default = profile
    spcs = [p.spc for p in profiles if p.spc]
    for spc in sorted({s for s in spcs if spcs.count(s) > 1}):
        problems.append(f"signing.profiles: SPC {spc!r} is configured more than once")
    tokens = _tokens(config, problems)
    if config.signing_enabled and not config.loopback and not tokens and not config.mtls:
        problems.append(
            f"listen: {config.listen} is not a loopback address: signing there needs a bearer "
            "token (--token-file / signing.token_file) or mTLS (server.tls_client_ca)"
        )
    if config.pub_dir:
        _readable(config.pub_dir, "server.pub_dir", problems, directory=True)
    for setting, path in (
        ("server.tls_cert", config.tls_cert),
        ("server.tls_key", config.tls_key),
        ("server.tls_client_ca", config.tls_client_ca),
    ):
        if path:
            _readable(path, setting, problems)
    verifier, verify_error = _verifier(config, metrics, problems)
    if problems:
        raise ConfigError(problems)
    watched = tuple(
        path
        for path in (
            config.config_file,
            config.key,
            config.sign_cert,
            *(f for p in config.profiles for f in (p.key, p.cert)),
            config.token_file,
            config.cert,
        )
        if path
    )
    return ServiceState(config, profiles, default, tokens, verifier, verify_error, watched)
