"""STI-VS proxy: verify the Identity header(s) of every initial INVITE, then

* reject failures (STIR_VS_MODE "reject"): 428 Use Identity Header, 436 Bad Identity Info,
  437 Unsupported Credential, 438 Invalid Identity Header or 403 Stale Date, with a Reason
  header (RFC 9410 "STIR" form when STIR_REASON_STIR is 1), or
* mark them (STIR_VS_MODE "mark"): relay with ;verstat=TN-Validation-Failed or
  No-TN-Validation in P-Asserted-Identity (From when there is none);

valid calls are relayed with ;verstat=TN-Validation-Passed (ATIS-1000074).  STIR_CERT names the
certificate/public key file; empty means the certificate is downloaded from the info URL
(cached).  The verdict is also in $xavp(secsipid=>...) for logging or accounting.

STIR_MATCH_DEST 1 also requires the PASSporT's dest to be the Request-URI user: a forwarded
call is then valid only through its chain of div PASSporTs (RFC 8946 §4.2).  Verified Rich
Call Data (RFC 9795) is passed on as Call-Info headers (RFC 9796).
"""

import KSR

from secsipid import kamailio as stir


def mod_init():
    lab = stir.define_int("STIR_LAB", 0) == 1
    stir.mod_init(
        expire=stir.define_int("STIR_EXPIRE", 300),
        timeout=stir.define_int("STIR_TIMEOUT", 5),
        cache_dir=stir.define("STIR_CACHE_DIR"),
        cache_expire=stir.define_int("STIR_CACHE_EXPIRE", 3600),
        cache_naming=stir.define("STIR_CACHE_NAMING", "secsipid"),
        libopt=[o for o in stir.define("STIR_LIBOPT").split(",") if o.strip()],
        allow_http=lab,
        allow_private=lab,
        redis=stir.define("STIR_REDIS"),  # e.g. redis://127.0.0.1:6379/0: a cluster's cache
    )
    cert = stir.define("STIR_CERT")
    if cert:
        stir.preload_certificate(cert)
    mode = stir.define("STIR_VS_MODE", "reject")
    if mode not in ("reject", "mark"):
        raise stir.ConfigError(f"STIR_VS_MODE must be reject or mark, not {mode!r}")
    return StiVs(
        cert,
        mode == "reject",
        stir.define_int("STIR_REASON_STIR", 0) == 1,
        "$rU" if stir.define_int("STIR_MATCH_DEST", 0) == 1 else "",
    )


class StiVs:
    def __init__(self, cert, reject, reason_stir, dest):
        self.cert = cert
        self.reject = reject
        self.reason_stir = reason_stir
        self.dest = dest
        self.next_hop = stir.define("NEXT_HOP")

    def child_init(self, rank):
        return stir.child_init(rank)

    def ksr_request_route(self, msg):
        if KSR.maxfwd.process_maxfwd(10) < 0:
            KSR.sl.sl_send_reply(483, "Too Many Hops")
            return 1
        if KSR.is_CANCEL():
            if KSR.tm.t_check_trans() > 0:
                KSR.tm.t_relay()
            return 1
        if KSR.siputils.has_totag() > 0:
            if KSR.rr.loose_route() > 0 or (KSR.is_ACK() and KSR.tm.t_check_trans() > 0):
                KSR.tm.t_relay()
            elif not KSR.is_ACK():
                KSR.sl.sl_send_reply(404, "Not here")
            return 1
        if KSR.is_INVITE():
            # The transaction first: tm answers 100 Trying, and a retransmission of this INVITE
            # (0.5, 1.5, 3.5 s while the certificate download runs) is absorbed here instead of
            # being verified again in another worker (in KEMI t_newtran() returns 0 for it).
            rc = KSR.tm.t_newtran()
            if rc <= 0:
                if rc < 0:
                    KSR.sl.sl_reply_error()
                return 1
            KSR.rr.record_route()
            # Same return codes as the native secsipid_check_identity(); the full verdict is
            # in $xavp(secsipid=>reason), =>code, =>verstat, =>attest, =>orig, ...
            if stir.secsipid_verdict(self.cert, "secsipid", self.dest) < 0 and self.reject:
                reason = KSR.pv.get("$xavp(secsipid=>message)")
                KSR.info(f"STIR: rejecting {KSR.pv.get('$ci')}: {reason}\n")
                stir.reply(stir.last_verdict(), stir=self.reason_stir)
                return 1
            stir.add_verstat(stir.last_verdict())
            stir.add_call_info()
        KSR.pv.sets("$du", self.next_hop)
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        return 1
