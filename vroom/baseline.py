"""The baseline VROOM is measured against: moving a router by restarting it.

`restart_move(net, "r1", "B")` (a `RestartMove`): prepare r1's namespace at B, stop the daemon at A,
start B's data plane, re-patch every link to B, start the daemon at B with the same
configuration, remove A's state. Sessions necessarily restart (new TCP connections, new
OSPF adjacencies) and B forwards only what the new daemon has learned.

With ``graceful`` (the default when the VR's spec enables graceful restart; FRR and BIRD)
the restart is the best an operator can do: BGP graceful restart (RFC 4724) and OSPF
graceful restart (RFC 3623), configured on both sides (the spec's ``graceful_restart``
renders it for the VR and its neighbours), the forwarding state kept at the new place:

- prepare: neighbours and FIB copied to B; B's data plane started from them;
- stop: FRR announces the restart with ``graceful-restart prepare ip ospf`` (Grace-LSAs),
  the move waits until every neighbour acknowledged them, copies the FIB again, then stops
  the daemons (zebra runs with ``-r``: the FIB stays); BIRD gets ``birdc graceful restart``
  (Grace-LSAs, BGP sessions closed without withdrawing) and ends by itself;
- links re-patched at once: every circuit in one OpenFlow bundle, A's old ports lingering
  50 ms for the frames already on their way;
- start at B in recovery: zebra ``-K`` keeps the routes it finds, BIRD ``-R`` keeps them and
  restarts OSPF gracefully; ospfd reads its planned-restart state from
  ``/var/run/frr/ospfd-gr.json`` (one file for the host: FRR restarts are serialised by a
  lock, and config checks no longer consume it, see `routerlab.daemons.frr`).

Measured (1,000 pps probes, n1 -> r1 -> n2 over OSPF and n1 -> r1 -> ext over BGP): FRR VR
0 lost on both paths; BIRD VR 0 on the BGP path, ~1,000 on the OSPF path: at the end of its
graceful restart BIRD 2.0.12 may not re-originate its router-LSA yet (MinLSInterval counts
from when the pre-restart copy arrived from a neighbour, 1-2 s before) but already flushes
that copy as stale, so the helpers lose the VR for one OSPF tick (1 s). Plain restart:
1,500-3,000 lost on the BGP path, ~6,000 on the OSPF path.

``graceful=False`` is the plain restart (FIB not copied, daemons started from nothing).

With ``observe`` (neighbour name -> (daemon or None, namespace or None); see
`vroom.topo.TopoNetwork.gr_neighbours`) a `vroom.grstate.GrWatch` follows the neighbours
through the move, and the report (`RestartReport`) says per neighbour whether the helper
engaged and kept the VR's routes, which routes were withdrawn and re-announced, and when
every neighbour's adjacencies and sessions were back.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from routerlab.daemons import BirdDaemon, Daemon, FrrDaemon
from routerlab.daemons.frr import OSPFD_GR_STATE
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.netns import Netns
from routerlab.ovs import send_bundle

from .cpmove import copy_neighbours, copy_routes
from .grstate import GrWatch, gr_sessions
from .hypervisor import DataPlaneHypervisor
from .migrate import MigrationRefused, MigrationReport, VrMove
from .phases import Phase, Step
from .transport import Transport

if TYPE_CHECKING:
    from .network import VroomNetwork

log = logging.getLogger(__name__)

LINK_LINGER_S = 0.05  # A's old ports still reach the neighbours this long after the switch
GRACE_ACK_TIMEOUT_S = 3.0  # how long the Grace-LSAs may take to be acknowledged
# one FRR graceful restart at a time on this host: ospfd 8.4 keeps the restart's state in ONE
# file keyed by VRF name (OSPFD_GR_STATE), which the next ospfd to start takes over
GR_LOCK = OSPFD_GR_STATE.parent / ".routerlab-ospfd-gr.lock"


def _gr_state() -> dict[str, Any]:
    try:
        return json.loads(OSPFD_GR_STATE.read_text() or "{}")
    except (OSError, ValueError):
        return {}


@dataclass
class RestartReport(MigrationReport):
    """A `MigrationReport` with what the restart did to the neighbours."""

    graceful: bool = False
    daemon_down_s: float | None = None
    #: per neighbour, `vroom.grstate.GrWatch.stop`'s result (empty: nobody observed)
    neighbours: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: seconds from the start of the move until every observed neighbour was back: its
    #: adjacencies/sessions in their state before the move, its routes through the VR
    neighbours_back_s: float | None = None

    @property
    def sessions(self) -> dict[str, list[str]]:
        """{"reset": [...], "kept_by_gr": [...], "unchanged": [...]} ("n1 OSPF", ...)."""
        return gr_sessions(self.neighbours)

    @property
    def helpers_engaged(self) -> dict[str, dict[str, bool]]:
        return {nb: {p: bool(r[p]["helper"]) for p in ("ospf", "bgp") if r.get(p)}
                for nb, r in self.neighbours.items()}

    @property
    def routes_withdrawn(self) -> int:
        return sum(r.get("withdrawn", 0) for r in self.neighbours.values())

    @property
    def routes_reannounced(self) -> int:
        return sum(r.get("reannounced", 0) for r in self.neighbours.values())

    def to_json(self) -> dict[str, Any]:
        out = super().to_json()
        out.update({"graceful": self.graceful, "daemon_down_s": self.daemon_down_s,
                    "neighbours": self.neighbours, "neighbours_back_s": self.neighbours_back_s,
                    "sessions": self.sessions, "routes_withdrawn": self.routes_withdrawn,
                    "routes_reannounced": self.routes_reannounced})
        return out

    def summary(self) -> str:
        s = super().summary()
        if not self.ok:
            return s
        s += f"; {'graceful' if self.graceful else 'plain'} restart"
        if self.neighbours:
            ses = self.sessions
            s += (f"; reset {len(ses['reset'])}, kept by GR {len(ses['kept_by_gr'])}; routes "
                  f"withdrawn {self.routes_withdrawn}, re-announced {self.routes_reannounced}; "
                  f"neighbours back after {self.neighbours_back_s} s")
        return s


class RestartMove(VrMove):
    """Move VR `vr` to `target` by stopping it at its old place and starting it anew."""

    def __init__(self, net: VroomNetwork, vr: str, target: str, *,
                 graceful: bool | None = None,
                 observe: dict[str, tuple[Daemon | None, Netns | None]] | None = None,
                 back_timeout_s: float = 60.0, settle_s: float = 3.0):
        super().__init__(net, vr, target)
        self.report: RestartReport = RestartReport(vr, "?", target)
        self.graceful = graceful
        self.observe = observe
        self.back_timeout_s, self.settle_s = back_timeout_s, settle_s
        self.stopped_at: float | None = None
        self._gr_lock: int | None = None  # fd holding GR_LOCK during an FRR graceful restart

    def check(self) -> None:
        net = self.net
        if self.vr_name not in net.vrs:
            raise MigrationRefused(f"unknown virtual router {self.vr_name!r}")
        if self.target_name not in net.prs:
            raise MigrationRefused(f"unknown physical router {self.target_name!r}")
        vr, dst = net.vrs[self.vr_name], net.prs[self.target_name]
        if vr.pr is None or vr.daemon is None:
            raise MigrationRefused(f"{vr.name} is not running anywhere")
        if vr.pr is dst:
            raise MigrationRefused(f"{vr.name} already runs at {dst.name}")
        if dst.free_ports() < len(vr.interfaces):
            raise MigrationRefused(f"physical router {dst.name} is full: {vr.name} needs "
                                   f"{len(vr.interfaces)} free ports, {dst.name} has "
                                   f"{dst.free_ports()}")

    def run(self) -> RestartReport:
        self.check()
        self._resolve()
        assert self.vr and self.src and self.dst
        if self.graceful is None:
            self.graceful = bool(self.vr.spec.graceful_restart) and isinstance(
                self.vr.daemon, (BirdDaemon, FrrDaemon))
        self.report.graceful = bool(self.graceful)
        watch = self._watch()
        # B's data plane is up (from the copied FIB) before the stop, so that the links move
        # right after it: once its daemons are gone, A's FIB may lose routes (FRR's zebra
        # takes its nexthop objects along) and only the re-patch ends that
        steps = [Step("prepare-target", Phase.PREPARE, self._prepare, self._release_target),
                 Step("start-data-plane", Phase.DP_CLONE, self._data_plane, self._stop_data_plane),
                 Step("stop-daemon", Phase.CP_MIGRATION, self._stop),
                 Step("re-patch-links", Phase.LINK_MIGRATION, self._links, commit=True),
                 Step("start-daemon", Phase.CP_MIGRATION, self._start),
                 Step("cleanup", Phase.CLEANUP, self._cleanup)]
        try:
            self._run_steps(f"restart {self.vr_name} {self.src.name}->{self.dst.name}", steps)
        finally:
            if watch is not None:
                self._finish_watch(watch)
        log.info("restart: %s", self.report.summary())
        return self.report

    def _watch(self) -> GrWatch | None:
        if not self.observe:
            return None
        vr = self.vr
        assert vr
        addrs = {str(ipaddress.IPv4Interface(i.address).ip) for i in vr.spec.interfaces}
        if vr.spec.loopback:
            addrs.add(str(ipaddress.IPv4Interface(vr.spec.loopback).ip))
        return GrWatch(vr.name, vr.spec.router_id, addrs, self.observe).start()

    def _finish_watch(self, watch: GrWatch) -> None:
        """Wait until every neighbour is back (or the timeout), then `settle_s` more (what
        happens when the restarted router ends its graceful restart), and report."""
        def back() -> bool:
            return all(s == b for s, b in zip(current(), before)) and watch.routes_back()

        def current() -> list[dict[str, Any]]:
            return [{p: st.get(p) for p in ("ospf", "bgp")}
                    for st in (watch.state(nb) for nb in watch.nbs.values())]

        before = [{p: nb.samples[0][1].get(p) for p in ("ospf", "bgp")}
                  for nb in watch.nbs.values()]
        if self.report.ok:
            with contextlib.suppress(ExpectTimeout):
                wait_for(back, self.back_timeout_s, interval=0.2, retry_on=(),
                         what="every neighbour back")
        result = watch.stop(settle_s=self.settle_s if self.report.ok else 0.0)
        self.report.neighbours = result
        backs = [r.get(k) for r in result.values() for k in ("back_s", "routes_back_s")]
        self.report.neighbours_back_s = None if None in backs else max(backs, default=0.0)

    def _prepare(self) -> dict:
        assert self.src_ns
        dst_ns = self._bind_target()
        out: dict[str, Any] = {"graceful": self.graceful}
        if self.graceful:  # the forwarding state survives a graceful restart
            out["neighbours_copied"] = copy_neighbours(self.src_ns.name, dst_ns.name)
            out["routes_copied"] = copy_routes(self.src_ns.name, dst_ns.name)
        return out

    def _stop(self) -> dict:
        vr = self.vr
        assert vr and vr.daemon and self.src_ns and self.dst_ns
        self.stopped_at = time.monotonic()
        out: dict[str, Any] = {"graceful": self.graceful}
        daemon = vr.daemon
        if self.graceful and isinstance(daemon, FrrDaemon):
            if daemon.spec.ospf_enabled:
                out.update(self._frr_prepare(daemon))
            # the FIB as it is at the stop (zebra -r leaves it at A; B needs it)
            out["routes_copied"] = copy_routes(self.src_ns.name, self.dst_ns.name)
            out["neighbours_copied"] = copy_neighbours(self.src_ns.name, self.dst_ns.name)
        elif self.graceful and isinstance(daemon, BirdDaemon):
            try:
                daemon.birdc("graceful restart")
            except Exception as e:  # still stop it, just not gracefully
                log.warning("%s: graceful restart request failed: %s", vr.name, e)
                out["graceful_request"] = str(e)
            with contextlib.suppress(ExpectTimeout):  # it ends itself; else it is stopped below
                wait_for(lambda: not daemon.is_running(), 10, interval=0.02, retry_on=(),
                         what=f"{vr.name}'s daemon to end after its graceful restart")
            out["routes_copied"] = copy_routes(self.src_ns.name, self.dst_ns.name)
        daemon.stop()
        return out

    def _frr_prepare(self, daemon: FrrDaemon) -> dict[str, Any]:
        """`graceful-restart prepare ip ospf`, then wait until every Full neighbour has
        acknowledged the Grace-LSAs (its retransmission list is empty)."""
        t0 = time.monotonic()
        self._take_gr_state_file()
        try:
            said = daemon.vtysh("graceful-restart prepare ip ospf").strip()
        except Exception as e:
            log.warning("%s: graceful-restart prepare failed: %s", daemon.spec.name, e)
            return {"grace_lsas": f"refused: {e}"}

        def acked() -> bool:
            data = daemon.vtysh_json("show ip ospf neighbor detail json")
            return all(e.get("linkStateRetransmissionListCounter", 0) == 0
                       for es in (data.get("neighbors") or {}).values() for e in es
                       if str(e.get("nbrState", "")).startswith("Full"))

        try:
            wait_for(acked, GRACE_ACK_TIMEOUT_S, interval=0.02, what="the Grace-LSAs acknowledged")
            state = "acknowledged"
        except ExpectTimeout:
            state = "not acknowledged"
            log.warning("%s: Grace-LSAs not acknowledged within %.0f s", daemon.spec.name,
                        GRACE_ACK_TIMEOUT_S)
        saved = "default" in (_gr_state().get("instances") or {})
        if not saved:
            log.warning("%s: ospfd saved no graceful-restart state in %s: the restarted ospfd "
                        "will not restart gracefully", daemon.spec.name, OSPFD_GR_STATE)
        return {"grace_lsas": state, "grace_ack_s": round(time.monotonic() - t0, 3),
                "gr_state_saved": saved, **({"prepare_said": said} if said else {})}

    def _take_gr_state_file(self) -> None:
        """Hold GR_LOCK (one FRR graceful restart at a time on the host) and make sure ospfd
        can write OSPFD_GR_STATE: it runs as root without CAP_DAC_OVERRIDE, and the directory
        belongs to user frr, so the file must exist and belong to root beforehand."""
        OSPFD_GR_STATE.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(GR_LOCK, os.O_CREAT | os.O_RDWR, 0o600)
        deadline = time.monotonic() + 120
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise MigrationRefused("another FRR graceful restart holds "
                                           f"{GR_LOCK} for over 120 s") from None
                time.sleep(0.05)
        self._gr_lock = fd
        if "default" in (_gr_state().get("instances") or {}):
            log.warning("removing a stale graceful-restart state from %s", OSPFD_GR_STATE)
        OSPFD_GR_STATE.write_text("{}\n")  # ours, empty: nobody else's restart is pending
        os.chown(OSPFD_GR_STATE, 0, 0)

    def _release_gr_state(self, timeout: float = 5.0) -> dict[str, Any]:
        """After the restart: wait until the new ospfd took its state over (it removes the
        entry when it reads it), clear what is left, release GR_LOCK."""
        if self._gr_lock is None:
            return {}
        taken = True
        try:
            wait_for(lambda: "default" not in (_gr_state().get("instances") or {}), timeout,
                     interval=0.05, retry_on=(), what="ospfd to take its restart state over")
        except ExpectTimeout:
            taken = False
            log.warning("the restarted ospfd did not take %s over: cleared", OSPFD_GR_STATE)
        with contextlib.suppress(OSError):
            OSPFD_GR_STATE.write_text("{}\n")
        fcntl.flock(self._gr_lock, fcntl.LOCK_UN)
        os.close(self._gr_lock)
        self._gr_lock = None
        return {"gr_state_taken": taken}

    def _finish(self) -> None:
        self._release_gr_state(timeout=0.0)

    def _data_plane(self) -> dict:
        vr, dst = self.vr, self.dst
        assert vr and dst and self.dst_ns
        self.hv_dst = DataPlaneHypervisor(vr.vr_id, dst.bridge_name, self.dst_ns.name,
                                          dst.bindings(vr), name=f"{vr.name}@{dst.name}")
        dst.hypervisors[vr.name] = self.hv_dst
        return self.hv_dst.start().to_json()

    def _stop_data_plane(self) -> None:
        dst = self.dst
        assert dst and self.vr
        hv = dst.hypervisors.pop(self.vr.name, None)
        if hv is not None:
            hv.stop(remove_flows=True)
            hv.close()
        self.hv_dst = None

    def _links(self) -> dict:
        """Every circuit of the VR switched to B in ONE bundle (one after the other, a path
        through two links is split for tens of milliseconds: ingress at B, egress still at
        A); A's old ports keep reaching the neighbours for LINK_LINGER_S (frames already in
        A's data plane are delivered), then released."""
        vr, src, dst = self.vr, self.src, self.dst
        assert vr and src and dst
        tr = self.net.transport
        lines, moved = [], []
        for itf in vr.interfaces:
            name = self.net.circuit(vr.name, itf.name)
            if name is None or name not in tr.circuits:
                continue
            c = tr.circuits[name]
            old, new = src.transport_port(vr.name, itf.name), dst.transport_port(vr.name, itf.name)
            peer = c.peer(old)
            lines += [Transport._flow(peer, new), Transport._flow(new, peer)]
            moved.append((itf.name, name, c, old, new, peer))
        t0 = time.monotonic()
        if lines:
            send_bundle(tr.name, lines)
        secs = time.monotonic() - t0
        for ifname, name, c, old, new, peer in moved:
            c.lingering.append((old, peer))
            if old == c.a:
                c.a = new
            else:
                c.b = new
            tr.repatches.append({"circuit": name, "from": old, "to": new, "seconds": round(secs, 4)})
            self.report.links.append({"interface": ifname, "circuit": name,
                                      "seconds": round(secs, 4), "at": time.time()})
        time.sleep(LINK_LINGER_S)
        for _, name, *_ in moved:
            tr.release(name)
        return {"moved": [m[0] for m in moved], "bundle_s": round(secs, 4)}

    def _start(self) -> dict:
        vr = self.vr
        assert vr and self.dst_ns and vr.run_dir
        vr.daemon = vr.make_daemon()
        if self.graceful and isinstance(vr.daemon, (FrrDaemon, BirdDaemon)):
            vr.daemon.gr_recover = True  # zebra -K / bird -R: keep the FIB while re-learning
        vr.daemon.start(self.dst_ns, vr.run_dir)
        vr.ns, vr.pr = self.dst_ns, self.dst
        down = time.monotonic() - (self.stopped_at or time.monotonic())
        self.report.daemon_down_s = round(down, 4)
        return {"daemon_down_s": round(down, 4), **self._release_gr_state()}

    def _cleanup(self) -> dict:
        vr, src = self.vr, self.src
        assert vr and src
        hv = src.hypervisors.pop(vr.name, None)
        if hv is not None:
            hv.stop(remove_flows=True)
            hv.close()
        src.portmap.unbind(vr.name)
        if self.src_ns is not None:
            src.park(vr, self.src_ns)  # kept for the VR's return (see PhysicalRouter.park)
        else:
            src.del_vr_ports(vr)
        vr.migrations += 1
        return {}


def restart_move(net: VroomNetwork, vr: str, target: str, **options: Any) -> RestartReport:
    """Move `vr` to `target` by restarting it there (the baseline): THE entry point
    (options: those of `RestartMove`: ``graceful``, ``observe``, ``back_timeout_s``,
    ``settle_s``). Returns the report (also appended to ``net.history``)."""
    return RestartMove(net, vr, target, **options).run()
