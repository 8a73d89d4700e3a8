"""The floor apps of bench/bench_service.py do the work their names claim.

The service's throughput target is judged against these floors, so a floor that did less than
a request needs (a signer whose output does not verify, a verifier that answers OK whatever
it gets) would make ours look worse than it is, and one that failed to start would only show
when the benchmark runs.  Each app is driven here through RSGI, as Granian drives it.
"""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from helpers import KeyFiles
from secsipid import Reason, Verifier, VerifyPolicy

BENCH = Path(__file__).resolve().parent.parent / "bench"
ORIG, DEST = "12155550121", "12155550131"
X5U = "https://cert.example.org/sti.pem"


class _Proto:
    """The part of Granian's RSGI HTTP protocol object the floor apps use."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.status = 0
        self.answer = b""

    async def __call__(self) -> bytes:
        return self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status, self.answer = status, body


def _answer(app: Any, body: bytes) -> tuple[int, bytes]:
    proto = _Proto(body)
    asyncio.run(app.__rsgi__(object(), proto))
    return proto.status, proto.answer


@pytest.fixture(scope="module")
def floors(key_files: KeyFiles, tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    bench_service = _load("bench_service", BENCH / "bench_service.py")
    path = tmp_path_factory.mktemp("floor") / "floorapp.py"
    path.write_text(bench_service.FLOOR_APP)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FLOOR_KEY", str(key_files.key_pem))
        mp.setenv("FLOOR_CERT", str(key_files.cert_pem))
        return _load("floorapp", path)


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it runs
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module


@pytest.fixture(scope="module")
def judge(key_files: KeyFiles) -> Verifier:
    return Verifier(str(key_files.cert_pem), policy=VerifyPolicy(expire=3600))


@pytest.mark.parametrize("name", ["minimal_sign_app", "core_sign_app"])
def test_the_signing_floors_answer_a_valid_identity(
    floors: ModuleType, judge: Verifier, name: str
) -> None:
    status, answer = _answer(getattr(floors, name), f"{ORIG},{DEST},A,,{X5U}".encode())
    assert status == 200
    value = answer.decode().strip()
    verdict = judge.check(value, orig_tn=ORIG, dest_tn=DEST)
    assert verdict.ok, verdict.message
    assert verdict.passport is not None
    assert verdict.claims["attest"] == "A"
    assert value.endswith(f";info=<{X5U}>;alg=ES256;ppt=shaken")


def test_the_minimal_signer_draws_a_new_origid_per_request(
    floors: ModuleType, judge: Verifier
) -> None:
    body = f"{ORIG},{DEST},A,,{X5U}".encode()
    values = [_answer(floors.minimal_sign_app, body)[1].decode().strip() for _ in range(2)]
    first, second = (judge.check(value).claims["origid"] for value in values)
    assert first != second


def test_the_core_verify_floor_answers_ok_only_for_a_valid_value(
    floors: ModuleType, judge: Verifier
) -> None:
    status, answer = _answer(floors.core_sign_app, b"")
    assert status == 200
    value = answer.decode().strip()
    assert _answer(floors.core_verify_app, value.encode()) == (200, b"OK\n")
    # The signature of other claims, under the same header and parameters: only the
    # signature check can refuse it.
    token, params = value.split(";", 1)
    head, claims, signature = token.split(".")
    other = _answer(floors.core_sign_app, b"")[1].decode().split(";", 1)[0].split(".")[2]
    assert other != signature
    forged = f"{head}.{claims}.{other};{params}"
    assert judge.check(forged).reason is Reason.BAD_SIGNATURE
    assert _answer(floors.core_verify_app, forged.encode())[0] == 403


def test_the_bare_floors_run_their_ecdsa(floors: ModuleType) -> None:
    assert _answer(floors.sign_app, b"") == (200, b"OK\n")
    assert _answer(floors.verify_app, b"") == (200, b"OK\n")
    assert _answer(floors.rsgi_app, b"") == (200, b"OK\n")
