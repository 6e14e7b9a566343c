"""The validator: parsed YAML (or plain data in the file format) to a `Topology`, failing at
the first problem with a one-line `TopologyError` ``FILE:LINE: problem``."""
from __future__ import annotations

import difflib
import logging
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, NoReturn

from routerlab.topology.addressing import _End, _LinkSpec, _Segment, address_plan, shared_segment
from routerlab.topology.loader import _item_line, _line, _Map, read_yaml
from routerlab.topology.placement import placer_problem, server_problem
from routerlab.topology.model import (
    DAEMONS,
    DEFAULT_COST,
    MAX_IFNAME,
    MAX_NODE_NAME,
    OSPF_DAEMONS,
    ROLES,
    BgpParams,
    BgpPeering,
    Endpoint,
    Link,
    Node,
    OspfParams,
    Topology,
    TopologyError,
)

log = logging.getLogger(__name__)

# Interface addresses stay private: they live in namespaces and must never look routable.
PRIVATE_NETS = (IPv4Network("10.0.0.0/8"), IPv4Network("172.16.0.0/12"), IPv4Network("192.168.0.0/16"))

_NODE_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_IFNAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*\Z")
_TOPO_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")

_TOP_KEYS = ("name", "description", "defaults", "ospf", "bgp", "nodes", "links", "params")
_DEFAULT_KEYS = ("daemon", "asn", "bw", "delay", "cost")
_OSPF_KEYS = ("area", "hello", "dead")
_BGP_KEYS = ("keepalive", "hold", "sessions")
_NODE_KEYS = ("role", "daemon", "asn", "loopback", "router_id", "ospf", "originate", "subnet", "params",
              "server")
_LINK_KEYS = ("a", "b", "bw", "delay", "cost", "area", "ospf", "a_addr", "b_addr", "a_intf", "b_intf",
              "params")
# Words people reach for that are spelled differently here.
_ALIASES = {"bandwidth": "bw", "latency": "delay", "weight": "cost", "metric": "cost", "as": "asn",
            "type": "role", "kind": "role", "routerid": "router_id", "lo": "loopback",
            "neighbors": "sessions", "neighbours": "sessions", "peers": "sessions",
            "src": "a", "dst": "b", "source": "a", "target": "b", "prefixes": "originate",
            "announce": "originate", "networks": "originate", "hello_interval": "hello",
            "dead_interval": "dead", "hold_time": "hold"}


@dataclass
class _Defaults:
    """The file's ``defaults:`` section, validated."""

    daemon: str | None = None
    asn: int | None = None
    bw: float | None = None
    delay: float | None = None
    cost: int = DEFAULT_COST
    lines: dict[str, int] = field(default_factory=dict)


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
            sign = "a non-negative" if zero_ok else "a positive"
            self.fail(line, f"{what} must be {sign} number ({unit}), got {v!r}")
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
        segments = address_plan(self.source, nodes, links)
        sessions = self.sessions(bgp_raw.get("sessions"), _line(bgp_raw, "sessions"), nodes, links, segments)

        topo_links = [Link(a=_endpoint(ls.ends[0]), b=_endpoint(ls.ends[1]),
                           bw=ls.bw, delay=ls.delay, cost=ls.cost, area=ls.area, ospf=ls.ospf,
                           index=ls.index, line=ls.line, params=ls.params) for ls in links]
        params = self.mapping(top.get("params"), _line(top, "params"), "params")
        bad_placer = placer_problem(params)
        if bad_placer:
            self.fail(_line(params, bad_placer[0]) or _line(top, "params"), bad_placer[1])
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
            self.fail(_line(m, "keepalive") or _line(m),
                      f"bgp: keepalive ({p.keepalive}) must be shorter than hold ({p.hold})")
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
        kl = lambda key: _line(m, key) or line  # line of a key, else the node's

        role = m.get("role", "router")
        if not isinstance(role, str) or role not in ROLES:
            self.fail(kl("role"), f"{where}unknown role {role!r}{_suggest(role, ROLES)}; roles: {', '.join(ROLES)}")
        rs = ROLES[role]
        params = _plain(self.mapping(m.get("params"), kl("params"), f"{where}params"))
        node = Node(name=name, role=role, line=line, params=params)
        if "server" in m:
            why = server_problem(m["server"])
            if why:
                self.fail(kl("server"), f"{where}{why}")
            node.server = m["server"]

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

    def links(self, raw: Any, line: int, nodes: dict[str, Node], defaults: _Defaults,
              ospf: OspfParams) -> list[_LinkSpec]:
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
            kl = lambda key: _line(m, key) or iline  # noqa: B023 - used within this iteration only
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
                        self.fail(end.addr_line,
                                  f"{where}{end.node} is {_a(nodes[end.node].role)}: its ports have no address")
                    end.addr = self.iface_addr(m[f"{side}_addr"], end.addr_line, f"{where}{side}_addr")
            spec = _LinkSpec(
                index=i, line=iline, label=label, ends=ends,
                bw=self.number(m["bw"], kl("bw"), f"{where}bw", "Mbit/s", zero_ok=False) if "bw" in m else d_bw,
                delay=(self.number(m["delay"], kl("delay"), f"{where}delay", "ms", zero_ok=True)
                       if "delay" in m else d_delay),
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
            shared = shared_segment(a, b, segments)
            if ibgp and na.ospf and nb.ospf:
                # address_plan() gave every daemon node a loopback
                assert na.loopback is not None and nb.loopback is not None
                out.append(BgpPeering(a, b, True, na.loopback.ip, nb.loopback.ip, None, None, iline))
            elif shared is not None:
                ea, eb = shared
                assert ea.addr is not None and eb.addr is not None  # address_plan() addressed every end
                out.append(BgpPeering(a, b, ibgp, ea.addr.ip, eb.addr.ip, ea.intf, eb.intf, iline))
            elif ibgp:
                self.fail(iline, f"{where}iBGP needs both nodes in OSPF (loopback session) or a shared link")
            else:
                self.fail(iline, f"{where}eBGP needs a direct link or a shared switch LAN between "
                                 f"{a} and {b} (multihop eBGP is not supported)")
        return out


def _endpoint(end: _End) -> Endpoint:
    """A planned link end as the topology's Endpoint."""
    assert end.intf is not None  # interface_names() named every end
    return Endpoint(end.node, end.intf, end.port, end.addr)


def _a(word: str) -> str:
    return f"an {word}" if word[:1] in "aeiou" else f"a {word}"


def _kind(v: Any) -> str:
    if isinstance(v, dict):
        return "a mapping"
    if isinstance(v, list):
        return "a list"
    return repr(v)


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


def parse_topology(text: str, source: str = "<string>", *, default_name: str = "topology") -> Topology:
    """Parse and validate YAML topology text; errors name ``source`` and the line."""
    return _Builder(source).build(read_yaml(text, source), default_name)


def topology_from_dict(data: dict[str, Any], source: str = "<dict>") -> Topology:
    """Validate a topology given as Python data in the file format (no line numbers)."""
    return _Builder(source).build(data, str(data.get("name", "topology")) if isinstance(data, dict) else "topology")
