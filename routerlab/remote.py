"""Servers reached by root ssh (Mininet Cluster Edition): commands, namespaces and daemons
on another server, and the registry records that let `routerlab clean` remove them there.

Every command to a server goes through one shared ssh connection per server (OpenSSH's
ControlMaster, its socket under the state directory), the same connection Mininet's
RemoteMixin shells, the link tunnels and `routerlab clean` use. A `RemoteNetns` is a named
namespace on a server with `Netns`'s interface, so the daemon drivers start and query their
daemons there unchanged: `run` and `popen` wrap the `nsenter` command in ssh.

What a server holds is recorded in this machine's registry session as kind ``remote``
(server, what, name) before it is created: a namespace, a tap, a process (pid and start
time there), the ssh master, Mininet's ``~/.ssh/mn``.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import signal
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from routerlab import registry
from routerlab.netns import CommandError, Netns
from routerlab.ssh import LOCALHOST, SshHost, kill_netns_script

log = logging.getLogger(__name__)

__all__ = ["LOCALHOST", "RemoteNetns", "RemoteProcess", "SshServer"]


class SshServer(SshHost):
    """A server of a running cluster: `SshHost` plus the registry records of what is made there."""

    def connect(self) -> None:
        """Open the shared connection (recorded, so `routerlab clean` closes it) and check
        that root may act there: a clear error instead of a hung build."""
        registry.session().add("remote", f"{self.host}/master", server=self.host, what="master",
                               rname=self.control_path, ssh_config=self.config)
        # socat reaches FRR's vty sockets there, python3 writes ExaBGP's command FIFO
        r = self.run("id -u && command -v mnexec sudo ip nsenter socat python3 >/dev/null && echo ok",
                     check=False, timeout=30)
        if r.returncode != 0 or r.stdout.split() != ["0", "ok"]:
            raise CommandError(["ssh", self.host], r.returncode,
                               (r.stderr or r.stdout or "no answer").strip()
                               + " (root ssh with a key, and mnexec, sudo, ip, nsenter, socat, "
                               "python3 installed? scripts/setup.sh installs them)")

    def close(self) -> None:
        """End the shared connection (its master process exits)."""
        self.close_master()
        registry.session().release("remote", f"{self.host}/master")

    def record(self, what: str, name: str, **attrs: Any) -> str:
        """Record a resource about to be created on the server; returns its registry key."""
        key = f"{self.host}/{what}/{name}"
        registry.session().add("remote", key, server=self.host, what=what, rname=name,
                               ssh_config=self.config, **attrs)
        return key

    def release(self, what: str, name: str) -> None:
        registry.session().release("remote", f"{self.host}/{what}/{name}")


class RemoteProcess:
    """A process started on a server through ssh: the `subprocess.Popen` interface the
    daemon drivers use. `pid` is its pid there; it lives exactly as long as its ssh session
    (the remote command execs it), so `poll` and `wait` need no round trip; signals go by ssh."""

    #: its registry records (the pid on the server, the ssh here) go when it ends (`_ended`)
    releases_itself = True

    def __init__(self, server: SshServer, ssh: subprocess.Popen, pid: int):
        self.server = server
        self.ssh = ssh
        self.pid = pid
        self.args = ssh.args
        self._released = False

    def __repr__(self) -> str:
        return f"<RemoteProcess {self.server.host}:{self.pid}>"

    @property
    def returncode(self) -> int | None:
        return self.ssh.returncode

    def _ended(self) -> None:
        # its session ended: the process is gone (or, if only the connection broke, it is
        # still inside its recorded namespace, which `routerlab clean` empties)
        if not self._released:
            self._released = True
            self.server.release("process", str(self.pid))
            registry.session().release_process(self.ssh.pid)  # recorded here by `popen`

    def poll(self) -> int | None:
        rc = self.ssh.poll()
        if rc is not None:
            self._ended()
        return rc

    def wait(self, timeout: float | None = None) -> int:
        rc = self.ssh.wait(timeout)
        self._ended()
        return rc

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            self.server.run(["kill", f"-{int(sig)}", str(self.pid)], check=False, timeout=15)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            self.ssh.kill()


class RemoteNetns(Netns):
    """A named network namespace on a server, driven over ssh (`prefix` is the nsenter
    command as it runs *there*)."""

    def __init__(self, name: str, server: SshServer, *, owned: bool = True):
        super().__init__(name, owned=owned)
        self.server = server
        self.machine = server  # its daemons' files are there

    def __repr__(self) -> str:
        return f"RemoteNetns({self.server.host}:{self.name!r})"

    @classmethod
    def create_on(cls, server: SshServer, name: str) -> RemoteNetns:
        """Create (and record) a named namespace on `server`, lo up, forwarding on."""
        if server.run(["test", "-e", str(Path("/var/run/netns") / name)], check=False).returncode == 0:
            raise FileExistsError(f"network namespace {name!r} already exists on {server.host} "
                                  "(left by another run? try `routerlab clean`)")
        server.record("netns", name)
        ns = cls(name, server)
        inside = shlex.join(ns.prefix())
        server.run(f"ip netns add {shlex.quote(name)} && {inside} sh -c "
                   + shlex.quote("ip link set lo up && sysctl -qw net.ipv4.ip_forward=1 && "
                                 "sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                                 "net.ipv6.conf.default.disable_ipv6=1 || true"))
        return ns

    def exists(self) -> bool:
        return self.server.exists(self.path)

    def run(self, args: Sequence[str], check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        full = self.prefix() + list(args)
        r = self.server.run(full, check=False, timeout=timeout, input=input)
        if check and r.returncode != 0:
            raise CommandError(full, r.returncode, r.stderr or r.stdout)
        return r

    def popen(self, args: Sequence[str], *, name: str = "",  # type: ignore[override]
              log_path: str | os.PathLike | None = None, **kwargs: Any) -> RemoteProcess:
        """Start a long-running process in the namespace on the server. Its output goes to
        `log_path` *there* (where the daemon's other files are); the remote shell reports
        its pid, then execs it."""
        env = kwargs.pop("env", None)
        changed = [f"{k}={v}" for k, v in (env or {}).items() if os.environ.get(k) != v]
        argv = self.prefix() + (["env", *changed] if changed else []) + list(args)
        redirect = f" >>{shlex.quote(str(log_path))} 2>&1" if log_path is not None else ""
        remote = f"echo $$ >&2; exec {shlex.join(argv)}{redirect}"
        out: Any = kwargs.pop("stdout", subprocess.DEVNULL)
        ssh = subprocess.Popen(self.server.command(remote), stdin=subprocess.DEVNULL,
                               stdout=out, stderr=subprocess.PIPE, start_new_session=True)
        registry.session().add_process(ssh.pid, f"ssh:{self.server.host}:{name}")
        assert ssh.stderr is not None
        line = ssh.stderr.readline().decode().strip()  # the stderr pipe stays open: ssh -q is silent
        if not line.isdigit():
            ssh.wait(10)
            raise CommandError(["ssh", self.server.host, remote], ssh.returncode or -1,
                               line or "no pid from the server")
        pid = int(line)
        self.server.record("process", str(pid), pid=pid, start=self.server.start_time(pid),
                           label=name)
        return RemoteProcess(self.server, ssh, pid)

    def pids(self) -> list[int]:
        out = self.server.run(["ip", "netns", "pids", self.name], check=False).stdout.split()
        return [int(p) for p in out if p.isdigit()]

    def delete(self) -> None:
        """Kill what runs inside, then delete the namespace on the server."""
        if not self.owned:
            return
        self.server.run(kill_netns_script(self.name), check=False)
        self.server.release("netns", self.name)
