"""The daemon's netlink sockets around a dump: what stock CRIU cannot dump (memberships in
netlink groups above 32, as FRR's zebra holds) is dropped from outside right before the dump
and added back after the restore (or at the source when the dump fails or the move rolls
back); what CRIU 4.2 does not restore (NETLINK_EXT_ACK, NETLINK_CAP_ACK: reset to 0) is put
back the same way. Every change goes through a pidfd_getfd duplicate of the daemon's own
socket (it shares the kernel socket); the daemon's queue is never read here.

`save` reads {program: {fd: NetlinkSocket}} before the dump (restore keeps fd numbers),
`drop_high` leaves the groups above `routerlab.criu.NETLINK_GROUPS_STOCK`, `put_back`
re-adds missing groups and resets changed ack flags, and `fixes` is the pure part: what
differs between the saved state and the current one.
"""
from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from routerlab import criu

log = logging.getLogger(__name__)

FLAGS = {"EXT_ACK": criu.NETLINK_EXT_ACK, "CAP_ACK": criu.NETLINK_CAP_ACK}


@dataclass(frozen=True)
class NetlinkSocket:
    fd: int
    protocol: int
    groups: frozenset[int] = frozenset()
    flags: Mapping[str, int] = field(default_factory=dict)

    def high_groups(self, limit: int = criu.NETLINK_GROUPS_STOCK) -> list[int]:
        return sorted(g for g in self.groups if g > limit)


NetlinkState = dict[str, dict[int, NetlinkSocket]]  # {program: {fd: socket}}


def _dup(pid: int, fd: int) -> socket.socket:
    return socket.socket(fileno=criu.pidfd_getfd(pid, fd))


def read_socket(s: socket.socket, fd: int, protocol: int) -> NetlinkSocket:
    flags = {}
    for name, opt in FLAGS.items():
        with contextlib.suppress(OSError):
            flags[name] = s.getsockopt(criu.SOL_NETLINK, opt)
    return NetlinkSocket(fd, protocol, frozenset(criu.netlink_memberships(s)), flags)


def sockets_of(pid: int) -> dict[int, NetlinkSocket]:
    """{fd: NetlinkSocket} of process `pid`'s netlink sockets."""
    out = {}
    for fd, proto in criu.netlink_fds(pid).items():
        try:
            with _dup(pid, fd) as s:
                out[fd] = read_socket(s, fd, proto)
        except OSError as e:  # closed meanwhile
            log.debug("pid %d fd %d: %s", pid, fd, e)
    return out


def save(pids: Mapping[str, int]) -> NetlinkState:
    """The netlink sockets of every program (only those holding any)."""
    out: NetlinkState = {}
    for name, pid in pids.items():
        socks = sockets_of(pid)
        if socks:
            out[name] = socks
    return out


def high_groups(state: NetlinkState, limit: int = criu.NETLINK_GROUPS_STOCK) -> dict[str, dict[int, list[int]]]:
    """{program: {fd: groups above `limit`}} (what stock CRIU refuses to dump)."""
    out: dict[str, dict[int, list[int]]] = {}
    for name, socks in state.items():
        for fd, s in socks.items():
            if s.high_groups(limit):
                out.setdefault(name, {})[fd] = s.high_groups(limit)
    return out


def drop_high(pids: Mapping[str, int], state: NetlinkState,
              limit: int = criu.NETLINK_GROUPS_STOCK) -> list[str]:
    """Leave the groups above `limit` on the programs' sockets; returns "prog:fdN:-G"."""
    done = []
    for name, fds in high_groups(state, limit).items():
        for fd, groups in fds.items():
            with _dup(pids[name], fd) as s:
                for g in criu.set_netlink_groups(s, groups, join=False):
                    done.append(f"{name}:fd{fd}:-{g}")
    return done


def fixes(saved: NetlinkSocket, now: NetlinkSocket) -> tuple[list[int], dict[str, int]]:
    """(groups to join again, {flag: value to set}) to make `now` what `saved` was. Groups
    `now` has beyond `saved` are left alone (the daemon joined them itself)."""
    groups = sorted(saved.groups - now.groups)
    flags = {k: v for k, v in saved.flags.items() if now.flags.get(k) != v}
    return groups, flags


def put_back(pids: Mapping[str, int], state: NetlinkState) -> list[str]:
    """Re-add missing groups and reset changed ack flags on the programs' sockets (same fd
    numbers as saved). Returns what was changed: "prog:fdN:+G", "prog:fdN:EXT_ACK=1"."""
    done = []
    for name, socks in state.items():
        pid = pids.get(name)
        if pid is None:
            log.warning("netlink state of %s not put back: no such process now", name)
            continue
        for fd, saved in socks.items():
            try:
                s = _dup(pid, fd)
            except OSError as e:
                log.warning("%s fd %d: cannot reach the socket again: %s", name, fd, e)
                continue
            with s:
                groups, flags = fixes(saved, read_socket(s, fd, saved.protocol))
                for g in criu.set_netlink_groups(s, groups):
                    done.append(f"{name}:fd{fd}:+{g}")
                for k, v in flags.items():
                    s.setsockopt(criu.SOL_NETLINK, FLAGS[k], v)
                    done.append(f"{name}:fd{fd}:{k}={v}")
    return done
