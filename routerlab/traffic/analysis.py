"""Traffic for experiments: a constant-rate UDP probe and an iperf3 wrapper.

Hosts are anything with ``popen(args: list[str], **kwargs) -> subprocess.Popen`` that runs
the command inside the host's network namespace, and a ``name``: `routerlab.netns.Netns`
(which registers what it starts) and Mininet nodes (whose pids are registered here), so
``routerlab clean`` kills a leaked probe or iperf3 either way. Processes are only ever
stopped by their own pid.

UDP probe
---------
::

    with Probe(h1, h2, "10.0.0.2", rate_pps=1000) as p:
        ...                              # break something
    print(p.result.max_gap_ms, p.result.gaps)

A sender (``python -m routerlab.probe_agent send``) in the source host sends ``rate_pps``
packets per second, each carrying a sequence number and its send time, to ``dst_ip`` only;
a receiver in the destination host, bound to ``dst_ip`` (so the address must be local to
that host), logs (seq, send time, kernel arrival time) of every packet. `analyze` turns the
two reports into a `ProbeResult`; it is a pure function of them.

Definitions used by `analyze` (all counts over sequence numbers 0..sent-1):

* ``sent``: packets the sender emitted (including any whose send() failed, e.g. no route);
* ``received``: distinct sequence numbers that arrived; ``lost = sent - received``;
* ``duplicated``: arrivals of a sequence number that had already arrived;
* ``reordered``: first arrivals of a sequence number lower than one already seen;
* *gap*: the longest interval during the sending period with no packet arriving. The
  timeline runs from the expected arrival of the first packet to that of the last one
  (send times shifted by the smallest one-way delay seen, which also cancels any offset
  between the sender's and receiver's clocks) and is cut at every arrival. A link down for
  500 ms under a 1,000 pps probe gives one interval of about 500 ms (500 ms + one packet
  spacing) and about 500 lost packets. ``max_gap_ms`` is the longest interval of all
  (about 1/rate on a healthy path); ``gaps`` lists every interval longer than the
  threshold (default: the larger of 20 ms and 5 packet spacings) with its start (seconds
  since the first packet's expected arrival), duration and ``lost``: the packets sent
  during it (after the highest sequence number heard before it, up to the sender's position
  when the silence ended) that never arrived. That is time-based because the packet that
  ends a gap can be an old one released from a queue (e.g. held while ARP resolved). A gap
  with ``lost == 0`` was a delay spike, not a loss.
* The sender keeps an absolute schedule (packet i at first send + i/rate) and catches up
  after a short stall; time during which it fell further behind that schedule (a stall of
  the probe itself on a busy machine, e.g. 30 ms descheduled) is not time "while the
  sender was sending", so it is subtracted from the silent interval (``Gap.sender_idle_ms``
  says how much) and never shows up as a network gap.

iperf3
------
::

    r = Iperf(h2, h1, "10.0.0.2", duration_s=5, rate_mbps=10, udp=True).run()
    r.throughput_mbps, r.loss_percent

The server (``iperf3 -s -1``) is bound to ``server_ip``; the client's ``-J`` output is
parsed by `parse_iperf3` into an `IperfResult`.

Note for experiments: when a veth's carrier drops, the kernel flushes the learnt ARP
entries on it and, once the link is back, re-resolves only on its ARP retransmit timer
(1 s): a 500 ms link flap between two namespaces then shows as a ~1 s gap. The probe
reports that faithfully; use permanent neighbour entries if only the link should count.
"""
from __future__ import annotations

import bisect
import ipaddress
import itertools
import json
import logging
import os
import random
import secrets
import select
import subprocess
import sys
import time
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from routerlab import registry
from routerlab.probe_agent import decode_array, encode_array

log = logging.getLogger(__name__)

DEFAULT_GAP_THRESHOLD_MS = 20.0
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)


class Host(Protocol):
    """What the probe needs of a host: a name and a popen inside its network namespace."""

    name: str

    def popen(self, args: list[str], **kwargs: Any) -> subprocess.Popen: ...


class TrafficError(RuntimeError):
    """A probe or iperf3 process failed; the message carries its own error output."""


class ProbeError(TrafficError):
    pass


class IperfError(TrafficError):
    pass


# --------------------------------------------------------------------------- processes

def _agent_env() -> dict[str, str]:
    # The agents run with the venv's interpreter; make the package importable even from a
    # checkout that is not installed into it.
    env = dict(os.environ)
    env["PYTHONPATH"] = _REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def spawn(host: Host, args: list[str], name: str, **kwargs: Any) -> subprocess.Popen:
    """Start ``args`` inside ``host``'s namespace and make sure the registry knows the pid.

    `Netns.popen` registers the process itself; for any other host (Mininet nodes) it is
    registered here. Do not pass ``start_new_session`` for Mininet: ``mnexec -d`` would then
    fork and the pid we get would not be the program's."""
    from routerlab.netns import Netns  # local: keeps this module importable without root tools

    if isinstance(host, Netns):
        return host.popen(args, name=name, **kwargs)
    p = host.popen(list(args), **kwargs)
    registry.session().add_process(p.pid, name)
    return p


def _release(pid: int) -> None:
    sess = registry.session()
    if hasattr(sess, "release_process"):
        sess.release_process(pid)
    else:  # registries that key processes by the pid string
        sess.release("process", str(pid))


def _terminate(proc: subprocess.Popen | None, timeout: float = 3.0) -> None:
    """Stop one process we started (by its pid only) and mark it released."""
    if proc is None:
        return
    if proc.poll() is None:
        try:
            proc.terminate()
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)
        except ProcessLookupError:
            pass
    for f in (proc.stdin, proc.stdout, proc.stderr):
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
    _release(proc.pid)


def _read_line(proc: subprocess.Popen, timeout: float, what: str) -> tuple[dict[str, Any], bytes]:
    """Read one JSON line from a child's stdout within `timeout`; also return bytes read past it."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise ProbeError(f"{what}: not ready after {timeout:.0f} s")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            raise ProbeError(f"{what} exited during start-up: {_stderr_tail(proc)}")
        buf += chunk
    line, rest = buf.split(b"\n", 1)
    try:
        return json.loads(line), rest
    except json.JSONDecodeError:
        raise ProbeError(f"{what}: unexpected output {line[:200]!r}") from None


def _stderr_tail(proc: subprocess.Popen, wait: float = 2.0) -> str:
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        return "(still running)"
    err = proc.stderr.read() if proc.stderr is not None else b""
    text = err.decode(errors="replace").strip() if isinstance(err, bytes) else str(err).strip()
    return f"exit {proc.returncode}: {text.splitlines()[-1] if text else 'no error output'}"


# --------------------------------------------------------------------------- probe data

@dataclass
class Gap:
    """An interval with no packet arriving, longer than the threshold."""

    start_s: float  # seconds since the first packet's expected arrival
    duration_ms: float
    lost: int  # packets sent in the gap that never arrived (0: a delay spike)
    sender_idle_ms: float = 0.0  # silent time the sender itself was stalled (not counted)

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_ms / 1000.0


@dataclass
class SenderReport:
    """What the sender agent reports when it stops."""

    sent: int
    rate_pps: float
    size: int = 64
    first_send_ns: int = 0  # CLOCK_REALTIME stamp of packet 0
    last_send_ns: int = 0  # ... of packet sent-1
    send_errors: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    max_late_ns: int = 0  # worst lateness against the absolute schedule
    late_count: int = 0  # packets sent more than one spacing late
    skipped_slots: int = 0  # slots skipped after a long stall

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "SenderReport":
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class ReceiverLog:
    """Every probe packet that arrived, in arrival order (three parallel int64 arrays)."""

    seq: array = field(default_factory=lambda: array("q"))
    send_ns: array = field(default_factory=lambda: array("q"))
    arrival_ns: array = field(default_factory=lambda: array("q"))
    foreign: int = 0  # packets on the port that were not this probe's

    def __len__(self) -> int:
        return len(self.seq)

    @classmethod
    def from_records(cls, records: Sequence[tuple[int, int, int]]) -> "ReceiverLog":
        """From (seq, send_ns, arrival_ns) tuples (tests, synthetic logs)."""
        lg = cls()
        for s, t, a in records:
            lg.seq.append(s)
            lg.send_ns.append(t)
            lg.arrival_ns.append(a)
        return lg

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ReceiverLog":
        return cls(decode_array(d["seq_b64"]), decode_array(d["send_ns_b64"]),
                   decode_array(d["arrival_ns_b64"]), int(d.get("foreign", 0)))

    def to_json(self) -> dict[str, Any]:
        return {"seq_b64": encode_array(self.seq), "send_ns_b64": encode_array(self.send_ns),
                "arrival_ns_b64": encode_array(self.arrival_ns), "foreign": self.foreign}


@dataclass
class ProbeResult:
    """The accounting of one probe run (see the module docstring for the definitions)."""

    sent: int
    received: int
    lost: int
    reordered: int
    duplicated: int
    max_gap_ms: float
    gaps: list[Gap]
    rate_pps: float
    duration_s: float  # from the first to the last send
    size: int = 64
    gap_threshold_ms: float = DEFAULT_GAP_THRESHOLD_MS
    started_at: float = 0.0  # epoch seconds of the first send (to line gaps up with events)
    send_errors: int = 0
    sender_max_late_ms: float = 0.0
    skipped_slots: int = 0
    min_delay_ms: float | None = None  # smallest (arrival - send stamp): one-way delay floor

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_ratio"] = self.loss_ratio
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "ProbeResult":
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in names}
        kw["gaps"] = [Gap(**g) for g in d.get("gaps", [])]
        return cls(**kw)

    def summary(self) -> str:
        gaps = ", ".join(f"{g.duration_ms:.0f} ms at {g.start_s:.2f} s ({g.lost} lost)"
                         for g in self.gaps) or "none"
        return (f"{self.sent} sent at {self.rate_pps:g} pps over {self.duration_s:.2f} s, "
                f"{self.lost} lost, {self.reordered} reordered, {self.duplicated} duplicated, "
                f"max gap {self.max_gap_ms:.1f} ms; gaps > {self.gap_threshold_ms:g} ms: {gaps}")


def default_gap_threshold_ms(rate_pps: float) -> float:
    """Larger of 20 ms and five packet spacings: above scheduling jitter, below any outage."""
    return max(DEFAULT_GAP_THRESHOLD_MS, 5000.0 / rate_pps) if rate_pps > 0 else DEFAULT_GAP_THRESHOLD_MS


def analyze(sender: SenderReport, rlog: ReceiverLog,
            gap_threshold_ms: float | None = None) -> ProbeResult:
    """Loss, reordering, duplication and gaps of a run, from the two agents' reports.

    Pure function. Arrivals are taken in arrival-time order; sequence numbers outside
    0..sent-1 are ignored."""
    sent = sender.sent
    thr_ms = default_gap_threshold_ms(sender.rate_pps) if gap_threshold_ms is None else gap_threshold_ms
    thr_ns = thr_ms * 1e6
    n = len(rlog)
    arr = rlog.arrival_ns
    order: Sequence[int] = range(n)
    if any(arr[i] > arr[i + 1] for i in range(n - 1)):
        order = sorted(range(n), key=arr.__getitem__)
    seen = bytearray(sent)
    received = duplicated = reordered = 0
    hw = -1  # highest sequence number seen so far
    min_owd: int | None = None
    period = 1e9 / sender.rate_pps if sender.rate_pps > 0 else 0.0
    first = sender.first_send_ns
    # (arrival_ns, highest seq seen before it, seq, send_ns) of every valid arrival, in order
    timeline: list[tuple[int, int, int, int]] = []
    for i in order:
        s = rlog.seq[i]
        if s < 0 or s >= sent:
            continue
        owd = arr[i] - rlog.send_ns[i]
        if min_owd is None or owd < min_owd:
            min_owd = owd
        timeline.append((arr[i], hw, s, rlog.send_ns[i]))
        if seen[s]:
            duplicated += 1
            continue
        seen[s] = 1
        received += 1
        if s < hw:
            reordered += 1
        else:
            hw = s
    # cum[k] = distinct seqs received among 0..k-1, to count losses in a range quickly
    cum = array("q", [0])
    cum.extend(itertools.accumulate(seen))

    def lost_between(lo: int, hi: int) -> int:
        """Never-received sequence numbers strictly between lo and hi."""
        if hi - lo <= 1:
            return 0
        return (hi - lo - 1) - (cum[hi] - cum[lo + 1])

    # Received packets by sequence number with their send stamps: the sender's position in
    # its stream at any sender time is interpolated from them (`seq_at`).
    firsts = sorted(dict((s, t) for _, _, s, t in reversed(timeline)).items())
    rseq = [s for s, _ in firsts]
    rsend = [t for _, t in firsts]

    def seq_at(u: float) -> int:
        """The last sequence number the sender had emitted at sender time u."""
        k = bisect.bisect_right(rsend, u) - 1
        base_seq, base_t = (rseq[k], rsend[k]) if k >= 0 else (0, first)
        if u < base_t:
            return -1
        upper = rseq[k + 1] - 1 if k + 1 < len(rseq) else sent - 1
        return min(base_seq + int((u - base_t) // period), upper) if period else upper

    offset = min_owd or 0
    w0 = sender.first_send_ns + offset  # expected arrival of the first packet
    w1 = sender.last_send_ns + offset  # ... and of the last one
    gaps: list[Gap] = []
    max_gap = 0.0
    counted = -1  # losses up to this sequence number are already in a gap

    def interval(t_from: int, t_to: int, idle: float, hw_from: int, tail: bool = False) -> None:
        # The sender falling further behind its schedule during the interval (idle > 0) is
        # time it was not sending: the probe's own stall, not the network's, so it is
        # taken out of the gap.
        nonlocal max_gap, counted
        idle = min(max(idle, 0.0), t_to - t_from)
        dur = t_to - t_from - idle
        if dur > max_gap:
            max_gap = dur
        if dur > thr_ns:
            # Lost in the gap: packets sent after the last one heard before it (hw_from) and
            # before the silence ended, that never arrived. Time-based, because the packet
            # that ends a gap may be an old one released from a queue (e.g. waiting for ARP).
            lo = max(hw_from, counted)
            hi = sent - 1 if tail else seq_at(t_to - offset)
            lost = lost_between(lo, hi + 1) if hi > lo else 0
            counted = max(counted, hi)
            gaps.append(Gap(start_s=round((t_from - w0) / 1e9, 6), duration_ms=round(dur / 1e6, 3),
                            lost=lost, sender_idle_ms=round(idle / 1e6, 3)))

    if sent > 0:
        prev, late_prev = w0, 0.0  # packet 0 defines the schedule: never late
        for t, hw_before, s, send in timeline:
            late = send - first - s * period  # how far behind its schedule the sender was
            interval(prev, t, late - late_prev, hw_before)
            if t >= prev:
                prev, late_prev = t, late
        late_last = sender.last_send_ns - first - (sent - 1) * period
        if prev < w1:  # nothing arrived after `prev` although the sender kept sending
            interval(prev, w1, late_last - late_prev, hw, tail=True)
    duration_s = (sender.last_send_ns - sender.first_send_ns) / 1e9 if sent > 1 else 0.0
    return ProbeResult(
        sent=sent, received=received, lost=sent - received, reordered=reordered,
        duplicated=duplicated, max_gap_ms=round(max_gap / 1e6, 3), gaps=gaps,
        rate_pps=sender.rate_pps, duration_s=round(duration_s, 6), size=sender.size,
        gap_threshold_ms=thr_ms, started_at=sender.first_send_ns / 1e9,
        send_errors=sender.send_errors, sender_max_late_ms=round(sender.max_late_ns / 1e6, 3),
        skipped_slots=sender.skipped_slots,
        min_delay_ms=None if min_owd is None else round(min_owd / 1e6, 3))


def arrival_series(sender: SenderReport, rlog: ReceiverLog,
                   bin_s: float = 0.01) -> list[tuple[float, int]]:
    """Packets arriving per bin, as (bin start in s since the first send, count): for plots."""
    if sender.sent == 0:
        return []
    t0 = sender.first_send_ns
    nbins = int((sender.last_send_ns - t0) / 1e9 / bin_s) + 1
    counts = [0] * nbins
    for a in rlog.arrival_ns:
        k = int((a - t0) / 1e9 / bin_s)
        if 0 <= k < nbins:
            counts[k] += 1
    return [(round(k * bin_s, 9), c) for k, c in enumerate(counts)]


# --------------------------------------------------------------------------- probe

def _check_unicast(ip: str) -> str:
    addr = ipaddress.ip_address(ip)
    if addr.is_multicast or addr.is_unspecified or str(addr) == "255.255.255.255":
        raise ValueError(f"probe destination must be a unicast address, not {ip}")
    return str(addr)


class Probe:
    """A constant-rate UDP stream from `src` to `dst_ip` (an address of `dst`), measured.

    `start()` starts the receiver, waits until it has bound ``dst_ip`` (which proves the
    address is local to `dst`), then starts the sender. `stop()` stops the sender, lets the
    receiver drain in-flight packets (until the last sequence number arrives or
    ``drain_s`` passes) and returns the `ProbeResult`. With ``duration_s`` the sender stops by
    itself after ``rate_pps * duration_s`` packets; `wait()` then returns the result. As a
    context manager it stops on exit (result in ``.result``) and, on an exception, just kills
    both agents."""

    def __init__(self, src: Host, dst: Host, dst_ip: str, rate_pps: float = 1000.0,
                 size: int = 64, port: int = 0, *, src_ip: str | None = None,
                 duration_s: float | None = None, gap_threshold_ms: float | None = None,
                 drain_s: float = 1.0, ready_timeout_s: float = 10.0, name: str = "probe"):
        if rate_pps <= 0:
            raise ValueError("rate_pps must be positive")
        self.src, self.dst = src, dst
        self.dst_ip = _check_unicast(dst_ip)
        self.src_ip = str(ipaddress.ip_address(src_ip)) if src_ip else None
        self.rate_pps = float(rate_pps)
        self.size = int(size)
        self.port = int(port)  # 0: the receiver picks a free port
        self.duration_s = duration_s
        self.gap_threshold_ms = gap_threshold_ms
        self.drain_s = drain_s
        self.ready_timeout_s = ready_timeout_s
        self.run_id = secrets.randbits(32)
        tag = f"{name}-{self.run_id:08x}"
        self._names = {"send": f"{tag}-send", "recv": f"{tag}-recv"}
        self._started = False
        self._sender: subprocess.Popen | None = None
        self._receiver: subprocess.Popen | None = None
        self._extra: dict[str, bytes] = {"send": b"", "recv": b""}
        self.sender_report: SenderReport | None = None
        self.log: ReceiverLog | None = None
        self.result: ProbeResult | None = None

    def __repr__(self) -> str:
        return (f"Probe({getattr(self.src, 'name', self.src)}->{self.dst_ip}:{self.port}, "
                f"{self.rate_pps:g} pps)")

    # lifecycle -------------------------------------------------------------

    def _agent(self) -> list[str]:
        return [sys.executable, "-m", "routerlab.probe_agent"]

    def start(self) -> "Probe":
        """Start receiver then sender; returns once packets are flowing."""
        if self._started:
            raise ProbeError(f"{self!r} already started (a Probe runs once)")
        self._started = True
        pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     env=_agent_env())
        try:
            self._receiver = spawn(
                self.dst, self._agent() + ["recv", "--bind", self.dst_ip, "--port", str(self.port),
                                           "--run-id", str(self.run_id), "--drain", str(self.drain_s)],
                self._names["recv"], **pipes)
            ready, self._extra["recv"] = _read_line(self._receiver, self.ready_timeout_s,
                                                    f"probe receiver in {self.dst.name}")
            self.port = int(ready["port"])
            cmd = self._agent() + ["send", "--dst", self.dst_ip, "--port", str(self.port),
                                   "--run-id", str(self.run_id), "--rate", repr(self.rate_pps),
                                   "--size", str(self.size)]
            if self.src_ip:
                cmd += ["--src", self.src_ip]
            if self.duration_s is not None:
                cmd += ["--duration", repr(float(self.duration_s))]
            self._sender = spawn(self.src, cmd, self._names["send"], **pipes)
            _, self._extra["send"] = _read_line(self._sender, self.ready_timeout_s,
                                                f"probe sender in {self.src.name}")
        except BaseException:
            self.close()
            raise
        log.info("%r started", self)
        return self

    @property
    def running(self) -> bool:
        return self._sender is not None and self._sender.poll() is None

    def _finish(self, role: str, command: str, timeout: float) -> dict[str, Any]:
        proc = self._sender if role == "send" else self._receiver
        assert proc is not None
        try:
            out, err = proc.communicate(command.encode(), timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ProbeError(f"probe {role} agent did not finish within {timeout:.0f} s") from None
        out = self._extra[role] + out
        lines = [ln for ln in out.splitlines() if ln.strip()]
        try:
            return json.loads(lines[-1])
        except (IndexError, json.JSONDecodeError):
            text = err.decode(errors="replace").strip()
            raise ProbeError(f"probe {role} agent failed (exit {proc.returncode}): "
                             f"{text.splitlines()[-1] if text else 'no output'}") from None

    def stop(self) -> ProbeResult:
        """Stop sending, drain, collect both reports and return the accounting."""
        if self.result is not None:
            return self.result
        if self._sender is None or self._receiver is None:
            raise ProbeError(f"{self!r} is not running (never started, or closed)")
        try:
            srep = SenderReport.from_json(self._finish("send", "stop\n", timeout=10))
            rrep = self._finish("recv", f"stop {srep.sent}\n", timeout=self.drain_s + 10)
            self.sender_report = srep
            self.log = ReceiverLog.from_json(rrep)
        finally:
            self.close()
        self.result = analyze(self.sender_report, self.log, self.gap_threshold_ms)
        log.info("%r: %s", self, self.result.summary())
        return self.result

    def wait(self, timeout: float | None = None) -> ProbeResult:
        """With ``duration_s``: wait for the sender to finish by itself, then `stop()`."""
        if self.duration_s is None:
            raise ProbeError("wait() needs a probe started with duration_s")
        if self._sender is not None:
            try:
                self._sender.wait(timeout if timeout is not None else self.duration_s + 10)
            except subprocess.TimeoutExpired:
                raise ProbeError(f"{self!r}: sender still running after {timeout} s") from None
        return self.stop()

    def close(self) -> None:
        """Kill both agents (by pid) without collecting results; idempotent."""
        _terminate(self._sender)
        _terminate(self._receiver)
        self._sender = self._receiver = None

    def __enter__(self) -> "Probe":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.close()


def measure(src: Host, dst: Host, dst_ip: str, duration_s: float, **kwargs: Any) -> ProbeResult:
    """Run a probe for `duration_s` seconds (the sender times itself) and return its result."""
    p = Probe(src, dst, dst_ip, duration_s=duration_s, **kwargs)
    p.start()
    try:
        return p.wait()
    finally:
        p.close()


# --------------------------------------------------------------------------- iperf3

@dataclass
class IperfResult:
    """The parsed client-side ``iperf3 -J`` report (Mbit/s are 10^6 bit/s)."""

    protocol: str  # "tcp" or "udp"
    duration_s: float
    throughput_mbps: float  # as received by the receiving side
    sent_mbps: float
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmits: int | None = None  # TCP only
    lost_packets: int | None = None  # UDP only
    packets: int | None = None
    loss_percent: float | None = None
    jitter_ms: float | None = None
    intervals: list[tuple[float, float, float]] = field(default_factory=list)  # (start, end, Mbit/s)
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["intervals"] = [list(i) for i in self.intervals]
        return d


def parse_iperf3(report: str | dict[str, Any]) -> IperfResult:
    """Parse iperf3 3.x ``-J`` client output (TCP or UDP). Pure function."""
    d = json.loads(report) if isinstance(report, str) else report
    start = d.get("start", {})
    end = d.get("end", {}) or {}
    proto = str(start.get("test_start", {}).get("protocol", "")).lower()
    if not proto:
        proto = "udp" if "jitter_ms" in end.get("sum", {}) else "tcp"
    intervals = [(float(i["sum"]["start"]), float(i["sum"]["end"]),
                  float(i["sum"]["bits_per_second"]) / 1e6)
                 for i in d.get("intervals", []) if "sum" in i]
    if proto == "udp":
        rx = end.get("sum_received") or end.get("sum") or {}
        tx = end.get("sum_sent") or end.get("sum") or {}
        res = IperfResult(
            protocol="udp", duration_s=float(tx.get("seconds", 0.0)),
            throughput_mbps=float(rx.get("bits_per_second", 0.0)) / 1e6,
            sent_mbps=float(tx.get("bits_per_second", 0.0)) / 1e6,
            bytes_sent=int(tx.get("bytes", 0)), bytes_received=int(rx.get("bytes", 0)),
            lost_packets=_opt_int(rx.get("lost_packets")), packets=_opt_int(rx.get("packets")),
            loss_percent=_opt_float(rx.get("lost_percent")), jitter_ms=_opt_float(rx.get("jitter_ms")),
            intervals=intervals)
    else:
        tx = end.get("sum_sent", {})
        rx = end.get("sum_received", {})
        res = IperfResult(
            protocol="tcp", duration_s=float(tx.get("seconds", 0.0)),
            throughput_mbps=float(rx.get("bits_per_second", 0.0)) / 1e6,
            sent_mbps=float(tx.get("bits_per_second", 0.0)) / 1e6,
            bytes_sent=int(tx.get("bytes", 0)), bytes_received=int(rx.get("bytes", 0)),
            retransmits=_opt_int(tx.get("retransmits")), intervals=intervals)
    res.error = d.get("error")
    return res


def _opt_int(v: Any) -> int | None:
    return None if v is None else int(v)


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


def _listening(pid: int, port: int) -> bool:
    """Whether process `pid` itself holds a TCP socket listening on `port`.

    Read from /proc (the process's own network namespace view), so it works for any host
    type without running anything inside it; matching socket inodes to the pid's fds means
    another server on the same port never counts."""
    try:
        inodes = set()
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port \
                        and f[9] in inodes:
                    return True
    except OSError:
        return False
    return False


class Iperf:
    """One iperf3 test: a one-off server bound to `server_ip` in `server`, a client in `client`.

    TCP by default (optionally paced to ``rate_mbps``); ``udp=True`` sends UDP at ``rate_mbps``
    (iperf3's default is 1 Mbit/s). `run()` = `start()` + `wait()`; `stop()` kills both by pid.
    With ``port=0`` a random free port is used (retried if taken)."""

    def __init__(self, server: Host, client: Host, server_ip: str, duration_s: float = 5.0,
                 rate_mbps: float | None = None, udp: bool = False, *, port: int = 0,
                 client_ip: str | None = None, parallel: int = 1, reverse: bool = False,
                 length: int | None = None, interval_s: float = 1.0, ready_timeout_s: float = 10.0,
                 name: str = "iperf3"):
        self.server, self.client = server, client
        self.server_ip = _check_unicast(server_ip)
        self.client_ip = str(ipaddress.ip_address(client_ip)) if client_ip else None
        self.duration_s = float(duration_s)
        self.rate_mbps = rate_mbps
        self.udp = udp
        self.port = int(port)
        self.parallel = parallel
        self.reverse = reverse
        self.length = length
        self.interval_s = interval_s
        self.ready_timeout_s = ready_timeout_s
        tag = f"{name}-{secrets.randbits(32):08x}"
        self._names = {"server": f"{tag}-server", "client": f"{tag}-client"}
        self._server: subprocess.Popen | None = None
        self._client: subprocess.Popen | None = None
        self.result: IperfResult | None = None

    def _start_server(self) -> None:
        fixed = self.port != 0
        for _ in range(1 if fixed else 5):
            port = self.port if fixed else random.randint(20000, 59999)
            cmd = ["iperf3", "-s", "-1", "-B", self.server_ip, "-p", str(port)]
            proc = spawn(self.server, cmd, self._names["server"], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + self.ready_timeout_s
            while proc.poll() is None and time.monotonic() < deadline:
                if _listening(proc.pid, port):
                    self._server, self.port = proc, port
                    return
                time.sleep(0.02)  # polling /proc for the listen socket: no event to wait on
            why = _stderr_tail(proc, wait=0.5)
            _terminate(proc)
            if fixed or "in use" not in why:
                raise IperfError(f"iperf3 server on {self.server.name} {self.server_ip}:{port} "
                                 f"did not start: {why}")
        raise IperfError(f"iperf3 server on {self.server.name}: no free port found")

    def client_command(self) -> list[str]:
        cmd = ["iperf3", "-c", self.server_ip, "-p", str(self.port), "-J",
               "-t", f"{self.duration_s:g}", "-i", f"{self.interval_s:g}", "--connect-timeout", "5000"]
        if self.udp:
            cmd.append("-u")
        if self.rate_mbps is not None:
            cmd += ["-b", f"{self.rate_mbps:g}M"]
        if self.client_ip:
            cmd += ["-B", self.client_ip]
        if self.parallel > 1:
            cmd += ["-P", str(self.parallel)]
        if self.reverse:
            cmd.append("-R")
        if self.length:
            cmd += ["-l", str(self.length)]
        return cmd

    def start(self) -> "Iperf":
        """Start the server, wait until it listens, then start the client."""
        if self._server is not None:
            raise IperfError("iperf3 test already started")
        try:
            self._start_server()
            self._client = spawn(self.client, self.client_command(), self._names["client"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        except BaseException:
            self.stop()
            raise
        return self

    def wait(self, timeout: float | None = None) -> IperfResult:
        """Wait for the client to finish and parse its report; raises IperfError on failure."""
        if self.result is not None:
            return self.result
        if self._client is None:
            raise IperfError("iperf3 test not started")
        timeout = timeout if timeout is not None else self.duration_s + 20
        client = self._client
        try:
            out, err = client.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise IperfError(f"iperf3 client did not finish within {timeout:.0f} s") from None
        finally:
            self.stop()  # the one-off server is done (or useless) once the client is
        try:
            res = parse_iperf3(out.decode(errors="replace"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            text = (err or b"").decode(errors="replace").strip()
            raise IperfError(f"iperf3 client failed (exit {client.returncode}): "
                             f"{text.splitlines()[-1] if text else out[:200]!r}") from None
        if res.error:
            raise IperfError(f"iperf3 {self.client.name} -> {self.server_ip}:{self.port}: {res.error}")
        self.result = res
        log.info("iperf3 %s %s -> %s: %.2f Mbit/s", res.protocol, self.client.name,
                 self.server_ip, res.throughput_mbps)
        return res

    def run(self) -> IperfResult:
        self.start()
        return self.wait()

    def stop(self) -> None:
        """Kill client and server (by pid); idempotent."""
        _terminate(self._client)
        _terminate(self._server)
        self._server = self._client = None

    def __enter__(self) -> "Iperf":
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()


def iperf(server: Host, client: Host, server_ip: str, duration_s: float = 5.0,
          rate_mbps: float | None = None, udp: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Run one iperf3 test and return its result as a dict (`IperfResult.to_json`)."""
    return Iperf(server, client, server_ip, duration_s, rate_mbps, udp, **kwargs).run().to_json()


# --------------------------------------------------------------------------- loss analysis

def loss_ms(result: Any) -> float:
    """Packet-loss duration of a probe: lost packets x packet spacing (ms)."""
    return result.lost * 1000.0 / result.rate_pps if result.rate_pps else 0.0


def _gap_windows(r: Any, slack_s: float) -> list[tuple[float, float]]:
    base = r.started_at + (r.min_delay_ms or 0.0) / 1000.0
    return [(base + g.start_s - slack_s, base + g.end_s + slack_s) for g in r.gaps]


def attribute_loss(event: Any, references: list[Any], slack_ms: float = 30.0,
                   window: tuple[float, float] | None = None) -> dict[str, Any]:
    """Split an event probe's loss into the outage the event caused and background drops.

    Open vSwitch's userspace datapath is served by ovs-vswitchd's main thread, shared by every
    bridge on the machine; when anyone (re)configures OVS it stalls for tens of milliseconds
    and probes everywhere lose packets together, and on a busy machine the odd packet is
    dropped on its own. A reference probe on a path the event does not touch sees both. So:

    * ``attributed``: packets lost in the event probe's gaps (silences longer than the
      probe's gap threshold, 20 ms at 1,000 packets/s) that no reference gap overlaps: the
      outage the event caused;
    * ``stall_lost``: packets lost in gaps a reference probe saw too (datapath-wide stalls);
    * ``isolated``: packets lost outside any gap (single drops), with the reference probes'
      own isolated drops beside them for comparison;
    * ``outside_lost``: with ``window`` (epoch seconds: the event's start and end), packets
      lost in gaps entirely before or after it, which the event cannot have caused."""
    slack = slack_ms / 1000.0
    ref_windows = [w for r in references for w in _gap_windows(r, 0.0)]
    explained, explained_lost, in_gaps, outside = [], 0, 0, 0
    for g, (a, b) in zip(event.gaps, _gap_windows(event, slack)):
        in_gaps += g.lost
        if window is not None and (b < window[0] or a > window[1]):
            outside += g.lost
        elif any(a <= rb and ra <= b for ra, rb in ref_windows):
            explained.append({"start_s": round(g.start_s, 3), "duration_ms": round(g.duration_ms, 1), "lost": g.lost})
            explained_lost += g.lost
    return {"lost": event.lost, "attributed": in_gaps - explained_lost - outside, "stall_lost": explained_lost,
            "stall_gaps": explained, "isolated": event.lost - in_gaps, "outside_lost": outside,
            "reference_lost": [r.lost for r in references],
            "reference_isolated": [r.lost - sum(g.lost for g in r.gaps) for r in references]}


def tx_packets(node: Any, intf: str) -> int:
    """Packets sent so far by interface `intf` of a node living in a routerlab namespace
    (``node.netns``). /sys/class/net shows the root namespace's devices: ask the
    namespace's own netlink."""
    out = node.netns.run(["ip", "-j", "-s", "link", "show", "dev", intf]).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])
