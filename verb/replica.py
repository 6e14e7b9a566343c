"""Replicas and the replica manager: diverse daemons in private namespaces, recovery.

Each replica lives in its own namespace with the router's identity: the router's interface
names and addresses, its loopback, its router id and AS number, rendered by the replica's
daemon driver from the router's own `RouterSpec`. Each replica interface is a veth whose
other end is in the replica's *hypervisor-side* namespace, which holds the neighbours'
addresses: the hypervisor's stand-in sessions connect from there, so to the replica they
come from its neighbours. Two things differ from the router's spec, both so the hypervisor
decides when a replica's sessions open: the replica's neighbours are passive, and their hold
time is the replica hold time (short, so a hung replica is noticed in seconds).

The manager starts replicas, watches them (process exits, faults reported by the sessions,
voters' suspects), and recovers a faulty one: kill it, flush its FIB, start a new one (the
same implementation or the next one), replay the recorded streams into it, and readmit it
to voting once it agrees with the voted output.
"""
from __future__ import annotations

import asyncio
import copy
import ipaddress
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from routerlab.daemons import BirdDaemon, Daemon, GobgpDaemon, driver_for
from routerlab.daemons.gobgp import lean_go_runtime
from routerlab.daemons.spec import RouterSpec
from routerlab.netns import Netns, create_veth

from .core import Voter
from .fib import GobgpFib, KernelFib, Report

log = logging.getLogger(__name__)

IMPLEMENTATIONS = ("frr", "bird", "gobgp")
#: seconds between BIRD's scans of a replica's kernel table: nobody else writes that table
#: (a fault that does is undone by recovery, which restarts the daemon and so scans at once),
#: and each scan costs ~2 s of CPU at 1,000,000 routes (136 s of BIRD's 1M run at 10 s)
BIRD_KERNEL_SCAN_S = 600


def replica_spec(spec: RouterSpec, hold: int) -> RouterSpec:
    """The router's spec as a replica runs it: passive neighbours, the replica hold time."""
    s = copy.deepcopy(spec)
    for nb in s.bgp_neighbors:
        nb.passive = True
        nb.hold = hold
        nb.keepalive = max(1, hold // 3)
    return s.validate()


def make_replica_namespaces(tag: str, index: int, spec: RouterSpec) -> tuple[Netns, Netns]:
    """The replica's namespace and its hypervisor-side twin, joined by one veth per router
    interface (same name on both sides); the twin holds the neighbours' addresses."""
    made: list[Netns] = []
    try:
        rep = Netns.create(f"{tag}-r{index}")
        made.append(rep)
        hv = Netns.create(f"{tag}-h{index}")
        made.append(hv)
        for iface in spec.interfaces:
            create_veth(iface.name, iface.name, ns_a=rep, ns_b=hv)
        for nb in spec.bgp_neighbors:
            peer = ipaddress.IPv4Address(nb.peer)
            iface = next((i for i in spec.interfaces if peer in i.iface.network), None)
            if iface is None:
                raise ValueError(f"{spec.name}: neighbour {nb.peer} is on no interface's subnet")
            hv.ip("addr", "add", f"{peer}/{iface.iface.network.prefixlen}", "dev", iface.name)
        return rep, hv
    except BaseException:
        for ns in reversed(made):
            ns.delete()
        raise


class ReplicaSettings(Protocol):
    """The router's settings the manager reads (`VerbConfig` has them)."""

    @property
    def implementations(self) -> tuple[str, ...]: ...
    @property
    def window(self) -> float: ...
    @property
    def replica_hold(self) -> int: ...
    @property
    def replacement(self) -> str: ...


class Streams(Protocol):
    """The hypervisor's sessions towards the replicas (the `Interposer`)."""

    def attach(self, replica: str, hv_ns: str) -> None: ...
    def detach(self, replica: str) -> None: ...
    def synced(self, replica: str) -> bool: ...


class ReplicaHost(Protocol):
    """What the replica manager needs of the router it serves (`BugTolerantRouter`): the
    dependency points from the router to this module, never back."""

    @property
    def spec(self) -> RouterSpec: ...
    @property
    def run_dir(self) -> Path: ...
    @property
    def config(self) -> ReplicaSettings: ...
    @property
    def interposer(self) -> Streams | None: ...

    def voters(self) -> list[Voter]: ...
    def fib_reporter(self, replica: str) -> Report: ...
    def forget(self, replica: str) -> Awaitable[None]: ...


@dataclass
class Replica:
    """One replica: a daemon of some implementation in its namespace, and its FIB watcher."""

    name: str
    index: int
    impl: str
    ns: Netns
    hv: Netns
    daemon: Daemon | None = None
    fib: KernelFib | GobgpFib | None = None
    state: str = "down"  # starting, syncing, voting, recovering, failed
    generation: int = 0
    started_at: float | None = None
    history: list[dict] = field(default_factory=list)

    def pids(self) -> list[int]:
        return list(self.daemon.pids.values()) if self.daemon else []


@dataclass
class Recovery:
    """One fault and what the manager did about it."""

    replica: str
    reason: str
    detected: float  # monotonic
    impl_before: str
    impl_after: str = ""
    restarted: float | None = None
    readmitted: float | None = None

    @property
    def duration(self) -> float | None:
        return None if self.readmitted is None else self.readmitted - self.detected

    def to_json(self) -> dict:
        return {"replica": self.replica, "reason": self.reason, "impl_before": self.impl_before,
                "impl_after": self.impl_after, "duration_s": self.duration,
                "restart_s": None if self.restarted is None else self.restarted - self.detected}


class ReplicaManager:
    """Starts, watches and recovers the replicas of one bug-tolerant router."""

    TICK = 0.2
    MAX_ATTEMPTS = 3
    RETRY_S = 5.0

    def __init__(self, router: ReplicaHost, replicas: list[Replica]):
        self.router = router
        self.replicas = {r.name: r for r in replicas}
        self.recoveries: list[Recovery] = []
        self._tasks: set[asyncio.Task] = set()
        self._monitor: asyncio.Task | None = None

    def _streams(self) -> Streams:
        assert self.router.interposer is not None, "the interposer starts before the replicas"
        return self.router.interposer

    # ----- starting -----
    async def start_all(self) -> None:
        await asyncio.gather(*(self._start(r) for r in self.replicas.values()))
        for r in self.replicas.values():
            self._admit(r)  # at boot there is nothing to catch up with
        self._monitor = asyncio.get_running_loop().create_task(self._watch())

    async def _start(self, r: Replica) -> None:
        cfg = self.router.config
        r.state = "starting"
        r.generation += 1
        spec = replica_spec(self.router.spec, cfg.replica_hold)
        report = self.router.fib_reporter(r.name)
        if r.impl == "gobgp":
            # its FIB is its Loc-RIB over BMP: the station listens before gobgpd connects
            fib = GobgpFib(r.ns, spec, report)
            fib.listen()
            r.fib = fib
            # three replicas share the router's cores: a lean Go runtime
            r.daemon = GobgpDaemon(spec, go_runtime=lean_go_runtime(), bmp_station=fib.bmp_station)
        else:
            r.fib = KernelFib(r.ns.name, report)
            r.daemon = (BirdDaemon(spec, kernel_scan=BIRD_KERNEL_SCAN_S) if r.impl == "bird"
                        else driver_for(r.impl)(spec))
        run_dir = self.router.run_dir / f"{r.name}-{r.generation}"
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(None, lambda: r.daemon.start(r.ns, run_dir))
        except BaseException:
            r.fib.stop()
            raise
        r.started_at = time.monotonic()
        r.fib.start()
        r.state = "syncing"
        self._streams().attach(r.name, r.hv.name)
        log.info("replica %s: %s started in %s (generation %d)", r.name, r.impl, r.ns.name, r.generation)

    def _admit(self, r: Replica) -> None:
        r.state = "voting"
        for v in self.router.voters():
            v.set_voting(r.name, True)

    # ----- watching -----
    async def _watch(self) -> None:
        while True:
            try:
                self._check()
            except Exception:  # the watchdog must outlive any one bad check
                log.exception("replica watch failed")
            await asyncio.sleep(self.TICK)

    def _check(self) -> None:
        now = time.monotonic()
        suspects: set[str] = set()
        voters = self.router.voters()
        before = [v.master for v in voters]
        for v in voters:
            suspects |= v.tick()
        # One master replica for both voters (master-slave): a master outvoted in either
        # voter gives way in both.
        moved = [v.master for v, b in zip(voters, before) if v.master != b and v.master]
        if moved:
            for v in voters:
                v.set_master(moved[0])
        # Recover the worst suspects first, but never so many that fewer than a quorum of
        # replicas keep voting (with one fault, the other suspects are merely lagging).
        quorum = len(self.replicas) // 2 + 1
        for name in sorted(suspects, key=lambda n: -sum(v.disagreements(n) for v in self.router.voters())):
            if sum(r.state == "voting" for r in self.replicas.values()) <= quorum:
                break
            self.fault(name, f"outvoted past the disagreement window ({self._why(name, now)})")
        for r in self.replicas.values():
            if r.state in ("voting", "syncing") and r.daemon is not None and not r.daemon.is_running():
                self.fault(r.name, f"daemon exited ({', '.join(r.daemon.dead_processes())})")
            elif r.state == "syncing" and self._synced(r, now):
                self._readmit(r)

    def _why(self, name: str, now: float) -> str:
        """The longest-standing disagreement of a suspect, for the record."""
        worst = None
        for kind, v in zip(("fib", "updates"), self.router.voters()):
            for key, since in v.minority[name].items():
                if worst is None or since < worst[2]:
                    worst = (kind, key, since, v.candidate(key, name), v.output.get(key))
        if worst is None:
            return "?"
        kind, key, since, mine, voted = worst
        return f"{kind} {key}: {mine} against {voted} for {now - since:.1f}s"

    def _synced(self, r: Replica, now: float) -> bool:
        """Caught up with every stream and agreeing with both voted outputs (or, after a
        long wait, caught up at least: the voters will judge it once it votes)."""
        if not self._streams().synced(r.name):
            return False
        agree = all(v.in_sync(r.name) for v in self.router.voters())
        waited = r.started_at is not None and now - r.started_at > 2 * self.router.config.window
        return agree or waited

    def _readmit(self, r: Replica) -> None:
        self._admit(r)
        rec = next((x for x in reversed(self.recoveries) if x.replica == r.name and x.readmitted is None), None)
        if rec is not None:
            rec.readmitted = time.monotonic()
            log.warning("replica %s readmitted to voting %.2fs after the fault (%s -> %s)", r.name,
                        rec.duration, rec.impl_before, rec.impl_after)

    # ----- recovery -----
    def fault(self, name: str, reason: str) -> None:
        """A replica is faulty: stop counting its votes now, recover it in the background."""
        r = self.replicas.get(name)
        if r is None or r.state not in ("voting", "syncing"):
            return  # already being recovered (several symptoms of one fault)
        log.warning("replica %s (%s) faulty: %s", name, r.impl, reason)
        r.state = "recovering"
        for v in self.router.voters():
            # its votes stop counting now; what that changes is decided again a slice at a
            # time by the recovery (`forget`), not in one pass over a full table here
            v.set_voting(name, False, revote=False)
        self.recoveries.append(Recovery(name, reason, time.monotonic(), r.impl))
        r.history.append({"t": time.time(), "event": "fault", "reason": reason, "impl": r.impl})
        task = asyncio.get_running_loop().create_task(self._recover(r))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _recover(self, r: Replica) -> None:
        rec = self.recoveries[-1]
        try:
            self._streams().detach(r.name)
            if r.fib is not None:
                r.fib.stop()
            await self.router.forget(r.name)
            loop = asyncio.get_running_loop()
            if r.daemon is not None:
                await loop.run_in_executor(None, r.daemon.stop)
            await loop.run_in_executor(None, flush_routes, r.ns)
            r.impl = self.next_impl(r.impl)
            rec.impl_after = r.impl
            await self._start(r)
            rec.restarted = time.monotonic()
        except Exception as e:
            r.state = "failed"
            log.exception("replica %s: recovery failed: %s", r.name, e)
            attempts = sum(1 for x in self.recoveries if x.replica == r.name and x.restarted is None)
            if attempts <= self.MAX_ATTEMPTS:  # try again (a start can fail under load)
                await asyncio.sleep(self.RETRY_S)
                r.state = "syncing"  # so that fault() accepts it
                self.fault(r.name, f"retrying after a failed recovery: {e}")

    def next_impl(self, impl: str) -> str:
        """The implementation a replacement runs: the same, or the next one in the ring."""
        if self.router.config.replacement == "same":
            return impl
        ring = list(self.router.config.implementations)
        return ring[(ring.index(impl) + 1) % len(ring)] if impl in ring else impl

    async def stop(self) -> None:
        if self._monitor is not None:
            self._monitor.cancel()
        for t in list(self._tasks):
            t.cancel()
        loop = asyncio.get_running_loop()
        for r in self.replicas.values():
            if r.fib is not None:
                r.fib.stop()
        await asyncio.gather(*(loop.run_in_executor(None, r.daemon.stop)
                               for r in self.replicas.values() if r.daemon is not None))

    def status(self) -> dict:
        now = time.monotonic()
        return {name: {"impl": r.impl, "state": r.state, "generation": r.generation,
                       "uptime_s": None if r.started_at is None else now - r.started_at,
                       "pids": r.daemon.pids if r.daemon else {}}
                for name, r in self.replicas.items()}


def flush_routes(ns: Netns) -> None:
    """Remove what a dead daemon left in its namespace's FIB (all but connected routes)."""
    for proto in ("3", "4", "11", "12", "186", "188", "196"):  # boot static zebra bird bgp ospf frr-static
        ns.run(["ip", "-4", "route", "flush", "table", "main", "proto", proto], check=False)
