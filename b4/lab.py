"""`routerlab cli b4` (or any B4 topology): the WAN with its controllers in Mininet's CLI.

Besides Mininet's own commands (``hA ping hB``, ...) and ``probe A B [S]``:

  te show          flow groups (demand, allocation, fair share, tunnels with splits and
                   labels), links (capacity, allocated load, rate right now), TE state
  te off | te on   remove every TE entry (traffic falls back to shortest paths) / restore
  te algorithm [NAME]  the TE server's algorithm: b4 (the paper's), b4r (B4 with
                   re-routing) or exact (exact max-min); without NAME, the current one
  link A B down|up fail or restore the WAN link between sites A and B
  ofc kill SITE    kill the master controller replica running SITE (a standby takes over)
  ofc status       the controller and TE-server replicas and their roles
  ofc start        start again every replica that was killed
  ops [N]          the last N TE ops with their state and round trip
"""
from __future__ import annotations

import logging
import shlex
import shutil
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from routerlab import registry
from routerlab.errors import UserError
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.lab import serve_lab

from b4.deploy import B4Deployment
from b4.model import SERVER_ALGORITHMS, load_wan
from b4.rpc import RpcError, call

log = logging.getLogger(__name__)


class B4LabNetwork:
    """What the generic lab expects of a network, for a running B4 deployment."""

    def __init__(self, dep: B4Deployment):
        self.b4 = dep
        self.net = dep.net.net  # the Mininet object Mininet's CLI drives

    def router(self, name: str):
        raise UserError("a B4 WAN has no routers: sites are OpenFlow switches (try `te show`)")

    def host(self, name: str):
        if name not in self.b4.net.hosts:
            raise UserError(f"unknown host {name!r} (hosts: {', '.join(sorted(self.b4.net.hosts))})")
        return self.b4.net.hosts[name]

    def address(self, name: str) -> str:
        for sw in self.b4.wan.config.switches.values():
            for h in sw.host_ports:
                if h.host == name:
                    return h.ip
        raise UserError(f"{name} has no address")

    def probe(self, src: str, dst: str, seconds: float, rate_pps: int = 1000):
        from routerlab.traffic import check_probe_args, measure

        seconds, rate = check_probe_args(seconds, rate_pps)
        return measure(self.host(src), self.host(dst), self.address(dst), seconds, rate_pps=rate)


def _b4(cli: Any) -> B4Deployment:
    """The deployment behind a B4 lab (these commands exist only in labs B4 built)."""
    network: B4LabNetwork = cli.network
    return network.b4


def show_tables(dep: B4Deployment, rates: dict[str, float] | None = None) -> list[Table]:
    """`te show` as rich tables."""
    show = dep.show()
    st = dep.status()
    fg = Table("flow group", "route", "demand", "allocated", "fair share", "tunnels (split, label)",
               title=f"flow groups (TE {'on' if show['te_enabled'] else 'OFF'}, algorithm {show.get('algorithm')}, "
                     f"session {st.get('session')})")
    for f in show["flow_groups"]:
        tunnels = ", ".join(f"{t['path']} {t['weight']:.2f}" + (f" (L{t['label']})" if t["label"] else "")
                            for t in f["tunnels"] if t["weight"] > 0)
        fg.add_row(f["name"], f"{f['src']}->{f['dst']}", f"{f['demand']:.2f}", f"{f['rate']:.2f}",
                   f"{f['fair_share']:.2f}", tunnels)
    links = Table("edge", "capacity", "allocated", "utilization", "now (Mbit/s)",
                  title=f"links (down: {', '.join(show['down_links']) or 'none'})")
    for e in show["edges"]:
        key = f"{e['src']}->{e['dst']}"
        util = e["load"] / e["capacity"] if e["capacity"] else 0.0
        links.add_row(key, f"{e['capacity']:.2f}", f"{e['load']:.2f}", f"{100 * util:.0f}%",
                      f"{rates.get(key, 0.0):.2f}" if rates else "-")
    return [fg, links]


def _rates(dep: B4Deployment, seconds: float = 0.5) -> dict[str, float]:
    a = dep.net.link_tx_bytes()
    time.sleep(seconds)  # a short counter window for the "now" column
    b = dep.net.link_tx_bytes()
    return {f"{x}->{y}": (b[(x, y)] - a[(x, y)]) * 8 / seconds / 1e6 for (x, y) in a}


def extension(base: type) -> type:
    class B4Commands(base):
        def do_te(self, line: str) -> None:
            """te show | te off | te on | te algorithm [b4|b4r|exact]: TE state, remove / restore every
            TE entry, or show / change the TE server's algorithm."""
            def run() -> None:
                dep = _b4(self)
                arg = line.strip()
                if arg in ("", "show"):
                    for t in show_tables(dep, _rates(dep)):
                        self.console.print(t)
                elif arg in ("on", "off"):
                    t0 = time.monotonic()
                    dep.te(arg == "on")
                    ok = dep.wait_converged(30)
                    self.console.print(f"TE {arg}: {'converged' if ok else 'NOT converged'} in "
                                       f"{time.monotonic() - t0:.2f} s")
                elif arg.split()[:1] == ["algorithm"] and len(arg.split()) <= 2:
                    names = arg.split()[1:]
                    if not names:
                        self.console.print(f"TE algorithm: {dep.status().get('algorithm')}")
                        return
                    if names[0] not in SERVER_ALGORITHMS:
                        raise UserError(f"unknown TE algorithm {names[0]!r} (choose from {', '.join(SERVER_ALGORITHMS)})")
                    t0 = time.monotonic()
                    dep.te_call({"type": "te", "algorithm": names[0]})
                    ok = dep.wait_converged(30)
                    show = dep.show()
                    self.console.print(f"TE algorithm {names[0]}: {show['throughput']:.2f} Mbit/s allocated, "
                                       f"{'converged' if ok else 'NOT converged'} in {time.monotonic() - t0:.2f} s")
                else:
                    raise UserError("usage: te show | te on | te off | te algorithm [b4|b4r|exact]")
            self._guard(run)

        def do_link(self, line: str) -> None:
            """link A B down|up: fail or restore the WAN link between sites A and B."""
            def run() -> None:
                dep = _b4(self)
                args = shlex.split(line)
                if len(args) != 3 or args[2] not in ("down", "up"):
                    raise UserError("usage: link A B down|up")
                try:
                    name = dep.net.set_link(args[0], args[1], args[2] == "up")
                except KeyError as e:
                    raise UserError(str(e).strip("'")) from None
                t0 = time.monotonic()
                want_down = args[2] == "down"
                try:
                    wait_for(lambda: (name in dep.status().get("down_links", [])) == want_down, 10, interval=0.05,
                             what=f"the TE server to see {name} go {args[2]}", retry_on=())
                except ExpectTimeout:
                    raise UserError(f"the TE server did not see {name} go {args[2]}") from None
                ok = dep.wait_converged(30)
                self.console.print(f"link {name} {args[2]}; TE {'converged' if ok else 'NOT converged'} in "
                                   f"{time.monotonic() - t0:.2f} s")
            self._guard(run)

        def do_ofc(self, line: str) -> None:
            """ofc kill SITE | ofc status | ofc start: controller replicas."""
            def run() -> None:
                dep = _b4(self)
                args = shlex.split(line)
                if args[:1] == ["kill"] and len(args) == 2:
                    if args[1] not in dep.wan.config.sites:
                        raise UserError(f"unknown site {args[1]!r} (sites: {', '.join(sorted(dep.wan.config.sites))})")
                    old = dep.ofc_master()
                    dep.kill(old)
                    if not any(r.alive for r in dep.ofcs):
                        self.console.print(f"killed {old.name}, the only controller: switches keep forwarding; "
                                           f"`ofc start` brings it back")
                        return
                    t0 = time.monotonic()
                    new = dep.ofc_master(30)
                    self.console.print(f"killed {old.name} (master of {args[1]}); {new.name} is master after "
                                       f"{time.monotonic() - t0:.2f} s")
                elif args == ["status"]:
                    t = Table("replica", "kind", "alive", "role", "rpc port")
                    for r in dep.ofcs + dep.tes:
                        role = "-"
                        if r.alive:
                            try:
                                msg = {"type": "hello", "session": 0} if r.kind == "ofc" else {"type": "status"}
                                role = call(r.rpc_port, msg, timeout=2).get("role", "?")
                            except (OSError, RpcError):
                                role = "unreachable"
                        t.add_row(r.name, r.kind, "yes" if r.alive else "no", role, str(r.rpc_port))
                    self.console.print(t)
                elif args == ["start"]:
                    dead = [r for r in dep.ofcs + dep.tes if not r.alive]
                    for r in dead:
                        dep.restart(r)
                    self.console.print(f"started {', '.join(r.name for r in dead) or 'nothing (all alive)'}")
                else:
                    raise UserError("usage: ofc kill SITE | ofc status | ofc start")
            self._guard(run)

        def do_ops(self, line: str) -> None:
            """ops [N]: the last N TE ops (default 20) with state and round trip."""
            def run() -> None:
                dep = _b4(self)
                n = int(line.strip() or 20)
                reply = dep.ops(n)
                t = Table("site", "seq", "op", "entry", "state", "round trip (ms)", "tries", "reason",
                          title=f"last {n} TE ops")
                for o in reply["ops"]:
                    t.add_row(o["site"], str(o["seq"]), o["action"], f"{o['kind']} {o['id']}", o["state"],
                              "-" if o["rtt_ms"] is None else f"{o['rtt_ms']:.1f}", str(o["tries"]), o["reason"])
                self.console.print(t)
                for e in reply.get("errors", []):
                    self.console.print(f"[red]error:[/] {e}")
            self._guard(run)

    return B4Commands



def run_b4_lab(topo: Any, *, prefix: str = "rl-", console: Console | None = None, script: str | None = None) -> int:
    """Build the WAN with two controller and two TE-server replicas (one of each without
    ZooKeeper), converge, open the CLI, tear everything down."""
    from b4.zk import available

    console = console or Console()
    wan = load_wan(topo)  # bad input fails here, before anything is created
    why = available()
    replicas = 1 if why else 2
    if why:
        console.print(f"[yellow]ZooKeeper unavailable ({why}): one controller, one TE server[/]")
    run_dir = registry.STATE_DIR / f"b4-lab-{prefix.strip('-') or 'b4'}"
    registry.session().add("dir", str(run_dir))
    dep = B4Deployment(wan, run_dir, prefix=prefix, ofc_replicas=replicas, te_replicas=replicas,
                       progress=lambda m: console.print(f"[dim]{m}[/]"))

    def stop() -> None:
        dep.stop()
        shutil.rmtree(run_dir, ignore_errors=True)
        registry.session().release("dir", str(run_dir))

    try:
        t0 = time.monotonic()
        dep.start()
    except BaseException:
        stop()
        raise
    console.print(f"{wan.name}: {len(wan.config.sites)} sites, {len(wan.flow_groups)} flow groups, "
                  f"{len(dep.ofcs)} controller and {len(dep.tes)} TE-server replicas; TE converged in "
                  f"{time.monotonic() - t0:.1f} s. Type `help`; B4: te, link, ofc, ops.")
    return serve_lab(B4LabNetwork(dep), stop, console=console, script=script, system="b4")

