"""Regenerate docs/reasons.md from secsipid.Reason:
`python tools/gen_reasons_doc.py > docs/reasons.md`.

tests/test_public_api.py fails when the committed file differs from this output.
"""

from __future__ import annotations

from secsipid import Reason

INTRO = """# Reason codes

Every verification outcome has one stable reason code. `Verdict.reason` (and
`VerificationError.reason`) is a `secsipid.Reason`, a `str` enum whose value is the code.
Each code maps to the SIP response a rejecting verifier sends (RFC 8224 §6.2.2), the
`verstat` value to put in P-Asserted-Identity or From (ATIS-1000074; we follow the ATIS-1000082
error table: `TN-Validation-Failed` when the signature or the signer's credential was checked
and found wrong, `No-TN-Validation` when the PASSporT could not be validated at all), and the
libsecsipid return code Kamailio's `secsipid` module would have produced for the same input
(HEAD numbering; libsecsipid 1.2.0 used -303 where HEAD uses -305). A few reasons have two
libsecsipid codes; `Verdict.lib_code` gives the exact one (e.g. `unsupported-alg` is -302 for
the Identity `alg` parameter, -202 for the JWS header; `missing-info` is -301 when the value
has no parameter at all; `missing-claim` is -232 for a missing `iat`). The interop tests feed
single-defect values to the real libsecsipid (`SecSIPIDCheckFull`, what Kamailio's
`secsipid_check_identity` calls) and check that `Verdict.lib_code` is the code it returns.

When a request carries several Identity headers it is valid if one of them is valid
(RFC 8224 §6.2.1). Otherwise headers with an unsupported `ppt` are ignored (428 only if nothing
else was there), and the reported failure is the most specific one: 438 and 403 before 437,
437 before 436 (436 only when no credential could be obtained for any header), then 500.

| reason | SIP | verstat | libsecsipid | meaning |
|---|---|---|---|---|"""


def render() -> str:
    lines = [INTRO]
    for reason in Reason:
        info = reason.info
        sip = f"{info.sip_status} {info.sip_reason}" if info.sip_status else "—"
        lines.append(
            f"| `{reason.value}` | {sip} | {info.verstat} | {info.lib_code} | {info.description} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
