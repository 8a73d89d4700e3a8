"""``secsipid serve --redis``: several service instances (separate processes, one worker each)
sharing one real redis-server, as a cluster behind a load balancer would (issue 11)."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rediskit import CountingCertServer, RedisServer, free_port
from secsipid import Signer
from secsipid._pki import LabPKI, make_lab_pki
from servicekit import ServerProcess

ORIG, DEST = "12155550121", "12155550131"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis")
    yield server
    server.stop()


@pytest.fixture
def certs() -> Iterator[CountingCertServer]:
    server = CountingCertServer()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[LabPKI, Path]:
    lab = make_lab_pki(spc="1234")
    return lab, lab.write(tmp_path_factory.mktemp("pki"))["root"]


def _instances(tmp_path: Path, redis_url: str, root: Path, n: int) -> list[ServerProcess]:
    servers = []
    for i in range(n):
        server = ServerProcess(
            "--redis", redis_url, "--allow-http", "--allow-private", "--ca-file", str(root),
            workers=1,
        )  # fmt: skip
        servers.append(server.start(tmp_path / f"serve{i}.log"))
    return servers


def _events(text: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(r'secsipid_shared_cache_events_total\{event="(\w+)"\} (\S+)', text)
    }


def test_cold_burst_across_instances_makes_one_fetch(
    tmp_path: Path, redis: RedisServer, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """Three instances, a cold certificate wanted by 8 concurrent requests on each: one
    download in all, every check 200; /metrics counts the shared cache's events."""
    url = certs.route("/sti.pem", pki[0].chain_pem, delay=0.3)
    value = Signer(pki[0].leaf_key, url).identity(ORIG, DEST, "A").encode()
    servers = _instances(tmp_path, redis.url, pki[1], 3)
    try:
        statuses: list[int] = []
        lock = threading.Lock()

        def one(server: ServerProcess) -> None:
            status = server.request("POST", "/v1/check", value).status
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=one, args=(s,)) for s in servers for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [200] * 24
        assert certs.count("/sti.pem") == 1
        events = [_events(s.request("GET", "/metrics").body.decode()) for s in servers]
    finally:
        for server in servers:
            server.stop()
    assert sum(e.get("fetches", 0) for e in events) == 1
    assert sum(e.get("hits", 0) for e in events) >= 2
    assert all(e.get("errors", 0) == 0 for e in events)


def test_instance_starts_and_verifies_with_redis_down(
    tmp_path: Path, certs: CountingCertServer, pki: tuple[LabPKI, Path]
) -> None:
    """A Redis that is not running at start does not stop the service: checks succeed
    (fetched by the instance), the fault is counted and logged once."""
    url = certs.route("/down.pem", pki[0].chain_pem)
    value = Signer(pki[0].leaf_key, url).identity(ORIG, DEST, "A").encode()
    dead = f"redis://127.0.0.1:{free_port()}/0"
    (server,) = _instances(tmp_path, dead, pki[1], 1)
    try:
        for _ in range(3):
            assert server.request("POST", "/v1/check", value).status == 200
        events = _events(server.request("GET", "/metrics").body.decode())
    finally:
        server.stop()
    assert events["errors"] >= 1 and certs.count("/down.pem") == 1
    assert server.log().count("unusable") == 1


def test_config_redis_problems(tmp_path: Path) -> None:
    """A bad cache.redis URL or secret file is a configuration problem at start (the secret
    itself is never printed)."""
    from secsipid.service import ConfigError, build_state, load_config

    short = tmp_path / "secret"
    short.write_text("tooshort-secret")
    for extra, message in (
        ({"cache_redis": "http://127.0.0.1/"}, "cache.redis:"),
        ({"cache_redis_secret_file": "/nonexistent"}, "cache.redis_secret_file: /nonexistent"),
        ({"cache_redis_secret_file": str(short)}, "must hold at least 16 bytes"),
    ):
        overrides = {"cache_redis": "redis://127.0.0.1/0", "verify_cert": False, **extra}
        with pytest.raises(ConfigError) as exc:
            build_state(load_config(None, overrides))
        assert any(message in p for p in exc.value.problems), exc.value.problems
        assert "tooshort" not in str(exc.value.problems)


def test_toml_cache_redis(tmp_path: Path) -> None:
    """In the TOML file: ``[cache] redis = URL`` turns the shared backend on (``backend``
    follows), the workers' certificate source uses it and the secret from its file."""
    from secsipid.service import build_state, load_config

    secret = tmp_path / "secret"
    secret.write_text("a-secret-of-enough-bytes\n")
    toml = tmp_path / "serve.toml"
    toml.write_text(
        "[verification]\nverify_cert = false\n"
        f'[cache]\nredis = "redis://127.0.0.1:1/0"\nredis_secret_file = "{secret}"\n'
    )
    config = load_config(str(toml))
    assert config.cache_backend == "redis" and config.cache_redis == "redis://127.0.0.1:1/0"
    state = build_state(config)
    assert state.verifier is not None
    shared = state.verifier.source.shared  # type: ignore[attr-defined]
    assert shared is not None and shared.url == "redis://127.0.0.1:1/0"
    assert shared._secret == b"a-secret-of-enough-bytes"
