"""Tunnels: the k cheapest loop-free paths, ties broken by hops then site names."""
from __future__ import annotations

import itertools

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b4.te.tunnels import SiteGraph


def _brute_force(sites, edges, src, dst, k):
    g = nx.DiGraph()
    g.add_nodes_from(sites)
    cost = {}
    for u, v, c in edges:
        g.add_edge(u, v)
        cost[(u, v)] = c
    paths = [tuple(p) for p in nx.all_simple_paths(g, src, dst)]
    keyed = sorted((round(sum(cost[(a, b)] for a, b in zip(p, p[1:])), 9), len(p) - 1, p) for p in paths)
    return [p for _, _, p in keyed[:k]]


@st.composite
def graphs(draw):
    n = draw(st.integers(2, 6))
    sites = [f"s{i}" for i in range(n)]
    pairs = draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=14))
    seen, edges = set(), []
    for a, b in pairs:
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            edges.append((sites[a], sites[b], draw(st.sampled_from([1, 1, 2, 3, 0.5]))))
    return sites, edges


@settings(max_examples=200, deadline=None)
@given(graphs(), st.integers(1, 5))
def test_matches_exhaustive_enumeration(graph, k) -> None:
    sites, edges = graph
    sg = SiteGraph(sites, edges)
    for src, dst in itertools.permutations(sites, 2):
        got = sg.cheapest_paths(src, dst, k)
        assert [t.path for t in got] == _brute_force(sites, edges, src, dst, k)
        for t in got:
            assert len(set(t.path)) == len(t.path)  # loop-free
            assert [(edges[e][0], edges[e][1]) for e in t.edges] == list(zip(t.path, t.path[1:]))


def test_ties_prefer_fewer_hops_then_names() -> None:
    sites = ["A", "B", "C", "D"]
    edges = [("A", "D", 2), ("A", "C", 1), ("C", "D", 1), ("A", "B", 1), ("B", "D", 1)]
    paths = [t.path for t in SiteGraph(sites, edges).cheapest_paths("A", "D", 4)]
    assert paths == [("A", "D"), ("A", "B", "D"), ("A", "C", "D")]


@pytest.mark.timeout(30)
def test_dead_end_region_is_not_enumerated() -> None:
    # One path A->B, plus a 6x6 grid hanging off A with no way on to B. Every partial path
    # into the grid looks promising to a plain best-first search (its distance estimate goes
    # back through A) and there are millions of them; the search must prune them instead.
    sites = ["A", "B"] + [f"g{i}{j}" for i in range(6) for j in range(6)]
    edges = [("A", "B", 1), ("B", "A", 1), ("A", "g00", 1), ("g00", "A", 1)]
    for i in range(6):
        for j in range(6):
            for di, dj in ((0, 1), (1, 0)):
                if i + di < 6 and j + dj < 6:
                    edges += [(f"g{i}{j}", f"g{i + di}{j + dj}", 1), (f"g{i + di}{j + dj}", f"g{i}{j}", 1)]
    got = SiteGraph(sites, edges).cheapest_paths("A", "B", 4)
    assert [t.path for t in got] == [("A", "B")]
    assert SiteGraph(sites, edges).cheapest_paths("g55", "B", 4)[0].cost == 12
