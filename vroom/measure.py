"""What the VROOM experiments share: run name prefixes, probes across a VROOM network, the
machine's load, and loss over several probes."""
from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator

from routerlab.traffic import Probe, ProbeResult

from .topo import TopoNetwork

RATE_PPS = 1000


def run_prefix(tag: str) -> str:
    """A fresh name prefix for one experiment's network (VROOM's names allow 7 characters)."""
    return f"x{tag}{secrets.token_hex(2)}"[:7]


@contextlib.contextmanager
def probes(tn: TopoNetwork, pairs: list[tuple[str, str]],
           rates: list[int] | None = None) -> Iterator[list[Probe]]:
    """Constant-rate probes between host pairs (1,000 packets/s each unless `rates` says),
    stopped and measured on exit (killed without a result if the body raises)."""
    started: list[Probe] = []
    try:
        for k, (src, dst) in enumerate(pairs):
            rate = rates[k] if rates else RATE_PPS
            p = Probe(tn.hosts[src], tn.hosts[dst], tn.address(dst), rate_pps=rate,
                      name=f"{src}-{dst}")
            p.start()
            started.append(p)
        yield started
    except BaseException:
        for p in started:
            p.close()
        raise
    for p in started:
        p.stop()


def loadavg() -> float:
    """The machine's 1-minute load average (-1 when unknown)."""
    try:
        with open("/proc/loadavg") as f:
            return float(f.read().split()[0])
    except (OSError, ValueError):
        return -1.0


def probe_loss(ps: list[Probe]) -> tuple[int, float, int]:
    """(packets lost, longest gap in ms, packets sent) over several probes."""
    rs: list[ProbeResult] = [p.result for p in ps if p.result is not None]
    return (sum(r.lost for r in rs), max((r.max_gap_ms for r in rs), default=0.0),
            sum(r.sent for r in rs))
