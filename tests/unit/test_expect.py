"""routerlab.expect: the partial comparison names the paths that differ; the pollers wait,
return the matching value, and fail with the last difference."""
from __future__ import annotations

import itertools

import pytest

from routerlab.expect import ExpectTimeout, expect, subset_diff, wait_for


def test_subset_diff_ignores_extra_keys_and_names_paths() -> None:
    actual = {"r1": {"state": "Full", "uptime": 3.2}, "r2": {"state": "Init"}, "extra": 1}
    assert subset_diff(actual, {"r1": {"state": "Full"}}) is None
    assert subset_diff(actual, {"r1": {"state": "Full"}, "r2": {"state": "Full"}, "r3": {}}) == [
        "/r2/state: 'Init', expected 'Full'", "/r3: missing (expected {})"]


def test_subset_diff_lists_predicates_and_absence() -> None:
    assert subset_diff([1, 2], [1, 2]) is None
    assert subset_diff([1], [1, 2]) == ["/: 1 elements, expected 2: [1]"]
    assert subset_diff({"n": 5}, {"n": lambda v: v > 3}) is None
    diff = subset_diff({"n": 1, "gone": 2}, {"gone": None})
    assert diff is not None and diff[0].startswith("/gone: present")
    assert subset_diff("x", {"a": 1}) == ["/: expected a mapping, got str 'x'"]


def test_expect_polls_until_the_value_matches() -> None:
    counter = itertools.count()
    value = expect(lambda: {"n": next(counter)}, {"n": 3}, timeout=5, what="n to reach 3", interval=0.001)
    assert value == {"n": 3}


def test_expect_fails_with_the_last_difference_capped() -> None:
    table = {f"10.0.{i}.0/24": "wrong" for i in range(50)}
    want = {k: "right" for k in table}
    with pytest.raises(ExpectTimeout) as e:
        expect(lambda: table, want, timeout=0.05, what="the table", interval=0.01)
    msg = str(e.value)
    assert "waiting for the table" in msg and "/10.0.0.0/24: 'wrong', expected 'right'" in msg
    assert "... and 30 more of 50" in msg and len(msg.splitlines()) == 22


def test_wait_for_retries_errors_then_reports_them() -> None:
    calls = iter([OSError("not yet"), 0, 7])

    def cond() -> int:
        v = next(calls)
        if isinstance(v, Exception):
            raise v
        return v

    assert wait_for(cond, 5, interval=0.001) == 7
    with pytest.raises(ExpectTimeout, match="waiting for nothing .*last error: boom"):
        wait_for(lambda: (_ for _ in ()).throw(ValueError("boom")), 0.02, what="nothing", interval=0.005)
