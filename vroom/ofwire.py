"""Bulk installation of LPM route flows over OpenFlow 1.3 directly (no ovs-ofctl).

A cloned full table is a million flows of one shape: ``table=1, priority=P, reg0=VR, ip,
nw_dst=A/L, actions=group:G``. ovs-ofctl spends ~3 us of CPU parsing each such text line
before the switch sees it (a third of the install at a million routes, measured here); the
same flow_mod is a fixed 120-byte message in which only the address and mask change, so this
module encodes it from a template per (priority, VR, group) and sends it to the bridge's
management socket (``/var/run/openvswitch/BRIDGE.mgmt``) in ONF bundles (OpenFlow 1.3's
bundle extension, what ``ovs-ofctl --bundle`` sends): one bundle of at most `chunk` flows
per commit, so the shared ovs-vswitchd's main thread stops for one commit at a time (see
`vroom.hypervisor.INSTALL_CHUNK`). Flows of any other shape are left to the caller
(`encode_flow` returns None for them). The switch decodes the messages exactly as it does
ovs-ofctl's: ``ovs-ofctl dump-flows`` shows the same entries.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from .flows import T_ROUTE, Flow

log = logging.getLogger(__name__)

OVS_RUN_DIR = Path("/var/run/openvswitch")
OFP13 = 4
OFPT_HELLO, OFPT_ERROR, OFPT_ECHO_REQUEST, OFPT_ECHO_REPLY = 0, 1, 2, 3
OFPT_EXPERIMENTER, OFPT_FLOW_MOD = 4, 14
ONF_VENDOR_ID = 0x4F4E4600
ONFT_BUNDLE_CONTROL, ONFT_BUNDLE_ADD_MESSAGE = 2300, 2301
OFPBCT_OPEN_REQUEST, OFPBCT_COMMIT_REQUEST = 0, 4
OFPBF_ATOMIC_ORDERED = 3  # what ovs-ofctl --bundle asks for
OXM_REG0 = 0x00010004  # NXM_NX_REG0 (class NXM1, field 0, 4 bytes)
OXM_ETH_TYPE = 0x80000A02
OXM_IPV4_DST, OXM_IPV4_DST_W = 0x80001804, 0x80001908
OFPIT_APPLY_ACTIONS, OFPAT_GROUP = 4, 22
_NO = 0xFFFFFFFF  # OFP_NO_BUFFER / OFPP_ANY / OFPG_ANY


class OpenFlowError(RuntimeError):
    pass


def _msg_header(msg_type: int, length: int, xid: int) -> bytes:
    return struct.pack("!BBHI", OFP13, msg_type, length, xid)


OFPFC_ADD, OFPFC_DELETE_STRICT = 0, 4


def _templates(table: int, prio: int, vr: int, gid: int | None, plen: int, bid: int, xid: int
               ) -> tuple[bytes, bytes]:
    """(bytes before the destination address, bytes after it) of one bundled flow_mod:
    an add with actions group:`gid`, or a strict delete when `gid` is None."""
    oxm = struct.pack("!IIIH", OXM_REG0, vr, OXM_ETH_TYPE, 0x0800)
    if plen == 32:
        oxm += struct.pack("!I", OXM_IPV4_DST)
        after = b""
    elif plen > 0:
        oxm += struct.pack("!I", OXM_IPV4_DST_W)
        after = struct.pack("!I", (_NO << (32 - plen)) & _NO)
    else:
        after = b""
    mlen = 4 + len(oxm) + (4 if plen else 0) + len(after)
    pad = b"\0" * ((8 - mlen % 8) % 8)
    instr = (struct.pack("!HH4xHHI", OFPIT_APPLY_ACTIONS, 16, OFPAT_GROUP, 8, gid)
             if gid is not None else b"")
    command = OFPFC_ADD if gid is not None else OFPFC_DELETE_STRICT
    fm_len = 48 + mlen + len(pad) + len(instr)
    head = (_msg_header(OFPT_EXPERIMENTER, 24 + fm_len, xid)
            + struct.pack("!IIIHH", ONF_VENDOR_ID, ONFT_BUNDLE_ADD_MESSAGE, bid, 0,
                          OFPBF_ATOMIC_ORDERED)
            + _msg_header(OFPT_FLOW_MOD, fm_len, xid)
            + struct.pack("!QQBBHHHIIIH2x", 0, 0, table, command, 0, 0, prio, _NO, _NO, _NO, 0)
            + struct.pack("!HH", 1, mlen) + oxm)
    return head, after + pad + instr


class FlowEncoder:
    """Encodes route flows as bundled flow_mods (templates cached per shape): adds, or
    strict deletes with `delete`."""

    def __init__(self, bid: int = 1, xid: int = 1, *, delete: bool = False):
        self.bid, self.xid, self.delete = bid, xid, delete
        self._tpl: dict[tuple, tuple[bytes, bytes] | None] = {}

    def encode(self, flow: Flow) -> bytes | None:
        """The message adding (deleting) `flow`, None when it is not a route flow of the
        one shape."""
        table, prio, match, actions = flow
        dst = match[2] if len(match) == 3 else None
        plen = dst[dst.find("/") + 1:] if dst is not None and "/" in dst else len(match)
        key = (table, prio, match[0] if match else None, plen,
               None if self.delete else actions)
        tpl = self._tpl.get(key, False)
        if tpl is False:
            tpl = self._tpl[key] = self._template(flow)
        if tpl is None:
            return None
        if dst is None:
            return tpl[0] + tpl[1]
        addr = dst[7:].split("/", 1)[0]
        try:
            return tpl[0] + socket.inet_aton(addr) + tpl[1]
        except OSError:
            return None

    def _template(self, flow: Flow) -> tuple[bytes, bytes] | None:
        table, prio, match, actions = flow
        if not self.delete and (len(actions) != 1 or not actions[0].startswith("group:")):
            return None
        if (table != T_ROUTE or len(match) not in (2, 3) or not match[0].startswith("reg0=")
                or match[1] != "ip"):
            return None
        try:
            vr = int(match[0][5:])
            gid = None if self.delete else int(actions[0][6:])
        except ValueError:
            return None
        if len(match) == 2:
            plen = 0
        elif match[2].startswith("nw_dst="):
            dst = match[2][7:]
            plen = int(dst.split("/", 1)[1]) if "/" in dst else 32
            if not 0 < plen <= 32:
                return None
        else:
            return None
        return _templates(table, prio, vr, gid, plen, self.bid, self.xid)


class OpenFlowConnection:
    """One OpenFlow 1.3 connection to a bridge's management socket."""

    def __init__(self, bridge: str, run_dir: Path = OVS_RUN_DIR, timeout: float = 600):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(str(run_dir / f"{bridge}.mgmt"))
        self.sock.sendall(_msg_header(OFPT_HELLO, 8, 0))
        self._buf = b""
        t, _, _ = self.recv()
        if t != OFPT_HELLO:
            raise OpenFlowError(f"{bridge}: expected HELLO, got message type {t}")

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> OpenFlowConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(1 << 16)
            if not chunk:
                raise OpenFlowError("the switch closed the connection")
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv(self) -> tuple[int, int, bytes]:
        """(type, xid, body) of the next message (echo requests answered on the way)."""
        while True:
            _, t, length, xid = struct.unpack("!BBHI", self._read(8))
            body = self._read(length - 8)
            if t == OFPT_ECHO_REQUEST:
                self.sock.sendall(_msg_header(OFPT_ECHO_REPLY, length, xid) + body)
                continue
            return t, xid, body

    def bundle(self, bid: int, messages: bytes, xid: int) -> None:
        """Open bundle `bid`, add `messages` (encoded for it), commit; raises on an error."""
        ctrl = struct.pack("!IIIHH", ONF_VENDOR_ID, ONFT_BUNDLE_CONTROL, bid, 0,
                           OFPBF_ATOMIC_ORDERED)
        open_req = bytearray(_msg_header(OFPT_EXPERIMENTER, 24, xid + 1) + ctrl)
        struct.pack_into("!H", open_req, 20, OFPBCT_OPEN_REQUEST)
        commit = bytearray(_msg_header(OFPT_EXPERIMENTER, 24, xid + 2) + ctrl)
        struct.pack_into("!H", commit, 20, OFPBCT_COMMIT_REQUEST)
        self.sock.sendall(bytes(open_req) + messages + bytes(commit))
        errors: list[str] = []
        while True:
            t, rxid, body = self.recv()
            if t == OFPT_ERROR:
                etype, ecode = struct.unpack("!HH", body[:4])
                errors.append(f"type {etype} code {ecode} (xid {rxid})")
            if rxid == xid + 2:  # the commit's answer (a reply or an error)
                break
        if errors:
            raise OpenFlowError(f"bundle {bid}: {len(errors)} errors, first: {errors[0]}")


CONNECTIONS = 4  # parallel connections a bulk install is spread over (see add_flows)


def add_flows(bridge: str, flows: Iterable[Flow], *, chunk: int, pause_s: float = 0.0,
              connections: int = CONNECTIONS) -> tuple[int, list[Flow]]:
    """Add the route flows among `flows` to `bridge` in bundles of at most `chunk`
    flows; returns (flows added, the flows of other shapes, left for ovs-ofctl).

    Each chunk is spread over `connections` connections, one bundle on each, sent at once:
    ovs-vswitchd reads at most 50 messages from one connection per turn of its main loop,
    and a turn also polls every userspace bridge's ports, so on a busy switch one
    connection's turns, not the per-flow work, bound the rate (60,000 flows here: 3.5-5.0 s
    on one connection, 2.7-2.8 s on four). Each commit then holds chunk/connections flows."""
    enc = FlowEncoder(bid=1, xid=1)
    msgs, other = _encode_all(enc, flows)
    if not msgs:
        return 0, other
    k = max(1, min(connections, len(msgs)))
    conns: list[OpenFlowConnection] = []
    try:
        conns = [OpenFlowConnection(bridge) for _ in range(k)]
        for i in range(0, len(msgs), chunk):
            part = msgs[i:i + chunk]
            _parallel([(c, b"".join(part[j::k])) for j, c in enumerate(conns)])
            if pause_s and i + chunk < len(msgs):
                time.sleep(pause_s)
    finally:
        for c in conns:
            c.close()
    return len(msgs), other


def _encode_all(enc: FlowEncoder, flows: Iterable[Flow]) -> tuple[list[bytes], list[Flow]]:
    """(messages for the flows `enc` encodes, the flows it does not)."""
    other: list[Flow] = []
    msgs: list[bytes] = []
    for f in flows:
        m = enc.encode(f)
        if m is None:
            other.append(f)
        else:
            msgs.append(m)
    return msgs, other


def _parallel(work: list[tuple[OpenFlowConnection, bytes]]) -> None:
    """Send one bundle on each connection at once; raises the first failure."""
    errors: list[BaseException] = []

    def send(conn: OpenFlowConnection, data: bytes) -> None:
        try:
            if data:
                conn.bundle(1, data, xid=1)
        except BaseException as e:  # re-raised in the caller's thread
            errors.append(e)
    threads = [threading.Thread(target=send, args=w) for w in work[1:]]
    for t in threads:
        t.start()
    send(*work[0])
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


def delete_flows(bridge: str, flows: Iterable[Flow], *, chunk: int, pause_max_s: float
                 ) -> tuple[int, list[Flow]]:
    """Strict-delete the route flows among `flows` from `bridge`, `chunk` to a bundle,
    pausing after each as long as it took (at most `pause_max_s`), so the chunks stay
    small (`vroom.hypervisor.REMOVE_CHUNK`). This saves ovs-ofctl's process and text parse
    per chunk, but the switch's own cost bounds the rate: with a million flows sharing one
    next-hop group a 2,500-flow commit took 0.3-0.6 s here (1M flows: ~8 min, as with
    ovs-ofctl). Returns (flows deleted, the flows of other shapes)."""
    enc = FlowEncoder(bid=1, xid=1, delete=True)
    msgs, other = _encode_all(enc, flows)
    if msgs:
        with OpenFlowConnection(bridge) as conn:
            for i in range(0, len(msgs), chunk):
                t0 = time.monotonic()
                conn.bundle(1, b"".join(msgs[i:i + chunk]), xid=1)
                if i + chunk < len(msgs):
                    time.sleep(min(time.monotonic() - t0, pause_max_s))
    return len(msgs), other
