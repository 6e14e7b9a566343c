"""The TE server: topology + flow groups -> TE -> per-site TEDs -> ops to the site controllers.

It keeps the WAN's link state from the controllers' port events, runs TE (`b4.te.solve`,
algorithm ``b4``, ``b4r`` or ``exact``: the topology's ``params.te.algorithm``, changed at run
time by the ``te`` RPC; every result quantized to the switches' quantum) after every topology
change and every ``te_period`` seconds, builds the
desired per-site TED (`b4.ted.build_desired`), and lets `b4.teops.OpScheduler` turn the
difference from the installed TED into sequenced ops, sent over `b4.rpc` to whichever
controller replica is MASTER for the site. What a controller reports after taking over
(the TED it read back from its switches) replaces the server's idea of what is installed.
"TE off" makes the desired TED empty, so every TE entry is removed and traffic falls back to
the LPM routes. The database (session, ids, desired and installed TEDs, TE on/off) is saved
atomically; a restarted or newly elected server loads it, starts a new session and replays
what is dirty.

Run as a process (one per replica)::

    python -m b4.server --config server.json

``server.json``: ``{"id", "topology" (file), "db" (file), "rpc_port", "ofcs" (controller
RPC ports), "zk": {"hosts", "path"} or null, "te_period", "op_timeout", "drain", "log_file"}``.
Admin RPC on 127.0.0.1:``rpc_port`` (`b4.rpc`): ``status``, ``show``, ``ops``, ``te``
(``{"enable": bool}`` and/or ``{"algorithm": NAME}``), ``te_run``, ``wait_converged`` (``{"timeout"}``), ``op_stats``.
"""
from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import time
from typing import Any

from b4.model import SERVER_ALGORITHMS, Wan, load_wan
from b4.rpc import Connection, RpcClient, RpcServer, process_config
from b4.te.solve import solve_quantized
from b4.ted import FlowGroupSpec, build_desired, ted_from_json, ted_to_json
from b4.teops import Ack, OpFormatError, OpScheduler, TedStore, new_session_id

log = logging.getLogger("b4.server")


class TeServer:
    """One TE server replica."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.ident = cfg.get("id", f"te-{os.getpid()}")
        self.wan: Wan = load_wan(cfg["topology"])
        self.store = TedStore(cfg["db"])
        self.te_period = float(cfg.get("te_period", 10.0))
        self.op_timeout = float(cfg.get("op_timeout", 1.0))
        self.drain = float(cfg.get("drain", 0.2))
        self.ofc_ports: list[int] = [int(p) for p in cfg.get("ofcs", [])]
        self.lock = threading.RLock()
        self.events: "queue.Queue[tuple]" = queue.Queue()
        self.sched: OpScheduler | None = None
        self.role = "standby"
        self.te_enabled = True
        self.algorithm = str(cfg.get("algorithm") or self.wan.algorithm)
        self.port_down: set[tuple[str, int]] = set()
        self.clients: dict[int, RpcClient] = {}
        self.master_of: dict[str, int] = {}      # site -> OFC port of its ready master
        self.ready_sites: set[str] = set()
        self.last_alloc = None
        self.te_runs: list[dict[str, Any]] = []
        self._need_te = True
        self._last_te = 0.0
        self._dirty_db = False
        self._stop = threading.Event()
        self._changed = threading.Condition(self.lock)
        self.rpc = RpcServer(int(cfg.get("rpc_port", 0)), self._admin, name=f"{self.ident}-rpc").start()
        self.elector = None
        self._loop = threading.Thread(target=self._run, name=f"{self.ident}-loop", daemon=True)

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "TeServer":
        zk = self.cfg.get("zk")
        if zk:
            from b4.election import Elector

            self.elector = Elector(zk["hosts"], zk["path"], f"{self.ident}@127.0.0.1:{self.rpc.port}",
                                   lambda gen: self.events.put(("elected", gen)),
                                   lambda: self.events.put(("lost",)),
                                   session_timeout=float(zk.get("session_timeout", 2.0))).start()
        else:
            self.events.put(("elected", 0))
        self._loop.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self.elector:
            self.elector.stop()
        for c in list(self.clients.values()):
            c.close()
        self.rpc.stop()

    def _become_leader(self, generation: int) -> None:
        data = self.store.load() or {}
        with self.lock:
            prev = int(data.get("session", 0))
            sched = OpScheduler(new_session_id(max(prev, generation)), timeout=self.op_timeout,
                                drain=self.drain)
            if data:
                sched.load_json(data)
            self.sched = sched
            self.te_enabled = bool(data.get("te_enabled", True))
            if data.get("algorithm") in SERVER_ALGORITHMS:  # what the previous leader was told to run
                self.algorithm = data["algorithm"]
            self.role = "leader"
            self.master_of.clear()
            self.ready_sites.clear()
            self._need_te = True
            self._dirty_db = True
        log.info("%s: leading with session %d (%d entries dirty from the database)", self.ident, sched.session,
                 len(sched.dirty()))
        for port in self.ofc_ports:
            self._connect(port)

    def _lose_leadership(self) -> None:
        with self.lock:
            self.role = "standby"
            self.sched = None
            clients = list(self.clients.values())
            self.clients.clear()
        for c in clients:
            c.close()
        log.warning("%s: no longer leader", self.ident)

    # ------------------------------------------------------------------ controllers
    def _connect(self, port: int) -> None:
        if self._stop.is_set() or self.role != "leader":
            return
        try:
            c = RpcClient(port, on_message=lambda m, p=port: self.events.put(("ofc", p, m)), name=f"{self.ident}->ofc{port}")
        except OSError as e:
            log.info("%s: controller on port %d unreachable (%s); retrying", self.ident, port, e)
            threading.Timer(0.5, self._connect, args=(port,)).start()
            return
        with self.lock:
            self.clients[port] = c
            session = self.sched.session if self.sched else 0
        c.send({"type": "hello", "session": session, "server": self.ident})

    def _on_ofc(self, port: int, msg: dict[str, Any]) -> None:
        t = msg.get("type")
        sched = self.sched
        if sched is None:
            return
        if t == "ack":
            try:
                ack = Ack.from_json(msg)
            except OpFormatError as e:
                log.warning("%s: bad ack from controller %d: %s", self.ident, port, e)
                return
            res = sched.on_ack(ack)
            if ack.reason in ("not_master", "not_ready") and res == "retry":
                self._site_unready(ack.site, port)
            if res in ("clean", "error"):
                self._dirty_db = True
        elif t == "hello":
            if msg.get("role") == "master":
                for site, info in msg.get("sites", {}).items():
                    if info.get("ready"):
                        self._site_ready(site, port, info.get("ted", {}))
                    for sw, ports in info.get("down_ports", {}).items():
                        for p in ports:
                            self._set_port(sw, int(p), False)
            else:
                for site, p in list(self.master_of.items()):
                    if p == port:
                        self._site_unready(site, port)
        elif t == "event":
            ev = msg.get("event")
            if ev == "ready":
                self._site_ready(msg["site"], port, msg.get("ted", {}))
            elif ev == "role":
                c = self.clients.get(port)
                if msg.get("role") != "master":
                    for site, p in list(self.master_of.items()):
                        if p == port:
                            self._site_unready(site, port)
                if c is not None:
                    c.send({"type": "hello", "session": sched.session, "server": self.ident})
            elif ev == "port":
                self._set_port(msg["switch"], int(msg["port"]), bool(msg["up"]))
        elif t == "closed":
            with self.lock:
                self.clients.pop(port, None)
            for site, p in list(self.master_of.items()):
                if p == port:
                    self._site_unready(site, port)
            if not self._stop.is_set() and self.role == "leader":
                threading.Timer(0.3, self._connect, args=(port,)).start()
        elif t == "error":
            log.warning("%s: controller %d: %s", self.ident, port, msg.get("reason"))

    def _site_ready(self, site: str, port: int, ted_json: dict[str, Any]) -> None:
        sched = self.sched
        if sched is None or site not in self.wan.config.sites:
            return
        try:
            ted = ted_from_json(ted_json)
        except ValueError as e:
            log.error("%s: site %s reported a bad TED: %s", self.ident, site, e)
            return
        with self.lock:
            self.master_of[site] = port
            self.ready_sites.add(site)
            sched.set_installed(site, ted)
            sched.paused_sites.discard(site)
            self._dirty_db = True
        log.info("%s: site %s ready at controller %d with %d TE entries", self.ident, site, port, len(ted))
        self._push_links()

    def _site_unready(self, site: str, port: int) -> None:
        with self.lock:
            if self.master_of.get(site) == port:
                del self.master_of[site]
            self.ready_sites.discard(site)
            if self.sched is not None:
                self.sched.paused_sites.add(site)

    def _set_port(self, sw: str, port: int, up: bool) -> None:
        if sw not in self.wan.config.switches:
            return
        key = (sw, port)
        with self.lock:
            before = self.down_links()
            (self.port_down.discard if up else self.port_down.add)(key)
            after = self.down_links()
        if before != after:
            log.info("%s: links down now: %s", self.ident, ", ".join(sorted(after)) or "none")
            self._need_te = True
            self._push_links()

    def down_links(self) -> set[str]:
        out = set()
        for sw, port in self.port_down:
            ln = self.wan.config.switches[sw].port_links.get(port)
            if ln:
                out.add(ln)
        return out

    def _push_links(self) -> None:
        down = sorted(self.down_links())
        for port in set(self.master_of.values()):
            c = self.clients.get(port)
            if c is not None:
                c.send({"type": "links", "down": down})

    # ------------------------------------------------------------------ TE
    def run_te(self) -> None:
        sched = self.sched
        if sched is None:
            return
        t0 = time.perf_counter()
        down = self.down_links()
        problem = self.wan.problem(down)
        algorithm = self.algorithm
        alloc = solve_quantized(problem, algorithm)  # the encap switches hash in quanta
        specs = {f.name: FlowGroupSpec(f.name, f.fg.src, f.fg.dst, f.src_prefix, f.dst_prefix, f.dscp)
                 for f in self.wan.flow_groups}
        with self.lock:
            if self.te_enabled:
                desired = build_desired({fa.name: fa.tunnel_group for fa in alloc}, specs, self.wan.quantum, sched.meta)
            else:
                desired = {}
            changed = desired != sched.desired
            sched.set_desired(desired)
            self.last_alloc = alloc
            self._last_te = time.monotonic()
            self._need_te = False
            if changed:
                self._dirty_db = True
        runtime = time.perf_counter() - t0
        self.te_runs.append({"time": time.time(), "runtime_s": runtime, "algorithm": algorithm,
                             "te_runtime_s": alloc.runtime_s, "down": sorted(down), "changed": changed,
                             "throughput": alloc.throughput if self.te_enabled else 0.0})
        del self.te_runs[:-200]
        log.info("%s: TE (%s) run in %.1f ms: %.2f Mbit/s allocated, %s", self.ident, algorithm, runtime * 1000,
                 alloc.throughput,
                 f"{len(sched.dirty())} entries dirty" if changed else "no change")

    def _idle_wait(self) -> float:
        """How long the loop may sleep: short while ops are in flight or dirty, else until the
        next periodic TE run (events wake it at once)."""
        sched = self.sched
        if sched is None or self.role != "leader":
            return 0.2
        if self._need_te or self._dirty_db or sched.in_flight() or sched.dirty():
            return 0.01
        return max(0.01, min(0.5, self.te_period - (time.monotonic() - self._last_te)))

    def _run(self) -> None:
        last_save = 0.0
        while not self._stop.is_set():
            try:
                ev = self.events.get(timeout=self._idle_wait())
            except queue.Empty:
                ev = None
            try:
                while ev is not None:
                    self._handle_event(ev)
                    try:
                        ev = self.events.get_nowait()
                    except queue.Empty:
                        ev = None
                if self.role != "leader" or self.sched is None:
                    continue
                if self._need_te or time.monotonic() - self._last_te > self.te_period:
                    self.run_te()
                self._send_ops()
                now = time.monotonic()
                if self._dirty_db and now - last_save > 0.05:
                    self._save()
                    last_save = now
                with self._changed:
                    self._changed.notify_all()
            except Exception:
                log.exception("%s: main loop", self.ident)
                time.sleep(0.1)

    def wake(self) -> None:
        self.events.put(("call", lambda: None))

    def _handle_event(self, ev: tuple) -> None:
        kind = ev[0]
        if kind == "elected":
            self._become_leader(int(ev[1]))
        elif kind == "lost":
            self._lose_leadership()
        elif kind == "ofc":
            self._on_ofc(ev[1], ev[2])
        elif kind == "call":
            ev[1]()

    def _send_ops(self) -> None:
        sched = self.sched
        with self.lock:
            sched.paused_sites |= {s for s in self.wan.config.sites if s not in self.ready_sites}
            ops = sched.poll()
            routes = [(op, self.clients.get(self.master_of.get(op.site, -1))) for op in ops]
        for op, client in routes:
            if client is None or not client.send(op.to_json()):
                log.debug("%s: no controller for site %s; op %d waits", self.ident, op.site, op.seq)

    def _save(self) -> None:
        sched = self.sched
        if sched is None:
            return
        with self.lock:
            data = sched.to_json()
            data["te_enabled"] = self.te_enabled
            data["algorithm"] = self.algorithm
            self._dirty_db = False
        self.store.save(data)

    # ------------------------------------------------------------------ admin RPC
    def _admin(self, conn: Connection, msg: dict[str, Any]) -> dict[str, Any] | None:
        t = msg["type"]
        if t == "status":
            return self.status()
        if t == "te":
            enable, algorithm = msg.get("enable", self.te_enabled), msg.get("algorithm", self.algorithm)
            if not isinstance(enable, bool):
                return {"type": "error", "reason": "te: 'enable' must be true or false"}
            if algorithm not in SERVER_ALGORITHMS:
                return {"type": "error", "reason": f"te: 'algorithm' must be one of {', '.join(SERVER_ALGORITHMS)}"}
            with self.lock:
                self.te_enabled, self.algorithm = enable, algorithm
                self._need_te = True
                self._dirty_db = True
            log.info("%s: TE %s, algorithm %s", self.ident, "on" if enable else "off", algorithm)
            self.wake()
            return {"type": "te", "enabled": enable, "algorithm": algorithm}
        if t == "te_run":
            self._need_te = True
            self.wake()
            return {"type": "te_run"}
        if t == "wait_converged":
            return self._wait_converged(float(msg.get("timeout", 30)))
        if t == "show":
            return self.show()
        if t == "ops":
            limit = int(msg.get("limit", 30))
            sched = self.sched
            recs = [r.to_json() for r in list(sched.history)[-limit:]] if sched else []
            return {"type": "ops", "ops": recs, "errors": [e for _, e in (sched.errors if sched else [])][-10:]}
        if t == "op_stats":
            sched = self.sched
            return {"type": "op_stats", "rtt_ms": sched.rtts_ms() if sched else [],
                    "te_runs": self.te_runs[-50:]}
        return {"type": "error", "reason": f"unknown request {t!r}"}

    def _wait_converged(self, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                sched = self.sched
                ok = (sched is not None and self.role == "leader" and not self._need_te and sched.converged()
                      and len(self.ready_sites) == len(self.wan.config.sites))
                left = deadline - time.monotonic()
                if ok or left <= 0:
                    return {"type": "wait_converged", "converged": ok}
                self._changed.wait(min(left, 0.2))

    def status(self) -> dict[str, Any]:
        sched = self.sched
        with self.lock:
            return {"type": "status", "id": self.ident, "role": self.role, "te_enabled": self.te_enabled,
                    "algorithm": self.algorithm,
                    "session": sched.session if sched else None,
                    "converged": bool(sched and sched.converged()), "dirty": len(sched.dirty()) if sched else None,
                    "in_flight": sched.in_flight() if sched else None, "down_links": sorted(self.down_links()),
                    "ready_sites": sorted(self.ready_sites), "masters": dict(self.master_of),
                    "te_runs": len(self.te_runs)}

    def show(self) -> dict[str, Any]:
        sched, alloc = self.sched, self.last_alloc
        fgs, edges = [], []
        if alloc is not None and sched is not None:
            inst = alloc.instance
            for fa in alloc:
                tunnels = []
                for t in fa.tunnels:
                    p = "-".join(t.path)
                    tunnels.append({"path": p, "weight": t.weight, "rate": t.rate, "label": sched.meta.labels.get(p)})
                fgs.append({"name": fa.name, "src": fa.src, "dst": fa.dst, "demand": fa.demand, "rate": fa.rate,
                            "fair_share": fa.fair_share, "tunnels": tunnels})
            for i, e in enumerate(inst.problem.edges):
                edges.append({"src": e.src, "dst": e.dst, "capacity": e.capacity, "load": float(alloc.edge_loads[i])})
        return {"type": "show", "te_enabled": self.te_enabled, "algorithm": self.algorithm,
                "computed_by": alloc.algorithm if alloc is not None else None, "flow_groups": fgs, "edges": edges,
                "throughput": alloc.throughput if alloc is not None and self.te_enabled else 0.0,
                "installed": {s: ted_to_json(t) for s, t in (sched.installed.items() if sched else [])},
                "labels": sched.meta.labels if sched else {}, "group_ids": sched.meta.group_ids if sched else {},
                "down_links": sorted(self.down_links())}


def main(argv: list[str] | None = None) -> int:
    cfg = process_config("B4 TE server", argv)
    server = TeServer(cfg).start()
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
