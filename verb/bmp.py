"""BMP (RFC 7854) as the hypervisor reads it: a daemon's Loc-RIB (RFC 9069) as BGP UPDATEs.

GoBGP writes no kernel FIB; its candidate FIB is its Loc-RIB, which it streams to a BMP
station when its `route-monitoring-policy` is `local-rib`: one Route Monitoring message per
best-path change, each carrying a BGP UPDATE (the new best path, or the withdrawal of a
prefix left without one). Reading that costs GoBGP a serialized UPDATE and a write per
change, where its gRPC monitor cost it protobuf marshalling plus a `gobgp` CLI process
decoding and printing it again (~0.8 s of CPU over VERB's 10,000-prefix trace).

GoBGP 4.8 announces its Loc-RIB first (a Peer Up of the Loc-RIB peer, RFC 9069 5.2, whose
OPEN lists the capabilities its messages use) and writes every prefix with an ADD-PATH path
identifier (RFC 7911); 3.10 sends no Peer Up and no path identifiers. The reader follows
what the Peer Up says. Without multipath a Loc-RIB holds one best path per prefix, so a
change is still keyed by prefix: the path identifier is read past, not kept.

Only what a FIB needs is decoded: prefixes and the NEXT_HOP. The UPDATE comes from the
daemon we are watching, not from a neighbour, so RFC 4271's checks (which `verb.bgp` applies
to neighbours' messages) are not the point here; 0.0.0.0 is a valid next hop (GoBGP's own
networks).
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from .bgp import HEADER_LEN, NEXT_HOP_T, UPDATE, BgpError, _prefixes, parse_open

VERSION = 3
COMMON_LEN = 6  # version, message length, message type
PEER_HEADER_LEN = 42
ROUTE_MONITORING = 0
PEER_UP = 3
PEER_LOC_RIB = 3  # RFC 9069
# Peer Up after the per-peer header: local address, local port, remote port, then the OPENs
PEER_UP_OPEN = PEER_HEADER_LEN + 16 + 2 + 2
ADD_PATH_SEND = 2  # the send bit of an ADD-PATH tuple's mode (3: both)
_MAX_LEN = 1 << 20


class BmpError(ValueError):
    """The BMP stream is not BMP (wrong version, impossible length)."""


class LocRibChange(NamedTuple):
    """One UPDATE's worth of Loc-RIB changes: withdrawn prefixes, announced prefixes and
    their next hop (None when nothing is announced)."""

    withdrawn: list[str]
    nlri: list[str]
    next_hop: str | None


def split(buf: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The whole BMP messages at the front of `buf` as (type, body after the common
    header), and the bytes of an incomplete last message (to be completed by the next read)."""
    out, pos, n = [], 0, len(buf)
    while n - pos >= COMMON_LEN:
        version, length, mtype = struct.unpack_from("!BIB", buf, pos)
        if version != VERSION or not COMMON_LEN <= length <= _MAX_LEN:
            raise BmpError(f"not a BMP v3 message (version {version}, length {length})")
        if n - pos < length:
            break
        out.append((mtype, buf[pos + COMMON_LEN:pos + length]))
        pos += length
    return out, buf[pos:]


def _next_hop(attrs: bytes) -> str | None:
    pos, n = 0, len(attrs)
    while pos + 3 <= n:
        flags, t = attrs[pos], attrs[pos + 1]
        if flags & 0x10:  # extended length
            alen, hl = struct.unpack_from("!H", attrs, pos + 2)[0], 4
        else:
            alen, hl = attrs[pos + 2], 3
        if t == NEXT_HOP_T and alen == 4:
            a = attrs[pos + hl:pos + hl + 4]
            return f"{a[0]}.{a[1]}.{a[2]}.{a[3]}"
        pos += hl + alen
    return None


def _add_path_prefixes(buf: bytes, what: str) -> list[str]:
    """A run of (path identifier, length, prefix) fields (RFC 7911), as prefixes."""
    out, pos, n = [], 0, len(buf)
    while pos < n:
        if pos + 5 > n:
            raise BgpError(3, 10, why=f"invalid {what} field")
        plen = buf[pos + 4]
        end = pos + 5 + (plen + 7) // 8
        if end > n:
            raise BgpError(3, 10, why=f"invalid {what} field")
        out.extend(_prefixes(bytes(buf[pos + 4:end]), what))
        pos = end
    return out


def open_sends_ipv4_add_path(open_msg: bytes) -> bool:
    """Whether the BGP OPEN at the front of `open_msg` says its sender adds path
    identifiers to IPv4 unicast prefixes (an ADD-PATH tuple 1/1 with the send bit)."""
    if len(open_msg) < HEADER_LEN:
        return False
    try:
        info = parse_open(open_msg[:struct.unpack_from("!H", open_msg, 16)[0]])
    except BgpError:
        return False
    return any((afi, safi) == (1, 1) and mode & ADD_PATH_SEND for afi, safi, mode in info.add_path)


class LocRibReader:
    """One BMP session's Loc-RIB: its Route Monitoring messages of the Loc-RIB peer as
    changes (other messages, e.g. peer up/down of the daemon's neighbours, are not the
    FIB's), decoded as the session's Loc-RIB Peer Up says (with or without path
    identifiers)."""

    def __init__(self) -> None:
        self.add_path = False
        # the NEXT_HOP per attribute section (a full table repeats few of them)
        self.next_hops: dict[bytes, str | None] = {}

    def changes(self, messages: list[tuple[int, bytes]]) -> list[LocRibChange]:
        cache = self.next_hops
        out = []
        for mtype, body in messages:
            if len(body) < PEER_HEADER_LEN + HEADER_LEN or body[0] != PEER_LOC_RIB:
                continue
            if mtype == PEER_UP:
                self.add_path = open_sends_ipv4_add_path(bytes(body[PEER_UP_OPEN:]))
                continue
            if mtype != ROUTE_MONITORING:
                continue
            msg = body[PEER_HEADER_LEN:]
            if msg[18] != UPDATE:
                continue
            u = msg[HEADER_LEN:]
            wlen = struct.unpack_from("!H", u, 0)[0]
            alen = struct.unpack_from("!H", u, 2 + wlen)[0]
            attrs = bytes(u[4 + wlen:4 + wlen + alen])
            decode = _add_path_prefixes if self.add_path else _prefixes
            nlri = decode(bytes(u[4 + wlen + alen:]), "network")
            nh = None
            if nlri:
                nh = cache.get(attrs, "")
                if nh == "":
                    if len(cache) >= 200_000:
                        cache.clear()
                    nh = cache[attrs] = _next_hop(attrs)
            out.append(LocRibChange(decode(bytes(u[2:2 + wlen]), "withdrawn routes"), nlri, nh))
        return out
