"""vroom.capacity.dataplane_limit_pps against a simulated probe (no network)."""
from __future__ import annotations

import pytest

from routerlab.traffic import ProbeResult
from vroom.capacity import dataplane_limit_pps


def fake_probe(limit: int, noisy: set[int] | None = None, seconds: float = 2.0):
    """Loses (rate - limit) x seconds packets above `limit`; a rate in `noisy` loses one
    packet on its first try only."""
    tried: list[int] = []

    def probe(rate: int) -> ProbeResult:
        tried.append(rate)
        sent = int(rate * seconds)
        lost = max(0, int((rate - limit) * seconds))
        if noisy and rate in noisy and tried.count(rate) == 1:
            lost = max(lost, 1)
        return ProbeResult(sent=sent, received=sent - lost, lost=lost, reordered=0, duplicated=0,
                           max_gap_ms=1.0, gaps=[], rate_pps=rate, duration_s=seconds,
                           latency_p50_ms=0.3, latency_p99_ms=2.0, latency_max_ms=5.0)
    probe.tried = tried  # type: ignore[attr-defined]
    return probe


def test_highest_rate_without_loss_and_the_table() -> None:
    p = fake_probe(22_000)
    lim = dataplane_limit_pps(None, "hA", "hB", probe=p, confirm=0, settle_s=0)
    assert lim.limit_pps == 20_000 and lim.first_failure_pps == 25_000
    assert p.tried == [2_000, 5_000, 10_000, 15_000, 20_000, 25_000]  # stops at the failure
    rows = lim.table()
    assert [r["rate_pps"] for r in rows] == p.tried and rows[-1]["ok"] is False
    assert rows[0]["delivered_pps"] == 2_000 and rows[0]["latency_p99_ms"] == 2.0
    assert "20,000 packets/s with no loss" in lim.summary()
    assert lim.to_json()["limit_pps"] == 20_000


def test_one_noisy_step_is_retried() -> None:
    p = fake_probe(12_000, noisy={5_000})
    lim = dataplane_limit_pps(None, "hA", "hB", rates=[2_000, 5_000, 10_000, 15_000], probe=p,
                              confirm=1, settle_s=0)
    assert lim.limit_pps == 10_000
    assert p.tried == [2_000, 5_000, 5_000, 10_000, 15_000, 15_000]


def test_nothing_passes_and_tolerance() -> None:
    assert dataplane_limit_pps(None, "a", "b", rates=[2_000], probe=fake_probe(100), confirm=0,
                               settle_s=0).limit_pps == 0
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000, 4_000], probe=fake_probe(3_990),
                              confirm=0, settle_s=0, loss_tolerance=0.01)
    assert lim.limit_pps == 4_000


@pytest.mark.parametrize("kw", [{"rates": []}, {"rates": [5_000, 2_000]}, {"rates": [0, 1]},
                                {"seconds": 0}, {"loss_tolerance": 1.0}, {"confirm": -1}])
def test_bad_arguments(kw) -> None:
    with pytest.raises(ValueError):
        dataplane_limit_pps(None, "a", "b", probe=fake_probe(1), settle_s=0, **kw)


def test_latency_bound() -> None:
    lim = dataplane_limit_pps(None, "a", "b", rates=[2_000], probe=fake_probe(10_000), confirm=0,
                              settle_s=0, max_p99_ms=1.0)
    assert lim.limit_pps == 0 and lim.steps[0].lost == 0 and not lim.steps[0].ok
