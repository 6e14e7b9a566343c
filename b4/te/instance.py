"""A problem together with its tunnels, flattened into arrays every algorithm shares.

B4's TE server keeps a cache of tunnels and runs TE over it; the baselines are judged on the
same tunnel sets, so tunnels are computed once here and timed separately from TE itself.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from b4.te.bandwidth_function import BandwidthFunction
from b4.te.problem import Problem, ProblemError, check_max_tunnels
from b4.te.tunnels import Tunnel, tunnels_by_site_pair

log = logging.getLogger(__name__)


@dataclass
class Instance:
    """Arrays over edges, applications, flow groups and their tunnels.

    Tunnels are stored once per site pair (``tunnel_edges``/``tunnel_ptr`` in CSR form) and
    each flow group points at its pair's tunnels through ``fg_tunnels`` (padded with -1).
    """

    problem: Problem
    max_tunnels: int
    tunnels: list[Tunnel]                 # unique tunnels, indexed by tunnel id
    fg_tunnels: np.ndarray                # (G, K) tunnel ids per flow group, -1 padded
    tunnel_ptr: np.ndarray                # (T+1,) CSR offsets into tunnel_edges
    tunnel_edges: np.ndarray              # edge ids of all tunnels
    capacity: np.ndarray                  # (E,)
    app_weight: np.ndarray                # (A,)
    app_demand: np.ndarray                # (A,)
    app_fg: np.ndarray                    # (A,) flow group of each application
    fg_demand: np.ndarray                 # (G,)
    fg_satisfaction: np.ndarray           # (G,) fair share at which the demand is met
    tunnels_runtime_s: float = 0.0
    _fg_index: dict[str, int] = field(default_factory=dict, repr=False)

    @property
    def num_edges(self) -> int:
        return len(self.capacity)

    @property
    def num_flow_groups(self) -> int:
        return len(self.fg_demand)

    def fg_index(self, name: str) -> int:
        """Position of the flow group called ``name``."""
        if not self._fg_index:
            self._fg_index = {g.name: i for i, g in enumerate(self.problem.flow_groups)}
        return self._fg_index[name]

    def fg_tunnel_list(self, g: int) -> list[Tunnel]:
        """The tunnels of flow group ``g``, cheapest first."""
        return [self.tunnels[t] for t in self.fg_tunnels[g] if t >= 0]

    def num_tunnels(self, g: int) -> int:
        return int((self.fg_tunnels[g] >= 0).sum())

    @cached_property
    def bandwidth_functions(self) -> list[BandwidthFunction]:
        return [g.bandwidth_function for g in self.problem.flow_groups]

    def bandwidths(self, fair_share: float) -> np.ndarray:
        """Every flow group's bandwidth at one common fair share (vectorized over apps)."""
        per_app = np.minimum(self.app_weight * fair_share, self.app_demand)
        return np.bincount(self.app_fg, weights=per_app, minlength=self.num_flow_groups)

    def fair_shares(self, rates: np.ndarray) -> np.ndarray:
        """Each flow group's fair share at its rate (the inverse of its bandwidth function).

        Vectorized over applications: sorted by flow group and breakpoint, each breakpoint's
        bandwidth is the demand of the applications already flat plus the breakpoint times
        the weight of those still rising; the rate falls on the first breakpoint reaching it.
        A demand met up to rounding counts as met (the fair share where it was met).
        """
        rates = np.asarray(rates, dtype=float)
        out = np.zeros(len(rates))
        met = rates >= self.fg_demand * (1 - 1e-9)
        out[met] = self.fg_satisfaction[met]
        bp = self._breakpoints
        if len(bp["fg"]) == 0:
            return out
        fg, lvl, w_after, value, first, group_of = (bp[k] for k in ("fg", "lvl", "w_after", "value", "first", "group"))
        want = rates[fg]
        reach = value >= want * (1 - 1e-15)
        pos = np.where(reach, np.arange(len(fg)), len(fg))
        k = np.minimum.reduceat(pos, first)               # first breakpoint reaching the rate, per group
        todo = (~met[group_of]) & (rates[group_of] > 0) & (k < len(fg))
        g, kk = group_of[todo], k[todo]
        prev = kk - 1
        same = (prev >= first[todo]) if len(kk) else np.zeros(0, dtype=bool)
        lo_f = np.where(same, lvl[np.maximum(prev, 0)], 0.0)
        lo_b = np.where(same, value[np.maximum(prev, 0)], 0.0)
        slope = np.where(same, w_after[np.maximum(prev, 0)], self._fg_weight[g])
        out[g] = np.where(value[kk] == rates[g], lvl[kk], lo_f + (rates[g] - lo_b) / slope)
        return out

    @cached_property
    def _fg_weight(self) -> np.ndarray:
        d = self.app_demand > 0
        return np.bincount(self.app_fg[d], weights=self.app_weight[d], minlength=self.num_flow_groups)

    @cached_property
    def _breakpoints(self) -> dict[str, np.ndarray]:
        """Application breakpoints sorted by flow group and fair share, with running sums."""
        d = self.app_demand > 0
        idx = np.flatnonzero(d)
        lvl = self.app_demand[idx] / self.app_weight[idx]
        order = idx[np.lexsort((lvl, self.app_fg[idx]))]
        fg = self.app_fg[order]
        lvl = self.app_demand[order] / self.app_weight[order]
        first = np.flatnonzero(np.r_[True, fg[1:] != fg[:-1]]) if len(fg) else np.zeros(0, dtype=np.int64)
        # Sums within each flow group: demand of applications flat by each breakpoint, weight of
        # those still rising after it.
        cd = np.cumsum(self.app_demand[order])
        cw = np.cumsum(self.app_weight[order])
        start = np.repeat(first, np.diff(np.r_[first, len(fg)]))
        cum_d = cd - np.where(start > 0, cd[np.maximum(start - 1, 0)], 0.0)
        cum_w = cw - np.where(start > 0, cw[np.maximum(start - 1, 0)], 0.0)
        w_after = self._fg_weight[fg] - cum_w
        w_after = np.maximum(w_after, 0.0)
        value = cum_d + lvl * w_after
        return {"fg": fg, "lvl": lvl, "w_after": w_after, "value": value, "first": first, "group": fg[first]}

    def edge_loads(self, tunnel_rates: np.ndarray) -> np.ndarray:
        """Per-edge load of per-(flow group, tunnel slot) rates, shape (G, K)."""
        valid = self.fg_tunnels >= 0
        tids = self.fg_tunnels[valid]
        rates = tunnel_rates[valid]
        lengths = self.tunnel_ptr[tids + 1] - self.tunnel_ptr[tids]
        starts = np.repeat(self.tunnel_ptr[tids], lengths)
        offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        edges = self.tunnel_edges[starts + offs]
        return np.bincount(edges, weights=np.repeat(rates, lengths), minlength=self.num_edges)


def build_instance(problem: Problem, max_tunnels: int | None = None) -> Instance:
    """Compute tunnels (timed) and flatten ``problem`` into an :class:`Instance`."""
    k = check_max_tunnels(problem.max_tunnels if max_tunnels is None else max_tunnels)
    t0 = time.perf_counter()
    by_pair = tunnels_by_site_pair(problem, k)
    tunnels_runtime = time.perf_counter() - t0
    tunnels: list[Tunnel] = []
    pair_ids: dict[tuple[str, str], list[int]] = {}
    for pair in sorted(by_pair):
        ids = []
        for t in by_pair[pair]:
            ids.append(len(tunnels))
            tunnels.append(t)
        pair_ids[pair] = ids
    G = len(problem.flow_groups)
    fg_tunnels = np.full((G, k), -1, dtype=np.int64)
    for g, fg in enumerate(problem.flow_groups):
        ids = pair_ids[(fg.src, fg.dst)]
        if not ids:  # validation rules this out; kept as a guard for hand-built problems
            raise ProblemError(f"{problem.source}: flow group {fg.name}: no path from {fg.src} to {fg.dst}")
        fg_tunnels[g, :len(ids)] = ids
    lengths = np.array([len(t.edges) for t in tunnels], dtype=np.int64)
    tunnel_ptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tunnel_edges = np.array([e for t in tunnels for e in t.edges], dtype=np.int64)
    app_w, app_d, app_fg = [], [], []
    for g, fg in enumerate(problem.flow_groups):
        for a in fg.apps:
            app_w.append(a.weight)
            app_d.append(a.demand)
            app_fg.append(g)
    inst = Instance(
        problem=problem, max_tunnels=k, tunnels=tunnels, fg_tunnels=fg_tunnels,
        tunnel_ptr=tunnel_ptr, tunnel_edges=tunnel_edges,
        capacity=np.array([e.capacity for e in problem.edges], dtype=float),
        app_weight=np.array(app_w, dtype=float), app_demand=np.array(app_d, dtype=float),
        app_fg=np.array(app_fg, dtype=np.int64),
        fg_demand=np.array([fg.demand for fg in problem.flow_groups], dtype=float),
        fg_satisfaction=np.array([fg.bandwidth_function.satisfaction_level for fg in problem.flow_groups]),
        tunnels_runtime_s=tunnels_runtime)
    log.debug("instance: %d sites, %d edges, %d flow groups, %d tunnels (%.3f s)",
              len(problem.sites), inst.num_edges, G, len(tunnels), tunnels_runtime)
    return inst
