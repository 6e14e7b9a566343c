"""The interactive VROOM lab: routerlab's CLI over a VROOM network, with `migrate VR PR`.

    routerlab cli vroom                  (as root; or python -m vroom.lab TOPOLOGY)

    routerlab> where                 # which physical router each VR runs on
    routerlab> prs                   # physical routers: ports in use, VRs hosted
    routerlab> migrate NYCM NY2      # live migration, phase by phase
    routerlab> restart NYCM P8       # the baseline: move by restarting
    routerlab> neighbors CHIN        # (routerlab's own commands work on VRs too)
    routerlab> hLOSA ping -c3 10.1.8.2

Every virtual router runs its node's ``daemon:`` (FRR unless the topology says otherwise;
FRR and BIRD routers both live-migrate). The topology's ``params: {vroom: {impl: {VR:
bird}, spares: {PR: VR}}}`` can override the daemon per router and names the spare
physical routers; without spares one spare physical router ``S1`` is added.

VROOM's `routerlab.systems.System` (`vroom.system`) adds these commands to the lab it builds
for any topology with ``params: {system: vroom}``.
"""
from __future__ import annotations

import argparse
import logging
import re
import secrets
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from routerlab.errors import UserError
from routerlab.lab import RouterlabCLI, building, serve_lab, table

from .baseline import restart_move
from .migrate import MigrationRefused, migrate
from .phases import MigrationFailed
from .topo import TopoNetwork

log = logging.getLogger(__name__)


@dataclass
class _Router:
    name: str
    daemon: Any


class VroomLab:
    """What routerlab's CLI needs of a network, over a VROOM `TopoNetwork`."""

    def __init__(self, tn: TopoNetwork):
        self.tn = tn
        self.net: dict[str, Any] = {}  # Mininet's CLI wants a node mapping; nodes run below

    @property
    def vroom(self):
        return self.tn.net

    def router(self, name: str) -> _Router:
        try:
            return _Router(name, self.tn.daemon(name))
        except UserError:
            known = sorted(list(self.tn.net.vrs) + list(self.tn.externals))
            raise UserError(f"unknown router {name!r} (routers: {', '.join(known)})") from None

    def host(self, name: str):
        if name not in self.tn.hosts:
            raise UserError(f"unknown host {name!r} (hosts: {', '.join(sorted(self.tn.hosts))})")
        return self.tn.hosts[name]

    def namespace(self, name: str):
        if name in self.tn.hosts:
            return self.tn.hosts[name]
        vr = self.tn.net.vrs.get(name)
        if vr is not None and vr.ns is not None:
            return vr.ns
        raise UserError(f"unknown node {name!r}")

    def probe(self, src: str, dst: str, seconds: float, rate_pps: int = 1000):
        """A constant-rate UDP probe from host `src` to host `dst` (`routerlab.traffic.measure`)."""
        from routerlab.traffic import check_probe_args, measure

        seconds, rate = check_probe_args(seconds, rate_pps)
        return measure(self.host(src), self.host(dst), self.tn.address(dst), seconds,
                       rate_pps=rate)

    def stop(self) -> None:
        self.tn.stop()


def vroom_commands(base: type) -> type:
    """A CLI class with VROOM's commands (VROOM's lab commands in `vroom.system`)."""

    class VroomCLI(base):
        def _vroom(self):
            # these commands exist only in labs VROOM built (`VroomLab`)
            return self.network.vroom

        def do_migrate(self, line: str) -> None:
            """migrate VR PR: live-migrate virtual router VR to physical router PR."""
            def run() -> None:
                args = line.split()
                if len(args) != 2:
                    raise UserError("usage: migrate VR PR")
                try:
                    rep = migrate(self._vroom(), args[0], args[1])
                except MigrationRefused as e:
                    raise UserError(f"refused: {e}") from None
                except MigrationFailed as e:
                    raise UserError(str(e)) from None
                rows = [{"phase": r.step, "seconds": f"{r.seconds:.3f}", "status": r.status.value}
                        for r in rep.phases]
                self.console.print(table(f"{rep.vr}: {rep.source} -> {rep.target}", rows,
                                          ["phase", "seconds", "status"]))
                self.console.print(f"control-plane freeze {rep.freeze_s:.3f} s; data plane "
                                   f"cloned ({rep.clone.get('routes', 0)} routes) in "
                                   f"{rep.clone.get('total_s', 0):.3f} s; total {rep.total_s:.2f} s")
            self._guard(run)

        def do_restart(self, line: str) -> None:
            """restart VR PR: move VR to PR by restarting its daemon there (the baseline)."""
            def run() -> None:
                args = line.split()
                if len(args) != 2:
                    raise UserError("usage: restart VR PR")
                try:
                    rep = restart_move(self._vroom(), args[0], args[1])
                except (MigrationRefused, MigrationFailed) as e:
                    raise UserError(str(e)) from None
                self.console.print(rep.summary())
            self._guard(run)

        def do_where(self, line: str) -> None:
            """where [VR]: the physical router and namespace each virtual router runs in."""
            def run() -> None:
                net = self._vroom()
                names = line.split() or sorted(net.vrs)
                rows = []
                for n in names:
                    vr = net.vrs.get(n)
                    if vr is None:
                        raise UserError(f"unknown virtual router {n!r}")
                    rows.append({"vr": n, "physical router": vr.pr.name if vr.pr else "-",
                                 "namespace": vr.ns.name if vr.ns else "-", "daemon": vr.impl,
                                 "pid": vr.pid, "migrations": vr.migrations})
                self.console.print(table("virtual routers", rows, list(rows[0]) if rows else ["vr"]))
            self._guard(run)

        def do_prs(self, line: str) -> None:
            """prs: physical routers, their free ports and the VRs they host."""
            def run() -> None:
                net = self._vroom()
                rows = [{"physical router": pr.name, "bridge": pr.bridge_name,
                         "ports": pr.n_ports, "free": pr.free_ports(),
                         "VRs": ", ".join(sorted(pr.hypervisors)) or "-"}
                        for pr in net.prs.values()]
                self.console.print(table("physical routers", rows, list(rows[0])))
            self._guard(run)

        def default(self, line: str) -> None:
            """NODE COMMAND: run COMMAND in a host's or VR's namespace."""
            first, args, _ = self.parseline(line)
            if getattr(self.network, "vroom", None) is None or not args:
                return super().default(line)

            def run() -> None:
                ns = self.network.namespace(first)
                r = ns.run(["sh", "-c", args], check=False, timeout=120)
                self.console.print((r.stdout + r.stderr).rstrip(), highlight=False, markup=False)
            self._guard(run)

    return VroomCLI



def build(topology: Any, prefix: str | None = None,
          progress: Callable[[str], None] | None = None) -> VroomLab:
    """Build and converge a VROOM network for a topology (a loaded `Topology`, a file or a
    shipped name; see the module docstring)."""
    from routerlab.topology import Topology, load_topology

    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    opts = topo.params.get("vroom") or {}
    routers = [n.name for n in topo.routers()]
    impl = opts.get("impl") or {}  # else each node's own daemon
    spares = opts.get("spares") or {"S1": routers[0]}
    tn = TopoNetwork(topo, prefix or f"vl{secrets.token_hex(2)}", impl=impl, spare=spares)
    tn.start(progress=progress)
    try:
        if progress:
            progress("waiting for OSPF adjacencies and BGP sessions")
        tn.wait_converged(timeout=180)
    except BaseException:
        tn.stop()
        raise
    return VroomLab(tn)


def lab_prefix(prefix: str | None) -> str | None:
    """VROOM's names allow at most 7 letters/digits: routerlab's ``rl-`` becomes ``rl``."""
    if not prefix:
        return None
    return re.sub(r"[^A-Za-z0-9]", "", prefix)[:7] or None


def run_vroom_lab(topo: Any, *, prefix: str = "rl-", console: Any = None,
                  script: str | None = None) -> int:
    """`routerlab cli` for a topology with ``params: {system: vroom}``: build, converge with a
    progress display, open the CLI with VROOM's commands, tear everything down."""
    from rich.console import Console

    console = console or Console()
    with building(console, topo.name) as progress:
        lab = build(topo, lab_prefix(prefix), progress=progress)
    console.print(f"{topo.name}: {len(lab.vroom.vrs)} virtual routers on "
                  f"{len(lab.vroom.prs)} physical routers. Type `help`; VROOM: migrate, "
                  f"restart, where, prs.")
    return serve_lab(lab, lab.stop, console=console, script=script, system="vroom")



def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vroom.lab", description=__doc__.split("\n")[0])
    ap.add_argument("topology")
    ap.add_argument("--script", help="run these CLI commands instead of an interactive session")
    ap.add_argument("--prefix", help="name prefix (at most 7 letters/digits)")
    a = ap.parse_args(argv)
    from rich.console import Console

    console = Console()
    try:
        lab = build(a.topology, lab_prefix(a.prefix), progress=lambda m: console.print(f"[dim]{m}[/]"))
    except UserError as e:
        console.print(f"[red]error:[/] {e}")
        return 2
    try:
        console.print(f"{lab.tn.topo.name}: {len(lab.vroom.vrs)} virtual routers on "
                      f"{len(lab.vroom.prs)} physical routers. Type `help`.")
        vroom_commands(RouterlabCLI)(lab, console=console, script=a.script)
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
