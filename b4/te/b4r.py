"""B4 with re-routing (``b4r``): B4's tunnel-group generation, then per-tunnel split refinement.

B4's greedy loses throughput and fairness because flow it placed on a tunnel is never moved
once an edge of that tunnel saturates (tests/unit/test_te_baselines.py, three flow groups).
b4r starts from B4's allocation and refines the splits (Soroush's adaptive waterfilling,
Namyar et al., NSDI 2024, applied to B4's bandwidth functions): every (flow group, tunnel)
becomes its own subflow whose bandwidth function is the flow group's scaled by its split,
all subflows are filled together (progressive filling, each stopping at its first saturated
edge), and the splits become each tunnel's share of the flow group's resulting rate. A small
floor keeps every tunnel in play so an abandoned one can come back; the last fill runs
without it, so a tunnel the refinement dropped carries nothing. The update is over-relaxed
(a tunnel's share moves by its per-unit rate relative to the flow group's best tunnel, to
the power POWER), which reaches the fixed point in fewer fills; a last pass of B4's greedy on
the capacity left over hands it to flow groups whose demand is still unmet.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from b4.te.allocation import Allocation, split_weights
from b4.te.fair_share import Routes, raise_fair_share
from b4.te.instance import Instance

log = logging.getLogger(__name__)

#: Refinement rounds after B4's greedy.
ROUNDS = 4
#: Over-relaxation of the split update: shares move by (per-unit rate / best per-unit rate)^POWER.
POWER = 3.0
#: Split floor during refinement (fraction of a flow group's rate kept on each tunnel).
SPLIT_FLOOR = 0.02
#: Splits below this fraction are dropped in the last fill.
DROP_BELOW = 0.05


def b4r(inst: Instance, rounds: int = ROUNDS, floor: float = SPLIT_FLOOR, power: float = POWER,
        drop: float = DROP_BELOW, top_up: bool = True) -> Allocation:
    """B4 with re-routing (unquantized): B4's greedy, then ``rounds`` split refinements.

    Returns an unquantized Allocation (algorithm "b4r"); :func:`b4.te.quantization.quantize`
    quantizes it like B4's own.
    """
    t0 = time.perf_counter()
    res = raise_fair_share(inst, Routes.tunnels(inst), move_on_freeze=True)
    rates = res.route_rates
    valid = inst.fg_tunnels >= 0
    split = _splits(inst, rates, valid, 0.0, 0.0)
    for r in range(rounds):
        last = r == rounds - 1
        if r > 0 and power != 1.0:
            per_unit = np.divide(rates, split, out=np.zeros_like(rates), where=split > 0)
            top = per_unit.max(axis=1, keepdims=True)
            rel = np.divide(per_unit, top, out=np.zeros_like(rates), where=top > 0)
            rates = split * rel ** power
        split = _splits(inst, rates, valid, 0.0 if last else floor, drop if last else 0.0)
        rates = fill_subflows(inst, split)
    if top_up:
        rates = rates + _top_up(inst, rates)
    weights = split_weights(inst, rates)
    runtime = time.perf_counter() - t0
    return Allocation("b4r", inst, rates, weights, runtime, quantum=0.0,
                      edge_freeze_level=res.edge_freeze_level, details={"rounds": rounds})


def _splits(inst: Instance, rates: np.ndarray, valid: np.ndarray, floor: float, drop: float) -> np.ndarray:
    """Per-tunnel shares of each flow group's rate, with ``floor`` on every tunnel it has and
    shares under ``drop`` removed (flow groups with no rate split evenly)."""
    n = valid.sum(axis=1, keepdims=True)
    total = rates.sum(axis=1, keepdims=True)
    even = valid / np.maximum(n, 1)
    s = np.where(total > 0, rates / np.where(total > 0, total, 1.0), even)
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
    # Applications of every subflow: each of g's applications once per subflow of g.
    starts = np.searchsorted(inst.app_fg, g_idx, "left")
    counts = np.searchsorted(inst.app_fg, g_idx, "right") - starts
    sub_of = np.repeat(np.arange(S), counts)
    offs = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    app = np.repeat(starts, counts) + offs
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
    """B4's greedy on the capacity left over, for the demand still unmet: a subflow stops at
    its share of the demand even when the flow group's other tunnels are blocked, which can
    leave capacity that the flow group could use. Each flow group grows with the summed
    weight of its applications not yet met."""
    total = rates.sum(axis=1)
    want = np.maximum(inst.fg_demand - total, 0.0)
    want[want <= inst.fg_demand * 1e-9] = 0.0
    resid = np.maximum(inst.capacity - inst.edge_loads(rates), 0.0)
    fs = inst.fair_shares(total)
    unmet = inst.app_demand > inst.app_weight * fs[inst.app_fg]
    w = np.bincount(inst.app_fg, weights=np.where(unmet, inst.app_weight, 0.0), minlength=len(total))
    w = np.where(w > 0, w, 1.0)
    G = len(total)
    sub = Instance(
        problem=inst.problem, max_tunnels=inst.max_tunnels, tunnels=inst.tunnels, fg_tunnels=inst.fg_tunnels,
        tunnel_ptr=inst.tunnel_ptr, tunnel_edges=inst.tunnel_edges, capacity=resid,
        app_weight=w, app_demand=want, app_fg=np.arange(G), fg_demand=want,
        fg_satisfaction=np.where(want > 0, want / w, 0.0))
    res = raise_fair_share(sub, Routes.tunnels(sub), move_on_freeze=True)
    return res.route_rates
