"""FIB plumbing: each replica's candidate FIB, and the router's real FIB.

- `KernelFib` follows a replica's kernel FIB over netlink (pyroute2's async API): the
  candidate FIB of FRR (zebra) and BIRD, which write the kernel FIB of their namespace.
- `GobgpFib` is GoBGP's candidate FIB. GoBGP writes no kernel FIB (PLATFORM.md); its best
  paths come from its RIB through its API, streamed by `gobgp monitor global rib --current
  -j` (the streaming form of `gobgp global rib -j`), each next hop resolved to the
  interface whose subnet holds it, as the kernel would.
- `FibInstaller` installs the FIB voter's output into the forwarding namespace's kernel FIB
  (protocol bgp, 186), over netlink.

A FIB *value* is normalized so implementations compare equal when they forward alike:
("via", ((gateway, device), ...)) with next hops sorted, or ("blackhole",), ("unreachable",),
("prohibit",). Metrics and protocol numbers differ between daemons and do not count.
"""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import socket
import subprocess
import time
from typing import Callable, Iterable

from pyroute2 import AsyncIPRoute
from pyroute2.netlink.rtnl import RTMGRP_IPV4_ROUTE

from routerlab import registry
from routerlab.daemons.spec import RouterSpec
from routerlab.netns import Netns

log = logging.getLogger(__name__)

FibValue = tuple
Change = tuple[str, FibValue | None]
Report = Callable[[list[Change]], None]

MAIN_TABLE = 254
PROTO_KERNEL = 2  # connected routes: the kernel's own, the same in every replica
PROTO_BGP = 186
_SPECIAL = {6: ("blackhole",), 7: ("unreachable",), 8: ("prohibit",)}
_SPECIAL_TYPE = {v[0]: k for k, v in _SPECIAL.items()}


def via(*hops: tuple[str, str | None]) -> FibValue:
    return ("via", tuple(sorted(hops, key=lambda h: (h[0] or "", h[1] or ""))))


def describe(value: FibValue | None) -> str:
    if value is None:
        return "absent"
    if value[0] == "via":
        return ", ".join(f"via {gw} dev {dev}" for gw, dev in value[1])
    return value[0]


class _Table:
    """One replica's routes per prefix, keyed by (protocol, metric) so that overlapping
    routes are tracked; the candidate is the lowest-metric one, as the kernel forwards."""

    def __init__(self, report: Report):
        self.report = report
        self.routes: dict[str, dict[tuple[int, int], FibValue]] = {}
        self.current: dict[str, FibValue] = {}

    def apply(self, events: Iterable[tuple[bool, str, tuple[int, int], FibValue]]) -> None:
        touched = set()
        for add, prefix, key, value in events:
            rs = self.routes.setdefault(prefix, {})
            if add:
                rs[key] = value
            elif rs.get(key) is not None:
                del rs[key]
            if not rs:
                del self.routes[prefix]
            touched.add(prefix)
        changes = []
        for prefix in touched:
            rs = self.routes.get(prefix)
            new = rs[min(rs, key=lambda k: k[1])] if rs else None
            if self.current.get(prefix) != new:
                if new is None:
                    del self.current[prefix]
                else:
                    self.current[prefix] = new
                changes.append((prefix, new))
        if changes:
            self.report(changes)

    def clear(self) -> None:
        self.apply([(False, p, k, v) for p, rs in list(self.routes.items()) for k, v in rs.items()])


class KernelFib:
    """A replica's kernel FIB, followed over netlink."""

    def __init__(self, ns: str, report: Report):
        self.ns = ns
        self.table = _Table(report)
        self.links: dict[int, str] = {}
        self._task: asyncio.Task | None = None
        self._handles: list[AsyncIPRoute] = []

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        mon = AsyncIPRoute(netns=self.ns)
        ipr = AsyncIPRoute(netns=self.ns)
        self._handles = [mon, ipr]
        try:
            await mon.bind(groups=RTMGRP_IPV4_ROUTE)  # before the dump: no change falls between
            self.links = {link["index"]: link.get("ifname") async for link in await ipr.link("dump")}
            dump = [m async for m in await ipr.route("dump", table=MAIN_TABLE, family=socket.AF_INET)]
            self.table.apply(e for e in map(self._event, dump) if e)
            while True:
                events = [e async for e in mon.get()]
                self.table.apply(e for e in map(self._event, events) if e)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("FIB watcher for %s stopped", self.ns)
        finally:
            for h in self._handles:
                h.close()

    def _event(self, m) -> tuple[bool, str, tuple[int, int], FibValue] | None:
        ev = m.get("event")
        if ev not in ("RTM_NEWROUTE", "RTM_DELROUTE") or m.get("family") != socket.AF_INET:
            return None
        table = m.get_attr("RTA_TABLE") or m.get("table")
        if table != MAIN_TABLE or m.get("proto") == PROTO_KERNEL or m.get("type") not in (1, 6, 7, 8):
            return None
        prefix = f"{m.get_attr('RTA_DST') or '0.0.0.0'}/{m.get('dst_len')}"
        key = (m.get("proto"), m.get_attr("RTA_PRIORITY") or 0)
        if m.get("type") in _SPECIAL:
            value = _SPECIAL[m.get("type")]
        elif m.get_attr("RTA_MULTIPATH"):
            value = via(*((nh.get_attr("RTA_GATEWAY"), self.links.get(nh.get("oif")))
                          for nh in m.get_attr("RTA_MULTIPATH")))
        else:
            value = via((m.get_attr("RTA_GATEWAY"), self.links.get(m.get_attr("RTA_OIF"))))
        return ev == "RTM_NEWROUTE", prefix, key, value

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()


class GobgpFib:
    """GoBGP's candidate FIB: its best paths as `gobgp monitor global rib` streams them."""

    def __init__(self, ns: Netns, spec: RouterSpec, report: Report, api_port: int = 50051):
        self.ns = ns
        self.nets = [ipaddress.IPv4Interface(i.address) for i in spec.interfaces]
        self.names = [i.name for i in spec.interfaces]
        self.table = _Table(report)
        self.api_port = api_port
        self.proc: subprocess.Popen | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def resolve(self, nexthop: str) -> FibValue:
        """A BGP next hop as the kernel would install it (0.0.0.0: originated, blackhole)."""
        if nexthop in ("0.0.0.0", ""):
            return ("blackhole",)
        nh = ipaddress.IPv4Address(nexthop)
        dev = next((n for n, net in zip(self.names, self.nets) if nh in net.network), None)
        return via((nexthop, dev))

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        self.proc = self.ns.popen(["gobgp", "-u", "127.0.0.1", "-p", str(self.api_port), "monitor",
                                   "global", "rib", "--current", "-j"],
                                  name=f"gobgp-monitor:{self.ns.name}", stdout=subprocess.PIPE,
                                  stderr=subprocess.DEVNULL)
        reader = asyncio.StreamReader(limit=1 << 24)
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader),
                                                    self.proc.stdout)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    break
                self.table.apply(self._events([line]))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("GoBGP FIB watcher for %s stopped", self.ns.name)
        finally:
            transport.close()
            self._kill()

    def _events(self, lines: list[bytes]) -> list:
        out = []
        for line in lines:
            try:
                paths = json.loads(line)
            except json.JSONDecodeError:
                continue
            for p in paths if isinstance(paths, list) else [paths]:
                prefix = (p.get("nlri") or {}).get("prefix")
                nh = next((a.get("nexthop") for a in p.get("attrs", []) if a.get("type") == 3), "")
                if not prefix:
                    continue
                value = self.resolve(nh)
                if p.get("withdrawal"):
                    # a withdrawal of a path that is no longer the best changes nothing
                    if self.table.current.get(prefix) == value:
                        out.append((False, prefix, (0, 0), value))
                else:
                    out.append((True, prefix, (0, 0), value))
        return out

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        if self.proc is not None:
            registry.session().release_process(self.proc.pid)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self._kill()


class FibInstaller:
    """Installs voted FIB changes into the forwarding namespace over netlink, in order."""

    def __init__(self, ns: str, on_installed: Callable[[list[Change], float], None] | None = None):
        self.ns = ns
        self.on_installed = on_installed
        self.queue: asyncio.Queue[list[Change]] = asyncio.Queue()
        self.installed: dict[str, FibValue] = {}
        self.errors = 0
        self._task: asyncio.Task | None = None
        self._links: dict[str, int] = {}

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def apply(self, changes: list[Change]) -> None:
        self.queue.put_nowait(changes)

    async def _run(self) -> None:
        ipr = AsyncIPRoute(netns=self.ns)
        try:
            self._links = {link.get("ifname"): link["index"] async for link in await ipr.link("dump")}
            stale = [m async for m in await ipr.route("dump", table=MAIN_TABLE, family=socket.AF_INET)
                     if m.get("proto") == PROTO_BGP]
            for m in stale:  # a previous hypervisor's routes: start from a clean FIB
                await ipr.route("del", dst=f"{m.get_attr('RTA_DST')}/{m.get('dst_len')}", proto=PROTO_BGP)
            while True:
                changes = await self.queue.get()
                while not self.queue.empty():  # take everything queued: fewer, larger batches
                    changes = changes + self.queue.get_nowait()
                final = dict(changes)
                # netlink requests pipelined: each prefix appears once, so order is kept
                await asyncio.gather(*(self._one(ipr, p, v) for p, v in final.items()))
                if self.on_installed:
                    self.on_installed(list(final.items()), time.monotonic())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("FIB installer for %s stopped", self.ns)
        finally:
            ipr.close()

    async def _one(self, ipr: AsyncIPRoute, prefix: str, value: FibValue | None) -> None:
        try:
            if value is None:
                if prefix in self.installed:
                    await ipr.route("del", dst=prefix, proto=PROTO_BGP)
                    del self.installed[prefix]
                return
            args: dict = {"dst": prefix, "proto": PROTO_BGP}
            if value[0] in _SPECIAL_TYPE:
                args["type"] = value[0]
            elif len(value[1]) == 1:
                gw, dev = value[1][0]
                args.update({k: v for k, v in (("gateway", gw), ("oif", self._links.get(dev)))
                             if v is not None})
            else:
                args["multipath"] = [{k: v for k, v in (("gateway", gw), ("oif", self._links.get(dev)))
                                      if v is not None} for gw, dev in value[1]]
            await ipr.route("replace", **args)
            self.installed[prefix] = value
        except Exception as e:  # one bad route must not stop the FIB
            self.errors += 1
            log.warning("FIB %s: cannot install %s %s: %s", self.ns, prefix, describe(value), e)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
