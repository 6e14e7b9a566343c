"""A VROOM network: transport, physical routers, virtual routers and their neighbours.

::

    net = VroomNetwork("tvr1a2b")
    net.add_physical_router("A", ports=4); net.add_physical_router("B", ports=4)
    vr = net.add_virtual_router("r1", spec)            # BIRD by default
    n1 = net.add_namespace("n1")                        # a neighbour (run what you like in it)
    net.connect("r1", "eth0", n1, "eth0")               # its link runs through the transport
    net.place("r1", "A")                                # start r1 at A: daemon, data plane, circuits
    net.stop()

Moving a placed VR is not this module's business: `vroom.migrate.migrate(net, "r1", "B")`
(live migration) and `vroom.baseline.restart_move(net, "r1", "B")` (the restart baseline)
operate on a network and record their reports in `net.history`.

Every name is derived from the prefix (at most 7 characters), so concurrent networks never
collide; everything is recorded in the registry before it is created.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from routerlab import registry
from routerlab.daemons import RouterSpec
from routerlab.netns import Netns, check_ifname
from routerlab.ovs import add_patch_pairs

from .hypervisor import DataPlaneHypervisor
from .router import PhysicalRouter, VirtualRouter, prepare_namespace
from .translate import MAX_VR_ID
from .transport import Transport

log = logging.getLogger(__name__)

MAX_PREFIX = 7


class VroomError(RuntimeError):
    """A VROOM operation was refused or failed; the message is one line."""


class VroomNetwork:
    """Builds and tears down a VROOM network; the unit migrations operate on."""

    def __init__(self, prefix: str, *, run_root: Path | None = None):
        if not 1 <= len(prefix) <= MAX_PREFIX or not prefix.isalnum():
            raise ValueError(f"prefix {prefix!r}: 1-{MAX_PREFIX} letters/digits")
        self.prefix = prefix
        self.run_root = (run_root or registry.STATE_DIR / "vroom") / prefix
        self.transport = Transport(check_ifname(f"{prefix}tr"))
        self.prs: dict[str, PhysicalRouter] = {}
        self.vrs: dict[str, VirtualRouter] = {}
        self.namespaces: dict[str, Netns] = {}
        # circuits: name -> its two ends, each ("ns", transport port) or ("vr", vr, ifname)
        self.links: dict[str, tuple[tuple, tuple]] = {}
        self.circuit_of: dict[tuple[str, str], str] = {}  # (vr, ifname) -> circuit name
        self._n_links = 0
        self._created = False
        self.history: list[Any] = []  # reports of the moves done (vroom.migrate, vroom.baseline)

    # ------------------------------------------------------------------ building
    def _ensure(self) -> None:
        if not self._created:
            registry.session().add("dir", str(self.run_root))
            self.run_root.mkdir(parents=True, exist_ok=True)
            self.transport.create()
            self._created = True

    def add_physical_router(self, name: str, ports: int = 4) -> PhysicalRouter:
        if name in self.prs:
            raise ValueError(f"physical router {name} exists")
        self._ensure()
        pr = PhysicalRouter(name, self.prefix, ports, self.transport)
        self.prs[name] = pr
        pr.create()
        return pr

    def add_virtual_router(self, name: str, spec: RouterSpec, impl: str = "bird",
                           vr_id: int | None = None) -> VirtualRouter:
        if name in self.vrs:
            raise ValueError(f"virtual router {name} exists")
        used = {v.vr_id for v in self.vrs.values()}
        vid = vr_id or next(i for i in range(1, MAX_VR_ID + 1) if i not in used)
        if vid in used:
            raise ValueError(f"VR id {vid} in use")
        vr = VirtualRouter.from_spec(name, vid, spec, impl)
        vr.run_dir = self.run_root / name
        self.vrs[name] = vr
        return vr

    def add_namespace(self, name: str) -> Netns:
        """A plain namespace (a neighbour router or host) owned by this network."""
        self._ensure()
        ns = Netns.create(f"{self.prefix}-{name}")
        self.namespaces[name] = ns
        return ns

    def connect(self, vr: str, vr_ifname: str, ns: Netns, ifname: str, *,
                address: str | None = None, mac: str | None = None) -> int:
        """A link from `ns` (interface `ifname`) to VR interface `vr_ifname`, through the
        transport; the circuit is patched when the VR is placed. Returns the transport port."""
        self._ensure()
        self._free_interface(vr, vr_ifname)
        self._n_links += 1
        root = check_ifname(f"{self.prefix}n{self._n_links}")
        port = self.transport.attach(ns, ifname, root, mac=mac)
        if address:
            ns.ip("addr", "replace", address, "dev", ifname)
        name = f"{vr}:{vr_ifname}"
        self.links[name] = (("vr", vr, vr_ifname), ("ns", port))
        self.circuit_of[(vr, vr_ifname)] = name
        return port

    def connect_vrs(self, a: str, a_ifname: str, b: str, b_ifname: str) -> str:
        """A link between two VR interfaces (patched once both VRs are placed)."""
        self._free_interface(a, a_ifname)
        self._free_interface(b, b_ifname)
        name = f"{a}:{a_ifname}~{b}:{b_ifname}"
        self.links[name] = (("vr", a, a_ifname), ("vr", b, b_ifname))
        self.circuit_of[(a, a_ifname)] = self.circuit_of[(b, b_ifname)] = name
        return name

    def _free_interface(self, vr: str, ifname: str) -> None:
        self.vrs[vr].interface(ifname)  # KeyError for a bad name
        if (vr, ifname) in self.circuit_of:
            raise ValueError(f"{vr}:{ifname} is already linked")

    def _end_port(self, end: tuple) -> int | None:
        """The transport port of a circuit end now (None: a VR that is not placed)."""
        if end[0] == "ns":
            return end[1]
        vr = self.vrs[end[1]]
        return vr.pr.transport_port(vr.name, end[2]) if vr.pr is not None else None

    def _patch_ready_circuits(self, vr: str) -> None:
        for itf in self.vrs[vr].interfaces:
            name = self.circuit_of.get((vr, itf.name))
            if name is None or name in self.transport.circuits:
                continue
            a, b = (self._end_port(e) for e in self.links[name])
            if a is not None and b is not None:
                self.transport.patch(name, a, b)

    def tunnel(self, a: str, b: str) -> tuple[int, int]:
        """The tunnel (a pair of patch ports, VLAN-tagged frames) between two physical
        routers' bridges: their migration link. Made on first use and kept (creating and
        deleting ports stalls the userspace datapath; see `routerlab.ovs.add_ports`)."""
        pa, pb = self.prs[a], self.prs[b]
        if b in pa.tunnels:
            return pa.tunnels[b][1], pb.tunnels[a][1]
        na, nb = check_ifname(f"{self.prefix}t{a}{b}"), check_ifname(f"{self.prefix}t{b}{a}")
        ((oa, ob),) = add_patch_pairs([(pa.bridge_name, na, pb.bridge_name, nb)])
        pa.tunnels[b] = (na, oa)
        pb.tunnels[a] = (nb, ob)
        return oa, ob

    def reserve_ports(self, vr: str, pr: str) -> None:
        """Make `vr`'s ports at `pr` ahead of a move there (a spare before a maintenance
        window): the move then changes no port on any bridge (see
        `PhysicalRouter.park`)."""
        self.prs[pr].reserve_vr_ports(self.vrs[vr], self.ns_name(vr, pr))

    def remove_tunnel(self, a: str, b: str) -> None:
        pa, pb = self.prs[a], self.prs[b]
        if b not in pa.tunnels:
            return
        na, _ = pa.tunnels.pop(b)
        nb, _ = pb.tunnels.pop(a)
        if pa.bridge is not None:
            pa.bridge.del_port(na)
        if pb.bridge is not None:
            pb.bridge.del_port(nb)

    def ns_name(self, vr: str, pr: str) -> str:
        return f"{self.prefix}-{vr}-{pr}"

    def circuit(self, vr: str, ifname: str) -> str | None:
        """The name of the circuit on VR interface `ifname` (None: it has no link)."""
        return self.circuit_of.get((vr, ifname))

    # ------------------------------------------------------------------ placing a VR
    def place(self, vr_name: str, pr_name: str, *, start_daemon: bool = True) -> DataPlaneHypervisor:
        """Start a VR at a physical router: namespace, binding, daemon, data plane, circuits."""
        vr, pr = self.vrs[vr_name], self.prs[pr_name]
        if vr.pr is not None:
            raise VroomError(f"{vr_name} already runs at {vr.pr.name}")
        pr.portmap.bind(vr.name, [i.name for i in vr.interfaces])
        ns = None
        try:
            ns = prepare_namespace(vr, pr, self.ns_name(vr_name, pr_name))
            vr.ns, vr.pr = ns, pr
            if start_daemon:
                assert vr.run_dir is not None
                vr.daemon = vr.make_daemon()
                vr.daemon.start(ns, vr.run_dir)
            hv = DataPlaneHypervisor(vr.vr_id, pr.bridge_name, ns.name, pr.bindings(vr),
                                     name=f"{vr_name}@{pr_name}")
            pr.hypervisors[vr_name] = hv
            hv.start()
            self._patch_ready_circuits(vr_name)
        except BaseException:
            self._unplace(vr, pr, ns)
            raise
        return hv

    def _unplace(self, vr: VirtualRouter, pr: PhysicalRouter, ns: Netns | None) -> None:
        for itf in vr.interfaces:
            c = self.circuit(vr.name, itf.name)
            if c is not None and c in self.transport.circuits:
                self.transport.unpatch(c)
        hv = pr.hypervisors.pop(vr.name, None)
        if hv is not None:
            hv.stop(remove_flows=True)
            hv.close()
        if vr.daemon is not None:
            vr.daemon.stop()
            vr.daemon = None
        pr.del_vr_ports(vr)
        pr.portmap.unbind(vr.name)
        if ns is not None:
            ns.delete()
        vr.ns = vr.pr = None

    def hypervisor(self, vr: str) -> DataPlaneHypervisor:
        v = self.vrs[vr]
        if v.pr is None:
            raise VroomError(f"{vr} is not placed")
        return v.pr.hypervisors[vr]

    # ------------------------------------------------------------------ teardown
    def stop(self) -> None:
        """Stop everything this network started; never raises (logs what it cannot undo)."""
        for vr in self.vrs.values():
            try:
                if vr.pr is not None:
                    hv = vr.pr.hypervisors.pop(vr.name, None)
                    if hv is not None:
                        hv.close()
                if vr.daemon is not None:
                    vr.daemon.stop()
                    vr.daemon = None
            except Exception as e:
                log.warning("stopping %s: %s", vr.name, e)
        for pr in self.prs.values():
            try:
                for hv in pr.hypervisors.values():
                    hv.close()
                pr.hypervisors.clear()
            except Exception as e:
                log.warning("stopping hypervisors of %s: %s", pr.name, e)
        # every namespace this network made, VR ones included
        for vr in self.vrs.values():
            for pr in self.prs:
                ns = Netns(self.ns_name(vr.name, pr))
                if ns.exists():
                    ns.delete()
            vr.ns = vr.pr = None
        for ns in self.namespaces.values():
            ns.delete()
        self.namespaces.clear()
        for pr in self.prs.values():
            try:
                pr.delete()
            except Exception as e:
                log.warning("deleting %s: %s", pr.name, e)
        try:
            self.transport.delete()
        except Exception as e:
            log.warning("deleting transport: %s", e)
        if self._created:
            shutil.rmtree(self.run_root, ignore_errors=True)
            registry.session().release("dir", str(self.run_root))
        self._created = False

    def __enter__(self) -> VroomNetwork:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
