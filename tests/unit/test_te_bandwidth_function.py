"""Bandwidth functions: sums of min(w f, d), evaluation and inverse exact at breakpoints."""
from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from b4.te import BandwidthFunction

apps = st.lists(st.tuples(st.sampled_from([0.5, 1.0, 2.0, 3.0, 10.0]), st.sampled_from([0.0, 1.0, 2.5, 5.0, 15.0, 7.25])),
                min_size=1, max_size=5)


def test_single_application() -> None:
    f = BandwidthFunction.application(0.5, 10)
    assert f.breakpoints == [(0, 0), (20, 10)]
    assert f(4) == 2 and f(20) == 10 and f(100) == 10
    assert f.inverse(2) == 4 and f.inverse(10) == 20 and f.inverse(10.5) == math.inf
    assert f.demand == 10 and f.satisfaction_level == 20


def test_paper_example_sum() -> None:
    fg1 = BandwidthFunction.sum_of_applications([(10, 15), (1, 5)])
    assert fg1.breakpoints == [(0, 0), (1.5, 16.5), (5, 20)]
    assert fg1 == BandwidthFunction.application(10, 15) + BandwidthFunction.application(1, 5)
    assert fg1.slope(0) == 11 and fg1.slope(2) == 1 and fg1.slope(5) == 0
    assert fg1.inverse(16.5) == 1.5 and fg1.inverse(20) == 5 and fg1(3) == 18


def test_rejects_decreasing_and_bad_apps() -> None:
    with pytest.raises(ValueError):
        BandwidthFunction([(0, 0), (2, 5), (3, 4)])
    with pytest.raises(ValueError):
        BandwidthFunction.application(0, 1)


@settings(max_examples=150, deadline=None)
@given(apps, st.floats(0, 50))
def test_sum_matches_pointwise_and_inverts(pairs, f) -> None:
    bf = BandwidthFunction.sum_of_applications(pairs)
    direct = sum(min(w * f, d) for w, d in pairs)
    assert bf(f) == pytest.approx(direct, rel=1e-12, abs=1e-12)
    # Exact at every breakpoint, and the inverse gives the breakpoint back.
    for x, y in bf.breakpoints:
        assert bf(x) == y
        assert x == 0 or bf.inverse(y) == x
    # Strictly increasing until the demand is met, so inverse(B(f)) == f there.
    if 0 < f < bf.satisfaction_level:
        assert bf.inverse(bf(f)) == pytest.approx(f, rel=1e-9)
    assert bf.demand == pytest.approx(sum(d for _, d in pairs))
    g = bf + BandwidthFunction.application(1.0, 3.0)
    assert g(f) == pytest.approx(bf(f) + min(f, 3.0))


@settings(max_examples=80, deadline=None)
@given(apps, st.floats(0, 40), st.floats(0, 40))
def test_monotone(pairs, a, b) -> None:
    bf = BandwidthFunction.sum_of_applications(pairs)
    lo, hi = sorted((a, b))
    assert bf(lo) <= bf(hi)
    assert bf.inverse(bf(lo)) <= bf.inverse(bf(hi)) + 1e-12
