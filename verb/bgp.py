"""BGP messages for the hypervisor: framing, RFC 4271 error checks, normalization, encoding.

os-ken's codec (`os_ken.lib.packet.bgp`) decodes and encodes the messages. This module adds
what the hypervisor needs around it: reading whole messages off a stream with the header
checks of RFC 4271 6.1, the UPDATE checks of 6.3 that decide which NOTIFICATION a malformed
message gets, AS_PATH decoding at the negotiated AS width (os-ken guesses it), and the
*normalized* form of announced content that voting compares: attribute order, flag bits
(extended length, partial) and segment splitting do not count as disagreement.
"""
from __future__ import annotations

import asyncio
import functools
import ipaddress
import itertools
import socket
import struct
from dataclasses import dataclass
from typing import Iterable, NamedTuple

from os_ken.lib.packet import bgp as okbgp

HEADER_LEN = 19
MAX_LEN = 4096
MARKER = b"\xff" * 16
OPEN, UPDATE, NOTIFICATION, KEEPALIVE, ROUTE_REFRESH = 1, 2, 3, 4, 5
AS_TRANS = 23456

# Attribute flag bits and the types the hypervisor checks (RFC 4271 4.3, 5)
F_OPTIONAL, F_TRANSITIVE, F_PARTIAL, F_EXTENDED = 0x80, 0x40, 0x20, 0x10
ORIGIN_T, AS_PATH_T, NEXT_HOP_T, MED_T, LOCAL_PREF_T = 1, 2, 3, 4, 5
ATOMIC_T, AGGREGATOR_T, COMMUNITIES_T, MP_REACH_T, MP_UNREACH_T, AS4_PATH_T = 6, 7, 8, 14, 15, 17
WELL_KNOWN = {ORIGIN_T, AS_PATH_T, NEXT_HOP_T, LOCAL_PREF_T, ATOMIC_T}
_FIXED_LEN = {ORIGIN_T: 1, NEXT_HOP_T: 4, MED_T: 4, LOCAL_PREF_T: 4, ATOMIC_T: 0}
# Attributes `_checked_attrs` checks completely by itself (fixed lengths, values, AS_PATH
# segments): os-ken's decoder is asked only about the others (a full table's UPDATEs carry
# just these, and decoding each section twice was ~7% of the hypervisor's CPU)
SELF_CHECKED = {ORIGIN_T, AS_PATH_T, NEXT_HOP_T, MED_T, LOCAL_PREF_T, ATOMIC_T}
_OPT_FLAGS = {MED_T: F_OPTIONAL, AGGREGATOR_T: F_OPTIONAL | F_TRANSITIVE,
              COMMUNITIES_T: F_OPTIONAL | F_TRANSITIVE, AS4_PATH_T: F_OPTIONAL | F_TRANSITIVE}
_MIN_LEN = {OPEN: 29, UPDATE: 23, NOTIFICATION: 21, KEEPALIVE: 19, ROUTE_REFRESH: 23}
_MAX_LEN = {KEEPALIVE: 19, ROUTE_REFRESH: 23}


class BgpError(Exception):
    """A protocol error: the NOTIFICATION (code, subcode, data) the peer must be sent."""

    def __init__(self, code: int, subcode: int, data: bytes = b"", why: str = ""):
        self.code, self.subcode, self.data = code, subcode, bytes(data)
        super().__init__(why or f"BGP error {code}/{subcode}")

    def notification(self) -> bytes:
        return notification(self.code, self.subcode, self.data)


# ----------------------------------------------------------------------------------------
# Framing
# ----------------------------------------------------------------------------------------

def check_header(hdr: bytes) -> tuple[int, int]:
    """(length, type) of a message header; BgpError with RFC 4271 6.1's NOTIFICATION."""
    if hdr[:16] != MARKER:
        raise BgpError(1, 1, why="connection not synchronized (bad marker)")
    length, mtype = struct.unpack("!HB", hdr[16:19])
    if mtype not in _MIN_LEN:
        raise BgpError(1, 3, bytes([mtype]), f"bad message type {mtype}")
    if not _MIN_LEN[mtype] <= length <= _MAX_LEN.get(mtype, MAX_LEN):
        raise BgpError(1, 2, struct.pack("!H", length), f"bad length {length} for type {mtype}")
    return length, mtype


async def read_message(reader: asyncio.StreamReader) -> bytes:
    """One whole message (header included); IncompleteReadError when the peer closed."""
    hdr = await reader.readexactly(HEADER_LEN)
    length, _ = check_header(hdr)
    return hdr + await reader.readexactly(length - HEADER_LEN)


def split_messages(data: bytes) -> list[bytes]:
    """Split a byte string into whole messages (for tests and recorded streams)."""
    out = []
    while data:
        length, _ = check_header(data[:HEADER_LEN])
        out.append(data[:length])
        data = data[length:]
    return out


def msg_type(msg: bytes) -> int:
    return msg[18]


# ----------------------------------------------------------------------------------------
# OPEN, KEEPALIVE, NOTIFICATION
# ----------------------------------------------------------------------------------------

CAP_ADD_PATH = 69  # RFC 7911


@dataclass(frozen=True)
class OpenInfo:
    """What a peer's OPEN says."""

    asn: int
    hold: int
    router_id: str
    four_octet: bool = False
    families: tuple[tuple[int, int], ...] = ()
    capabilities: tuple[int, ...] = ()
    # ADD-PATH (RFC 7911): (afi, safi, mode) per family; mode 1 receive, 2 send, 3 both
    add_path: tuple[tuple[int, int, int], ...] = ()


def make_open(asn: int, hold: int, router_id: str, four_octet: bool = True) -> bytes:
    """An OPEN offering IPv4 unicast (and 4-octet AS numbers), nothing more."""
    caps: list = [okbgp.BGPOptParamCapabilityMultiprotocol(afi=1, safi=1)]
    if four_octet:
        caps.append(okbgp.BGPOptParamCapabilityFourOctetAsNumber(as_number=asn))
    my_as = asn if asn <= 0xFFFF else AS_TRANS
    return bytes(okbgp.BGPOpen(my_as=my_as, bgp_identifier=router_id, hold_time=hold,
                               opt_param=caps).serialize())


def parse_open(msg: bytes) -> OpenInfo:
    """Decode and check an OPEN (RFC 4271 6.2); BgpError carries the NOTIFICATION."""
    body = msg[HEADER_LEN:]
    version, my_as, hold, bgp_id, opt_len = struct.unpack("!BHH4sB", body[:10])
    if version != 4:
        raise BgpError(2, 1, struct.pack("!H", 4), f"unsupported version {version}")
    if 10 + opt_len != len(body):
        raise BgpError(2, 0, why="optional parameter length does not match the message")
    if hold in (1, 2):
        raise BgpError(2, 6, why=f"unacceptable hold time {hold}")
    rid = str(ipaddress.IPv4Address(bgp_id))
    if rid == "0.0.0.0" or ipaddress.IPv4Address(bgp_id).is_multicast:
        raise BgpError(2, 3, why=f"bad BGP identifier {rid}")
    try:
        m, _, _ = okbgp.BGPMessage.parser(msg)
    except Exception as e:  # os-ken raises whatever struct/index error it meets
        raise BgpError(2, 0, why=f"undecodable OPEN: {e}") from None
    asn, four, fams, codes, add_path = my_as, False, [], [], []
    for p in m.opt_param:
        if p.type != okbgp.BGP_OPT_CAPABILITY:
            raise BgpError(2, 4, why=f"unsupported optional parameter {p.type}")
        codes.append(p.cap_code)
        if p.cap_code == okbgp.BGP_CAP_FOUR_OCTET_AS_NUMBER:
            asn, four = p.as_number, True
        elif p.cap_code == okbgp.BGP_CAP_MULTIPROTOCOL:
            fams.append((p.afi, p.safi))
        elif p.cap_code == CAP_ADD_PATH:  # os-ken has no class for it: its raw value
            v = p.cap_value
            add_path += [struct.unpack_from("!HBB", v, i) for i in range(0, len(v) - 3, 4)]
    return OpenInfo(asn, hold, rid, four, tuple(fams), tuple(codes), tuple(add_path))


def keepalive() -> bytes:
    return bytes(okbgp.BGPKeepAlive().serialize())


def notification(code: int, subcode: int, data: bytes = b"") -> bytes:
    return bytes(okbgp.BGPNotification(code, subcode, data).serialize())


def parse_notification(msg: bytes) -> tuple[int, int, bytes]:
    body = msg[HEADER_LEN:]
    return body[0], body[1], bytes(body[2:])


# ----------------------------------------------------------------------------------------
# UPDATE
# ----------------------------------------------------------------------------------------

class Update:
    """A decoded UPDATE: prefixes as strings, the path attribute section raw, and its
    normalized content (`route`, None without NLRI). Slots: a full table makes millions."""

    __slots__ = ("withdrawn", "attrs", "nlri", "route", "as4")

    def __init__(self, withdrawn: list[str] | None = None, attrs: bytes = b"",
                 nlri: list[str] | None = None, route: "RouteAttrs | None" = None,
                 as4: bool = True):
        self.withdrawn: list[str] = withdrawn if withdrawn is not None else []
        self.attrs, self.route, self.as4 = attrs, route, as4
        self.nlri: list[str] = nlri if nlri is not None else []

    def __repr__(self) -> str:
        return f"Update(withdrawn={self.withdrawn}, nlri={self.nlri}, route={self.route})"

    @property
    def attributes(self) -> dict[int, tuple[int, bytes]]:
        """The attribute section split by type: type -> (flags, value)."""
        return _walk_attrs(self.attrs) if self.attrs else {}

    @property
    def is_end_of_rib(self) -> bool:
        return not (self.withdrawn or self.attrs or self.nlri)


def _prefixes(buf: bytes, what: str) -> list[str]:
    """Decode a run of (length, prefix) fields; host bits are cleared (as the RFC wants
    them ignored). Hand-decoded: this is the hot path of a 10,000-prefix table."""
    out, pos, n = [], 0, len(buf)
    ntoa = socket.inet_ntoa
    while pos < n:
        plen = buf[pos]
        nbytes = (plen + 7) >> 3
        end = pos + 1 + nbytes
        if plen > 32 or end > n:
            raise BgpError(3, 10, why=f"invalid {what} field")
        if plen & 7:  # the last octet holds host bits
            raw = buf[pos + 1:end - 1] + _HOST_MASKED[plen & 7][buf[end - 1]]
        else:
            raw = buf[pos + 1:end]
        out.append(ntoa(raw + _PAD[nbytes]) + _SLASH[plen])
        pos = end
    return out


_PAD = [b"\0" * (4 - i) for i in range(5)]
_SLASH = [f"/{i}" for i in range(33)]
# per number of network bits in the last octet: that octet with its host bits cleared
_HOST_MASKED = [[bytes((b & (0xFF << (8 - k)) & 0xFF,)) for b in range(256)] for k in range(8)]


def _attr_bytes(flags: int, t: int, value: bytes) -> bytes:
    if len(value) > 255:
        return struct.pack("!BBH", flags | F_EXTENDED, t, len(value)) + value
    return struct.pack("!BBB", flags & ~F_EXTENDED, t, len(value)) + value


def _walk_attrs(buf: bytes) -> dict[int, tuple[int, bytes]]:
    """Split the path attribute section, checking RFC 4271 6.3's framing and flag rules."""
    out: dict[int, tuple[int, bytes]] = {}
    pos = 0
    while pos < len(buf):
        if len(buf) - pos < 3:
            raise BgpError(3, 1, why="truncated attribute header")
        flags, t = buf[pos], buf[pos + 1]
        hl = 4 if flags & F_EXTENDED else 3
        if len(buf) - pos < hl:
            raise BgpError(3, 1, why="truncated attribute length")
        alen = struct.unpack("!H", buf[pos + 2:pos + 4])[0] if hl == 4 else buf[pos + 2]
        if pos + hl + alen > len(buf):
            raise BgpError(3, 1, why=f"attribute {t} overruns the attribute list")
        raw, value = buf[pos:pos + hl + alen], bytes(buf[pos + hl:pos + hl + alen])
        pos += hl + alen
        if t in out:
            raise BgpError(3, 1, why=f"attribute {t} appears twice")
        opt_trans = flags & (F_OPTIONAL | F_TRANSITIVE)
        if not flags & F_OPTIONAL and t not in WELL_KNOWN:
            raise BgpError(3, 2, raw, f"unrecognized well-known attribute {t}")
        if (t in WELL_KNOWN and opt_trans != F_TRANSITIVE) or \
                (t in _OPT_FLAGS and opt_trans != _OPT_FLAGS[t]):
            raise BgpError(3, 4, raw, f"attribute {t}: bad flags {flags:#x}")
        if t in _FIXED_LEN and alen != _FIXED_LEN[t]:
            raise BgpError(3, 5, raw, f"attribute {t}: bad length {alen}")
        out[t] = (flags, value)
        if t == ORIGIN_T and value[0] > 2:
            raise BgpError(3, 6, raw, f"invalid ORIGIN {value[0]}")
        # unspecified, multicast (224/4) or reserved (240/4), as ipaddress has them
        if t == NEXT_HOP_T and (value[0] >= 224 or value == b"\0\0\0\0"):
            raise BgpError(3, 8, raw, f"invalid NEXT_HOP {socket.inet_ntoa(value)}")
    return out


def decode_as_path(value: bytes, as4: bool) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """AS_PATH segments at the negotiated width; BgpError 3/11 when malformed."""
    width, fmt = (4, "I") if as4 else (2, "H")
    segs, pos = [], 0
    while pos < len(value):
        if len(value) - pos < 2:
            raise BgpError(3, 11, why="truncated AS_PATH segment")
        stype, n = value[pos], value[pos + 1]
        end = pos + 2 + n * width
        if stype not in (1, 2) or n == 0 or end > len(value):
            raise BgpError(3, 11, why=f"malformed AS_PATH segment (type {stype}, {n} ASes)")
        segs.append((stype, struct.unpack_from(f"!{n}{fmt}", value, pos + 2)))
        pos = end
    return tuple(segs)


# Path attribute sections already checked, per AS width: a full table arrives as many
# distinct attribute sections (at 1M prefixes ~2M: each AS path once per replica, neighbour
# and next hop), each repeated in several UPDATEs (one per NLRI chunk; GoBGP sends one
# prefix per UPDATE), so each is walked, checked and normalized once. A section is kept as
# its normalized content (RouteAttrs), or as the type of the first well-known attribute it
# lacks (int; an UPDATE with NLRI must not use it). Only sections that passed every check
# are kept; past the bound the older half goes (a table arrives grouped by AS path, so what
# is in use is recent).
_SECTIONS: tuple[dict[bytes, "RouteAttrs | int"], dict[bytes, "RouteAttrs | int"]] = ({}, {})
CACHE_MAX = 400_000
_REQUIRED = (ORIGIN_T, AS_PATH_T, NEXT_HOP_T)  # with NLRI (RFC 4271 6.3)


def _section(attrs: bytes, as4: bool) -> "RouteAttrs | int":
    """The attribute section checked (RFC 4271 6.3) and normalized, once per distinct section."""
    cache = _SECTIONS[as4]
    hit = cache.get(attrs)
    if hit is not None:
        return hit
    a = _walk_attrs(attrs)
    path = decode_as_path(a[AS_PATH_T][1], as4) if AS_PATH_T in a else ()
    try:  # the checks passed: os-ken must decode every attribute the walk above does not
        # check in full itself (else we missed something)
        for t, (f, v) in a.items():
            if t not in SELF_CHECKED:
                okbgp._PathAttribute.parser(_attr_bytes(f, t, v))
    except Exception as e:
        raise BgpError(3, 1, why=f"undecodable path attribute: {e}") from None
    missing = next((t for t in _REQUIRED if t not in a), 0)
    sec: RouteAttrs | int = missing or _canonical(_normalize(a, path, as4))
    _bounded_put(cache, attrs, sec)
    return sec


# One object per distinct content: the replicas encode the same route differently (attribute
# order, flags, next hop), and the voter compares their contents for every prefix and
# neighbour; identical objects compare at once, equal ones field by field.
_CANONICAL: dict["RouteAttrs", "RouteAttrs"] = {}


def _canonical(r: "RouteAttrs") -> "RouteAttrs":
    hit = _CANONICAL.get(r)
    if hit is None:
        _bounded_put(_CANONICAL, r, r)
        return r
    return hit


def _bounded_put(cache: dict, key: object, value: object) -> None:
    """Insert, first dropping the older half of a cache at its bound (in use is what is
    recent: a table arrives grouped by AS path)."""
    if len(cache) >= CACHE_MAX:
        for k in list(itertools.islice(cache, CACHE_MAX // 2)):
            del cache[k]
    cache[key] = value


def parse_update(msg: bytes, as4: bool = True) -> Update:
    """Decode and check an UPDATE; BgpError carries RFC 4271 6.3's NOTIFICATION."""
    n = len(msg)
    if n < HEADER_LEN + 4:
        raise BgpError(3, 1, why="withdrawn routes length too large")
    wlen = msg[HEADER_LEN] << 8 | msg[HEADER_LEN + 1]
    a = HEADER_LEN + 2 + wlen
    if a + 2 > n:
        raise BgpError(3, 1, why="withdrawn routes length too large")
    alen = msg[a] << 8 | msg[a + 1]
    if a + 2 + alen > n:
        raise BgpError(3, 1, why="total path attribute length too large")
    attrs = msg[a + 2:a + 2 + alen]
    withdrawn = _prefixes(msg[HEADER_LEN + 2:a], "withdrawn routes") if wlen else []
    nlri = _prefixes(msg[a + 2 + alen:], "network") if a + 2 + alen < n else []
    sec = _section(attrs, as4) if alen else ORIGIN_T  # no section: the first one is missing
    if nlri and sec.__class__ is int:
        raise BgpError(3, 3, bytes([sec]), f"missing well-known attribute {sec}")  # type: ignore[list-item]
    return Update(withdrawn, attrs, nlri, sec if nlri else None, as4)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------
# Normalized announced content
# ----------------------------------------------------------------------------------------

class RouteAttrs(NamedTuple):
    """The content of an announcement, independent of how an implementation encodes it."""

    origin: int
    as_path: tuple[tuple[int, tuple[int, ...]], ...]
    next_hop: str
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    communities: tuple[int, ...] = ()
    other: tuple[tuple[int, int, bytes], ...] = ()  # (type, optional/transitive flags, value)

    def describe(self) -> str:
        path = " ".join(" ".join(map(str, asns)) if t == 2 else "{" + ",".join(map(str, asns)) + "}"
                        for t, asns in self.as_path)
        return f"nh {self.next_hop} path [{path}] origin {self.origin}" + \
            (f" med {self.med}" if self.med is not None else "")


def _merge_segments(segs: Iterable[tuple[int, tuple[int, ...]]]) -> tuple:
    """Consecutive AS_SEQUENCEs joined, AS_SETs sorted: one spelling per path."""
    out: list[tuple[int, tuple[int, ...]]] = []
    for t, asns in segs:
        if t == 1:
            out.append((1, tuple(sorted(set(asns)))))
        elif out and out[-1][0] == 2:
            out[-1] = (2, out[-1][1] + tuple(asns))
        else:
            out.append((2, tuple(asns)))
    return tuple(out)


def _as4_merge(as_path: tuple, as4_path: tuple) -> tuple:
    """RFC 6793 4.2.3: rebuild the 4-octet path from AS_PATH and AS4_PATH."""
    flat = [(t, a) for t, asns in as_path for a in (asns if t == 2 else (asns,))]
    flat4 = [(t, a) for t, asns in as4_path for a in (asns if t == 2 else (asns,))]
    if len(flat4) > len(flat):
        return as_path
    head = flat[:len(flat) - len(flat4)]
    segs = [(2, (a,)) if t == 2 else (1, a) for t, a in head + flat4]
    return _merge_segments(segs)


def normalize(u: Update, as4: bool = True) -> RouteAttrs | None:
    """The normalized content of an UPDATE's announcement (None if it announces nothing);
    computed once per distinct attribute section (equal sections give the same object)."""
    if not u.nlri:
        return None
    if as4 == u.as4:
        return u.route
    sec = _section(u.attrs, as4)
    if sec.__class__ is int:
        raise BgpError(3, 3, bytes([sec]), f"missing well-known attribute {sec}")  # type: ignore[list-item]
    return sec  # type: ignore[return-value]


def _normalize(a: dict[int, tuple[int, bytes]], path: tuple, as4: bool) -> RouteAttrs:
    """A checked section's content; `path` is its AS_PATH decoded at the session's width."""
    path = _merge_segments(path)
    if not as4 and AS4_PATH_T in a:
        path = _as4_merge(path, _merge_segments(decode_as_path(a[AS4_PATH_T][1], True)))
    comms = a[COMMUNITIES_T][1] if COMMUNITIES_T in a else b""
    other = tuple(sorted((t, f & (F_OPTIONAL | F_TRANSITIVE), v) for t, (f, v) in a.items()
                         if t not in _KNOWN))
    return RouteAttrs(
        origin=a[ORIGIN_T][1][0], as_path=path,
        next_hop=socket.inet_ntoa(a[NEXT_HOP_T][1]),
        med=_U32.unpack(a[MED_T][1])[0] if MED_T in a else None,
        local_pref=_U32.unpack(a[LOCAL_PREF_T][1])[0] if LOCAL_PREF_T in a else None,
        atomic_aggregate=ATOMIC_T in a,
        communities=tuple(sorted(set(struct.unpack(f"!{len(comms) // 4}I", comms)))) if comms else (),
        other=other)


_KNOWN = frozenset({ORIGIN_T, AS_PATH_T, NEXT_HOP_T, MED_T, LOCAL_PREF_T, ATOMIC_T, COMMUNITIES_T,
                    AS4_PATH_T})
_U32 = struct.Struct("!I")


def has_as(r: RouteAttrs, asn: int) -> bool:
    """Whether an AS appears in the path (the receiver's loop detection would drop it)."""
    for _, asns in r.as_path:  # a loop, not any(): once per UPDATE a replica sends
        if asn in asns:
            return True
    return False


def _as_segments(segs: Iterable[tuple[int, tuple[int, ...]]], fmt: str) -> bytes:
    """AS_PATH / AS4_PATH segments: (type, count, ASNs); a segment of more than 255 ASNs is
    written as several (RFC 4271 4.3: the count is one octet)."""
    out = []
    for t, asns in segs:
        for i in range(0, len(asns), 255):
            run = asns[i:i + 255]
            out.append(struct.pack(f"!BB{len(run)}{fmt}", t, len(run), *run))
    return b"".join(out)


@functools.lru_cache(maxsize=CACHE_MAX)
def encode_attrs(r: RouteAttrs, as4: bool = True) -> bytes:
    """The path attribute section for normalized content, in type order; encoded once per
    distinct content (every churn event of a path re-sends the same). Written directly:
    these are the fixed encodings of RFC 4271 4.3, 1997 and 6793 (building os-ken's objects
    per section was ~5% of the hypervisor's CPU at 100k prefixes); os-ken's own encoding
    is what the unit tests hold it to."""
    wt, ot, opt = F_TRANSITIVE, F_OPTIONAL | F_TRANSITIVE, F_OPTIONAL
    out = [_attr_bytes(wt, ORIGIN_T, bytes((r.origin,)))]
    as4_path = b""
    if as4:
        out.append(_attr_bytes(wt, AS_PATH_T, _as_segments(r.as_path, "I")))
    elif all(a <= 0xFFFF for _, asns in r.as_path for a in asns):
        out.append(_attr_bytes(wt, AS_PATH_T, _as_segments(r.as_path, "H")))
    else:  # a 2-octet session: AS_TRANS in AS_PATH, the real path in AS4_PATH
        two = [(t, tuple(a if a <= 0xFFFF else AS_TRANS for a in asns)) for t, asns in r.as_path]
        out.append(_attr_bytes(wt, AS_PATH_T, _as_segments(two, "H")))
        as4_path = _attr_bytes(ot, AS4_PATH_T, _as_segments(r.as_path, "I"))
    out.append(_attr_bytes(wt, NEXT_HOP_T, socket.inet_aton(r.next_hop)))
    if r.med is not None:
        out.append(_attr_bytes(opt, MED_T, struct.pack("!I", r.med)))
    if r.local_pref is not None:
        out.append(_attr_bytes(wt, LOCAL_PREF_T, struct.pack("!I", r.local_pref)))
    if r.atomic_aggregate:
        out.append(_attr_bytes(wt, ATOMIC_T, b""))
    if r.communities:
        out.append(_attr_bytes(ot, COMMUNITIES_T, struct.pack(f"!{len(r.communities)}I", *r.communities)))
    out.append(as4_path)
    return b"".join(out) + b"".join(_attr_bytes(f, t, v) for t, f, v in r.other)


def _nlri_bytes(prefix: str) -> bytes:
    """(length, the prefix's significant octets): what os-ken's IPAddrPrefix writes, done
    directly because a full table passes through here."""
    addr, _, plen = prefix.partition("/")
    n = int(plen)
    return bytes((n,)) + socket.inet_aton(addr)[:(n + 7) // 8]


def _update(withdrawn: bytes, attrs: bytes, nlri: bytes) -> bytes:
    body = struct.pack("!H", len(withdrawn)) + withdrawn + struct.pack("!H", len(attrs)) + attrs + nlri
    return MARKER + struct.pack("!HB", HEADER_LEN + len(body), UPDATE) + body


def _chunks(prefixes: list[str], room: int) -> Iterable[tuple[bytes, list[str]]]:
    """Pack encoded prefixes into runs that fit in `room` bytes."""
    buf, chunk = b"", []
    for p in prefixes:
        b = _nlri_bytes(p)
        if chunk and len(buf) + len(b) > room:
            yield buf, chunk
            buf, chunk = b"", []
        buf += b
        chunk.append(p)
    if chunk:
        yield buf, chunk


def encode_announce(attrs: bytes, prefixes: list[str]) -> list[tuple[bytes, list[str]]]:
    """UPDATEs announcing `prefixes` with raw path attributes, each paired with its prefixes."""
    room = MAX_LEN - HEADER_LEN - 4 - len(attrs)
    return [(_update(b"", attrs, nlri), chunk) for nlri, chunk in _chunks(prefixes, room)]


def encode_withdraw(prefixes: list[str]) -> list[bytes]:
    room = MAX_LEN - HEADER_LEN - 4
    return [_update(w, b"", b"") for w, _ in _chunks(prefixes, room)]


def encode_changes(changes: Iterable[tuple[str, RouteAttrs | None]], as4: bool = True) -> list[bytes]:
    """UPDATE messages for voted changes: withdrawals first, then announcements grouped by
    identical content."""
    withdraw: list[str] = []
    groups: dict[RouteAttrs, list[str]] = {}
    for prefix, attrs in changes:
        if attrs is None:
            withdraw.append(prefix)
        else:
            groups.setdefault(attrs, []).append(prefix)
    msgs = encode_withdraw(withdraw)
    for attrs, prefixes in groups.items():
        msgs += [m for m, _ in encode_announce(encode_attrs(attrs, as4), prefixes)]
    return msgs


def end_of_rib() -> bytes:
    return _update(b"", b"", b"")
