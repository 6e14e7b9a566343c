"""CRIU for VROOM: find a working binary, detect the features live migration needs, dump/restore.

Which CRIU: ``$ROUTERLAB_CRIU``, else ``/opt/routerlab/criu/bin/criu`` (installed by
``scripts/get-criu.sh``: a link to a working system criu, or a wrapper running Debian sid's
criu 4.2 with its own libc), else ``criu`` on PATH.

Features (`features()`), each a `Feature` with ok/detail/hint:

- ``check``: ``criu check`` passes.
- ``socket_dump``: a process holding an established TCP connection inside a network namespace
  is dumped and restored into that same namespace and the connection still carries data
  (the namespace is declared external on dump and handed back with ``--inherit-fd`` on
  restore, exactly as a migration does).
- ``netlink_groups_gt32``: a process with a NETLINK_ROUTE socket subscribed to an rtnetlink
  group above 32 (as FRR's zebra) can be dumped and restored. Stock CRIU refuses.
- ``soft_dirty``: memory dirty tracking for iterative pre-copy (``criu pre-dump``).
- ``lazy_pages``: userfaultfd post-copy (``--lazy-pages``).

The two probes that dump real processes run in a child process (``python -m routerlab.criu
_probe``) that makes itself a child subreaper, so restored tasks are reaped there and never
touch the caller. Results are cached per CRIU binary and kernel in
``/run/routerlab/criu-features.json`` so ``routerlab doctor`` stays fast.

Migration use (VROOM)::

    c = Criu()
    c.dump(pid, images)   # --tcp-established --file-locks --external net[<inode>]:rlnet
    run = c.restore(images, netns="/var/run/netns/TARGET")  # --inherit-fd fd[N]:rlnet, detached
    clear_network_lock("/var/run/netns/SOURCE")  # the dump's DROP rules stay in the source

Failures raise `CriuError` carrying the cause and the tail of CRIU's log.

The package (everything public is importable from ``routerlab.criu``): ``locate`` (which
CRIU, its version and log errors, `CriuError`, `Feature`), ``dump`` (`Criu`, `dump_args`,
`restore_args`, `clear_network_lock`), ``linux`` (`set_child_subreaper`, `pidfd_getfd`,
`socket_in_netns`, netlink memberships), ``probes`` (the dumping self-tests), ``detect``
(`features` and its cache) and ``cli`` (`main`, also ``__main__``).

It imports only the standard library (and `routerlab.expect`, which does too):
``scripts/get-criu.sh`` runs it before the virtualenv exists.
"""
from routerlab.criu.cli import main
from routerlab.criu.detect import (
    CACHE_FORMAT,
    CACHE_PATH,
    FEATURE_NAMES,
    STATE_DIR,
    cache_key,
    detect_features,
    features,
    load_cache,
    save_cache,
    socket_selftest,
)
from routerlab.criu.dump import (
    DEFAULT_NETWORK_LOCK,
    LAZY_PAGES_SOCKET,
    NETNS_KEY,
    Criu,
    CriuRun,
    clear_network_lock,
    dump_args,
    external_netns_arg,
    inherit_fd_arg,
    lazy_pages_args,
    netns_inode_of_pid,
    restore_args,
)
from routerlab.criu.linux import (
    CLONE_NEWNET,
    NETLINK_ADD_MEMBERSHIP,
    NETLINK_CAP_ACK,
    NETLINK_DROP_MEMBERSHIP,
    NETLINK_EXT_ACK,
    NETLINK_GROUPS_STOCK,
    NETLINK_LIST_MEMBERSHIPS,
    PR_SET_CHILD_SUBREAPER,
    SOL_NETLINK,
    SYS_PIDFD_GETFD,
    groups_from_bitmap,
    netlink_drop_selftest,
    netlink_fds,
    netlink_memberships,
    netlink_queues,
    parse_proc_netlink,
    pidfd_getfd,
    proc_netlink_column,
    set_netlink_groups,
    set_child_subreaper,
    socket_fds,
    socket_in_netns,
)
from routerlab.criu.locate import (
    BENIGN_ERRORS,
    ENV_CRIU,
    HINT_GET_CRIU,
    PREFIX,
    PREFIX_CRIU,
    SOURCE_FILE,
    CriuError,
    Feature,
    find_criu,
    first_error,
    log_tail,
    parse_version,
    read_source,
)
from routerlab.criu.probes import _ECHO_CLIENT as _ECHO_CLIENT  # tests/emulation/test_criu.py uses it
from routerlab.criu.probes import _NETLINK_HOLDER as _NETLINK_HOLDER
from routerlab.criu.probes import (
    NETLINK_TEST_GROUP,
    NETNS_DIR,
    NETNS_PREFIX,
    ProbeNetns,
    probe_netlink_groups,
    probe_socket_dump,
    run_probes,
)

__all__ = [
    "BENIGN_ERRORS", "CACHE_FORMAT", "CACHE_PATH", "CLONE_NEWNET", "DEFAULT_NETWORK_LOCK",
    "ENV_CRIU", "FEATURE_NAMES", "HINT_GET_CRIU", "LAZY_PAGES_SOCKET", "NETLINK_ADD_MEMBERSHIP",
    "NETLINK_CAP_ACK", "NETLINK_DROP_MEMBERSHIP", "NETLINK_EXT_ACK", "NETLINK_GROUPS_STOCK",
    "NETLINK_LIST_MEMBERSHIPS", "NETLINK_TEST_GROUP", "NETNS_DIR", "NETNS_KEY", "NETNS_PREFIX",
    "PREFIX", "PREFIX_CRIU", "PR_SET_CHILD_SUBREAPER", "SOL_NETLINK", "SOURCE_FILE", "STATE_DIR",
    "SYS_PIDFD_GETFD", "Criu", "CriuError", "CriuRun", "Feature", "ProbeNetns", "cache_key",
    "clear_network_lock", "detect_features", "dump_args", "external_netns_arg", "features",
    "find_criu", "first_error", "groups_from_bitmap", "inherit_fd_arg", "lazy_pages_args",
    "load_cache", "log_tail", "main", "netlink_drop_selftest", "netlink_fds", "netlink_memberships",
    "netlink_queues", "netns_inode_of_pid", "parse_proc_netlink", "parse_version", "pidfd_getfd",
    "probe_netlink_groups", "probe_socket_dump", "proc_netlink_column", "read_source",
    "restore_args", "run_probes", "save_cache", "set_child_subreaper", "set_netlink_groups",
    "socket_fds", "socket_in_netns", "socket_selftest",
]
