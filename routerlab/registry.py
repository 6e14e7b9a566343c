"""The registry of everything routerlab creates, so that cleanup removes exactly that.

Each routerlab process owns one *session*: an append-only JSON-lines file under the state
directory (``/run/routerlab/sessions``). A resource is recorded *before* it is created (so a
SIGKILL between the two leaks nothing) and marked released after a normal teardown.
`clean()` replays the files: it kills the recorded processes (only when pid and start time
both still match, so a recycled pid is never touched), kills what runs inside our
namespaces, deletes our bridges, links and namespaces and removes our directories. Nothing
is ever found by a name pattern: a namespace, bridge or process routerlab did not record
survives.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from routerlab.statedir import DEFAULT_STATE_DIR, STATE_DIR

log = logging.getLogger(__name__)

SESSIONS_DIR = STATE_DIR / "sessions"
# Where a plain `routerlab clean` looks. A session kept elsewhere (ROUTERLAB_STATE_DIR: the
# tests' private state, a user's parallel runs) leaves a pointer here, so that a run killed
# outright (SIGKILL, a lost machine session) is still cleaned by a plain `routerlab clean`.
HOME_SESSIONS_DIR = DEFAULT_STATE_DIR / "sessions"
POINTER_SUFFIX = ".elsewhere"
# A pointer is written before its session file: younger than this, a missing target is
# still being created, not gone.
POINTER_GRACE_S = 60.0

# Order of teardown: processes first (they pin namespaces and sockets), then what they used.
# "remote": something on another server (cluster mode), removed over ssh by routerlab.ssh.
KINDS = ("process", "remote", "bridge", "link", "netns", "dir")


def proc_start_time(pid: int) -> float | None:
    """The process's start time (seconds since boot, as psutil reports), or None if gone
    (a zombie is gone: it only waits for its parent to read its exit status)."""
    try:
        p = psutil.Process(pid)
        with p.oneshot():  # one read of /proc/PID/stat for both
            return None if p.status() == psutil.STATUS_ZOMBIE else p.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        return None


@dataclass
class Session:
    """One routerlab process's record of what it created."""

    path: Path
    owner_pid: int = field(default_factory=os.getpid)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def create(cls, label: str = "") -> Session:
        SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        name = f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}{'-' + label if label else ''}"
        s = cls(SESSIONS_DIR / f"{name}.jsonl")
        _write_pointer(s.path)
        s._append(s._header())
        return s

    def _header(self) -> dict[str, Any]:
        return {"op": "session", "owner_pid": self.owner_pid,
                "owner_start": proc_start_time(self.owner_pid)}

    def _append(self, rec: dict[str, Any]) -> None:
        line = json.dumps(rec, sort_keys=True) + "\n"
        with self._lock:
            # A file removed under a live session (its resources all released, then
            # cleaned or closed) starts again with its owner: without that line a
            # `clean --stale` would take the running session for a dead one.
            if rec.get("op") != "session" and not self.path.exists():
                line = json.dumps(self._header(), sort_keys=True) + "\n" + line
            self._write(line)

    def _write(self, line: str) -> None:
        with open(self.path, "a") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())

    def add(self, kind: str, name: str, **attrs: Any) -> None:
        """Record a resource about to be created (call before creating it)."""
        assert kind in KINDS, kind
        self._append({"op": "add", "kind": kind, "name": str(name), **attrs})

    def link_created(self, name: str) -> None:
        """Record a root-namespace link's ifindex once it exists: `clean` then removes only
        that very link, not one created later under the same name by someone else."""
        ifindex = link_ifindex(name)
        if ifindex is not None:
            self.add("link", name, ifindex=ifindex)

    def add_process(self, pid: int, name: str = "") -> None:
        """Record a started process with its start time (guards against pid reuse)."""
        self._append({"op": "add", "kind": "process", "name": name or str(pid), "pid": pid,
                      "start": proc_start_time(pid)})

    def release(self, kind: str, name: str) -> None:
        """Mark a resource as removed by its owner (a process is named by its pid)."""
        rec: dict[str, Any] = {"op": "del", "kind": kind, "name": str(name)}
        if kind == "process":
            rec["pid"] = int(name)
        self._append(rec)

    def release_process(self, pid: int) -> None:
        self.release("process", str(pid))

    def close(self) -> None:
        """End the session after a clean teardown: if nothing it recorded is left (released,
        or gone without a release record, as Mininet's shells and links go), drop the file."""
        if not any(_still_there(r) for r in live_resources(self.path)):
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
            _drop_pointer(self.path)


_current: Session | None = None
_current_lock = threading.Lock()


def session() -> Session:
    """This process's session (created on first use)."""
    global _current
    with _current_lock:
        if _current is None or _current.owner_pid != os.getpid():
            _current = Session.create()
            atexit.register(_current.close)
        return _current


def live_resources(path: Path) -> list[dict[str, Any]]:
    """The resources a session file records as created and not released, in creation order."""
    live: dict[tuple[str, str], dict[str, Any]] = {}
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        return []
    for line in lines:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from a SIGKILL mid-write
        kind = rec.get("kind", "")
        # Processes are keyed by pid (many share a name); everything else by name.
        key = (kind, str(rec.get("pid", rec.get("name", ""))) if kind == "process" else rec.get("name", ""))
        if rec.get("op") == "add":
            live.pop(key, None)
            live[key] = rec
        elif rec.get("op") == "del":
            live.pop(key, None)
    return list(live.values())


def session_owner(path: Path) -> tuple[int, float | None] | None:
    try:
        first = json.loads(path.read_text().splitlines()[0])
        return int(first["owner_pid"]), first.get("owner_start")
    except (OSError, IndexError, KeyError, ValueError):
        return None


def session_alive(path: Path) -> bool:
    """Whether the process that owns a session file is still running."""
    owner = session_owner(path)
    if owner is None:
        return False
    pid, start = owner
    now = proc_start_time(pid)
    return now is not None and (start is None or abs(now - start) < 0.5)


def _pointer_of(path: Path) -> Path:
    return HOME_SESSIONS_DIR / f"{path.stem}{POINTER_SUFFIX}"


def _write_pointer(path: Path) -> None:
    """Point the home sessions directory at a session file kept elsewhere."""
    if path.parent.resolve() == HOME_SESSIONS_DIR.resolve():
        return
    try:
        HOME_SESSIONS_DIR.mkdir(parents=True, exist_ok=True)
        _pointer_of(path).write_text(str(path.resolve()) + "\n")
    except OSError as e:  # not root (unit tests): nothing to point from
        log.debug("no pointer to %s: %s", path, e)


def _drop_pointer(path: Path) -> None:
    pointer = _pointer_of(path)
    try:
        if pointer.read_text().strip() == str(path.resolve()):
            pointer.unlink()
    except OSError:
        pass


def _pointed_sessions() -> list[Path]:
    """Session files kept elsewhere that the home directory points at; pointers whose file
    is gone (closed or cleaned there) are dropped."""
    found = []
    for pointer in sorted(HOME_SESSIONS_DIR.glob(f"*{POINTER_SUFFIX}")):
        try:
            target = Path(pointer.read_text().strip())
            age = time.time() - pointer.stat().st_mtime
        except OSError:
            continue
        if target.is_file():
            found.append(target)
        elif age > POINTER_GRACE_S:
            pointer.unlink(missing_ok=True)
    return found


def session_files() -> list[Path]:
    """The session files `clean` replays: this state directory's, and (from the home
    directory) those kept elsewhere that it points at."""
    own = sorted(SESSIONS_DIR.glob("*.jsonl")) if SESSIONS_DIR.is_dir() else []
    if SESSIONS_DIR.resolve() != HOME_SESSIONS_DIR.resolve() or not HOME_SESSIONS_DIR.is_dir():
        return own
    return own + [p for p in _pointed_sessions() if p not in own]


@dataclass
class CleanReport:
    """What a cleanup removed, by kind."""

    removed: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.removed.values())

    def merge(self, other: CleanReport) -> None:
        for k, v in other.removed.items():
            self.removed.setdefault(k, []).extend(v)
        self.errors.extend(other.errors)


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=30)


#: where named network namespaces are mounted (as `ip netns` makes them)
NETNS_DIR = Path("/var/run/netns")


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def netns_key(path: str | os.PathLike) -> tuple[int, int] | None:
    """A network namespace's identity, (st_dev, st_ino) of its nsfs file, as `ip netns pids`
    compares them; None if there is no such file (a mount point whose namespace is gone has
    a tmpfs identity no process matches)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def pids_by_netns() -> dict[tuple[int, int], list[int]]:
    """Every process's network namespace identity -> its pids, from one pass over /proc
    (processes, as `ip netns pids` lists them; those gone or not ours to read are left out)."""
    out: dict[tuple[int, int], list[int]] = {}
    with os.scandir("/proc") as it:
        for entry in it:
            if not entry.name.isdigit():
                continue
            key = netns_key(f"/proc/{entry.name}/ns/net")
            if key is not None:
                out.setdefault(key, []).append(int(entry.name))
    return out


def netns_pids_of(names: list[str]) -> dict[str, list[int]]:
    """Pids in each named namespace (those that exist), from one pass over /proc: `ip netns
    pids` once per namespace read all of /proc each time, so a 300-router clean spent most
    of its time there (quadratic in routers)."""
    keys = {name: key for name in names if (key := netns_key(NETNS_DIR / name)) is not None}
    if not keys:
        return {}
    by_ns = pids_by_netns()
    return {name: sorted(by_ns.get(key, [])) for name, key in keys.items()}


def netns_pids(name: str) -> list[int]:
    """Pids of processes whose network namespace is the named one."""
    return netns_pids_of([name]).get(name, [])


def _signal_all(procs: list[psutil.Process], sigs: tuple[int, ...]) -> list[psutil.Process]:
    """Send `sigs` to every process, each through a pidfd taken before any signal (a pidfd
    names that very process, never a later one with a recycled pid); those that took them.

    All are signalled first, one syscall each: at 500 routers psutil's per-signal identity
    check (a /proc/PID/stat read) made signalling 1,500 processes take 27-44 s, the cleaner
    starved of CPU by the zebras already signalled withdrawing their routes."""
    fds: list[int | None] = []
    live = []
    try:
        for p in procs:
            try:
                fd: int | None = os.pidfd_open(p.pid)
            except ProcessLookupError:
                continue
            except OSError:  # out of descriptors: psutil checks the identity at each signal
                fd = None
            if fd is not None and not p.is_running():  # the pid was recycled meanwhile
                os.close(fd)
                continue
            fds.append(fd)
            live.append(p)
    except BaseException:
        for fd in fds:
            if fd is not None:
                os.close(fd)
        raise
    done = []
    try:
        for p, fd in zip(live, fds):
            try:
                for sig in sigs:
                    if fd is not None:
                        signal.pidfd_send_signal(fd, sig)
                    else:
                        p.send_signal(sig)
                done.append(p)
            except (ProcessLookupError, psutil.NoSuchProcess, psutil.ZombieProcess):
                pass
    finally:
        for fd in fds:
            if fd is not None:
                os.close(fd)
    return done


def kill_pids(pids: list[int], timeout: float = 3.0) -> list[int]:
    """SIGTERM, wait, then SIGKILL the given processes; returns those that were alive."""
    found = []
    for pid in pids:
        try:
            found.append(psutil.Process(pid))
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            pass
    # SIGCONT first: a stopped process cannot act on SIGTERM
    procs = _signal_all(found, (signal.SIGCONT, signal.SIGTERM))
    _, alive = psutil.wait_procs(procs, timeout=timeout)
    _signal_all(alive, (signal.SIGKILL,))
    psutil.wait_procs(alive, timeout=timeout)
    return [p.pid for p in procs]


def ovs_bridge_exists(name: str) -> bool:
    if shutil.which("ovs-vsctl") is None:
        return False
    r = _run(["ovs-vsctl", "-t", "5", "br-exists", name])
    return r.returncode == 0


def link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()


def link_ifindex(name: str) -> int | None:
    """The root-namespace link's interface index, or None if there is no such link."""
    try:
        return int(Path("/sys/class/net", name, "ifindex").read_text())
    except (OSError, ValueError):
        return None


def link_is_ours(rec: dict[str, Any]) -> bool:
    """A recorded link is still there and still the one we created (same ifindex, when the
    record has one: a record written just before a crash may not)."""
    ifindex = link_ifindex(rec["name"])
    return ifindex is not None and rec.get("ifindex") in (None, ifindex)


def remove_resources(resources: list[dict[str, Any]], state_dir: Path = STATE_DIR) -> CleanReport:
    """Remove recorded resources (processes, bridges, links, namespaces, directories);
    `state_dir` is the recording session's own state directory."""
    rep = CleanReport()
    by_kind: dict[str, list[dict[str, Any]]] = {k: [] for k in KINDS}
    for r in resources:
        by_kind.setdefault(r["kind"], []).append(r)
    # 1. processes: ours by pid+start time, and everything inside our namespaces
    pids = []
    for r in by_kind["process"]:
        start = proc_start_time(int(r["pid"]))
        if start is not None and (r.get("start") is None or abs(start - r["start"]) < 0.5):
            pids.append(int(r["pid"]))
    for ns_pids in netns_pids_of([r["name"] for r in by_kind["netns"]]).values():
        pids.extend(ns_pids)
    pids = sorted(set(pids) - {os.getpid()})
    killed = kill_pids(pids)
    rep.removed["process"] = [str(p) for p in killed]
    if by_kind["remote"]:  # other servers' namespaces, taps and processes, over ssh
        from routerlab.ssh import remove_remote

        removed, errors = remove_remote(by_kind["remote"])
        rep.removed["remote"] = removed
        rep.errors.extend(errors)
    # 2. bridges, 3. links in the root namespace, 4. namespaces, 5. directories
    for r in reversed(by_kind["bridge"]):
        if ovs_bridge_exists(r["name"]):
            res = _run(["ovs-vsctl", "-t", "10", "--if-exists", "del-br", r["name"]])
            (rep.removed["bridge"].append(r["name"]) if res.returncode == 0
             else rep.errors.append(f"bridge {r['name']}: {res.stderr.strip()}"))
    for r in reversed(by_kind["link"]):
        if link_is_ours(r):
            res = _run(["ip", "link", "del", r["name"]])
            (rep.removed["link"].append(r["name"]) if res.returncode == 0
             else rep.errors.append(f"link {r['name']}: {res.stderr.strip()}"))
    for r in reversed(by_kind["netns"]):
        if netns_exists(r["name"]):
            res = _run(["ip", "netns", "del", r["name"]])
            (rep.removed["netns"].append(r["name"]) if res.returncode == 0
             else rep.errors.append(f"netns {r['name']}: {res.stderr.strip()}"))
    for r in reversed(by_kind["dir"]):
        p = Path(r["name"])
        if p.exists() and _is_ours(p, state_dir):
            shutil.rmtree(p, ignore_errors=True)
            rep.removed["dir"].append(str(p))
    return rep


def _is_ours(p: Path, state_dir: Path) -> bool:
    # Directories are only ever recorded under the state dir or a temp dir we made; refuse
    # anything that is not plainly a routerlab directory, whatever a session file says.
    s = str(p.resolve())
    return s.startswith(str(state_dir.resolve()) + "/") or "routerlab" in p.name or s.startswith("/tmp/routerlab")


def clean(stale_only: bool = False) -> CleanReport:
    """Remove every resource recorded by routerlab sessions.

    With ``stale_only`` only sessions whose owner process has died are cleaned (used by
    a new run so it never touches a concurrently running one)."""
    rep = CleanReport()
    for path in session_files():
        if stale_only and session_alive(path):
            continue
        rep.merge(clean_session_file(path))
    return rep


def clean_session_file(path: Path) -> CleanReport:
    """Remove what one session file records, and the file once nothing of it is left."""
    rep = remove_resources(live_resources(path), state_dir=path.parent.parent)
    leftover = [r for r in live_resources(path) if _still_there(r)]
    if not leftover:
        path.unlink(missing_ok=True)
        _drop_pointer(path)
    else:
        rep.errors.append(f"{path.name}: {len(leftover)} resources could not be removed")
    return rep


def _still_there(r: dict[str, Any]) -> bool:
    kind, name = r["kind"], r["name"]
    if kind == "process":
        start = proc_start_time(int(r["pid"]))
        return start is not None and (r.get("start") is None or abs(start - r["start"]) < 0.5)
    if kind == "netns":
        return netns_exists(name)
    if kind == "bridge":
        return ovs_bridge_exists(name)
    if kind == "link":
        return link_is_ours(r)
    if kind == "dir":
        return Path(name).exists()
    if kind == "remote":
        from routerlab.ssh import still_there

        return still_there(r)
    return False


def all_live_resources() -> Iterator[dict[str, Any]]:
    """Every live resource of every session (for `routerlab clean --dry-run` and tests)."""
    for path in session_files():
        for r in live_resources(path):
            if _still_there(r):
                yield r


def clean_current_session() -> CleanReport:
    """Remove whatever this process's own session still holds (the safety net a run uses
    after its experiment, and on Ctrl-C)."""
    if _current is None or _current.owner_pid != os.getpid():
        return CleanReport()
    rep = remove_resources(live_resources(_current.path))
    for r in live_resources(_current.path):
        if not _still_there(r):
            _current.release(r["kind"], str(r["pid"]) if r["kind"] == "process" else r["name"])
    _current.close()
    return rep
