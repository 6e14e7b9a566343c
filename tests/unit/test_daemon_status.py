"""Status parsing of each daemon's real output (recorded by tests/data/daemons/capture.py).

The recorded network: r1 FRR (AS65001), r2 BIRD (AS65002), r3 GoBGP (AS65003), inj ExaBGP
(AS65009); OSPF on r1-r2; one absent neighbour per BGP router; sessions r1-r3, r2-r3 and
r2-inj flapped once before the capture. `normalized.json` holds what the drivers answered
live at capture time.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from routerlab.daemons import (BgpNeighbor, ExabgpDaemon, Interface, NextHop, RouterSpec)
from routerlab.daemons import bird, exabgp, frr, gobgp
from routerlab.daemons.base import normalize_bgp_state, normalize_ospf_state, one_line

DATA = Path(__file__).resolve().parents[1] / "data" / "daemons"
LIVE = json.loads((DATA / "normalized.json").read_text())


def _load(rel: str) -> str:
    return (DATA / rel).read_text()


def _same_as_live(impl: str, sessions: list, uptime_tol: float = 1.5) -> None:
    """Parsed sessions equal the live answer (uptimes within `uptime_tol` s)."""
    live = {s["peer"]: s for s in LIVE[impl]["bgp"]}
    got = {s.peer: s.to_dict() for s in sessions}
    assert set(got) == set(live)
    for peer, s in got.items():
        want = dict(live[peer])
        up, want_up = s.pop("uptime"), want.pop("uptime")
        assert s == want, peer
        assert (up is None) == (want_up is None), peer
        if up is not None:
            assert abs(up - want_up) <= uptime_tol, peer


# ----- normalization -----

@pytest.mark.parametrize("raw,state,role", [
    ("Full/DR", "Full", "DR"), ("Full/-", "Full", None), ("2-Way/DROther", "2-Way", "DROther"),
    ("Full/PtP", "Full", "PtP"), ("ExStart/BDR", "ExStart", "BDR"), ("init", "Init", None),
    ("Loading", "Loading", None), ("Down/DROther", "Down", "DROther"), ("TwoWay", "2-Way", None)])
def test_normalize_ospf_state(raw: str, state: str, role: str | None) -> None:
    assert normalize_ospf_state(raw) == (state, role)


@pytest.mark.parametrize("raw,state", [
    ("Established", "Established"), ("established", "Established"), ("Active", "Active"),
    ("Idle (Admin)", "Idle"), ("OpenSent", "OpenSent"), ("openconfirm", "OpenConfirm"),
    ("BGP_FSM_ESTABLISHED", "Established"), ("Connect", "Connect"), ("Clearing", "Idle")])
def test_normalize_bgp_state(raw: str, state: str) -> None:
    assert normalize_bgp_state(raw) == state


def test_one_line() -> None:
    assert one_line("a\n\n  b  \nc") == "a | b | c"
    assert len(one_line("x" * 5000)) == 600


# ----- FRR -----

def test_frr_ospf_neighbors() -> None:
    nbs = frr.parse_ospf_neighbors(json.loads(_load("frr/show_ip_ospf_neighbor.json")))
    (live,) = LIVE["frr"]["ospf"]
    got = nbs[0].to_dict()
    assert abs(got.pop("uptime") - live.pop("uptime")) < 1.5  # the live query came later
    assert got == live
    (n,) = nbs
    assert (n.router_id, n.address, n.interface, n.state, n.role) == (
        "10.255.0.2", "10.0.12.2", "r1-r2", "Full", "DR")
    assert n.uptime > 0


def test_frr_bgp_sessions() -> None:
    ss = frr.parse_bgp_neighbors(json.loads(_load("frr/show_ip_bgp_neighbors.json")))
    _same_as_live("frr", ss)
    by = {s.peer: s for s in ss}
    assert by["10.0.13.3"].established_count == 2  # cleared once
    assert by["10.0.12.2"].established_count == 1
    assert by["10.0.13.99"].state in ("Active", "Connect") and by["10.0.13.99"].uptime is None
    assert by["10.0.12.2"].description == "r2" and by["10.0.12.2"].local_address == "10.0.12.1"


def test_frr_routes() -> None:
    rs = frr.parse_routes(json.loads(_load("frr/show_ip_route.json")))
    sel = {r.prefix: r for r in rs if r.selected}
    assert sel["10.255.0.2/32"].protocol == "ospf"
    assert sel["10.255.0.2/32"].nexthops == (NextHop("10.0.12.2", "r1-r2"),)
    assert sel["10.255.0.2/32"].metric == 10
    assert sel["198.51.100.0/24"].protocol == "bgp"
    assert sel["203.0.113.0/24"].nexthops[0] == NextHop("10.0.13.3", "r1-r3")
    assert sel["192.0.2.0/24"].protocol == "static" and sel["192.0.2.0/24"].nexthops[0].blackhole
    assert sel["10.0.12.0/24"].protocol == "connected"
    assert {r.protocol for r in rs if r.prefix == "10.0.12.0/24"} == {"connected", "ospf"}
    assert {p for p, r in sel.items() if r.protocol == "bgp"} == {
        "198.51.100.0/24", "203.0.113.0/24", "100.64.0.0/24", "100.64.1.0/24",
        "100.64.2.0/24", "100.64.3.0/24"}


# ----- BIRD -----

def test_bird_ospf_neighbors() -> None:
    nbs = bird.parse_ospf_neighbors(_load("bird/show_ospf_neighbors.txt"))
    assert [n.to_dict() for n in nbs] == LIVE["bird"]["ospf"]
    assert nbs[0].state == "Full" and nbs[0].interface == "r2-r1" and nbs[0].uptime is None


def test_bird_established_counts_from_its_log() -> None:
    counts = bird.count_established(_load("bird/bird.log"))
    assert counts == {"bgp_10_0_12_1": 1, "bgp_10_0_23_3": 2, "bgp_10_0_9_1": 2}


def test_bird_bgp_sessions() -> None:
    ss = bird.parse_bgp_protocols(_load("bird/show_protocols_all.txt"),
                                  bird.count_established(_load("bird/bird.log")),
                                  now=LIVE["bird"]["captured_at"])
    _same_as_live("bird", ss)
    by = {s.peer: s for s in ss}
    assert by["10.0.9.1"].prefixes_received == 4
    assert by["10.0.23.99"].state == "Active" and "No route to host" in by["10.0.23.99"].last_error


def test_bird_routes() -> None:
    types = bird.parse_protocol_types(_load("bird/show_protocols.txt"))
    assert types["bgp_10_0_12_1"] == "bgp" and types["ospf1"] == "ospf" and types["direct1"] == "connected"
    rs = bird.parse_routes(_load("bird/show_route_all.txt"), types)
    sel = {r.prefix: r for r in rs if r.selected}
    assert sel["10.255.0.1/32"].protocol == "ospf" and sel["10.255.0.1/32"].metric == 10
    assert sel["10.255.0.1/32"].nexthops == (NextHop("10.0.12.1", "r2-r1"),)
    assert sel["198.51.100.0/24"].protocol == "static" and sel["198.51.100.0/24"].nexthops[0].blackhole
    assert sel["100.64.0.0/24"].metric == 5  # BGP MED
    assert sel["10.0.9.0/24"].protocol == "connected"
    assert sel["10.0.9.0/24"].nexthops == (NextHop(None, "r2-inj"),)
    # alternatives are reported, not selected
    alts = [r for r in rs if r.prefix == "192.0.2.0/24"]
    assert [(r.selected, r.nexthops[0].address) for r in alts] == [(True, "10.0.12.1"),
                                                                    (False, "10.0.23.3")]
    assert {p for p, r in sel.items() if r.protocol == "bgp"} == {
        "192.0.2.0/24", "203.0.113.0/24", "100.64.0.0/24", "100.64.1.0/24", "100.64.2.0/24",
        "100.64.3.0/24"}


# ----- GoBGP -----

def test_gobgp_peer_up_counts_from_its_log() -> None:
    assert gobgp.count_peer_up(_load("gobgp/gobgpd.log")) == {"10.0.13.1": 2, "10.0.23.2": 2}


def test_gobgp_bgp_sessions() -> None:
    ss = gobgp.parse_neighbors(json.loads(_load("gobgp/neighbor.json")),
                               gobgp.count_peer_up(_load("gobgp/gobgpd.log")),
                               now=LIVE["gobgp"]["captured_at"])
    _same_as_live("gobgp", ss)
    by = {s.peer: s for s in ss}
    assert by["10.0.13.99"].state == "Active" and by["10.0.13.99"].established_count == 0


def test_gobgp_rib() -> None:
    rs = gobgp.parse_rib(json.loads(_load("gobgp/global_rib.json")))
    sel = {r.prefix: r for r in rs if r.selected}
    assert sel["203.0.113.0/24"].nexthops == (NextHop(None, None),)  # its own network
    assert sel["192.0.2.0/24"].nexthops[0].address == "10.0.13.1"
    assert all(r.protocol == "bgp" for r in rs)
    assert len([r for r in rs if r.prefix == "100.64.0.0/24"]) == 2  # best + alternative
    assert set(sel) >= {"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "100.64.1.0/24"}


# ----- ExaBGP -----

def test_exabgp_events_replay() -> None:
    lines = _load("exabgp/exabgp.events").splitlines()
    st = exabgp.replay_events(lines)
    p = st.peers["10.0.9.2"]
    assert p.state == "Established" and p.ups == 2 and "Administrative Reset" in p.last_down_reason
    routes = exabgp.rib_routes(st)
    assert {r.prefix for r in routes} == {"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"}
    assert all(r.nexthops[0].address == "10.0.9.2" for r in routes)


def test_exabgp_driver_sessions_from_recorded_events() -> None:
    d = ExabgpDaemon(RouterSpec("inj", "10.255.0.9", 65009,
                                interfaces=[Interface("inj-r2", "10.0.9.1/24")],
                                bgp_neighbors=[BgpNeighbor("10.0.9.2", 65002, description="r2")]))
    d._config_dir = DATA / "exabgp"  # read the recorded stream where the driver would
    ss = d.bgp_sessions()
    live = LIVE["exabgp"]["bgp"][0]
    (s,) = ss
    got = s.to_dict()
    got.pop("uptime")
    live = {k: v for k, v in live.items() if k != "uptime"}
    assert got == live
    assert d.acks() == (2, 0)  # the injection and the capture's summary command
    assert d.route_prefixes() == {"192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"}


def test_exabgp_error_lines() -> None:
    out = ("18:49:30 | 20475  | configuration   | \n"
           "18:49:30 | 20475  | configuration   | syntax error in section neighbor\n"
           "18:49:30 | 20475  | configuration   | line 9: peer-az 65001 ;\n"
           "18:49:30 | 20475  | configuration   | invalid keyword \"peer-az\"\n")
    assert exabgp.exabgp_error(out) == ('syntax error in section neighbor | line 9: peer-az 65001 ; | '
                                       'invalid keyword "peer-az"')


def test_frr_ospf_quiet_is_the_more_recent_of_spf_and_youngest_lsa():
    status = {"spfLastExecutedMsecs": 4200, "holdtimeMaxMsecs": 1000}
    db = {"routerId": "10.255.0.1", "areas": {"0.0.0.0": {
        "routerLinkStates": [{"lsId": "10.255.0.1", "lsaAge": 9}, {"lsId": "10.255.0.2", "lsaAge": 3}],
        "routerLinkStatesCount": 2}}}
    assert frr.ospf_quiet_s(status, db) == 3.0          # a new LSA 3 s ago
    assert frr.ospf_quiet_s({"spfLastExecutedMsecs": 250}, db) == 0.25  # SPF ran 250 ms ago
    assert frr.ospf_quiet_s({}, db) == 0.0              # SPF never ran: not quiet
