"""`routerlab run all --quick` end to end, and one experiment's failure not losing the others."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time

import pytest

from routerlab.experiments import EXPERIMENTS, load_all
from tests.emulation.conftest import REPO, ROUTERLAB

SUMMARY_KEYS = {"id", "label", "unit", "ours", "paper", "goal", "met"}


def _check_experiment_dir(d, name):
    summary = json.loads((d / "summary.json").read_text())
    assert summary["experiment"].split(" ")[0] == name
    assert isinstance(summary["ok"], bool)
    for m in summary["metrics"]:
        assert set(m) == SUMMARY_KEYS, m
        assert m["ours"] is None or isinstance(m["ours"], (int, float))
        assert m["paper"] is None or isinstance(m["paper"], (int, float))
    json.loads((d / "raw.json").read_text())
    report = (d / "report.md").read_text()
    assert report.startswith(f"# {summary['experiment']}")
    for line in report.splitlines():  # every plot the report shows exists as a PNG
        if line.startswith("!["):
            png = d / line.split("](", 1)[1].rstrip(")")
            assert png.suffix == ".png" and png.stat().st_size > 1000, png
    return summary


@pytest.mark.timeout(1500)
def test_run_all_quick_writes_a_complete_report(tmp_path):
    load_all()
    headline = [e.name for e in EXPERIMENTS.values() if e.headline]
    out = tmp_path / "all"
    env = dict(os.environ, ROUTERLAB_STATE_DIR=str(tmp_path / "state"), COLUMNS="160")
    r = subprocess.run(ROUTERLAB + ["run", "all", "--quick", "--out", str(out)], cwd=str(REPO),
                       env=env, capture_output=True, text=True, timeout=1400)
    combined = json.loads((out / "summary.json").read_text())
    # (registration order depends on which test imported a system first: compare as sets)
    ran = [s["experiment"].split(" ")[0] for s in combined["experiments"]]
    assert sorted(ran) == sorted(headline)
    report = (out / "report.md").read_text()
    for name in headline:
        _check_experiment_dir(out / name, name)
        assert f"## {name}" in report
    assert r.returncode in (0, 1), r.stderr[-2000:]
    assert "paper" in r.stdout and "ours" in r.stdout  # the printed summary table
    left = subprocess.run(ROUTERLAB + ["clean", "--dry-run"], cwd=str(REPO), env=env,
                          capture_output=True, text=True).stdout
    assert "0 routerlab resources" in left, left


def _recorded_pids(state_dir, names):
    pids = []
    for f in (state_dir / "sessions").glob("*.jsonl") if (state_dir / "sessions").exists() else []:
        for line in f.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if rec.get("kind") == "process" and any(n in rec.get("name", "") for n in names):
                pids.append(rec["pid"])
    return pids


def test_killed_daemon_fails_only_its_experiment(tmp_path):
    """ospf-ring's ospfd is SIGKILLed mid-run: ospf-ring is reported failed, the next
    experiment still completes, and nothing is left to clean."""
    out = tmp_path / "two"
    state = tmp_path / "state"
    env = dict(os.environ, ROUTERLAB_STATE_DIR=str(state), COLUMNS="160")
    proc = subprocess.Popen(ROUTERLAB + ["run", "ospf-ring,b4-example", "--quick", "--out", str(out)],
                            cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    killed: list[int] = []

    def killer() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            pids = _recorded_pids(state, ("ospfd",))
            if pids:
                time.sleep(1.0)  # let the ring start converging: the kill lands mid-run
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
                return
            time.sleep(0.1)

    t = threading.Thread(target=killer)
    t.start()
    try:
        stdout, stderr = proc.communicate(timeout=900)
    finally:
        t.join()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed, "never saw ospf-ring's ospfd"
    ring = json.loads((out / "ospf-ring" / "summary.json").read_text())
    assert ring["ok"] is False
    assert "died" in (out / "ospf-ring" / "report.md").read_text()
    b4 = _check_experiment_dir(out / "b4-example", "b4-example")
    assert b4["metrics"], "the second experiment did not complete"
    assert proc.returncode == 1
    r = subprocess.run(ROUTERLAB + ["clean"], cwd=str(REPO), env=env, capture_output=True, text=True)
    assert "nothing to remove" in r.stdout, r.stdout
