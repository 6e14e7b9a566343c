"""Routing-daemon drivers: FRR 8.4, BIRD 2, GoBGP 3 and ExaBGP 4 from one neutral RouterSpec.

    from routerlab.daemons import driver_for, RouterSpec, Interface, BgpNeighbor
    d = driver_for("bird")(spec)
    d.start(ns, run_dir)
    d.bgp_sessions(); d.ospf_neighbors(); d.routes()
    d.stop()

Every driver renders its own configuration from the same `RouterSpec`, checks it with the
daemon's own checker, runs the daemon in the foreground inside a namespace and answers status
queries as normalized records (`OspfNeighbor`, `BgpSession`, `Route`).
"""
from __future__ import annotations

from .base import (BGP_STATES, OSPF_STATES, BgpSession, Daemon, DaemonError, NextHop,
                   OspfNeighbor, Route)
from .bird import BirdDaemon
from .exabgp import ExabgpDaemon
from .frr import FrrDaemon
from .gobgp import GobgpDaemon
from .spec import (ACCEPT_ALL, REJECT_ALL, BgpNeighbor, Interface, Network, Policy,
                   PolicyRule, PrefixMatch, RouterSpec, SpecError, StaticRoute)

#: every driver class, in the order `routerlab doctor` lists them
DAEMONS: list[type[Daemon]] = [FrrDaemon, BirdDaemon, GobgpDaemon, ExabgpDaemon]

_BY_NAME = {cls.implementation: cls for cls in DAEMONS}
_ALIASES = {"bird2": "bird", "frrouting": "frr", "quagga": "frr"}


def driver_for(impl: str) -> type[Daemon]:
    """The driver class for an implementation name: "frr", "bird", "gobgp" or "exabgp"."""
    key = _ALIASES.get(impl.lower(), impl.lower())
    try:
        return _BY_NAME[key]
    except KeyError:
        raise DaemonError(f"unknown routing daemon {impl!r} (known: {', '.join(_BY_NAME)})") from None


__all__ = ["ACCEPT_ALL", "BGP_STATES", "DAEMONS", "OSPF_STATES", "REJECT_ALL", "BgpNeighbor",
           "BgpSession", "BirdDaemon", "Daemon", "DaemonError", "ExabgpDaemon", "FrrDaemon",
           "GobgpDaemon", "Interface", "Network", "NextHop", "OspfNeighbor", "Policy",
           "PolicyRule", "PrefixMatch", "Route", "RouterSpec", "SpecError", "StaticRoute",
           "driver_for"]
