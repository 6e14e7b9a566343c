"""verb-full-table end to end on a small generated table (~60 s): real ExaBGP neighbours,
one FRR baseline, the bug-tolerant router with FRR, BIRD and GoBGP replicas; the churn
trace in every voting mode reaches the real FIB, a crashed replica is resynchronised by
replay of the stored table and masked, and the issue's metric ids are reported."""
from __future__ import annotations

import json
import os

import pytest

from routerlab.experiments import RunContext
from routerlab.report import save_result
from verb.full_table import verb_full_table

pytestmark = [pytest.mark.emulation,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")]


def test_verb_full_table_small(tmp_path):
    ctx = RunContext(out_dir=tmp_path, quick=True,
                     options={"prefixes": 1500, "duration": 3.0, "burst_size": 50,
                              "faults": ["crash"], "fault_modes": ["continuous-majority"],
                              "baselines": ["frr"]})
    res = verb_full_table(ctx)
    save_result(res, tmp_path)
    metrics = {m["id"]: m for m in json.loads((tmp_path / "summary.json").read_text())["metrics"]}
    assert {"full_table_load_s", "cpu_ratio_full", "added_fib_delay_ms_median_full",
            "masked_fraction_full", "recovery_s_max_full"} <= set(metrics)
    runs = res.raw["runs"]
    for name in ("single-frr", "master-slave", "continuous-majority", "wait-for-consensus"):
        assert runs[name]["missed"] == 0, name  # every churn event reached the real FIB
        assert runs[name]["fib_ms"]["n"] == runs[name]["events"] > 300
    assert runs["continuous-majority"]["load_s"] > 0 and metrics["cpu_ratio_full"]["ours"] > 0
    (fault,) = res.raw["faults"]
    assert fault["fault"] == "crash" and not fault["reached_fib"] and not fault["reached_neighbour"]
    assert metrics["masked_fraction_full"]["ours"] == 1.0
    assert 0 < metrics["recovery_s_max_full"]["ours"] < 60
