"""Pieces of the VERB experiments that need no namespaces: the trace, the exposure
arithmetic, and the router description the hypervisor process is started with."""
from __future__ import annotations

from types import SimpleNamespace as E

from routerlab.daemons import BgpNeighbor, Interface, Network, RouterSpec
from verb import trace
from verb.experiments import _deviation, _late, _union
from verb.hvproc import spec_from_dict, spec_to_dict


def test_trace_has_no_ties_and_churn_prefers_one_neighbour():
    t = trace.make(500, seed=3)
    assert len(t.prefixes) == len(set(t.prefixes)) == 500
    assert all(len(t.paths["n1"][p]) != len(t.paths["n2"][p]) for p in t.prefixes)
    assert all(t.best(p) == "n1" and t.best(p, withdrawn=True) == "n2" for p in t.churn_set)
    assert set(t.churn_set).isdisjoint(t.stable) and len(t.churn_set) == 50
    assert sum(len(v) for v in t.grouped("n1").values()) == 500
    ev = t.churn(120)
    downs: set = set()
    for c in ev:  # each prefix alternates withdraw, re-announce
        assert c.withdraw == (c.prefix not in downs)
        downs ^= {c.prefix}
    assert trace.make(500, seed=3).paths == t.paths  # replayable


def test_union_of_intervals():
    assert _union([(0, 1), (0.5, 2), (3, 4)]) == 3
    assert _union([]) == 0


def test_deviation_counts_leaks_and_how_long():
    want = {"a": 1, "b": 1}
    ok = lambda k, v: (v == want[k]) if k in want else (v is None)
    events = [E(t=1.0, key="a", value=2), E(t=3.0, key="a", value=1),
              E(t=2.0, key="bogus", value=9), E(t=2.5, key="bogus", value=None)]
    events.sort(key=lambda e: e.t)
    secs, keys = _deviation(events, ok, {"a": 1, "b": 1}, 0.0, 10.0)
    assert keys == ["a", "bogus"] and secs == 2.0  # a wrong from 1 to 3 (bogus inside it)
    secs, keys = _deviation([E(t=1.0, key="b", value=None)], ok, {"a": 1, "b": 1}, 0.0, 10.0)
    assert keys == ["b"] and secs == 9.0  # never healed: exposed until the end


def test_late():
    evs = [E(t=1.0, key="p", value=None), E(t=4.0, key="p", value="ok")]
    assert _late(evs, "p", "ok", 2.0, 10.0) == 2.0
    assert _late(evs, "p", "ok", 5.0, 10.0) == 0.0
    assert _late(evs[:1], "p", "ok", 2.0, 10.0) == 8.0


def test_spec_round_trip():
    spec = RouterSpec("verb", "10.255.0.1", 65001, interfaces=[Interface("eth1", "10.1.0.1/24")],
                      bgp_neighbors=[BgpNeighbor("10.1.0.2", 65010, passive=True)],
                      networks=[Network("192.0.2.0/24", as_path=(1, 2))])
    assert spec_from_dict(spec_to_dict(spec)) == spec
