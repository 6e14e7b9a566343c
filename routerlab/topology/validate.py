"""Topologies: the YAML format, its validator, the address plan and the loaders.

A topology file (``topologies/NAME.yaml``; IPv4 only) looks like this::

    name: example                   # optional; default: the file name
    description: one line for listings
    defaults: {daemon: frr, asn: 65000, bw: 10, delay: 0, cost: 10}
    ospf: {area: 0, hello: 1, dead: 4}   # present (or `ospf: true`): frr/bird routers run OSPF
    bgp:                            # timers default to 3/9 s, OSPF to hello 1 / dead 4 s
      keepalive: 3
      hold: 9
      sessions:
        - {a: r1, b: ext}           # or the short form [r1, ext]
    nodes:
      r1: {}                        # role defaults to router; daemon and asn from defaults
      r2: {daemon: bird, loopback: 10.255.9.2}
      ext: {role: external, daemon: exabgp, asn: 65100, originate: [10.200.0.0/24]}
      h1: {role: host}
    links:
      - {a: r1, b: r2, bw: 10, delay: 2, cost: 10}
      - {a: r1, b: ext, a_addr: 10.9.0.1/30}     # the other end gets 10.9.0.2/30
      - {a: r1, b: h1, a_intf: r1-lan}

Nodes (a mapping: names are unique by construction, a repeated name is an error):
  ``role``      router (default; runs frr, bird or gobgp), external (an external AS's BGP
                speaker: frr, bird, gobgp or exabgp; needs ``daemon`` and ``asn`` itself),
                host (plain end host for traffic), switch (an OVS switch: one L2 LAN).
  ``daemon``    frr | bird | gobgp | exabgp (routers take ``defaults.daemon``).
  ``asn``       1..4294967294, not 23456 or 65535 (routers take ``defaults.asn``).
  ``loopback``  /32 on ``lo``; ``router_id`` defaults to the loopback address.
  ``ospf``      true/false; default true for frr/bird routers when an ``ospf:`` section exists.
  ``originate`` prefixes the node's daemon announces (not checked against the address plan:
                an aggregate of the node's own subnets is legitimate).
  ``subnet``    switches only: the LAN's subnet.
  ``params``    free-form mapping for experiments (not validated).
  Node names are at most 10 characters of ``[A-Za-z0-9_]`` starting with a letter: they
  become interface names such as ``NAME-eth0`` and Linux caps those at 15 characters.

Links: ``a``, ``b`` (required), ``bw`` (Mbit/s, > 0), ``delay`` (ms, >= 0), ``cost`` (OSPF
cost 1..65535, default 10), ``area`` (OSPF area, default ``ospf.area``), ``ospf`` (false keeps
the link out of OSPF), ``a_addr``/``b_addr`` (``A.B.C.D/LEN``), ``a_intf``/``b_intf``
(interface names, default ``NODE-ethN`` with N counting the node's links in file order from
0, from 1 on switches as in Mininet), ``params``. At most one link per pair of nodes.

BGP sessions join two nodes that have an ``asn``. Different ASNs: eBGP over their shared link
(a direct link or one switch LAN; multihop eBGP is not supported). Same ASN: iBGP between
loopbacks when both run OSPF, else over a shared link.

Address plan (deterministic; addresses given in the file are kept and never handed out
again; every subnet and loopback is checked for overlaps):
  loopbacks     10.255.0.N/32 for the N-th node that runs a daemon (file order)
  links         /30s from 10.0.0.0/16 in link order (router-router, router-external, ...)
  LANs          a router-host link, or a switch with everything attached to it, gets a /24:
                10.1.N.0/24 for the first LAN of daemon node N, otherwise the next free /24
                of 10.2.0.0/16; routers take the lowest addresses (the first is the hosts'
                gateway), then hosts in link order
  switch-switch links carry no addresses.

Every problem is a :class:`TopologyError` whose ``str()`` is one line ``FILE:LINE: problem``.
"""
from __future__ import annotations

import difflib
import itertools
import logging
import math
import os
import re
import unicodedata
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path
from typing import Any, Iterable, Iterator, NoReturn

import yaml

from routerlab.errors import UserError

log = logging.getLogger(__name__)

__all__ = [
    "TopologyError", "Topology", "Node", "Link", "Endpoint", "Interface", "BgpPeering",
    "BgpSession", "OspfParams", "BgpParams", "RoleSpec", "ROLES", "DAEMONS",
    "load_topology", "parse_topology", "topology_from_dict", "import_topohub", "find_topology",
    "list_topologies", "list_topohub", "topology_dirs", "dump_topology",
]

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
P2P_POOL, P2P_PREFIX = IPv4Network("10.0.0.0/16"), 30
LAN_POOL, EXTRA_LAN_POOL, LAN_PREFIX = IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 24
LOOPBACK_POOL = IPv4Network("10.255.0.0/16")
# Interface addresses stay private: they live in namespaces and must never look routable.
PRIVATE_NETS = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))

_NODE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_TOPO_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

_TOP_KEYS = ("name", "description", "defaults", "ospf", "bgp", "nodes", "links", "params")
_DEFAULT_KEYS = ("daemon", "asn", "bw", "delay", "cost")
_OSPF_KEYS = ("area", "hello", "dead")
_BGP_KEYS = ("keepalive", "hold", "sessions")
_NODE_KEYS = ("role", "daemon", "asn", "loopback", "router_id", "ospf", "originate", "subnet", "params")
_LINK_KEYS = ("a", "b", "bw", "delay", "cost", "area", "ospf", "a_addr", "b_addr", "a_intf", "b_intf",
              "params")
# Words people reach for that are spelled differently here.
_ALIASES = {"bandwidth": "bw", "latency": "delay", "weight": "cost", "metric": "cost", "as": "asn",
            "type": "role", "kind": "role", "routerid": "router_id", "lo": "loopback",
            "neighbors": "sessions", "neighbours": "sessions", "peers": "sessions",
            "src": "a", "dst": "b", "source": "a", "target": "b", "prefixes": "originate",
            "announce": "originate", "networks": "originate", "hello_interval": "hello",
            "dead_interval": "dead", "hold_time": "hold"}


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
            if ln.end(node).address is not None:
                return ln.end(node).address.ip
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
            out.append(BgpSession(
                node=node, peer=peer.name, local_asn=me.asn, peer_asn=peer.asn,  # type: ignore[arg-type]
                local_address=s.a_address if mine_a else s.b_address,
                peer_address=s.b_address if mine_a else s.a_address,
                ibgp=s.ibgp, interface=s.a_intf if mine_a else s.b_intf, peer_daemon=peer.daemon,  # type: ignore[arg-type]
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


# --- YAML with line numbers -------------------------------------------------------------

class _Map(dict):
    """A YAML mapping that remembers its line, each key's line and repeated keys."""

    def __init__(self) -> None:
        super().__init__()
        self.line = 0
        self.key_lines: dict[Any, int] = {}
        self.dups: list[tuple[Any, int, int]] = []  # (key, line, first line)


class _Seq(list):
    """A YAML sequence that remembers its line and each item's line."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        super().__init__(items)
        self.line = 0
        self.item_lines: list[int] = []


class _KeyProblem(Exception):
    def __init__(self, line: int, problem: str) -> None:
        super().__init__(problem)
        self.line, self.problem = line, problem


class _LineLoader(yaml.SafeLoader):
    """SafeLoader whose mappings and sequences carry line numbers (1-based)."""


def _construct_map(loader: _LineLoader, node: yaml.MappingNode) -> _Map:
    explicit = sum(1 for k, _ in node.value if k.tag != "tag:yaml.org,2002:merge")
    loader.flatten_mapping(node)
    merged = len(node.value) - explicit  # keys from `<<:` come first and may be overridden
    m = _Map()
    m.line = node.start_mark.line + 1
    for i, (knode, vnode) in enumerate(node.value):
        key = loader.construct_object(knode, deep=True)
        kline = knode.start_mark.line + 1
        try:
            hash(key)
        except TypeError:
            raise _KeyProblem(kline, "a mapping key must be a plain value") from None
        if key in m and i >= merged and m.key_lines[key] > 0:
            m.dups.append((key, kline, m.key_lines[key]))
        m[key] = loader.construct_object(vnode, deep=True)
        # merged keys get a negative line so an explicit override is not a duplicate
        m.key_lines[key] = kline if i >= merged else -kline
    m.key_lines = {k: abs(v) for k, v in m.key_lines.items()}
    return m


def _construct_seq(loader: _LineLoader, node: yaml.SequenceNode) -> _Seq:
    s = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    s.line = node.start_mark.line + 1
    s.item_lines = [child.start_mark.line + 1 for child in node.value]
    return s


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_seq)


def _line(obj: Any, key: Any = None) -> int:
    """Line of ``key`` in mapping ``obj`` (or of ``obj`` itself); 0 when unknown."""
    if key is not None:
        lines = getattr(obj, "key_lines", None)
        if lines and key in lines:
            return lines[key]
    return getattr(obj, "line", 0)


def _item_line(seq: Any, i: int) -> int:
    lines = getattr(seq, "item_lines", None)
    return lines[i] if lines and i < len(lines) else getattr(seq, "line", 0)


def _plain(obj: Any) -> Any:
    """Free-form data (``params``) as plain dicts and lists."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_plain(v) for v in obj]
    return obj


def _suggest(word: Any, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    choices = list(choices)
    alias = _ALIASES.get(word.lower())
    if alias in choices:
        return f" (did you mean {alias!r}?)"
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def parse_topology(text: str, source: str = "<string>", *, default_name: str = "topology") -> Topology:
    """Parse and validate YAML topology text; errors name ``source`` and the line."""
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # noqa: S506 - a SafeLoader subclass
    except _KeyProblem as e:
        raise TopologyError(source, e.line, e.problem) from None
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        what = _one_line(e.problem or "malformed YAML")
        if e.context:
            where = ""
            if e.context_mark and mark and e.context_mark.line != mark.line:
                where = f" started at line {e.context_mark.line + 1}"  # e.g. the unclosed '{'
            what += f" ({_one_line(e.context)}{where})"
        raise TopologyError(source, mark.line + 1 if mark else None, f"YAML syntax error: {what}") from None
    except yaml.YAMLError as e:
        raise TopologyError(source, None, f"YAML error: {_one_line(str(e))}") from None
    return _Builder(source).build(raw, default_name)


def topology_from_dict(data: dict[str, Any], source: str = "<dict>") -> Topology:
    """Validate a topology given as Python data in the file format (no line numbers)."""
    return _Builder(source).build(data, str(data.get("name", "topology")) if isinstance(data, dict) else "topology")


# --- the validator and address plan -----------------------------------------------------

@dataclass
class _Defaults:
    """The file's ``defaults:`` section, validated."""

    daemon: str | None = None
    asn: int | None = None
    bw: float | None = None
    delay: float | None = None
    cost: int = DEFAULT_COST
    lines: dict[str, int] = field(default_factory=dict)


@dataclass
class _End:
    node: str
    intf: str | None = None
    addr: IPv4Interface | None = None
    addr_line: int = 0
    port: int = 0


@dataclass
class _LinkSpec:
    index: int
    line: int
    label: str
    ends: tuple[_End, _End]
    bw: float | None
    delay: float | None
    cost: int
    area: int
    ospf: bool
    params: dict[str, Any]


@dataclass
class _Segment:
    """An IP subnet: a point-to-point link, a router-host LAN or a switch's LAN."""

    kind: str                                  # "p2p" or "lan"
    label: str
    line: int
    members: list[tuple[_LinkSpec, int]] = field(default_factory=list)  # (link, end index)
    network: IPv4Network | None = None
    net_line: int = 0
    switch: str | None = None


class _Builder:
    """Turns parsed YAML (or plain data) into a validated Topology; fails at the first problem."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, line: int | None, problem: str) -> NoReturn:
        raise TopologyError(self.source, line or None, problem)

    # -- small validators
    def keys(self, m: dict, allowed: Iterable[str], where: str, required: Iterable[str] = ()) -> None:
        allowed = tuple(allowed)
        for key in m:
            if key not in allowed:
                self.fail(_line(m, key), f"{where}unknown key {key!r}{_suggest(key, allowed)}")
        for key in required:
            if key not in m:
                self.fail(_line(m), f"{where}missing required key {key!r}")

    def mapping(self, v: Any, line: int, what: str, *, optional: bool = True) -> dict:
        if v is None and optional:
            return {}
        if not isinstance(v, dict):
            self.fail(line, f"{what} must be a mapping (key: value), got {_kind(v)}")
        return v

    def number(self, v: Any, line: int, what: str, unit: str, *, zero_ok: bool) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(line, f"{what} must be a number ({unit}), got {v!r}")
        if v < 0 or (v == 0 and not zero_ok):
            self.fail(line, f"{what} must be {'a non-negative' if zero_ok else 'a positive'} number ({unit}), got {v!r}")
        return v

    def integer(self, v: Any, line: int, what: str, lo: int, hi: int) -> int:
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            self.fail(line, f"{what} must be an integer from {lo} to {hi}, got {v!r}")
        return v

    def boolean(self, v: Any, line: int, what: str) -> bool:
        if not isinstance(v, bool):
            self.fail(line, f"{what} must be true or false, got {v!r}")
        return v

    def asn(self, v: Any, line: int, what: str) -> int:
        n = self.integer(v, line, what, 1, 4294967294)
        if n in (23456, 65535):
            self.fail(line, f"{what} {n} is reserved (AS_TRANS or last 16-bit AS); pick another")
        return n

    def area(self, v: Any, line: int, what: str) -> int:
        if isinstance(v, str):
            try:
                return int(IPv4Address(v))
            except ValueError:
                self.fail(line, f"{what} must be an integer or dotted quad, got {v!r}")
        return self.integer(v, line, what, 0, 2**32 - 1)

    def daemon(self, v: Any, line: int, what: str) -> str:
        if v not in DAEMONS:
            self.fail(line, f"{what}unknown daemon {v!r}{_suggest(v, DAEMONS)}; daemons: {', '.join(DAEMONS)}")
        return v

    def iface_addr(self, v: Any, line: int, what: str) -> IPv4Interface:
        if not isinstance(v, str) or "/" not in v:
            self.fail(line, f"{what} must look like 10.0.0.1/30, got {v!r}")
        try:
            addr = IPv4Interface(v)
        except ValueError:
            self.fail(line, f"{what} {v!r} is not a valid IPv4 address/prefix length")
        if addr.network.prefixlen > 31:
            self.fail(line, f"{what} {v} needs a prefix length below 32 (it is shared with a neighbour)")
        if addr.network.prefixlen < 31 and addr.ip in (addr.network.network_address, addr.network.broadcast_address):
            self.fail(line, f"{what} {v} is the network or broadcast address of {addr.network}")
        self.private(addr.ip, line, what)
        return addr

    def private(self, ip: IPv4Address, line: int, what: str) -> None:
        if not any(ip in net for net in PRIVATE_NETS):
            self.fail(line, f"{what} {ip} is not a private (RFC 1918) address; addresses stay inside namespaces")

    def network(self, v: Any, line: int, what: str) -> IPv4Network:
        if not isinstance(v, str) or "/" not in v:
            self.fail(line, f"{what} must look like 10.100.0.0/24, got {v!r}")
        try:
            return IPv4Network(v)
        except ValueError:
            try:
                fixed = IPv4Network(v, strict=False)
            except ValueError:
                self.fail(line, f"{what} {v!r} is not a valid IPv4 prefix")
            self.fail(line, f"{what} {v} has host bits set (did you mean {fixed}?)")

    # -- the whole document
    def build(self, raw: Any, default_name: str) -> Topology:
        if raw is None:
            self.fail(1, "empty topology file")
        top = self.mapping(raw, _line(raw) or 1, "a topology file", optional=False)
        self.duplicates(top)
        self.keys(top, _TOP_KEYS, "", required=("nodes",))

        # a file name may hold characters a topology name may not (results go in NAME dirs)
        name = top.get("name", re.sub(r"[^A-Za-z0-9_.-]", "-", default_name).lstrip("-_.") or "topology")
        if not isinstance(name, str) or not _TOPO_NAME_RE.match(name):
            self.fail(_line(top, "name"), f"name must be letters, digits, '_', '.', '-', got {name!r}")
        desc = top.get("description", "")
        if desc is None:
            desc = ""
        if not isinstance(desc, str):
            self.fail(_line(top, "description"), f"description must be text, got {_kind(desc)}")

        defaults = self.defaults(top.get("defaults"), _line(top, "defaults"))
        ospf_raw = top.get("ospf")
        ospf_section = "ospf" in top and ospf_raw is not False  # `ospf: true` means all defaults
        ospf = self.ospf_params(None if isinstance(ospf_raw, bool) else ospf_raw, _line(top, "ospf"))
        bgp_raw = self.mapping(top.get("bgp"), _line(top, "bgp"), "bgp")
        self.keys(bgp_raw, _BGP_KEYS, "bgp: ")
        bgp = self.bgp_params(bgp_raw)

        nodes_raw = self.mapping(top["nodes"], _line(top, "nodes"), "nodes", optional=False)
        if not nodes_raw:
            self.fail(_line(top, "nodes"), "nodes: a topology needs at least one node")
        nodes: dict[str, Node] = {}
        for name_, spec in nodes_raw.items():
            nodes[name_] = self.node(name_, spec, _line(nodes_raw, name_), defaults, ospf_section)
        for i, n in enumerate((n for n in nodes.values() if n.runs_daemon), start=1):
            n.index = i

        links = self.links(top.get("links"), _line(top, "links"), nodes, defaults, ospf)
        self.interface_names(links, nodes)
        segments = self.address_plan(nodes, links)
        sessions = self.sessions(bgp_raw.get("sessions"), _line(bgp_raw, "sessions"), nodes, links, segments)

        topo_links = [Link(a=Endpoint(ls.ends[0].node, ls.ends[0].intf, ls.ends[0].port, ls.ends[0].addr),  # type: ignore[arg-type]
                           b=Endpoint(ls.ends[1].node, ls.ends[1].intf, ls.ends[1].port, ls.ends[1].addr),  # type: ignore[arg-type]
                           bw=ls.bw, delay=ls.delay, cost=ls.cost, area=ls.area, ospf=ls.ospf,
                           index=ls.index, line=ls.line, params=ls.params) for ls in links]
        params = self.mapping(top.get("params"), _line(top, "params"), "params")
        topo = Topology(name=name, source=self.source, nodes=nodes, links=topo_links, ospf=ospf, bgp=bgp,
                        sessions=sessions, description=desc, params=_plain(params))
        log.debug("topology %s from %s: %d nodes, %d links, %d BGP sessions", name, self.source,
                  len(nodes), len(topo_links), len(sessions))
        return topo

    def duplicates(self, top: dict) -> None:
        """Refuse repeated mapping keys (PyYAML would silently keep the last one)."""
        nodes = top.get("nodes")
        if isinstance(nodes, _Map) and nodes.dups:
            key, line, first = nodes.dups[0]
            self.fail(line, f"duplicate node name {key!r} (first defined at line {first})")
        found: list[tuple[int, str]] = []

        def walk(obj: Any) -> None:
            if isinstance(obj, _Map):
                found.extend((line, f"duplicate key {key!r} (first at line {first})")
                             for key, line, first in obj.dups)
                for v in obj.values():
                    walk(v)
            elif isinstance(obj, list):
                for v in obj:
                    walk(v)
        walk(top)
        if found:
            self.fail(*min(found))

    def ospf_params(self, raw: Any, line: int) -> OspfParams:
        m = self.mapping(raw, line, "ospf")
        self.keys(m, _OSPF_KEYS, "ospf: ")
        p = OspfParams()
        if "area" in m:
            p.area = self.area(m["area"], _line(m, "area"), "ospf: area")
        if "hello" in m:
            p.hello = self.integer(m["hello"], _line(m, "hello"), "ospf: hello (s)", 1, 65535)
        if "dead" in m:
            p.dead = self.integer(m["dead"], _line(m, "dead"), "ospf: dead (s)", 1, 65535)
        elif "hello" in m:
            p.dead = 4 * p.hello  # the protocol's usual ratio
        if p.dead <= p.hello:
            self.fail(_line(m, "dead") or line, f"ospf: dead ({p.dead}) must be longer than hello ({p.hello})")
        return p

    def bgp_params(self, m: dict) -> BgpParams:
        p = BgpParams()
        if "keepalive" in m:
            p.keepalive = self.integer(m["keepalive"], _line(m, "keepalive"), "bgp: keepalive (s)", 1, 21845)
        if "hold" in m:
            p.hold = self.integer(m["hold"], _line(m, "hold"), "bgp: hold (s)", 0, 65535)
            if 0 < p.hold < 3:
                self.fail(_line(m, "hold"), f"bgp: hold must be 0 or at least 3 s, got {p.hold}")
        elif "keepalive" in m:
            p.hold = 3 * p.keepalive
        if p.hold and p.keepalive >= p.hold:
            self.fail(_line(m, "keepalive") or _line(m), f"bgp: keepalive ({p.keepalive}) must be shorter than hold ({p.hold})")
        return p

    def node(self, name: Any, spec: Any, line: int, defaults: _Defaults, ospf_section: bool) -> Node:
        if not isinstance(name, str):
            self.fail(line, f"node name {name!r} must be a string (YAML reads yes/no/on/off as booleans "
                            "and digits as numbers: quote the name)")
        if not _NODE_NAME_RE.match(name):
            self.fail(line, f"node name {name!r}: use letters, digits and '_' only, starting with a letter "
                            "(node names become interface names)")
        if len(name) > MAX_NODE_NAME:
            self.fail(line, f"node name {name!r} is longer than {MAX_NODE_NAME} characters "
                            f"(it becomes interface names like {name}-eth0, at most {MAX_IFNAME} characters)")
        where = f"node {name}: "
        m = self.mapping(spec, line, f"node {name}")
        self.keys(m, _NODE_KEYS, where)
        kl = lambda key: _line(m, key) or line  # noqa: E731 - line of a key, else the node's

        role = m.get("role", "router")
        if not isinstance(role, str) or role not in ROLES:
            self.fail(kl("role"), f"{where}unknown role {role!r}{_suggest(role, ROLES)}; roles: {', '.join(ROLES)}")
        rs = ROLES[role]
        node = Node(name=name, role=role, line=line, params=_plain(self.mapping(m.get("params"), kl("params"), f"{where}params")))

        if "daemon" in m:
            daemon = self.daemon(m["daemon"], kl("daemon"), where)
        elif rs.takes_defaults and defaults.daemon is not None:
            daemon = defaults.daemon
        else:
            daemon = None
        if not rs.daemons:
            if daemon is not None and "daemon" in m:
                self.fail(kl("daemon"), f"{where}{_a(role)} runs no daemon")
            daemon = None
        elif daemon is None:
            self.fail(line, f"{where}{_a(role)} needs a daemon ({', '.join(sorted(rs.daemons))})"
                            + ("; set daemon here or in defaults" if rs.takes_defaults else ""))
        elif daemon not in rs.daemons:
            hint = "; use role: external for an external BGP speaker" if daemon == "exabgp" else ""
            self.fail(kl("daemon") if "daemon" in m else defaults.lines.get("daemon", line),
                      f"{where}daemon {daemon!r} cannot run {_a(role)}{hint}")
        node.daemon = daemon

        for key in ("asn", "loopback", "router_id", "originate"):
            if key in m and daemon is None:
                self.fail(kl(key), f"{where}{key} needs a node that runs a routing daemon (this is {_a(role)})")
        if "asn" in m:
            node.asn = self.asn(m["asn"], kl("asn"), f"{where}asn")
        elif rs.takes_defaults and daemon is not None:
            node.asn = defaults.asn
        if rs.needs_asn and node.asn is None:
            self.fail(line, f"{where}{_a(role)} node needs an asn")
        if "loopback" in m:
            v = m["loopback"]
            try:
                if not isinstance(v, str):  # IPv4Address() would take an integer
                    raise ValueError(v)
                ip = IPv4Address(v[:-3] if v.endswith("/32") else v)
            except ValueError:
                self.fail(kl("loopback"), f"{where}loopback must be an IPv4 address such as 10.255.0.9, got {v!r}")
            self.private(ip, kl("loopback"), f"{where}loopback")
            node.loopback = IPv4Interface(f"{ip}/32")
        if "router_id" in m:
            try:
                if not isinstance(m["router_id"], str):
                    raise ValueError(m["router_id"])
                node.router_id = IPv4Address(m["router_id"])
            except ValueError:
                self.fail(kl("router_id"), f"{where}router_id must be a dotted quad, got {m['router_id']!r}")
            if int(node.router_id) == 0:
                self.fail(kl("router_id"), f"{where}router_id 0.0.0.0 is not allowed")
        if "originate" in m:
            prefixes = m["originate"]
            if isinstance(prefixes, str):
                prefixes = [prefixes]
            if not isinstance(prefixes, list):
                self.fail(kl("originate"), f"{where}originate must be a list of prefixes, got {_kind(prefixes)}")
            for i, p in enumerate(prefixes):
                net = self.network(p, _item_line(prefixes, i) or kl("originate"), f"{where}originate")
                if net in node.originate:
                    self.fail(_item_line(prefixes, i) or kl("originate"), f"{where}originate lists {net} twice")
                node.originate.append(net)
        if "subnet" in m:
            if role != "switch":
                self.fail(kl("subnet"), f"{where}subnet is for switches (a LAN); give link addresses instead")
            node.subnet = self.network(m["subnet"], kl("subnet"), f"{where}subnet")
            if node.subnet.prefixlen > 30:
                self.fail(kl("subnet"), f"{where}subnet {node.subnet} is too small for a LAN")
            self.private(node.subnet.network_address, kl("subnet"), f"{where}subnet")

        ospf_capable = role == "router" and daemon in OSPF_DAEMONS
        if "ospf" in m:
            node.ospf = self.boolean(m["ospf"], kl("ospf"), f"{where}ospf")
            if node.ospf and not ospf_capable:
                why = f"{daemon} does not speak OSPF" if role == "router" else f"{_a(role)} does not run OSPF"
                self.fail(kl("ospf"), f"{where}{why}")
        else:
            node.ospf = ospf_section and ospf_capable
        return node

    def defaults(self, raw: Any, line: int) -> _Defaults:
        m = self.mapping(raw, line, "defaults")
        self.keys(m, _DEFAULT_KEYS, "defaults: ")
        d = _Defaults(lines={k: _line(m, k) for k in m})
        if "daemon" in m:
            d.daemon = self.daemon(m["daemon"], _line(m, "daemon"), "defaults: ")
            if d.daemon not in ROLES["router"].daemons:
                self.fail(_line(m, "daemon"), f"defaults: daemon {d.daemon!r} cannot run a router "
                                              "(the default daemon is for routers)")
        if "asn" in m:
            d.asn = self.asn(m["asn"], _line(m, "asn"), "defaults: asn")
        if "bw" in m:
            d.bw = self.number(m["bw"], _line(m, "bw"), "defaults: bw", "Mbit/s", zero_ok=False)
        if "delay" in m:
            d.delay = self.number(m["delay"], _line(m, "delay"), "defaults: delay", "ms", zero_ok=True)
        if "cost" in m:
            d.cost = self.integer(m["cost"], _line(m, "cost"), "defaults: cost", 1, 65535)
        return d

    def links(self, raw: Any, line: int, nodes: dict[str, Node], defaults: _Defaults, ospf: OspfParams) -> list[_LinkSpec]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.fail(line, f"links must be a list, got {_kind(raw)}")
        d_bw, d_delay, d_cost = defaults.bw, defaults.delay, defaults.cost
        out: list[_LinkSpec] = []
        seen: dict[frozenset[str], _LinkSpec] = {}
        for i, item in enumerate(raw):
            iline = _item_line(raw, i)
            m = self.mapping(item, iline, f"link #{i + 1}", optional=False)
            iline = iline or _line(m)
            kl = lambda key: _line(m, key) or iline  # noqa: E731, B023 - used within this iteration only
            self.keys(m, _LINK_KEYS, f"link #{i + 1}: ", required=("a", "b"))
            a, b = m["a"], m["b"]
            label = f"{a}-{b}"
            where = f"link {label}: "
            for key, n in (("a", a), ("b", b)):
                if not isinstance(n, str):
                    self.fail(kl(key), f"{where}{key} must be a node name, got {n!r} (quote it in YAML)")
                if n not in nodes:
                    self.fail(kl(key), f"{where}unknown node {n!r}{_suggest(n, nodes)}")
            if a == b:
                self.fail(iline, f"{where}a link cannot connect a node to itself")
            pair = frozenset((a, b))
            if pair in seen:
                self.fail(iline, f"{where}duplicate link (first at line {seen[pair].line}); "
                                 "only one link per pair of nodes")
            ends = (_End(a), _End(b))
            for side, end in (("a", ends[0]), ("b", ends[1])):
                if f"{side}_intf" in m:
                    name = m[f"{side}_intf"]
                    if not isinstance(name, str) or not _IFNAME_RE.match(name) or name == "lo":
                        self.fail(kl(f"{side}_intf"), f"{where}{side}_intf must be an interface name "
                                                      f"([A-Za-z0-9_.-], not 'lo'), got {name!r}")
                    end.intf = name
                if f"{side}_addr" in m:
                    end.addr_line = kl(f"{side}_addr")
                    if not ROLES[nodes[end.node].role].addressed:
                        self.fail(end.addr_line, f"{where}{end.node} is {_a(nodes[end.node].role)}: its ports have no address")
                    end.addr = self.iface_addr(m[f"{side}_addr"], end.addr_line, f"{where}{side}_addr")
            spec = _LinkSpec(
                index=i, line=iline, label=label, ends=ends,
                bw=self.number(m["bw"], kl("bw"), f"{where}bw", "Mbit/s", zero_ok=False) if "bw" in m else d_bw,
                delay=self.number(m["delay"], kl("delay"), f"{where}delay", "ms", zero_ok=True) if "delay" in m else d_delay,
                cost=self.integer(m["cost"], kl("cost"), f"{where}cost", 1, 65535) if "cost" in m else d_cost,
                area=self.area(m["area"], kl("area"), f"{where}area") if "area" in m else ospf.area,
                ospf=self.boolean(m["ospf"], kl("ospf"), f"{where}ospf") if "ospf" in m else True,
                params=_plain(self.mapping(m.get("params"), kl("params"), f"{where}params")))
            seen[pair] = spec
            out.append(spec)
        return out

    def interface_names(self, links: list[_LinkSpec], nodes: dict[str, Node]) -> None:
        """Ports count each node's links in file order; names default to NODE-ethPORT."""
        ports = {n: (1 if node.role == "switch" else 0) for n, node in nodes.items()}
        used: dict[str, _LinkSpec] = {}
        for ls in links:
            for side, end in zip("ab", ls.ends):
                end.port = ports[end.node]
                ports[end.node] += 1
                if end.intf is None:
                    end.intf = f"{end.node}-eth{end.port}"
                if len(end.intf) > MAX_IFNAME:
                    self.fail(ls.line, f"link {ls.label}: interface name {end.intf!r} is longer than {MAX_IFNAME} "
                                       f"characters; shorten the node name or set {side}_intf")
                # names must be unique topology-wide: veths are created in the root namespace first
                if end.intf in used:
                    self.fail(ls.line, f"link {ls.label}: interface name {end.intf!r} is already used "
                                       f"by link {used[end.intf].label} (line {used[end.intf].line})")
                used[end.intf] = ls

    def address_plan(self, nodes: dict[str, Node], links: list[_LinkSpec]) -> list[_Segment]:
        """Assign every missing address deterministically around the ones the file gives."""
        segments = self.segments(nodes, links)
        reserved: list[tuple[IPv4Network, int, str]] = []
        for seg in segments:
            self.given_network(seg)
            if seg.network is not None:
                reserved.append((seg.network, seg.net_line, seg.label))
        for n in nodes.values():
            if n.loopback is not None:
                reserved.append((n.loopback.network, n.line, f"loopback of {n.name}"))
        self.check_overlaps(reserved)
        taken = [net for net, _, _ in reserved]

        def free(net: IPv4Network) -> bool:
            return not any(net.overlaps(t) for t in taken)

        # auto loopbacks double as router ids, so they also skip router ids the file gives
        given_rids = {n.router_id for n in nodes.values() if n.router_id is not None}
        lo_candidates = (IPv4Network(f"{ip}/32") for ip in LOOPBACK_POOL.hosts()
                         if int(ip) % 256 not in (0, 255) and ip not in given_rids)
        for n in nodes.values():
            if n.runs_daemon and n.loopback is None:
                net = next((c for c in lo_candidates if free(c)), None)
                if net is None:
                    self.fail(n.line, f"node {n.name}: loopback pool {LOOPBACK_POOL} is exhausted")
                taken.append(net)
                n.loopback = IPv4Interface(net)
        rids: dict[IPv4Address, Node] = {}
        for n in nodes.values():
            if n.runs_daemon:
                n.router_id = n.router_id or n.loopback.ip  # type: ignore[union-attr]
                if n.router_id in rids:
                    self.fail(n.line, f"node {n.name}: router id {n.router_id} is also {rids[n.router_id].name}'s")
                rids[n.router_id] = n

        # LANs first try 10.1.N.0/24 for their gateway router N, so addresses are easy to read
        aligned: set[str] = set()
        for seg in segments:
            gw = self.gateway(seg, nodes)
            if seg.kind == "lan" and seg.network is None and gw and gw.name not in aligned and gw.index <= 255:
                net = IPv4Network(f"{LAN_POOL.network_address + (gw.index << 8)}/{LAN_PREFIX}")
                if free(net):
                    seg.network = net
                    aligned.add(gw.name)
                    taken.append(net)
        pools = {"lan": EXTRA_LAN_POOL.subnets(new_prefix=LAN_PREFIX), "p2p": P2P_POOL.subnets(new_prefix=P2P_PREFIX)}
        for seg in segments:
            if seg.network is None:
                net = next((c for c in pools[seg.kind] if free(c)), None)
                if net is None:
                    pool = EXTRA_LAN_POOL if seg.kind == "lan" else P2P_POOL
                    self.fail(seg.line, f"{seg.label}: address pool {pool} is exhausted")
                seg.network = net
                taken.append(net)
            self.fill(seg, nodes)

        for n in nodes.values():
            if n.role == "switch" and n.name in {s.switch for s in segments}:
                n.subnet = next(s.network for s in segments if s.switch == n.name)
        # a host's default gateway: the first router on its first LAN (in its link order) that has one
        seg_of = {(ls.index, side): seg for seg in segments for ls, side in seg.members}
        for ls in links:
            for side, end in enumerate(ls.ends):
                host, seg = nodes[end.node], seg_of.get((ls.index, side))
                gw = self.gateway(seg, nodes) if seg is not None else None
                if host.role == "host" and host.gateway is None and gw is not None:
                    host.gateway = next(m.ends[sd].addr.ip for m, sd in seg.members  # type: ignore[union-attr]
                                        if m.ends[sd].node == gw.name)
        # belt and braces: the whole plan, user-given and assigned, must be overlap-free
        self.check_overlaps([(s.network, s.net_line or s.line, s.label) for s in segments]  # type: ignore[misc]
                            + [(n.loopback.network, n.line, f"loopback of {n.name}")
                               for n in nodes.values() if n.loopback is not None])
        return segments

    def segments(self, nodes: dict[str, Node], links: list[_LinkSpec]) -> list[_Segment]:
        out: list[_Segment] = []
        by_switch: dict[str, _Segment] = {}
        for ls in links:
            roles = [nodes[e.node].role for e in ls.ends]
            switches = [i for i in (0, 1) if not ROLES[roles[i]].addressed]
            ls_seg: _Segment
            if len(switches) == 2:
                continue  # trunk between switches: layer 2 only
            if switches:
                sw, other = ls.ends[switches[0]].node, 1 - switches[0]
                if sw not in by_switch:
                    seg = _Segment("lan", f"LAN of switch {sw}", nodes[sw].line, switch=sw)
                    if nodes[sw].subnet is not None:
                        seg.network, seg.net_line = nodes[sw].subnet, nodes[sw].line
                    by_switch[sw] = seg
                    out.append(seg)
                by_switch[sw].members.append((ls, other))
                continue
            kind = "lan" if roles.count("host") == 1 else "p2p"
            ls_seg = _Segment(kind, f"link {ls.label}", ls.line, members=[(ls, 0), (ls, 1)])
            out.append(ls_seg)
        return out

    def given_network(self, seg: _Segment) -> None:
        """The segment's subnet from addresses given in the file; they must agree."""
        seen: dict[IPv4Address, int] = {}
        for ls, side in seg.members:
            end = ls.ends[side]
            if end.addr is None:
                continue
            if seg.network is None:
                seg.network, seg.net_line = end.addr.network, end.addr_line
            elif end.addr.network != seg.network:
                self.fail(end.addr_line, f"link {ls.label}: {end.addr} is not in {seg.network}, the subnet of "
                                         f"{seg.label} (line {seg.net_line})")
            if end.addr.ip in seen:
                self.fail(end.addr_line, f"link {ls.label}: address {end.addr.ip} is already used (line {seen[end.addr.ip]})")
            seen[end.addr.ip] = end.addr_line

    def check_overlaps(self, nets: list[tuple[IPv4Network, int, str]]) -> None:
        ordered = sorted(nets, key=lambda t: (t[0].network_address, -t[0].num_addresses, t[1]))
        widest: tuple[IPv4Network, int, str] | None = None
        for cur in ordered:
            if widest is not None and cur[0].network_address <= widest[0].broadcast_address:
                first, second = sorted((widest, cur), key=lambda t: t[1])
                at = f" (line {first[1]})" if first[1] else ""
                if first[0] == second[0]:
                    self.fail(second[1], f"{second[2]}: {second[0]} is already used by {first[2]}{at}")
                self.fail(second[1], f"{second[2]}: {second[0]} overlaps {first[0]} of {first[2]}{at}")
            if widest is None or cur[0].broadcast_address > widest[0].broadcast_address:
                widest = cur

    @staticmethod
    def gateway(seg: _Segment, nodes: dict[str, Node]) -> Node | None:
        """The first node on a LAN that runs a daemon (hosts' default gateway)."""
        if seg.kind != "lan":
            return None
        return next((nodes[ls.ends[side].node] for ls, side in seg.members
                     if nodes[ls.ends[side].node].runs_daemon), None)

    def fill(self, seg: _Segment, nodes: dict[str, Node]) -> None:
        """Give each end without an address the lowest free one: daemon nodes first, then hosts."""
        assert seg.network is not None
        used = {ls.ends[side].addr.ip for ls, side in seg.members if ls.ends[side].addr is not None}  # type: ignore[union-attr]
        order = sorted(seg.members, key=lambda m: not nodes[m[0].ends[m[1]].node].runs_daemon) \
            if seg.kind == "lan" else seg.members
        hosts = (ip for ip in seg.network.hosts() if ip not in used)
        for ls, side in order:
            end = ls.ends[side]
            if end.addr is None:
                ip = next(hosts, None)
                if ip is None:
                    self.fail(seg.net_line or seg.line, f"{seg.label}: subnet {seg.network} has no free address for {end.node}")
                end.addr = IPv4Interface(f"{ip}/{seg.network.prefixlen}")

    def sessions(self, raw: Any, line: int, nodes: dict[str, Node], links: list[_LinkSpec],
                 segments: list[_Segment]) -> list[BgpPeering]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.fail(line, f"bgp: sessions must be a list, got {_kind(raw)}")
        out: list[BgpPeering] = []
        seen: dict[frozenset[str], int] = {}
        for i, item in enumerate(raw):
            iline = _item_line(raw, i) or line
            if isinstance(item, list) and len(item) == 2:
                a, b = item
            elif isinstance(item, dict):
                self.keys(item, ("a", "b"), f"bgp session #{i + 1}: ", required=("a", "b"))
                a, b = item["a"], item["b"]
            else:
                self.fail(iline, f"bgp session #{i + 1}: expected {{a: NODE, b: NODE}} or [NODE, NODE], got {item!r}")
            where = f"bgp session {a}-{b}: "
            for n in (a, b):
                if not isinstance(n, str) or n not in nodes:
                    self.fail(iline, f"{where}unknown node {n!r}{_suggest(n, nodes) if isinstance(n, str) else ''}")
                if not nodes[n].runs_daemon:
                    self.fail(iline, f"{where}{n} is {_a(nodes[n].role)} and runs no BGP daemon")
                if nodes[n].asn is None:
                    self.fail(iline, f"{where}{n} has no asn")
            if a == b:
                self.fail(iline, f"{where}a node cannot peer with itself")
            pair = frozenset((a, b))
            if pair in seen:
                self.fail(iline, f"{where}duplicate session (first at line {seen[pair]})")
            seen[pair] = iline
            na, nb = nodes[a], nodes[b]
            ibgp = na.asn == nb.asn
            shared = self.shared_segment(a, b, segments)
            if ibgp and na.ospf and nb.ospf:
                out.append(BgpPeering(a, b, True, na.loopback.ip, nb.loopback.ip, None, None, iline))  # type: ignore[union-attr]
            elif shared is not None:
                ea, eb = shared
                out.append(BgpPeering(a, b, ibgp, ea.addr.ip, eb.addr.ip, ea.intf, eb.intf, iline))  # type: ignore[union-attr]
            elif ibgp:
                self.fail(iline, f"{where}iBGP needs both nodes in OSPF (loopback session) or a shared link")
            else:
                self.fail(iline, f"{where}eBGP needs a direct link or a shared switch LAN between "
                                 f"{a} and {b} (multihop eBGP is not supported)")
        return out

    @staticmethod
    def shared_segment(a: str, b: str, segments: list[_Segment]) -> tuple[_End, _End] | None:
        for seg in segments:
            ends = {ls.ends[side].node: ls.ends[side] for ls, side in seg.members}
            if a in ends and b in ends:
                return ends[a], ends[b]
        return None


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return repr(v)


# --- finding and loading topologies -------------------------------------------------------

REPO_TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
TOPOHUB_PREFIXES = {"zoo": "topozoo", "sndlib": "sndlib"}


def topology_dirs() -> list[Path]:
    """Where shipped names are looked up: $ROUTERLAB_TOPOLOGY_PATH (':'-separated), then topologies/."""
    extra = [Path(p) for p in os.environ.get("ROUTERLAB_TOPOLOGY_PATH", "").split(os.pathsep) if p]
    return [*extra, REPO_TOPOLOGIES]


def list_topologies() -> list[str]:
    """Names of the shipped topology files (``ring``, ``abilene``, ...), sorted."""
    names = {p.stem for d in topology_dirs() if d.is_dir() for p in d.glob("*.yaml")}
    return sorted(names)


def find_topology(name: str) -> Path:
    """The file of a shipped topology name."""
    for d in topology_dirs():
        p = d / f"{name}.yaml"
        if p.is_file():
            return p
    known = list_topologies()
    raise TopologyError(name, None, f"no such topology file or shipped topology{_suggest(name, known)}; "
                                    f"shipped: {', '.join(known) or 'none'}; also zoo:NAME, sndlib:NAME")


def _display(path: Path) -> str:
    """The path as a user would type it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_topology(source: str | os.PathLike[str], **topohub_options: Any) -> Topology:
    """Load a topology from a file path, a shipped name (``ring``) or ``zoo:NAME``/``sndlib:NAME``.

    ``topohub_options`` (daemon, bw, hosts) apply to zoo/sndlib imports only.
    Raises TopologyError (one line: file, line, problem); creates nothing.
    """
    text_src = os.fspath(source)
    prefix, _, rest = text_src.partition(":")
    if rest and prefix in TOPOHUB_PREFIXES:
        return import_topohub(f"{TOPOHUB_PREFIXES[prefix]}/{rest}", **topohub_options)
    if topohub_options:
        raise TypeError(f"options {sorted(topohub_options)} apply to zoo:/sndlib: imports only")
    path = Path(text_src)
    if not path.is_file():
        looks_like_path = os.sep in text_src or path.suffix in (".yaml", ".yml")
        # A bare name that is also a directory here (e.g. `b4`, the package) is a shipped name.
        if looks_like_path or (path.exists() and not path.is_dir()):
            raise TopologyError(text_src, None, "no such file" if not path.exists() else "not a regular file")
        path = find_topology(text_src)
    shown = _display(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TopologyError(shown, None, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise TopologyError(shown, None, f"cannot read: {e.strerror}") from None
    topo = parse_topology(text, shown, default_name=path.stem)
    topo.path = path.resolve()
    return topo


# --- topohub (Topology Zoo, SNDlib) ------------------------------------------------------

def list_topohub(group: str = "topozoo") -> list[str]:
    """Network names topohub ships in ``group`` (topozoo or sndlib)."""
    import importlib.resources

    import topohub

    folder = importlib.resources.files(topohub) / "data" / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".json"))


def _short_name(name: str, taken: set[str], maxlen: int = 8) -> str:
    """A node name from a city name: ASCII letters/digits, at most ``maxlen``, unique."""
    ascii_ = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    base = re.sub(r"[^A-Za-z0-9]", "", ascii_)
    if not base or not base[0].isalpha():
        base = "n" + base
    base = base[:maxlen]
    cand = base
    for k in itertools.count(2):
        if cand.lower() not in taken:
            break
        suffix = str(k)
        cand = base[: maxlen - len(suffix)] + suffix
    taken.add(cand.lower())
    return cand


def import_topohub(key: str, *, daemon: str = "frr", bw: float | None = None, hosts: bool = False) -> Topology:
    """Import a topohub network (``topozoo/Abilene``, ``sndlib/polska``) as an OSPF topology.

    Every node becomes a ``daemon`` router in area 0 (hello 1 s, dead 4 s); names are
    shortened city names (at most 8 characters, unique; the original is in
    ``node.params['name']``); link costs are distances in km (at least 1); ``bw`` (Mbit/s)
    shapes every link; ``hosts`` adds one host ``h<router>`` per router.
    """
    group, _, name = key.partition("/")
    prefix = next((p for p, g in TOPOHUB_PREFIXES.items() if g == group), group)
    source = f"{prefix}:{name}"
    try:
        available = list_topohub(group)
    except (FileNotFoundError, NotADirectoryError):
        raise TopologyError(source, None, f"topohub has no group {group!r}") from None
    match = next((n for n in available if n.lower() == name.lower()), None)
    if match is None:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(close)}?)" if close else f"; {len(available)} available"
        raise TopologyError(source, None, f"unknown topohub network {name!r}{hint}")
    import topohub

    source = f"{prefix}:{match}"  # the canonical spelling, whatever case was asked for
    data = topohub.get(f"{group}/{match}")
    taken: set[str] = set()
    names: dict[str, str] = {}
    nodes: dict[str, Any] = {}
    for n in data["nodes"]:
        short = _short_name(str(n.get("name") or f"n{n['id']}"), taken)
        names[str(n["id"])] = short
        nodes[short] = {"params": {"name": n.get("name"), "topohub_id": n["id"], "pos": n.get("pos")}}
    links: list[dict[str, Any]] = []
    for e in data["edges"]:
        link: dict[str, Any] = {"a": names[str(e["source"])], "b": names[str(e["target"])]}
        if e.get("dist") is not None:
            link["cost"] = max(1, min(65535, round(e["dist"])))
        links.append(link)
    if hosts:
        for r in list(nodes):
            h = _short_name(f"h{r}", taken, maxlen=MAX_NODE_NAME)
            nodes[h] = {"role": "host"}
            links.append({"a": r, "b": h})
    raw = {"name": re.sub(r"[^A-Za-z0-9_.-]", "", f"{prefix}-{match}"),
           "description": f"{match} from topohub ({group}), imported as an OSPF network",
           "defaults": {"daemon": daemon, **({"bw": bw} if bw is not None else {})},
           "ospf": {"area": 0, "hello": 1, "dead": 4},
           "nodes": nodes, "links": links, "params": {"topohub": f"{group}/{match}"}}
    topo = _Builder(source).build(raw, raw["name"])
    log.info("imported %s: %d routers, %d links", source, len(topo.routers()), len(topo.links))
    return topo
