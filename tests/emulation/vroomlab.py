"""The VROOM migration lab shared by tests/emulation/test_vroom_migrate.py (r1 on BIRD) and
test_vroom_frr.py (r1 on FRR)::

    n1 (BIRD, OSPF) --\\                         /-- physical router A (VR r1 starts here)
    n2 (FRR, OSPF)  ----[ transport circuits ]--<
    ext (ExaBGP, AS 65100, eBGP) --/             \\-- physical router B

r1: OSPF with n1 (eth0) and n2 (eth1), eBGP with ext (eth2); the probe runs from n1 to n2's
loopback across r1's data plane.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Iterator

import pytest

from routerlab import criu as rlcriu
from routerlab.daemons import (BgpNeighbor, BirdDaemon, ExabgpDaemon, FrrDaemon, Interface,
                               Network, RouterSpec)
from routerlab.expect import expect, wait_for
from routerlab.netns import run
from routerlab.ovs import bridges_named
from routerlab.traffic import Probe
from vroom.network import VroomNetwork

log = logging.getLogger(__name__)

LO_N2 = "10.255.95.3"


# what "converged" means around r1 (a partial state: `routerlab.expect.subset_diff`)
CONVERGED = {"n1_ospf": "Full", "n2_ospf": "Full", "ext_bgp": "Established",
             "r1_bgp": "Established"}


class Lab:
    def __init__(self, net: VroomNetwork, n1: BirdDaemon, n2: FrrDaemon, ext: ExabgpDaemon):
        self.net, self.n1, self.n2, self.ext = net, n1, n2, ext

    @property
    def r1(self):
        return self.net.vrs["r1"]

    def state(self) -> dict:
        """What every neighbour sees of r1 (and r1 of ext)."""
        n1 = [x for x in self.n1.ospf_neighbors() if x.router_id == "10.255.95.1"]
        n2 = [x for x in self.n2.ospf_neighbors() if x.router_id == "10.255.95.1"]
        ext = self.ext.bgp_sessions()
        r1 = self.r1.daemon.bgp_sessions()
        return {"n1_ospf": n1[0].state if n1 else None,
                "n2_ospf": n2[0].state if n2 else None,
                "n2_ospf_uptime": n2[0].uptime if n2 else None,
                "ext_bgp": ext[0].state if ext else None,
                "ext_bgp_uptime": ext[0].uptime if ext else None,
                "ext_bgp_ups": ext[0].established_count if ext else None,
                "r1_bgp": r1[0].state if r1 else None,
                "r1_bgp_ups": r1[0].established_count if r1 else None}

    def wait_path(self, timeout: float = 30) -> None:
        """Until n1 reaches n2's loopback through r1 (routes learned over OSPF)."""
        n1 = self.net.namespaces["n1"]
        wait_for(lambda: n1.run(["ping", "-c1", "-W1", LO_N2], check=False).returncode == 0,
                 timeout, what="n1 -> n2's loopback through r1")

    def wait_converged(self, timeout: float, what: str) -> dict:
        """Until `state` is `CONVERGED`; returns it (a timeout names what differs)."""
        return expect(self.state, CONVERGED, timeout, what)


def build_lab(prefix: str, impl: str = "bird") -> tuple[Lab, list]:
    """The network above (r1 running `impl`: BIRD, or FRR as one process tree, which is
    what makes it migratable), converged; returns the lab and the neighbours' daemons."""
    net = VroomNetwork(prefix)
    daemons: list = []
    try:
        net.add_physical_router("A", ports=4)
        net.add_physical_router("B", ports=4)
        net.add_physical_router("C", ports=2)  # too small for r1: a "full" target
        r1 = RouterSpec(name="r1", router_id="10.255.95.1", asn=65000,
                        loopback="10.255.95.1/32",
                        interfaces=[Interface("eth0", "10.95.1.1/30", ospf_area="0"),
                                    Interface("eth1", "10.95.2.1/30", ospf_area="0"),
                                    Interface("eth2", "10.95.3.1/30")],
                        bgp_neighbors=[BgpNeighbor("10.95.3.2", 65100)])
        vr = net.add_virtual_router("r1", r1, impl=impl)
        if impl == "frr":
            vr.make_daemon = lambda: FrrDaemon(vr.spec, process_tree=True)  # type: ignore[method-assign]
        ns = {n: net.add_namespace(n) for n in ("n1", "n2", "ext")}
        net.connect("r1", "eth0", ns["n1"], "eth0")
        net.connect("r1", "eth1", ns["n2"], "eth0")
        net.connect("r1", "eth2", ns["ext"], "eth0")
        n1 = BirdDaemon(RouterSpec(name="n1", router_id="10.255.95.2", loopback="10.255.95.2/32",
                                   interfaces=[Interface("eth0", "10.95.1.2/30", ospf_area="0")]))
        n2 = FrrDaemon(RouterSpec(name="n2", router_id=LO_N2, loopback=f"{LO_N2}/32",
                                  interfaces=[Interface("eth0", "10.95.2.2/30", ospf_area="0")]))
        ext = ExabgpDaemon(RouterSpec(name="ext", router_id="10.95.3.2", asn=65100,
                                      interfaces=[Interface("eth0", "10.95.3.2/30")],
                                      bgp_neighbors=[BgpNeighbor("10.95.3.1", 65000)],
                                      networks=[Network("10.200.0.0/24", discard=False)]))
        for d, name in ((n1, "n1"), (n2, "n2"), (ext, "ext")):
            d.start(ns[name], net.run_root / name)
            daemons.append(d)
        ns["ext"].ip("addr", "add", "10.201.0.1/32", "dev", "lo")
        ns["ext"].ip("route", "add", "default", "via", "10.95.3.1")
        ns["n1"].ip("route", "add", "10.200.0.0/15", "via", "10.95.1.1")
        net.place("r1", "A")
        lab = Lab(net, n1, n2, ext)
        lab.wait_converged(60, "OSPF Full and BGP Established around r1")
        lab.wait_path()
        return lab, daemons
    except BaseException:
        for d in daemons:
            d.stop()
        net.stop()
        raise


def teardown_lab(lab: Lab, daemons: list) -> None:
    net = lab.net
    bridges = [pr.bridge_name for pr in net.prs.values()] + [net.transport.name]
    nss = [ns.name for ns in net.namespaces.values()]
    for d in daemons:
        d.stop()
    net.stop()
    assert not bridges_named(bridges)
    assert not any(os.path.exists(f"/var/run/netns/{n}") for n in nss)


def lab_fixture(tag: str, impl: str = "bird") -> Iterator[Lab]:
    """A module fixture's body: the lab (names `tag` + random hex), always torn down."""
    if run(["ovs-vsctl", "-t", "5", "show"], check=False).returncode != 0:
        pytest.skip("Open vSwitch is not running")
    feats = rlcriu.features()
    if not (feats["check"].ok and feats["socket_dump"].ok):
        pytest.skip(f"CRIU cannot migrate here: {feats['socket_dump'].detail}")
    lab, daemons = build_lab(f"{tag}{secrets.token_hex(2)}", impl)
    try:
        yield lab
    finally:
        teardown_lab(lab, daemons)


def keep_logs(lab: Lab, dest) -> str:
    """Copy the daemons' logs and configs (not sockets or FIFOs) for a failure message."""
    import stat

    for p in lab.net.run_root.rglob("*"):
        try:
            if p.is_file() and stat.S_ISREG(p.stat().st_mode) and "images" not in p.parts:
                q = dest / p.relative_to(lab.net.run_root)
                q.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(p, q)
        except OSError:
            pass
    return str(dest)


def explain_loss(lab: Lab, res, tmp_path, what: str) -> str:
    """Everything useful when a probe lost packets: where, and the state around r1."""
    import json

    r1 = lab.r1
    info = {"what": what, "probe": res.summary(), "started_at": res.started_at,
            "gaps": [(round(g.start_s, 3), round(g.duration_ms), g.lost) for g in res.gaps],
            "r1_at": r1.pr.name if r1.pr else None,
            "hypervisor_errors": {f"{n}/{pr.name}": hv.errors for pr in lab.net.prs.values()
                                  for n, hv in pr.hypervisors.items()},
            "r1_neigh": r1.ns.ip("-4", "neigh", "show", check=False).stdout if r1.ns else "",
            "history": [h.summary() for h in lab.net.history[-3:]],
            "logs": keep_logs(lab, tmp_path)}
    text = json.dumps(info, indent=1, default=str)
    log.error("probe loss in %s:\n%s", what, text)
    return text


def probe(lab: Lab) -> Probe:
    return Probe(lab.net.namespaces["n1"], lab.net.namespaces["n2"], LO_N2, rate_pps=1000)


def assert_left(net: VroomNetwork, vr: str, pr: str) -> None:
    """`vr` has left `pr`: no binding, no hypervisor, no flow of it on `pr`'s bridge, and its
    namespace there (if any) parked: idle, its ports kept for its return."""
    from vroom.flows import flows_of_vr

    here = net.prs[pr]
    assert not here.portmap.of(vr) and vr not in here.hypervisors
    assert flows_of_vr(here.bridge_name, net.vrs[vr].vr_id) == []
    ns_path = f"/var/run/netns/{net.ns_name(vr, pr)}"
    if vr in here.parked:
        assert here.parked[vr].name == net.ns_name(vr, pr) and os.path.exists(ns_path)
        assert here.parked[vr].pids() == [], "processes left in the parked namespace"
    else:
        assert not os.path.exists(ns_path)
        assert not any(k[0] == vr for k in here.vr_ports)
