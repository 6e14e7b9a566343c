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

One ovs-vswitchd serves every userspace bridge on the machine, and its main thread both
polls the ports (the veths: it is the forwarding engine) and runs OpenFlow. Another run's
bulk work on its own bridges (250,000 flows installed, dumped or deleted, a bridge with
them removed) stops forwarding on every bridge for up to ~4 s and slows it for the minutes
such a table takes to build; a stall near OSPF's dead interval (4 s here) also drops every
adjacency of every lab on the machine, and forwarding stays down ~6 s more while they come
back. Measured here: a concurrent vroom-cloning run made an FRR lab's limit read 5,000
packets/s (94-100% lost at 10,000, p99 49 ms at 5,000) while the same lab forwards 20,000
with none lost on a quiet switch, as does its BIRD twin. `OvsStallWatch` reads
ovs-vswitchd's count of OpenFlow messages received over its control socket every 50 ms and
times the answers (0.3 ms when idle, a few ms while it forwards 20,000 packets/s); a failed
step during which it was unresponsive for `stall_ms` or more, or received `busy_msgs`
OpenFlow messages or more (someone's bulk work), is *disturbed*: listed, and retried once
the switch is quiet again and the lab has re-converged, instead of counting as the data
plane's limit.
"""
from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

from routerlab.traffic import ProbeResult, measure

log = logging.getLogger(__name__)

DEFAULT_RATES = (2_000, 5_000, 10_000, 15_000, 20_000, 25_000, 30_000, 40_000, 50_000)
OVS_RUN_DIR = Path("/var/run/openvswitch")
# ovs-vswitchd unresponsive this long disturbs a step: at 20,000 packets/s its port buffers
# then hold 3,000 packets (p99 latency blown), and longer stalls overflow them. Its answers
# take 0.3 ms idle and a few ms while forwarding 20,000 packets/s; a loaded machine adds
# tens of ms of scheduling delay to the watcher itself, well below this.
STALL_MS = 150.0
# OpenFlow messages ovs-vswitchd received during a step that make it busy elsewhere: a lab
# in steady state sends none (a route change: tens); bulk work sends one per flow (a
# 250,000-flow clean-up in bounded bundles slows forwarding for its ~15 s without any
# single stall).
BUSY_MSGS = 1_000
MAX_DISTURBED = 3  # disturbed tries of one rate before its result counts anyway
QUIET_S = 2.0  # before retrying a disturbed step: this long with no stall and no bulk work
OPENFLOW_COUNTER = "ofproto_recv_openflow"


class StallSource(Protocol):
    """What `dataplane_limit_pps` asks of a stall watch (`OvsStallWatch`, or a fake)."""

    def worst_ms(self, t0: float, t1: float) -> float: ...

    def openflow_msgs(self, t0: float, t1: float) -> int | None: ...

    def wait_quiet(self, quiet_s: float, threshold_ms: float, timeout_s: float,
                   busy_msgs: int | None = None) -> bool: ...


class OvsStallWatch:
    """How long ovs-vswitchd's main thread goes without answering, and how much OpenFlow
    it receives, over time.

    A thread asks ovs-vswitchd (its unixctl socket) for its ``ofproto_recv_openflow``
    coverage counter every `interval_s` and records when each request was sent, how long
    its answer took and the count. The main thread answers between polls of the userspace
    datapath's ports, so an answer that takes D ms means forwarding stood still for about
    D ms on every bridge; the counter tells bulk OpenFlow work by anyone (which slows
    forwarding everywhere without stopping it). Times are wall-clock (``time.time()``) so
    they line up with probe results. An ovs-vswitchd without that command is asked for its
    ``version`` (stalls only).

    ::

        with OvsStallWatch() as w:
            t0 = time.time(); ...; w.worst_ms(t0, time.time())
    """

    def __init__(self, interval_s: float = 0.05, ctl: str | Path | None = None,
                 keep: int = 20_000, timeout_s: float = 30.0):
        self.interval_s = interval_s
        self.ctl = Path(ctl) if ctl is not None else None
        self.timeout_s = timeout_s
        # (sent at, answer ms, OpenFlow messages received so far or None)
        self.samples: deque[tuple[float, float, int | None]] = deque(maxlen=keep)
        self.errors: list[str] = []
        self._pending: float | None = None  # wall-clock send time of the unanswered request
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @staticmethod
    def control_socket(run_dir: Path = OVS_RUN_DIR) -> Path:
        """ovs-vswitchd's unixctl socket (``ovs-vswitchd.PID.ctl``); OSError if none."""
        pid = int((run_dir / "ovs-vswitchd.pid").read_text().split()[0])
        path = run_dir / f"ovs-vswitchd.{pid}.ctl"
        if not path.exists():
            raise FileNotFoundError(str(path))
        return path

    def start(self) -> OvsStallWatch:
        """Connect and start timing (OSError when ovs-vswitchd cannot be reached)."""
        path = self.ctl or self.control_socket()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout_s)
            s.connect(str(path))
        except OSError:
            s.close()
            raise
        self._sock = s
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="ovs-stall-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            with suppress(OSError):  # wakes a request waiting on a stalled switch
                self._sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1)
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> OvsStallWatch:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _ask(self, s: socket.socket, n: int, method: str, params: list[str], buf: str,
             dec: json.JSONDecoder) -> tuple[dict[str, Any], str]:
        """One JSON-RPC request; (the reply, what was read past it)."""
        s.sendall(json.dumps({"method": method, "params": params, "id": n}).encode())
        while True:
            try:
                reply, end = dec.raw_decode(buf)
                return reply, buf[end:].lstrip()
            except ValueError:
                pass  # nothing yet, or a reply split over reads
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("ovs-vswitchd closed its control socket")
            buf = (buf + chunk.decode(errors="replace")).lstrip()

    def _run(self) -> None:
        s, n, buf, dec = self._sock, 0, "", json.JSONDecoder()
        assert s is not None
        counter = True  # ask for the OpenFlow counter until the switch says it has none
        while not self._stop.is_set():
            sent, t0 = time.time(), time.monotonic()
            self._pending = sent
            try:
                method, params = (("coverage/read-counter", [OPENFLOW_COUNTER]) if counter
                                  else ("version", []))
                reply, buf = self._ask(s, n, method, params, buf, dec)
            except OSError as e:  # a timeout is a stall of at least timeout_s
                self._pending = None
                if self._stop.is_set():
                    return
                self.samples.append((sent, (time.monotonic() - t0) * 1000, None))
                self.errors.append(f"{type(e).__name__}: {e}")
                log.warning("ovs stall watch stopped: %s", e)
                return
            msgs = None
            if counter:
                try:
                    msgs = int(str(reply.get("result")).strip())
                except ValueError:
                    counter = False  # no such command or counter here: stalls only
            self.samples.append((sent, (time.monotonic() - t0) * 1000, msgs))
            self._pending = None
            n += 1
            self._stop.wait(self.interval_s)

    def worst_ms(self, t0: float, t1: float) -> float:
        """The longest ovs-vswitchd went without answering during [t0, t1] (wall clock);
        a request still unanswered counts for as long as it has waited."""
        worst = 0.0
        for sent, ms, _ in list(self.samples):
            if sent <= t1 and sent + ms / 1000 >= t0:
                worst = max(worst, ms)
        pending = self._pending
        if pending is not None and pending <= t1:
            worst = max(worst, (time.time() - pending) * 1000)
        return round(worst, 1)

    def openflow_msgs(self, t0: float, t1: float) -> int | None:
        """OpenFlow messages ovs-vswitchd received (from anyone) during [t0, t1]: the
        counter's rise between the last readings taken before each end (None: no reading
        that covers the window)."""
        before = after = None
        for sent, _, msgs in list(self.samples):
            if msgs is None:
                continue
            if sent <= t0:
                before = msgs
            if sent <= t1:
                after = msgs
        if before is None or after is None:
            return None
        return max(0, after - before)

    def wait_quiet(self, quiet_s: float = QUIET_S, threshold_ms: float = STALL_MS,
                   timeout_s: float = 30.0, busy_msgs: int | None = BUSY_MSGS) -> bool:
        """Wait until ovs-vswitchd answered within `threshold_ms` and received fewer than
        `busy_msgs` OpenFlow messages (None: not counted) for `quiet_s` in a row; False
        when that did not happen within `timeout_s` (or the watch is not running)."""
        end = time.time() + timeout_s
        while time.time() < end:
            if self._thread is None or not self._thread.is_alive():
                return False
            now = time.time()
            if (self.samples and self.samples[0][0] <= now - quiet_s
                    and self.worst_ms(now - quiet_s, now) < threshold_ms
                    and (busy_msgs is None
                         or (self.openflow_msgs(now - quiet_s, now) or 0) < busy_msgs)):
                return True
            time.sleep(min(0.1, quiet_s))
        return False


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
    # the longest ovs-vswitchd went without answering during the step (None: not watched)
    ovs_stall_ms: float | None = None
    ovs_openflow_msgs: int | None = None  # OpenFlow messages it received meanwhile (anyone's)
    # failed while ovs-vswitchd stalled or was busy with bulk OpenFlow (another run's work)
    disturbed: bool = False

    @staticmethod
    def sender_fell_behind(rate: int, r: ProbeResult) -> bool:
        """The probe's sender sent under 95% of `rate` (it skipped slots it could not keep):
        the step measured the probe, not the data plane, so it does not carry `rate`."""
        return r.sent > 1 and r.duration_s > 0 and r.sent / r.duration_s < 0.95 * rate

    @classmethod
    def of(cls, rate: int, r: ProbeResult, tolerance: float,
           max_p99_ms: float | None = None, ovs_stall_ms: float | None = None,
           stall_ms: float = STALL_MS, ovs_openflow_msgs: int | None = None,
           busy_msgs: int | None = BUSY_MSGS) -> RateStep:
        dur = r.duration_s or 1.0
        return cls(rate_pps=rate, sent=r.sent, received=r.received, lost=r.lost,
                   loss_ratio=round(r.loss_ratio, 6), delivered_pps=round(r.received / dur, 1),
                   latency_p50_ms=r.latency_p50_ms, latency_p99_ms=r.latency_p99_ms,
                   latency_max_ms=r.latency_max_ms,
                   sender_max_late_ms=r.sender_max_late_ms,
                   ok=r.sent > 0 and r.loss_ratio <= tolerance
                   and (max_p99_ms is None or (r.latency_p99_ms or 0.0) <= max_p99_ms)
                   and not cls.sender_fell_behind(rate, r),
                   ovs_stall_ms=ovs_stall_ms, ovs_openflow_msgs=ovs_openflow_msgs,
                   disturbed=(ovs_stall_ms is not None and ovs_stall_ms >= stall_ms)
                   or (busy_msgs is not None and ovs_openflow_msgs is not None
                       and ovs_openflow_msgs >= busy_msgs))


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
        return next((s.rate_pps for s in self.steps if s.rate_pps > self.limit_pps), None)

    @property
    def disturbed(self) -> list[RateStep]:
        """Failed steps during which ovs-vswitchd stalled (retried while `max_disturbed`
        allowed: such a failure is not the data plane's)."""
        return [s for s in self.steps if s.disturbed]

    def table(self) -> list[dict[str, Any]]:
        """One row per probe run (rates retried appear once per try)."""
        return [asdict(s) for s in self.steps]

    def to_json(self) -> dict[str, Any]:
        return {"src": self.src, "dst": self.dst, "limit_pps": self.limit_pps,
                "first_failure_pps": self.first_failure_pps,
                "seconds_per_rate": self.seconds_per_rate, "size": self.size,
                "load_avg": self.load_avg, "disturbed_steps": len(self.disturbed),
                "steps": self.table()}

    def summary(self) -> str:
        tried = ", ".join(f"{s.rate_pps:,}: {s.lost} lost" + _disturbance(s) for s in self.steps)
        return (f"{self.src} -> {self.dst}: {self.limit_pps:,} packets/s with no loss "
                f"({self.size}-byte UDP, {self.seconds_per_rate:g} s per rate; {tried})")


def _disturbance(s: RateStep) -> str:
    if not s.disturbed:
        return ""
    what = [f"ovs-vswitchd stalled {s.ovs_stall_ms:,.0f} ms"] if s.ovs_stall_ms else []
    if s.ovs_openflow_msgs:
        what.append(f"{s.ovs_openflow_msgs:,} OpenFlow messages")
    return f" (disturbed: {', '.join(what)})"


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
                        probe: Callable[[int], ProbeResult] | None = None,
                        stall_watch: StallSource | None | str = "auto",
                        stall_ms: float = STALL_MS, busy_msgs: int | None = BUSY_MSGS,
                        max_disturbed: int = MAX_DISTURBED, quiet_s: float = QUIET_S,
                        quiet_timeout_s: float = 60.0) -> DataplaneLimit:
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

    `stall_watch` ("auto": an `OvsStallWatch` of its own for real probes, none for a
    `probe` given; None: no watch) tells a failure of the data plane from ovs-vswitchd
    stalled by someone else: a failed step during which the switch did not answer for
    `stall_ms` or more, or received `busy_msgs` OpenFlow messages or more (None: not
    counted), is marked disturbed, and the rate is tried again (not counted
    against `confirm`), at most `max_disturbed` times, once the switch has been quiet for
    `quiet_s` and the lab has re-converged (its ``wait_converged``, or its ``tn``'s, when
    it has one: a long stall drops OSPF adjacencies).

    `probe` (rate -> `ProbeResult`) replaces the real probe (tests)."""
    rates = [int(r) for r in rates]
    if not rates or any(r <= 0 for r in rates) or rates != sorted(set(rates)):
        raise ValueError(f"rates must be positive and strictly increasing, not {rates}")
    if seconds <= 0 or confirm < 0 or not 0 <= loss_tolerance < 1 or max_disturbed < 0:
        raise ValueError("seconds must be > 0, confirm >= 0, max_disturbed >= 0, "
                         "0 <= loss_tolerance < 1")
    own_watch: OvsStallWatch | None = None
    if stall_watch == "auto":
        stall_watch = None
        if probe is None:
            try:
                stall_watch = own_watch = OvsStallWatch().start()
            except OSError as e:
                log.warning("cannot watch ovs-vswitchd for stalls (%s): a stall elsewhere "
                            "will read as the data plane's limit", e)
    watch = cast("StallSource | None", stall_watch)
    if probe is None:
        src_h, dst_h, dst_ip = _endpoints(lab, src, dst)

        def probe(rate: int) -> ProbeResult:
            return measure(src_h, dst_h, dst_ip, seconds, rate_pps=rate, size=size,
                           name="capacity")
    out = DataplaneLimit(src, dst, 0, seconds_per_rate=seconds, size=size, load_avg=_load_avg())
    try:
        for rate in rates:
            if not _step_rate(out, rate, probe, watch, _reconverge(lab), confirm=confirm,
                              tolerance=loss_tolerance, max_p99_ms=max_p99_ms,
                              stall_ms=stall_ms, busy_msgs=busy_msgs,
                              max_disturbed=max_disturbed, quiet_s=quiet_s,
                              quiet_timeout_s=quiet_timeout_s, settle_s=settle_s):
                break
            out.limit_pps = rate
            if settle_s:
                time.sleep(settle_s)
    finally:
        if own_watch is not None:
            own_watch.stop()
    return out


def _reconverge(lab: Any) -> Callable[[], None]:
    """What to wait for after a stall: the lab's convergence (nothing without one)."""
    wait = getattr(lab, "wait_converged", None) or getattr(getattr(lab, "tn", None),
                                                           "wait_converged", None)

    def reconverge() -> None:
        if callable(wait):
            try:
                wait(120.0)
            except Exception as e:  # the retry shows what is left
                log.warning("lab not re-converged after an ovs-vswitchd stall: %s", e)
    return reconverge


def _step_rate(out: DataplaneLimit, rate: int, probe: Callable[[int], ProbeResult],
               watch: StallSource | None, reconverge: Callable[[], None], *, confirm: int,
               tolerance: float, max_p99_ms: float | None, stall_ms: float,
               busy_msgs: int | None, max_disturbed: int, quiet_s: float,
               quiet_timeout_s: float, settle_s: float) -> bool:
    """Try one rate (retries included); True when a try passed."""
    failures = disturbed = 0
    while True:
        t0 = time.time()
        result = probe(rate)
        t1 = time.time()
        stall = watch.worst_ms(t0, t1) if watch is not None else None
        msgs = watch.openflow_msgs(t0, t1) if watch is not None else None
        step = RateStep.of(rate, result, tolerance, max_p99_ms, stall, stall_ms, msgs, busy_msgs)
        if step.ok:
            step.disturbed = False  # carried in spite of it: nothing to retry
        out.steps.append(step)
        log.info("capacity %s->%s %d pps: %d/%d lost, p99 %s ms%s%s", out.src, out.dst, rate,
                 step.lost, step.sent, step.latency_p99_ms,
                 "" if stall is None else f", ovs-vswitchd stalled up to {stall:.0f} ms",
                 "" if msgs is None else f", {msgs} OpenFlow messages")
        if step.ok:
            return True
        if step.disturbed and disturbed < max_disturbed and watch is not None:
            disturbed += 1
            log.warning("capacity %d pps: disturbed%s (another run's bulk OpenFlow work?): "
                        "trying again when ovs-vswitchd is quiet", rate, _disturbance(step))
            if not watch.wait_quiet(quiet_s, stall_ms, quiet_timeout_s, busy_msgs):
                log.warning("ovs-vswitchd not quiet for %.0f s in %.0f s", quiet_s,
                            quiet_timeout_s)
            reconverge()
            continue
        failures += 1  # a failure of the data plane (or disturbed too often: it counts)
        if failures > confirm:
            return False
        if settle_s:
            time.sleep(settle_s)  # let queues drain before the retry
