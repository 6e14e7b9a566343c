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
* the dumped task must be reaped before a restore can reuse its pid (same host): routerlab
  makes this process a child subreaper, so restored daemons are its children.

`ControlPlaneMove.run` does one move and keeps enough state (the images) to put the daemon
back where it was if the restore fails (`recover`). Iterative pre-copy (``criu pre-dump``)
is used when the kernel tracks dirty memory, else stall-and-copy; a page server can carry
the memory over a migration link.
"""
from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import logging
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from routerlab import criu, registry
from routerlab.daemons import Daemon, DaemonError
from routerlab.daemons.base import pid_alive
from routerlab.netns import Netns

from . import fib

log = logging.getLogger(__name__)

OSPF_PROTO = 89
ALL_HOSTS = "224.0.0.1"  # joined by the kernel itself on every interface


class CpMoveError(RuntimeError):
    """A control-plane move failed; `stage` says where (dump, restore, rejoin, ...)."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage}: {message}")


# --------------------------------------------------------------------------- processes

_libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Be the child subreaper while CRIU restores: the restored daemon (orphaned when the
    detached criu exits) becomes our child, which we reap when a later dump kills it, so
    its pid is free for the next restore. Only for that moment: other programs' orphans
    must not pile up here."""
    if _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    try:
        yield
    finally:
        _libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)


def daemon_processes(d: Daemon) -> list[tuple[str, int]]:
    """(program name, pid) of a driver's running processes."""
    return list(d.pids.items())


def reap_dumped(d: Daemon, timeout: float = 10.0) -> None:
    """Wait for the processes a dump killed, so their pids are free for a restore."""
    for p in d.processes():
        try:
            p.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise CpMoveError("dump", f"{p.name} (pid {p.popen.pid}) still alive after the dump")


def rebind_daemon(d: Daemon, ns: Netns, pids: dict[str, int]) -> None:
    """Point a daemon driver at its restored processes in their new namespace (after a
    restore they are new children of this process with the same pids)."""
    try:
        d.adopt(ns, pids)
    except DaemonError as e:
        raise CpMoveError("rebind", str(e)) from None


# --------------------------------------------------------------------------- FIB copy

def _route_spec(line: str) -> str | None:
    """An ``ip -o route`` line as arguments for ``ip route replace`` (None: not copied)."""
    line = line.replace("\\\t", " ").replace("\\", " ")
    t = line.split()
    if not t or "proto" in t and t[t.index("proto") + 1] == "kernel":
        return None  # connected routes come from the addresses
    out, i = [], 0
    while i < len(t):
        if t[i] == "nhid":  # the expanded next hops follow; nexthop objects are not copied
            i += 2
            continue
        if t[i] in ("linkdown", "dead", "offload", "trap", "rt_offload", "rt_trap",
                    "notify", "unresolved", "pervasive"):
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


def copy_routes(src: str, dst: str, *, src_lines: set[str] | None = None) -> int:
    """Make `dst`'s table main hold `src`'s non-connected routes; returns changes made.

    A large difference (a fresh namespace) goes first through ``ip route save | ip route
    restore`` (250,000 routes in ~3.5 s instead of ~7 s with ``ip -batch``)."""
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
    return bulk + _batch(dst, cmds, ignore=("No such process",))


class RouteWatch:
    """Notices whether a namespace's routes changed since it was opened (a netlink socket
    on the IPv4 route group, drained without parsing): the freeze copies the FIB delta
    only when there is one, instead of dumping two 250,000-route tables to find none."""

    def __init__(self, ns: Netns):
        self.sock = criu.socket_in_netns(ns.path, socket.AF_NETLINK, socket.SOCK_RAW,
                                         socket.NETLINK_ROUTE)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.bind((0, 0x40))  # RTMGRP_IPV4_ROUTE
        self.sock.setblocking(False)

    def changed(self) -> bool:
        got = False
        while True:
            try:
                if not self.sock.recv(65536):
                    return got
                got = True
            except BlockingIOError:
                return got
            except OSError:  # overflow: something changed for sure
                got = True

    def close(self) -> None:
        self.sock.close()


def copy_neighbours(src: str, dst: str) -> int:
    """Copy resolved neighbour entries (as STALE: the kernel re-confirms them)."""
    cmds = [f"neigh replace {n.ip} lladdr {n.mac} dev {n.dev} nud stale"
            for n in fib.read_neighbours(src) if n.resolved and n.mac]
    return _batch(dst, cmds)


# --------------------------------------------------------------------------- multicast

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


def _socket_inodes(pid: int) -> dict[int, int]:
    """{socket inode: fd} of a process."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out[int(target[8:-1])] = int(fd)
    return out


def raw_sockets(pid: int, proto: int = OSPF_PROTO) -> list[int]:
    """The fds of `pid`'s raw IPv4 sockets for IP protocol `proto` (as /proc/PID/net/raw,
    which shows the process's own namespace, lists them)."""
    inodes = _socket_inodes(pid)
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
                try:
                    vals[name] = s.getsockopt(socket.IPPROTO_IP, opt)
                except OSError:
                    pass
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


# --------------------------------------------------------------------------- target lock

LOCK_TABLE = "vroom_lock"
_LOCK_RULES = f"""table inet {LOCK_TABLE} {{
  chain input {{ type filter hook input priority -300; policy drop; iifname "lo" accept; }}
}}
"""


def lock_netns(ns: Netns) -> None:
    """Drop every packet arriving in `ns` (but on lo) until `unlock_netns`: the target of a
    move gets the routing messages from the moment they are redirected, and must not answer
    them (a TCP RST would end a BGP session) before the daemon is restored there."""
    ns.run(["nft", "-f", "-"], input=_LOCK_RULES)


def unlock_netns(ns: Netns) -> None:
    ns.run(["nft", "delete", "table", "inet", LOCK_TABLE], check=False)


# --------------------------------------------------------------------------- the move

@contextlib.contextmanager
def raised_priority(nice: int = -20) -> Iterator[None]:
    """Run the calling thread (and what it starts) at a higher CPU priority meanwhile.

    Linux's nice value is per thread: only this thread changes, not the hypervisors'."""
    tid = threading.get_native_id()
    old = os.getpriority(os.PRIO_PROCESS, tid)
    try:
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError:  # not allowed: run as we are
        yield
        return
    try:
        yield
    finally:
        os.setpriority(os.PRIO_PROCESS, tid, old)


class PriorityCriu(criu.Criu):
    """CRIU run at a raised CPU priority: dump and restore are the control plane's freeze,
    the one part of a migration whose length the neighbours feel. On a busy machine (two
    cores shared with probes, OVS and a dozen routing daemons) this shortens it."""

    nice = -20

    def run(self, args, *, timeout: float = 60, **kwargs):  # type: ignore[override]
        nice = self.nice
        kwargs.setdefault("preexec_fn", lambda: os.setpriority(os.PRIO_PROCESS, 0, nice))
        return super().run(args, timeout=timeout, **kwargs)



@dataclass
class CpMoveResult:
    """Timings of one control-plane move (seconds)."""

    method: str = "stall-and-copy"
    predump_s: float = 0.0
    dump_s: float = 0.0
    delta_routes: int = 0
    delta_copy_s: float = 0.0  # routes changed since the pre-copy, copied during the freeze
    restore_s: float = 0.0
    redirect_s: float = 0.0  # punts turned towards the (locked) target, before the freeze
    unlock_s: float = 0.0  # the target's lock removed once the daemon runs there
    rejoin_s: float = 0.0
    freeze_s: float = 0.0  # from the start of the final dump until the daemon hears again
    image_bytes: int = 0
    pages_over_link: bool = False
    joined: list[tuple[str, str]] = field(default_factory=list)
    sockopts_fixed: list[str] = field(default_factory=list)
    pids: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        for k, v in d.items():
            if isinstance(v, float):
                d[k] = round(v, 4)
        d["joined"] = [f"{a}:{b}" for a, b in self.joined]
        return d


@dataclass
class ControlPlaneMove:
    """One move of a daemon from namespace `src` to `dst` (both prepared)."""

    daemon: Daemon
    src: Netns
    dst: Netns
    images: Path
    ifindex: dict[str, int]
    criu: criu.Criu
    precopy: bool = False
    link: MigrationLink | None = None  # dump pages over this link to a page server
    # turns the routing messages towards the target, right before the dump (the target is
    # locked meanwhile, so nothing there answers with a RST before the daemon is back)
    redirect: Callable[[], None] | None = None
    after_restore: Callable[[], None] | None = None
    before_restore: Callable[[], None] | None = None  # test hook (fault injection)
    route_watch: RouteWatch | None = None  # source route changes since the FIB pre-copy
    dumped: bool = False
    restored: bool = False
    result: CpMoveResult = field(default_factory=CpMoveResult)
    _groups: dict[str, set[str]] = field(default_factory=dict)
    _names: list[str] = field(default_factory=list)
    _dumped_pids: list[tuple[str, int]] = field(default_factory=list)
    _sockopts: dict[str, dict[int, dict[str, int]]] = field(default_factory=dict)

    def run(self) -> CpMoveResult:
        res = self.result
        procs = daemon_processes(self.daemon)
        if not procs:
            raise CpMoveError("dump", f"{self.daemon.spec.name}: the daemon is not running")
        self._names = [n for n, _ in procs]
        self._dumped_pids = list(procs)
        self._groups = memberships(self.src.name)
        self._sockopts = {name: raw_socket_options(pid) for name, pid in procs}
        if self.images.exists():
            shutil.rmtree(self.images)
        self.images.mkdir(parents=True)
        if self.precopy:
            res.method = "pre-copy"
            t0 = time.monotonic()
            for name, pid in procs:
                self._predump(pid, self.images / "pre" / name)
            res.predump_s = time.monotonic() - t0
        # ---- the freeze: from the moment routing messages go to the locked target until
        # the daemon hears them again there
        with raised_priority():
            lock_netns(self.dst)
            t0 = time.monotonic()
            if self.redirect is not None:
                self.redirect()
            res.redirect_s = time.monotonic() - t0
            t_freeze = time.monotonic()
            self._frozen(procs, res, t_freeze)
            res.freeze_s = time.monotonic() - t_freeze
        res.image_bytes = sum(p.stat().st_size for p in self.images.rglob("*") if p.is_file())
        criu.clear_network_lock(self.src.path)
        log.info("%s: control plane moved %s -> %s: freeze %.3f s (dump %.3f, restore %.3f), "
                 "%d bytes of images, re-joined %s, socket options put back: %s",
                 self.daemon.spec.name, self.src.name, self.dst.name, res.freeze_s, res.dump_s,
                 res.restore_s, res.image_bytes, res.joined or "nothing",
                 res.sockopts_fixed or "none")
        return res

    def _frozen(self, procs: list[tuple[str, int]], res: CpMoveResult, t_freeze: float) -> None:
        """Dump, copy the FIB delta, restore at the target, redirect, re-join groups."""
        for name, pid in procs:
            extra: list[str] = []
            if self.precopy:
                extra += ["--prev-images-dir", str(self.images / "pre" / name), "--track-mem"]
            dumper, server = self.criu, None
            if self.link is not None:
                server = self.link.page_server(self.criu, self.images / name)
                dumper = self.link.criu(self.criu)
                extra += self.link.dump_args()
                res.pages_over_link = True
            try:
                dumper.dump(pid, self.images / name, extra_args=extra)
            except criu.CriuError as e:
                raise CpMoveError("dump", str(e)) from None
            finally:
                if server is not None:
                    try:
                        server.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait(5)
                    registry.session().release_process(server.pid)
        self.dumped = True
        res.dump_s = time.monotonic() - t_freeze
        reap_dumped(self.daemon)
        t0 = time.monotonic()
        if self.route_watch is None or self.route_watch.changed():
            res.delta_routes = copy_routes(self.src.name, self.dst.name)
        res.delta_copy_s = time.monotonic() - t0
        if self.before_restore is not None:
            self.before_restore()
        t0 = time.monotonic()
        pids: dict[str, int] = {}
        for name in self._names:
            pids[name] = self._restore(self.images / name, self.dst, "restore")
        self.restored = True
        res.restore_s = time.monotonic() - t0
        res.pids = pids
        rebind_daemon(self.daemon, self.dst, pids)
        t0 = time.monotonic()
        unlock_netns(self.dst)
        if self.after_restore is not None:
            self.after_restore()
        res.unlock_s = time.monotonic() - t0
        t0 = time.monotonic()
        try:
            for name, pid in pids.items():
                res.joined += rejoin_multicast(pid, self._groups, self.ifindex)
                res.sockopts_fixed += restore_socket_options(pid, self._sockopts.get(name, {}))
        except OSError as e:
            raise CpMoveError("rejoin", f"re-joining multicast groups: {e}") from None
        res.rejoin_s = time.monotonic() - t0

    def _predump(self, pid: int, d: Path) -> None:
        """One round of iterative pre-copy: memory copied while the daemon runs, dirty pages
        tracked (needs CONFIG_MEM_SOFT_DIRTY) so the final dump sends only the rest."""
        args = predump_args(pid, d, criu.netns_inode_of_pid(pid))
        d.mkdir(parents=True, exist_ok=True)
        r = self.criu.run(args, timeout=120)
        if r.returncode != 0:
            raise CpMoveError("pre-dump", criu.first_error(criu.log_tail(d / "dump.log"))
                              or (r.stderr.strip().splitlines() or ["failed"])[-1])

    def _restore(self, images: Path, ns: Netns, stage: str) -> int:
        try:
            with subreaper():
                r = self.criu.restore(images, netns=ns.path, log_file=f"{stage}.log",
                                      pidfile=f"{stage}.pid")
        except criu.CriuError as e:
            self._reap_leftovers()
            raise CpMoveError(stage, str(e)) from None
        if r.pid is None:
            raise CpMoveError(stage, f"criu restore left no pid file in {images}")
        return r.pid

    def _reap_leftovers(self, timeout: float = 5.0) -> None:
        """A failed restore can leave its half-made tasks as our zombies: collect them, or
        their pids stay taken and no later restore (at the source either) can fork them."""
        deadline = time.monotonic() + timeout
        for _, pid in self._dumped_pids:
            while pid_alive(pid) or os.path.exists(f"/proc/{pid}"):
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                    if done:
                        break
                except ChildProcessError:
                    if not os.path.exists(f"/proc/{pid}"):
                        break
                if time.monotonic() > deadline:
                    log.warning("pid %d is still taken after a failed restore", pid)
                    break
                time.sleep(0.02)

    def recover(self) -> dict[str, int]:
        """After a failed restore: bring the daemon back in the source namespace from the
        dump (the state it had when it stopped), re-join its groups, drop the lock."""
        if not self.dumped:
            return {}
        for p in self.daemon.processes():  # anything half-restored at the target
            if p.popen.poll() is None and self.restored:
                p.popen.kill()
                p.popen.wait(10)
        pids = {}
        for name in self._names:
            pids[name] = self._restore(self.images / name, self.src, "recover")
        rebind_daemon(self.daemon, self.src, pids)
        criu.clear_network_lock(self.src.path)
        for name, pid in pids.items():
            rejoin_multicast(pid, self._groups, self.ifindex)
            restore_socket_options(pid, self._sockopts.get(name, {}))
        self.dumped = self.restored = False
        log.warning("%s: control plane recovered in %s from its dump", self.daemon.spec.name,
                    self.src.name)
        return pids


def predump_args(pid: int, images: Path, netns_inode: int | None) -> list[str]:
    """Arguments of ``criu pre-dump`` for the first round of iterative pre-copy."""
    args = criu.dump_args(pid, images, netns_inode=netns_inode)
    args[0] = "pre-dump"
    return args + ["--track-mem"]


class MigrationLink:
    """A migration link of a given rate between two physical routers' management sides:
    two namespaces joined by a veth shaped with TBF. The dump runs in the source one and
    sends the memory pages to a ``criu page-server`` in the target one, so the control
    plane's memory crosses a link of known bandwidth (the rest of the images is small and
    local; both ends share this host's filesystem)."""

    ADDR_SRC, ADDR_DST, PORT = "10.250.0.1", "10.250.0.2", 27027

    def __init__(self, prefix: str, mbps: float):
        if mbps <= 0:
            raise ValueError("migration link rate must be positive")
        self.mbps = mbps
        self.src = Netns.create(f"{prefix}-mlsrc")
        try:
            self.dst = Netns.create(f"{prefix}-mldst")
            from routerlab.netns import create_veth

            create_veth("ml0", "ml1", ns_a=self.src, ns_b=self.dst)
            self.src.ip("addr", "add", f"{self.ADDR_SRC}/30", "dev", "ml0")
            self.dst.ip("addr", "add", f"{self.ADDR_DST}/30", "dev", "ml1")
            burst = max(32, int(mbps * 1000 / 8 / 100))  # ~10 ms worth, in kbytes
            self.src.run(["tc", "qdisc", "add", "dev", "ml0", "root", "tbf", "rate",
                          f"{mbps}mbit", "burst", f"{burst}kb", "latency", "400ms"])
        except BaseException:
            self.close()
            raise

    def criu(self, base: criu.Criu) -> "LinkCriu":
        return LinkCriu(base.path, self.src, network_lock=base.network_lock)

    def page_server(self, c: criu.Criu, images: Path) -> subprocess.Popen:
        """Start a one-shot page server writing into `images` (it exits after one dump)."""
        images.mkdir(parents=True, exist_ok=True)
        p = self.dst.popen([c.path, "page-server", "--images-dir", str(images),
                            "--address", self.ADDR_DST, "--port", str(self.PORT),
                            "--log-file", "page-server.log", "-v2"], name="criu-page-server")
        deadline = time.monotonic() + 10
        while not self._listening():
            if p.poll() is not None or time.monotonic() > deadline:
                raise CpMoveError("page-server", f"criu page-server did not start "
                                  f"(see {images / 'page-server.log'})")
            time.sleep(0.02)
        return p

    def _listening(self) -> bool:
        r = self.dst.run(["ss", "-Htln", f"sport = :{self.PORT}"], check=False)
        return bool(r.stdout.strip())

    def dump_args(self) -> list[str]:
        return ["--page-server", "--address", self.ADDR_DST, "--port", str(self.PORT)]

    def close(self) -> None:
        for ns in (getattr(self, "src", None), getattr(self, "dst", None)):
            if ns is not None:
                ns.delete()


class LinkCriu(PriorityCriu):
    """CRIU run inside the migration link's source namespace (so a page server is reached
    over the link); the dumped task's namespace is still declared external."""

    def __init__(self, path: str, ns: Netns, **kw):
        super().__init__(path, **kw)
        self.ns = ns

    def run(self, args, *, timeout: float = 60, **kwargs):  # type: ignore[override]
        nice = self.nice
        kwargs.setdefault("preexec_fn", lambda: os.setpriority(os.PRIO_PROCESS, 0, nice))
        return subprocess.run(["nsenter", f"--net={self.ns.path}", "--", self.path, *args],
                              capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, **kwargs)
