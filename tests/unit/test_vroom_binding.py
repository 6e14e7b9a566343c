"""Interface binding and rebinding, and the migration's flows across two simulated bridges.

Physical routers A and B each have physical ports 1-4; their bridges are joined by a tunnel
(port 9 on both). The VR (id 5) has eth0 (neighbour n0) and eth1 (neighbour n1); a
simulated transport maps each neighbour to the physical port its circuit is patched to.
The tests walk a migration's states and check, for packets from each neighbour, that data
is forwarded exactly once and control traffic reaches the VR wherever it runs."""
from __future__ import annotations

from dataclasses import replace

import pytest

from vroom.binding import (VID_EGRESS, VID_PUNT, BindingError, PortBinding, PortMap, TunnelEnd,
                           binding_flows, vid)
from vroom.fib import Address, Neighbour, NextHop, Route, Snapshot
from vroom.flows import Packet, Tables, simulate
from vroom.translate import NextHopGroups, route_tables

VR = 5
MACS = {"eth0": "02:00:00:05:00:00", "eth1": "02:00:00:05:00:01"}
N0, N1 = "02:aa:00:00:00:01", "02:bb:00:00:00:01"
TUN = 9
VRPORT_A = {"eth0": 21, "eth1": 22}
VRPORT_B = {"eth0": 31, "eth1": 32}


# ------------------------------------------------------------------ PortMap

def test_bind_assigns_free_ports_all_or_nothing() -> None:
    pm = PortMap([1, 2, 3])
    assert pm.bind("vr1", ["eth0", "eth1"]) == {"eth0": 1, "eth1": 2}
    with pytest.raises(BindingError, match="needs 2 free ports for vr2, has 1"):
        pm.bind("vr2", ["eth0", "eth1"])
    assert pm.free() == [3] and pm.of("vr2") == {}


def test_bind_prefers_requested_ports_and_refuses_double_binding() -> None:
    pm = PortMap([1, 2, 3, 4])
    # both want port 4: the first interface gets it, the other the first free port
    assert pm.bind("vr1", ["eth0", "eth1"], prefer={"eth1": 4, "eth0": 4}) == {"eth0": 4, "eth1": 1}
    with pytest.raises(BindingError, match="already bound"):
        pm.bind("vr1", ["eth0"])


def test_unbind_then_rebind_elsewhere() -> None:
    a, b = PortMap([1, 2]), PortMap([1, 2, 3])
    got = a.bind("vr1", ["eth0", "eth1"])
    moved = b.bind("vr1", list(got), prefer=got)
    assert moved == {"eth0": 1, "eth1": 2}
    assert a.unbind("vr1") == got and a.free() == [1, 2]
    assert b.of("vr1") == moved


def test_vids_are_distinct_and_valid() -> None:
    vids = {vid(v, k, d) for v in (1, 62) for k in (0, 31) for d in (VID_PUNT, VID_EGRESS)}
    assert len(vids) == 8 and all(0 < x < 4095 for x in vids)
    with pytest.raises(ValueError):
        vid(5, 32, 0)


# ------------------------------------------------------------------ two routers + transport

def snapshot() -> Snapshot:
    return Snapshot(
        routes=[Route("10.0.0.0/30", nexthops=(NextHop("eth0"),)),
                Route("10.0.1.0/30", nexthops=(NextHop("eth1"),)),
                Route("10.20.0.0/16", nexthops=(NextHop("eth0", "10.0.0.2"),)),
                Route("10.21.0.0/16", nexthops=(NextHop("eth1", "10.0.1.2"),))],
        neighbours=[Neighbour("10.0.0.2", "eth0", N0), Neighbour("10.0.1.2", "eth1", N1)],
        addresses=[Address("eth0", "10.0.0.1/30"), Address("eth1", "10.0.1.1/30")])


PHYS_A = {"eth0": 1, "eth1": 2}
PHYS_B = {"eth0": 3, "eth1": 4}


def tables(router: str, here: set[str], tunnel: TunnelEnd | None, routes: bool = True) -> Tables:
    """`router`'s flows for the VR; `here`: interfaces whose circuit is patched to it."""
    phys, vr_ports = (PHYS_A, VRPORT_A) if router == "A" else (PHYS_B, VRPORT_B)
    bs = [PortBinding(ifn, k, MACS[ifn], phys[ifn], vr_ports[ifn], ifn in here)
          for k, ifn in enumerate(("eth0", "eth1"))]
    t = binding_flows(VR, bs, tunnel)
    if routes:
        t = t.merged(route_tables(VR, {"eth0": 0, "eth1": 1}, snapshot(), NextHopGroups(VR)).tables)
    return t


class World:
    """A and B bridges, a tunnel between them and a transport patching neighbours.

    `fwd` maps a neighbour to the router port its frames enter; `rev` maps router ports to
    the neighbour they reach (during make-before-break, two ports reach one neighbour)."""

    def __init__(self, a: Tables, b: Tables | None, fwd: dict[str, tuple[str, int]],
                 linger: dict[tuple[str, int], str] | None = None):
        self.t = {"A": a, "B": b}
        self.fwd = fwd
        self.rev = {v: k for k, v in fwd.items()}
        self.rev.update(linger or {})

    def send(self, nb: str, pkt: Packet, select: int = 0) -> list[tuple[str, object]]:
        """Inject from neighbour `nb`; returns where copies end: ("n0"|"n1", pkt) for
        neighbours, ("vrA"|"vrB", port) for VR ports."""
        router, port = self.fwd[nb]
        return self._run(router, replace(pkt, in_port=port), select, 0)

    def _run(self, router: str, pkt: Packet, select: int, depth: int):
        assert depth < 4
        t = self.t[router]
        if t is None:
            return []
        out = []
        for o in simulate(t, pkt, select=select):
            if o.port == TUN:
                other = "B" if router == "A" else "A"
                out += self._run(other, replace(o.packet, in_port=TUN, regs=(0, 0, 0, 0)),
                                 select, depth + 1)
                continue
            vr_ports = VRPORT_A if router == "A" else VRPORT_B
            if o.port in vr_ports.values():
                out.append((f"vr{router}", o.port))
                continue
            nb = self.rev.get((router, o.port))
            if nb is not None:  # an unpatched physical port delivers nowhere
                assert o.packet.vlan is None
                out.append((nb, o.packet))
        return out


AT_A = {"n0": ("A", 1), "n1": ("A", 2)}
AT_B = {"n0": ("B", 3), "n1": ("B", 4)}
BOTH = {"eth0", "eth1"}


def states():
    """(label, world, where the control plane runs) for each moment of a migration A -> B,
    including each step of moving eth0's circuit (make-before-break)."""
    tun_a_local = TunnelEnd(TUN, accept=True)
    tun_a_remote = TunnelEnd(TUN, punt=True, accept=True)
    tun_b = TunnelEnd(TUN, accept=True)
    n0_at_b = {"n0": ("B", 3), "n1": ("A", 2)}
    return [
        ("before", World(tables("A", BOTH, None), None, AT_A), "vrA"),
        # remote control plane prepared, control plane still at A, B egresses via A
        ("prepared", World(tables("A", BOTH, tun_a_local),
                           tables("B", set(), tun_b, routes=False), AT_A), "vrA"),
        # control plane at B; A punts through the tunnel; B cloned; both forward
        ("double", World(tables("A", BOTH, tun_a_remote), tables("B", set(), tun_b), AT_A), "vrB"),
        # eth0: 1. transport switched, old reverse path kept; bridges not yet told
        ("eth0-switched", World(tables("A", BOTH, tun_a_remote), tables("B", set(), tun_b),
                                n0_at_b, {("A", 1): "n0"}), "vrB"),
        # 2. B egresses eth0 locally
        ("eth0-b-local", World(tables("A", BOTH, tun_a_remote), tables("B", {"eth0"}, tun_b),
                               n0_at_b, {("A", 1): "n0"}), "vrB"),
        # 3. A egresses eth0 through the tunnel
        ("eth0-a-tunnel", World(tables("A", {"eth1"}, tun_a_remote), tables("B", {"eth0"}, tun_b),
                                n0_at_b, {("A", 1): "n0"}), "vrB"),
        # 4. the old reverse path released
        ("eth0-moved", World(tables("A", {"eth1"}, tun_a_remote), tables("B", {"eth0"}, tun_b),
                             n0_at_b), "vrB"),
        ("all-moved", World(tables("A", set(), tun_a_remote), tables("B", BOTH, tun_b), AT_B), "vrB"),
        ("after", World(Tables(), tables("B", BOTH, None), AT_B), "vrB"),
    ]


IDS = [s[0] for s in states()]


def data_from_n0(dst: str = "10.21.0.9") -> Packet:
    return Packet(in_port=0, eth_dst=MACS["eth0"], eth_src=N0, ip_dst=dst, ttl=9)


def data_from_n1(dst: str = "10.20.0.9") -> Packet:
    return Packet(in_port=0, eth_dst=MACS["eth1"], eth_src=N1, ip_dst=dst, ttl=9)


def bgp_to_vr() -> Packet:
    return Packet(in_port=0, eth_dst=MACS["eth0"], ip_dst="10.0.0.1", ttl=1)


@pytest.mark.parametrize("label,world,cp", states(), ids=IDS)
def test_data_is_forwarded_exactly_once_in_every_state(label, world, cp) -> None:
    for src, pkt, dst, mac_dst, mac_src in (("n0", data_from_n0(), "n1", N1, MACS["eth1"]),
                                            ("n1", data_from_n1(), "n0", N0, MACS["eth0"])):
        got = world.send(src, pkt)
        assert len(got) == 1, (src, got)
        nb, out = got[0]
        assert nb == dst and out.eth_dst == mac_dst and out.eth_src == mac_src and out.ttl == 8


@pytest.mark.parametrize("label,world,cp", states(), ids=IDS)
def test_control_traffic_reaches_the_control_plane_where_it_runs(label, world, cp) -> None:
    for nb in ("n0", "n1"):
        assert [d for d, _ in world.send(nb, Packet(in_port=0, eth_type="arp"))] == [cp]
    assert [d for d, _ in world.send("n0", bgp_to_vr())] == [cp]


@pytest.mark.parametrize("label,world,cp", states(), ids=IDS)
def test_vr_packets_reach_each_neighbour_once_wherever_its_circuit_is(label, world, cp) -> None:
    router = cp[-1]
    vr_ports = VRPORT_A if router == "A" else VRPORT_B
    for ifn, nb, mac in (("eth0", "n0", N0), ("eth1", "n1", N1)):
        pkt = Packet(in_port=vr_ports[ifn], eth_src=MACS[ifn], eth_dst=mac, ip_dst="224.0.0.5",
                     ttl=1)
        assert [d for d, _ in world._run(router, pkt, 0, 0)] == [nb]


def test_a_frame_can_only_take_one_way() -> None:
    """No state of the migration outputs a frame on two paths (no duplicates by design)."""
    for label, world, _ in states():
        for t in world.t.values():
            if t is None:
                continue
            for f in t.flows.values():
                outs = [a for a in f.actions if a.startswith("output:") or a == "in_port"]
                assert len(outs) <= 1, (label, f.text())


def test_a_packet_punted_at_a_and_routed_at_b_goes_back_through_the_tunnel() -> None:
    """Double data planes, control plane at B: A's data plane has not resolved n1 yet (its
    next hop punts: to the control plane, now through the tunnel); B routes the packet to
    eth1, whose circuit is still at A. B must send it back into the tunnel it came from
    (OpenFlow drops an output to the in_port), and A out of n1's port: delivered once."""
    snap = snapshot()
    unresolved = Snapshot(routes=snap.routes, neighbours=[snap.neighbours[0]],
                          addresses=snap.addresses)
    bs = [PortBinding(ifn, k, MACS[ifn], PHYS_A[ifn], VRPORT_A[ifn], True)
          for k, ifn in enumerate(("eth0", "eth1"))]
    a = binding_flows(VR, bs, TunnelEnd(TUN, punt=True, accept=True)).merged(
        route_tables(VR, {"eth0": 0, "eth1": 1}, unresolved, NextHopGroups(VR)).tables)
    world = World(a, tables("B", set(), TunnelEnd(TUN, accept=True)), AT_A)
    got = world.send("n0", data_from_n0("10.21.0.9"))
    assert [d for d, _ in got] == ["n1"], got
