"""Mininet node classes: hosts and routers in *named* namespaces, userspace OVS switches.

Mininet's own nodes live in anonymous namespaces that only the shell's pid pins. routerlab
needs named ones (``/var/run/netns/NAME``) so daemons can be started with nsenter, queried
with pyroute2, migrated with CRIU, and found again by ``routerlab clean`` after a SIGKILL.
Everything these classes create is recorded in the registry before it exists.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from mininet.link import TCIntf, TCLink
from mininet.node import Node, OVSSwitch

from routerlab import registry
from routerlab.netns import Netns, set_offload

log = logging.getLogger(__name__)


class NetnsNode(Node):
    """A Mininet node whose shell runs in a named network namespace owned by routerlab."""

    def __init__(self, name: str, netns_name: str | None = None, **params: Any):
        self.netns_name = netns_name or name
        self.netns: Netns | None = None
        self._wrap_shell = False
        super().__init__(name, inNamespace=True, **params)

    def startShell(self, mnopts: str | None = None) -> None:
        self.netns = Netns.create(self.netns_name)
        self._wrap_shell = True
        try:
            super().startShell(mnopts)
        finally:
            self._wrap_shell = False
        registry.session().add_process(self.pid, f"shell:{self.name}")
        # An interactive bash ignores SIGTERM: `routerlab clean` then waited its full 3 s
        # grace period for the shells before SIGKILL, whatever the network's size.
        self.cmd("trap 'exit 0' TERM")

    def _popen(self, cmd: list[str], **params: Any):
        if self._wrap_shell and cmd and cmd[0] == "mnexec":
            assert self.netns is not None  # startShell() creates it before setting _wrap_shell
            # Mininet asks mnexec for a fresh namespace ('n'); enter the named one instead.
            opts = cmd[1].replace("n", "")
            cmd = ["mnexec", opts, *self.netns.prefix(), *cmd[2:]]
        return super()._popen(cmd, **params)

    def popen(self, *args: Any, **kwargs: Any):
        p = super().popen(*args, **kwargs)
        registry.session().add_process(p.pid, f"{self.name}:{args[0] if args else ''}")
        return p

    def terminate(self) -> None:
        super().terminate()
        if self.netns is not None:
            self.netns.delete()
            self.netns = None


class HostNode(NetnsNode):
    """An end host that sources and sinks probe and iperf traffic (Mininet's ``defaultRoute``
    parameter takes ``"via GATEWAY"``)."""


class RouterNode(NetnsNode):
    """A router: a named namespace running one routing daemon (a routerlab daemon driver).

    ``daemon`` is a driver from ``routerlab.daemons`` rendered from the router's spec; it is
    started by `start_daemon` after the links exist and stopped by `terminate`."""

    def __init__(self, name: str, daemon: Any = None, loopback: str | None = None, **params: Any):
        self.daemon = daemon
        self.loopback = loopback
        super().__init__(name, **params)

    def config(self, **params: Any):
        r = super().config(**params)
        if self.loopback:
            # No dummy link type on this kernel: router loopbacks live on lo.
            self.cmd(f"ip addr replace {self.loopback} dev lo")
        return r

    def start_daemon(self, run_dir: Path, timeout: float | None = None) -> None:
        if self.daemon is None:
            return
        # (the driver makes `run_dir` on the namespace's machine, which may be another server)
        self.daemon.start(self.netns, run_dir, timeout=timeout)

    def terminate(self) -> None:
        if self.daemon is not None:
            try:
                self.daemon.stop()
            except Exception as e:  # a daemon that already died must not block teardown
                log.warning("%s: stopping %s: %s", self.name, type(self.daemon).__name__, e)
        super().terminate()


class UserspaceSwitch(OVSSwitch):
    """An OVS switch on the userspace datapath, OpenFlow 1.3, recorded for cleanup.

    Mininet switches always live in the root namespace; the bridge and its ports are
    registered so a killed run leaves nothing behind."""

    def __init__(self, name: str, **params: Any):
        params.setdefault("datapath", "user")
        params.setdefault("protocols", "OpenFlow13")
        params.setdefault("inband", False)
        super().__init__(name, **params)

    def start(self, controllers: list) -> None:
        if not registry.ovs_bridge_exists(self.name):
            registry.session().add("bridge", self.name)
        super().start(controllers)

    def stop(self, deleteIntfs: bool = True) -> None:  # Mininet's camelCase API
        super().stop(deleteIntfs)
        registry.session().release("bridge", self.name)


class OffloadOffIntf(TCIntf):
    """A TC interface with checksum offload off (the userspace datapath does not fill
    checksums in) and shaping only when asked for."""

    def config(self, **params: Any):
        params.setdefault("txo", False)
        params.setdefault("rxo", False)
        return super().config(**params)


class RegisteredLink(TCLink):
    """A veth link whose root-namespace ends are recorded before they are created."""

    def __init__(self, node1: Node, node2: Node, **params: Any):
        params.setdefault("intf", OffloadOffIntf)
        super().__init__(node1, node2, **params)

    @classmethod
    def makeIntfPair(cls, intfname1: str, intfname2: str, addr1=None, addr2=None,  # Mininet's API
                     node1: Node | None = None, node2: Node | None = None, deleteIntfs: bool = True):
        root_ends = [name for name, node in ((intfname1, node1), (intfname2, node2))
                     if node is None or not node.inNamespace]
        for name in root_ends:
            registry.session().add("link", name)
        pair = super().makeIntfPair(intfname1, intfname2, addr1, addr2, node1, node2,
                                    deleteIntfs=False)
        for name in root_ends:
            registry.session().link_created(name)
        return pair


def offload_off(node: Node) -> None:
    """Turn checksum offload off on every interface of a node."""
    for intf in node.intfList():
        if intf.name != "lo":
            set_offload(intf.name, node.netns if isinstance(node, NetnsNode) else None)
