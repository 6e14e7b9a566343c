"""A simulated OpenFlow 1.3 switch that applies os-ken messages, for testing `b4.flows`.

Like Faucet's fake OpenFlow table: flow and group mods are applied to in-memory tables with
OpenFlow's semantics (add replaces an entry with the same match and priority, strict and
non-strict deletes, group add/modify/delete errors), and packets, as dicts of header fields,
are traced through the pipeline. Select groups do not pick one bucket: a trace returns every
outcome with its probability (bucket weight over the live buckets' total), so tests can
check splits exactly. Only what the B4 pipeline uses is modelled.
"""
from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from os_ken.ofproto import ofproto_v1_3 as ofp
from os_ken.ofproto import ofproto_v1_3_parser as parser

log = logging.getLogger(__name__)


class FakeDatapath:
    """What the message builders need of a datapath (OpenFlow 1.3)."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int = 1):
        self.id = dpid


@dataclass
class SimFlow:
    table_id: int
    priority: int
    match: Any
    instructions: list
    cookie: int = 0
    packets: int = 0


@dataclass
class SimGroup:
    group_id: int
    type: int
    buckets: list


@dataclass
class Outcome:
    """One way a packet can leave the switch: the port, the packet as sent, the probability."""

    port: int
    packet: dict[str, Any]
    probability: float


class OFError(Exception):
    def __init__(self, type_: int, code: int, what: str):
        super().__init__(what)
        self.type, self.code = type_, code


def _match_fields(match: Any) -> dict[str, Any]:
    return dict(match.items())


def _field_matches(name: str, want: Any, pkt: dict[str, Any]) -> bool:
    have = pkt.get(name)
    if name in ("ipv4_src", "ipv4_dst"):
        if have is None:
            return False
        if isinstance(want, tuple):
            net = ipaddress.IPv4Network(f"{want[0]}/{want[1]}", strict=False)
        else:
            net = ipaddress.IPv4Network(f"{want}/32")
        return ipaddress.IPv4Address(have) in net
    if name == "mpls_label":
        return bool(pkt.get("mpls")) and pkt["mpls"][-1] == want
    if name == "eth_type":
        return (0x8847 if pkt.get("mpls") else pkt.get("eth_type")) == want
    return have == want


class SimSwitch:
    """One switch: four tables' worth of flows, groups, ports with up/down state."""

    def __init__(self, name: str, ports: Iterable[int] = ()):
        self.name = name
        self.flows: list[SimFlow] = []
        self.groups: dict[int, SimGroup] = {}
        self.port_up: dict[int, bool] = {p: True for p in ports}
        self.errors: list[OFError] = []

    # -- control channel --------------------------------------------------------------------
    def apply(self, msgs: Iterable[Any]) -> list[OFError]:
        """Apply messages in order; errors are returned (and kept) like OFPT_ERROR replies."""
        errs = []
        for m in msgs:
            try:
                self._apply_one(m)
            except OFError as e:
                errs.append(e)
                self.errors.append(e)
        return errs

    def _apply_one(self, m: Any) -> None:
        name = type(m).__name__
        if name == "OFPFlowMod":
            self._flow_mod(m)
        elif name == "OFPGroupMod":
            self._group_mod(m)
        elif name in ("OFPBarrierRequest", "OFPRoleRequest", "OFPFlowStatsRequest", "OFPGroupDescStatsRequest"):
            pass
        else:
            raise OFError(ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_TYPE, f"unsupported message {name}")

    def _flow_mod(self, m: Any) -> None:
        cmd = m.command
        fields = _match_fields(m.match)
        if cmd == ofp.OFPFC_ADD:
            for g in self._groups_used(m.instructions):
                if g not in self.groups:
                    raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_OUT_GROUP, f"flow uses unknown group {g:#x}")
            self.flows = [f for f in self.flows if not (f.table_id == m.table_id and f.priority == m.priority
                                                         and _match_fields(f.match) == fields)]
            self.flows.append(SimFlow(m.table_id, m.priority, m.match, list(m.instructions), m.cookie))
        elif cmd == ofp.OFPFC_DELETE_STRICT:
            self.flows = [f for f in self.flows if not (f.table_id == m.table_id and f.priority == m.priority
                                                         and _match_fields(f.match) == fields)]
        elif cmd == ofp.OFPFC_DELETE:
            def covered(f: SimFlow) -> bool:
                if m.table_id != ofp.OFPTT_ALL and f.table_id != m.table_id:
                    return False
                if m.cookie_mask and (f.cookie & m.cookie_mask) != (m.cookie & m.cookie_mask):
                    return False
                ff = _match_fields(f.match)
                return all(ff.get(k) == v for k, v in fields.items())
            self.flows = [f for f in self.flows if not covered(f)]
        else:
            raise OFError(ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_BAD_COMMAND, f"flow command {cmd} not modelled")

    def _group_mod(self, m: Any) -> None:
        gid = m.group_id
        if m.command == ofp.OFPGC_ADD:
            if gid in self.groups:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_GROUP_EXISTS, f"group {gid:#x} exists")
            self._check_buckets(m)
            self.groups[gid] = SimGroup(gid, m.type, list(m.buckets))
        elif m.command == ofp.OFPGC_MODIFY:
            if gid not in self.groups:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_UNKNOWN_GROUP, f"group {gid:#x} unknown")
            self._check_buckets(m)
            self.groups[gid] = SimGroup(gid, m.type, list(m.buckets))
        elif m.command == ofp.OFPGC_DELETE:
            self.groups.pop(gid, None)
            # OpenFlow: deleting a group removes the flows that forward to it.
            self.flows = [f for f in self.flows if gid not in self._groups_used(f.instructions)]
        else:
            raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_BAD_COMMAND, "bad group command")

    def _check_buckets(self, m: Any) -> None:
        for b in m.buckets:
            for a in b.actions:
                if type(a).__name__ == "OFPActionGroup" and a.group_id not in self.groups:
                    raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_CHAINING_UNSUPPORTED,
                                  f"group {m.group_id:#x} chains to unknown group {a.group_id:#x}")
            if b.watch_group != ofp.OFPG_ANY and b.watch_group not in self.groups:
                raise OFError(ofp.OFPET_GROUP_MOD_FAILED, ofp.OFPGMFC_WATCH_UNSUPPORTED,
                              f"group {m.group_id:#x} watches unknown group {b.watch_group:#x}")

    @staticmethod
    def _groups_used(instructions: Iterable[Any]) -> set[int]:
        out = set()
        for inst in instructions:
            for a in getattr(inst, "actions", []):
                if type(a).__name__ == "OFPActionGroup":
                    out.add(a.group_id)
        return out

    # -- stats (what a controller reads back) ------------------------------------------------
    def flow_stats(self) -> list[SimFlow]:
        return list(self.flows)

    def group_desc(self) -> list[SimGroup]:
        return list(self.groups.values())

    def table(self, table_id: int) -> list[SimFlow]:
        return sorted((f for f in self.flows if f.table_id == table_id), key=lambda f: -f.priority)

    # -- data plane -------------------------------------------------------------------------
    def set_port(self, port: int, up: bool) -> None:
        self.port_up[port] = up

    def _port_alive(self, port: int) -> bool:
        return port == ofp.OFPP_ANY or self.port_up.get(port, False)

    def group_alive(self, gid: int, depth: int = 0) -> bool:
        g = self.groups.get(gid)
        return g is not None and depth < 32 and any(self._bucket_alive(b, depth + 1) for b in g.buckets)

    def _bucket_alive(self, b: Any, depth: int = 0) -> bool:
        if b.watch_port != ofp.OFPP_ANY and not self._port_alive(b.watch_port):
            return False
        if b.watch_group != ofp.OFPG_ANY and not self.group_alive(b.watch_group, depth):
            return False
        return True

    def lookup(self, table_id: int, pkt: dict[str, Any]) -> SimFlow | None:
        for f in self.table(table_id):
            if all(_field_matches(k, v, pkt) for k, v in _match_fields(f.match).items()):
                return f
        return None

    def process(self, pkt: dict[str, Any], in_port: int) -> list[Outcome]:
        """Every way ``pkt`` arriving on ``in_port`` can leave, with probabilities."""
        pkt = {**pkt, "in_port": in_port, "mpls": list(pkt.get("mpls", []))}
        return self._run_table(0, pkt, 1.0, 0)

    def _run_table(self, table_id: int, pkt: dict[str, Any], prob: float, depth: int) -> list[Outcome]:
        if depth > 64:
            return []
        f = self.lookup(table_id, pkt)
        if f is None:
            return []
        f.packets += 1
        acts, goto = [], None
        for inst in f.instructions:
            if hasattr(inst, "actions"):
                acts.extend(inst.actions)
            elif hasattr(inst, "table_id"):
                goto = inst.table_id
        outs, pkt2 = self._run_actions(acts, pkt, prob, depth)
        if goto is not None and pkt2 is not None:
            outs += self._run_table(goto, pkt2, prob, depth + 1)
        return outs

    def _run_actions(self, acts: Iterable[Any], pkt: dict[str, Any], prob: float,
                     depth: int) -> tuple[list[Outcome], dict[str, Any] | None]:
        """Apply actions in order; returns outputs and the packet afterwards (None: dropped)."""
        pkt = {**pkt, "mpls": list(pkt["mpls"])}
        outs: list[Outcome] = []
        for a in acts:
            n = type(a).__name__
            if n == "OFPActionOutput":
                port = pkt["in_port"] if a.port == ofp.OFPP_IN_PORT else a.port
                if (a.port == ofp.OFPP_IN_PORT or port != pkt["in_port"]) and self._port_alive(port):
                    outs.append(Outcome(port, {k: v for k, v in pkt.items() if k != "in_port"}, prob))
            elif n == "OFPActionGroup":
                outs += self._run_group(a.group_id, pkt, prob, depth + 1)
            elif n == "OFPActionPushMpls":
                pkt["mpls"].append(0)
            elif n == "OFPActionPopMpls":
                if not pkt["mpls"]:
                    return outs, None
                pkt["mpls"].pop()
                pkt["eth_type"] = a.ethertype
            elif n == "OFPActionSetField":
                if a.key == "mpls_label":
                    if not pkt["mpls"]:
                        return outs, None
                    pkt["mpls"][-1] = a.value
                else:
                    pkt[a.key] = a.value
            elif n == "OFPActionDecNwTtl":
                ttl = pkt.get("ttl", 64)
                if ttl <= 1:
                    return outs, None
                pkt["ttl"] = ttl - 1
            elif n == "NXActionResubmitTable":
                outs += self._run_table(a.table_id, pkt, prob, depth + 1)
            else:
                raise OFError(ofp.OFPET_BAD_ACTION, ofp.OFPBAC_BAD_TYPE, f"action {n} not modelled")
        return outs, pkt

    def _run_group(self, gid: int, pkt: dict[str, Any], prob: float, depth: int) -> list[Outcome]:
        g = self.groups.get(gid)
        if g is None or depth > 32:
            return []
        live = [b for b in g.buckets if self._bucket_alive(b)]
        if not live:
            return []
        if g.type == ofp.OFPGT_SELECT:
            total = sum(b.weight for b in live)
            chosen = [(b, b.weight / total) for b in live if b.weight > 0] if total else []
        elif g.type == ofp.OFPGT_FF:
            chosen = [(live[0], 1.0)]
        elif g.type == ofp.OFPGT_ALL:
            chosen = [(b, 1.0) for b in live]
        else:  # indirect
            chosen = [(live[0], 1.0)]
        outs: list[Outcome] = []
        for b, p in chosen:
            o, _ = self._run_actions(b.actions, pkt, prob * p, depth)
            outs += o
        return outs


@dataclass
class Delivery:
    """Where a traced packet ended up, with its probability and the label stacks it carried."""

    switch: str
    port: int
    packet: dict[str, Any]
    probability: float
    hops: list[tuple[str, tuple[int, ...]]] = field(default_factory=list)  # (switch, labels on leaving)


class SimNetwork:
    """Switches joined by links; traces a packet from a host port to wherever it is delivered."""

    def __init__(self) -> None:
        self.switches: dict[str, SimSwitch] = {}
        self.links: dict[tuple[str, int], tuple[str, int]] = {}

    def add_switch(self, sw: SimSwitch) -> SimSwitch:
        self.switches[sw.name] = sw
        return sw

    def link(self, a: str, pa: int, b: str, pb: int) -> None:
        self.links[(a, pa)] = (b, pb)
        self.links[(b, pb)] = (a, pa)

    def set_link(self, a: str, pa: int, up: bool) -> None:
        b, pb = self.links[(a, pa)]
        self.switches[a].set_port(pa, up)
        self.switches[b].set_port(pb, up)

    def trace(self, switch: str, in_port: int, pkt: dict[str, Any], max_hops: int = 32) -> list[Delivery]:
        todo = [(switch, in_port, pkt, 1.0, [])]
        out: list[Delivery] = []
        while todo:
            sw, port, p, prob, hops = todo.pop()
            if len(hops) > max_hops:
                raise RuntimeError(f"forwarding loop: {hops}")
            for o in self.switches[sw].process(p, port):
                h = hops + [(sw, tuple(o.packet.get("mpls", [])))]
                peer = self.links.get((sw, o.port))
                if peer is None:
                    out.append(Delivery(sw, o.port, o.packet, prob * o.probability, h))
                else:
                    todo.append((peer[0], peer[1], o.packet, prob * o.probability, h))
        return out
