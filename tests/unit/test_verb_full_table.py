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
