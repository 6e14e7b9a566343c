"""How allocations are judged: throughput, edge utilization, fairness against the exact one.

Fairness follows Soroush (Namyar et al., NSDI 2024): the geometric mean over flow groups of
``min(a/b, b/a)``, where ``a`` is the flow group's rate in the allocation judged and ``b``
its rate in the exact max-min allocation. A small epsilon (1e-6 of the mean demand) is added
to both so that a flow group both allocations starve counts as equal instead of 0/0.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from b4.te.allocation import Allocation

FAIRNESS_EPS_REL = 1e-6


def throughput(alloc: Allocation) -> float:
    """Total rate over all flow groups."""
    return alloc.throughput


def utilization(alloc: Allocation) -> np.ndarray:
    """Per-edge load divided by capacity."""
    return alloc.utilization


def fairness(alloc: Allocation, exact: Allocation) -> float:
    """Geometric mean over flow groups of min(a/b, b/a) against ``exact`` (1 = identical)."""
    a, b = alloc.rates, exact.rates
    if len(a) == 0:
        return 1.0
    eps = FAIRNESS_EPS_REL * max(float(np.mean(alloc.instance.fg_demand)), 1e-12)
    ratio = (np.minimum(a, b) + eps) / (np.maximum(a, b) + eps)
    return float(math.exp(np.mean(np.log(ratio))))


def compare(alloc: Allocation, exact: Allocation) -> dict[str, Any]:
    """The benchmark's numbers for one allocation against an exact one (``exact`` or ``lp``);
    ``speedup`` here is of ``runtime_s`` (the benchmark replaces it with a ratio of CPU times)."""
    util = alloc.utilization
    finite = util[np.isfinite(util)]
    return {
        "algorithm": alloc.algorithm,
        "quantum": alloc.quantum,
        "runtime_s": alloc.runtime_s,
        "throughput": alloc.throughput,
        "throughput_ratio": alloc.throughput / exact.throughput if exact.throughput > 0 else 1.0,
        "fairness": fairness(alloc, exact),
        "speedup": exact.runtime_s / alloc.runtime_s if alloc.runtime_s > 0 else math.inf,
        "satisfied": int(alloc.satisfied.sum()),
        "max_utilization": float(finite.max()) if len(finite) else 0.0,
        "mean_utilization": float(finite.mean()) if len(finite) else 0.0,
        "saturated_edges": int((finite >= 1 - 1e-6).sum()),
    }
