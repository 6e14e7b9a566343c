"""A VROOM network built from a routerlab topology file: every router a VR on its own
physical router, hosts and external ASes as plain namespaces, every link on the transport.

::

    topo = load_topology("abilene")
    with TopoNetwork(topo, "vr1a2b", impl={"NYCM": "bird"}, spare={"NYCM": "B"}) as tn:
        tn.wait_converged()
        migrate(tn.net, "NYCM", "B")                    # vroom.migrate.migrate

Physical routers get short names (``P1``, ``P2``, ... in node order; spares as given) so
interface names stay within 15 characters. Routers keep the topology's daemon unless
`impl` overrides it (live migration needs BIRD, see PLATFORM.md).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from routerlab.daemons import Daemon, driver_for
from routerlab.errors import UserError
from routerlab.expect import wait_for
from routerlab.netns import Netns
from routerlab.network import (daemon_gap, expected_ospf_neighbors, fib_gap, node_address,
                               poll_converged, router_spec)
from routerlab.topology import Topology

from .network import VroomNetwork

log = logging.getLogger(__name__)

#: converged also means at rest: no VR's route flows changed for this long. Every prefix
#: present is not the end of OSPF convergence (an ECMP next hop can still be added, BIRD
#: recomputes on its 1 s tick). In vroom-maintenance a live migration begun 1.4 s after
#: the network's last FIB change lost 2.18 s of packets, until the target's next sync
FIB_QUIET_S = 2.0


class TopoNetwork:
    """A `VroomNetwork` (``.net``) built from a `Topology`, with its hosts and externals."""

    def __init__(self, topo: Topology, prefix: str, *, impl: dict[str, str] | None = None,
                 spare: dict[str, str] | None = None, graceful: bool = False,
                 extra_ports: int = 1, ports: dict[str, int] | None = None):
        if topo.switches():
            raise UserError(f"{topo.name}: VROOM networks do not support switch (LAN) nodes")
        self.topo = topo
        self.net = VroomNetwork(prefix)
        self.impl = impl or {}
        self.spare = spare or {}  # spare physical router name -> the VR it is meant for
        self.graceful = graceful
        self.extra_ports = extra_ports
        self.port_override = ports or {}
        self.home: dict[str, str] = {}  # VR -> its own physical router
        self.hosts: dict[str, Netns] = {}
        self.externals: dict[str, Daemon] = {}
        self.started = False

    # ------------------------------------------------------------------ build
    def start(self, progress: Callable[[str], None] | None = None) -> TopoNetwork:
        say = progress or (lambda m: None)
        try:
            self._build(say)
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def _build(self, say: Callable[[str], None]) -> None:
        topo, net = self.topo, self.net
        routers = [n.name for n in topo.routers()]
        needed = {r: len(topo.links_of(r)) for r in routers}
        say(f"creating {len(routers)} physical routers and the transport")
        for i, r in enumerate(routers, 1):
            pr = f"P{i}"
            net.add_physical_router(pr, ports=self.port_override.get(pr, needed[r] + self.extra_ports))
            self.home[r] = pr
        for pr, vr in self.spare.items():
            net.add_physical_router(pr, ports=self.port_override.get(pr, needed.get(vr, 4)
                                                                     + self.extra_ports))
        for r in routers:
            spec = router_spec(topo, r)
            spec.graceful_restart = self.graceful
            net.add_virtual_router(r, spec, impl=self.impl.get(r, topo.node(r).daemon or "bird"))
        say("creating hosts and external routers")
        for node in topo.nodes.values():
            if node.role in ("host", "external"):
                self.hosts[node.name] = net.add_namespace(node.name)
        for ln in topo.links:
            a, b = ln.a, ln.b
            ra, rb = topo.node(a.node).role == "router", topo.node(b.node).role == "router"
            if ra and rb:
                net.connect_vrs(a.node, a.intf, b.node, b.intf)
            elif ra or rb:
                vr_end, other = (a, b) if ra else (b, a)
                net.connect(vr_end.node, vr_end.intf, self.hosts[other.node], other.intf,
                            address=str(other.address) if other.address else None)
            else:
                raise UserError(f"{topo.name}: link {ln.name} joins no router")
        for node in topo.hosts():
            if node.gateway:
                self.hosts[node.name].ip("route", "add", "default", "via", str(node.gateway))
        say("starting the routers")
        for r in routers:
            net.place(r, self.home[r])
        for pr, vr in self.spare.items():
            net.reserve_ports(vr, pr)  # the spare is ready for its VR before any move
        for node in topo.externals():
            spec = router_spec(topo, node.name)
            spec.graceful_restart = self.graceful
            d = driver_for(node.daemon or "frr")(spec)
            d.start(self.hosts[node.name], net.run_root / node.name)
            self.externals[node.name] = d

    def stop(self) -> None:
        for d in self.externals.values():
            try:
                d.stop()
            except Exception as e:
                log.warning("stopping %s: %s", d, e)
        self.externals.clear()
        self.net.stop()
        self.hosts.clear()
        self.started = False

    def __enter__(self) -> TopoNetwork:
        return self.start() if not self.started else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ lookups
    def daemon(self, name: str) -> Daemon:
        if name in self.net.vrs:
            d = self.net.vrs[name].daemon
            if d is None:
                raise UserError(f"{name} runs no daemon")
            return d
        if name in self.externals:
            return self.externals[name]
        raise UserError(f"unknown router {name!r}")

    def address(self, node: str) -> str:
        return node_address(self.topo, node)

    # ------------------------------------------------------------------ convergence
    def convergence_state(self, at_rest: bool = True) -> tuple[bool, str]:
        """(converged, what is still missing): every expected adjacency Full and every BGP
        session Established, as the VRs' and externals' daemons report them, every OSPF
        prefix in every VR's FIB and data plane, and (`at_rest`) no route flow changed for
        FIB_QUIET_S."""
        for name in list(self.net.vrs) + list(self.externals):
            d = self.daemon(name)
            if not d.is_running():
                raise UserError(f"{name}: its daemon died: {d.log_tail(5)}")
            # only FRR and BIRD speak OSPF here; an external on ExaBGP/GoBGP reports none
            gap = daemon_gap(self.topo, name, d, ospf=d.implementation in ("frr", "bird"))
            if gap:
                return False, gap
        # Adjacencies Full is not forwarding yet: OSPF computes routes after that (BIRD on
        # its next tick) and each VR's data plane installs them after its debounce. Without
        # this a first probe right after "converged" lost its first 1-2 s.
        ospf_routers = [n for n in self.net.vrs if self.topo.node(n).ospf]
        for name, vr in self.net.vrs.items():
            hv = vr.pr.hypervisors.get(name) if vr.pr is not None else None
            if hv is None:
                continue
            prefixes, pending = hv.fib_state()
            gap = fib_gap(self.topo, name, prefixes, ospf_routers) if name in ospf_routers else None
            if gap:
                return False, gap
            if pending:
                return False, f"{name}: its data plane is {pending} flow changes behind its FIB"
            quiet = hv.routes_quiet_s()
            if at_rest and quiet < FIB_QUIET_S:
                return False, f"{name}: its routes changed {quiet:.1f} s ago"
        return True, "converged"

    def wait_converged(self, timeout: float = 120.0, at_rest: bool = True) -> float:
        """Wait until `convergence_state` says converged; returns the seconds waited.
        Without `at_rest` the wait ends when everything is there (a reconvergence time)."""
        t0 = time.monotonic()
        poll_converged(lambda: self.convergence_state(at_rest), self.topo.name, timeout,
                       interval=0.3)
        return time.monotonic() - t0

    def wait_reachable(self, src: str, dst: str, timeout: float = 60.0) -> float:
        """Until host `src` gets ping answers from host `dst`."""
        ns, ip = self.hosts[src], self.address(dst)
        t0 = time.monotonic()
        wait_for(lambda: ns.run(["ping", "-c1", "-W1", ip], check=False).returncode == 0, timeout,
                 interval=0, retry_on=(), what=f"{src} reaching {dst} ({ip})")
        return time.monotonic() - t0

    # ------------------------------------------------------------------ what neighbours see
    def gr_neighbours(self, vr: str) -> dict[str, tuple[Daemon | None, Netns | None]]:
        """`vr`'s neighbours as `vroom.baseline.restart_move(..., observe=...)` and
        `vroom.grstate.GrWatch` take them: name -> (its daemon, its namespace)."""
        out: dict[str, tuple[Daemon | None, Netns | None]] = {}
        for nb in sorted(set(self.topo.neighbors(vr))):
            if nb in self.net.vrs:
                v = self.net.vrs[nb]
                out[nb] = (v.daemon, v.ns)
            elif nb in self.externals:
                out[nb] = (self.externals[nb], self.hosts.get(nb))
        return out

    def neighbour_view(self, vr: str) -> dict[str, dict[str, Any]]:
        """How each neighbour of `vr` sees it: OSPF state/uptime, BGP state/uptime/count."""
        node = self.topo.node(vr)
        rid = str(node.router_id)
        my_addrs = {str(i.address.ip) for i in self.topo.interfaces(vr) if i.address}
        if node.loopback:
            my_addrs.add(str(node.loopback.ip))
        out: dict[str, dict[str, Any]] = {}
        for nb in sorted(set(self.topo.neighbors(vr))):
            if nb not in self.net.vrs and nb not in self.externals:
                continue
            d = self.daemon(nb)
            view: dict[str, Any] = {}
            try:
                o = [x for x in d.ospf_neighbors() if x.router_id == rid]
            except Exception as e:
                o, view["ospf_error"] = [], str(e)
            if o:
                view["ospf_state"], view["ospf_uptime"] = o[0].state, o[0].uptime
            elif expected_ospf_neighbors(self.topo, nb) and any(
                    i.peer == vr and i.ospf_area is not None and not i.ospf_passive
                    for i in self.topo.interfaces(nb)):
                view["ospf_state"] = "Down"
            try:
                b = [s for s in d.bgp_sessions() if s.peer in my_addrs]
            except Exception as e:
                b, view["bgp_error"] = [], str(e)
            if b:
                view["bgp_state"], view["bgp_uptime"] = b[0].state, b[0].uptime
                view["bgp_connections"] = b[0].established_count
            out[nb] = view
        return out


def sessions_reset(before: dict[str, dict], after: dict[str, dict], elapsed: float,
                   slack: float = 1.5) -> list[str]:
    """Which adjacencies/sessions did not survive between two `neighbour_view`s `elapsed`
    seconds apart: not Full/Established any more, a new BGP connection, or an uptime that
    did not keep growing."""
    out = []
    for nb, b in before.items():
        a = after.get(nb, {})
        if "ospf_state" in b:
            if a.get("ospf_state") != "Full":
                out.append(f"{nb} OSPF {a.get('ospf_state')}")
            elif b.get("ospf_uptime") is not None and a.get("ospf_uptime") is not None and \
                    a["ospf_uptime"] < b["ospf_uptime"] + elapsed - slack:
                out.append(f"{nb} OSPF adjacency restarted")
        if "bgp_state" in b:
            if a.get("bgp_state") != "Established":
                out.append(f"{nb} BGP {a.get('bgp_state')}")
            elif (b.get("bgp_connections") is not None and a.get("bgp_connections") is not None
                  and a["bgp_connections"] > b["bgp_connections"]):
                out.append(f"{nb} BGP new connection")
            elif b.get("bgp_uptime") is not None and a.get("bgp_uptime") is not None and \
                    a["bgp_uptime"] < b["bgp_uptime"] + elapsed - slack:
                out.append(f"{nb} BGP session restarted")
    return out


def sessions_reset_gr(before: dict[str, dict], after: dict[str, dict], elapsed: float,
                      gr: dict[str, dict] | None = None, slack: float = 1.5) -> dict[str, list[str]]:
    """`sessions_reset` aware of graceful restart: what it calls reset, split by the
    `vroom.grstate.GrWatch` result `gr` (a `RestartReport.neighbours`) into ``reset``
    (for real) and ``kept_by_gr`` (re-established while the helper kept the routes)."""
    out: dict[str, list[str]] = {"reset": [], "kept_by_gr": []}
    for item in sessions_reset(before, after, elapsed, slack):
        nb, proto = item.split(" ", 2)[:2]
        g = ((gr or {}).get(nb) or {}).get(proto.lower()) or {}
        out["kept_by_gr" if g.get("kept") else "reset"].append(item)
    return out
