"""The daemon driver lifecycle and the normalized status records every driver returns.

A driver wraps one routing-daemon implementation for one router::

    d = driver_for("bird")(spec)
    d.render()                 # {filename: text}, pure
    d.validate()               # the daemon's own checker; DaemonError on a bad config
    d.start(ns, run_dir)       # write, validate, launch in the namespace, wait until ready
    d.bgp_sessions(); d.ospf_neighbors(); d.routes()
    d.stop()

Daemons are started in the foreground through `Netns.popen`, so the registry holds their real
pids and `routerlab clean` can kill them after a crashed run.
"""
from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import math
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from routerlab import registry
from routerlab.errors import UserError
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.machine import LOCAL, Machine, machine_of
from routerlab.netns import CommandError, Netns

from .spec import RouterSpec, SpecError

log = logging.getLogger(__name__)


# Unix socket paths are limited to 108 bytes (sun_path), including the final NUL.
SUN_PATH_MAX = 107


class DaemonError(UserError, RuntimeError):
    """A daemon failed to validate, start or answer; the message is one line that carries the
    daemon's own error output (shown to the user as it is)."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


def one_line(text: str, limit: int = 600) -> str:
    """Collapse multi-line daemon output into one line (newlines become ' | ')."""
    parts = [p.strip() for p in str(text).splitlines() if p.strip()]
    s = " | ".join(parts)
    return s if len(s) <= limit else s[: limit - 3] + "..."


# ----------------------------------------------------------------------------------------
# Normalized status records
# ----------------------------------------------------------------------------------------

OSPF_STATES = ("Down", "Attempt", "Init", "2-Way", "ExStart", "Exchange", "Loading", "Full")
BGP_STATES = ("Idle", "Connect", "Active", "OpenSent", "OpenConfirm", "Established")

_OSPF_CANON = {s.lower().replace("-", "").replace("_", ""): s for s in OSPF_STATES}
_OSPF_CANON.update({"twoway": "2-Way", "2way": "2-Way", "deleted": "Down"})
_BGP_CANON = {s.lower(): s for s in BGP_STATES}
_BGP_CANON.update({"close": "Idle", "clearing": "Idle", "deleted": "Idle", "down": "Idle",
                   "unknown": "Idle"})


def normalize_ospf_state(raw: str) -> tuple[str, str | None]:
    """'Full/DR' -> ('Full', 'DR'); '2-Way/DROther' -> ('2-Way', 'DROther'); 'ptp' kept as role."""
    state, _, role_text = raw.strip().partition("/")
    key = state.strip().lower().replace("-", "").replace("_", "").replace(" ", "")
    canon = _OSPF_CANON.get(key)
    if canon is None:
        log.debug("unknown OSPF state %r", raw)
        canon = state.strip()
    role = role_text.strip()
    return canon, (role if role not in ("-", "") else None)


def normalize_bgp_state(raw: str) -> str:
    """'established' / 'Established' / 'BGP_FSM_ESTABLISHED' / 'Idle (Admin)' -> canonical."""
    s = raw.strip().lower()
    s = s.replace("bgp_fsm_", "").split("(")[0].strip().split()[0] if s else "idle"
    return _BGP_CANON.get(s, raw.strip())


@dataclass(frozen=True)
class OspfNeighbor:
    """One OSPF adjacency as seen by this router."""

    router_id: str
    address: str | None
    interface: str | None
    state: str  # one of OSPF_STATES
    role: str | None = None  # DR / BDR / DROther / PtP, as the daemon says it
    uptime: float | None = None  # seconds in the current state where the daemon tells

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BgpSession:
    """One BGP session as seen by this router.

    `established_count` is how many times the session came up since the daemon started
    (None when the implementation gives no honest source). `uptime` is the seconds since it
    was last established (None when not established)."""

    peer: str
    peer_asn: int | None
    state: str  # one of BGP_STATES
    uptime: float | None = None
    established_count: int | None = None
    prefixes_received: int | None = None
    description: str = ""
    local_address: str | None = None
    last_error: str | None = None

    @property
    def established(self) -> bool:
        return self.state == "Established"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class NextHop:
    address: str | None  # None for directly connected / blackhole
    interface: str | None
    blackhole: bool = False


@dataclass(frozen=True)
class Route:
    """One RIB entry. `protocol` is normalized: connected, static, ospf, bgp, kernel, other."""

    prefix: str
    protocol: str
    nexthops: tuple[NextHop, ...] = ()
    selected: bool = True
    metric: int | None = None
    distance: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------------------
# The driver base class
# ----------------------------------------------------------------------------------------

def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def children_by_comm(root: int, names: list[str] | tuple[str, ...] = ()) -> dict[str, int]:
    """{command name: pid} of the direct children of process `root` (those named in `names`
    only, when given), from /proc (a child still between fork and exec carries its parent's
    name). The first child of each name wins."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{root}/task/{root}/children") as f:
            kids = [int(x) for x in f.read().split()]
    except (FileNotFoundError, ProcessLookupError):
        kids = []
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == root:
                            kids.append(int(d))
                except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
                    continue
    for pid in sorted(kids):
        try:
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if (not names or comm in names) and comm not in out:
            out[comm] = pid
    return out


class RestoredProcess:
    """A daemon process this process did not start (restored by CRIU, or a child of the
    daemon's own parent process in a process tree), known by its pid, with the part of the
    `subprocess.Popen` interface the drivers use. When it is our child (CRIU restored it
    while we were its child subreaper) its exit status is collected; otherwise /proc tells
    whether it lives."""

    def __init__(self, pid: int):
        self.pid = pid
        self.returncode: int | None = None
        self.args = [f"restored:{pid}"]

    def __repr__(self) -> str:
        return f"<RestoredProcess {self.pid}>"

    def poll(self) -> int | None:
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # not our child (or already reaped): alive?
                if not pid_alive(self.pid):
                    self.returncode = -1
                return self.returncode
            if pid == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        try:
            wait_for(lambda: self.poll() is not None, math.inf if timeout is None else timeout,
                     interval=0.01, what=f"pid {self.pid} to exit", retry_on=())
        except ExpectTimeout:
            raise subprocess.TimeoutExpired(self.args, timeout or 0) from None
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


@dataclass
class DaemonProcess:
    name: str  # the daemon program's short name (zebra, bgpd, bird, ...)
    popen: subprocess.Popen | RestoredProcess
    reg_name: str  # its registry key
    #: the parent of a process tree (`Daemon._popen_tree`): not a program of the daemon, it
    #: only starts and waits for them; one CRIU dump of it takes the whole tree
    root: bool = False


class Daemon(abc.ABC):
    """One routing-daemon implementation running one router's spec in one namespace.

    Subclasses set `implementation`, `description` and `features`, and implement `render`,
    `_check_config`, `_launch`, `_ready`, the status queries, `cli` and `version`."""

    implementation: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: what the implementation does: "bgp", "ospf", "fib", "static", "policy", "redistribute"
    features: ClassVar[frozenset[str]] = frozenset()
    #: default seconds `start` waits for the control channel
    start_timeout: ClassVar[float] = 20.0
    #: (version, why and what to do): older versions work, but `routerlab doctor` warns
    recommended: ClassVar[tuple[str, str] | None] = None

    def __init__(self, spec: RouterSpec):
        try:
            self.spec = spec.validate()
        except SpecError as e:
            raise DaemonError(f"{self.implementation}: {e}") from None
        self.ns: Netns | None = None
        self.run_dir: Path | None = None
        self._procs: list[DaemonProcess] = []
        self._started_at: float | None = None
        self._config_dir: Path | None = None
        #: where the run directory's files are (and config checks run): the namespace's
        #: machine once started, this one before
        self.machine: Machine = LOCAL

    def __repr__(self) -> str:
        where = f" in {self.ns.name}" if self.ns else ""
        return f"<{type(self).__name__} {self.spec.name}{where}>"

    # ----- configuration -----
    @abc.abstractmethod
    def render(self) -> dict[str, str]:
        """The configuration files for this router: {file name: text}. Pure; no I/O."""

    def check_supported(self) -> None:
        """Raise DaemonError if the spec asks for something this implementation cannot do."""
        s = self.spec
        need = set()
        if s.ospf_enabled:
            need.add("ospf")
        if s.bgp_enabled:
            need.add("bgp")
        if s.static_routes:
            need.add("static")
        if s.bgp_redistribute or s.ospf_redistribute:
            need.add("redistribute")
        if s.policies:
            need.add("policy")
        missing = need - self.features
        if missing:
            raise DaemonError(f"{self.implementation} {s.name}: the spec needs "
                              f"{', '.join(sorted(missing))}, which {self.implementation} "
                              "does not provide")

    @property
    def config_dir(self) -> Path:
        """Where the configuration lives (paths inside configs refer to it)."""
        return self._config_dir or self.run_dir or registry.STATE_DIR / self.spec.name

    def write_config(self, directory: Path) -> dict[str, Path]:
        """Render and write the configuration files into `directory`; returns their paths."""
        self.machine.mkdir(directory)
        self._config_dir = directory
        paths = {}
        for fname, text in self.render().items():
            p = directory / fname
            self.machine.write_text(p, text)
            paths[fname] = p
        return paths

    def validate(self, directory: Path | None = None) -> None:
        """Check the rendered configuration with the daemon's own checker.

        Raises DaemonError whose message carries the checker's output. Uses a temporary
        directory when none is given."""
        if directory is not None:
            self.write_config(directory)
            self._check_config(directory)
            return
        saved, saved_machine = self._config_dir, self.machine
        self.machine = LOCAL  # a temporary directory here
        try:
            with tempfile.TemporaryDirectory(prefix="routerlab-validate-") as tmp:
                d = Path(tmp)
                self._prepare_dir(d)
                self.write_config(d)
                self._check_config(d)
        finally:
            self._config_dir, self.machine = saved, saved_machine

    @abc.abstractmethod
    def _check_config(self, directory: Path) -> None:
        """Run the implementation's config checker on files already written in `directory`."""

    def _prepare_dir(self, directory: Path) -> None:  # noqa: B027 - an optional hook
        """Create what the config refers to (sub-directories, FIFOs) before checking it."""

    # ----- lifecycle -----
    def start(self, ns: Netns, run_dir: Path | str, *, configure_addresses: bool = True,
              timeout: float | None = None) -> None:
        """Write and validate the config, launch the daemon(s) in `ns`, wait until ready.

        With `configure_addresses` the spec's interface and loopback addresses are put on
        the namespace's interfaces first (idempotent; the interfaces must already exist).
        Raises DaemonError (with the daemon's own words) if anything fails; whatever was
        started is stopped again."""
        if self._procs:
            raise DaemonError(f"{self.implementation} {self.spec.name}: already started")
        self.check_supported()
        self.ns = ns
        self.machine = machine_of(ns)
        self.run_dir = Path(run_dir)
        self.machine.mkdir(self.run_dir)
        self._check_socket_paths()
        if configure_addresses:
            self.configure_addresses(ns)
        self._prepare_dir(self.run_dir)
        self.write_config(self.run_dir)
        self._check_config(self.run_dir)
        for p in self.log_files():
            self.machine.write_text(p, "")  # a fresh daemon: its logs (and log-derived counters) start empty
        t0 = time.monotonic()
        try:
            self._launch()
            self.wait_ready(timeout if timeout is not None else self.start_timeout)
            self._post_start()
        except BaseException:
            self.stop()
            raise
        self._started_at = time.time()
        log.info("%s %s ready in %s after %.2fs", self.implementation, self.spec.name, ns.name,
                 time.monotonic() - t0)

    def _post_start(self) -> None:  # noqa: B027 - an optional hook
        """Configuration pushed through the daemon's API after it is up (GoBGP routes)."""

    @abc.abstractmethod
    def _launch(self) -> None:
        """Start the daemon process(es) with `self._popen`."""

    @abc.abstractmethod
    def _ready(self) -> bool:
        """Whether the daemon answers on its control channel."""

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Wait until the daemon answers its control channel; DaemonError if it died or timed out."""

        def ready() -> bool:
            dead = self.dead_processes()
            if dead:
                raise DaemonError(f"{self.implementation} {self.spec.name}: {', '.join(dead)} exited "
                                  f"during start: {self._failure_output()}")
            fatal = self._fatal_log_line()
            if fatal:
                raise DaemonError(f"{self.implementation} {self.spec.name}: failed to start: {fatal}")
            try:
                return bool(self._ready())
            except (DaemonError, CommandError, OSError, subprocess.TimeoutExpired) as e:
                log.debug("%s not ready yet: %s", self, e)
                return False

        try:
            wait_for(ready, timeout, interval=0.1, what=f"{self.implementation} {self.spec.name} ready",
                     retry_on=())
        except ExpectTimeout:
            raise DaemonError(f"{self.implementation} {self.spec.name}: not ready after {timeout:.0f}s: "
                              f"{self._failure_output()}") from None

    #: log lines that mean the daemon cannot work although its process lives on
    fatal_log_patterns: ClassVar[tuple[str, ...]] = ()

    def _fatal_log_line(self) -> str | None:
        if not self.fatal_log_patterns:
            return None
        rx = re.compile("|".join(self.fatal_log_patterns))
        for p in self.log_files():
            try:
                for ln in self.machine.read_text(p, errors="replace").splitlines():
                    if rx.search(ln):
                        return f"{p.name}: {ln.strip()}"
            except FileNotFoundError:
                pass
        return None

    def _popen(self, name: str, args: list[str], *, log_path: Path | None = None,
               env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start one daemon process in the foreground inside the namespace and register it."""
        assert self.ns is not None and self.run_dir is not None
        log_path = log_path or self.run_dir / f"{name}.out"
        kwargs: dict[str, Any] = {}
        if env is not None:
            kwargs["env"] = {**os.environ, **env}
        reg_name = self._reg_name(name)
        log.debug("starting %s: %s", reg_name, " ".join(args))
        p = self.ns.popen(args, name=reg_name, log_path=log_path, **kwargs)
        self._procs.append(DaemonProcess(name, p, reg_name))
        return p

    def _popen_tree(self, name: str, args: list[str], *, log_path: Path | None = None) -> subprocess.Popen:
        """Start the parent of a process tree (a small shell that starts the daemon's
        programs as its children and waits for them) and register it; the children are
        registered by `_adopt_children` once they run."""
        p = self._popen(name, args, log_path=log_path)
        self._procs[-1].root = True
        return p

    def _adopt_children(self, names: list[str], timeout: float) -> list[str]:
        """Register the programs `names` the tree's parent started, found among its children
        by their command names (waiting up to `timeout` for them to exec). Returns those not
        found (the parent died, or a program never started)."""
        root = self.tree_root
        assert root is not None
        found: dict[str, int] = {}

        def all_there() -> bool:
            found.update(children_by_comm(root.popen.pid, names))
            return len(found) == len(names) or root.popen.poll() is not None

        with contextlib.suppress(ExpectTimeout):
            wait_for(all_there, timeout, interval=0.02, retry_on=(), what="the tree's programs")
        self._add_children(found, names)
        missing = [n for n in names if n not in found]
        for name in missing:  # listed as exited, so start-up fails with the daemon's own words
            gone = RestoredProcess(0)
            gone.returncode = -1
            self._procs.append(DaemonProcess(name, gone, self._reg_name(name)))
        return missing

    def _add_children(self, pids: dict[str, int], names: list[str]) -> None:
        for name in names:
            if name in pids:
                reg_name = self._reg_name(name)
                registry.session().add_process(pids[name], reg_name)
                self._procs.append(DaemonProcess(name, RestoredProcess(pids[name]), reg_name))

    @property
    def tree_root(self) -> DaemonProcess | None:
        """The parent process when the daemon runs as one process tree, else None."""
        return next((p for p in self._procs if p.root), None)

    def dump_roots(self) -> dict[str, int]:
        """{name: pid} of what one CRIU dump each must take (a dump covers the descendants):
        the tree's parent alone, or every running process of a daemon without one."""
        root = self.tree_root
        if root is not None:
            return {root.name: root.popen.pid} if root.popen.poll() is None else {}
        return self.pids

    def _reg_name(self, name: str) -> str:
        """Program `name`'s key in the registry (says what it is in `routerlab clean`'s list)."""
        assert self.ns is not None
        return f"{self.implementation}:{self.ns.name}:{self.spec.name}:{name}"

    def adopt(self, ns: Netns, pids: dict[str, int]) -> None:
        """Take over this daemon's processes as restored (by CRIU) into namespace `ns`:
        {program name: pid}, one for every program the driver runs (any, if it runs none).

        They replace the handles of the processes that were dumped, and are recorded in the
        registry by pid and start time, as `_popen` records what it starts, so `routerlab
        clean` can kill them and `stop`, `pids` and `is_running` act on them. The running
        configuration and `started_at` are kept: it is the same daemon, moved.

        A daemon run as a process tree is adopted from its parent's pid alone (as
        `dump_roots` names it): its programs are found among the parent's children by their
        command names."""
        root = self.tree_root
        if root is not None and root.name in pids:
            kids = [p.name for p in self._procs if not p.root]
            pids = {**children_by_comm(pids[root.name], kids), **pids}
        names = [p.name for p in self._procs] or list(pids)
        missing = [n for n in names if n not in pids]
        if missing:
            raise DaemonError(f"{self.implementation} {self.spec.name}: no restored process "
                              f"for {', '.join(missing)}")
        self.ns = ns
        self.machine = machine_of(ns)
        procs = []
        for old in self._procs or [DaemonProcess(n, RestoredProcess(0), "") for n in names]:
            reg_name = self._reg_name(old.name)
            registry.session().add_process(pids[old.name], reg_name)
            procs.append(DaemonProcess(old.name, RestoredProcess(pids[old.name]), reg_name, old.root))
        self._procs = procs
        log.debug("%s %s: adopted %s in %s", self.implementation, self.spec.name, pids, ns.name)

    def processes(self) -> list[DaemonProcess]:
        """The daemon's processes (program name, process handle, registry key), alive or
        not, in start order: what CRIU dumps and reaps."""
        return list(self._procs)

    def dead_processes(self) -> list[str]:
        """"program (exit N)" for each process of this daemon that has exited."""
        return [f"{p.name} (exit {p.popen.returncode})" for p in self._procs
                if p.popen.poll() is not None]

    def is_running(self) -> bool:
        """Whether every process of this daemon is alive."""
        return bool(self._procs) and not self.dead_processes()

    @property
    def started_at(self) -> float | None:
        """Wall-clock time the daemon became ready (None when not running)."""
        return self._started_at

    @property
    def pids(self) -> dict[str, int]:
        """{program name: pid} of the running processes (for CRIU and fault injection)."""
        return {p.name: p.popen.pid for p in self._procs if p.popen.poll() is None}

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM every process (last started first), SIGKILL after `timeout`; release them.
        A process tree's programs go first, its parent after them (it reaps them)."""
        for group in ([p for p in self._procs if not p.root], [p for p in self._procs if p.root]):
            self._stop_group(group, timeout)
        self._procs = []
        self._started_at = None
        self._after_stop()

    def _stop_group(self, procs: list[DaemonProcess], timeout: float) -> None:
        for p in reversed(procs):
            if p.popen.poll() is None:
                try:
                    p.popen.send_signal(signal.SIGCONT)  # a stopped (frozen) process cannot exit
                    p.popen.terminate()
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for p in reversed(procs):
            try:
                p.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s: %s ignored SIGTERM for %.0fs, killing it", self, p.name, timeout)
                p.popen.kill()
                p.popen.wait(5)
            if not getattr(p.popen, "releases_itself", False):  # a RemoteProcess's pid is
                registry.session().release_process(p.popen.pid)  # a server's, not ours

    def _after_stop(self) -> None:  # noqa: B027 - an optional hook
        """Remove per-instance leftovers (sockets, pid files) after the processes are gone."""

    def __enter__(self) -> Daemon:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ----- addresses -----
    def configure_addresses(self, ns: Netns) -> None:
        """Put the spec's addresses on the namespace's interfaces and bring them up."""
        # One `ip -batch` for the whole router (two nsenter+ip per interface cost ~12 ms each
        # and dominate start-up at hundreds of routers); on any failure the per-interface
        # commands below run and name the interface that is wrong.
        batch = [cmd for i in self.spec.interfaces
                 for cmd in (f"addr replace {i.address} dev {i.name}", f"link set {i.name} up")]
        if self.spec.loopback:
            batch += [f"addr replace {self.spec.loopback} dev lo", "link set lo up"]
        if batch and ns.run(["ip", "-batch", "-"], check=False,
                            input="\n".join(batch) + "\n").returncode == 0:
            return
        missing = []
        for i in self.spec.interfaces:
            r = ns.run(["ip", "addr", "replace", i.address, "dev", i.name], check=False)
            if r.returncode != 0:
                missing.append(f"{i.name}: {r.stderr.strip()}")
                continue
            ns.run(["ip", "link", "set", i.name, "up"])
        if missing:
            raise DaemonError(f"{self.implementation} {self.spec.name}: cannot configure interfaces in "
                              f"{ns.name}: {'; '.join(missing)}")
        if self.spec.loopback:
            ns.run(["ip", "addr", "replace", self.spec.loopback, "dev", "lo"])
            ns.run(["ip", "link", "set", "lo", "up"])

    def _socket_paths(self) -> list[Path]:
        """Unix sockets this daemon will create under run_dir (length-checked before start)."""
        return []

    def _check_socket_paths(self) -> None:
        for p in self._socket_paths():
            if len(str(p).encode()) > SUN_PATH_MAX:
                raise DaemonError(f"{self.implementation} {self.spec.name}: socket path {p} is longer than "
                                  f"{SUN_PATH_MAX} bytes; use a shorter run_dir")

    # ----- queries -----
    def _run(self, args: list[str], timeout: float = 15.0,
             check: bool = True) -> subprocess.CompletedProcess:
        """Run a client command inside the namespace; DaemonError on failure."""
        if self.ns is None:
            raise DaemonError(f"{self.implementation} {self.spec.name}: not started")
        try:
            return self.ns.run(args, check=check, timeout=timeout)
        except CommandError as e:
            raise DaemonError(f"{self.implementation} {self.spec.name}: {' '.join(args[:3])}...: "
                              f"{e.output or e}") from None
        except subprocess.TimeoutExpired:
            raise DaemonError(f"{self.implementation} {self.spec.name}: {' '.join(args)} timed out") from None

    def ospf_neighbors(self) -> list[OspfNeighbor]:
        """OSPF adjacencies ([] for implementations without OSPF)."""
        return []

    @abc.abstractmethod
    def bgp_sessions(self) -> list[BgpSession]:
        """BGP sessions, one per configured neighbour."""

    @abc.abstractmethod
    def routes(self) -> list[Route]:
        """The daemon's RIB (IPv4 unicast)."""

    @abc.abstractmethod
    def cli(self, command: str) -> str:
        """Run one command in the daemon's own CLI and return its text output."""

    @classmethod
    @abc.abstractmethod
    def version(cls) -> str | None:
        """The installed version ("8.4.4"), or None when the daemon is not installed."""

    def log_files(self) -> list[Path]:
        """The daemon's log files (most useful first)."""
        if self.run_dir is None:
            return []
        return self.machine.glob(self.run_dir, "*.log", "*.out")

    def log_tail(self, lines: int = 20) -> str:
        """The last `lines` lines of each log file, labelled with the file name."""
        out = []
        for p in self.log_files():
            try:
                text = self.machine.read_text(p, errors="replace").splitlines()
            except FileNotFoundError:
                continue
            if text:
                out.append(f"==> {p.name} <==")
                out.extend(text[-lines:])
        return "\n".join(out)

    def _failure_output(self) -> str:
        """The daemon's own last words: error-looking lines of its logs, else their tails."""
        lines: list[str] = []
        for p in self.log_files():
            with contextlib.suppress(FileNotFoundError):
                lines += self.machine.read_text(p, errors="replace").splitlines()
        errs = [ln for ln in lines if _ERROR_RE.search(ln)]
        chosen = errs[-3:] if errs else lines[-3:]
        return one_line("\n".join(chosen)) or "no output"

    # ----- convenience -----
    def bgp_session(self, peer: str) -> BgpSession | None:
        return next((s for s in self.bgp_sessions() if s.peer == peer), None)

    def route_prefixes(self, protocol: str | None = None) -> set[str]:
        return {r.prefix for r in self.routes() if protocol is None or r.protocol == protocol}


_ERROR_RE = re.compile(r"error|fail|cannot|can't|unable|invalid|no such|unknown|denied|"
                       r"refused|fatal|panic|critical|exception|traceback", re.I)


def parse_int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None
