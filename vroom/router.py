"""Physical routers (an OVS bridge with physical ports on the transport) and virtual routers
(a namespace running BIRD with the router's interfaces, bound to a physical router).

A VR's interfaces have the same names, ifindexes, MACs and addresses wherever it runs, so
its control plane can be moved by CRIU between namespaces at different physical routers:
`prepare_namespace` builds such a namespace at a physical router.
"""
from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from routerlab import registry
from routerlab.daemons import Daemon, FrrDaemon, RouterSpec, driver_for
from routerlab.netns import Netns, check_ifname, delete_link, run, set_offload
from routerlab.ovs import Bridge, add_patch_pairs, add_ports, del_ports

from .binding import PortBinding, PortMap
from .hypervisor import DataPlaneHypervisor
from .transport import Transport

log = logging.getLogger(__name__)

VR_IFINDEX_BASE = 100  # VR interface k has ifindex 100 + k in every namespace of the VR
DEL_PORT_SPACING_S = 0.03  # between port deletions (see `PhysicalRouter.del_vr_ports`)


@dataclass(frozen=True)
class VrInterface:
    """A VR interface: the same everywhere the VR runs."""

    name: str  # the Linux name inside the VR's namespace (the spec's interface name)
    index: int  # its number in the data plane (reg1/reg2, tunnel VLAN ids)
    ifindex: int
    mac: str
    address: str | None = None  # "10.0.0.1/30"


@dataclass
class PhysPort:
    name: str  # bridge-side interface
    ofport: int  # on the physical router's bridge
    transport_name: str  # transport-side interface
    transport_port: int  # on the transport bridge


class PhysicalRouter:
    """An OVS bridge (the data plane) with physical ports on the transport, hosting VRs."""

    def __init__(self, name: str, prefix: str, n_ports: int, transport: Transport):
        self.name = name
        self.prefix = prefix
        self.n_ports = n_ports
        self.transport = transport
        self.bridge_name = check_ifname(f"{prefix}{name}")
        self.bridge: Bridge | None = None
        self.phys: dict[int, PhysPort] = {}  # bridge ofport -> port
        self.portmap = PortMap([])
        self.vr_ports: dict[tuple[str, str], tuple[str, int]] = {}  # (vr, ifname) -> (root, ofport)
        self.hypervisors: dict[str, DataPlaneHypervisor] = {}
        self.tunnels: dict[str, tuple[str, int]] = {}  # peer PR -> (ifname, ofport)
        # VRs gone elsewhere whose namespace and ports stay here (see `park`)
        self.parked: dict[str, Netns] = {}

    def __repr__(self) -> str:
        return f"<PhysicalRouter {self.name} ({self.bridge_name}, {self.n_ports} ports)>"

    def create(self) -> PhysicalRouter:
        self.bridge = Bridge.create(self.bridge_name, fail_mode="secure")
        # patch ports, not veths: a packet crossing the router costs ovs-vswitchd one
        # translation instead of a trip through the kernel per bridge (see add_patch_pairs)
        pairs = [(self.bridge_name, check_ifname(f"{self.prefix}{self.name}p{i}"),
                  self.transport.name, check_ifname(f"{self.prefix}{self.name}q{i}"))
                 for i in range(self.n_ports)]
        for (_, a, _, b), (ofp, tp) in zip(pairs, add_patch_pairs(pairs)):
            self.transport.ports[b] = tp
            self.phys[ofp] = PhysPort(a, ofp, b, tp)
        self.portmap = PortMap(sorted(self.phys))
        return self

    def free_ports(self) -> int:
        return len(self.portmap.free())

    def add_vr_ports(self, vr: VirtualRouter, ns: Netns) -> dict[str, int]:
        """Create the VR's interfaces inside `ns` and attach each to this bridge."""
        assert self.bridge is not None
        roots = []
        for itf in vr.interfaces:
            root = check_ifname(f"{self.prefix}v{vr.vr_id}{self.name}{itf.index}")
            registry.session().add("link", root)
            # inside the VR namespace, with the VR's ifindex and MAC; the peer in the root ns
            ns.run(["ip", "link", "add", "name", itf.name, "index", str(itf.ifindex),
                    "address", itf.mac, "type", "veth", "peer", "name", root, "netns", "1"])
            set_offload(itf.name, ns)
            set_offload(root)
            run(["ip", "link", "set", root, "up"])
            ns.ip("link", "set", itf.name, "up")
            roots.append(root)
        out = {}
        for itf, root, ofp in zip(vr.interfaces, roots, add_ports(self.bridge_name, roots)):
            self.vr_ports[(vr.name, itf.name)] = (root, ofp)
            out[itf.name] = ofp
        return out

    # Parking. Every port added to or deleted from a userspace bridge, and every carrier
    # change of a port, makes ovs-vswitchd reconfigure every bridge in its main thread,
    # which also forwards for every bridge on the machine: measured in the vroom lab at
    # 20,000 packets/s, a VR's namespace made at the target and deleted at the source (its
    # ports created, moved or deleted) held the probes 90-210 ms (the main thread stalled
    # 40-85 ms each time). So when a VR leaves, its namespace here is kept, idle, with its
    # interfaces and their ports (the processes are gone, the data plane holds no flow
    # for it), and it is used again when the VR comes back: nothing the bridge sees
    # changes. A spare reserves the namespace before a maintenance window.
    def reserve_vr_ports(self, vr: VirtualRouter, ns_name: str) -> None:
        """Make the VR's namespace and ports here ahead of a move (parked until it comes)."""
        if vr.name in self.parked or any(k[0] == vr.name for k in self.vr_ports):
            return
        self.parked[vr.name] = prepare_namespace(vr, self, ns_name)

    def park(self, vr: VirtualRouter, ns: Netns) -> None:
        """The VR left: keep its namespace `ns` here (its processes killed) with its ports."""
        registry.kill_pids(ns.pids())
        self.parked[vr.name] = ns

    def take_parked(self, vr: VirtualRouter, ns_name: str) -> Netns | None:
        """The VR's parked namespace here, if it is usable as its namespace `ns_name`
        (same interfaces and ifindexes: CRIU's sockets depend on them); else None, and
        the parked namespace and its ports are removed."""
        ns = self.parked.pop(vr.name, None)
        if ns is None:
            return None
        problem = None
        if ns.name != ns_name or not ns.exists():
            problem = f"namespace {ns.name} (wanted {ns_name})"
        else:
            shown = "\n" + ns.ip("-o", "link", "show").stdout
            for itf in vr.interfaces:
                if f"\n{itf.ifindex}: {itf.name}@" not in shown:
                    problem = f"{itf.name} is not ifindex {itf.ifindex}"
        if problem is None:
            return ns
        log.warning("%s: the parked namespace of %s is not reusable (%s): making a new one",
                    self.name, vr.name, problem)
        self.del_vr_ports(vr)
        ns.delete()
        return None

    def del_vr_ports(self, vr: VirtualRouter, *, spacing_s: float = DEL_PORT_SPACING_S) -> None:
        """Detach and delete the VR's ports here.

        Every port change stalls ovs-vswitchd's userspace datapath, i.e. every bridge on
        the machine (packets are held, not lost): measured in a migration's cleanup,
        deleting a VR's three ports in one transaction held traffic through the other
        routers for 30-60 ms; one port per transaction holds it about 10 ms each, and
        `spacing_s` between them lets the queues drain, so no packet waits long."""
        keys = [k for k in self.vr_ports if k[0] == vr.name]
        roots = [self.vr_ports.pop(k)[0] for k in keys]
        for i, root in enumerate(roots):
            if self.bridge is not None:
                if i and spacing_s:
                    time.sleep(spacing_s)
                del_ports(self.bridge_name, [root])
        for root in roots:
            delete_link(root)

    def vr_port(self, vr: str, ifname: str) -> int | None:
        got = self.vr_ports.get((vr, ifname))
        return got[1] if got else None

    def bindings(self, vr: VirtualRouter, *, with_vr_ports: bool = True,
                 here: set[str] | None = None) -> list[PortBinding]:
        """The VR's interface bindings here (its physical ports from the port map);
        `here` names the interfaces whose circuits are patched to this router (None: all)."""
        ports = self.portmap.of(vr.name)
        out = []
        for itf in vr.interfaces:
            if itf.name not in ports:
                raise KeyError(f"{vr.name}:{itf.name} is not bound at {self.name}")
            out.append(PortBinding(itf.name, itf.index, itf.mac, ports[itf.name],
                                   self.vr_port(vr.name, itf.name) if with_vr_ports else None,
                                   here is None or itf.name in here))
        return out

    def transport_port(self, vr: str, ifname: str) -> int:
        return self.phys[self.portmap.of(vr)[ifname]].transport_port

    def delete(self) -> None:
        for hv in list(self.hypervisors.values()):
            hv.close()
        self.hypervisors.clear()
        for root, _ in list(self.vr_ports.values()):
            delete_link(root)
        self.vr_ports.clear()
        for ns in self.parked.values():
            ns.delete()
        self.parked.clear()
        # patch ports go with their bridges; the transport's ends go with the transport
        self.phys.clear()
        self.tunnels.clear()
        if self.bridge is not None:
            self.bridge.delete()
            self.bridge = None


@dataclass
class VirtualRouter:
    """A virtual router: its spec, identity, daemon and where it currently runs."""

    name: str
    vr_id: int
    spec: RouterSpec
    impl: str = "bird"
    interfaces: list[VrInterface] = field(default_factory=list)
    run_dir: Path | None = None
    daemon: Daemon | None = None
    pr: PhysicalRouter | None = None
    ns: Netns | None = None
    migrations: int = 0

    def __repr__(self) -> str:
        where = f" at {self.pr.name}" if self.pr else ""
        return f"<VirtualRouter {self.name} (id {self.vr_id}){where}>"

    @classmethod
    def from_spec(cls, name: str, vr_id: int, spec: RouterSpec, impl: str = "bird",
                  mac_salt: int | None = None) -> VirtualRouter:
        """Interfaces numbered in spec order, MACs 02:76:SS:ID:00:kk (SS: a per-network salt)."""
        salt = secrets.randbelow(256) if mac_salt is None else mac_salt
        itfs = [VrInterface(i.name, k, VR_IFINDEX_BASE + k,
                            f"02:76:{salt:02x}:{vr_id:02x}:00:{k:02x}", i.address)
                for k, i in enumerate(spec.interfaces)]
        return cls(name, vr_id, spec, impl, itfs)

    def interface(self, name: str) -> VrInterface:
        for i in self.interfaces:
            if i.name == name:
                return i
        raise KeyError(f"{self.name} has no interface {name}")

    def make_daemon(self) -> Daemon:
        """The VR's routing daemon. FRR's daemons (zebra, ospfd, bgpd, staticd share zserv
        Unix sockets) run as one process tree, so CRIU moves them as one."""
        cls = driver_for(self.impl)
        if cls is FrrDaemon:
            return FrrDaemon(self.spec, process_tree=True)
        return cls(self.spec)

    @property
    def pid(self) -> int | None:
        if self.daemon is None:
            return None
        pids = self.daemon.pids
        return next(iter(pids.values()), None) if pids else None


def prepare_namespace(vr: VirtualRouter, pr: PhysicalRouter, ns_name: str) -> Netns:
    """A namespace at `pr` with the VR's interfaces (same names, ifindexes, MACs, addresses)
    attached to `pr`'s bridge, loopback address on lo, interfaces up: the VR's parked
    namespace at `pr` when it has one (see `PhysicalRouter.park`), else a new one."""
    parked = pr.take_parked(vr, ns_name)
    ns = parked or Netns.create(ns_name)
    try:
        if parked is None:
            pr.add_vr_ports(vr, ns)
        for itf in vr.interfaces:  # a parked namespace may have lost one (a failed move)
            if itf.address:
                ns.ip("addr", "replace", itf.address, "dev", itf.name)
            ns.ip("link", "set", itf.name, "up")
        if vr.spec.loopback:
            ns.ip("addr", "replace", vr.spec.loopback, "dev", "lo")
    except BaseException:
        pr.del_vr_ports(vr)
        ns.delete()
        raise
    return ns
