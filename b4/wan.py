"""The B4 WAN in Mininet: one userspace OVS switch per site, hosts, shaped WAN links.

Built on the substrate's pieces (`HostNode` in named namespaces, `UserspaceSwitch`,
`RegisteredLink`, so `routerlab clean` removes whatever a crash leaves). Every root-namespace
name carries the network's prefix (bridges ``PREFIX+SITE``, switch ports
``PREFIX+SITE+'p'+PORT``), so concurrent runs never collide. Switches start with
``fail_mode=secure`` and no controller; `set_controllers` points them at the OFC replicas.

Hosts get a /32 address, a route to their site's virtual gateway and a permanent neighbour
entry for it: every packet goes to the switch, which routes it (the LPM table rewrites the
MACs at the last hop). WAN links are HTB-shaped to ``LINE_RATE_FACTOR`` x their ``bw`` (``bw``
is the TE capacity, an IP rate; HTB also counts the Ethernet and MPLS headers, 1.3% of a
full-size packet), and their MTU is raised by `LABEL_MTU_EXTRA` so a full-size packet with a
label still fits.

Queues on shaped links are kept short (`QUEUE_PACKETS`) on purpose: Open vSwitch's userspace
datapath sends on every port through one non-blocking AF_PACKET socket whose send buffer is
``net.core.wmem_default`` when OVS started (about 200 KB), and packets waiting in a qdisc count
against it. Long standing queues (anyone's, machine-wide) make OVS's sends fail with EAGAIN
("error sending Ethernet packet ... Resource temporarily unavailable"), dropping packets on
unrelated ports.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

from mininet.net import Mininet

from routerlab.netns import run
from routerlab.nodes import HostNode, RegisteredLink, UserspaceSwitch, offload_off
from routerlab.ovs import ofctl, vsctl

from b4.model import HOST_MTU, LABEL_MTU_EXTRA, Wan

log = logging.getLogger(__name__)

QUEUE_PACKETS = 24         # per shaped link (see the module docstring)
LINE_RATE_FACTOR = 1.04    # HTB rate over TE capacity: L2 + label headers, hashing imbalance


class WanNetwork:
    """A running B4 WAN (data plane only; controllers are separate processes)."""

    def __init__(self, wan: Wan, prefix: str = "b4-"):
        self.wan = wan
        self.prefix = prefix
        self.net = Mininet(topo=None, build=False, controller=None, host=HostNode, switch=UserspaceSwitch,
                           link=RegisteredLink, autoSetMacs=False, autoStaticArp=False, waitConnected=False)
        self.switches: dict[str, Any] = {}
        self.hosts: dict[str, Any] = {}
        self.wan_intfs: dict[str, tuple[str, str]] = {}  # link name -> (intf at a, intf at b)
        self.started = False

    # ------------------------------------------------------------------ names
    def bridge(self, sw: str) -> str:
        return f"{self.prefix}{sw}"

    def port_intf(self, sw: str, port: int) -> str:
        name = f"{self.prefix}{sw}p{port}"
        if len(name) > 15:
            raise ValueError(f"interface name {name!r} too long: use a shorter prefix")
        return name

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "WanNetwork":
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        self.started = True
        return self

    def _build(self) -> None:
        cfg = self.wan.config
        for name, sw in cfg.switches.items():
            br = self.bridge(name)
            if len(br) > 15:
                raise ValueError(f"bridge name {br!r} exceeds 15 characters")
            self.switches[name] = self.net.addSwitch(br, dpid="%016x" % sw.dpid, failMode="secure")
        for sw in cfg.switches.values():
            for h in sw.host_ports:
                if h.host not in self.hosts:
                    self.hosts[h.host] = self.net.addHost(h.host, cls=HostNode, netns_name=f"{self.prefix}{h.host}",
                                                          ip=None)
        for sw in cfg.switches.values():
            for h in sw.host_ports:
                self.net.addLink(self.hosts[h.host], self.switches[sw.name], intfName1=h.intf or f"{h.host}-eth0",
                                 intfName2=self.port_intf(sw.name, h.port), port2=h.port)
        for ln in cfg.links.values():
            ia, ib = self.port_intf(ln.a, ln.a_port), self.port_intf(ln.b, ln.b_port)
            self.net.addLink(self.switches[ln.a], self.switches[ln.b], intfName1=ia, intfName2=ib,
                             port1=ln.a_port, port2=ln.b_port, bw=ln.bw * LINE_RATE_FACTOR)
            self.wan_intfs[ln.name] = (ia, ib)
            for i in (ia, ib):  # before OVS opens the port
                run(["ip", "link", "set", "dev", i, "mtu", str(HOST_MTU + LABEL_MTU_EXTRA)])
        self.net.build()
        self.net.start()
        for ia, ib in self.wan_intfs.values():
            for i in (ia, ib):
                run(["tc", "qdisc", "replace", "dev", i, "parent", "5:1", "handle", "10:", "pfifo",
                     "limit", str(QUEUE_PACKETS)], check=False)
        for node in list(self.hosts.values()) + list(self.switches.values()):
            offload_off(node)  # the userspace datapath fills in no checksums
        for host in self.hosts:
            self._config_host(host)
        log.info("%s: %d sites, %d hosts, %d WAN links up", self.wan.name, len(self.switches), len(self.hosts),
                 len(self.wan_intfs))

    def _config_host(self, host: str) -> None:
        """A /32 address and a default route via the site's virtual gateway (permanent
        neighbour entry). A host on several switches of its site keeps its address on ``lo``
        and spreads flows over its uplinks (ECMP, hashing on ports too); a dead uplink's
        next hop is skipped as soon as its carrier drops, as a cluster's routers stop using
        a failed encap switch."""
        ports = self.wan.host_ports(host)
        node = self.hosts[host]
        site = self.wan.config.sites[self.wan.config.switches[ports[0][0]].site]
        ip = ports[0][1].ip
        run_ = node.netns.run
        for _, h in ports:
            intf = h.intf or f"{host}-eth0"
            for cmd in (["ip", "link", "set", "dev", intf, "address", h.mac, "mtu", str(HOST_MTU), "up"],
                        ["ip", "addr", "flush", "dev", intf],
                        ["ip", "neigh", "replace", site.gateway_ip, "lladdr", site.gateway_mac, "dev", intf,
                         "nud", "permanent"]):
                run_(cmd)
        if len(ports) == 1:
            intf = ports[0][1].intf or f"{host}-eth0"
            run_(["ip", "addr", "add", f"{ip}/32", "dev", intf])
            run_(["ip", "route", "replace", f"{site.gateway_ip}/32", "dev", intf, "scope", "link"])
            run_(["ip", "route", "replace", "default", "via", site.gateway_ip, "dev", intf])
            return
        for key, val in (("net.ipv4.fib_multipath_hash_policy", "1"),
                         ("net.ipv4.conf.all.ignore_routes_with_linkdown", "1"),
                         ("net.ipv4.conf.all.rp_filter", "2"), ("net.ipv4.conf.default.rp_filter", "2")):
            node.netns.sysctl(key, val)
        run_(["ip", "addr", "add", f"{ip}/32", "dev", "lo"])
        hops: list[str] = []
        for _, h in ports:
            hops += ["nexthop", "via", site.gateway_ip, "dev", h.intf, "onlink"]
        run_(["ip", "route", "replace", "default", "src", ip, *hops])

    def set_controllers(self, ofp_ports: list[int], max_backoff_ms: int = 1000) -> None:
        """Point every switch at the controllers on 127.0.0.1 (and reconnect quickly)."""
        for sw in self.switches:
            br = self.bridge(sw)
            args: list[str] = []
            ids = []
            for i, p in enumerate(ofp_ports):
                ids.append(f"@c{i}")
                args += ["--", f"--id=@c{i}", "create", "Controller", f"target=\"tcp:127.0.0.1:{p}\"",
                         f"max_backoff={max_backoff_ms}", "inactivity_probe=3000"]
            args += ["--", "set", "bridge", br, f"controller=[{','.join(ids)}]"]
            vsctl(*args)

    def connected(self, sw: str) -> int:
        """How many of the switch's controllers are connected."""
        return sum(1 for u in self._controller_uuids(sw)
                   if vsctl("get", "Controller", u, "is_connected").strip() == "true")

    def _controller_uuids(self, sw: str) -> list[str]:
        out = vsctl("get", "Bridge", self.bridge(sw), "controller").strip()
        return [u.strip() for u in out.strip("[]").split(",") if u.strip()]

    def stop(self) -> None:
        try:
            self.net.stop()
        except Exception as e:  # keep tearing down; the registry catches the rest
            log.warning("mininet stop: %s", e)
        for h in self.hosts.values():
            if h.netns is not None:
                h.netns.delete()
        self.started = False

    def __enter__(self) -> "WanNetwork":
        return self.start() if not self.started else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ failures
    def _link(self, a: str, b: str):
        for ln in self.wan.config.links.values():
            if {ln.a, ln.b} == {a, b}:
                return ln
        raise KeyError(f"no WAN link {a}-{b}")

    def set_link(self, a: str, b: str, up: bool) -> str:
        """Take the WAN link between switches ``a`` and ``b`` down (both ends) or up."""
        ln = self._link(a, b)
        for i in self.wan_intfs[ln.name]:
            run(["ip", "link", "set", "dev", i, "up" if up else "down"])
        return ln.name

    def set_switch(self, sw: str, up: bool) -> None:
        """A switch failure as its neighbours see it: every link of the switch loses carrier."""
        cfg = self.wan.config.switches[sw]
        ports = [h.port for h in cfg.host_ports] + [p for ps in cfg.trunks.values() for p in ps]
        # one `ip` process for all ports: a failed switch loses them all at once
        run(["ip", "-batch", "-"], input="".join(f"link set dev {self.port_intf(sw, p)} {'up' if up else 'down'}\n"
                                                  for p in ports))

    # ------------------------------------------------------------------ counters
    def group_stats(self, sw: str) -> dict[int, list[tuple[int, int]]]:
        """Per group id: ``(packets, bytes)`` of each bucket, in bucket order."""
        out: dict[int, list[tuple[int, int]]] = {}
        text = ofctl("dump-group-stats", self.bridge(sw))
        for line in text.splitlines():
            m = re.search(r"group_id=(\d+)", line)
            if not m:
                continue
            buckets = re.findall(r"bucket(\d+):packet_count=(\d+),byte_count=(\d+)", line)
            out[int(m.group(1))] = [(int(p), int(b)) for _, p, b in sorted(buckets, key=lambda t: int(t[0]))]
        return out

    def group_buckets(self, sw: str) -> dict[int, list[int]]:
        """Per group id: the group each bucket forwards to (``group:N`` actions), in order."""
        out: dict[int, list[int]] = {}
        for line in ofctl("dump-groups", self.bridge(sw)).splitlines():
            m = re.search(r"group_id=(\d+)", line)
            if m:
                out[int(m.group(1))] = [int(g) for g in re.findall(r"bucket=[^b]*?group:(\d+)", line)]
        return out

    def link_tx_bytes(self) -> dict[tuple[str, str], int]:
        """Bytes sent so far on each directed WAN link ``(from switch, to switch)``."""
        out = {}
        for ln in self.wan.config.links.values():
            ia, ib = self.wan_intfs[ln.name]
            out[(ln.a, ln.b)] = _tx_bytes(ia)
            out[(ln.b, ln.a)] = _tx_bytes(ib)
        return out

    def host(self, name: str):
        return self.hosts[name]


def _tx_bytes(intf: str) -> int:
    try:
        return int(Path(f"/sys/class/net/{intf}/statistics/tx_bytes").read_text())
    except (OSError, ValueError):
        return 0
