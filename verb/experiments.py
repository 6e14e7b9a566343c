"""VERB experiments: `routerlab run verb-masking` and `routerlab run verb-overhead`.

Both replay the same kind of trace (`verb.trace`: a table of 10,000 prefixes learnt from
two ExaBGP neighbours n1 and n2, with churn flipping a tenth of them between the two) into
a router whose onward advertisements a third ExaBGP neighbour, n3, records with receive
times. The router is the bug-tolerant router (its hypervisor run as its own process,
`verb.hvproc`) or, as the baseline, one FRR daemon in the same forwarding namespace.
The real FIB is followed over netlink. `--quick` uses 2,000 prefixes and fewer events;
verb-masking uses 5,000 prefixes when it runs as part of `routerlab run all`.
"""
from __future__ import annotations

import ipaddress
import logging
import secrets
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from routerlab import registry
from routerlab.daemons import Daemon, driver_for
from routerlab.expect import ExpectTimeout, expect, wait_for
from routerlab.experiments import RunContext, experiment
from routerlab.report import Result, markdown_table, plot

from . import testbed
from . import trace as tracemod
from .fib import FibValue, via
from .hvproc import RemoteRouter
from .measure import ExabgpObserver, FibRecorder, LoopThread

log = logging.getLogger(__name__)

MODES = ("master-slave", "continuous-majority", "wait-for-consensus")
MODE_OPTION = f"voting modes measured ({','.join(MODES)})"
ASN = {"n1": 65010, "n2": 65020, "n3": 65030}
GW = {"n1": ("10.1.0.2", "eth1"), "n2": ("10.2.0.2", "eth2")}
OBSERVER_NH = "10.3.0.1"
CONSENSUS_TIMEOUT = 1.0


# ----------------------------------------------------------------------------------------
# The bench: neighbours, recorders, the trace
# ----------------------------------------------------------------------------------------

@dataclass
class Bench:
    """Three ExaBGP neighbours around the router's forwarding namespace, with recorders."""

    tb: testbed.Testbed
    trace: tracemod.Trace
    loop: LoopThread
    fib: FibRecorder
    obs: ExabgpObserver
    withdrawn: set[str] = field(default_factory=set)

    def exa(self, name: str):
        return self.tb.neighbor(name).daemon

    # expected values
    def want_fib(self, p: str) -> FibValue:
        return via(GW[self.trace.best(p, p in self.withdrawn)])

    def want_obs(self, p: str) -> tuple:
        who = self.trace.best(p, p in self.withdrawn)
        return (65001, ASN[who]) + self.trace.paths[who][p], OBSERVER_NH

    def load(self, timeout: float) -> float:
        """Announce both tables; seconds until the FIB and n3 hold every prefix correctly."""
        t0 = time.monotonic()
        for name in (self.trace.preferred, self.trace.other):
            for path, prefixes in self.trace.grouped(name).items():
                self.exa(name).announce(prefixes, as_path=(ASN[name],) + path)
        want = {p: self.want_fib(p) for p in self.trace.prefixes}
        expect(self.fib.state, want, timeout, "the table in the real FIB", interval=1.0)
        wobs = {p: self.want_obs(p) for p in self.trace.prefixes}
        expect(lambda: self.obs.poll().state(), wobs, timeout, "the table at n3", interval=1.0)
        return max(e.t for e in self.obs.events) - t0

    def churn(self, event: tracemod.Churn) -> None:
        ex = self.exa(self.trace.preferred)
        if event.withdraw:
            self.withdrawn.add(event.prefix)
            ex.withdraw([event.prefix])
        else:
            self.withdrawn.discard(event.prefix)
            path = (ASN[self.trace.preferred],) + self.trace.paths[self.trace.preferred][event.prefix]
            ex.announce([event.prefix], as_path=path)

    def sessions_reset(self) -> int:
        """Re-establishments seen by the neighbours (each should have come up once)."""
        n = 0
        for name in ("n1", "n2", "n3"):
            s = self.exa(name).bgp_sessions()
            n += sum(max(0, (x.established_count or 0) - 1) for x in s)
        return n


@contextmanager
def bench(ctx: RunContext, n: int, label: str, trace: tracemod.Trace | None = None,
          router_hold: int = 9) -> Iterator[Bench]:
    tag = f"vb{secrets.token_hex(2)}"
    run = registry.STATE_DIR / f"verb-{tag}"  # under the state dir: a clean of it removes it
    tb = testbed.build(tag, [("n1", "exabgp", ASN["n1"]), ("n2", "exabgp", ASN["n2"]),
                             ("n3", "exabgp", ASN["n3"])], run, router_hold=router_hold)
    loop = LoopThread()
    fibrec = None
    try:
        # the neighbours start after the router (`verb_router`, `single_router`): started
        # first, ExaBGP backs off its reconnects and the session takes up to a minute
        fibrec = FibRecorder(loop, tb.fwd.name).start()
        obs = ExabgpObserver(run / "n3" / "exabgp.events", "10.3.0.1")
        ctx.step(f"{label}: {n:,} prefixes")
        yield Bench(tb, trace or tracemod.make(n), loop, fibrec, obs)
    finally:
        if fibrec is not None:
            fibrec.stop()
        loop.stop()
        tb.close()


def trusted_core_lines() -> int:
    """The trusted core's code lines, counted by scripts/count-trusted-lines.py."""
    import importlib.util
    script = Path(__file__).resolve().parent.parent / "scripts" / "count-trusted-lines.py"
    spec = importlib.util.spec_from_file_location("count_trusted_lines", script)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {script} as a Python module")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.count()["code_lines"]


def _pids_cpu(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def _pss_mb(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        with suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            total += p.memory_full_info().pss
    return total / 2**20


def _verb_config(mode: str, window: float, hold: int = 3) -> dict:
    return {"mode": mode, "window": window, "consensus_timeout": CONSENSUS_TIMEOUT, "replica_hold": hold}


@contextmanager
def verb_router(b: Bench, mode: str, window: float, log_path: Path,
                profile: Path | None = None, hold: int = 3) -> Iterator[RemoteRouter]:
    rr = RemoteRouter(b.tb.spec, b.tb.fwd, tag=b.tb.tag, config=_verb_config(mode, window, hold),
                      run_dir=b.tb.run_dir / "hv", log_path=log_path, profile=profile)
    try:
        rr.start()
        b.tb.start_neighbors()
        wait_for(lambda: all(x["established"] for x in rr.status()["neighbors"].values()), 60,
                 what="the router's sessions")
        yield rr
    finally:
        rr.stop()


@contextmanager
def single_router(b: Bench, impl: str = "frr") -> Iterator[Daemon]:
    d = driver_for(impl)(b.tb.spec)
    d.start(b.tb.fwd, b.tb.run_dir / "single")
    try:
        b.tb.start_neighbors()
        wait_for(lambda: all(s.established for s in d.bgp_sessions()), 60, what="the daemon's sessions")
        yield d
    finally:
        d.stop()


def _quantiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"n": 0, "median": None, "p90": None, "max": None}
    s = sorted(xs)
    return {"n": len(s), "median": statistics.median(s), "p90": s[int(0.9 * (len(s) - 1))], "max": s[-1]}


# ----------------------------------------------------------------------------------------
# verb-overhead
# ----------------------------------------------------------------------------------------

def _churn_delays(b: Bench, events: list[tracemod.Churn], rate: float) -> dict[str, list[float]]:
    """Replay churn at `rate` events/s; per event, ms until the FIB and n3 show its effect."""
    marks = []
    t0 = time.monotonic()
    for i, ev in enumerate(events):
        due = t0 + i / rate
        time.sleep(max(0.0, due - time.monotonic()))
        t = time.monotonic()
        b.churn(ev)
        marks.append((t, ev.prefix, b.want_fib(ev.prefix), b.want_obs(ev.prefix)))
    time.sleep(3.0)
    b.obs.poll()
    fib_by_key = _by_key(b.fib.events)
    obs_by_key = _by_key(b.obs.events)
    fib_d, adv_d, lost = [], [], 0
    for t, p, wf, wo in marks:
        tf = _first(fib_by_key.get(p, []), t, wf)
        to = _first(obs_by_key.get(p, []), t, wo)
        if tf is None or to is None:
            lost += 1
            continue
        fib_d.append((tf - t) * 1000)
        adv_d.append((to - t) * 1000)
    return {"fib_ms": fib_d, "adv_ms": adv_d, "missed": [lost]}


def _by_key(events) -> dict[str, list]:
    out: dict[str, list] = {}
    for e in list(events):
        out.setdefault(e.key, []).append(e)
    return out


def _first(evs: list, t: float, value: Any) -> float | None:
    return next((e.t for e in evs if e.t >= t and e.value == value), None)


def _run_overhead(ctx: RunContext, b: Bench, procs_fn, n_churn: int, rate: float, label: str,
                  load_timeout: float) -> dict:
    procs = procs_fn()
    cpu0, w0 = _pids_cpu(procs), time.monotonic()
    load_s = b.load(load_timeout)
    mem = _pss_mb(procs_fn())
    ctx.step(f"{label}: table loaded in {load_s:.1f}s; churn {n_churn} events at {rate:g}/s")
    cpu_load = _pids_cpu(procs_fn())
    d = _churn_delays(b, b.trace.churn(n_churn), rate)
    procs = procs_fn()
    cpu = _pids_cpu(procs) - cpu0
    return {"load_s": load_s, "cpu_s": cpu, "churn_cpu_s": _pids_cpu(procs) - cpu_load,
            "wall_s": time.monotonic() - w0, "pss_mb": mem,
            "fib_ms": _quantiles(d["fib_ms"]), "adv_ms": _quantiles(d["adv_ms"]),
            "missed": d["missed"][0], "fib_raw": d["fib_ms"], "adv_raw": d["adv_ms"],
            "processes": len(procs)}


@experiment("verb-overhead", "VERB: FIB-update and advertisement delay, CPU and memory of the "
            "bug-tolerant router against one daemon, on a 10,000-prefix trace; trusted-core lines",
            options={"modes": MODE_OPTION})
def verb_overhead(ctx: RunContext) -> Result:
    n = 2_000 if ctx.quick else 10_000
    n_churn, rate = (150, 20.0) if ctx.quick else (500, 20.0)
    modes = ctx.names("modes", MODES, choices=MODES)
    res = Result("verb-overhead")
    runs: dict[str, dict] = {}
    load_timeout = 120 if ctx.quick else 300
    for impl in ("frr", "bird"):  # the single daemons that write a FIB (GoBGP does not)
        with bench(ctx, n, f"single {impl}") as b, single_router(b, impl) as d:
            runs[f"single-{impl}"] = _run_overhead(
                ctx, b, lambda d=d: [psutil.Process(p) for p in d.pids.values()], n_churn, rate,
                f"single {impl}", load_timeout)
    for mode in modes:
        # the paper's "tens of seconds" of tolerated convergence: GoBGP can lag a full
        # table load by more than ten seconds on a busy two-core machine
        with bench(ctx, n, f"VERB {mode}") as b, \
                verb_router(b, mode, 30.0, ctx.out_dir / f"hv-{mode}.log") as rr:
            runs[mode] = _run_overhead(ctx, b, rr.processes, n_churn, rate, f"VERB {mode}",
                                       load_timeout)
            st = rr.status()
            runs[mode]["recoveries"] = len(st["recoveries"])
            runs[mode]["per_process_cpu_s"] = {f"{p.name()}:{p.pid}": round(_pids_cpu([p]), 2)
                                              for p in rr.processes()}
    return _overhead_report(ctx, res, runs, n, n_churn, rate)


def _overhead_report(ctx: RunContext, res: Result, runs: dict, n: int, n_churn: int, rate: float) -> Result:
    base = runs["single-frr"]  # the CPU and memory reference: FRR, Quagga's descendant
    singles = [r for k, r in runs.items() if k.startswith("single-") and r["fib_ms"]["median"] is not None]
    fastest = min(singles, key=lambda r: r["fib_ms"]["median"])
    rows = []
    for name, r in runs.items():
        rows.append((name, r["load_s"], r["fib_ms"]["median"], r["fib_ms"]["p90"], r["adv_ms"]["median"],
                     r["adv_ms"]["p90"], r["cpu_s"], r.get("churn_cpu_s"), r["pss_mb"], r["missed"]))
    cm = runs.get("continuous-majority", base)
    # against the fastest single daemon: the conservative comparison
    added = cm["fib_ms"]["median"] - fastest["fib_ms"]["median"] if cm["fib_ms"]["median"] is not None else None
    lines = trusted_core_lines()
    res.add_metric("added_fib_delay_ms_median", "median FIB-update delay added (continuous-majority)", "ms",
                   round(added, 1) if added is not None else None, None, "< 50 ms",
                   added is not None and added < 50)
    cpu_ratio = cm["cpu_s"] / base["cpu_s"] if base["cpu_s"] else None
    mem_ratio = cm["pss_mb"] / base["pss_mb"] if base["pss_mb"] else None
    res.add_metric("cpu_ratio", "CPU of the whole router / one FRR daemon (trace)", "x",
                   round(cpu_ratio, 2) if cpu_ratio else None, None, "reported")
    res.add_metric("memory_ratio", "memory (PSS) of the whole router / one FRR daemon", "x",
                   round(mem_ratio, 2) if mem_ratio else None, None, "reported")
    res.add_metric("trusted_core_lines", "trusted voting core (code lines)", "lines", lines, 514,
                   "<= 514", lines <= 514)
    res.add_section("Setup", (
        f"Trace: {n:,} prefixes from two ExaBGP neighbours (n1, n2; every prefix reached through "
        f"both with AS paths of different lengths), then {n_churn} churn events at {rate:g}/s "
        f"(the preferred neighbour withdraws or re-announces one of {n // 10:,} churn prefixes, "
        "moving its best path between n1 and n2). Delays are from the churn command to the "
        "change in the router's real FIB (netlink) and at the receiving neighbour n3 (ExaBGP's "
        "receive time). Baselines: one FRR (zebra, staticd, bgpd) or one BIRD in the same "
        "namespace; the added delay is taken against the faster of the two (FRR holds its "
        "route-processing queue about 50 ms, BIRD does not); CPU and memory against FRR. VERB: "
        "the hypervisor process with FRR, BIRD and GoBGP replicas (disagreement window 30 s, "
        "the paper's tens of seconds: no faults here); CPU is user+system seconds "
        "of the whole process tree from the start of the table load to the end of the churn, "
        "memory the proportional set size after the load. The paper reports low overhead "
        "without a comparable figure; its trusted code was 514 lines."))
    res.add_section("Results", markdown_table(
        ("router", "table load (s)", "FIB delay median (ms)", "FIB p90", "advert delay median (ms)",
         "advert p90", "CPU, whole trace (s)", "CPU, churn only (s)", "memory (MiB)", "missed events"),
        rows))
    if cm is not base and base.get("churn_cpu_s"):
        res.add_section("Where the CPU goes", (
            f"During the churn alone (steady operation) the whole bug-tolerant router used "
            f"{cm['churn_cpu_s'] / base['churn_cpu_s']:.1f}x the CPU of one FRR; over the whole trace, "
            "whose table load dominates, the ratio is the headline's. The hypervisor is Python (the "
            "paper's was C/C++): per process, see raw.json `per_process_cpu_s`. Its time goes to "
            "decoding every replica's UPDATEs towards every neighbour, the route messages of two kernel "
            "FIBs and GoBGP's RIB stream, and per-prefix voting."))
    series = {name: (list(range(len(r["fib_raw"]))), sorted(r["fib_raw"])) for name, r in runs.items()}
    plot(ctx.out_dir / "fib_delay.png", series, "FIB-update delay per churn event (sorted)",
         "event (sorted by delay)", "ms", logy=True)
    res.plots.append(("FIB-update delay, sorted", "fib_delay.png"))
    res.raw = {"runs": {k: {kk: vv for kk, vv in v.items()} for k, v in runs.items()},
               "prefixes": n, "churn_events": n_churn, "rate": rate}
    return res


# ----------------------------------------------------------------------------------------
# verb-masking
# ----------------------------------------------------------------------------------------

@dataclass
class FaultPlan:
    fault: str
    replica: str  # "master", or an implementation ("gobgp")
    params: dict = field(default_factory=dict)


def _plan(b: Bench) -> list[FaultPlan]:
    s = b.trace.stable
    n1_best = [p for p in s if b.trace.best(p) == "n1"]
    return [
        FaultPlan("crash", "master"),
        FaultPlan("hang", "master"),
        FaultPlan("wrong-next-hop", "master", {"prefix": n1_best[0], "gateway": "10.3.0.2"}),
        FaultPlan("missing-route", "master", {"prefix": n1_best[1]}),
        FaultPlan("bogus-route", "gobgp", {"prefix": _more_specific(n1_best[2])}),
        FaultPlan("corrupt-update", "master", {"kind": "as-path"}),
        FaultPlan("malformed", "master"),
        FaultPlan("withdraw-race", "master", {"prefixes": [n1_best[3]]}),
        FaultPlan("slow", "master", {"stop_s": 0.4, "run_s": 0.1}),
    ]


def _more_specific(p: str) -> str:
    return str(next(ipaddress.IPv4Network(p).subnets(1)))


def _target(st: dict, plan: FaultPlan) -> str:
    reps = st["replicas"]
    if plan.replica == "master":
        name = st["master"]["fib"] or "r0"
        if plan.fault == "missing-route" and reps[name]["impl"] == "gobgp":
            name = next(r for r, v in reps.items() if v["impl"] != "gobgp")
        return name
    return next(r for r, v in reps.items() if v["impl"] == plan.replica)


class ChurnThread(threading.Thread):
    """Background churn on the churn set (the stable set the faults target stays put)."""

    def __init__(self, b: Bench, rate: float):
        super().__init__(daemon=True, name="verb-churn")
        self.b, self.rate = b, rate
        self.stop_evt = threading.Event()
        self.events = iter(b.trace.churn(10**6))
        self.lock = threading.Lock()

    def run(self) -> None:
        while not self.stop_evt.wait(1.0 / self.rate):
            with self.lock:
                self.b.churn(next(self.events))

    def stop(self) -> None:
        self.stop_evt.set()
        self.join(5)


def _deviation(events: list, ok, start: dict, t0: float, t1: float) -> tuple[float, list[str]]:
    """Seconds within [t0, t1] during which some key held a value it should never hold, and
    which keys did. `ok(key, value)` says True (fine), False (a leak), None (not watched)."""
    bad_since: dict[str, float] = {k: t0 for k, v in start.items() if ok(k, v) is False}
    leaked = set(bad_since)
    intervals: list[tuple[float, float]] = []
    for e in events:
        if e.t < t0 or e.t > t1:
            continue
        good = ok(e.key, e.value)
        if good is None:
            continue
        if not good and e.key not in bad_since:
            bad_since[e.key] = e.t
            leaked.add(e.key)
        elif good and e.key in bad_since:
            intervals.append((bad_since.pop(e.key), e.t))
    intervals += [(s, t1) for s in bad_since.values()]
    return _union(intervals), sorted(leaked)


def _late(events: list, key: str, want: Any, due: float, t1: float) -> float:
    """How long after `due` a key took to hold `want` (t1 - due if it never did)."""
    state = None
    for e in events:
        if e.key == key and e.t <= due:
            state = e.value
    if state == want:
        return 0.0
    t = next((e.t for e in events if e.key == key and due < e.t <= t1 and e.value == want), t1)
    return max(0.0, t - due)


def _union(iv: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for s, e in sorted(iv):
        if e <= end:
            continue
        total += e - max(s, end)
        end = e
    return total


def _healthy(rr: RemoteRouter) -> bool:
    st = rr.status()
    return (all(r["state"] == "voting" for r in st["replicas"].values())
            and all(d == {"fib": 0, "updates": 0} for d in st["disagreements"].values()))


def _run_fault(ctx: RunContext, b: Bench, rr: RemoteRouter, churn: ChurnThread, mode: str,
               plan: FaultPlan, window: float) -> dict:
    # a replica recovered earlier may still be catching up: with a full table that is minutes
    # (a GoBGP replica replayed 1M prefixes for more than 8 minutes on two shared cores)
    wait_for(lambda: _healthy(rr), max(120.0, 2 * window + 60), interval=0.5,
             what="a healthy router before the fault")
    st = rr.status()
    target = _target(st, plan)
    impl = st["replicas"][target]["impl"]
    n_rec = len(st["recoveries"])
    flapped = plan.params.get("prefixes", [None])[0]
    stable = set(b.trace.stable) - {flapped}
    churned = set(b.trace.churn_set)
    table = set(b.trace.prefixes)
    with churn.lock:
        want_fib = {p: b.want_fib(p) for p in stable}
        want_obs = {p: b.want_obs(p) for p in stable}
    # a churned prefix may go either way, but only to one of its two correct values
    legit_fib = {p: {via(GW[n]) for n in GW} for p in churned}
    legit_obs = {p: {((65001, ASN[n]) + b.trace.paths[n][p], OBSERVER_NH) for n in GW} for p in churned}

    def judge(want: dict, legit: dict):
        def ok(k: str, v: Any) -> bool | None:
            if k in want:
                return v == want[k]
            if k in legit:
                return v in legit[k]
            if k == flapped:
                return None
            return v is None if k not in table else None
        return ok

    t0 = time.monotonic()
    fib_start, obs_start = b.fib.state(t0), b.obs.poll().state(t0)
    fid = rr.inject(plan.fault, target, **plan.params)
    t_back = None
    if plan.fault == "withdraw-race":
        # withdrawn by both neighbours (so the router must withdraw it), then re-announced
        for name in ("n1", "n2"):
            b.exa(name).withdraw([flapped])
        time.sleep(0.5)
        for name in ("n1", "n2"):
            b.exa(name).announce([flapped], as_path=(ASN[name],) + b.trace.paths[name][flapped])
        t_back = time.monotonic()

    def readmitted() -> dict | None:
        recs = rr.status()["recoveries"]
        return recs[-1] if len(recs) > n_rec and recs[-1]["duration_s"] is not None else None

    limit = t0 + (window + 3 if plan.fault == "slow" else 2 * window + 60) - time.monotonic()
    try:  # a fault that is never detected (slow, within the window) is a result, not an error
        recovered = wait_for(readmitted, max(0.0, limit), interval=0.25, what="the replica recovered",
                             retry_on=())
    except ExpectTimeout:
        recovered = None
    rr.clear(fid)
    time.sleep(1.0)
    if flapped:  # it must be back everywhere before the next fault
        wait_for(lambda: b.fib.state().get(flapped) == b.want_fib(flapped)
                 and b.obs.poll().state().get(flapped) == b.want_obs(flapped), 60, what=f"{flapped} back")
    t1 = time.monotonic()
    b.obs.poll()
    fib_ev, obs_ev = list(b.fib.events), list(b.obs.events)
    fib_s, fib_keys = _deviation(fib_ev, judge(want_fib, legit_fib), fib_start, t0, t1)
    obs_s, obs_keys = _deviation(obs_ev, judge(want_obs, legit_obs), obs_start, t0, t1)
    if flapped:
        # the lost re-advertisement: still missing a second after it was re-announced (plus
        # the consensus timeout, which wait-for-consensus spends on any disagreement)
        due = t_back + 1.0 + CONSENSUS_TIMEOUT
        late_f = _late(fib_ev, flapped, b.want_fib(flapped), due, t1)
        late_o = _late(obs_ev, flapped, b.want_obs(flapped), due, t1)
        fib_s, obs_s = fib_s + late_f, obs_s + late_o
        fib_keys += [flapped] if late_f else []
        obs_keys += [flapped] if late_o else []
    out = {"mode": mode, "fault": plan.fault, "replica": target, "impl": impl,
           "reached_fib": bool(fib_keys), "reached_neighbour": bool(obs_keys),
           "fib_exposure_ms": round(fib_s * 1000, 1), "neighbour_exposure_ms": round(obs_s * 1000, 1),
           "fib_keys": fib_keys[:5], "neighbour_keys": obs_keys[:5],
           "recovery_s": recovered["duration_s"] if recovered else None,
           "detected_by": recovered["reason"] if recovered else None}
    rec = "-" if out["recovery_s"] is None else f"{out['recovery_s']:.1f}s"
    ctx.step(f"{mode} {plan.fault} on {target} ({impl}): FIB {'LEAK' if fib_keys else 'ok'}, "
             f"n3 {'LEAK' if obs_keys else 'ok'}, recovery {rec}")
    return out


@experiment("verb-masking", "VERB: each injected bug under each voting mode: did it reach the "
            "real FIB or a neighbour, for how long, and how long recovery took",
            options={"modes": MODE_OPTION})
def verb_masking(ctx: RunContext) -> Result:
    # in `run all` a 5,000-prefix table: each of the 27 recoveries replays the whole table
    n = 2_000 if ctx.quick else 5_000 if ctx.part_of_all else 10_000
    window = 3.0 if ctx.quick else 8.0
    modes = ctx.names("modes", MODES, choices=MODES)
    res = Result("verb-masking")
    rows: list[dict] = []
    with bench(ctx, n, "masking") as b:
        with verb_router(b, modes[0], window, ctx.out_dir / "hv.log") as rr:
            load_s = b.load(120 if ctx.quick else 300)
            ctx.step(f"table of {n:,} prefixes loaded in {load_s:.1f}s")
            churn = ChurnThread(b, 5.0)
            churn.start()
            try:
                for mode in modes:
                    rr.set_mode(mode)
                    for plan in _plan(b):
                        rows.append(_run_fault(ctx, b, rr, churn, mode, plan, window))
            finally:
                churn.stop()
            resets_ours = sum(v["established_count"] - 1 for v in rr.status()["neighbors"].values())
        resets = b.sessions_reset() + resets_ours
    return _masking_report(ctx, res, rows, resets, n, window, load_s)


def _masking_report(ctx: RunContext, res: Result, rows: list[dict], resets: int, n: int,
                    window: float, load_s: float) -> Result:
    def masked(mode: str) -> float | None:
        rs = [r for r in rows if r["mode"] == mode]
        return sum(not (r["reached_fib"] or r["reached_neighbour"]) for r in rs) / len(rs) if rs else None

    cm, wfc = masked("continuous-majority"), masked("wait-for-consensus")
    ms = [max(r["fib_exposure_ms"], r["neighbour_exposure_ms"]) for r in rows if r["mode"] == "master-slave"]
    recs = [r["recovery_s"] for r in rows if r["recovery_s"] is not None]
    res.add_metric("masked_fraction_continuous_majority", "single-replica faults masked, continuous-majority",
                   "", cm, 1.0, "= 1", cm == 1.0)
    res.add_metric("masked_fraction_wait_for_consensus", "single-replica faults masked, wait-for-consensus",
                   "", wfc, 1.0, "= 1", wfc == 1.0)
    res.add_metric("master_slave_exposure_ms_max", "longest exposure of a fault in master-slave", "ms",
                   max(ms) if ms else None, None, "measured")
    res.add_metric("sessions_reset", "neighbour sessions reset during all faults", "", resets, 0, "= 0",
                   resets == 0)
    res.add_metric("recovery_s_max", "longest time from detection to readmission", "s",
                   round(max(recs), 2) if recs else None, None, "measured")
    res.add_section("Setup", (
        f"One bug-tolerant router (hypervisor process; replicas FRR r0, BIRD r1, GoBGP r2), a "
        f"table of {n:,} prefixes from ExaBGP neighbours n1 and n2 (loaded in {load_s:.1f}s), "
        f"background churn at 5 events/s on a tenth of the prefixes throughout, ExaBGP n3 "
        f"recording what the router advertises. For each voting mode (switched at run time) "
        f"each fault is injected on one replica (the master, unless named), observed until the "
        f"replica is recovered (window {window:g}s, replica hold time 3s), then switched off. "
        "'Reached' means some prefix of the stable set (no churn) deviated from its correct "
        "value in the real FIB (netlink) or at n3, or a prefix outside the table appeared; "
        "exposure is how long any did. The paper reports faults masked by voting, master-slave "
        "exposing the master's faults until it is outvoted, and recovery by restart."))
    table = [(r["mode"], r["fault"], f"{r['replica']} ({r['impl']})", r["reached_fib"], r["reached_neighbour"],
              max(r["fib_exposure_ms"], r["neighbour_exposure_ms"]), r["recovery_s"], r["detected_by"] or "-")
             for r in rows]
    res.add_section("Faults", markdown_table(
        ("mode", "fault", "replica", "reached FIB", "reached n3", "exposure (ms)", "recovery (s)",
         "detected by"), table))
    faults_ = list(dict.fromkeys(r["fault"] for r in rows))
    ms_rows = {r["fault"]: max(r["fib_exposure_ms"], r["neighbour_exposure_ms"]) for r in rows
               if r["mode"] == "master-slave"}
    if ms_rows:
        plot(ctx.out_dir / "master_slave_exposure.png",
             {"master-slave": (faults_, [ms_rows.get(f, 0) for f in faults_])},
             "Exposure of each fault in master-slave", "fault", "ms", kind="bar")
        res.plots.append(("master-slave exposure per fault", "master_slave_exposure.png"))
    rec_series = {m: (faults_, [next((r["recovery_s"] or 0 for r in rows if r["mode"] == m and r["fault"] == f), 0)
                                for f in faults_]) for m in dict.fromkeys(r["mode"] for r in rows)}
    plot(ctx.out_dir / "recovery.png", rec_series, "Detection to readmission", "fault", "s", kind="bar")
    res.plots.append(("recovery time per fault and mode", "recovery.png"))
    res.raw = {"faults": rows, "sessions_reset": resets, "prefixes": n, "window_s": window}
    return res
