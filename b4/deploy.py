"""A whole B4 deployment: the WAN in Mininet, ZooKeeper, controller and TE-server replicas.

What experiments, tests and the lab drive::

    with B4Deployment(load_wan("b4-example"), run_dir, prefix="tb4x", ofc_replicas=2,
                      te_replicas=2) as b4:
        b4.wait_converged()
        b4.te(False)              # TE off: traffic falls back to shortest paths
        b4.kill(b4.ofc_master())  # a standby takes over

Every process (ZooKeeper, each `b4.ofc` and `b4.server` replica) is recorded in the
registry when started and killed by its own pid. With more than one replica of either role
a private ZooKeeper elects the leaders; with one of each there is none.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from routerlab import registry
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.traffic.process import agent_env

from b4.model import Wan
from b4.rpc import RpcError, call, free_port
from b4.wan import WanNetwork

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parent.parent
Progress = Callable[[str], None]


@dataclass
class Replica:
    """One controller ('ofc') or TE server ('te') process."""

    name: str
    kind: str
    config: Path
    rpc_port: int
    ofp_port: int | None = None
    proc: subprocess.Popen | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.3):
            return True
    except OSError:
        return False


class B4Deployment:
    """The WAN plus its control plane, started and stopped as one."""

    def __init__(self, wan: Wan, run_dir: str | os.PathLike, *, prefix: str = "b4-", ofc_replicas: int = 1,
                 te_replicas: int = 1, te_period: float = 10.0, op_timeout: float = 1.0,
                 zk_session_timeout: float = 1.5, progress: Progress | None = None):
        self.wan = wan
        self.run_dir = Path(run_dir)
        self.prefix = prefix
        self.net = WanNetwork(wan, prefix)
        self.te_period = te_period
        self.op_timeout = op_timeout
        self.zk_session_timeout = zk_session_timeout
        self.zk = None
        self.ofcs = [Replica(f"ofc{i + 1}", "ofc", self.run_dir / f"ofc{i + 1}.json", free_port(), free_port())
                     for i in range(ofc_replicas)]
        self.tes = [Replica(f"te{i + 1}", "te", self.run_dir / f"te{i + 1}.json", free_port())
                    for i in range(te_replicas)]
        self.use_zk = ofc_replicas > 1 or te_replicas > 1
        self.say = progress or (lambda m: log.info("%s", m))
        self.started = False

    # ------------------------------------------------------------------ lifecycle
    def start(self, converge_timeout: float = 60.0) -> B4Deployment:
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.say(f"building {self.wan.name}: {len(self.wan.config.sites)} sites")
            self.net.start()
            if self.use_zk:
                from b4.zk import ZooKeeper

                self.say("starting ZooKeeper")
                self.zk = ZooKeeper(self.run_dir / "zk", free_port()).start()
            self.say(f"starting {len(self.ofcs)} controller replica(s)")
            for r in self.ofcs:
                self._write_config(r)
                self._spawn(r)
            for r in self.ofcs:
                wait_for(lambda r=r: _listening(r.rpc_port) or not r.alive, 30, interval=0.05,
                         what=f"{r.name} to listen")
                if not r.alive:
                    raise RuntimeError(f"{r.name} died: {self.log_tail(r)}")
            self.net.set_controllers([r.ofp_port for r in self.ofcs])
            self.say(f"starting {len(self.tes)} TE server replica(s)")
            for r in self.tes:
                self._write_config(r)
                self._spawn(r)
            self.started = True
            self.say("waiting for TE to converge")
            if not self.wait_converged(converge_timeout):
                raise TimeoutError(f"B4 did not converge within {converge_timeout:.0f} s: {self.status()}")
        except BaseException:
            self.stop()
            raise
        return self

    def _write_config(self, r: Replica) -> None:
        zk = {"hosts": self.zk.hosts, "path": f"/b4/{r.kind}", "session_timeout": self.zk_session_timeout} \
            if self.zk else None
        if r.kind == "ofc":
            cfg: dict[str, Any] = {"id": r.name, "wan": self.wan.config.to_json(), "ofp_port": r.ofp_port,
                                   "rpc_port": r.rpc_port, "zk": zk, "log_file": str(self.run_dir / f"{r.name}.log")}
        else:
            cfg = {"id": r.name, "topology": str(self.wan.topo.path or self.wan.topo.source),
                   "db": str(self.run_dir / "ted-db.json"), "rpc_port": r.rpc_port,
                   "ofcs": [o.rpc_port for o in self.ofcs], "zk": zk, "te_period": self.te_period,
                   "op_timeout": self.op_timeout, "log_file": str(self.run_dir / f"{r.name}.log")}
        r.config.write_text(json.dumps(cfg, indent=1))

    def _spawn(self, r: Replica) -> None:
        env = agent_env()
        module = "b4.ofc" if r.kind == "ofc" else "b4.server"
        out = open(self.run_dir / f"{r.name}.out", "ab")
        try:
            r.proc = subprocess.Popen([sys.executable, "-m", module, "--config", str(r.config)], cwd=str(REPO),
                                      env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                      start_new_session=True)
        finally:
            out.close()
        registry.session().add_process(r.proc.pid, f"b4-{r.name}")
        log.info("started %s (pid %d, rpc %d)", r.name, r.proc.pid, r.rpc_port)

    def kill(self, r: Replica, sig: int = signal.SIGKILL) -> float:
        """Kill a replica by its pid; returns when (time.time()) it was killed."""
        assert r.proc is not None
        t = time.time()
        try:
            os.kill(r.proc.pid, sig)
        except ProcessLookupError:
            pass
        r.proc.wait(10)
        registry.session().release_process(r.proc.pid)
        log.info("killed %s (pid %d)", r.name, r.proc.pid)
        return t

    def restart(self, r: Replica, wait: bool = True, timeout: float = 30.0) -> None:
        """Start a (killed) replica again; with ``wait``, return once it is up as a standby
        (a controller connected to every switch, a TE server answering)."""
        if r.alive:
            self.kill(r, signal.SIGTERM)
        self._spawn(r)
        if not wait:
            return
        switches = set(self.wan.config.switches)

        def up() -> bool:
            if not r.alive:
                raise RuntimeError(f"{r.name} died: {self.log_tail(r)}")
            try:
                if r.kind == "ofc":
                    h = call(r.rpc_port, {"type": "hello", "session": 0}, timeout=2)
                    return {sw for s in h["sites"].values() for sw in s["connected"]} == switches
                return call(r.rpc_port, {"type": "status"}, timeout=2).get("role") in ("standby", "leader")
            except (OSError, RpcError):
                return False
        # wait_for retries on the errors it swallows (OSError, ValueError, DaemonError,
        # CommandError) but lets the plain RuntimeError above through: a dead replica fails
        # the restart at once instead of after `timeout`
        wait_for(up, timeout, interval=0.1, what=f"{r.name} to come back")

    def stop(self) -> None:
        for r in self.tes + self.ofcs:
            if r.proc is not None and r.alive:
                try:
                    self.kill(r, signal.SIGTERM)
                except Exception as e:
                    log.warning("stopping %s: %s", r.name, e)
                    self.kill(r)
        if self.zk is not None:
            self.zk.stop()
            self.zk = None
        self.net.stop()
        self.started = False

    def __enter__(self) -> B4Deployment:
        return self.start() if not self.started else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log_tail(self, r: Replica, n: int = 5) -> str:
        for p in (self.run_dir / f"{r.name}.log", self.run_dir / f"{r.name}.out"):
            try:
                lines = p.read_text().splitlines()
                if lines:
                    return " | ".join(lines[-n:])
            except OSError:
                pass
        return "no log"

    # ------------------------------------------------------------------ control
    def te_call(self, msg: dict[str, Any], timeout: float = 10.0, replica: Replica | None = None) -> dict[str, Any]:
        r = replica or self.te_leader(timeout)
        reply = call(r.rpc_port, msg, timeout=timeout)
        if reply.get("type") == "error":
            raise RpcError(f"{r.name}: {reply.get('reason')}")
        return reply

    def te_leader(self, timeout: float = 10.0) -> Replica:
        def find() -> Replica | None:
            for r in self.tes:
                if not r.alive:
                    continue
                try:
                    if call(r.rpc_port, {"type": "status"}, timeout=2).get("role") == "leader":
                        return r
                except (OSError, RpcError):
                    continue
            return None
        return wait_for(find, timeout, interval=0.1, what="a TE server leader")

    def ofc_master(self, timeout: float = 10.0) -> Replica:
        def find() -> Replica | None:
            for r in self.ofcs:
                if not r.alive:
                    continue
                try:
                    if call(r.rpc_port, {"type": "hello", "session": 0}, timeout=2).get("role") == "master":
                        return r
                except (OSError, RpcError):
                    continue
            return None
        return wait_for(find, timeout, interval=0.1, what="a master controller")

    def wait_converged(self, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout

        def converged() -> bool:  # the leader waits (up to the time left) and says
            r = self.te_leader(max(0.5, deadline - time.monotonic()))
            left = max(0.5, deadline - time.monotonic())
            reply = call(r.rpc_port, {"type": "wait_converged", "timeout": left}, timeout=left + 5)
            return bool(reply.get("converged"))
        try:
            return wait_for(converged, timeout, interval=0.1, what="TE convergence",
                            retry_on=(OSError, RpcError, TimeoutError))
        except ExpectTimeout:
            return False

    def te(self, enable: bool) -> dict[str, Any]:
        return self.te_call({"type": "te", "enable": enable})

    def status(self) -> dict[str, Any]:
        try:
            return self.te_call({"type": "status"}, timeout=3)
        except (OSError, RpcError, TimeoutError) as e:
            return {"error": str(e)}

    def show(self) -> dict[str, Any]:
        return self.te_call({"type": "show"})

    def ops(self, limit: int = 30) -> dict[str, Any]:
        return self.te_call({"type": "ops", "limit": limit})

    def op_stats(self) -> dict[str, Any]:
        return self.te_call({"type": "op_stats"})
