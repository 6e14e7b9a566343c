"""Flow-group traffic: constant-rate UDP from many source ports, counted per flow at the sink.

B4's encap switch hashes *flows* onto a tunnel group's tunnels, so one 5-tuple per
application would put all of it on one tunnel. Open vSwitch's default select-group hash
(``dp_hash`` with the symmetric L3/L4 function) leaves UDP ports out and XORs the two
addresses, so each traffic flow here (an application of a flow group) sends from ``sources``
different source addresses of its site's prefix in turn (the sites' prefixes are /16s, so
there are plenty), and the split over tunnels follows the bucket weights. Senders write raw
IPv4 packets (any source address, no socket state; replies are never needed); one sender
process per source host serves all of that host's flows, one receiver per destination host
counts every flow by the id in its payload.

Rates and byte counts are IP-level: a packet of ``size`` payload bytes counts ``size + 28``
(UDP and IPv4 headers).

Agents (run inside host namespaces)::

    python -m b4.traffic send   # reads {"flows": [...]} on stdin, then "stop"
    python -m b4.traffic recv --port P   # "snap" -> counts, "stop" -> counts and exit
"""
from __future__ import annotations

import argparse
import heapq
import json
import logging
import select
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from routerlab.traffic.process import agent_env

log = logging.getLogger(__name__)

MAGIC = b"B4TG"
HEADER = struct.Struct("!4sIIQ")  # magic, flow id, sequence, send time (ns)
IP_UDP_OVERHEAD = 28


@dataclass(frozen=True)
class FlowSpec:
    """One constant-rate flow (an application of a flow group)."""

    id: int
    name: str
    src_host: str
    dst_host: str
    dst_ip: str
    rate_mbps: float
    port: int
    size: int = 1400          # UDP payload bytes
    src_prefix: str = ""      # source addresses are drawn from it ("" : the host's own only)
    sources: int = 2048       # how many distinct source addresses
    src_ip: str = ""          # the host's own address (excluded from the draw)
    sport: int = 20000
    dscp: int | None = None

    @property
    def pps(self) -> float:
        return self.rate_mbps * 1e6 / (8 * (self.size + IP_UDP_OVERHEAD))


# =========================================================================== agents

def source_addresses(prefix: str, n: int, seed: int, exclude: set[str]) -> list[str]:
    """``n`` distinct pseudo-random host addresses of ``prefix`` (reproducible by ``seed``)."""
    import ipaddress
    import random

    net = ipaddress.IPv4Network(prefix)
    size = net.num_addresses - 2
    rng = random.Random(seed)
    base = int(net.network_address)
    bad = {int(ipaddress.IPv4Address(a)) for a in exclude} | {int(net.broadcast_address) - 1}
    out: list[str] = []
    seen: set[int] = set()
    while len(out) < min(n, max(size - len(bad), 1)):
        a = base + 1 + rng.randrange(size)
        if a in seen or a in bad:
            continue
        seen.add(a)
        out.append(str(ipaddress.IPv4Address(a)))
    return out


def _packet(src: bytes, dst: bytes, tos: int, sport: int, dport: int, payload: bytes) -> bytes:
    """IPv4 (the kernel fills in length, id and checksum) + UDP without checksum."""
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 0, 0, 0x4000, 64, socket.IPPROTO_UDP, 0, src, dst)
    return ip + struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def run_sender(flows: list[dict[str, Any]], stop: threading.Event) -> dict[str, Any]:
    """Send every flow at its rate until ``stop``; returns per-flow packets/bytes sent."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
    sent = {f["id"]: {"packets": 0, "bytes": 0, "errors": 0} for f in flows}
    srcs, dsts = [], []
    for f in flows:
        own = f.get("src_ip") or ""
        pool = source_addresses(f["src_prefix"], f["sources"], f["id"], {own} if own else set()) \
            if f.get("src_prefix") else [own]
        srcs.append([socket.inet_aton(a) for a in pool])
        dsts.append(socket.inet_aton(f["dst_ip"]))
    heap = []
    t0 = time.monotonic()
    for i, f in enumerate(flows):
        pps = f["rate_mbps"] * 1e6 / (8 * (f["size"] + IP_UDP_OVERHEAD))
        if pps > 0:
            heap.append((t0 + i * 1e-4, i, 0, 1.0 / pps))
    heapq.heapify(heap)
    pad = {f["id"]: b"\0" * (f["size"] - HEADER.size) for f in flows}
    while heap and not stop.is_set():
        due, i, n, gap = heap[0]
        now = time.monotonic()
        if due > now:
            stop.wait(min(due - now, 0.05))
            continue
        f = flows[i]
        tos = (f["dscp"] << 2) if f.get("dscp") is not None else 0
        payload = HEADER.pack(MAGIC, f["id"], n, time.time_ns()) + pad[f["id"]]
        pkt = _packet(srcs[i][n % len(srcs[i])], dsts[i], tos, f["sport"], f["port"], payload)
        try:
            sock.sendto(pkt, (f["dst_ip"], 0))
            sent[f["id"]]["packets"] += 1
            sent[f["id"]]["bytes"] += f["size"] + IP_UDP_OVERHEAD
        except OSError:
            sent[f["id"]]["errors"] += 1
        # absolute schedule; after a long stall skip ahead rather than burst
        nxt = due + gap
        if now - nxt > 0.2:
            nxt = now
        heapq.heapreplace(heap, (nxt, i, n + 1, gap))
    return {"sent": sent, "elapsed_s": time.monotonic() - t0}


class Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.flows: dict[int, list[int]] = {}  # id -> [packets, bytes, highest sequence number + 1]
        self.foreign = 0

    def snap(self) -> dict[str, Any]:
        with self.lock:
            return {"time": time.time(), "flows": {str(k): list(v) for k, v in self.flows.items()},
                    "foreign": self.foreign}


def run_receiver(port: int, counter: Counter, stop: threading.Event) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    s.bind(("0.0.0.0", port))
    s.setblocking(False)
    while not stop.is_set():
        r, _, _ = select.select([s], [], [], 0.1)
        if not r:
            continue
        while True:
            try:
                data = s.recv(65535)
            except BlockingIOError:
                break
            if len(data) >= HEADER.size and data[:4] == MAGIC:
                _, fid, seq, _ = HEADER.unpack_from(data)
                with counter.lock:
                    c = counter.flows.setdefault(fid, [0, 0, 0])
                    c[0] += 1
                    c[1] += len(data) + IP_UDP_OVERHEAD
                    if seq + 1 > c[2]:
                        c[2] = seq + 1
            else:
                with counter.lock:
                    counter.foreign += 1


def agent_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="B4 flow-group traffic agent")
    sub = ap.add_subparsers(dest="mode", required=True)
    sub.add_parser("send")
    r = sub.add_parser("recv")
    r.add_argument("--port", type=int, required=True)
    args = ap.parse_args(argv)
    stop = threading.Event()
    if args.mode == "send":
        flows = json.loads(sys.stdin.readline())["flows"]
        result: dict[str, Any] = {}
        t = threading.Thread(target=lambda: result.update(run_sender(flows, stop)), daemon=True)
        t.start()
        print(json.dumps({"ready": True}), flush=True)
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()
        t.join(5)
        print(json.dumps(result), flush=True)
        return 0
    counter = Counter()
    t = threading.Thread(target=run_receiver, args=(args.port, counter, stop), daemon=True)
    t.start()
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "snap":
            print(json.dumps(counter.snap()), flush=True)
        elif cmd == "stop":
            break
    stop.set()
    t.join(2)
    print(json.dumps(counter.snap()), flush=True)
    return 0


# =========================================================================== controller

class TrafficError(RuntimeError):
    pass


def _readline(proc: subprocess.Popen, timeout: float, what: str) -> dict[str, Any]:
    assert proc.stdout is not None
    r, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if r else b""
    if not line:
        err = b""
        if proc.poll() is not None and proc.stderr is not None:
            err = proc.stderr.read() or b""
        raise TrafficError(f"{what}: no answer ({err.decode(errors='replace').strip()[-300:] or 'no output'})")
    return json.loads(line)


@dataclass
class Window:
    """Throughput per flow over a measurement window (Mbit/s, IP level).

    ``offered``: packets each flow's sender sent in the window, from the sequence numbers its
    packets carry (the highest one received at the window's end minus the one at its start):
    what the sender really managed to offer, stalls included. ``offered - packets`` is what
    the network lost in the window."""

    seconds: float
    mbps: dict[int, float]
    packets: dict[int, int]
    offered: dict[int, int] = field(default_factory=dict)

    def lost(self, fid: int) -> int:
        return max(0, self.offered.get(fid, 0) - self.packets.get(fid, 0))


class FlowGroupTraffic:
    """Senders and receivers for a set of flows on a `b4.wan.WanNetwork`."""

    def __init__(self, net: Any, flows: list[FlowSpec]):
        self.net = net
        self.flows = flows
        self.senders: dict[str, subprocess.Popen] = {}
        self.receivers: dict[str, subprocess.Popen] = {}
        self.sent: dict[int, dict[str, int]] = {}

    def start(self) -> "FlowGroupTraffic":
        from routerlab.traffic import spawn

        pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=agent_env())
        try:
            for host in sorted({f.dst_host for f in self.flows}):
                ports = {f.port for f in self.flows if f.dst_host == host}
                if len(ports) != 1:
                    raise TrafficError(f"flows to {host} must share one port, got {sorted(ports)}")
                p = spawn(self.net.host(host), [sys.executable, "-m", "b4.traffic", "recv", "--port", str(ports.pop())],
                          f"b4-recv-{host}", **pipes)
                self.receivers[host] = p
                _readline(p, 10, f"receiver in {host}")
            for host in sorted({f.src_host for f in self.flows}):
                p = spawn(self.net.host(host), [sys.executable, "-m", "b4.traffic", "send"], f"b4-send-{host}", **pipes)
                self.senders[host] = p
                mine = [asdict(f) for f in self.flows if f.src_host == host]
                p.stdin.write((json.dumps({"flows": mine}) + "\n").encode())
                p.stdin.flush()
                _readline(p, 10, f"sender in {host}")
        except BaseException:
            self.close()
            raise
        return self

    def snapshot(self) -> dict[str, Any]:
        """Receiver counts now: {flow id: (packets, bytes)} and the time."""
        out: dict[int, tuple[int, int]] = {}
        times = []
        for p in self.receivers.values():
            p.stdin.write(b"snap\n")
            p.stdin.flush()
        for host, p in self.receivers.items():
            snap = _readline(p, 10, f"receiver in {host}")
            times.append(snap["time"])
            for k, c in snap["flows"].items():
                out[int(k)] = tuple(c) if len(c) >= 3 else (c[0], c[1], 0)
        return {"time": sum(times) / len(times) if times else time.time(), "flows": out}

    @staticmethod
    def window(a: dict[str, Any], b: dict[str, Any]) -> Window:
        dt = b["time"] - a["time"]
        mbps, pk, offered = {}, {}, {}
        for fid, (n, by, hi) in b["flows"].items():
            n0, b0, hi0 = a["flows"].get(fid, (0, 0, 0))
            mbps[fid] = (by - b0) * 8 / dt / 1e6 if dt > 0 else 0.0
            pk[fid] = n - n0
            offered[fid] = hi - hi0
        return Window(dt, mbps, pk, offered)

    def stop(self) -> dict[int, dict[str, int]]:
        """Stop senders, collect what they sent; receivers are stopped too."""
        for host, p in self.senders.items():
            try:
                out, _ = p.communicate(b"stop\n", timeout=10)
                res = json.loads(out.splitlines()[-1])
                for k, v in res.get("sent", {}).items():
                    self.sent[int(k)] = v
            except (subprocess.TimeoutExpired, ValueError, IndexError) as e:
                log.warning("sender in %s: %s", host, e)
        for p in self.receivers.values():
            try:
                p.communicate(b"stop\n", timeout=10)
            except subprocess.TimeoutExpired:
                pass
        self.close()
        return self.sent

    def close(self) -> None:
        from routerlab import registry

        for p in list(self.senders.values()) + list(self.receivers.values()):
            if p.poll() is None:
                p.kill()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            registry.session().release_process(p.pid)
        self.senders.clear()
        self.receivers.clear()

    def __enter__(self) -> "FlowGroupTraffic":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()


if __name__ == "__main__":
    sys.exit(agent_main())
