"""Route and neighbour -> flow translation: the pure heart of the data-plane hypervisor.

`route_tables` turns one VR's kernel FIB, neighbour table and addresses into the routing
table (table 1) of its physical router and the next-hop groups it points at:

* every route becomes one LPM flow ``reg0=VR, ip, nw_dst=PREFIX`` whose priority grows with
  the prefix length (``1000 + 2 * len``), so a more specific route always wins;
* a route's next hops become a group: ``indirect`` for one next hop, ``select`` (weighted
  buckets) for ECMP; each bucket rewrites the destination MAC to the neighbour's, decrements
  the TTL, names the egress interface in ``reg2`` and continues in the egress table, which
  rewrites the source MAC and outputs. Next hops without a resolved neighbour are left out
  of a select group; a group with none resolved punts to the VR (its kernel resolves the
  neighbour, after which the group is rewritten);
* a directly connected subnet punts (the kernel resolves its hosts) and every resolved
  neighbour in it gets a host flow one priority step above the subnet's and below any
  longer prefix (``1000 + 2 * len + 1``);
* blackhole routes drop; unreachable/prohibit routes punt (the kernel answers with ICMP);
* ARP, packets for the VR's own addresses, link-local multicast and TTL <= 1 are punted
  before any route is looked at, and whatever matches no route is punted too.

Group ids are stable across updates (`NextHopGroups`), so a neighbour's MAC change only
modifies one group and a route change only one flow.
"""
from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .fib import Neighbour, NextHop, Route, Snapshot, best_routes
from .flows import T_EGRESS, T_PUNT, T_ROUTE, Bucket, Flow, Group, Tables

log = logging.getLogger(__name__)

PRIO_ARP = 61000
PRIO_LOCAL = 60000
PRIO_TTL = 59000
PRIO_MISS = 1
PRIO_ROUTE_BASE = 1000
MAX_VR_ID = 62  # the VR id also goes into tunnel VLAN ids (6 bits)
MAX_INTERFACES = 32

GroupKey = tuple[tuple[str, str | None, int], ...]  # ((dev, gateway, weight), ...)


def route_priority(prefixlen: int) -> int:
    """The priority of an LPM flow for a prefix of this length."""
    return PRIO_ROUTE_BASE + 2 * prefixlen


def nw_dst(prefix: str) -> tuple[str, ...]:
    """Match terms for a canonical destination prefix ("ip" + nw_dst, as OVS prints it).

    String work only: the kernel's prefixes are canonical, and this runs per route."""
    if prefix.endswith("/32"):
        return ("ip", f"nw_dst={prefix[:-3]}")
    if prefix.endswith("/0"):
        return ("ip",)
    return ("ip", f"nw_dst={prefix}")


def reg(i: int, value: int) -> str:
    return f"load:{value}->NXM_NX_REG{i}[]"


def check_vr_id(vr_id: int) -> int:
    if not 1 <= vr_id <= MAX_VR_ID:
        raise ValueError(f"VR id {vr_id} out of range 1..{MAX_VR_ID}")
    return vr_id


class NextHopGroups:
    """Stable OpenFlow group ids for one VR's next-hop sets (``VR << 24 | n``)."""

    def __init__(self, vr_id: int):
        self.vr_id = check_vr_id(vr_id)
        self.ids: dict[GroupKey, int] = {}
        self._free: list[int] = []
        self._next = 1

    def id_for(self, key: GroupKey) -> int:
        gid = self.ids.get(key)
        if gid is None:
            n = self._free.pop() if self._free else self._next
            if n == self._next:
                self._next += 1
            gid = (self.vr_id << 24) | n
            self.ids[key] = gid
        return gid

    def retain(self, keys: Iterable[GroupKey]) -> None:
        """Forget (and recycle the ids of) every key not in `keys`."""
        keep = set(keys)
        for k in [k for k in self.ids if k not in keep]:
            self._free.append(self.ids.pop(k) & 0xFFFFFF)


def group_key(nexthops: Iterable[NextHop]) -> GroupKey:
    return tuple(sorted((nh.dev, nh.gateway, nh.weight) for nh in nexthops))


def _bucket(dev_index: int, mac: str) -> tuple[str, ...]:
    return (f"mod_dl_dst:{mac}", "dec_ttl", reg(2, dev_index), f"resubmit(,{T_EGRESS})")


def make_group(gid: int, key: GroupKey, ifindex: Mapping[str, int],
               macs: Mapping[tuple[str, str], str]) -> Group:
    """The group for a next-hop set; `macs` maps (dev, ip) to resolved neighbour MACs."""
    buckets = []
    for dev, gw, weight in key:
        mac = macs.get((dev, gw)) if gw is not None else None
        if mac is not None and dev in ifindex:
            buckets.append(Bucket(_bucket(ifindex[dev], mac), weight))
    if not buckets:
        return Group(gid, "indirect", (Bucket((f"resubmit(,{T_PUNT})",)),))
    if len(key) == 1:
        return Group(gid, "indirect", (Bucket(buckets[0].actions),))
    return Group(gid, "select", tuple(buckets))


def punt_flows(vr_id: int, local_ips: Iterable[str]) -> list[Flow]:
    """What every VR's routing table punts regardless of routes."""
    v = f"reg0={vr_id}"
    goto_punt = (f"goto_table:{T_PUNT}",)
    out = [Flow(T_ROUTE, PRIO_ARP, (v, "arp"), goto_punt),
           Flow(T_ROUTE, PRIO_LOCAL, (v, "ip", "nw_dst=224.0.0.0/4"), goto_punt),
           Flow(T_ROUTE, PRIO_TTL, (v, "ip", "nw_ttl=0"), goto_punt),
           Flow(T_ROUTE, PRIO_TTL, (v, "ip", "nw_ttl=1"), goto_punt),
           Flow(T_ROUTE, PRIO_MISS, (v,), goto_punt)]
    for ip in sorted(set(local_ips)):
        if not ip.startswith("127."):
            out.append(Flow(T_ROUTE, PRIO_LOCAL, (v, "ip", f"nw_dst={ip}"), goto_punt))
    return out


_PRIO_OF = {str(n): PRIO_ROUTE_BASE + 2 * n for n in range(33)}
_UNSEEN: tuple[str, ...] = ("unseen",)  # sentinels of route_tables' per-next-hop cache
_SKIP: tuple[str, ...] = ("skip",)


def _best_routes(routes: list[Route]) -> Iterable[Route]:
    """`best_routes`' values; a table without a repeated prefix (the usual case) takes one
    dict comprehension instead of a comparison per route."""
    one = {r[0]: r for r in routes}
    return one.values() if len(one) == len(routes) else best_routes(routes).values()


def _single_hop_actions(nh: NextHop, ifindex: Mapping[str, int], groups: NextHopGroups,
                        used: dict[GroupKey, int]) -> tuple[str, ...] | None:
    """The actions of a route with this one next hop: its group; `_SKIP` when the
    interface is not bound here; None for a directly connected one (general path)."""
    dev, gw, w = nh
    if dev not in ifindex:
        return _SKIP
    if gw is None:
        return None
    key: GroupKey = ((dev, gw, w),)
    gid = used.setdefault(key, groups.id_for(key))
    return (f"group:{gid}",)


@dataclass
class Translation:
    """The result of a translation, with counts for logs and reports."""

    tables: Tables
    routes: int = 0  # routes that became flows
    skipped: int = 0  # routes on interfaces the data plane does not have (e.g. lo)
    unresolved: int = 0  # next-hop groups that punt for lack of a neighbour


def route_tables(vr_id: int, ifindex: Mapping[str, int], snap: Snapshot,
                 groups: NextHopGroups) -> Translation:
    """Table-1 flows and next-hop groups for one VR's FIB (see the module docstring).

    `ifindex` maps the VR's bound interface names to their data-plane index (reg1/reg2)."""
    check_vr_id(vr_id)
    v = f"reg0={vr_id}"
    macs: dict[tuple[str, str], str] = {(n.dev, n.ip): n.mac for n in snap.neighbours
                                       if n.resolved and n.mac}
    flows = punt_flows(vr_id, (a.ip for a in snap.addresses))
    used: dict[GroupKey, int] = {}
    routes = skipped = 0
    connected: list[tuple[ipaddress.IPv4Network, str]] = []
    punt = (f"goto_table:{T_PUNT}",)
    out = Tables()
    table = out.flows  # single-gateway routes go straight in (one per prefix)
    # The common case, kept fast for million-route tables: one gateway on a bound
    # interface. Its actions are worked out once per next-hop tuple (the FIB reader shares
    # one tuple among the routes of a line shape), everything else per route is string work.
    acts_of: dict[tuple[NextHop, ...], tuple[str, ...] | None] = {}  # None: general path
    new = tuple.__new__
    for r in _best_routes(snap.routes):
        prefix, rtype, nhs = r[0], r[1], r[2]
        if rtype == "unicast" and len(nhs) == 1:
            acts = acts_of.get(nhs, _UNSEEN)
            if acts is _UNSEEN:
                acts = acts_of[nhs] = _single_hop_actions(nhs[0], ifindex, groups, used)
            if acts is _SKIP:
                skipped += 1
                continue
            if acts is not None:
                plen = prefix[prefix.index("/") + 1:]
                prio = _PRIO_OF[plen]
                if plen == "32":
                    match: tuple[str, ...] = (v, "ip", "nw_dst=" + prefix[:-3])
                elif plen == "0":
                    match = (v, "ip")
                else:
                    match = (v, "ip", "nw_dst=" + prefix)
                table[(T_ROUTE, prio, match)] = new(Flow, (T_ROUTE, prio, match, acts))
                routes += 1
                continue
        prio = PRIO_ROUTE_BASE + 2 * int(prefix[prefix.index("/") + 1:])
        if rtype == "unicast":
            nhs = tuple(nh for nh in nhs if nh.dev in ifindex)
            if not nhs:
                skipped += 1
                continue
            match = (v, *nw_dst(prefix))
            if all(nh.gateway is None for nh in nhs):  # directly connected
                flows.append(Flow(T_ROUTE, prio, match, punt))
                for nh in nhs:
                    connected.append((ipaddress.IPv4Network(prefix, strict=False), nh.dev))
                routes += 1
                continue
            key = group_key(nh for nh in nhs if nh.gateway is not None)
            gid = used.setdefault(key, groups.id_for(key))
            flows.append(Flow(T_ROUTE, prio, match, (f"group:{gid}",)))
            routes += 1
        elif rtype == "blackhole":
            flows.append(Flow(T_ROUTE, prio, (v, *nw_dst(prefix)), ("drop",)))
            routes += 1
        elif rtype in ("unreachable", "prohibit", "throw"):
            flows.append(Flow(T_ROUTE, prio, (v, *nw_dst(prefix)), punt))
            routes += 1
    flows += _neighbour_flows(vr_id, snap.neighbours, connected, groups, used)
    for f in flows:
        k = (f.table, f.priority, f.match)
        if k in table:
            log.debug("VR %d: duplicate flow %s ignored", vr_id, f.text())
            continue
        table[k] = f
    unresolved = 0
    for key, gid in used.items():
        g = make_group(gid, key, ifindex, macs)
        unresolved += g.buckets[0].actions == (f"resubmit(,{T_PUNT})",)
        out.groups[gid] = g
    groups.retain(used)
    return Translation(out, routes, skipped, unresolved)


def _neighbour_flows(vr_id: int, neighbours: Iterable[Neighbour],
                     connected: list[tuple[ipaddress.IPv4Network, str]],
                     groups: NextHopGroups, used: dict[GroupKey, int]) -> list[Flow]:
    """Host flows for resolved neighbours inside directly connected subnets."""
    out = []
    for n in neighbours:
        if not n.resolved:
            continue
        ip = ipaddress.IPv4Address(n.ip)
        best = None
        for net, dev in connected:
            if dev == n.dev and ip in net and (best is None or net.prefixlen > best.prefixlen):
                best = net
        if best is None:
            continue
        key = group_key([NextHop(dev=n.dev, gateway=n.ip)])
        gid = used.setdefault(key, groups.id_for(key))
        out.append(Flow(T_ROUTE, route_priority(best.prefixlen) + 1,
                        (f"reg0={vr_id}", "ip", f"nw_dst={n.ip}"), (f"group:{gid}",)))
    return out
