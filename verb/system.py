"""VERB as a routerlab system: its experiments and the lab (``routerlab cli verb``) where a
router becomes diverse replicas behind the hypervisor. The lab's network is routerlab's
generic one; VERB adds its commands and stops its bug-tolerant routers when the lab ends.

Named in ``setup.py`` under the ``routerlab.systems`` entry point."""
from __future__ import annotations

from typing import Any

from routerlab.systems import System


def _lab_commands(base: type) -> type:
    from verb.lab import extend

    return extend(base)


def _lab_teardown(network: Any) -> None:
    from verb.lab import stop_all

    stop_all(network)


SYSTEM = System(
    name="verb",
    description="a bug-tolerant router: diverse daemon replicas (FRR, BIRD, GoBGP) behind a "
                "socket-level hypervisor that votes on FIB updates and outgoing messages",
    experiments=("verb.experiments",),
    lab_commands=_lab_commands,
    lab_teardown=_lab_teardown,
)
