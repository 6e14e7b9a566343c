"""How fast the emulated data plane forwards: the highest probe rate it carries with no loss.

::

    from vroom.capacity import dataplane_limit_pps
    lim = dataplane_limit_pps(lab, "hNYCM", "hLOSA")          # a VroomLab (or any lab network)
    lim.limit_pps, lim.table()                                # e.g. 20000, rows per rate tried

VROOM's paper forwards 91 kpps on NetFPGA with no loss during a migration; here every data
plane is an Open vSwitch userspace bridge served by one ovs-vswitchd thread shared by every
bridge on the machine, so the limit is a property of this machine (and of its load), and
experiments size their probes from it. `dataplane_limit_pps` steps a 64-byte UDP probe up
through `rates`, each for `seconds` in steady state (nothing else changing), and returns
the highest rate with no packet lost before the first rate that lost more than
`loss_tolerance`; it stops stepping at the first failure (after `confirm` retries of that
rate, so one noisy step on a shared machine does not end the search early).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from routerlab.traffic import ProbeResult, measure

log = logging.getLogger(__name__)

DEFAULT_RATES = (2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000)


@dataclass
class RateStep:
    """One probe at one rate."""

    rate_pps: int
    sent: int
    received: int
    lost: int
    loss_ratio: float
    delivered_pps: float  # received / duration
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    latency_max_ms: float | None
    sender_max_late_ms: float  # the sender itself falling behind: the probe's own limit
    ok: bool  # no loss (within the tolerance)

    @classmethod
    def of(cls, rate: int, r: ProbeResult, tolerance: float,
           max_p99_ms: float | None = None) -> RateStep:
        dur = r.duration_s or 1.0
        return cls(rate_pps=rate, sent=r.sent, received=r.received, lost=r.lost,
                   loss_ratio=round(r.loss_ratio, 6), delivered_pps=round(r.received / dur, 1),
                   latency_p50_ms=r.latency_p50_ms, latency_p99_ms=r.latency_p99_ms,
                   latency_max_ms=r.latency_max_ms,
                   sender_max_late_ms=r.sender_max_late_ms,
                   ok=r.sent > 0 and r.loss_ratio <= tolerance
                   and (max_p99_ms is None or (r.latency_p99_ms or 0.0) <= max_p99_ms))


@dataclass
class DataplaneLimit:
    """The result: `limit_pps` (0 when even the lowest rate lost packets) and every step."""

    src: str
    dst: str
    limit_pps: int
    steps: list[RateStep] = field(default_factory=list)
    seconds_per_rate: float = 0.0
    size: int = 64
    load_avg: tuple[float, float, float] | None = None  # 1/5/15-min load when it started

    @property
    def first_failure_pps(self) -> int | None:
        return next((s.rate_pps for s in self.steps if not s.ok), None)

    def table(self) -> list[dict[str, Any]]:
        """One row per probe run (rates retried appear once per try)."""
        return [asdict(s) for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "limit_pps": self.limit_pps,
                "first_failure_pps": self.first_failure_pps,
                "seconds_per_rate": self.seconds_per_rate, "size": self.size,
                "load_avg": self.load_avg, "steps": self.table()}

    def summary(self) -> str:
        tried = ", ".join(f"{s.rate_pps:,}: {s.lost} lost" for s in self.steps)
        return (f"{self.src} -> {self.dst}: {self.limit_pps:,} packets/s with no loss "
                f"({self.size}-byte UDP, {self.seconds_per_rate:g} s per rate; {tried})")


def _load_avg() -> tuple[float, float, float] | None:
    try:
        with open("/proc/loadavg") as f:
            a, b, c = f.read().split()[:3]
        return float(a), float(b), float(c)
    except (OSError, ValueError):
        return None


def _endpoints(lab: Any, src: str, dst: str) -> tuple[Any, Any, str]:
    """(source host, destination host, destination address) from a lab network
    (``host()``, and ``address()`` itself or on its ``tn``) or a `TopoNetwork` (``hosts``)."""
    host = getattr(lab, "host", None)
    if callable(host):
        src_h, dst_h = host(src), host(dst)
    else:
        src_h, dst_h = lab.hosts[src], lab.hosts[dst]
    address = getattr(lab, "address", None) or lab.tn.address
    return src_h, dst_h, address(dst)


def dataplane_limit_pps(lab: Any, src: str, dst: str, *,
                        rates: Sequence[int] = DEFAULT_RATES, seconds: float = 3.0,
                        size: int = 64, confirm: int = 1, loss_tolerance: float = 0.0,
                        settle_s: float = 0.5, max_p99_ms: float | None = None,
                        probe: Callable[[int], ProbeResult] | None = None) -> DataplaneLimit:
    """The highest rate (packets/s) host `src` reaches host `dst` at with no packet lost.

    `lab` is a lab network with ``host(name)`` and ``address(name)`` (a `vroom.lab.VroomLab`
    or `routerlab.network.Network`), or a `vroom.topo.TopoNetwork`; the network must be
    converged and nothing else be changing (steady state). Each rate in `rates`
    (increasing) runs a `size`-byte UDP probe for `seconds`; a rate that loses more than
    `loss_tolerance` (a fraction; 0: any packet) is tried `confirm` more times, and the
    stepping stops at the first rate that fails every try. Returns a `DataplaneLimit`
    (``limit_pps``, the table of ``steps`` tried, the load average when it started).
    With `max_p99_ms` a rate also fails when its p99 one-way latency exceeds that: near
    the limit the veths' buffers queue hundreds of ms without losing anything.

    `probe` (rate -> `ProbeResult`) replaces the real probe (tests)."""
    rates = [int(r) for r in rates]
    if not rates or any(r <= 0 for r in rates) or rates != sorted(set(rates)):
        raise ValueError(f"rates must be positive and strictly increasing, not {rates}")
    if seconds <= 0 or confirm < 0 or not 0 <= loss_tolerance < 1:
        raise ValueError("seconds must be > 0, confirm >= 0, 0 <= loss_tolerance < 1")
    if probe is None:
        src_h, dst_h, dst_ip = _endpoints(lab, src, dst)

        def probe(rate: int) -> ProbeResult:
            return measure(src_h, dst_h, dst_ip, seconds, rate_pps=rate, size=size,
                           name="capacity")
    out = DataplaneLimit(src, dst, 0, seconds_per_rate=seconds, size=size, load_avg=_load_avg())
    for rate in rates:
        passed = False
        for _ in range(1 + confirm):
            step = RateStep.of(rate, probe(rate), loss_tolerance, max_p99_ms)
            out.steps.append(step)
            log.info("capacity %s->%s %d pps: %d/%d lost, p99 %s ms", src, dst, rate, step.lost,
                     step.sent, step.latency_p99_ms)
            if step.ok:
                passed = True
                break
            if settle_s:
                time.sleep(settle_s)  # let queues drain before the retry
        if not passed:
            break
        out.limit_pps = rate
        if settle_s:
            time.sleep(settle_s)
    return out
