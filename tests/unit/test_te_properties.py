"""Check 2: properties of every algorithm on random instances (hypothesis)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from b4.te import Problem, build_instance, solve
from b4.te.allocation import Allocation
from b4.te.instance import Instance
from b4.te.tunnel_group import rates_on_tunnel_groups

RTOL = 1e-7
CAPS = [0, 1, 2.5, 4, 5, 10, 10, 20]
WEIGHTS = [0.5, 1, 2, 10]
DEMANDS = [0, 1, 3, 5, 7.5, 15]


@st.composite
def problems(draw, max_sites: int = 6, max_fgs: int = 7) -> Problem:
    """Small random WANs: a directed ring (so every pair is connected) plus random edges."""
    n = draw(st.integers(2, max_sites))
    sites = [f"S{i}" for i in range(n)]
    pairs = [(i, (i + 1) % n) for i in range(n)] if n > 2 else [(0, 1), (1, 0)]
    pairs += draw(st.lists(st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)), max_size=2 * n))
    seen, edges = set(), []
    for a, b in pairs:
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            edges.append({"src": sites[a], "dst": sites[b], "capacity": draw(st.sampled_from(CAPS)),
                          "cost": draw(st.sampled_from([1, 1, 2, 3]))})
    fgs = []
    for k in range(draw(st.integers(1, max_fgs))):
        s, t = draw(st.sampled_from([(a, b) for a in range(n) for b in range(n) if a != b]))
        apps = [{"name": f"a{j}", "weight": draw(st.sampled_from(WEIGHTS)), "demand": draw(st.sampled_from(DEMANDS))}
                for j in range(draw(st.integers(1, 3)))]
        fgs.append({"name": f"FG{k}", "src": sites[s], "dst": sites[t], "apps": apps})
    return Problem.from_dict({"sites": sites, "edges": edges, "flow_groups": fgs,
                              "max_tunnels": draw(st.integers(1, 4))})


FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SLOW = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _feasible(a: Allocation) -> None:
    inst = a.instance
    assert (a.tunnel_rates >= -1e-12).all()
    assert (a.tunnel_rates[inst.fg_tunnels < 0] == 0).all()
    assert (a.edge_loads <= inst.capacity * (1 + RTOL) + 1e-9).all(), "edge above capacity"
    assert (a.rates <= inst.fg_demand * (1 + RTOL) + 1e-9).all(), "flow group above its demand"


def _saturated(inst: Instance, loads: np.ndarray) -> np.ndarray:
    return loads >= inst.capacity * (1 - RTOL) - 1e-9


def _tunnel_edges(inst: Instance, g: int, k: int) -> np.ndarray:
    t = inst.fg_tunnels[g, k]
    return inst.tunnel_edges[inst.tunnel_ptr[t]:inst.tunnel_ptr[t + 1]]


def _bottleneck_fair(a: Allocation, weights: np.ndarray) -> None:
    """Max-min fairness for fixed splits: every unsatisfied flow group has a saturated edge it
    uses on which no other flow group has a larger fair share (its bottleneck)."""
    inst = a.instance
    sat = _saturated(inst, a.edge_loads)
    G = inst.num_flow_groups
    uses = [set() for _ in range(G)]
    for g in range(G):
        for k in range(inst.max_tunnels):
            if inst.fg_tunnels[g, k] >= 0 and weights[g, k] > 0:
                uses[g].update(_tunnel_edges(inst, g, k).tolist())
    fs = a.fair_shares
    for g in np.flatnonzero(~a.satisfied):
        ok = [e for e in uses[g] if sat[e] and all(fs[h] <= fs[g] * (1 + 1e-6) + 1e-9 for h in range(G) if e in uses[h])]
        assert ok, f"flow group {g} has no bottleneck edge"


@FAST
@given(problems())
def test_b4_tunnel_group_generation(p: Problem) -> None:
    a = solve(p, "b4", quantum=0)
    inst = a.instance
    _feasible(a)
    sat = _saturated(inst, a.edge_loads)
    assert np.allclose(a.weights.sum(axis=1), 1.0)
    stopped_at = {}
    for s in a.steps:
        for g in s.stopped:
            assert g not in stopped_at
            stopped_at[int(g)] = s
        # Edges frozen at a step are saturated from then on.
        assert sat[s.frozen_edges].all()
    for g in np.flatnonzero(~a.satisfied):
        # Every unsatisfied flow group has a saturated edge on each of its tunnels ...
        for k in range(inst.num_tunnels(g)):
            assert sat[_tunnel_edges(inst, g, k)].any(), f"FG{g} tunnel {k} has no saturated edge"
        # ... and stopped when the last of them froze, at exactly that event's fair share.
        s = stopped_at[int(g)]
        assert a.fair_shares[g] == pytest.approx(s.fair_share, rel=1e-7, abs=1e-9)
    # Unsatisfied flow groups that share a bottleneck (stopped by the same frozen edge) have
    # equal fair share there.
    by_edge: dict[int, list[float]] = {}
    for g, s in stopped_at.items():
        for e in s.frozen_edges:
            last = [k for k in range(inst.num_tunnels(g)) if e in _tunnel_edges(inst, g, k)]
            if last:
                by_edge.setdefault(int(e), []).append(float(a.fair_shares[g]))
    for shares in by_edge.values():
        assert max(shares) - min(shares) <= 1e-7 * max(1.0, max(shares))
    # Fair shares at satisfaction are the bandwidth function's flat point.
    for g in np.flatnonzero(a.satisfied):
        assert a.fair_shares[g] == pytest.approx(inst.fg_satisfaction[g])
    # Re-evaluating the unquantized splits with the generated rates as targets gives them back
    # (what makes ever finer quanta converge to this allocation).
    again, _ = rates_on_tunnel_groups(inst, a.weights, target=a.rates)
    assert np.allclose(again, a.tunnel_rates, rtol=1e-7, atol=1e-9)


@FAST
@given(problems(), st.sampled_from([1.0, 0.5, 0.25, 1 / 3, 0.125]))
def test_b4_quantized(p: Problem, quantum: float) -> None:
    a = solve(p, "b4", quantum=quantum)
    check_quantized(a, quantum, a.unquantized)


def check_quantized(a: Allocation, quantum: float, base: Allocation) -> None:
    """What every quantized allocation keeps (b4's and b4r's): feasible, splits in whole
    quanta summing to 1, nothing on padded tunnels, rates following the splits, no
    unsatisfied flow group that could send more, quanta only on tunnels `base` used."""
    inst = a.instance
    _feasible(a)
    units = a.weights / quantum
    assert np.allclose(units, np.round(units), atol=1e-9), "weights not multiples of the quantum"
    assert np.allclose(a.weights.sum(axis=1), 1.0, atol=1e-12)
    assert (a.weights[inst.fg_tunnels < 0] == 0).all()
    # Rates on each tunnel follow the quantized split, and no unsatisfied flow group could
    # send more with its split: each one uses a saturated edge.
    assert np.allclose(a.tunnel_rates, a.weights * a.rates[:, None], atol=1e-9)
    sat = _saturated(inst, a.edge_loads)
    for g in np.flatnonzero(~a.satisfied):
        used = [k for k in range(inst.num_tunnels(g)) if a.weights[g, k] > 0]
        assert any(sat[_tunnel_edges(inst, g, k)].any() for k in used), f"FG{g} could grow"
    # Quantization only puts quanta on tunnels the unquantized allocation used.
    assert ((a.weights > 0) <= (base.weights > 0)).all()


@FAST
@given(problems())
def test_shortest_path_is_max_min_on_one_path(p: Problem) -> None:
    a = solve(p, "shortest")
    _feasible(a)
    assert (a.tunnel_rates[:, 1:] == 0).all()
    _bottleneck_fair(a, a.weights)


@FAST
@given(problems(), st.data())
def test_rates_on_any_fixed_split_are_max_min(p: Problem, data) -> None:
    inst = build_instance(p)
    raw = np.array(data.draw(st.lists(st.lists(st.sampled_from([0.0, 1.0, 2.0, 5.0]), min_size=inst.max_tunnels,
                                                max_size=inst.max_tunnels), min_size=inst.num_flow_groups,
                                       max_size=inst.num_flow_groups)))
    raw[inst.fg_tunnels < 0] = 0
    raw[raw.sum(axis=1) == 0, 0] = 1.0
    w = raw / raw.sum(axis=1, keepdims=True)
    rates, _ = rates_on_tunnel_groups(inst, w)
    a = Allocation("fixed", inst, rates, w, 0.0)
    _feasible(a)
    _bottleneck_fair(a, w)


def _can_grow(inst: Instance, a: Allocation, g: int) -> float:
    """Largest rate flow group g can get while every flow group with a fair share at most g's
    keeps its rate (others may shrink): max-min fairness says it is g's own rate."""
    from b4.te.tunnel_lp import flow_columns

    g_idx, _, mx = flow_columns(inst)
    X = len(g_idx)
    fs, rates = a.fair_shares, a.rates
    c = -(g_idx == g).astype(float)
    A_ub, b_ub = [mx.toarray()], [inst.capacity]
    for h in range(inst.num_flow_groups):
        row = (g_idx == h).astype(float)
        A_ub.append(row[None, :])
        b_ub.append([inst.fg_demand[h]])
        if h != g and fs[h] <= fs[g] * (1 + 1e-9) + 1e-12:
            A_ub.append(-row[None, :])
            b_ub.append([-rates[h] * (1 - 1e-9)])
    res = linprog(c, A_ub=np.vstack(A_ub), b_ub=np.concatenate(b_ub), bounds=[(0, None)] * X, method="highs")
    assert res.status == 0
    return -res.fun


def _lex_at_least(x: np.ndarray, y: np.ndarray) -> bool:
    """Sorted x is lexicographically >= sorted y (with tolerance)."""
    for a, b in zip(np.sort(x), np.sort(y)):
        if a > b * (1 + 1e-6) + 1e-9:
            return True
        if a < b * (1 - 1e-6) - 1e-9:
            return False
    return True


@SLOW
@given(problems(max_sites=5, max_fgs=6))
def test_lp_is_exactly_max_min_fair(p: Problem) -> None:
    inst = build_instance(p)
    lp = solve(inst, "lp")
    _feasible(lp)
    # No flow group can grow without shrinking one with a smaller or equal fair share.
    for g in np.flatnonzero(~lp.satisfied):
        assert _can_grow(inst, lp, g) <= lp.rates[g] + 1e-6 * (1 + lp.rates[g]), f"FG{g} could grow"
    # Hence its sorted fair shares are lexicographically at least every other allocation's.
    for other in ("b4", "swan", "shortest"):
        assert _lex_at_least(lp.fair_shares, solve(inst, other, quantum=0).fair_shares), other


@SLOW
@given(problems(max_sites=5, max_fgs=6), st.sampled_from([1.5, 2.0, 4.0]))
def test_swan_is_feasible(p: Problem, alpha: float) -> None:
    a = solve(p, "swan", alpha=alpha)
    _feasible(a)
    assert np.allclose(a.weights.sum(axis=1), 1.0)
    assert a.details["lp_solves"] >= (1 if p.total_demand > 0 else 0)


def _same_allocation(a: Allocation, b: Allocation) -> None:
    """The issue's bar for 'same answer': fairness >= 0.999 and throughput within 1e-6."""
    from b4.te.metrics import fairness

    assert fairness(a, b) >= 0.999
    assert a.throughput == pytest.approx(b.throughput, rel=1e-6, abs=1e-9)
    assert a.rates == pytest.approx(b.rates, rel=1e-6, abs=1e-7)


@SLOW
@given(problems(max_fgs=9))
def test_exact_equals_the_lp(p: Problem) -> None:
    inst = build_instance(p)
    ex = solve(inst, "exact")
    _feasible(ex)
    assert np.allclose(ex.weights.sum(axis=1), 1.0)
    _same_allocation(ex, solve(inst, "lp"))


def test_exact_ends_where_a_warm_start_leaves_highs_unknown() -> None:
    """Found by the property above: zero-capacity edges, and HiGHS warm-started from the
    previous round's basis returned "Unknown"; solved again from scratch, exact = the LP."""
    e = [("S0", "S1", 0, 1), ("S1", "S2", 0, 1), ("S2", "S3", 4, 1), ("S3", "S4", 2.5, 1),
         ("S4", "S0", 5, 1), ("S2", "S0", 2.5, 1), ("S0", "S3", 5, 3), ("S0", "S2", 4, 2),
         ("S1", "S3", 0, 1)]
    g = [("S2", "S3", [(2, 3), (1, 1)]), ("S0", "S1", [(0.5, 0)]), ("S0", "S1", [(0.5, 1)]),
         ("S4", "S3", [(10, 5)]), ("S0", "S4", [(1, 1), (2, 3)]), ("S0", "S2", [(2, 3)]),
         ("S0", "S3", [(0.5, 1)])]
    p = Problem.from_dict({
        "sites": [f"S{i}" for i in range(5)], "max_tunnels": 4,
        "edges": [{"src": a, "dst": b, "capacity": c, "cost": k} for a, b, c, k in e],
        "flow_groups": [{"name": f"FG{i}", "src": s, "dst": t,
                         "apps": [{"name": f"a{j}", "weight": w, "demand": d} for j, (w, d) in enumerate(apps)]}
                        for i, (s, t, apps) in enumerate(g)]})
    inst = build_instance(p)
    _same_allocation(solve(inst, "exact"), solve(inst, "lp"))


@SLOW
@given(problems(max_sites=4, max_fgs=12))  # few sites, many flow groups: pairs carry several
def test_merging_is_exact(p: Problem) -> None:
    from b4.te.exact import exact
    from b4.te.merge import merge_flow_groups

    inst = build_instance(p)
    merged, unmerged = exact(inst), exact(inst, merge=False)
    assert merged.details["classes"] == merge_flow_groups(inst).num_classes <= inst.num_flow_groups
    assert unmerged.details["classes"] == inst.num_flow_groups
    _feasible(merged)
    # Per flow group, not only in total: every member of a class gets B_g(t_class).
    _same_allocation(merged, unmerged)
    assert merged.fair_shares == pytest.approx(unmerged.fair_shares, rel=1e-6, abs=1e-7)
