"""The two halves of the UDP probe, run inside a host's network namespace.

    python -m routerlab.probe_agent recv --bind IP [--port P] --run-id ID
    python -m routerlab.probe_agent send --dst IP --port P --run-id ID --rate PPS [--size B]

`routerlab.traffic.Probe` starts one of each and talks to them over stdin/stdout; the agents
use only the standard library so they start fast in any namespace.

Protocol with the parent (one JSON object per stdout line):

* both agents print ``{"ready": true, ...}`` once set up (the receiver includes the UDP port it
  bound, so the parent can let it choose an ephemeral port);
* the sender stops when its stdin says ``stop`` or reaches EOF (or after ``--count``/
  ``--duration``), then prints its report: packets sent, first/last send time, send errors,
  how late it ran against its schedule;
* the receiver stops when its stdin says ``stop N`` (N = packets sent) or reaches EOF: it
  keeps draining in-flight packets until sequence number N-1 has arrived or ``--drain``
  seconds have passed, then prints its log (sequence number, sender timestamp, arrival
  timestamp of every packet, in arrival order, as base64 of native-endian int64 arrays).

Packet (UDP payload, ``size`` bytes, at least HEADER.size): magic ``RLP1``, 32-bit run id,
64-bit sequence number, 64-bit send time (CLOCK_REALTIME ns), zero padding. The run id makes
the receiver ignore stray packets from any other probe.

Timestamps are CLOCK_REALTIME in nanoseconds on both sides: the arrival time is the kernel's
receive timestamp (SO_TIMESTAMPNS), so a receiver that is briefly descheduled does not turn
queued packets into a fake gap. The analysis only uses differences and removes any constant
offset between the two clocks (see `routerlab.traffic.analyze`).
"""
from __future__ import annotations

import argparse
import base64
import contextlib
import errno
import ipaddress
import json
import logging
import os
import select
import signal
import socket
import struct
import sys
import time
from array import array
from typing import Any

log = logging.getLogger("routerlab.probe_agent")

MAGIC = b"RLP1"
HEADER = struct.Struct("!4sIQq")  # magic, run id, seq, send time (realtime ns)
# SO_TIMESTAMPNS (== SCM_TIMESTAMPNS): not exported by Python's socket module.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
TIMESPEC = struct.Struct("@qq")


def encode_array(a: array) -> str:
    return base64.b64encode(a.tobytes()).decode("ascii")


def decode_array(text: str, typecode: str = "q") -> array:
    a = array(typecode)
    a.frombytes(base64.b64decode(text))
    return a


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _family(ip: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


class _StdinControl:
    """Non-blocking line reader on stdin: the parent's stop command (or EOF)."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.eof = False

    def read_lines(self) -> list[str]:
        try:
            chunk = os.read(self.fd, 4096)
        except BlockingIOError:
            return []
        if not chunk:
            self.eof = True
            chunk = b"\n"  # flush a last line without newline
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        return [ln.decode(errors="replace").strip() for ln in lines if ln.strip()]


_term = False


def _on_term(signum: int, frame: Any) -> None:
    # Treated like a stop command: finish the current step and report.
    global _term
    _term = True


# --------------------------------------------------------------------------- sender

def run_sender(dst: str, port: int, run_id: int, rate: float, size: int, *,
               src: str | None = None, count: int | None = None,
               duration: float | None = None, max_catchup_s: float = 0.05) -> dict[str, Any]:
    """Send `rate` packets/s to dst:port until told to stop; return the sender report.

    Packet i is due at t0 + i/rate (absolute schedule on CLOCK_MONOTONIC), so the rate does
    not drift however long the run. A late sender catches up by sending back-to-back, but
    never more than `max_catchup_s` worth of packets: beyond that it skips the missed slots
    (counted in ``skipped_slots``) rather than burst into the network."""
    if rate <= 0:
        raise ValueError("rate must be positive")
    size = max(size, HEADER.size)
    if duration is not None:
        dcount = max(1, int(round(duration * rate)))
        count = dcount if count is None else min(count, dcount)
    sock = socket.socket(_family(dst), socket.SOCK_DGRAM)
    if src:
        sock.bind((src, 0))
    # connect(): the kernel itself then refuses to send anywhere but dst:port.
    sock.connect((dst, port))
    # Never block in send(): while a neighbour is unresolved the kernel queues our packets
    # and a full send buffer would stall the schedule; a packet that cannot be queued is
    # counted (EAGAIN) and lost, as it would be on the wire.
    sock.setblocking(False)
    ctl = _StdinControl()
    pad = bytes(size - HEADER.size)
    period_ns = 1e9 / rate
    max_catchup_slots = max(1, int(max_catchup_s * rate))
    pack = HEADER.pack
    mono, real = time.monotonic_ns, time.time_ns
    seq = 0
    slot = 0
    skipped = 0
    errors: dict[str, int] = {}
    max_late = 0
    late_count = 0
    first_real = last_real = 0
    first_mono = last_mono = 0
    stopping = False
    _emit({"ready": True, "role": "send"})
    t0 = mono()
    while not stopping and not _term and (count is None or seq < count):
        due = t0 + int(slot * period_ns)
        now = mono()
        if now < due or seq % 256 == 255:
            # Sleep until due, waking early if the parent writes to stdin; a sender that
            # is always behind still looks at stdin every 256 packets.
            r, _, _ = select.select([ctl.fd], [], [], max(0, due - now) / 1e9)
            if r:
                for line in ctl.read_lines():
                    if line.split()[0] == "stop":
                        stopping = True
                if ctl.eof:
                    stopping = True
                continue
            now = mono()
        late = now - due
        if late > max_catchup_slots * period_ns:
            # Far behind (sender descheduled): skip the missed slots instead of bursting.
            behind = int(late // period_ns)
            skipped += behind
            slot += behind
            due = t0 + int(slot * period_ns)
            late = now - due
        if late > max_late:
            max_late = late
        if late > period_ns:
            late_count += 1
        ts = real()
        try:
            sock.send(pack(MAGIC, run_id, seq, ts) + pad)
        except OSError as e:
            # The packet did not leave (no route, link down, ICMP error pending): it still
            # used its sequence number, so it counts as sent and lost.
            name = errno.errorcode.get(e.errno or 0, str(e.errno))
            errors[name] = errors.get(name, 0) + 1
        if seq == 0:
            first_real, first_mono = ts, now
        last_real, last_mono = ts, now
        seq += 1
        slot += 1
    sock.close()
    return {"role": "send", "run_id": run_id, "sent": seq, "rate_pps": rate, "size": size,
            "first_send_ns": first_real, "last_send_ns": last_real,
            "first_send_mono_ns": first_mono, "last_send_mono_ns": last_mono,
            "send_errors": sum(errors.values()), "errors": errors,
            "max_late_ns": max_late, "late_count": late_count, "skipped_slots": skipped}


# --------------------------------------------------------------------------- receiver

def run_receiver(bind: str, port: int, run_id: int, *, drain_s: float = 1.0,
                 rcvbuf: int = 4 << 20) -> dict[str, Any]:
    """Record every probe packet until told to stop; return the receiver log."""
    sock = socket.socket(_family(bind), socket.SOCK_DGRAM)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    kernel_ts = True
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    except OSError:
        kernel_ts = False
    # Binding the probe's destination address also proves it is local to this namespace.
    sock.bind((bind, port))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    ctl = _StdinControl()
    seqs, sends, arrivals = array("q"), array("q"), array("q")
    foreign = 0
    user_ts = 0
    max_seq = -1
    seen_last = False
    stop_target: int | None = None
    deadline: float | None = None
    cmsg_space = socket.CMSG_SPACE(TIMESPEC.size)
    hsize = HEADER.size
    unpack = HEADER.unpack_from
    _emit({"ready": True, "role": "recv", "port": port, "kernel_ts": kernel_ts})
    while True:
        now = time.monotonic()
        if deadline is None and _term:
            deadline = now  # SIGTERM: report what we have, no drain
        if deadline is not None and (seen_last or now >= deadline):
            break
        timeout = None if deadline is None else max(0.0, deadline - now)
        fds = [sock] if ctl.eof else [sock, ctl.fd]
        try:
            r, _, _ = select.select(fds, [], [], timeout if timeout is not None else 0.5)
        except InterruptedError:
            continue
        if ctl.fd in r:
            for line in ctl.read_lines():
                parts = line.split()
                if parts[0] == "stop":
                    stop_target = int(parts[1]) if len(parts) > 1 else None
                    deadline = time.monotonic() + drain_s
            if ctl.eof and deadline is None:
                deadline = time.monotonic() + drain_s
            if stop_target is not None:
                # Sequence numbers never exceed N-1, so max_seq == N-1 means it arrived.
                seen_last = max_seq >= stop_target - 1
        if sock not in r:
            continue
        while True:  # drain everything queued before sleeping again
            try:
                data, anc, _, _ = sock.recvmsg(65535, cmsg_space)
            except (BlockingIOError, InterruptedError):
                break
            except ConnectionRefusedError:
                continue
            arr = 0
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                    sec, nsec = TIMESPEC.unpack_from(cdata)
                    arr = sec * 1_000_000_000 + nsec
            if not arr:
                arr = time.time_ns()
                user_ts += 1
            if len(data) < hsize:
                foreign += 1
                continue
            magic, rid, seq, ts = unpack(data)
            if magic != MAGIC or rid != run_id:
                foreign += 1
                continue
            seqs.append(seq)
            sends.append(ts)
            arrivals.append(arr)
            if seq > max_seq:
                max_seq = seq
                if stop_target is not None and seq >= stop_target - 1:
                    seen_last = True
    sock.close()
    return {"role": "recv", "run_id": run_id, "port": port, "count": len(seqs),
            "foreign": foreign, "user_timestamps": user_ts,
            "seq_b64": encode_array(seqs), "send_ns_b64": encode_array(sends),
            "arrival_ns_b64": encode_array(arrivals)}


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m routerlab.probe_agent", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="role", required=True)
    s = sub.add_parser("send", help="send the constant-rate stream")
    s.add_argument("--dst", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--src")
    s.add_argument("--run-id", type=int, required=True)
    s.add_argument("--rate", type=float, default=1000.0, help="packets per second")
    s.add_argument("--size", type=int, default=64, help="UDP payload bytes")
    s.add_argument("--count", type=int)
    s.add_argument("--duration", type=float, help="seconds: sends round(rate x duration) packets")
    s.add_argument("--max-catchup", type=float, default=0.05, help="seconds")
    r = sub.add_parser("recv", help="receive and log the stream")
    r.add_argument("--bind", required=True)
    r.add_argument("--port", type=int, default=0)
    r.add_argument("--run-id", type=int, required=True)
    r.add_argument("--drain", type=float, default=1.0, help="seconds")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="probe_agent %(levelname)s: %(message)s")
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGINT, _on_term)
    try:
        if a.role == "send":
            ipaddress.ip_address(a.dst)  # a literal address only: never a name to resolve
            out = run_sender(a.dst, a.port, a.run_id, a.rate, a.size, src=a.src,
                             count=a.count, duration=a.duration, max_catchup_s=a.max_catchup)
        else:
            ipaddress.ip_address(a.bind)
            out = run_receiver(a.bind, a.port, a.run_id, drain_s=a.drain)
    except (OSError, ValueError) as e:
        log.error("%s: %s", a.role, e)
        return 2
    _emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
