"""Probe accounting, pure functions of the two agents' reports: `analyze` (loss, reordering,
duplicates, gaps, one-way latency; the definitions are in the `routerlab.traffic` docstring),
`arrival_series`, the latency views (`latency_series`, `latency_stats`,
`latency_in_windows`) and the loss analysis of experiments (`loss_ms`, `attribute_loss`)."""
from __future__ import annotations

import bisect
import itertools
from array import array
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from routerlab.probe_agent import decode_array, encode_array

DEFAULT_GAP_THRESHOLD_MS = 20.0

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
    def from_json(cls, d: dict[str, Any]) -> SenderReport:
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
    def from_records(cls, records: Sequence[tuple[int, int, int]]) -> ReceiverLog:
        """From (seq, send_ns, arrival_ns) tuples (tests, synthetic logs)."""
        lg = cls()
        for s, t, a in records:
            lg.seq.append(s)
            lg.send_ns.append(t)
            lg.arrival_ns.append(a)
        return lg

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ReceiverLog:
        return cls(decode_array(d["seq_b64"]), decode_array(d["send_ns_b64"]),
                   decode_array(d["arrival_ns_b64"]), int(d.get("foreign", 0)))

    def to_json(self) -> dict[str, Any]:
        return {"seq_b64": encode_array(self.seq), "send_ns_b64": encode_array(self.send_ns),
                "arrival_ns_b64": encode_array(self.arrival_ns), "foreign": self.foreign}


@dataclass
class ProbeResult:
    """The accounting of one probe run (see the `routerlab.traffic` docstring for the definitions)."""

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
    # one-way latency (arrival - send stamp, first arrival of each packet): sender and
    # receiver share the machine's clock, so these are real delays, not just differences
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_max_ms: float | None = None

    @property
    def loss_ratio(self) -> float:
        return self.lost / self.sent if self.sent else 0.0

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["loss_ratio"] = self.loss_ratio
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProbeResult:
        names = cls.__dataclass_fields__
        kw = {k: v for k, v in d.items() if k in names}
        kw["gaps"] = [Gap(**g) for g in d.get("gaps", [])]
        return cls(**kw)

    def summary(self) -> str:
        gaps = ", ".join(f"{g.duration_ms:.0f} ms at {g.start_s:.2f} s ({g.lost} lost)"
                         for g in self.gaps) or "none"
        return (f"{self.sent} sent at {self.rate_pps:g} pps over {self.duration_s:.2f} s, "
                f"{self.lost} lost, {self.reordered} reordered, {self.duplicated} duplicated, "
                f"max gap {self.max_gap_ms:.1f} ms; {self.latency_text()}; "
                f"gaps > {self.gap_threshold_ms:g} ms: {gaps}")

    def latency_text(self) -> str:
        """``latency p50 0.21 / p99 1.3 / max 4.0 ms`` (one-way), or ``no latency`` without arrivals."""
        if self.latency_p50_ms is None:
            return "no latency"
        return (f"latency p50 {self.latency_p50_ms:.2f} / p99 {self.latency_p99_ms:.2f} / "
                f"max {self.latency_max_ms:.2f} ms")


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
    lat = latency_stats([ms for _, _, ms in latency_series(sender, rlog)])
    return ProbeResult(
        sent=sent, received=received, lost=sent - received, reordered=reordered,
        duplicated=duplicated, max_gap_ms=round(max_gap / 1e6, 3), gaps=gaps,
        rate_pps=sender.rate_pps, duration_s=round(duration_s, 6), size=sender.size,
        gap_threshold_ms=thr_ms, started_at=sender.first_send_ns / 1e9,
        send_errors=sender.send_errors, sender_max_late_ms=round(sender.max_late_ns / 1e6, 3),
        skipped_slots=sender.skipped_slots,
        min_delay_ms=None if min_owd is None else round(min_owd / 1e6, 3),
        latency_p50_ms=lat.p50_ms, latency_p99_ms=lat.p99_ms, latency_max_ms=lat.max_ms)


# --------------------------------------------------------------------------- latency

@dataclass(frozen=True)
class LatencyStats:
    """One-way latency percentiles of a set of packets (None when there are none)."""

    count: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    min_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank `q`-th percentile (0 < q <= 100) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    if not 0 < q <= 100:
        raise ValueError(f"percentile {q} out of (0, 100]")
    k = max(1, -(-len(sorted_values) * q // 100))  # ceil(n q / 100), at least 1
    return sorted_values[int(k) - 1]


def latency_stats(latencies_ms: Sequence[float]) -> LatencyStats:
    """p50, p99, max (and min) of one-way latencies in milliseconds (nearest rank)."""
    if not latencies_ms:
        return LatencyStats()
    v = sorted(latencies_ms)
    return LatencyStats(count=len(v), p50_ms=round(percentile(v, 50), 4),
                        p99_ms=round(percentile(v, 99), 4), max_ms=round(v[-1], 4),
                        min_ms=round(v[0], 4))


def latency_series(sender: SenderReport, rlog: ReceiverLog) -> list[tuple[float, int, float]]:
    """(send time in epoch seconds, sequence number, one-way latency in ms) of every packet
    that arrived (its first arrival; duplicates and stray sequence numbers left out), in
    send order. The latency is the receiver's kernel arrival stamp minus the sender's stamp
    in the packet, both CLOCK_REALTIME of the same machine."""
    first: dict[int, tuple[int, int]] = {}
    for s, t, a in zip(rlog.seq, rlog.send_ns, rlog.arrival_ns):
        if 0 <= s < sender.sent and (s not in first or a < first[s][1]):
            first[s] = (t, a)
    return [(t / 1e9, s, (a - t) / 1e6) for s, (t, a) in sorted(first.items())]


Window = tuple[str, float, float]  # (label, start, end): epoch seconds


def latency_in_windows(sender: SenderReport, rlog: ReceiverLog, windows: Sequence[Window],
                       *, overall: str | None = "all") -> dict[str, LatencyStats]:
    """Latency percentiles of the packets *sent* within each window (label, start, end in
    epoch seconds, end included), e.g. a migration's phases (`vroom.phases.phase_windows`).
    A packet held back during a window counts there even if it arrives after it. With
    `overall` the whole run is added under that label. Labels that repeat are merged."""
    series = latency_series(sender, rlog)
    sends = [t for t, _, _ in series]
    out: dict[str, list[float]] = {}
    for label, start, end in windows:
        if end < start:
            raise ValueError(f"window {label!r} ends ({end}) before it starts ({start})")
        lo, hi = bisect.bisect_left(sends, start), bisect.bisect_right(sends, end)
        out.setdefault(label, []).extend(ms for _, _, ms in series[lo:hi])
    stats = {label: latency_stats(v) for label, v in out.items()}
    if overall is not None:
        stats[overall] = latency_stats([ms for _, _, ms in series])
    return stats


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
