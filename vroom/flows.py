"""OpenFlow entries as values: flows, groups, a diff into one atomic bundle, a simulator, and
which flows of a bridge belong to a VR (`flows_of_vr`).

The data-plane hypervisor computes the *desired* table of a physical router (a `Tables`:
flows keyed by table/priority/match, groups keyed by id) from pure inputs, diffs it against
what it installed last and sends only the difference as one ``ovs-ofctl bundle`` file (groups
first, then flows, then unused groups). Unit tests run the same tables through `simulate`,
a small interpreter of the subset of OpenFlow 1.3 + Nicira actions used here, instead of a
switch.

Table layout on a physical router's bridge (several virtual routers can share one bridge;
``reg0`` holds the VR's id, ``reg1`` the interface a packet came in on, ``reg2`` the egress
interface):

=====  =================================================================================
table  role
=====  =================================================================================
0      ingress: classify by port (physical port, VR port, tunnel + VLAN) and set registers
1      routing: punts (ARP, local addresses, TTL <= 1), LPM flows -> next-hop groups
2      punt: hand the packet to the VR's interface it arrived on (locally or by tunnel)
3      egress: set the interface's source MAC, output (and copy into the tunnel)
=====  =================================================================================
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from routerlab import ovs

T_INGRESS, T_ROUTE, T_PUNT, T_EGRESS = 0, 1, 2, 3


class Flow(NamedTuple):
    """One flow entry: ``match`` is a tuple of ovs-ofctl match terms ("ip", "reg0=1",
    "nw_dst=10.0.0.0/24"), ``actions`` a tuple of action terms. (A named tuple: a routing
    table can hold 250,000 of them.)"""

    table: int
    priority: int
    match: tuple[str, ...]
    actions: tuple[str, ...]

    @property
    def key(self) -> tuple[int, int, tuple[str, ...]]:
        """What identifies the entry in the switch (OpenFlow strict match)."""
        return (self.table, self.priority, self.match)

    def match_text(self) -> str:
        return ",".join((f"table={self.table}", f"priority={self.priority}", *self.match))

    def text(self) -> str:
        """The flow in ``ovs-ofctl add-flow`` syntax."""
        return f"{self.match_text()},actions={','.join(self.actions) or 'drop'}"


@dataclass(frozen=True)
class Bucket:
    actions: tuple[str, ...]
    weight: int = 1


@dataclass(frozen=True)
class Group:
    """A group entry: ``indirect`` (one bucket) or ``select`` (ECMP, weighted buckets)."""

    group_id: int
    type: str
    buckets: tuple[Bucket, ...]

    def text(self) -> str:
        parts = [f"group_id={self.group_id}", f"type={self.type}"]
        for b in self.buckets:
            w = f"weight:{b.weight}," if self.type == "select" else ""
            parts.append(f"bucket={w}actions={','.join(b.actions) or 'drop'}")
        return ",".join(parts)


@dataclass
class Tables:
    """A set of flows and groups (what one VR owns on one bridge, or a whole bridge)."""

    flows: dict[tuple, Flow] = field(default_factory=dict)
    groups: dict[int, Group] = field(default_factory=dict)

    @classmethod
    def of(cls, flows: Iterable[Flow] = (), groups: Iterable[Group] = ()) -> Tables:
        t = cls()
        t.add(flows, groups)
        return t

    def add(self, flows: Iterable[Flow] = (), groups: Iterable[Group] = ()) -> Tables:
        for f in flows:
            old = self.flows.get(f.key)
            if old is not None and old != f:
                raise ValueError(f"two different flows with one match: {old.text()} / {f.text()}")
            self.flows[f.key] = f
        for g in groups:
            self.groups[g.group_id] = g
        return self

    def merged(self, other: Tables) -> Tables:
        return Tables(dict(self.flows), dict(self.groups)).add(other.flows.values(),
                                                               other.groups.values())

    def copy(self) -> Tables:
        return Tables(dict(self.flows), dict(self.groups))

    def __len__(self) -> int:
        return len(self.flows)


def diff_bundle(installed: Tables, desired: Tables) -> list[str]:
    """``ovs-ofctl bundle`` lines that turn `installed` into `desired` (in a safe order:
    new/changed groups, then flows, then deletions of flows and of groups no flow uses)."""
    out: list[str] = []
    for gid, g in desired.groups.items():
        old = installed.groups.get(gid)
        if old is None:
            out.append(f"group add {g.text()}")
        elif old != g:
            out.append(f"group modify {g.text()}")
    for key, f in desired.flows.items():
        if installed.flows.get(key) != f:
            out.append(f"flow add {f.text()}")  # add replaces an entry with the same match
    for key, f in installed.flows.items():
        if key not in desired.flows:
            out.append(f"flow delete_strict {f.match_text()}")
    for gid in installed.groups:
        if gid not in desired.groups:
            out.append(f"group delete group_id={gid}")
    return out


def install_bundle(tables: Tables) -> list[str]:
    """Bundle lines that add everything (a bulk repopulation of an empty share). The flow
    lines are `Flow.text` spelt inline: a million of them take a third of the time."""
    join = ",".join
    return ([f"group add {g.text()}" for g in tables.groups.values()]
            + [f"flow add table={t},priority={p},{join(m)},actions={join(a) or 'drop'}"
               if m else f"flow add {Flow(t, p, m, a).text()}"
               for t, p, m, a in tables.flows.values()])


# --------------------------------------------------------------------------- simulator

@dataclass(frozen=True)
class Packet:
    """The header fields the simulator looks at."""

    in_port: int
    eth_dst: str = "ff:ff:ff:ff:ff:ff"
    eth_src: str = "02:00:00:00:00:99"
    eth_type: str = "ip"  # ip | arp | other
    ip_dst: str | None = None
    ttl: int = 64
    vlan: int | None = None  # VLAN id, None: untagged
    regs: tuple[int, ...] = (0, 0, 0, 0)


@dataclass(frozen=True)
class Output:
    port: int
    packet: Packet


class SimulationError(AssertionError):
    pass


def _match_term(term: str, p: Packet) -> bool:
    if term in ("ip", "arp"):
        return p.eth_type == term
    k, _, v = term.partition("=")
    if k == "in_port":
        return p.in_port == int(v)
    if k.startswith("reg"):
        return p.regs[int(k[3:])] == int(v, 0)
    if k == "dl_dst":
        return p.eth_dst == v.lower()
    if k == "dl_vlan":
        return p.vlan == int(v)
    if k == "vlan_tci" and v == "0x0000/0x1fff":
        return p.vlan is None
    if k == "nw_dst":
        if p.eth_type != "ip" or p.ip_dst is None:
            return False
        return ipaddress.IPv4Address(p.ip_dst) in ipaddress.IPv4Network(v, strict=False)
    if k == "nw_ttl":
        return p.eth_type == "ip" and p.ttl == int(v)
    raise SimulationError(f"simulator does not know match term {term!r}")


_LOAD = re.compile(r"^load:(\w+)->NXM_NX_REG(\d)\[\]$")
_SETF = re.compile(r"^set_field:(\S+)->(\w+)$")


def _reg(p: Packet, i: int, v: int) -> Packet:
    regs = list(p.regs)
    regs[i] = v
    return replace(p, regs=tuple(regs))


def simulate(tables: Tables, packet: Packet, *, select: int = 0, max_depth: int = 16
             ) -> list[Output]:
    """Send `packet` through `tables` from table 0; returns the packets output, in order.

    ``select`` picks the bucket of a select group (index modulo the bucket count), so a test
    can walk every ECMP path. Outputs to the ingress port are dropped, as OpenFlow does
    (use ``in_port`` to send a packet back)."""
    by_table: dict[int, list[Flow]] = {}
    for f in tables.flows.values():
        by_table.setdefault(f.table, []).append(f)
    for fl in by_table.values():
        fl.sort(key=lambda f: -f.priority)
    out: list[Output] = []

    def lookup(table: int, p: Packet) -> Flow | None:
        best = None
        for f in by_table.get(table, []):
            if best is not None and f.priority < best.priority:
                break
            if all(_match_term(t, p) for t in f.match):
                if best is not None and f.priority == best.priority:
                    raise SimulationError(f"ambiguous: {best.text()} / {f.text()}")
                best = f
        return best

    def run_table(table: int, p: Packet, depth: int) -> None:
        if depth > max_depth:
            raise SimulationError("resubmit loop")
        f = lookup(table, p)
        if f is not None:
            run_actions(f.actions, p, depth)

    def run_actions(actions: Sequence[str], p: Packet, depth: int) -> Packet | None:
        for a in actions:
            if a == "drop":
                return None
            if a.startswith("goto_table:"):
                run_table(int(a.split(":")[1]), p, depth + 1)
                return None
            if a.startswith("resubmit(,"):
                run_table(int(a[len("resubmit(,"):-1]), p, depth + 1)
                continue
            m = _LOAD.match(a)
            if m:
                p = _reg(p, int(m.group(2)), int(m.group(1), 0))
                continue
            m = _SETF.match(a)
            if m and m.group(2) == "vlan_vid":
                p = replace(p, vlan=int(m.group(1)) & 0xfff)
                continue
            if a.startswith("mod_dl_src:"):
                p = replace(p, eth_src=a.split(":", 1)[1].lower())
                continue
            if a.startswith("mod_dl_dst:"):
                p = replace(p, eth_dst=a.split(":", 1)[1].lower())
                continue
            if a == "dec_ttl":
                if p.eth_type != "ip" or p.ttl <= 1:
                    return None  # OVS sends invalid-TTL packets to a controller: none here
                p = replace(p, ttl=p.ttl - 1)
                continue
            if a.startswith("push_vlan:"):
                if p.vlan is not None:
                    raise SimulationError("double tagging")
                p = replace(p, vlan=0)
                continue
            if a == "pop_vlan":
                p = replace(p, vlan=None)
                continue
            if a.startswith("output:"):
                target = a.split(":", 1)[1]
                m = re.match(r"^NXM_NX_REG(\d)\[\]$", target)
                port = p.regs[int(m.group(1))] if m else int(target)
                if port != p.in_port:
                    out.append(Output(port, p))
                continue
            if a == "in_port":
                out.append(Output(p.in_port, p))
                continue
            if a.startswith("group:"):
                g = tables.groups.get(int(a.split(":")[1]))
                if g is None:
                    raise SimulationError(f"flow refers to missing group {a}")
                if not g.buckets:
                    return None
                b = g.buckets[select % len(g.buckets)] if g.type == "select" else g.buckets[0]
                run_actions(b.actions, p, depth + 1)
                continue
            raise SimulationError(f"simulator does not know action {a!r}")
        return p

    run_table(0, packet, 0)
    return out


# --------------------------------------------------------------------------- on a bridge

def flows_of_vr(bridge: str, vr_id: int, ports: Iterable[int] = ()) -> list[ovs.Flow]:
    """The flows on `bridge` that belong to VR `vr_id` (its ``reg0``, its ports, or a flow
    that loads its id into ``reg0``): used to check that none is left after a move."""
    ports = {int(p) for p in ports}
    mine = []
    for f in ovs.dump_flows(bridge):
        terms = f.match.split(",")
        by_reg = f"reg0={hex(vr_id)}" in terms or f"reg0={vr_id}" in terms
        by_port = any(t.startswith("in_port=") and t[8:].isdigit() and int(t[8:]) in ports
                      for t in terms)
        if by_reg or by_port or f"load:{hex(vr_id)}->NXM_NX_REG0[]" in f.actions:
            mine.append(f)
    return mine
