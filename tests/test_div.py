"""Diverted calls: div PASSporTs (RFC 8946) signed, and their chains verified by check().

Every retargeting entity signs with its own key behind its own x5u URL, as in the field; a
small credential source maps each URL to its key.  Times are fixed (``NOW``).
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import (
    NOW,
    AsyncProbeSource,
    CachingProbeSource,
    KeyFiles,
    ProbeSource,
    assert_verdict,
    assert_verdict_readable,
    raw_jws,
)
from secsipid import (
    Credential,
    Reason,
    RichCallData,
    Signer,
    SigningError,
    TrustPolicy,
    VerificationError,
    Verifier,
    VerifyPolicy,
    b64url_decode,
    check_identity,
    decode_token,
    load_private_key,
)
from secsipid._div import Hop, build_chain, check_div_claims
from secsipid._pki import make_lab_pki, pem

CALLER = "12155551212"
FIRST = "12155551213"  # the number dialled


@dataclass
class Carrier:
    """A retargeting entity (or the originating one): its key, x5u and Signer."""

    name: str
    key: ec.EllipticCurvePrivateKey
    x5u: str

    @property
    def signer(self) -> Signer:
        return Signer(self.key, self.x5u)


class KeySource:
    """A credential source: x5u -> public key (what fetching each certificate would give)."""

    local = True

    def __init__(self, carriers: list[Carrier]) -> None:
        self.keys = {c.x5u: Credential(c.key.public_key()) for c in carriers}

    def credential_for(self, info: str) -> Credential:
        found = self.keys.get(info)
        if found is None:
            raise VerificationError(Reason.CERT_FETCH_FAILED, f"no certificate at {info}")
        return found


@pytest.fixture(scope="module")
def carriers() -> list[Carrier]:
    return [
        Carrier(f"c{n}", ec.generate_private_key(ec.SECP256R1()), f"https://c{n}.example/sti.pem")
        for n in range(8)
    ]


@pytest.fixture(scope="module")
def verifier(carriers: list[Carrier]) -> Verifier:
    return Verifier(KeySource(carriers))


def number(n: int) -> str:
    """The n-th target of a call: FIRST, then 12155552001, 12155552002, ..."""
    return FIRST if n == 0 else f"1215555{2000 + n}"


def chain(carriers: list[Carrier], diversions: int, *, iat: int = NOW) -> list[str]:
    """A SHAKEN PASSporT to FIRST, then ``diversions`` div PASSporTs, each signed by the
    carrier that owns the number it diverts from, retargeting to the next number."""
    values = [carriers[0].signer.identity(CALLER, FIRST, "A", iat=iat)]
    for n in range(diversions):
        values.append(
            carriers[n + 1].signer.div_identity(CALLER, number(n + 1), number(n), iat=iat)
        )
    return values


def claims_of(value: str) -> dict[str, object]:
    return decode_token(value.split(";", 1)[0]).claims


# -- signing -------------------------------------------------------------------------------


def test_div_identity_is_what_rfc_8946_describes(carriers: list[Carrier]) -> None:
    """Header ppt div with the signer's x5u, claims dest/div/iat/orig only, ppt=div param."""
    value = carriers[1].signer.div_identity("+1 215 555 1212", "12155551214", FIRST, iat=NOW)
    token, params = value.split(";", 1)
    assert params == f"info=<{carriers[1].x5u}>;alg=ES256;ppt=div"
    decoded = decode_token(token)
    assert decoded.header == {
        "alg": "ES256",
        "ppt": "div",
        "typ": "passport",
        "x5u": carriers[1].x5u,
    }
    assert decoded.claims == {
        "dest": {"tn": ["12155551214"]},
        "div": {"tn": FIRST},
        "iat": NOW,
        "orig": {"tn": CALLER},
    }
    # canonical JSON (RFC 8225 §9): what was signed is the sorted, compact serialization
    assert b64url_decode(token.split(".")[1]) == (
        b'{"dest":{"tn":["12155551214"]},"div":{"tn":"12155551213"},"iat":1700000000,'
        b'"orig":{"tn":"12155551212"}}'
    )


def test_div_for_copies_orig_and_iat_and_takes_div_from_dest(carriers: list[Carrier]) -> None:
    original = carriers[0].signer.identity(CALLER, FIRST, "B", iat=NOW - 7)
    value = carriers[1].signer.div_for(original, "12155551214")
    assert claims_of(value) == {
        "dest": {"tn": ["12155551214"]},
        "div": {"tn": FIRST},
        "iat": NOW - 7,
        "orig": {"tn": CALLER},
    }


def test_div_for_refuses_what_it_cannot_use(carriers: list[Carrier]) -> None:
    signer = carriers[1].signer
    several = carriers[0].signer.identity(CALLER, [FIRST, "12155559999"], "A", iat=NOW)
    with pytest.raises(SigningError, match="several dest"):
        signer.div_for(several, "12155551214")
    assert claims_of(signer.div_for(several, "12155551214", div_tn="12155559999"))["div"] == {
        "tn": "12155559999"
    }
    with pytest.raises(SigningError, match="not a dest"):
        signer.div_for(several, "12155551214", div_tn="12155550000")
    with pytest.raises(SigningError) as exc:
        signer.div_for("not-a-passport;info=<https://x.example/a>", "12155551214")
    assert exc.value.code == "invalid-original"
    # RFC 8946 §3: no div PASSporT when the canonical dest does not change
    with pytest.raises(SigningError, match="not retargeted"):
        signer.div_identity(CALLER, FIRST, "+1-215-555-1213")


def test_div_o_carries_the_original_in_opt(carriers: list[Carrier]) -> None:
    """RFC 8946 §5-§6: div-o holds the prior full-form PASSporT in opt."""
    original = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    value = carriers[1].signer.div_for(original, "12155551214", ppt="div-o")
    token, params = value.split(";", 1)
    assert params.endswith(";ppt=div-o")
    decoded = decode_token(token)
    assert decoded.header["ppt"] == "div-o"
    assert decoded.claims["opt"] == original.split(";", 1)[0]
    assert decoded.claims["div"] == {"tn": FIRST}


# -- chains that hold --------------------------------------------------------------------------


@pytest.mark.parametrize("diversions", [1, 2, 5])
def test_chain_of_shaken_and_diversions_is_valid(
    verifier: Verifier, carriers: list[Carrier], diversions: int
) -> None:
    values = chain(carriers, diversions)
    target = number(diversions)
    verdict = verifier.check(values, orig_tn=CALLER, dest_tn=target, now=NOW)
    assert verdict.ok, (verdict.reason, verdict.message)
    assert verdict.diverted
    assert verdict.passport is not None and verdict.passport.ppt == "shaken"
    assert verdict.index == 0 and verdict.passport.attest == "A"
    assert [hop.ppt for hop in verdict.chain] == ["shaken"] + ["div"] * diversions
    assert [hop.index for hop in verdict.chain] == list(range(diversions + 1))
    assert [hop.div for hop in verdict.chain[1:]] == [number(n) for n in range(diversions)]
    assert verdict.chain[-1].dest == (target,)
    assert all(hop.ok for hop in verdict.chain)
    assert verdict.failures == ()  # the SHAKEN's own dest mismatch is explained by the chain
    assert verdict.verstat == "TN-Validation-Passed"


@pytest.mark.parametrize("diversions", [1, 2])
def test_header_order_is_free(verifier: Verifier, carriers: list[Carrier], diversions: int) -> None:
    values = chain(carriers, diversions)
    for order in itertools.permutations(values):
        verdict = verifier.check(list(order), dest_tn=number(diversions), now=NOW)
        assert verdict.ok and verdict.diverted, (order, verdict.reason)
        assert verdict.chain[-1].dest == (number(diversions),)


def test_five_diversions_in_random_orders(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 5)
    rng = random.Random(8946)
    for _ in range(20):
        order = values[:]
        rng.shuffle(order)
        verdict = verifier.check(order, dest_tn=number(5), now=NOW)
        assert verdict.ok and len(verdict.chain) == 6


def test_comma_joined_values_and_quoted_ppt(verifier: Verifier, carriers: list[Carrier]) -> None:
    """One header line with both values; ppt="div" quoted as in RFC 8946 §4.1."""
    shaken, div = chain(carriers, 1)
    quoted = div.replace(";ppt=div", ';ppt="div"')
    verdict = verifier.check(f"{quoted}, {shaken}", dest_tn=number(1), now=NOW)
    assert verdict.ok and verdict.diverted


def test_without_a_call_target_the_chain_is_still_judged(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    values = chain(carriers, 2)
    verdict = verifier.check(values, now=NOW)
    assert verdict.ok  # the SHAKEN PASSporT is valid on its own when no target is given
    assert [hop.ppt for hop in verdict.chain] == ["shaken", "div", "div"]
    assert verdict.chain_failure is None


def test_acheck_gives_the_same_verdicts(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 2)

    async def both() -> list[tuple[bool, str, int]]:
        out = []
        for vals, target in ((values, number(2)), (values[1:], number(2)), (values, "1999")):
            v = await verifier.acheck(vals, dest_tn=target, now=NOW)
            out.append((v.ok, v.reason.value, len(v.chain)))
        return out

    expected = []
    for vals, target in ((values, number(2)), (values[1:], number(2)), (values, "1999")):
        v = verifier.check(vals, dest_tn=target, now=NOW)
        expected.append((v.ok, v.reason.value, len(v.chain)))
    assert asyncio.run(both()) == expected
    assert expected[0] == (True, "valid", 3)


def test_valid_shaken_for_the_target_stays_valid_beside_a_broken_chain(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    """RFC 8224 §6.2.1: one valid Identity header is enough; the chain's fault is reported."""
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    stray = carriers[2].signer.div_identity(CALLER, FIRST, "12155550000", iat=NOW)
    verdict = verifier.check([stray, shaken], dest_tn=FIRST, now=NOW)
    assert verdict.ok and verdict.index == 1 and not verdict.diverted
    assert verdict.chain_failure is not None
    assert verdict.chain_failure.reason is Reason.DIV_CHAIN_BROKEN
    assert verdict.chain_failure.index == 0  # the stray div
    assert verdict.chain_failure.lib_code == Reason.DIV_CHAIN_BROKEN.lib_code
    message = (
        "Identity value 0 diverts from 12155550000, which is the dest of no other PASSporT "
        "in the request"
    )
    assert verdict.chain_failure.message == message
    assert verdict.to_dict()["chain_failure"] == {
        "index": 0,
        "reason": "div-chain-broken",
        "message": message,
    }


# -- chains that do not hold -----------------------------------------------------------------


def test_broken_chain(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 3)
    del values[2]  # the hop from number(1) to number(2) is missing
    verdict = verifier.check(values, dest_tn=number(3), now=NOW)
    assert_verdict(verdict, Reason.DIV_CHAIN_BROKEN)
    assert verdict.sip_status == 438
    assert "12155552002" in verdict.message  # the number nobody diverted to
    assert [hop.div for hop in verdict.chain] == [number(2)]
    # the verdict is about the value where the chain broke, and keeps every value's failure
    assert verdict.index == 2
    assert verdict.header == decode_token(values[2].split(";", 1)[0]).header
    assert verdict.claims == claims_of(values[2])
    assert [(f.index, f.reason) for f in verdict.failures] == [(0, Reason.DEST_MISMATCH)]


def test_changed_orig_invalidates_the_whole_chain(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    values = chain(carriers, 2)
    values[2] = carriers[2].signer.div_identity("12155550666", number(2), number(1), iat=NOW)
    verdict = verifier.check(values, dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.DIV_ORIG_MISMATCH)
    assert verdict.index == 2
    assert len(verdict.chain) == 3 and all(hop.ok for hop in verdict.chain)


def test_stale_hop(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 2)
    values[1] = carriers[1].signer.div_identity(CALLER, number(1), number(0), iat=NOW - 3600)
    verdict = verifier.check(values, dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.STALE)
    assert verdict.sip_status == 403 and verdict.index == 1
    assert [hop.reason for hop in verdict.chain] == [Reason.VALID, Reason.STALE, Reason.VALID]
    assert "Identity value 1" in verdict.message


def test_a_div_that_fails_its_own_checks_sends_both_paths_to_the_chain(
    carriers: list[Carrier],
) -> None:
    """A div PASSporT met first as a failure (stale) still makes check and acheck judge the
    whole chain, fetching what is not at hand within the budget: the same verdict both ways."""
    stale = carriers[1].signer.div_identity(CALLER, number(1), number(0), iat=NOW - 3600)
    values = chain(carriers, 2)
    values[1] = stale
    shaken = values[0]
    for request, target, reasons in (
        (values, number(2), [Reason.VALID, Reason.STALE, Reason.VALID]),
        ([stale, shaken], number(1), [Reason.VALID, Reason.STALE]),  # no other div after it
    ):
        source = CachingProbeSource(KeySource(carriers).keys, {carriers[0].x5u})
        verdicts = _both(source, request, dest_tn=target)
        for mode, verdict in verdicts:
            assert_verdict(verdict, Reason.STALE)
            assert verdict.index == request.index(stale), mode
            assert [hop.reason for hop in verdict.chain] == reasons, mode
        assert verdicts[0][1].to_dict() == verdicts[1][1].to_dict()


def test_stale_innermost_shaken(verifier: Verifier, carriers: list[Carrier]) -> None:
    """RFC 8946 §4.2 step 4 RECOMMENDS the innermost iat be fresh too: it must here."""
    values = chain(carriers, 1)
    values[0] = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW - 3600)
    verdict = verifier.check(values, dest_tn=number(1), now=NOW)
    assert_verdict(verdict, Reason.STALE)
    assert verdict.chain[0].reason is Reason.STALE


def test_hop_signed_by_another_key(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 2)
    # carrier 7's key, but carrier 2's x5u: the signature does not verify with that credential
    impostor = Signer(carriers[7].key, carriers[2].x5u)
    values[2] = impostor.div_identity(CALLER, number(2), number(1), iat=NOW)
    verdict = verifier.check(values, dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.BAD_SIGNATURE)
    assert verdict.verstat == "TN-Validation-Failed"
    assert verdict.chain[-1].reason is Reason.BAD_SIGNATURE


def test_div_without_shaken(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 2)[1:]
    verdict = verifier.check(values, dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.DIV_WITHOUT_SHAKEN)


def test_target_mismatch(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 2)
    verdict = verifier.check(values, dest_tn="12155559999", now=NOW)
    assert_verdict(verdict, Reason.DIV_TARGET_MISMATCH)
    assert "12155559999" in verdict.message


def test_duplicate_hops(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 2)
    verdict = verifier.check([*values, values[1]], dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.DIV_DUPLICATE_HOP)
    assert verdict.index == 3


def test_loop(verifier: Verifier, carriers: list[Carrier]) -> None:
    """B -> C and C -> B: the chain to C diverts from B twice and never reaches SHAKEN."""
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    b, c = "12155550002", "12155550003"
    b_to_c = carriers[1].signer.div_identity(CALLER, c, b, iat=NOW)
    c_to_b = carriers[2].signer.div_identity(CALLER, b, c, iat=NOW)
    verdict = verifier.check([shaken, b_to_c, c_to_b], dest_tn=c, now=NOW)
    assert_verdict(verdict, Reason.DIV_LOOP)


def test_div_to_itself_is_a_loop(verifier: Verifier, carriers: list[Carrier]) -> None:
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    token = carriers[1].signer.sign_claims(
        {"dest": {"tn": [FIRST]}, "div": {"tn": FIRST}, "iat": NOW, "orig": {"tn": CALLER}},
        ppt="div",
    )
    value = f"{token};info=<{carriers[1].x5u}>;alg=ES256;ppt=div"
    verdict = verifier.check([shaken, value], now=NOW)
    assert verdict.ok  # the SHAKEN PASSporT alone, no target given
    assert verdict.chain_failure is not None
    assert verdict.chain_failure.reason is Reason.DIV_LOOP


def test_broken_chain_never_makes_a_failing_request_valid(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    values = chain(carriers, 1)
    forged = carriers[5].signer.identity(CALLER, FIRST, "A", iat=NOW)  # wrong key for c0's URL
    forged = forged.replace(carriers[5].x5u, carriers[0].x5u)
    for vals in ([forged, values[1]], [values[1]], [forged]):
        verdict = verifier.check(vals, dest_tn=number(1), now=NOW)
        assert not verdict.ok, vals


def test_div_claims_rules(verifier: Verifier, carriers: list[Carrier]) -> None:
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    signer = carriers[1].signer
    base = {"dest": {"tn": ["1"]}, "div": {"tn": FIRST}, "iat": NOW, "orig": {"tn": CALLER}}
    cases = [
        ({k: v for k, v in base.items() if k != "div"}, Reason.MISSING_CLAIM),
        ({**base, "div": {"tn": FIRST, "uri": "sip:a@b"}}, Reason.INVALID_CLAIM),
        ({**base, "div": "12155551213"}, Reason.INVALID_CLAIM),
        ({**base, "opt": "x.y.z"}, Reason.INVALID_CLAIM),  # RFC 8946 §3: no opt in div
        ({**base, "dest": {"tn": "1"}}, Reason.INVALID_CLAIM),  # the RFC's div-o typo
        ({**base, "iat": "1700000000"}, Reason.INVALID_CLAIM),
    ]
    for claims, reason in cases:
        token = signer.sign_claims(claims, ppt="div")
        value = f"{token};info=<{carriers[1].x5u}>;alg=ES256;ppt=div"
        verdict = verifier.check([shaken, value], dest_tn="1", now=NOW)
        assert not verdict.ok
        (failure,) = verdict.failures[1:]
        assert failure.reason is reason, (claims, failure)
    # ppt param div over a header that says shaken
    token = signer.sign_claims(base, ppt="shaken")
    verdict = verifier.check(
        [shaken, f"{token};info=<{carriers[1].x5u}>;ppt=div"], dest_tn="1", now=NOW
    )
    assert verdict.failures[-1].reason is Reason.PPT_MISMATCH
    # libsecsipid refuses any ppt parameter but shaken (-303) before it reads the header; a
    # shaken Identity over a div header is its header mismatch (-203).
    assert verdict.failures[-1].lib_code == -303
    div_token = signer.sign_claims(base, ppt="div")
    shaken_over_div = verifier.check(f"{div_token};info=<{carriers[1].x5u}>", now=NOW)
    assert (shaken_over_div.reason, shaken_over_div.lib_code) == (Reason.PPT_MISMATCH, -203)


def test_verify_alone_refuses_a_div(verifier: Verifier, carriers: list[Carrier]) -> None:
    div = chain(carriers, 1)[1]
    with pytest.raises(VerificationError) as exc:
        verifier.verify(div, now=NOW)
    assert exc.value.reason is Reason.UNSUPPORTED_PPT
    assert exc.value.message == (
        "Identity ppt 'div' is not supported here: a div PASSporT is verified with its chain, "
        "by check()"
    )


def test_div_o_is_ignored_by_check(verifier: Verifier, carriers: list[Carrier]) -> None:
    """div-o is for non-SIP transports (RFC 8946 §5): an unsupported ppt, ignored (step 1)."""
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    div_o = carriers[1].signer.div_for(shaken, "12155551214", ppt="div-o")
    verdict = verifier.check([div_o], now=NOW)
    assert_verdict(verdict, Reason.UNSUPPORTED_PPT)


def test_verdict_to_dict_is_strict_json(verifier: Verifier, carriers: list[Carrier]) -> None:
    values = chain(carriers, 2)
    for vals, target in ((values, number(2)), (values[::2], number(2))):
        data = verifier.check(vals, dest_tn=target, now=NOW).to_dict()
        text = json.dumps(data, allow_nan=False)
        back = json.loads(text)
        assert [hop["ppt"] for hop in back["chain"]] in (["shaken", "div", "div"], ["div"])
    good = verifier.check(values, dest_tn=number(2), now=NOW).to_dict()
    assert good["diverted"] is True and good["chain"][2]["div"] == number(1)
    assert good["chain"][0] == {
        "index": 0,
        "ppt": "shaken",
        "orig": CALLER,
        "dest": [FIRST],
        "div": None,
        "iat": NOW,
        "valid": True,
        "reason": "valid",
        "message": "",
    }


def test_the_chain_path_compares_orig_too(verifier: Verifier, carriers: list[Carrier]) -> None:
    """orig_tn is the calling party on the chain path as on the one-value path: a chain for
    another caller is orig-mismatch at every hop, never valid."""
    values = chain(carriers, 2)
    for mode in ("sync", "async"):
        verdict = (
            verifier.check(values, orig_tn="12155550999", dest_tn=number(2), now=NOW)
            if mode == "sync"
            else asyncio.run(
                verifier.acheck(values, orig_tn="12155550999", dest_tn=number(2), now=NOW)
            )
        )
        assert_verdict(verdict, Reason.ORIG_MISMATCH)
        assert [(f.index, f.reason) for f in verdict.failures] == [
            (n, Reason.ORIG_MISMATCH) for n in range(3)
        ], mode
    assert verifier.check(values, orig_tn=CALLER, dest_tn=number(2), now=NOW).ok


def test_a_shaken_hop_that_fails_its_signature_still_roots_the_chain(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    """A SHAKEN PASSporT whose signature fails is still the chain's first hop (reported
    there); two different div PASSporTs that fail are two hops, not a duplicate."""
    values = chain(carriers, 2)
    values[0] = Signer(carriers[7].key, carriers[0].x5u).identity(CALLER, FIRST, "A", iat=NOW)
    verdict = verifier.check(values, dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.BAD_SIGNATURE)
    assert verdict.index == 0
    assert [(h.index, h.reason) for h in verdict.chain] == [
        (0, Reason.BAD_SIGNATURE),
        (1, Reason.VALID),
        (2, Reason.VALID),
    ]
    values = chain(carriers, 2)
    for n in (1, 2):  # both divs signed with a key their x5u does not hold
        values[n] = Signer(carriers[7].key, carriers[n].x5u).div_identity(
            CALLER, number(n), number(n - 1), iat=NOW
        )
    verdict = verifier.check(values, dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.BAD_SIGNATURE)
    assert [h.reason for h in verdict.chain] == [Reason.VALID] + [Reason.BAD_SIGNATURE] * 2


def test_a_valid_chain_keeps_the_failures_of_values_outside_it(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    """Only the dest-mismatch of the chain's own SHAKEN PASSporT is explained by the chain: a
    value outside it keeps its failure; a div's dest is never compared on its own."""
    values = chain(carriers, 1)
    stray = carriers[3].signer.identity(CALLER, "12155550000", "A", iat=NOW)
    verdict = verifier.check([*values, stray], dest_tn=number(1), now=NOW)
    assert verdict.ok and verdict.diverted and verdict.index == 0
    assert [(f.index, f.reason) for f in verdict.failures] == [(2, Reason.DEST_MISMATCH)]
    mismatch = verifier.check(chain(carriers, 2), dest_tn="12155550000", now=NOW)
    assert_verdict(mismatch, Reason.DIV_TARGET_MISMATCH)
    assert [(f.index, f.reason) for f in mismatch.failures] == [(0, Reason.DEST_MISMATCH)]


def test_a_chain_may_be_as_long_as_the_request_allows() -> None:
    """The chain's depth limit is the request's limit on Identity values (max_identities),
    not a fixed 16: 17 diversions fit in a request of at most 20 values."""
    many = [
        Carrier(f"c{n}", ec.generate_private_key(ec.SECP256R1()), f"https://c{n}.example/a.pem")
        for n in range(18)
    ]
    values = chain(many, 17)
    verifier = Verifier(KeySource(many), policy=VerifyPolicy(max_identities=20))
    verdict = verifier.check(values, dest_tn=number(17), now=NOW)
    assert verdict.ok and verdict.diverted, (verdict.reason, verdict.message)
    assert len(verdict.chain) == 18


def test_a_call_diverted_to_a_sip_uri(verifier: Verifier, carriers: list[Carrier]) -> None:
    """A div PASSporT whose dest is a URI (RFC 8225 §5.2.1) carries the call to that URI."""
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    header = json.dumps(
        {"alg": "ES256", "ppt": "div", "typ": "passport", "x5u": carriers[1].x5u}
    ).encode()
    claims = {"dest": {"uri": ["sip:alice@example.com"]}, "div": {"tn": FIRST}, "iat": NOW,
              "orig": {"tn": CALLER}}  # fmt: skip
    token = raw_jws(carriers[1].key, header, json.dumps(claims).encode())
    div = f"{token};info=<{carriers[1].x5u}>;alg=ES256;ppt=div"
    verdict = verifier.check([shaken, div], dest_tn="sip:alice@example.com", now=NOW)
    assert verdict.ok and verdict.diverted, (verdict.reason, verdict.message)
    assert verdict.chain[-1].dest == ("sip:alice@example.com",)
    verdict = verifier.check([shaken, div], dest_tn="sip:bob@example.com", now=NOW)
    assert_verdict(verdict, Reason.DIV_TARGET_MISMATCH)


# -- which requests take the chain path --------------------------------------------------------


def test_a_div_after_a_valid_shaken_is_found_past_any_other_value(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    """A valid SHAKEN PASSporT first still sends the request down the chain path when a div
    PASSporT follows, whatever lies between (a value without parameters, another SHAKEN one,
    an unparsable one that mentions div) and wherever its ppt parameter is written."""
    shaken, div = chain(carriers, 1)
    token = div.split(";", 1)[0]
    reordered = f"{token};ppt=div;info=<{carriers[1].x5u}>;alg=ES256"
    other = carriers[2].signer.identity(CALLER, FIRST, "B", iat=NOW)
    for values in (
        [shaken, reordered],
        [shaken, "no-parameters-at-all", div],
        [shaken, other, div],
        [shaken, "not parsable;ppt=div;;", div],
        [shaken, div, other],
    ):
        at = values.index(reordered if reordered in values else div)
        for verdict in (verifier.check(values, now=NOW),
                        asyncio.run(verifier.acheck(values, now=NOW))):  # fmt: skip
            assert verdict.ok and verdict.index == 0, (values, verdict.reason, verdict.message)
            assert [(hop.index, hop.ppt) for hop in verdict.chain][-1] == (at, "div"), values
            assert verdict.chain[0].index == 0


def test_values_that_only_mention_div_or_rcd_keep_the_single_value_path(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    """A later value without a ppt parameter, or with ppt=shaken, is no div or rcd PASSporT
    even when its other parameters say "div" or "rcd": a valid first SHAKEN value ends the
    check (no chain, no exception)."""
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    later = carriers[1].signer.identity(CALLER, FIRST, "A", iat=NOW).split(";", 1)[0]
    for tail in (
        ";info=<https://rcd.example/sti.pem>",
        ";info=<https://div.example/sti.pem>;ppt=shaken",
    ):
        verdict = verifier.check([shaken, later + tail], now=NOW)
        assert verdict.ok and verdict.index == 0 and verdict.chain == (), tail
        assert verdict.failures == ()


# -- hops that failed their own checks --------------------------------------------------------


def test_two_different_stale_hops_are_not_duplicates(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    values = chain(carriers, 2, iat=NOW - 3600)
    values[0] = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    verdict = verifier.check(values, dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.STALE)
    assert [hop.reason for hop in verdict.chain] == [Reason.VALID, Reason.STALE, Reason.STALE]


def test_the_same_stale_hop_twice_is_a_duplicate_however_its_parameters_are_written(
    verifier: Verifier, carriers: list[Carrier]
) -> None:
    """A duplicate is the same PASSporT (the token), whatever the parameters beside it."""
    values = chain(carriers, 2)
    stale = carriers[1].signer.div_identity(CALLER, number(1), number(0), iat=NOW - 3600)
    token = stale.split(";", 1)[0]
    values[1] = stale
    again = f"{token};ppt=div;info=<{carriers[1].x5u}>;alg=ES256"
    verdict = verifier.check([*values, again], dest_tn=number(2), now=NOW)
    assert_verdict(verdict, Reason.DIV_DUPLICATE_HOP)
    assert verdict.index == 3
    assert verdict.message == "Identity values 1 and 3 carry the same div PASSporT"


# -- credentials of a chain: the source protocol and the request's budget -----------------------

BUDGET = 2.0


def _both(source: object, values: list[str], **kw: object) -> list[tuple[str, object]]:
    """check and acheck of ``values`` by a Verifier with ``source`` and a 2 s budget."""
    verdicts = []
    for mode in ("sync", "async"):
        verifier = Verifier(source, policy=VerifyPolicy(timeout=BUDGET))  # type: ignore[arg-type]
        if mode == "sync":
            verdicts.append((mode, verifier.check(values, now=NOW, **kw)))  # type: ignore[arg-type]
        else:
            verdicts.append(
                (mode, asyncio.run(verifier.acheck(values, now=NOW, **kw)))  # type: ignore[arg-type]
            )
    return verdicts


def test_chain_credentials_at_hand_first_then_fetched_within_the_budget(
    carriers: list[Carrier],
) -> None:
    """check and acheck of a chain ask a source as the one-value path does: a credential at
    hand through cached_credential only, every other one fetched within the request's budget;
    one URL to fetch is fetched on the calling thread (no private event loop).  The
    VerifiedPassport keeps its Identity header whichever way its credential came."""
    keys = KeySource(carriers).keys
    values = chain(carriers, 1)
    urls = [carriers[0].x5u, carriers[1].x5u]
    for at_hand in urls:
        for mode in ("sync", "async"):
            source = CachingProbeSource(keys, {at_hand})
            verifier = Verifier(source, policy=VerifyPolicy(timeout=BUDGET))
            verdict = (
                verifier.check(values, dest_tn=number(1), now=NOW)
                if mode == "sync"
                else asyncio.run(verifier.acheck(values, dest_tn=number(1), now=NOW))
            )
            assert verdict.ok and verdict.diverted, (mode, verdict.reason, verdict.message)
            assert_verdict_readable(verdict)
            assert verdict.passport is not None and verdict.passport.info == urls[0]
            assert verdict.passport.identity.info == urls[0]
            fetched = [c for c in source.calls if c.how == "credential_for"]
            assert [c.info for c in fetched] == [u for u in urls if u != at_hand], mode
            assert all(c.within(BUDGET) for c in fetched), (mode, fetched)
            if mode == "sync":
                assert not any(c.in_loop for c in fetched)
    for mode, verdict in _both(ProbeSource(keys), values, dest_tn=number(1)):
        assert verdict.ok and verdict.diverted, (mode, verdict.reason, verdict.message)
    # no call target: the SHAKEN value at hand is valid on its own, and the div after it
    # is still fetched, within the budget, to report the chain
    source = CachingProbeSource(keys, {urls[0]})
    for mode, verdict in _both(source, values):
        assert verdict.ok and verdict.index == 0 and len(verdict.chain) == 2, mode
    fetched = [c for c in source.calls if c.how == "credential_for"]
    assert [c.info for c in fetched] == [urls[1]] * 2
    assert all(c.within(BUDGET) for c in fetched), fetched
    for mode in ("sync", "async"):
        unknown = ProbeSource(keys)
        verifier = Verifier(unknown, policy=VerifyPolicy(timeout=BUDGET))
        verdict = (
            verifier.check(values, now=NOW)
            if mode == "sync"
            else asyncio.run(verifier.acheck(values, now=NOW))
        )
        assert verdict.ok and len(verdict.chain) == 2, (mode, verdict.reason)
        assert sorted(set(unknown.asked("credential_for"))) == urls
        assert all(c.within(BUDGET) for c in unknown.calls), (mode, unknown.calls)


def test_chain_fetch_failures_keep_their_reasons(carriers: list[Carrier]) -> None:
    """A chain whose second certificate holds another key and whose third cannot be fetched:
    bad-signature and cert-fetch-failed, each at its value, on every fetch path (one URL at a
    time, or all at once on an event loop)."""
    keys = KeySource(carriers).keys
    keys[carriers[1].x5u] = Credential(carriers[5].key.public_key())
    del keys[carriers[2].x5u]
    values = chain(carriers, 2)
    for source in (CachingProbeSource(keys, set()), AsyncProbeSource(keys, set())):
        for mode, verdict in _both(source, values, dest_tn=number(2)):
            assert not verdict.ok
            got = [(f.index, f.reason) for f in verdict.failures]
            assert (1, Reason.BAD_SIGNATURE) in got, (type(source).__name__, mode, got)
            assert (2, Reason.CERT_FETCH_FAILED) in got, (type(source).__name__, mode, got)
            assert Reason.INTERNAL_ERROR not in {f.reason for f in verdict.failures}
            assert [hop.reason for hop in verdict.chain][1:] == [
                Reason.BAD_SIGNATURE,
                Reason.CERT_FETCH_FAILED,
            ], (type(source).__name__, mode)


def test_chain_of_several_urls_fetched_at_once_unless_inside_an_event_loop(
    carriers: list[Carrier],
) -> None:
    """Several cold URLs and a source with acredential_for: check fetches them all at once
    (on a private event loop); called from a coroutine (no private loop possible) it asks
    credential_for, one URL after the other."""
    keys = KeySource(carriers).keys
    values = chain(carriers, 1)
    urls = sorted(keys[c.x5u] and c.x5u for c in carriers[:2])
    source = AsyncProbeSource(keys, set())
    verifier = Verifier(source, policy=VerifyPolicy(timeout=BUDGET))
    assert verifier.check(values, dest_tn=number(1), now=NOW).ok
    assert sorted(source.asked("acredential_for")) == urls
    assert source.asked("credential_for") == []

    inside = AsyncProbeSource(keys, set())
    verifier = Verifier(inside, policy=VerifyPolicy(timeout=BUDGET))

    async def from_a_coroutine() -> bool:
        return verifier.check(values, dest_tn=number(1), now=NOW).ok

    assert asyncio.run(from_a_coroutine())
    assert sorted(inside.asked("credential_for")) == urls
    assert inside.asked("acredential_for") == []

    one = AsyncProbeSource(keys, {carriers[0].x5u})  # one URL to fetch: on this thread
    verifier = Verifier(one, policy=VerifyPolicy(timeout=BUDGET))
    assert verifier.check(values, dest_tn=number(1), now=NOW).ok
    assert one.asked("credential_for") == [carriers[1].x5u]
    assert one.asked("acredential_for") == []


class _WrapsAsync(CachingProbeSource):
    """A synchronous source around an asyncio client (asyncio.run per call), with a cache:
    it must be called where no event loop runs."""

    def credential_for(self, info: str) -> Credential:
        async def fetch() -> Credential:
            return self._answer("credential_for", info)

        return asyncio.run(fetch())


def test_a_synchronous_source_is_asked_outside_any_event_loop(carriers: list[Carrier]) -> None:
    """A source without acredential_for is asked on the calling thread, for one URL to
    fetch as for several."""
    keys = KeySource(carriers).keys
    for values in (chain(carriers, 1), chain(carriers, 2)):
        source = _WrapsAsync(keys, set())
        verdict = Verifier(source).check(values, now=NOW)
        assert verdict.ok and len(verdict.chain) == len(values), (verdict.reason, verdict.message)
        assert len(source.asked("credential_for")) == len(values)
    # SHAKEN values alone: one URL, then two (the first holds another key, or nothing)
    shaken = carriers[0].signer.identity(CALLER, FIRST, "A", iat=NOW)
    forged = Signer(carriers[7].key, carriers[1].x5u).identity(CALLER, FIRST, "A", iat=NOW)
    unknown = Signer(carriers[7].key, "https://unknown.example/sti.pem")
    missing = unknown.identity(CALLER, FIRST, "A", iat=NOW)
    same_url = Signer(carriers[7].key, carriers[0].x5u).identity(CALLER, FIRST, "A", iat=NOW)
    for values, index in (
        ([shaken], 0),
        ([forged, shaken], 1),
        ([missing, shaken], 1),
        ([same_url, shaken], 1),  # one URL, the first value's signature fails
    ):
        source = _WrapsAsync(keys, set())
        verdict = Verifier(source).check(values, now=NOW)
        assert verdict.ok and verdict.index == index, (verdict.reason, verdict.failures)
        urls = {value.split("info=<", 1)[1].split(">", 1)[0] for value in values}
        assert sorted(source.asked("credential_for")) == sorted(urls)  # each URL once
    # a source with acredential_for and one URL to fetch: asked on the calling thread too
    one = AsyncProbeSource(keys, set())
    assert Verifier(one).check([shaken], now=NOW).ok
    assert (one.asked("credential_for"), one.asked("acredential_for")) == ([carriers[0].x5u], [])


class _SlowCache(AsyncProbeSource):
    """A cache that takes ``lookup`` seconds to answer (a slow disk), and a fetch that takes
    ``fetch`` seconds (0: answers without suspending)."""

    def __init__(self, keys: dict[str, Credential], cached: set[str], lookup: float,
                 fetch: float) -> None:  # fmt: skip
        super().__init__(keys, cached)
        self.lookup, self.fetch = lookup, fetch

    def cached_credential(self, info: str) -> Credential | None:
        time.sleep(self.lookup)
        return super().cached_credential(info)

    async def acredential_for(self, info: str) -> Credential:
        if self.fetch:
            await asyncio.sleep(self.fetch)
        return self._answer("acredential_for", info)


def test_chain_fetches_end_with_the_request_budget(carriers: list[Carrier]) -> None:
    """A chain's fetches share the request's budget: a certificate that has not arrived when
    it ends is cert-fetch-timeout at its value, naming the URL; when looking up the
    credentials at hand already used the budget up, nothing more is awaited, even a fetch
    that would answer at once."""
    keys = KeySource(carriers).keys
    values = chain(carriers, 2)
    slow_url = carriers[2].x5u
    cases = [
        # the first at hand, the others take 3 s each: cut at the 0.3 s budget
        (_SlowCache(keys, {carriers[0].x5u}, 0.0, 3.0), [1, 2]),
        # the lookups take 0.2 s each: the budget is gone before any fetch
        (_SlowCache(keys, {carriers[0].x5u}, 0.2, 0.0), [1, 2]),
    ]
    for source, timed_out in cases:
        for mode in ("sync", "async"):
            verifier = Verifier(source, policy=VerifyPolicy(timeout=0.3))
            verdict = (
                verifier.check(values, dest_tn=number(2), now=NOW)
                if mode == "sync"
                else asyncio.run(verifier.acheck(values, dest_tn=number(2), now=NOW))
            )
            assert not verdict.ok, mode
            late = [f for f in verdict.failures if f.reason is Reason.CERT_FETCH_TIMEOUT]
            assert [f.index for f in late] == timed_out, (mode, verdict.failures)
            assert (
                late[-1].message == f"{slow_url}: no certificate within the request's time budget"
            )
    # within a budget under a second, a fetch that answers in time is used
    for mode in ("sync", "async"):
        quick = _SlowCache(keys, {carriers[0].x5u}, 0.0, 0.05)
        verifier = Verifier(quick, policy=VerifyPolicy(timeout=0.8))
        verdict = (
            verifier.check(values, dest_tn=number(2), now=NOW)
            if mode == "sync"
            else asyncio.run(verifier.acheck(values, dest_tn=number(2), now=NOW))
        )
        assert verdict.ok, (mode, verdict.reason, verdict.message)


# -- trust: the div signer's authority is over div, not orig (RFC 8946 §3, §4.2 step 2) --


def test_div_signer_needs_authority_over_div_not_orig(tmp_path: Path) -> None:
    """Certificates listing TNs (RFC 9060 delegates): the forwarding carrier's covers the
    diverting number and not the caller, and that is what a div needs."""
    forwarding = make_lab_pki(tns=[FIRST])
    caller_pki = make_lab_pki(tns=[CALLER], root=(forwarding.root_key, forwarding.root))
    (tmp_path / "root.pem").write_bytes(pem(forwarding.root))
    trust = TrustPolicy(ca_file=str(tmp_path / "root.pem"))

    class Chains:
        local = True

        def credential_for(self, info: str) -> Credential:
            pki = caller_pki if "c0." in info else forwarding
            return Credential.from_certificates([pki.leaf, pki.intermediate])

    now = int(time.time())
    caller = Signer(caller_pki.leaf_key, "https://c0.example/sti.pem")
    forwarder = Signer(forwarding.leaf_key, "https://c1.example/sti.pem")
    verifier = Verifier(Chains(), trust=trust)
    shaken = caller.identity(CALLER, FIRST, "A", iat=now)
    div_ok = forwarder.div_identity(CALLER, "12155551214", FIRST, iat=now)
    verdict = verifier.check([shaken, div_ok], dest_tn="12155551214", now=now)
    assert verdict.ok and verdict.diverted, (verdict.reason, verdict.message)
    # diverting from a number the forwarding carrier's certificate does not cover
    shaken_other = caller.identity(CALLER, "12155550000", "A", iat=now)
    div_bad = forwarder.div_identity(CALLER, "12155551214", "12155550000", iat=now)
    verdict = verifier.check([shaken_other, div_bad], dest_tn="12155551214", now=now)
    assert_verdict(verdict, Reason.CERT_TN_NOT_AUTHORIZED)
    assert verdict.chain[-1].reason is Reason.CERT_TN_NOT_AUTHORIZED


# -- RFC 8946's own vectors ---------------------------------------------------------------------

RFC8946_KEY = b"""-----BEGIN EC PRIVATE KEY-----
MHcCAQEEIFKCsFZ4Wsw3ZpBxgc4Z0sOjaXDdMk07Ny1fKg6OntAkoAoGCCqGSM49
AwEHoUQDQgAEmzGM1VsO+3IqbMF54rQMaYKQftO4hUYm9wv5wutLgEd9FsiTy3+4
+Wa2O7pffOXPC0QzO+yD8hGEXGP/2mZo6w==
-----END EC PRIVATE KEY-----
"""
RFC8946_DIV = (
    "eyJhbGciOiJFUzI1NiIsInBwdCI6ImRpdiIsInR5cCI6InBhc3Nwb3J0IiwieDV1IjoiaHR0cHM6Ly93d3cuZXhhb"
    "XBsZS5jb20vY2VydC5jZXIifQ.eyJkZXN0Ijp7InRuIjpbIjEyMTU1NTUxMjE0Il19LCJkaXYiOnsidG4iOiIxMjE1"
    "NTU1NTEyMTMifSwiaWF0IjoxNDQzMjA4MzQ1LCJvcmlnIjp7InRuIjoiMTIxNTU1NTEyMTIifX0.xBHWipDEEJ8a6T"
    "sdX6xUXAnblsFiGUiAxwLiv0HLC9IICj6eG9jQd6WzeSSjHRBwxmChHhVIiMTSqIlk3yCNkg"
)
RFC_X5U = "https://www.example.com/cert.cer"
RFC_IAT = 1443208345


def test_rfc_8946_example_div_verifies_but_does_not_chain() -> None:
    """§3/§4.1: the example's signature is right, but its div 121555551213 (a typo, one 5
    too many) is not the original dest 12155551213: what the text says cannot chain it."""
    key = load_private_key(RFC8946_KEY)
    signer = Signer(key, RFC_X5U)
    shaken = signer.identity("12155551212", "12155551213", "A", iat=RFC_IAT)
    div = f'{RFC8946_DIV}; info=<{RFC_X5U}>;ppt="div"'  # the RFC's own Identity form
    verifier = Verifier(key.public_key())
    verdict = verifier.check([shaken, div], dest_tn="12155551214", now=RFC_IAT)
    assert_verdict(verdict, Reason.DIV_CHAIN_BROKEN)
    assert verdict.chain[0].ok  # the div itself verified (signature, claims)
    assert verdict.chain[0].div == "121555551213"
    # the fixed claims, as the text describes them, chain
    fixed = signer.div_for(shaken, "12155551214")
    assert claims_of(fixed)["div"] == {"tn": "12155551213"}
    verdict = verifier.check([shaken, fixed], dest_tn="12155551214", now=RFC_IAT)
    assert verdict.ok and verdict.diverted


# -- the chain builder on its own (hypothesis) ----------------------------------------------


def _hop(index: int, ppt: str, dest: str, div: str | None = None, orig: str = CALLER) -> Hop:
    claims: dict[str, object] = {"dest": {"tn": [dest]}, "iat": NOW, "orig": {"tn": orig}}
    if div is not None:
        claims["div"] = {"tn": div}
    return Hop(index, ppt, f"token-{index}-{dest}-{div}", claims)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 6), st.randoms(use_true_random=False))
def test_any_order_of_a_full_chain_holds(length: int, rng: random.Random) -> None:
    hops = [_hop(0, "shaken", number(0))] + [
        _hop(n, "div", number(n), number(n - 1)) for n in range(1, length + 1)
    ]
    rng.shuffle(hops)
    result = build_chain(hops, frozenset({("tn", number(length))}))
    assert result is not None and result.ok
    assert [h.ppt for h in result.hops] == ["shaken"] + ["div"] * length


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 6), st.data())
def test_a_chain_missing_a_hop_never_holds(length: int, data: st.DataObject) -> None:
    hops = [_hop(0, "shaken", number(0))] + [
        _hop(n, "div", number(n), number(n - 1)) for n in range(1, length + 1)
    ]
    gone = data.draw(st.integers(0, length - 1))
    del hops[gone]
    result = build_chain(hops, frozenset({("tn", number(length))}))
    assert result is not None and not result.ok


_numbers = st.sampled_from(["1", "2", "3", "4", "5"])


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(["shaken", "div"]), _numbers, _numbers, _numbers),
        max_size=10,
    ),
    st.one_of(st.none(), _numbers),
)
def test_chain_builder_terminates_on_any_graph(
    spec: list[tuple[str, str, str, str]], target: str | None
) -> None:
    """Random graphs with cycles, forks and duplicates: an answer, never an exception or a
    hang, and a chain that holds is really linked."""
    hops = [
        _hop(i, ppt, dest, div if ppt == "div" else None)
        for i, (ppt, dest, div, _) in enumerate(spec)
    ]
    result = build_chain(hops, None if target is None else frozenset({("tn", target)}))
    if not any(h.ppt == "div" for h in hops):
        assert result is None
        return
    assert result is not None
    if result.ok:
        path = result.hops
        assert path[0].ppt == "shaken" and all(h.ppt == "div" for h in path[1:])
        for inner, outer in itertools.pairwise(path):
            assert outer.div in inner.dest
        assert target is None or target in path[-1].dest


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(st.sampled_from(["dest", "div", "iat", "orig", "opt", "x"]), _json, max_size=6)
)
def test_div_claims_checker_only_raises_verification_errors(claims: dict[str, object]) -> None:
    try:
        check_div_claims(claims)
    except VerificationError as exc:
        assert exc.reason in (Reason.MISSING_CLAIM, Reason.INVALID_CLAIM)


@functools.cache
def _mixed_carriers() -> list[Carrier]:
    return [
        Carrier(f"m{n}", ec.generate_private_key(ec.SECP256R1()), f"https://m{n}.example/a.pem")
        for n in range(3)
    ]


@settings(max_examples=40, deadline=None)
@given(st.randoms(use_true_random=False))
def test_any_order_of_a_mixed_request(rng: random.Random) -> None:
    """A chain, an rcd PASSporT of the caller and a forged SHAKEN value, in any order, sync
    and async: the same verdict (the single-value path hands such a request over, whatever
    comes first)."""
    carriers = _mixed_carriers()
    verifier = Verifier(KeySource(carriers))
    values = chain(carriers, 2)
    rcd = carriers[2].signer.rcd_identity(CALLER, number(2), RichCallData(nam="Bank"), iat=NOW)
    forged = Signer(carriers[1].key, carriers[0].x5u).identity(CALLER, number(2), "A", iat=NOW)
    request = [*values, rcd, forged]
    rng.shuffle(request)
    verdict = verifier.check(request, orig_tn=CALLER, dest_tn=number(2), now=NOW)
    assert verdict.ok and verdict.diverted, (verdict.reason, verdict.message)
    assert verdict.index == request.index(values[0])
    assert verdict.rcd is not None and verdict.rcd.nam == "Bank"
    assert [f.reason for f in verdict.failures] == [Reason.BAD_SIGNATURE]
    again = asyncio.run(verifier.acheck(request, orig_tn=CALLER, dest_tn=number(2), now=NOW))
    assert (again.ok, again.index, again.diverted, again.failures) == (
        verdict.ok,
        verdict.index,
        verdict.diverted,
        verdict.failures,
    )


def test_check_identity_verifies_a_chain(key_files: KeyFiles) -> None:
    """The seed function takes the request's values and the call target."""
    signer = Signer.from_file(key_files.key_pem, "https://a.example/c.pem")
    values = [
        signer.identity(CALLER, FIRST, "A", iat=NOW),
        signer.div_identity(CALLER, number(1), FIRST, iat=NOW),
    ]
    verdict = check_identity(values, key_files.cert_pem, dest_tn=number(1), now=NOW)
    assert verdict.ok and verdict.diverted
    verdict = check_identity(values[1:], key_files.cert_pem, dest_tn=number(1), now=NOW)
    assert_verdict(verdict, Reason.DIV_WITHOUT_SHAKEN)
