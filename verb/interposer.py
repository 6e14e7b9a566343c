"""The socket-level interposer: one real session per neighbour, one session per replica.

The hypervisor terminates each neighbour's BGP session in the router's forwarding namespace
(`Neighbor`). For every live replica it holds a session standing in for that neighbour
(`Endpoint`): it connects from the neighbour's own address, in the replica's private
hypervisor-side namespace, to the replica, and speaks with the neighbour's AS number and
BGP identifier, offering exactly the capabilities negotiated with the neighbour so the bytes
it relays mean the same on both sessions.

Incoming: every UPDATE from a neighbour is checked, recorded in that neighbour's replay log
and relayed verbatim, in order, to every replica (each endpoint walks the log with its own
cursor, so a new replica first replays the log and then follows live).
Outgoing: each replica's UPDATEs towards a neighbour are normalized per prefix and fed to the
update voter; the voted changes go to the neighbour as freshly encoded UPDATEs.
KEEPALIVEs are local to each session; a NOTIFICATION or a broken session on one side never
crosses to the other, except that a neighbour's session ending closes the replicas'
sessions standing in for it (so the replicas withdraw what they learnt from it).
"""
from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Callable

from routerlab.daemons.spec import BgpNeighbor, RouterSpec

from . import bgp
from .bgp import BgpError, RouteAttrs
from .core import Voter, VoterConfig
from .core.replay import Entry, ReplayLog
from .netutil import listen_socket, tcp_socket
from .session import Identity, Session, SessionClosed
from .tasks import start_owned
from .timeslice import in_slices

log = logging.getLogger(__name__)

BGP_PORT = 179
# How far the hypervisor reads a replica's stream ahead of voting it (the StreamReader
# pauses the socket at twice this): GoBGP drops a session whose writes block for longer
# than the hold time, and with a full table three replicas write faster than the
# hypervisor votes, so their output waits in our memory, not in their blocked writes.
REPLICA_READ_AHEAD = 64 << 20
# fault injection only: (message as the replica sent it, neighbour) -> what it "really" sent
Tamper = Callable[[bytes, str], list[bytes]]


@dataclass
class NeighborStats:
    established_count: int = 0
    accepted: int = 0
    connected: int = 0
    updates_in: int = 0
    updates_out: int = 0
    notifications_sent: int = 0
    last_down: str = ""


class Neighbor:
    """A real neighbour and the one session the router holds with it."""

    def __init__(self, ix: "Interposer", cfg: BgpNeighbor, local: str):
        self.ix = ix
        self.cfg = cfg
        self.peer = cfg.peer
        self.local = local
        self.session: Session | None = None
        self.info: bgp.OpenInfo | None = None
        self.as4 = True
        self.log = ReplayLog(bgp.encode_announce)
        self.advertised: dict[str, RouteAttrs] = {}  # the voted Adj-RIB-Out
        self.stats = NeighborStats()
        self._confirming: Session | None = None
        self._task: asyncio.Task | None = None

    @property
    def established(self) -> bool:
        return self.session is not None and self.session.state == "Established"

    def identity(self) -> Identity:
        s = self.ix.spec
        return Identity(s.asn, s.router_id, self.cfg.hold, self.cfg.keepalive)

    def start(self) -> None:
        if not self.cfg.passive:
            start_owned(self, "_task", self._connect_loop())

    async def _connect_loop(self) -> None:
        while True:
            if self.session is None and self._confirming is None:
                sock = tcp_socket(self.ix.fwd_ns, self.local)
                try:
                    await asyncio.wait_for(
                        asyncio.get_running_loop().sock_connect(sock, (self.peer, BGP_PORT)), 5)
                    reader, writer = await asyncio.open_connection(sock=sock)
                    self.stats.connected += 1
                    asyncio.get_running_loop().create_task(self.handshake(reader, writer, True))
                except (OSError, asyncio.TimeoutError) as e:
                    sock.close()
                    log.debug("neighbour %s: connect: %s", self.peer, e)
            await asyncio.sleep(self.cfg.connect_retry)

    async def handshake(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        outgoing: bool) -> None:
        """OPEN exchange with collision resolution (RFC 4271 6.8), then the session's life."""
        s = Session(f"neighbour {self.peer}", reader, writer, self.identity(), self.cfg.asn, outgoing)
        if self.session is not None:
            s.cease(7, "a session is already established")
            return
        try:
            info = await s.open()
            other = self._confirming
            if other is not None and not other.closed:
                keep_outgoing = int(ipaddress.IPv4Address(self.ix.spec.router_id)) > \
                    int(ipaddress.IPv4Address(info.router_id))
                loser = s if s.outgoing != keep_outgoing else other
                loser.cease(7, "connection collision resolution")
                if loser is s:
                    return
            self._confirming = s
            await s.confirm()
        except BgpError as e:
            self.stats.notifications_sent += 1
            s.fail(e)
            return
        except (SessionClosed, OSError) as e:
            s.close(str(e))
            return
        finally:
            if self._confirming is s:
                self._confirming = None
        if self.session is not None:
            s.cease(7, "lost the race to an established session")
            return
        await self._established(s)

    async def _established(self, s: Session) -> None:
        self.session, self.info, self.as4 = s, s.peer, s.as4
        self.stats.established_count += 1
        log.info("neighbour %s (AS %s, id %s) Established, hold %ss", self.peer, self.info.asn,
                 self.info.router_id, s.hold)
        self.ix.neighbor_up(self)
        if self.advertised:
            self._send(list(self.advertised.items()))
        reason = ""
        try:
            while True:
                for msg in await s.read_batch():
                    if bgp.msg_type(msg) == bgp.UPDATE:
                        u = bgp.parse_update(msg, s.as4)
                        self.log.append(Entry(msg, tuple(u.withdrawn), u.attrs if u.nlri else None,
                                              tuple(u.nlri)))
                        self.stats.updates_in += 1
                        self.ix.observe("neighbour-update", self.peer, u)
        except BgpError as e:
            self.stats.notifications_sent += 1
            reason = f"sent NOTIFICATION {e.code}/{e.subcode}: {e}"
            s.fail(e)
        except SessionClosed as e:
            reason = str(e)
            s.close(reason)
        except Exception as e:  # a hypervisor bug: end this session only, loudly
            log.exception("neighbour %s", self.peer)
            reason = f"internal error: {e!r}"
            s.cease(0, reason)
        finally:
            log.warning("neighbour %s: session down: %s", self.peer, reason or s.close_reason)
            self.stats.last_down = reason or s.close_reason
            self.session = None
            self.log.clear()
            self.ix.neighbor_down(self)

    def advertise(self, changes: list[tuple[str, RouteAttrs | None]]) -> None:
        """Voted changes of the Adj-RIB-Out towards this neighbour."""
        final = dict(changes)  # within one batch only the last word per prefix counts
        for p, a in final.items():
            if a is None:
                self.advertised.pop(p, None)
            else:
                self.advertised[p] = a
        if self.established:
            self._send(list(final.items()))

    def _send(self, changes: list[tuple[str, RouteAttrs | None]]) -> None:
        assert self.session is not None
        msgs = bgp.encode_changes(changes, self.as4)
        self.session.send(b"".join(msgs))  # one write (a syscall through the stack) per batch
        self.stats.updates_out += len(msgs)
        self.ix.observe("advertised", self.peer, changes)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self.session is not None:
            self.session.cease(2, "administrative shutdown")


def replica_votes(updates: list[bgp.Update], peer: str, peer_asn: int, as4: bool,
                  holds: Callable[[tuple[str, str]], bool]) -> dict[tuple[str, str], RouteAttrs | None]:
    """What a batch of one replica's UPDATEs towards neighbour `peer` changes in its votes:
    (peer, prefix) -> announced content, or None (absent); per key only the last word counts
    (a best path that flipped within the batch is one vote). `holds(key)`: whether the
    voter holds a value from this replica for the key."""
    batch: dict[tuple[str, str], RouteAttrs | None] = {}
    for u in updates:
        attrs = bgp.normalize(u, as4)
        if attrs is not None and bgp.has_as(attrs, peer_asn):
            # The neighbour would drop it (AS-path loop detection, RFC 4271 9.1.2): some
            # implementations (FRR) send routes back to where they came from, some do not.
            attrs = None
        # "absent" where neither the voter nor this batch holds anything from the replica
        # changes no vote: a full table sent back to the neighbours it came from (looped,
        # so absent) is most of what the replicas send, and is not voted key by key
        for p in u.withdrawn if attrs is not None else u.withdrawn + u.nlri:
            key = (peer, p)
            if key in batch or holds(key):
                batch[key] = None
        if attrs is not None:
            for p in u.nlri:
                batch[(peer, p)] = attrs
    return batch


class Endpoint:
    """The hypervisor's session with one replica, standing in for one neighbour."""

    CONNECT_TIMEOUT = 60.0

    def __init__(self, ix: "Interposer", nb: Neighbor, replica: str, hv_ns: str):
        self.ix, self.nb, self.replica, self.hv_ns = ix, nb, replica, hv_ns
        self.session: Session | None = None
        self.expected_close = False
        self.announced: set[str] = set()
        self.caught_up = False
        self.sent = 0
        self._wake = asyncio.Event()
        self._cursor = None
        self.task: asyncio.Task | None = None
        start_owned(self, "task", self._run())

    def __repr__(self) -> str:
        return f"<Endpoint {self.replica}<->{self.nb.peer}>"

    async def _connect(self) -> Session:
        """Connect from the neighbour's address to the replica (passive) until it answers."""
        assert self.nb.info is not None
        deadline = time.monotonic() + self.CONNECT_TIMEOUT
        loop = asyncio.get_running_loop()
        while True:
            sock = tcp_socket(self.hv_ns, self.nb.peer)
            try:
                await asyncio.wait_for(loop.sock_connect(sock, (self.nb.local, BGP_PORT)), 3)
                break
            except (OSError, asyncio.TimeoutError):
                sock.close()
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        reader, writer = await asyncio.open_connection(sock=sock, limit=REPLICA_READ_AHEAD)
        me = Identity(self.nb.info.asn, self.nb.info.router_id, self.ix.replica_hold, 1, self.nb.as4)
        return Session(f"replica {self.replica} as {self.nb.peer}", reader, writer, me,
                       self.ix.spec.asn, True)

    async def _run(self) -> None:
        fault = ""
        sender = None
        try:
            self.session = s = await self._connect()
            await s.open()
            if s.as4 != self.nb.as4:  # the relayed bytes would mean something else to it
                raise BgpError(2, 7, why="the replica does not negotiate the neighbour's AS width")
            await s.confirm()
            log.info("%s Established", s.name)
            sender = asyncio.get_running_loop().create_task(self._send_loop(s))
            await self._read_loop(s)
        except BgpError as e:
            fault = f"protocol error: {e} (NOTIFICATION {e.code}/{e.subcode})"
            if self.session is not None:
                self.session.fail(e)
        except SessionClosed as e:
            fault = str(e)
        except (OSError, asyncio.TimeoutError) as e:
            fault = f"cannot connect: {e!r}"
        except Exception as e:  # whatever a replica sends, the hypervisor stays up
            log.exception("%r", self)
            fault = f"unexpected error: {e!r}"
        finally:
            if sender is not None:
                sender.cancel()
            if self.session is not None:
                self.session.close(fault or "closed by the hypervisor")
            if fault and not self.expected_close:
                log.warning("replica %s (as %s): %s", self.replica, self.nb.peer, fault)
                self.ix.on_fault(self.replica, f"session as {self.nb.peer}: {fault}")
            voter = self.ix.update_voter
            if self.replica in voter.voting and \
                    self.ix.endpoints.get((self.replica, self.nb.peer)) in (self, None):
                # a healthy replica's stand-in for a neighbour that went down: what it sent
                # that neighbour is gone (a faulty replica's votes are dropped by the manager;
                # a newer endpoint would own its votes)
                await in_slices([((self.nb.peer, p), None) for p in self.announced],
                                lambda gone: voter.update(self.replica, gone))
            self.announced.clear()
            self.ix.endpoint_gone(self)

    async def _send_loop(self, s: Session) -> None:
        """Relay the neighbour's recorded stream, from its start, then live, in order."""
        cur = self.nb.log.cursor()
        self.nb.log.listeners.append(self._wake.set)
        try:
            while True:
                batch = cur.take(256)
                if batch:
                    s.send(b"".join(e.message for e in batch))  # one write, not one per message
                    self.sent += len(batch)
                    await s.drain()
                    continue
                self._wake.clear()
                if cur.caught_up:
                    self.caught_up = True
                    await self._wake.wait()
        except SessionClosed:
            pass
        finally:
            cur.close()
            self.nb.log.listeners.remove(self._wake.set)

    async def _read_loop(self, s: Session) -> None:
        while True:
            msgs = await s.read_batch()  # framing and headers already checked
            tamper = self.ix.tampers.get(self.replica)
            if tamper is not None:  # what the faulty replica "really" sent
                msgs = [m for msg in msgs for m in tamper(msg, self.nb.peer)]
            updates: list[bgp.Update] = []
            try:
                for m in msgs:
                    if tamper is not None:
                        length, _ = bgp.check_header(m[:bgp.HEADER_LEN])
                        if length != len(m):
                            raise BgpError(1, 2, m[16:18], "message length does not match its header")
                    if bgp.msg_type(m) == bgp.UPDATE:
                        updates.append(bgp.parse_update(m, s.as4))
            finally:  # what came before a broken message counts, as if read one by one
                if updates:
                    self._on_updates(updates)

    def _on_updates(self, updates: list[bgp.Update]) -> None:
        """A batch of the replica's UPDATEs towards the neighbour, voted as one."""
        me = self.replica
        batch = replica_votes(updates, self.nb.peer, self.nb.cfg.asn,
                              self.session.as4 if self.session else True,
                              self.ix.update_voter.holds(me))
        for (_, p), attrs in batch.items():
            (self.announced.discard if attrs is None else self.announced.add)(p)
        changes = list(batch.items())
        self.ix.observe("replica-update", me, (self.nb.peer, changes))
        self.ix.update_voter.update(me, changes)

    def close(self, notify: tuple[int, int] | None = (6, 2)) -> None:
        """An expected close (the neighbour went down, the replica is being replaced)."""
        self.expected_close = True
        if self.session is not None and not self.session.closed:
            if notify:
                self.session.fail(BgpError(*notify, why="closed by the hypervisor"))
            else:
                self.session.close()
        elif self.task is not None:
            self.task.cancel()


class Interposer:
    """Every neighbour's real session, every replica's stand-in sessions, the update voter."""

    def __init__(self, spec: RouterSpec, fwd_ns: str, voter: VoterConfig,
                 on_fault: Callable[[str, str], None], replica_hold: int = 3):
        self.spec = spec
        self.fwd_ns = fwd_ns
        self.on_fault = on_fault
        self.replica_hold = replica_hold
        self.update_voter = Voter(voter, self._emit)
        self.neighbors: dict[str, Neighbor] = {}
        for nb in spec.bgp_neighbors:
            local = spec.local_address_for(nb)
            if local is None:
                raise ValueError(f"{spec.name}: neighbour {nb.peer} is on no interface's subnet")
            self.neighbors[nb.peer] = Neighbor(self, nb, local)
        self.replicas: dict[str, str] = {}  # live replica -> its hypervisor-side namespace
        self.endpoints: dict[tuple[str, str], Endpoint] = {}
        self.observers: list[Callable[[str, str, object], None]] = []
        self.tampers: dict[str, Tamper] = {}  # replica -> its fault (faults.py only)
        self._out: list = []  # voted changes not yet sent (`_emit`)
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        sock = listen_socket(self.fwd_ns, "0.0.0.0", BGP_PORT)
        self._server = await asyncio.start_server(self._accept, sock=sock)
        for nb in self.neighbors.values():
            nb.start()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")[0]
        nb = self.neighbors.get(peer)
        if nb is None:
            log.info("refusing a BGP connection from unknown %s", peer)
            writer.close()
            return
        nb.stats.accepted += 1
        await nb.handshake(reader, writer, False)

    async def stop(self) -> None:
        for ep in list(self.endpoints.values()):
            ep.close()
        for nb in self.neighbors.values():
            nb.stop()
        if self._server is not None:
            self._server.close()
        await asyncio.sleep(0.05)  # let the NOTIFICATIONs go out

    # ----- replicas come and go -----
    def attach(self, replica: str, hv_ns: str) -> None:
        """A replica's daemon is up: open its sessions for every established neighbour."""
        self.replicas[replica] = hv_ns
        self.tampers.pop(replica, None)  # a new replica does not inherit the old one's bug
        for nb in self.neighbors.values():
            if nb.established:
                self._open(replica, nb)

    def detach(self, replica: str) -> None:
        """A replica is going away: close its sessions (no fault)."""
        self.replicas.pop(replica, None)
        for (r, _), ep in list(self.endpoints.items()):
            if r == replica:
                ep.close()

    def synced(self, replica: str) -> bool:
        """Every established neighbour's stream has been replayed to the replica."""
        return all((replica, nb.peer) in self.endpoints
                   and self.endpoints[(replica, nb.peer)].caught_up
                   for nb in self.neighbors.values() if nb.established)

    def _open(self, replica: str, nb: Neighbor) -> None:
        old = self.endpoints.get((replica, nb.peer))
        if old is not None:
            old.close()
        self.endpoints[(replica, nb.peer)] = Endpoint(self, nb, replica, self.replicas[replica])

    def endpoint_gone(self, ep: Endpoint) -> None:
        if self.endpoints.get((ep.replica, ep.nb.peer)) is ep:
            del self.endpoints[(ep.replica, ep.nb.peer)]

    # ----- neighbours come and go -----
    def neighbor_up(self, nb: Neighbor) -> None:
        for r in self.replicas:
            self._open(r, nb)

    def neighbor_down(self, nb: Neighbor) -> None:
        for (_replica, peer), ep in list(self.endpoints.items()):
            if peer == nb.peer:
                ep.close()

    # ----- voted output -----
    def _emit(self, changes: list) -> None:
        """Voted changes go out once the loop has run every callback already ready: the
        votes of all replica UPDATEs read in one loop pass leave as one write per neighbour
        (in order; no added wait)."""
        if not self._out:
            asyncio.get_running_loop().call_soon(self._send_voted)
        self._out += changes

    def _send_voted(self) -> None:
        changes, self._out = self._out, []
        by_peer: dict[str, list] = {}
        for (peer, prefix), attrs in changes:
            by_peer.setdefault(peer, []).append((prefix, attrs))
        for peer, ch in by_peer.items():
            self.neighbors[peer].advertise(ch)

    def observe(self, kind: str, who: str, what: object) -> None:
        """Tell the observers (measurements) what happened; never lets them break us."""
        for fn in self.observers:
            try:
                fn(kind, who, what)
            except Exception:  # an observer's bug must not take a session down
                log.exception("observer failed on %s", kind)

    def status(self) -> dict:
        return {"neighbors": {p: {"established": nb.established,
                                  "peer_id": nb.info.router_id if nb.info else None,
                                  "advertised": len(nb.advertised), "log_entries": len(nb.log.entries),
                                  "adj_rib_in": len(nb.log.rib), **vars(nb.stats)}
                              for p, nb in self.neighbors.items()},
                "endpoints": {f"{r}/{p}": {"state": ep.session.state if ep.session else "Connect",
                                           "caught_up": ep.caught_up, "sent": ep.sent,
                                           "announced": len(ep.announced)}
                              for (r, p), ep in self.endpoints.items()}}
