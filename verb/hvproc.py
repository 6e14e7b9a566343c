"""The hypervisor as its own process: `python -m verb.hvproc`, driven over stdin/stdout.

The first line on stdin is the router's description (spec, forwarding namespace, tag,
VerbConfig, run directory); then one JSON command per line, each answered by one JSON line
on stdout: {"cmd": "status"}, {"cmd": "set_mode", "mode": M},
{"cmd": "inject", "fault": NAME, "replica": R, "params": {...}} (answers a fault id),
{"cmd": "clear", "id": N}, {"cmd": "stop"}. End of input or SIGTERM stops the router
cleanly. `RemoteRouter` is the parent's side; it starts the process with `Netns.popen`, so
the registry holds it, and the process records what it creates in its own session (which
`routerlab clean` removes should the process be killed).

Running the hypervisor apart lets experiments measure its CPU and memory, with its
replicas, as one process tree.
"""
from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil

from routerlab import registry
from routerlab.daemons.spec import (BgpNeighbor, Interface, Network, Policy, PolicyRule,
                                    PrefixMatch, RouterSpec, StaticRoute)
from routerlab.netns import Netns

from .faults import make
from .router import BugTolerantRouter, VerbConfig

log = logging.getLogger(__name__)


def spec_to_dict(spec: RouterSpec) -> dict:
    return dataclasses.asdict(spec)


def spec_from_dict(d: dict) -> RouterSpec:
    d = dict(d)
    d["interfaces"] = [Interface(**i) for i in d.get("interfaces", [])]
    d["bgp_neighbors"] = [BgpNeighbor(**n) for n in d.get("bgp_neighbors", [])]
    d["networks"] = [Network(**{**n, "as_path": tuple(n.get("as_path", ()))}) for n in d.get("networks", [])]
    d["static_routes"] = [StaticRoute(**s) for s in d.get("static_routes", [])]
    d["policies"] = [Policy(p["name"], [PolicyRule(**{**r, "prefixes": [PrefixMatch(**m) for m in r["prefixes"]]})
                                        for r in p["rules"]], p["default"]) for p in d.get("policies", [])]
    for k in ("ospf_redistribute", "bgp_redistribute"):
        d[k] = tuple(d.get(k, ()))
    return RouterSpec(**d)


class _Stop(Exception):
    pass


FULL_GC_EVERY = 1000  # gen-1 collections between full ones (CPython's default: 10)


def tune_gc() -> Callable[[str, dict], None]:
    """Full (generation 2) garbage collections a hundred times rarer, each walking only what
    is new since the last. The hypervisor holds millions of long-lived objects (per-key
    votes, decoded attributes) and each full collection walked them all: at 100,000 prefixes
    36 of them took 6.6 s of the hypervisor's 30 s CPU (measured with gc.callbacks); at 1M,
    with the threshold raised, they still came every minute or so while the table grew, each
    longer (1.7, 3.5, 4.7, 5.3 s: loop stalls). So what survives a full collection is frozen
    (gc.freeze: never walked again): the next one walks the objects made since. Young objects
    are collected as before (the reference cycles asyncio makes die young); a frozen object
    that later dies inside a reference cycle is not freed (refcounting frees the rest).
    Returns the gc callback (a test removes it)."""
    gen0, gen1, _ = gc.get_threshold()
    gc.set_threshold(gen0, gen1, FULL_GC_EVERY)
    started: list[float] = []

    def after_full(phase: str, info: dict) -> None:
        if info.get("generation") != 2:
            return
        if phase == "start":
            started[:] = [time.monotonic()]
            return
        gc.freeze()  # the collection is over: its survivors are not walked again
        if started and time.monotonic() - started[0] > 0.5:
            log.warning("full garbage collection took %.1fs", time.monotonic() - started[0])
    gc.callbacks.append(after_full)
    return after_full


def _serve() -> int:
    tune_gc()
    desc = json.loads(sys.stdin.readline())
    cfg = VerbConfig(**{**desc.get("config", {}),
                        "implementations": tuple(desc.get("config", {}).get("implementations",
                                                                            VerbConfig().implementations))})
    router = BugTolerantRouter(spec_from_dict(desc["spec"]), Netns.adopt(desc["fwd"]), tag=desc["tag"],
                               config=cfg, run_dir=desc.get("run_dir"),
                               keep_run_dir=desc.get("keep_run_dir", False))
    router.profile_path = desc.get("profile")
    faults: dict[int, Any] = {}

    def reply(obj: dict) -> None:
        sys.stdout.write(json.dumps(obj, default=str) + "\n")
        sys.stdout.flush()

    main_pid = os.getpid()

    def on_term(*_: object) -> None:
        # pyroute2 makes namespace sockets in a forked child and ends it with SIGTERM: that
        # child inherits this handler and must just go, not unwind into a copy of our loop
        if os.getpid() != main_pid:
            os._exit(0)
        raise _Stop()
    signal.signal(signal.SIGTERM, on_term)
    try:
        router.start()
        reply({"ok": True, "pid": os.getpid()})
        for line in sys.stdin:
            try:
                req = json.loads(line)
                cmd = req.get("cmd")
                if cmd == "stop":
                    break
                if cmd == "status":
                    res: Any = router.status()
                elif cmd == "set_mode":
                    router.set_mode(req["mode"])
                    res = req["mode"]
                elif cmd == "inject":
                    f = make(req["fault"], router, req["replica"], **req.get("params", {})).inject()
                    res = len(faults) + 1
                    faults[res] = f
                elif cmd == "clear":
                    faults[req["id"]].clear()
                    res = req["id"]
                else:
                    raise ValueError(f"unknown command {cmd!r}")
                reply({"ok": True, "result": res})
            except Exception as e:  # a bad command is answered, never fatal
                log.exception("command failed")
                reply({"ok": False, "error": f"{type(e).__name__}: {e}"})
    except _Stop:
        pass
    finally:
        for f in faults.values():
            f.clear()
        router.stop()
    return 0


def main() -> int:
    logging.basicConfig(level=os.environ.get("VERB_LOG", "INFO"), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return _serve()


class RemoteRouter:
    """The parent's handle on a hypervisor process (same queries as BugTolerantRouter)."""

    def __init__(self, spec: RouterSpec, fwd: Netns, *, tag: str, config: dict | None = None,
                 run_dir: Path | str, log_path: Path | str, profile: Path | str | None = None):
        self.desc = {"spec": spec_to_dict(spec), "fwd": fwd.name, "tag": tag, "config": config or {},
                     "run_dir": str(run_dir), "profile": str(profile) if profile else None}
        self.fwd = fwd
        self.log_path = Path(log_path)
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180.0) -> RemoteRouter:
        with open(self.log_path, "ab") as err:  # the child keeps its own copy
            self.proc = self.fwd.popen([sys.executable, "-m", "verb.hvproc"],
                                       name=f"verb-hv:{self.desc['tag']}", stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, stderr=err, text=True, bufsize=1)
        self.proc.stdin.write(json.dumps(self.desc) + "\n")
        self.proc.stdin.flush()
        ans = self._read(timeout)
        if not ans.get("ok"):
            raise RuntimeError(f"hypervisor failed to start: {ans}")
        return self

    def _read(self, timeout: float) -> dict:
        assert self.proc is not None and self.proc.stdout is not None
        r, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if r else ""
        if not line:
            raise RuntimeError(f"hypervisor process gave no answer (exit {self.proc.poll()}); "
                               f"see {self.log_path}")
        return json.loads(line)

    def request(self, cmd: str, timeout: float = 60.0, **kw: Any) -> Any:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()
        ans = self._read(timeout)
        if not ans.get("ok"):
            raise RuntimeError(f"hypervisor: {cmd}: {ans.get('error')}")
        return ans.get("result")

    def status(self) -> dict:
        return self.request("status")

    def set_mode(self, mode: str) -> None:
        self.request("set_mode", timeout=600, mode=mode)  # a full table's keys, in slices

    def inject(self, fault: str, replica: str, **params: Any) -> int:
        return self.request("inject", fault=fault, replica=replica, params=params)

    def clear(self, fault_id: int) -> None:
        self.request("clear", id=fault_id)

    def processes(self) -> list[psutil.Process]:
        """The hypervisor process and everything it started (the replicas' daemons)."""
        if self.proc is None:
            return []
        try:
            p = psutil.Process(self.proc.pid)
            return [p] + p.children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 60.0) -> None:
        if self.proc is None:
            return
        try:
            if self.proc.poll() is None:
                try:
                    self.proc.stdin.write(json.dumps({"cmd": "stop"}) + "\n")
                    self.proc.stdin.close()
                except (BrokenPipeError, ValueError):
                    pass
                try:
                    self.proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.proc.terminate()
                    try:
                        self.proc.wait(15)
                    except subprocess.TimeoutExpired:
                        self.proc.kill()
                        self.proc.wait(5)
        finally:
            _clean_child_session(self.proc.pid)
            registry.session().release_process(self.proc.pid)
            self.proc = None


def _clean_child_session(pid: int) -> None:
    """Remove whatever a dead hypervisor process left recorded in its own session."""
    for path in registry.session_files():
        if path.stem.split("-")[2:3] == [str(pid)] and not registry.session_alive(path):
            registry.clean_session_file(path)


if __name__ == "__main__":
    sys.exit(main())
