"""VROOM experiments: `routerlab run vroom-core-failure | vroom-power`, each with ``--quick``
(sizes in each docstring); vroom-maintenance is in `vroom.maintenance`, vroom-cloning in
`vroom.cloning`.

Every experiment runs its virtual routers on FRR (the heir of the prototype's Quagga) and
on BIRD and reports each beside the other (metric ids without a suffix are the total or the
worst over both; ``_frr`` / ``_bird`` ids are one implementation's). An implementation whose
build or move fails is reported as failed (its error in the report) while the other still
runs. Every network is built under a fresh prefix and torn down; results go through
`routerlab.report` (summary.json with the metric ids of issue 5, report.md with the paper's
numbers beside ours, raw.json, PNG plots).
"""
from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any

from routerlab.experiments import RunContext, experiment
from routerlab.report import Result, markdown_table, plot
from routerlab.topology import load_topology

from .measure import (IMPLS, aligned_bars, all_failed, errors_section, fmt, loadavg, per_impl,
                      probe_loss, probes, round_or_none, run_prefix, worst)
from .migrate import migrate
from .topo import TopoNetwork, sessions_reset

log = logging.getLogger(__name__)

PAPER_MAX_RETRANSMISSIONS = 1  # core failure: "at most one" retransmission of an LSA


# --------------------------------------------------------------------------- core failure

def core_summary(records: list[dict[str, Any]], impl: str | None = None) -> dict[str, Any]:
    """Core-failure runs (of one implementation, or all) summed up: adjacencies lost, the
    most retransmissions of one LSA to the migrating router, all its LSA retransmissions,
    probe packets lost, the worst freeze."""
    rs = [r for r in records if impl is None or r["impl"] == impl]
    per_nb = [v for r in rs for v in r["retransmissions"].values()]
    return {"runs": len(rs),
            "adjacencies_lost": sum(len(r["resets"]) for r in rs),
            "max_per_lsa": max([v["to_vr"].get("max_per_lsa", 0) for v in per_nb], default=0),
            "retransmissions_total": sum(v["to_vr"].get("retransmissions", 0) for v in per_nb),
            "by_vr_total": sum(v["from_vr"].get("retransmissions", 0) for v in per_nb),
            "packets_lost": sum(r["packets_lost"] for r in rs),
            "freeze_s_max": worst([r["freeze_s"] for r in rs])}


_TCPDUMP_TS = re.compile(r"^(\d\d):(\d\d):(\d\d(?:\.\d+)?) IP\b")
_OSPF_HDR = re.compile(r"^\s*(\d+\.\d+\.\d+\.\d+) > (\d+\.\d+\.\d+\.\d+): OSPFv2, ([\w-]+)")


def lsu_times(text: str) -> list[tuple[float, str]]:
    """(second of the day, sender) of each OSPF LS-Update in ``tcpdump -n -v`` text (its
    timestamps are local time of day)."""
    out: list[tuple[float, str]] = []
    ts: float | None = None
    for ln in text.splitlines():
        m = _TCPDUMP_TS.match(ln)
        if m:
            ts = int(m.group(1)) * 3600 + int(m.group(2)) * 60 + float(m.group(3))
            continue
        m = _OSPF_HDR.match(ln)
        if m and ts is not None:
            if m.group(3) == "LS-Update":
                out.append((ts, m.group(1)))
            ts = None
    return out


def first_lsu_after(text: str, src: str, t_wall: float) -> float | None:
    """Seconds from `t_wall` (epoch) until `src` first sent an LS-Update in `text` (None:
    it sent none after it)."""
    lt = time.localtime(t_wall)
    sod = lt.tm_hour * 3600 + lt.tm_min * 60 + lt.tm_sec + (t_wall % 1)
    later = [t - sod for t, s in lsu_times(text) if s == src and t >= sod]
    return round(min(later), 3) if later else None


def _core_impl(ctx: RunContext, impl: str, runs: int, records: list[dict[str, Any]],
               frac: tuple[float, float]) -> dict[str, Any]:
    """Build the network with the moving router on `impl` and run `runs` moves during a
    link failure; records appended to `records`; returns facts about the build."""
    if ctx.quick:
        topo = load_topology("ring")
        vr, spare, fail_a, fail_b = "r2", "S2", "r3", "r4"
        pairs = [("h1", "h2"), ("h2", "h1")]
    else:
        topo = load_topology("abilene")
        vr, spare, fail_a, fail_b = "KSCY", "KC2", "STTL", "SNVA"
        pairs = [("hNYCM", "hLOSA"), ("hLOSA", "hNYCM")]
    fail_if = topo.link_between(fail_a, fail_b).end(fail_a).intf
    nbs = [n for n in topo.neighbors(vr) if topo.node(n).role == "router"]
    f0, f1 = frac
    ctx.step(f"{impl.upper()}: building {topo.name} ({vr} on {impl.upper()})", f0)
    tn = TopoNetwork(topo, run_prefix("f"), impl={vr: impl}, spare={spare: vr})
    extra: dict[str, Any] = {"topology": topo.name, "vr": vr, "failed_link": f"{fail_a}-{fail_b}"}
    try:
        from .ospfwire import LsaCapture, retransmissions

        t_build = time.monotonic()
        tn.start(progress=lambda m: ctx.step(f"{impl.upper()}: {m}", None))
        tn.wait_converged(timeout=180)
        tn.wait_reachable(*pairs[0])
        extra["build_s"] = round(time.monotonic() - t_build, 1)
        home = tn.home[vr]
        tn.net.tunnel(home, spare)
        vr_rid = str(topo.node(vr).router_id)
        for i in range(runs):
            ctx.step(f"{impl.upper()} run {i + 1}/{runs}: migrating {vr}, failing "
                     f"{fail_a}-{fail_b}", f0 + (f1 - f0) * (i + 1) / (runs + 1))
            target = spare if tn.net.vrs[vr].pr.name == home else home  # type: ignore[union-attr]  # a running VR has its router
            caps = {}
            for nb in nbs:
                caps[nb] = LsaCapture(tn.net.vrs[nb].ns, topo.link_between(nb, vr).end(nb).intf)  # type: ignore[arg-type]  # running: ns set
                caps[nb].start()
            time.sleep(0.5)
            before = tn.neighbour_view(vr)
            failed_at: list[float] = []

            def fail_link(m: Any, failed_at: list[float] = failed_at) -> None:
                tn.net.vrs[fail_a].ns.ip("link", "set", fail_if, "down")  # type: ignore[union-attr]  # a running VR has its namespace
                failed_at += [time.monotonic(), time.time()]

            t0 = time.monotonic()
            try:
                with probes(tn, pairs) as ps:
                    time.sleep(1.0)
                    rep = migrate(tn.net, vr, target, hooks={"before-restore": fail_link})
                    time.sleep(topo.ospf.dead + 3.0)  # the failure detected and flooded, SPF run
            finally:
                sends = {nb: c.stop() for nb, c in caps.items()}
            after = tn.neighbour_view(vr)
            resets = sessions_reset(before, after, time.monotonic() - t0)
            rx: dict[str, dict[str, Any]] = {}
            for nb, ss in sends.items():
                per = retransmissions(ss)
                nb_ip = str(topo.link_between(nb, vr).end(nb).address.ip)  # type: ignore[union-attr]  # router links are addressed
                vr_ip = str(topo.link_between(nb, vr).end(vr).address.ip)  # type: ignore[union-attr]  # router links are addressed
                rx[nb] = {"to_vr": per.get(nb_ip, {}), "from_vr": per.get(vr_ip, {})}
                if failed_at:  # did the failure's flooding reach the VR while it was frozen?
                    rx[nb]["first_update_after_failure_s"] = first_lsu_after(
                        caps[nb].text, nb_ip, failed_at[1])
            firsts = [v.get("first_update_after_failure_s") for v in rx.values()]
            cp = rep.cp
            lost, gap, sent = probe_loss(ps)
            records.append({"impl": impl, "run": i + 1, "from": rep.source, "to": target,
                            "resets": resets, "retransmissions": rx,
                            "freeze_s": rep.freeze_s, "total_s": round(rep.total_s, 3),
                            "link_failed_after_s": round(failed_at[0] - t0, 3) if failed_at else None,
                            # the freeze still to come when the link failed (restore, unlock,
                            # sockets) and the first LS-Update a neighbour sent the VR after it
                            "freeze_left_at_failure_s": round(cp.restore_s + cp.unlock_s + cp.rejoin_s, 3)
                            if cp and failed_at else None,
                            "first_update_after_failure_s": min(
                                [x for x in firsts if x is not None], default=None),
                            "packets_lost": lost, "longest_gap_ms": round(gap, 1),
                            "packets_sent": sent, "phases": rep.phase_seconds(),
                            "loadavg": loadavg(), "before": before, "after": after,
                            "vr_router_id": vr_rid})
            log.info("core-failure %s run %d: resets %s, retransmissions %s, lost %d", impl,
                     i + 1, resets or "none", rx, lost)
            tn.net.vrs[fail_a].ns.ip("link", "set", fail_if, "up")  # type: ignore[union-attr]  # a running VR has its namespace
            if i + 1 < runs:
                tn.wait_converged(timeout=90)
                tn.wait_reachable(*pairs[0])
    finally:
        tn.stop()
    return extra


def core_runs(quick: bool, part_of_all: bool) -> int:
    """Moves per implementation: 1 with --quick (ring), 2 in `run all`, 3 alone (Abilene)."""
    return 1 if quick else 2 if part_of_all else 3


@experiment("vroom-core-failure",
            "migrate a core (OSPF-only) VR, on FRR and on BIRD, while a link elsewhere fails "
            "mid-migration; adjacencies must stay up; OSPF retransmissions counted on the wire",
            options={"runs": "migrations per implementation (3; run all 2; --quick 1)"})
def run_core_failure(ctx: RunContext) -> Result:
    """Abilene as in vroom-maintenance; the core router KSCY (OSPF only: DNVR, HSTN, IPLS)
    moves to a spare physical router KC2, once with KSCY on FRR and once on BIRD (each its
    own build; the other routers run FRR). During its control-plane freeze (the worst
    moment) the STTL-SNVA link fails (STTL's interface goes down), so new LSAs flood
    towards the frozen KSCY. tcpdump on each neighbour's link to KSCY counts LSA
    retransmissions (the same LSA instance sent twice by one router); probes hLOSA <-> hNYCM
    (1,000 packets/s each way) run throughout. Three runs per implementation (KSCY there
    and back, the link restored between runs; two in `run all`). --quick: one run per
    implementation on the 4-router ring instead (r2 moves, r3-r4 fails, probes h1 <-> h2)."""
    runs = int(ctx.options.get("runs", core_runs(ctx.quick, ctx.part_of_all)))
    res = Result("vroom-core-failure")
    records: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    builds: dict[str, Any] = {}
    for k, impl in enumerate(IMPLS):
        frac = (0.02 + 0.95 * k / len(IMPLS), 0.02 + 0.95 * (k + 1) / len(IMPLS))
        extra = per_impl(impl, errors, functools.partial(_core_impl, ctx, impl, runs, records, frac))
        if extra:
            builds[impl] = extra
    all_failed(errors)
    _core_metrics(res, records, errors)
    _core_report(res, ctx, records, builds, errors)
    return res


def _core_metrics(res: Result, records: list[dict[str, Any]], errors: dict[str, str]) -> None:
    s = core_summary(records)
    per = {impl: core_summary(records, impl) for impl in IMPLS}
    ok_all = not errors and all(p["runs"] for p in per.values())
    res.add_metric("adjacencies_lost", "adjacencies lost (all neighbours, all runs, FRR and "
                   "BIRD)", "", s["adjacencies_lost"], paper=0, goal="0",
                   met=ok_all and s["adjacencies_lost"] == 0)
    for impl, p in per.items():
        res.add_metric(f"adjacencies_lost_{impl}", f"adjacencies lost, {impl.upper()} core "
                       "router", "", p["adjacencies_lost"] if p["runs"] else None, paper=0,
                       goal="0", met=bool(p["runs"]) and p["adjacencies_lost"] == 0)
    res.add_metric("ospf_retransmissions_max_per_lsa", "OSPF retransmissions of one LSA to "
                   "the migrating router (max, FRR and BIRD)", "", s["max_per_lsa"],
                   paper=PAPER_MAX_RETRANSMISSIONS, goal="<= 1",
                   met=ok_all and s["max_per_lsa"] <= PAPER_MAX_RETRANSMISSIONS)
    for impl, p in per.items():
        res.add_metric(f"ospf_retransmissions_max_per_lsa_{impl}", "OSPF retransmissions of "
                       f"one LSA to the migrating router, {impl.upper()} (max)", "",
                       p["max_per_lsa"] if p["runs"] else None, paper=PAPER_MAX_RETRANSMISSIONS,
                       goal="<= 1", met=bool(p["runs"]) and p["max_per_lsa"] <= PAPER_MAX_RETRANSMISSIONS)
    res.add_metric("ospf_retransmissions_total", "LSA retransmissions to the migrating "
                   "router (all neighbours, all runs, FRR and BIRD)", "",
                   s["retransmissions_total"], goal="reported", met=ok_all)
    for impl, p in per.items():
        res.add_metric(f"ospf_retransmissions_total_{impl}", "LSA retransmissions to the "
                       f"migrating router, {impl.upper()} (all neighbours, all runs)", "",
                       p["retransmissions_total"] if p["runs"] else None, goal="reported",
                       met=bool(p["runs"]))
    res.add_metric("packets_lost_total", "probe packets lost (2 x 1,000 pps, FRR and BIRD)",
                   "packets", s["packets_lost"], goal="reported", met=ok_all)
    for impl, p in per.items():
        res.add_metric(f"packets_lost_total_{impl}", f"probe packets lost, {impl.upper()} "
                       "(2 x 1,000 pps)", "packets", p["packets_lost"] if p["runs"] else None,
                       goal="reported", met=bool(p["runs"]))


def _core_report(res: Result, ctx: RunContext, records: list[dict[str, Any]],
                 builds: dict[str, Any], errors: dict[str, str]) -> None:
    b0: dict[str, Any] = next(iter(builds.values()), {})
    vr = b0.get("vr", "r2" if ctx.quick else "KSCY")
    failed = b0.get("failed_link", "r3-r4" if ctx.quick else "STTL-SNVA")
    res.raw.update({"runs": records, "vr": vr, "failed_link": failed,
                    "topology": b0.get("topology"), "builds": builds, "errors": errors})
    rows: list[tuple[Any, ...]] = []
    for impl in IMPLS:
        p = core_summary(records, impl)
        if not p["runs"]:
            rows.append((impl, 0, "-", "-", "-", "-", "-", "-"))
            continue
        rows.append((impl, p["runs"], p["adjacencies_lost"], p["max_per_lsa"],
                     p["retransmissions_total"], p["by_vr_total"], p["packets_lost"],
                     fmt(round_or_none(p["freeze_s_max"]))))
    rows.append(("paper (Quagga)", "-", 0, f"<= {PAPER_MAX_RETRANSMISSIONS}", "-", "-", "-", "-"))
    res.add_section("By implementation", f"{vr} ({failed.split('-')[0]}'s interface to "
                    f"{failed.split('-')[1]} goes down during {vr}'s control-plane freeze), "
                    f"per implementation of {vr}; each its own build of {b0.get('topology', '-')} "
                    "(built and converged: " + ", ".join(f"{i.upper()} {b['build_s']} s"
                                                         for i, b in builds.items() if "build_s" in b)
                    + ").\n\n" + markdown_table(
                        ("impl", "runs", "adjacencies lost", "max retransmissions of one LSA",
                         f"LSA retransmissions to {vr}", f"by {vr}", "probe lost",
                         "freeze max s"), rows))
    res.add_section("Runs", f"{vr} moves while {failed.split('-')[0]}'s interface to "
                    f"{failed.split('-')[1]} goes down during the control-plane freeze (just "
                    "before the restore). *freeze left at failure*: the restore, unlock and "
                    "socket fixes still to come then; *first update after failure*: the "
                    f"earliest LS-Update any neighbour sent {vr} after the failure. An update "
                    "sent before the freeze ends meets a deaf router and must be retransmitted "
                    "(after the neighbour's retransmit interval); one sent later is simply "
                    "acknowledged. Retransmissions: LSA instances a router sent more than once "
                    "on its link with the migrating router (tcpdump).\n\n"
                    + markdown_table(
                        ("impl", "run", "move", "freeze s", "freeze left at failure s",
                         f"first update to {vr} after failure s", "adjacencies lost",
                         f"retransmissions to {vr} (per neighbour)", f"by {vr}", "probe lost",
                         "load avg"),
                        [(r["impl"], r["run"], f"{r['from']}->{r['to']}", r["freeze_s"],
                          fmt(r.get("freeze_left_at_failure_s")),
                          fmt(r.get("first_update_after_failure_s")), len(r["resets"]),
                          ", ".join(f"{nb}: {v['to_vr'].get('retransmissions', 0)}"
                                    for nb, v in r["retransmissions"].items()),
                          sum(v["from_vr"].get("retransmissions", 0)
                              for v in r["retransmissions"].values()),
                          r["packets_lost"], r["loadavg"]) for r in records]))
    errors_section(res, errors)
    try:
        series = aligned_bars({impl.upper(): {r["run"]: sum(v["to_vr"].get("retransmissions", 0)
                                                            for v in r["retransmissions"].values())
                                              for r in records if r["impl"] == impl}
                               for impl in IMPLS})
        if series:
            plot(ctx.out_dir / "retransmissions.png", series,
                 f"LSA retransmissions to {vr} per run (all neighbours)", "run",
                 "retransmissions", kind="bar")
            res.plots.append(("LSA retransmissions per run, per implementation",
                              "retransmissions.png"))
            plot(ctx.out_dir / "freeze.png",
                 aligned_bars({impl.upper(): {r["run"]: r["freeze_s"] for r in records
                                              if r["impl"] == impl} for impl in IMPLS}),
                 f"{vr}'s control-plane freeze per run", "run", "seconds", kind="bar")
            res.plots.append(("Control-plane freeze per run, per implementation", "freeze.png"))
    except Exception as e:  # a plot must never lose the numbers
        log.warning("plots: %s", e)


# --------------------------------------------------------------------------- power

# The ring mixes implementations: the two routers that move run one FRR and one BIRD, and
# each has one FRR and one BIRD neighbour; consolidated, each remaining physical router
# carries one of each.
POWER_IMPL = {"r1": "bird", "r2": "frr", "r3": "frr", "r4": "bird"}
POWER_IN = [("r2", "P1"), ("r4", "P3")]
POWER_OUT = [("r2", "P2"), ("r4", "P4")]


def power_summary(moves: list[dict[str, Any]], impl: str | None = None) -> dict[str, Any]:
    """Power moves (of VRs on one implementation, or all) summed up."""
    ms = [m for m in moves if impl is None or m["impl"] == impl]
    return {"moves": len(ms), "packets_lost": sum(m["packets_lost"] for m in ms),
            "resets": sum(len(m["resets"]) for m in ms),
            "longest_gap_ms": worst([m["longest_gap_ms"] for m in ms]),
            "freeze_s_max": round_or_none(worst([m["freeze_s"] for m in ms]))}


@experiment("vroom-power",
            "power savings: consolidate VRs (FRR and BIRD) onto fewer physical routers when "
            "traffic is low, spread them out again, under 1,000 pps probes",
            options={"cycles": "consolidate-and-spread cycles (2; --quick 1)"})
def run_power(ctx: RunContext) -> Result:
    """The 4-router OSPF ring, every router a VR on its own physical router P1-P4, FRR and
    BIRD mixed (r1 BIRD, r2 FRR, r3 FRR, r4 BIRD; hosts h1 at r1 and h2 at r3).
    Consolidation: r2 (FRR) moves onto P1 and r4 (BIRD) onto P3, so two physical routers
    carry the whole network, each with an FRR and a BIRD VR, and P2, P4 could be powered
    down; then both move back. Probes h1 <-> h2 (1,000 packets/s each way) run around each
    move on its own (1 s before it, 1.5 s after), so loss is counted per move and per
    implementation. Two cycles (8 moves); --quick: one (4 moves)."""
    cycles = int(ctx.options.get("cycles", 1 if ctx.quick else 2))
    res = Result("vroom-power")
    topo = load_topology("ring")
    ctx.step("building the ring: 4 VRs (FRR and BIRD) on 4 physical routers", 0.02)
    tn = TopoNetwork(topo, run_prefix("p"), impl=dict(POWER_IMPL), ports={"P1": 6, "P3": 6})
    steps_done: list[dict[str, Any]] = []
    moves: list[dict[str, Any]] = []
    pairs = [("h1", "h2"), ("h2", "h1")]
    error: str | None = None
    try:
        tn.start(progress=lambda m: ctx.step(m, None))
        tn.wait_converged(timeout=120)
        tn.wait_reachable("h1", "h2")
        for a, b in (("P1", "P2"), ("P3", "P4")):
            tn.net.tunnel(a, b)
        for c in range(cycles):
            for label, plan in (("consolidate", POWER_IN), ("spread", POWER_OUT)):
                ctx.step(f"cycle {c + 1}/{cycles}: {label}",
                         0.05 + 0.9 * len(moves) / (2 * len(POWER_IN) * cycles))
                for v, pr in plan:
                    moves.append(_power_move(tn, pairs, c + 1, label, v, pr))
                active = sorted({vr.pr.name for vr in tn.net.vrs.values() if vr.pr})
                steps_done.append({"cycle": c + 1, "step": label,
                                   "physical_routers_in_use": active})
                log.info("power %s: routers in use %s", label, active)
                tn.wait_converged(timeout=60)
    except Exception as e:
        if not moves:
            raise
        log.exception("power: stopped after %d moves", len(moves))
        error = f"{type(e).__name__}: {e}"[:500]
    finally:
        tn.stop()
    _power_report(res, ctx, steps_done, moves, cycles, error)
    return res


def _power_move(tn: TopoNetwork, pairs: list[tuple[str, str]], cycle: int, label: str,
                v: str, pr: str) -> dict[str, Any]:
    """One VR moved under its own probes."""
    before = tn.neighbour_view(v)
    t0 = time.monotonic()
    with probes(tn, pairs) as ps:
        time.sleep(1.0)
        rep = migrate(tn.net, v, pr)
        time.sleep(1.5)
    elapsed = time.monotonic() - t0
    resets = sessions_reset(before, tn.neighbour_view(v), elapsed)
    lost, gap, sent = probe_loss(ps)
    log.info("power %s: %s (%s) %s -> %s, freeze %.3f s, lost %d", label, v, POWER_IMPL[v],
             rep.source, pr, rep.freeze_s or -1, lost)
    return {"cycle": cycle, "step": label, "vr": v, "impl": tn.net.vrs[v].impl,
            "from": rep.source, "to": pr, "freeze_s": rep.freeze_s,
            "total_s": round(rep.total_s, 3), "packets_lost": lost,
            "longest_gap_ms": round(gap, 1), "packets_sent": sent, "resets": resets,
            "phases": rep.phase_seconds(), "loadavg": loadavg()}


def _power_report(res: Result, ctx: RunContext, steps_done: list[dict[str, Any]],
                  moves: list[dict[str, Any]], cycles: int, error: str | None) -> None:
    s = power_summary(moves)
    per = {impl: power_summary(moves, impl) for impl in IMPLS}
    complete = error is None and len(moves) == 2 * len(POWER_IN) * cycles
    fewest = min((len(st["physical_routers_in_use"]) for st in steps_done), default=None)
    res.add_metric("packets_lost_total", "packets lost over all consolidations/spreads (FRR "
                   "and BIRD VRs)", "packets", s["packets_lost"], paper=0, goal="0",
                   met=complete and s["packets_lost"] == 0)
    for impl, p in per.items():
        res.add_metric(f"packets_lost_total_{impl}", f"packets lost while moving the "
                       f"{impl.upper()} VR", "packets", p["packets_lost"] if p["moves"] else None,
                       paper=0, goal="0", met=bool(p["moves"]) and p["packets_lost"] == 0)
    res.add_metric("routers_in_use_min", "physical routers carrying the network when "
                   "consolidated (of 4)", "", fewest, goal="2", met=fewest == 2)
    res.add_metric("sessions_reset", "adjacencies reset by the moves (FRR and BIRD VRs)", "",
                   s["resets"], paper=0, goal="0", met=complete and s["resets"] == 0)
    for impl, p in per.items():
        res.add_metric(f"sessions_reset_{impl}", f"adjacencies reset by moving the "
                       f"{impl.upper()} VR", "", p["resets"] if p["moves"] else None, paper=0,
                       goal="0", met=bool(p["moves"]) and p["resets"] == 0)
    for impl, p in per.items():
        res.add_metric(f"freeze_s_max_{impl}", f"control-plane freeze, {impl.upper()} VR (max)",
                       "s", p["freeze_s_max"], goal="reported", met=p["freeze_s_max"] is not None)
    res.raw.update({"steps": steps_done, "moves": moves, "impl": POWER_IMPL, "error": error})
    res.add_section("By implementation", "Every move of the VRs on one implementation (r2 "
                    "on FRR, r4 on BIRD; the paper's prototype ran Quagga): probe packets lost "
                    "(h1 <-> h2, 1,000 packets/s each way, around each move), adjacencies "
                    "reset, the worst control-plane freeze.\n\n" + markdown_table(
                        ("impl", "VR", "moves", "lost", "longest gap ms", "resets", "freeze max s"),
                        [(impl, ", ".join(v for v, i in POWER_IMPL.items()
                                          if i == impl and v in dict(POWER_IN)),
                          p["moves"], p["packets_lost"], fmt(p["longest_gap_ms"]), p["resets"],
                          fmt(p["freeze_s_max"])) for impl, p in per.items()]
                        + [("paper (Quagga)", "-", "-", 0, "-", 0, "-")]))
    res.add_section("Moves", "Physical routers in use after each step: "
                    + "; ".join(f"cycle {st['cycle']} {st['step']}: "
                                f"{', '.join(st['physical_routers_in_use'])}" for st in steps_done)
                    + ".\n\n" + markdown_table(
                        ("cycle", "step", "VR", "impl", "move", "freeze s", "lost",
                         "longest gap ms", "resets", "load avg"),
                        [(m["cycle"], m["step"], m["vr"], m["impl"], f"{m['from']}->{m['to']}",
                          fmt(round_or_none(m["freeze_s"])), m["packets_lost"], m["longest_gap_ms"],
                          ", ".join(m["resets"]) or "none", m["loadavg"]) for m in moves]))
    if error:
        errors_section(res, {"run": error})
    try:
        series = aligned_bars({impl.upper(): {k: m["freeze_s"] for k, m in enumerate(
            [m for m in moves if m["impl"] == impl], 1)} for impl in IMPLS})
        if series:
            plot(ctx.out_dir / "freeze.png", series, "Control-plane freeze per move of each VR "
                 "(r2 FRR, r4 BIRD)", "move", "seconds", kind="bar")
            res.plots.append(("Control-plane freeze per move, per implementation", "freeze.png"))
    except Exception as e:  # a plot must never lose the numbers
        log.warning("plots: %s", e)
