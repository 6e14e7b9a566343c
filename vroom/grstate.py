"""What a VR's neighbours saw while it restarted: did graceful-restart helpers engage and
keep its routes, which routes were withdrawn and re-announced, when was every adjacency and
session back.

A restart always makes new BGP connections and new OSPF database exchanges, so uptimes and
connection counts (`vroom.topo.sessions_reset`) call every session reset. With graceful
restart (RFC 4724 for BGP, RFC 3623 for OSPF) a helper keeps forwarding on the routes it
had: `GrWatch` tells "re-established, routes kept by the helper" from a real reset.

::

    watch = GrWatch("r1", "10.255.0.1", {"10.0.12.1", ...}, {"n1": (n1_daemon, n1_ns), ...})
    watch.start()
    ...restart r1...
    result = watch.stop()        # {"n1": {...}, ...}; see `GrWatch.stop`
    gr_sessions(result)          # {"reset": [...], "kept_by_gr": [...]}

The neighbours' side is read from what they expose: FRR's JSON (`show ip ospf neighbor
detail json` grHelperStatus, `show bgp neighbors json` NSF state), BIRD's log (the watch
turns on `debug { states, events }` for the neighbour's OSPF/BGP protocols and puts the
previous setting back), and each neighbour's kernel FIB (``ip monitor route``) for routes
through the VR.
"""
from __future__ import annotations

import contextlib
import logging
import re
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from routerlab.daemons import Daemon
from routerlab.netns import Netns

log = logging.getLogger(__name__)

POLL_S = 0.2


@dataclass
class _Neighbour:
    name: str
    daemon: Daemon | None
    ns: Netns | None
    via_before: set[str] = field(default_factory=set)  # prefixes routed through the VR
    log_offset: int = 0
    monitor: subprocess.Popen | None = None
    lines: list[tuple[float, str]] = field(default_factory=list)
    reader: threading.Thread | None = None
    samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    debug_restore: list[str] = field(default_factory=list)


def _route_prefix(line: str) -> tuple[bool, str | None]:
    """An ``ip monitor route`` line -> (deleted, prefix)."""
    t = line.split()
    deleted = bool(t) and t[0] == "Deleted"
    if deleted:
        t = t[1:]
    while t and t[0] in ("unicast", "blackhole", "unreachable", "prohibited", "local", "broadcast"):
        t = t[1:]
    if not t or not re.match(r"^\d+\.\d+\.\d+\.\d+(/\d+)?$", t[0]):
        return deleted, None
    p = t[0] if "/" in t[0] else t[0] + "/32"
    return deleted, p


def routes_via(ns: Netns, addresses: set[str]) -> set[str]:
    """Prefixes of `ns`'s main table whose next hop is one of `addresses`."""
    out = set()
    text = ns.run(["ip", "-o", "-4", "route", "show", "table", "main"], check=False).stdout
    for ln in text.splitlines():
        t = ln.replace("\\", " ").split()
        if not t or "via" not in t:
            continue
        gws = {t[i + 1] for i, x in enumerate(t[:-1]) if x == "via"}
        if gws & addresses:
            _, p = _route_prefix(ln)
            if p:
                out.add(p)
    return out


class GrWatch:
    """Watches VR `vr`'s neighbours (name -> (daemon or None, namespace or None)) across
    a move; `router_id` and `addresses` say how neighbours know the VR."""

    def __init__(self, vr: str, router_id: str, addresses: set[str],
                 neighbours: dict[str, tuple[Daemon | None, Netns | None]]):
        self.vr, self.router_id, self.addresses = vr, router_id, set(addresses)
        self.nbs = {n: _Neighbour(n, d, ns) for n, (d, ns) in neighbours.items()}
        self.t0 = 0.0
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    # ---------------------------------------------------------------- state of one neighbour
    def state(self, nb: _Neighbour) -> dict[str, Any]:
        """The neighbour's view of the VR now: ospf/bgp state, helper flags (FRR)."""
        d = nb.daemon
        out: dict[str, Any] = {}
        if d is None or not d.is_running():
            return out
        try:
            if d.implementation == "frr":
                from routerlab.daemons import FrrDaemon
                assert isinstance(d, FrrDaemon)
                if d.spec.ospf_enabled:
                    data = d.vtysh_json("show ip ospf neighbor detail json")
                    for e in (data.get("neighbors") or {}).get(self.router_id, []):
                        out["ospf"] = (e.get("nbrState") or "").split("/")[0]
                        out["ospf_helping"] = e.get("grHelperStatus") not in (None, "None")
                if d.spec.bgp_enabled:
                    data = d.vtysh_json("show bgp neighbors json")
                    for peer, e in data.items():
                        if peer in self.addresses and isinstance(e, dict):
                            out["bgp"] = e.get("bgpState")
                            nsf = "NSF" in str(e.get("bgpStateIs", "")) + str(e.get("lastResetDueTo", ""))
                            out["bgp_helping"] = nsf and e.get("bgpState") != "Established"
                            out["bgp_nsf_reset"] = "NSF" in str(e.get("lastResetDueTo", ""))
                            out["bgp_connections"] = e.get("connectionsEstablished")
            else:
                for o in d.ospf_neighbors():
                    if o.router_id == self.router_id:
                        out["ospf"] = o.state
                for s in d.bgp_sessions():
                    if s.peer in self.addresses:
                        out["bgp"], out["bgp_connections"] = s.state, s.established_count
        except Exception as e:  # a poll is best effort; the next one may work
            out["error"] = str(e)[:120]
        return out

    def routes_back(self) -> bool:
        """Every neighbour routes again through the VR whatever it did before the watch."""
        return all(nb.via_before <= routes_via(nb.ns, self.addresses)
                   for nb in self.nbs.values() if nb.ns is not None)

    # ---------------------------------------------------------------- watching
    def start(self) -> GrWatch:
        self.t0 = time.monotonic()
        for nb in self.nbs.values():
            if nb.ns is not None:
                nb.via_before = routes_via(nb.ns, self.addresses)
                nb.monitor = subprocess.Popen(["ip", "-n", nb.ns.name, "-4", "monitor", "route"],
                                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                              text=True)
                nb.reader = threading.Thread(target=self._read, args=(nb,), daemon=True)
                nb.reader.start()
            d = nb.daemon
            if d is not None and d.implementation == "bird":
                self._bird_debug_on(nb)
            nb.samples.append((0.0, self.state(nb)))
        self._poller = threading.Thread(target=self._poll, daemon=True, name=f"grwatch-{self.vr}")
        self._poller.start()
        return self

    def _read(self, nb: _Neighbour) -> None:
        assert nb.monitor and nb.monitor.stdout
        for ln in nb.monitor.stdout:
            nb.lines.append((time.monotonic() - self.t0, ln.strip()))

    def _poll(self) -> None:
        while not self._stop.wait(POLL_S):
            for nb in self.nbs.values():
                nb.samples.append((time.monotonic() - self.t0, self.state(nb)))

    def _bird_debug_on(self, nb: _Neighbour) -> None:
        from routerlab.daemons import BirdDaemon
        from routerlab.daemons.bird import bgp_protocol_name
        d = nb.daemon
        assert isinstance(d, BirdDaemon)
        with contextlib.suppress(Exception):
            nb.log_offset = (d.run_dir / "bird.log").stat().st_size if d.run_dir else 0
        protos = []
        if d.spec.ospf_enabled:
            protos.append(("ospf1", "off"))
        for b in d.spec.bgp_neighbors:
            if b.peer in self.addresses:
                protos.append((bgp_protocol_name(b.peer), "{ states }"))
        for p, restore in protos:
            try:
                d.birdc(f"debug {p} {{ states, events }}")
                nb.debug_restore.append(f"debug {p} {restore}")
            except Exception as e:
                log.warning("%s: cannot turn on debugging of %s: %s", nb.name, p, e)

    def stop(self, settle_s: float = 0.0) -> dict[str, dict[str, Any]]:
        """Stop watching (after `settle_s` more seconds); per neighbour:

        - ``ospf``/``bgp``: ``{"before", "after", "helper", "helper_exit", "kept"}`` where
          ``helper`` says the neighbour acted as graceful-restart helper, ``kept`` that the
          adjacency/session is back and the VR's routes stayed in the neighbour's FIB
        - ``routes_via_vr``: prefixes routed through the VR before the move
        - ``withdrawn``/``reannounced``: of those, how many the neighbour's FIB deleted and
          how many were added again (or replaced) during the watch, ``route_events`` all
          events for them
        - ``back_s``: seconds from `start` until the neighbour's state was last restored
          (None: never back while watched); ``routes_back_s`` the same for its routes through
          the VR (0: none withdrawn)
        """
        if settle_s:
            time.sleep(settle_s)
        self._stop.set()
        if self._poller:
            self._poller.join(5)
        out = {}
        for nb in self.nbs.values():
            nb.samples.append((time.monotonic() - self.t0, self.state(nb)))
            if nb.monitor is not None:
                nb.monitor.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    nb.monitor.wait(2)
                if nb.reader:
                    nb.reader.join(2)
            out[nb.name] = self._summarise(nb)
            if nb.daemon is not None:
                for cmd in nb.debug_restore:
                    with contextlib.suppress(Exception):
                        nb.daemon.cli(cmd)
        return out

    # ---------------------------------------------------------------- results
    def _bird_log(self, nb: _Neighbour) -> str:
        d = nb.daemon
        if d is None or d.run_dir is None:
            return ""
        try:
            with open(d.run_dir / "bird.log", errors="replace") as f:
                f.seek(nb.log_offset)
                return f.read()
        except OSError:
            return ""

    def _summarise(self, nb: _Neighbour) -> dict[str, Any]:
        before = nb.samples[0][1] if nb.samples else {}
        after = nb.samples[-1][1] if nb.samples else {}
        res: dict[str, Any] = {"routes_via_vr": len(nb.via_before)}
        deleted: set[str] = set()
        readded: set[str] = set()
        events = []
        for t, ln in nb.lines:
            gone, p = _route_prefix(ln)
            if p is None or p not in nb.via_before:
                continue
            events.append((round(t, 3), ln))
            if gone:
                deleted.add(p)
            elif p in deleted or not gone:
                readded.add(p)
        res["withdrawn"] = len(deleted)
        res["reannounced"] = len(readded)
        if not deleted:
            res["routes_back_s"] = 0.0
        elif deleted <= readded:
            res["routes_back_s"] = max(t for t, ln in events if not _route_prefix(ln)[0])
        else:
            res["routes_back_s"] = None  # not all back while watched
        res["route_events"] = events[:50]
        blog = self._bird_log(nb) if nb.daemon is not None and nb.daemon.implementation == "bird" else ""
        rid = re.escape(self.router_id)
        for proto in ("ospf", "bgp"):
            if proto not in before:
                continue
            helper = any(s.get(f"{proto}_helping") for _, s in nb.samples)
            exit_reason = None
            if proto == "ospf" and blog:
                if re.search(rf"Neighbor {rid} on \S+ started graceful restart", blog):
                    helper = True
                m = re.search(rf"Neighbor {rid} on \S+ finished graceful restart|Graceful restart "
                              rf"(?:canceled|timer expired) for nbr {rid}", blog)
                exit_reason = m.group(0) if m else None
            if proto == "bgp" and blog:
                if re.search(r"Neighbor graceful restart detected", blog):
                    helper = True
                m = re.search(r"Neighbor graceful restart (?:done|timeout)", blog)
                exit_reason = m.group(0) if m else None
            if proto == "bgp" and any(s.get("bgp_nsf_reset") for _, s in nb.samples[1:]):
                helper = True
            back = after.get(proto) == before.get(proto) and before.get(proto) in ("Full",
                                                                                   "Established")
            proto_routes = nb.via_before  # the FIB does not say which protocol; all of them
            kept = back and helper and not (deleted & proto_routes)
            dipped = any(s.get(proto) != before.get(proto) for _, s in nb.samples)
            res[proto] = {"before": before.get(proto), "after": after.get(proto), "helper": helper,
                          "helper_exit": exit_reason, "kept": kept, "dipped": dipped,
                          "connections": [before.get(f"{proto}_connections"),
                                          after.get(f"{proto}_connections")]
                          if proto == "bgp" else None}
        res["back_s"] = self._back_s(nb, before)
        return res

    @staticmethod
    def _back_s(nb: _Neighbour, before: dict[str, Any]) -> float | None:
        """When every protocol was last seen returning to its state before the watch."""
        want = {p: before[p] for p in ("ospf", "bgp") if p in before}
        last_bad = None
        for t, s in nb.samples:
            if any(s.get(p) != v for p, v in want.items()):
                last_bad = t
        if last_bad is None:
            return 0.0
        later = [t for t, s in nb.samples if t > last_bad]
        return round(later[0], 3) if later else None


def gr_sessions(result: dict[str, dict[str, Any]]) -> dict[str, list[str]]:
    """From a `GrWatch.stop` result: which adjacencies/sessions were reset for real and which
    were re-established with the helper keeping the routes (graceful restart)."""
    out: dict[str, list[str]] = {"reset": [], "kept_by_gr": [], "unchanged": []}
    for nb, r in result.items():
        for proto, label in (("ospf", "OSPF"), ("bgp", "BGP")):
            p = r.get(proto)
            if not p:
                continue
            restarted = p["helper"] or p.get("dipped") or p["after"] != p["before"] or (
                proto == "bgp" and p.get("connections") and None not in p["connections"]
                and p["connections"][1] > p["connections"][0]) or r.get("withdrawn")
            if p["kept"]:
                out["kept_by_gr"].append(f"{nb} {label}")
            elif restarted or p["after"] not in ("Full", "Established"):
                out["reset"].append(f"{nb} {label}")
            else:
                out["unchanged"].append(f"{nb} {label}")
    return out
