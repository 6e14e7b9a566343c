"""Waiting on conditions and comparing state: one idiom for library code and tests.

After FRR's topotests (`lib/topotest.py`): `subset_diff` compares an actual value against a
partial expected one and names the paths that differ; `expect` polls a function until its
result matches, logs how long that took, and fails with the last difference; `wait_for`
polls a condition until it is truthy. Nothing else in routerlab hand-writes a deadline loop
for "until this holds"."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# Errors a polled query may raise while the thing it asks is still starting (a daemon's
# socket not there yet, a command failing, half-written JSON): retried until the deadline.
RETRIED = (OSError, ValueError, RuntimeError, KeyError)


class ExpectTimeout(AssertionError, TimeoutError):
    """A condition did not hold within its deadline. An AssertionError, so a test that
    waits fails as a test failure; a TimeoutError, so library callers can catch it."""


def subset_diff(actual: Any, expected: Any, path: str = "") -> list[str] | None:
    """None if `actual` contains `expected`, else the paths that differ, one line each.

    A dict matches when every key of `expected` is in `actual` with a matching value (extra
    keys are ignored); a list matches when it has the same length and each element matches
    in order; a value that is a callable is a predicate on the actual value; anything else
    must be equal. A key whose expected value is `None` must be absent."""
    diffs: list[str] = []
    here = path or "/"
    if callable(expected) and not isinstance(expected, type):
        try:
            ok = bool(expected(actual))
        except Exception as e:  # a predicate that cannot judge the value: a difference
            ok, actual = False, f"{actual!r} ({type(e).__name__}: {e})"
        if not ok:
            name = getattr(expected, "__name__", "predicate")
            diffs.append(f"{here}: {actual!r} fails {name}")
    elif isinstance(expected, dict):
        if not isinstance(actual, dict):
            diffs.append(f"{here}: expected a mapping, got {type(actual).__name__} {actual!r}")
        else:
            for key, want in expected.items():
                sub = f"{path}/{key}"
                if want is None:
                    if key in actual:
                        diffs.append(f"{sub}: present ({actual[key]!r}), expected absent")
                elif key not in actual:
                    diffs.append(f"{sub}: missing (expected {want!r})")
                else:
                    diffs.extend(subset_diff(actual[key], want, sub) or [])
    elif isinstance(expected, (list, tuple)):
        if not isinstance(actual, (list, tuple)):
            diffs.append(f"{here}: expected a list, got {type(actual).__name__} {actual!r}")
        elif len(actual) != len(expected):
            diffs.append(f"{here}: {len(actual)} elements, expected {len(expected)}: {actual!r}")
        else:
            for i, (a, w) in enumerate(zip(actual, expected)):
                diffs.extend(subset_diff(a, w, f"{path}/{i}") or [])
    elif actual != expected:
        diffs.append(f"{here}: {actual!r}, expected {expected!r}")
    return diffs or None


#: differing paths an `expect` failure shows (a 10,000-route table can differ in every one)
SHOWN_DIFFS = 20


def _first(diff: list[str], n: int = SHOWN_DIFFS) -> list[str]:
    return diff if len(diff) <= n else [*diff[:n], f"... and {len(diff) - n} more of {len(diff)}"]


def wait_for(cond: Callable[[], T], timeout: float, interval: float = 0.2,
             what: str = "condition", retry_on: tuple[type[BaseException], ...] = RETRIED) -> T:
    """Poll `cond` until it returns a truthy value (returned) or raise `ExpectTimeout`
    naming `what`, the last value and the last error `cond` raised (errors in `retry_on`
    are retried until the deadline)."""
    start = time.monotonic()
    deadline = start + timeout
    last: Any = None
    last_exc: BaseException | None = None
    while True:
        try:
            last = cond()
            if last:
                log.debug("%s after %.2f s", what, time.monotonic() - start)
                return last
        except retry_on as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f"; last error: {last_exc}" if last_exc else ""
            raise ExpectTimeout(f"timed out after {timeout:.0f} s waiting for {what} "
                                f"(last: {last!r}{extra})")
        time.sleep(interval)


def expect(fn: Callable[[], Any], expected: Any, timeout: float, what: str,
           interval: float = 0.2, retry_on: tuple[type[BaseException], ...] = RETRIED) -> Any:
    """Poll `fn()` until `subset_diff(fn(), expected)` is None; return that value.

    Logs the time it took; on timeout raises `ExpectTimeout` with `what` and the last
    difference (or the last error `fn` raised), like topotest's `run_and_expect`."""
    start = time.monotonic()
    deadline = start + timeout
    diff: list[str] | None = ["never evaluated"]
    while True:
        try:
            value = fn()
            diff = subset_diff(value, expected)
            if diff is None:
                log.info("%s after %.2f s", what, time.monotonic() - start)
                return value
        except retry_on as e:
            diff = [f"{type(e).__name__}: {e}"]
        if time.monotonic() >= deadline:
            raise ExpectTimeout(f"timed out after {timeout:.0f} s waiting for {what}; "
                                f"last difference:\n  " + "\n  ".join(_first(diff)))
        time.sleep(interval)
