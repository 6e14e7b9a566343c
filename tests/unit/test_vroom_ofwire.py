"""The route-flow encoder of `vroom.ofwire` (bundled OpenFlow 1.3 flow_mods), decoded back
field by field; the emulation test `test_vroom_ofwire` checks a real switch reads them as
ovs-ofctl's."""
from __future__ import annotations

import socket
import struct

from vroom.flows import Flow
from vroom.ofwire import (OFPT_EXPERIMENTER, OFPT_FLOW_MOD, ONF_VENDOR_ID,
                          ONFT_BUNDLE_ADD_MESSAGE, FlowEncoder)


def decode(msg: bytes) -> dict:
    """The fields of one bundled flow_mod (as the OpenFlow 1.3 spec lays them out)."""
    v, t, length, xid = struct.unpack_from("!BBHI", msg)
    assert (v, t, length) == (4, OFPT_EXPERIMENTER, len(msg))
    exp, exp_type, bid, _, flags = struct.unpack_from("!IIIHH", msg, 8)
    assert (exp, exp_type, flags) == (ONF_VENDOR_ID, ONFT_BUNDLE_ADD_MESSAGE, 3)
    fm = msg[24:]
    v, t, fm_len, fm_xid = struct.unpack_from("!BBHI", fm)
    assert (t, fm_len, fm_xid) == (OFPT_FLOW_MOD, len(fm), xid)
    table, cmd, _, _, prio = struct.unpack_from("!BBHHH", fm, 24)
    mtype, mlen = struct.unpack_from("!HH", fm, 48)
    oxm, fields, i = fm[52:48 + mlen], {}, 0
    while i < len(oxm):
        (h,) = struct.unpack_from("!I", oxm, i)
        n = h & 0xFF
        fields[h >> 9] = oxm[i + 4:i + 4 + n]
        i += 4 + n
    instr = fm[48 + (mlen + 7) // 8 * 8:]
    itype, ilen, atype, alen, gid = struct.unpack_from("!HH4xHHI", instr)
    assert (mtype, itype, ilen, atype, alen, len(instr)) == (1, 4, 16, 22, 8, 16)
    return {"bundle": bid, "table": table, "command": cmd, "priority": prio,
            "fields": fields, "group": gid}


def test_route_flows_encode_every_prefix_length() -> None:
    enc = FlowEncoder(bid=9)
    d = decode(enc.encode(Flow(1, 1048, ("reg0=5", "ip", "nw_dst=11.2.3.0/24"),
                               ("group:83886081",))))
    assert (d["bundle"], d["table"], d["command"], d["priority"], d["group"]) == \
        (9, 1, 0, 1048, 83886081)
    reg0, eth_type, dst = (0x0001 << 7) | 0, (0x8000 << 7) | 5, (0x8000 << 7) | 12
    assert d["fields"][reg0] == struct.pack("!I", 5)
    assert d["fields"][eth_type] == b"\x08\x00"
    assert d["fields"][dst] == socket.inet_aton("11.2.3.0") + socket.inet_aton("255.255.255.0")
    host = decode(enc.encode(Flow(1, 1064, ("reg0=5", "ip", "nw_dst=9.9.9.9"), ("group:7",))))
    assert host["fields"][dst] == socket.inet_aton("9.9.9.9")  # no mask for a /32
    default = decode(enc.encode(Flow(1, 1000, ("reg0=5", "ip"), ("group:7",))))
    assert dst not in default["fields"] and eth_type in default["fields"]
    eight = decode(enc.encode(Flow(1, 1016, ("reg0=5", "ip", "nw_dst=12.0.0.0/8"), ("group:7",))))
    assert eight["fields"][dst][4:] == socket.inet_aton("255.0.0.0")


def test_other_shapes_are_left_to_ovs_ofctl() -> None:
    enc = FlowEncoder()
    for f in (Flow(1, 1048, ("reg0=5", "ip", "nw_dst=1.2.3.0/24"), ("goto_table:2",)),
              Flow(1, 1, ("reg0=5",), ("goto_table:2",)),
              Flow(0, 100, ("in_port=1",), ("group:7",)),
              Flow(1, 1048, ("reg0=5", "ip", "nw_dst=1.2.3.0/24"), ("group:7", "drop"))):
        assert enc.encode(f) is None
