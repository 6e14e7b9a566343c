"""Live migration of an FRR virtual router (zebra, staticd, ospfd, bgpd as ONE process tree)
with the stock CRIU setup installs, under a 1,000 pps probe.

The lab is test_vroom_migrate's (tests/emulation/vroomlab.py) with r1 on FRR: OSPF with n1
(BIRD) and n2 (FRR), eBGP with ext (ExaBGP). zebra's rtnetlink groups above 32 are dropped
right before the dump and added back after the restore (vroom.cpmove.netlink) unless the
CRIU dumps them itself. Checked: A -> B -> A loses no packet; every adjacency and session
is kept with one BGP connection; zebra's netlink memberships and ack flags are the same
after each move; a prefix first advertised after the move reaches r1's kernel FIB and B's
bridge; a dump refused because of a netlink event queued at the freeze is retried, and one
refused every time rolls back with r1 still routing at the source, its memberships back.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import pytest

from routerlab import criu as rlcriu
from routerlab import registry
from routerlab.expect import wait_for
from routerlab.ovs import dump_flows
from tests.emulation.vroomlab import Lab, assert_left, explain_loss, lab_fixture, probe
from vroom.cpmove import netlink
from vroom.migrate import Migration, migrate
from vroom.phases import MigrationFailed

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, OVS, CRIU)"),
    pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed"),
    pytest.mark.skipif(not os.path.exists("/usr/lib/frr/zebra"), reason="FRR is not installed"),
    pytest.mark.skipif(rlcriu.find_criu() is None, reason="no CRIU: run scripts/get-criu.sh"),
]
log = logging.getLogger(__name__)

FREEZES: list[dict] = []  # every move's timings, logged at the end of the module


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    yield from lab_fixture("tvf", impl="frr")
    for f in FREEZES:
        log.info("FRR move %s", f)


def zebra_netlink(lab: Lab) -> dict[int, tuple[list[int], dict[str, int]]]:
    """{fd: (groups, ack flags)} of zebra's netlink sockets, as the kernel has them."""
    socks = netlink.sockets_of(lab.r1.daemon.pids["zebra"])
    return {fd: (sorted(s.groups), dict(s.flags)) for fd, s in socks.items()}


def other(lab: Lab) -> str:
    return "A" if lab.r1.pr.name == "B" else "B"


def record(rep) -> None:
    cp = rep.cp
    FREEZES.append({"move": f"{rep.source}->{rep.target}", "freeze_s": round(cp.freeze_s, 3),
                    "dump_s": round(cp.dump_s, 3), "restore_s": round(cp.restore_s, 3),
                    "image_mb": round(cp.image_bytes / 1e6, 1), "attempts": cp.dump_attempts})
    log.info("%s; %s", rep.summary(), FREEZES[-1])


def test_frr_vr_moves_a_b_a_without_loss_or_reset(lab: Lab, tmp_path) -> None:
    r1 = lab.r1
    assert r1.daemon.tree_root is not None and set(r1.daemon.pids) >= {"zebra", "ospfd", "bgpd"}
    lab.wait_path()
    before = lab.wait_converged(10, "a converged network")
    nl_before = zebra_netlink(lab)
    assert any(g > 32 for groups, _ in nl_before.values() for g in groups), nl_before
    # zebra probes ospfd's neighbours (entries "proto zebra"): the data plane forwards to them
    # instead of punting (a punt into the tunnel after the freeze, routed at B and sent back
    # through the tunnel it came in on, was dropped)
    assert r1.pr.hypervisors["r1"].sync().unresolved == 0, r1.ns.ip("-4", "neigh", "show").stdout
    home = r1.pr.name
    for target in (other(lab), home):
        with probe(lab) as p:
            rep = migrate(lab.net, "r1", target)
            after = lab.wait_converged(10, f"adjacencies after the move to {target}")
            lab.wait_path(10)
        res = p.result
        record(rep)
        assert rep.ok and r1.pr.name == target
        assert res.lost == 0, explain_loss(lab, res, tmp_path, f"FRR move to {target}")
        assert rep.freeze_s is not None and rep.freeze_s < 4.0, rep.cp.to_json()
        # one BGP connection all along, on both sides
        assert after["ext_bgp_ups"] == before["ext_bgp_ups"]
        assert after["r1_bgp_ups"] == before["r1_bgp_ups"]
        assert after["n2_ospf_uptime"] >= before["n2_ospf_uptime"]
        # zebra's netlink sockets are as they were (groups above 32, EXT_ACK/CAP_ACK)
        assert zebra_netlink(lab) == nl_before, rep.cp.to_json()
        if not rlcriu.features()["netlink_groups_gt32"].ok:
            assert any(x.startswith("zebra:") for x in rep.cp.netlink_dropped), rep.cp.to_json()
        assert rep.cp.joined, "ospfd's multicast groups were not re-joined"


def test_prefix_advertised_after_the_move_reaches_fib_and_bridge(lab: Lab) -> None:
    net, r1 = lab.net, lab.r1
    lab.wait_converged(10, "a converged network")
    target = other(lab)
    rep = migrate(net, "r1", target)
    record(rep)
    assert rep.ok and r1.pr.name == target
    prefix = "10.201.0.0/24"
    lab.ext.announce([prefix])
    try:
        wait_for(lambda: prefix in r1.ns.ip("-4", "route", "show", prefix).stdout, 20,
                 what=f"{prefix} in r1's kernel FIB at {target}")
        bridge = net.prs[target].bridge_name
        wait_for(lambda: any(f"nw_dst={prefix}" in f.match for f in dump_flows(bridge)), 20,
                 what=f"{prefix}'s flow on {target}'s bridge")
        n1 = net.namespaces["n1"]
        wait_for(lambda: n1.run(["ping", "-c1", "-W1", "10.201.0.1"], check=False).returncode == 0,
                 10, what="n1 -> 10.201.0.1 through r1")
    finally:
        lab.ext.withdraw([prefix])


class Churn:
    """Address events in a namespace, back to back, so that zebra's netlink socket has an
    unread message when CRIU freezes it ("has data to read"). Stopped on exit."""

    def __init__(self, ns_path: str, n: int = 200):
        self.batch = tempfile.NamedTemporaryFile("w", prefix="routerlab-churn-", suffix=".ip")
        for _ in range(n):
            self.batch.write("addr add 10.254.99.1/32 dev lo\naddr del 10.254.99.1/32 dev lo\n")
        self.batch.flush()
        self.p: subprocess.Popen | None = None
        self.ns_path = ns_path

    def start(self) -> None:
        if self.p is None:
            self.p = subprocess.Popen(
                ["nsenter", f"--net={self.ns_path}", "--", "sh", "-c",
                 f"while :; do ip -force -batch {self.batch.name}; done"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def stop(self) -> None:
        if self.p is not None:
            os.killpg(self.p.pid, 9)
            self.p.wait(10)
            self.p = None

    def close(self) -> None:
        self.stop()
        self.batch.close()


@pytest.fixture
def churn(lab: Lab) -> Iterator[Churn]:
    c = Churn(str(lab.r1.ns.path))
    try:
        yield c
    finally:
        c.close()
        if lab.r1.ns is not None:
            lab.r1.ns.ip("addr", "del", "10.254.99.1/32", "dev", "lo", check=False)


def test_dump_refused_at_the_freeze_is_retried(lab: Lab, churn: Churn, tmp_path) -> None:
    r1 = lab.r1
    before = lab.wait_converged(10, "a converged network")
    target = other(lab)

    def first_attempt_only(m: Migration) -> None:
        churn.start() if m.dump_attempt == 1 else churn.stop()

    with probe(lab) as p:
        rep = migrate(lab.net, "r1", target, hooks={"before-dump": first_attempt_only})
        after = lab.wait_converged(10, "adjacencies after the retried move")
    record(rep)
    log.info("dump errors: %s", rep.cp.dump_errors)
    assert rep.ok and r1.pr.name == target
    assert rep.cp.dump_attempts >= 2 and "data to read" in rep.cp.dump_errors[0], rep.cp.to_json()
    assert p.result.lost == 0, explain_loss(lab, p.result, tmp_path, "retried dump")
    assert after["ext_bgp_ups"] == before["ext_bgp_ups"]


def test_dump_refused_every_time_rolls_back_with_source_routing(lab: Lab, churn: Churn,
                                                               tmp_path) -> None:
    net, r1 = lab.net, lab.r1
    before = lab.wait_converged(10, "a converged network")
    lab.wait_path()
    home, target = r1.pr.name, other(lab)
    nl_before = zebra_netlink(lab)
    pids_before = dict(r1.daemon.pids)
    with probe(lab) as p:
        with pytest.raises(MigrationFailed) as ei:
            migrate(net, "r1", target, hooks={"before-dump": lambda m: churn.start()})
        churn.stop()
        after = lab.wait_converged(10, "adjacencies after the rollback")
        lab.wait_path(10)
    err = ei.value
    log.info("failed as wanted: %s", err)
    assert err.step == "control-plane-migration" and err.rolled_back and "dump" in str(err)
    assert "data to read" in str(err)
    assert r1.pr.name == home and r1.daemon.is_running() and r1.daemon.pids == pids_before
    assert zebra_netlink(lab) == nl_before  # memberships back at the source
    assert_left(net, "r1", target)
    assert p.result.lost == 0, explain_loss(lab, p.result, tmp_path, "dump rollback")
    assert after["ext_bgp_ups"] == before["ext_bgp_ups"]
    # and it still moves afterwards
    rep = migrate(net, "r1", target)
    record(rep)
    assert rep.ok and r1.pr.name == target
    assert zebra_netlink(lab) == nl_before
    lab.wait_converged(10, "adjacencies after the move")


def test_post_copy_restore_keeps_routing(lab: Lab, tmp_path) -> None:
    """Restored with `criu restore --lazy-pages` (what a move does with a big table, forced
    here on a small one): the daemon runs before its memory is back, the pages follow from
    `criu lazy-pages`; no packet lost, no session reset, and the daemon works afterwards."""
    r1 = lab.r1
    lab.wait_path()
    before = lab.wait_converged(10, "a converged network")
    target = other(lab)
    with probe(lab) as p:
        rep = migrate(lab.net, "r1", target, postcopy="on")
        after = lab.wait_converged(10, f"adjacencies after the move to {target}")
        lab.wait_path(10)
    res = p.result
    record(rep)
    assert rep.ok and r1.pr.name == target
    assert rep.cp.postcopy, rep.cp.to_json()
    # every page delivered: the lazy-pages server exited and its record was released
    left = [r for r in registry.live_resources(registry.session().path)
            if r.get("name") == "criu-lazy-pages"]
    assert not left, left
    assert res.lost == 0, explain_loss(lab, res, tmp_path, "post-copy move")
    assert after["ext_bgp_ups"] == before["ext_bgp_ups"]
    assert after["r1_bgp_ups"] == before["r1_bgp_ups"]
    assert after["n2_ospf_uptime"] >= before["n2_ospf_uptime"]
    # every page arrived: each of the tree's programs answers and runs on
    assert r1.daemon.is_running(), r1.daemon.pids
    assert r1.daemon.vtysh_json("show ip route summary json").get("routesTotal", 0) > 0
