"""The hand decoder of rtnetlink route messages (built here byte by byte, as the kernel does)."""
from __future__ import annotations

import socket
import struct

from verb import netlink as nl


def attr(t: int, data: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(data), t) + data
    return raw + b"\0" * (-len(raw) % 4)


def route(mtype: int, dst: str, plen: int, *, proto=186, rtype=1, table=254, attrs=b"") -> bytes:
    body = struct.pack("=BBBBBBBBI", socket.AF_INET, plen, 0, 0, table, proto, 0, rtype, 0)
    body += attr(nl.RTA_DST, socket.inet_aton(dst)) + attrs
    return struct.pack("=IHHII", 16 + len(body), mtype, 0, 1, 0) + body


def test_single_and_multipath_routes_and_deletions():
    gw = attr(nl.RTA_GATEWAY, socket.inet_aton("10.1.0.2")) + attr(nl.RTA_OIF, struct.pack("=i", 3))
    hop = lambda g, i: (lambda a: struct.pack("=HBBi", 8 + len(a), 0, 0, i) + a)(
        attr(nl.RTA_GATEWAY, socket.inet_aton(g)))
    mp = attr(nl.RTA_MULTIPATH, hop("10.1.0.2", 3) + hop("10.2.0.2", 4))
    buf = (route(nl.RTM_NEWROUTE, "100.64.1.0", 24, attrs=gw + attr(nl.RTA_PRIORITY, struct.pack("=I", 20)))
           + route(nl.RTM_NEWROUTE, "100.64.2.0", 24, attrs=mp)
           + route(nl.RTM_DELROUTE, "100.64.3.0", 24, rtype=6)
           + struct.pack("=IHHII", 20, nl.NLMSG_DONE, 2, 1, 0) + b"\0" * 4)
    a, b, c = nl.parse(buf)
    assert (a.new, a.prefix, a.gateway, a.oif, a.priority, a.proto) == (True, "100.64.1.0/24", "10.1.0.2", 3, 20, 186)
    assert b.multipath == [("10.1.0.2", 3), ("10.2.0.2", 4)]
    assert (c.new, c.type) == (False, 6)
    assert nl.is_done(buf) and not nl.is_done(buf[:len(buf) - 20])


def test_truncated_or_foreign_messages_are_skipped():
    assert nl.parse(b"") == [] and nl.parse(b"\x01\x00") == []
    link = struct.pack("=IHHII", 32, 16, 0, 0, 0) + b"\0" * 16  # RTM_NEWLINK
    assert nl.parse(link) == []
