"""Exact max-min fair allocation by iterative LP (Danna, Mandal, Singh, INFOCOM 2012).

The baseline B4 compares its tunnel-group generation with: on the same tunnels, find the
largest fair share ``t`` that every unfrozen flow group can reach at once, freeze the flow
groups that cannot grow past it, fix their rates, and repeat until every flow group is
frozen or satisfied. Weighted by the bandwidth functions, exactly as B4 defines fairness.

Bandwidth functions are concave, so "rate >= B_g(t)" is not a convex constraint in ``t``.
As in Danna et al., which applications are demand-limited is found by searching: between two
consecutive application breakpoints every application is either met or on its linear piece,
so each flow group's function is linear there (``alpha_g + beta_g * t``) and one LP maximizes
``t`` within that segment. Galloping then bisection over the segments finds the one holding
the optimum. Flow groups whose rows have a non-zero dual at the optimum cannot grow without
lowering ``t`` (complementary slackness) and freeze; if degeneracy hides them, each remaining
flow group is tested with its own LP.

Solved with HiGHS through highspy; between solves only row bounds and the ``t``
coefficients change, so HiGHS warm-starts from the previous basis.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from b4.te.allocation import Allocation, split_weights
from b4.te.instance import Instance
from b4.te.tunnel_lp import (INF, LPError, LPTimeout, flow_columns, make_solver, set_col_bounds, set_row_bounds,
                             solve)

log = logging.getLogger(__name__)

_REL = 1e-9         # relative tolerance on fair-share levels
_DUAL_TOL = 1e-9    # a row dual above this marks a bottlenecked application


def max_min_lp(inst: Instance, time_limit_s: float | None = None) -> Allocation:
    """Exact max-min fair rates and splits on ``inst``'s tunnels (see module docstring).

    With ``time_limit_s``, raises :class:`~b4.te.tunnel_lp.LPTimeout` once that much time
    has gone (the benchmark's scaling run uses it to stop the LP where it gets too slow).
    """
    t0 = time.perf_counter()
    solver = _DannaLP(inst, None if time_limit_s is None else t0 + time_limit_s)
    tunnel_rates, info = solver.run()
    runtime = time.perf_counter() - t0
    log.debug("lp: %d LPs, %d rounds in %.3f s", info["lp_solves"], info["rounds"], runtime)
    return Allocation("lp", inst, tunnel_rates, split_weights(inst, tunnel_rates), runtime, details=info)


class _DannaLP:
    """Columns: one flow per (flow group, tunnel), then ``t``. Rows: edge capacities, then
    one row per flow group ``sum_k x_gk - beta_g * t >= alpha_g``, where ``alpha_g + beta_g t``
    is the flow group's bandwidth function on the segment being searched (applications met at
    the segment's start contribute their demand to alpha, the others their weight to beta).
    A frozen flow group has ``beta_g = 0`` and ``alpha_g`` its final rate."""

    def __init__(self, inst: Instance, deadline: float | None = None):
        self.inst = inst
        self.deadline = deadline
        G, E = inst.num_flow_groups, inst.num_edges
        w, d = inst.app_weight, inst.app_demand
        self.g_idx, self.k_idx, mx = flow_columns(inst)
        X = len(self.g_idx)
        self.X, self.G, self.E = X, G, E
        fx = sp.csr_matrix((np.ones(X), (self.g_idx, np.arange(X))), shape=(G, X))
        self.beta = np.bincount(inst.app_fg, weights=np.where(d > 0, w, 0.0), minlength=G)
        # Every flow group starts with its full slope on t; the search only changes it.
        ft = sp.csr_matrix(-self.beta.reshape(-1, 1))
        matrix = sp.bmat([[mx, sp.csr_matrix((E, 1))], [fx, ft]], format="csc")
        self.col_t = X
        self.sat = np.where(d > 0, d / np.where(w > 0, w, 1.0), 0.0)
        cost = np.zeros(X + 1)
        cost[self.col_t] = 1.0
        self.h = make_solver(matrix, cost, np.zeros(X + 1), np.full(X + 1, INF),
                             np.concatenate([np.full(E, -INF), np.zeros(G)]),
                             np.concatenate([inst.capacity, np.full(G, INF)]), maximize=True)
        self.frozen = inst.fg_demand <= 0     # flow groups whose rate is final
        self.rate = np.zeros(G)               # their final rate
        self.solves = 0
        self.fallback_checks = 0

    def _segment(self, fgs: np.ndarray, lo: float) -> None:
        """Load the linear piece of each flow group's bandwidth function just after ``lo``."""
        inst = self.inst
        w, d, app_fg = inst.app_weight, inst.app_demand, inst.app_fg
        met = self.sat <= lo * (1 + _REL)
        alpha = np.bincount(app_fg, weights=np.where(met, d, 0.0), minlength=self.G)[fgs]
        beta = np.bincount(app_fg, weights=np.where(met, 0.0, w), minlength=self.G)[fgs]
        self._set_rows(fgs, alpha, beta)

    def _set_rows(self, fgs: np.ndarray, alpha: np.ndarray, beta: np.ndarray) -> None:
        changed = fgs[beta != self.beta[fgs]]
        new_beta = beta[beta != self.beta[fgs]]
        for g, b in zip(changed.tolist(), new_beta.tolist()):
            self.h.changeCoeff(self.E + g, self.col_t, -b)
        self.beta[changed] = new_beta
        set_row_bounds(self.h, self.E + fgs, alpha, np.full(len(fgs), INF))

    def _probe(self, lo: float, hi: float) -> tuple[str, float]:
        """Maximize t in (lo, hi]; 'left' if the optimum is below lo, 'right' if at hi."""
        self._segment(np.flatnonzero(~self.frozen), lo)
        set_col_bounds(self.h, np.array([self.col_t]), np.array([0.0]), np.array([hi]))
        self._limit_time()
        self.solves += 1
        if not solve(self.h):
            return "left", -1.0
        t = float(self.h.getSolution().col_value[self.col_t])
        if t >= hi * (1 - _REL):
            return "right", t
        if t < lo * (1 - _REL) - 1e-12:
            return "left", t
        return "found", t

    def _limit_time(self) -> None:
        if self.deadline is not None:
            left = self.deadline - time.perf_counter()
            if left <= 0:
                raise LPTimeout("time limit reached")
            self.h.setOptionValue("time_limit", left)

    def _freeze(self, fgs: np.ndarray, t: float) -> None:
        inst = self.inst
        rates = np.bincount(inst.app_fg, weights=np.minimum(inst.app_weight * t, inst.app_demand),
                            minlength=self.G)[fgs]
        self.frozen[fgs] = True
        self.rate[fgs] = rates
        self._set_rows(fgs, rates, np.zeros(len(fgs)))

    def run(self) -> tuple[np.ndarray, dict]:
        inst = self.inst
        levels = np.unique(self.sat[self.sat > 0])
        fg_top = np.zeros(self.G)
        np.maximum.at(fg_top, inst.app_fg, self.sat)
        t_prev = 0.0
        rounds = 0
        x_best: np.ndarray | None = None
        while not self.frozen.all():
            rounds += 1
            act = np.flatnonzero(~self.frozen)
            top = float(fg_top[act].max())
            cand = levels[np.searchsorted(levels, t_prev, "right"):np.searchsorted(levels, top, "right")]
            if len(cand) == 0:  # every remaining flow group is met at t_prev
                self._freeze(act, t_prev)
                break
            j, t = self._search(cand, t_prev)
            sol = self.h.getSolution()
            x_best = np.array(sol.col_value[:self.X])
            if j is None:  # the top segment is reachable: everyone left is satisfied
                self._freeze(act, top)
                break
            duals = np.abs(np.asarray(sol.row_dual)[self.E + act])
            tight = act[(duals > _DUAL_TOL) & (self.beta[act] > 0)]
            done = act[fg_top[act] <= t * (1 + _REL)]
            freeze = np.union1d(tight, done)
            if len(tight) == 0:
                freeze = np.union1d(freeze, self._fallback(act, t))
            if len(freeze) == 0:
                raise LPError(f"no flow group could be frozen at fair share {t}")
            self._freeze(freeze, t)
            t_prev = max(t_prev, t)
        # Rates are the frozen ones; tunnels carry them in the last LP's ratios.
        if x_best is None:
            x_best = np.zeros(self.X)
        tunnel_rates = np.zeros(inst.fg_tunnels.shape)
        tunnel_rates[self.g_idx, self.k_idx] = np.maximum(x_best, 0.0)
        carried = tunnel_rates.sum(axis=1)
        scale = np.divide(self.rate, carried, out=np.zeros(self.G), where=carried > 0)
        tunnel_rates *= scale[:, None]
        missing = (carried <= 0) & (self.rate > 0)
        tunnel_rates[missing, 0] = self.rate[missing]  # only reachable through LP round-off
        return tunnel_rates, {"lp_solves": self.solves, "rounds": rounds, "fallback_checks": self.fallback_checks}

    def _search(self, cand: np.ndarray, t_prev: float) -> tuple[int | None, float]:
        """Find the segment holding the optimum: galloping from the current fair share, then
        bisection. A feasible probe that lands left of its segment still bounds the optimum
        from below, which narrows the bisection at once."""
        n = len(cand)

        def probe(j: int) -> tuple[str, float]:
            return self._probe(t_prev if j == 0 else float(cand[j - 1]), float(cand[j]))

        lo_j, step, j = -1, 1, 0  # segments <= lo_j are known to be passed ("right")
        while True:
            res, t = probe(j)
            if res == "found" or (res == "left" and j == 0):
                return j, max(t, t_prev)
            if res == "left":
                hi_j = j
                break
            lo_j = j
            if j == n - 1:
                return None, float(cand[-1])
            j = min(j + step, n - 1)
            step *= 2
        while hi_j - lo_j > 1:
            if res == "left" and t >= 0:
                # The over-constrained optimum t is a lower bound: jump to its segment.
                mid = int(np.searchsorted(cand, t, "left"))
                mid = min(max(mid, lo_j + 1), hi_j - 1)
            else:
                mid = (lo_j + hi_j) // 2
            res, t = probe(mid)
            if res == "found":
                return mid, t
            if res == "right":
                lo_j = mid
            else:
                hi_j = mid
        # lo_j reached its cap and hi_j fell short of its start: up to round-off the optimum
        # is the breakpoint between them. Solve hi_j last so its duals are the ones read.
        res, t = probe(hi_j)
        return hi_j, max(t, float(cand[lo_j])) if res != "found" else t

    def _fallback(self, act: np.ndarray, t: float) -> np.ndarray:
        """Per flow group LP: can it exceed B_g(t) while every other one keeps B(t)?"""
        h = self.h
        need = self.inst.bandwidths(t)
        self._set_rows(act, need[act], np.zeros(len(act)))
        n_cols = self.X + 1
        frozen = []
        for g in act.tolist():
            cols = np.flatnonzero(self.g_idx == g)
            cost = np.zeros(n_cols)
            cost[cols] = 1.0
            h.changeColsCost(n_cols, np.arange(n_cols, dtype=np.int32), cost)
            self._limit_time()
            self.solves += 1
            self.fallback_checks += 1
            if not solve(h):
                raise LPError("fallback check infeasible")
            best = float(np.asarray(h.getSolution().col_value)[cols].sum())
            if best <= need[g] * (1 + 1e-7) + 1e-9:
                frozen.append(g)
        cost = np.zeros(n_cols)
        cost[self.col_t] = 1.0
        h.changeColsCost(n_cols, np.arange(n_cols, dtype=np.int32), cost)
        return np.array(frozen, dtype=np.int64)
