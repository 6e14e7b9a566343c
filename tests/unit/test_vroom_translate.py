"""Route and neighbour -> flow translation, run against the flow-table simulator.

A VR (id 3) with interfaces eth0 (index 0, bridge port 1, VR port 11) and eth1 (index 1,
port 2, VR port 12) on one physical router; each test builds a FIB snapshot, translates it,
adds the binding flows and sends packets through the simulated table."""
from __future__ import annotations

import pytest

from vroom import fib
from vroom.binding import PortBinding, binding_flows
from vroom.fib import Address, Neighbour, NextHop, Route, Snapshot
from vroom.flows import Packet, Tables, diff_bundle, install_bundle, simulate
from vroom.translate import NextHopGroups, route_priority, route_tables

VR = 3
MAC0, MAC1 = "02:00:00:03:00:00", "02:00:00:03:00:01"
NB0, NB1, NB1B = "02:aa:00:00:00:02", "02:bb:00:00:00:02", "02:bb:00:00:00:03"
BINDINGS = [PortBinding("eth0", 0, MAC0, phys_port=1, vr_port=11),
            PortBinding("eth1", 1, MAC1, phys_port=2, vr_port=12)]
IFINDEX = {"eth0": 0, "eth1": 1}


def base_snapshot(**kw) -> Snapshot:
    routes = [Route("10.0.0.0/24", nexthops=(NextHop("eth0"),), protocol="kernel", scope="link"),
              Route("10.0.1.0/24", nexthops=(NextHop("eth1"),), protocol="kernel", scope="link")]
    neigh = [Neighbour("10.0.0.2", "eth0", NB0, "REACHABLE"),
             Neighbour("10.0.1.2", "eth1", NB1, "STALE")]
    addrs = [Address("eth0", "10.0.0.1/24"), Address("eth1", "10.0.1.1/24"),
             Address("lo", "10.255.0.3/32"), Address("lo", "127.0.0.1/8")]
    s = Snapshot(routes=routes, neighbours=neigh, addresses=addrs)
    s.routes += kw.get("routes", [])
    s.neighbours += kw.get("neighbours", [])
    return s


def tables_for(snap: Snapshot, groups: NextHopGroups | None = None) -> Tables:
    t = route_tables(VR, IFINDEX, snap, groups or NextHopGroups(VR)).tables
    return t.merged(binding_flows(VR, BINDINGS))


def data(dst: str, ttl: int = 64, port: int = 1, mac: str = MAC0) -> Packet:
    return Packet(in_port=port, eth_dst=mac, ip_dst=dst, ttl=ttl)


def only(outs):
    assert len(outs) == 1, outs
    return outs[0]


def test_gateway_route_rewrites_macs_decrements_ttl_and_outputs() -> None:
    t = tables_for(base_snapshot(routes=[Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),),
                                               metric=32, protocol="bird")]))
    o = only(simulate(t, data("10.9.1.1", ttl=10)))
    assert o.port == 2
    assert (o.packet.eth_src, o.packet.eth_dst, o.packet.ttl) == (MAC1, NB1, 9)


def test_more_specific_route_overrides_and_neighbour_host_flow_is_below_it() -> None:
    snap = base_snapshot(routes=[
        Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),)),
        Route("10.9.5.0/24", nexthops=(NextHop("eth0", "10.0.0.2"),)),
        Route("0.0.0.0/0", nexthops=(NextHop("eth1", "10.0.1.2"),)),
        # a /32 for a directly connected neighbour beats its neighbour host flow
        Route("10.0.0.2/32", nexthops=(NextHop("eth1", "10.0.1.2"),)),
    ])
    t = tables_for(snap)
    assert only(simulate(t, data("10.9.5.7"))).port == 1
    assert only(simulate(t, data("10.9.6.7"))).port == 2
    assert only(simulate(t, data("192.0.2.1"))).port == 2  # default route
    assert only(simulate(t, data("10.0.0.2"))).port == 2  # the /32 route, not the neighbour
    assert only(simulate(t, data("10.0.1.2", port=1))).packet.eth_dst == NB1  # neighbour flow


def test_priorities_follow_prefix_length() -> None:
    assert route_priority(32) > route_priority(25) > route_priority(24) + 1 > route_priority(24)
    assert route_priority(0) > 1  # above the table-miss punt


def test_ecmp_becomes_weighted_select_group_over_both_interfaces() -> None:
    snap = base_snapshot(routes=[Route("10.9.0.0/16", nexthops=(
        NextHop("eth0", "10.0.0.2", 1), NextHop("eth1", "10.0.1.2", 2)))])
    t = tables_for(snap)
    (g,) = [g for g in t.groups.values() if g.type == "select"]  # others: neighbour hosts
    assert g.type == "select" and sorted(b.weight for b in g.buckets) == [1, 2]
    paths = {(o.port, o.packet.eth_dst) for sel in range(2)
             for o in simulate(t, data("10.9.0.1"), select=sel)}
    assert paths == {(1, NB0), (2, NB1)}


def test_ecmp_leaves_out_unresolved_next_hop() -> None:
    snap = base_snapshot(routes=[Route("10.9.0.0/16", nexthops=(
        NextHop("eth0", "10.0.0.9"), NextHop("eth1", "10.0.1.2")))])
    t = tables_for(snap)
    (g,) = [g for g in t.groups.values() if g.type == "select"]
    assert len(g.buckets) == 1
    assert {only(simulate(t, data("10.9.0.1"), select=s)).port for s in range(3)} == {2}


def test_unresolved_next_hop_punts_to_the_vr_then_resolves() -> None:
    groups = NextHopGroups(VR)
    route = Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.3"),))
    t1 = tables_for(base_snapshot(routes=[route]), groups)
    # punted, untouched, to the VR interface it arrived on (eth0 -> VR port 11)
    o = only(simulate(t1, data("10.9.0.1")))
    assert o.port == 11 and o.packet.ttl == 64
    snap2 = base_snapshot(routes=[route], neighbours=[Neighbour("10.0.1.3", "eth1", NB1B)])
    t2 = tables_for(snap2, groups)
    o = only(simulate(t2, data("10.9.0.1")))
    assert (o.port, o.packet.eth_dst) == (2, NB1B)
    # only the group changed: the route flow kept its group id
    lines = diff_bundle(t1, t2)
    assert any(ln.startswith("group modify") for ln in lines)
    assert not any("nw_dst=10.9.0.0/16" in ln for ln in lines)


def test_punts_go_to_the_vr_interface_of_arrival() -> None:
    t = tables_for(base_snapshot())
    # broadcast ARP request on eth1's physical port -> eth1's VR port
    arp = Packet(in_port=2, eth_type="arp")
    assert only(simulate(t, arp)).port == 12
    # unicast ARP reply to our MAC
    assert only(simulate(t, Packet(in_port=1, eth_dst=MAC0, eth_type="arp"))).port == 11
    # OSPF hello to 224.0.0.5 (multicast MAC)
    hello = Packet(in_port=1, eth_dst="01:00:5e:00:00:05", ip_dst="224.0.0.5", ttl=1)
    assert only(simulate(t, hello)).port == 11
    # BGP to the interface address and to the loopback
    assert only(simulate(t, data("10.0.0.1"))).port == 11
    assert only(simulate(t, data("10.255.0.3", port=2, mac=MAC1))).port == 12
    # TTL 1 transit traffic: the VR sends time-exceeded
    routes = [Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),))]
    t = tables_for(base_snapshot(routes=routes))
    assert only(simulate(t, data("10.9.0.1", ttl=1))).port == 11
    # no route at all: the VR decides (ICMP unreachable)
    assert only(simulate(t, data("198.51.100.1"))).port == 11


def test_connected_subnet_without_neighbour_punts() -> None:
    t = tables_for(base_snapshot())
    assert only(simulate(t, data("10.0.1.77"))).port == 11


def test_blackhole_drops_and_unreachable_punts() -> None:
    t = tables_for(base_snapshot(routes=[Route("10.7.0.0/16", type="blackhole"),
                                         Route("10.8.0.0/16", type="unreachable")]))
    assert simulate(t, data("10.7.0.1")) == []
    assert only(simulate(t, data("10.8.0.1"))).port == 11


def test_lowest_metric_wins_for_one_prefix() -> None:
    t = tables_for(base_snapshot(routes=[
        Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),), metric=20),
        Route("10.9.0.0/16", nexthops=(NextHop("eth0", "10.0.0.2"),), metric=5)]))
    assert only(simulate(t, data("10.9.0.1"))).port == 1


def test_routes_on_unbound_interfaces_are_skipped() -> None:
    tr = route_tables(VR, IFINDEX, base_snapshot(routes=[
        Route("10.50.0.0/16", nexthops=(NextHop("lo"),)),
        Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),))]), NextHopGroups(VR))
    assert tr.skipped == 1 and tr.routes == 3


def test_vr_port_traffic_goes_straight_out() -> None:
    t = tables_for(base_snapshot())
    o = only(simulate(t, Packet(in_port=12, eth_src=MAC1, eth_dst=NB1, ip_dst="10.0.1.2")))
    assert (o.port, o.packet.eth_src) == (2, MAC1)


def test_hairpin_uses_in_port() -> None:
    t = tables_for(base_snapshot(routes=[Route("10.9.0.0/16", nexthops=(NextHop("eth0", "10.0.0.2"),))]))
    o = only(simulate(t, data("10.9.0.1", port=1)))
    assert o.port == 1 and o.packet.eth_dst == NB0


def test_diff_is_empty_for_same_state_and_deletes_removed_routes() -> None:
    groups = NextHopGroups(VR)
    r = Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),))
    r2 = Route("10.10.0.0/16", nexthops=(NextHop("eth0", "10.0.0.2"),))
    t1 = tables_for(base_snapshot(routes=[r, r2]), groups)
    assert diff_bundle(t1, tables_for(base_snapshot(routes=[r, r2]), groups)) == []
    t2 = tables_for(base_snapshot(routes=[r]), groups)
    lines = diff_bundle(t1, t2)
    assert lines == ["flow delete_strict table=1,priority=1032,reg0=3,ip,nw_dst=10.10.0.0/16"]
    # the group of 10.0.0.2 stays: the neighbour host flow still uses it
    assert set(t1.groups) == set(t2.groups)


def test_group_ids_are_stable_and_recycled() -> None:
    g = NextHopGroups(VR)
    a = g.id_for((("eth0", "10.0.0.2", 1),))
    b = g.id_for((("eth1", "10.0.1.2", 1),))
    assert a >> 24 == VR and a != b and g.id_for((("eth0", "10.0.0.2", 1),)) == a
    g.retain([(("eth1", "10.0.1.2", 1),)])
    c = g.id_for((("eth0", "10.0.0.9", 1),))
    assert c == a  # recycled
    assert g.id_for((("eth1", "10.0.1.2", 1),)) == b


def test_install_bundle_puts_groups_first() -> None:
    t = tables_for(base_snapshot(routes=[Route("10.9.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),))]))
    lines = install_bundle(t)
    first_flow = next(i for i, ln in enumerate(lines) if ln.startswith("flow"))
    assert all(ln.startswith("group") for ln in lines[:first_flow])
    assert all(ln.startswith("flow") for ln in lines[first_flow:])


def test_vr_id_range_enforced() -> None:
    with pytest.raises(ValueError):
        NextHopGroups(0)
    with pytest.raises(ValueError):
        NextHopGroups(63)


# ------------------------------------------------------------------ parsers

ROUTES_TEXT = (
    "default via 10.0.1.2 dev eth1 \n"
    "10.0.0.0/24 dev eth0 proto kernel scope link src 10.0.0.1 linkdown \n"
    "10.5.0.0/16 via 10.0.0.2 dev eth0 proto bird metric 32 \n"
    "10.6.0.0/16 proto bird metric 32 linkdown \\\tnexthop via 10.0.0.2 dev eth0 weight 1 "
    "linkdown \\\tnexthop via 10.0.1.2 dev eth1 weight 2 dead linkdown \n"
    "blackhole 10.7.0.0/16 proto bird \n"
    "unreachable 10.8.0.0/16 \n"
    "10.9.0.0/16 nhid 7 proto ospf \\\tnexthop via 10.0.0.2 dev eth0 weight 1 \\\tnexthop via "
    "10.0.1.2 dev eth1 weight 1 \n"
    "10.10.0.0/16 nhid 5 via 10.0.0.2 dev eth0 proto ospf \n"
    "10.11.0.1 via 10.0.0.2 dev eth0 proto 188 metric 20 onlink \n")


def test_parse_routes() -> None:
    rs = {r.prefix: r for r in fib.parse_routes(ROUTES_TEXT)}
    assert rs["0.0.0.0/0"].nexthops == (NextHop("eth1", "10.0.1.2"),)
    assert rs["10.0.0.0/24"].connected and rs["10.0.0.0/24"].protocol == "kernel"
    assert rs["10.5.0.0/16"].metric == 32 and rs["10.5.0.0/16"].protocol == "bird"
    # the dead next hop is left out
    assert rs["10.6.0.0/16"].nexthops == (NextHop("eth0", "10.0.0.2", 1),)
    assert rs["10.7.0.0/16"].type == "blackhole" and rs["10.7.0.0/16"].nexthops == ()
    assert rs["10.8.0.0/16"].type == "unreachable"
    assert len(rs["10.9.0.0/16"].nexthops) == 2
    assert rs["10.10.0.0/16"].nexthops == (NextHop("eth0", "10.0.0.2"),)
    assert rs["10.11.0.1/32"].metric == 20


def test_parse_neighbours_addresses_links() -> None:
    ns = fib.parse_neighbours(
        "10.0.1.2 dev eth1 lladdr 02:00:00:00:00:03 REACHABLE\n"
        "10.0.0.2 dev eth0 lladdr 02:00:00:00:00:02 router STALE\n"
        "10.0.0.9 dev eth0 FAILED\n10.0.0.8 dev eth0 INCOMPLETE\n")
    assert [(n.ip, n.resolved) for n in ns] == [("10.0.1.2", True), ("10.0.0.2", True),
                                                ("10.0.0.9", False), ("10.0.0.8", False)]
    addrs = fib.parse_addresses(
        "1: lo    inet 127.0.0.1/8 scope host lo\\       valid_lft forever preferred_lft forever\n"
        "3: eth0    inet 10.0.0.1/24 scope global eth0\\       valid_lft forever\n")
    assert addrs == [Address("lo", "127.0.0.1/8"), Address("eth0", "10.0.0.1/24")]
    links = fib.parse_links(
        "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue state UNKNOWN\\    link/loopback "
        "00:00:00:00:00:00 brd 00:00:00:00:00:00\n"
        "12: eth0@if40: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue state UP\\    "
        "link/ether 02:00:00:03:00:00 brd ff:ff:ff:ff:ff:ff link-netnsid 0\n")
    assert links[1] == fib.Link("eth0", 12, "02:00:00:03:00:00", True, 1500)


def test_gc_paused_nests_and_restores_the_collector():
    import gc

    from routerlab.expect import wait_for
    from vroom import hypervisor
    from vroom.hypervisor import gc_paused

    # in `make test` this runs in the process the emulation tests ran in: wait until no
    # hypervisor thread they left winding down is inside a pause of its own
    wait_for(lambda: hypervisor._gc_pauses == 0, 30, what="other threads' GC pauses to end")
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still runs
    assert gc.isenabled()
    # two hypervisors' pauses overlapping, the first to begin ending first
    first, second = gc_paused(), gc_paused()
    first.__enter__()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()
    second.__exit__(None, None, None)
    assert gc.isenabled()
    # a collector that was off stays off
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


# ------------------------------------------------------------------ an FRR edge router, as recorded

# NYCM of Abilene on FRR 8.4 (vroom-maintenance's edge router), `ip -o -4 route show table
# main` and `ip -o -4 neigh show` in its namespace after convergence: zebra installs every
# route with a nexthop object (nhid), the ECMP one as a nexthop group, and tags the
# neighbours it probes for ospfd "proto zebra" (after the NUD state).
FRR_NYCM_ROUTES = (
    "10.0.0.0/30 dev NYCM-eth0 proto kernel scope link src 10.0.0.1 \n"
    "10.0.0.4/30 dev NYCM-eth1 proto kernel scope link src 10.0.0.5 \n"
    "10.0.0.8/30 nhid 24 via 10.0.0.2 dev NYCM-eth0 proto ospf metric 20 \n"
    "10.0.0.12/30 nhid 32 via 10.0.0.6 dev NYCM-eth1 proto ospf metric 20 \n"
    "10.0.0.24/30 nhid 33 proto ospf metric 20 \\\tnexthop via 10.0.0.2 dev NYCM-eth0 weight 1 "
    "\\\tnexthop via 10.0.0.6 dev NYCM-eth1 weight 1 \n"
    "10.0.0.56/30 dev NYCM-eth2 proto kernel scope link src 10.0.0.57 \n"
    "blackhole 10.1.0.0/16 proto static metric 20 \n"
    "10.1.7.0/24 nhid 32 via 10.0.0.6 dev NYCM-eth1 proto ospf metric 20 \n"
    "10.1.8.0/24 dev NYCM-eth3 proto kernel scope link src 10.1.8.1 \n"
    "10.200.0.0/24 nhid 28 via 10.0.0.58 dev NYCM-eth2 proto bgp metric 20 \n"
    "10.255.0.1 nhid 32 via 10.0.0.6 dev NYCM-eth1 proto ospf metric 20 \n"
    "10.255.0.2 nhid 24 via 10.0.0.2 dev NYCM-eth0 proto ospf metric 20 \n")
FRR_NYCM_NEIGH = (
    "10.1.8.2 dev NYCM-eth3 lladdr 3e:c8:cf:7a:8e:d0 {state} \n"
    "10.0.0.6 dev NYCM-eth1 lladdr 02:76:45:0b:00:00 {state} proto zebra \n"
    "10.0.0.2 dev NYCM-eth0 lladdr 02:76:a6:02:00:00 {state} proto zebra \n"
    "10.0.0.58 dev NYCM-eth2 lladdr 8e:6e:9d:82:a7:1d {state} \n")
NYCM_BINDINGS = [PortBinding(f"NYCM-eth{i}", i, f"02:76:ec:08:00:0{i}", phys_port=i + 1,
                             vr_port=i + 11) for i in range(4)]


@pytest.mark.parametrize("state", ["REACHABLE", "STALE", "DELAY", "PROBE", "PERMANENT"])
def test_frr_routes_with_nexthop_objects_forward_in_the_data_plane(state: str) -> None:
    """FRR's NYCM forwards hNYCM -> hLOSA in OVS whatever state its neighbours are in (the
    suspicion when an FRR edge router's data plane looked slow: nothing here punts)."""
    snap = Snapshot(routes=fib.parse_routes(FRR_NYCM_ROUTES),
                    neighbours=fib.parse_neighbours(FRR_NYCM_NEIGH.format(state=state)),
                    addresses=[Address(f"NYCM-eth{i}", a) for i, a in
                               enumerate(("10.0.0.1/30", "10.0.0.5/30", "10.0.0.57/30",
                                          "10.1.8.1/24"))])
    assert all(n.resolved for n in snap.neighbours)
    tr = route_tables(VR, {b.ifname: b.index for b in NYCM_BINDINGS}, snap, NextHopGroups(VR))
    assert tr.unresolved == 0 and tr.skipped == 0
    t = tr.tables.merged(binding_flows(VR, NYCM_BINDINGS))
    # hNYCM (port 4) -> hLOSA: out of NYCM-eth1 (port 2) to WASH's MAC, not to the VR
    o = only(simulate(t, Packet(in_port=4, eth_dst="02:76:ec:08:00:03", ip_dst="10.1.7.2")))
    assert (o.port, o.packet.eth_dst, o.packet.eth_src, o.packet.ttl) == (
        2, "02:76:45:0b:00:00", "02:76:ec:08:00:01", 63)
    # back to hNYCM through its neighbour's host flow; BGP route to the external AS
    assert only(simulate(t, data("10.1.8.2", port=2, mac="02:76:ec:08:00:01"))).port == 4
    assert only(simulate(t, data("10.200.0.9", port=4, mac="02:76:ec:08:00:03"))).port == 3
    # ECMP over both core links (nexthop group 33), each way out of the data plane
    ecmp = {only(simulate(t, data("10.0.0.25", port=4, mac="02:76:ec:08:00:03"),
                          select=k)).port for k in (0, 1)}
    assert ecmp == {1, 2}
    # the aggregate's blackhole drops what no more specific route takes
    assert simulate(t, data("10.1.99.1", port=4, mac="02:76:ec:08:00:03")) == []
