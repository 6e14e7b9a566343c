"""The programmable transport: L2 circuits between router ports that can be re-patched.

The transport is one OVS bridge (fail mode secure: a port with no circuit delivers nothing).
Every physical-router port and every neighbour's interface is a port of it; a *circuit*
joins two of them with a pair of flows (``in_port=A -> output:B`` and back). `repatch`
moves one end of a circuit to another port in a single atomic bundle, the way VROOM's link
migration reconfigures a layer-2 / optical transport: the neighbour's own veth never loses
carrier, its frames simply reach another physical router from the next one on.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from routerlab.netns import Netns, create_veth, delete_link
from routerlab.ovs import Bridge

from .ofctl import send_bundle

log = logging.getLogger(__name__)

PRIO_CIRCUIT = 100


@dataclass
class Circuit:
    """A bidirectional L2 circuit: `fixed` (the neighbour's side) <-> `moving` (a router port)."""

    name: str
    fixed: int
    moving: int


class Transport:
    """The transport bridge and its circuits."""

    def __init__(self, name: str):
        self.name = name
        self.bridge: Bridge | None = None
        self.ports: dict[str, int] = {}  # ifname -> ofport
        self.circuits: dict[str, Circuit] = {}
        self.repatches: list[dict] = []  # history: circuit, from, to, seconds

    def create(self) -> "Transport":
        self.bridge = Bridge.create(self.name, fail_mode="secure")
        return self

    def add_port(self, ifname: str) -> int:
        assert self.bridge is not None
        p = self.bridge.add_port(ifname)
        self.ports[ifname] = p
        return p

    def attach(self, ns: Netns, ifname: str, root_name: str, *, mac: str | None = None,
               mtu: int | None = None) -> int:
        """A veth from namespace `ns` (interface `ifname`) into the transport; its port."""
        create_veth(root_name, ifname, ns_b=ns, mac_b=mac, mtu=mtu)
        return self.add_port(root_name)

    @staticmethod
    def _flows(a: int, b: int) -> list[str]:
        return [f"flow add table=0,priority={PRIO_CIRCUIT},in_port={a},actions=output:{b}",
                f"flow add table=0,priority={PRIO_CIRCUIT},in_port={b},actions=output:{a}"]

    def patch(self, name: str, fixed: int, moving: int) -> Circuit:
        """Create circuit `name` between two ports."""
        if name in self.circuits:
            raise ValueError(f"circuit {name} exists")
        busy = {p for c in self.circuits.values() for p in (c.fixed, c.moving)}
        if fixed in busy or moving in busy:
            raise ValueError(f"circuit {name}: port already in a circuit")
        send_bundle(self.name, self._flows(fixed, moving))
        c = self.circuits[name] = Circuit(name, fixed, moving)
        return c

    def repatch(self, name: str, new_moving: int) -> float:
        """Move circuit `name`'s router end to port `new_moving` (atomically); seconds."""
        c = self.circuits[name]
        if new_moving == c.moving:
            return 0.0
        busy = {p for x in self.circuits.values() for p in (x.fixed, x.moving)}
        if new_moving in busy:
            raise ValueError(f"circuit {name}: port {new_moving} already in a circuit")
        lines = [f"flow add table=0,priority={PRIO_CIRCUIT},in_port={c.fixed},"
                 f"actions=output:{new_moving}",
                 f"flow add table=0,priority={PRIO_CIRCUIT},in_port={new_moving},"
                 f"actions=output:{c.fixed}",
                 f"flow delete_strict table=0,priority={PRIO_CIRCUIT},in_port={c.moving}"]
        t0 = time.monotonic()
        send_bundle(self.name, lines)
        dt = time.monotonic() - t0
        self.repatches.append({"circuit": name, "from": c.moving, "to": new_moving,
                               "seconds": round(dt, 4)})
        log.info("transport %s: circuit %s re-patched %d -> %d in %.3f s", self.name, name,
                 c.moving, new_moving, dt)
        c.moving = new_moving
        return dt

    def unpatch(self, name: str) -> None:
        c = self.circuits.pop(name)
        send_bundle(self.name, [
            f"flow delete_strict table=0,priority={PRIO_CIRCUIT},in_port={c.fixed}",
            f"flow delete_strict table=0,priority={PRIO_CIRCUIT},in_port={c.moving}"])

    def delete(self) -> None:
        for ifname in list(self.ports):
            delete_link(ifname)
        self.ports.clear()
        if self.bridge is not None:
            self.bridge.delete()
            self.bridge = None
