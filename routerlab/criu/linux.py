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
NETLINK_DROP_MEMBERSHIP = 2
NETLINK_LIST_MEMBERSHIPS = 9
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11
NETLINK_GROUPS_STOCK = 32  # the highest group stock CRIU (4.2) can dump a socket in
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


def proc_netlink_column(text: str, column: str) -> dict[int, int]:
    """/proc/PID/net/netlink (every netlink socket of that process's network namespace) ->
    {socket inode: the integer in `column`} (Eth: the protocol; Rmem: bytes queued for the
    reader; Dump: a dump running on the socket)."""
    out: dict[int, int] = {}
    lines = text.splitlines()
    if not lines:
        return out
    head = lines[0].split()
    try:
        i_col, i_inode = head.index(column), head.index("Inode")
    except ValueError:
        return out
    for ln in lines[1:]:
        t = ln.split()
        if len(t) > max(i_col, i_inode):
            out[int(t[i_inode])] = int(t[i_col])
    return out


def parse_proc_netlink(text: str) -> dict[int, int]:
    """/proc/PID/net/netlink -> {socket inode: netlink protocol}. (Its Groups column shows
    only groups 1-32: ask the socket itself, `netlink_memberships`.)"""
    return proc_netlink_column(text, "Eth")


def netlink_fds(pid: int) -> dict[int, int]:
    """{fd: netlink protocol} of process `pid`'s netlink sockets."""
    with open(f"/proc/{pid}/net/netlink") as f:
        table = parse_proc_netlink(f.read())
    return {fd: table[ino] for ino, fd in sorted(socket_fds(pid).items()) if ino in table}


def netlink_queues(pid: int) -> dict[int, tuple[bool, int]]:
    """{fd: (a dump runs on it, bytes queued for the reader)} of process `pid`'s netlink
    sockets. CRIU refuses to dump a netlink socket with data to read; a dump running (a
    routing daemon's kernel table scan) keeps refilling it until the last part is read."""
    with open(f"/proc/{pid}/net/netlink") as f:
        text = f.read()
    dump, rmem = proc_netlink_column(text, "Dump"), proc_netlink_column(text, "Rmem")
    return {fd: (bool(dump[ino]), rmem.get(ino, 0)) for ino, fd in sorted(socket_fds(pid).items())
            if ino in dump}


def set_netlink_groups(sock: socket.socket, groups: set[int] | list[int], join: bool = True) -> list[int]:
    """Join (or leave) netlink multicast groups on `sock`; returns the groups changed."""
    have = netlink_memberships(sock)
    todo = sorted(set(groups) - have if join else set(groups) & have)
    for g in todo:
        sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP if join else NETLINK_DROP_MEMBERSHIP, g)
    return todo


def netlink_drop_selftest(group: int = 34) -> tuple[bool, str]:
    """Can memberships above 32 be dropped and re-added on another process's netlink socket
    from outside (pidfd_getfd, then NETLINK_DROP/ADD_MEMBERSHIP on the duplicate, which
    shares the kernel socket)? Tried on a socket of our own. (ok, detail)"""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE) as s:
            s.bind((0, 0))
            s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            with socket.socket(fileno=pidfd_getfd(os.getpid(), s.fileno())) as dup:
                set_netlink_groups(dup, [group], join=False)
                dropped = group not in netlink_memberships(s)
                set_netlink_groups(dup, [group])
            back = group in netlink_memberships(s)
    except (OSError, AttributeError) as e:
        return False, f"pidfd_getfd + netlink membership changes fail here: {e}"
    if not (dropped and back):
        return False, f"group {group} {'not dropped' if not dropped else 'not re-added'} through a duplicate fd"
    return True, f"netlink group {group} dropped and re-added through a pidfd_getfd duplicate"
