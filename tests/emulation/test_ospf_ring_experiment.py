"""`routerlab run ospf-ring` end to end: summary.json, report and plot."""
from __future__ import annotations

import json
import os
import subprocess

from tests.emulation.conftest import REPO, ROUTERLAB


def test_run_ospf_ring_writes_summary_report_and_plot(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, ROUTERLAB_STATE_DIR=str(tmp_path / "state"))
    r = subprocess.run(ROUTERLAB + ["run", "ospf-ring", "--quick", "--out", str(out)], cwd=str(REPO),
                       env=env, capture_output=True, text=True, timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["experiment"] == "ospf-ring"
    ids = {m["id"]: m for m in summary["metrics"]}
    assert set(ids) == {"convergence_s", "failover_gap_ms", "packets_lost"}
    for m in ids.values():
        assert set(m) == {"id", "label", "unit", "ours", "paper", "goal", "met"}
    assert r.returncode == (0 if summary["ok"] else 1), r.stderr
    assert 0 < ids["convergence_s"]["ours"] < 90
    # the failed link carried the probe: the gap is real but short (carrier loss, not dead timer)
    assert ids["failover_gap_ms"]["ours"] < 4000
    report = (out / "report.md").read_text()
    assert "| metric | ours | paper | goal | met |" in report
    assert (out / "probe.png").stat().st_size > 1000
    json.loads((out / "raw.json").read_text())
    # nothing left behind in this run's registry
    left = subprocess.run(ROUTERLAB + ["clean", "--dry-run"], cwd=str(REPO), env=env,
                          capture_output=True, text=True).stdout
    assert "0 routerlab resources" in left
