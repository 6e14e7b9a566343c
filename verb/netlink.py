"""A raw rtnetlink socket for IPv4 routes: notifications and dumps, decoded by hand.

pyroute2 decodes a route message in a few hundred microseconds, far too slow for the
hypervisor, which follows two kernel FIBs taking a full table each (PLATFORM.md: use it for
events and small queries, not bulk work). Route messages are small and fixed in shape
(nlmsghdr, rtmsg, rtattrs: rtnetlink(7)), so they are decoded here directly; pyroute2
stays in use for links and for writing the real FIB.
"""
from __future__ import annotations

import asyncio
import socket
import struct

from .netutil import in_netns
from .timeslice import TimeSlice

NETLINK_ROUTE = 0
RTMGRP_IPV4_ROUTE = 0x40
RTM_NEWROUTE, RTM_DELROUTE, RTM_GETROUTE = 24, 25, 26
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTA_DST, RTA_OIF, RTA_GATEWAY, RTA_PRIORITY, RTA_MULTIPATH, RTA_TABLE = 1, 4, 5, 6, 9, 15
SO_RCVBUFFORCE = 33
_NLMSGHDR = struct.Struct("=IHHII")
_RTMSG = struct.Struct("=BBBBBBBBI")
_RTATTR = struct.Struct("=HH")
_RTNH = struct.Struct("=HBBi")
_U32 = struct.Struct("=I")
_I32 = struct.Struct("=i")


class RouteMsg:
    """One decoded IPv4 route message (slots, no dataclass: a full table makes millions)."""

    __slots__ = ("new", "dst", "dst_len", "table", "proto", "type", "priority", "gateway",
                 "oif", "multipath")

    def __init__(self, new: bool, dst: str, dst_len: int, table: int, proto: int, type: int,
                 priority: int = 0, gateway: str | None = None, oif: int | None = None,
                 multipath: list[tuple[str | None, int]] | None = None):
        self.new, self.dst, self.dst_len, self.table, self.proto, self.type = \
            new, dst, dst_len, table, proto, type
        self.priority, self.gateway, self.oif = priority, gateway, oif
        self.multipath: list[tuple[str | None, int]] = multipath or []

    def __repr__(self) -> str:
        return f"RouteMsg({'new' if self.new else 'del'} {self.prefix} table {self.table} " \
               f"proto {self.proto} type {self.type} via {self.gateway} oif {self.oif})"

    @property
    def prefix(self) -> str:
        return f"{self.dst}/{self.dst_len}"


def _attrs(buf: bytes, pos: int, end: int):
    while pos + 4 <= end:
        alen, atype = _RTATTR.unpack_from(buf, pos)
        if alen < 4:
            break
        yield atype & 0x3FFF, buf[pos + 4:pos + alen]
        pos += (alen + 3) & ~3


def _ip(b: bytes) -> str:
    return socket.inet_ntoa(b if len(b) == 4 else b[:4].ljust(4, b"\0"))


def parse(buf: bytes) -> list[RouteMsg]:
    """Every IPv4 route message in a netlink datagram (others are skipped). The attribute
    walk is inline: a full table's installation is a datagram per route."""
    out = []
    pos, n = 0, len(buf)
    hdr, rtmsg, rtattr, u32 = _NLMSGHDR.unpack_from, _RTMSG.unpack_from, \
        _RTATTR.unpack_from, _U32.unpack_from
    while pos + 16 <= n:
        mlen, mtype, _, _, _ = hdr(buf, pos)
        if mlen < 16:
            break
        if (mtype == RTM_NEWROUTE or mtype == RTM_DELROUTE) and mlen >= 28:
            family, dst_len, _, _, table, proto, _, rtype, _ = rtmsg(buf, pos + 16)
            if family == socket.AF_INET:
                m = RouteMsg(mtype == RTM_NEWROUTE, "0.0.0.0", dst_len, table, proto, rtype)
                a, end = pos + 28, pos + mlen if pos + mlen <= n else n
                while a + 4 <= end:
                    alen, atype = rtattr(buf, a)
                    if alen < 4:
                        break
                    atype &= 0x3FFF
                    if atype == RTA_DST:
                        m.dst = _ip(buf[a + 4:a + alen])
                    elif atype == RTA_GATEWAY:
                        m.gateway = _ip(buf[a + 4:a + alen])
                    elif alen >= 8 and atype == RTA_OIF:
                        m.oif = _I32.unpack_from(buf, a + 4)[0]
                    elif alen >= 8 and atype == RTA_PRIORITY:
                        m.priority = u32(buf, a + 4)[0]
                    elif alen >= 8 and atype == RTA_TABLE:
                        m.table = u32(buf, a + 4)[0]
                    elif atype == RTA_MULTIPATH:
                        m.multipath = _nexthops(buf[a + 4:a + alen])
                    a += (alen + 3) & ~3
                out.append(m)
        pos += (mlen + 3) & ~3
    return out


def _nexthops(data: bytes) -> list[tuple[str | None, int]]:
    hops, pos = [], 0
    while pos + 8 <= len(data):
        nlen, _, _, ifindex = _RTNH.unpack_from(data, pos)
        if nlen < 8:
            break
        gw = next((_ip(d) for t, d in _attrs(data, pos + 8, pos + nlen) if t == RTA_GATEWAY), None)
        hops.append((gw, ifindex))
        pos += (nlen + 3) & ~3
    return hops


def is_done(buf: bytes) -> bool:
    """Whether a dump reply datagram ends the dump (NLMSG_DONE or an error)."""
    pos = 0
    while pos + 16 <= len(buf):
        mlen, mtype, _, _, _ = _NLMSGHDR.unpack_from(buf, pos)
        if mtype in (NLMSG_DONE, NLMSG_ERROR):
            return True
        if mlen < 16:
            break
        pos += (mlen + 3) & ~3
    return False


class RouteSocket:
    """An rtnetlink socket in a namespace: subscribed to IPv4 route changes, or for dumps."""

    def __init__(self, ns: str | None, groups: int = 0, rcvbuf: int = 32 << 20):
        with in_netns(ns):  # no await in between: the loop thread returns at once
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
        try:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((0, groups))
            self.sock.setblocking(False)
        except BaseException:
            self.sock.close()
            raise
        self.seq = 0
        # one receive buffer, reused: sock.recv(1 MiB) allocates and shrinks a 1 MiB bytes
        # object per datagram, ~9 us each, and a table's installation is a datagram per route
        self._buf = bytearray(1 << 20)
        self._view = memoryview(self._buf)

    async def recv(self) -> bytes:
        """The next datagram; OSError(ENOBUFS) when the kernel had to drop notifications."""
        n = await asyncio.get_running_loop().sock_recv_into(self.sock, self._buf)
        return bytes(self._view[:n])

    def pending(self, limit: int = 256) -> list[bytes]:
        """Datagrams already queued on the socket (up to `limit`), without waiting;
        OSError(ENOBUFS) as `recv`."""
        out: list[bytes] = []
        while len(out) < limit:
            try:
                out.append(bytes(self._view[:self.sock.recv_into(self._buf)]))
            except (BlockingIOError, InterruptedError):
                break
        return out

    async def dump(self, table: int | None = None) -> list[RouteMsg]:
        """Every IPv4 route (of `table`, if given)."""
        self.seq += 1
        body = _RTMSG.pack(socket.AF_INET, 0, 0, 0, 0, 0, 0, 0, 0)
        hdr = _NLMSGHDR.pack(16 + len(body), RTM_GETROUTE, NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0)
        await asyncio.get_running_loop().sock_sendall(self.sock, hdr + body)
        out: list[RouteMsg] = []
        ts = TimeSlice()  # a 1M-route dump is seconds of decoding: the loop gets turns
        while True:
            buf = await self.recv()
            out += parse(buf)
            if is_done(buf):
                break
            await ts.pause()
        return [m for m in out if table is None or m.table == table]

    def close(self) -> None:
        self.sock.close()


# ----------------------------------------------------------------------------------------
# Writing routes: requests batched into one datagram, acknowledged by sequence number
# ----------------------------------------------------------------------------------------

NLM_F_ACK, NLM_F_REPLACE, NLM_F_CREATE = 0x4, 0x100, 0x400
RT_TABLE_MAIN, RT_SCOPE_UNIVERSE, RT_SCOPE_LINK, RT_SCOPE_NOWHERE = 254, 0, 253, 255
RTN_UNICAST = 1
RTN_TYPES = {"blackhole": 6, "unreachable": 7, "prohibit": 8}


def route_request(seq: int, prefix: str, proto: int, *, delete: bool = False, rtype: int = RTN_UNICAST,
                  hops: list[tuple[str | None, int | None]] = ()) -> bytes:
    """One RTM_NEWROUTE (create or replace) or RTM_DELROUTE request for the main table."""
    addr, _, plen = prefix.partition("/")
    scope = RT_SCOPE_NOWHERE if delete else (RT_SCOPE_LINK if rtype == RTN_UNICAST and hops and
                                             all(g is None for g, _ in hops) else RT_SCOPE_UNIVERSE)
    body = _RTMSG.pack(socket.AF_INET, int(plen), 0, 0, RT_TABLE_MAIN, proto, scope,
                       0 if delete else rtype, 0)
    body += _attr(RTA_DST, socket.inet_aton(addr))
    if not delete and len(hops) == 1:
        gw, oif = hops[0]
        if gw:
            body += _attr(RTA_GATEWAY, socket.inet_aton(gw))
        if oif:
            body += _attr(RTA_OIF, struct.pack("=i", oif))
    elif not delete and hops:
        nh = b""
        for gw, oif in hops:
            inner = _attr(RTA_GATEWAY, socket.inet_aton(gw)) if gw else b""
            nh += _RTNH.pack(8 + len(inner), 0, 0, oif or 0) + inner
        body += _attr(RTA_MULTIPATH, nh)
    mtype, flags = (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK) if delete else \
        (RTM_NEWROUTE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE)
    return _NLMSGHDR.pack(16 + len(body), mtype, flags, seq, 0) + body


def _attr(t: int, data: bytes) -> bytes:
    raw = _RTATTR.pack(4 + len(data), t) + data
    return raw + b"\0" * (-len(raw) % 4)


def acks(buf: bytes) -> list[tuple[int, int]]:
    """(sequence number, errno) of every NLMSG_ERROR (an acknowledgement when errno is 0)."""
    out, pos = [], 0
    while pos + 20 <= len(buf):
        mlen, mtype, _, seq, _ = _NLMSGHDR.unpack_from(buf, pos)
        if mlen < 16:
            break
        if mtype == NLMSG_ERROR:
            out.append((seq, -struct.unpack_from("=i", buf, pos + 16)[0]))
        pos += (mlen + 3) & ~3
    return out


class RouteWriter(RouteSocket):
    """Sends route requests in batches and waits for every acknowledgement."""

    async def apply(self, requests: list[tuple[int, bytes]], batch: int = 256) -> dict[int, int]:
        """Send (seq, request) pairs; returns {seq: errno} for the failed ones."""
        failed: dict[int, int] = {}
        loop = asyncio.get_running_loop()
        for i in range(0, len(requests), batch):
            part = requests[i:i + batch]
            await loop.sock_sendall(self.sock, b"".join(r for _, r in part))
            waiting = {seq for seq, _ in part}
            while waiting:
                for seq, err in acks(await self.recv()):
                    waiting.discard(seq)
                    if err:
                        failed[seq] = err
        return failed

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq
