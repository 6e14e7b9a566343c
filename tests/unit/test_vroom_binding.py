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


def bindings(phys: dict[str, int], vr_ports: dict[str, int] | None) -> list[PortBinding]:
    return [PortBinding(ifn, k, MACS[ifn], phys[ifn], (vr_ports or {}).get(ifn))
            for k, ifn in enumerate(("eth0", "eth1"))]


def tables(phys, vr_ports, tunnel, routes=True) -> Tables:
    t = binding_flows(VR, bindings(phys, vr_ports), tunnel)
    if routes:
        t = t.merged(route_tables(VR, {"eth0": 0, "eth1": 1}, snapshot(), NextHopGroups(VR)).tables)
    return t


class World:
    """A and B bridges, a tunnel between them and a transport patching neighbours."""

    def __init__(self, a: Tables, b: Tables | None, circuits: dict[str, tuple[str, int]]):
        self.t = {"A": a, "B": b}
        self.circuits = circuits  # neighbour -> (router, physical port)

    def send(self, nb: str, pkt: Packet, select: int = 0) -> list[tuple[str, object]]:
        """Inject from neighbour `nb`; returns where copies end: ("n0"|"n1", pkt) for
        neighbours, ("vrA"|"vrB", port) for VR ports."""
        router, port = self.circuits[nb]
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
            nb = next((n for n, (r, p) in self.circuits.items() if (r, p) == (router, o.port)), None)
            if nb is not None:  # an unpatched physical port delivers nowhere
                assert o.packet.vlan is None
                out.append((nb, o.packet))
        return out


PHYS_A = {"eth0": 1, "eth1": 2}
PHYS_B = {"eth0": 3, "eth1": 4}


def data_from_n0(dst: str = "10.21.0.9") -> Packet:
    return Packet(in_port=0, eth_dst=MACS["eth0"], eth_src=N0, ip_dst=dst, ttl=9)


def arp_from(nb: str) -> Packet:
    return Packet(in_port=0, eth_type="arp")


def bgp_to_vr() -> Packet:
    return Packet(in_port=0, eth_dst=MACS["eth0"], ip_dst="10.0.0.1", ttl=1)


def states():
    """(label, world) for each moment of a migration of the VR from A to B."""
    before = World(tables(PHYS_A, VRPORT_A, None), None, {"n0": ("A", 1), "n1": ("A", 2)})
    # remote control plane prepared, CP still at A
    prepared = World(tables(PHYS_A, VRPORT_A, TunnelEnd(TUN, accept=True)),
                     tables(PHYS_B, VRPORT_B, TunnelEnd(TUN, egress_copy=True), routes=False),
                     {"n0": ("A", 1), "n1": ("A", 2)})
    # CP at B; A punts through the tunnel; B cloned; both data planes forward
    a_remote = tables(PHYS_A, VRPORT_A, TunnelEnd(TUN, punt=True, egress_copy=True))
    b_home = tables(PHYS_B, VRPORT_B, TunnelEnd(TUN, egress_copy=True))
    double = World(a_remote, b_home, {"n0": ("A", 1), "n1": ("A", 2)})
    half = World(a_remote, b_home, {"n0": ("B", 3), "n1": ("A", 2)})
    other_half = World(a_remote, b_home, {"n0": ("A", 1), "n1": ("B", 4)})
    moved = World(a_remote, b_home, {"n0": ("B", 3), "n1": ("B", 4)})
    after = World(Tables(), tables(PHYS_B, VRPORT_B, None), {"n0": ("B", 3), "n1": ("B", 4)})
    return [("before", before, "vrA"), ("prepared", prepared, "vrA"), ("double", double, "vrB"),
            ("half", half, "vrB"), ("other-half", other_half, "vrB"), ("moved", moved, "vrB"),
            ("after", after, "vrB")]


@pytest.mark.parametrize("label,world,cp", states(), ids=[s[0] for s in states()])
def test_data_is_forwarded_exactly_once_in_every_state(label, world, cp) -> None:
    got = world.send("n0", data_from_n0())
    assert len(got) == 1, got
    nb, pkt = got[0]
    assert nb == "n1" and pkt.eth_dst == N1 and pkt.eth_src == MACS["eth1"] and pkt.ttl == 8


@pytest.mark.parametrize("label,world,cp", states(), ids=[s[0] for s in states()])
def test_control_traffic_reaches_the_control_plane_where_it_runs(label, world, cp) -> None:
    for nb in ("n0", "n1"):
        assert [d for d, _ in world.send(nb, arp_from(nb))] == [cp]
    assert [d for d, _ in world.send("n0", bgp_to_vr())] == [cp]


@pytest.mark.parametrize("label,world,cp", states(), ids=[s[0] for s in states()])
def test_vr_packets_reach_the_neighbour_wherever_its_circuit_is(label, world, cp) -> None:
    router = cp[-1]
    vr_port = (VRPORT_A if router == "A" else VRPORT_B)["eth1"]
    pkt = Packet(in_port=vr_port, eth_src=MACS["eth1"], eth_dst=N1, ip_dst="10.0.1.2", ttl=1)
    got = world._run(router, pkt, 0, 0)
    assert [d for d, _ in got] == ["n1"]


def test_without_egress_copy_a_moved_link_is_unreachable_from_the_old_router() -> None:
    """Why double data planes copy egress into the tunnel: A alone cannot reach a moved link."""
    w = World(tables(PHYS_A, VRPORT_A, TunnelEnd(TUN, punt=True)),
              tables(PHYS_B, VRPORT_B, TunnelEnd(TUN, egress_copy=True)),
              {"n0": ("A", 1), "n1": ("B", 4)})
    assert w.send("n0", data_from_n0()) == []
