"""Shared fixtures for emulation tests: root, OVS, unique names, networks torn down always."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from routerlab.cli import unwind_on_signals
from routerlab.traffic import attribute_loss

REPO = Path(__file__).resolve().parents[2]
ROUTERLAB = [sys.executable, "-m", "routerlab.cli"]


def pytest_configure(config):
    # a run that is terminated (CI's time limit, a kill) unwinds as after Ctrl-C: pytest then
    # tears down every fixture under way, and their namespaces, bridges and daemons go too
    unwind_on_signals()


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/emulation/" in str(item.fspath):
            item.add_marker(pytest.mark.emulation)
            # One retry: every userspace-OVS bridge on the machine shares ovs-vswitchd's main
            # thread, so another process reconfiguring OVS can stall the datapath for up to a
            # second and fail a timing-sensitive check; a real defect fails both attempts.
            item.add_marker(pytest.mark.flaky(reruns=1, reruns_delay=5))


@pytest.fixture(scope="session", autouse=True)
def _needs_root_and_ovs():
    if os.geteuid() != 0:
        pytest.skip("emulation tests need root (namespaces, veths, OVS)")
    if shutil.which("ovs-vsctl") is None or subprocess.run(
            ["ovs-vsctl", "-t", "3", "show"], capture_output=True).returncode != 0:
        pytest.skip("Open vSwitch is not running: run scripts/setup.sh")


@pytest.fixture
def uid() -> str:
    """A short unique tag for resource names of one test."""
    return uuid.uuid4().hex[:4]


def assert_hitless(r, refs, window=None) -> None:
    """No outage the event caused: every gap with losses is one the unaffected reference probe
    saw too (on this shared machine other jobs reconfiguring OVS stall every bridge for tens of
    milliseconds; see `routerlab.traffic.attribute_loss`)."""
    att = attribute_loss(r, refs, window=window)
    assert att["attributed"] == 0, (r.summary(), att, [x.summary() for x in refs])
    # single drops outside any gap are background on a busy machine (the reference has them
    # too); a systematic drop (say every other packet) would exceed this
    assert att["isolated"] <= max(20, 0.02 * r.sent, 3 * max(att["reference_isolated"])), (r.summary(), att)
