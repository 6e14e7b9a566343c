"""Mastership: which switches a site-controller replica is master of, and when they are ready.

B4 (§3.2, §4): a site's OFC replicas elect a master (Paxos; here ZooKeeper, `b4.election`);
the master claims its switches with an OpenFlow role request carrying the election's
generation id, reads their state back and resyncs their pipeline (a *take*); only then is a
switch *ready*, and a site whose switches are all ready accepts TE ops. A standby claims its
switches as SLAVE. A switch that refuses a message because it holds this replica as a
slave (OFPBRC_IS_SLAVE), or answers a role request with SLAVE, is not ready and is taken
again; a take that fails (no reply, refused) is retried after `RETAKE_DELAYS`.

Pure, like Faucet's ``valve.py`` under ``faucet.py``: `Mastership` takes events and ``now``
(monotonic seconds) and returns an `Out`: the OpenFlow messages to send (built with the
switch's negotiated parser, xids set), the events to push to the TE server, and the
outcomes of the batches the caller sent through it. `b4.ofc` feeds it os-ken's events
under one lock, sends what comes back in order (so role requests reach a switch in the
order of the role changes that decided them) and calls `tick` periodically for the timers.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from itertools import count
from typing import Any

from os_ken.ofproto import ofproto_v1_3

from b4 import flows
from b4.model import WanConfig
from b4.site import SiteLogic
from b4.ted import ted_to_json

log = logging.getLogger("b4.ofc")

MASTER, STANDBY = "master", "standby"
RESYNC_TIMEOUT = 10.0                      # for a take's stats replies, then for its resync barrier
RETAKE_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # between attempts to take a switch whose take failed
_STATS = ("flows", "groups", "ports")


def of_error_text(type_: int, code: int) -> str:
    """An OpenFlow error as op acks and logs carry it (the slave case is named: it means this
    controller's role at the switch is not what it believes)."""
    what = f"OpenFlow error type {type_} code {code}"
    if (type_, code) == (ofproto_v1_3.OFPET_BAD_REQUEST, ofproto_v1_3.OFPBRC_IS_SLAVE):
        what += " (is_slave)"
    return what


def is_slave_error(err: str | None) -> bool:
    return bool(err) and "(is_slave)" in err


def summarize(err: str, limit: int = 3) -> str:
    """'E; E; E; ...' -> 'E (x18)' when one error repeats (a refused batch repeats it per message)."""
    parts = err.split("; ")
    if len(parts) > 1 and len(set(parts)) == 1:
        return f"{parts[0]} (x{len(parts)})"
    return "; ".join(parts[:limit]) + (f"; ... ({len(parts)} errors)" if len(parts) > limit else "")


@dataclass
class Out:
    """What an event leads to: ``sends`` ((datapath, message), in order), ``events`` (for the
    TE server), ``done`` ((token, error or None) of the caller's batches whose barrier came
    back, or whose switch went away) and ``need_generation`` (a standby's switch connected:
    read the newest generation and call `Mastership.claim_slave`)."""

    sends: list[tuple[Any, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    done: list[tuple[Any, str | None]] = field(default_factory=list)
    need_generation: bool = False


@dataclass
class _Batch:
    """Messages sent to one switch, waiting for their barrier."""

    xids: set[int]
    token: Any
    errors: list[str] = field(default_factory=list)


@dataclass
class _Take:
    """Claiming one switch as master and resyncing it: stats requests out, replies in, the
    resync batch out, its barrier in."""

    id: int
    dp: Any
    generation: int
    attempt: int
    deadline: float
    waiting: dict[int, str] = field(default_factory=dict)      # stats xid -> _STATS kind
    bodies: dict[str, list] = field(default_factory=lambda: {k: [] for k in _STATS})
    resync: tuple[int, int] | None = None                      # the resync batch's key


class Mastership:
    """The role of one controller replica and the state of its switches' takes."""

    def __init__(self, wan: WanConfig, sites: dict[str, SiteLogic], ident: str = "ofc"):
        self.wan, self.sites, self.ident = wan, sites, ident
        self.site_of_dpid = {wan.switches[sw].dpid: (s, sw) for s in sites for sw in wan.sites[s].switches}
        self.role = STANDBY
        self.generation = 0
        self.dps: dict[str, Any] = {}                  # switch name -> datapath
        self.ready: set[str] = set()                   # switches taken under the current role
        self._takes: dict[str, _Take] = {}             # switch -> take in progress
        self._retakes: dict[str, tuple[float, int]] = {}  # switch -> (when, attempt) of the next take
        self._batches: dict[tuple[int, int], _Batch] = {}  # (dpid, barrier xid) ->
        self._xid_batch: dict[tuple[int, int], tuple[int, int]] = {}
        self._take_ids = count(1)

    # ------------------------------------------------------------------ queries
    def site_ready(self, site: str) -> bool:
        return self.role == MASTER and all(s in self.ready for s in self.wan.sites[site].switches)

    def taking(self, sw: str) -> bool:
        """Whether a take of ``sw`` runs or waits for its retry."""
        return sw in self._takes or sw in self._retakes

    # ------------------------------------------------------------------ election
    def elected(self, generation: int, now: float) -> Out:
        """This replica won the election with ``generation``: take every connected switch."""
        self.role, self.generation = MASTER, generation
        self.ready.clear()
        self._retakes.clear()
        log.info("%s: MASTER, generation %d", self.ident, generation)
        out = Out(events=[{"type": "event", "event": "role", "ofc": self.ident, "role": MASTER,
                           "generation": generation}])
        for sw in sorted(self.dps):
            self._start_take(sw, now, out)
        return out

    def deposed(self) -> Out:
        """This replica is no longer master (its ZooKeeper session or leadership is gone)."""
        self.role = STANDBY
        self.ready.clear()
        self._takes.clear()
        self._retakes.clear()
        log.warning("%s: no longer master", self.ident)
        return Out(events=[{"type": "event", "event": "role", "ofc": self.ident, "role": STANDBY}])

    # ------------------------------------------------------------------ switch connections
    def connected(self, dp: Any, now: float) -> Out:
        """A switch finished its handshake: the master takes it; a standby claims SLAVE once
        the caller has read the newest generation (``need_generation``)."""
        out = Out()
        entry = self.site_of_dpid.get(dp.id)
        if entry is None:
            log.warning("%s: switch with unknown dpid %s connected; ignoring it", self.ident, dp.id)
            return out
        sw = entry[1]
        self._forget(sw)
        self.dps[sw] = dp
        log.info("%s: switch %s (dpid %d) connected", self.ident, sw, dp.id)
        if self.role == MASTER:
            self._start_take(sw, now, out)
        else:
            out.need_generation = True
        return out

    def claim_slave(self, dp: Any, generation: int, now: float) -> Out:
        """After `connected` asked for it: claim SLAVE with the newest generation, unless this
        replica was elected meanwhile. Then the take already sent MASTER; a SLAVE request now
        would reach the switch after it and leave this master a slave at the switch."""
        out = Out()
        sw = self._switch(dp)
        if sw is None:
            return out
        if self.role == MASTER:
            if not self.taking(sw) and sw not in self.ready:
                self._start_take(sw, now, out)
            return out
        p, ofp = dp.ofproto_parser, dp.ofproto
        self._emit(out, dp, p.OFPRoleRequest(dp, ofp.OFPCR_ROLE_SLAVE, max(self.generation, generation)))
        return out

    def disconnected(self, dp: Any) -> Out:
        """The switch's connection closed: batches sent to it end with an error."""
        out = Out()
        sw = self._switch(dp)
        if sw is None:
            return out
        del self.dps[sw]
        self._forget(sw)
        log.warning("%s: switch %s disconnected", self.ident, sw)
        for key in [k for k in self._batches if k[0] == dp.id]:
            self._finish(key, "switch disconnected", 0.0, out)
        return out

    # ------------------------------------------------------------------ OpenFlow replies
    def role_reply(self, dp: Any, role: int, generation: int, now: float) -> Out:
        log.info("%s: dpid %s role %d generation %d", self.ident, dp.id, role, generation)
        out = Out()
        sw = self._switch(dp)
        ours = self.role == MASTER and generation == self.generation
        if sw is not None and ours and role == dp.ofproto.OFPCR_ROLE_SLAVE and not self.taking(sw):
            self._retake(sw, "role reply SLAVE", now, out)
        return out

    def error(self, dp: Any, type_: int, code: int, xid: int, now: float, leading: bool = False) -> Out:
        """An OpenFlow error. A refused role request makes this replica stand by unless it
        still leads the election (``leading``); an is_slave refusal while master retakes."""
        out = Out()
        what = of_error_text(type_, code)
        if type_ == dp.ofproto.OFPET_ROLE_REQUEST_FAILED:
            log.error("%s: role request refused by dpid %s (%s); standing by", self.ident, dp.id, what)
            if not leading:
                self.role = STANDBY
            return out
        key = self._xid_batch.get((dp.id, xid))
        batch = self._batches.get(key) if key else None
        if batch is not None:
            batch.errors.append(what)
        else:
            log.warning("%s: dpid %s: %s (xid %d)", self.ident, dp.id, what, xid)
        sw = self._switch(dp)
        if sw is not None and is_slave_error(what) and self.role == MASTER:
            self._retake(sw, what, now, out)
        return out

    def barrier_reply(self, dp: Any, xid: int, now: float) -> Out:
        out = Out()
        self._finish((dp.id, xid), None, now, out)
        return out

    def stats_reply(self, dp: Any, xid: int, body: list, more: bool, now: float) -> Out:
        """A part of a multipart reply to a take's stats request."""
        out = Out()
        sw = self._switch(dp)
        take = self._takes.get(sw) if sw is not None else None
        if take is None or xid not in take.waiting:
            return out
        take.bodies[take.waiting[xid]].extend(body)
        if not more:
            del take.waiting[xid]
            if not take.waiting:
                self._resync(sw, take, now, out)
        return out

    def tick(self, now: float) -> Out:
        """Timers: takes that waited too long fail; failed takes due for a retry start."""
        out = Out()
        for sw, take in list(self._takes.items()):
            if now >= take.deadline:
                if take.resync is None:
                    log.error("%s: resync of %s failed: no reply to its stats requests", self.ident, sw)
                else:
                    log.error("%s: no barrier from %s after resync; taking it again", self.ident, sw)
                    self._drop_batch(take.resync)
                self._failed(sw, take, now)
        for sw, (when, attempt) in list(self._retakes.items()):
            if now >= when:
                del self._retakes[sw]
                self._start_take(sw, now, out, attempt)
        return out

    # ------------------------------------------------------------------ the caller's batches
    def send(self, dp: Any, msgs: list[Any], token: Any = None) -> Out:
        """Messages and a barrier for ``dp``; ``(token, error or None)`` comes back in
        ``Out.done`` when the barrier does (or the switch goes away). No token: nobody waits."""
        out = Out()
        self._send_batch(dp, msgs, token, out)
        return out

    # ------------------------------------------------------------------ internals
    def _switch(self, dp: Any) -> str | None:
        """The switch name of a datapath that is the current connection of a switch of ours."""
        entry = self.site_of_dpid.get(dp.id) if dp.id is not None else None
        if entry is None or self.dps.get(entry[1]) is not dp:
            return None
        return entry[1]

    def _forget(self, sw: str) -> None:
        self.ready.discard(sw)
        self._takes.pop(sw, None)
        self._retakes.pop(sw, None)

    @staticmethod
    def _emit(out: Out, dp: Any, msg: Any) -> Any:
        dp.set_xid(msg)
        out.sends.append((dp, msg))
        return msg

    def _send_batch(self, dp: Any, msgs: list[Any], token: Any, out: Out) -> tuple[int, int]:
        for m in msgs:
            self._emit(out, dp, m)
        b = self._emit(out, dp, flows.barrier(dp))
        key = (dp.id, b.xid)
        self._batches[key] = _Batch({m.xid for m in msgs}, token)
        for m in msgs:
            self._xid_batch[(dp.id, m.xid)] = key
        return key

    def _drop_batch(self, key: tuple[int, int]) -> _Batch | None:
        batch = self._batches.pop(key, None)
        if batch is not None:
            for x in batch.xids:
                self._xid_batch.pop((key[0], x), None)
        return batch

    def _finish(self, key: tuple[int, int], error: str | None, now: float, out: Out) -> None:
        batch = self._drop_batch(key)
        if batch is None:
            return
        err = "; ".join(batch.errors) if batch.errors else error
        if isinstance(batch.token, _TakeToken):
            take = self._takes.get(batch.token.switch)
            if take is not None and take.id == batch.token.take:
                self._resynced(batch.token.switch, take, err, now, out)
        elif batch.token is not None:
            out.done.append((batch.token, err))

    def _retake(self, sw: str, why: str, now: float, out: Out) -> None:
        """The switch says we are not its master although we believe we are: it is not ready
        (the TE server gets not_ready until the take's ``ready`` event) and is taken again."""
        self.ready.discard(sw)
        log.warning("%s: %s: %s while master; claiming the switch again", self.ident, sw, why)
        if not self.taking(sw):
            self._start_take(sw, now, out)

    def _start_take(self, sw: str, now: float, out: Out, attempt: int = 0) -> None:
        """Claim MASTER and ask for the switch's flows, groups and ports."""
        if self.role != MASTER or sw not in self.dps:
            return
        dp = self.dps[sw]
        ofp, p = dp.ofproto, dp.ofproto_parser
        take = _Take(next(self._take_ids), dp, self.generation, attempt, now + RESYNC_TIMEOUT)
        self._takes[sw] = take
        self.ready.discard(sw)
        self._emit(out, dp, p.OFPRoleRequest(dp, ofp.OFPCR_ROLE_MASTER, self.generation))
        requests = {"flows": p.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY, 0, 0,
                                                   p.OFPMatch()),
                    "groups": p.OFPGroupDescStatsRequest(dp, 0),
                    "ports": p.OFPPortDescStatsRequest(dp, 0)}
        for kind, req in requests.items():
            take.waiting[self._emit(out, dp, req).xid] = kind

    def _resync(self, sw: str, take: _Take, now: float, out: Out) -> None:
        """Every stats reply is in: send what makes the switch's pipeline right."""
        dp, ofp = take.dp, take.dp.ofproto
        site = self.wan.switches[sw].site
        down = [pd.port_no for pd in take.bodies["ports"]
                if pd.port_no < ofp.OFPP_MAX and (pd.state & ofp.OFPPS_LINK_DOWN or pd.config & ofp.OFPPC_PORT_DOWN)]
        msgs = self.sites[site].switch_up(dp, sw, take.bodies["flows"], take.bodies["groups"], down)
        log.info("%s: %s needs %d messages to match the pipeline", self.ident, sw, len(msgs))
        take.resync = self._send_batch(dp, msgs, _TakeToken(sw, take.id), out)
        take.deadline = now + RESYNC_TIMEOUT

    def _resynced(self, sw: str, take: _Take, err: str | None, now: float, out: Out) -> None:
        """The resync's barrier came back: the switch is ready, unless it refused as a slave."""
        if is_slave_error(err):
            # The switch holds this replica as a slave: it refused the pipeline and would
            # refuse every TE op. Not ready; claim it and resync again.
            log.error("%s: pipeline of %s refused (%s); taking the switch again", self.ident, sw, summarize(err))
            self._failed(sw, take, now)
            return
        if err:
            log.error("%s: pipeline of %s: %s", self.ident, sw, summarize(err))
        del self._takes[sw]
        self.ready.add(sw)
        site = self.wan.switches[sw].site
        log.info("%s: switch %s (site %s) ready, %d flows and %d groups found", self.ident, sw, site,
                 len(take.bodies["flows"]), len(take.bodies["groups"]))
        if self.site_ready(site):
            out.events.append({"type": "event", "event": "ready", "ofc": self.ident, "site": site,
                               "ted": ted_to_json(self.sites[site].installed()), "generation": take.generation})

    def _failed(self, sw: str, take: _Take, now: float) -> None:
        """A take failed: try again after a delay growing with the attempts."""
        del self._takes[sw]
        if self.role == MASTER and self.dps.get(sw) is take.dp:
            delay = RETAKE_DELAYS[min(take.attempt, len(RETAKE_DELAYS) - 1)]
            self._retakes[sw] = (now + delay, take.attempt + 1)


@dataclass(frozen=True)
class _TakeToken:
    """The token of a take's resync batch."""

    switch: str
    take: int
