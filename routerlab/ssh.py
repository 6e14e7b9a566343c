"""Servers reached by root ssh: the command line, the shared connection, and the removal of
what routerlab recorded on a server (`routerlab clean` calls `remove_remote` through the
registry). Nothing here writes the registry; routerlab.remote records what it creates.

Every command to a server goes through one shared ssh connection per server and ssh
configuration (OpenSSH's ControlMaster, its socket under the state directory): the node
shells, the daemons, the queries and `routerlab clean` all use it.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import subprocess
from collections.abc import Sequence
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from routerlab.machine import FIFO_WRITER, CommandFailed, Machine, PathLike, PipeStream, Stream
from routerlab.statedir import STATE_DIR

LOCALHOST = "localhost"
CONTROL_DIR = STATE_DIR / "ssh"


class SshError(CommandFailed):
    """A command on a server failed; the message carries its own error output."""


class SshHost(Machine):
    """A server reached as root over ssh, `config` an ssh_config file (keys, port, known
    hosts) or None for the user's own (`~/.ssh/config`). As a `Machine`, its files and
    commands are the server's: each operation is one command over the shared connection."""

    def __init__(self, host: str, config: Path | str | None = None, *, persist: bool = True):
        self.host = host
        self.config = str(config) if config else None
        #: keep the shared connection open between commands (a network's life); False for
        #: `routerlab clean`, which uses a connection still open and leaves none behind
        self.persist = persist

    def __repr__(self) -> str:
        return f"SshServer({self.host!r})"

    @property
    def control_path(self) -> str:
        # one shared connection per server and ssh configuration (a test's own sshd and keys
        # never meet a connection made with another's)
        tag = hashlib.sha1((self.config or "").encode()).hexdigest()[:8]
        return str(CONTROL_DIR / f"root@{self.host}-{tag}")

    def options(self, *, shared: bool = True) -> list[str]:
        """ssh's options (no destination): batch mode, our config, and the shared connection
        unless `shared` is False (a link's tunnel has a connection of its own: a tunnel
        requested through a multiplexed session ends with that session)."""
        CONTROL_DIR.mkdir(parents=True, exist_ok=True, mode=0o700)
        # SHLVL=1: bash sources root's ~/.bashrc for every command it gets from sshd unless
        # it is a nested shell (0.3 s a command where that file starts pyenv); applies on
        # servers whose sshd has `AcceptEnv SHLVL`
        opts = ["-q", "-o", "BatchMode=yes", "-o", "ServerAliveInterval=5", "-o", "SetEnv=SHLVL=1"]
        if self.config:
            opts += ["-F", self.config]
        if not shared:
            return opts + ["-o", "ControlPath=none", "-o", "ControlMaster=no"]
        return opts + ["-o", f"ControlPath={self.control_path}", "-o", "ControlMaster=auto",
                       "-o", f"ControlPersist={'120' if self.persist else 'no'}"]

    @property
    def dest(self) -> str:
        return f"root@{self.host}"

    def command(self, remote: str) -> list[str]:
        """The local argv that runs shell text `remote` on the server."""
        return ["ssh", *self.options(), self.dest, remote]

    def close_master(self) -> None:
        """End the shared connection (its master process exits), if one is open."""
        subprocess.run(["ssh", *self.options(), "-O", "exit", self.dest], capture_output=True,
                       timeout=15)

    def run(self, args: Sequence[str] | str, *, check: bool = True, timeout: float = 60,
            input: str | None = None, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command (argv, or shell text) on the server; SshError on failure."""
        text = args if isinstance(args, str) else shlex.join(args)
        if env:
            text = f"{shlex.join(['env', *(f'{k}={v}' for k, v in env.items())])} sh -c {shlex.quote(text)}"
        r = subprocess.run(self.command(text), capture_output=True, text=True, timeout=timeout,
                           input=input)
        if check and r.returncode != 0:
            raise SshError(f"ssh {self.host} {text!r} failed (exit {r.returncode}): "
                           f"{(r.stderr or r.stdout).strip() or 'no output'}")
        return r

    # ----- the server's files (Machine) -----
    def _file_op(self, script: str, path: PathLike, *, input: bytes | None = None,
                 timeout: float = 30) -> subprocess.CompletedProcess:
        """`script` (shell text, the path in "$1") run on the server; output as bytes."""
        remote = f"set -- {shlex.quote(str(path))}; {script}"
        return subprocess.run(self.command(remote), input=input, capture_output=True, timeout=timeout)

    def _check_file_op(self, r: subprocess.CompletedProcess, what: str, path: PathLike) -> None:
        if r.returncode == 0:
            return
        err = r.stderr.decode(errors="replace").strip()
        if r.returncode == 3 or "No such file" in err:
            raise FileNotFoundError(f"{self.host}:{path}")
        raise OSError(f"{what} {self.host}:{path}: {err or f'exit {r.returncode}'}")

    def read_bytes(self, path: PathLike) -> bytes:
        r = self._file_op('[ -e "$1" ] || exit 3; cat -- "$1"', path)
        self._check_file_op(r, "read", path)
        return r.stdout

    def write_text(self, path: PathLike, text: str) -> None:
        self._check_file_op(self._file_op('cat >"$1"', path, input=text.encode()), "write", path)

    def exists(self, path: PathLike) -> bool:
        r = self._file_op('test -e "$1"', path)
        if r.returncode == 255:  # ssh itself failed
            raise OSError(f"ssh {self.host}: {r.stderr.decode(errors='replace').strip()}")
        return r.returncode == 0

    def mkdir(self, path: PathLike) -> None:
        self._check_file_op(self._file_op('mkdir -p -- "$1"', path), "mkdir", path)

    def unlink(self, *paths: PathLike) -> None:
        if paths:
            r = self.run(["rm", "-f", "--", *map(str, paths)], check=False, timeout=30)
            if r.returncode != 0:
                raise OSError(f"rm {self.host}:{paths[0]}...: {r.stderr.strip()}")

    def glob(self, directory: PathLike, *patterns: str) -> list[Path]:
        # one round trip: each pattern's matches, sorted there (C collation, as Python sorts)
        script = "; ".join(f'for f in "$1"/{_glob_word(p)}; do [ -e "$f" ] && printf "%s\\0" "$f"; done'
                           f' | LC_ALL=C sort -z' for p in patterns)
        r = self._file_op(script + "; true", directory)
        self._check_file_op(r, "list", directory)
        return [Path(p) for p in r.stdout.decode(errors="surrogateescape").split("\0") if p]

    def mkfifo(self, path: PathLike, mode: int = 0o600) -> None:
        self._check_file_op(self._file_op(f'[ -e "$1" ] || mkfifo -m {mode:o} -- "$1"', path), "mkfifo", path)

    def write_fifo(self, path: PathLike, data: bytes) -> None:
        script = ("import sys; path = sys.argv[1]; data = sys.stdin.buffer.read()\n" + FIFO_WRITER)
        r = subprocess.run(self.command(shlex.join(["python3", "-c", script, str(path)])), input=data,
                           capture_output=True, timeout=120)
        if r.returncode != 0:
            lines = r.stderr.decode(errors="replace").strip().splitlines()
            raise OSError(f"{self.host}:{path}: {lines[-1] if lines else f'exit {r.returncode}'}")

    def connect_unix(self, path: PathLike, timeout: float) -> Stream:
        """A relay (socat on the server, through the shared connection) to the Unix socket there."""
        proc = subprocess.Popen(self.command(f"exec socat - UNIX-CONNECT:{shlex.quote(str(path))}"),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        return PipeStream(proc, timeout, f"{self.host}:{path}")

    def start_time(self, pid: int) -> str | None:
        """Process `pid`'s start time on the server (clock ticks since boot), None if gone."""
        r = self.run(f"cut -d' ' -f22 /proc/{int(pid)}/stat", check=False, timeout=15)
        return r.stdout.strip() or None if r.returncode == 0 else None



def _glob_word(pattern: str) -> str:
    """A glob pattern as a shell word: its wildcards kept, anything else quoted."""
    if not all(c.isalnum() or c in "*?._-[]" for c in pattern):
        raise ValueError(f"unsupported glob pattern {pattern!r}")
    return pattern


def kill_netns_script(name: str) -> str:
    n = shlex.quote(name)
    return (f"[ -e /var/run/netns/{n} ] || exit 0; pids=$(ip netns pids {n}); "
            f"[ -z \"$pids\" ] || kill -CONT $pids 2>/dev/null; [ -z \"$pids\" ] || kill $pids 2>/dev/null; "
            f"for i in $(seq 30); do [ -z \"$(ip netns pids {n})\" ] && break; sleep 0.1; done; "
            f"pids=$(ip netns pids {n}); [ -z \"$pids\" ] || kill -9 $pids 2>/dev/null; "
            f"ip netns del {n}")


# ------------------------------------------------------------------ registry: remove, check
_ORDER = ("process", "link", "netns", "dir", "master")


def _server(rec: dict[str, Any]) -> SshHost:
    return SshHost(rec["server"], rec.get("ssh_config"), persist=False)


def _remove_one(rec: dict[str, Any]) -> str | None:
    """Remove one recorded remote resource if it is still there; None, or what went wrong."""
    what, name = rec["what"], rec["rname"]
    if what == "dir":  # Mininet's ~/.ssh/mn here: removed only when empty
        with contextlib.suppress(FileNotFoundError, OSError):
            os.rmdir(name)
        return None
    srv = _server(rec)
    if what == "master":
        srv.close_master()
        return None
    if what == "process":
        if rec.get("start") is not None and srv.start_time(int(rec["pid"])) != rec["start"]:
            return None
        r = srv.run(f"kill -CONT {int(rec['pid'])}; kill {int(rec['pid'])}", check=False)
    elif what == "link":
        r = srv.run(f"! ip link show {shlex.quote(name)} >/dev/null 2>&1 || ip link del {shlex.quote(name)}",
                    check=False)
    elif what == "netns":
        r = srv.run(kill_netns_script(name), check=False)
    else:
        return f"unknown remote resource {what}"
    return None if r.returncode == 0 else (r.stderr or r.stdout).strip() or f"exit {r.returncode}"


def remove_remote(resources: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """Remove recorded remote resources, each server over its shared ssh connection:
    processes, taps, namespaces, then ``~/.ssh/mn`` and the connections themselves."""
    removed: list[str] = []
    errors: list[str] = []
    for what in _ORDER:
        for rec in reversed([r for r in resources if r.get("what") == what]):
            if not still_there(rec):
                continue
            if what not in ("dir", "master") and not _reachable(_server(rec)):
                errors.append(f"{rec['name']}: server {rec['server']} unreachable over ssh")
                continue
            try:
                err = _remove_one(rec)
            except (OSError, subprocess.SubprocessError) as e:
                err = str(e)
            if err:
                errors.append(f"{rec['name']}: {err}")
            else:
                removed.append(rec["name"])
    return removed, errors


def _reachable(srv: SshHost) -> bool:
    try:
        return srv.run("true", check=False, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def still_there(rec: dict[str, Any]) -> bool:
    """Whether a recorded remote resource still exists (asks its server)."""
    what, name = rec.get("what"), rec.get("rname", "")
    if what == "dir":
        return os.path.isdir(name)
    srv = _server(rec)
    if what == "master":
        return subprocess.run(["ssh", *srv.options(), "-O", "check", srv.dest],
                              capture_output=True, timeout=15).returncode == 0
    if what == "process":
        probe = f"test \"$(cut -d' ' -f22 /proc/{int(rec['pid'])}/stat 2>/dev/null)\" = {shlex.quote(str(rec.get('start')))}"
    elif what == "link":
        probe = f"ip link show {shlex.quote(name)} >/dev/null 2>&1"
    elif what == "netns":
        probe = f"test -e /var/run/netns/{shlex.quote(name)}"
    else:
        return False
    try:
        rc = srv.run(probe, check=False, timeout=15).returncode
    except (OSError, subprocess.SubprocessError):
        return True
    # 255: ssh itself failed (server unreachable): unknown, so the record is kept
    return rc in (0, 255)
