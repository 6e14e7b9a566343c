"""The UDP probe and the iperf3 wrapper on real namespaces (root; about 20 s in all).

Two namespaces joined by a veth (and, when Open vSwitch is available, through a userspace
OVS bridge; and with Mininet hosts) carry a 1,000 pps probe. Every namespace, link, bridge
and process is created under a unique ``ttr-XXXX`` name, registered, and removed by the
fixtures even when a test fails.
"""
from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from dataclasses import dataclass
from typing import Iterator

import pytest

from routerlab import registry
from routerlab.netns import Netns, create_veth, delete_link, run
from routerlab.traffic import Iperf, Probe, measure

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
]
log = logging.getLogger(__name__)


@dataclass
class Pair:
    a: Netns
    b: Netns
    ip_a: str
    ip_b: str
    if_a: str
    if_b: str


def _tag() -> str:
    return f"ttr-{secrets.token_hex(2)}"


@pytest.fixture
def pair() -> Iterator[Pair]:
    """Namespaces ttr-XXXX-a (10.77.0.1) and ttr-XXXX-b (10.77.0.2) joined by a veth."""
    tag = _tag()
    made: list[Netns] = []
    try:
        a = Netns.create(f"{tag}-a")
        made.append(a)
        b = Netns.create(f"{tag}-b")
        made.append(b)
        create_veth("va", "vb", ns_a=a, ns_b=b)
        a.ip("addr", "add", "10.77.0.1/24", "dev", "va")
        b.ip("addr", "add", "10.77.0.2/24", "dev", "vb")
        yield Pair(a, b, "10.77.0.1", "10.77.0.2", "va", "vb")
    finally:
        for ns in reversed(made):
            ns.delete()
        assert not any(ns.exists() for ns in made)


@pytest.fixture
def ovs_pair() -> Iterator[Pair]:
    """Two namespaces joined through one userspace-datapath OVS bridge (NORMAL switching)."""
    # (the session fixture in conftest skips every emulation test when OVS is not running)
    tag = _tag()
    hexs = tag[4:]
    br, pa, pb = f"ttr{hexs}br", f"ttr{hexs}pa", f"ttr{hexs}pb"
    made: list[Netns] = []
    links: list[str] = []
    bridge = False
    try:
        a = Netns.create(f"{tag}-a")
        made.append(a)
        b = Netns.create(f"{tag}-b")
        made.append(b)
        registry.session().add("bridge", br)
        bridge = True
        run(["ovs-vsctl", "-t", "10", "add-br", br, "--", "set", "bridge", br,
             "datapath_type=netdev", "protocols=OpenFlow13"])
        for port, ns, ifname, ip in ((pa, a, "eth0", "10.78.0.1/24"), (pb, b, "eth0", "10.78.0.2/24")):
            links.append(port)
            create_veth(port, ifname, ns_a=None, ns_b=ns)
            run(["ovs-vsctl", "-t", "10", "add-port", br, port])
            ns.ip("addr", "add", ip, "dev", ifname)
        yield Pair(a, b, "10.78.0.1", "10.78.0.2", "eth0", "eth0")
    finally:
        if bridge:
            run(["ovs-vsctl", "-t", "10", "--if-exists", "del-br", br], check=False)
            registry.session().release("bridge", br)
        for ln in links:
            delete_link(ln)
        for ns in reversed(made):
            ns.delete()


def test_healthy_path_has_no_loss(pair: Pair) -> None:
    r = measure(pair.a, pair.b, pair.ip_b, duration_s=4.0, rate_pps=1000)
    log.info("healthy: %s; sender max late %.1f ms", r.summary(), r.sender_max_late_ms)
    assert r.sent == 4000
    assert (r.lost, r.duplicated, r.reordered) == (0, 0, 0)
    # No loss, so no gap with losses; a busy 2-core machine may still delay a few packets
    # by some ms (kernel softirq deferred), which is not what this test is about.
    assert not [g for g in r.gaps if g.lost], r.summary()
    assert r.max_gap_ms < 100, r.summary()
    # Absolute schedule, no drift: 3999 spacings of 1 ms (plus any slots skipped after a
    # stall of the sender longer than its catch-up limit on a busy machine).
    assert r.duration_s == pytest.approx((r.sent - 1 + r.skipped_slots) / 1000, abs=0.005)


def _mac(ns: Netns, ifname: str) -> str:
    return json.loads(ns.ip("-j", "link", "show", ifname).stdout)[0]["address"]


def test_link_down_500ms_is_one_gap(pair: Pair) -> None:
    # Permanent neighbour entries: a carrier loss flushes learnt ARP entries, and the
    # kernel then retries ARP only every second (retrans_time), which would stretch the
    # outage to ~1 s. That is real, but here the link outage itself is under test.
    pair.a.ip("neigh", "replace", pair.ip_b, "lladdr", _mac(pair.b, pair.if_b), "dev", pair.if_a,
              "nud", "permanent")
    pair.b.ip("neigh", "replace", pair.ip_a, "lladdr", _mac(pair.a, pair.if_a), "dev", pair.if_b,
              "nud", "permanent")
    with Probe(pair.a, pair.b, pair.ip_b, rate_pps=1000) as p:
        time.sleep(1.0)  # steady stream before the failure
        pair.b.ip("link", "set", pair.if_b, "down")
        down_at = time.monotonic()
        time.sleep(0.5)  # the outage under test
        held = time.monotonic() - down_at
        pair.b.ip("link", "set", pair.if_b, "up")
        time.sleep(1.0)  # recovery
    r = p.result
    assert r is not None
    log.info("link down %.3f s: %s", held, r.summary())
    lossy = [g for g in r.gaps if g.lost]
    assert len(lossy) == 1, r.summary()  # one outage ...
    assert all(g.duration_ms < 100 for g in r.gaps if not g.lost), r.summary()  # ... no other
    g = lossy[0]
    assert g.duration_ms == pytest.approx(500, abs=100)
    assert g.duration_ms == pytest.approx(held * 1000, abs=100)
    assert g.start_s == pytest.approx(1.0, abs=0.3)
    assert r.lost == pytest.approx(500, abs=100)
    assert g.lost == r.lost
    assert r.max_gap_ms == g.duration_ms


def test_iperf3_tcp(pair: Pair) -> None:
    res = Iperf(pair.b, pair.a, pair.ip_b, duration_s=2).run()
    log.info("iperf3 tcp: %s", res.to_json())
    assert res.protocol == "tcp" and res.error is None
    assert res.throughput_mbps > 0 and res.bytes_received > 0
    assert res.retransmits is not None


def test_iperf3_udp_at_rate(pair: Pair) -> None:
    res = Iperf(pair.b, pair.a, pair.ip_b, duration_s=1, rate_mbps=5, udp=True).run()
    assert res.protocol == "udp"
    assert res.throughput_mbps == pytest.approx(5, rel=0.2)
    assert res.lost_packets is not None and res.loss_percent is not None


def test_probe_through_userspace_ovs(ovs_pair: Pair) -> None:
    r = measure(ovs_pair.a, ovs_pair.b, ovs_pair.ip_b, duration_s=3.0, rate_pps=1000)
    log.info("through OVS: %s", r.summary())
    assert r.sent == 3000
    # ovs-vswitchd forwards in user space and is shared by everything on the machine: on a
    # busy 2-core VM it adds delay spikes of 20-30 ms and, rarely, drops a burst (seen: 211
    # of 3000 while other sessions ran). This checks the probe works through it (checksums
    # with offloads off, ARP through the bridge); the numbers are logged, not judged.
    assert r.received >= 0.9 * r.sent, r.summary()


def test_probe_with_mininet_hosts() -> None:
    """The same probe with Mininet nodes (their popen runs via mnexec, no named netns)."""
    node = pytest.importorskip("mininet.node")
    link = pytest.importorskip("mininet.link")
    if shutil.which("mnexec") is None:
        pytest.skip("mnexec is not installed")
    hexs = secrets.token_hex(2)
    hosts = []
    try:
        for suffix in ("a", "b"):
            h = node.Host(f"ttr{hexs}{suffix}")
            registry.session().add_process(h.pid, f"mininet-shell-{h.name}")
            hosts.append(h)
        ha, hb = hosts
        link.Link(ha, hb)
        ha.setIP("10.79.0.1/24")
        hb.setIP("10.79.0.2/24")
        for h in hosts:
            h.cmd(f"ethtool -K {h.defaultIntf()} tx off rx off")
        r = measure(ha, hb, "10.79.0.2", duration_s=1.5, rate_pps=1000)
        assert r.sent == 1500 and r.lost == 0 and r.max_gap_ms < 100, r.summary()
        res = Iperf(hb, ha, "10.79.0.2", duration_s=1).run()
        assert res.throughput_mbps > 0
    finally:
        for h in hosts:
            pid = h.pid
            h.terminate()
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            registry.session().release("process", str(pid))


def test_start_failure_leaves_nothing(pair: Pair) -> None:
    """A destination address that is not local to the receiver's host is refused."""
    p = Probe(pair.a, pair.b, "10.77.0.9", rate_pps=100)
    with pytest.raises(Exception, match="Cannot assign requested address|not ready|exited"):
        p.start()
    assert p._sender is None  # the sender never started: nothing was sent to 10.77.0.9
    assert pair.b.pids() == [] and pair.a.pids() == []
