"""verb-full-table's pure parts: the two-neighbour trace over a generated full table and
the sizes of each form."""
from __future__ import annotations

from pathlib import Path

from routerlab import fulltable
from routerlab.experiments import RunContext
from verb import full_table
from verb import trace as tracemod


def test_trace_from_table_has_one_best_path_per_prefix():
    t = fulltable.generate_table(5_000, seed=3)
    ev = fulltable.churn_trace(t, rate=100, duration=2, bursts=1, burst_size=50, seed=4)
    churn = list(dict.fromkeys(e.index for e in ev))
    tr = tracemod.from_table(t, churn)
    assert tr.prefixes == t.prefixes() and len(set(tr.prefixes)) == 5_000
    assert set(tr.churn_set) == {t.prefixes()[i] for i in churn}
    assert set(tr.stable) | set(tr.churn_set) == set(tr.prefixes)
    assert not set(tr.stable) & set(tr.churn_set)
    for p in tr.prefixes:
        a, b = tr.paths["n1"][p], tr.paths["n2"][p]
        assert abs(len(a) - len(b)) == 1  # never a tie between the neighbours
        assert a[-1] == b[-1]             # the same origin AS either way
    # churn prefixes prefer n1 (its withdrawal moves the best path to n2); stable ones go
    # either way
    assert all(tr.best(p) == "n1" and tr.best(p, withdrawn=True) == "n2" for p in tr.churn_set)
    assert {tr.best(p) for p in tr.stable} == {"n1", "n2"}


def test_sizes_of_each_form():
    full = full_table.sizes(RunContext(out_dir=Path("/tmp")))
    quick = full_table.sizes(RunContext(out_dir=Path("/tmp"), quick=True))
    run_all = full_table.sizes(RunContext(out_dir=Path("/tmp"), part_of_all=True))
    assert full["prefixes"] == 1_000_000 and full["duration"] >= 60
    assert quick["prefixes"] < run_all["prefixes"] < full["prefixes"]
    over = full_table.sizes(RunContext(out_dir=Path("/tmp"), options={"prefixes": "100000"}))
    assert over["prefixes"] == 100_000 and over["window"] == 50 and over["hold"] == 30
    assert full["window"] == 500 and run_all["hold"] == quick["hold"] == 3
    assert full["router_hold"] == 90 and run_all["router_hold"] == quick["router_hold"] == 9
    assert full_table.sizes(RunContext(out_dir=Path("/tmp"), options={"window": 9}))["window"] == 9


def _run(cpu: float, median_ms: float, hv: float = 0.0) -> dict:
    return {"load_s": 10.0, "at_rest_s": 10.0, "load_cpu_s": cpu, "load_hv_cpu_s": hv,
            "pss_mb": 100.0, "fib_ms": {"n": 3, "median": median_ms, "p90": median_ms, "max": median_ms},
            "fib_raw": [median_ms] * 3, "missed": 0, "events": 3, "wall_s": 1.0,
            "churn_cpu_s": 0.0, "churn_hv_cpu_s": 0.0, "load_recoveries": 0, "churn_recoveries": 0}


def test_fault_metrics_are_left_out_when_the_fault_runs_were_skipped(tmp_path: Path) -> None:
    """`--set no_faults=true` measures load, churn and CPU only: the run passes on those."""
    runs = {"single-frr": _run(1.0, 50.0), "continuous-majority": _run(5.0, 20.0, hv=2.0)}
    cfg = {"prefixes": 1000, "duration": 1.0, "bursts": 1, "burst_size": 1, "window": 5.0,
           "hold": 3, "router_hold": 9}
    skipped = full_table._report(RunContext(out_dir=tmp_path, options={"no_faults": True}),
                                 runs, [], cfg, 0.1, 3)
    ids = {m.id for m in skipped.metrics}
    assert not ids & {"masked_fraction_full", "recovery_s_max_full"}
    assert skipped.summary()["ok"] and "cpu_ratio_full" in ids
    # fault runs asked for but none done: the fault metrics are there, and not met
    missing = full_table._report(RunContext(out_dir=tmp_path), runs, [], cfg, 0.1, 3)
    assert {"masked_fraction_full", "recovery_s_max_full"} <= {m.id for m in missing.metrics}
    assert not missing.summary()["ok"]
