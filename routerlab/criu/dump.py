"""Dump and restore: CRIU's command lines for migration and the `Criu` wrapper that runs them,
plus `clear_network_lock` for the rules a dump leaves in the source namespace."""
from __future__ import annotations

import logging
import os
import select
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from routerlab.criu.locate import HINT_GET_CRIU, CriuError, find_criu, first_error, log_tail, parse_version, _LEVEL

log = logging.getLogger(__name__)

# nftables: CRIU locks through its own libnftables (no external iptables binary) and leaves
# one table, inet CRIU-*, that `clear_network_lock` removes; iptables mode patches the shared
# filter table instead.
DEFAULT_NETWORK_LOCK = "nftables"
NETNS_KEY = "rlnet"  # key naming the external network namespace in --external/--inherit-fd


@dataclass
class CriuRun:
    """A finished dump or restore: how long CRIU took, its log, and the restored root pid."""

    args: list[str]
    seconds: float
    log_path: Path
    pid: int | None = None


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


LAZY_PAGES_SOCKET = "lazy-pages.socket"  # where `criu lazy-pages` listens, in its images dir


def lazy_pages_args(images_dir: os.PathLike | str, *, log_file: str = "lazy-pages.log",
                    verbosity: int = 2) -> list[str]:
    """Arguments of ``criu lazy-pages``: serve the memory pages dumped in `images_dir` to a
    restore run with ``--lazy-pages`` (post-copy: the restored tasks run at once and fault
    their pages in through userfaultfd while the daemon pushes the rest in the background;
    it exits once every page is delivered)."""
    return ["lazy-pages", "--images-dir", str(images_dir), "--log-file", log_file,
            f"-v{verbosity}"]


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
        chain = subprocess.run(nsenter + [tool, "-w", "-n", "-L", "CRIU"], capture_output=True,
                               timeout=30)
        if chain.returncode != 0:
            continue  # no CRIU chain
        for cmd in (["-D", "INPUT", "-j", "CRIU"], ["-D", "OUTPUT", "-j", "CRIU"],
                    ["-F", "CRIU"], ["-X", "CRIU"]):
            subprocess.run(nsenter + [tool, "-w", *cmd], capture_output=True, timeout=30)
        removed.append(f"{tool} chain CRIU")
    return removed


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

    def popen(self, args: Sequence[str], **kwargs: Any) -> subprocess.Popen:
        """Start criu with `args` in the background (no output kept: it logs to its file)."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        return subprocess.Popen([self.path, *args], stdin=subprocess.DEVNULL, **kwargs)

    def serve_lazy_pages(self, images_dir: os.PathLike | str, timeout: float = 10,
                         started: Callable[[subprocess.Popen], None] | None = None
                         ) -> subprocess.Popen:
        """Start ``criu lazy-pages`` for the dump in `images_dir` and wait until it listens
        (it says so on ``--status-fd``; a ``restore --lazy-pages`` that connects before
        fails). `started` is called with the process as soon as it exists (to record it).
        The caller waits for it to exit (every page delivered) before removing the images.
        Raises CriuError if it does not come up (the process is killed then)."""
        images = Path(images_dir)
        (images / LAZY_PAGES_SOCKET).unlink(missing_ok=True)  # an earlier restore's
        r, w = os.pipe()
        try:
            p = self.popen([*lazy_pages_args(images), "--status-fd", str(w)], pass_fds=(w,))
        finally:
            os.close(w)
        try:
            if started is not None:
                started(p)
            ready, _, _ = select.select([r], [], [], timeout)
            ok = bool(ready) and os.read(r, 1) != b""  # EOF: it exited without listening
        finally:
            os.close(r)
        if not ok:
            if p.poll() is None:
                p.kill()
            p.wait(5)
            log_path = images / "lazy-pages.log"
            raise CriuError("lazy-pages", p.returncode or 1, log_path, log_tail(log_path),
                            f"criu lazy-pages did not start (see {log_path})")
        return p

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
