"""FIB plumbing: each replica's candidate FIB, and the router's real FIB.

- `KernelFib` follows a replica's kernel FIB over rtnetlink (`verb.netlink`): the
  candidate FIB of FRR (zebra) and BIRD, which write the kernel FIB of their namespace.
- `GobgpFib` is GoBGP's candidate FIB. GoBGP writes no kernel FIB (PLATFORM.md); its best
  paths are its Loc-RIB, which gobgpd streams over BMP (`verb.bmp`) to a station of ours on
  127.0.0.1 in its namespace, each next hop resolved to the interface whose subnet holds it,
  as the kernel would.
- `FibInstaller` installs the FIB voter's output into the forwarding namespace's kernel FIB
  (protocol bgp, 186), over rtnetlink.

A FIB *value* is normalized so implementations compare equal when they forward alike:
("via", ((gateway, device), ...)) with next hops sorted, or ("blackhole",), ("unreachable",),
("prohibit",). Metrics and protocol numbers differ between daemons and do not count.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import os
import socket
import time
from typing import Callable, Iterable

from pyroute2 import AsyncIPRoute

from routerlab.daemons.spec import RouterSpec
from routerlab.netns import Netns

from . import bmp
from .netlink import RTMGRP_IPV4_ROUTE, RouteMsg, RouteSocket, RouteWriter, parse, route_request
from .netutil import listen_socket
from .tasks import start_owned
from .timeslice import TimeSlice, in_slices

log = logging.getLogger(__name__)

FibValue = tuple
Change = tuple[str, FibValue | None]
Report = Callable[[list[Change]], None]

# route notifications voted per watcher and loop pass: generous, because what is not read
# waits in the kernel, which drops notifications past the socket's buffer (and the watcher
# then re-reads the whole FIB): at 1,000 per pass BIRD's 1M installation overflowed 128 MiB
FIB_TURN = 20_000
MAIN_TABLE = 254
PROTO_KERNEL = 2  # connected routes: the kernel's own, the same in every replica
PROTO_BGP = 186
_SPECIAL = {6: ("blackhole",), 7: ("unreachable",), 8: ("prohibit",)}
_SPECIAL_TYPE = {v[0]: k for k, v in _SPECIAL.items()}


def via(*hops: tuple[str, str | None]) -> FibValue:
    """The FIB value forwarding over `hops` ((gateway, device), ...). One object per distinct
    value, shared by every replica's FIB: the voter compares the replicas' values for every
    prefix, and identical objects compare at once (a table has a handful of next hops)."""
    if len(hops) > 1:  # one order per set of next hops
        hops = tuple(sorted(hops, key=lambda h: (h[0] or "", h[1] or "")))
    value = ("via", hops)
    return _VALUES.setdefault(value, value)


_VALUES: dict[FibValue, FibValue] = {}


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
        routes = self.routes
        touched = set()
        for add, prefix, key, value in events:
            rs = routes.get(prefix)
            if add:
                if rs is None:
                    routes[prefix] = {key: value}
                else:
                    rs[key] = value
            elif rs is not None and rs.pop(key, None) is not None and not rs:
                del routes[prefix]
            touched.add(prefix)
        self._report(touched)

    async def resync(self, entries: Iterable[tuple[bool, str, tuple[int, int], FibValue]]) -> None:
        """Replace everything by a fresh dump (a new watcher, or the kernel dropped
        notifications), in time slices so the loop is not stalled (1M routes take seconds)."""
        old = set(self.routes)
        self.routes = {}
        ts = TimeSlice()
        for i, (_, prefix, key, value) in enumerate(entries):
            self.routes.setdefault(prefix, {})[key] = value
            if i % 1000 == 0:
                await ts.pause()
        await in_slices(list(old | set(self.routes)), self._report)

    def _report(self, touched: Iterable[str]) -> None:
        changes = []
        routes, current = self.routes, self.current
        for prefix in touched:
            rs = routes.get(prefix)
            if not rs:
                new = None
            elif len(rs) == 1:  # one route per prefix, the common case: no min() to run
                new = next(iter(rs.values()))
            else:
                new = rs[min(rs, key=_metric)]
            if current.get(prefix) != new:
                if new is None:
                    del current[prefix]
                else:
                    current[prefix] = new
                changes.append((prefix, new))
        if changes:
            self.report(changes)


def _metric(key: tuple[int, int]) -> int:
    return key[1]


class _Watcher:
    """What a candidate-FIB watcher shares: one task (`verb.tasks.start_owned`: let go of
    once it ends), cancelled by `stop()`."""

    _task: asyncio.Task | None = None

    def _cancel(self) -> bool:
        """Cancel the task, if any (whether there was one)."""
        task = self._task
        if task is None:
            return False
        task.cancel()
        return True


class KernelFib(_Watcher):
    """A replica's kernel FIB, followed over rtnetlink (re-dumped if notifications overflow).

    Route messages are decoded by `verb.netlink` (pyroute2 is too slow for full tables);
    the interface names come from pyroute2."""

    def __init__(self, ns: str, report: Report):
        self.ns = ns
        self.table = _Table(report)
        self.links: dict[int, str] = {}
        self._keys: dict[tuple[int, int], tuple[int, int]] = {}
        self.resyncs = 0

    def start(self) -> None:
        start_owned(self, "_task", self._run())

    async def _run(self) -> None:
        try:
            while True:
                try:
                    await self._follow()
                except OSError as e:
                    if e.errno != errno.ENOBUFS:
                        raise
                    self.resyncs += 1
                    log.info("FIB watcher %s: notifications overflowed; re-reading the FIB", self.ns)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("FIB watcher for %s stopped", self.ns)

    async def _follow(self) -> None:
        # subscribed before the dump; room for tens of seconds of a full table's installation
        # (FRR and BIRD install thousands of routes/s of a 1M table, ~1 KiB of socket memory
        # each) while the loop serves the other sessions
        mon = RouteSocket(self.ns, RTMGRP_IPV4_ROUTE, rcvbuf=256 << 20)
        dumper = RouteSocket(self.ns)
        try:
            ipr = AsyncIPRoute(netns=self.ns)
            try:
                self.links = {link["index"]: link.get("ifname") async for link in await ipr.link("dump")}
            finally:
                ipr.close()
            dump = await dumper.dump(MAIN_TABLE)
            dumper.close()
            await self.table.resync(e for e in map(self._event, dump) if e and e[0])
            while True:
                # what is queued, up to a turn's worth, voted as one batch (a table load
                # arrives as a datagram per route); then the other sessions get their turn:
                # a reader that drained everything queued made each loop pass longer than
                # the last while FRR installed a 1M table (4-8 s passes)
                await asyncio.sleep(0)
                msgs = parse(await mon.recv())
                for buf in mon.pending(FIB_TURN):
                    msgs += parse(buf)
                self.table.apply(e for e in map(self._event, msgs) if e)
        finally:
            mon.close()
            dumper.close()

    def _event(self, m: RouteMsg) -> tuple[bool, str, tuple[int, int], FibValue] | None:
        if m.table != MAIN_TABLE or m.proto == PROTO_KERNEL or m.type not in (1, 6, 7, 8):
            return None
        if m.type in _SPECIAL:
            value = _SPECIAL[m.type]
        elif m.multipath:
            value = via(*((gw, self.links.get(oif)) for gw, oif in m.multipath))
        else:
            value = via((m.gateway, self.links.get(m.oif)))  # shared: via() interns
        # one key per (protocol, metric), as via() does for values: a full table has a
        # handful of each, and tuples per route were ~200 bytes of memory per route and replica
        key = (m.proto, m.priority)
        return m.new, m.prefix, self._keys.setdefault(key, key), value

    def stop(self) -> None:
        self._cancel()

    async def aclose(self) -> None:
        """Stop following and wait until the watcher has ended (its sockets closed), so a
        loop stopped right after does not destroy a still-pending task."""
        task = self._task
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass


class GobgpFib(_Watcher):
    """GoBGP's candidate FIB: its Loc-RIB, which gobgpd streams to us as a BMP station
    (`verb.bmp`) listening on 127.0.0.1 inside the replica's namespace.

    `listen()` before gobgpd starts (it connects once at start, then retries only after
    seconds), give the daemon `bmp_station`, then `start()`."""

    PORT = 11019  # BMP's customary port; every replica namespace has its own loopback

    def __init__(self, ns: Netns, spec: RouterSpec, report: Report, port: int = PORT):
        self.ns = ns
        self.router = spec.name
        self.nets = [ipaddress.IPv4Interface(i.address) for i in spec.interfaces]
        self.names = [i.name for i in spec.interfaces]
        self.table = _Table(report)
        self.port = port
        self.connections = 0
        self._resolved: dict[str, FibValue] = {}  # next hop -> value: a table has a handful
        self._sock: socket.socket | None = None

    @property
    def bmp_station(self) -> tuple[str, int]:
        """Where gobgpd sends its Loc-RIB (its `bmp-servers` entry)."""
        return ("127.0.0.1", self.port)

    def listen(self) -> None:
        self._sock = listen_socket(self.ns.name, "127.0.0.1", self.port)

    def start(self) -> None:
        if self._sock is None:
            self.listen()
        start_owned(self, "_task", self._run())

    def resolve(self, nexthop: str) -> FibValue:
        """A BGP next hop as the kernel would install it (0.0.0.0: originated, blackhole);
        worked out once per next hop (the interfaces do not change), not once per path."""
        hit = self._resolved.get(nexthop)
        if hit is not None:
            return hit
        if nexthop in ("0.0.0.0", ""):
            value: FibValue = ("blackhole",)
        else:
            nh = ipaddress.IPv4Address(nexthop)
            dev = next((n for n, net in zip(self.names, self.nets) if nh in net.network), None)
            value = via((nexthop, dev))
        self._resolved[nexthop] = value
        return value

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._sock is not None
        try:
            while True:
                conn, _ = await loop.sock_accept(self._sock)
                self.connections += 1
                if self.connections > 1:
                    # gobgpd reconnected: it sends its whole Loc-RIB again, from nothing
                    log.warning("GoBGP FIB of %s: BMP session %d; re-reading the Loc-RIB",
                                self.router, self.connections)
                    await self.table.resync([])
                try:
                    await self._follow(loop, conn)
                finally:
                    conn.close()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("GoBGP FIB watcher for %s stopped", self.ns.name)
        finally:
            self._close()

    async def _follow(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        rest, reader = b"", bmp.LocRibReader()  # a new session announces itself anew
        while True:
            # whatever gobgpd has written so far, as one batch of whole messages, a turn's
            # worth at a time (see KernelFib._follow)
            await asyncio.sleep(0)
            data = await loop.sock_recv(conn, 1 << 17)  # ~1,000 paths
            if not data:
                return
            msgs, rest = bmp.split(rest + data)
            if msgs:
                self.table.apply(self._events(reader.changes(msgs)))

    def _events(self, changes: list[bmp.LocRibChange]) -> list:
        out: list = []
        for ch in changes:
            for prefix in ch.withdrawn:  # the prefix has no best path left
                out.append((False, prefix, (0, 0), None))
            if ch.nlri:
                try:
                    value = self.resolve(ch.next_hop or "")
                except ValueError:  # not an IPv4 next hop: not a route of this FIB
                    log.warning("GoBGP FIB of %s: next hop %r of %s skipped", self.router,
                                ch.next_hop, ch.nlri[0])
                    continue
                out.extend((True, prefix, (0, 0), value) for prefix in ch.nlri)
        return out

    def _close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def stop(self) -> None:
        if not self._cancel():
            self._close()


class FibInstaller:
    """Installs voted FIB changes into the forwarding namespace, in order, over rtnetlink
    (requests batched into datagrams and acknowledged: a full table takes a second, and the
    hypervisor's loop is never held for long)."""

    def __init__(self, ns: str, on_installed: Callable[[list[Change], float], None] | None = None):
        self.ns = ns
        self.on_installed = on_installed
        self.queue: asyncio.Queue[list[Change]] = asyncio.Queue()
        self.installed: dict[str, FibValue] = {}
        self.errors = 0
        self._task: asyncio.Task | None = None
        self._links: dict[str, int] = {}

    def start(self) -> None:
        start_owned(self, "_task", self._run())

    def apply(self, changes: list[Change]) -> None:
        self.queue.put_nowait(changes)

    async def _run(self) -> None:
        writer = None
        try:
            ipr = AsyncIPRoute(netns=self.ns)
            try:
                self._links = {link.get("ifname"): link["index"] async for link in await ipr.link("dump")}
            finally:
                ipr.close()
            writer = RouteWriter(self.ns)
            stale = [m.prefix for m in await writer.dump(MAIN_TABLE) if m.proto == PROTO_BGP]
            # a previous hypervisor's routes: start from a clean FIB
            await writer.apply([(seq, route_request(seq, p, PROTO_BGP, delete=True))
                                for p in stale for seq in (writer.next_seq(),)])
            while True:
                changes = await self.queue.get()
                while not self.queue.empty():  # take everything queued: fewer, larger batches
                    changes = changes + self.queue.get_nowait()
                final = dict(changes)  # the last word per prefix: order between prefixes is free
                await self._install(writer, final)
                if self.on_installed:
                    self.on_installed(list(final.items()), time.monotonic())
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("FIB installer for %s stopped", self.ns)
        finally:
            if writer is not None:
                writer.close()

    async def _install(self, writer: "RouteWriter", final: dict[str, FibValue | None]) -> None:
        reqs, by_seq = [], {}
        for prefix, value in final.items():
            if value is None and prefix not in self.installed:
                continue
            seq = writer.next_seq()
            by_seq[seq] = (prefix, value)
            if value is None:
                reqs.append((seq, route_request(seq, prefix, PROTO_BGP, delete=True)))
            elif value[0] in _SPECIAL_TYPE:
                reqs.append((seq, route_request(seq, prefix, PROTO_BGP, rtype=_SPECIAL_TYPE[value[0]])))
            else:
                hops = [(gw, self._links.get(dev)) for gw, dev in value[1]]
                reqs.append((seq, route_request(seq, prefix, PROTO_BGP, hops=hops)))
        failed = await writer.apply(reqs)
        for seq, (prefix, value) in by_seq.items():
            if seq in failed:
                self.errors += 1
                log.warning("FIB %s: cannot install %s %s: %s", self.ns, prefix, describe(value),
                            os.strerror(failed[seq]))
            elif value is None:
                self.installed.pop(prefix, None)
            else:
                self.installed[prefix] = value

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
