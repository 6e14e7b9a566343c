"""`routerlab cli`, `clean`, `doctor` and bad input, driven as a user would."""
from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pexpect
import pytest

from routerlab import registry
from routerlab.expect import wait_for
from tests.emulation.conftest import REPO, ROUTERLAB

BAD = REPO / "tests" / "data" / "topologies"
PROMPT = "routerlab> "


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _bridges() -> set[str]:
    return set(subprocess.run(["ovs-vsctl", "list-br"], capture_output=True, text=True).stdout.split())


def _env(state_dir: Path) -> dict[str, str]:
    # A private registry directory: this test's `clean` sees only what its own runs recorded,
    # so it cannot disturb anything else running on the machine.
    env = dict(os.environ, ROUTERLAB_STATE_DIR=str(state_dir), COLUMNS="200", TERM="dumb")
    return env


def _spawn_lab(uid: str, state_dir: Path) -> pexpect.spawn:
    child = pexpect.spawn(ROUTERLAB[0], ROUTERLAB[1:] + ["cli", "ring", "--prefix", f"tc{uid}-"],
                          env=_env(state_dir), cwd=str(REPO), encoding="utf-8", timeout=120,
                          dimensions=(50, 200))
    child.expect("converged in", timeout=150)
    child.expect_exact(PROMPT)
    return child


def test_lab_commands_then_exit_leaves_nothing(uid, tmp_path):
    child = _spawn_lab(uid, tmp_path)
    try:
        for cmd, expect in [("routes r1", "routes of r1"),
                            ("neighbors r1", "Full"),
                            ("sessions r1", "r1: no BGP sessions"),
                            ("daemon r1 show ip ospf neighbor", "Full"),
                            ("routes r9", "unknown router 'r9'"),
                            ("probe h1 h2 2", r"lost 0, reordered"),
                            ("help", "probe")]:
            child.sendline(cmd)
            child.expect(expect, timeout=60)
            child.expect_exact(PROMPT, timeout=60)
        child.sendline("exit")
        child.expect(pexpect.EOF, timeout=120)
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)
            subprocess.run(ROUTERLAB + ["clean"], env=_env(tmp_path), cwd=str(REPO), capture_output=True)
    child.close()
    assert child.exitstatus == 0
    assert not {n for n in _netns() if n.startswith(f"tc{uid}-")}
    live = subprocess.run(ROUTERLAB + ["clean", "--dry-run"], env=_env(tmp_path), cwd=str(REPO),
                          capture_output=True, text=True).stdout
    assert "0 routerlab resources" in live


def test_clean_after_sigkilled_cli_removes_only_ours(uid, tmp_path):
    # Foreign resources this test makes itself: they must survive `routerlab clean`.
    foreign_ns, foreign_br = f"tforeign{uid}", f"tfb{uid}"
    subprocess.run(["ip", "netns", "add", foreign_ns], check=True)
    subprocess.run(["ovs-vsctl", "add-br", foreign_br, "--", "set", "bridge", foreign_br,
                    "datapath_type=netdev"], check=True)
    foreign_proc = subprocess.Popen(["sleep", "600"])
    child = None
    try:
        child = _spawn_lab(uid, tmp_path)
        ours = {n for n in _netns() if n.startswith(f"tc{uid}-")}
        assert len(ours) == 6
        sessions = list((tmp_path / "sessions").glob("*.jsonl"))
        recorded = [json.loads(line) for s in sessions for line in s.read_text().splitlines()]
        pids = [r["pid"] for r in recorded if r.get("kind") == "process"]
        assert pids, "the run recorded no processes"
        os.kill(child.pid, signal.SIGKILL)
        child.expect(pexpect.EOF, timeout=30)
        # the daemons outlive their parent: that is what clean is for
        assert any(_alive(p) for p in pids)

        r = subprocess.run(ROUTERLAB + ["clean"], env=_env(tmp_path), cwd=str(REPO),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert not {n for n in _netns() if n.startswith(f"tc{uid}-")}
        wait_for(lambda: not [p for p in pids if _alive(p)], 10, what="recorded processes to exit")
        assert not list((tmp_path / "sessions").glob("*.jsonl"))
        # ... and the foreign ones are untouched
        assert foreign_ns in _netns()
        assert foreign_br in _bridges()
        assert foreign_proc.poll() is None
        r2 = subprocess.run(ROUTERLAB + ["clean"], env=_env(tmp_path), cwd=str(REPO),
                            capture_output=True, text=True, timeout=60)
        assert "nothing to remove" in r2.stdout
    finally:
        if child is not None and child.isalive():
            child.kill(signal.SIGKILL)
        foreign_proc.kill()
        foreign_proc.wait()
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", foreign_br])
        subprocess.run(["ip", "netns", "del", foreign_ns])
        subprocess.run(ROUTERLAB + ["clean"], env=_env(tmp_path), cwd=str(REPO), capture_output=True)


def test_plain_clean_finds_a_killed_run_kept_in_another_state_dir(uid, tmp_path):
    """A run with a private state directory that dies outright (SIGKILL, a lost machine
    session) is cleaned by a `routerlab clean` without that directory: its session leaves a
    pointer in the home state directory. (`--stale`, so that nothing alive is touched.)"""
    child = None
    try:
        child = _spawn_lab(uid, tmp_path)
        assert len({n for n in _netns() if n.startswith(f"tc{uid}-")}) == 6
        [session] = (tmp_path / "sessions").glob("*.jsonl")
        pointer = registry.HOME_SESSIONS_DIR / f"{session.stem}{registry.POINTER_SUFFIX}"
        assert pointer.read_text().strip() == str(session.resolve())
        os.kill(child.pid, signal.SIGKILL)
        child.expect(pexpect.EOF, timeout=30)
        home = {k: v for k, v in os.environ.items() if k != "ROUTERLAB_STATE_DIR"}
        r = subprocess.run(ROUTERLAB + ["clean", "--stale"], env=home, cwd=str(REPO),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert not {n for n in _netns() if n.startswith(f"tc{uid}-")}
        assert not session.exists() and not pointer.exists()
    finally:
        if child is not None and child.isalive():
            child.kill(signal.SIGKILL)
        subprocess.run(ROUTERLAB + ["clean"], env=_env(tmp_path), cwd=str(REPO), capture_output=True)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.parametrize("fixture,problem", [
    ("bad-unknown-node.yaml", "unknown node"),
    ("bad-duplicate-name.yaml", "duplicate"),
    ("bad-negative-bw.yaml", "bw"),
    ("bad-yaml-syntax.yaml", ""),
])
def test_bad_topology_refused_with_one_line_and_nothing_created(fixture, problem, tmp_path):
    before_ns, before_br = _netns(), _bridges()
    path = BAD / fixture
    r = subprocess.run(ROUTERLAB + ["cli", str(path)], env=_env(tmp_path), cwd=str(REPO),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert str(path) in lines[0] or fixture in lines[0]
    assert ":" in lines[0].split(fixture, 1)[1]  # FILE:LINE
    assert problem in lines[0]
    # (other tests may run concurrently: compare only names this run could have used)
    assert {n for n in _netns() - before_ns if n.startswith("rl-")} == set()
    assert {b for b in _bridges() - before_br if b.startswith("rl-")} == set()
    assert not list((tmp_path / "sessions").glob("*.jsonl")) if (tmp_path / "sessions").exists() else True


# Checks that may fail on this machine kind because the feature is really absent
# (see PLATFORM.md): the VM kernel has no netem qdisc and no soft-dirty tracking, and stock
# CRIU refuses netlink sockets in groups above 32. On a distro kernel they may be ok.
ABSENT_HERE = {"netem qdisc", "CRIU: soft_dirty", "CRIU: netlink_groups_gt32"}


def _doctor_statuses(out: str) -> dict[str, str]:
    """component -> status from the doctor's table (continuation rows have no component)."""
    statuses = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) >= 4 and cells[1] and cells[2] in ("ok", "missing", "warn"):
            statuses[cells[1]] = cells[2]
    return statuses


def test_doctor_reports_this_machine():
    r = subprocess.run(ROUTERLAB + ["doctor"], cwd=str(REPO), capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, COLUMNS="250"))
    out = r.stdout
    assert r.returncode == 0, out + r.stderr  # no required component missing
    statuses = _doctor_statuses(out)
    assert "OVS userspace datapath" in out and "netdev" in out
    assert "netem qdisc" in out
    if statuses.get("netem qdisc") == "missing":
        assert "kernel has no netem" in out and "ignored" in out
    for impl in ("frr", "bird", "gobgp", "exabgp"):
        assert impl in out
    assert "CRIU" in out
    # Everything this machine has is reported ok: only the genuinely absent features may be
    # missing. MPLS in particular works here (B4's tunnels use it).
    for component in ("Open vSwitch", "OVS userspace datapath", "MPLS in OVS", "Mininet (Python)",
                      "ZooKeeper", "CRIU: check", "CRIU: socket_dump"):
        assert statuses.get(component) == "ok", (component, statuses)
    assert statuses.get("MPLS in OVS") == "ok" and "traced" in out
    assert any(c.startswith("frr") for c in statuses) and any(c.startswith("bird") for c in statuses)
    wrong = {c: s for c, s in statuses.items() if s != "ok" and c not in ABSENT_HERE}
    assert not wrong, f"reported not ok although present here: {wrong}\n{out}"
