"""B4 as a routerlab system: its experiments, the ``routerlab te`` command, and the WAN lab
(``routerlab cli b4``) with its TE, link, controller and op commands.

Named in ``setup.py`` under the ``routerlab.systems`` entry point. The heavy modules (os-ken,
Mininet) load only when a lab or command is used."""
from __future__ import annotations

from typing import Any

from routerlab.systems import System


def _add_cli(subparsers: Any) -> None:
    from b4.te.cli import add_te_parser

    add_te_parser(subparsers)


def _lab_commands(base: type) -> type:
    from b4.lab import extension

    return extension(base)


def _run_lab(topo: Any, *, prefix: str, console: Any, script: str | None) -> int:
    from b4.lab import run_b4_lab

    return run_b4_lab(topo, prefix=prefix, console=console, script=script)


SYSTEM = System(
    name="b4",
    description="Google's SDN WAN: max-min fair TE from bandwidth functions, site OpenFlow "
                "controllers with sequenced TE ops, replicated controllers",
    experiments=("b4.experiments", "b4.te_bench"),
    add_cli=_add_cli,
    lab_commands=_lab_commands,
    run_lab=_run_lab,
)
