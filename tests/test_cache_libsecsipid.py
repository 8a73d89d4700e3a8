"""``cache_naming="libsecsipid"``: the directory cache in libsecsipid's layout, shared with the
real secsipidx/libsecsipid (issue 8 item 15).  Certificates are served over plain HTTP on
127.0.0.1 by the test certificate server process (stopped by PID), which is also stopped to
prove that the other side's file, not the network, answered."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from fetchkit import CertServer
from secsipid import CacheConfig, CertificateSource, MemoryCache, Signer, Verifier
from secsipid._pki import LabPKI, make_lab_pki
from secsipid._source import LibsecsipidDirectoryCache


@pytest.fixture(scope="module")
def lab() -> LabPKI:
    return make_lab_pki(spc="1234")


@pytest.fixture
def server(tmp_path: Path, lab: LabPKI) -> CertServer:
    routes = {
        "/v1/pub/sti.pem": {
            "body": lab.chain_pem.decode(),
            "headers": {"Content-Type": "application/pem-certificate-chain"},
        }
    }
    srv = CertServer(tmp_path / "srv", routes, None)
    yield srv  # type: ignore[misc]
    srv.stop()


def _source(cache: Path, *, expire: float = 3600) -> CertificateSource:
    return CertificateSource(
        trust=None,
        allow_http=True,
        allow_private=True,
        timeout=2,
        cache=CacheConfig(cache_dir=str(cache), cache_naming="libsecsipid", default_ttl=expire),
        memory=MemoryCache(),
    )


def _libsecsipid_name(url: str) -> str:
    return url.replace("://", "_").replace("/", "_")


def _value(lab: LabPKI, url: str) -> str:
    return Signer(lab.leaf_key).identity("12155550121", "12155550131", "A", x5u=url)


def test_files_have_libsecsipid_names_and_bodies(
    tmp_path: Path, lab: LabPKI, server: CertServer
) -> None:
    """The file is named as libsecsipid names it and holds the PEM chain; a second process
    (fresh memory cache) is answered from it without a fetch."""
    url = server.url("/v1/pub/sti.pem")
    cache = tmp_path / "cache"
    assert Verifier(_source(cache)).check(_value(lab, url)).ok
    path = cache / _libsecsipid_name(url)
    assert path.name == f"http_127.0.0.1:{server.port}_v1_pub_sti.pem"
    assert path.read_bytes() == lab.chain_pem
    assert path.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in cache.iterdir()] == [path.name]  # no temporary file left
    server.stop()
    assert Verifier(_source(cache)).check(_value(lab, url)).ok


def test_expiry_follows_mtime(tmp_path: Path, lab: LabPKI, server: CertServer) -> None:
    """As in libsecsipid: a file older than cache_expire is not used (refetched and
    rewritten); a response's shorter lifetime is written as an older mtime."""
    url = server.url("/v1/pub/sti.pem")
    cache = tmp_path / "cache"
    cache.mkdir()
    path = cache / _libsecsipid_name(url)
    path.write_bytes(b"not a certificate")  # what libsecsipid would cache from a bad server
    assert Verifier(_source(cache)).check(_value(lab, url)).ok  # ignored, refetched
    assert path.read_bytes() == lab.chain_pem
    old = time.time() - 7200
    os.utime(path, (old, old))
    assert Verifier(_source(cache)).check(_value(lab, url)).ok
    assert server.hits()["/v1/pub/sti.pem"] == 2  # the old file was not used
    disk = LibsecsipidDirectoryCache(cache, expire=600)
    disk.store(url, "", b"body", time.time() + 60)
    assert abs(path.stat().st_mtime - (time.time() + 60 - 600)) < 5
    assert disk.load(url, "")[1] == pytest.approx(time.time() + 60, abs=5)  # type: ignore[index]
    assert disk.load("file:///etc/passwd", "") is None
    assert disk.load("https://h/" + "x" * 300, "") is None  # name too long: no cache, no error


def test_our_source_refuses_unknown_naming() -> None:
    """An unknown naming is refused when the configuration is built, naming the choices."""
    with pytest.raises(ValueError) as exc:
        CacheConfig(cache_naming="libsecsipid2")
    assert str(exc.value) == (
        "CacheConfig.cache_naming must be one of secsipid, libsecsipid, not 'libsecsipid2'"
    )


def _secsipidx_check(secsipidx: str, value: str, url: str, cache: Path) -> int:
    done = subprocess.run(
        [secsipidx, "-check", "-identity", value, "-fpubkey", url, "-expire", "300",
         "-timeout", "2", "-cache-dir", str(cache), "-cache-expire", "3600"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    return done.returncode


@pytest.mark.interop
def test_shared_with_secsipidx_both_ways(
    tmp_path: Path, lab: LabPKI, server: CertServer, secsipidx: str
) -> None:
    """ours writes, secsipidx (libsecsipid) reads with the server gone; and the other way."""
    url = server.url("/v1/pub/sti.pem")
    value = _value(lab, url)
    ours_first, theirs_first = tmp_path / "a", tmp_path / "b"
    theirs_first.mkdir()
    assert Verifier(_source(ours_first)).check(value).ok
    assert _secsipidx_check(secsipidx, value, url, theirs_first) == 0
    assert (theirs_first / _libsecsipid_name(url)).exists()
    server.stop()
    # Control: with an empty directory and no server, secsipidx fails (-402, exit 110).
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _secsipidx_check(secsipidx, value, url, empty) == (-402 & 0xFF)
    assert _secsipidx_check(secsipidx, value, url, ours_first) == 0
    verdict = Verifier(_source(theirs_first)).check(value)
    assert verdict.ok, verdict.message


def test_https_urls_have_files_too(tmp_path: Path) -> None:
    """https:// URLs (the usual x5u) are cached as libsecsipid names them; other schemes have
    no file."""
    disk = LibsecsipidDirectoryCache(tmp_path, expire=600)
    url = "https://cert.example.org/sti.pem"
    disk.store(url, "", b"chain", time.time() + 60)
    assert [p.name for p in tmp_path.iterdir()] == ["https_cert.example.org_sti.pem"]
    assert disk.load(url, "")[0] == b"chain"  # type: ignore[index]
    disk.store("ftp://cert.example.org/sti.pem", "", b"chain", time.time() + 60)
    assert [p.name for p in tmp_path.iterdir()] == ["https_cert.example.org_sti.pem"]


def test_writes_are_atomic_and_failures_harmless(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The body goes to a temporary file in the cache directory itself (so the rename into
    place is atomic: libsecsipid never reads half a file); a write that fails (here the
    rename, onto a directory) raises nothing and leaves no temporary file behind."""
    import tempfile

    url = "https://cert.example.org/sti.pem"
    made_in: list[str] = []
    mkstemp = tempfile.mkstemp

    def recording_mkstemp(*args: object, **kwargs: object) -> tuple[int, str]:
        fd, name = mkstemp(*args, **kwargs)  # type: ignore[call-overload]
        made_in.append(str(Path(name).parent))
        return fd, name  # type: ignore[no-any-return]

    monkeypatch.setattr(tempfile, "mkstemp", recording_mkstemp)
    disk = LibsecsipidDirectoryCache(tmp_path / "ok", expire=600)
    disk.store(url, "", b"chain", time.time() + 60)
    assert made_in == [str(tmp_path / "ok")]
    assert [p.name for p in (tmp_path / "ok").iterdir()] == ["https_cert.example.org_sti.pem"]

    blocked = tmp_path / "blocked"
    (blocked / "https_cert.example.org_sti.pem").mkdir(parents=True)  # os.replace fails
    LibsecsipidDirectoryCache(blocked, expire=600).store(url, "", b"chain", time.time() + 60)
    assert [p.name for p in blocked.iterdir()] == ["https_cert.example.org_sti.pem"]
    assert (blocked / "https_cert.example.org_sti.pem").is_dir()
