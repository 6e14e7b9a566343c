"""The B4 WAN as the controllers and the TE server see it, read from a topology file.

A B4 topology is an ordinary routerlab topology (``routerlab/topology.py``) whose switches are
WAN sites and whose hosts source and sink the flow groups' traffic, plus a ``params:`` block::

    params:
      system: b4
      scale: "1 Gbit/s in the paper = 1 Mbit/s here"   # stated in reports
      te: {quantum: 0.5, max_tunnels: 4, algorithm: b4}   # algorithm: b4 | b4r | exact
      edges:                        # optional: directed TE edges (default: both directions of
        - {src: A, dst: B, capacity: 10, cost: 1}   # every site link, capacity = bw, cost = cost)
      flow_groups:
        - name: FG1
          src: A
          dst: B
          dscp: 0                   # optional QoS match
          apps: [{name: App1, weight: 10, demand: 15}]   # demand in Mbit/s

Each switch is a site, unless ``params: {site: NAME}`` puts several switches in one site (as
B4's sites are: a cluster spreads its traffic over the site's switches, and a switch failure
leaves the others carrying it). A site's *primary* switch is the one named like the site (or
the first by name); the site's prefix is the primary's LAN subnet. Every switch of a site must
link to the same neighbour sites (the links between two sites form one trunk, their TE edge
capacity is the sum) and there are no links inside a site. A host attaches to one or more
switches of one site (always including the primary); its address is the one on its link to
the primary, as a /32, with the site's virtual gateway (the prefix's last address) as next
hop, so a switch routes every packet and no ARP crosses the WAN. Links between switches carry
the WAN's traffic; their ``bw`` (Mbit/s) is the TE capacity (see `b4.wan` for the line rate).

`WanConfig` is the JSON-able part that controller processes get; `Wan` adds the topology and
the flow groups' bandwidth functions for the TE server and the network builder.
"""
from __future__ import annotations

import ipaddress
import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from routerlab.topology import Topology, TopologyError, load_topology

from b4.te.flow_group import Application, FlowGroup
from b4.te.problem import (DEFAULT_MAX_TUNNELS, DEFAULT_QUANTUM, Edge, Problem, ProblemError,
                           check_max_tunnels, check_quantum)
from b4.te.tunnels import SiteGraph

log = logging.getLogger(__name__)

#: Extra MTU on WAN links: one MPLS label is 4 bytes; room for two.
LABEL_MTU_EXTRA = 8
HOST_MTU = 1500


#: TE algorithms the TE server can run (`routerlab te solve` has more: lp, swan, shortest).
SERVER_ALGORITHMS = ("b4", "b4r", "exact")


@dataclass(frozen=True)
class HostPort:
    """A host attached to a switch port (``intf``: the host's interface on that link)."""

    port: int
    host: str
    ip: str
    mac: str
    intf: str = ""


@dataclass(frozen=True)
class SwitchConfig:
    """One site switch: its ports to hosts and, per neighbour site, its trunk member ports."""

    name: str
    site: str
    dpid: int
    host_ports: tuple[HostPort, ...]
    trunks: dict[str, tuple[int, ...]]     # neighbour site -> member ports
    port_links: dict[int, str]             # WAN port -> link name

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "site": self.site, "dpid": self.dpid,
                "host_ports": [asdict(h) for h in self.host_ports],
                "trunks": {k: list(v) for k, v in self.trunks.items()},
                "port_links": {str(k): v for k, v in self.port_links.items()}}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> SwitchConfig:
        return cls(d["name"], d["site"], int(d["dpid"]), tuple(HostPort(**h) for h in d["host_ports"]),
                   {k: tuple(v) for k, v in d["trunks"].items()},
                   {int(k): v for k, v in d["port_links"].items()})


@dataclass(frozen=True)
class SiteConfig:
    name: str
    index: int          # 0-based, stable (sorted names): trunk group ids derive from it
    prefix: str
    gateway_ip: str
    gateway_mac: str
    switches: tuple[str, ...]


@dataclass(frozen=True)
class LinkConfig:
    """A physical WAN link between two switches (of different sites)."""

    name: str
    a: str
    a_port: int
    b: str
    b_port: int
    bw: float
    cost: float


@dataclass
class WanConfig:
    """What every controller needs: sites, switches, links and routing costs (JSON-able)."""

    name: str
    sites: dict[str, SiteConfig]
    switches: dict[str, SwitchConfig]
    links: dict[str, LinkConfig]
    route_costs: dict[str, dict[str, float]]  # site -> neighbour site -> cost (directed)

    def site_of_switch(self, sw: str) -> str:
        return self.switches[sw].site

    def switch_by_dpid(self, dpid: int) -> SwitchConfig | None:
        for s in self.switches.values():
            if s.dpid == dpid:
                return s
        return None

    def neighbors(self, site: str) -> set[str]:
        return set(self.route_costs.get(site, {}))

    def link_sites(self, link: str) -> tuple[str, str]:
        ln = self.links[link]
        return self.switches[ln.a].site, self.switches[ln.b].site

    def live_site_edges(self, down_links: Iterable[str] = ()) -> set[tuple[str, str]]:
        """Directed site pairs with at least one live link between them."""
        down = set(down_links)
        out = set()
        for name, ln in self.links.items():
            if name in down:
                continue
            a, b = self.switches[ln.a].site, self.switches[ln.b].site
            out.add((a, b))
            out.add((b, a))
        return out

    def routes(self, site: str, down_links: Iterable[str] = ()) -> dict[str, str | None]:
        """LPM routes of ``site``: destination prefix -> next-hop site (None: local), by the
        cheapest live site path (ties: fewer hops, then the smaller site sequence, so every
        site's choice is a suffix of its upstream neighbour's and hop-by-hop routing is
        loop-free)."""
        live = self.live_site_edges(down_links)
        names = sorted(self.sites)
        edges = [(u, v, c) for u in names for v, c in sorted(self.route_costs.get(u, {}).items())
                 if (u, v) in live]
        g = SiteGraph(names, edges)
        out: dict[str, str | None] = {self.sites[site].prefix: None}
        for dst in names:
            if dst == site:
                continue
            paths = g.cheapest_paths(site, dst, 1)
            if paths:
                out[self.sites[dst].prefix] = paths[0].path[1]
        return out

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "sites": {k: asdict(v) for k, v in self.sites.items()},
                "switches": {k: v.to_json() for k, v in self.switches.items()},
                "links": {k: asdict(v) for k, v in self.links.items()},
                "route_costs": self.route_costs}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> WanConfig:
        sites = {k: SiteConfig(**{**v, "switches": tuple(v["switches"])}) for k, v in d["sites"].items()}
        return cls(d["name"], sites, {k: SwitchConfig.from_json(v) for k, v in d["switches"].items()},
                   {k: LinkConfig(**v) for k, v in d["links"].items()},
                   {k: {n: float(c) for n, c in v.items()} for k, v in d["route_costs"].items()})


@dataclass(frozen=True)
class FlowGroupConfig:
    """A flow group: the TE library's flow group plus what its ACL entry matches."""

    fg: FlowGroup
    src_prefix: str
    dst_prefix: str
    dscp: int | None = None

    @property
    def name(self) -> str:
        return self.fg.name


@dataclass
class Wan:
    """A loaded B4 topology: the controllers' config, flow groups and TE settings."""

    topo: Topology
    config: WanConfig
    flow_groups: list[FlowGroupConfig]
    te_edges: list[Edge]            # directed, with capacity (Mbit/s) and cost
    edge_links: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # site pair -> links
    quantum: float = DEFAULT_QUANTUM
    max_tunnels: int = DEFAULT_MAX_TUNNELS
    scale: str = ""
    algorithm: str = "b4"           # the TE server's algorithm (SERVER_ALGORITHMS)

    @property
    def name(self) -> str:
        return self.config.name

    def problem(self, down_links: Iterable[str] = (), flow_groups: Iterable[FlowGroupConfig] | None = None) -> Problem:
        """The TE problem with the links in ``down_links`` removed (an edge keeps the share of
        its capacity carried by its live links)."""
        down = set(down_links)
        edges = []
        for e in self.te_edges:
            links = self.edge_links.get((e.src, e.dst), [])
            total = sum(self.config.links[ln].bw for ln in links) or 1.0
            live = sum(self.config.links[ln].bw for ln in links if ln not in down)
            cap = e.capacity * live / total
            if cap > 0:
                edges.append(Edge(e.src, e.dst, cap, e.cost))
        fgs = tuple(f.fg for f in (self.flow_groups if flow_groups is None else flow_groups))
        return _problem_without_unreachable(tuple(sorted(self.config.sites)), tuple(edges), fgs,
                                            self.max_tunnels, self.quantum, self.name)

    def flow_group(self, name: str) -> FlowGroupConfig:
        for f in self.flow_groups:
            if f.name == name:
                return f
        raise KeyError(name)

    def hosts_of(self, site: str) -> list[HostPort]:
        """The site's hosts (one entry per host, from its first switch)."""
        seen, out = set(), []
        for sw in self.config.sites[site].switches:
            for h in self.config.switches[sw].host_ports:
                if h.host not in seen:
                    seen.add(h.host)
                    out.append(h)
        return out

    def host_ports(self, host: str) -> list[tuple[str, HostPort]]:
        """Every (switch, port) a host is attached to."""
        return [(sw.name, h) for sw in self.config.switches.values() for h in sw.host_ports if h.host == host]


def _problem_without_unreachable(sites, edges, fgs, max_tunnels, quantum, name) -> Problem:
    """A Problem; flow groups a failure cut off from their destination are left out (the TE
    library refuses unreachable flow groups, and they have nowhere to go anyway)."""
    adj: dict[str, set[str]] = {s: set() for s in sites}
    for e in edges:
        adj[e.src].add(e.dst)

    def reach(s: str) -> set[str]:
        seen, todo = {s}, [s]
        while todo:
            for v in adj[todo.pop()]:
                if v not in seen:
                    seen.add(v)
                    todo.append(v)
        return seen

    cache: dict[str, set[str]] = {}
    keep = []
    for f in fgs:
        if f.src not in cache:
            cache[f.src] = reach(f.src)
        if f.dst in cache[f.src]:
            keep.append(f)
        else:
            log.warning("flow group %s: no path from %s to %s; left out of TE", f.name, f.src, f.dst)
    return Problem(sites, edges, tuple(keep), max_tunnels, quantum, name)


# --------------------------------------------------------------------------- loading

def host_mac(index: int) -> str:
    return f"02:00:b4:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"


def gateway_mac(site_index: int) -> str:
    return f"02:b4:00:{(site_index >> 8) & 0xFF:02x}:{site_index & 0xFF:02x}:fe"


def is_b4_topology(topo: Topology) -> bool:
    return isinstance(topo.params, Mapping) and topo.params.get("system") == "b4"


def _line_of(source: str, *needles: str) -> int | None:
    """The first line of the file containing every needle (to point at a bad entry)."""
    try:
        lines = Path(source).read_text().splitlines()
    except OSError:
        return None
    for i, line in enumerate(lines, 1):
        if all(n in line for n in needles):
            return i
    return None


Fail = Callable[..., NoReturn]


def load_wan(source: str | Path | Topology) -> Wan:
    """Load and check a B4 topology (a file, a shipped name, or a loaded Topology).

    Anything wrong raises TopologyError (one line naming the file and, where it can, the
    line); nothing is created."""
    topo = source if isinstance(source, Topology) else load_topology(source)
    src = topo.source

    def fail(problem: str, *needles: str) -> NoReturn:
        raise TopologyError(src, _line_of(src, *needles) if needles else None, problem)

    params = topo.params if isinstance(topo.params, Mapping) else {}
    if params.get("system") != "b4":
        fail("not a B4 topology (needs `params: {system: b4, ...}`)")
    site_of = _switch_sites(topo, fail)
    trunks = _wan_links(topo, site_of, fail)
    sw_hosts = _host_ports(topo, site_of, trunks.host_links, fail)
    sites = _site_configs(topo, site_of, sw_hosts, fail)
    sw_cfg = {sw: SwitchConfig(sw, site_of[sw], i + 1, tuple(sorted(sw_hosts[sw], key=lambda h: h.port)),
                               {k: tuple(v) for k, v in sorted(trunks.sw_trunks[sw].items())},
                               trunks.sw_port_links[sw])
              for i, sw in enumerate(sorted(site_of))}
    config = WanConfig(topo.name, sites, sw_cfg, trunks.links, trunks.route_costs)
    quantum, max_tunnels, algorithm = _te_params(params, fail)
    te_edges = _te_edges(params, sites, trunks, fail)
    fgs = _flow_groups(params, sites, fail)
    wan = Wan(topo, config, fgs, te_edges, trunks.edge_links, quantum, max_tunnels, str(params.get("scale", "")),
              algorithm)
    try:
        wan.problem()
    except ProblemError as e:
        fail(str(e).replace(f"{wan.name}: ", ""))
    return wan


def _switch_sites(topo: Topology, fail: Fail) -> dict[str, str]:
    """The site of every switch (``params: {site: NAME}``, else the switch's own name)."""
    site_of: dict[str, str] = {}
    for n in topo.nodes.values():
        if n.role not in ("switch", "host"):
            fail(f"node {n.name}: a B4 WAN has only switches (sites) and hosts, not {n.role}s", f"{n.name}:")
        if n.role == "switch":
            site = n.params.get("site", n.name) if isinstance(n.params, Mapping) else n.name
            if not isinstance(site, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", site):
                fail(f"switch {n.name}: site must be a name, got {site!r}", f"{n.name}:")
            site_of[n.name] = site
    site_names = sorted(set(site_of.values()))
    for sname in site_names:
        if sname in topo.nodes and topo.node(sname).role == "switch" and site_of[sname] != sname:
            fail(f"switch {sname} is in site {site_of[sname]} but a site {sname} exists too", f"{sname}:")
    if len(site_names) < 2:
        fail("a B4 WAN needs at least two sites")
    return site_of


def _site_switches(site_of: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """Each site's switches, by name."""
    return {sn: tuple(sorted(sw for sw, st in site_of.items() if st == sn)) for sn in sorted(set(site_of.values()))}


def _primaries(site_of: dict[str, str]) -> dict[str, str]:
    """Each site's primary switch: the one named like the site, else the first by name."""
    return {sn: (sn if sn in sws else sws[0]) for sn, sws in _site_switches(site_of).items()}


@dataclass
class _Trunks:
    """The WAN links read from the topology, and the host attachments met on the way."""

    links: dict[str, LinkConfig] = field(default_factory=dict)
    sw_trunks: dict[str, dict[str, list[int]]] = field(default_factory=dict)     # switch -> site -> ports
    sw_port_links: dict[str, dict[int, str]] = field(default_factory=dict)       # switch -> port -> link
    route_costs: dict[str, dict[str, float]] = field(default_factory=dict)       # site -> site -> cost
    edge_links: dict[tuple[str, str], list[str]] = field(default_factory=dict)   # (site, site) -> links
    host_links: dict[str, list[tuple[str, int, Any]]] = field(default_factory=dict)  # host -> [(switch, port, addr)]


def _wan_links(topo: Topology, site_of: dict[str, str], fail: Fail) -> _Trunks:
    """Links between sites (trunks), and host attachments; every switch of a site must link
    to the same neighbour sites."""
    t = _Trunks(sw_trunks={sw: {} for sw in site_of}, sw_port_links={sw: {} for sw in site_of},
                route_costs={sn: {} for sn in set(site_of.values())})
    for ln in topo.links:
        a, b = ln.a.node, ln.b.node
        ra, rb = topo.node(a).role, topo.node(b).role
        if ra == "switch" and rb == "switch":
            sa, sb = site_of[a], site_of[b]
            if sa == sb:
                fail(f"link {ln.name}: both ends are in site {sa} (links inside a site are not modelled)",
                     f"a: {a}", f"b: {b}")
            if not ln.bw:
                fail(f"link {ln.name}: a WAN link needs a bandwidth (bw, Mbit/s)", f"a: {a}", f"b: {b}")
            t.links[ln.name] = LinkConfig(ln.name, a, ln.a.port, b, ln.b.port, float(ln.bw), float(ln.cost))
            t.sw_trunks[a].setdefault(sb, []).append(ln.a.port)
            t.sw_trunks[b].setdefault(sa, []).append(ln.b.port)
            t.sw_port_links[a][ln.a.port] = ln.name
            t.sw_port_links[b][ln.b.port] = ln.name
            t.route_costs[sa][sb] = min(t.route_costs[sa].get(sb, math.inf), float(ln.cost))
            t.route_costs[sb][sa] = min(t.route_costs[sb].get(sa, math.inf), float(ln.cost))
            t.edge_links.setdefault((sa, sb), []).append(ln.name)
            t.edge_links.setdefault((sb, sa), []).append(ln.name)
        elif "host" in (ra, rb) and "switch" in (ra, rb):
            h_end, s_end = (ln.a, ln.b) if ra == "host" else (ln.b, ln.a)
            t.host_links.setdefault(h_end.node, []).append((s_end.node, s_end.port, h_end.address))
        else:
            fail(f"link {ln.name}: hosts attach to switches only", f"{a}", f"{b}")
    for sn, sws in _site_switches(site_of).items():
        nbrs = {sw: set(t.sw_trunks[sw]) for sw in sws}
        if len({frozenset(v) for v in nbrs.values()}) > 1:
            which = ", ".join(f"{k}: {sorted(v)}" for k, v in nbrs.items())
            fail(f"site {sn}: its switches link to different neighbour sites ({which}); "
                 f"every switch of a site needs a link to each of its neighbour sites")
    return t


def _host_ports(topo: Topology, site_of: dict[str, str], host_links: dict[str, list[tuple[str, int, Any]]],
                fail: Fail) -> dict[str, list[HostPort]]:
    """The hosts on each switch's ports: a host attaches to one site, always to its primary
    switch, and has the address of that link on every port."""
    primary = _primaries(site_of)
    host_index = {h.name: i + 1 for i, h in enumerate(topo.hosts())}
    sw_hosts: dict[str, list[HostPort]] = {sw: [] for sw in site_of}
    for host, hl in host_links.items():
        hsites = {site_of[sw] for sw, _, _ in hl}
        if len(hsites) > 1:
            fail(f"host {host}: attach a host to one site only (it links to {', '.join(sorted(hsites))})", f"{host}")
        sn = hsites.pop()
        on_primary = [addr for sw, _, addr in hl if sw == primary[sn]]
        if not on_primary:
            fail(f"host {host}: a host of site {sn} must attach to the site's primary switch {primary[sn]}", f"{host}")
        ip = str(on_primary[0].ip)
        for k, (sw, port, _) in enumerate(hl):
            mac = host_mac(host_index[host] + (k << 12))
            sw_hosts[sw].append(HostPort(port, host, ip, mac, f"{host}-eth{k}"))
    return sw_hosts


def _site_configs(topo: Topology, site_of: dict[str, str], sw_hosts: dict[str, list[HostPort]],
                  fail: Fail) -> dict[str, SiteConfig]:
    """Each site: its index, prefix (the primary's LAN subnet), gateway and switches."""
    primary = _primaries(site_of)
    sites: dict[str, SiteConfig] = {}
    for index, (sn, sws) in enumerate(_site_switches(site_of).items()):
        node = topo.node(primary[sn])
        if node.subnet is None or not sw_hosts[primary[sn]]:
            fail(f"site {sn} has no hosts (every site needs a host to source and sink traffic)", f"{primary[sn]}:")
        net = node.subnet
        gw = str(net.broadcast_address - 1)
        if any(h.ip == gw for h in sw_hosts[primary[sn]]):
            fail(f"site {sn}: host address {gw} is the site's gateway address (last of {net})")
        sites[sn] = SiteConfig(sn, index, str(net), gw, gateway_mac(index), sws)
    return sites


def _te_params(params: Mapping, fail: Fail) -> tuple[float, int, str]:
    """``params.te``: (quantum, max_tunnels, algorithm)."""
    te = params.get("te", {}) or {}
    if not isinstance(te, Mapping):
        fail("params.te must be a mapping {quantum, max_tunnels, algorithm}", "te:")
    algorithm = te.get("algorithm", "b4")
    if algorithm not in SERVER_ALGORITHMS:
        fail(f"params.te.algorithm must be one of {', '.join(SERVER_ALGORITHMS)}, got {algorithm!r}", "te:")
    try:
        return (check_quantum(te.get("quantum", DEFAULT_QUANTUM), "params.te.quantum"),
                check_max_tunnels(te.get("max_tunnels", DEFAULT_MAX_TUNNELS), "params.te.max_tunnels"), algorithm)
    except ProblemError as e:
        fail(str(e), "te:")


def _te_edges(params: Mapping, sites: dict[str, SiteConfig], t: _Trunks, fail: Fail) -> list[Edge]:
    """TE edges: ``params.edges`` (directed; sets the route costs it names), or both
    directions of every site link."""
    raw_edges = params.get("edges")
    if raw_edges is None:
        return [Edge(a, b, sum(t.links[n].bw for n in lns), t.route_costs[a][b])
                for (a, b), lns in sorted(t.edge_links.items())]
    if not isinstance(raw_edges, list):
        fail("params.edges must be a list of {src, dst, capacity, cost}", "edges:")
    te_edges: list[Edge] = []
    seen = set()
    for i, e in enumerate(raw_edges):
        if not isinstance(e, Mapping) or "src" not in e or "dst" not in e:
            fail(f"params.edges[{i}]: needs src and dst", "edges:")
        a, b = str(e["src"]), str(e["dst"])
        for end in (a, b):
            if end not in sites:
                fail(f"params.edges[{i}]: unknown site {end!r} (sites: {', '.join(sites)})", f"src: {a}")
        if (a, b) not in t.edge_links:
            fail(f"params.edges[{i}]: no link joins {a} and {b}", f"src: {a}", f"dst: {b}")
        if (a, b) in seen:
            fail(f"params.edges[{i}]: duplicate edge {a}->{b}", f"src: {a}", f"dst: {b}")
        seen.add((a, b))
        bw = sum(t.links[n].bw for n in t.edge_links[(a, b)])
        cap, cost = e.get("capacity", bw), e.get("cost", t.route_costs[a][b])
        for what, v in (("capacity", cap), ("cost", cost)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or not math.isfinite(v):
                fail(f"params.edges[{i}] {a}->{b}: {what} must be a number >= 0", f"src: {a}", f"dst: {b}")
        if cap > bw * (1 + 1e-9):
            fail(f"params.edges[{i}] {a}->{b}: capacity {cap} exceeds the link bandwidth {bw} Mbit/s",
                 f"src: {a}", f"dst: {b}")
        te_edges.append(Edge(a, b, float(cap), float(cost)))
        t.route_costs[a][b] = float(cost)
    return te_edges


def _flow_groups(params: Mapping, sites: dict[str, SiteConfig], fail: Fail) -> list[FlowGroupConfig]:
    """``params.flow_groups``: no two share source, destination and dscp."""
    raw_fgs = params.get("flow_groups", [])
    if not isinstance(raw_fgs, list):
        fail("params.flow_groups must be a list", "flow_groups:")
    fgs: list[FlowGroupConfig] = []
    names: set[str] = set()
    for i, g in enumerate(raw_fgs):
        if not isinstance(g, Mapping):
            fail(f"params.flow_groups[{i}] must be a mapping", "flow_groups:")
        name = g.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name or ""):
            fail(f"params.flow_groups[{i}]: name must be a word, got {name!r}", "flow_groups:")
        if name in names:
            fail(f"flow group {name}: duplicate name", f"name: {name}")
        names.add(name)
        for end in ("src", "dst"):
            v = g.get(end)
            if v not in sites:
                fail(f"flow group {name}: unknown {end} site {v!r} (sites: {', '.join(sites)})",
                     *((f"{end}: {v}",) if v is not None else (f"name: {name}",)))
        if g["src"] == g["dst"]:
            fail(f"flow group {name}: source and destination are the same site", f"name: {name}")
        dscp = g.get("dscp")
        if dscp is not None and (isinstance(dscp, bool) or not isinstance(dscp, int) or not 0 <= dscp <= 63):
            fail(f"flow group {name}: dscp must be 0..63", f"name: {name}")
        fg = FlowGroup(name, g["src"], g["dst"], _applications(name, g.get("apps"), fail))
        fgs.append(FlowGroupConfig(fg, sites[g["src"]].prefix, sites[g["dst"]].prefix, dscp))
    pairs = {(f.fg.src, f.fg.dst, f.dscp) for f in fgs}
    if len(pairs) != len(fgs):
        fail("two flow groups share source, destination and dscp: their ACL entries would collide")
    return fgs


def _applications(name: str, apps: Any, fail: Fail) -> tuple[Application, ...]:
    """A flow group's ``apps: [{name, weight, demand}, ...]``."""
    if not isinstance(apps, list) or not apps:
        fail(f"flow group {name}: needs apps: [{{name, weight, demand}}, ...]", f"name: {name}")
    app_objs = []
    for j, a in enumerate(apps):
        if not isinstance(a, Mapping) or not {"name", "weight", "demand"} <= set(a):
            fail(f"flow group {name}: apps[{j}] needs name, weight and demand", f"name: {name}")
        w, d = a["weight"], a["demand"]
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not w > 0:
            fail(f"flow group {name}: app {a['name']}: weight must be > 0", f"{a['name']}")
        if isinstance(d, bool) or not isinstance(d, (int, float)) or d < 0:
            fail(f"flow group {name}: app {a['name']}: demand must be >= 0 (Mbit/s)", f"{a['name']}")
        app_objs.append(Application(str(a["name"]), float(w), float(d)))
    return tuple(app_objs)


def _first_port(wan: Wan, host: str) -> tuple[str, HostPort]:
    """The first (switch, port) a host is attached to; KeyError for an unknown host."""
    ports = wan.host_ports(host)
    if not ports:
        raise KeyError(host)
    return ports[0]


def host_address(wan: Wan, host: str) -> str:
    """The host's address."""
    return _first_port(wan, host)[1].ip


def site_of_host(wan: Wan, host: str) -> str:
    """The site the host belongs to."""
    return wan.config.switches[_first_port(wan, host)[0]].site


def prefix_contains(prefix: str, ip: str) -> bool:
    return ipaddress.IPv4Address(ip) in ipaddress.IPv4Network(prefix)


def with_second_switch(source: str | Path, site: str, new_switch: str, out: str | Path) -> Path:
    """Write a copy of a B4 topology file in which ``site`` has a second switch: each of the
    site's WAN links is split into two of half the bandwidth, one per switch (the site's trunks
    keep their capacity), and the site's hosts are attached to both switches. Used to fail an
    encap switch while the site keeps forwarding through the other, as in B4."""
    import yaml

    src = Path(source) if Path(source).is_file() else Path(load_topology(str(source)).path)
    data = yaml.safe_load(src.read_text())
    if new_switch in data["nodes"]:
        raise TopologyError(str(src), None, f"node {new_switch} exists already")
    data["nodes"][new_switch] = {"role": "switch", "params": {"site": site}}
    links = []
    for ln in data["links"]:
        ends = (ln["a"], ln["b"])
        links.append(ln)
        if site not in ends:
            continue
        other = ln["b"] if ln["a"] == site else ln["a"]
        role = data["nodes"][other].get("role")
        twin = {k: v for k, v in ln.items() if k not in ("a_intf", "b_intf", "a_addr", "b_addr")}
        twin["a"], twin["b"] = (new_switch, other) if ln["a"] == site else (other, new_switch)
        if role == "switch":
            ln["bw"] = twin["bw"] = ln["bw"] / 2
        links.append(twin)
    data["links"] = links
    data["name"] = f"{data.get('name', src.stem)}-{new_switch}"
    data["description"] = (f"{data.get('description', '')} Site {site} has a second switch {new_switch}: its "
                           f"trunks are split over both and its hosts are dual-homed.").strip()
    out = Path(out)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out
