"""`b4.mastership`: role claims, takes and retakes, single-threaded with a clock in hand.

Regression for a b4-failures start-up that never converged: a switch connected while the
controller was still standby; the connection handler decided on SLAVE, read the generation
from ZooKeeper (slow), the election finished meanwhile and the take-over sent MASTER, then the
handler's SLAVE request went out after it. The switch kept the controller as a slave and
refused the pipeline and every TE op with OFPBRC_IS_SLAVE (OpenFlow error type 1 code 10),
while the controller believed it was master and reported the site ready.
"""
from __future__ import annotations

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

from b4.mastership import MASTER, RETAKE_DELAYS, STANDBY, Mastership, Out, is_slave_error, of_error_text, summarize
from b4.model import load_wan
from b4.site import SiteLogic


class Switch:
    """A datapath that answers like OVS: it holds the controller in the role of the last role
    request, refuses flow and group mods while that is SLAVE, and replies to stats requests
    (empty tables, ports up) and barriers. Messages are only recorded until `answer`."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int):
        self.id = dpid
        self.role = ofp.OFPCR_ROLE_EQUAL
        self.roles: list[tuple[int, int]] = []  # (role, generation) of every role request received
        self.stale: tuple[int, int] | None = None  # a role request delivered after the next one
        self._xid = 0

    def set_xid(self, m) -> None:
        self._xid += 1
        m.xid = self._xid

    def answer(self, m: Mastership, out: Out, now: float) -> Out:
        """Deliver ``out``'s messages to this switch, feed its replies back; everything that
        comes of them (replies to the replies too) is returned, merged."""
        total = Out(events=list(out.events), done=list(out.done))
        queue = [msg for dp, msg in out.sends if dp is self]
        while queue:
            msg = queue.pop(0)
            got = self._reply(m, msg, now)
            total.events += got.events
            total.done += got.done
            total.sends += got.sends
            queue += [x for dp, x in got.sends if dp is self]
        return total

    def _reply(self, m: Mastership, msg, now: float) -> Out:
        if isinstance(msg, parser.OFPRoleRequest):
            self.role = msg.role
            self.roles.append((msg.role, msg.generation_id))
            out = m.role_reply(self, msg.role, msg.generation_id, now)
            if self.stale:  # the overtaken request arrives now
                (self.role, gen), self.stale = self.stale, None
                self.roles.append((self.role, gen))
                late = m.role_reply(self, self.role, gen, now)
                out.sends += late.sends
            return out
        if isinstance(msg, (parser.OFPFlowStatsRequest, parser.OFPGroupDescStatsRequest,
                            parser.OFPPortDescStatsRequest)):
            return m.stats_reply(self, msg.xid, [], False, now)
        if isinstance(msg, parser.OFPBarrierRequest):
            return m.barrier_reply(self, msg.xid, now)
        if isinstance(msg, (parser.OFPFlowMod, parser.OFPGroupMod)) and self.role == ofp.OFPCR_ROLE_SLAVE:
            return m.error(self, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, msg.xid, now)
        return Out()


def make(site: str = "A") -> tuple[Mastership, Switch]:
    wan = load_wan("b4-example").config
    m = Mastership(wan, {s: SiteLogic(wan, s) for s in wan.sites}, "ofc-test")
    return m, Switch(wan.switches[site].dpid)


def roles_sent(out: Out) -> list[tuple[int, int]]:
    return [(x.role, x.generation_id) for _, x in out.sends if isinstance(x, parser.OFPRoleRequest)]


def ready_events(out: Out) -> list[str]:
    return [e["site"] for e in out.events if e["event"] == "ready"]


def test_election_during_the_generation_read_sends_no_slave_request_after_master():
    m, sw = make()
    connect = m.connected(sw, 0.0)
    assert connect.need_generation and not connect.sends  # standby: SLAVE once the generation is read
    # ... the ZooKeeper read is slow; the election completes meanwhile and takes the switch
    take = m.elected(1, 0.1)
    assert roles_sent(take) == [(ofp.OFPCR_ROLE_MASTER, 1)]
    # ... then the read returns: claiming SLAVE now would overtake nothing but demote the master
    late = m.claim_slave(sw, 1, 0.2)
    assert late.sends == []
    done = sw.answer(m, take, 0.3)
    assert sw.roles == [(ofp.OFPCR_ROLE_MASTER, 1)]
    assert ready_events(done) == ["A"] and m.site_ready("A")


def test_standby_claims_slave_with_the_newest_generation():
    m, sw = make("B")
    assert m.connected(sw, 0.0).need_generation
    out = m.claim_slave(sw, 7, 0.1)
    assert roles_sent(out) == [(ofp.OFPCR_ROLE_SLAVE, 7)]
    assert not m.taking("B") and m.role == STANDBY


def test_a_master_held_as_slave_is_not_ready_until_retaken():
    """A stale SLAVE request reached the switch after MASTER: the resync is refused
    (is_slave), the switch is not ready and ops are refused for now, but the take is retried
    after a delay and the site becomes ready: it does not refuse ops forever."""
    m, sw = make()
    m.connected(sw, 0.0)
    sw.stale = (ofp.OFPCR_ROLE_SLAVE, 1)  # decided before the election, delivered after MASTER
    out = sw.answer(m, m.elected(2, 0.0), 0.1)
    assert sw.roles == [(ofp.OFPCR_ROLE_MASTER, 2), (ofp.OFPCR_ROLE_SLAVE, 1)]
    assert not m.site_ready("A") and ready_events(out) == []
    assert m.taking("A")  # a retake is scheduled ...
    assert roles_sent(m.tick(0.1 + RETAKE_DELAYS[0] / 2)) == []  # ... after a delay
    retake = m.tick(0.1 + RETAKE_DELAYS[0])
    assert roles_sent(retake) == [(ofp.OFPCR_ROLE_MASTER, 2)]
    done = sw.answer(m, retake, 0.4)
    assert ready_events(done) == ["A"] and m.site_ready("A")
    assert sw.roles[-1] == (ofp.OFPCR_ROLE_MASTER, 2)


def test_is_slave_refusal_of_a_ready_switch_retakes_it_at_once():
    m, sw = make()
    m.connected(sw, 0.0)
    sw.answer(m, m.elected(3, 0.0), 0.0)
    assert m.site_ready("A")
    out = m.error(sw, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, 99, 1.0)
    assert "A" not in m.ready  # no TE op is accepted until the take's "ready" event
    assert roles_sent(out) == [(ofp.OFPCR_ROLE_MASTER, 3)]
    assert ready_events(sw.answer(m, out, 1.1)) == ["A"]


def test_role_reply_slave_while_master_retakes_once():
    m, sw = make()
    m.connected(sw, 0.0)
    sw.answer(m, m.elected(4, 0.0), 0.0)
    out = m.role_reply(sw, ofp.OFPCR_ROLE_SLAVE, 4, 1.0)
    assert roles_sent(out) == [(ofp.OFPCR_ROLE_MASTER, 4)]
    # while that take runs, another SLAVE reply does not start a second one
    assert m.role_reply(sw, ofp.OFPCR_ROLE_SLAVE, 4, 1.0).sends == []
    # a reply for another generation is not about us
    assert m.role_reply(sw, ofp.OFPCR_ROLE_SLAVE, 3, 1.0).sends == []


def test_role_claims_follow_role_changes_in_order():
    m, sw = make()
    m.connected(sw, 0.0)
    sent = roles_sent(m.claim_slave(sw, 1, 0.0))
    sent += roles_sent(m.elected(2, 0.1))
    assert m.deposed().sends == []  # the new master's higher generation demotes us at the switch
    sent += roles_sent(m.connected(sw, 0.3))  # reconnected while standby
    sent += roles_sent(m.claim_slave(sw, 3, 0.3))
    sent += roles_sent(m.elected(4, 0.4))
    assert sent == [(ofp.OFPCR_ROLE_SLAVE, 1), (ofp.OFPCR_ROLE_MASTER, 2), (ofp.OFPCR_ROLE_SLAVE, 3),
                    (ofp.OFPCR_ROLE_MASTER, 4)]


def test_unanswered_take_times_out_and_is_retried_with_growing_delays():
    m, sw = make()
    m.connected(sw, 0.0)
    m.elected(1, 0.0)
    now, delays = 0.0, []
    for _ in range(3):
        now += 10.0  # RESYNC_TIMEOUT: the stats replies never come
        assert m.tick(now).sends == []
        due = now
        while not roles_sent(out := m.tick(due)):
            due += 0.05
        delays.append(round(due - now, 2))
        now = due
    assert delays == list(RETAKE_DELAYS[:3])
    assert roles_sent(out) == [(ofp.OFPCR_ROLE_MASTER, 1)]


def test_disconnect_ends_the_callers_batches_and_forgets_the_switch():
    m, sw = make()
    m.connected(sw, 0.0)
    sw.answer(m, m.elected(1, 0.0), 0.0)
    batch = m.send(sw, [parser.OFPBarrierRequest(sw)], token="op-7")
    assert isinstance(batch.sends[-1][1], parser.OFPBarrierRequest)
    out = m.disconnected(sw)
    assert out.done == [("op-7", "switch disconnected")]
    assert "A" not in m.dps and not m.site_ready("A")
    assert m.barrier_reply(sw, batch.sends[-1][1].xid, 1.0).done == []


def test_refused_role_request_stands_by_unless_still_leading():
    m, sw = make()
    m.connected(sw, 0.0)
    m.elected(1, 0.0)
    m.error(sw, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, 5, 0.1, leading=True)
    assert m.role == MASTER
    m.error(sw, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, 6, 0.1, leading=False)
    assert m.role == STANDBY


def test_is_slave_error_text():
    assert is_slave_error(of_error_text(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE))
    assert not is_slave_error(of_error_text(ofp.OFPET_GROUP_MOD_FAILED, 0))
    assert not is_slave_error(None)
    assert summarize("E; E; E") == "E (x3)"
