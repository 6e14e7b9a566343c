"""The OpenFlow controller (OFC): an os-ken app running the site controllers of a set of sites.

The I/O shell (like Faucet's ``faucet.py`` over ``valve.py``) over two pure parts:
`b4.mastership.Mastership` decides the OpenFlow role its election result gives it (MASTER
with the generation id from ZooKeeper, else SLAVE), takes and resyncs each switch when it
becomes master and retakes a switch that holds it as a slave; `b4.site.SiteLogic` turns TE
ops from the TE server into the messages `b4.flows` builds. The os-ken handlers pass each
event to `Mastership` under one lock and send what it returns, in order; a barrier reply
(or an OpenFlow error) becomes the op's ack. Port changes are reported to the TE server and
repaired locally in the LPM table at once.

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

import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from os_ken.base import app_manager
from os_ken.controller import ofp_event
from os_ken.controller.handler import CONFIG_DISPATCHER, DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from os_ken.ofproto import ofproto_v1_3

from b4.mastership import MASTER, Mastership, Out, is_slave_error
from b4.model import WanConfig
from b4.rpc import Connection, RpcServer, process_config
from b4.site import SiteLogic
from b4.ted import ted_to_json
from b4.teops import NOT_MASTER, REJECTED, Op, OpFormatError, ack_for

log = logging.getLogger("b4.ofc")

NOT_READY = "not_ready"
TICK = 0.05  # seconds between the timer ticks of `Mastership` (take timeouts and retries)


class SiteControllerApp(app_manager.OSKenApp):
    """The site controllers of this replica's sites (one os-ken app, many datapaths)."""

    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]
    config: dict[str, Any] = {}  # set by main() before os-ken instantiates the app

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        cfg = type(self).config
        self._init_state(cfg)
        self.rpc = RpcServer(int(cfg.get("rpc_port", 0)), self._rpc, name=f"{self.ident}-rpc").start()
        threading.Thread(target=self._ticker, name=f"{self.ident}-tick", daemon=True).start()
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
        """Everything but the RPC server, the timer and the election."""
        self.ident = cfg.get("id", f"ofc-{os.getpid()}")
        self.wan = WanConfig.from_json(cfg["wan"])
        sites = cfg.get("sites") or sorted(self.wan.sites)
        self.sites = {s: SiteLogic(self.wan, s) for s in sites}
        self.mastership = Mastership(self.wan, self.sites, self.ident)
        self.lock = threading.RLock()  # over the pure state and the sends it decides

    # ------------------------------------------------------------------ the pure part's output
    def _apply(self, decide: Any, *args: Any) -> Out:
        """Run a `Mastership` method with ``now`` and send what it returns, under the lock (so
        messages reach each switch in the order they were decided); then push its events and
        report the barrier outcomes of the batches sent for ops."""
        with self.lock:
            out = decide(*args)
            for dp, msg in out.sends:
                dp.send_msg(msg)
        for ev in out.events:
            self.rpc.broadcast(ev)
        for on_done, err in out.done:
            try:
                on_done(err)
            except Exception:
                log.exception("barrier callback")
        return out

    def _send(self, dp: Any, msgs: list[Any], on_done: Any = None) -> None:
        """Send messages and a barrier; ``on_done(error or None)`` when the barrier returns."""
        self._apply(self.mastership.send, dp, msgs, on_done)

    def _ticker(self) -> None:
        while True:
            time.sleep(TICK)
            try:
                self._apply(self.mastership.tick, time.monotonic())
            except Exception:
                log.exception("%s: timer", self.ident)

    # ------------------------------------------------------------------ election
    def _become_master(self, generation: int) -> None:
        self._apply(self.mastership.elected, generation, time.monotonic())

    def _become_standby(self) -> None:
        self._apply(self.mastership.deposed)

    # ------------------------------------------------------------------ OpenFlow events
    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def state_change_handler(self, ev: Any) -> None:
        dp = ev.datapath
        if ev.state == DEAD_DISPATCHER:
            self._apply(self.mastership.disconnected, dp)
            return
        with contextlib.suppress(OSError, AttributeError):  # small flow mods: no Nagle delay
            dp.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._apply(self.mastership.connected, dp, time.monotonic()).need_generation:
            # A standby claims SLAVE with the newest generation: a ZooKeeper read, slow, outside
            # the lock (the election may finish meanwhile; then claim_slave sends nothing).
            gen = self.mastership.generation
            try:
                gen = self.elector.generation() if self.elector else gen
            except Exception as e:  # ZooKeeper trouble: the election will sort it out
                log.warning("%s: no generation from ZooKeeper (%s)", self.ident, e)
            self._apply(self.mastership.claim_slave, dp, gen, time.monotonic())

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def barrier_reply_handler(self, ev: Any) -> None:
        self._apply(self.mastership.barrier_reply, ev.msg.datapath, ev.msg.xid, time.monotonic())

    @set_ev_cls(ofp_event.EventOFPErrorMsg, [CONFIG_DISPATCHER, MAIN_DISPATCHER])
    def error_msg_handler(self, ev: Any) -> None:
        m = ev.msg
        leading = self.elector is not None and self.elector.leading
        self._apply(self.mastership.error, m.datapath, m.type, m.code, m.xid, time.monotonic(), leading)

    @set_ev_cls([ofp_event.EventOFPFlowStatsReply, ofp_event.EventOFPGroupDescStatsReply,
                 ofp_event.EventOFPPortDescStatsReply], MAIN_DISPATCHER)
    def stats_reply_handler(self, ev: Any) -> None:
        m = ev.msg
        more = bool(m.flags & m.datapath.ofproto.OFPMPF_REPLY_MORE)
        self._apply(self.mastership.stats_reply, m.datapath, m.xid, m.body, more, time.monotonic())

    @set_ev_cls(ofp_event.EventOFPRoleReply, MAIN_DISPATCHER)
    def role_reply_handler(self, ev: Any) -> None:
        m = ev.msg
        self._apply(self.mastership.role_reply, m.datapath, m.role, m.generation_id, time.monotonic())

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def port_status_handler(self, ev: Any) -> None:
        msg = ev.msg
        dp = msg.datapath
        ofp = dp.ofproto
        entry = self.mastership.site_of_dpid.get(dp.id)
        if entry is None or msg.desc.port_no >= ofp.OFPP_MAX:
            return
        site, sw = entry
        port = msg.desc.port_no
        up = not (msg.desc.state & ofp.OFPPS_LINK_DOWN or msg.desc.config & ofp.OFPPC_PORT_DOWN) \
            and msg.reason != ofp.OFPPR_DELETE
        with self.lock:
            changed = self.sites[site].set_port(sw, port, up)
            master = self.mastership.role == MASTER and sw in self.mastership.ready
            msgs = self.sites[site].route_msgs(dp, sw) if changed and master else []
            if msgs:
                self._send(dp, msgs)
        if not changed:
            return
        link = self.wan.switches[sw].port_links.get(port)
        log.info("%s: %s port %d (%s) %s", self.ident, sw, port, link or "host", "up" if up else "down")
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
        m = self.mastership
        with self.lock:
            sites = {}
            for s, logic in self.sites.items():
                sws = self.wan.sites[s].switches
                sites[s] = {"ready": m.site_ready(s),
                            "connected": sorted(x for x in sws if x in m.dps),
                            "ted": ted_to_json(logic.installed()),
                            "down_links": sorted(logic.down_links()),
                            "down_ports": {sw: sorted(st.down_ports) for sw, st in logic.switches.items()},
                            "session": logic.receiver.session, "last_seq": logic.receiver.last_seq}
            return {"type": "hello", "ofc": self.ident, "role": m.role, "generation": m.generation,
                    "sites": sites}

    def _remote_links(self, down: list[str]) -> None:
        m = self.mastership
        with self.lock:
            for s, logic in self.sites.items():
                if logic.set_remote_down(down) and m.role == MASTER:
                    for sw in self.wan.sites[s].switches:
                        msgs = logic.route_msgs(m.dps[sw], sw) if sw in m.ready else []
                        if msgs:
                            self._send(m.dps[sw], msgs)

    def _rpc_op(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any] | None:
        try:
            op = Op.from_json(msg)
        except OpFormatError as e:
            log.warning("%s: malformed op from %s: %s", self.ident, conn.peer, e)
            return {"type": "error", "reason": f"malformed op: {e}", "seq": msg.get("seq"), "site": msg.get("site")}
        m = self.mastership
        with self.lock:
            logic = self.sites.get(op.site)
            if logic is None:
                return ack_for(op, "error", f"{self.ident} runs no site {op.site}").to_json()
            if m.role != MASTER:
                return ack_for(op, REJECTED, NOT_MASTER).to_json()
            if not m.site_ready(op.site):
                return ack_for(op, REJECTED, NOT_READY).to_json()
            dps = {s: m.dps[s] for s in self.wan.sites[op.site].switches}
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
            if is_slave_error(err):
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
