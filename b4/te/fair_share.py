"""Raising every flow group's fair share together until edges saturate (progressive filling).

This is the engine under B4's tunnel-group generation, the shortest-path baseline and the
re-evaluation of quantized tunnel groups. Each flow group has an ordered list of *routes*; a
route is a set of edges, each with the fraction of the flow group's rate that crosses it
(1 for a tunnel; the summed split weights for a fixed tunnel group). All active flow groups
sit at one common fair share ``f`` and send ``B_g(f) - B_g(f_switch)`` on their current
route, where ``f_switch`` is the fair share at which they moved onto it.

The run is event-driven, with no fixed fair-share step: between two events every edge load
is a sum of piecewise-linear bandwidth functions, so the next saturation is found exactly by
searching the sorted application breakpoints (the only places where slopes change) for the
first one at which some edge would be over capacity, then solving the linear piece before
it. At a saturation the edge is frozen; flow groups crossing it either move to their next
route with no frozen edge (``move_on_freeze``, B4's tunnel groups) or stop.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from b4.te.instance import Instance

log = logging.getLogger(__name__)

#: Relative slack when comparing a load to its capacity (loads are sums of floats).
CAPACITY_RTOL = 1e-9
#: Relative distance within which a computed saturation snaps onto a breakpoint, so a flow
#: group whose demand is met exactly as an edge fills counts as satisfied.
SNAP_RTOL = 1e-12


@dataclass
class Routes:
    """Ordered routes per flow group in CSR form.

    ``fg_routes[g, k]`` is the id of flow group g's k-th route (-1 pads); route r covers
    ``edges[ptr[r]:ptr[r+1]]`` with fractions ``coeff[ptr[r]:ptr[r+1]]``.
    """

    fg_routes: np.ndarray
    ptr: np.ndarray
    edges: np.ndarray
    coeff: np.ndarray

    @classmethod
    def tunnels(cls, inst: Instance) -> "Routes":
        """Every flow group's tunnels, cheapest first, each crossing its edges once."""
        return cls(inst.fg_tunnels, inst.tunnel_ptr, inst.tunnel_edges, np.ones(len(inst.tunnel_edges)))

    @classmethod
    def fixed_splits(cls, inst: Instance, weights: np.ndarray) -> "Routes":
        """One route per flow group: its tunnels mixed in the fixed ratios ``weights`` (G, K)."""
        G, K = inst.fg_tunnels.shape
        valid = (inst.fg_tunnels >= 0) & (weights > 0)
        g_idx, k_idx = np.nonzero(valid)
        tids = inst.fg_tunnels[g_idx, k_idx]
        w = weights[g_idx, k_idx]
        lengths = inst.tunnel_ptr[tids + 1] - inst.tunnel_ptr[tids]
        starts = np.repeat(inst.tunnel_ptr[tids], lengths)
        offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        edges = inst.tunnel_edges[starts + offs]
        fgs = np.repeat(g_idx, lengths)
        E = inst.num_edges
        # Sum the fractions of tunnels that share an edge: the edge carries all of them.
        key, inverse = np.unique(fgs * E + edges, return_inverse=True)
        coeff = np.bincount(inverse, weights=np.repeat(w, lengths))
        r_fg, r_edge = key // E, key % E
        counts = np.bincount(r_fg, minlength=G)
        ptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        fg_routes = np.where(counts > 0, np.arange(G), -1).reshape(G, 1)
        return cls(fg_routes.astype(np.int64), ptr, r_edge.astype(np.int64), coeff)

    def expand(self, route_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(position in route_ids, edge, fraction) for every edge of the given routes."""
        lengths = self.ptr[route_ids + 1] - self.ptr[route_ids]
        starts = np.repeat(self.ptr[route_ids], lengths)
        offs = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        pos = np.repeat(np.arange(len(route_ids)), lengths)
        return pos, self.edges[starts + offs], self.coeff[starts + offs]


@dataclass
class Step:
    """One event: the fair share it happened at and what changed."""

    fair_share: float
    frozen_edges: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    satisfied: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    moved: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    moved_to: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # route slot
    stopped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


@dataclass
class FillResult:
    """Rates per (flow group, route slot), where each flow group ended, and the event trace."""

    route_rates: np.ndarray          # (G, K)
    level: np.ndarray                # (G,) fair share at which each flow group stopped or was met
    satisfied: np.ndarray            # (G,) bool
    edge_freeze_level: np.ndarray    # (E,) fair share at which each edge froze (inf: never)
    steps: list[Step]


def raise_fair_share(inst: Instance, routes: Routes, move_on_freeze: bool, *,
                     rate_cap: np.ndarray | None = None, rate_floor: np.ndarray | None = None) -> FillResult:
    """Raise all flow groups' fair share together over ``routes`` (see module docstring).

    ``rate_cap`` stops each flow group at that rate as if it were its demand; ``rate_floor``
    gives each flow group at least that rate from the start (on its first route), so the fill
    continues an earlier allocation: a flow group grows once the common fair share passes
    its own.
    """
    cap = inst.capacity
    E = len(cap)
    G, K = routes.fg_routes.shape
    thr = cap - CAPACITY_RTOL * np.maximum(cap, 1.0)
    sat_level = inst.fg_satisfaction
    demand = inst.fg_demand
    kinks = []  # fair shares where a cap or floor bends a flow group's rate: extra probe points
    if rate_cap is not None:
        demand = np.minimum(demand, rate_cap)
        sat_level = np.minimum(sat_level, inst.fair_shares(demand))
        kinks.append(sat_level)
    floor = None
    if rate_floor is not None:
        floor = np.minimum(rate_floor, demand)
        kinks.append(inst.fair_shares(floor))
    frozen = np.zeros(E, dtype=bool)
    freeze_level = np.full(E, math.inf)
    route_rates = np.zeros((G, K))
    level = np.zeros(G)
    satisfied = np.zeros(G, dtype=bool)
    cur = np.zeros(G, dtype=np.int64)
    base = np.zeros(G)
    fixed = np.zeros(E)
    steps: list[Step] = []

    has_route = routes.fg_routes[:, 0] >= 0
    satisfied[(sat_level <= 0) | (demand <= 0)] = True
    if floor is not None:
        # Already at their demand: done from the start, their floor is background load.
        met0 = np.flatnonzero(has_route & ~satisfied & (floor >= demand))
        satisfied[met0] = True
        level[met0] = sat_level[met0]
        route_rates[met0, 0] = demand[met0]
        pos, e_, c_ = routes.expand(routes.fg_routes[met0, 0])
        fixed += np.bincount(e_, weights=c_ * demand[met0][pos], minlength=E)
    active = ~satisfied & has_route
    level[~satisfied & ~has_route] = 0.0

    # Every application breakpoint, sorted once; levels of flow groups no longer active stay
    # in the list, which only adds harmless extra probe points.
    levels = np.unique(np.concatenate(
        [inst.app_demand[inst.app_demand > 0] / inst.app_weight[inst.app_demand > 0]] + kinks))
    levels = levels[levels > 0]
    app_w, app_d, app_fg = inst.app_weight, inst.app_demand, inst.app_fg
    keep = active[app_fg]
    app_w, app_d, app_fg = app_w[keep], app_d[keep], app_fg[keep]

    f = 0.0
    # the (flow group, edge, coefficient) entries of the active tunnels; rebuilt when dirty
    ent_fg = ent_edge = np.empty(0, dtype=np.intp)
    ent_coeff = np.empty(0)
    dirty = True

    def bandwidths(x: float) -> np.ndarray:
        bw = np.bincount(app_fg, weights=np.minimum(app_w * x, app_d), minlength=G)
        if rate_cap is not None:
            bw = np.minimum(bw, demand)
        if floor is not None:
            bw = np.maximum(bw, floor)
        return bw

    def loads(bw: np.ndarray) -> np.ndarray:
        inc = bw[ent_fg] - base[ent_fg]
        return fixed + np.bincount(ent_edge, weights=ent_coeff * inc, minlength=E)

    while active.any():
        if dirty:
            act = np.flatnonzero(active)
            pos, ent_edge, ent_coeff = routes.expand(routes.fg_routes[act, cur[act]])
            ent_fg = act[pos]
            # Shrink the application arrays once most of them belong to finished flow groups.
            still = active[app_fg]
            if still.sum() < 0.5 * len(app_fg):
                app_w, app_d, app_fg = app_w[still], app_d[still], app_fg[still]
            dirty = False

        load_now = loads(bandwidths(f))
        over_now = (load_now > thr) & ~frozen
        if over_now.any():
            f_new, newly = f, over_now  # e.g. zero-capacity edges at fair share 0
        else:
            top = float(sat_level[active].max())
            # the breakpoints in (f, top), then top itself: a breakpoint computed from scaled
            # weights and demands can land an ulp above the satisfaction level it stands for
            # (7.500000000000001 for 7.5), and leaving it out skipped the last probe, so a
            # flow group was handed its demand over a full edge (b4r's subflows, +0.62 of 10)
            cand = np.append(levels[np.searchsorted(levels, f, "right"):np.searchsorted(levels, top, "left")],
                             top)
            found = _first_over(cand, lambda x: loads(bandwidths(x)), thr, frozen)
            if found is None:
                # Nothing saturates before every active flow group is satisfied.
                done = np.flatnonzero(active)
                route_rates[done, cur[done]] += demand[done] - base[done]
                satisfied[done] = True
                level[done] = sat_level[done]
                active[done] = False
                steps.append(Step(top, satisfied=done))
                break
            j, load_hi = found
            lo = f if j == 0 else float(cand[j - 1])
            hi = float(cand[j])
            load_lo = load_now if j == 0 else loads(bandwidths(lo))
            f_new, newly = _crossing(lo, hi, load_lo, load_hi, cap, thr, frozen)

        bw = bandwidths(f_new)
        load_new = loads(bw)
        newly = newly | ((load_new > thr) & ~frozen)
        step = Step(f_new)

        # Flow groups whose demand is met by now are satisfied, even if an edge of theirs
        # fills at this very fair share (B4's example: FG1 at fair share 5).
        met = np.flatnonzero(active & (sat_level <= f_new * (1 + SNAP_RTOL)))
        if len(met):
            route_rates[met, cur[met]] += demand[met] - base[met]
            satisfied[met] = True
            level[met] = sat_level[met]
            active[met] = False
            step.satisfied = met

        frozen |= newly
        freeze_level[newly] = f_new
        step.frozen_edges = np.flatnonzero(newly)
        hit = np.unique(ent_fg[newly[ent_edge]])
        hit = hit[active[hit]]
        if len(hit):
            gain = bw[hit] - base[hit]
            route_rates[hit, cur[hit]] += gain
            # Their allocation on the frozen route is final: it becomes background load.
            pos, e_, c_ = routes.expand(routes.fg_routes[hit, cur[hit]])
            fixed += np.bincount(e_, weights=c_ * gain[pos], minlength=E)
            if move_on_freeze:
                route_frozen = _route_blocked(routes, frozen)
                slot_ids = routes.fg_routes[hit]                       # (h, K)
                ok = (slot_ids >= 0) & ~route_frozen[np.maximum(slot_ids, 0)]
                has_next = ok.any(axis=1)
                nxt = np.argmax(ok, axis=1)
                mv = hit[has_next]
                cur[mv] = nxt[has_next]
                base[mv] = bw[mv]
                step.moved, step.moved_to = mv, nxt[has_next]
                stop = hit[~has_next]
            else:
                stop = hit
            active[stop] = False
            level[stop] = f_new
            step.stopped = stop
        # Satisfied flow groups leave the entry lists too: their final rates become background.
        if len(met):
            pos, e_, c_ = routes.expand(routes.fg_routes[met, cur[met]])
            fixed += np.bincount(e_, weights=c_ * (demand[met] - base[met])[pos], minlength=E)
        f = f_new
        steps.append(step)
        dirty = True

    return FillResult(route_rates, level, satisfied, freeze_level, steps)


def _route_blocked(routes: Routes, frozen: np.ndarray) -> np.ndarray:
    """For every route id, whether it crosses a frozen edge."""
    n_routes = len(routes.ptr) - 1
    route_of = np.repeat(np.arange(n_routes), np.diff(routes.ptr))
    return np.bincount(route_of, weights=frozen[routes.edges].astype(float), minlength=n_routes) > 0


def _first_over(cand: np.ndarray, load_at, thr: np.ndarray, frozen: np.ndarray):
    """Index of the first candidate fair share at which an unfrozen edge is over capacity.

    Galloping then bisection: saturations tend to come soon after the current fair share, so
    probing 1, 2, 4, ... breakpoints ahead finds the bracket in few evaluations.
    Returns ``(index, loads there)`` or None.
    """
    n = len(cand)
    if n == 0:
        return None
    cache: dict[int, np.ndarray] = {}

    def over(i: int) -> bool:
        ld = load_at(float(cand[i]))
        cache[i] = ld
        return bool(((ld > thr) & ~frozen).any())

    lo, step, i = -1, 1, 0  # invariant: cand[lo] not over (lo = -1: the current fair share)
    while True:
        if over(i):
            hi = i
            break
        lo = i
        if i == n - 1:
            return None
        i = min(i + step, n - 1)
        step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if over(mid):
            hi = mid
        else:
            lo = mid
    return hi, cache[hi]


def _crossing(lo: float, hi: float, load_lo: np.ndarray, load_hi: np.ndarray, cap: np.ndarray,
              thr: np.ndarray, frozen: np.ndarray) -> tuple[float, np.ndarray]:
    """The fair share in (lo, hi] where the first edge fills; loads are linear in between."""
    over = (load_hi > thr) & ~frozen
    idx = np.flatnonzero(over)
    rise = load_hi[idx] - load_lo[idx]
    frac = np.where(rise > 0, (cap[idx] - load_lo[idx]) / np.where(rise > 0, rise, 1.0), 0.0)
    x = lo + np.clip(frac, 0.0, 1.0) * (hi - lo)
    f_new = float(x.min())
    if hi - f_new <= SNAP_RTOL * max(1.0, hi):
        f_new = hi
    newly = np.zeros(len(cap), dtype=bool)
    newly[idx[x <= f_new * (1 + SNAP_RTOL) + SNAP_RTOL]] = True
    return f_new, newly
