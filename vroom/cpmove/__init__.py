"""Control-plane migration: move a VR's routing daemon between namespaces with CRIU.

The recipe verified on this platform (shared/PLATFORM.md, CRIU section):

* the target namespace has the same interface names, ifindexes, MACs and addresses
  (`vroom.router.prepare_namespace`); the FIB and neighbour table are copied to it before
  the freeze and the routes again right after the dump (`copy_routes`, `copy_neighbours`);
* dump with the source namespace declared external, restore into the target with
  ``--inherit-fd`` (`routerlab.criu.Criu`), so the daemon joins the target as it is;
* CRIU does not save IP multicast memberships: they are read from the source before the
  dump (`memberships`) and re-joined right after the restore on the daemon's own raw
  sockets, found through /proc and duplicated with pidfd_getfd (`rejoin_multicast`);
* the dump's network-lock rules stay in the source namespace: removed afterwards;
* the dumped task must be reaped before a restore can reuse its pid (same host): this
  process is a child subreaper while it restores (`subreaper`), so restored daemons are its
  children.

`ControlPlaneMove.run` does one move and keeps enough state (the images) to put the daemon
back where it was if the restore fails (`recover`). Iterative pre-copy (``criu pre-dump``)
is used when the kernel tracks dirty memory, else stall-and-copy; a page server can carry
the memory over a migration link.

Modules: `move` (the move and the target's lock), `processes` (reaping, adoption, the
subreaper), `fibcopy` (FIB and neighbours copied, the route watch), `sockets` (multicast
groups and socket options put back from outside), `link` (how CRIU runs: priority,
pre-copy, migration link and page server).
"""
from __future__ import annotations

from .fibcopy import BULK_COPY, RouteWatch, copy_neighbours, copy_routes, route_lines
from .link import LinkCriu, MigrationLink, PriorityCriu, predump_args, raised_priority
from .move import LOCK_TABLE, ControlPlaneMove, CpMoveResult, lock_netns, unlock_netns
from .processes import (CpMoveError, daemon_processes, reap_dumped, reap_leftovers, rebind_daemon,
                        subreaper)
from .sockets import (ALL_HOSTS, OSPF_PROTO, SOCKOPTS, memberships, parse_maddress, raw_socket_options,
                      raw_sockets, rejoin_multicast, restore_socket_options)

__all__ = ["ALL_HOSTS", "BULK_COPY", "LOCK_TABLE", "OSPF_PROTO", "SOCKOPTS", "ControlPlaneMove",
           "CpMoveError", "CpMoveResult", "LinkCriu", "MigrationLink", "PriorityCriu", "RouteWatch",
           "copy_neighbours", "copy_routes", "daemon_processes", "lock_netns", "memberships",
           "parse_maddress", "predump_args", "raised_priority", "raw_socket_options", "raw_sockets",
           "reap_dumped", "reap_leftovers", "rebind_daemon", "rejoin_multicast",
           "restore_socket_options", "route_lines", "subreaper", "unlock_netns"]
