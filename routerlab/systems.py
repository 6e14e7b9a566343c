"""The one interface through which a system (VROOM, VERB, B4, or a fourth one) plugs into
the substrate.

Each system declares a single `System` object and names it under the ``routerlab.systems``
entry point in ``setup.py`` (``"NAME = package.system:SYSTEM"``), the way IPMininet's daemons
declare themselves and a node builds from what is declared. The substrate finds systems only
through that entry point and names none of them: the experiments a system registers, the
subcommands it adds to ``routerlab``, the lab it builds, the commands that lab gets and what
must stop when the lab ends are all read from its declaration.
"""
from __future__ import annotations

import argparse
import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Protocol

from routerlab.errors import UserError

if TYPE_CHECKING:
    from rich.console import Console

    from routerlab.topology import Topology

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "routerlab.systems"


class LabRunner(Protocol):
    """Builds a system's own network for a topology, opens the lab over it (through
    `routerlab.lab.serve_lab`) and removes the network when the lab ends; returns the exit
    code. Bad input must fail before anything is created."""

    def __call__(self, topo: Topology, *, prefix: str, console: Console,
                 script: str | None) -> int: ...


@dataclass(frozen=True)
class System:
    """What a system declares, once.

    - ``experiments``: modules whose ``@experiment`` functions (`routerlab.experiments`)
      are this system's experiments and benchmarks; imported when they are listed or run.
    - ``add_cli``: adds the system's own ``routerlab`` subcommands to the parser's
      subparsers (B4's ``te``); each sets ``func`` to its handler.
    - ``lab_commands``: a class decorator returning a subclass of the lab's CLI class with
      the system's ``do_*`` commands; a lab gets only the commands of the system that
      built it.
    - ``run_lab``: builds the system's own network for a topology and serves the lab
      (None: the substrate builds its generic `routerlab.network.Network`).
    - ``lab_teardown``: run when a lab this system built ends, normally or not, before its
      network stops (stops what the system's commands started there).

    Each of the four hooks is a callable or a ``"module:attribute"`` string imported when
    first used (`hook`).

    A system applies to the topologies whose ``params: {system: NAME}`` name it
    (`applies_to`); it ships them in ``topologies/``."""

    name: str
    description: str
    experiments: tuple[str, ...] = ()
    add_cli: Callable[[Any], None] | str | None = None
    lab_commands: Callable[[type], type] | str | None = None
    run_lab: LabRunner | str | None = None
    lab_teardown: Callable[[Any], None] | str | None = None

    def applies_to(self, topo: Topology) -> bool:
        """Whether this system builds the lab for `topo` (``params: {system: NAME}``)."""
        return system_name(topo) == self.name

    def hook(self, field: str) -> Callable[..., Any] | None:
        """The callable declared as `field` (importing it if it was declared by name)."""
        ref = getattr(self, field)
        if ref is None or callable(ref):
            return ref
        module, _, attr = str(ref).partition(":")
        fn = getattr(importlib.import_module(module), attr)
        if not callable(fn):
            raise TypeError(f"system {self.name}: {field} = {ref!r} is not callable")
        return fn

    def load_experiments(self) -> None:
        """Import the modules whose decorators register this system's experiments."""
        for mod in self.experiments:
            importlib.import_module(mod)


_loaded: dict[str, System] | None = None


def systems() -> dict[str, System]:
    """Every installed system, by name, from the ``routerlab.systems`` entry point."""
    global _loaded
    if _loaded is None:
        found: dict[str, System] = {}
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            obj = ep.load()
            if not isinstance(obj, System):
                raise TypeError(f"entry point {ENTRY_POINT_GROUP}:{ep.name} ({ep.value}) is "
                                f"not a routerlab.systems.System")
            if obj.name in found:
                raise TypeError(f"two systems named {obj.name!r} ({ep.value})")
            found[obj.name] = obj
        if not found:
            log.warning("no routerlab systems are installed (entry point %s); run "
                        "scripts/setup.sh to install routerlab into .venv", ENTRY_POINT_GROUP)
        _loaded = found
    return _loaded


def get(name: str) -> System:
    """The installed system called `name`; a `UserError` naming the known ones otherwise."""
    found = systems()
    if name not in found:
        known = ", ".join(sorted(found)) or "none installed"
        raise UserError(f"unknown system {name!r} (known: {known})")
    return found[name]


def system_name(topo: Topology) -> str | None:
    """The system a topology names in ``params: {system: NAME}`` (None for none)."""
    params = topo.params if isinstance(topo.params, dict) else {}
    name = params.get("system")
    return str(name) if name else None


def for_topology(topo: Topology) -> System | None:
    """The system that builds the lab for `topo`, None for a plain routerlab network; a
    topology naming a system that is not installed is a `UserError`."""
    name = system_name(topo)
    if name is None:
        return None
    try:
        return get(name)
    except UserError as e:
        raise UserError(f"topology {topo.name}: params.system: {e}") from None


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    """Let every system add its own ``routerlab`` subcommands."""
    for s in systems().values():
        add = s.hook("add_cli")
        if add is not None:
            add(subparsers)


def load_experiments() -> None:
    """Import every system's experiment modules."""
    for s in systems().values():
        s.load_experiments()
