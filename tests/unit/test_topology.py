"""Unit tests: the topology format, its validator, the address plan and the loaders (no root)."""
from __future__ import annotations

import itertools
import pickle
from ipaddress import IPv4Address, IPv4Interface, IPv4Network
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routerlab.errors import UserError
from routerlab.topology import (
    TopologyError,
    dump_topology,
    import_topohub,
    list_topohub,
    list_topologies,
    load_topology,
    parse_topology,
    topology_from_dict,
)

FIXTURES = Path(__file__).resolve().parent.parent / "data" / "topologies"


def error_of(text: str, source: str = "t.yaml") -> TopologyError:
    with pytest.raises(TopologyError) as info:
        parse_topology(text, source)
    return info.value


def assert_one_line(err: TopologyError, line: int | None, problem: str) -> None:
    msg = str(err)
    assert "\n" not in msg
    assert err.line == line, msg
    assert problem in err.problem, msg
    assert msg == (f"{err.source}:{line}: {err.problem}" if line else f"{err.source}: {err.problem}")


# --- bad input from the issue: one line naming file, line and problem --------------------

@pytest.mark.parametrize("fixture, line, problem", [
    ("bad-unknown-node.yaml", 11, "link r1-r9: unknown node 'r9'"),
    ("bad-duplicate-name.yaml", 8, "duplicate node name 'r2' (first defined at line 6)"),
    ("bad-negative-bw.yaml", 10, "link r2-r3: bw must be a positive number (Mbit/s), got -10"),
    ("bad-yaml-syntax.yaml", 7, "YAML syntax error"),
])
def test_issue_bad_input_is_one_line_with_file_and_line(fixture, line, problem):
    path = FIXTURES / fixture
    before = sorted(FIXTURES.iterdir())
    with pytest.raises(TopologyError) as info:
        load_topology(path)
    err = info.value
    assert err.source.endswith(f"tests/data/topologies/{fixture}")
    assert_one_line(err, line, problem)
    assert str(err).startswith(f"{err.source}:{line}: ")
    assert sorted(FIXTURES.iterdir()) == before  # nothing created


def test_yaml_syntax_error_points_at_the_unclosed_brace():
    err = error_of("nodes:\n  r1: {daemon: frr\n  r2: {}\n")
    assert_one_line(err, 3, "started at line 2")


def test_topology_error_is_a_user_error_and_pickles():
    err = error_of("nodes:\n  r1: {daemon: quagga}\n")
    assert isinstance(err, ValueError) and isinstance(err, UserError)
    copy = pickle.loads(pickle.dumps(err))
    assert str(copy) == str(err) and copy.line == err.line


TWO = "nodes:\n  r1: {daemon: frr}\n  r2: {daemon: frr}\nlinks:\n"


@pytest.mark.parametrize("text, line, problem", [
    # document shape
    ("", 1, "empty topology file"),
    ("- a\n- b\n", 1, "must be a mapping"),
    ("nodez:\n  r1: {}\n", 1, "unknown key 'nodez' (did you mean 'nodes'?)"),
    ("name: x\n", 1, "missing required key 'nodes'"),
    ("nodes: {}\n", 1, "at least one node"),
    ("nodes:\n  - r1\n", 1, "nodes must be a mapping"),
    ("nodes:\n\tr1: {}\n", 2, "YAML syntax error"),
    ("nodes: {}\n---\nnodes: {}\n", 2, "YAML syntax error"),
    ("nodes:\n  r1: {daemon: frr}\nlinks:\n  - a: r1\n    a: r1\n", 5, "duplicate key 'a' (first at line 4)"),
    # nodes
    ("nodes:\n  r1: {daemon: frr, roel: router}\n", 2, "unknown key 'roel' (did you mean 'role'?)"),
    ("nodes:\n  r1: {role: ruoter}\n", 2, "unknown role 'ruoter' (did you mean 'router'?)"),
    ("nodes:\n  r1: {daemon: quagga}\n", 2, "unknown daemon 'quagga'"),
    ("nodes:\n  r1: {}\n", 2, "a router needs a daemon"),
    ("nodes:\n  r1: {daemon: exabgp}\n", 2, "use role: external"),
    ("nodes:\n  x: {role: external, daemon: exabgp}\n", 2, "needs an asn"),
    ("nodes:\n  x: {role: external, asn: 65100}\n", 2, "needs a daemon"),
    ("nodes:\n  h1: {role: host, daemon: frr}\n", 2, "a host runs no daemon"),
    ("nodes:\n  h1: {role: host, asn: 1}\n", 2, "asn needs a node that runs a routing daemon"),
    ("nodes:\n  r1: {daemon: frr, asn: 0}\n", 2, "asn must be an integer from 1 to 4294967294"),
    ("nodes:\n  r1: {daemon: frr, asn: 4294967295}\n", 2, "asn must be an integer"),
    ("nodes:\n  r1: {daemon: frr, asn: 23456}\n", 2, "reserved"),
    ("nodes:\n  r1: {daemon: frr, asn: '65000'}\n", 2, "asn must be an integer"),
    ("nodes:\n  abcdefghijk: {daemon: frr}\n", 2, "longer than 10 characters"),
    ("nodes:\n  r-1: {daemon: frr}\n", 2, "letters, digits and '_' only"),
    ("nodes:\n  1r: {daemon: frr}\n", 2, "starting with a letter"),
    ("nodes:\n  NO: {daemon: frr}\n", 2, "must be a string"),
    ("nodes:\n  r1: {daemon: frr, loopback: 10.255.0.300}\n", 2, "loopback must be an IPv4 address"),
    ("nodes:\n  r1: {daemon: frr, loopback: 1.1.1.1}\n", 2, "not a private (RFC 1918) address"),
    ("nodes:\n  r1: {daemon: frr, router_id: 0.0.0.0}\n", 2, "router_id 0.0.0.0"),
    ("nodes:\n  r1: {daemon: frr, router_id: 7}\n", 2, "router_id must be a dotted quad"),
    ("nodes:\n  r1: {daemon: frr, loopback: 7}\n", 2, "loopback must be an IPv4 address"),
    ("nodes:\n  r1: {role: [router]}\n", 2, "unknown role ['router']"),
    ("nodes:\n  x: {role: external, daemon: frr}\n", 2, "node x: an external node needs an asn"),
    ("nodes:\n  r1: {daemon: frr, originate: [10.1.2.3/24]}\n", 2, "host bits set (did you mean 10.1.2.0/24?)"),
    ("nodes:\n  r1: {daemon: frr, originate: [10.1.2.0/24, 10.1.2.0/24]}\n", 2, "twice"),
    ("nodes:\n  r1: {daemon: frr, subnet: 10.5.0.0/24}\n", 2, "subnet is for switches"),
    ("nodes:\n  r1: {daemon: frr, ospf: yes please}\n", 2, "ospf must be true or false"),
    ("ospf: {}\nnodes:\n  r1: {daemon: gobgp, ospf: true}\n", 3, "gobgp does not speak OSPF"),
    ("nodes:\n  r1: {daemon: frr, loopback: 10.255.0.9}\n  r2: {daemon: frr, loopback: 10.255.0.9}\n",
     3, "loopback of r2: 10.255.0.9/32 is already used by loopback of r1 (line 2)"),
    ("nodes:\n  r1: {daemon: frr, router_id: 10.9.9.9}\n  r2: {daemon: frr, loopback: 10.9.9.9}\n",
     3, "router id 10.9.9.9 is also r1's"),
    # defaults and protocol sections
    ("defaults: {daemon: exabgp}\nnodes:\n  r1: {}\n", 1, "cannot run a router"),
    ("defaults: {bw: -1}\nnodes:\n  r1: {daemon: frr}\n", 1, "defaults: bw must be a positive number"),
    ("defaults: {colour: red}\nnodes:\n  r1: {daemon: frr}\n", 1, "defaults: unknown key 'colour'"),
    ("ospf: {hello: 5, dead: 5}\nnodes:\n  r1: {daemon: frr}\n", 1, "dead (5) must be longer than hello (5)"),
    ("ospf: {area: backbone}\nnodes:\n  r1: {daemon: frr}\n", 1, "area must be an integer or dotted quad"),
    ("bgp: {keepalive: 9, hold: 9}\nnodes:\n  r1: {daemon: frr}\n", 1, "keepalive (9) must be shorter than hold"),
    # links
    (TWO + "  - {a: r1, b: r9}\n", 5, "link r1-r9: unknown node 'r9'"),
    (TWO + "  - {a: r1}\n", 5, "link #1: missing required key 'b'"),
    (TWO + "  - {a: r1, b: r1}\n", 5, "link r1-r1: a link cannot connect a node to itself"),
    (TWO + "  - {a: r1, b: r2}\n  - {a: r2, b: r1}\n", 6, "duplicate link (first at line 5)"),
    (TWO + "  - {a: r1, b: r2, bandwidth: 10}\n", 5, "unknown key 'bandwidth' (did you mean 'bw'?)"),
    (TWO + "  - {a: r1, b: r2, bw: 0}\n", 5, "bw must be a positive number (Mbit/s), got 0"),
    (TWO + "  - {a: r1, b: r2, bw: 10M}\n", 5, "bw must be a number (Mbit/s), got '10M'"),
    (TWO + "  - {a: r1, b: r2, delay: -1}\n", 5, "delay must be a non-negative number (ms), got -1"),
    (TWO + "  - {a: r1, b: r2, cost: -5}\n", 5, "cost must be an integer from 1 to 65535, got -5"),
    (TWO + "  - {a: r1, b: r2, cost: 2.5}\n", 5, "cost must be an integer"),
    (TWO + "  - {a: r1, b: r2, a_addr: 10.0.0.300/30}\n", 5, "not a valid IPv4 address"),
    (TWO + "  - {a: r1, b: r2, a_addr: 10.0.0.1}\n", 5, "must look like 10.0.0.1/30"),
    (TWO + "  - {a: r1, b: r2, a_addr: 10.0.0.1/32}\n", 5, "prefix length below 32"),
    (TWO + "  - {a: r1, b: r2, a_addr: 10.0.0.0/30}\n", 5, "network or broadcast address"),
    (TWO + "  - {a: r1, b: r2, a_addr: 8.8.8.1/30}\n", 5, "not a private (RFC 1918) address"),
    (TWO + "  - {a: r1, b: r2, a_addr: 10.9.0.1/30, b_addr: 10.9.0.5/30}\n", 5, "is not in 10.9.0.0/30"),
    (TWO + "  - {a: r1, b: r2, a_addr: 10.9.0.1/30, b_addr: 10.9.0.1/30}\n", 5, "already used"),
    (TWO + "  - {a: r1, b: r2, a_intf: 'bad name'}\n", 5, "a_intf must be an interface name"),
    (TWO + "  - {a: r1, b: r2, b_intf: lo}\n", 5, "b_intf must be an interface name"),
    (TWO + "  - {a: r1, b: r2, a_intf: sixteen-chars-xx}\n", 5, "longer than 15 characters"),
    (TWO + "  - {a: r1, b: r2, a_intf: r2-eth0}\n", 5, "interface name 'r2-eth0' is already used"),
    ("nodes:\n  r1: {daemon: frr}\n  r2: {daemon: frr}\n  r3: {daemon: frr}\nlinks:\n"
     "  - {a: r1, b: r2, a_addr: 10.9.0.1/24}\n  - {a: r2, b: r3, a_addr: 10.9.0.5/30}\n",
     7, "link r2-r3: 10.9.0.4/30 overlaps 10.9.0.0/24 of link r1-r2 (line 6)"),
    ("nodes:\n  r1: {daemon: frr, loopback: 10.9.0.2}\n  r2: {daemon: frr}\nlinks:\n"
     "  - {a: r1, b: r2, a_addr: 10.9.0.1/30}\n", 5, "overlaps 10.9.0.2/32 of loopback of r1"),
    ("nodes:\n  s1: {role: switch}\n  r1: {daemon: frr}\nlinks:\n  - {a: s1, b: r1, a_addr: 10.9.0.1/24}\n",
     5, "s1 is a switch: its ports have no address"),
    # BGP sessions
    ("nodes:\n  r1: {daemon: frr, asn: 1}\n  r2: {daemon: frr, asn: 2}\n  r3: {daemon: frr, asn: 3}\n"
     "links:\n  - {a: r1, b: r2}\n  - {a: r2, b: r3}\nbgp:\n  sessions:\n    - [r1, r3]\n",
     10, "eBGP needs a direct link"),
    ("nodes:\n  r1: {daemon: frr, asn: 1}\n  r2: {daemon: frr, asn: 1}\n  r3: {daemon: frr, asn: 1}\n"
     "links:\n  - {a: r1, b: r2}\n  - {a: r2, b: r3}\nbgp:\n  sessions:\n    - [r1, r3]\n",
     10, "iBGP needs both nodes in OSPF"),
    (TWO.replace("frr}", "frr, asn: 1}") + "  - {a: r1, b: r2}\nbgp:\n  sessions:\n    - {a: r1, b: r7}\n",
     8, "bgp session r1-r7: unknown node 'r7'"),
    (TWO + "  - {a: r1, b: r2}\nbgp:\n  sessions:\n    - [r1, r2]\n", 8, "r1 has no asn"),
    (TWO.replace("frr}", "frr, asn: 1}") + "  - {a: r1, b: r2}\nbgp:\n  sessions:\n    - [r1, r2]\n    - [r2, r1]\n",
     9, "duplicate session (first at line 8)"),
    (TWO.replace("frr}", "frr, asn: 1}") + "  - {a: r1, b: r2}\nbgp:\n  sessions:\n    - {a: r1, b: r2, c: r3}\n",
     8, "unknown key 'c'"),
    ("nodes:\n  r1: {daemon: frr, asn: 1}\n  h1: {role: host}\nlinks:\n  - {a: r1, b: h1}\n"
     "bgp:\n  sessions:\n    - [r1, h1]\n", 8, "h1 is a host and runs no BGP daemon"),
])
def test_validator_refuses_with_file_line_and_problem(text, line, problem):
    assert_one_line(error_of(text), line, problem)


def test_interface_name_too_long_for_a_busy_node():
    links = "".join(f"  - {{a: abcdefghij, b: r{i}}}\n" for i in range(11))
    nodes = "".join(f"  r{i}: {{}}\n" for i in range(11))
    text = f"defaults: {{daemon: frr}}\nnodes:\n  abcdefghij: {{}}\n{nodes}links:\n{links}"
    err = error_of(text)
    assert_one_line(err, 26, "interface name 'abcdefghij-eth10' is longer than 15 characters")


def test_merge_keys_may_be_overridden_without_a_duplicate_error():
    topo = parse_topology("params: &base {daemon: frr, asn: 1}\nnodes:\n  r1: {<<: *base, asn: 2}\n")
    assert topo.nodes["r1"].asn == 2 and topo.nodes["r1"].daemon == "frr"


def test_ospf_true_and_names_from_file_names(tmp_path):
    path = tmp_path / "my lab.yaml"
    path.write_text("ospf: true\nnodes:\n  r1: {daemon: bird}\n  r2: {daemon: gobgp}\n")
    topo = load_topology(path)
    assert topo.name == "my-lab" and topo.source == str(path)
    assert topo.nodes["r1"].ospf and not topo.nodes["r2"].ospf
    assert (topo.ospf.hello, topo.ospf.dead) == (1, 4)


def test_missing_file_and_unknown_names():
    with pytest.raises(TopologyError, match=r"^topologies/nope\.yaml: no such file$"):
        load_topology("topologies/nope.yaml")
    with pytest.raises(TopologyError, match=r"did you mean 'ring'\?"):
        load_topology("rng")
    with pytest.raises(TopologyError, match=r"zoo:Abilen: unknown topohub network 'Abilen' \(did you mean Abilene\?\)"):
        load_topology("zoo:Abilen")


# --- the address plan ------------------------------------------------------------------

def test_ring_address_plan_is_the_documented_one():
    topo = load_topology("ring")
    assert [str(topo.nodes[r].loopback) for r in ("r1", "r2", "r3", "r4")] == [
        "10.255.0.1/32", "10.255.0.2/32", "10.255.0.3/32", "10.255.0.4/32"]
    assert [topo.nodes[r].router_id for r in ("r1", "r4")] == [IPv4Address("10.255.0.1"), IPv4Address("10.255.0.4")]
    ring = [(str(ln.a.address), str(ln.b.address)) for ln in topo.links[:4]]
    assert ring == [("10.0.0.1/30", "10.0.0.2/30"), ("10.0.0.5/30", "10.0.0.6/30"),
                    ("10.0.0.9/30", "10.0.0.10/30"), ("10.0.0.13/30", "10.0.0.14/30")]
    h1, h2 = topo.link_between("r1", "h1"), topo.link_between("r3", "h2")
    assert (str(h1.end("r1").address), str(h1.end("h1").address)) == ("10.1.1.1/24", "10.1.1.2/24")
    assert (str(h2.end("r3").address), str(h2.end("h2").address)) == ("10.1.3.1/24", "10.1.3.2/24")
    assert topo.nodes["h1"].gateway == IPv4Address("10.1.1.1")
    assert topo.nodes["h2"].gateway == IPv4Address("10.1.3.1")
    assert topo.nodes["h1"].loopback is None and topo.address_of("h1") == IPv4Address("10.1.1.2")
    assert topo.address_of("r2") == IPv4Address("10.255.0.2")


def test_user_given_addresses_are_kept_and_never_handed_out_again():
    text = """
defaults: {daemon: frr}
nodes:
  r1: {}
  r2: {loopback: 10.255.0.1}
  r3: {}
  h1: {role: host}
links:
  - {a: r1, b: r2}
  - {a: r2, b: r3, b_addr: 10.0.0.2/30}
  - {a: r3, b: r1}
  - {a: r1, b: h1, b_addr: 10.1.1.1/24}
"""
    topo = parse_topology(text)
    assert topo.nodes["r2"].loopback == IPv4Interface("10.255.0.1/32")
    assert topo.nodes["r1"].loopback == IPv4Interface("10.255.0.2/32")  # skips the taken .1
    assert topo.nodes["r3"].loopback == IPv4Interface("10.255.0.3/32")
    l0, l1, l2, l3 = topo.links
    assert (l1.a.address, l1.b.address) == (IPv4Interface("10.0.0.1/30"), IPv4Interface("10.0.0.2/30"))
    assert l0.a.address.network == IPv4Network("10.0.0.4/30")  # 10.0.0.0/30 is the user's
    assert l2.a.address.network == IPv4Network("10.0.0.8/30")
    # the host took .1 of r1's LAN, so the router (gateway) gets the next free address
    assert l3.b.address == IPv4Interface("10.1.1.1/24") and l3.a.address == IPv4Interface("10.1.1.2/24")
    assert topo.nodes["h1"].gateway == IPv4Address("10.1.1.2")


def test_auto_loopbacks_skip_router_ids_given_in_the_file():
    topo = parse_topology("nodes:\n  r1: {daemon: frr, router_id: 10.255.0.2}\n  r2: {daemon: frr}\n")
    assert topo.nodes["r1"].loopback == IPv4Interface("10.255.0.1/32")
    assert topo.nodes["r1"].router_id == IPv4Address("10.255.0.2")
    assert topo.nodes["r2"].loopback == IPv4Interface("10.255.0.3/32")
    assert topo.nodes["r2"].router_id == IPv4Address("10.255.0.3")


def test_host_gateway_follows_the_hosts_own_link_order():
    topo = parse_topology("defaults: {daemon: frr}\nnodes:\n  r1: {}\n  r2: {}\n  s1: {role: switch}\n"
                          "  h1: {role: host}\nlinks:\n  - {a: s1, b: r1}\n  - {a: h1, b: r2}\n  - {a: h1, b: s1}\n")
    assert topo.nodes["h1"].gateway == topo.link_between("h1", "r2").end("r2").address.ip


def test_one_given_end_fixes_the_subnet_for_the_other():
    topo = parse_topology(TWO + "  - {a: r1, b: r2, a_addr: 192.168.7.2/29}\n")
    ln = topo.links[0]
    assert ln.a.address == IPv4Interface("192.168.7.2/29")
    assert ln.b.address == IPv4Interface("192.168.7.1/29")


def test_switch_lan_routers_first_then_hosts_and_trunks_unaddressed():
    text = """
defaults: {daemon: bird}
ospf: {}
nodes:
  r1: {}
  r2: {}
  s1: {role: switch}
  s2: {role: switch, subnet: 10.50.0.0/24}
  h1: {role: host}
  h2: {role: host}
  h3: {role: host}
links:
  - {a: h1, b: s1}
  - {a: s1, b: r2}
  - {a: r1, b: s1}
  - {a: s1, b: s2}
  - {a: s2, b: h2}
  - {a: h3, b: s2}
"""
    topo = parse_topology(text)
    addr = {ln.index: (ln.a.address, ln.b.address) for ln in topo.links}
    # s1's LAN: first daemon node is r2 (index 2) -> 10.1.2.0/24; r2 .1, r1 .2, host .3
    assert addr[1][1] == IPv4Interface("10.1.2.1/24")
    assert addr[2][0] == IPv4Interface("10.1.2.2/24")
    assert addr[0][0] == IPv4Interface("10.1.2.3/24")
    assert addr[0][1] is None and addr[3] == (None, None)
    assert topo.nodes["s1"].subnet == IPv4Network("10.1.2.0/24")
    assert topo.nodes["h1"].gateway == IPv4Address("10.1.2.1")
    # s2 has a given subnet and no router: hosts from .1, no gateway
    assert addr[4][1] == IPv4Interface("10.50.0.1/24") and addr[5][0] == IPv4Interface("10.50.0.2/24")
    assert topo.nodes["h2"].gateway is None
    # switch ports count from 1, like Mininet's
    assert [i.name for i in topo.interfaces("s1")] == ["s1-eth1", "s1-eth2", "s1-eth3", "s1-eth4"]
    # r1 and r2 are OSPF neighbours across the switch: not passive, and a multi-access LAN
    assert [(i.ospf_passive, i.lan) for i in topo.interfaces("r1")] == [(False, True)]
    assert topo.loopback_area("r1") == 0 and topo.loopback_area("h1") is None


def test_second_lan_of_a_router_comes_from_the_extra_pool():
    topo = parse_topology("defaults: {daemon: frr}\nnodes:\n  r1: {}\n  h1: {role: host}\n  h2: {role: host}\n"
                          "links:\n  - {a: r1, b: h1}\n  - {a: r1, b: h2}\n")
    assert topo.links[0].a.address == IPv4Interface("10.1.1.1/24")
    assert topo.links[1].a.address == IPv4Interface("10.2.0.1/24")


def test_interface_names_default_and_given():
    topo = parse_topology(TWO + "  - {a: r1, b: r2, a_intf: core0}\n")
    assert [i.name for i in topo.interfaces("r1")] == ["core0"]
    assert [i.name for i in topo.interfaces("r2")] == ["r2-eth0"]
    assert topo.interfaces("r2")[0].peer_interface == "core0"


def test_loading_is_deterministic():
    for name in list_topologies():
        assert load_topology(name).to_dict() == load_topology(name).to_dict()


NODE_ROLES = st.sampled_from(["router", "router", "router", "host", "switch", "external"])


@st.composite
def random_topologies(draw):
    n = draw(st.integers(2, 12))
    roles = [draw(NODE_ROLES) for _ in range(n)]
    nodes = {}
    for i, role in enumerate(roles):
        spec = {"role": role}
        if role == "router":
            spec["daemon"] = draw(st.sampled_from(["frr", "bird", "gobgp"]))
        elif role == "external":
            spec.update(daemon=draw(st.sampled_from(["frr", "exabgp"])), asn=65100 + i)
        nodes[f"n{i}"] = spec
    pairs = list(itertools.combinations(range(n), 2))
    chosen = draw(st.lists(st.sampled_from(pairs), unique=True, max_size=min(len(pairs), 25)))
    links = [{"a": f"n{a}", "b": f"n{b}"} if draw(st.booleans()) else {"a": f"n{b}", "b": f"n{a}"}
             for a, b in chosen]
    # some user-given addresses that collide with the auto pools' first picks
    daemon_nodes = [name for name, spec in nodes.items() if "daemon" in spec]
    for name in draw(st.lists(st.sampled_from(daemon_nodes), unique=True)) if daemon_nodes else []:
        nodes[name]["loopback"] = f"10.255.0.{draw(st.integers(1, 40))}"
    lbs = [spec["loopback"] for spec in nodes.values() if "loopback" in spec]
    if len(set(lbs)) != len(lbs):
        for k, spec in enumerate(s for s in nodes.values() if "loopback" in s):
            spec["loopback"] = f"10.255.0.{k + 1}"
    slots = draw(st.lists(st.integers(0, 40), unique=True, max_size=len(links)))
    for slot, link in zip(slots, links):
        if "switch" not in (nodes[link["a"]]["role"], nodes[link["b"]]["role"]) and draw(st.booleans()):
            link["a_addr"] = f"10.0.0.{4 * slot + 1}/30"
    return {"name": "random", "ospf": {}, "nodes": nodes, "links": links}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_topologies())
def test_address_plan_properties(raw):
    topo = topology_from_dict(raw)
    # given addresses kept
    for spec, ln in zip(raw["links"], topo.links):
        if "a_addr" in spec:
            assert str(ln.a.address) == spec["a_addr"]
    for name, spec in raw["nodes"].items():
        if "loopback" in spec:
            assert str(topo.nodes[name].loopback) == spec["loopback"] + "/32"
    # every daemon node has a loopback and router id; others none
    for node in topo.nodes.values():
        assert (node.loopback is not None) == (node.router_id is not None) == node.runs_daemon
    # every addressed end has an address, switch ends none; ends of a link share its subnet
    all_ips = []
    for ln in topo.links:
        for end in (ln.a, ln.b):
            is_switch = topo.nodes[end.node].role == "switch"
            assert (end.address is None) == is_switch
            if end.address is not None:
                all_ips.append(end.address.ip)
                assert end.address.ip.is_private
        if ln.a.address and ln.b.address:
            assert ln.a.address.network == ln.b.address.network
        if ln.a.address and ln.b.address and "host" not in (topo.nodes[ln.a.node].role, topo.nodes[ln.b.node].role) \
                and "a_addr" not in raw["links"][ln.index]:
            assert ln.a.address.network.prefixlen == 30 and ln.a.address.network.subnet_of(IPv4Network("10.0.0.0/16"))
    assert len(all_ips) == len(set(all_ips))
    # subnets and loopbacks never overlap each other
    nets = [net for net, _ in topo.subnets()] + [n.loopback.network for n in topo.nodes.values() if n.loopback]
    for x, y in itertools.combinations(nets, 2):
        assert not x.overlaps(y), (x, y)
    # deterministic, and the explicit form loads back identically
    assert topology_from_dict(raw).to_dict() == topo.to_dict()
    assert topology_from_dict(topo.to_dict()).to_dict() == topo.to_dict()
    # interface names are unique and fit Linux
    names = [i.name for n in topo.nodes for i in topo.interfaces(n)]
    assert len(names) == len(set(names)) and all(len(x) <= 15 for x in names)


# --- OSPF and BGP views ------------------------------------------------------------------

def test_abilene_ospf_interfaces_and_ebgp_edge():
    topo = load_topology("abilene")
    nycm = {i.peer: i for i in topo.interfaces("NYCM")}
    assert set(nycm) == {"CHIN", "WASH", "ext", "hNYCM"}
    assert not nycm["CHIN"].ospf_passive and nycm["CHIN"].ospf_area == 0 and nycm["CHIN"].cost == 1146
    assert not nycm["CHIN"].lan and topo.loopback_area("NYCM") == 0 and topo.loopback_area("ext") is None
    assert nycm["ext"].ospf_passive and nycm["hNYCM"].ospf_passive
    assert all(i.ospf_area is None for i in topo.interfaces("ext"))
    assert topo.nodes["ext"].ospf is False and topo.nodes["NYCM"].ospf is True
    (s,) = topo.bgp_neighbors("NYCM")
    assert (s.peer, s.local_asn, s.peer_asn, s.kind, s.interface) == ("ext", 65000, 65100, "ebgp", "NYCM-eth2")
    assert s.local_address == nycm["ext"].address.ip and s.peer_address == nycm["ext"].peer_address.ip
    (back,) = topo.bgp_neighbors("ext")
    assert (back.local_address, back.peer_address) == (s.peer_address, s.local_address)
    assert (s.keepalive, s.hold) == (3, 9)
    assert topo.bgp_neighbors("ATLA") == [] and topo.bgp_speakers() == ["NYCM", "ext"]
    assert topo.nodes["ext"].originate == [IPv4Network("10.200.0.0/24")]


def test_ibgp_between_loopbacks_when_both_run_ospf():
    text = """
defaults: {daemon: frr, asn: 65000}
ospf: {}
nodes: {r1: {}, r2: {}, r3: {}}
links: [{a: r1, b: r2}, {a: r2, b: r3}]
bgp: {sessions: [[r1, r3]]}
"""
    topo = parse_topology(text)
    (s,) = topo.bgp_neighbors("r1")
    assert s.ibgp and s.interface is None
    assert (s.local_address, s.peer_address) == (topo.nodes["r1"].loopback.ip, topo.nodes["r3"].loopback.ip)


def test_ibgp_over_a_link_without_ospf():
    topo = parse_topology("defaults: {daemon: bird, asn: 65000}\nnodes: {r1: {}, r2: {}}\n"
                          "links: [{a: r1, b: r2}]\nbgp: {sessions: [{a: r2, b: r1}]}\n")
    (s,) = topo.bgp_neighbors("r1")
    assert s.ibgp and s.interface == "r1-eth0" and s.peer == "r2"


def test_bgp_mixed_triangle_and_injector():
    topo = load_topology("bgp-mixed")
    daemons = {n.name: n.daemon for n in topo.nodes.values()}
    assert daemons == {"rfrr": "frr", "rbird": "bird", "rgobgp": "gobgp", "inj": "exabgp"}
    asns = [topo.nodes[n].asn for n in ("rfrr", "rbird", "rgobgp")]
    assert len(set(asns)) == 3
    peers = {n: sorted(s.peer for s in topo.bgp_neighbors(n)) for n in topo.nodes}
    assert peers == {"rfrr": ["rbird", "rgobgp"], "rbird": ["inj", "rfrr", "rgobgp"],
                     "rgobgp": ["rbird", "rfrr"], "inj": ["rbird"]}
    assert all(not s.ibgp for n in topo.nodes for s in topo.bgp_neighbors(n))
    assert all(len(topo.nodes[n].originate) == 1 for n in ("rfrr", "rbird", "rgobgp"))
    assert not any(n.ospf for n in topo.nodes.values())
    assert all(i.ospf_area is None for n in topo.nodes for i in topo.interfaces(n))
    assert topo.nodes["inj"].role == "external"


# --- shipped files and loaders -----------------------------------------------------------

def test_shipped_topologies_are_listed_and_load():
    names = list_topologies()
    assert {"ring", "abilene", "bgp-mixed"} <= set(names)
    for name in names:
        topo = load_topology(name)
        assert topo.name == name and topo.path is not None and topo.path.name == f"{name}.yaml"
        assert topo.description
        assert topo.path.read_text().startswith("#")  # a header comment says what it is
        # every file is also loadable by path, and round-trips through its explicit form
        assert load_topology(topo.path).to_dict() == topo.to_dict()
        assert parse_topology(dump_topology(topo)).to_dict() == topo.to_dict()


def test_ring_shape():
    topo = load_topology("ring")
    assert [n.name for n in topo.routers()] == ["r1", "r2", "r3", "r4"]
    assert all(n.daemon == "frr" and n.ospf for n in topo.routers())
    assert [n.name for n in topo.hosts()] == ["h1", "h2"]
    assert topo.neighbors("h1") == ["r1"] and topo.neighbors("h2") == ["r3"]
    assert (topo.ospf.area, topo.ospf.hello, topo.ospf.dead) == (0, 1, 4)
    assert all(ln.bw == 10 for ln in topo.links)
    assert sorted(topo.neighbors("r1")) == ["h1", "r2", "r4"]
    g = topo.graph()
    assert g.number_of_nodes() == 6 and g.number_of_edges() == 6 and g.edges["r1", "r2"]["cost"] == 10


ABILENE_CITIES = {"New York": "NYCM", "Chicago": "CHIN", "Washington DC": "WASH", "Seattle": "STTL",
                  "Sunnyvale": "SNVA", "Los Angeles": "LOSA", "Denver": "DNVR", "Kansas City": "KSCY",
                  "Houston": "HSTN", "Atlanta": "ATLA", "Indianapolis": "IPLS"}


def test_abilene_is_the_real_abilene_with_distance_costs():
    shipped = load_topology("abilene")
    zoo = load_topology("zoo:Abilene")
    assert sorted(n.name for n in shipped.routers()) == sorted(ABILENE_CITIES.values())
    to_code = {name: ABILENE_CITIES[node.params["name"]] for name, node in zoo.nodes.items()}
    zoo_links = {frozenset((to_code[ln.a.node], to_code[ln.b.node])): ln.cost for ln in zoo.links}
    core = {frozenset(ln.nodes): ln.cost for ln in shipped.links
            if all(shipped.nodes[n].role == "router" for n in ln.nodes)}
    assert len(core) == 14 and core == zoo_links
    assert {n.asn for n in shipped.routers()} == {65000} and shipped.nodes["ext"].asn == 65100
    assert len(shipped.hosts()) >= 2


def test_zoo_import_validates():
    topo = load_topology("zoo:abilene")  # names are case-insensitive
    assert topo.source == "zoo:Abilene" and topo.name == "zoo-Abilene"
    assert len(topo.routers()) == 11 and len(topo.links) == 14
    assert all(n.daemon == "frr" and n.ospf for n in topo.routers())
    assert topo.link_between("NewYork", "Chicago").cost == 1146
    assert topo.nodes["NewYork"].params["name"] == "New York"


def test_zoo_import_options_and_name_clashes():
    topo = import_topohub("topozoo/Garr199904", daemon="bird", bw=20, hosts=True)
    assert all(n.daemon == "bird" for n in topo.routers())
    assert len(topo.hosts()) == len(topo.routers())
    assert all(ln.bw == 20 for ln in topo.links)
    names = [n.name for n in topo.routers()]
    assert len(names) == len(set(n.lower() for n in names)) and all(len(n) <= 8 for n in names)
    for h in topo.hosts():
        assert h.gateway is not None


@pytest.mark.parametrize("network", ["TataNld", "Ulaknet"])  # most nodes (143); highest degree (54)
def test_big_zoo_networks_fit_the_address_plan_and_interface_names(network):
    assert network in list_topohub("topozoo")
    topo = import_topohub(f"topozoo/{network}")
    assert all(len(i.name) <= 15 for n in topo.nodes for i in topo.interfaces(n))
    assert all(ln.a.address.network.subnet_of(IPv4Network("10.0.0.0/16")) for ln in topo.links)


def test_sndlib_import_and_options_only_for_imports():
    assert len(load_topology("sndlib:polska").routers()) == 12
    with pytest.raises(TypeError):
        load_topology("ring", bw=10)
