"""The machine a network namespace lives on, as the daemon drivers use it: the files under a
router's run directory (configurations, logs, pid files, FIFOs, Unix sockets such as FRR's
vty sockets) and commands in its root namespace (the daemons' config checkers).

`Machine` is this machine: pathlib, subprocess and sockets. A server of a cluster
(`routerlab.ssh.SshHost`) is a `Machine` whose every operation goes over its shared ssh
connection. A driver that touches its daemon's files only through its namespace's
`machine` (`Netns.machine`) therefore works unchanged on a namespace on another server,
with no filesystem shared between the two machines.
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

PathLike = str | os.PathLike


# One implementation for every machine (run here with exec, on a server by python3 -c):
# a non-blocking open fails with ENXIO when no process has the FIFO open for reading
FIFO_WRITER = """
import os
fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
try:
    os.set_blocking(fd, True)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
finally:
    os.close(fd)
"""


class CommandFailed(RuntimeError):
    """A command on a machine failed (`Machine.run` with check); the message carries its output."""


class Stream(Protocol):
    """A connected byte stream (a Unix socket here, a relay to one on a server)."""

    def sendall(self, data: bytes) -> None: ...

    def recv(self, n: int) -> bytes: ...

    def close(self) -> None: ...

    def __enter__(self) -> Stream: ...

    def __exit__(self, *exc: object) -> None: ...


class Machine:
    """This machine (the one running routerlab)."""

    host = "localhost"

    def __repr__(self) -> str:
        return "Machine('localhost')"

    def run(self, args: Sequence[str] | str, *, check: bool = True, timeout: float = 60,
            input: str | None = None, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess:
        """Run a command (argv, or shell text) in the root namespace; with `check`,
        CommandFailed unless it exits 0. `env`: variables added to the environment."""
        argv = ["sh", "-c", args] if isinstance(args, str) else list(args)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, input=input,
                           env={**os.environ, **env} if env else None)
        if check and r.returncode != 0:
            raise CommandFailed(f"{argv!r} failed (exit {r.returncode}): "
                                f"{(r.stderr or r.stdout).strip() or 'no output'}")
        return r

    def read_bytes(self, path: PathLike) -> bytes:
        """A file's content; FileNotFoundError when there is none."""
        return Path(path).read_bytes()

    def read_text(self, path: PathLike, errors: str = "strict") -> str:
        return self.read_bytes(path).decode(errors=errors)

    def write_text(self, path: PathLike, text: str) -> None:
        Path(path).write_text(text)

    def exists(self, path: PathLike) -> bool:
        return Path(path).exists()

    def mkdir(self, path: PathLike) -> None:
        """Create a directory and its parents (nothing if it exists)."""
        Path(path).mkdir(parents=True, exist_ok=True)

    def unlink(self, *paths: PathLike) -> None:
        """Remove files (those missing are no error)."""
        for p in paths:
            Path(p).unlink(missing_ok=True)

    def glob(self, directory: PathLike, *patterns: str) -> list[Path]:
        """The entries of `directory` matching each pattern (sorted per pattern, in pattern
        order; [] when the directory does not exist)."""
        return [p for pat in patterns for p in sorted(Path(directory).glob(pat))]

    def mkfifo(self, path: PathLike, mode: int = 0o600) -> None:
        """Create a FIFO unless something exists at `path`."""
        if not os.path.exists(path):
            os.mkfifo(path, mode)

    def write_fifo(self, path: PathLike, data: bytes) -> None:
        """Write `data` into the FIFO at `path`: OSError at once when nothing reads it (a
        non-blocking open), else blocking while the reader drains it."""
        exec(FIFO_WRITER, {"path": os.fspath(path), "data": data})

    def connect_unix(self, path: PathLike, timeout: float) -> Stream:
        """A stream connected to the Unix socket at `path` (OSError if none listens);
        `recv` raises TimeoutError after `timeout` seconds without data."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(str(path))
        except BaseException:
            sock.close()
            raise
        return sock


LOCAL = Machine()


def machine_of(ns: object) -> Machine:
    """The machine namespace `ns` lives on (`Netns.machine`; this one for any other handle)."""
    m = getattr(ns, "machine", LOCAL)
    return m if isinstance(m, Machine) else LOCAL


class PipeStream:
    """A `Stream` over a relay process's stdin and stdout (a Unix socket on a server, reached
    by `socat` there through ssh). Closing it ends the relay."""

    def __init__(self, proc: subprocess.Popen, timeout: float, what: str):
        self.proc = proc
        self.timeout = timeout
        self.what = what

    def sendall(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise ConnectionError(f"{self.what}: relay ended: {self._error()}") from None

    def recv(self, n: int) -> bytes:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        if not select.select([fd], [], [], self.timeout)[0]:
            raise TimeoutError(f"{self.what}: no answer within {self.timeout:.0f} s")
        data = os.read(fd, n)
        if not data:  # the end: a relay that never connected (or lost the socket) failed
            try:
                rc = self.proc.wait(5)
            except subprocess.TimeoutExpired:
                rc = None
            if rc not in (None, 0):
                raise ConnectionError(f"{self.what}: {self._error()}")
        return data

    def _error(self) -> str:
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            return "relay did not exit"
        err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        return err or f"relay exit {self.proc.returncode}"

    def close(self) -> None:
        for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> PipeStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
