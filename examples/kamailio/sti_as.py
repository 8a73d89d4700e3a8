"""STI-AS proxy: sign every initial INVITE (SHAKEN PASSporT in an Identity header) and relay.

Settings come from kamailio.cfg's #!define values (STIR_KEY, STIR_X5U, STIR_ATTEST, NEXT_HOP).
The calling number is taken from P-Asserted-Identity when present, else From; the called
number from the Request-URI (what the native module's examples do with $fU and $rU).
"""

import KSR

from secsipid import kamailio as stir


def mod_init():
    stir.mod_init(
        expire=stir.define_int("STIR_EXPIRE", 300),
        timeout=stir.define_int("STIR_TIMEOUT", 5),
        libopt=[o for o in stir.define("STIR_LIBOPT").split(",") if o.strip()],
    )
    key = stir.define("STIR_KEY")
    stir.preload_signing_key(key)  # a missing or bad key refuses the start, clearly
    return StiAs(key, stir.define("STIR_X5U"), stir.define("STIR_ATTEST", "A"))


class StiAs:
    def __init__(self, key, x5u, attest):
        self.key = key
        self.x5u = x5u
        self.attest = attest
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
        if KSR.siputils.has_totag() > 0:  # in-dialog: follow the Route set
            if KSR.rr.loose_route() > 0 or (KSR.is_ACK() and KSR.tm.t_check_trans() > 0):
                KSR.tm.t_relay()
            elif not KSR.is_ACK():
                KSR.sl.sl_send_reply(404, "Not here")
            return 1
        if KSR.is_INVITE():
            # The transaction first: a retransmission of this INVITE is absorbed here (in KEMI
            # t_newtran() returns 0 for it) instead of being signed again.
            rc = KSR.tm.t_newtran()
            if rc <= 0:
                if rc < 0:
                    KSR.sl.sl_reply_error()
                return 1
            KSR.rr.record_route()
            if KSR.hdr.is_present("Identity") < 0:
                orig = "$ai" if KSR.hdr.is_present("P-Asserted-Identity") > 0 else "$fu"
                rc = stir.secsipid_add_identity(orig, "$rU", self.attest, "", self.x5u, self.key)
                if rc < 0:
                    KSR.sl.sl_send_reply(500, "Cannot Sign")
                    return 1
        KSR.pv.sets("$du", self.next_hop)
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        return 1
