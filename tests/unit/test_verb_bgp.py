"""VERB's BGP layer: RFC 4271 error checks, update normalization, encoding, sessions."""
from __future__ import annotations

import asyncio
import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from verb import bgp
from verb.bgp import BgpError, RouteAttrs
from verb.session import Identity, Session, SessionClosed

R = RouteAttrs(origin=0, as_path=((2, (65001, 65010)),), next_hop="10.2.0.1")


def attr(flags: int, t: int, value: bytes) -> bytes:
    return bgp._attr_bytes(flags, t, value)


def update(attrs: bytes, nlri: bytes = b"\x18\x0a\x01\x02", withdrawn: bytes = b"") -> bytes:
    return bgp._update(withdrawn, attrs, nlri)


ORIGIN = attr(0x40, 1, b"\x00")
AS_PATH = attr(0x40, 2, b"\x02\x02" + struct.pack("!II", 65001, 65010))
NEXT_HOP = attr(0x40, 3, bytes([10, 2, 0, 1]))


def error_of(msg: bytes, as4: bool = True) -> tuple[int, int, bytes]:
    with pytest.raises(BgpError) as e:
        bgp.parse_update(msg, as4)
    return e.value.code, e.value.subcode, e.value.data


# ----- framing and OPEN ----------------------------------------------------------------

def test_header_errors_map_to_rfc_notifications():
    ka = bgp.keepalive()
    with pytest.raises(BgpError) as e:
        bgp.check_header(b"\x00" * 16 + ka[16:])
    assert (e.value.code, e.value.subcode) == (1, 1)
    with pytest.raises(BgpError) as e:
        bgp.check_header(ka[:16] + struct.pack("!HB", 5000, 2))
    assert (e.value.code, e.value.subcode, e.value.data) == (1, 2, struct.pack("!H", 5000))
    with pytest.raises(BgpError) as e:
        bgp.check_header(ka[:16] + struct.pack("!HB", 19, 9))
    assert (e.value.code, e.value.subcode, e.value.data) == (1, 3, b"\x09")
    with pytest.raises(BgpError) as e:  # a KEEPALIVE has exactly 19 bytes
        bgp.check_header(ka[:16] + struct.pack("!HB", 25, 4))
    assert (e.value.code, e.value.subcode) == (1, 2)


def test_open_round_trip_and_checks():
    info = bgp.parse_open(bgp.make_open(4200000001, 9, "10.255.0.1"))
    assert (info.asn, info.hold, info.router_id, info.four_octet) == (4200000001, 9, "10.255.0.1", True)
    assert info.families == ((1, 1),)
    m = bytearray(bgp.make_open(65001, 9, "10.255.0.1"))
    bad_hold = bytes(m[:22]) + struct.pack("!H", 2) + bytes(m[24:])
    with pytest.raises(BgpError) as e:
        bgp.parse_open(bad_hold)
    assert (e.value.code, e.value.subcode) == (2, 6)
    bad_version = bytes(m[:19]) + b"\x03" + bytes(m[20:])
    with pytest.raises(BgpError) as e:
        bgp.parse_open(bad_version)
    assert (e.value.code, e.value.subcode) == (2, 1)
    bad_id = bytes(m[:24]) + b"\x00\x00\x00\x00" + bytes(m[28:])
    with pytest.raises(BgpError) as e:
        bgp.parse_open(bad_id)
    assert (e.value.code, e.value.subcode) == (2, 3)


def test_split_messages():
    data = bgp.keepalive() + bgp.end_of_rib() + bgp.notification(6, 2)
    assert [bgp.msg_type(m) for m in bgp.split_messages(data)] == [4, 2, 3]
    assert bgp.parse_update(bgp.end_of_rib()).is_end_of_rib


# ----- UPDATE checks (RFC 4271 6.3) ----------------------------------------------------

def test_a_well_formed_update_parses():
    u = bgp.parse_update(update(ORIGIN + AS_PATH + NEXT_HOP, withdrawn=b"\x10\x0a\x09"))
    assert u.nlri == ["10.1.2.0/24"] and u.withdrawn == ["10.9.0.0/16"]
    assert bgp.normalize(u) == R


@pytest.mark.parametrize("attrs,nlri,expect", [
    (ORIGIN + AS_PATH, b"\x18\x0a\x01\x02", (3, 3)),  # no NEXT_HOP
    (attr(0x40, 1, b"\x05") + AS_PATH + NEXT_HOP, b"\x18\x0a\x01\x02", (3, 6)),  # bad ORIGIN
    (attr(0xc0, 1, b"\x00") + AS_PATH + NEXT_HOP, b"\x18\x0a\x01\x02", (3, 4)),  # optional bit
    (attr(0x40, 1, b"\x00\x00") + AS_PATH + NEXT_HOP, b"\x18\x0a\x01\x02", (3, 5)),  # length
    (ORIGIN + ORIGIN + AS_PATH + NEXT_HOP, b"\x18\x0a\x01\x02", (3, 1)),  # twice
    (ORIGIN + AS_PATH + NEXT_HOP, b"\x21\x0a\x01\x02\x03\x04", (3, 10)),  # /33
    (ORIGIN + attr(0x40, 2, b"\x05\x01\x00\x00\xfd\xe9") + NEXT_HOP, b"", (3, 11)),  # segment 5
    (ORIGIN + AS_PATH + NEXT_HOP + attr(0x40, 99, b"x"), b"\x18\x0a\x01\x02", (3, 2)),
    (ORIGIN + AS_PATH + attr(0x40, 3, b"\x00\x00\x00\x00"), b"\x18\x0a\x01\x02", (3, 8)),
    (ORIGIN + AS_PATH + NEXT_HOP + b"\x40\x05", b"", (3, 1)),  # truncated attribute
    # attributes the walk does not check in full itself: os-ken's decoder must take them
    (ORIGIN + AS_PATH + NEXT_HOP + attr(0xc0, 7, b"\x00\x01\x02"), b"\x18\x0a\x01\x02", (3, 1)),
])
def test_malformed_updates_get_the_rfc_notification(attrs, nlri, expect):
    code, sub, data = error_of(update(attrs, nlri))
    assert (code, sub) == expect
    if expect == (3, 3):
        assert data == b"\x03"  # the missing attribute's type code


def test_withdrawn_length_overflow_is_a_malformed_attribute_list():
    body = struct.pack("!H", 200) + b"\x00\x00"
    msg = bgp.MARKER + struct.pack("!HB", 19 + len(body), 2) + body
    assert error_of(msg)[:2] == (3, 1)


# ----- normalization -------------------------------------------------------------------

def test_encoding_differences_do_not_count():
    a = bgp.parse_update(update(ORIGIN + AS_PATH + NEXT_HOP + attr(0x80, 4, b"\0\0\0\5")))
    split_path = attr(0x50, 2, b"\x02\x01" + struct.pack("!I", 65001) + b"\x02\x01" + struct.pack("!I", 65010))
    b = bgp.parse_update(update(attr(0x80 | 0x10, 4, b"\0\0\0\5") + NEXT_HOP + split_path + ORIGIN))
    assert bgp.normalize(a) == bgp.normalize(b) == R._replace(med=5)
    assert bgp.normalize(a) is bgp.normalize(b)  # one object per content: the voter compares at once


def test_content_differences_count():
    base = bgp.normalize(bgp.parse_update(update(ORIGIN + AS_PATH + NEXT_HOP)))
    prepended = attr(0x40, 2, b"\x02\x03" + struct.pack("!III", 65001, 65001, 65010))
    other_nh = attr(0x40, 3, bytes([10, 2, 0, 99]))
    for attrs in (ORIGIN + prepended + NEXT_HOP, ORIGIN + AS_PATH + other_nh,
                  attr(0x40, 1, b"\x02") + AS_PATH + NEXT_HOP):
        assert bgp.normalize(bgp.parse_update(update(attrs))) != base


def test_two_octet_sessions_carry_four_octet_paths():
    r = R._replace(as_path=((2, (65001, 4200000000, 65010)),))
    msg, _ = bgp.encode_announce(bgp.encode_attrs(r, as4=False), ["10.1.0.0/24"])[0]
    u = bgp.parse_update(msg, as4=False)
    assert bgp.AS4_PATH_T in u.attributes
    assert bgp.normalize(u, as4=False) == r


def test_has_as():
    assert bgp.has_as(R, 65010) and not bgp.has_as(R, 65020)


asns = st.integers(1, 4294967295)
route_attrs = st.builds(
    RouteAttrs,
    origin=st.integers(0, 2),
    as_path=st.lists(st.tuples(st.sampled_from([1, 2]), st.lists(asns, min_size=1, max_size=5).map(tuple)),
                     max_size=3).map(tuple),
    next_hop=st.sampled_from(["10.1.0.1", "192.0.2.7", "10.255.0.1"]),
    med=st.none() | st.integers(0, 2**32 - 1),
    local_pref=st.none() | st.integers(0, 2**32 - 1),
    atomic_aggregate=st.booleans(),
    communities=st.lists(st.integers(0, 2**32 - 1), max_size=4).map(lambda c: tuple(sorted(set(c)))),
    other=st.dictionaries(st.integers(200, 250), st.tuples(st.sampled_from([0x80, 0xC0]), st.binary(max_size=300)),
                          max_size=2).map(lambda d: tuple(sorted((t, f, v) for t, (f, v) in d.items()))),
)


@settings(max_examples=200, deadline=None)
@given(r=route_attrs, as4=st.booleans())
def test_normalize_inverts_encode(r, as4):
    canon = r._replace(as_path=bgp._merge_segments(r.as_path))
    msg, _ = bgp.encode_announce(bgp.encode_attrs(r, as4), ["10.1.0.0/24"])[0]
    assert bgp.normalize(bgp.parse_update(msg, as4), as4) == canon


def oskens_encoding(r: RouteAttrs, as4: bool) -> bytes:
    """The attribute section as os-ken's objects write it (the maintained codec)."""
    from os_ken.lib.packet import bgp as okbgp
    segs = [list(asns) for _, asns in r.as_path]
    attrs: list = [okbgp.BGPPathAttributeOrigin(r.origin)]
    if as4 or all(a <= 0xFFFF for s in segs for a in s):
        attrs.append(okbgp.BGPPathAttributeAsPath(segs, as_pack_str="!I" if as4 else "!H"))
    else:
        two = [[a if a <= 0xFFFF else bgp.AS_TRANS for a in s] for s in segs]
        attrs += [okbgp.BGPPathAttributeAsPath(two, as_pack_str="!H"), okbgp.BGPPathAttributeAs4Path(segs)]
    attrs.append(okbgp.BGPPathAttributeNextHop(r.next_hop))
    if r.med is not None:
        attrs.append(okbgp.BGPPathAttributeMultiExitDisc(r.med))
    if r.local_pref is not None:
        attrs.append(okbgp.BGPPathAttributeLocalPref(r.local_pref))
    if r.atomic_aggregate:
        attrs.append(okbgp.BGPPathAttributeAtomicAggregate())
    if r.communities:
        attrs.append(okbgp.BGPPathAttributeCommunities(list(r.communities)))
    out = b"".join(bytes(a.serialize()) for a in sorted(attrs, key=lambda a: a.type))
    return out + b"".join(bgp._attr_bytes(f, t, v) for t, f, v in r.other)


@settings(max_examples=300, deadline=None)
@given(r=route_attrs, as4=st.booleans())
def test_attributes_are_encoded_as_oskens_codec_does(r, as4):
    # AS_SEQUENCEs only: os-ken writes an AS_SET in its Python set's order, ours is sorted
    # (the sets' content is held to normalize() by test_normalize_inverts_encode)
    r = r._replace(as_path=tuple((2, asns) for _, asns in r.as_path))
    assert bgp.encode_attrs(r, as4) == oskens_encoding(r, as4)


def test_paths_longer_than_a_segment_are_split():
    r = R._replace(as_path=((2, tuple(range(64512, 64512 + 300))),))
    msg, _ = bgp.encode_announce(bgp.encode_attrs(r), ["10.1.0.0/24"])[0]
    u = bgp.parse_update(msg)
    assert bgp.decode_as_path(u.attributes[bgp.AS_PATH_T][1], True) == \
        ((2, tuple(range(64512, 64512 + 255))), (2, tuple(range(64512 + 255, 64512 + 300))))
    assert bgp.normalize(u) == r


def test_large_changes_are_split_into_legal_messages():
    prefixes = [f"10.{i // 256}.{i % 256}.0/24" for i in range(3000)]
    msgs = bgp.encode_changes([(p, R) for p in prefixes] + [("10.200.0.0/16", None)])
    assert all(len(m) <= bgp.MAX_LEN for m in msgs)
    got = [bgp.parse_update(m) for m in msgs]
    assert got[0].withdrawn == ["10.200.0.0/16"]
    assert sum((u.nlri for u in got), []) == prefixes


# ----- sessions over a socket pair -------------------------------------------------------

async def _pair(hold_a=9, hold_b=9):
    sa, sb = socket.socketpair()
    ra, wa = await asyncio.open_connection(sock=sa)
    rb, wb = await asyncio.open_connection(sock=sb)
    a = Session("a", ra, wa, Identity(65001, "10.0.0.1", hold_a), 65002, True)
    b = Session("b", rb, wb, Identity(65002, "10.0.0.2", hold_b), 65001, False)
    return a, b


def test_sessions_establish_negotiate_and_exchange():
    async def main():
        a, b = await _pair(hold_a=9, hold_b=3)
        infos = await asyncio.gather(a.open(), b.open())
        assert infos[0].asn == 65002 and infos[1].router_id == "10.0.0.1"
        await asyncio.gather(a.confirm(), b.confirm())
        assert a.hold == b.hold == 3 and a.as4 and b.as4
        a.send(bgp.end_of_rib())
        assert bgp.msg_type(await b.read()) == bgp.UPDATE
        a.cease(2, "bye")
        with pytest.raises(SessionClosed, match="NOTIFICATION 6/2"):
            await b.read()
        assert b.received_notification[:2] == (6, 2)
    asyncio.run(main())


def test_a_wrong_peer_as_gets_bad_peer_as():
    async def main():
        sa, sb = socket.socketpair()
        ra, wa = await asyncio.open_connection(sock=sa)
        rb, wb = await asyncio.open_connection(sock=sb)
        a = Session("a", ra, wa, Identity(65001, "10.0.0.1"), 65099, True)
        b = Session("b", rb, wb, Identity(65002, "10.0.0.2"), 65001, False)
        results = await asyncio.gather(a.open(), b.open(), return_exceptions=True)
        assert isinstance(results[0], BgpError) and (results[0].code, results[0].subcode) == (2, 2)
    asyncio.run(main())


def test_hold_timer_expiry_sends_notification():
    async def main():
        a, b = await _pair(hold_a=3, hold_b=3)
        await asyncio.gather(a.open(), b.open())
        await asyncio.gather(a.confirm(), b.confirm())
        b._timer.cancel()  # b goes silent, as a hung replica does
        with pytest.raises(SessionClosed):
            await asyncio.wait_for(a.read(), 6)
        assert a.sent_notification == (4, 0)
    asyncio.run(main())


def _established_pair():
    async def up():
        a, b = await _pair()
        await asyncio.gather(a.open(), b.open())
        await asyncio.gather(a.confirm(), b.confirm())
        return a, b
    return up()


def _announce(i: int) -> bytes:
    return bgp.encode_announce(bgp.encode_attrs(R), [f"10.{i // 256}.{i % 256}.0/24"])[0][0]


def test_read_batch_returns_what_arrived_in_order_within_its_budget(monkeypatch):
    import verb.session
    monkeypatch.setattr(verb.session, "READ_BUDGET", 1000)

    async def main():
        a, b = await _established_pair()
        sent = [_announce(i) for i in range(100)]
        # KEEPALIVEs are handled by the session, a message split across reads is whole
        a.send(b"".join(m + bgp.keepalive() for m in sent))
        await a.drain()
        got: list[bytes] = []
        while len(got) < len(sent):
            batch = await asyncio.wait_for(b.read_batch(), 5)
            assert batch and sum(map(len, batch)) <= 1000 + bgp.MAX_LEN
            got += batch
        assert got == sent
    asyncio.run(main())


def test_read_batch_delivers_what_came_before_a_notification_then_ends():
    async def main():
        a, b = await _established_pair()
        sent = [_announce(i) for i in range(3)]
        a.send(b"".join(sent))
        a.cease(2, "bye")
        assert await asyncio.wait_for(b.read_batch(), 5) == sent
        with pytest.raises(SessionClosed, match="NOTIFICATION 6/2"):
            await b.read_batch()
    asyncio.run(main())


def test_nothing_is_delivered_once_we_closed_the_session_not_even_what_had_arrived(monkeypatch):
    """A replica being replaced: the recovery closes its sessions and forgets its votes;
    UPDATEs it had sent that were still buffered must not vote after that."""
    import verb.session
    monkeypatch.setattr(verb.session, "READ_BUDGET", 1000)

    async def main():
        a, b = await _established_pair()
        sent = [_announce(i) for i in range(100)]
        a.send(b"".join(sent))
        await a.drain()
        first = await asyncio.wait_for(b.read_batch(), 5)
        assert 0 < len(first) < len(sent)  # more is buffered, in the session and the stream
        b.cease(2, "replaced")
        with pytest.raises(SessionClosed, match="sent NOTIFICATION 6/2"):
            await b.read_batch()
        with pytest.raises(SessionClosed):
            await b.read()
    asyncio.run(main())


def test_read_batch_delivers_what_came_before_a_broken_header_then_fails():
    async def main():
        a, b = await _established_pair()
        good = _announce(1)
        a.send(good + b"\x00" * 16 + good[16:])  # a bad marker
        assert await asyncio.wait_for(b.read_batch(), 5) == [good]
        with pytest.raises(BgpError) as e:
            await b.read_batch()
        assert e.value.code == 1
    asyncio.run(main())


# ----- a replica's batch of UPDATEs as votes ---------------------------------------------

def _upd(announce: list[str] = (), withdraw: list[str] = (), r: RouteAttrs = R) -> bgp.Update:
    """A replica's UPDATE: an announcement or a withdrawal."""
    if announce:
        return bgp.parse_update(bgp.encode_announce(bgp.encode_attrs(r), list(announce))[0][0])
    return bgp.parse_update(bgp.encode_withdraw(list(withdraw))[0])


def test_replica_votes_last_word_per_key_and_absence_only_where_held():
    from verb.interposer import replica_votes
    peer = "10.3.0.2"
    looped = R._replace(as_path=((2, (65001, 65030)),))  # through the neighbour's own AS 65030
    held = {(peer, "10.9.0.0/24")}
    batch = [_upd(["10.1.0.0/24", "10.2.0.0/24"]),
             _upd(withdraw=["10.1.0.0/24", "10.8.0.0/24", "10.9.0.0/24"]),  # 10.8 never held
             _upd(["10.2.0.0/24"], r=R._replace(med=5)),  # flipped within the batch
             _upd(["10.4.0.0/24", "10.2.0.0/24"], r=looped)]  # looped: absent
    votes = replica_votes(batch, peer, 65030, True, held.__contains__)
    assert votes == {(peer, "10.1.0.0/24"): None, (peer, "10.2.0.0/24"): None,
                     (peer, "10.9.0.0/24"): None}
    assert replica_votes(batch[:3], peer, 65030, True, held.__contains__)[(peer, "10.2.0.0/24")] \
        == R._replace(med=5)
    # the same batch voted message by message (the voter's holdings following) ends the same
    now, one_by_one = set(held), {}
    for u in batch:
        for k, v in replica_votes([u], peer, 65030, True, now.__contains__).items():
            one_by_one[k] = v
            (now.discard if v is None else now.add)(k)
    assert one_by_one == votes
