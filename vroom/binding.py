"""Dynamic interface binding: which physical-router port carries which VR interface, and the
flows that join them (ingress, punt, egress and the remote-control-plane tunnel).

A physical router has a fixed set of *physical ports* (its line cards, each on a transport
circuit). Binding a VR to a physical router assigns one free physical port to each VR
interface (`PortMap`); the VR's own namespace interface is attached to the bridge by a
*VR port*. `binding_flows` renders what that means in OpenFlow (see `vroom.flows` for the
table layout):

* table 0: a frame from physical port P for the VR's MAC goes to routing (table 1) with
  ``reg0 = VR id, reg1 = interface``; any other frame (broadcast ARP, OSPF multicast) is
  punted; a frame from the VR port goes straight to egress with ``reg2 = interface``;
* table 2 (punt): to the VR port of the interface, or, when the control plane runs at the
  other end of a tunnel (remote control plane), into the tunnel with VLAN id
  ``vid(VR, interface, PUNT)``;
* table 3 (egress): set the interface's MAC as source and output on its physical port,
  or, while the interface's circuit is patched to the VR's other physical router (during a
  migration), into the tunnel with ``vid(VR, interface, EGRESS)``, to leave by that router's
  port; each frame takes exactly one way;
* tunnel ingress: PUNT frames are classified as if they had arrived on the interface's
  physical port; EGRESS frames are output on that port.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .flows import T_EGRESS, T_INGRESS, T_PUNT, T_ROUTE, Flow, Tables
from .translate import MAX_INTERFACES, check_vr_id, reg

VID_PUNT, VID_EGRESS = 0, 1
PRIO_TUNNEL_MINE, PRIO_TUNNEL, PRIO_PORT_MINE, PRIO_PORT = 300, 250, 200, 100


class BindingError(ValueError):
    """A binding cannot be made (no free ports, unknown interface, ...)."""


def vid(vr_id: int, index: int, direction: int) -> int:
    """The tunnel VLAN id of (VR, interface, direction): 64..4031, never 0 or 4095."""
    check_vr_id(vr_id)
    if not 0 <= index < MAX_INTERFACES:
        raise ValueError(f"interface index {index} out of range 0..{MAX_INTERFACES - 1}")
    return (vr_id << 6) | (index << 1) | direction


@dataclass(frozen=True)
class PortBinding:
    """One VR interface bound to a physical router: its physical port and VR port."""

    ifname: str
    index: int  # the interface's number in reg1/reg2 and in tunnel VLAN ids
    mac: str
    phys_port: int  # OpenFlow port of the physical port (its transport circuit)
    vr_port: int | None = None  # OpenFlow port of the VR's namespace interface, if here
    circuit_here: bool = True  # the neighbour's circuit is patched to this router's port


@dataclass(frozen=True)
class TunnelEnd:
    """This bridge's end of the tunnel to the VR's other physical router during a migration."""

    port: int  # OpenFlow port of the tunnel on this bridge
    punt: bool = False  # punts go into the tunnel (the control plane is at the other end)
    accept: bool = True  # frames for this VR are taken out of the tunnel


def binding_flows(vr_id: int, bindings: Iterable[PortBinding],
                  tunnel: TunnelEnd | None = None) -> Tables:
    """Ingress, punt, egress and tunnel flows of one VR on one bridge."""
    v = vr_id
    out: list[Flow] = []
    for b in bindings:
        k, mac, phys = b.index, b.mac.lower(), b.phys_port
        regs_in = (reg(0, v), reg(1, k))
        out.append(Flow(T_INGRESS, PRIO_PORT_MINE, (f"in_port={phys}", f"dl_dst={mac}"),
                        (*regs_in, f"goto_table:{T_ROUTE}")))
        out.append(Flow(T_INGRESS, PRIO_PORT, (f"in_port={phys}",),
                        (*regs_in, f"goto_table:{T_PUNT}")))
        if b.vr_port is not None:
            out.append(Flow(T_INGRESS, PRIO_PORT_MINE, (f"in_port={b.vr_port}",),
                            (reg(0, v), reg(2, k), f"goto_table:{T_EGRESS}")))
        if tunnel is not None and tunnel.punt:
            punt = ("push_vlan:0x8100", f"set_field:{4096 | vid(v, k, VID_PUNT)}->vlan_vid",
                    f"output:{tunnel.port}")
        elif b.vr_port is not None:
            punt = (f"output:{b.vr_port}",)
        else:
            punt = ("drop",)
        out.append(Flow(T_PUNT, PRIO_PORT, (f"reg0={v}", f"reg1={k}"), punt))
        if tunnel is not None and not b.circuit_here:
            to_other = (f"mod_dl_src:{mac}", "push_vlan:0x8100",
                        f"set_field:{4096 | vid(v, k, VID_EGRESS)}->vlan_vid")
            out.append(Flow(T_EGRESS, PRIO_PORT, (f"reg0={v}", f"reg2={k}"),
                            (*to_other, f"output:{tunnel.port}")))
            # a packet that came out of the tunnel (punted at the other router, routed here)
            # goes back into it: OpenFlow drops an output to the in_port without this
            out.append(Flow(T_EGRESS, PRIO_PORT_MINE,
                            (f"reg0={v}", f"reg2={k}", f"in_port={tunnel.port}"),
                            (*to_other, "in_port")))
        else:
            out.append(Flow(T_EGRESS, PRIO_PORT, (f"reg0={v}", f"reg2={k}"),
                            (f"mod_dl_src:{mac}", f"output:{phys}")))
            # back out of the port it came in on: OpenFlow needs the in_port action for that
            out.append(Flow(T_EGRESS, PRIO_PORT_MINE,
                            (f"reg0={v}", f"reg2={k}", f"in_port={phys}"),
                            (f"mod_dl_src:{mac}", "in_port")))
        if tunnel is not None and tunnel.accept:
            t = f"in_port={tunnel.port}"
            pv, ev = vid(v, k, VID_PUNT), vid(v, k, VID_EGRESS)
            out.append(Flow(T_INGRESS, PRIO_TUNNEL_MINE, (t, f"dl_vlan={pv}", f"dl_dst={mac}"),
                            ("pop_vlan", *regs_in, f"goto_table:{T_ROUTE}")))
            out.append(Flow(T_INGRESS, PRIO_TUNNEL, (t, f"dl_vlan={pv}"),
                            ("pop_vlan", *regs_in, f"goto_table:{T_PUNT}")))
            out.append(Flow(T_INGRESS, PRIO_TUNNEL, (t, f"dl_vlan={ev}"),
                            ("pop_vlan", f"output:{phys}")))
    return Tables.of(out)


@dataclass
class PortMap:
    """The physical ports of one physical router and which VR interface each carries.

    `bind` is all-or-nothing: either every interface gets a port or nothing changes."""

    ports: list[int]  # physical port numbers (OpenFlow ports) in preference order
    assigned: dict[int, tuple[str, str]] = field(default_factory=dict)  # port -> (vr, ifname)

    def free(self) -> list[int]:
        return [p for p in self.ports if p not in self.assigned]

    def of(self, vr: str) -> dict[str, int]:
        """{ifname: port} of a VR's interfaces bound here."""
        return {ifn: p for p, (v, ifn) in self.assigned.items() if v == vr}

    def bind(self, vr: str, ifnames: Sequence[str],
             prefer: dict[str, int] | None = None) -> dict[str, int]:
        """Assign a free port to each interface of `vr` (the preferred one when free)."""
        if self.of(vr):
            raise BindingError(f"{vr} is already bound here")
        if len(set(ifnames)) != len(ifnames):
            raise BindingError(f"{vr}: interface names repeat")
        free = self.free()
        if len(free) < len(ifnames):
            raise BindingError(f"needs {len(ifnames)} free ports for {vr}, has {len(free)}")
        out: dict[str, int] = {}
        for ifn in ifnames:
            p = (prefer or {}).get(ifn)
            if p is not None and p in free and p not in out.values():
                out[ifn] = p
        rest = [p for p in free if p not in out.values()]
        for ifn in ifnames:
            if ifn not in out:
                out[ifn] = rest.pop(0)
        for ifn, p in out.items():
            self.assigned[p] = (vr, ifn)
        return out

    def unbind(self, vr: str) -> dict[str, int]:
        """Release every port of `vr`; returns what was bound."""
        mine = self.of(vr)
        for p in mine.values():
            del self.assigned[p]
        return mine
