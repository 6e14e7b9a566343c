"""One control-plane move (`ControlPlaneMove`): dump at the source, restore at the (locked)
target, fix what CRIU does not carry, and put the daemon back from its images if the restore
fails."""
from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from routerlab import criu, registry
from routerlab.daemons import Daemon
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.netns import Netns

from . import netlink
from .fibcopy import RouteWatch, copy_routes
from .link import MigrationLink, predump_args, raised_priority
from .processes import CpMoveError, daemon_processes, reap_dumped, reap_leftovers, rebind_daemon, subreaper
from .sockets import memberships, raw_socket_options, rejoin_multicast, restore_socket_options

log = logging.getLogger(__name__)

LOCK_TABLE = "vroom_lock"
_LOCK_RULES = f"""table inet {LOCK_TABLE} {{
  chain input {{ type filter hook input priority -300; policy drop; iifname "lo" accept; }}
}}
"""


# CRIU's reasons to refuse a dump that may pass a moment later: a netlink socket with an
# event queued at the freeze (the daemon had not read it yet)
RETRY_DUMP = ("data to read",)


def retryable_dump_error(e: criu.CriuError) -> bool:
    text = " ".join([str(e), e.output or "", *e.log_tail])
    return any(r in text for r in RETRY_DUMP)


def lock_netns(ns: Netns) -> None:
    """Drop every packet arriving in `ns` (but on lo) until `unlock_netns`: the target of a
    move gets the routing messages from the moment they are redirected, and must not answer
    them (a TCP RST would end a BGP session) before the daemon is restored there."""
    ns.run(["nft", "-f", "-"], input=_LOCK_RULES)


def unlock_netns(ns: Netns) -> None:
    ns.run(["nft", "delete", "table", "inet", LOCK_TABLE], check=False)


@dataclass
class CpMoveResult:
    """Timings of one control-plane move (seconds)."""

    method: str = "stall-and-copy"
    predump_s: float = 0.0
    dump_s: float = 0.0
    delta_routes: int = 0
    delta_copy_s: float = 0.0  # routes changed since the pre-copy, copied during the freeze
    restore_s: float = 0.0
    postcopy: bool = False  # restored with --lazy-pages: pages followed after the freeze
    postcopy_s: float = 0.0  # restore's end to every page delivered (at most: seen after the unlock)
    redirect_s: float = 0.0  # punts turned towards the (locked) target, before the freeze
    scan_wait_s: float = 0.0  # before the freeze: a netlink dump of the daemon's let finish
    unlock_s: float = 0.0  # the target's lock removed once the daemon runs there
    rejoin_s: float = 0.0
    freeze_s: float = 0.0  # from the start of the final dump until the daemon hears again
    image_bytes: int = 0
    pages_over_link: bool = False
    dump_attempts: int = 0  # a dump refused for a transient reason is tried again
    dump_errors: list[str] = field(default_factory=list)  # of the attempts that failed
    netlink_dropped: list[str] = field(default_factory=list)  # "prog:fdN:-G" before the dump
    netlink_fixed: list[str] = field(default_factory=list)  # "prog:fdN:+G" / ":EXT_ACK=1" after
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
    before_dump: Callable[[int], None] | None = None  # test hook, given the attempt (1, 2, ...)
    # whether the CRIU dumps netlink sockets in groups above 32 itself; if not, those
    # memberships are dropped right before the dump and added back after the restore
    netlink_gt32: bool = False
    dump_attempts: int = 3  # tries of a dump refused for a transient reason (RETRY_DUMP)
    dump_backoff_s: float = 0.05  # wait before try k+1: k times this
    scan_wait_max_s: float = 30.0  # longest wait for a running netlink dump before the freeze
    route_watch: RouteWatch | None = None  # source route changes since the FIB pre-copy
    # post-copy restore (`criu restore --lazy-pages` fed by `criu lazy-pages` from the
    # images): for a dump whose memory pages take at least this many bytes (None: never).
    # The restore then maps the memory instead of reading it in, and the pages follow in
    # the background while the daemon runs: the freeze loses the restore's page copy.
    postcopy_min_bytes: int | None = None
    dumped: bool = False
    restored: bool = False
    # a lazy-pages server failed after the restore: the restored daemon lacks memory it can
    # no longer get (untouched pages would read as zeros), so it must not be moved back as
    # it runs: `recover` restores the source from the intact images instead
    pages_lost: bool = False
    result: CpMoveResult = field(default_factory=CpMoveResult)
    _groups: dict[str, set[str]] = field(default_factory=dict)
    _names: list[str] = field(default_factory=list)
    _dumped_pids: list[tuple[str, int]] = field(default_factory=list)
    _sockopts: dict[str, dict[int, dict[str, int]]] = field(default_factory=dict)
    _netlink: netlink.NetlinkState = field(default_factory=dict)
    _lazy: list[subprocess.Popen] = field(default_factory=list)  # lazy-pages servers running
    _t_restored: float = 0.0

    def run(self) -> CpMoveResult:
        res = self.result
        procs = daemon_processes(self.daemon)  # what to dump: a tree's parent covers its children
        if not procs:
            raise CpMoveError("dump", f"{self.daemon.spec.name}: the daemon is not running")
        self._names = [n for n, _ in procs]
        self._dumped_pids = list(self.daemon.pids.items())
        self._groups = memberships(self.src.name)
        self._sockopts = {name: raw_socket_options(pid) for name, pid in self._dumped_pids}
        self._netlink = netlink.save(self.daemon.pids)
        if self.images.exists():
            shutil.rmtree(self.images)
        self.images.mkdir(parents=True)
        if self.precopy:
            res.method = "pre-copy"
            t0 = time.monotonic()
            for name, pid in procs:
                self._predump(pid, self.images / "pre" / name)
            res.predump_s = time.monotonic() - t0
        res.scan_wait_s = self._await_no_netlink_dump(self.scan_wait_max_s)
        # ---- the freeze: from the moment routing messages go to the locked target until
        # the daemon hears them again there
        with raised_priority():
            lock_netns(self.dst)
            t0 = time.monotonic()
            if self.redirect is not None:
                self.redirect()
            res.redirect_s = time.monotonic() - t0
            t_freeze = time.monotonic()
            try:
                self._frozen(procs, res, t_freeze)
            except BaseException:
                if self.restored:
                    self._await_pages(check=False)  # a restored daemon keeps its pages coming
                else:
                    self._stop_lazy()  # no restore connected: a server would wait forever
                raise
            res.freeze_s = time.monotonic() - t_freeze
        if self._lazy:
            self._await_pages()
            res.postcopy_s = time.monotonic() - self._t_restored
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
        with subreaper():  # a dumped tree's children, orphaned as it dies, are reaped here
            self._dump_retrying(procs, res)
            self.dumped = True
            res.dump_s = time.monotonic() - t_freeze
            reap_dumped(self.daemon)
        t0 = time.monotonic()
        if self.route_watch is None or self.route_watch.changed():  # only what changed
            res.delta_routes = copy_routes(self.src.name, self.dst.name, only=(
                self.route_watch.prefixes if self.route_watch is not None else None))
        res.delta_copy_s = time.monotonic() - t0
        if self.before_restore is not None:
            self.before_restore()
        t0 = time.monotonic()
        pids: dict[str, int] = {}
        for name in self._names:
            lazy = self._postcopy(self.images / name)
            res.postcopy = res.postcopy or lazy
            pids[name] = self._restore(self.images / name, self.dst, "restore", lazy=lazy)
        self.restored = True
        self._t_restored = time.monotonic()
        res.restore_s = self._t_restored - t0
        rebind_daemon(self.daemon, self.dst, pids)
        res.pids = self.daemon.pids
        t0 = time.monotonic()
        unlock_netns(self.dst)
        if self.after_restore is not None:
            self.after_restore()
        res.unlock_s = time.monotonic() - t0
        t0 = time.monotonic()
        try:
            self._fix_sockets(res)
        except OSError as e:
            raise CpMoveError("rejoin", f"re-joining multicast groups: {e}") from None
        res.rejoin_s = time.monotonic() - t0

    def _fix_sockets(self, res: CpMoveResult) -> None:
        """What CRIU does not carry, put back on the (restored or recovered) processes:
        IP multicast memberships and raw-socket options, netlink groups and ack flags."""
        pids = self.daemon.pids
        res.netlink_fixed += netlink.put_back(pids, self._netlink)
        for name, pid in pids.items():
            res.joined += rejoin_multicast(pid, self._groups, self.ifindex)
            res.sockopts_fixed += restore_socket_options(pid, self._sockopts.get(name, {}))

    def _await_no_netlink_dump(self, timeout: float, poll_s: float = 0.05) -> float:
        """Wait until no netlink dump runs on the daemon's sockets and what such a dump
        queued has been read (BIRD scans the kernel table every 10 s: with 1M routes a scan
        reads for seconds, and a dump meanwhile is refused three times over, "has data to
        read"). Before the freeze, so the wait costs the neighbours nothing; on timeout the
        dump goes ahead (and may be retried). Returns the seconds waited."""
        watched: set[tuple[str, int]] = set()  # sockets seen dumping: wait for their queue

        def idle() -> bool:
            busy = False
            for name, pid in self.daemon.pids.items():
                try:
                    queues = criu.netlink_queues(pid)
                except OSError:  # a program that exited: the dump will say
                    continue
                for fd, (dumping, queued) in queues.items():
                    if dumping:
                        watched.add((name, fd))
                    busy = busy or dumping or ((name, fd) in watched and queued > 0)
            return not busy
        t0 = time.monotonic()
        with contextlib.suppress(ExpectTimeout):
            wait_for(idle, timeout, interval=poll_s, retry_on=(), what="no netlink dump")
        waited = time.monotonic() - t0
        if waited >= 0.05:
            log.info("%s: waited %.2f s for a netlink dump (kernel table scan) to end",
                     self.daemon.spec.name, waited)
        return waited

    def _dump_retrying(self, procs: list[tuple[str, int]], res: CpMoveResult) -> None:
        """Dump every root; a dump refused for a transient reason (`RETRY_DUMP`: say an
        event queued on a netlink socket at the freeze) is tried again after a short
        backoff. On failure the source runs on with its netlink memberships back."""
        for attempt in range(1, self.dump_attempts + 1):
            res.dump_attempts = attempt
            if self.before_dump is not None:
                self.before_dump(attempt)
            try:
                if not self.netlink_gt32:
                    res.netlink_dropped += netlink.drop_high(self.daemon.pids, self._netlink)
                self._dump(procs, res)
                return
            except (criu.CriuError, OSError) as e:
                res.dump_errors.append(str(e))
                retry = isinstance(e, criu.CriuError) and retryable_dump_error(e)
                criu.clear_network_lock(self.src.path)
                if not retry or attempt == self.dump_attempts or not self.daemon.dump_roots():
                    self._undo_drop(res)
                    raise CpMoveError("dump", f"{e} (attempt {attempt} of {self.dump_attempts})") from None
                log.warning("%s: dump attempt %d failed (%s), trying again", self.daemon.spec.name,
                            attempt, e)
                time.sleep(self.dump_backoff_s * attempt)

    def _undo_drop(self, res: CpMoveResult) -> None:
        """The dump failed and the daemon runs on at the source: its memberships back."""
        try:
            fixed = netlink.put_back(self.daemon.pids, self._netlink)
        except OSError as e:
            log.error("%s: netlink groups not put back at the source: %s", self.daemon.spec.name, e)
            return
        res.netlink_fixed += fixed

    def _dump(self, procs: list[tuple[str, int]], res: CpMoveResult) -> None:
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
            finally:
                if server is not None:
                    try:
                        server.wait(timeout=30)
                    except subprocess.TimeoutExpired:
                        server.kill()
                        server.wait(5)
                    registry.session().release_process(server.pid)

    def _predump(self, pid: int, d: Path) -> None:
        """One round of iterative pre-copy: memory copied while the daemon runs, dirty pages
        tracked (needs CONFIG_MEM_SOFT_DIRTY) so the final dump sends only the rest."""
        args = predump_args(pid, d, criu.netns_inode_of_pid(pid))
        d.mkdir(parents=True, exist_ok=True)
        r = self.criu.run(args, timeout=120)
        if r.returncode != 0:
            raise CpMoveError("pre-dump", criu.first_error(criu.log_tail(d / "dump.log"))
                              or (r.stderr.strip().splitlines() or ["failed"])[-1])

    def _postcopy(self, images: Path) -> bool:
        """Whether to restore the dump in `images` post-copy: its pages are big enough."""
        if self.postcopy_min_bytes is None:
            return False
        pages = sum(p.stat().st_size for p in images.glob("pages-*.img"))
        return pages >= self.postcopy_min_bytes

    def _restore(self, images: Path, ns: Netns, stage: str, lazy: bool = False) -> int:
        server: subprocess.Popen | None = None
        try:
            extra: list[str] = []
            if lazy:
                server = self.criu.serve_lazy_pages(images, started=self._lazy_started)
                extra.append("--lazy-pages")
            with subreaper():
                r = self.criu.restore(images, extra, netns=ns.path, log_file=f"{stage}.log",
                                      pidfile=f"{stage}.pid")
        except BaseException as e:
            if server is not None:  # this restore's server only: others serve restored roots
                self._stop_lazy([server])
            if not isinstance(e, criu.CriuError):
                raise
            reap_leftovers([pid for _, pid in self._dumped_pids])
            raise CpMoveError(stage, str(e)) from None
        if r.pid is None:
            raise CpMoveError(stage, f"criu restore left no pid file in {images}")
        return r.pid

    def _lazy_started(self, server: subprocess.Popen) -> None:
        self._lazy.append(server)
        registry.session().add_process(server.pid, "criu-lazy-pages")

    def _await_pages(self, timeout: float = 120, check: bool = True) -> None:
        """Wait until the lazy-pages servers have delivered every page (they exit then). A
        server that fails leaves the restored daemon with pages it cannot get
        (`pages_lost`): an error, logged only with `check` false (a path failing already)."""
        failed = []
        try:
            for p in self._lazy:
                try:
                    rc = p.wait(timeout)
                except subprocess.TimeoutExpired:
                    rc = None
                if rc != 0:
                    failed.append(f"criu lazy-pages {'did not finish' if rc is None else f'exited {rc}'}")
        finally:
            self._stop_lazy()
        if failed:
            self.pages_lost = True
            if not check:
                log.error("%s: %s", self.daemon.spec.name, "; ".join(failed))
                return
            raise CpMoveError("post-copy", f"{'; '.join(failed)} (see lazy-pages.log in {self.images})")

    def _stop_lazy(self, servers: list[subprocess.Popen] | None = None) -> None:
        """Kill (if still running) and release lazy-pages servers: `servers`, or all."""
        for p in list(self._lazy if servers is None else servers):
            try:
                if p.poll() is None:
                    p.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(5)
            finally:
                registry.session().release_process(p.pid)
                if p in self._lazy:
                    self._lazy.remove(p)

    def recover(self) -> dict[str, int]:
        """After a failed restore: bring the daemon back in the source namespace from the
        dump (the state it had when it stopped), re-join its groups, drop the lock."""
        if not self.dumped:
            return {}
        if self.restored:  # anything half-restored at the target
            with subreaper():  # a tree's children, orphaned as it dies, are reaped here
                for p in self.daemon.processes():
                    if p.popen.poll() is None:
                        p.popen.kill()
                reap_dumped(self.daemon)
        pids = {}
        for name in self._names:
            pids[name] = self._restore(self.images / name, self.src, "recover")
        rebind_daemon(self.daemon, self.src, pids)
        criu.clear_network_lock(self.src.path)
        self._fix_sockets(self.result)
        self.dumped = self.restored = self.pages_lost = False
        log.warning("%s: control plane recovered in %s from its dump", self.daemon.spec.name,
                    self.src.name)
        return pids
