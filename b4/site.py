"""A site controller's logic, without OpenFlow I/O: ops in, messages and acks out.

`SiteLogic` is what `b4.ofc` wraps: it owns one site's op state machine (`OpReceiver`),
its installed TE entries (`SiteTed`), and per switch the LPM table it installed and the link
state it routes on. Every method returns the messages to send per switch; the caller sends
them, follows them with a barrier and reports the barrier's outcome back (`op_done`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterable

from b4 import flows
from b4.model import WanConfig
from b4.ted import Ted
from b4.teops import APPLY, ERROR, IGNORE, OK, REPLY, Ack, Op, OpReceiver, SiteTed, ack_for

log = logging.getLogger(__name__)


@dataclass
class SwitchState:
    name: str
    lpm: dict[str, tuple] | None = None  # None: unknown (install everything)
    groups: set[int] = field(default_factory=set)
    down_ports: set[int] = field(default_factory=set)
    ted: Ted = field(default_factory=dict)  # the TE entries this switch holds


class SiteLogic:
    """One site: its switches' pipeline, LPM routes and TE entries."""

    def __init__(self, wan: WanConfig, site: str):
        self.wan = wan
        self.site = site
        self.cfg = wan.sites[site]
        self.receiver = OpReceiver(site)
        self.ted = SiteTed(site, wan.neighbors(site))
        self.switches = {s: SwitchState(s) for s in self.cfg.switches}
        self.remote_down: set[str] = set()  # links reported down by the TE server
        self._undo: dict[tuple[int, int], tuple[Any, Any, dict]] = {}  # (session, seq) -> (key, old, per switch)

    # -- link state and routing --------------------------------------------------------------
    def down_links(self) -> set[str]:
        down = set(self.remote_down)
        for st in self.switches.values():
            sw = self.wan.switches[st.name]
            down |= {sw.port_links[p] for p in st.down_ports if p in sw.port_links}
        return down

    def _lpm(self, sw_name: str) -> dict[str, tuple]:
        sw = self.wan.switches[sw_name]
        return flows.lpm_entries(self.wan, sw, self.wan.routes(self.site, self.down_links()))

    def route_msgs(self, dp: Any, sw_name: str) -> list[Any]:
        """LPM changes for one switch since what it last got."""
        st = self.switches[sw_name]
        new = self._lpm(sw_name)
        msgs = flows.lpm_flows(dp, self.wan, self.wan.switches[sw_name], new, st.lpm)
        st.lpm = new
        return msgs

    def set_port(self, sw_name: str, port: int, up: bool) -> bool:
        """Record a port's state; returns whether it changed."""
        st = self.switches[sw_name]
        before = port in st.down_ports
        (st.down_ports.discard if up else st.down_ports.add)(port)
        return before != (not up)

    def set_remote_down(self, links: Iterable[str]) -> bool:
        new = {ln for ln in links if ln in self.wan.links}
        changed = new != self.remote_down
        self.remote_down = new
        return changed

    # -- switch (re)connection ---------------------------------------------------------------
    def switch_up(self, dp: Any, sw_name: str, flow_stats: Iterable[Any], group_desc: Iterable[Any],
                  down_ports: Iterable[int] = ()) -> list[Any]:
        """A switch connected (or this controller became master): adopt what it holds and
        return what makes its pipeline, trunks and LPM table right. TE entries are left as
        found; the TE server learns them from `installed` and diffs against its own view."""
        groups = list(group_desc)
        flow_stats = list(flow_stats)
        ted, lpm = flows.ted_from_switch(self.wan, flow_stats, groups)
        st = self.switches[sw_name]
        st.groups = {g.group_id for g in groups}
        st.down_ports = set(down_ports)
        st.lpm = lpm
        st.ted = dict(ted)
        self._site_ted()
        msgs = flows.base_flows(dp, self.wan.switches[sw_name])
        msgs += flows.trunk_groups(dp, self.wan, self.wan.switches[sw_name], st.groups)
        msgs += self.route_msgs(dp, sw_name)
        msgs = flows.drop_unchanged(msgs, flow_stats, groups)
        st.groups |= {flows.trunk_gid(self.wan.sites[n].index) for n in self.wan.switches[sw_name].trunks}
        st.groups.add(flows.POP_ROUTE_GID)
        log.info("site %s switch %s: resynced %d TE entries, %d LPM routes", self.site, sw_name, len(ted), len(lpm))
        return msgs

    def _site_ted(self) -> None:
        """The site's TED is what every one of its switches holds (the TE server re-sends the
        rest; ops are idempotent)."""
        teds = [st.ted for st in self.switches.values()]
        self.ted.entries = {k: v for k, v in teds[0].items() if all(t.get(k) == v for t in teds[1:])}

    def installed(self) -> Ted:
        return dict(self.ted.entries)

    # -- TE ops ------------------------------------------------------------------------------
    def handle_op(self, dps: dict[str, Any], op: Op) -> tuple[Ack | None, dict[str, list[Any]]]:
        """Check and apply one op. Returns (ack now, or None if the ack waits for the
        switches' barriers; messages per switch). A None ack with no messages means a
        duplicate of an op still in progress: say nothing."""
        if op.site != self.site:
            return ack_for(op, ERROR, f"this controller has no site {op.site}"), {}
        verdict, ack = self.receiver.admit(op)
        if verdict == REPLY:
            return ack, {}
        if verdict == IGNORE:
            return None, {}
        assert verdict == APPLY
        why = self.ted.check(op)
        if why is not None:
            log.warning("site %s: op %d (%s %s %s) refused: %s", self.site, op.seq, op.action, op.kind, op.id, why)
            ack = ack_for(op, ERROR, why)
            self.receiver.complete(op, ack)
            return ack, {}
        old, new = self.ted.apply(op)
        msgs, olds = {}, {}
        for name, dp in dps.items():
            st = self.switches[name]
            olds[name] = st.ted.get(op.key)
            msgs[name] = flows.te_entry_msgs(dp, self.wan, op.kind, olds[name], new)
            if new is None:
                st.ted.pop(op.key, None)
            else:
                st.ted[op.key] = dict(new)
        if not any(msgs.values()):
            ack = ack_for(op, OK)
            self.receiver.complete(op, ack)
            return ack, {}
        self._undo[(op.session, op.seq)] = (op.key, old, olds)
        return None, msgs

    def op_done(self, op: Op, error: str | None = None) -> Ack:
        """The switches' barrier for ``op`` came back (with an OpenFlow error, or not)."""
        ack = ack_for(op, OK) if error is None else ack_for(op, ERROR, error)
        key, old, olds = self._undo.pop((op.session, op.seq), (op.key, None, {}))
        if error is not None:
            # The switch refused: the entry is what it was (as far as we know).
            for name, o in olds.items():
                if o is None:
                    self.switches[name].ted.pop(key, None)
                else:
                    self.switches[name].ted[key] = o
            if old is None:
                self.ted.entries.pop(key, None)
            else:
                self.ted.entries[key] = old
            log.warning("site %s: op %d (%s %s %s) failed in the switch: %s",
                        self.site, op.seq, op.action, op.kind, op.id, error)
        self.receiver.complete(op, ack)
        return ack
