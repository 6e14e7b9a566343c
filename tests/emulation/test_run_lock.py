"""A second `routerlab run` while one is running is refused; Ctrl-C cleans up."""
from __future__ import annotations

import os
import signal
import subprocess

from routerlab.expect import wait_for
from tests.emulation.conftest import REPO, ROUTERLAB


def test_second_run_refused_and_interrupt_cleans_up(tmp_path):
    env = dict(os.environ, ROUTERLAB_STATE_DIR=str(tmp_path / "state"))
    first = subprocess.Popen(ROUTERLAB + ["run", "ospf-ring", "--out", str(tmp_path / "a")],
                             cwd=str(REPO), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    try:
        # wait until the first run holds the lock and has created its namespaces
        wait_for(lambda: list((tmp_path / "state" / "sessions").glob("*.jsonl"))
                   if (tmp_path / "state" / "sessions").exists() else None, 60, what="the first run to start")
        second = subprocess.run(ROUTERLAB + ["run", "ospf-ring", "--out", str(tmp_path / "b")],
                                cwd=str(REPO), env=env, capture_output=True, text=True, timeout=60)
        assert second.returncode == 2
        assert "another routerlab run is in progress" in second.stderr
        assert len([ln for ln in second.stderr.splitlines() if ln.strip()]) == 1
        assert not (tmp_path / "b").exists()
        # Ctrl-C on the first: it stops, cleans up what it made, and says so
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
        assert first.returncode != 0
        left = subprocess.run(ROUTERLAB + ["clean", "--dry-run"], cwd=str(REPO), env=env,
                              capture_output=True, text=True).stdout
        assert "0 routerlab resources" in left, left
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        subprocess.run(ROUTERLAB + ["clean"], cwd=str(REPO), env=env, capture_output=True)
