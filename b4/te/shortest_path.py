"""Shortest-path routing baseline: every flow group on its cheapest tunnel only.

Rates are max-min fair weighted by the bandwidth functions (progressive filling on one path
per flow group), which is what B4's gain over shortest-path routing is measured against.
"""
from __future__ import annotations

import time

import numpy as np

from b4.te.allocation import Allocation
from b4.te.instance import Instance
from b4.te.tunnel_group import rates_on_tunnel_groups


def shortest_path_allocation(inst: Instance) -> Allocation:
    """All traffic of each flow group on its first (cheapest) tunnel."""
    t0 = time.perf_counter()
    weights = np.zeros(inst.fg_tunnels.shape)
    weights[:, 0] = 1.0
    rates, res = rates_on_tunnel_groups(inst, weights)
    return Allocation("shortest", inst, rates, weights, time.perf_counter() - t0, steps=res.steps,
                      edge_freeze_level=res.edge_freeze_level)
