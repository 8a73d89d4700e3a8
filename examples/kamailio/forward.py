"""Call forwarding with a div PASSporT (RFC 8946): a proxy that retargets every initial INVITE
to STIR_FORWARD_TO and adds a ``div`` Identity header beside the original one (never instead
of it), then relays to NEXT_HOP.

The div PASSporT copies ``orig`` and ``iat`` from the original, takes ``div`` from the number
the call was sent to ($oU, the original Request-URI user) and ``dest`` from the new target; it
is signed with STIR_KEY, which must have authority over the diverting number (RFC 8946 §3),
and STIR_X5U is where that key's certificate is published.  STIR_FORWARD_DIV 0 retargets
without adding the header (what a verifier then says is shown by the tests).
"""

import KSR

from secsipid import kamailio as stir


def mod_init():
    stir.mod_init(expire=stir.define_int("STIR_EXPIRE", 300))
    key = stir.define("STIR_KEY")
    stir.preload_signing_key(key)  # a missing or bad key refuses the start, clearly
    return Forward(
        key,
        stir.define("STIR_X5U"),
        stir.define("STIR_FORWARD_TO"),
        stir.define_int("STIR_FORWARD_DIV", 1) == 1,
    )


class Forward:
    def __init__(self, key, x5u, forward_to, add_div):
        self.key = key
        self.x5u = x5u
        self.forward_to = forward_to
        self.add_div = add_div
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
            KSR.rr.record_route()
            KSR.pv.sets("$rU", self.forward_to)  # the call is forwarded
            if (
                self.add_div
                and stir.secsipid_add_div_identity("$rU", self.x5u, self.key, "$oU") < 0
            ):
                KSR.sl.sl_send_reply(500, "Cannot Sign Diversion")
                return 1
        KSR.pv.sets("$du", self.next_hop)
        if KSR.tm.t_relay() < 0:
            KSR.sl.sl_reply_error()
        return 1
