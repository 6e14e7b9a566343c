"""A private OpenSSH server on 127.0.0.2 playing "server 2" of a two-server cluster.

Its own config (PermitTunnel yes, root by key only, ListenAddress 127.0.0.2), host key, client
key, known_hosts and pid file live in one temporary directory; `stop` kills it by its pid.
`ssh_config` is the client configuration routerlab's cluster uses to reach it."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

SERVER = "127.0.0.2"
SSHD = "/usr/sbin/sshd"


def missing() -> str | None:
    """Why no loopback sshd can run here (None: it can)."""
    for prog in (SSHD, "/usr/bin/ssh", "/usr/bin/ssh-keygen"):
        if not os.path.exists(prog):
            return f"{prog} not installed (Debian openssh-server/openssh-client; scripts/setup.sh installs them)"
    if shutil.which("sudo") is None:
        return "sudo not installed (Mininet's cluster code runs sudo -E mnexec; scripts/setup.sh installs it)"
    if os.geteuid() != 0:
        return "needs root (root ssh, namespaces)"
    return None


def free_port() -> int:
    """Port 22 on SERVER when free (as on a real server), else one the kernel picks: another
    sshd there (say, a concurrent test's) must never be mistaken for ours."""
    for port in (22, 0):
        with socket.socket() as s:
            try:
                s.bind((SERVER, port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise RuntimeError(f"no free port on {SERVER}")


class LoopbackSshd:
    def __init__(self, tmp: Path, port: int | None = None):
        self.dir = tmp
        self.port = port if port is not None else free_port()
        self.proc: subprocess.Popen | None = None
        self.ssh_config = tmp / "ssh_config"

    def start(self) -> LoopbackSshd:
        d = self.dir
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        for key in ("host_key", "client_key"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / key)], check=True)
        (d / "authorized_keys").write_text((d / "client_key.pub").read_text())
        host_pub = (d / "host_key.pub").read_text().split()
        (d / "known_hosts").write_text(f"{SERVER} {host_pub[0]} {host_pub[1]}\n")
        (d / "sshd_config").write_text(
            f"ListenAddress {SERVER}\nPort {self.port}\nHostKey {d / 'host_key'}\n"
            f"PidFile {d / 'sshd.pid'}\nAuthorizedKeysFile {d / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitTunnel yes\nUseDNS no\nMaxSessions 200\nMaxStartups 100:30:200\nUsePAM no\n"
            "StrictModes no\nAcceptEnv LANG SHLVL\n")
        self.ssh_config.write_text(
            f"Host {SERVER}\n  User root\n  Port {self.port}\n  IdentityFile {d / 'client_key'}\n"
            f"  IdentitiesOnly yes\n  UserKnownHostsFile {d / 'known_hosts'}\n  StrictHostKeyChecking yes\n"
            "  LogLevel ERROR\n")
        os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(d / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(d / "sshd.log", "ab"))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(d / 'sshd.log').read_text()[-500:]}")
            try:
                socket.create_connection((SERVER, self.port), timeout=0.5).close()
                time.sleep(0.2)  # one that lost the race for the port exits right after
                if self.proc.poll() is None:
                    return self
                continue
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not listen within 10 s")

    def sessions(self) -> list[int]:
        """Its session processes (one per open ssh connection)."""
        if self.proc is None:
            return []
        try:
            return [int(p) for p in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            return []

    def stop(self) -> None:
        """Kill its sessions (connections it still holds), then the server itself, by pid."""
        for pid in self.sessions():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
