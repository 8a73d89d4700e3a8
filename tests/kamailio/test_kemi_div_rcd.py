"""secsipid.kamailio for diverted calls and Rich Call Data, with the fake ``KSR`` of
test_kemi_unit.py: the div header added on retargeting, the chain checked against the
Request-URI, the verified RCD as Call-Info."""

from __future__ import annotations

import json
import time

from test_kemi_unit import X5U, FakeKSR, ksr

from conftest import Pki
from secsipid import RichCallData, Signer, decode_token, private_key_from_file
from secsipid import kamailio as sk

__all__ = ["ksr"]  # the fixture, imported for the tests below

CALLER, FIRST, SECOND = "12155550121", "12155550131", "12155550141"


def _shaken(pki: Pki, dest: str = FIRST, **kwargs: object) -> str:
    signer = Signer(private_key_from_file(pki.key))
    return signer.identity(CALLER, dest, "A", x5u=X5U, **kwargs)  # type: ignore[arg-type]


def test_add_div_identity_on_retargeting(ksr: FakeKSR, pki: Pki) -> None:
    original = _shaken(pki, iat=int(time.time()) - 5)
    ksr.request([original], **{"$oU": "+1-215-555-0131", "$rU": "+12155550141"})
    assert sk.secsipid_add_div_identity("$rU", X5U, str(pki.key)) == 1
    (line,) = ksr.appended  # beside the original: nothing removed
    assert ksr.removed == []
    assert line.startswith("Identity: ") and line.endswith(";ppt=div\r\n")
    value = line[len("Identity: ") : -2]
    claims = decode_token(value.split(";", 1)[0]).claims
    original_claims = decode_token(original.split(";", 1)[0]).claims
    assert claims == {
        "dest": {"tn": [SECOND]},
        "div": {"tn": FIRST},
        "iat": original_claims["iat"],
        "orig": {"tn": CALLER},
    }
    # the next hop checks the whole request against its Request-URI
    ksr.request([original, value], **{"$rU": SECOND})
    assert sk.secsipid_verdict(str(pki.cert), "secsipid", "$rU") == 1
    verdict = sk.last_verdict()
    assert verdict is not None and verdict.diverted
    assert ksr.values["$xavp(secsipid[0]=>diverted)"] == 1
    chain = json.loads(ksr.values["$xavp(secsipid[0]=>chain)"])
    assert [hop["ppt"] for hop in chain] == ["shaken", "div"]
    # without the div header the same request is a dest mismatch
    ksr.request([original], **{"$rU": SECOND})
    assert sk.secsipid_verdict(str(pki.cert), "secsipid", "$rU") < 0
    assert ksr.values["$xavp(secsipid[0]=>reason)"] == "dest-mismatch"


def test_add_div_identity_refusals(ksr: FakeKSR, pki: Pki) -> None:
    ksr.request([], **{"$oU": FIRST})
    assert sk.secsipid_add_div_identity(SECOND, X5U, str(pki.key)) == -1  # no original
    ksr.request([_shaken(pki, dest="12155550999")], **{"$oU": FIRST})
    assert sk.secsipid_add_div_identity(SECOND, X5U, str(pki.key)) == -1  # no such dest
    ksr.request([_shaken(pki)], **{"$oU": FIRST})
    assert sk.secsipid_add_div_identity(FIRST, X5U, str(pki.key)) == -1  # not retargeted
    assert sk.secsipid_add_div_identity(SECOND, X5U, "/nonexistent.pem") == -1
    assert ksr.appended == []
    errors = [msg for level, msg in ksr.logs if level == "err"]
    assert len(errors) == 4 and "no Identity header with dest" in errors[0]


def test_one_div_per_distinct_caller(ksr: FakeKSR, pki: Pki) -> None:
    """RFC 8946 §4.1: PASSporTs sharing orig and dest get one div; others one each."""
    a = _shaken(pki)
    again = _shaken(pki)  # same orig and dest (another origid)
    other = Signer(private_key_from_file(pki.key)).identity("12155550777", FIRST, "B", x5u=X5U)
    ksr.request([a, again, other], **{"$oU": FIRST})
    assert sk.secsipid_add_div_identity(SECOND, X5U, str(pki.key)) == 1
    assert len(ksr.appended) == 2


def test_call_info_from_verified_rcd(ksr: FakeKSR, pki: Pki) -> None:
    rcd = RichCallData(nam="Example Bank", icn="https://rcd.example/i.png", crn="Card blocked")
    ksr.request([_shaken(pki, rcd=rcd, rcd_contents={"/icn": b"png"})])
    assert sk.secsipid_verdict(str(pki.cert)) == 1
    assert ksr.values["$xavp(secsipid[0]=>rcd_nam)"] == "Example Bank"
    assert sk.add_call_info() == 1
    (line,) = ksr.appended
    assert line.startswith("Call-Info: <https://rcd.example/i.png>;purpose=icon;integrity=")
    assert line.endswith(';call-reason="Card blocked"\r\n')
    ksr.request([_shaken(pki)])
    assert sk.secsipid_verdict(str(pki.cert)) == 1
    assert sk.add_call_info() == -1  # nothing to add
