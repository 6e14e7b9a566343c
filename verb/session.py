"""One BGP session over one TCP connection: OPEN exchange, KEEPALIVE and hold timers,
NOTIFICATION on errors (RFC 4271 section 8, the parts a terminating hypervisor needs).

The hypervisor holds two kinds: with a real neighbour (as the router) and with a replica
(as that neighbour). Both are this class; who speaks as whom is the `Identity`.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from . import bgp
from .bgp import BgpError, OpenInfo

log = logging.getLogger(__name__)

READ_BATCH = 32  # messages handled per loop pass when already buffered (see Session.read)


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
        self.reads = 0  # messages returned by `read` (see READ_BATCH)
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
        self._timer = asyncio.get_running_loop().create_task(self._timers())

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
        """The next UPDATE or ROUTE-REFRESH; SessionClosed when the session ends, BgpError
        when the peer broke the protocol (the caller sends the NOTIFICATION: `fail`).

        Yields to the event loop once every READ_BATCH messages: a burst from one peer must
        not starve the other sessions' KEEPALIVEs (the unfair-event-handler bug the paper
        cites), yet yielding after each one made every replica session relay one message per
        write (those writes, each charged with the replica's TCP receive, led the profile)
        and drained a replica's full-table stream so slowly that GoBGP's writes timed out."""
        self.reads += 1
        if self.reads % READ_BATCH == 0:
            await asyncio.sleep(0)
        while True:
            try:
                msg = await bgp.read_message(self.reader)
            except (asyncio.IncompleteReadError, ConnectionError) as e:
                raise SessionClosed(self._closed_why(f"connection closed ({type(e).__name__})")) from None
            self.last_rx = time.monotonic()
            t = bgp.msg_type(msg)
            if t == bgp.KEEPALIVE:
                continue
            if t == bgp.NOTIFICATION:
                self.received_notification = bgp.parse_notification(msg)
                code, sub, _ = self.received_notification
                raise SessionClosed(f"peer sent NOTIFICATION {code}/{sub}")
            if t == bgp.OPEN:
                raise BgpError(5, 3, why="OPEN in Established")
            return msg

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
            self._timer.cancel()
        if not self.writer.is_closing():
            self.writer.close()

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()
