"""B4 as a routerlab system: its experiments, the ``routerlab te`` command, and the WAN lab
(``routerlab cli b4``) with its TE, link, controller and op commands.

Named in ``setup.py`` under the ``routerlab.systems`` entry point. Hooks are named, not
imported: os-ken and Mininet load only when a lab or command is used."""
from routerlab.systems import System

SYSTEM = System(
    name="b4",
    description="Google's SDN WAN: max-min fair TE from bandwidth functions, site OpenFlow "
                "controllers with sequenced TE ops, replicated controllers",
    experiments=("b4.experiments", "b4.te_bench"),
    add_cli="b4.te.cli:add_te_parser",
    lab_commands="b4.lab:extension",
    run_lab="b4.lab:run_b4_lab",
)
