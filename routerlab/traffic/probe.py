"""The constant-rate UDP probe: a receiver and a sender agent (`routerlab.probe_agent`) in two
hosts, started, stopped and accounted for by `Probe`; `measure` runs one for a duration."""
from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import subprocess
import sys
from typing import Any

from routerlab.traffic.analysis import (LatencyStats, ProbeResult, ReceiverLog, SenderReport, Window,
                                       analyze, latency_in_windows, latency_series)
from routerlab.traffic.process import Host, ProbeError, agent_env, _read_line, _terminate, spawn

log = logging.getLogger(__name__)

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

    def start(self) -> Probe:
        """Start receiver then sender; returns once packets are flowing."""
        if self._started:
            raise ProbeError(f"{self!r} already started (a Probe runs once)")
        self._started = True
        pipes = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                     env=agent_env())
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

    def latency_in_windows(self, windows: list[Window], *,
                           overall: str | None = "all") -> dict[str, LatencyStats]:
        """After `stop()`: one-way latency percentiles of the packets sent in each (label,
        start, end) window (epoch seconds), plus the whole run under `overall`."""
        if self.sender_report is None or self.log is None:
            raise ProbeError(f"{self!r} has no result yet (stop() it first)")
        return latency_in_windows(self.sender_report, self.log, windows, overall=overall)

    def latency_series(self) -> list[tuple[float, int, float]]:
        """After `stop()`: (send time in epoch s, seq, one-way latency in ms) per packet."""
        if self.sender_report is None or self.log is None:
            raise ProbeError(f"{self!r} has no result yet (stop() it first)")
        return latency_series(self.sender_report, self.log)

    def close(self) -> None:
        """Kill both agents (by pid) without collecting results; idempotent."""
        _terminate(self._sender)
        _terminate(self._receiver)
        self._sender = self._receiver = None

    def __enter__(self) -> Probe:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.stop()
        else:
            self.close()


MAX_SECONDS = 3600.0
MAX_RATE_PPS = 1_000_000


def check_probe_args(seconds: float, rate_pps: float) -> tuple[float, float]:
    """A probe's duration and rate as a user gave them, checked: seconds in (0, 3600],
    rate in (0, 1,000,000] packets/s; anything else is a one-line `UserError`."""
    from routerlab.errors import UserError

    try:
        s, r = float(seconds), float(rate_pps)
    except (TypeError, ValueError):
        raise UserError(f"probe: duration and rate must be numbers, not {seconds!r}, {rate_pps!r}") from None
    if not 0 < s <= MAX_SECONDS:  # also refuses nan
        raise UserError(f"probe: duration must be in (0, {MAX_SECONDS:g}] s, not {seconds}")
    if not 0 < r <= MAX_RATE_PPS:
        raise UserError(f"probe: rate must be in (0, {MAX_RATE_PPS:,}] packets/s, not {rate_pps}")
    return s, r


def measure(src: Host, dst: Host, dst_ip: str, duration_s: float, **kwargs: Any) -> ProbeResult:
    """Run a probe for `duration_s` seconds (the sender times itself) and return its result."""
    p = Probe(src, dst, dst_ip, duration_s=duration_s, **kwargs)
    p.start()
    try:
        return p.wait()
    finally:
        p.close()
