"""Tunnel-group quantization: rounding down, greedy hand-out of leftover quanta, re-evaluation."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from b4.te import Problem, ProblemError, build_instance, load_problem, solve
from b4.te.quantization import quantize, quantize_weights
from b4.te.tunnel_group import generate_tunnel_groups

EXAMPLE = Path(__file__).resolve().parents[2] / "topologies" / "te" / "b4-example.json"


def test_example_hands_the_leftover_to_the_richer_tunnel() -> None:
    base = generate_tunnel_groups(build_instance(load_problem(EXAMPLE)))
    w = quantize_weights(base, 0.5)
    assert w[1, :2].tolist() == [0.0, 1.0]          # FG2 first: A->D->C, not A->C
    assert w[0, :3].tolist() == [0.5, 0.5, 0.0]     # then FG1
    q = quantize(base, 0.5)
    assert q.unquantized is base and q.quantum == 0.5
    assert q.throughput == pytest.approx(25.0)
    assert q.runtime_s >= base.runtime_s


def test_quantum_one_keeps_a_single_tunnel_and_zero_is_a_no_op() -> None:
    base = generate_tunnel_groups(build_instance(load_problem(EXAMPLE)))
    q = quantize(base, 1.0)
    assert (np.sort(q.weights, axis=1)[:, -1] == 1.0).all() and (q.weights.sum(axis=1) == 1.0).all()
    assert quantize(base, 0) is base


def test_invalid_quantum() -> None:
    with pytest.raises(ProblemError, match="1/n"):
        solve(load_problem(EXAMPLE), quantum=0.3)
    with pytest.raises(ProblemError):
        solve(load_problem(EXAMPLE), quantum=-0.25)


def test_tie_goes_to_the_tunnel_whose_bottleneck_froze_higher() -> None:
    # X splits 5 : 5 over two equal-cost tunnels: A->T froze at fair share 5 (shared with Y),
    # B->T at 10 (shared with Z). At quantum 1 either choice leaves X the same rate with the
    # others held, so the tie goes to the tunnel whose bottleneck froze higher: extra load there
    # squeezes richer flow groups. Re-evaluated, that gives fair shares 7.5, 7.5, 10 instead of
    # 5, 5, 15 for the other choice.
    d = {"sites": ["S", "A", "B", "T"],
         "edges": [{"src": "S", "dst": "A", "capacity": 100}, {"src": "A", "dst": "T", "capacity": 10},
                   {"src": "S", "dst": "B", "capacity": 100}, {"src": "B", "dst": "T", "capacity": 15}],
         "flow_groups": [{"name": "X", "src": "S", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 20}]},
                         {"name": "Y", "src": "A", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 50}]},
                         {"name": "Z", "src": "B", "dst": "T", "apps": [{"name": "a", "weight": 1, "demand": 16}]}]}
    p = Problem.from_dict(d)
    base = solve(p, quantum=0)
    assert base.flow_group("X").tunnel_group == [(("S", "A", "T"), 0.5), (("S", "B", "T"), 0.5)]
    assert [s.fair_share for s in base.steps] == pytest.approx([5.0, 10.0])
    alloc = solve(p, quantum=1.0)
    assert alloc.flow_group("X").tunnel_group == [(("S", "A", "T"), 0.0), (("S", "B", "T"), 1.0)]
    assert alloc.fair_shares.tolist() == pytest.approx([7.5, 10.0, 7.5])
