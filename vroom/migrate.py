"""Live migration of a virtual router between physical routers (VROOM), phase by phase.

`migrate(net, "r1", "B")` (a `Migration`) moves VR r1 from wherever it runs (A) to B:

1. prepare-target: bind r1's interfaces to free ports of B; a namespace at B with the same
   interface names, ifindexes, MACs and addresses; FIB and neighbours copied into it;
2. remote-control-plane: the A-B tunnel; B accepts tunnelled frames for r1 and sends its
   egress through the tunnel (r1's circuits are still patched to A); B punts control
   traffic to r1's namespace at B;
3. control-plane-migration: CRIU (pre-copy when possible, else stall-and-copy) from A's
   namespace to B's; right after the restore A punts into the tunnel, multicast groups are
   re-joined and A's lock rules removed; A's hypervisor now follows r1's FIB at B;
4. data-plane-cloning: B's bridge repopulated (bulk) from r1's FIB at B, timed;
5. double-data-planes: A and B both forward and both follow r1's FIB (checked equal);
6. link-migration: each neighbour circuit re-patched from A to B, one at a time,
   make-before-break (transport switched with the old port still delivering; B egresses
   locally; A egresses through the tunnel; the old port released), the point of no return;
7. cleanup: r1's flows, ports, namespace and tunnel use at A removed, and checked gone.

Before anything changes, `check()` refuses what cannot work (unknown VR or router, a full
target, missing CRIU features) with a one-line reason. If a step fails, the steps done are
undone in reverse: r1 keeps running at A (restored from its dump when it had already
stopped, or moved back when it already ran at B). `report` holds every phase's timing.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from routerlab import criu as rlcriu
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.netns import Netns

from .binding import TunnelEnd
from .cpmove import (ControlPlaneMove, CpMoveResult, MigrationLink, PriorityCriu,
                     RouteWatch, copy_neighbours, copy_routes)
from .flows import flows_of_vr
from .hypervisor import DataPlaneHypervisor
from .phases import MigrationFailed, Phase, PhaseRecord, PhaseRunner, Step
from .router import PhysicalRouter, VirtualRouter, prepare_namespace

if TYPE_CHECKING:
    from .network import VroomNetwork

log = logging.getLogger(__name__)

# Daemons whose state lives in the kernel FIB and that CRIU can move, with the CRIU features
# each needs beyond NEEDED_FEATURES. FRR's zebra holds rtnetlink groups above 32: a CRIU
# with `netlink_groups_gt32` dumps them as they are, else they are dropped right before the
# dump and added back after the restore (`vroom.cpmove.netlink`); its daemons must run as
# one process tree (`FrrDaemon(spec, process_tree=True)`: they share zserv Unix sockets).
MIGRATABLE: dict[str, tuple[str, ...]] = {"bird": (), "frr": ()}
NEEDED_FEATURES = ("check", "socket_dump")
LINGER_S = 0.05  # how long a re-patched circuit's old port keeps delivering
# Post-copy restore from this much dumped memory: restoring reads the pages in at ~3.5 GB/s
# here (0.37 s of a 1M-route FRR's 1.0 s freeze, 1.3 GB; post-copy 0.17 s; 500k: 0.24 ->
# 0.15 s). At 250k routes (340 MB) the lazy-pages server's start-up (~0.04 s) ate the gain
# (0.144 -> 0.138 s), so smaller dumps are restored whole.
POSTCOPY_MIN_BYTES = 512 << 20


class MigrationRefused(ValueError):
    """The migration cannot be done; nothing was touched. One line."""


Hook = Callable[["Migration"], None]


@dataclass
class MigrationReport:
    """What a migration did and how long each part took."""

    vr: str
    source: str
    target: str
    ok: bool = False
    error: str | None = None
    rolled_back: bool = False
    phases: list[PhaseRecord] = field(default_factory=list)
    cp: CpMoveResult | None = None
    clone: dict[str, Any] = field(default_factory=dict)
    links: list[dict[str, Any]] = field(default_factory=list)
    total_s: float = 0.0

    @property
    def freeze_s(self) -> float | None:
        return self.cp.freeze_s if self.cp else None

    def phase_seconds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for r in self.phases:
            out[r.phase.value] = round(out.get(r.phase.value, 0.0) + r.seconds, 4)
        return out

    def to_json(self) -> dict[str, Any]:
        return {"vr": self.vr, "source": self.source, "target": self.target, "ok": self.ok,
                "error": self.error, "rolled_back": self.rolled_back,
                "total_s": round(self.total_s, 4), "freeze_s": self.freeze_s,
                "phase_seconds": self.phase_seconds(),
                "phases": [r.to_json() for r in self.phases],
                "cp": self.cp.to_json() if self.cp else None, "clone": self.clone,
                "links": self.links}

    def summary(self) -> str:
        if not self.ok:
            return f"{self.vr} {self.source} -> {self.target} FAILED: {self.error}"
        ph = ", ".join(f"{k} {v:.3f}s" for k, v in self.phase_seconds().items())
        freeze = "" if self.freeze_s is None else f"control-plane freeze {self.freeze_s:.3f} s; "
        return f"{self.vr} {self.source} -> {self.target} in {self.total_s:.2f} s; {freeze}{ph}"


class VrMove:
    """What moving VR `vr` to physical router `target` involves whichever way it is done
    (`Migration`, `vroom.baseline.RestartMove`): the routers and namespaces, the report,
    preparing the target and undoing that, running the steps."""

    def __init__(self, net: VroomNetwork, vr: str, target: str):
        self.net = net
        self.vr_name, self.target_name = vr, target
        self.report = MigrationReport(vr, "?", target)
        # filled as the steps run
        self.vr: VirtualRouter | None = None
        self.src: PhysicalRouter | None = None
        self.dst: PhysicalRouter | None = None
        self.src_ns: Netns | None = None
        self.dst_ns: Netns | None = None
        self.hv_dst: DataPlaneHypervisor | None = None

    def _resolve(self) -> None:
        """After the check: the VR, the router it runs at (A) and the target (B)."""
        self.vr = self.net.vrs[self.vr_name]
        self.src, self.dst = self.vr.pr, self.net.prs[self.target_name]
        assert self.src is not None
        self.src_ns = self.vr.ns
        self.report.source = self.src.name

    def _bind_target(self) -> Netns:
        """Bind the VR's interfaces to free ports of B and make its namespace there."""
        vr, dst = self.vr, self.dst
        assert vr and dst
        dst.portmap.bind(vr.name, [i.name for i in vr.interfaces])
        self.dst_ns = prepare_namespace(vr, dst, self.net.ns_name(vr.name, dst.name))
        return self.dst_ns

    def _release_target(self) -> None:
        """Undo `_bind_target`: B's ports for the VR and its namespace there."""
        vr, dst = self.vr, self.dst
        assert vr and dst
        if self.dst_ns is not None:
            dst.park(vr, self.dst_ns)  # kept for the next move here (see PhysicalRouter.park)
            self.dst_ns = None
        else:
            dst.del_vr_ports(vr)
        dst.portmap.unbind(vr.name)

    def _run_steps(self, label: str, steps: list[Step]) -> None:
        """Run `steps`, recording them in the report whether they succeed or roll back
        (MigrationFailed is raised again); a move done goes into the network's history."""
        t0 = time.monotonic()
        try:
            self.report.phases = PhaseRunner(label=label).run(steps)
            self.report.ok = True
            self.net.history.append(self.report)
        except MigrationFailed as e:
            self.report.phases, self.report.error = e.records, str(e)
            self.report.rolled_back = e.rolled_back
            raise
        finally:
            self._finish()
            self.report.total_s = time.monotonic() - t0

    def _finish(self) -> None:
        """Release what the steps may hold, however they ended (nothing here)."""


class Migration(VrMove):
    """One migration of VR `vr` to physical router `target` (see the module docstring)."""

    def __init__(self, net: VroomNetwork, vr: str, target: str, *,
                 criu: rlcriu.Criu | None = None, precopy: str = "auto",
                 link_pause_s: float = 0.0, hooks: dict[str, Hook] | None = None,
                 features: dict[str, rlcriu.Feature] | None = None,
                 page_server_mbps: float | None = None, postcopy: str = "auto"):
        super().__init__(net, vr, target)
        self._criu = criu
        self.precopy_mode = precopy  # auto | on | off
        # auto: restore post-copy when the dump's pages reach POSTCOPY_MIN_BYTES and this
        # kernel has userfaultfd; on: always; off: never
        self.postcopy_mode = postcopy
        self.link_pause_s = link_pause_s
        self.hooks = hooks or {}
        self._features = features
        self.page_server_mbps = page_server_mbps
        self.link: MigrationLink | None = None
        # filled as the steps run
        self.hv_src: DataPlaneHypervisor | None = None
        self.move: ControlPlaneMove | None = None
        self.tunnel_ports: tuple[int, int] | None = None
        self.moved_links: list[str] = []
        self.here_src: set[str] = set()  # interfaces whose circuits are patched to A
        self.here_dst: set[str] = set()  # ... to B
        self.route_watch: RouteWatch | None = None
        self.dump_attempt = 0  # of the control plane's dump (hook "before-dump" sees it)

    # ------------------------------------------------------------------ refusal
    def check(self) -> None:
        """Refuse, touching nothing, what cannot work; raises MigrationRefused (one line)."""
        net = self.net
        if self.vr_name not in net.vrs:
            raise MigrationRefused(f"unknown virtual router {self.vr_name!r} "
                                   f"(known: {', '.join(sorted(net.vrs)) or 'none'})")
        if self.target_name not in net.prs:
            raise MigrationRefused(f"unknown physical router {self.target_name!r} "
                                   f"(known: {', '.join(sorted(net.prs)) or 'none'})")
        vr, dst = net.vrs[self.vr_name], net.prs[self.target_name]
        if vr.pr is None or vr.ns is None or vr.daemon is None:
            raise MigrationRefused(f"{vr.name} is not running anywhere")
        if vr.pr is dst:
            raise MigrationRefused(f"{vr.name} already runs at {dst.name}")
        if not vr.daemon.is_running():
            raise MigrationRefused(f"{vr.name}: its {vr.impl} daemon is not running")
        if vr.impl not in MIGRATABLE:
            raise MigrationRefused(f"{vr.name} runs {vr.impl}, which VROOM cannot migrate "
                                   f"(migratable: {', '.join(MIGRATABLE)})")
        need = len(vr.interfaces)
        free = dst.free_ports()
        if free < need:
            raise MigrationRefused(f"physical router {dst.name} is full: {vr.name} needs "
                                   f"{need} free ports, {dst.name} has {free}")
        why_not = impl_refusal(vr.daemon, self.features)
        if why_not:
            raise MigrationRefused(f"{vr.name}: {why_not}")
        feats = self.features()
        for name in NEEDED_FEATURES + MIGRATABLE[vr.impl]:
            f = feats.get(name)
            if f is None or not f.ok:
                why = f.detail if f else "not detected"
                hint = f" ({f.hint})" if f and f.hint else ""
                raise MigrationRefused(f"CRIU lacks {name}, needed to migrate {vr.impl}: "
                                       f"{why}{hint}".replace("\n", " "))

    def features(self) -> dict[str, rlcriu.Feature]:
        if self._features is None:
            self._features = rlcriu.features(criu_path=self._criu.path if self._criu else None)
        return self._features

    @property
    def criu(self) -> rlcriu.Criu:
        if self._criu is None:
            self._criu = PriorityCriu()
        return self._criu

    # ------------------------------------------------------------------ running
    def _hook(self, name: str) -> None:
        h = self.hooks.get(name)
        if h is not None:
            log.info("%s: hook %s", self.vr_name, name)
            h(self)

    def steps(self) -> list[Step]:
        def wrap(name: str, fn: Callable[[], dict | None]) -> Callable[[], dict | None]:
            def run() -> dict | None:
                self._hook(f"before:{name}")
                out = fn()
                self._hook(f"after:{name}")
                return out
            return run

        spec = [("prepare-target", Phase.PREPARE, self._prepare, self._unprepare, False),
                ("remote-control-plane", Phase.REMOTE_CP, self._remote_cp, self._undo_remote_cp, False),
                ("control-plane-migration", Phase.CP_MIGRATION, self._cp_migrate, self._undo_cp, False),
                ("data-plane-cloning", Phase.DP_CLONE, self._clone, self._undo_clone, False),
                ("double-data-planes", Phase.DOUBLE_DP, self._double, None, False),
                ("link-migration", Phase.LINK_MIGRATION, self._links, self._undo_links, True),
                ("cleanup", Phase.CLEANUP, self._cleanup, None, False)]
        return [Step(n, ph, wrap(n, do), undo, commit) for n, ph, do, undo, commit in spec]

    def run(self) -> MigrationReport:
        """Check, then run every phase; returns the report, raises MigrationFailed (after
        rolling back) or MigrationRefused (nothing touched)."""
        self.check()
        self._resolve()
        assert self.vr and self.src and self.dst
        self.hv_src = self.src.hypervisors[self.vr_name]
        self._run_steps(f"migrate {self.vr_name} {self.src.name}->{self.dst.name}", self.steps())
        self.vr.migrations += 1
        log.info("%s", self.report.summary())
        return self.report

    def _finish(self) -> None:
        self._close_watch()
        if self.link is not None:
            self.link.close()
            self.link = None
        if self.move is not None:
            self.report.cp = self.move.result

    # ------------------------------------------------------------------ 1. prepare
    def _prepare(self) -> dict:
        assert self.src_ns
        dst_ns = self._bind_target()
        t0 = time.monotonic()
        self.route_watch = RouteWatch(self.src_ns)  # before the copy: nothing slips through
        neigh = copy_neighbours(self.src_ns.name, dst_ns.name)
        routes = copy_routes(self.src_ns.name, dst_ns.name)
        return {"namespace": dst_ns.name, "routes_copied": routes,
                "neighbours_copied": neigh, "fib_copy_s": round(time.monotonic() - t0, 4)}

    def _unprepare(self) -> None:
        self._close_watch()
        self._release_target()

    # ------------------------------------------------------------------ 2. remote CP
    def _remote_cp(self) -> dict:
        vr, src, dst = self.vr, self.src, self.dst
        assert vr and src and dst and self.dst_ns and self.hv_src
        ta, tb = self.tunnel_ports = self.net.tunnel(src.name, dst.name)
        self.here_src = {i.name for i in vr.interfaces}
        self.here_dst = set()
        self.hv_src.set_bindings(src.bindings(vr, here=self.here_src), TunnelEnd(ta, accept=True))
        self.hv_dst = DataPlaneHypervisor(
            vr.vr_id, dst.bridge_name, self.dst_ns.name, dst.bindings(vr, here=self.here_dst),
            TunnelEnd(tb, accept=True), name=f"{vr.name}@{dst.name}")
        dst.hypervisors[vr.name] = self.hv_dst
        st = self.hv_dst.sync(routes=False)  # control path only: punts reach the VR at B
        return {"tunnel_ports": [ta, tb], "flows": st.flows}

    def _undo_remote_cp(self) -> None:
        vr, src, dst = self.vr, self.src, self.dst
        assert vr and src and dst
        if self.hv_dst is not None:
            self.hv_dst.stop(remove_flows=True)
            self.hv_dst.close()
            dst.hypervisors.pop(vr.name, None)
            self.hv_dst = None
        if self.hv_src is not None:
            self.hv_src.set_bindings(tunnel=None)

    # ------------------------------------------------------------------ 3. control plane
    def _punt_remote(self) -> None:
        """Right before the dump: A's punts go into the tunnel, to the VR's (locked) place
        at B, where it will be restored."""
        assert self.hv_src and self.tunnel_ports
        self.hv_src.set_bindings(tunnel=TunnelEnd(self.tunnel_ports[0], punt=True, accept=True))

    def _cp_migrate(self) -> dict:
        vr = self.vr
        assert vr and vr.daemon and self.src_ns and self.dst_ns and vr.run_dir and self.hv_src
        feats = self.features()
        if self.page_server_mbps:
            self.link = MigrationLink(self.net.prefix, self.page_server_mbps)
        pre = {"on": True, "off": False}.get(self.precopy_mode,
                                              feats.get("soft_dirty") is not None
                                              and feats["soft_dirty"].ok)
        self.move = ControlPlaneMove(
            vr.daemon, self.src_ns, self.dst_ns, vr.run_dir / "images",
            {i.name: i.ifindex for i in vr.interfaces}, self.criu, precopy=pre,
            redirect=self._punt_remote,
            before_restore=lambda: self._hook("before-restore"), route_watch=self.route_watch,
            link=self.link, before_dump=self._before_dump, netlink_gt32=self._netlink_gt32(),
            postcopy_min_bytes=self._postcopy_min_bytes())
        res = self.move.run()  # on failure the runner calls _undo_cp for this step too
        vr.ns, vr.pr = self.dst_ns, self.dst
        self._close_watch()
        # A's data plane follows the VR at B from now on; its flows already match (the FIB at
        # B is a copy), so no full re-read here: its watcher catches any change
        self.hv_src.follow(self.dst_ns.name, sync=False)
        return res.to_json()

    def _postcopy_min_bytes(self) -> int | None:
        if self.postcopy_mode == "off":
            return None
        if self.postcopy_mode == "on":
            return 0
        f = self.features().get("lazy_pages")
        return POSTCOPY_MIN_BYTES if f is not None and f.ok else None

    def _netlink_gt32(self) -> bool:
        f = self.features().get("netlink_groups_gt32")
        return bool(f and f.ok)

    def _before_dump(self, attempt: int) -> None:
        self.dump_attempt = attempt
        self._hook("before-dump")

    def _close_watch(self) -> None:
        if self.route_watch is not None:
            self.route_watch.close()
            self.route_watch = None

    def _undo_cp(self) -> None:
        """Put the control plane back at A, whatever point the move reached: restored from
        its dump if it stopped and never ran at B (or ran there without all its memory: a
        post-copy whose pages were lost), moved back (a reverse control-plane move) if it
        already ran at B. Idempotent."""
        vr, src = self.vr, self.src
        assert vr and src and vr.daemon and self.src_ns and self.dst_ns and vr.run_dir
        assert self.hv_src and self.tunnel_ports
        m = self.move
        # a daemon restored post-copy whose pages were lost is not moved back as it runs:
        # restored again from the (intact) images at A instead
        if m is not None and m.restored and vr.daemon.is_running() and not m.pages_lost:
            back = ControlPlaneMove(
                vr.daemon, self.dst_ns, self.src_ns, vr.run_dir / "images-back",
                {i.name: i.ifindex for i in vr.interfaces}, self.criu,
                netlink_gt32=self._netlink_gt32(),
                redirect=lambda: self.hv_src.set_bindings(  # type: ignore[union-attr, arg-type]  # asserted above, lost in a lambda; SyncStats unused
                    tunnel=TunnelEnd(self.tunnel_ports[0], accept=True)))  # type: ignore[index]  # asserted above, lost in a lambda
            back.run()
            m.dumped = m.restored = False
        elif m is not None and m.dumped:  # stopped at A, not (or no longer, or not whole) at B
            m.recover()
        vr.ns, vr.pr = self.src_ns, src
        self.hv_src.set_bindings(tunnel=TunnelEnd(self.tunnel_ports[0], accept=True))
        if self.hv_src.fib_ns != self.src_ns.name:
            self.hv_src.follow(self.src_ns.name)

    # ------------------------------------------------------------------ 4. cloning
    def _clone(self) -> dict:
        """B's bridge repopulated from the VR's FIB at B (its control path is there already:
        the routes and next-hop groups are added in bulk, nothing removed)."""
        assert self.hv_dst and self.hv_src
        self.hv_src.pause()  # the old data plane keeps forwarding; it catches up right after
        try:
            st = self.hv_dst.start(repopulate=False)
        finally:
            self.hv_src.resume()
        self.report.clone = st.to_json()
        return st.to_json()

    def _undo_clone(self) -> None:
        if self.hv_dst is not None:
            self.hv_dst.stop()
            self.hv_dst.sync(routes=False)
        if self.hv_src is not None:
            self.hv_src.resume()

    # ------------------------------------------------------------------ 5. double DPs
    def _double(self) -> dict:
        """Both data planes forward (A for circuits still at A, B for those at B, each
        reaching the other's circuits through the tunnel) and follow the VR's FIB at B;
        their routing tables must agree before any link moves."""
        hv_src, hv_dst = self.hv_src, self.hv_dst
        assert hv_src and hv_dst

        def agree() -> bool:
            if hv_src.route_keys() == hv_dst.route_keys():
                return True
            hv_src.sync()
            hv_dst.sync()
            return False

        with contextlib.suppress(ExpectTimeout):  # a difference left is reported below
            wait_for(agree, 5, interval=0, retry_on=(), what="both data planes' route flows to agree")
        a, b = hv_src.route_keys(), hv_dst.route_keys()
        if a != b:
            log.warning("%s: data planes differ in %d route flows", self.vr_name, len(a ^ b))
        return {"route_flows": len(b), "differ": len(a ^ b)}

    # ------------------------------------------------------------------ 6. links
    def _move_link(self, ifname: str, frm: PhysicalRouter, to: PhysicalRouter,
                   here_frm: set[str], here_to: set[str], hv_frm: DataPlaneHypervisor,
                   hv_to: DataPlaneHypervisor) -> float:
        """Make-before-break move of one circuit: switch the transport keeping the old port
        delivering, egress locally at `to`, through the tunnel at `frm`, release the old port."""
        vr = self.vr
        assert vr
        circuit = self.net.circuit(vr.name, ifname)
        assert circuit is not None
        tr = self.net.transport
        t0 = time.monotonic()
        tr.repatch(circuit, to.transport_port(vr.name, ifname),
                   frm=frm.transport_port(vr.name, ifname), keep_old=True)
        here_to.add(ifname)
        hv_to.set_bindings(to.bindings(vr, here=here_to))
        here_frm.discard(ifname)
        hv_frm.set_bindings(frm.bindings(vr, here=here_frm))
        time.sleep(LINGER_S)  # frames already on the old path are delivered
        tr.release(circuit)
        return time.monotonic() - t0

    def _links(self) -> dict:
        vr, src, dst = self.vr, self.src, self.dst
        assert vr and src and dst and self.hv_src and self.hv_dst
        for i, itf in enumerate(vr.interfaces):
            c = self.net.circuit(vr.name, itf.name)
            if c is None or c not in self.net.transport.circuits:
                continue
            if i and self.link_pause_s:
                time.sleep(self.link_pause_s)  # asynchronous: links move one by one
            self._hook(f"link:{itf.name}")
            self.moved_links.append(itf.name)  # before: the undo also covers a half move
            secs = self._move_link(itf.name, src, dst, self.here_src, self.here_dst,
                                   self.hv_src, self.hv_dst)
            self.report.links.append({"interface": itf.name,
                                      "circuit": self.net.circuit(vr.name, itf.name),
                                      "seconds": round(secs, 4), "at": time.time()})
        return {"moved": list(self.moved_links)}

    def _undo_links(self) -> None:
        src, dst = self.src, self.dst
        assert src and dst and self.hv_src and self.hv_dst
        tr = self.net.transport
        for ifname in reversed(self.moved_links):
            c = tr.circuits[self.net.circuit(self.vr_name, ifname)]  # type: ignore[index]  # a moved link has a circuit
            tr.release(c.name)
            if dst.transport_port(self.vr_name, ifname) in (c.a, c.b):  # it did move
                self._move_link(ifname, dst, src, self.here_dst, self.here_src, self.hv_dst,
                                self.hv_src)
            else:  # the transport never switched: only the bindings may need restoring
                self.here_src.add(ifname)
                self.here_dst.discard(ifname)
                self.hv_src.set_bindings(src.bindings(self.vr, here=self.here_src))  # type: ignore[arg-type]  # links moved: VR resolved
                self.hv_dst.set_bindings(dst.bindings(self.vr, here=self.here_dst))  # type: ignore[arg-type]  # links moved: VR resolved
        self.moved_links = []

    # ------------------------------------------------------------------ 7. cleanup
    def _cleanup(self) -> dict:
        """Remove the VR's state at the old router; never raises (reports what it could not)."""
        vr, src, dst = self.vr, self.src, self.dst
        assert vr and src and dst and self.hv_src and self.hv_dst
        problems: list[str] = []

        def attempt(what: str, fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception as e:
                problems.append(f"{what}: {e}")
                log.warning("%s cleanup: %s: %s", vr.name, what, e)

        old_ports = [p for (v, _), (_, p) in src.vr_ports.items() if v == vr.name]
        attempt("old data plane", lambda: self.hv_src.stop(remove_flows=True))  # type: ignore[union-attr]  # asserted above, lost in a lambda
        attempt("old hypervisor", self.hv_src.close)
        src.hypervisors.pop(vr.name, None)
        src.portmap.unbind(vr.name)
        src_ns = self.src_ns
        if src_ns is not None:  # kept, idle, for the VR's return (see PhysicalRouter.park)
            attempt("parking the old namespace", lambda: src.park(vr, src_ns))
        else:
            attempt("old VR ports", lambda: src.del_vr_ports(vr))
        attempt("tunnel flows at the new router", lambda: self.hv_dst.set_bindings(  # type: ignore[union-attr]  # asserted above, lost in a lambda
            dst.bindings(vr), tunnel=None))
        left = []
        try:
            left = flows_of_vr(src.bridge_name, vr.vr_id, old_ports)
        except Exception as e:
            problems.append(f"checking the old bridge: {e}")
        if left:
            problems.append(f"{len(left)} flows of {vr.name} left on {src.name}")
        return {"left_on_old": len(left), "problems": problems}


def impl_refusal(daemon: Any, features: Callable[[], dict[str, rlcriu.Feature]]) -> str | None:
    """Why this running daemon cannot be moved by CRIU (one line), or None."""
    if getattr(daemon, "implementation", "?") != "frr":
        return None
    if getattr(daemon, "tree_root", None) is None:
        return ("its FRR daemons run as separate processes, which share zserv sockets and "
                "cannot be dumped apart: start them as one tree (FrrDaemon(spec, process_tree=True))")
    f = features().get("netlink_groups_gt32")
    if f is not None and f.ok:
        return None
    ok, detail = rlcriu.netlink_drop_selftest()
    if not ok:
        return (f"CRIU lacks netlink_groups_gt32 (zebra's rtnetlink groups above 32) and they "
                f"cannot be dropped around the dump: {detail}").replace("\n", " ")
    return None


def migrate(net: VroomNetwork, vr: str, target: str, **options: Any) -> MigrationReport:
    """Live-migrate `vr` to physical router `target`: THE entry point (options: those of
    `Migration`). Returns the report (also appended to ``net.history``); raises
    MigrationRefused (nothing touched) or MigrationFailed (rolled back)."""
    return Migration(net, vr, target, **options).run()
