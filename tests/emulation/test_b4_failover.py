"""Leader election through a private ZooKeeper: killing the master controller or the leading
TE server hands over to the standby, and 1,000 packets/s probes lose nothing."""
from __future__ import annotations

import time
import uuid
from contextlib import contextmanager
from typing import Iterator

import pytest

from b4.deploy import B4Deployment
from b4.measure import reference_probe
from b4.model import load_wan
from routerlab.ovs import vsctl
from routerlab.traffic import Probe
from routerlab.expect import wait_for
from tests.emulation.conftest import assert_hitless


@pytest.fixture
def b4(tmp_path):
    from b4.zk import available

    why = available()
    if why:
        pytest.skip(f"ZooKeeper: {why}")
    dep = B4Deployment(load_wan("b4-example"), tmp_path, prefix=f"tb4{uuid.uuid4().hex[:4]}", ofc_replicas=2,
                       te_replicas=2, te_period=30.0)
    try:
        dep.start(converge_timeout=90)
        yield dep
    finally:
        dep.stop()


def _probes(b4):
    """An unaffected reference probe (hD -> hB over LPM; started first, stopped last) and
    probes of both flow groups."""
    hA = b4.net.host("hA")
    return [reference_probe(b4, set())] + \
        [Probe(hA, b4.net.host(h), b4.wan.hosts_of(s)[0].ip, rate_pps=1000) for h, s in (("hB", "B"), ("hC", "C"))]


@contextmanager
def _hitless(b4) -> Iterator[None]:
    """Run the block under `_probes`, from 0.5 s after they start; then every flow-group probe
    must be hitless against the reference over the block's window. (A block that fails skips
    the check: its own error is the one to see.)"""
    probes = _probes(b4)
    for p in probes:
        p.start()
    try:
        time.sleep(0.5)
        t0 = time.time()
        yield
    finally:
        results = [p.stop() for p in reversed(probes)][::-1]
    for r in results[1:]:
        assert_hitless(r, results[:1], (t0, time.time()))


def _switch_roles(b4, sw: str) -> dict[int, str]:
    """OVS's view: controller port -> role (master/slave/other) for one bridge."""
    out = {}
    for u in b4.net._controller_uuids(sw):
        target = vsctl("get", "Controller", u, "target").strip().strip('"')
        out[int(target.rsplit(":", 1)[1])] = vsctl("get", "Controller", u, "role").strip()
    return out


def test_controller_failover_loses_no_packet(b4):
    old = b4.ofc_master()
    standby = next(r for r in b4.ofcs if r is not old)
    # (OVS refreshes the Controller table's role column every few seconds)
    wait_for(lambda: _switch_roles(b4, "A") == {old.ofp_port: "master", standby.ofp_port: "slave"}, 20,
             what="switch A to report one master and one slave")
    with _hitless(b4):
        b4.kill(old)
        new = wait_for(lambda: b4.ofc_master(2), 20, what="the standby controller to become master")
        assert new is standby
        for sw in b4.wan.config.switches:
            wait_for(lambda sw=sw: _switch_roles(b4, sw).get(standby.ofp_port) == "master", 20,
                     what=f"{sw} to see the new master")
        assert b4.wait_converged(30)
        # the new master took over the installed TE state: toggling TE still works through it
        b4.te(False)
        assert b4.wait_converged(20)
        b4.te(True)
        assert b4.wait_converged(20)
        time.sleep(0.5)


def test_te_server_failover_loses_no_packet(b4):
    old = b4.te_leader()
    standby = next(r for r in b4.tes if r is not old)
    session = b4.status()["session"]
    with _hitless(b4):
        b4.kill(old)
        new = wait_for(lambda: b4.te_leader(2), 20, what="the standby TE server to lead")
        assert new is standby
        assert b4.wait_converged(30)
        st = b4.status()
        assert st["session"] > session and st["dirty"] == 0
        # same labels as before: the database carried the ids over, so nothing was re-installed
        time.sleep(0.5)
