"""Problem generators: a B4-like WAN, Topology Zoo graphs with gravity demands, SNDlib instances.

All topologies come from the ``topohub`` package (data ships inside it: nothing is fetched).
topohub carries no link capacities, so every link gets ``capacity`` in both directions; an
edge's cost is its great-circle length in km (at least 1), a stand-in for latency.

Demands are split into applications: each flow group gets 1 to 3 applications whose
weights come from :data:`APP_WEIGHTS` and whose demands share the flow group's demand. All
demands are finally scaled by one factor so that routing every flow group on its cheapest
path would load the edges it uses to ``load`` times their capacity on average: the network
is oversubscribed and TE has to choose. Everything is seeded and deterministic.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Iterable

import numpy as np

from b4.te.flow_group import Application, FlowGroup
from b4.te.problem import Edge, Problem, ProblemError
from b4.te.tunnels import SiteGraph

log = logging.getLogger(__name__)

#: Application weights (B4's administrator-assigned slopes), e.g. bulk copy 1, serving 10.
APP_WEIGHTS = (0.5, 1.0, 2.0, 4.0, 10.0)
DEFAULT_LOAD = 1.5
DEFAULT_CAPACITY = 100.0

#: The B4-like WAN: 16 sites on three continents (longitude, latitude) and 23 links
#: (46 directed edges), shaped after the paper's Figure 1 but made up: not Google's network.
B4_SITES: dict[str, tuple[float, float]] = {
    "sea": (-122.3, 47.6), "sfo": (-122.4, 37.8), "lax": (-118.2, 34.1), "dfw": (-96.8, 32.8),
    "chi": (-87.6, 41.9), "atl": (-84.4, 33.7), "iad": (-77.0, 38.9), "nyc": (-74.0, 40.7),
    "lon": (-0.1, 51.5), "ams": (4.9, 52.4), "fra": (8.7, 50.1), "par": (2.35, 48.85),
    "tyo": (139.7, 35.7), "tpe": (121.5, 25.0), "hkg": (114.2, 22.3), "sin": (103.8, 1.35),
}
B4_LINKS: tuple[tuple[str, str, float], ...] = (
    # North America (400 per direction)
    ("sea", "sfo", 400), ("sfo", "lax", 400), ("sea", "chi", 400), ("sfo", "dfw", 400),
    ("lax", "dfw", 400), ("dfw", "atl", 400), ("dfw", "chi", 400), ("chi", "nyc", 400),
    ("atl", "iad", 400), ("iad", "nyc", 400),
    # Europe and Asia (400)
    ("lon", "ams", 400), ("lon", "par", 400), ("ams", "fra", 400), ("par", "fra", 400),
    ("tyo", "tpe", 400), ("tpe", "hkg", 400), ("hkg", "sin", 400), ("tyo", "hkg", 400),
    # Long haul (200)
    ("nyc", "lon", 200), ("iad", "par", 200), ("sea", "tyo", 200), ("lax", "tpe", 200),
    ("fra", "sin", 200),
)


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (longitude, latitude) points."""
    (lon0, lat0), (lon1, lat1) = a, b
    p0, p1 = math.radians(lat0), math.radians(lat1)
    dp, dl = p1 - p0, math.radians(lon1 - lon0)
    h = math.sin(dp / 2) ** 2 + math.cos(p0) * math.cos(p1) * math.sin(dl / 2) ** 2
    return 6372.8 * 2 * math.asin(math.sqrt(h))


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _apps(rng: np.random.Generator, demand: float) -> tuple[Application, ...]:
    n = int(rng.integers(1, 4))
    weights = rng.choice(APP_WEIGHTS, size=n, replace=False)
    shares = rng.dirichlet(np.ones(n))
    return tuple(Application(f"app{i}", float(w), float(demand * s)) for i, (w, s) in enumerate(zip(weights, shares)))


def _edges_both_ways(links: Iterable[tuple[str, str, float, float]]) -> list[Edge]:
    out: list[Edge] = []
    seen: set[frozenset[str]] = set()
    for u, v, cap, cost in links:
        if u == v or frozenset((u, v)) in seen:
            continue  # self-loops and parallel links: B4 aggregates trunks into one edge
        seen.add(frozenset((u, v)))
        out += [Edge(u, v, cap, cost), Edge(v, u, cap, cost)]
    return out


def scale_to_load(problem: Problem, load: float) -> Problem:
    """Scale every demand so cheapest-path routing loads the used edges to ``load`` on average."""
    if not load > 0:
        raise ProblemError(f"load must be > 0, got {load}")
    graph = SiteGraph.of(problem)
    edge_load = np.zeros(len(problem.edges))
    by_dst: dict[str, Any] = {}
    for g in problem.flow_groups:
        if g.dst not in by_dst:
            by_dst[g.dst] = graph.tree_to(g.dst)
        path = graph.cheapest_paths(g.src, g.dst, 1, by_dst[g.dst])[0]
        edge_load[list(path.edges)] += g.demand
    cap = np.array([e.capacity for e in problem.edges])
    used = (edge_load > 0) & (cap > 0)
    if not used.any():
        return problem
    factor = load / float(np.mean(edge_load[used] / cap[used]))
    fgs = tuple(replace(g, apps=tuple(replace(a, demand=_round(a.demand * factor)) for a in g.apps))
                for g in problem.flow_groups)
    return replace(problem, flow_groups=fgs)


def b4_like(flow_groups: int = 2700, seed: int = 1, load: float = DEFAULT_LOAD) -> Problem:
    """A B4-sized instance: 16 sites, 46 directed edges, all 240 site pairs, ``flow_groups`` FGs."""
    rng = np.random.default_rng(seed)
    sites = list(B4_SITES)
    links = [(u, v, cap, max(1.0, round(haversine_km(B4_SITES[u], B4_SITES[v]))))
             for u, v, cap in B4_LINKS]
    edges = _edges_both_ways(links)
    pairs = [(s, t) for s in sites for t in sites if s != t]
    # Gravity: a site's mass is how big its data centers are (drawn once per seed).
    mass = dict(zip(sites, rng.uniform(1.0, 4.0, len(sites))))
    per_pair = np.full(len(pairs), flow_groups // len(pairs))
    per_pair[rng.permutation(len(pairs))[:flow_groups % len(pairs)]] += 1
    fgs = []
    for (s, t), n in zip(pairs, per_pair):
        for q in range(int(n)):
            demand = mass[s] * mass[t] * float(rng.lognormal(0.0, 1.0))
            fgs.append(FlowGroup(f"{s}-{t}-{q}", s, t, _apps(rng, demand)))
    p = Problem(tuple(sites), tuple(edges), tuple(fgs), name=f"b4-like-{flow_groups}",
                description=(f"B4-like synthetic WAN (16 sites, 46 directed edges, 240 site pairs, "
                             f"{flow_groups} flow groups; seed {seed}, load {load}); not Google's data"))
    return scale_to_load(p, load)


def _topohub(key: str) -> dict[str, Any]:
    import topohub

    try:
        return topohub.get(key)
    except KeyError:
        raise ProblemError(f"topohub has no topology {key!r}") from None


def _sites_and_edges(topo: dict[str, Any], capacity: float) -> tuple[list[str], list[Edge], dict[Any, str]]:
    names: dict[Any, str] = {}
    used: set[str] = set()
    pos: dict[Any, tuple[float, float]] = {}
    for n in topo["nodes"]:
        base = str(n.get("name") or n["id"]).strip() or str(n["id"])
        name = base if base not in used else f"{base}#{n['id']}"  # Zoo graphs repeat city names
        used.add(name)
        names[n["id"]] = name
        pos[n["id"]] = tuple(n.get("pos") or (0.0, 0.0))
    links = []
    for e in topo["edges"]:
        u, v = e["source"], e["target"]
        dist = e.get("dist")
        if dist is None:
            dist = haversine_km(pos[u], pos[v])
        links.append((names[u], names[v], capacity, max(1.0, round(float(dist)))))
    return list(names.values()), _edges_both_ways(links), names


def _reachable_pairs(sites: list[str], edges: list[Edge]) -> list[tuple[str, str]]:
    graph = SiteGraph(sites, ((e.src, e.dst, e.cost) for e in edges))
    pairs = []
    for t in sites:
        dist = graph.distances_to(t)
        pairs += [(s, t) for s in sites if s != t and s in dist]
    return sorted(pairs)


def from_zoo(name: str, pairs: int | None = 1500, flow_groups_per_pair: int = 1, seed: int = 1,
             load: float = DEFAULT_LOAD, capacity: float = DEFAULT_CAPACITY) -> Problem:
    """A Topology Zoo graph with gravity demands (mass = node degree).

    ``pairs`` caps the number of site pairs with traffic: a seeded uniform sample of the
    connected pairs (None: all of them).
    """
    topo = _topohub(f"topozoo/{name}")
    sites, edges, _ = _sites_and_edges(topo, capacity)
    rng = np.random.default_rng(seed)
    degree: dict[str, int] = {s: 0 for s in sites}
    for e in edges:
        degree[e.src] += 1
    candidates = _reachable_pairs(sites, edges)
    if pairs is not None and pairs < len(candidates):
        pick = np.sort(rng.choice(len(candidates), size=pairs, replace=False))
        candidates = [candidates[i] for i in pick]
    fgs = []
    for s, t in candidates:
        for q in range(flow_groups_per_pair):
            demand = degree[s] * degree[t] * float(rng.lognormal(0.0, 0.5))
            fgs.append(FlowGroup(f"{s}>{t}" + (f"#{q}" if flow_groups_per_pair > 1 else ""), s, t, _apps(rng, demand)))
    p = Problem(tuple(sites), tuple(edges), tuple(fgs), name=f"zoo-{name}",
                description=(f"Topology Zoo {name} via topohub; gravity demands on {len(candidates)} site pairs; "
                             f"capacity {capacity:g} per direction; seed {seed}, load {load}"))
    return scale_to_load(p, load)


def from_sndlib(name: str, seed: int = 1, load: float = DEFAULT_LOAD, capacity: float = DEFAULT_CAPACITY) -> Problem:
    """An SNDlib instance with its own demand matrix (one flow group per demand)."""
    topo = _topohub(f"sndlib/{name}")
    sites, edges, names = _sites_and_edges(topo, capacity)
    rng = np.random.default_rng(seed)
    fgs = []
    for src, row in sorted(topo["graph"]["demands"].items()):
        for dst, value in sorted(row.items()):
            s, t = names[src], names[dst]
            if value > 0 and s != t:
                fgs.append(FlowGroup(f"{s}>{t}", s, t, _apps(rng, float(value))))
    p = Problem(tuple(sites), tuple(edges), tuple(fgs), name=f"sndlib-{name}",
                description=(f"SNDlib {name} via topohub with its demand matrix ({len(fgs)} demands); "
                             f"capacity {capacity:g} per direction; seed {seed}, load {load}"))
    return scale_to_load(p, load)
