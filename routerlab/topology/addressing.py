"""The address plan: loopbacks, point-to-point /30s and LAN /24s assigned deterministically
around the addresses a topology file gives, and checked for overlaps (see the package
docstring for the plan itself)."""
from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from typing import Any, NoReturn

from routerlab.topology.model import ROLES, Node, TopologyError

P2P_POOL, P2P_PREFIX = IPv4Network("10.0.0.0/16"), 30
LAN_POOL, EXTRA_LAN_POOL, LAN_PREFIX = IPv4Network("10.1.0.0/16"), IPv4Network("10.2.0.0/16"), 24
LOOPBACK_POOL = IPv4Network("10.255.0.0/16")


@dataclass
class _End:
    """One end of a link as written, filled in by the interface naming and the plan."""

    node: str
    intf: str | None = None
    addr: IPv4Interface | None = None
    addr_line: int = 0
    port: int = 0


@dataclass
class _LinkSpec:
    """A validated link before its addresses are planned."""

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


def _fail(source: str, line: int | None, problem: str) -> NoReturn:
    """Raise the one-line TopologyError for `source`, at `line` when known."""
    raise TopologyError(source, line or None, problem)


def address_plan(source: str, nodes: dict[str, Node], links: list[_LinkSpec]) -> list[_Segment]:
    """Assign every missing address deterministically around the ones the file gives."""
    segments = link_segments(nodes, links)
    reserved: list[tuple[IPv4Network, int, str]] = []
    for seg in segments:
        given_network(source, seg)
        if seg.network is not None:
            reserved.append((seg.network, seg.net_line, seg.label))
    for n in nodes.values():
        if n.loopback is not None:
            reserved.append((n.loopback.network, n.line, f"loopback of {n.name}"))
    check_overlaps(source, reserved)
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
                _fail(source, n.line, f"node {n.name}: loopback pool {LOOPBACK_POOL} is exhausted")
            taken.append(net)
            n.loopback = IPv4Interface(net)
    rids: dict[IPv4Address, Node] = {}
    for n in nodes.values():
        if n.runs_daemon:
            assert n.loopback is not None  # every daemon node has one by now (given or assigned above)
            rid = n.router_id or n.loopback.ip
            n.router_id = rid
            if rid in rids:
                _fail(source, n.line, f"node {n.name}: router id {rid} is also {rids[rid].name}'s")
            rids[rid] = n

    # LANs first try 10.1.N.0/24 for their gateway router N, so addresses are easy to read
    aligned: set[str] = set()
    for seg in segments:
        gw = gateway(seg, nodes)
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
                _fail(source, seg.line, f"{seg.label}: address pool {pool} is exhausted")
            seg.network = net
            taken.append(net)
        fill(source, seg, nodes)

    for n in nodes.values():
        if n.role == "switch" and n.name in {s.switch for s in segments}:
            n.subnet = next(s.network for s in segments if s.switch == n.name)
    # a host's default gateway: the first router on its first LAN (in its link order) that has one
    seg_of = {(ls.index, side): seg for seg in segments for ls, side in seg.members}
    for ls in links:
        for side, end in enumerate(ls.ends):
            host, end_seg = nodes[end.node], seg_of.get((ls.index, side))
            gw = gateway(end_seg, nodes) if end_seg is not None else None
            if host.role == "host" and host.gateway is None and end_seg is not None and gw is not None:
                # fill() gave every end of the segment an address
                host.gateway = next(e.addr.ip for e in _ends(end_seg) if e.node == gw.name and e.addr is not None)
    # belt and braces: the whole plan, user-given and assigned, must be overlap-free
    planned: list[tuple[IPv4Network, int, str]] = []
    for s in segments:
        assert s.network is not None  # every segment got a subnet above
        planned.append((s.network, s.net_line or s.line, s.label))
    check_overlaps(source, planned + [(n.loopback.network, n.line, f"loopback of {n.name}")
                                      for n in nodes.values() if n.loopback is not None])
    return segments


def _ends(seg: _Segment) -> list[_End]:
    """The segment's member ends, in member order."""
    return [ls.ends[side] for ls, side in seg.members]


def link_segments(nodes: dict[str, Node], links: list[_LinkSpec]) -> list[_Segment]:
    """The IP segments of the links: one per routed link, one per switch LAN (in link order)."""
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


def given_network(source: str, seg: _Segment) -> None:
    """The segment's subnet from addresses given in the file; they must agree."""
    seen: dict[IPv4Address, int] = {}
    for ls, side in seg.members:
        end = ls.ends[side]
        if end.addr is None:
            continue
        if seg.network is None:
            seg.network, seg.net_line = end.addr.network, end.addr_line
        elif end.addr.network != seg.network:
            _fail(source, end.addr_line, f"link {ls.label}: {end.addr} is not in {seg.network}, the subnet of "
                                         f"{seg.label} (line {seg.net_line})")
        if end.addr.ip in seen:
            _fail(source, end.addr_line,
                  f"link {ls.label}: address {end.addr.ip} is already used (line {seen[end.addr.ip]})")
        seen[end.addr.ip] = end.addr_line


def check_overlaps(source: str, nets: list[tuple[IPv4Network, int, str]]) -> None:
    """Fail at the later-written of the first two (network, line, label) entries that overlap."""
    ordered = sorted(nets, key=lambda t: (t[0].network_address, -t[0].num_addresses, t[1]))
    widest: tuple[IPv4Network, int, str] | None = None
    for cur in ordered:
        if widest is not None and cur[0].network_address <= widest[0].broadcast_address:
            first, second = sorted((widest, cur), key=lambda t: t[1])
            at = f" (line {first[1]})" if first[1] else ""
            if first[0] == second[0]:
                _fail(source, second[1], f"{second[2]}: {second[0]} is already used by {first[2]}{at}")
            _fail(source, second[1], f"{second[2]}: {second[0]} overlaps {first[0]} of {first[2]}{at}")
        if widest is None or cur[0].broadcast_address > widest[0].broadcast_address:
            widest = cur


def gateway(seg: _Segment, nodes: dict[str, Node]) -> Node | None:
    """The first node on a LAN that runs a daemon (hosts' default gateway)."""
    if seg.kind != "lan":
        return None
    return next((nodes[ls.ends[side].node] for ls, side in seg.members
                 if nodes[ls.ends[side].node].runs_daemon), None)


def fill(source: str, seg: _Segment, nodes: dict[str, Node]) -> None:
    """Give each end without an address the lowest free one: daemon nodes first, then hosts."""
    assert seg.network is not None
    used = {e.addr.ip for e in _ends(seg) if e.addr is not None}
    order = sorted(seg.members, key=lambda m: not nodes[m[0].ends[m[1]].node].runs_daemon) \
        if seg.kind == "lan" else seg.members
    hosts = (ip for ip in seg.network.hosts() if ip not in used)
    for ls, side in order:
        end = ls.ends[side]
        if end.addr is None:
            ip = next(hosts, None)
            if ip is None:
                _fail(source, seg.net_line or seg.line,
                      f"{seg.label}: subnet {seg.network} has no free address for {end.node}")
            end.addr = IPv4Interface(f"{ip}/{seg.network.prefixlen}")


def shared_segment(a: str, b: str, segments: list[_Segment]) -> tuple[_End, _End] | None:
    """The ends of `a` and `b` on a segment they share (a link or a switch LAN), if any."""
    for seg in segments:
        ends = {ls.ends[side].node: ls.ends[side] for ls, side in seg.members}
        if a in ends and b in ends:
            return ends[a], ends[b]
    return None
