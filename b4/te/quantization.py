"""Tunnel-group quantization: split weights in whole multiples of the hardware quantum.

B4 (section 4.3) rounds each tunnel group's split ratios down to the quantum, then hands out
the remaining quanta greedily where they keep the allocation most max-min fair. The paper
gives no more detail; this module does it as follows, and reproduces the paper's example
(quantum 0.5: FG2 = 0 : 1, then FG1 = 0.5 : 0.5 : 0).

* Flow groups are quantized one at a time, highest unquantized fair share first, so that
  capacity a richer flow group gives up in rounding is there for the poorer ones quantized
  after it (the paper's example also starts with FG2, the richer one).
* A flow group's leftover quanta go out one at a time, each to one of the tunnels it uses
  (positive unquantized weight). A candidate is scored by the allocation it leads to while
  every other flow group keeps its current rates: the flow group's own resulting rate under
  the candidate split (with other flow groups unchanged, the sorted fair-share vectors of two
  candidates differ only in this entry, so this *is* the lexicographic max-min comparison).
  For the score, quanta not handed out yet are spread over what the unquantized split still
  lacks (its ratios minus the quanta already placed).
* Ties (common: e.g. the demand is met either way) go to the tunnel whose bottleneck froze at
  the highest fair share during tunnel-group generation, because extra load there can only
  squeeze richer flow groups, which max-min fairness prefers; then to the cheaper tunnel.
* Finally the rates are re-evaluated on the quantized splits, every flow group held to its
  quantized split: first max-min fair (weighted by the bandwidth functions) up to the rate
  tunnel-group generation gave it, then max-min fair beyond that with whatever capacity is
  left. The first stage keeps TE's allocation wherever the quantized splits can carry it (so
  ever finer quanta converge to the unquantized result); the second hands out capacity that
  quantization freed.
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

from b4.te.allocation import Allocation
from b4.te.instance import Instance
from b4.te.problem import check_quantum
from b4.te.tunnel_group import rates_on_tunnel_groups

log = logging.getLogger(__name__)

_TIE_RTOL = 1e-9


def quantize(alloc: Allocation, quantum: float) -> Allocation:
    """Quantize the tunnel groups of a tunnel-group-generation result to ``quantum``.

    Returns a new Allocation (algorithm "b4") whose weights are multiples of ``quantum``
    summing to 1, with rates re-evaluated on those splits; ``unquantized`` keeps the input.
    ``quantum == 0`` returns ``alloc`` unchanged.
    """
    quantum = check_quantum(quantum)
    if quantum == 0:
        return alloc
    t0 = time.perf_counter()
    weights = quantize_weights(alloc, quantum)
    rates, _ = rates_on_tunnel_groups(alloc.instance, weights, target=alloc.rates)
    runtime = time.perf_counter() - t0
    log.debug("quantization to %g in %.4f s", quantum, runtime)
    return Allocation(alloc.algorithm, alloc.instance, rates, weights, alloc.runtime_s + runtime,
                      quantum=quantum, steps=alloc.steps, unquantized=alloc,
                      edge_freeze_level=alloc.edge_freeze_level,
                      details={"generation_runtime_s": alloc.runtime_s, "quantization_runtime_s": runtime})


def quantize_weights(alloc: Allocation, quantum: float) -> np.ndarray:
    """The quantized split weights (G, K) for ``alloc`` (see module docstring)."""
    inst: Instance = alloc.instance
    n = int(round(1 / check_quantum(quantum)))
    u = alloc.weights
    units = np.floor(u * n + 1e-9).astype(np.int64)
    units[inst.fg_tunnels < 0] = 0
    leftover = n - units.sum(axis=1)

    freeze = alloc.edge_freeze_level
    if freeze is None:
        freeze = np.full(inst.num_edges, math.inf)
    bottleneck = _tunnel_bottleneck_levels(inst, freeze).tolist()
    todo = np.flatnonzero(leftover > 0)
    # Richest first; stable on index so equal fair shares keep problem order.
    todo = todo[np.argsort(-alloc.fair_shares[todo], kind="stable")]
    if len(todo) == 0:
        return units / n

    # Plain Python from here: each flow group touches a handful of tunnels and edges, where
    # list arithmetic beats numpy's per-call overhead.
    cap = inst.capacity.tolist()
    load = alloc.edge_loads.tolist()
    rates = alloc.rates.tolist()
    demand = inst.fg_demand.tolist()
    tunnel_edges = [t.edges for t in inst.tunnels]
    fg_tunnels = inst.fg_tunnels.tolist()
    u_l = u.tolist()
    units_l = units.tolist()
    tol = _TIE_RTOL
    for g in todo.tolist():
        slots = [k for k, t in enumerate(fg_tunnels[g]) if t >= 0 and u_l[g][k] > 0]
        tids = [fg_tunnels[g][k] for k in slots]
        ug = [u_l[g][k] for k in slots]
        # For every edge the flow group uses: which of its tunnels cross it, and the room it
        # would have if every other flow group kept its current rate.
        crossing: dict[int, list[int]] = {}
        for j, t in enumerate(tids):
            for e in tunnel_edges[t]:
                crossing.setdefault(e, []).append(j)
        rate_g = rates[g]
        edges = list(crossing)
        own = [rate_g * sum(ug[j] for j in crossing[e]) for e in edges]
        room = [max(cap[e] - load[e] + o, 0.0) for e, o in zip(edges, own)]
        cross = [crossing[e] for e in edges]
        q = [float(units_l[g][k]) for k in slots]
        left = n - int(sum(q))
        dem = demand[g]
        for placed in range(left):
            rest = left - placed - 1                 # quanta still to hand out after this one
            best, best_score, best_bn = 0, -1.0, -math.inf
            for c in range(len(slots)):
                cand = q[:]
                cand[c] += 1.0
                if rest:
                    # Quanta not handed out yet go where the unquantized split still lacks weight.
                    resid = [max(ug[j] * n - cand[j], 0.0) for j in range(len(cand))]
                    tot = sum(resid)
                    shares = [r / tot for r in resid] if tot > 0 else ug
                    cand = [x + rest * sh for x, sh in zip(cand, shares)]
                limit = dem
                for r_e, js in zip(room, cross):
                    frac = sum(cand[j] for j in js) / n
                    if frac > 0 and r_e / frac < limit:
                        limit = r_e / frac
                bn = bottleneck[tids[c]]
                slack = tol * max(1.0, abs(best_score))
                if limit > best_score + slack or (abs(limit - best_score) <= slack and bn > best_bn):
                    best, best_score, best_bn = c, limit, bn
            q[best] += 1.0
        for k, x in zip(slots, q):
            units_l[g][k] = int(x)
        # Update the background the next flow groups see: this one now sends on its new split.
        fracs = [sum(q[j] for j in js) / n for js in cross]
        new_rate = dem
        for r_e, fr in zip(room, fracs):
            if fr > 0 and r_e / fr < new_rate:
                new_rate = r_e / fr
        for e, fr, o in zip(edges, fracs, own):
            load[e] += fr * new_rate - o
    return np.array(units_l, dtype=float) / n


def _tunnel_bottleneck_levels(inst: Instance, freeze: np.ndarray) -> np.ndarray:
    """Per tunnel id: the lowest freeze level among its edges (inf if none froze)."""
    T = len(inst.tunnels)
    lengths = np.diff(inst.tunnel_ptr)
    tunnel_of = np.repeat(np.arange(T), lengths)
    out = np.full(T, math.inf)
    np.minimum.at(out, tunnel_of, freeze[inst.tunnel_edges])
    return out
