"""Pure OpenFlow 1.3 logic of a B4 site switch: functions that return os-ken messages.

Nothing here talks to a switch (Faucet style): `b4.ofc` sends what these functions return,
and the unit tests apply it to a simulated table (`b4.simswitch`). Every function takes a
``dp``: anything with ``ofproto`` and ``ofproto_parser`` (an os-ken Datapath, or a stand-in
with the negotiated version's modules).

Pipeline::

    table 0 CLASSIFY  MPLS -> table 2; IPv4 from a local host -> table 1, from the WAN ->
                      table 3; anything else dropped
    table 1 ACL       flow groups: src/dst site prefix (+DSCP) -> tunnel group; miss -> table 3
    table 2 MPLS      tunnel label -> transit group (forward) or pop + table 3 (decap)
    table 3 LPM       site prefixes -> trunk toward the next site (or back out of the in-port
                      for packets that came from there); local hosts /32 -> host port

Groups::

    trunk (select)        one per neighbour site: its member ports, each bucket watching its port
    tunnel head (ff)      one per tunnel at encap and transit sites: push (encap) or keep the
                          label and go to the next site's trunk, alive while that trunk is;
                          at transit a second bucket goes to pop-and-route
    pop-and-route (ind.)  pops the label and resubmits to the LPM table
    tunnel group (select) one per flow group at the encap site: a weighted bucket per tunnel,
                          each watching its tunnel head (so a dead tunnel is skipped at once)

The ACL table has strict precedence over LPM (it is looked up first; LPM only on a miss), so
removing the TE entries falls back to shortest-path routing.
"""
from __future__ import annotations

import ipaddress
import logging
from typing import Any, Iterable, Mapping, Protocol

from b4.model import SwitchConfig, WanConfig
from b4.ted import FLOW_GROUP, TUNNEL, TUNNEL_GROUP, Key, Ted, flow_group_entry, fg_id_str, group_id_str, \
    tunnel_entry, tunnel_id

log = logging.getLogger(__name__)

TABLE_CLASSIFY, TABLE_ACL, TABLE_MPLS, TABLE_LPM = 0, 1, 2, 3
ETH_IPV4, ETH_MPLS = 0x0800, 0x8847

PRIO_CLASSIFY = 100
PRIO_FLOW_GROUP, PRIO_FLOW_GROUP_DSCP = 1000, 1100
PRIO_TUNNEL = 1000
PRIO_LPM_BASE = 100  # + prefix length
PRIO_MISS = 0

COOKIE_KIND_SHIFT = 56
COOKIE_KIND_MASK = 0xFF << COOKIE_KIND_SHIFT
COOKIE_BASE, COOKIE_LPM, COOKIE_FG, COOKIE_TUNNEL = (k << COOKIE_KIND_SHIFT for k in (1, 2, 3, 4))
LPM_HAIRPIN_FLAG = 1 << 8

POP_ROUTE_GID = 0x10             # indirect: pop the label, route by LPM (always alive)
TRUNK_GROUP_BASE = 0x100          # + site index
TUNNEL_GROUP_BASE = 0x100000      # + MPLS label (< 2**20)
TG_GROUP_BASE = 0x200000          # + tunnel-group id (<= 0xFFFF)


class DatapathLike(Protocol):
    ofproto: Any
    ofproto_parser: Any


def trunk_gid(site_index: int) -> int:
    return TRUNK_GROUP_BASE + site_index


def tunnel_gid(label: int) -> int:
    return TUNNEL_GROUP_BASE + label


def tg_gid(group_id: int) -> int:
    return TG_GROUP_BASE + group_id


def _prefix_match(prefix: str) -> tuple[str, str]:
    net = ipaddress.IPv4Network(prefix)
    return str(net.network_address), str(net.netmask)


def _flow_mod(dp: DatapathLike, table: int, priority: int, match: Any, *, actions: list | None = None,
              goto: int | None = None, cookie: int = 0, command: int | None = None) -> Any:
    ofp, p = dp.ofproto, dp.ofproto_parser
    inst = []
    if actions:
        inst.append(p.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, actions))
    if goto is not None:
        inst.append(p.OFPInstructionGotoTable(goto))
    return p.OFPFlowMod(dp, cookie=cookie, cookie_mask=0, table_id=table,
                        command=ofp.OFPFC_ADD if command is None else command,
                        idle_timeout=0, hard_timeout=0, priority=priority, buffer_id=ofp.OFP_NO_BUFFER,
                        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, flags=0, match=match,
                        instructions=inst)


def _delete_strict(dp: DatapathLike, table: int, priority: int, match: Any) -> Any:
    ofp, p = dp.ofproto, dp.ofproto_parser
    return p.OFPFlowMod(dp, cookie=0, cookie_mask=0, table_id=table, command=ofp.OFPFC_DELETE_STRICT,
                        idle_timeout=0, hard_timeout=0, priority=priority, buffer_id=ofp.OFP_NO_BUFFER,
                        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, flags=0, match=match, instructions=[])


def _group_mod(dp: DatapathLike, command: int, gtype: int, gid: int, buckets: list) -> Any:
    return dp.ofproto_parser.OFPGroupMod(dp, command, gtype, gid, buckets)


def barrier(dp: DatapathLike) -> Any:
    return dp.ofproto_parser.OFPBarrierRequest(dp)


# --------------------------------------------------------------------------- base pipeline

def base_flows(dp: DatapathLike, sw: SwitchConfig) -> list[Any]:
    """Table-miss and classification entries (idempotent adds). Only IPv4 from the site's
    own hosts is looked up in the ACL table: traffic from the WAN was classified at its
    ingress site, and re-classifying it (say, after a transit popped a broken tunnel's label
    and routed it back) would encapsulate it again."""
    p = dp.ofproto_parser
    out = [
        _flow_mod(dp, TABLE_CLASSIFY, PRIO_CLASSIFY, p.OFPMatch(eth_type=ETH_MPLS), goto=TABLE_MPLS, cookie=COOKIE_BASE),
        _flow_mod(dp, TABLE_CLASSIFY, PRIO_CLASSIFY, p.OFPMatch(eth_type=ETH_IPV4), goto=TABLE_LPM, cookie=COOKIE_BASE),
        _flow_mod(dp, TABLE_CLASSIFY, PRIO_MISS, p.OFPMatch(), cookie=COOKIE_BASE),  # drop
        _flow_mod(dp, TABLE_ACL, PRIO_MISS, p.OFPMatch(), goto=TABLE_LPM, cookie=COOKIE_BASE),
        _flow_mod(dp, TABLE_MPLS, PRIO_MISS, p.OFPMatch(), cookie=COOKIE_BASE),
        _flow_mod(dp, TABLE_LPM, PRIO_MISS, p.OFPMatch(), cookie=COOKIE_BASE),
    ]
    for h in sw.host_ports:
        out.append(_flow_mod(dp, TABLE_CLASSIFY, PRIO_CLASSIFY + 10, p.OFPMatch(in_port=h.port, eth_type=ETH_IPV4),
                             goto=TABLE_ACL, cookie=COOKIE_BASE))
    return out


def trunk_groups(dp: DatapathLike, wan: WanConfig, sw: SwitchConfig, existing: Iterable[int] = ()) -> list[Any]:
    """One select group per neighbour site over the member ports (each bucket watches its
    port, so a dead member is skipped by the data plane itself), and the pop-and-route group
    a broken transit tunnel falls back to."""
    ofp, p = dp.ofproto, dp.ofproto_parser
    have = set(existing)
    out = []
    for nbr, ports in sorted(sw.trunks.items()):
        gid = trunk_gid(wan.sites[nbr].index)
        buckets = [p.OFPBucket(weight=1, watch_port=port, watch_group=ofp.OFPG_ANY,
                               actions=[p.OFPActionOutput(port)]) for port in ports]
        cmd = ofp.OFPGC_MODIFY if gid in have else ofp.OFPGC_ADD
        out.append(_group_mod(dp, cmd, ofp.OFPGT_SELECT, gid, buckets))
    pop = [p.OFPBucket(weight=0, watch_port=ofp.OFPP_ANY, watch_group=ofp.OFPG_ANY,
                       actions=[p.OFPActionPopMpls(ETH_IPV4), p.NXActionResubmitTable(in_port=0xFFF8, table_id=TABLE_LPM)])]
    out.append(_group_mod(dp, ofp.OFPGC_MODIFY if POP_ROUTE_GID in have else ofp.OFPGC_ADD, ofp.OFPGT_INDIRECT,
                          POP_ROUTE_GID, pop))
    return out


def lpm_entries(wan: WanConfig, sw: SwitchConfig, routes: Mapping[str, str | None]) -> dict[str, tuple]:
    """The LPM table as ``{prefix: action key}``: ``("host", port, mac)`` for a local host,
    ``("site", neighbour)`` for a remote site (only neighbours this switch has a trunk to)."""
    site = wan.sites[sw.site]
    out: dict[str, tuple] = {}
    for prefix, nh in routes.items():
        if nh is None:
            continue
        if nh in sw.trunks:
            out[prefix] = ("site", nh)
    for h in sw.host_ports:
        out[f"{h.ip}/32"] = ("host", h.port, h.mac)
    del site
    return out


def _lpm_specs(wan: WanConfig, sw: SwitchConfig, entries: Mapping[str, tuple]) -> dict[tuple, tuple]:
    """LPM entries as flows: ``{(priority, prefix, in_port): action key}``.

    A remote prefix gets one flow to its trunk group, plus one per trunk member port that
    matches packets arriving on it and sends them back out of it (OpenFlow drops output to
    the in-port otherwise): a transit switch whose tunnel broke pops the label and routes by
    LPM, and that route may lead back the way the packet came."""
    out: dict[tuple, tuple] = {}
    for prefix, action in entries.items():
        plen = ipaddress.IPv4Network(prefix).prefixlen
        out[(PRIO_LPM_BASE + 2 * plen, prefix, None)] = action
        if action[0] == "site":
            for port in sw.trunks.get(action[1], ()):
                out[(PRIO_LPM_BASE + 2 * plen + 1, prefix, port)] = ("hairpin",)
    return out


def _lpm_flow(dp: DatapathLike, wan: WanConfig, sw: SwitchConfig, key: tuple, action: tuple) -> Any:
    ofp, p = dp.ofproto, dp.ofproto_parser
    prio, prefix, in_port = key
    plen = ipaddress.IPv4Network(prefix).prefixlen
    kw: dict[str, Any] = {"eth_type": ETH_IPV4, "ipv4_dst": _prefix_match(prefix)}
    if in_port is not None:
        kw["in_port"] = in_port
    if action[0] == "host":
        _, port, mac = action
        acts = [p.OFPActionSetField(eth_src=wan.sites[sw.site].gateway_mac), p.OFPActionSetField(eth_dst=mac),
                p.OFPActionDecNwTtl(), p.OFPActionOutput(port)]
    elif action[0] == "hairpin":
        acts = [p.OFPActionDecNwTtl(), p.OFPActionOutput(ofp.OFPP_IN_PORT)]
    else:
        acts = [p.OFPActionDecNwTtl(), p.OFPActionGroup(trunk_gid(wan.sites[action[1]].index))]
    cookie = COOKIE_LPM | (LPM_HAIRPIN_FLAG if in_port is not None else 0) | plen
    return _flow_mod(dp, TABLE_LPM, prio, p.OFPMatch(**kw), actions=acts, cookie=cookie)


def lpm_flows(dp: DatapathLike, wan: WanConfig, sw: SwitchConfig, new: Mapping[str, tuple],
              old: Mapping[str, tuple] | None = None) -> list[Any]:
    """Messages turning LPM table ``old`` (None: unknown, install everything) into ``new``."""
    p = dp.ofproto_parser
    want = _lpm_specs(wan, sw, new)
    have = _lpm_specs(wan, sw, old) if old is not None else None
    out = []
    for key, action in sorted(want.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] or 0)):
        if have is None or have.get(key) != action:
            out.append(_lpm_flow(dp, wan, sw, key, action))
    for key in sorted(set(have or {}) - set(want), key=lambda k: (k[0], k[1], k[2] or 0)):
        prio, prefix, in_port = key
        kw: dict[str, Any] = {"eth_type": ETH_IPV4, "ipv4_dst": _prefix_match(prefix)}
        if in_port is not None:
            kw["in_port"] = in_port
        out.append(_delete_strict(dp, TABLE_LPM, prio, p.OFPMatch(**kw)))
    return out


# --------------------------------------------------------------------------- TE entries

def _tunnel_flow_match(dp: DatapathLike, label: int) -> Any:
    return dp.ofproto_parser.OFPMatch(eth_type=ETH_MPLS, mpls_label=label)


def _tunnel_head_buckets(dp: DatapathLike, wan: WanConfig, e: Mapping[str, Any]) -> list[Any]:
    ofp, p = dp.ofproto, dp.ofproto_parser
    trunk = trunk_gid(wan.sites[e["next_hop"]].index)
    if e["role"] == "encap":
        acts = [p.OFPActionPushMpls(ETH_MPLS), p.OFPActionSetField(mpls_label=e["label"]), p.OFPActionGroup(trunk)]
        return [p.OFPBucket(weight=0, watch_port=ofp.OFPP_ANY, watch_group=trunk, actions=acts)]
    # transit: forward while the next site's trunk lives; else pop and route by LPM
    fwd = p.OFPBucket(weight=0, watch_port=ofp.OFPP_ANY, watch_group=trunk, actions=[p.OFPActionGroup(trunk)])
    # (a fast-failover bucket must watch something: the pop-and-route group is always alive)
    fallback = p.OFPBucket(weight=0, watch_port=ofp.OFPP_ANY, watch_group=POP_ROUTE_GID,
                           actions=[p.OFPActionGroup(POP_ROUTE_GID)])
    return [fwd, fallback]


def _tunnel_msgs(dp: DatapathLike, wan: WanConfig, old: Mapping[str, Any] | None,
                 new: Mapping[str, Any] | None) -> list[Any]:
    ofp, p = dp.ofproto, dp.ofproto_parser
    e = new or old
    assert e is not None
    label = e["label"]
    gid = tunnel_gid(label)
    had_group = old is not None and old["role"] in ("encap", "transit")
    had_flow = old is not None and old["role"] in ("transit", "decap")
    out: list[Any] = []
    if new is None:
        if had_flow:
            out.append(_delete_strict(dp, TABLE_MPLS, PRIO_TUNNEL, _tunnel_flow_match(dp, label)))
        if had_group:
            out.append(_group_mod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_FF, gid, []))
        return out
    role = new["role"]
    if role in ("encap", "transit"):
        cmd = ofp.OFPGC_MODIFY if had_group else ofp.OFPGC_ADD
        out.append(_group_mod(dp, cmd, ofp.OFPGT_FF, gid, _tunnel_head_buckets(dp, wan, new)))
    if role == "transit":
        out.append(_flow_mod(dp, TABLE_MPLS, PRIO_TUNNEL, _tunnel_flow_match(dp, label),
                             actions=[p.OFPActionGroup(gid)], cookie=COOKIE_TUNNEL | label))
    elif role == "decap":
        out.append(_flow_mod(dp, TABLE_MPLS, PRIO_TUNNEL, _tunnel_flow_match(dp, label),
                             actions=[p.OFPActionPopMpls(ETH_IPV4)], goto=TABLE_LPM, cookie=COOKIE_TUNNEL | label))
    elif had_flow:  # encap now, transit before: the label no longer arrives here
        out.append(_delete_strict(dp, TABLE_MPLS, PRIO_TUNNEL, _tunnel_flow_match(dp, label)))
    if role == "decap" and had_group:
        out.append(_group_mod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_FF, gid, []))
    return out


def _tg_msgs(dp: DatapathLike, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[Any]:
    ofp, p = dp.ofproto, dp.ofproto_parser
    e = new or old
    assert e is not None
    gid = tg_gid(e["group_id"])
    if new is None:
        return [_group_mod(dp, ofp.OFPGC_DELETE, ofp.OFPGT_SELECT, gid, [])]
    buckets = []
    for b in new["buckets"]:
        head = tunnel_gid(int(b["tunnel"][1:]))
        buckets.append(p.OFPBucket(weight=int(b["weight"]), watch_port=ofp.OFPP_ANY, watch_group=head,
                                   actions=[p.OFPActionGroup(head)]))
    cmd = ofp.OFPGC_MODIFY if old is not None else ofp.OFPGC_ADD
    return [_group_mod(dp, cmd, ofp.OFPGT_SELECT, gid, buckets)]


def _fg_match(dp: DatapathLike, e: Mapping[str, Any]) -> tuple[Any, int]:
    kw: dict[str, Any] = {"eth_type": ETH_IPV4, "ipv4_src": _prefix_match(e["src"]), "ipv4_dst": _prefix_match(e["dst"])}
    prio = PRIO_FLOW_GROUP
    if e.get("dscp") is not None:
        kw["ip_dscp"] = int(e["dscp"])
        prio = PRIO_FLOW_GROUP_DSCP
    return dp.ofproto_parser.OFPMatch(**kw), prio


def _fg_msgs(dp: DatapathLike, old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[Any]:
    p = dp.ofproto_parser
    out = []
    def key(fg: Mapping[str, Any]) -> tuple[Any, ...]:
        return fg["src"], fg["dst"], fg.get("dscp")

    if old is not None and (new is None or key(old) != key(new)):
        m, prio = _fg_match(dp, old)
        out.append(_delete_strict(dp, TABLE_ACL, prio, m))
    if new is not None:
        m, prio = _fg_match(dp, new)
        gid = tg_gid(int(new["tunnel_group"][1:]))
        out.append(_flow_mod(dp, TABLE_ACL, prio, m, actions=[p.OFPActionGroup(gid)],
                             cookie=COOKIE_FG | int(new["fg_id"])))
    return out


def te_entry_msgs(dp: DatapathLike, wan: WanConfig, kind: str, old: Mapping[str, Any] | None,
                  new: Mapping[str, Any] | None) -> list[Any]:
    """Messages that change one TE entry from ``old`` (None: absent) to ``new`` (None: delete)."""
    if old is None and new is None:
        return []
    if kind == TUNNEL:
        return _tunnel_msgs(dp, wan, old, new)
    if kind == TUNNEL_GROUP:
        return _tg_msgs(dp, old, new)
    if kind == FLOW_GROUP:
        return _fg_msgs(dp, old, new)
    raise ValueError(f"unknown TE entry kind {kind!r}")


def te_off_msgs(dp: DatapathLike, wan: WanConfig, ted: Mapping[Key, Mapping[str, Any]]) -> list[Any]:
    """Remove every TE entry of ``ted`` in safe order (flow groups, groups, tunnels)."""
    out = []
    for kind in (FLOW_GROUP, TUNNEL_GROUP, TUNNEL):
        for (k, _), e in sorted(ted.items()):
            if k == kind:
                out.extend(te_entry_msgs(dp, wan, kind, e, None))
    return out


# --------------------------------------------------------------------------- resync

def _prefix_of(value: Any) -> str:
    if isinstance(value, tuple):
        addr, mask = value
        return str(ipaddress.IPv4Network(f"{addr}/{mask}", strict=False))
    return f"{value}/32"


def _actions(inst_list: Iterable[Any]) -> tuple[list[Any], int | None]:
    acts, goto = [], None
    for inst in inst_list:
        if hasattr(inst, "actions"):
            acts.extend(inst.actions)
        elif hasattr(inst, "table_id"):
            goto = inst.table_id
    return acts, goto


def _group_action(acts: Iterable[Any]) -> int | None:
    for a in acts:
        if type(a).__name__ == "OFPActionGroup":
            return a.group_id
    return None


def ted_from_switch(wan: WanConfig, flows: Iterable[Any], groups: Iterable[Any]) -> tuple[Ted, dict[str, tuple]]:
    """Rebuild the TE entries and the LPM table a switch holds from its flow stats and group
    descriptions (what a new master controller does after a failover).

    ``flows``: objects with ``table_id``, ``cookie``, ``match``, ``instructions``; ``groups``:
    objects with ``group_id``, ``type`` and ``buckets``. Returns ``(ted, lpm entries)``."""
    site_by_trunk = {trunk_gid(s.index): s.name for s in wan.sites.values()}
    gmap = {g.group_id: g for g in groups}
    ted: Ted = {}
    label_flow: dict[int, str] = {}
    lpm: dict[str, tuple] = {}
    for f in flows:
        kind = f.cookie & COOKIE_KIND_MASK
        acts, goto = _actions(f.instructions)
        if f.table_id == TABLE_MPLS and kind == COOKIE_TUNNEL:
            label = f.match.get("mpls_label")
            if label is None:
                continue
            label_flow[int(label)] = "decap" if goto == TABLE_LPM else "transit"
        elif f.table_id == TABLE_ACL and kind == COOKIE_FG:
            gid = _group_action(acts)
            if gid is None or not TG_GROUP_BASE < gid <= TG_GROUP_BASE + 0xFFFF:
                continue
            fid = f.cookie & 0xFFFFFF
            e = flow_group_entry(fid, _prefix_of(f.match.get("ipv4_src")), _prefix_of(f.match.get("ipv4_dst")),
                                 gid - TG_GROUP_BASE, f.match.get("ip_dscp"))
            ted[(FLOW_GROUP, fg_id_str(fid))] = e
        elif f.table_id == TABLE_LPM and kind == COOKIE_LPM and not f.cookie & LPM_HAIRPIN_FLAG:
            prefix = _prefix_of(f.match.get("ipv4_dst"))
            gid = _group_action(acts)
            if gid in site_by_trunk:
                lpm[prefix] = ("site", site_by_trunk[gid])
            else:
                port = next((a.port for a in acts if type(a).__name__ == "OFPActionOutput"), None)
                mac = next((a.value for a in acts if type(a).__name__ == "OFPActionSetField" and a.key == "eth_dst"), None)
                if port is not None:
                    lpm[prefix] = ("host", port, mac)
    for gid, g in gmap.items():
        if TUNNEL_GROUP_BASE <= gid < TG_GROUP_BASE and g.buckets:
            label = gid - TUNNEL_GROUP_BASE
            nh = site_by_trunk.get(g.buckets[0].watch_group)
            if nh is None:
                continue
            role = "transit" if label_flow.get(label) == "transit" else "encap"
            ted[(TUNNEL, tunnel_id(label))] = tunnel_entry(label, role, nh)
        elif TG_GROUP_BASE < gid <= TG_GROUP_BASE + 0xFFFF:
            buckets = [(b.watch_group - TUNNEL_GROUP_BASE, b.weight) for b in g.buckets
                       if TUNNEL_GROUP_BASE <= b.watch_group < TG_GROUP_BASE]
            if buckets:
                from b4.ted import tunnel_group_entry

                ted[(TUNNEL_GROUP, group_id_str(gid - TG_GROUP_BASE))] = tunnel_group_entry(gid - TG_GROUP_BASE, buckets)
    for label, role in label_flow.items():
        if role == "decap":
            ted[(TUNNEL, tunnel_id(label))] = tunnel_entry(label, "decap", None)
    return ted, lpm


# --------------------------------------------------------------------------- idempotent resync

def _action_sig(a: Any) -> tuple:
    n = type(a).__name__
    if n == "OFPActionSetField":
        return (n, a.key, str(a.value))
    fields = ("port", "group_id", "ethertype", "table_id")
    return (n,) + tuple((f, getattr(a, f)) for f in fields if hasattr(a, f))


def _inst_sig(instructions: Iterable[Any]) -> tuple:
    out = []
    for inst in instructions:
        if hasattr(inst, "actions"):
            out.append(("actions", inst.type, tuple(_action_sig(a) for a in inst.actions)))
        elif hasattr(inst, "table_id"):
            out.append(("goto", inst.table_id))
    return tuple(sorted(out))


def _match_sig(match: Any) -> tuple:
    def norm(v: Any) -> str:
        if isinstance(v, tuple) and len(v) == 2 and v[1] == "255.255.255.255":
            return str(v[0])  # a switch reports an exact match without its mask
        return str(v)
    return tuple(sorted((k, norm(v)) for k, v in match.items()))


def _bucket_sig(buckets: Iterable[Any]) -> tuple:
    return tuple((b.weight, b.watch_port, b.watch_group, tuple(_action_sig(a) for a in b.actions)) for b in buckets)


def drop_unchanged(msgs: Iterable[Any], flow_stats: Iterable[Any], group_desc: Iterable[Any]) -> list[Any]:
    """Leave out adds and modifies that the switch already holds exactly (what a new master
    finds after a failover): re-sending them would only make the switch revalidate."""
    have_flows = {(f.table_id, f.priority, _match_sig(f.match)): (f.cookie, _inst_sig(f.instructions))
                  for f in flow_stats}
    have_groups = {g.group_id: (g.type, _bucket_sig(g.buckets)) for g in group_desc}
    out = []
    for m in msgs:
        name = type(m).__name__
        if name == "OFPFlowMod" and m.command == m.datapath.ofproto.OFPFC_ADD:
            if have_flows.get((m.table_id, m.priority, _match_sig(m.match))) == (m.cookie, _inst_sig(m.instructions)):
                continue
        elif name == "OFPGroupMod" and m.command in (m.datapath.ofproto.OFPGC_ADD, m.datapath.ofproto.OFPGC_MODIFY):
            if have_groups.get(m.group_id) == (m.type, _bucket_sig(m.buckets)):
                continue
        out.append(m)
    return out
