"""VROOM as a routerlab system: its experiments and the lab (``routerlab cli vroom``) where
virtual routers live-migrate between physical routers.

Named in ``setup.py`` under the ``routerlab.systems`` entry point."""
from __future__ import annotations

from typing import Any

from routerlab.systems import System


def _lab_commands(base: type) -> type:
    from vroom.lab import vroom_commands

    return vroom_commands(base)


def _run_lab(topo: Any, *, prefix: str, console: Any, script: str | None) -> int:
    from vroom.lab import run_vroom_lab

    return run_vroom_lab(topo, prefix=prefix, console=console, script=script)


SYSTEM = System(
    name="vroom",
    description="live migration of virtual routers between physical routers (CRIU control "
                "plane, data-plane cloning, link migration)",
    experiments=("vroom.experiments",),
    lab_commands=_lab_commands,
    run_lab=_run_lab,
)
