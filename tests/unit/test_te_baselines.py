"""The baselines on hand-checked instances, and the metrics that judge them."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from b4.te import Problem, build_instance, load_problem, solve
from b4.te.metrics import compare, fairness

EXAMPLE = Path(__file__).resolve().parents[2] / "topologies" / "te" / "b4-example.json"


def _diamond(weight_x: float = 1.0) -> Problem:
    # Two flow groups share S->A->T; X can also use the longer S->B->T.
    return Problem.from_dict({
        "sites": ["S", "A", "B", "T"],
        "edges": [{"src": "S", "dst": "A", "capacity": 10, "cost": 1}, {"src": "A", "dst": "T", "capacity": 10, "cost": 1},
                  {"src": "S", "dst": "B", "capacity": 6, "cost": 2}, {"src": "B", "dst": "T", "capacity": 6, "cost": 2}],
        "flow_groups": [
            {"name": "X", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": weight_x, "demand": 100}]},
            {"name": "Y", "src": "A", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 100}]}]})


def test_lp_moves_x_off_the_shared_edge() -> None:
    lp = solve(_diamond(), "lp")
    # Max-min: X gets 6 on S->B->T plus a share of A->T; equal fair shares 8 and 8.
    assert lp.rates.tolist() == pytest.approx([8.0, 8.0])
    assert lp.flow_group("X").tunnels[1].rate == pytest.approx(6.0)
    assert lp.details["lp_solves"] >= 1


def test_b4_and_shortest_on_the_diamond() -> None:
    b4 = solve(_diamond(), "b4", quantum=0)
    # Both rise on S->A->T / A->T until A->T fills at 5; X moves to S->B->T and fills it at 11.
    assert [s.fair_share for s in b4.steps] == pytest.approx([5.0, 11.0])
    assert b4.rates.tolist() == pytest.approx([11.0, 5.0])
    sp = solve(_diamond(), "shortest")
    assert sp.rates.tolist() == pytest.approx([5.0, 5.0])
    lp = solve(_diamond(), "lp")
    assert fairness(sp, lp) == pytest.approx(np.sqrt(5 / 8 * 5 / 8), rel=1e-4)  # up to the epsilon
    c = compare(b4, lp)
    assert c["throughput_ratio"] == pytest.approx(1.0) and c["saturated_edges"] == 3  # A->T, S->B, B->T


def test_weights_are_respected_by_every_algorithm() -> None:
    # With X weighted 3 on one shared edge (no detour), X gets 3/4 of it everywhere.
    p = Problem.from_dict({
        "sites": ["S", "T"], "edges": [{"src": "S", "dst": "T", "capacity": 8}],
        "flow_groups": [{"name": "X", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 3, "demand": 100}]},
                        {"name": "Y", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 100}]}]})
    for alg in ("b4", "lp", "swan", "shortest"):
        a = solve(p, alg, quantum=0)
        assert a.rates.tolist() == pytest.approx([6.0, 2.0], rel=1e-6), alg
        assert a.fair_shares.tolist() == pytest.approx([2.0, 2.0], rel=1e-6), alg


def test_swan_is_within_alpha_of_the_exact_rates_on_the_example() -> None:
    inst = build_instance(load_problem(EXAMPLE))
    lp = solve(inst, "lp")
    for alpha in (1.5, 2.0, 4.0):
        sw = solve(inst, "swan", alpha=alpha)
        assert (sw.fair_shares >= lp.fair_shares / alpha - 1e-9).all()
        assert sw.details["alpha"] == alpha


def test_demand_limited_and_zero_demand_flow_groups() -> None:
    p = Problem.from_dict({
        "sites": ["S", "T"], "edges": [{"src": "S", "dst": "T", "capacity": 10}],
        "flow_groups": [{"name": "small", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 2}]},
                        {"name": "none", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 0}]},
                        {"name": "big", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 50},
                                                                          {"name": "b", "weight": 1, "demand": 1}]}]})
    for alg in ("b4", "lp", "swan", "shortest"):
        a = solve(p, alg, quantum=0)
        assert a.rates.tolist() == pytest.approx([2.0, 0.0, 8.0], rel=1e-6), alg
        assert a.satisfied.tolist() == [True, True, False], alg
        # big: app b (weight 1, demand 1) is met at fair share 1, app a gets 7 -> fair share 7.
        assert a.fair_shares[2] == pytest.approx(7.0, rel=1e-6), alg


def test_zero_capacity_edge_freezes_at_fair_share_zero() -> None:
    p = Problem.from_dict({
        "sites": ["S", "A", "T"],
        "edges": [{"src": "S", "dst": "T", "capacity": 0, "cost": 1}, {"src": "S", "dst": "A", "capacity": 5, "cost": 1},
                  {"src": "A", "dst": "T", "capacity": 5, "cost": 1}],
        "flow_groups": [{"name": "X", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 9}]}]})
    b4 = solve(p, "b4", quantum=0)
    assert b4.steps[0].fair_share == 0.0 and b4.rates[0] == pytest.approx(5.0)
    assert b4.flow_group("X").tunnel_group == [(("S", "T"), 0.0), (("S", "A", "T"), 1.0)]
    assert solve(p, "shortest").rates[0] == 0.0
    assert solve(p, "lp").rates[0] == pytest.approx(5.0)


def test_unknown_algorithm() -> None:
    with pytest.raises(ValueError, match="unknown algorithm"):
        solve(load_problem(EXAMPLE), "magic")


def test_lp_per_flow_group_fallback_gives_the_same_allocation(monkeypatch) -> None:
    # When duals show no bottleneck (degenerate optima), every remaining flow group gets its own
    # LP. Force that path and check it freezes the same flow groups at the same levels.
    import b4.te.max_min_lp as mml

    inst = build_instance(load_problem(EXAMPLE))
    normal = solve(inst, "lp")
    monkeypatch.setattr(mml, "_DUAL_TOL", float("inf"))
    forced = solve(inst, "lp")
    assert forced.details["fallback_checks"] > 0 and normal.details["fallback_checks"] == 0
    assert forced.rates.tolist() == pytest.approx(normal.rates.tolist(), rel=1e-7)
    diamond = solve(_diamond(), "lp")
    assert diamond.rates.tolist() == pytest.approx([8.0, 8.0])


def test_lp_time_limit() -> None:
    from b4.te.generate import b4_like
    from b4.te.tunnel_lp import LPTimeout

    inst = build_instance(b4_like(600))
    with pytest.raises(LPTimeout):
        solve(inst, "lp", time_limit_s=1e-4)
    assert solve(inst, "lp", time_limit_s=600).details["lp_solves"] > 0


def _transit() -> Problem:
    # X's cheapest tunnel S->A->T crosses the only edges of Y1 (S->A) and Y2 (A->T); X also has
    # the direct S->T (cost 3). All weights 1, demands far above capacity.
    return Problem.from_dict({
        "sites": ["S", "A", "T"],
        "edges": [{"src": "S", "dst": "A", "capacity": 10, "cost": 1}, {"src": "A", "dst": "T", "capacity": 10, "cost": 1},
                  {"src": "S", "dst": "T", "capacity": 10, "cost": 3}],
        "flow_groups": [
            {"name": "X", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 100}]},
            {"name": "Y1", "src": "S", "dst": "A", "apps": [{"name": "a", "weight": 1, "demand": 100}]},
            {"name": "Y2", "src": "A", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 100}]}]})


def test_b4_gap_to_the_lp_is_the_published_greedy() -> None:
    """Why b4 trails the LP in throughput and fairness: by design, not by a bug.

    B4's tunnel-group generation keeps X on its preferred tunnel S->A->T until an edge of it
    fills: S->A and A->T both fill at fair share 5 (X 5, Y1 5, Y2 5), Y1 and Y2 have no tunnel
    left and stop, X moves to S->T and fills it (X 15). The exact max-min allocation routes X
    only on S->T: 10 each. Throughput 25 vs 30, fairness (10/15 * 5/10 * 5/10)^(1/3).
    """
    b4 = solve(_transit(), "b4", quantum=0)
    assert [s.fair_share for s in b4.steps] == pytest.approx([5.0, 15.0])
    assert b4.rates.tolist() == pytest.approx([15.0, 5.0, 5.0])
    assert b4.tunnel_rates[0, :2].tolist() == pytest.approx([5.0, 10.0])
    lp = solve(_transit(), "lp")
    assert lp.rates.tolist() == pytest.approx([10.0, 10.0, 10.0])
    assert lp.tunnel_rates[0, :2].tolist() == pytest.approx([0.0, 10.0], abs=1e-9)
    c = compare(b4, lp)
    assert c["throughput_ratio"] == pytest.approx(25 / 30)
    assert c["fairness"] == pytest.approx((10 / 15 * 5 / 10 * 5 / 10) ** (1 / 3), rel=1e-4)
