"""iperf3: a one-off server bound to an address in one host, a client in another, and the
client's ``-J`` report parsed into an `IperfResult`."""
from __future__ import annotations

import contextlib
import functools
import ipaddress
import json
import logging
import random
import secrets
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from routerlab.criu import socket_fds
from routerlab.expect import ExpectTimeout, wait_for
from routerlab.traffic.probe import _check_unicast
from routerlab.traffic.process import Host, IperfError, _stderr_tail, _terminate, spawn

log = logging.getLogger(__name__)

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
        inodes = socket_fds(pid)
        for table in ("tcp", "tcp6"):
            try:
                lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            except OSError:
                continue
            for line in lines:
                f = line.split()
                if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port \
                        and int(f[9]) in inodes:
                    return True
    except OSError:
        return False
    return False


def _server_state(proc: subprocess.Popen, port: int) -> str | None:
    """"exited", "listening" (on `port`) or None (still starting) for an iperf3 server."""
    if proc.poll() is not None:
        return "exited"
    return "listening" if _listening(proc.pid, port) else None


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
            # polling /proc for the listen socket: no event to wait on
            with contextlib.suppress(ExpectTimeout):
                if wait_for(functools.partial(_server_state, proc, port), self.ready_timeout_s,
                            interval=0.02, what=f"iperf3 server listening on port {port}",
                            retry_on=()) == "listening":
                    self._server, self.port = proc, port
                    return
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

    def start(self) -> Iperf:
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

    def __enter__(self) -> Iperf:
        return self.start()

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.stop()


def iperf(server: Host, client: Host, server_ip: str, duration_s: float = 5.0,
          rate_mbps: float | None = None, udp: bool = False, **kwargs: Any) -> dict[str, Any]:
    """Run one iperf3 test and return its result as a dict (`IperfResult.to_json`)."""
    return Iperf(server, client, server_ip, duration_s, rate_mbps, udp, **kwargs).run().to_json()
