"""b4r (B4 with re-routing): B4's properties on random instances, and the gap B4 leaves closed."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from b4.te import Application, Edge, FlowGroup, Problem, build_instance, solve
from b4.te.b4r import b4r
from b4.te.metrics import compare
from b4.te.quantization import quantize
from tests.unit.test_te_baselines import _transit
from tests.unit.test_te_properties import (_feasible, _saturated, _tunnel_edges, check_quantized,
                                           problems)

# b4r runs several fills and one LP per example: fewer examples than B4's own property tests.
FAST = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_three_flow_groups_reach_the_lp() -> None:
    # B4's greedy leaves X's first 5 units on S->A->T, the only path of Y1 and Y2 (25 vs 30);
    # b4r moves them to S->T and reaches the exact max-min allocation.
    inst = build_instance(_transit())
    a = b4r(inst)
    lp = solve(inst, "lp")
    assert a.algorithm == "b4r" and a.quantum == 0
    assert a.rates.tolist() == pytest.approx(lp.rates.tolist(), rel=1e-9)
    assert a.tunnel_rates[0, :2].tolist() == pytest.approx([0.0, 10.0], abs=1e-9)
    c = compare(a, lp)
    assert c["throughput_ratio"] == pytest.approx(1.0) and c["fairness"] == pytest.approx(1.0)
    assert compare(solve(inst, "b4", quantum=0), lp)["throughput_ratio"] == pytest.approx(25 / 30)


def test_a_breakpoint_an_ulp_above_the_last_satisfaction_level_is_still_probed() -> None:
    """Found by hypothesis: a b4r subflow's breakpoint, computed from scaled weights and
    demands, came out 7.500000000000001 for its satisfaction level 7.5; the fill skipped it
    and gave the subflow its demand over a full edge (S2->S4 at 10.62 of 10)."""
    e = [("S0", "S1", 1.0), ("S1", "S2", 10.0), ("S2", "S3", 5.0), ("S3", "S4", 4.0),
         ("S4", "S0", 2.5), ("S1", "S0", 10.0), ("S4", "S3", 0.0), ("S2", "S4", 10.0),
         ("S3", "S2", 0.0), ("S4", "S1", 10.0)]
    fgs = [("S2", "S0", ((10.0, 7.5),)), ("S1", "S4", ((1.0, 3.0), (0.5, 1.0))),
           ("S1", "S4", ((1.0, 7.5), (0.5, 0.0))), ("S0", "S3", ((0.5, 5.0),)),
           ("S1", "S0", ((1.0, 5.0),))]
    p = Problem(sites=("S0", "S1", "S2", "S3", "S4"),
                edges=tuple(Edge(a, b, c, 1.0) for a, b, c in e),
                flow_groups=tuple(FlowGroup(f"FG{i}", src, dst, tuple(
                    Application(f"a{j}", w, d) for j, (w, d) in enumerate(apps)))
                    for i, (src, dst, apps) in enumerate(fgs)),
                max_tunnels=3, quantum=0.25)
    inst = build_instance(p)
    for merge in (True, False):
        _feasible(b4r(inst, merge=merge))


@FAST
@given(problems())
def test_b4r_unquantized(p: Problem) -> None:
    inst = build_instance(p)
    a = b4r(inst)
    _feasible(a)
    assert np.allclose(a.weights.sum(axis=1), 1.0)
    assert (a.weights[inst.fg_tunnels < 0] == 0).all()
    assert np.allclose(a.tunnel_rates, a.weights * a.rates[:, None], atol=1e-9)
    # Pareto: every flow group short of its demand has a saturated edge on each of its tunnels.
    sat = _saturated(inst, a.edge_loads)
    for g in np.flatnonzero(~a.satisfied):
        for k in range(inst.num_tunnels(g)):
            assert sat[_tunnel_edges(inst, g, k)].any(), f"FG{g} tunnel {k} could carry more"


@FAST
@given(problems(), st.sampled_from([1.0, 0.5, 0.25, 1 / 3, 0.125]))
def test_b4r_quantized(p: Problem, quantum: float) -> None:
    base = b4r(build_instance(p))
    a = quantize(base, quantum)
    assert a.algorithm == "b4r" and a.unquantized is base
    check_quantized(a, quantum, base)
