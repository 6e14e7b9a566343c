"""Synthetic topologies for scale runs: random geometric graphs and grids of any size.

Real graphs stop at 143 routers (TataNld, the largest Topology Zoo graph in topohub); these
go on, with the shape of a real backbone (planar-ish, a few links per router). Every
generator is deterministic for its arguments, returns a validated `Topology` built through
the same validator as the YAML files, and makes either an OSPF network (one area) or a BGP
one (every router its own AS, eBGP over every link, each announcing its loopback).
"""
from __future__ import annotations

import math
import random
from typing import Any

from routerlab.topology.model import Topology, TopologyError
from routerlab.topology.validate import topology_from_dict

#: 4-byte private ASNs (RFC 6996): router i is AS ASN_BASE + i
ASN_BASE = 4_200_000_000
PROTOCOLS = ("ospf", "bgp")


def ospf_timers(routers: int) -> tuple[int, int]:
    """OSPF (hello, dead) in seconds chosen for the network's size.

    Up to 200 routers the testbed's 1/4 s. Above, start-up keeps both cores busy for tens
    of seconds and a hello can be late by more than 3 s, dropping an adjacency that then has
    to be rebuilt; a longer dead interval rides that out, and from 500 routers hellos every
    2 s halve the packets every router wakes up for at rest."""
    if routers <= 200:
        return 1, 4
    if routers < 500:
        return 1, 8
    return 2, 12


def random_geometric_edges(n: int, degree: float = 3.0, seed: int = 1) -> list[tuple[int, int]]:
    """Edges of a connected random geometric graph on `n` nodes (0..n-1) in the unit square:
    nodes closer than the radius that gives `degree` links on average are joined, then each
    component is joined to the rest by its shortest possible link."""
    if n < 2:
        return []
    rng = random.Random(seed)
    pos = [(rng.random(), rng.random()) for _ in range(n)]
    radius = math.sqrt(degree / (math.pi * n))
    edges = {(i, j) for i in range(n) for j in range(i + 1, n) if math.dist(pos[i], pos[j]) < radius}
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, j in edges:
        parent[find(i)] = find(j)
    while True:
        comps: dict[int, list[int]] = {}
        for i in range(n):
            comps.setdefault(find(i), []).append(i)
        if len(comps) == 1:
            break
        # join the smallest component to its nearest node outside it
        small = min(comps.values(), key=len)
        inside = set(small)
        d, i, j = min((math.dist(pos[i], pos[j]), i, j) for i in small for j in range(n) if j not in inside)
        edges.add((min(i, j), max(i, j)))
        parent[find(i)] = find(j)
    return sorted(edges)


def grid_edges(rows: int, cols: int) -> list[tuple[int, int]]:
    """Edges of a rows x cols grid (node r*cols+c)."""
    out = []
    for r in range(rows):
        for c in range(cols):
            i = r * cols + c
            if c + 1 < cols:
                out.append((i, i + 1))
            if r + 1 < rows:
                out.append((i, i + cols))
    return out


def loopback(i: int) -> str:
    """Router i's loopback (0-based): 10.255.X.Y/32, never .0 or .255."""
    return f"10.255.{i // 250}.{i % 250 + 1}/32"


def from_edges(name: str, n: int, edges: list[tuple[int, int]], *, daemon: str = "frr",
               protocol: str = "ospf", description: str = "",
               params: dict[str, Any] | None = None) -> Topology:
    """A routerlab topology of `n` routers r1..rN joined by `edges` (0-based pairs), running
    `daemon` with `protocol` (ospf: one area, `ospf_timers` for the size; bgp: router i in AS
    ASN_BASE + i, eBGP over every link, announcing its loopback)."""
    if protocol not in PROTOCOLS:
        raise TopologyError(name, None, f"protocol {protocol!r} (known: {', '.join(PROTOCOLS)})")
    nodes: dict[str, Any] = {}
    for i in range(n):
        node: dict[str, Any] = {"loopback": loopback(i)}
        if protocol == "bgp":
            node["asn"] = ASN_BASE + i + 1
            node["originate"] = [loopback(i)]
        nodes[f"r{i + 1}"] = node
    links = [{"a": f"r{i + 1}", "b": f"r{j + 1}"} for i, j in edges]
    raw: dict[str, Any] = {"name": name, "description": description or f"{n} {daemon} routers ({protocol})",
                           "defaults": {"daemon": daemon}, "nodes": nodes, "links": links,
                           "params": {"generator": params or {}, "protocol": protocol}}
    if protocol == "ospf":
        hello, dead = ospf_timers(n)
        raw["ospf"] = {"area": 0, "hello": hello, "dead": dead}
    else:
        raw["bgp"] = {"sessions": [[link["a"], link["b"]] for link in links]}
    return topology_from_dict(raw, source=f"synthetic:{name}")


def random_geometric(n: int, *, degree: float = 3.0, seed: int = 1, daemon: str = "frr",
                     protocol: str = "ospf") -> Topology:
    """`n` routers on a connected random geometric graph (see `random_geometric_edges`)."""
    edges = random_geometric_edges(n, degree, seed)
    return from_edges(f"rgg{n}", n, edges, daemon=daemon, protocol=protocol,
                      description=f"random geometric graph, {n} routers, degree ~{degree:g}, seed {seed}",
                      params={"kind": "rgg", "degree": degree, "seed": seed})


def grid(rows: int, cols: int, *, daemon: str = "frr", protocol: str = "ospf") -> Topology:
    """`rows` x `cols` routers on a grid."""
    n = rows * cols
    return from_edges(f"grid{rows}x{cols}", n, grid_edges(rows, cols), daemon=daemon, protocol=protocol,
                      description=f"{rows} x {cols} grid", params={"kind": "grid", "rows": rows, "cols": cols})
