"""B4 OpenFlow logic against a simulated table: ACL beats LPM, bucket weights equal the
quantized splits, labels are pushed, forwarded and popped; failover, TE off, resync; bad ops."""
from __future__ import annotations

from b4 import flows
from b4.model import load_wan
from b4.simswitch import FakeDatapath, SimNetwork, SimSwitch
from b4.site import SiteLogic
from b4.te.solve import solve
from b4.ted import ADD, DELETE, TUNNEL, TUNNEL_GROUP, FlowGroupSpec, TedMeta, build_desired, diff
from b4.teops import ERROR, OK, REJECTED, Op

EXAMPLE = "topologies/b4-example.yaml"


class Wan:
    """The worked example as simulated switches driven by the real site logic."""

    def __init__(self, path=EXAMPLE):
        self.wan = load_wan(path)
        cfg = self.wan.config
        self.net = SimNetwork()
        self.sites = {}
        self.dps = {}
        for name, sw in cfg.switches.items():
            ports = [h.port for h in sw.host_ports] + [p for ps in sw.trunks.values() for p in ps]
            self.net.add_switch(SimSwitch(name, ports))
            self.dps[name] = FakeDatapath(sw.dpid)
        for ln in cfg.links.values():
            self.net.link(ln.a, ln.a_port, ln.b, ln.b_port)
        for site in cfg.sites:
            logic = SiteLogic(cfg, site)
            self.sites[site] = logic
            for sw in cfg.sites[site].switches:
                assert not self.sw(sw).apply(logic.switch_up(self.dps[sw], sw, [], []))
        self.meta = TedMeta()
        self.installed = {}
        self.seq = {}

    def sw(self, name):
        return self.net.switches[name]

    def desired(self, algorithm="b4"):
        alloc = solve(self.wan.problem(), algorithm=algorithm)
        tgs = {fa.name: fa.tunnel_group for fa in alloc}
        specs = {f.name: FlowGroupSpec(f.name, f.fg.src, f.fg.dst, f.src_prefix, f.dst_prefix, f.dscp)
                 for f in self.wan.flow_groups}
        return build_desired(tgs, specs, self.wan.quantum, self.meta)

    def push(self, desired, session=1):
        """Deliver the diff as ops, in order, straight to the site logic; apply messages."""
        acks = []
        for t in diff(self.installed, desired):
            self.seq[t.site] = self.seq.get(t.site, 100) + 1
            op = Op(t.site, session, self.seq[t.site], t.action, t.kind, t.id, t.entry)
            acks.append(self.send(op))
        assert all(a.status == OK for a in acks), [a for a in acks if a.status != OK]
        self.installed = {s: dict(v) for s, v in desired.items()}
        return acks

    def send(self, op):
        logic = self.sites[op.site]
        dps = {sw: self.dps[sw] for sw in logic.cfg.switches}
        ack, msgs = logic.handle_op(dps, op)
        if ack is not None:
            return ack
        errs = []
        for sw, ms in msgs.items():
            errs += self.sw(sw).apply(ms)
        return logic.op_done(op, "; ".join(str(e) for e in errs) or None)

    def host_port(self, host):
        for sw in self.wan.config.switches.values():
            for h in sw.host_ports:
                if h.host == host:
                    return sw.name, h.port, h
        raise KeyError(host)

    def trace(self, src_host, dst_host, **fields):
        sw, port, h = self.host_port(src_host)
        _, _, d = self.host_port(dst_host)
        pkt = {"eth_type": 0x0800, "ipv4_src": h.ip, "ipv4_dst": d.ip, "ttl": 64, **fields}
        return self.net.trace(sw, port, pkt)


def _paths(deliveries):
    """{site path: probability} of where packets went (by the switches they crossed)."""
    out = {}
    for d in deliveries:
        path = "-".join(s for s, _ in d.hops)
        out[path] = out.get(path, 0) + d.probability
    return {k: round(v, 6) for k, v in out.items()}


def test_lpm_alone_routes_shortest_paths():
    w = Wan()
    ds = w.trace("hA", "hB")
    assert _paths(ds) == {"A-B": 1.0}
    d = ds[0]
    _, port, hb = w.host_port("hB")
    assert d.switch == "B" and d.port == port
    assert d.packet["eth_dst"] == hb.mac and d.packet["eth_src"] == w.wan.config.sites["B"].gateway_mac
    assert d.packet["ttl"] == 62 and d.packet["mpls"] == []
    assert _paths(w.trace("hA", "hD")) == {"A-C-D": 1.0}  # A-D costs 10, A-C-D 2


def test_acl_beats_lpm_and_buckets_follow_quantized_splits():
    w = Wan()
    acks = w.push(w.desired())
    assert all(a.status == OK for a in acks)
    # FG1 (A->B) = 0.5 : 0.5 over A-B and A-C-B; FG2 (A->C) = 1.0 over A-D-C (paper, quantum 0.5)
    assert _paths(w.trace("hA", "hB")) == {"A-B": 0.5, "A-C-B": 0.5}
    assert _paths(w.trace("hA", "hC")) == {"A-D-C": 1.0}
    # labels: pushed at A, carried through transit, popped at the decap site
    lab = w.meta.labels
    for d in w.trace("hA", "hB"):
        path = [s for s, _ in d.hops]
        if path == ["A", "C", "B"]:
            assert d.hops[0][1] == (lab["A-C-B"],) and d.hops[1][1] == (lab["A-C-B"],)
        assert d.hops[-1][1] == () and d.packet["mpls"] == []
        assert d.packet["eth_dst"] == w.host_port("hB")[2].mac
    # bucket weights in the select group are the quantized splits in quanta
    gid = flows.tg_gid(w.meta.group_ids["FG1"])
    weights = sorted(b.weight for b in w.sw("A").groups[gid].buckets)
    assert weights == [1, 1]
    # Traffic between other sites is untouched (LPM): B -> A goes direct.
    assert _paths(w.trace("hB", "hA")) == {"B-A": 1.0}


def test_quarter_quantum_weights():
    w = Wan()
    w.wan.quantum = 0.25
    w.push(w.desired())
    gid1 = flows.tg_gid(w.meta.group_ids["FG2"])
    got = sorted(b.weight for b in w.sw("A").groups[gid1].buckets)
    alloc = solve(w.wan.problem(), quantum=0.25)
    want = sorted(int(round(t.weight * 4)) for t in alloc.flow_group("FG2").tunnels if t.weight > 0)
    assert got == want and sum(got) == 4
    probs = _paths(w.trace("hA", "hC"))
    assert probs == {p: round(wt / 4, 6) for p, wt in zip(("A-C", "A-D-C"), [
        int(round(t.weight * 4)) for t in alloc.flow_group("FG2").tunnels]) if wt}


def test_te_off_falls_back_to_lpm():
    w = Wan()
    w.push(w.desired())
    w.push({})
    assert _paths(w.trace("hA", "hB")) == {"A-B": 1.0}
    assert _paths(w.trace("hA", "hC")) == {"A-C": 1.0}
    assert not [g for g in w.sw("A").groups if g >= flows.TUNNEL_GROUP_BASE]
    assert not [f for s in "ABCD" for f in w.sw(s).flows if f.table_id in (flows.TABLE_ACL, flows.TABLE_MPLS)
                and f.priority > 0]


def test_local_failover_skips_dead_tunnels():
    w = Wan()
    w.push(w.desired())
    # A-B fails: the encap switch's select group drops the dead tunnel at once.
    w.net.set_link("A", 1, False)
    assert _paths(w.trace("hA", "hB")) == {"A-C-B": 1.0}
    w.net.set_link("A", 1, True)
    # C-B fails: transit C pops and routes by LPM; once C's controller hears of the port,
    # LPM goes around (C-A-B).
    c = w.wan.config.switches["C"]
    cb_port = c.trunks["B"][0]
    w.net.set_link("C", cb_port, False)
    logic = w.sites["C"]
    assert logic.set_port("C", cb_port, False)
    assert not w.sw("C").apply(logic.route_msgs(w.dps["C"], "C"))
    got = _paths(w.trace("hA", "hB"))
    assert got == {"A-B": 0.5, "A-C-A-B": 0.5}


def test_ted_rebuilt_from_switch_after_failover():
    w = Wan()
    w.push(w.desired())
    for site, logic in w.sites.items():
        sw = w.sw(site)
        fresh = SiteLogic(w.wan.config, site)  # a new master controller knows nothing
        msgs = fresh.switch_up(w.dps[site], site, sw.flow_stats(), sw.group_desc())
        assert fresh.installed() == logic.installed() == w.installed.get(site, {})
        assert msgs == []  # nothing changed behind its back: the new master sends nothing
        # a switch that lost part of its pipeline gets exactly that back
        lost = next(g for g in sw.groups if flows.TRUNK_GROUP_BASE <= g < flows.TUNNEL_GROUP_BASE)
        before = _paths(w.trace("hA", "hB"))
        trunk = sw.groups[lost]
        sw.groups[lost] = type(trunk)(lost, trunk.type, [])
        again = SiteLogic(w.wan.config, site).switch_up(w.dps[site], site, sw.flow_stats(), sw.group_desc())
        assert [type(m).__name__ for m in again] == ["OFPGroupMod"] and again[0].group_id == lost
        assert not sw.apply(again)
        assert _paths(w.trace("hA", "hB")) == before


def test_op_naming_unknown_tunnel_gets_error_ack(caplog):
    w = Wan()
    op = Op("A", 1, 6, ADD, TUNNEL_GROUP, "G9", {"group_id": 9, "buckets": [{"tunnel": "T4242", "weight": 1}]})
    ack = w.send(op)
    assert ack.status == ERROR and "unknown tunnel T4242" in ack.reason
    assert "unknown tunnel T4242" in caplog.text
    assert flows.tg_gid(9) not in w.sw("A").groups
    # the sequence id is used up: a replay gets the same answer, a lower one is rejected
    again = w.send(op)
    assert again.duplicate and again.status == ERROR
    assert w.send(Op("A", 1, 4, DELETE, TUNNEL, "T1000")).reason == "stale_seq"
    # an op for a site this controller does not run
    assert "no site" in w.sites["A"].handle_op({}, Op("Z", 1, 1, DELETE, TUNNEL, "T1000"))[0].reason


def test_stale_sequence_and_session_rejected_by_site_logic():
    w = Wan()
    t = Op("B", 5, 10, ADD, TUNNEL, "T1000", {"label": 1000, "role": "decap", "next_hop": None})
    assert w.send(t).status == OK
    assert w.send(Op("B", 5, 9, DELETE, TUNNEL, "T1000")).reason == "stale_seq"
    assert w.send(Op("B", 4, 11, DELETE, TUNNEL, "T1000")).status == REJECTED
    assert (TUNNEL, "T1000") in w.sites["B"].installed()


def test_switch_error_reverts_the_entry():
    w = Wan()
    # Make the switch refuse: a group with this id already exists behind the controller's back.
    sw = w.sw("A")
    dp = w.dps["A"]
    p, ofp = dp.ofproto_parser, dp.ofproto
    sw.apply([p.OFPGroupMod(dp, ofp.OFPGC_ADD, ofp.OFPGT_FF, flows.tunnel_gid(1000), [])])
    ack = w.send(Op("A", 1, 1, ADD, TUNNEL, "T1000", {"label": 1000, "role": "encap", "next_hop": "B"}))
    assert ack.status == ERROR and "exists" in ack.reason
    assert (TUNNEL, "T1000") not in w.sites["A"].installed()


def test_site_of_two_switches_survives_an_encap_switch_failure(tmp_path):
    from b4.model import with_second_switch

    w = Wan(with_second_switch(EXAMPLE, "A", "A2", tmp_path / "two.yaml"))
    assert w.wan.config.sites["A"].switches == ("A", "A2")
    w.push(w.desired())
    # both encap switches got the site's TE entries and split FG1 the same way
    assert w.sites["A"].installed() == w.installed["A"]
    hb = w.host_port("hB")[2]
    for sw in ("A", "A2"):
        port = w.wan.config.switches[sw].host_ports[0].port
        pkt = {"eth_type": 0x0800, "ipv4_src": "10.101.0.1", "ipv4_dst": hb.ip, "ttl": 64}
        assert _paths(w.net.trace(sw, port, pkt)) == {f"{sw}-B": 0.5, f"{sw}-C-B": 0.5}
    # A2 fails (every link loses carrier): B's trunk back to site A skips the dead member
    for p in (1, 2, 3):
        w.net.set_link("A2", p, False)
    back = w.trace("hB", "hA")
    assert _paths(back) == {"B-A": 1.0}
    assert back[0].packet["eth_dst"] == w.wan.config.switches["A"].host_ports[0].mac
