"""Mininet Cluster Edition: one routerlab network spread over several servers.

A topology that places nodes on servers (a `server:` per node, or a placer in `params`, see
routerlab.topology.placement) is built by `ClusterNetwork`, a `Network` on Mininet's
`MininetCluster`. Routers and hosts are routerlab's nodes with Mininet's `RemoteMixin`: a
node on another server has its named namespace, its shell and its daemons *there*, every
command going over the shared root ssh connection to that server (routerlab.remote).
A link between two servers is a `TunnelLink`: Mininet's `RemoteSSHLink` (an ssh
``-w`` Ethernet tunnel between two taps) with a tap of its own at each end (stock code names
both ``tap9``, which collides when two "servers" share a kernel), or `RemoteGRELink` where
both kernels have gretap. Checksum offload is off on every interface, taps included.

Never called here: `net.iperf()` (runs ``killall -9 iperf`` machine-wide) and
`mininet.clean.cleanup()` (makes cluster.py run ``mn -c`` on every server). Everything
the cluster creates, here and there, is in the registry before it exists.
"""
from __future__ import annotations

import contextlib
import itertools
import logging
import os
import random
import subprocess
from pathlib import Path
from typing import Any

from mininet.examples.cluster import ClusterCleanup, MininetCluster, RemoteGRELink, RemoteLink, RemoteMixin
from mininet.link import Link
from mininet.node import Node
from mininet.util import decode

from routerlab import registry
from routerlab.errors import UserError
from routerlab.netns import Netns
from routerlab.network import Network
from routerlab.nodes import HostNode, NetnsNode, OffloadOffIntf, RegisteredLink, RouterNode, UserspaceSwitch
from routerlab.remote import LOCALHOST, RemoteNetns, SshServer
from routerlab.topology import Topology

log = logging.getLogger(__name__)


class ClusterNode(RemoteMixin):
    """Mininet's RemoteMixin on a routerlab node: on another server its named namespace is
    made there (`RemoteNetns`) and its shell runs there through the shared ssh connection."""

    ssh: SshServer | None
    netns: Netns | None  # (NetnsNode's)
    netns_name: str
    _wrap_shell: bool

    def __init__(self, name: str, server: str = LOCALHOST, ssh_config: str | None = None,
                 **params: Any):
        self.ssh = SshServer(server, ssh_config) if server != LOCALHOST else None
        # RemoteMixin builds its ssh command from sshbase: ours carries the ssh_config and the
        # shared connection ('-tt' kept: RemoteMixin removes it for popen)
        self.sshbase = ["ssh", *self.ssh.options(), "-tt"] if self.ssh else list(RemoteMixin.sshbase)
        super().__init__(name, server=server, user="root", **params)
        # RemoteMixin queued this server for Mininet's cleanup(), which would run `mn -c`
        # there (killing every Mininet on it): nothing of ours may reach that list
        ClusterCleanup.serveruser.clear()

    def startShell(self, mnopts: str | None = None) -> None:
        if self.ssh is None:
            super().startShell(mnopts)
            return
        self.netns = RemoteNetns.create_on(self.ssh, self.netns_name)
        self._wrap_shell = True
        try:
            Node.startShell(self, mnopts="-c")
        finally:
            self._wrap_shell = False
        registry.session().add_process(self.shell.pid, f"ssh-shell:{self.server}:{self.name}")
        self.sendCmd("echo $$")
        self.pid = int(self.waitOutput())

    def _popen(self, cmd: Any, **params: Any):
        if self.ssh is None:
            # here: routerlab's own node (RemoteMixin's setpgrp would make `mnexec -d` fork,
            # and popen would return at once)
            params.pop("sudo", None)
            params.pop("tt", None)
            return NetnsNode._popen(self, cmd.split() if isinstance(cmd, str) else cmd, **params)
        if self._wrap_shell and cmd and cmd[0] == "mnexec" and self.netns is not None:
            # the shell enters the node's named namespace on its server (not a fresh one)
            cmd = ["mnexec", cmd[1].replace("n", ""), *self.netns.prefix(), *cmd[2:]]
        return super()._popen(cmd, **params)


class ClusterHost(ClusterNode, HostNode):
    """A routerlab host that may run on another server."""


class ClusterRouter(ClusterNode, RouterNode):
    """A routerlab router that may run on another server: its daemon starts, and is
    queried, in its namespace there (the driver sees a `RemoteNetns`)."""


_tap_numbers = itertools.count(random.randrange(1000, 60000, 100))


class TunnelLink(RemoteLink):
    """A link that may cross servers. Within one server: routerlab's registered veth pair.
    Across two: an ssh Ethernet tunnel (`ssh -w A:B`) between tap A here and tap B there
    (each end its own number), or gretap when both servers' kernels have it (`gre=True`)."""

    def __init__(self, node1: Node, node2: Node, **params: Any):
        params.setdefault("intf", OffloadOffIntf)
        self.taps: list[tuple[ClusterNode, str]] = []
        super().__init__(node1, node2, **params)

    def makeIntfPair(self, intfname1: str, intfname2: str, addr1: Any = None, addr2: Any = None,
                     node1: Any = None, node2: Any = None, deleteIntfs: bool = True):
        node1 = self.node1 if node1 is None else node1
        node2 = self.node2 if node2 is None else node2
        if getattr(node1, "server", LOCALHOST) == getattr(node2, "server", LOCALHOST):
            return RegisteredLink.makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2,
                                               deleteIntfs=deleteIntfs)
        if self.gre:
            return RemoteGRELink.makeTunnel(self, node1, node2, intfname1, intfname2, addr1, addr2)
        self.tunnel = self.makeTunnel(node1, node2, intfname1, intfname2, addr1, addr2)
        return self.tunnel

    gre = False

    def makeTunnel(self, node1: Any, node2: Any, intfname1: str, intfname2: str,
                   addr1: Any = None, addr2: Any = None):
        """Mininet's ssh tunnel, with a tap number of its own at each end."""
        if node2.server == LOCALHOST:  # the tunnel's ssh runs on node1's side, towards node2
            return self.makeTunnel(node2, node1, intfname2, intfname1, addr2, addr1)
        ends = []
        for node in (node1, node2):
            n = next(_tap_numbers)
            while "does not exist" not in node.rcmd(f"ip link show tap{n}"):  # taken: the next
                n = next(_tap_numbers)
            tap = f"tap{n}"
            _record_tap(node, tap)
            out = node.rcmd(f"ip tuntap add dev {tap} mode tap user root")
            if out.strip():
                raise UserError(f"tunnel {node1}-{node2}: cannot create {tap} on {node.server}: {out.strip()}")
            self.taps.append((node, tap))
            ends.append(n)
        dest = node2.ssh.dest
        cmd = ["ssh", "-n", *node2.ssh.options(shared=False), "-o", "Tunnel=Ethernet", "-w", f"{ends[0]}:{ends[1]}",
               dest, "echo @"]
        self.cmd = cmd
        if node1.ssh is None:  # ssh itself (RemoteMixin would wrap it in sudo, which does not
            # pass a SIGTERM on once it is gone: the tunnel would outlive its link)
            tunnel = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True)
        else:
            tunnel = node1.rpopen(cmd, sudo=False)
        registry.session().add_process(tunnel.pid, f"tunnel:{node1}-{node2}")
        assert tunnel.stdout is not None
        ch = decode(tunnel.stdout.read(1))
        if ch != "@":
            rest = decode(tunnel.stdout.read()) if tunnel.poll() is not None else ""
            tunnel.kill()
            raise UserError(f"ssh tunnel {node1.server}:tap{ends[0]} <-> {node2.server}:tap{ends[1]} "
                            f"failed (sshd needs PermitTunnel yes): {(ch + rest).strip() or 'no output'}")
        for (node, tap), intf, addr in zip(self.taps, (intfname1, intfname2), (addr1, addr2), strict=True):
            if not self.moveIntf(tap, node):
                raise UserError(f"cannot move {tap} into {node} on {node.server}")
            out = node.cmd(f"ip link set {tap} name {intf}" + (f" address {addr}" if addr else ""))
            if out.strip():
                raise UserError(f"cannot rename {tap} to {intf} in {node}: {out.strip()}")
            _release_tap(node, tap)  # inside the node's namespace now: it goes with it
        return tunnel

    def stop(self) -> None:
        tunnel = self.tunnel if self.tunnel not in (None, 1) else None
        super().stop()  # terminates the tunnel's ssh, deletes both ends
        if tunnel is not None:
            try:
                tunnel.wait(5)
            except subprocess.TimeoutExpired:
                tunnel.kill()
                tunnel.wait(5)
            registry.session().release_process(tunnel.pid)


def _record_tap(node: Any, tap: str) -> None:
    if node.ssh is not None:
        node.ssh.record("link", tap)
    else:
        registry.session().add("link", tap)


def _release_tap(node: Any, tap: str) -> None:
    if node.ssh is not None:
        node.ssh.release("link", tap)
    else:
        registry.session().release("link", tap)


class GreTunnelLink(TunnelLink):
    """A `TunnelLink` on gretap (Mininet's RemoteGRELink), for kernels that have it."""

    gre = True
    GRE_KEY = 0  # RemoteGRELink.makeTunnel numbers its tunnels on the class


def kernel_has_gretap(server: SshServer | None) -> bool:
    """Whether `server`'s kernel (None: this one) can make a gretap link: tried, then removed."""
    name = f"rlgre{os.getpid() % 100000}"
    script = (f"ip link add {name} type gretap local 127.0.0.1 remote 127.0.0.1 key 1 2>/dev/null"
              f" && ip link del {name} && echo yes")
    if server is None:
        import subprocess

        return subprocess.run(["sh", "-c", script], capture_output=True, text=True).stdout.strip() == "yes"
    return server.run(script, check=False).stdout.strip() == "yes"


class ClusterNetwork(Network):
    """A `Network` whose nodes are placed on servers (`Topology.placement`), built on
    Mininet's `MininetCluster`. `ssh_config`: an ssh_config file for reaching the servers as
    root (keys, port, known hosts); None: $ROUTERLAB_SSH_CONFIG, else root's own."""

    host_cls = ClusterHost
    router_cls = ClusterRouter

    def __init__(self, topo: Topology, *, prefix: str = "rl-", run_root: Path | None = None,
                 ssh_config: str | os.PathLike | None = None, link: str = "auto"):
        super().__init__(topo, prefix=prefix, run_root=run_root)
        placement = topo.placement() or {n: LOCALHOST for n in topo.nodes}
        self.placement = placement
        ssh_config = ssh_config or os.environ.get("ROUTERLAB_SSH_CONFIG")  # else root's own
        self.ssh_config = str(ssh_config) if ssh_config else None
        for name, server in placement.items():
            if topo.node(name).role == "switch" and server != LOCALHOST:
                raise UserError(f"switch {name}: switches (LANs) run on localhost in cluster mode, "
                                f"not on {server}")
        self.servers = [LOCALHOST] + sorted({s for s in placement.values() if s != LOCALHOST})
        self.remote = {s: SshServer(s, self.ssh_config) for s in self.servers if s != LOCALHOST}
        self.link_kind = link
        self._made_dirs: list[str] = []
        self.net = None  # made in _build, once the servers answer

    def node_params(self, name: str) -> dict[str, Any]:
        return {"server": self.placement[name], "ssh_config": self.ssh_config}

    def _choose_link(self) -> type[Link]:
        if self.link_kind == "ssh":
            return TunnelLink
        gre = all(kernel_has_gretap(s) for s in [None, *self.remote.values()])
        if self.link_kind == "gre" and not gre:
            raise UserError("link kind gre: a server's kernel has no gretap")
        log.info("cross-server links: %s", "gretap" if gre else "ssh tunnels (no gretap in a kernel)")
        return GreTunnelLink if gre else TunnelLink

    def _build(self, say: Any) -> None:
        for srv in self.remote.values():
            say(f"connecting to {srv.host}", None)
            srv.connect()
        self.link_cls = self._choose_link()
        # MininetCluster runs `mkdir -p ~/.ssh/mn` (for control sockets we do not use): what
        # of it did not exist is ours to remove (when empty), deepest first
        ssh_dir = os.path.join(os.environ.get("HOME", "/root"), ".ssh")
        for d in (ssh_dir, os.path.join(ssh_dir, "mn")):
            if not os.path.isdir(d):
                registry.session().add("remote", f"localhost/dir/{d}", server=LOCALHOST, what="dir", rname=d)
                self._made_dirs.insert(0, d)
        self.net = MininetCluster(topo=None, build=False, controller=None, host=ClusterHost,
                                  switch=UserspaceSwitch, link=self.link_cls, autoSetMacs=False,
                                  autoStaticArp=False, waitConnected=False, servers=self.servers,
                                  user="root", precheck=False,
                                  serverIP={s: RemoteMixin.findServerIP(s) if s != LOCALHOST else "127.0.0.1"
                                            for s in self.servers})
        super()._build(say)

    def stop(self) -> None:
        if self.net is not None:
            super().stop()
        for srv in self.remote.values():
            srv.close()
        for d in self._made_dirs:
            with contextlib.suppress(OSError):
                os.rmdir(d)
            registry.session().release("remote", f"localhost/dir/{d}")
        self._made_dirs = []

    def server_of(self, name: str) -> str:
        """Where node `name` runs."""
        return self.placement[name]
