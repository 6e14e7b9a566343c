"""The agents' processes: what a host must offer (`Host`), starting a command in a host with
the registry knowing its pid (`spawn`), stopping it by that pid, reading its start-up line."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import subprocess
import time
from pathlib import Path
from typing import Any, Protocol

from routerlab import registry

log = logging.getLogger(__name__)

_REPO_ROOT = str(Path(__file__).resolve().parents[2])

class Host(Protocol):
    """What the probe needs of a host: a name and a popen inside its network namespace."""

    name: str

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen: ...


class TrafficError(RuntimeError):
    """A probe or iperf3 process failed; the message carries its own error output."""


class ProbeError(TrafficError):
    pass


class IperfError(TrafficError):
    pass


def agent_env() -> dict[str, str]:
    """The environment for a traffic agent (a Python module run inside a host): this
    checkout importable, whatever the caller's PYTHONPATH."""
    # The agents run with the venv's interpreter; make the package importable even from a
    # checkout that is not installed into it.
    env = dict(os.environ)
    env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(host: Host, args: list[str], name: str, **kwargs: Any) -> subprocess.Popen:
    """Start ``args`` inside ``host``'s namespace and make sure the registry knows the pid.

    `Netns.popen` registers the process itself; for any other host (Mininet nodes) it is
    registered here. Do not pass ``start_new_session`` for Mininet: ``mnexec -d`` would then
    fork and the pid we get would not be the program's."""
    from routerlab.netns import Netns  # local: keeps this module importable without root tools

    if isinstance(host, Netns):
        return host.popen(args, name=name, **kwargs)
    p = host.popen(list(args), **kwargs)
    registry.session().add_process(p.pid, name)
    return p


def _release(pid: int) -> None:
    sess = registry.session()
    if hasattr(sess, "release_process"):
        sess.release_process(pid)
    else:  # registries that key processes by the pid string
        sess.release("process", str(pid))


def _terminate(proc: subprocess.Popen | None, timeout: float = 3.0) -> None:
    """Stop one process we started (by its pid only) and mark it released."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
    _release(proc.pid)


def _read_line(proc: subprocess.Popen, timeout: float, what: str) -> tuple[dict[str, Any], bytes]:
    """Read one JSON line from a child's stdout within `timeout`; also return bytes read past it."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProbeError(f"{what}: not ready after {timeout:.0f} s")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise ProbeError(f"{what} exited during start-up: {_stderr_tail(proc)}")
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    try:
        return json.loads(line), rest
    except json.JSONDecodeError:
        raise ProbeError(f"{what}: unexpected output {line[:200]!r}") from None


def _stderr_tail(proc: subprocess.Popen, wait: float = 2.0) -> str:
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        return "(still running)"
    err = proc.stderr.read() if proc.stderr is not None else b""
    text = err.decode(errors="replace").strip() if isinstance(err, bytes) else str(err).strip()
    return f"exit {proc.returncode}: {text.splitlines()[-1] if text else 'no error output'}"
