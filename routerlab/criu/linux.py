"""Linux calls the standard library lacks, through libc: the child subreaper (THE helper for
any process that must reap what CRIU restores), pidfd_getfd, sockets made inside another
network namespace, and the membership of netlink sockets in multicast groups."""
from __future__ import annotations

import ctypes
import os
import socket
import sys
import threading
from typing import Any

# Linux constants the standard library does not name.
CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_LIST_MEMBERSHIPS = 9
SYS_PIDFD_GETFD = 438


_libc = ctypes.CDLL(None, use_errno=True)


def _check_errno(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def set_child_subreaper(on: bool = True) -> None:
    """Make this process the reaper of orphaned descendants (restored tasks land here), or
    stop being it (`on=False`)."""
    _check_errno(_libc.prctl(PR_SET_CHILD_SUBREAPER, int(on), 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def socket_fds(pid: int) -> dict[int, int]:
    """{socket inode: fd} of process `pid`'s sockets (from /proc/PID/fd), to match them with
    the /proc/PID/net tables, which list sockets by inode."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            out[int(target[8:-1])] = int(fd)
    return out


def pidfd_getfd(pid: int, targetfd: int) -> int:
    """A duplicate of another process's fd (pidfd_open + pidfd_getfd)."""
    pidfd = os.pidfd_open(pid)
    try:
        return _check_errno(_libc.syscall(SYS_PIDFD_GETFD, pidfd, targetfd, 0), "pidfd_getfd")
    finally:
        os.close(pidfd)


def socket_in_netns(netns_path: str | os.PathLike, family: int, type_: int, proto: int = 0
                    ) -> socket.socket:
    """A socket created inside another network namespace; the calling process stays put.

    setns() moves only the calling thread, so a throwaway thread enters the namespace, makes
    the socket (which keeps that namespace for life) and ends."""
    result: list[Any] = []

    def target() -> None:
        try:
            fd = os.open(netns_path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _check_errno(_libc.setns(fd, CLONE_NEWNET), f"setns({netns_path})")
            finally:
                os.close(fd)
            result.append(socket.socket(family, type_, proto))
        except BaseException as e:  # handed to the caller below
            result.append(e)

    t = threading.Thread(target=target, name="netns-socket")
    t.start()
    t.join()
    if isinstance(result[0], BaseException):
        raise result[0]
    return result[0]


def groups_from_bitmap(raw: bytes) -> set[int]:
    """Netlink group numbers (1-based) set in a NETLINK_LIST_MEMBERSHIPS bitmap (u32 words)."""
    words = [int.from_bytes(raw[i:i + 4], sys.byteorder) for i in range(0, len(raw) - 3, 4)]
    return {w * 32 + b + 1 for w, word in enumerate(words) for b in range(32) if word >> b & 1}


def netlink_memberships(sock: socket.socket) -> set[int]:
    """The multicast groups a netlink socket is subscribed to."""
    return groups_from_bitmap(sock.getsockopt(SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, 64))
