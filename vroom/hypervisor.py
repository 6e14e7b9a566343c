"""The data-plane hypervisor: keeps a physical router's flow table equal to a VR's FIB.

One `DataPlaneHypervisor` per (VR, physical router). It listens on a NETLINK_ROUTE socket
inside the namespace whose FIB it follows (link, address, neighbour and IPv4 route groups),
and whenever something changed (debounced: it waits for a short quiet period, at most
`max_delay_s`) it reads the namespace's routes, neighbours and addresses, translates them
(`vroom.translate`), adds the VR's binding flows (`vroom.binding`) and sends the
difference from what it installed last as one atomic bundle. A netlink overflow or a
missed event costs nothing but a full comparison: every sync compares complete states, and
one runs every `resync_s` seconds regardless.

`repopulate()` is data-plane cloning: it clears the VR's share of the bridge and installs
everything in one bulk bundle, timing each part (the paper's "installing N routes").

Several hypervisors share a bridge: each owns only flows that carry its VR id (``reg0``) or
its own ports and VLAN ids, and groups numbered ``VR << 24 | n``.
"""
from __future__ import annotations

import copy
import errno
import gc
import logging
import math
import os
import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from routerlab.criu import socket_in_netns
from routerlab.ovs import apply_changes

from . import fib, ofwire
from .binding import PortBinding, TunnelEnd, binding_flows
from .flows import Flow, Group, Tables, diff_bundle, install_bundle
from .translate import NextHopGroups, route_tables

log = logging.getLogger(__name__)

# rtnetlink multicast groups (legacy bitmask form for bind())
RTMGRP_LINK, RTMGRP_NEIGH, RTMGRP_IPV4_IFADDR, RTMGRP_IPV4_ROUTE = 0x1, 0x4, 0x10, 0x40
WATCH_GROUPS = RTMGRP_LINK | RTMGRP_NEIGH | RTMGRP_IPV4_IFADDR | RTMGRP_IPV4_ROUTE

# Flows per OpenFlow transaction when a big share is removed. ovs-vswitchd's main thread
# runs OpenFlow and also polls the ports of every userspace bridge on the machine, so one
# transaction deleting 250,000 flows (a bundle, a non-strict delete, or deleting the bridge
# holding them) stops forwarding on every bridge for ~3.8 s (measured here: a vroom-cloning
# run's clean-up made a concurrent vroom-maintenance lose 94-100% of its probe, and the
# ~4 s without forwarding dropped every OSPF adjacency on the machine). Strict deletes,
# this many to a bundle, keep each stop near 50 ms; a pause as long as each bundle took
# (at most REMOVE_PAUSE_MAX_S) leaves the switch half its time to forward (back-to-back
# bundles slowed a 10,000 packets/s probe elsewhere until it lost 11%; paced, it lost 0).
# 250,000 flows take ~15-30 s instead of ~4 (longer on a busy switch): this happens after
# the VR has left (a migration's clean-up, a lab's end), where nothing waits for it.
REMOVE_CHUNK = 2_500
REMOVE_PAUSE_MAX_S = 0.5
# Flows per transaction when a big change is installed (a cloned or grown table). Adding is
# cheaper for the switch than deleting (~3-4 us a flow in a bundle's commit against ~20),
# so the chunks are bigger: 20,000 flows stop the main thread ~70-100 ms at commit. Between
# two commits ovs-ofctl parses the next chunk and the switch receives it (50 messages per
# main-loop turn, forwarding in between), which leaves the switch a gap as long as a commit
# without any pause; INSTALL_PAUSE_S adds a little more. A million routes: 50 commits.
INSTALL_CHUNK = 20_000
INSTALL_PAUSE_S = 0.01


class HypervisorError(RuntimeError):
    pass


def _pure_additions(old: Tables, new: Tables) -> tuple[list[Flow], list[Group]] | None:
    """(flows, groups) `new` adds to `old` when it only adds and adds more than
    INSTALL_CHUNK flows (a bulk install); None otherwise (the ordinary diff)."""
    if len(new.flows) - len(old.flows) <= INSTALL_CHUNK:
        return None
    nf, ng = new.flows, new.groups
    if any(nf.get(k) != f for k, f in old.flows.items()) or \
            any(ng.get(g) != grp for g, grp in old.groups.items()):
        return None
    of, og = old.flows, old.groups
    return ([f for k, f in nf.items() if k not in of],
            [g for i, g in ng.items() if i not in og])


def apply_paced(bridge: str, lines: list[str], chunk: int = INSTALL_CHUNK,
                pause_s: float = INSTALL_PAUSE_S) -> tuple[int, float]:
    """`apply_changes` for a change of any size: up to `chunk` lines in one atomic
    transaction; more in consecutive transactions of `chunk` lines (see INSTALL_CHUNK).
    The lines must be in a safe order (as `diff_bundle` and `install_bundle` give them:
    groups before the flows using them, deletions last), so every intermediate table only
    forwards along routes the FIB had before or has now. Returns (lines, seconds)."""
    if len(lines) <= chunk:
        return apply_changes(bridge, lines)
    t0 = time.monotonic()
    n = 0
    for i in range(0, len(lines), chunk):
        if i:
            time.sleep(pause_s)
        n += apply_changes(bridge, lines[i:i + chunk])[0]
    return n, time.monotonic() - t0


_gc_pauses = 0  # how many gc_paused() blocks are running (any thread)
_gc_was_enabled = True  # the collector's state when the first of them began
_gc_lock = threading.Lock()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a FIB is read and translated.

    A 250,000-route table creates about a million small acyclic objects (routes, flows,
    tuples); the allocation bursts trigger collections that rescan the growing heap, which
    doubles the translation time (0.45 s without, 0.9-1.0 s with, measured here). Nothing
    in it forms cycles, so no garbage is left for the collector. Nested and concurrent
    pauses (several hypervisors) restore it only when the last one ends."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


@dataclass
class SyncStats:
    """One synchronisation of the bridge with the FIB (a repopulation when ``full``)."""

    routes: int = 0  # routes translated into flows
    flows: int = 0  # flows of the VR on the bridge afterwards
    groups: int = 0
    changes: int = 0  # bundle lines sent
    read_s: float = 0.0  # reading the FIB, neighbours, addresses
    translate_s: float = 0.0
    install_s: float = 0.0  # ovs-ofctl bundle
    total_s: float = 0.0
    full: bool = False
    unresolved: int = 0  # next-hop groups punting for lack of a resolved neighbour
    at: float = 0.0  # wall-clock time of the sync (to line it up with probe gaps)

    def to_json(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def _netns_path(ns: str) -> str:
    return str(Path("/var/run/netns") / ns)


class DataPlaneHypervisor:
    """Keeps `bridge`'s flows for VR `vr_id` equal to the FIB of namespace `fib_ns`."""

    def __init__(self, vr_id: int, bridge: str, fib_ns: str, bindings: list[PortBinding],
                 tunnel: TunnelEnd | None = None, *, name: str = "",
                 debounce_s: float = 0.02, max_delay_s: float = 0.2, resync_s: float = 10.0):
        self.vr_id = vr_id
        self.bridge = bridge
        self.fib_ns = fib_ns
        self.bindings = list(bindings)
        self.tunnel = tunnel
        self.name = name or f"hv{vr_id}@{bridge}"
        self.debounce_s, self.max_delay_s, self.resync_s = debounce_s, max_delay_s, resync_s
        self.groups = NextHopGroups(vr_id)
        self._routes = Tables()  # routing table (table 1) and next-hop groups
        self._binding = Tables()  # ingress, punt, egress and tunnel flows
        self.syncs = 0
        self.last: SyncStats | None = None
        self.recent: deque[SyncStats] = deque(maxlen=50)  # the last syncs that changed something
        self.routes_changed_at: float | None = None  # monotonic time the route flows last changed
        self.errors: list[str] = []
        self.on_sync: Callable[[SyncStats], None] | None = None
        self._lock = threading.RLock()  # one bridge update at a time
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._retarget = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        self._dirty = threading.Event()
        self._paused = threading.Event()

    def __repr__(self) -> str:
        return f"<DataPlaneHypervisor {self.name} following {self.fib_ns}>"

    # ------------------------------------------------------------------ state -> flows
    @property
    def ifindex(self) -> dict[str, int]:
        return {b.ifname: b.index for b in self.bindings}

    @property
    def installed(self) -> Tables:
        """Everything this hypervisor has installed for the VR (routing + binding flows)."""
        with self._lock:
            return self._routes.merged(self._binding)

    def _binding_tables(self) -> Tables:
        return binding_flows(self.vr_id, self.bindings, self.tunnel)

    def sync(self, routes: bool = True) -> SyncStats:
        """Read the FIB now and send the bridge whatever differs. Without `routes` only the
        control path is installed (bindings and punts: what reaches the VR, no forwarding)."""
        with self._lock, gc_paused():
            t0 = time.monotonic()
            if routes:
                snap = fib.read_snapshot(self.fib_ns)
            else:
                snap = fib.Snapshot(addresses=fib.read_addresses(self.fib_ns))
            t1 = time.monotonic()
            tr = route_tables(self.vr_id, self.ifindex, snap, self.groups)
            binding = self._binding_tables()
            added = _pure_additions(self._routes, tr.tables)
            if added is not None:  # a big table arriving (cloning, a full table learnt)
                routes_changed = bool(added[0] or added[1])
                t2 = time.monotonic()
                n, install_s = self._install_bulk(
                    added[0], added[1], diff_bundle(self._binding, binding))
            else:
                route_lines = diff_bundle(self._routes, tr.tables)
                routes_changed = bool(route_lines)
                lines = route_lines + diff_bundle(self._binding, binding)
                t2 = time.monotonic()
                n, install_s = apply_paced(self.bridge, lines)
            if routes_changed:
                self.routes_changed_at = time.monotonic()
            self._routes, self._binding = tr.tables, binding
            st = SyncStats(routes=tr.routes, flows=len(tr.tables.flows) + len(binding.flows),
                           groups=len(tr.tables.groups), changes=n, read_s=t1 - t0,
                           translate_s=t2 - t1, install_s=install_s,
                           total_s=time.monotonic() - t0, unresolved=tr.unresolved)
            self._done(st)
            return st

    def repopulate(self) -> SyncStats:
        """Data-plane cloning: replace the VR's share of the bridge by a bulk install built
        from the FIB (delete what was there, add everything: one bundle when it is small,
        paced transactions when it is big, see REMOVE_CHUNK and INSTALL_CHUNK)."""
        with self._lock, gc_paused():
            removal = self._removal_batches()
            if len(removal) > 1:  # a big share: removed first, paced (not part of cloning)
                self._remove_batches(removal)
                removal = []
            t0 = time.monotonic()
            snap = fib.read_snapshot(self.fib_ns)
            t1 = time.monotonic()
            tr = route_tables(self.vr_id, self.ifindex, snap, self.groups)
            binding = self._binding_tables()
            if not removal and len(tr.tables.flows) > INSTALL_CHUNK:  # empty share, big table
                t2 = time.monotonic()
                n, install_s = self._install_bulk(list(tr.tables.flows.values()),
                                                  list(tr.tables.groups.values()),
                                                  install_bundle(binding))
            else:  # an empty share goes as a bulk add (see apply_changes); else one bundle
                lines = ([ln for b in removal for ln in b] + install_bundle(tr.tables)
                         + install_bundle(binding))
                t2 = time.monotonic()
                n, install_s = apply_paced(self.bridge, lines)
            self._routes, self._binding = tr.tables, binding
            self.routes_changed_at = time.monotonic()
            st = SyncStats(routes=tr.routes, flows=len(tr.tables.flows) + len(binding.flows),
                           groups=len(tr.tables.groups), changes=n, read_s=t1 - t0,
                           translate_s=t2 - t1, install_s=install_s,
                           total_s=time.monotonic() - t0, full=True, unresolved=tr.unresolved)
            self._done(st)
            log.info("%s: repopulated %d routes (%d flows, %d groups) in %.3f s "
                     "(read %.3f, translate %.3f, install %.3f)", self.name, tr.routes, st.flows,
                     st.groups, st.total_s, st.read_s, st.translate_s, st.install_s)
            return st

    def _install_bulk(self, flows: list[Flow], groups: list[Group], then: list[str]
                      ) -> tuple[int, float]:
        """Add `groups` (ovs-ofctl), then `flows`: the route flows over OpenFlow directly
        (`vroom.ofwire`, paced bundles of INSTALL_CHUNK), the others with ovs-ofctl; then
        the bundle lines `then`. Returns (changes, seconds). Where the direct connection
        fails, everything goes through ovs-ofctl (adding a flow twice changes nothing)."""
        t0 = time.monotonic()
        n = apply_changes(self.bridge, [f"group add {g.text()}" for g in groups])[0]
        try:
            sent, other = ofwire.add_flows(self.bridge, flows, chunk=INSTALL_CHUNK,
                                           pause_s=INSTALL_PAUSE_S)
        except (OSError, ofwire.OpenFlowError) as e:
            log.warning("%s: direct OpenFlow install failed (%s): using ovs-ofctl", self.name, e)
            sent, other = 0, flows
        n += sent + apply_paced(self.bridge, [f"flow add {f.text()}" for f in other] + then)[0]
        return n, time.monotonic() - t0

    def _removal_lines(self) -> list[str]:
        """Bundle lines deleting all of the VR's flows and groups here: those matching on
        the VR's register with one non-strict delete (a big routing table would otherwise
        take a line per route), the few others one by one."""
        if not self._routes.flows and not self._binding.flows:
            return []
        mine = f"reg0={self.vr_id}"
        lines = [f"flow delete {mine}"]
        lines += [f"flow delete_strict {f.match_text()}"
                  for t in (self._routes, self._binding) for f in t.flows.values()
                  if mine not in f.match]
        lines += [f"group delete group_id={g}" for g in self._routes.groups]
        return lines

    def _removal_batches(self, chunk: int = REMOVE_CHUNK) -> list[list[str]]:
        """The VR's share here as removal transactions: one (`_removal_lines`) when it holds
        at most `chunk` flows; else strict deletes `chunk` flows to a bundle, then the
        groups and a sweep of anything left with the VR's register (see REMOVE_CHUNK)."""
        flows = [f for t in (self._routes, self._binding) for f in t.flows.values()]
        if len(flows) <= chunk:
            lines = self._removal_lines()
            return [lines] if lines else []
        dels = [f"flow delete_strict {f.match_text()}" for f in flows]
        out = [dels[i:i + chunk] for i in range(0, len(dels), chunk)]
        out.append([f"flow delete reg0={self.vr_id}"]
                   + [f"group delete group_id={g}" for g in self._routes.groups])
        return out

    def _done(self, st: SyncStats) -> None:
        self.syncs += 1
        self.last = st
        st.at = time.time()
        if st.changes:
            self.recent.append(st)
            log.debug("%s: sync %d: %d changes, %d flows in %.3f s", self.name, self.syncs,
                      st.changes, st.flows, st.total_s)
        if self.on_sync is not None:
            self.on_sync(st)

    def set_bindings(self, bindings: list[PortBinding] | None = None,
                     tunnel: TunnelEnd | None | str = "keep") -> SyncStats:
        """Change the interface bindings and/or the tunnel end, and apply the difference
        (only binding flows change: cheap whatever the size of the routing table)."""
        with self._lock:
            if bindings is not None:
                self.bindings = list(bindings)
            if tunnel != "keep":
                self.tunnel = cast("TunnelEnd | None", tunnel)  # "keep" is the only string it takes
            binding = self._binding_tables()
            t0 = time.monotonic()
            n, install_s = apply_changes(self.bridge, diff_bundle(self._binding, binding))
            self._binding = binding
            return SyncStats(flows=len(self._routes.flows) + len(binding.flows),
                             groups=len(self._routes.groups), changes=n, install_s=install_s,
                             total_s=time.monotonic() - t0)

    def fib_state(self) -> tuple[set[str], int]:
        """(destination prefixes in the FIB it follows, bundle lines a sync would send now):
        0 lines means the bridge forwards exactly what the FIB says. Reads and translates
        the FIB without changing anything (a convergence check for small tables: it costs
        what a sync costs, minus the install)."""
        with self._lock:
            snap = fib.read_snapshot(self.fib_ns)
            tr = route_tables(self.vr_id, self.ifindex, snap, copy.deepcopy(self.groups))
            pending = len(diff_bundle(self._routes, tr.tables))
            pending += len(diff_bundle(self._binding, self._binding_tables()))
        return {r.prefix for r in snap.routes}, pending

    def routes_quiet_s(self) -> float:
        """Seconds since the VR's route flows here last changed (inf: never)."""
        t = self.routes_changed_at
        return math.inf if t is None else time.monotonic() - t

    def route_keys(self) -> set[tuple]:
        """(priority, match) of the VR's routing-table flows (to compare two data planes)."""
        with self._lock:
            return {(f.priority, f.match) for f in self._routes.flows.values()}

    def remove_all(self) -> int:
        """Delete every flow and group of this VR from the bridge; returns how many lines.
        A big share goes in several bounded transactions (see REMOVE_CHUNK): it is being
        removed, so nothing needs it to go at once."""
        with self._lock:
            flows = [f for t in (self._routes, self._binding) for f in t.flows.values()]
            if len(flows) <= REMOVE_CHUNK:
                return self._remove_batches(self._removal_batches())
            try:  # the route flows over OpenFlow directly (vroom.ofwire), same pacing
                n, _ = ofwire.delete_flows(self.bridge, flows, chunk=REMOVE_CHUNK,
                                           pause_max_s=REMOVE_PAUSE_MAX_S)
            except (OSError, ofwire.OpenFlowError) as e:
                log.warning("%s: direct OpenFlow removal failed (%s): using ovs-ofctl",
                            self.name, e)
                return self._remove_batches(self._removal_batches())
            # what is left is small: one transaction (sweep, other flows, groups)
            return n + self._remove_batches([self._removal_lines()])

    def _remove_batches(self, batches: list[list[str]]) -> int:
        """Send `_removal_batches`, pausing between them; the share is empty afterwards."""
        n = 0
        for i, lines in enumerate(batches):
            t0 = time.monotonic()
            n += apply_changes(self.bridge, lines)[0]
            if i + 1 < len(batches):  # let the switch forward between bundles
                time.sleep(min(time.monotonic() - t0, REMOVE_PAUSE_MAX_S))
        self._routes, self._binding = Tables(), Tables()
        self.groups = NextHopGroups(self.vr_id)
        return n

    # ------------------------------------------------------------------ watching
    def start(self, repopulate: bool = True) -> SyncStats:
        """Install the VR's flows and start following its FIB. With `repopulate` the VR's
        share is rebuilt from scratch; else only what differs is sent (after a
        control-path-only install that is the same bulk add, without removing anything)."""
        st = self.repopulate() if repopulate else self.sync()
        st.full = True
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"hv-{self.name}", daemon=True)
        self._thread.start()
        return st

    def follow(self, fib_ns: str, *, sync: bool = True) -> None:
        """Follow another namespace's FIB from now on (the VR moved: double data planes)."""
        with self._lock:
            self.fib_ns = fib_ns
            self._retarget.set()
            os.write(self._wake_w, b"r")
            if sync:
                self.sync()

    def pause(self) -> None:
        """Hold the watcher's syncs (changes are remembered): while another data plane is
        cloned from the same FIB, this one keeps forwarding with what it has instead of
        competing for the CPU with a full re-read of a big table."""
        self._paused.set()

    def resume(self) -> None:
        """Let the watcher sync again (at once if anything changed meanwhile)."""
        self._paused.clear()
        os.write(self._wake_w, b"r")

    def poke(self) -> None:
        """Ask for a sync soon (e.g. after changing something netlink does not report)."""
        self._dirty.set()
        os.write(self._wake_w, b"p")

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, remove_flows: bool = False) -> None:
        """Stop following the FIB; with `remove_flows` also delete the VR's flows here."""
        self._stop.set()
        with suppress(OSError):
            os.write(self._wake_w, b"s")
        if self._thread is not None:
            self._thread.join(timeout=10)
            if self._thread.is_alive():
                log.warning("%s: watcher thread did not stop", self.name)
            self._thread = None
        if remove_flows:
            self.remove_all()

    def close(self) -> None:
        """Stop following the FIB. A share bigger than REMOVE_CHUNK flows is removed first,
        in bounded transactions: the bridge is usually deleted next, and ovs-vswitchd
        deleting a bridge with 250,000 flows stops every bridge on the machine for ~4 s."""
        self.stop()
        if len(self._routes.flows) + len(self._binding.flows) > REMOVE_CHUNK:
            try:
                self.remove_all()
            except Exception as e:  # the bridge may be gone already
                log.debug("%s: removing the share before closing: %s", self.name, e)
        for fd in (self._wake_r, self._wake_w):
            with suppress(OSError):
                os.close(fd)

    def _open_socket(self) -> socket.socket:
        s = socket_in_netns(_netns_path(self.fib_ns), socket.AF_NETLINK, socket.SOCK_RAW,
                            socket.NETLINK_ROUTE)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind((0, WATCH_GROUPS))
        s.setblocking(False)
        return s

    def _drain(self, s: socket.socket) -> bool:
        """Read every pending message; True if anything (or an overflow) was there."""
        got = False
        while True:
            try:
                if not s.recv(1 << 16):
                    return got
                got = True
            except BlockingIOError:
                return got
            except OSError as e:
                if e.errno == errno.ENOBUFS:  # overflow: a full sync catches up anyway
                    got = True
                    continue
                raise

    def _run(self) -> None:
        sock: socket.socket | None = None
        try:
            sock = self._open_socket()
            next_resync = time.monotonic() + self.resync_s
            first_change: float | None = None
            last_change = 0.0
            while not self._stop.is_set():
                if self._retarget.is_set():
                    self._retarget.clear()
                    sock.close()
                    sock = self._open_socket()
                    first_change = None
                now = time.monotonic()
                if self._paused.is_set():
                    timeout = 0.2  # only listening; resume() wakes us
                elif first_change is not None:
                    timeout = max(0.0, min(last_change + self.debounce_s,
                                           first_change + self.max_delay_s) - now)
                else:
                    timeout = max(0.0, next_resync - now)
                r, _, _ = select.select([sock, self._wake_r], [], [], timeout)
                now = time.monotonic()
                if self._wake_r in r:
                    os.read(self._wake_r, 64)
                if sock in r and self._drain(sock) or self._dirty.is_set():
                    self._dirty.clear()
                    first_change = first_change or now
                    last_change = now
                    continue
                due = first_change is not None and (now >= last_change + self.debounce_s
                                                    or now >= first_change + self.max_delay_s)
                if self._paused.is_set():
                    continue  # changes stay in first_change for resume()
                if due or now >= next_resync:
                    first_change = None
                    next_resync = now + self.resync_s
                    try:
                        self.sync()
                    except Exception as e:  # keep following; the next sync retries
                        msg = f"{type(e).__name__}: {e}"
                        self.errors.append(msg)
                        log.warning("%s: sync failed: %s", self.name, msg)
                        first_change = time.monotonic()
                        last_change = first_change + 0.5
        except Exception as e:
            self.errors.append(f"watcher died: {type(e).__name__}: {e}")
            log.error("%s: watcher died: %s", self.name, e)
        finally:
            if sock is not None:
                sock.close()
