"""The daemon's sockets fixed from outside after a restore: what CRIU does not carry over
(IP multicast memberships, some IP-level socket options) is read from the source before the
dump and put back on the restored daemon's own raw sockets, found through /proc and
duplicated with pidfd_getfd."""
from __future__ import annotations

import contextlib
import ipaddress
import socket
import struct

from routerlab import criu

from .. import fib

OSPF_PROTO = 89
ALL_HOSTS = "224.0.0.1"  # joined by the kernel itself on every interface


def memberships(ns: str) -> dict[str, set[str]]:
    """{interface: IPv4 multicast groups} joined in namespace `ns` (all-hosts left out)."""
    return parse_maddress(fib.ip_in(ns, "-4", "maddress", "show"))


def parse_maddress(text: str) -> dict[str, set[str]]:
    """``ip -4 maddress show`` -> {interface: groups}, without 224.0.0.1."""
    out: dict[str, set[str]] = {}
    cur = None
    for ln in text.splitlines():
        t = ln.split()
        if not t:
            continue
        if t[0].endswith(":") and t[0][:-1].isdigit() and len(t) >= 2:
            cur = t[1].split("@", 1)[0]
        elif t[0] == "inet" and cur is not None and t[1] != ALL_HOSTS:
            out.setdefault(cur, set()).add(t[1])
    return out


def raw_sockets(pid: int, proto: int = OSPF_PROTO) -> list[int]:
    """The fds of `pid`'s raw IPv4 sockets for IP protocol `proto` (as /proc/PID/net/raw,
    which shows the process's own namespace, lists them)."""
    inodes = criu.socket_fds(pid)
    fds = []
    with open(f"/proc/{pid}/net/raw") as f:
        next(f)
        for ln in f:
            t = ln.split()
            if len(t) > 9 and int(t[1].split(":")[1], 16) == proto and int(t[9]) in inodes:
                fds.append(inodes[int(t[9])])
    return sorted(fds)


def _mreqn(group: str, ifindex: int) -> bytes:
    return struct.pack("4s4si", socket.inet_aton(group), b"\0\0\0\0", ifindex)


def rejoin_multicast(pid: int, groups: dict[str, set[str]], ifindex: dict[str, int],
                     proto: int = OSPF_PROTO) -> list[tuple[str, str]]:
    """Join `groups` again on the daemon's raw sockets, each on the socket bound to that
    interface (or the first socket when none is bound). Returns (interface, group) joined."""
    joined = []
    fds = raw_sockets(pid, proto)
    if not fds:
        return joined
    by_dev: dict[str, int] = {}
    socks: dict[int, socket.socket] = {}
    try:
        for fd in fds:
            s = socket.socket(fileno=criu.pidfd_getfd(pid, fd))
            socks[fd] = s
            dev = s.getsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, 16).rstrip(b"\0")
            if dev:
                by_dev.setdefault(dev.decode(), fd)
        for dev, gs in sorted(groups.items()):
            fd = by_dev.get(dev, fds[0] if not by_dev else None)
            if fd is None or dev not in ifindex:
                continue
            for g in sorted(gs):
                if not ipaddress.IPv4Address(g).is_multicast:
                    continue
                try:
                    socks[fd].setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                                         _mreqn(g, ifindex[dev]))
                    joined.append((dev, g))
                except OSError as e:
                    if e.errno != 98:  # EADDRINUSE: already a member
                        raise
    finally:
        for s in socks.values():
            s.close()
    return joined


# IP-level options of the daemon's raw sockets that CRIU 4.2 does not bring back (measured:
# IP_MULTICAST_LOOP and IP_MTU_DISCOVER come back as 1 where BIRD had set 0, so the restored
# daemon hears its own hellos); saved before the dump and put back after the restore.
SOCKOPTS = {"IP_MULTICAST_LOOP": socket.IP_MULTICAST_LOOP, "IP_MTU_DISCOVER": 10,
            "IP_MULTICAST_TTL": socket.IP_MULTICAST_TTL, "IP_TOS": socket.IP_TOS,
            "IP_TTL": socket.IP_TTL, "IP_PKTINFO": 8, "IP_RECVTTL": 12, "IP_MULTICAST_ALL": 49}


def raw_socket_options(pid: int, proto: int = OSPF_PROTO) -> dict[int, dict[str, int]]:
    """{fd: {option: value}} of a process's raw sockets for `proto`."""
    out: dict[int, dict[str, int]] = {}
    for fd in raw_sockets(pid, proto):
        with socket.socket(fileno=criu.pidfd_getfd(pid, fd)) as s:
            vals = {}
            for name, opt in SOCKOPTS.items():
                with contextlib.suppress(OSError):
                    vals[name] = s.getsockopt(socket.IPPROTO_IP, opt)
            out[fd] = vals
    return out


def restore_socket_options(pid: int, saved: dict[int, dict[str, int]],
                           proto: int = OSPF_PROTO) -> list[str]:
    """Put back the options of `saved` that differ now (CRIU keeps fd numbers)."""
    fixed = []
    now = raw_socket_options(pid, proto)
    for fd, vals in saved.items():
        cur = now.get(fd)
        if cur is None:
            continue
        diff = {k: v for k, v in vals.items() if cur.get(k) != v}
        if not diff:
            continue
        with socket.socket(fileno=criu.pidfd_getfd(pid, fd)) as s:
            for name, v in diff.items():
                s.setsockopt(socket.IPPROTO_IP, SOCKOPTS[name], v)
                fixed.append(f"fd{fd}:{name}={v}")
    return fixed
