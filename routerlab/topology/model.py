"""The topology data model: the vocabulary (daemons, roles, limits), `TopologyError` and the
resolved `Topology` with its nodes, links, interfaces and BGP sessions."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from routerlab.errors import UserError

# --- vocabulary -------------------------------------------------------------------------

DAEMONS = ("frr", "bird", "gobgp", "exabgp")
OSPF_DAEMONS = frozenset({"frr", "bird"})  # gobgp and exabgp speak BGP only


@dataclass(frozen=True)
class RoleSpec:
    """What a node role may carry; add a role by adding an entry to ROLES."""

    daemons: frozenset[str]  # allowed daemons; empty: the node runs none
    takes_defaults: bool     # daemon/asn fall back to the file's defaults
    needs_asn: bool
    addressed: bool          # its link ends get IP addresses (a switch's do not)


ROLES: dict[str, RoleSpec] = {
    "router": RoleSpec(frozenset({"frr", "bird", "gobgp"}), True, False, True),
    "external": RoleSpec(frozenset(DAEMONS), False, True, True),
    "host": RoleSpec(frozenset(), False, False, True),
    "switch": RoleSpec(frozenset(), False, False, False),
}

MAX_NODE_NAME = 10
MAX_IFNAME = 15  # Linux IFNAMSIZ - 1
DEFAULT_COST = 10


class TopologyError(UserError, ValueError):
    """Bad topology input; ``str()`` is one line ``FILE:LINE: problem`` (no line if unknown)."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        self.source, self.line, self.problem = source, line, problem
        super().__init__(self._format())

    def _format(self) -> str:
        return f"{self.source}:{self.line}: {self.problem}" if self.line else f"{self.source}: {self.problem}"

    def __str__(self) -> str:
        return self._format()

    def __reduce__(self):  # keep it picklable despite the custom __init__
        return (type(self), (self.source, self.line, self.problem))


# --- the data model ---------------------------------------------------------------------

@dataclass
class OspfParams:
    """Topology-wide OSPF settings (seconds; area as an integer)."""

    area: int = 0
    hello: int = 1   # testbed default: fast convergence, as measured on this platform
    dead: int = 4


@dataclass
class BgpParams:
    """Topology-wide BGP timers (seconds)."""

    keepalive: int = 3
    hold: int = 9


@dataclass
class Node:
    """A node, resolved: daemon, asn and addresses are filled in by the loader."""

    name: str
    role: str
    daemon: str | None = None
    asn: int | None = None
    loopback: IPv4Interface | None = None  # /32 on lo; daemon nodes only
    router_id: IPv4Address | None = None
    ospf: bool = False
    originate: list[IPv4Network] = field(default_factory=list)
    gateway: IPv4Address | None = None     # hosts: default route
    subnet: IPv4Network | None = None      # switches: the LAN's subnet
    index: int = 0                         # 1-based among daemon nodes (0: runs no daemon)
    line: int = 0
    params: dict[str, Any] = field(default_factory=dict)
    server: str | None = None              # cluster mode: where it runs (None: placer or localhost)

    @property
    def runs_daemon(self) -> bool:
        return self.daemon is not None


@dataclass
class Endpoint:
    """One end of a link: node, kernel interface name, port number and address."""

    node: str
    intf: str
    port: int
    address: IPv4Interface | None = None


@dataclass
class Link:
    """A link, resolved (costs, area and addresses filled in)."""

    a: Endpoint
    b: Endpoint
    bw: float | None = None     # Mbit/s; None: unshaped
    delay: float | None = None  # ms; None: no added delay
    cost: int = DEFAULT_COST
    area: int = 0
    ospf: bool = True
    index: int = 0
    line: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.a.node}-{self.b.node}"

    @property
    def nodes(self) -> tuple[str, str]:
        return self.a.node, self.b.node

    def end(self, node: str) -> Endpoint:
        """The endpoint on ``node``."""
        if self.a.node == node:
            return self.a
        if self.b.node == node:
            return self.b
        raise KeyError(f"{node} is not on link {self.name}")

    def other(self, node: str) -> Endpoint:
        """The endpoint that is not on ``node``."""
        return self.b if self.end(node) is self.a else self.a


@dataclass(frozen=True)
class Interface:
    """A node's interface as a daemon or the network builder needs it."""

    node: str
    name: str                          # kernel name, e.g. r1-eth0
    port: int
    address: IPv4Interface | None
    peer: str                          # node at the other end (the switch, for a LAN port)
    peer_interface: str
    peer_address: IPv4Interface | None
    link: int                          # index into Topology.links
    cost: int
    bw: float | None
    delay: float | None
    ospf_area: int | None              # None: not in OSPF
    ospf_passive: bool                 # in OSPF but no OSPF neighbour on this segment
    lan: bool                          # the peer is a switch (multi-access); else point-to-point


@dataclass
class BgpPeering:
    """A declared BGP session with both sides' addresses resolved."""

    a: str
    b: str
    ibgp: bool
    a_address: IPv4Address
    b_address: IPv4Address
    a_intf: str | None  # None: loopback session (update-source lo)
    b_intf: str | None
    line: int = 0


@dataclass(frozen=True)
class BgpSession:
    """A BGP session seen from one node: what its daemon's neighbour statement needs."""

    node: str
    peer: str
    local_asn: int
    peer_asn: int
    local_address: IPv4Address
    peer_address: IPv4Address
    ibgp: bool
    interface: str | None  # local interface for link sessions; None: from the loopback
    peer_daemon: str
    keepalive: int
    hold: int

    @property
    def kind(self) -> str:
        return "ibgp" if self.ibgp else "ebgp"


@dataclass
class Topology:
    """A validated topology with its address plan applied. Treat it as read-only."""

    name: str
    source: str                       # file path as given, or e.g. "zoo:Abilene"
    nodes: dict[str, Node]
    links: list[Link]
    ospf: OspfParams = field(default_factory=OspfParams)
    bgp: BgpParams = field(default_factory=BgpParams)
    sessions: list[BgpPeering] = field(default_factory=list)
    description: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    # -- lookups
    def node(self, name: str) -> Node:
        return self.nodes[name]

    def placement(self) -> dict[str, str] | None:
        """{node: server} when the topology places nodes on servers (a node's `server:`
        or a placer in `params`), else None: everything runs on this machine."""
        from routerlab.topology.placement import place

        fixed = {n.name: n.server for n in self.nodes.values() if n.server is not None}
        placer = self.params.get("placer")
        if not fixed and placer is None:
            return None
        return place({n.name: n.role for n in self.nodes.values()},
                     [(ln.a.node, ln.b.node) for ln in self.links], fixed, placer,
                     list(self.params.get("servers") or []))

    def _role(self, role: str) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == role]

    def routers(self) -> list[Node]:
        return self._role("router")

    def hosts(self) -> list[Node]:
        return self._role("host")

    def switches(self) -> list[Node]:
        return self._role("switch")

    def externals(self) -> list[Node]:
        return self._role("external")

    def links_of(self, node: str) -> list[Link]:
        """The node's links in file order (which is also its interface order)."""
        if node not in self.nodes:
            raise KeyError(node)
        return [ln for ln in self.links if node in ln.nodes]

    def link_between(self, a: str, b: str) -> Link:
        for ln in self.links:
            if {a, b} == set(ln.nodes):
                return ln
        raise KeyError(f"no link {a}-{b}")

    def neighbors(self, node: str) -> list[str]:
        return [ln.other(node).node for ln in self.links_of(node)]

    def address_of(self, node: str) -> IPv4Address | None:
        """An address to reach the node at: its loopback, else its first interface address."""
        n = self.nodes[node]
        if n.loopback is not None:
            return n.loopback.ip
        for ln in self.links_of(node):
            address = ln.end(node).address
            if address is not None:
                return address.ip
        return None

    # -- resolved views for daemons and the network builder
    def interfaces(self, node: str) -> list[Interface]:
        """The node's interfaces in port order, with OSPF area/passive resolved."""
        me = self.nodes[node]
        out = []
        for ln in self.links_of(node):
            mine, theirs = ln.end(node), ln.other(node)
            area, passive = None, False
            if me.ospf and ln.ospf:
                area = ln.area
                passive = not any(self._ospf_adjacent(me, peer_link, peer)
                                  for peer_link, peer in self._segment_peers(ln, node))
            out.append(Interface(node=node, name=mine.intf, port=mine.port, address=mine.address,
                                 peer=theirs.node, peer_interface=theirs.intf,
                                 peer_address=theirs.address, link=ln.index, cost=ln.cost,
                                 bw=ln.bw, delay=ln.delay, ospf_area=area, ospf_passive=passive,
                                 lan=self.nodes[theirs.node].role == "switch"))
        return out

    def loopback_area(self, node: str) -> int | None:
        """The OSPF area the node's loopback is advertised in (None: the node runs no OSPF)."""
        n = self.nodes[node]
        return self.ospf.area if n.ospf and n.loopback is not None else None

    def _segment_peers(self, ln: Link, node: str) -> Iterator[tuple[Link, str]]:
        """Nodes sharing the L3 segment of ``node``'s end of ``ln`` (through a switch too)."""
        other = ln.other(node).node
        if self.nodes[other].role != "switch":
            yield ln, other
            return
        for sl in self.links_of(other):
            peer = sl.other(other).node
            if peer != node and self.nodes[peer].role != "switch":
                yield sl, peer

    def _ospf_adjacent(self, me: Node, peer_link: Link, peer: str) -> bool:
        p = self.nodes[peer]
        return p.ospf and peer_link.ospf and p.asn == me.asn

    def bgp_neighbors(self, node: str) -> list[BgpSession]:
        """The node's BGP sessions in declaration order."""
        me = self.nodes[node]
        out = []
        for s in self.sessions:
            if node not in (s.a, s.b):
                continue
            mine_a = s.a == node
            peer = self.nodes[s.b if mine_a else s.a]
            # the validator only accepts sessions between daemon nodes that have an ASN
            assert me.asn is not None and peer.asn is not None and peer.daemon is not None
            out.append(BgpSession(
                node=node, peer=peer.name, local_asn=me.asn, peer_asn=peer.asn,
                local_address=s.a_address if mine_a else s.b_address,
                peer_address=s.b_address if mine_a else s.a_address,
                ibgp=s.ibgp, interface=s.a_intf if mine_a else s.b_intf, peer_daemon=peer.daemon,
                keepalive=self.bgp.keepalive, hold=self.bgp.hold))
        return out

    def bgp_speakers(self) -> list[str]:
        """Nodes with at least one BGP session, in node order."""
        used = {n for s in self.sessions for n in (s.a, s.b)}
        return [n for n in self.nodes if n in used]

    def subnets(self) -> list[tuple[IPv4Network, str]]:
        """Every link/LAN subnet with a label, in link order (each LAN once)."""
        seen: dict[IPv4Network, str] = {}
        for ln in self.links:
            for end in (ln.a, ln.b):
                if end.address is not None and end.address.network not in seen:
                    other = ln.other(end.node).node
                    label = f"LAN of {other}" if self.nodes[other].role == "switch" else f"link {ln.name}"
                    seen[end.address.network] = label
        return list(seen.items())

    def graph(self):
        """A networkx Graph: node attributes role/daemon/asn, edge attributes cost/bw/delay/link."""
        import networkx as nx  # only callers that want graphs pay for the import

        g = nx.Graph(name=self.name)
        for n in self.nodes.values():
            g.add_node(n.name, role=n.role, daemon=n.daemon, asn=n.asn)
        for ln in self.links:
            g.add_edge(ln.a.node, ln.b.node, cost=ln.cost, bw=ln.bw, delay=ln.delay, link=ln.index)
        return g

    def to_dict(self) -> dict[str, Any]:
        """The topology with everything explicit, in the file format (loads back identically)."""
        nodes: dict[str, Any] = {}
        for n in self.nodes.values():
            d: dict[str, Any] = {"role": n.role}
            if n.daemon:
                d["daemon"] = n.daemon
            if n.asn is not None:
                d["asn"] = n.asn
            if n.loopback is not None:
                d["loopback"] = str(n.loopback)
            if n.router_id is not None:
                d["router_id"] = str(n.router_id)
            if n.role == "router":
                d["ospf"] = n.ospf
            if n.originate:
                d["originate"] = [str(p) for p in n.originate]
            if n.subnet is not None:
                d["subnet"] = str(n.subnet)
            if n.params:
                d["params"] = n.params
            if n.server is not None:
                d["server"] = n.server
            nodes[n.name] = d
        links = []
        for ln in self.links:
            d = {"a": ln.a.node, "b": ln.b.node, "a_intf": ln.a.intf, "b_intf": ln.b.intf}
            for side, end in (("a", ln.a), ("b", ln.b)):
                if end.address is not None:
                    d[f"{side}_addr"] = str(end.address)
            for key in ("bw", "delay"):
                if getattr(ln, key) is not None:
                    d[key] = getattr(ln, key)
            d["cost"], d["area"] = ln.cost, ln.area
            if not ln.ospf:
                d["ospf"] = False
            if ln.params:
                d["params"] = ln.params
            links.append(d)
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        out["ospf"] = {"area": self.ospf.area, "hello": self.ospf.hello, "dead": self.ospf.dead}
        out["bgp"] = {"keepalive": self.bgp.keepalive, "hold": self.bgp.hold,
                      "sessions": [{"a": s.a, "b": s.b} for s in self.sessions]}
        out["nodes"], out["links"] = nodes, links
        if self.params:
            out["params"] = self.params
        return out


def dump_topology(topo: Topology) -> str:
    """The resolved topology as YAML text (e.g. to record what an experiment ran on)."""
    return yaml.safe_dump(topo.to_dict(), sort_keys=False, default_flow_style=None, width=120)

