"""The programmable transport: L2 circuits between router ports that can be re-patched.

The transport is one OVS bridge (fail mode secure: a port with no circuit delivers nothing).
Every physical-router port and every neighbour's interface is a port of it; a *circuit*
joins two of them with a pair of flows (``in_port=A -> output:B`` and back). `repatch`
moves one end of a circuit to another port in a single atomic bundle, the way VROOM's link
migration reconfigures a layer-2 / optical transport: the neighbour's own veth never loses
carrier, its frames simply reach another physical router from the next one on.

Make-before-break: with ``keep_old`` the old router port still reaches the neighbour after
the switch (frames already on their way there are delivered) until `release` removes it.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from routerlab.netns import Netns, create_veth, delete_link
from routerlab.ovs import Bridge, boost_rx_buffers, send_bundle

log = logging.getLogger(__name__)

PRIO_CIRCUIT = 100


@dataclass
class Circuit:
    """A bidirectional L2 circuit between transport ports `a` and `b`."""

    name: str
    a: int
    b: int
    lingering: list[tuple[int, int]] = field(default_factory=list)  # (old port, its peer)

    def peer(self, port: int) -> int:
        if port == self.a:
            return self.b
        if port == self.b:
            return self.a
        raise ValueError(f"circuit {self.name} has no end {port}")


class Transport:
    """The transport bridge and its circuits."""

    def __init__(self, name: str):
        self.name = name
        self.bridge: Bridge | None = None
        self.ports: dict[str, int] = {}  # ifname -> ofport
        self.circuits: dict[str, Circuit] = {}
        self.repatches: list[dict] = []  # history: circuit, from, to, seconds

    def create(self) -> Transport:
        self.bridge = Bridge.create(self.name, fail_mode="secure")
        return self

    def add_port(self, ifname: str) -> int:
        assert self.bridge is not None
        p = self.bridge.add_port(ifname)
        self.ports[ifname] = p
        boost_rx_buffers([ifname])
        return p

    def attach(self, ns: Netns, ifname: str, root_name: str, *, mac: str | None = None,
               mtu: int | None = None) -> int:
        """A veth from namespace `ns` (interface `ifname`) into the transport; its port."""
        create_veth(root_name, ifname, ns_b=ns, mac_b=mac, mtu=mtu)
        return self.add_port(root_name)

    def _busy(self) -> set[int]:
        return {p for c in self.circuits.values()
                for p in (c.a, c.b, *(old for old, _ in c.lingering))}

    @staticmethod
    def _flow(frm: int, to: int) -> str:
        return f"flow add table=0,priority={PRIO_CIRCUIT},in_port={frm},actions=output:{to}"

    @staticmethod
    def _delete(port: int) -> str:
        return f"flow delete_strict table=0,priority={PRIO_CIRCUIT},in_port={port}"

    def patch(self, name: str, a: int, b: int) -> Circuit:
        """Create circuit `name` between two ports."""
        if name in self.circuits:
            raise ValueError(f"circuit {name} exists")
        busy = self._busy()
        if a in busy or b in busy:
            raise ValueError(f"circuit {name}: port already in a circuit")
        send_bundle(self.name, [self._flow(a, b), self._flow(b, a)])
        c = self.circuits[name] = Circuit(name, a, b)
        return c

    def repatch(self, name: str, new: int, *, frm: int | None = None,
                keep_old: bool = False) -> float:
        """Move the end `frm` (default: `b`) of circuit `name` to port `new` (one atomic
        bundle); returns the seconds it took. With `keep_old` the old port keeps reaching
        the other end until `release(name)`."""
        c = self.circuits[name]
        old = c.b if frm is None else frm
        peer = c.peer(old)
        if new == old:
            return 0.0
        if new in self._busy():
            raise ValueError(f"circuit {name}: port {new} already in a circuit")
        lines = [self._flow(peer, new), self._flow(new, peer)]
        if not keep_old:
            lines.append(self._delete(old))
        t0 = time.monotonic()
        send_bundle(self.name, lines)
        dt = time.monotonic() - t0
        self.repatches.append({"circuit": name, "from": old, "to": new, "seconds": round(dt, 4)})
        log.info("transport %s: circuit %s re-patched %d -> %d in %.3f s%s", self.name, name,
                 old, new, dt, " (old port kept)" if keep_old else "")
        if keep_old:
            c.lingering.append((old, peer))
        if old == c.a:
            c.a = new
        else:
            c.b = new
        return dt

    def release(self, name: str) -> None:
        """Stop the old ports of a make-before-break re-patch from reaching the other end."""
        c = self.circuits[name]
        if c.lingering:
            send_bundle(self.name, [self._delete(old) for old, _ in c.lingering])
            c.lingering = []

    def unpatch(self, name: str) -> None:
        c = self.circuits.pop(name)
        send_bundle(self.name, [self._delete(p)
                                for p in (c.a, c.b, *(old for old, _ in c.lingering))])

    def delete(self) -> None:
        for ifname in list(self.ports):
            delete_link(ifname)
        self.ports.clear()
        if self.bridge is not None:
            self.bridge.delete()
            self.bridge = None
