"""One entry point for every TE algorithm: what the B4 server and the CLI call.

``b4``       tunnel-group generation, then quantization to ``quantum`` (0: unquantized)
``b4r``      B4 with re-routing (`b4.te.b4r`), then quantization like ``b4``
``exact``    exact max-min fairness, fast (`b4.te.exact`: merged flow groups, linearised
             fair-share LPs, one growth LP per round, warm-started HiGHS)
``lp``       exact max-min fairness by the plain iterative LP (Danna et al.; the old baseline)
``swan``     SWAN's approximate max-min with geometric factor ``alpha``
``shortest`` every flow group on its cheapest tunnel, max-min fair rates

All are weighted by the bandwidth functions and run on the same tunnels. Quantization
applies to ``b4`` and ``b4r`` only: the baselines are the unquantized references (``shortest`` has a
single tunnel, so its split is trivially whole).
"""
from __future__ import annotations

import logging
from typing import Any

from b4.te.allocation import Allocation
from b4.te.instance import Instance, build_instance
from b4.te.problem import Problem, check_quantum
from b4.te.quantization import quantize
from b4.te.tunnel_group import generate_tunnel_groups

log = logging.getLogger(__name__)

ALGORITHMS = ("b4", "b4r", "exact", "lp", "swan", "shortest")


def solve(problem: Problem | Instance, algorithm: str = "b4", quantum: float | None = None,
          max_tunnels: int | None = None, *, alpha: float = 2.0, time_limit_s: float | None = None) -> Allocation:
    """Allocate ``problem`` with ``algorithm``.

    ``problem`` may be an :class:`Instance` to reuse its tunnels (with a different
    ``max_tunnels`` they are recomputed). ``quantum`` and ``max_tunnels`` default to the
    problem's own; ``alpha`` is SWAN's factor; ``time_limit_s`` bounds ``exact`` and ``lp``
    (LPTimeout).
    """
    if isinstance(problem, Instance):
        inst = problem
        if max_tunnels is not None and max_tunnels != inst.max_tunnels:
            inst = build_instance(inst.problem, max_tunnels)
    else:
        inst = build_instance(problem, max_tunnels)
    q = check_quantum(inst.problem.quantum if quantum is None else quantum)
    if algorithm == "b4":
        return quantize(generate_tunnel_groups(inst), q)
    if algorithm == "b4r":
        from b4.te.b4r import b4r

        return quantize(b4r(inst), q)
    if algorithm == "exact":
        from b4.te.exact import exact

        return exact(inst, time_limit_s)
    if algorithm == "lp":
        from b4.te.max_min_lp import max_min_lp

        return max_min_lp(inst, time_limit_s)
    if algorithm == "swan":
        from b4.te.swan import swan

        return swan(inst, alpha)
    if algorithm == "shortest":
        from b4.te.shortest_path import shortest_path_allocation

        return shortest_path_allocation(inst)
    raise ValueError(f"unknown algorithm {algorithm!r} (choose from {', '.join(ALGORITHMS)})")


def solve_quantized(problem: Problem | Instance, algorithm: str = "b4", **kw: Any) -> Allocation:
    """:func:`solve`, then every algorithm's splits quantized to the problem's quantum: what an
    encap switch hashing in quanta can install (``b4`` and ``b4r`` come quantized already;
    ``exact`` and the other references are quantized the same way)."""
    alloc = solve(problem, algorithm, **kw)
    q = alloc.instance.problem.quantum
    return alloc if alloc.quantum == q or q == 0 else quantize(alloc, q)
