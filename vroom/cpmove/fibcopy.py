"""The FIB and neighbour table copied between a VR's namespaces (before the freeze, and the
routes changed meanwhile during it), and a watch that says whether there is a delta."""
from __future__ import annotations

import logging
import socket
import struct
import subprocess
import tempfile

from routerlab import criu
from routerlab.netns import Netns

from .. import fib

log = logging.getLogger(__name__)


_FLAGS = ("linkdown", "dead", "offload", "trap", "rt_offload", "rt_trap", "notify", "unresolved",
          "pervasive")


def _route_spec(line: str) -> str | None:
    """An ``ip -o route`` line as arguments for ``ip route replace`` (None: not copied).

    A route using a nexthop object (``nhid N``, as FRR's zebra installs them) keeps the
    reference and drops the expanded next hops (the kernel refuses both): the objects are
    copied first (`copy_nexthops`), so the daemon finds the ids it knows at the target."""
    line = line.replace("\\\t", " ").replace("\\", " ")
    t = line.split()
    if not t or "proto" in t and t[t.index("proto") + 1] == "kernel":
        return None  # connected routes come from the addresses
    if "nhid" in t:
        out, i = [], 0
        while i < len(t):
            if t[i] in ("via", "dev", "weight"):
                i += 2
            elif t[i] in ("nexthop", "onlink") or t[i] in _FLAGS:
                i += 1
            else:
                out.append(t[i])
                i += 1
        return " ".join(out)
    out, i = [], 0
    while i < len(t):
        if t[i] in _FLAGS:
            i += 1
            continue
        out.append(t[i])
        i += 1
    return " ".join(out)


def route_lines(ns: str) -> set[str]:
    text = fib.ip_in(ns, "-o", "-4", "route", "show", "table", "main")
    return {s for s in (_route_spec(ln) for ln in text.splitlines()) if s}


def _batch(ns: str, commands: list[str], ignore: tuple[str, ...] = ()) -> int:
    if not commands:
        return 0
    r = subprocess.run(["ip", "-n", ns, "-force", "-batch", "-"], input="\n".join(commands) + "\n",
                       capture_output=True, text=True, timeout=600)
    errs = [ln for ln in r.stderr.splitlines()
            if ln.strip() and not any(x in ln for x in ignore) and not ln.startswith("Command failed")]
    if errs:
        log.warning("ip -batch in %s: %d errors, first: %s", ns, len(errs), errs[0])
    return len(commands)


BULK_COPY = 2000  # beyond this many missing routes, copy with `ip route save | restore`


def _nexthop_spec(line: str) -> tuple[int, str] | None:
    """An ``ip -o nexthop`` line as (id, arguments for ``ip nexthop replace``)."""
    t = line.split()
    if len(t) < 2 or t[0] != "id":
        return None
    out, i = [], 0
    while i < len(t):
        if t[i] == "scope":
            i += 2
        elif t[i] in _FLAGS:
            i += 1
        else:
            out.append(t[i])
            i += 1
    return int(t[1]), " ".join(out)


def nexthop_lines(ns: str) -> dict[int, str]:
    """{id: spec} of the nexthop objects in namespace `ns` ({} when there are none)."""
    r = subprocess.run(["ip", "-n", ns, "-o", "nexthop", "show"], capture_output=True, text=True,
                       timeout=120)
    return dict(x for x in map(_nexthop_spec, r.stdout.splitlines()) if x)


def nexthop_commands(want: dict[int, str], have: dict[int, str]) -> tuple[list[str], list[str]]:
    """(before the routes: objects added or changed, single next hops before groups; after
    them: objects `dst` has and `src` no longer does)."""
    changed = [(i, s) for i, s in sorted(want.items()) if have.get(i) != s]
    add = [f"nexthop replace {s}" for i, s in changed if " group " not in f" {s} "]
    add += [f"nexthop replace {s}" for i, s in changed if " group " in f" {s} "]
    gone = sorted(set(have) - set(want), key=lambda i: " group " not in f" {have[i]} ")
    return add, [f"nexthop del id {i}" for i in gone]


def copy_routes(src: str, dst: str, *, src_lines: set[str] | None = None,
                only: set[str] | None = None) -> int:
    """Make `dst`'s table main hold `src`'s non-connected routes (and the nexthop objects
    they use); returns changes made. With `only` (prefixes a `RouteWatch` saw change) just
    those prefixes are copied (`copy_prefixes`).

    A large difference (a fresh namespace) goes first through ``ip route save | ip route
    restore`` (250,000 routes in ~3.5 s instead of ~7 s with ``ip -batch``)."""
    if only is not None:
        return copy_prefixes(src, dst, only)
    nh_add, nh_del = nexthop_commands(nexthop_lines(src), nexthop_lines(dst))
    _batch(dst, nh_add)
    have = route_lines(dst)
    want = src_lines if src_lines is not None else route_lines(src)
    bulk = 0
    if len(want - have) > BULK_COPY:
        bulk = len(want - have)
        # `ip route restore` needs a seekable file (a pipe fails with "Illegal seek")
        with tempfile.TemporaryFile(prefix="routerlab-vroom-routes-") as f:
            subprocess.run(["ip", "-n", src, "route", "save", "table", "main"], stdout=f,
                           stderr=subprocess.PIPE, timeout=600, check=True)
            f.seek(0)
            # connected routes exist already: their "File exists" is expected
            subprocess.run(["ip", "-n", dst, "route", "restore"], stdin=f,
                           capture_output=True, timeout=600)
        have = route_lines(dst)
    cmds = [f"route replace {s}" for s in want - have]
    cmds += [f"route del {s}" for s in have - want]
    n = bulk + _batch(dst, cmds, ignore=("No such process",))
    return n + len(nh_add) + _batch(dst, nh_del, ignore=("No such",))


RTM_NEWROUTE, RTM_DELROUTE = 24, 25
RT_TABLE_MAIN = 254
RTA_DST, RTA_TABLE = 1, 15
MAX_WATCHED = 50_000  # beyond this many changed prefixes a full comparison is as cheap


def changed_prefixes(data: bytes) -> set[str]:
    """The IPv4 destinations (table main) of the RTM_NEWROUTE/RTM_DELROUTE messages in one
    netlink datagram ("a.b.c.d/len"); other messages are skipped."""
    out: set[str] = set()
    i, n = 0, len(data)
    while i + 16 <= n:
        length, mtype = struct.unpack_from("=IH", data, i)
        if length < 16:
            break
        if mtype in (RTM_NEWROUTE, RTM_DELROUTE) and length >= 28:
            family, dst_len, _, _, table = struct.unpack_from("=BBBBB", data, i + 16)
            if family == socket.AF_INET:
                dst = b"\0\0\0\0"
                j = i + 28
                while j + 4 <= i + length:
                    alen, atype = struct.unpack_from("=HH", data, j)
                    if alen < 4:
                        break
                    if atype == RTA_DST and alen >= 8:
                        dst = data[j + 4:j + 8]
                    elif atype == RTA_TABLE and alen >= 8:
                        table = struct.unpack_from("=I", data, j + 4)[0]
                    j += (alen + 3) & ~3
                if table == RT_TABLE_MAIN:
                    out.add(f"{socket.inet_ntoa(dst)}/{dst_len}")
        i += (length + 3) & ~3
    return out


class RouteWatch:
    """Notices whether a namespace's routes changed since it was opened (a netlink socket
    on the IPv4 route group) and which destinations: the freeze then copies only those
    prefixes (`copy_routes(..., only=watch.prefixes)`) instead of dumping two
    million-route tables to compare them. `prefixes` is None when the watch cannot say (a
    netlink overflow, or more than MAX_WATCHED prefixes): compare everything then."""

    def __init__(self, ns: Netns):
        self.sock = criu.socket_in_netns(ns.path, socket.AF_NETLINK, socket.SOCK_RAW,
                                         socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0x40))  # RTMGRP_IPV4_ROUTE
        self.sock.setblocking(False)
        self.prefixes: set[str] | None = set()

    def changed(self) -> bool:
        """Whether anything changed (since the watch was opened); reads what is queued."""
        while True:
            try:
                data = self.sock.recv(1 << 16)
            except BlockingIOError:
                break
            except OSError:  # overflow: something changed for sure, what is unknown
                self.prefixes = None
                continue
            if not data:
                break
            if self.prefixes is not None:
                self.prefixes |= changed_prefixes(data)
                if len(self.prefixes) > MAX_WATCHED:
                    self.prefixes = None
        return self.prefixes is None or bool(self.prefixes)

    def close(self) -> None:
        self.sock.close()


def copy_prefixes(src: str, dst: str, prefixes: set[str]) -> int:
    """Make `dst`'s routes to `prefixes` what `src` has now (replaced, or removed where
    `src` has none), with the nexthop objects they use; returns the commands run."""
    if not prefixes:
        return 0
    nh_add, nh_del = nexthop_commands(nexthop_lines(src), nexthop_lines(dst))
    _batch(dst, nh_add)
    want, have = _routes_to(src, prefixes), _routes_to(dst, prefixes)
    cmds = [f"route replace {s}" for s in sorted(want - have)]
    cmds += [f"route del {s}" for s in sorted(have - want)]
    return _batch(dst, cmds, ignore=("No such process",)) + len(nh_add) \
        + _batch(dst, nh_del, ignore=("No such",))


def _routes_to(ns: str, prefixes: set[str]) -> set[str]:
    """`route_lines` of namespace `ns` restricted to routes to `prefixes` (one ip -batch)."""
    r = subprocess.run(["ip", "-n", ns, "-o", "-4", "-batch", "-"],
                       input="".join(f"route show table main exact {p}\n"
                                     for p in sorted(prefixes)),
                       capture_output=True, text=True, timeout=600)
    return {s for s in (_route_spec(ln) for ln in r.stdout.splitlines()) if s}


def copy_neighbours(src: str, dst: str) -> int:
    """Copy resolved neighbour entries (as STALE: the kernel re-confirms them)."""
    cmds = [f"neigh replace {n.ip} lladdr {n.mac} dev {n.dev} nud stale"
            for n in fib.read_neighbours(src) if n.resolved and n.mac]
    return _batch(dst, cmds)
