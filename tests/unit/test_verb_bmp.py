"""GoBGP's Loc-RIB over BMP (RFC 7854 framing, RFC 9069 Loc-RIB peer), as `verb.bmp` and
`verb.fib.GobgpFib` read it: messages built here byte by byte, as gobgpd 3.10 writes them."""
from __future__ import annotations

import socket
import struct

import pytest

from routerlab.daemons import Interface, RouterSpec
from verb import bmp
from verb.fib import GobgpFib, via


def prefixes(*ps: str) -> bytes:
    out = b""
    for p in ps:
        addr, plen = p.split("/")
        out += bytes([int(plen)]) + socket.inet_aton(addr)[:(int(plen) + 7) // 8]
    return out


def update(withdrawn: tuple[str, ...] = (), nlri: tuple[str, ...] = (), next_hop: str = "10.1.0.2") -> bytes:
    attrs = b""
    if nlri:
        attrs = (b"\x40\x01\x01\x00"  # ORIGIN IGP
                 + b"\x50\x02\x00\x06\x02\x01" + struct.pack("!I", 65001)  # AS_PATH, extended length
                 + b"\x40\x03\x04" + socket.inet_aton(next_hop))
    w = prefixes(*withdrawn)
    body = struct.pack("!H", len(w)) + w + struct.pack("!H", len(attrs)) + attrs + prefixes(*nlri)
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 2) + body


def bmp_msg(mtype: int, body: bytes) -> bytes:
    return struct.pack("!BIB", 3, 6 + len(body), mtype) + body


def route_monitoring(upd: bytes, peer_type: int = bmp.PEER_LOC_RIB) -> bytes:
    peer = struct.pack("!BBQ16sI4sII", peer_type, 0, 0, b"\0" * 16, 65000, socket.inet_aton("10.255.0.2"), 0, 0)
    assert len(peer) == bmp.PEER_HEADER_LEN
    return bmp_msg(bmp.ROUTE_MONITORING, peer + upd)


INITIATION = bmp_msg(4, struct.pack("!HH", 2, 5) + b"GoBGP")


def test_split_keeps_an_incomplete_message_for_the_next_read():
    a = route_monitoring(update(nlri=("10.9.0.0/24",)))
    stream = INITIATION + a + a
    msgs, rest = bmp.split(stream[:-10])
    assert [t for t, _ in msgs] == [4, 0] and rest == a[:-10]
    msgs, rest = bmp.split(rest + stream[-10:])
    assert [t for t, _ in msgs] == [0] and rest == b""
    with pytest.raises(bmp.BmpError):
        bmp.split(b"\x01" + a[1:])


def test_loc_rib_changes_only_from_the_loc_rib_peer():
    cache: dict = {}
    msgs, _ = bmp.split(INITIATION
                        + route_monitoring(update(nlri=("10.9.0.0/24", "10.9.1.0/24")))
                        + route_monitoring(update(nlri=("10.8.0.0/16",)), peer_type=0)  # a neighbour's Adj-RIB-In
                        + route_monitoring(update(withdrawn=("10.7.0.0/24",)))
                        + route_monitoring(update(nlri=("10.6.0.0/24",), next_hop="0.0.0.0")))
    got = bmp.loc_rib_changes(msgs, cache)
    assert got == [bmp.LocRibChange([], ["10.9.0.0/24", "10.9.1.0/24"], "10.1.0.2"),
                   bmp.LocRibChange(["10.7.0.0/24"], [], None),
                   bmp.LocRibChange([], ["10.6.0.0/24"], "0.0.0.0")]
    assert sorted(cache.values()) == ["0.0.0.0", "10.1.0.2"]  # one entry per attribute section


def test_gobgp_fib_from_loc_rib_changes():
    """Next hops resolved to the interface whose subnet holds them, GoBGP's own networks
    (next hop 0.0.0.0) blackholed, a withdrawal removes the prefix (Loc-RIB: no best path
    left), a next hop that is not IPv4 skipped without stopping the watcher."""
    reported: list = []
    spec = RouterSpec(name="r2", router_id="10.255.0.2", asn=65000,
                      interfaces=[Interface("eth1", "10.1.0.1/30"), Interface("eth2", "10.2.0.1/30")])
    fib = GobgpFib(None, spec, lambda changes: reported.extend(changes))  # type: ignore[arg-type]
    assert fib.bmp_station == ("127.0.0.1", GobgpFib.PORT)
    L = bmp.LocRibChange
    fib.table.apply(fib._events([L([], ["10.9.0.0/24"], "10.1.0.2"), L([], ["10.9.1.0/24"], "0.0.0.0"),
                                 L([], ["10.9.0.0/24"], "10.2.0.2"), L([], ["10.5.0.0/24"], None)]))
    assert fib.table.current == {"10.9.0.0/24": via(("10.2.0.2", "eth2")),
                                 "10.9.1.0/24": ("blackhole",), "10.5.0.0/24": ("blackhole",)}
    fib.table.apply(fib._events([L(["10.9.0.0/24", "10.5.0.0/24"], [], None), L([], ["10.4.0.0/24"], "not-an-ip")]))
    assert fib.table.current == {"10.9.1.0/24": ("blackhole",)}
    assert ("10.5.0.0/24", None) in reported
