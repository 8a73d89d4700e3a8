"""Redirect signer: answer each INVITE with "302 Moved Temporarily" carrying the Identity
header and a Contact (NEXT_HOP, or the Request-URI when NEXT_HOP is empty).  This is how many
SBCs use a central STI-AS: they send the INVITE here, copy the Identity header from the 302 and
route the call on themselves.
"""

import KSR

from secsipid import kamailio as stir


def mod_init():
    stir.mod_init()
    key = stir.define("STIR_KEY")
    stir.preload_signing_key(key)
    return Redirect(key, stir.define("STIR_X5U"), stir.define("STIR_ATTEST", "A"))


class Redirect:
    def __init__(self, key, x5u, attest):
        self.key = key
        self.x5u = x5u
        self.attest = attest
        self.contact = stir.define("NEXT_HOP")

    def child_init(self, rank):
        return stir.child_init(rank)

    def ksr_request_route(self, msg):
        if KSR.is_ACK():  # the ACK for our 302: tm stops retransmitting it
            KSR.tm.t_check_trans()
            return 1
        if not KSR.is_INVITE() or KSR.siputils.has_totag() > 0:
            KSR.sl.sl_send_reply(405, "Method Not Allowed")
            return 1
        # The transaction first: a retransmission of this INVITE gets the same 302 again from
        # tm (in KEMI t_newtran() returns 0 for it) instead of a newly signed one.
        rc = KSR.tm.t_newtran()
        if rc <= 0:
            if rc < 0:
                KSR.sl.sl_reply_error()
            return 1
        orig = "$ai" if KSR.hdr.is_present("P-Asserted-Identity") > 0 else "$fu"
        if stir.secsipid_build_identity(orig, "$rU", self.attest, "", self.x5u, self.key) < 0:
            KSR.tm.t_reply(500, "Cannot Sign")
            return 1
        target = KSR.pv.get("$ru")
        if self.contact:  # keep the called user, send the call to NEXT_HOP
            target = self.contact.replace("sip:", f"sip:{KSR.pv.get('$rU')}@", 1)
        KSR.hdr.append_to_reply(f"Identity: {stir.secsipid_get_val()}\r\n")
        KSR.hdr.append_to_reply(f"Contact: <{target}>\r\n")
        KSR.tm.t_reply(302, "Moved Temporarily")
        return 1
