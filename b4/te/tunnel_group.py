"""Tunnel groups: B4's tunnel-group generation, and max-min rates for fixed tunnel groups.

Tunnel-group generation (B4 section 4.3): raise every flow group's fair share together, each
on its preferred tunnel (the cheapest with no frozen edge); the edge that saturates at the
lowest fair share is frozen together with every tunnel crossing it; flow groups on those
tunnels move to their next tunnel; repeat until each flow group is satisfied or has no
tunnel left. A flow group's tunnel group is its per-tunnel rates normalised into weights.
"""
from __future__ import annotations

import logging
import time

import numpy as np

from b4.te.allocation import Allocation, split_weights
from b4.te.fair_share import FillResult, Routes, raise_fair_share
from b4.te.instance import Instance

log = logging.getLogger(__name__)


def generate_tunnel_groups(inst: Instance) -> Allocation:
    """B4's tunnel-group generation (unquantized); the trace is in ``Allocation.steps``."""
    t0 = time.perf_counter()
    res = raise_fair_share(inst, Routes.tunnels(inst), move_on_freeze=True)
    weights = split_weights(inst, res.route_rates)
    runtime = time.perf_counter() - t0
    log.debug("tunnel-group generation: %d events in %.4f s", len(res.steps), runtime)
    return Allocation("b4", inst, res.route_rates, weights, runtime, quantum=0.0, steps=res.steps,
                      edge_freeze_level=res.edge_freeze_level)


def rates_on_tunnel_groups(inst: Instance, weights: np.ndarray,
                           target: np.ndarray | None = None) -> tuple[np.ndarray, FillResult]:
    """Max-min fair rates (weighted by bandwidth functions) when splits are fixed.

    Each flow group sends its rate over its tunnels in the ratios ``weights`` (G, K), so it
    crosses an edge with the summed weight of its tunnels there; raising all fair shares
    together and stopping every flow group at its first saturated edge gives the max-min
    fair rates for those splits. Returns per-tunnel rates (G, K) and the fill result.

    With ``target`` (the rates TE computed before quantization), the fill first stops every
    flow group at its target and only then continues max-min from there: the quantized
    splits keep as much of TE's allocation as they can carry and hand out any capacity they
    free. Without this, splits at the exact unquantized ratios would not reproduce TE's own
    allocation (which is feasible for its splits but not max-min fair for fixed splits).
    """
    routes = Routes.fixed_splits(inst, weights)
    if target is None:
        res = raise_fair_share(inst, routes, move_on_freeze=False)
    else:
        first = raise_fair_share(inst, routes, move_on_freeze=False, rate_cap=target)
        res = raise_fair_share(inst, routes, move_on_freeze=False, rate_floor=first.route_rates[:, 0])
    totals = res.route_rates[:, 0]
    return weights * totals[:, None], res
