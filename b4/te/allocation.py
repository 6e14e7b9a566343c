"""Allocations: per flow group tunnel rates and split weights (its tunnel group), with views.

Every algorithm returns an :class:`Allocation`, which the B4 server turns into tunnel groups
and the CLI prints; the JSON form is the ``routerlab te solve --json`` output.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from b4.te.fair_share import Step
from b4.te.instance import Instance
from b4.te.tunnels import Tunnel

#: Relative slack used when judging "satisfied" and "saturated" on reported numbers.
REPORT_RTOL = 1e-9


def split_weights(inst: Instance, tunnel_rates: np.ndarray) -> np.ndarray:
    """Split weights from per-tunnel rates; a flow group with no rate puts all on its first tunnel."""
    total = tunnel_rates.sum(axis=1, keepdims=True)
    w = np.divide(tunnel_rates, total, out=np.zeros_like(tunnel_rates), where=total > 0)
    empty = total[:, 0] <= 0
    w[empty] = 0.0
    w[empty, 0] = 1.0
    w[inst.fg_tunnels < 0] = 0.0
    return w


@dataclass
class TunnelShare:
    """One tunnel of a tunnel group: its path, the rate on it and its split weight."""

    tunnel: Tunnel
    rate: float
    weight: float
    unquantized_weight: float | None = None

    @property
    def path(self) -> tuple[str, ...]:
        return self.tunnel.path


@dataclass
class FlowGroupAllocation:
    """What one flow group gets: total rate, fair share and its tunnel group."""

    name: str
    src: str
    dst: str
    rate: float
    demand: float
    fair_share: float
    satisfied: bool
    tunnels: list[TunnelShare]

    @property
    def tunnel_group(self) -> list[tuple[tuple[str, ...], float]]:
        """``[(path, weight), ...]``: what the encap switch hashes onto."""
        return [(t.path, t.weight) for t in self.tunnels]


@dataclass
class Allocation:
    """The result of one TE algorithm on one instance."""

    algorithm: str
    instance: Instance
    tunnel_rates: np.ndarray          # (G, K) rate per flow group per tunnel slot
    weights: np.ndarray               # (G, K) split weights, each row sums to 1
    runtime_s: float
    quantum: float = 0.0
    steps: list[Step] = field(default_factory=list)
    unquantized: "Allocation | None" = None
    edge_freeze_level: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)

    # -- numbers ----------------------------------------------------------------------------
    @cached_property
    def rates(self) -> np.ndarray:
        """Total rate per flow group."""
        return self.tunnel_rates.sum(axis=1)

    @cached_property
    def edge_loads(self) -> np.ndarray:
        return self.instance.edge_loads(self.tunnel_rates)

    @cached_property
    def fair_shares(self) -> np.ndarray:
        """Fair share per flow group: its bandwidth function's inverse at its rate."""
        return self.instance.fair_shares(self.rates)

    @cached_property
    def satisfied(self) -> np.ndarray:
        return self.rates >= self.instance.fg_demand * (1 - REPORT_RTOL)

    @property
    def throughput(self) -> float:
        """Total rate over all flow groups."""
        return float(math.fsum(self.rates))

    @property
    def utilization(self) -> np.ndarray:
        """Per-edge load over capacity (0 where the capacity is 0 and nothing crosses)."""
        cap = self.instance.capacity
        return np.divide(self.edge_loads, cap, out=np.where(self.edge_loads > 0, np.inf, 0.0), where=cap > 0)

    # -- views ------------------------------------------------------------------------------
    def flow_group(self, name_or_index: str | int) -> FlowGroupAllocation:
        """One flow group's allocation and tunnel group."""
        inst = self.instance
        g = inst.fg_index(name_or_index) if isinstance(name_or_index, str) else int(name_or_index)
        fg = inst.problem.flow_groups[g]
        shares = []
        for k, t in enumerate(inst.fg_tunnel_list(g)):
            uq = None if self.unquantized is None else float(self.unquantized.weights[g, k])
            shares.append(TunnelShare(t, float(self.tunnel_rates[g, k]), float(self.weights[g, k]), uq))
        return FlowGroupAllocation(fg.name, fg.src, fg.dst, float(self.rates[g]), float(inst.fg_demand[g]),
                                   float(self.fair_shares[g]), bool(self.satisfied[g]), shares)

    def __iter__(self):
        for g in range(self.instance.num_flow_groups):
            yield self.flow_group(g)

    def steps_json(self) -> list[dict[str, Any]]:
        """The event trace: fair share at each freeze, with what froze, moved, stopped or was met."""
        inst = self.instance
        names = [g.name for g in inst.problem.flow_groups]
        edges = inst.problem.edges
        out = []
        for s in self.steps:
            d: dict[str, Any] = {"fair_share": s.fair_share,
                                 "frozen_edges": [[edges[e].src, edges[e].dst] for e in s.frozen_edges]}
            if len(s.satisfied):
                d["satisfied"] = [names[g] for g in s.satisfied]
            if len(s.moved):
                d["moved"] = {names[g]: list(inst.tunnels[inst.fg_tunnels[g, k]].path)
                              for g, k in zip(s.moved, s.moved_to)}
            if len(s.stopped):
                d["stopped"] = [names[g] for g in s.stopped]
            out.append(d)
        return out

    def to_json(self) -> dict[str, Any]:
        """The ``routerlab te solve --json`` document."""
        inst = self.instance
        fgs: dict[str, Any] = {}
        for fa in self:
            tunnels = []
            for t in fa.tunnels:
                td: dict[str, Any] = {"path": list(t.path), "rate": t.rate, "weight": t.weight}
                if t.unquantized_weight is not None:
                    td["unquantized_weight"] = t.unquantized_weight
                tunnels.append(td)
            fgs[fa.name] = {"rate": fa.rate, "demand": fa.demand, "fair_share": fa.fair_share,
                            "satisfied": fa.satisfied, "tunnels": tunnels}
        loads = self.edge_loads
        out: dict[str, Any] = {
            "algorithm": self.algorithm,
            "throughput": self.throughput,
            "quantum": self.quantum,
            "max_tunnels": inst.max_tunnels,
            "flow_groups": fgs,
            "edges": [{"src": e.src, "dst": e.dst, "capacity": _num(e.capacity), "load": float(loads[i])}
                      for i, e in enumerate(inst.problem.edges)],
            "runtime_s": self.runtime_s,
            "tunnels_runtime_s": inst.tunnels_runtime_s,
        }
        if self.unquantized is not None:
            out["unquantized_throughput"] = self.unquantized.throughput
        if self.steps:
            out["steps"] = self.steps_json()
        if self.details:
            out["details"] = self.details
        return out


def _num(x: float) -> float | int:
    return int(x) if float(x).is_integer() else float(x)
