"""The fuzz harness in CI: a few thousand cases per target of ``tools/fuzz.py`` (fixed seed,
``SECSIPID_FUZZ_SEED`` to explore another), hypothesis strategies for hostile JSON numbers and
Identity parameters through the whole verifier, and checks that the harness itself can fail.

The invariant (docs/testing.md, "Fuzzing"): every input gives a result or the package's own
exception, never ``internal-error``; every Verdict's properties and ``to_dict()`` read and are
strict JSON.  Per-case time is measured by the tool (``max case``), never asserted here."""

from __future__ import annotations

import json
import os
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))

import fuzz
from helpers import PARAMS, SHAKEN_CLAIMS, SHAKEN_HEADER, X5U, raw_jws
from secsipid import (
    Reason,
    Verdict,
    VerificationError,
    Verifier,
    VerifyPolicy,
    canonical_json,
)

SEED = int(os.environ.get("SECSIPID_FUZZ_SEED", "20261128"))
# Cases per target: a few thousand where a case is cheap; the targets that build a path or
# run the argument parser per case get fewer (about 2 s each on the CI machine).
CASES = {
    "identity": 3000, "token": 4000, "json": 4000, "verify": 4000, "credential": 3000,
    "certificate": 3000, "tnauthlist": 4000, "crl": 2000, "cli-decode": 1500, "headers": 3000,
}  # fmt: skip
# What shows that a target reaches past its first check (a fuzzer that only ever produces
# garbage the first parser refuses would pass vacuously).
DEEP_OUTCOMES = {
    "identity": {"parsed", "malformed-identity", "too-large"},
    "token": {"decoded", "invalid-claims-json", "invalid-jws-header", "malformed-signature"},
    "json": {"parsed/dict", "refused"},
    "verify": {"valid", "bad-signature", "invalid-claim", "unsupported-crit", "non-canonical",
               "x5u-mismatch", "invalid-claims-json", "invalid-rcd", "div-without-shaken"},
    "credential": {"credential/key-invalid", "key-invalid/key-invalid"},
    "certificate": {"check/valid", "check/cert-untrusted", "body/cert-invalid"},
    "tnauthlist": {"parsed", "refused"},
    "crl": {"valid", "cert-revoked", "cert-revocation-unknown"},
    "cli-decode": {"exit0", "exit1"},
    "headers": {"storable=True", "storable=False"},
}  # fmt: skip


@pytest.fixture(scope="module")
def kit() -> Iterator[fuzz.Kit]:
    k = fuzz.Kit()
    yield k
    k.close()


def test_every_target_is_run_here() -> None:
    """CI runs every target of the tool."""
    assert set(CASES) == set(fuzz.TARGETS) == set(DEEP_OUTCOMES)


@pytest.mark.parametrize("target", sorted(fuzz.TARGETS))
def test_fuzz_target(kit: fuzz.Kit, target: str) -> None:
    """A few thousand mutated real samples: no finding (exception outside the package's own,
    internal-error, unreadable Verdict, non-strict JSON, failed round trip), and the cases
    reach the deeper outcomes listed for the target."""
    report = fuzz.run_target(target, CASES[target], seed=SEED, kit=kit)
    assert report.cases == CASES[target]
    assert not report.findings, "\n".join(
        f"case {case} (seed {SEED}): {what}\n  input {data!r}"[:800]
        for case, what, data in report.findings[:5]
    )
    missing = DEEP_OUTCOMES[target] - set(report.outcomes)
    assert not missing, (missing, report.outcomes.most_common())


# -- the harness can fail ----------------------------------------------------------------------


def test_harness_reports_a_planted_bug(kit: fuzz.Kit, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception that is not the package's own, an internal-error Verdict and a Verdict
    whose to_dict() is not strict JSON are all findings."""
    target = fuzz.TARGETS["json"]

    def boom(doc: bytes, kit: fuzz.Kit, rng: random.Random) -> str:
        if b"[" in doc:
            raise KeyError("planted")
        return "fine"

    monkeypatch.setitem(fuzz.TARGETS, "json", fuzz.Target("json", "", target.samples,
                                                          target.mutate, boom))  # fmt: skip
    report = fuzz.run_target("json", 300, seed=SEED, kit=kit)
    assert report.findings and all("KeyError" in what for _, what, _ in report.findings)

    internal = Verdict(False, Reason.INTERNAL_ERROR, "RuntimeError: boom")
    with pytest.raises(fuzz.InvariantError, match="internal-error"):
        fuzz.check_verdict(internal)
    not_json = Verdict(False, Reason.INVALID_CLAIM, "x", claims={"x": float("inf")})
    with pytest.raises(ValueError, match="JSON compliant"):
        fuzz.check_verdict(not_json)


# -- hypothesis: hostile JSON numbers and Identity parameters through the verifier --------------

# JSON number grammar (RFC 8259 §6), with mantissas and exponents large enough to overflow.
json_numbers = st.from_regex(
    r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,4})?", fullmatch=True
)
json_leaves = st.one_of(
    json_numbers, st.sampled_from(["true", "false", "null", '"\\ud800"', '"x"', '""']),
)  # fmt: skip


def _nest(depth: int, leaf: str) -> str:
    return "[" * depth + leaf + "]" * depth


@settings(max_examples=150, deadline=None)
@given(leaf=json_leaves, depth=st.integers(0, 40), where=st.sampled_from(["claims", "header"]))
def test_hostile_json_value_through_verifier(
    private_key: Any, public_key: Any, leaf: str, depth: int, where: str
) -> None:
    """Any JSON number (overflowing or not), a lone surrogate or nesting up to 40 levels in the
    claims or the header of a correctly signed PASSporT: a valid Verdict or a 438 JSON reason,
    lenient or strict, and every Verdict reads (for valid ones: warnings, to_dict)."""
    extra = b',"x":' + _nest(depth, leaf).encode() + b"}"
    header, claims = canonical_json(SHAKEN_HEADER), canonical_json(SHAKEN_CLAIMS)
    if where == "claims":
        claims = claims[:-1] + extra
    else:
        header = header[:-1] + extra
    value = raw_jws(private_key, header, claims) + PARAMS
    for strict in (False, True):
        verdict = Verifier(public_key, policy=VerifyPolicy(strict=strict)).check(
            value, now=SHAKEN_CLAIMS["iat"]
        )
        fuzz.check_verdict(verdict)
        assert verdict.reason in (
            Reason.VALID, Reason.INVALID_CLAIMS_JSON, Reason.INVALID_JWS_HEADER,
            Reason.NON_CANONICAL,
        ), (verdict.reason, verdict.message)  # fmt: skip
        if verdict.ok:
            assert verdict.passport is not None
            json.dumps(verdict.passport.warnings)


param_names = st.sampled_from(["info", "alg", "ppt", "INFO", "x", "crit", "info2"])
param_values = st.one_of(
    st.text(max_size=30),
    st.sampled_from([f"<{X5U}>", X5U, '"shaken"', "ES256", "<>", "<<a>", '"', "\\"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(param_names, param_values), max_size=5), st.booleans())
def test_identity_parameters_through_verifier(
    identity: str, verifier: Verifier, params: list[tuple[str, str]], keep_info: bool
) -> None:
    """Arbitrary Identity parameters after a valid PASSporT: a Verdict that reads, never
    internal-error; verify() raises only VerificationError."""
    token = identity.split(";", 1)[0]
    value = token + (f";info=<{X5U}>" if keep_info else "")
    value += "".join(f";{name}={text}" for name, text in params)
    fuzz.check_verdict(verifier.check(value, now=SHAKEN_CLAIMS["iat"]))
    try:
        verifier.verify(value, now=SHAKEN_CLAIMS["iat"])
    except VerificationError as exc:
        assert exc.reason is not Reason.INTERNAL_ERROR
