"""What the VROOM experiments share: run name prefixes, probes across a VROOM network, the
machine's load, and loss over several probes."""
from __future__ import annotations

import contextlib
import logging
import secrets
from collections.abc import Callable, Iterator
from typing import Any

from routerlab.report import Result, markdown_table
from routerlab.traffic import Probe, ProbeResult

from .topo import TopoNetwork

log = logging.getLogger(__name__)

RATE_PPS = 1000
IMPLS = ("frr", "bird")  # the routing daemons VROOM experiments compare


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


def worst(xs: list[Any]) -> Any:
    """The largest value that is not None (None when there is none)."""
    vals = [x for x in xs if x is not None]
    return max(vals) if vals else None


def per_impl(impl: str, errors: dict[str, str], fn: Callable[[], Any]) -> Any:
    """Run one implementation's part; a failure is logged and kept in `errors` (the other
    implementation still runs). Interrupts are not caught."""
    try:
        return fn()
    except Exception as e:
        log.exception("%s part failed", impl.upper())
        errors[impl] = f"{type(e).__name__}: {e}"[:500]
        return None


def all_failed(errors: dict[str, str], impls: tuple[str, ...] = IMPLS) -> None:
    """Nothing was measured: raise the implementations' errors as the experiment's."""
    if all(i in errors for i in impls):
        raise RuntimeError("; ".join(f"{i.upper()}: {errors[i]}" for i in impls))


def errors_section(res: Result, errors: dict[str, str]) -> None:
    if errors:
        res.add_section("Failed implementations", "An implementation's build or move failed; "
                        "what it measured before the failure is kept, the rest is missing.\n\n"
                        + markdown_table(("impl", "error"),
                                         [(i, e.replace("|", "/").replace("\n", " "))
                                          for i, e in errors.items()]))


def aligned_bars(by_name: dict[str, dict[Any, float | None]]) -> dict[str, Any]:
    """Bar series over one shared x axis (`plot` places bars by position): the union of the
    x values, sorted, with NaN (no bar) where a series has none."""
    xs = sorted({x for ys in by_name.values() for x in ys})
    return {name: (xs, [float("nan") if ys.get(x) is None else ys[x] for x in xs])
            for name, ys in by_name.items() if ys}


def fmt(x: Any) -> Any:
    return "-" if x is None else x

def round_or_none(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)
