"""``exact``: the fast exact max-min solver against the plain iterative LP, and its parts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from b4.te import Problem, build_instance, load_problem, solve
from b4.te.exact import exact
from b4.te.generate import b4_like
from b4.te.merge import merge_flow_groups, member_rates
from b4.te.metrics import fairness
from tests.unit.test_te_baselines import _transit

EXAMPLE = Path(__file__).resolve().parents[2] / "topologies" / "te" / "b4-example.json"


def test_example_and_transit() -> None:
    ex = solve(load_problem(EXAMPLE), "exact")
    lp = solve(load_problem(EXAMPLE), "lp")
    assert ex.algorithm == "exact"
    assert ex.rates.tolist() == pytest.approx(lp.rates.tolist(), rel=1e-9)
    t = solve(_transit(), "exact")
    assert t.rates.tolist() == pytest.approx([10.0, 10.0, 10.0])
    assert t.tunnel_rates[0, :2].tolist() == pytest.approx([0.0, 10.0], abs=1e-9)


def test_merged_class_members_share_one_fair_share() -> None:
    # Three flow groups on one site pair (one merged class) with different weights and demands,
    # and a fourth on another pair competing for the same edge.
    p = Problem.from_dict({
        "sites": ["S", "T", "U"],
        "edges": [{"src": "S", "dst": "T", "capacity": 12}, {"src": "T", "dst": "U", "capacity": 100}],
        "flow_groups": [
            {"name": "a", "src": "S", "dst": "T", "apps": [{"name": "x", "weight": 1, "demand": 100}]},
            {"name": "b", "src": "S", "dst": "T", "apps": [{"name": "x", "weight": 2, "demand": 100}]},
            {"name": "c", "src": "S", "dst": "T", "apps": [{"name": "x", "weight": 1, "demand": 0.5}]},
            {"name": "d", "src": "S", "dst": "U", "apps": [{"name": "x", "weight": 1, "demand": 100}]}]})
    inst = build_instance(p)
    m = merge_flow_groups(inst)
    assert m.num_classes == 2 and m.cls[:3].tolist() == [m.cls[0]] * 3
    ex = exact(inst)
    # c is met at 0.5; a, b, d share the rest of S->T at one fair share: 1t + 2t + 1t = 11.5.
    assert ex.rates.tolist() == pytest.approx([11.5 / 4, 11.5 / 2, 0.5, 11.5 / 4])
    assert ex.fair_shares[[0, 1, 3]].tolist() == pytest.approx([11.5 / 4] * 3)
    assert member_rates(inst, m, np.array([1.0, 1.0])).tolist() == pytest.approx([1.0, 2.0, 0.5, 1.0])
    assert exact(inst, merge=False).rates.tolist() == pytest.approx(ex.rates.tolist())


def test_b4_like_equals_the_lp_with_fewer_columns() -> None:
    inst = build_instance(b4_like(600), 4)
    ex, lp = solve(inst, "exact"), solve(inst, "lp")
    assert fairness(ex, lp) >= 0.999
    assert ex.throughput == pytest.approx(lp.throughput, rel=1e-6)
    assert ex.details["classes"] == 240 and ex.details["columns"] < (inst.fg_tunnels >= 0).sum()
    # One growth LP per round at most, and fewer LPs in all than the plain LP's search.
    assert ex.details["growth_lps"] <= ex.details["rounds"]
    assert ex.details["lp_solves"] < lp.details["lp_solves"]


def test_time_limit() -> None:
    from b4.te.tunnel_lp import LPTimeout

    inst = build_instance(b4_like(600))
    with pytest.raises(LPTimeout):
        solve(inst, "exact", time_limit_s=1e-6)


def test_te_solve_lists_every_algorithm(capsys) -> None:
    import json

    from b4.te.cli import main
    from b4.te.solve import ALGORITHMS

    assert {"b4", "b4r", "exact", "lp"} <= set(ALGORITHMS)
    for alg in ALGORITHMS:
        assert main(["solve", str(EXAMPLE), "--algorithm", alg, "--json"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["algorithm"] == alg and out["throughput"] > 0
        assert out["quantum"] == (0.5 if alg in ("b4", "b4r") else 0.0)
