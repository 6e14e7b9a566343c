"""The daemon's processes around a control-plane move: the dump's victims reaped, the restored
ones adopted by the driver, this process their subreaper meanwhile."""
from __future__ import annotations

import contextlib
import logging
import os
import subprocess
from collections.abc import Iterator

from routerlab import criu
from routerlab.daemons import Daemon, DaemonError
from routerlab.daemons.base import pid_alive
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.netns import Netns

log = logging.getLogger(__name__)


class CpMoveError(RuntimeError):
    """A control-plane move failed; `stage` says where (dump, restore, rejoin, ...)."""

    def __init__(self, stage: str, message: str):
        self.stage = stage
        super().__init__(f"{stage}: {message}")


@contextlib.contextmanager
def subreaper() -> Iterator[None]:
    """Be the child subreaper (`routerlab.criu.set_child_subreaper`) while CRIU restores:
    the restored daemon (orphaned when the detached criu exits) becomes our child, which we
    reap when a later dump kills it, so its pid is free for the next restore. Only for
    that moment: other programs' orphans must not pile up here."""
    criu.set_child_subreaper()
    try:
        yield
    finally:
        criu.set_child_subreaper(False)


def daemon_processes(d: Daemon) -> list[tuple[str, int]]:
    """(name, pid) of what a dump of the driver's daemon must take, one CRIU dump each:
    the parent of a process tree alone (the dump covers its children), else every process."""
    return list(d.dump_roots().items())


def _pid_gone(pid: int) -> bool:
    """Whether `pid` is free again: reaped when it is our (zombie) child, else gone from /proc."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass
    return not os.path.exists(f"/proc/{pid}")


def reap_dumped(d: Daemon, timeout: float = 10.0) -> None:
    """Wait for the processes a dump killed, so their pids are free for a restore. A tree's
    children die orphaned: call this as their subreaper (`subreaper`), so they are ours to
    reap (no one else may: init here does not reap)."""
    procs = d.processes()
    for p in procs:
        if isinstance(p.popen, subprocess.Popen):
            try:
                p.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                raise CpMoveError("dump", f"{p.name} (pid {p.popen.pid}) still alive after the dump") from None
    pending = [p for p in procs if p.popen.pid > 0 and not isinstance(p.popen, subprocess.Popen)]

    def all_gone() -> bool:
        pending[:] = [p for p in pending if not _pid_gone(p.popen.pid)]
        return not pending

    try:
        wait_for(all_gone, timeout, interval=0.005, retry_on=(), what="dumped processes reaped")
    except ExpectTimeout:
        raise CpMoveError("dump", ", ".join(f"{p.name} (pid {p.popen.pid})" for p in pending)
                          + " still there after the dump") from None


def rebind_daemon(d: Daemon, ns: Netns, pids: dict[str, int]) -> None:
    """Point a daemon driver at its restored processes in their new namespace (after a
    restore they are new children of this process with the same pids)."""
    try:
        d.adopt(ns, pids)
    except DaemonError as e:
        raise CpMoveError("rebind", str(e)) from None


def reap_leftovers(pids: list[int], timeout: float = 5.0) -> None:
    """A failed restore can leave its half-made tasks as our zombies: collect them, or
    their pids stay taken and no later restore (at the source either) can fork them."""
    pending = list(pids)

    def gone(pid: int) -> bool:
        if not (pid_alive(pid) or os.path.exists(f"/proc/{pid}")):
            return True
        try:
            return os.waitpid(pid, os.WNOHANG)[0] != 0
        except ChildProcessError:
            return not os.path.exists(f"/proc/{pid}")

    def all_gone() -> bool:
        pending[:] = [p for p in pending if not gone(p)]
        return not pending

    try:
        wait_for(all_gone, timeout, interval=0.02, retry_on=(), what="failed restore's tasks reaped")
    except ExpectTimeout:
        for pid in pending:
            log.warning("pid %d is still taken after a failed restore", pid)
