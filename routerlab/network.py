"""A running routerlab network: a Topology built in Mininet with real daemons.

`Network(topo).start()` creates one named namespace per router and host, userspace OVS
switches, shaped veth links, addresses from the topology's address plan, and starts each
router's daemon from a RouterSpec rendered out of the topology. `wait_converged` polls the
daemons' own status (every expected OSPF adjacency Full, every BGP session Established).
`stop` tears everything down; whatever a crash leaves is in the registry for `routerlab clean`.
"""
from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from mininet.net import Mininet

from routerlab import registry
from routerlab.daemons import driver_for
from routerlab.daemons.base import BgpSession, Daemon, DaemonError, OspfNeighbor
from routerlab.daemons.spec import BgpNeighbor, Interface as SpecInterface, Network as SpecNetwork, RouterSpec
from routerlab.errors import UserError
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.nodes import HostNode, RegisteredLink, RouterNode, UserspaceSwitch
from routerlab.topology import Topology

log = logging.getLogger(__name__)

Progress = Callable[[str, float | None], None]


def _no_progress(message: str, fraction: float | None) -> None:
    """The Progress callback used when the caller gives none: report nothing."""


RUN_ROOT = registry.STATE_DIR / "routers"


def _netem_available() -> bool:
    from routerlab.doctor import check_netem

    return check_netem().status == "ok"


def spf_throttle(routers: int) -> tuple[int, int, int]:
    """FRR's SPF throttle (ms) for a network of `routers`: the testbed's fast 0/50/1000 up
    to 200 routers. Above, every router re-ran SPF about once a second for as long as
    LSAs kept arriving (hundreds of daemons starting on 2 cores: zebra and ospfd each took a
    full core at 500 routers), so SPF waits 200 ms to gather a burst and holds up to 5 s."""
    return (0, 50, 1000) if routers <= 200 else (200, 1000, 5000)


def router_spec(topo: Topology, name: str) -> RouterSpec:
    """The implementation-neutral spec of one topology node that runs a daemon."""
    node = topo.node(name)
    ifaces = []
    for i in topo.interfaces(name):
        if i.address is None:
            continue
        ifaces.append(SpecInterface(
            name=i.name, address=str(i.address),
            ospf_area=None if i.ospf_area is None or not node.ospf else str(i.ospf_area),
            ospf_cost=i.cost, ospf_passive=i.ospf_passive,
            ospf_network="broadcast" if i.lan else "point-to-point"))
    neighbors = [BgpNeighbor(peer=str(s.peer_address), asn=s.peer_asn,
                             local_address=str(s.local_address), description=s.peer,
                             keepalive=s.keepalive, hold=s.hold, next_hop_self=s.ibgp)
                 for s in topo.bgp_neighbors(name)]
    lo_area = topo.loopback_area(name)
    return RouterSpec(
        name=name, router_id=str(node.router_id), asn=node.asn,
        loopback=str(node.loopback) if node.loopback else None,
        loopback_area=None if lo_area is None or not node.ospf else str(lo_area),
        interfaces=ifaces, ospf_hello=topo.ospf.hello, ospf_dead=topo.ospf.dead,
        ospf_spf_throttle=spf_throttle(len(topo.routers())),
        bgp_neighbors=neighbors,
        networks=[SpecNetwork(prefix=str(p)) for p in node.originate],
    )


# ---------------------------------------------------------------------- convergence rules
# Pure functions of the topology and what the daemons report, shared by every network built
# from a Topology (this Mininet one, VROOM's).

def expected_ospf_neighbors(topo: Topology, router: str) -> int:
    """How many Full adjacencies `router` should have."""
    if not topo.node(router).ospf:
        return 0
    n = 0
    for i in topo.interfaces(router):
        if i.ospf_area is None or i.ospf_passive:
            continue
        peer = topo.node(i.peer)
        if i.lan:
            n += sum(1 for j in topo.interfaces(peer.name)
                     if j.peer != router and topo.node(j.peer).ospf)
        elif peer.ospf:
            n += 1
    return n


def ospf_prefixes(topo: Topology, router: str) -> set[str]:
    """Prefixes OSPF router `router` advertises: its loopback and its OSPF subnets."""
    node = topo.node(router)
    out = {str(node.loopback.network)} if node.loopback and topo.loopback_area(router) is not None else set()
    for i in topo.interfaces(router):
        if i.ospf_area is not None and i.address is not None:
            out.add(str(i.address.network))
    return out


def ospf_gap(topo: Topology, router: str, neighbors: list[OspfNeighbor]) -> str | None:
    """What `router` lacks of its expected Full adjacencies, given its daemon's OSPF
    neighbours (None: nothing)."""
    want = expected_ospf_neighbors(topo, router)
    full = sum(1 for nb in neighbors if nb.state == "Full")
    return f"{router}: {full}/{want} OSPF adjacencies Full" if full < want else None


def bgp_gap(topo: Topology, router: str, sessions: list[BgpSession]) -> str | None:
    """Which of `router`'s configured BGP sessions its daemon does not report Established
    (None: all are)."""
    est = {s.peer for s in sessions if s.established}
    missing = [str(s.peer_address) for s in topo.bgp_neighbors(router)
               if str(s.peer_address) not in est]
    return f"{router}: BGP to {', '.join(missing)} not Established" if missing else None


def fib_gap(topo: Topology, router: str, fib: set[str], ospf_routers: list[str]) -> str | None:
    """Which prefixes of the other OSPF routers are not yet in `router`'s kernel FIB
    (destinations as `Network.kernel_routes` gives them; None: all are)."""
    want = set().union(*(ospf_prefixes(topo, o) for o in ospf_routers if o != router))
    missing = want - fib
    if missing:
        return f"{router}: {len(missing)} OSPF prefixes not yet in the FIB (e.g. {sorted(missing)[0]})"
    return None


def daemon_gap(topo: Topology, router: str, daemon: Daemon, *, ospf: bool = True) -> str | None:
    """What `router`'s daemon still lacks (expected adjacencies Full, then sessions
    Established), or None. The daemon is asked only what the topology expects of it
    (queries cost a CLI round trip); `ospf` False skips the OSPF check."""
    if ospf and expected_ospf_neighbors(topo, router):
        gap = ospf_gap(topo, router, daemon.ospf_neighbors())
        if gap:
            return gap
    if topo.bgp_neighbors(router):
        return bgp_gap(topo, router, daemon.bgp_sessions())
    return None


def poll_converged(state: Callable[[], tuple[bool, str]], name: str, timeout: float, *,
                   interval: float, say: Callable[[str], None] | None = None) -> None:
    """Poll `state` (a `convergence_state`) until it says converged; TimeoutError naming
    network `name` and what is still missing after `timeout` seconds."""
    missing = ["not evaluated"]

    def converged() -> bool:
        ok, missing[0] = state()
        if not ok and say is not None:
            say(f"converging: {missing[0]}")
        return ok

    try:
        wait_for(converged, timeout, interval=interval, what=f"{name} to converge", retry_on=())
    except ExpectTimeout:
        raise TimeoutError(f"{name} did not converge within {timeout:.0f} s: {missing[0]}") from None


def node_address(topo: Topology, name: str) -> str:
    """Node `name`'s address from the topology's plan; UserError when it has none."""
    a = topo.address_of(name)
    if a is None:
        raise UserError(f"{name} has no address")
    return str(a)


#: routers whose daemons start (and stop) at once; more only queue on 2 cores
START_WORKERS = 8


def _stop_daemon(r: RouterNode) -> str | None:
    """Stop a router's daemon; what went wrong, or None (teardown carries on regardless)."""
    if r.daemon is None:
        return None
    try:
        r.daemon.stop()
    except Exception as e:  # a daemon that already died must not block teardown
        return str(e)
    return None


class Network:
    """A topology running in Mininet with real routing daemons."""

    #: node classes, and extra addHost parameters per node (cluster mode: routerlab.cluster)
    host_cls: type[HostNode] = HostNode
    router_cls: type[RouterNode] = RouterNode

    def node_params(self, name: str) -> dict[str, Any]:
        return {}

    def __init__(self, topo: Topology, *, prefix: str = "rl-", run_root: Path | None = None):
        self.topo = topo
        self.prefix = prefix
        self.run_root = (run_root or RUN_ROOT) / f"{prefix}{topo.name}"
        self.net = Mininet(topo=None, build=False, controller=None, host=HostNode,
                           switch=UserspaceSwitch, link=RegisteredLink, autoSetMacs=False,
                           autoStaticArp=False, waitConnected=False)
        self.routers: dict[str, RouterNode] = {}
        self.hosts: dict[str, HostNode] = {}
        self.switches: dict[str, UserspaceSwitch] = {}
        self.started = False
        self.daemon_start_time: float | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, progress: Progress | None = None) -> Network:
        """Create namespaces, switches and links, then start every daemon."""
        say = progress or _no_progress
        try:
            self._build(say)
            self._start_daemons(say)
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def _build(self, say: Progress) -> None:
        topo = self.topo
        say(f"creating {len(topo.nodes)} nodes", None)
        delay_ok = None
        for node in topo.nodes.values():
            ns_name = f"{self.prefix}{node.name}"
            if node.role == "switch":
                br = f"{self.prefix}{node.name}"
                if len(br) > 15:
                    raise UserError(f"switch name {br!r} (prefix + node) exceeds 15 characters")
                self.switches[node.name] = self.net.addSwitch(br, failMode="standalone")
            elif node.role == "host":
                gw = f"via {node.gateway}" if node.gateway else None
                addr = next((str(i.address) for i in topo.interfaces(node.name) if i.address), None)
                self.hosts[node.name] = self.net.addHost(node.name, cls=self.host_cls, netns_name=ns_name,
                                                         ip=addr, defaultRoute=gw,
                                                         **self.node_params(node.name))
            else:
                spec = router_spec(topo, node.name)
                assert node.daemon is not None  # the validator gives routers and externals a daemon
                daemon = driver_for(node.daemon)(spec)
                self.routers[node.name] = self.net.addHost(
                    node.name, cls=self.router_cls, netns_name=ns_name, daemon=daemon, ip=None,
                    loopback=str(node.loopback) if node.loopback else None,
                    **self.node_params(node.name))
        say(f"creating {len(topo.links)} links", None)
        for link in topo.links:
            n1, n2 = self._mn(link.a.node), self._mn(link.b.node)
            params: dict[str, Any] = {}
            if link.bw:
                params["bw"] = link.bw
            if link.delay:
                delay_ok = _netem_available() if delay_ok is None else delay_ok
                if delay_ok:
                    params["delay"] = f"{link.delay}ms"
                else:
                    log.warning("link %s: no netem qdisc in this kernel; running without its %s ms delay",
                                link.name, link.delay)
            p1 = {"ip": str(link.a.address)} if link.a.address else {}
            p2 = {"ip": str(link.b.address)} if link.b.address else {}
            self.net.addLink(n1, n2, intfName1=link.a.intf, intfName2=link.b.intf,
                             port1=link.a.port or None, port2=link.b.port or None,
                             params1=p1, params2=p2, **params)
        say("starting switches", None)
        self.net.build()
        self.net.start()

    def _start_daemons(self, say: Progress) -> None:
        """Start every router's daemon, START_WORKERS at a time: a start is mostly waiting
        (config checks, zebra's socket, the first vty answer), so one after the other took
        ~0.28 s a router (40 s of TataNld's 58 s). The first failure stops the rest."""
        self.daemon_start_time = time.monotonic()
        # configs, logs, pid files and vty sockets: removed by stop (or `routerlab clean`)
        registry.session().add("dir", str(self.run_root))
        n = len(self.routers)
        failed: list[str] = []

        # the daemons started first converge while the rest start, on the same cores: a
        # start waits for its daemon longer the larger the network (0.25 s a router; at 300
        # routers on a busy 2-core machine 30 s was too short)
        def start_one(name: str, r: RouterNode) -> None:
            if failed:
                return
            try:
                r.start_daemon(self.run_root / name,
                               timeout=max(r.daemon.start_timeout, 0.25 * n) if r.daemon else None)
            except DaemonError as e:
                failed.append(f"router {name}: {e}")

        with ThreadPoolExecutor(max_workers=START_WORKERS, thread_name_prefix="start") as pool:
            futures = [pool.submit(start_one, name, r) for name, r in self.routers.items()]
            for k, f in enumerate(as_completed(futures)):
                f.result()
                say(f"started {k + 1}/{n} daemons", (k + 1) / max(n, 1))
        if failed:
            raise UserError(failed[0])

    def stop(self) -> None:
        """Stop daemons, delete links, switches and namespaces."""
        # Daemons first, START_WORKERS at a time (each waits for its processes to exit);
        # Mininet then only has shells and links left to remove.
        with ThreadPoolExecutor(max_workers=START_WORKERS, thread_name_prefix="stop") as pool:
            for name, err in zip(self.routers, pool.map(_stop_daemon, self.routers.values())):
                if err:
                    log.warning("%s: stopping its daemon: %s", name, err)
        try:
            self.net.stop()
        except Exception as e:  # keep tearing down; the registry catches the rest
            log.warning("mininet stop: %s", e)
        for node in list(self.routers.values()) + list(self.hosts.values()):
            if node.netns is not None:
                node.netns.delete()
        if self.daemon_start_time is not None:
            shutil.rmtree(self.run_root, ignore_errors=True)
            registry.session().release("dir", str(self.run_root))
        self.started = False

    def __enter__(self) -> Network:
        return self.start() if not self.started else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ lookups
    def _mn(self, name: str):
        return self.switches.get(name) or self.hosts.get(name) or self.routers[name]

    def node(self, name: str):
        try:
            return self._mn(name)
        except KeyError:
            raise UserError(f"unknown node {name!r} (nodes: {', '.join(sorted(self.topo.nodes))})") from None

    def router(self, name: str) -> RouterNode:
        if name not in self.routers:
            raise UserError(f"unknown router {name!r} (routers: {', '.join(sorted(self.routers))})")
        return self.routers[name]

    def host(self, name: str) -> HostNode:
        if name not in self.hosts:
            raise UserError(f"unknown host {name!r} (hosts: {', '.join(sorted(self.hosts)) or 'none'})")
        return self.hosts[name]

    def address(self, name: str) -> str:
        return node_address(self.topo, name)

    # ------------------------------------------------------------------ convergence
    def expected_ospf_neighbors(self, name: str) -> int:
        """How many Full adjacencies router `name` should have."""
        return expected_ospf_neighbors(self.topo, name)

    def ospf_prefixes(self, name: str) -> set[str]:
        """Prefixes OSPF router `name` advertises: its loopback and its OSPF subnets."""
        return ospf_prefixes(self.topo, name)

    def kernel_routes(self, name: str) -> set[str]:
        """Destination prefixes in router `name`'s kernel FIB (as ip prints them, /32 kept)."""
        import json

        r = self._mn(name)
        out = r.netns.run(["ip", "-j", "route", "show"]).stdout
        dsts = set()
        for rt in json.loads(out or "[]"):
            d = rt.get("dst", "")
            if d == "default":
                continue
            dsts.add(d if "/" in d else f"{d}/32")
        return dsts

    def convergence_state(self) -> tuple[bool, str]:
        """(converged, what is still missing) from the daemons' own status and the FIBs:
        every expected adjacency Full, every BGP session Established, and every OSPF router's
        kernel FIB holding every other OSPF router's loopback and subnets."""
        for name, r in self.routers.items():
            d = r.daemon
            if not d.is_running():
                raise UserError(f"router {name}: {d.implementation} died: {d.log_tail(5)}")
        # The FIBs first: `ip route` costs ~6 ms, a daemon's CLI 30-40 ms, so while the
        # network converges a poll stops at the first FIB still missing something, and the
        # daemons are asked (START_WORKERS at a time) only once every FIB is complete.
        ospf_routers = [n for n in self.routers if self.topo.node(n).ospf]
        for name in ospf_routers:
            gap = fib_gap(self.topo, name, self.kernel_routes(name), ospf_routers)
            if gap:
                return False, gap
        with ThreadPoolExecutor(max_workers=START_WORKERS, thread_name_prefix="poll") as pool:
            gaps = pool.map(lambda item: daemon_gap(self.topo, item[0], item[1].daemon),
                            self.routers.items())
            gap = next((g for g in gaps if g), None)
        return (False, gap) if gap else (True, "converged")

    def wait_converged(self, timeout: float = 90.0, progress: Progress | None = None) -> float:
        """Wait until every adjacency is Full and every session Established; returns the
        seconds since the daemons were started."""
        say = progress or _no_progress
        poll_converged(self.convergence_state, self.topo.name, timeout, interval=0.2,
                       say=lambda m: say(m, None))
        return time.monotonic() - (self.daemon_start_time or time.monotonic())

    # ------------------------------------------------------------------ traffic
    def probe(self, src: str, dst: str, seconds: float, rate_pps: int = 1000):
        """Run a constant-rate probe from host `src` to host `dst` for `seconds`."""
        from routerlab.traffic import check_probe_args, measure

        seconds, rate = check_probe_args(seconds, rate_pps)
        return measure(self.host(src), self.host(dst), self.address(dst), seconds, rate_pps=rate)
