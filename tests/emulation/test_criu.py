"""CRIU on this machine: the CRIU that scripts/get-criu.sh installed really migrates sockets.

Each test uses its own namespace (rlcriu-<random>) and removes it, and its processes, even
when it fails. Fast: about a second per dump/restore."""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from routerlab import criu

pytestmark = pytest.mark.emulation

CRIU = criu.find_criu()
needs_criu = pytest.mark.skipif(
    os.geteuid() != 0 or CRIU is None,
    reason="needs root" if os.geteuid() != 0 else
    "no CRIU installed: run `sudo scripts/get-criu.sh` (VROOM live migration needs it)")


@needs_criu
def test_socket_selftest_passes() -> None:
    res = criu.socket_selftest(CRIU)
    assert res.ok, f"{res.detail} ({res.hint})"


@needs_criu
def test_features_detected_then_cached(tmp_path: Path) -> None:
    cache = tmp_path / "criu-features.json"
    feats = criu.features(refresh=True, criu_path=CRIU, cache_path=cache)
    assert list(feats) == list(criu.FEATURE_NAMES)
    assert feats["check"].ok, feats["check"].detail
    assert feats["socket_dump"].ok, feats["socket_dump"].detail
    for f in feats.values():  # every answer explains itself; every "no" says what to do
        assert f.detail
        assert f.ok or f.hint
    t0 = time.monotonic()
    assert criu.features(criu_path=CRIU, cache_path=cache) == feats
    assert time.monotonic() - t0 < 1.0  # cached: no probe ran


@needs_criu
def test_netlink_probe_reports_a_clear_result() -> None:
    """Stock CRIU 4.2 refuses >32 netlink groups; a patched one passes. Either way: clear."""
    f = criu.run_probes(CRIU, ("netlink_groups_gt32",))["netlink_groups_gt32"]
    if not f.ok:
        assert "32 groups" in f.detail or "restore" in f.detail, f.detail
        assert "FRR" in f.hint


@pytest.fixture
def probe_ns():
    ns = criu.ProbeNetns()
    try:
        yield ns
    finally:
        ns.close()
        assert not ns.path.exists()


@needs_criu
def test_dump_leaves_network_lock_that_clear_removes(probe_ns: criu.ProbeNetns,
                                                     tmp_path: Path) -> None:
    """A dump locks the source namespace; a restore elsewhere never unlocks it."""
    srv = criu.socket_in_netns(probe_ns.path, socket.AF_INET, socket.SOCK_STREAM)
    try:
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        srv.settimeout(10)
        client = probe_ns.popen(criu._ECHO_CLIENT, str(srv.getsockname()[1]))
        conn, _ = srv.accept()
        try:
            run = criu.Criu(CRIU).dump(client.pid, tmp_path / "img")
        finally:
            conn.close()
        assert f"net[{probe_ns.inode}]:{criu.NETNS_KEY}" in run.args
        client.wait(timeout=10)  # CRIU killed the dumped task
        nsenter = ["nsenter", f"--net={probe_ns.path}", "--"]
        tables = subprocess.run(nsenter + ["nft", "list", "tables"], capture_output=True,
                                text=True, check=True).stdout
        assert "CRIU" in tables
        removed = criu.clear_network_lock(probe_ns.path)
        assert removed and all("CRIU" in r for r in removed)
        tables = subprocess.run(nsenter + ["nft", "list", "tables"], capture_output=True,
                                text=True, check=True).stdout
        assert "CRIU" not in tables
    finally:
        srv.close()


@needs_criu
def test_dump_failure_raises_criu_error(tmp_path: Path) -> None:
    nopid = 2 ** 22 + 1  # above the largest possible pid_max: never a task
    with pytest.raises(criu.CriuError, match=f"no process {nopid}"):
        criu.Criu(CRIU).dump(nopid, tmp_path / "img")
    # CRIU's own refusal carries its log: a unix socket whose peer is outside the dumped
    # tree (we hold it) is refused without --ext-unix-sk.
    mine, theirs = socket.socketpair()
    sleeper = subprocess.Popen(["sleep", "60"], pass_fds=(theirs.fileno(),),
                               stdin=subprocess.DEVNULL, start_new_session=True)
    theirs.close()
    try:
        with pytest.raises(criu.CriuError) as ei:
            criu.Criu(CRIU).dump(sleeper.pid, tmp_path / "img", leave_running=True, timeout=60)
        assert ei.value.returncode and ei.value.log_path == tmp_path / "img" / "dump.log"
        assert ei.value.log_tail and "unix" in str(ei.value).lower()
    finally:
        sleeper.kill()
        sleeper.wait()
        mine.close()
