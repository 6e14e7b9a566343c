"""The daemon drivers against real FRR, BIRD, GoBGP and ExaBGP in namespaces (root).

Each test builds its own namespaces under a unique ``tdmn-XXXX-`` prefix, starts real
daemons through the drivers, polls their normalized status with generous deadlines, and
tears everything down in fixtures that run even when the test fails.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Iterator

import pytest

from routerlab import registry
from routerlab.daemons import (BgpNeighbor, BirdDaemon, Daemon, DaemonError, ExabgpDaemon,
                               FrrDaemon, GobgpDaemon, Interface, Network, Policy, PolicyRule,
                               PrefixMatch, RouterSpec, driver_for)
from routerlab.expect import wait_for
from routerlab.netns import Netns, create_veth

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, routing daemons)"),
]
log = logging.getLogger(__name__)

NEEDED = {"frr": "/usr/lib/frr/zebra", "bird": "bird", "gobgp": "gobgpd", "exabgp": "exabgp"}


def _need(*impls: str) -> None:
    for impl in impls:
        exe = NEEDED[impl]
        if not (os.path.exists(exe) if exe.startswith("/") else shutil.which(exe)):
            pytest.skip(f"{impl} is not installed ({exe})")


class Lab:
    """Namespaces, veths and daemons of one test, all removed by `close()`."""

    def __init__(self, run_root: Path):
        self.tag = f"tdmn-{secrets.token_hex(2)}"
        self.run_root = run_root
        self.namespaces: dict[str, Netns] = {}
        self.daemons: list[Daemon] = []

    def ns(self, name: str) -> Netns:
        if name not in self.namespaces:
            self.namespaces[name] = Netns.create(f"{self.tag}-{name}")
        return self.namespaces[name]

    def link(self, a: str, if_a: str, b: str, if_b: str) -> None:
        create_veth(if_a, if_b, ns_a=self.ns(a), ns_b=self.ns(b))

    def start(self, daemon: Daemon, where: str) -> Daemon:
        self.daemons.append(daemon)
        daemon.start(self.ns(where), self.run_root / daemon.spec.name)
        return daemon

    def close(self) -> None:
        pids = [pid for d in self.daemons for pid in d.pids.values()]
        for d in reversed(self.daemons):
            try:
                d.stop()
            except Exception as e:  # keep tearing down
                log.warning("stopping %s: %s", d, e)
        for ns in self.namespaces.values():
            ns.delete()
        assert not any(ns.exists() for ns in self.namespaces.values())
        assert not [p for p in pids if registry.proc_start_time(p) is not None], \
            "daemon processes survived stop()"


@pytest.fixture
def lab() -> Iterator[Lab]:
    # Short paths: FRR's and BIRD's unix sockets must fit in 108 bytes.
    root = Path("/run/routerlab/tests") / f"tdmn-{secrets.token_hex(3)}"
    registry.session().add("dir", str(root))
    root.mkdir(parents=True)
    lb = Lab(root)
    try:
        yield lb
    finally:
        try:
            lb.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
            registry.session().release("dir", str(root))


def fib(ns: Netns) -> list[dict]:
    """The namespace's kernel FIB (`ip -j route show`)."""
    return json.loads(ns.run(["ip", "-j", "route", "show"]).stdout or "[]")


def fib_prefix(r: dict) -> str:
    dst = r["dst"]
    return dst if "/" in dst else f"{dst}/32"


# ----------------------------------------------------------------------------------------
# (1) eBGP triangle: FRR (AS65001) - BIRD (AS65002) - GoBGP (AS65003)
# ----------------------------------------------------------------------------------------

P1, P2, P3 = "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24"


def test_ebgp_triangle_frr_bird_gobgp(lab: Lab) -> None:
    """Every pair of implementations peers, every router learns the two other prefixes, and
    one policy per implementation takes visible effect."""
    _need("frr", "bird", "gobgp")
    lab.link("r1", "r1-r2", "r2", "r2-r1")
    lab.link("r2", "r2-r3", "r3", "r3-r2")
    lab.link("r3", "r3-r1", "r1", "r1-r3")
    r1 = RouterSpec(
        "r1", "10.255.0.1", 65001, loopback="10.255.0.1/32",
        interfaces=[Interface("r1-r2", "10.0.12.1/24"), Interface("r1-r3", "10.0.13.1/24")],
        bgp_neighbors=[BgpNeighbor("10.0.12.2", 65002, description="r2", export_policy="PREPEND2"),
                       BgpNeighbor("10.0.13.3", 65003, description="r3")],
        networks=[Network(P1)],
        # FRR: make r2 prefer the path to P1 through r3 (65003 65001 beats 65001 65001 65001)
        policies=[Policy("PREPEND2", [PolicyRule([PrefixMatch(P1)], prepend=2)])])
    r2 = RouterSpec(
        "r2", "10.255.0.2", 65002, loopback="10.255.0.2/32",
        interfaces=[Interface("r2-r1", "10.0.12.2/24"), Interface("r2-r3", "10.0.23.2/24")],
        bgp_neighbors=[BgpNeighbor("10.0.12.1", 65001, description="r1"),
                       BgpNeighbor("10.0.23.3", 65003, description="r3", export_policy="NO_P2")],
        networks=[Network(P2)],
        # BIRD: hide its own prefix from r3, which must then learn it through r1
        policies=[Policy("NO_P2", [PolicyRule([PrefixMatch(P2)], action="reject")])])
    r3 = RouterSpec(
        "r3", "10.255.0.3", 65003, loopback="10.255.0.3/32",
        interfaces=[Interface("r3-r2", "10.0.23.3/24"), Interface("r3-r1", "10.0.13.3/24")],
        bgp_neighbors=[BgpNeighbor("10.0.23.2", 65002, description="r2"),
                       BgpNeighbor("10.0.13.1", 65001, description="r1", import_policy="MED42")],
        networks=[Network(P3)],
        # GoBGP: tag what it learns from r1 with MED 42
        policies=[Policy("MED42", [PolicyRule([PrefixMatch("0.0.0.0/0", le=32)], set_med=42)])])
    t0 = time.monotonic()
    frr = lab.start(FrrDaemon(r1), "r1")
    bird = lab.start(BirdDaemon(r2), "r2")
    gobgp = lab.start(GobgpDaemon(r3), "r3")

    def all_established() -> bool:
        return all(len(d.bgp_sessions()) == 2 and all(s.established for s in d.bgp_sessions())
                   for d in (frr, bird, gobgp))

    wait_for(all_established, 60, what="all six BGP sessions Established")
    t_est = time.monotonic() - t0

    def converged() -> bool:
        b = {r.prefix: r for r in bird.routes() if r.protocol == "bgp" and r.selected}
        g = {r.prefix: r for r in gobgp.routes() if r.selected}
        f = {r.prefix: r for r in frr.routes() if r.protocol == "bgp" and r.selected}
        return ({P2, P3} <= set(f) and {P1, P3} <= set(b) and {P1, P2} <= set(g)
                and b[P1].nexthops[0].address == "10.0.23.3"   # FRR's prepend took effect
                and g[P2].nexthops[0].address == "10.0.13.1")  # BIRD's reject took effect
    wait_for(converged, 60, what="every router selecting the expected BGP routes")
    log.info("triangle: Established after %.1fs, converged after %.1fs", t_est,
             time.monotonic() - t0)

    # GoBGP's import policy set the MED on what r1 sent
    g = {r.prefix: r for r in gobgp.routes() if r.selected}
    assert g[P1].metric == 42 and g[P1].nexthops[0].address == "10.0.13.1"
    assert g[P3].nexthops[0].address is None  # its own
    # sessions are normalized the same way by all three
    for d, peers in ((frr, {"10.0.12.2": 65002, "10.0.13.3": 65003}),
                     (bird, {"10.0.12.1": 65001, "10.0.23.3": 65003}),
                     (gobgp, {"10.0.23.2": 65002, "10.0.13.1": 65001})):
        ss = {s.peer: s for s in d.bgp_sessions()}
        assert {p: s.peer_asn for p, s in ss.items()} == peers, d
        for s in ss.values():
            assert s.state == "Established" and s.uptime is not None and s.uptime >= 0
            assert s.established_count is not None and s.established_count >= 1, (d, s)
            assert s.prefixes_received is not None, (d, s)
            if d is not gobgp or s.peer != "10.0.23.2":  # r2 sends r3 nothing (policy, split)
                assert s.prefixes_received >= 1, (d, s)
    # FRR and BIRD put the learned routes into their kernel FIBs
    f1 = {fib_prefix(r): r for r in fib(lab.ns("r1"))}
    assert f1[P2]["protocol"] == "bgp" and f1[P3]["protocol"] == "bgp"
    f2 = {fib_prefix(r): r for r in fib(lab.ns("r2"))}
    assert f2[P1]["protocol"] == "bird" and f2[P1]["gateway"] == "10.0.23.3"
    assert f2[P3]["protocol"] == "bird"
    # GoBGP writes no FIB
    assert not [r for r in fib(lab.ns("r3")) if fib_prefix(r) in (P1, P2)]


# ----------------------------------------------------------------------------------------
# (2) ExaBGP injects 10,000 prefixes into a BIRD router
# ----------------------------------------------------------------------------------------

def test_exabgp_injects_10000_prefixes_into_bird_fib(lab: Lab) -> None:
    _need("bird", "exabgp")
    lab.link("inj", "inj-r", "r", "r-inj")
    inj = lab.start(ExabgpDaemon(RouterSpec(
        "inj", "10.255.0.9", 65009, interfaces=[Interface("inj-r", "10.0.9.1/24")],
        bgp_neighbors=[BgpNeighbor("10.0.9.2", 65002, description="r")],
        networks=[Network("192.0.2.0/24", med=5, as_path=(65010,))])), "inj")
    bird = lab.start(BirdDaemon(RouterSpec(
        "r", "10.255.0.2", 65002, loopback="10.255.0.2/32",
        interfaces=[Interface("r-inj", "10.0.9.2/24")],
        bgp_neighbors=[BgpNeighbor("10.0.9.1", 65009, description="inj")],
        networks=[Network("198.51.100.0/24")])), "r")
    wait_for(lambda: (s := inj.bgp_session("10.0.9.2")) and s.established
             and "198.51.100.0/24" in inj.route_prefixes(), 30, what="ExaBGP session up")
    block = ipaddress.IPv4Network("20.0.0.0/10")
    prefixes = [str(n) for n in block.subnets(new_prefix=24)][:10_000]
    t0 = time.monotonic()
    commands = inj.announce(prefixes)
    assert commands <= 20  # batched, not one command per prefix

    def injected_in_fib() -> int:
        out = lab.ns("r").run(["ip", "-j", "route", "show", "proto", "bird"]).stdout
        return sum(1 for r in json.loads(out or "[]")
                   if "/" in r["dst"] and ipaddress.IPv4Network(r["dst"]).subnet_of(block))

    wait_for(lambda: injected_in_fib() == 10_000, 90, interval=0.5,
             what="10,000 injected prefixes in the BIRD router's kernel FIB")
    log.info("10,000 prefixes announced -> kernel FIB in %.1fs", time.monotonic() - t0)
    s = bird.bgp_session("10.0.9.1")
    assert s is not None and s.prefixes_received == 10_001  # + the config's static route
    sel = {r.prefix for r in bird.routes() if r.protocol == "bgp" and r.selected}
    assert len(sel) == 10_001
    # withdrawal of half of them also reaches the FIB
    inj.withdraw(prefixes[:5_000])
    wait_for(lambda: injected_in_fib() == 5_000, 60, interval=0.5, what="5,000 withdrawn")
    assert inj.acks()[1] == 0  # ExaBGP acknowledged every command without error


# ----------------------------------------------------------------------------------------
# (3) OSPF between FRR and BIRD
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("network", ["point-to-point", "broadcast"])
def test_ospf_frr_bird_full_and_loopbacks_in_fib(lab: Lab, network: str) -> None:
    _need("frr", "bird")
    lab.link("a", "a-b", "b", "b-a")
    frr = lab.start(FrrDaemon(RouterSpec(
        "a", "10.255.1.1", loopback="10.255.1.1/32",
        interfaces=[Interface("a-b", "10.1.12.1/24", ospf_area="0", ospf_network=network)])), "a")
    bird = lab.start(BirdDaemon(RouterSpec(
        "b", "10.255.1.2", loopback="10.255.1.2/32",
        interfaces=[Interface("b-a", "10.1.12.2/24", ospf_area="0.0.0.0", ospf_network=network,
                              ospf_cost=7)])), "b")
    t0 = time.monotonic()

    def full(d: Daemon, rid: str) -> bool:
        return any(n.router_id == rid and n.state == "Full" and n.interface in ("a-b", "b-a")
                   for n in d.ospf_neighbors())

    wait_for(lambda: full(frr, "10.255.1.2") and full(bird, "10.255.1.1"), 40,
             what="OSPF Full on both sides")
    t_full = time.monotonic() - t0

    def loopbacks_in_fibs() -> bool:
        fa = {fib_prefix(r): r for r in fib(lab.ns("a"))}
        fb = {fib_prefix(r): r for r in fib(lab.ns("b"))}
        return (fa.get("10.255.1.2/32", {}).get("protocol") == "ospf"
                and fb.get("10.255.1.1/32", {}).get("protocol") == "bird")
    wait_for(loopbacks_in_fibs, 40, what="each loopback in the other's kernel FIB")
    log.info("OSPF %s: Full after %.1fs, loopbacks in FIB after %.1fs", network, t_full,
             time.monotonic() - t0)
    ra = {r.prefix: r for r in frr.routes() if r.protocol == "ospf" and r.selected}
    assert ra["10.255.1.2/32"].nexthops[0].address == "10.1.12.2"
    assert ra["10.255.1.2/32"].metric == 10  # FRR's own interface cost (a stub adds 0)
    rb = {r.prefix: r for r in bird.routes() if r.protocol == "ospf" and r.selected}
    assert rb["10.255.1.1/32"].nexthops[0] .address == "10.1.12.1"
    assert rb["10.255.1.1/32"].nexthops[0].interface == "b-a"
    assert rb["10.255.1.1/32"].metric == 7
    nb = frr.ospf_neighbors()[0]
    assert nb.address == "10.1.12.2" and nb.uptime is not None


# ----------------------------------------------------------------------------------------
# (4) every rendering passes the daemon's own checker; broken configurations and failing starts report the daemon's own words
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("impl", ["frr", "bird", "gobgp", "exabgp"])
def test_rendered_configs_pass_the_daemons_own_checker(impl: str) -> None:
    """The unit tests' full-feature specs, checked by `-C` / `bird -p` / `gobgpd -d` /
    `exabgp --test` (the renderings were written for these exact versions)."""
    _need(impl)
    from tests.unit.test_daemon_render import bgp_only_spec, full_spec

    if impl in ("frr", "bird"):
        driver_for(impl)(full_spec()).validate()
    spec = bgp_only_spec()
    if impl == "exabgp":  # ExaBGP applies no policies
        spec.policies = []
        for nb in spec.bgp_neighbors:
            nb.import_policy = nb.export_policy = "ACCEPT_ALL"
    driver_for(impl)(spec).validate()


BROKEN = {
    "frr": ("router bgp 65007\n neighbor 10.0.0.2 remote-az 65008\n", "remote-az"),
    "bird": ("protocol bgp broken {\n  neighbour 10.0.0.2 as 65008;\n}\n", "syntax error"),
    "gobgp": ('[[neighbors]]\n  [neighbors.config]\n    neighbor-adress = "10.0.0.3"\n',
              "invalid keys: neighbor-adress"),
    "exabgp": ("neighbor 10.0.0.3 {\n  peer-az 65008;\n}\n", 'invalid keyword "peer-az"'),
}


@pytest.mark.parametrize("impl", sorted(BROKEN))
def test_broken_config_reports_daemon_error(lab: Lab, impl: str) -> None:
    _need(impl)
    junk, words = BROKEN[impl]
    spec = RouterSpec("bad", "10.255.0.7", 65007,
                      interfaces=[Interface("bad-x", "10.0.0.1/24")],
                      bgp_neighbors=[BgpNeighbor("10.0.0.2", 65008)], overrides={impl: junk})
    d = driver_for(impl)(spec)
    with pytest.raises(DaemonError) as ei:
        d.validate()
    msg = str(ei.value)
    assert "\n" not in msg and words in msg, msg
    if impl == "bird":
        assert "bird.conf:" in msg  # BIRD's own file:line:column
    # start() refuses the same config before launching anything
    lab.link("bad", "bad-x", "peer", "peer-x")
    with pytest.raises(DaemonError, match=words.split()[0]):
        lab.start(driver_for(impl)(spec), "bad")
    assert not lab.daemons[-1].pids


def test_failing_start_reports_daemon_error(lab: Lab) -> None:
    """A daemon that dies or cannot work at start raises DaemonError with its own output."""
    _need("frr", "bird", "gobgp")
    spec = RouterSpec("g", "10.255.0.8", 65008)
    lab.start(GobgpDaemon(spec), "x")
    # a second GoBGP in the same namespace: its API port is taken
    with pytest.raises(DaemonError, match="already in use"):
        lab.start(GobgpDaemon(RouterSpec("g2", "10.255.0.9", 65009)), "x")
    # FRR's bgpd cannot bind port 179 (GoBGP holds it): bgpd's own log line
    with pytest.raises(DaemonError, match="bgpd.log: .*bind: Address already in use"):
        lab.start(FrrDaemon(RouterSpec("f", "10.255.0.10", 65010)), "x")
    assert not lab.daemons[-1].pids  # what did start was stopped again
    # BIRD passes `bird -p` but exits at start: it cannot open a log file (only opened then)
    b = BirdDaemon(RouterSpec("b", "10.255.0.11", 65011,
                              overrides={"bird": 'log "/nonexistent-tdmn/x.log" all;'}))
    b.validate()
    with pytest.raises(DaemonError) as ei:
        lab.start(b, "y")
    msg = str(ei.value)
    assert "exited during start" in msg and "Unable to open log file" in msg, msg
    assert not b.pids
