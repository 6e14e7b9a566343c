"""The TE benchmark on tiny instances: files, summary format and metric ids."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from b4.te import generate
from b4.te_bench import Case, _predict, run_te_bench

REQUIRED = {"speedup_vs_lp_min", "throughput_ratio_vs_lp_min", "fairness_vs_lp_min", "b4_like_runtime_s",
            "exact_b4_like_runtime_s", "b4r_throughput_ratio_min", "b4r_fairness_min", "b4r_speedup_vs_exact_min",
            "b4r_b4_like_runtime_s", "exact_speedup_vs_lp_min", "b4_speedup_vs_old_lp_min"}


def test_tiny_bench_writes_the_summary(tmp_path: Path) -> None:
    cases = [Case("B4-like", lambda: generate.b4_like(240)),
             Case("Zoo Abilene", lambda: generate.from_zoo("Abilene", pairs=30))]
    res = run_te_bench(tmp_path, instances=cases, sizes=[240, 480])
    assert res.error is None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["experiment"] == "te"
    ids = {m["id"] for m in summary["metrics"]}
    assert REQUIRED <= ids
    for m in summary["metrics"]:
        assert set(m) == {"id", "label", "unit", "ours", "paper", "goal", "met"}
        if m["id"] in REQUIRED:
            assert isinstance(m["ours"], float) and m["ours"] > 0
    # ok is exactly "every metric met".
    assert summary["ok"] == all(m["met"] for m in summary["metrics"])
    assert res.summary() == summary
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert [i["instance"] for i in raw["instances"]] == ["B4-like", "Zoo Abilene"]
    assert {r["variant"] for r in raw["instances"][0]["results"]} == {
        "b4", "b4 q=1/4", "b4r", "b4r q=1/4", "exact", "lp", "swan", "shortest"}
    by = {r["variant"]: r for r in raw["instances"][0]["results"]}
    assert by["exact"]["throughput_ratio"] == 1.0 and by["exact"]["fairness"] == 1.0
    # The old LP is the same allocation; every variant timed the same way (wall and CPU).
    assert by["lp"]["fairness"] >= 0.999 and abs(by["lp"]["throughput_ratio"] - 1) <= 1e-6
    assert all(r["cpu_s"] > 0 and r["runtime_s"] > 0 for r in by.values())
    assert by["b4"]["speedup"] == pytest.approx(by["exact"]["cpu_s"] / by["b4"]["cpu_s"])
    metrics = {m["id"]: m for m in summary["metrics"]}
    assert metrics["throughput_ratio_vs_lp_min"]["met"] and metrics["fairness_vs_lp_min"]["met"]  # report-only
    assert [s["flow_groups"] for s in raw["scaling"]] == [240, 480]
    for name in ("report.md", "scaling.png", "runtime.png", "throughput.png", "fairness.png", "frontier.png"):
        assert (tmp_path / name).stat().st_size > 0
    report = (tmp_path / "report.md").read_text()
    assert "Results per instance" in report and "| B4-like | b4 |" in report and "| B4-like | b4r |" in report


def test_lp_runtime_prediction() -> None:
    assert _predict([], 1000) == 0.0
    assert _predict([(1000, 2.0)], 4000) == 2.0 * 4 ** 1.5
    # Quadratic growth seen between the last two sizes is extrapolated as such.
    assert abs(_predict([(1000, 1.0), (2000, 4.0)], 4000) - 16.0) < 1e-9
