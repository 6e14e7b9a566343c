"""The bug-tolerant router: diverse replicas behind one hypervisor (VERB).

    router = BugTolerantRouter(spec, fwd_ns, tag="vb12", config=VerbConfig(mode="continuous-majority"))
    router.start()          # replicas up, listening for the neighbours
    router.status(); router.fib(); router.advertised("10.0.2.2")
    router.stop()

The caller owns the forwarding namespace `fwd` (the router's real interfaces, wired to the
neighbours, and its real FIB). The router adds, per replica, a replica namespace and its
hypervisor-side twin (`TAG-rN`, `TAG-hN`), and runs the hypervisor (interposer, voters,
replica manager, FIB installer) on an asyncio loop in a thread of the calling process.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from routerlab import registry
from routerlab.daemons.spec import RouterSpec
from routerlab.netns import Netns

from .core import Mode, Voter, VoterConfig
from .fib import FibInstaller, Report
from .interposer import Interposer
from .replica import IMPLEMENTATIONS, Replica, ReplicaManager, make_replica_namespaces
from .timeslice import in_slices

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class VerbConfig:
    """How a bug-tolerant router runs (one voting mode for both voters)."""

    mode: Mode | str = Mode.CONTINUOUS_MAJORITY
    implementations: tuple[str, ...] = IMPLEMENTATIONS
    window: float = 10.0  # disagreement tolerated during convergence (s)
    consensus_timeout: float = 1.0  # wait-for-consensus: majority goes out after this (s)
    replica_hold: int = 3  # hold time of the replicas' sessions: a hang is noticed in 3 s
    replacement: str = "same"  # a recovered replica runs "same" implementation, or "rotate"
    extra: dict[str, Any] = field(default_factory=dict)

    def voter(self, names: tuple[str, ...]) -> VoterConfig:
        return VoterConfig(Mode(self.mode), names, self.window, self.consensus_timeout)


class BugTolerantRouter:
    """A router its neighbours see as one ordinary BGP router, made of N diverse replicas."""

    def __init__(self, spec: RouterSpec, fwd: Netns, *, tag: str, config: VerbConfig | None = None,
                 run_dir: Path | str | None = None, keep_run_dir: bool = False):
        self.spec = spec.validate()
        self.fwd = fwd
        self.tag = tag
        self.config = config or VerbConfig()
        self.run_dir = Path(run_dir or registry.STATE_DIR / f"verb-{tag}")
        self.keep_run_dir = keep_run_dir  # the replicas' configs and logs, for a post-mortem
        self.names = tuple(f"r{i}" for i in range(len(self.config.implementations)))
        self.loop = asyncio.new_event_loop()
        self.loop.set_exception_handler(self._loop_error)
        self._thread: threading.Thread | None = None
        self.namespaces: list[Netns] = []
        self.fib_voter: Voter | None = None
        self.interposer: Interposer | None = None
        self.installer: FibInstaller | None = None
        self.manager: ReplicaManager | None = None
        self.lag_max = 0.0  # the longest the loop ran late (s)
        self.profile_path: str | None = None  # cProfile the hypervisor's loop into this file

    # ----- lifecycle -----
    def start(self, timeout: float = 120.0) -> BugTolerantRouter:
        """Create the replicas' namespaces, start the hypervisor and the replicas."""
        registry.session().add("dir", str(self.run_dir))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        replicas = []
        for i, impl in enumerate(self.config.implementations):
            rep, hv = make_replica_namespaces(self.tag, i, self.spec)
            self.namespaces += [rep, hv]
            replicas.append(Replica(self.names[i], i, impl, rep, hv))
        self._thread = threading.Thread(target=self._run_loop, name=f"verb-{self.tag}", daemon=True)
        self._thread.start()
        self.call(self._astart(replicas), timeout)
        return self

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        if not self.profile_path:
            self.loop.run_forever()
            return
        import cProfile  # the hypervisor's work all runs on this loop's thread
        prof = cProfile.Profile()
        try:
            prof.runcall(self.loop.run_forever)
        finally:
            prof.dump_stats(self.profile_path)

    async def _astart(self, replicas: list[Replica]) -> None:
        vc = self.config.voter(self.names)
        self.installer = FibInstaller(self.fwd.name)
        self.installer.start()
        self.fib_voter = Voter(vc, self.installer.apply)
        self.manager = ReplicaManager(self, replicas)  # `self` as the manager's ReplicaHost
        self.interposer = Interposer(self.spec, self.fwd.name, vc, self.manager.fault,
                                     self.config.replica_hold)
        self.loop.create_task(self._watch_lag())
        await self.manager.start_all()
        await self.interposer.start()

    def stop(self) -> None:
        """Stop the hypervisor and the replicas; remove the replicas' namespaces."""
        try:
            if self._thread is not None and self._thread.is_alive():
                try:
                    self.call(self._astop(), 60)
                finally:
                    self.loop.call_soon_threadsafe(self.loop.stop)
                    self._thread.join(10)
        finally:
            for ns in reversed(self.namespaces):
                ns.delete()
            self.namespaces = []
            if self.fwd.exists():
                self.fwd.run(["ip", "-4", "route", "flush", "table", "main", "proto", "186"], check=False)
            if not self.keep_run_dir:
                shutil.rmtree(self.run_dir, ignore_errors=True)
                registry.session().release("dir", str(self.run_dir))

    async def _astop(self) -> None:
        if self.interposer is not None:
            await self.interposer.stop()
        if self.manager is not None:
            await self.manager.stop()
        if self.installer is not None:
            self.installer.stop()
        for t in asyncio.all_tasks():
            if t is not asyncio.current_task():
                t.cancel()

    def __enter__(self) -> BugTolerantRouter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop_error(self, loop: asyncio.AbstractEventLoop, ctx: dict) -> None:
        log.error("hypervisor loop: %s", ctx.get("message"), exc_info=ctx.get("exception"))

    # ----- talking to the hypervisor thread -----
    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = 30.0) -> T:
        """Run a coroutine on the hypervisor's loop and wait for its result."""
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(timeout)

    def run(self, fn: Callable[[], T], timeout: float | None = 30.0) -> T:
        """Run a plain function on the hypervisor's loop (to read its state consistently)."""
        async def wrap() -> T:
            return fn()
        return self.call(wrap(), timeout)

    # ----- used by the parts -----
    def voters(self) -> list[Voter]:
        return [v for v in (self.fib_voter, self.interposer.update_voter if self.interposer else None) if v]

    async def forget(self, replica: str) -> None:
        """`Voter.forget` in time slices (the loop and the sessions' KEEPALIVEs run in
        between): exclude the replica, drop its values (removals only), decide again the
        disputed keys. At 1M prefixes one pass over a replica's ~3M keys stalled the loop
        for 13-45 s and the neighbours' hold timers expired."""
        for v in self.voters():
            v.set_voting(replica, False, revote=False)
            await in_slices(v.held_by(replica), lambda ks, v=v: v.drop(replica, ks), chunk=10_000)
            await self._revote(v)

    @staticmethod
    async def _revote(v: Voter) -> None:
        """Decide again, in time slices, the keys a voting replica disputes."""
        await in_slices(v.disputed(), v.revote)

    async def _watch_lag(self, period: float = 0.05) -> None:
        """How late the loop runs: a stall delays KEEPALIVEs and every vote."""
        while True:
            t = self.loop.time()
            await asyncio.sleep(period)
            lag = self.loop.time() - t - period
            self.lag_max = max(self.lag_max, lag)
            if lag > 1.0:
                log.warning("hypervisor loop stalled for %.2fs", lag)

    def fib_reporter(self, replica: str) -> Report:
        def report(changes: list) -> None:
            if self.fib_voter is not None:
                self.fib_voter.update(replica, changes)
        return report

    def set_mode(self, mode: Mode | str, timeout: float = 600.0) -> None:
        """Switch both voters to another mode at run time; the keys where that can matter
        are decided again in time slices (after a 1M load, in one pass, the loop stalled for
        16 s and every neighbour's hold timer expired)."""
        self.config.mode = Mode(mode)

        async def switch() -> None:
            for v in self.voters():
                v.set_mode(mode, revote=False)
            for v in self.voters():
                await self._revote(v)
        self.call(switch(), timeout)

    # ----- views (thread-safe) -----
    def replica(self, name: str) -> Replica:
        assert self.manager is not None
        return self.manager.replicas[name]

    def replica_by_impl(self, impl: str) -> Replica:
        assert self.manager is not None
        return next(r for r in self.manager.replicas.values() if r.impl == impl)

    def fib(self) -> dict:
        """The voted FIB as installed in the forwarding namespace: prefix -> value."""
        return self.run(lambda: dict(self.installer.installed))

    def voted_fib(self) -> dict:
        return self.run(lambda: dict(self.fib_voter.output))

    def advertised(self, peer: str) -> dict:
        """The voted Adj-RIB-Out towards a neighbour: prefix -> RouteAttrs."""
        return self.run(lambda: dict(self.interposer.neighbors[peer].advertised))

    def status(self) -> dict:
        def collect() -> dict:
            uv = self.interposer.update_voter
            return {"mode": str(Mode(self.config.mode).value),
                    "replicas": self.manager.status(),
                    "master": {"fib": self.fib_voter.master, "updates": uv.master},
                    "voting": sorted(self.fib_voter.voting),
                    "fib_routes": len(self.installer.installed), "fib_errors": self.installer.errors,
                    "disagreements": {r: {"fib": self.fib_voter.disagreements(r),
                                          "updates": uv.disagreements(r)} for r in self.names},
                    "recoveries": [x.to_json() for x in self.manager.recoveries],
                    "loop_lag_max_ms": round(self.lag_max * 1000, 1),
                    **self.interposer.status()}
        return self.run(collect)
