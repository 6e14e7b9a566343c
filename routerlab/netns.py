"""Named network namespaces, veth pairs and processes inside namespaces.

Namespaces are *named* (``/var/run/netns/NAME``) so that ``ip netns``, ``nsenter``, pyroute2
(``IPRoute(netns=NAME)``) and CRIU can all reach them. Processes are started with
``nsenter --net=...`` rather than ``ip netns exec``, which would also unshare a mount
namespace and break CRIU dumps. Everything is recorded in the registry before creation.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from routerlab import registry
from routerlab.machine import LOCAL, Machine

log = logging.getLogger(__name__)

NETNS_DIR = Path("/var/run/netns")
IFNAMSIZ = 15  # Linux interface names are at most 15 characters


class CommandError(RuntimeError):
    """A command failed; the message carries the command and its own error output."""

    def __init__(self, args: Sequence[str], returncode: int, output: str):
        self.cmd = list(args)
        self.returncode = returncode
        self.output = output
        tail = output.strip().splitlines()[-1] if output.strip() else "no output"
        super().__init__(f"{shlex.join(self.cmd)} failed (exit {returncode}): {tail}")


def run(args: Sequence[str], check: bool = True, timeout: float = 60,
        input: str | None = None) -> subprocess.CompletedProcess:
    """Run a command in the root namespace; raise CommandError with its stderr on failure."""
    r = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise CommandError(args, r.returncode, r.stderr or r.stdout)
    return r


def check_ifname(name: str) -> str:
    if not name or len(name) > IFNAMSIZ or "/" in name or " " in name:
        raise ValueError(f"bad interface name {name!r} (1-{IFNAMSIZ} chars, no '/' or space)")
    return name


class Netns:
    """A named network namespace that routerlab created (or adopted, see `adopt`)."""

    #: the machine it lives on: its daemons' files and config checks go through it
    #: (routerlab.machine; a namespace on another server has that server's)
    machine: Machine = LOCAL

    def __init__(self, name: str, *, owned: bool = True):
        self.name = name
        self.owned = owned

    def __repr__(self) -> str:
        return f"Netns({self.name!r})"

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    @classmethod
    def create(cls, name: str, *, lo_up: bool = True) -> Netns:
        """Create (and register) a named namespace; refuses one that already exists."""
        if (NETNS_DIR / name).exists():
            raise FileExistsError(
                f"network namespace {name!r} already exists (left by another run? "
                f"try `routerlab clean`)")
        registry.session().add("netns", name)
        run(["ip", "netns", "add", name])
        ns = cls(name)
        if lo_up:
            ns.run(["ip", "link", "set", "lo", "up"])
        # Forwarding on: routers route; IPv6 off keeps DAD and router solicitations quiet.
        ns.sysctl("net.ipv4.ip_forward", "1")
        ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1", check=False)
        ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1", check=False)
        return ns

    @classmethod
    def adopt(cls, name: str) -> Netns:
        """A handle on an existing namespace that routerlab does not own."""
        return cls(name, owned=False)

    def exists(self) -> bool:
        return self.path.exists()

    def prefix(self) -> list[str]:
        """Command prefix that runs a program inside this namespace (net only)."""
        return ["nsenter", f"--net={self.path}", "--"]

    def run(self, args: Sequence[str], check: bool = True, timeout: float = 60,
            input: str | None = None) -> subprocess.CompletedProcess:
        """Run a command inside the namespace and wait for it."""
        return run(self.prefix() + list(args), check=check, timeout=timeout, input=input)

    def popen(self, args: Sequence[str], *, name: str = "", log_path: str | os.PathLike | None = None,
              **kwargs) -> subprocess.Popen:
        """Start a long-running process inside the namespace and register it.

        Output goes to ``log_path`` when given (so a daemon that dies can be explained by its
        own words), else to the caller's pipes/kwargs."""
        # The child keeps its own copy of the log file's descriptor; ours is closed on return.
        with contextlib.ExitStack() as stack:
            if log_path is not None:
                f = stack.enter_context(open(log_path, "ab"))
                kwargs.setdefault("stdout", f)
                kwargs.setdefault("stderr", subprocess.STDOUT)
            kwargs.setdefault("stdin", subprocess.DEVNULL)
            # Own session: a Ctrl-C on the terminal reaches routerlab, which stops daemons in order.
            kwargs.setdefault("start_new_session", True)
            p = subprocess.Popen(self.prefix() + list(args), **kwargs)
            registry.session().add_process(p.pid, name or os.path.basename(args[0]))
        return p

    def sysctl(self, key: str, value: str, check: bool = True) -> None:
        self.run(["sysctl", "-qw", f"{key}={value}"], check=check)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return self.run(["ip", *args], check=check)

    def pids(self) -> list[int]:
        return registry.netns_pids(self.name)

    def delete(self) -> None:
        """Kill what runs inside, then delete the namespace (only if routerlab owns it)."""
        if not self.owned:
            return
        registry.kill_pids(self.pids())
        if self.exists():
            run(["ip", "netns", "del", self.name], check=False)
        registry.session().release("netns", self.name)


def create_veth(a: str, b: str, *, ns_a: Netns | None = None, ns_b: Netns | None = None,
                mac_a: str | None = None, mac_b: str | None = None, mtu: int | None = None,
                up: bool = True) -> None:
    """Create a veth pair a<->b, each end in the given namespace (None = root namespace).

    Both ends are first created under their final names inside their namespaces, so names
    only need to be unique per namespace; a root-namespace end is registered as a link."""
    check_ifname(a)
    check_ifname(b)
    root_end = a if ns_a is None else b if ns_b is None else None
    if root_end:
        registry.session().add("link", root_end)
    args = ["ip", "link", "add", "name", a]
    if mac_a:
        args += ["address", mac_a]
    if mtu:
        args += ["mtu", str(mtu)]
    args += ["type", "veth", "peer", "name", b]
    if mac_b:
        args += ["address", mac_b]
    if mtu:
        args += ["mtu", str(mtu)]
    args += ["netns", str(ns_b.path) if ns_b is not None else "1"]
    if ns_a is not None:
        ns_a.run(args)
    else:
        run(args)
    if root_end:
        registry.session().link_created(root_end)
    # The userspace datapath does not fill in checksums left to offload: turn it off.
    for name, ns in ((a, ns_a), (b, ns_b)):
        set_offload(name, ns)
        if up:
            (ns.ip if ns else _root_ip)("link", "set", name, "up")


def _root_ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run(["ip", *args], check=check)


def set_offload(ifname: str, ns: Netns | None = None) -> None:
    """Turn TX/RX checksum offload off (needed through the OVS userspace datapath)."""
    cmd = ["ethtool", "-K", ifname, "tx", "off", "rx", "off"]
    (ns.run(cmd, check=False) if ns else run(cmd, check=False))


def delete_link(name: str, ns: Netns | None = None) -> None:
    if ns is None:
        run(["ip", "link", "del", name], check=False)
        registry.session().release("link", name)
    else:
        ns.ip("link", "del", name, check=False)
