"""B4 with re-routing (``b4r``): B4's tunnel-group generation, then per-tunnel split refinement.

B4's greedy loses throughput and fairness because flow it placed on a tunnel is never moved
once an edge of that tunnel saturates (tests/unit/test_te_baselines.py, three flow groups).
b4r starts from B4's allocation and refines the splits, as Soroush's adaptive waterfiller
does (Namyar et al., NSDI 2024), here with B4's bandwidth functions: every (flow group,
tunnel) becomes its own subflow whose bandwidth function is the flow group's scaled by its
split, all subflows are filled together (progressive filling, each stopping at its first
saturated edge), and the splits become each tunnel's share of the flow group's rate.

* The update is over-relaxed: a tunnel's share moves by its per-unit rate relative to the
  flow group's best tunnel, to the power :data:`POWER` (1 is the plain waterfiller's update),
  which reaches the fixed point in fewer fills.
* A small floor (:data:`SPLIT_FLOOR`) keeps every tunnel in play so an abandoned one can come
  back; the last fill runs without it and drops shares under :data:`DROP_BELOW`, so a tunnel
  the refinement abandoned carries nothing (the three flow groups: X leaves S->A->T).
* A subflow stops at its share of the demand even when the flow group's other tunnels are
  blocked; a last pass of B4's greedy on the capacity left over hands it to flow groups whose
  demand is still unmet, so every flow group short of its demand is blocked on every tunnel.
* Finally one LP (``polish``): the most throughput with no flow group below its refined rate
  (a Pareto improvement, as Soroush follows its waterfiller with one LP). The refinement
  gets fairness close to the exact allocation but leaves capacity idle that the exact one
  uses on longer tunnels (germany50: throughput 0.967 of exact); the LP puts it to use.
* Flow groups with the same tunnel list are merged first (:mod:`b4.te.merge`; in the exact
  allocation they end at one fair share): B4-like 2,700 flow groups -> 240 classes. B4's
  greedy is the same on the merged problem (flow groups of one site pair rise together on the
  same tunnel); each member gets ``B_g`` at its class's fair share, on the class's splits.

The result is unquantized; :func:`b4.te.quantization.quantize` quantizes it like B4's own.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import scipy.sparse as sp

from b4.te.allocation import Allocation, split_weights
from b4.te.fair_share import Routes, raise_fair_share
from b4.te.instance import Instance
from b4.te.merge import Merged, member_rates, merge_flow_groups, split_to_members
from b4.te.tunnel_lp import INF, LPError, flow_columns, make_solver, solve

log = logging.getLogger(__name__)

#: Refinement fills after B4's greedy, at most (see :func:`refine` for the early stop).
ROUNDS = 8
#: Mean change of a flow group's splits (sum over its tunnels) under which they have settled.
SETTLED = 0.005
#: Over-relaxation of the split update (see module docstring).
POWER = 3.0
#: Split floor during refinement (fraction of a flow group's rate kept on each tunnel).
SPLIT_FLOOR = 0.02
#: Shares below this are dropped in the last fill.
DROP_BELOW = 0.05


def b4r(inst: Instance, rounds: int = ROUNDS, *, merge: bool = True, polish: bool = True) -> Allocation:
    """B4 with re-routing (unquantized): B4's greedy, then ``rounds`` split refinements.

    Returns an Allocation with algorithm "b4r"; ``details`` has the number of fills run, of
    classes the flow groups were merged into, and whether the Pareto LP ran.
    """
    t0 = time.perf_counter()
    merged = merge_flow_groups(inst, merge)
    work = inst if merged.num_classes == inst.num_flow_groups else _merged_instance(inst, merged)
    class_rates, freeze_level, fills = refine(work, rounds)
    if polish:
        class_rates = pareto_polish(work, class_rates)
    if work is inst:
        tunnel_rates = class_rates
    else:
        level = work.fair_shares(class_rates.sum(axis=1))
        tunnel_rates = split_to_members(inst, merged, class_rates, member_rates(inst, merged, level))
    runtime = time.perf_counter() - t0
    log.debug("b4r: %d fills on %d classes in %.4f s", fills, merged.num_classes, runtime)
    return Allocation("b4r", inst, tunnel_rates, split_weights(inst, tunnel_rates), runtime, quantum=0.0,
                      edge_freeze_level=freeze_level,
                      details={"fills": fills, "classes": merged.num_classes, "polish": polish})


def refine(inst: Instance, rounds: int = ROUNDS) -> tuple[np.ndarray, np.ndarray, int]:
    """B4's greedy, at most ``rounds`` subflow fills with split updates, then the top-up.

    Refinement stops early once the splits settle (mean change per flow group under
    :data:`SETTLED`) or stop settling (a change no smaller than the one before: the
    over-relaxed update has started to oscillate, as on the B4-like instance after 3 fills);
    the last fill is always the one without the floor. Returns per-(flow group, tunnel)
    rates, the edges' freeze levels in B4's greedy (the quantization's tie-break) and the
    number of fills run.
    """
    res = raise_fair_share(inst, Routes.tunnels(inst), move_on_freeze=True)
    rates = res.route_rates
    valid = inst.fg_tunnels >= 0
    split = _splits(rates, valid, 0.0, 0.0)
    if rounds <= 0:
        return rates + _top_up(inst, rates), res.edge_freeze_level, 0
    last_change = np.inf
    for r in range(rounds):
        last = r == rounds - 1
        if r > 0:
            # Over-relaxed update: weight each tunnel by (its per-unit rate / the best)^POWER.
            per_unit = np.divide(rates, split, out=np.zeros_like(rates), where=split > 0)
            top = per_unit.max(axis=1, keepdims=True)
            rel = np.divide(per_unit, top, out=np.zeros_like(rates), where=top > 0)
            rates = split * rel ** POWER
        new = _splits(rates, valid, 0.0 if last else SPLIT_FLOOR, DROP_BELOW if last else 0.0)
        if r > 0 and not last:
            change = float(np.abs(new - split).sum(axis=1).mean())
            if change < SETTLED or change >= last_change:
                new = _splits(rates, valid, 0.0, DROP_BELOW)
                last = True
            last_change = change
        split = new
        rates = fill_subflows(inst, split)
        if last:
            break
    return rates + _top_up(inst, rates), res.edge_freeze_level, r + 1


def _splits(rates: np.ndarray, valid: np.ndarray, floor: float, drop: float) -> np.ndarray:
    """Per-tunnel shares of each flow group's rate, shares under ``drop`` removed, then at least
    ``floor`` on every tunnel it has (a flow group with no rate splits evenly)."""
    n = valid.sum(axis=1, keepdims=True)
    total = rates.sum(axis=1, keepdims=True)
    s = np.where(total > 0, rates / np.where(total > 0, total, 1.0), valid / np.maximum(n, 1))
    if drop > 0:
        s = np.where(s >= drop, s, 0.0)
        s = s / s.sum(axis=1, keepdims=True)
    if floor > 0:
        s = np.where(valid, np.maximum(s, floor), 0.0)
        s = s / s.sum(axis=1, keepdims=True)
    return np.where(valid, s, 0.0)


def fill_subflows(inst: Instance, split: np.ndarray) -> np.ndarray:
    """Max-min fill with every (flow group, tunnel) as its own subflow, weighted by ``split``.

    Subflow (g, k) has flow group g's bandwidth function scaled by ``split[g, k]`` (every
    application's weight and demand scaled), so while none of g's subflows is stopped they
    send g's rate in the ratios ``split``; a stopped subflow leaves the others rising.
    Returns the per-(flow group, tunnel) rates (G, K).
    """
    G, K = inst.fg_tunnels.shape
    g_idx, k_idx = np.nonzero((split > 0) & (inst.fg_tunnels >= 0))
    S = len(g_idx)
    s = split[g_idx, k_idx]
    # Applications of every subflow: each of g's applications once per subflow of g
    # (applications are stored grouped by flow group).
    starts = np.searchsorted(inst.app_fg, g_idx, "left")
    counts = np.searchsorted(inst.app_fg, g_idx, "right") - starts
    sub_of = np.repeat(np.arange(S), counts)
    app = np.repeat(starts, counts) + np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    scale = s[sub_of]
    sub = Instance(
        problem=inst.problem, max_tunnels=1, tunnels=inst.tunnels,
        fg_tunnels=inst.fg_tunnels[g_idx, k_idx].reshape(S, 1), tunnel_ptr=inst.tunnel_ptr,
        tunnel_edges=inst.tunnel_edges, capacity=inst.capacity,
        app_weight=inst.app_weight[app] * scale, app_demand=inst.app_demand[app] * scale,
        app_fg=sub_of, fg_demand=inst.fg_demand[g_idx] * s, fg_satisfaction=inst.fg_satisfaction[g_idx])
    res = raise_fair_share(sub, Routes.tunnels(sub), move_on_freeze=False)
    out = np.zeros((G, K))
    out[g_idx, k_idx] = res.route_rates[:, 0]
    return out


def _top_up(inst: Instance, rates: np.ndarray) -> np.ndarray:
    """B4's greedy on the capacity left over, for the demand still unmet (module docstring).

    Each flow group grows with the summed weight of its applications not yet met, up to what
    it still lacks. Returns the extra per-(flow group, tunnel) rates.
    """
    G = len(rates)
    total = rates.sum(axis=1)
    want = np.maximum(inst.fg_demand - total, 0.0)
    want[want <= inst.fg_demand * 1e-9] = 0.0
    fs = inst.fair_shares(total)
    unmet = inst.app_demand > inst.app_weight * fs[inst.app_fg]
    w = np.bincount(inst.app_fg, weights=np.where(unmet, inst.app_weight, 0.0), minlength=G)
    w = np.where(w > 0, w, 1.0)
    sub = Instance(
        problem=inst.problem, max_tunnels=inst.max_tunnels, tunnels=inst.tunnels, fg_tunnels=inst.fg_tunnels,
        tunnel_ptr=inst.tunnel_ptr, tunnel_edges=inst.tunnel_edges,
        capacity=np.maximum(inst.capacity - inst.edge_loads(rates), 0.0),
        app_weight=w, app_demand=want, app_fg=np.arange(G), fg_demand=want,
        fg_satisfaction=np.where(want > 0, want / w, 0.0))
    return raise_fair_share(sub, Routes.tunnels(sub), move_on_freeze=True).route_rates


def _merged_instance(inst: Instance, merged: Merged) -> Instance:
    """The problem with one flow group per class: its members' applications together."""
    C = merged.num_classes
    order = np.argsort(merged.app_cls, kind="stable")
    app_cls = merged.app_cls[order]
    d, w = inst.app_demand[order], inst.app_weight[order]
    sat = np.zeros(C)
    np.maximum.at(sat, app_cls, np.where(d > 0, d / w, 0.0))
    return Instance(
        problem=inst.problem, max_tunnels=inst.max_tunnels, tunnels=inst.tunnels, fg_tunnels=merged.fg_tunnels,
        tunnel_ptr=inst.tunnel_ptr, tunnel_edges=inst.tunnel_edges, capacity=inst.capacity,
        app_weight=w, app_demand=d, app_fg=app_cls, fg_demand=np.bincount(app_cls, weights=d, minlength=C),
        fg_satisfaction=sat)


def pareto_polish(inst: Instance, rates: np.ndarray) -> np.ndarray:
    """One LP: the most throughput with no flow group below its rate in ``rates``.

    Returns per-(flow group, tunnel) rates, repaired to be exactly within capacity and
    demand (HiGHS's tolerances allow ~1e-7 over).
    """
    g_idx, k_idx, mx = flow_columns(inst)
    X, G = len(g_idx), inst.num_flow_groups
    fx = sp.csr_matrix((np.ones(X), (g_idx, np.arange(X))), shape=(G, X))
    floor = rates.sum(axis=1)
    h = make_solver(sp.vstack([mx, fx]), np.ones(X), np.zeros(X), np.full(X, INF),
                    np.concatenate([np.full(inst.num_edges, -INF), np.minimum(floor, inst.fg_demand)]),
                    np.concatenate([inst.capacity, inst.fg_demand]), maximize=True)
    h.setOptionValue("presolve", "off")  # measured: a third faster here (Uninett2010 0.26 -> 0.17 s)
    try:
        if not solve(h):  # only through round-off in ``rates``
            return rates
    except LPError:  # HiGHS gave up: the refined rates stand
        log.warning("b4r: Pareto LP not solved; keeping the refined allocation")
        return rates
    x = np.maximum(np.asarray(h.getSolution().col_value), 0.0)
    out = np.zeros_like(rates)
    out[g_idx, k_idx] = x
    # Scale every flow down by its worst edge's overload and its flow group's excess demand.
    load = inst.edge_loads(out)
    over = np.divide(inst.capacity, load, out=np.ones_like(load), where=load > inst.capacity)
    col_scale = np.ones(X)
    np.minimum.at(col_scale, np.repeat(np.arange(X), np.diff(mx.indptr)), over[mx.indices])
    out[g_idx, k_idx] = x * col_scale
    total = out.sum(axis=1)
    out *= np.divide(inst.fg_demand, total, out=np.ones(G), where=total > inst.fg_demand)[:, None]
    return out
