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

This module imports only the standard library: ``scripts/get-criu.sh`` runs it before the
virtualenv exists.
"""
from __future__ import annotations

import argparse
import ctypes
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

log = logging.getLogger(__name__)

ENV_CRIU = "ROUTERLAB_CRIU"
PREFIX = Path("/opt/routerlab/criu")
PREFIX_CRIU = PREFIX / "bin" / "criu"
SOURCE_FILE = PREFIX / "SOURCE"
STATE_DIR = Path(os.environ.get("ROUTERLAB_STATE_DIR", "/run/routerlab"))
CACHE_PATH = STATE_DIR / "criu-features.json"
CACHE_FORMAT = 1

# nftables: CRIU locks through its own libnftables (no external iptables binary) and leaves
# one table, inet CRIU-*, that `clear_network_lock` removes; iptables mode patches the shared
# filter table instead.
DEFAULT_NETWORK_LOCK = "nftables"
NETNS_KEY = "rlnet"  # key naming the external network namespace in --external/--inherit-fd
NETNS_DIR = Path("/var/run/netns")
NETNS_PREFIX = "rlcriu-"  # the probes' own namespaces: rlcriu-<random hex>
NETLINK_TEST_GROUP = 33  # RTNLGRP_BRVLAN: the first group that needs a second bitmap word
FEATURE_NAMES = ("check", "socket_dump", "netlink_groups_gt32", "soft_dirty", "lazy_pages")
HINT_GET_CRIU = ("run `sudo scripts/get-criu.sh` (installs criu 4.2 from Debian sid into "
                 "/opt/routerlab/criu)")

# Linux constants the standard library does not name.
CLONE_NEWNET = 0x40000000
PR_SET_CHILD_SUBREAPER = 36
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NETLINK_LIST_MEMBERSHIPS = 9
SYS_PIDFD_GETFD = 438


class CriuError(RuntimeError):
    """A CRIU command failed; carries the exit code, the log path and the log's last lines."""

    def __init__(self, action: str, returncode: int | None, log_path: Path | None,
                 log_tail: Sequence[str], output: str = ""):
        self.action = action
        self.returncode = returncode
        self.log_path = log_path
        self.log_tail = list(log_tail)
        self.output = output
        reason = first_error(self.log_tail) or (output.strip().splitlines() or ["no output"])[-1]
        where = f"; log: {log_path}" if log_path else ""
        code = "timed out" if returncode is None else f"exit {returncode}"
        super().__init__(f"criu {action} failed ({code}): {reason}{where}")


@dataclass(frozen=True)
class Feature:
    """One CRIU capability: whether it works here, why we think so, and what to do if not."""

    name: str
    ok: bool
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Feature":
        return cls(name=str(d["name"]), ok=bool(d["ok"]), detail=str(d.get("detail", "")),
                   hint=str(d.get("hint", "")))


@dataclass
class CriuRun:
    """A finished dump or restore: how long CRIU took, its log, and the restored root pid."""

    args: list[str]
    seconds: float
    log_path: Path
    pid: int | None = None


# --------------------------------------------------------------------------- locating CRIU

def _is_exe(p: Path) -> bool:
    return p.is_file() and os.access(p, os.X_OK)


def find_criu() -> str | None:
    """The CRIU to use: $ROUTERLAB_CRIU, then the get-criu.sh prefix, then `criu` on PATH."""
    env = os.environ.get(ENV_CRIU)
    if env:
        p = Path(env) if "/" in env else Path(shutil.which(env) or env)
        if _is_exe(p):
            return str(p)
        log.warning("%s=%s is not an executable; looking elsewhere", ENV_CRIU, env)
    if _is_exe(PREFIX_CRIU):
        return str(PREFIX_CRIU)
    return shutil.which("criu")


def read_source(path: Path = SOURCE_FILE) -> dict[str, str]:
    """What get-criu.sh recorded (key=value lines), or {} when it never ran."""
    out: dict[str, str] = {}
    try:
        for line in path.read_text().splitlines():
            k, sep, v = line.partition("=")
            if sep and k.strip() and not k.startswith("#"):
                out[k.strip()] = v.strip()
    except OSError:
        pass
    return out


def parse_version(text: str) -> str | None:
    """'Version: 4.2.1' (criu --version) -> '4.2.1'."""
    for line in text.splitlines():
        k, sep, v = line.partition(":")
        if sep and k.strip().lower() == "version":
            return v.strip() or None
    return None


# Error lines CRIU logs on every run here and survives (root lacks CAP_SYS_RESOURCE in this
# VM, so CRIU cannot raise its own fd limit): never the reason for a failure.
BENIGN_ERRORS = ("Can't setup RLIMIT_NOFILE",)
_TS = re.compile(r"^\(\d+\.\d+\)\s*")  # CRIU's "(00.065249) " timestamp prefix
_LEVEL = re.compile(r"^(Warn|Error)\s*\([^)]*\):\s*")  # "Warn  (criu/cr-check.c:824): "
_ERR = re.compile(r"Error \(([^:)]+)[:)]")


def first_error(lines: Sequence[str]) -> str | None:
    """The cause of a CRIU failure: its first real 'Error (file:line)' line, joined with the
    error lines right after it from the same source file (CRIU often splits one message)."""
    found: list[str] = []
    src = None
    for line in lines:
        text = _TS.sub("", line.strip())
        m = _ERR.search(text)
        if src is not None:
            if m and m.group(1) == src:
                found.append(text[m.end():].lstrip(" 0123456789)").lstrip(": ").strip() or text)
                continue
            break
        if m and not any(b in text for b in BENIGN_ERRORS):
            src = m.group(1)
            found.append(text)
        elif not m and text.startswith("Error") and not any(b in text for b in BENIGN_ERRORS):
            return text
    return "; ".join(found) if found else None


def log_tail(path: Path, n: int = 25) -> list[str]:
    """The last n lines of a log, plus the first error line if it scrolled out of them."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return []
    tail = lines[-n:]
    err = first_error(lines)
    if err and first_error(tail) != err:
        tail = [err, "..."] + tail
    return tail


# --------------------------------------------------------------------------- argument building

def external_netns_arg(inode: int, key: str = NETNS_KEY) -> str:
    """`--external` value declaring a network namespace (by inode) external under `key`."""
    return f"net[{int(inode)}]:{key}"


def inherit_fd_arg(fd: int, key: str) -> str:
    """`--inherit-fd` value handing the object behind our fd `fd` to CRIU as `key`."""
    return f"fd[{int(fd)}]:{key}"


def _common_args(images_dir: os.PathLike | str, *, log_file: str, verbosity: int,
                 tcp_established: bool, file_locks: bool, shell_job: bool,
                 network_lock: str | None) -> list[str]:
    if network_lock not in (None, "iptables", "nftables", "skip"):
        raise ValueError(f"network_lock must be iptables, nftables or skip, not {network_lock!r}")
    if not 0 <= verbosity <= 4:
        raise ValueError(f"verbosity must be 0-4, not {verbosity}")
    args = ["--images-dir", str(images_dir), "--log-file", log_file, f"-v{verbosity}"]
    if tcp_established:
        args.append("--tcp-established")
    if file_locks:
        args.append("--file-locks")
    if shell_job:
        args.append("--shell-job")
    if network_lock:
        args += ["--network-lock", network_lock]
    return args


def dump_args(pid: int, images_dir: os.PathLike | str, *, netns_inode: int | None = None,
              netns_key: str = NETNS_KEY, tcp_established: bool = True, file_locks: bool = True,
              shell_job: bool = False, leave_running: bool = False,
              network_lock: str | None = None, external: Sequence[str] = (),
              log_file: str = "dump.log", verbosity: int = 4,
              extra_args: Sequence[str] = ()) -> list[str]:
    """Arguments (after the criu binary) to dump the process tree rooted at `pid`.

    `netns_inode` declares the task's network namespace external (``--external
    net[INODE]:KEY``): CRIU then neither dumps nor recreates it, and restore moves the task
    into whatever namespace is passed with the same key."""
    if pid <= 0:
        raise ValueError(f"bad pid {pid}")
    args = ["dump", "--tree", str(pid)]
    args += _common_args(images_dir, log_file=log_file, verbosity=verbosity,
                         tcp_established=tcp_established, file_locks=file_locks,
                         shell_job=shell_job, network_lock=network_lock)
    if leave_running:
        args.append("--leave-running")
    if netns_inode is not None:
        args += ["--external", external_netns_arg(netns_inode, netns_key)]
    for ext in external:
        args += ["--external", ext]
    return args + list(extra_args)


def restore_args(images_dir: os.PathLike | str, *, inherit_fds: Mapping[int, str] | None = None,
                 tcp_established: bool = True, file_locks: bool = True, shell_job: bool = False,
                 detach: bool = True, pidfile: str | None = "restore.pid",
                 network_lock: str | None = None, log_file: str = "restore.log",
                 verbosity: int = 4, extra_args: Sequence[str] = ()) -> list[str]:
    """Arguments (after the criu binary) to restore the images in `images_dir`.

    `inherit_fds` maps our fd numbers to keys (``--inherit-fd fd[N]:KEY``); for a network
    namespace declared external at dump, N is an open fd of the target netns file."""
    args = ["restore"]
    args += _common_args(images_dir, log_file=log_file, verbosity=verbosity,
                         tcp_established=tcp_established, file_locks=file_locks,
                         shell_job=shell_job, network_lock=network_lock)
    if detach:
        args.append("--restore-detached")
    if pidfile:
        args += ["--pidfile", pidfile]
    for fd, key in sorted((inherit_fds or {}).items()):
        args += ["--inherit-fd", inherit_fd_arg(fd, key)]
    return args + list(extra_args)


def netns_inode_of_pid(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def clear_network_lock(netns_path: str | os.PathLike) -> list[str]:
    """Remove the DROP-everything rules a CRIU dump leaves in a (source) namespace.

    A dump locks the task's whole network namespace (nft table ``inet CRIU-<id>``, or an
    iptables chain ``CRIU`` jumped to from INPUT/OUTPUT); a restore elsewhere never unlocks
    it. Returns what was removed."""
    nsenter = ["nsenter", f"--net={netns_path}", "--"]
    removed: list[str] = []
    if shutil.which("nft"):
        r = subprocess.run(nsenter + ["nft", "list", "tables"], capture_output=True, text=True,
                           timeout=30)
        for line in r.stdout.splitlines():
            parts = line.split()  # "table inet CRIU-..."
            if len(parts) == 3 and parts[0] == "table" and parts[2].startswith("CRIU"):
                d = subprocess.run(nsenter + ["nft", "delete", "table", parts[1], parts[2]],
                                   capture_output=True, text=True, timeout=30)
                if d.returncode == 0:
                    removed.append(f"nft table {parts[1]} {parts[2]}")
    for tool in ("iptables", "ip6tables"):
        if not shutil.which(tool):
            continue
        r = subprocess.run(nsenter + [tool, "-w", "-n", "-L", "CRIU"], capture_output=True,
                           timeout=30)
        if r.returncode != 0:
            continue  # no CRIU chain
        for cmd in (["-D", "INPUT", "-j", "CRIU"], ["-D", "OUTPUT", "-j", "CRIU"],
                    ["-F", "CRIU"], ["-X", "CRIU"]):
            subprocess.run(nsenter + [tool, "-w", *cmd], capture_output=True, timeout=30)
        removed.append(f"{tool} chain CRIU")
    return removed


# --------------------------------------------------------------------------- the wrapper

class Criu:
    """A CRIU binary: version, checks, and dump/restore with the flags migration needs."""

    def __init__(self, path: str | os.PathLike | None = None,
                 network_lock: str | None = DEFAULT_NETWORK_LOCK):
        found = str(path) if path else find_criu()
        if not found:
            raise CriuError("lookup", 1, None, [], f"no CRIU found; {HINT_GET_CRIU}")
        self.path = found
        self.network_lock = network_lock
        self._version: str | None = None

    def __repr__(self) -> str:
        return f"Criu({self.path!r})"

    def run(self, args: Sequence[str], *, timeout: float = 60, **kwargs: Any
            ) -> subprocess.CompletedProcess:
        """Run criu with `args`; output captured as text, no exception on failure."""
        return subprocess.run([self.path, *args], capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)

    @property
    def version(self) -> str:
        """'4.2.1', or '' if `criu --version` says nothing usable."""
        if self._version is None:
            try:
                r = self.run(["--version"], timeout=10)
                self._version = parse_version(r.stdout + r.stderr) or ""
            except (OSError, subprocess.TimeoutExpired):
                self._version = ""
        return self._version

    def check(self, feature: str | None = None, timeout: float = 30) -> tuple[bool, str]:
        """`criu check [--feature F]`: (passed, its last meaningful output line)."""
        args = ["check"] + (["--feature", feature] if feature else [])
        try:
            r = self.run(args, timeout=timeout)
        except subprocess.TimeoutExpired:
            return False, f"`criu {' '.join(args)}` timed out after {timeout:.0f} s"
        except OSError as e:
            return False, f"cannot run {self.path}: {e}"
        lines = [ln.strip() for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
        # The kdat-cache warning is noise on a /run that is not tmpfs.
        lines = [_LEVEL.sub("", ln) for ln in lines if "kdat cache" not in ln]
        if r.returncode == 0:
            return True, (lines[-1] if lines else "ok")
        return False, (first_error(lines) or (lines[-1] if lines else f"exit {r.returncode}"))

    def _run_logged(self, action: str, args: list[str], log_path: Path, timeout: float,
                    **kwargs: Any) -> tuple[subprocess.CompletedProcess, float]:
        log.debug("running %s %s", self.path, " ".join(args))
        t0 = time.monotonic()
        try:
            r = self.run(args, timeout=timeout, **kwargs)
        except subprocess.TimeoutExpired as e:
            out = e.stderr or e.stdout or ""
            if isinstance(out, bytes):
                out = out.decode(errors="replace")
            raise CriuError(action, None, log_path, log_tail(log_path), out) from None
        dt = time.monotonic() - t0
        if r.returncode != 0:
            raise CriuError(action, r.returncode, log_path, log_tail(log_path),
                            r.stderr or r.stdout)
        return r, dt

    def dump(self, pid: int, images_dir: os.PathLike | str, extra_args: Sequence[str] = (), *,
             netns_key: str | None = NETNS_KEY, timeout: float = 120, **opts: Any) -> CriuRun:
        """Dump the tree rooted at `pid` into `images_dir` (created if missing).

        If the task lives in another network namespace than ours, that namespace is declared
        external under `netns_key` (restore it with the same key). Other keyword options are
        those of `dump_args` (tcp_established, file_locks, leave_running, network_lock, ...).
        Raises CriuError with the tail of dump.log on failure."""
        images = Path(images_dir)
        images.mkdir(parents=True, exist_ok=True)
        inode = None
        if netns_key:
            try:
                inode = netns_inode_of_pid(pid)
            except OSError as e:
                raise CriuError("dump", 1, None, [], f"no process {pid} to dump ({e})") from None
            if inode == os.stat("/proc/self/ns/net").st_ino:
                inode = None  # same namespace as CRIU: nothing to declare
        opts.setdefault("network_lock", self.network_lock)
        args = dump_args(pid, images, netns_inode=inode, netns_key=netns_key or NETNS_KEY,
                         extra_args=extra_args, **opts)
        log_path = images / opts.get("log_file", "dump.log")
        _, dt = self._run_logged("dump", args, log_path, timeout)
        log.info("criu dump of pid %d took %.3f s (%s)", pid, dt, images)
        return CriuRun(args, dt, log_path)

    def restore(self, images_dir: os.PathLike | str, extra_args: Sequence[str] = (), *,
                netns: os.PathLike | str | None = None, netns_key: str = NETNS_KEY,
                inherit_fds: Mapping[int, str] | None = None, timeout: float = 120,
                **opts: Any) -> CriuRun:
        """Restore the images in `images_dir`, detached; the result's `pid` is the root task.

        `netns` is the target network namespace file (e.g. /var/run/netns/NAME) for a dump
        whose namespace was declared external under `netns_key`: it is opened and handed to
        CRIU with ``--inherit-fd``, so the task joins that namespace as is (unlike
        ``--join-ns``, which would rewrite its addresses and routes). Detached tasks are
        re-parented to our nearest child subreaper (or init): the caller reaps them.
        Raises CriuError with the tail of restore.log on failure."""
        images = Path(images_dir)
        fds = dict(inherit_fds or {})
        opened: list[int] = []
        try:
            if netns is not None:
                fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
                opened.append(fd)
                fds[fd] = netns_key
            opts.setdefault("pidfile", "restore.pid")
            opts.setdefault("network_lock", self.network_lock)
            args = restore_args(images, inherit_fds=fds, extra_args=extra_args, **opts)
            log_path = images / opts.get("log_file", "restore.log")
            pidfile = images / opts["pidfile"] if opts["pidfile"] else None
            if pidfile is not None:
                pidfile.unlink(missing_ok=True)
            _, dt = self._run_logged("restore", args, log_path, timeout, pass_fds=tuple(fds))
        finally:
            for fd in opened:
                os.close(fd)
        pid = None
        if pidfile is not None:
            try:
                pid = int(pidfile.read_text().split()[0])
            except (OSError, ValueError, IndexError):
                log.warning("criu restore left no readable pidfile %s", pidfile)
        log.info("criu restore took %.3f s (pid %s, %s)", dt, pid, images)
        return CriuRun(args, dt, log_path, pid)


# --------------------------------------------------------------------------- probes

_libc = ctypes.CDLL(None, use_errno=True)


def _check_errno(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def set_child_subreaper() -> None:
    """Make this process the reaper of orphaned descendants (restored tasks land here)."""
    _check_errno(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


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
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
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

    def __enter__(self) -> "ProbeNetns":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _reap(pid: int, timeout: float = 5.0) -> None:
    """Collect a dead child (or adopted orphan) so its pid becomes free; ignore non-children."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done or time.monotonic() > deadline:
            return
        time.sleep(0.02)


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
    hint = ("FRR routers (zebra joins rtnetlink groups > 32) cannot be live-migrated with "
            "this CRIU; use BIRD routers, or point ROUTERLAB_CRIU at a CRIU built with "
            ">32-group netlink support")
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
    pkg_root = str(Path(__file__).resolve().parents[1])
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


# --------------------------------------------------------------------------- features + cache

def _missing(detail: str, hint: str) -> dict[str, Feature]:
    return {n: Feature(n, False, detail, hint) for n in FEATURE_NAMES}


def cache_key(criu_path: str, version: str) -> dict[str, Any]:
    """What identifies a result: the binary (path, version, file identity) and the kernel."""
    real = os.path.realpath(criu_path)
    try:
        st = os.stat(real)
        ident = [st.st_size, st.st_mtime_ns, st.st_ino]
    except OSError:
        ident = []
    u = os.uname()
    # get-criu.sh replaces the whole prefix when it refetches, so the wrapper's own file
    # identity changes whenever the binary behind it does.
    return {"criu": criu_path, "realpath": real, "version": version, "file": ident,
            "kernel": f"{u.release} {u.version}"}


def _key_id(key: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def load_cache(path: Path, key: Mapping[str, Any]) -> dict[str, Feature] | None:
    """Cached features for exactly this key, or None (missing, stale, other format, corrupt)."""
    try:
        data = json.loads(path.read_text())
        entry = data["entries"][_key_id(key)]
        if data.get("format") != CACHE_FORMAT or entry.get("key") != dict(key):
            return None
        feats = {n: Feature.from_dict(d) for n, d in entry["features"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if set(feats) != set(FEATURE_NAMES):
        return None
    return {n: feats[n] for n in FEATURE_NAMES}


def save_cache(path: Path, key: Mapping[str, Any], feats: Mapping[str, Feature]) -> None:
    """Add this key's results to the cache file (atomically; other keys are kept)."""
    try:
        data = json.loads(path.read_text())
        if (not isinstance(data, dict) or data.get("format") != CACHE_FORMAT
                or not isinstance(data.get("entries"), dict)):
            raise ValueError
    except (OSError, ValueError):
        data = {"format": CACHE_FORMAT, "entries": {}}
    data["entries"][_key_id(key)] = {"key": dict(key), "time": time.time(),
                                     "features": {n: f.to_dict() for n, f in feats.items()}}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".criu-features.")
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would hide the results from non-root doctor runs
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("cannot write CRIU feature cache %s: %s", path, e)


def detect_features(criu: Criu) -> dict[str, Feature]:
    """Measure every feature now (no cache). Needs root."""
    ok, detail = criu.check()
    feats = {"check": Feature("check", ok, f"criu {criu.version or '?'} check: {detail}",
                              "" if ok else "this CRIU does not work on this kernel; "
                              + HINT_GET_CRIU)}
    if ok:
        feats.update(run_probes(criu.path))
    else:
        for n in ("socket_dump", "netlink_groups_gt32"):
            feats[n] = Feature(n, False, "not tried: `criu check` fails", feats["check"].hint)
    ok, detail = criu.check("mem_dirty_track")
    feats["soft_dirty"] = Feature(
        "soft_dirty", ok, f"memory dirty tracking: {detail}",
        "" if ok else "no iterative pre-copy (criu pre-dump): migration falls back to "
        "stall-and-copy; needs a kernel with CONFIG_MEM_SOFT_DIRTY")
    ok, detail = criu.check("uffd-noncoop")
    feats["lazy_pages"] = Feature(
        "lazy_pages", ok, f"userfaultfd (uffd-noncoop): {detail}",
        "" if ok else "no post-copy (--lazy-pages): migration uses stall-and-copy; needs "
        "a kernel with CONFIG_USERFAULTFD")
    return {n: feats[n] for n in FEATURE_NAMES}


def features(refresh: bool = False, criu_path: str | None = None,
             cache_path: Path | None = None) -> dict[str, Feature]:
    """Each VROOM-relevant CRIU feature on this machine, cached per CRIU binary and kernel."""
    path = criu_path or find_criu()
    if not path:
        return _missing("no CRIU found (ROUTERLAB_CRIU, /opt/routerlab/criu/bin/criu, PATH)",
                        HINT_GET_CRIU)
    criu = Criu(path)
    cache = cache_path or CACHE_PATH
    key = cache_key(path, criu.version)
    if not refresh:
        cached = load_cache(cache, key)
        if cached is not None:
            return cached  # also readable without root
    if os.geteuid() != 0:
        return _missing(f"not measured: CRIU needs root ({path})",
                        "run as root (or once `sudo routerlab doctor` to fill the cache)")
    feats = detect_features(criu)
    save_cache(cache, key, feats)
    return feats


def socket_selftest(criu_path: str | None = None) -> Feature:
    """The TCP-socket dump/restore self-test alone, uncached (runs in a child subreaper)."""
    path = criu_path or find_criu()
    if not path:
        return Feature("socket_dump", False, "no CRIU found", HINT_GET_CRIU)
    return run_probes(path, ("socket_dump",))["socket_dump"]


# --------------------------------------------------------------------------- command line

def main(argv: Sequence[str] | None = None) -> int:
    """`python -m routerlab.criu {features,selftest}`; exit 0 when CRIU can migrate a router."""
    ap = argparse.ArgumentParser(prog="python -m routerlab.criu",
                                 description=(__doc__ or "").split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("features", help="detect (or read cached) CRIU features")
    f.add_argument("--refresh", action="store_true", help="ignore the cache")
    f.add_argument("--json", action="store_true")
    f.add_argument("--criu", help="CRIU binary (default: the usual lookup)")
    s = sub.add_parser("selftest", help="dump/restore a process with a TCP connection in a netns")
    s.add_argument("--criu")
    p = sub.add_parser("_probe")  # internal: run probes in this process, print JSON
    p.add_argument("--criu", required=True)
    p.add_argument("which", nargs="+", choices=("socket_dump", "netlink_groups_gt32"))
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if a.cmd == "_probe":
        print(json.dumps(_probe_main(a.criu, a.which)))
        return 0
    if a.cmd == "selftest":
        res = socket_selftest(a.criu)
        print(f"{'ok' if res.ok else 'FAIL'} {res.name}: {res.detail}")
        if not res.ok and res.hint:
            print(f"   -> {res.hint}")
        return 0 if res.ok else 1
    path = a.criu or find_criu()
    feats = features(refresh=a.refresh, criu_path=path)
    if a.json:
        print(json.dumps({"criu": path, "features": {n: x.to_dict() for n, x in feats.items()}},
                         indent=1))
    else:
        print(f"criu: {path or 'none'}")
        for x in feats.values():
            print(f"  {'ok  ' if x.ok else 'MISS'} {x.name:<20} {x.detail}")
            if not x.ok and x.hint:
                print(f"       {'':<20} -> {x.hint}")
    return 0 if feats["check"].ok and feats["socket_dump"].ok else 1


if __name__ == "__main__":
    sys.exit(main())
