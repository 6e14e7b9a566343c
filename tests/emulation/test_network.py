"""The OSPF ring with real daemons: FRR only, and mixed FRR/BIRD."""
from __future__ import annotations

import pytest

from routerlab.network import Network
from routerlab.topology import load_topology
from routerlab.expect import wait_for


@pytest.fixture
def ring_net(request, uid):
    """The ring running under a unique prefix; daemons per router from the test's param."""
    daemons = getattr(request, "param", {})
    topo = load_topology("ring")
    for name, impl in daemons.items():
        topo.nodes[name].daemon = impl
    net = Network(topo, prefix=f"tn{uid}-")
    try:
        net.start()
        yield net
    finally:
        net.stop()


def _loopbacks(net: Network) -> dict[str, str]:
    return {n: str(net.topo.node(n).loopback.ip) for n in net.routers}


def _all_loopbacks_ping(net: Network) -> list[str]:
    failed = []
    for src, node in net.routers.items():
        for dst, ip in _loopbacks(net).items():
            if src != dst and "1 received" not in node.cmd(f"ping -c1 -W1 {ip}"):
                failed.append(f"{src}->{dst}")
    return failed


def test_frr_ring_converges_and_loopbacks_ping(ring_net):
    ring_net.wait_converged(timeout=90)
    for name, r in ring_net.routers.items():
        nbs = r.daemon.ospf_neighbors()
        assert len(nbs) == 2 and all(nb.state == "Full" for nb in nbs), (name, nbs)
    wait_for(lambda: not _all_loopbacks_ping(ring_net), 60, what="every router to ping every loopback")


@pytest.mark.parametrize("ring_net", [{"r2": "bird", "r4": "bird"}], indirect=True)
def test_mixed_frr_bird_ring_converges(ring_net):
    assert {r.daemon.implementation for r in ring_net.routers.values()} == {"frr", "bird"}
    ring_net.wait_converged(timeout=90)
    for name, r in ring_net.routers.items():
        assert sum(nb.state == "Full" for nb in r.daemon.ospf_neighbors()) == 2, name
    wait_for(lambda: not _all_loopbacks_ping(ring_net), 60, what="every router to ping every loopback")
    # hosts behind r1 and r3 reach each other across the mixed ring
    h1 = ring_net.host("h1")
    assert "1 received" in h1.cmd(f"ping -c1 -W2 {ring_net.address('h2')}")


def test_switch_lan_with_frr_and_bird(uid):
    """A userspace OVS switch as a LAN: OSPF on a broadcast segment between FRR and BIRD,
    a host behind the switch reaches both loopbacks, and the bridge goes away on stop."""
    from routerlab import registry
    from routerlab.topology import topology_from_dict

    sw = f"s{uid}"
    topo = topology_from_dict({
        "name": "lan", "defaults": {"daemon": "frr", "asn": 65000}, "ospf": {"area": 0},
        "nodes": {"r1": {}, "r2": {"daemon": "bird"}, sw: {"role": "switch"}, "h1": {"role": "host"}},
        "links": [{"a": "r1", "b": sw}, {"a": "r2", "b": sw}, {"a": "h1", "b": sw}],
    })
    net = Network(topo, prefix=f"tn{uid}-")
    bridge = f"tn{uid}-{sw}"
    try:
        net.start()
        assert registry.ovs_bridge_exists(bridge)
        net.wait_converged(timeout=90)
        for r in net.routers.values():
            assert [nb.state for nb in r.daemon.ospf_neighbors()] == ["Full"]
        h1 = net.host("h1")
        for r in ("r1", "r2"):
            ip = str(topo.node(r).loopback.ip)
            wait_for(lambda ip=ip: "1 received" in h1.cmd(f"ping -c1 -W1 {ip}"), 30, what=f"h1 to ping {r}")
    finally:
        net.stop()
    assert not registry.ovs_bridge_exists(bridge)
    assert not registry.link_exists(f"{sw}-eth1")
