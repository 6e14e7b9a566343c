"""Bandwidth functions: piecewise-linear, non-decreasing maps from fair share to bandwidth.

B4 (Jain et al., SIGCOMM 2013, section 4.3) gives every application a bandwidth function
``min(weight * fair_share, demand)``: its slope is the administrator's weight and it turns
flat at the measured demand. A flow group's function is the sum of its applications'
functions, which is again piecewise linear, concave and non-decreasing.

A function is stored as its breakpoints ``(fair_share, bandwidth)``, starting at ``(0, 0)``
and flat after the last one, so evaluation and its inverse are exact at every breakpoint.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable, Sequence


class BandwidthFunction:
    """A piecewise-linear, non-decreasing function from fair share to bandwidth."""

    __slots__ = ("_fs", "_bw")

    def __init__(self, breakpoints: Sequence[tuple[float, float]]):
        """Build from breakpoints ``[(0, 0), (f1, b1), ...]``; flat after the last one."""
        pts = [(float(f), float(b)) for f, b in breakpoints]
        if not pts or pts[0] != (0.0, 0.0):
            pts.insert(0, (0.0, 0.0))
        fs: list[float] = []
        bw: list[float] = []
        for f, b in pts:
            if not (math.isfinite(f) and math.isfinite(b)):
                raise ValueError(f"breakpoint ({f}, {b}) is not finite")
            if fs and (f < fs[-1] or b < bw[-1]):
                raise ValueError("breakpoints must be non-decreasing in fair share and bandwidth")
            if fs and f == fs[-1]:
                if b != bw[-1]:
                    raise ValueError(f"two bandwidths at fair share {f}")
                continue
            fs.append(f)
            bw.append(b)
        # Drop interior points on a straight line so breakpoints are exactly the slope changes.
        keep_f, keep_b = [fs[0]], [bw[0]]
        for i in range(1, len(fs)):
            if i + 1 < len(fs):
                s1 = (bw[i] - keep_b[-1]) * (fs[i + 1] - fs[i])
                s2 = (bw[i + 1] - bw[i]) * (fs[i] - keep_f[-1])
                if s1 == s2:
                    continue
            keep_f.append(fs[i])
            keep_b.append(bw[i])
        # A trailing flat segment adds nothing: the function is flat after the last point anyway.
        while len(keep_b) > 1 and keep_b[-1] == keep_b[-2]:
            keep_f.pop()
            keep_b.pop()
        self._fs = tuple(keep_f)
        self._bw = tuple(keep_b)

    @classmethod
    def application(cls, weight: float, demand: float) -> "BandwidthFunction":
        """One application's function ``min(weight * f, demand)``."""
        if weight <= 0 or demand < 0:
            raise ValueError("weight must be > 0 and demand >= 0")
        if demand == 0:
            return cls([(0.0, 0.0)])
        return cls([(0.0, 0.0), (demand / weight, demand)])

    @classmethod
    def sum_of_applications(cls, apps: Iterable[tuple[float, float]]) -> "BandwidthFunction":
        """The sum of ``min(w * f, d)`` over ``(w, d)`` pairs, built in one sorted pass.

        At a breakpoint ``s`` the value is the demand of every application already flat plus
        ``s`` times the weight of those still rising, which keeps breakpoints exact.
        """
        items = sorted((d / w, w, d) for w, d in apps if d > 0)
        rising = math.fsum(w for _, w, _ in items)
        flat = 0.0
        pts = [(0.0, 0.0)]
        i = 0
        while i < len(items):
            s = items[i][0]
            while i < len(items) and items[i][0] == s:
                _, w, d = items[i]
                rising -= w
                flat += d
                i += 1
            rising = max(rising, 0.0)
            pts.append((s, flat + (s * rising if i < len(items) else 0.0)))
        return cls(pts)

    @property
    def breakpoints(self) -> list[tuple[float, float]]:
        """The breakpoints ``(fair_share, bandwidth)``, from ``(0, 0)`` to where it turns flat."""
        return list(zip(self._fs, self._bw))

    @property
    def demand(self) -> float:
        """The bandwidth where the function turns flat (the flow group's total demand)."""
        return self._bw[-1]

    @property
    def satisfaction_level(self) -> float:
        """The smallest fair share at which the full demand is allocated."""
        return self._fs[-1]

    def __call__(self, fair_share: float) -> float:
        """Bandwidth allocated at ``fair_share`` (exact at breakpoints, flat past the last)."""
        fs, bw = self._fs, self._bw
        if fair_share <= 0:
            return 0.0
        if fair_share >= fs[-1]:
            return bw[-1]
        k = bisect.bisect_right(fs, fair_share)  # fs[k-1] <= f < fs[k]
        if fs[k - 1] == fair_share:
            return bw[k - 1]
        f0, f1, b0, b1 = fs[k - 1], fs[k], bw[k - 1], bw[k]
        return b0 + (b1 - b0) * (fair_share - f0) / (f1 - f0)

    def inverse(self, bandwidth: float) -> float:
        """The smallest fair share whose bandwidth is at least ``bandwidth`` (inf past the demand)."""
        fs, bw = self._fs, self._bw
        if bandwidth <= 0:
            return 0.0
        if bandwidth > bw[-1]:
            return math.inf
        k = bisect.bisect_left(bw, bandwidth)  # bw[k-1] < b <= bw[k]
        if bw[k] == bandwidth:
            return fs[k]
        f0, f1, b0, b1 = fs[k - 1], fs[k], bw[k - 1], bw[k]
        return f0 + (f1 - f0) * (bandwidth - b0) / (b1 - b0)

    def slope(self, fair_share: float) -> float:
        """The slope just after ``fair_share`` (0 once flat)."""
        fs, bw = self._fs, self._bw
        if fair_share >= fs[-1]:
            return 0.0
        k = bisect.bisect_right(fs, fair_share)
        return (bw[k] - bw[k - 1]) / (fs[k] - fs[k - 1])

    def __add__(self, other: "BandwidthFunction") -> "BandwidthFunction":
        if not isinstance(other, BandwidthFunction):
            return NotImplemented
        grid = sorted(set(self._fs) | set(other._fs))
        return BandwidthFunction([(f, self(f) + other(f)) for f in grid])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BandwidthFunction) and self.breakpoints == other.breakpoints

    def __hash__(self) -> int:
        return hash((self._fs, self._bw))

    def __repr__(self) -> str:
        pts = ", ".join(f"({f:g}, {b:g})" for f, b in self.breakpoints)
        return f"BandwidthFunction([{pts}])"
