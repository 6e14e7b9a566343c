"""The experiment registry: `routerlab run NAME` and `routerlab bench NAME` plug in here.

An experiment is a function ``(ctx: RunContext) -> Result``. Systems register theirs with
the `experiment` decorator in the modules their `routerlab.systems.System` declaration
lists; `load_all` imports routerlab's own experiments and those modules."""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from routerlab.report import Result

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, float | None], None]


@dataclass
class RunContext:
    """What an experiment gets: where to write, how big to run, how to show progress."""

    out_dir: Path
    quick: bool = False
    progress: ProgressFn = field(default=lambda msg, frac=None: None)
    options: dict = field(default_factory=dict)
    # Part of `routerlab run all`, which must finish in 20 minutes on 2 cores: an experiment
    # whose full size alone takes several minutes runs a stated, smaller variant.
    part_of_all: bool = False

    def step(self, message: str, fraction: float | None = None) -> None:
        log.info("%s", message)
        self.progress(message, fraction)


@dataclass
class Experiment:
    name: str
    func: Callable[[RunContext], Result]
    description: str
    kind: str = "run"  # run or bench
    headline: bool = True  # part of `routerlab run all`


EXPERIMENTS: dict[str, Experiment] = {}
BENCHMARKS: dict[str, Experiment] = {}


def experiment(name: str, description: str, *, kind: str = "run", headline: bool = True):
    """Register an experiment (kind run) or a benchmark (kind bench)."""

    def deco(func: Callable[[RunContext], Result]):
        table = BENCHMARKS if kind == "bench" else EXPERIMENTS
        table[name] = Experiment(name, func, description, kind, headline)
        return func

    return deco


def load_all() -> None:
    """Register routerlab's own experiments and every installed system's."""
    from routerlab import systems
    from routerlab.experiments import cluster, ospf_ring, scale  # noqa: F401  (registers by importing)

    systems.load_experiments()
