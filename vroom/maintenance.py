"""vroom-maintenance: planned maintenance of an edge router, VROOM's headline experiment.

The edge router NYCM of Abilene (OSPF with CHIN and WASH, eBGP with the external AS 65100)
moves between its physical router and a spare one at New York, NY2, for each
implementation in turn (FRR, the heir of the prototype's Quagga, and BIRD): live
migrations first, then the baselines an operator would otherwise use: a graceful restart
(BGP RFC 4724 and OSPF RFC 3623, helpers on every neighbour, the forwarding state kept at
the new place) and a plain restart. Probes cross NYCM throughout: hNYCM -> hWASH (one hop
beyond NYCM: the migrating router's data plane, as the paper measured it) at the run's rate
(20,000 packets/s or the data plane's measured limit, whichever is lower) and hLOSA -> hNYCM
(across the continent) at 1,000 packets/s.
"""
from __future__ import annotations

import logging
import statistics
import time
from typing import Any

from routerlab.experiments import RunContext, experiment
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import load_topology
from routerlab.traffic import Probe

from .baseline import RestartReport, restart_move
from .capacity import DataplaneLimit, dataplane_limit_pps
from .measure import loadavg, probe_loss, probes, run_prefix
from .migrate import MigrationReport, migrate
from .phases import phase_windows
from .topo import TopoNetwork, sessions_reset, sessions_reset_gr

log = logging.getLogger(__name__)

PAPER_FREEZE_S = 3.56  # VROOM's edge router (OSPF + BGP): control-plane downtime
PAPER_RATE_PPS = 91_000  # NetFPGA data plane: no loss while migrating at this rate
IMPLS = ("frr", "bird")
VR, SPARE = "NYCM", "NY2"
# The fast probe crosses NYCM and one more router: every router on a path is another pass
# through the one ovs-vswitchd thread that forwards for all of them, so a longer path would
# measure the emulator's capacity, not the migrating router's (hNYCM -> hLOSA, six routers:
# about 15,000 packets/s with 0 loss; hNYCM -> hWASH: about 30,000).
FORWARD, REVERSE = ("hNYCM", "hWASH"), ("hLOSA", "hNYCM")
TARGET_RATE_PPS = 20_000  # the rate, when the data plane carries it
RATE_BAR_PPS = 10_000
# A rate counts as carried when nothing is lost and packets are not queued: near its limit
# a veth's buffer holds packets for hundreds of milliseconds without losing any, and a
# probe sitting in such a queue measures the queue, not the migration.
CLEAN_P99_MS = 20.0
LIMIT_RATES = (5_000, 10_000, 15_000, 20_000, 30_000, 40_000, 50_000, 60_000, 80_000,
               100_000)
MAX_DISTURBED = 3  # runs repeated because the network broke before the move
STEADY_S = 1.0  # probe time before each move (the steady-state latency window)


def _latency(p: Probe, t_start: float, t_move: float, rep: MigrationReport) -> dict[str, Any]:
    """One-way latency of the forward probe: steady state (before the move) and in the
    move's phases; extra delay = worst latency during the move - the steady median."""
    windows = [("steady", t_start + 0.2, t_move)]
    phases = phase_windows(rep.phases, by="phase")
    if phases:
        windows.append(("move", min(w[1] for w in phases), max(w[2] for w in phases)))
        windows += phases
    stats = p.latency_in_windows(windows, overall=None)
    out: dict[str, Any] = {k: v.to_json() for k, v in stats.items()}
    steady, move = stats.get("steady"), stats.get("move")
    if steady is not None and move is not None and steady.count and move.count:
        out["extra_delay_ms"] = round(move.max_ms - steady.p50_ms, 2)
    return out


def _run(tn: TopoNetwork, impl: str, kind: str, target: str, rate: int, i: int) -> dict[str, Any]:
    """One move of NYCM under the probes: kind "live", "gr" (graceful restart) or
    "restart" (plain)."""
    before = tn.neighbour_view(VR)
    t0 = time.monotonic()
    rep: MigrationReport
    with probes(tn, [FORWARD, REVERSE], rates=[rate, 1000]) as ps:
        t_start = time.time()
        time.sleep(STEADY_S)
        t_move = time.time()
        if kind == "live":
            rep = migrate(tn.net, VR, target)
            time.sleep(1.5)
        else:
            rep = restart_move(tn.net, VR, target, graceful=kind == "gr",
                               observe=tn.gr_neighbours(VR))
            reconverge = tn.wait_converged(timeout=90, at_rest=False)  # the next move waits for rest
            time.sleep(1.0)
    after = tn.neighbour_view(VR)
    elapsed = time.monotonic() - t0
    lost, gap, sent = probe_loss(ps)
    out: dict[str, Any] = {
        "impl": impl, "kind": kind, "run": i, "from": rep.source, "to": target, "rate_pps": rate,
        "loadavg": loadavg(), "packets_sent": sent, "packets_lost": lost,
        "longest_gap_ms": round(gap, 1), "total_s": round(rep.total_s, 3),
        "freeze_s": rep.freeze_s, "phases": rep.phase_seconds(),
        "cp": rep.cp.to_json() if rep.cp else None, "before": before, "after": after,
        "probes": [p.result.to_json() for p in ps if p.result is not None]}
    if rep.ok:
        out["latency"] = _latency(ps[0], t_start, t_move, rep)
    if kind == "live":
        out["resets"] = sessions_reset(before, after, elapsed)
    else:
        assert isinstance(rep, RestartReport)
        split = sessions_reset_gr(before, after, elapsed, rep.neighbours)
        out.update({"resets": split["reset"], "kept_by_gr": split["kept_by_gr"],
                    "reconverge_s": round(reconverge, 2), "restart": rep.to_json()})
    # packets lost before the move began: the network was already broken (the machine is
    # shared: another tenant's load can stall Open vSwitch for seconds)
    out["lost_before_move"] = sum(g.lost for p in ps if p.result is not None
                                  for g in p.result.gaps if p.result.started_at + g.start_s < t_move)
    log.info("%s %s run %d %s -> %s at %d pps: %d lost, longest gap %.0f ms, resets %s, freeze %s",
             impl, kind, i, rep.source, target, rate, lost, gap, out["resets"] or "none",
             "-" if rep.freeze_s is None else f"{rep.freeze_s:.3f} s")
    return out


def _measure_limit(tn: TopoNetwork, ctx: RunContext) -> tuple[DataplaneLimit, int]:
    """The data plane's limit (highest rate with no loss) and the rate the moves run at: the
    highest rate tried that lost nothing and queued nothing, at most TARGET_RATE_PPS. A rate
    that queues is never used (its probes would measure the queue, not the migration): if
    none was clean, the lowest rate tried."""
    ctx.step(f"measuring the data plane's limit ({FORWARD[0]} -> {FORWARD[1]}, 64-byte UDP)",
             None)
    lim = dataplane_limit_pps(tn, *FORWARD, rates=LIMIT_RATES, seconds=2.0)
    clean = [s.rate_pps for s in lim.steps if s.ok and (s.latency_p99_ms or 0) <= CLEAN_P99_MS]
    rate = min(TARGET_RATE_PPS, max(clean)) if clean else LIMIT_RATES[0]
    if not clean:
        log.warning("no rate was carried without queueing (p99 > %.0f ms): the moves run at "
                    "%d packets/s", CLEAN_P99_MS, rate)
    log.info("data plane limit %d pps; moves run at %d pps", lim.limit_pps, rate)
    return lim, rate


def _moves(ctx: RunContext, impl: str, counts: dict[str, int], rate: int | None,
           done: int, total: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                           dict[str, Any]]:
    """Build Abilene with NYCM on `impl`, run every move kind; (records, disturbed, extra)."""
    topo = load_topology("abilene")
    tn = TopoNetwork(topo, run_prefix("m"), impl={VR: impl}, spare={SPARE: VR}, graceful=True)
    records: list[dict[str, Any]] = []
    disturbed: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    try:
        ctx.step(f"building Abilene with NYCM on {impl.upper()}", None)
        tn.start(progress=lambda m: ctx.step(m, None))
        extra["converged_s"] = round(tn.wait_converged(timeout=180), 2)
        tn.wait_reachable(*FORWARD)
        tn.wait_reachable(*REVERSE)
        home = tn.home[VR]
        tn.net.tunnel(home, SPARE)  # the migration link between the two New York routers
        if rate is None:
            lim, rate = _measure_limit(tn, ctx)
            extra["limit"] = lim
        extra["rate"] = rate
        for kind, n in counts.items():
            i = retries = 0
            while i < n:
                label = {"live": "live migration", "gr": "graceful restart",
                         "restart": "plain restart"}[kind]
                ctx.step(f"{impl.upper()}: {label} {i + 1}/{n} at {rate:,} packets/s",
                         0.02 + 0.95 * (done + len(records)) / total)
                vr = tn.net.vrs[VR]
                target = SPARE if vr.pr is not None and vr.pr.name == home else home
                rec = _run(tn, impl, kind, target, rate, i + 1)
                tn.wait_converged(timeout=90)
                tn.wait_reachable(*FORWARD)
                if rec["lost_before_move"] and retries < MAX_DISTURBED:
                    retries += 1  # not the move's doing: listed, then the run is repeated
                    log.warning("%s %s run %d disturbed (%d packets lost before the move); "
                                "repeating it", impl, kind, i + 1, rec["lost_before_move"])
                    disturbed.append(rec)
                    continue
                records.append(rec)
                i += 1
    finally:
        tn.stop()
    return records, disturbed, extra


def _max(xs: list[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return round(max(vals), 3) if vals else None


@experiment("vroom-maintenance",
            "planned maintenance: an edge VR (OSPF + eBGP) live-migrated A->B->A ten times in "
            "Abilene, FRR and BIRD, under probes at the data plane's limit (up to 20,000 "
            "packets/s); graceful restart and plain restart beside it",
            options={"runs": "live migrations per implementation (10; --quick 2)"})
def run_maintenance(ctx: RunContext) -> Result:
    """Per implementation (FRR, BIRD) of NYCM: ten live migrations NYCM <-> NY2, three
    graceful restarts and two plain restarts (in `run all`: two graceful, one plain). The
    data plane's limit is measured first; the forward probe runs at min(20,000, the highest
    rate with no loss and no queueing). A run whose probes lost packets in the second before
    the move began (the network was already broken: the machine is shared) is repeated, at
    most three times, and listed. --quick: two live migrations, one of each restart."""
    live_n = int(ctx.options.get("runs", 2 if ctx.quick else 10))
    gr_n, plain_n = (1, 1) if ctx.quick else (2, 1) if ctx.part_of_all else (3, 2)
    counts = {"live": live_n, "gr": gr_n, "restart": plain_n}
    res = Result("vroom-maintenance")
    records: list[dict[str, Any]] = []
    disturbed: list[dict[str, Any]] = []
    limit: DataplaneLimit | None = None
    rate: int | None = None
    total = len(IMPLS) * sum(counts.values())
    for impl in IMPLS:
        recs, dist, extra = _moves(ctx, impl, counts, rate, len(records), total)
        records += recs
        disturbed += dist
        rate = extra["rate"]
        limit = extra.get("limit", limit)
        res.raw[f"converged_s_{impl}"] = extra["converged_s"]
    _metrics(res, records, counts, limit, rate)
    _report(res, ctx, records, disturbed, limit, rate)
    return res


def _metrics(res: Result, records: list[dict[str, Any]], counts: dict[str, int],
             limit: DataplaneLimit | None, rate: int | None) -> None:
    live = [r for r in records if r["kind"] == "live"]
    gr = [r for r in records if r["kind"] == "gr"]
    plain = [r for r in records if r["kind"] == "restart"]
    lost = sum(r["packets_lost"] for r in live)
    resets = sum(len(r["resets"]) for r in live)
    want = counts["live"] * len(IMPLS)
    res.add_metric("runs", "live migrations completed (FRR + BIRD)", "", len(live), paper=None,
                   goal=f"= {want}", met=len(live) == want)
    res.add_metric("probe_rate_pps", "probe rate through the migrating router", "packets/s",
                   rate, paper=PAPER_RATE_PPS, goal=f">= {RATE_BAR_PPS:,} (goal {TARGET_RATE_PPS:,} "
                   "or the limit)", met=rate is not None and rate >= RATE_BAR_PPS)
    res.add_metric("dataplane_limit_pps", "data plane's limit: highest rate with 0 loss in "
                   "steady state (userspace OVS)", "packets/s",
                   limit.limit_pps if limit else None, paper=PAPER_RATE_PPS, goal="measured")
    res.add_metric("packets_lost_total", "packets lost over all live migrations", "packets",
                   lost, paper=0, goal="0 in every run",
                   met=bool(live) and all(r["packets_lost"] == 0 for r in live))
    res.add_metric("sessions_reset", "adjacencies/sessions reset by live migration", "", resets,
                   paper=0, goal="0", met=bool(live) and resets == 0)
    by_impl = {impl: [r["freeze_s"] for r in live if r["impl"] == impl] for impl in IMPLS}
    worst = _max([f for fs in by_impl.values() for f in fs])
    res.add_metric("cp_freeze_s_max", "control-plane freeze, worst of FRR and BIRD", "s", worst,
                   paper=PAPER_FREEZE_S, goal="< 1.0 FRR (goal 0.5), < 0.5 BIRD",
                   met=all(_ok_freeze(impl, _max(fs)) for impl, fs in by_impl.items()))
    for impl, fs in by_impl.items():
        m = _max(fs)
        res.add_metric(f"cp_freeze_s_max_{impl}", f"control-plane freeze, {impl.upper()} (max)",
                       "s", m, paper=PAPER_FREEZE_S,
                       goal="< 1.0 (goal 0.5)" if impl == "frr" else "< 0.5",
                       met=_ok_freeze(impl, m))
    lat = [r["latency"] for r in live if r.get("latency")]
    steady = [x["steady"]["p99_ms"] for x in lat if x.get("steady", {}).get("count")]
    during = [x["move"]["p99_ms"] for x in lat if x.get("move", {}).get("count")]
    extra = [x["extra_delay_ms"] for x in lat if "extra_delay_ms" in x]
    res.add_metric("latency_p99_ms_steady", "one-way latency p99, steady state (median of runs)",
                   "ms", round(statistics.median(steady), 2) if steady else None, goal="reported")
    res.add_metric("latency_p99_ms_migration", "one-way latency p99 during live migrations "
                   "(worst run)", "ms", _max(during), goal="reported")
    xmax = _max(extra)
    res.add_metric("extra_delay_ms_max_migration", "extra delay during a live migration (worst "
                   "latency during the move - steady median, worst run)", "ms", xmax,
                   paper=0, goal="< 50 (goal 20)", met=xmax is not None and xmax < 50)
    res.add_metric("gr_packets_lost", "packets lost, graceful restart (total)", "packets",
                   sum(r["packets_lost"] for r in gr), goal="reported (baseline)")
    res.add_metric("gr_sessions_reset", "adjacencies/sessions reset for real, graceful restart "
                   "(total; re-established with the helper keeping the routes not counted)", "",
                   sum(len(r["resets"]) for r in gr), goal="reported (baseline)")
    res.add_metric("restart_packets_lost", "packets lost, plain restart (total)", "packets",
                   sum(r["packets_lost"] for r in plain), goal="reported (baseline)")
    res.add_metric("restart_sessions_reset", "adjacencies/sessions reset, plain restart (total)",
                   "", sum(len(r["resets"]) for r in plain), goal="reported (baseline)")


def _ok_freeze(impl: str, m: float | None) -> bool:
    return m is not None and m < (1.0 if impl == "frr" else 0.5)


def _report(res: Result, ctx: RunContext, records: list[dict[str, Any]],
            disturbed: list[dict[str, Any]], limit: DataplaneLimit | None, rate: int | None) -> None:
    res.raw.update({"runs": records, "disturbed_runs": disturbed, "vr": VR, "rate_pps": rate,
                    "limit": limit.to_json() if limit else None,
                    "probes": [list(FORWARD), list(REVERSE)]})
    if limit is not None:
        res.add_section("The data plane's limit", f"{FORWARD[0]} -> {FORWARD[1]}, 64-byte UDP, "
                        f"{limit.seconds_per_rate:.0f} s per rate in steady state (a failed rate "
                        "tried twice). The moves ran at the highest rate that lost nothing and "
                        f"kept p99 latency under {CLEAN_P99_MS:.0f} ms (no queueing), at most "
                        f"{TARGET_RATE_PPS:,} packets/s: {rate:,} packets/s.\n\n" + markdown_table(
                            ("rate pps", "sent", "lost", "delivered pps", "p50 ms", "p99 ms",
                             "max ms", "ok"),
                            [(s.rate_pps, s.sent, s.lost, s.delivered_pps, s.latency_p50_ms,
                              s.latency_p99_ms, s.latency_max_ms, "yes" if s.ok else "no")
                             for s in limit.steps]))
    if disturbed:
        res.add_section("Disturbed runs (repeated)", "Runs whose probes already lost packets "
                        "in the second before the move began (the network was broken by "
                        "something else: the machine is shared) were repeated; they are "
                        "listed here and kept in raw.json.\n\n" + markdown_table(
                            ("impl", "kind", "run", "lost before the move", "lost in all"),
                            [(r["impl"], r["kind"], r["run"], r["lost_before_move"],
                              r["packets_lost"]) for r in disturbed]))
    rows = [(r["impl"], r["kind"], r["run"], f"{r['from']}->{r['to']}", r["packets_lost"],
             r["longest_gap_ms"], r["freeze_s"] if r["freeze_s"] is not None else "-",
             (r.get("latency") or {}).get("extra_delay_ms", "-"), r["total_s"], r["loadavg"],
             ", ".join(r["resets"]) or "none", ", ".join(r.get("kept_by_gr", [])) or "-")
            for r in records]
    res.add_section("Runs", f"Probes cross NYCM in every run: {FORWARD[0]} -> {FORWARD[1]} "
                    f"at {rate:,} packets/s and {REVERSE[0]} -> {REVERSE[1]} at 1,000. *freeze*: the VR's control plane "
                    "is deaf (CRIU dump + restore + unlock + socket fixes; live only). *extra "
                    "ms*: worst one-way latency during the move minus the steady median. "
                    "*kept by GR*: re-established while the helper kept the routes (graceful "
                    "restart), not counted as resets.\n\n" + markdown_table(
                        ("impl", "kind", "run", "move", "lost", "longest gap ms", "freeze s",
                         "extra ms", "total s", "load avg", "resets", "kept by GR"), rows))
    _baselines_section(res, records)
    _phase_section(res, records)
    _plots(res, ctx, records)


def _baselines_section(res: Result, records: list[dict[str, Any]]) -> None:
    rows = []
    for impl in IMPLS:
        for kind in ("live", "gr", "restart"):
            rs = [r for r in records if r["impl"] == impl and r["kind"] == kind]
            if not rs:
                continue
            rst = [r.get("restart") or {} for r in rs]
            rows.append((impl, {"live": "live migration", "gr": "graceful restart",
                                "restart": "plain restart"}[kind], len(rs),
                         sum(r["packets_lost"] for r in rs), max(r["longest_gap_ms"] for r in rs),
                         sum(len(r["resets"]) for r in rs),
                         sum(len(r.get("kept_by_gr", [])) for r in rs),
                         sum(x.get("routes_withdrawn", 0) for x in rst) if kind != "live" else 0,
                         sum(x.get("routes_reannounced", 0) for x in rst) if kind != "live" else 0,
                         _max([x.get("neighbours_back_s") for x in rst]) if kind != "live" else "-"))
    res.add_section("Live migration against graceful and plain restart", "Per implementation "
                    "and kind of move, over all its runs: packets lost and the longest gap of "
                    "the probes; adjacencies/sessions reset for real; re-established with the "
                    "helper keeping the routes (graceful restart); routes through the VR the "
                    "neighbours withdrew and re-announced (their kernel FIBs); seconds until "
                    "every neighbour was back in its state before the move (worst run).\n\n"
                    + markdown_table(("impl", "move", "runs", "lost", "longest gap ms", "resets",
                                      "kept by GR", "withdrawn", "re-announced",
                                      "neighbours back s"), rows))


def _phase_section(res: Result, records: list[dict[str, Any]]) -> None:
    rows = []
    for impl in IMPLS:
        ph: dict[str, list[float]] = {}
        lat: dict[str, list[float]] = {}
        for r in records:
            if r["impl"] != impl or r["kind"] != "live":
                continue
            for k, v in r["phases"].items():
                ph.setdefault(k, []).append(v)
            for k, v in (r.get("latency") or {}).items():
                if isinstance(v, dict) and v.get("count"):
                    lat.setdefault(k, []).append(v["max_ms"])
        rows += [(impl, k, round(statistics.median(v), 3), round(max(v), 3),
                  _max(lat.get(k, [])) or "-") for k, v in ph.items()]
    if rows:
        res.add_section("Phase timings and latency (live migration)", "Median and maximum "
                        "duration of each phase over the runs, and the worst one-way latency "
                        "of a forward-probe packet sent during it.\n\n" + markdown_table(
                            ("impl", "phase", "median s", "max s", "worst latency ms"), rows))


def _plots(res: Result, ctx: RunContext, records: list[dict[str, Any]]) -> None:
    try:
        series = {}
        for impl in IMPLS:
            for kind, label in (("live", "live"), ("gr", "graceful restart"), ("restart", "restart")):
                rs = [r for r in records if r["impl"] == impl and r["kind"] == kind]
                if rs:
                    series[f"{impl.upper()} {label}"] = ([r["run"] for r in rs],
                                                         [r["packets_lost"] for r in rs])
        plot(ctx.out_dir / "loss.png", series, "Packets lost per move", "run", "packets lost",
             kind="bar")
        res.plots.append(("Packets lost per move", "loss.png"))
        fr = {impl.upper(): ([r["run"] for r in records if r["impl"] == impl and r["kind"] == "live"],
                             [r["freeze_s"] for r in records if r["impl"] == impl and r["kind"] == "live"])
              for impl in IMPLS}
        plot(ctx.out_dir / "freeze.png", fr,
             f"Control-plane freeze per live migration (paper: {PAPER_FREEZE_S} s downtime)",
             "run", "seconds", kind="bar")
        res.plots.append(("Control-plane freeze", "freeze.png"))
        lat = {}
        for impl in IMPLS:
            rs = [r for r in records if r["impl"] == impl and r["kind"] == "live" and r.get("latency")]
            for key, label in (("steady", "steady"), ("move", "during the move")):
                lat[f"{impl.upper()} p99 {label}"] = (
                    [r["run"] for r in rs], [r["latency"].get(key, {}).get("p99_ms") for r in rs])
            lat[f"{impl.upper()} max during the move"] = (
                [r["run"] for r in rs], [r["latency"].get("move", {}).get("max_ms") for r in rs])
        plot(ctx.out_dir / "latency.png", lat, "One-way latency of the forward probe",
             "run", "ms")
        res.plots.append(("Latency, steady and during live migration", "latency.png"))
    except Exception as e:  # a plot must never lose the numbers
        log.warning("plots: %s", e)
