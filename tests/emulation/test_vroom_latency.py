"""The VROOM lab's data plane seen by the probe: the first probe after the lab converged
loses nothing (convergence includes routes in every FIB and data plane), latency
percentiles are reported, the no-loss rate is measured, and a live migration adds little
delay (latency per migration phase, from the phases' wall-clock times)."""
from __future__ import annotations

import logging
import os
import shutil
import time
import uuid

import pytest

from routerlab import criu as rlcriu
from routerlab.traffic import Probe
from vroom.capacity import dataplane_limit_pps
from vroom.migrate import migrate
from vroom.phases import phase_windows

from .vroomlab import LO_N2, lab_fixture

pytestmark = [
    pytest.mark.emulation,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (namespaces, OVS)"),
    pytest.mark.skipif(shutil.which("bird") is None, reason="BIRD 2 is not installed"),
]
log = logging.getLogger(__name__)


def _load() -> str:
    with open("/proc/loadavg") as f:
        return f.read().split()[0]


def test_first_probe_after_convergence_loses_nothing_and_reports_latency() -> None:
    from vroom.lab import build

    lab = build("vroom", f"tl{uuid.uuid4().hex[:3]}")
    try:
        # straight after build(): the user's first probe (this lost its first 1-2 s when
        # "converged" meant only adjacencies Full)
        res = lab.probe("hNYCM", "hLOSA", 3, rate_pps=2000)
        log.info("first probe (load %s): %s", _load(), res.summary())
        assert res.sent == 6000 and res.lost == 0, res.summary()
        assert res.latency_p50_ms is not None and res.latency_p50_ms > 0
        assert res.latency_p50_ms <= res.latency_p99_ms <= res.latency_max_ms
        lim = dataplane_limit_pps(lab, "hNYCM", "hLOSA", rates=[1000, 2000, 5000], seconds=1.0)
        log.info("data plane limit (load %s): %s", _load(), lim.summary())
        assert lim.limit_pps >= 1000, lim.table()
        assert len(lim.steps) >= 1 and lim.steps[0].latency_p50_ms is not None
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def mlab():
    if rlcriu.find_criu() is None:
        pytest.skip("no CRIU: run scripts/get-criu.sh")
    yield from lab_fixture("tvl")


def test_latency_during_a_live_migration(mlab) -> None:
    net = mlab.net
    mlab.wait_path()
    target = "B" if mlab.r1.pr.name == "A" else "A"
    p = Probe(net.namespaces["n1"], net.namespaces["n2"], LO_N2, rate_pps=1000)
    with p:
        time.sleep(1.0)
        rep = migrate(net, "r1", target)
        time.sleep(0.5)
    res = p.result
    wins = phase_windows(rep.phases)
    start, end = wins[0][1], wins[-1][2]
    lat = p.latency_in_windows([("steady", res.started_at, start - 0.05), *wins,
                                ("migration", start, end)])
    extra = lat["migration"].max_ms - lat["steady"].p50_ms
    log.info("migration latency (load %s): %s; extra delay %.1f ms; %s", _load(),
             {k: v.to_json() for k, v in lat.items()}, extra, rep.summary())
    assert rep.ok and res.lost == 0, res.summary()
    assert lat["steady"].count > 900 and lat["migration"].count > 0
    # packets are held, not lost; the bar is 50 ms of extra delay (shared machine: slack)
    assert extra < 150, (extra, {k: v.to_json() for k, v in lat.items()})
