"""Diverted calls: ``div`` PASSporTs and their chains (RFC 8946), pure functions only.

A retargeting entity (call forwarding) adds a ``div`` PASSporT beside the original one
(RFC 8946 §3, §4.1)::

    header  {"alg":"ES256","ppt":"div","typ":"passport","x5u":URL}
    claims  dest  the new target                {"tn":[TN]}        RFC 8946 §3
            div   the diverting (original) target {"tn":TN}        one identifier
            iat   SHOULD be the original's
            orig  MUST be copied from the original

signed with a credential that has authority over ``div`` (not ``orig``), full form only, and
carried in an Identity header with ``ppt="div"``.  A call forwarded again gets another ``div``
whose ``div`` is the previous ``dest``.

The verification service (§4.2) links each ``div`` to an earlier PASSporT whose ``dest`` holds
the ``div`` value, down to the original (here: SHAKEN) PASSporT, and then requires

1. the outermost ``dest`` to be the call target (the Request-URI);
2. every signature in the chain valid, each ``div`` signer having authority over its ``div``;
3. the same ``orig`` in every PASSporT of the chain ("If the "orig" value has changed, the
   verification service MUST treat the entire PASSporT chain as invalid");
4. fresh ``iat`` in the outermost and (RECOMMENDED, done here) in every other PASSporT;
5. an innermost PASSporT of a supported type (a chain ending in an unsupported one is ignored).

Identity header order in a request is free, so the chain is built from the values, not from
their order.  This module builds and judges chains from PASSporTs already checked one by one
(:class:`Hop`); the verifier does the signatures and the I/O.

RFC 8946's own examples carry a typo: the ``div`` claim of §3/§5 is ``121555551213`` (an extra
5) where the original ``dest`` is ``12155551213``.  A verifier that does what the text says
cannot chain them; the tests keep that example as a broken chain.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._errors import VerificationError
from ._passport import check_dest_claim
from ._reasons import Reason
from ._tn import canonical_tn, canonical_uri

__all__ = [
    "ChainHop",
    "ChainResult",
    "Hop",
    "build_chain",
    "check_base_claims",
    "check_div_claims",
    "identity_of",
]

Ident = tuple[str, str]  # ("tn", canonical number) or ("uri", canonical URI)


def identity_of(obj: Mapping[str, Any]) -> Ident | None:
    """The canonical identity of an ``orig``/``div`` object (exactly one ``tn`` or ``uri``)."""
    if "tn" in obj:
        value = obj["tn"]
        return ("tn", canonical_tn(value)) if isinstance(value, str) else None
    value = obj.get("uri")
    return ("uri", canonical_uri(value) or value) if isinstance(value, str) else None


def dest_identities(dest: Mapping[str, Any]) -> frozenset[Ident]:
    tns = dest.get("tn", ())
    uris = dest.get("uri", ())
    return frozenset(
        [("tn", canonical_tn(t)) for t in tns if isinstance(t, str)]
        + [("uri", canonical_uri(u) or u) for u in uris if isinstance(u, str)]
    )


def _one_identity(value: object, name: str, invalid: list[str]) -> None:
    if not isinstance(value, dict):
        invalid.append(f"{name} must be an object")
        return
    kinds = [k for k in ("tn", "uri") if k in value]
    if len(kinds) != 1:
        invalid.append(f'{name} must hold exactly one of "tn" or "uri"')
    elif not isinstance(value[kinds[0]], str) or not value[kinds[0]]:
        invalid.append(f"{name}.{kinds[0]} must be a non-empty string")


def check_div_claims(claims: Mapping[str, Any]) -> None:
    """RFC 8946 §3: ``dest``, ``div``, ``iat`` and ``orig`` with the baseline types, ``div``
    one identifier (it may also carry an ``hi`` History-Info index, §8), and no ``opt``
    ("PASSporTs of type "div" MUST NOT contain an "opt" element").  Raises
    :class:`VerificationError` (``missing-claim`` or ``invalid-claim``), every problem at once."""
    _check_claims(claims, div=True)


def check_base_claims(claims: Mapping[str, Any]) -> None:
    """The baseline PASSporT claims (RFC 8225 §5): ``dest``, ``iat``, ``orig``."""
    _check_claims(claims, div=False)


def _check_claims(claims: Mapping[str, Any], *, div: bool) -> None:
    missing: list[str] = []
    invalid: list[str] = []
    check_dest_claim(claims, missing, invalid)
    if div:
        value = claims.get("div")
        if value is None:
            missing.append("div")
        else:
            _one_identity(value, "div", invalid)
            if isinstance(value, dict) and "hi" in value and not isinstance(value["hi"], str):
                invalid.append("div.hi must be a string (a History-Info index)")
    iat = claims.get("iat")
    if iat is None:
        missing.append("iat")
    elif type(iat) is not int:
        invalid.append(f"iat must be an integer NumericDate, not {type(iat).__name__}")
    elif iat <= 0:
        invalid.append("iat must be positive")
    orig = claims.get("orig")
    if orig is None:
        missing.append("orig")
    else:
        _one_identity(orig, "orig", invalid)
    if div and "opt" in claims:
        invalid.append('a div PASSporT must not carry "opt" (RFC 8946 §3; that is div-o)')
    if invalid or missing:
        parts = invalid + [f"missing claim {name!r}" for name in missing]
        raise VerificationError(
            Reason.INVALID_CLAIM if invalid else Reason.MISSING_CLAIM, "; ".join(parts)
        )


@dataclass(frozen=True, slots=True)
class Hop:
    """One PASSporT of a request as the chain builder sees it: its decoded claims, and the
    outcome of checking it on its own (``error`` None when it verified)."""

    index: int
    ppt: str  # "shaken" or "div"
    token: str
    claims: Mapping[str, Any]
    error: VerificationError | None = None

    @property
    def orig(self) -> Ident | None:
        orig = self.claims.get("orig")
        return identity_of(orig) if isinstance(orig, dict) else None

    @property
    def dests(self) -> frozenset[Ident]:
        dest = self.claims.get("dest")
        return dest_identities(dest) if isinstance(dest, dict) else frozenset()

    @property
    def div(self) -> Ident | None:
        div = self.claims.get("div")
        return identity_of(div) if isinstance(div, dict) else None


@dataclass(frozen=True, slots=True)
class ChainHop:
    """One PASSporT of a diversion chain as the Verdict reports it (innermost first)."""

    index: int
    ppt: str
    orig: str
    dest: tuple[str, ...]
    div: str | None
    iat: int | None
    reason: Reason
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VALID

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ppt": self.ppt,
            "orig": self.orig,
            "dest": list(self.dest),
            "div": self.div,
            "iat": self.iat,
            "valid": self.ok,
            "reason": self.reason.value,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class ChainResult:
    """A chain (innermost first) and whether it holds; when not, why (``reason``/``message``)
    and which Identity value is at fault (``index``)."""

    hops: tuple[ChainHop, ...]
    reason: Reason
    message: str
    index: int

    @property
    def ok(self) -> bool:
        return self.reason is Reason.VALID


def _text(ident: Ident | None) -> str:
    return "" if ident is None else ident[1]


def _report(hop: Hop) -> ChainHop:
    iat = hop.claims.get("iat")
    error = hop.error
    return ChainHop(
        hop.index,
        hop.ppt,
        _text(hop.orig),
        tuple(sorted(_text(d) for d in hop.dests)),
        _text(hop.div) if hop.ppt == "div" else None,
        iat if type(iat) is int else None,
        Reason.VALID if error is None else error.reason,
        "" if error is None else error.message,
    )


def _result(path: Sequence[Hop], reason: Reason, message: str, index: int) -> ChainResult:
    return ChainResult(tuple(_report(h) for h in reversed(path)), reason, message, index)


# Which failure to report when no chain holds: a complete chain with a bad hop says most, a
# chain that does not reach a SHAKEN PASSporT least.
_FAILURE_ORDER = {
    Reason.DIV_ORIG_MISMATCH: 1,
    Reason.DIV_LOOP: 2,
    Reason.DIV_CHAIN_BROKEN: 3,
}


def _rank(result: ChainResult) -> tuple[int, int]:
    return (_FAILURE_ORDER.get(result.reason, 0), -len(result.hops))


def build_chain(
    hops: Iterable[Hop], targets: frozenset[Ident] | None, *, max_depth: int = 16
) -> ChainResult | None:
    """The chain of ``div`` PASSporTs that carries the call to one of ``targets`` (None: to
    any number no other ``div`` diverts from), or the reason none does.  None when there is
    no ``div`` PASSporT at all.  ``hops`` are every SHAKEN and div PASSporT of the request
    that could be decoded, verified or not."""
    hops = list(hops)
    divs = [h for h in hops if h.ppt == "div" and h.div is not None]
    if not divs:
        return None
    seen: dict[str, Hop] = {}
    for hop in divs:
        first = seen.setdefault(hop.token, hop)
        if first is not hop:
            return _result(
                [hop],
                Reason.DIV_DUPLICATE_HOP,
                f"Identity values {first.index} and {hop.index} carry the same div PASSporT",
                hop.index,
            )
    roots = [h for h in hops if h.ppt == "shaken"]
    if not roots:
        outer = divs[0]
        return _result(
            [outer],
            Reason.DIV_WITHOUT_SHAKEN,
            "div PASSporT(s) but no SHAKEN PASSporT in the request to start the chain",
            outer.index,
        )
    if targets is not None:
        outermost = [d for d in divs if d.dests & targets]
        if not outermost:
            wanted = ", ".join(sorted(t[1] for t in targets)) or "(none)"
            last = divs[-1]
            return _result(
                divs[::-1],
                Reason.DIV_TARGET_MISMATCH,
                f"no div PASSporT has the call target {wanted} as its dest",
                last.index,
            )
    else:
        diverted = {d.div for d in divs}
        outermost = [d for d in divs if not (d.dests & diverted)] or divs
    best: ChainResult | None = None
    for outer in outermost:
        result = _walk(outer, hops, max_depth)
        if result.ok:
            return result
        if best is None or _rank(result) < _rank(best):
            best = result
    return best


def _walk(outer: Hop, hops: list[Hop], max_depth: int) -> ChainResult:
    """Depth-first from ``outer`` towards a SHAKEN PASSporT; the first chain that holds, or
    the most telling failure."""
    best: ChainResult | None = None

    def visit(path: list[Hop], numbers: set[Ident]) -> ChainResult | None:
        nonlocal best
        cur = path[-1]
        if len(path) > max_depth:
            found = _result(
                path, Reason.DIV_LOOP, "the div chain is longer than the request", cur.index
            )
            best = found if best is None or _rank(found) < _rank(best) else best
            return None
        want = cur.div
        preds = [h for h in hops if h is not cur and want in h.dests]
        if not preds:
            found = _result(
                path,
                Reason.DIV_CHAIN_BROKEN,
                f"Identity value {cur.index} diverts from {_text(want)}, which is the dest "
                "of no other PASSporT in the request",
                cur.index,
            )
            best = found if best is None or _rank(found) < _rank(best) else best
            return None
        # SHAKEN PASSporTs first: they end the chain.  Then the other div hops.
        preds.sort(key=lambda h: (h.ppt != "shaken", h.error is not None, h.index))
        for pred in preds:
            chain = [*path, pred]
            if pred.ppt == "shaken":
                found = _judge(chain)
                if found.ok:
                    return found
                best = found if best is None or _rank(found) < _rank(best) else best
                continue
            if pred.div in numbers or pred.div == want:
                found = _result(
                    chain,
                    Reason.DIV_LOOP,
                    f"the chain diverts from {_text(pred.div)} twice",
                    pred.index,
                )
                best = found if best is None or _rank(found) < _rank(best) else best
                continue
            assert pred.div is not None
            done = visit(chain, numbers | {pred.div})
            if done is not None:
                return done
        return None

    assert outer.div is not None
    if outer.div in outer.dests:
        return _result(
            [outer], Reason.DIV_LOOP, f"Identity value {outer.index} diverts to itself", outer.index
        )
    done = visit([outer], {outer.div})
    if done is not None:
        return done
    assert best is not None
    return best


def _judge(path: Sequence[Hop]) -> ChainResult:
    """A structurally complete chain (outermost div first, SHAKEN last): every hop valid and
    the same orig throughout."""
    root = path[-1]
    origs = {h.orig for h in path}
    if len(origs) != 1 or None in origs:
        culprit = next((h for h in path if h.orig != root.orig), path[0])
        return _result(
            path,
            Reason.DIV_ORIG_MISMATCH,
            f"orig {_text(culprit.orig)} of Identity value {culprit.index} differs from the "
            f"original caller {_text(root.orig)}: the whole chain is invalid (RFC 8946 §4.2)",
            culprit.index,
        )
    for hop in reversed(path):  # innermost first: report the earliest bad hop
        if hop.error is not None:
            return _result(
                path,
                hop.error.reason,
                f"{hop.ppt} PASSporT of Identity value {hop.index} in the chain: "
                f"{hop.error.message}",
                hop.index,
            )
    return _result(path, Reason.VALID, "", path[0].index)
