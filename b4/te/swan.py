"""SWAN's approximate max-min fairness (Hong et al., SIGCOMM 2013, section 4.3).

Fair-share levels grow geometrically, ``U, U*alpha, U*alpha^2, ...``; at each level one
multi-commodity flow LP maximizes throughput with every unfrozen flow group's rate between
its bandwidth at the previous level and at this one, and frozen flow groups fixed. Flow
groups that end below their upper bound cannot grow further and freeze. Each rate is then
within a factor ``alpha`` of its fair rate; ``ceil(log_alpha(max level / U))`` LPs suffice.

Weighted by the bandwidth functions: the bounds at a level are ``B_g(level)``, so SWAN works
in fair-share units exactly like the other algorithms here. ``U`` is a level every flow group can
reach at once (so the first step already respects the alpha bound): the smaller of the
lowest application breakpoint and ``min_e C_e / (sum of initial slopes of the flow groups
with a tunnel across e)``. A tiny cost term makes the LP prefer cheaper tunnels among
throughput-equal solutions, as SWAN's formulation does.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np
import scipy.sparse as sp

from b4.te.allocation import Allocation, split_weights
from b4.te.instance import Instance
from b4.te.tunnel_lp import INF, LPError, flow_columns, make_solver, set_row_bounds, solve

log = logging.getLogger(__name__)

DEFAULT_ALPHA = 2.0
_PATH_COST_EPS = 1e-6


def swan(inst: Instance, alpha: float = DEFAULT_ALPHA) -> Allocation:
    """SWAN's approximate max-min allocation with geometric factor ``alpha`` (> 1)."""
    if not alpha > 1:
        raise ValueError(f"alpha must be > 1, got {alpha}")
    t0 = time.perf_counter()
    G, E = inst.num_flow_groups, inst.num_edges
    g_idx, k_idx, mx = flow_columns(inst)
    X = len(g_idx)
    fx = sp.csr_matrix((np.ones(X), (g_idx, np.arange(X))), shape=(G, X))
    tunnel_cost = np.array([inst.tunnels[t].cost for t in inst.fg_tunnels[g_idx, k_idx]])
    top_cost = tunnel_cost.max() if X and tunnel_cost.max() > 0 else 1.0
    # Maximize throughput; the cost term only breaks ties between equal-throughput solutions.
    col_cost = 1.0 - _PATH_COST_EPS * tunnel_cost / top_cost
    h = make_solver(sp.vstack([mx, fx], format="csc"), col_cost, np.zeros(X), np.full(X, INF),
                    np.concatenate([np.full(E, -INF), np.zeros(G)]),
                    np.concatenate([inst.capacity, np.zeros(G)]), maximize=True)
    w, d = inst.app_weight, inst.app_demand
    sat = d[d > 0] / w[d > 0]
    top = float(sat.max()) if len(sat) else 0.0
    lowest = min(float(sat.min()) if len(sat) else 0.0, _common_level_bound(inst, mx, g_idx))
    n_levels = 1 if lowest <= 0 or top <= lowest else math.ceil(math.log(top / lowest, alpha) - 1e-12) + 1
    frozen = inst.fg_demand <= 0
    rate = np.zeros(G)
    prev_level = 0.0
    x = np.zeros(X)
    solves = 0
    for i in range(n_levels):
        level = top if i == n_levels - 1 else lowest * alpha ** i
        act = np.flatnonzero(~frozen)
        if len(act) == 0:
            break
        # Unfrozen flow groups reached the previous level's bound; never ask for more than they got.
        lo = np.minimum(inst.bandwidths(prev_level)[act], rate[act])
        hi = inst.bandwidths(level)[act]
        set_row_bounds(h, E + act, lo, hi)
        solves += 1
        if not solve(h):
            raise LPError(f"SWAN LP infeasible at level {level}")
        sol = h.getSolution()
        x = np.asarray(sol.col_value, dtype=float)
        got = np.asarray(sol.row_value, dtype=float)[E + act]
        # Below the upper bound: the flow group cannot grow any more (SWAN freezes it);
        # at its demand it is done.
        stuck = got < hi - 1e-7 * np.maximum(hi, 1.0)
        done = hi >= inst.fg_demand[act] * (1 - 1e-12)
        newly = act[stuck | done]
        rate[act] = got
        frozen[newly] = True
        set_row_bounds(h, E + newly, got[stuck | done], got[stuck | done])
        prev_level = level
    tunnel_rates = np.zeros(inst.fg_tunnels.shape)
    tunnel_rates[g_idx, k_idx] = np.maximum(x, 0.0)
    runtime = time.perf_counter() - t0
    log.debug("swan: %d LPs in %.3f s", solves, runtime)
    return Allocation("swan", inst, tunnel_rates, split_weights(inst, tunnel_rates), runtime,
                      details={"lp_solves": solves, "alpha": alpha})


def _common_level_bound(inst: Instance, mx: sp.csc_matrix, g_idx: np.ndarray) -> float:
    """A fair share every flow group can have at the same time, whatever its tunnel.

    ``B_g(f) <= slope_g(0) * f`` (bandwidth functions are concave), so if every flow group
    crossed every edge any of its tunnels uses, level ``C_e / sum slope_g(0)`` would still fit.
    Edges without capacity are left out: the flow groups they block reach nothing anyway.
    """
    slope0 = np.bincount(inst.app_fg, weights=np.where(inst.app_demand > 0, inst.app_weight, 0.0),
                         minlength=inst.num_flow_groups)
    crosses = sp.csr_matrix((np.ones(len(g_idx)), (g_idx, np.arange(len(g_idx)))),
                            shape=(inst.num_flow_groups, len(g_idx))) @ mx.T  # (G, E) tunnel-edge counts
    per_edge = (crosses > 0).T.astype(float) @ slope0
    ok = (inst.capacity > 0) & (per_edge > 0)
    return float((inst.capacity[ok] / per_edge[ok]).min()) if ok.any() else math.inf
