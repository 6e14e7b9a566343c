"""VERB as a routerlab system: its experiments and the lab (``routerlab cli verb``) where a
router becomes diverse replicas behind the hypervisor. The lab's network is routerlab's
generic one; VERB adds its commands and stops its bug-tolerant routers when the lab ends.

Named in ``setup.py`` under the ``routerlab.systems`` entry point."""
from routerlab.systems import System

SYSTEM = System(
    name="verb",
    description="a bug-tolerant router: diverse daemon replicas (FRR, BIRD, GoBGP) behind a "
                "socket-level hypervisor that votes on FIB updates and outgoing messages",
    experiments=("verb.experiments", "verb.full_table"),
    lab_commands="verb.lab:extend",
    lab_teardown="verb.lab:stop_all",
)
