"""The OpenFlow controller (OFC): an os-ken app running the site controllers of a set of sites.

A thin layer over `b4.site.SiteLogic`: it connects switches, claims the OpenFlow role its
election result gives it (MASTER with the generation id from ZooKeeper, else SLAVE),
resyncs each switch's state when it becomes master, turns TE ops from the TE server into the
messages `b4.flows` builds, follows them with a barrier and turns the barrier reply (or an
OpenFlow error) into the op's ack. Port changes are reported to the TE server and repaired
locally in the LPM table at once.

Run as a process (one per replica)::

    python -m b4.ofc --config ofc.json

``ofc.json``: ``{"id", "wan" (WanConfig JSON), "sites" (list or null: all), "ofp_port",
"rpc_port", "zk": {"hosts", "path"} or null (then master at start, generation 1),
"log_file"}``. The RPC (JSON lines, `b4.rpc`) listens on 127.0.0.1:``rpc_port``:

    -> {"type": "hello", "session": S}         <- {"type": "hello", "role", "sites": {...}}
    -> {"type": "op", ...}                     <- {"type": "ack", ...}
    -> {"type": "links", "down": [...]}        <- {"type": "links"}
    -> {"type": "status"}                      <- {"type": "status", ...}
    <- {"type": "event", "event": "port"|"role"|"ready", ...}   (pushed to every client)
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3

from b4 import flows
from b4.model import WanConfig
from b4.rpc import Connection, RpcServer, process_config
from b4.site import SiteLogic
from b4.ted import ted_to_json
from b4.teops import NOT_MASTER, REJECTED, Op, OpFormatError, ack_for

log = logging.getLogger("b4.ofc")

NOT_READY = "not_ready"
RESYNC_TIMEOUT = 10.0
RETAKE_DELAYS = (0.2, 0.5, 1.0, 2.0, 5.0)  # between attempts to take a switch whose resync failed


def of_error_text(type_: int, code: int) -> str:
    """An OpenFlow error as op acks and logs carry it (the slave case is named: it means this
    controller's role at the switch is not what it believes)."""
    what = f"OpenFlow error type {type_} code {code}"
    if (type_, code) == (ofproto_v1_3.OFPET_BAD_REQUEST, ofproto_v1_3.OFPBRC_IS_SLAVE):
        what += " (is_slave)"
    return what


def _is_slave_error(err: str | None) -> bool:
    return bool(err) and "(is_slave)" in err


@dataclass
class _Batch:
    """Messages sent to one switch, waiting for their barrier."""

    xids: set[int]
    on_done: Callable[[str | None], None]
    errors: list[str] = field(default_factory=list)


@dataclass
class _Stats:
    body: list = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)


class SiteControllerApp(app_manager.OSKenApp):
    """The site controllers of this replica's sites (one os-ken app, many datapaths)."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    config: dict[str, Any] = {}  # set by main() before os-ken instantiates the app

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = type(self).config
        self._init_state(cfg)
        self.rpc = RpcServer(int(cfg.get("rpc_port", 0)), self._rpc, name=f"{self.ident}-rpc").start()
        self.elector = None
        zk = cfg.get("zk")
        if zk:
            from b4.election import Elector

            self.elector = Elector(zk["hosts"], zk["path"], f"{self.ident}@127.0.0.1:{self.rpc.port}",
                                   self._become_master, self._become_standby,
                                   session_timeout=float(zk.get("session_timeout", 2.0))).start()
        else:
            self._become_master(int(cfg.get("generation", 1)))

    def _init_state(self, cfg: dict[str, Any]) -> None:
        """Everything but the RPC server and the election (unit tests build the app from here)."""
        self.ident = cfg.get("id", f"ofc-{os.getpid()}")
        self.wan = WanConfig.from_json(cfg["wan"])
        sites = cfg.get("sites") or sorted(self.wan.sites)
        self.sites = {s: SiteLogic(self.wan, s) for s in sites}
        self.site_of_dpid = {self.wan.switches[sw].dpid: (s, sw) for s in sites for sw in self.wan.sites[s].switches}
        self.lock = threading.RLock()
        self.dps: dict[str, Any] = {}          # switch name -> Datapath
        self.ready: set[str] = set()           # switches resynced under the current role
        self.role = "standby"
        self.generation = 0
        self._batches: dict[tuple[int, int], _Batch] = {}
        self._xid_batch: dict[tuple[int, int], tuple[int, int]] = {}
        self._stats: dict[tuple[int, int], _Stats] = {}
        self._dp_locks: dict[int, threading.Lock] = {}
        self._taking: set[int] = set()         # dpids a take (claim + resync) is running for

    # ------------------------------------------------------------------ sending
    def _dp_lock(self, dp: Any) -> threading.Lock:
        with self.lock:
            return self._dp_locks.setdefault(dp.id, threading.Lock())

    def _send(self, dp: Any, msgs: list[Any], on_done: Callable[[str | None], None] | None = None) -> None:
        """Send messages and a barrier; ``on_done(error or None)`` when the barrier returns."""
        with self._dp_lock(dp):
            for m in msgs:
                dp.set_xid(m)
            b = flows.barrier(dp)
            dp.set_xid(b)
            key = (dp.id, b.xid)
            xids = {m.xid for m in msgs}
            with self.lock:  # registered before sending: an error reply can come back at once
                self._batches[key] = _Batch(xids, on_done or (lambda err: None))
                for x in xids:
                    self._xid_batch[(dp.id, x)] = key
            for m in msgs:
                dp.send_msg(m)
            dp.send_msg(b)

    def _finish_batch(self, key: tuple[int, int], error: str | None = None) -> None:
        with self.lock:
            batch = self._batches.pop(key, None)
            if batch is None:
                return
            for x in batch.xids:
                self._xid_batch.pop((key[0], x), None)
        err = "; ".join(batch.errors) if batch.errors else error
        try:
            batch.on_done(err)
        except Exception:
            log.exception("barrier callback")

    # ------------------------------------------------------------------ roles
    def _become_master(self, generation: int) -> None:
        with self.lock:
            self.role, self.generation = "master", generation
            self.ready.clear()
            dps = list(self.dps.values())
        log.info("%s: MASTER, generation %d", self.ident, generation)
        self.rpc.broadcast({"type": "event", "event": "role", "ofc": self.ident, "role": "master",
                            "generation": generation})
        for dp in dps:
            self._start_take(dp)

    def _become_standby(self) -> None:
        with self.lock:
            self.role = "standby"
            self.ready.clear()
        log.warning("%s: no longer master", self.ident)
        self.rpc.broadcast({"type": "event", "event": "role", "ofc": self.ident, "role": "standby"})

    def _claim_role(self, dp: Any, slave_generation: int = 0) -> bool:
        """Send the switch a role request for the role this replica holds *now*; returns
        whether that was MASTER.

        The role is read and the request sent under the switch's send lock, so requests reach
        the switch in the order of role changes: a SLAVE request decided before this replica
        was elected can never overtake the MASTER request sent after it (the switch would
        then keep this replica as a slave while it believes it is master, and refuse every
        flow mod with OFPBRC_IS_SLAVE). Nothing slow (ZooKeeper) happens under the lock."""
        ofp, p = dp.ofproto, dp.ofproto_parser
        with self._dp_lock(dp):
            with self.lock:
                master, gen = self.role == "master", self.generation
            if master:
                dp.send_msg(p.OFPRoleRequest(dp, ofp.OFPCR_ROLE_MASTER, gen))
            else:
                dp.send_msg(p.OFPRoleRequest(dp, ofp.OFPCR_ROLE_SLAVE, max(gen, slave_generation)))
        return master

    def _start_take(self, dp: Any, attempt: int = 0, delay: float = 0.0) -> None:
        """Take a switch (claim MASTER, resync) in a thread, unless a take already runs."""
        with self.lock:
            if dp.id in self._taking:
                return
            self._taking.add(dp.id)

        def run() -> None:
            if delay:
                time.sleep(delay)
            try:
                ok = self._take_switch(dp)
            finally:
                with self.lock:
                    self._taking.discard(dp.id)
            if ok is False:
                with self.lock:
                    again = self.role == "master" and dp in self.dps.values()
                if again:
                    self._start_take(dp, attempt + 1, RETAKE_DELAYS[min(attempt, len(RETAKE_DELAYS) - 1)])

        threading.Thread(target=run, name=f"{self.ident}-take-{dp.id}", daemon=True).start()

    def _take_switch(self, dp: Any) -> bool | None:
        """As master: claim the switch, read its state back, fix its pipeline (resync).
        Returns True when the switch is ready, False when the take failed and should be
        retried, None when there is nothing to do (not master any more, switch gone)."""
        ofp, p = dp.ofproto, dp.ofproto_parser
        entry = self.site_of_dpid.get(dp.id)
        if entry is None:
            return None
        site, sw = entry
        with self.lock:
            if self.role != "master":
                return None
            gen = self.generation
        if not self._claim_role(dp):
            return None
        try:
            flow_stats = self._collect(dp, p.OFPFlowStatsRequest(dp, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                                                 0, 0, p.OFPMatch()))
            group_desc = self._collect(dp, p.OFPGroupDescStatsRequest(dp, 0))
            port_desc = self._collect(dp, p.OFPPortDescStatsRequest(dp, 0))
        except TimeoutError as e:
            log.error("%s: resync of %s failed: %s", self.ident, sw, e)
            return False
        down = [pd.port_no for pd in port_desc
                if pd.port_no < ofp.OFPP_MAX and (pd.state & ofp.OFPPS_LINK_DOWN or pd.config & ofp.OFPPC_PORT_DOWN)]
        done = threading.Event()
        errs: list[str] = []
        with self.lock:
            if self.role != "master" or self.generation != gen or self.dps.get(sw) is not dp:
                return None
            msgs = self.sites[site].switch_up(dp, sw, flow_stats, group_desc, down)
        log.info("%s: %s needs %d messages to match the pipeline", self.ident, sw, len(msgs))
        self._send(dp, msgs, lambda err: (err and errs.append(err), done.set()))
        if not done.wait(RESYNC_TIMEOUT):
            log.error("%s: no barrier from %s after resync; taking it again", self.ident, sw)
            return False
        if errs and _is_slave_error(errs[0]):
            # The switch holds this replica as a slave: it refused the pipeline and would
            # refuse every TE op. Not ready; claim it and resync again.
            log.error("%s: pipeline of %s refused (%s); taking the switch again", self.ident, sw,
                      _summarize(errs[0]))
            return False
        if errs:
            log.error("%s: pipeline of %s: %s", self.ident, sw, _summarize(errs[0]))
        with self.lock:
            if self.role != "master" or self.generation != gen or self.dps.get(sw) is not dp:
                return None
            self.ready.add(sw)
            ted = ted_to_json(self.sites[site].installed())
            site_ready = all(s in self.ready for s in self.wan.sites[site].switches)
        log.info("%s: switch %s (site %s) ready, %d flows and %d groups found", self.ident, sw, site,
                 len(flow_stats), len(group_desc))
        if site_ready:
            self.rpc.broadcast({"type": "event", "event": "ready", "ofc": self.ident, "site": site, "ted": ted,
                                "generation": gen})
        return True

    def _retake(self, dp: Any, why: str) -> None:
        """The switch says we are not its master although we believe we are: it is not ready
        (the TE server gets not_ready until the take's ``ready`` event) and is taken again."""
        entry = self.site_of_dpid.get(dp.id)
        if entry is None:
            return
        with self.lock:
            if self.role != "master" or self.dps.get(entry[1]) is not dp:
                return
            self.ready.discard(entry[1])
        log.warning("%s: %s: %s while master; claiming the switch again", self.ident, entry[1], why)
        self._start_take(dp)

    def _collect(self, dp: Any, req: Any) -> list:
        with self._dp_lock(dp):
            dp.set_xid(req)
            st = _Stats()
            with self.lock:
                self._stats[(dp.id, req.xid)] = st
            dp.send_msg(req)
        if not st.done.wait(RESYNC_TIMEOUT):
            with self.lock:
                self._stats.pop((dp.id, req.xid), None)
            raise TimeoutError(f"no reply to {type(req).__name__}")
        return st.body

    # ------------------------------------------------------------------ OpenFlow events
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def state_change_handler(self, ev: Any) -> None:
        dp = ev.datapath
        entry = self.site_of_dpid.get(dp.id) if dp.id is not None else None
        if ev.state == MAIN_DISPATCHER:
            if entry is None:
                log.warning("%s: switch with unknown dpid %s connected; ignoring it", self.ident, dp.id)
                return
            site, sw = entry
            try:  # flow mods and their barrier are small: do not let Nagle hold them back
                dp.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except (OSError, AttributeError):
                pass
            with self.lock:
                self.dps[sw] = dp
                self.ready.discard(sw)
                master, gen = self.role == "master", self.generation
            log.info("%s: switch %s (dpid %d) connected", self.ident, sw, dp.id)
            if master:
                self._start_take(dp)
            else:
                # The newest generation for the SLAVE request (a ZooKeeper read: slow, and the
                # election may finish meanwhile; _claim_role sends whatever role we hold by then).
                try:
                    zk_gen = self.elector.generation() if self.elector else gen
                except Exception as e:  # ZooKeeper trouble: the election will sort it out
                    log.warning("%s: no generation from ZooKeeper (%s)", self.ident, e)
                    zk_gen = gen
                if self._claim_role(dp, zk_gen):
                    self._start_take(dp)  # elected meanwhile (usually already under way)
        elif ev.state == DEAD_DISPATCHER and entry is not None:
            site, sw = entry
            with self.lock:
                if self.dps.get(sw) is not dp:
                    return
                del self.dps[sw]
                self.ready.discard(sw)
                keys = [k for k in self._batches if k[0] == dp.id]
            log.warning("%s: switch %s disconnected", self.ident, sw)
            for k in keys:
                self._finish_batch(k, "switch disconnected")

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply_handler(self, ev: Any) -> None:
        self._finish_batch((ev.msg.datapath.id, ev.msg.xid))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error_msg_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        ofp = dp.ofproto
        what = of_error_text(msg.type, msg.code)
        if msg.type == ofp.OFPET_ROLE_REQUEST_FAILED:
            log.error("%s: role request refused by dpid %s (%s); standing by", self.ident, dp.id, what)
            if self.elector is None or not self.elector.leading:
                with self.lock:
                    self.role = "standby"
            return
        with self.lock:
            key = self._xid_batch.get((dp.id, msg.xid))
            batch = self._batches.get(key) if key else None
            if batch is not None:
                batch.errors.append(what)
        if batch is None:
            log.warning("%s: dpid %s: %s (xid %d)", self.ident, dp.id, what, msg.xid)
        if _is_slave_error(what):
            self._retake(dp, what)

    def _stats_reply(self, ev: Any) -> None:
        msg = ev.msg
        with self.lock:
            st = self._stats.get((msg.datapath.id, msg.xid))
        if st is None:
            return
        st.body.extend(msg.body)
        if not msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE:
            with self.lock:
                self._stats.pop((msg.datapath.id, msg.xid), None)
            st.done.set()

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def flow_stats_reply_handler(self, ev: Any) -> None:
        self._stats_reply(ev)

    @set_ev_cls(ofp_event.EventOFPGroupDescStatsReply, MAIN_DISPATCHER)
    def group_desc_stats_reply_handler(self, ev: Any) -> None:
        self._stats_reply(ev)

    @set_ev_cls(ofp_event.EventOFPPortDescStatsReply, MAIN_DISPATCHER)
    def port_desc_stats_reply_handler(self, ev: Any) -> None:
        self._stats_reply(ev)

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def role_reply_handler(self, ev: Any) -> None:
        dp = ev.msg.datapath
        log.info("%s: dpid %s role %d generation %d", self.ident, dp.id, ev.msg.role, ev.msg.generation_id)
        with self.lock:
            ours = self.role == "master" and ev.msg.generation_id == self.generation
        if ours and ev.msg.role == dp.ofproto.OFPCR_ROLE_SLAVE and dp.id not in self._taking:
            self._retake(dp, "role reply SLAVE")

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        ofp = dp.ofproto
        entry = self.site_of_dpid.get(dp.id)
        if entry is None or msg.desc.port_no >= ofp.OFPP_MAX:
            return
        site, sw = entry
        port = msg.desc.port_no
        up = not (msg.desc.state & ofp.OFPPS_LINK_DOWN or msg.desc.config & ofp.OFPPC_PORT_DOWN) \
            and msg.reason != ofp.OFPPR_DELETE
        with self.lock:
            changed = self.sites[site].set_port(sw, port, up)
            master = self.role == "master" and sw in self.ready
            msgs = self.sites[site].route_msgs(dp, sw) if changed and master else []
        if not changed:
            return
        link = self.wan.switches[sw].port_links.get(port)
        log.info("%s: %s port %d (%s) %s", self.ident, sw, port, link or "host", "up" if up else "down")
        if msgs:
            self._send(dp, msgs)
        self.rpc.broadcast({"type": "event", "event": "port", "ofc": self.ident, "site": site, "switch": sw,
                            "port": port, "link": link, "up": up, "time": time.time()})

    # ------------------------------------------------------------------ RPC from the TE server
    def _rpc(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any] | None:
        t = msg["type"]
        if t == "op":
            return self._rpc_op(conn, msg)
        if t == "hello":
            return self._hello()
        if t == "links":
            down = msg.get("down")
            if not isinstance(down, list) or not all(isinstance(x, str) for x in down):
                return {"type": "error", "reason": "links: 'down' must be a list of link names"}
            self._remote_links(down)
            return {"type": "links"}
        if t == "status":
            return {**self._hello(), "type": "status"}
        return {"type": "error", "reason": f"unknown message type {t!r}"}

    def _hello(self) -> dict[str, Any]:
        with self.lock:
            sites = {}
            for s, logic in self.sites.items():
                sws = self.wan.sites[s].switches
                sites[s] = {"ready": self.role == "master" and all(x in self.ready for x in sws),
                            "connected": sorted(x for x in sws if x in self.dps),
                            "ted": ted_to_json(logic.installed()),
                            "down_links": sorted(logic.down_links()),
                            "down_ports": {sw: sorted(st.down_ports) for sw, st in logic.switches.items()},
                            "session": logic.receiver.session, "last_seq": logic.receiver.last_seq}
            return {"type": "hello", "ofc": self.ident, "role": self.role, "generation": self.generation,
                    "sites": sites}

    def _remote_links(self, down: list[str]) -> None:
        sends = []
        with self.lock:
            for s, logic in self.sites.items():
                if logic.set_remote_down(down) and self.role == "master":
                    for sw in self.wan.sites[s].switches:
                        if sw in self.ready:
                            sends.append((self.dps[sw], logic.route_msgs(self.dps[sw], sw)))
        for dp, msgs in sends:
            if msgs:
                self._send(dp, msgs)

    def _rpc_op(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any] | None:
        try:
            op = Op.from_json(msg)
        except OpFormatError as e:
            log.warning("%s: malformed op from %s: %s", self.ident, conn.peer, e)
            return {"type": "error", "reason": f"malformed op: {e}", "seq": msg.get("seq"), "site": msg.get("site")}
        with self.lock:
            logic = self.sites.get(op.site)
            if logic is None:
                return ack_for(op, "error", f"{self.ident} runs no site {op.site}").to_json()
            if self.role != "master":
                return ack_for(op, REJECTED, NOT_MASTER).to_json()
            sws = self.wan.sites[op.site].switches
            if not all(s in self.ready for s in sws):
                return ack_for(op, REJECTED, NOT_READY).to_json()
            dps = {s: self.dps[s] for s in sws}
            ack, per_switch = logic.handle_op(dps, op)
        if ack is not None:
            return ack.to_json()
        if not per_switch:
            return None  # a duplicate of an op still in progress
        waiting = {s for s, m in per_switch.items()}
        errors: list[str] = []
        guard = threading.Lock()

        def done(sw: str, err: str | None) -> None:
            with guard:
                waiting.discard(sw)
                if err:
                    errors.append(f"{sw}: {err}")
                if waiting:
                    return
            err = "; ".join(errors) or None
            with self.lock:
                a = logic.op_done(op, err)
            if _is_slave_error(err):
                # Not applied because the switch does not take this replica as master (it is
                # being claimed again): the TE server pauses the site until it is ready.
                a = ack_for(op, REJECTED, NOT_READY)
            conn.send(a.to_json())

        for sw, msgs in per_switch.items():
            self._send(dps[sw], msgs, lambda err, _sw=sw: done(_sw, err))
        return None

    def close(self) -> None:
        if self.elector is not None:
            self.elector.stop()
        self.rpc.stop()


def _summarize(err: str, limit: int = 3) -> str:
    """'E; E; E; ...' -> 'E (x18)' when one error repeats (a refused batch repeats it per message)."""
    parts = err.split("; ")
    if len(parts) > 1 and len(set(parts)) == 1:
        return f"{parts[0]} (x{len(parts)})"
    return "; ".join(parts[:limit]) + (f"; ... ({len(parts)} errors)" if len(parts) > limit else "")


def main(argv: list[str] | None = None) -> int:
    cfg = process_config("B4 site controllers (os-ken)", argv, quiet=("kazoo", "os_ken"))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    from os_ken import cfg as osken_cfg

    osken_cfg.CONF(args=["--ofp-listen-host", "127.0.0.1", "--ofp-tcp-listen-port", str(int(cfg["ofp_port"]))],
                   project="os_ken")
    # Run as `python -m b4.ofc` this module is __main__; os-ken imports b4.ofc afresh.
    import importlib

    importlib.import_module("b4.ofc").SiteControllerApp.config = cfg
    app_manager.AppManager.run_apps(["b4.ofc"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
