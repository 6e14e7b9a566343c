"""The experiment registry: `routerlab run NAME` and `routerlab bench NAME` plug in here.

An experiment is a function ``(ctx: RunContext) -> Result``. Systems register theirs with
the `experiment` decorator in the modules their `routerlab.systems.System` declaration
lists; `load_all` imports routerlab's own experiments and those modules."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routerlab.errors import UserError
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

    def names(self, key: str, default: Iterable[str], choices: Iterable[str] | None = None) -> tuple[str, ...]:
        """Option `key` as a tuple of names (one name given alone counts as one), or
        `default`; a name outside `choices` is a `UserError` that lists them."""
        value = self.options.get(key, default)
        got = (value,) if isinstance(value, str) else tuple(str(v) for v in value)
        if choices is not None:
            allowed = tuple(choices)
            bad = [v for v in got if v not in allowed]
            if bad:
                raise UserError(f"--set {key}={','.join(bad)}: not one of {', '.join(allowed)}")
        return got


def _scalar(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    for conv in (int, float):
        try:
            return conv(text)
        except ValueError:
            pass
    return text.strip()


def parse_option(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` of `routerlab run --set` as (key, value): a number, true/false, text, or
    for a comma-separated VALUE a tuple of those. Dashes in KEY count as underscores."""
    key, sep, raw = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise UserError(f"--set {text!r}: expected KEY=VALUE (e.g. --set prefixes=100000)")
    if "," in raw:
        return key, tuple(_scalar(p) for p in raw.split(",") if p.strip())
    return key, _scalar(raw)


@dataclass
class Experiment:
    name: str
    func: Callable[[RunContext], Result]
    description: str
    kind: str = "run"  # run or bench
    headline: bool = True  # part of `routerlab run all`
    options: Mapping[str, str] = field(default_factory=dict)  # `--set KEY=VALUE` it reads: KEY -> help


EXPERIMENTS: dict[str, Experiment] = {}
BENCHMARKS: dict[str, Experiment] = {}


def experiment(name: str, description: str, *, kind: str = "run", headline: bool = True,
               options: Mapping[str, str] | None = None):
    """Register an experiment (kind run) or a benchmark (kind bench). `options`: the
    `ctx.options` keys it reads, which `routerlab run NAME --set KEY=VALUE` may give, each
    with a one-line help."""

    def deco(func: Callable[[RunContext], Result]):
        table = BENCHMARKS if kind == "bench" else EXPERIMENTS
        table[name] = Experiment(name, func, description, kind, headline, dict(options or {}))
        return func

    return deco


def load_all() -> None:
    """Register routerlab's own experiments and every installed system's."""
    from routerlab import systems
    from routerlab.experiments import cluster, ospf_ring, scale  # noqa: F401  (registers by importing)

    systems.load_experiments()
