"""The registry finds the processes of all its namespaces in one pass over /proc (real /proc,
this process's own network namespace), with the answers `ip netns pids` would give."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from routerlab import registry


def _same_netns_by_readlink() -> set[int]:
    """Pids sharing this process's network namespace, found independently ("net:[INODE]")."""
    mine = os.readlink("/proc/self/ns/net")
    out = set()
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                if os.readlink(f"/proc/{name}/ns/net") == mine:
                    out.add(int(name))
            except OSError:
                continue
    return out


@pytest.fixture
def child():
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield p
    p.kill()
    p.wait()


def test_one_pass_maps_this_netns_to_this_process_and_its_child(child):
    key = registry.netns_key("/proc/self/ns/net")
    assert key is not None
    by_ns = registry.pids_by_netns()
    assert {os.getpid(), child.pid} <= set(by_ns[key])
    # every pid is listed under exactly one namespace
    every = [p for pids in by_ns.values() for p in pids]
    assert len(every) == len(set(every))
    # the same set the namespace's "net:[inode]" links give, up to processes that came or
    # went between the two passes
    ours, theirs = set(by_ns[key]), _same_netns_by_readlink()
    for pid in ours ^ theirs:
        assert not os.path.exists(f"/proc/{pid}"), pid


def test_named_namespaces_resolve_through_their_files(tmp_path, monkeypatch, child):
    # a named namespace is a file bound to the namespace; a link to /proc/self/ns/net
    # resolves to the same nsfs identity
    (tmp_path / "mine").symlink_to(f"/proc/{os.getpid()}/ns/net")
    (tmp_path / "empty").write_text("")  # a mount point whose namespace is gone
    monkeypatch.setattr(registry, "NETNS_DIR", tmp_path)
    got = registry.netns_pids_of(["mine", "empty", "absent"])
    assert set(got) == {"mine", "empty"}
    assert {os.getpid(), child.pid} <= set(got["mine"])
    assert got["empty"] == []
    assert registry.netns_pids("absent") == []
    assert os.getpid() in registry.netns_pids("mine")


def test_kill_pids_terminates_stopped_and_term_ignoring_processes():
    plain = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; "
                                 "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(1, flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    assert stubborn.stdout.readline().strip() == b"1"  # its SIGTERM handler is in place
    stopped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(stopped.pid, 19)  # SIGSTOP: kill_pids sends SIGCONT before SIGTERM
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        killed = registry.kill_pids([plain.pid, stubborn.pid, stopped.pid, gone.pid], timeout=0.5)
        assert sorted(killed) == sorted([plain.pid, stubborn.pid, stopped.pid])
        for p in (plain, stubborn, stopped):
            assert not os.path.exists(f"/proc/{p.pid}") or p.poll() is not None
    finally:
        for p in (plain, stubborn, stopped):
            if p.poll() is None:
                p.kill()
            p.wait()
