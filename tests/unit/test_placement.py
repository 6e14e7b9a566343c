"""Cluster placement in topology files: a `server:` per node or a placer in `params`,
validated like every other field (FILE:LINE: problem)."""
from __future__ import annotations

import pytest
import yaml

from routerlab.topology import TopologyError, load_topology, parse_topology
from routerlab.topology.placement import place


def ring(**changes):
    d = load_topology("ring").to_dict()
    for node, server in changes.get("servers", {}).items():
        d["nodes"][node]["server"] = server
    if "params" in changes:
        d["params"] = changes["params"]
    return yaml.safe_dump(d, sort_keys=False)


def test_no_placement_means_one_machine():
    assert load_topology("ring").placement() is None


def test_server_per_node_others_on_localhost():
    t = parse_topology(ring(servers={"r3": "127.0.0.2", "h2": "server2.example"}))
    p = t.placement()
    assert p["r3"] == "127.0.0.2" and p["h2"] == "server2.example" and p["r1"] == "localhost"
    assert parse_topology(yaml.safe_dump(t.to_dict())).placement() == p  # round trip


def test_bin_placer_keeps_neighbours_and_hosts_together():
    t = parse_topology(ring(params={"placer": "bin", "servers": ["localhost", "10.0.0.2"]}))
    p = t.placement()
    assert sorted(p[r] for r in ("r1", "r2", "r3", "r4")) == ["10.0.0.2"] * 2 + ["localhost"] * 2
    assert p["h1"] == p["r1"] and p["h2"] == p["r3"]  # a host goes with its router
    # a node's own server wins over the placer
    t = parse_topology(ring(servers={"r1": "10.0.0.3"},
                            params={"placer": "round-robin", "servers": ["localhost", "10.0.0.2"]}))
    assert t.placement()["r1"] == "10.0.0.3"


def test_round_robin_alternates():
    p = place({"a": "router", "b": "router", "c": "router"}, [("a", "b"), ("b", "c")], {}, "round-robin",
              ["localhost", "s2"])
    assert p == {"a": "localhost", "b": "s2", "c": "localhost"}


@pytest.mark.parametrize("text_change, message", [
    ({"servers": {"r1": "bad host!"}}, "node r1: server must be a host name or IPv4 address"),
    ({"servers": {"r1": 7}}, "node r1: server must be"),
    ({"params": {"placer": "fastest", "servers": ["localhost"]}}, "placer must be one of bin, round-robin"),
    ({"params": {"placer": "bin"}}, "a placer needs servers"),
    ({"params": {"placer": "bin", "servers": ["localhost", "localhost"]}}, "servers lists a server twice"),
    ({"params": {"placer": "bin", "servers": ["localhost", "a b"]}}, "servers: server must be"),
])
def test_bad_placement_is_a_one_line_error(text_change, message):
    with pytest.raises(TopologyError, match=message) as e:
        parse_topology(ring(**text_change), "t.yaml")
    assert str(e.value).startswith("t.yaml:") and "\n" not in str(e.value)
