"""`routerlab run b4-example --quick` end to end: summary.json with the issue's metric ids,
report with the paper's numbers, plots, nothing left behind."""
from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest

from tests.emulation.conftest import REPO, ROUTERLAB

pytestmark = pytest.mark.emulation


def test_run_b4_example_quick(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, ROUTERLAB_STATE_DIR=str(tmp_path / "state"), ROUTERLAB_B4_PREFIX=f"t4{uuid.uuid4().hex[:3]}")
    r = subprocess.run(ROUTERLAB + ["run", "b4-example", "--quick", "--out", str(out)], cwd=str(REPO), env=env,
                       capture_output=True, text=True, timeout=300)
    summary = json.loads((out / "summary.json").read_text())
    ids = {m["id"]: m for m in summary["metrics"]}
    assert set(ids) == {"fg_throughput_error_max", "tunnel_split_error_max", "te_off_packets_lost"}, r.stderr[-2000:]
    assert ids["fg_throughput_error_max"]["ours"] <= 0.10
    assert ids["tunnel_split_error_max"]["ours"] <= 0.10
    assert ids["te_off_packets_lost"]["paper"] == 0
    report = (out / "report.md").read_text()
    assert "| metric | ours | paper | goal | met |" in report and "RECONSTRUCTED" in report
    assert (out / "throughput.png").stat().st_size > 1000 and (out / "splits.png").stat().st_size > 1000
    raw = json.loads((out / "raw.json").read_text())
    assert raw["allocation"]["flow_groups"]["FG1"]["rate"] == 10
    left = subprocess.run(ROUTERLAB + ["clean", "--dry-run"], cwd=str(REPO), env=env,
                          capture_output=True, text=True).stdout
    assert "0 routerlab resources" in left
