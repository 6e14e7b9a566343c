"""GoBGP's Loc-RIB over BMP (RFC 7854 framing, RFC 9069 Loc-RIB peer), as `verb.bmp` and
`verb.fib.GobgpFib` read it: messages built here byte by byte, as gobgpd 3.10 and 4.8 write them."""
from __future__ import annotations

import asyncio
import gc
import socket
import struct
import weakref

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


def update(withdrawn: tuple[str, ...] = (), nlri: tuple[str, ...] = (), next_hop: str = "10.1.0.2",
           encode=prefixes) -> bytes:
    attrs = b""
    if nlri:
        attrs = (b"\x40\x01\x01\x00"  # ORIGIN IGP
                 + b"\x50\x02\x00\x06\x02\x01" + struct.pack("!I", 65001)  # AS_PATH, extended length
                 + b"\x40\x03\x04" + socket.inet_aton(next_hop))
    w = encode(*withdrawn)
    body = struct.pack("!H", len(w)) + w + struct.pack("!H", len(attrs)) + attrs + encode(*nlri)
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
    reader = bmp.LocRibReader()
    msgs, _ = bmp.split(INITIATION
                        + route_monitoring(update(nlri=("10.9.0.0/24", "10.9.1.0/24")))
                        + route_monitoring(update(nlri=("10.8.0.0/16",)), peer_type=0)  # a neighbour's Adj-RIB-In
                        + route_monitoring(update(withdrawn=("10.7.0.0/24",)))
                        + route_monitoring(update(nlri=("10.6.0.0/24",), next_hop="0.0.0.0")))
    got = reader.changes(msgs)
    assert got == [bmp.LocRibChange([], ["10.9.0.0/24", "10.9.1.0/24"], "10.1.0.2"),
                   bmp.LocRibChange(["10.7.0.0/24"], [], None),
                   bmp.LocRibChange([], ["10.6.0.0/24"], "0.0.0.0")]
    assert sorted(reader.next_hops.values()) == ["0.0.0.0", "10.1.0.2"]  # one entry per attribute section


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
    # one object per FIB value, whichever replica's FIB made it: the voter compares at once
    assert fib.table.current["10.9.0.0/24"] is via(("10.2.0.2", "eth2"))
    fib.table.apply(fib._events([L(["10.9.0.0/24", "10.5.0.0/24"], [], None), L([], ["10.4.0.0/24"], "not-an-ip")]))
    assert fib.table.current == {"10.9.1.0/24": ("blackhole",)}
    assert ("10.5.0.0/24", None) in reported


# ----- GoBGP 4.8: a Loc-RIB Peer Up announcing ADD-PATH, then prefixes with path identifiers


def add_path_prefixes(*ps: str, path_id: int = 7) -> bytes:
    return b"".join(struct.pack("!I", path_id) + prefixes(p) for p in ps)


def add_path_update(withdrawn: tuple[str, ...] = (), nlri: tuple[str, ...] = ()) -> bytes:
    return update(withdrawn, nlri, encode=add_path_prefixes)


def open_msg(*caps: bytes) -> bytes:
    params = b"".join(bytes([2, len(c)]) + c for c in caps)
    body = struct.pack("!BHH4sB", 4, 65000, 90, socket.inet_aton("10.255.0.2"), len(params)) + params
    return b"\xff" * 16 + struct.pack("!HB", 19 + len(body), 1) + body


FOUR_OCTET_AS = bytes([65, 4]) + struct.pack("!I", 65000)
ADD_PATH_BOTH = bytes([69, 8]) + struct.pack("!HBB", 1, 1, 3) + struct.pack("!HBB", 2, 1, 3)


def loc_rib_peer_up(*caps: bytes) -> bytes:
    peer = struct.pack("!BBQ16sI4sII", bmp.PEER_LOC_RIB, 0, 0, b"\0" * 16, 65000,
                       socket.inet_aton("10.255.0.2"), 0, 0)
    o = open_msg(*caps)
    return bmp_msg(bmp.PEER_UP, peer + b"\0" * 16 + b"\0\0\0\0" + o + o)


def test_open_says_whether_ipv4_prefixes_carry_path_identifiers():
    assert bmp.open_sends_ipv4_add_path(open_msg(FOUR_OCTET_AS, ADD_PATH_BOTH))
    assert not bmp.open_sends_ipv4_add_path(open_msg(FOUR_OCTET_AS))
    receive_only = bytes([69, 4]) + struct.pack("!HBB", 1, 1, 1)
    assert not bmp.open_sends_ipv4_add_path(open_msg(receive_only))
    assert not bmp.open_sends_ipv4_add_path(b"")


def test_a_loc_rib_peer_up_with_add_path_switches_the_session_to_path_identifiers():
    reader = bmp.LocRibReader()
    msgs, _ = bmp.split(INITIATION + loc_rib_peer_up(FOUR_OCTET_AS, ADD_PATH_BOTH)
                        + route_monitoring(add_path_update(nlri=("10.9.0.0/24", "10.9.1.0/24")))
                        + route_monitoring(add_path_update(withdrawn=("10.7.0.0/24",))))
    assert reader.changes(msgs) == [bmp.LocRibChange([], ["10.9.0.0/24", "10.9.1.0/24"], "10.1.0.2"),
                                    bmp.LocRibChange(["10.7.0.0/24"], [], None)]
    assert reader.add_path
    # the state holds across reads of the same session
    msgs, _ = bmp.split(route_monitoring(add_path_update(nlri=("10.6.0.0/24",))))
    assert reader.changes(msgs) == [bmp.LocRibChange([], ["10.6.0.0/24"], "10.1.0.2")]
    # read without path identifiers, the same bytes are other prefixes (GoBGP 4.8 through
    # a 3.10 reader: 0.0.0.0/0 among them)
    assert "0.0.0.0/0" in bmp.LocRibReader().changes(msgs)[0].nlri


def test_a_loc_rib_peer_up_without_add_path_keeps_plain_prefixes():
    reader = bmp.LocRibReader()
    msgs, _ = bmp.split(loc_rib_peer_up(FOUR_OCTET_AS) + route_monitoring(update(nlri=("10.9.0.0/24",))))
    assert reader.changes(msgs) == [bmp.LocRibChange([], ["10.9.0.0/24"], "10.1.0.2")]
    assert not reader.add_path


def test_a_stopped_watcher_is_freed_under_frozen_garbage_collection(monkeypatch):
    """The hypervisor freezes what survives a full collection (`verb.hvproc.tune_gc`): a
    FIB watcher stopped at a replica's recovery must not stay behind in a reference cycle
    with its cancelled task (a full table's routes per recovery at 1M). Started the way the
    hypervisor starts it (`GobgpFib.start`), without gobgpd."""
    spec = RouterSpec(name="r2", router_id="10.255.0.2", asn=65000,
                      interfaces=[Interface("eth1", "10.1.0.1/30")])

    async def follow(watcher: GobgpFib) -> None:  # its frame holds the watcher, as _run's does
        await asyncio.sleep(3600)
    monkeypatch.setattr(GobgpFib, "_run", follow)

    async def main() -> bool:
        fib = GobgpFib(None, spec, lambda changes: None)  # type: ignore[arg-type]
        station = fib._sock = socket.socket()  # listening already: start() does not listen
        try:
            fib.start()
            await asyncio.sleep(0)
            gc.collect()
            gc.freeze()
            try:
                fib.stop()
                for _ in range(3):
                    await asyncio.sleep(0)
                ref = weakref.ref(fib)
                del fib
                return ref() is None
            finally:
                gc.unfreeze()
        finally:
            station.close()
    assert asyncio.run(main())
