"""Rendering FRR, BIRD, GoBGP and ExaBGP configuration from one RouterSpec (no root).

The assertions look for the lines that carry the spec's meaning; the emulation tests check
the same renderings with each daemon's own checker and with live sessions.
"""
from __future__ import annotations

import tomllib

import pytest

from routerlab.daemons import (DAEMONS, REJECT_ALL, BgpNeighbor, BirdDaemon, DaemonError,
                               ExabgpDaemon, FrrDaemon, GobgpDaemon, Interface, Network, Policy,
                               PolicyRule, PrefixMatch, RouterSpec, SpecError, StaticRoute,
                               driver_for)
from routerlab.daemons.bird import bgp_protocol_name
from routerlab.daemons.gobgp import lean_go_runtime
from routerlab.daemons.spec import area_id, discard_prefixes


def full_spec() -> RouterSpec:
    """A router that uses every feature the spec has."""
    return RouterSpec(
        name="r1", router_id="10.255.0.1", asn=65001, loopback="10.255.0.1/32",
        interfaces=[
            Interface("r1-eth0", "10.0.12.1/24", ospf_area="0", ospf_cost=20),
            Interface("r1-eth1", "10.0.13.1/30", ospf_area="0.0.0.1", ospf_network="point-to-point"),
            Interface("r1-eth2", "172.16.0.1/24", ospf_area="0", ospf_passive=True),
            Interface("r1-eth3", "10.0.19.1/24"),
        ],
        ospf_hello=1, ospf_dead=4,
        bgp_neighbors=[
            BgpNeighbor("10.0.12.2", 65002, description="r2", import_policy="IN_R2",
                        export_policy="OUT_R2"),
            BgpNeighbor("10.255.0.3", 65001, local_address="10.255.0.1", description="r3 ibgp",
                        next_hop_self=True, keepalive=5, hold=15),
            BgpNeighbor("10.9.9.9", 65009, local_address="10.0.19.1", ebgp_multihop=2,
                        passive=True, export_policy=REJECT_ALL),
        ],
        networks=[Network("192.0.2.0/24"), Network("172.16.0.0/24", discard=False)],
        static_routes=[StaticRoute("10.50.0.0/16", "10.0.12.2"), StaticRoute("10.60.0.0/16")],
        policies=[
            Policy("IN_R2", [PolicyRule([PrefixMatch.parse("198.51.100.0/24 le 28")],
                                        set_local_pref=200),
                             PolicyRule([PrefixMatch("10.0.0.0/8", ge=16, le=24)], action="reject")],
                   default="accept"),
            Policy("OUT_R2", [PolicyRule([PrefixMatch("192.0.2.0/24")], set_med=50, prepend=2)],
                   default="reject"),
        ],
        bgp_redistribute=("connected",),
        graceful_restart=True,
    )


def bgp_only_spec() -> RouterSpec:
    """What a GoBGP/ExaBGP router can be: BGP with policies and originated networks."""
    return RouterSpec(
        name="g1", router_id="10.255.0.7", asn=65007,
        interfaces=[Interface("g1-eth0", "10.0.78.7/24")],
        bgp_neighbors=[BgpNeighbor("10.0.78.8", 65008, description="peer", import_policy="IN",
                                   export_policy="OUT"),
                       BgpNeighbor("10.0.78.9", 65007, next_hop_self=True)],
        networks=[Network("203.0.113.0/24", med=7, as_path=(65100,))],
        policies=[Policy("IN", [PolicyRule([PrefixMatch.parse("10.0.0.0/8 ge 16 le 24")],
                                           set_local_pref=300)], default="reject"),
                  Policy("OUT", [PolicyRule([], prepend=3)])],
    )


# ----- spec -----

def test_prefix_match_notation_and_bounds() -> None:
    m = PrefixMatch.parse("10.0.0.0/8 ge 16 le 24")
    assert (m.prefix, m.ge, m.le) == ("10.0.0.0/8", 16, 24) and m.bounds() == (16, 24)
    assert PrefixMatch.parse("10.0.0.0/8 le 24").bounds() == (8, 24)
    assert PrefixMatch.parse("10.0.0.0/8 ge 20").bounds() == (20, 32)
    assert PrefixMatch("192.0.2.0/24").bounds() == (24, 24)
    assert m.matches("10.1.2.0/24") and not m.matches("10.1.0.0/8") and not m.matches("11.0.0.0/16")
    with pytest.raises(SpecError):
        PrefixMatch.parse("10.0.0.0/8 xx 3")


def test_spec_validation_catches_inconsistencies() -> None:
    full_spec().validate()
    with pytest.raises(SpecError, match="unknown policy"):
        RouterSpec("x", "1.1.1.1", 1, bgp_neighbors=[BgpNeighbor("1.1.1.2", 2, import_policy="NOPE")]).validate()
    with pytest.raises(SpecError, match="router id"):
        RouterSpec("x", "1.1.1").validate()
    with pytest.raises(SpecError, match="asn"):
        RouterSpec("x", "1.1.1.1", bgp_neighbors=[BgpNeighbor("1.1.1.2", 2)]).validate()
    with pytest.raises(SpecError, match="hello"):
        RouterSpec("x", "1.1.1.1", ospf_hello=4, ospf_dead=4).validate()
    with pytest.raises(SpecError, match="keepalive/hold"):
        RouterSpec("x", "1.1.1.1", 1, bgp_neighbors=[BgpNeighbor("1.1.1.2", 2, keepalive=9, hold=9)]).validate()
    with pytest.raises(SpecError, match="listed twice"):
        RouterSpec("x", "1.1.1.1", interfaces=[Interface("a", "10.0.0.1/24")] * 2).validate()
    with pytest.raises(SpecError):
        RouterSpec("x", "1.1.1.1", 1, networks=[Network("10.0.0.1/24")]).validate()  # host bits


def test_spec_helpers() -> None:
    s = full_spec()
    assert area_id("0") == "0.0.0.0" and area_id(1) == "0.0.0.1" and area_id("0.0.0.2") == "0.0.0.2"
    assert s.local_address_for(s.bgp_neighbors[0]) == "10.0.12.1"  # from the shared subnet
    assert s.local_address_for(s.bgp_neighbors[1]) == "10.255.0.1"  # given
    assert discard_prefixes(s) == ["192.0.2.0/24", "10.60.0.0/16"]
    assert s.ospf_enabled and s.bgp_enabled and s.loopback_ip == "10.255.0.1"


def test_driver_for_and_registry_of_drivers() -> None:
    assert [c.implementation for c in DAEMONS] == ["frr", "bird", "gobgp", "exabgp"]
    assert driver_for("bird2") is BirdDaemon and driver_for("FRR") is FrrDaemon
    for cls in DAEMONS:
        assert cls.description and callable(cls.version)
    with pytest.raises(DaemonError, match="unknown routing daemon"):
        driver_for("quagga2")


# ----- FRR -----

def test_frr_render_per_daemon_files() -> None:
    files = FrrDaemon(full_spec()).render()
    assert set(files) == {"zebra.conf", "staticd.conf", "ospfd.conf", "bgpd.conf"}
    for text in files.values():
        assert "frr defaults traditional" in text and "hostname r1" in text
    st = files["staticd.conf"]
    assert "ip route 192.0.2.0/24 blackhole" in st and "ip route 10.60.0.0/16 blackhole" in st
    assert "ip route 10.50.0.0/16 10.0.12.2" in st
    assert "ip route 172.16.0.0/24 blackhole" not in st  # discard=False: must already exist


def test_frr_render_ospf() -> None:
    o = FrrDaemon(full_spec()).render()["ospfd.conf"]
    lines = o.splitlines()
    assert " ospf router-id 10.255.0.1" in lines
    assert " network 10.0.12.0/24 area 0.0.0.0" in lines
    assert " network 10.0.13.0/30 area 0.0.0.1" in lines
    assert " network 10.255.0.1/32 area 0.0.0.0" in lines  # loopback, not 127.0.0.0/8
    assert not any("10.0.19" in ln for ln in lines)  # no OSPF on r1-eth3
    blk = o.split("interface r1-eth0\n")[1].split("!")[0]
    assert " ip ospf hello-interval 1" in blk and " ip ospf dead-interval 4" in blk
    assert " ip ospf cost 20" in blk
    assert " ip ospf network point-to-point" in o.split("interface r1-eth1\n")[1].split("!")[0]
    assert " ip ospf passive" in o.split("interface r1-eth2\n")[1].split("!")[0]
    assert " ip ospf passive" in o.split("interface lo\n")[1].split("!")[0]
    assert "passive-interface" not in o  # deprecated in 8.4


def test_frr_render_bgp_and_policies() -> None:
    b = FrrDaemon(full_spec()).render()["bgpd.conf"]
    lines = b.splitlines()
    for want in ["router bgp 65001", " bgp router-id 10.255.0.1", " no bgp ebgp-requires-policy",
                 " bgp graceful-restart",
                 " neighbor 10.0.12.2 remote-as 65002", " neighbor 10.0.12.2 description r2",
                 " neighbor 10.0.12.2 timers 3 9", " neighbor 10.0.12.2 timers connect 5",
                 " neighbor 10.255.0.3 update-source 10.255.0.1", " neighbor 10.255.0.3 timers 5 15",
                 " neighbor 10.9.9.9 ebgp-multihop 2", " neighbor 10.9.9.9 passive",
                 "  network 192.0.2.0/24", "  network 172.16.0.0/24", "  redistribute connected",
                 "  neighbor 10.255.0.3 next-hop-self", "  neighbor 10.0.12.2 route-map RM_IN_R2 in",
                 "  neighbor 10.0.12.2 route-map RM_OUT_R2 out",
                 "  neighbor 10.9.9.9 route-map RM_REJECT_ALL out",
                 "ip prefix-list PL_IN_R2_0 seq 5 permit 198.51.100.0/24 le 28",
                 "ip prefix-list PL_IN_R2_1 seq 5 permit 10.0.0.0/8 ge 16 le 24",
                 "ip prefix-list PL_OUT_R2_0 seq 5 permit 192.0.2.0/24",
                 "route-map RM_IN_R2 permit 10", " set local-preference 200",
                 "route-map RM_IN_R2 deny 20", "route-map RM_IN_R2 permit 65535",
                 " set metric 50", " set as-path prepend 65001 65001",
                 "route-map RM_OUT_R2 deny 65535", "route-map RM_REJECT_ALL deny 65535"]:
        assert want in lines, want
    for nb in ("10.0.12.2", "10.255.0.3", "10.9.9.9"):
        assert f"  neighbor {nb} activate" in lines
    assert "route-map RM_ACCEPT_ALL" not in b  # accept-all needs no route-map


def test_frr_render_graceful_restart() -> None:
    """Grace-LSAs are opaque (type 9): ospfd needs `capability opaque` to send and flood them."""
    o = FrrDaemon(full_spec()).render()["ospfd.conf"]
    ospf = o.split("router ospf\n")[1].split("!")[0].splitlines()
    for want in (" capability opaque", " graceful-restart grace-period 120",
                 " graceful-restart helper enable"):
        assert want in ospf, want
    assert " bgp graceful-restart preserve-fw-state" in FrrDaemon(full_spec()).render()["bgpd.conf"]
    plain = full_spec()
    plain.graceful_restart = False
    files = FrrDaemon(plain).render()
    assert "capability opaque" not in files["ospfd.conf"]
    assert "graceful-restart" not in files["ospfd.conf"] + files["bgpd.conf"]


def test_frr_daemon_args_for_graceful_restart(tmp_path) -> None:
    """zebra -r keeps the FIB at exit; -K only for the start that follows a graceful stop."""
    d = FrrDaemon(full_spec())
    zebra = d._daemon_args("zebra", tmp_path / "r1", dryrun=False)
    assert "-r" in zebra and "-K" not in zebra
    d.gr_recover = True
    zebra = d._daemon_args("zebra", tmp_path / "r1", dryrun=False)
    assert zebra[zebra.index("-K") + 1] == "120"
    assert "-r" not in d._daemon_args("zebra", tmp_path / "r1", dryrun=True)  # the -C check
    plain = full_spec()
    plain.graceful_restart = False
    p = FrrDaemon(plain)
    p.gr_recover = True
    args = p._daemon_args("zebra", tmp_path / "r1") + p._daemon_args("ospfd", tmp_path / "r1")
    assert "-r" not in args and "-K" not in args and "-N" not in args


def test_frr_config_check_cannot_take_a_planned_restart(tmp_path) -> None:
    """`ospfd -C` reads and deletes the host's planned-restart state: as root the check runs
    with an empty /var/run/frr of its own (a private mount namespace)."""
    import os
    args = FrrDaemon(full_spec())._daemon_args("ospfd", tmp_path, dryrun=True)
    if os.geteuid() == 0:
        assert args[:3] == ["unshare", "--mount", "--propagation"]
        assert "mount -t tmpfs routerlab-check /var/run/frr" in args[args.index("-c") + 1]
        assert args[args.index("ospfd-check") + 1].endswith("/ospfd") and args[-3] == "-C"
    else:
        assert args[0].endswith("/ospfd")
    zebra = FrrDaemon(full_spec())._daemon_args("zebra", tmp_path, dryrun=True)
    assert zebra[0].endswith("/zebra")  # only ospfd keeps such state


def test_frr_overrides_appended() -> None:
    s = full_spec()
    s.overrides["frr"] = "bgp extra line"
    assert FrrDaemon(s).render()["bgpd.conf"].rstrip().endswith("bgp extra line")


# ----- BIRD -----

def test_bird_render_core_and_fib() -> None:
    c = BirdDaemon(full_spec()).render()["bird.conf"]
    assert "router id 10.255.0.1;" in c
    assert 'timeformat protocol "%s";' in c
    kern = c.split("protocol kernel kernel1 {")[1].split("\n}")[0]
    assert "export where source != RTS_DEVICE;" in kern and "merge paths on;" in kern
    assert "scan time 10;" in kern
    rare = BirdDaemon(full_spec(), kernel_scan=600).render()["bird.conf"]
    assert "scan time 600;" in rare.split("protocol kernel kernel1 {")[1].split("\n}")[0]
    stat = c.split("protocol static static1 {")[1].split("\n}")[0]
    assert "route 192.0.2.0/24 blackhole;" in stat and "route 10.50.0.0/16 via 10.0.12.2;" in stat
    assert "route 10.60.0.0/16 blackhole;" in stat and "172.16.0.0/24" not in stat


def test_bird_render_ospf() -> None:
    c = BirdDaemon(full_spec()).render()["bird.conf"]
    ospf = c.split("protocol ospf v2 ospf1 {")[1].split("\n}\n")[0]
    assert "area 0.0.0.0 {" in ospf and "area 0.0.0.1 {" in ospf
    assert ('interface "r1-eth0" { cost 20; hello 1; dead 4; retransmit 2; type broadcast; };'
            in ospf)
    assert 'interface "r1-eth1" { cost 10; hello 1; dead 4; retransmit 2; type ptp; };' in ospf
    assert "stub yes;" in ospf.split('interface "r1-eth2"')[1].split("\n")[0]
    assert 'interface "lo" 10.255.0.1/32 { stub yes; };' in ospf
    assert "r1-eth3" not in ospf
    assert "export none;" in ospf


def test_bird_graceful_restart_render_and_recovery_flag(tmp_path) -> None:
    d = BirdDaemon(full_spec())
    c = d.render()["bird.conf"]
    assert "graceful restart on;" in c.split("protocol kernel kernel1 {")[1].split("\n}")[0]
    assert "graceful restart yes;" in c.split("protocol ospf v2 ospf1 {")[1].split("\n}\n")[0]
    assert "-R" not in d.launch_args(tmp_path)
    d.gr_recover = True  # started after `birdc graceful restart`: recovery mode
    assert d.launch_args(tmp_path)[-1] == "-R"
    plain = full_spec()
    plain.graceful_restart = False
    p = BirdDaemon(plain)
    p.gr_recover = True
    assert "-R" not in p.launch_args(tmp_path) and "graceful restart" not in p.render()["bird.conf"]


def test_bird_render_bgp_and_policies() -> None:
    c = BirdDaemon(full_spec()).render()["bird.conf"]
    p = c.split(f"protocol bgp {bgp_protocol_name('10.0.12.2')} {{")[1].split("\n}\n")[0]
    assert bgp_protocol_name("10.0.12.2") == "bgp_10_0_12_2"
    for want in ['description "r2";', "local 10.0.12.1 as 65001;", "neighbor 10.0.12.2 as 65002;",
                 "hold time 9;", "keepalive time 3;", "connect retry time 5;",
                 "debug { states };", "graceful restart on;",
                 "if net ~ [ 198.51.100.0/24{24,28} ] then { bgp_local_pref = 200; accept; }",
                 "if net ~ [ 10.0.0.0/8{16,24} ] then { reject; }",
                 "if !(source = RTS_BGP || net ~ [ 192.0.2.0/24, 172.16.0.0/24 ] || "
                 "source ~ [ RTS_DEVICE ]) then reject;",
                 "if net ~ [ 192.0.2.0/24 ] then { bgp_med = 50; bgp_path.prepend(65001); "
                 "bgp_path.prepend(65001); accept; }"]:
        assert want in p, want
    imp, exp = p.split("import filter {")[1].split("export filter {")
    assert imp.rstrip().endswith("accept;\n    };")  # IN_R2's default
    assert exp.split("    };")[0].rstrip().endswith("reject;")  # OUT_R2's default
    ibgp = c.split("protocol bgp bgp_10_255_0_3 {")[1].split("\n}\n")[0]
    assert "local 10.255.0.1 as 65001;" in ibgp and "next hop self;" in ibgp
    assert "hold time 15;" in ibgp and "keepalive time 5;" in ibgp
    mh = c.split("protocol bgp bgp_10_9_9_9 {")[1].split("\n}\n")[0]
    assert "multihop 2;" in mh and "passive on;" in mh


# ----- GoBGP -----

def test_gobgp_render_is_valid_toml_with_per_neighbour_policies() -> None:
    text = GobgpDaemon(bgp_only_spec()).render()["gobgpd.toml"]
    conf = tomllib.loads(text)
    g = conf["global"]["config"]
    assert g["as"] == 65007 and g["router-id"] == "10.255.0.7"
    ap = conf["global"]["apply-policy"]["config"]
    assert ap["import-policy-list"] == ["in_10_0_78_8"]
    assert ap["export-policy-list"] == ["out_10_0_78_8", "out_10_0_78_9"]  # + next-hop-self
    assert ap["default-import-policy"] == ap["default-export-policy"] == "accept-route"
    nbs = {n["config"]["neighbor-address"]: n for n in conf["neighbors"]}
    n8 = nbs["10.0.78.8"]
    assert n8["config"]["peer-as"] == 65008 and n8["config"]["description"] == "peer"
    assert n8["timers"]["config"] == {"connect-retry": 5, "hold-time": 9, "keepalive-interval": 3,
                                      "minimum-advertisement-interval": 0}
    assert n8["transport"]["config"]["local-address"] == "10.0.78.7"
    assert n8["afi-safis"][0]["config"]["afi-safi-name"] == "ipv4-unicast"
    pols = {p["name"]: p for p in conf["policy-definitions"]}
    st = pols["in_10_0_78_8"]["statements"]
    assert st[0]["conditions"]["match-neighbor-set"]["neighbor-set"] == "nb_10_0_78_8"
    assert st[0]["actions"]["bgp-actions"]["set-local-pref"] == 300
    assert st[-1]["actions"]["route-disposition"] == "reject-route"  # IN's default
    pset = {p["prefix-set-name"]: p for p in conf["defined-sets"]["prefix-sets"]}
    pl = pset[st[0]["conditions"]["match-prefix-set"]["prefix-set"]]["prefix-list"][0]
    assert pl == {"ip-prefix": "10.0.0.0/8", "masklength-range": "16..24"}
    out = pols["out_10_0_78_8"]["statements"][0]["actions"]["bgp-actions"]["set-as-path-prepend"]
    assert out == {"as": "65007", "repeat-n": 3}
    nhs = pols["out_10_0_78_9"]["statements"][-1]["actions"]["bgp-actions"]
    assert nhs["set-next-hop"] == "self"


def test_gobgp_streams_its_loc_rib_to_a_bmp_station() -> None:
    assert "bmp-servers" not in tomllib.loads(GobgpDaemon(bgp_only_spec()).render()["gobgpd.toml"])
    conf = tomllib.loads(GobgpDaemon(bgp_only_spec(), bmp_station=("127.0.0.1", 11019)).render()["gobgpd.toml"])
    assert conf["bmp-servers"] == [{"config": {"address": "127.0.0.1", "port": 11019,
                                               "route-monitoring-policy": "local-rib"}}]


def test_gobgp_command_holds_gomaxprocs(tmp_path) -> None:
    """gobgpd sets GOMAXPROCS itself (to every CPU unless --cpus): a GOMAXPROCS in the
    runtime settings becomes --cpus, or the environment's value is overridden."""
    plain = GobgpDaemon(bgp_only_spec()).command(tmp_path)
    assert "--cpus" not in plain and plain[plain.index("-f") + 1] == str(tmp_path / "gobgpd.toml")
    lean = GobgpDaemon(bgp_only_spec(), go_runtime=lean_go_runtime()).command(tmp_path)
    assert lean[lean.index("--cpus") + 1] == lean_go_runtime()["GOMAXPROCS"] == "1"


def test_gobgp_refuses_what_it_cannot_do() -> None:
    with pytest.raises(DaemonError, match="ospf"):
        GobgpDaemon(full_spec()).check_supported()
    GobgpDaemon(bgp_only_spec()).check_supported()


# ----- ExaBGP -----

def test_exabgp_render() -> None:
    s = bgp_only_spec()
    s.policies = []
    for nb in s.bgp_neighbors:
        nb.import_policy = nb.export_policy = "ACCEPT_ALL"
    d = ExabgpDaemon(s)
    d.check_supported()
    files = d.render()
    assert set(files) == {"exabgp.conf", "exabgp-api.py"}
    c = files["exabgp.conf"]
    assert "process routerlab-api {" in c and "encoder json;" in c
    assert "exabgp.cmd" in c and "exabgp.events" in c
    blk = c.split("neighbor 10.0.78.8 {")[1].split("\n}\n")[0]
    for want in ["router-id 10.255.0.7;", "local-address 10.0.78.7;", "local-as 65007;",
                 "peer-as 65008;", "hold-time 9;", "family { ipv4 unicast; }",
                 "processes [ routerlab-api ];", "neighbor-changes;",
                 "receive { parsed; update; }", "adj-rib-in false;",
                 "route 203.0.113.0/24 next-hop self med 7 as-path [ 65100 ];"]:
        assert want in blk, want
    compile(files["exabgp-api.py"], "exabgp-api.py", "exec")  # the helper is valid Python


def test_exabgp_refuses_policies() -> None:
    with pytest.raises(DaemonError, match="policy"):
        ExabgpDaemon(bgp_only_spec()).check_supported()
    s = bgp_only_spec()
    s.policies = []
    for nb in s.bgp_neighbors:
        nb.import_policy = nb.export_policy = "ACCEPT_ALL"
    s.bgp_neighbors[0].import_policy = REJECT_ALL
    with pytest.raises(DaemonError, match="applies no policies"):
        ExabgpDaemon(s).check_supported()
