"""``routerlab bench te``: B4's TE against the exact LP, SWAN and shortest-path routing.

For each instance (the B4-like WAN, SNDlib germany50 and ta2, Topology Zoo TataNld and the
next largest Zoo graphs by nodes and by links, VtlWavenet2011 and Uninett2010), every
algorithm runs on the same tunnels (4 per flow group) and is judged against the exact
max-min LP: runtime, throughput ratio and fairness. A scaling run on the B4-like topology
grows the number of flow groups to 40,000; the LP runs there only while its predicted
runtime stays under :data:`LP_BUDGET_S`.

"b4" in the headline comparisons with the LP is tunnel-group generation without
quantization, like the LP it is compared with; ``b4_like_runtime_s`` is the deployed
configuration (4 tunnels, quantum 1/4: generation + quantization + re-evaluation), which is
what B4's production runtime measured. Quantized results are reported beside.
"""
from __future__ import annotations

import logging
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from collections.abc import Callable

from routerlab.experiments import RunContext, experiment
from routerlab.report import Result, machine_description, markdown_table, plot, save_result

from b4.te import generate
from b4.te.allocation import Allocation
from b4.te.instance import Instance, build_instance
from b4.te.metrics import compare
from b4.te.problem import Problem
from b4.te.solve import solve
from b4.te.tunnel_lp import LPTimeout

log = logging.getLogger(__name__)

LP_BUDGET_S = 60.0           # the scaling run skips the LP where it is predicted to take longer
LP_BUDGET_QUICK_S = 5.0      # ... and in quick mode (CI) much earlier
PAPER_SPEEDUP = 25.0
PAPER_THROUGHPUT_RATIO = 0.99
GOAL_FAIRNESS = 0.95
PAPER_RUNTIME_S = 0.3
PAPER_GAIN_OVER_SHORTEST = 0.14
SCALING_GOAL_FGS = 40_000

#: Algorithm variants, in table order: (label, algorithm, quantum).
VARIANTS = (("b4", "b4", 0.0), ("b4 q=1/4", "b4", 0.25), ("lp", "lp", 0.0), ("swan", "swan", 0.0),
            ("shortest", "shortest", 0.0))


@dataclass
class Case:
    """One benchmark instance: a label and how to build its problem."""

    label: str
    build: Callable[[], Problem]


def cases(quick: bool) -> list[Case]:
    """The instances: full size, or smaller ones for CI (``quick``)."""
    pairs = 300 if quick else 1500
    out = [Case("B4-like", lambda: generate.b4_like(2700)),
           Case("SNDlib germany50", lambda: generate.from_sndlib("germany50"))]
    if not quick:
        out.append(Case("SNDlib ta2", lambda: generate.from_sndlib("ta2")))
    out.append(Case("Zoo TataNld", lambda: generate.from_zoo("TataNld", pairs=pairs)))
    if not quick:
        out.append(Case("Zoo VtlWavenet2011", lambda: generate.from_zoo("VtlWavenet2011", pairs=pairs)))
    out.append(Case("Zoo Uninett2010", lambda: generate.from_zoo("Uninett2010", pairs=pairs)))
    return out


def scaling_sizes(quick: bool) -> list[int]:
    return [300, 1000, 3000] if quick else [500, 1000, 2700, 5000, 10_000, 20_000, 40_000]


def _timed(inst: Instance, algorithm: str, quantum: float, reps: int) -> tuple[Allocation, float, float]:
    """Run ``reps`` times: the last allocation, and the medians of the algorithm's own wall-clock
    runtime (tunnels excluded) and of the process CPU time around it."""
    runs, cpu = [], []
    for _ in range(reps):
        c0 = time.process_time()
        runs.append(solve(inst, algorithm, quantum=quantum))
        cpu.append(time.process_time() - c0)
    return runs[-1], statistics.median(a.runtime_s for a in runs), statistics.median(cpu)


def run_instance(case: Case, reps: int = 5) -> dict[str, Any]:
    """Every variant on one instance, compared with the LP."""
    t0 = time.perf_counter()
    problem = case.build()
    inst = build_instance(problem, 4)
    log.info("%s: %d sites, %d edges, %d flow groups, %d tunnels (tunnels %.2f s)", case.label,
             len(problem.sites), len(problem.edges), len(problem.flow_groups), len(inst.tunnels),
             inst.tunnels_runtime_s)
    allocs: dict[str, tuple[Allocation, float, float]] = {}
    for label, algorithm, quantum in VARIANTS:
        n = 1 if algorithm in ("lp", "swan") else reps
        log.info("%s: running %s", case.label, label)
        allocs[label] = _timed(inst, algorithm, quantum, n)
    lp = allocs["lp"][0]
    rows = []
    for label, (alloc, runtime, cpu) in allocs.items():
        d = compare(alloc, lp)
        d.update(variant=label, runtime_s=runtime, cpu_s=cpu,
                 speedup=allocs["lp"][1] / runtime if runtime > 0 else math.inf)
        rows.append(d)
    b4 = rows[0]
    log.info("%s: b4 %.4f s, lp %.2f s (%.0fx), throughput %.3f of lp, fairness %.3f", case.label,
             b4["runtime_s"], allocs["lp"][1], b4["speedup"], b4["throughput_ratio"], b4["fairness"])
    return {"instance": case.label, "name": problem.name, "description": problem.description,
            "sites": len(problem.sites), "edges": len(problem.edges), "flow_groups": len(problem.flow_groups),
            "applications": sum(len(g.apps) for g in problem.flow_groups), "tunnels": len(inst.tunnels),
            "total_demand": problem.total_demand, "tunnels_runtime_s": inst.tunnels_runtime_s,
            "lp_solves": lp.details.get("lp_solves"), "wall_s": time.perf_counter() - t0, "results": rows}


def run_scaling(sizes: list[int], reps: int = 3, lp_budget_s: float = LP_BUDGET_S) -> list[dict[str, Any]]:
    """b4 (and the LP while affordable) on the B4-like topology with more and more flow groups."""
    out: list[dict[str, Any]] = []
    lp_points: list[tuple[int, float]] = []
    lp_stopped = False
    for n in sizes:
        inst = build_instance(generate.b4_like(n), 4)
        row: dict[str, Any] = {"flow_groups": n}
        _, row["b4_s"], row["b4_cpu_s"] = _timed(inst, "b4", 0.0, reps)
        _, row["b4_q_s"], row["b4_q_cpu_s"] = _timed(inst, "b4", 0.25, reps)
        predicted = _predict(lp_points, n)
        row.update(lp_predicted_s=predicted, lp_s=None, lp_timed_out=False)
        if predicted <= lp_budget_s and not lp_stopped:
            try:
                lp = solve(inst, "lp", time_limit_s=lp_budget_s)
                row["lp_s"] = lp.runtime_s
                lp_points.append((n, lp.runtime_s))
            except LPTimeout:
                # Predictions are rough (the LP's runtime jumps with its number of rounds):
                # stop at the budget and run no larger size.
                row["lp_timed_out"] = lp_stopped = True
        log.info("scaling %d flow groups: b4 %.3f s, b4 q=1/4 %.3f s, lp %s", n, row["b4_s"], row["b4_q_s"],
                 f"{row['lp_s']:.2f} s" if row["lp_s"] is not None else
                 f"stopped at {lp_budget_s:.0f} s" if row["lp_timed_out"] else "skipped")
        out.append(row)
    return out


def _predict(points: list[tuple[int, float]], n: int) -> float:
    """LP runtime at n flow groups, extrapolated as a power law through the last two points."""
    if not points:
        return 0.0
    if len(points) == 1:
        (n0, t0), exp = points[0], 1.5
    else:
        (n1, t1), (n0, t0) = points[-2], points[-1]
        exp = min(max(math.log(max(t0, 1e-6) / max(t1, 1e-6)) / math.log(n0 / n1), 1.0), 3.0)
    return t0 * (n / n0) ** exp


def run_te_bench(out_dir: Path, quick: bool = False, *, instances: list[Case] | None = None,
                 sizes: list[int] | None = None) -> Result:
    """Run the TE benchmark, write tables, plots, raw.json and summary.json into ``out_dir``.

    ``instances`` and ``sizes`` replace the standard instances and scaling sizes (tests use
    tiny ones); one instance must be labelled "B4-like".
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    result = Result("te" + (" (quick)" if quick else ""))
    # Other work on the machine slows wall-clock times; the report says how busy it was.
    load_start = _load()
    try:
        todo = cases(quick) if instances is None else instances
        sizes = scaling_sizes(quick) if sizes is None else sizes
        results = []
        for k, case in enumerate(todo, 1):
            log.info("instance %d/%d: %s", k, len(todo), case.label)
            results.append(run_instance(case))
        log.info("scaling run (%s flow groups)", ", ".join(map(str, sizes)))
        scaling = run_scaling(sizes, lp_budget_s=LP_BUDGET_QUICK_S if quick else LP_BUDGET_S)
    except Exception as e:  # the report still says what failed
        log.exception("TE benchmark failed")
        result.error = f"{type(e).__name__}: {e}"
        result.ok = False
        save_result(result, out_dir)
        return result
    _summarize(result, results, scaling, quick, out_dir, load_start)
    result.raw = {"machine": machine_description(), "quick": quick, "instances": results, "scaling": scaling,
                  "wall_s": time.perf_counter() - t0, "load_average": {"start": load_start, "end": _load()}}
    save_result(result, out_dir)
    log.info("TE benchmark done in %.0f s: %s", time.perf_counter() - t0, out_dir)
    return result


def _variant(inst: dict[str, Any], label: str) -> dict[str, Any]:
    return next(r for r in inst["results"] if r["variant"] == label)


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _summarize(result: Result, instances: list[dict[str, Any]], scaling: list[dict[str, Any]], quick: bool,
               out_dir: Path, load_start: list[float]) -> None:
    b4 = [_variant(i, "b4") for i in instances]
    b4q = [_variant(i, "b4 q=1/4") for i in instances]
    b4_like = next(i for i in instances if i["instance"] == "B4-like")
    speedup = min(r["speedup"] for r in b4)
    thr = min(r["throughput_ratio"] for r in b4)
    fair = min(r["fairness"] for r in b4)
    rt = _variant(b4_like, "b4 q=1/4")["runtime_s"]
    result.add_metric("speedup_vs_lp_min", "b4 speedup over the LP, worst instance", "x", speedup,
                      PAPER_SPEEDUP, f">= {PAPER_SPEEDUP:g}x on every instance", speedup >= PAPER_SPEEDUP)
    result.add_metric("throughput_ratio_vs_lp_min", "b4 throughput / LP throughput, worst instance", "", thr,
                      PAPER_THROUGHPUT_RATIO, f">= {PAPER_THROUGHPUT_RATIO}", thr >= PAPER_THROUGHPUT_RATIO)
    result.add_metric("fairness_vs_lp_min", "b4 fairness against the LP, worst instance", "", fair, None,
                      f">= {GOAL_FAIRNESS} (paper: 'similar fairness')", fair >= GOAL_FAIRNESS)
    result.add_metric("b4_like_runtime_s", "b4 runtime on the B4-like instance (4 tunnels, quantum 1/4)", "s", rt,
                      PAPER_RUNTIME_S, f"<= {PAPER_RUNTIME_S} s", rt <= PAPER_RUNTIME_S)
    biggest = max(r["flow_groups"] for r in scaling)
    if quick:  # CI runs smaller sizes; the full run is the one judged on 40,000
        result.add_metric("scaling_max_flow_groups", "largest instance in the scaling run", "flow groups", biggest,
                          None, "report (quick mode; the full run goes to 40,000)")
    else:
        result.add_metric("scaling_max_flow_groups", "largest instance in the scaling run", "flow groups", biggest,
                          None, f">= {SCALING_GOAL_FGS:,}", biggest >= SCALING_GOAL_FGS)
    # Reported beside, without goals of their own.
    result.add_metric("b4_like_runtime_unquantized_s", "b4 runtime on the B4-like instance, unquantized", "s",
                      _variant(b4_like, "b4")["runtime_s"], None, "report")
    result.add_metric("quantized_speedup_vs_lp_min", "b4 q=1/4 speedup over the LP, worst instance", "x",
                      min(r["speedup"] for r in b4q), None, "report")
    result.add_metric("quantized_throughput_ratio_vs_lp_min", "b4 q=1/4 throughput / LP, worst instance", "",
                      min(r["throughput_ratio"] for r in b4q), None, "report")
    result.add_metric("quantized_fairness_vs_lp_min", "b4 q=1/4 fairness against the LP, worst instance", "",
                      min(r["fairness"] for r in b4q), None, "report")
    gains = [_variant(i, "b4")["throughput"] / _variant(i, "shortest")["throughput"] - 1 for i in instances]
    result.add_metric("gain_over_shortest_mean", "b4 throughput gain over shortest-path routing, mean", "",
                      sum(gains) / len(gains), PAPER_GAIN_OVER_SHORTEST, "report")

    result.add_section("Setup", _setup_text(instances, quick, load_start))
    result.add_section("Results per instance", results_table(instances))
    result.add_section("Scaling with the number of flow groups", scaling_table(scaling))
    _plots(result, instances, scaling, out_dir)


def _setup_text(instances: list[dict[str, Any]], quick: bool, load_start: list[float]) -> str:
    rows = [(i["instance"], i["sites"], i["edges"], i["flow_groups"], i["applications"], i["tunnels"],
             i["tunnels_runtime_s"], i["lp_solves"]) for i in instances]
    return "\n".join([
        f"Machine: {machine_description()}; load average at the start {load_start}, at the end {_load()} "
        "(wall-clock times grow when other work shares the 2 cores; CPU times are in raw.json)."
        + (" Quick mode (smaller instances)." if quick else ""),
        "",
        "All algorithms run on the same tunnels (the 4 cheapest loop-free paths per flow group by km cost) and",
        "are weighted by the flow groups' bandwidth functions. Runtimes are each algorithm's own time (median of",
        "5 runs for b4 and shortest, one run for lp and swan), excluding tunnel computation (B4 caches tunnels).",
        "Topologies come from topohub; links get 100 units per direction on Zoo and SNDlib graphs, and all",
        "demands are scaled so that cheapest-path routing loads the edges it uses to 1.5x capacity on average.",
        "Zoo graphs carry gravity demands (mass = degree) on a seeded sample of site pairs; SNDlib graphs their",
        "own demand matrices. Each flow group has 1-3 applications with weights from {0.5, 1, 2, 4, 10}.",
        "Fairness: geometric mean over flow groups of min(a/b, b/a) against the LP's rates.",
        "'b4' is tunnel-group generation (unquantized, like the LP); 'b4 q=1/4' adds quantization to 1/4 and",
        "re-evaluation on the quantized splits (B4's deployed configuration, used for the B4-like runtime goal).",
        "",
        "Reading b4 against the LP: the LP is exact weighted max-min on the same tunnels (an independent per flow",
        "group LP check finds no flow group that could grow without shrinking a poorer one), and 'b4' matches an",
        "independent re-implementation of the published tunnel-group generation to 1e-11. b4's shortfall in",
        "throughput and fairness comes from that greedy algorithm itself: a flow group stays on its cheapest tunnel",
        "until an edge of it fills and its allocation there is never revisited, so it can fill edges that other",
        "flow groups have no way around (tests/unit/test_te_baselines.py: three flow groups, b4 25 vs LP 30).",
        "Lower or higher load does not close the gap (checked at 0.75x-2.5x load on the B4-like topology with",
        "1,000 flow groups and on Uninett2010 with 300 site pairs: b4 throughput 0.92-0.98 of the LP's).",
        "",
        markdown_table(("instance", "sites", "edges", "flow groups", "apps", "tunnels", "tunnels s", "LP solves"),
                       rows),
    ])


def results_table(instances: list[dict[str, Any]]) -> str:
    """The per-instance table: runtime, speedup, throughput ratio and fairness of each variant."""
    rows = []
    for i in instances:
        for r in i["results"]:
            rows.append((i["instance"], r["variant"], r["runtime_s"], r["speedup"], r["throughput_ratio"],
                         r["fairness"], f"{r['satisfied']}/{i['flow_groups']}"))
    return markdown_table(("instance", "algorithm", "runtime s", "lp runtime / runtime", "throughput / lp",
                           "fairness vs lp", "satisfied"), rows)


def scaling_table(scaling: list[dict[str, Any]]) -> str:
    def lp_cell(r: dict[str, Any]) -> Any:
        if r["lp_s"] is not None:
            return r["lp_s"]
        return "not finished in the budget" if r["lp_timed_out"] else "skipped"

    rows = [(r["flow_groups"], r["b4_s"], r["b4_q_s"], lp_cell(r),
             r["lp_s"] / r["b4_s"] if r["lp_s"] else None) for r in scaling]
    return ("B4-like topology (16 sites, 46 edges), flow groups spread over all 240 site pairs. The LP runs with a "
            f"time limit ({LP_BUDGET_S:.0f} s; {LP_BUDGET_QUICK_S:.0f} s in quick mode) while its runtime, "
            "extrapolated from the previous sizes, fits in it; after its first miss no larger size is tried.\n\n"
            + markdown_table(("flow groups", "b4 s", "b4 q=1/4 s", "lp s", "lp / b4"), rows))


def _plots(result: Result, instances: list[dict[str, Any]], scaling: list[dict[str, Any]], out_dir: Path) -> None:
    xs = [r["flow_groups"] for r in scaling]
    lp = [(r["flow_groups"], r["lp_s"]) for r in scaling if r["lp_s"] is not None]
    series = {"b4": (xs, [r["b4_s"] for r in scaling]), "b4 q=1/4": (xs, [r["b4_q_s"] for r in scaling])}
    if lp:
        series["lp"] = ([x for x, _ in lp], [y for _, y in lp])
    plot(out_dir / "scaling.png", series, "TE runtime vs flow groups (B4-like topology)", "flow groups",
         "runtime (s)", logx=True, logy=True)
    result.plots.append(("Runtime against the number of flow groups", "scaling.png"))
    names = [_short(i["instance"]) for i in instances]
    labels = [v[0] for v in VARIANTS]
    plot(out_dir / "runtime.png", {lb: (names, [_variant(i, lb)["runtime_s"] for i in instances]) for lb in labels},
         "Runtime per instance", "instance", "runtime (s)", kind="bar", logy=True)
    result.plots.append(("Runtime per instance and algorithm", "runtime.png"))
    others = [lb for lb in labels if lb != "lp"]
    plot(out_dir / "throughput.png",
         {lb: (names, [_variant(i, lb)["throughput_ratio"] for i in instances]) for lb in others},
         "Throughput relative to the exact LP", "instance", "throughput / lp", kind="bar")
    result.plots.append(("Throughput as a ratio of the LP's", "throughput.png"))
    plot(out_dir / "fairness.png", {lb: (names, [_variant(i, lb)["fairness"] for i in instances]) for lb in others},
         "Fairness against the exact LP", "instance", "geometric mean of min(a/b, b/a)", kind="bar")
    result.plots.append(("Fairness against the LP", "fairness.png"))


def _short(label: str) -> str:
    """A plot label short enough for six bars side by side."""
    name = label.replace("SNDlib ", "").replace("Zoo ", "")
    return name.replace("VtlWavenet", "Vtl").replace("Uninett", "Uninett ")


@experiment("te", "B4 tunnel-group generation against the exact LP, SWAN and shortest paths",
            kind="bench")
def bench_te(ctx: RunContext) -> Result:
    """`routerlab bench te [--quick] [--out DIR]`."""
    ctx.step("TE benchmark: instances, then the scaling run")
    return run_te_bench(ctx.out_dir, quick=ctx.quick)


def main(argv: list[str] | None = None) -> int:
    """Standalone: ``python -m b4.te_bench [--quick] [--out DIR]`` (prints the tables)."""
    import argparse

    from rich.console import Console
    from rich.logging import RichHandler
    from rich.markdown import Markdown

    parser = argparse.ArgumentParser(prog="python -m b4.te_bench")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("results/te"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    res = run_te_bench(args.out, quick=args.quick)
    con = Console()
    for heading, body in res.sections[1:]:
        con.print(Markdown(f"## {heading}\n\n{body}"))
    from routerlab.report import metrics_table

    con.print(Markdown("## Headline\n\n" + metrics_table(res.metrics)))
    con.print(f"wrote {args.out}")
    return 0 if res.summary()["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
