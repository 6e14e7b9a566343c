"""The data-plane hypervisor on a real bridge: a BIRD VR's FIB becomes flows, and the bridge,
not the VR's kernel, forwards (about 25 s).

Topology (prefix tvXXXX): neighbour n1 (10.91.0.2) -- [transport] -- physical router A
hosting VR r1 (BIRD, static route 10.92.0.0/24 via n2) -- [transport] -- neighbour n2
(10.91.1.2, 10.92.0.1 on lo). Everything is removed by the fixture, even on failure.
"""
from __future__ import annotations

import logging
import os
import secrets
import shutil
import time
from collections.abc import Iterator

import pytest

from routerlab.daemons import Interface, RouterSpec, StaticRoute
from routerlab.expect import wait_for
from routerlab.ovs import bridges_named, dump_flows
from routerlab.traffic import measure
from vroom.flows import flows_of_vr
from vroom.network import VroomNetwork

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, OVS)"),
    pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed"),
]
log = logging.getLogger(__name__)


@pytest.fixture
def net() -> Iterator[VroomNetwork]:
    prefix = f"tvr{secrets.token_hex(2)}"
    net = VroomNetwork(prefix)
    try:
        net.add_physical_router("A", ports=3)
        spec = RouterSpec(name="r1", router_id="10.255.91.1", loopback="10.255.91.1/32",
                          interfaces=[Interface("eth0", "10.91.0.1/30"),
                                      Interface("eth1", "10.91.1.1/30")],
                          static_routes=[StaticRoute("10.92.0.0/24", "10.91.1.2")])
        net.add_virtual_router("r1", spec)
        n1, n2 = net.add_namespace("n1"), net.add_namespace("n2")
        net.connect("r1", "eth0", n1, "eth0", address="10.91.0.2/30")
        net.connect("r1", "eth1", n2, "eth0", address="10.91.1.2/30")
        n1.ip("route", "add", "default", "via", "10.91.0.1")
        n2.ip("addr", "add", "10.92.0.1/32", "dev", "lo")
        n2.ip("route", "add", "default", "via", "10.91.1.1")
        yield net
    finally:
        bridges = [pr.bridge_name for pr in net.prs.values()] + [net.transport.name]
        nss = [ns.name for ns in net.namespaces.values()]
        net.stop()
        assert not bridges_named(bridges)
        assert not any(os.path.exists(f"/var/run/netns/{n}") for n in nss)


def test_bridge_follows_the_fib_and_forwards_without_the_vr_kernel(net: VroomNetwork) -> None:
    hv = net.place("r1", "A")
    vr = net.vrs["r1"]
    bridge = net.prs["A"].bridge_name
    # BIRD exports its static route into the VR's kernel; the hypervisor turns it into a flow
    wait_for(lambda: any("nw_dst=10.92.0.0/24" in f.match for f in dump_flows(bridge)), 20,
             interval=0.1, what="the static route's flow")
    n1, n2 = net.namespaces["n1"], net.namespaces["n2"]
    # first packets are punted (neighbours unresolved): the VR's kernel resolves and forwards
    wait_for(lambda: n1.run(["ping", "-c1", "-W1", "10.92.0.1"], check=False).returncode == 0,
             20, interval=0.1, what="n1 -> 10.92.0.1 through r1")
    assert n2.run(["ping", "-c1", "-W1", "10.91.0.2"], check=False).returncode == 0
    wait_for(lambda: hv.last and hv.last.groups >= 2 and all(
        "resubmit(,2)" not in str(g) for g in hv.installed.groups.values()),
        10, interval=0.1, what="resolved next hops")
    # with forwarding off in the VR, only the bridge can carry transit traffic
    vr.ns.sysctl("net.ipv4.ip_forward", "0")
    res = measure(n1, n2, "10.92.0.1", duration_s=2.0, rate_pps=1000)
    log.info("through the data plane: %s", res.summary())
    assert res.sent >= 1900 and res.lost == 0, res.summary()
    vr.ns.sysctl("net.ipv4.ip_forward", "1")

    # a route added to the FIB appears on the bridge, and goes again
    t0 = time.monotonic()
    vr.ns.ip("route", "add", "10.93.0.0/24", "via", "10.91.1.2", "proto", "static")
    wait_for(lambda: any("nw_dst=10.93.0.0/24" in f.match for f in dump_flows(bridge)), 5,
             interval=0.1, what="a new route's flow")
    log.info("route -> flow in %.3f s", time.monotonic() - t0)
    vr.ns.ip("route", "del", "10.93.0.0/24")
    wait_for(lambda: not any("nw_dst=10.93.0.0/24" in f.match for f in dump_flows(bridge)), 5,
             interval=0.1, what="the withdrawn route's flow to go")
    # a neighbour's new MAC rewrites its group only
    vr.ns.ip("neigh", "replace", "10.91.1.2", "lladdr", "02:00:00:00:99:99", "dev", "eth1",
             "nud", "permanent")
    wait_for(lambda: any("02:00:00:00:99:99" in str(g) for g in hv.installed.groups.values()),
             5, interval=0.1, what="the neighbour's new MAC in its group")
    assert not hv.errors, hv.errors


def test_bulk_repopulation_of_many_routes_is_timed(net: VroomNetwork) -> None:
    hv = net.place("r1", "A")
    vr = net.vrs["r1"]
    n = 5000
    batch = "".join(f"route add 10.{100 + i // 256}.{i % 256}.0/24 via 10.91.1.2 proto 12\n"
                    for i in range(n))
    vr.ns.run(["ip", "-batch", "-"], input=batch)
    st = hv.repopulate()
    log.info("repopulated %d routes: %s", st.routes, st.to_json())
    assert st.full and st.routes >= n
    assert st.total_s >= st.install_s > 0 and st.read_s > 0
    mine = flows_of_vr(net.prs["A"].bridge_name, vr.vr_id)
    assert len(mine) >= n
    # repopulating again gives the same table (nothing lost, nothing doubled)
    st2 = hv.repopulate()
    assert st2.flows == st.flows
    assert len(flows_of_vr(net.prs["A"].bridge_name, vr.vr_id)) == len(mine)
    # and the watcher converges to an unchanged table: a sync changes nothing
    assert hv.sync().changes == 0
