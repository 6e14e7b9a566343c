"""A private OpenSSH server on 127.0.0.2 playing "server 2" of a two-server cluster.

Its own config (PermitTunnel yes, root by key only, ListenAddress 127.0.0.2), host key, client
key, known_hosts and pid file live in one temporary directory; `stop` kills it by its pid.
`ssh_config` is the client configuration routerlab's cluster uses to reach it.

Like another machine, it has a /run of its own (`own_run`): it runs in a private mount
namespace with a fresh tmpfs on /run, so the routers' run directories (/run/routerlab/...),
the named namespaces (/run/netns) and everything else routerlab keeps there are not shared
with the machine running routerlab. A daemon file that routerlab read or wrote locally
instead of on the node's server would be missing on one side."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path

from routerlab.expect import ExpectTimeout, wait_for

SERVER = "127.0.0.2"
SSHD = "/usr/sbin/sshd"

# Run by `sh -c` in the new mount namespace (mounts private there: nothing propagates back):
# the copies of this machine's mounts below /run are detached first (the namespaces bound
# under /run/netns would otherwise stay alive while sshd runs, whoever deletes them here;
# a lazy unmount detaches a whole subtree, so the topmost suffice), then a fresh tmpfs
# covers /run; sshd's privilege-separation directory is made there.
OWN_RUN = ("awk '$5 ~ \"^/run/\" {print $5}' /proc/self/mountinfo | sort |"
           " awk 'top == \"\" || index($0, top \"/\") != 1 {top = $0; print}' |"
           " while read -r m; do umount -l \"$m\" 2>/dev/null; done;"
           " awk '$5 ~ \"^/run/\" {n++} END {exit n > 0}' /proc/self/mountinfo"
           " || { echo 'own /run: cannot detach the mounts below /run' >&2; exit 1; };"
           " mount -t tmpfs -o mode=755,size=512m routerlab-server2 /run && mkdir -p /run/sshd"
           " && exec \"$@\"")


def missing() -> str | None:
    """Why no loopback sshd can run here (None: it can)."""
    for prog in (SSHD, "/usr/bin/ssh", "/usr/bin/ssh-keygen", "/usr/bin/unshare"):
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
    def __init__(self, tmp: Path, port: int | None = None, *, own_run: bool = True):
        self.dir = tmp
        self.port = port if port is not None else free_port()
        self.own_run = own_run
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
        argv = [SSHD, "-D", "-e", "-f", str(d / "sshd_config")]
        if self.own_run:  # (unshare and sh exec: sshd keeps the pid we start)
            argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", OWN_RUN, "own-run", *argv]
        else:
            os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
        pidfile = d / "sshd.pid"
        pidfile.unlink(missing_ok=True)
        with open(d / "sshd.log", "ab") as log:
            self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log)
        proc = self.proc

        def listening() -> bool:
            # sshd writes its pid file once it has bound the port: our pid there means this
            # sshd listens (one that lost the race for the port exits without writing it)
            if proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(d / 'sshd.log').read_text()[-500:]}")
            try:
                return int(pidfile.read_text().split()[0]) == proc.pid
            except (OSError, ValueError, IndexError):
                return False

        try:
            wait_for(listening, 30, interval=0.05, what="sshd listening", retry_on=())
        except ExpectTimeout:
            self.stop()
            raise RuntimeError("sshd did not listen within 30 s") from None
        return self

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
