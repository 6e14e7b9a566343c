"""A small network around one router, for VERB's tests and experiments.

The router's forwarding namespace `TAG-f` has one interface per neighbour (`ethK`, subnet
10.K.0.0/24: the router is .1, the neighbour .2); each neighbour runs a real daemon (ExaBGP,
FRR, BIRD or GoBGP) in its own namespace `TAG-nK`. The router itself is either a
`BugTolerantRouter` or, as a baseline, one ordinary daemon run in the forwarding namespace.
Everything is registered and `close()` removes it, also after a failure.
"""
from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from routerlab import registry
from routerlab.daemons import BgpNeighbor, Daemon, Interface, Network, RouterSpec, driver_for
from routerlab.netns import Netns, create_veth

log = logging.getLogger(__name__)

ROUTER_ASN = 65001
ROUTER_ID = "10.255.0.1"


@dataclass
class NeighborNode:
    name: str
    impl: str
    asn: int
    address: str  # its address on the link to the router
    router_side: str  # the router's address on that link
    ns: Netns
    spec: RouterSpec
    daemon: Daemon | None = None


@dataclass
class Testbed:
    tag: str
    fwd: Netns
    spec: RouterSpec  # the router's spec
    neighbors: list[NeighborNode] = field(default_factory=list)
    run_dir: Path = registry.STATE_DIR
    namespaces: list[Netns] = field(default_factory=list)
    keep_run_dir: bool = False

    def neighbor(self, name: str) -> NeighborNode:
        return next(n for n in self.neighbors if n.name == name)

    def start_neighbors(self) -> None:
        """Start every neighbour's daemon (a "raw" neighbour is scripted by its test)."""
        for n in self.neighbors:
            if n.impl == "raw":
                n.ns.ip("addr", "add", n.spec.interfaces[0].address, "dev", "eth0")
                continue
            n.daemon = driver_for(n.impl)(n.spec)
            n.daemon.start(n.ns, self.run_dir / n.name)

    def close(self) -> None:
        for n in self.neighbors:
            if n.daemon is not None:
                try:
                    n.daemon.stop()
                except Exception:  # teardown goes on whatever one daemon does
                    log.exception("stopping %s", n.name)
        for ns in reversed(self.namespaces):
            ns.delete()
        self.namespaces = []
        if not self.keep_run_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)
            registry.session().release("dir", str(self.run_dir))


def build(tag: str, neighbors: list[tuple[str, str, int]], run_dir: Path | str,
          router_hold: int = 9, originate: dict[str, list[str]] | None = None) -> Testbed:
    """Namespaces, links and specs for a router with the given (name, implementation, ASN)
    neighbours, each originating the prefixes `originate` lists for it; the neighbours'
    daemons are started by `Testbed.start_neighbors()`."""
    originate = originate or {}
    run_dir = Path(run_dir)
    registry.session().add("dir", str(run_dir))
    run_dir.mkdir(parents=True, exist_ok=True)
    fwd = Netns.create(f"{tag}-f")
    tb = Testbed(tag, fwd, RouterSpec(name="verb", router_id=ROUTER_ID, asn=ROUTER_ASN),
                 run_dir=run_dir, namespaces=[fwd])
    try:
        for k, (name, impl, asn) in enumerate(neighbors, start=1):
            ns = Netns.create(f"{tag}-n{k}")
            tb.namespaces.append(ns)
            create_veth(f"eth{k}", "eth0", ns_a=fwd, ns_b=ns)
            mine, theirs = f"10.{k}.0.1", f"10.{k}.0.2"
            fwd.ip("addr", "add", f"{mine}/24", "dev", f"eth{k}")
            tb.spec.interfaces.append(Interface(f"eth{k}", f"{mine}/24"))
            tb.spec.bgp_neighbors.append(BgpNeighbor(theirs, asn, hold=router_hold,
                                                     keepalive=max(1, router_hold // 3),
                                                     connect_retry=1, description=name))
            nspec = RouterSpec(name=name, router_id=f"10.255.{k}.2", asn=asn,
                               interfaces=[Interface("eth0", f"{theirs}/24")],
                               networks=[Network(p) for p in originate.get(name, [])],
                               bgp_neighbors=[BgpNeighbor(mine, ROUTER_ASN, hold=router_hold,
                                                          keepalive=max(1, router_hold // 3),
                                                          connect_retry=1)])
            tb.neighbors.append(NeighborNode(name, impl, asn, theirs, mine, ns, nspec))
        tb.spec.validate()
        return tb
    except BaseException:
        tb.close()
        raise
