"""VROOM as a routerlab system: its experiments and the lab (``routerlab cli vroom``) where
virtual routers live-migrate between physical routers.

Named in ``setup.py`` under the ``routerlab.systems`` entry point."""
from routerlab.systems import System

SYSTEM = System(
    name="vroom",
    description="live migration of virtual routers between physical routers (CRIU control "
                "plane, data-plane cloning, link migration)",
    experiments=("vroom.maintenance", "vroom.cloning", "vroom.experiments"),
    lab_commands="vroom.lab:vroom_commands",
    run_lab="vroom.lab:run_vroom_lab",
)
