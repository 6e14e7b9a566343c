"""`routerlab cli vroom` and `routerlab cli verb`: the ready-made labs, driven by a command
script as a user would type it; afterwards nothing of the lab is left."""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

from tests.emulation.conftest import REPO, ROUTERLAB


def _run_lab(topology: str, prefix: str, script: str, tmp_path: Path) -> str:
    cmds = tmp_path / "cmds"
    cmds.write_text(script)
    env = dict(os.environ, COLUMNS="200", ROUTERLAB_STATE_DIR=str(tmp_path / "state"))
    r = subprocess.run(ROUTERLAB + ["cli", topology, "--prefix", prefix, "--script", str(cmds)],
                       cwd=REPO, capture_output=True, text=True, timeout=420, env=env)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    # nothing left: namespaces, bridges, and `routerlab clean` finds nothing of this run
    stem = prefix.rstrip("-")
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert stem not in netns
    bridges = subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout
    assert stem not in bridges
    clean = subprocess.run(ROUTERLAB + ["clean"], cwd=REPO, capture_output=True, text=True,
                           timeout=120, env=env)
    assert clean.returncode == 0 and "nothing to remove" in (clean.stdout + clean.stderr).lower(), \
        clean.stdout + clean.stderr
    return out


VROOM_SCRIPT = """\
help migrate
where
prs
neighbors CHIN
migrate NYCM NY2
where NYCM
sessions ext
migrate NOPE NY2
migrate KSCY NY2
migrate KSCY KC2
migrate CHIN P8
prs
"""


def test_vroom_lab(tmp_path):
    prefix = f"tv{uuid.uuid4().hex[:3]}"
    out = _run_lab("vroom", prefix, VROOM_SCRIPT, tmp_path)
    assert "migrate VR PR: live-migrate virtual router VR" in out          # help
    assert "11 virtual routers on 13 physical routers" in out
    for phase in ("prepare-target", "control-plane-migration", "data-plane-cloning",
                  "link-migration", "cleanup"):
        assert phase in out
    assert "control-plane freeze" in out
    assert f"{prefix}-NYCM-NY2" in out                                      # where: moved
    assert "Established" in out                                            # ext's session
    assert "unknown virtual router 'NOPE'" in out                          # bad input: one line
    assert "NY2 is full" in out
    assert "KSCY: P6 -> KC2" in out                                        # core VR (BIRD) moved too
    assert "CHIN: P2 -> P8" in out                                         # an FRR VR moves as well
    assert out.count("error:") == 2, out


VERB_SCRIPT = """\
help verb
verb start r continuous-majority
verb status r
verb fault r bogus-route 1 prefix=10.101.0.0/25
verb fault r bogus-route 7 prefix=10.101.0.0/25
verb clear r
verb mode r wait-for-consensus
verb stop r
sessions r
verb status r
verb fly r
"""


def test_verb_lab(tmp_path):
    prefix = f"tb{uuid.uuid4().hex[:3]}-"
    out = _run_lab("verb", prefix, VERB_SCRIPT, tmp_path)
    assert "verb fault R FAULT REPLICA" in out                              # help verb
    assert "bug-tolerant router up (continuous-majority; replicas frr, bird, gobgp); " \
           "every neighbour Established" in out
    for impl in ("frr", "bird", "gobgp"):
        assert f"│ {impl}" in out                                            # replicas table
    assert "bogus-route injected on r1" in out
    assert "unknown replica '7' (replicas: r0 (frr), r1 (bird), r2 (gobgp))" in out
    assert "1 fault(s) cleared" in out
    assert "voting mode wait-for-consensus" in out
    assert "back to its own frr; every neighbour Established" in out
    assert "r is not a bug-tolerant router (verb start r)" in out          # status after stop
    assert "error: usage: verb start R" in out                              # unknown subcommand
    assert out.count("error:") == 3, out


def test_verb_lab_ending_with_a_bug_tolerant_router_running_leaves_nothing(tmp_path):
    # the user leaves the lab without `verb stop`: the lab's teardown stops the replicas
    prefix = f"tb{uuid.uuid4().hex[:3]}-"
    out = _run_lab("verb", prefix, "verb start r\n", tmp_path)
    assert "bug-tolerant router up" in out
