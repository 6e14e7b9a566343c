"""One BGP session over one TCP connection: OPEN exchange, KEEPALIVE and hold timers,
NOTIFICATION on errors (RFC 4271 section 8, the parts a terminating hypervisor needs).

The hypervisor holds two kinds: with a real neighbour (as the router) and with a replica
(as that neighbour). Both are this class; who speaks as whom is the `Identity`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass

from . import bgp
from .bgp import BgpError, OpenInfo
from .tasks import start_owned

log = logging.getLogger(__name__)

READ_BUDGET = 32 << 10  # bytes of messages handled per session and loop pass (see Session.read_batch)


class SessionClosed(Exception):
    """The session ended (peer NOTIFICATION, TCP closed, hold timer, local close)."""


@dataclass(frozen=True)
class Identity:
    """Who this end of the session claims to be."""

    asn: int
    router_id: str
    hold: int = 9
    keepalive: int | None = None  # None: a third of the negotiated hold time
    four_octet: bool = True


class Session:
    """A BGP session; `open()` then `confirm()` bring it to Established, `read()` yields
    UPDATE (and ROUTE-REFRESH) messages, KEEPALIVEs are handled here."""

    def __init__(self, name: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 local: Identity, peer_asn: int | None, outgoing: bool):
        self.name = name
        self.reader, self.writer = reader, writer
        self.local = local
        self.peer_asn = peer_asn
        self.outgoing = outgoing
        self.state = "Connect"
        self.peer: OpenInfo | None = None
        self.hold = 0
        self.as4 = False
        self.last_rx = time.monotonic()
        self.close_reason = ""
        self._ready: deque[bytes] = deque()  # whole messages received, not yet handled
        self._partial = b""  # the start of a message still arriving
        self._error: BgpError | None = None  # a broken header, raised after what preceded it
        self.sent_notification: tuple[int, int] | None = None
        self.received_notification: tuple[int, int, bytes] | None = None
        self.established_at: float | None = None
        self._timer: asyncio.Task | None = None

    def __repr__(self) -> str:
        return f"<Session {self.name} {self.state}>"

    # ----- the OPEN exchange -----
    async def open(self, timeout: float = 30.0) -> OpenInfo:
        """Send our OPEN, receive and check the peer's; returns it (state OpenConfirm)."""
        self.send(bgp.make_open(self.local.asn, self.local.hold, self.local.router_id,
                                self.local.four_octet))
        self.state = "OpenSent"
        msg = await self._next(timeout)
        if bgp.msg_type(msg) != bgp.OPEN:
            raise BgpError(5, 1, why=f"expected OPEN, got type {bgp.msg_type(msg)}")
        info = bgp.parse_open(msg)
        if self.peer_asn is not None and info.asn != self.peer_asn:
            raise BgpError(2, 2, why=f"peer AS {info.asn}, expected {self.peer_asn}")
        self.peer = info
        self.hold = min(self.local.hold, info.hold)
        self.as4 = self.local.four_octet and info.four_octet
        self.state = "OpenConfirm"
        return info

    async def confirm(self, timeout: float = 30.0) -> None:
        """Send KEEPALIVE, wait for the peer's: Established; the timers start."""
        self.send(bgp.keepalive())
        msg = await self._next(timeout if not self.hold else min(timeout, self.hold))
        if bgp.msg_type(msg) != bgp.KEEPALIVE:
            raise BgpError(5, 2, why=f"expected KEEPALIVE, got type {bgp.msg_type(msg)}")
        self.state = "Established"
        self.established_at = time.time()
        self.last_rx = time.monotonic()
        start_owned(self, "_timer", self._timers())

    async def _next(self, timeout: float) -> bytes:
        """The next message of any type but NOTIFICATION (which ends the session)."""
        try:
            msg = await asyncio.wait_for(bgp.read_message(self.reader), timeout)
        except asyncio.TimeoutError:
            raise BgpError(4, 0, why="hold timer expired during the OPEN exchange") from None
        except (asyncio.IncompleteReadError, ConnectionError) as e:
            raise SessionClosed(self._closed_why(f"connection closed ({type(e).__name__})")) from None
        self.last_rx = time.monotonic()
        if bgp.msg_type(msg) == bgp.NOTIFICATION:
            self.received_notification = bgp.parse_notification(msg)
            code, sub, _ = self.received_notification
            raise SessionClosed(f"peer sent NOTIFICATION {code}/{sub}")
        return msg

    def _closed_why(self, default: str) -> str:
        return self.close_reason or default

    # ----- Established -----
    async def read(self) -> bytes:
        """The next UPDATE or ROUTE-REFRESH (see `read_batch`: nothing once we closed)."""
        while True:
            if self.close_reason:
                raise SessionClosed(self.close_reason)
            if self._ready:
                msg = self._ready.popleft()
                if self._deliverable(msg):
                    return msg
            else:
                await self._fill()

    async def read_batch(self) -> list[bytes]:
        """The UPDATEs and ROUTE-REFRESHes received so far, in order, up to about
        READ_BUDGET bytes (waits for at least one); SessionClosed when the session ends,
        BgpError when the peer broke the protocol (the caller sends the NOTIFICATION:
        `fail`), each after the messages that came before it.

        Yields to the event loop first: every session gets a turn per loop pass, so a
        burst from one peer does not starve the other sessions' KEEPALIVEs (the
        unfair-event-handler bug the paper cites). The budget is in bytes, not messages:
        GoBGP sends one prefix per UPDATE where FRR and BIRD pack several, and a turn of
        so many messages left GoBGP's stream voted ever later than the others (outvoted
        during a 100k load).

        Once we have closed the session (`close`, `fail`), nothing more is delivered, not
        even what was already received: a replica being replaced must cast no vote after
        the recovery forgot its votes (a 1M-prefix GoBGP closed mid-load had megabytes
        buffered, and their votes outlived the recovery into the next generation)."""
        await asyncio.sleep(0)
        out: list[bytes] = []
        while True:
            if self.close_reason:
                raise SessionClosed(self.close_reason)
            while self._ready:
                msg = self._ready[0]
                try:
                    keep = self._deliverable(msg)
                except (SessionClosed, BgpError):
                    if out:  # what came before the end is delivered first
                        return out
                    self._ready.popleft()
                    raise
                self._ready.popleft()
                if keep:
                    out.append(msg)
            if out:
                return out
            await self._fill()

    def _deliverable(self, msg: bytes) -> bool:
        """False for a KEEPALIVE (handled: the hold timer was reset on arrival), True for
        what the caller handles; raises for the messages that end the session."""
        t = bgp.msg_type(msg)
        if t == bgp.KEEPALIVE:
            return False
        if t == bgp.NOTIFICATION:
            self.received_notification = bgp.parse_notification(msg)
            code, sub, _ = self.received_notification
            raise SessionClosed(f"peer sent NOTIFICATION {code}/{sub}")
        if t == bgp.OPEN:
            raise BgpError(5, 3, why="OPEN in Established")
        return True

    async def _fill(self) -> None:
        """Split what the connection has delivered (up to READ_BUDGET bytes) into whole
        messages; a broken header ends the session after the whole messages before it."""
        if self._error is not None:
            raise self._error
        try:
            data = await self.reader.read(READ_BUDGET)
        except ConnectionError as e:
            raise SessionClosed(self._closed_why(f"connection closed ({type(e).__name__})")) from None
        if not data:
            raise SessionClosed(self._closed_why("connection closed (end of stream)"))
        buf = self._partial + data if self._partial else data
        pos, n = 0, len(buf)
        try:
            while n - pos >= bgp.HEADER_LEN:
                length, _ = bgp.check_header(buf[pos:pos + bgp.HEADER_LEN])
                if n - pos < length:
                    break
                self._ready.append(buf[pos:pos + length])
                pos += length
        except BgpError as e:
            self._error = e
            if not self._ready:
                raise
        self._partial = buf[pos:]
        if pos:
            self.last_rx = time.monotonic()

    def send(self, msg: bytes) -> None:
        if not self.writer.is_closing():
            self.writer.write(msg)

    async def drain(self) -> None:
        try:
            await self.writer.drain()
        except ConnectionError as e:
            raise SessionClosed(self._closed_why(f"connection lost ({type(e).__name__})")) from None

    async def _timers(self) -> None:
        """KEEPALIVE every keepalive interval; NOTIFICATION 4/0 when the hold timer expires."""
        if not self.hold:
            return
        ka = self.hold / 3 if self.local.keepalive is None else min(self.local.keepalive, self.hold / 3)
        next_ka = time.monotonic() + ka
        while not self.writer.is_closing():
            now = time.monotonic()
            if now - self.last_rx > self.hold:
                log.warning("%s: hold timer expired (%.1fs without a message)", self.name,
                            now - self.last_rx)
                self.fail(BgpError(4, 0, why="hold timer expired"))
                return
            if now >= next_ka:
                self.send(bgp.keepalive())
                next_ka = now + ka
            await asyncio.sleep(min(0.2, max(0.01, next_ka - now)))

    # ----- ending -----
    def fail(self, err: BgpError) -> None:
        """Send the NOTIFICATION an error calls for and close the connection."""
        log.info("%s: sending NOTIFICATION %d/%d: %s", self.name, err.code, err.subcode, err)
        self.sent_notification = (err.code, err.subcode)
        self.send(err.notification())
        self.close(f"sent NOTIFICATION {err.code}/{err.subcode}: {err}")

    def cease(self, subcode: int, reason: str) -> None:
        self.fail(BgpError(6, subcode, why=reason))

    def close(self, reason: str = "closed locally") -> None:
        if not self.close_reason:
            self.close_reason = reason
        self.state = "Idle"
        if self._timer is not None and self._timer is not asyncio.current_task():
            self._timer.cancel()  # let go of once it has ended (verb.tasks.start_owned)
        if not self.writer.is_closing():
            self.writer.close()

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()
