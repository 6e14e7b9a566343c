"""The dumping self-tests: a process with an established TCP connection, and one with a
NETLINK_ROUTE socket in an rtnetlink group above 32, each dumped and restored inside a
private network namespace, in a child process that is a subreaper (``python -m
routerlab.criu _probe``)."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from routerlab.criu.dump import Criu
from routerlab.criu.linux import netlink_memberships, pidfd_getfd, set_child_subreaper, socket_in_netns
from routerlab.criu.locate import HINT_GET_CRIU, CriuError, Feature, first_error
from routerlab.expect import ExpectTimeout, wait_for

log = logging.getLogger(__name__)

NETNS_DIR = Path("/var/run/netns")
NETNS_PREFIX = "rlcriu-"  # the probes' own namespaces: rlcriu-<random hex>
NETLINK_TEST_GROUP = 33  # RTNLGRP_BRVLAN: the first group that needs a second bitmap word


def _registry():
    """routerlab.registry if importable (it needs psutil), so a killed probe leaks nothing."""
    try:
        from routerlab import registry
        return registry
    except Exception:  # plain python3 without the virtualenv: no recording
        return None


# The dumped programs: tiny, stdlib only, started with `python -I -S -c`.
_ECHO_CLIENT = """\
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
while True:
    d = s.recv(4096)
    if not d:
        break
    s.sendall(d)
"""

_NETLINK_HOLDER = """\
import os, socket, sys, time
s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
s.bind((0, 0))
s.setsockopt(270, 1, int(sys.argv[1]))  # SOL_NETLINK, NETLINK_ADD_MEMBERSHIP
os.write(1, b"%d\\n" % s.fileno())
null = os.open("/dev/null", os.O_WRONLY)
os.dup2(null, 1)  # no pipe to us may remain in the dumped process
os.close(null)
while True:
    time.sleep(3600)
"""


class ProbeNetns:
    """A private network namespace for the probes, with the processes started in it.

    Everything is removed by `close()`, even after a failure: only pids we started (checked
    to still be inside this namespace, so a recycled pid is never touched), then the
    namespace. Both are also recorded in routerlab's registry when it is importable, so
    `routerlab clean` finds them if this process is killed outright."""

    def __init__(self) -> None:
        self.name = f"{NETNS_PREFIX}{secrets.token_hex(4)}"
        self.path = NETNS_DIR / self.name
        self.pids: set[int] = set()
        self.inode: int | None = None
        self._reg = _registry()
        self._record("add", "netns", self.name)
        try:
            subprocess.run(["ip", "netns", "add", self.name], check=True, capture_output=True,
                           timeout=30)
            self.inode = os.stat(self.path).st_ino
            subprocess.run(["ip", "-n", self.name, "link", "set", "lo", "up"], check=True,
                           capture_output=True, timeout=30)
        except BaseException:
            self.close()
            raise

    def _record(self, op: str, kind: str, name: str, pid: int | None = None) -> None:
        """Best effort: the registry is a safety net, never a reason for a probe to fail."""
        if self._reg is None:
            return
        try:
            sess = self._reg.session()
            if op == "add" and pid is not None:
                sess.add_process(pid)
            elif op == "add":
                sess.add(kind, name)
            else:
                sess.release(kind, name)
        except Exception as e:
            log.warning("registry %s %s %s: %s", op, kind, name, e)

    def popen(self, code: str, *args: str, **kwargs: Any) -> subprocess.Popen:
        """Start `python -c code args...` inside the namespace (nsenter: net only)."""
        kwargs.setdefault("stdin", subprocess.DEVNULL)
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        # Own session, as routerlab daemons run: no --shell-job needed to dump it.
        kwargs.setdefault("start_new_session", True)
        p = subprocess.Popen(["nsenter", f"--net={self.path}", "--",
                              sys.executable, "-I", "-S", "-c", code, *args], **kwargs)
        self.track(p.pid)
        return p

    def track(self, pid: int) -> None:
        self.pids.add(pid)
        self._record("add", "process", str(pid), pid)

    def owns(self, pid: int) -> bool:
        """Whether `pid` still runs inside this namespace (and so is ours)."""
        try:
            return os.stat(f"/proc/{pid}/ns/net").st_ino == self.inode
        except OSError:
            return False

    def kill(self, pid: int) -> None:
        if self.owns(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _reap(pid)
        self._record("del", "process", str(pid))

    def close(self) -> None:
        for pid in sorted(self.pids):
            try:
                self.kill(pid)
            except Exception as e:
                log.warning("cannot stop probe process %d: %s", pid, e)
        self.pids.clear()
        if self.path.exists():
            subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=30)
        self._record("del", "netns", self.name)

    def __enter__(self) -> ProbeNetns:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Collect a dead child (or adopted orphan) so its pid becomes free; ignore non-children."""

    def reaped() -> bool:
        try:
            return os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:  # not (or no longer) our child
            return True

    with contextlib.suppress(ExpectTimeout):  # still running: left to whoever reaps it later
        wait_for(reaped, timeout, interval=0.02, what=f"pid {pid} to be reaped", retry_on=())


def _echo(conn: socket.socket, msg: bytes, timeout: float = 5.0) -> bool:
    conn.settimeout(timeout)
    conn.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = conn.recv(len(msg) - len(got))
        if not chunk:
            return False
        got += chunk
    return got == msg


def probe_socket_dump(criu: Criu) -> Feature:
    """Dump and restore a process holding an established TCP connection inside a netns.

    Our side of the connection (the listening and accepted socket) is created inside the
    namespace from a thread, so this process itself stays in the root namespace, like the
    migration code. Must run in a child subreaper (see `_probe_main`)."""
    name = "socket_dump"
    hint = ("live migration of any router is unavailable; " + HINT_GET_CRIU +
            " or see PLATFORM.md (CRIU section)")
    with tempfile.TemporaryDirectory(prefix="rlcriu-img-") as images, ProbeNetns() as ns:
        srv = socket_in_netns(ns.path, socket.AF_INET, socket.SOCK_STREAM)
        conn: socket.socket | None = None
        try:
            srv.bind(("127.0.0.1", 0))
            srv.listen(1)
            srv.settimeout(10)
            port = srv.getsockname()[1]
            client = ns.popen(_ECHO_CLIENT, str(port))
            conn, _ = srv.accept()
            if not _echo(conn, b"before-dump\n"):
                return Feature(name, False, "test client did not echo before the dump", hint)
            try:
                d = criu.dump(client.pid, images)
            except CriuError as e:
                return Feature(name, False, f"dump failed: {e}", hint)
            client.wait(timeout=10)  # CRIU killed it; reaping frees the pid for restore
            try:
                r = criu.restore(images, netns=ns.path)
            except CriuError as e:
                return Feature(name, False, f"restore failed: {e}", hint)
            if r.pid:
                ns.track(r.pid)
            if r.pid != client.pid:
                return Feature(name, False, f"restored pid {r.pid} != dumped pid {client.pid}",
                               hint)
            try:
                ok = _echo(conn, b"after-restore\n")
            except OSError as e:
                return Feature(name, False, f"connection broken after restore: {e}", hint)
            if not ok:
                return Feature(name, False, "connection closed after restore", hint)
            return Feature(name, True,
                           f"TCP connection survived dump+restore in a netns "
                           f"(dump {d.seconds:.2f} s, restore {r.seconds:.2f} s, "
                           f"network lock {criu.network_lock or 'iptables'})")
        finally:
            if conn is not None:
                conn.close()
            srv.close()


def probe_netlink_groups(criu: Criu, group: int = NETLINK_TEST_GROUP) -> Feature:
    """Dump and restore a process whose NETLINK_ROUTE socket is in rtnetlink group > 32."""
    name = "netlink_groups_gt32"
    hint = ("FRR's zebra joins rtnetlink groups > 32: VROOM drops them right before the dump "
            "and adds them back after the restore (`routerlab doctor` says whether that works "
            "here); a CRIU built with >32-group netlink support would dump them as they are")
    with tempfile.TemporaryDirectory(prefix="rlcriu-img-") as images, ProbeNetns() as ns:
        holder = ns.popen(_NETLINK_HOLDER, str(group), stdout=subprocess.PIPE)
        assert holder.stdout is not None
        line = holder.stdout.readline()
        holder.stdout.close()
        if not line.strip().isdigit():
            return Feature(name, False, "netlink test process did not start", hint)
        fd = int(line)
        if not _holder_has_group(holder.pid, fd, group):
            return Feature(name, False, f"the kernel refused rtnetlink group {group}", hint)
        try:
            criu.dump(holder.pid, images)
        except CriuError as e:
            return Feature(name, False, f"dump refused a NETLINK_ROUTE socket in group "
                                        f"{group}: {first_error(e.log_tail) or e}", hint)
        holder.wait(timeout=10)
        try:
            r = criu.restore(images, netns=ns.path)
        except CriuError as e:
            return Feature(name, False, f"dumped, but restore failed: {e}", hint)
        if r.pid:
            ns.track(r.pid)
        if not r.pid or not _holder_has_group(r.pid, fd, group):
            return Feature(name, False, f"restored, but the socket lost group {group}", hint)
        return Feature(name, True, f"NETLINK_ROUTE socket in group {group} dumped and restored "
                                   f"with its membership")


def _holder_has_group(pid: int, fd: int, group: int) -> bool:
    try:
        dup = pidfd_getfd(pid, fd)
    except OSError as e:
        log.warning("cannot inspect netlink socket of pid %d: %s", pid, e)
        return False
    with socket.socket(fileno=dup) as s:
        return group in netlink_memberships(s)


def _probe_main(criu_path: str, which: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Run dumping probes in this (dedicated) process, which becomes a child subreaper."""
    set_child_subreaper()
    criu = Criu(criu_path)
    probes: dict[str, Callable[[Criu], Feature]] = {
        "socket_dump": probe_socket_dump, "netlink_groups_gt32": probe_netlink_groups}
    out = {}
    for name in which:
        try:
            f = probes[name](criu)
        except Exception as e:  # a broken probe is a failed feature, not a crash
            log.exception("probe %s failed", name)
            f = Feature(name, False, f"probe crashed: {type(e).__name__}: {e}",
                        "report this as a routerlab bug")
        out[name] = f.to_dict()
    reg = _registry()
    if reg is not None:
        # This process exists only for the probes: end its registry session (the file goes
        # when everything in it was released). Never done in a caller's shared session.
        try:
            reg.session().close()
        except Exception as e:
            log.warning("registry close: %s", e)
    return out


def run_probes(criu_path: str, which: Sequence[str] = ("socket_dump", "netlink_groups_gt32"),
               timeout: float = 120) -> dict[str, Feature]:
    """Run the dumping probes in a child process (a subreaper) and collect their results."""
    env = dict(os.environ)
    pkg_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [pkg_root, env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "routerlab.criu", "_probe", "--criu", criu_path, *which]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env,
                           stdin=subprocess.DEVNULL)
        data = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
    except subprocess.TimeoutExpired:
        data, r = {}, None
    except json.JSONDecodeError:
        data = {}
    out = {}
    for name in which:
        if name in data:
            out[name] = Feature.from_dict(data[name])
        else:
            why = "timed out" if r is None else (r.stderr.strip().splitlines() or ["no output"])[-1]
            out[name] = Feature(name, False, f"probe process failed: {why}",
                                "report this as a routerlab bug")
    return out
