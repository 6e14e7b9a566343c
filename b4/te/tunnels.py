"""Tunnels: the cheapest loop-free site paths of each flow group.

A tunnel is a site-level path. Each flow group gets up to ``max_tunnels`` of them, the
cheapest by summed edge cost; ties go to fewer hops, then to the lexicographically smaller
sequence of site names, so the choice never depends on input order or hashing.

The paths come from a best-first search over simple paths guided by exact distances to the
destination (one reverse Dijkstra per destination). Because the guide never overestimates,
complete paths leave the queue in exactly the order above, so the first ``k`` are the
answer; this is much cheaper than Yen's algorithm for the small ``k`` B4 uses.
"""
from __future__ import annotations

import heapq
import logging
import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from b4.te.problem import Problem

log = logging.getLogger(__name__)

#: Costs are compared rounded to this many decimals, so that sums taken in a different
#: order (forwards along a path, backwards in Dijkstra) still tie exactly.
_COST_DECIMALS = 9


@dataclass(frozen=True)
class Tunnel:
    """A loop-free site path with the indices of the edges it crosses and its summed cost."""

    path: tuple[str, ...]
    edges: tuple[int, ...]
    cost: float

    @property
    def hops(self) -> int:
        return len(self.edges)

    def __str__(self) -> str:
        return "->".join(self.path)


class SiteGraph:
    """Adjacency view of a problem's directed edges, for path computations."""

    def __init__(self, sites: Sequence[str], edges: Iterable[tuple[str, str, float]]):
        self.sites = list(sites)
        self.out: dict[str, list[tuple[str, float, int]]] = {s: [] for s in self.sites}
        self.into: dict[str, list[tuple[str, float, int]]] = {s: [] for s in self.sites}
        for i, (u, v, c) in enumerate(edges):
            self.out[u].append((v, float(c), i))
            self.into[v].append((u, float(c), i))
        for adj in (self.out, self.into):
            for lst in adj.values():
                lst.sort()

    @classmethod
    def of(cls, problem: Problem) -> "SiteGraph":
        return cls(problem.sites, ((e.src, e.dst, e.cost) for e in problem.edges))

    def distances_to(self, dst: str) -> dict[str, tuple[float, int]]:
        """Lexicographically smallest ``(cost, hops)`` from every site to ``dst``."""
        return self.tree_to(dst)[0]

    def tree_to(self, dst: str) -> tuple[dict[str, tuple[float, int]], dict[str, str]]:
        """Distances to ``dst`` and each site's next hop on one such cheapest path."""
        dist: dict[str, tuple[float, int]] = {dst: (0.0, 0)}
        succ: dict[str, str] = {}
        heap = [(0.0, 0, dst)]
        while heap:
            c, h, v = heapq.heappop(heap)
            if dist.get(v, (math.inf, 0)) < (c, h):
                continue
            for u, w, _ in self.into[v]:
                cand = (round(c + w, _COST_DECIMALS), h + 1)
                if cand < dist.get(u, (math.inf, 0)):
                    dist[u] = cand
                    succ[u] = v
                    heapq.heappush(heap, (cand[0], cand[1], u))
        return dist, succ

    def _completes(self, v: str, dst: str, on_path: set[str], succ: dict[str, str]) -> bool:
        """Whether some loop-free continuation from ``v`` reaches ``dst``.

        Usually the cheapest path from ``v`` avoids the sites already used and answers at
        once; otherwise a search of the sites not yet used decides. Without this check a
        pair with fewer than k paths would enumerate every dead end of the graph.
        """
        u = v
        while u != dst:
            u = succ[u]
            if u in on_path:
                break
        else:
            return True
        seen = set(on_path)
        todo = [v]
        while todo:
            x = todo.pop()
            for w, _, _ in self.out[x]:
                if w == dst:
                    return True
                if w not in seen:
                    seen.add(w)
                    todo.append(w)
        return False

    def cheapest_paths(self, src: str, dst: str, k: int,
                       tree: tuple[dict[str, tuple[float, int]], dict[str, str]] | None = None) -> list[Tunnel]:
        """Up to ``k`` cheapest loop-free paths from ``src`` to ``dst`` (see module docstring)."""
        if k < 1 or src == dst:
            return []
        dist, succ = self.tree_to(dst) if tree is None else tree
        if src not in dist:
            return []
        out: list[Tunnel] = []
        hc, hh = dist[src]
        # Queue entries: (estimated cost, estimated hops, path so far, cost so far, edges so far).
        heap: list[tuple[float, int, tuple[str, ...], float, tuple[int, ...]]] = [(hc, hh, (src,), 0.0, ())]
        while heap and len(out) < k:
            _, _, path, cost, edges = heapq.heappop(heap)
            v = path[-1]
            if v == dst:
                out.append(Tunnel(path, edges, cost))
                continue
            on_path = set(path)
            if not self._completes(v, dst, on_path, succ):
                continue
            for w, c, ei in self.out[v]:
                if w in on_path or w not in dist:
                    continue
                g = round(cost + c, _COST_DECIMALS)
                dc, dh = dist[w]
                heapq.heappush(heap, (round(g + dc, _COST_DECIMALS), len(edges) + 1 + dh, path + (w,), g, edges + (ei,)))
        return out


def tunnels_by_site_pair(problem: Problem, max_tunnels: int,
                         pairs: Iterable[tuple[str, str]] | None = None) -> dict[tuple[str, str], list[Tunnel]]:
    """Tunnels for every site pair a flow group uses (flow groups of one pair share them)."""
    graph = SiteGraph.of(problem)
    wanted = sorted(set(pairs if pairs is not None else ((g.src, g.dst) for g in problem.flow_groups)))
    by_dst: dict[str, list[str]] = {}
    for s, d in wanted:
        by_dst.setdefault(d, []).append(s)
    out: dict[tuple[str, str], list[Tunnel]] = {}
    for d, srcs in by_dst.items():
        tree = graph.tree_to(d)
        for s in srcs:
            out[(s, d)] = graph.cheapest_paths(s, d, max_tunnels, tree)
    log.debug("computed tunnels for %d site pairs", len(out))
    return out
