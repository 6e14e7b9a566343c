"""Applications and flow groups.

B4 aggregates applications into flow groups, ``{source site, destination site, QoS}``; TE
allocates to flow groups, and an application gets its share of its flow group's bandwidth
through its own bandwidth function.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from b4.te.bandwidth_function import BandwidthFunction


@dataclass(frozen=True)
class Application:
    """One application inside a flow group: ``bandwidth(f) = min(weight * f, demand)``."""

    name: str
    weight: float
    demand: float

    @property
    def satisfaction_level(self) -> float:
        """The fair share at which the application's demand is met."""
        return self.demand / self.weight

    def bandwidth(self, fair_share: float) -> float:
        """The application's bandwidth at ``fair_share``."""
        return min(self.weight * fair_share, self.demand)


@dataclass(frozen=True)
class FlowGroup:
    """Traffic from ``src`` to ``dst`` of one QoS class: the unit TE allocates to."""

    name: str
    src: str
    dst: str
    apps: tuple[Application, ...] = field(default_factory=tuple)

    @cached_property
    def bandwidth_function(self) -> BandwidthFunction:
        """The sum of the applications' bandwidth functions."""
        return BandwidthFunction.sum_of_applications((a.weight, a.demand) for a in self.apps)

    @property
    def demand(self) -> float:
        """Total demand of the flow group (where its bandwidth function turns flat)."""
        return self.bandwidth_function.demand

    def app_bandwidths(self, fair_share: float) -> dict[str, float]:
        """How a flow group's allocation at ``fair_share`` divides among its applications."""
        return {a.name: a.bandwidth(fair_share) for a in self.apps}
