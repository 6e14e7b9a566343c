"""The pure parts of vroom.experiments: per-implementation summaries, plans, the injected
table, and an implementation's failure kept apart from the other's results."""
from __future__ import annotations

import pytest

from routerlab.report import Result
from vroom.cloning import _clone_metrics, _prefixes, clone_plan, clone_summary, inject_timeout
from vroom.experiments import (_core_metrics, _power_report, core_runs, core_summary,
                               first_lsu_after, lsu_times, power_summary)
from vroom.measure import aligned_bars, per_impl


def _core(impl: str, run: int, resets: list[str], rx: dict[str, tuple[int, int]], lost: int,
          freeze: float | None) -> dict:
    return {"impl": impl, "run": run, "resets": resets, "packets_lost": lost, "freeze_s": freeze,
            "retransmissions": {nb: {"to_vr": {"retransmissions": t, "max_per_lsa": m},
                                     "from_vr": {"retransmissions": 1}}
                                for nb, (t, m) in rx.items()}}


CORE = [_core("frr", 1, [], {"DNVR": (2, 1), "HSTN": (1, 1)}, 0, 0.5),
        _core("frr", 2, ["IPLS OSPF Down"], {"DNVR": (0, 0)}, 3, 0.7),
        _core("bird", 1, [], {"DNVR": (4, 2), "HSTN": (0, 0)}, 0, 0.2)]


def test_core_summary_per_implementation_and_overall() -> None:
    frr = core_summary(CORE, "frr")
    assert frr == {"runs": 2, "adjacencies_lost": 1, "max_per_lsa": 1,
                   "retransmissions_total": 3, "by_vr_total": 3, "packets_lost": 3,
                   "freeze_s_max": 0.7}
    bird = core_summary(CORE, "bird")
    assert (bird["max_per_lsa"], bird["retransmissions_total"], bird["freeze_s_max"]) == (2, 4, 0.2)
    both = core_summary(CORE)
    assert (both["runs"], both["max_per_lsa"], both["retransmissions_total"],
            both["adjacencies_lost"]) == (3, 2, 7, 1)
    assert core_summary([], "frr") == {"runs": 0, "adjacencies_lost": 0, "max_per_lsa": 0,
                                       "retransmissions_total": 0, "by_vr_total": 0,
                                       "packets_lost": 0, "freeze_s_max": None}


def _metrics(res: Result) -> dict:
    return {m.id: m for m in res.metrics}


def test_core_metrics_keep_the_ids_as_totals_and_add_per_implementation() -> None:
    res = Result("x")
    _core_metrics(res, CORE, {})
    m = _metrics(res)
    assert m["adjacencies_lost"].ours == 1 and not m["adjacencies_lost"].met
    assert m["adjacencies_lost_bird"].ours == 0 and m["adjacencies_lost_bird"].met
    assert m["ospf_retransmissions_max_per_lsa"].ours == 2
    assert m["ospf_retransmissions_max_per_lsa"].paper == 1
    assert m["ospf_retransmissions_max_per_lsa_frr"].met
    assert not m["ospf_retransmissions_max_per_lsa_bird"].met
    assert m["ospf_retransmissions_total"].ours == 7
    assert m["packets_lost_total_frr"].ours == 3


def test_core_metrics_an_implementation_that_failed_is_not_met() -> None:
    res = Result("x")
    bird_only = [r for r in CORE if r["impl"] == "bird"]
    _core_metrics(res, bird_only, {"frr": "MigrationFailed: boom"})
    m = _metrics(res)
    assert m["adjacencies_lost_frr"].ours is None and not m["adjacencies_lost_frr"].met
    assert m["adjacencies_lost_bird"].met
    assert not m["adjacencies_lost"].met  # the total lacks FRR
    assert not m["ospf_retransmissions_max_per_lsa"].met


def test_per_impl_keeps_the_error_and_lets_the_other_run() -> None:
    errors: dict[str, str] = {}

    def boom() -> None:
        raise RuntimeError("no restore")
    assert per_impl("frr", errors, boom) is None
    assert per_impl("bird", errors, lambda: 42) == 42
    assert errors == {"frr": "RuntimeError: no restore"}

    def interrupted() -> None:
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        per_impl("bird", errors, interrupted)


def _move(impl: str, lost: int, resets: list[str], freeze: float, step: str = "consolidate") -> dict:
    return {"cycle": 1, "step": step, "vr": "r2" if impl == "frr" else "r4", "impl": impl,
            "from": "P2", "to": "P1", "freeze_s": freeze, "packets_lost": lost,
            "longest_gap_ms": 10.0 + lost, "resets": resets, "loadavg": 1.0}


def test_power_summary_and_report() -> None:
    moves = [_move("frr", 0, [], 0.31), _move("bird", 2, [], 0.18),
             _move("frr", 0, [], 0.42, "spread"), _move("bird", 0, ["r1 OSPF Down"], 0.2, "spread")]
    assert power_summary(moves, "frr") == {"moves": 2, "packets_lost": 0, "resets": 0,
                                           "longest_gap_ms": 10.0, "freeze_s_max": 0.42}
    assert power_summary(moves)["packets_lost"] == 2
    steps = [{"cycle": 1, "step": "consolidate", "physical_routers_in_use": ["P1", "P3"]},
             {"cycle": 1, "step": "spread", "physical_routers_in_use": ["P1", "P2", "P3", "P4"]}]
    res = Result("vroom-power")

    class Ctx:
        out_dir = "/nonexistent-dir-for-plots"
    _power_report(res, Ctx(), steps, moves, 1, None)  # type: ignore[arg-type]  # only out_dir is used
    m = _metrics(res)
    assert m["packets_lost_total"].ours == 2 and not m["packets_lost_total"].met
    assert m["packets_lost_total_frr"].met and not m["packets_lost_total_bird"].met
    assert m["routers_in_use_min"].ours == 2 and m["routers_in_use_min"].met
    assert m["sessions_reset_bird"].ours == 1 and m["sessions_reset_frr"].ours == 0
    assert m["freeze_s_max_frr"].ours == 0.42
    assert any(h == "By implementation" for h, _ in res.sections)


def _row(impl: str, n: int, total: float, freeze: float | None, image: int | None,
         migrated: bool = True) -> dict:
    return {"impl": impl, "routes": n, "clone": {"total_s": total}, "freeze_s": freeze,
            "image_bytes": image, "migrated": migrated, "inject_s": n / 5000, "injected": n,
            "bgp_state_after": "Established", "bgp_connections": 1}


def test_clone_summary_and_metrics() -> None:
    rows = [_row("frr", 1000, 0.1, None, None, migrated=False),
            _row("frr", 250000, 3.9, 0.36, 204_400_000),
            _row("bird", 250000, 4.2, 0.3, 10_300_000)]
    s = clone_summary(rows, "frr")
    assert (s["clone_250k_s"], s["freeze_s_max"], s["image_mb_250k"], s["bgp_kept"]) == \
        (3.9, 0.36, 204.4, True)
    assert s["inject_rate_250k"] == 5000
    assert clone_summary(rows)["clone_250k_s"] == 4.2
    res = Result("vroom-cloning")
    _clone_metrics(res, rows, clone_plan(False, False), {})
    m = _metrics(res)
    assert m["clone_250k_s"].ours == 4.2 and m["clone_250k_s"].met
    assert m["clone_freeze_s_max"].ours == 0.36
    assert m["clone_freeze_s_max_bird"].ours == 0.3
    assert m["clone_image_mb_250k_frr"].ours == 204.4
    assert m["bgp_kept"].ours is True
    rows[1]["bgp_connections"] = 2
    res = Result("vroom-cloning")
    _clone_metrics(res, rows, clone_plan(False, False), {})
    assert not _metrics(res)["bgp_kept"].met


def test_plans_and_sizes() -> None:
    assert clone_plan(True, False) == {"frr": ([1000, 10000, 250000], {250000})}
    full = clone_plan(False, False)
    assert full["frr"][0] == [1000, 10000, 100000, 250000, 500000, 1000000]
    assert full["bird"] == ([250000, 1000000], {250000, 1000000})
    assert clone_plan(False, True) == {"frr": ([1000, 10000, 250000], {1000, 10000, 250000})}
    assert (core_runs(True, False), core_runs(False, True), core_runs(False, False)) == (1, 2, 3)
    assert inject_timeout("frr", 250000) > inject_timeout("bird", 250000) > 300
    # the injected table grows by rows of the full table: distinct, today's /24 share
    first = _prefixes(0, 100000)
    assert _prefixes(0, 2) == first[:2] and _prefixes(99999, 100001)[0] == first[-1]
    assert len(set(first)) == 100000
    assert 0.55 < sum(p.endswith("/24") for p in first) / len(first) < 0.65


def test_full_table_metrics() -> None:
    rows = [_row("frr", 1000000, 16.0, 1.2, 900_000_000), _row("bird", 1000000, 4.5, 0.3, None)]
    rows[0].update(vr_memory={"pss_mb": 700.0}, ovs_rss_added_mb=800.0)
    res = Result("vroom-cloning")
    _clone_metrics(res, rows, clone_plan(False, False), {})
    m = _metrics(res)
    # judged against the bars (15 s, 1.0 s), the goals (5 s, 0.5 s) beside them
    assert m["clone_1m_s"].ours == 16.0 and not m["clone_1m_s"].met
    assert m["clone_1m_s_bird"].met and not m["clone_1m_s_frr"].met
    assert m["clone_1m_freeze_s"].ours == 1.2 and not m["clone_1m_freeze_s"].met
    assert m["clone_1m_freeze_s_bird"].met and m["clone_1m_freeze_s"].goal == "bar < 1.0 (goal < 0.5)"
    rows[0].update(clone={"total_s": 9.5}, freeze_s=0.6)  # above the goals, under the bars
    res = Result("vroom-cloning")
    _clone_metrics(res, rows, clone_plan(False, False), {})
    m = _metrics(res)
    assert m["clone_1m_s"].met and m["clone_1m_freeze_s"].met
    assert m["vr_pss_mb_1m_frr"].ours == 700.0 and m["ovs_rss_added_mb_1m_frr"].ours == 800.0
    res = Result("vroom-cloning")
    _clone_metrics(res, rows, clone_plan(False, True), {})  # run all: no 1M
    assert "clone_1m_s" not in _metrics(res)


def test_aligned_bars_share_one_x_axis() -> None:
    out = aligned_bars({"FRR": {1000: 0.2, 250000: 0.5}, "BIRD": {250000: 0.3}, "none": {}})
    assert set(out) == {"FRR", "BIRD"}
    assert out["FRR"] == ([1000, 250000], [0.2, 0.5])
    xs, ys = out["BIRD"]
    assert xs == [1000, 250000] and ys[0] != ys[0] and ys[1] == 0.3  # NaN: no bar


TCPDUMP = """\
20:01:39.139770 IP (tos 0xc0, ttl 1, id 63683, offset 0, flags [none], proto OSPF (89), length 68)
    10.9.0.1 > 224.0.0.5: OSPFv2, Hello, length 48
\tRouter-ID 1.1.1.1, Backbone Area, Authentication Type: none (0)
20:01:39.222798 IP (tos 0xc0, ttl 1, id 63685, offset 0, flags [none], proto OSPF (89), length 248)
    10.9.0.1 > 224.0.0.5: OSPFv2, LS-Update, length 228
\t  Advertising Router 1.1.1.1, seq 0x8000000a, age 1s, length 28
20:01:40.139805 IP (tos 0xc0, ttl 1, id 63686, offset 0, flags [none], proto OSPF (89), length 68)
    10.9.0.2 > 224.0.0.5: OSPFv2, LS-Ack, length 44
20:01:42.008980 IP (tos 0xc0, ttl 1, id 63688, offset 0, flags [none], proto OSPF (89), length 124)
    10.9.0.1 > 10.9.0.2: OSPFv2, LS-Update, length 104
"""


def test_lsu_times_and_the_first_update_after_a_failure() -> None:
    import time

    sod = 20 * 3600 + 60
    assert lsu_times(TCPDUMP) == [(sod + 39.222798, "10.9.0.1"), (sod + 42.00898, "10.9.0.1")]
    # an epoch time whose local time of day is 20:01:39.5
    base = time.mktime(time.strptime("2026-12-06 20:01:39", "%Y-%m-%d %H:%M:%S")) + 0.5
    assert first_lsu_after(TCPDUMP, "10.9.0.1", base) == pytest.approx(2.509, abs=1e-3)
    assert first_lsu_after(TCPDUMP, "10.9.0.1", base - 1.0) == pytest.approx(0.723, abs=1e-3)
    assert first_lsu_after(TCPDUMP, "10.9.0.2", base) is None
    assert first_lsu_after(TCPDUMP, "10.9.0.1", base + 10) is None
