"""The baseline VROOM is measured against: moving a router by restarting it.

`restart_move(net, "r1", "B")` (a `RestartMove`): prepare r1's namespace at B, stop the daemon at A,
start B's data plane, re-patch every link to B, start the daemon at B with the same
configuration, remove A's state. Sessions necessarily restart (new TCP connections, new
OSPF adjacencies) and B forwards only what the new daemon has learned.

With ``graceful`` (the default when the VR's spec enables graceful restart and the daemon
can do it: BIRD's ``graceful restart`` command) the daemon announces a graceful restart
before it stops, the FIB is kept (copied to B, where the restarted daemon takes it over)
and neighbours that act as helpers keep forwarding through the restart.
"""
from __future__ import annotations

import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any

from routerlab.daemons import BirdDaemon
from routerlab.expect import ExpectTimeout, wait_for

from .cpmove import copy_neighbours, copy_routes
from .hypervisor import DataPlaneHypervisor
from .migrate import MigrationRefused, MigrationReport, VrMove
from .phases import Phase, Step

if TYPE_CHECKING:
    from .network import VroomNetwork

log = logging.getLogger(__name__)


class RestartMove(VrMove):
    """Move VR `vr` to `target` by stopping it at its old place and starting it anew."""

    def __init__(self, net: VroomNetwork, vr: str, target: str, *,
                 graceful: bool | None = None):
        super().__init__(net, vr, target)
        self.graceful = graceful
        self.stopped_at: float | None = None

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

    def run(self) -> MigrationReport:
        self.check()
        self._resolve()
        assert self.vr and self.src and self.dst
        if self.graceful is None:
            self.graceful = bool(self.vr.spec.graceful_restart) and isinstance(self.vr.daemon,
                                                                               BirdDaemon)
        steps = [Step("prepare-target", Phase.PREPARE, self._prepare, self._release_target),
                 Step("stop-daemon", Phase.CP_MIGRATION, self._stop),
                 Step("start-data-plane", Phase.DP_CLONE, self._data_plane),
                 Step("re-patch-links", Phase.LINK_MIGRATION, self._links, commit=True),
                 Step("start-daemon", Phase.CP_MIGRATION, self._start),
                 Step("cleanup", Phase.CLEANUP, self._cleanup)]
        self._run_steps(f"restart {self.vr_name} {self.src.name}->{self.dst.name}", steps)
        log.info("restart: %s", self.report.summary())
        return self.report

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
        assert vr and vr.daemon
        self.stopped_at = time.monotonic()
        if self.graceful and isinstance(vr.daemon, BirdDaemon):
            try:
                vr.daemon.birdc("graceful restart")
            except Exception as e:  # still stop it, just not gracefully
                log.warning("%s: graceful restart request failed: %s", vr.name, e)
            daemon = vr.daemon
            with contextlib.suppress(ExpectTimeout):  # it ends itself; else it is stopped below
                wait_for(lambda: not daemon.is_running(), 10, interval=0.02, retry_on=(),
                         what=f"{vr.name}'s daemon to end after its graceful restart")
        vr.daemon.stop()
        return {"graceful": self.graceful}

    def _data_plane(self) -> dict:
        vr, dst = self.vr, self.dst
        assert vr and dst and self.dst_ns
        self.hv_dst = DataPlaneHypervisor(vr.vr_id, dst.bridge_name, self.dst_ns.name,
                                          dst.bindings(vr), name=f"{vr.name}@{dst.name}")
        dst.hypervisors[vr.name] = self.hv_dst
        return self.hv_dst.start().to_json()

    def _links(self) -> dict:
        vr, src, dst = self.vr, self.src, self.dst
        assert vr and src and dst
        moved = []
        for itf in vr.interfaces:
            c = self.net.circuit(vr.name, itf.name)
            if c is not None and c in self.net.transport.circuits:
                secs = self.net.transport.repatch(c, dst.transport_port(vr.name, itf.name),
                                                  frm=src.transport_port(vr.name, itf.name))
                moved.append(itf.name)
                self.report.links.append({"interface": itf.name, "circuit": c,
                                          "seconds": round(secs, 4), "at": time.time()})
        return {"moved": moved}

    def _start(self) -> dict:
        vr = self.vr
        assert vr and self.dst_ns and vr.run_dir
        vr.daemon = vr.make_daemon()
        vr.daemon.start(self.dst_ns, vr.run_dir)
        vr.ns, vr.pr = self.dst_ns, self.dst
        down = time.monotonic() - (self.stopped_at or time.monotonic())
        return {"daemon_down_s": round(down, 4)}

    def _cleanup(self) -> dict:
        vr, src = self.vr, self.src
        assert vr and src
        hv = src.hypervisors.pop(vr.name, None)
        if hv is not None:
            hv.stop(remove_flows=True)
            hv.close()
        src.del_vr_ports(vr)
        src.portmap.unbind(vr.name)
        if self.src_ns is not None:
            self.src_ns.delete()
        vr.migrations += 1
        return {}


def restart_move(net: VroomNetwork, vr: str, target: str, **options: Any) -> MigrationReport:
    """Move `vr` to `target` by restarting it there (the baseline): THE entry point
    (options: those of `RestartMove`). Returns the report (also appended to
    ``net.history``)."""
    return RestartMove(net, vr, target, **options).run()
